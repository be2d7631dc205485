/* The VM generation ID (Microsoft's "Virtual Machine Generation ID", as
 * Linux's vmgenid driver reads it): 16 random bytes in reserved guest
 * memory, described in the DSDT. Every restore of a snapshot writes new
 * bytes and raises the Generic Event Device's interrupt, so each clone
 * started from one .smolmachine reseeds its RNG and none repeats another's
 * random numbers. */
#include <stdlib.h>
#include <sys/random.h>

#include "arch/x86/layout.h"
#include "core/vm.h"
#include "devices/device.h"
#include "util/err.h"

#define VMGENID_BYTES 16

static int new_generation(struct vm *vm)
{
    uint8_t id[VMGENID_BYTES];
    size_t got = 0;

    while (got < sizeof(id)) {
        ssize_t n = getrandom(id + got, sizeof(id) - got, 0);
        if (n < 0 && errno != EINTR)
            return err_set(errno, "getrandom");
        if (n > 0)
            got += (size_t)n;
    }
    return guest_write(vm_memory(vm), X86_VMGENID_ADDR, id, sizeof(id));
}

/* Version 1: no fields. The ID itself lives in guest RAM; the record is
 * there so that a restore gives it a new one. */
static int vmgenid_state(void *opaque, struct state_io *io)
{
    (void)opaque;
    (void)io;
    return 0;
}

static int vmgenid_restored(void *opaque)
{
    struct vm *vm = opaque;
    int r = new_generation(vm);

    if (r < 0)
        return r;
    /* Edge-triggered: the interrupt controller latches it until a vCPU runs. */
    vm_set_irq(vm, X86_GED_IRQ, true);
    vm_set_irq(vm, X86_GED_IRQ, false);
    return 0;
}

static const struct vm_state_desc vmgenid_desc = {
    .version = 1,
    .state = vmgenid_state,
    .restored = vmgenid_restored,
};

static int vmgenid_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    int r = vm_restoring(vm) ? 0 : new_generation(vm);

    *state = NULL;
    if (r == 0)
        r = vm_describe_vmgenid(vm, X86_VMGENID_ADDR, X86_GED_IRQ);
    if (r == 0)
        r = vm_register_state(vm, slot->state_name, &vmgenid_desc, vm);
    return r;
}

static const struct device_type vmgenid = {
    .name = "vmgenid",
    .create = vmgenid_create,
};
DEVICE_REGISTER(vmgenid);
