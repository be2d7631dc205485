#include "disk/blockmap.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "util/iov.h"

static uint64_t locked_locate(struct disk *d, struct blockmap *m, uint64_t offset, uint64_t *run)
{
    pthread_mutex_lock(&m->lock);
    uint64_t host = m->locate(d, offset, run);
    pthread_mutex_unlock(&m->lock);
    return host;
}

ssize_t blockmap_preadv(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    struct blockmap *m = d->priv;
    uint64_t len = iov_bytes(iov, n), done = 0, run;

    while (done < len) {
        uint64_t host = locked_locate(d, m, offset + done, &run);
        if (run > len - done)
            run = len - done;
        if (host == BLOCKMAP_NONE) {
            iov_zero(iov, n, done, run);
        } else {
            int r = disk_iov_io(d->fd, iov, n, done, run, host, false);
            if (r < 0)
                return r;
        }
        done += run;
    }
    return (ssize_t)done;
}

ssize_t blockmap_pwritev(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    struct blockmap *m = d->priv;
    uint64_t len = iov_bytes(iov, n), done = 0, run;

    while (done < len) {
        int r = 0;
        pthread_mutex_lock(&m->lock);
        uint64_t host = m->locate(d, offset + done, &run);
        if (host == BLOCKMAP_NONE) {
            r = m->allocate(d, offset + done);
            host = r == 0 ? m->locate(d, offset + done, &run) : BLOCKMAP_NONE;
        }
        pthread_mutex_unlock(&m->lock);
        if (r == 0 && host == BLOCKMAP_NONE)
            r = -EIO;
        if (run > len - done)
            run = len - done;
        if (r == 0)
            r = disk_iov_io(d->fd, iov, n, done, run, host, true);
        if (r < 0)
            return r;
        done += run;
    }
    return (ssize_t)done;
}

int blockmap_flush(struct disk *d)
{
    return disk_barrier(d);
}

int blockmap_write_zeroes(struct disk *d, uint64_t offset, uint64_t len)
{
    struct blockmap *m = d->priv;
    static const uint8_t zeros[65536];

    while (len > 0) {
        uint64_t run, host = locked_locate(d, m, offset, &run);
        if (run > len)
            run = len;
        for (uint64_t at = 0; host != BLOCKMAP_NONE && at < run; at += sizeof(zeros)) {
            uint64_t part = run - at < sizeof(zeros) ? run - at : sizeof(zeros);
            int r = disk_pwrite_all(d->fd, zeros, part, host + at);
            if (r < 0)
                return r;
        }
        offset += run;
        len -= run;
    }
    return 0;
}

int blockmap_status(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out)
{
    struct blockmap *m = d->priv;
    uint64_t run, host = locked_locate(d, m, offset, &run);
    *out = (struct disk_extent){host == BLOCKMAP_NONE ? DISK_EXTENT_ZERO : DISK_EXTENT_DATA,
                                run < len ? run : len, host};
    return 0;
}
