/* Processes: fork and vfork (a copy of this process, guest and all; the
 * child turns Syscall User Dispatch on again for itself), execve (a BSD
 * executable stays under bsd-user: smolvm runs again with it; anything
 * else runs as it is), wait4 (the status's signal number translated). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "bsduser/internal.h"

#define MAX_ARGS 4096

/* fork(): the parent gets the child's pid and %rdx 0; the child 0 and
 * %rdx 1, which is how the BSDs' libc tells them apart. */
static long sys_fork(const long *a)
{
    (void)a;
    greg_t *g = ((ucontext_t *)bsd_context)->uc_mcontext.gregs;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    /* The child keeps the alternate stack it is on; dispatch is per task. */
    if (pid == 0 && bsd_dispatch_on() < 0)
        _exit(127);
    bsd_threads_forked(pid == 0);
    g[REG_RDX] = pid == 0;
    return pid;
}

/* A NULL-terminated array of guest strings, as host pointers (the guest's
 * memory is ours). NULL when malformed. */
static char **strings(uint64_t at)
{
    char **list = calloc(MAX_ARGS + 1, sizeof(*list));
    for (size_t i = 0; list && at; i++) {
        uint64_t p;
        if (i == MAX_ARGS || bsd_copy_in(&p, at + 8 * i, 8) < 0) {
            free(list);
            return NULL;
        }
        if (!p)
            break;
        list[i] = (char *)p;
    }
    return list;
}

/* execve(path, argv, envp): a BSD program goes through smolvm bsd-user
 * again (same options); any other runs as it is. */
static long sys_execve(const long *a)
{
    char buf[PATH_MAX];
    const char *path = bsd_path((uint64_t)a[0], buf, BSD_PATH_FIND);
    char **argv = strings((uint64_t)a[1]), **envp = strings((uint64_t)a[2]);
    long r = -EFAULT;

    if (!path)
        r = -EFAULT;
    else if (argv && envp && access(path, X_OK) < 0)
        r = -errno;
    else if (argv && envp && !bsd_probe(path))
        r = bsd_result(execve(path, argv, envp));
    else if (argv && envp) {
        size_t n = 0;
        while (argv[n])
            n++;
        char **again = calloc(n + 9, sizeof(*again));
        char trace_fd[16];
        /* -o FILE's descriptor goes on into the new smolvm (and only there). */
        bool pass_fd = bsd_tracing() && bsd_proc->trace_fd != STDERR_FILENO;
        size_t k = 0;
        if (again) {
            again[k++] = "smolvm";
            again[k++] = "bsd-user";
            if (bsd_tracing())
                again[k++] = "--strace";
            if (pass_fd && fcntl(bsd_proc->trace_fd, F_SETFD, 0) == 0) {
                snprintf(trace_fd, sizeof(trace_fd), "%d", bsd_proc->trace_fd);
                again[k++] = "--trace-fd";
                again[k++] = trace_fd;
            }
            if (bsd_root()) {
                again[k++] = "--root";
                again[k++] = (char *)bsd_root();
            }
            again[k++] = (char *)path;
            for (size_t i = 1; i < n; i++)
                again[k++] = argv[i];
            r = bsd_result(execve("/proc/self/exe", again, envp));
            if (pass_fd)
                fcntl(bsd_proc->trace_fd, F_SETFD, FD_CLOEXEC);
        }
        free(again);
    }
    free(argv);
    free(envp);
    return r;
}

/* The BSDs' wait options: WNOHANG 1, WUNTRACED 2, WCONTINUED 4. */
static int wait_options(long bsd)
{
    return (bsd & 1 ? WNOHANG : 0) | (bsd & 2 ? WUNTRACED : 0) | (bsd & 4 ? WCONTINUED : 0);
}

/* The same status encoding, with the BSD's signal numbers in it. */
static int bsd_status(int status)
{
    if (WIFSIGNALED(status))
        return (status & ~0x7f) | bsd_signal_number(WTERMSIG(status));
    if (WIFSTOPPED(status))
        return (bsd_signal_number(WSTOPSIG(status)) << 8) | 0x7f;
    return status;
}

static long sys_wait4(const long *a)
{
    int status = 0;
    struct rusage ru;
    pid_t pid = wait4((pid_t)a[0], &status, wait_options(a[2]), a[3] ? &ru : NULL);
    if (pid < 0)
        return -errno;
    status = bsd_status(status);
    if (pid > 0 && a[1] && bsd_copy_out((uint64_t)a[1], &status, sizeof(status)) < 0)
        return -EFAULT;
    /* struct rusage: two timevals and fourteen longs, the same on both. */
    if (pid > 0 && a[3] && bsd_copy_out((uint64_t)a[3], &ru, sizeof(ru)) < 0)
        return -EFAULT;
    return pid;
}

/* Process groups, sessions and ids: the same calls. */
static long sys_setpgid(const long *a) { return bsd_result(setpgid((pid_t)a[0], (pid_t)a[1])); }
static long sys_getpgid(const long *a) { return bsd_result(getpgid((pid_t)a[0])); }
static long sys_getpgrp(const long *a) { (void)a; return getpgrp(); }
static long sys_setsid(const long *a) { (void)a; return bsd_result(setsid()); }
static long sys_getsid(const long *a) { return bsd_result(getsid((pid_t)a[0])); }
static long sys_setuid(const long *a) { return bsd_result(syscall(SYS_setuid, (uid_t)a[0])); }
static long sys_setgid(const long *a) { return bsd_result(syscall(SYS_setgid, (gid_t)a[0])); }
static long sys_seteuid(const long *a) { return bsd_result(syscall(SYS_setresuid, -1, (uid_t)a[0], -1)); }
static long sys_setegid(const long *a) { return bsd_result(syscall(SYS_setresgid, -1, (gid_t)a[0], -1)); }
/* gid_t is 32 bits on all three. */
static long sys_getgroups(const long *a) { return bsd_result(syscall(SYS_getgroups, (int)a[0], (void *)a[1])); }
static long sys_setgroups(const long *a) { return bsd_result(syscall(SYS_setgroups, (int)a[0], (void *)a[1])); }

const struct bsd_handler bsd_process_calls[] = {
    {"setpgid", sys_setpgid}, {"getpgid", sys_getpgid}, {"getpgrp", sys_getpgrp},
    {"setsid", sys_setsid}, {"getsid", sys_getsid}, {"setuid", sys_setuid},
    {"setgid", sys_setgid}, {"seteuid", sys_seteuid}, {"setegid", sys_setegid},
    {"getgroups", sys_getgroups}, {"setgroups", sys_setgroups},
    {"fork", sys_fork}, {"vfork", sys_fork}, {"execve", sys_execve}, {"wait4", sys_wait4},
};
const size_t bsd_process_call_count = sizeof(bsd_process_calls) / sizeof(bsd_process_calls[0]);
