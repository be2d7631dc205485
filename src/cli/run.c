/* smolvm run: boot a kernel in a microVM with its console on this terminal. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/jail.h"
#include "disk/disk.h"
#include "cli/serve.h"
#include "cli/vm_options.h"
#include "core/vm.h"
#include "hv/hv.h"
#include "image/appliance.h"
#include "machine/instance.h"
#include "net/config.h"
#include "util/err.h"
#include "util/size.h"
#include "util/trace.h"

static const struct vm_options_help pack_help = {
    "usage: smolvm pack -o FILE.smolmachine --kernel PATH [options]\n"
    "       smolvm pack -o FILE.smolmachine [options] APPLIANCE_DIR\n"
    "\n"
    "Writes the VM 'smolvm run' would boot with the same options into one bundle,\n"
    "without running it: its config, kernel, initrd and disks (each as its whole\n"
    "content). 'smolvm start FILE' boots it; 'smolvm create NAME --from FILE' makes\n"
    "an instance of it.\n"
    "\n",
    "\n"
    "Exit status: 0 when written, 1 on errors, 2 on a bad command line.\n",
};

static const struct vm_options_help run_help = {
    "usage: smolvm run --kernel PATH [options]\n"
    "       smolvm run [options] APPLIANCE_DIR   (from 'smolvm image build')\n"
    "\n"
    "Boots a Linux kernel (bzImage, or ELF vmlinux with a PVH note) in a microVM.\n"
    "An appliance brings its kernel, initrd and root disk; the root disk is used\n"
    "through a fresh copy-on-write delta, so the appliance is never written, and\n"
    "--cmdline is added to its own command line (smolvm.run=\"CMD\" runs CMD and\n"
    "powers off).\n"
    "The guest's serial console is this terminal; Ctrl-A x quits.\n"
    "\n",
    "\n"
    "Exit status: 0 when the guest powers off or reboots, 1 on errors or a guest\n"
    "crash, 2 on a bad command line.\n",
};

static int parse_args(unsigned verb, int argc, char **argv, struct vm_options *o)
{
    memset(o, 0, sizeof(*o));
    vm_config_defaults(&o->vm);
    o->vm.interactive = isatty(STDIN_FILENO);
    int code = vm_options_parse(verb, verb == VM_OPT_PACK ? &pack_help : &run_help, argc, argv, o);
    if (code == VM_OPTIONS_HELP)
        exit(CLI_OK);
    if (code != CLI_OK)
        return code;
    if (optind + 1 == argc && !o->appliance)
        o->appliance = argv[optind++];
    if (optind < argc)
        return cli_fail(CLI_USAGE, "unexpected argument '%s'", argv[optind]);
    if (!o->vm.kernel_path && !o->appliance)
        return cli_fail(CLI_USAGE, "no kernel given (--kernel PATH, or an appliance folder)");
    vm_options_default_net(o);
    /* --mem 1K is a wrong command line; more memory than this host has
     * (ENOMEM) is this host's limit, checked at boot. */
    if (vm_config_check(&o->vm) == -EINVAL || net_config_check(&o->vm.net) < 0)
        return cli_fail(CLI_USAGE, "%s", err_msg());
    /* A bad name is the command line's fault, found before any file is looked at. */
    if (o->name && cli_check_name(o->name) != CLI_OK)
        return CLI_USAGE;
    err_clear();
    return CLI_OK;
}

/* The appliance's kernel, initrd, command line (the user's added) and
 * root disk, as a delta over its root in the instance's folder; what the
 * command line gave explicitly wins. Strings live until exit. */
static int use_appliance(struct vm_options *o, const char *name)
{
    struct appliance_files f;
    char *root = NULL, *cmdline = NULL;
    int r = appliance_open(o->appliance, &f);

    if (r < 0)
        return r;
    if (o->vm.disk_count == VM_MAX_DISKS)
        r = err_plain(E2BIG, "no room for the appliance's root disk");
    /* Packed, the root goes as it is (only read). */
    if (r == 0 && !name)
        root = f.root, f.root = NULL;
    else if (r == 0)
        r = machine_instance_overlay(name, "root.qcow2", f.root, "raw", &root);
    if (r == 0 && asprintf(&cmdline, "%s%s%s%s", f.cmdline, o->vm.cmdline ? " " : "",
                           o->vm.cmdline ? o->vm.cmdline : "",
                           vm_share_param(o->vm.shares, o->vm.share_count, o->vm.cmdline)) < 0)
        r = err_set(ENOMEM, "cmdline");
    if (r < 0) {
        appliance_files_release(&f);
        free(root);
        return r;
    }
    /* The root is the first disk: /dev/vda, where the appliance's init looks. */
    memmove(&o->vm.disks[1], &o->vm.disks[0], o->vm.disk_count * sizeof(o->vm.disks[0]));
    o->vm.disks[0] = (struct vm_disk_config){.path = root, .format = name ? "qcow2" : "raw"};
    o->vm.disk_count++;
    o->vm.cmdline = cmdline;
    if (!o->vm.kernel_path)
        o->vm.kernel_path = f.kernel, f.kernel = NULL;
    if (!o->vm.initrd_path)
        o->vm.initrd_path = f.initrd, f.initrd = NULL;
    /* A kernel without ACPI (--kernel micro) finds its devices on the
     * command line, unless --virtio-discovery said otherwise. */
    if (f.cmdline_discovery && !o->discovery_given)
        o->vm.discovery = VM_DISCOVERY_CMDLINE;
    appliance_files_release(&f);
    return 0;
}

