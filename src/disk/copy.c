#include "disk/copy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/iov.h"

#define CHUNK (1u << 20)
#define GRAIN (64u << 10) /* zero runs this long are not written */

static int copy_data(struct disk *src, struct disk *dst, uint64_t offset, uint64_t len,
                     uint8_t *buf)
{
    struct iovec iov = {buf, len};
    int r = disk_read(src, &iov, 1, offset);
    if (r < 0)
        return err_set(-r, "read at %llu", (unsigned long long)offset);
    for (uint64_t at = 0; at < len;) {
        uint64_t n = len - at < GRAIN ? len - at : GRAIN;
        uint64_t start = at;
        /* Coalesce consecutive non-zero grains into one write. */
        while (at < len && !buf_is_zero(buf + at, n)) {
            at += n;
            n = len - at < GRAIN ? len - at : GRAIN;
        }
        if (at > start) {
            struct iovec w = {buf + start, at - start};
            r = disk_write(dst, &w, 1, offset + start);
            if (r < 0)
                return err_set(-r, "write at %llu", (unsigned long long)(offset + start));
        } else {
            at += n;
        }
    }
    return 0;
}

int disk_copy(struct disk *src, struct disk *dst, disk_progress_fn progress, void *opaque)
{
    uint8_t *buf = malloc(CHUNK);
    uint64_t offset = 0, size = src->size < dst->size ? src->size : dst->size;
    int r = buf ? 0 : -ENOMEM;

    while (r == 0 && offset < size) {
        struct disk_extent e;
        unsigned depth;
        uint64_t want = size - offset < CHUNK ? size - offset : CHUNK;
        r = disk_status_chain(src, offset, want, &e, &depth);
        if (r < 0)
            break;
        if (e.kind == DISK_EXTENT_DATA)
            r = copy_data(src, dst, offset, e.length, buf);
        offset += e.length;
        if (progress)
            progress(opaque, offset, size);
    }
    if (r == 0)
        r = disk_flush(dst);
    free(buf);
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
