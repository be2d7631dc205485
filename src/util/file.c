#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/err.h"

/* fd's file: a regular one (sole: also ours, with one name), or fd closed
 * and -errno with a message naming path as what. */
static int checked(int fd, const char *what, const char *path, struct stat *st, bool sole)
{
    int e = fstat(fd, st) < 0 ? errno : 0;

    if (!e && !S_ISREG(st->st_mode))
        e = EINVAL;
    if (!e && sole && (st->st_nlink != 1 || st->st_uid != geteuid()))
        e = EPERM;
    if (!e)
        return fd;
    close(fd);
    if (e == EINVAL)
        return err_plain(e, "%s '%s' is not a regular file", what, path);
    if (e == EPERM)
        return err_plain(e, "%s '%s' has another name or owner (a link to another file?)", what,
                         path);
    return err_set(e, "cannot stat %s '%s'", what, path);
}

/* Opens a non-empty regular file; its fd, or -errno with a message.
 * O_NONBLOCK: a FIFO (or a link to one) put where a file is expected must
 * be refused by checked(), not block the open forever; reads of a regular
 * file ignore the flag. */
static int open_regular(const char *path, const char *what, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0)
        return err_set(errno, "cannot open %s '%s'", what, path);
    if ((fd = checked(fd, what, path, st, false)) >= 0 && st->st_size == 0) {
        close(fd);
        return err_plain(ENOEXEC, "%s '%s' is empty", what, path);
    }
    return fd;
}

int file_map_lazy(const char *path, const char *what, struct mapped_file *out)
{
    struct stat st;
    void *p;
    int fd;

    *out = (struct mapped_file){0};
    fd = open_regular(path, what, &st);
    if (fd < 0)
        return fd;
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return err_set(errno, "cannot map %s '%s'", what, path);
    out->data = p;
    out->len = (size_t)st.st_size;
    out->mmapped = true;
    return 0;
}

int file_open_read(const char *path, const char *what, size_t *size)
{
    struct stat st;
    int fd = open_regular(path, what, &st);

    if (fd >= 0)
        *size = (size_t)st.st_size;
    return fd;
}

int file_read_exact(int fd, void *dst, size_t len, const char *what, const char *path)
{
    return file_pread_exact(fd, dst, len, 0, what, path);
}

int file_pread_exact(int fd, void *dst, size_t len, uint64_t offset, const char *what,
                     const char *path)
{
    if (offset > INT64_MAX || len > INT64_MAX - offset)
        return err_plain(EINVAL, "cannot read %s '%s': offset out of range", what, path);
    for (size_t done = 0; done < len;) {
        ssize_t n = pread(fd, (uint8_t *)dst + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return err_set(n < 0 ? errno : EIO, "cannot read %s '%s'%s", what, path,
                           n == 0 ? " (it became shorter)" : "");
        done += (size_t)n;
    }
    return 0;
}

int file_map(const char *path, const char *what, struct mapped_file *out)
{
    return file_map_at_most(path, what, SIZE_MAX, out);
}

int file_map_at_most(const char *path, const char *what, size_t max_len, struct mapped_file *out)
{
    struct stat st;
    void *p;
    int fd;

    *out = (struct mapped_file){0};
    fd = open_regular(path, what, &st);
    if (fd < 0)
        return fd;
    if ((uint64_t)st.st_size > max_len) {
        close(fd);
        return err_plain(EFBIG, "%s '%s' is larger than any %s (%jd bytes)", what, path, what,
                         (intmax_t)st.st_size);
    }
    /* One read() of the whole file rather than an mmap: on network and 9p
     * file systems page-by-page faults are many times slower. */
    p = malloc((size_t)st.st_size);
    if (!p) {
        close(fd);
        return err_set(ENOMEM, "cannot load %s '%s'", what, path);
    }
    int r = file_read_exact(fd, p, (size_t)st.st_size, what, path);
    if (r < 0) {
        free(p);
        close(fd);
        return r;
    }
    close(fd);
    out->data = p;
    out->len = (size_t)st.st_size;
    return 0;
}

void file_unmap(struct mapped_file *f)
{
    if (f->mmapped && f->data)
        munmap((void *)f->data, f->len);
    else
        free((void *)f->data);
    f->mmapped = false;
    f->data = NULL;
    f->len = 0;
}

int file_sync(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;
    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r < 0)
        errno = -r;
    return r;
}

