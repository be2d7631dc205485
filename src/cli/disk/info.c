/* The disk verbs that look at images: info, map, check, compare, and
 * snapshot (which lists as well as changes). Their JSON is qemu-img's. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/disk/disk_cli.h"
#include "disk/check.h"
#include "util/err.h"

/* How qemu names a backing file recorded in image: relative names are
 * relative to image's folder, and stay bare when image has none. */
static char *backing_shown(const char *image, const char *name)
{
    const char *slash = strrchr(image, '/');
    char *out = NULL;
    if (name[0] == '/' || !slash)
        return strdup(name);
    if (asprintf(&out, "%.*s%s", (int)(slash - image + 1), image, name) < 0)
        return NULL;
    return out;
}

json_t *disk_describe(struct disk *d, const char *shown_name)
{
    json_t *info = json_object();
    struct stat st;

    json_object_set_new(info, "virtual-size", json_integer((json_int_t)d->size));
    json_object_set_new(info, "filename", json_string(shown_name));
    json_object_set_new(info, "format", json_string(d->format->name));
    if (fstat(d->fd, &st) == 0)
        json_object_set_new(info, "actual-size", json_integer((json_int_t)st.st_blocks * 512));
    json_object_set_new(info, "dirty-flag", json_false());
    if (d->format->describe)
        d->format->describe(d, info);
    const char *backing = json_string_value(json_object_get(info, "backing-filename"));
    if (backing) {
        char *full = backing_shown(shown_name, backing);
        json_object_set_new(info, "full-backing-filename", json_string(full ? full : backing));
        free(full);
    }
    return info;
}

/* Each image of d's chain described, d (shown as path) first; a backing
 * file goes by the name qemu-img gives it. */
static json_t *describe_chain(struct disk *d, const char *path)
{
    json_t *all = json_array();
    char *name = strdup(path);
    for (struct disk *i = d; i && name; i = i->backing) {
        json_t *info = disk_describe(i, name);
        const char *next = json_string_value(json_object_get(info, "full-backing-filename"));
        free(name);
        name = next ? strdup(next) : NULL;
        json_array_append_new(all, info);
    }
    free(name);
    return all;
}

int disk_report_image(const char *path, const char *format)
{
    struct disk *d;
    if (!disk_json)
        return CLI_OK;
    if (disk_open_as(path, DISK_READ_ONLY | DISK_NO_BACKING, format, &d) < 0)
        return disk_failed(path);
    json_t *info = disk_describe(d, path);
    disk_close(d);
    return disk_print_json(info);
}

static void print_info(json_t *info)
{
    json_t *spec = json_object_get(json_object_get(info, "format-specific"), "data");
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
    if (json_is_true(json_object_get(info, "dirty-flag")))
        puts("dirty flag: true");
    if (!spec)
        return;
    puts("Format specific information:");
    json_object_foreach(spec, key, value) {
        char *text = json_dumps(value, JSON_ENCODE_ANY);
        printf("    %s: %s\n", key, text ? text : "?");
        free(text);
    }
}

