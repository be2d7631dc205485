/* smolvm start: run a .smolmachine; with saved state it resumes. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/serve.h"
#include "hv/hv.h"
#include "net/config.h"
#include "util/err.h"

static const char start_help[] =
    "usage: smolvm start FILE.smolmachine [options]\n"
    "       smolvm start INSTANCE [options]      (from 'smolvm create')\n"
    "\n"
    "Starts the VM a bundle holds. A bundle saved with its state resumes where it\n"
    "was saved, skipping boot; one without boots its kernel. An instance boots on\n"
    "its layers, writing to its own delta. The console is this terminal; Ctrl-A x\n"
    "quits.\n"
    "\n"
    "      --detach           run in the background once the VM is up (prints its name)\n"
    "  -n, --name NAME        the VM's name (default vm-PID); its disks live in\n"
    "                         ~/.local/share/smolvm/instances/NAME\n"
    "      --memory map|lazy|copy|decompress\n"
    "                         how saved RAM comes back: mapped (default) from the copy\n"
    "                         unpacked (once, verified) in ~/.cache/smolvm/memory, with\n"
    "                         the pages the first start touched in its first second\n"
    "                         faulted in before the guest runs; mapped with every page\n"
    "                         left to fault in when touched (lazy); copied from it; or\n"
    "                         decompressed from the bundle\n"
    "  -p, --publish [HOSTIP:]HOSTPORT:GUESTPORT[/udp]\n"
    "                         forward this host port instead of those the bundle was\n"
    "                         made with (repeatable; a VM made with --net user)\n"
    "      --verify KEY.pub   refuse the bundle unless it is signed with the private key\n"
    "                         of KEY.pub ('smolvm keygen', 'save/pack --sign') and\n"
    "                         unchanged since\n"
    "      --trace-boot       print timestamps (restore included) to stderr at the end\n"
    "      --trace-until TEXT also time the first appearance of TEXT on the console\n"
    "      --json             print the trace as JSON on stderr (as 'smolvm run')\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit status: 0 when the guest powers off or is stopped, 1 on errors (a corrupt\n"
    "or truncated bundle included), 2 on a bad command line.\n";

/* A bundle file, or else an instance of the store by name. */
static int start_machine(const char *what, const struct machine_start_options *so,
                         struct machine **m)
{
    static struct vm_config cfg; /* its strings live as long as the VM */
    struct stat st;

    if (stat(what, &st) == 0 || strchr(what, '/'))
        return machine_start(what, so, m);
    const char *resume;
    bool shared;
    if (so->trusted_key)
        return err_plain(EINVAL, "--verify checks a bundle file; '%s' is an instance", what);
    vm_config_defaults(&cfg);
    cfg.interactive = so->interactive;
    cfg.trace_until = so->trace_until;
    int r = cli_instance_config(what, &cfg, &resume, &shared);
    if (r < 0 || !resume)
        return r < 0 ? r : machine_boot(&cfg, m);
    struct machine_start_options from_state = *so;
    from_state.instance = &cfg;
    /* A suspended state is read once: caching its memory would only fill
     * the cache. */
    if (!shared && so->memory == MACHINE_MEMORY_DEFAULT)
        from_state.memory = MACHINE_MEMORY_DECOMPRESS;
    r = machine_start(resume, &from_state, m);
    if (r == 0 && cli_instance_resumed(what) < 0) {
        machine_destroy(*m);
        return -EIO;
    }
    return r;
}

int cli_start(int argc, char **argv)
{
    enum { OPT_TRACE_BOOT = 256, OPT_TRACE_UNTIL, OPT_JSON, OPT_MEMORY, OPT_DETACH, OPT_VERIFY };
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'},
        {"detach", no_argument, NULL, OPT_DETACH},
        {"trace-boot", no_argument, NULL, OPT_TRACE_BOOT},
        {"trace-until", required_argument, NULL, OPT_TRACE_UNTIL},
        {"json", no_argument, NULL, OPT_JSON},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"verify", required_argument, NULL, OPT_VERIFY},
        {"publish", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct serve_options o = {0};
    const char *name = NULL;
    bool detach = false;
    struct server *server;
    static struct vm_net_config forwards;
    struct machine_start_options so = {.interactive = isatty(STDIN_FILENO), .forwards = &forwards};
    struct machine *m;
    int c, code;

    optind = 1;
    opterr = 0;
    while ((c = cli_getopt_long(argc, argv, ":n:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': name = optarg; break;
        case OPT_TRACE_BOOT: o.trace_boot = true; break;
        case OPT_TRACE_UNTIL:
            o.trace_until = so.trace_until = optarg;
            o.trace_boot = true;
            break;
        case OPT_JSON: o.json = true; break;
        case OPT_MEMORY:
            if (strcmp(optarg, "copy") == 0)
                so.memory = MACHINE_MEMORY_COPY;
            else if (strcmp(optarg, "map") == 0)
                so.memory = MACHINE_MEMORY_MAP;
            else if (strcmp(optarg, "lazy") == 0)
                so.memory = MACHINE_MEMORY_LAZY;
            else if (strcmp(optarg, "decompress") == 0)
                so.memory = MACHINE_MEMORY_DECOMPRESS;
            else
                return cli_fail(CLI_USAGE, "--memory must be map, lazy, copy or decompress");
            break;
        case OPT_DETACH: detach = true; break;
        case OPT_VERIFY: so.trusted_key = optarg; break;
        case 'p':
            if (net_parse_option("publish", optarg, &forwards) < 0)
                return cli_fail(CLI_USAGE, "%s", err_msg());
            break;
        case 'h':
            fputs(start_help, stdout);
            return CLI_OK;
        default: return CLI_USAGE; /* cli_getopt_long said why */
        }
    }
    if (optind != argc - 1)
        return cli_fail(CLI_USAGE, "start takes one bundle (try 'smolvm start --help')");
    struct stat st;
    if (!name && stat(argv[optind], &st) < 0 && !strchr(argv[optind], '/'))
        name = argv[optind]; /* an instance runs under its own name */
    if (hv_check() < 0) /* before any work, say what to do */
        return cli_fail(CLI_FAILED, "%s", err_msg());
    code = serve_open(name, &server);
    if (code != CLI_OK)
        return code;
    if (detach) {
        bool parent;
        code = serve_detach(server, &parent);
        if (parent || code != CLI_OK)
            return code;
        so.interactive = false;
    }
    so.name = serve_name(server);
    if (start_machine(argv[optind], &so, &m) < 0) {
        serve_abort(server);
        return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    return serve_machine(server, m, &o);
}
