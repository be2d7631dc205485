/* smolvm receive: take one VM another smolvm migrates here (smolvm
 * migrate), and run it as `start` runs a bundle. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "cli/cli.h"
#include "cli/jail.h"
#include "confine/jail.h"
#include "cli/serve.h"
#include "core/config.h"
#include "hv/hv.h"
#include "machine/cache.h"
#include "machine/instance.h"
#include "migrate/link.h"
#include "migrate/migrate.h"
#include "util/err.h"
#include "util/file.h"
#include "util/paths.h"
#include "util/trace.h"

static const char receive_help[] =
    "usage: smolvm receive --listen tcp:ADDR:PORT|unix:PATH [options]\n"
    "\n"
    "Waits for one VM that 'smolvm migrate' sends here, checks this host can run\n"
    "it (protocol version, CPU features, memory), builds it, and once the source\n"
    "has stopped runs it here as 'smolvm start' would: the console is this\n"
    "terminal, or with --detach a log ('smolvm logs NAME'). A migration that fails\n"
    "leaves nothing here.\n"
    "\n"
    "  --listen ADDRESS  tcp:ADDR:PORT (ADDR may be empty: all) or unix:PATH\n"
    "  --name NAME       the VM's name here (default: generated)\n"
    "  --share DIR:TAG   the folder here of the VM's share TAG (one each; as start)\n"
    "  --detach          run in the background; returns once the VM runs here\n"
    "  --jail            confine the VMM as 'start --jail' (docs/security.md), from\n"
    "                    the source's first byte on\n"
    "  --seccomp MODE    on (default), off or log: each thread's system call filter\n"
    "                    (as start)\n"
    "  --json            errors as JSON\n"
    "\n"
    "Exit status: as 'smolvm start' once the VM runs; 1 when the migration failed,\n"
    "2 on a bad command line.\n";

/* What the command line asked. */
struct receive_options {
    const char *listen, *name;
    bool detach, jail;
    enum confine_seccomp seccomp;
    struct vm_share_config shares[VM_MAX_SHARES];
    unsigned share_count;
};

struct received {
    struct migrate_link link;
    /* built as the RAM comes, its memory where the pages go; the machine
     * takes it once the bundle is there */
    struct vm *prepared;
    const struct machine_start_options *start; /* how it is built and started */
    double prepare_s, start_s; /* building it, and the rest after the bundle */
    bool devices_ahead;        /* its devices made before the bundle was all there */
    char (*have)[HASH_HEX];  /* layers it has, the bundle lists without them */
    size_t have_count;
    int bundle_fd;           /* the VM as it arrived: a file without a name, */
    char bundle[32];         /* opened by the machine as /proc/self/fd/N */
    char *dir;               /* its instance folder, when this receive made it */
};

/* Instance NAME's folder when there is none yet, which a failed migration
 * removes again; NULL when it was there. It is only named: the VM's start
 * makes it once the VM has arrived, so a receiver killed before leaves
 * nothing. (Jailed, it is made before the jail under a temporary name,
 * bound in at this one: instance_receiving_make().) */
static char *new_instance_dir(const char *name)
{
    char *root = paths_instances_dir(), *dir = NULL;
    struct stat st;

    if (root && asprintf(&dir, "%s/%s", root, name) >= 0 && stat(dir, &st) == 0) {
        free(dir);
        dir = NULL;
    }
    free(root);
    return dir;
}

/* Jailed: the instance folder made under its temporary name (receiving),
 * and rc->dir its name in the jail, where the VMM empties it when the
 * migration fails (the relay removes it after). 0 or an error (err.h). */
static int make_jailed_instance_dir(const char *name, struct instance_receiving *receiving,
                                    char **dir)
{
    int r;

    paths_decide(); /* the folder the jail binds is the one its VMM takes (util/paths.h) */
    if ((r = instance_receiving_make(name, receiving)) < 0)
        return r;
    if (receiving->temporary && asprintf(dir, "%s/%s", receiving->instances, name) < 0)
        return *dir = NULL, err_set(ENOMEM, "instance folder");
    return 0;
}

/* The RAM frames are checked against the sizes the receiver read from the
 * config; the VM machine_prepare() made of it must have the same, or a
 * page could be meant for RAM this VM does not have. */
static int prepared_as_told(const struct vm *vm, uint64_t mem_bytes, unsigned cpus)
{
    uint64_t have = vm_memory(vm)->total;
    unsigned have_cpus = vm_config(vm)->cpus;

    if (have == mem_bytes && have_cpus == cpus)
        return 0;
    return err_set(EPROTO, "the VM made from the config has %llu bytes of RAM and %u CPUs, "
                   "not the %llu and %u it gives", (unsigned long long)have, have_cpus,
                   (unsigned long long)mem_bytes, cpus);
}

/* The VM built from its config as its RAM comes, while the source's
 * rounds run: its pause then waits only for its state (vm_prepare(); and
 * a disk's devices, whose files come in the pause). */
