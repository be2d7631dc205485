/* Exec and files through the guest agent (POST /machines/NAME/exec, GET and
 * PUT /machines/NAME/files?path=P): the requests are api/agent.c's, the
 * ones `smolvm exec` and `smolvm cp` make. Output and file bytes are
 * streamed as the agent sends them; an upload goes on to the agent as it
 * arrives. A client that goes away ends its connection to the agent,
 * which kills the command. */
#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../guest/agent_proto.h"
#include "api/agent.h"
#include "serve/internal.h"
#include "util/err.h"

/* How often a command that says nothing is checked for a client gone. */
#define CLIENT_CHECK_MS 1000
#define ARGS_MAX 4096
#define ENV_MAX 256

const char *const api_exec_fields[] = {"command", "env", "cwd", "user", "stdin", NULL};

/* The reply for agent_open()'s or a request's failure r. */
static void agent_fail(struct api_reply *r, int e)
{
    const char *msg = err_msg();

    switch (-e) {
    case ENOENT: api_fail(r, 404, "not_found", "%s", msg); break;
    case ECONNREFUSED: api_fail(r, 409, "refused", "%s", msg); break;
    case ETIMEDOUT: api_fail(r, 504, "timeout", "%s", msg); break;
    case EINVAL:
    case E2BIG: api_fail(r, 400, "invalid_value", "%s", msg); break;
    case EIO: api_fail(r, 404, "not_found", "%s", msg); break; /* the agent's: no such file */
    default: api_fail(r, 500, "failed", "%s", msg); break;
    }
    err_clear();
}

/* ---- exec ---- */

struct exec_stream {
    int conn;
    uint8_t *frame; /* AGENT_FRAME_MAX + 1 */
    char *line;     /* the JSON line going out */
    size_t len, at;
    bool ended;
};

static bool output_line(struct exec_stream *x, json_t *j)
{
    free(x->line);
    x->line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!x->line)
        return false;
    x->len = strlen(x->line);
    x->line[x->len++] = '\n'; /* over the NUL: the line is counted, not terminated */
    x->at = 0;
    return true;
}

/* The agent's next frame as a line ("" for one that says nothing here);
 * false when the client went away meanwhile. */
static bool next_line(struct exec_stream *x, int client)
{
    struct pollfd p = {.fd = x->conn, .events = POLLIN};
    struct agent_event ev;
    json_t *j;

    while (poll(&p, 1, CLIENT_CHECK_MS) == 0)
        if (api_client_gone(client))
            return false;
    if (agent_exec_next(x->conn, x->frame, &ev) <= 0) {
        x->ended = true;
        return output_line(x, json_pack("{s:s}", "error", "the agent closed the connection "
                                                          "(did it die, or the VM stop?)"));
    }
    switch (ev.kind) {
    case AGENT_EVENT_STDOUT:
    case AGENT_EVENT_STDERR:
        return output_line(x, json_pack("{s:o}", ev.kind == AGENT_EVENT_STDOUT ? "stdout" : "stderr",
                                        agent_text_json((char *)ev.data, ev.len)));
    case AGENT_EVENT_ERROR:
        return output_line(x, json_pack("{s:o}", "error",
                                        agent_text_json((char *)ev.data, ev.len)));
    case AGENT_EVENT_EXIT:
        x->ended = true;
        j = json_pack("{s:i}", "exit_code", ev.exit_code);
        if (ev.signal)
            json_object_set_new(j, "signal", json_integer(ev.signal));
        return output_line(x, j);
    case AGENT_EVENT_OTHER:
        break;
    }
    x->len = x->at = 0;
    return true;
}

static ssize_t exec_read(void *opaque, int fd, char *buf, size_t max)
{
    struct exec_stream *x = opaque;
    size_t n;

    while (x->at == x->len)
        if (x->ended || !next_line(x, fd))
            return -1;
    n = x->len - x->at < max ? x->len - x->at : max;
    memcpy(buf, x->line + x->at, n);
    x->at += n;
    return (ssize_t)n;
}

static void exec_release(void *opaque)
{
    struct exec_stream *x = opaque;
    close(x->conn); /* the agent kills a command whose client went away */
    free(x->frame);
    free(x->line);
    free(x);
}

