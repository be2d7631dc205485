/* smolvm-net's seccomp filter (slirp_seccomp.h): libslirp parses every
 * frame the guest sends, so a bug there must not give the guest a process
 * that can run programs, make processes or write the user's files. Installed
 * once slirp is up and the forwards listen, before the first guest frame. */
#include "net/slirp_seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#define END NULL

static const char *const allowed[] = {
    /* The loop: the VMM's frames in and out in batches, waiting on them
     * and on the NAT's sockets. */
    "poll", "ppoll", "recvmmsg", "sendmmsg", "read", "readv", "write", "writev", "close",
    /* The NAT's connections for the guest: TCP and UDP to the host's
     * network, the forwards' listeners accepting (SO_ERROR of a
     * non-blocking connect, O_NONBLOCK, FIONREAD below). */
    "bind", "connect", "listen", "accept", "accept4", "setsockopt", "getsockopt",
    "getsockname", "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown",
    "fcntl",
    /* The DNS forwarder rereads the host's /etc/resolv.conf (read-only:
     * see the open rules). */
    "fstat", "newfstatat", "stat", "statx", "lseek",
    /* Memory: the C library's and glib's allocators. */
    "brk", "mmap", "munmap", "mremap", "madvise", "mprotect",
    /* Timers (slirp's TCP and DHCP), glib's random numbers and locks. */
    "clock_gettime", "gettimeofday", "time", "nanosleep", "clock_nanosleep", "getrandom",
    "futex", "getpid", "gettid",
    /* Leaving: the exit and the signal mask of the C library. */
    "exit", "exit_group", "rt_sigreturn", "rt_sigprocmask", "restart_syscall",
    END,
};

/* The sanitizer runtimes of the test builds: their reports read
 * /proc/self/maps, LeakSanitizer's check at exit stops the process from a
 * tracer it clones. The shipped build has none of this. */
#if defined(__SANITIZE_ADDRESS__)
#define SLIRP_SANITIZED 1
#endif
#ifdef SLIRP_SANITIZED
static const char *const sanitizer_calls[] = {
    "sigaltstack", "prctl", "prlimit64", "sched_getaffinity", "readlink", "readlinkat",
    "getdents", "getdents64", "access", "faccessat", "faccessat2", "dup", "dup2", "dup3",
    "getppid", "clone", "ptrace", "wait4", "process_vm_readv", "rt_sigaction", "kill",
    "tgkill", "sched_yield",
    END,
};
#endif

static int allow_all(scmp_filter_ctx ctx, const char *const *names)
{
    for (; *names; names++) {
        int nr = seccomp_syscall_resolve_name(*names), r;
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a call of this architecture */
        if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)) < 0 && r != -EEXIST)
            return r;
    }
    return 0;
}

static int add_rules(scmp_filter_ctx ctx)
{
    /* Files opened to read only (resolv.conf, hosts): never made,
     * truncated or written. */
    const scmp_datum_t writes = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
    int r = allow_all(ctx, allowed);

    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
                             SCMP_A2(SCMP_CMP_MASKED_EQ, writes, 0));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(open), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, writes, 0));
    /* Sockets of the internet only (ICMP's datagram sockets included):
     * no unix sockets to the user's other programs. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, AF_INET));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, AF_INET6));
    /* How much a socket holds (slirp's urgent data, UDP's next datagram). */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, FIONREAD));
    /* isatty() of stderr: glib's g_warning(), which libslirp says things
     * with, asks before it colours a line. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TCGETS));
#ifdef SLIRP_SANITIZED
    if (r == 0)
        r = allow_all(ctx, sanitizer_calls);
#endif
    return r;
}

/* The one line, then the process ends (the call never ran). */
static void on_violation(int sig, siginfo_t *si, void *context)
{
    static const char head[] = "smolvm-net: seccomp: forbidden system call nr ";
    char nr[16];
    int i = sizeof(nr);
    unsigned n = (unsigned)si->si_syscall;

    (void)sig;
    (void)context;
    nr[--i] = '\n';
    do
        nr[--i] = (char)('0' + n % 10);
    while ((n /= 10) && i > 0);
    if (write(STDERR_FILENO, head, sizeof(head) - 1) < 0 ||
        write(STDERR_FILENO, nr + i, sizeof(nr) - (size_t)i) < 0) {
        /* Nowhere to say it: the VMM sees the helper gone. */
    }
    syscall(SYS_exit_group, 1);
}

int slirp_seccomp_install(void)
{
    struct sigaction sa;
    scmp_filter_ctx ctx;
    int r;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_violation;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0)
        return -errno;
    if (!(ctx = seccomp_init(SCMP_ACT_TRAP)))
        return -ENOMEM;
    r = add_rules(ctx);
    if (r == 0)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    return r;
}
