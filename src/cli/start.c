/* smolvm start: run a .smolmachine; with saved state it resumes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/control.h"
#include "api/spare.h"
#include "cli/cli.h"
#include "cli/jail.h"
#include "cli/serve.h"
#include "cli/vm_options.h"
#include "confine/confine.h"
#include "hv/hv.h"
#include "machine/instance.h"
#include "util/err.h"
#include "util/trace.h"

static const struct vm_options_help start_help = {
    "usage: smolvm start FILE.smolmachine [options]\n"
    "       smolvm start INSTANCE [options]      (from 'smolvm create')\n"
    "\n"
    "Starts the VM a bundle holds. A bundle saved with its state resumes where it\n"
    "was saved, skipping boot; one without boots its kernel. An instance boots on\n"
    "its layers, writing to its own delta. The console is this terminal; Ctrl-A x\n"
    "quits.\n"
    "\n",
    "\n"
    "Exit status: 0 when the guest powers off or is stopped, 1 on errors (a corrupt\n"
    "or truncated bundle included), 2 on a bad command line.\n",
};

/* --jail leaves the store out of the VMM's view (its instance.json
 * read-only, its lock absent): a process left outside marks a store
 * instance resumed once the VMM asks (one byte), and answers 'y' when it
 * did. Made before the jail; the VMM's end of the pair, or -1. */
static int resume_marker(const char *name)
{
    int pair[2];
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
        return err_set(errno, "socketpair");
    if ((pid = fork()) < 0) {
        close(pair[0]);
        close(pair[1]);
        return err_set(errno, "fork");
    }
    if (pid == 0) {
        /* Only its end of the pair (and stdio): the VM's sockets, and a
         * detached start's pipe to its parent, are not held open here. */
        if (dup2(pair[1], STDERR_FILENO + 1) < 0)
            _exit(1);
        close_range(STDERR_FILENO + 2, ~0u, 0);
        serve_mark_resumed_when_asked(STDERR_FILENO + 1, name, false);
    }
    close(pair[1]);
    return pair[0];
}

/* The instance's saved state now runs: later starts boot (directly, or
 * through resume_marker()'s process). Before the guest runs. */
static int mark_resumed(const char *name, int marker)
{
    char answer = 'n';

    if (marker < 0)
        return machine_instance_resumed(name);
    if (write(marker, "r", 1) != 1 || read(marker, &answer, 1) != 1 || answer != 'y')
        return err_plain(EIO, "instance '%s': its saved state was not marked resumed", name);
    close(marker);
    return 0;
}

/* A spare's VMM forked before the spare is told what to start
 * (fork_waiting_vmm()), as the spare sees it: the child it forked (the
 * VMM; under --jail, its relay to be), the pipe the name goes down, the
 * one the VMM says it runs on (serve_detached_ahead()); under --jail,
 * the resume marker (resume_marker(), made ahead: outside the
 * namespaces the VMM's relay joins) and its name's pipe. */
struct waiting_vmm {
    pid_t child, marker; /* 0: none */
    int name_fd, ready_fd, marker_name_fd;
};

/* In the VMM forked ahead, once named: its ends of the ready pipe and
 * (--jail) of the resume marker's pair; -1: this is no such VMM. */
static int waited_ready_fd = -1, waited_marker_fd = -1;

/* A machine's name, one line from fd (the spare's own pipes: the name was
 * checked as the daemon gave it, and each comes in one write: send_name()).
 * 0, or -1 at the pipe's end first. */
