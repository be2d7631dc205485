/* Device placement and device state records (issue 18): where each device
 * sits comes from the config through the placement table, whatever order
 * the device types were registered in; every device's record survives a
 * save and restore; a newer record is refused by name and version, an older
 * one upgraded; hostile records give one message. On VMs of devices only
 * (no KVM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "core/vm.h"
#include "devices/device.h"
#include "util/blob.h"
#include "util/err.h"
#include "util/le.h"

#define TAG_V1 0x20564544u /* "DEV " */
#define TAG 0x56564544u    /* "DEVV" */
#define MAX_RECORDS 16

static char disk_paths[2][64];

static void config(struct vm_config *cfg, unsigned disks)
{
    vm_config_defaults(cfg);
    cfg->mem_bytes = 16u << 20;
    cfg->cpus = 1;
    cfg->rng = true;
    cfg->console = VM_CONSOLE_VIRTIO;
    cfg->vsock_cid = 0; /* configs of before vsock; vsock_is_placed_last covers it */
    cfg->disk_count = disks;
    for (unsigned i = 0; i < disks; i++) {
        cfg->disks[i].path = disk_paths[i];
        cfg->disks[i].format = "raw";
    }
}

static struct vm *new_vm(unsigned disks)
{
    struct vm_config cfg;
    struct vm *vm = NULL;

    config(&cfg, disks);
    if (vm_create_devices_only(&cfg, &vm) < 0)
        fail_msg("vm_create_devices_only: %s", err_msg());
    return vm;
}

static void mmio_write(struct vm *vm, uint64_t addr, uint32_t v)
{
    (void)vm_bus_access(vm, false, addr, &v, 4, true);
}

static uint32_t mmio_read(struct vm *vm, uint64_t addr)
{
    uint32_t v = 0;
    (void)vm_bus_access(vm, false, addr, &v, 4, false);
    return v;
}

/* What a driver does at probe: features, each queue in RAM, DRIVER_OK. */
static void set_up_virtio(struct vm *vm, unsigned window)
{
    uint64_t base = X86_VIRTIO_MMIO_BASE + window * X86_VIRTIO_MMIO_WINDOW;
    uint64_t rings = 0x100000 + window * 0x40000ull;

    mmio_write(vm, base + 0x070, 1 | 2);
    mmio_write(vm, base + 0x024, 1);
    mmio_write(vm, base + 0x020, 1); /* VIRTIO_F_VERSION_1 */
    mmio_write(vm, base + 0x024, 0);
    mmio_write(vm, base + 0x020, 0);
    mmio_write(vm, base + 0x070, 1 | 2 | 8);
    for (unsigned q = 0; q < 2; q++, rings += 0x4000) {
        mmio_write(vm, base + 0x030, q);
        if (!mmio_read(vm, base + 0x034))
            break;
        mmio_write(vm, base + 0x038, 16);
        mmio_write(vm, base + 0x080, (uint32_t)rings);
        mmio_write(vm, base + 0x090, (uint32_t)rings + 0x1000);
        mmio_write(vm, base + 0x0a0, (uint32_t)rings + 0x2000);
        mmio_write(vm, base + 0x044, 1);
    }
    mmio_write(vm, base + 0x070, 1 | 2 | 8 | 4);
    /* Kicked once, as a restore kicks them: the queues' interrupt state
     * is then what a restore leaves. */
    for (unsigned q = 0; q < 2; q++)
        mmio_write(vm, base + 0x050, q);
}

static void set_up_devices(struct vm *vm)
{
    uint8_t lcr = 0x03, scr = 0x5a;

    for (unsigned i = 0; i < 4; i++)
        set_up_virtio(vm, i);
    (void)vm_bus_access(vm, true, X86_PORT_COM1 + 3, &lcr, 1, true);
    (void)vm_bus_access(vm, true, X86_PORT_COM1 + 7, &scr, 1, true);
}

static void save(struct vm *vm, struct blob *out)
{
    *out = (struct blob){0};
    assert_int_equal(vm_save_device_state(vm, out), 0);
}

/* ---- records taken apart and put back together ---- */

struct record {
    uint32_t tag;
    char name[64];
    uint32_t version;
    uint8_t payload[8192];
    size_t len;
};

static unsigned parse(const struct blob *b, struct record *recs)
{
    struct blob_reader in = blob_reader(b->data, b->len), body;
    unsigned n = 0;
    uint32_t tag;

    while (blob_next_record(&in, &tag, &body)) {
        struct record *r = &recs[n++];
        uint16_t len = blob_get_u16(&body);
        assert_true(n <= MAX_RECORDS && len < sizeof(r->name));
        r->tag = tag;
        blob_get(&body, r->name, len);
        r->name[len] = 0;
        r->version = tag == TAG ? blob_get_u32(&body) : 1;
        r->len = body.left;
        blob_get(&body, r->payload, body.left);
        assert_false(body.failed);
    }
    assert_false(in.failed);
    return n;
}

