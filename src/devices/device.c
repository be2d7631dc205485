#include "devices/device.h"

#include <string.h>

/* The linker provides these for any section whose name is a C identifier. */
extern const struct device_type *const __start_smolvm_devices[] __attribute__((weak));
extern const struct device_type *const __stop_smolvm_devices[] __attribute__((weak));

static const struct device_type *const *replaced_begin, *const *replaced_end;

const struct device_type *const *device_types_begin(void)
{
    return replaced_begin ? replaced_begin : __start_smolvm_devices;
}

const struct device_type *const *device_types_end(void)
{
    return replaced_begin ? replaced_end : __stop_smolvm_devices;
}

void device_types_replace(const struct device_type *const *begin,
                          const struct device_type *const *end)
{
    replaced_begin = begin;
    replaced_end = end;
}

const struct device_type *device_type_find(const char *name)
{
    for (const struct device_type *const *t = device_types_begin(); t < device_types_end(); t++)
        if (strcmp((*t)->name, name) == 0)
            return *t;
    return NULL;
}
