/* QCOW2 images: opening (header, extensions, L1), the guest-to-host
 * mapping through L1 and L2 tables, reads (plain, zero, compressed,
 * backing, subclusters) and writes (allocation, copy-on-write of shared
 * clusters and of clusters backed by the backing file).
 *
 * Ordering for crash safety: a new cluster's refcount is on disk and
 * synced before anything points to it (qcow2_alloc's pool); data is
 * written before the L2 entry that points to it, and an L2 table before
 * the L1 entry; a cluster another table stopped using is unreferenced only
 * after that table change is synced (qcow2_free_later). A crash can leak
 * clusters, not corrupt the image. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/fileio.h"
#include "disk/qcow2.h"
#include "disk/qcow2_compress.h"
#include "util/be.h"
#include "util/err.h"
#include "util/iov.h"

#define MAX_L1_BYTES (32u << 20)      /* as QEMU: bounds a hostile l1_size */
#define MAX_REFTABLE_BYTES (8u << 20)
#define MAX_SNAPSHOTS 65536u
#define IOV_PIECES 1024

int qcow2_corrupt(struct qcow2 *q, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    q->broken = true;
    if (!disk_quiet) /* a running VM's only word of it */
        fprintf(stderr, "smolvm: qcow2 '%s' is corrupt: %s\n", q->disk->path, msg);
    return err_plain(EIO, "qcow2 '%s' is corrupt: %s", q->disk->path, msg);
}

int qcow2_pread(struct qcow2 *q, void *buf, size_t len, uint64_t offset)
{
    return disk_pread_all(q->fd, buf, len, offset);
}

static void grew(struct qcow2 *q, uint64_t end)
{
    if (end > q->file_size)
        q->file_size = end;
}

int qcow2_pwrite(struct qcow2 *q, const void *buf, size_t len, uint64_t offset)
{
    int r = disk_pwrite_all(q->fd, buf, len, offset);
    if (r == 0)
        grew(q, offset + len);
    return r;
}

/* The iovec slice [skip, skip+len) from or to the file at offset. */
static int file_iov(struct qcow2 *q, const struct iovec *iov, int n, uint64_t skip, uint64_t len,
                    uint64_t offset, bool write)
{
    int r = disk_iov_io(q->fd, iov, n, skip, len, offset, write);
    if (r == 0 && write)
        grew(q, offset + len);
    return r;
}

/* ---- metadata cache ---- */

int qcow2_cache_init(struct qcow2_cache *c, uint64_t table_size)
{
    memset(c, 0, sizeof(*c));
    c->tables = malloc(QCOW2_CACHE_SLOTS * table_size);
    return c->tables ? 0 : -ENOMEM;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
    free(c->tables);
    c->tables = NULL;
}

int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t offset, uint8_t **table)
{
    unsigned victim = 0;
    int r;

    for (unsigned i = 0; i < QCOW2_CACHE_SLOTS; i++) {
        if (c->offset[i] == offset) {
            c->used[i] = ++c->tick;
            *table = c->tables + i * q->cluster_size;
            return 0;
        }
        if (c->used[i] < c->used[victim])
            victim = i;
    }
    if (offset == 0 || (offset & (q->cluster_size - 1)))
        return qcow2_corrupt(q, "table at unaligned offset 0x%llx", (unsigned long long)offset);
    *table = c->tables + victim * q->cluster_size;
    c->offset[victim] = 0;
    r = qcow2_pread(q, *table, q->cluster_size, offset);
    if (r < 0)
        return err_set(-r, "read qcow2 table");
    c->offset[victim] = offset;
    c->used[victim] = ++c->tick;
    return 0;
}

void qcow2_cache_drop(struct qcow2 *q, struct qcow2_cache *c, uint64_t offset)
{
    (void)q;
    for (unsigned i = 0; i < QCOW2_CACHE_SLOTS; i++)
        if (c->offset[i] == offset)
            c->offset[i] = 0, c->used[i] = 0;
}

/* ---- header ---- */

static int qcow2_probe(const uint8_t *head, size_t len)
{
    return len >= 8 && be32(head) == QCOW2_MAGIC && (be32(head + 4) == 2 || be32(head + 4) == 3);
}

int qcow2_write_incompatible(struct qcow2 *q, uint64_t bits)
{
    uint8_t b[8];
    if (q->version < 3)
        return 0;
    put_be(b, bits, 8);
    int r = qcow2_pwrite(q, b, 8, 72);
    if (r == 0)
        q->incompatible = bits;
    return r;
}

static const char *feature_name(const uint8_t *table, size_t len, unsigned type, unsigned bit)
{
    static char name[47];
    for (size_t off = 0; off + 48 <= len; off += 48)
        if (table && table[off] == type && table[off + 1] == bit) {
            memcpy(name, table + off + 2, 46);
            name[46] = 0;
            return name;
        }
    return "unknown";
}

