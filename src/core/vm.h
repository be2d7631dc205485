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
#include "core/placement.h"
#include "core/state_io.h"
#include "util/blob.h"
#include "util/loop.h"

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
/* Every --disk names a file that is there (checked before KVM is, as the
 * kernel and initrd are: the user's mistakes first). */
int vm_check_disks(const struct vm_config *cfg) __attribute__((warn_unused_result));

/* Runs the guest until it stops; returns why. */
enum vm_stop_reason vm_run(struct vm *vm);

/* Why the VM stopped, for VM_STOP_ERROR and VM_STOP_TRIPLE_FAULT. */
const char *vm_stop_message(const struct vm *vm);

void vm_destroy(struct vm *vm);

/* Async-signal-safe: makes vm_run() return VM_STOP_SIGNAL. */
void vm_signal_stop(struct vm *vm);

/* Stops the VM for an error (VM_STOP_ERROR, fmt its vm_stop_message();
 * a stop asked for before keeps its reason) and kicks every vCPU out of
 * the guest at once. Any thread, also one under a memory server's
 * seccomp filter (futex, write, tgkill). */
void vm_fail(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The guest's RAM cannot be served whole any more (guest_memory.lost):
 * called before the pages still missing are let go. Any thread. */
void vm_memory_lost(struct vm *vm);

/* Asks vm_run() to return `why` (VM_STOP_USER for a stop from outside). */
void vm_request_stop(struct vm *vm, enum vm_stop_reason why);

/* Presses the ACPI power button (the guest decides what to do: Linux's
 * button driver reports KEY_POWER, an init powers off). -ENOENT: the VM
 * has none. Any thread. */
int vm_press_power_button(struct vm *vm);

/* Watches fd on vm_run()'s thread (the control socket); fn returning false
 * stops the VM with VM_STOP_USER. */
int vm_watch(struct vm *vm, int fd, loop_fn fn, void *opaque) __attribute__((warn_unused_result));
void vm_unwatch(struct vm *vm, int fd);

/* ---- snapshots (state.c) ----
 * Called on vm_run()'s thread (from a watch handler). vm_pause() returns
 * once every vCPU is out of the guest, its pending I/O completed, and every
 * device quiet; the guest's memory and state then hold still until
 * vm_resume(). */
int vm_pause(struct vm *vm) __attribute__((warn_unused_result));
void vm_resume(struct vm *vm);
bool vm_paused(const struct vm *vm);

/* ---- live migration (migrate/send.c) ----
 * Dirty-page tracking on or off: the guest's writes (the hypervisor's
 * log) and the VMM's (guest_memory_mark_dirty()). A fetch ORs the pages
 * of region dirtied since the last fetch into bitmap (one bit per 4 KiB
 * page, zeroed by the caller); the VMM's marks are taken (cleared) only
 * with take_vmm -- a device may write a buffer it took long before, so
 * those pages go again each round until the VM is paused. */
int vm_dirty_log(struct vm *vm, bool on) __attribute__((warn_unused_result));
int vm_dirty_fetch(struct vm *vm, unsigned region, uint64_t *bitmap, bool take_vmm)
    __attribute__((warn_unused_result));
/* Auto-converge: percent of each vCPU's time taken away (0: none), in
 * slices of about 10 ms as vm_throttle_tick() is called that often. */
void vm_throttle(struct vm *vm, unsigned percent);
void vm_throttle_tick(struct vm *vm);
/* The hypervisor's VM and vCPU state and every device's, as bytes; the VM
 * must be paused. Guest memory is not included: see vm_memory(). */
int vm_save_state(struct vm *vm, struct blob *out) __attribute__((warn_unused_result));

/* What vm_restore() builds a running VM from instead of a kernel. */
struct vm_snapshot {
    const void *state; /* from vm_save_state() */
    size_t state_len;
    /* Fills guest RAM (already allocated, zeroed, same layout as saved). */
    int (*load_memory)(void *opaque, struct guest_memory *mem);
    void *opaque;
    /* vm_prepare()'s VM, whose RAM holds the guest's already (load_memory
     * is not called): vm_restore() finishes it, or destroys it when it
     * fails (a cfg of other RAM or CPUs than it was prepared for, or
     * another config than its devices were made from, too). */
    struct vm *prepared;
};

/* A restore in two steps, for a live migration's destination: all that
 * the saved state does not decide -- the hypervisor's VM, the RAM mapped
 * into it (vm_memory(), which the caller fills meanwhile), the vCPUs, and
 * for a cfg without disks (a disk's file comes with the state) the
 * console and the devices -- built from the config while the guest still
 * runs on the source, so that its pause only waits for the state loaded
 * (vm_restore() with it as snap->prepared, whose cfg must then be this
 * one). cfg is taken (its strings freed with the VM), also on failure. */
int vm_prepare(struct vm_config *cfg, struct vm **out) __attribute__((warn_unused_result));

/* Creates a VM from cfg (kernel and initrd are not read) and puts it into
 * the saved state; vm_run() then resumes the guest where it was saved. */
int vm_restore(const struct vm_config *cfg, const struct vm_snapshot *snap, struct vm **out)
    __attribute__((warn_unused_result));

/* A VM of devices only: cfg's devices and plain RAM, no hypervisor, no
 * vCPUs, no kernel (interrupts and eventfds are refused, so devices keep
 * their synchronous paths). For tests and the device-state fuzzer, which
 * feed its devices' restore functions arbitrary bytes without KVM. */
int vm_create_devices_only(const struct vm_config *cfg, struct vm **out)
    __attribute__((warn_unused_result));
/* Each device's state as vm_save_state() records it; and such records
 * (only device records) restored into the VM's devices. */
int vm_save_device_state(struct vm *vm, struct blob *out) __attribute__((warn_unused_result));
int vm_restore_device_state(struct vm *vm, const void *state, size_t len)
    __attribute__((warn_unused_result));
/* The VM's devices as the placement table put them (core/placement.h). */
const struct device_slot *vm_device_slots(const struct vm *vm, unsigned *count);
/* What a vCPU's port I/O or MMIO exit does: false when nothing is there. */
bool vm_bus_access(struct vm *vm, bool pio, uint64_t addr, void *data, unsigned size,
                   bool write);

/* ---- for devices ---- */
const struct vm_config *vm_config(const struct vm *vm);
const struct guest_memory *vm_memory(const struct vm *vm);
int vm_register_pio(struct vm *vm, uint64_t port, uint64_t len, bus_handler fn, void *opaque)
    __attribute__((warn_unused_result));
int vm_register_mmio(struct vm *vm, uint64_t gpa, uint64_t len, bus_handler fn, void *opaque)
    __attribute__((warn_unused_result));
/* Adds an LNRO0005 virtio-mmio node to the DSDT. */
int vm_describe_mmio_device(struct vm *vm, uint64_t gpa, uint32_t size, uint32_t irq)
    __attribute__((warn_unused_result));
/* The kernel command line smolvm boots: base, then the machine's facts
 * every kernel is told (no_timer_check), then, with the devices on the
 * command line, acpi=noirq (the MP table's IRQ numbers) and a
 * virtio_mmio.device=<size>@<base>:<irq> entry per device; into out (size
 * bytes), -E2BIG when it does not fit. */
struct acpi_mmio_device;
int vm_kernel_cmdline(const char *base, bool devices_on_cmdline, const struct acpi_mmio_device *d,
                      unsigned n, char *out, size_t size) __attribute__((warn_unused_result));
/* Adds a legacy port-I/O device (EISA id such as "PNP0501") to the DSDT. */
int vm_describe_isa_device(struct vm *vm, const char *hid, uint16_t port, uint8_t len,
                           uint8_t irq) __attribute__((warn_unused_result));
/* Adds the VM generation ID device (16 bytes at gpa) and the Generic Event
 * Device that notifies the guest of a new one through gsi. */
int vm_describe_vmgenid(struct vm *vm, uint64_t gpa, uint32_t gsi)
    __attribute__((warn_unused_result));
/* Adds the power button and the Generic Event Device that presses it
 * through gsi (vm_press_power_button()). */
int vm_describe_power_button(struct vm *vm, uint32_t gsi) __attribute__((warn_unused_result));
int vm_set_irq(struct vm *vm, unsigned gsi, bool level);
/* Snapshot participants: each device instance with guest-visible state
 * registers one when it is created, under its slot's state_name (a restore
 * matches saved records to participants by name), described once for save
 * and restore (core/state_io.h). Between pause and resume a participant
 * changes neither guest memory nor its own state; restore runs after guest
 * memory and the vCPUs are restored. */
int vm_register_state(struct vm *vm, const char *name, const struct vm_state_desc *desc,
                      void *opaque) __attribute__((warn_unused_result));
/* While vm_restore() builds the VM: devices skip their power-on set-up. */
bool vm_restoring(const struct vm *vm);
/* Fast paths that skip smolvm's vCPU threads: a guest MMIO write of value
 * at gpa signals notify_fd; writing irq_fd raises gsi. */
int vm_notify_fd(struct vm *vm, uint64_t gpa, uint32_t len, uint64_t value, int notify_fd)
    __attribute__((warn_unused_result));
int vm_irq_fd(struct vm *vm, unsigned gsi, int irq_fd) __attribute__((warn_unused_result));
/* Guest writes inside [gpa, gpa + len) of a device's MMIO range reach its
 * handler later, in order, without a vCPU exit each (hv_vm_coalesce_writes):
 * only for registers whose writes have no effect before the device's next
 * access. A failure leaves the writes exiting as before. */
int vm_coalesce_writes(struct vm *vm, uint64_t gpa, uint64_t len)
    __attribute__((warn_unused_result));
struct console *vm_console(struct vm *vm);

#endif
