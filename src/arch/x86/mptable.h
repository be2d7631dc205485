/* The Intel MultiProcessor table (MP Specification 1.4) of smolvm's x86
 * microVM, for kernels that do not read ACPI's interrupt routing: built
 * without CONFIG_ACPI, or booted with acpi=off or acpi=noirq. It lists the
 * vCPUs, the I/O APIC and every one of its pins as an ISA interrupt of the
 * same number, so IRQ N is GSI N for all 24 (as virtio_mmio.device=...:N
 * on the command line needs). A kernel that uses ACPI ignores it. */
#ifndef SMOLVM_ARCH_X86_MPTABLE_H
#define SMOLVM_ARCH_X86_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

/* APIC IDs are a byte, 255 is "all", and the I/O APIC needs one too. */
#define MPTABLE_MAX_CPUS 254
#define MPTABLE_IOAPIC_PINS 24

/* Writes the floating pointer (at base, 16-byte aligned, where Linux scans
 * for it) and the configuration table after it into buf, which the guest
 * sees at base. Returns the bytes used, or -ENOSPC (no room, or 0 or more
 * than MPTABLE_MAX_CPUS CPUs). */
long mptable_build(uint8_t *buf, size_t cap, uint64_t base, unsigned cpus)
    __attribute__((warn_unused_result));

#endif
