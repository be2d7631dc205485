#include "fs/fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* The oldest kernel protocol we talk: virtio-fs arrived with 7.31 (Linux
 * 5.4); 7.27 is where every struct we use has its present size. */
#define MIN_MINOR 27
#define OUR_INIT_FLAGS (FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | \
                        FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | \
                        FUSE_MAX_PAGES | FUSE_HANDLE_KILLPRIV | FUSE_AUTO_INVAL_DATA)

/* The most pieces a WRITE's payload or a READ's destination may come in
 * (UIO_MAXIOV, what pwritev and preadv take). */
#define MAX_IOVS 1024

struct fuse_server {
    struct pt_fs *fs;
    atomic_bool initialized;
    /* The guest opens files without asking (FUSE_NO_OPEN_SUPPORT): OPEN is
     * ENOSYS, and READ, WRITE... come with fh 0, the node's own file. */
    atomic_bool no_open;
};

/* One request as it is being served. */
struct req {
    struct fuse_server *s;
    struct fuse_in_header h;
    const uint8_t *body;
    size_t body_len;
    size_t at;        /* names are taken from here on */
    const struct iovec *data; /* the bytes after body, in place (fuse_serve_data) */
    unsigned data_count;
    size_t data_len;          /* of them, those within the header's length */
    uint8_t *payload; /* the reply after its header */
    size_t payload_cap;
    const struct iovec *dest; /* a READ's data goes here instead (fuse_serve_read) */
    unsigned dest_count;
};

/* The next NUL-terminated name of the body, or NULL when its NUL is
 * missing. */
static const char *take_string(struct req *r)
{
    const char *s = (const char *)r->body + r->at;
    const void *nul;

    if (r->at >= r->body_len)
        return NULL;
    nul = memchr(s, 0, r->body_len - r->at);
    if (!nul)
        return NULL;
    r->at = (size_t)((const uint8_t *)nul - r->body) + 1;
    return s;
}

/* The fixed-size argument at the front of the body (its size is checked
 * against the body before the handler runs). */
static void take(struct req *r, void *arg, size_t size)
{
    memcpy(arg, r->body, size);
    r->at = size;
}

static long reply(struct req *r, const void *data, size_t size)
{
    memcpy(r->payload, data, size);
    return (long)size;
}

static long entry_reply(struct req *r, int err, const struct fuse_entry_out *e)
{
    return err < 0 ? err : reply(r, e, sizeof(*e));
}

static long do_init(struct req *r)
{
    struct fuse_init_in in;
    struct fuse_init_out out = {.major = FUSE_KERNEL_VERSION};
    bool no_open;

    take(r, &in, offsetof(struct fuse_init_in, flags) + sizeof(in.flags));
    if (in.major < FUSE_KERNEL_VERSION)
        return -EPROTO;
    if (in.major > FUSE_KERNEL_VERSION) {
        /* The kernel asks again with our major. */
        out.minor = FUSE_KERNEL_MINOR_VERSION;
        return reply(r, &out, sizeof(out));
    }
    if (in.minor < MIN_MINOR)
        return -EPROTO;
    out.minor = in.minor < FUSE_KERNEL_MINOR_VERSION ? in.minor : FUSE_KERNEL_MINOR_VERSION;
    out.max_readahead = in.max_readahead;
    out.flags = in.flags & OUR_INIT_FLAGS;
    /* Reading a file then takes a LOOKUP (none while the name is cached)
     * and its READs, not also an OPEN and a RELEASE. The guest then never
     * sends RELEASE, for a CREATE's handle either (fs/fuse/file.c
     * fuse_file_put): CREATE keeps none (fh 0). What the host changes
     * still shows within CACHE_SECONDS: without OPEN the guest keeps a
     * file's pages (FOPEN_KEEP_CACHE) but drops them when a LOOKUP or
     * GETATTR shows another size or mtime (FUSE_AUTO_INVAL_DATA: its
     * reads ask again once the attributes are a second old). Without
     * OPEN an O_TRUNC open truncates by SETATTR: no FUSE_ATOMIC_O_TRUNC.
     * A read-only share keeps OPEN: an open for writing fails there and
     * then (EROFS), not at its first write, nor never for pages written
     * through a shared mapping. */
    no_open = (in.flags & FUSE_NO_OPEN_SUPPORT) && !pt_read_only(r->s->fs);
    atomic_store(&r->s->no_open, no_open);
    if (no_open)
        out.flags &= ~(uint32_t)FUSE_ATOMIC_O_TRUNC;
    out.max_background = 64;
    out.congestion_threshold = 48;
    out.max_write = FUSE_SERVER_MAX_IO;
    out.time_gran = 1;
    out.max_pages = FUSE_SERVER_MAX_IO / 4096;
    atomic_store(&r->s->initialized, true);
    return reply(r, &out, sizeof(out));
}

