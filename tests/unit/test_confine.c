/* The seccomp filters of confine/seccomp.c: each kind of thread, in a
 * forked child, makes calls its filter allows and lives, then one it
 * forbids and the child ends with exit status 1 and the one line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "confine/confine.h"
#include "util/trace.h"

struct job {
    enum confine_thread kind;
    void (*allowed)(void); /* calls kind may make */
    void (*forbidden)(void); /* one call it may not */
};

/* What every kind does all the time: locks, malloc's big blocks (mmap),
 * eventfd signals, the clock, a line to stderr. */
static void runtime(void)
{
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    struct timespec now;
    pthread_mutex_lock(&lock);
    pthread_mutex_unlock(&lock);
    free(malloc(8 << 20));
    clock_gettime(CLOCK_MONOTONIC, &now);
    fprintf(stderr, "alive\n");
}

static int event_fd = -1;
static int socket_fds[2] = {-1, -1}; /* like the slirp helper's socketpair */

/* A disk's and virtio-net's I/O: on fds opened before the filter. */
static void fd_io(void)
{
    uint64_t count = 1;
    char frame[64] = "frame";
    runtime();
    assert_int_equal(write(event_fd, &count, sizeof(count)), sizeof(count));
    assert_int_equal(read(event_fd, &count, sizeof(count)), sizeof(count));
    fdatasync(event_fd);
    assert_int_equal(send(socket_fds[0], frame, sizeof(frame), MSG_DONTWAIT | MSG_NOSIGNAL),
                     sizeof(frame));
    assert_int_equal(recv(socket_fds[1], frame, sizeof(frame), MSG_DONTWAIT), sizeof(frame));
    /* virtio-net sets a TAP's offloads; harmless on an eventfd: ENOTTY. */
    assert_int_equal(ioctl(event_fd, TUNSETOFFLOAD, 0), -1);
}

static void *thread_main(void *arg)
{
    const struct job *j = arg;
    confine_thread(j->kind, "test");
    j->allowed();
    if (j->forbidden)
        j->forbidden();
    return NULL;
}

/* Threads the child makes ahead (confine_threads_ahead()) before it hands
 * j to one of j's kind (confine_thread_start()); NULL: none, j gets a
 * thread of its own. */
static const unsigned *jobs_ahead;

/* j's thread, made or handed j (jobs_ahead). 0 or an error number. */
static int start_job(const struct job *j, pthread_t *t)
{
    if (!jobs_ahead)
        return pthread_create(t, NULL, thread_main, (void *)j);
    confine_threads_ahead(jobs_ahead, false);
    return confine_thread_start(t, j->kind, thread_main, (void *)j);
}

/* Runs j on a thread of a forked child with the filters in mode (made ahead: jobs_ahead); returns
 * the child's wait status, its stderr in err. */
