/* The disk verbs that make or change images: create, convert, resize,
 * commit, rebase, amend. Under --json each reports the image it made or
 * changed, as info --json does. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/disk/disk_cli.h"
#include "disk/amend.h"
#include "util/err.h"
#include "util/size.h"

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

int disk_verb_create(int argc, char **argv)
{
    struct disk_create_options o = {0};
    const char *format = "raw";
    int c;

    while ((c = disk_option(argc, argv, &format)) != -1) {
        if (c == 'b')
            o.backing = optarg;
        else if (c == 'F')
            o.backing_format = optarg;
        else if (c != 'o' || disk_parse_create_options(optarg, &o) != 0)
            return CLI_USAGE;
    }
    if (disk_operands(argc, o.backing ? 1 : 2, 2) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    if (argc - optind == 2 && disk_parse_size(argv[optind + 1], &o.size) != 0)
        return CLI_USAGE;
    if (!disk_format_find(format))
        return disk_usage("unknown format '%s' (raw, qcow2, vmdk, vdi or vpc)", format);
    if (argc - optind == 1 && backing_size(path, o.backing, o.backing_format, &o.size) < 0)
        return disk_failed(o.backing);
    if (disk_create(format, path, &o) < 0)
        return disk_failed(path);
    return disk_report_image(path, format);
}

int disk_verb_convert(int argc, char **argv)
{
    struct disk_create_options o = {0};
    const char *in_format = NULL, *out_format = "raw";
    bool progress = false, compress = false;
    unsigned cache = 0;
    struct disk *src, *dst;
    int c, r;

    while ((c = disk_option(argc, argv, &in_format)) != -1) {
        if (c == 't' && strcmp(optarg, "unsafe") == 0)
            cache = DISK_UNSAFE;
        else if (c == 't' && strcmp(optarg, "none") == 0)
            cache = DISK_DIRECT;
        else if (c == 't' && strcmp(optarg, "writeback") == 0)
            cache = 0;
        else if (c == 't')
            return disk_usage("-t takes writeback, unsafe or none, not '%s'", optarg);
        else if (c == 'c')
            compress = true;
        else if (c == 'O')
            out_format = optarg;
        else if (c == 'p')
            progress = true;
        else if (c != 'o' || disk_parse_create_options(optarg, &o) != 0)
            return CLI_USAGE;
    }
    if (disk_operands(argc, 2, 2) < 0)
        return CLI_USAGE;
    const char *from = argv[optind], *to = argv[optind + 1];
    if (!disk_format_find(out_format))
        return disk_usage("unknown format '%s' (raw, qcow2, vmdk, vdi or vpc)", out_format);
    if (disk_open_as(from, DISK_READ_ONLY, in_format, &src) < 0)
        return disk_failed(from);
    o.size = src->size;
    if (disk_create(out_format, to, &o) < 0) {
        disk_close(src);
        return disk_failed(to);
    }
    if (disk_open_as(to, cache, out_format, &dst) < 0) {
        disk_close(src);
        unlink(to);
        return disk_failed(to);
    }
    r = disk_copy(src, dst, compress, progress ? disk_progress : NULL, NULL);
    if (progress)
        fputc('\n', stderr);
    disk_close(src);
    disk_close(dst);
    if (r < 0) {
        disk_failed_pair(from, to);
        unlink(to);
        return CLI_FAILED;
    }
    return disk_report_image(to, out_format);
}

/* "+1G", "-512M" or "4G" against the current size. */
static int new_size(const char *path, const char *text, uint64_t now, uint64_t *size)
{
    uint64_t n;
    if (size_parse(text + (*text == '+' || *text == '-'), 1, &n) < 0)
        return disk_usage("invalid size '%s' (bytes, K, M, G or T; + or - for relative)", text);
    if (*text == '-' && n > now)
        return disk_fail(CLI_FAILED, "%s: cannot shrink by %s: the image is %llu bytes", path,
                         text + 1, (unsigned long long)now);
    if (*text == '+' && __builtin_add_overflow(now, n, size))
        return disk_usage("size '%s' too large", text);
    if (*text != '+')
        *size = *text == '-' ? now - n : n;
    return 0;
}

