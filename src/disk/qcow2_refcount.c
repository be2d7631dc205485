/* qcow2 refcounts and cluster allocation.
 *
 * Refcounts live in refcount blocks found through the refcount table; an
 * entry is 2^refcount_order bits (sub-byte entries packed from the low
 * bits up, wider ones big-endian). New clusters come from a pool whose
 * refcounts were set and synced in one go, so a write that needs a
 * cluster never waits for a sync of its own. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk/qcow2.h"
#include "util/be.h"
#include "util/err.h"

#define REFILL_BYTES (4u << 20)
#define REFILL_MIN 8

static uint64_t entry_get(const uint8_t *block, uint64_t i, unsigned order)
{
    if (order < 3) {
        unsigned bits = 1u << order;
        return (block[i * bits / 8] >> (i * bits % 8)) & ((1u << bits) - 1);
    }
    return get_be(block + i * (1u << (order - 3)), 1 << (order - 3));
}

static void entry_set(uint8_t *block, uint64_t i, unsigned order, uint64_t v)
{
    if (order < 3) {
        unsigned bits = 1u << order, shift = i * bits % 8;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
        block[i * bits / 8] = (uint8_t)((block[i * bits / 8] & ~mask) | (v << shift & mask));
        return;
    }
    put_be(block + i * (1u << (order - 3)), v, 1 << (order - 3));
}

/* Byte range of entries [first, last] in a block. */
static void entry_bytes(unsigned order, uint64_t first, uint64_t last, uint64_t *start,
                        uint64_t *len)
{
    uint64_t bits = 1ull << order;
    *start = first * bits / 8;
    *len = (last + 1) * bits / 8 + ((last + 1) * bits % 8 ? 1 : 0) - *start;
}

int qcow2_refcount_open(struct qcow2 *q)
{
    uint64_t bytes = (uint64_t)q->reftable_clusters * q->cluster_size;
    uint8_t *raw = malloc(bytes ? bytes : 1);
    int r;

    q->refblock_entries = q->cluster_size * 8 >> q->refcount_order;
    q->reftable_entries = bytes / 8;
    q->reftable = calloc(q->reftable_entries ? q->reftable_entries : 1, sizeof(uint64_t));
    if (!raw || !q->reftable) {
        free(raw);
        return -ENOMEM;
    }
    r = qcow2_pread(q, raw, bytes, q->reftable_offset);
    for (uint64_t i = 0; r == 0 && i < q->reftable_entries; i++)
        q->reftable[i] = be64(raw + 8 * i) & ~511ull;
    free(raw);
    return r < 0 ? err_set(-r, "read refcount table") : 0;
}

static uint64_t max_refcount(const struct qcow2 *q)
{
    return q->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << q->refcount_order)) - 1;
}

/* The refcount block covering cluster, or NULL if there is none. */
static int refblock(struct qcow2 *q, uint64_t cluster, uint8_t **block, uint64_t *offset)
{
    uint64_t index = cluster / q->refblock_entries;
    *block = NULL;
    *offset = index < q->reftable_entries ? q->reftable[index] : 0;
    if (!*offset)
        return 0;
    if (*offset & (q->cluster_size - 1))
        return qcow2_corrupt(q, "refcount block at unaligned offset 0x%llx",
                             (unsigned long long)*offset);
    return qcow2_cache_get(q, &q->refblock_cache, *offset, block);
}

int qcow2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *count)
{
    uint8_t *block;
    uint64_t offset;
    int r = refblock(q, cluster, &block, &offset);

    if (r < 0)
        return r;
    *count = block ? entry_get(block, cluster % q->refblock_entries, q->refcount_order) : 0;
    return 0;
}