static void build(const struct record *recs, unsigned n, struct blob *out)
{
    *out = (struct blob){0};
    for (unsigned i = 0; i < n; i++) {
        size_t mark = blob_begin_record(out, recs[i].tag);
        blob_put_u16(out, (uint16_t)strlen(recs[i].name));
        blob_put(out, recs[i].name, strlen(recs[i].name));
        if (recs[i].tag == TAG)
            blob_put_u32(out, recs[i].version);
        blob_put(out, recs[i].payload, recs[i].len);
        blob_end_record(out, mark);
    }
}

static struct record *find(struct record *recs, unsigned n, const char *prefix)
{
    for (unsigned i = 0; i < n; i++)
        if (strncmp(recs[i].name, prefix, strlen(prefix)) == 0)
            return &recs[i];
    fail_msg("no record %s", prefix);
    return NULL;
}

/* recs, restored into a fresh VM: 0 or the error, its message in err_msg(). */
static int restore_fresh(const struct record *recs, unsigned n, struct blob *resaved)
{
    struct vm *vm = new_vm(2);
    struct blob b;
    int r;

    build(recs, n, &b);
    err_clear();
    r = vm_restore_device_state(vm, b.data, b.len);
    if (r == 0 && resaved)
        save(vm, resaved);
    blob_free(&b);
    vm_destroy(vm);
    return r;
}

static void assert_refused(const struct record *recs, unsigned n, const char *message)
{
    assert_true(restore_fresh(recs, n, NULL) < 0);
    if (!strstr(err_msg(), message))
        fail_msg("expected '%s' in: %s", message, err_msg());
}

static void assert_same(const struct blob *a, const struct blob *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len);
}

/* ---- placement ---- */

struct expected_slot {
    const char *type;
    uint64_t base;
    uint32_t irq;
    const char *state_name;
    uint32_t virtio_id;
};

static void assert_slots(struct vm *vm, const struct expected_slot *want, unsigned n)
{
    unsigned count;
    const struct device_slot *s = vm_device_slots(vm, &count);

    assert_int_equal(count, n);
    for (unsigned i = 0; i < n; i++) {
        assert_string_equal(s[i].type, want[i].type);
        assert_int_equal(s[i].mmio_base, want[i].base);
        assert_int_equal(s[i].irq, want[i].irq);
        assert_string_equal(s[i].state_name, want[i].state_name);
        if (want[i].base)
            assert_int_equal(mmio_read(vm, want[i].base + 0x008), want[i].virtio_id);
    }
}

/* What configs got before the placement table (devices in link order):
 * saved bundles and their guests' device trees hold these windows. */
static const struct expected_slot before_the_table[] = {
    {"serial", 0, 0, "serial-com1", 0},
    {"i8042", 0, 0, "", 0},
    {"acpi-pm", 0, 0, "", 0},
    {"vmgenid", 0, 0, "vmgenid", 0},
    {"virtio-rng", 0xd0000000, 5, "virtio-rng@0xd0000000", 4},
    {"virtio-blk", 0xd0001000, 6, "virtio-blk@0xd0001000", 2},
    {"virtio-blk", 0xd0002000, 7, "virtio-blk@0xd0002000", 2},
    {"virtio-console", 0xd0003000, 8, "virtio-console@0xd0003000", 3},
};
#define SLOTS (sizeof(before_the_table) / sizeof(before_the_table[0]))

static void placement_keeps_the_layout_of_before(void **state)
{
    struct vm_config cfg;
    struct vm *vm = new_vm(2);
    static const struct expected_slot one_disk[] = {
        {"serial", 0, 0, "serial-com1", 0},
        {"i8042", 0, 0, "", 0},
        {"acpi-pm", 0, 0, "", 0},
        {"vmgenid", 0, 0, "vmgenid", 0},
        {"virtio-blk", 0xd0000000, 5, "virtio-blk@0xd0000000", 2},
    };
    (void)state;

    assert_slots(vm, before_the_table, SLOTS);
    vm_destroy(vm);
    config(&cfg, 1);
    cfg.rng = false;
    cfg.console = VM_CONSOLE_SERIAL;
    assert_int_equal(vm_create_devices_only(&cfg, &vm), 0);
    assert_slots(vm, one_disk, 5);
    vm_destroy(vm);
}

