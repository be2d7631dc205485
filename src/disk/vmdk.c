/* VMDK hosted sparse extents (monolithicSparse: one file holding the
 * header, the embedded text descriptor, grain directory and grain
 * tables, both also kept as a redundant copy, and the grains). All
 * fields little-endian, offsets in 512-byte sectors. A grain table entry
 * of 0 reads as zeros (1 too, with the zeroed-grain flag). Compressed
 * (streamOptimized) and delta images are refused. */
#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/blockmap.h"
#include "disk/disk.h"
#include "util/err.h"
#include "util/le.h"

#define MAGIC 0x564d444bu /* "KDMV" */
#define FLAG_NEWLINE_TEST (1u << 0)
#define FLAG_REDUNDANT (1u << 1)
#define FLAG_ZEROED_GRAIN (1u << 2)
#define FLAG_COMPRESSED (1u << 16)
#define GTES_PER_GT 512
#define DEFAULT_GRAIN_SECTORS 128
#define DESCRIPTOR_SECTORS 20
#define MAX_GRAIN_SECTORS 2048 /* 1 MiB, as QEMU allows */
#define MAX_GTS (1u << 22)

struct vmdk {
    struct blockmap bm;
    uint32_t flags;
    uint64_t grain_bytes;
    uint32_t gts;
    uint64_t gd_sector, rgd_sector; /* where the directories are */
    uint32_t *gd, *rgd;   /* sector offsets of the grain tables */
    uint32_t *tables;     /* every grain table, GTES_PER_GT entries each, loaded on demand */
    uint8_t *loaded;      /* per table */
    uint64_t end;         /* end of the file: new grains go here */
};

static int vmdk_probe(const uint8_t *head, size_t len)
{
    return len >= 4 && le32(head) == MAGIC;
}

static void vmdk_close(struct disk *d)
{
    struct vmdk *v = d->priv;
    if (!v)
        return;
    free(v->gd);
    free(v->rgd);
    free(v->tables);
    free(v->loaded);
    pthread_mutex_destroy(&v->bm.lock);
    free(v);
    d->priv = NULL;
}

static int load_directory(struct disk *d, uint32_t count, uint64_t sector, uint32_t **out)
{
    uint32_t *gd = malloc(4ull * count + 4);
    int r;

    if (!gd)
        return -ENOMEM;
    r = disk_pread_all(d->fd, gd, 4ull * count, sector * 512);
    for (uint32_t i = 0; i < count; i++)
        gd[i] = le32((uint8_t *)&gd[i]);
    *out = gd;
    return r;
}

/* The descriptor names a parent for delta disks: those need it. */
static int check_descriptor(struct disk *d, const uint8_t *h)
{
    uint64_t offset = le64(h + 28), sectors = le64(h + 36);
    char text[DESCRIPTOR_SECTORS * 512 + 1] = {0};

    if (!offset || !sectors)
        return 0;
    if (sectors > DESCRIPTOR_SECTORS)
        sectors = DESCRIPTOR_SECTORS;
    if (disk_pread_all(d->fd, text, sectors * 512, offset * 512) < 0)
        return err_plain(EIO, "cannot read the descriptor");
    const char *parent = strstr(text, "parentCID=");
    if (parent && strncmp(parent + 10, "ffffffff", 8) != 0)
        return err_plain(ENOTSUP, "VMDK delta images (with a parent) are not supported");
    return 0;
}

