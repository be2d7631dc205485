#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "core/memory.h"
#include "smaps.h"

static void gpa_ptr_checks_bounds(void **state)
{
    struct guest_region layout[] = {{.gpa = 0, .size = 1 << 20}, {.gpa = 4ull << 30, .size = 1 << 20}};
    struct guest_memory mem;
    (void)state;

    assert_int_equal(guest_memory_alloc(&mem, layout, 2), 0);
    assert_non_null(gpa_ptr(&mem, 0, 1 << 20));
    assert_null(gpa_ptr(&mem, 0, (1 << 20) + 1));
    assert_null(gpa_ptr(&mem, (1 << 20) - 1, 2));
    assert_non_null(gpa_ptr(&mem, (1 << 20) - 1, 1));
    assert_null(gpa_ptr(&mem, 1 << 20, 1));
    assert_non_null(gpa_ptr(&mem, 4ull << 30, 4096));
    /* A range spanning the hole between regions is not RAM. */
    assert_null(gpa_ptr(&mem, (1 << 20) - 8, (4ull << 30)));
    /* Overflowing ranges. */
    assert_null(gpa_ptr(&mem, UINT64_MAX, 2));
    assert_null(gpa_ptr(&mem, 16, UINT64_MAX));
    assert_null(gpa_ptr(&mem, UINT64_MAX - 4, 16));
    guest_memory_free(&mem);
}

/* KVM maps 2 MiB of the guest with one huge page only where the host
 * address agrees with the guest's modulo 2 MiB: each region's does, whatever
 * the host's mmap gave (a page-aligned mapping taken first shifts it). */
