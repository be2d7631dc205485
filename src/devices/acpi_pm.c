/* The hardware-reduced ACPI registers the FADT points at: writing sleep
 * type S5 with SLP_EN powers off, writing the reset value resets. And the
 * power button (a device of the DSDT with its Generic Event Device's
 * interrupt: hardware-reduced ACPI has no fixed-feature button), which
 * vm_press_power_button() presses. */
#include "arch/x86/layout.h"
#include "core/vm.h"
#include "devices/device.h"

#define SLEEP_TYPE_SHIFT 2
#define SLEEP_TYPE_MASK 0x7
#define SLEEP_ENABLE 0x20

static void acpi_pm_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
    struct vm *vm = opaque;
    uint64_t port = X86_PORT_ACPI_SLEEP_CONTROL + offset;
    (void)size;

    if (!is_write) {
        data[0] = 0; /* no wake status */
        return;
    }
    if (port == X86_PORT_ACPI_SLEEP_CONTROL && (data[0] & SLEEP_ENABLE) &&
        ((data[0] >> SLEEP_TYPE_SHIFT) & SLEEP_TYPE_MASK) == X86_ACPI_S5_SLEEP_TYPE)
        vm_request_stop(vm, VM_STOP_POWEROFF);
    else if (port == X86_PORT_ACPI_RESET && data[0] == X86_ACPI_RESET_VALUE)
        vm_request_stop(vm, VM_STOP_RESET);
}

static int acpi_pm_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    (void)slot;
    int r = vm_describe_power_button(vm, X86_POWER_BUTTON_IRQ);

    *state = NULL;
    if (r < 0)
        return r;
    return vm_register_pio(vm, X86_PORT_ACPI_SLEEP_CONTROL,
                           X86_PORT_ACPI_RESET - X86_PORT_ACPI_SLEEP_CONTROL + 1, acpi_pm_io, vm);
}

static const struct device_type acpi_pm = {
    .name = "acpi-pm",
    .create = acpi_pm_create,
};
DEVICE_REGISTER(acpi_pm);
