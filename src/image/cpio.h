/* cpio "newc" archives (what the kernel unpacks as an initramfs), built in
 * memory: directories, files, symlinks and device nodes, then the
 * trailer. */
#ifndef SMOLVM_IMAGE_CPIO_H
#define SMOLVM_IMAGE_CPIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/blob.h"

struct cpio {
    struct blob out;
    uint32_t next_ino;
    uint32_t mtime; /* of every entry: archives built from the same inputs are the same bytes */
};

struct cpio_entry {
    const char *name; /* no leading "/" */
    mode_t mode;      /* type and permissions */
    uint32_t uid, gid;
    const void *data; /* file content or symlink target */
    size_t len;
    uint32_t rdev_major, rdev_minor;
};

void cpio_init(struct cpio *c, uint32_t mtime);
/* 0, or -ENAMETOOLONG / -ENOMEM (message set). */
int cpio_add(struct cpio *c, const struct cpio_entry *e) __attribute__((warn_unused_result));
int cpio_add_dir(struct cpio *c, const char *name, mode_t perm) __attribute__((warn_unused_result));
int cpio_add_file(struct cpio *c, const char *name, mode_t perm, const void *data, size_t len)
    __attribute__((warn_unused_result));
int cpio_add_symlink(struct cpio *c, const char *name, const char *target)
    __attribute__((warn_unused_result));
/* Appends the trailer; the archive is then c->out.data, c->out.len. */
int cpio_finish(struct cpio *c) __attribute__((warn_unused_result));
void cpio_free(struct cpio *c);

#endif