/* Adds delta to clusters [first, first+count) that share one block. */
static int update_in_block(struct qcow2 *q, uint64_t first, uint64_t count, int delta)
{
    uint64_t index = first % q->refblock_entries, offset, start, len;
    uint8_t *block;
    int r = refblock(q, first, &block, &offset);

    if (r < 0)
        return r;
    if (!block)
        return qcow2_corrupt(q, "cluster 0x%llx has no refcount block",
                             (unsigned long long)first);
    for (uint64_t i = index; i < index + count; i++) {
        uint64_t v = entry_get(block, i, q->refcount_order);
        if ((delta < 0 && v == 0) || (delta > 0 && v == max_refcount(q))) {
            qcow2_cache_drop(q, &q->refblock_cache, offset);
            return delta < 0 ? qcow2_corrupt(q, "refcount of cluster 0x%llx below zero",
                                             (unsigned long long)(first - index + i))
                             : err_plain(ERANGE, "refcount overflow");
        }
        entry_set(block, i, q->refcount_order, v + (uint64_t)(int64_t)delta);
    }
    entry_bytes(q->refcount_order, index, index + count - 1, &start, &len);
    r = qcow2_pwrite(q, block + start, len, offset + start);
    if (r < 0)
        qcow2_cache_drop(q, &q->refblock_cache, offset);
    return r;
}

int qcow2_refcount_update(struct qcow2 *q, uint64_t offset, uint64_t len, int delta)
{
    uint64_t first = offset >> q->cluster_bits;
    uint64_t end = (offset + len + q->cluster_size - 1) >> q->cluster_bits;

    while (first < end) {
        uint64_t room = q->refblock_entries - first % q->refblock_entries;
        uint64_t count = end - first < room ? end - first : room;
        int r = update_in_block(q, first, count, delta);
        if (r < 0)
            return r;
        first += count;
    }
    return 0;
}

/* A new, empty refcount block at cluster, counting itself if asked (when
 * it covers itself). */
static int new_refblock(struct qcow2 *q, uint64_t cluster, bool count_self)
{
    uint8_t *b = calloc(1, q->cluster_size);
    int r;

    if (!b)
        return -ENOMEM;
    if (count_self)
        entry_set(b, cluster % q->refblock_entries, q->refcount_order, 1);
    r = qcow2_pwrite(q, b, q->cluster_size, cluster << q->cluster_bits);
    free(b);
    return r;
}

/* First cluster past everything in use: the file, the pool, the hint. */
static uint64_t top_cluster(const struct qcow2 *q)
{
    uint64_t top = qcow2_div_round_up(q->file_size, q->cluster_size);
    for (unsigned i = 0; i < q->pool_count; i++)
        if (q->pool[i] + 1 > top)
            top = q->pool[i] + 1;
    return q->free_hint > top ? q->free_hint : top;
}

/* Replaces the refcount table with a larger one, at the top of the file,
 * covering index and itself. */
static int grow_reftable(struct qcow2 *q, uint64_t index)
{
    uint64_t top = top_cluster(q), entries = q->reftable_entries * 2, clusters, blocks = 0;
    uint64_t per_cluster = q->cluster_size / 8, *table;
    uint8_t *raw, header[12];
    int r = 0;

    /* Room for the table and the blocks that count it, at the top. */
    for (;;) {
        clusters = qcow2_div_round_up(entries, per_cluster);
        blocks = qcow2_div_round_up(clusters + 2, q->refblock_entries) + 1;
        uint64_t need = (top + clusters + blocks) / q->refblock_entries + 1;
        if (index + 1 > need)
            need = index + 1;
        if (entries >= need)
            break;
        entries = need;
    }
    entries = clusters * per_cluster;
    table = calloc(entries, sizeof(uint64_t));
    raw = calloc(clusters, q->cluster_size);
    if (!table || !raw) {
        free(table);
        free(raw);
        return -ENOMEM;
    }
    memcpy(table, q->reftable, q->reftable_entries * sizeof(uint64_t));
    /* Blocks for the new table's clusters go right after it, and blocks
     * for those blocks after them. */
    uint64_t cursor = top + clusters;
    for (uint64_t c = top; r == 0 && c < cursor; c++) {
        uint64_t i = c / q->refblock_entries;
        if (!table[i]) {
            table[i] = cursor << q->cluster_bits;
            r = new_refblock(q, cursor, false);
            cursor++;
        }
    }
    /* Count the table and the new blocks: blocks that existed before go
     * through the normal path, new ones are only in the new table. */
    for (uint64_t c = top; r == 0 && c < cursor; c++) {
        uint64_t i = c / q->refblock_entries, off = table[i], start, len;
        uint8_t *block;
        if (i < q->reftable_entries && q->reftable[i]) {
            r = qcow2_refcount_update(q, c << q->cluster_bits, q->cluster_size, +1);
            continue;
        }
        r = qcow2_cache_get(q, &q->refblock_cache, off, &block);
        if (r < 0)
            break;
        entry_set(block, c % q->refblock_entries, q->refcount_order, 1);
        entry_bytes(q->refcount_order, c % q->refblock_entries, c % q->refblock_entries, &start,
                    &len);
        r = qcow2_pwrite(q, block + start, len, off + start);
    }
    for (uint64_t i = 0; i < entries; i++)
        put_be(raw + 8 * i, table[i], 8);
    if (r == 0)
        r = qcow2_pwrite(q, raw, clusters * q->cluster_size, top << q->cluster_bits);
    if (r == 0)
        r = disk_barrier(q->disk);
    put_be(header, top << q->cluster_bits, 8);
    put_be(header + 8, clusters, 4);
    if (r == 0)
        r = qcow2_pwrite(q, header, 12, 48);
    if (r == 0)
        r = disk_barrier(q->disk);
    free(raw);
    if (r < 0) {
        free(table);
        return err_set(-r, "grow the refcount table");
    }
    uint64_t old = q->reftable_offset, old_clusters = q->reftable_clusters;
    free(q->reftable);
    q->reftable = table;
    q->reftable_entries = entries;
    q->reftable_offset = top << q->cluster_bits;
    q->reftable_clusters = (uint32_t)clusters;
    if (q->free_hint < cursor)
        q->free_hint = cursor;
    return old_clusters ? qcow2_free_later(q, old, old_clusters * q->cluster_size) : 0;
}

