/* Whole input files in memory (kernels, initrds), with one-line errors
 * that name the file and its role. */
#ifndef SMOLVM_UTIL_FILE_H
#define SMOLVM_UTIL_FILE_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <stdint.h>

struct mapped_file {
    const uint8_t *data;
    size_t len;
    bool mmapped;
};

/* what names the file's role in messages ("kernel", "initrd"). Empty files,
 * directories and unreadable files are errors. */
int file_map(const char *path, const char *what, struct mapped_file *out)
    __attribute__((warn_unused_result));
/* file_map of a file that is refused, before it is read, when larger than
 * max_len (a file of a known format whose size has a bound). */
int file_map_at_most(const char *path, const char *what, size_t max_len, struct mapped_file *out)
    __attribute__((warn_unused_result));
/* As file_map, but mapped instead of read: for large files of which only parts
 * are used (a bundle's memory section on a start from the cache). The file
 * must not shrink while mapped. */
int file_map_lazy(const char *path, const char *what, struct mapped_file *out)
    __attribute__((warn_unused_result));
void file_unmap(struct mapped_file *f);
/* Opens path read-only with file_map's checks (a non-empty regular file)
 * and messages: its fd (to close), its size in *size; or -errno. For a file
 * read where it is used, with file_read_exact. */
int file_open_read(const char *path, const char *what, size_t *size)
    __attribute__((warn_unused_result));
/* Reads the first len bytes of fd into dst (EINTR and short reads
 * retried); a file that ends sooner (it shrank) is an error naming it. */
int file_read_exact(int fd, void *dst, size_t len, const char *what, const char *path)
    __attribute__((warn_unused_result));
/* The same for the len bytes at offset. */
int file_pread_exact(int fd, void *dst, size_t len, uint64_t offset, const char *what,
                     const char *path) __attribute__((warn_unused_result));

/* Writes all of data at fd's position (short writes and EINTR retried);
 * a failure names path. */
int file_write_all(int fd, const void *data, size_t len, const char *path)
    __attribute__((warn_unused_result));
/* A temporary file of ours: path is created, never opened when something
 * is there (a symlink or hard link planted at a predictable temporary name
 * must not make us write through it). An fd opened O_RDWR, or a negative
 * errno with the message set. */
int file_create_exclusive(const char *path, mode_t mode) __attribute__((warn_unused_result));
/* file_create_exclusive after removing whatever is at path: for names in
 * folders another (possibly compromised, jailed) VMM of the user can write
 * — the shared cache, an instance folder — where a name left there, a
 * symlink above all, is never written through but replaced. */
int file_create_fresh(const char *path, mode_t mode) __attribute__((warn_unused_result));
/* Creates (or truncates) path with len bytes of data, synced; a symlink at
 * path is refused. 0 or a negative errno with the message set. */
int file_write_new(const char *path, const void *data, size_t len)
    __attribute__((warn_unused_result));

/* path replaced whole by len bytes of data: written and synced under a
 * temporary name, then renamed, so a reader sees the old file or the new. */
int file_replace(const char *path, const void *data, size_t len)
    __attribute__((warn_unused_result));

/* A synced byte copy of from at to (created or truncated; not through a
 * symlink). */
int file_copy(const char *from, const char *to) __attribute__((warn_unused_result));

/* A synced copy of all fd holds (read from offset 0 on) at to, which is
 * made fresh (file_create_fresh): for a file checked through its fd, never
 * read again by name. 0 or a negative errno with the message set. */
int file_copy_fd(int fd, const char *to) __attribute__((warn_unused_result));

/* Files a (possibly compromised, jailed) VMM of the user writes, read by
 * the user's own smolvm outside its jail (docs/security.md): */
/* path opened read-only where it is a regular file reached beneath its own
 * folder: a symlink out of it (to one of the user's files) is refused, and
 * a FIFO there is never waited on. *st is its fstat. An fd, or -errno with
 * the message set (-ENOENT when nothing is there). */
int file_open_beneath(const char *path, const char *what, struct stat *st)
    __attribute__((warn_unused_result));
/* file_open_beneath as a stdio stream, for a VM's console log; NULL with
 * errno set (and no message kept) when it cannot be read so. */
FILE *file_fopen_beneath(const char *path);
/* path opened read-only, not through a symlink, where it is a regular file
 * of ours with no other name: not a hard link to one of the user's files
 * that the VMM made there. An fd, or -errno with the message set. */
int file_open_sole(const char *path, const char *what, struct stat *st)
    __attribute__((warn_unused_result));

/* The path matching pattern (glob) that sorts last by version
 * (strverscmp: vmlinuz-6.1.0-10 after -9), malloc'd; NULL when none does. */
char *file_newest(const char *pattern);

/* rm -rf path: 0 (also when it is not there) or a negative errno. */
int file_remove_tree(const char *path); /* cleanups may ignore it */

/* fsync of the file at path: its data is on disk before it is renamed
 * into place. 0 or -errno (errno set). */
int file_sync(const char *path);

#endif
