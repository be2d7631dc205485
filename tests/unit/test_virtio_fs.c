/* The virtio-fs device as a guest driver meets it, on a VM of devices only:
 * its registers and config space (tag, request queues, no shared memory
 * region), FUSE requests through its request queue served by its threads,
 * a FORGET on the hiprio queue, and its state saved and restored into a
 * second VM whose share is a copy of the folder (a start with the share
 * remapped): the node ids and open file of the first still work. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "arch/x86/layout.h"
#include "core/config.h"
#include "core/vm.h"
#include "scratch.h"
#include "util/blob.h"
#include "util/err.h"
#include "confine/confine.h"

#define QSIZE 16
#define RINGS 0x100000ull /* queue q's rings at RINGS + q * 0x4000 */
#define REQ 0x200000ull
#define REPLY 0x300000ull
#define VIRTIO_ID_FS 26

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

static struct vm *vm;
static uint64_t base;
static uint16_t avail_idx[2];
static uint64_t unique;
static uint32_t reply_bytes = 4096; /* the reply buffer submit gives */

static void mmio_write(uint64_t off, uint32_t v)
{
    assert_true(vm_bus_access(vm, false, base + off, &v, 4, true));
}

static uint32_t mmio_read(uint64_t off)
{
    uint32_t v = 0;
    assert_true(vm_bus_access(vm, false, base + off, &v, 4, false));
    return v;
}

static void *ram(uint64_t gpa, uint64_t len)
{
    void *p = gpa_ptr(vm_memory(vm), gpa, len);
    assert_non_null(p);
    return p;
}

/* The VM with one share of folder, its device found and set up as the
 * driver does at probe. */
static void boot(const char *folder)
{
    static struct vm_config cfg;

    vm_config_defaults(&cfg);
    cfg.mem_bytes = 16u << 20;
    cfg.cpus = 1;
    cfg.rng = false;
    cfg.share_count = 1;
    cfg.shares[0] = (struct vm_share_config){.path = folder, .tag = "work"};
    assert_int_equal(vm_create_devices_only(&cfg, &vm), 0);
    for (unsigned i = 0; i < X86_VIRTIO_MAX_DEVICES; i++) {
        base = X86_VIRTIO_MMIO_BASE + i * X86_VIRTIO_MMIO_WINDOW;
        if (mmio_read(0x008) == VIRTIO_ID_FS)
            break;
    }
    assert_int_equal(mmio_read(0x008), VIRTIO_ID_FS);
    memset(ram(RINGS, 0x8000), 0, 0x8000);
    mmio_write(0x070, 0);
    mmio_write(0x070, 1 | 2);
    mmio_write(0x024, 1);
    mmio_write(0x020, 1); /* VIRTIO_F_VERSION_1 */
    mmio_write(0x070, 1 | 2 | 8);
    for (unsigned q = 0; q < 2; q++) {
        uint64_t rings = RINGS + q * 0x4000;
        mmio_write(0x030, q);
        assert_true(mmio_read(0x034) >= QSIZE);
        mmio_write(0x038, QSIZE);
        mmio_write(0x080, (uint32_t)rings);
        mmio_write(0x090, (uint32_t)rings + 0x1000);
        mmio_write(0x0a0, (uint32_t)rings + 0x2000);
        mmio_write(0x044, 1);
    }
    mmio_write(0x070, 1 | 2 | 8 | 4);
}

static uint16_t used_idx(unsigned q)
{
    return __atomic_load_n((uint16_t *)ram(RINGS + q * 0x4000 + 0x2000 + 2, 2), __ATOMIC_ACQUIRE);
}

/* Puts [req, req+len) and a reply buffer of reply_bytes (none on the hiprio queue)
 * on queue q, kicks, waits for the device to give the chain back: the
 * FUSE error, the payload copied to payload. */