static long do_destroy(struct req *r)
{
    fuse_server_reset(r->s);
    return 0;
}

static long do_lookup(struct req *r)
{
    struct fuse_entry_out e;
    const char *name = take_string(r);

    return name ? entry_reply(r, pt_lookup(r->s->fs, r->h.nodeid, name, &e), &e) : -EINVAL;
}

static long do_forget(struct req *r)
{
    struct fuse_forget_in in;

    take(r, &in, sizeof(in));
    pt_forget(r->s->fs, r->h.nodeid, in.nlookup);
    return 0;
}

static long do_batch_forget(struct req *r)
{
    struct fuse_batch_forget_in in;
    struct fuse_forget_one one;

    take(r, &in, sizeof(in));
    /* As many as the body holds, whatever count says. */
    for (uint32_t i = 0; i < in.count && r->body_len - r->at >= sizeof(one); i++) {
        memcpy(&one, r->body + r->at, sizeof(one));
        r->at += sizeof(one);
        pt_forget(r->s->fs, one.nodeid, one.nlookup);
    }
    return 0;
}

static long do_getattr(struct req *r)
{
    struct fuse_attr_out a;
    int err = pt_getattr(r->s->fs, r->h.nodeid, &a);

    return err < 0 ? err : reply(r, &a, sizeof(a));
}

static long do_setattr(struct req *r)
{
    struct fuse_setattr_in in;
    struct fuse_attr_out a;
    int err;

    take(r, &in, sizeof(in));
    err = pt_setattr(r->s->fs, r->h.nodeid, &in, &a);
    return err < 0 ? err : reply(r, &a, sizeof(a));
}

static long do_readlink(struct req *r)
{
    size_t cap = r->payload_cap < PATH_MAX ? r->payload_cap : PATH_MAX;

    return pt_readlink(r->s->fs, r->h.nodeid, (char *)r->payload, cap);
}

static long do_symlink(struct req *r)
{
    struct fuse_entry_out e;
    const char *name = take_string(r), *target = name ? take_string(r) : NULL;

    if (!target)
        return -EINVAL;
    return entry_reply(r, pt_symlink(r->s->fs, r->h.nodeid, name, target, &e), &e);
}

static long do_mkdir(struct req *r)
{
    struct fuse_mkdir_in in;
    struct fuse_entry_out e;
    const char *name;

    take(r, &in, sizeof(in));
    name = take_string(r);
    if (!name)
        return -EINVAL;
    return entry_reply(r, pt_mkdir(r->s->fs, r->h.nodeid, name, in.mode, &e), &e);
}

static long do_unlink(struct req *r)
{
    const char *name = take_string(r);

    if (!name)
        return -EINVAL;
    return r->h.opcode == FUSE_RMDIR ? pt_rmdir(r->s->fs, r->h.nodeid, name)
                                     : pt_unlink(r->s->fs, r->h.nodeid, name);
}

static long rename_names(struct req *r, uint64_t new_dir, uint32_t flags)
{
    const char *name = take_string(r), *new_name = name ? take_string(r) : NULL;

    if (!new_name)
        return -EINVAL;
    return pt_rename(r->s->fs, r->h.nodeid, name, new_dir, new_name, flags);
}

static long do_rename(struct req *r)
{
    struct fuse_rename_in in;

    take(r, &in, sizeof(in));
    return rename_names(r, in.newdir, 0);
}

static long do_rename2(struct req *r)
{
    struct fuse_rename2_in in;

    take(r, &in, sizeof(in));
    return rename_names(r, in.newdir, in.flags);
}

static long do_link(struct req *r)
{
    struct fuse_link_in in;
    struct fuse_entry_out e;
    const char *name;

    take(r, &in, sizeof(in));
    name = take_string(r);
    if (!name)
        return -EINVAL;
    return entry_reply(r, pt_link(r->s->fs, in.oldnodeid, r->h.nodeid, name, &e), &e);
}