/* Header extensions: the backing format and the feature names. */
static int read_extensions(struct qcow2 *q, const uint8_t *cluster, size_t end,
                           const uint8_t **features, size_t *features_len)
{
    size_t off = q->header_length;
    while (off + 8 <= end) {
        uint32_t type = be32(cluster + off), len = be32(cluster + off + 4);
        off += 8;
        if (type == QCOW2_EXT_END)
            return 0;
        if (len > end - off)
            return err_plain(EINVAL, "header extension 0x%x runs past the first cluster", type);
        if (type == QCOW2_EXT_BACKING_FORMAT) {
            q->backing_format = strndup((const char *)cluster + off, len);
            if (!q->backing_format)
                return -ENOMEM;
        } else if (type == QCOW2_EXT_FEATURE_TABLE) {
            *features = cluster + off;
            *features_len = len;
        }
        off += (len + 7) & ~7u;
    }
    return 0;
}

static int check_incompatible(struct qcow2 *q, const uint8_t *features, size_t features_len)
{
    const uint64_t known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |
                           QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2;
    uint64_t unknown = q->incompatible & ~known;

    if (q->incompatible & QCOW2_INCOMPAT_DATA_FILE)
        return err_plain(ENOTSUP, "images with an external data file are not supported");
    if (unknown) {
        unsigned bit = (unsigned)__builtin_ctzll(unknown);
        return err_plain(ENOTSUP, "unsupported incompatible feature bit %u (%s)", bit,
                         feature_name(features, features_len, 0, bit));
    }
    if (q->disk->flags & DISK_CHECKING)
        return 0;
    if ((q->incompatible & QCOW2_INCOMPAT_CORRUPT) && !q->disk->read_only)
        return err_plain(EROFS, "image is marked corrupt: open it read-only, or repair it");
    if ((q->incompatible & QCOW2_INCOMPAT_DIRTY) && !q->disk->read_only)
        return err_plain(EROFS, "image was not closed cleanly (lazy refcounts): "
                                "repair it with 'smolvm disk check -r all' first");
    if ((q->incompatible & QCOW2_INCOMPAT_EXTL2) && !q->disk->read_only)
        return err_plain(EROFS, "images with extended L2 entries are read-only here");
    return 0;
}

static int parse_header(struct qcow2 *q, const uint8_t *h, const uint8_t **features,
                        size_t *features_len)
{
    uint64_t backing_offset = be64(h + 8);
    uint32_t backing_len = be32(h + 16);
    uint64_t size;

    q->version = be32(h + 4);
    q->cluster_bits = be32(h + 20);
    if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS || q->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return err_plain(EINVAL, "cluster size 2^%u is outside 512 B .. 2 MiB", q->cluster_bits);
    q->cluster_size = 1ull << q->cluster_bits;
    q->disk->cluster_size = (uint32_t)q->cluster_size;
    size = be64(h + 24);
    if (be32(h + 32) != 0)
        return err_plain(ENOTSUP, "encrypted images are not supported");
    q->l1_size = be32(h + 36);
    q->l1_offset = be64(h + 40);
    q->reftable_offset = be64(h + 48);
    q->reftable_clusters = be32(h + 56);
    q->snapshot_count = be32(h + 60);
    q->snapshots_offset = be64(h + 64);
    q->refcount_order = 4;
    q->header_length = QCOW2_V2_HEADER;
    if (q->version >= 3) {
        q->incompatible = be64(h + 72);
        q->compatible = be64(h + 80);
        q->autoclear = be64(h + 88);
        q->refcount_order = be32(h + 96);
        q->header_length = be32(h + 100);
        if (q->header_length < QCOW2_V3_HEADER || q->header_length > q->cluster_size)
            return err_plain(EINVAL, "header length %u is invalid", q->header_length);
        if (q->header_length > QCOW2_V3_HEADER)
            q->compression_type = h[104];
    }
    if (q->refcount_order > 6)
        return err_plain(EINVAL, "refcount order %u is above 6", q->refcount_order);
    if ((q->compression_type != 0) != !!(q->incompatible & QCOW2_INCOMPAT_COMPRESSION) ||
        q->compression_type > QCOW2_COMPRESSION_ZSTD)
        return err_plain(EINVAL, "compression type %u is invalid", q->compression_type);
    q->l2_entry_bytes = (q->incompatible & QCOW2_INCOMPAT_EXTL2) ? 16 : 8;
    if ((q->incompatible & QCOW2_INCOMPAT_EXTL2) && q->cluster_bits < 14)
        return err_plain(EINVAL, "extended L2 entries need clusters of 16 KiB or more");
    q->l2_entries = q->cluster_size / q->l2_entry_bytes;
    if ((uint64_t)q->l1_size * 8 > MAX_L1_BYTES)
        return err_plain(EFBIG, "L1 table of %u entries is too large", q->l1_size);
    /* The L1 table must cover the virtual size. */
    if (size > (uint64_t)q->l1_size * q->l2_entries * q->cluster_size)
        return err_plain(EINVAL, "L1 table too small for the virtual size");
    q->disk->size = size;
    if ((uint64_t)q->reftable_clusters * q->cluster_size > MAX_REFTABLE_BYTES)
        return err_plain(EFBIG, "refcount table of %u clusters is too large", q->reftable_clusters);
    if (q->snapshot_count > MAX_SNAPSHOTS)
        return err_plain(EINVAL, "%u snapshots is too many", q->snapshot_count);
    if (backing_offset) {
        if (backing_len == 0 || backing_len > 1023 || backing_offset >= q->cluster_size ||
            backing_len > q->cluster_size - backing_offset)
            return err_plain(EINVAL, "backing file name is outside the first cluster");
        q->backing_name = strndup((const char *)h + backing_offset, backing_len);
        if (!q->backing_name)
            return -ENOMEM;
    }
    size_t ext_end = backing_offset ? backing_offset : q->cluster_size;
    if (read_extensions(q, h, ext_end, features, features_len) < 0)
        return -EINVAL;
    return check_incompatible(q, *features, *features_len);
}

