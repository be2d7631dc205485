/* Calls answered on the guest's own %fs base: the C path's most frequent
 * ones (fstat, fstatat, open, openat, close, _umtx_op, sched_yield, NetBSD's
 * stat, lstat, _lwp_park and _lwp_unpark: about
 * 23000 of esbuild's 2000-module bundle), whose two %fs switches around
 * smolvm's C code (an arch_prctl system call each, the second a trapped MSR
 * write in a VM, on a CPU without FSGSBASE) cost more than the calls
 * themselves. bsd_direct_entry (threads.c) tries bsd_bare_call before it
 * switches to smolvm's %fs; a call this file declines (--root, a kqueue's
 * descriptor) goes on to the C path as before.
 *
 * So nothing here may touch smolvm's thread-local storage: system calls
 * are made by bare_syscall (-errno, no errno), guest memory is copied by
 * bsd_copy_guarded (no fault is being handled while a call is answered),
 * and meson.build builds this file without the stack protector (its
 * canary is at %fs:0x28), without the sanitizers and without calls to
 * libc's memset and memcpy the compiler could make up (an ASan build
 * intercepts them). tests/unit/test_bsduser's calls run here (the
 * rewritten sites in prog.c) with the guest's own thread pointer loaded.
 *
 * The same functions answer these calls on the C path too (one
 * implementation: put_stat's layouts, open's flags, _umtx_op's futexes,
 * the park tokens). */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "bsduser/freebsd_abi.h"
#include "bsduser/internal.h"
#include "bsduser/netbsd_abi.h"

bsd_handler_fn bsd_bare_calls[BSD_MAX_SYSCALL];

static long bare_syscall(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}

static bool in_guest(uint64_t at, size_t len)
{
    return at < BSDUSER_GUEST_LIMIT && len <= BSDUSER_GUEST_LIMIT - at;
}

static long copy_in(void *to, uint64_t from, size_t len)
{
    return in_guest(from, len) ? bsd_copy_guarded(to, (const void *)from, len) : -EFAULT;
}

static long copy_out(uint64_t to, const void *from, size_t len)
{
    return in_guest(to, len) ? bsd_copy_guarded((void *)to, from, len) : -EFAULT;
}

/* ---- struct stat ---- */

const struct bsd_stat_layout bsd_freebsd_stat = {224, 0, 8, 16, 24, 28, 32, 40, 48, 64, 80, 96,
                                                 112, 120, 128, 8, 2, 8, 8, 8};
const struct bsd_stat_layout bsd_freebsd11_stat = {120, 0, 4, 10, 8, 12, 16, 20, 24, 40, 56, 104,
                                                   72, 80, 88, 2, 2, 4, 4, 4};
const struct bsd_stat_layout bsd_netbsd_stat = {152, 0, 16, 24, 8, 28, 32, 40, 48, 64, 80, 96,
                                                112, 120, 128, 4, 4, 8, 8, 8};

const struct bsd_stat_layout *bsd_native_stat(void)
{
    return bsd_proc->os == BSD_NETBSD ? &bsd_netbsd_stat : &bsd_freebsd_stat;
}

/* The low width bytes of v (little-endian), byte by byte: no memcpy. */
static void put_uint(uint8_t *at, uint64_t v, size_t width)
{
    for (size_t i = 0; i < width; i++, v >>= 8)
        at[i] = (uint8_t)v;
}

static void put_time(uint8_t *at, const struct timespec *ts)
{
    put_uint(at, (uint64_t)ts->tv_sec, 8);
    put_uint(at + 8, (uint64_t)ts->tv_nsec, 8);
}

long bsd_put_stat(uint64_t to, const struct stat *st, const struct bsd_stat_layout *l)
{
    uint64_t words[224 / 8];
    uint8_t *b = (uint8_t *)words;
    __asm__ volatile("rep stosq" : "+D"(b), "=c"(b) : "a"(0), "c"(224 / 8) : "memory");
    b = (uint8_t *)words;
    put_uint(b + l->dev, st->st_dev, l->dev_width);
    put_uint(b + l->ino, st->st_ino, l->ino_width);
    put_uint(b + l->nlink, st->st_nlink, l->nlink_width);
    put_uint(b + l->mode, st->st_mode, l->mode_width);
    put_uint(b + l->uid, st->st_uid, 4);
    put_uint(b + l->gid, st->st_gid, 4);
    put_uint(b + l->rdev, st->st_rdev, l->rdev_width);
    put_time(b + l->atim, &st->st_atim);
    put_time(b + l->mtim, &st->st_mtim);
    put_time(b + l->ctim, &st->st_ctim);
    put_time(b + l->birth, &st->st_ctim); /* no birth time here: the change time */
    put_uint(b + l->bytes, (uint64_t)st->st_size, 8);
    put_uint(b + l->blocks, (uint64_t)st->st_blocks, 8);
    put_uint(b + l->blksize, (uint64_t)st->st_blksize, 4);
    return copy_out(to, b, l->size);
}