static int open_image(struct disk *d, struct vmdk *v)
{
    uint8_t h[512];
    struct stat st;
    int r = disk_pread_all(d->fd, h, sizeof(h), 0);
    uint64_t grain;

    if (r < 0 || fstat(d->fd, &st) < 0)
        return err_plain(EIO, "cannot read the header");
    v->flags = le32(h + 8);
    if (le32(h + 4) < 1 || le32(h + 4) > 3)
        return err_plain(ENOTSUP, "VMDK version %u is not supported", le32(h + 4));
    if (v->flags & FLAG_COMPRESSED)
        return err_plain(ENOTSUP, "compressed (streamOptimized) VMDK images are not supported");
    grain = le64(h + 20);
    if (grain < 8 || grain > MAX_GRAIN_SECTORS || (grain & (grain - 1)))
        return err_plain(EINVAL, "grain of %llu sectors is invalid", (unsigned long long)grain);
    if (le32(h + 44) != GTES_PER_GT)
        return err_plain(EINVAL, "%u entries per grain table is not 512", le32(h + 44));
    v->grain_bytes = grain * 512;
    d->size = le64(h + 12) * 512;
    if (le64(h + 12) > (1ull << 40))
        return err_plain(EFBIG, "capacity too large");
    uint64_t gts = (d->size + v->grain_bytes * GTES_PER_GT - 1) / (v->grain_bytes * GTES_PER_GT);
    if (gts > MAX_GTS)
        return err_plain(EFBIG, "too many grain tables");
    v->gts = (uint32_t)gts;
    v->gd_sector = le64(h + 56);
    v->rgd_sector = le64(h + 48);
    uint64_t dir_bytes = 4ull * v->gts;
    if (v->gd_sector > (uint64_t)st.st_size / 512 ||
        v->gd_sector * 512 + dir_bytes > (uint64_t)st.st_size ||
        ((v->flags & FLAG_REDUNDANT) && (v->rgd_sector > (uint64_t)st.st_size / 512 ||
                                         v->rgd_sector * 512 + dir_bytes > (uint64_t)st.st_size)))
        return err_plain(EINVAL, "grain directory past the end of the file (truncated?)");
    r = check_descriptor(d, h);
    if (r < 0)
        return r;
    r = load_directory(d, v->gts, v->gd_sector, &v->gd);
    if (r == 0 && (v->flags & FLAG_REDUNDANT))
        r = load_directory(d, v->gts, v->rgd_sector, &v->rgd);
    if (r < 0)
        return err_plain(EIO, "cannot read the grain directory");
    v->tables = calloc((size_t)v->gts * GTES_PER_GT + 1, 4);
    v->loaded = calloc(v->gts + 1, 1);
    if (!v->tables || !v->loaded)
        return -ENOMEM;
    v->end = ((uint64_t)st.st_size + 511) & ~511ull;
    return 0;
}

static uint64_t locate(struct disk *d, uint64_t offset, uint64_t *run);
static int allocate_grain(struct disk *d, uint64_t offset);

static int vmdk_open(struct disk *d)
{
    struct vmdk *v = calloc(1, sizeof(*v));
    int r;

    if (!v)
        return -ENOMEM;
    pthread_mutex_init(&v->bm.lock, NULL);
    v->bm.locate = locate;
    v->bm.allocate = allocate_grain;
    d->priv = v;
    r = open_image(d, v);
    if (r < 0)
        vmdk_close(d);
    return r;
}

/* Grain table t, read on first use; NULL if it is not allocated or
 * cannot be read (then the grains read as zeros, and writes fail). */
static uint32_t *table(struct disk *d, struct vmdk *v, uint32_t t)
{
    uint32_t *gt = v->tables + (size_t)t * GTES_PER_GT;
    if (v->loaded[t])
        return gt;
    if (!v->gd[t] || disk_pread_all(d->fd, gt, GTES_PER_GT * 4, (uint64_t)v->gd[t] * 512) < 0)
        return NULL;
    for (unsigned i = 0; i < GTES_PER_GT; i++)
        gt[i] = le32((uint8_t *)&gt[i]);
    v->loaded[t] = 1;
    return gt;
}

static uint64_t locate(struct disk *d, uint64_t offset, uint64_t *run)
{
    struct vmdk *v = d->priv;
    uint64_t grain = offset / v->grain_bytes, in = offset % v->grain_bytes;
    uint32_t *gt = table(d, v, (uint32_t)(grain / GTES_PER_GT));
    uint32_t entry = gt ? gt[grain % GTES_PER_GT] : 0;

    *run = v->grain_bytes - in;
    if (entry == 0 || (entry == 1 && (v->flags & FLAG_ZEROED_GRAIN)))
        return BLOCKMAP_NONE;
    return (uint64_t)entry * 512 + in;
}

static int write_entry(struct disk *d, uint64_t table_sector, uint32_t index, uint32_t value)
{
    uint8_t b[4];
    put_le(b, value, 4);
    return disk_pwrite_all(d->fd, b, 4, table_sector * 512 + 4ull * index);
}

