/* Coalesced MMIO (hv/kvm_coalesced.c, devices/virtio/mmio.c): the ring KVM
 * fills is replayed oldest first, across its wrap, each slot freed only
 * after its write was handled; the virtio-mmio registers coalesced are
 * exactly those whose writes only latch a value; and a driver's probe
 * replayed through the ring, as smolvm replays it (before every access
 * that exits), leaves the device's saved state as writes that each exited
 * do. No KVM: the ring is a page laid out as KVM's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "core/vm.h"
#include "devices/virtio/mmio.h"
#include "hv/kvm_internal.h"
#include "util/blob.h"
#include "util/err.h"

#define PAGE 4096

struct delivered {
    uint64_t gpa[64];
    uint32_t value[64];
    uint32_t first_at_delivery[64];
    unsigned count;
    struct kvm_coalesced_mmio_ring *ring;
};

static void record(void *opaque, uint64_t gpa, const uint8_t *data, uint32_t len)
{
    struct delivered *d = opaque;
    uint32_t v = 0;

    memcpy(&v, data, len < 4 ? len : 4);
    d->gpa[d->count] = gpa;
    d->value[d->count] = v;
    d->first_at_delivery[d->count] = d->ring->first;
    d->count++;
}

/* What KVM's coalesced_mmio_write() does for one guest write. */
static void kvm_queues(struct kvm_coalesced_mmio_ring *ring, uint32_t entries, uint64_t gpa,
                       const void *data, uint32_t len)
{
    struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[ring->last];

    assert_true((ring->last + 1) % entries != ring->first); /* KVM exits when full */
    e->phys_addr = gpa;
    e->len = len;
    memcpy(e->data, data, len <= 8 ? len : 8);
    ring->last = (ring->last + 1) % entries;
}

static struct kvm_coalesced_mmio_ring *new_ring(void)
{
    struct kvm_coalesced_mmio_ring *ring = aligned_alloc(PAGE, PAGE);
    assert_non_null(ring);
    memset(ring, 0, PAGE);
    return ring;
}

/* Writes queued across the end of the ring come out in the guest's order,
 * and each slot is still held while its write is handled. */
static void drained_oldest_first_across_the_wrap(void **state)
{
    (void)state;
    struct kvm_coalesced_mmio_ring *ring = new_ring();
    uint32_t entries = kvm_coalesced_ring_entries(PAGE);
    struct delivered d = {.ring = ring};

    assert_int_equal(entries, (PAGE - 8) / 24);
    ring->first = ring->last = entries - 3;
    for (uint32_t i = 0; i < 7; i++)
        kvm_queues(ring, entries, 0x1000 + 4 * i, &i, 4);
    assert_int_equal(ring->last, 4);
    assert_int_equal(kvm_coalesced_drain(ring, entries, record, &d), 7);
    assert_int_equal(d.count, 7);
    for (uint32_t i = 0; i < 7; i++) {
        assert_int_equal(d.gpa[i], 0x1000 + 4 * i);
        assert_int_equal(d.value[i], i);
        assert_int_equal(d.first_at_delivery[i], (entries - 3 + i) % entries);
    }
    assert_int_equal(ring->first, ring->last);
    assert_int_equal(kvm_coalesced_drain(ring, entries, record, &d), 0);
    free(ring);
}

/* An entry longer than its 8 data bytes is dropped (its slot freed); an
 * index outside the ring stops the replay without reading past it. */
static void malformed_entries_handed_on_never(void **state)
{
    (void)state;
    struct kvm_coalesced_mmio_ring *ring = new_ring();
    uint32_t entries = kvm_coalesced_ring_entries(PAGE), v = 7;
    struct delivered d = {.ring = ring};

    kvm_queues(ring, entries, 0x2000, &v, 4);
    ring->coalesced_mmio[0].len = 9;
    kvm_queues(ring, entries, 0x2004, &v, 4);
    assert_int_equal(kvm_coalesced_drain(ring, entries, record, &d), 2);
    assert_int_equal(d.count, 1);
    assert_int_equal(d.gpa[0], 0x2004);

    ring->first = entries + 5;
    ring->last = 1;
    assert_int_equal(kvm_coalesced_drain(ring, entries, record, &d), 0);
    assert_int_equal(d.count, 1);
    free(ring);
}

/* The register file, from the virtio 1.2 spec (4.2.2): each word's write
 * has an effect of its own (interrupt, queue work, a check, a reset) or
 * only latches a value for a later access. */
static void latch_registers_are_exactly_those_without_effect(void **state)
{
    (void)state;
    static const uint32_t latch[] = {
        0x014, /* DeviceFeaturesSel */ 0x018, 0x01c, /* reserved */
        0x020, /* DriverFeatures: checked at FEATURES_OK */ 0x024, /* DriverFeaturesSel */
        0x030, /* QueueSel */ 0x034, /* QueueNumMax: read-only */ 0x038, /* QueueNum */
        0x080, 0x084, 0x088, 0x08c, 0x090, 0x094, 0x098, 0x09c, 0x0a0, 0x0a4, /* rings */
    };
    static const uint32_t with_effect[] = {
        0x044, /* QueueReady: validates the queue */ 0x050, /* QueueNotify */
        0x064, /* InterruptACK */ 0x070, /* Status: features check, reset */
        0x100, 0x104, 0x1fc, /* config space: the device's write_config */
    };

    for (size_t i = 0; i < sizeof(latch) / sizeof(latch[0]); i++)
        assert_true(virtio_mmio_write_latches(latch[i]));
    for (size_t i = 0; i < sizeof(with_effect) / sizeof(with_effect[0]); i++)
        assert_false(virtio_mmio_write_latches(with_effect[i]));
    /* Nothing else: the read-only words before the selects, shared memory
     * and config generation need no coalescing. */
    unsigned n = 0;
    for (uint32_t off = 0; off < 0x1000; off += 4)
        n += virtio_mmio_write_latches(off);
    assert_int_equal(n, sizeof(latch) / sizeof(latch[0]));
}

