/* The BSD system calls, answered in a SIGSYS handler (Syscall User
 * Dispatch). Numbers and names come from tables generated from the BSDs'
 * syscalls.master (tools/gen-bsd-abi.sh); handlers are found by name, so
 * FreeBSD and NetBSD share the ones whose meaning is the same. Results go
 * back the BSD way: carry flag set and a BSD errno on failure. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "bsduser/bsduser.h"
#include "bsduser/internal.h"
#include "bsduser/freebsd_abi.h"
#include "bsduser/netbsd_abi.h"
#include "util/err.h"

#define MAX_SYSCALL BSD_MAX_SYSCALL
#define SYS_INDIRECT 0    /* syscall(number, ...) */
#define SYS_INDIRECT64 198 /* __syscall(number, ...) */

typedef bsd_handler_fn handler_fn;

static const struct bsd_sysent freebsd_table[] = {
#define X(n, s, a) {n, s, a},
    FREEBSD_SYSCALLS(X)
#undef X
};
static const struct bsd_sysent netbsd_table[] = {
#define X(n, s, a) {n, s, a},
    NETBSD_SYSCALLS(X)
#undef X
};
/* FreeBSD 11's calls, which FreeBSD keeps (COMPAT11 in its syscalls.master)
 * and x/sys's table leaves out: programs built on FreeBSD 11 make them, and
 * Go up to 1.17 (kevent always; stat, getdirentries, statfs up to 1.11). */
static const struct bsd_sysent freebsd11_table[] = {
    {14, "freebsd11_mknod", 3}, {188, "freebsd11_stat", 2}, {189, "freebsd11_fstat", 2},
    {190, "freebsd11_lstat", 2}, {196, "freebsd11_getdirentries", 4},
    {272, "freebsd11_getdents", 3}, {363, "freebsd11_kevent", 6},
    {395, "freebsd11_getfsstat", 3}, {396, "freebsd11_statfs", 2},
    {397, "freebsd11_fstatfs", 2}, {493, "freebsd11_fstatat", 4},
    {498, "freebsd11_mknodat", 4},
};

struct bsd_process *bsd_proc;

/* ---- guest memory: a bad pointer is EFAULT ---- */

/* While a fault signal is handled (it is blocked: another would kill the
 * process), copies go through the kernel. */
static __thread bool handling_fault;

static bool in_guest(uint64_t at, size_t len)
{
    return at < BSDUSER_GUEST_LIMIT && len <= BSDUSER_GUEST_LIMIT - at;
}

long bsd_copy_in(void *to, uint64_t from, size_t len)
{
    struct iovec local = {to, len}, remote = {(void *)from, len};
    if (!in_guest(from, len))
        return -EFAULT;
    if (!handling_fault)
        return bsd_copy_guarded(to, (const void *)from, len);
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
}

