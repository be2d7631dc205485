/* Random 4 KiB direct I/O for bench/blk, run by the guest: COUNT reads or
 * writes at random 4 KiB-aligned offsets within the first SPAN MiB of
 * DEVICE (O_DIRECT, one at a time: the latency-bound case fio's randread
 * and randwrite with iodepth=1 measure). Static, so it runs from the
 * test initrd with no libraries.
 * usage: randio read|write DEVICE COUNT SPAN_MIB */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    int writing = strcmp(argv[1], "write") == 0;
    long count = atol(argv[3]);
    uint64_t blocks = (uint64_t)atol(argv[4]) * 256, state = 0x9e3779b97f4a7c15ull;
    void *buf;
    int fd = open(argv[2], (writing ? O_WRONLY : O_RDONLY) | O_DIRECT);
    if (fd < 0 || posix_memalign(&buf, 4096, 4096) != 0 || blocks == 0)
        return 1;
    memset(buf, 0x5a, 4096);
    for (long i = 0; i < count; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17; /* xorshift */
        off_t at = (off_t)(state % blocks) * 4096;
        ssize_t n = writing ? pwrite(fd, buf, 4096, at) : pread(fd, buf, 4096, at);
        if (n != 4096)
            return 1;
    }
    if (writing && fdatasync(fd) < 0)
        return 1;
    return close(fd) < 0;
}
