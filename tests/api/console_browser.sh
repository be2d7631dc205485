#!/bin/bash
# The web console in a real browser (Debian's chromium, headless): the page
# of a daemon on TCP, opened with ?token=, lists a running machine and its
# terminal (xterm.js's DOM renderer) shows what the guest wrote on its
# console. The machine is a stand-in: a control socket answering status
# and a log, as a detached VM has. A screenshot is kept.
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
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -m 700 -p "$work/run/smolvm"
export XDG_RUNTIME_DIR=$work/run SMOLVM_XTERM_DIR=$xterm HOME=$work
printf 'Debian GNU/Linux 12 webvm ttyS0\r\n\r\nwebvm login: ' > "$work/run/smolvm/webvm.log"
# The stand-in VM: one JSON request a connection, answered as a VM does.
python3 - "$work/run/smolvm/webvm.sock" <<'PY' &
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o600)
s.listen(16)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b'{"progress":0,"total":0}\n' + json.dumps({"ok": True, "name": "webvm",
              "state": "running", "pid": os.getpid(), "cpus": 1, "mem_bytes": 268435456}).encode() + b'\n')
    c.close()
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
url="http://127.0.0.1:$port/?token=$token"
flags=(--headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$work/profile"
       --window-size=1200,900 --virtual-time-budget=8000)
timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" > "$work/dom.html" 2> "$work/chromium.err"
timeout 120 "$browser" "${flags[@]}" --screenshot="$work/console.png" "$url" \
    > /dev/null 2>> "$work/chromium.err"
if [ -n "$artifacts" ]; then
    mkdir -p "$artifacts" && cp "$work/dom.html" "$work/console.png" "$work/chromium.err" "$artifacts/" 2>/dev/null
fi
row=$(grep -o '<tr id="machine-webvm">.*</tr>' "$work/dom.html" | head -n 1)
# xterm.js's DOM renderer: one div a row, text in spans (spaces as &nbsp;).
rows=$(sed -n 's/.*class="xterm-rows"//p' "$work/dom.html" | sed 's/<[^>]*>//g; s/&nbsp;/ /g')
if ! echo "$row" | grep -q '<td>running</td>'; then
    echo "FAIL console-browser: the page does not list webvm as running (dom: $(head -c 300 "$work/dom.html"))"
elif ! echo "$rows" | grep -q 'webvm login:'; then
    echo "FAIL console-browser: the terminal does not show the guest's console (rows: $(echo "$rows" | head -c 300))"
else
    echo "PASS console-browser"
fi
