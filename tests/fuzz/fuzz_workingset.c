/* libFuzzer target: a bundle's working set section (SECTION_WORKINGSET,
 * docs/smolmachine-format.md), arbitrary bytes, as a first start adopts it
 * (working_set_adopt: refused, or written next to the memory cache as a
 * provisional set) against a RAM of two regions, then read back as the
 * start reads it (working_set_read_ranges): either may refuse, never
 * crash, and what is adopted lies inside the RAM. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/memory.h"
#include "machine/workingset.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const struct guest_region layout[2] = {{0, 6u << 20, NULL}, {1ull << 32, 1u << 20, NULL}};
static struct guest_memory mem;
static char dir[] = "/tmp/fuzz-workingset.XXXXXX";
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (guest_memory_alloc(&mem, layout, 2) < 0 || !mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/ws", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct working_set_chunk *ranges = NULL;
    size_t count = 0;

    if (working_set_adopt(path, &mem, data, size) < 0) {
        err_clear();
        if (access(path, F_OK) == 0) /* refused: nothing written */
            abort();
        return 0;
    }
    if (working_set_read_ranges(path, &mem, &ranges, &count) < 0)
        abort(); /* adopted, so readable */
    for (size_t i = 0; i < count; i++)
        if (!ranges[i].pages || ranges[i].first_page + ranges[i].pages > mem.total / 4096)
            abort();
    free(ranges);
    unlink(path);
    return 0;
}
