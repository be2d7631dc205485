/* The hypervisor interface: everything smolvm asks of KVM (and later of
 * Hypervisor.framework). Nothing outside src/hv/ includes a hypervisor's
 * own headers; devices never call this directly, they go through the VM. */
#ifndef SMOLVM_HV_HV_H
#define SMOLVM_HV_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpu_state.h"
#include "util/blob.h"

struct hv_vm;
struct hv_vcpu;

enum hv_exit_kind {
    HV_EXIT_IO,          /* port I/O: addr = port, count repetitions of size bytes */
    HV_EXIT_MMIO,        /* addr = guest-physical, count = 1 */
    HV_EXIT_INTERRUPTED, /* hv_vcpu_kick() or a signal */
    HV_EXIT_TRIPLE_FAULT,
    HV_EXIT_RESET,       /* the guest asked for a reset through the hypervisor */
    HV_EXIT_POWEROFF,
    HV_EXIT_FAILED,      /* the hypervisor could not run the vCPU; reason says why */
};

struct hv_exit {
    enum hv_exit_kind kind;
    uint64_t addr;
    uint32_t size;
    uint32_t count;
    bool is_write;
    /* size * count bytes, read from (write) or filled in (read) by the VMM. */
    uint8_t *data;
    uint32_t reason; /* the backend's own exit code, for messages */
};

/* Whether this host can run a VM at all, before any work is done for one:
 * 0, or the message saying what to do. */
int hv_check(void) __attribute__((warn_unused_result));

/* hv_check() for a VM that another process will run (a jail's VMM, forked
 * into its namespaces; a detached one): the same messages, but no VM made
 * here -- KVM ties a VM to the memory of the process that made it, so that
 * process would make its own again (a jailed start paid both: 2-14 ms each
 * in the nested L1). */
int hv_check_elsewhere(void) __attribute__((warn_unused_result));

/* Looks at the host's hypervisor now (which KVM modules /sys shows), for
 * hv_check() and hv_vm_create() to use after: a jail (cli/jail.c) has no
 * /sys. Done by hv_check() too. */
void hv_decide(void);

/* Opens the hypervisor and creates a VM with an in-kernel interrupt
 * controller and timer. Fails with a message saying how to get KVM when
 * there is none. */
int hv_vm_create(struct hv_vm **out) __attribute__((warn_unused_result));
void hv_vm_destroy(struct hv_vm *vm);
/* hv_vm_create() now, on any thread, for this process's next
 * hv_vm_create() to take (a jailed VMM's, made as its root is built:
 * cli/jail.c). A forked child does not inherit it. 0, or what
 * hv_vm_create() said (it says it again when called). */
int hv_vm_create_ahead(void) __attribute__((warn_unused_result));
/* hv_vm_create_ahead() on a thread of its own, begun now; this process's
 * next hv_vm_create() waits for it and takes its VM. For a VMM with other
 * work before its VM that does not need it (a detached start without a
 * jail: KVM_CREATE_VM mostly sleeps for RCU, 50-60 ms in a nested L1, the
 * jail's VMM overlaps it with its root's building). Not while the process
 * must stay one thread (a jail to enter). */
void hv_vm_create_begin(void);
/* hv_vm_create_begin(), its thread calling first() before anything else
 * (a jailed VMM's: it gives up its capabilities there, confine/jail.h's
 * vmm_begin, made right after the VMM's fork, before its jail is whole).
 * Whether that thread was made (else no VM is made ahead). */
bool hv_vm_create_begin_after(void (*first)(void));

/* Most vCPUs the hypervisor allows in one VM. */
unsigned hv_max_vcpus(struct hv_vm *vm);

int hv_vm_map_memory(struct hv_vm *vm, uint64_t gpa, void *host, uint64_t size)
    __attribute__((warn_unused_result));

/* Dirty-page logging (live migration): while on, every page of guest RAM
 * the guest writes is marked until fetched. A fetch takes the marks of the
 * RAM mapped at gpa (one bit per 4 KiB page, the bitmap rounded up to 64
 * bits) and clears them. */
