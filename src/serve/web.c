/* The web console: GET / is a page listing the machines with buttons for
 * their verbs and a terminal (xterm.js) per running VM, fed by its console
 * over a WebSocket (GET /machines/NAME/console), what is typed going to
 * the guest; each running VM's boot trace as a chart (GET .../trace) and
 * the store's layers (GET /layers). xterm.js comes from npm
 * (tools/fetch-xterm.sh) and is not in the tree: it is looked for at run
 * time, and without it the page is one line saying how to get it. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/internal.h"

static const char page[] =
    "<!doctype html>\n"
    "<html><head><meta charset=\"utf-8\"><title>smolvm</title>\n"
    "<link rel=\"stylesheet\" href=\"/static/xterm.css\">\n"
    "<style>body{font:14px sans-serif;margin:1em}td,th{padding:.2em .6em;text-align:left}"
    ".console{margin:.5em 0 1.5em}.trace{margin:.3em 0;font:12px monospace}"
    ".trace .row{display:flex;align-items:center;height:16px}.trace .name{width:16em}"
    ".trace .bar{background:#4a7;height:12px;margin-right:.4em}</style>\n"
    "<script src=\"/static/xterm.js\"></script></head><body>\n"
    "<h1>smolvm</h1>\n"
    "<table id=\"machines\"><thead><tr><th>name</th><th>state</th><th>cpus</th><th>memory</th>"
    "<th></th></tr></thead><tbody></tbody></table>\n"
    "<div id=\"consoles\"></div>\n"
    "<h2>layers</h2>\n"
    "<table id=\"layers\"><thead><tr><th>layer</th><th>format</th><th>size</th><th>users</th>"
    "<th>message</th></tr></thead><tbody></tbody></table>\n"
    "<script>\n"
    "'use strict';\n"
    "const consoles = {};\n"
    "const path = name => '/machines/' + encodeURIComponent(name);\n"
    "async function act(name, verb) {\n"
    "  const r = await fetch(path(name) + '/' + verb, {method: 'POST'});\n"
    "  if (!r.ok) alert((await r.json()).message);\n"
    "  refresh();\n"
    "}\n"
    "function openConsole(name) {\n"
    "  if (consoles[name]) return;\n"
    "  const box = document.createElement('div'), title = document.createElement('h2'),\n"
    "        screen = document.createElement('div');\n"
    "  box.className = 'console';\n"
    "  box.id = 'console-' + name;\n"
    "  title.textContent = name;\n"
    "  const trace = document.createElement('div');\n"
    "  trace.className = 'trace';\n"
    "  trace.id = 'trace-' + name;\n"
    "  box.append(title, trace, screen);\n"
    "  showTrace(name, trace);\n"
    "  document.getElementById('consoles').append(box);\n"
    "  const term = new Terminal({convertEol: true, rows: 24, cols: 100});\n"
    "  term.open(screen);\n"
    "  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') +\n"
    "                           location.host + path(name) + '/console');\n"
    "  ws.binaryType = 'arraybuffer';\n"
    "  ws.onmessage = e => term.write(new Uint8Array(e.data));\n"
    "  ws.onclose = () => { term.write('\\r\\n[console closed]\\r\\n'); delete consoles[name]; };\n"
    "  term.onData(d => { if (ws.readyState === 1) ws.send(d); });\n"
    "  consoles[name] = {term, ws};\n"
    "}\n"
    "// The boot trace (--trace-boot's phases): a bar a phase, its length the\n"
    "// time since the VMM started.\n"
    "async function showTrace(name, box) {\n"
    "  const r = await fetch(path(name) + '/trace');\n"
    "  if (!r.ok) return;\n"
    "  const t = await r.json(), events = Object.entries(t.events).sort((a, b) => a[1] - b[1]);\n"
    "  const last = events.length ? events[events.length - 1][1] || 1 : 1;\n"
    "  box.textContent = '';\n"
    "  for (const [phase, ms] of events) {\n"
    "    const row = document.createElement('div'), label = document.createElement('span'),\n"
    "          bar = document.createElement('span'), time = document.createElement('span');\n"
    "    row.className = 'row';\n"
    "    label.className = 'name';\n"
    "    label.textContent = phase;\n"
    "    bar.className = 'bar';\n"
    "    bar.style.width = Math.max(1, 400 * ms / last) + 'px';\n"
    "    time.textContent = ms.toFixed(1) + ' ms';\n"
    "    row.append(label, bar, time);\n"
    "    box.append(row);\n"
    "  }\n"
    "}\n"
    "async function showLayers() {\n"
    "  const r = await fetch('/layers');\n"
    "  if (!r.ok) return;\n"
    "  const body = document.querySelector('#layers tbody');\n"
    "  body.textContent = '';\n"
    "  for (const l of await r.json()) {\n"
    "    const row = document.createElement('tr');\n"
    "    for (const v of [l.hash.slice(0, 12), l.format, ((l.bytes ?? 0) / 1048576).toFixed(1) +\n"
    "                     ' MiB', l.users ?? '', l.message ?? '']) {\n"
    "      const cell = document.createElement('td');\n"
    "      cell.textContent = v;\n"
    "      row.append(cell);\n"
    "    }\n"
    "    body.append(row);\n"
    "  }\n"
    "}\n"
    "async function refresh() {\n"
    "  showLayers();\n"
    "  const r = await fetch('/machines');\n"
    "  if (!r.ok) return;\n"
    "  const body = document.querySelector('#machines tbody');\n"
    "  body.textContent = '';\n"
    "  for (const m of await r.json()) {\n"
    "    const row = document.createElement('tr'), verbs = document.createElement('td');\n"
    "    row.id = 'machine-' + m.name;\n"
    "    for (const v of [m.name, m.state, m.cpus ?? '',\n"
    "                     m.mem_bytes ? (m.mem_bytes / 1048576) + ' MiB' : '']) {\n"
    "      const cell = document.createElement('td');\n"
    "      cell.textContent = v;\n"
    "      row.append(cell);\n"
    "    }\n"
    "    for (const verb of ['start', 'stop', 'pause', 'resume', 'save', 'reset']) {\n"
    "      const b = document.createElement('button');\n"
    "      b.textContent = verb;\n"
    "      b.className = 'verb-' + verb;\n"
    "      b.onclick = () => act(m.name, verb);\n"
    "      verbs.append(b);\n"
    "    }\n"
    "    row.append(verbs);\n"
    "    body.append(row);\n"
    "    if (m.state === 'running' || m.state === 'paused') openConsole(m.name);\n"
    "  }\n"
    "}\n"
    "refresh();\n"
    "setInterval(refresh, 2000);\n"
    "</script></body></html>\n";

/* The folder of the xterm npm package (lib/xterm.js, css/xterm.css), or
 * false; *looked: where it was looked for, for the error. */
