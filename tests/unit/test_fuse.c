/* The FUSE server and its passthrough file system driven with request
 * bytes as a guest's virtio-fs driver lays them out, against a scratch
 * folder: scratch/share is shared, scratch/outside is its neighbour that
 * no request may touch. The host's own view of the files (read with
 * plain syscalls and sh) is the judge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "devices/virtio/fs.h"
#include "fs/fuse.h"
#include "fs/passthrough.h"
#include "scratch.h"
#include "util/blob.h"

static uint8_t in[FUSE_SERVER_IN_MAX];
static uint8_t out[FUSE_SERVER_OUT_MAX];
static struct pt_fs *fs;
static struct fuse_server *srv;
static uint64_t unique = 100;
static size_t reply_len; /* payload bytes of the last reply */

/* Builds header + arg + names (each with its NUL) in `in`. */
static size_t build(uint32_t opcode, uint64_t node, const void *arg, size_t arg_len,
                    const char *name1, const char *name2)
{
    struct fuse_in_header h = {.opcode = opcode, .nodeid = node, .unique = ++unique};
    size_t len = sizeof(h);

    if (arg_len)
        memcpy(in + len, arg, arg_len);
    len += arg_len;
    if (name1) {
        memcpy(in + len, name1, strlen(name1) + 1);
        len += strlen(name1) + 1;
    }
    if (name2) {
        memcpy(in + len, name2, strlen(name2) + 1);
        len += strlen(name2) + 1;
    }
    h.len = (uint32_t)len;
    memcpy(in, &h, sizeof(h));
    return len;
}

/* Serves in[0..len) and checks the reply's framing: its error (0 or
 * -errno); the payload is at out + 16, reply_len bytes. */
static int32_t serve_raw(size_t len, size_t out_cap)
{
    struct fuse_out_header o;
    size_t n = fuse_serve(srv, in, len, out, out_cap);

    assert_true(n >= sizeof(o));
    memcpy(&o, out, sizeof(o));
    assert_int_equal(o.len, n);
    assert_true(o.error <= 0);
    reply_len = n - sizeof(o);
    if (o.error)
        assert_int_equal(reply_len, 0);
    return o.error;
}

static int32_t call(uint32_t opcode, uint64_t node, const void *arg, size_t arg_len,
                    const char *name1, const char *name2)
{
    return serve_raw(build(opcode, node, arg, arg_len, name1, name2), sizeof(out));
}

static void *payload(void)
{
    return out + sizeof(struct fuse_out_header);
}

static void init_session(void)
{
    struct fuse_init_in init = {.major = 7, .minor = 38, .max_readahead = 65536,
                                .flags = FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES};
    struct fuse_init_out o;

    assert_int_equal(call(FUSE_INIT, 0, &init, sizeof(init), NULL, NULL), 0);
    assert_int_equal(reply_len, sizeof(o));
    memcpy(&o, payload(), sizeof(o));
    assert_int_equal(o.major, 7);
    assert_int_equal(o.minor, 38);
    assert_int_equal(o.max_write, FUSE_SERVER_MAX_IO);
    assert_true(o.flags & FUSE_DO_READDIRPLUS);
}

static void start(bool read_only, const struct pt_limits *limits)
{
    assert_int_equal(sh("rm -rf share outside && mkdir -p share/sub outside && "
                        "echo secret > outside/secret && echo hello > share/hello && "
                        "echo inner > share/sub/inner"), 0);
    assert_int_equal(pt_new(in_dir("share"), read_only, limits, &fs), 0);
    srv = fuse_server_new(fs);
    assert_non_null(srv);
    init_session();
}

static void stop(void)
{
    uint32_t inodes, handles;

    /* The neighbour of the share is as it was. */
    assert_int_equal(sh("test \"$(ls -A outside)\" = secret && test \"$(cat outside/secret)\" = secret"), 0);
    pt_counts(fs, &inodes, &handles);
    assert_true(inodes >= 1);
    fuse_server_free(srv);
    pt_free(fs);
}

/* ---- helpers for common requests ---- */

/* A lookup as the guest's kernel takes it: node id 0 is ENOENT (a
 * negative entry, cached for entry_valid seconds). */
static int32_t lookup(uint64_t parent, const char *name, uint64_t *node)
{
    struct fuse_entry_out e;
    int32_t err = call(FUSE_LOOKUP, parent, NULL, 0, name, NULL);

    if (err == 0) {
        memcpy(&e, payload(), sizeof(e));
        if (e.nodeid == 0)
            return e.entry_valid > 0 ? -ENOENT : -EIO;
        *node = e.nodeid;
    }
    return err;
}

static uint64_t must_lookup(uint64_t parent, const char *name)
{
    uint64_t node = 0;
    assert_int_equal(lookup(parent, name, &node), 0);
    return node;
}

static int32_t open_node(uint64_t node, uint32_t flags, uint64_t *fh)
{
    struct fuse_open_in o = {.flags = flags};
    struct fuse_open_out r;
    int32_t err = call(FUSE_OPEN, node, &o, sizeof(o), NULL, NULL);

    if (err == 0) {
        memcpy(&r, payload(), sizeof(r));
        *fh = r.fh;
    }
    return err;
}

static int32_t create_mode(uint64_t parent, const char *name, uint32_t flags, uint32_t mode,
                           uint64_t *node, uint64_t *fh)
{
    struct fuse_create_in c = {.flags = flags, .mode = mode};
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } r;
    int32_t err = call(FUSE_CREATE, parent, &c, sizeof(c), name, NULL);

    if (err == 0) {
        assert_int_equal(reply_len, sizeof(r));
        memcpy(&r, payload(), sizeof(r));
        *node = r.e.nodeid;
        *fh = r.o.fh;
    }
    return err;
}

static int32_t create(uint64_t parent, const char *name, uint32_t flags, uint64_t *node,
                      uint64_t *fh)
{
    return create_mode(parent, name, flags, 0644, node, fh);
}

/* A WRITE of data on node through fh (0: the node's own file), flags the
 * guest's open flags. */
static int32_t write_node(uint64_t node, uint64_t fh, uint32_t flags, uint64_t offset,
                          const char *data)
{
    struct fuse_write_in w = {.fh = fh, .offset = offset, .size = (uint32_t)strlen(data),
                              .flags = flags};
    uint8_t arg[sizeof(w) + 256];

    memcpy(arg, &w, sizeof(w));
    memcpy(arg + sizeof(w), data, w.size);
    return call(FUSE_WRITE, node, arg, sizeof(w) + w.size, NULL, NULL);
}

static int32_t write_at(uint64_t fh, uint64_t offset, const char *data)
{
    return write_node(FUSE_ROOT_ID, fh, 0, offset, data);
}

/* Reads up to size bytes of node through fh into buf, NUL-terminated: the
 * error. */
static int32_t read_node(uint64_t node, uint64_t fh, uint64_t offset, char *buf, uint32_t size)
{
    struct fuse_read_in r = {.fh = fh, .offset = offset, .size = size - 1};
    int32_t err = call(FUSE_READ, node, &r, sizeof(r), NULL, NULL);

    buf[0] = 0;
    if (err == 0) {
        memcpy(buf, payload(), reply_len);
        buf[reply_len] = 0;
    }
    return err;
}

static int32_t read_at(uint64_t fh, uint64_t offset, char *buf, uint32_t size)
{
    return read_node(FUSE_ROOT_ID, fh, offset, buf, size);
}

static void release(uint64_t fh)
{
    struct fuse_release_in r = {.fh = fh};
    assert_int_equal(call(FUSE_RELEASE, 1, &r, sizeof(r), NULL, NULL), 0);
}

static void forget(uint64_t node, uint64_t n)
{
    struct fuse_forget_in f = {.nlookup = n};
    assert_int_equal(fuse_serve(srv, in, build(FUSE_FORGET, node, &f, sizeof(f), NULL, NULL), out,
                                sizeof(out)),
                     0);
}

/* ---- the tests ---- */

