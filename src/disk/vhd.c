/* VHD images (Virtual PC / Hyper-V; QEMU calls the format vpc): fixed
 * (raw data, then a 512-byte footer) and dynamic (footer copy, dynamic
 * header, block allocation table, blocks each led by a sector bitmap,
 * footer at the end). Differencing images are refused.
 *
 * The visible size follows QEMU's rule: images from Virtual PC and QEMU's
 * "qemu" creator use the CHS geometry, Hyper-V and others current_size.
 * We write creator "smol" images whose size equals their geometry, so
 * every reader agrees. */
#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "disk/blockmap.h"
#include "disk/disk.h"
#include "util/be.h"
#include "util/err.h"
#include "util/iov.h"

#define FOOTER 512
#define DYN_HEADER 1024
#define VHD_FIXED 2
#define VHD_DYNAMIC 3
#define VHD_DIFFERENCING 4
#define UNALLOCATED 0xffffffffu
#define MAX_GEOMETRY_SECTORS (65535ull * 16 * 255)
#define MAX_BAT_ENTRIES (1u << 24) /* 32 TiB of 2 MiB blocks */
#define DEFAULT_BLOCK (2u << 20)
#define EPOCH_2000 946684800

struct vhd {
    struct blockmap bm;
    uint8_t footer[FOOTER];
    unsigned type;
    uint32_t block_size;
    uint32_t bitmap_bytes; /* the sector bitmap before each block, padded to sectors */
    uint32_t entries;
    uint64_t bat_offset;
    uint32_t *bat;
    uint64_t end; /* where the footer is, and the next block goes */
};

static uint32_t checksum(const uint8_t *p, size_t len, size_t skip)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < skip || i >= skip + 4)
            sum += p[i];
    return ~sum;
}

static int vhd_probe(const uint8_t *head, size_t len)
{
    /* Dynamic images start with a footer copy; fixed ones are raw data
     * with the footer at the end, which a probe of the head cannot see:
     * those need format=vpc. */
    return len >= FOOTER && memcmp(head, "conectix", 8) == 0;
}

static uint64_t visible_size(const uint8_t *f)
{
    uint64_t chs = (uint64_t)be16(f + 56) * f[58] * f[59];
    bool by_geometry = memcmp(f + 28, "win ", 4) && memcmp(f + 28, "qem2", 4) &&
                       memcmp(f + 28, "d2v ", 4) && memcmp(f + 28, "CTXS", 4) &&
                       memcmp(f + 28, "tap", 4);
    if (!by_geometry || chs == MAX_GEOMETRY_SECTORS)
        return be64(f + 48);
    return chs * 512;
}

static int load_dynamic(struct disk *d, struct vhd *v)
{
    uint8_t h[DYN_HEADER];
    uint64_t bat_bytes;
    int r = disk_pread_all(d->fd, h, sizeof(h), be64(v->footer + 16));

    if (r < 0 || memcmp(h, "cxsparse", 8) != 0)
        return err_plain(EINVAL, "dynamic disk header missing");
    v->bat_offset = be64(h + 16);
    v->entries = be32(h + 28);
    v->block_size = be32(h + 32);
    if (v->block_size < 512 || (v->block_size & (v->block_size - 1)) ||
        v->block_size > (256u << 20))
        return err_plain(EINVAL, "block size %u is invalid", v->block_size);
    if (v->entries > MAX_BAT_ENTRIES ||
        (uint64_t)v->entries * v->block_size < d->size)
        return err_plain(EINVAL, "block table of %u entries does not fit the disk", v->entries);
    v->bitmap_bytes = ((v->block_size / 512 / 8) + 511) & ~511u;
    bat_bytes = (uint64_t)v->entries * 4;
    v->bat = malloc(bat_bytes ? bat_bytes : 1);
    if (!v->bat)
        return -ENOMEM;
    r = disk_pread_all(d->fd, v->bat, bat_bytes, v->bat_offset);
    if (r < 0)
        return err_set(-r, "read block table");
    for (uint32_t i = 0; i < v->entries; i++) {
        v->bat[i] = be32((uint8_t *)&v->bat[i]);
        uint64_t end = (uint64_t)v->bat[i] * 512 + v->bitmap_bytes + v->block_size;
        if (v->bat[i] != UNALLOCATED && end > v->end)
            v->end = end;
    }
    return 0;
}

static void vhd_close(struct disk *d);
static uint64_t locate(struct disk *d, uint64_t offset, uint64_t *run);
static int allocate_block(struct disk *d, uint64_t offset);

