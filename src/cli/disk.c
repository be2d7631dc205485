/* smolvm disk: qemu-img's verbs and flags over the disk library, so users
 * who know one know the other. Exit codes as qemu-img where it defines
 * them (compare: 1 = different; check: 2 = corrupt, 3 = leaks). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "disk/check.h"
#include "disk/copy.h"
#include "disk/disk.h"
#include "util/err.h"
#include "util/size.h"

struct disk_verb {
    const char *name, *summary, *usage;
    int (*main)(int argc, char **argv);
    const char *options; /* for --help */
};

#define FORMAT_OPTION "  -f FMT     the image's format (raw, qcow2, vmdk, vdi, vpc), not probed\n"
#define CREATE_OPTIONS                                                                          \
    "  -o OPTS    comma-separated, as qemu-img: cluster_size=SIZE, refcount_bits=N,\n"         \
    "             compat=0.10|1.1, lazy_refcounts=on|off, compression_type=zlib|zstd\n"       \
    "             (qcow2); subformat=dynamic|fixed (vpc; vdi: static), block_size=SIZE\n"

static const struct disk_verb *current;

/* --json, and qemu-img's --output=json. */
static const struct option json_options[] = {{"json", no_argument, NULL, 'j'},
                                             {"output", required_argument, NULL, 'O'},
                                             {NULL, 0, NULL, 0}};

static int usage_error(void)
{
    fprintf(stderr, "usage: smolvm disk %s\n", current->usage);
    return CLI_USAGE;
}

static int open_failed(void)
{
    return cli_fail(CLI_FAILED, "%s", err_msg());
}

/* -o cluster_size=64k,refcount_bits=16,lazy_refcounts=on,compat=1.1 */
static int parse_create_options(char *text, struct disk_create_options *o)
{
    char *save = NULL;
    for (char *opt = strtok_r(text, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        char *value = strchr(opt, '=');
        uint64_t n;
        if (!value)
            return cli_fail(CLI_USAGE, "option '%s' needs a value", opt);
        *value++ = 0;
        if (strcmp(opt, "cluster_size") == 0 && size_parse(value, 1, &n) == 0 && n <= UINT32_MAX)
            o->cluster_size = (uint32_t)n;
        else if (strcmp(opt, "refcount_bits") == 0 && size_parse(value, 1, &n) == 0 && n <= 64)
            o->refcount_bits = (unsigned)n;
        else if (strcmp(opt, "lazy_refcounts") == 0)
            o->lazy_refcounts = strcmp(value, "on") == 0;
        else if (strcmp(opt, "compat") == 0)
            o->compat_version = strcmp(value, "0.10") == 0 || strcmp(value, "v2") == 0 ? 2 : 3;
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
            return cli_fail(CLI_USAGE, "unknown or invalid option '%s=%s'", opt, value);
    }
    return 0;
}

/* The size of the backing file named as it will be recorded in path. */
static int backing_size(const char *path, const char *backing, const char *format,
                        uint64_t *size)
{
    char *full = disk_backing_path(path, backing);
    struct disk *d;
    int r;

    if (!full)
        return -ENOMEM;
    r = disk_open_as(full, DISK_READ_ONLY, format, &d);
    free(full);
    if (r < 0)
        return r;
    *size = d->size;
    disk_close(d);
    return 0;
}

static int verb_create(int argc, char **argv)
{
    struct disk_create_options o = {0};
    const char *format = "raw";
    int c;

    while ((c = getopt(argc, argv, "f:b:F:o:")) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'b')
            o.backing = optarg;
        else if (c == 'F')
            o.backing_format = optarg;
        else if (c == 'o') {
            if (parse_create_options(optarg, &o) != 0)
                return CLI_USAGE;
        } else
            return usage_error();
    }
    if (argc - optind < 1 || argc - optind > 2 || (argc - optind == 1 && !o.backing))
        return usage_error();
    if (argc - optind == 2 && size_parse(argv[optind + 1], 1, &o.size) < 0)
        return cli_fail(CLI_USAGE, "%s", err_msg());
    if (argc - optind == 1 && backing_size(argv[optind], o.backing, o.backing_format, &o.size) < 0)
        return open_failed();
    if (disk_create(format, argv[optind], &o) < 0)
        return open_failed();
    return CLI_OK;
}

