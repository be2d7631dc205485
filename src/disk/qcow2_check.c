/* qcow2 check: count the references every table makes (header, L1 and L2
 * tables of the image and of each internal snapshot, refcount table and
 * blocks, snapshot table) and compare with the stored refcounts. More
 * stored than used is a leak (harmless); fewer is corruption (a cluster
 * could be handed out twice). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk/check.h"
#include "disk/qcow2.h"
#include "util/be.h"
#include "util/err.h"

struct walk {
    struct qcow2 *q;
    struct disk_check_result *res;
    uint32_t *used; /* references per cluster of the file */
    uint64_t clusters;
    bool active; /* walking the image's own L1 (not a snapshot's) */
    uint64_t next_contiguous; /* where the next data cluster would follow the last */
};

static void problem(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct walk *w, const char *fmt, ...)
{
    va_list ap;
    w->res->corruptions++;
    if (w->res->first_error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(w->res->first_error, sizeof(w->res->first_error), fmt, ap);
    va_end(ap);
}

static void use(struct walk *w, uint64_t offset, uint64_t len, const char *what)
{
    uint64_t first = offset >> w->q->cluster_bits;
    uint64_t end = (offset + len + w->q->cluster_size - 1) >> w->q->cluster_bits;

    for (uint64_t c = first; c < end; c++) {
        if (c >= w->clusters) {
            problem(w, "%s at 0x%llx is past the end of the file", what,
                    (unsigned long long)(c << w->q->cluster_bits));
            return;
        }
        if (w->used[c] < UINT32_MAX)
            w->used[c]++;
    }
}

static bool aligned(struct walk *w, uint64_t offset, const char *what)
{
    if (!(offset & (w->q->cluster_size - 1)))
        return true;
    problem(w, "%s at unaligned offset 0x%llx", what, (unsigned long long)offset);
    return false;
}

/* qemu-img's fragmentation figures: a compressed cluster counts as
 * fragmented, and so does a data cluster not right after the previous one. */
static void count_allocated(struct walk *w, uint64_t entry)
{
    struct disk_check_result *res = w->res;
    uint64_t host = entry & QCOW2_OFFSET_MASK;

    res->allocated_clusters++;
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        res->compressed_clusters++;
        res->fragmented_clusters++;
        return;
    }
    if (w->next_contiguous && host != w->next_contiguous)
        res->fragmented_clusters++;
    w->next_contiguous = host + w->q->cluster_size;
}

static int walk_l2(struct walk *w, uint64_t l2_offset, uint8_t *table)
{
    struct qcow2 *q = w->q;
    int r = qcow2_pread(q, table, q->cluster_size, l2_offset);

    if (r < 0)
        return err_set(-r, "read L2 table");
    for (uint64_t i = 0; i < q->l2_entries; i++) {
        uint64_t e = be64(table + i * q->l2_entry_bytes);
        if (e & QCOW2_OFLAG_COMPRESSED) {
            uint64_t host, len;
            qcow2_compressed_range(q, e, &host, &len);
            use(w, host, len, "compressed cluster");
        } else if ((e & QCOW2_OFFSET_MASK) && aligned(w, e & QCOW2_OFFSET_MASK, "data cluster")) {
            use(w, e & QCOW2_OFFSET_MASK, q->cluster_size, "data cluster");
        }
        if (w->active && (e & (QCOW2_OFLAG_COMPRESSED | QCOW2_OFFSET_MASK)))
            count_allocated(w, e);
    }
    return 0;
}

static int walk_l1(struct walk *w, uint64_t l1_offset, uint32_t l1_size)
{
    struct qcow2 *q = w->q;
    uint8_t *l1 = malloc((size_t)l1_size * 8 + 1), *table = malloc(q->cluster_size);
    int r = l1 && table ? 0 : -ENOMEM;

    if (r == 0 && aligned(w, l1_offset, "L1 table")) {
        use(w, l1_offset, (uint64_t)l1_size * 8, "L1 table");
        r = qcow2_pread(q, l1, (size_t)l1_size * 8, l1_offset);
    }
    for (uint32_t i = 0; r == 0 && i < l1_size; i++) {
        uint64_t l2 = be64(l1 + 8 * i) & QCOW2_OFFSET_MASK;
        if (!l2 || !aligned(w, l2, "L2 table"))
            continue;
        use(w, l2, q->cluster_size, "L2 table");
        if ((l2 >> q->cluster_bits) < w->clusters)
            r = walk_l2(w, l2, table);
    }
    free(l1);
    free(table);
    return r;
}