int file_write_all(int fd, const void *data, size_t len, const char *path)
{
    const uint8_t *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return err_set(n < 0 ? errno : EIO, "writing '%s'", path);
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int file_create_exclusive(const char *path, mode_t mode)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    return fd >= 0 ? fd : err_set(errno, "cannot create '%s'", path);
}

int file_create_fresh(const char *path, mode_t mode)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return err_set(errno, "cannot replace '%s'", path);
    return file_create_exclusive(path, mode);
}

/* len bytes of data in fd, synced; fd closed. */
static int write_synced(int fd, const char *path, const void *data, size_t len)
{
    int r = file_write_all(fd, data, len, path);
    if (r == 0 && fsync(fd) < 0)
        r = err_set(errno, "writing '%s'", path);
    close(fd);
    return r;
}

int file_write_new(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);

    if (fd < 0)
        return err_set(errno, "cannot create '%s'", path);
    return write_synced(fd, path, data, len);
}

int file_replace(const char *path, const void *data, size_t len)
{
    char *tmp;
    if (asprintf(&tmp, "%s.tmp-%d", path, (int)getpid()) < 0)
        return err_set(ENOMEM, "'%s'", path);
    int fd = file_create_exclusive(tmp, 0644);
    if (fd < 0) {
        free(tmp); /* not ours: left alone */
        return fd;
    }
    int r = write_synced(fd, tmp, data, len);
    if (r == 0 && rename(tmp, path) < 0)
        r = err_set(errno, "cannot rename to '%s'", path);
    if (r < 0)
        unlink(tmp);
    free(tmp);
    return r;
}

int file_copy(const char *from, const char *to)
{
    struct mapped_file f;
    int r = file_map(from, "file", &f);
    if (r < 0)
        return r;
    r = file_write_new(to, f.data, f.len);
    file_unmap(&f);
    return r;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

int file_copy_fd(int fd, const char *to)
{
    static const size_t chunk = 1 << 20;
    char *buf = malloc(chunk);
    int out = buf ? file_create_fresh(to, 0644) : err_set(ENOMEM, "copying to '%s'", to);
    off_t at = 0;
    int r = out < 0 ? out : 0;

    while (r == 0) {
        ssize_t n = pread(fd, buf, chunk, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = err_set(errno, "copying to '%s'", to);
        if (n <= 0)
            break;
        r = file_write_all(out, buf, (size_t)n, to);
        at += n;
    }
    if (r == 0 && fsync(out) < 0)
        r = err_set(errno, "writing '%s'", to);
    if (out >= 0)
        close(out);
    free(buf);
    return r;
}

static int openat_beneath(int dirfd, const char *name)
{
    struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));

    if (fd < 0 && errno == ENOSYS) /* before Linux 5.6: no link followed at all */
        fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    return (int)fd;
}

int file_open_beneath(const char *path, const char *what, struct stat *st)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int dirfd = dir ? open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    int fd = dirfd < 0 ? -1 : openat_beneath(dirfd, slash ? slash + 1 : path), e = errno;

    if (!dir)
        e = ENOMEM;
    free(dir);
    if (dirfd >= 0)
        close(dirfd);
    if (fd < 0)
        return err_set(e, "cannot open %s '%s'", what, path);
    return checked(fd, what, path, st, false);
}

FILE *file_fopen_beneath(const char *path)
{
    struct stat st;
    int fd = file_open_beneath(path, "file", &st), e = -fd;
    FILE *f = fd < 0 ? NULL : fdopen(fd, "r");

    if (fd >= 0 && !f) {
        e = errno;
        close(fd);
    }
    err_clear();
    if (!f)
        errno = e;
    return f;
}

int file_open_sole(const char *path, const char *what, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0)
        return err_set(errno, "cannot open %s '%s'", what, path);
    return checked(fd, what, path, st, true);
}

char *file_newest(const char *pattern)
{
    glob_t g;
    const char *best = NULL;
    char *out = NULL;

    if (glob(pattern, 0, NULL, &g) != 0)
        return NULL;
    for (size_t i = 0; i < g.gl_pathc; i++)
        if (!best || strverscmp(g.gl_pathv[i], best) > 0)
            best = g.gl_pathv[i];
    out = best ? strdup(best) : NULL;
    globfree(&g);
    return out;
}

int file_remove_tree(const char *path)
{
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 || errno == ENOENT)
        return 0;
    return -errno;
}
