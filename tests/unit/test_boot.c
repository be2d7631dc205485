#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"

static struct guest_memory memory_of(uint64_t size)
{
    struct guest_region r[2];
    struct guest_memory mem;
    assert_int_equal(guest_memory_alloc(&mem, r, x86_ram_layout(size, r)), 0);
    return mem;
}

static void e820_small_guest(void **state)
{
    struct guest_memory mem = memory_of(256ull << 20);
    struct e820_entry e[8];
    (void)state;

    assert_int_equal(x86_e820_build(&mem, e, 8), 3);
    assert_int_equal(e[0].addr, 0);
    assert_int_equal(e[0].type, E820_RAM);
    assert_int_equal(e[1].type, E820_RESERVED);
    assert_true(e[1].addr <= X86_ACPI_ADDR && e[1].addr + e[1].size >= X86_ACPI_ADDR + X86_ACPI_SIZE);
    assert_int_equal(e[2].addr, X86_HIGH_MEMORY);
    assert_int_equal(e[2].addr + e[2].size, 256ull << 20);
    assert_int_equal(x86_e820_build(&mem, e, 2), 0); /* no room: nothing */
    guest_memory_free(&mem);
}

static void e820_large_guest_skips_the_hole(void **state)
{
    struct guest_memory mem = memory_of(6ull << 30);
    struct e820_entry e[8];
    uint64_t ram = 0;
    (void)state;

    assert_int_equal(x86_e820_build(&mem, e, 8), 4);
    for (int i = 0; i < 4; i++) {
        if (e[i].type == E820_RAM)
            ram += e[i].size;
        assert_false(e[i].type == E820_RAM && e[i].addr < X86_MMIO_HOLE_END &&
                     e[i].addr + e[i].size > X86_MMIO_HOLE_START);
    }
    assert_int_equal(e[3].addr, X86_MMIO_HOLE_END);
    assert_int_equal(ram, (6ull << 30) - X86_HIGH_MEMORY + X86_EBDA_START);
    guest_memory_free(&mem);
}

static void initrd_goes_high_and_aligned(void **state)
{
    struct guest_memory mem = memory_of(256ull << 20);
    (void)state;

    assert_int_equal(x86_initrd_address(&mem, 4096, UINT64_MAX, 0), (256ull << 20) - 4096);
    assert_int_equal(x86_initrd_address(&mem, 5000, UINT64_MAX, 0), (256ull << 20) - 8192);
    assert_int_equal(x86_initrd_address(&mem, 100, 0x1000000, 0), 0x1000000 - 4096);
    assert_int_equal(x86_initrd_address(&mem, 200ull << 20, UINT64_MAX, 100ull << 20), 0);
    assert_int_equal(x86_initrd_address(&mem, 1ull << 40, UINT64_MAX, 0), 0);
    guest_memory_free(&mem);
}

static void kernel_kinds(void **state)
{
    uint8_t img[0x300] = {0x7f, 'E', 'L', 'F'};
    (void)state;

    assert_int_equal(x86_kernel_kind(img, sizeof(img)), X86_KERNEL_ELF);
    assert_int_equal(x86_kernel_kind(img, 3), X86_KERNEL_UNKNOWN);
    img[0] = 0;
    assert_int_equal(x86_kernel_kind(img, sizeof(img)), X86_KERNEL_UNKNOWN);
    img[0x202] = 'H', img[0x203] = 'd', img[0x204] = 'r', img[0x205] = 'S';
    assert_int_equal(x86_kernel_kind(img, sizeof(img)), X86_KERNEL_BZIMAGE);
    assert_int_equal(x86_kernel_kind(img, 0x205), X86_KERNEL_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(e820_small_guest),
        cmocka_unit_test(e820_large_guest_skips_the_hole),
        cmocka_unit_test(initrd_goes_high_and_aligned),
        cmocka_unit_test(kernel_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
