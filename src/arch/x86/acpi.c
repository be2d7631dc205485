/* Table layouts from the ACPI 6.5 specification, chapter 5.2. */
#include "arch/x86/acpi.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"
#include "util/le.h"

#define HEADER_LEN 36
#define RSDP_LEN 36
#define FADT_LEN 276
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_MINOR_VERSION 131
#define FADT_X_DSDT 140
#define FADT_SLEEP_CONTROL 244
#define FADT_SLEEP_STATUS 256
#define FADT_HYPERVISOR_ID 268
#define FADT_FLAG_PWR_BUTTON (1u << 4) /* set: no fixed power button */
#define FADT_FLAG_SLP_BUTTON (1u << 5)
#define FADT_FLAG_RESET_REG_SUP (1u << 10)
#define FADT_FLAG_HW_REDUCED (1u << 20)
/* No VGA and no CMOS RTC: without the latter flag Linux probes the RTC
 * ports and waits seconds for an update cycle that never comes. */
#define IAPC_VGA_NOT_PRESENT (1u << 2)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1
#define MADT_LOCAL_APIC 0
#define MADT_IO_APIC 1
#define MADT_LOCAL_APIC_NMI 4
#define RESOURCE_MEMORY32_FIXED 0x86
#define RESOURCE_EXTENDED_IRQ 0x89
#define RESOURCE_END_TAG 0x79
#define RESOURCE_IO 0x47
#define RESOURCE_IRQ_NO_FLAGS 0x22
#define IO_DECODE_16 0x01
#define IRQ_FLAG_CONSUMER 0x01

struct writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    uint64_t base;
};

uint8_t acpi_checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    while (n--)
        sum = (uint8_t)(sum + *p++);
    return sum;
}

/* Reserves len bytes, 16-byte aligned; NULL when out of room. */
static uint8_t *reserve(struct writer *w, size_t len, uint64_t *gpa)
{
    size_t at = (w->len + 15) & ~(size_t)15;
    if (at > w->cap || len > w->cap - at)
        return NULL;
    memset(w->buf + at, 0, len);
    w->len = at + len;
    *gpa = w->base + at;
    return w->buf + at;
}

static void header(uint8_t *t, const char *sig, size_t len, uint8_t revision)
{
    memcpy(t, sig, 4);
    put_le(t + 4, len, 4);
    t[8] = revision;
    memcpy(t + 10, "SMOLVM", 6);
    memcpy(t + 16, "SMOLVMMV", 8);
    put_le(t + 24, 1, 4);
    memcpy(t + 28, "SMOL", 4);
    put_le(t + 32, 1, 4);
}

static void finish(uint8_t *t, size_t len)
{
    t[9] = 0;
    t[9] = (uint8_t)-acpi_checksum(t, len);
}

static void gas_io(uint8_t *g, uint16_t port)
{
    g[0] = GAS_SYSTEM_IO;
    g[1] = 8;
    g[2] = 0;
    g[3] = GAS_ACCESS_BYTE;
    put_le(g + 4, port, 8);
}

/* Name(_CRS, Buffer(){res}) */
static void emit_crs(struct aml *a, const uint8_t *res, size_t n)
{
    size_t buf;

    aml_byte(a, AML_NAME_OP);
    aml_name_seg(a, "_CRS");
    aml_byte(a, AML_BUFFER_OP);
    buf = aml_open(a);
    aml_integer(a, n);
    aml_bytes(a, res, n);
    aml_close(a, buf);
}

/* Device(name){ Name(_HID, ...) Name(_UID, uid) ... }: leaves the device
 * open for its _CRS; returns the mark for aml_close(). */
static size_t open_device(struct aml *a, const char *name, const char *hid, int eisa,
                          unsigned uid)
{
    size_t dev;

    aml_byte(a, AML_EXT_OP);
    aml_byte(a, AML_DEVICE_OP);
    dev = aml_open(a);
    aml_name_seg(a, name);
    aml_byte(a, AML_NAME_OP);
    aml_name_seg(a, "_HID");
    if (!eisa || aml_eisa_id(a, hid) < 0)
        aml_string(a, hid);
    aml_byte(a, AML_NAME_OP);
    aml_name_seg(a, "_UID");
    aml_integer(a, uid);
    return dev;
}

/* Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) {irq} */
static size_t edge_interrupt(uint8_t *res, uint32_t irq)
{
    size_t n = 0;

    res[n++] = RESOURCE_EXTENDED_IRQ;
    put_le(res + n, 6, 2), n += 2;
    res[n++] = IRQ_FLAG_CONSUMER | 0x02 /* edge */;
    res[n++] = 1;
    put_le(res + n, irq, 4), n += 4;
    return n;
}

static void dsdt_isa_device(struct aml *a, unsigned index, const struct acpi_isa_device *d)
{
    char name[5];
    uint8_t res[16];
    size_t n = 0, dev;

    snprintf(name, sizeof(name), "L%03X", index & 0xfff);
    dev = open_device(a, name, d->hid, 1, index);
    /* IO(Decode16, port, port, 1, len) + IRQNoFlags(){irq} + EndTag */
    res[n++] = RESOURCE_IO;
    res[n++] = IO_DECODE_16;
    put_le(res + n, d->port, 2), n += 2;
    put_le(res + n, d->port, 2), n += 2;
    res[n++] = 1;
    res[n++] = d->port_len;
    res[n++] = RESOURCE_IRQ_NO_FLAGS;
    put_le(res + n, 1u << d->irq, 2), n += 2;
    res[n++] = RESOURCE_END_TAG;
    res[n++] = 0;
    emit_crs(a, res, n);
    aml_close(a, dev);
}

static void dsdt_mmio_device(struct aml *a, unsigned index, const struct acpi_mmio_device *d)
{
    char name[5];
    uint8_t res[32];
    size_t n = 0, dev;

    snprintf(name, sizeof(name), "V%03X", index & 0xfff);
    dev = open_device(a, name, "LNRO0005", 0, index);
    /* Memory32Fixed(ReadWrite, base, size) + Interrupt(Consumer, Edge,
     * ActiveHigh, Exclusive) {irq} + EndTag. */
    res[n++] = RESOURCE_MEMORY32_FIXED;
    put_le(res + n, 9, 2), n += 2;
    res[n++] = 1; /* read/write */
    put_le(res + n, d->base, 4), n += 4;
    put_le(res + n, d->size, 4), n += 4;
    n += edge_interrupt(res + n, d->irq);
    res[n++] = RESOURCE_END_TAG;
    res[n++] = 0;
    emit_crs(a, res, n);
    aml_close(a, dev);
}

/* A Generic Event Device: Device(name){ _HID "ACPI0013", _CRS Interrupt
 * (edge) {irq}, Method(_EVT, 1){ Notify(target, 0x80) } }. Linux's GED
 * driver runs _EVT on each edge of irq. */
static void dsdt_ged(struct aml *a, const char *name, uint32_t irq, const char *target)
{
    uint8_t res[16];
    size_t dev, method, n;

    dev = open_device(a, name, "ACPI0013", 0, 0);
    n = edge_interrupt(res, irq);
    res[n++] = RESOURCE_END_TAG;
    res[n++] = 0;
    emit_crs(a, res, n);
    aml_byte(a, AML_METHOD_OP);
    method = aml_open(a);
    aml_name_seg(a, "_EVT");
    aml_byte(a, 1);
    aml_byte(a, AML_NOTIFY_OP);
    aml_name_seg(a, target);
    aml_integer(a, 0x80);
    aml_close(a, method);
    aml_close(a, dev);
}

/* Device(VGEN){ _HID "VMGENCTR", ADDR = Package{low, high} } and a Generic
 * Event Device that notifies it: Linux's vmgenid driver rereads the ID on
 * the notification and reseeds its RNG (a restored clone must not repeat
 * its parent's random numbers). */