/* virtio-vsock's row is the table's last: its window comes after every
 * other device's; its record (the transport's and the guest CID) round
 * trips, and a record of another CID is refused. */
static void vsock_is_placed_last_and_round_trips(void **state)
{
    struct expected_slot with_vsock[SLOTS + 1];
    struct vm_config cfg;
    struct blob saved, resaved;
    struct vm *vm;
    (void)state;

    memcpy(with_vsock, before_the_table, sizeof(before_the_table));
    with_vsock[SLOTS] = (struct expected_slot){"virtio-vsock", 0xd0004000, 9,
                                               "virtio-vsock@0xd0004000", 19};
    config(&cfg, 2);
    cfg.vsock_cid = 3;
    assert_int_equal(vm_create_devices_only(&cfg, &vm), 0);
    assert_slots(vm, with_vsock, SLOTS + 1);
    for (unsigned i = 0; i < 5; i++)
        set_up_virtio(vm, i);
    save(vm, &saved);
    vm_destroy(vm);
    assert_int_equal(vm_create_devices_only(&cfg, &vm), 0);
    assert_int_equal(vm_restore_device_state(vm, saved.data, saved.len), 0);
    save(vm, &resaved);
    vm_destroy(vm);
    assert_same(&saved, &resaved);
    cfg.vsock_cid = 4;
    assert_int_equal(vm_create_devices_only(&cfg, &vm), 0);
    assert_true(vm_restore_device_state(vm, saved.data, saved.len) < 0);
    assert_non_null(strstr(err_msg(), "config says 4"));
    vm_destroy(vm);
    blob_free(&saved);
    blob_free(&resaved);
}

static void placement_ignores_registration_order(void **state)
{
    const struct device_type *reversed[32];
    size_t n = (size_t)(device_types_end() - device_types_begin());
    struct blob normal, other;
    struct vm *vm;
    (void)state;

    assert_true(n > 1 && n <= 32);
    for (size_t i = 0; i < n; i++)
        reversed[i] = device_types_begin()[n - 1 - i];
    vm = new_vm(2);
    set_up_devices(vm);
    save(vm, &normal);
    vm_destroy(vm);

    device_types_replace(reversed, reversed + n);
    assert_ptr_equal(device_types_begin()[0], reversed[0]);
    vm = new_vm(2);
    assert_slots(vm, before_the_table, SLOTS);
    set_up_devices(vm);
    save(vm, &other);
    vm_destroy(vm);

    assert_same(&normal, &other); /* same records, same names, same order */
    blob_free(&normal);
    blob_free(&other);
}

/* ---- records ---- */

/* Offsets into a virtio record: the registers (36 bytes), then per queue
 * size u16, ready u8, event_idx u8, desc/avail/used u64, ... */
#define QUEUE0_SIZE 36
#define QUEUE0_READY 38
#define QUEUE0_DESC 40
#define UART_FIFO_LENGTH 9


static void every_device_round_trips(void **state)
{
    struct record recs[MAX_RECORDS];
    struct blob saved, resaved;
    struct vm *vm = new_vm(2);
    unsigned n;
    (void)state;

    set_up_devices(vm);
    save(vm, &saved);
    vm_destroy(vm);
    n = parse(&saved, recs);
    assert_int_equal(n, 6); /* serial, vmgenid, rng, two disks, console */
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(recs[i].tag, TAG);
        assert_int_equal(recs[i].version, strncmp(recs[i].name, "virtio-console", 14) ? 1 : 2);
    }
    assert_int_equal(restore_fresh(recs, n, &resaved), 0);
    assert_same(&saved, &resaved);
    blob_free(&saved);
    blob_free(&resaved);
}

static void saved_records(struct record *recs, unsigned *n)
{
    struct vm *vm = new_vm(2);
    struct blob saved;

    set_up_devices(vm);
    save(vm, &saved);
    vm_destroy(vm);
    *n = parse(&saved, recs);
    blob_free(&saved);
}

static void newer_record_is_refused_by_name(void **state)
{
    static struct record recs[MAX_RECORDS];
    unsigned n;
    (void)state;

    saved_records(recs, &n);
    find(recs, n, "virtio-console")->version = 3;
    assert_refused(recs, n, "virtio-console@0xd0003000 state is version 3; this smolvm reads "
                            "up to version 2");
    find(recs, n, "virtio-console")->version = 0;
    assert_refused(recs, n, "virtio-console@0xd0003000 state is version 0");
}

/* Records from before versions ("DEV ", no version field) are version 1;
 * virtio-console's version 1 had no pending input, version 2 does. */
