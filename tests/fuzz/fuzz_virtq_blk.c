/* libFuzzer target: arbitrary guest memory holding a virtqueue, walked by
 * the virtqueue code and served by virtio-blk against a 1 MiB raw disk.
 * Any crash, sanitizer report or hang is a bug; errors are expected. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/queue.h"
#include "disk/disk.h"

#define RAM_BYTES (64u << 10)
#define DISK_BYTES (1u << 20)
#define MAX_REQUESTS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct guest_memory mem;
static struct blk *blk;
static struct virtq_chain chain;

static void setup_once(void)
{
    struct guest_region r = {.gpa = 0x100000, .size = RAM_BYTES};
    char path[64];
    struct disk *disk;
    int fd;

    if (guest_memory_alloc(&mem, &r, 1) < 0)
        abort();
    fd = memfd_create("fuzz-disk", 0);
    if (fd < 0 || ftruncate(fd, DISK_BYTES) < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (disk_open(path, 0, &disk) < 0)
        abort();
    blk = virtio_blk_new(disk, "fuzz");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *ram;
    struct virtq q;

    if (!blk)
        setup_once();
    if (size < 4)
        return 0;
    ram = gpa_ptr(&mem, 0x100000, RAM_BYTES);
    memset(ram, 0, RAM_BYTES);
    memcpy(ram, data + 4, size - 4 < RAM_BYTES ? size - 4 : RAM_BYTES);
    /* The first bytes choose the queue's shape; the rest is guest RAM. */
    q = (struct virtq){
        .mem = &mem,
        .size = (uint16_t)(1u << (data[0] % 9)),
        .ready = true,
        .event_idx = data[1] & 1,
        .desc_gpa = 0x100000 + (data[2] & 0xf0) * 16ull,
        .avail_gpa = 0x104000,
        .used_gpa = 0x108000 + (data[3] & 0x3) * 4ull,
    };
    if (virtq_validate(&q) < 0)
        return 0;
    for (int i = 0; i < MAX_REQUESTS; i++) {
        long written;
        if (virtq_pop(&q, &chain) <= 0)
            break;
        written = virtio_blk_serve(blk, &chain);
        if (written < 0 || virtq_push(&q, chain.head, (uint32_t)written) < 0)
            break;
        (void)virtq_needs_interrupt(&q);
    }
    return 0;
}
