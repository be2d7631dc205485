#include "disk/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"
#include "util/iov.h"

#define IOV_PIECES 1024

int disk_pread_all(int fd, void *buf, size_t len, uint64_t offset)
{
    struct iovec iov = {buf, len};
    return disk_iov_io(fd, &iov, 1, 0, len, offset, false);
}

int disk_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset)
{
    struct iovec iov = {(void *)buf, len};
    return disk_iov_io(fd, &iov, 1, 0, len, offset, true);
}

int disk_iov_io(int fd, const struct iovec *iov, int n, uint64_t skip, uint64_t len,
                uint64_t offset, bool write)
{
    struct iovec piece[IOV_PIECES], rest[IOV_PIECES];
    int count = iov_slice(iov, n, skip, len, piece, IOV_PIECES);
    uint64_t done = 0;

    if (count < 0)
        return -EINVAL;
    while (done < len) {
        int m = iov_slice(piece, count, done, len - done, rest, IOV_PIECES);
        ssize_t r = write ? pwritev(fd, rest, m, (off_t)(offset + done))
                          : preadv(fd, rest, m, (off_t)(offset + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0) {
            if (write)
                return -EIO;
            iov_zero(piece, count, done, len - done); /* past the end of the file */
            break;
        }
        done += (uint64_t)r;
    }
    return 0;
}

int disk_write_new(const char *path, const void *head, size_t head_len, uint64_t size,
                   const void *tail, size_t tail_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), r = 0;

    if (fd < 0)
        return err_set(errno, "cannot create '%s'", path);
    /* Zero blocks of the head stay holes: a new image's tables are mostly
     * empty, and a thousand deltas should cost kilobytes each. */
    for (size_t at = 0; r == 0 && at < head_len; at += 4096) {
        size_t n = head_len - at < 4096 ? head_len - at : 4096;
        if (!buf_is_zero((const uint8_t *)head + at, n))
            r = disk_pwrite_all(fd, (const uint8_t *)head + at, n, at);
    }
    uint64_t length = size > head_len ? size : head_len;
    if (r == 0 && ftruncate(fd, (off_t)length) < 0)
        r = -errno;
    if (r == 0 && tail_len)
        r = disk_pwrite_all(fd, tail, tail_len, size > head_len ? size : head_len);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r < 0) {
        unlink(path);
        return err_set(-r, "cannot write '%s'", path);
    }
    return 0;
}