static void older_records_are_upgraded(void **state)
{
    static struct record recs[MAX_RECORDS], old[MAX_RECORDS];
    struct blob current, upgraded;
    struct record *console;
    unsigned n;
    (void)state;

    saved_records(recs, &n);
    build(recs, n, &current);
    memcpy(old, recs, sizeof(recs));
    for (unsigned i = 0; i < n; i++)
        old[i].tag = TAG_V1;
    console = find(old, n, "virtio-console");
    assert_int_equal(get_le(console->payload + console->len - 4, 4), 0); /* no pending input */
    console->len -= 4; /* version 1 ended with the transport's fields */
    assert_int_equal(restore_fresh(old, n, &upgraded), 0);
    assert_same(&current, &upgraded);
    blob_free(&upgraded);

    /* A version-1 record in today's framing reads the same. */
    console->tag = TAG;
    console->version = 1;
    assert_int_equal(restore_fresh(old, n, &upgraded), 0);
    assert_same(&current, &upgraded);
    blob_free(&upgraded);
    blob_free(&current);
}

/* Version 2's own field: host input the guest had no buffers for. */
static void console_pending_input_survives(void **state)
{
    static struct record recs[MAX_RECORDS], again[MAX_RECORDS];
    struct record *console;
    struct blob resaved;
    unsigned n;
    (void)state;

    saved_records(recs, &n);
    console = find(recs, n, "virtio-console");
    console->len -= 4;
    put_le(console->payload + console->len, 2, 4);
    memcpy(console->payload + console->len + 4, "hi", 2);
    console->len += 6;
    /* The receive queue has no buffers: the input stays pending. */
    assert_int_equal(restore_fresh(recs, n, &resaved), 0);
    assert_int_equal(parse(&resaved, again), n);
    console = find(again, n, "virtio-console");
    assert_memory_equal(console->payload + console->len - 6, "\2\0\0\0hi", 6);
    blob_free(&resaved);

    console->len -= 6;
    put_le(console->payload + console->len, 4097, 4);
    console->len += 4;
    assert_refused(again, n, "virtio-console@0xd0003000 (version 2): pending input 4097 is "
                             "more than 4096");
}

/* tests/fuzz/corpus/device_state/all-v1: device state as smolvm wrote it
 * before records had versions (the fuzzer's seed VM: rng, one disk,
 * virtio-console, queues set up by a driver). */
static void records_written_before_versions_restore(void **state)
{
    static uint8_t old[4096];
    static struct record recs[MAX_RECORDS];
    FILE *f = fopen(SMOLVM_SOURCE_ROOT "/tests/fuzz/corpus/device_state/all-v1", "rb");
    struct blob resaved;
    struct vm *vm = new_vm(1);
    size_t len;
    unsigned n;
    int r;
    (void)state;

    assert_non_null(f);
    len = fread(old, 1, sizeof(old), f);
    fclose(f);
    assert_true(len > 0 && len < sizeof(old));
    assert_int_equal(le32(old), TAG_V1);
    r = vm_restore_device_state(vm, old, len);
    if (r == 0)
        save(vm, &resaved);
    vm_destroy(vm); /* before a failure: the next tests open its disk */
    if (r < 0)
        fail_msg("%s", err_msg());
    n = parse(&resaved, recs);
    assert_int_equal(n, 5);
    assert_string_equal(find(recs, n, "virtio-console")->name, "virtio-console@0xd0002000");
    assert_int_equal(find(recs, n, "virtio-console")->version, 2);
    assert_int_equal(find(recs, n, "virtio-blk")->payload[QUEUE0_READY], 1);
    blob_free(&resaved);
}

static void truncated_or_oversized_records_are_refused(void **state)
{
    static struct record recs[MAX_RECORDS];
    unsigned n;
    (void)state;

    saved_records(recs, &n);
    for (unsigned i = 0; i < n; i++) {
        char message[128];
        if (recs[i].len == 0)
            continue; /* vmgenid: no fields to cut */
        recs[i].len--;
        snprintf(message, sizeof(message), "%s (version %u): the record ends before its fields do",
                 recs[i].name, recs[i].version);
        assert_refused(recs, n, message);
        recs[i].len += 2;
        snprintf(message, sizeof(message), "%s (version %u): 1 bytes after its fields",
                 recs[i].name, recs[i].version);
        assert_refused(recs, n, message);
        recs[i].len--;
    }
    /* The whole state cut anywhere: a message, never a crash. */
    {
        struct blob b;
        struct vm *vm = new_vm(2);
        build(recs, n, &b);
        for (size_t len = 0; len < b.len; len += 7)
            assert_true(len == 0 || vm_restore_device_state(vm, b.data, len) < 0);
        blob_free(&b);
        vm_destroy(vm);
    }
}