static bool xterm_dir(char *out, size_t size, char *looked, size_t looked_size)
{
    const char *home = getenv("HOME"), *env = getenv("SMOLVM_XTERM_DIR");
    char cache[PATH_MAX];
    const char *candidates[3];
    int n = 0;

    snprintf(cache, sizeof(cache), "%s/.cache/smolvm-ci/npm/xterm", home ? home : "/nonexistent");
    if (env && *env)
        candidates[n++] = env;
    candidates[n++] = "/usr/share/smolvm/xterm";
    candidates[n++] = cache;
    looked[0] = 0;
    for (int i = 0; i < n; i++) {
        snprintf(out, size, "%s/lib/xterm.js", candidates[i]);
        if (access(out, R_OK) == 0) {
            snprintf(out, size, "%s", candidates[i]);
            return true;
        }
        snprintf(looked + strlen(looked), looked_size - strlen(looked), "%s%s", i ? ", " : "",
                 candidates[i]);
    }
    return false;
}

static void missing(struct api_reply *r, const char *looked)
{
    r->status = 503;
    r->content_type = "text/plain; charset=utf-8";
    if (asprintf(&r->text, "smolvm serve: the web console needs xterm.js: run tools/fetch-xterm.sh "
                           "or set SMOLVM_XTERM_DIR (looked in %s)\n", looked) < 0)
        r->text = NULL;
}

void web_page(struct api_reply *r)
{
    char dir[PATH_MAX], looked[3 * PATH_MAX];

    if (!xterm_dir(dir, sizeof(dir), looked, sizeof(looked)))
        return missing(r, looked);
    r->status = 200;
    r->content_type = "text/html; charset=utf-8";
    if (!(r->text = strdup(page)))
        api_fail(r, 500, "failed", "out of memory");
}

void web_static(const char *file, struct api_reply *r)
{
    char dir[PATH_MAX], looked[3 * PATH_MAX], path[PATH_MAX + 32];
    bool js = strcmp(file, "xterm.js") == 0;

    if (!xterm_dir(dir, sizeof(dir), looked, sizeof(looked)))
        return missing(r, looked);
    snprintf(path, sizeof(path), "%s/%s", dir, js ? "lib/xterm.js" : "css/xterm.css");
    if (!api_append_file(path, r) || !r->text) {
        free(r->text);
        r->text = NULL;
        return api_fail(r, 500, "failed", "cannot read %s", path);
    }
    r->status = 200;
    r->content_type = js ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8";
}
