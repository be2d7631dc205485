/* How a device plugs into smolvm: each device file defines a struct
 * device_type and registers it with DEVICE_REGISTER(). The VM core walks
 * the registered types and never names a device itself. */
#ifndef SMOLVM_DEVICES_DEVICE_H
#define SMOLVM_DEVICES_DEVICE_H

struct vm;

struct device_type {
    const char *name;
    /* Creates the device's instances that the VM's config asks for and
     * registers their address ranges, IRQs and ACPI entries through the VM.
     * *state is passed back to destroy. 0, or a negative errno with an
     * err_set() message. */
    int (*create)(struct vm *vm, void **state);
    void (*destroy)(void *state);
};

#define DEVICE_REGISTER(type)                                                            \
    static const struct device_type *const device_entry_##type                           \
        __attribute__((used, section("smolvm_devices"), aligned(sizeof(void *)))) = &type

/* The registered types, in link order. */
const struct device_type *const *device_types_begin(void);
const struct device_type *const *device_types_end(void);

#endif