long bsd_fstat_as(long fd, uint64_t to, const struct bsd_stat_layout *l)
{
    struct stat st;
    long r = bare_syscall(SYS_fstat, (int)fd, (long)&st, 0, 0, 0, 0);
    return r < 0 ? r : bsd_put_stat(to, &st, l);
}

long bsd_fstatat_as(long dirfd, const char *path, long flags, uint64_t to,
                    const struct bsd_stat_layout *l)
{
    struct stat st;
    long r = bare_syscall(SYS_newfstatat, dirfd == FREEBSD_AT_FDCWD ? AT_FDCWD : (int)dirfd,
                          (long)path, (long)&st,
                          flags & FREEBSD_AT_SYMLINK_NOFOLLOW ? AT_SYMLINK_NOFOLLOW : 0, 0, 0);
    return r < 0 ? r : bsd_put_stat(to, &st, l);
}

/* ---- open ---- */

/* The open(2) flags as each BSD numbers them. */
#define OPEN_FLAGS(P)                                                                          \
    {                                                                                          \
        {P##_O_APPEND, O_APPEND}, {P##_O_CREAT, O_CREAT}, {P##_O_TRUNC, O_TRUNC},              \
            {P##_O_EXCL, O_EXCL}, {P##_O_NONBLOCK, O_NONBLOCK},                                \
            {P##_O_DIRECTORY, O_DIRECTORY}, {P##_O_CLOEXEC, O_CLOEXEC},                        \
            {P##_O_NOFOLLOW, O_NOFOLLOW}, {P##_O_SYNC, O_SYNC}, { P##_O_NOCTTY, O_NOCTTY }     \
    }

int bsd_open_flags(long bsd)
{
    static const struct {
        long bsd;
        int linux_;
    } freebsd[] = OPEN_FLAGS(FREEBSD), netbsd[] = OPEN_FLAGS(NETBSD);
    const __typeof__(freebsd[0]) *bits = bsd_proc->os == BSD_NETBSD ? netbsd : freebsd;
    int flags = (int)(bsd & 3); /* O_RDONLY, O_WRONLY, O_RDWR alike */
    for (size_t i = 0; i < sizeof(freebsd) / sizeof(freebsd[0]); i++)
        if (bsd & bits[i].bsd)
            flags |= bits[i].linux_;
    return flags;
}

long bsd_openat_as(long dirfd, const char *path, long flags, long mode)
{
    return bare_syscall(SYS_openat, dirfd == FREEBSD_AT_FDCWD ? AT_FDCWD : (int)dirfd, (long)path,
                        bsd_open_flags(flags), (mode_t)mode, 0, 0);
}

/* ---- _umtx_op on futexes (what runtimes use: wait and wake) ---- */

enum { UMTX_OP_WAIT = 2, UMTX_OP_WAKE = 3, UMTX_OP_WAIT_UINT = 11, UMTX_OP_WAIT_UINT_PRIVATE = 15,
       UMTX_OP_WAKE_PRIVATE = 16, UMTX_OP_NWAKE_PRIVATE = 21, UMTX_ABSTIME = 1 };

long bsd_futex_wait(uint64_t word, uint32_t expect, const struct timespec *ts, bool absolute,
                    bool realtime, bool private_)
{
    int op = (absolute ? FUTEX_WAIT_BITSET : FUTEX_WAIT) | (private_ ? FUTEX_PRIVATE_FLAG : 0) |
             (absolute && realtime ? FUTEX_CLOCK_REALTIME : 0);
    return bare_syscall(SYS_futex, (long)word, op, expect, (long)ts, 0, FUTEX_BITSET_MATCH_ANY);
}

static long futex_wake(uint64_t word, uint64_t count, bool private_)
{
    long r = bare_syscall(SYS_futex, (long)word, private_ ? FUTEX_WAKE_PRIVATE : FUTEX_WAKE,
                          count > INT32_MAX ? INT32_MAX : (long)count, 0, 0, 0);
    return r < 0 ? r : 0;
}

/* The wait's timeout: none, a relative timespec, or a struct _umtx_time
 * (timespec, flags, clock) which may be absolute. */
static long umtx_timeout(uint64_t size, uint64_t addr, struct timespec *ts, bool *absolute,
                         bool *realtime)
{
    struct {
        struct timespec timeout;
        uint32_t flags, clockid;
    } t;
    t.flags = t.clockid = 0;
    *absolute = *realtime = false;
    if (!addr)
        return 0;
    if (size > sizeof(t))
        size = sizeof(t);
    if (size < sizeof(struct timespec))
        size = sizeof(struct timespec);
    if (copy_in(&t, addr, size) < 0)
        return -EFAULT;
    if (t.timeout.tv_nsec < 0 || t.timeout.tv_nsec >= 1000000000 || t.timeout.tv_sec < 0)
        return -EINVAL;
    ts->tv_sec = t.timeout.tv_sec;
    ts->tv_nsec = t.timeout.tv_nsec;
    *absolute = t.flags & UMTX_ABSTIME;
    *realtime = t.clockid == FREEBSD_CLOCK_REALTIME;
    return 1;
}

static long umtx_wait(uint64_t obj, uint32_t expect, uint64_t size, uint64_t addr, bool private_)
{
    struct timespec ts;
    bool absolute, realtime;
    long has = umtx_timeout(size, addr, &ts, &absolute, &realtime);
    if (has < 0)
        return has;
    long r = bsd_futex_wait(obj, expect, has ? &ts : NULL, absolute, realtime, private_);
    /* A changed value is no error on FreeBSD: the wait just ends. */
    return r == -EAGAIN ? 0 : r;
}

long bsd_umtx_op(const long *a)
{
    uint64_t obj = (uint64_t)a[0], val = (uint64_t)a[2];
    uint32_t now;

    if (obj >= BSDUSER_GUEST_LIMIT || (obj & 3))
        return -EFAULT;
    switch (a[1]) {
    case UMTX_OP_WAIT: /* a long: compared whole, slept on its low half */
    {
        uint64_t word;
        if (copy_in(&word, obj, 8) < 0)
            return -EFAULT;
        if (word != val)
            return 0;
        return umtx_wait(obj, (uint32_t)val, (uint64_t)a[3], (uint64_t)a[4], false);
    }
    case UMTX_OP_WAIT_UINT:
    case UMTX_OP_WAIT_UINT_PRIVATE:
        if (copy_in(&now, obj, 4) < 0)
            return -EFAULT;
        return umtx_wait(obj, (uint32_t)val, (uint64_t)a[3], (uint64_t)a[4],
                         a[1] == UMTX_OP_WAIT_UINT_PRIVATE);
    case UMTX_OP_WAKE:
    case UMTX_OP_WAKE_PRIVATE:
        return futex_wake(obj, val, a[1] == UMTX_OP_WAKE_PRIVATE);
    case UMTX_OP_NWAKE_PRIVATE:
        for (uint64_t i = 0; i < val && i < 4096; i++) {
            uint64_t addr;
            if (copy_in(&addr, obj + 8 * i, 8) < 0)
                return -EFAULT;
            futex_wake(addr, INT32_MAX, true);
        }
        return 0;
    default:
        return -ENOSYS;
    }
}

long bsd_sched_yield(const long *a)
{
    (void)a;
    return bare_syscall(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
}

/* ---- NetBSD's park tokens: one futex word per LWP, found by its id ---- */

/* NetBSD's clocks (<time.h>) and _lwp_park's flag. */
enum { NETBSD_CLOCK_REALTIME = 0, NETBSD_TIMER_ABSTIME = 1 };

static atomic_uint *token_of(long id)
{
    for (unsigned i = 0; i < BSD_PARK_SLOTS; i++) {
        unsigned slot = (unsigned)((unsigned long)id + i) % BSD_PARK_SLOTS;
        long none = 0;
        if (atomic_load(&bsd_proc->parks[slot].id) == id ||
            atomic_compare_exchange_strong(&bsd_proc->parks[slot].id, &none, id) ||
            atomic_load(&bsd_proc->parks[slot].id) == id)
            return &bsd_proc->parks[slot].token;
    }
    return NULL;
}

static long unpark(long lwp)
{
    atomic_uint *t = token_of(lwp);
    if (!t)
        return -ENOMEM;
    atomic_store(t, 1);
    bare_syscall(SYS_futex, (long)t, FUTEX_WAKE, 1, 0, 0, 0);
    return 0;
}

/* ___lwp_park60(clock, flags, ts, unpark, hint, unparkhint): wakes unpark
 * first, then takes this LWP's token, sleeping for it until ts. */
long bsd_lwp_park60(const long *a)
{
    struct timespec ts;
    atomic_uint *t = token_of(bare_syscall(SYS_gettid, 0, 0, 0, 0, 0, 0) + BSD_TID_BASE);

    if (!t)
        return -ENOMEM;
    if (a[2] && copy_in(&ts, (uint64_t)a[2], sizeof(ts)) < 0)
        return -EFAULT;
    if (a[3])
        unpark(a[3]);
    if (atomic_exchange(t, 0))
        return 0;
    long r = bsd_futex_wait((uint64_t)t, 0, a[2] ? &ts : NULL, a[1] & NETBSD_TIMER_ABSTIME,
                            a[0] == NETBSD_CLOCK_REALTIME, false);
    if (atomic_exchange(t, 0))
        return 0;
    return r == -ETIMEDOUT || r == -EINTR ? r : 0;
}

long bsd_lwp_unpark(const long *a)
{
    return unpark(a[0]);
}

/* ---- the calls answered here, or declined ---- */

/* Paths are the guest's pointers, given to the kernel as they are (it
 * says EFAULT), unless --root looks them up: that is the C path's. */
long bsd_bare_fstat(const long *a) { return bsd_fstat_as(a[0], (uint64_t)a[1], bsd_native_stat()); }

long bsd_bare_fstatat(const long *a)
{
    return bsd_proc->root ? BSD_DECLINE
                          : bsd_fstatat_as(a[0], (const char *)a[1], a[3], (uint64_t)a[2],
                                           bsd_native_stat());
}

/* stat(path, sb) and, not following a last link, lstat (NetBSD's). */
long bsd_bare_stat(const long *a)
{
    return bsd_proc->root ? BSD_DECLINE
                          : bsd_fstatat_as(FREEBSD_AT_FDCWD, (const char *)a[0], 0, (uint64_t)a[1],
                                           bsd_native_stat());
}

long bsd_bare_lstat(const long *a)
{
    return bsd_proc->root ? BSD_DECLINE
                          : bsd_fstatat_as(FREEBSD_AT_FDCWD, (const char *)a[0],
                                           FREEBSD_AT_SYMLINK_NOFOLLOW, (uint64_t)a[1],
                                           bsd_native_stat());
}

long bsd_bare_open(const long *a)
{
    return bsd_proc->root ? BSD_DECLINE
                          : bsd_openat_as(FREEBSD_AT_FDCWD, (const char *)a[0], a[1], a[2]);
}

long bsd_bare_openat(const long *a)
{
    return bsd_proc->root ? BSD_DECLINE : bsd_openat_as(a[0], (const char *)a[1], a[2], a[3]);
}

/* A kqueue's descriptor has smolvm's state to drop (under a lock): the C
 * path closes it. (Any of ours, -o FILE's, is there only under --strace,
 * when nothing is answered here.) */
long bsd_bare_close(const long *a)
{
    int fd = (int)a[0];
    if (fd >= 0 && fd < BSD_MAX_KQUEUES && __atomic_load_n(&bsd_proc->queues[fd], __ATOMIC_ACQUIRE))
        return BSD_DECLINE;
    return bare_syscall(SYS_close, fd, 0, 0, 0, 0, 0);
}

/* The call in the thread's direct_uc, answered into it (result, or BSD
 * errno and carry); false: declined, or not one of these. */
bool bsd_bare_call(void)
{
    /* (on the alternate stack: the block is at its aligned bottom) */
    struct bsd_thread *t = (struct bsd_thread *)((uintptr_t)__builtin_frame_address(0) &
                                                 ~(uintptr_t)(BSD_ALT_STACK_SIZE - 1));
    greg_t *g = t->direct_uc.uc_mcontext.gregs;
    uint64_t number = (uint64_t)g[REG_RAX];
    bsd_handler_fn fn = number < BSD_MAX_SYSCALL ? bsd_bare_calls[number] : NULL;
    if (!fn)
        return false;
    long a[6] = {g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9]};
    long r = fn(a);
    if (r == BSD_DECLINE)
        return false;
    if (r < 0 && r > -4096) {
        g[REG_RAX] = -r < 200 ? bsd_direct_errno[-r] : bsd_direct_errno[ENOSYS];
        g[REG_EFL] |= 1; /* carry: an error */
    } else {
        g[REG_RAX] = r;
        g[REG_EFL] &= ~1ll;
    }
    return true;
}
