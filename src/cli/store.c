/* The verbs of the local store: create, reset, commit, rm, ls, layers, gc
 * (and the instance half of start). */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle/bundle.h"
#include "bundle/sections.h"
#include "cli/cli.h"
#include "cli/vm_options.h"
#include "core/config.h"
#include "image/appliance.h"
#include "net/config.h"
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

static void print_json(json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    puts(text ? text : "null");
    free(text);
}

/* Errors follow the shared convention (cli_fail: "smolvm: VERB: message",
 * and the error object under --json, both known from main()). */
static int failed(void)
{
    return cli_fail(CLI_FAILED, "%s", err_msg());
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return cli_fail(CLI_USAGE, "%s (try 'smolvm %s --help')", message, cli_verb());
}

/* An option the verb does not handle (cli_getopt_long refuses unknown ones itself). */
static int bad_option(int c, char **argv)
{
    if (c == ':')
        return usage_error("option '%s' needs a value", argv[optind - 1]);
    return usage_error("unknown option '%s'", argv[optind - 1]);
}

/* The one NAME a verb takes, checked as the store checks it. */
static int name_argument(int argc, char **argv, const char **name)
{
    if (argc == optind)
        return usage_error("no instance NAME");
    if (argc - optind > 1)
        return usage_error("one instance NAME ('%s' is one too many)",
                           argv[optind + 1]);
    if (!store_name_ok(argv[optind]))
        return usage_error("'%s' is not a valid instance name (1-64 letters, digits, "
                                       "'.', '_', '-')", argv[optind]);
    *name = argv[optind];
    return CLI_OK;
}

/* The store's keys in the style of the rest ("virtual-size" in a layer's
 * sidecar is virtual_size here); what only the store uses stays out. */
static json_t *snake_case(json_t *in)
{
    json_t *out = json_object(), *value;
    const char *key;

    json_object_foreach(in, key, value) {
        char k[64];
        snprintf(k, sizeof(k), "%s", key);
        for (char *p = k; *p; p++)
            *p = *p == '-' ? '_' : *p;
        if (strcmp(k, "pristine") != 0 && strcmp(k, "resume") != 0)
            json_object_set(out, k, value);
    }
    return out;
}

/* An instance as ls shows it, printed as what a verb did to it. */
static int print_instance(struct store *s, const char *name, const char *key, const char *value)
{
    json_t *info = store_instance_info(s, name), *j;
    if (!info)
        return -ENOENT;
    j = snake_case(info);
    if (key)
        json_object_set_new(j, key, json_string(value));
    print_json(j);
    json_decref(j);
    json_decref(info);
    return 0;
}

static const struct vm_options_help create_help = {
    "usage: smolvm create NAME --from SOURCE [options]\n"
    "\n"
    "Creates instance NAME on a layer of the store, copying nothing: it writes to a\n"
    "qcow2 delta of its own. SOURCE is an appliance folder ('smolvm image build';\n"
    "its root, kernel and initrd become layers, read once: an unchanged folder's\n"
    "files are not read again), a .smolmachine (its layers are imported, each\n"
    "once; a saved state is kept, so the first start resumes it), a disk image,\n"
    "or the hash of a layer. --kernel, --initrd, --cmdline and --virtio-discovery\n"
    "default to the source's; a source with a saved state fixes the CPUs and\n"
    "memory (--cpus and --mem are refused). The network: --net's, else an\n"
    "appliance's default (user, as run gives it), a bundle's own, or none for an\n"
    "image or a layer.\n"
    "\n",
    "",
};

int cli_create(int argc, char **argv)
{
    struct vm_options o = {0};
    const char *name;
    struct store *s;
    int r = vm_options_parse(VM_OPT_CREATE, &create_help, argc, argv, &o);

    if (r == VM_OPTIONS_HELP)
        return CLI_OK;
    if (r != CLI_OK)
        return r;
    if ((r = name_argument(argc, argv, &name)) != CLI_OK)
        return r;
    if (!o.from)
        return usage_error("--from SOURCE is required");
    if (appliance_folder(o.from))
        o.appliance = o.from;
    vm_options_default_net(&o);
    if (net_config_check(&o.vm.net) < 0)
        return usage_error("%s", err_msg());
    if (store_open(&s) < 0)
        return failed();
    struct store_create_request q = {
        .name = name, .from = o.from, .kernel = o.vm.kernel_path, .initrd = o.vm.initrd_path,
        .cmdline = o.cmdline_given ? o.vm.cmdline : NULL, .trusted_key = o.trusted_key,
        .cpus = o.cpus_given ? o.vm.cpus : 0, .mem_bytes = o.mem_given ? o.vm.mem_bytes : 0,
        .discovery = o.vm.discovery, .discovery_given = o.discovery_given,
        .shares = o.vm.shares, .share_count = o.vm.share_count,
        .net = o.net_given || o.appliance ? &o.vm.net : NULL,
    };
    r = store_create_from(s, &q);
    if (r == 0 && (cli_json() || o.serve.json))
        r = print_instance(s, name, NULL, NULL);
    else if (r == 0)
        printf("%s\n", name);
    store_close(s);
    return r < 0 ? failed() : CLI_OK;
}