static int open_image(struct disk *d)
{
    struct vhd *v = calloc(1, sizeof(*v));
    struct stat st;
    int r;

    if (!v)
        return -ENOMEM;
    d->priv = v;
    pthread_mutex_init(&v->bm.lock, NULL);
    v->bm.locate = locate;
    v->bm.allocate = allocate_block;
    if (fstat(d->fd, &st) < 0 || st.st_size < FOOTER)
        return err_plain(EINVAL, "too short for a VHD footer");
    r = disk_pread_all(d->fd, v->footer, FOOTER, 0);
    if (r < 0 || memcmp(v->footer, "conectix", 8) != 0) {
        r = disk_pread_all(d->fd, v->footer, FOOTER, (uint64_t)st.st_size - FOOTER);
        if (r < 0 || memcmp(v->footer, "conectix", 8) != 0)
            return err_plain(EINVAL, "no VHD footer");
    }
    if (checksum(v->footer, FOOTER, 64) != be32(v->footer + 64))
        return err_plain(EINVAL, "footer checksum mismatch");
    v->type = be32(v->footer + 60);
    d->size = visible_size(v->footer);
    v->end = (uint64_t)st.st_size - FOOTER;
    if (v->type == VHD_FIXED) {
        if (d->size > v->end)
            return err_plain(EINVAL, "fixed image shorter than its size");
        return 0;
    }
    if (v->type == VHD_DIFFERENCING)
        return err_plain(ENOTSUP, "differencing VHD images are not supported");
    if (v->type != VHD_DYNAMIC)
        return err_plain(EINVAL, "disk type %u is unknown", v->type);
    v->end = 0;
    r = load_dynamic(d, v);
    if (r == 0 && v->end < (uint64_t)st.st_size - FOOTER)
        v->end = (uint64_t)st.st_size - FOOTER;
    return r;
}

static void vhd_close(struct disk *d)
{
    struct vhd *v = d->priv;
    if (!v)
        return;
    free(v->bat);
    pthread_mutex_destroy(&v->bm.lock);
    free(v);
    d->priv = NULL;
}

static int vhd_open(struct disk *d)
{
    int r = open_image(d);
    if (r < 0)
        vhd_close(d);
    return r;
}

/* Host offset of guest offset, and how far it runs within its block;
 * BLOCKMAP_NONE when the block is not allocated. */
static uint64_t locate(struct disk *d, uint64_t offset, uint64_t *run)
{
    const struct vhd *v = d->priv;
    if (v->type == VHD_FIXED) {
        *run = d->size - offset;
        return offset;
    }
    uint32_t block = (uint32_t)(offset / v->block_size);
    uint64_t in = offset % v->block_size;
    *run = v->block_size - in;
    if (v->bat[block] == UNALLOCATED)
        return BLOCKMAP_NONE;
    return (uint64_t)v->bat[block] * 512 + v->bitmap_bytes + in;
}

static void make_footer_checksum(uint8_t *f)
{
    put_be(f + 64, 0, 4);
    put_be(f + 64, checksum(f, FOOTER, 64), 4);
}

/* A new block at the end of the file: bitmap (all sectors present),
 * then the footer after it, then the table entry pointing at it. */
static int allocate_block(struct disk *d, uint64_t offset)
{
    struct vhd *v = d->priv;
    uint32_t block = (uint32_t)(offset / v->block_size);
    uint8_t *bitmap = malloc(v->bitmap_bytes), b[4];
    uint64_t at = (v->end + 511) & ~511ull;
    int r;

    if (!bitmap)
        return -ENOMEM;
    memset(bitmap, 0xff, v->bitmap_bytes);
    r = disk_pwrite_all(d->fd, bitmap, v->bitmap_bytes, at);
    free(bitmap);
    if (r == 0)
        r = disk_pwrite_all(d->fd, v->footer, FOOTER, at + v->bitmap_bytes + v->block_size);
    if (r == 0)
        r = disk_barrier(d);
    put_be(b, at / 512, 4);
    if (r == 0)
        r = disk_pwrite_all(d->fd, b, 4, v->bat_offset + 4ull * block);
    if (r < 0)
        return r;
    v->bat[block] = (uint32_t)(at / 512);
    v->end = at + v->bitmap_bytes + v->block_size;
    return 0;
}

/* The VHD specification's CHS geometry for a sector count. */
static void geometry(uint64_t sectors, unsigned *cyls, unsigned *heads, unsigned *spt)
{
    uint64_t cth;
    if (sectors > MAX_GEOMETRY_SECTORS)
        sectors = MAX_GEOMETRY_SECTORS;
    if (sectors >= 65535ull * 16 * 63) {
        *spt = 255, *heads = 16, cth = sectors / 255;
    } else {
        *spt = 17, cth = sectors / 17;
        *heads = (unsigned)((cth + 1023) / 1024);
        if (*heads < 4)
            *heads = 4;
        if (cth >= *heads * 1024ull || *heads > 16)
            *spt = 31, *heads = 16, cth = sectors / 31;
        if (cth >= *heads * 1024ull)
            *spt = 63, *heads = 16, cth = sectors / 63;
    }
    *cyls = (unsigned)(cth / *heads);
}