static json_t *describe(struct disk *d)
{
    json_t *info = json_object();
    struct stat st;

    json_object_set_new(info, "filename", json_string(d->path));
    json_object_set_new(info, "format", json_string(d->format->name));
    json_object_set_new(info, "virtual-size", json_integer((json_int_t)d->size));
    if (fstat(d->fd, &st) == 0)
        json_object_set_new(info, "actual-size", json_integer((json_int_t)st.st_blocks * 512));
    if (d->format->describe)
        d->format->describe(d, info);
    return info;
}

static void print_info(json_t *info)
{
    json_t *spec = json_object_get(info, "format-specific");
    const char *key;
    json_t *value;

    printf("image: %s\nfile format: %s\nvirtual size: %lld bytes\ndisk size: %lld bytes\n",
           json_string_value(json_object_get(info, "filename")),
           json_string_value(json_object_get(info, "format")),
           (long long)json_integer_value(json_object_get(info, "virtual-size")),
           (long long)json_integer_value(json_object_get(info, "actual-size")));
    if (json_object_get(info, "cluster-size"))
        printf("cluster_size: %lld\n",
               (long long)json_integer_value(json_object_get(info, "cluster-size")));
    if (json_object_get(info, "backing-filename"))
        printf("backing file: %s\n",
               json_string_value(json_object_get(info, "backing-filename")));
    if (json_object_get(info, "backing-filename-format"))
        printf("backing file format: %s\n",
               json_string_value(json_object_get(info, "backing-filename-format")));
    if (!spec)
        return;
    puts("Format specific information:");
    json_object_foreach(spec, key, value) {
        char *text = json_dumps(value, JSON_ENCODE_ANY);
        printf("    %s: %s\n", key, text ? text : "?");
        free(text);
    }
}

static int verb_info(int argc, char **argv)
{
    static const struct option longs[] = {{"json", no_argument, NULL, 'j'},
                                          {"backing-chain", no_argument, NULL, 'B'},
                                          {"output", required_argument, NULL, 'O'},
                                          {NULL, 0, NULL, 0}};
    const char *format = NULL;
    bool json = false, chain = false;
    struct disk *d;
    int c;

    while ((c = cli_getopt_long(argc, argv, "f:", longs, NULL)) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'j' || (c == 'O' && strcmp(optarg, "json") == 0))
            json = true;
        else if (c == 'B')
            chain = true;
        else if (c != 'O')
            return usage_error();
    }
    if (argc - optind != 1)
        return usage_error();
    if (disk_open_as(argv[optind], DISK_READ_ONLY | (chain ? 0 : DISK_NO_BACKING), format, &d) < 0)
        return open_failed();
    json_t *all = json_array();
    for (struct disk *i = d; i; i = i->backing)
        json_array_append_new(all, describe(i));
    disk_close(d);
    if (json) {
        json_t *out = chain ? all : json_array_get(all, 0);
        char *text = json_dumps(out, JSON_INDENT(4));
        puts(text);
        free(text);
    } else {
        for (size_t i = 0; i < json_array_size(all); i++) {
            if (i)
                putchar('\n');
            print_info(json_array_get(all, i));
        }
    }
    json_decref(all);
    return CLI_OK;
}

static void bar(void *opaque, uint64_t done, uint64_t total)
{
    (void)opaque;
    fprintf(stderr, "\r    (%.2f/100%%)", total ? 100.0 * (double)done / (double)total : 100.0);
}