static int build_ahead(void *opaque, const char *config, uint64_t mem_bytes, unsigned cpus,
                       const struct guest_memory **home)
{
    struct received *rc = opaque;
    uint64_t t0 = trace_now_us();
    int r = machine_prepare(config, rc->start, &rc->prepared);

    rc->prepare_s = (double)(trace_now_us() - t0) / 1e6;
    if (r == 0)
        r = prepared_as_told(rc->prepared, mem_bytes, cpus);
    if (r == 0)
        *home = vm_memory(rc->prepared);
    return r;
}

/* Into a file without a name (O_TMPFILE): a receiver killed at any
 * point leaves nothing behind. */
static int receive_bundle(struct received *rc)
{
    struct x86_cpuid_entry *cpuid;
    size_t n;
    char *scratch = paths_data_dir("migrate");
    int r = scratch ? hv_host_cpuid(&cpuid, &n) : -ENOMEM;

    if (r < 0) {
        free(scratch);
        return r;
    }
    rc->bundle_fd = open(scratch, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (rc->bundle_fd < 0)
        r = err_set(errno, "a file in '%s' for the VM", scratch);
    if (r == 0) {
        struct migrate_receive rx = {.host = cpuid, .host_n = n, .bundle_fd = rc->bundle_fd,
                                     .scratch_dir = scratch,
                                     .have_layer = machine_layer_at_hand,
                                     .ram_home = build_ahead, .opaque = rc};
        snprintf(rc->bundle, sizeof(rc->bundle), "/proc/self/fd/%d", rc->bundle_fd);
        r = migrate_receive_bundle(&rc->link, &rx);
        rc->have = rx.have;
        rc->have_count = rx.have_count;
    }
    free(scratch);
    free(cpuid);
    return r;
}

/* The VM built and, once the source has stopped, handed back to run. */
static int receive(struct received *rc, const struct receive_options *ro, struct server *server,
                   struct machine **m)
{
    struct machine_start_options so = {.interactive = isatty(STDIN_FILENO),
                                       .memory = MACHINE_MEMORY_DECOMPRESS,
                                       .disks_private = true,
                                       .shares = ro->shares, .share_count = ro->share_count};
    so.name = serve_name(server);
    so.vsock_path = serve_vsock_path(server);
    rc->start = &so;
    int r = receive_bundle(rc);

    rc->devices_ahead = trace_recorded(TRACE_DEVICES_CREATED);
    if (r < 0)
        return r;
    so.prepared = &rc->prepared;
    so.have_layers = (const char(*)[HASH_HEX])rc->have;
    so.have_layer_count = rc->have_count;
    uint64_t t0 = trace_now_us();
    r = machine_start(rc->bundle, &so, m);
    rc->start_s = (double)(trace_now_us() - t0) / 1e6;
    if (r < 0) {
        migrate_send_error(&rc->link, err_msg());
        return r;
    }
    if ((r = migrate_receive_commit(&rc->link)) < 0) {
        machine_destroy(*m);
        *m = NULL;
    } else {
        trace_mark(TRACE_MIGRATED_IN);
        confine_arrived(); /* jailed: the relay names its folder now */
    }
    return r;
}

static int parse(int argc, char **argv, struct receive_options *o)
{
    enum { OPT_LISTEN = 256, OPT_NAME, OPT_DETACH, OPT_JSON, OPT_SHARE, OPT_JAIL, OPT_SECCOMP };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN}, {"name", required_argument, NULL, OPT_NAME},
        {"detach", no_argument, NULL, OPT_DETACH}, {"json", no_argument, NULL, OPT_JSON},
        {"share", required_argument, NULL, OPT_SHARE}, {"jail", no_argument, NULL, OPT_JAIL},
        {"seccomp", required_argument, NULL, OPT_SECCOMP}, {"help", no_argument, NULL, 'h'}, {0},
    };
    int c;

    optind = 1;
    opterr = 0;
    while ((c = cli_getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN: o->listen = optarg; break;
        case OPT_NAME: o->name = optarg; break;
        case OPT_DETACH: o->detach = true; break;
        case OPT_JAIL: o->jail = true; break;
        case OPT_SECCOMP:
            if (cli_parse_seccomp(optarg, &o->seccomp) < 0)
                return cli_fail(CLI_USAGE, "--seccomp: %s", err_msg());
            break;
        case OPT_SHARE:
            if (vm_share_parse(optarg, o->shares, &o->share_count) < 0)
                return cli_fail(CLI_USAGE, "--share: %s", err_msg());
            break;
        case OPT_JSON: break; /* cli_getopt_long() set it */
        case 'h': fputs(receive_help, stdout); return -1;
        default: return CLI_USAGE;
        }
    }
    if (optind != argc || !o->listen)
        return cli_fail(CLI_USAGE, "usage: smolvm receive --listen tcp:ADDR:PORT|unix:PATH");
    if (migrate_address_check(o->listen) < 0)
        return cli_fail(CLI_USAGE, "--listen %s", err_msg());
    if (o->name && cli_check_name(o->name) != CLI_OK)
        return CLI_USAGE;
    return CLI_OK;
}

