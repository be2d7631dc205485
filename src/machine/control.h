/* What a running machine answers on its control socket (api/control.h is
 * the protocol, cli/control.c the client verbs): status, pause, resume,
 * shutdown (the ACPI power button), stop (at once), save (a suspend is a save of state and memory only, into the
 * instance's folder). And the signals that stop it. */
#ifndef SMOLVM_MACHINE_CONTROL_H
#define SMOLVM_MACHINE_CONTROL_H

#include <time.h>

#include "api/control.h"
#include "machine/machine.h"

struct machine_control {
    struct machine *m;       /* NULL until built: no request is served before */
    const char *name;        /* as status reports it */
    struct control *control; /* the socket: a save reports its progress there */
    struct timespec started; /* CLOCK_MONOTONIC, for status's uptime */
};

/* A control_handler: opaque is a struct machine_control. */
json_t *machine_control_handle(void *opaque, const char *command, json_t *request);

/* SIGINT, SIGTERM and SIGHUP stop m's VM (m NULL: they stop nothing, once
 * it has ended); SIGPIPE is ignored. */
void machine_stop_on_signals(struct machine *m);

#endif
