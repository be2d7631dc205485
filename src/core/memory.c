#include "core/memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "util/err.h"

/* Guest RAM is the bulk of a VM and holds the guest's secrets: never in a
 * core dump of smolvm. */
static void keep_out_of_core_dumps(void *host, uint64_t size)
{
    madvise(host, size, MADV_DONTDUMP);
}

/* KVM maps a guest's 2 MiB with one huge page table entry (one fault for
 * it, not 512) only when the host address and the guest address agree
 * modulo 2 MiB and the host backs it with a huge page. An anonymous
 * mapping is only page-aligned (Linux before 6.7): map 2 MiB more, keep
 * the part that starts congruent with gpa. */
static void *map_congruent(uint64_t gpa, uint64_t size)
{
    uint64_t span = size + GUEST_HUGE_PAGE;
    uint8_t *base = mmap(NULL, span, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

    if (base == MAP_FAILED)
        return MAP_FAILED;
    uint64_t skip = (gpa - (uintptr_t)base) & (GUEST_HUGE_PAGE - 1);
    if (skip)
        munmap(base, skip);
    if (span - skip > size)
        munmap(base + skip + size, span - skip - size);
    return base + skip;
}

int guest_memory_alloc(struct guest_memory *mem, const struct guest_region *layout,
                       unsigned count)
{
    memset(mem, 0, sizeof(*mem));
    if (count > GUEST_MEMORY_MAX_REGIONS)
        return err_plain(EINVAL, "too many guest memory regions");
    for (unsigned i = 0; i < count; i++) {
        void *host = map_congruent(layout[i].gpa, layout[i].size);
        if (host == MAP_FAILED) {
            int e = errno;
            guest_memory_free(mem);
            return err_set(e, "cannot allocate %llu MiB of guest memory",
                           (unsigned long long)(layout[i].size >> 20));
        }
        /* Backed with huge pages when the host allows. */
        madvise(host, layout[i].size, MADV_HUGEPAGE);
        keep_out_of_core_dumps(host, layout[i].size);
        mem->regions[i] = layout[i];
        mem->regions[i].host = host;
        mem->count = i + 1;
        mem->total += layout[i].size;
    }
    return 0;
}

void guest_memory_huge_pages(const struct guest_memory *mem, bool on)
{
    for (unsigned i = 0; i < mem->count; i++)
        madvise(mem->regions[i].host, mem->regions[i].size, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

void guest_memory_populate(uint8_t *at, size_t len, bool written)
{
    if (madvise(at, len, written ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0)
        return;
    for (size_t off = 0; off < len; off += GUEST_PAGE) {
        volatile uint8_t *p = at + off;
        uint8_t v = *p;
        if (written)
            *p = v;
    }
}

bool guest_memory_holds_data(const struct guest_memory *mem, const struct iovec *iov,
                             unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        const volatile uint8_t *at = iov[i].iov_base, *end = at + iov[i].iov_len;
        while (at < end) {
            (void)*at;
            at = (const volatile uint8_t *)(((uintptr_t)at | (GUEST_PAGE - 1)) + 1);
        }
    }
    return !atomic_load(&mem->lost);
}

void guest_memory_free(struct guest_memory *mem)
{
    for (unsigned i = 0; i < mem->count; i++)
        munmap(mem->regions[i].host, mem->regions[i].size);
    memset(mem, 0, sizeof(*mem));
}

int guest_memory_map_file(struct guest_memory *mem, int fd)
{
    uint64_t off = 0;
    struct stat st;

    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != mem->total)
        return err_plain(EIO, "memory cache file has the wrong size");
    for (unsigned i = 0; i < mem->count; i++) {
        struct guest_region *g = &mem->regions[i];
        if (mmap(g->host, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
                 fd, (off_t)off) == MAP_FAILED)
            return err_set(errno, "mapping the memory cache");
        keep_out_of_core_dumps(g->host, g->size);
        g->file_backed = true;
        off += g->size;
    }
    return 0;
}

#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)
#define PAGEMAP_STEP 4096 /* entries read at a time */

int64_t guest_memory_untouched(const struct guest_region *g, uint64_t *bits)
{
    uint64_t pages = g->size / GUEST_PAGE, first = (uintptr_t)g->host / GUEST_PAGE;
    int64_t cleared = 0;
    uint64_t *entry;
    int fd;

    if (g->file_backed)
        return -ENOTSUP;
    if ((fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    if (!(entry = malloc(PAGEMAP_STEP * sizeof(*entry)))) {
        close(fd);
        return -ENOMEM;
    }
    for (uint64_t p = 0; p < pages && cleared >= 0;) {
        uint64_t n = pages - p < PAGEMAP_STEP ? pages - p : PAGEMAP_STEP;
        if (pread(fd, entry, n * 8, (off_t)((first + p) * 8)) != (ssize_t)(n * 8)) {
            cleared = -EIO;
            break;
        }
        for (uint64_t k = 0; k < n; k++, p++)
            if (!(entry[k] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED)) &&
                (bits[p / 64] >> (p % 64) & 1)) {
                bits[p / 64] &= ~(1ull << (p % 64));
                cleared++;
            }
    }
    free(entry);
    close(fd);
    return cleared;
}

void *gpa_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
    uint64_t last;

    if (len == 0)
        len = 1;
    if (__builtin_add_overflow(gpa, len - 1, &last))
        return NULL;
    for (unsigned i = 0; i < mem->count; i++) {
        const struct guest_region *r = &mem->regions[i];
        if (gpa >= r->gpa && last - r->gpa < r->size && gpa - r->gpa < r->size)
            return r->host + (gpa - r->gpa);
    }
    return NULL;
}

int guest_write(const struct guest_memory *mem, uint64_t gpa, const void *src, size_t len)
{
    void *dst = gpa_ptr(mem, gpa, len);
    if (!dst)
        return err_plain(EFAULT, "guest range 0x%llx+0x%zx is not RAM",
                         (unsigned long long)gpa, len);
    memcpy(dst, src, len);
    guest_memory_mark_dirty(mem, gpa, len);
    return 0;
}

void guest_memory_mark_dirty(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; len && i < mem->count; i++) {
        const struct guest_region *r = &mem->regions[i];
        if (!r->vmm_dirty || gpa < r->gpa || gpa - r->gpa >= r->size)
            continue;
        uint64_t first = (gpa - r->gpa) >> 12, end = gpa - r->gpa + len;
        uint64_t last = ((end < r->size ? end : r->size) - 1) >> 12;
        for (uint64_t p = first; p <= last; p++)
            atomic_fetch_or_explicit(&r->vmm_dirty[p / 64], 1ull << (p % 64),
                                     memory_order_relaxed);
    }
}

uint64_t guest_region_end(const struct guest_memory *mem, uint64_t gpa)
{
    for (unsigned i = 0; i < mem->count; i++) {
        const struct guest_region *r = &mem->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa < r->size)
            return r->gpa + r->size;
    }
    return 0;
}