static long do_open(struct req *r)
{
    struct fuse_open_in in;
    struct fuse_open_out o;
    int err;

    take(r, &in, sizeof(in));
    if (r->h.opcode == FUSE_OPEN && atomic_load(&r->s->no_open))
        return -ENOSYS; /* the guest opens without asking from now on */
    err = r->h.opcode == FUSE_OPENDIR ? pt_opendir(r->s->fs, r->h.nodeid, &o)
                                      : pt_open(r->s->fs, r->h.nodeid, in.flags, &o);
    return err < 0 ? err : reply(r, &o, sizeof(o));
}

static long do_create(struct req *r)
{
    struct fuse_create_in in;
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out;
    const char *name;
    int err;

    take(r, &in, sizeof(in));
    name = take_string(r);
    if (!name)
        return -EINVAL;
    err = pt_create(r->s->fs, r->h.nodeid, name, in.flags, in.mode, &out.e, &out.o);
    if (err < 0)
        return err;
    if (atomic_load(&r->s->no_open)) {
        /* Its RELEASE would never come: the node's own file instead. */
        pt_release(r->s->fs, out.o.fh);
        out.o.fh = 0;
    }
    return reply(r, &out, sizeof(out));
}

static size_t iov_bytes(const struct iovec *iov, unsigned count)
{
    size_t n = 0;

    for (unsigned i = 0; i < count; i++)
        n += iov[i].iov_len;
    return n;
}

/* The first size bytes of src[0..count) as iovecs in dst: how many. */
static unsigned iov_prefix(const struct iovec *src, unsigned count, size_t size,
                           struct iovec *dst, unsigned cap)
{
    unsigned n = 0;

    for (unsigned i = 0; i < count && size && n < cap; i++) {
        size_t len = src[i].iov_len < size ? src[i].iov_len : size;
        if (len)
            dst[n++] = (struct iovec){src[i].iov_base, len};
        size -= len;
    }
    return n;
}

static long do_read(struct req *r)
{
    struct fuse_read_in in;
    size_t size;

    take(r, &in, sizeof(in));
    size = in.size < r->payload_cap ? in.size : r->payload_cap;
    if (size > FUSE_SERVER_MAX_IO)
        size = FUSE_SERVER_MAX_IO;
    if (r->h.opcode == FUSE_READ) {
        struct iovec iov[MAX_IOVS];
        unsigned count = 1;

        if (r->dest)
            count = iov_prefix(r->dest, r->dest_count, size, iov, MAX_IOVS);
        else
            iov[0] = (struct iovec){r->payload, size};
        return pt_read(r->s->fs, r->h.nodeid, in.fh, in.offset, iov, (int)count);
    }
    return pt_readdir(r->s->fs, in.fh, in.offset, r->payload, size,
                      r->h.opcode == FUSE_READDIRPLUS);
}

/* The first size bytes of the WRITE payload (which starts at r->at of
 * the body and may go on in r->data) as iovecs: how many, or 0 when the
 * request holds fewer than size bytes. */
static unsigned write_payload(struct req *r, size_t size, struct iovec *iov, unsigned cap)
{
    size_t in_body = r->body_len - r->at, left = size;
    unsigned n = 0;

    if (size > in_body + r->data_len)
        return 0;
    if (in_body && left) {
        size_t take_now = in_body < left ? in_body : left;
        iov[n++] = (struct iovec){(void *)(r->body + r->at), take_now};
        left -= take_now;
    }
    if (left) {
        unsigned more = iov_prefix(r->data, r->data_count, left, iov + n, cap - n);
        left -= iov_bytes(iov + n, more);
        n += more;
    }
    return left ? 0 : n;
}

static long do_write(struct req *r)
{
    struct fuse_write_in in;
    struct fuse_write_out out = {0};
    struct iovec iov[MAX_IOVS];
    unsigned count;
    long n;

    take(r, &in, sizeof(in));
    if (in.size > FUSE_SERVER_MAX_IO)
        return -EINVAL;
    count = write_payload(r, in.size, iov, MAX_IOVS);
    if (!count && in.size)
        return -EINVAL;
    n = pt_write(r->s->fs, r->h.nodeid, in.fh, in.flags, in.offset, iov, (int)count);
    if (n < 0)
        return n;
    out.size = (uint32_t)n;
    return reply(r, &out, sizeof(out));
}

static long do_statfs(struct req *r)
{
    struct fuse_statfs_out out;
    int err = pt_statfs(r->s->fs, r->h.nodeid, &out.st);

    return err < 0 ? err : reply(r, &out, sizeof(out));
}

