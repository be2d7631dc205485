/* One seccomp filter per kind of VMM thread (confine.h), its rules those of
 * seccomp_rules.c. Their programs are made at build time (seccomp_gen.c),
 * so a thread only copies its kind's, puts the process's pid in where the
 * rules name it (seccomp_patch(): refused, and the process ended, unless
 * it is exactly there) and loads it: libseccomp built every filter at
 * every start before (bench/coldstart in the nested L1: 65 ms of a start;
 * a detached or jailed VM, a forked process, built each on its thread).
 * The relay's, which names the folders it holds open and its VMM, is
 * made for its folders at fixed numbers (seccomp_rules.h), its VMM's pid
 * a second sentinel; one that holds more (a cgroup, an arrival) builds
 * its own as it starts. */
#include "confine/confine.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine/jail.h"
#include "confine/seccomp_prebuilt.h"
#include "util/err.h"
#include "util/trace.h"

/* The thread's name for the violation line (the SIGSYS handler may not
 * call malloc or libseccomp; the calls' names are seccomp_programs.c's). */
static __thread char thread_name[16] = "main";
/* The kind whose filter this thread loaded; CONFINE_THREAD_KINDS: none. */
static __thread enum confine_thread loaded = CONFINE_THREAD_KINDS;
static enum confine_seccomp mode = CONFINE_SECCOMP_OFF;
static char verb[16] = "run";

static size_t append(char *buf, size_t at, size_t size, const char *s)
{
    while (*s && at + 1 < size)
        buf[at++] = *s++;
    buf[at] = '\0';
    return at;
}

static size_t append_number(char *buf, size_t at, size_t size, unsigned long n)
{
    char digits[24];
    size_t i = sizeof(digits) - 1;
    digits[i] = '\0';
    do
        digits[--i] = (char)('0' + n % 10);
    while ((n /= 10) && i > 0);
    return append(buf, at, size, digits + i);
}

/* The one line, then the process ends: the call itself never ran. Only
 * async-signal-safe calls, all of them allowed in every filter. */
static void on_violation(int sig, siginfo_t *si, void *context)
{
    char line[256];
    unsigned nr = (unsigned)si->si_syscall;
    const char *name = nr < SECCOMP_SYSCALL_NAMES && seccomp_syscall_names[nr][0]
                           ? seccomp_syscall_names[nr] : "?";
    size_t n = 0;

    (void)sig;
    (void)context;
    n = append(line, n, sizeof(line), "smolvm: ");
    n = append(line, n, sizeof(line), verb);
    n = append(line, n, sizeof(line), ": seccomp: thread ");
    n = append(line, n, sizeof(line), thread_name);
    n = append(line, n, sizeof(line), " made a forbidden system call ");
    n = append(line, n, sizeof(line), name);
    n = append(line, n, sizeof(line), " (nr ");
    n = append_number(line, n, sizeof(line), nr);
    n = append(line, n, sizeof(line), ")\n");
    if (write(STDERR_FILENO, line, n) < 0) {
        /* Nowhere to say it: the exit status still does. */
    }
    syscall(SYS_exit_group, 1);
}

/* SECCOMP_RET_LOG (Linux 4.14): libseccomp checked it when it built a
 * filter; a program made at build time is not checked again. */
static bool kernel_logs_filtered_calls(void)
{
    uint32_t action = SECCOMP_RET_LOG;
    return syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0;
}

int confine_seccomp_set(enum confine_seccomp m, const char *v)
{
    snprintf(verb, sizeof(verb), "%s", v);
    if (m != CONFINE_SECCOMP_OFF && prctl(PR_GET_SECCOMP) < 0)
        return err_set(errno, "seccomp: this kernel has no seccomp filters "
                              "(--seccomp=off runs the VM without them)");
    if (m == CONFINE_SECCOMP_ON) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_violation;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSYS, &sa, NULL) < 0)
            return err_set(errno, "seccomp: SIGSYS handler");
    }
    if (m == CONFINE_SECCOMP_LOG && !kernel_logs_filtered_calls())
        return err_set(EOPNOTSUPP, "seccomp: this kernel cannot log filtered calls "
                                   "(--seccomp=on or off)");
    mode = m;
    return 0;
}