/* A grain table for a directory entry that has none, in both copies. */
static int allocate_table(struct disk *d, struct vmdk *v, uint32_t t)
{
    static const uint8_t zeros[GTES_PER_GT * 4];
    int r = 0;

    for (int copy = 0; r == 0 && copy < (v->rgd ? 2 : 1); copy++) {
        uint32_t sector = (uint32_t)(v->end / 512);
        uint32_t *dir = copy ? v->rgd : v->gd;
        r = disk_pwrite_all(d->fd, zeros, sizeof(zeros), v->end);
        v->end += sizeof(zeros);
        if (r == 0)
            r = disk_barrier(d);
        if (r == 0)
            r = write_entry(d, copy ? v->rgd_sector : v->gd_sector, t, sector);
        if (r == 0)
            dir[t] = sector;
    }
    memset(v->tables + (size_t)t * GTES_PER_GT, 0, GTES_PER_GT * 4);
    v->loaded[t] = r == 0;
    return r;
}

/* A new grain at the end of the file (a hole: zeros until written), then
 * the grain table entries pointing at it. */
static int allocate_grain(struct disk *d, uint64_t offset)
{
    struct vmdk *v = d->priv;
    uint64_t grain = offset / v->grain_bytes;
    uint32_t t = (uint32_t)(grain / GTES_PER_GT), i = (uint32_t)(grain % GTES_PER_GT);
    uint64_t at = v->end;
    int r = 0;

    if (!v->gd[t])
        r = allocate_table(d, v, t);
    uint32_t *gt = r == 0 ? table(d, v, t) : NULL;
    if (!gt)
        return r < 0 ? r : -EIO;
    at = v->end;
    if (ftruncate(d->fd, (off_t)(at + v->grain_bytes)) < 0)
        return -errno;
    r = write_entry(d, v->gd[t], i, (uint32_t)(at / 512));
    if (r == 0 && v->rgd && v->rgd[t])
        r = write_entry(d, v->rgd[t], i, (uint32_t)(at / 512));
    if (r < 0)
        return r;
    gt[i] = (uint32_t)(at / 512);
    v->end = at + v->grain_bytes;
    return 0;
}

struct layout {
    uint64_t capacity, grain, gts, gd_sectors, rgd, rgts, gd, gt, overhead;
};

static void plan(uint64_t size, uint64_t grain, struct layout *l)
{
    l->capacity = (size + 511) / 512;
    l->grain = grain;
    l->gts = (l->capacity + grain * GTES_PER_GT - 1) / (grain * GTES_PER_GT);
    l->gd_sectors = (l->gts * 4 + 511) / 512;
    l->rgd = 1 + DESCRIPTOR_SECTORS;
    l->rgts = l->rgd + l->gd_sectors;
    l->gd = l->rgts + l->gts * 4;
    l->gt = l->gd + l->gd_sectors;
    l->overhead = (l->gt + l->gts * 4 + grain - 1) / grain * grain;
}

static void fill_metadata(uint8_t *m, const struct layout *l, const char *path)
{
    char *copy = strdup(path), *text = (char *)m + 512;
    uint32_t cid;

    put_le(m, MAGIC, 4);
    put_le(m + 4, 1, 4);
    put_le(m + 8, FLAG_NEWLINE_TEST | FLAG_REDUNDANT, 4);
    put_le(m + 12, l->capacity, 8);
    put_le(m + 20, l->grain, 8);
    put_le(m + 28, 1, 8);
    put_le(m + 36, DESCRIPTOR_SECTORS, 8);
    put_le(m + 44, GTES_PER_GT, 4);
    put_le(m + 48, l->rgd, 8);
    put_le(m + 56, l->gd, 8);
    put_le(m + 64, l->overhead, 8);
    memcpy(m + 73, "\n \r\n", 4);
    if (getrandom(&cid, sizeof(cid), 0) != sizeof(cid))
        cid = 0x736d6f6c;
    snprintf(text, DESCRIPTOR_SECTORS * 512,
             "# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=ffffffff\n"
             "createType=\"monolithicSparse\"\n\n# Extent description\nRW %llu SPARSE \"%s\"\n\n"
             "# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n"
             "ddb.geometry.cylinders = \"%llu\"\nddb.geometry.heads = \"16\"\n"
             "ddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\n",
             cid, (unsigned long long)l->capacity, copy ? basename(copy) : "disk.vmdk",
             (unsigned long long)(l->capacity / (16 * 63) < 16383 ? l->capacity / (16 * 63)
                                                                   : 16383));
    free(copy);
    for (uint64_t t = 0; t < l->gts; t++) {
        put_le(m + l->rgd * 512 + 4 * t, l->rgts + 4 * t, 4);
        put_le(m + l->gd * 512 + 4 * t, l->gt + 4 * t, 4);
    }
}

