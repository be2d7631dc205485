/* libFuzzer target: a disk image from nowhere. The bytes become a file
 * (a memfd) opened read-only with every format's probe, without backing
 * files; then the whole virtual disk (capped) is mapped and read. Nothing
 * may crash, hang, or allocate without bound. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "disk/check.h"
#include "disk/disk.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define READ_CAP (4u << 20)
#define STEP (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[STEP];
    int fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
    char path[64];
    struct disk *d;

    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (disk_open(path, DISK_READ_ONLY | DISK_NO_BACKING, &d) == 0) {
        uint64_t end = d->size < READ_CAP ? d->size : READ_CAP;
        struct disk_check_result res;
        for (uint64_t off = 0; off < end;) {
            struct disk_extent e;
            uint64_t n = end - off < STEP ? end - off : STEP;
            struct iovec iov = {buf, n};
            if (disk_status(d, off, n, &e) < 0 || disk_read(d, &iov, 1, off) < 0)
                break;
            off += n;
        }
        (void)disk_check(d, 0, &res);
        disk_close(d);
    }
    err_clear();
    close(fd);
    return 0;
}
