#!/usr/bin/env python3
"""A small client of the Chrome DevTools Protocol for tests/api/console_browser.sh:
it drives a headless Chromium started with --remote-debugging-port through
the page's WebSocket (RFC 6455, written here: Debian's python3 has no
WebSocket module by default).

  cdp.py PORT URL ARTIFACT_DIR

Opens URL, then: the list shows webvm running and its terminal the guest's
login prompt; a command typed in the terminal ("uname -n" and Enter) comes
back with its output; the boot trace is a chart of its phases and the
store's layers a table; the stop button stops the VM (the list says
"stopped"). A screenshot after each step goes to ARTIFACT_DIR. Exit 0 when
all pass, else one line saying what was seen."""
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.request


class Page:
    def __init__(self, ws_url):
        host_port, path = ws_url[len("ws://"):].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("DevTools closed the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {head[:100]!r}")
        self.next_id = 0

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            data += chunk
        return data

    def _frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        return b0 & 0x0F, b0 & 0x80, self._read(n)

    def _message(self):
        opcode, fin, data = self._frame()
        while not fin:
            _, fin, more = self._frame()
            data += more
        return json.loads(data) if opcode in (1, 2) else None

    def call(self, method, **params):
        self.next_id += 1
        body = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(body)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
        while True:
            m = self._message()
            if m and m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        return r.get("result", {}).get("value")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def wait(self, expression, what, seconds=60):
        """Polls until expression is true; the last value seen otherwise."""
        deadline = time.monotonic() + seconds
        value = None
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value is True:
                return
            time.sleep(0.2)
        raise AssertionError(f"{what} (after {seconds} s)")


ROW_STATE = ("(() => { const r = document.getElementById('machine-webvm');"
             " return r ? r.children[1].textContent : 'no row'; })()")
TERMINAL = ("(() => { const t = document.querySelector('#console-webvm .xterm-rows');"
            " return t ? t.textContent.replace(/\\u00a0/g, ' ') : ''; })()")


def main():
    port, url, artifacts = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(artifacts, exist_ok=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [p for p in json.load(r) if p.get("type") == "page"]
            if pages:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("FAIL console-browser: no page on Chromium's DevTools port")
        time.sleep(0.2)
    page = Page(pages[0]["webSocketDebuggerUrl"])
    page.call("Page.enable")
    page.call("Page.navigate", url=url)
    step = "the list"
    try:
        page.wait(f"{ROW_STATE} === 'running'", "the list does not show webvm running")
        step = "the guest's prompt"
        page.wait(f"{TERMINAL}.includes('webvm login:')",
                  "the terminal does not show the guest's prompt")
        page.screenshot(os.path.join(artifacts, "1-console.png"))
        step = "a typed command"
        page.js("document.querySelector('#console-webvm .xterm-helper-textarea').focus()")
        page.call("Input.insertText", text="uname -n")
        page.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter",
                  windowsVirtualKeyCode=13, text="\r")
        page.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter",
                  windowsVirtualKeyCode=13)
        page.wait(f"{TERMINAL}.includes('typed-on-webvm')",
                  "the typed command's output does not appear")
        page.screenshot(os.path.join(artifacts, "2-typed.png"))
        step = "the boot trace and the layers"
        page.wait("document.querySelectorAll('#trace-webvm .bar').length === 4 && "
                  "document.querySelector('#trace-webvm').textContent.includes('init_start')",
                  "the boot trace chart does not show the VM's 4 phases")
        page.wait("document.querySelectorAll('#layers tbody tr').length >= 1",
                  "the layers table is empty")
        page.screenshot(os.path.join(artifacts, "3-trace-layers.png"))
        step = "the stop button"
        page.js("document.querySelector('#machine-webvm .verb-stop').click()")
        page.wait(f"{ROW_STATE} === 'stopped'", "the stop button does not stop webvm")
        page.screenshot(os.path.join(artifacts, "4-stopped.png"))
    except AssertionError as e:
        page.screenshot(os.path.join(artifacts, "failed.png"))
        print(f"FAIL console-browser: {e}; state {page.js(ROW_STATE)!r}, terminal "
              f"{page.js(TERMINAL)[:300]!r}")
        sys.exit(1)
    except Exception as e:  # the browser or the page went away
        sys.exit(f"FAIL console-browser: at {step}: {e}")
    print("PASS console-browser")


if __name__ == "__main__":
    main()
