/* Scatter-gather helpers: drivers split one request's iovec into the
 * pieces that map to different places (clusters, grains, blocks). */
#ifndef SMOLVM_UTIL_IOV_H
#define SMOLVM_UTIL_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

uint64_t iov_bytes(const struct iovec *iov, int n);

/* Fills out (at most max entries) with the bytes [skip, skip+len) of iov;
 * returns the count of entries, or -1 if max is too small. */
int iov_slice(const struct iovec *iov, int n, uint64_t skip, uint64_t len, struct iovec *out,
              int max);

/* Copies between a flat buffer and the bytes [skip, skip+len) of iov. */
void iov_to_buf(const struct iovec *iov, int n, uint64_t skip, void *buf, size_t len);
void iov_from_buf(const struct iovec *iov, int n, uint64_t skip, const void *buf, size_t len);
void iov_zero(const struct iovec *iov, int n, uint64_t skip, uint64_t len);

/* 1 when all len bytes at buf are zero. */
int buf_is_zero(const void *buf, size_t len);

#endif
