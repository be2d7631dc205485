/* /init of the nested test guests (guest-initrd.sh builds it): prints the
 * marker SMOLVM-GUEST-UP as the first thing PID 1 does, stamps it into the
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

/* The stack the kernel set up: argc, argv[], NULL, envp[], NULL. */
__attribute__((noreturn, used)) static void preinit(long *stack)
{
    char **argv = (char **)(stack + 1);
    char **envp = argv + stack[0] + 1;
    char *shell_argv[] = {"/bin/sh", "/init.sh", 0};

    SAY(1, "SMOLVM-GUEST-UP\n");
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
