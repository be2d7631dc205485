/* The REST API of `smolvm serve` (docs/openapi.yaml), without the HTTP
 * server around it (http.c): a request (method, path, body) in, a status
 * and a body out, so routing, body checks and every operation can be
 * tested without a socket.
 *
 * The daemon keeps no state of its own: each request reads the store
 * (instances) and the runtime folder (the control sockets of running VMs,
 * each VM its own process), so a daemon restarted after a kill -9 knows
 * every VM the killed one started. */
#ifndef SMOLVM_SERVE_API_H
#define SMOLVM_SERVE_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bodies larger than this are refused (413) before they are read. */
#define API_BODY_MAX (64u * 1024)

enum api_route {
    API_NO_ROUTE,
    API_LIST,    /* GET /machines */
    API_CREATE,  /* POST /machines */
    API_INSPECT, /* GET /machines/{name} */
    API_DELETE,  /* DELETE /machines/{name} */
    API_ACTION,  /* POST /machines/{name}/{start|stop|pause|resume|save|reset} */
    API_LOGS,    /* GET /machines/{name}/logs[?follow=1] */
    API_EVENTS,  /* GET /events (server-sent events) */
    API_OPENAPI, /* GET /openapi.json */
    API_METRICS, /* GET /metrics */
    API_LAYERS,  /* GET /layers */
    API_LAYER_DELETE, /* DELETE /layers/{hash} */
    API_GC,      /* POST /gc */
    API_PAGE,    /* GET / (the web console) */
    API_STATIC,  /* GET /static/{xterm.js|xterm.css} */
    API_CONSOLE, /* GET /machines/{name}/console (a WebSocket) */
    API_EXEC,    /* POST /machines/{name}/exec */
    API_TRACE,   /* GET /machines/{name}/trace */
    API_FILES_GET, /* GET /machines/{name}/files?path=P */
    API_FILES_PUT, /* PUT /machines/{name}/files?path=P (the body streamed: api_upload_*) */
};

struct api_match {
    enum api_route route;
    char name[72];   /* the machine's (or the layer's hash) for the routes under it */
    char action[16]; /* API_ACTION's verb */
    bool follow;     /* ?follow=1 (or true) */
    char file[4096]; /* ?path=, percent-decoded ("" when absent) */
};

/* Which route method and path (a query string is ignored) name. Returns
 * 0, or the HTTP status of the refusal (404: no such path, 405: the path
 * takes other methods) with *error set (a new reference). */
unsigned api_route(const char *method, const char *path, struct api_match *m, json_t **error);

/* {"message": ..., "code": ...}: code is one of a fixed set of words
 * (docs/openapi.yaml lists them), for programs to test. */
json_t *api_error(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A request body: empty (NULL *out) or one JSON object whose keys are
 * all in allowed (NULL-terminated). Returns 0, or 400 with *error set. */
unsigned api_parse_body(const char *body, size_t len, const char *const *allowed, json_t **out,
                        json_t **error);

/* A body that goes on (logs followed, events): read() blocks until it has
 * bytes (returns how many) or the body ends (-1), or the client has hung
 * up (fd, the connection's socket, says so: -1 too; fd -1: not known). */
struct api_stream {
    ssize_t (*read)(void *opaque, int fd, char *buf, size_t max);
    void (*release)(void *opaque);
    void *opaque;
    /* A console's: the client's bytes typed on it (false: gone), or NULL. */
    bool (*write)(void *opaque, const void *buf, size_t len);
};

struct api_reply {
    struct api_stream stream; /* read set: the body is this */
    unsigned status;
    json_t *json;     /* the body as JSON, or NULL */
    char *text;       /* or as text (malloc'd), of content_type */
    size_t text_len;  /* its length (0: strlen) */
    const char *content_type;
    bool websocket;   /* the stream goes to a WebSocket (the server upgrades) */
    bool sized;       /* the stream's length is known: size */
    uint64_t size;
};

/* Answers one request. exe: the smolvm executable that starts VMs. */
void api_handle(const char *method, const char *path, const char *body, size_t len,
                struct api_reply *reply);
void api_reply_release(struct api_reply *reply);

/* A body passed on as it arrives instead of held (PUT .../files: a file
 * of any size). api_upload_begin: whether method and path take one; if
 * so, *up, or the refusal in *r (sent without reading the body). Then
 * each piece of the body in order, and the reply at its end (up freed);
 * abort when the client went away. */
struct api_upload;
bool api_upload_begin(const char *method, const char *path, struct api_upload **up,
                      struct api_reply *r);
void api_upload_write(struct api_upload *up, const char *data, size_t len);
void api_upload_finish(struct api_upload *up, struct api_reply *r);
void api_upload_abort(struct api_upload *up);

/* The smolvm executable `start` runs (default: smolvm beside this one). */
void api_set_executable(const char *path);
/* How the daemon starts VMs: confined (--jail; false, for tests and
 * benchmarks only: --seccomp=off, no jail) and through a spare VMM made
 * ahead (api/spare.h). Before api_spare_make(). */
void api_set_vm_options(bool confined, bool keep_spare);
/* The spare VMM made, when kept and there is none (the daemon's start,
 * and each start after its own); ended (nothing left behind) at the
 * daemon's end. */
void api_spare_make(void);
void api_spare_end(void);

/* Generated at build time from docs/openapi.yaml. */
extern const char api_openapi_json[];

#endif
