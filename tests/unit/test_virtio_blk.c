/* virtio-blk's request server fed chains as a guest driver would lay them
 * out (header, data, status byte), against a raw file on the host: every
 * request type, a read-only disk, and malformed requests from a hostile
 * guest. The host file itself (its bytes, its allocated blocks) is the
 * judge of what reached the disk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/memory.h"
#include "devices/virtio/blk.h"
#include "disk/disk.h"
#include "scratch.h"
#include "util/err.h"
#include "confine/confine.h"

#define DISK_BYTES (4u << 20)
#define SECTOR 512u
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

struct request {
    struct {
        uint32_t type, reserved;
        uint64_t sector;
    } header;
    uint8_t status;
    struct virtq_chain chain;
};

static struct disk *disk;
static struct blk *blk;

static void add_buf(struct virtq_chain *c, void *addr, uint32_t len, bool writable)
{
    c->bufs[c->count++] = (struct virtq_buf){addr, len, writable};
    if (writable) {
        c->writable_bytes += len;
    } else {
        c->readable++;
        c->readable_bytes += len;
    }
}

/* A request with data going to the device (payload readable) or coming
 * from it (writable), then the status byte. */
static struct virtq_chain *request(struct request *r, uint32_t type, uint64_t sector,
                                   void *data, uint32_t len)
{
    bool device_writes = type == T_IN || type == T_GET_ID;
    memset(r, 0, sizeof(*r));
    r->header.type = type;
    r->header.sector = sector;
    r->status = 0xee;
    add_buf(&r->chain, &r->header, sizeof(r->header), false);
    if (len)
        add_buf(&r->chain, data, len, device_writes);
    add_buf(&r->chain, &r->status, 1, true);
    return &r->chain;
}

/* Serves it: the status byte the device wrote. */
static uint8_t serve(struct request *r, long want_written)
{
    long written = virtio_blk_serve(blk, &r->chain);
    assert_int_equal(written, want_written);
    return r->status;
}

static void open_disk(unsigned flags)
{
    assert_int_equal(disk_open(in_dir("disk.raw"), flags, &disk), 0);
    blk = virtio_blk_new(disk, "unit-disk-with-a-long-id");
    assert_non_null(blk);
}

static int setup(void **state)
{
    uint8_t *fill = malloc(DISK_BYTES);
    (void)state;
    memset(fill, 0xaa, DISK_BYTES);
    int fd = open(in_dir("disk.raw"), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, fill, DISK_BYTES), DISK_BYTES);
    close(fd);
    free(fill);
    open_disk(0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    virtio_blk_free(blk);
    disk_close(disk);
    err_clear();
    return 0;
}

static void file_bytes(uint64_t offset, void *out, size_t len)
{
    int fd = open(in_dir("disk.raw"), O_RDONLY);
    assert_int_equal(pread(fd, out, len, offset), (ssize_t)len);
    close(fd);
}

static uint64_t file_blocks(void)
{
    struct stat st;
    assert_int_equal(stat(in_dir("disk.raw"), &st), 0);
    return (uint64_t)st.st_blocks;
}

static void writes_then_reads_back(void **state)
{
    static uint8_t out[3 * SECTOR], in[3 * SECTOR], host[3 * SECTOR];
    struct request r;
    (void)state;
    for (unsigned i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i * 7);
    request(&r, T_OUT, 9, out, sizeof(out));
    assert_int_equal(serve(&r, 1), S_OK);
    file_bytes(9 * SECTOR, host, sizeof(host));
    assert_memory_equal(host, out, sizeof(out));
    /* Read back through two buffers, as a scatter list. */
    request(&r, T_IN, 9, in, SECTOR);
    r.chain.count--; /* the status goes after a second data buffer */
    r.chain.writable_bytes -= 1;
    add_buf(&r.chain, in + SECTOR, 2 * SECTOR, true);
    add_buf(&r.chain, &r.status, 1, true);
    assert_int_equal(serve(&r, sizeof(in) + 1), S_OK);
    assert_memory_equal(in, out, sizeof(out));
    request(&r, T_FLUSH, 0, NULL, 0);
    assert_int_equal(serve(&r, 1), S_OK);
}