static int verb_convert(int argc, char **argv)
{
    struct disk_create_options o = {0};
    const char *in_format = NULL, *out_format = "raw";
    bool progress = false, compress = false;
    unsigned cache = 0;
    struct disk *src, *dst;
    int c, r;

    while ((c = getopt(argc, argv, "f:O:o:pct:")) != -1) {
        if (c == 'f')
            in_format = optarg;
        else if (c == 't' && strcmp(optarg, "unsafe") == 0)
            cache = DISK_UNSAFE;
        else if (c == 't' && strcmp(optarg, "none") == 0)
            cache = DISK_DIRECT;
        else if (c == 't' && strcmp(optarg, "writeback") == 0)
            cache = 0;
        else if (c == 'c')
            compress = true;
        else if (c == 'O')
            out_format = optarg;
        else if (c == 'p')
            progress = true;
        else if (c == 'o') {
            if (parse_create_options(optarg, &o) != 0)
                return CLI_USAGE;
        } else
            return usage_error();
    }
    if (argc - optind != 2)
        return usage_error();
    if (disk_open_as(argv[optind], DISK_READ_ONLY, in_format, &src) < 0)
        return open_failed();
    o.size = src->size;
    if (disk_create(out_format, argv[optind + 1], &o) < 0 ||
        disk_open_as(argv[optind + 1], cache, out_format, &dst) < 0) {
        disk_close(src);
        return open_failed();
    }
    r = disk_copy(src, dst, compress, progress ? bar : NULL, NULL);
    if (progress)
        fputc('\n', stderr);
    disk_close(src);
    disk_close(dst);
    if (r < 0) {
        unlink(argv[optind + 1]);
        return cli_fail(CLI_FAILED, "convert: %s", err_msg());
    }
    return CLI_OK;
}

static int verb_compare(int argc, char **argv)
{
    const char *fa = NULL, *fb = NULL;
    struct disk *a, *b;
    uint64_t at = 0;
    int c, r;

    while ((c = getopt(argc, argv, "f:F:")) != -1) {
        if (c == 'f')
            fa = optarg;
        else if (c == 'F')
            fb = optarg;
        else
            return usage_error();
    }
    if (argc - optind != 2)
        return usage_error();
    if (disk_open_as(argv[optind], DISK_READ_ONLY, fa, &a) < 0)
        return open_failed();
    if (disk_open_as(argv[optind + 1], DISK_READ_ONLY, fb, &b) < 0) {
        disk_close(a);
        return open_failed();
    }
    r = disk_compare(a, b, &at);
    disk_close(a);
    disk_close(b);
    if (r < 0)
        return cli_fail(CLI_USAGE, "compare: %s", err_msg()); /* qemu-img: 2 = error */
    if (r == 1) {
        printf("Content mismatch at offset %llu!\n", (unsigned long long)at);
        return 1;
    }
    puts("Images are identical.");
    return CLI_OK;
}

static int verb_map(int argc, char **argv)
{
    const char *format = NULL;
    bool json = false;
    struct disk *d;
    int c, r = 0;

    while ((c = cli_getopt_long(argc, argv, "f:", json_options, NULL)) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'j' || (c == 'O' && strcmp(optarg, "json") == 0))
            json = true;
        else if (c != 'O')
            return usage_error();
    }
    if (argc - optind != 1)
        return usage_error();
    if (disk_open_as(argv[optind], DISK_READ_ONLY, format, &d) < 0)
        return open_failed();
    json_t *all = json_array();
    for (uint64_t offset = 0; r == 0 && offset < d->size;) {
        struct disk_extent e;
        unsigned depth;
        r = disk_status_chain(d, offset, d->size - offset, &e, &depth);
        if (r < 0)
            break;
        json_t *x = json_pack("{sIsIsisbsbsb}", "start", (json_int_t)offset, "length",
                              (json_int_t)e.length, "depth", (int)depth, "present",
                              !e.absent, "zero",
                              e.kind == DISK_EXTENT_ZERO, "data", e.kind == DISK_EXTENT_DATA);
        if (e.kind == DISK_EXTENT_DATA && e.host_offset != UINT64_MAX)
            json_object_set_new(x, "offset", json_integer((json_int_t)e.host_offset));
        json_array_append_new(all, x);
        offset += e.length;
    }
    disk_close(d);
    if (r < 0) {
        json_decref(all);
        return cli_fail(CLI_FAILED, "map: %s", err_msg());
    }
    if (json) {
        char *text = json_dumps(all, JSON_INDENT(2));
        puts(text);
        free(text);
    } else {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
        for (size_t i = 0; i < json_array_size(all); i++) {
            json_t *x = json_array_get(all, i);
            if (!json_object_get(x, "offset"))
                continue;
            printf("%#-16llx%#-16llx%#-16llx%s\n",
                   (long long)json_integer_value(json_object_get(x, "start")),
                   (long long)json_integer_value(json_object_get(x, "length")),
                   (long long)json_integer_value(json_object_get(x, "offset")), argv[optind]);
        }
    }
    json_decref(all);
    return CLI_OK;
}

