/* VDI images (VirtualBox), dynamic and static: a 512-byte little-endian
 * header, a block map (one 32-bit entry per block: the index of its data
 * block, or "unallocated" / "zero"), then the data blocks in allocation
 * order. Snapshot differencing images are refused. */
#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/blockmap.h"
#include "disk/disk.h"
#include "util/err.h"
#include "util/iov.h"
#include "util/le.h"

#define HEADER 512
#define SIGNATURE 0xbeda107fu
#define VERSION_1_1 0x00010001u
#define TYPE_DYNAMIC 1
#define TYPE_STATIC 2
#define UNALLOCATED 0xffffffffu
#define DISCARDED 0xfffffffeu
#define DEFAULT_BLOCK (1u << 20)
#define MAX_BLOCKS (1u << 24)
static const char banner[] = "<<< smolvm VDI Disk Image >>>\n";

struct vdi {
    struct blockmap bm;
    uint8_t header[HEADER];
    uint32_t block_size, blocks, allocated;
    uint64_t map_offset, data_offset;
    uint32_t *map;
};

static int vdi_probe(const uint8_t *head, size_t len)
{
    return len >= 72 && le32(head + 64) == SIGNATURE;
}

static int check_header(struct disk *d, struct vdi *v, const uint8_t *h)
{
    uint32_t type = le32(h + 76), sector = le32(h + 360);

    if (le32(h + 68) != VERSION_1_1)
        return err_plain(ENOTSUP, "VDI version 0x%x is not supported", le32(h + 68));
    if (type != TYPE_DYNAMIC && type != TYPE_STATIC)
        return err_plain(ENOTSUP, "VDI image type %u is not supported", type);
    if (sector != 512)
        return err_plain(EINVAL, "sector size %u is not 512", sector);
    for (int i = 0; i < 16; i++)
        if (h[440 + i])
            return err_plain(ENOTSUP, "VDI differencing images are not supported");
    v->map_offset = le32(h + 340);
    v->data_offset = le32(h + 344);
    d->size = le64(h + 368);
    v->block_size = le32(h + 376);
    v->blocks = le32(h + 384);
    v->allocated = le32(h + 388);
    if (v->block_size < 512 || (v->block_size & (v->block_size - 1)) ||
        v->block_size > (256u << 20) || le32(h + 380) != 0)
        return err_plain(EINVAL, "block size %u is invalid", v->block_size);
    if (v->blocks > MAX_BLOCKS || (uint64_t)v->blocks * v->block_size < d->size)
        return err_plain(EINVAL, "%u blocks do not cover the disk", v->blocks);
    if (v->allocated > v->blocks || v->map_offset < HEADER ||
        v->data_offset < v->map_offset + 4ull * v->blocks)
        return err_plain(EINVAL, "block map layout is invalid");
    return 0;
}

static uint64_t locate(struct disk *d, uint64_t offset, uint64_t *run);
static int allocate_block(struct disk *d, uint64_t offset);

static void vdi_close(struct disk *d)
{
    struct vdi *v = d->priv;
    if (!v)
        return;
    free(v->map);
    pthread_mutex_destroy(&v->bm.lock);
    free(v);
    d->priv = NULL;
}

static int open_image(struct disk *d, struct vdi *v)
{
    int r = disk_pread_all(d->fd, v->header, HEADER, 0);

    if (r < 0)
        return err_set(-r, "read header");
    r = check_header(d, v, v->header);
    if (r < 0)
        return r;
    struct stat st;
    if (fstat(d->fd, &st) < 0 || v->map_offset + 4ull * v->blocks > (uint64_t)st.st_size)
        return err_plain(EINVAL, "block map past the end of the file (truncated?)");
    v->map = malloc(4ull * v->blocks + 4);
    if (!v->map)
        return -ENOMEM;
    r = disk_pread_all(d->fd, v->map, 4ull * v->blocks, v->map_offset);
    if (r < 0)
        return err_set(-r, "read block map");
    for (uint32_t i = 0; i < v->blocks; i++) {
        v->map[i] = le32((uint8_t *)&v->map[i]);
        if (v->map[i] < UNALLOCATED - 1 && v->map[i] >= v->allocated)
            return err_plain(EINVAL, "block %u maps past the allocated blocks", i);
    }
    return 0;
}

static int vdi_open(struct disk *d)
{
    struct vdi *v = calloc(1, sizeof(*v));
    int r;

    if (!v)
        return -ENOMEM;
    pthread_mutex_init(&v->bm.lock, NULL);
    v->bm.locate = locate;
    v->bm.allocate = allocate_block;
    d->priv = v;
    r = open_image(d, v);
    if (r < 0)
        vdi_close(d);
    return r;
}

