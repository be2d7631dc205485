/* The ACPI tables of smolvm's x86 microVM: RSDP, XSDT, FADT (hardware-
 * reduced, with sleep and reset registers so poweroff and reboot work),
 * MADT (one local APIC per vCPU, the I/O APIC) and a DSDT describing the
 * virtio-mmio devices as LNRO0005, the legacy serial port, the VM
 * generation ID and the power button. */
#ifndef SMOLVM_ARCH_X86_ACPI_H
#define SMOLVM_ARCH_X86_ACPI_H

#include <stddef.h>
#include <stdint.h>

#define ACPI_MAX_MMIO_DEVICES 32

struct acpi_mmio_device {
    uint64_t base;
    uint32_t size;
    uint32_t irq;
};

/* A legacy port-I/O device: ISA IRQs have no Linux IRQ on a hardware-
 * reduced machine until ACPI describes them, so COM1 must be here. */
struct acpi_isa_device {
    char hid[8]; /* EISA id, e.g. "PNP0501" */
    uint16_t port;
    uint8_t port_len;
    uint8_t irq;
};

#define ACPI_MAX_ISA_DEVICES 8

struct acpi_config {
    unsigned cpus;
    unsigned isa_count;
    struct acpi_isa_device isa[ACPI_MAX_ISA_DEVICES];
    unsigned mmio_count;
    struct acpi_mmio_device mmio[ACPI_MAX_MMIO_DEVICES];
    /* VM generation ID: where its 16 bytes are, and the GSI of the Generic
     * Event Device that tells the guest it changed; 0: no such device. */
    uint64_t vmgenid_gpa;
    uint32_t ged_irq;
    /* The power button (PNP0C0C) and the GSI of the Generic Event Device
     * that presses it (Linux's button driver then reports KEY_POWER);
     * 0: no power button. A hardware-reduced machine has no fixed-feature
     * button, so it is a device like on arm64 machines. */
    uint32_t power_button_irq;
};

/* Writes the tables into buf, which the guest will see at base; the RSDP
 * comes first, at base. Returns the bytes used, or -ENOSPC. */
long acpi_build(uint8_t *buf, size_t cap, uint64_t base, const struct acpi_config *cfg)
    __attribute__((warn_unused_result));

/* Sum of bytes, mod 256: every table sums to 0 (tests use it too). */
uint8_t acpi_checksum(const uint8_t *p, size_t n);

#endif
