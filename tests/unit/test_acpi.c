#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"

#define BASE 0xe0000ull

static uint8_t buf[0x20000];

static uint32_t get32(const uint8_t *p) { return (uint32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24); }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static const uint8_t *table_at(uint64_t gpa)
{
    assert_true(gpa >= BASE && gpa < BASE + sizeof(buf));
    return buf + (gpa - BASE);
}

static struct acpi_config sample_config(unsigned cpus)
{
    struct acpi_config c = {.cpus = cpus, .isa_count = 1, .mmio_count = 2};
    c.isa[0] = (struct acpi_isa_device){"PNP0501", 0x3f8, 8, 4};
    c.mmio[0] = (struct acpi_mmio_device){0xd0000000, 0x200, 5};
    c.mmio[1] = (struct acpi_mmio_device){0xd0000200, 0x200, 6};
    c.vmgenid_gpa = 0x1234ef000ull;
    c.ged_irq = 23;
    c.power_button_irq = 3;
    return c;
}

static const uint8_t *find_in_xsdt(const uint8_t *xsdt, const char *sig)
{
    uint32_t len = get32(xsdt + 4);
    for (uint32_t off = 36; off + 8 <= len; off += 8) {
        const uint8_t *t = table_at(get64(xsdt + off));
        if (memcmp(t, sig, 4) == 0)
            return t;
    }
    return NULL;
}

static void tables_link_and_checksum(void **state)
{
    struct acpi_config c = sample_config(4);
    const uint8_t *xsdt, *fadt, *madt, *dsdt;
    long n;
    (void)state;

    n = acpi_build(buf, sizeof(buf), BASE, &c);
    assert_true(n > 0);
    assert_memory_equal(buf, "RSD PTR ", 8);
    assert_int_equal(acpi_checksum(buf, 20), 0);
    assert_int_equal(acpi_checksum(buf, 36), 0);
    xsdt = table_at(get64(buf + 24));
    assert_memory_equal(xsdt, "XSDT", 4);
    assert_int_equal(acpi_checksum(xsdt, get32(xsdt + 4)), 0);
    fadt = find_in_xsdt(xsdt, "FACP");
    madt = find_in_xsdt(xsdt, "APIC");
    assert_non_null(fadt);
    assert_non_null(madt);
    assert_int_equal(acpi_checksum(fadt, get32(fadt + 4)), 0);
    assert_int_equal(acpi_checksum(madt, get32(madt + 4)), 0);
    assert_int_equal(get32(fadt + 4), 276);
    assert_true(get32(fadt + 112) & (1u << 20)); /* hardware reduced */
    assert_true(fadt[109] & (1u << 5));          /* no CMOS RTC: Linux must not probe it */
    assert_true(get64(fadt + 244 + 4) != 0);     /* sleep control register */
    assert_true(get64(fadt + 256 + 4) != 0);     /* sleep status register */
    dsdt = table_at(get64(fadt + 140));
    assert_memory_equal(dsdt, "DSDT", 4);
    assert_int_equal(acpi_checksum(dsdt, get32(dsdt + 4)), 0);
    assert_non_null(memmem(dsdt, get32(dsdt + 4), "_S5_", 4));
    assert_non_null(memmem(dsdt, get32(dsdt + 4), "LNRO0005", 8));
    assert_non_null(memmem(dsdt, get32(dsdt + 4), "\x0c\x41\xd0\x05\x01", 5)); /* PNP0501 */
}

static void madt_lists_every_cpu(void **state)
{
    struct acpi_config c = sample_config(7);
    const uint8_t *madt, *e, *end;
    unsigned lapics = 0, ioapics = 0;
    (void)state;

    assert_true(acpi_build(buf, sizeof(buf), BASE, &c) > 0);
    madt = find_in_xsdt(table_at(get64(buf + 24)), "APIC");
    end = madt + get32(madt + 4);
    for (e = madt + 44; e < end; e += e[1]) {
        assert_true(e[1] >= 2);
        if (e[0] == 0) {
            assert_int_equal(e[3], lapics); /* APIC ID */
            assert_int_equal(get32(e + 4) & 1, 1);
            lapics++;
        } else if (e[0] == 1) {
            assert_int_equal(get32(e + 4), 0xfec00000);
            ioapics++;
        }
    }
    assert_int_equal(lapics, 7);
    assert_int_equal(ioapics, 1);
}

static void refuses_small_buffers_and_bad_configs(void **state)
{
    struct acpi_config c = sample_config(2);
    (void)state;

    assert_int_equal(acpi_build(buf, 100, BASE, &c), -ENOSPC);
    assert_int_equal(acpi_build(buf, 300, BASE, &c), -ENOSPC);
    c.cpus = 0;
    assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &c), -ENOSPC);
    c.cpus = 256;
    assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &c), -ENOSPC);
}

