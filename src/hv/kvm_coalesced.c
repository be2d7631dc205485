/* Coalesced MMIO: guest writes to registered zones are queued by KVM in a
 * ring page (shared by the VM's vCPUs, KVM_COALESCED_MMIO_PAGE_OFFSET in
 * each vCPU's kvm_run mapping) instead of each costing an exit. smolvm
 * replays them, oldest first, before it handles any exit, so a device
 * sees its registers written in the guest's order and before any later
 * access (Documentation/virt/kvm/api.rst, KVM_REGISTER_COALESCED_MMIO). */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hv/hv.h"
#include "hv/kvm_internal.h"
#include "util/err.h"
#include "util/trace.h"

uint32_t kvm_coalesced_ring_entries(long page_size)
{
    return (uint32_t)(((unsigned long)page_size - sizeof(struct kvm_coalesced_mmio_ring)) /
                      sizeof(struct kvm_coalesced_mmio));
}

unsigned kvm_coalesced_drain(struct kvm_coalesced_mmio_ring *ring, uint32_t entries,
                             hv_write_fn deliver, void *opaque)
{
    unsigned handled = 0;
    uint32_t first = __atomic_load_n(&ring->first, __ATOMIC_RELAXED);

    /* Acquire: pairs with KVM's smp_wmb() between filling an entry and
     * moving last past it. */
    while (first != __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE)) {
        const struct kvm_coalesced_mmio *e;
        uint8_t data[sizeof(e->data)];
        uint32_t len;

        if (first >= entries) /* not KVM's ring any more: hand nothing on */
            break;
        e = &ring->coalesced_mmio[first];
        len = e->len <= sizeof(data) ? e->len : 0;
        memcpy(data, e->data, len);
        if (len)
            deliver(opaque, e->phys_addr, data, len);
        handled++;
        first = (first + 1) % entries;
        /* Release: the entry is handled before KVM may reuse its slot
         * (KVM reads first to see whether there is room). */
        __atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
    }
    return handled;
}

static const struct kvm_coalesced_zone *zone_of(const struct hv_vm *vm, uint64_t gpa,
                                                uint32_t len)
{
    for (unsigned i = 0; i < vm->zone_count; i++) {
        const struct kvm_coalesced_zone *z = &vm->zones[i];
        if (gpa >= z->gpa && len <= z->len && gpa - z->gpa <= z->len - len)
            return z;
    }
    return NULL;
}

static void deliver_to_zone(void *opaque, uint64_t gpa, const uint8_t *data, uint32_t len)
{
    const struct kvm_coalesced_zone *z = zone_of(opaque, gpa, len);
    if (z)
        z->fn(z->opaque, gpa, data, len);
}

int hv_vm_coalesce_writes(struct hv_vm *vm, uint64_t gpa, uint64_t len, hv_write_fn fn,
                          void *opaque)
{
    struct kvm_coalesced_mmio_zone zone = {.addr = gpa, .size = (uint32_t)len};
    long page = sysconf(_SC_PAGESIZE);
    int offset;

    if (vm->zone_count == sizeof(vm->zones) / sizeof(vm->zones[0]) || len == 0 ||
        len > UINT32_MAX)
        return err_plain(ENOSPC, "no room for another coalesced MMIO zone");
    /* The ring's page in the vCPUs' kvm_run mapping, 0: no coalescing. */
    offset = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
    if (offset <= 0 || page <= 0 || (long)(offset + 1) * page > vm->run_size)
        return err_plain(ENOTSUP, "this KVM does not coalesce MMIO writes");
    if (ioctl(vm->vm_fd, KVM_REGISTER_COALESCED_MMIO, &zone) < 0)
        return err_set(errno, "KVM_REGISTER_COALESCED_MMIO at 0x%llx", (unsigned long long)gpa);
    vm->ring_offset = (size_t)offset * (size_t)page;
    vm->ring_entries = kvm_coalesced_ring_entries(page);
    vm->zones[vm->zone_count++] = (struct kvm_coalesced_zone){gpa, (uint32_t)len, fn, opaque};
    return 0;
}

void kvm_coalesced_flush(struct hv_vcpu *vcpu)
{
    struct hv_vm *vm = vcpu->vm;
    struct kvm_coalesced_mmio_ring *ring;

    if (!vm->zone_count)
        return;
    ring = (struct kvm_coalesced_mmio_ring *)((char *)vcpu->run + vm->ring_offset);
    /* Empty, and no vCPU is still replaying: first moves on only after
     * an entry was handled. */
    if (__atomic_load_n(&ring->first, __ATOMIC_ACQUIRE) ==
        __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&vm->ring_lock);
    trace_add_count(TRACE_COALESCED_WRITES,
                    kvm_coalesced_drain(ring, vm->ring_entries, deliver_to_zone, vm));
    pthread_mutex_unlock(&vm->ring_lock);
}
