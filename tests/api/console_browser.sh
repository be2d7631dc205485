#!/bin/bash
# The web console in a real browser (Debian's chromium, headless, driven
# through the DevTools protocol by tests/api/cdp.py): the page of a daemon
# on TCP, opened with ?token=, lists a running machine and its terminal
# (xterm.js's DOM renderer) shows what the guest wrote on its console; a
# command typed in the terminal reaches the guest (its console socket) and
# its output comes back; the boot trace shows as a chart and the store's
# layers as a table; the stop button stops the machine. The machine is
# a stand-in: a store instance, a control socket answering status, trace,
# shutdown and stop, a console socket whose lines it answers in its log,
# as a detached VM does. Screenshots of each step are kept.
# usage: tests/api/console_browser.sh BUILD_DIR [ARTIFACT_DIR]
# Prints "PASS console-browser" or "FAIL console-browser: why" or "SKIP ...".
set -uo pipefail
build=$(realpath "$1")
artifacts=${2:-}
here=$(dirname "$(realpath "$0")")
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "SKIP console-browser: no chromium (apt install chromium)"; exit 0; }
xterm=$("$here/../../tools/fetch-xterm.sh" 2>/dev/null) || { echo "SKIP console-browser: no xterm.js (npm)"; exit 0; }
work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-browser.XXXXXX")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
mkdir -m 700 -p "$work/run/smolvm"
export XDG_RUNTIME_DIR=$work/run SMOLVM_XTERM_DIR=$xterm HOME=$work
printf 'Debian GNU/Linux 12 webvm ttyS0\r\n\r\nwebvm login: ' > "$work/run/smolvm/webvm.log"
# The stand-in VM: one JSON request a connection on its control socket,
# answered as a VM does (shutdown: it powers off); its console socket's
# lines echoed in its log, "uname -n" answered.
python3 - "$work/run/smolvm" <<'PY' &
import json, os, socket, sys, threading
run = sys.argv[1]
def log(text):
    with open(os.path.join(run, "webvm.log"), "ab") as f:
        f.write(text)
def console():
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(run, "webvm.console"))
    s.listen(4)
    while True:
        c, _ = s.accept()
        threading.Thread(target=typed, args=(c,), daemon=True).start()
def typed(c):
    line = b""
    while (data := c.recv(4096)):
        for b in data:
            if b == 13:
                log(line + b"\r\n" + (b"typed-on-webvm\r\n" if line == b"uname -n" else b"")
                    + b"webvm:~# ")
                line = b""
            else:
                line += bytes([b])
threading.Thread(target=console, daemon=True).start()
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(run, "webvm.sock"))
os.chmod(os.path.join(run, "webvm.sock"), 0o600)
s.listen(16)
while True:
    c, _ = s.accept()
    command = json.loads(c.makefile("rb").readline()).get("command")
    answer = {"ok": True, "name": "webvm", "state": "running", "pid": os.getpid(), "cpus": 1,
              "mem_bytes": 268435456}
    if command == "trace":
        answer = {"ok": True, "trace": {"unit": "ms", "events": {"inputs_read": 0.5,
                  "first_vcpu_entry": 3.0, "kernel_start": 40.0, "init_start": 180.0}}}
    c.sendall(b'{"progress":0,"total":0}\n' + json.dumps(answer).encode() + b'\n')
    c.close()
    if command in ("shutdown", "stop"):
        log(b"\r\nreboot: Power down\r\n")
        for name in ("webvm.sock", "webvm.console"):
            os.unlink(os.path.join(run, name))
        os._exit(0)
PY
pids+=($!)
token=browser-test-token-0123456789
printf '%s\n' "$token" > "$work/token" && chmod 600 "$work/token"
port=$((30000 + $$ % 20000))
"$build/smolvm-serve" --socket "$work/api.sock" --listen "127.0.0.1:$port" \
    --token-file "$work/token" > "$work/serve.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
    curl -s -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$port/machines" && break
    sleep 0.1
done
# The instance the stand-in runs as: a stopped VM stays in the list.
truncate -s 1M "$work/disk.img"
curl -s -o "$work/create.json" -H "Authorization: Bearer $token" \
    -d "{\"name\": \"webvm\", \"from\": \"$work/disk.img\"}" "http://127.0.0.1:$port/machines"
url="http://127.0.0.1:$port/?token=$token"
devtools=$((port + 1))
timeout 300 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$work/profile" --window-size=1200,900 --remote-debugging-port=$devtools \
    about:blank > /dev/null 2> "$work/chromium.err" &
pids+=($!)
result=$(timeout 240 python3 "$here/cdp.py" $devtools "$url" "$work/shots" 2>&1 | tail -n 1)
if [ -n "$artifacts" ]; then
    mkdir -p "$artifacts" && cp "$work"/shots/*.png "$work/chromium.err" "$work/run/smolvm/webvm.log" \
        "$artifacts/" 2>/dev/null
fi
echo "${result:-FAIL console-browser: the DevTools client said nothing}"
