/* Stopping a running VM by name, as `smolvm stop` and POST
 * /machines/NAME/stop do (one implementation for both): the ACPI power
 * button first, so the guest shuts down cleanly; forced off when it has
 * not within the timeout. A paused VM cannot act on the button: it is
 * forced off at once. */
#ifndef SMOLVM_MACHINE_STOP_NAMED_H
#define SMOLVM_MACHINE_STOP_NAMED_H

#include <stdbool.h>

#include <jansson.h>

#define MACHINE_STOP_TIMEOUT_S 10 /* as docker stop's */
#define MACHINE_STOP_TIMEOUT_MAX_S 3600

/* Stops NAME; timeout_s: how long the guest has to power off (0: forced at
 * once, as force). *forced: it had to be. -ESRCH (named): no VM of that
 * name runs; -ECANCELED: the VM refused (err_msg() says why); else what
 * failed. */
int machine_stop_named(const char *name, unsigned timeout_s, bool force, bool *forced)
    __attribute__((warn_unused_result));

/* Sends {"command": command} to NAME; *answer (may be NULL): the VM's
 * answer. -ESRCH (named): no VM of that name runs; -ECANCELED: the VM
 * refused (err_msg() says why). */
int machine_command(const char *name, const char *command, json_t **answer)
    __attribute__((warn_unused_result));

/* Whether a VM of that name answers on its control socket (or is there but
 * busy: a VM in the middle of a save is running). */
bool machine_answers(const char *name);
/* The same; *jailed (may be NULL): it says it runs under --jail or
 * landlock (src/confine/jail.h) and reaches only its own folders. */
bool machine_answers_jailed(const char *name, bool *jailed);

#endif
