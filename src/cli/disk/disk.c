/* smolvm disk: qemu-img's verbs and flags over the disk library, so users
 * who know one know the other. What every verb shares lives here: exact
 * option names (getopt_long's prefixes refused), -h/--help, --json (and
 * qemu-img's --output=json), and one error format, "smolvm: disk VERB:
 * message" with exit 2 for a wrong command line and 1 for a failure. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/disk/disk_cli.h"
#include "util/err.h"
#include "util/size.h"

const struct disk_verb *disk_verb;
bool disk_json;

#define FORMAT_OPTION "  -f FMT          the image's format (raw, qcow2, vmdk, vdi, vpc), not probed\n"
#define CREATE_OPTIONS                                                                          \
    "  -o OPTS         comma-separated, as qemu-img: cluster_size=SIZE, refcount_bits=N,\n"    \
    "                  compat=0.10|1.1, lazy_refcounts=on|off, compression_type=zlib|zstd\n"  \
    "                  (qcow2); subformat=dynamic|fixed (vpc; vdi: static), block_size=SIZE\n"
#define PROGRESS_OPTION "  -p              show progress\n"
#define INFO_KEYS                                                                               \
    "the image, as qemu-img info's: virtual-size, filename, format,\n"             \
    "actual-size, dirty-flag, cluster-size, backing-filename, full-backing-filename,\n"       \
    "backing-filename-format, snapshots, format-specific {type, data}"

static const struct option no_longs[] = {{NULL, 0, NULL, 0}};
static const struct option info_longs[] = {
    {"backing-chain", no_argument, NULL, DISK_OPT_BACKING_CHAIN}, {NULL, 0, NULL, 0}};
static const struct option resize_longs[] = {{"shrink", no_argument, NULL, DISK_OPT_SHRINK},
                                             {NULL, 0, NULL, 0}};
static const struct option bench_longs[] = {
    {"flush-interval", required_argument, NULL, DISK_OPT_FLUSH_INTERVAL}, {NULL, 0, NULL, 0}};
static const struct option measure_longs[] = {{"size", required_argument, NULL, DISK_OPT_SIZE},
                                              {NULL, 0, NULL, 0}};

static const struct disk_verb verbs[] = {
    {"create", "create a new image", "create [-f FMT] [-b BACKING [-F BFMT]] [-o OPTS] FILE [SIZE]",
     disk_verb_create, "f:b:F:o:", no_longs, true,
     "  -f FMT          raw (the default), qcow2, vmdk, vdi or vpc\n"
     "  -b BACKING      an overlay on BACKING (named relative to FILE); SIZE defaults to its\n"
     "                  size\n"
     "  -F BFMT         BACKING's format\n" CREATE_OPTIONS,
     INFO_KEYS " (of FILE)"},
    {"info", "show an image's format, size, backing file", "info [--json] [--backing-chain] [-f FMT] FILE",
     disk_verb_info, "f:", info_longs, true,
     FORMAT_OPTION "  --backing-chain every image of the chain, FILE first (--json: an array)\n",
     INFO_KEYS},
    {"check", "check an image's metadata (and repair it with -r)",
     "check [-r leaks|all] [-f FMT] [--json] FILE", disk_verb_check, "f:r:", no_longs, true,
     "  -r leaks        free leaked clusters; -r all: repair what can be repaired\n" FORMAT_OPTION
     "Exit status as qemu-img's: 0 clean, 1 failed, 2 corruptions left (or a wrong command\n"
     "line), 3 only leaks left, 63 the format cannot be checked (raw, vpc).\n",
     "filename, format, check-errors, total-clusters, image-end-offset, and when not 0\n"
     "corruptions, leaks, corruptions-fixed, leaks-fixed, allocated-clusters,\n"
     "compressed-clusters, fragmented-clusters"},
    {"convert", "copy an image into a new one of any format",
     "convert [-f FMT] -O FMT [-o OPTS] [-c] [-p] [-t writeback|unsafe|none] SRC DST",
     disk_verb_convert, "f:O:o:pct:", no_longs, true,
     "  -f FMT          SRC's format, not probed\n"
     "  -O FMT          DST's format (raw by default, qcow2, vmdk, vdi, vpc)\n" CREATE_OPTIONS
     "  -c              compress DST's clusters (qcow2: deflate, or zstd with compression_type)\n"
     PROGRESS_OPTION
     "  -t MODE         writeback (DST synced at the end), unsafe (no sync), none (O_DIRECT)\n"
     "Zero runs of 64 KiB or more are not written (DST stays sparse); DST is removed if the\n"
     "copy fails.\n",
     INFO_KEYS " (of DST)"},
    {"compare", "compare the content of two images", "compare [-f FMT] [-F FMT] [--json] A B",
     disk_verb_compare, "f:F:", no_longs, true,
     "  -f FMT          A's format\n"
     "  -F FMT          B's format\n"
     "Exit status as qemu-img's: 0 identical, 1 different (the first offset printed), 2 an\n"
     "error of any kind (a wrong command line too).\n",
     "identical (true or false), mismatch-offset (when different)"},
    {"snapshot", "list, create, apply or delete internal snapshots",
     "snapshot [-l | -c NAME | -a NAME | -d NAME] [-f FMT] [--json] FILE", disk_verb_snapshot,
     "f:c:a:d:l", no_longs, true,
     "  -l              list the snapshots\n"
     "  -c NAME         take one of the image as it is now\n"
     "  -a NAME         apply one: the image's content becomes the snapshot's\n"
     "  -d NAME         delete one (by name or id)\n" FORMAT_OPTION,
     "-l: an array of qemu-img's snapshot objects: id, name, vm-state-size, date-sec,\n"
     "date-nsec, vm-clock-sec, vm-clock-nsec, icount; -c, -a, -d: " INFO_KEYS},
    {"resize", "change an image's virtual size", "resize [-f FMT] [--shrink] FILE [+|-]SIZE",
     disk_verb_resize, "f:", resize_longs, true,
     FORMAT_OPTION "  --shrink        allow a smaller size (what lies past it is lost); needed\n"
     "                  for every shrink, as qemu-img's\n"
     "SIZE is absolute, or relative with + or - (resize F -512M); K, M, G and T suffixes.\n",
     INFO_KEYS},
    {"commit", "write an overlay's data into its backing file", "commit [-f FMT] [-d] [-p] FILE",
     disk_verb_commit, "f:dp", no_longs, true,
     FORMAT_OPTION "  -d              keep FILE's data (else FILE is emptied afterwards)\n"
     PROGRESS_OPTION,
     INFO_KEYS " (of FILE's backing file)"},
    {"rebase", "change an overlay's backing file, keeping its content",
     "rebase [-f FMT] [-u] [-p] -b BACKING [-F BFMT] FILE", disk_verb_rebase, "f:b:F:up",
     no_longs, true,
     FORMAT_OPTION "  -b BACKING      the new backing file (\"\" for none)\n"
     "  -F BFMT         its format\n"
     "  -u              unsafe: only rewrite the name, copy nothing\n" PROGRESS_OPTION,
     INFO_KEYS " (of FILE)"},
    {"amend", "change a qcow2 image's options in place", "amend [-f FMT] -o OPTS [--json] FILE",
     disk_verb_amend, "f:o:", no_longs, true,
     FORMAT_OPTION
     "  -o OPTS         comma-separated, as qemu-img amend: compat=0.10|1.1 (a downgrade needs\n"
     "                  16-bit refcounts, no internal snapshots, no zero clusters over a\n"
     "                  backing file, zlib compression), lazy_refcounts=on|off (compat=1.1).\n"
     "                  Other options (refcount_bits, cluster_size, size...) are refused.\n",
     INFO_KEYS},
    {"measure", "how large a new image would be",
     "measure [--size SIZE | [-f FMT] FILE] [-O FMT] [-o OPTS] [--json]", disk_verb_measure,
     "f:O:o:", measure_longs, true,
     "  --size SIZE     a new empty image of SIZE bytes (K, M, G, T suffixes)\n"
     "  FILE            or FILE converted (its data, through its backing chain)\n" FORMAT_OPTION
     "  -O FMT          the new image's format: qcow2 (the default) or raw\n"
     "  -o OPTS         qcow2's cluster_size=SIZE, refcount_bits=N\n",
     "required (bytes for the image as it is), fully-allocated (bytes\n"
     "once every cluster is written)"},
    {"bench", "time reads or writes through the library, as qemu-img bench",
     "bench [-c COUNT] [-f FMT] [-o OFFSET] [-s SIZE] [-S STEP] [-t none|writeback] [-w] "
     "[--flush-interval N] [--json] FILE",
     disk_verb_bench, "c:d:f:o:s:S:t:wn", bench_longs, true,
     "  -c COUNT        requests (default 75000)\n"
     "  -s SIZE         bytes each (default 4096, at most 64M)\n"
     "  -o OFFSET       where the first one goes\n"
     "  -S STEP         between requests (default SIZE)\n"
     "  -w              write instead of read\n"
     "  -t none         O_DIRECT (writeback: through the page cache, the default)\n"
     "  -d N, -n        accepted, as qemu-img's; requests go one at a time\n"
     "  --flush-interval N  a flush every N writes\n" FORMAT_OPTION,
     "operation (read or write), requests, request-size, offset, step, seconds"},
    {"map", "show where an image's data is", "map [--json] [-f FMT] FILE", disk_verb_map, "f:",
     no_longs, true, FORMAT_OPTION,
     "an array of start, length, depth, present, zero, data,\n"
     "offset (where data is stored in FILE)"},
};

#define VERB_COUNT (sizeof(verbs) / sizeof(verbs[0]))
#define MAX_LONGS 8

static struct option longs[MAX_LONGS];
static char shorts[32];

/* The shared convention (cli_fail): "smolvm: disk VERB: message" on
 * stderr, and under --json the error object on stdout as well. */