static int32_t submit(unsigned q, const void *req, uint32_t len, void *payload, size_t cap)
{
    uint64_t rings = RINGS + q * 0x4000;
    struct desc *d = ram(rings, QSIZE * sizeof(*d));
    uint16_t *avail = ram(rings + 0x1000, 4 + 2 * QSIZE);
    uint16_t before = used_idx(q);
    struct fuse_out_header h = {0};
    struct timespec tick = {0, 1000000};

    memcpy(ram(REQ, len), req, len);
    memset(ram(REPLY, reply_bytes), 0, reply_bytes);
    d[0] = (struct desc){REQ, len, q ? 1 : 0, 1};
    d[1] = (struct desc){REPLY, reply_bytes, 2, 0};
    avail[2 + avail_idx[q] % QSIZE] = 0;
    __atomic_store_n(&avail[1], ++avail_idx[q], __ATOMIC_RELEASE);
    mmio_write(0x050, q);
    for (int i = 0; i < 5000 && used_idx(q) == before; i++)
        nanosleep(&tick, NULL);
    assert_int_not_equal(used_idx(q), before);
    if (q == 0)
        return 0;
    memcpy(&h, ram(REPLY, sizeof(h)), sizeof(h));
    assert_true(h.len >= sizeof(h) && h.len <= reply_bytes);
    if (payload)
        memcpy(payload, ram(REPLY + sizeof(h), cap), cap);
    return h.error;
}

static int32_t call(uint32_t opcode, uint64_t node, const void *arg, size_t arg_len,
                    const char *name, void *payload, size_t cap)
{
    uint8_t req[512];
    struct fuse_in_header h = {.opcode = opcode, .nodeid = node, .unique = ++unique};
    size_t len = sizeof(h);

    if (arg_len)
        memcpy(req + len, arg, arg_len);
    len += arg_len;
    if (name) {
        memcpy(req + len, name, strlen(name) + 1);
        len += strlen(name) + 1;
    }
    h.len = (uint32_t)len;
    memcpy(req, &h, sizeof(h));
    return submit(1, req, (uint32_t)len, payload, cap);
}

/* The avail indexes go on across the restore, as the guest's would (the
 * device resumes at the saved ones). */
