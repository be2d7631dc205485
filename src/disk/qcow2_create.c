/* New, empty qcow2 images: header (with the backing file and its format),
 * refcount table, refcount blocks and an empty L1 table, laid out one
 * after another and all counted. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk/fileio.h"
#include "disk/qcow2.h"
#include "util/be.h"
#include "util/err.h"

#define DEFAULT_CLUSTER_BITS 16
#define V3_HEADER_WRITTEN 112 /* QEMU's: ends with the compression type */

struct layout {
    unsigned cluster_bits, refcount_order;
    uint64_t cluster_size, l1_size, l1_clusters, reftable_clusters, refblocks;
};

static int plan(const struct disk_create_options *o, struct layout *l)
{
    uint32_t cs = o->cluster_size ? o->cluster_size : 1u << DEFAULT_CLUSTER_BITS;
    unsigned bits = o->refcount_bits ? o->refcount_bits : 16;

    if (cs & (cs - 1) || cs < 512 || cs > (2u << 20))
        return err_plain(EINVAL, "cluster size must be a power of two from 512 B to 2 MiB");
    if (bits & (bits - 1) || bits > 64)
        return err_plain(EINVAL, "refcount bits must be a power of two up to 64");
    if (o->compat_version == 2 && (bits != 16 || o->lazy_refcounts))
        return err_plain(EINVAL, "compat 0.10 images have 16-bit refcounts and no lazy refcounts");
    l->cluster_bits = (unsigned)__builtin_ctz(cs);
    l->refcount_order = (unsigned)__builtin_ctz(bits);
    l->cluster_size = cs;
    l->l1_size = qcow2_div_round_up(o->size, (uint64_t)cs * (cs / 8));
    if (l->l1_size * 8 > (32u << 20))
        return err_plain(EFBIG, "virtual size too large for this cluster size");
    l->l1_clusters = qcow2_div_round_up(l->l1_size * 8, cs);
    uint64_t per_block = (uint64_t)cs * 8 >> l->refcount_order;
    l->reftable_clusters = 1;
    l->refblocks = 1;
    for (;;) {
        uint64_t total = 1 + l->reftable_clusters + l->refblocks + l->l1_clusters;
        uint64_t blocks = qcow2_div_round_up(total, per_block);
        uint64_t table = qcow2_div_round_up(blocks * 8, cs);
        if (blocks <= l->refblocks && table <= l->reftable_clusters)
            break;
        l->refblocks = blocks;
        l->reftable_clusters = table;
    }
    return 0;
}

static size_t put_extension(uint8_t *p, uint32_t type, const void *data, uint32_t len)
{
    put_be(p, type, 4);
    put_be(p + 4, len, 4);
    memcpy(p + 8, data, len);
    return 8 + ((len + 7) & ~7u);
}

static int header(const struct disk_create_options *o, const struct layout *l, uint8_t *h)
{
    unsigned version = o->compat_version ? o->compat_version : 3;
    size_t off = version >= 3 ? V3_HEADER_WRITTEN : QCOW2_V2_HEADER;
    size_t backing_len = o->backing ? strlen(o->backing) : 0;

    put_be(h, QCOW2_MAGIC, 4);
    put_be(h + 4, version, 4);
    put_be(h + 20, l->cluster_bits, 4);
    put_be(h + 24, o->size, 8);
    put_be(h + 36, l->l1_size, 4);
    put_be(h + 40, (1 + l->reftable_clusters + l->refblocks) << l->cluster_bits, 8);
    put_be(h + 48, l->cluster_size, 8);
    put_be(h + 56, l->reftable_clusters, 4);
    if (o->zstd && version < 3)
        return err_plain(EINVAL, "zstd compression needs compat 1.1 (v3) images");
    if (version >= 3) {
        put_be(h + 72, o->zstd ? QCOW2_INCOMPAT_COMPRESSION : 0, 8);
        h[104] = o->zstd ? QCOW2_COMPRESSION_ZSTD : QCOW2_COMPRESSION_DEFLATE;
        put_be(h + 80, o->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0, 8);
        put_be(h + 96, l->refcount_order, 4);
        put_be(h + 100, V3_HEADER_WRITTEN, 4);
    }
    if (o->backing_format)
        off += put_extension(h + off, QCOW2_EXT_BACKING_FORMAT, o->backing_format,
                             (uint32_t)strlen(o->backing_format));
    off += put_extension(h + off, QCOW2_EXT_END, "", 0);
    if (backing_len) {
        if (backing_len > 1023 || off + backing_len > l->cluster_size)
            return err_plain(ENAMETOOLONG, "backing file name too long");
        put_be(h + 8, off, 8);
        put_be(h + 16, backing_len, 4);
        memcpy(h + off, o->backing, backing_len);
    }
    return 0;
}

/* The metadata as one buffer: header, refcount table, blocks, L1. */
static int fill(const struct disk_create_options *o, const struct layout *l, uint8_t *buf)
{
    uint64_t cs = l->cluster_size, total = 1 + l->reftable_clusters + l->refblocks + l->l1_clusters;
    uint64_t blocks_at = 1 + l->reftable_clusters;
    uint64_t per_block = cs * 8 >> l->refcount_order;
    unsigned entry_bits = 1u << l->refcount_order;
    int r = header(o, l, buf);

    if (r < 0)
        return r;
    for (uint64_t b = 0; b < l->refblocks; b++)
        put_be(buf + cs + 8 * b, (blocks_at + b) * cs, 8);
    for (uint64_t c = 0; c < total; c++) {
        uint8_t *block = buf + (blocks_at + c / per_block) * cs;
        uint64_t i = c % per_block;
        if (entry_bits < 8)
            block[i * entry_bits / 8] |= (uint8_t)(1u << (i * entry_bits % 8));
        else
            put_be(block + i * (entry_bits / 8), 1, (int)(entry_bits / 8));
    }
    return 0;
}

int qcow2_create(const char *path, const struct disk_create_options *o)
{
    struct layout l = {0};
    uint8_t *buf;
    uint64_t bytes;
    int r = plan(o, &l);

    if (r < 0)
        return r;
    bytes = (1 + l.reftable_clusters + l.refblocks + l.l1_clusters) * l.cluster_size;
    buf = calloc(1, bytes);
    if (!buf)
        return err_set(ENOMEM, "qcow2 metadata");
    r = fill(o, &l, buf);
    if (r < 0) {
        free(buf);
        return r;
    }
    r = disk_write_new(path, buf, bytes, 0, NULL, 0);
    free(buf);
    return r;
}
