/* qemu-img amend for qcow2: compat=0.10 <-> 1.1 and lazy_refcounts.
 *
 * An upgrade rewrites the header cluster as version 3 (header fields after
 * the v2 ones, the extensions and backing name moved behind them). A
 * downgrade first turns every zero cluster (a v3 flag that v2 readers do
 * not know) into what reads the same without it: unallocated when there is
 * no backing file, or its preallocated cluster filled with zeros; synced;
 * then the header is rewritten as version 2. One header write, as the
 * qcow2 driver does for a backing file change. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "disk/amend.h"
#include "disk/qcow2.h"
#include "util/be.h"
#include "util/err.h"

#define V3_HEADER_WRITTEN 112 /* with the compression type byte, as qemu writes */
#define KNOWN_AUTOCLEAR 0ull

static int synced(struct qcow2 *q, int r)
{
    return r == 0 ? disk_barrier(q->disk) : r;
}

/* The zero flag on each cluster of one L2 table dropped (apply), or only
 * checked that it can be (a first pass, so a refusal leaves the image as
 * it was). */
static int expand_table(struct qcow2 *q, uint64_t table_offset, uint8_t *table, bool apply)
{
    uint8_t *zeros = NULL;
    int r = qcow2_pread(q, table, q->cluster_size, table_offset);

    for (uint64_t i = 0; r == 0 && i < q->l2_entries; i++) {
        uint64_t entry = be64(table + 8 * i), host = entry & QCOW2_OFFSET_MASK;
        uint8_t b[8];
        if ((entry & QCOW2_OFLAG_COMPRESSED) || !(entry & QCOW2_OFLAG_ZERO))
            continue;
        if (!host && q->backing_name)
            r = err_plain(ENOTSUP, "the image has zero clusters over its backing file: "
                                   "compat=0.10 cannot express them");
        if (r < 0 || !apply)
            continue;
        if (host) { /* the cluster itself must read as zeros first */
            if (!zeros)
                zeros = calloc(1, q->cluster_size);
            r = zeros ? synced(q, qcow2_pwrite(q, zeros, q->cluster_size, host)) : -ENOMEM;
        }
        put_be(b, host ? entry & ~QCOW2_OFLAG_ZERO : 0, 8);
        if (r == 0)
            r = qcow2_pwrite(q, b, 8, table_offset + 8 * i);
    }
    if (apply)
        qcow2_cache_drop(q, &q->l2_cache, table_offset);
    free(zeros);
    return r;
}

static int expand_zero_clusters(struct qcow2 *q)
{
    uint8_t *table = malloc(q->cluster_size);
    int r = table ? 0 : -ENOMEM;

    for (int apply = 0; apply < 2; apply++)
        for (uint32_t i = 0; r == 0 && i < q->l1_size; i++)
            if (q->l1[i] & QCOW2_OFFSET_MASK)
                r = expand_table(q, q->l1[i] & QCOW2_OFFSET_MASK, table, apply);
    free(table);
    return synced(q, r);
}

/* What a downgrade cannot keep, by name. */
static int check_downgrade(struct qcow2 *q)
{
    if (q->refcount_order != 4)
        return err_plain(ENOTSUP, "compat=0.10 needs refcount_bits=16 (the image has %u)",
                         1u << q->refcount_order);
    if (q->snapshot_count)
        return err_plain(ENOTSUP, "cannot downgrade an image with internal snapshots "
                                  "(delete them first)");
    if (q->incompatible & QCOW2_INCOMPAT_EXTL2)
        return err_plain(ENOTSUP, "compat=0.10 has no extended L2 entries");
    if (q->incompatible & QCOW2_INCOMPAT_COMPRESSION)
        return err_plain(ENOTSUP, "compat=0.10 has no zstd compression");
    if (q->autoclear & ~KNOWN_AUTOCLEAR)
        return err_plain(ENOTSUP, "the image has persistent bitmaps or a raw data file, "
                                  "which compat=0.10 cannot hold");
    return 0;
}

/* Appends an extension at off; returns the new end. */
static size_t put_extension(uint8_t *h, size_t off, uint32_t type, const uint8_t *data,
                            uint32_t len)
{
    put_be(h + off, type, 4);
    put_be(h + off + 4, len, 4);
    if (len)
        memcpy(h + off + 8, data, len);
    return off + 8 + ((len + 7) & ~(size_t)7);
}