static int verb_check(int argc, char **argv)
{
    const char *format = NULL;
    unsigned repair = 0;
    bool json = false;
    struct disk_check_result res = {0};
    struct disk *d;
    int c;

    while ((c = cli_getopt_long(argc, argv, "f:r:", json_options, NULL)) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'r' && strcmp(optarg, "leaks") == 0)
            repair = DISK_REPAIR_LEAKS;
        else if (c == 'r' && strcmp(optarg, "all") == 0)
            repair = DISK_REPAIR_LEAKS | DISK_REPAIR_ERRORS;
        else if (c == 'j' || (c == 'O' && strcmp(optarg, "json") == 0))
            json = true;
        else if (c != 'O')
            return usage_error();
    }
    if (argc - optind != 1)
        return usage_error();
    if (disk_open_as(argv[optind], (repair ? 0 : DISK_READ_ONLY) | DISK_NO_BACKING | DISK_CHECKING,
                     format, &d) < 0)
        return open_failed();
    int r = disk_check(d, repair, &res);
    disk_close(d);
    if (r < 0)
        return cli_fail(CLI_FAILED, "check: %s", err_msg());
    if (json) {
        json_t *o = json_pack("{sssIsIsIsI}", "filename", argv[optind], "corruptions",
                              (json_int_t)res.corruptions, "leaks", (json_int_t)res.leaks,
                              "corruptions-fixed", (json_int_t)res.corruptions_fixed,
                              "leaks-fixed", (json_int_t)res.leaks_fixed);
        char *text = json_dumps(o, JSON_INDENT(4));
        puts(text);
        free(text);
        json_decref(o);
    } else {
        disk_check_print(&res, stdout);
    }
    return res.corruptions > res.corruptions_fixed ? 2 : res.leaks > res.leaks_fixed ? 3 : CLI_OK;
}

static void print_snapshots(json_t *list)
{
    size_t i;
    json_t *x;

    puts("Snapshot list:");
    printf("%-10s%-17s%12s%20s%14s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK");
    json_array_foreach(list, i, x) {
        time_t when = (time_t)json_integer_value(json_object_get(x, "date-sec"));
        long long clock = json_integer_value(json_object_get(x, "vm-clock-sec"));
        char date[32];
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", localtime(&when));
        printf("%-10s%-17s%12lld%20s  %02lld:%02lld:%02lld.%03lld\n",
               json_string_value(json_object_get(x, "id")),
               json_string_value(json_object_get(x, "name")),
               (long long)json_integer_value(json_object_get(x, "vm-state-size")), date,
               clock / 3600, clock / 60 % 60, clock % 60,
               (long long)json_integer_value(json_object_get(x, "vm-clock-nsec")) / 1000000);
    }
}

