/* A freestanding FreeBSD (or NetBSD) program for the bsd-user tests: no
 * libc, raw system calls by the BSD's numbers. argv[1] picks what it does;
 * the exit status says what it saw. Built by the tests with
 *   clang --target=x86_64-unknown-freebsd13 -ffreestanding -nostdlib -static -fuse-ld=lld */
#ifdef NETBSD
#define SYS_MMAP 197
/* NetBSD recognises its binaries by this note. */
__asm__(".section .note.netbsd.ident, \"a\"\n.p2align 2\n.long 7, 4, 1\n"
        ".asciz \"NetBSD\"\n.p2align 2\n.long 1000000000\n.text\n");
#else
#define SYS_MMAP 477
#endif
#define SYS_EXIT 1
#define SYS_READ 3
#define SYS_WRITE 4
#define SYS_OPEN 5
#define SYS_CLOSE 6
#define SYS_GETPID 20
#define SYS_MUNMAP 73
#define SYS_SYSCTL 202

typedef unsigned long size_t;

struct ret {
    long value;
    int failed; /* the carry flag: value is a BSD errno */
};

static struct ret sys6(long n, long a, long b, long c, long d, long e, long f)
{
    struct ret r;
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    unsigned char carry;
    __asm__ volatile("syscall; setc %1"
                     : "=a"(r.value), "=r"(carry), "+r"(r10), "+r"(r8), "+r"(r9)
                     : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    r.failed = carry;
    return r;
}

#define sys(...) sys6_n(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)
#define sys6_n(n, a, b, c, d, e, f, ...) sys6((long)(n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

static size_t len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static void say(const char *s)
{
    sys(SYS_WRITE, 1, s, len(s));
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

__attribute__((noreturn)) static void leave(long code)
{
    sys(SYS_EXIT, code);
    for (;;)
        ;
}

static int files(void)
{
    char buf[16];
    struct ret fd = sys(SYS_OPEN, "bsd-file", 0x200 | 0x400 | 1, 0644); /* O_CREAT|O_TRUNC|O_WRONLY */
    if (fd.failed || sys(SYS_WRITE, fd.value, "written", 7).value != 7)
        return 1;
    sys(SYS_CLOSE, fd.value);
    fd = sys(SYS_OPEN, "bsd-file", 0, 0);
    if (fd.failed || sys(SYS_READ, fd.value, buf, 16).value != 7 || buf[0] != 'w' || buf[6] != 'n')
        return 2;
    return 0;
}

#define SYS_UNLINK 10
#define SYS_DUP2 90
#define SYS_FCNTL 92
#define SYS_MKDIR 136
#define SYS_RMDIR 137
#define SYS_PIPE2 542
#define SYS_GETDIRENTRIES 554

/* Directories through getdirentries, a pipe, dup2, fcntl. */
static int dirs(void)
{
    char buf[4096];
    long base = 0;
    int seen = 0, fds[2];
    if (sys(SYS_MKDIR, "bsd-dir", 0755).failed)
        return 1;
    sys(SYS_CLOSE, sys(SYS_OPEN, "bsd-dir/a", 0x200 | 1, 0644).value);
    sys(SYS_CLOSE, sys(SYS_OPEN, "bsd-dir/bb", 0x200 | 1, 0644).value);
    struct ret d = sys(SYS_OPEN, "bsd-dir", 0x20000, 0); /* O_DIRECTORY */
    struct ret n = sys(SYS_GETDIRENTRIES, d.value, buf, sizeof(buf), &base);
    if (d.failed || n.failed)
        return 2;
    for (long at = 0; at < n.value;) {
        unsigned short reclen = *(unsigned short *)(buf + at + 16);
        const char *name = buf + at + 24;
        seen += same(name, "a") + 2 * same(name, "bb");
        if (!reclen)
            return 3;
        at += reclen;
    }
    sys(SYS_CLOSE, d.value);
    if (seen != 3 || sys(SYS_UNLINK, "bsd-dir/a").failed || sys(SYS_UNLINK, "bsd-dir/bb").failed ||
        sys(SYS_RMDIR, "bsd-dir").failed)
        return 4;
    if (sys(SYS_PIPE2, fds, 0).failed || sys(SYS_WRITE, fds[1], "p", 1).value != 1 ||
        sys(SYS_READ, fds[0], buf, 1).value != 1 || buf[0] != 'p')
        return 5;
    if (sys(SYS_DUP2, fds[1], 20).value != 20 || sys(SYS_FCNTL, 20, 3, 0).value != 1) /* O_WRONLY */
        return 6;
#ifndef NETBSD
    /* F_DUP2FD (10) and F_DUP2FD_CLOEXEC (18), as Go's forked child moves
     * descriptors; F_GETFD (1) shows close-on-exec; onto itself, the flag
     * is set all the same. */
    if (sys(SYS_FCNTL, fds[1], 10, 21).value != 21 || sys(SYS_FCNTL, 21, 1, 0).value != 0 ||
        sys(SYS_FCNTL, fds[1], 18, 22).value != 22 || sys(SYS_FCNTL, 22, 1, 0).value != 1 ||
        sys(SYS_FCNTL, 21, 18, 21).value != 21 || sys(SYS_FCNTL, 21, 1, 0).value != 1 ||
        sys(SYS_WRITE, 22, "q", 1).value != 1 || sys(SYS_READ, fds[0], buf, 1).value != 1 ||
        buf[0] != 'q')
        return 7;
    struct ret bad = sys(SYS_FCNTL, 12345, 18, 23);
    if (!bad.failed || bad.value != 9) /* EBADF */
        return 8;
#endif
    return 0;
}

static int errors(void)
{
    struct ret r = sys(SYS_OPEN, "/no/such/file", 0, 0);
    if (!r.failed || r.value != 2) /* ENOENT */
        return 1;
    r = sys(SYS_READ, 12345, 0, 0);
    if (!r.failed || r.value != 9) /* EBADF */
        return 2;
    r = sys(26, 0, 0, 0, 0); /* ptrace: not supported here */
    if (!r.failed || r.value != 78) /* ENOSYS */
        return 3;
    r = sys(SYS_GETPID);
    if (r.failed || r.value <= 0)
        return 4;
    /* Bad pointers the C path reads and writes: nothing there, read-only
     * (this function's code), smolvm's range: EFAULT, nothing else. */
#ifdef NETBSD
    const long sigprocmask_ = 293; /* __sigprocmask14 */
#else
    const long sigprocmask_ = 340;
#endif
    const long bad[] = {16, (long)errors, 0x7f0000000000};
    for (int i = 0; i < 3; i++) {
        r = sys(sigprocmask_, 1 /* SIG_BLOCK */, 0, bad[i]);
        if (!r.failed || r.value != 14)
            return 5;
        r = sys(sigprocmask_, 1, i == 1 ? 0 : bad[i], 0);
        if (i != 1 && (!r.failed || r.value != 14))
            return 6;
    }
    return 0;
}

static int memory(void)
{
    struct ret r = sys(SYS_MMAP, 0, 1 << 20, 3, 0x1000 | 2, -1, 0); /* RW, MAP_ANON|MAP_PRIVATE */
    if (r.failed)
        return 1;
    char *p = (char *)r.value;
    p[0] = 1;
    p[(1 << 20) - 1] = 2;
    if ((unsigned long)p >= 0x500000000000ul)
        return 2;
    return sys(SYS_MUNMAP, p, 1 << 20).failed ? 3 : 0;
}

static int sysctl(void)
{
    int mib[2] = {1, 1}; /* kern.ostype */
    char name[16];
    size_t size = sizeof(name);
    if (sys(SYS_SYSCTL, mib, 2, name, &size, 0, 0).failed || !same(name, "FreeBSD"))
        return 1;
    int ncpu = 0;
    mib[0] = 6, mib[1] = 3; /* hw.ncpu */
    size = sizeof(ncpu);
    if (sys(SYS_SYSCTL, mib, 2, &ncpu, &size, 0, 0).failed || ncpu < 1)
        return 2;
    return 0;
}

#define SYS_GETRLIMIT 194
#define SYS_SYSARCH 165
#define SYS_THR_SELF 432
#define SYS_THR_EXIT 431
#define SYS_UMTX_OP 454
#define SYS_THR_NEW 455
#define SYS_CPUSET_GETAFFINITY 487
#define AMD64_SET_FSBASE 129
#define UMTX_OP_WAIT 2
#define UMTX_OP_WAIT_UINT_PRIVATE 15
#define THREADS 4

struct thr_param {
    void (*start)(void *);
    void *arg;
    char *stack_base;
    size_t stack_size;
    char *tls_base;
    size_t tls_size;
    long *child_tid, *parent_tid;
    int flags;
    void *rtp, *spare[3];
};

static char stacks[THREADS][16384] __attribute__((aligned(16)));
static long tls_blocks[THREADS][2];  /* %fs:0 of each thread: its number */
static long exited[THREADS], tids[THREADS];
static volatile long sum;

static long fs0(void)
{
    long v;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(v));
    return v;
}

/* Each thread adds its own TLS value (1..THREADS) and ends; thr_exit sets
 * and wakes its exit word. */
static void worker(void *arg)
{
    long *done = arg;
    __atomic_fetch_add(&sum, fs0(), __ATOMIC_SEQ_CST);
    sys(SYS_THR_EXIT, done);
    for (;;)
        ;
}

/* TLS through sysarch, threads through thr_new, waits through _umtx_op. */
#define SYS_RTPRIO 166

static int threads(void)
{
    long mine[1] = {42}, *fs = mine;
    if (sys(SYS_SYSARCH, AMD64_SET_FSBASE, &fs).failed || fs0() != 42)
        return 1;
    for (int i = 0; i < THREADS; i++) {
        tls_blocks[i][0] = i + 1;
        struct thr_param p = {worker, &exited[i], stacks[i], sizeof(stacks[i]),
                              (char *)tls_blocks[i], 16, &tids[i], &tids[i], 0, 0, {0}};
        if (sys(SYS_THR_NEW, &p, sizeof(p)).failed || tids[i] <= 100000)
            return 2;
    }
    for (int i = 0; i < THREADS; i++)
        while (__atomic_load_n(&exited[i], __ATOMIC_SEQ_CST) == 0)
            sys(SYS_UMTX_OP, &exited[i], UMTX_OP_WAIT, 0, 0, 0);
    if (sum != THREADS * (THREADS + 1) / 2 || fs0() != 42)
        return 3; /* each saw its own TLS, and ours is intact */
    long self = 0;
    if (sys(SYS_THR_SELF, &self).failed || self <= 100000)
        return 4;
    unsigned word = 0;
    struct { long sec, nsec; } timeout = {0, 1000000};
    struct ret r = sys(SYS_UMTX_OP, &word, UMTX_OP_WAIT_UINT_PRIVATE, 0, sizeof(timeout), &timeout);
    if (!r.failed || r.value != 60) /* ETIMEDOUT */
        return 5;
    r = sys(SYS_UMTX_OP, &word, UMTX_OP_WAIT_UINT_PRIVATE, 1, 0, 0);
    if (r.failed) /* the value differs: no wait, no error */
        return 6;
    unsigned long mask[2] = {0, 0}, limit[2] = {0, 0};
    if (sys(SYS_CPUSET_GETAFFINITY, 3, 2, -1, sizeof(mask), mask).failed || !(mask[0] & 1))
        return 7;
    if (sys(SYS_GETRLIMIT, 8, limit).failed || limit[0] == 0 || limit[1] < limit[0])
        return 8; /* RLIMIT_NOFILE */
    unsigned short rtp[2] = {0xffff, 0xffff}, realtime[2] = {2, 10}; /* RTP_PRIO_REALTIME */
    if (sys(SYS_RTPRIO, 0, 0, rtp).failed || rtp[0] != 3 || rtp[1] != 0) /* normal, 0 */
        return 9;
    r = sys(SYS_RTPRIO, 1, 0, realtime);
    if (!r.failed || r.value != 1 || sys(SYS_RTPRIO, 1, 0, rtp).failed) /* EPERM; normal: fine */
        return 10;
    return 0;
}

#define SYS_KQUEUE 362
#define SYS_KEVENT 560
#define EVFILT_READ (-1)
#define EVFILT_TIMER (-7)
#define EVFILT_USER (-11)
#define EV_ADD 0x1
#define EV_DELETE 0x2
#define EV_ONESHOT 0x10
#define EV_CLEAR 0x20
#define EV_ERROR 0x4000
#define NOTE_TRIGGER 0x1000000

struct kevent {
    unsigned long ident;
    short filter;
    unsigned short flags;
    unsigned fflags;
    long data;
    void *udata;
    unsigned long ext[4];
};

static struct kevent kev(unsigned long ident, short filter, unsigned short flags, unsigned fflags,
                         long data, void *udata)
{
    struct kevent k = {ident, filter, flags, fflags, data, udata, {0, 0, 0, 0}};
    return k;
}

/* kevent(kq, one change or none, room for one event, timeout in ms): the
 * count of events; *out the event. */
static long one(long kq, struct kevent *change, struct kevent *out, long ms)
{
    struct { long sec, nsec; } t = {ms / 1000, (ms % 1000) * 1000000};
    struct ret r = sys(SYS_KEVENT, kq, change, change ? 1 : 0, out, out ? 1 : 0, &t);
    return r.failed ? -r.value : r.value;
}

/* A pipe, a user event and a timer through one kqueue; errors in the list. */
static int kqueue(void)
{
    int fds[2];
    struct kevent got, c;
    long kq = sys(SYS_KQUEUE).value;
    if (kq < 0 || sys(SYS_PIPE2, fds, 0).failed)
        return 1;
    c = kev((unsigned long)fds[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, (void *)0x1234);
    if (one(kq, &c, 0, 0) != 0 || one(kq, 0, &got, 10) != 0)
        return 2; /* registered; nothing to read yet: a timeout */
    sys(SYS_WRITE, fds[1], "xyz", 3);
    if (one(kq, 0, &got, 1000) != 1 || got.ident != (unsigned long)fds[0] ||
        got.filter != EVFILT_READ || got.data != 3 || got.udata != (void *)0x1234)
        return 3;
    if (one(kq, 0, &got, 10) != 0)
        return 4; /* EV_CLEAR: said once */
    c = kev(7, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, 0);
    struct kevent trigger = kev(7, EVFILT_USER, 0, NOTE_TRIGGER, 0, 0);
    if (one(kq, &c, 0, 0) != 0 || one(kq, &trigger, 0, 0) != 0 ||
        one(kq, 0, &got, 1000) != 1 || got.ident != 7 || got.filter != EVFILT_USER)
        return 5;
    c = kev(9, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 5, 0);
    if (one(kq, &c, 0, 0) != 0 || one(kq, 0, &got, 1000) != 1 || got.filter != EVFILT_TIMER ||
        got.ident != 9 || got.data != 1)
        return 6;
    c = kev(999, EVFILT_READ, EV_ADD, 0, 0, 0);
    if (one(kq, &c, &got, 0) != 1 || !(got.flags & EV_ERROR) || got.data != 9) /* EBADF */
        return 7;
    if (one(kq, &c, 0, 0) != -9)
        return 8; /* no room for the error: the call fails */
    c = kev((unsigned long)fds[0], EVFILT_READ, EV_DELETE, 0, 0, 0);
    sys(SYS_WRITE, fds[1], "more", 4);
    if (one(kq, &c, 0, 0) != 0 || one(kq, 0, &got, 10) != 0)
        return 9; /* deleted: nothing more */
    return sys(SYS_CLOSE, kq).failed ? 10 : 0;
}

#define SYS_KILL 37
#define SYS_SIGPROCMASK 340
#define SYS_SIGPENDING 343
#define SYS_SIGACTION 416
#define SIGSEGV_ 11
#define SIGUSR1_ 30
#define SA_SIGINFO_ 0x40
/* FreeBSD's ucontext_t: the mcontext at 16; its rax at 56, rip at 160,
 * rsp at 184 (from there). */
#define UC_RAX (16 + 56)
#define UC_RIP (16 + 160)
#define UC_RSP (16 + 184)

struct sigaction_ {
    void (*handler)(int, void *, void *);
    int flags;
    unsigned mask[4];
};

static volatile int usr1_seen, usr1_good, segv_good;

static void on_usr1(int sig, void *info, void *uc)
{
    long rip = *(long *)((char *)uc + UC_RIP);
    usr1_seen++;
    usr1_good = sig == SIGUSR1_ && *(int *)info == SIGUSR1_ && rip > 0 && rip < 0x500000000000l;
    *(long *)((char *)uc + UC_RAX) = 77; /* what the interrupted kill() returns */
}

static void resumed(void);

/* A fault: its address comes in the siginfo, and the handler sends the
 * program on elsewhere by changing the context. */
static void on_segv(int sig, void *info, void *uc)
{
    segv_good = sig == SIGSEGV_ && *(void **)((char *)info + 24) == (void *)16;
    *(long *)((char *)uc + UC_RIP) = (long)resumed;
    *(long *)((char *)uc + UC_RSP) = (*(long *)((char *)uc + UC_RSP) & ~15l) - 8;
}

static void resumed(void)
{
    leave(segv_good ? 0 : 9);
}

/* Handlers with siginfo and a ucontext, sigreturn from a changed context,
 * masking with the signal kept pending, a fault handled. */
static int signals(void)
{
    struct sigaction_ act = {on_usr1, SA_SIGINFO_, {0, 0, 0, 0}}, old = {0, 0, {0, 0, 0, 0}};
    long pid = sys(SYS_GETPID).value;
    if (sys(SYS_SIGACTION, SIGUSR1_, &act, &old).failed || old.handler)
        return 1;
    struct ret r = sys(SYS_KILL, pid, SIGUSR1_);
    if (usr1_seen != 1 || !usr1_good)
        return 2;
    if (r.failed || r.value != 77)
        return 3; /* the handler's change to the context came back */
    unsigned set[4] = {1u << (SIGUSR1_ - 1), 0, 0, 0}, pend[4] = {0, 0, 0, 0};
    sys(SYS_SIGPROCMASK, 1 /* SIG_BLOCK */, set, 0);
    sys(SYS_KILL, pid, SIGUSR1_);
    if (usr1_seen != 1 || sys(SYS_SIGPENDING, pend).failed || !(pend[0] & set[0]))
        return 4; /* masked: pending, not delivered */
    sys(SYS_SIGPROCMASK, 2 /* SIG_UNBLOCK */, set, 0);
    if (usr1_seen != 2)
        return 5; /* unmasked: delivered */
    struct sigaction_ segv = {on_segv, SA_SIGINFO_, {0, 0, 0, 0}};
    if (sys(SYS_SIGACTION, SIGSEGV_, &segv, 0).failed)
        return 6;
    *(volatile int *)16 = 1;
    return 7; /* not reached: the handler sent us to resumed() */
}

#define SYS_THR_KILL 433
#define STORM_SIGNALS 20000

static volatile long storm_seen, storm_sent;
static long storm_target, storm_tls[2];
static char storm_stack[16384] __attribute__((aligned(16)));

static void storm_on_usr1(int sig, void *info, void *uc)
{
    (void)sig, (void)info, (void)uc;
    storm_seen++;
}

static void storm_sender(void *arg)
{
    for (int i = 0; i < STORM_SIGNALS; i++)
        sys(SYS_THR_KILL, storm_target, SIGUSR1_);
    sys(SYS_THR_EXIT, arg);
}

/* Signals sent from another thread as fast as it can: many arrive while
 * the handler's sigreturn is being answered, and each return must still
 * land where the signal interrupted the program. With calls, the program
 * makes system calls meanwhile, on a TLS of its own: many signals arrive
 * while a call's answer is going back (its %fs already the program's),
 * and after each call %fs must still be the program's. */
static int storm(int calls)
{
    struct sigaction_ act = {storm_on_usr1, SA_SIGINFO_, {0, 0, 0, 0}};
    long mine[1] = {42}, *fs = mine;
    if (sys(SYS_SIGACTION, SIGUSR1_, &act, 0).failed || sys(SYS_THR_SELF, &storm_target).failed ||
        sys(SYS_SYSARCH, AMD64_SET_FSBASE, &fs).failed)
        return 1;
    long tid = 0;
    struct thr_param p = {storm_sender, (long *)&storm_sent, storm_stack, sizeof(storm_stack),
                          (char *)storm_tls, 16, &tid, &tid, 0, 0, {0}};
    if (sys(SYS_THR_NEW, &p, sizeof(p)).failed)
        return 2;
    long old[2];
    while (__atomic_load_n(&storm_sent, __ATOMIC_SEQ_CST) == 0)
        if (calls && (sys(SYS_GETPID).failed || fs0() != 42 ||
                      sys(SYS_SIGPROCMASK, 1 /* SIG_BLOCK */, 0, old).failed || fs0() != 42))
            return 4; /* guest code interrupted over and over */
    return storm_seen > 0 ? 0 : 3;
}

#define SYS_FORK 2
#define SYS_WAIT4 7
#define SYS_EXECVE 59

/* fork: the child exits 3, the parent's wait4 sees it; fork again and
 * execve this very program (a BSD one: it stays under bsd-user, exit 7),
 * and a host program (exit status 5); a missing one: ENOENT. */
#define EVFILT_SIGNAL (-6)
#define SIG_IGN_ ((void (*)(int, void *, void *))1)

/* EVFILT_SIGNAL: a signal the program ignores is still counted, twice
 * sent, one event with data 2; a deleted note counts nothing more. */
static int kqueue_signals(void)
{
    struct sigaction_ ignore = {SIG_IGN_, 0, {0, 0, 0, 0}};
    struct kevent got, c = kev(SIGUSR1_, EVFILT_SIGNAL, EV_ADD, 0, 0, (void *)0x55);
    long kq = sys(SYS_KQUEUE).value, pid = sys(SYS_GETPID).value;
    if (kq < 0 || sys(SYS_SIGACTION, SIGUSR1_, &ignore, 0).failed || one(kq, &c, 0, 0) != 0)
        return 1;
    if (sys(SYS_KILL, pid, SIGUSR1_).failed || sys(SYS_KILL, pid, SIGUSR1_).failed)
        return 2;
    if (one(kq, 0, &got, 1000) != 1 || got.ident != SIGUSR1_ || got.filter != EVFILT_SIGNAL ||
        got.data != 2 || got.udata != (void *)0x55)
        return 3;
    if (one(kq, 0, &got, 10) != 0)
        return 4; /* counted since the last report: nothing new */
    c.flags = EV_DELETE;
    if (one(kq, &c, 0, 0) != 0 || sys(SYS_KILL, pid, SIGUSR1_).failed || one(kq, 0, &got, 10) != 0)
        return 5;
    return sys(SYS_CLOSE, kq).failed ? 6 : 0;
}

#ifndef NETBSD
#define SYS_NANOSLEEP 240

static volatile int interrupt_seen;
static void on_interrupt(int sig, void *info, void *uc)
{
    (void)sig, (void)info, (void)uc;
    interrupt_seen++;
}

/* A read blocked in the kernel, interrupted by a signal from a child: it
 * fails with EINTR, and the handler has run by the time it comes back
 * (nothing else is called in between that could deliver it later). The
 * same read has been made once before (a byte was there), so its site is
 * rewritten by then: the blocked read is a direct one. */
static int interrupted_read(void)
{
    int fds[2];
    char c;
    struct sigaction_ act = {on_interrupt, SA_SIGINFO_, {0, 0, 0, 0}};
    long parent = sys(SYS_GETPID).value;
    if (sys(SYS_SIGACTION, SIGUSR1_, &act, 0).failed || sys(SYS_PIPE2, fds, 0).failed ||
        sys(SYS_WRITE, fds[1], "w", 1).value != 1)
        return 1;
    long child = sys(SYS_FORK).value;
    if (child == 0) {
        long pause[2] = {0, 300000000};
        sys(SYS_NANOSLEEP, pause, 0);
        leave(sys(SYS_KILL, parent, SIGUSR1_).failed);
    }
    struct ret r;
#pragma clang loop unroll(disable)
    for (int warm = 1; warm >= 0; warm--) {
        r = sys(SYS_READ, fds[0], &c, 1);
        if (warm && (r.failed || c != 'w'))
            return 5;
    }
    int seen = interrupt_seen;
    if (child < 0 || sys(SYS_WAIT4, child, 0, 0, 0).value != child)
        return 2;
    if (!r.failed || r.value != 4 /* EINTR */)
        return 3;
    return seen == 1 ? 0 : 4;
}

#define SYS_CLOCK_GETTIME 232

/* Calls the signal entry answers itself: clock ids mapped (FreeBSD's
 * CLOCK_MONOTONIC is 4), results, BSD errnos and the carry flag as the C
 * path gives them; an id it does not map goes by the C path (realtime). */
static int direct_calls(void)
{
    long t1[2], t2[2], wall[2], other[2], nap[2] = {0, 1000000};
    char c;
    if (sys(SYS_CLOCK_GETTIME, 4, t1).failed || sys(SYS_NANOSLEEP, nap, 0).failed ||
        sys(SYS_CLOCK_GETTIME, 4, t2).failed)
        return 1;
    if (t2[0] * 1000000000 + t2[1] < t1[0] * 1000000000 + t1[1] + 1000000 || t2[1] >= 1000000000)
        return 2; /* monotonic, and the nap was slept */
    if (sys(SYS_CLOCK_GETTIME, 0, wall).failed || wall[0] < 1600000000 || t1[0] >= wall[0] ||
        sys(SYS_CLOCK_GETTIME, 99, other).failed || other[0] < wall[0])
        return 3;
    struct ret bad = sys(SYS_CLOCK_GETTIME, 4, 16);
    if (!bad.failed || bad.value != 14) /* EFAULT */
        return 4;
    bad = sys(SYS_READ, 12345, &c, 1);
    if (!bad.failed || bad.value != 9) /* EBADF */
        return 5;
    bad = sys(SYS_NANOSLEEP, 16, 0);
    if (!bad.failed || bad.value != 14)
        return 6;
    return 0;
}
#endif

/* Rewritten call sites: a loop's calls (their sites rewritten after the
 * first), and a site whose instruction before the syscall a jump lands
 * inside (so it must stay as it is: entered there, a rewritten site would
 * run the middle of its jump). All answer getpid every time. */
long jump_in(long middle);
__asm__(".text\n"
        ".globl jump_in\n"
        ".type jump_in, @function\n"
        "jump_in:\n"
        "    mov $20, %eax\n" /* SYS_GETPID */
        "    test %rdi, %rdi\n"
        "    jz .Lwhole\n"
        "    jmp .Lwhole+1\n"
        /* mov $0x9090d231, %ecx; one byte in: xor %edx, %edx; nop; nop */
        ".Lwhole: .byte 0xb9, 0x31, 0xd2, 0x90, 0x90\n"
        "    syscall\n"
        "    ret\n"
        ".size jump_in, .-jump_in\n"
        /* The same, the jump inside made by another function (as a
         * compiler's split-off cold part jumps back into its parent). */
        ".globl jump_far\n"
        ".type jump_far, @function\n"
        "jump_far:\n"
        "    mov $20, %eax\n"
        ".Lfar: .byte 0xb9, 0x31, 0xd2, 0x90, 0x90\n"
        "    syscall\n"
        "    ret\n"
        ".size jump_far, .-jump_far\n"
        ".globl jump_far_middle\n"
        ".type jump_far_middle, @function\n"
        "jump_far_middle:\n"
        "    mov $20, %eax\n"
        "    jmp .Lfar+1\n"
        ".size jump_far_middle, .-jump_far_middle\n");
long jump_far(void);
long jump_far_middle(void);

static int rewritten(long calls)
{
    long pid = sys(SYS_GETPID).value;
#ifdef NETBSD
    const long sigprocmask_ = 293; /* __sigprocmask14 */
#else
    const long sigprocmask_ = 340;
#endif
    unsigned long usr2[2] = {1ul << 30, 0}, old[2] = {0, 0}; /* SIGUSR2 (31), blocked */
#pragma clang loop unroll(disable)
    for (long i = 0; i < calls; i++) {
        if (sys(SYS_GETPID).value != pid)
            return 1;
        /* One the C path answers (without a signal once rewritten). */
        struct ret r = sys(sigprocmask_, 1 /* SIG_BLOCK */, usr2, old);
        if (r.failed || r.value != 0 || (i > 0 && old[0] != 1ul << 30))
            return 3;
    }
    for (long i = 0; i < calls; i++)
        if (jump_in(i & 1) != pid || (i & 1 ? jump_far_middle() : jump_far()) != pid)
            return 2;
    /* clock_gettime from a rewritten site (the vDSO's): monotonic, and a
     * bad pointer is EFAULT. */
#ifdef NETBSD
    const long clock_gettime_ = 427, monotonic = 3; /* __clock_gettime50 */
#else
    const long clock_gettime_ = 232, monotonic = 4;
#endif
    long ts[3][2] = {{0, 0}, {0, 0}, {0, 0}};
#pragma clang loop unroll(disable)
    for (long i = 0; i < 4; i++) {
        struct ret r = sys(clock_gettime_, monotonic, i < 3 ? (long)ts[i] : 16);
        if (i < 3 && (r.failed || r.value != 0 || ts[i][1] >= 1000000000 ||
                      (i > 0 && ts[i][0] * 1000000000 + ts[i][1] < ts[i - 1][0] * 1000000000 + ts[i - 1][1])))
            return 5;
        if (i == 3 && (!r.failed || r.value != 14))
            return 6;
    }
    /* A syscall keeps the vector registers, the C path's answer too. */
#pragma clang loop unroll(disable)
    for (long i = 0; i < 3; i++) {
        unsigned long kept[2], n = sigprocmask_;
        __asm__ volatile("movq %3, %%xmm0\n\t"
                         "movq %3, %%xmm1\n\t"
                         "syscall\n\t"
                         "movq %%xmm0, %1\n\t"
                         "movq %%xmm1, %2"
                         : "+a"(n), "=r"(kept[0]), "=r"(kept[1])
                         : "r"(0x1122334455667788ul + i), "D"(1), "S"(usr2), "d"(old)
                         : "rcx", "r11", "xmm0", "xmm1", "memory");
        if (kept[0] != 0x1122334455667788ul + i || kept[1] != kept[0])
            return 4;
    }
    return 0;
}

static int processes(char *self)
{
    int status = 0;
    long child = sys(SYS_FORK).value;
    if (child == 0)
        leave(3);
    if (child < 0 || sys(SYS_WAIT4, child, &status, 0, 0).value != child || status != (3 << 8))
        return 1;
    char *hello[] = {self, "hello", 0}, *env[] = {0};
    if ((child = sys(SYS_FORK).value) == 0)
        leave(sys(SYS_EXECVE, self, hello, env).value + 100);
    if (sys(SYS_WAIT4, child, &status, 0, 0).value != child || status != (7 << 8))
        return 2;
    char *sh[] = {"/bin/sh", "-c", "exit 5", 0};
    if ((child = sys(SYS_FORK).value) == 0)
        leave(sys(SYS_EXECVE, "/bin/sh", sh, env).value + 100);
    if (sys(SYS_WAIT4, child, &status, 0, 0).value != child || status != (5 << 8))
        return 3;
    struct ret r = sys(SYS_EXECVE, "/no/such/program", sh, env);
    if (!r.failed || r.value != 2)
        return 4;
    r = sys(SYS_WAIT4, -1, &status, 1 /* WNOHANG */, 0);
    if (!r.failed || r.value != 10) /* ECHILD */
        return 5;
    return 0;
}

#define SYS_RECVMSG 27
#define SYS_SENDMSG 28
#define SYS_RECVFROM 29
#define SYS_ACCEPT 30
#define SYS_GETSOCKNAME 32
#define SYS_SOCKET 97
#define SYS_CONNECT 98
#define SYS_BIND 104
#define SYS_SETSOCKOPT 105
#define SYS_LISTEN 106
#define SYS_GETSOCKOPT 118
#define SYS_SENDTO 133
#define SYS_SOCKETPAIR 135

/* A BSD sockaddr_in: sa_len and an 8-bit family first. */
struct sin {
    unsigned char len, family;
    unsigned short port;
    unsigned char addr[4], zero[8];
};

struct iov_ {
    const void *base;
    size_t len;
};

struct msghdr_ {
    void *name;
    unsigned namelen;
    struct iov_ *iov;
    int iovlen;
    void *control;
    unsigned controllen;
    int flags;
};

static int same_bytes(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

#define SYS_PIPE2_ 542
#define MSG_CTRUNC_ 0x20
/* A BSD control message: {u_int len; int level; int type;}, data at 16. */
struct rights {
    unsigned len;
    int level, type, pad;
    int fd[2];
};

/* A pipe's read end passed over a UNIX socket (SCM_RIGHTS) arrives as a
 * working descriptor; without room for it the message says MSG_CTRUNC;
 * a control message of a kind not passed (SCM_CREDS) is EINVAL. */
static int passing(int sv[2])
{
    int p[2];
    char buf[8];
    struct rights c = {16 + 4, 0xffff, 1, 0, {0, 0}}, got = {0, 0, 0, 0, {-1, -1}};
    struct iov_ one = {"m", 1}, in = {buf, 8};
    struct msghdr_ m = {0, 0, &one, 1, &c, 24, 0}, r = {0, 0, &in, 1, &got, sizeof(got), 0};
    if (sys(SYS_PIPE2_, p, 0).failed)
        return 11;
    c.fd[0] = p[0];
    if (sys(SYS_SENDMSG, sv[0], &m, 0).value != 1 || sys(SYS_RECVMSG, sv[1], &r, 0).value != 1 ||
        r.controllen != 24 /* CMSG_SPACE */ || got.len != 20 || got.level != 0xffff || got.type != 1 ||
        got.fd[0] < 0 || got.fd[0] == p[0] || (r.flags & MSG_CTRUNC_))
        return 12;
    if (sys(SYS_WRITE, p[1], "via", 3).value != 3 || sys(SYS_READ, got.fd[0], buf, 8).value != 3 ||
        !same_bytes(buf, "via", 3))
        return 13;
    r.controllen = 8; /* too small for one descriptor */
    if (sys(SYS_SENDMSG, sv[0], &m, 0).value != 1 || sys(SYS_RECVMSG, sv[1], &r, 0).value != 1 ||
        !(r.flags & MSG_CTRUNC_) || r.controllen != 0)
        return 14;
    c.type = 3; /* SCM_CREDS */
    struct ret bad = sys(SYS_SENDMSG, sv[0], &m, 0);
    return bad.failed && bad.value == 22 ? 0 : 15;
}

/* A socketpair; TCP on 127.0.0.1 (bind, listen, getsockname, connect,
 * accept, options); UDP with addresses; sendmsg/recvmsg; MSG_PEEK. */
static int sockets(void)
{
    int sv[2], one = 1, type = 0;
    unsigned len = 16, plen = 16;
    char buf[16];
    struct sin any = {16, 2, 0, {127, 0, 0, 1}, {0}}, bound = {0}, peer = {0}, from = {0};

    if (sys(SYS_SOCKETPAIR, 1, 1, 0, sv).failed || sys(SYS_WRITE, sv[0], "abc", 3).value != 3 ||
        sys(SYS_READ, sv[1], buf, 16).value != 3 || !same_bytes(buf, "abc", 3))
        return 1;
    long s = sys(SYS_SOCKET, 2, 1 | 0x10000000, 0).value; /* SOCK_CLOEXEC */
    if (s < 0 || sys(SYS_SETSOCKOPT, s, 0xffff, 4, &one, 4).failed) /* SO_REUSEADDR */
        return 2;
    if (sys(SYS_BIND, s, &any, 16).failed || sys(SYS_LISTEN, s, 4).failed ||
        sys(SYS_GETSOCKNAME, s, &bound, &len).failed || len != 16 || bound.len != 16 ||
        bound.family != 2 || !bound.port)
        return 3;
    long c = sys(SYS_SOCKET, 2, 1, 0).value;
    if (c < 0 || sys(SYS_CONNECT, c, &bound, 16).failed)
        return 4;
    long t = sys(SYS_ACCEPT, s, &peer, &plen).value;
    if (t < 0 || peer.family != 2 || peer.addr[0] != 127 || peer.addr[3] != 1)
        return 5;
    if (sys(SYS_SENDTO, c, "ping", 4, 0, 0, 0).value != 4 ||
        sys(SYS_RECVFROM, t, buf, 16, 0, 0, 0).value != 4 || !same_bytes(buf, "ping", 4))
        return 6;
    len = 4;
    if (sys(SYS_GETSOCKOPT, t, 0xffff, 0x1008, &type, &len).failed || type != 1) /* SO_TYPE */
        return 7;
    long u1 = sys(SYS_SOCKET, 2, 2, 0).value, u2 = sys(SYS_SOCKET, 2, 2, 0).value;
    len = 16;
    plen = 16;
    if (sys(SYS_BIND, u1, &any, 16).failed || sys(SYS_GETSOCKNAME, u1, &bound, &len).failed ||
        sys(SYS_SENDTO, u2, "dgram", 5, 0, &bound, 16).value != 5 ||
        sys(SYS_RECVFROM, u1, buf, 16, 0, &from, &plen).value != 5 || from.family != 2 ||
        from.len != 16 || !same_bytes(buf, "dgram", 5))
        return 8;
    struct iov_ out[2] = {{"he", 2}, {"llo", 3}}, in[1] = {{buf, 16}};
    struct msghdr_ m = {0, 0, out, 2, 0, 0, 0}, r = {0, 0, in, 1, 0, 0, 0};
    if (sys(SYS_SENDMSG, c, &m, 0).value != 5 || sys(SYS_RECVMSG, t, &r, 0).value != 5 ||
        !same_bytes(buf, "hello", 5))
        return 9;
    buf[0] = 0;
    sys(SYS_SENDTO, c, "x", 1, 0, 0, 0);
    if (sys(SYS_RECVFROM, t, buf, 1, 2, 0, 0).value != 1 || buf[0] != 'x' || /* MSG_PEEK */
        sys(SYS_RECVFROM, t, buf + 1, 1, 0, 0, 0).value != 1 || buf[1] != 'x')
        return 10;
    return passing(sv);
}

#define SYS_IOCTL 54
#define TIOCGETA 0x402c7413ul
#define TIOCSETA 0x802c7414ul
#define TIOCGWINSZ 0x40087468ul
#define FIONREAD 0x4004667ful
#define FIOCLEX 0x20006601ul

struct termios_ {
    unsigned iflag, oflag, cflag, lflag;
    unsigned char cc[20];
    unsigned ispeed, ospeed;
};

/* Descriptor requests on a pipe (and ENOTTY for terminal ones); with
 * "tty", the terminal on stdin as a BSD sees it: flags, control
 * characters and speed in BSD numbering, and a change read back. */
static int terminal(int tty)
{
    int fds[2], n = 0;
    struct termios_ t;
    unsigned short ws[4];
    if (sys(SYS_PIPE2, fds, 0).failed || sys(SYS_WRITE, fds[1], "abc", 3).value != 3 ||
        sys(SYS_IOCTL, fds[0], FIONREAD, &n).failed || n != 3)
        return 1;
    struct ret r = sys(SYS_IOCTL, fds[0], TIOCGETA, &t);
    if (!r.failed || r.value != 25) /* ENOTTY */
        return 2;
    if (sys(SYS_IOCTL, fds[0], FIOCLEX, 0).failed || sys(SYS_FCNTL, fds[0], 1, 0).value != 1)
        return 3; /* F_GETFD: FD_CLOEXEC */
    if (!tty)
        return 0;
    if (sys(SYS_IOCTL, 0, TIOCGETA, &t).failed)
        return 4;
    /* ICANON|ECHO|ISIG; CS8|CREAD; ^C in VINTR (8), VMIN (16) 1. */
    if ((t.lflag & 0x188) != 0x188 || (t.cflag & 0xb00) != 0xb00 || t.cc[8] != 3 || t.cc[16] != 1 ||
        t.ospeed == 0)
        return 5;
    t.lflag &= ~0x108u; /* ICANON, ECHO */
    t.cc[16] = 0;
    struct termios_ back;
    if (sys(SYS_IOCTL, 0, TIOCSETA, &t).failed || sys(SYS_IOCTL, 0, TIOCGETA, &back).failed ||
        (back.lflag & 0x108) || back.cc[16] != 0 || !(back.lflag & 0x80))
        return 6;
    return sys(SYS_IOCTL, 0, TIOCGWINSZ, ws).failed ? 7 : 0;
}

#ifdef NETBSD
#define SYS_STATFS 357 /* statvfs1(path, buf, flags) */
#define SYS_FSTATFS 358
#define SYS_GETFSSTAT 356
#define STATFS_SIZE 2256
#define F_FSID 128
#define F_TYPENAME 172
#define F_ONNAME 204
#else
#define SYS_STATFS 555
#define SYS_FSTATFS 556
#define SYS_GETFSSTAT 557
#define STATFS_SIZE 2344
#define F_FSID 192
#define F_TYPENAME 280
#define F_ONNAME 1320
#endif
#define F_BLOCKS 32

static void say_number(unsigned long n)
{
    char digits[24];
    int at = 23;
    digits[at] = 0;
    do
        digits[--at] = (char)('0' + n % 10);
    while (n /= 10);
    say(digits + at);
}

static char fs_here[STATFS_SIZE], fs_open[STATFS_SIZE], fs_all[4][STATFS_SIZE];

/* statfs(".") and fstatfs of "." agree; the mount table has it; prints
 * "TYPE MOUNTPOINT BLOCKS" for the test to hold against the host's. */
static int fsinfo(void)
{
    struct ret fd = sys(SYS_OPEN, ".", 0, 0);
    if (sys(SYS_STATFS, ".", fs_here, 0).failed || fd.failed ||
        sys(SYS_FSTATFS, fd.value, fs_open, 0).failed)
        return 1;
#ifndef NETBSD
    if (*(unsigned *)fs_here != 0x20140518) /* STATFS_VERSION */
        return 2;
#endif
    if (!same_bytes(fs_here + F_FSID, fs_open + F_FSID, 8) ||
        !same(fs_here + F_ONNAME, fs_open + F_ONNAME) || fs_here[F_ONNAME] != '/')
        return 3;
    struct ret count = sys(SYS_GETFSSTAT, 0, 0, 2), some = sys(SYS_GETFSSTAT, fs_all, sizeof(fs_all), 2);
    if (count.failed || count.value < 1 || some.failed || some.value < 1 || some.value > 4 ||
        (count.value >= 4 && some.value != 4) || fs_all[0][F_ONNAME] != '/')
        return 4;
    struct ret bad = sys(SYS_STATFS, "/nonexistent-dir", fs_open, 0);
    if (!bad.failed || bad.value != 2)
        return 5;
    say(fs_here + F_TYPENAME);
    say(" ");
    say(fs_here + F_ONNAME);
    say(" ");
    say_number(*(unsigned long *)(fs_here + F_BLOCKS));
    say("\n");
    return 0;
}

/* Under --root: a file only the sysroot has, read by its absolute path;
 * one only the host has (/dev/null) still found. */
static int rootfile(void)
{
    char buf[32];
    struct ret fd = sys(SYS_OPEN, "/etc/smolvm-root-test", 0, 0);
    if (fd.failed || sys(SYS_READ, fd.value, buf, sizeof(buf)).value != 13 ||
        !same_bytes(buf, "from the root", 13))
        return 1;
    return sys(SYS_OPEN, "/dev/null", 1, 0).failed ? 2 : 0;
}

#define SYS_LINK 9
#define SYS_CHDIR 12
#define SYS_CHMOD 15
#define SYS_CHOWN 16
#define SYS_CHFLAGS 34
#define SYS_ACCESS 33
#define SYS_SYMLINK 57
#define SYS_READLINK 58
#define SYS_RENAME 128
#define SYS_MKFIFO 132
#define SYS_UTIMES 138
#define SYS_PATHCONF 191
#define SYS_GETCWD 326
#define SYS_EACCESS 376
#define SYS_TRUNCATE 479
#define SYS_FACCESSAT 489
#define SYS_FCHMODAT 490
#define SYS_FCHOWNAT 491
#define SYS_LINKAT 495
#define SYS_MKDIRAT 496
#define SYS_OPENAT 499
#define SYS_READLINKAT 500
#define SYS_RENAMEAT 501
#define SYS_SYMLINKAT 502
#define SYS_UNLINKAT 503
#define SYS_UTIMENSAT 547
#define SYS_ROOT_STATFS 555
#define AT_FDCWD_ (-100)
#define AT_REMOVEDIR_ 0x800

/* base/name, in one of four buffers (a call may take two). */
static const char *under(const char *base, const char *name)
{
    static char paths[4][512];
    static unsigned next;
    char *p = paths[next++ % 4];
    size_t n = 0;
    for (const char *s = base; *s && n < 400; s++)
        p[n++] = *s;
    p[n++] = '/';
    for (const char *s = name; *s && n < 510; s++)
        p[n++] = *s;
    p[n] = 0;
    return p;
}

/* --root R, base B (an absolute directory both the host and R have):
 * every path-taking call on B/... acts in R/B, but a creation whose host
 * entry exists (host-only) stays the host's. The test looks at both
 * trees afterwards. */
static int rootops(const char *b)
{
    char buf[4096]; /* a struct statfs: 2344 bytes */
    long times[4] = {1000000, 0, 1000000, 0}, spec[4] = {2000000, 0, 2000000, 0};
    if (sys(SYS_UNLINK, under(b, "victim")).failed ||
        sys(SYS_UNLINKAT, AT_FDCWD_, under(b, "victim2"), 0).failed)
        return 1;
    if (sys(SYS_MKDIR, under(b, "d1"), 0755).failed ||
        sys(SYS_MKDIRAT, AT_FDCWD_, under(b, "d2"), 0755).failed ||
        sys(SYS_RMDIR, under(b, "d2")).failed ||
        sys(SYS_MKDIRAT, AT_FDCWD_, under(b, "d3"), 0755).failed ||
        sys(SYS_UNLINKAT, AT_FDCWD_, under(b, "d3"), AT_REMOVEDIR_).failed)
        return 2;
    if (sys(SYS_RENAME, under(b, "ren-src"), under(b, "ren-dst")).failed ||
        sys(SYS_RENAMEAT, AT_FDCWD_, under(b, "ren2-src"), AT_FDCWD_, under(b, "ren2-dst")).failed)
        return 3;
    if (sys(SYS_CHMOD, under(b, "mode"), 0600).failed ||
        sys(SYS_FCHMODAT, AT_FDCWD_, under(b, "mode2"), 0600, 0).failed)
        return 4;
    if (sys(SYS_CHOWN, under(b, "only-in-root"), -1, -1).failed ||
        sys(SYS_FCHOWNAT, AT_FDCWD_, under(b, "only-in-root"), -1, -1, 0).failed)
        return 5;
    struct ret n = sys(SYS_READLINK, under(b, "link"), buf, sizeof(buf));
    if (n.failed || n.value != 11 || !same_bytes(buf, "target-text", 11))
        return 6;
    n = sys(SYS_READLINKAT, AT_FDCWD_, under(b, "link"), buf, sizeof(buf));
    if (n.failed || n.value != 11)
        return 7;
    if (sys(SYS_ACCESS, under(b, "only-in-root"), 0).failed ||
        sys(SYS_FACCESSAT, AT_FDCWD_, under(b, "only-in-root"), 0, 0).failed ||
        sys(SYS_EACCESS, under(b, "only-in-root"), 0).failed)
        return 8;
    if (sys(SYS_TRUNCATE, under(b, "trunc"), 3).failed)
        return 9;
    if (sys(SYS_UTIMES, under(b, "times"), times).failed ||
        sys(SYS_UTIMENSAT, AT_FDCWD_, under(b, "times2"), spec, 0).failed)
        return 10;
    if (sys(SYS_LINK, under(b, "linksrc"), under(b, "linkdst")).failed ||
        sys(SYS_LINKAT, AT_FDCWD_, under(b, "linksrc"), AT_FDCWD_, under(b, "linkdst2"), 0).failed)
        return 11;
    if (sys(SYS_SYMLINK, "sym-text", under(b, "sym")).failed ||
        sys(SYS_SYMLINKAT, "sym-text", AT_FDCWD_, under(b, "sym2")).failed)
        return 12;
    struct ret fd = sys(SYS_OPEN, under(b, "created"), 0x200 | 1, 0644); /* O_CREAT|O_WRONLY */
    if (fd.failed)
        return 13;
    sys(SYS_CLOSE, fd.value);
    fd = sys(SYS_OPENAT, AT_FDCWD_, under(b, "host-only"), 0x200 | 0x400 | 1, 0644);
    if (fd.failed || sys(SYS_WRITE, fd.value, "guest", 5).value != 5)
        return 14;
    sys(SYS_CLOSE, fd.value);
    if (sys(SYS_MKFIFO, under(b, "fifo"), 0600).failed)
        return 15;
    if (sys(SYS_ROOT_STATFS, under(b, "only-in-root"), buf).failed ||
        sys(SYS_PATHCONF, under(b, "only-in-root"), 4).value != 255 || /* _PC_NAME_MAX */
        sys(SYS_CHFLAGS, under(b, "only-in-root"), 0).failed)
        return 16;
    /* chdir into R/B/sub: the guest's cwd is still B/sub, and a relative
     * name is made there. */
    const char *sub = under(b, "sub");
    if (sys(SYS_CHDIR, sub).failed || sys(SYS_GETCWD, buf, sizeof(buf)).failed || !same(buf, sub))
        return 17;
    fd = sys(SYS_OPEN, "rel", 0x200 | 1, 0644);
    if (fd.failed)
        return 18;
    sys(SYS_CLOSE, fd.value);
    /* A socket bound to B/sock is made in R/B, and connected to there. */
    struct {
        unsigned char len, family;
        char path[104];
    } addr = {0, 1};
    const char *sock = under(b, "sock");
    size_t k = 0;
    while (sock[k] && k < sizeof(addr.path) - 1) {
        addr.path[k] = sock[k];
        k++;
    }
    addr.len = (unsigned char)(2 + k + 1);
    struct ret s1 = sys(SYS_SOCKET, 1, 1, 0), s2 = sys(SYS_SOCKET, 1, 1, 0); /* AF_UNIX, SOCK_STREAM */
    if (s1.failed || s2.failed || sys(SYS_BIND, s1.value, &addr, addr.len).failed ||
        sys(SYS_LISTEN, s1.value, 1).failed || sys(SYS_CONNECT, s2.value, &addr, addr.len).failed)
        return 19;
    return 0;
}

#ifdef NETBSD
#define SYS_GETCONTEXT 307
#define SYS_LWP_CREATE 309
#define SYS_LWP_EXIT 310
#define SYS_LWP_SELF 311
#define SYS_LWP_UNPARK 321
#define SYS_LWP_PARK60 478
#define SYS_GETDENTS 390
#define SYS_OPEN_DIR_FLAGS 0x200000 /* O_DIRECTORY */

static char lwp_stack[16384] __attribute__((aligned(16)));
static volatile long lwp_saw;
static long main_lwp;

/* Started with %rdi and %rsi from the context _lwp_create was given. */
static void lwp_main(long a, long b)
{
    lwp_saw = a + b;
    sys(SYS_LWP_UNPARK, main_lwp, 0);
    sys(SYS_LWP_EXIT);
}

/* A new LWP from getcontext's registers with some changed, park/unpark,
 * a park that times out; getdents on a directory. */
static int lwp(void)
{
    unsigned char uc[784];
    int id = 0;
    main_lwp = sys(SYS_LWP_SELF).value;
    if (main_lwp <= 0 || sys(SYS_GETCONTEXT, uc).failed)
        return 1;
    long *gregs = (long *)(uc + 56);
    gregs[21] = (long)lwp_main;                              /* rip */
    gregs[24] = (long)(lwp_stack + sizeof(lwp_stack)) - 8;   /* rsp, as after a call */
    gregs[0] = 40;                                           /* rdi */
    gregs[1] = 2;                                            /* rsi */
    if (sys(SYS_LWP_CREATE, uc, 0, &id).failed || id <= 0 || id == main_lwp)
        return 2;
    struct { long sec, nsec; } two = {2, 0}, short_ = {0, 1000000};
    for (int i = 0; i < 100 && !lwp_saw; i++)
        sys(SYS_LWP_PARK60, 3, 0, &two, 0, 0, 0); /* CLOCK_MONOTONIC, relative */
    if (lwp_saw != 42)
        return 3;
    /* The unpark may have come before any park: its token is taken here. */
    sys(SYS_LWP_PARK60, 3, 0, &short_, 0, 0, 0);
    struct ret r = sys(SYS_LWP_PARK60, 3, 0, &short_, 0, 0, 0);
    if (!r.failed || r.value != 60) /* ETIMEDOUT */
        return 4;
    char buf[4096];
    struct ret d = sys(SYS_OPEN, ".", SYS_OPEN_DIR_FLAGS, 0);
    struct ret n = sys(SYS_GETDENTS, d.value, buf, sizeof(buf));
    if (d.failed || n.failed || n.value < 13)
        return 5;
    int dots = 0;
    for (long at = 0; at < n.value;) {
        unsigned short reclen = *(unsigned short *)(buf + at + 8);
        dots += same(buf + at + 13, ".") + same(buf + at + 13, "..");
        if (!reclen)
            return 6;
        at += reclen;
    }
    if (dots != 2)
        return 7;
    /* NetBSD's own number for F_DUPFD_CLOEXEC (12). */
    long copy = sys(SYS_FCNTL, d.value, 12, 30).value;
    return copy >= 30 && sys(SYS_FCNTL, copy, 1, 0).value == 1 ? 0 : 8;
}

#define SYS_SIGACTION_SIGTRAMP 340
#define SYS_SIGPROCMASK14 293
/* NetBSD's ucontext: __gregs from 56; rax is 14, rip 21, rsp 24. */
#define NB_RAX (56 + 14 * 8)
#define NB_RIP (56 + 21 * 8)
#define NB_RSP (56 + 24 * 8)

struct nb_sigaction {
    void (*handler)(int, void *, void *);
    unsigned mask[4];
    int flags;
};

/* What libc hands __sigaction_sigtramp: the handler returns here, with
 * the ucontext in %r15, and it calls setcontext. */
void nb_tramp(void);
__asm__(".globl nb_tramp\nnb_tramp:\n"
        "    mov %r15, %rdi\n"
        "    mov $308, %eax\n" /* SYS_setcontext */
        "    syscall\n"
        "    ud2\n");

static volatile int nb_seen, nb_good, nb_segv_good;

static void nb_on_usr1(int sig, void *info, void *uc)
{
    long rip = *(long *)((char *)uc + NB_RIP);
    nb_seen++;
    nb_good = sig == 30 && *(int *)info == 30 && rip > 0 && rip < 0x500000000000l;
    *(long *)((char *)uc + NB_RAX) = 77;
}

static void nb_resumed(void)
{
    leave(nb_segv_good ? 0 : 9);
}

static void nb_on_segv(int sig, void *info, void *uc)
{
    nb_segv_good = sig == 11 && *(void **)((char *)info + 16) == (void *)16;
    *(long *)((char *)uc + NB_RIP) = (long)nb_resumed;
    *(long *)((char *)uc + NB_RSP) = (*(long *)((char *)uc + NB_RSP) & ~15l) - 8;
}

/* NetBSD's signal delivery: siginfo and ucontext in its layouts, the
 * handler's return through libc's trampoline and setcontext. */
static int nb_signals(void)
{
    struct nb_sigaction act = {nb_on_usr1, {0, 0, 0, 0}, 0x40 /* SA_SIGINFO */};
    long pid = sys(SYS_GETPID).value;
    if (sys(SYS_SIGACTION_SIGTRAMP, 30, &act, 0, nb_tramp, 2).failed)
        return 1;
    struct ret r = sys(37, pid, 30); /* kill */
    if (nb_seen != 1 || !nb_good || r.failed || r.value != 77)
        return 2;
    unsigned set[4] = {1u << 29, 0, 0, 0};
    sys(SYS_SIGPROCMASK14, 1, set, 0);
    sys(37, pid, 30);
    if (nb_seen != 1)
        return 3;
    sys(SYS_SIGPROCMASK14, 2, set, 0);
    if (nb_seen != 2)
        return 4;
    struct nb_sigaction segv = {nb_on_segv, {0, 0, 0, 0}, 0x40};
    if (sys(SYS_SIGACTION_SIGTRAMP, 11, &segv, 0, nb_tramp, 2).failed)
        return 5;
    *(volatile int *)16 = 1;
    return 6;
}
#endif

#ifndef NETBSD
/* FreeBSD 11's calls (COMPAT11), as programs built for it and Go up to
 * 1.17 make them, in their own layouts; each struct is written into a
 * buffer of 0xaa bytes, so a byte past the old struct's end gives away a
 * new layout. */
#define SYS11_MKNOD 14
#define SYS11_STAT 188
#define SYS11_FSTAT 189
#define SYS11_LSTAT 190
#define SYS11_GETDIRENTRIES 196
#define SYS11_KEVENT 363
#define SYS11_GETFSSTAT 395
#define SYS11_STATFS 396
#define SYS11_FSTATAT 493
#define SYS_FSTAT_NOW 551
#define STAT11_SIZE 120
#define STATFS11_SIZE 472

static unsigned char old[2][STATFS11_SIZE + 8];

static void fill(void *p, unsigned char v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)p)[i] = v;
}

/* Nothing past the old struct's size was written. */
static int written_only(const unsigned char *b, size_t size)
{
    return b[size] == 0xaa && b[size + 7] == 0xaa;
}

/* struct freebsd11_stat: 32-bit dev and ino, 16-bit mode at 8 and nlink
 * at 10, size at 72: the file of 7 bytes (bsd-old) as stat, lstat, fstat,
 * fstatat see it; its inode the new fstat's, cut to 32 bits. */
static int old_stat(void)
{
    unsigned char now[224];
    struct ret fd = sys(SYS_OPEN, "bsd-old", 0x200 | 0x400 | 2, 0644);
    if (fd.failed || sys(SYS_WRITE, fd.value, "written", 7).value != 7 ||
        sys(SYS_FSTAT_NOW, fd.value, now).failed)
        return 1;
    long calls[4][5] = {{SYS11_STAT, (long)"bsd-old", (long)old[0]},
                        {SYS11_LSTAT, (long)"bsd-old", (long)old[0]},
                        {SYS11_FSTAT, fd.value, (long)old[0]},
                        {SYS11_FSTATAT, -100 /* AT_FDCWD */, (long)"bsd-old", (long)old[0], 0}};
    for (int i = 0; i < 4; i++) {
        fill(old[0], 0xaa, sizeof(old[0]));
        if (sys(calls[i][0], calls[i][1], calls[i][2], calls[i][3], calls[i][4]).failed)
            return 10 + i;
        if (!written_only(old[0], STAT11_SIZE) || *(long *)(old[0] + 72) != 7 ||
            (*(unsigned short *)(old[0] + 8) & 0170000) != 0100000 ||
            *(unsigned short *)(old[0] + 10) != 1 ||
            *(unsigned *)(old[0] + 4) != (unsigned)*(unsigned long *)(now + 8))
            return 20 + i;
    }
    sys(SYS_CLOSE, fd.value);
    /* freebsd11_mknod: a FIFO (its 32-bit device number unused). */
    if (sys(SYS11_MKNOD, "bsd-old-fifo", 0010644, 0).failed ||
        sys(SYS11_STAT, "bsd-old-fifo", old[0]).failed ||
        (*(unsigned short *)(old[0] + 8) & 0170000) != 0010000)
        return 30;
    sys(SYS_UNLINK, "bsd-old-fifo");
    return 0;
}

/* struct freebsd11_dirent: 32-bit fileno, reclen at 4, type at 6, 8-bit
 * namlen at 7, name at 8, records 4-aligned. */
static int old_dirents(void)
{
    char buf[1024];
    long base = -1;
    int seen = 0;
    struct ret d = sys(SYS_OPEN, ".", 0x20000, 0);
    struct ret n = sys(SYS11_GETDIRENTRIES, d.value, buf, sizeof(buf), &base);
    if (d.failed || n.failed || n.value == 0 || base < 0)
        return 40;
    for (long at = 0; at < n.value;) {
        unsigned short reclen = *(unsigned short *)(buf + at + 4);
        if (!reclen || reclen % 4 || buf[at + 8 + (unsigned char)buf[at + 7]] != 0)
            return 41;
        seen += same(buf + at + 8, "bsd-old") && buf[at + 6] == 8 /* DT_REG */;
        at += reclen;
    }
    sys(SYS_CLOSE, d.value);
    return seen == 1 ? 0 : 42;
}

/* struct kevent_freebsd11: 32 bytes, without ext[]. */
static int old_kevent(void)
{
    int fds[2];
    unsigned long change[4] = {0, 0, 0x1234, 0}, *got = (unsigned long *)old[0];
    struct timespec { long s, ns; } wait = {1, 0};
    long kq = sys(SYS_KQUEUE).value;
    if (kq < 0 || sys(SYS_PIPE2, fds, 0).failed)
        return 50;
    change[0] = (unsigned long)fds[0];
    change[1] = (unsigned long)(unsigned short)EVFILT_READ | (unsigned long)EV_ADD << 16;
    change[3] = 0x5678; /* udata */
    sys(SYS_WRITE, fds[1], "xyz", 3);
    fill(old[0], 0xaa, sizeof(old[0]));
    struct ret r = sys(SYS11_KEVENT, kq, change, 1, got, 1, &wait);
    if (r.failed || r.value != 1 || got[0] != (unsigned long)fds[0] ||
        (short)got[1] != EVFILT_READ || got[2] != 3 || got[3] != 0x5678 ||
        !written_only(old[0], 32))
        return 51;
    return 0;
}

/* struct freebsd11_statfs: version 0x20030518, f_mntonname (88 bytes) at
 * 384, 472 bytes; getfsstat's array in that stride. */
static int old_statfs(void)
{
    fill(old, 0xaa, sizeof(old));
    if (sys(SYS11_STATFS, ".", old[0]).failed || *(unsigned *)old[0] != 0x20030518 ||
        old[0][384] != '/' || !written_only(old[0], STATFS11_SIZE))
        return 60;
    struct ret count = sys(SYS11_GETFSSTAT, 0, 0, 2);
    fill(old, 0xaa, sizeof(old));
    struct ret two = sys(SYS11_GETFSSTAT, old, 2 * STATFS11_SIZE, 2);
    if (count.failed || count.value < 1 || two.failed || two.value < 1 ||
        old[0][384] != '/' || (two.value == 2 && ((unsigned char *)old)[STATFS11_SIZE + 384] != '/'))
        return 61;
    return 0;
}

static int freebsd11(void)
{
    int r = old_stat();
    if (!r)
        r = old_dirents();
    if (!r)
        r = old_kevent();
    if (!r)
        r = old_statfs();
    sys(SYS_UNLINK, "bsd-old");
    return r;
}
#endif

/* The C path's most frequent calls from rewritten sites (bare.c answers
 * them on the guest's own %fs base), with the guest's thread pointer at an
 * unmapped page: smolvm's code must not read its own thread-local storage
 * through it (a stack protector's canary, errno) before switching. Each
 * site's answers stay right every time: fstat, fstatat (found and not,
 * not following a link), openat (found and not), close (a file, a
 * kqueue's descriptor, which the C path closes, and one closed already),
 * a bad pointer, sched_yield; FreeBSD's _umtx_op waits (the value changed;
 * a timeout) and wake; NetBSD's stat, lstat, _lwp_unpark and _lwp_park
 * (the token there; a timeout). */
#ifdef NETBSD
enum { SYS_FSTAT_ = 440, SYS_FSTATAT_ = 466, SYS_OPENAT_ = 468, SYS_SCHED_YIELD_ = 350,
       SYS_KQUEUE_ = 344, SYS_STAT_ = 439, SYS_LSTAT_ = 441, SYS_SETPRIVATE_ = 317,
       SYS_PARK_ = 478, SYS_UNPARK_ = 321, SYS_LWPSELF_ = 311, ST_INO = 16, ST_MODE = 8 };
#else
enum { SYS_FSTAT_ = 551, SYS_FSTATAT_ = 552, SYS_OPENAT_ = 499, SYS_SCHED_YIELD_ = 331,
       SYS_KQUEUE_ = 362, SYS_UMTX_OP_ = 454, SYS_SYSARCH_ = 165, ST_INO = 8, ST_MODE = 24,
       UMTX_OP_WAIT_UINT_PRIVATE_ = 15, UMTX_OP_WAKE_PRIVATE_ = 16 };
#endif
enum { AT_SYMLINK_NOFOLLOW_ = 0x200, ST_SIZE = 112, S_IFMT_ = 0170000,
       S_IFREG_ = 0100000, S_IFLNK_ = 0120000 };

/* The file type in a struct stat (FreeBSD's mode is 16 bits, NetBSD's 32). */
static unsigned file_type(const unsigned char *sb)
{
    return *(const unsigned short *)(sb + ST_MODE) & S_IFMT_;
}

static int bare(long calls)
{
    unsigned char sb[224], at[224];
    struct { long sec, nsec; } timeout = {0, 1000};
    struct ret fd = sys(SYS_OPEN, "bsd-bare", 0x200 | 0x400 | 1, 0644); /* O_CREAT|O_TRUNC|O_WRONLY */
    if (fd.failed || sys(SYS_WRITE, fd.value, "written", 7).value != 7 || sys(SYS_CLOSE, fd.value).failed)
        return 1;
    sys(SYS_UNLINK, "bsd-bare-link");
    if (sys(SYS_SYMLINK, "bsd-bare", "bsd-bare-link").failed)
        return 1;
    long *unmapped = (long *)0x1000;
#ifdef NETBSD
    long self = sys(SYS_LWPSELF_).value;
    if (sys(SYS_SETPRIVATE_, unmapped).failed)
        return 1;
#else
    unsigned word = 0;
    if (sys(SYS_SYSARCH_, AMD64_SET_FSBASE, &unmapped).failed)
        return 1;
#endif
#pragma clang loop unroll(disable)
    for (long i = 0; i < calls; i++) {
        /* Each call from one site; the rare cases (the C path's, or a
         * fault) one time in 100. */
        int rare = i % 100 == 0;
        fd = sys(SYS_OPENAT_, AT_FDCWD_, "bsd-bare", 0, 0);
        if (fd.failed)
            return 2;
        struct ret r = sys(SYS_FSTAT_, fd.value, rare ? (void *)16 : sb);
        if (rare ? !r.failed || r.value != 14 : r.failed) /* EFAULT */
            return 3;
        if (!rare && (*(long *)(sb + ST_SIZE) != 7 || file_type(sb) != S_IFREG_))
            return 3;
        r = sys(SYS_FSTATAT_, AT_FDCWD_, i & 1 ? "bsd-bare-link" : "bsd-bare", at,
                i & 1 ? AT_SYMLINK_NOFOLLOW_ : 0);
        if (r.failed || (i & 1 ? file_type(at) != S_IFLNK_
                               : !rare && *(long *)(at + ST_INO) != *(long *)(sb + ST_INO)))
            return 4;
        r = sys(SYS_FSTATAT_, AT_FDCWD_, "bsd-bare-none", at, 0);
        if (!r.failed || r.value != 2) /* ENOENT */
            return 5;
        r = sys(SYS_OPENAT_, AT_FDCWD_, "bsd-bare-none", 0, 0);
        if (!r.failed || r.value != 2)
            return 6;
#ifdef NETBSD
        r = sys(i & 1 ? SYS_LSTAT_ : SYS_STAT_, "bsd-bare-link", at);
        if (r.failed || file_type(at) != (i & 1 ? S_IFLNK_ : S_IFREG_))
            return 7;
#endif
        struct ret kq = rare ? sys(SYS_KQUEUE_) : fd;
        for (int k = 0; k < 3; k++) {
            r = sys(SYS_CLOSE, k == 1 ? kq.value : fd.value);
            if (kq.failed || (k == 0 || (k == 1 && rare) ? r.failed || r.value != 0
                                                          : !r.failed || r.value != 9)) /* EBADF */
                return 8;
        }
#ifdef NETBSD
        /* _lwp_park(CLOCK_MONOTONIC, relative, timeout, unpark, ...) */
        if (!rare && sys(SYS_UNPARK_, self, 0).failed)
            return 9;
        r = sys(SYS_PARK_, 3, 0, rare ? &timeout : 0, 0, 0, 0);
        if (rare ? !r.failed || r.value != 60 : r.failed) /* ETIMEDOUT */
            return 9;
#else
        r = sys(SYS_UMTX_OP_, &word, UMTX_OP_WAIT_UINT_PRIVATE_, rare ? 0 : 1,
                rare ? sizeof(timeout) : 0, rare ? &timeout : 0);
        if (rare ? !r.failed || r.value != 60 : r.failed || r.value != 0) /* ETIMEDOUT */
            return 9;
        if (sys(SYS_UMTX_OP_, &word, UMTX_OP_WAKE_PRIVATE_, 1, 0, 0).failed)
            return 10;
#endif
        if (sys(SYS_SCHED_YIELD_).failed)
            return 10;
    }
    return 0;
}

/* Every descriptor above stderr closed, each with its upper 32 bits set
 * (the calls read an int): -o FILE's must stay smolvm's, and the trace
 * still gets the line written after. */
static int close_all_high(void)
{
    for (long fd = 3; fd < 1024; fd++)
        sys(SYS_CLOSE, (1L << 32) + fd);
    say("after the closes\n");
    return 0;
}

/* FreeBSD enters _start with %rdi at argc and %rsp as after a call, so it
 * can be C; NetBSD's start code finds argc at %rsp, aligned. */
#ifdef NETBSD
__asm__(".globl _start\n_start:\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call start_c\n");
#define ENTRY start_c
#else
#define ENTRY _start
#endif

/* Initialized data and zeroed data in one segment: its file bytes end
 * inside a page whose rest (the file's next bytes there) must read zero. */
static volatile long data_probe = 42;
static volatile unsigned char bss_probe[8192];

void ENTRY(long *ap);
void ENTRY(long *ap)
{
    long argc = ap[0];
    char **argv = (char **)(ap + 1);
    const char *what = argc > 1 ? argv[1] : "hello";

    for (size_t i = 0; i < sizeof(bss_probe); i++)
        if (bss_probe[i] || data_probe != 42)
            leave(99);

    if (same(what, "hello")) {
        say("hello from a BSD program\n");
        leave(7);
    }
    if (same(what, "args")) {
        for (long i = 2; i < argc; i++) {
            say(argv[i]);
            say("\n");
        }
        leave(argc);
    }
    if (same(what, "files"))
        leave(files());
    if (same(what, "errors"))
        leave(errors());
    if (same(what, "memory"))
        leave(memory());
    if (same(what, "sysctl"))
        leave(sysctl());
    if (same(what, "dirs"))
        leave(dirs());
    if (same(what, "tracefd"))
        leave(close_all_high());
#ifdef NETBSD
    if (same(what, "lwp"))
        leave(lwp());
    if (same(what, "signals"))
        leave(nb_signals());
#endif
#ifndef NETBSD
    if (same(what, "freebsd11"))
        leave(freebsd11());
#endif
    if (same(what, "kqueue"))
        leave(kqueue());
    if (same(what, "ksignal"))
        leave(kqueue_signals());
    if (same(what, "fsinfo"))
        leave(fsinfo());
    if (same(what, "signals"))
        leave(signals());
    if (same(what, "storm"))
        leave(storm(0));
    if (same(what, "callstorm"))
        leave(storm(1));
    if (same(what, "rootfile"))
        leave(rootfile());
    if (same(what, "rootops") && argc > 2)
        leave(rootops(argv[2]));
    if (same(what, "ioctl"))
        leave(terminal(0));
    if (same(what, "tty"))
        leave(terminal(1));
    if (same(what, "sockets"))
        leave(sockets());
#ifndef NETBSD
    if (same(what, "eintr"))
        leave(interrupted_read());
    if (same(what, "direct"))
        leave(direct_calls());
#endif
    if (same(what, "processes"))
        leave(processes(argv[0]));
    if (same(what, "rewrite"))
        leave(rewritten(1000));
    if (same(what, "bare"))
        leave(bare(1000));
    if (same(what, "threads"))
        leave(threads());
    if (same(what, "fault"))
        *(volatile int *)16 = 1;
    leave(100);
}