enum confine_seccomp confine_seccomp_mode(void)
{
    return mode;
}

const char *confine_seccomp_name(void)
{
    switch (mode) {
    case CONFINE_SECCOMP_ON:
        return "on";
    case CONFINE_SECCOMP_LOG:
        return "log";
    default:
        return "off";
    }
}

static void fail(const char *what, int r)
{
    fprintf(stderr, "smolvm: %s: seccomp: cannot confine thread %s: %s: %s\n", verb,
            thread_name, what, strerror(-r));
    syscall(SYS_exit_group, 1);
}

static int copy_program(const struct sock_filter *insns, unsigned short len,
                        struct sock_fprog *out)
{
    out->filter = malloc(len * sizeof(*insns));
    if (!out->filter)
        return -ENOMEM;
    memcpy(out->filter, insns, len * sizeof(*insns));
    out->len = len;
    return 0;
}

int seccomp_prebuilt_program(enum confine_thread kind, enum confine_seccomp m, pid_t self,
                             struct sock_fprog *out)
{
    const struct seccomp_prebuilt *p;
    const struct sock_filter *insns;
    unsigned short len;
    unsigned sentinels;
    int r;

    *out = (struct sock_fprog){0};
    if (kind >= CONFINE_THREAD_KINDS || m == CONFINE_SECCOMP_OFF)
        return -EINVAL;
    p = &seccomp_prebuilt[kind][m == CONFINE_SECCOMP_LOG];
    if (!p->len)
        return -ENOENT;
    if (self <= 0)
        return -EINVAL;
    insns = p->insns;
    len = p->len;
    sentinels = p->self_count;
    for (unsigned i = 0; i < p->for_pid_count; i++)
        if (p->for_pids[i].pid == self) { /* made for this pid: no sentinel in it */
            insns = p->for_pids[i].insns;
            len = p->for_pids[i].len;
            sentinels = 0;
        }
    r = copy_program(insns, len, out);
    if (r == 0)
        r = seccomp_patch(out->filter, out->len, SECCOMP_SENTINEL_SELF, (uint32_t)self,
                          sentinels);
    if (r < 0) {
        free(out->filter);
        *out = (struct sock_fprog){0};
    }
    return r;
}

int seccomp_relay_prebuilt_program(enum confine_seccomp m, pid_t self, pid_t vmm,
                                   struct sock_fprog *out)
{
    bool self_above = self > vmm;
    const struct seccomp_prebuilt *p;
    int r;

    *out = (struct sock_fprog){0};
    if (m == CONFINE_SECCOMP_OFF || self <= 0 || vmm <= 0 || self == vmm ||
        self > SECCOMP_PID_MAX || vmm > SECCOMP_PID_MAX)
        return -EINVAL;
    p = &seccomp_relay_prebuilt[m == CONFINE_SECCOMP_LOG][self_above];
    if (seccomp_program_holds(p->insns, p->len, (uint32_t)self) ||
        seccomp_program_holds(p->insns, p->len, (uint32_t)vmm))
        return -ENOENT;
    r = copy_program(p->insns, p->len, out);
    if (r == 0)
        r = seccomp_patch(out->filter, out->len, SECCOMP_SENTINEL_SELF, (uint32_t)self,
                          SECCOMP_RELAY_NAMING_SELF);
    if (r == 0)
        r = seccomp_patch(out->filter, out->len,
                          self_above ? SECCOMP_SENTINEL_VMM_BELOW : SECCOMP_SENTINEL_VMM_ABOVE,
                          (uint32_t)vmm, SECCOMP_RELAY_NAMING_VMM);
    if (r < 0) {
        free(out->filter);
        *out = (struct sock_fprog){0};
    }
    return r;
}

