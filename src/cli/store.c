/* The verbs of the local store: create, reset, commit, rm, ls, layers, gc
 * (and the instance half of start). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle/bundle.h"
#include "bundle/machine.h"
#include "cli/cli.h"
#include "core/config.h"
#include "image/appliance.h"
#include "store/store.h"
#include "util/err.h"
#include "util/size.h"

/* --help prints the usage line, then what the verb does and its options. */
static bool wants_help(int argc, char **argv, const char *usage, const char *text)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s\n\n%s", usage, text);
            return true;
        }
    return false;
}

static int failed(const char *verb)
{
    (void)verb; /* cli_fail names it */
    return cli_fail(CLI_FAILED, "%s", err_msg());
}


static void print_json(json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    puts(text ? text : "null");
    free(text);
}

/* --from a bundle that must be signed with trusted_key's private key: the
 * import checks it before anything of the bundle enters the store. */
static int import_verified(struct store *s, const char *from, char top[HASH_HEX],
                           char kernel[HASH_HEX], char initrd[HASH_HEX], struct vm_config *cfg,
                           const char **state, const char *trusted_key)
{
    struct bundle *b;
    int r = bundle_open(from, &b);

    if (r < 0) {
        err_prefix("--verify checks a bundle file");
        return r;
    }
    *state = machine_has_state(b) ? from : NULL;
    bundle_close(b);
    return store_import_bundle(s, from, top, kernel, initrd, cfg, trusted_key);
}

/* --from: an appliance folder, a .smolmachine, a layer hash or an image. */
static int import_source(struct store *s, const char *from, char top[HASH_HEX],
                         char kernel[HASH_HEX], char initrd[HASH_HEX], struct vm_config *cfg,
                         const char **state, const char *trusted_key)
{
    struct appliance_files f;
    struct stat st;
    int r;

    kernel[0] = initrd[0] = 0;
    if (trusted_key)
        return import_verified(s, from, top, kernel, initrd, cfg, state, trusted_key);
    if (hash_is_hex(from)) {
        snprintf(top, HASH_HEX, "%s", from);
        return 0;
    }
    if (stat(from, &st) < 0)
        return err_set(errno, "'%s'", from);
    if (S_ISDIR(st.st_mode)) {
        r = appliance_open(from, &f);
        if (r == 0)
            r = store_add_layer(s, f.root, "appliance root", top);
        if (r == 0)
            r = store_add_layer(s, f.kernel, "kernel", kernel);
        if (r == 0)
            r = store_add_layer(s, f.initrd, "initrd", initrd);
        if (r == 0)
            cfg->cmdline = f.cmdline, f.cmdline = NULL;
        appliance_files_release(&f);
        return r;
    }
    /* A file with the bundle's magic is a bundle or an error: a corrupt
     * one is never taken for a raw disk image. */
    struct bundle *b;
    if ((r = bundle_probe(from)) != 0) {
        if (r > 0 && (r = bundle_open(from, &b)) == 0) {
            *state = machine_has_state(b) ? from : NULL;
            bundle_close(b);
            r = store_import_bundle(s, from, top, kernel, initrd, cfg, NULL);
        }
        return r;
    }
    return store_add_layer(s, from, "image", top);
}

