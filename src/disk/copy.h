/* Whole-disk operations on opened images: copy one into another (what
 * convert does) and compare two, both through their backing chains. */
#ifndef SMOLVM_DISK_COPY_H
#define SMOLVM_DISK_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include "disk/disk.h"

typedef void (*disk_progress_fn)(void *opaque, uint64_t done, uint64_t total);

/* Copies every byte of src that is not zero into dst (a fresh image that
 * reads as zeros), skipping zero ranges so dst stays sparse; compressed
 * clusters where dst can store them and compress is set. */
int disk_copy(struct disk *src, struct disk *dst, bool compress, disk_progress_fn progress,
              void *opaque) __attribute__((warn_unused_result));

/* 0 if a and b read the same (a longer one must be zeros past the other's
 * end), 1 if not (with *mismatch the first differing offset), or a
 * negative errno. */
int disk_compare(struct disk *a, struct disk *b, uint64_t *mismatch)
    __attribute__((warn_unused_result));

/* Writes what the image at path holds itself into its backing file, then
 * (keep false) empties it, as `qemu-img commit`. */
int disk_commit(const char *path, const char *format, bool keep, disk_progress_fn progress,
                void *opaque) __attribute__((warn_unused_result));

/* Records backing, with its format (required, as qemu-img does), as the
 * backing file of the image at path; NULL or "" for none (the image then
 * stands alone). Unless unsafe, first copies into it every range the old
 * chain and the new backing file (or zeros) read differently, so its
 * content stays the same, as `qemu-img rebase`. The header changes last:
 * a failure leaves the image backed as it was. */
int disk_rebase(const char *path, const char *format, const char *backing,
                const char *backing_format, bool unsafe, disk_progress_fn progress, void *opaque)
    __attribute__((warn_unused_result));

#endif