static int check_table(struct qcow2 *q, const char *what, uint64_t offset, uint64_t bytes)
{
    if (bytes == 0)
        return 0;
    if (offset & (q->cluster_size - 1))
        return err_plain(EINVAL, "%s at unaligned offset 0x%llx", what, (unsigned long long)offset);
    if (offset > q->file_size || bytes > q->file_size - offset)
        return err_plain(EINVAL, "%s runs past the end of the file", what);
    return 0;
}

static int load_l1(struct qcow2 *q)
{
    size_t bytes = (size_t)q->l1_size * 8;
    uint8_t *raw;
    int r = check_table(q, "L1 table", q->l1_offset, bytes);

    if (r < 0)
        return r;
    q->l1 = calloc(q->l1_size ? q->l1_size : 1, sizeof(uint64_t));
    raw = malloc(bytes ? bytes : 1);
    if (!q->l1 || !raw) {
        free(raw);
        return -ENOMEM;
    }
    r = qcow2_pread(q, raw, bytes, q->l1_offset);
    for (uint32_t i = 0; r == 0 && i < q->l1_size; i++)
        q->l1[i] = be64(raw + 8 * i);
    free(raw);
    return r < 0 ? err_set(-r, "read L1 table") : 0;
}

static void qcow2_free(struct qcow2 *q)
{
    free(q->inflated);
    qcow2_cache_free(&q->l2_cache);
    qcow2_cache_free(&q->refblock_cache);
    free(q->l1);
    free(q->reftable);
    free(q->backing_name);
    free(q->backing_format);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

static int qcow2_open(struct disk *d)
{
    struct qcow2 *q = calloc(1, sizeof(*q));
    const uint8_t *features = NULL;
    size_t features_len = 0;
    uint8_t *head = NULL;
    struct stat st;
    int r;

    if (!q)
        return -ENOMEM;
    pthread_mutex_init(&q->lock, NULL);
    q->disk = d;
    q->fd = d->fd;
    d->priv = q;
    if (fstat(d->fd, &st) < 0) {
        r = err_set(errno, "stat");
        goto fail;
    }
    q->file_size = (uint64_t)st.st_size;
    head = calloc(1, 1u << QCOW2_MAX_CLUSTER_BITS);
    if (!head) {
        r = -ENOMEM;
        goto fail;
    }
    r = qcow2_pread(q, head, QCOW2_V2_HEADER, 0);
    if (r == 0 && be32(head + 20) >= QCOW2_MIN_CLUSTER_BITS &&
        be32(head + 20) <= QCOW2_MAX_CLUSTER_BITS)
        r = qcow2_pread(q, head, 1u << be32(head + 20), 0);
    if (r < 0) {
        r = err_set(-r, "read header");
        goto fail;
    }
    r = parse_header(q, head, &features, &features_len);
    if (r < 0)
        goto fail;
    r = check_table(q, "refcount table", q->reftable_offset,
                    (uint64_t)q->reftable_clusters * q->cluster_size);
    if (r == 0)
        r = load_l1(q);
    if (r == 0 && (qcow2_cache_init(&q->l2_cache, q->cluster_size) < 0 ||
                   qcow2_cache_init(&q->refblock_cache, q->cluster_size) < 0))
        r = -ENOMEM;
    if (r == 0)
        r = qcow2_refcount_open(q);
    if (r == 0 && q->backing_name)
        r = disk_open_backing(d, q->backing_name, q->backing_format);
    if (r < 0)
        goto fail;
    free(head);
    return 0;
fail:
    free(head);
    qcow2_free(q);
    d->priv = NULL;
    return r < 0 ? r : -EINVAL;
}

static void qcow2_close(struct disk *d)
{
    struct qcow2 *q = d->priv;
    if (!q)
        return;
    if (!d->read_only && !q->broken) {
        if (qcow2_sync(q) < 0 || qcow2_release_pool(q) < 0 || disk_barrier(d) < 0)
            fprintf(stderr, "smolvm: qcow2 '%s': closing: %s\n", d->path, err_msg());
    }
    qcow2_free(q);
}

/* ---- mapping ---- */

struct mapping {
    enum disk_extent_kind kind;
    bool compressed;
    bool copied;   /* DATA: refcount 1, writable in place */
    uint64_t host; /* DATA: host offset of the first byte */
    uint64_t length;
    uint64_t entry; /* the L2 entry of the first cluster */
};

/* The L2 table for guest cluster gc, or NULL when not allocated. */
static int l2_table(struct qcow2 *q, uint64_t gc, uint8_t **table)
{
    uint64_t l1_index = gc / q->l2_entries;
    uint64_t l2_offset;

    if (l1_index >= q->l1_size) {
        *table = NULL;
        return 0;
    }
    l2_offset = q->l1[l1_index] & QCOW2_OFFSET_MASK;
    if (!l2_offset) {
        *table = NULL;
        return 0;
    }
    return qcow2_cache_get(q, &q->l2_cache, l2_offset, table);
}

/* Classifies [in_cluster, in_cluster+*len) of the cluster whose L2 entry
 * is at e (standard or extended), shortening *len to where the kind changes. */
static int classify(struct qcow2 *q, const uint8_t *e, uint64_t in_cluster, uint64_t *len,
                    struct mapping *m)
{
    uint64_t entry = be64(e);
    uint64_t host = entry & QCOW2_OFFSET_MASK;

    m->entry = entry;
    m->compressed = entry & QCOW2_OFLAG_COMPRESSED;
    m->copied = entry & QCOW2_OFLAG_COPIED;
    if (m->compressed) {
        m->kind = DISK_EXTENT_DATA;
        m->copied = false;
        return 0;
    }
    if (host & (q->cluster_size - 1))
        return qcow2_corrupt(q, "L2 entry 0x%llx points to an unaligned cluster",
                             (unsigned long long)entry);
    if (q->l2_entry_bytes == 16) {
        uint64_t bitmap = be64(e + 8), sub = q->cluster_size / 32;
        unsigned s = (unsigned)(in_cluster / sub);
        if ((bitmap & 0xffffffffu) & (bitmap >> 32))
            return qcow2_corrupt(q, "subcluster both allocated and zero");
        bool alloc = bitmap >> s & 1, zero = bitmap >> (32 + s) & 1;
        unsigned t = s + 1;
        while (t < 32 && (bitmap >> t & 1) == alloc && (bitmap >> (32 + t) & 1) == zero)
            t++;
        if ((uint64_t)t * sub - in_cluster < *len)
            *len = (uint64_t)t * sub - in_cluster;
        m->kind = alloc ? DISK_EXTENT_DATA : zero ? DISK_EXTENT_ZERO : DISK_EXTENT_UNALLOCATED;
        if (alloc && !host)
            return qcow2_corrupt(q, "allocated subcluster without a cluster");
        m->host = host + in_cluster;
        return 0;
    }
    if (q->version >= 3 && (entry & QCOW2_OFLAG_ZERO))
        m->kind = DISK_EXTENT_ZERO;
    else
        m->kind = host ? DISK_EXTENT_DATA : DISK_EXTENT_UNALLOCATED;
    m->host = host + in_cluster;
    return 0;
}

/* The mapping of guest offset, covering as many following bytes (up to
 * len) as map the same way: same kind, and for data contiguous on the host
 * with the same COPIED flag. Compressed clusters come one at a time. */
static int lookup(struct qcow2 *q, uint64_t offset, uint64_t len, struct mapping *m)
{
    uint64_t gc = offset >> q->cluster_bits;
    uint64_t in_cluster = offset & (q->cluster_size - 1);
    uint64_t index = gc % q->l2_entries, piece;
    uint8_t *table;
    int r = l2_table(q, gc, &table);

    if (r < 0)
        return r;
    piece = q->cluster_size - in_cluster;
    if (piece > len)
        piece = len;
    if (!table) {
        /* The whole L2 range is unallocated. */
        uint64_t rest = (q->l2_entries - index) * q->cluster_size - in_cluster;
        *m = (struct mapping){.kind = DISK_EXTENT_UNALLOCATED, .length = rest < len ? rest : len};
        return 0;
    }
    r = classify(q, table + index * q->l2_entry_bytes, in_cluster, &piece, m);
    if (r < 0)
        return r;
    m->length = piece;
    if (m->compressed || piece < q->cluster_size - in_cluster)
        return 0;
    while (m->length < len && ++index < q->l2_entries) {
        struct mapping next;
        uint64_t want = len - m->length < q->cluster_size ? len - m->length : q->cluster_size;
        r = classify(q, table + index * q->l2_entry_bytes, 0, &want, &next);
        if (r < 0)
            return r;
        if (next.kind != m->kind || next.compressed ||
            (m->kind == DISK_EXTENT_DATA &&
             (next.host != m->host + m->length || next.copied != m->copied)))
            break;
        m->length += want;
        if (want < q->cluster_size)
            break;
    }
    return 0;
}

/* ---- reads ---- */

void qcow2_compressed_range(const struct qcow2 *q, uint64_t entry, uint64_t *start,
                            uint64_t *len)
{
    unsigned shift = 62 - (q->cluster_bits - 8);
    uint64_t sectors = ((entry & ~QCOW2_OFLAG_COPIED & ~QCOW2_OFLAG_COMPRESSED) >> shift) + 1;
    *start = entry & ((1ull << shift) - 1);
    *len = sectors * 512 - (*start & 511);
}

/* Inflates the compressed cluster whose L2 entry is entry into out. */
static int read_compressed(struct qcow2 *q, uint64_t entry, uint8_t *out)
{
    uint64_t host, len;
    uint8_t *in;
    int r;

    qcow2_compressed_range(q, entry, &host, &len);
    if (len > 2 * q->cluster_size || host >= q->file_size)
        return qcow2_corrupt(q, "compressed cluster at 0x%llx is invalid",
                             (unsigned long long)host);
    in = malloc(len);
    if (!in)
        return -ENOMEM;
    r = qcow2_pread(q, in, len, host);
    if (r == 0 && qcow2_decompress(q->compression_type, in, len, out, q->cluster_size) < 0)
        r = err_plain(EIO, "compressed cluster at 0x%llx does not inflate",
                      (unsigned long long)host);
    free(in);
    return r;
}

static int read_mapped(struct qcow2 *q, const struct mapping *m, const struct iovec *iov, int n,
                       uint64_t skip, uint64_t offset)
{
    struct iovec piece[IOV_PIECES];
    int count;

    switch (m->kind) {
    case DISK_EXTENT_ZERO:
        iov_zero(iov, n, skip, m->length);
        return 0;
    case DISK_EXTENT_UNALLOCATED:
        count = iov_slice(iov, n, skip, m->length, piece, IOV_PIECES);
        return count < 0 ? -EINVAL : disk_read_backing(q->disk, piece, count, offset);
    case DISK_EXTENT_DATA:
        break;
    }
    if (!m->compressed)
        return file_iov(q, iov, n, skip, m->length, m->host, false);
    /* The last cluster inflated is kept: reads smaller than a cluster
     * would otherwise inflate it again for every piece. */
    int r = 0;
    pthread_mutex_lock(&q->lock);
    if (!q->inflated)
        q->inflated = malloc(q->cluster_size);
    if (!q->inflated)
        r = -ENOMEM;
    else if (q->inflated_entry != m->entry) {
        q->inflated_entry = 0;
        r = read_compressed(q, m->entry, q->inflated);
        if (r == 0)
            q->inflated_entry = m->entry;
    }
    if (r == 0)
        iov_from_buf(iov, n, skip, q->inflated + (offset & (q->cluster_size - 1)), m->length);
    pthread_mutex_unlock(&q->lock);
    return r;
}

static ssize_t qcow2_preadv(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    struct qcow2 *q = d->priv;
    uint64_t len = iov_bytes(iov, n), done = 0;

    while (done < len) {
        struct mapping m;
        pthread_mutex_lock(&q->lock);
        int r = lookup(q, offset + done, len - done, &m);
        pthread_mutex_unlock(&q->lock);
        if (r == 0)
            r = read_mapped(q, &m, iov, n, done, offset + done);
        if (r < 0)
            return r;
        done += m.length;
    }
    return (ssize_t)done;
}

static int qcow2_status(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out)
{
    struct qcow2 *q = d->priv;
    struct mapping m;

    pthread_mutex_lock(&q->lock);
    int r = lookup(q, offset, len, &m);
    pthread_mutex_unlock(&q->lock);
    if (r < 0)
        return r;
    *out = (struct disk_extent){m.kind, m.length,
                                m.kind == DISK_EXTENT_DATA && !m.compressed ? m.host : UINT64_MAX};
    return 0;
}

/* ---- L2 updates ---- */

/* Drops the references an L2 entry held. */
static int release_entry(struct qcow2 *q, uint64_t entry)
{
    uint64_t start, len;
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        qcow2_compressed_range(q, entry, &start, &len);
        return qcow2_free_later(q, start, len);
    }
    start = entry & QCOW2_OFFSET_MASK;
    return start ? qcow2_free_later(q, start, q->cluster_size) : 0;
}

