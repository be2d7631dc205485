/* What the API's files share: the operations on machines (machines.c),
 * each giving the reply to send. */
#ifndef SMOLVM_SERVE_INTERNAL_H
#define SMOLVM_SERVE_INTERNAL_H

#include "serve/api.h"

void api_fail(struct api_reply *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* err_msg() as the reply, its status and code from the error number. */
void api_fail_errno(struct api_reply *r, int err);
void api_ok(struct api_reply *r, unsigned status, json_t *json);

void machines_list(struct api_reply *r);
void machines_inspect(const char *name, struct api_reply *r);
void machines_create(json_t *body, struct api_reply *r);
void machines_delete(const char *name, struct api_reply *r);
void machines_action(const char *name, const char *action, json_t *body, struct api_reply *r);
void machines_logs(const char *name, bool follow, struct api_reply *r);
void machines_events(struct api_reply *r);
void machines_metrics(struct api_reply *r);
void layers_list(struct api_reply *r);
void layers_delete(const char *hash, struct api_reply *r);
void layers_gc(struct api_reply *r);

/* A running VM's status answer (no "ok", no "name"), {"state": "busy"}
 * for one that does not take the request now, NULL when none runs. */
json_t *machine_status(const char *name);
/* {name: state} for every machine. */
json_t *machines_states(void);
/* Saves in progress: {name: {"done", "total"}} (bytes of memory). */
json_t *machines_progress(void);
/* NAME.log and NAME.log.1 (malloc'd). */
int machine_log_paths(const char *name, char **current, char **older);
/* Streams (streams.c): a log followed while its VM runs (takes current
 * and older), and state changes as server-sent events. */
int log_stream(const char *name, char *current, char *older, struct api_stream *out);
/* Makes a log stream a console's: what its client types goes to fd (a
 * connection to the VM's console socket, the stream's now). */
void log_stream_input(struct api_stream *s, int fd);
int events_stream(struct api_stream *out);

/* Whether the client on fd (a connection's socket; -1: not known) hung up. */
bool api_client_gone(int fd);

/* Appends the file's bytes to r->text (false: cannot open it). */
bool api_append_file(const char *path, struct api_reply *r);
/* The web console (web.c): the page, and xterm.js's files ("xterm.js",
 * "xterm.css"). */
void web_page(struct api_reply *r);
void web_static(const char *file, struct api_reply *r);
/* A running VM's console for a WebSocket: its log, then what it writes. */
void machines_console(const char *name, struct api_reply *r);
/* A running VM's boot trace ({"unit", "events", ...}: --trace-boot --json). */
void machines_trace(const char *name, struct api_reply *r);
/* The same as *trace (0), or -ENOENT (none runs), -ENOTSUP (an older
 * smolvm: no trace), another -errno (err_msg() says why). */
int machine_trace(const char *name, json_t **trace);

/* Through the guest agent (guest.c): a command's output as it comes (one
 * JSON object a line: {"stdout"}, {"stderr"}, {"error"}, last
 * {"exit_code"[, "signal"]}), a file's bytes. */
void guest_exec(const char *name, json_t *body, struct api_reply *r);
void guest_file_get(const char *name, const char *path, struct api_reply *r);

/* The fields each body may have. */
extern const char *const api_create_fields[];
extern const char *const api_save_fields[];
extern const char *const api_stop_fields[];
extern const char *const api_exec_fields[];
extern const char *const api_no_fields[];

#endif
