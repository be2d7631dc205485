/* Changes to a qcow2 image as a whole: its virtual size (growing the L1
 * table into new clusters when it must), its backing file (the header
 * cluster rewritten with every other extension kept), emptying it into
 * its backing file's view (after a commit). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk/qcow2.h"
#include "util/be.h"
#include "util/err.h"

static int synced(struct qcow2 *q, int r)
{
    if (r == 0)
        r = disk_barrier(q->disk);
    return r;
}

/* A larger L1 table in new clusters, switched to with one header write. */
static int grow_l1(struct qcow2 *q, uint32_t entries)
{
    uint64_t bytes = (uint64_t)entries * 8, at, old = q->l1_offset, old_size = q->l1_size;
    uint64_t *l1 = calloc(entries, 8);
    uint8_t *raw = calloc(1, bytes), header[12];
    int r = l1 && raw ? 0 : -ENOMEM;

    if (r == 0)
        r = qcow2_alloc_run(q, qcow2_div_round_up(bytes, q->cluster_size), &at);
    for (uint32_t i = 0; r == 0 && i < entries; i++) {
        l1[i] = i < q->l1_size ? q->l1[i] : 0;
        put_be(raw + 8 * i, l1[i], 8);
    }
    if (r == 0)
        r = synced(q, qcow2_pwrite(q, raw, bytes, at));
    put_be(header, entries, 4);
    put_be(header + 4, at, 8);
    if (r == 0)
        r = synced(q, qcow2_pwrite(q, header, sizeof(header), 36));
    free(raw);
    if (r < 0) {
        free(l1);
        return err_set(-r, "grow the L1 table");
    }
    free(q->l1);
    q->l1 = l1;
    q->l1_size = entries;
    q->l1_offset = at;
    return old_size ? qcow2_free_later(q, old, old_size * 8) : 0;
}

int qcow2_resize(struct disk *d, uint64_t size)
{
    struct qcow2 *q = d->priv;
    uint64_t per_l2 = q->l2_entries * q->cluster_size, needed = qcow2_div_round_up(size, per_l2);
    uint8_t b[8];
    int r = 0;

    if (q->snapshot_count)
        return err_plain(ENOTSUP, "cannot resize an image that has internal snapshots");
    if (needed * 8 > (32u << 20))
        return err_plain(EFBIG, "size too large for this cluster size");
    if (size < d->size) { /* what falls off the end is dropped first */
        uint64_t from = qcow2_div_round_up(size, q->cluster_size) * q->cluster_size;
        if (from < d->size)
            r = qcow2_set_clusters(q, from, d->size - from, 0);
    }
    pthread_mutex_lock(&q->lock);
    if (r == 0 && needed > q->l1_size)
        r = grow_l1(q, (uint32_t)needed);
    put_be(b, size, 8);
    if (r == 0)
        r = synced(q, qcow2_pwrite(q, b, 8, 24));
    if (r == 0)
        d->size = size;
    if (r == 0)
        r = qcow2_sync(q);
    pthread_mutex_unlock(&q->lock);
    return r;
}

/* Appends an extension at off; returns the new end. */
static size_t put_extension(uint8_t *h, size_t off, uint32_t type, const void *data, size_t len)
{
    put_be(h + off, type, 4);
    put_be(h + off + 4, len, 4);
    memcpy(h + off + 8, data, len);
    memset(h + off + 8 + len, 0, ((len + 7) & ~(size_t)7) - len);
    return off + 8 + ((len + 7) & ~(size_t)7);
}

int qcow2_set_backing(struct disk *d, const char *name, const char *format)
{
    struct qcow2 *q = d->priv;

    if (name && !*name)
        name = NULL;
    size_t cs = q->cluster_size, name_len = name ? strlen(name) : 0, in, out;
    uint8_t *old = malloc(cs), *h = calloc(1, cs);
    uint64_t old_end;
    int r = old && h ? qcow2_pread(q, old, cs, 0) : -ENOMEM;

    if (r < 0)
        goto out;
    old_end = be64(old + 8) ? be64(old + 8) + be32(old + 16) : q->header_length;
    memcpy(h, old, q->header_length);
    in = out = q->header_length;
    /* Every extension but the backing format, as it was. */
    while (in + 8 <= (be64(old + 8) ? be64(old + 8) : cs)) {
        uint32_t type = be32(old + in), len = be32(old + in + 4);
        if (type == QCOW2_EXT_END || len > cs - in - 8)
            break;
        if (type != QCOW2_EXT_BACKING_FORMAT) {
            if (out + 16 + len > cs) {
                r = err_plain(ENOSPC, "header extensions do not fit");
                goto out;
            }
            out = put_extension(h, out, type, old + in + 8, len);
        }
        in += 8 + ((len + 7) & ~7u);
        if (in > old_end)
            old_end = in;
    }
    if (name && format)
        out = put_extension(h, out, QCOW2_EXT_BACKING_FORMAT, format, strlen(format));
    out = put_extension(h, out, QCOW2_EXT_END, "", 0);
    if (name_len > 1023 || out + name_len > cs) {
        r = err_plain(ENAMETOOLONG, "backing file name too long for the header");
        goto out;
    }
    put_be(h + 8, name ? out : 0, 8);
    put_be(h + 16, name_len, 4);
    if (name) /* none: the image stands alone (memcpy from NULL is undefined) */
        memcpy(h + out, name, name_len);
    out += name_len;
    pthread_mutex_lock(&q->lock);
    r = synced(q, qcow2_pwrite(q, h, out > old_end ? out : old_end, 0));
    pthread_mutex_unlock(&q->lock);
    if (r < 0)
        goto out;
    free(q->backing_name);
    free(q->backing_format);
    q->backing_name = name ? strdup(name) : NULL;
    q->backing_format = name && format ? strdup(format) : NULL;
out:
    free(old);
    free(h);
    return r;
}

int qcow2_make_empty(struct disk *d)
{
    struct qcow2 *q = d->priv;
    int r = qcow2_set_clusters(q, 0, d->size, 0);

    pthread_mutex_lock(&q->lock);
    if (r == 0)
        r = qcow2_sync(q);
    pthread_mutex_unlock(&q->lock);
    return r;
}
