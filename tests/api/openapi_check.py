#!/usr/bin/env python3
"""Every response of smolvm serve checked against docs/openapi.yaml.

  openapi_check.py live SOCKET      drives the daemon listening on SOCKET
                                    (a fake VM answering on a control socket
                                    in $XDG_RUNTIME_DIR/smolvm stands in for a
                                    running one; with $SMOLVM_AGENT, that
                                    smolvm-agent run on the host is its guest
                                    agent, for exec and files) and checks
                                    each response
  openapi_check.py recorded DIR     checks responses recorded by
                                    tests/nested/scenarios.sh: DIR/N.req holds
                                    "METHOD PATH", DIR/N.status the HTTP
                                    status, DIR/N.type the content type and
                                    DIR/N.body the body

A response passes when the document has its path and method, lists its
status (or a default), with its content type, and its body validates
against that schema (JSON Schema 2020-12, as OpenAPI 3.1 says: through
python3-jsonschema, or where it is missing the subset of keywords the
document uses, any other keyword an error). Exit 0 when all pass; otherwise
each failure on a line, and exit 1."""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import yaml

try:
    import jsonschema
except ImportError:  # the subset below, where python3-jsonschema is missing (an L1 guest)
    jsonschema = None

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "..", "..", "docs", "openapi.yaml")


class SchemaError(Exception):
    pass


TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def is_type(value, name):
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[name])


