/* What the files of the KVM backend share; nothing outside src/hv/ sees it. */
#ifndef SMOLVM_HV_KVM_INTERNAL_H
#define SMOLVM_HV_KVM_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

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

/* ioctl() retried on EINTR. */
int kvm_xioctl(int fd, unsigned long request, void *arg);

#endif