/* Copies a shared L2 table (an internal snapshot uses it too) so that
 * the active one can change. The clusters it points to already count one
 * reference per L1 table reaching them, so their refcounts stay; they are
 * shared, so the copy's entries lose COPIED. */
static int copy_shared_table(struct qcow2 *q, uint64_t old, uint64_t *fresh)
{
    uint8_t *table, *copy = malloc(q->cluster_size);
    uint64_t got;
    int r;

    if (!copy)
        return -ENOMEM;
    r = qcow2_cache_get(q, &q->l2_cache, old, &table);
    if (r == 0) {
        memcpy(copy, table, q->cluster_size);
        r = qcow2_alloc(q, 1, fresh, &got);
    }
    for (uint64_t i = 0; r == 0 && i < q->l2_entries; i++) {
        uint8_t *e = copy + i * q->l2_entry_bytes;
        put_be(e, be64(e) & ~QCOW2_OFLAG_COPIED, 8);
    }
    if (r == 0)
        r = qcow2_pwrite(q, copy, q->cluster_size, *fresh);
    free(copy);
    return r;
}

int qcow2_write_table_entry(struct qcow2 *q, uint64_t table_offset, uint64_t *table,
                            uint64_t index, uint64_t value)
{
    uint8_t b[8];
    put_be(b, value, 8);
    int r = qcow2_pwrite(q, b, 8, table_offset + index * 8);
    if (r == 0)
        table[index] = value;
    return r;
}

