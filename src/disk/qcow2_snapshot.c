/* qcow2 internal snapshots: a snapshot is a copy of the L1 table; every
 * L2 table and cluster it reaches gains a reference, so later writes to
 * the image copy them first (qcow2.c) and the snapshot keeps its data.
 *
 * Crash ordering as QEMU: references are added before anything points to
 * them, the snapshot table is written whole to new clusters and switched
 * in with one header write, references are dropped only after the switch
 * is synced. COPIED flags are set exactly where a refcount is 1, as
 * `qemu-img check` requires. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "disk/qcow2.h"
#include "util/be.h"
#include "util/err.h"

#define SNAPSHOT_FIXED 40
#define MAX_EXTRA 1024
#define EXTRA_WRITTEN 24 /* vm_state_size_large, disk_size, icount */
#define MAX_TABLE_BYTES (64u << 20)

struct snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id, *name;
    uint8_t fixed[SNAPSHOT_FIXED]; /* as read: dates, VM state, kept as they were */
    uint8_t extra[MAX_EXTRA];
    uint32_t extra_size;
};

static void free_snapshots(struct snapshot *s, uint32_t count)
{
    for (uint32_t i = 0; s && i < count; i++) {
        free(s[i].id);
        free(s[i].name);
    }
    free(s);
}

