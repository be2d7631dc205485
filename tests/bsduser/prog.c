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
    r = sys(2); /* fork: not supported here */
    if (!r.failed || r.value != 78) /* ENOSYS */
        return 3;
    r = sys(SYS_GETPID);
    if (r.failed || r.value <= 0)
        return 4;
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
    return 0;
}

void _start(long *ap);
void _start(long *ap)
{
    long argc = ap[0];
    char **argv = (char **)(ap + 1);
    const char *what = argc > 1 ? argv[1] : "hello";

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
    if (same(what, "threads"))
        leave(threads());
    if (same(what, "fault"))
        *(volatile int *)16 = 1;
    leave(100);
}