int disk_fail(int code, const char *fmt, ...)
{
    char verb[32];
    va_list ap;

    snprintf(verb, sizeof(verb), "disk %s", disk_verb ? disk_verb->name : "");
    cli_set_verb(disk_verb ? verb : "disk");
    cli_set_json(disk_json);
    va_start(ap, fmt);
    int r = cli_vfail(code, fmt, ap);
    va_end(ap);
    cli_set_verb("disk");
    return r;
}

/* What a failure exits with: CLI_FAILED, but compare's errors are 2 (its 1
 * means "different"), as in qemu-img. */
int disk_failure_code = CLI_FAILED;

int disk_failed(const char *path)
{
    const char *msg = err_msg();
    if (!*msg)
        msg = "failed";
    /* The library's messages mostly name the file already: name it once. */
    if (strstr(msg, path))
        return disk_fail(disk_failure_code, "%s", msg);
    return disk_fail(disk_failure_code, "%s: %s", path, msg);
}

int disk_failed_pair(const char *a, const char *b)
{
    const char *msg = err_msg();
    if (strstr(msg, a) || strstr(msg, b))
        return disk_fail(disk_failure_code, "%s", *msg ? msg : "failed");
    return disk_fail(disk_failure_code, "%s, %s: %s", a, b, *msg ? msg : "failed");
}

