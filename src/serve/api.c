/* Routing, errors and request bodies of the REST API. */
#include "serve/api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/control.h"
#include "serve/internal.h"
#include "util/err.h"
#include "util/hash.h"

static const char *const actions[] = {"start", "stop", "pause", "resume", "save", "reset", NULL};

json_t *api_error(const char *code, const char *fmt, ...)
{
    char message[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return json_pack("{s:s,s:s}", "message", message, "code", code);
}

void api_fail(struct api_reply *r, unsigned status, const char *code, const char *fmt, ...)
{
    char message[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    r->status = status;
    r->json = json_pack("{s:s,s:s}", "message", message, "code", code);
}

void api_fail_errno(struct api_reply *r, int err)
{
    const char *msg = err_msg()[0] ? err_msg() : strerror(err);

    switch (err) {
    case ENOENT: api_fail(r, 404, "not_found", "%s", msg); break;
    case EEXIST: api_fail(r, 409, "exists", "%s", msg); break;
    case EBUSY: api_fail(r, 409, "busy", "%s", msg); break;
    case EINVAL:
    case ERANGE:
    case E2BIG: api_fail(r, 400, "invalid_value", "%s", msg); break;
    case ETIMEDOUT: api_fail(r, 504, "timeout", "%s", msg); break;
    default: api_fail(r, 500, "failed", "%s", msg); break;
    }
    err_clear();
}

void api_ok(struct api_reply *r, unsigned status, json_t *json)
{
    r->status = status;
    r->json = json;
}

/* One path segment of at most max-1 bytes into out; the rest after it. */
static const char *segment(const char *p, char *out, size_t max)
{
    size_t n = strcspn(p, "/");
    if (n == 0 || n >= max)
        return NULL;
    memcpy(out, p, n);
    out[n] = 0;
    return p + n;
}

static unsigned no_route(const char *path, json_t **error)
{
    *error = api_error("no_route", "no such path: %s", path);
    return 404;
}

static unsigned wrong_method(const char *method, const char *path, const char *allowed,
                             json_t **error)
{
    *error = api_error("method_not_allowed", "%s %s: this path takes %s", method, path, allowed);
    return 405;
}

static unsigned machine_route(const char *method, const char *full, const char *p,
                              struct api_match *m, json_t **error)
{
    if (!(p = segment(p, m->name, sizeof(m->name))))
        return no_route(full, error);
    if (!control_name_ok(m->name)) {
        *error = api_error("invalid_name", "'%s' is not a machine name (1-64 letters, digits, "
                                           "'.', '_', '-', not starting with '.' or '-')", m->name);
        return 400;
    }
    if (!*p) {
        m->route = strcmp(method, "GET") == 0 ? API_INSPECT : strcmp(method, "DELETE") == 0 ? API_DELETE : API_NO_ROUTE;
        return m->route ? 0 : wrong_method(method, full, "GET, DELETE", error);
    }
    if (!(p = segment(p + 1, m->action, sizeof(m->action))) || *p)
        return no_route(full, error);
    if (strcmp(m->action, "exec") == 0) {
        m->route = API_EXEC;
        return strcmp(method, "POST") == 0 ? 0 : wrong_method(method, full, "POST", error);
    }
    if (strcmp(m->action, "files") == 0) {
        m->route = strcmp(method, "GET") == 0   ? API_FILES_GET
                   : strcmp(method, "PUT") == 0 ? API_FILES_PUT
                                                : API_NO_ROUTE;
        if (!m->route)
            return wrong_method(method, full, "GET, PUT", error);
        if (!m->file[0]) {
            *error = api_error("invalid_value", "files takes ?path=PATH (the file in the guest)");
            return 400;
        }
        return 0;
    }
    if (strcmp(m->action, "trace") == 0) {
        m->route = API_TRACE;
        return strcmp(method, "GET") == 0 ? 0 : wrong_method(method, full, "GET", error);
    }
    if (strcmp(m->action, "logs") == 0 || strcmp(m->action, "console") == 0) {
        m->route = m->action[0] == 'l' ? API_LOGS : API_CONSOLE;
        return strcmp(method, "GET") == 0 ? 0 : wrong_method(method, full, "GET", error);
    }
    for (int i = 0; actions[i]; i++)
        if (strcmp(m->action, actions[i]) == 0) {
            m->route = API_ACTION;
            return strcmp(method, "POST") == 0 ? 0 : wrong_method(method, full, "POST", error);
        }
    return no_route(full, error);
}

/* Whether query (after '?') has follow=1 or follow=true. */
static bool follows(const char *query)
{
    char copy[256], *save = NULL;
    snprintf(copy, sizeof(copy), "%s", query);
    for (char *arg = strtok_r(copy, "&", &save); arg; arg = strtok_r(NULL, "&", &save))
        if (strcmp(arg, "follow=1") == 0 || strcmp(arg, "follow=true") == 0)
            return true;
    return false;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* query's path=, percent-decoded into out (size bytes); false when it is
 * not there, too long, or holds a NUL or a bad escape. */
static bool query_path(const char *query, char *out, size_t size)
{
    for (const char *arg = query; arg; arg = strchr(arg, '&') ? strchr(arg, '&') + 1 : NULL) {
        size_t n = 0;
        if (strncmp(arg, "path=", 5) != 0)
            continue;
        for (const char *p = arg + 5; *p && *p != '&'; p++) {
            int c = (unsigned char)*p;
            if (c == '%') {
                int hi = hex_digit(p[1]), lo = hi < 0 ? -1 : hex_digit(p[2]);
                if (lo < 0)
                    return false;
                c = hi << 4 | lo;
                p += 2;
            } else if (c == '+') {
                c = ' ';
            }
            if (c == 0 || n + 1 >= size)
                return false;
            out[n++] = (char)c;
        }
        out[n] = 0;
        return n > 0;
    }
    return false;
}

unsigned api_route(const char *method, const char *path, struct api_match *m, json_t **error)
{
    char full[256];

    size_t n = strcspn(path, "?");

    memset(m, 0, sizeof(*m));
    *error = NULL;
    if (n >= sizeof(full)) {
        *error = api_error("no_route", "no such path (%zu bytes long)", n);
        return 404;
    }
    memcpy(full, path, n);
    full[n] = 0;
    m->follow = strchr(path, '?') && follows(strchr(path, '?') + 1);
    if (strchr(path, '?') && !query_path(strchr(path, '?') + 1, m->file, sizeof(m->file)))
        m->file[0] = 0;
    if (strcmp(full, "/machines") == 0 || strcmp(full, "/machines/") == 0) {
        m->route = strcmp(method, "GET") == 0 ? API_LIST : strcmp(method, "POST") == 0 ? API_CREATE : API_NO_ROUTE;
        return m->route ? 0 : wrong_method(method, full, "GET, POST", error);
    }
    if (strncmp(full, "/machines/", 10) == 0)
        return machine_route(method, full, full + 10, m, error);
    if (strcmp(full, "/layers") == 0) {
        m->route = API_LAYERS;
        return strcmp(method, "GET") == 0 ? 0 : wrong_method(method, full, "GET", error);
    }
    if (strncmp(full, "/layers/", 8) == 0) {
        const char *rest = segment(full + 8, m->name, sizeof(m->name));
        if (!rest || *rest)
            return no_route(full, error);
        if (!hash_is_hex(m->name)) {
            *error = api_error("invalid_name", "'%s' is not a layer's hash (64 hex digits)",
                               m->name);
            return 400;
        }
        m->route = API_LAYER_DELETE;
        return strcmp(method, "DELETE") == 0 ? 0 : wrong_method(method, full, "DELETE", error);
    }
    if (strcmp(full, "/") == 0 || strcmp(full, "/static/xterm.js") == 0 ||
        strcmp(full, "/static/xterm.css") == 0) {
        m->route = full[1] ? API_STATIC : API_PAGE;
        snprintf(m->name, sizeof(m->name), "%s", full[1] ? strrchr(full, '/') + 1 : "");
        return strcmp(method, "GET") == 0 ? 0 : wrong_method(method, full, "GET", error);
    }
    if (strcmp(full, "/gc") == 0) {
        m->route = API_GC;
        return strcmp(method, "POST") == 0 ? 0 : wrong_method(method, full, "POST", error);
    }
    if (strcmp(full, "/openapi.json") == 0 || strcmp(full, "/metrics") == 0 ||
        strcmp(full, "/events") == 0) {
        m->route = full[1] == 'o' ? API_OPENAPI : full[1] == 'm' ? API_METRICS : API_EVENTS;
        return strcmp(method, "GET") == 0 ? 0 : wrong_method(method, full, "GET", error);
    }
    return no_route(full, error);
}

unsigned api_parse_body(const char *body, size_t len, const char *const *allowed, json_t **out,
                        json_t **error)
{
    json_error_t e;
    const char *key;
    json_t *value, *j;

    *out = NULL;
    *error = NULL;
    if (len == 0)
        return 0;
    if (len > API_BODY_MAX) {
        *error = api_error("too_large", "a body holds at most %u bytes", API_BODY_MAX);
        return 413;
    }
    j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        *error = api_error("bad_json", "the body is not JSON: %s (at byte %d)", e.text, e.position);
        return 400;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *error = api_error("bad_json", "the body must be a JSON object");
        return 400;
    }
    json_object_foreach(j, key, value) {
        bool known = false;
        for (int i = 0; allowed[i] && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known) {
            char list[512] = "";
            for (int i = 0; allowed[i]; i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                         allowed[i]);
            *error = api_error("unknown_field", "unknown field '%s' (this body takes: %s)", key,
                               allowed[0] ? list : "no fields");
            json_decref(j);
            return 400;
        }
    }
    *out = j;
    return 0;
}

static void openapi(struct api_reply *r)
{
    r->status = 200;
    r->text = strdup(api_openapi_json);
    r->content_type = "application/json";
    if (!r->text)
        api_fail(r, 500, "failed", "out of memory");
}

void api_handle(const char *method, const char *path, const char *body, size_t len,
                struct api_reply *r)
{
    struct api_match m;
    json_t *error, *j = NULL;
    const char *const *fields = api_no_fields;
    unsigned status;

    memset(r, 0, sizeof(*r));
    if ((status = api_route(method, path, &m, &error)) != 0) {
        api_ok(r, status, error);
        return;
    }
    if (m.route == API_CREATE)
        fields = api_create_fields;
    else if (m.route == API_ACTION && strcmp(m.action, "save") == 0)
        fields = api_save_fields;
    else if (m.route == API_ACTION && strcmp(m.action, "stop") == 0)
        fields = api_stop_fields;
    else if (m.route == API_EXEC)
        fields = api_exec_fields;
    if (m.route != API_FILES_PUT && (status = api_parse_body(body, len, fields, &j, &error)) != 0) {
        api_ok(r, status, error);
        return;
    }
    switch (m.route) {
    case API_LIST: machines_list(r); break;
    case API_CREATE: machines_create(j, r); break;
    case API_INSPECT: machines_inspect(m.name, r); break;
    case API_DELETE: machines_delete(m.name, r); break;
    case API_ACTION: machines_action(m.name, m.action, j, r); break;
    case API_LOGS: machines_logs(m.name, m.follow, r); break;
    case API_EVENTS: machines_events(r); break;
    case API_OPENAPI: openapi(r); break;
    case API_METRICS: machines_metrics(r); break;
    case API_LAYERS: layers_list(r); break;
    case API_LAYER_DELETE: layers_delete(m.name, r); break;
    case API_GC: layers_gc(r); break;
    case API_PAGE: web_page(r); break;
    case API_STATIC: web_static(m.name, r); break;
    case API_CONSOLE: machines_console(m.name, r); break;
    case API_EXEC: guest_exec(m.name, j, r); break;
    case API_TRACE: machines_trace(m.name, r); break;
    case API_FILES_GET: guest_file_get(m.name, m.file, r); break;
    case API_FILES_PUT: { /* a body held whole (http.c streams it) */
        struct api_upload *up;
        if (api_upload_begin(method, path, &up, r)) {
            api_upload_write(up, body, len);
            api_upload_finish(up, r);
        }
        break;
    }
    case API_NO_ROUTE: break;
    }
    json_decref(j);
    err_clear();
}

void api_reply_release(struct api_reply *r)
{
    if (r->stream.release)
        r->stream.release(r->stream.opaque);
    json_decref(r->json);
    free(r->text);
    memset(r, 0, sizeof(*r));
}