static void device_serves_fuse(void **state)
{
    struct fuse_init_in init = {.major = 7, .minor = 31};
    struct fuse_init_out io;
    struct fuse_entry_out e;
    struct fuse_open_in oi = {.flags = O_RDWR};
    struct fuse_open_out oo;
    struct fuse_read_in ri;
    struct fuse_getattr_in gi = {0};
    struct fuse_attr_out ao;
    struct blob saved = {0};
    static uint8_t rings[0x8000];
    char tag[37] = {0}, data[16] = {0};
    uint64_t hello, sub, fh;
    (void)state;

    assert_int_equal(sh("mkdir -p share/sub && echo hi > share/hello"), 0);
    boot(in_dir("share"));
    for (unsigned i = 0; i < 36; i++) {
        uint8_t b = 0;
        assert_true(vm_bus_access(vm, false, base + 0x100 + i, &b, 1, false));
        tag[i] = (char)b;
    }
    assert_string_equal(tag, "work");
    assert_int_equal(mmio_read(0x100 + 36), 1); /* num_request_queues */
    assert_int_equal(mmio_read(0x0b0), 0xffffffffu); /* no shared memory region */
    assert_int_equal(mmio_read(0x0b4), 0xffffffffu);

    assert_int_equal(call(FUSE_INIT, 0, &init, sizeof(init), NULL, &io, sizeof(io)), 0);
    assert_int_equal(io.major, 7);
    assert_int_equal(call(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "hello", &e, sizeof(e)), 0);
    hello = e.nodeid;
    assert_int_equal(call(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "sub", &e, sizeof(e)), 0);
    sub = e.nodeid;
    assert_int_equal(call(FUSE_OPEN, hello, &oi, sizeof(oi), NULL, &oo, sizeof(oo)), 0);
    fh = oo.fh;
    ri = (struct fuse_read_in){.fh = fh, .size = 16};
    assert_int_equal(call(FUSE_READ, hello, &ri, sizeof(ri), NULL, data, 3), 0);
    assert_memory_equal(data, "hi\n", 3);
    /* Eight reads at once, one kick: the pool answers every one. */
    {
        uint64_t reqq = RINGS + 0x4000;
        struct desc *d = ram(reqq, QSIZE * sizeof(*d));
        uint16_t *avail = ram(reqq + 0x1000, 4 + 2 * QSIZE);
        uint16_t before = used_idx(1);
        struct timespec tick = {0, 1000000};
        struct {
            struct fuse_in_header h;
            struct fuse_read_in r;
        } rq = {{.len = sizeof(rq), .opcode = FUSE_READ, .nodeid = hello}, {.fh = fh, .size = 3}};
        for (uint16_t i = 0; i < 8; i++) {
            rq.h.unique = 1000 + i;
            memcpy(ram(REQ + i * 256, sizeof(rq)), &rq, sizeof(rq));
            memset(ram(REPLY + i * 256, 256), 0, 256);
            d[2 * i] = (struct desc){REQ + i * 256, sizeof(rq), 1, (uint16_t)(2 * i + 1)};
            d[2 * i + 1] = (struct desc){REPLY + i * 256, 256, 2, 0};
            avail[2 + (avail_idx[1] + i) % QSIZE] = (uint16_t)(2 * i);
        }
        avail_idx[1] += 8;
        __atomic_store_n(&avail[1], avail_idx[1], __ATOMIC_RELEASE);
        mmio_write(0x050, 1);
        for (int i = 0; i < 5000 && (uint16_t)(used_idx(1) - before) < 8; i++)
            nanosleep(&tick, NULL);
        assert_int_equal((uint16_t)(used_idx(1) - before), 8);
        for (unsigned i = 0; i < 8; i++) {
            struct fuse_out_header h;
            memcpy(&h, ram(REPLY + i * 256, sizeof(h)), sizeof(h));
            assert_int_equal(h.error, 0);
            assert_int_equal(h.len, sizeof(h) + 3);
            assert_memory_equal(ram(REPLY + i * 256 + sizeof(h), 3), "hi\n", 3);
        }
    }
    /* A FORGET on the hiprio queue: no reply, the node is gone. */
    {
        struct {
            struct fuse_in_header h;
            struct fuse_forget_in f;
        } fg = {{.len = sizeof(fg), .opcode = FUSE_FORGET, .nodeid = sub}, {.nlookup = 1}};
        submit(0, &fg, sizeof(fg), NULL, 0);
        assert_int_equal(call(FUSE_GETATTR, sub, &gi, sizeof(gi), NULL, NULL, 0), -ESTALE);
    }
    assert_int_equal(call(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "sub", &e, sizeof(e)), 0);
    sub = e.nodeid;

    /* Saved (every request answered: nothing to drain), then restored into
     * a VM over a copy of the folder. */
    assert_int_equal(vm_save_device_state(vm, &saved), 0);
    memcpy(rings, ram(RINGS, sizeof(rings)), sizeof(rings));
    vm_destroy(vm);
    assert_int_equal(sh("cp -a share copy && echo copied > copy/hello"), 0);
    boot(in_dir("copy"));
    memcpy(ram(RINGS, sizeof(rings)), rings, sizeof(rings)); /* guest RAM comes back too */
    if (vm_restore_device_state(vm, saved.data, saved.len) < 0)
        fail_msg("restore: %s", err_msg());
    blob_free(&saved);
    /* No second INIT: the session goes on. */
    assert_int_equal(call(FUSE_GETATTR, sub, &gi, sizeof(gi), NULL, &ao, sizeof(ao)), 0);
    assert_true(S_ISDIR(ao.attr.mode));
    ri = (struct fuse_read_in){.fh = fh, .size = 16};
    assert_int_equal(call(FUSE_READ, hello, &ri, sizeof(ri), NULL, data, 7), 0);
    assert_memory_equal(data, "copied\n", 7);
    vm_destroy(vm);
}

/* A guest that opens files without asking (FUSE_NO_OPEN_SUPPORT, as
 * Linux's INIT offers) still does after a save and start: its kernel sends
 * no second INIT and no RELEASE, so the restored server must go on
 * answering OPEN with ENOSYS and keeping no handle for a CREATE (else each
 * file the guest creates would hold a descriptor for good). The reads go
 * through the node's own file, on the device's threads under their
 * seccomp filter. */