static char *read_string(struct qcow2 *q, uint64_t offset, uint16_t len)
{
    char *s = calloc(1, (size_t)len + 1);
    if (s && qcow2_pread(q, s, len, offset) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static int read_snapshots(struct qcow2 *q, struct snapshot **out)
{
    struct snapshot *s = calloc(q->snapshot_count + 1, sizeof(*s));
    uint64_t offset = q->snapshots_offset, start = offset;
    int r = s ? 0 : -ENOMEM;

    for (uint32_t i = 0; r == 0 && i < q->snapshot_count; i++) {
        uint8_t *h = s[i].fixed;
        r = qcow2_pread(q, h, SNAPSHOT_FIXED, offset);
        if (r < 0)
            break;
        s[i].l1_offset = be64(h);
        s[i].l1_size = be32(h + 8);
        s[i].extra_size = be32(h + 36);
        uint16_t id_len = be16(h + 12), name_len = be16(h + 14);
        if (s[i].extra_size > MAX_EXTRA || (uint64_t)s[i].l1_size * 8 > (32u << 20) ||
            (s[i].l1_offset & (q->cluster_size - 1))) {
            r = qcow2_corrupt(q, "snapshot %u is invalid", i);
            break;
        }
        offset += SNAPSHOT_FIXED;
        r = qcow2_pread(q, s[i].extra, s[i].extra_size, offset);
        offset += s[i].extra_size;
        s[i].id = read_string(q, offset, id_len);
        offset += id_len;
        s[i].name = read_string(q, offset, name_len);
        offset += name_len;
        offset = (offset + 7) & ~7ull;
        if (!s[i].id || !s[i].name)
            r = -ENOMEM;
        if (offset - start > MAX_TABLE_BYTES)
            r = qcow2_corrupt(q, "snapshot table too large");
    }
    if (r < 0) {
        free_snapshots(s, q->snapshot_count);
        return r;
    }
    *out = s;
    return 0;
}

static size_t entry_bytes(const struct snapshot *s)
{
    return (SNAPSHOT_FIXED + s->extra_size + strlen(s->id) + strlen(s->name) + 7) & ~(size_t)7;
}

static uint8_t *encode(const struct snapshot *s, uint32_t count, size_t *len)
{
    size_t total = 0;
    for (uint32_t i = 0; i < count; i++)
        total += entry_bytes(&s[i]);
    uint8_t *buf = calloc(1, total + 1), *p = buf;
    if (!buf)
        return NULL;
    for (uint32_t i = 0; i < count; i++) {
        size_t id = strlen(s[i].id), name = strlen(s[i].name);
        memcpy(p, s[i].fixed, SNAPSHOT_FIXED);
        put_be(p, s[i].l1_offset, 8);
        put_be(p + 8, s[i].l1_size, 4);
        put_be(p + 12, id, 2);
        put_be(p + 14, name, 2);
        put_be(p + 36, s[i].extra_size, 4);
        memcpy(p + SNAPSHOT_FIXED, s[i].extra, s[i].extra_size);
        memcpy(p + SNAPSHOT_FIXED + s[i].extra_size, s[i].id, id);
        memcpy(p + SNAPSHOT_FIXED + s[i].extra_size + id, s[i].name, name);
        p += entry_bytes(&s[i]);
    }
    *len = total;
    return buf;
}

/* Writes the table to new clusters and switches the header to it. */
static int write_table(struct qcow2 *q, const struct snapshot *s, uint32_t count)
{
    uint64_t old = q->snapshots_offset, old_len = 0, at = 0;
    size_t len = 0;
    uint8_t *buf = encode(s, count, &len), header[12];
    int r = buf ? 0 : -ENOMEM;

    for (uint32_t i = 0; i < q->snapshot_count; i++)
        old_len += entry_bytes(&s[i]); /* callers pass the old entries first */
    if (r == 0 && len)
        r = qcow2_alloc_run(q, qcow2_div_round_up(len, q->cluster_size), &at);
    if (r == 0 && len)
        r = qcow2_pwrite(q, buf, len, at);
    free(buf);
    if (r == 0)
        r = disk_barrier(q->disk);
    put_be(header, count, 4);
    put_be(header + 4, at, 8);
    if (r == 0)
        r = qcow2_pwrite(q, header, sizeof(header), 60);
    if (r == 0)
        r = disk_barrier(q->disk);
    if (r < 0)
        return err_set(-r, "write the snapshot table");
    q->snapshot_count = count;
    q->snapshots_offset = at;
    return old_len ? qcow2_free_later(q, old, old_len) : 0;
}

static int read_l1(struct qcow2 *q, uint64_t offset, uint32_t size, uint64_t **out)
{
    uint64_t *l1 = calloc((size_t)size + 1, 8);
    int r = l1 ? qcow2_pread(q, l1, (size_t)size * 8, offset) : -ENOMEM;
    for (uint32_t i = 0; r == 0 && i < size; i++)
        l1[i] = be64((uint8_t *)&l1[i]);
    if (r < 0) {
        free(l1);
        return r;
    }
    *out = l1;
    return 0;
}

/* Adds delta to the refcount of every L2 table and cluster an L1 table
 * reaches (a drop waits for the next sync). */
static int adjust_tree(struct qcow2 *q, const uint64_t *l1, uint32_t size, int delta)
{
    int r = 0;
    for (uint32_t i = 0; r == 0 && i < size; i++) {
        uint64_t l2 = l1[i] & QCOW2_OFFSET_MASK;
        uint8_t *table;
        if (!l2)
            continue;
        r = qcow2_cache_get(q, &q->l2_cache, l2, &table);
        for (uint64_t k = 0; r == 0 && k < q->l2_entries; k++) {
            uint64_t e = be64(table + k * q->l2_entry_bytes), start, len;
            if (e & QCOW2_OFLAG_COMPRESSED)
                qcow2_compressed_range(q, e, &start, &len);
            else
                start = e & QCOW2_OFFSET_MASK, len = q->cluster_size;
            if (!start)
                continue;
            r = delta > 0 ? qcow2_refcount_update(q, start, len, delta)
                          : qcow2_free_later(q, start, len);
            /* A deferred drop may have synced and reloaded tables. */
            if (r == 0)
                r = qcow2_cache_get(q, &q->l2_cache, l2, &table);
        }
        if (r == 0)
            r = delta > 0 ? qcow2_refcount_update(q, l2, q->cluster_size, delta)
                          : qcow2_free_later(q, l2, q->cluster_size);
    }
    return r;
}

static uint64_t with_copied(uint64_t entry, bool copied)
{
    return copied ? entry | QCOW2_OFLAG_COPIED : entry & ~QCOW2_OFLAG_COPIED;
}

/* COPIED where the refcount is 1, nowhere else, through the active tree. */
static int update_copied(struct qcow2 *q)
{
    int r = 0;
    for (uint32_t i = 0; r == 0 && i < q->l1_size; i++) {
        uint64_t l2 = q->l1[i] & QCOW2_OFFSET_MASK, refs;
        uint8_t *table;
        bool changed = false;
        if (!l2)
            continue;
        r = qcow2_refcount_get(q, l2 >> q->cluster_bits, &refs);
        if (r == 0 && with_copied(q->l1[i], refs == 1) != q->l1[i])
            r = qcow2_write_table_entry(q, q->l1_offset, q->l1, i, with_copied(q->l1[i], refs == 1));
        if (r == 0)
            r = qcow2_cache_get(q, &q->l2_cache, l2, &table);
        for (uint64_t k = 0; r == 0 && k < q->l2_entries; k++) {
            uint8_t *p = table + k * q->l2_entry_bytes;
            uint64_t e = be64(p), host = e & QCOW2_OFFSET_MASK;
            if ((e & QCOW2_OFLAG_COMPRESSED) || !host)
                continue;
            r = qcow2_refcount_get(q, host >> q->cluster_bits, &refs);
            if (r == 0 && with_copied(e, refs == 1) != e) {
                put_be(p, with_copied(e, refs == 1), 8);
                changed = true;
            }
        }
        if (r == 0 && changed)
            r = qcow2_pwrite(q, table, q->cluster_size, l2);
        if (r < 0)
            qcow2_cache_drop(q, &q->l2_cache, l2);
    }
    return r;
}

static int find(const struct snapshot *s, uint32_t count, const char *name)
{
    for (uint32_t i = 0; i < count; i++)
        if (strcmp(s[i].name, name) == 0 || strcmp(s[i].id, name) == 0)
            return (int)i;
    return -1;
}

static int create(struct qcow2 *q, struct snapshot *s, const char *name)
{
    struct snapshot *n = &s[q->snapshot_count];
    uint64_t l1_bytes = (uint64_t)q->l1_size * 8, at = 0;
    unsigned long next_id = 1;
    struct timespec now;
    uint8_t *l1 = malloc(l1_bytes + 1);
    int r;

    if (!l1)
        return -ENOMEM;
    for (uint32_t i = 0; i < q->snapshot_count; i++)
        if (strtoul(s[i].id, NULL, 10) >= next_id)
            next_id = strtoul(s[i].id, NULL, 10) + 1;
    r = adjust_tree(q, q->l1, q->l1_size, +1);
    if (r == 0)
        r = update_copied(q);
    for (uint32_t i = 0; i < q->l1_size; i++)
        put_be(l1 + 8 * i, q->l1[i], 8);
    if (r == 0 && l1_bytes)
        r = qcow2_alloc_run(q, qcow2_div_round_up(l1_bytes, q->cluster_size), &at);
    if (r == 0)
        r = qcow2_pwrite(q, l1, l1_bytes, at);
    free(l1);
    if (r < 0)
        return r;
    clock_gettime(CLOCK_REALTIME, &now);
    memset(n, 0, sizeof(*n));
    n->l1_offset = at;
    n->l1_size = q->l1_size;
    put_be(n->fixed + 16, (uint64_t)now.tv_sec, 4);
    put_be(n->fixed + 20, (uint64_t)now.tv_nsec, 4);
    n->extra_size = EXTRA_WRITTEN;
    put_be(n->extra + 8, q->disk->size, 8);
    put_be(n->extra + 16, UINT64_MAX, 8); /* no instruction count */
    n->name = strdup(name);
    if (asprintf(&n->id, "%lu", next_id) < 0)
        n->id = NULL;
    if (!n->name || !n->id)
        return -ENOMEM;
    return write_table(q, s, q->snapshot_count + 1);
}

static int apply(struct qcow2 *q, const struct snapshot *sn)
{
    uint64_t *l1, *old = malloc((size_t)q->l1_size * 8 + 8);
    uint8_t *raw = malloc((size_t)q->l1_size * 8 + 8);
    int r;

    if (sn->extra_size >= 16 && be64(sn->extra + 8) != q->disk->size)
        r = err_plain(ENOTSUP, "the snapshot has another disk size; resize the image first");
    else if (sn->l1_size > q->l1_size)
        r = err_plain(ENOTSUP, "the snapshot's L1 table is larger than the image's");
    else
        r = old && raw ? read_l1(q, sn->l1_offset, sn->l1_size, &l1) : -ENOMEM;
    if (r < 0) {
        free(old);
        free(raw);
        return r;
    }
    memcpy(old, q->l1, (size_t)q->l1_size * 8);
    r = adjust_tree(q, l1, sn->l1_size, +1);
    for (uint32_t i = 0; i < q->l1_size; i++)
        put_be(raw + 8 * i, i < sn->l1_size ? l1[i] : 0, 8);
    if (r == 0)
        r = qcow2_pwrite(q, raw, (size_t)q->l1_size * 8, q->l1_offset);
    if (r == 0) {
        for (uint32_t i = 0; i < q->l1_size; i++)
            q->l1[i] = i < sn->l1_size ? l1[i] : 0;
        r = qcow2_sync(q);
    }
    if (r == 0)
        r = adjust_tree(q, old, q->l1_size, -1);
    if (r == 0)
        r = qcow2_sync(q);
    if (r == 0)
        r = update_copied(q);
    free(l1);
    free(old);
    free(raw);
    return r;
}

static int delete(struct qcow2 *q, struct snapshot *s, uint32_t index)
{
    struct snapshot gone = s[index];
    uint64_t *l1;
    int r = read_l1(q, gone.l1_offset, gone.l1_size, &l1);

    if (r < 0)
        return r;
    memmove(&s[index], &s[index + 1], (q->snapshot_count - index - 1) * sizeof(*s));
    s[q->snapshot_count - 1] = gone; /* freed with the others */
    r = write_table(q, s, q->snapshot_count - 1);
    if (r == 0)
        r = adjust_tree(q, l1, gone.l1_size, -1);
    if (r == 0 && gone.l1_size)
        r = qcow2_free_later(q, gone.l1_offset, (uint64_t)gone.l1_size * 8);
    if (r == 0)
        r = qcow2_sync(q);
    if (r == 0)
        r = update_copied(q);
    free(l1);
    return r;
}

int qcow2_snapshot(struct disk *d, enum disk_snapshot_op op, const char *name)
{
    struct qcow2 *q = d->priv;
    struct snapshot *s;
    uint32_t count = q->snapshot_count;
    int r, i;

    pthread_mutex_lock(&q->lock);
    r = qcow2_sync(q);
    if (r == 0)
        r = read_snapshots(q, &s);
    if (r < 0) {
        pthread_mutex_unlock(&q->lock);
        return r;
    }
    i = find(s, count, name);
    if (op == DISK_SNAPSHOT_CREATE && i >= 0)
        r = err_plain(EEXIST, "a snapshot '%s' exists already", name);
    else if (op != DISK_SNAPSHOT_CREATE && i < 0)
        r = err_plain(ENOENT, "no snapshot '%s'", name);
    else if (strlen(name) > 1024)
        r = err_plain(ENAMETOOLONG, "snapshot name too long");
    else if (op == DISK_SNAPSHOT_CREATE)
        r = create(q, s, name), count += r == 0;
    else if (op == DISK_SNAPSHOT_APPLY)
        r = apply(q, &s[i]);
    else
        r = delete(q, s, (uint32_t)i);
    if (r == 0)
        r = qcow2_sync(q);
    pthread_mutex_unlock(&q->lock);
    free_snapshots(s, count + (op == DISK_SNAPSHOT_CREATE && r < 0));
    return r;
}

int qcow2_snapshot_list(struct disk *d, json_t *list)
{
    struct qcow2 *q = d->priv;
    struct snapshot *s;

    pthread_mutex_lock(&q->lock);
    int r = read_snapshots(q, &s);
    pthread_mutex_unlock(&q->lock);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < q->snapshot_count; i++) {
        uint64_t clock = be64(s[i].fixed + 24);
        uint64_t vm_state = s[i].extra_size >= 8 ? be64(s[i].extra) : be32(s[i].fixed + 32);
        json_t *x = json_pack("{sssssIsisisIsI}", "id", s[i].id, "name", s[i].name,
                              "vm-state-size", (json_int_t)vm_state, "date-sec",
                              (int)be32(s[i].fixed + 16), "date-nsec", (int)be32(s[i].fixed + 20),
                              "vm-clock-sec", (json_int_t)(clock / 1000000000),
                              "vm-clock-nsec", (json_int_t)(clock % 1000000000));
        /* qemu-img shows the instruction count where one was recorded. */
        if (x && s[i].extra_size >= 24 && be64(s[i].extra + 16) != UINT64_MAX)
            json_object_set_new(x, "icount", json_integer((json_int_t)be64(s[i].extra + 16)));
        json_array_append_new(list, x);
    }
    free_snapshots(s, q->snapshot_count);
    return 0;
}
