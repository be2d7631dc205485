/* qemu-img measure's arithmetic: a qcow2 image of virtual size V is its
 * header cluster, the L2 tables that map V, the L1 table that maps those,
 * and the refcount blocks and table that count all of it (themselves
 * included), plus the data clusters written. */
#include <string.h>

#include "disk/measure.h"
#include "util/err.h"

#define DEFAULT_CLUSTER 65536u
#define MAX_L1_BYTES (32u << 20) /* as the qcow2 driver's limit */

static uint64_t round_up(uint64_t n, uint64_t to)
{
    return (n + to - 1) / to * to;
}

static uint64_t div_up(uint64_t n, uint64_t d)
{
    return (n + d - 1) / d;
}

/* Refcount blocks and table clusters to count clusters and themselves:
 * grown until counting them needs no more of them. */
static uint64_t refcount_bytes(uint64_t clusters, uint64_t cs, unsigned refcount_bits)
{
    uint64_t per_block = cs * 8 / refcount_bits, per_table_cluster = cs / 8;
    uint64_t blocks = 0, table = 0, total = 0, last;

    do {
        last = total;
        blocks = div_up(clusters + blocks + table, per_block);
        table = div_up(blocks, per_table_cluster);
        total = clusters + blocks + table;
    } while (total != last);
    return (blocks + table) * cs;
}

/* Every byte of a fully written qcow2 image of virtual size size. */
static uint64_t qcow2_full_size(uint64_t size, uint64_t cs, unsigned refcount_bits)
{
    uint64_t data = round_up(size, cs), meta = cs; /* the header */
    uint64_t l2_entries = round_up(data / cs, cs / 8);
    uint64_t l1_entries = round_up(l2_entries * 8 / cs, cs / 8);

    meta += l2_entries * 8 + l1_entries * 8;
    meta += refcount_bytes((meta + data) / cs, cs, refcount_bits);
    return meta + data;
}

/* The bytes of src's data clusters, through its backing chain. */
static int data_bytes(struct disk *src, uint64_t cs, uint64_t *out)
{
    uint64_t offset = 0, total = 0;

    while (offset < src->size) {
        struct disk_extent e;
        unsigned depth;
        int r = disk_status_chain(src, offset, src->size - offset, &e, &depth);
        if (r < 0)
            return r;
        uint64_t len = e.length ? e.length : src->size - offset;
        if (e.kind == DISK_EXTENT_DATA) { /* the whole clusters it touches */
            len = round_up(offset + len, cs) - offset;
            total += offset % cs + len;
        }
        offset += len;
    }
    *out = total;
    return 0;
}

static int measure_qcow2(const struct disk_create_options *o, struct disk *src,
                         struct disk_measure *out)
{
    uint64_t cs = o->cluster_size ? o->cluster_size : DEFAULT_CLUSTER, data = 0;
    unsigned bits = o->refcount_bits ? o->refcount_bits : 16;
    uint64_t size = src ? src->size : o->size, virtual_size;

    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
        return err_plain(EINVAL, "cluster size must be a power of two from 512 to 2M");
    if (bits == 0 || bits > 64 || (bits & (bits - 1)))
        return err_plain(EINVAL, "refcount_bits must be a power of two up to 64");
    if (o->compat_version == 2 && bits != 16)
        return err_plain(EINVAL, "refcount_bits other than 16 need compat=1.1");
    virtual_size = round_up(size, cs);
    if (div_up(virtual_size / cs, cs / 8) * 8 > MAX_L1_BYTES)
        return err_plain(EFBIG, "size too large for this cluster size");
    if (src) {
        int r = data_bytes(src, cs, &data);
        if (r < 0)
            return r;
    }
    out->fully_allocated = qcow2_full_size(virtual_size, cs, bits);
    out->required = out->fully_allocated - virtual_size + data;
    return 0;
}

int disk_measure(const char *format, const struct disk_create_options *o, struct disk *src,
                 struct disk_measure *out)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(format, "qcow2") == 0)
        return measure_qcow2(o, src, out);
    if (strcmp(format, "raw") == 0) { /* every byte, allocated or not */
        out->required = out->fully_allocated = src ? src->size : round_up(o->size, 512);
        return 0;
    }
    return err_plain(ENOTSUP, "cannot measure %s images (qcow2 or raw)", format);
}