static int run_job(enum confine_seccomp mode, const struct job *j, char *err, size_t size)
{
    int pipe_fds[2];
    assert_int_equal(pipe(pipe_fds), 0);
    event_fd = eventfd(0, EFD_CLOEXEC);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, socket_fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_t t;
        dup2(pipe_fds[1], STDERR_FILENO);
        if (confine_seccomp_set(mode, "run") < 0 || start_job(j, &t))
            _exit(3);
        pthread_join(t, NULL);
        _exit(0);
    }
    close(pipe_fds[1]);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < size && (n = read(pipe_fds[0], err + got, size - 1 - got)) > 0)
        got += (size_t)n;
    err[got] = '\0';
    close(pipe_fds[0]);
    close(event_fd);
    close(socket_fds[0]);
    close(socket_fds[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void expect_killed(const struct job *j, const char *call)
{
    char err[512], want[256];
    int status = run_job(CONFINE_SECCOMP_ON, j, err, sizeof(err));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    snprintf(want, sizeof(want), "smolvm: run: seccomp: thread test made a forbidden "
                                 "system call %s (nr ", call);
    /* The allowed calls ran first; the line is the last one. */
    const char *line = strstr(err, want);
    if (!line || (line != err && line[-1] != '\n'))
        fail_msg("stderr: '%s', wanted a line '%s...'", err, want);
    assert_ptr_equal(strchr(line, '\n'), err + strlen(err) - 1);
}

static void expect_lives(enum confine_seccomp mode, const struct job *j)
{
    char err[512];
    int status = run_job(mode, j, err, sizeof(err));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("status %#x, stderr: '%s'", status, err);
}

/* The sanitizer runtimes' reports open /proc files from any thread: the
 * test builds allow that (seccomp.c), the shipped build does not. */
static void expect_open_killed(const struct job *j)
{
#ifdef CONFINE_SANITIZED
    expect_lives(CONFINE_SECCOMP_ON, j);
#else
    expect_killed(j, "openat");
#endif
}

static void exec_something(void)
{
    static char *const argv[] = {"true", NULL};
    execve("/nonexistent/smolvm-test", argv, NULL);
}

static void open_file(void)
{
    close(open("/etc/hostname", O_RDONLY | O_CLOEXEC));
}

static void inet_socket(void)
{
    close(socket(AF_INET, SOCK_STREAM, 0));
}

static void unix_socket(void)
{
    runtime();
    close(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
}

static void kvm_run(void)
{
    fd_io();
    /* Allowed, and harmless on an eventfd: ENOTTY. */
    assert_int_equal(ioctl(event_fd, KVM_RUN, 0), -1);
}

static void other_ioctl(void)
{
    int n;
    ioctl(event_fd, FIONREAD, &n);
}

static void *nothing(void *arg)
{
    return arg;
}

static void threads(void)
{
    pthread_t t;
    runtime();
    assert_int_equal(pthread_create(&t, NULL, nothing, NULL), 0);
    pthread_join(t, NULL);
    open_file();
}

#ifndef CONFINE_SANITIZED
static void fork_process(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
}
#endif

static void every_kind_lives_on_its_calls_and_dies_on_exec(void **state)
{
    (void)state;
    for (int kind = 0; kind < CONFINE_THREAD_KINDS; kind++) {
        struct job j = {(enum confine_thread)kind, runtime, exec_something};
        expect_killed(&j, "execve");
    }
}

static void vcpu_runs_the_guest_but_opens_nothing(void **state)
{
    (void)state;
    struct job run = {CONFINE_VCPU, kvm_run, NULL};
    expect_lives(CONFINE_SECCOMP_ON, &run);
    struct job other = {CONFINE_VCPU, kvm_run, other_ioctl};
    expect_killed(&other, "ioctl");
    struct job open_one = {CONFINE_VCPU, fd_io, open_file};
    expect_open_killed(&open_one);
}

static void devices_open_nothing_and_make_no_sockets(void **state)
{
    (void)state;
    struct job io = {CONFINE_DEVICE, fd_io, NULL};
    expect_lives(CONFINE_SECCOMP_ON, &io);
    struct job open_one = {CONFINE_DEVICE, fd_io, open_file};
    expect_open_killed(&open_one);
    struct job sock = {CONFINE_DEVICE, fd_io, unix_socket};
    expect_killed(&sock, "socket");
}

static void vsock_makes_unix_sockets_only(void **state)
{
    (void)state;
    struct job unix_one = {CONFINE_VSOCK, unix_socket, NULL};
    expect_lives(CONFINE_SECCOMP_ON, &unix_one);
    struct job inet = {CONFINE_VSOCK, unix_socket, inet_socket};
    expect_killed(&inet, "socket");
}

static void fs_opens_files(void **state)
{
    (void)state;
    struct job open_one = {CONFINE_FS, open_file, NULL};
    expect_lives(CONFINE_SECCOMP_ON, &open_one);
    struct job inet = {CONFINE_FS, open_file, inet_socket};
    expect_killed(&inet, "socket");
}

static void vmm_makes_threads_not_processes(void **state)
{
    (void)state;
    struct job t = {CONFINE_VMM, threads, NULL};
    expect_lives(CONFINE_SECCOMP_ON, &t);
#ifdef CONFINE_SANITIZED
    skip(); /* LeakSanitizer's tracer is a clone of any kind (seccomp.c) */
#else
    struct job f = {CONFINE_VMM, threads, fork_process};
    expect_killed(&f, "clone");
#endif
}

/* migrate's link, as the VMM gets it: connected, passed with the request
 * (recvmsg), checked to be a stream socket, written on. */
static void passed_link_io(void)
{
    int type = 0;
    socklen_t len = sizeof(type);
    fd_io();
    assert_int_equal(getsockopt(socket_fds[0], SOL_SOCKET, SO_TYPE, &type, &len), 0);
}

/* The VMM sends on the link `smolvm migrate` passed it, and dials nothing
 * itself: no socket of any family (a jailed VMM could reach no destination
 * anyway, and a taken-over one gets no new connection). */
static void vmm_sends_on_a_passed_link_but_dials_nothing(void **state)
{
    (void)state;
    struct job link = {CONFINE_VMM, passed_link_io, NULL};
    expect_lives(CONFINE_SECCOMP_ON, &link);
    struct job inet = {CONFINE_VMM, passed_link_io, inet_socket};
    expect_killed(&inet, "socket");
    struct job local = {CONFINE_VMM, passed_link_io, unix_socket};
    expect_killed(&local, "socket");
}

/* A migrated VM's teardown (machine_destroy()) puts the VMM thread at
 * SCHED_IDLE; no other policy (a higher one needs no filter to be
 * refused, a lower one is all the teardown wants). */
static void idle_policy(void)
{
    struct sched_param none = {0};
    runtime();
    assert_int_equal(pthread_setschedparam(pthread_self(), SCHED_IDLE, &none), 0);
}

static void batch_policy(void)
{
    struct sched_param none = {0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &none);
}

static void vmm_may_step_back_to_idle_only(void **state)
{
    (void)state;
    struct job idle = {CONFINE_VMM, idle_policy, NULL};
    expect_lives(CONFINE_SECCOMP_ON, &idle);
    struct job batch = {CONFINE_VMM, runtime, batch_policy};
    expect_killed(&batch, "sched_setscheduler");
}

static void log_mode_and_off_let_the_call_happen(void **state)
{
    (void)state;
    struct job j = {CONFINE_VCPU, runtime, exec_something};
    expect_lives(CONFINE_SECCOMP_LOG, &j);
    expect_lives(CONFINE_SECCOMP_OFF, &j);
}

static void status_line(void)
{
    char buf[4096];
    int fd = open("/proc/thread-self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    const char *line = strstr(buf, "\nSeccomp:");
    line = line ? line + 1 : "none\n";
    fprintf(stderr, "%.*s\n", (int)strcspn(line, "\n"), line);
}

static void the_thread_shows_seccomp_2(void **state)
{
    char err[512];
    (void)state;
    struct job j = {CONFINE_FS, status_line, NULL};
    assert_int_equal(run_job(CONFINE_SECCOMP_ON, &j, err, sizeof(err)), 0);
    assert_string_equal(err, "Seccomp:\t2\n");
    assert_int_equal(run_job(CONFINE_SECCOMP_OFF, &j, err, sizeof(err)), 0);
    assert_string_equal(err, "Seccomp:\t0\n");
    assert_string_equal(confine_seccomp_name(), "off");
}

/* How many threads of this process show "Seccomp:\t2", their ids into
 * tids (up to 8); powerless: all of them without capabilities too (as
 * root: unprivileged, the bounding set cannot be dropped). */
static unsigned threads_confined(pid_t tids[8], bool *powerless)
{
    char path[300], buf[4096];
    unsigned n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;

    *powerless = true;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t got = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
        if (fd >= 0)
            close(fd);
        buf[got > 0 ? got : 0] = '\0';
        if (!strstr(buf, "\nSeccomp:\t2\n") || n >= 8)
            continue;
        tids[n++] = (pid_t)atoi(e->d_name);
        if (!strstr(buf, "\nCapEff:\t0000000000000000\n") ||
            (geteuid() == 0 && !strstr(buf, "\nCapBnd:\t0000000000000000\n")))
            *powerless = false;
    }
    if (d)
        closedir(d);
    return n;
}

static pid_t worked_on;

static void *note_thread(void *arg)
{
    confine_thread(CONFINE_DEVICE, "test");
    worked_on = gettid();
    return arg;
}

/* What the child of made_ahead_threads_take_the_work() checks: its exit
 * status says which failed (0: none). */
static int check_made_ahead(void)
{
    static const unsigned counts[CONFINE_THREAD_KINDS] = {[CONFINE_DEVICE] = 1, [CONFINE_VCPU] = 1};
    pid_t tids[8];
    pthread_t t;
    bool powerless;

    if (confine_seccomp_set(CONFINE_SECCOMP_ON, "run") < 0)
        return 3;
    confine_threads_ahead(counts, true);
    if (threads_confined(tids, &powerless) != 2) /* each under its filter, no work handed yet */
        return 10;
    if (!powerless)
        return 17; /* their capabilities kept */
    if (confine_thread_start(&t, CONFINE_DEVICE, note_thread, NULL) || pthread_join(t, NULL))
        return 11;
    if (worked_on != tids[0] && worked_on != tids[1])
        return 12; /* not on a thread made ahead */
    if (trace_count(TRACE_SECCOMP_LOADS) != 0 || trace_count(TRACE_SECCOMP_AHEAD_LOADS) != 2)
        return 13; /* its confine_thread() loaded the filter again */
    if (confine_thread_start(&t, CONFINE_DEVICE, note_thread, NULL) || pthread_join(t, NULL))
        return 14;
    if (trace_count(TRACE_SECCOMP_LOADS) != 1)
        return 15; /* none of the kind left: a new thread, which loads its own */
    confine_threads_ahead_end(); /* the vCPU's, never taken, ends */
    if (threads_confined(tids, &powerless) != 0)
        return 16;
    return 0;
}

/* Threads made ahead (a spare's VMM, before its name): each under its
 * kind's filter before any work is handed to it; the work of its kind
 * runs on it without loading the filter again; with none of the kind
 * left a thread is made as ever; those not taken end. */
static void made_ahead_threads_take_the_work(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(check_made_ahead());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A thread made ahead is its kind's filter: the device checks above, on
 * one, end the same (the line naming the work's thread). */
static void made_ahead_threads_die_on_a_forbidden_call(void **state)
{
    static const unsigned counts[CONFINE_THREAD_KINDS] = {[CONFINE_DEVICE] = 1};
    jobs_ahead = counts;
    devices_open_nothing_and_make_no_sockets(state);
    jobs_ahead = NULL;
}

/* A VMM's end as the real one ends: the VMM's own thread confined, a
 * vCPU thread started and joined, then exit() -- not _exit() -- so the
 * exit handlers run. In the test builds that is LeakSanitizer's check: it
 * clones a tracer (no CLONE_THREAD: the caller's filter, SIGSYS blocked)
 * and spins in sched_yield until the tracer is done, so a call the filter
 * refuses the tracer kills it silently and the VMM never ends (a migrated
 * VM's source, nested migrate_load: the tracer listed the threads with
 * getdents, not getdents64). */
static void vmm_exit_ends(void **state)
{
    (void)state;
    struct job vcpu = {CONFINE_VCPU, runtime, NULL};
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_t t;
        if (confine_seccomp_set(CONFINE_SECCOMP_ON, "run") < 0 ||
            pthread_create(&t, NULL, thread_main, &vcpu))
            _exit(3);
        pthread_join(t, NULL);
        confine_thread(CONFINE_VMM, "smolvm");
        free(malloc(64)); /* something for the leak check to look at */
        exit(0);
    }
    int status = 0;
    for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++)
        usleep(100 * 1000);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("a confined VMM did not end within 20 s of exit()");
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("status %#x", status);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_kind_lives_on_its_calls_and_dies_on_exec),
        cmocka_unit_test(vcpu_runs_the_guest_but_opens_nothing),
        cmocka_unit_test(devices_open_nothing_and_make_no_sockets),
        cmocka_unit_test(vsock_makes_unix_sockets_only),
        cmocka_unit_test(fs_opens_files),
        cmocka_unit_test(vmm_makes_threads_not_processes),
        cmocka_unit_test(vmm_sends_on_a_passed_link_but_dials_nothing),
        cmocka_unit_test(vmm_may_step_back_to_idle_only),
        cmocka_unit_test(log_mode_and_off_let_the_call_happen),
        cmocka_unit_test(the_thread_shows_seccomp_2),
        cmocka_unit_test(vmm_exit_ends),
        cmocka_unit_test(made_ahead_threads_take_the_work),
        cmocka_unit_test(made_ahead_threads_die_on_a_forbidden_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
