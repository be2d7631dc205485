/* Reaching a VM's guest agent (guest/agent.c, vsock port AGENT_PORT)
 * through the host socket of its vsock device (Firecracker's protocol:
 * "CONNECT <port>\n", "OK <hostport>\n"). Used by `smolvm exec`, `cp` and
 * `shell`, and by the VMM itself for the hello it sends after a start
 * (the clock and hostname of this start). Protocol: docs/agent-protocol.md. */
#ifndef SMOLVM_API_AGENT_H
#define SMOLVM_API_AGENT_H

#include <stdbool.h>

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

/* A hostname the agent takes: 1-64 of A-Z a-z 0-9 '-' '.', not starting
 * with '-' or '.'. */
bool agent_hostname_ok(const char *name);

#endif
