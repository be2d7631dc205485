/* What the machine's files share: the machine itself. */
#ifndef SMOLVM_MACHINE_INTERNAL_H
#define SMOLVM_MACHINE_INTERNAL_H

#include "bundle/layers.h"
#include "machine/machine.h"

struct machine {
    struct vm *vm;
    struct bundle *source; /* the bundle it started from, or NULL */
    struct vm_config cfg;  /* strings owned here when started from a bundle */
    struct bundle_chains chains; /* disks carried as layers */
    char *dir;
    enum machine_memory memory;
    char *working_set; /* to record, a while after the start */
    char *known_working_set; /* where its RAM's is kept (a save carries it), or NULL */
    struct working_set_recorder *recorder;
    struct ram_faults *faults; /* a first start's RAM, served as touched */
    struct memory_cache_publisher *publisher; /* its unpacked cache, named behind it */
    struct vm **prepared; /* machine_start_options' */
    bool disks_private; /* machine_start_options' */
    bool handed_over; /* machine_handed_over() */
};

#endif
