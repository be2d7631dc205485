/* smolvm disk measure: qemu-img measure's numbers and JSON. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/disk/disk_cli.h"
#include "disk/measure.h"
#include "util/err.h"

/* qemu-img adds "bitmaps" (their bytes: none here) when both the source
 * and the new image could hold persistent bitmaps: qcow2 compat=1.1. */
static bool holds_bitmaps(struct disk *src)
{
    json_t *info = disk_describe(src, src->path);
    const char *compat = json_string_value(
        json_object_get(json_object_get(json_object_get(info, "format-specific"), "data"),
                        "compat"));
    bool yes = compat && strcmp(compat, "1.1") == 0;
    json_decref(info);
    return yes;
}

int disk_verb_measure(int argc, char **argv)
{
    struct disk_create_options o = {0};
    const char *format = NULL, *out_format = "qcow2", *size = NULL;
    struct disk_measure m;
    struct disk *src = NULL;
    int c;

    while ((c = disk_option(argc, argv, &format)) != -1) {
        if (c == 'O')
            out_format = optarg;
        else if (c == DISK_OPT_SIZE)
            size = optarg;
        else if (c != 'o' || disk_parse_create_options(optarg, &o) != 0)
            return CLI_USAGE;
    }
    if (disk_operands(argc, size ? 0 : 1, size ? 0 : 1) < 0)
        return CLI_USAGE;
    if (size && disk_parse_size(size, &o.size) != 0)
        return CLI_USAGE;
    if (strcmp(out_format, "qcow2") != 0 && strcmp(out_format, "raw") != 0)
        return disk_usage("-O %s: measure knows qcow2 and raw", out_format);
    const char *path = size ? NULL : argv[optind];
    if (path && disk_open_as(path, DISK_READ_ONLY, format, &src) < 0)
        return disk_failed(path);
    int r = disk_measure(out_format, &o, src, &m);
    bool bitmaps = src && strcmp(out_format, "qcow2") == 0 && holds_bitmaps(src);
    disk_close(src);
    if (r < 0)
        return path ? disk_failed(path) : disk_usage("%s", err_msg());
    if (!disk_json) {
        printf("required size: %llu\nfully allocated size: %llu\n",
               (unsigned long long)m.required, (unsigned long long)m.fully_allocated);
        if (bitmaps)
            puts("bitmaps size: 0");
        return CLI_OK;
    }
    json_t *j = json_pack("{sIsI}", "required", (json_int_t)m.required, "fully-allocated",
                          (json_int_t)m.fully_allocated);
    if (bitmaps)
        json_object_set_new(j, "bitmaps", json_integer(0));
    return disk_print_json(j);
}
