/* Running a built machine in the foreground: its control socket, signals,
 * the boot trace and the exit code. Shared by `run` and `start`. */
#ifndef SMOLVM_CLI_SERVE_H
#define SMOLVM_CLI_SERVE_H

#include <stdbool.h>

#include "bundle/machine.h"

struct serve_options {
    const char *name;        /* NULL: generated */
    bool trace_boot;
    bool json;
    const char *trace_until;
};

/* Picks the VM's name: the given one, checked, or a generated one. */
int serve_name(const char *given, char *out, unsigned size);

/* Runs m until it stops; destroys it; returns the exit code. */
int serve_machine(struct machine *m, const char *name, const struct serve_options *o);

#endif
