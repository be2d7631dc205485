#include "fs/passthrough.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <linux/limits.h>
#include <unistd.h>

#include "util/blob.h"
#include "util/err.h"

#define DEFAULT_MAX_INODES (1u << 16)
#define DEFAULT_MAX_HANDLES 4096u
/* How long the guest may cache names and attributes: short, so what the
 * host changes shows in the guest within a second. */
#define CACHE_SECONDS 1
#define DIRENT_BUF 32768

struct pt_inode {
    int fd; /* O_PATH|O_NOFOLLOW; -1: free slot */
    dev_t dev;
    ino_t ino;
    mode_t type;    /* S_IFMT bits: an inode never changes type */
    uint32_t gen;   /* bumped on each reuse of the slot */
    uint64_t nlookup; /* the guest's references (lookups minus forgets) */
    uint32_t refs;  /* requests using fd right now */
    uint32_t next;  /* hash chain: slot + 1, 0 ends */
};

struct pt_handle {
    int fd; /* -1: free slot */
    uint32_t gen;
    uint32_t refs;
    bool released; /* closed once the last request using it is done */
    bool dir;
    int flags; /* what it was opened with, for a reopen after a restore */
    pthread_mutex_t dir_lock; /* readdir seeks the shared descriptor */
};

struct pt_fs {
    bool read_only;
    uid_t owner; /* our effective user: whose files we may chmod */
    int proc_fd; /* /proc/self/fd, to reopen our own O_PATH descriptors */
    pthread_mutex_t lock;
    /* Held across a mode that is briefly not the file's own (reopen_owned)
     * and by every other mode change, which must neither be undone by
     * that restore nor read the brief mode as the file's. */
    pthread_mutex_t mode_lock;
    uint32_t max_inodes, max_handles, inode_count, handle_count;
    struct pt_inode *inodes; /* [0] is the root */
    uint32_t *buckets;       /* max_inodes entries: slot + 1, 0 empty */
    uint32_t *free_inodes, free_inode_top;
    struct pt_handle *handles;
    uint32_t *free_handles, free_handle_top;
};

/* ---- the inode table ---- */

static uint32_t bucket_of(const struct pt_fs *fs, dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;
    return (uint32_t)((h >> 32) % fs->max_inodes);
}

static uint64_t node_id(const struct pt_fs *fs, const struct pt_inode *in)
{
    return (uint64_t)in->gen << 32 | (uint64_t)(in - fs->inodes + 1);
}

/* The inode a node id names, with a request reference, or NULL. */
static struct pt_inode *inode_get(struct pt_fs *fs, uint64_t node)
{
    uint64_t slot = (node & 0xffffffffu) - 1;
    struct pt_inode *in = NULL;

    pthread_mutex_lock(&fs->lock);
    if ((node & 0xffffffffu) != 0 && slot < fs->max_inodes && fs->inodes[slot].fd >= 0 &&
        fs->inodes[slot].gen == node >> 32) {
        in = &fs->inodes[slot];
        in->refs++;
    }
    pthread_mutex_unlock(&fs->lock);
    return in;
}

static void unhash(struct pt_fs *fs, struct pt_inode *in)
{
    uint32_t *link = &fs->buckets[bucket_of(fs, in->dev, in->ino)];
    uint32_t slot = (uint32_t)(in - fs->inodes);

    while (*link && *link != slot + 1)
        link = &fs->inodes[*link - 1].next;
    if (*link)
        *link = in->next;
}

/* With the lock held: frees the slot when neither the guest nor a request
 * holds it any longer. The root is never freed. */
static void inode_maybe_free(struct pt_fs *fs, struct pt_inode *in)
{
    if (in == fs->inodes || in->nlookup || in->refs || in->fd < 0)
        return;
    unhash(fs, in);
    close(in->fd);
    in->fd = -1;
    fs->inode_count--;
    fs->free_inodes[fs->free_inode_top++] = (uint32_t)(in - fs->inodes);
}

static void inode_put(struct pt_fs *fs, struct pt_inode *in)
{
    if (!in)
        return;
    pthread_mutex_lock(&fs->lock);
    in->refs--;
    inode_maybe_free(fs, in);
    pthread_mutex_unlock(&fs->lock);
}

/* Takes fd (O_PATH, of the file st describes) into the table as one more
 * guest reference: the existing node for the same file, or a new one.
 * fd is consumed either way. */
static int inode_add(struct pt_fs *fs, int fd, const struct stat *st, uint64_t *node)
{
    uint32_t b = bucket_of(fs, st->st_dev, st->st_ino), slot;
    struct pt_inode *in;

    pthread_mutex_lock(&fs->lock);
    for (slot = fs->buckets[b]; slot; slot = fs->inodes[slot - 1].next) {
        in = &fs->inodes[slot - 1];
        if (in->dev == st->st_dev && in->ino == st->st_ino) {
            in->nlookup++;
            *node = node_id(fs, in);
            pthread_mutex_unlock(&fs->lock);
            close(fd);
            return 0;
        }
    }
    if (fs->free_inode_top == 0) {
        pthread_mutex_unlock(&fs->lock);
        close(fd);
        return -ENFILE;
    }
    slot = fs->free_inodes[--fs->free_inode_top];
    in = &fs->inodes[slot];
    in->fd = fd;
    in->dev = st->st_dev;
    in->ino = st->st_ino;
    in->type = st->st_mode & S_IFMT;
    in->gen = in->gen + 1 ? in->gen + 1 : 1;
    in->nlookup = 1;
    in->refs = 0;
    in->next = fs->buckets[b];
    fs->buckets[b] = slot + 1;
    fs->inode_count++;
    *node = node_id(fs, in);
    pthread_mutex_unlock(&fs->lock);
    return 0;
}

void pt_forget(struct pt_fs *fs, uint64_t node, uint64_t nlookup)
{
    struct pt_inode *in = inode_get(fs, node);

    if (!in)
        return;
    pthread_mutex_lock(&fs->lock);
    in->nlookup -= nlookup < in->nlookup ? nlookup : in->nlookup;
    pthread_mutex_unlock(&fs->lock);
    inode_put(fs, in);
}

/* ---- the handle table ---- */

static uint64_t handle_id(const struct pt_fs *fs, const struct pt_handle *h)
{
    return (uint64_t)h->gen << 32 | (uint64_t)(h - fs->handles);
}

/* fd is consumed either way. */
static int handle_add(struct pt_fs *fs, int fd, bool dir, int flags, uint64_t *fh)
{
    struct pt_handle *h;

    pthread_mutex_lock(&fs->lock);
    if (fs->free_handle_top == 0) {
        pthread_mutex_unlock(&fs->lock);
        close(fd);
        return -EMFILE;
    }
    h = &fs->handles[fs->free_handles[--fs->free_handle_top]];
    h->fd = fd;
    h->gen = h->gen + 1 ? h->gen + 1 : 1;
    h->refs = 0;
    h->released = false;
    h->dir = dir;
    h->flags = flags & ~(O_TRUNC | O_CREAT | O_EXCL);
    fs->handle_count++;
    *fh = handle_id(fs, h);
    pthread_mutex_unlock(&fs->lock);
    return 0;
}

static struct pt_handle *handle_get(struct pt_fs *fs, uint64_t fh)
{
    uint64_t slot = fh & 0xffffffffu;
    struct pt_handle *h = NULL;

