/* How large a new image would be (qemu-img measure): for an empty image
 * of a size, or for an image's content converted, in qcow2 or raw. */
#ifndef SMOLVM_DISK_MEASURE_H
#define SMOLVM_DISK_MEASURE_H

#include <stdbool.h>
#include <stdint.h>

#include "disk/disk.h"

struct disk_measure {
    uint64_t required;        /* bytes for the image as it would be written */
    uint64_t fully_allocated; /* bytes once every cluster is written */
};

/* format: "qcow2" or "raw"; o: size (when src is NULL), cluster_size and
 * refcount_bits (qcow2). src, when given, is read through its backing
 * chain: its data clusters count, its zero and unallocated ranges do not.
 * The same numbers as qemu-img measure's. */
int disk_measure(const char *format, const struct disk_create_options *o, struct disk *src,
                 struct disk_measure *out) __attribute__((warn_unused_result));

#endif
