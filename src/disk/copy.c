#include "disk/copy.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/err.h"
#include "util/iov.h"

#define CHUNK (2u << 20)
#define COPY_ALIGN (2u << 20)
#define GRAIN (64u << 10) /* zero runs this long are not written */

/* Whole clusters of dst compressed one by one (the last one padded with
 * zeros past the end of the disk). */
static int copy_compressed(struct disk *dst, uint64_t offset, uint64_t len, uint8_t *buf)
{
    uint64_t cs = dst->cluster_size;
    for (uint64_t at = 0; at < len; at += cs) {
        uint64_t n = len - at < cs ? len - at : cs;
        if (buf_is_zero(buf + at, n))
            continue;
        memset(buf + at + n, 0, cs - n);
        int r = dst->format->write_compressed(dst, offset + at, buf + at);
        if (r < 0)
            return err_set(-r, "write at %llu", (unsigned long long)(offset + at));
    }
    return 0;
}

/* The copy is a pipeline: a reader thread fills buffers with the source's
 * data extents while the caller's thread writes them (and compresses), so
 * reading and writing overlap on two cores. */
#define SLOTS 4

struct slot {
    uint64_t offset, len;
    uint8_t *buf;
};

struct pipeline {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct slot slots[SLOTS];
    unsigned filled, next_fill, next_drain;
    bool reader_done, stop;
    int read_error;
    char read_message[256];
    struct disk *src;
    uint64_t size, step, cluster; /* cluster: write whole clusters (compressing) */
};

/* The next extent of src from offset to copy (*data) or skip. */
static int plan_extent(struct pipeline *p, uint64_t offset, uint64_t *len, bool *data)
{
    struct disk_extent e;
    unsigned depth;
    uint64_t want = p->size - offset < p->step ? p->size - offset : p->step;
    int r = disk_status_chain(p->src, offset, want, &e, &depth);

    if (r < 0)
        return r;
    *data = e.kind == DISK_EXTENT_DATA;
    *len = e.length;
    if (p->cluster && !*data) { /* skip whole clusters only */
        *len = e.length / p->cluster * p->cluster;
        *data = *len == 0;
    }
    if (p->cluster && *data) /* cluster by cluster, whatever maps where */
        *len = want;
    return 0;
}