static void answers_its_id(void **state)
{
    uint8_t id[20], small[4];
    struct request r;
    (void)state;
    request(&r, T_GET_ID, 0, id, sizeof(id));
    assert_int_equal(serve(&r, 21), S_OK);
    assert_memory_equal(id, "unit-disk-with-a-lon", 20); /* 20 bytes, no NUL */
    request(&r, T_GET_ID, 0, small, sizeof(small));
    assert_int_equal(serve(&r, 5), S_OK);
    assert_memory_equal(small, "unit", 4);
}

struct range {
    uint64_t sector;
    uint32_t num_sectors, flags;
};

/* Discard punches a hole; write-zeroes leaves zeros: the file's blocks
 * and bytes tell. */
static void discards_and_zeroes(void **state)
{
    static uint8_t got[1 << 20], zeros[1 << 20];
    struct range ranges[2] = {{2048, 2048, 0}, {6144, 8, 0}}; /* 1 MiB at 1 MiB, 4 KiB at 3 MiB */
    struct request r;
    uint64_t before = file_blocks();
    (void)state;
    request(&r, T_DISCARD, 0, ranges, sizeof(ranges));
    assert_int_equal(serve(&r, 1), S_OK);
    assert_true(file_blocks() <= before - (1u << 20) / 512);
    file_bytes(1 << 20, got, sizeof(got));
    assert_memory_equal(got, zeros, sizeof(got));
    file_bytes(3u << 20, got, 4096);
    assert_memory_equal(got, zeros, 4096);
    file_bytes((3u << 20) + 4096, got, 1);
    assert_int_equal(got[0], 0xaa);

    struct range z = {0, 16, 0};
    request(&r, T_WRITE_ZEROES, 0, &z, sizeof(z));
    assert_int_equal(serve(&r, 1), S_OK);
    file_bytes(0, got, 8192);
    assert_memory_equal(got, zeros, 8192);
    file_bytes(8192, got, 1);
    assert_int_equal(got[0], 0xaa);
}

/* What the guest may not do to a read-only disk fails with an I/O error
 * and leaves the file as it was; reads still work. */
static void read_only_disk_refuses_writes(void **state)
{
    uint8_t data[SECTOR], host[SECTOR], want[SECTOR];
    struct range z = {0, 8, 0};
    struct request r;
    (void)state;
    virtio_blk_free(blk);
    disk_close(disk);
    open_disk(DISK_READ_ONLY);
    memset(data, 0x55, sizeof(data));
    memset(want, 0xaa, sizeof(want));
    request(&r, T_OUT, 0, data, sizeof(data));
    assert_int_equal(serve(&r, 1), S_IOERR);
    request(&r, T_DISCARD, 0, &z, sizeof(z));
    assert_int_equal(serve(&r, 1), S_IOERR);
    request(&r, T_WRITE_ZEROES, 0, &z, sizeof(z));
    assert_int_equal(serve(&r, 1), S_IOERR);
    file_bytes(0, host, sizeof(host));
    assert_memory_equal(host, want, sizeof(want));
    request(&r, T_IN, 0, data, sizeof(data));
    assert_int_equal(serve(&r, SECTOR + 1), S_OK);
    assert_memory_equal(data, want, sizeof(want));
}

/* A hostile guest's requests: each is answered with a status (or refused
 * as malformed) and nothing outside the disk is touched. */
/* A first start whose RAM could not be served whole (core/memory.h lost):
 * a write from the guest's pages is refused, the disk left as it was (a
 * page let go reads as zeros, and zeros must not reach the disk). */
static void no_write_once_the_guest_memory_is_lost(void **state)
{
    static struct guest_memory mem;
    uint8_t data[SECTOR], host[SECTOR];
    struct request r;
    (void)state;
    memset(data, 0x55, sizeof(data));
    virtio_blk_check_memory(blk, &mem);
    request(&r, T_OUT, 1, data, sizeof(data));
    assert_int_equal(serve(&r, 1), S_OK);
    atomic_store(&mem.lost, true);
    memset(data, 0, sizeof(data));
    request(&r, T_OUT, 1, data, sizeof(data));
    assert_int_equal(serve(&r, 1), S_IOERR);
    file_bytes(SECTOR, host, sizeof(host));
    memset(data, 0x55, sizeof(data));
    assert_memory_equal(host, data, sizeof(data));
    request(&r, T_IN, 1, host, sizeof(host)); /* reads still work */
    assert_int_equal(serve(&r, SECTOR + 1), S_OK);
}

