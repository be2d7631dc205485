/* The table of the VM options run, pack, start and create share (see
 * vm_options.h for how to add one), their parse functions, and the parser
 * and --help generated from the table. */
#include "cli/vm_options.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/agent.h"
#include "cli/cli.h"
#include "cli/jail.h"
#include "disk/disk.h"
#include "net/config.h"
#include "util/err.h"
#include "util/size.h"

/* ---- parse functions: 0, or -1 with err_plain() saying why ---- */

static int parse_cmdline(struct vm_options *o, char *value)
{
    o->vm.cmdline = value;
    o->cmdline_given = true;
    return 0;
}

static int parse_cpus(struct vm_options *o, char *value)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-' || v == 0 || v > VM_MAX_CPUS)
        return err_plain(EINVAL, "'%s' is not a number from 1 to %d", value, VM_MAX_CPUS);
    o->vm.cpus = (unsigned)v;
    o->cpus_given = true;
    return 0;
}

static int parse_mem(struct vm_options *o, char *value)
{
    if (size_parse(value, 1ull << 20, &o->vm.mem_bytes) < 0)
        return -1;
    if (!o->vm.mem_bytes)
        return err_plain(EINVAL, "'%s': a size such as 512M", value);
    o->mem_given = true;
    return 0;
}

/* --cpu-quota N: CPUs' worth of time (1.5), kept in thousandths. */
static int parse_cpu_quota(struct vm_options *o, char *value)
{
    char *end;
    double cpus = strtod(value, &end);

    if (end == value || *end || !(cpus >= 0.01 && cpus <= 4096))
        return err_plain(EINVAL, "'%s': a number of CPUs such as 0.5 or 2", value);
    o->cpu_quota_milli = (uint64_t)(cpus * 1000 + 0.5);
    return 0;
}

static int parse_mem_limit(struct vm_options *o, char *value)
{
    if (size_parse(value, 1ull << 20, &o->mem_limit) < 0)
        return -1;
    if (o->mem_limit < (16ull << 20))
        return err_plain(EINVAL, "'%s': a size of at least 16M, such as 1G", value);
    return 0;
}

/* PATH[,ro][,id=NAME][,format=raw|qcow2][,cache=none|writeback]; the
 * string is kept, split in place. */
/* run and pack: the VM's shares; start: the host folders of the bundle's
 * tags (cli/share.c). */
static int parse_share(struct vm_options *o, char *spec)
{
    return vm_share_parse(spec, o->vm.shares, &o->vm.share_count) < 0 ? -1 : 0;
}

static int parse_disk(struct vm_options *o, char *spec)
{
    struct vm_disk_config *d;
    char *opt, *save = NULL;

    if (o->vm.disk_count == VM_MAX_DISKS)
        return err_plain(E2BIG, "at most %d disks", VM_MAX_DISKS);
    d = &o->vm.disks[o->vm.disk_count];
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
    o->vm.disk_count++;
    return 0;
}

/* The index of value among the NULL-terminated words, or -1 (message set). */
static int pick(const char *value, const char *const *words)
{
    char list[128] = "";
    for (int i = 0; words[i]; i++) {
        if (strcmp(value, words[i]) == 0)
            return i;
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s'%s'", i ? ", " : "",
                 words[i]);
    }
    return err_plain(EINVAL, "must be one of %s", list);
}

static int parse_hostname(struct vm_options *o, char *value)
{
    if (!agent_hostname_ok(value))
        return err_plain(EINVAL, "'%s' is not 1-64 of A-Z a-z 0-9 - . (not starting with - or .)",
                         value);
    o->serve.hostname = value;
    return 0;
}

static int parse_no_vsock(struct vm_options *o, char *value)
{
    (void)value;
    o->vm.vsock_cid = 0;
    return 0;
}

