/* Whole-disk operations on opened images: copy one into another (what
 * convert does) and compare two, both through their backing chains. */
#ifndef SMOLVM_DISK_COPY_H
#define SMOLVM_DISK_COPY_H

#include <stdint.h>

#include "disk/disk.h"

typedef void (*disk_progress_fn)(void *opaque, uint64_t done, uint64_t total);

/* Copies every byte of src that is not zero into dst (a fresh image that
 * reads as zeros), skipping zero ranges so dst stays sparse. */
int disk_copy(struct disk *src, struct disk *dst, disk_progress_fn progress, void *opaque)
    __attribute__((warn_unused_result));

/* 0 if a and b read the same (a longer one must be zeros past the other's
 * end), 1 if not (with *mismatch the first differing offset), or a
 * negative errno. */
int disk_compare(struct disk *a, struct disk *b, uint64_t *mismatch)
    __attribute__((warn_unused_result));

#endif
