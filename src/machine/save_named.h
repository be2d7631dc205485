/* Saving a machine by name, as `smolvm save` and POST /machines/NAME/save
 * do: a running VM asked over its control socket, a stopped store
 * instance exported from its files. One implementation for both. */
#ifndef SMOLVM_MACHINE_SAVE_NAMED_H
#define SMOLVM_MACHINE_SAVE_NAMED_H

#include <stdbool.h>

#include "api/control.h"

struct machine_save_request {
    const char *output;   /* an absolute path; NULL: suspend into the instance's folder */
    bool resume;          /* the VM runs on after the save */
    bool no_memory;       /* no state: the bundle boots afresh */
    bool flatten;         /* every disk whole, not a chain of layers */
    const char *sign_key; /* an absolute path to a private key, or NULL */
    control_progress_fn progress; /* saving a running VM: how far it got (may be NULL) */
    void *opaque;
};

/* Saves NAME; *path (malloc'd): where it went, *seconds: how long it took.
 * -ESRCH (named): a suspend, and no VM of that name runs; -ECANCELED: the
 * VM refused (err_msg() says why); else what failed. */
int machine_save_named(const char *name, const struct machine_save_request *q, char **path,
                       double *seconds) __attribute__((warn_unused_result));

/* The bundle a confined VM saved at staging (in a folder it writes) moved
 * to path, taken only where it is a regular file of ours with no other
 * name: a VM cannot make the user's bundle one of their files. */
int machine_save_take_staged(const char *staging, const char *path)
    __attribute__((warn_unused_result));

#endif
