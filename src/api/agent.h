/* Reaching a VM's guest agent (guest/agent.c, vsock port AGENT_PORT)
 * through the host socket of its vsock device (Firecracker's protocol:
 * "CONNECT <port>\n", "OK <hostport>\n"). Used by `smolvm exec`, `cp` and
 * `shell`, and by the VMM itself for the hello it sends after a start
 * (the clock and hostname of this start). Protocol: docs/agent-protocol.md. */
#ifndef SMOLVM_API_AGENT_H
#define SMOLVM_API_AGENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

/* A connection to the agent behind vsock_path, retried while nobody
 * listens or the guest does not answer, for up to wait_ms (a VM still
 * booting). 0 and *out, or -ECONNREFUSED (no agent listening: the guest's
 * RST), -ETIMEDOUT (no answer: no driver, or a paused VM), -ENOENT (no
 * such socket), another -errno. */
int agent_connect(const char *vsock_path, long wait_ms, int *out)
    __attribute__((warn_unused_result));

/* The identity of this start, sent to the agent (an 'H' frame): the
 * host's wall clock (the agent sets the guest's when it is more than 1 s
 * off: a restored guest has the clock of its save) and, unless NULL, the
 * hostname. Waits up to wait_ms for the agent. 0, or a negative errno
 * with err_*() saying why (the agent's own message when it refused). */
int agent_hello(const char *vsock_path, const char *hostname, long wait_ms)
    __attribute__((warn_unused_result));
/* The same, from a thread of the VMM that runs beside the guest (the
 * agent's answer is the guest's to make): the thread first takes the
 * vsock device's seccomp filter, as every thread of a running VM has one. */
int agent_hello_confined(const char *vsock_path, const char *hostname, long wait_ms)
    __attribute__((warn_unused_result));

/* A hostname the agent takes: 1-64 of A-Z a-z 0-9 '-' '.', not starting
 * with '-' or '.'. */
bool agent_hostname_ok(const char *name);

/* ---- the requests, as both the CLI (exec, cp, shell) and the REST API
 * (smolvm serve: exec, files) make them; frames are read into a buffer of
 * AGENT_FRAME_MAX + 1 bytes the caller owns. ---- */

/* RUNTIME/NAME.vsock (malloc'd), NULL without a runtime folder. */
char *agent_vsock_path(const char *name);

/* A connection to VM NAME's agent, retried for up to wait_ms while it does
 * not listen. 0 and *out, or a negative errno with err_*() saying what
 * is wrong in the user's words: -ENOENT no such VM (or no vsock device:
 * the message says which), -ETIMEDOUT no answer (paused?),
 * -ECONNREFUSED no agent listening. */
int agent_open(const char *name, long wait_ms, int *out) __attribute__((warn_unused_result));

struct agent_exec {
    char *const *argv; /* at least one */
    unsigned argc;
    char *const *env; /* K=V */
    unsigned env_count;
    const char *cwd, *user; /* NULL: the agent's defaults */
    bool input;             /* STDIN frames follow (else the command reads /dev/null) */
    bool tty;
    unsigned rows, cols; /* the tty's size; 0: not known */
};

/* Sends the E frame (with the host's clock). 0, -E2BIG (too long for a
 * frame), -EPIPE (the agent went away). */
int agent_exec_send(int conn, const struct agent_exec *e) __attribute__((warn_unused_result));

enum agent_event_kind { AGENT_EVENT_STDOUT, AGENT_EVENT_STDERR, AGENT_EVENT_ERROR,
                        AGENT_EVENT_EXIT, AGENT_EVENT_OTHER };
struct agent_event {
    enum agent_event_kind kind;
    const uint8_t *data; /* output, or the error's message (in buf) */
    uint32_t len;
    int exit_code; /* EXIT: the status, 128+N when signal N killed it */
    int signal;    /* EXIT: N, or 0 */
};
/* A command's output as a JSON string: bytes that are not UTF-8 become '?'
 * (in data). */
json_t *agent_text_json(char *data, size_t len);

/* The next frame of an exec. 1 and *ev; 0 when the agent closed. */
int agent_exec_next(int conn, uint8_t *buf, struct agent_event *ev);

/* The next frame, which must be of type want: 0 and its payload's length,
 * or -EIO with the agent's own message (its ERROR frame), -EPROTO (out
 * of turn), -EPIPE (the agent closed) and err_*() set. */
int agent_expect(int conn, uint8_t want, uint8_t *buf, uint32_t *len);

/* A get (G): the agent's F frame in buf (fields type, mode, mtime, size);
 * a file's D frames follow (agent_data_next), a folder's N entries. */
int agent_get_start(int conn, const char *path, uint8_t *buf, uint32_t *len)
    __attribute__((warn_unused_result));
/* A file's next D frame: 1 with *len bytes in buf, 0 at its end, <0 as
 * agent_expect. */
int agent_data_next(int conn, uint8_t *buf, uint32_t *len);

/* A put (P) of one file (tree: of a folder, N entries follow) to path,
 * name being its own name (used when path is a folder), with st's mode
 * and mtime; then D frames (agent_data_send) and agent_put_finish. */
int agent_put_start(int conn, const char *path, const char *name, const struct stat *st, bool tree)
    __attribute__((warn_unused_result));
/* One data frame of at most AGENT_CHUNK bytes; len 0 ends the file. */
int agent_data_send(int conn, const void *data, uint32_t len);
/* The end of a put: the agent's OK (the file is in place), as agent_expect. */
int agent_put_finish(int conn, uint8_t *buf);

#endif