static long do_release(struct req *r)
{
    struct fuse_release_in in;

    take(r, &in, sizeof(in));
    return pt_release(r->s->fs, in.fh);
}

static long do_fsync(struct req *r)
{
    struct fuse_fsync_in in;

    take(r, &in, sizeof(in));
    return pt_fsync(r->s->fs, r->h.nodeid, in.fh, in.fsync_flags & 1);
}

static long do_access(struct req *r)
{
    struct fuse_access_in in;

    take(r, &in, sizeof(in));
    return pt_access(r->s->fs, r->h.nodeid, in.mask);
}

static long do_fallocate(struct req *r)
{
    struct fuse_fallocate_in in;

    take(r, &in, sizeof(in));
    return pt_fallocate(r->s->fs, r->h.nodeid, in.fh, in.mode, in.offset, in.length);
}

static long do_lseek(struct req *r)
{
    struct fuse_lseek_in in;
    struct fuse_lseek_out out;
    int err;

    take(r, &in, sizeof(in));
    err = pt_lseek(r->s->fs, r->h.nodeid, in.fh, in.offset, in.whence, &out.offset);
    return err < 0 ? err : reply(r, &out, sizeof(out));
}

/* GETXATTR and LISTXATTR: size 0 asks for the length (fuse_getxattr_out),
 * else the value or list itself. */
static long xattr_reply(struct req *r, uint32_t size, long n)
{
    struct fuse_getxattr_out out = {0};

    if (n < 0 || size)
        return n;
    out.size = (uint32_t)n;
    return reply(r, &out, sizeof(out));
}

/* The buffer a value or list is read into: the reply's, when the guest
 * asks for more than a length (ERANGE when the reply cannot hold size:
 * the guest asks again with less). */
static long xattr_buffer(struct req *r, uint32_t size, void **buf)
{
    if (size > r->payload_cap)
        return -ERANGE;
    *buf = size ? r->payload : NULL;
    return 0;
}

static long do_getxattr(struct req *r)
{
    struct fuse_getxattr_in in;
    const char *name;
    void *buf;
    long err;

    take(r, &in, sizeof(in));
    name = take_string(r);
    if (!name)
        return -EINVAL;
    if ((err = xattr_buffer(r, in.size, &buf)) < 0)
        return err;
    return xattr_reply(r, in.size, pt_getxattr(r->s->fs, r->h.nodeid, name, buf, in.size));
}

static long do_listxattr(struct req *r)
{
    struct fuse_getxattr_in in;
    void *buf;
    long err;

    take(r, &in, sizeof(in));
    if ((err = xattr_buffer(r, in.size, &buf)) < 0)
        return err;
    return xattr_reply(r, in.size, pt_listxattr(r->s->fs, r->h.nodeid, buf, in.size));
}

/* The body: fuse_setxattr_in as before FUSE_SETXATTR_EXT (which INIT does
 * not offer), the name, then size bytes of value. */
static long do_setxattr(struct req *r)
{
    struct fuse_setxattr_in in = {0};
    const char *name;

    take(r, &in, FUSE_COMPAT_SETXATTR_IN_SIZE);
    name = take_string(r);
    if (!name || in.size > r->body_len - r->at || in.size > XATTR_SIZE_MAX)
        return -EINVAL;
    return pt_setxattr(r->s->fs, r->h.nodeid, name, r->body + r->at, in.size, in.flags);
}

static long do_removexattr(struct req *r)
{
    const char *name = take_string(r);

    return name ? pt_removexattr(r->s->fs, r->h.nodeid, name) : -EINVAL;
}

struct op {
    long (*serve)(struct req *r);
    uint32_t in_size;  /* the fixed argument the body must hold */
    uint32_t out_size; /* the reply payload the buffer must hold */
    bool no_reply;
    const char *name; /* "FUSE_READ"... */
};