static void files_read_write_create(void **state)
{
    char buf[64], host[64];
    uint64_t hello, fh, node, fh2;
    struct fuse_attr_out a;
    struct fuse_getattr_in g = {0};
    (void)state;

    start(false, NULL);
    hello = must_lookup(FUSE_ROOT_ID, "hello");
    assert_int_equal(must_lookup(FUSE_ROOT_ID, "hello"), hello); /* one node per file */
    assert_int_equal(call(FUSE_GETATTR, hello, &g, sizeof(g), NULL, NULL), 0);
    memcpy(&a, payload(), sizeof(a));
    assert_int_equal(a.attr.size, 6);
    assert_true(S_ISREG(a.attr.mode));

    assert_int_equal(open_node(hello, O_RDWR, &fh), 0);
    assert_int_equal(read_at(fh, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "hello\n");
    assert_int_equal(write_at(fh, 0, "HE"), 0);
    assert_int_equal(((struct fuse_write_out *)payload())->size, 2);
    release(fh);
    slurp("share/hello", host, sizeof(host));
    assert_string_equal(host, "HEllo\n");
    /* A released handle is gone. */
    assert_int_equal(read_at(fh, 0, buf, sizeof(buf)), -EBADF);

    assert_int_equal(create(FUSE_ROOT_ID, "new", O_WRONLY | O_EXCL, &node, &fh2), 0);
    assert_int_equal(write_at(fh2, 0, "made by the guest"), 0);
    {
        struct fuse_fsync_in f = {.fh = fh2};
        struct fuse_flush_in fl = {.fh = fh2};
        assert_int_equal(call(FUSE_FSYNC, node, &f, sizeof(f), NULL, NULL), 0);
        /* Nothing to flush (writes are on the file when answered, no host
         * locks): ENOSYS, and the guest's kernel sends no more. */
        assert_int_equal(call(FUSE_FLUSH, node, &fl, sizeof(fl), NULL, NULL), -ENOSYS);
    }
    release(fh2);
    slurp("share/new", host, sizeof(host));
    assert_string_equal(host, "made by the guest");
    assert_int_equal(create(FUSE_ROOT_ID, "new", O_WRONLY | O_EXCL, &node, &fh2), -EEXIST);

    /* setattr: truncate and chmod, without a handle. */
    {
        struct fuse_setattr_in s = {.valid = FATTR_SIZE | FATTR_MODE, .size = 4, .mode = 0600};
        struct stat st;
        assert_int_equal(call(FUSE_SETATTR, node, &s, sizeof(s), NULL, NULL), 0);
        memcpy(&a, payload(), sizeof(a));
        assert_int_equal(a.attr.size, 4);
        assert_int_equal(stat(in_dir("share/new"), &st), 0);
        assert_int_equal(st.st_size, 4);
        assert_int_equal(st.st_mode & 07777, 0600);
    }
    /* No set-user-ID or set-group-ID file for the host's users to run. */
    {
        struct fuse_setattr_in s = {.valid = FATTR_MODE, .mode = 06755};
        struct stat st;
        assert_int_equal(call(FUSE_SETATTR, node, &s, sizeof(s), NULL, NULL), 0);
        assert_int_equal(stat(in_dir("share/new"), &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
    }
    /* O_TRUNC on open (FUSE_ATOMIC_O_TRUNC). */
    assert_int_equal(open_node(node, O_WRONLY | O_TRUNC, &fh), 0);
    release(fh);
    slurp("share/new", host, sizeof(host));
    assert_string_equal(host, "");
    stop();
}

/* The open_flags of the OPEN or CREATE reply in out. */
static uint32_t opened_flags(bool created)
{
    struct fuse_open_out o;

    memcpy(&o, (uint8_t *)payload() + (created ? sizeof(struct fuse_entry_out) : 0), sizeof(o));
    return o.open_flags;
}

/* A write-only file bypasses the guest's page cache (FOPEN_DIRECT_IO: no
 * copy of what is written into pages nothing reads); any file that can be
 * read keeps it. */
static void write_only_files_bypass_the_guest_cache(void **state)
{
    uint64_t hello, node, fh;
    (void)state;

    start(false, NULL);
    hello = must_lookup(FUSE_ROOT_ID, "hello");
    assert_int_equal(open_node(hello, O_WRONLY | O_APPEND, &fh), 0);
    assert_int_equal(opened_flags(false) & FOPEN_DIRECT_IO, FOPEN_DIRECT_IO);
    release(fh);
    assert_int_equal(open_node(hello, O_RDWR, &fh), 0);
    assert_int_equal(opened_flags(false) & FOPEN_DIRECT_IO, 0);
    release(fh);
    assert_int_equal(open_node(hello, O_RDONLY, &fh), 0);
    assert_int_equal(opened_flags(false) & FOPEN_DIRECT_IO, 0);
    release(fh);
    assert_int_equal(create(FUSE_ROOT_ID, "w", O_WRONLY | O_TRUNC, &node, &fh), 0);
    assert_int_equal(opened_flags(true) & FOPEN_DIRECT_IO, FOPEN_DIRECT_IO);
    release(fh);
    assert_int_equal(create(FUSE_ROOT_ID, "rw", O_RDWR, &node, &fh), 0);
    assert_int_equal(opened_flags(true) & FOPEN_DIRECT_IO, 0);
    release(fh);
    stop();
}

/* The host's mode bits of share/NAME. */
static mode_t host_mode(const char *name)
{
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "share/%s", name);
    assert_int_equal(stat(in_dir(path), &st), 0);
    return st.st_mode & 07777;
}

/* FUSE_HANDLE_KILLPRIV: the guest sends no GETATTR before a chown and
 * leaves killing set-user-ID/set-group-ID on a change to us. A program
 * the host keeps set-user-ID in the share loses the bit when a guest
 * (even its root) writes it, truncates it or opens it O_TRUNC; a
 * set-group-ID file without group-execute keeps it, as on Linux. */
static void changes_kill_set_id_bits(void **state)
{
    struct fuse_init_in init = {.major = 7, .minor = 38, .flags = FUSE_HANDLE_KILLPRIV};
    struct fuse_setattr_in trunc = {.valid = FATTR_SIZE, .size = 1};
    uint64_t fh;
    (void)state;

    start(false, NULL);
    assert_int_equal(call(FUSE_INIT, 0, &init, sizeof(init), NULL, NULL), 0);
    assert_true(((struct fuse_init_out *)payload())->flags & FUSE_HANDLE_KILLPRIV);
    assert_int_equal(sh("for f in w t o; do echo x > share/$f; chmod 6755 share/$f; done && "
                        "echo x > share/g && chmod 2644 share/g"), 0);

    assert_int_equal(open_node(must_lookup(FUSE_ROOT_ID, "w"), O_WRONLY, &fh), 0);
    assert_int_equal(host_mode("w"), 06755); /* opening changes nothing */
    assert_int_equal(write_at(fh, 0, "y"), 0);
    release(fh);
    assert_int_equal(host_mode("w"), 0755);

    assert_int_equal(call(FUSE_SETATTR, must_lookup(FUSE_ROOT_ID, "t"), &trunc, sizeof(trunc),
                          NULL, NULL),
                     0);
    assert_int_equal(host_mode("t"), 0755);

    assert_int_equal(open_node(must_lookup(FUSE_ROOT_ID, "o"), O_WRONLY | O_TRUNC, &fh), 0);
    release(fh);
    assert_int_equal(host_mode("o"), 0755);

    assert_int_equal(open_node(must_lookup(FUSE_ROOT_ID, "g"), O_WRONLY, &fh), 0);
    assert_int_equal(write_at(fh, 0, "y"), 0);
    release(fh);
    assert_int_equal(host_mode("g"), 02644);
    stop();
}

static void names_and_links(void **state)
{
    struct fuse_mkdir_in mk = {.mode = 0755};
    struct fuse_rename_in rn;
    struct fuse_rename2_in rn2;
    struct fuse_link_in ln;
    uint64_t d, node, fh;
    char host[64];
    (void)state;

    start(false, NULL);
    assert_int_equal(call(FUSE_MKDIR, FUSE_ROOT_ID, &mk, sizeof(mk), "d", NULL), 0);
    d = ((struct fuse_entry_out *)payload())->nodeid;
    assert_int_equal(create(d, "f", O_WRONLY, &node, &fh), 0);
    assert_int_equal(write_at(fh, 0, "x"), 0);
    release(fh);
    assert_int_equal(access(in_dir("share/d/f"), F_OK), 0);

    rn = (struct fuse_rename_in){.newdir = FUSE_ROOT_ID};
    assert_int_equal(call(FUSE_RENAME, d, &rn, sizeof(rn), "f", "g"), 0);
    assert_int_equal(sh("test -f share/g && ! test -e share/d/f"), 0);
    rn2 = (struct fuse_rename2_in){.newdir = FUSE_ROOT_ID, .flags = RENAME_NOREPLACE};
    assert_int_equal(call(FUSE_RENAME2, FUSE_ROOT_ID, &rn2, sizeof(rn2), "g", "hello"), -EEXIST);
    rn2.flags = RENAME_EXCHANGE;
    assert_int_equal(call(FUSE_RENAME2, FUSE_ROOT_ID, &rn2, sizeof(rn2), "g", "hello"), 0);
    slurp("share/g", host, sizeof(host));
    assert_string_equal(host, "hello\n");
    rn2.flags = RENAME_WHITEOUT;
    assert_int_equal(call(FUSE_RENAME2, FUSE_ROOT_ID, &rn2, sizeof(rn2), "g", "hello"), -EINVAL);

    ln = (struct fuse_link_in){.oldnodeid = node};
    assert_int_equal(call(FUSE_LINK, d, &ln, sizeof(ln), "hard", NULL), 0);
    assert_int_equal(((struct fuse_entry_out *)payload())->nodeid, node);
    assert_int_equal(sh("test \"$(stat -c %%h share/hello)\" = 2 && test \"$(cat share/d/hard)\" = x"), 0);

    assert_int_equal(call(FUSE_SYMLINK, d, NULL, 0, "link", "../../outside/secret"), 0);
    node = ((struct fuse_entry_out *)payload())->nodeid;
    assert_int_equal(call(FUSE_READLINK, node, NULL, 0, NULL, NULL), 0);
    assert_int_equal(reply_len, strlen("../../outside/secret"));
    assert_memory_equal(payload(), "../../outside/secret", reply_len);
    assert_int_equal(sh("test \"$(readlink share/d/link)\" = ../../outside/secret"), 0);

    assert_int_equal(call(FUSE_RMDIR, FUSE_ROOT_ID, NULL, 0, "d", NULL), -ENOTEMPTY);
    assert_int_equal(call(FUSE_UNLINK, d, NULL, 0, "hard", NULL), 0);
    /* A name not there: a negative entry the guest may cache (error 0,
     * node id 0, a timeout), not ENOENT, which it would ask again. */
    {
        struct fuse_entry_out e;
        assert_int_equal(call(FUSE_LOOKUP, d, NULL, 0, "hard", NULL), 0);
        memcpy(&e, payload(), sizeof(e));
        assert_int_equal(e.nodeid, 0);
        assert_true(e.entry_valid > 0);
    }
    assert_int_equal(call(FUSE_UNLINK, d, NULL, 0, "link", NULL), 0);
    assert_int_equal(call(FUSE_RMDIR, FUSE_ROOT_ID, NULL, 0, "d", NULL), 0);
    assert_int_equal(sh("! test -e share/d"), 0);
    /* The node of the removed directory still answers (the guest may hold
     * it), a lookup in it finds nothing. */
    assert_int_equal(lookup(d, "f", &node), -ENOENT);

    {
        struct fuse_access_in ac = {.mask = R_OK | W_OK};
        assert_int_equal(call(FUSE_ACCESS, FUSE_ROOT_ID, &ac, sizeof(ac), NULL, NULL), 0);
        assert_int_equal(call(FUSE_STATFS, FUSE_ROOT_ID, NULL, 0, NULL, NULL), 0);
        assert_true(((struct fuse_statfs_out *)payload())->st.bsize > 0);
    }
    stop();
}

static void sparse_files(void **state)
{
    uint64_t node, fh;
    struct fuse_fallocate_in fa;
    struct fuse_lseek_in ls;
    (void)state;

    start(false, NULL);
    assert_int_equal(create(FUSE_ROOT_ID, "sparse", O_RDWR, &node, &fh), 0);
    fa = (struct fuse_fallocate_in){.fh = fh, .offset = 0, .length = 1 << 20};
    assert_int_equal(call(FUSE_FALLOCATE, node, &fa, sizeof(fa), NULL, NULL), 0);
    assert_int_equal(sh("test \"$(stat -c %%s share/sparse)\" = 1048576"), 0);
    fa = (struct fuse_fallocate_in){.fh = fh, .offset = 0, .length = 512 << 10,
                                    .mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE};
    assert_int_equal(call(FUSE_FALLOCATE, node, &fa, sizeof(fa), NULL, NULL), 0);
    assert_int_equal(write_at(fh, 768 << 10, "data"), 0);
    ls = (struct fuse_lseek_in){.fh = fh, .offset = 0, .whence = SEEK_DATA};
    if (call(FUSE_LSEEK, node, &ls, sizeof(ls), NULL, NULL) == 0) {
        /* tmpfs and ext4 report the hole; the data starts past it. */
        assert_true(((struct fuse_lseek_out *)payload())->offset >= 512 << 10);
        ls.whence = SEEK_HOLE;
        assert_int_equal(call(FUSE_LSEEK, node, &ls, sizeof(ls), NULL, NULL), 0);
        assert_int_equal(((struct fuse_lseek_out *)payload())->offset, 0);
    }
    ls.whence = 77;
    assert_int_equal(call(FUSE_LSEEK, node, &ls, sizeof(ls), NULL, NULL), -EINVAL);
    fa.mode = 0x40; /* FALLOC_FL_INSERT_RANGE: not for guests */
    assert_int_equal(call(FUSE_FALLOCATE, node, &fa, sizeof(fa), NULL, NULL), -EOPNOTSUPP);
    release(fh);
    stop();
}

/* Lists directory node with READDIR or READDIRPLUS, size bytes a request:
 * the names, sorted, space-separated into names. */
static int32_t list(uint64_t node, uint32_t opcode, uint32_t size, char *names, size_t cap)
{
    struct fuse_open_in o = {0};
    struct fuse_read_in r = {.size = size};
    char found[64][NAME_MAX + 1];
    unsigned count = 0;
    int32_t err;

    err = call(FUSE_OPENDIR, node, &o, sizeof(o), NULL, NULL);
    if (err)
        return err;
    r.fh = ((struct fuse_open_out *)payload())->fh;
    for (;;) {
        size_t at = 0;
        assert_int_equal(call(opcode, node, &r, sizeof(r), NULL, NULL), 0);
        if (reply_len == 0)
            break;
        while (at < reply_len) {
            const uint8_t *p = (const uint8_t *)payload() + at;
            const struct fuse_dirent *d;
            if (opcode == FUSE_READDIRPLUS) {
                const struct fuse_direntplus *dp = (const void *)p;
                d = &dp->dirent;
                at += FUSE_DIRENTPLUS_SIZE(dp);
                if (dp->entry_out.nodeid)
                    forget(dp->entry_out.nodeid, 1);
                else
                    assert_true(d->name[0] == '.');
            } else {
                d = (const void *)p;
                at += FUSE_DIRENT_SIZE(d);
            }
            assert_true(count < 64);
            memcpy(found[count], d->name, d->namelen);
            found[count++][d->namelen] = 0;
            r.offset = d->off;
        }
    }
    {
        struct fuse_release_in rel = {.fh = r.fh};
        assert_int_equal(call(FUSE_RELEASEDIR, node, &rel, sizeof(rel), NULL, NULL), 0);
    }
    qsort(found, count, sizeof(found[0]), (int (*)(const void *, const void *))strcmp);
    names[0] = 0;
    for (unsigned i = 0; i < count; i++) {
        strncat(names, found[i], cap - strlen(names) - 1);
        if (i + 1 < count)
            strncat(names, " ", cap - strlen(names) - 1);
    }
    return 0;
}

static void directories(void **state)
{
    char names[1024];
    uint32_t inodes, handles;
    (void)state;

    start(false, NULL);
    assert_int_equal(sh("touch share/a share/bb share/ccc"), 0);
    assert_int_equal(list(FUSE_ROOT_ID, FUSE_READDIR, 4096, names, sizeof(names)), 0);
    assert_string_equal(names, ". .. a bb ccc hello sub");
    /* A buffer of two entries a request: the listing resumes at each off. */
    assert_int_equal(list(FUSE_ROOT_ID, FUSE_READDIR, 64, names, sizeof(names)), 0);
    assert_string_equal(names, ". .. a bb ccc hello sub");
    assert_int_equal(list(FUSE_ROOT_ID, FUSE_READDIRPLUS, 4096, names, sizeof(names)), 0);
    assert_string_equal(names, ". .. a bb ccc hello sub");
    assert_int_equal(list(FUSE_ROOT_ID, FUSE_READDIRPLUS, 200, names, sizeof(names)), 0);
    assert_string_equal(names, ". .. a bb ccc hello sub");
    /* Every node readdirplus gave out was forgotten by list(): only the
     * root is left, and no handle. */
    pt_counts(fs, &inodes, &handles);
    assert_int_equal(inodes, 1);
    assert_int_equal(handles, 0);
    assert_int_equal(list(must_lookup(FUSE_ROOT_ID, "hello"), FUSE_READDIR, 4096, names,
                          sizeof(names)),
                     -ENOTDIR);
    stop();
}

static void escapes(void **state)
{
    uint64_t node, fh, link, d;
    struct fuse_mkdir_in mk = {.mode = 0755};
    struct fuse_link_in ln;
    char buf[64];
    (void)state;

    start(false, NULL);
    /* Names that are not one component. */
    assert_int_equal(lookup(FUSE_ROOT_ID, "..", &node), -EINVAL);
    assert_int_equal(lookup(FUSE_ROOT_ID, ".", &node), -EINVAL);
    assert_int_equal(lookup(FUSE_ROOT_ID, "../outside", &node), -EINVAL);
    assert_int_equal(lookup(FUSE_ROOT_ID, "sub/inner", &node), -EINVAL);
    assert_int_equal(lookup(FUSE_ROOT_ID, "", &node), -EINVAL);
    assert_int_equal(lookup(must_lookup(FUSE_ROOT_ID, "sub"), "..", &node), -EINVAL);
    assert_int_equal(call(FUSE_MKDIR, FUSE_ROOT_ID, &mk, sizeof(mk), "../outside/x", NULL), -EINVAL);
    assert_int_equal(create(FUSE_ROOT_ID, "../outside/new", O_WRONLY, &node, &fh), -EINVAL);

    /* Symlinks the host put in the share, absolute and relative: the guest
     * gets the link, never what it points at. */
    assert_int_equal(sh("ln -s /etc share/etc && ln -s ../outside share/rel && "
                        "ln -s ../outside/secret share/sec && ln -s ../outside/planted share/dangling"),
                     0);
    link = must_lookup(FUSE_ROOT_ID, "etc");
    assert_int_equal(lookup(link, "passwd", &node), -ENOTDIR);
    assert_int_equal(lookup(must_lookup(FUSE_ROOT_ID, "rel"), "secret", &node), -ENOTDIR);
    assert_int_equal(open_node(must_lookup(FUSE_ROOT_ID, "sec"), O_RDONLY, &fh), -ELOOP);
    assert_int_equal(open_node(must_lookup(FUSE_ROOT_ID, "sec"), O_WRONLY | O_TRUNC, &fh), -ELOOP);
    {
        struct fuse_open_in o = {0};
        assert_int_equal(call(FUSE_OPENDIR, link, &o, sizeof(o), NULL, NULL), -ENOTDIR);
        struct fuse_setattr_in s = {.valid = FATTR_SIZE, .size = 0};
        assert_int_equal(call(FUSE_SETATTR, must_lookup(FUSE_ROOT_ID, "sec"), &s, sizeof(s), NULL,
                              NULL),
                         -EINVAL);
        s = (struct fuse_setattr_in){.valid = FATTR_MODE, .mode = 0777};
        assert_int_equal(call(FUSE_SETATTR, must_lookup(FUSE_ROOT_ID, "sec"), &s, sizeof(s), NULL,
                              NULL),
                         -EOPNOTSUPP);
    }
    /* A FIFO the host left in the share: neither open nor create blocks. */
    assert_int_equal(sh("mkfifo share/fifo"), 0);
    assert_int_equal(open_node(must_lookup(FUSE_ROOT_ID, "fifo"), O_RDONLY, &fh), -EACCES);
    assert_int_equal(create(FUSE_ROOT_ID, "fifo", O_RDWR, &node, &fh), -EACCES);
    /* Creating through a dangling link does not create its target. */
    assert_int_equal(create(FUSE_ROOT_ID, "dangling", O_WRONLY, &node, &fh), -ELOOP);
    assert_int_equal(access(in_dir("outside/planted"), F_OK), -1);
    /* A hard link to the symlink is a link to the link. */
    ln = (struct fuse_link_in){.oldnodeid = must_lookup(FUSE_ROOT_ID, "sec")};
    assert_int_equal(call(FUSE_LINK, FUSE_ROOT_ID, &ln, sizeof(ln), "sec2", NULL), 0);
    assert_int_equal(sh("test -L share/sec2"), 0);

    /* A file swapped for a symlink between lookup and open: the node is
     * the file it was, the open reaches that file, not the link's target. */
    node = must_lookup(FUSE_ROOT_ID, "hello");
    assert_int_equal(sh("mv share/hello share/hello.old && ln -s ../outside/secret share/hello"), 0);
    assert_int_equal(open_node(node, O_RDWR | O_TRUNC, &fh), 0);
    assert_int_equal(write_at(fh, 0, "guest"), 0);
    release(fh);
    assert_int_equal(sh("test \"$(cat share/hello.old)\" = guest"), 0);

    /* A directory swapped for a symlink to the neighbour: names in the old
     * node stay in the old directory; the new name is a link. */
    d = must_lookup(FUSE_ROOT_ID, "sub");
    assert_int_equal(sh("mv share/sub share/sub.old && ln -s ../outside share/sub"), 0);
    assert_int_equal(lookup(d, "secret", &node), -ENOENT);
    assert_int_equal(create(d, "secret", O_WRONLY, &node, &fh), 0);
    release(fh);
    assert_int_equal(sh("test -f share/sub.old/secret"), 0);
    assert_int_equal(lookup(must_lookup(FUSE_ROOT_ID, "sub"), "secret", &node), -ENOTDIR);
    assert_int_equal(read_at(fh, 0, buf, sizeof(buf)), -EBADF);

    /* A directory of the share moved out of it by the host: the guest's
     * renames of names inside the share stay inside. */
    {
        struct fuse_rename_in rn = {.newdir = FUSE_ROOT_ID};
        assert_int_equal(call(FUSE_RENAME, FUSE_ROOT_ID, &rn, sizeof(rn), "sec", "../x"), -EINVAL);
        assert_int_equal(call(FUSE_RENAME, FUSE_ROOT_ID, &rn, sizeof(rn), "../outside", "x"), -EINVAL);
        assert_int_equal(call(FUSE_UNLINK, FUSE_ROOT_ID, NULL, 0, "../outside/secret", NULL), -EINVAL);
    }
    stop();
}

static void read_only_share(void **state)
{
    struct fuse_mkdir_in mk = {.mode = 0755};
    struct fuse_setattr_in s = {.valid = FATTR_SIZE, .size = 0};
    struct fuse_rename_in rn = {.newdir = FUSE_ROOT_ID};
    struct fuse_access_in ac = {.mask = W_OK};
    uint64_t node, fh, hello;
    char buf[64];
    (void)state;

    start(true, NULL);
    hello = must_lookup(FUSE_ROOT_ID, "hello");
    assert_int_equal(open_node(hello, O_RDONLY, &fh), 0);
    assert_int_equal(read_at(fh, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "hello\n");
    assert_int_equal(write_at(fh, 0, "x"), -EROFS);
    release(fh);
    assert_int_equal(open_node(hello, O_WRONLY, &fh), -EROFS);
    assert_int_equal(open_node(hello, O_RDONLY | O_TRUNC, &fh), -EROFS);
    assert_int_equal(create(FUSE_ROOT_ID, "new", O_WRONLY, &node, &fh), -EROFS);
    assert_int_equal(call(FUSE_MKDIR, FUSE_ROOT_ID, &mk, sizeof(mk), "d", NULL), -EROFS);
    assert_int_equal(call(FUSE_SETATTR, hello, &s, sizeof(s), NULL, NULL), -EROFS);
    assert_int_equal(call(FUSE_UNLINK, FUSE_ROOT_ID, NULL, 0, "hello", NULL), -EROFS);
    assert_int_equal(call(FUSE_RMDIR, FUSE_ROOT_ID, NULL, 0, "sub", NULL), -EROFS);
    assert_int_equal(call(FUSE_RENAME, FUSE_ROOT_ID, &rn, sizeof(rn), "hello", "x"), -EROFS);
    assert_int_equal(call(FUSE_SYMLINK, FUSE_ROOT_ID, NULL, 0, "l", "hello"), -EROFS);
    assert_int_equal(call(FUSE_ACCESS, hello, &ac, sizeof(ac), NULL, NULL), -EROFS);
    assert_int_equal(sh("test \"$(ls share)\" = \"$(printf 'hello\\nsub')\" && "
                        "test \"$(cat share/hello)\" = hello"),
                     0);
    stop();
}

static void malformed_requests(void **state)
{
    struct fuse_in_header h = {.len = 10, .opcode = FUSE_LOOKUP, .nodeid = 1};
    struct fuse_write_in w = {.size = 1000};
    uint64_t node;
    (void)state;

    start(false, NULL);
    /* A short header, a length past the buffer, a length below the header. */
    memcpy(in, &h, sizeof(h));
    assert_int_equal(serve_raw(10, sizeof(out)), -EINVAL);
    build(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "hello", NULL);
    ((struct fuse_in_header *)in)->len = 4096;
    assert_int_equal(serve_raw(60, sizeof(out)), -EINVAL);
    ((struct fuse_in_header *)in)->len = 3;
    assert_int_equal(serve_raw(60, sizeof(out)), -EINVAL);
    /* Unknown opcodes. */
    assert_int_equal(call(9999, FUSE_ROOT_ID, NULL, 0, NULL, NULL), -ENOSYS);
    assert_int_equal(call(UINT32_MAX, FUSE_ROOT_ID, NULL, 0, NULL, NULL), -ENOSYS);
    assert_int_equal(call(FUSE_GETLK, FUSE_ROOT_ID, NULL, 0, NULL, NULL), -ENOSYS);
    assert_int_equal(call(FUSE_GETXATTR, FUSE_ROOT_ID, NULL, 0, NULL, NULL), -EINVAL);
    /* A name without its NUL, and a body shorter than its argument. */
    build(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "hello", NULL);
    ((struct fuse_in_header *)in)->len -= 1;
    assert_int_equal(serve_raw(sizeof(h) + 5, sizeof(out)), -EINVAL);
    assert_int_equal(call(FUSE_SETATTR, FUSE_ROOT_ID, &w, 8, NULL, NULL), -EINVAL);
    assert_int_equal(call(FUSE_RENAME, FUSE_ROOT_ID, &(struct fuse_rename_in){.newdir = 1},
                          sizeof(struct fuse_rename_in), "hello", NULL),
                     -EINVAL);
    /* Write data past the body. */
    assert_int_equal(call(FUSE_WRITE, FUSE_ROOT_ID, &w, sizeof(w), NULL, NULL), -EINVAL);
    /* Node ids and handles never given out, and stale ones. */
    assert_int_equal(lookup(0, "hello", &node), -ESTALE);
    assert_int_equal(lookup(12345, "hello", &node), -ESTALE);
    assert_int_equal(lookup(UINT64_MAX, "hello", &node), -ESTALE);
    assert_int_equal(lookup((uint64_t)7 << 32 | 1, "hello", &node), -ESTALE);
    node = must_lookup(FUSE_ROOT_ID, "sub");
    assert_int_equal(lookup(node, "inner", &node), 0);
    forget(node, 1);
    assert_int_equal(call(FUSE_GETATTR, node, &(struct fuse_getattr_in){0},
                          sizeof(struct fuse_getattr_in), NULL, NULL),
                     -ESTALE);
    /* fh 0 is the node's own file (FUSE_NO_OPEN_SUPPORT): the root is none. */
    assert_int_equal(write_at(0, 0, "x"), -EISDIR);
    assert_int_equal(write_at(UINT64_MAX, 0, "x"), -EBADF);
    assert_int_equal(read_at((uint64_t)3 << 32, 0, (char[8]){0}, 8), -EBADF);
    /* A file node used as a directory. */
    assert_int_equal(lookup(must_lookup(FUSE_ROOT_ID, "hello"), "x", &node), -ENOTDIR);
    /* No room for a reply: nothing written; for a fixed reply: an error. */
    build(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "hello", NULL);
    assert_int_equal(fuse_serve(srv, in, ((struct fuse_in_header *)in)->len, out, 8), 0);
    assert_int_equal(serve_raw(((struct fuse_in_header *)in)->len, 40), -EINVAL);
    /* Forgets: no reply, whatever their count says. */
    {
        struct {
            struct fuse_batch_forget_in b;
            struct fuse_forget_one one[2];
        } bf = {{.count = UINT32_MAX}, {{FUSE_ROOT_ID, 5}, {UINT64_MAX, 1}}};
        assert_int_equal(fuse_serve(srv, in, build(FUSE_BATCH_FORGET, 0, &bf, sizeof(bf), NULL, NULL),
                                    out, sizeof(out)),
                         0);
        assert_int_equal(fuse_serve(srv, in, build(FUSE_FORGET, 1, NULL, 0, NULL, NULL), out,
                                    sizeof(out)),
                         0);
    }
    /* The root survives any forget. */
    must_lookup(FUSE_ROOT_ID, "hello");
    /* Before INIT (after DESTROY), only INIT is served. */
    assert_int_equal(call(FUSE_DESTROY, 0, NULL, 0, NULL, NULL), 0);
    assert_int_equal(lookup(FUSE_ROOT_ID, "hello", &node), -EIO);
    {
        struct fuse_init_in old = {.major = 7, .minor = 12};
        assert_int_equal(call(FUSE_INIT, 0, &old, sizeof(old), NULL, NULL), -EPROTO);
    }
    init_session();
    must_lookup(FUSE_ROOT_ID, "hello");
    stop();
}

/* INIT as Linux sends it (FUSE_NO_OPEN_SUPPORT): the flags answered. */
static uint32_t init_no_open(void)
{
    struct fuse_init_in init = {.major = 7, .minor = 38, .max_readahead = 131072,
                                .flags = FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES |
                                         FUSE_NO_OPEN_SUPPORT | FUSE_ATOMIC_O_TRUNC |
                                         FUSE_AUTO_INVAL_DATA};

    assert_int_equal(call(FUSE_INIT, 0, &init, sizeof(init), NULL, NULL), 0);
    return ((struct fuse_init_out *)payload())->flags;
}

static uint32_t handles_held(void)
{
    uint32_t inodes, handles;

    pt_counts(fs, &inodes, &handles);
    return handles;
}

/* A guest that opens files without asking (Linux: OPEN answered ENOSYS
 * once, fs/fuse/file.c fuse_file_open; no RELEASE after, fuse_file_put)
 * reads a file with a LOOKUP and a READ, not also an OPEN and a RELEASE:
 * READ, WRITE, FSYNC, FALLOCATE, LSEEK and SETATTR come with fh 0 and
 * work on the node's own file; no descriptor stays open for them. */
static void files_opened_without_asking(void **state)
{
    struct fuse_open_in oi = {.flags = O_RDONLY};
    uint64_t hello, node, fh = 99, sub, link, fifo;
    char buf[64], host[64];
    uint32_t flags;
    (void)state;

    start(false, NULL);
    assert_int_equal(sh("mkfifo share/fifo && ln -s hello share/link"), 0);
    flags = init_no_open();
    /* Host changes show although the guest keeps pages across opens; an
     * O_TRUNC open truncates by SETATTR, as no OPEN comes. */
    assert_int_equal(flags & FUSE_AUTO_INVAL_DATA, FUSE_AUTO_INVAL_DATA);
    assert_int_equal(flags & FUSE_ATOMIC_O_TRUNC, 0);

    /* What reading a file costs: two requests, nothing held after. */
    hello = must_lookup(FUSE_ROOT_ID, "hello");
    assert_int_equal(call(FUSE_OPEN, hello, &oi, sizeof(oi), NULL, NULL), -ENOSYS);
    assert_int_equal(read_node(hello, 0, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "hello\n");
    assert_int_equal(handles_held(), 0);

    /* Writes: O_APPEND honoured; the file's set-user-ID bit killed. */
    assert_int_equal(sh("chmod 4755 share/hello"), 0);
    assert_int_equal(write_node(hello, 0, O_WRONLY, 0, "J"), 0);
    assert_int_equal(write_node(hello, 0, O_WRONLY | O_APPEND, 0, "more\n"), 0);
    slurp("share/hello", host, sizeof(host));
    assert_string_equal(host, "Jello\nmore\n");
    assert_int_equal(host_mode("hello") & 07777, 0755);
    {
        struct fuse_fsync_in f = {0};
        struct fuse_lseek_in l = {.offset = 0, .whence = SEEK_DATA};
        struct fuse_fallocate_in fa = {.offset = 0, .length = 8192};
        struct fuse_setattr_in sa = {.valid = FATTR_SIZE | FATTR_FH, .size = 3};
        struct stat st;
        assert_int_equal(call(FUSE_FSYNC, hello, &f, sizeof(f), NULL, NULL), 0);
        assert_int_equal(call(FUSE_LSEEK, hello, &l, sizeof(l), NULL, NULL), 0);
        assert_int_equal(((struct fuse_lseek_out *)payload())->offset, 0);
        assert_int_equal(call(FUSE_FALLOCATE, hello, &fa, sizeof(fa), NULL, NULL), 0);
        assert_int_equal(stat(in_dir("share/hello"), &st), 0);
        assert_int_equal(st.st_size, 8192);
        /* ftruncate in the guest: its handle is fh 0. */
        assert_int_equal(call(FUSE_SETATTR, hello, &sa, sizeof(sa), NULL, NULL), 0);
        slurp("share/hello", host, sizeof(host));
        assert_string_equal(host, "Jel");
    }

    /* CREATE keeps no handle: its RELEASE would never come. */
    assert_int_equal(create(FUSE_ROOT_ID, "new", O_WRONLY | O_EXCL, &node, &fh), 0);
    assert_int_equal(fh, 0);
    assert_int_equal(opened_flags(true) & FOPEN_DIRECT_IO, FOPEN_DIRECT_IO);
    assert_int_equal(handles_held(), 0);
    assert_int_equal(write_node(node, 0, O_WRONLY, 0, "made"), 0);
    release(0);
    slurp("share/new", host, sizeof(host));
    assert_string_equal(host, "made");

    /* fh 0 opens only a regular file, never a directory, a symlink or a
     * FIFO (which would block the thread), nor a node never given out. */
    sub = must_lookup(FUSE_ROOT_ID, "sub");
    link = must_lookup(FUSE_ROOT_ID, "link");
    fifo = must_lookup(FUSE_ROOT_ID, "fifo");
    assert_int_equal(read_node(sub, 0, 0, buf, sizeof(buf)), -EISDIR);
    assert_int_equal(read_node(link, 0, 0, buf, sizeof(buf)), -ELOOP);
    assert_int_equal(read_node(fifo, 0, 0, buf, sizeof(buf)), -EACCES);
    assert_int_equal(write_node(fifo, 0, O_WRONLY, 0, "x"), -EACCES);
    assert_int_equal(read_node((uint64_t)9 << 32 | 40, 0, 0, buf, sizeof(buf)), -ESTALE);
    assert_int_equal(read_node(0, 0, 0, buf, sizeof(buf)), -ESTALE);
    assert_int_equal(handles_held(), 0);

    /* A new session decides again: a guest that did not offer it opens. */
    init_session();
    assert_int_equal(open_node(hello, O_RDONLY, &fh), 0);
    assert_int_not_equal(fh, 0);
    release(fh);
    stop();
}

/* This thread's effective capabilities (the server runs on it here)
 * without those that override file modes (CAP_DAC_OVERRIDE,
 * CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID), as a jailed smolvm (which
 * drops all) or one a user runs has; mode_overrides(true) gives them back.
 * Nothing to do for a user who never had them. */
static void mode_overrides(bool on)
{
    static const uint32_t overrides = 1u << CAP_DAC_OVERRIDE | 1u << CAP_DAC_READ_SEARCH |
                                      1u << CAP_FOWNER | 1u << CAP_FSETID;
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct caps[2];

    assert_int_equal(syscall(SYS_capget, &head, caps), 0);
    caps[0].effective = on ? caps[0].permitted : caps[0].effective & ~overrides;
    caps[1].effective = on ? caps[1].permitted : caps[1].effective;
    assert_int_equal(syscall(SYS_capset, &head, caps), 0);
}

/* A test that failed without them gives them back. */
static int overrides_back(void **state)
{
    (void)state;
    mode_overrides(true);
    return 0;
}

/* git writes each object through a temporary file it creates 0444; cp
 * makes a copy of a 0555 program 0555, then writes it. The guest's
 * kernel lets the creator's descriptor write, but a guest that opens
 * without asking sends each WRITE with fh 0, for which the server opens
 * the file again: without the capabilities that override modes (jailed,
 * or run by a user) the host refused that open (EACCES: "unable to write
 * loose object file" in a jailed VM's git commit). A file of the
 * server's is opened as its creator may, its mode left as the guest made
 * it; another user's file, and anything on a read-only share, as before. */
static void files_made_read_only_are_written_by_their_maker(void **state)
{
    struct fuse_setattr_in trunc = {.valid = FATTR_SIZE, .size = 4};
    uint64_t obj, wo, theirs, fh = 99;
    char buf[64], host[64];
    bool root = geteuid() == 0;
    (void)state;

    start(false, NULL);
    init_no_open();
    if (root) /* a file of another user's that only they may write */
        assert_int_equal(sh("echo theirs > share/theirs && chmod 0644 share/theirs && "
                            "chown 65534 share/theirs"),
                         0);
    mode_overrides(false);
    assert_int_equal(create_mode(FUSE_ROOT_ID, "tmp_obj_1", O_RDWR | O_EXCL, 0444, &obj, &fh), 0);
    assert_int_equal(fh, 0);
    assert_int_equal(write_node(obj, 0, O_RDWR, 0, "blob 7"), 0);
    assert_int_equal(write_node(obj, 0, O_RDWR, 6, "\ncontent"), 0);
    assert_int_equal(read_node(obj, 0, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "blob 7\ncontent");
    /* ftruncate through the creator's descriptor (fh 0 with FATTR_FH) */
    trunc.valid |= FATTR_FH;
    assert_int_equal(call(FUSE_SETATTR, obj, &trunc, sizeof(trunc), NULL, NULL), 0);
    /* made write-only, read back */
    assert_int_equal(create_mode(FUSE_ROOT_ID, "wo", O_WRONLY | O_EXCL, 0200, &wo, &fh), 0);
    assert_int_equal(write_node(wo, 0, O_WRONLY, 0, "w"), 0);
    assert_int_equal(read_node(wo, 0, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "w");
    if (root) {
        theirs = must_lookup(FUSE_ROOT_ID, "theirs");
        assert_int_equal(write_node(theirs, 0, O_WRONLY, 0, "mine"), -EACCES);
    }
    mode_overrides(true);
    slurp("share/tmp_obj_1", host, sizeof(host));
    assert_string_equal(host, "blob");
    assert_int_equal(host_mode("tmp_obj_1"), 0444);
    assert_int_equal(host_mode("wo"), 0200);
    if (root) {
        slurp("share/theirs", host, sizeof(host));
        assert_string_equal(host, "theirs\n");
        assert_int_equal(host_mode("theirs"), 0644);
    }
    stop();

    /* A read-only share changes no mode to read a file. */
    start(true, NULL);
    assert_int_equal(sh("chmod 0 share/hello"), 0);
    mode_overrides(false);
    assert_int_equal(open_node(must_lookup(FUSE_ROOT_ID, "hello"), O_RDONLY, &fh), -EACCES);
    mode_overrides(true);
    assert_int_equal(host_mode("hello"), 0);
    stop();
}

/* A read-only share keeps OPEN (an open for writing fails at once, EROFS,
 * not at its first write), and refuses writes through the node's own file
 * too (fh 0, which a guest may send anyway). */
static void read_only_share_keeps_open(void **state)
{
    struct fuse_fallocate_in fa = {.offset = 0, .length = 8192};
    uint64_t hello, node, fh;
    char buf[64];
    (void)state;

    start(true, NULL);
    assert_int_equal(init_no_open() & FUSE_ATOMIC_O_TRUNC, FUSE_ATOMIC_O_TRUNC);
    hello = must_lookup(FUSE_ROOT_ID, "hello");
    assert_int_equal(open_node(hello, O_WRONLY, &fh), -EROFS);
    assert_int_equal(open_node(hello, O_RDONLY, &fh), 0);
    assert_int_not_equal(fh, 0);
    release(fh);
    assert_int_equal(read_node(hello, 0, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "hello\n");
    assert_int_equal(write_node(hello, 0, O_WRONLY, 0, "x"), -EROFS);
    assert_int_equal(call(FUSE_FALLOCATE, hello, &fa, sizeof(fa), NULL, NULL), -EROFS);
    assert_int_equal(create(FUSE_ROOT_ID, "new", O_WRONLY, &node, &fh), -EROFS);
    assert_int_equal(sh("test \"$(cat share/hello)\" = hello && test ! -e share/new"), 0);
    stop();
}

static void bounded_tables(void **state)
{
    struct pt_limits small = {.max_inodes = 3, .max_handles = 2};
    uint64_t a, b, fh1, fh2, fh3, node;
    uint32_t inodes, handles;
    (void)state;

    start(false, &small);
    assert_int_equal(sh("touch share/a share/b share/c"), 0);
    a = must_lookup(FUSE_ROOT_ID, "a");
    b = must_lookup(FUSE_ROOT_ID, "b");
    assert_int_equal(lookup(FUSE_ROOT_ID, "c", &node), -ENFILE);
    assert_int_equal(open_node(a, O_RDONLY, &fh1), 0);
    assert_int_equal(open_node(b, O_RDONLY, &fh2), 0);
    assert_int_equal(open_node(a, O_RDONLY, &fh3), -EMFILE);
    release(fh1);
    assert_int_equal(open_node(a, O_RDONLY, &fh3), 0);
    assert_int_not_equal(fh3, fh1); /* the slot's generation moved on */
    forget(b, 1);
    node = must_lookup(FUSE_ROOT_ID, "c");
    assert_int_not_equal(node, b);
    assert_int_equal(lookup(b, "x", &node), -ESTALE);
    pt_counts(fs, &inodes, &handles);
    assert_int_equal(inodes, 3);
    assert_int_equal(handles, 2);
    /* A reset closes all but the root. */
    fuse_server_reset(srv);
    pt_counts(fs, &inodes, &handles);
    assert_int_equal(inodes, 1);
    assert_int_equal(handles, 0);
    init_session();
    stop();
}

/* Node ids and handles across a save and a restore into a new server over
 * a copy of the folder (a start with the share remapped): the guest's ids
 * still name the same paths; what is gone is stale. */
static void save_and_restore(void **state)
{
    uint64_t sub, inner, hello, fh, dfh, node;
    struct fuse_open_in o = {0};
    struct blob saved = {0};
    struct blob_reader rd;
    char buf[64];
    (void)state;

    start(false, NULL);
    sub = must_lookup(FUSE_ROOT_ID, "sub");
    inner = must_lookup(sub, "inner");
    hello = must_lookup(FUSE_ROOT_ID, "hello");
    assert_int_equal(open_node(inner, O_RDWR, &fh), 0);
    assert_int_equal(call(FUSE_OPENDIR, sub, &o, sizeof(o), NULL, NULL), 0);
    dfh = ((struct fuse_open_out *)payload())->fh;
    assert_int_equal(sh("rm share/hello"), 0);
    assert_int_equal(pt_save(fs, &saved), 0);
    fuse_server_free(srv);
    pt_free(fs);

    assert_int_equal(sh("rm -rf share2 && cp -a share share2 && echo moved > share2/sub/inner"), 0);
    assert_int_equal(pt_new(in_dir("share2"), false, NULL, &fs), 0);
    srv = fuse_server_new(fs);
    rd = blob_reader(saved.data, saved.len);
    assert_int_equal(pt_restore(fs, &rd), 0);
    init_session();
    assert_int_equal(read_at(fh, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "moved\n");
    assert_int_equal(write_at(fh, 0, "MOVED"), 0);
    assert_int_equal(sh("test \"$(cat share2/sub/inner)\" = MOVED && test \"$(cat share/sub/inner)\" = inner"), 0);
    assert_int_equal(must_lookup(sub, "inner"), inner);
    assert_int_equal(lookup(hello, "x", &node), -ESTALE);
    {
        struct fuse_read_in r = {.fh = dfh, .size = 4096};
        assert_int_equal(call(FUSE_READDIR, sub, &r, sizeof(r), NULL, NULL), 0);
        assert_true(reply_len > 0);
    }
    node = must_lookup(FUSE_ROOT_ID, "sub");
    assert_int_equal(node, sub);
    release(fh);
    blob_free(&saved);

    /* Saved paths are hostile too: none leaves the folder. */
    {
        const char *paths[] = {"../outside/secret", "/etc/passwd", "lnk/secret", "sub/../../outside"};
        struct blob b = {0};
        assert_int_equal(sh("ln -s ../outside share2/lnk"), 0);
        blob_put_u32(&b, 1);
        blob_put_u32(&b, 4);
        for (uint32_t i = 0; i < 4; i++) {
            blob_put_u32(&b, 10 + i);
            blob_put_u32(&b, 1);
            blob_put_u64(&b, 1);
            blob_put_u32(&b, (uint32_t)strlen(paths[i]));
            blob_put(&b, paths[i], strlen(paths[i]));
        }
        blob_put_u32(&b, 1);
        blob_put_u32(&b, 0);
        blob_put_u32(&b, 1);
        blob_put_u32(&b, O_RDWR);
        blob_put_u8(&b, 0);
        blob_put_u32(&b, 17);
        blob_put(&b, "../outside/secret", 17);
        rd = blob_reader(b.data, b.len);
        assert_int_equal(pt_restore(fs, &rd), 0);
        for (uint32_t i = 0; i < 4; i++)
            assert_int_equal(lookup((uint64_t)1 << 32 | (11 + i), "x", &node), -ESTALE);
        assert_int_equal(write_at((uint64_t)1 << 32, 0, "x"), -EBADF);
        /* Truncated, and an unknown version. */
        rd = blob_reader(b.data, b.len - 3);
        assert_int_equal(pt_restore(fs, &rd), -EINVAL);
        b.data[0] = 9;
        rd = blob_reader(b.data, b.len);
        assert_int_equal(pt_restore(fs, &rd), -EINVAL);
        blob_free(&b);
    }
    stop();
}

/* A request split across the chain's buffers as a driver may lay it out
 * (the header cut in two), the reply across two writable buffers. */
static void chains(void **state)
{
    static uint8_t cin[FUSE_SERVER_IN_MAX], cout[FUSE_SERVER_OUT_MAX];
    uint8_t reply[200], *r1 = reply, *r2 = reply + 30;
    struct virtq_chain c = {0};
    struct fuse_out_header h;
    size_t len, n, head;
    (void)state;

    start(false, NULL);
    len = build(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "hello", NULL);
    c.bufs[0] = (struct virtq_buf){in, 7, false};
    c.bufs[1] = (struct virtq_buf){in + 7, 30, false};
    c.bufs[2] = (struct virtq_buf){in + 37, (uint32_t)(len - 37), false};
    c.bufs[3] = (struct virtq_buf){r1, 30, true};
    c.bufs[4] = (struct virtq_buf){r2, 170, true};
    c.count = 5;
    c.readable = 3;
    c.readable_bytes = len;
    c.writable_bytes = 200;
    n = virtio_fs_serve_chain(srv, NULL, &c, cin, cout, &head);
    assert_int_equal(n, sizeof(h) + sizeof(struct fuse_entry_out));
    memcpy(&h, cout, sizeof(h));
    assert_int_equal(h.error, 0);
    /* A reply the chain cannot hold whole: an error that fits. */
    c.bufs[4].len = 10;
    c.writable_bytes = 40;
    n = virtio_fs_serve_chain(srv, NULL, &c, cin, cout, &head);
    memcpy(&h, cout, sizeof(h));
    assert_int_equal(n, sizeof(h));
    assert_int_equal(h.error, -EINVAL);
    stop();
}

/* A WRITE's payload is written from the chain's buffers where they lie:
 * split over many buffers (the header cut in two), the largest write
 * INIT offers, none of it copied into the request buffer; a payload
 * shorter than its size, or a header longer than the chain, refused. */
static void write_from_chain(void **state)
{
    static uint8_t cin[FUSE_SERVER_IN_MAX], cout[FUSE_SERVER_OUT_MAX], data[FUSE_SERVER_MAX_IO];
    const size_t head = sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in);
    uint8_t reply[64];
    struct virtq_chain c = {0};
    struct fuse_out_header h;
    struct fuse_write_out w;
    uint64_t node, fh;
    size_t len, copied;
    char host[64];
    (void)state;

    start(false, NULL);
    assert_int_equal(create(FUSE_ROOT_ID, "big", O_RDWR, &node, &fh), 0);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + i / 4096);
    {
        struct fuse_write_in wi = {.fh = fh, .offset = 0, .size = sizeof(data)};
        len = build(FUSE_WRITE, node, &wi, sizeof(wi), NULL, NULL);
        ((struct fuse_in_header *)in)->len = (uint32_t)(len + sizeof(data));
    }
    c.bufs[0] = (struct virtq_buf){in, 7, false};
    c.bufs[1] = (struct virtq_buf){in + 7, (uint32_t)(head - 7), false};
    for (unsigned i = 0; i < FUSE_SERVER_MAX_IO / 4096; i++)
        c.bufs[2 + i] = (struct virtq_buf){data + i * 4096, 4096, false};
    c.readable = 2 + FUSE_SERVER_MAX_IO / 4096;
    c.bufs[c.readable] = (struct virtq_buf){reply, sizeof(reply), true};
    c.count = c.readable + 1;
    c.readable_bytes = head + sizeof(data);
    c.writable_bytes = sizeof(reply);
    memset(cin, 0xa5, sizeof(cin));
    assert_int_equal(virtio_fs_serve_chain(srv, NULL, &c, cin, cout, &copied), sizeof(h) + sizeof(w));
    memcpy(&h, cout, sizeof(h));
    memcpy(&w, cout + sizeof(h), sizeof(w));
    assert_int_equal(h.error, 0);
    assert_int_equal(w.size, sizeof(data));
    assert_int_equal(cin[head], 0xa5); /* the payload was not copied */
    {
        static uint8_t back[FUSE_SERVER_MAX_IO];
        int fd = open(in_dir("share/big"), O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, back, sizeof(back)), sizeof(back));
        close(fd);
        assert_memory_equal(back, data, sizeof(data));
    }
    /* The guest's memory lost (a first start's chunk failed its check,
     * core/memory.h): the payload, maybe pages let go as zeros, is not
     * written. */
    {
        static struct guest_memory lost = {.lost = true};
        uint8_t first = data[0], now = 0;
        int fd;
        data[0] = (uint8_t)~first;
        assert_int_equal(virtio_fs_serve_chain(srv, &lost, &c, cin, cout, &copied), sizeof(h));
        memcpy(&h, cout, sizeof(h));
        assert_int_equal(h.error, -EINVAL);
        fd = open(in_dir("share/big"), O_RDONLY);
        assert_int_equal(read(fd, &now, 1), 1);
        close(fd);
        assert_int_equal(now, first);
        data[0] = first;
    }
    /* The header says more than the chain holds. */
    ((struct fuse_in_header *)in)->len += 1;
    assert_int_equal(virtio_fs_serve_chain(srv, NULL, &c, cin, cout, &copied), sizeof(h));
    memcpy(&h, cout, sizeof(h));
    assert_int_equal(h.error, -EINVAL);
    /* size past the payload the header's length gives. */
    {
        struct fuse_write_in wi = {.fh = fh, .offset = 0, .size = 10};
        len = build(FUSE_WRITE, node, &wi, sizeof(wi), NULL, NULL);
        memcpy(in + len, "abcde", 5);
        ((struct fuse_in_header *)in)->len = (uint32_t)(len + 5);
        c.bufs[1].len = (uint32_t)(len + 5 - 7);
        c.readable = 2;
        c.bufs[2] = (struct virtq_buf){reply, sizeof(reply), true};
        c.count = 3;
        c.readable_bytes = len + 5;
        assert_int_equal(virtio_fs_serve_chain(srv, NULL, &c, cin, cout, &copied), sizeof(h));
        memcpy(&h, cout, sizeof(h));
        assert_int_equal(h.error, -EINVAL);
        /* The same through the flat buffer (fuse_serve). */
        assert_int_equal(serve_raw(len + 5, sizeof(out)), -EINVAL);
        /* A small write whose payload ends in the header's buffer. */
        wi.size = 5;
        memcpy(in + sizeof(struct fuse_in_header), &wi, sizeof(wi));
        assert_int_equal(virtio_fs_serve_chain(srv, NULL, &c, cin, cout, &copied), sizeof(h) + sizeof(w));
        memcpy(&h, cout, sizeof(h));
        assert_int_equal(h.error, 0);
    }
    release(fh);
    slurp("share/big", host, 6);
    assert_string_equal(host, "abcde");
    /* Other requests are not taken from outside the flat buffer. */
    len = build(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "hello", NULL);
    {
        struct iovec extra = {(void *)"x", 1};
        ((struct fuse_in_header *)in)->len = (uint32_t)(len + 1);
        assert_int_equal(fuse_serve_data(srv, in, len, &extra, 1, out, sizeof(out)), sizeof(h));
        memcpy(&h, out, sizeof(h));
        assert_int_equal(h.error, -EINVAL);
    }
    stop();
}

/* A READ's data is read from the file into the chain's writable buffers
 * where they lie, after the reply's header (cut in two here), none of it
 * through the reply buffer; a chain with room for the header only reads
 * nothing; any other request through fuse_serve_read is refused. */
static void read_into_chain(void **state)
{
    static uint8_t cin[FUSE_SERVER_IN_MAX], cout[FUSE_SERVER_OUT_MAX];
    uint8_t reply[16 + 9000];
    struct virtq_chain c = {0};
    struct fuse_out_header h;
    uint64_t node, fh;
    size_t len, head;
    char text[9000];
    (void)state;

    start(false, NULL);
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + i % 26);
    assert_int_equal(create(FUSE_ROOT_ID, "r", O_RDWR, &node, &fh), 0);
    {
        int fd = open(in_dir("share/r"), O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, sizeof(text)), sizeof(text));
        close(fd);
    }
    {
        struct fuse_read_in ri = {.fh = fh, .offset = 100, .size = 8000};
        len = build(FUSE_READ, node, &ri, sizeof(ri), NULL, NULL);
    }
    memset(reply, 0, sizeof(reply));
    c.bufs[0] = (struct virtq_buf){in, (uint32_t)len, false};
    c.bufs[1] = (struct virtq_buf){reply, 10, true};
    c.bufs[2] = (struct virtq_buf){reply + 10, 4000, true};
    c.bufs[3] = (struct virtq_buf){reply + 4010, (uint32_t)(sizeof(reply) - 4010), true};
    c.count = 4;
    c.readable = 1;
    c.readable_bytes = len;
    c.writable_bytes = sizeof(reply);
    memset(cout, 0xa5, sizeof(cout));
    assert_int_equal(virtio_fs_serve_chain(srv, NULL, &c, cin, cout, &head), sizeof(h) + 8000);
    assert_int_equal(head, sizeof(h));
    memcpy(&h, cout, sizeof(h));
    assert_int_equal(h.error, 0);
    assert_int_equal(h.len, sizeof(h) + 8000);
    assert_memory_equal(reply + sizeof(h), text + 100, 8000);
    assert_int_equal(cout[sizeof(h)], 0xa5); /* not through the reply buffer */
    /* Room for the header only: an empty read. */
    c.count = 2;
    c.bufs[1].len = sizeof(h);
    c.writable_bytes = sizeof(h);
    assert_int_equal(virtio_fs_serve_chain(srv, NULL, &c, cin, cout, &head), sizeof(h));
    memcpy(&h, cout, sizeof(h));
    assert_int_equal(h.error, 0);
    /* Only a READ takes a destination. */
    {
        struct iovec dest = {reply, sizeof(reply)};
        len = build(FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, "r", NULL);
        assert_int_equal(fuse_serve_read(srv, in, len, &dest, 1, out, sizeof(out)), sizeof(h));
        memcpy(&h, out, sizeof(h));
        assert_int_equal(h.error, -EINVAL);
    }
    release(fh);
    stop();
}

static int32_t setxattr_call(uint64_t node, const char *name, const char *value, uint32_t flags)
{
    struct fuse_setxattr_in s = {.size = (uint32_t)strlen(value), .flags = flags};
    size_t len = build(FUSE_SETXATTR, node, &s, FUSE_COMPAT_SETXATTR_IN_SIZE, name, NULL);

    memcpy(in + len, value, s.size);
    len += s.size;
    ((struct fuse_in_header *)in)->len = (uint32_t)len;
    return serve_raw(len, sizeof(out));
}

static int32_t getxattr_call(uint32_t opcode, uint64_t node, const char *name, uint32_t size)
{
    struct fuse_getxattr_in g = {.size = size};
    return call(opcode, node, &g, sizeof(g), name, NULL);
}

/* user.* attributes pass through both ways; security.*, trusted.* and
 * system.* are neither read nor set nor listed; a read-only share refuses
 * changes. */
static void xattrs(void **state)
{
    char value[64];
    uint64_t hello, link;
    (void)state;

    start(false, NULL);
    hello = must_lookup(FUSE_ROOT_ID, "hello");
    assert_int_equal(setxattr_call(hello, "user.colour", "blue", 0), 0);
    assert_int_equal(getxattr(in_dir("share/hello"), "user.colour", value, sizeof(value)), 4);
    assert_memory_equal(value, "blue", 4);
    assert_int_equal(setxattr_call(hello, "user.colour", "red", XATTR_CREATE), -EEXIST);
    assert_int_equal(setxattr(in_dir("share/hello"), "user.host", "h", 1, 0), 0);

    /* Size 0 asks for the length; then the value; too small a buffer. */
    assert_int_equal(getxattr_call(FUSE_GETXATTR, hello, "user.host", 0), 0);
    assert_int_equal(((struct fuse_getxattr_out *)payload())->size, 1);
    assert_int_equal(getxattr_call(FUSE_GETXATTR, hello, "user.colour", 64), 0);
    assert_int_equal(reply_len, 4);
    assert_memory_equal(payload(), "blue", 4);
    assert_int_equal(getxattr_call(FUSE_GETXATTR, hello, "user.colour", 2), -ERANGE);
    assert_int_equal(getxattr_call(FUSE_GETXATTR, hello, "user.none", 64), -ENODATA);

    /* Only user.* names are listed. */
    assert_int_equal(getxattr_call(FUSE_LISTXATTR, hello, NULL, 0), 0);
    assert_int_equal(((struct fuse_getxattr_out *)payload())->size, sizeof("user.colour\0user.host"));
    assert_int_equal(getxattr_call(FUSE_LISTXATTR, hello, NULL, 64), 0);
    assert_int_equal(reply_len, sizeof("user.colour\0user.host"));
    assert_int_equal(getxattr_call(FUSE_LISTXATTR, hello, NULL, 5), -ERANGE);

    /* The other namespaces: absent to read, refused to change. */
    assert_int_equal(setxattr_call(hello, "security.capability", "x", 0), -EOPNOTSUPP);
    assert_int_equal(setxattr_call(hello, "trusted.overlay.opaque", "y", 0), -EOPNOTSUPP);
    assert_int_equal(setxattr_call(hello, "system.posix_acl_access", "z", 0), -EOPNOTSUPP);
    assert_int_equal(setxattr_call(hello, "user.", "z", 0), -EOPNOTSUPP);
    assert_int_equal(getxattr_call(FUSE_GETXATTR, hello, "security.selinux", 64), -ENODATA);
    assert_int_equal(call(FUSE_REMOVEXATTR, hello, NULL, 0, "trusted.x", NULL), -EOPNOTSUPP);

    assert_int_equal(call(FUSE_REMOVEXATTR, hello, NULL, 0, "user.colour", NULL), 0);
    assert_int_equal(getxattr(in_dir("share/hello"), "user.colour", value, sizeof(value)), -1);
    assert_int_equal(errno, ENODATA);

    /* Symlinks take none (as on Linux); a missing name is malformed. */
    assert_int_equal(call(FUSE_SYMLINK, FUSE_ROOT_ID, NULL, 0, "ln", "hello"), 0);
    link = ((struct fuse_entry_out *)payload())->nodeid;
    assert_int_equal(setxattr_call(link, "user.a", "b", 0), -EPERM);
    assert_int_equal(getxattr_call(FUSE_GETXATTR, link, "user.a", 64), -ENODATA);
    assert_int_equal(getxattr_call(FUSE_GETXATTR, 12345, "user.a", 64), -ESTALE);
    {
        struct fuse_getxattr_in g = {.size = 64};
        size_t len = build(FUSE_GETXATTR, hello, &g, sizeof(g), NULL, NULL);
        assert_int_equal(serve_raw(len, sizeof(out)), -EINVAL);
    }
    stop();

    start(true, NULL);
    hello = must_lookup(FUSE_ROOT_ID, "hello");
    assert_int_equal(setxattr_call(hello, "user.colour", "blue", 0), -EROFS);
    assert_int_equal(call(FUSE_REMOVEXATTR, hello, NULL, 0, "user.colour", NULL), -EROFS);
    assert_int_equal(getxattr_call(FUSE_GETXATTR, hello, "user.colour", 64), -ENODATA);
    stop();
}

/* Locks stay the guest's own: INIT offers neither POSIX nor flock locks
 * (the guest kernel then keeps them locally), and a lock request is
 * ENOSYS. */
static void locks_stay_in_the_guest(void **state)
{
    struct fuse_init_in init = {.major = 7, .minor = 38, .max_readahead = 65536,
                                .flags = FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS | FUSE_MAX_PAGES};
    struct fuse_lk_in lk = {0};
    struct fuse_init_out o;
    (void)state;

    start(false, NULL);
    assert_int_equal(call(FUSE_INIT, 0, &init, sizeof(init), NULL, NULL), 0);
    memcpy(&o, payload(), sizeof(o));
    assert_int_equal(o.flags & (FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS), 0);
    assert_int_equal(o.max_pages, FUSE_SERVER_MAX_IO / 4096);
    assert_int_equal(call(FUSE_GETLK, 1, &lk, sizeof(lk), NULL, NULL), -ENOSYS);
    assert_int_equal(call(FUSE_SETLK, 1, &lk, sizeof(lk), NULL, NULL), -ENOSYS);
    assert_int_equal(call(FUSE_SETLKW, 1, &lk, sizeof(lk), NULL, NULL), -ENOSYS);
    stop();
}

/* A VM's shares split the descriptors between them: eight shares hold no
 * more nodes and files together than one does alone. */
static void limits_per_vm(void **state)
{
    struct pt_limits one, eight;
    (void)state;

    pt_vm_limits(&one, 1);
    pt_vm_limits(&eight, 8);
    assert_true(one.max_inodes >= 8 && one.max_handles >= 8);
    assert_true(8ull * eight.max_inodes <= one.max_inodes);
    assert_true(8ull * eight.max_handles <= one.max_handles);
    assert_true(eight.max_inodes > 0 && eight.max_handles > 0);
}

static int setup(void **state)
{
    (void)state;
    return scratch_setup("fuse");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(files_read_write_create),
        cmocka_unit_test(changes_kill_set_id_bits),
        cmocka_unit_test(write_only_files_bypass_the_guest_cache),
        cmocka_unit_test(files_opened_without_asking),
        cmocka_unit_test(read_only_share_keeps_open),
        cmocka_unit_test_teardown(files_made_read_only_are_written_by_their_maker,
                                  overrides_back),
        cmocka_unit_test(names_and_links),
        cmocka_unit_test(sparse_files),
        cmocka_unit_test(directories),
        cmocka_unit_test(escapes),
        cmocka_unit_test(read_only_share),
        cmocka_unit_test(malformed_requests),
        cmocka_unit_test(bounded_tables),
        cmocka_unit_test(save_and_restore),
        cmocka_unit_test(chains),
        cmocka_unit_test(write_from_chain),
        cmocka_unit_test(read_into_chain),
        cmocka_unit_test(xattrs),
        cmocka_unit_test(locks_stay_in_the_guest),
        cmocka_unit_test(limits_per_vm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