    pthread_mutex_lock(&fs->lock);
    if (slot < fs->max_handles && fs->handles[slot].fd >= 0 && !fs->handles[slot].released &&
        fs->handles[slot].gen == fh >> 32) {
        h = &fs->handles[slot];
        h->refs++;
    }
    pthread_mutex_unlock(&fs->lock);
    return h;
}

static void handle_maybe_free(struct pt_fs *fs, struct pt_handle *h)
{
    if (!h->released || h->refs || h->fd < 0)
        return;
    close(h->fd);
    h->fd = -1;
    fs->handle_count--;
    fs->free_handles[fs->free_handle_top++] = (uint32_t)(h - fs->handles);
}

static void handle_put(struct pt_fs *fs, struct pt_handle *h)
{
    pthread_mutex_lock(&fs->lock);
    h->refs--;
    handle_maybe_free(fs, h);
    pthread_mutex_unlock(&fs->lock);
}

int pt_release(struct pt_fs *fs, uint64_t fh)
{
    struct pt_handle *h;

    if (fh == 0)
        return 0; /* the node's own file: nothing held */
    h = handle_get(fs, fh);
    if (!h)
        return -EBADF;
    pthread_mutex_lock(&fs->lock);
    h->released = true;
    h->refs--;
    handle_maybe_free(fs, h);
    pthread_mutex_unlock(&fs->lock);
    return 0;
}

/* ---- set-up ---- */

void pt_vm_limits(struct pt_limits *l, unsigned shares)
{
    struct rlimit r;
    uint64_t fds = 1024;

    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        /* Every node the guest's dentry cache holds is a descriptor here:
         * as many as we may have (past the hard limit when privileged, as
         * far as fs.nr_open allows). */
        struct rlimit want = {DEFAULT_MAX_INODES * 4ull, DEFAULT_MAX_INODES * 4ull};
        if (r.rlim_max < want.rlim_max && setrlimit(RLIMIT_NOFILE, &want) == 0)
            r = want;
        if (r.rlim_cur < r.rlim_max) {
            r.rlim_cur = r.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &r);
        }
        if (getrlimit(RLIMIT_NOFILE, &r) == 0)
            fds = r.rlim_cur == RLIM_INFINITY ? UINT32_MAX : r.rlim_cur;
    }
    /* Half the descriptors for nodes, an eighth for open files, split
     * between the VM's shares: the rest stays for the VMM (disks, sockets). */
    if (shares == 0)
        shares = 1;
    l->max_inodes = fds / 2 < DEFAULT_MAX_INODES ? (uint32_t)(fds / 2) : DEFAULT_MAX_INODES;
    l->max_handles = fds / 8 < DEFAULT_MAX_HANDLES ? (uint32_t)(fds / 8) : DEFAULT_MAX_HANDLES;
    l->max_inodes = l->max_inodes / shares > 2 ? l->max_inodes / shares : 2;
    l->max_handles = l->max_handles / shares > 1 ? l->max_handles / shares : 1;
}

static int open_root(struct pt_fs *fs, const char *root)
{
    struct stat st;
    int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    uint64_t node;

    if (fd < 0)
        return err_set(errno, "shared folder %s", root);
    if (fstat(fd, &st) < 0) {
        close(fd);
        return err_set(errno, "shared folder %s", root);
    }
    /* The first slot taken is 0; with generation 0 its node id is 1,
     * FUSE_ROOT_ID. */
    if (inode_add(fs, fd, &st, &node) < 0)
        return err_set(ENFILE, "shared folder %s", root);
    fs->inodes[0].gen = 0;
    return 0;
}

int pt_new(const char *root, bool read_only, const struct pt_limits *limits, struct pt_fs **out)
{
    struct pt_limits l;
    struct pt_fs *fs;
    int r;

    if (limits)
        l = *limits;
    else
        pt_vm_limits(&l, 1);
    if (l.max_inodes < 2 || l.max_handles < 1)
        return err_plain(EMFILE, "shared folder %s: too few descriptors", root);
    fs = calloc(1, sizeof(*fs));
    if (!fs)
        return err_set(ENOMEM, "shared folder %s", root);
    fs->read_only = read_only;
    fs->max_inodes = l.max_inodes;
    fs->max_handles = l.max_handles;
    fs->owner = geteuid();
    fs->proc_fd = -1;
    pthread_mutex_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->mode_lock, NULL);
    fs->inodes = calloc(l.max_inodes, sizeof(*fs->inodes));
    fs->buckets = calloc(l.max_inodes, sizeof(*fs->buckets));
    fs->free_inodes = calloc(l.max_inodes, sizeof(*fs->free_inodes));
    fs->handles = calloc(l.max_handles, sizeof(*fs->handles));
    fs->free_handles = calloc(l.max_handles, sizeof(*fs->free_handles));
    if (!fs->inodes || !fs->buckets || !fs->free_inodes || !fs->handles || !fs->free_handles) {
        pt_free(fs);
        return err_set(ENOMEM, "shared folder %s", root);
    }
    /* Free stacks popped from the top: the root gets slot 0 first. */
    for (uint32_t i = 0; i < l.max_inodes; i++) {
        fs->inodes[i].fd = -1;
        fs->free_inodes[fs->free_inode_top++] = l.max_inodes - 1 - i;
    }
    for (uint32_t i = 0; i < l.max_handles; i++) {
        fs->handles[i].fd = -1;
        pthread_mutex_init(&fs->handles[i].dir_lock, NULL);
        fs->free_handles[fs->free_handle_top++] = l.max_handles - 1 - i;
    }
    fs->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fs->proc_fd < 0) {
        r = err_set(errno, "shared folder %s: /proc/self/fd", root);
        pt_free(fs);
        return r;
    }
    r = open_root(fs, root);
    if (r < 0) {
        pt_free(fs);
        return r;
    }
    *out = fs;
    return 0;
}

static void close_all(struct pt_fs *fs, bool keep_root)
{
    for (uint32_t i = 0; i < fs->max_handles; i++) {
        fs->handles[i].released = true;
        handle_maybe_free(fs, &fs->handles[i]);
    }
    for (uint32_t i = keep_root ? 1 : 0; i < fs->max_inodes; i++) {
        fs->inodes[i].nlookup = 0;
        inode_maybe_free(fs, &fs->inodes[i]);
    }
}

void pt_reset(struct pt_fs *fs)
{
    pthread_mutex_lock(&fs->lock);
    close_all(fs, true);
    pthread_mutex_unlock(&fs->lock);
}

void pt_free(struct pt_fs *fs)
{
    if (!fs)
        return;
    if (fs->inodes && fs->handles) {
        close_all(fs, true);
        if (fs->inodes[0].fd >= 0)
            close(fs->inodes[0].fd);
    }
    for (uint32_t i = 0; fs->handles && i < fs->max_handles; i++)
        pthread_mutex_destroy(&fs->handles[i].dir_lock);
    if (fs->proc_fd >= 0)
        close(fs->proc_fd);
    pthread_mutex_destroy(&fs->lock);
    pthread_mutex_destroy(&fs->mode_lock);
    free(fs->inodes);
    free(fs->buckets);
    free(fs->free_inodes);
    free(fs->handles);
    free(fs->free_handles);
    free(fs);
}

bool pt_read_only(const struct pt_fs *fs)
{
    return fs->read_only;
}

void pt_counts(struct pt_fs *fs, uint32_t *inodes, uint32_t *handles)
{
    pthread_mutex_lock(&fs->lock);
    *inodes = fs->inode_count;
    *handles = fs->handle_count;
    pthread_mutex_unlock(&fs->lock);
}