static int verb_snapshot(int argc, char **argv)
{
    const char *format = NULL, *name = NULL;
    enum disk_snapshot_op op = DISK_SNAPSHOT_CREATE;
    bool list = false, json = false;
    struct disk *d;
    int c, r;

    while ((c = cli_getopt_long(argc, argv, "f:c:a:d:l", json_options, NULL)) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'c' || c == 'a' || c == 'd') {
            op = c == 'c' ? DISK_SNAPSHOT_CREATE : c == 'a' ? DISK_SNAPSHOT_APPLY
                                                            : DISK_SNAPSHOT_DELETE;
            name = optarg;
        } else if (c == 'l')
            list = true;
        else if (c == 'j' || (c == 'O' && strcmp(optarg, "json") == 0))
            json = true;
        else if (c != 'O')
            return usage_error();
    }
    if (argc - optind != 1 || list == !!name)
        return usage_error();
    if (disk_open_as(argv[optind], list ? DISK_READ_ONLY | DISK_NO_BACKING : 0, format, &d) < 0)
        return open_failed();
    if (list) {
        json_t *all = json_array();
        r = disk_snapshot_list(d, all);
        if (r == 0 && json) {
            char *text = json_dumps(all, JSON_INDENT(4));
            puts(text);
            free(text);
        } else if (r == 0 && json_array_size(all)) {
            print_snapshots(all);
        }
        json_decref(all);
    } else {
        r = disk_snapshot(d, op, name);
    }
    disk_close(d);
    return r < 0 ? cli_fail(CLI_FAILED, "snapshot: %s", err_msg()) : CLI_OK;
}

static int verb_resize(int argc, char **argv)
{
    static const struct option longs[] = {{"shrink", no_argument, NULL, 's'}, {NULL, 0, NULL, 0}};
    const char *format = NULL, *text;
    bool shrink = false;
    uint64_t size;
    struct disk *d;
    int c, r;

    while ((c = cli_getopt_long(argc, argv, "f:", longs, NULL)) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 's')
            shrink = true;
        else
            return usage_error();
    }
    if (argc - optind != 2)
        return usage_error();
    text = argv[optind + 1];
    if (size_parse(text + (*text == '+' || *text == '-'), 1, &size) < 0)
        return cli_fail(CLI_USAGE, "%s", err_msg());
    if (disk_open_as(argv[optind], 0, format, &d) < 0)
        return open_failed();
    if (*text == '+')
        size = d->size + size;
    else if (*text == '-')
        size = size > d->size ? 0 : d->size - size;
    if (size < d->size && !shrink) {
        disk_close(d);
        return cli_fail(CLI_FAILED, "shrinking drops data past the new end: add --shrink");
    }
    r = disk_resize(d, size);
    disk_close(d);
    if (r < 0)
        return cli_fail(CLI_FAILED, "resize: %s", err_msg());
    puts("Image resized.");
    return CLI_OK;
}

static int verb_commit(int argc, char **argv)
{
    const char *format = NULL;
    bool keep = false, progress = false;
    int c;

    while ((c = getopt(argc, argv, "f:dp")) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'd')
            keep = true;
        else if (c == 'p')
            progress = true;
        else
            return usage_error();
    }
    if (argc - optind != 1)
        return usage_error();
    int r = disk_commit(argv[optind], format, keep, progress ? bar : NULL, NULL);
    if (progress)
        fputc('\n', stderr);
    if (r < 0)
        return cli_fail(CLI_FAILED, "commit: %s", err_msg());
    puts("Image committed.");
    return CLI_OK;
}

static int verb_rebase(int argc, char **argv)
{
    const char *format = NULL, *backing = NULL, *backing_format = NULL;
    bool unsafe = false, progress = false;
    int c;

    while ((c = getopt(argc, argv, "f:b:F:up")) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'b')
            backing = optarg;
        else if (c == 'F')
            backing_format = optarg;
        else if (c == 'u')
            unsafe = true;
        else if (c == 'p')
            progress = true;
        else
            return usage_error();
    }
    if (argc - optind != 1 || !backing)
        return usage_error();
    int r = disk_rebase(argv[optind], format, backing, backing_format, unsafe,
                        progress ? bar : NULL, NULL);
    if (progress)
        fputc('\n', stderr);
    return r < 0 ? cli_fail(CLI_FAILED, "rebase: %s", err_msg()) : CLI_OK;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* qemu-img bench's flags and output, one request at a time: offsets go
 * from -o by -S (default: the buffer size), wrapping at the end of the
 * disk, so the same flags give both tools the same pattern. */