static void fill_footer(uint8_t *f, uint64_t size, unsigned type, uint64_t data_offset)
{
    unsigned cyls, heads, spt;
    uint64_t sectors = size / 512;

    memset(f, 0, FOOTER);
    memcpy(f, "conectix", 8);
    put_be(f + 8, 2, 4); /* features: reserved bit always set */
    put_be(f + 12, 0x00010000, 4);
    put_be(f + 16, data_offset, 8);
    put_be(f + 24, (uint64_t)(time(NULL) - EPOCH_2000), 4);
    memcpy(f + 28, "smol", 4);
    put_be(f + 32, 0x00010000, 4);
    memcpy(f + 36, "Wi2k", 4);
    put_be(f + 40, size, 8);
    put_be(f + 48, size, 8);
    geometry(sectors, &cyls, &heads, &spt);
    if ((uint64_t)cyls * heads * spt != sectors) { /* a size past CHS: flag it so */
        cyls = 65535, heads = 16, spt = 255;
    }
    put_be(f + 56, cyls, 2);
    f[58] = (uint8_t)heads;
    f[59] = (uint8_t)spt;
    put_be(f + 60, type, 4);
    if (getrandom(f + 68, 16, 0) != 16)
        memset(f + 68, 0x5a, 16);
    make_footer_checksum(f);
}

/* Rounds a size up to one whose CHS geometry covers it exactly, as QEMU
 * does, so that every reader sees the same size. */
static uint64_t chs_size(uint64_t size)
{
    uint64_t want = (size + 511) / 512;
    unsigned cyls, heads, spt;
    if (want >= MAX_GEOMETRY_SECTORS)
        return want * 512;
    for (uint64_t s = want;; s++) {
        geometry(s, &cyls, &heads, &spt);
        if ((uint64_t)cyls * heads * spt >= want)
            return (uint64_t)cyls * heads * spt * 512;
    }
}

static int vhd_create(const char *path, const struct disk_create_options *o)
{
    uint64_t size = chs_size(o->size);
    uint32_t block = o->cluster_size ? o->cluster_size : DEFAULT_BLOCK;
    uint32_t entries = (uint32_t)((size + block - 1) / block);
    uint64_t bat_bytes = ((uint64_t)entries * 4 + 511) & ~511ull;
    uint8_t footer[FOOTER], *meta;

    if (o->backing)
        return err_plain(EINVAL, "vpc images cannot have a backing file here");
    if (block < 512 || (block & (block - 1)) || entries > MAX_BAT_ENTRIES)
        return err_plain(EINVAL, "block size or size out of range for VHD");
    if (o->fixed) {
        fill_footer(footer, size, VHD_FIXED, UINT64_MAX);
        return disk_write_new(path, NULL, 0, size, footer, FOOTER);
    }
    meta = malloc(FOOTER + DYN_HEADER + bat_bytes);
    if (!meta)
        return -ENOMEM;
    fill_footer(footer, size, VHD_DYNAMIC, FOOTER);
    memcpy(meta, footer, FOOTER);
    uint8_t *h = meta + FOOTER;
    memset(h, 0, DYN_HEADER);
    memcpy(h, "cxsparse", 8);
    put_be(h + 8, UINT64_MAX, 8);
    put_be(h + 16, FOOTER + DYN_HEADER, 8);
    put_be(h + 24, 0x00010000, 4);
    put_be(h + 28, entries, 4);
    put_be(h + 32, block, 4);
    put_be(h + 36, checksum(h, DYN_HEADER, 36), 4);
    memset(h + DYN_HEADER, 0xff, bat_bytes);
    int r = disk_write_new(path, meta, FOOTER + DYN_HEADER + bat_bytes, 0, footer, FOOTER);
    free(meta);
    return r;
}

/* qemu-img info's "cluster-size": the allocation unit. */
static int vhd_describe(struct disk *d, json_t *info)
{
    const struct vhd *x = d->priv;
    if (x->block_size)
        json_object_set_new(info, "cluster-size", json_integer((json_int_t)x->block_size));
    return 0;
}

const struct disk_format disk_format_vhd = {
    .name = "vpc",
    .probe = vhd_probe,
    .open = vhd_open,
    .preadv = blockmap_preadv,
    .pwritev = blockmap_pwritev,
    .flush = blockmap_flush,
    .write_zeroes = blockmap_write_zeroes,
    .close = vhd_close,
    .describe = vhd_describe,
    .status = blockmap_status,
    .create = vhd_create,
};