int disk_verb_info(int argc, char **argv)
{
    const char *format = NULL;
    bool chain = false;
    struct disk *d;
    int c;

    while ((c = disk_option(argc, argv, &format)) != -1) {
        if (c == DISK_OPT_BACKING_CHAIN)
            chain = true;
        else
            return CLI_USAGE;
    }
    if (disk_operands(argc, 1, 1) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    if (disk_open_as(path, DISK_READ_ONLY | (chain ? 0 : DISK_NO_BACKING), format, &d) < 0)
        return disk_failed(path);
    json_t *all = describe_chain(d, path);
    disk_close(d);
    if (disk_json && chain)
        return disk_print_json(all);
    if (disk_json) {
        disk_print_json(json_incref(json_array_get(all, 0)));
        json_decref(all);
        return CLI_OK;
    }
    for (size_t i = 0; i < json_array_size(all); i++) {
        if (i)
            putchar('\n');
        print_info(json_array_get(all, i));
    }
    json_decref(all);
    return CLI_OK;
}

/* One extent of qemu-img map's list, merged into the previous one when it
 * goes on from it with the same flags (as qemu-img map does). */
static void add_extent(json_t *all, uint64_t start, const struct disk_extent *e, unsigned depth,
                       uint64_t offset)
{
    json_t *last = json_array_get(all, json_array_size(all) - 1);
    bool zero = e->kind == DISK_EXTENT_ZERO, data = e->kind == DISK_EXTENT_DATA;

    if (last && json_integer_value(json_object_get(last, "depth")) == depth &&
        json_is_true(json_object_get(last, "present")) == !e->absent &&
        json_is_true(json_object_get(last, "zero")) == zero &&
        json_is_true(json_object_get(last, "data")) == data &&
        !json_object_get(last, "offset") == (offset == UINT64_MAX)) {
        json_int_t length = json_integer_value(json_object_get(last, "length"));
        json_t *at = json_object_get(last, "offset");
        if (!at || (uint64_t)(json_integer_value(at) + length) == offset) {
            json_object_set_new(last, "length", json_integer(length + (json_int_t)e->length));
            return;
        }
    }
    json_t *x = json_pack("{sIsIsisbsbsb}", "start", (json_int_t)start, "length",
                          (json_int_t)e->length, "depth", (int)depth, "present", !e->absent,
                          "zero", zero, "data", data);
    if (offset != UINT64_MAX)
        json_object_set_new(x, "offset", json_integer((json_int_t)offset));
    json_array_append_new(all, x);
}

/* Where an extent lies in its file: a raw file maps one to one, holes too. */
static uint64_t extent_offset(struct disk *d, unsigned depth, uint64_t start,
                              const struct disk_extent *e)
{
    for (unsigned i = 0; i < depth && d->backing; i++)
        d = d->backing;
    if (d->format == &disk_format_raw && !e->absent)
        return start;
    return e->kind == DISK_EXTENT_DATA ? e->host_offset : UINT64_MAX;
}

int disk_verb_map(int argc, char **argv)
{
    const char *format = NULL;
    struct disk *d;
    int r = 0;

    if (disk_option(argc, argv, &format) != -1)
        return CLI_USAGE;
    if (disk_operands(argc, 1, 1) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    if (disk_open_as(path, DISK_READ_ONLY, format, &d) < 0)
        return disk_failed(path);
    json_t *all = json_array(), *chain = describe_chain(d, path);
    for (uint64_t offset = 0; r == 0 && offset < d->size;) {
        struct disk_extent e;
        unsigned depth;
        r = disk_status_chain(d, offset, d->size - offset, &e, &depth);
        if (r < 0)
            break;
        add_extent(all, offset, &e, depth, extent_offset(d, depth, offset, &e));
        offset += e.length;
    }
    disk_close(d);
    if (r < 0) {
        json_decref(chain);
        json_decref(all);
        return disk_failed(path);
    }
    if (disk_json) {
        json_decref(chain);
        return disk_print_json(all);
    }
    printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *x = json_array_get(all, i);
        if (!json_object_get(x, "offset") || !json_is_true(json_object_get(x, "data")))
            continue;
        json_t *layer = json_array_get(chain, (size_t)json_integer_value(json_object_get(x, "depth")));
        printf("%#-16llx%#-16llx%#-16llx%s\n",
               (long long)json_integer_value(json_object_get(x, "start")),
               (long long)json_integer_value(json_object_get(x, "length")),
               (long long)json_integer_value(json_object_get(x, "offset")),
               json_string_value(json_object_get(layer, "filename")));
    }
    json_decref(chain);
    json_decref(all);
    return CLI_OK;
}

/* qemu-img check --output=json: counts that are 0 are left out, as there. */
static json_t *check_json(const char *path, const char *format,
                          const struct disk_check_result *res)
{
    json_t *o = json_pack("{sssssi}", "filename", path, "format", format, "check-errors", 0);
    const struct {
        const char *key;
        uint64_t value;
    } counts[] = {{"corruptions", res->corruptions},
                  {"leaks", res->leaks},
                  {"corruptions-fixed", res->corruptions_fixed},
                  {"leaks-fixed", res->leaks_fixed},
                  {"allocated-clusters", res->allocated_clusters},
                  {"total-clusters", res->total_clusters},
                  {"image-end-offset", res->image_end_offset},
                  {"compressed-clusters", res->compressed_clusters},
                  {"fragmented-clusters", res->fragmented_clusters}};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        if (counts[i].value)
            json_object_set_new(o, counts[i].key, json_integer((json_int_t)counts[i].value));
    return o;
}

int disk_verb_check(int argc, char **argv)
{
    const char *format = NULL;
    unsigned repair = 0;
    struct disk_check_result res = {0};
    struct disk *d;
    int c;

    while ((c = disk_option(argc, argv, &format)) != -1) {
        if (c == 'r' && strcmp(optarg, "leaks") == 0)
            repair = DISK_REPAIR_LEAKS;
        else if (c == 'r' && strcmp(optarg, "all") == 0)
            repair = DISK_REPAIR_LEAKS | DISK_REPAIR_ERRORS;
        else if (c == 'r')
            return disk_usage("-r takes leaks or all, not '%s'", optarg);
        else
            return CLI_USAGE;
    }
    if (disk_operands(argc, 1, 1) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    if (disk_open_as(path, (repair ? 0 : DISK_READ_ONLY) | DISK_NO_BACKING | DISK_CHECKING,
                     format, &d) < 0)
        return disk_failed(path);
    if (!d->format->check) { /* as qemu-img: raw and vpc have nothing to check */
        const char *name = d->format->name;
        disk_close(d);
        return disk_fail(DISK_CHECK_UNSUPPORTED, "%s: this image format (%s) does not support checks",
                         path, name);
    }
    const char *format_name = d->format->name;
    int r = disk_check(d, repair, &res);
    if (r < 0) {
        disk_close(d);
        return disk_failed(path);
    }
    if (disk_json)
        disk_print_json(check_json(path, format_name, &res));
    else
        disk_check_print(&res, stdout);
    disk_close(d);
    return res.corruptions > res.corruptions_fixed ? 2 : res.leaks > res.leaks_fixed ? 3 : CLI_OK;
}

/* qemu-img compare: 0 identical, 1 different, 2 anything else (a usage
 * error too, which is 2 everywhere). */
#define COMPARE_ERROR 2

int disk_verb_compare(int argc, char **argv)
{
    const char *fa = NULL, *fb = NULL;
    struct disk *a, *b;
    uint64_t at = 0;
    int c, r;

    disk_failure_code = COMPARE_ERROR;
    while ((c = disk_option(argc, argv, &fa)) != -1) {
        if (c == 'F')
            fb = optarg;
        else
            return COMPARE_ERROR;
    }
    if (disk_operands(argc, 2, 2) < 0)
        return COMPARE_ERROR;
    if (disk_open_as(argv[optind], DISK_READ_ONLY, fa, &a) < 0) {
        disk_failed(argv[optind]);
        return COMPARE_ERROR;
    }
    if (disk_open_as(argv[optind + 1], DISK_READ_ONLY, fb, &b) < 0) {
        disk_failed(argv[optind + 1]);
        disk_close(a);
        return COMPARE_ERROR;
    }
    r = disk_compare(a, b, &at);
    disk_close(a);
    disk_close(b);
    if (r < 0) {
        disk_failed_pair(argv[optind], argv[optind + 1]);
        return COMPARE_ERROR;
    }
    if (disk_json) {
        json_t *j = json_pack("{sb}", "identical", r == 0);
        if (r == 1)
            json_object_set_new(j, "mismatch-offset", json_integer((json_int_t)at));
        disk_print_json(j);
    } else if (r == 1) {
        printf("Content mismatch at offset %llu!\n", (unsigned long long)at);
    } else {
        puts("Images are identical.");
    }
    return r == 1 ? 1 : CLI_OK;
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

int disk_verb_snapshot(int argc, char **argv)
{
    const char *format = NULL, *name = NULL;
    enum disk_snapshot_op op = DISK_SNAPSHOT_CREATE;
    bool list = false;
    struct disk *d;
    int c, r;

    while ((c = disk_option(argc, argv, &format)) != -1) {
        if (c == 'c' || c == 'a' || c == 'd') {
            op = c == 'c' ? DISK_SNAPSHOT_CREATE : c == 'a' ? DISK_SNAPSHOT_APPLY
                                                            : DISK_SNAPSHOT_DELETE;
            name = optarg;
        } else if (c == 'l')
            list = true;
        else
            return CLI_USAGE;
    }
    if (list == !!name)
        return disk_usage("one of -l, -c NAME, -a NAME or -d NAME; usage: smolvm disk %s",
                          disk_verb->usage);
    if (disk_operands(argc, 1, 1) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    if (disk_open_as(path, list ? DISK_READ_ONLY | DISK_NO_BACKING : 0, format, &d) < 0)
        return disk_failed(path);
    if (!list) {
        r = disk_snapshot(d, op, name);
        disk_close(d);
        return r < 0 ? disk_failed(path) : disk_report_image(path, format);
    }
    json_t *all = json_array();
    r = disk_snapshot_list(d, all);
    disk_close(d);
    if (r < 0) {
        json_decref(all);
        return disk_failed(path);
    }
    if (disk_json)
        return disk_print_json(all);
    if (json_array_size(all))
        print_snapshots(all);
    json_decref(all);
    return CLI_OK;
}