static int verb_bench(int argc, char **argv)
{
    const char *format = NULL;
    uint64_t count = 75000, size = 4096, step = 0, offset = 0, flush_every = 0;
    bool write = false, direct = false;
    struct disk *d;
    int c, r = 0;

    static const struct option longs[] = {{"flush-interval", required_argument, NULL, 'F'},
                                          {NULL, 0, NULL, 0}};
    while ((c = cli_getopt_long(argc, argv, "c:d:f:o:s:S:t:wn", longs, NULL)) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'w')
            write = true;
        else if (c == 't')
            direct = strcmp(optarg, "none") == 0;
        else if (c == 'd' || c == 'n')
            continue; /* one request at a time */
        else if ((c == 'c' || c == 'o' || c == 's' || c == 'S' || c == 'F') &&
                 size_parse(optarg, 1, c == 'c' ? &count : c == 'o' ? &offset : c == 's' ? &size
                                                          : c == 'S' ? &step : &flush_every) == 0)
            continue;
        else
            return usage_error();
    }
    if (argc - optind != 1 || size == 0 || size > (64u << 20))
        return usage_error();
    if (disk_open_as(argv[optind], (write ? 0 : DISK_READ_ONLY) | (direct ? DISK_DIRECT : 0),
                     format, &d) < 0)
        return open_failed();
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, size) != 0 || d->size < size) {
        disk_close(d);
        free(buf);
        return cli_fail(CLI_FAILED, "bench: buffer larger than the disk");
    }
    memset(buf, 0xa5, size);
    printf("Sending %llu %s requests, %llu bytes each, from offset %llu, step size %llu\n",
           (unsigned long long)count, write ? "write" : "read", (unsigned long long)size,
           (unsigned long long)offset, (unsigned long long)(step ? step : size));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t i = 0; r == 0 && i < count; i++) {
        struct iovec iov = {buf, size};
        if (offset + size > d->size)
            offset = 0;
        r = write ? disk_write(d, &iov, 1, offset) : disk_read(d, &iov, 1, offset);
        if (r == 0 && write && flush_every && (i + 1) % flush_every == 0)
            r = disk_flush(d);
        offset = (offset + (step ? step : size)) % d->size;
    }
    if (r == 0 && write)
        r = disk_flush(d);
    double took = seconds_since(&t0);
    disk_close(d);
    free(buf);
    if (r < 0)
        return cli_fail(CLI_FAILED, "bench: %s", strerror(-r));
    printf("Run completed in %.3f seconds.\n", took);
    return CLI_OK;
}

