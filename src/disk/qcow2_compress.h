/* Compression of single qcow2 clusters. */
#ifndef SMOLVM_DISK_QCOW2_COMPRESS_H
#define SMOLVM_DISK_QCOW2_COMPRESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Inflates in to exactly out_len bytes; -EIO if the data does not. */
int qcow2_decompress(unsigned type, const uint8_t *in, size_t in_len, uint8_t *out,
                     size_t out_len);
/* Returns the compressed size, or -ENOSPC when it does not fit out_cap
 * (the caller then stores the cluster uncompressed). */
ssize_t qcow2_compress(unsigned type, const uint8_t *in, size_t in_len, uint8_t *out,
                       size_t out_cap);

#endif
