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
#define DISK_NO_BACKING 4u /* do not open backing files (info, fuzzing) */
#define DISK_CHECKING 8u   /* open damaged images too, to check or repair them */
#define DISK_NO_LOCK 16u   /* read-only, beside the writer of a paused VM in this process */
#define DISK_UNSAFE 32u    /* no syncs at all (qemu's cache=unsafe): a new image being filled */

/* Set by the command line, which prints every error itself: drivers then
 * only record what they find (err_set) instead of also printing it. */
extern bool disk_quiet;

/* Backing chains deeper than this are refused (and so are cycles). */
#define DISK_MAX_CHAIN 64

struct disk;
struct json_t;
struct disk_check_result;

/* What a range of a disk is, for map, convert and copy-on-write. */
enum disk_extent_kind {
    DISK_EXTENT_DATA,        /* stored in this image */
    DISK_EXTENT_ZERO,        /* reads as zeros, stored nowhere */
    DISK_EXTENT_UNALLOCATED, /* not in this image: comes from the backing file */
};

struct disk_extent {
    enum disk_extent_kind kind;
    uint64_t length;
    uint64_t host_offset; /* DATA only; UINT64_MAX when not a plain offset */
    bool absent;          /* disk_status_chain: no image in the chain has it */
};

enum disk_snapshot_op { DISK_SNAPSHOT_CREATE, DISK_SNAPSHOT_APPLY, DISK_SNAPSHOT_DELETE };

struct disk_create_options {
    uint64_t size;
    const char *backing;        /* as recorded in the image; NULL for none */
    const char *backing_format; /* required with backing (as qemu-img) */
    uint32_t cluster_size;      /* 0: the format's default */
    unsigned refcount_bits;     /* 0: 16 */
    bool lazy_refcounts;
    unsigned compat_version; /* qcow2: 2 or 3; 0: 3 */
    bool zstd;               /* qcow2: compressed clusters in zstd, not deflate */
    bool fixed;              /* vpc, vdi: all space allocated up front */
};

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
    /* What [offset, offset+len) is, from offset on: fills out with the
     * first extent (length <= len). Optional: absent means all data. */
    int (*status)(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out);
    /* Adds format-specific fields to an info object. Optional. */
    int (*describe)(struct disk *d, struct json_t *info);
    /* Changes the virtual size. Optional. */
    int (*resize)(struct disk *d, uint64_t size);
    /* Records another backing file (NULL: none) without touching data. */
    int (*set_backing)(struct disk *d, const char *name, const char *format);
    /* Drops all data, so every read goes to the backing file. */
    int (*make_empty)(struct disk *d);
    /* Stores one whole cluster compressed (offset cluster-aligned).
     * Optional: images written by convert -c. */
    int (*write_compressed)(struct disk *d, uint64_t offset, const uint8_t *cluster);
    /* Internal snapshots by name (or id). Optional. */
    int (*snapshot)(struct disk *d, enum disk_snapshot_op op, const char *name);
    /* Appends one object per internal snapshot to a JSON array. Optional. */
    int (*snapshot_list)(struct disk *d, struct json_t *list);
    /* Checks metadata (check.h). Optional. */
    int (*check)(struct disk *d, unsigned repair, struct disk_check_result *res);
    /* Creates an empty image at path (which must not exist). Optional. */
    int (*create)(const char *path, const struct disk_create_options *o);
};

struct disk {
    const struct disk_format *format;
    int fd;
    uint64_t size; /* virtual size in bytes */
    uint32_t cluster_size; /* allocation unit, where the format has one (0: none) */
    bool read_only;
    bool probed_raw; /* raw by probing: the guest may not write another format's magic */
    unsigned flags;          /* DISK_* as opened */
    char *path;
    struct disk *backing;    /* read-only, or NULL */
    char *backing_name;      /* the backing file's name as recorded in the image */
    char *backing_path;      /* the backing file's path resolved (even when not opened) */
    char *backing_format;    /* as recorded, or NULL */
    unsigned depth;          /* 0 for the image opened, 1 for its backing file, ... */
    const struct disk *child; /* the image this is the backing file of */
    dev_t dev;
    ino_t ino;
    void *priv;
};

/* Opens path, probing its format; a read-only disk refuses writes here, at
 * the library boundary. Writable images are locked against a second
 * writer (flock). */
int disk_open(const char *path, unsigned flags, struct disk **out)
    __attribute__((warn_unused_result));
/* Like disk_open with the format given (NULL: probe), as users do for raw
 * files that could look like another format. */
int disk_open_as(const char *path, unsigned flags, const char *format, struct disk **out)
    __attribute__((warn_unused_result));
void disk_close(struct disk *d);

/* Opens the backing file name as recorded in d (relative names are relative
 * to d's directory), with format as recorded in d; NULL (not recorded):
 * raw, and refused when its bytes look like another format (never probed
 * into one). For the format drivers. Refuses chains deeper than
 * DISK_MAX_CHAIN and cycles. */
int disk_open_backing(struct disk *d, const char *name, const char *format)
    __attribute__((warn_unused_result));

/* The error (-EINVAL, message set) for image's backing file whose format
 * image does not record and whose bytes look like looks_like, not raw. */
int disk_refuse_unrecorded(const char *backing, const char *looks_like, const char *image);

/* Where a backing file name recorded in image points: relative names are
 * relative to image's folder. malloc'd, NULL when out of memory. */
char *disk_backing_path(const char *image, const char *name);

/* The format called name, or NULL. */
const struct disk_format *disk_format_find(const char *name);

/* Creates an image of the named format. */
int disk_create(const char *format, const char *path, const struct disk_create_options *o)
    __attribute__((warn_unused_result));

/* Changes the virtual size (shrinking drops what is past the end). */
int disk_resize(struct disk *d, uint64_t size) __attribute__((warn_unused_result));

/* Creates, applies (reverts the disk to) or deletes an internal snapshot;
 * -ENOTSUP for formats without them. */
int disk_snapshot(struct disk *d, enum disk_snapshot_op op, const char *name)
    __attribute__((warn_unused_result));
int disk_snapshot_list(struct disk *d, struct json_t *list) __attribute__((warn_unused_result));

/* The first extent of [offset, offset+len). */
int disk_status(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out)
    __attribute__((warn_unused_result));

/* Like disk_status through the backing chain: DATA or ZERO only, and
 * *depth is the image in the chain that holds it (0: d itself). */
int disk_status_chain(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out,
                      unsigned *depth) __attribute__((warn_unused_result));

/* Reads from d's backing file for an unallocated range: zeros where there
 * is no backing file or it is shorter. */
int disk_read_backing(struct disk *d, const struct iovec *iov, int n, uint64_t offset)
    __attribute__((warn_unused_result));

/* fdatasync of d's file, unless d was opened DISK_UNSAFE: the ordering
 * points of the format drivers. 0 or a negative errno. */
int disk_barrier(struct disk *d) __attribute__((warn_unused_result));

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
extern const struct disk_format disk_format_qcow2;
extern const struct disk_format disk_format_vhd;
extern const struct disk_format disk_format_vdi;
extern const struct disk_format disk_format_vmdk;

#endif
