#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "scratch.h"

static uint8_t table[X86_MPTABLE_SIZE];

static uint32_t get32(const uint8_t *p) { return (uint32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Walks the configuration table as Linux's smp_read_mpc does: every
 * entry's length comes from its type; counts what it finds. */
struct seen {
    unsigned cpus, bsps, buses, ioapics, io_ints, local_ints;
    uint8_t ioapic_id;
    uint32_t ioapic_addr;
    int identity; /* every I/O interrupt: ISA IRQ N to pin N of that I/O APIC */
};

static struct seen walk(const uint8_t *t)
{
    struct seen s = {.identity = 1};
    const uint8_t *e = t + 44, *end = t + get16(t + 4);
    for (unsigned i = 0; i < get16(t + 34); i++) {
        assert_true(e < end);
        switch (e[0]) {
        case 0:
            assert_int_equal(e[1], s.cpus); /* APIC IDs 0, 1, ... as CPUID says */
            s.cpus++;
            s.bsps += (e[3] & 2) != 0;
            assert_true(e[3] & 1);
            e += 20;
            continue;
        case 1:
            s.buses++;
            assert_memory_equal(e + 2, "ISA   ", 6);
            break;
        case 2:
            s.ioapics++;
            s.ioapic_id = e[1];
            s.ioapic_addr = get32(e + 4);
            assert_true(e[3] & 1);
            break;
        case 3:
            s.identity &= e[1] == 0 && e[4] == 0 && e[5] == s.io_ints && e[6] == s.ioapic_id &&
                          e[7] == s.io_ints;
            s.io_ints++;
            break;
        case 4:
            assert_int_equal(e[6], 0xff);
            assert_int_equal(e[7], s.local_ints); /* LINT0 ExtINT, LINT1 NMI */
            assert_int_equal(e[1], s.local_ints ? 1 : 3);
            s.local_ints++;
            break;
        default:
            fail_msg("entry type %u", e[0]);
        }
        e += 8;
    }
    assert_ptr_equal(e, end);
    return s;
}

/* The floating pointer points at the table after it; both sum to 0;
 * one processor per vCPU (the first the bootstrap one), the I/O APIC
 * after their IDs at its address, all 24 pins as ISA IRQs of the same
 * number, the two LINTs. */
static void describes_cpus_and_every_pin(void **state)
{
    (void)state;
    for (unsigned cpus = 1; cpus <= 8; cpus += 7) {
        long used = mptable_build(table, sizeof(table), X86_MPTABLE_ADDR, cpus);
        assert_true(used > 0);
        assert_memory_equal(table, "_MP_", 4);
        assert_int_equal(get32(table + 4), X86_MPTABLE_ADDR + 16);
        assert_int_equal(table[8], 1);
        assert_int_equal(table[9], 4);
        assert_int_equal(acpi_checksum(table, 16), 0);
        const uint8_t *t = table + 16;
        assert_memory_equal(t, "PCMP", 4);
        assert_int_equal(16 + get16(t + 4), used);
        assert_int_equal(acpi_checksum(t, get16(t + 4)), 0);
        assert_int_equal(get32(t + 36), X86_LAPIC_ADDR);
        struct seen s = walk(t);
        assert_int_equal(s.cpus, cpus);
        assert_int_equal(s.bsps, 1);
        assert_int_equal(s.buses, 1);
        assert_int_equal(s.ioapics, 1);
        assert_int_equal(s.ioapic_id, cpus);
        assert_int_equal(s.ioapic_addr, X86_IOAPIC_ADDR);
        assert_int_equal(s.io_ints, MPTABLE_IOAPIC_PINS);
        assert_true(s.identity);
        assert_int_equal(s.local_ints, 2);
    }
}

/* The most CPUs fit the area; 0, too many (no APIC ID left for the I/O
 * APIC), too little room or a misaligned base are refused. */
static void limits(void **state)
{
    (void)state;
    assert_true(mptable_build(table, sizeof(table), X86_MPTABLE_ADDR, MPTABLE_MAX_CPUS) > 0);
    assert_int_equal(walk(table + 16).cpus, MPTABLE_MAX_CPUS);
    assert_int_equal(mptable_build(table, sizeof(table), X86_MPTABLE_ADDR, 0), -ENOSPC);
    assert_int_equal(mptable_build(table, sizeof(table), X86_MPTABLE_ADDR, MPTABLE_MAX_CPUS + 1),
                     -ENOSPC);
    assert_int_equal(mptable_build(table, 100, X86_MPTABLE_ADDR, 2), -ENOSPC);
    assert_int_equal(mptable_build(table, sizeof(table), X86_MPTABLE_ADDR + 8, 2), -ENOSPC);
}

/* An oracle from elsewhere: dmidecode's biosdecode finds the floating
 * pointer in a memory image (the BIOS area at its address) and reads the
 * table's address from it. */
static void biosdecode_finds_it(void **state)
{
    (void)state;
    if (system("command -v biosdecode > /dev/null 2>&1") != 0)
        skip();
    long used = mptable_build(table, sizeof(table), X86_MPTABLE_ADDR, 2);
    assert_true(used > 0);
    FILE *f = fopen(in_dir("mem"), "wb");
    assert_non_null(f);
    assert_int_equal(fseek(f, X86_MPTABLE_ADDR, SEEK_SET), 0);
    assert_int_equal(fwrite(table, 1, (size_t)used, f), (size_t)used);
    assert_int_equal(fseek(f, 0x100000 - 1, SEEK_SET), 0);
    assert_int_equal(fputc(0, f), 0);
    fclose(f);
    assert_int_equal(sh("biosdecode -d mem > out 2>&1 && grep -q '^Intel Multiprocessor present' out && "
                        "grep -q 'Specification Revision: 1.4' out && grep -q 'Configuration Table Address: 0x000F0010' out && "
                        "grep -q 'Mode: Virtual Wire' out"), 0);
}

static int setup(void **state)
{
    (void)state;
    return scratch_setup("mptable");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(describes_cpus_and_every_pin),
        cmocka_unit_test(limits),
        cmocka_unit_test(biosdecode_finds_it),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
