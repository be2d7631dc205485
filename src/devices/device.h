/* How a device plugs into smolvm: each device file defines a struct
 * device_type and registers it with DEVICE_REGISTER(). Which devices a VM
 * has, and where each sits (window, IRQ, state name), is the placement
 * table's business (core/placement.c): the VM creates one instance per
 * slot the table gives for its config, finding the type here by name. The
 * order of registration (link order) decides nothing.
 *
 * A new device: a row at the end of the table in core/placement.c (its
 * type name, whether it takes a virtio-mmio window, how many instances a
 * config asks for); a device_type of that name whose create() makes the
 * instance for one slot. A virtio device passes the slot to
 * virtio_mmio_create(vm, slot, &ops, dev, &t), which registers its record
 * under slot->state_name; fields of its own go in ops.state (with
 * ops.state_version), described as in core/state_io.h. */
#ifndef SMOLVM_DEVICES_DEVICE_H
#define SMOLVM_DEVICES_DEVICE_H

#include <stddef.h>

#include "core/placement.h"

struct vm;

struct device_type {
    const char *name; /* as in the placement table */
    /* Creates the instance for slot (slot->index: which of the config's
     * instances, e.g. the disk number; virtio devices pass the slot on to
     * virtio_mmio_create()) and registers its address ranges, IRQs, ACPI
     * entries and state (under slot->state_name) through the VM. *state is
     * passed back to destroy. 0, or a negative errno with an err_set()
     * message. */
    int (*create)(struct vm *vm, const struct device_slot *slot, void **state);
    void (*destroy)(void *state);
};

#define DEVICE_REGISTER(type)                                                            \
    static const struct device_type *const device_entry_##type                           \
        __attribute__((used, section("smolvm_devices"), aligned(sizeof(void *)))) = &type

/* The registered type of that name, or NULL. */
const struct device_type *device_type_find(const char *name);

/* The registered types, in link order. */
const struct device_type *const *device_types_begin(void);
const struct device_type *const *device_types_end(void);
/* Tests: make [begin, end) the registered types instead (NULL: back to the
 * linked ones), to show that another order changes nothing. */
void device_types_replace(const struct device_type *const *begin,
                          const struct device_type *const *end);

#endif