int disk_operands(int argc, int min, int max)
{
    int n = argc - optind;
    if (n >= min && n <= max)
        return 0;
    disk_usage("%s; usage: smolvm disk %s", n < min ? "missing operand" : "too many operands",
               disk_verb->usage);
    return -1;
}

int disk_print_json(json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(4) | JSON_ENCODE_ANY);
    if (text)
        puts(text);
    free(text);
    json_decref(j);
    return CLI_OK;
}

int disk_parse_size(const char *text, uint64_t *out)
{
    if (size_parse(text, 1, out) < 0)
        return disk_usage("invalid size '%s' (bytes, or with a K, M, G or T suffix)", text);
    return 0;
}

void disk_progress(void *opaque, uint64_t done, uint64_t total)
{
    (void)opaque;
    fprintf(stderr, "\r    (%.2f/100%%)", total ? 100.0 * (double)done / (double)total : 100.0);
}

bool disk_parse_on_off(const char *value, bool *out)
{
    if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0)
        *out = true;
    else if (strcmp(value, "off") == 0 || strcmp(value, "false") == 0)
        *out = false;
    else
        return false;
    return true;
}

/* -o cluster_size=64k,refcount_bits=16,lazy_refcounts=on,compat=1.1 */
int disk_parse_create_options(char *text, struct disk_create_options *o)
{
    char *save = NULL;
    for (char *opt = strtok_r(text, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        char *value = strchr(opt, '=');
        uint64_t n;
        if (!value)
            return disk_usage("-o %s: needs a value (%s=...)", opt, opt);
        *value++ = 0;
        if (strcmp(opt, "cluster_size") == 0 && size_parse(value, 1, &n) == 0 && n <= UINT32_MAX)
            o->cluster_size = (uint32_t)n;
        else if (strcmp(opt, "refcount_bits") == 0 && size_parse(value, 1, &n) == 0 && n <= 64)
            o->refcount_bits = (unsigned)n;
        else if (strcmp(opt, "lazy_refcounts") == 0 && disk_parse_on_off(value, &o->lazy_refcounts))
            continue;
        else if (strcmp(opt, "compat") == 0 && (strcmp(value, "0.10") == 0 ||
                                                 strcmp(value, "v2") == 0))
            o->compat_version = 2;
        else if (strcmp(opt, "compat") == 0 && (strcmp(value, "1.1") == 0 ||
                                                 strcmp(value, "v3") == 0))
            o->compat_version = 3;
        else if (strcmp(opt, "subformat") == 0 && (strcmp(value, "fixed") == 0 ||
                                                     strcmp(value, "static") == 0))
            o->fixed = true;
        else if (strcmp(opt, "subformat") == 0 && strcmp(value, "dynamic") == 0)
            o->fixed = false;
        else if (strcmp(opt, "block_size") == 0 && size_parse(value, 1, &n) == 0 &&
                 n <= UINT32_MAX)
            o->cluster_size = (uint32_t)n;
        else if (strcmp(opt, "compression_type") == 0 && (strcmp(value, "zstd") == 0 ||
                                                            strcmp(value, "zlib") == 0))
            o->zstd = strcmp(value, "zstd") == 0;
        else if (strcmp(opt, "backing_fmt") == 0)
            o->backing_format = value;
        else
            return disk_usage("-o: unknown or invalid option '%s=%s'", opt, value);
    }
    return 0;
}

/* The verb's options as one list, for "takes ..." in a message. */
static void list_options(char *out, size_t size)
{
    size_t n = 0;
    out[0] = 0;
    for (const char *p = shorts; *p && n < size; p++)
        if (*p != ':')
            n += (size_t)snprintf(out + n, size - n, "-%c, ", *p);
    for (const struct option *o = longs; o->name && n < size; o++)
        n += (size_t)snprintf(out + n, size - n, "--%s, ", o->name);
    if (n < size)
        snprintf(out + n, size - n, "-h");
}

static int unknown_option(const char *token)
{
    char takes[256];
    list_options(takes, sizeof(takes));
    return disk_usage("unknown option '%s' (disk %s takes %s)", token, disk_verb->name, takes);
}

static const struct option *exact_long(const char *name, size_t len)
{
    for (const struct option *o = longs; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static bool takes_json(const char *value)
{
    return strcmp(value, "json") == 0;
}

/* What getopt_long would see, walked before it runs: -h/--help and --json
 * found wherever they are (so even a usage error comes out as JSON), and a
 * long option that is not spelled out whole refused (getopt_long would take
 * --out for --output). "-5G" is an operand (resize's negative sizes). */
static int prescan(int argc, char **argv, bool *help)
{
    char bad[64] = ""; /* the first option the verb does not take */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        if (a[0] != '-' || a[1] == 0 || (a[1] >= '0' && a[1] <= '9'))
            continue;
        if (a[1] == '-') {
            size_t len = strcspn(a + 2, "=");
            const struct option *o = exact_long(a + 2, len);
            const char *value = a[2 + len] == '=' ? a + 3 + len : i + 1 < argc ? argv[i + 1] : "";
            if (strcmp(a, "--help") == 0)
                *help = true;
            else if (!o && !bad[0])
                snprintf(bad, sizeof(bad), "%.*s", (int)len + 2, a);
            if (o && (o->val == DISK_OPT_JSON || (o->val == DISK_OPT_OUTPUT && takes_json(value))))
                disk_json = true;
            if (o && o->has_arg == required_argument && a[2 + len] != '=')
                i++; /* its value */
            continue;
        }
        for (const char *p = a + 1; *p; p++) {
            const char *s = *p == ':' ? NULL : strchr(shorts, *p);
            if (*p == 'h')
                *help = true;
            else if (!s && !bad[0])
                snprintf(bad, sizeof(bad), "-%c", *p);
            if (s && s[1] == ':') { /* the rest, or the next argument, is its value */
                i += p[1] == 0;
                break;
            }
        }
    }
    if (*help || !bad[0])
        return 0;
    return unknown_option(bad);
}

int disk_option(int argc, char **argv, const char **format)
{
    for (;;) {
        int c = getopt_long(argc, argv, shorts, longs, NULL);
        if (c == 'f') {
            *format = optarg;
        } else if (c == DISK_OPT_JSON) {
            disk_json = true;
        } else if (c == DISK_OPT_OUTPUT) {
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "human") != 0) {
                disk_usage("--output takes json or human, not '%s'", optarg);
                return '?';
            }
            disk_json = takes_json(optarg);
        } else if (c == ':') {
            disk_usage("option '%s' needs a value; usage: smolvm disk %s", argv[optind - 1],
                       disk_verb->usage);
            return '?';
        } else if (c == '?') {
            unknown_option(argv[optind - 1]);
            return '?';
        } else {
            return c;
        }
    }
}

