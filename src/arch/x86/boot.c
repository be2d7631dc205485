#include "arch/x86/boot.h"

#include <string.h>

#include "arch/x86/bzimage.h"
#include "arch/x86/elf.h"
#include "arch/x86/layout.h"
#include "util/err.h"

#define PAGE_SIZE 4096ull
#define PTE_PRESENT 0x1ull
#define PTE_WRITE 0x2ull
#define PTE_HUGE 0x80ull
#define GDT_ENTRIES 4
#define GDT_CODE_SELECTOR 0x10 /* Linux's __BOOT_CS */
#define GDT_DATA_SELECTOR 0x18 /* Linux's __BOOT_DS */

enum x86_kernel_kind x86_kernel_kind(const uint8_t *image, size_t len)
{
    if (len >= 4 && memcmp(image, "\177ELF", 4) == 0)
        return X86_KERNEL_ELF;
    if (len >= 0x206 && memcmp(image + 0x202, "HdrS", 4) == 0)
        return X86_KERNEL_BZIMAGE;
    return X86_KERNEL_UNKNOWN;
}

int x86_kernel_check(const uint8_t *image, size_t len)
{
    struct bzimage_header h;
    struct elf_kernel k;

    switch (x86_kernel_kind(image, len)) {
    case X86_KERNEL_BZIMAGE:
        return bzimage_parse(image, len, &h);
    case X86_KERNEL_ELF:
        return elf_kernel_parse(image, len, &k);
    default:
        return err_plain(ENOEXEC, "not a Linux kernel (neither a bzImage nor an ELF vmlinux)");
    }
}

unsigned x86_ram_layout(uint64_t mem_bytes, struct guest_region *out)
{
    uint64_t low = mem_bytes < X86_MMIO_HOLE_START ? mem_bytes : X86_MMIO_HOLE_START;

    out[0] = (struct guest_region){.gpa = 0, .size = low};
    if (mem_bytes == low)
        return 1;
    out[1] = (struct guest_region){.gpa = X86_MMIO_HOLE_END, .size = mem_bytes - low};
    return 2;
}

unsigned x86_e820_build(const struct guest_memory *mem, struct e820_entry *out, unsigned max)
{
    unsigned n = 0;

    if (max < 3 + mem->count)
        return 0;
    out[n++] = (struct e820_entry){0, X86_EBDA_START, E820_RAM};
    out[n++] = (struct e820_entry){X86_EBDA_START, X86_HIGH_MEMORY - X86_EBDA_START, E820_RESERVED};
    for (unsigned i = 0; i < mem->count; i++) {
        const struct guest_region *r = &mem->regions[i];
        uint64_t start = r->gpa < X86_HIGH_MEMORY ? X86_HIGH_MEMORY : r->gpa;
        if (r->gpa + r->size > start)
            out[n++] = (struct e820_entry){start, r->gpa + r->size - start, E820_RAM};
    }
    return n;
}

uint64_t x86_initrd_address(const struct guest_memory *mem, size_t initrd_len, uint64_t limit,
                            uint64_t min_addr)
{
    uint64_t top = guest_region_end(mem, 0);
    uint64_t addr;

    if (limit < top)
        top = limit;
    if (initrd_len > top)
        return 0;
    addr = (top - initrd_len) & ~(PAGE_SIZE - 1);
    return addr >= min_addr ? addr : 0;
}

bool x86_has_initrd(const struct x86_boot_request *req)
{
    return req->initrd || req->read_initrd;
}

int x86_place_initrd(const struct guest_memory *mem, const struct x86_boot_request *req,
                     uint64_t limit, uint64_t min_addr, uint64_t *addr)
{
    void *dst;
    int r;

    *addr = 0;
    if (!x86_has_initrd(req))
        return 0;
    *addr = x86_initrd_address(mem, req->initrd_len, limit, min_addr);
    if (!*addr)
        return err_plain(ENOMEM, "initrd of %zu KiB does not fit in guest memory beside "
                                 "the kernel (%llu MiB); give the VM more --mem",
                         req->initrd_len >> 10, (unsigned long long)(mem->total >> 20));
    if (!req->read_initrd)
        return guest_write(mem, *addr, req->initrd, req->initrd_len);
    dst = gpa_ptr(mem, *addr, req->initrd_len);
    r = dst ? req->read_initrd(req->read_initrd_opaque, dst, req->initrd_len)
            : err_plain(EFAULT, "the initrd's place in guest memory is not RAM");
    if (r == 0)
        guest_memory_mark_dirty(mem, *addr, req->initrd_len);
    return r;
}