static void regions_are_congruent_with_their_gpa(void **state)
{
    struct guest_region layout[] = {{.gpa = 0, .size = 6 << 20},
                                    {.gpa = (4ull << 30) + (1 << 20), .size = 4 << 20}};
    (void)state;

    for (unsigned shift = 0; shift < 3; shift++) {
        void *nudge = mmap(NULL, 4096 * (shift + 1), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
        struct guest_memory mem;

        assert_true(nudge != MAP_FAILED);
        assert_int_equal(guest_memory_alloc(&mem, layout, 2), 0);
        for (unsigned i = 0; i < 2; i++) {
            assert_int_equal(((uintptr_t)mem.regions[i].host - layout[i].gpa) % GUEST_HUGE_PAGE,
                             0);
            /* All of it usable. */
            mem.regions[i].host[0] = 1;
            mem.regions[i].host[layout[i].size - 1] = 1;
        }
        guest_memory_free(&mem);
        munmap(nudge, 4096 * (shift + 1));
    }
}

/* The host backs guest RAM with huge pages where it gives them only to who
 * asks (THP "madvise"): every region asks (VmFlag hg). Without, KVM maps
 * the guest's RAM page by page (nested scenario ram_huge_pages). */
static void regions_ask_for_huge_pages(void **state)
{
    struct guest_region layout[] = {{.gpa = 0, .size = 4 << 20},
                                    {.gpa = 4ull << 30, .size = 2 << 20}};
    struct guest_memory mem;
    (void)state;

    assert_int_equal(guest_memory_alloc(&mem, layout, 2), 0);
    for (unsigned i = 0; i < 2; i++)
        assert_true(smaps_has_flag(mem.regions[i].host, "hg"));
    guest_memory_free(&mem);
}

static void guest_write_refuses_outside_ram(void **state)
{
    struct guest_region layout[] = {{.gpa = 0, .size = 8192}};
    struct guest_memory mem;
    char data[16] = "x";
    (void)state;

    assert_int_equal(guest_memory_alloc(&mem, layout, 1), 0);
    assert_int_equal(guest_write(&mem, 8192 - 16, data, 16), 0);
    assert_int_not_equal(guest_write(&mem, 8192 - 15, data, 16), 0);
    guest_memory_free(&mem);
}

/* RAM mapped from a file (a restored VM's, from the unpacked cache) stays
 * out of core dumps like fresh RAM, and reads the file's bytes. */
/* guest_write() during a live migration marks every page it touches, in
 * the region it touches, and nothing without tracking. */
static void guest_write_marks_pages_dirty(void **state)
{
    static _Atomic(uint64_t) bits[2][1];
    struct guest_region layout[2] = {{.gpa = 0, .size = 16 * 4096},
                                     {.gpa = 1 << 20, .size = 16 * 4096}};
    struct guest_memory mem;
    uint8_t buf[8192] = {0};
    (void)state;

    assert_int_equal(guest_memory_alloc(&mem, layout, 2), 0);
    assert_int_equal(guest_write(&mem, 4096 - 1, buf, 2), 0); /* untracked: nothing */
    mem.regions[0].vmm_dirty = bits[0];
    mem.regions[1].vmm_dirty = bits[1];
    assert_int_equal(guest_write(&mem, 4096 - 1, buf, 2), 0); /* pages 0 and 1 */
    assert_int_equal(bits[0][0], 0x3);
    assert_int_equal(guest_write(&mem, (1 << 20) + 5 * 4096, buf, sizeof(buf)), 0);
    assert_int_equal(bits[1][0], 0x60);
    guest_memory_mark_dirty(&mem, 15 * 4096, 4096 * 4); /* clipped at the region's end */
    assert_int_equal(bits[0][0], 0x8003);
    guest_memory_mark_dirty(&mem, 1 << 19, 4096); /* not RAM: nothing */
    assert_int_equal(bits[0][0], 0x8003);
    assert_int_equal(bits[1][0], 0x60);
    guest_memory_free(&mem);
}

static void file_mapped_ram_is_not_dumped(void **state)
{
    struct guest_region layout[] = {{.gpa = 0, .size = 1 << 20}, {.gpa = 4ull << 30, .size = 8192}};
    struct guest_memory mem;
    char path[] = "/tmp/smolvm-test-memory-XXXXXX";
    int fd = mkstemp(path);
    (void)state;

    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(guest_memory_alloc(&mem, layout, 2), 0);
    assert_true(smaps_has_flag(mem.regions[0].host, "dd"));
    assert_int_equal(ftruncate(fd, (1 << 20) + 4096), 0);
    assert_true(guest_memory_map_file(&mem, fd) < 0); /* not the RAM's size */
    assert_int_equal(ftruncate(fd, (1 << 20) + 8192), 0);
    assert_int_equal(pwrite(fd, "x", 1, (1 << 20) + 5), 1);
    assert_int_equal(guest_memory_map_file(&mem, fd), 0);
    close(fd);
    for (unsigned i = 0; i < mem.count; i++) {
        assert_true(mem.regions[i].file_backed);
        assert_true(smaps_has_flag(mem.regions[i].host, "dd"));
    }
    assert_int_equal(*(char *)gpa_ptr(&mem, (4ull << 30) + 5, 1), 'x');
    guest_memory_free(&mem);
}

static void x86_layout_splits_around_hole(void **state)
{
    struct guest_region r[2];
    (void)state;

    assert_int_equal(x86_ram_layout(256ull << 20, r), 1);
    assert_int_equal(r[0].size, 256ull << 20);
    assert_int_equal(x86_ram_layout(4ull << 30, r), 2);
    assert_int_equal(r[0].gpa, 0);
    assert_int_equal(r[0].size, X86_MMIO_HOLE_START);
    assert_int_equal(r[1].gpa, X86_MMIO_HOLE_END);
    assert_int_equal(r[0].size + r[1].size, 4ull << 30);
}

/* Round 0 of a live migration skips the pages the guest never touched:
 * only those (a page written, or read, is read), never in a file-backed
 * region, where an untouched page holds the file's bytes. */
static void untouched_pages_found(void **state)
{
    struct guest_region layout[] = {{.gpa = 0, .size = 64 * GUEST_PAGE}};
    struct guest_memory mem;
    uint64_t bits = ~0ull;
    volatile uint8_t sink;
    (void)state;

    assert_int_equal(guest_memory_alloc(&mem, layout, 1), 0);
    madvise(mem.regions[0].host, layout[0].size, MADV_NOHUGEPAGE); /* page by page */
    mem.regions[0].host[3 * GUEST_PAGE + 5] = 1;
    sink = mem.regions[0].host[40 * GUEST_PAGE];
    (void)sink;
    assert_int_equal(guest_memory_untouched(&mem.regions[0], &bits), 62);
    assert_int_equal(bits, (1ull << 3) | (1ull << 40));
    mem.regions[0].file_backed = true;
    bits = ~0ull;
    assert_int_equal(guest_memory_untouched(&mem.regions[0], &bits), -ENOTSUP);
    assert_int_equal(bits, ~0ull);
    mem.regions[0].file_backed = false;
    guest_memory_free(&mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gpa_ptr_checks_bounds),
        cmocka_unit_test(regions_are_congruent_with_their_gpa),
        cmocka_unit_test(regions_ask_for_huge_pages),
        cmocka_unit_test(guest_write_refuses_outside_ram),
        cmocka_unit_test(guest_write_marks_pages_dirty),
        cmocka_unit_test(x86_layout_splits_around_hole),
        cmocka_unit_test(file_mapped_ram_is_not_dumped),
        cmocka_unit_test(untouched_pages_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