static int write_l1_entry(struct qcow2 *q, uint64_t index, uint64_t entry)
{
    return qcow2_write_table_entry(q, q->l1_offset, q->l1, index, entry);
}

/* The L2 table of guest cluster gc, made private to the active image
 * (allocated, or copied if shared with a snapshot). */
static int writable_l2(struct qcow2 *q, uint64_t gc, uint64_t *l2_offset)
{
    uint64_t index = gc / q->l2_entries, entry = q->l1[index];
    uint64_t old = entry & QCOW2_OFFSET_MASK, fresh = 0, got, count;
    int r;

    if (old && (entry & QCOW2_OFLAG_COPIED)) {
        *l2_offset = old;
        return 0;
    }
    if (old) {
        r = qcow2_refcount_get(q, old >> q->cluster_bits, &count);
        if (r < 0)
            return r;
        if (count == 1) { /* the flag was lost, the table is ours */
            *l2_offset = old;
            return write_l1_entry(q, index, old | QCOW2_OFLAG_COPIED);
        }
        r = copy_shared_table(q, old, &fresh);
    } else {
        uint8_t *zeros = calloc(1, q->cluster_size);
        r = zeros ? qcow2_alloc(q, 1, &fresh, &got) : -ENOMEM;
        if (r == 0)
            r = qcow2_pwrite(q, zeros, q->cluster_size, fresh);
        free(zeros);
    }
    if (r == 0)
        r = write_l1_entry(q, index, fresh | QCOW2_OFLAG_COPIED);
    if (r == 0 && old)
        r = qcow2_free_later(q, old, q->cluster_size);
    *l2_offset = fresh;
    return r;
}

