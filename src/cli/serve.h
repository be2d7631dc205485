/* Running a built machine in the foreground: its control socket, signals,
 * the boot trace and the exit code. Shared by `run` and `start`. */
#ifndef SMOLVM_CLI_SERVE_H
#define SMOLVM_CLI_SERVE_H

#include <stdbool.h>
#include <sys/types.h>

#include "confine/confine.h"
#include "machine/machine.h"

struct serve_options {
    bool trace_boot;
    bool json;
    const char *trace_until;
    enum confine_seccomp seccomp; /* --seccomp: on (the default), off, log */
    const char *hostname; /* --hostname: this start's, sent to the guest agent */
};

struct server;

/* Claims the VM's name (given, checked, or generated) by opening its
 * control socket, before anything is built under that name. Returns a
 * CLI exit code. */
int serve_open(const char *name, struct server **out);
const char *serve_name(const struct server *s);
/* The host socket of the VM's vsock device (the server's: it lives until
 * serve_machine() or serve_abort() ends s; the device keeps its own copy),
 * or NULL when the VM has no control socket either: both live in the same
 * folder, so a path too long for one is too long for the other, and an
 * unnamed VM without them runs on (with serve's one warning line) instead
 * of failing. */
const char *serve_vsock_path(struct server *s);
/* --jail: what the VM makes once confined (its vsock socket, a detached
 * VM's log) goes into its own runtime folder (control_vm_dir()), the one
 * its jail lets it write; the names clients look for in the runtime
 * folder (NAME.vsock, NAME.log) are links into it. Before
 * serve_vsock_path() and serve_detach(). Returns a CLI exit code. */
int serve_use_own_folder(struct server *s);
/* --detach: forks. The child (*parent false) goes on to build and run the
 * VM with its console in a log file (`smolvm logs NAME`); the parent waits
 * until the VM runs or fails and returns the exit code to leave with. */
int serve_detach(struct server *s, bool *parent);
/* --detach of a VMM forked before its spare was told what to start
 * (cli/start.c): no fork, the spare (its parent, or its relay's) is the
 * one waiting. Its own session, its console into the log, then "L" on
 * ready_fd (its stderr is the log from there), "ok" once the VM runs. */
int serve_detached_ahead(struct server *s, int ready_fd);
/* The spare's side of serve_detached_ahead(), vmm the child it forked (the
 * VMM, or its relay, which ends as the VMM does): name printed and CLI_OK
 * once the VM runs; a VMM that failed after its log opened, its last line
 * said; one that ended before, its exit status (it said why itself). */
int serve_wait_for_vmm(const char *name, int fd, pid_t vmm);
/* A detached VM's log is rotated at this size (NAME.log -> NAME.log.1):
 * it lives in $XDG_RUNTIME_DIR, often RAM. */
#define SERVE_LOG_LIMIT (1u << 20)
/* The log file of VM NAME (malloc'd). */
char *serve_log_path(const char *name);

/* The resume marker's work (cli/start.c: a process outside the VM's
 * jail, which leaves the store out of its view): once the VMM asks (one
 * byte on pair), instance NAME marked resumed, answered 'y' when it was,
 * else why not said -- on stderr, or, say_in_vm_log (a marker made ahead
 * of its name, its stderr nowhere), in the jailed VM's log (its own
 * folder's) -- and 'n'. Ends the process. */
void serve_mark_resumed_when_asked(int pair, const char *name, bool say_in_vm_log)
    __attribute__((noreturn));

/* Gives the name up again when the VM could not be built; err_msg() stays
 * the reason the caller is about to give. */
void serve_abort(struct server *s);

/* Runs m until it stops; destroys m and s; returns the exit code. */
int serve_machine(struct server *s, struct machine *m, const struct serve_options *o);

#endif