/* ---- host helpers ---- */

static bool valid_name(const char *name)
{
    size_t len = strnlen(name, NAME_MAX + 1);
    return len > 0 && len <= NAME_MAX && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* One component beneath dirfd, the component itself (a symlink is opened
 * as the link, never followed). openat2 refuses anything that would leave
 * dirfd even if the name check above were wrong; without openat2 (before
 * Linux 5.6) the checked single name with O_NOFOLLOW cannot leave it either. */
static int open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));

    if (fd < 0 && errno == ENOSYS)
        fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    return fd < 0 ? -errno : (int)fd;
}

/* Our own descriptor fd, opened again with flags (its /proc/self/fd link:
 * the same file, whatever its names are now). */
static int reopen(struct pt_fs *fs, int fd, int flags)
{
    char name[16];
    int r;

    snprintf(name, sizeof(name), "%d", fd);
    r = openat(fs->proc_fd, name, flags | O_CLOEXEC);
    return r < 0 ? -errno : r;
}

static void fill_attr(struct fuse_attr *a, const struct stat *st)
{
    *a = (struct fuse_attr){
        .ino = st->st_ino,
        .size = (uint64_t)st->st_size,
        .blocks = (uint64_t)st->st_blocks,
        .atime = (uint64_t)st->st_atim.tv_sec,
        .mtime = (uint64_t)st->st_mtim.tv_sec,
        .ctime = (uint64_t)st->st_ctim.tv_sec,
        .atimensec = (uint32_t)st->st_atim.tv_nsec,
        .mtimensec = (uint32_t)st->st_mtim.tv_nsec,
        .ctimensec = (uint32_t)st->st_ctim.tv_nsec,
        .mode = st->st_mode,
        .nlink = (uint32_t)st->st_nlink,
        .uid = st->st_uid,
        .gid = st->st_gid,
        .rdev = (uint32_t)st->st_rdev,
        .blksize = (uint32_t)st->st_blksize,
    };
}

/* The permission bits a guest may set: no set-user-ID or set-group-ID
 * file, which the host's users could run with smolvm's owner's (root's)
 * rights; a directory keeps set-group-ID (group inheritance). */
static mode_t guest_mode(uint32_t mode, bool dir)
{
    return (mode_t)(mode & (dir ? 03777u : 01777u));
}

