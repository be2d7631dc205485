/* Raw images: the file is the disk. Sparse-aware: discard and zeroing
 * punch holes. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdint.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/disk.h"
#include "disk/fileio.h"
#include "util/err.h"
#include "util/iov.h"

static int raw_probe(const uint8_t *head, size_t len)
{
    (void)head;
    (void)len;
    return 1; /* anything is a raw disk; raw is probed last */
}

/* A read-only raw disk (a base layer, a backing file) cannot change under
 * us: the last extent found answers the next questions inside it without
 * a system call, which reads through a chain ask once per request. */
struct extent_cache {
    pthread_mutex_t lock;
    uint64_t start;
    struct disk_extent e;
};

static int raw_open(struct disk *d)
{
    struct stat st;
    if (fstat(d->fd, &st) < 0)
        return err_set(errno, "stat");
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(d->fd, 0, SEEK_END);
        if (end < 0)
            return err_set(errno, "size of block device");
        d->size = (uint64_t)end;
    } else if (S_ISREG(st.st_mode)) {
        d->size = (uint64_t)st.st_size;
    } else {
        return err_plain(EINVAL, "not a file or block device");
    }
    if (d->read_only) {
        struct extent_cache *c = calloc(1, sizeof(*c));
        if (c)
            pthread_mutex_init(&c->lock, NULL);
        d->priv = c; /* without it, every status asks the file system */
    }
    return 0;
}

/* A request in one preadv/pwritev (up to 1024 pieces; the rest of a
 * short transfer follows); reads past the end of the file are zeros. */
static ssize_t raw_io(struct disk *d, const struct iovec *iov, int n, uint64_t offset, bool write)
{
    uint64_t len = iov_bytes(iov, n);
    int r = disk_iov_io(d->fd, iov, n, 0, len, offset, write);
    return r < 0 ? r : (ssize_t)len;
}

static ssize_t raw_preadv(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    return raw_io(d, iov, n, offset, false);
}

static ssize_t raw_pwritev(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    return raw_io(d, iov, n, offset, true);
}

static int raw_flush(struct disk *d)
{
    return disk_barrier(d);
}

static int raw_punch(struct disk *d, uint64_t offset, uint64_t len)
{
    if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
                  (off_t)len) == 0)
        return 0;
    return -errno;
}

static int raw_write_zeroes(struct disk *d, uint64_t offset, uint64_t len)
{
    static const uint8_t zeros[65536];
    int r = raw_punch(d, offset, len);

    if (r != -EOPNOTSUPP)
        return r;
    /* No hole punching on this file system: write the zeros. */
    while (len > 0) {
        size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
        int w = disk_pwrite_all(d->fd, zeros, n, offset);
        if (w < 0)
            return w;
        offset += n;
        len -= n;
    }
    return 0;
}

static int find_extent(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out)
{
    /* A hole reads as zeros; SEEK_DATA/SEEK_HOLE find where they are. */
    off_t data = lseek(d->fd, (off_t)offset, SEEK_DATA);
    uint64_t end;

    if (data < 0 && errno == ENXIO) /* only a hole up to the end */
        data = (off_t)(offset + len);
    if (data < 0) { /* no SEEK_DATA here: all data */
        *out = (struct disk_extent){DISK_EXTENT_DATA, len, offset};
        return 0;
    }
    if ((uint64_t)data > offset) {
        end = (uint64_t)data - offset < len ? (uint64_t)data : offset + len;
        *out = (struct disk_extent){DISK_EXTENT_ZERO, end - offset, UINT64_MAX};
        return 0;
    }
    off_t hole = lseek(d->fd, (off_t)offset, SEEK_HOLE);
    end = hole < 0 || (uint64_t)hole > offset + len ? offset + len : (uint64_t)hole;
    *out = (struct disk_extent){DISK_EXTENT_DATA, end - offset, offset};
    return 0;
}

static int raw_status(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out)
{
    struct extent_cache *c = d->priv;
    int r = 0;

    if (!c)
        return find_extent(d, offset, len, out);
    pthread_mutex_lock(&c->lock);
    if (offset < c->start || offset >= c->start + c->e.length) {
        r = find_extent(d, offset, d->size - offset, &c->e);
        c->start = r == 0 ? offset : 0;
        if (r < 0)
            c->e.length = 0;
    }
    if (r == 0) {
        uint64_t left = c->start + c->e.length - offset;
        *out = c->e;
        out->length = left < len ? left : len;
        if (out->kind == DISK_EXTENT_DATA)
            out->host_offset = offset;
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

static void raw_close(struct disk *d)
{
    struct extent_cache *c = d->priv;
    if (c) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        d->priv = NULL;
    }
}

static int raw_create(const char *path, const struct disk_create_options *o)
{
    if (o->backing)
        return err_plain(EINVAL, "raw images cannot have a backing file");
    return disk_write_new(path, NULL, 0, o->size, NULL, 0);
}

static int raw_resize(struct disk *d, uint64_t size)
{
    if (ftruncate(d->fd, (off_t)size) < 0)
        return err_set(errno, "resize");
    d->size = size;
    return 0;
}

const struct disk_format disk_format_raw = {
    .name = "raw",
    .probe = raw_probe,
    .open = raw_open,
    .preadv = raw_preadv,
    .pwritev = raw_pwritev,
    .flush = raw_flush,
    .discard = raw_punch,
    .write_zeroes = raw_write_zeroes,
    .status = raw_status,
    .close = raw_close,
    .create = raw_create,
    .resize = raw_resize,
};