#define OP(code, fn, in, out) [code] = {fn, in, out, false, #code}
static const struct op ops[] = {
    OP(FUSE_INIT, do_init, 16, sizeof(struct fuse_init_out)),
    OP(FUSE_DESTROY, do_destroy, 0, 0),
    OP(FUSE_LOOKUP, do_lookup, 0, sizeof(struct fuse_entry_out)),
    [FUSE_FORGET] = {do_forget, sizeof(struct fuse_forget_in), 0, true, "FUSE_FORGET"},
    [FUSE_BATCH_FORGET] = {do_batch_forget, sizeof(struct fuse_batch_forget_in), 0, true,
                           "FUSE_BATCH_FORGET"},
    OP(FUSE_GETATTR, do_getattr, 0, sizeof(struct fuse_attr_out)),
    OP(FUSE_SETATTR, do_setattr, sizeof(struct fuse_setattr_in), sizeof(struct fuse_attr_out)),
    OP(FUSE_READLINK, do_readlink, 0, 0),
    OP(FUSE_SYMLINK, do_symlink, 0, sizeof(struct fuse_entry_out)),
    OP(FUSE_MKDIR, do_mkdir, sizeof(struct fuse_mkdir_in), sizeof(struct fuse_entry_out)),
    OP(FUSE_UNLINK, do_unlink, 0, 0),
    OP(FUSE_RMDIR, do_unlink, 0, 0),
    OP(FUSE_RENAME, do_rename, sizeof(struct fuse_rename_in), 0),
    OP(FUSE_RENAME2, do_rename2, sizeof(struct fuse_rename2_in), 0),
    OP(FUSE_LINK, do_link, sizeof(struct fuse_link_in), sizeof(struct fuse_entry_out)),
    OP(FUSE_OPEN, do_open, sizeof(struct fuse_open_in), sizeof(struct fuse_open_out)),
    OP(FUSE_OPENDIR, do_open, sizeof(struct fuse_open_in), sizeof(struct fuse_open_out)),
    OP(FUSE_CREATE, do_create, sizeof(struct fuse_create_in),
       sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out)),
    OP(FUSE_READ, do_read, sizeof(struct fuse_read_in), 0),
    OP(FUSE_READDIR, do_read, sizeof(struct fuse_read_in), 0),
    OP(FUSE_READDIRPLUS, do_read, sizeof(struct fuse_read_in), 0),
    OP(FUSE_WRITE, do_write, sizeof(struct fuse_write_in), sizeof(struct fuse_write_out)),
    OP(FUSE_STATFS, do_statfs, 0, sizeof(struct fuse_statfs_out)),
    OP(FUSE_RELEASE, do_release, sizeof(struct fuse_release_in), 0),
    OP(FUSE_RELEASEDIR, do_release, sizeof(struct fuse_release_in), 0),
    OP(FUSE_FSYNC, do_fsync, sizeof(struct fuse_fsync_in), 0),
    OP(FUSE_FSYNCDIR, do_fsync, sizeof(struct fuse_fsync_in), 0),
    OP(FUSE_ACCESS, do_access, sizeof(struct fuse_access_in), 0),
    OP(FUSE_FALLOCATE, do_fallocate, sizeof(struct fuse_fallocate_in), 0),
    OP(FUSE_GETXATTR, do_getxattr, sizeof(struct fuse_getxattr_in), 0),
    OP(FUSE_LISTXATTR, do_listxattr, sizeof(struct fuse_getxattr_in), 0),
    OP(FUSE_SETXATTR, do_setxattr, FUSE_COMPAT_SETXATTR_IN_SIZE, 0),
    OP(FUSE_REMOVEXATTR, do_removexattr, 0, 0),
    OP(FUSE_LSEEK, do_lseek, sizeof(struct fuse_lseek_in), sizeof(struct fuse_lseek_out)),
    /* FUSE_FLUSH (each close in the guest) is ENOSYS, as every opcode not
     * here: the kernel then sends it no more. A flush would have nothing
     * to do: writes are on the file when answered, and the guest's locks
     * are its own (the host holds none). A request saved per close. */
    /* Takes no reply; virtio-fs drivers do not send it. */
    [FUSE_INTERRUPT] = {NULL, 0, 0, true, "FUSE_INTERRUPT"},
};

const char *fuse_opcode_name(uint32_t opcode)
{
    const char *name = opcode < sizeof(ops) / sizeof(ops[0]) ? ops[opcode].name : NULL;

    return name ? name + strlen("FUSE_") : "other";
}

static size_t reply_header(uint8_t *out, uint64_t unique, long result)
{
    struct fuse_out_header o = {
        .len = (uint32_t)(sizeof(o) + (result > 0 ? (size_t)result : 0)),
        .error = result < 0 ? (int32_t)result : 0,
        .unique = unique,
    };

    memcpy(out, &o, sizeof(o));
    return o.len;
}