static void hostile_requests(void **state)
{
    static uint8_t data[SECTOR];
    struct range many[17], odd[2] = {{0, 1, 0}, {0, 1, 0}};
    struct request r;
    (void)state;
    memset(many, 0, sizeof(many));
    /* Past the end of the disk, and a sector whose byte offset overflows. */
    request(&r, T_OUT, DISK_BYTES / SECTOR, data, sizeof(data));
    assert_int_equal(serve(&r, 1), S_IOERR);
    request(&r, T_IN, UINT64_MAX / 256, data, sizeof(data));
    assert_int_equal(serve(&r, 1), S_IOERR); /* nothing written but the status */
    request(&r, T_OUT, DISK_BYTES / SECTOR - 1, data, 2 * sizeof(data) - 1);
    r.chain.bufs[1].len = sizeof(data); /* keep within our buffer */
    r.chain.readable_bytes = sizeof(r.header) + sizeof(data);
    assert_int_equal(serve(&r, 1), S_OK); /* the last sector is the disk's */
    /* Unknown types, and range lists that are empty, too long, ragged or
     * too large. */
    request(&r, 99, 0, NULL, 0);
    assert_int_equal(serve(&r, 1), S_UNSUPP);
    request(&r, T_DISCARD, 0, NULL, 0);
    assert_int_equal(serve(&r, 1), S_UNSUPP);
    request(&r, T_DISCARD, 0, many, sizeof(many));
    assert_int_equal(serve(&r, 1), S_UNSUPP);
    request(&r, T_DISCARD, 0, odd, sizeof(odd) - 3);
    assert_int_equal(serve(&r, 1), S_UNSUPP);
    odd[0].num_sectors = UINT32_MAX;
    request(&r, T_WRITE_ZEROES, 0, odd, sizeof(odd[0]));
    assert_int_equal(serve(&r, 1), S_IOERR);
    odd[0] = (struct range){UINT64_MAX / 2, 8, 0};
    request(&r, T_DISCARD, 0, odd, sizeof(odd[0]));
    assert_int_equal(serve(&r, 1), S_IOERR);
    /* Malformed chains: no header, no status byte, a read carrying data
     * for the device. */
    request(&r, T_IN, 0, data, sizeof(data));
    r.chain.bufs[0].len = 8;
    r.chain.readable_bytes = 8;
    assert_true(virtio_blk_serve(blk, &r.chain) < 0);
    request(&r, T_OUT, 0, data, sizeof(data));
    r.chain.count--;
    r.chain.writable_bytes = 0;
    assert_true(virtio_blk_serve(blk, &r.chain) < 0);
    request(&r, T_IN, 0, data, sizeof(data));
    r.chain.bufs[1].writable = false;
    r.chain.readable = 2;
    r.chain.readable_bytes += sizeof(data);
    r.chain.writable_bytes = 1;
    assert_true(virtio_blk_serve(blk, &r.chain) < 0);
    assert_non_null(strstr(err_msg(), "read request with device-readable data"));
}

int main(void)
{
    /* The device threads under their seccomp filters, as in run and start. */
    confine_seccomp_set(CONFINE_SECCOMP_ON, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(writes_then_reads_back, setup, teardown),
        cmocka_unit_test_setup_teardown(answers_its_id, setup, teardown),
        cmocka_unit_test_setup_teardown(discards_and_zeroes, setup, teardown),
        cmocka_unit_test_setup_teardown(read_only_disk_refuses_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(no_write_once_the_guest_memory_is_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_requests, setup, teardown),
    };
    if (scratch_setup("virtio-blk") < 0)
        return 1;
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return scratch_teardown() < 0 ? 1 : failed;
}