/* reset and rm: one instance name, and --json. */
static int one_name(int argc, char **argv, const char *usage, const char *text,
                    int (*op)(struct store *, const char *))
{
    static const struct option longs[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    bool json = cli_json(), removes = op == store_remove;
    const char *name;
    struct store *s;
    int c, r;

    if (wants_help(argc, argv, usage, text))
        return CLI_OK;
    optind = 1;
    while ((c = cli_getopt_long(argc, argv, "", longs, NULL)) != -1)
        if (c != 'j')
            return bad_option(c, argv);
    if ((r = name_argument(argc, argv, &name)) != CLI_OK)
        return r;
    if (store_open(&s) < 0)
        return failed();
    r = op(s, name);
    if (r == 0 && json && removes) {
        json_t *j = json_pack("{sssb}", "name", name, "removed", 1);
        print_json(j);
        json_decref(j);
    } else if (r == 0 && json) {
        r = print_instance(s, name, NULL, NULL);
    }
    store_close(s);
    return r < 0 ? failed() : CLI_OK;
}

int cli_reset(int argc, char **argv)
{
    return one_name(argc, argv, "smolvm reset NAME [--json]",
                    "Discards what instance NAME wrote since its top layer (its delta starts\n"
                    "empty again); an instance made from a bundle with saved state resumes that\n"
                    "state again on its next start. Refused while a VM (under any name) has\n"
                    "NAME's disk open.\n\n"
                    "      --json  print the instance as 'smolvm ls --json' does; errors as\n"
                    "              {\"error\": ...}\n",
                    store_reset);
}

int cli_rm(int argc, char **argv)
{
    return one_name(argc, argv, "smolvm rm NAME [--json]",
                    "Removes instance NAME: its folder, delta and saved state. Its layers stay\n"
                    "in the store until 'smolvm gc'. Refused while a VM (under any name) has\n"
                    "NAME's disk open.\n\n"
                    "      --json  print {\"name\": NAME, \"removed\": true}; errors as\n"
                    "              {\"error\": ...}\n",
                    store_remove);
}

int cli_commit(int argc, char **argv)
{
    static const char usage[] = "smolvm commit NAME [--message TEXT] [--json]";
    static const struct option longs[] = {{"message", required_argument, NULL, 'm'},
                                          {"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    const char *message = NULL, *name;
    char hash[HASH_HEX];
    bool json = cli_json();
    struct store *s;
    int c, r;

    if (wants_help(argc, argv, usage,
                   "Freezes instance NAME's delta into a new read-only layer (named by the\n"
                   "SHA-256 of its bytes) and gives NAME a fresh delta on top of it; 'smolvm\n"
                   "reset' then returns to this point. Prints the layer's hash. Refused while a\n"
                   "VM (under any name) has NAME's disk open.\n\n"
                   "  -m, --message TEXT  a note kept with the layer ('smolvm layers' shows it)\n"
                   "      --json          print the instance as 'smolvm ls --json' does, with\n"
                   "                      \"layer\": the new layer; errors as {\"error\": ...}\n"))
        return CLI_OK;
    optind = 1;
    while ((c = cli_getopt_long(argc, argv, "m:", longs, NULL)) != -1) {
        if (c == 'm')
            message = optarg;
        else if (c != 'j')
            return bad_option(c, argv);
    }
    if ((r = name_argument(argc, argv, &name)) != CLI_OK)
        return r;
    if (store_open(&s) < 0)
        return failed();
    r = store_commit(s, name, message, hash);
    if (r == 0 && json)
        r = print_instance(s, name, "layer", hash);
    else if (r == 0)
        puts(hash);
    store_close(s);
    return r < 0 ? failed() : CLI_OK;
}

static const char *sort_key;

/* By sort_key: a string (a name) or a number (a time), then by hash. */
static int by_key(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_t *kx = json_object_get(x, sort_key), *ky = json_object_get(y, sort_key);
    long long nx = json_integer_value(kx), ny = json_integer_value(ky);
    int c = json_is_string(kx) ? strcmp(json_string_value(kx) ?: "", json_string_value(ky) ?: "")
                               : (nx > ny) - (nx < ny);
    return c ? c : strcmp(json_string_value(json_object_get(x, "hash")) ?: "",
                          json_string_value(json_object_get(y, "hash")) ?: "");
}

/* The list in a stable order, its keys snake_case. */
static json_t *sorted(json_t *list, const char *key)
{
    size_t n = json_array_size(list), i;
    json_t **items = calloc(n ? n : 1, sizeof(*items)), *out = json_array(), *x;

    json_array_foreach(list, i, x)
        if (items)
            items[i] = x;
    sort_key = key;
    if (items)
        qsort(items, n, sizeof(*items), by_key);
    for (i = 0; items && i < n; i++)
        json_array_append_new(out, snake_case(items[i]));
    free(items);
    return out;
}

static const char *human(json_t *x, const char *key, char out[SIZE_TEXT_MAX])
{
    size_format((uint64_t)json_integer_value(json_object_get(x, key)), out);
    return out;
}

static void print_layers(json_t *all)
{
    char size[SIZE_TEXT_MAX], bytes[SIZE_TEXT_MAX];
    json_t *x;
    size_t i;

    printf("%-14s %-6s %-14s %6s %7s %5s  %s\n", "LAYER", "FORMAT", "PARENT", "SIZE", "ON DISK",
           "USERS", "MESSAGE");
    json_array_foreach(all, i, x)
        printf("%-14.12s %-6s %-14.12s %6s %7s %5lld  %s\n",
               json_string_value(json_object_get(x, "hash")),
               json_string_value(json_object_get(x, "format")),
               json_string_value(json_object_get(x, "parent")), human(x, "virtual_size", size),
               human(x, "bytes", bytes), (long long)json_integer_value(json_object_get(x, "users")),
               json_string_value(json_object_get(x, "message")) ?: "");
}

static void print_instances(json_t *all)
{
    char delta[SIZE_TEXT_MAX];
    json_t *x;
    size_t i;

    printf("%-24s %-14s %6s  %s\n", "NAME", "LAYER", "DELTA", "NEXT START");
    json_array_foreach(all, i, x)
        printf("%-24s %-14.12s %6s  %s\n", json_string_value(json_object_get(x, "name")),
               json_string_value(json_object_get(x, "top")), human(x, "delta_bytes", delta),
               json_string_value(json_object_get(x, "next_start")));
}

/* ls and layers: a table, or --json. */
static int listing(int argc, char **argv, int (*list)(struct store *, json_t *), bool layers)
{
    bool json = cli_json();
    struct store *s;
    json_t *all = json_array(), *in_order;

    if (wants_help(argc, argv, layers ? "smolvm layers [--json]" : "smolvm ls [--json]",
                   layers ? "Lists the store's layers, oldest first (by creation time, then hash):\n"
                            "hash, format, parent, virtual size, bytes on disk, how many instances\n"
                            "use it (its chain goes through it), and its message. Sizes as 'ls -h'.\n\n"
                            "      --json  print the list as JSON: per layer hash, format, parent,\n"
                            "              virtual_size, bytes, users, message, created (seconds\n"
                            "              since 1970), sizes in bytes; errors as {\"error\": ...}\n"
                          : "Lists the store's instances by name: name, top layer, bytes in its\n"
                            "delta (as 'ls -h'), and whether its next start boots or resumes a\n"
                            "saved state.\n\n"
                            "      --json  print the list as JSON: per instance name, top,\n"
                            "              delta_bytes, next_start, kernel, initrd, cmdline, cpus,\n"
                            "              mem_bytes, created; errors as {\"error\": ...}\n"))
        return CLI_OK;
    if (argc > 2 || (argc == 2 && !json)) {
        json_decref(all);
        return argv[1][0] == '-' ? usage_error("unknown option '%s'", argv[1])
                                 : usage_error("no arguments, only --json");
    }
    if (store_open(&s) < 0 || list(s, all) < 0) {
        json_decref(all);
        return failed();
    }
    store_close(s);
    in_order = sorted(all, layers ? "created" : "name");
    if (json)
        print_json(in_order);
    else if (layers)
        print_layers(in_order);
    else
        print_instances(in_order);
    json_decref(in_order);
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
    bool json = cli_json();
    struct store *s;
    unsigned removed;

    if (wants_help(argc, argv, "smolvm gc [--json]",
                   "Removes the layers no instance and no other layer uses (leaves first),\n"
                   "and prints how many went.\n\n"
                   "      --json  print {\"layers_removed\": N}; errors as {\"error\": ...}\n"))
        return CLI_OK;
    if (argc > 2 || (argc == 2 && !json))
        return argv[1][0] == '-' ? usage_error("unknown option '%s'", argv[1])
                                 : usage_error("no arguments, only --json");
    if (store_open(&s) < 0)
        return failed();
    int r = store_gc(s, &removed);
    store_close(s);
    if (r < 0)
        return failed();
    if (json) {
        json_t *j = json_pack("{si}", "layers_removed", (int)removed);
        print_json(j);
        json_decref(j);
    } else {
        printf("%u layers removed\n", removed);
    }
    return CLI_OK;
}
