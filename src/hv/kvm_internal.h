/* What the files of the KVM backend share; nothing outside src/hv/ sees it. */
#ifndef SMOLVM_HV_KVM_INTERNAL_H
#define SMOLVM_HV_KVM_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/hv.h"

/* A range of guest-physical addresses whose writes KVM queues in the
 * coalesced MMIO ring; fn takes them when they are replayed. */
struct kvm_coalesced_zone {
    uint64_t gpa;
    uint32_t len;
    hv_write_fn fn;
    void *opaque;
};

struct hv_vm {
    int kvm_fd;
    int vm_fd;
    int run_size;
    unsigned next_slot;
    /* Each slot as mapped, for turning dirty logging on and off. */
    struct kvm_userspace_memory_region slots[8];
    unsigned max_vcpus;
    struct kvm_cpuid2 *cpuid;
    /* The MSRs a snapshot carries: KVM's list, less those it cannot read
     * back; found on the first save (kvm_state.c). */
    uint32_t *snapshot_msrs;
    unsigned snapshot_msr_count;
    /* Coalesced MMIO (kvm_coalesced.c): the zones, and where the ring sits
     * in every vCPU's kvm_run mapping. ring_lock keeps one vCPU replaying
     * at a time, so the writes reach the devices in the guest's order. */
    struct kvm_coalesced_zone zones[128];
    unsigned zone_count;
    size_t ring_offset;
    uint32_t ring_entries;
    pthread_mutex_t ring_lock;
};

struct hv_vcpu {
    struct hv_vm *vm;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    atomic_bool thread_known;
};

/* The clock a start gives KVM_SET_CLOCK for a saved clock record: the
 * saved clock advanced by the wall-clock time since it was read, by KVM
 * (KVM_CLOCK_REALTIME) when the record and this host allow, else here. */
struct kvm_clock_data kvm_clock_for_restore(const struct kvm_clock_data *saved,
                                            uint64_t now_realtime_ns, bool kvm_adds_realtime);

/* The entries of a coalesced MMIO ring in a page of page_size bytes. */
uint32_t kvm_coalesced_ring_entries(long page_size);

/* Hands each write queued in ring (of entries entries) to deliver, oldest
 * first, freeing its slot only once deliver returned; an entry longer than
 * 8 bytes is dropped, a ring index out of range stops the replay. Returns
 * the entries taken. The caller keeps other replays out. */
unsigned kvm_coalesced_drain(struct kvm_coalesced_mmio_ring *ring, uint32_t entries,
                             hv_write_fn deliver, void *opaque);

/* Replays the VM's queued writes (if any) before vcpu's exit is handled. */
struct hv_vcpu;
void kvm_coalesced_flush(struct hv_vcpu *vcpu);

/* ioctl() retried on EINTR. */
int kvm_xioctl(int fd, unsigned long request, void *arg);

#endif
