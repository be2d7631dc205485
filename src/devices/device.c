#include "devices/device.h"

/* The linker provides these for any section whose name is a C identifier. */
extern const struct device_type *const __start_smolvm_devices[] __attribute__((weak));
extern const struct device_type *const __stop_smolvm_devices[] __attribute__((weak));

const struct device_type *const *device_types_begin(void)
{
    return __start_smolvm_devices;
}

const struct device_type *const *device_types_end(void)
{
    return __stop_smolvm_devices;
}
