/* smolvm run: boot a kernel in a microVM with its console on this terminal. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "disk/disk.h"
#include "cli/serve.h"
#include "core/vm.h"
#include "hv/hv.h"
#include "image/appliance.h"
#include "net/config.h"
#include "util/err.h"
#include "util/size.h"
#include "util/trace.h"

struct run_options {
    struct vm_config vm;
    struct serve_options serve;
    const char *name;
    const char *appliance;
    const char *output; /* pack: the bundle to write */
    const char *sign_key; /* pack --sign: a private key file */
    bool detach;
};

static const char pack_help[] =
    "usage: smolvm pack -o FILE.smolmachine --kernel PATH [run options]\n"
    "       smolvm pack -o FILE.smolmachine [run options] APPLIANCE_DIR\n"
    "\n"
    "Writes the VM 'smolvm run' would boot with the same options into one bundle,\n"
    "without running it: its config, kernel, initrd and disks (each as its whole\n"
    "content). 'smolvm start FILE' boots it; 'smolvm create NAME --from FILE' makes\n"
    "an instance of it.\n"
    "\n"
    "  -o, --output FILE      the bundle (replaced atomically)\n"
    "      --sign KEY         sign it with the private key KEY ('smolvm keygen')\n"
    "      --json             print {\"path\"} when written\n"
    "  -h, --help             this text\n"
    "  run options: --kernel, --initrd, --cmdline, --cpus, --mem, --disk, --no-rng,\n"
    "               --console, --virtio-discovery, --net, -p, --mac ('smolvm run --help')\n"
    "\n"
    "Exit status: 0 when written, 1 on errors, 2 on a bad command line.\n";

static const char run_help[] =
    "usage: smolvm run --kernel PATH [options]\n"
    "       smolvm run [options] APPLIANCE_DIR   (from 'smolvm image build')\n"
    "\n"
    "Boots a Linux kernel (bzImage, or ELF vmlinux with a PVH note) in a microVM.\n"
    "An appliance brings its kernel, initrd and root disk; the root disk is used\n"
    "through a fresh copy-on-write delta, so the appliance is never written, and\n"
    "--cmdline is added to its own command line (smolvm.run=\"CMD\" runs CMD and\n"
    "powers off).\n"
    "The guest's serial console is this terminal; Ctrl-A x quits.\n"
    "\n"
    "  -k, --kernel PATH      kernel to boot\n"
    "  -i, --initrd PATH      initial ramdisk\n"
    "  -a, --cmdline TEXT     kernel command line (default \"console=ttyS0\")\n"
    "  -c, --cpus N           vCPUs (default 1)\n"
    "  -m, --mem SIZE         guest RAM, e.g. 256M, 1G (default 256M; plain numbers are MiB)\n"
    "  -n, --name NAME        the VM's name for 'smolvm save/pause/stop/ps' (default vm-PID)\n"
    "      --detach           run in the background once the VM is up (prints its name);\n"
    "                         the console goes to a log ('smolvm logs NAME')\n"
    "  -d, --disk PATH[,ro][,id=NAME][,format=raw|qcow2][,cache=none]\n"
    "                         a virtio-blk disk (repeatable): read-only, the serial\n"
    "                         the guest reads, O_DIRECT\n"
    "      --no-rng           no virtio-rng device\n"
    "      --net none|user[,restrict|,allow=CIDR...]|tap=IFNAME\n"
    "                         the guest's network (default none: no NIC). user: a\n"
    "                         virtio-net NIC behind user-mode NAT (libslirp, in the\n"
    "                         smolvm-net helper, no root): DHCP gives 10.0.2.15, the\n"
    "                         host is 10.0.2.2, DNS 10.0.2.3; restrict: no outbound\n"
    "                         connections, only the forwards; allow=A.B.C.D[/N]\n"
    "                         (repeatable): outbound IPv4 only there, checked in the\n"
    "                         VMM (DNS still answers); tap: the host's TAP IFNAME\n"
    "                         ('ip tuntap add IFNAME mode tap user $USER'; made for\n"
    "                         the VM when run as root)\n"
    "  -p, --publish [HOSTIP:]HOSTPORT:GUESTPORT[/udp]\n"
    "                         forward a host port to the guest (repeatable; needs\n"
    "                         --net user; TCP unless /udp; HOSTIP default all)\n"
    "      --mac MAC          the NIC's MAC (default: a random 52:54:00:xx:xx:xx)\n"
    "      --no-kernel-cache  boot a bzImage as it is, not from its cached unpacked vmlinux\n"
    "      --console serial|virtio\n"
    "                         which device gets this terminal's input: COM1 (ttyS0,\n"
    "                         default) or virtio-console (hvc0); both show output\n"
    "      --virtio-discovery acpi|cmdline\n"
    "                         how the guest finds its virtio-mmio devices: ACPI\n"
    "                         (default) or virtio_mmio.device= on its command line\n"
    "                         (with acpi=noirq: IRQ numbers from the MP table)\n"
    "      --trace-boot       print boot timestamps (tslog style) to stderr when the guest stops\n"
    "      --trace-until TEXT also time the first appearance of TEXT on the console\n"
    "      --json             print the boot trace as JSON on stderr (stdout is the\n"
    "                         console): {\"unit\", \"events\", \"counts\", \"marker\"}\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit status: 0 when the guest powers off or reboots, 1 on errors or a guest\n"
    "crash, 2 on a bad command line.\n";