/* Points count guest clusters from gc (within one L2 table) at host
 * clusters from host (0: no cluster; then flags is the entry itself: 0,
 * ZERO, or a compressed cluster's), releasing what they pointed to. */
static int set_entries(struct qcow2 *q, uint64_t gc, uint64_t count, uint64_t host, uint64_t flags)
{
    uint64_t l2_offset, index = gc % q->l2_entries;
    uint64_t old[64];
    uint8_t *table;
    int r = writable_l2(q, gc, &l2_offset);

    q->inflated_entry = 0; /* the bytes behind a dropped entry may be reused */

    if (r == 0)
        r = qcow2_cache_get(q, &q->l2_cache, l2_offset, &table);
    if (r < 0)
        return r;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t entry = host ? (host + (i << q->cluster_bits)) | QCOW2_OFLAG_COPIED : flags;
        old[i] = be64(table + (index + i) * 8);
        put_be(table + (index + i) * 8, entry, 8);
    }
    r = qcow2_pwrite(q, table + index * 8, count * 8, l2_offset + index * 8);
    if (r < 0) {
        qcow2_cache_drop(q, &q->l2_cache, l2_offset);
        return r;
    }
    for (uint64_t i = 0; r == 0 && i < count; i++)
        r = release_entry(q, old[i]);
    return r;
}

/* ---- writes ---- */

/* The content a partly written cluster keeps: its old data, zeros, or the
 * backing file's. */
static int old_content(struct qcow2 *q, const struct mapping *m, uint64_t cluster_offset,
                       uint8_t *buf)
{
    uint64_t len = q->cluster_size;
    struct iovec iov = {buf, 0};

    if (cluster_offset + len > q->disk->size)
        len = q->disk->size - cluster_offset;
    memset(buf, 0, q->cluster_size);
    switch (m->kind) {
    case DISK_EXTENT_ZERO:
        return 0;
    case DISK_EXTENT_UNALLOCATED:
        iov.iov_len = len;
        return q->disk->backing ? disk_read_backing(q->disk, &iov, 1, cluster_offset) : 0;
    case DISK_EXTENT_DATA:
        break;
    }
    if (m->compressed)
        return read_compressed(q, m->entry, buf);
    return qcow2_pread(q, buf, q->cluster_size, m->host - (m->host & (q->cluster_size - 1)));
}

/* Writes [skip, skip+len) of iov at guest offset into fresh clusters;
 * len is whole clusters, or part of one cluster. Called with the lock. */
static int write_fresh(struct qcow2 *q, const struct mapping *m, const struct iovec *iov, int n,
                       uint64_t skip, uint64_t offset, uint64_t len, uint64_t *written)
{
    uint64_t in_cluster = offset & (q->cluster_size - 1), gc = offset >> q->cluster_bits;
    uint64_t whole = in_cluster == 0 ? len >> q->cluster_bits : 0;
    uint64_t room = q->l2_entries - gc % q->l2_entries, host, got;
    int r;

    if (whole > room)
        whole = room;
    if (whole > 64)
        whole = 64;
    r = qcow2_alloc(q, whole ? whole : 1, &host, &got);
    if (r < 0)
        return r;
    if (whole) {
        r = file_iov(q, iov, n, skip, got << q->cluster_bits, host, true);
        *written = got << q->cluster_bits;
    } else {
        uint8_t *buf = malloc(q->cluster_size);
        uint64_t part = q->cluster_size - in_cluster < len ? q->cluster_size - in_cluster : len;
        r = buf ? old_content(q, m, offset - in_cluster, buf) : -ENOMEM;
        if (r == 0) {
            iov_to_buf(iov, n, skip, buf + in_cluster, part);
            r = qcow2_pwrite(q, buf, q->cluster_size, host);
        }
        free(buf);
        *written = part;
        got = 1;
    }
    if (r < 0) {
        qcow2_free_later(q, host, got << q->cluster_bits);
        return r;
    }
    return set_entries(q, gc, got, host, 0);
}