/* --vsock-cid N: the guest's vsock address (0, 1, 2 and 2^32-1 are reserved). */
static int parse_vsock_cid(struct vm_options *o, char *value)
{
    char *end;
    unsigned long cid;

    errno = 0;
    cid = strtoul(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-' || cid < 3 || cid >= UINT32_MAX)
        return err_plain(EINVAL, "'%s' is not a CID of 3 or more", value);
    o->vm.vsock_cid = (uint32_t)cid;
    return 0;
}

static int parse_console(struct vm_options *o, char *value)
{
    static const char *const words[] = {"serial", "virtio", NULL};
    int i = pick(value, words);
    o->vm.console = i == 1 ? VM_CONSOLE_VIRTIO : VM_CONSOLE_SERIAL;
    return i < 0 ? -1 : 0;
}

static int parse_discovery(struct vm_options *o, char *value)
{
    static const char *const words[] = {"acpi", "cmdline", NULL};
    int i = pick(value, words);
    o->vm.discovery = i == 1 ? VM_DISCOVERY_CMDLINE : VM_DISCOVERY_ACPI;
    o->discovery_given = true;
    return i < 0 ? -1 : 0;
}

static int parse_memory(struct vm_options *o, char *value)
{
    static const char *const words[] = {"map", "lazy", "copy", "decompress", "serve", NULL};
    static const enum machine_memory modes[] = {MACHINE_MEMORY_MAP, MACHINE_MEMORY_LAZY,
                                                MACHINE_MEMORY_COPY, MACHINE_MEMORY_DECOMPRESS,
                                                MACHINE_MEMORY_SERVE};
    int i = pick(value, words);
    if (i < 0)
        return -1;
    o->memory = modes[i];
    return 0;
}

static int parse_seccomp(struct vm_options *o, char *value)
{
    return cli_parse_seccomp(value, &o->serve.seccomp);
}

static int parse_spare_fd(struct vm_options *o, char *value)
{
    char *end;
    long fd;

    errno = 0;
    fd = strtol(value, &end, 10);
    if (errno || end == value || *end || fd <= STDERR_FILENO || fd > INT_MAX ||
        fcntl((int)fd, F_GETFD) < 0)
        return err_plain(EINVAL, "'%s' is not an open descriptor past stderr", value);
    o->spare_fd = (int)fd;
    return 0;
}

static int parse_trace_until(struct vm_options *o, char *value)
{
    o->vm.trace_until = o->serve.trace_until = value;
    o->serve.trace_boot = true;
    return 0;
}

/* --net, -p/--publish, --mac: net/config.c's parsers (start's -p replaces
 * a bundle's forwards: machine_start_options.forwards). */
static int parse_net(struct vm_options *o, char *value)
{
    o->net_given = true;
    return net_parse_option("net", value, &o->vm.net) < 0 ? -1 : 0;
}

static int parse_publish(struct vm_options *o, char *value)
{
    return net_parse_option("publish", value, &o->vm.net) < 0 ? -1 : 0;
}

static int parse_mac(struct vm_options *o, char *value)
{
    return net_parse_option("mac", value, &o->vm.net) < 0 ? -1 : 0;
}

/* An appliance runs a service, and docker's users expect a container to
 * reach the network and -p to work without asking: it gets --net user. A
 * kernel of the user's own (--kernel, no appliance) has exactly the
 * devices asked for, as QEMU -nodefaults: its init may not know a NIC. */
void vm_options_default_net(struct vm_options *o)
{
    if (o->appliance && !o->net_given)
        o->vm.net.mode = VM_NET_USER;
}

/* ---- the table ---- */

/* --help: printed by the parser, never called. */
static int parse_help(struct vm_options *o, char *value)
{
    (void)o;
    (void)value;
    return 0;
}

#define KEEP VM_OPTION_KEEP
#define SET VM_OPTION_SET
#define RUN VM_OPT_RUN
#define PACK VM_OPT_PACK
#define START VM_OPT_START
#define CREATE VM_OPT_CREATE
#define BOOTS VM_OPT_BOOTS

static const struct vm_option vm_option_table[] = {
    {"from", 0, "SOURCE", CREATE, 0,
     "what the instance starts from (required)", NULL, KEEP(from)},
    {"output", 'o', "FILE", BOOTS, RUN, "the bundle (replaced atomically)", NULL, KEEP(output)},
    {"kernel", 'k', "PATH", BOOTS | CREATE, 0,
     "kernel to boot", NULL, KEEP(vm.kernel_path)},
    {"initrd", 'i', "PATH", BOOTS | CREATE, 0, "initial ramdisk", NULL, KEEP(vm.initrd_path)},
    {"cmdline", 'a', "TEXT", BOOTS | CREATE, 0, "kernel command line (default \"console=ttyS0\")",
     parse_cmdline},
    {"cpus", 'c', "N", BOOTS | CREATE, 0,
     "vCPUs (default 1)", parse_cpus},
    {"mem", 'm', "SIZE", BOOTS | CREATE, 0,
     "guest RAM, e.g. 256M, 1G (default 256M; plain\n"
     "numbers are MiB)", parse_mem},
    {"name", 'n', "NAME", BOOTS | START, PACK,
     "the VM's name for 'smolvm save/pause/stop/ps'\n"
     "(default vm-PID); the disks it writes live in\n"
     "~/.local/share/smolvm/instances/NAME", NULL, KEEP(name)},
    {"detach", 0, NULL, BOOTS | START, PACK,
     "run in the background once the VM is up (prints its name);\n"
     "the console goes to a log ('smolvm logs NAME')", NULL, SET(detach, true)},
    {"jail", 0, NULL, RUN | START, 0,
     "confine the VMM (docs/security.md): its own user, mount,\n"
     "pid, ipc (and, without --net, network) namespaces, a root\n"
     "holding only the VM's files, no capabilities; landlock\n"
     "where namespaces are not allowed. Says which it got", NULL, SET(jail, true)},
    {"cpu-quota", 0, "CPUS", RUN | START, 0,
     "at most CPUS CPUs' worth of time (e.g. 1.5), through a\n"
     "cgroup v2 of its own (where the host delegates one)", parse_cpu_quota},
    {"mem-limit", 0, "SIZE", RUN | START, 0,
     "at most SIZE of memory for the whole VMM (guest RAM\n"
     "included; same cgroup); its processes are limited too", parse_mem_limit},
    {"disk", 'd', "PATH[,ro][,id=NAME][,format=raw|qcow2][,cache=none]", BOOTS, 0,
     "a virtio-blk disk (repeatable): read-only, the serial\n"
     "the guest reads, O_DIRECT", parse_disk},
    {"share", 0, "DIR[:TAG][,ro]", BOOTS | START | CREATE, 0,
     "the host folder DIR as virtio-fs TAG (repeatable; default\n"
     "tag: DIR's name); appliances mount it at /mnt/TAG. A\n"
     "bundle keeps the tags, not the folders: start gives each\n"
     "tag its folder again (a guest saved with it mounted goes\n"
     "on: its files are found again by path); an instance keeps\n"
     "create's folders, a start's --share remaps a tag", parse_share},
    {"hostname", 0, "NAME", RUN | START, 0,
     "the guest's hostname for this run or start, set by its\n"
     "agent (appliances run one) as soon as it answers", parse_hostname},
    {"no-rng", 0, NULL, BOOTS, 0, "no virtio-rng device", NULL, SET(vm.rng, false)},
    {"no-vsock", 0, NULL, BOOTS, 0,
     "no virtio-vsock device (no 'smolvm exec', 'cp', 'shell')", parse_no_vsock},
    {"vsock-cid", 0, "CID", BOOTS, 0,
     "the guest's vsock address (default 3); the host end is\n"
     "the unix socket RUNTIME/NAME.vsock (Firecracker's protocol:\n"
     "'CONNECT PORT'; guest connections to host port P go to\n"
     "RUNTIME/NAME.vsock_P, RUNTIME/NAME.vm/NAME.vsock_P\n"
     "under --jail)", parse_vsock_cid},
    {"no-kernel-cache", 0, NULL, BOOTS, 0,
     "boot a bzImage as it is, not from its cached\n"
     "unpacked vmlinux", NULL, SET(vm.kernel_cache, false)},
    {"console", 0, "serial|virtio", BOOTS, 0,
     "which device gets this terminal's input: COM1 (ttyS0,\n"
     "default) or virtio-console (hvc0); both show output", parse_console},
    {"virtio-discovery", 0, "acpi|cmdline", BOOTS | CREATE, 0,
     "how the guest finds its virtio-mmio devices: ACPI\n"
     "(default) or virtio_mmio.device= on its command line\n"
     "(with acpi=noirq: IRQ numbers from the MP table)", parse_discovery},
    {"net", 0, "none|user[,restrict|,allow=CIDR...]|tap=IFNAME", BOOTS | CREATE, 0,
     "the guest's network. Default: user for an appliance (a\n"
     "working network, as docker gives a container; --net none\n"
     "opts out), none (no NIC) for a --kernel or an image of\n"
     "your own; a bundle keeps what it was made with (start\n"
     "and create too). user: a virtio-net\n"
     "NIC behind user-mode NAT (libslirp, in the smolvm-net\n"
     "helper, no root): DHCP gives 10.0.2.15, the host is\n"
     "10.0.2.2, DNS 10.0.2.3; restrict: no outbound\n"
     "connections, only the forwards; allow=A.B.C.D[/N]\n"
     "(repeatable): outbound IPv4 only there, checked in the\n"
     "VMM (DNS still answers); tap: the host's TAP IFNAME\n"
     "('ip tuntap add IFNAME mode tap user $USER'; made for\n"
     "the VM when run as root)", parse_net},
    {"publish", 'p', "HOSTPORT:GUESTPORT[/udp]", BOOTS | START | CREATE, 0,
     "forward a host port to the guest (repeatable; needs\n"
     "--net user, an appliance's default; TCP unless /udp;\n"
     "[HOSTIP:]HOSTPORT:... binds one host address, default\n"
     "all); for start, instead of those the bundle was made with", parse_publish},
    {"mac", 0, "MAC", BOOTS | CREATE, 0, "the NIC's MAC (default: a random 52:54:00:xx:xx:xx)",
     parse_mac},
    {"memory", 0, "map|lazy|copy|decompress|serve", START, 0,
     "how saved RAM comes back: mapped from the copy unpacked\n"
     "(once, verified) in ~/.cache/smolvm/memory, with the pages\n"
     "the first start touched in its first second faulted in\n"
     "before the guest runs; a first start (no copy yet) is served\n"
     "chunk by chunk as the guest touches it while the copy fills\n"
     "(userfaultfd; serve, the default). map: the same, but a\n"
     "first start unpacks the whole copy first; lazy:\n"
     "every page left to fault in when touched; copy: copied from\n"
     "it; decompress: from the bundle, no copy", parse_memory},
    {"verify", 0, "KEY.pub", START | CREATE, 0,
     "refuse the bundle unless it is signed with the private key\n"
     "of KEY.pub ('smolvm keygen', 'save/pack --sign') and\n"
     "unchanged since", NULL, KEEP(trusted_key)},
    {"sign", 0, "KEY", BOOTS, RUN, "sign it with the private key KEY ('smolvm keygen')", NULL,
     KEEP(sign_key)},
    {"seccomp", 0, "on|off|log", RUN | START, 0,
     "each VMM thread may make only the system calls it needs (on, the\n"
     "default); a forbidden one ends the VM with one line. log: the kernel\n"
     "logs them instead (dmesg), for debugging", parse_seccomp},
    /* smolvm serve's spare VMM (api/spare.h): told the machine later. */
    {"spare-fd", 0, "FD", START, START,
     "for smolvm serve only: wait on FD for the machine's name", parse_spare_fd},
    {"trace-boot", 0, NULL, BOOTS | START, PACK,
     "print boot timestamps (tslog style; a restore's\n"
     "included) to stderr when the guest stops", NULL, SET(serve.trace_boot, true)},
    {"trace-until", 0, "TEXT", BOOTS | START, PACK,
     "also time the first appearance of TEXT on the console", parse_trace_until},
    {"json", 0, NULL, RUN | START, 0,
     "print the boot trace as JSON on stderr (stdout is the\n"
     "console): {\"unit\", \"events\", \"counts\", \"marker\"}", NULL, SET(serve.json, true)},
    {"json", 0, NULL, PACK, 0, "print {\"path\"} when written", NULL, SET(serve.json, true)},
    {"json", 0, NULL, CREATE, 0,
     "print the instance as 'smolvm ls --json' does (name, top,\n"
     "kernel, initrd, cmdline, cpus, mem_bytes, created,\n"
     "delta_bytes, next_start); errors as {\"error\": ...}", NULL, SET(serve.json, true)},
    {"appliance", 0, "DIR", BOOTS, BOOTS, NULL, NULL, KEEP(appliance)},
    {"help", 'h', NULL, BOOTS | START | CREATE, 0, "this text", parse_help},
};

#undef KEEP
#undef SET

#define TABLE_SIZE (sizeof(vm_option_table) / sizeof(vm_option_table[0]))

/* ---- --help and the parser, from the table ---- */

#define HELP_COLUMN 25 /* where an option's text starts */

static void print_option(const struct vm_option *e)
{
    char left[96];
    snprintf(left, sizeof(left), "%c%c%c --%s%s%s", e->short_name ? '-' : ' ',
             e->short_name ? e->short_name : ' ', e->short_name ? ',' : ' ', e->name,
             e->arg ? " " : "", e->arg ? e->arg : "");
    if (strlen(left) + 3 > HELP_COLUMN)
        printf("  %s\n%*s", left, HELP_COLUMN, "");
    else
        printf("  %-*s", HELP_COLUMN - 2, left);
    for (const char *line = e->help; *line;) {
        size_t n = strcspn(line, "\n");
        printf("%.*s\n", (int)n, line);
        line += n;
        if (*line == '\n' && *++line)
            printf("%*s", HELP_COLUMN, "");
    }
}

static void print_help(unsigned verb, const struct vm_options_help *help)
{
    fputs(help->head, stdout);
    for (size_t i = 0; i < TABLE_SIZE; i++) {
        const struct vm_option *e = &vm_option_table[i];
        if ((e->verbs & verb) && !(e->unlisted & verb) && e->help)
            print_option(e);
    }
    fputs(help->tail, stdout);
}

/* Long options reach getopt as 0x100 + their index, short ones as
 * themselves: either way back to their entry. */
static const struct vm_option *entry_of(int c)
{
    if (c >= 0x100)
        return &vm_option_table[c - 0x100];
    for (size_t i = 0; i < TABLE_SIZE; i++)
        if (vm_option_table[i].short_name == c)
            return &vm_option_table[i];
    return NULL;
}

/* getopt's tables for verb: its long options, and ":" and its short ones. */
static void getopt_tables(unsigned verb, struct option *longs, char *shorts)
{
    size_t n = 0;
    *shorts++ = ':';
    for (size_t i = 0; i < TABLE_SIZE; i++) {
        const struct vm_option *e = &vm_option_table[i];
        if (!(e->verbs & verb))
            continue;
        longs[n++] = (struct option){e->name, e->arg ? required_argument : no_argument, NULL,
                                     e->short_name ? e->short_name : (int)(0x100 + i)};
        if (e->short_name) {
            *shorts++ = e->short_name;
            if (e->arg)
                *shorts++ = ':';
        }
    }
    longs[n] = (struct option){0};
    *shorts = 0;
}

int vm_options_parse(unsigned verb, const struct vm_options_help *help, int argc, char **argv,
                     struct vm_options *o)
{
    struct option longs[TABLE_SIZE + 1];
    char shorts[2 * TABLE_SIZE + 2];
    int c;

    getopt_tables(verb, longs, shorts);
    optind = 1;
    opterr = 0; /* our own one-line messages instead of getopt's */
    while ((c = cli_getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        const struct vm_option *e = entry_of(c);
        if (!e)
            return CLI_USAGE; /* cli_getopt_long said why */
        if (e->parse == parse_help) {
            print_help(verb, help);
            return VM_OPTIONS_HELP;
        }
        if (!e->parse && e->sets == VM_OPTION_STRING)
            *(const char **)((char *)o + e->value_at) = optarg;
        else if (!e->parse)
            *(bool *)((char *)o + e->value_at) = e->sets == VM_OPTION_TRUE;
        else if (e->parse(o, optarg) < 0)
            return cli_fail(CLI_USAGE, "--%s: %s", e->name, err_msg());
    }
    return CLI_OK;
}
