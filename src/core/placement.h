/* Where each device of a VM sits: its virtio-mmio window, IRQ and the name
 * of its state record, decided from the VM's config alone by one table
 * (placement.c). Link order, registration order and creation order decide
 * nothing: a saved bundle keeps meaning the same devices whatever the order
 * of the sources. */
#ifndef SMOLVM_CORE_PLACEMENT_H
#define SMOLVM_CORE_PLACEMENT_H

#include <stdint.h>

#include "core/config.h"

#define PLACEMENT_MAX 64
#define PLACEMENT_NAME_MAX 48

struct device_slot {
    const char *type;  /* the device_type (DEVICE_REGISTER) that fills it */
    unsigned index;    /* which of the config's instances: the disk number */
    uint64_t mmio_base; /* a virtio-mmio device's window; 0 for the others */
    uint32_t mmio_size;
    uint32_t irq;       /* the window's GSI; 0 for the others */
    char state_name[PLACEMENT_NAME_MAX]; /* its record's name; "" when stateless */
};

/* The devices cfg asks for, in the table's order (which is also the order
 * they are created, saved and described to the guest in). 0, or -ENOSPC
 * with a message when they do not fit. */
int placement_for(const struct vm_config *cfg, struct device_slot *slots, unsigned max,
                  unsigned *count) __attribute__((warn_unused_result));

#endif