/* Puts n more free clusters into the pool, their refcounts set and synced. */
static int refill(struct qcow2 *q, uint64_t n)
{
    uint64_t c = q->free_hint, run_start = 0, run = 0;
    int r = 0;

    while (r == 0 && n > 0) {
        uint64_t index = c / q->refblock_entries, count;
        if (index >= q->reftable_entries) {
            r = grow_reftable(q, index);
            c = q->free_hint > c ? q->free_hint : c;
            continue;
        }
        if (!q->reftable[index]) {
            /* The block goes to the first free cluster it covers: c. */
            r = new_refblock(q, c, true);
            if (r == 0)
                r = qcow2_write_table_entry(q, q->reftable_offset, q->reftable, index,
                                            c << q->cluster_bits);
            c++;
            continue;
        }
        r = qcow2_refcount_get(q, c, &count);
        if (r == 0 && count == 0) {
            if (run && run_start + run != c) {
                r = qcow2_refcount_update(q, run_start << q->cluster_bits,
                                          run << q->cluster_bits, +1);
                run = 0;
            }
            if (!run)
                run_start = c;
            run++;
            q->pool[q->pool_count++] = c;
            n--;
        }
        c++;
    }
    if (r == 0 && run)
        r = qcow2_refcount_update(q, run_start << q->cluster_bits, run << q->cluster_bits, +1);
    q->free_hint = c;
    if (r == 0 && disk_barrier(q->disk) < 0)
        r = err_set(errno, "sync");
    return r;
}

int qcow2_alloc(struct qcow2 *q, uint64_t want, uint64_t *offset, uint64_t *got)
{
    uint64_t n = 1;
    int r;

    if (q->pool_count < want || q->pool_count == 0) {
        uint64_t fill = REFILL_BYTES >> q->cluster_bits;
        if (fill < REFILL_MIN)
            fill = REFILL_MIN;
        if (fill < want)
            fill = want;
        if (fill > QCOW2_POOL_MAX - q->pool_count)
            fill = QCOW2_POOL_MAX - q->pool_count;
        r = refill(q, fill);
        if (r < 0)
            return r;
    }
    while (n < want && n < q->pool_count && q->pool[n] == q->pool[0] + n)
        n++;
    *offset = q->pool[0] << q->cluster_bits;
    *got = n;
    q->pool_count -= (unsigned)n;
    memmove(q->pool, q->pool + n, q->pool_count * sizeof(q->pool[0]));
    return 0;
}

