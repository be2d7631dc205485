#include "disk/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include "util/err.h"

#define PROBE_BYTES 512

/* Probe order: formats with a magic number first, raw last. */
static const struct disk_format *const formats[] = {
    &disk_format_raw,
};

static const struct disk_format *probe(int fd)
{
    uint8_t head[PROBE_BYTES];
    ssize_t n = pread(fd, head, sizeof(head), 0);
    size_t count = sizeof(formats) / sizeof(formats[0]);

    for (size_t i = 0; i < count; i++)
        if (formats[i]->probe(head, n > 0 ? (size_t)n : 0))
            return formats[i];
    return formats[count - 1];
}

int disk_open(const char *path, unsigned flags, struct disk **out)
{
    bool ro = flags & DISK_READ_ONLY;
    int oflags = (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | ((flags & DISK_DIRECT) ? O_DIRECT : 0);
    struct disk *d = calloc(1, sizeof(*d));
    int r;

    if (!d)
        return err_set(ENOMEM, "disk");
    d->read_only = ro;
    d->fd = open(path, oflags);
    if (d->fd < 0) {
        r = err_set(errno, "cannot open disk '%s'", path);
        free(d);
        return r;
    }
    if (flock(d->fd, (ro ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
        r = err_plain(EBUSY, "disk '%s' is in use by another process", path);
        goto fail;
    }
    d->format = probe(d->fd);
    r = d->format->open(d);
    if (r < 0) {
        err_prefix("disk '%s'", path);
        goto fail;
    }
    *out = d;
    return 0;
fail:
    close(d->fd);
    free(d);
    return r;
}

void disk_close(struct disk *d)
{
    if (!d)
        return;
    if (d->format && d->format->close)
        d->format->close(d);
    close(d->fd);
    free(d);
}

static int check_range(const struct disk *d, uint64_t offset, uint64_t len)
{
    uint64_t end;
    if (__builtin_add_overflow(offset, len, &end) || end > d->size)
        return -EINVAL;
    return 0;
}

static uint64_t iov_bytes(const struct iovec *iov, int n)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    return total;
}

int disk_read(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    uint64_t len = iov_bytes(iov, n);
    ssize_t r;

    if (check_range(d, offset, len) < 0)
        return -EINVAL;
    r = d->format->preadv(d, iov, n, offset);
    return r < 0 ? (int)r : (uint64_t)r == len ? 0 : -EIO;
}

int disk_write(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    uint64_t len = iov_bytes(iov, n);
    ssize_t r;

    if (d->read_only)
        return -EROFS;
    if (check_range(d, offset, len) < 0)
        return -EINVAL;
    r = d->format->pwritev(d, iov, n, offset);
    return r < 0 ? (int)r : (uint64_t)r == len ? 0 : -EIO;
}

int disk_flush(struct disk *d)
{
    return d->read_only ? 0 : d->format->flush(d);
}

int disk_discard(struct disk *d, uint64_t offset, uint64_t len)
{
    if (d->read_only)
        return -EROFS;
    if (check_range(d, offset, len) < 0)
        return -EINVAL;
    return d->format->discard ? d->format->discard(d, offset, len) : 0;
}

int disk_write_zeroes(struct disk *d, uint64_t offset, uint64_t len)
{
    if (d->read_only)
        return -EROFS;
    if (check_range(d, offset, len) < 0)
        return -EINVAL;
    return d->format->write_zeroes(d, offset, len);
}
