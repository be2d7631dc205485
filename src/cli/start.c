/* smolvm start: run a .smolmachine; with saved state it resumes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/control.h"
#include "api/spare.h"
#include "cli/cli.h"
#include "cli/jail.h"
#include "cli/serve.h"
#include "cli/vm_options.h"
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
        char asked, answer = 'n';
        /* Only its end of the pair (and stdio): the VM's sockets, and a
         * detached start's pipe to its parent, are not held open here. */
        if (dup2(pair[1], STDERR_FILENO + 1) < 0)
            _exit(1);
        close_range(STDERR_FILENO + 2, ~0u, 0);
        pair[1] = STDERR_FILENO + 1;
        if (read(pair[1], &asked, 1) == 1) {
            if (machine_instance_resumed(name) == 0)
                answer = 'y';
            else
                fprintf(stderr, "smolvm: start: %s\n", err_msg());
            if (write(pair[1], &answer, 1) != 1) {
                /* the VMM is gone: it starts nothing */
            }
        }
        _exit(0);
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

/* A spare (api/spare.h): what does not depend on the machine done, then
 * its name awaited. CLI_OK and told "" when the daemon ended it unused. */
static int spare_told(const struct vm_options *o, char *told, size_t size)
{
    cli_confine_ahead(o);
    int r = spare_take_name(o->spare_fd, told, size);

    close(o->spare_fd);
    if (r < 0) /* its template's folder too (a daemon killed, even after its name) */
        cli_confine_ahead_release();
    if (r == -ECONNRESET) {
        *told = '\0';
        return CLI_OK;
    }
    if (r < 0)
        return cli_fail(CLI_USAGE, "--spare-fd: %s", r == -EINVAL ? err_msg() : strerror(-r));
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
    if (o.spare_fd && ((code = spare_told(&o, told, sizeof(told))) != CLI_OK || !*told))
        return code;
    what = o.spare_fd ? told : argv[optind];
    if (!name && instance_named(what))
        name = what; /* an instance runs under its own name */
    code = serve_open(name, &server);
    if (code == CLI_OK && o.jail && (code = serve_use_own_folder(server)) != CLI_OK)
        serve_abort(server);
    if (code != CLI_OK)
        return code;
    if (o.detach) {
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
        (instance && o.jail && (marker = resume_marker(what)) < 0)) {
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