/* The header cluster as version, with compatible features bits (v3). */
static int rewrite_header(struct qcow2 *q, unsigned version, uint64_t compatible)
{
    size_t cs = q->cluster_size, in = q->header_length, out;
    uint8_t *old = malloc(cs), *h = calloc(1, cs);
    uint64_t backing_offset, old_end;
    uint32_t backing_len;
    int r = old && h ? qcow2_pread(q, old, cs, 0) : -ENOMEM;

    if (r < 0)
        goto done;
    backing_offset = be64(old + 8);
    backing_len = be32(old + 16);
    old_end = backing_offset ? backing_offset + backing_len : in;
    memcpy(h, old, QCOW2_V2_HEADER);
    put_be(h + 4, version, 4);
    out = QCOW2_V2_HEADER;
    if (version >= 3) {
        put_be(h + 72, q->incompatible & QCOW2_INCOMPAT_COMPRESSION, 8);
        put_be(h + 80, compatible, 8);
        put_be(h + 88, q->autoclear, 8);
        put_be(h + 96, q->refcount_order, 4);
        put_be(h + 100, in > V3_HEADER_WRITTEN ? in : V3_HEADER_WRITTEN, 4);
        h[104] = q->compression_type;
        out = in > V3_HEADER_WRITTEN && q->version >= 3 ? in : V3_HEADER_WRITTEN;
        if (q->version >= 3) /* what lies between 104 and the header's end, as it was */
            memcpy(h + 104, old + 104, out - 104);
    }
    /* Every extension kept (the feature names only in v3, as qemu). */
    while (in + 8 <= (backing_offset ? backing_offset : cs)) {
        uint32_t type = be32(old + in), len = be32(old + in + 4);
        if (type == QCOW2_EXT_END || len > cs - in - 8)
            break;
        if (!(type == QCOW2_EXT_FEATURE_TABLE && version < 3)) {
            if (out + 16 + len > cs) {
                r = err_plain(ENOSPC, "header extensions do not fit in the first cluster");
                goto done;
            }
            out = put_extension(h, out, type, old + in + 8, len);
        }
        in += 8 + ((len + 7) & ~7u);
        if (in > old_end)
            old_end = in;
    }
    out = put_extension(h, out, QCOW2_EXT_END, NULL, 0);
    if (backing_offset) {
        if (out + backing_len > cs) {
            r = err_plain(ENOSPC, "the backing file name does not fit in the first cluster");
            goto done;
        }
        memcpy(h + out, old + backing_offset, backing_len);
        put_be(h + 8, out, 8);
        out += backing_len;
    }
    r = synced(q, qcow2_pwrite(q, h, out > old_end ? out : old_end, 0));
    if (r == 0) { /* what the driver writes later (closing) must know it */
        q->version = version;
        q->header_length = version >= 3 ? be32(h + 100) : QCOW2_V2_HEADER;
        q->compatible = version >= 3 ? compatible : 0;
        if (version < 3)
            q->incompatible = q->autoclear = 0;
    }
done:
    free(old);
    free(h);
    return r;
}

static int amend(struct qcow2 *q, const struct disk_amend_options *o)
{
    unsigned version = o->compat_version ? o->compat_version : q->version;
    uint64_t compatible = q->version >= 3 ? q->compatible : 0;

    if (o->lazy_refcounts == 1)
        compatible |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    else if (o->lazy_refcounts == 0)
        compatible &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
    if (version < 3 && (compatible & QCOW2_COMPAT_LAZY_REFCOUNTS))
        return err_plain(EINVAL, "lazy refcounts need compat=1.1 (add lazy_refcounts=off to "
                                 "downgrade)");
    if (q->incompatible & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))
        return err_plain(EINVAL, "the image is dirty or corrupt: repair it with "
                                 "'smolvm disk check -r all' first");
    if (version < 3 && q->version >= 3) {
        int r = check_downgrade(q);
        if (r == 0)
            r = expand_zero_clusters(q);
        if (r < 0)
            return r;
    }
    if (version == q->version && compatible == (q->version >= 3 ? q->compatible : 0))
        return 0; /* nothing changes */
    if (version == q->version) { /* only the compatible features field */
        uint8_t b[8];
        put_be(b, compatible, 8);
        int r = synced(q, qcow2_pwrite(q, b, 8, 80));
        if (r == 0)
            q->compatible = compatible;
        return r;
    }
    return rewrite_header(q, version, compatible);
}

int disk_amend(struct disk *d, const struct disk_amend_options *o)
{
    if (d->format != &disk_format_qcow2)
        return err_plain(ENOTSUP, "%s images cannot be amended (qcow2 only)", d->format->name);
    if (d->read_only)
        return -EROFS;
    struct qcow2 *q = d->priv;
    pthread_mutex_lock(&q->lock);
    int r = amend(q, o);
    pthread_mutex_unlock(&q->lock);
    return r;
}
