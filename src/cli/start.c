/* smolvm start: run a .smolmachine; with saved state it resumes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    const char *name = o.name;
    if (optind != argc - 1)
        return cli_fail(CLI_USAGE, "start takes one bundle (try 'smolvm start --help')");
    if (!name && instance_named(argv[optind]))
        name = argv[optind]; /* an instance runs under its own name */
    if (hv_check() < 0 || /* before any work, say what to do */
        confine_seccomp_set(o.serve.seccomp, "start") < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
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
    }
    so.name = serve_name(server);
    so.vsock_path = serve_vsock_path(server);
    code = cli_confine(&o, so.name, true, argv[optind]);
    if (code != CLI_OK) {
        serve_abort(server);
        return code;
    }
    trace_mark(TRACE_VMM_READY);
    if (machine_start_named(argv[optind], &so, &m) < 0) {
        serve_abort(server);
        return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    return serve_machine(server, m, &o.serve);
}
