/* smolvm disk bench: qemu-img bench's flags and output, one request at a
 * time: offsets go from -o by -S (default: the buffer size), wrapping at
 * the end of the disk, so the same flags give both tools the same pattern. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/disk/disk_cli.h"
#include "util/size.h"

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static int run(struct disk *d, bool write, uint64_t count, uint64_t size, uint64_t offset,
               uint64_t step, uint64_t flush_every, void *buf)
{
    int r = 0;
    for (uint64_t i = 0; r == 0 && i < count; i++) {
        struct iovec iov = {buf, size};
        if (offset + size > d->size)
            offset = 0;
        r = write ? disk_write(d, &iov, 1, offset) : disk_read(d, &iov, 1, offset);
        if (r == 0 && write && flush_every && (i + 1) % flush_every == 0)
            r = disk_flush(d);
        offset = (offset + step) % d->size;
    }
    if (r == 0 && write)
        r = disk_flush(d);
    return r;
}

int disk_verb_bench(int argc, char **argv)
{
    const char *format = NULL;
    uint64_t count = 75000, size = 4096, step = 0, offset = 0, flush_every = 0, ignored;
    bool write = false, direct = false;
    struct disk *d;
    int c;

    while ((c = disk_option(argc, argv, &format)) != -1) {
        uint64_t *number = c == 'c' ? &count : c == 'o' ? &offset : c == 's' ? &size
                         : c == 'S' ? &step : c == DISK_OPT_FLUSH_INTERVAL ? &flush_every
                         : c == 'd' ? &ignored : NULL;
        if (c == 'w')
            write = true;
        else if (c == 't' && (strcmp(optarg, "none") == 0 || strcmp(optarg, "writeback") == 0))
            direct = strcmp(optarg, "none") == 0;
        else if (c == 't')
            return disk_usage("-t takes none or writeback, not '%s'", optarg);
        else if (c == 'n')
            continue; /* one request at a time */
        else if (!number)
            return CLI_USAGE;
        else if (size_parse(optarg, 1, number) < 0)
            return disk_usage("-%c: invalid number '%s'", c < 0x100 ? c : 'F', optarg);
    }
    if (size == 0 || size > (64u << 20))
        return disk_usage("-s: request size must be 1 byte to 64M");
    if (disk_operands(argc, 1, 1) < 0)
        return CLI_USAGE;
    const char *path = argv[optind];
    if (disk_open_as(path, (write ? 0 : DISK_READ_ONLY) | (direct ? DISK_DIRECT : 0), format,
                     &d) < 0)
        return disk_failed(path);
    void *buf = NULL;
    if (d->size < size || posix_memalign(&buf, 4096, size) != 0) {
        disk_close(d);
        return disk_fail(CLI_FAILED, "%s: request size larger than the disk", path);
    }
    memset(buf, 0xa5, size);
    if (!disk_json)
        printf("Sending %llu %s requests, %llu bytes each, from offset %llu, step size %llu\n",
               (unsigned long long)count, write ? "write" : "read", (unsigned long long)size,
               (unsigned long long)offset, (unsigned long long)(step ? step : size));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = run(d, write, count, size, offset, step ? step : size, flush_every, buf);
    double took = seconds_since(&t0);
    disk_close(d);
    free(buf);
    if (r < 0)
        return disk_fail(CLI_FAILED, "%s: %s", path, strerror(-r));
    if (!disk_json) {
        printf("Run completed in %.3f seconds.\n", took);
        return CLI_OK;
    }
    return disk_print_json(json_pack("{sssIsIsIsIsf}", "operation", write ? "write" : "read",
                                     "requests", (json_int_t)count, "request-size",
                                     (json_int_t)size, "offset", (json_int_t)offset, "step",
                                     (json_int_t)(step ? step : size), "seconds", took));
}
