/* What the block-table formats (VHD, VDI, VMDK) share: the disk is cut
 * into equal units (blocks, grains); a table maps each to a place in the
 * file or to nothing (reads as zeros); a write to nothing allocates the
 * unit first. Each driver supplies the lookup and the allocation; this
 * file does the reading, writing, zeroing and status around them. */
#ifndef SMOLVM_DISK_BLOCKMAP_H
#define SMOLVM_DISK_BLOCKMAP_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "disk/disk.h"
#include "disk/fileio.h"

#define BLOCKMAP_NONE UINT64_MAX

struct blockmap {
    pthread_mutex_t lock; /* around lookups and allocations */
    /* Host offset of guest offset and how many bytes follow it in its
     * unit; BLOCKMAP_NONE when the unit has no place yet. */
    uint64_t (*locate)(struct disk *d, uint64_t offset, uint64_t *run);
    /* Gives the unit holding offset a place (called with the lock). */
    int (*allocate)(struct disk *d, uint64_t offset);
};

/* The struct disk_format operations of such a driver, whose d->priv
 * starts with its struct blockmap. */
ssize_t blockmap_preadv(struct disk *d, const struct iovec *iov, int n, uint64_t offset);
ssize_t blockmap_pwritev(struct disk *d, const struct iovec *iov, int n, uint64_t offset);
int blockmap_flush(struct disk *d);
/* Zeros where a unit has a place; units without one read zeros already. */
int blockmap_write_zeroes(struct disk *d, uint64_t offset, uint64_t len);
int blockmap_status(struct disk *d, uint64_t offset, uint64_t len, struct disk_extent *out);

#endif
