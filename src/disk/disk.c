#include "disk/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/check.h"
#include "util/err.h"
#include "util/iov.h"

#define PROBE_BYTES 512

/* Probe order: formats with a magic number first, raw last. */
bool disk_quiet;

static const struct disk_format *const formats[] = {
    &disk_format_qcow2,
    &disk_format_vhd,
    &disk_format_vdi,
    &disk_format_vmdk,
    &disk_format_raw,
};
#define FORMAT_COUNT (sizeof(formats) / sizeof(formats[0]))

const struct disk_format *disk_format_find(const char *name)
{
    for (size_t i = 0; i < FORMAT_COUNT; i++)
        if (strcmp(formats[i]->name, name) == 0)
            return formats[i];
    return NULL;
}

static const struct disk_format *probe(int fd)
{
    uint8_t head[PROBE_BYTES];
    ssize_t n = pread(fd, head, sizeof(head), 0);

    for (size_t i = 0; i < FORMAT_COUNT; i++)
        if (formats[i]->probe(head, n > 0 ? (size_t)n : 0))
            return formats[i];
    return formats[FORMAT_COUNT - 1];
}

static int identify(struct disk *d)
{
    struct stat st;
    if (fstat(d->fd, &st) < 0)
        return err_set(errno, "stat");
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return err_plain(EINVAL, "not a file or block device");
    d->dev = st.st_dev;
    d->ino = st.st_ino;
    for (const struct disk *c = d->child; c; c = c->child)
        if (c->dev == d->dev && c->ino == d->ino)
            return err_plain(ELOOP, "backing chain has a cycle");
    return 0;
}