static void hostile_fields_are_refused(void **state)
{
    static struct record recs[MAX_RECORDS], good[MAX_RECORDS];
    struct record *blk;
    unsigned n;
    (void)state;

    saved_records(good, &n);
    memcpy(recs, good, sizeof(good));
    blk = find(recs, n, "virtio-blk@0xd0001000");
    put_le(blk->payload + QUEUE0_SIZE, 512, 2);
    assert_refused(recs, n, "virtio-blk@0xd0001000 (version 1): queue 0: size 512 above "
                            "QueueNumMax 256");
    memcpy(recs, good, sizeof(good));
    blk->payload[QUEUE0_READY] = 2;
    assert_refused(recs, n, "virtio-blk@0xd0001000 (version 1): a flag holds 2");
    memcpy(recs, good, sizeof(good));
    put_le(blk->payload + QUEUE0_DESC, 0x7ffff000, 8); /* past 16 MiB of RAM */
    assert_refused(recs, n, "virtio-blk@0xd0001000 (version 1): queue 0:");
    memcpy(recs, good, sizeof(good));
    put_le(find(recs, n, "serial-com1")->payload + UART_FIFO_LENGTH, 4097, 4);
    assert_refused(recs, n, "serial-com1 (version 1): receive FIFO length 4097 is more than 4096");
    memcpy(recs, good, sizeof(good));
    snprintf(find(recs, n, "virtio-rng")->name, 64, "virtio-rng@0xd0009000");
    assert_refused(recs, n, "a device this VM does not have (virtio-rng@0xd0009000)");
}

/* virtio-vsock offers 128-entry queues; smolvm offered 256 before, and a
 * bundle saved then (its guest's queues that size) still restores; a
 * queue larger than any smolvm offered is refused. */
static void vsock_queues_of_before_restore(void **state)
{
    static struct record recs[MAX_RECORDS];
    const uint64_t vsock_base = 0xd0004000;
    struct vm_config cfg;
    struct blob saved, edited;
    struct record *vsock;
    struct vm *vm;
    unsigned n;
    (void)state;

    config(&cfg, 2);
    cfg.vsock_cid = 3;
    assert_int_equal(vm_create_devices_only(&cfg, &vm), 0);
    mmio_write(vm, vsock_base + 0x030, 0);
    assert_int_equal(mmio_read(vm, vsock_base + 0x034), 128);
    for (unsigned i = 0; i < 5; i++)
        set_up_virtio(vm, i);
    save(vm, &saved);
    vm_destroy(vm);
    n = parse(&saved, recs);
    vsock = find(recs, n, "virtio-vsock");
    for (unsigned size = 256; size <= 512; size *= 2) {
        put_le(vsock->payload + QUEUE0_SIZE, size, 2);
        build(recs, n, &edited);
        assert_int_equal(vm_create_devices_only(&cfg, &vm), 0);
        err_clear();
        if (size == 256)
            assert_int_equal(vm_restore_device_state(vm, edited.data, edited.len), 0);
        else {
            assert_true(vm_restore_device_state(vm, edited.data, edited.len) < 0);
            assert_non_null(strstr(err_msg(), "queue 0: size 512 above QueueNumMax 256"));
        }
        vm_destroy(vm);
        blob_free(&edited);
    }
    blob_free(&saved);
}

static int linked_types(void **state)
{
    (void)state;
    device_types_replace(NULL, NULL);
    return 0;
}

static int make_disks(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 2; i++) {
        int fd = memfd_create("disk", 0);
        if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
            return -1;
        snprintf(disk_paths[i], sizeof(disk_paths[i]), "/proc/self/fd/%d", fd);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(placement_keeps_the_layout_of_before),
        cmocka_unit_test_teardown(placement_ignores_registration_order, linked_types),
        cmocka_unit_test(every_device_round_trips),
        cmocka_unit_test(newer_record_is_refused_by_name),
        cmocka_unit_test(older_records_are_upgraded),
        cmocka_unit_test(console_pending_input_survives),
        cmocka_unit_test(records_written_before_versions_restore),
        cmocka_unit_test(vsock_is_placed_last_and_round_trips),
        cmocka_unit_test(truncated_or_oversized_records_are_refused),
        cmocka_unit_test(hostile_fields_are_refused),
        cmocka_unit_test(vsock_queues_of_before_restore),
    };
    return cmocka_run_group_tests(tests, make_disks, NULL);
}