/* Host offset of a guest offset and its run within the block, or
 * BLOCKMAP_NONE for a block that reads zeros. */
static uint64_t locate(struct disk *d, uint64_t offset, uint64_t *run)
{
    const struct vdi *v = d->priv;
    uint32_t block = (uint32_t)(offset / v->block_size), entry = v->map[block];
    uint64_t in = offset % v->block_size;

    *run = v->block_size - in;
    if (entry >= DISCARDED)
        return BLOCKMAP_NONE;
    return v->data_offset + (uint64_t)entry * v->block_size + in;
}

/* The next data block, zeroed (a hole), then its map entry and the
 * header's count. A crash between leaves an unused block. */
static int allocate_block(struct disk *d, uint64_t offset)
{
    struct vdi *v = d->priv;
    uint32_t block = (uint32_t)(offset / v->block_size);
    uint64_t at = v->data_offset + (uint64_t)v->allocated * v->block_size;
    uint8_t e[4], count[4];
    int r = 0;

    if (ftruncate(d->fd, (off_t)(at + v->block_size)) < 0)
        return -errno;
    put_le(e, v->allocated, 4);
    put_le(count, v->allocated + 1, 4);
    r = disk_pwrite_all(d->fd, e, 4, v->map_offset + 4ull * block);
    if (r == 0)
        r = disk_pwrite_all(d->fd, count, 4, 388);
    if (r < 0)
        return r;
    v->map[block] = v->allocated++;
    return 0;
}

static void fill_header(uint8_t *h, uint64_t size, uint32_t block, uint32_t blocks, bool fixed)
{
    uint32_t map_bytes = (blocks * 4 + 511) & ~511u;

    memset(h, 0, HEADER);
    memcpy(h, banner, sizeof(banner) - 1);
    put_le(h + 64, SIGNATURE, 4);
    put_le(h + 68, VERSION_1_1, 4);
    put_le(h + 72, 0x190, 4); /* header size from here on */
    put_le(h + 76, fixed ? TYPE_STATIC : TYPE_DYNAMIC, 4);
    put_le(h + 340, HEADER, 4);
    put_le(h + 344, HEADER + map_bytes, 4);
    put_le(h + 360, 512, 4);
    put_le(h + 368, size, 8);
    put_le(h + 376, block, 4);
    put_le(h + 384, blocks, 4);
    put_le(h + 388, fixed ? blocks : 0, 4);
    if (getrandom(h + 392, 16, 0) != 16)
        memset(h + 392, 0x5a, 16);
    h[392 + 6] = (uint8_t)((h[392 + 6] & 0x0f) | 0x40); /* a version 4 UUID */
    h[392 + 8] = (uint8_t)((h[392 + 8] & 0x3f) | 0x80);
    if (getrandom(h + 408, 16, 0) != 16)
        memset(h + 408, 0xa5, 16);
}

static int vdi_create(const char *path, const struct disk_create_options *o)
{
    uint32_t block = o->cluster_size ? o->cluster_size : DEFAULT_BLOCK;
    uint64_t blocks = (o->size + block - 1) / block;
    uint64_t map_bytes = (blocks * 4 + 511) & ~511ull;
    uint8_t *meta;
    int r;

    if (o->backing)
        return err_plain(EINVAL, "vdi images cannot have a backing file");
    if (block < 512 || (block & (block - 1)) || blocks > MAX_BLOCKS)
        return err_plain(EINVAL, "block size or size out of range for VDI");
    meta = malloc(HEADER + map_bytes);
    if (!meta)
        return -ENOMEM;
    fill_header(meta, o->size, block, (uint32_t)blocks, o->fixed);
    for (uint64_t i = 0; i < map_bytes / 4; i++)
        put_le(meta + HEADER + 4 * i, o->fixed && i < blocks ? i : UNALLOCATED, 4);
    r = disk_write_new(path, meta, HEADER + map_bytes,
                       o->fixed ? HEADER + map_bytes + blocks * block : 0, NULL, 0);
    free(meta);
    return r;
}

/* qemu-img info's "cluster-size": the allocation unit. */
static int vdi_describe(struct disk *d, json_t *info)
{
    const struct vdi *x = d->priv;
    if (x->block_size)
        json_object_set_new(info, "cluster-size", json_integer((json_int_t)x->block_size));
    return 0;
}

const struct disk_format disk_format_vdi = {
    .name = "vdi",
    .probe = vdi_probe,
    .open = vdi_open,
    .preadv = blockmap_preadv,
    .pwritev = blockmap_pwritev,
    .flush = blockmap_flush,
    .write_zeroes = blockmap_write_zeroes,
    .close = vdi_close,
    .describe = vdi_describe,
    .status = blockmap_status,
    .create = vdi_create,
};