static int open_file(struct disk *d, const char *path)
{
    bool ro = d->read_only;
    /* O_NONBLOCK: a backing file name in a hostile image may name a FIFO. */
    int oflags = (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK |
                 ((d->flags & DISK_DIRECT) ? O_DIRECT : 0);

    d->fd = open(path, oflags);
    if (d->fd < 0)
        return err_set(errno, "cannot open disk '%s'", path);
    if (identify(d) < 0)
        return -EINVAL;
    if (fcntl(d->fd, F_SETFL, fcntl(d->fd, F_GETFL) & ~O_NONBLOCK) < 0)
        return err_set(errno, "fcntl");
    if (!(d->flags & DISK_NO_LOCK) && flock(d->fd, (ro ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0)
        return err_plain(EBUSY, "disk '%s' is in use by another process", path);
    return 0;
}

int disk_refuse_unrecorded(const char *backing, const char *looks_like, const char *image)
{
    return err_plain(EINVAL, "'%s' has no recorded format and is not raw (it looks like %s): "
                             "record it with 'smolvm disk rebase -u -F %s -b NAME %s'",
                     backing, looks_like, looks_like, image);
}

static int open_chain(const char *path, unsigned flags, const char *format,
                      const struct disk *child, struct disk **out)
{
    struct disk *d = calloc(1, sizeof(*d));
    int r;

    if (!d)
        return err_set(ENOMEM, "disk");
    d->fd = -1;
    d->flags = flags;
    d->read_only = flags & DISK_READ_ONLY;
    d->child = child;
    d->depth = child ? child->depth + 1 : 0;
    d->path = strdup(path);
    if (!d->path) {
        r = err_set(ENOMEM, "disk");
        goto fail;
    }
    r = open_file(d, path);
    if (r < 0)
        goto fail;
    if (format) {
        d->format = disk_format_find(format);
        if (!d->format) {
            r = err_plain(EINVAL, "unknown disk format '%s'", format);
            goto fail;
        }
    } else {
        d->format = probe(d->fd);
        d->probed_raw = d->format == &disk_format_raw && !d->read_only;
    }
    /* A backing file whose format its image does not record is read raw
     * or not at all: probing it as anything else would let whoever wrote
     * its first bytes (a guest, for a raw disk) choose what it is, and
     * name further files. qemu-img since 6.1 records the format of every
     * backing file it writes; older images can be given theirs with
     * `disk rebase -u -b NAME -F FMT`. */
    if (child && !format && d->format != &disk_format_raw) {
        r = disk_refuse_unrecorded(path, d->format->name, child->path);
        goto fail;
    }
    r = d->format->open(d);
    if (r < 0) {
        err_prefix("disk '%s'", path);
        goto fail;
    }
    *out = d;
    return 0;
fail:
    d->format = NULL; /* not opened: no close callback */
    disk_close(d);
    return r;
}

int disk_open(const char *path, unsigned flags, struct disk **out)
{
    return open_chain(path, flags, NULL, NULL, out);
}

int disk_open_as(const char *path, unsigned flags, const char *format, struct disk **out)
{
    return open_chain(path, flags, format, NULL, out);
}

char *disk_backing_path(const char *image, const char *name)
{
    char *copy, *path = NULL;

    if (name[0] == '/')
        return strdup(name);
    copy = strdup(image);
    if (!copy || asprintf(&path, "%s/%s", dirname(copy), name) < 0)
        path = NULL;
    free(copy);
    return path;
}

int disk_open_backing(struct disk *d, const char *name, const char *format)
{
    int r;

    d->backing_name = strdup(name);
    d->backing_path = disk_backing_path(d->path, name);
    d->backing_format = format ? strdup(format) : NULL;
    if (!d->backing_name || !d->backing_path || (format && !d->backing_format))
        return err_set(ENOMEM, "backing file name");
    if (d->flags & DISK_NO_BACKING)
        return 0;
    if (d->depth + 1 >= DISK_MAX_CHAIN)
        return err_plain(ELOOP, "backing chain deeper than %d images", DISK_MAX_CHAIN);
    r = open_chain(d->backing_path, (d->flags & ~DISK_READ_ONLY) | DISK_READ_ONLY, format, d,
                   &d->backing);
    if (r < 0)
        err_prefix("backing file");
    return r;
}

void disk_close(struct disk *d)
{
    if (!d)
        return;
    if (d->format && d->format->close)
        d->format->close(d);
    disk_close(d->backing);
    if (d->fd >= 0)
        close(d->fd);
    free(d->backing_name);
    free(d->backing_path);
    free(d->backing_format);
    free(d->path);
    free(d);
}

int disk_create(const char *format, const char *path, const struct disk_create_options *o)
{
    const struct disk_format *f = disk_format_find(format);
    if (!f)
        return err_plain(EINVAL, "unknown disk format '%s'", format);
    if (!f->create)
        return err_plain(ENOTSUP, "cannot create %s images", format);
    /* As qemu-img since 6.1: no image is written that a later open would
     * have to probe the backing file of. */
    if (o->backing && o->backing[0] && !o->backing_format)
        return err_plain(EINVAL, "a backing file needs its format (-F)");
    return f->create(path, o);
}

static int check_range(const struct disk *d, uint64_t offset, uint64_t len)
{
    uint64_t end;
    if (__builtin_add_overflow(offset, len, &end) || end > d->size)
        return -EINVAL;
    return 0;
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

int disk_read_backing(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    uint64_t len = iov_bytes(iov, n), have = 0;
    struct iovec part[1024];
    int count, r;

    if (d->backing && offset < d->backing->size)
        have = d->backing->size - offset < len ? d->backing->size - offset : len;
    /* A raw base's holes are not read (a qcow2 backing file skips its own
     * zero clusters as it reads). */
    bool raw = d->backing && d->backing->format == &disk_format_raw;
    for (uint64_t done = 0; done < have;) {
        struct disk_extent e = {DISK_EXTENT_DATA, have - done, 0};
        r = raw ? disk_status(d->backing, offset + done, have - done, &e) : 0;
        if (r < 0)
            return r;
        if (e.kind == DISK_EXTENT_ZERO) {
            iov_zero(iov, n, done, e.length);
        } else {
            count = iov_slice(iov, n, done, e.length, part, 1024);
            if (count < 0)
                return -EINVAL;
            r = disk_read(d->backing, part, count, offset + done);
            if (r < 0)
                return r;
        }
        done += e.length;
    }
    iov_zero(iov, n, have, len - have);
    return 0;
}

/* A guest that writes a qcow2 header into a raw disk whose format was
 * probed would, on the next open, get its backing file (any host file)
 * opened: refuse such writes, as QEMU does. new_head holds the guest's
 * bytes for [offset, offset+len) of the probed head (len <= PROBE_BYTES -
 * offset), copied once. */
static bool makes_other_format(struct disk *d, const uint8_t *new_head, uint64_t offset,
                               uint64_t len)
{
    uint8_t head[PROBE_BYTES];
    ssize_t got = pread(d->fd, head, sizeof(head), 0);
    uint64_t end = offset + len;

    if (got < 0)
        got = 0;
    if ((uint64_t)got < end) {
        memset(head + got, 0, end - (uint64_t)got);
        got = (ssize_t)end;
    }
    memcpy(head + offset, new_head, len);
    for (size_t i = 0; i < FORMAT_COUNT; i++)
        if (formats[i] != &disk_format_raw && formats[i]->probe(head, (size_t)got))
            return true;
    return false;
}

/* A write reaching the probed head of a probed raw disk: the head's bytes
 * are copied out of the request once, checked, and written from that copy
 * (a bounce buffer, as QEMU's raw driver does), so a second vCPU changing
 * guest memory between the check and the write cannot slip a header in.
 * The copy runs to the first 4 KiB boundary, aligned: with O_DIRECT, the
 * pieces stay multiples of any logical block size the request was. */
#define BOUNCE_BYTES 4096

static ssize_t write_probed_head(struct disk *d, const struct iovec *iov, int n,
                                 uint64_t offset, uint64_t len)
{
    _Alignas(BOUNCE_BYTES) uint8_t head[BOUNCE_BYTES];
    struct iovec parts[1025];
    uint64_t copied = len < BOUNCE_BYTES - offset ? len : BOUNCE_BYTES - offset;
    uint64_t checked = copied < PROBE_BYTES - offset ? copied : PROBE_BYTES - offset;
    int count = 0;

    iov_to_buf(iov, n, 0, head, copied);
    if (makes_other_format(d, head, offset, checked)) {
        fprintf(stderr, "smolvm: disk '%s': refused a write that would make this raw image "
                        "look like another format (give format=raw to allow it)\n", d->path);
        return -EPERM;
    }
    parts[0] = (struct iovec){head, copied};
    if (len > copied && (count = iov_slice(iov, n, copied, len - copied, parts + 1, 1024)) < 0)
        return -EINVAL;
    return d->format->pwritev(d, parts, count + 1, offset);
}

int disk_write(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
{
    uint64_t len = iov_bytes(iov, n);
    ssize_t r;

    if (d->read_only)
        return -EROFS;
    if (check_range(d, offset, len) < 0)
        return -EINVAL;
    if (d->probed_raw && offset < PROBE_BYTES && len > 0)
        r = write_probed_head(d, iov, n, offset, len);
    else
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

int disk_status(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out)
{
    if (check_range(d, offset, len) < 0 || len == 0)
        return -EINVAL;
    if (d->format->status)
        return d->format->status(d, offset, len, out);
    *out = (struct disk_extent){DISK_EXTENT_DATA, len, offset};
    return 0;
}

int disk_status_chain(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out,
                      unsigned *depth)
{
    int r = disk_status(d, offset, len, out);

    *depth = 0;
    if (r < 0 || out->kind != DISK_EXTENT_UNALLOCATED)
        return r;
    if (!d->backing || offset >= d->backing->size) {
        out->kind = DISK_EXTENT_ZERO;
        out->absent = true;
        return 0;
    }
    uint64_t part = out->length;
    if (part > d->backing->size - offset)
        part = d->backing->size - offset;
    r = disk_status_chain(d->backing, offset, part, out, depth);
    ++*depth;
    return r;
}

int disk_check(struct disk *d, unsigned repair, struct disk_check_result *res)
{
    memset(res, 0, sizeof(*res));
    return d->format->check ? d->format->check(d, repair, res) : 0;
}

void disk_check_print(const struct disk_check_result *res, FILE *out)
{
    uint64_t corrupt = res->corruptions - res->corruptions_fixed;
    uint64_t leaks = res->leaks - res->leaks_fixed;

    if (res->first_error[0])
        fprintf(out, "ERROR %s\n", res->first_error);
    if (res->leaks_fixed || res->corruptions_fixed)
        fprintf(out, "The following inconsistencies were found and repaired:\n\n"
                     "    %llu leaked clusters\n    %llu corruptions\n\n",
                (unsigned long long)res->leaks_fixed, (unsigned long long)res->corruptions_fixed);
    if (corrupt)
        fprintf(out, "\n%llu errors were found on the image.\n"
                     "Data may be corrupted, or further writes to the image may corrupt it.\n",
                (unsigned long long)corrupt);
    if (leaks)
        fprintf(out, "\n%llu leaked clusters were found on the image.\n"
                     "This means waste of disk space, but no harm to data.\n",
                (unsigned long long)leaks);
    if (!corrupt && !leaks)
        fputs("No errors were found on the image.\n", out);
    if (res->total_clusters && res->allocated_clusters) { /* as qemu-img */
        double allocated = (double)res->allocated_clusters;
        fprintf(out, "%llu/%llu = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed "
                     "clusters\n",
                (unsigned long long)res->allocated_clusters,
                (unsigned long long)res->total_clusters,
                100.0 * (double)res->allocated_clusters / (double)res->total_clusters,
                100.0 * (double)res->fragmented_clusters / allocated,
                100.0 * (double)res->compressed_clusters / allocated);
    }
    if (res->image_end_offset)
        fprintf(out, "Image end offset: %llu\n", (unsigned long long)res->image_end_offset);
}

int disk_snapshot(struct disk *d, enum disk_snapshot_op op, const char *name)
{
    if (!d->format->snapshot)
        return err_plain(ENOTSUP, "%s images have no internal snapshots", d->format->name);
    if (op != DISK_SNAPSHOT_CREATE && d->read_only)
        return -EROFS;
    return d->format->snapshot(d, op, name);
}

int disk_snapshot_list(struct disk *d, struct json_t *list)
{
    return d->format->snapshot_list ? d->format->snapshot_list(d, list) : 0;
}

int disk_resize(struct disk *d, uint64_t size)
{
    if (d->read_only)
        return -EROFS;
    if (!d->format->resize)
        return err_plain(ENOTSUP, "%s images cannot be resized", d->format->name);
    return d->format->resize(d, size);
}

int disk_barrier(struct disk *d)
{
    if (d->flags & DISK_UNSAFE)
        return 0;
    return fdatasync(d->fd) < 0 ? -errno : 0;
}