static void *reader(void *opaque)
{
    struct pipeline *p = opaque;
    uint64_t offset = 0, len;
    bool data;
    int r = 0;

    while (r == 0 && offset < p->size) {
        r = plan_extent(p, offset, &len, &data);
        if (r < 0 || !data) {
            offset += r < 0 ? 0 : len;
            continue;
        }
        pthread_mutex_lock(&p->lock);
        while (p->filled == SLOTS && !p->stop)
            pthread_cond_wait(&p->changed, &p->lock);
        struct slot *s = &p->slots[p->next_fill];
        bool stop = p->stop;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            break;
        struct iovec iov = {s->buf, len};
        r = disk_read(p->src, &iov, 1, offset);
        if (r < 0) {
            r = err_set(-r, "read at %llu", (unsigned long long)offset);
            break;
        }
        s->offset = offset;
        s->len = len;
        offset += len;
        pthread_mutex_lock(&p->lock);
        p->next_fill = (p->next_fill + 1) % SLOTS;
        p->filled++;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_lock(&p->lock);
    if (r < 0) /* messages are per thread: carried over to the caller's */
        snprintf(p->read_message, sizeof(p->read_message), "%s", err_msg());
    p->read_error = r;
    p->reader_done = true;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Writes one buffer: compressed clusters, or the non-zero grains. */
static int write_slot(struct disk *dst, const struct slot *s, bool compress)
{
    if (compress)
        return copy_compressed(dst, s->offset, s->len, s->buf);
    for (uint64_t at = 0; at < s->len;) {
        uint64_t n = s->len - at < GRAIN ? s->len - at : GRAIN, start = at;
        /* Coalesce consecutive non-zero grains into one write. */
        while (at < s->len && !buf_is_zero(s->buf + at, n)) {
            at += n;
            n = s->len - at < GRAIN ? s->len - at : GRAIN;
        }
        if (at == start) {
            at += n;
            continue;
        }
        struct iovec w = {s->buf + start, at - start};
        int r = disk_write(dst, &w, 1, s->offset + start);
        if (r < 0)
            return err_set(-r, "write at %llu", (unsigned long long)(s->offset + start));
    }
    return 0;
}

static int drain(struct pipeline *p, struct disk *dst, bool compress, disk_progress_fn progress,
                 void *opaque)
{
    int r = 0;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (p->filled == 0 && !p->reader_done)
            pthread_cond_wait(&p->changed, &p->lock);
        if (p->filled == 0 || r < 0) {
            p->stop = true;
            pthread_cond_broadcast(&p->changed);
            pthread_mutex_unlock(&p->lock);
            return r;
        }
        struct slot *s = &p->slots[p->next_drain];
        pthread_mutex_unlock(&p->lock);
        r = write_slot(dst, s, compress);
        if (r == 0 && progress)
            progress(opaque, s->offset + s->len, p->size);
        pthread_mutex_lock(&p->lock);
        p->next_drain = (p->next_drain + 1) % SLOTS;
        p->filled--;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
    }
}

int disk_copy(struct disk *src, struct disk *dst, bool compress, disk_progress_fn progress,
              void *opaque)
{
    struct pipeline p = {.src = src, .size = src->size < dst->size ? src->size : dst->size,
                         .step = CHUNK};
    pthread_t thread;
    int r = 0;

    if (compress && !dst->format->write_compressed)
        return err_plain(ENOTSUP, "%s images cannot hold compressed data", dst->format->name);
    if (compress) { /* whole clusters, a chunk a multiple of them */
        p.cluster = dst->cluster_size;
        if (p.cluster > p.step)
            p.step = p.cluster;
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        /* Huge-page aligned: copying to and from the page cache is twice
         * as fast into buffers the TLB covers with a few entries. */
        void *buf = NULL;
        if (posix_memalign(&buf, COPY_ALIGN, p.step + p.cluster) != 0)
            r = -ENOMEM;
        else
            madvise(buf, p.step + p.cluster, MADV_HUGEPAGE);
        p.slots[i].buf = buf;
    }
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.changed, NULL);
    if (r == 0 && pthread_create(&thread, NULL, reader, &p) != 0)
        r = -EAGAIN;
    if (r == 0) {
        r = drain(&p, dst, compress, progress, opaque);
        pthread_join(thread, NULL);
        if (r == 0 && p.read_error < 0)
            r = err_plain(-p.read_error, "%s", p.read_message);
    }
    if (r == 0 && progress)
        progress(opaque, p.size, p.size);
    if (r == 0)
        r = disk_flush(dst);
    for (unsigned i = 0; i < SLOTS; i++)
        free(p.slots[i].buf);
    pthread_cond_destroy(&p.changed);
    pthread_mutex_destroy(&p.lock);
    return r;
}

static int read_chunk(struct disk *d, uint64_t offset, uint8_t *buf, uint64_t len)
{
    struct iovec iov = {buf, len};
    if (offset >= d->size) {
        memset(buf, 0, len);
        return 0;
    }
    if (len > d->size - offset) {
        memset(buf + (d->size - offset), 0, len - (d->size - offset));
        iov.iov_len = d->size - offset;
    }
    int r = disk_read(d, &iov, 1, offset);
    return r < 0 ? err_set(-r, "read '%s' at %llu", d->path, (unsigned long long)offset) : 0;
}

int disk_compare(struct disk *a, struct disk *b, uint64_t *mismatch)
{
    uint8_t *x = malloc(CHUNK), *y = malloc(CHUNK);
    uint64_t size = a->size > b->size ? a->size : b->size;
    int r = x && y ? 0 : -ENOMEM;

    for (uint64_t offset = 0; r == 0 && offset < size; offset += CHUNK) {
        uint64_t len = size - offset < CHUNK ? size - offset : CHUNK;
        r = read_chunk(a, offset, x, len);
        if (r == 0)
            r = read_chunk(b, offset, y, len);
        if (r == 0 && memcmp(x, y, len) != 0) {
            uint64_t i = 0;
            while (x[i] == y[i])
                i++;
            *mismatch = offset + i;
            r = 1;
        }
    }
    free(x);
    free(y);
    return r;
}

/* One extent of the image itself into base: data copied, zeros zeroed. */
static int commit_extent(struct disk *top, struct disk *base, const struct disk_extent *e,
                         uint64_t offset, uint8_t *buf)
{
    if (e->kind == DISK_EXTENT_ZERO)
        return disk_write_zeroes(base, offset, e->length);
    struct iovec iov = {buf, e->length};
    int r = disk_read(top, &iov, 1, offset);
    return r < 0 ? r : disk_write(base, &iov, 1, offset);
}