int hv_vm_dirty_log(struct hv_vm *vm, bool on) __attribute__((warn_unused_result));
int hv_vm_dirty_fetch(struct hv_vm *vm, uint64_t gpa, uint64_t *bitmap)
    __attribute__((warn_unused_result));

/* Drives an interrupt line (GSI) of the in-kernel interrupt controller. */
int hv_vm_set_irq(struct hv_vm *vm, unsigned gsi, bool level);

/* Guest writes of len bytes equal to value at gpa signal the eventfd fd
 * inside the hypervisor, without a VM exit to smolvm. */
int hv_vm_ioeventfd(struct hv_vm *vm, uint64_t gpa, uint32_t len, uint64_t value, int fd)
    __attribute__((warn_unused_result));

/* Guest writes that only latch a value (a register select, a queue's
 * address) need not stop the vCPU: writes of at most 8 bytes inside
 * [gpa, gpa + len) are queued by the hypervisor and handed to fn, in the
 * order the guest made them, before hv_vcpu_run() returns any exit of any
 * vCPU (so before any read, and before a pause completes). Reads there
 * still exit. Called while the VM is built, before any vCPU runs. Fails
 * (ENOTSUP: the hypervisor cannot) with the writes exiting as before; an
 * optimisation only. */
typedef void (*hv_write_fn)(void *opaque, uint64_t gpa, const uint8_t *data, uint32_t len);
int hv_vm_coalesce_writes(struct hv_vm *vm, uint64_t gpa, uint64_t len, hv_write_fn fn,
                          void *opaque) __attribute__((warn_unused_result));

/* A write to the eventfd fd raises interrupt line gsi (edge). */
int hv_vm_irqfd(struct hv_vm *vm, unsigned gsi, int fd) __attribute__((warn_unused_result));

/* Creates vCPU number index (0 is the boot CPU) with the host's CPU model as
 * the hypervisor supports it, the hypervisor leaves and paravirtual clock. */
int hv_vcpu_create(struct hv_vm *vm, unsigned index, struct hv_vcpu **out)
    __attribute__((warn_unused_result));
void hv_vcpu_destroy(struct hv_vcpu *vcpu);

int hv_vcpu_set_x86_state(struct hv_vcpu *vcpu, const struct x86_cpu_state *state)
    __attribute__((warn_unused_result));

/* Runs the vCPU on the calling thread until an exit the VMM must handle.
 * Returns 0 with *exit filled in, or a negative errno. */
int hv_vcpu_run(struct hv_vcpu *vcpu, struct hv_exit *exit) __attribute__((warn_unused_result));

/* Makes hv_vcpu_run() return HV_EXIT_INTERRUPTED soon, whether the vCPU is
 * inside the guest now or enters it next. Safe from any thread. */
void hv_vcpu_kick(struct hv_vcpu *vcpu);

/* The CPU features this host's hypervisor offers a guest (what a vCPU is
 * created with): a malloc'd table of *count entries. A migration's
 * destination checks the source's against its own before anything moves. */
struct x86_cpuid_entry;
int hv_host_cpuid(struct x86_cpuid_entry **out, size_t *count) __attribute__((warn_unused_result));

/* ---- snapshots ----
 * Save and restore run while no vCPU is inside hv_vcpu_run(). The bytes are
 * the backend's own; hv_state_format() names them, and a restore refuses
 * state another format wrote. A vCPU is restored after hv_vcpu_create() on
 * a VM restored with hv_vm_restore(). Restore fails with a message on a
 * malformed blob or on state this host cannot take. */
const char *hv_state_format(void);
int hv_vm_save(struct hv_vm *vm, struct blob *out) __attribute__((warn_unused_result));
int hv_vm_restore(struct hv_vm *vm, struct blob_reader *in) __attribute__((warn_unused_result));
int hv_vcpu_save(struct hv_vcpu *vcpu, struct blob *out) __attribute__((warn_unused_result));
int hv_vcpu_restore(struct hv_vcpu *vcpu, struct blob_reader *in)
    __attribute__((warn_unused_result));
/* Tells the guest its vCPU was stopped (kvmclock's PVCLOCK_GUEST_STOPPED),
 * so its soft-lockup watchdog does not take a pause for a hang. */
void hv_vcpu_tell_paused(struct hv_vcpu *vcpu);

#endif