static void pkglength_encodings(void **state)
{
    uint8_t out[8192];
    struct aml a = {.buf = out, .cap = sizeof(out)};
    uint8_t body[5000];
    size_t mark;
    (void)state;

    memset(body, 0xab, sizeof(body));
    mark = aml_open(&a);
    aml_bytes(&a, body, 62); /* 62 + 1 = 63: one byte */
    aml_close(&a, mark);
    assert_int_equal(a.len, 63);
    assert_int_equal(out[0], 63);

    a.len = 0;
    mark = aml_open(&a);
    aml_bytes(&a, body, 63); /* 63 + 2 = 65: two bytes */
    aml_close(&a, mark);
    assert_int_equal(a.len, 65);
    assert_int_equal(out[0], 0x40 | (65 & 0xf));
    assert_int_equal(out[1], 65 >> 4);
    assert_int_equal(out[2], 0xab);

    a.len = 0;
    mark = aml_open(&a);
    aml_bytes(&a, body, 5000); /* 5003: three bytes */
    aml_close(&a, mark);
    assert_int_equal(a.len, 5003);
    assert_int_equal(out[0] >> 6, 2);
    assert_int_equal((out[0] & 0xf) | out[1] << 4 | out[2] << 12, 5003);
}

static void eisa_ids(void **state)
{
    uint8_t out[16];
    struct aml a = {.buf = out, .cap = sizeof(out)};
    (void)state;

    assert_int_equal(aml_eisa_id(&a, "PNP0501"), 0);
    assert_memory_equal(out, "\x0c\x41\xd0\x05\x01", 5);
    assert_int_equal(aml_eisa_id(&a, "pnp0501"), -1);
    assert_int_equal(aml_eisa_id(&a, "PNP05"), -1);
}

/* The oracle: ACPICA's own disassembler must accept every table. */
static void iasl_disassembles_the_tables(void **state)
{
    struct acpi_config c = sample_config(2);
    const uint8_t *xsdt;
    const char *sigs[] = {"FACP", "APIC"};
    char dir[] = "/tmp/smolvm-acpi-XXXXXX", cmd[1024];
    (void)state;

    if (system("command -v iasl >/dev/null 2>&1") != 0)
        skip();
    assert_true(acpi_build(buf, sizeof(buf), BASE, &c) > 0);
    assert_non_null(mkdtemp(dir));
    xsdt = table_at(get64(buf + 24));
    for (int i = 0; i < 3; i++) {
        const uint8_t *t = i < 2 ? find_in_xsdt(xsdt, sigs[i])
                                 : table_at(get64(find_in_xsdt(xsdt, "FACP") + 140));
        char path[300];
        FILE *f;
        snprintf(path, sizeof(path), "%s/t%d.dat", dir, i);
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(t, 1, get32(t + 4), f), get32(t + 4));
        fclose(f);
        snprintf(cmd, sizeof(cmd), "cd %s && iasl -d t%d.dat >log%d 2>&1 && "
                 "! grep -qi -e error -e warning t%d.dsl", dir, i, i, i);
        assert_int_equal(system(cmd), 0);
    }
    snprintf(cmd, sizeof(cmd), "grep -q 'EisaId (\"PNP0501\")' %s/t2.dsl && "
             "grep -q 'Name (_S5, Package' %s/t2.dsl && grep -q 'Hardware Reduced (V5) : 1' %s/t0.dsl && "
             "grep -q 'CMOS RTC Not Present (V5) : 1' %s/t0.dsl", dir, dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    /* The VM generation ID device, its address split in two, and the GED
     * whose _EVT notifies it, as ACPICA reads them. */
    snprintf(cmd, sizeof(cmd), "tr -d ' \\n' < %s/t2.dsl > %s/flat && "
             "grep -q 'Name(_HID,\"VMGENCTR\")' %s/flat && "
             "grep -q 'Name(ADDR,Package(0x02){0x234EF000,One})' %s/flat && "
             "grep -q 'Name(_HID,\"ACPI0013\"' %s/flat && "
             "grep -q 'Interrupt(ResourceConsumer,Edge,ActiveHigh,Exclusive,,,){0x00000017,}' %s/flat && "
             "grep -q 'Method(_EVT,1' %s/flat && grep -q 'Notify(VGEN,0x80' %s/flat",
             dir, dir, dir, dir, dir, dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    /* The power button (PNP0C0C: Linux's button driver) and the second
     * GED, on its own interrupt, whose _EVT presses it. */
    snprintf(cmd, sizeof(cmd), "grep -q 'Device(PWRB){Name(_HID,EisaId(\"PNP0C0C\")' %s/flat && "
             "grep -q 'Device(GED1){Name(_HID,\"ACPI0013\"' %s/flat && "
             "grep -q 'Interrupt(ResourceConsumer,Edge,ActiveHigh,Exclusive,,,){0x00000003,}' %s/flat && "
             "grep -q 'Notify(PWRB,0x80' %s/flat", dir, dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tables_link_and_checksum),
        cmocka_unit_test(madt_lists_every_cpu),
        cmocka_unit_test(refuses_small_buffers_and_bad_configs),
        cmocka_unit_test(pkglength_encodings),
        cmocka_unit_test(eisa_ids),
        cmocka_unit_test(iasl_disassembles_the_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