/* What seccomp_load does with libseccomp's default attributes: no new
 * privileges, then the filter, on this thread only. The program is freed. */
static void load(struct sock_fprog *program)
{
    int r = 0;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, program) < 0)
        r = -errno;
    free(program->filter);
    if (r < 0)
        fail("loading its filter", r);
}

/* kind's program made at build time for values: the relay's only when
 * its folders are in their slots (seccomp_rules.h). -ENOENT: none. */
static int prebuilt_for(enum confine_thread kind, const struct seccomp_values *values,
                        struct sock_fprog *program)
{
    if (kind != CONFINE_RELAY)
        return seccomp_prebuilt_program(kind, mode, values->self, program);
    if (!seccomp_relay_in_slots(values))
        return -ENOENT;
    return seccomp_relay_prebuilt_program(mode, values->self, values->relay_vmm, program);
}

/* kind's program for this process: made at build time, or (a relay's
 * that holds a cgroup or an arrival, or whose pids its program compares
 * with elsewhere) built now from values. A thread made ahead
 * (thread_ahead.c) with kind's loaded is only named, for the violation
 * line (its name in /proc stays: renaming is no call its filter allows);
 * its load is counted apart from those of a start's own time. */
static void confine_with(enum confine_thread kind, const char *name,
                         const struct seccomp_values *values, bool ahead)
{
    struct sock_fprog program;
    int r;

    snprintf(thread_name, sizeof(thread_name), "%s", name);
    if (mode == CONFINE_SECCOMP_OFF || loaded == kind)
        return;
    pthread_setname_np(pthread_self(), thread_name);
    uint64_t start = trace_now_us(), cpu = trace_thread_cpu_us();
    r = prebuilt_for(kind, values, &program);
    if (r == -ENOENT && (r = seccomp_rules_program(kind, mode, values, &program)) < 0)
        fail("building its filter", r);
    if (r < 0)
        fail("putting its pid in its built-in filter", r);
    load(&program);
    loaded = kind;
    if (ahead) {
        trace_add_count(TRACE_SECCOMP_AHEAD_LOADS, 1);
        return;
    }
    trace_add_count(TRACE_SECCOMP_US, trace_now_us() - start);
    trace_add_count(TRACE_SECCOMP_CPU_US, trace_thread_cpu_us() - cpu);
    trace_add_count(TRACE_SECCOMP_LOADS, 1);
}

void confine_thread(enum confine_thread kind, const char *name)
{
    struct seccomp_values v = {.self = getpid(), .relay_cgroup_folder = -1};
    confine_with(kind, name, &v, false);
}

void confine_thread_ahead(enum confine_thread kind, const char *name)
{
    struct seccomp_values v = {.self = getpid(), .relay_cgroup_folder = -1};
    confine_with(kind, name, &v, true);
}

void confine_relay(pid_t vmm, const struct confine_relay_holds *holds)
{
    unsigned count = holds->leftover_count;
    struct seccomp_values v = {
        .self = getpid(),
        .relay_vmm = vmm,
        .relay_cgroup_folder = holds->cgroup_folder,
        .relay_leftover_dirs = holds->leftover_dirs,
        .relay_leftover_count = count < CONFINE_MAX_LEFTOVERS ? count : CONFINE_MAX_LEFTOVERS,
        .relay_arrival_pipe = holds->arrival_pipe,
        .relay_arrival_dir = holds->arrival_dir,
    };
    confine_with(CONFINE_RELAY, "jail-relay", &v, false);
}

void confine_test_violation(void)
{
#ifdef SMOLVM_TEST_HOOKS
    static const char *const argv[] = {"smolvm-seccomp-test", NULL};
    if (getenv("SMOLVM_TEST_SECCOMP_VIOLATION"))
        execve("/nonexistent/smolvm-seccomp-test", (char *const *)argv, NULL);
#endif
}
