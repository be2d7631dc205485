/* The VM object: guest memory, vCPU threads, the device buses and the
 * console, put together from a vm_config. Devices see only the functions
 * below the "for devices" line. */
#ifndef SMOLVM_CORE_VM_H
#define SMOLVM_CORE_VM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/config.h"
#include "core/console.h"
#include "core/memory.h"

enum vm_stop_reason {
    VM_RUNNING,
    VM_STOP_POWEROFF,     /* the guest powered off */
    VM_STOP_RESET,        /* the guest rebooted (or panicked with panic=-1) */
    VM_STOP_TRIPLE_FAULT, /* the guest crashed beyond recovery */
    VM_STOP_USER,         /* Ctrl-A x */
    VM_STOP_SIGNAL,       /* SIGINT/SIGTERM/SIGHUP */
    VM_STOP_ERROR,        /* smolvm or the hypervisor failed; vm_stop_message() says why */
};

struct vm;

/* Loads the kernel and initrd, creates the hypervisor VM, memory, devices,
 * ACPI tables and vCPUs. Nothing runs yet. */
int vm_create(const struct vm_config *cfg, struct vm **out) __attribute__((warn_unused_result));

/* Runs the guest until it stops; returns why. */
enum vm_stop_reason vm_run(struct vm *vm);

/* Why the VM stopped, for VM_STOP_ERROR and VM_STOP_TRIPLE_FAULT. */
const char *vm_stop_message(const struct vm *vm);

void vm_destroy(struct vm *vm);

/* Async-signal-safe: makes vm_run() return VM_STOP_SIGNAL. */
void vm_signal_stop(struct vm *vm);

/* ---- for devices ---- */
const struct vm_config *vm_config(const struct vm *vm);
const struct guest_memory *vm_memory(const struct vm *vm);
int vm_register_pio(struct vm *vm, uint64_t port, uint64_t len, bus_handler fn, void *opaque)
    __attribute__((warn_unused_result));
int vm_register_mmio(struct vm *vm, uint64_t gpa, uint64_t len, bus_handler fn, void *opaque)
    __attribute__((warn_unused_result));
/* Hands out the next virtio-mmio window: its address and its IRQ. */
int vm_alloc_mmio_window(struct vm *vm, uint64_t size, uint64_t *gpa, uint32_t *irq)
    __attribute__((warn_unused_result));
/* Adds an LNRO0005 virtio-mmio node to the DSDT. */
int vm_describe_mmio_device(struct vm *vm, uint64_t gpa, uint32_t size, uint32_t irq)
    __attribute__((warn_unused_result));
/* Adds a legacy port-I/O device (EISA id such as "PNP0501") to the DSDT. */
int vm_describe_isa_device(struct vm *vm, const char *hid, uint16_t port, uint8_t len,
                           uint8_t irq) __attribute__((warn_unused_result));
int vm_set_irq(struct vm *vm, unsigned gsi, bool level);
/* Fast paths that skip smolvm's vCPU threads: a guest MMIO write of value
 * at gpa signals notify_fd; writing irq_fd raises gsi. */
int vm_notify_fd(struct vm *vm, uint64_t gpa, uint32_t len, uint64_t value, int notify_fd)
    __attribute__((warn_unused_result));
int vm_irq_fd(struct vm *vm, unsigned gsi, int irq_fd) __attribute__((warn_unused_result));
void vm_request_stop(struct vm *vm, enum vm_stop_reason why);
struct console *vm_console(struct vm *vm);

#endif
