/* The VM object's insides, shared by vm.c (building and running) and
 * state.c (pause, save, restore). Nothing outside src/core/ includes it. */
#ifndef SMOLVM_CORE_VM_INTERNAL_H
#define SMOLVM_CORE_VM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "arch/x86/acpi.h"
#include "arch/x86/kernel_file.h"
#include "core/vm.h"
#include "util/file.h"
#include "util/loop.h"

#define VM_MAX_STATE_PARTS 64
#define VM_STATE_NAME_MAX PLACEMENT_NAME_MAX

struct vm_state_part {
    char name[VM_STATE_NAME_MAX];
    const struct vm_state_desc *desc;
    void *opaque;
};

struct vcpu {
    struct vm *vm;
    struct hv_vcpu *hv;
    unsigned index;
    pthread_t thread;
    bool started;
};

struct device_instance {
    const struct device_type *type;
    void *state;
};

struct vm {
    struct vm_config cfg;
    struct hv_vm *hv;
    struct guest_memory mem;
    struct bus pio;
    struct bus mmio;
    struct acpi_config acpi;
    struct console *console;
    struct vcpu *vcpus;
    struct device_slot slots[PLACEMENT_MAX];
    struct device_instance devices[PLACEMENT_MAX]; /* one per slot, created so far */
    unsigned slot_count, device_count;
    /* Open from the inputs' check until loaded into guest memory. */
    struct x86_kernel_file kernel;
    /* The kernel file as seen before it was read (arch/x86/unpack.h: its
     * identity, recorded once its unpacked vmlinux is known). */
    struct stat kernel_seen;
    /* The initrd is read once, into guest memory where it goes: its file
     * stays open until then (-1: none). */
    int initrd_fd;
    size_t initrd_len;
    struct vm_state_part parts[VM_MAX_STATE_PARTS];
    unsigned part_count;
    const struct vm_snapshot *restoring; /* non-NULL while vm_restore() builds the VM */
    /* vm_prepare(): cfg is the VM's own (its strings freed with it), and
     * its console and devices were made from it ahead of the state. */
    bool owns_cfg, devices_ahead;
    struct loop loop;
    pthread_mutex_t pause_lock;
    pthread_cond_t pause_cond;
    bool pause_requested;
    unsigned vcpus_paused;
    bool devices_paused;
    int stop_fd;
    pthread_mutex_t stop_lock;
    /* vm_run() kicks the vCPUs to join them: vm_fail() kicks none from
     * then on (a joined thread is no thread to signal). Under stop_lock. */
    bool vcpus_ending;
    atomic_int stop_reason;
    /* Live migration: percent of each vCPU's time taken away (auto-
     * converge), and the VMM's dirty bitmaps (kept until destroy: device
     * threads may still hold one as tracking ends). */
    atomic_uint throttle;
    _Atomic(uint64_t) *vmm_dirty[GUEST_MEMORY_MAX_REGIONS];
    char stop_message[512];
};

/* vm.c's vCPU threads park here while a pause is requested. */
void vm_park_vcpu(struct vm *vm);
/* Puts a freshly built VM (vCPUs created, memory loaded) into saved state. */
int vm_restore_state(struct vm *vm, const void *state, size_t len)
    __attribute__((warn_unused_result));

#endif