/* --trace-boot continues into the guest: its kernel stamps its lines
 * (printk.time=1) and the appliance's init says its phases (smolvm.trace),
 * which the trace picks out of the console (util/trace.h). */
static int trace_into_guest(struct vm_config *cfg)
{
    char *cmdline = NULL;
    if (asprintf(&cmdline, "%s%sprintk.time=1 smolvm.trace", cfg->cmdline ? cfg->cmdline : "",
                 cfg->cmdline && *cfg->cmdline ? " " : "") < 0)
        return err_set(ENOMEM, "cmdline");
    cfg->cmdline = cmdline;
    trace_guest_enable();
    return 0;
}

int cli_pack(int argc, char **argv)
{
    static struct vm_options o; /* an appliance's strings live until exit (use_appliance) */
    int code = parse_args(VM_OPT_PACK, argc, argv, &o);

    if (code != CLI_OK)
        return code;
    if (!o.output)
        return cli_fail(CLI_USAGE, "needs -o FILE.smolmachine (try 'smolvm pack --help')");
    if (o.appliance && use_appliance(&o, NULL) < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (vm_config_check(&o.vm) < 0 || machine_export(&o.vm, NULL, o.output, true, o.sign_key) < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (o.serve.json) {
        json_t *j = json_pack("{ss}", "path", o.output);
        json_dumpf(j, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(j);
    } else {
        printf("%s\n", o.output);
    }
    return CLI_OK;
}

static int check_file(const char *path, const char *what)
{
    struct stat st;
    if (path && stat(path, &st) < 0)
        return err_set(errno, "%s '%s'", what, path);
    return 0;
}

/* Before any work (a socket, an instance folder, an unpacked kernel): the
 * files named exist, then KVM can run a VM here. */
static int preflight(const struct vm_config *cfg, bool vmm_forked)
{
    int r = check_file(cfg->kernel_path, "kernel");
    if (r == 0)
        r = check_file(cfg->initrd_path, "initrd");
    if (r == 0)
        r = vm_check_disks(cfg);
    return r ? r : cli_hv_check(vmm_forked);
}

int cli_run(int argc, char **argv)
{
    struct vm_options o;
    struct server *server;
    struct machine *m;
    int code = parse_args(VM_OPT_RUN, argc, argv, &o);

    if (code == CLI_OK && (o.output || o.sign_key))
        return cli_fail(CLI_USAGE, "run writes no bundle: use 'smolvm pack -o FILE'");

    if (code == CLI_OK && (preflight(&o.vm, o.jail || o.detach) < 0 ||
                          confine_seccomp_set(o.serve.seccomp, "run") < 0))
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (code == CLI_OK)
        code = serve_open(o.name, &server);
    if (code == CLI_OK && o.jail && (code = serve_use_own_folder(server)) != CLI_OK)
        serve_abort(server);
    if (code != CLI_OK)
        return code;
    o.vm.vsock_path = serve_vsock_path(server);
    if ((o.appliance && use_appliance(&o, serve_name(server)) < 0) ||
        (o.serve.trace_boot && trace_into_guest(&o.vm) < 0)) {
        serve_abort(server);
        return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    if (o.detach) {
        bool parent;
        code = serve_detach(server, &parent);
        if (parent || code != CLI_OK)
            return code;
        o.vm.interactive = false;
    }
    code = cli_confine(&o, serve_name(server), false, NULL);
    if (code != CLI_OK) {
        serve_abort(server);
        return code;
    }
    if (machine_boot(&o.vm, &m) < 0) {
        serve_abort(server);
        return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    return serve_machine(server, m, &o.serve);
}
