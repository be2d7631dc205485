/* Changing an image's options in place (qemu-img amend): qcow2's compat
 * level (0.10 or 1.1) and lazy refcounts. */
#ifndef SMOLVM_DISK_AMEND_H
#define SMOLVM_DISK_AMEND_H

#include "disk/disk.h"

struct disk_amend_options {
    unsigned compat_version; /* 0: unchanged; 2 (compat=0.10) or 3 (compat=1.1) */
    int lazy_refcounts;      /* -1: unchanged; 0 off; 1 on (compat=1.1 only) */
};

/* d opened writable, without its backing chain. What cannot be done safely
 * is refused by name, with the image untouched: a downgrade of an image
 * with refcounts other than 16 bits, internal snapshots, v3-only features
 * (extended L2, zstd, bitmaps) or zero clusters over a backing file. */
int disk_amend(struct disk *d, const struct disk_amend_options *o)
    __attribute__((warn_unused_result));

#endif
