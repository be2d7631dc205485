/* ext2 file systems written from scratch (no mke2fs): a tree of
 * directories, files, symlinks and device nodes is described first, then
 * laid out and written in one go as revision 1 ext2 with sparse
 * superblock backups, 128-byte inodes, linear directories with file types,
 * files through direct, indirect, double- and triple-indirect blocks, fast
 * and slow symlinks, and holes where file data is zeros. */
#ifndef SMOLVM_IMAGE_EXT2_H
#define SMOLVM_IMAGE_EXT2_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ext2;

struct ext2_attr {
    mode_t mode; /* type and permissions */
    uint32_t uid, gid;
    uint32_t mtime;
};

/* block_size: 1024, 2048 or 4096; timestamp: of the file system itself
 * (the image is the same bytes for the same inputs). */
int ext2_new(unsigned block_size, uint32_t timestamp, struct ext2 **out)
    __attribute__((warn_unused_result));
void ext2_free(struct ext2 *e);

/* Paths are absolute in the image; missing parent directories are made
 * (0755, root). Adding a path twice replaces the first. All return 0 or a
 * negative errno with the message set. */
int ext2_add_dir(struct ext2 *e, const char *path, const struct ext2_attr *a)
    __attribute__((warn_unused_result));
/* The content of host_path (read when the image is written; its holes and
 * zero blocks stay holes). */
int ext2_add_file(struct ext2 *e, const char *path, const struct ext2_attr *a,
                  const char *host_path) __attribute__((warn_unused_result));
/* Content from memory (copied). */
int ext2_add_data(struct ext2 *e, const char *path, const struct ext2_attr *a, const void *data,
                  size_t len) __attribute__((warn_unused_result));
int ext2_add_symlink(struct ext2 *e, const char *path, const char *target,
                     const struct ext2_attr *a) __attribute__((warn_unused_result));
/* Character and block devices, FIFOs, sockets. */
int ext2_add_node(struct ext2 *e, const char *path, const struct ext2_attr *a, dev_t rdev)
    __attribute__((warn_unused_result));
/* A host directory tree, as it is (lstat: modes, owners, times, links). */
int ext2_add_tree(struct ext2 *e, const char *host_dir, const char *path)
    __attribute__((warn_unused_result));

/* Writes the image to path (created or truncated): at least min_bytes,
 * larger if the content needs it, with free room for writes. */
int ext2_write(struct ext2 *e, const char *path, uint64_t min_bytes)
    __attribute__((warn_unused_result));

#endif