static int vmdk_create(const char *path, const struct disk_create_options *o)
{
    uint64_t grain = o->cluster_size ? o->cluster_size / 512 : DEFAULT_GRAIN_SECTORS;
    struct layout l;
    uint8_t *meta;
    int r;

    if (o->backing)
        return err_plain(EINVAL, "vmdk images cannot have a backing file here");
    if (grain < 8 || grain > MAX_GRAIN_SECTORS || (grain & (grain - 1)))
        return err_plain(EINVAL, "grain size must be a power of two from 4 KiB to 1 MiB");
    plan(o->size, grain, &l);
    if (l.gts > MAX_GTS)
        return err_plain(EFBIG, "too large for a VMDK");
    meta = calloc(l.overhead, 512);
    if (!meta)
        return -ENOMEM;
    fill_metadata(meta, &l, path);
    r = disk_write_new(path, meta, l.overhead * 512, 0, NULL, 0);
    free(meta);
    return r;
}

/* A descriptor field's value ("CID=fffe" gives "fffe"; quotes dropped), or
 * "" when absent. */
static void descriptor_field(const char *text, const char *key, char *out, size_t size)
{
    const char *p = strstr(text, key);
    size_t n = 0;

    if (p) {
        p += strlen(key);
        p += *p == '"';
        while (p[n] && p[n] != '"' && p[n] != '\n' && n + 1 < size)
            n++;
        memcpy(out, p, n);
    }
    out[n] = 0;
}

/* qemu-img info's "cluster-size" and format-specific (the descriptor's
 * CID, parentCID, createType, and the one extent). */
static int vmdk_describe(struct disk *d, json_t *info)
{
    const struct vmdk *v = d->priv;
    char text[DESCRIPTOR_SECTORS * 512 + 1] = {0}, cid[16], parent[16], type[64];
    uint8_t h[512];

    json_object_set_new(info, "cluster-size", json_integer((json_int_t)v->grain_bytes));
    if (disk_pread_all(d->fd, h, sizeof(h), 0) < 0)
        return 0;
    uint64_t offset = le64(h + 28), sectors = le64(h + 36);
    if (!offset || !sectors)
        return 0;
    if (sectors > DESCRIPTOR_SECTORS)
        sectors = DESCRIPTOR_SECTORS;
    if (disk_pread_all(d->fd, text, sectors * 512, offset * 512) < 0)
        return 0;
    descriptor_field(text, "\nCID=", cid, sizeof(cid));
    descriptor_field(text, "parentCID=", parent, sizeof(parent));
    descriptor_field(text, "createType=", type, sizeof(type));
    json_t *extent = json_pack("{sIsssIss}", "virtual-size", (json_int_t)d->size, "filename",
                               d->path, "cluster-size", (json_int_t)v->grain_bytes, "format", "");
    json_t *data = json_pack("{sIsIsss[o]}", "cid", (json_int_t)strtoull(cid, NULL, 16),
                             "parent-cid", (json_int_t)strtoull(parent, NULL, 16),
                             "create-type", type, "extents", extent);
    json_object_set_new(info, "format-specific",
                        json_pack("{ssso}", "type", "vmdk", "data", data));
    return 0;
}

const struct disk_format disk_format_vmdk = {
    .name = "vmdk",
    .probe = vmdk_probe,
    .open = vmdk_open,
    .preadv = blockmap_preadv,
    .pwritev = blockmap_pwritev,
    .flush = blockmap_flush,
    .write_zeroes = blockmap_write_zeroes,
    .close = vmdk_close,
    .describe = vmdk_describe,
    .status = blockmap_status,
    .create = vmdk_create,
};