static int parse_cpus(const char *text, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v > 1000000)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* PATH[,ro][,id=NAME][,format=raw|qcow2][,cache=none|writeback]; the string is kept, split
 * in place. */
static int parse_disk(char *spec, struct vm_config *cfg)
{
    struct vm_disk_config *d;
    char *opt, *save = NULL;

    if (cfg->disk_count == VM_MAX_DISKS)
        return err_plain(E2BIG, "at most %d disks", VM_MAX_DISKS);
    d = &cfg->disks[cfg->disk_count];
    *d = (struct vm_disk_config){.path = strtok_r(spec, ",", &save)};
    if (!d->path || !*d->path)
        return err_plain(EINVAL, "no path in '%s'", spec);
    while ((opt = strtok_r(NULL, ",", &save))) {
        if (strcmp(opt, "ro") == 0)
            d->read_only = true;
        else if (strcmp(opt, "rw") == 0)
            d->read_only = false;
        else if (strncmp(opt, "id=", 3) == 0 && opt[3])
            d->id = opt + 3;
        else if (strncmp(opt, "format=", 7) == 0 && disk_format_find(opt + 7))
            d->format = opt + 7;
        else if (strcmp(opt, "cache=none") == 0)
            d->direct = true;
        else if (strcmp(opt, "cache=writeback") == 0)
            d->direct = false;
        else
            return err_plain(EINVAL, "unknown disk option '%s'", opt);
    }
    cfg->disk_count++;
    return 0;
}

/* 0 for the first word, 1 for the second, -1 for neither. */
static int pick(const char *arg, const char *first, const char *second)
{
    return strcmp(arg, first) == 0 ? 0 : strcmp(arg, second) == 0 ? 1 : -1;
}