static void dsdt_vmgenid(struct aml *a, const struct acpi_config *cfg)
{
    size_t dev, pkg;

    dev = open_device(a, "VGEN", "VMGENCTR", 0, 0);
    aml_byte(a, AML_NAME_OP);
    aml_name_seg(a, "ADDR");
    aml_byte(a, AML_PACKAGE_OP);
    pkg = aml_open(a);
    aml_byte(a, 2);
    aml_integer(a, cfg->vmgenid_gpa & 0xffffffffu);
    aml_integer(a, cfg->vmgenid_gpa >> 32);
    aml_close(a, pkg);
    aml_close(a, dev);
    dsdt_ged(a, "GED0", cfg->ged_irq, "VGEN");
}

/* Device(PWRB){ _HID EisaId("PNP0C0C") } and the GED that notifies it
 * (0x80: pressed): Linux's button driver turns that into KEY_POWER on its
 * "Power Button" input device, which systemd-logind or smolvm's init act
 * on. `smolvm stop` presses it before it forces the VM off. */
static void dsdt_power_button(struct aml *a, const struct acpi_config *cfg)
{
    aml_close(a, open_device(a, "PWRB", "PNP0C0C", 1, 0));
    dsdt_ged(a, "GED1", cfg->power_button_irq, "PWRB");
}

#define DSDT_MAX 8192

static int build_dsdt(struct writer *w, const struct acpi_config *cfg, uint64_t *gpa)
{
    uint8_t aml_buf[DSDT_MAX];
    struct aml a = {.buf = aml_buf, .len = HEADER_LEN, .cap = sizeof(aml_buf)};
    size_t pkg, sb;
    uint8_t *t;

    /* Name(_S5_, Package(){5, 0, 0, 0}): the sleep type the guest writes to
     * SLEEP_CONTROL_REG to power off. */
    aml_byte(&a, AML_NAME_OP);
    aml_name_seg(&a, "_S5_");
    aml_byte(&a, AML_PACKAGE_OP);
    pkg = aml_open(&a);
    aml_byte(&a, 4);
    aml_integer(&a, X86_ACPI_S5_SLEEP_TYPE);
    aml_integer(&a, 0);
    aml_integer(&a, 0);
    aml_integer(&a, 0);
    aml_close(&a, pkg);
    aml_byte(&a, AML_SCOPE_OP);
    sb = aml_open(&a);
    aml_name_seg(&a, "_SB_");
    for (unsigned i = 0; i < cfg->isa_count; i++)
        dsdt_isa_device(&a, i, &cfg->isa[i]);
    for (unsigned i = 0; i < cfg->mmio_count; i++)
        dsdt_mmio_device(&a, i, &cfg->mmio[i]);
    if (cfg->vmgenid_gpa)
        dsdt_vmgenid(&a, cfg);
    if (cfg->power_button_irq)
        dsdt_power_button(&a, cfg);
    aml_close(&a, sb);
    if (a.overflow)
        return -ENOSPC;
    t = reserve(w, a.len, gpa);
    if (!t)
        return -ENOSPC;
    memcpy(t, aml_buf, a.len);
    header(t, "DSDT", a.len, 2);
    finish(t, a.len);
    return 0;
}

static int build_fadt(struct writer *w, uint64_t dsdt, uint64_t *gpa)
{
    uint8_t *t = reserve(w, FADT_LEN, gpa);
    if (!t)
        return -ENOSPC;
    header(t, "FACP", FADT_LEN, 6);
    put_le(t + FADT_IAPC_BOOT_ARCH, IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT, 2);
    put_le(t + FADT_FLAGS,
           FADT_FLAG_HW_REDUCED | FADT_FLAG_RESET_REG_SUP | FADT_FLAG_PWR_BUTTON |
               FADT_FLAG_SLP_BUTTON,
           4);
    gas_io(t + FADT_RESET_REG, X86_PORT_ACPI_RESET);
    t[FADT_RESET_VALUE] = X86_ACPI_RESET_VALUE;
    t[FADT_MINOR_VERSION] = 5;
    put_le(t + FADT_X_DSDT, dsdt, 8);
    gas_io(t + FADT_SLEEP_CONTROL, X86_PORT_ACPI_SLEEP_CONTROL);
    gas_io(t + FADT_SLEEP_STATUS, X86_PORT_ACPI_SLEEP_STATUS);
    memcpy(t + FADT_HYPERVISOR_ID, "SMOLVM\0\0", 8);
    finish(t, FADT_LEN);
    return 0;
}

