/* A passthrough file system over one host folder, as the FUSE server
 * (fuse.h) asks it: inodes are O_PATH descriptors held per node id, every
 * name a guest gives is one component resolved beneath its parent's
 * descriptor (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS, never following a symlink), so `..`, symlinks
 * (absolute or relative, swapped in at any time) and renames cannot take
 * a request outside the folder. A read-only share answers EROFS to every
 * change, on the host side. Node ids and file handles carry a generation:
 * stale or invented ones get ESTALE/EBADF, never another file. The inode
 * and handle tables are bounded (ENFILE/EMFILE past them).
 *
 * Every function returns 0 (or a count) on success and a negative errno
 * meant for the guest on failure; all are safe to call from several
 * threads at once. */
#ifndef SMOLVM_FS_PASSTHROUGH_H
#define SMOLVM_FS_PASSTHROUGH_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pt_fs;

struct pt_limits {
    uint32_t max_inodes;  /* O_PATH descriptors held for the guest's nodes */
    uint32_t max_handles; /* open files and directories */
};

/* The limits of each of a VM's shares: the descriptors RLIMIT_NOFILE
 * gives (raised to its hard limit) split between them, so that all the
 * VM's shares together cannot exhaust the VMM's descriptors. */
void pt_vm_limits(struct pt_limits *l, unsigned shares);

/* Opens root (a directory) for serving. limits NULL: pt_vm_limits() of one
 * share. 0, or a negative errno with
 * an err_set() message naming root. */
int pt_new(const char *root, bool read_only, const struct pt_limits *limits, struct pt_fs **out)
    __attribute__((warn_unused_result));
void pt_free(struct pt_fs *fs);
bool pt_read_only(const struct pt_fs *fs);

/* The guest unmounted or the device was reset: every node but the root is
 * forgotten, every handle closed. */
void pt_reset(struct pt_fs *fs);
/* Across a snapshot: the guest's node ids and open handles as paths
 * beneath the folder (with their generations, lookup counts and open
 * flags). A restore into a fresh pt_fs, over the same folder or another
 * one given at start, opens each path again beneath the new root (the
 * saved paths are as hostile as any name: resolved with openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS); a node or handle whose file is
 * gone (deleted, moved out, swapped for a symlink) stays unknown: ESTALE
 * or EBADF when the guest uses it, as if another client had removed it.
 * save: 0 or a negative errno; restore: 0, or -EINVAL with a message for
 * a malformed record. */
struct blob;
struct blob_reader;
int pt_save(struct pt_fs *fs, struct blob *out);
int pt_restore(struct pt_fs *fs, struct blob_reader *in);

/* Nodes and handles in use (for tests and limits). */
void pt_counts(struct pt_fs *fs, uint32_t *inodes, uint32_t *handles);

/* name: one path component (no '/', not "." or "..", at most NAME_MAX
 * bytes): checked here too. A name not there is an entry with node id 0,
 * which the guest keeps as a negative entry as long as a found one (a
 * compiler asks its include folders for the same missing headers again
 * and again; -ENOENT would be cached for no time). */
int pt_lookup(struct pt_fs *fs, uint64_t parent, const char *name, struct fuse_entry_out *e);
void pt_forget(struct pt_fs *fs, uint64_t node, uint64_t nlookup);
int pt_getattr(struct pt_fs *fs, uint64_t node, struct fuse_attr_out *a);
int pt_setattr(struct pt_fs *fs, uint64_t node, const struct fuse_setattr_in *in,
               struct fuse_attr_out *a);
/* The link's target into buf (not NUL-terminated): its length. */
int pt_readlink(struct pt_fs *fs, uint64_t node, char *buf, size_t cap);
int pt_symlink(struct pt_fs *fs, uint64_t parent, const char *name, const char *target,
               struct fuse_entry_out *e);
int pt_mkdir(struct pt_fs *fs, uint64_t parent, const char *name, uint32_t mode,
             struct fuse_entry_out *e);