static int read_name(int fd, char *name, size_t size)
{
    size_t len = 0;
    ssize_t n;
    char *end = NULL;

    while (!end && len < size - 1 &&
           ((n = read(fd, name + len, size - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            end = memchr(name + len, '\n', (size_t)n), len += (size_t)n;
    close(fd);
    if (!end || end != name + len - 1)
        return -1;
    *end = '\0';
    return 0;
}

/* name and its newline in one write (a pipe's: atomic), to a child that
 * may have ended (said, not this process ended by SIGPIPE). */
static int send_name(int fd, const char *name)
{
    char line[CONTROL_NAME_MAX + 2];
    int len = snprintf(line, sizeof(line), "%s\n", name);
    void (*was)(int) = signal(SIGPIPE, SIG_IGN);
    int r = len > 0 && (size_t)len < sizeof(line) && write(fd, line, (size_t)len) == len ? 0 : -1;

    signal(SIGPIPE, was);
    return r;
}

/* The resume marker made ahead: it waits for the name on name_fd, then
 * as resume_marker()'s. Its output goes nowhere: it must not hold the
 * daemon's pipe, which ends once the spare has; why it did not mark goes
 * to the VM's log, which the VMM made before asking. Its pid, or -1. */
static pid_t fork_marker(int pair, int name_fd)
{
    pid_t pid = fork();
    char name[CONTROL_NAME_MAX + 2];
    int null;

    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the spare gone unnamed: with it */
    setpriority(PRIO_PROCESS, 0, 19); /* off the VMM's way: it waits, then marks once */
    if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 || dup2(null, STDIN_FILENO) < 0 ||
        dup2(null, STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0 ||
        dup2(pair, STDERR_FILENO + 1) < 0 || dup2(name_fd, STDERR_FILENO + 2) < 0)
        _exit(1);
    close_range(STDERR_FILENO + 3, ~0u, 0);
    if (read_name(STDERR_FILENO + 2, name, sizeof(name)) < 0)
        _exit(0);
    prctl(PR_SET_PDEATHSIG, 0); /* it outlives the spare, as the VM does */
    serve_mark_resumed_when_asked(STDERR_FILENO + 1, name, true);
}

static void close_all(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]), fds[i] = -1;
}

/* In the child fork_waiting_vmm() made, under --jail: the VMM forked into
 * the template's namespaces (returns in it, down its end of the pipe its
 * relay names it down); this process its relay, which learns the name on
 * name_fd, holds what the VM leaves (cli_confine_relay_waiting()) and
 * relays, never returning; vmms, the VMM's ends of the spare's pipes, it
 * does not keep. An error: this child ends (the spare starts
 * the machine the normal way). */
static int fork_into_template(int name_fd, int vmms[2])
{
    int down[2];
    char name[CONTROL_NAME_MAX + 2];

    if (pipe2(down, O_CLOEXEC) < 0)
        _exit(1);
    int r = cli_confine_fork_waiting();
    if (r < 0) { /* said, in case it is named before the spare sees it gone */
        fprintf(stderr, "smolvm: start: --jail: %s\n",
                r == -ENOTRECOVERABLE ? err_msg() : strerror(-r));
        _exit(1);
    }
    if (r == 1) {
        close(down[1]);
        close(name_fd);
        return down[0];
    }
    close(down[0]);
    close_all(vmms, 2); /* the VMM's ends alone: its end closes them */
    if (read_name(name_fd, name, sizeof(name)) < 0)
        _exit(0); /* ended unnamed: the VMM with it (its pipe's end) */
    /* The VM outlives the spare; the relay with it, in its session, its
     * output nowhere (the daemon reads the spare's to its end). */
    prctl(PR_SET_PDEATHSIG, 0);
    setsid();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0 ||
        dup2(null, STDERR_FILENO) < 0)
        _exit(1);
    close(null);
    cli_confine_relay_waiting(name, down[1]);
}

/* The threads a started machine's VMM makes besides its main thread, but
 * for the disks, shares and vCPUs some add: made ahead in a spare's VMM,
 * each with its filter loaded (confine_threads_ahead()). */
static const unsigned threads_ahead[CONFINE_THREAD_KINDS] = {
    [CONFINE_VCPU] = 1,
    [CONFINE_DEVICE] = 1,  /* a disk's queue thread */
    [CONFINE_CONSOLE] = 1, /* the console's writer */
    [CONFINE_VSOCK] = 1,
    [CONFINE_MEMORY] = 1,  /* the memory cache's, or a first start's */
};

/* A spare's VMM, forked now, before the spare is told what to start: its
 * VM made (KVM_CREATE_VM and its devices: 10-25 ms of a start in the
 * nested L1), and under --jail, the template's namespaces joined and its
 * pid namespace made (jail_fork_waiting()). It makes nothing of a
 * machine's before it is named, which the spare does only once the daemon
 * said SPARE_GO and (--jail) the template is still the host's. Returns 1
 * in the VMM once named (told); 0 in the spare (w->child 0: none forked,
 * the start goes on here as ever). */
static int fork_waiting_vmm(const struct vm_options *o, struct waiting_vmm *w, char *told,
                            size_t size)
{
    int name[2] = {-1, -1}, ready[2] = {-1, -1}, pair[2] = {-1, -1}, marker_name[2] = {-1, -1};
    uint64_t began = trace_now_us();

    *w = (struct waiting_vmm){0, 0, -1, -1, -1};
    if (!o->detach || (o->jail && !cli_confine_template_made()))
        return 0; /* no template (no namespaces here): the start makes its jail whole */
    if (o->cpu_quota_milli || o->mem_limit)
        return 0; /* a cgroup to enter first, its relay too: as fork_vmm_ahead() (review 46) */
    if (pipe2(name, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0 ||
        (o->jail && (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0 ||
                     pipe2(marker_name, O_CLOEXEC) < 0 ||
                     (w->marker = fork_marker(pair[1], marker_name[0])) < 0))) {
        w->marker = 0;
        close_all((int[]){name[0], name[1], ready[0], ready[1], pair[0], pair[1],
                          marker_name[0], marker_name[1]}, 8);
        return 0;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { /* the marker ends at its pipe's end (tell_waiting_vmm()) */
        close_all((int[]){name[0], name[1], ready[0], ready[1], pair[0], pair[1], marker_name[0]}, 7);
        w->marker_name_fd = marker_name[1];
        return 0;
    }
    if (pid > 0) {
        close_all((int[]){name[0], ready[1], pair[0], pair[1], marker_name[0]}, 5);
        *w = (struct waiting_vmm){pid, w->marker, name[1], ready[0], marker_name[1]};
        return 0;
    }
    close_all((int[]){o->spare_fd, name[1], ready[0], pair[1], marker_name[0], marker_name[1]}, 6);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the spare gone unnamed: with it */
    int from = o->jail ? fork_into_template(name[0], (int[2]){ready[1], pair[0]}) : name[0];
    if (hv_vm_create_ahead() < 0)
        err_clear(); /* said where the VM is made again */
    confine_threads_ahead(threads_ahead, o->jail);
    trace_add_count(TRACE_SPARE_VMM_AHEAD_US, trace_now_us() - began);
    if (read_name(from, told, size) < 0)
        _exit(0); /* the spare ended unnamed, or starts the machine itself */
    instance_name_told(told);
    if (!o->jail)
        prctl(PR_SET_PDEATHSIG, 0); /* it outlives the spare; a jailed one its relay's */
    waited_ready_fd = ready[1];
    waited_marker_fd = pair[0];
    return 1;
}

/* The spare named (told; NULL: ended): its waiting VMM told (the marker
 * first), or, when the template is no longer the host's (or what is named
 * is no instance, which only a whole jail fits), let go of -- it ends,
 * and so does the marker -- and false. */
static bool tell_waiting_vmm(const struct vm_options *o, struct waiting_vmm *w, const char *told)
{
    /* The marker first (at nice 19: it only reads it now): a VMM told
     * its name is committed to, one the spare could not tell is not. */
    bool told_it = w->child && told &&
                   (!o->jail || (instance_named(told) && cli_confine_ahead_current())) &&
                   (!w->marker || send_name(w->marker_name_fd, told) == 0) &&
                   send_name(w->name_fd, told) == 0;

    close_all((int[]){w->name_fd, w->marker_name_fd}, 2);
    if (told_it)
        return true;
    if (w->ready_fd >= 0)
        close(w->ready_fd);
    while (w->child && waitpid(w->child, NULL, 0) < 0 && errno == EINTR)
        ;
    while (w->marker && waitpid(w->marker, NULL, 0) < 0 && errno == EINTR)
        ;
    return false;
}

/* A spare (api/spare.h): what does not depend on the machine done, then
 * its name awaited. CLI_OK and told "" when the daemon ended it unused.
 * In a VMM forked ahead, *waited set: its name told. */
static int spare_told(const struct vm_options *o, char *told, size_t size, bool *waited)
{
    struct waiting_vmm w;

    cli_confine_ahead(o);
    if ((*waited = fork_waiting_vmm(o, &w, told, size) == 1))
        goto named;
    int r = spare_take_name(o->spare_fd, told, size);

    close(o->spare_fd);
    if (r == 0)
        instance_name_told(told);
    if (r < 0) { /* its template's folder too (a daemon killed, even after its name) */
        tell_waiting_vmm(o, &w, NULL);
        cli_confine_ahead_release();
    }
    if (r == -ECONNRESET) {
        *told = '\0';
        return CLI_OK;
    }
    if (r < 0)
        return cli_fail(CLI_USAGE, "--spare-fd: %s", r == -EINVAL ? err_msg() : strerror(-r));
    if (tell_waiting_vmm(o, &w, told)) {
        /* The VMM starts it: this process says how it went. */
        int code = serve_wait_for_vmm(told, w.ready_fd, w.child);
        *told = '\0';
        return code;
    }
named:
    /* Timed from here, as a start is from its exec: its own work. */
    trace_set_count(TRACE_SPARE_WAITED_US, (uint64_t)trace_restart() / 1000);
    trace_mark(TRACE_SPARE_NAMED);
    return CLI_OK;
}

int cli_start(int argc, char **argv)
{
    struct vm_options o = {0};
    struct server *server;
    struct machine_start_options so = {.interactive = isatty(STDIN_FILENO)};
    struct machine *m;
    int code = vm_options_parse(VM_OPT_START, &start_help, argc, argv, &o);

    if (code == VM_OPTIONS_HELP)
        return CLI_OK;
    if (code != CLI_OK)
        return code;
    so.trace_until = o.serve.trace_until;
    /* A bundle that boots (no saved state): its kernel's and init's phases
     * when its command line has them stamped (run's printk.time=1). */
    if (o.serve.trace_boot)
        trace_guest_enable();
    so.memory = o.memory;
    so.trusted_key = o.trusted_key;
    so.forwards = &o.vm.net; /* -p: replaces the bundle's forwards */
    so.shares = o.vm.shares;
    so.share_count = o.vm.share_count;
    const char *name = o.name, *what;
    char told[CONTROL_NAME_MAX + 2];
    if (o.spare_fd ? optind != argc : optind != argc - 1)
        return cli_fail(CLI_USAGE, o.spare_fd ? "--spare-fd: the machine is named on FD, not here"
                                              : "start takes one bundle (try 'smolvm start --help')");
    if (cli_hv_check(o.jail || o.detach) < 0 || /* before any work, say what to do */
        confine_seccomp_set(o.serve.seccomp, "start") < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    bool waited = false; /* a spare's VMM forked before it was named (fork_waiting_vmm()) */
    if (o.spare_fd && ((code = spare_told(&o, told, sizeof(told), &waited)) != CLI_OK || !*told))
        return code;
    what = o.spare_fd ? told : argv[optind];
    if (!name && instance_named(what))
        name = what; /* an instance runs under its own name */
    code = serve_open(name, &server);
    if (code == CLI_OK && o.jail && (code = serve_use_own_folder(server)) != CLI_OK)
        serve_abort(server);
    if (code != CLI_OK)
        return code;
    if (o.detach && waited) {
        if ((code = serve_detached_ahead(server, waited_ready_fd)) != CLI_OK)
            return code;
        so.interactive = false; /* its VM made before it was named */
    } else if (o.detach) {
        bool parent;
        code = serve_detach(server, &parent);
        if (parent || code != CLI_OK)
            return code;
        so.interactive = false;
        /* The VMM now: its VM made beside the store's reading and the
         * bundle's (a jailed one makes it beside its root's building). */
        if (!o.jail)
            hv_vm_create_begin();
    }
    so.name = serve_name(server);
    so.vsock_path = serve_vsock_path(server);
    /* The store is read, and written, outside the jail. */
    bool instance = instance_named(what);
    int marker = -1;
    if (machine_start_named_prepare(what) < 0 ||
        (instance && o.jail && (marker = waited ? waited_marker_fd : resume_marker(what)) < 0)) {
        serve_abort(server);
        return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    code = cli_confine(&o, so.name, true, what);
    if (code != CLI_OK) {
        serve_abort(server);
        return code;
    }
    trace_mark(TRACE_VMM_READY);
    if (machine_start_named(what, &so, &m) < 0) {
        serve_abort(server);
        return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    if (instance && machine_resumed(m) && mark_resumed(what, marker) < 0) {
        code = cli_fail(CLI_FAILED, "%s", err_msg());
        machine_destroy(m); /* resumed twice, the state would meet a disk moved on */
        serve_abort(server);
        return code;
    }
    return serve_machine(server, m, &o.serve);
}