static int build_madt(struct writer *w, const struct acpi_config *cfg, uint64_t *gpa)
{
    size_t len = HEADER_LEN + 8 + 8 * (size_t)cfg->cpus + 12 + 6;
    uint8_t *t = reserve(w, len, gpa), *e;
    if (!t)
        return -ENOSPC;
    header(t, "APIC", len, 5);
    put_le(t + HEADER_LEN, X86_LAPIC_ADDR, 4);
    e = t + HEADER_LEN + 8;
    for (unsigned i = 0; i < cfg->cpus; i++, e += 8) {
        e[0] = MADT_LOCAL_APIC;
        e[1] = 8;
        e[2] = (uint8_t)i; /* ACPI processor UID */
        e[3] = (uint8_t)i; /* APIC ID, as CPUID leaf 1 says */
        put_le(e + 4, 1, 4); /* enabled */
    }
    e[0] = MADT_IO_APIC;
    e[1] = 12;
    e[2] = 0;
    put_le(e + 4, X86_IOAPIC_ADDR, 4);
    put_le(e + 8, 0, 4); /* GSI base */
    e += 12;
    e[0] = MADT_LOCAL_APIC_NMI;
    e[1] = 6;
    e[2] = 0xff; /* all processors */
    put_le(e + 3, 0, 2);
    e[5] = 1; /* LINT1 */
    finish(t, len);
    return 0;
}

static int build_xsdt(struct writer *w, const uint64_t *tables, unsigned n, uint64_t *gpa)
{
    size_t len = HEADER_LEN + 8 * (size_t)n;
    uint8_t *t = reserve(w, len, gpa);
    if (!t)
        return -ENOSPC;
    header(t, "XSDT", len, 1);
    for (unsigned i = 0; i < n; i++)
        put_le(t + HEADER_LEN + 8 * i, tables[i], 8);
    finish(t, len);
    return 0;
}

long acpi_build(uint8_t *buf, size_t cap, uint64_t base, const struct acpi_config *cfg)
{
    struct writer w = {.buf = buf, .cap = cap, .base = base};
    uint64_t rsdp_gpa, dsdt, tables[2], xsdt;
    uint8_t *rsdp = reserve(&w, RSDP_LEN, &rsdp_gpa);

    if (!rsdp || cfg->cpus == 0 || cfg->cpus > 255 || cfg->mmio_count > ACPI_MAX_MMIO_DEVICES ||
        cfg->isa_count > ACPI_MAX_ISA_DEVICES)
        return -ENOSPC;
    if (build_dsdt(&w, cfg, &dsdt) < 0 || build_fadt(&w, dsdt, &tables[0]) < 0 ||
        build_madt(&w, cfg, &tables[1]) < 0 || build_xsdt(&w, tables, 2, &xsdt) < 0)
        return -ENOSPC;
    memcpy(rsdp, "RSD PTR ", 8);
    memcpy(rsdp + 9, "SMOLVM", 6);
    rsdp[15] = 2; /* revision: ACPI 2.0+ with XSDT */
    put_le(rsdp + 20, RSDP_LEN, 4);
    put_le(rsdp + 24, xsdt, 8);
    rsdp[8] = (uint8_t)-acpi_checksum(rsdp, 20);
    rsdp[32] = (uint8_t)-acpi_checksum(rsdp, RSDP_LEN);
    return (long)w.len;
}