def subset_validate(schema, value, root, at="(root)"):
    """JSON Schema, only the keywords docs/openapi.yaml uses."""
    known = {"$ref", "type", "enum", "const", "required", "properties", "additionalProperties",
             "items", "pattern", "minimum", "maximum", "oneOf", "description", "components"}
    unknown = set(schema) - known
    if unknown:
        raise SchemaError(f"the subset validator does not know {sorted(unknown)}")
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        subset_validate(node, value, root, at)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(is_type(value, t) for t in types):
            raise SchemaError(f"{value!r} is not of type {schema['type']} (at {at})")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{value!r} is not one of {schema['enum']} (at {at})")
    if "const" in schema and value != schema["const"]:
        raise SchemaError(f"{value!r} is not {schema['const']!r} (at {at})")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise SchemaError(f"{key!r} is a required property (at {at})")
        props = schema.get("properties", {})
        for key, v in value.items():
            if key in props:
                subset_validate(props[key], v, root, f"{at}/{key}")
            elif schema.get("additionalProperties") is False:
                raise SchemaError(f"additional property {key!r} (at {at})")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            subset_validate(schema["items"], v, root, f"{at}/{i}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        raise SchemaError(f"{value!r} does not match {schema['pattern']!r} (at {at})")
    if is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(f"{value!r} is less than {schema['minimum']} (at {at})")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(f"{value!r} is more than {schema['maximum']} (at {at})")
    if "oneOf" in schema:
        matches = 0
        for option in schema["oneOf"]:
            try:
                subset_validate(option, value, root, at)
                matches += 1
            except SchemaError:
                pass
        if matches != 1:
            raise SchemaError(f"{value!r} matches {matches} of oneOf, not 1 (at {at})")


class Spec:
    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.templates = []
        for template in self.doc["paths"]:
            pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
            self.templates.append((re.compile(pattern), template))
        self.checked = 0
        self.failures = []

    def schema(self, s):
        # '#/components/...' references resolve against the document's root.
        return dict(s, components=self.doc["components"])

    def resolve(self, obj):
        while isinstance(obj, dict) and "$ref" in obj and len(obj) == 1:
            node = self.doc
            for part in obj["$ref"].lstrip("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def check(self, method, path, status, ctype, body):
        self.checked += 1
        where = f"{method} {path} -> {status}"
        bare = path.split("?")[0]
        template = next((t for p, t in self.templates if p.match(bare)), None)
        if template is None:
            # Paths the API does not have: the error shape all the same.
            op = {"responses": {"default": {"$ref": "#/components/responses/Error"}}}
            if status < 400:
                return self.fail(where, "a path the document does not have answered with success")
        else:
            op = self.doc["paths"][template].get(method.lower())
            if op is None:
                op = {"responses": {"default": {"$ref": "#/components/responses/Error"}}}
                if status != 405:
                    return self.fail(where, f"{method} is not in the document for {template}")
        responses = op["responses"]
        response = responses.get(str(status)) or responses.get("default")
        if response is None:
            return self.fail(where, "status not in the document")
        response = self.resolve(response)
        content = response.get("content", {})
        media = (ctype or "").split(";")[0].strip()
        if media not in content:
            return self.fail(where, f"content type {ctype!r}, the document has {list(content)}")
        schema = self.resolve(content[media].get("schema", {}))
        if media == "application/json":
            try:
                value = json.loads(body)
            except ValueError as e:
                return self.fail(where, f"not JSON: {e}")
        elif media == "application/x-ndjson":  # a JSON object a line, the last one the end
            try:
                lines = [json.loads(line) for line in body.decode().splitlines()]
            except ValueError as e:
                return self.fail(where, f"a line is not JSON: {e}")
            if not lines or not all(isinstance(line, dict) for line in lines) or not (
                    "exit_code" in lines[-1] or "error" in lines[-1]):
                return self.fail(where, f"not lines of objects ending with the exit: {body[:200]!r}")
            value = body.decode()
        else:
            value = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        if jsonschema is None:
            try:
                subset_validate(schema, value, self.doc)
            except SchemaError as e:
                return self.fail(where, str(e))
            return
        try:
            jsonschema.Draft202012Validator(self.schema(schema)).validate(value)
        except jsonschema.ValidationError as e:
            return self.fail(where, f"{e.message} (at {'/'.join(map(str, e.absolute_path))})")

    def fail(self, where, why):
        self.failures.append(f"{where}: {why}")


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.unix_path)


def fake_vm(name, runtime):
    """A VM as its control socket shows it: status, pause, resume, stop."""
    path = os.path.join(runtime, name + ".sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    srv.listen(8)
    state = {"paused": False}

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                line = c.makefile("rb").readline()
                req = json.loads(line)
                c.sendall(b'{"progress":0,"total":0}\n')
                cmd = req.get("command")
                if cmd == "pause":
                    state["paused"] = True
                elif cmd == "resume":
                    state["paused"] = False
                if cmd == "trace":
                    answer = {"ok": True, "trace": {"unit": "ms", "events": {
                        "inputs_read": 0.4, "first_vcpu_entry": 2.5, "kernel_start": 20.0},
                        "split": {"vmm": 2.5, "kernel": 17.5, "init": 0.0}}}
                elif cmd in ("status", "pause", "resume", "stop"):
                    answer = {"ok": True, "name": name, "pid": os.getpid(),
                              "state": "paused" if state["paused"] else "running", "cpus": 1,
                              "mem_bytes": 64 << 20, "uptime_s": 1.0, "console_dropped": 0}
                else:
                    answer = {"ok": False, "error": f"cannot {cmd}"}
                c.sendall(json.dumps(answer).encode() + b"\n")

    threading.Thread(target=serve, daemon=True).start()
    return srv, path


def live(sock):
    spec = Spec(SPEC)
    runtime = os.path.join(os.environ["XDG_RUNTIME_DIR"], "smolvm")
    srv, vm_path = fake_vm("fakevm", runtime)
    scratch = tempfile.mkdtemp()
    image = os.path.join(scratch, "disk.img")
    with open(image, "wb") as f:
        f.truncate(1 << 20)
    requests = [
        ("GET", "/machines", None),
        ("POST", "/machines", {"name": "oa", "from": image, "cpus": 2, "mem": "64M"}),
        ("POST", "/machines", {"name": "oa", "from": image}),
        ("POST", "/machines", {"name": "oa2"}),
        ("POST", "/machines", {"name": "oa2", "from": image, "disks": []}),
        ("POST", "/machines", b'{"name": '),
        ("POST", "/machines", b'[]'),
        ("GET", "/machines", None),
        ("GET", "/machines/oa", None),
        ("GET", "/machines/fakevm", None),
        ("GET", "/machines/nothere", None),
        ("GET", "/machines/.bad", None),
        ("POST", "/machines/fakevm/pause", None),
        ("POST", "/machines/fakevm/resume", None),
        ("POST", "/machines/fakevm/start", None),
        ("POST", "/machines/fakevm/save", {"output": "relative"}),
        ("POST", "/machines/fakevm/save", {"output": "/tmp/x", "flatten": 1}),
        ("POST", "/machines/oa/pause", None),
        ("POST", "/machines/oa/save", None),
        ("POST", "/machines/oa/reboot", None),
        ("DELETE", "/machines/fakevm", None),
        ("GET", "/machines/fakevm/logs", None),
        ("GET", "/machines/fakevm/trace", None),
        ("GET", "/machines/nothere/trace", None),
        ("GET", "/machines/fakevm/logs?follow=1", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("PUT", "/machines", None),
        ("GET", "/nowhere", None),
        ("POST", "/machines/oa/save", {"output": os.path.join(scratch, "oa.smolmachine")}),
        ("POST", "/machines/oa/reset", None),
        ("GET", "/layers", None),
        ("DELETE", "/layers/" + "0" * 64, None),
        ("DELETE", "/layers/nothex", None),
        ("DELETE", "/machines/oa", None),
        ("DELETE", "/machines/oa", None),
        ("POST", "/gc", None),
        ("GET", "/gc", None),
        ("POST", "/machines", {"name": "oa3", "from": image, "share": [scratch + ":s,ro"]}),
        ("POST", "/machines", {"name": "oa4", "from": image, "share": "relative"}),
        ("DELETE", "/machines/oa3", None),
    ]
    agent = None
    if os.environ.get("SMOLVM_AGENT"):
        vsock = os.path.join(runtime, "fakevm.vsock")
        agent = subprocess.Popen([os.environ["SMOLVM_AGENT"], "--unix", vsock])
        for _ in range(500):
            if os.path.exists(vsock):
                break
            time.sleep(0.01)
        requests += [
            ("POST", "/machines/fakevm/exec",
             {"command": ["sh", "-c", "echo out; echo err >&2; read x; exit 2"], "stdin": "x\n",
              "env": ["A=b"], "cwd": "/"}),
            ("POST", "/machines/fakevm/exec", {"command": ["/nonexistent/program"]}),
            ("POST", "/machines/fakevm/exec", {"command": []}),
            ("POST", "/machines/fakevm/exec", {"command": ["true"], "tty": True}),
            ("POST", "/machines/nothere/exec", {"command": ["true"]}),
            ("PUT", f"/machines/fakevm/files?path={scratch}/in%20vm.txt", b"file bytes\n" * 10000),
            ("GET", f"/machines/fakevm/files?path={scratch}/in%20vm.txt", None),
            ("GET", f"/machines/fakevm/files?path={scratch}/none", None),
            ("GET", f"/machines/fakevm/files?path={scratch}", None),
            ("PUT", f"/machines/fakevm/files?path={scratch}/no/such/folder", b"x"),
            ("GET", "/machines/fakevm/files", None),
            ("DELETE", "/machines/fakevm/files?path=/x", None),
        ]
    for method, path, body in requests:
        conn = UnixHTTP(sock)
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        spec.check(method, path, resp.status, resp.getheader("Content-Type"), resp.read())
        conn.close()
    srv.close()
    os.unlink(vm_path)
    if agent:
        agent.terminate()
        agent.wait()
        with open(os.path.join(scratch, "in vm.txt"), "rb") as f:
            if f.read() != b"file bytes\n" * 10000:
                spec.fail("PUT files", "the file in the 'guest' is not the body sent")
    return spec


def recorded(directory):
    spec = Spec(SPEC)
    for req in sorted(f for f in os.listdir(directory) if f.endswith(".req")):
        base = os.path.join(directory, req[:-4])
        method, path = open(base + ".req").read().split()[:2]
        status = int(open(base + ".status").read().strip() or 0)
        ctype = open(base + ".type").read().strip()
        body = open(base + ".body", "rb").read()
        spec.check(method, path, status, ctype, body)
    return spec


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("live", "recorded"):
        sys.exit(__doc__)
    spec = live(sys.argv[2]) if sys.argv[1] == "live" else recorded(sys.argv[2])
    for f in spec.failures:
        print("openapi:", f)
    how = "jsonschema" if jsonschema else "the built-in subset of JSON Schema"
    print(f"openapi: {spec.checked} responses checked ({how}), {len(spec.failures)} do not match")
    sys.exit(1 if spec.failures or not spec.checked else 0)


if __name__ == "__main__":
    main()