static int stat_fd(int fd, struct stat *st)
{
    return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* The owner bits that let us open a file with flags. */
static mode_t owner_bits(int flags)
{
    return ((flags & O_ACCMODE) != O_WRONLY ? S_IRUSR : 0) |
           ((flags & O_ACCMODE) != O_RDONLY ? S_IWUSR : 0);
}

/* A file of ours whose mode refuses us the access asked (git writes its
 * objects through a file it creates 0444; cp copies a 0555 program into
 * a file made 0555, then writes it): opened with the owner's bit for that
 * access added for the open, then the mode put back. The guest's kernel
 * checked the access when the guest opened the file (virtio-fs mounts
 * with default_permissions), but a guest that opens without asking
 * (FUSE_NO_OPEN_SUPPORT) has each READ or WRITE reopen the file, and
 * without CAP_DAC_OVERRIDE (jailed, or smolvm not run by root) the host
 * would refuse what a local file system allows the creator's descriptor.
 * This grants the guest nothing new: it may chmod our files (SETATTR)
 * anyway. Never another user's file (the mode is theirs), never on a
 * read-only share (which changes nothing on the host). The brief mode
 * adds only our own bit; mode_lock keeps every other mode change from
 * reading it or being undone by the restore. fd or a negative errno. */
static int reopen_owned(struct pt_fs *fs, int path_fd, int flags)
{
    mode_t need = owner_bits(flags);
    struct stat st;
    char name[16];
    int fd;

    if (fs->read_only)
        return -EACCES;
    snprintf(name, sizeof(name), "%d", path_fd);
    pthread_mutex_lock(&fs->mode_lock);
    fd = stat_fd(path_fd, &st);
    if (fd == 0 && (st.st_uid != fs->owner || (st.st_mode & need) == need))
        fd = -EACCES; /* not ours, or refused for another reason */
    if (fd == 0 && fchmodat(fs->proc_fd, name, (st.st_mode & 07777) | need, 0) < 0)
        fd = -errno;
    if (fd == 0) {
        fd = reopen(fs, path_fd, flags);
        if (fchmodat(fs->proc_fd, name, st.st_mode & 07777, 0) < 0 && fd >= 0) {
            int err = errno;
            close(fd);
            fd = -err;
        }
    }
    pthread_mutex_unlock(&fs->mode_lock);
    return fd;
}

/* The regular file in opened with flags: as the guest's kernel allowed
 * it (reopen_owned). */
static int reopen_file(struct pt_fs *fs, struct pt_inode *in, int flags)
{
    int fd = reopen(fs, in->fd, flags);

    return fd == -EACCES ? reopen_owned(fs, in->fd, flags) : fd;
}

/* The set-ID bits a change to the file kills (kill_privs). */
static mode_t privs_to_kill(const struct stat *st)
{
    mode_t kill = st->st_mode & S_ISUID;

    if ((st->st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
        kill |= S_ISGID;
    return kill;
}

/* A file the guest changes (write, truncate) loses its set-user-ID bit
 * and its set-group-ID bit (when group-executable, as Linux does) first,
 * whoever writes in the guest: INIT leaves this to us
 * (FUSE_HANDLE_KILLPRIV, which spares the guest a GETATTR before each
 * chown), and the host kernel keeps them for smolvm's root (CAP_FSETID),
 * as a guest kernel keeps them for its root. Else a set-user-ID program
 * the host keeps in the share would run what a guest wrote with its
 * owner's rights. fd: open for writing. */
static int kill_privs(struct pt_fs *fs, int fd)
{
    struct stat st;
    int r = 0;

    if (fstat(fd, &st) < 0)
        return -errno;
    if (!privs_to_kill(&st))
        return 0; /* the common case: no lock taken */
    pthread_mutex_lock(&fs->mode_lock);
    if (fstat(fd, &st) < 0 || fchmod(fd, st.st_mode & 07777 & ~privs_to_kill(&st)) < 0)
        r = -errno;
    pthread_mutex_unlock(&fs->mode_lock);
    return r;
}

/* ---- names ---- */

/* The directory node parent for a request, or NULL with *r set. */
static struct pt_inode *dir_get(struct pt_fs *fs, uint64_t parent, const char *name, int *r)
{
    struct pt_inode *dir;

    *r = 0;
    if (name && !valid_name(name)) {
        *r = -EINVAL;
        return NULL;
    }
    dir = inode_get(fs, parent);
    if (!dir) {
        *r = -ESTALE;
        return NULL;
    }
    if (dir->type != S_IFDIR) {
        inode_put(fs, dir);
        *r = -ENOTDIR;
        return NULL;
    }
    return dir;
}

/* name in the open directory dirfd, into the table, as an entry. */
static int lookup_at(struct pt_fs *fs, int dirfd, const char *name, struct fuse_entry_out *e)
{
    struct stat st;
    int fd = open_beneath(dirfd, name, O_PATH, 0), r;

    if (fd < 0)
        return fd;
    r = stat_fd(fd, &st);
    if (r < 0) {
        close(fd);
        return r;
    }
    *e = (struct fuse_entry_out){.entry_valid = CACHE_SECONDS, .attr_valid = CACHE_SECONDS};
    r = inode_add(fs, fd, &st, &e->nodeid);
    if (r < 0)
        return r;
    e->generation = e->nodeid >> 32;
    fill_attr(&e->attr, &st);
    return 0;
}

int pt_lookup(struct pt_fs *fs, uint64_t parent, const char *name, struct fuse_entry_out *e)
{
    int r;
    struct pt_inode *dir = dir_get(fs, parent, name, &r);

    if (!dir)
        return r;
    r = lookup_at(fs, dir->fd, name, e);
    inode_put(fs, dir);
    if (r == -ENOENT) {
        *e = (struct fuse_entry_out){.entry_valid = CACHE_SECONDS};
        r = 0;
    }
    return r;
}

int pt_getattr(struct pt_fs *fs, uint64_t node, struct fuse_attr_out *a)
{
    struct pt_inode *in = inode_get(fs, node);
    struct stat st;
    int r;

    if (!in)
        return -ESTALE;
    r = stat_fd(in->fd, &st);
    inode_put(fs, in);
    if (r < 0)
        return r;
    *a = (struct fuse_attr_out){.attr_valid = CACHE_SECONDS};
    fill_attr(&a->attr, &st);
    return 0;
}

static int set_times(struct pt_fs *fs, struct pt_inode *in, int fd, const struct fuse_setattr_in *s)
{
    struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
    char name[16];

    if (s->valid & FATTR_ATIME_NOW)
        ts[0].tv_nsec = UTIME_NOW;
    else if (s->valid & FATTR_ATIME)
        ts[0] = (struct timespec){(time_t)s->atime, s->atimensec};
    if (s->valid & FATTR_MTIME_NOW)
        ts[1].tv_nsec = UTIME_NOW;
    else if (s->valid & FATTR_MTIME)
        ts[1] = (struct timespec){(time_t)s->mtime, s->mtimensec};
    if (ts[0].tv_nsec >= 1000000000 && ts[0].tv_nsec != UTIME_NOW && ts[0].tv_nsec != UTIME_OMIT)
        return -EINVAL;
    if (ts[1].tv_nsec >= 1000000000 && ts[1].tv_nsec != UTIME_NOW && ts[1].tv_nsec != UTIME_OMIT)
        return -EINVAL;
    if (fd >= 0)
        return futimens(fd, ts) < 0 ? -errno : 0;
    /* A symlink's /proc link would be followed: its times stay. */
    if (in->type == S_IFLNK)
        return -EOPNOTSUPP;
    snprintf(name, sizeof(name), "%d", in->fd);
    return utimensat(fs->proc_fd, name, ts, 0) < 0 ? -errno : 0;
}

static int truncate_fd(struct pt_fs *fs, int fd, uint64_t size)
{
    int r = kill_privs(fs, fd);

    return r < 0 ? r : ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
}

static int set_size(struct pt_fs *fs, struct pt_inode *in, int fd, uint64_t size)
{
    int r = 0;

    if (in->type == S_IFDIR)
        return -EISDIR;
    if (in->type != S_IFREG)
        return -EINVAL;
    if (size > INT64_MAX)
        return -EFBIG;
    if (fd >= 0)
        return truncate_fd(fs, fd, size);
    fd = reopen_file(fs, in, O_WRONLY);
    if (fd < 0)
        return fd;
    r = truncate_fd(fs, fd, size);
    close(fd);
    return r;
}

static int apply_setattr(struct pt_fs *fs, struct pt_inode *in, int fd,
                         const struct fuse_setattr_in *s)
{
    char name[16];
    int r = 0;

    snprintf(name, sizeof(name), "%d", in->fd);
    if (s->valid & FATTR_MODE) {
        if (in->type == S_IFLNK)
            return -EOPNOTSUPP;
        mode_t mode = guest_mode(s->mode, in->type == S_IFDIR);
        pthread_mutex_lock(&fs->mode_lock);
        r = fd >= 0 ? fchmod(fd, mode) : fchmodat(fs->proc_fd, name, mode, 0);
        r = r < 0 ? -errno : 0;
        pthread_mutex_unlock(&fs->mode_lock);
        if (r < 0)
            return r;
    }
    if (s->valid & (FATTR_UID | FATTR_GID)) {
        uid_t uid = (s->valid & FATTR_UID) ? s->uid : (uid_t)-1;
        gid_t gid = (s->valid & FATTR_GID) ? s->gid : (gid_t)-1;
        if (fchownat(in->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
            return -errno;
    }
    if (s->valid & FATTR_SIZE) {
        r = set_size(fs, in, fd, s->size);
        if (r < 0)
            return r;
    }
    if (s->valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW))
        r = set_times(fs, in, fd, s);
    return r;
}

#define FATTR_CHANGES (FATTR_MODE | FATTR_UID | FATTR_GID | FATTR_SIZE | FATTR_ATIME | \
                       FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)

int pt_setattr(struct pt_fs *fs, uint64_t node, const struct fuse_setattr_in *s,
               struct fuse_attr_out *a)
{
    struct pt_handle *h = NULL;
    struct pt_inode *in;
    int r;

    if (fs->read_only && (s->valid & FATTR_CHANGES))
        return -EROFS;
    in = inode_get(fs, node);
    if (!in)
        return -ESTALE;
    /* fh 0: the node's own file (FUSE_NO_OPEN_SUPPORT), opened below as
     * needed. */
    if ((s->valid & FATTR_FH) && s->fh != 0) {
        h = handle_get(fs, s->fh);
        if (!h) {
            inode_put(fs, in);
            return -EBADF;
        }
    }
    r = apply_setattr(fs, in, h && !h->dir ? h->fd : -1, s);
    if (h)
        handle_put(fs, h);
    inode_put(fs, in);
    return r < 0 ? r : pt_getattr(fs, node, a);
}

int pt_readlink(struct pt_fs *fs, uint64_t node, char *buf, size_t cap)
{
    struct pt_inode *in = inode_get(fs, node);
    ssize_t n;

    if (!in)
        return -ESTALE;
    n = in->type == S_IFLNK ? readlinkat(in->fd, "", buf, cap) : (errno = EINVAL, -1);
    inode_put(fs, in);
    return n < 0 ? -errno : (int)n;
}

/* The entry for name after a create in dir (mkdir, symlink, link). */
static int entry_after(struct pt_fs *fs, struct pt_inode *dir, const char *name, int made,
                       struct fuse_entry_out *e)
{
    int r = made < 0 ? -errno : lookup_at(fs, dir->fd, name, e);
    inode_put(fs, dir);
    return r;
}

int pt_symlink(struct pt_fs *fs, uint64_t parent, const char *name, const char *target,
               struct fuse_entry_out *e)
{
    int r;
    struct pt_inode *dir;

    if (fs->read_only)
        return -EROFS;
    if (!target[0] || strnlen(target, PATH_MAX) >= PATH_MAX)
        return -EINVAL;
    dir = dir_get(fs, parent, name, &r);
    if (!dir)
        return r;
    return entry_after(fs, dir, name, symlinkat(target, dir->fd, name), e);
}

int pt_mkdir(struct pt_fs *fs, uint64_t parent, const char *name, uint32_t mode,
             struct fuse_entry_out *e)
{
    int r;
    struct pt_inode *dir;

    if (fs->read_only)
        return -EROFS;
    dir = dir_get(fs, parent, name, &r);
    if (!dir)
        return r;
    return entry_after(fs, dir, name, mkdirat(dir->fd, name, guest_mode(mode, true)), e);
}

static int remove_name(struct pt_fs *fs, uint64_t parent, const char *name, int flags)
{
    int r;
    struct pt_inode *dir;

    if (fs->read_only)
        return -EROFS;
    dir = dir_get(fs, parent, name, &r);
    if (!dir)
        return r;
    r = unlinkat(dir->fd, name, flags) < 0 ? -errno : 0;
    inode_put(fs, dir);
    return r;
}

int pt_unlink(struct pt_fs *fs, uint64_t parent, const char *name)
{
    return remove_name(fs, parent, name, 0);
}

int pt_rmdir(struct pt_fs *fs, uint64_t parent, const char *name)
{
    return remove_name(fs, parent, name, AT_REMOVEDIR);
}

int pt_rename(struct pt_fs *fs, uint64_t parent, const char *name, uint64_t new_parent,
              const char *new_name, uint32_t flags)
{
    struct pt_inode *from, *to;
    int r;

    if (fs->read_only)
        return -EROFS;
    /* RENAME_WHITEOUT makes a device node: not for a guest. */
    if (flags & ~(uint32_t)(RENAME_NOREPLACE | RENAME_EXCHANGE))
        return -EINVAL;
    from = dir_get(fs, parent, name, &r);
    if (!from)
        return r;
    to = dir_get(fs, new_parent, new_name, &r);
    if (!to) {
        inode_put(fs, from);
        return r;
    }
    r = renameat2(from->fd, name, to->fd, new_name, flags) < 0 ? -errno : 0;
    inode_put(fs, to);
    inode_put(fs, from);
    return r;
}

int pt_link(struct pt_fs *fs, uint64_t node, uint64_t new_parent, const char *new_name,
            struct fuse_entry_out *e)
{
    struct pt_inode *in, *dir;
    char name[16];
    int r, made;

    if (fs->read_only)
        return -EROFS;
    dir = dir_get(fs, new_parent, new_name, &r);
    if (!dir)
        return r;
    in = inode_get(fs, node);
    if (!in) {
        inode_put(fs, dir);
        return -ESTALE;
    }
    /* Through /proc: linkat(fd, "", AT_EMPTY_PATH) wants CAP_DAC_READ_SEARCH. */
    snprintf(name, sizeof(name), "%d", in->fd);
    made = in->type == S_IFDIR ? (errno = EPERM, -1)
                               : linkat(fs->proc_fd, name, dir->fd, new_name, AT_SYMLINK_FOLLOW);
    inode_put(fs, in);
    return entry_after(fs, dir, new_name, made, e);
}

int pt_statfs(struct pt_fs *fs, uint64_t node, struct fuse_kstatfs *k)
{
    struct pt_inode *in = inode_get(fs, node);
    struct statfs st;
    int r;

    if (!in)
        return -ESTALE;
    r = fstatfs(in->fd, &st) < 0 ? -errno : 0;
    inode_put(fs, in);
    if (r < 0)
        return r;
    *k = (struct fuse_kstatfs){
        .blocks = st.f_blocks, .bfree = st.f_bfree, .bavail = st.f_bavail,
        .files = st.f_files, .ffree = st.f_ffree, .bsize = (uint32_t)st.f_bsize,
        .namelen = (uint32_t)st.f_namelen, .frsize = (uint32_t)st.f_frsize,
    };
    return 0;
}

int pt_access(struct pt_fs *fs, uint64_t node, uint32_t mask)
{
    struct pt_inode *in;
    char name[16];
    int r;

    if (mask & ~(uint32_t)(R_OK | W_OK | X_OK))
        return -EINVAL;
    if (fs->read_only && (mask & W_OK))
        return -EROFS;
    in = inode_get(fs, node);
    if (!in)
        return -ESTALE;
    snprintf(name, sizeof(name), "%d", in->fd);
    r = in->type == S_IFLNK ? 0 : faccessat(fs->proc_fd, name, (int)mask, 0) < 0 ? -errno : 0;
    inode_put(fs, in);
    return r;
}

/* ---- extended attributes ---- */

/* Only the user.* namespace passes: security.* (capabilities, LSM labels),
 * trusted.* and system.* (ACLs) would let a guest give host files powers
 * or rights on the host, or read the host's labels. Others read as absent
 * and cannot be set. */
static bool xattr_name_allowed(const char *name)
{
    return strncmp(name, "user.", 5) == 0 && name[5] != 0;
}

/* The node's file as a path xattr calls take (they have no *at form for an
 * O_PATH descriptor): its /proc/self/fd link, which is the file itself
 * whatever its names are now. Symlinks (where Linux takes no user.*
 * attributes) and stale nodes fail. */
static struct pt_inode *xattr_node(struct pt_fs *fs, uint64_t node, char *path, size_t cap,
                                   int *err)
{
    struct pt_inode *in = inode_get(fs, node);

    *err = -ESTALE;
    if (!in)
        return NULL;
    if (in->type == S_IFLNK) {
        inode_put(fs, in);
        *err = -EPERM;
        return NULL;
    }
    snprintf(path, cap, "/proc/self/fd/%d", in->fd);
    return in;
}

long pt_getxattr(struct pt_fs *fs, uint64_t node, const char *name, void *buf, size_t size)
{
    char path[40];
    struct pt_inode *in;
    ssize_t n;
    int r;

    if (!xattr_name_allowed(name))
        return -ENODATA;
    in = xattr_node(fs, node, path, sizeof(path), &r);
    if (!in)
        return r == -EPERM ? -ENODATA : r;
    n = getxattr(path, name, buf, size);
    inode_put(fs, in);
    return n < 0 ? -errno : n;
}

long pt_listxattr(struct pt_fs *fs, uint64_t node, char *buf, size_t size)
{
    char path[40], *all = NULL;
    struct pt_inode *in;
    ssize_t n = -1;
    size_t kept = 0;
    int r;

    in = xattr_node(fs, node, path, sizeof(path), &r);
    if (!in)
        return r == -EPERM ? 0 : r;
    /* The host's list has names the guest does not see: read it whole
     * (growing, in case attributes are added meanwhile), then filter. */
    for (size_t cap = 4096; cap <= XATTR_LIST_MAX * 2; cap *= 2) {
        char *grown = realloc(all, cap);
        if (!grown) {
            n = -1, errno = ENOMEM;
            break;
        }
        all = grown;
        n = listxattr(path, all, cap);
        if (n >= 0 || errno != ERANGE)
            break;
    }
    inode_put(fs, in);
    for (ssize_t at = 0; n > 0 && at < n;) {
        size_t len = strnlen(all + at, (size_t)(n - at));
        if (xattr_name_allowed(all + at)) {
            if (size && kept + len + 1 > size) {
                kept = 0, n = -1, errno = ERANGE;
                break;
            }
            if (size)
                memcpy(buf + kept, all + at, len + 1);
            kept += len + 1;
        }
        at += (ssize_t)len + 1;
    }
    free(all);
    return n < 0 ? -errno : (long)kept;
}

/* The node whose attribute name a set or remove changes (as xattr_node),
 * once the share and the name allow the change. */
static struct pt_inode *xattr_change(struct pt_fs *fs, uint64_t node, const char *name,
                                     char *path, size_t cap, int *err)
{
    *err = fs->read_only ? -EROFS : !xattr_name_allowed(name) ? -EOPNOTSUPP : 0;
    return *err ? NULL : xattr_node(fs, node, path, cap, err);
}

int pt_setxattr(struct pt_fs *fs, uint64_t node, const char *name, const void *value,
                size_t size, uint32_t flags)
{
    char path[40];
    struct pt_inode *in;
    int r;

    if (flags & ~(uint32_t)(XATTR_CREATE | XATTR_REPLACE))
        return fs->read_only ? -EROFS : -EINVAL;
    if (!(in = xattr_change(fs, node, name, path, sizeof(path), &r)))
        return r;
    r = setxattr(path, name, value, size, (int)flags) < 0 ? -errno : 0;
    inode_put(fs, in);
    return r;
}

int pt_removexattr(struct pt_fs *fs, uint64_t node, const char *name)
{
    char path[40];
    struct pt_inode *in;
    int r;

    if (!(in = xattr_change(fs, node, name, path, sizeof(path), &r)))
        return r;
    r = removexattr(path, name) < 0 ? -errno : 0;
    inode_put(fs, in);
    return r;
}

/* ---- open files ---- */

/* The guest's open flags we pass on; creation and path flags are ours. */
static int host_open_flags(uint32_t flags)
{
    return (int)(flags & (O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC)) | O_NOCTTY;
}

static bool writes(uint32_t flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* What the guest's kernel is told of a file it opened: a write-only one
 * bypasses its page cache (FOPEN_DIRECT_IO), each write going from the
 * writer's pages to the file as 9p's do, not first copied into pages
 * that nothing reads through this open (a write-only file cannot be read
 * or mapped). Readers see the writes: every open here drops the pages
 * the guest had cached (no FOPEN_KEEP_CACHE). */
static struct fuse_open_out open_reply(uint32_t flags)
{
    return (struct fuse_open_out){
        .open_flags = (flags & O_ACCMODE) == O_WRONLY ? FOPEN_DIRECT_IO : 0,
    };
}

/* fd, just opened with the guest's flags: an O_TRUNC open truncated it,
 * which kills privileges as a write does. fd, or a negative errno (fd
 * closed). */
static int kill_privs_after_trunc(struct pt_fs *fs, int fd, uint32_t flags)
{
    int r = fd >= 0 && (flags & O_TRUNC) ? kill_privs(fs, fd) : 0;

    if (r < 0)
        close(fd);
    return r < 0 ? r : fd;
}

/* The node's file opened with flags (its O_PATH descriptor opened again:
 * the same file, whatever its names are now), or a negative errno. Only
 * regular files: a FIFO would block a server thread, a device node would
 * reach the host's hardware. */
static int node_file(struct pt_fs *fs, uint64_t node, int flags)
{
    struct pt_inode *in = inode_get(fs, node);
    int fd;

    if (!in)
        return -ESTALE;
    fd = in->type == S_IFREG ? reopen_file(fs, in, flags)
         : in->type == S_IFDIR ? -EISDIR
         : in->type == S_IFLNK ? -ELOOP
                               : -EACCES;
    inode_put(fs, in);
    return fd;
}

int pt_open(struct pt_fs *fs, uint64_t node, uint32_t flags, struct fuse_open_out *o)
{
    int fd;

    if ((flags & O_ACCMODE) == O_ACCMODE)
        return -EINVAL;
    if (fs->read_only && writes(flags))
        return -EROFS;
    fd = node_file(fs, node, host_open_flags(flags));
    fd = kill_privs_after_trunc(fs, fd, flags);
    if (fd < 0)
        return fd;
    *o = open_reply(flags);
    return handle_add(fs, fd, false, host_open_flags(flags), &o->fh);
}

int pt_create(struct pt_fs *fs, uint64_t parent, const char *name, uint32_t flags,
              uint32_t mode, struct fuse_entry_out *e, struct fuse_open_out *o)
{
    struct pt_inode *dir;
    struct stat st;
    int fd, path_fd, r;

    if (fs->read_only)
        return -EROFS;
    if ((flags & O_ACCMODE) == O_ACCMODE)
        return -EINVAL;
    dir = dir_get(fs, parent, name, &r);
    if (!dir)
        return r;
    /* O_NONBLOCK: a FIFO the host left under that name must not block
     * a server thread (it is refused below, as anything not regular). */
    fd = open_beneath(dir->fd, name,
                      host_open_flags(flags) | O_CREAT | O_NONBLOCK | (int)(flags & O_EXCL),
                      guest_mode(mode, false));
    inode_put(fs, dir);
    fd = kill_privs_after_trunc(fs, fd, flags);
    if (fd < 0)
        return fd;
    path_fd = reopen(fs, fd, O_PATH);
    r = path_fd < 0 ? path_fd : stat_fd(path_fd, &st);
    if (r == 0 && !S_ISREG(st.st_mode))
        r = -EACCES; /* O_CREAT opened something that was there already */
    if (r == 0 && fcntl(fd, F_SETFL, host_open_flags(flags) & O_APPEND) < 0)
        r = -errno;
    if (r < 0) {
        if (path_fd >= 0)
            close(path_fd);
        close(fd);
        return r;
    }
    *e = (struct fuse_entry_out){.entry_valid = CACHE_SECONDS, .attr_valid = CACHE_SECONDS};
    r = inode_add(fs, path_fd, &st, &e->nodeid);
    if (r < 0) {
        close(fd);
        return r;
    }
    e->generation = e->nodeid >> 32;
    fill_attr(&e->attr, &st);
    *o = open_reply(flags);
    r = handle_add(fs, fd, false, host_open_flags(flags), &o->fh);
    if (r < 0)
        pt_forget(fs, e->nodeid, 1);
    return r;
}

int pt_opendir(struct pt_fs *fs, uint64_t node, struct fuse_open_out *o)
{
    struct pt_inode *in = inode_get(fs, node);
    int fd;

    if (!in)
        return -ESTALE;
    fd = in->type == S_IFDIR ? reopen(fs, in->fd, O_RDONLY | O_DIRECTORY) : -ENOTDIR;
    inode_put(fs, in);
    if (fd < 0)
        return fd;
    *o = (struct fuse_open_out){0};
    return handle_add(fs, fd, true, O_RDONLY | O_DIRECTORY, &o->fh);
}

/* The handle fh as a file (dir false) or directory, or NULL with *r. */
static struct pt_handle *file_get(struct pt_fs *fs, uint64_t fh, bool dir, int *r)
{
    struct pt_handle *h = handle_get(fs, fh);

    *r = 0;
    if (!h) {
        *r = -EBADF;
        return NULL;
    }
    if (h->dir != dir) {
        handle_put(fs, h);
        *r = dir ? -ENOTDIR : -EISDIR;
        return NULL;
    }
    return h;
}

/* The open file a READ, WRITE, FSYNC, FALLOCATE or LSEEK works on: the
 * handle fh's descriptor, or with fh 0 (the guest opened the file without
 * asking: FUSE_NO_OPEN_SUPPORT) node's own file opened with flags for this
 * request alone (so the descriptors held stay those of the bounded
 * tables, plus one per serving thread). */
struct pt_file {
    struct pt_handle *h;
    int fd;
};

static int file_take(struct pt_fs *fs, uint64_t node, uint64_t fh, int flags, struct pt_file *f)
{
    int r;

    f->h = NULL;
    if (fh == 0) {
        f->fd = node_file(fs, node, flags);
        return f->fd < 0 ? f->fd : 0;
    }
    f->h = file_get(fs, fh, false, &r);
    f->fd = f->h ? f->h->fd : -1;
    return r;
}

static void file_done(struct pt_fs *fs, struct pt_file *f)
{
    if (f->h)
        handle_put(fs, f->h);
    else
        close(f->fd);
}

long pt_read(struct pt_fs *fs, uint64_t node, uint64_t fh, uint64_t offset,
             const struct iovec *iov, int count)
{
    struct pt_file f;
    int r = file_take(fs, node, fh, O_RDONLY, &f);
    ssize_t n;

    if (r < 0)
        return r;
    n = offset > INT64_MAX ? (errno = EINVAL, -1) : preadv(f.fd, iov, count, (off_t)offset);
    file_done(fs, &f);
    return n < 0 ? -errno : n;
}

long pt_write(struct pt_fs *fs, uint64_t node, uint64_t fh, uint32_t flags, uint64_t offset,
              const struct iovec *iov, int count)
{
    struct pt_file f;
    ssize_t n;
    int r;

    if (fs->read_only)
        return -EROFS;
    r = file_take(fs, node, fh, O_WRONLY | (host_open_flags(flags) & (O_APPEND | O_SYNC | O_DSYNC)),
                  &f);
    if (r < 0)
        return r;
    r = kill_privs(fs, f.fd);
    n = r < 0 ? (errno = -r, -1)
        : offset > INT64_MAX ? (errno = EINVAL, -1)
                             : pwritev(f.fd, iov, count, (off_t)offset);
    file_done(fs, &f);
    return n < 0 ? -errno : n;
}

int pt_fsync(struct pt_fs *fs, uint64_t node, uint64_t fh, bool datasync)
{
    struct pt_file f = {.h = fh ? handle_get(fs, fh) : NULL}; /* a file's or a directory's */
    int r = 0;

    if (fh && !f.h)
        return -EBADF;
    if (f.h)
        f.fd = f.h->fd;
    else
        r = file_take(fs, node, 0, O_RDONLY, &f);
    /* A file we may write but not read (another user's, mode 0220 with
     * our group; ours are reopened as their owner may) is synced through
     * a write-only descriptor; never on a read-only share, where the host
     * file must not be opened for writing at all. */
    if (r == -EACCES && !fs->read_only)
        r = file_take(fs, node, 0, O_WRONLY, &f);
    if (r < 0)
        return r;
    r = (datasync ? fdatasync(f.fd) : fsync(f.fd)) < 0 ? -errno : 0;
    file_done(fs, &f);
    return r;
}

int pt_fallocate(struct pt_fs *fs, uint64_t node, uint64_t fh, uint32_t mode, uint64_t offset,
                 uint64_t len)
{
    struct pt_file f;
    int r;

    if (fs->read_only)
        return -EROFS;
    if (mode & ~(uint32_t)(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
        return -EOPNOTSUPP;
    if (offset > INT64_MAX || len > INT64_MAX)
        return -EINVAL;
    r = file_take(fs, node, fh, O_WRONLY, &f);
    if (r < 0)
        return r;
    r = fallocate(f.fd, (int)mode, (off_t)offset, (off_t)len) < 0 ? -errno : 0;
    file_done(fs, &f);
    return r;
}

int pt_lseek(struct pt_fs *fs, uint64_t node, uint64_t fh, uint64_t offset, uint32_t whence,
             uint64_t *result)
{
    struct pt_file f;
    off_t at;
    int r;

    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END && whence != SEEK_DATA &&
        whence != SEEK_HOLE)
        return -EINVAL;
    r = file_take(fs, node, fh, O_RDONLY, &f);
    if (r < 0)
        return r;
    at = lseek(f.fd, (off_t)offset, (int)whence);
    r = at < 0 ? -errno : 0;
    file_done(fs, &f);
    if (r == 0)
        *result = (uint64_t)at;
    return r;
}

/* ---- directories ---- */

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* One entry into out (room bytes left): its size, or 0 when it does not fit. */
static size_t put_dirent(struct pt_fs *fs, int dirfd, const struct linux_dirent64 *d,
                         uint8_t *out, size_t room, bool plus)
{
    size_t namelen = strnlen(d->d_name, NAME_MAX + 1);
    size_t size = plus ? FUSE_DIRENTPLUS_SIZE(&(struct fuse_direntplus){.dirent.namelen = namelen})
                       : FUSE_DIRENT_SIZE(&(struct fuse_dirent){.namelen = namelen});
    struct fuse_dirent *de;

    if (size > room || namelen > NAME_MAX)
        return 0;
    memset(out, 0, size);
    if (plus) {
        struct fuse_direntplus *dp = (struct fuse_direntplus *)out;
        /* An entry that cannot be looked up (gone, table full) is still
         * listed: node id 0 tells the kernel not to cache it. */
        if (valid_name(d->d_name) && lookup_at(fs, dirfd, d->d_name, &dp->entry_out) < 0)
            memset(&dp->entry_out, 0, sizeof(dp->entry_out));
        de = &dp->dirent;
    } else {
        de = (struct fuse_dirent *)out;
    }
    de->ino = d->d_ino;
    de->off = (uint64_t)d->d_off;
    de->namelen = (uint32_t)namelen;
    de->type = d->d_type;
    memcpy(de->name, d->d_name, namelen);
    return size;
}

static long fill_dir(struct pt_fs *fs, int fd, uint64_t offset, uint8_t *out, size_t size,
                     bool plus)
{
    static __thread _Alignas(struct linux_dirent64) uint8_t buf[DIRENT_BUF];
    size_t used = 0;

    if (offset > INT64_MAX || lseek(fd, (off_t)offset, SEEK_SET) < 0)
        return -errno ? -errno : -EINVAL;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
        if (n < 0)
            return used ? (long)used : -errno;
        if (n == 0)
            return (long)used;
        for (long at = 0; at < n;) {
            const struct linux_dirent64 *d = (const struct linux_dirent64 *)(buf + at);
            size_t put = put_dirent(fs, fd, d, out + used, size - used, plus);
            if (!put)
                return (long)used; /* the guest asks again from the last off */
            used += put;
            at += d->d_reclen;
        }
    }
}

long pt_readdir(struct pt_fs *fs, uint64_t fh, uint64_t offset, void *buf, size_t size, bool plus)
{
    int r;
    struct pt_handle *h = file_get(fs, fh, true, &r);
    long n;

    if (!h)
        return r;
    pthread_mutex_lock(&h->dir_lock);
    errno = 0;
    n = fill_dir(fs, h->fd, offset, buf, size, plus);
    pthread_mutex_unlock(&h->dir_lock);
    handle_put(fs, h);
    return n;
}

/* ---- snapshots ---- */

#define STATE_VERSION 1

/* fd's path relative to the root's, into rel: false when the file is no
 * longer beneath the root under any name (deleted, moved out). */
static bool relative_path(struct pt_fs *fs, int fd, const char *root, char *rel, size_t cap)
{
    char name[16], path[PATH_MAX];
    size_t root_len = strlen(root);
    struct stat st;
    ssize_t n;

    snprintf(name, sizeof(name), "%d", fd);
    n = readlinkat(fs->proc_fd, name, path, sizeof(path) - 1);
    if (n <= 0 || stat_fd(fd, &st) < 0 || (st.st_nlink == 0 && !S_ISDIR(st.st_mode)))
        return false;
    path[n] = 0;
    if (strcmp(path, root) == 0) {
        rel[0] = 0;
        return true;
    }
    if (strncmp(path, root, root_len) != 0 || path[root_len] != '/' || strlen(path) >= cap)
        return false;
    snprintf(rel, cap, "%s", path + (strcmp(root, "/") == 0 ? 1 : root_len + 1));
    return true;
}

static void put_path(struct blob *out, const char *rel)
{
    blob_put_u32(out, (uint32_t)strlen(rel));
    blob_put(out, rel, strlen(rel));
}

int pt_save(struct pt_fs *fs, struct blob *out)
{
    char root[PATH_MAX], rel[PATH_MAX];
    char name[16];
    ssize_t n;
    size_t count_at;
    uint32_t count = 0;

    snprintf(name, sizeof(name), "%d", fs->inodes[0].fd);
    n = readlinkat(fs->proc_fd, name, root, sizeof(root) - 1);
    if (n <= 0)
        return -errno;
    root[n] = 0;
    pthread_mutex_lock(&fs->lock);
    blob_put_u32(out, STATE_VERSION);
    count_at = out->len;
    blob_put_u32(out, 0);
    for (uint32_t i = 0; i < fs->max_inodes; i++) {
        struct pt_inode *in = &fs->inodes[i];
        if (in->fd < 0 || in->nlookup == 0 || !relative_path(fs, in->fd, root, rel, sizeof(rel)))
            continue;
        blob_put_u32(out, i);
        blob_put_u32(out, in->gen);
        blob_put_u64(out, in->nlookup);
        put_path(out, rel);
        count++;
    }
    if (!out->failed)
        memcpy(out->data + count_at, &count, 4); /* little-endian hosts only (x86) */
    count = 0;
    count_at = out->len;
    blob_put_u32(out, 0);
    for (uint32_t i = 0; i < fs->max_handles; i++) {
        struct pt_handle *h = &fs->handles[i];
        if (h->fd < 0 || h->released || !relative_path(fs, h->fd, root, rel, sizeof(rel)))
            continue;
        blob_put_u32(out, i);
        blob_put_u32(out, h->gen);
        blob_put_u32(out, (uint32_t)h->flags);
        blob_put_u8(out, h->dir);
        put_path(out, rel);
        count++;
    }
    if (!out->failed)
        memcpy(out->data + count_at, &count, 4);
    pthread_mutex_unlock(&fs->lock);
    return out->failed ? -ENOMEM : 0;
}

/* A saved path, NUL-terminated into rel: false when malformed. */
static bool get_path(struct blob_reader *in, char *rel, size_t cap)
{
    uint32_t len = blob_get_u32(in);

    if (in->failed || len >= cap || !blob_get(in, rel, len))
        return false;
    rel[len] = 0;
    return strlen(rel) == len;
}

/* The saved path beneath the root, opened with flags; -1 when it is not
 * there (any more) or would leave the root. */
static int open_saved(struct pt_fs *fs, const char *rel, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, fs->inodes[0].fd, rel[0] ? rel : ".", &how, sizeof(how));

    return fd < 0 ? -1 : (int)fd;
}

static void restore_inode(struct pt_fs *fs, uint32_t slot, uint32_t gen, uint64_t nlookup,
                          const char *rel)
{
    struct pt_inode *in = &fs->inodes[slot];
    struct stat st;
    uint32_t b;
    int fd;

    if (slot == 0) {
        in->nlookup = nlookup ? nlookup : 1;
        return;
    }
    if (slot >= fs->max_inodes || in->fd >= 0 || gen == 0)
        return;
    fd = open_saved(fs, rel, O_PATH);
    if (fd < 0)
        return;
    b = stat_fd(fd, &st) == 0 ? bucket_of(fs, st.st_dev, st.st_ino) : UINT32_MAX;
    for (uint32_t s = b != UINT32_MAX ? fs->buckets[b] : 0; s; s = fs->inodes[s - 1].next)
        if (fs->inodes[s - 1].dev == st.st_dev && fs->inodes[s - 1].ino == st.st_ino)
            b = UINT32_MAX; /* the same file under two saved names: one node */
    if (b == UINT32_MAX) {
        close(fd);
        in->gen = gen; /* the old node id stays stale */
        return;
    }
    *in = (struct pt_inode){.fd = fd, .dev = st.st_dev, .ino = st.st_ino,
                            .type = st.st_mode & S_IFMT, .gen = gen, .nlookup = nlookup,
                            .next = fs->buckets[b]};
    fs->buckets[b] = slot + 1;
    fs->inode_count++;
}

static void restore_handle(struct pt_fs *fs, uint32_t slot, uint32_t gen, int flags, bool dir,
                           const char *rel)
{
    struct pt_handle *h = &fs->handles[slot];
    struct stat st;
    int fd;

    if (slot >= fs->max_handles || h->fd >= 0 || gen == 0)
        return;
    h->gen = gen;
    flags = dir ? O_RDONLY | O_DIRECTORY : host_open_flags((uint32_t)flags);
    if (fs->read_only && !dir && writes((uint32_t)flags))
        return;
    fd = open_saved(fs, rel, flags & ~O_TRUNC);
    if (fd < 0)
        return;
    if (stat_fd(fd, &st) < 0 || (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) {
        close(fd);
        return;
    }
    h->fd = fd;
    h->refs = 0;
    h->released = false;
    h->dir = dir;
    h->flags = flags;
    fs->handle_count++;
}

/* The free stacks again after slots were filled out of their order. */
static void rebuild_free_lists(struct pt_fs *fs)
{
    fs->free_inode_top = fs->free_handle_top = 0;
    for (uint32_t i = fs->max_inodes; i-- > 1;)
        if (fs->inodes[i].fd < 0)
            fs->free_inodes[fs->free_inode_top++] = i;
    for (uint32_t i = fs->max_handles; i-- > 0;)
        if (fs->handles[i].fd < 0)
            fs->free_handles[fs->free_handle_top++] = i;
}

int pt_restore(struct pt_fs *fs, struct blob_reader *in)
{
    char rel[PATH_MAX];
    uint32_t count;
    int r = 0;

    pthread_mutex_lock(&fs->lock);
    close_all(fs, true);
    if (blob_get_u32(in) != STATE_VERSION)
        r = err_plain(EINVAL, "shared folder state: unknown version");
    count = r == 0 ? blob_get_u32(in) : 0;
    for (uint32_t i = 0; r == 0 && i < count; i++) {
        uint32_t slot = blob_get_u32(in), gen = blob_get_u32(in);
        uint64_t nlookup = blob_get_u64(in);
        if (!get_path(in, rel, sizeof(rel)))
            r = err_plain(EINVAL, "shared folder state: bad node record");
        else
            restore_inode(fs, slot, gen, nlookup, rel);
    }
    count = r == 0 ? blob_get_u32(in) : 0;
    for (uint32_t i = 0; r == 0 && i < count; i++) {
        uint32_t slot = blob_get_u32(in), gen = blob_get_u32(in), flags = blob_get_u32(in);
        uint8_t dir = blob_get_u8(in);
        if (dir > 1 || !get_path(in, rel, sizeof(rel)))
            r = err_plain(EINVAL, "shared folder state: bad handle record");
        else
            restore_handle(fs, slot, gen, (int)flags, dir, rel);
    }
    /* The free lists first: the slots filled above are still on them. */
    rebuild_free_lists(fs);
    if (r < 0)
        close_all(fs, true);
    pthread_mutex_unlock(&fs->lock);
    return r;
}
