/* libFuzzer target: the destination of a migration fed an arbitrary
 * stream from a hostile source (migrate_receive_bundle(): frame headers,
 * lengths, checksums, HELLO's version and CPUID table, the config JSON,
 * OFFER (the host "has" layers whose hash starts with a digit), a live
 * migration's RAM and PAGES (into a VM's memory of two regions, 16
 * pages in all, as smolvm receive's prepared VM has), DATA and END in any
 * order). Its answers go to /dev/null, the bundle to
 * a memfd. Any crash, sanitizer report, hang or leak is a bug; refusals
 * are expected.
 *
 * Input: the stream itself. Byte 0 bit 0 set: checksums are fixed up
 * before the stream is read, so the fuzzer gets past them to what the
 * frames carry (each frame's check recomputed from its header's length). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migrate/migrate.h"
#include "util/err.h"
#include "util/le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct x86_cpuid_entry host[] = {
    {1, 0, 0, 0, 0xffffffffu, 0xffffffffu},
    {7, 0, 0, 0xffffffffu, 0, 0},
};

static int has_some_layers(const char *hash, const char *format, bool *have)
{
    (void)format;
    *have = hash[0] >= '0' && hash[0] <= '9';
    return 0;
}

/* The memory PAGES go into: two regions of 8 pages, far apart. */
static struct guest_memory home;

static int ram_home(void *opaque, const char *config, uint64_t mem_bytes, unsigned cpus,
                    const struct guest_memory **out)
{
    static const struct guest_region layout[] = {{.gpa = 0, .size = 8 * MIGRATE_PAGE},
                                                 {.gpa = 1ull << 32, .size = 8 * MIGRATE_PAGE}};
    int r = guest_memory_alloc(&home, layout, 2);
    (void)opaque;
    (void)config;
    (void)mem_bytes;
    (void)cpus;
    if (r == 0)
        *out = &home;
    return r;
}

/* Walks the frames, recomputing each check as the version the first
 * frame's HELLO names (a PAGES frame is summed from version 4). */
static void fix_checksums(uint8_t *p, size_t size)
{
    unsigned version = 0;

    for (size_t at = 0; at + MIGRATE_HEADER <= size;) {
        uint32_t len = le32(p + at + 8);
        if (len > size - at - MIGRATE_HEADER)
            break;
        if (at == 0 && le16(p + 4) == MIGRATE_HELLO && len >= 4)
            version = le32(p + MIGRATE_HEADER);
        put_le(p + at + 12, migrate_frame_check(version, p + at, p + at + MIGRATE_HEADER, len), 4);
        at += MIGRATE_HEADER + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t *stream = malloc(size);
    memcpy(stream, data + 1, size - 1);
    if (data[0] & 1)
        fix_checksums(stream, size - 1);
    int in = memfd_create("stream", 0), bundle = memfd_create("bundle", 0);
    int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (in >= 0 && write(in, stream, size - 1) == (ssize_t)(size - 1) &&
        lseek(in, 0, SEEK_SET) == 0 && bundle >= 0 && out >= 0) {
        struct migrate_link l = {.in = in, .out = out, .stall_ms = 10};
        struct migrate_receive rx = {.host = host, .host_n = 2, .bundle_fd = bundle,
                                     .scratch_dir = "/tmp", .have_layer = has_some_layers,
                                     .ram_home = ram_home};
        if (migrate_receive_bundle(&l, &rx) < 0)
            err_clear();
        guest_memory_free(&home);
        free(rx.have);
    }
    close(in);
    close(bundle);
    close(out);
    free(stream);
    return 0;
}
