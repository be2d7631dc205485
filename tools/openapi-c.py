#!/usr/bin/env python3
"""docs/openapi.yaml as a C string of JSON (api_openapi_json), for
GET /openapi.json: converted at build time, so the daemon serves the
document the repository holds."""
import json
import sys

import yaml

src, out = sys.argv[1], sys.argv[2]
with open(src) as f:
    doc = yaml.safe_load(f)
text = json.dumps(doc, separators=(",", ":"), sort_keys=False)
with open(out, "w") as f:
    f.write("/* Generated from docs/openapi.yaml by tools/openapi-c.py. */\n")
    f.write('#include "serve/api.h"\n\nconst char api_openapi_json[] =\n')
    for i in range(0, len(text), 96):
        f.write("    " + json.dumps(text[i:i + 96]) + "\n")
    f.write("    ;\n")
