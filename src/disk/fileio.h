/* File I/O for the format drivers: whole transfers (retrying short ones,
 * reads past the end of the file are zeros) and new image files. */
#ifndef SMOLVM_DISK_FILEIO_H
#define SMOLVM_DISK_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* All of len bytes from or to the file at offset; 0 or a negative errno. */
int disk_pread_all(int fd, void *buf, size_t len, uint64_t offset);
int disk_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset);
/* The same for bytes [skip, skip+len) of an iovec. */
int disk_iov_io(int fd, const struct iovec *iov, int n, uint64_t skip, uint64_t len,
                uint64_t offset, bool write);

/* Creates path (which must not exist) holding head at offset 0, sized to
 * size (a hole past head), with tail after that; synced. Removed again on
 * failure, with the message set. */
int disk_write_new(const char *path, const void *head, size_t head_len, uint64_t size,
                   const void *tail, size_t tail_len);

#endif
