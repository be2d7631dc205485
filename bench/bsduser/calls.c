/* System-call round trips for bench/bsduser: built for FreeBSD (run under
 * bsd-user) and for Linux (run natively) from this one file. argv[1]: the
 * call (getpid, read of 1 byte from /dev/zero, write of 1 byte to
 * /dev/null, fstat of /dev/null: one bsd-user translates); argv[2]: how
 * many. Freestanding: no libc on either side. */
#ifdef LINUX
enum { SYS_READ = 0, SYS_WRITE = 1, SYS_OPEN = 2, SYS_FSTAT = 5, SYS_GETPID = 39, SYS_EXIT = 60 };
#else
enum { SYS_READ = 3, SYS_WRITE = 4, SYS_OPEN = 5, SYS_FSTAT = 551, SYS_GETPID = 20, SYS_EXIT = 1 };
#endif

static long sys3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static long number(const char *s)
{
    long n = 0;
    while (*s >= '0' && *s <= '9')
        n = n * 10 + (*s++ - '0');
    return n;
}

void _start(void);
__attribute__((used)) static void start_c(long *ap)
{
    char **argv = (char **)(ap + 1), byte;
    long st[32]; /* FreeBSD's struct stat: 224 bytes; Linux's 144 */
    long count = number(argv[2]), fd = -1;
    if (same(argv[1], "read"))
        fd = sys3(SYS_OPEN, (long)"/dev/zero", 0, 0);
    if (same(argv[1], "write") || same(argv[1], "fstat"))
        fd = sys3(SYS_OPEN, (long)"/dev/null", 1, 0);
    for (long i = 0; i < count; i++) {
        if (fd < 0)
            sys3(SYS_GETPID, 0, 0, 0);
        else if (same(argv[1], "read"))
            sys3(SYS_READ, fd, (long)&byte, 1);
        else if (same(argv[1], "fstat"))
            sys3(SYS_FSTAT, fd, (long)st, 0);
        else
            sys3(SYS_WRITE, fd, (long)&byte, 1);
    }
    sys3(SYS_EXIT, 0, 0, 0);
}

/* argc at %rsp on Linux, at %rdi on FreeBSD (which also sets %rsp so). */
__asm__(".globl _start\n_start:\n"
#ifdef LINUX
        "    mov %rsp, %rdi\n"
#endif
        "    and $-16, %rsp\n"
        "    call start_c\n");
