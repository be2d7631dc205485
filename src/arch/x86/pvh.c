/* The PVH entry (Xen's HVM direct boot, used by Firecracker and NetBSD):
 * 32-bit protected mode, paging off, EBX = hvm_start_info. Layouts from
 * xen/include/public/arch-x86/hvm/start_info.h. */
#include <string.h>

#include "arch/x86/boot.h"
#include "arch/x86/elf.h"
#include "arch/x86/layout.h"
#include "util/err.h"

#define HVM_START_MAGIC 0x336ec578u
#define HVM_START_VERSION 1 /* with a memory map */
#define MODLIST_OFFSET 0x40
#define MEMMAP_OFFSET 0x80
#define MEMMAP_MAX 64

struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr, size, cmdline_paddr, reserved;
};

struct hvm_memmap_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};

static int write_start_info(const struct guest_memory *mem, const struct x86_boot_request *req,
                            uint64_t initrd_addr)
{
    struct e820_entry e820[MEMMAP_MAX];
    struct hvm_memmap_entry map[MEMMAP_MAX];
    struct hvm_modlist_entry mod = {.paddr = initrd_addr, .size = req->initrd_len};
    unsigned n = x86_e820_build(mem, e820, MEMMAP_MAX);
    struct hvm_start_info info = {
        .magic = HVM_START_MAGIC,
        .version = HVM_START_VERSION,
        .nr_modules = x86_has_initrd(req) ? 1 : 0,
        .modlist_paddr = X86_PVH_INFO_ADDR + MODLIST_OFFSET,
        .cmdline_paddr = X86_CMDLINE_ADDR,
        .rsdp_paddr = req->rsdp_gpa,
        .memmap_paddr = X86_PVH_INFO_ADDR + MEMMAP_OFFSET,
        .memmap_entries = n,
    };

    for (unsigned i = 0; i < n; i++)
        map[i] = (struct hvm_memmap_entry){e820[i].addr, e820[i].size, e820[i].type, 0};
    if (guest_write(mem, X86_PVH_INFO_ADDR, &info, sizeof(info)) < 0 ||
        guest_write(mem, info.modlist_paddr, &mod, sizeof(mod)) < 0 ||
        guest_write(mem, info.memmap_paddr, map, n * sizeof(map[0])) < 0)
        return err_plain(ENOMEM, "guest memory too small for the boot structures");
    return 0;
}

int x86_pvh_load(const struct guest_memory *mem, const struct x86_boot_request *req,
                 struct x86_cpu_state *bsp)
{
    struct elf_memory_source in_memory;
    const struct elf_source *src = req->kernel_file;
    struct elf_kernel k;
    uint64_t initrd_addr = 0;
    int r = 0;

    if (src)
        k = *req->kernel_elf;
    else
        r = elf_kernel_read(src = elf_memory_source(&in_memory, req->kernel, req->kernel_len), &k);
    if (r == 0)
        r = elf_kernel_load(mem, src, &k);
    if (r < 0)
        return r;
    r = x86_place_initrd(mem, req, UINT64_MAX, k.end, &initrd_addr);
    if (r < 0)
        return r;
    /* Linux's own 64-bit entry when it has one: the PVH entry starts by
     * looking for Xen (xen_prepare_pvh: 256 CPUID leaves, each an exit
     * to KVM) and goes through 32-bit mode. */
    if (k.linux_entry)
        return x86_vmlinux_enter(mem, req, initrd_addr, k.linux_entry, bsp);
    r = write_start_info(mem, req, initrd_addr);
    if (r < 0)
        return r;
    x86_flat_segments(bsp, 0);
    bsp->cr0 = X86_CR0_PE | X86_CR0_ET;
    bsp->rip = k.pvh_entry;
    bsp->rbx = X86_PVH_INFO_ADDR;
    return 0;
}