/* The lines of text that are (or are not) indented: options, then notes. */
static void print_lines(const char *text, bool indented)
{
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        if ((line[0] == ' ') == indented)
            printf("%.*s\n", (int)len, line);
        line += len + (line[len] == '\n');
    }
}

static void print_help(const struct disk_verb *v)
{
    printf("usage: smolvm disk %s\n\n%s.\n\n", v->usage, v->summary);
    print_lines(v->options, true);
    if (v->json)
        printf("  --json          print the result as JSON (also qemu-img's --output=json)\n");
    printf("  -h, --help      this help\n\n");
    print_lines(v->options, false);
    if (v->json)
        printf("With --json (or --output=json), stdout holds one JSON value, keys as qemu-img's:\n"
               "%s.\n"
               "An error is also {\"error\", \"verb\", \"exit_code\"} on stdout, after its line on stderr.\n",
               v->json_keys);
    if (!strstr(v->options, "Exit status"))
        printf("Exit status: 0 done, 1 failed, 2 the command line is wrong.\n");
}

/* The verb's getopt tables: its own, with --json and --output added. */
static void setup_options(const struct disk_verb *v)
{
    size_t n = 0;
    snprintf(shorts, sizeof(shorts), ":%s", v->shorts);
    for (const struct option *o = v->longs; o && o->name && n < MAX_LONGS - 3; o++)
        longs[n++] = *o;
    if (v->json) {
        longs[n++] = (struct option){"json", no_argument, NULL, DISK_OPT_JSON};
        longs[n++] = (struct option){"output", required_argument, NULL, DISK_OPT_OUTPUT};
    }
    longs[n] = (struct option){NULL, 0, NULL, 0};
}

int cli_disk(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *out = argc < 2 ? stderr : stdout;
        fputs("usage: smolvm disk <verb> [options]  (the flags of qemu-img)\n\nverbs:\n", out);
        for (size_t i = 0; i < VERB_COUNT; i++)
            fprintf(out, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
        fputs("\n'smolvm disk <verb> --help' describes a verb's options.\n", out);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    for (size_t i = 0; i < VERB_COUNT; i++) {
        bool help = false;
        if (strcmp(argv[1], verbs[i].name) != 0)
            continue;
        disk_verb = &verbs[i];
        setup_options(disk_verb);
        if (prescan(argc - 1, argv + 1, &help) != 0)
            return CLI_USAGE;
        if (help) {
            disk_json = false;
            print_help(disk_verb);
            return CLI_OK;
        }
        optind = 1;
        opterr = 0;
        disk_quiet = true; /* one line per error, ours */
        return disk_verb->main(argc - 1, argv + 1);
    }
    return cli_fail(CLI_USAGE, "disk: unknown verb '%s' (try 'smolvm disk --help')", argv[1]);
}
