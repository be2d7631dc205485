/* /init of the nested test guests (guest-initrd.sh builds it): prints the
 * marker SMOLVM-GUEST-UP (with the vCPU's TSC then: "SMOLVM-GUEST-UP
 * tsc=N") as the first thing PID 1 does, stamps it into the
 * kernel's log, then hands over to the shell script that does the rest
 * (guest-init.sh, as /init.sh), with the kernel's arguments and
 * environment. bench/boot times "boot to init" to this marker: the
 * busybox shell's own start (a static glibc program's page faults and
 * CPUID exits: ~190 ms of a nested guest's quiet boot, measured from its
 * kernel log) is the init's work, not the boot's, and is after it.
 *
 * No libc: nothing runs before main but the three lines of _start, and
 * the whole program is a page of code. Failing to exec the shell, it says
 * so and exits (the kernel then panics: a guest that cannot run its init
 * is a failed boot). */

#define SYS_WRITE 1
#define SYS_OPEN 2
#define SYS_CLOSE 3
#define SYS_EXECVE 59
#define SYS_EXIT 60
#define O_WRONLY 1

static long syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11",
                     "memory");
    return ret;
}

static void say(int fd, const char *text, long len)
{
    syscall3(SYS_WRITE, fd, (long)text, len);
}

#define SAY(fd, literal) say(fd, literal, sizeof(literal) - 1)

/* The vCPU's time stamp counter: KVM starts a guest's at 0 when the VMM
 * creates the vCPU (QEMU's reset write of 0 within a second of that keeps
 * it so), and the guest's kernel clock may run behind (bench/boot/report),
 * so bench/boot reads this on the marker's line: the time from the vCPU's
 * creation to the marker, under any VMM, of the very boot it times. */
static unsigned long long read_tsc(void)
{
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (unsigned long long)hi << 32 | lo;
}

/* "SMOLVM-GUEST-UP tsc=N\n" into line; its length. */
static long marker_line(char *line, unsigned long long tsc)
{
    static const char head[] = "SMOLVM-GUEST-UP tsc=";
    char digits[20];
    long n = 0, len = 0;

    do
        digits[n++] = (char)('0' + tsc % 10);
    while ((tsc /= 10) != 0);
    for (unsigned i = 0; i < sizeof(head) - 1; i++)
        line[len++] = head[i];
    while (n > 0)
        line[len++] = digits[--n];
    line[len++] = '\n';
    return len;
}

/* The stack the kernel set up: argc, argv[], NULL, envp[], NULL. */
__attribute__((noreturn, used)) static void preinit(long *stack)
{
    char **argv = (char **)(stack + 1);
    char **envp = argv + stack[0] + 1;
    char *shell_argv[] = {"/bin/sh", "/init.sh", 0};

    char line[48];

    say(1, line, marker_line(line, read_tsc()));
    /* Its time by the kernel's clock, for bench/boot's split (no /dev/kmsg
     * node in the initrd: no stamp, nothing else lost). */
    long kmsg = syscall3(SYS_OPEN, (long)"/dev/kmsg", O_WRONLY, 0);
    if (kmsg >= 0) {
        SAY(kmsg, "smolvm-guest-init: SMOLVM-GUEST-UP printed\n");
        syscall3(SYS_CLOSE, kmsg, 0, 0);
    }
    syscall3(SYS_EXECVE, (long)shell_argv[0], (long)shell_argv, (long)envp);
    SAY(2, "guest-preinit: cannot run /bin/sh /init.sh\n");
    syscall3(SYS_EXIT, 127, 0, 0);
    __builtin_unreachable();
}

/* The kernel enters here with the stack above at %rsp; the call wants it
 * 16-byte aligned. */
__asm__(".globl _start\n"
        "_start:\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call preinit\n");