static const struct disk_verb verbs[] = {
    {"create", "create a new image", "create -f FMT [-b BACKING [-F BFMT]] [-o OPTS] FILE [SIZE]",
     verb_create,
     "  -f FMT     raw (the default), qcow2, vmdk, vdi or vpc\n"
     "  -b BACKING an overlay on BACKING (named relative to FILE); SIZE defaults to its size\n"
     "  -F BFMT    BACKING's format\n" CREATE_OPTIONS},
    {"info", "show an image's format, size, backing file", "info [--json] [--backing-chain] [-f FMT] FILE",
     verb_info,
     FORMAT_OPTION "  --json     as JSON (also --output=json)\n"
     "  --backing-chain  every image of the chain, FILE first\n"},
    {"check", "check an image's metadata (and repair it with -r)", "check [-r leaks|all] [-f FMT] [--json] FILE",
     verb_check,
     "  -r leaks   free leaked clusters; -r all: repair what can be repaired\n" FORMAT_OPTION
     "  --json     the counts as JSON\n"
     "Exit status as qemu-img's: 0 clean, 2 corruptions left, 3 only leaks left.\n"},
    {"convert", "copy an image into a new one of any format",
     "convert [-f FMT] -O FMT [-o OPTS] [-c] [-p] [-t writeback|unsafe|none] SRC DST", verb_convert,
     "  -f FMT     SRC's format, not probed\n"
     "  -O FMT     DST's format (raw by default, qcow2, vmdk, vdi, vpc)\n" CREATE_OPTIONS
     "  -c         compress DST's clusters (qcow2: deflate, or zstd with compression_type)\n"
     "  -p         show progress\n"
     "  -t MODE    writeback (DST synced at the end), unsafe (no sync), none (O_DIRECT)\n"
     "Zero runs of 64 KiB or more are not written (DST stays sparse); DST is removed if the\n"
     "copy fails.\n"},
    {"compare", "compare the content of two images", "compare [-f FMT] [-F FMT] A B", verb_compare,
     "  -f FMT     A's format    -F FMT  B's format\n"
     "Exit status as qemu-img's: 0 identical, 1 different (the first offset printed), 2 error.\n"},
    {"snapshot", "list, create, apply or delete internal snapshots",
     "snapshot [-l | -c NAME | -a NAME | -d NAME] [-f FMT] [--json] FILE", verb_snapshot,
     "  -l         list the snapshots (--json: as JSON)\n"
     "  -c NAME    take one of the image as it is now\n"
     "  -a NAME    apply one: the image's content becomes the snapshot's\n"
     "  -d NAME    delete one (by name or id)\n" FORMAT_OPTION},
    {"resize", "change an image's virtual size", "resize [-f FMT] [--shrink] FILE [+|-]SIZE",
     verb_resize,
     FORMAT_OPTION "  --shrink   allow a smaller size (what lies past it is lost)\n"
     "SIZE is absolute, or relative with + or -; K, M, G and T suffixes.\n"},
    {"commit", "write an overlay's data into its backing file", "commit [-f FMT] [-d] [-p] FILE",
     verb_commit,
     FORMAT_OPTION "  -d         keep FILE's data (else FILE is emptied afterwards)\n"
     "  -p         show progress\n"},
    {"rebase", "change an overlay's backing file, keeping its content",
     "rebase [-f FMT] [-u] [-p] -b BACKING [-F BFMT] FILE", verb_rebase,
     FORMAT_OPTION "  -b BACKING the new backing file (\"\" for none)\n"
     "  -F BFMT    its format\n"
     "  -u         unsafe: only rewrite the name, copy nothing\n"
     "  -p         show progress\n"},
    {"bench", "time reads or writes through the library, as qemu-img bench",
     "bench [-c COUNT] [-f FMT] [-o OFFSET] [-s SIZE] [-S STEP] [-t none|writeback] [-w] "
     "[--flush-interval N] FILE",
     verb_bench,
     "  -c COUNT   requests (default 75000)     -s SIZE  bytes each (default 4096)\n"
     "  -o OFFSET  where the first one goes      -S STEP  between requests (default SIZE)\n"
     "  -w         write instead of read         -t none  O_DIRECT\n"
     "  --flush-interval N  a flush every N writes\n" FORMAT_OPTION},
    {"map", "show where an image's data is", "map [--json] [-f FMT] FILE", verb_map,
     FORMAT_OPTION "  --json     as JSON (also --output=json), as qemu-img map's\n"},
};

int cli_disk(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *out = argc < 2 ? stderr : stdout;
        fputs("usage: smolvm disk <verb> [options]  (the flags of qemu-img)\n\nverbs:\n", out);
        for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
            fprintf(out, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strcmp(argv[1], verbs[i].name) != 0)
            continue;
        current = &verbs[i];
        for (int a = 2; a < argc; a++)
            if (strcmp(argv[a], "--help") == 0) {
                printf("usage: smolvm disk %s\n\n%s.\n\n%s", verbs[i].usage, verbs[i].summary,
                       verbs[i].options);
                return CLI_OK;
            }
        optind = 1;
        return verbs[i].main(argc - 1, argv + 1);
    }
    return cli_fail(CLI_USAGE, "unknown disk verb '%s' (try 'smolvm disk --help')", argv[1]);
}
