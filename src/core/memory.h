/* Guest RAM: a few host mappings at guest-physical addresses, and the one
 * checked accessor every reader of guest memory goes through. */
#ifndef SMOLVM_CORE_MEMORY_H
#define SMOLVM_CORE_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEMORY_MAX_REGIONS 4

struct guest_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;
    /* Mapped MAP_PRIVATE from a file (a restored RAM cache): a page never
     * touched holds the file's bytes. Else anonymous: such a page is zero. */
    bool file_backed;
    /* During a live migration: the pages the VMM writes (KVM's dirty log
     * sees only the guest's), one bit per page; NULL otherwise. */
    _Atomic(uint64_t) *vmm_dirty;
};

struct guest_memory {
    struct guest_region regions[GUEST_MEMORY_MAX_REGIONS];
    unsigned count;
    uint64_t total;
    /* A first start's RAM can no longer be served whole (a chunk failed
     * its check): set before the pages still missing are let go, which
     * from then on read as zeros (guest_memory_holds_data). */
    _Atomic bool lost;
};

/* The host's huge page: each region's host address is congruent with its
 * gpa modulo this, so KVM can map the guest's RAM with huge pages. */
#define GUEST_HUGE_PAGE (2ull << 20)
#define GUEST_PAGE 4096ull

/* Maps anonymous host memory for each (gpa, size) in layout. Sizes must be
 * page multiples and regions must not overlap. */
int guest_memory_alloc(struct guest_memory *mem, const struct guest_region *layout,
                       unsigned count) __attribute__((warn_unused_result));
void guest_memory_free(struct guest_memory *mem);
/* Whether the bytes iov[0..count) point at (in mem's regions) are the
 * guest's and may go out to a disk or a host file: every page is touched
 * first (one still to be served is waited for), then mem->lost looked
 * at. A page let go reads as zero, and was let go after lost was set: a
 * write of a page the guest dirtied before its save, served late, is
 * refused, not written as zeros. */
struct iovec;
bool guest_memory_holds_data(const struct guest_memory *mem, const struct iovec *iov,
                             unsigned count);
/* Whether the regions may be backed with huge pages (as allocated: yes).
 * Off while RAM is written in part before a userfaultfd serves the rest:
 * a write's huge page would make its whole 2 MiB present, the rest as
 * zero, where no fault would then fetch the saved bytes. */
void guest_memory_huge_pages(const struct guest_memory *mem, bool on);
/* Makes the len bytes of RAM at at (page-aligned) present before anything
 * runs in them: MADV_POPULATE_WRITE or _READ (Linux 5.14+), else each
 * page touched (written: a byte written back, so only while no vCPU runs).
 * One call in place of a fault per page. */
void guest_memory_populate(uint8_t *at, size_t len, bool written);
/* Maps the file fd over mem's regions in place, MAP_PRIVATE (the guest's
 * writes stay its own; a page never touched is read from the file), the
 * regions one after the other from offset 0: a restored RAM cache. The
 * file must be exactly mem->total bytes. The new mappings are kept out of
 * core dumps like the anonymous ones (a restored guest's RAM is its
 * secrets too). Every mapping of guest RAM is made here. */
int guest_memory_map_file(struct guest_memory *mem, int fd) __attribute__((warn_unused_result));
/* Clears in bits (one per page of g) the pages never touched: anonymous
 * memory with nothing in this process's page tables there, not even in
 * swap, which reads as zeros (Linux's /proc/self/pagemap says). A live
 * migration's round 0 need not read them. The count cleared, or a
 * negative errno when it cannot tell (a file-backed region: an untouched
 * page holds the file's bytes; no /proc) -- bits then as they were, or
 * with some cleared, each rightly. Only for memory no userfaultfd serves
 * (a page it has not placed is not zeros). */
int64_t guest_memory_untouched(const struct guest_region *g, uint64_t *bits);

/* Host pointer for [gpa, gpa+len) or NULL when any byte of it lies outside
 * one region (overflow included). len 0 is checked as len 1. */
void *gpa_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/* Copies into guest memory; -EFAULT when the range is not RAM. */
int guest_write(const struct guest_memory *mem, uint64_t gpa, const void *src, size_t len)
    __attribute__((warn_unused_result));

/* Marks [gpa, gpa+len) written by the VMM (nothing unless a live
 * migration tracks it): virtqueue used rings, device-writable buffers. */
void guest_memory_mark_dirty(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/* The end of the region holding gpa (exclusive), or 0 if gpa is not RAM. */
uint64_t guest_region_end(const struct guest_memory *mem, uint64_t gpa);

#endif