/* ---- a driver's probe, each write exiting or latch writes coalesced ---- */

#define RNG_BASE X86_VIRTIO_MMIO_BASE

struct guest {
    struct vm *vm;
    struct kvm_coalesced_mmio_ring *ring; /* NULL: every write exits */
    uint32_t entries;
};

static void deliver_to_bus(void *opaque, uint64_t gpa, const uint8_t *data, uint32_t len)
{
    uint8_t copy[8];
    memcpy(copy, data, len);
    (void)vm_bus_access(opaque, false, gpa, copy, len, true);
}

/* As hv_vcpu_run() does before smolvm handles any exit. */
static void exits(struct guest *g)
{
    if (g->ring)
        kvm_coalesced_drain(g->ring, g->entries, deliver_to_bus, g->vm);
}

static void driver_write(struct guest *g, uint32_t offset, uint32_t v)
{
    if (g->ring && virtio_mmio_write_latches(offset)) {
        kvm_queues(g->ring, g->entries, RNG_BASE + offset, &v, 4);
        return;
    }
    exits(g);
    (void)vm_bus_access(g->vm, false, RNG_BASE + offset, &v, 4, true);
}

static uint32_t driver_read(struct guest *g, uint32_t offset)
{
    uint32_t v = 0;
    exits(g);
    (void)vm_bus_access(g->vm, false, RNG_BASE + offset, &v, 4, false);
    return v;
}

/* Linux's virtio_mmio probe and vm_setup_vq, for the one queue of
 * virtio-rng; returns what the driver read back on the way. */
static uint32_t probe(struct guest *g)
{
    uint32_t seen = 0;

    driver_write(g, 0x070, 0);
    driver_write(g, 0x070, 1 | 2);
    driver_write(g, 0x014, 1);
    seen += driver_read(g, 0x010); /* device features, high word */
    driver_write(g, 0x014, 0);
    seen += driver_read(g, 0x010);
    driver_write(g, 0x024, 1);
    driver_write(g, 0x020, 1); /* VIRTIO_F_VERSION_1 */
    driver_write(g, 0x024, 0);
    driver_write(g, 0x020, 0);
    driver_write(g, 0x070, 1 | 2 | 8);
    seen += driver_read(g, 0x070) & 8;
    driver_write(g, 0x030, 0);
    seen += driver_read(g, 0x044); /* not ready yet */
    seen += driver_read(g, 0x034); /* QueueNumMax of queue 0 */
    driver_write(g, 0x038, 64);
    driver_write(g, 0x080, 0x100000);
    driver_write(g, 0x084, 0);
    driver_write(g, 0x090, 0x101000);
    driver_write(g, 0x094, 0);
    driver_write(g, 0x0a0, 0x102000);
    driver_write(g, 0x0a4, 0);
    driver_write(g, 0x044, 1);
    /* A select of a queue it does not have, left as the last word. */
    driver_write(g, 0x030, 5);
    seen += driver_read(g, 0x034);
    driver_write(g, 0x070, 1 | 2 | 8 | 4);
    driver_write(g, 0x014, 1);
    return seen;
}

static struct vm *rng_vm(void)
{
    struct vm_config cfg;
    struct vm *vm = NULL;

    vm_config_defaults(&cfg);
    cfg.mem_bytes = 16u << 20;
    cfg.cpus = 1;
    cfg.rng = true;
    cfg.vsock_cid = 0;
    if (vm_create_devices_only(&cfg, &vm) < 0)
        fail_msg("vm_create_devices_only: %s", err_msg());
    return vm;
}

static void saved(struct vm *vm, struct blob *out)
{
    *out = (struct blob){0};
    assert_int_equal(vm_save_device_state(vm, out), 0);
}

static void replayed_probe_leaves_the_device_as_exits_do(void **state)
{
    (void)state;
    struct guest direct = {.vm = rng_vm()};
    struct guest coalesced = {.vm = rng_vm(), .ring = new_ring(),
                              .entries = kvm_coalesced_ring_entries(PAGE)};
    struct blob a, b;
    uint32_t seen_direct = probe(&direct), seen_coalesced = probe(&coalesced);

    exits(&coalesced); /* a pause: every vCPU exits first */
    assert_int_equal(coalesced.ring->first, coalesced.ring->last);
    assert_int_equal(seen_coalesced, seen_direct);
    assert_int_equal(driver_read(&direct, 0x008), 4); /* virtio-rng is there */
    driver_write(&direct, 0x030, 0);
    driver_write(&coalesced, 0x030, 0);
    assert_int_equal(driver_read(&direct, 0x044), 1); /* its queue went live */
    assert_int_equal(driver_read(&coalesced, 0x044), 1);
    saved(direct.vm, &a);
    saved(coalesced.vm, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    free(a.data);
    free(b.data);
    free(coalesced.ring);
    vm_destroy(direct.vm);
    vm_destroy(coalesced.vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(drained_oldest_first_across_the_wrap),
        cmocka_unit_test(malformed_entries_handed_on_never),
        cmocka_unit_test(latch_registers_are_exactly_those_without_effect),
        cmocka_unit_test(replayed_probe_leaves_the_device_as_exits_do),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
