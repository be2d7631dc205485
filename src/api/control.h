/* The control socket of a running VM: a unix socket (0600) named after the
 * VM in the first per-user runtime folder (0700) where one can be made:
 * $XDG_RUNTIME_DIR/smolvm, /run/user/UID/smolvm, ${TMPDIR:-/tmp}/smolvm-UID.
 * Only this user and root are served (SO_PEERCRED).
 * One request per connection: a line of JSON {"command": ..., ...}, read
 * whole within 2 s; an acknowledgement line {"progress":0,"total":0}; then
 * progress lines and one line of JSON: {"ok": true, ...} or
 * {"ok": false, "error": "..."}. */
#ifndef SMOLVM_API_CONTROL_H
#define SMOLVM_API_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* A VM name: 1-CONTROL_NAME_MAX of [A-Za-z0-9._-], not starting with '.' or '-'. */
#define CONTROL_NAME_MAX 64
bool control_name_ok(const char *name);

/* The first usable runtime folder, created if missing (malloc'd). */
int control_dir(char **out) __attribute__((warn_unused_result));

/* A confined VM's own runtime folder, DIR/NAME.vm in control_dir()'s
 * (0700, made if missing; malloc'd): the one place of the runtime folder
 * its jail lets it write (docs/security.md). What it makes once confined
 * lives there: its vsock socket, a detached VM's log, a save or migration
 * on its way out; the names `smolvm ps` and the user's programs look for
 * (DIR/NAME.vsock, DIR/NAME.log) are links into it. */
#define CONTROL_VM_DIR_SUFFIX ".vm"
int control_vm_dir(const char *name, char **out) __attribute__((warn_unused_result));

/* Answers one request; returns a new reference. */
typedef json_t *(*control_handler)(void *opaque, const char *command, json_t *request);

struct control;
/* Binds NAME's socket; fails if a live VM already has the name. */
int control_open(const char *name, control_handler fn, void *opaque, struct control **out)
    __attribute__((warn_unused_result));
int control_listen_fd(const struct control *c);
/* Another socket of the VM beside its control socket, DIR/NAME.SUFFIX (0600,
 * listening, non-blocking; e.g. "console": input for its console). Returns
 * the fd, its path (malloc'd) in *path. */
int control_listen_beside(const struct control *c, const char *suffix, char **path)
    __attribute__((warn_unused_result));
/* A connection to VM NAME's socket NAME.SUFFIX ("sock": the control socket),
 * sends bounded to 5 s: the fd, or -ENOENT (no such VM) / -ETIMEDOUT. */
int control_connect(const char *name, const char *suffix) __attribute__((warn_unused_result));
/* Whether the peer of a unix connection is this user or root (SO_PEERCRED);
 * says on stderr whom it refused. */
bool control_peer_allowed(int fd);
/* Serves one connection waiting on the listening socket. */
void control_accept(struct control *c);
/* While answering: the descriptor the client passed with its request
 * (SCM_RIGHTS; migrate's link to the destination), now the handler's to
 * close; -1 when none came. One not taken is closed with the answer. */
int control_take_fd(struct control *c);
/* Closes and removes the socket. */
void control_close(struct control *c);
/* Closes this process's handle only (after fork, the other keeps serving). */
void control_forget(struct control *c);

/* While answering: tells the client how far long work has got (a line
 * {"progress": done, "total": total} before the answer). */
void control_progress(struct control *c, uint64_t done, uint64_t total);
/* While answering: something for the client to show as it happens (a line
 * {"note": note}; note consumed), such as each round of a migration. */
void control_note(struct control *c, json_t *note);

/* Sends a request to VM NAME and returns its answer (new reference).
 * Fails with -ETIMEDOUT when the VM does not acknowledge within 5 s (busy
 * with another request) or does not answer within CONTROL_WORK_MS after. */
#define CONTROL_WORK_MS 30000L
int control_request(const char *name, json_t *request, json_t **answer)
    __attribute__((warn_unused_result));
/* The same, with fn called for each progress line and work_ms the limit
 * between lines once acknowledged (-1: none, for a save that takes as long
 * as it takes; the client still learns when the VM dies). */
typedef void (*control_progress_fn)(void *opaque, uint64_t done, uint64_t total);
int control_request_progress(const char *name, json_t *request, json_t **answer, long work_ms,
                             control_progress_fn fn, void *opaque)
    __attribute__((warn_unused_result));
/* The same, with note_fn called for each note line (the note is the
 * reply's: take a reference to keep it). */
typedef void (*control_note_fn)(void *opaque, json_t *note);
int control_request_notes(const char *name, json_t *request, json_t **answer, long work_ms,
                          control_progress_fn fn, control_note_fn note_fn, void *opaque)
    __attribute__((warn_unused_result));

/* The same, passing pass_fd along with the request (the handler takes it
 * with control_take_fd()). pass_fd is consumed: closed once sent, so that
 * the VM holds the only copy (a socket's peer sees its end when the VM
 * closes it). */
int control_request_passing(const char *name, json_t *request, int pass_fd, json_t **answer,
                            long work_ms, control_progress_fn fn, control_note_fn note_fn,
                            void *opaque) __attribute__((warn_unused_result));

/* Helpers for handlers. */
json_t *control_ok(void);
json_t *control_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