static ssize_t qcow2_pwritev(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    struct qcow2 *q = d->priv;
    uint64_t len = iov_bytes(iov, n), done = 0;

    while (done < len) {
        struct mapping m;
        uint64_t written = 0;
        int r;

        pthread_mutex_lock(&q->lock);
        /* Without its backing file a partial write could not copy the rest
         * of a cluster from it. */
        r = q->broken ? -EIO : q->backing_name && !d->backing ? -EROFS
                                                               : lookup(q, offset + done, len - done, &m);
        if (r == 0 && m.kind == DISK_EXTENT_DATA && m.copied) {
            pthread_mutex_unlock(&q->lock);
            r = file_iov(q, iov, n, done, m.length, m.host, true);
            written = m.length;
        } else {
            if (r == 0)
                r = write_fresh(q, &m, iov, n, done, offset + done,
                                m.length < len - done ? m.length : len - done, &written);
            pthread_mutex_unlock(&q->lock);
        }
        if (r < 0)
            return r;
        done += written;
    }
    return (ssize_t)done;
}

static int qcow2_flush(struct disk *d)
{
    struct qcow2 *q = d->priv;
    pthread_mutex_lock(&q->lock);
    int r = qcow2_sync(q);
    pthread_mutex_unlock(&q->lock);
    return r;
}

int qcow2_set_clusters(struct qcow2 *q, uint64_t offset, uint64_t len, uint64_t flags)
{
    uint64_t first = qcow2_div_round_up(offset, q->cluster_size);
    uint64_t end = offset + len;
    uint64_t last = end == q->disk->size ? qcow2_div_round_up(end, q->cluster_size)
                                         : end >> q->cluster_bits;
    int r = 0;

    pthread_mutex_lock(&q->lock);
    for (uint64_t gc = first; r == 0 && gc < last;) {
        uint64_t room = q->l2_entries - gc % q->l2_entries;
        uint64_t count = last - gc < room ? last - gc : room;
        if (count > 64)
            count = 64;
        struct mapping m;
        r = lookup(q, gc << q->cluster_bits, count << q->cluster_bits, &m);
        if (r < 0)
            break;
        uint64_t same = qcow2_div_round_up(m.length, q->cluster_size);
        bool nothing_to_do = (m.kind == DISK_EXTENT_UNALLOCATED && (!q->backing_name || !flags)) ||
                             (m.kind == DISK_EXTENT_ZERO && flags == QCOW2_OFLAG_ZERO && !m.host);
        if (!nothing_to_do)
            r = set_entries(q, gc, same < count ? same : count, 0, flags);
        gc += same < count ? same : count;
    }
    pthread_mutex_unlock(&q->lock);
    return r;
}

static int write_zero_bytes(struct disk *d, uint64_t offset, uint64_t len)
{
    static const uint8_t zeros[65536];
    while (len > 0) {
        struct iovec iov = {(void *)zeros, len < sizeof(zeros) ? len : sizeof(zeros)};
        ssize_t r = qcow2_pwritev(d, &iov, 1, offset);
        if (r < 0)
            return (int)r;
        offset += iov.iov_len;
        len -= iov.iov_len;
    }
    return 0;
}

/* Splits [offset, offset+len) into a partial head, whole clusters and a
 * partial tail. */
static void split_clusters(const struct qcow2 *q, uint64_t offset, uint64_t len, uint64_t *head,
                           uint64_t *tail)
{
    uint64_t to_boundary = (q->cluster_size - (offset & (q->cluster_size - 1))) & (q->cluster_size - 1);
    *head = to_boundary < len ? to_boundary : len;
    *tail = offset + len == q->disk->size ? 0 : (offset + len) & (q->cluster_size - 1);
    if (*head + *tail > len)
        *tail = len - *head;
}

static int qcow2_write_zeroes(struct disk *d, uint64_t offset, uint64_t len)
{
    struct qcow2 *q = d->priv;
    uint64_t head, tail;
    int r;

    if (q->version < 3) /* no zero flag: zeros are data */
        return write_zero_bytes(d, offset, len);
    split_clusters(q, offset, len, &head, &tail);
    r = write_zero_bytes(d, offset, head);
    if (r == 0 && len > head + tail)
        r = qcow2_set_clusters(q, offset + head, len - head - tail, QCOW2_OFLAG_ZERO);
    if (r == 0)
        r = write_zero_bytes(d, offset + len - tail, tail);
    return r;
}