int disk_verb_resize(int argc, char **argv)
{
    const char *format = NULL, *text = NULL;
    bool shrink = false;
    uint64_t size = 0, check;
    struct disk *d;
    int c, r;

    /* A negative size is taken out before getopt sees "-512M" as options
     * (qemu-img takes out the last operand). */
    for (int i = 1; i < argc && !text; i++)
        if (argv[i][0] == '-' && argv[i][1] >= '0' && argv[i][1] <= '9') {
            text = argv[i];
            memmove(argv + i, argv + i + 1, (size_t)(argc - i) * sizeof(*argv));
            argc--;
        }
    while ((c = disk_option(argc, argv, &format)) != -1) {
        if (c == DISK_OPT_SHRINK)
            shrink = true;
        else
            return CLI_USAGE;
    }
    if (disk_operands(argc, text ? 1 : 2, text ? 1 : 2) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    if (!text)
        text = argv[optind + 1];
    if (size_parse(text + (*text == '+' || *text == '-'), 1, &check) < 0)
        return disk_usage("invalid size '%s' (bytes, K, M, G or T; + or - for relative)", text);
    if (*text == '-' && !shrink)
        return disk_usage("a negative size shrinks the image: add --shrink (what lies past the "
                          "new end is lost)");
    if (disk_open_as(path, 0, format, &d) < 0)
        return disk_failed(path);
    r = new_size(path, text, d->size, &size);
    if (r == 0 && size < d->size && !shrink)
        r = disk_fail(CLI_FAILED, "%s: shrinking drops data past the new end: add --shrink",
                      path);
    if (r != 0) {
        disk_close(d);
        return r;
    }
    r = disk_resize(d, size);
    disk_close(d);
    if (r < 0)
        return disk_failed(path);
    if (!disk_json)
        puts("Image resized.");
    return disk_report_image(path, format);
}

int disk_verb_commit(int argc, char **argv)
{
    const char *format = NULL;
    bool keep = false, progress = false;
    struct disk *d;
    int c;

    while ((c = disk_option(argc, argv, &format)) != -1) {
        if (c == 'd')
            keep = true;
        else if (c == 'p')
            progress = true;
        else
            return CLI_USAGE;
    }
    if (disk_operands(argc, 1, 1) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    int r = disk_commit(path, format, keep, progress ? disk_progress : NULL, NULL);
    if (progress)
        fputc('\n', stderr);
    if (r < 0)
        return disk_failed(path);
    if (!disk_json) {
        puts("Image committed.");
        return CLI_OK;
    }
    if (disk_open_as(path, DISK_READ_ONLY | DISK_NO_BACKING, format, &d) < 0)
        return disk_failed(path);
    char *backing = d->backing_path ? strdup(d->backing_path) : NULL;
    char *backing_format = d->backing_format ? strdup(d->backing_format) : NULL;
    disk_close(d);
    r = backing ? disk_report_image(backing, backing_format) : CLI_OK;
    free(backing);
    free(backing_format);
    return r;
}

int disk_verb_rebase(int argc, char **argv)
{
    const char *format = NULL, *backing = NULL, *backing_format = NULL;
    bool unsafe = false, progress = false;
    int c;

    while ((c = disk_option(argc, argv, &format)) != -1) {
        if (c == 'b')
            backing = optarg;
        else if (c == 'F')
            backing_format = optarg;
        else if (c == 'u')
            unsafe = true;
        else if (c == 'p')
            progress = true;
        else
            return CLI_USAGE;
    }
    if (!backing)
        return disk_usage("-b BACKING is required (\"\" for none); usage: smolvm disk %s",
                          disk_verb->usage);
    if (disk_operands(argc, 1, 1) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    int r = disk_rebase(path, format, backing, backing_format, unsafe,
                        progress ? disk_progress : NULL, NULL);
    if (progress)
        fputc('\n', stderr);
    return r < 0 ? disk_failed(path) : disk_report_image(path, format);
}

/* -o compat=1.1,lazy_refcounts=on: what amend can change, and a clear
 * refusal, by name, for what it cannot. */
static int parse_amend_options(char *text, struct disk_amend_options *o)
{
    char *save = NULL;
    bool on;
    for (char *opt = strtok_r(text, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        char *value = strchr(opt, '=');
        if (!value)
            return disk_usage("-o %s: needs a value (%s=...)", opt, opt);
        *value++ = 0;
        if (strcmp(opt, "compat") == 0 && (strcmp(value, "0.10") == 0 || strcmp(value, "v2") == 0))
            o->compat_version = 2;
        else if (strcmp(opt, "compat") == 0 && (strcmp(value, "1.1") == 0 ||
                                                 strcmp(value, "v3") == 0))
            o->compat_version = 3;
        else if (strcmp(opt, "lazy_refcounts") == 0 && disk_parse_on_off(value, &on))
            o->lazy_refcounts = on;
        else if (strcmp(opt, "compat") == 0 || strcmp(opt, "lazy_refcounts") == 0)
            return disk_usage("-o %s: invalid value '%s'", opt, value);
        else
            return disk_usage("-o %s: amend cannot change it (it changes compat and "
                              "lazy_refcounts)", opt);
    }
    return 0;
}

int disk_verb_amend(int argc, char **argv)
{
    struct disk_amend_options o = {.lazy_refcounts = -1};
    const char *format = NULL;
    bool options = false;
    struct disk *d;
    int c, r;

    while ((c = disk_option(argc, argv, &format)) != -1) {
        if (c != 'o' || parse_amend_options(optarg, &o) != 0)
            return CLI_USAGE;
        else
            options = true;
    }
    if (!options)
        return disk_usage("-o OPTS is required; usage: smolvm disk %s", disk_verb->usage);
    if (disk_operands(argc, 1, 1) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    if (disk_open_as(path, DISK_NO_BACKING, format, &d) < 0)
        return disk_failed(path);
    r = disk_amend(d, &o);
    disk_close(d);
    return r < 0 ? disk_failed(path) : disk_report_image(path, format);
}
