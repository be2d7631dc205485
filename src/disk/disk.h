/* The disk image interface virtio-blk talks to. Each format (raw today;
 * qcow2, vmdk, vdi, vhd next) is a struct disk_format in a table probed in
 * order, formats with a magic number first and raw last. */
#ifndef SMOLVM_DISK_DISK_H
#define SMOLVM_DISK_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define DISK_READ_ONLY 1u
#define DISK_DIRECT 2u /* O_DIRECT: bypass the host page cache */

struct disk;

struct disk_format {
    const char *name;
    /* 1 when the first bytes of the file (head, len) are this format's. */
    int (*probe)(const uint8_t *head, size_t len);
    int (*open)(struct disk *d);
    ssize_t (*preadv)(struct disk *d, const struct iovec *iov, int n, uint64_t offset);
    ssize_t (*pwritev)(struct disk *d, const struct iovec *iov, int n, uint64_t offset);
    int (*flush)(struct disk *d);
    /* Deallocate (discard) or zero a range; zeroed ranges read back zeros. */
    int (*discard)(struct disk *d, uint64_t offset, uint64_t len);
    int (*write_zeroes)(struct disk *d, uint64_t offset, uint64_t len);
    void (*close)(struct disk *d);
};

struct disk {
    const struct disk_format *format;
    int fd;
    uint64_t size; /* virtual size in bytes */
    bool read_only;
    void *priv;
};

/* Opens path, probing its format; a read-only disk refuses writes here, at
 * the library boundary. Writable images are locked against a second
 * writer (flock). */
int disk_open(const char *path, unsigned flags, struct disk **out)
    __attribute__((warn_unused_result));
void disk_close(struct disk *d);

/* All return 0 or a negative errno (-EROFS on a read-only disk, -EINVAL
 * outside the disk). */
int disk_read(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
    __attribute__((warn_unused_result));
int disk_write(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
    __attribute__((warn_unused_result));
int disk_flush(struct disk *d) __attribute__((warn_unused_result));
int disk_discard(struct disk *d, uint64_t offset, uint64_t len) __attribute__((warn_unused_result));
int disk_write_zeroes(struct disk *d, uint64_t offset, uint64_t len)
    __attribute__((warn_unused_result));

extern const struct disk_format disk_format_raw;

#endif
