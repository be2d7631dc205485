/* virtio-blk (virtio 1.2, section 5.2) over the disk.h interface. Requests
 * are served on the device's I/O thread (ioeventfd), or on the kicking vCPU
 * where the hypervisor offers no ioeventfd. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "core/vm.h"
#include "devices/device.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/mmio.h"
#include "disk/disk.h"
#include "util/err.h"
#include "util/le.h"

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_F_SEG_MAX (1ull << 2)
#define VIRTIO_BLK_F_RO (1ull << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ull << 6)
#define VIRTIO_BLK_F_FLUSH (1ull << 9)
#define VIRTIO_BLK_F_DISCARD (1ull << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ull << 14)

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20

#define SECTOR 512ull
#define QUEUE_SIZE 256
#define SEG_MAX (VIRTQ_MAX_CHAIN - 2) /* minus header and status */
#define MAX_RANGE_SEGMENTS 16
#define MAX_RANGE_SECTORS (1u << 22) /* 2 GiB per discard/zeroing segment */
#define HEADER_BYTES 16
#define CONFIG_BYTES 60

struct blk_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

struct blk_range {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

struct blk {
    struct disk *disk;
    const struct guest_memory *mem; /* NULL: not checked (a test's) */
    char id[VIRTIO_BLK_ID_BYTES];
    struct virtio_device_ops ops;
    struct virtio_mmio *transport;
    struct virtq_chain chain;
    struct iovec iov[VIRTQ_MAX_CHAIN];
};

static void blk_read_config(void *dev, uint32_t offset, uint8_t *data, unsigned size)
{
    struct blk *b = dev;
    uint8_t cfg[CONFIG_BYTES] = {0};

    put_le(cfg + 0, b->disk->size / SECTOR, 8);  /* capacity */
    put_le(cfg + 12, SEG_MAX, 4);                 /* seg_max */
    put_le(cfg + 20, SECTOR, 4);                  /* blk_size */
    put_le(cfg + 36, MAX_RANGE_SECTORS, 4);       /* max_discard_sectors */
    put_le(cfg + 40, MAX_RANGE_SEGMENTS, 4);      /* max_discard_seg */
    put_le(cfg + 44, 8, 4);                       /* discard_sector_alignment: 4 KiB */
    put_le(cfg + 48, MAX_RANGE_SECTORS, 4);       /* max_write_zeroes_sectors */
    put_le(cfg + 52, MAX_RANGE_SEGMENTS, 4);      /* max_write_zeroes_seg */
    cfg[56] = 1;                                  /* write_zeroes_may_unmap */
    memcpy(data, cfg + offset, size);
}

/* The data part of a chain as iovecs: [first, last) buffers, minus the
 * header bytes at the front and the status byte at the end. */
static int data_iov(struct blk *b, const struct virtq_chain *c, bool device_writes)
{
    int n = 0;
    size_t skip = device_writes ? 0 : HEADER_BYTES;
    unsigned first = device_writes ? c->readable : 0;
    unsigned last = device_writes ? c->count : c->readable;

    for (unsigned i = first; i < last; i++) {
        size_t len = c->bufs[i].len;
        uint8_t *p = c->bufs[i].addr;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        p += skip;
        len -= skip;
        skip = 0;
        if (device_writes && i == last - 1)
            len--; /* the status byte */
        if (len)
            b->iov[n++] = (struct iovec){p, len};
    }
    return n;
}

static uint8_t do_ranges(struct blk *b, const struct virtq_chain *c, uint32_t type)
{
    uint64_t bytes = c->readable_bytes - HEADER_BYTES;
    unsigned n = (unsigned)(bytes / sizeof(struct blk_range));

    if (bytes % sizeof(struct blk_range) || n == 0 || n > MAX_RANGE_SEGMENTS)
        return VIRTIO_BLK_S_UNSUPP;
    for (unsigned i = 0; i < n; i++) {
        struct blk_range r;
        uint64_t offset, len;
        virtq_chain_read(c, HEADER_BYTES + i * sizeof(r), &r, sizeof(r));
        if (r.num_sectors > MAX_RANGE_SECTORS || __builtin_mul_overflow(r.sector, SECTOR, &offset))
            return VIRTIO_BLK_S_IOERR;
        len = (uint64_t)r.num_sectors * SECTOR;
        if ((type == VIRTIO_BLK_T_DISCARD ? disk_discard(b->disk, offset, len)
                                          : disk_write_zeroes(b->disk, offset, len)) < 0)
            return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
}

void virtio_blk_check_memory(struct blk *b, const struct guest_memory *mem)
{
    b->mem = mem;
}

/* The guest's pages b->iov[0..n) may be written to the disk: none was let
 * go as zeros (core/memory.h guest_memory_holds_data). */
static bool written_out_whole(const struct blk *b, int n)
{
    return !b->mem || guest_memory_holds_data(b->mem, b->iov, (unsigned)n);
}

static uint8_t do_request(struct blk *b, const struct virtq_chain *c, const struct blk_header *h,
                          uint32_t *written)
{
    uint64_t offset;
    int n;

    switch (h->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        if (__builtin_mul_overflow(h->sector, SECTOR, &offset))
            return VIRTIO_BLK_S_IOERR;
        n = data_iov(b, c, h->type == VIRTIO_BLK_T_IN);
        if (h->type == VIRTIO_BLK_T_OUT)
            return !written_out_whole(b, n) || disk_write(b->disk, b->iov, n, offset) < 0
                       ? VIRTIO_BLK_S_IOERR
                       : VIRTIO_BLK_S_OK;
        if (disk_read(b->disk, b->iov, n, offset) < 0)
            return VIRTIO_BLK_S_IOERR;
        *written = (uint32_t)(c->writable_bytes - 1);
        return VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_FLUSH:
        return disk_flush(b->disk) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_GET_ID:
        *written = (uint32_t)virtq_chain_write(c, 0, b->id,
                                               c->writable_bytes - 1 < VIRTIO_BLK_ID_BYTES
                                                   ? c->writable_bytes - 1
                                                   : VIRTIO_BLK_ID_BYTES);
        return VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        return do_ranges(b, c, h->type);
    default:
        return VIRTIO_BLK_S_UNSUPP;
    }
}

/* The bytes written into the chain, or <0 when it is not a well-formed
 * request. */
long virtio_blk_serve(void *dev, const struct virtq_chain *c)
{
    struct blk *b = dev;
    struct blk_header h;
    uint32_t written = 0;
    uint8_t status;

    if (c->readable_bytes < HEADER_BYTES || c->writable_bytes < 1 ||
        c->bufs[c->count - 1].len < 1 || !c->bufs[c->count - 1].writable)
        return err_plain(EINVAL, "request without a header or a writable status byte");
    virtq_chain_read(c, 0, &h, sizeof(h));
    if (h.type == VIRTIO_BLK_T_IN && c->readable_bytes != HEADER_BYTES)
        return err_plain(EINVAL, "read request with device-readable data");
    status = do_request(b, c, &h, &written);
    virtq_chain_write(c, c->writable_bytes - 1, &status, 1);
    return (long)written + 1;
}

static void blk_notify(void *dev, struct virtio_mmio *t, unsigned qi)
{
    struct blk *b = dev;
    virtio_mmio_serve(t, qi, &b->chain, virtio_blk_serve, b);
}


struct blk *virtio_blk_new(struct disk *disk, const char *id)
{
    struct blk *b = calloc(1, sizeof(*b));

    if (!b)
        return NULL;
    b->disk = disk;
    /* GET_ID answers 20 bytes, NUL-terminated only when shorter. */
    memcpy(b->id, id, strnlen(id, sizeof(b->id)));
    return b;
}

void virtio_blk_free(struct blk *b)
{
    free(b);
}

static void blk_free(struct blk *b)
{
    if (!b)
        return;
    virtio_mmio_destroy(b->transport);
    disk_close(b->disk);
    virtio_blk_free(b);
}

/* The disk of the config that slot names. */
static int blk_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    const struct vm_disk_config *cfg = &vm_config(vm)->disks[slot->index];
    unsigned index = slot->index;
    unsigned flags = (cfg->read_only ? DISK_READ_ONLY : 0) | (cfg->direct ? DISK_DIRECT : 0);
    char id[VIRTIO_BLK_ID_BYTES + 1];
    struct disk *disk;
    struct blk *b;
    int r;

    r = disk_open_as(cfg->path, flags, cfg->format, &disk);
    if (r < 0)
        return r;
    if (cfg->id)
        snprintf(id, sizeof(id), "%s", cfg->id);
    else
        snprintf(id, sizeof(id), "smolvm%u", index);
    b = virtio_blk_new(disk, id);
    if (!b) {
        disk_close(disk);
        return err_set(ENOMEM, "virtio-blk");
    }
    virtio_blk_check_memory(b, vm_memory(vm));
    b->ops = (struct virtio_device_ops){
        .name = "blk",
        .device_id = VIRTIO_ID_BLOCK,
        .features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH |
                    VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES |
                    (cfg->read_only ? VIRTIO_BLK_F_RO : 0),
        .num_queues = 1,
        .queue_max = QUEUE_SIZE,
        .config_size = CONFIG_BYTES,
        .read_config = blk_read_config,
        .queue_notify = blk_notify,
        .io_thread = true,
    };
    r = virtio_mmio_create(vm, slot, &b->ops, b, &b->transport);
    if (r < 0) {
        blk_free(b);
        return r;
    }
    *state = b;
    return 0;
}

static void blk_destroy(void *state)
{
    blk_free(state);
}

static const struct device_type virtio_blk = {
    .name = "virtio-blk",
    .create = blk_create,
    .destroy = blk_destroy,
};
DEVICE_REGISTER(virtio_blk);