static bool stats_wanted(void)
{
    const char *want = getenv("SMOLVM_MIGRATE_STATS");
    return want && *want;
}

/* $SMOLVM_MIGRATE_STATS (smolvm's environment): where the link's time
 * went here, and building the VM (ahead, and after the bundle came), on
 * stderr (bench/migrate keeps it beside its figures). */
static void say_stats(const struct received *rc)
{
    const struct migrate_link_stats *s = &rc->link.stats;

    if (stats_wanted())
        fprintf(stderr,
                "smolvm: receive: %llu frames, %llu MB; waiting for the source %.3f s, "
                "reading %.3f s, checksums %.3f s; the VM built ahead %.3f s (its devices %s), "
                "finished from the bundle %.3f s\n",
                (unsigned long long)s->frames, (unsigned long long)(s->bytes / 1000000),
                s->waiting, s->io, s->crc, rc->prepare_s,
                rc->devices_ahead ? "before the pause" : "in the pause", rc->start_s);
}

/* ... and, once the VM has run here, how long after the hand-over (GO)
 * its vCPU first entered the guest and its console's first byte came
 * (the guest's downtime past the source's pause). */
static void say_resume_stats(void)
{
    int64_t in = trace_ns(TRACE_MIGRATED_IN), entry = trace_ns(TRACE_FIRST_VCPU_ENTRY),
            byte = trace_ns(TRACE_FIRST_SERIAL_BYTE);

    if (stats_wanted() && in >= 0)
        fprintf(stderr, "smolvm: receive: after the hand-over: the guest entered at %.1f ms, "
                        "its first console byte at %.1f ms\n",
                entry >= 0 ? (double)(entry - in) / 1e6 : -1.0,
                byte >= 0 ? (double)(byte - in) / 1e6 : -1.0);
}

/* Waits for the source on listen: the link, or an error (err.h). */
static int accept_source(const struct receive_options *o, int listener)
{
    int fd = migrate_accept(listener);

    close(listener);
    if (strncmp(o->listen, "unix:", 5) == 0)
        unlink(o->listen + 5);
    return fd;
}

int cli_receive(int argc, char **argv)
{
    struct receive_options o = {0};
    struct received rc = {.bundle_fd = -1};
    struct instance_receiving receiving = {.lock_fd = -1};
    struct server *server;
    struct machine *m = NULL;
    int code = parse(argc, argv, &o), listener;

    if (code != CLI_OK)
        return code < 0 ? CLI_OK : code;
    if (cli_hv_check(o.jail || o.detach) < 0 || confine_seccomp_set(o.seccomp, "receive") < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if ((listener = migrate_listen(o.listen)) < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if ((code = serve_open(o.name, &server)) == CLI_OK && o.jail &&
        (code = serve_use_own_folder(server)) != CLI_OK)
        serve_abort(server);
    if (code == CLI_OK && o.detach) {
        bool parent;
        code = serve_detach(server, &parent);
        if (parent) {
            close(listener);
            return code;
        }
    }
    if (code != CLI_OK) {
        close(listener);
        return code;
    }
    int fd = accept_source(&o, listener), r = fd;
    /* Named by this receiver (--name or vm-PID), never by the source;
     * jailed, made before the jail under a temporary name. */
    if (fd >= 0 && o.jail && make_jailed_instance_dir(serve_name(server), &receiving, &rc.dir) < 0)
        code = cli_fail(CLI_FAILED, "%s", err_msg());
    else if (fd >= 0 && !o.jail)
        rc.dir = new_instance_dir(serve_name(server));
    /* Confined before the source's first frame is read (the listener was
     * made, and its socket file removed, outside). */
    if (fd >= 0 && (code != CLI_OK ||
                    (code = cli_confine_receiver(o.jail, o.shares, o.share_count,
                                                 serve_name(server), &receiving)) != CLI_OK)) {
        close(fd);
        instance_receiving_remove(&receiving); /* empty: made just now */
        free(rc.dir);
        serve_abort(server);
        return code;
    }
    /* The relay keeps the folder's lock; the VMM let go of it (jail.c). */
    free(receiving.instances);
    free(receiving.temporary);
    if (fd >= 0) {
        rc.link = (struct migrate_link){.in = fd, .out = fd, .stall_ms = MIGRATE_STALL_MS};
        r = receive(&rc, &o, server, &m);
        if (r < 0)
            migrate_linger(&rc.link); /* the source gets our ERROR, not a reset */
        close(fd);
    }
    if (rc.bundle_fd >= 0)
        close(rc.bundle_fd); /* the machine has its own */
    if (rc.prepared)
        vm_destroy(rc.prepared); /* not taken by a machine */
    say_stats(&rc);
    free(rc.have);
    if (r < 0) {
        if (rc.dir)
            file_remove_tree(rc.dir);
        free(rc.dir);
        serve_abort(server);
        return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    free(rc.dir);
    code = serve_machine(server, m, &(struct serve_options){.json = cli_json()});
    say_resume_stats();
    return code;
}