/* Snapshot table entries: L1 table offset and size, then variable parts. */
static int walk_snapshots(struct walk *w)
{
    struct qcow2 *q = w->q;
    uint64_t offset = q->snapshots_offset;
    uint8_t h[40];
    int r = 0;

    if (!q->snapshot_count)
        return 0;
    if (!aligned(w, offset, "snapshot table"))
        return 0;
    for (uint32_t i = 0; r == 0 && i < q->snapshot_count; i++) {
        r = qcow2_pread(q, h, sizeof(h), offset);
        if (r < 0)
            return err_set(-r, "read snapshot table");
        uint64_t size = 40 + (uint64_t)be32(h + 36) + be16(h + 12) + be16(h + 14);
        size = (size + 7) & ~7ull;
        use(w, offset, size, "snapshot table");
        if (be32(h + 8) > (32u << 20) / 8)
            problem(w, "snapshot %u has an L1 table of %u entries", i, be32(h + 8));
        else
            r = walk_l1(w, be64(h), be32(h + 8));
        offset += size;
    }
    return r;
}

static int compare(struct walk *w, unsigned repair)
{
    struct qcow2 *q = w->q;
    uint64_t last = q->reftable_entries * q->refblock_entries;

    for (uint64_t c = 0; c < last; c++) {
        uint64_t stored, used = c < w->clusters ? w->used[c] : 0;
        if (!q->reftable[c / q->refblock_entries]) {
            if (used)
                problem(w, "cluster 0x%llx is used but has no refcount block",
                        (unsigned long long)(c << q->cluster_bits));
            c += q->refblock_entries - 1 - c % q->refblock_entries;
            continue;
        }
        int r = qcow2_refcount_get(q, c, &stored);
        if (r < 0)
            return r;
        if (stored || used)
            w->res->image_end_offset = (c + 1) << q->cluster_bits;
        if (stored == used)
            continue;
        bool leak = stored > used;
        if (leak)
            w->res->leaks++;
        else
            problem(w, "cluster 0x%llx refcount=%llu reference=%llu",
                    (unsigned long long)(c << q->cluster_bits), (unsigned long long)stored,
                    (unsigned long long)used);
        if (!(repair & (leak ? DISK_REPAIR_LEAKS : DISK_REPAIR_ERRORS)))
            continue;
        if (qcow2_refcount_set(q, c, used) == 0) {
            if (leak)
                w->res->leaks_fixed++;
            else
                w->res->corruptions_fixed++;
        }
    }
    return 0;
}

int qcow2_check(struct disk *d, unsigned repair, struct disk_check_result *res)
{
    struct qcow2 *q = d->priv;
    struct walk w = {q, res, NULL, qcow2_div_round_up(q->file_size, q->cluster_size)};
    int r;

    w.used = calloc(w.clusters + 1, sizeof(uint32_t));
    if (!w.used)
        return err_set(ENOMEM, "check");
    use(&w, 0, q->cluster_size, "header");
    if (aligned(&w, q->reftable_offset, "refcount table"))
        use(&w, q->reftable_offset, (uint64_t)q->reftable_clusters * q->cluster_size,
            "refcount table");
    for (uint64_t i = 0; i < q->reftable_entries; i++)
        if (q->reftable[i] && aligned(&w, q->reftable[i], "refcount block"))
            use(&w, q->reftable[i], q->cluster_size, "refcount block");
    w.active = true;
    r = walk_l1(&w, q->l1_offset, q->l1_size);
    w.active = false;
    if (r == 0)
        r = walk_snapshots(&w);
    if (r == 0)
        r = compare(&w, repair);
    res->total_clusters = qcow2_div_round_up(d->size, q->cluster_size);
    if (r == 0 && repair && res->corruptions == res->corruptions_fixed &&
        (q->incompatible & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)))
        r = qcow2_write_incompatible(q, q->incompatible & ~(QCOW2_INCOMPAT_DIRTY |
                                                            QCOW2_INCOMPAT_CORRUPT));
    free(w.used);
    return r;
}
