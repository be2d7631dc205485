#!/usr/bin/env python3
"""A text file of the repository as a C string (usage: text-c.py IN OUT
SYMBOL HEADER): built into smolvm, so the program uses the text the
repository holds (kernel/micro.config for `smolvm kernel build`)."""
import json
import sys

src, out, symbol, header = sys.argv[1:5]
with open(src) as f:
    text = f.read()
with open(out, "w") as f:
    f.write("/* Generated from %s by tools/text-c.py. */\n" % src.split("/")[-1])
    f.write('#include "%s"\n\nconst char %s[] =\n' % (header, symbol))
    for line in text.splitlines(keepends=True):
        f.write("    " + json.dumps(line) + "\n")
    f.write("    ;\n")