int qcow2_free_later(struct qcow2 *q, uint64_t offset, uint64_t len)
{
    uint64_t first = offset >> q->cluster_bits;
    uint64_t end = (offset + len + q->cluster_size - 1) >> q->cluster_bits;

    if (q->pending_count == QCOW2_PENDING_MAX) {
        int r = qcow2_sync(q);
        if (r < 0)
            return r;
    }
    q->pending_free[q->pending_count].cluster = first;
    q->pending_free[q->pending_count].count = end - first;
    q->pending_count++;
    return 0;
}

/* Gives the space of clusters nobody uses any more back to the host. */
static void punch_unused(struct qcow2 *q, uint64_t first, uint64_t count)
{
    for (uint64_t c = first; c < first + count; c++) {
        uint64_t refs;
        if (qcow2_refcount_get(q, c, &refs) == 0 && refs == 0) {
            fallocate(q->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(c << q->cluster_bits), (off_t)q->cluster_size);
            if (c < q->free_hint)
                q->free_hint = c;
        }
    }
}

int qcow2_sync(struct qcow2 *q)
{
    int r = 0;

    if (disk_barrier(q->disk) < 0)
        return err_set(errno, "sync");
    for (unsigned i = 0; r == 0 && i < q->pending_count; i++) {
        uint64_t first = q->pending_free[i].cluster, count = q->pending_free[i].count;
        r = qcow2_refcount_update(q, first << q->cluster_bits, count << q->cluster_bits, -1);
        if (r == 0)
            punch_unused(q, first, count);
    }
    q->pending_count = 0;
    return r;
}

int qcow2_release_pool(struct qcow2 *q)
{
    int r = 0;
    for (unsigned i = 0; r == 0 && i < q->pool_count; i++)
        r = qcow2_refcount_update(q, q->pool[i] << q->cluster_bits, q->cluster_size, -1);
    q->pool_count = 0;
    return r;
}

int qcow2_refcount_set(struct qcow2 *q, uint64_t cluster, uint64_t value)
{
    uint64_t offset, start, len, index = cluster % q->refblock_entries;
    uint8_t *block;
    int r = refblock(q, cluster, &block, &offset);

    if (r < 0)
        return r;
    if (!block || value > max_refcount(q))
        return -ENOSPC;
    entry_set(block, index, q->refcount_order, value);
    entry_bytes(q->refcount_order, index, index, &start, &len);
    r = qcow2_pwrite(q, block + start, len, offset + start);
    if (r < 0)
        qcow2_cache_drop(q, &q->refblock_cache, offset);
    return r;
}

int qcow2_alloc_run(struct qcow2 *q, uint64_t n, uint64_t *offset)
{
    for (;;) {
        uint64_t c = top_cluster(q), missing = UINT64_MAX;
        uint64_t first = c / q->refblock_entries, last = (c + n - 1) / q->refblock_entries;
        int r;

        if (last >= q->reftable_entries) {
            r = grow_reftable(q, last);
            if (r < 0)
                return r;
            continue;
        }
        for (uint64_t i = first; i <= last && missing == UINT64_MAX; i++)
            if (!q->reftable[i])
                missing = i;
        if (missing == UINT64_MAX) {
            r = qcow2_refcount_update(q, c << q->cluster_bits, n << q->cluster_bits, +1);
            if (r == 0)
                r = disk_barrier(q->disk);
            if (r == 0) {
                *offset = c << q->cluster_bits;
                /* The run is in the file from now on, so the next one
                 * goes after it even before it is written. */
                uint64_t end = (c + n) << q->cluster_bits;
                if (end > q->file_size && ftruncate(q->fd, (off_t)end) == 0)
                    q->file_size = end;
            }
            return r;
        }
        /* A block covering itself: at the first cluster of its range, or
         * here if that is behind us. */
        uint64_t at = missing * q->refblock_entries > c ? missing * q->refblock_entries : c;
        r = new_refblock(q, at, true);
        if (r == 0)
            r = qcow2_write_table_entry(q, q->reftable_offset, q->reftable, missing,
                                        at << q->cluster_bits);
        if (r < 0)
            return r;
    }
}
