/* Layouts from the Intel MultiProcessor Specification 1.4, chapter 4. */
#include "arch/x86/mptable.h"

#include <errno.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "util/le.h"

#define FLOATING_LEN 16
#define HEADER_LEN 44
#define PROCESSOR_LEN 20
#define ENTRY_LEN 8 /* bus, I/O APIC, interrupt assignments */
#define SPEC_REV 4  /* 1.4 */
/* After the processors: the bus, the I/O APIC, its pins, LINT0 and LINT1. */
#define FIXED_ENTRIES (2 + MPTABLE_IOAPIC_PINS + 2)
enum { ENTRY_PROCESSOR, ENTRY_BUS, ENTRY_IOAPIC, ENTRY_IO_INTERRUPT, ENTRY_LOCAL_INTERRUPT };
enum { INT_VECTORED = 0, INT_NMI = 1, INT_EXTINT = 3 };
#define CPU_ENABLED 0x1
#define CPU_BOOTSTRAP 0x2
#define LAPIC_VERSION 0x14  /* an integrated xAPIC, as KVM's */
#define IOAPIC_VERSION 0x11 /* an 82093AA, as KVM's */
#define ISA_BUS 0
#define ALL_LAPICS 0xff
/* What processor entries report: family 6, with an FPU and a local APIC
 * (Linux reads only the APIC ID and the flags). */
#define CPU_SIGNATURE 0x600
#define CPU_FEATURES 0x201

static uint8_t *entry(uint8_t *p, uint8_t type, uint8_t b1, uint8_t b2, uint8_t b3)
{
    p[0] = type;
    p[1] = b1;
    p[2] = b2;
    p[3] = b3;
    return p;
}

/* An interrupt assignment: type, interrupt type, flags 0 (as the bus
 * conforms: ISA, edge, active high), source bus and IRQ, destination APIC
 * and its pin (I/O APIC) or LINTn (local). */
static uint8_t *interrupt(uint8_t *p, uint8_t type, uint8_t kind, uint8_t src_irq,
                          uint8_t dst_apic, uint8_t dst_pin)
{
    entry(p, type, kind, 0, 0);
    p[4] = ISA_BUS;
    p[5] = src_irq;
    p[6] = dst_apic;
    p[7] = dst_pin;
    return p + ENTRY_LEN;
}

long mptable_build(uint8_t *buf, size_t cap, uint64_t base, unsigned cpus)
{
    size_t config_len = HEADER_LEN + PROCESSOR_LEN * (size_t)cpus + ENTRY_LEN * FIXED_ENTRIES;
    size_t total = FLOATING_LEN + config_len;
    uint8_t ioapic_id = (uint8_t)cpus; /* after the vCPUs' APIC IDs */

    if (cpus == 0 || cpus > MPTABLE_MAX_CPUS || total > cap || base % 16)
        return -ENOSPC;
    memset(buf, 0, total);
    uint8_t *fp = buf, *t = buf + FLOATING_LEN, *e = t + HEADER_LEN;

    memcpy(fp, "_MP_", 4);
    put_le(fp + 4, base + FLOATING_LEN, 4);
    fp[8] = 1; /* length in 16-byte units */
    fp[9] = SPEC_REV;
    /* feature bytes 0: the table is there (no default configuration),
     * virtual wire mode (no IMCR) */
    fp[10] = (uint8_t)-acpi_checksum(fp, FLOATING_LEN);

    for (unsigned i = 0; i < cpus; i++, e += PROCESSOR_LEN) {
        entry(e, ENTRY_PROCESSOR, (uint8_t)i, LAPIC_VERSION,
              CPU_ENABLED | (i == 0 ? CPU_BOOTSTRAP : 0));
        put_le(e + 4, CPU_SIGNATURE, 4);
        put_le(e + 8, CPU_FEATURES, 4);
    }
    entry(e, ENTRY_BUS, ISA_BUS, 0, 0);
    memcpy(e + 2, "ISA   ", 6);
    e += ENTRY_LEN;
    entry(e, ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1 /* usable */);
    put_le(e + 4, X86_IOAPIC_ADDR, 4);
    e += ENTRY_LEN;
    for (uint8_t pin = 0; pin < MPTABLE_IOAPIC_PINS; pin++)
        e = interrupt(e, ENTRY_IO_INTERRUPT, INT_VECTORED, pin, ioapic_id, pin);
    /* LINT0 takes the 8259's interrupts (virtual wire), LINT1 the NMI. */
    e = interrupt(e, ENTRY_LOCAL_INTERRUPT, INT_EXTINT, 0, ALL_LAPICS, 0);
    e = interrupt(e, ENTRY_LOCAL_INTERRUPT, INT_NMI, 0, ALL_LAPICS, 1);

    memcpy(t, "PCMP", 4);
    put_le(t + 4, config_len, 2);
    t[6] = SPEC_REV;
    memcpy(t + 8, "SMOLVM  ", 8);
    memcpy(t + 16, "SMOLVMMV    ", 12);
    put_le(t + 34, cpus + FIXED_ENTRIES, 2);
    put_le(t + 36, X86_LAPIC_ADDR, 4);
    t[7] = (uint8_t)-acpi_checksum(t, config_len);
    return (long)total;
}
