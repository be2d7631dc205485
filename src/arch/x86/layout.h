/* The guest-physical and I/O-port map of smolvm's x86 microVM. Everything
 * firmware would decide on a real PC is decided here, once, so the loader,
 * the ACPI tables and the devices agree. */
#ifndef SMOLVM_ARCH_X86_LAYOUT_H
#define SMOLVM_ARCH_X86_LAYOUT_H

/* Low memory: boot structures below 1 MiB, all inside e820 RAM except the
 * ACPI area. */
#define X86_GDT_ADDR 0x500ull
#define X86_IDT_ADDR 0x520ull
#define X86_PVH_INFO_ADDR 0x6000ull     /* hvm_start_info, memmap, modlist */
#define X86_ZERO_PAGE_ADDR 0x7000ull    /* Linux boot_params */
#define X86_BOOT_STACK_TOP 0x8ff0ull
#define X86_PML4_ADDR 0x9000ull
#define X86_PDPT_ADDR 0xa000ull
#define X86_PD_ADDR 0xb000ull           /* 4 pages: identity map of 4 GiB */
#define X86_CMDLINE_ADDR 0x20000ull
#define X86_CMDLINE_MAX 0x10000ull
#define X86_EBDA_START 0x9fc00ull       /* end of conventional RAM */
#define X86_ACPI_ADDR 0xe0000ull        /* RSDP first, the other tables after it */
#define X86_ACPI_SIZE 0xf000ull
/* The VM generation ID (16 bytes) the ACPI VMGENCTR device points at: a
 * page of its own after the tables, reserved like them. */
#define X86_VMGENID_ADDR 0xef000ull
/* The MP table: its floating pointer where Linux scans the BIOS area
 * (0xf0000-0xfffff, reserved in the e820 map like the ACPI tables). */
#define X86_MPTABLE_ADDR 0xf0000ull
#define X86_MPTABLE_SIZE 0x8000ull
/* The real-mode reset vector (F000:FFF0). Linux on a hardware-reduced ACPI
 * machine that is not EFI falls back to a "BIOS reboot" that jumps here, so
 * a tiny stub here resets the machine the i8042 way. */
#define X86_RESET_VECTOR 0xffff0ull
#define X86_HIGH_MEMORY 0x100000ull     /* where bzImage kernels are loaded */

/* The 32-bit hole for MMIO: RAM above it moves to 4 GiB. */
#define X86_MMIO_HOLE_START 0xc0000000ull
#define X86_MMIO_HOLE_END 0x100000000ull
#define X86_VIRTIO_MMIO_BASE 0xd0000000ull
#define X86_VIRTIO_MMIO_WINDOW 0x1000ull
#define X86_VIRTIO_IRQ_BASE 5 /* GSIs 5..23 of the I/O APIC */
#define X86_VIRTIO_MAX_DEVICES 18
/* The ACPI Generic Event Device's interrupt (the vmgenid notification). */
#define X86_GED_IRQ 23
/* The power button's Generic Event Device: COM2's ISA line, unused (there
 * is no COM2), as every GSI from 5 up is a virtio device's or the GED's. */
#define X86_POWER_BUTTON_IRQ 3
#define X86_IOAPIC_ADDR 0xfec00000ull
#define X86_LAPIC_ADDR 0xfee00000ull

/* I/O ports. */
#define X86_PORT_COM1 0x3f8
#define X86_IRQ_COM1 4
#define X86_PORT_I8042_DATA 0x60
#define X86_PORT_I8042_CMD 0x64
/* ACPI hardware-reduced sleep/reset registers (FADT SLEEP_CONTROL_REG,
 * SLEEP_STATUS_REG, RESET_REG), a block no PC device uses. */
#define X86_PORT_ACPI_SLEEP_CONTROL 0x600
#define X86_PORT_ACPI_SLEEP_STATUS 0x601
#define X86_PORT_ACPI_RESET 0x602
#define X86_ACPI_RESET_VALUE 0x01
#define X86_ACPI_S5_SLEEP_TYPE 5

#endif