static void opening_without_asking_survives_a_restore(void **state)
{
    struct fuse_init_in init = {.major = 7, .minor = 31,
                                .flags = FUSE_NO_OPEN_SUPPORT | FUSE_ATOMIC_O_TRUNC};
    struct fuse_init_out io;
    struct fuse_entry_out e;
    struct fuse_open_in oi = {.flags = O_RDONLY};
    struct fuse_create_in ci = {.flags = O_WRONLY, .mode = 0644};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } created;
    struct fuse_read_in ri = {.fh = 0, .size = 16};
    struct blob saved = {0};
    static uint8_t rings[0x8000];
    char data[16] = {0};
    uint64_t hello;
    (void)state;

    memset(avail_idx, 0, sizeof(avail_idx));
    assert_int_equal(sh("mkdir -p noopen && echo hi > noopen/hello"), 0);
    boot(in_dir("noopen"));
    assert_int_equal(call(FUSE_INIT, 0, &init, sizeof(init), NULL, &io, sizeof(io)), 0);
    assert_int_equal(io.flags & FUSE_ATOMIC_O_TRUNC, 0);
    assert_int_equal(call(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "hello", &e, sizeof(e)), 0);
    hello = e.nodeid;
    assert_int_equal(call(FUSE_OPEN, hello, &oi, sizeof(oi), NULL, NULL, 0), -ENOSYS);
    assert_int_equal(call(FUSE_READ, hello, &ri, sizeof(ri), NULL, data, 3), 0);
    assert_memory_equal(data, "hi\n", 3);

    assert_int_equal(vm_save_device_state(vm, &saved), 0);
    memcpy(rings, ram(RINGS, sizeof(rings)), sizeof(rings));
    vm_destroy(vm);
    boot(in_dir("noopen"));
    memcpy(ram(RINGS, sizeof(rings)), rings, sizeof(rings));
    if (vm_restore_device_state(vm, saved.data, saved.len) < 0)
        fail_msg("restore: %s", err_msg());
    blob_free(&saved);
    assert_int_equal(call(FUSE_OPEN, hello, &oi, sizeof(oi), NULL, NULL, 0), -ENOSYS);
    assert_int_equal(call(FUSE_CREATE, FUSE_ROOT_ID, &ci, sizeof(ci), "made", &created,
                          sizeof(created)),
                     0);
    assert_int_equal(created.o.fh, 0);
    memset(data, 0, sizeof(data));
    assert_int_equal(call(FUSE_READ, hello, &ri, sizeof(ri), NULL, data, 3), 0);
    assert_memory_equal(data, "hi\n", 3);
    vm_destroy(vm);
}

/* $SMOLVM_FS_STATS: at exit the device says, per opcode, how many
 * requests it served, their file data and where their time went. */
static void stats_count_requests_per_opcode(void **state)
{
    struct fuse_init_in init = {.major = 7, .minor = 31, .flags = FUSE_NO_OPEN_SUPPORT};
    struct fuse_init_out io;
    struct fuse_entry_out e;
    struct fuse_read_in ri = {.fh = 0, .size = 4096};
    char said[2048], data[8];
    int log, saved;
    (void)state;

    memset(avail_idx, 0, sizeof(avail_idx));
    assert_int_equal(sh("mkdir -p counted && seq 1 1000 > counted/numbers && truncate -s 2M counted/numbers"), 0);
    boot(in_dir("counted"));
    assert_int_equal(call(FUSE_INIT, 0, &init, sizeof(init), NULL, &io, sizeof(io)), 0);
    assert_int_equal(call(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "numbers", &e, sizeof(e)), 0);
    assert_int_equal(call(FUSE_READ, e.nodeid, &ri, sizeof(ri), NULL, data, sizeof(data)), 0);
    ri.offset = 1 << 20; /* 128 KiB of the file's second MiB: counted apart */
    ri.size = 128 << 10;
    reply_bytes = sizeof(struct fuse_out_header) + ri.size;
    assert_int_equal(call(FUSE_READ, e.nodeid, &ri, sizeof(ri), NULL, data, sizeof(data)), 0);
    reply_bytes = 4096;
    setenv("SMOLVM_FS_STATS", "1", 1);
    saved = stderr_to("vmm.err", &log);
    vm_destroy(vm);
    vm = NULL;
    stderr_back(saved, log, said, sizeof(said));
    unsetenv("SMOLVM_FS_STATS");
    assert_non_null(strstr(said, "smolvm: virtio-fs work: 4 requests in 4 notifications\n"));
    assert_non_null(strstr(said, "smolvm: virtio-fs work: LOOKUP 1 requests, 0 KiB; each: "));
    assert_non_null(strstr(said, "smolvm: virtio-fs work: INIT 1 requests, 0 KiB; each: "));
    assert_non_null(strstr(said, "smolvm: virtio-fs work: READ 1 requests, 3 KiB; each: "));
    assert_non_null(strstr(said, "smolvm: virtio-fs work: READ <=128K 1 requests, 128 KiB; "));
    assert_non_null(strstr(said, " us serving, "));
}

static int setup(void **state)
{
    (void)state;
    return scratch_setup("virtio-fs");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

int main(void)
{
    /* The device threads under their seccomp filters, as in run and start. */
    confine_seccomp_set(CONFINE_SECCOMP_ON, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(device_serves_fuse),
        cmocka_unit_test(opening_without_asking_survives_a_restore),
        cmocka_unit_test(stats_count_requests_per_opcode),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
