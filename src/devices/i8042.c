/* Just enough of the i8042 keyboard controller for the guest to reset the
 * machine the PC way (0xfe to the command port): what Linux's reboot falls
 * back to after the ACPI reset register. */
#include <stdlib.h>

#include "arch/x86/layout.h"
#include "core/vm.h"
#include "devices/device.h"

#define I8042_CMD_RESET 0xfe

static void i8042_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
    struct vm *vm = opaque;
    (void)size;
    if (!is_write) {
        data[0] = 0; /* status: no data, input buffer empty */
        return;
    }
    if (offset == X86_PORT_I8042_CMD - X86_PORT_I8042_DATA && data[0] == I8042_CMD_RESET)
        vm_request_stop(vm, VM_STOP_RESET);
}

static int i8042_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    (void)slot;
    *state = NULL;
    return vm_register_pio(vm, X86_PORT_I8042_DATA,
                           X86_PORT_I8042_CMD - X86_PORT_I8042_DATA + 1, i8042_io, vm);
}

static const struct device_type i8042 = {
    .name = "i8042",
    .create = i8042_create,
};
DEVICE_REGISTER(i8042);