int x86_write_reset_stub(const struct guest_memory *mem)
{
    static const uint8_t stub[] = {
        0xb0, 0xfe,       /* mov al, 0xfe */
        0xe6, 0x64,       /* out 0x64, al: i8042 pulse reset */
        0xf4,             /* hlt */
        0xeb, 0xfd,       /* jmp back to hlt */
    };
    return guest_write(mem, X86_RESET_VECTOR, stub, sizeof(stub));
}

int x86_write_gdt(const struct guest_memory *mem)
{
    static const uint64_t gdt[GDT_ENTRIES] = {
        0,
        0,
        0x00af9b000000ffffull, /* 0x10: 64-bit code (also fine as 32-bit: L ignored until LMA) */
        0x00cf93000000ffffull, /* 0x18: flat data */
    };
    return guest_write(mem, X86_GDT_ADDR, gdt, sizeof(gdt));
}

static struct x86_segment flat_segment(uint16_t selector, uint8_t type, int long_mode)
{
    return (struct x86_segment){
        .base = 0, .limit = 0xffffffff, .selector = selector, .type = type, .present = 1,
        .s = 1, .g = 1,
        .l = (uint8_t)(long_mode && (type & 0x8)),
        .db = (uint8_t)!(long_mode && (type & 0x8)),
    };
}

void x86_flat_segments(struct x86_cpu_state *st, int long_mode)
{
    /* Types: 0xb = code execute/read accessed, 0x3 = data read/write accessed. */
    st->cs = flat_segment(GDT_CODE_SELECTOR, 0xb, long_mode);
    st->ds = st->es = st->fs = st->gs = st->ss = flat_segment(GDT_DATA_SELECTOR, 0x3, long_mode);
    st->tr = (struct x86_segment){.limit = 0xffff, .type = 0xb, .present = 1};
    st->ldt = (struct x86_segment){.limit = 0xffff, .type = 0x2, .present = 1};
    st->gdt = (struct x86_table){.base = X86_GDT_ADDR, .limit = GDT_ENTRIES * 8 - 1};
    st->idt = (struct x86_table){.base = X86_IDT_ADDR, .limit = 0};
    st->rflags = 0x2;
}

int x86_boot_load(const struct guest_memory *mem, const struct x86_boot_request *req,
                  struct x86_cpu_state *bsp)
{
    memset(bsp, 0, sizeof(*bsp));
    if (req->cmdline && strlen(req->cmdline) >= X86_CMDLINE_MAX)
        return err_plain(E2BIG, "kernel command line longer than %llu bytes",
                         (unsigned long long)X86_CMDLINE_MAX - 1);
    if (guest_write(mem, X86_CMDLINE_ADDR, req->cmdline ? req->cmdline : "",
                    req->cmdline ? strlen(req->cmdline) + 1 : 1) < 0)
        return err_plain(ENOMEM, "guest memory too small for the boot structures");
    if (x86_write_gdt(mem) < 0 || x86_write_reset_stub(mem) < 0)
        return err_plain(ENOMEM, "guest memory too small for the boot structures");
    if (req->kernel_file || x86_kernel_kind(req->kernel, req->kernel_len) == X86_KERNEL_ELF)
        return x86_pvh_load(mem, req, bsp);
    return x86_bzimage_load(mem, req, bsp);
}

/* Identity map of the first 4 GiB with 2 MiB pages: the 64-bit entry needs
 * the kernel, zero page, command line and initrd mapped 1:1. */
int x86_write_identity_page_tables(const struct guest_memory *mem)
{
    uint64_t pml4 = X86_PDPT_ADDR | PTE_PRESENT | PTE_WRITE;
    uint64_t pdpt[4], pd[512];

    if (guest_write(mem, X86_PML4_ADDR, &pml4, sizeof(pml4)) < 0)
        return -EFAULT;
    for (uint64_t g = 0; g < 4; g++) {
        pdpt[g] = (X86_PD_ADDR + g * PAGE_SIZE) | PTE_PRESENT | PTE_WRITE;
        for (uint64_t i = 0; i < 512; i++)
            pd[i] = ((g << 30) + (i << 21)) | PTE_PRESENT | PTE_WRITE | PTE_HUGE;
        if (guest_write(mem, X86_PD_ADDR + g * PAGE_SIZE, pd, sizeof(pd)) < 0)
            return -EFAULT;
    }
    return guest_write(mem, X86_PDPT_ADDR, pdpt, sizeof(pdpt));
}