int disk_commit(const char *path, const char *format, bool keep, disk_progress_fn progress,
                void *opaque)
{
    struct disk *top, *base = NULL;
    uint8_t *buf = malloc(CHUNK);
    int r = buf ? disk_open_as(path, DISK_NO_BACKING, format, &top) : -ENOMEM;

    if (r < 0) {
        free(buf);
        return r;
    }
    if (!top->backing_path)
        r = err_plain(EINVAL, "'%s' has no backing file", path);
    else
        r = disk_open_as(top->backing_path, 0, top->backing_format, &base);
    /* As when the chain opens: an unrecorded backing format is raw only. */
    if (r == 0 && !top->backing_format && base->format != &disk_format_raw)
        r = disk_refuse_unrecorded(top->backing_path, base->format->name, path);
    uint64_t size = base && base->size < top->size ? base->size : top->size;
    for (uint64_t offset = 0; r == 0 && offset < size;) {
        struct disk_extent e;
        uint64_t want = size - offset < CHUNK ? size - offset : CHUNK;
        r = disk_status(top, offset, want, &e);
        if (r == 0 && e.kind != DISK_EXTENT_UNALLOCATED)
            r = commit_extent(top, base, &e, offset, buf);
        offset += r == 0 ? e.length : 0;
        if (progress)
            progress(opaque, offset, size);
    }
    if (r == 0)
        r = disk_flush(base);
    if (r == 0 && !keep)
        r = top->format->make_empty ? top->format->make_empty(top) : 0;
    disk_close(base);
    disk_close(top);
    free(buf);
    return r;
}

/* Copies into d the grains of [offset, offset+len) it does not hold and
 * its old chain reads differently from the new backing file. */
static int keep_content(struct disk *d, struct disk *fresh, uint64_t offset, uint64_t len,
                        uint8_t *old, uint8_t *now)
{
    struct iovec a = {old, len};
    int r = disk_read_backing(d, &a, 1, offset);

    if (r == 0 && fresh)
        r = read_chunk(fresh, offset, now, len);
    else if (r == 0)
        memset(now, 0, len); /* no backing file any more: zeros */
    for (uint64_t at = 0; r == 0 && at < len; at += GRAIN) {
        uint64_t n = len - at < GRAIN ? len - at : GRAIN;
        if (memcmp(old + at, now + at, n) != 0) {
            struct iovec w = {old + at, n};
            r = disk_write(d, &w, 1, offset + at);
        }
    }
    return r;
}

int disk_rebase(const char *path, const char *format, const char *backing,
                const char *backing_format, bool unsafe, disk_progress_fn progress, void *opaque)
{
    struct disk *d = NULL, *fresh = NULL;
    uint8_t *old = malloc(CHUNK), *now = malloc(CHUNK);
    int r = old && now ? disk_open_as(path, unsafe ? DISK_NO_BACKING : 0, format, &d) : -ENOMEM;

    if (backing && !*backing) /* "": the image stands alone, its chain's data copied in */
        backing = NULL;
    if (r == 0 && !d->format->set_backing)
        r = err_plain(ENOTSUP, "%s images have no backing file", d->format->name);
    /* As qemu-img since 6.1: a backing file is recorded with its format,
     * so that no later open has to probe it. */
    if (r == 0 && backing && !backing_format)
        r = err_plain(EINVAL, "the backing file's format must be given (-F)");
    if (!backing)
        backing_format = NULL;
    if (r == 0 && !unsafe && backing) {
        /* The new name is relative to the image, as it will be read. */
        char *full = disk_backing_path(path, backing);
        r = full ? disk_open_as(full, DISK_READ_ONLY, backing_format, &fresh) : -ENOMEM;
        free(full);
    }
    for (uint64_t offset = 0; r == 0 && !unsafe && offset < d->size;) {
        struct disk_extent e;
        uint64_t want = d->size - offset < CHUNK ? d->size - offset : CHUNK;
        r = disk_status(d, offset, want, &e);
        if (r == 0 && e.kind == DISK_EXTENT_UNALLOCATED)
            r = keep_content(d, fresh, offset, e.length, old, now);
        offset += r == 0 ? e.length : 0;
        if (progress)
            progress(opaque, offset, d->size);
    }
    if (r == 0)
        r = disk_flush(d);
    if (r == 0)
        r = d->format->set_backing(d, backing, backing_format);
    disk_close(fresh);
    disk_close(d);
    free(old);
    free(now);
    return r;
}