/* A JSON array of at most max strings into out (pointers into it). -1 when
 * it is not one; the count otherwise. */
static int strings(json_t *array, char **out, unsigned max, bool need_equals)
{
    size_t i;
    json_t *v;

    if (!json_is_array(array) || json_array_size(array) > max)
        return -1;
    json_array_foreach(array, i, v) {
        const char *s = json_string_value(v);
        if (!s || (need_equals && (!strchr(s, '=') || s[0] == '=')))
            return -1;
        out[i] = (char *)s;
    }
    return (int)json_array_size(array);
}

static bool optional_string(json_t *body, const char *key, const char **out)
{
    json_t *v = json_object_get(body, key);
    *out = json_string_value(v);
    return !v || *out;
}

/* The stdin field's bytes as STDIN frames, then its end. */
static int send_input(int conn, const char *text)
{
    size_t len = strlen(text);
    for (size_t at = 0; at < len; at += AGENT_CHUNK) {
        uint32_t n = len - at < AGENT_CHUNK ? (uint32_t)(len - at) : AGENT_CHUNK;
        if (agent_send(conn, AGENT_STDIN, text + at, n) < 0)
            return -EPIPE;
    }
    return agent_send(conn, AGENT_STDIN, NULL, 0) < 0 ? -EPIPE : 0;
}

void guest_exec(const char *name, json_t *body, struct api_reply *r)
{
    char **args = calloc(ARGS_MAX, sizeof(*args)), *env[ENV_MAX];
    struct agent_exec e = {.argv = args, .env = env};
    const char *input = NULL;
    struct exec_stream *x = NULL;
    int argc, envc = 0, conn = -1, rc;

    if (!args)
        return api_fail(r, 500, "failed", "out of memory");
    argc = body ? strings(json_object_get(body, "command"), args, ARGS_MAX, false) : -1;
    if (argc <= 0) {
        free(args);
        return api_fail(r, 400, "invalid_value", "exec needs \"command\": a non-empty array of "
                                                 "strings (at most %d)", ARGS_MAX);
    }
    if (json_object_get(body, "env") &&
        (envc = strings(json_object_get(body, "env"), env, ENV_MAX, true)) < 0) {
        free(args);
        return api_fail(r, 400, "invalid_value", "\"env\" is an array of \"K=V\" strings (at most "
                                                 "%d)", ENV_MAX);
    }
    if (!optional_string(body, "cwd", &e.cwd) || !optional_string(body, "user", &e.user) ||
        !optional_string(body, "stdin", &input)) {
        free(args);
        return api_fail(r, 400, "invalid_value", "\"cwd\", \"user\" and \"stdin\" are strings");
    }
    e.argc = (unsigned)argc;
    e.env_count = (unsigned)envc;
    e.input = input != NULL;
    if ((rc = agent_open(name, 0, &conn)) < 0 || (rc = agent_exec_send(conn, &e)) < 0 ||
        (input && (rc = send_input(conn, input)) < 0)) {
        if (rc == -EPIPE)
            err_plain(EPIPE, "the agent of '%s' closed the connection", name);
        agent_fail(r, rc);
    } else if (!(x = calloc(1, sizeof(*x))) || !(x->frame = malloc(AGENT_FRAME_MAX + 1))) {
        api_fail(r, 500, "failed", "out of memory");
    } else {
        x->conn = conn;
        conn = -1;
        r->status = 200;
        r->content_type = "application/x-ndjson";
        r->stream = (struct api_stream){.read = exec_read, .release = exec_release, .opaque = x};
        x = NULL;
    }
    if (x)
        free(x->frame);
    free(x);
    if (conn >= 0)
        close(conn);
    free(args);
}

/* ---- files ---- */

struct file_stream {
    int conn;
    uint8_t *frame;
    uint32_t len, at;
    bool ended;
};

static ssize_t file_read(void *opaque, int fd, char *buf, size_t max)
{
    struct file_stream *f = opaque;
    size_t n;
    (void)fd;

    while (f->at == f->len) {
        if (f->ended || agent_data_next(f->conn, f->frame, &f->len) <= 0) {
            f->ended = true; /* an error cuts the body short of its length: the client sees it */
            err_clear();
            return -1;
        }
        f->at = 0;
    }
    n = f->len - f->at < max ? f->len - f->at : max;
    memcpy(buf, f->frame + f->at, n);
    f->at += (uint32_t)n;
    return (ssize_t)n;
}

