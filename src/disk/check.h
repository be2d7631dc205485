/* Metadata consistency checks (qemu-img check): which clusters the
 * image's tables use against the refcounts it stores. */
#ifndef SMOLVM_DISK_CHECK_H
#define SMOLVM_DISK_CHECK_H

#include <stdint.h>
#include <stdio.h>

#include "disk/disk.h"

#define DISK_REPAIR_LEAKS 1u  /* drop refcounts nothing uses */
#define DISK_REPAIR_ERRORS 2u /* raise refcounts below their use */

struct disk_check_result {
    uint64_t corruptions, leaks;
    uint64_t corruptions_fixed, leaks_fixed;
    uint64_t allocated_clusters, total_clusters;
    uint64_t image_end_offset; /* past the last cluster used or counted (qemu-img's) */
    uint64_t compressed_clusters, fragmented_clusters; /* of the allocated ones */
    char first_error[200];
};

/* Checks d (opened writable with DISK_CHECKING to repair). Formats
 * without metadata to check report nothing. */
int disk_check(struct disk *d, unsigned repair, struct disk_check_result *res)
    __attribute__((warn_unused_result));

/* qemu-img's summary lines. */
void disk_check_print(const struct disk_check_result *res, FILE *out);

#endif