static int verb_create(int argc, char **argv)
{
    static const char usage[] =
        "smolvm create NAME --from APPLIANCE_DIR|FILE.smolmachine|IMAGE|LAYER "
        "[--verify KEY.pub] [--kernel PATH] [--initrd PATH] [--cmdline TEXT] [--cpus N] [--mem SIZE] "
        "[--json]";
    static const struct option longs[] = {
        {"from", required_argument, NULL, 'f'}, {"kernel", required_argument, NULL, 'k'},
        {"initrd", required_argument, NULL, 'i'}, {"cmdline", required_argument, NULL, 'a'},
        {"cpus", required_argument, NULL, 'c'}, {"mem", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'}, {"verify", required_argument, NULL, 'v'},
        {NULL, 0, NULL, 0}};
    const char *from = NULL, *kernel_path = NULL, *initrd_path = NULL, *cmdline = NULL;
    const char *trusted_key = NULL;
    const char *state = NULL;
    uint64_t mem = 0;
    char top[HASH_HEX], kernel[HASH_HEX], initrd[HASH_HEX];
    struct vm_config cfg;
    struct store *s;
    uint64_t cpus = 0;
    bool json = false;
    int c, r;

    if (wants_help(argc, argv, usage,
                   "Creates instance NAME on a layer of the store, copying nothing: it writes to a\n"
                   "qcow2 delta of its own. SOURCE is an appliance folder ('smolvm image build';\n"
                   "its root, kernel and initrd become layers), a .smolmachine (its layers are\n"
                   "imported, each once; a saved state is kept, so the first start resumes it),\n"
                   "a disk image, or the hash of a layer.\n\n"
                   "      --from SOURCE   what the instance starts from (required)\n"
                   "      --verify KEY.pub  SOURCE must be a bundle signed with KEY's private\n"
                   "                      key and unchanged since ('smolvm keygen')\n"
                   "      --kernel PATH   the kernel to boot (default: the source's)\n"
                   "      --initrd PATH   the initrd (default: the source's)\n"
                   "      --cmdline TEXT  the kernel command line\n"
                   "      --cpus N        vCPUs (not for a source with a saved state)\n"
                   "      --mem SIZE      guest RAM, e.g. 512M (not for a saved state)\n"
                   "      --json          print the result as JSON\n"))
        return CLI_OK;
    vm_config_defaults(&cfg);
    cfg.cmdline = NULL;
    while ((c = cli_getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == 'f')
            from = optarg;
        else if (c == 'k')
            kernel_path = optarg;
        else if (c == 'i')
            initrd_path = optarg;
        else if (c == 'a')
            cmdline = optarg;
        else if (c == 'j')
            json = true;
        else if (c == 'v')
            trusted_key = optarg;
        else if (c == 'c' && size_parse(optarg, 1, &cpus) == 0 && cpus && cpus <= 255)
            continue;
        else if (c == 'm' && size_parse(optarg, 1ull << 20, &mem) == 0 && mem)
            continue;
        else
            return cli_fail(CLI_USAGE, "usage: %s", usage);
    }
    if (argc - optind != 1 || !from)
        return cli_fail(CLI_USAGE, "usage: %s", usage);
    if (cli_check_name(argv[optind]) != CLI_OK)
        return CLI_USAGE;
    if (store_open(&s) < 0)
        return failed("create");
    r = import_source(s, from, top, kernel, initrd, &cfg, &state, trusted_key);
    if (r == 0 && state && (cpus || mem))
        r = err_plain(EINVAL, "'%s' holds a saved state, which fixes its CPUs and memory", from);
    if (r == 0 && kernel_path)
        r = store_add_layer(s, kernel_path, "kernel", kernel);
    if (r == 0 && initrd_path)
        r = store_add_layer(s, initrd_path, "initrd", initrd);
    struct instance_boot boot = {.kernel = kernel[0] ? kernel : NULL,
                                 .initrd = initrd[0] ? initrd : NULL,
                                 .cmdline = cmdline ? cmdline : cfg.cmdline,
                                 .state = state,
                                 .cpus = cpus ? (unsigned)cpus : cfg.cpus,
                                 .mem_bytes = mem ? mem : cfg.mem_bytes};
    if (r == 0)
        r = store_create(s, argv[optind], top, &boot);
    store_close(s);
    if (r < 0)
        return failed("create");
    if (json) {
        json_t *j = json_pack("{ssss}", "name", argv[optind], "top", top);
        print_json(j);
        json_decref(j);
    } else {
        printf("%s\n", argv[optind]);
    }
    return CLI_OK;
}

/* The verbs that take one instance name and nothing else. */
static int one_name(int argc, char **argv, const char *usage, const char *text,
                    int (*op)(struct store *, const char *))
{
    struct store *s;
    if (wants_help(argc, argv, usage, text))
        return CLI_OK;
    if (argc != 2 || argv[1][0] == '-')
        return cli_fail(CLI_USAGE, "usage: %s", usage);
    if (cli_check_name(argv[1]) != CLI_OK)
        return CLI_USAGE;
    /* Its delta is under a running VM: discarding it would pull the disk
     * out from under the guest. */
    if (cli_vm_running(argv[1]))
        return cli_fail(CLI_FAILED, "instance '%s' is running (stop or save it first)", argv[1]);
    if (store_open(&s) < 0)
        return failed(argv[0]);
    int r = op(s, argv[1]);
    store_close(s);
    return r < 0 ? failed(argv[0]) : CLI_OK;
}

int cli_reset(int argc, char **argv)
{
    return one_name(argc, argv, "smolvm reset NAME",
                    "Discards what instance NAME wrote since its top layer (its delta starts\n"
                    "empty again); an instance made from a bundle with saved state resumes that\n"
                    "state again on its next start. NAME must not be running.\n",
                    store_reset);
}

int cli_rm(int argc, char **argv)
{
    return one_name(argc, argv, "smolvm rm NAME",
                    "Removes instance NAME: its folder, delta and saved state. Its layers stay\n"
                    "in the store until 'smolvm gc'. NAME must not be running.\n",
                    store_remove);
}

int cli_commit(int argc, char **argv)
{
    static const char usage[] = "smolvm commit NAME [--message TEXT] [--json]";
    static const struct option longs[] = {{"message", required_argument, NULL, 'm'},
                                          {"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    const char *message = NULL;
    char hash[HASH_HEX];
    bool json = false;
    struct store *s;
    int c;

    if (wants_help(argc, argv, usage,
                   "Freezes instance NAME's delta into a new read-only layer (named by the\n"
                   "SHA-256 of its bytes) and gives NAME a fresh delta on top of it; 'smolvm\n"
                   "reset' then returns to this point. Prints the layer's hash.\n\n"
                   "  -m, --message TEXT  a note kept with the layer ('smolvm layers' shows it)\n"
                   "      --json          print the result as JSON\n"))
        return CLI_OK;
    optind = 1;
    while ((c = cli_getopt_long(argc, argv, "m:", longs, NULL)) != -1) {
        if (c == 'm')
            message = optarg;
        else if (c == 'j')
            json = true;
        else
            return cli_fail(CLI_USAGE, "usage: %s", usage);
    }
    if (argc - optind != 1)
        return cli_fail(CLI_USAGE, "usage: %s", usage);
    if (store_open(&s) < 0)
        return failed("commit");
    int r = store_commit(s, argv[optind], message, hash);
    store_close(s);
    if (r < 0)
        return failed("commit");
    if (json)
        printf("{\"layer\": \"%s\"}\n", hash);
    else
        puts(hash);
    return CLI_OK;
}

/* ls and layers: a table, or --json. */
static int listing(int argc, char **argv, int (*list)(struct store *, json_t *), bool layers)
{
    bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
    struct store *s;
    json_t *all = json_array(), *x;
    size_t i;

    if (wants_help(argc, argv, layers ? "smolvm layers [--json]" : "smolvm ls [--json]",
                   layers ? "Lists the store's layers: hash, format, parent, virtual size, bytes on\n"
                            "disk, how many instances and layers use it, and its message.\n\n"
                            "      --json  print the list as JSON\n"
                          : "Lists the store's instances: name, top layer, bytes in its delta, and\n"
                            "whether its next start boots or resumes a saved state.\n\n"
                            "      --json  print the list as JSON\n"))
        return CLI_OK;
    if (argc > 2 || (argc == 2 && !json))
        return cli_fail(CLI_USAGE, "usage: smolvm %s [--json]", argv[0]);
    if (store_open(&s) < 0 || list(s, all) < 0) {
        json_decref(all);
        return failed(argv[0]);
    }
    store_close(s);
    if (json) {
        print_json(all);
    } else if (layers) {
        printf("%-14s %-6s %-14s %12s %12s %5s  %s\n", "LAYER", "FORMAT", "PARENT", "SIZE",
               "ON DISK", "USERS", "MESSAGE");
        json_array_foreach(all, i, x)
            printf("%-14.12s %-6s %-14.12s %12lld %12lld %5lld  %s\n",
                   json_string_value(json_object_get(x, "hash")),
                   json_string_value(json_object_get(x, "format")),
                   json_string_value(json_object_get(x, "parent")),
                   (long long)json_integer_value(json_object_get(x, "virtual-size")),
                   (long long)json_integer_value(json_object_get(x, "bytes")),
                   (long long)json_integer_value(json_object_get(x, "users")),
                   json_string_value(json_object_get(x, "message")) ?: "");
    } else {
        printf("%-24s %-14s %12s  %s\n", "NAME", "LAYER", "DELTA", "NEXT START");
        json_array_foreach(all, i, x) {
            const char *resume = json_string_value(json_object_get(x, "resume"));
            printf("%-24s %-14.12s %12lld  %s\n", json_string_value(json_object_get(x, "name")),
                   json_string_value(json_object_get(x, "top")),
                   (long long)json_integer_value(json_object_get(x, "delta-bytes")),
                   !resume ? "boots" : strstr(resume, "suspended") ? "resumes (suspended)"
                                                                   : "resumes (saved state)");
        }
    }
    json_decref(all);
    return CLI_OK;
}

int cli_ls(int argc, char **argv)
{
    return listing(argc, argv, store_list, false);
}

int cli_layers(int argc, char **argv)
{
    return listing(argc, argv, store_list_layers, true);
}

int cli_gc(int argc, char **argv)
{
    struct store *s;
    unsigned removed;

    if (wants_help(argc, argv, "smolvm gc",
                   "Removes the layers no instance and no other layer uses (leaves first),\n"
                   "and prints how many went.\n"))
        return CLI_OK;
    if (argc != 1)
        return cli_fail(CLI_USAGE, "usage: smolvm gc");
    if (store_open(&s) < 0)
        return failed("gc");
    int r = store_gc(s, &removed);
    store_close(s);
    if (r < 0)
        return failed("gc");
    printf("%u layers removed\n", removed);
    return CLI_OK;
}

int cli_create(int argc, char **argv)
{
    optind = 1;
    return verb_create(argc, argv);
}

int cli_instance_config(const char *name, struct vm_config *cfg, const char **resume,
                        bool *resume_shared)
{
    struct store *s;
    struct instance *i = calloc(1, sizeof(*i)); /* lives as long as the VM */
    int r = i ? store_open(&s) : -ENOMEM;

    if (r < 0)
        return r;
    r = store_instance(s, name, i);
    store_close(s);
    if (r < 0) {
        free(i);
        return r;
    }
    if (!i->boot.kernel)
        return err_plain(EINVAL, "instance '%s' has no kernel (create it with --kernel)", name);
    cfg->kernel_path = i->boot.kernel;
    cfg->initrd_path = i->boot.initrd;
    if (i->boot.cmdline)
        cfg->cmdline = i->boot.cmdline;
    if (i->boot.cpus)
        cfg->cpus = i->boot.cpus;
    if (i->boot.mem_bytes)
        cfg->mem_bytes = i->boot.mem_bytes;
    cfg->disks[0] = (struct vm_disk_config){.path = i->delta, .format = "qcow2"};
    cfg->disk_count = 1;
    *resume = i->resume;
    *resume_shared = i->resume_pristine;
    return 0;
}

int cli_instance_export(const char *name, const char *path, bool flatten, const char *sign_key)
{
    static struct vm_config cfg;
    const char *resume;
    bool shared;

    vm_config_defaults(&cfg);
    int r = cli_instance_config(name, &cfg, &resume, &shared);
    return r < 0 ? r : machine_export(&cfg, resume, path, flatten, sign_key);
}

/* The instance's store, for one call. */
static int with_store(const char *name, int (*op)(struct store *, const char *, char **),
                      char **out)
{
    struct store *s;
    int r = store_open(&s);
    if (r == 0)
        r = op(s, name, out);
    store_close(s);
    return r;
}

static int resumed(struct store *s, const char *name, char **unused)
{
    (void)unused;
    return store_resumed(s, name);
}

static int suspended(struct store *s, const char *name, char **unused)
{
    (void)unused;
    return store_suspended(s, name);
}

int cli_instance_suspend_path(const char *name, char **path)
{
    return with_store(name, store_suspend_path, path);
}

int cli_instance_suspended(const char *name)
{
    return with_store(name, suspended, NULL);
}

int cli_instance_resumed(const char *name)
{
    return with_store(name, resumed, NULL);
}