static int parse_args(int argc, char **argv, struct run_options *o)
{
    enum { OPT_DETACH = 255, OPT_TRACE_BOOT = 256, OPT_TRACE_UNTIL, OPT_JSON, OPT_NO_RNG, OPT_CONSOLE,
           OPT_NO_KERNEL_CACHE, OPT_DISCOVERY, OPT_SIGN, OPT_NET, OPT_MAC };
    static const struct option longopts[] = {
        {"kernel", required_argument, NULL, 'k'},
        {"initrd", required_argument, NULL, 'i'},
        {"cmdline", required_argument, NULL, 'a'},
        {"cpus", required_argument, NULL, 'c'},
        {"mem", required_argument, NULL, 'm'},
        {"disk", required_argument, NULL, 'd'},
        {"name", required_argument, NULL, 'n'},
        {"detach", no_argument, NULL, OPT_DETACH},
        {"no-rng", no_argument, NULL, OPT_NO_RNG},
        {"console", required_argument, NULL, OPT_CONSOLE},
        {"no-kernel-cache", no_argument, NULL, OPT_NO_KERNEL_CACHE},
        {"virtio-discovery", required_argument, NULL, OPT_DISCOVERY},
        {"trace-boot", no_argument, NULL, OPT_TRACE_BOOT},
        {"trace-until", required_argument, NULL, OPT_TRACE_UNTIL},
        {"json", no_argument, NULL, OPT_JSON},
        {"appliance", required_argument, NULL, 'A'},
        {"output", required_argument, NULL, 'o'},
        {"sign", required_argument, NULL, OPT_SIGN},
        {"net", required_argument, NULL, OPT_NET},
        {"publish", required_argument, NULL, 'p'},
        {"mac", required_argument, NULL, OPT_MAC},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c, choice;

    memset(o, 0, sizeof(*o));
    vm_config_defaults(&o->vm);
    o->vm.interactive = isatty(STDIN_FILENO);
    optind = 1;
    opterr = 0; /* our own one-line messages instead of getopt's */
    while ((c = cli_getopt_long(argc, argv, ":k:i:a:c:m:d:n:o:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k': o->vm.kernel_path = optarg; break;
        case 'i': o->vm.initrd_path = optarg; break;
        case 'a': o->vm.cmdline = optarg; break;
        case 'c':
            if (parse_cpus(optarg, &o->vm.cpus) < 0)
                return cli_fail(CLI_USAGE, "--cpus '%s' is not a number", optarg);
            break;
        case 'm':
            if (size_parse(optarg, 1ull << 20, &o->vm.mem_bytes) < 0)
                return cli_fail(CLI_USAGE, "--mem: %s", err_msg());
            break;
        case 'd':
            if (parse_disk(optarg, &o->vm) < 0)
                return cli_fail(CLI_USAGE, "--disk: %s", err_msg());
            break;
        case 'n': o->name = optarg; break;
        case 'A': o->appliance = optarg; break;
        case 'o': o->output = optarg; break;
        case OPT_DETACH: o->detach = true; break;
        case OPT_NO_RNG: o->vm.rng = false; break;
        case OPT_NO_KERNEL_CACHE: o->vm.kernel_cache = false; break;
        case OPT_CONSOLE:
            if ((choice = pick(optarg, "serial", "virtio")) < 0)
                return cli_fail(CLI_USAGE, "--console must be 'serial' or 'virtio'");
            o->vm.console = choice ? VM_CONSOLE_VIRTIO : VM_CONSOLE_SERIAL;
            break;
        case OPT_DISCOVERY:
            if ((choice = pick(optarg, "acpi", "cmdline")) < 0)
                return cli_fail(CLI_USAGE, "--virtio-discovery must be 'acpi' or 'cmdline'");
            o->vm.discovery = choice ? VM_DISCOVERY_CMDLINE : VM_DISCOVERY_ACPI;
            break;
        case OPT_TRACE_BOOT: o->serve.trace_boot = true; break;
        case OPT_TRACE_UNTIL:
            o->vm.trace_until = o->serve.trace_until = optarg;
            o->serve.trace_boot = true;
            break;
        case OPT_JSON: o->serve.json = true; break;
        case OPT_SIGN: o->sign_key = optarg; break;
        case OPT_NET:
        case 'p':
        case OPT_MAC:
            if (net_parse_option(c == OPT_NET ? "net" : c == 'p' ? "publish" : "mac", optarg,
                                 &o->vm.net) < 0)
                return cli_fail(CLI_USAGE, "%s", err_msg());
            break;
        case 'h':
            fputs(strcmp(argv[0], "pack") == 0 ? pack_help : run_help, stdout);
            exit(CLI_OK);
        default: return CLI_USAGE; /* cli_getopt_long said why */
        }
    }
    if (optind + 1 == argc && !o->appliance)
        o->appliance = argv[optind++];
    if (optind < argc)
        return cli_fail(CLI_USAGE, "unexpected argument '%s'", argv[optind]);
    if (!o->vm.kernel_path && !o->appliance)
        return cli_fail(CLI_USAGE, "no kernel given (--kernel PATH, or an appliance folder)");
    /* --cpus 0 or --mem 1K is a wrong command line; more memory than this
     * host has (ENOMEM) is this host's limit, checked at boot. */
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
static int use_appliance(struct run_options *o, const char *name)
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
    if (r == 0 && asprintf(&cmdline, "%s%s%s", f.cmdline, o->vm.cmdline ? " " : "",
                           o->vm.cmdline ? o->vm.cmdline : "") < 0)
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
    appliance_files_release(&f);
    return 0;
}

int cli_pack(int argc, char **argv)
{
    struct run_options o;
    int code = parse_args(argc, argv, &o);

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
static int preflight(const struct vm_config *cfg)
{
    int r = check_file(cfg->kernel_path, "kernel");
    if (r == 0)
        r = check_file(cfg->initrd_path, "initrd");
    if (r == 0)
        r = vm_check_disks(cfg);
    return r ? r : hv_check();
}

int cli_run(int argc, char **argv)
{
    struct run_options o;
    struct server *server;
    struct machine *m;
    int code = parse_args(argc, argv, &o);

    if (code == CLI_OK && (o.output || o.sign_key))
        return cli_fail(CLI_USAGE, "run writes no bundle: use 'smolvm pack -o FILE'");

    if (code == CLI_OK && preflight(&o.vm) < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (code == CLI_OK)
        code = serve_open(o.name, &server);
    if (code != CLI_OK)
        return code;
    if (o.appliance && use_appliance(&o, serve_name(server)) < 0) {
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
    if (machine_boot(&o.vm, &m) < 0) {
        serve_abort(server);
        return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    return serve_machine(server, m, &o.serve);
}
