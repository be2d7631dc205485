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
#include "fuzz_queue.h"

#define DISK_BYTES (1u << 20)
#define MAX_REQUESTS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct guest_memory mem;
static struct blk *blk;
static struct virtq_chain chain;

static void setup_once(void)
{
    char path[64];
    struct disk *disk;
    int fd;

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
    struct virtq q;

    if (!blk)
        setup_once();
    if (!fuzz_queue_from(&mem, data, size, &q))
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
