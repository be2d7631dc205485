/* What the virtqueue fuzz targets share: 64 KiB of guest RAM at 1 MiB
 * (allocated once), filled from the input, and a queue in it whose shape
 * the input's first four bytes choose. Header only: each target is one
 * executable of its own file. */
#ifndef SMOLVM_FUZZ_QUEUE_H
#define SMOLVM_FUZZ_QUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/queue.h"

#define FUZZ_RAM_GPA 0x100000ull
#define FUZZ_RAM_BYTES (64u << 10)

/* *q: a ready queue in mem's RAM as data says (size, event index, where
 * its rings lie), data[4...] copied into that RAM (the rest zeroed).
 * False: too short an input, or a queue the device would refuse. */
static inline bool fuzz_queue_from(struct guest_memory *mem, const uint8_t *data, size_t size,
                                   struct virtq *q)
{
    uint8_t *ram;

    if (!mem->count) {
        struct guest_region r = {.gpa = FUZZ_RAM_GPA, .size = FUZZ_RAM_BYTES};
        if (guest_memory_alloc(mem, &r, 1) < 0)
            abort();
    }
    if (size < 4)
        return false;
    ram = gpa_ptr(mem, FUZZ_RAM_GPA, FUZZ_RAM_BYTES);
    memset(ram, 0, FUZZ_RAM_BYTES);
    memcpy(ram, data + 4, size - 4 < FUZZ_RAM_BYTES ? size - 4 : FUZZ_RAM_BYTES);
    *q = (struct virtq){
        .mem = mem,
        .size = (uint16_t)(1u << (data[0] % 9)),
        .ready = true,
        .event_idx = data[1] & 1,
        .desc_gpa = FUZZ_RAM_GPA + (data[2] & 0xf0) * 16ull,
        .avail_gpa = FUZZ_RAM_GPA + 0x4000,
        .used_gpa = FUZZ_RAM_GPA + 0x8000 + (data[3] & 0x3) * 4ull,
    };
    return virtq_validate(q) == 0;
}

#endif