static int qcow2_discard(struct disk *d, uint64_t offset, uint64_t len)
{
    struct qcow2 *q = d->priv;
    uint64_t head, tail;

    /* A discarded range may read as anything; with a backing file it must
     * not show the backing file's data through (the guest wrote over it),
     * so it becomes zeros where the format can say so. */
    if (q->backing_name && q->version < 3)
        return 0;
    split_clusters(q, offset, len, &head, &tail);
    if (len <= head + tail)
        return 0;
    return qcow2_set_clusters(q, offset + head, len - head - tail,
                              q->backing_name ? QCOW2_OFLAG_ZERO : 0);
}

/* Where compressed clusters are packed: bytes left in the current host
 * cluster, each host cluster counted once per compressed cluster in it. */
static int place_compressed(struct qcow2 *q, uint64_t len, uint64_t *host)
{
    uint64_t room = q->compress_cursor ? q->cluster_size - (q->compress_cursor & (q->cluster_size - 1))
                                       : 0;
    int r;

    if (q->compress_cursor && len <= room && room != q->cluster_size) {
        r = qcow2_refcount_update(q, q->compress_cursor, 1, +1);
        *host = q->compress_cursor;
    } else {
        r = qcow2_alloc_run(q, qcow2_div_round_up(len, q->cluster_size), host);
    }
    if (r == 0)
        q->compress_cursor = *host + len;
    return r;
}

static int qcow2_write_compressed(struct disk *d, uint64_t offset, const uint8_t *cluster)
{
    struct qcow2 *q = d->priv;
    uint8_t *out = malloc(q->cluster_size);
    unsigned shift = 62 - (q->cluster_bits - 8);
    ssize_t len;
    uint64_t host;
    int r;

    if (!out)
        return -ENOMEM;
    len = qcow2_compress(q->compression_type, cluster, q->cluster_size, out, q->cluster_size - 1);
    if (len < 0) { /* does not shrink: stored as it is */
        free(out);
        struct iovec iov = {(void *)cluster, q->cluster_size};
        return (int)qcow2_pwritev(d, &iov, 1, offset);
    }
    pthread_mutex_lock(&q->lock);
    r = place_compressed(q, (uint64_t)len, &host);
    if (r == 0)
        r = qcow2_pwrite(q, out, (size_t)len, host);
    if (r == 0) {
        uint64_t sectors = ((host + (uint64_t)len - 1) >> 9) - (host >> 9);
        r = set_entries(q, offset >> q->cluster_bits, 1, 0,
                        QCOW2_OFLAG_COMPRESSED | (sectors << shift) | host);
    }
    pthread_mutex_unlock(&q->lock);
    free(out);
    return r;
}

/* qemu-img info's fields, in its shape: format-specific {type, data}, and
 * for compat=0.10 only the keys qemu-img shows for it. */
static int qcow2_describe(struct disk *d, json_t *info)
{
    struct qcow2 *q = d->priv;
    json_t *data = json_object();

    json_object_set_new(info, "cluster-size", json_integer((json_int_t)q->cluster_size));
    json_object_set_new(info, "dirty-flag", json_boolean(q->incompatible & QCOW2_INCOMPAT_DIRTY));
    json_object_set_new(data, "compat", json_string(q->version >= 3 ? "1.1" : "0.10"));
    json_object_set_new(data, "compression-type",
                        json_string(q->compression_type ? "zstd" : "zlib"));
    json_object_set_new(data, "refcount-bits", json_integer(1 << q->refcount_order));
    if (q->version >= 3) {
        json_object_set_new(data, "lazy-refcounts",
                            json_boolean(q->compatible & QCOW2_COMPAT_LAZY_REFCOUNTS));
        json_object_set_new(data, "corrupt",
                            json_boolean(q->incompatible & QCOW2_INCOMPAT_CORRUPT));
        json_object_set_new(data, "extended-l2", json_boolean(q->l2_entry_bytes == 16));
    }
    json_object_set_new(info, "format-specific",
                        json_pack("{ssso}", "type", "qcow2", "data", data));
    if (q->backing_name)
        json_object_set_new(info, "backing-filename", json_string(q->backing_name));
    if (q->backing_format)
        json_object_set_new(info, "backing-filename-format", json_string(q->backing_format));
    if (q->snapshot_count) {
        json_t *list = json_array();
        if (qcow2_snapshot_list(d, list) == 0)
            json_object_set_new(info, "snapshots", list);
        else
            json_decref(list);
    }
    return 0;
}

const struct disk_format disk_format_qcow2 = {
    .name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
    .preadv = qcow2_preadv,
    .pwritev = qcow2_pwritev,
    .flush = qcow2_flush,
    .discard = qcow2_discard,
    .write_zeroes = qcow2_write_zeroes,
    .close = qcow2_close,
    .status = qcow2_status,
    .describe = qcow2_describe,
    .check = qcow2_check,
    .resize = qcow2_resize,
    .set_backing = qcow2_set_backing,
    .make_empty = qcow2_make_empty,
    .write_compressed = qcow2_write_compressed,
    .snapshot = qcow2_snapshot,
    .snapshot_list = qcow2_snapshot_list,
    .create = qcow2_create,
};