long bsd_copy_out(uint64_t to, const void *from, size_t len)
{
    struct iovec local = {(void *)from, len}, remote = {(void *)to, len};
    if (!in_guest(to, len))
        return -EFAULT;
    if (!handling_fault)
        return bsd_copy_guarded((void *)to, from, len);
    return process_vm_writev(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
}

/* ---- translations ---- */

static int mmap_flags(long bsd)
{
    int flags = (int)(bsd & (FREEBSD_MAP_SHARED | FREEBSD_MAP_PRIVATE));
    if (bsd & FREEBSD_MAP_ANON)
        flags |= MAP_ANONYMOUS;
    if (bsd & FREEBSD_MAP_FIXED)
        flags |= MAP_FIXED;
    return flags;
}

/* NetBSD's clocks (<time.h>), which x/sys does not list. */
enum { NETBSD_CLOCK_MONOTONIC = 3, NETBSD_CLOCK_THREAD = 0x20000000,
       NETBSD_CLOCK_PROCESS = 0x40000000 };

static clockid_t clock_id(long bsd)
{
    if (bsd_proc->os == BSD_NETBSD)
        return bsd == NETBSD_CLOCK_MONOTONIC ? CLOCK_MONOTONIC
             : bsd == NETBSD_CLOCK_THREAD    ? CLOCK_THREAD_CPUTIME_ID
             : bsd == NETBSD_CLOCK_PROCESS   ? CLOCK_PROCESS_CPUTIME_ID
                                             : CLOCK_REALTIME;
    switch (bsd) {
    case FREEBSD_CLOCK_MONOTONIC:
    case FREEBSD_CLOCK_UPTIME:
    case FREEBSD_CLOCK_MONOTONIC_FAST:
    case FREEBSD_CLOCK_MONOTONIC_PRECISE:
    case FREEBSD_CLOCK_UPTIME_FAST:
    case FREEBSD_CLOCK_UPTIME_PRECISE:
        return CLOCK_MONOTONIC;
    case FREEBSD_CLOCK_PROCESS_CPUTIME_ID:
        return CLOCK_PROCESS_CPUTIME_ID;
    case FREEBSD_CLOCK_THREAD_CPUTIME_ID:
        return CLOCK_THREAD_CPUTIME_ID;
    default:
        return CLOCK_REALTIME;
    }
}

/* ---- the calls ---- */

static long sys_exit(const long *a)
{
    _exit((int)a[0]);
}

static long sys_read(const long *a) { return bsd_result(read((int)a[0], (void *)a[1], (size_t)a[2])); }
static long sys_write(const long *a) { return bsd_result(write((int)a[0], (void *)a[1], (size_t)a[2])); }
/* -o FILE's descriptor is smolvm's: the guest can neither close it nor
 * dup2 over it (EBADF, as for a descriptor it does not have). An int, as
 * the calls read it: 0x100000000 + fd is fd to them. */
static bool is_trace_fd(int fd)
{
    return bsd_proc->trace_fd != STDERR_FILENO && fd == bsd_proc->trace_fd;
}

static long sys_close(const long *a)
{
    if (is_trace_fd((int)a[0]))
        return -EBADF;
    bsd_kqueue_forget((int)a[0]);
    return bsd_result(close((int)a[0]));
}
static long sys_getpid(const long *a) { (void)a; return getpid(); }
static long sys_getppid(const long *a) { (void)a; return getppid(); }
static long sys_getuid(const long *a) { (void)a; return getuid(); }
static long sys_geteuid(const long *a) { (void)a; return geteuid(); }
static long sys_getgid(const long *a) { (void)a; return getgid(); }
static long sys_getegid(const long *a) { (void)a; return getegid(); }
static long sys_zero(const long *a) { (void)a; return 0; }

static long sys_readv(const long *a)
{
    return bsd_result(readv((int)a[0], (const struct iovec *)a[1], (int)a[2]));
}

static long sys_writev(const long *a)
{
    return bsd_result(writev((int)a[0], (const struct iovec *)a[1], (int)a[2]));
}

/* ---- paths: with --root, an absolute one is looked up in the sysroot
 * first (the BSD's /lib, /etc, /usr/share there; the host's otherwise) ---- */

/* A guest string into buf (PATH_MAX), read through the kernel: a bad
 * pointer is false, never a fault in smolvm. */
static bool copy_path(char *buf, uint64_t guest)
{
    /* A piece within one page is read whole or not at all: page by page,
     * never past the page the NUL is in. */
    for (size_t at = 0; at < PATH_MAX;) {
        size_t piece = 4096 - (size_t)((guest + at) & 4095);
        if (piece > PATH_MAX - at)
            piece = PATH_MAX - at;
        if (bsd_copy_in(buf + at, guest + at, piece) < 0)
            return false;
        if (memchr(buf + at, 0, piece))
            return true;
        at += piece;
    }
    return false;
}

/* Whether the sysroot has in_root's parent directory (in_root: the root
 * then an absolute path; trailing slashes are not a component). */
static bool root_has_parent(const char *in_root)
{
    char parent[PATH_MAX];
    struct stat st;
    size_t at = strlen(in_root), floor = strlen(bsd_proc->root) + 1;
    memcpy(parent, in_root, at + 1);
    while (at > floor && parent[at - 1] == '/')
        at--;
    while (at > floor && parent[at - 1] != '/')
        at--;
    parent[at] = 0; /* "R/dir/" or "R/" */
    return stat(parent, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *bsd_root_lookup(const char *path, char *buf, enum bsd_path_use use)
{
    char in_root[PATH_MAX];
    struct stat st;
    if (!bsd_proc->root || path[0] != '/' || use == BSD_PATH_CONTENT ||
        snprintf(in_root, sizeof(in_root), "%s%s", bsd_proc->root, path) >= (int)sizeof(in_root))
        return path;
    if (lstat(in_root, &st) == 0 ||
        (use == BSD_PATH_MAKE && lstat(path, &st) < 0 && errno == ENOENT &&
         root_has_parent(in_root))) {
        memcpy(buf, in_root, strlen(in_root) + 1);
        return buf;
    }
    return path;
}

const char *bsd_path(uint64_t guest, char *buf, enum bsd_path_use use)
{
    char path[PATH_MAX];
    if (!bsd_proc->root)
        return (const char *)guest; /* the kernel reads it: EFAULT when bad */
    if (!copy_path(path, guest))
        return NULL;
    const char *host = bsd_root_lookup(path, buf, use);
    if (host == path)
        memcpy(buf, path, strlen(path) + 1);
    return buf;
}

static long sys_open(const long *a)
{
    PATH_ARG_USE(path, a[0], bsd_open_flags(a[1]) & O_CREAT ? BSD_PATH_MAKE : BSD_PATH_FIND);
    return bsd_openat_as(FREEBSD_AT_FDCWD, path, a[1], a[2]);
}

static long sys_openat(const long *a)
{
    PATH_ARG_USE(path, a[1], bsd_open_flags(a[2]) & O_CREAT ? BSD_PATH_MAKE : BSD_PATH_FIND);
    return bsd_openat_as(a[0], path, a[2], a[3]);
}

static long sys_lseek(const long *a) { return bsd_result(lseek((int)a[0], (off_t)a[1], (int)a[2])); }

static long map(const long *a, long offset)
{
    uint64_t addr = (uint64_t)a[0], len = (uint64_t)a[1];
    int flags = mmap_flags(a[3]);
    bool anon = flags & MAP_ANONYMOUS;
    int fd = anon ? -1 : (int)a[4];
    off_t at = anon ? 0 : (off_t)offset;

    if (len == 0 || len > BSDUSER_GUEST_LIMIT || addr > BSDUSER_GUEST_LIMIT - len)
        return flags & MAP_FIXED || len == 0 ? -EINVAL : -ENOMEM;
    if (flags & MAP_FIXED) {
        if (bsd_rewrite_forget(addr, len) < 0)
            return -EINVAL;
        return bsd_result((long)mmap((void *)addr, len, (int)a[2], flags, fd, at));
    }
    /* The guest stays below the host's range: at its hint when that is
     * free (runtimes place their heaps so), else in the guest's map area. */
    flags |= MAP_FIXED_NOREPLACE;
    void *m = addr ? mmap((void *)addr, len, (int)a[2], flags, fd, at) : MAP_FAILED;
    for (int tries = 0; m == MAP_FAILED && tries < 64; tries++) {
        m = mmap((void *)bsd_guest_map(len), len, (int)a[2], flags, fd, at);
        if (m == MAP_FAILED && errno != EEXIST)
            break;
    }
    return m == MAP_FAILED ? -errno : (long)m;
}

static long sys_mmap(const long *a) { return map(a, a[5]); }
/* NetBSD's mmap has a pad before the offset: its seventh argument. */
static long sys_mmap_netbsd(const long *a) { return map(a, a[6]); }

static long sys_munmap(const long *a)
{
    if ((uint64_t)a[0] + (uint64_t)a[1] > BSDUSER_GUEST_LIMIT ||
        bsd_rewrite_forget((uint64_t)a[0], (uint64_t)a[1]) < 0)
        return -EINVAL;
    return bsd_result(munmap((void *)a[0], (size_t)a[1]));
}

static long sys_mprotect(const long *a)
{
    if ((uint64_t)a[0] + (uint64_t)a[1] > BSDUSER_GUEST_LIMIT ||
        bsd_rewrite_forget((uint64_t)a[0], (uint64_t)a[1]) < 0)
        return -EINVAL;
    return bsd_result(mprotect((void *)a[0], (size_t)a[1], (int)a[2]));
}

static long sys_clock_gettime(const long *a)
{
    struct timespec ts;
    if (clock_gettime(clock_id(a[0]), &ts) < 0)
        return -errno;
    return bsd_copy_out((uint64_t)a[1], &ts, sizeof(ts));
}

static long sys_nanosleep(const long *a)
{
    struct timespec ts;
    long r = bsd_copy_in(&ts, (uint64_t)a[0], sizeof(ts));
    return r < 0 ? r : bsd_result(nanosleep(&ts, a[1] ? (struct timespec *)a[1] : NULL));
}

static long sys_getrandom(const long *a)
{
    return bsd_result(getrandom((void *)a[0], (size_t)a[1], (unsigned)a[2] & GRND_NONBLOCK));
}

/* The stat calls, each answering in the struct stat of layout l. */
static long fstat_as(const long *a, const struct bsd_stat_layout *l)
{
    return bsd_fstat_as(a[0], (uint64_t)a[1], l);
}

static long fstatat_as(const long *a, const struct bsd_stat_layout *l)
{
    PATH_ARG(path, a[1]);
    return bsd_fstatat_as(a[0], path, a[3], (uint64_t)a[2], l);
}

/* stat(path, sb) and, not following a last link, lstat. */
static long stat_as(const long *a, const struct bsd_stat_layout *l, bool follow)
{
    PATH_ARG(path, a[0]);
    return bsd_fstatat_as(FREEBSD_AT_FDCWD, path, follow ? 0 : FREEBSD_AT_SYMLINK_NOFOLLOW,
                          (uint64_t)a[1], l);
}

static long sys_fstat(const long *a) { return fstat_as(a, bsd_native_stat()); }
static long sys_fstatat(const long *a) { return fstatat_as(a, bsd_native_stat()); }
static long sys_stat(const long *a) { return stat_as(a, bsd_native_stat(), true); }
static long sys_lstat(const long *a) { return stat_as(a, bsd_native_stat(), false); }
static long sys_freebsd11_fstat(const long *a) { return fstat_as(a, &bsd_freebsd11_stat); }
static long sys_freebsd11_fstatat(const long *a) { return fstatat_as(a, &bsd_freebsd11_stat); }
static long sys_freebsd11_stat(const long *a) { return stat_as(a, &bsd_freebsd11_stat, true); }
static long sys_freebsd11_lstat(const long *a) { return stat_as(a, &bsd_freebsd11_stat, false); }

/* Under --root a directory in the sysroot is named as the guest named
 * it (chdir("/usr") went to R/usr: the guest sees /usr, not R/usr). */
static long sys_getcwd(const long *a)
{
    char cwd[PATH_MAX];
    const char *seen = cwd;
    size_t rootlen = bsd_proc->root ? strlen(bsd_proc->root) : 0;
    if (!getcwd(cwd, sizeof(cwd)))
        return -errno;
    if (rootlen && strncmp(cwd, bsd_proc->root, rootlen) == 0 &&
        (cwd[rootlen] == '/' || !cwd[rootlen]))
        seen = cwd[rootlen] ? cwd + rootlen : "/";
    if (strlen(seen) + 1 > (size_t)a[1])
        return -ERANGE;
    return bsd_copy_out((uint64_t)a[0], seen, strlen(seen) + 1);
}

/* Paths and descriptors: Linux's calls, with the flags that differ. */
static int at_dir(long fd) { return fd == FREEBSD_AT_FDCWD ? AT_FDCWD : (int)fd; }
static long sys_unlink(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(unlink(path));
}
/* The *at() flags (both BSDs number them alike). */
static int at_flags(long bsd)
{
    return (bsd & FREEBSD_AT_EACCESS ? AT_EACCESS : 0) |
           (bsd & FREEBSD_AT_SYMLINK_NOFOLLOW ? AT_SYMLINK_NOFOLLOW : 0) |
           (bsd & FREEBSD_AT_SYMLINK_FOLLOW ? AT_SYMLINK_FOLLOW : 0) |
           (bsd & FREEBSD_AT_REMOVEDIR ? AT_REMOVEDIR : 0);
}

static long sys_unlinkat(const long *a)
{
    PATH_ARG(path, a[1]);
    return bsd_result(unlinkat(at_dir(a[0]), path, at_flags(a[2])));
}

static long sys_faccessat(const long *a)
{
    PATH_ARG(path, a[1]);
    return bsd_result(faccessat(at_dir(a[0]), path, (int)a[2], at_flags(a[3])));
}

static long sys_readlinkat(const long *a)
{
    PATH_ARG(path, a[1]);
    return bsd_result(readlinkat(at_dir(a[0]), path, (char *)a[2], (size_t)a[3]));
}

static long sys_renameat(const long *a)
{
    PATH_ARG(from, a[1]);
    NEW_PATH_ARG(to, a[3]);
    return bsd_result(renameat(at_dir(a[0]), from, at_dir(a[2]), to));
}

static long sys_linkat(const long *a)
{
    PATH_ARG(from, a[1]);
    NEW_PATH_ARG(to, a[3]);
    return bsd_result(linkat(at_dir(a[0]), from, at_dir(a[2]), to, at_flags(a[4])));
}

static long sys_symlinkat(const long *a)
{
    LINK_CONTENT_ARG(content, a[0]);
    NEW_PATH_ARG(path, a[2]);
    return bsd_result(symlinkat(content, at_dir(a[1]), path));
}

static long sys_fchmodat(const long *a)
{
    PATH_ARG(path, a[1]);
    return bsd_result(fchmodat(at_dir(a[0]), path, (mode_t)a[2], at_flags(a[3])));
}

static long sys_fchownat(const long *a)
{
    PATH_ARG(path, a[1]);
    return bsd_result(fchownat(at_dir(a[0]), path, (uid_t)a[2], (gid_t)a[3], at_flags(a[4])));
}

/* utimensat(fd, path, times, flag): UTIME_NOW and UTIME_OMIT are -1 and
 * -2 on the BSDs. */
static long sys_utimensat(const long *a)
{
    struct timespec t[2];
    PATH_ARG(path, a[1]);
    if (a[2] && bsd_copy_in(t, (uint64_t)a[2], sizeof(t)) < 0)
        return -EFAULT;
    for (int i = 0; a[2] && i < 2; i++)
        t[i].tv_nsec = t[i].tv_nsec == -1 ? UTIME_NOW : t[i].tv_nsec == -2 ? UTIME_OMIT : t[i].tv_nsec;
    return bsd_result(utimensat(at_dir(a[0]), path, a[2] ? t : NULL, at_flags(a[3])));
}

static long sys_pread(const long *a)
{
    return bsd_result(pread((int)a[0], (void *)a[1], (size_t)a[2], (off_t)a[3]));
}

static long sys_pwrite(const long *a)
{
    return bsd_result(pwrite((int)a[0], (const void *)a[1], (size_t)a[2], (off_t)a[3]));
}

static long sys_link(const long *a)
{
    PATH_ARG(from, a[0]);
    NEW_PATH_ARG(to, a[1]);
    return bsd_result(link(from, to));
}
static long sys_chown(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(chown(path, (uid_t)a[1], (gid_t)a[2]));
}
static long sys_lchown(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(lchown(path, (uid_t)a[1], (gid_t)a[2]));
}
static long sys_fchown(const long *a) { return bsd_result(fchown((int)a[0], (uid_t)a[1], (gid_t)a[2])); }
static long sys_chroot(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(chroot(path));
}
static long sys_getrusage(const long *a)
{
    return bsd_result(syscall(SYS_getrusage, (int)a[0], (void *)a[1]));
}
static long sys_gettimeofday(const long *a)
{
    return bsd_result(syscall(SYS_gettimeofday, (void *)a[0], (void *)a[1]));
}
static long sys_mkdir(const long *a)
{
    NEW_PATH_ARG(path, a[0]);
    return bsd_result(mkdir(path, (mode_t)a[1]));
}
static long sys_mkdirat(const long *a)
{
    NEW_PATH_ARG(path, a[1]);
    return bsd_result(mkdirat(at_dir(a[0]), path, (mode_t)a[2]));
}
static long sys_rmdir(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(rmdir(path));
}
static long sys_rename(const long *a)
{
    PATH_ARG(from, a[0]);
    NEW_PATH_ARG(to, a[1]);
    return bsd_result(rename(from, to));
}
static long sys_chdir(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(chdir(path));
}
static long sys_fchdir(const long *a) { return bsd_result(fchdir((int)a[0])); }
static long sys_chmod(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(chmod(path, (mode_t)a[1]));
}
static long sys_fchmod(const long *a) { return bsd_result(fchmod((int)a[0], (mode_t)a[1])); }
static long sys_access(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(access(path, (int)a[1]));
}
static long sys_symlink(const long *a)
{
    LINK_CONTENT_ARG(content, a[0]);
    NEW_PATH_ARG(path, a[1]);
    return bsd_result(symlink(content, path));
}
static long sys_readlink(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(readlink(path, (char *)a[1], (size_t)a[2]));
}
static long sys_truncate(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(truncate(path, (off_t)a[1]));
}
/* NetBSD's truncate and ftruncate have a pad before the length. */
static long sys_truncate_netbsd(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(truncate(path, (off_t)a[2]));
}
static long sys_ftruncate_netbsd(const long *a)
{
    return bsd_result(ftruncate((int)a[0], (off_t)a[2]));
}

/* utimes(path, tv), lutimes and futimesat(fd, path, tv): two timevals
 * (the same layout on all three) or NULL for now. */
static long set_times(int dirfd, const char *path, uint64_t tv, int flags)
{
    struct timeval in[2];
    struct timespec t[2];
    if (tv && bsd_copy_in(in, tv, sizeof(in)) < 0)
        return -EFAULT;
    for (int i = 0; tv && i < 2; i++)
        t[i] = (struct timespec){in[i].tv_sec, in[i].tv_usec * 1000};
    return bsd_result(utimensat(dirfd, path, tv ? t : NULL, flags));
}
static long sys_utimes(const long *a)
{
    PATH_ARG(path, a[0]);
    return set_times(AT_FDCWD, path, (uint64_t)a[1], 0);
}
static long sys_lutimes(const long *a)
{
    PATH_ARG(path, a[0]);
    return set_times(AT_FDCWD, path, (uint64_t)a[1], AT_SYMLINK_NOFOLLOW);
}
static long sys_futimesat(const long *a)
{
    PATH_ARG(path, a[1]);
    return set_times(at_dir(a[0]), path, (uint64_t)a[2], 0);
}

static long sys_eaccess(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(faccessat(AT_FDCWD, path, (int)a[1], AT_EACCESS));
}
static long sys_lchmod(const long *a)
{
    PATH_ARG(path, a[0]);
    return bsd_result(fchmodat(AT_FDCWD, path, (mode_t)a[1], AT_SYMLINK_NOFOLLOW));
}
static long sys_mkfifo(const long *a)
{
    NEW_PATH_ARG(path, a[0]);
    return bsd_result(mkfifo(path, (mode_t)a[1]));
}
static long sys_mkfifoat(const long *a)
{
    NEW_PATH_ARG(path, a[1]);
    return bsd_result(mkfifoat(at_dir(a[0]), path, (mode_t)a[2]));
}
/* Device nodes: the BSDs' device numbers mean nothing here (EPERM, as in
 * a jail); FIFOs, sockets and plain files are made. */
static long make_node(long dirfd, uint64_t guest, long mode)
{
    NEW_PATH_ARG(path, guest);
    if (S_ISCHR((mode_t)mode) || S_ISBLK((mode_t)mode))
        return -EPERM;
    return bsd_result(mknodat(at_dir(dirfd), path, (mode_t)mode, 0));
}
static long sys_mknodat(const long *a) { return make_node(a[0], (uint64_t)a[1], a[2]); }
static long sys_mknod(const long *a) { return make_node(FREEBSD_AT_FDCWD, (uint64_t)a[0], a[1]); }

/* pathconf names 1 (_PC_LINK_MAX) to 9 (_PC_VDISABLE): Linux's are one
 * less on both BSDs; the others are not answered. */
static long linux_pathconf(long name)
{
    return name >= 1 && name <= 9 ? name - 1 : -1;
}
static long sys_pathconf(const long *a)
{
    PATH_ARG(path, a[0]);
    long name = linux_pathconf(a[1]);
    errno = 0;
    long r = name < 0 ? -1 : pathconf(path, (int)name);
    return r < 0 ? (name < 0 ? -EINVAL : errno ? -errno : r) : r;
}
static long sys_lpathconf(const long *a)
{
    PATH_ARG(path, a[0]);
    long name = linux_pathconf(a[1]);
    int fd = name < 0 ? -1 : open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return name < 0 ? -EINVAL : -errno;
    errno = 0;
    long r = fpathconf(fd, (int)name);
    r = r < 0 && errno ? -errno : r;
    close(fd);
    return r;
}
static long sys_fpathconf(const long *a)
{
    long name = linux_pathconf(a[1]);
    errno = 0;
    long r = name < 0 ? -1 : fpathconf((int)a[0], (int)name);
    return r < 0 ? (name < 0 ? -EINVAL : errno ? -errno : r) : r;
}

/* File flags (chflags): Linux has none of the BSDs' (immutable, nodump,
 * ...): clearing them all is done, setting one is not supported. */
static long file_flags(int dirfd, const char *path, long flags, int at)
{
    struct stat st;
    if (fstatat(dirfd, path, &st, at) < 0)
        return -errno;
    return flags ? -EOPNOTSUPP : 0;
}
static long sys_chflags(const long *a)
{
    PATH_ARG(path, a[0]);
    return file_flags(AT_FDCWD, path, a[1], 0);
}
static long sys_lchflags(const long *a)
{
    PATH_ARG(path, a[0]);
    return file_flags(AT_FDCWD, path, a[1], AT_SYMLINK_NOFOLLOW);
}
static long sys_chflagsat(const long *a)
{
    PATH_ARG(path, a[1]);
    return file_flags(at_dir(a[0]), path, a[2], at_flags(a[3]) & AT_SYMLINK_NOFOLLOW);
}

static long sys_umask(const long *a) { return umask((mode_t)a[0]); }
static long sys_dup(const long *a) { return bsd_result(dup((int)a[0])); }
/* dup2, and fcntl's F_DUP2FD (cloexec false) and F_DUP2FD_CLOEXEC. Linux's
 * dup3 refuses old == new, where FreeBSD's F_DUP2FD_CLOEXEC answers new with
 * close-on-exec set. */
static long dup_to(int old, int new, bool cloexec)
{
    if (is_trace_fd(old) || is_trace_fd(new))
        return -EBADF;
    if (!cloexec)
        return bsd_result(dup2(old, new));
    if (old != new)
        return bsd_result(dup3(old, new, O_CLOEXEC));
    int flags = fcntl(old, F_GETFD);
    if (flags < 0 || fcntl(old, F_SETFD, flags | FD_CLOEXEC) < 0)
        return -errno;
    return old;
}
static long sys_dup2(const long *a) { return dup_to((int)a[0], (int)a[1], false); }
static long sys_fsync(const long *a) { return bsd_result(fsync((int)a[0])); }
static long sys_ftruncate(const long *a) { return bsd_result(ftruncate((int)a[0], (off_t)a[1])); }
static long sys_kill(const long *a)
{
    int sig = bsd_linux_signal(a[1]);
    return a[1] && !sig ? -EINVAL : bsd_result(kill((pid_t)a[0], sig));
}

int bsd_errno(int linux_errno)
{
    const int *map = bsd_proc->errno_map;
    return linux_errno > 0 && linux_errno < 200 && map[linux_errno] ? map[linux_errno]
                                                                    : 78 /* ENOSYS */;
}

bool bsd_tracing(void)
{
    return bsd_proc->tracing;
}

const char *bsd_root(void)
{
    return bsd_proc->root;
}

enum bsd_os bsd_personality(void)
{
    return bsd_proc->os;
}

int bsd_linux_signal(long bsd)
{
    return bsd > 0 && bsd < 65 ? bsd_proc->signal_map[bsd] : 0;
}

static long sys_pipe2(const long *a)
{
    int fds[2];
    if (pipe2(fds, bsd_open_flags(a[1]) & (O_CLOEXEC | O_NONBLOCK)) < 0)
        return -errno;
    return bsd_copy_out((uint64_t)a[0], fds, sizeof(fds));
}

static long sys_fcntl(const long *a)
{
    int fd = (int)a[0];
    long r, cmd = a[1];
    /* The commands both BSDs number alike (F_DUPFD to F_SETFL), and NetBSD's
     * F_DUPFD_CLOEXEC; NetBSD's others are not FreeBSD's (its 10 is F_CLOSEM). */
    if (bsd_proc->os == BSD_NETBSD)
        cmd = cmd == NETBSD_F_DUPFD_CLOEXEC ? FREEBSD_F_DUPFD_CLOEXEC
            : cmd <= FREEBSD_F_SETFL ? cmd : -1;
    switch (cmd) {
    /* Go's forked child moves its error pipe and the fds it hands on with
     * F_DUP2FD_CLOEXEC whenever one is numbered below another: EINVAL here
     * was "fork/exec: invalid argument" at random (fd numbers vary). */
    case FREEBSD_F_DUP2FD: return dup_to(fd, (int)a[2], false);
    case FREEBSD_F_DUP2FD_CLOEXEC: return dup_to(fd, (int)a[2], true);
    case FREEBSD_F_DUPFD: return bsd_result(fcntl(fd, F_DUPFD, (int)a[2]));
    case FREEBSD_F_DUPFD_CLOEXEC: return bsd_result(fcntl(fd, F_DUPFD_CLOEXEC, (int)a[2]));
    case FREEBSD_F_GETFD: return bsd_result(fcntl(fd, F_GETFD));
    case FREEBSD_F_SETFD: return bsd_result(fcntl(fd, F_SETFD, (int)a[2] & FD_CLOEXEC));
    case FREEBSD_F_GETFL:
        r = fcntl(fd, F_GETFL);
        if (r < 0)
            return -errno;
        return (r & O_ACCMODE) | (r & O_NONBLOCK ? FREEBSD_O_NONBLOCK : 0) |
               (r & O_APPEND ? FREEBSD_O_APPEND : 0);
    case FREEBSD_F_SETFL: return bsd_result(fcntl(fd, F_SETFL, bsd_open_flags(a[2]) & (O_NONBLOCK | O_APPEND)));
    default: return -EINVAL;
    }
}

/* getdirentries: Linux dirent64 records rewritten as FreeBSD's (ino64
 * layout: fileno, off, reclen, type, pad, namlen, pad, name, 8-aligned). */
/* struct dirent: FreeBSD's d_fileno, d_off, d_reclen, d_type, pad,
 * d_namlen, pad, d_name at 24, records 8-aligned; FreeBSD 11's (the
 * freebsd11_ calls) 32-bit d_fileno, d_reclen, d_type, 8-bit d_namlen,
 * d_name at 8, 4-aligned; NetBSD's d_fileno, d_reclen, d_namlen, d_type,
 * d_name at 13. d_type has the same DT_ values as Linux. */
enum dirent_format { DIRENT_FREEBSD, DIRENT_FREEBSD11, DIRENT_NETBSD };

static size_t dirent_header(enum dirent_format f)
{
    return f == DIRENT_NETBSD ? 13 : f == DIRENT_FREEBSD11 ? 8 : 24;
}

static void put_dirent(uint8_t *d, enum dirent_format f, uint16_t size, uint64_t ino,
                       uint64_t off, uint8_t type, const char *name, uint16_t namlen)
{
    memset(d, 0, size);
    memcpy(d, &ino, f == DIRENT_FREEBSD11 ? 4 : 8); /* 32 bits: cut, as FreeBSD's kernel does */
    if (f == DIRENT_FREEBSD11) {
        memcpy(d + 4, &size, 2);
        d[6] = type;
        d[7] = (uint8_t)namlen; /* at most 255 */
    } else if (f == DIRENT_NETBSD) {
        memcpy(d + 8, &size, 2);
        memcpy(d + 10, &namlen, 2);
        d[12] = type;
    } else {
        memcpy(d + 8, &off, 8);
        memcpy(d + 16, &size, 2);
        d[18] = type;
        memcpy(d + 20, &namlen, 2);
    }
    memcpy(d + dirent_header(f), name, namlen);
}

/* getdirentries(fd, buf, size, &base) with records as f, and getdents(fd,
 * buf, size) (with_base false: a[3] is not a pointer it passed). */
static long getdirentries_as(const long *a, enum dirent_format f, bool with_base)
{
    uint8_t in[4096], *out = malloc((size_t)a[2] > 0 ? (size_t)a[2] : 1);
    size_t room = (size_t)a[2], used = 0;
    off_t pos = lseek((int)a[0], 0, SEEK_CUR); /* where each record starts */
    long n = out ? syscall(SYS_getdents64, (int)a[0], in, room < sizeof(in) ? room : sizeof(in)) : -1;
    long r = n < 0 ? -errno : 0;

    for (long at = 0; r == 0 && at < n;) {
        uint64_t ino, off;
        uint16_t reclen, namlen;
        memcpy(&ino, in + at, 8);
        memcpy(&off, in + at + 8, 8);
        memcpy(&reclen, in + at + 16, 2);
        const char *name = (const char *)in + at + 19;
        namlen = (uint16_t)strnlen(name, 255);
        unsigned align = f == DIRENT_FREEBSD11 ? 4 : 8;
        uint16_t size = (uint16_t)((dirent_header(f) + namlen + 1 + align - 1) & ~(align - 1));
        if (used + size > room) { /* the rest is for the next call */
            lseek((int)a[0], pos, SEEK_SET);
            if (!used)
                r = -EINVAL;
            break;
        }
        pos = (off_t)off;
        put_dirent(out + used, f, size, ino, off, in[at + 18], name, namlen);
        used += size;
        at += reclen;
    }
    if (r == 0)
        r = bsd_copy_out((uint64_t)a[1], out, used);
    if (r == 0 && with_base && a[3]) {
        uint64_t base = (uint64_t)lseek((int)a[0], 0, SEEK_CUR);
        r = bsd_copy_out((uint64_t)a[3], &base, sizeof(base));
    }
    free(out);
    return r < 0 ? r : (long)used;
}

static long sys_getdirentries(const long *a) { return getdirentries_as(a, DIRENT_FREEBSD, true); }
static long sys_getdents_netbsd(const long *a) { return getdirentries_as(a, DIRENT_NETBSD, false); }
static long sys_freebsd11_getdirentries(const long *a)
{
    return getdirentries_as(a, DIRENT_FREEBSD11, true);
}
static long sys_freebsd11_getdents(const long *a)
{
    return getdirentries_as(a, DIRENT_FREEBSD11, false);
}

/* The sysctl names runtimes ask for, by MIB and by name. */
enum { CTL_KERN = 1, CTL_HW = 6, KERN_OSTYPE = 1, KERN_OSRELEASE = 2, KERN_PROC = 14,
       KERN_OSRELDATE = 24, KERN_USRSTACK = 33, KERN_ARND = 37, KERN_PROC_PATHNAME = 12,
       HW_MACHINE = 1, HW_NCPU = 3, HW_PAGESIZE = 7 };

static long answer(uint64_t old, uint64_t oldlenp, const void *value, size_t len)
{
    uint64_t room;
    long r = bsd_copy_in(&room, oldlenp, sizeof(room));
    if (r == 0 && old && room < len)
        return -ENOMEM;
    if (r == 0 && old)
        r = bsd_copy_out(old, value, len);
    if (r == 0)
        r = bsd_copy_out(oldlenp, &(uint64_t){len}, sizeof(uint64_t));
    return r;
}

static long sysctl_value(const int *mib, unsigned n, uint64_t old, uint64_t oldlenp)
{
    int i32;
    uint64_t u64;
    uint8_t random[256];
    if (n == 2 && mib[0] == CTL_KERN && mib[1] == KERN_OSTYPE)
        return answer(old, oldlenp, bsd_proc->os == BSD_NETBSD ? "NetBSD" : "FreeBSD",
                      bsd_proc->os == BSD_NETBSD ? 7 : 8);
    if (n == 2 && mib[0] == CTL_KERN && mib[1] == KERN_OSRELEASE)
        return answer(old, oldlenp, "13.2-RELEASE", 13);
    if (n == 2 && mib[0] == CTL_KERN && mib[1] == KERN_OSRELDATE)
        return i32 = 1302001, answer(old, oldlenp, &i32, 4);
    if (n == 2 && mib[0] == CTL_KERN && mib[1] == KERN_USRSTACK)
        return u64 = bsd_proc->stack_top, answer(old, oldlenp, &u64, 8);
    if (n == 2 && mib[0] == CTL_KERN && mib[1] == KERN_ARND) {
        uint64_t want;
        if (bsd_copy_in(&want, oldlenp, 8) < 0)
            return -EFAULT;
        if (want > sizeof(random))
            want = sizeof(random);
        if (getrandom(random, want, 0) != (ssize_t)want)
            return -EIO;
        return answer(old, oldlenp, random, want);
    }
    if (n == 4 && mib[0] == CTL_KERN && mib[1] == KERN_PROC && mib[2] == KERN_PROC_PATHNAME)
        return answer(old, oldlenp, bsd_proc->exec_path, strlen(bsd_proc->exec_path) + 1);
    if (n == 2 && mib[0] == CTL_HW && mib[1] == HW_NCPU)
        return i32 = (int)sysconf(_SC_NPROCESSORS_ONLN), answer(old, oldlenp, &i32, 4);
    if (n == 2 && mib[0] == CTL_HW && mib[1] == HW_PAGESIZE)
        return i32 = 4096, answer(old, oldlenp, &i32, 4);
    if (n == 2 && mib[0] == CTL_HW && mib[1] == HW_MACHINE)
        return answer(old, oldlenp, "amd64", 6);
    return -ENOENT;
}

static const struct {
    const char *name;
    int mib[4];
    unsigned n;
} sysctl_names[] = {
    {"kern.ostype", {CTL_KERN, KERN_OSTYPE}, 2}, {"kern.osrelease", {CTL_KERN, KERN_OSRELEASE}, 2},
    {"kern.osreldate", {CTL_KERN, KERN_OSRELDATE}, 2}, {"kern.usrstack", {CTL_KERN, KERN_USRSTACK}, 2},
    {"kern.arandom", {CTL_KERN, KERN_ARND}, 2}, {"hw.ncpu", {CTL_HW, HW_NCPU}, 2},
    {"hw.pagesize", {CTL_HW, HW_PAGESIZE}, 2}, {"hw.machine", {CTL_HW, HW_MACHINE}, 2},
    {"kern.proc.pathname", {CTL_KERN, KERN_PROC, KERN_PROC_PATHNAME, -1}, 4},
};

/* A name the guest passes (len bytes, maybe NUL-terminated), or -1. */
static int sysctl_lookup(uint64_t addr, size_t len)
{
    char name[64] = "";
    if (len >= sizeof(name) || bsd_copy_in(name, addr, len) < 0)
        return -1;
    name[len] = 0;
    for (size_t i = 0; i < sizeof(sysctl_names) / sizeof(sysctl_names[0]); i++)
        if (strcmp(sysctl_names[i].name, name) == 0)
            return (int)i;
    return -1;
}

enum { CTL_SYSCTL = 0, SYSCTL_NAME2OID = 3 };

static long sys_sysctl(const long *a)
{
    int mib[8];
    unsigned n = (unsigned)a[1];
    if (n == 0 || n > 8 || bsd_copy_in(mib, (uint64_t)a[0], n * sizeof(int)) < 0)
        return n > 8 ? -EINVAL : -EFAULT;
    /* sysctlnametomib(3): the name in, its MIB out. */
    if (n == 2 && mib[0] == CTL_SYSCTL && mib[1] == SYSCTL_NAME2OID) {
        int i = sysctl_lookup((uint64_t)a[4], (size_t)a[5]);
        return i < 0 ? -ENOENT
                     : answer((uint64_t)a[2], (uint64_t)a[3], sysctl_names[i].mib,
                              sysctl_names[i].n * sizeof(int));
    }
    if (a[4])
        return -EPERM; /* nothing is settable */
    return sysctl_value(mib, n, (uint64_t)a[2], (uint64_t)a[3]);
}

static long sys_sysctlbyname(const long *a)
{
    int i = sysctl_lookup((uint64_t)a[0], (size_t)a[1]);
    return i < 0 ? -ENOENT
                 : sysctl_value(sysctl_names[i].mib, sysctl_names[i].n, (uint64_t)a[2],
                                (uint64_t)a[3]);
}

/* ---- resource limits: the BSDs number them alike (0-10), Linux not ---- */

#define BSD_RLIM_INFINITY 0x7fffffffffffffffull

static int linux_resource(long bsd)
{
    static const int map[] = {RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE,
                              RLIMIT_RSS, RLIMIT_MEMLOCK, RLIMIT_NPROC, RLIMIT_NOFILE, -1,
                              RLIMIT_AS};
    return bsd >= 0 && bsd < (long)(sizeof(map) / sizeof(map[0])) ? map[bsd] : -1;
}

static long sys_getrlimit(const long *a)
{
    struct rlimit l;
    int res = linux_resource(a[0]);
    if (res < 0)
        return -EINVAL;
    if (getrlimit(res, &l) < 0)
        return -errno;
    uint64_t out[2] = {l.rlim_cur == RLIM_INFINITY ? BSD_RLIM_INFINITY : l.rlim_cur,
                       l.rlim_max == RLIM_INFINITY ? BSD_RLIM_INFINITY : l.rlim_max};
    return bsd_copy_out((uint64_t)a[1], out, sizeof(out));
}

static long sys_setrlimit(const long *a)
{
    uint64_t in[2];
    int res = linux_resource(a[0]);
    if (res < 0)
        return -EINVAL;
    if (bsd_copy_in(in, (uint64_t)a[1], sizeof(in)) < 0)
        return -EFAULT;
    struct rlimit l = {in[0] >= BSD_RLIM_INFINITY ? RLIM_INFINITY : in[0],
                       in[1] >= BSD_RLIM_INFINITY ? RLIM_INFINITY : in[1]};
    return bsd_result(setrlimit(res, &l));
}

static const struct bsd_handler implemented[] = {
    {"getrlimit", sys_getrlimit}, {"setrlimit", sys_setrlimit}, {"netbsd:stat", sys_stat},
    {"faccessat", sys_faccessat}, {"readlinkat", sys_readlinkat}, {"renameat", sys_renameat},
    {"linkat", sys_linkat}, {"symlinkat", sys_symlinkat}, {"fchmodat", sys_fchmodat},
    {"fchownat", sys_fchownat}, {"utimensat", sys_utimensat}, {"pread", sys_pread},
    {"pwrite", sys_pwrite}, {"link", sys_link}, {"chown", sys_chown}, {"lchown", sys_lchown},
    {"fchown", sys_fchown}, {"chroot", sys_chroot}, {"getrusage", sys_getrusage},
    {"gettimeofday", sys_gettimeofday},
    {"netbsd:lstat", sys_lstat},
    {"exit", sys_exit}, {"read", sys_read}, {"write", sys_write},
    {"open", sys_open}, {"openat", sys_openat}, {"close", sys_close}, {"getpid", sys_getpid},
    {"getppid", sys_getppid}, {"getuid", sys_getuid}, {"geteuid", sys_geteuid},
    {"getgid", sys_getgid}, {"getegid", sys_getegid}, {"issetugid", sys_zero},
    {"readv", sys_readv}, {"writev", sys_writev}, {"lseek", sys_lseek}, {"mmap", sys_mmap},
    {"munmap", sys_munmap}, {"mprotect", sys_mprotect}, {"madvise", sys_zero},
    {"clock_gettime", sys_clock_gettime}, {"nanosleep", sys_nanosleep},
    {"getrandom", sys_getrandom}, {"fstat", sys_fstat}, {"fstatat", sys_fstatat},
    {"__getcwd", sys_getcwd}, {"__sysctl", sys_sysctl},
    {"__sysctlbyname", sys_sysctlbyname},
    {"unlink", sys_unlink}, {"unlinkat", sys_unlinkat}, {"mkdir", sys_mkdir},
    {"mkdirat", sys_mkdirat}, {"rmdir", sys_rmdir}, {"rename", sys_rename}, {"chdir", sys_chdir},
    {"fchdir", sys_fchdir}, {"chmod", sys_chmod}, {"fchmod", sys_fchmod}, {"access", sys_access},
    {"symlink", sys_symlink}, {"readlink", sys_readlink}, {"umask", sys_umask}, {"dup", sys_dup},
    {"dup2", sys_dup2}, {"fsync", sys_fsync}, {"ftruncate", sys_ftruncate}, {"kill", sys_kill},
    {"pipe2", sys_pipe2}, {"fcntl", sys_fcntl}, {"getdirentries", sys_getdirentries},
    {"netbsd:getdents", sys_getdents_netbsd},
    {"freebsd:freebsd11_stat", sys_freebsd11_stat}, {"freebsd:freebsd11_lstat", sys_freebsd11_lstat},
    {"freebsd:freebsd11_fstat", sys_freebsd11_fstat},
    {"freebsd:freebsd11_fstatat", sys_freebsd11_fstatat},
    {"freebsd:freebsd11_getdirentries", sys_freebsd11_getdirentries},
    {"freebsd:freebsd11_getdents", sys_freebsd11_getdents},
    {"freebsd:freebsd11_mknod", sys_mknod}, /* the device number (32-bit then) goes unused */
    {"freebsd:freebsd11_mknodat", sys_mknodat},
    {"netbsd:mmap", sys_mmap_netbsd},
    {"truncate", sys_truncate}, {"netbsd:truncate", sys_truncate_netbsd},
    {"netbsd:ftruncate", sys_ftruncate_netbsd}, {"utimes", sys_utimes},
    {"lutimes", sys_lutimes}, {"futimesat", sys_futimesat}, {"eaccess", sys_eaccess},
    {"lchmod", sys_lchmod}, {"mkfifo", sys_mkfifo}, {"mkfifoat", sys_mkfifoat},
    {"mknodat", sys_mknodat}, {"mknod", sys_mknod},
    {"pathconf", sys_pathconf}, {"lpathconf", sys_lpathconf}, {"fpathconf", sys_fpathconf},
    {"chflags", sys_chflags}, {"lchflags", sys_lchflags}, {"chflagsat", sys_chflagsat},
};

/* ---- dispatch ---- */

static void trace(const struct bsd_sysent *e, long number, const long *a, long r)
{
    bsd_trace(e, a, r, bsd_proc->handlers[number & (MAX_SYSCALL - 1)] != NULL);
}

/* The guest's call in g answered into g. */
static void answer_call(greg_t *g)
{
    long number = g[REG_RAX];
    long a[7] = {g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9], 0};

    if (number == SYS_INDIRECT || number == SYS_INDIRECT64) {
        uint64_t stack[1] = {0};
        number = a[0];
        memmove(a, a + 1, 5 * sizeof(long));
        /* The sixth argument of an indirect call is on the stack. */
        if (bsd_copy_in(stack, (uint64_t)g[REG_RSP] + 8, 8) == 0)
            a[5] = (long)stack[0];
    }
    bool known = number >= 0 && number < MAX_SYSCALL;
    handler_fn fn = known ? bsd_proc->handlers[number] : NULL;
    /* A seventh argument is on the stack, above the return address. */
    if (known && bsd_proc->by_number[number] && bsd_proc->by_number[number]->nargs > 6 &&
        bsd_copy_in(&a[6], (uint64_t)g[REG_RSP] + 8, 8) < 0)
        a[6] = 0;
    if (bsd_proc->tracing && fn == sys_exit) /* it does not come back to be traced */
        trace(bsd_proc->by_number[number], number, a, 0);
    long r = fn ? fn(a) : -ENOSYS;
    if (bsd_proc->tracing)
        trace(known ? bsd_proc->by_number[number] : NULL, number, a, r);
    if (r == BSD_JUSTRETURN) {
        ; /* sigreturn: every register is set */
    } else if (r < 0 && r > -4096) {
        g[REG_RAX] = bsd_errno((int)-r);
        g[REG_EFL] |= 1; /* carry: an error */
    } else {
        g[REG_RAX] = r;
        g[REG_EFL] &= ~1ll;
    }
}

static void on_sigsys(int sig, siginfo_t *si, void *context)
{
    greg_t *g = ((ucontext_t *)context)->uc_mcontext.gregs;
    int saved = errno;
    (void)sig;
    (void)si;

    if (g[REG_RAX] == BSD_DIRECT_RESULT) {
        /* A rewritten site's call, answered with signals kept meanwhile
         * (bsd_direct_entry): its result, then what was kept. */
        struct bsd_thread *t = bsd_thread_self();
        g[REG_RAX] = (greg_t)t->direct_result;
        g[REG_EFL] = (g[REG_EFL] & ~1ll) | (greg_t)(t->direct_carry & 1);
    } else {
        if ((uint64_t)g[REG_RIP] - bsd_rewrite_lo < bsd_rewrite_hi - bsd_rewrite_lo)
            bsd_rewrite_site((uint64_t)g[REG_RIP]);
        answer_call(g);
    }
    bsd_signals_flush(context, bsd_guest_fs());
    errno = saved;
}

void bsd_direct_c_call(void)
{
    ucontext_t *uc = &bsd_thread_self()->direct_uc;
    void *outer = bsd_context;
    int saved = errno;
    bsd_context = uc;
    answer_call(uc->uc_mcontext.gregs);
    bsd_context = outer;
    errno = saved;
}

static void on_fault(int sig, siginfo_t *si, void *context)
{
    greg_t *g = ((ucontext_t *)context)->uc_mcontext.gregs;
    char line[200];
    int n = snprintf(line, sizeof(line), "smolvm bsd-user: %s faulted: %s at address %p (pc %#llx)\n",
                     bsd_proc->exec_path, strsignal(sig), si->si_addr, (unsigned long long)g[REG_RIP]);
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        _exit(128 + sig);
    _exit(128 + sig);
}

/* Every part's calls: a plain name fills a number nothing filled yet, an
 * "os:name" one takes it over. */
static void fill_handlers(const struct bsd_sysent *e, const char *own)
{
    const struct {
        const struct bsd_handler *calls;
        size_t count;
    } parts[] = {{implemented, sizeof(implemented) / sizeof(implemented[0])},
                 {bsd_thread_calls, bsd_thread_call_count},
                 {bsd_kqueue_calls, bsd_kqueue_call_count},
                 {bsd_lwp_calls, bsd_lwp_call_count},
                 {bsd_signal_calls, bsd_signal_call_count},
                 {bsd_process_calls, bsd_process_call_count},
                 {bsd_socket_calls, bsd_socket_call_count},
                 {bsd_ioctl_calls, bsd_ioctl_call_count},
                 {bsd_fsinfo_calls, bsd_fsinfo_call_count}};
    for (size_t p = 0; p < sizeof(parts) / sizeof(parts[0]); p++)
        for (size_t k = 0; k < parts[p].count; k++) {
            const struct bsd_handler *h = &parts[p].calls[k];
            if (strcmp(h->name, own) == 0 ||
                (strcmp(h->name, e->name) == 0 && !bsd_proc->handlers[e->number]))
                bsd_proc->handlers[e->number] = h->fn;
        }
}

/* A table's calls, by number (a number taken already stays). */
static void add_table(enum bsd_os os, const struct bsd_sysent *table, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (table[i].number < 0 || table[i].number >= MAX_SYSCALL ||
            bsd_proc->by_number[table[i].number])
            continue;
        bsd_proc->by_number[table[i].number] = &table[i];
        char own[80];
        snprintf(own, sizeof(own), "%s:%s", os == BSD_NETBSD ? "netbsd" : "freebsd",
                 table[i].name);
        fill_handlers(&table[i], own);
    }
}

static void build_tables(enum bsd_os os)
{
    if (os == BSD_NETBSD)
        add_table(os, netbsd_table, sizeof(netbsd_table) / sizeof(netbsd_table[0]));
    else {
        add_table(os, freebsd_table, sizeof(freebsd_table) / sizeof(freebsd_table[0]));
        add_table(os, freebsd11_table, sizeof(freebsd11_table) / sizeof(freebsd11_table[0]));
    }
    if (os == BSD_NETBSD) {
        NETBSD_fill_errnos(bsd_proc->errno_map, 200);
        NETBSD_fill_signals(bsd_proc->signal_map, 65);
    } else {
        FREEBSD_fill_errnos(bsd_proc->errno_map, 200);
        FREEBSD_fill_signals(bsd_proc->signal_map, 65);
    }
}

/* The calls the signal entry makes itself (bsd_direct_calls): handlers that
 * are one Linux call with the guest's arguments as they are, or a clock id
 * mapped (guest pointers the kernel reads or writes itself: EFAULT, as
 * bsd_copy_in/out answer; clock_gettime here is the kernel's, not the
 * vDSO's, still one call fewer than the C path's %fs switches) (the kernel
 * reads each as the handler's casts do: 32-bit descriptors, 64-bit sizes
 * and offsets; readv's count it would read whole, so readv is not one). */
static void fill_direct_calls(void)
{
    static const struct {
        handler_fn fn;
        int linux_nr;
    } direct[] = {{sys_read, SYS_read}, {sys_write, SYS_write}, {sys_pread, SYS_pread64},
                  {sys_pwrite, SYS_pwrite64}, {sys_lseek, SYS_lseek}, {sys_getpid, SYS_getpid},
                  {sys_getppid, SYS_getppid}, {sys_nanosleep, SYS_nanosleep},
                  {sys_clock_gettime, SYS_clock_gettime | BSD_DIRECT_CLOCK},
                  {sys_getuid, SYS_getuid}, {sys_geteuid, SYS_geteuid}, {sys_getgid, SYS_getgid},
                  {sys_getegid, SYS_getegid}, {sys_fsync, SYS_fsync}};
    for (int n = 0; n < MAX_SYSCALL; n++)
        for (size_t k = 0; k < sizeof(direct) / sizeof(direct[0]); k++)
            if (bsd_proc->handlers[n] == direct[k].fn)
                bsd_direct_calls[n] = (uint16_t)(direct[k].linux_nr + 1);
    /* Answered by the C path without a signal: calls whose handler gives
     * a result and nothing else, the ones Go's runtime and programs make
     * most (by the BSD's own names). */
    static const char *const by_c[] = {
        "open", "openat", "close", "fstat", "fstatat", "stat", "lstat", "getdirentries",
        "_umtx_op", "sched_yield", "thr_kill", "thr_self", "mmap", "munmap", "mprotect",
        "madvise", "kevent", "fcntl", "sigprocmask", "sigaction", "readv", "writev", "pipe2",
        "dup", "dup2", "access", "faccessat", "readlink", "readlinkat", "__getcwd",
        "getrandom", "ioctl", "kill", "lseek", "getdents", "__fstat50", "__stat50",
        "__lstat50", "__getdents30", "___lwp_park60", "_lwp_unpark", "_lwp_self", "_lwp_kill",
        "__kevent50", "__sigprocmask14", "__clock_gettime50", "__nanosleep50"};
    bool xsave_fits = bsd_xsave_fits(); /* (cpuid: a VM exit in a VM) */
    for (int n = 0; n < MAX_SYSCALL && xsave_fits; n++)
        for (size_t k = 0; bsd_proc->handlers[n] && bsd_proc->by_number[n] &&
                           k < sizeof(by_c) / sizeof(by_c[0]);
             k++)
            if (strcmp(bsd_proc->by_number[n]->name, by_c[k]) == 0)
                bsd_direct_c[n] = 1;
    /* Of those, the ones bare.c answers on the guest's %fs (or declines),
     * as these handlers would. */
    static const struct {
        handler_fn full, bare;
    } bare[] = {{sys_fstat, bsd_bare_fstat}, {sys_fstatat, bsd_bare_fstatat},
                {sys_stat, bsd_bare_stat}, {sys_lstat, bsd_bare_lstat},
                {sys_open, bsd_bare_open}, {sys_openat, bsd_bare_openat},
                {sys_close, bsd_bare_close}, {bsd_umtx_op, bsd_umtx_op},
                {bsd_sched_yield, bsd_sched_yield}, {bsd_lwp_park60, bsd_lwp_park60},
                {bsd_lwp_unpark, bsd_lwp_unpark}};
    for (int n = 0; n < MAX_SYSCALL; n++)
        for (size_t k = 0; bsd_direct_c[n] && k < sizeof(bare) / sizeof(bare[0]); k++)
            if (bsd_proc->handlers[n] == bare[k].full)
                bsd_bare_calls[n] = bare[k].bare;
    for (int c = 0; c < BSD_DIRECT_CLOCKS; c++)
        bsd_direct_clocks[c] = (uint8_t)(clock_id(c) + 1);
    bsd_vdso_find();
    for (int e = 0; e < 200; e++)
        bsd_direct_errno[e] = bsd_errno(e);
}

uint64_t bsd_dispatch(int sig, void *info, void *context);
__thread void *bsd_context;

uint64_t bsd_dispatch(int sig, void *info, void *context)
{
    /* A signal may come while a call is being answered: its handler runs
     * on top, and the call must still find (and restore into) its own
     * context afterwards. */
    void *outer = bsd_context;
    bool fault_outer = handling_fault;
    bsd_context = context;
    handling_fault |= bsd_fault_signal(sig);
    if (sig == 0) /* a direct call was answered (threads.c): what it kept */
        bsd_signals_flush(context, bsd_guest_fs());
    else if (sig == SIGSYS)
        on_sigsys(sig, info, context);
    else if (!bsd_signal_arrived(sig, info, context, bsd_guest_fs()) &&
             bsd_fault_signal(sig))
        on_fault(sig, info, context);
    bsd_context = outer;
    handling_fault = fault_outer;
    return 0;
}

/* Every handler goes through the entry that swaps %fs. */
static int install(void)
{
    struct sigaction sa = {.sa_sigaction = (void (*)(int, siginfo_t *, void *))bsd_signal_entry,
                           .sa_flags = SA_SIGINFO | SA_ONSTACK};
    static const int signals[] = {SIGSYS, SIGSEGV, SIGBUS, SIGILL, SIGFPE};

    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
        if (sigaction(signals[i], &sa, NULL) < 0)
            return err_set(errno, "signal handlers");
    int r = bsd_thread_setup(NULL);
    return r < 0 ? err_set(-r, "Syscall User Dispatch (Linux 5.11 or later)") : 0;
}

/* The process's state, with its call tables: it lives as long as the
 * process. */
static struct bsd_process *process_new(const char *path, const struct bsduser_options *o,
                                       enum bsd_os os)
{
    struct bsd_process *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->os = os;
    p->tracing = o->strace || o->trace_fd > 0;
    /* -o FILE's descriptor out of the guest's way (programs take the
     * lowest free ones), closed at an exec. */
    p->trace_fd = o->trace_fd > 0 ? fcntl(o->trace_fd, F_DUPFD_CLOEXEC, 512) : STDERR_FILENO;
    if (p->trace_fd < 0 && errno == EINVAL) /* a descriptor limit of 512 or less */
        p->trace_fd = fcntl(o->trace_fd, F_DUPFD_CLOEXEC, 3);
    if (o->trace_fd > 0 && p->trace_fd >= 0)
        close(o->trace_fd);
    if (p->trace_fd < 0) {
        free(p);
        return NULL;
    }
    /* Absolute: a chdir must not move the sysroot. */
    char *absolute_root = o->root ? realpath(o->root, NULL) : NULL;
    p->root = absolute_root ? absolute_root : o->root;
    p->exec_path = path;
    p->stack_top = 0x3ff000000000ull;
    p->next_map = BSD_MAP_START;
    atomic_init(&p->live_threads, 1);
    pthread_mutex_init(&p->kqueue_lock, NULL);
    return p;
}

int bsduser_run(const char *path, const struct bsduser_options *o, int argc, char **argv)
{
    extern char **environ;
    struct bsd_image img;
    int r = bsd_load(path, o, &img);

    if (r < 0)
        return r;
    /* Set once, here: no guest code, thread or signal handler yet. */
    bsd_proc = process_new(path, o, img.os);
    if (!bsd_proc)
        return err_set(ENOMEM, "bsd-user's state");
    build_tables(img.os);
    if (!bsd_proc->tracing)
        fill_direct_calls();
    const char *rewrite = getenv("SMOLVM_BSDUSER_REWRITE");
    bsd_rewrite_start(&img.code, !bsd_proc->tracing && !(rewrite && strcmp(rewrite, "0") == 0));
    uint64_t sp = bsd_stack(&img, path, argc, argv, environ);
    if (!sp)
        return err_set(errno, "the guest's stack");
    /* From here on every system call made outside smolvm's range (the
     * guest's) raises SIGSYS; ours, above, go through. */
    r = install();
    if (r < 0)
        return r;
    /* %rdi points at argc. FreeBSD's exec_setregs leaves %rsp 8 below a
     * 16-byte boundary, as after a call (its crt1 _start is C); NetBSD's
     * start code reads argc at %rsp itself. */
    uint64_t rsp = img.os == BSD_FREEBSD ? ((sp - 8) & ~15ull) + 8 : sp;
    __asm__ volatile("mov %0, %%rsp\n\t"
                     "xor %%esi, %%esi\n\t"
                     "xor %%edx, %%edx\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "jmp *%2\n\t"
                     :
                     : "a"(rsp), "D"(sp), "c"(img.start)
                     : "memory");
    __builtin_unreachable();
}