static void file_release(void *opaque)
{
    struct file_stream *f = opaque;
    close(f->conn);
    free(f->frame);
    free(f);
}

void guest_file_get(const char *name, const char *path, struct api_reply *r)
{
    struct file_stream *f = calloc(1, sizeof(*f));
    uint32_t len = 0, at = 0;
    const char *type, *size;
    int rc;

    if (!f || !(f->frame = malloc(AGENT_FRAME_MAX + 1))) {
        free(f);
        return api_fail(r, 500, "failed", "out of memory");
    }
    f->conn = -1;
    if ((rc = agent_open(name, 0, &f->conn)) < 0 ||
        (rc = agent_get_start(f->conn, path, f->frame, &len)) < 0) {
        agent_fail(r, rc);
        return f->conn >= 0 ? file_release(f) : (free(f->frame), free(f));
    }
    type = agent_next_field(f->frame, len, &at, "type");
    if (type && strcmp(type, "d") == 0) {
        api_fail(r, 400, "invalid_value", "'%s' is a folder ('smolvm cp' copies folders)", path);
        return file_release(f);
    }
    at = 0;
    size = agent_next_field(f->frame, len, &at, "size");
    r->status = 200;
    r->content_type = "application/octet-stream";
    r->sized = size != NULL;
    r->size = size ? strtoull(size, NULL, 10) : 0;
    r->stream = (struct api_stream){.read = file_read, .release = file_release, .opaque = f};
}

struct api_upload {
    int conn;
    uint8_t *frame;
    int error; /* the first send that failed: the agent said why, or went away */
    uint64_t bytes;
    char path[4096];
};

bool api_upload_begin(const char *method, const char *path, struct api_upload **out,
                      struct api_reply *r)
{
    struct api_match m;
    json_t *error = NULL;
    struct api_upload *up;
    struct stat st = {.st_mode = 0644};
    char base[4096];
    int rc;

    memset(r, 0, sizeof(*r));
    *out = NULL;
    if (api_route(method, path, &m, &error) != 0 || m.route != API_FILES_PUT) {
        json_decref(error);
        return false;
    }
    if (!(up = calloc(1, sizeof(*up))) || !(up->frame = malloc(AGENT_FRAME_MAX + 1))) {
        free(up);
        api_fail(r, 500, "failed", "out of memory");
        return true;
    }
    snprintf(up->path, sizeof(up->path), "%s", m.file);
    snprintf(base, sizeof(base), "%s", m.file);
    st.st_mtime = time(NULL);
    up->conn = -1;
    if ((rc = agent_open(m.name, 0, &up->conn)) < 0 ||
        (rc = agent_put_start(up->conn, up->path, basename(base), &st, false)) < 0) {
        agent_fail(r, rc);
        api_upload_abort(up);
        return true;
    }
    *out = up;
    return true;
}

void api_upload_write(struct api_upload *up, const char *data, size_t len)
{
    for (size_t at = 0; at < len && !up->error; at += AGENT_CHUNK) {
        uint32_t n = len - at < AGENT_CHUNK ? (uint32_t)(len - at) : AGENT_CHUNK;
        up->error = agent_data_send(up->conn, data + at, n);
        if (!up->error)
            up->bytes += n;
    }
}

void api_upload_finish(struct api_upload *up, struct api_reply *r)
{
    int rc = agent_put_finish(up->conn, up->frame);

    memset(r, 0, sizeof(*r));
    if (rc == 0)
        api_ok(r, 200, json_pack("{s:s,s:I}", "path", up->path, "bytes", (json_int_t)up->bytes));
    else if (rc == -EIO)
        api_fail(r, 400, "invalid_value", "%s", err_msg());
    else
        agent_fail(r, rc);
    err_clear();
    api_upload_abort(up);
}

void api_upload_abort(struct api_upload *up)
{
    if (!up)
        return;
    if (up->conn >= 0)
        close(up->conn); /* the agent drops a file that did not end: nothing half-written */
    free(up->frame);
    free(up);
}
