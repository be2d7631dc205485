/* What the files of the KVM backend share; nothing outside src/hv/ sees it. */
#ifndef SMOLVM_HV_KVM_INTERNAL_H
#define SMOLVM_HV_KVM_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

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

/* ioctl() retried on EINTR. */
int kvm_xioctl(int fd, unsigned long request, void *arg);

#endif