int pt_unlink(struct pt_fs *fs, uint64_t parent, const char *name);
int pt_rmdir(struct pt_fs *fs, uint64_t parent, const char *name);
/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE. */
int pt_rename(struct pt_fs *fs, uint64_t parent, const char *name, uint64_t new_parent,
              const char *new_name, uint32_t flags);
int pt_link(struct pt_fs *fs, uint64_t node, uint64_t new_parent, const char *new_name,
            struct fuse_entry_out *e);
int pt_statfs(struct pt_fs *fs, uint64_t node, struct fuse_kstatfs *st);
int pt_access(struct pt_fs *fs, uint64_t node, uint32_t mask);

/* Extended attributes: only user.* names (security.*, trusted.*, system.*
 * read as absent, ENODATA, and cannot be set or removed, EOPNOTSUPP; a
 * list shows only user.* names). get and list: the value's or the list's
 * length, copied into buf when size is not 0 (ERANGE when it does not
 * fit). flags: XATTR_CREATE, XATTR_REPLACE. */
long pt_getxattr(struct pt_fs *fs, uint64_t node, const char *name, void *buf, size_t size);
long pt_listxattr(struct pt_fs *fs, uint64_t node, char *buf, size_t size);
int pt_setxattr(struct pt_fs *fs, uint64_t node, const char *name, const void *value,
                size_t size, uint32_t flags);
int pt_removexattr(struct pt_fs *fs, uint64_t node, const char *name);

/* flags: the guest's open flags (O_ACCMODE, O_APPEND, O_TRUNC, O_SYNC are
 * honoured; creation flags are not, here). */
int pt_open(struct pt_fs *fs, uint64_t node, uint32_t flags, struct fuse_open_out *o);
int pt_create(struct pt_fs *fs, uint64_t parent, const char *name, uint32_t flags,
              uint32_t mode, struct fuse_entry_out *e, struct fuse_open_out *o);
int pt_opendir(struct pt_fs *fs, uint64_t node, struct fuse_open_out *o);
/* fh 0 is not a handle: nothing to release (0). */
int pt_release(struct pt_fs *fs, uint64_t fh);
/* The file operations below take the request's node and handle fh: fh 0
 * (a guest that opens files without asking the server, FUSE_NO_OPEN_SUPPORT)
 * means node's own file, opened for that request alone (a regular file
 * only, as pt_open); any other fh must be an open file's handle. */
/* Bytes read into / written from iov[0..count) (the guest's pages as
 * they are: no copy on the way). flags (a WRITE's): the guest's open flags,
 * of which O_APPEND, O_SYNC and O_DSYNC are honoured with fh 0. */
struct iovec;
long pt_read(struct pt_fs *fs, uint64_t node, uint64_t fh, uint64_t offset,
             const struct iovec *iov, int count);
long pt_write(struct pt_fs *fs, uint64_t node, uint64_t fh, uint32_t flags, uint64_t offset,
              const struct iovec *iov, int count);
int pt_fsync(struct pt_fs *fs, uint64_t node, uint64_t fh, bool datasync);
int pt_fallocate(struct pt_fs *fs, uint64_t node, uint64_t fh, uint32_t mode, uint64_t offset,
                 uint64_t len);
/* SEEK_DATA or SEEK_HOLE (SEEK_SET/CUR/END too): the new offset in *result. */
int pt_lseek(struct pt_fs *fs, uint64_t node, uint64_t fh, uint64_t offset, uint32_t whence,
             uint64_t *result);
/* Directory entries from offset (a previous entry's off, or 0) as struct
 * fuse_dirent records, or fuse_direntplus with plus (each entry looked up,
 * "." and ".." with a zero entry), into buf: the bytes used. */
long pt_readdir(struct pt_fs *fs, uint64_t fh, uint64_t offset, void *buf, size_t size, bool plus);

#endif