/* The handler's result: payload bytes, or a negative errno. */
static long dispatch(struct req *r, const struct op *op)
{
    if (!op || !op->serve)
        return -ENOSYS;
    if (r->body_len < op->in_size || r->payload_cap < op->out_size)
        return -EINVAL;
    if (r->h.opcode != FUSE_INIT && !atomic_load(&r->s->initialized))
        return -EIO;
    return op->serve(r);
}

size_t fuse_serve(struct fuse_server *s, const uint8_t *in, size_t in_len, uint8_t *out,
                  size_t out_cap)
{
    return fuse_serve_data(s, in, in_len, NULL, 0, out, out_cap);
}

static size_t serve(struct fuse_server *s, const uint8_t *in, size_t in_len,
                    const struct iovec *data, unsigned data_count, const struct iovec *dest,
                    unsigned dest_count, uint8_t *out, size_t out_cap)
{
    struct req r = {.s = s, .dest = dest, .dest_count = dest_count};
    const struct op *op = NULL;
    size_t total = in_len + iov_bytes(data, data_count);
    long result;

    if (in_len >= sizeof(r.h)) {
        memcpy(&r.h, in, sizeof(r.h));
        if (r.h.opcode < sizeof(ops) / sizeof(ops[0]) &&
            (ops[r.h.opcode].serve || ops[r.h.opcode].no_reply))
            op = &ops[r.h.opcode];
    }
    if (op && op->no_reply) {
        if (op->serve && r.h.len >= sizeof(r.h) + op->in_size && r.h.len <= in_len &&
            atomic_load(&s->initialized)) {
            r.body = in + sizeof(r.h);
            r.body_len = r.h.len - sizeof(r.h);
            op->serve(&r);
        }
        return 0;
    }
    if (out_cap < sizeof(struct fuse_out_header))
        return 0;
    r.payload = dest ? NULL : out + sizeof(struct fuse_out_header);
    r.payload_cap = dest ? iov_bytes(dest, dest_count) : out_cap - sizeof(struct fuse_out_header);
    if (in_len < sizeof(r.h) || r.h.len < sizeof(r.h) || r.h.len > total ||
        (dest && r.h.opcode != FUSE_READ)) {
        result = -EINVAL;
    } else {
        r.body = in + sizeof(r.h);
        r.body_len = (r.h.len < in_len ? r.h.len : in_len) - sizeof(r.h);
        /* Only a WRITE's payload may lie outside in[]. */
        if (r.h.len > in_len && r.h.opcode == FUSE_WRITE) {
            r.data = data;
            r.data_count = data_count;
            r.data_len = r.h.len - in_len;
        }
        result = r.h.len > in_len && !r.data ? -EINVAL : dispatch(&r, op);
    }
    if (result < -4095 || result > (long)r.payload_cap)
        result = -EIO;
    return reply_header(out, r.h.unique, result);
}

size_t fuse_serve_data(struct fuse_server *s, const uint8_t *in, size_t in_len,
                       const struct iovec *data, unsigned data_count, uint8_t *out,
                       size_t out_cap)
{
    return serve(s, in, in_len, data, data_count, NULL, 0, out, out_cap);
}

size_t fuse_serve_read(struct fuse_server *s, const uint8_t *in, size_t in_len,
                       const struct iovec *dest, unsigned dest_count, uint8_t *out,
                       size_t out_cap)
{
    static const struct iovec none;

    return serve(s, in, in_len, NULL, 0, dest_count ? dest : &none, dest_count, out,
                 out_cap < sizeof(struct fuse_out_header) ? out_cap
                                                          : sizeof(struct fuse_out_header));
}

struct fuse_server *fuse_server_new(struct pt_fs *fs)
{
    struct fuse_server *s = calloc(1, sizeof(*s));

    if (s)
        s->fs = fs;
    return s;
}

void fuse_server_free(struct fuse_server *s)
{
    free(s);
}

void fuse_server_reset(struct fuse_server *s)
{
    pt_reset(s->fs);
    atomic_store(&s->initialized, false);
    atomic_store(&s->no_open, false);
}

bool fuse_server_initialized(struct fuse_server *s)
{
    return atomic_load(&s->initialized);
}

void fuse_server_set_initialized(struct fuse_server *s, bool on)
{
    atomic_store(&s->initialized, on);
}

bool fuse_server_no_open(struct fuse_server *s)
{
    return atomic_load(&s->no_open);
}

void fuse_server_set_no_open(struct fuse_server *s, bool on)
{
    atomic_store(&s->no_open, on);
}
