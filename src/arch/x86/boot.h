/* Loading a Linux kernel into guest memory the way a boot loader would:
 * a bzImage through the x86 Linux boot protocol (64-bit entry), an ELF
 * vmlinux of Linux's through the same entry (its startup_64), any other
 * ELF kernel through its PVH entry note. Pure functions of their inputs and
 * guest memory, so unit tests drive them without a hypervisor. */
#ifndef SMOLVM_ARCH_X86_BOOT_H
#define SMOLVM_ARCH_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpu_state.h"
#include "core/memory.h"

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3

struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

struct elf_kernel;
struct elf_source;

struct x86_boot_request {
    const uint8_t *kernel;
    size_t kernel_len;
    /* Instead of kernel: an ELF vmlinux read from its file, only its
     * headers and notes into the VMM and each segment straight into guest
     * memory. kernel_elf: its headers as read and checked when it was
     * opened (not read again: the file may have changed since). */
    const struct elf_source *kernel_file;
    const struct elf_kernel *kernel_elf;
    const uint8_t *initrd; /* may be NULL */
    size_t initrd_len;
    /* Instead of initrd: reads the initrd's initrd_len bytes straight into
     * guest memory at dst (from its file, no copy in between). */
    int (*read_initrd)(void *opaque, void *dst, size_t len);
    void *read_initrd_opaque;
    const char *cmdline;
    uint64_t rsdp_gpa;
};

enum x86_kernel_kind { X86_KERNEL_UNKNOWN, X86_KERNEL_BZIMAGE, X86_KERNEL_ELF };

enum x86_kernel_kind x86_kernel_kind(const uint8_t *image, size_t len);

/* Checks that image is a kernel smolvm can boot (a 64-bit bzImage or an ELF
 * with a PVH note), before any guest exists. */
int x86_kernel_check(const uint8_t *image, size_t len) __attribute__((warn_unused_result));

/* The guest RAM layout for mem_bytes: below the 32-bit MMIO hole, and the
 * rest from 4 GiB. Returns the number of regions written to out (<= 2). */
unsigned x86_ram_layout(uint64_t mem_bytes, struct guest_region *out);

/* The e820 map of mem: RAM, the reserved BIOS area with the ACPI tables. */
unsigned x86_e820_build(const struct guest_memory *mem, struct e820_entry *out, unsigned max);

/* Loads kernel, initrd and command line, writes the boot structures (zero
 * page or hvm_start_info, GDT, page tables) and fills in the boot vCPU's
 * entry state. Errors name what does not fit or is malformed. */
int x86_boot_load(const struct guest_memory *mem, const struct x86_boot_request *req,
                  struct x86_cpu_state *bsp) __attribute__((warn_unused_result));

/* Where the initrd goes: the highest page-aligned address below limit (and
 * below the end of low RAM) where it fits. 0 when it does not fit above
 * min_addr. */
uint64_t x86_initrd_address(const struct guest_memory *mem, size_t initrd_len, uint64_t limit,
                            uint64_t min_addr);

/* Shared by both entry paths. x86_place_initrd copies (or reads) the initrd
 * (if any) to x86_initrd_address() and says so clearly when it does not fit. */
bool x86_has_initrd(const struct x86_boot_request *req);
int x86_place_initrd(const struct guest_memory *mem, const struct x86_boot_request *req,
                     uint64_t limit, uint64_t min_addr, uint64_t *addr)
    __attribute__((warn_unused_result));
int x86_write_gdt(const struct guest_memory *mem) __attribute__((warn_unused_result));
int x86_write_reset_stub(const struct guest_memory *mem) __attribute__((warn_unused_result));
void x86_flat_segments(struct x86_cpu_state *st, int long_mode);
int x86_write_identity_page_tables(const struct guest_memory *mem)
    __attribute__((warn_unused_result));

/* bzimage.c and pvh.c */
int x86_bzimage_load(const struct guest_memory *mem, const struct x86_boot_request *req,
                     struct x86_cpu_state *bsp) __attribute__((warn_unused_result));
int x86_pvh_load(const struct guest_memory *mem, const struct x86_boot_request *req,
                 struct x86_cpu_state *bsp) __attribute__((warn_unused_result));
/* A Linux vmlinux already in guest memory entered at its 64-bit entry
 * (startup_64's physical address) with a zero page, as a bzImage's
 * decompressor enters it: no PVH entry and its Xen probes. */
int x86_vmlinux_enter(const struct guest_memory *mem, const struct x86_boot_request *req,
                      uint64_t initrd_addr, uint64_t entry, struct x86_cpu_state *bsp)
    __attribute__((warn_unused_result));

#endif
