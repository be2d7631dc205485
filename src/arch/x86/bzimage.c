/* Linux x86 boot protocol, 64-bit entry. Offsets are those of
 * Documentation/arch/x86/boot.rst and the zero page (struct boot_params). */
#include "arch/x86/bzimage.h"

#include <string.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "util/err.h"
#include "util/le.h"

#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define HDR_MIN_END 0x264 /* through init_size: protocol 2.10 */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_VID_MODE 0x1fa
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define ZERO_PAGE_SIZE 4096

#define LOADFLAG_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x1
#define BOOT_PROTOCOL_MIN 0x020c /* xloadflags and the 64-bit entry */
#define VID_MODE_NORMAL 0xffff
#define LOADER_UNDEFINED 0xff
#define HEAP_END 0xfe00
#define ENTRY_64_OFFSET 0x200

int bzimage_parse(const uint8_t *image, size_t len, struct bzimage_header *h)
{
    unsigned setup_sects;

    memset(h, 0, sizeof(*h));
    if (len < HDR_MIN_END || memcmp(image + HDR_MAGIC, "HdrS", 4) != 0)
        return err_plain(ENOEXEC, "not a bzImage (no setup header)");
    if (le16(image + HDR_BOOT_FLAG) != 0xaa55)
        return err_plain(ENOEXEC, "not a bzImage (bad boot flag)");
    h->version = le16(image + HDR_VERSION);
    if (h->version < BOOT_PROTOCOL_MIN)
        return err_plain(ENOEXEC, "bzImage boot protocol %u.%02u is too old (need 2.12)",
                         h->version >> 8, h->version & 0xff);
    h->xloadflags = le16(image + HDR_XLOADFLAGS);
    if (!(h->xloadflags & XLF_KERNEL_64))
        return err_plain(ENOEXEC, "bzImage has no 64-bit entry point");
    h->loadflags = image[HDR_LOADFLAGS];
    h->initrd_addr_max = le32(image + HDR_INITRD_ADDR_MAX);
    h->cmdline_size = le32(image + HDR_CMDLINE_SIZE);
    h->pref_address = le64(image + HDR_PREF_ADDRESS);
    h->init_size = le32(image + HDR_INIT_SIZE);
    setup_sects = image[HDR_SETUP_SECTS] ? image[HDR_SETUP_SECTS] : 4;
    h->setup_len = (size_t)(setup_sects + 1) * 512;
    if (h->setup_len >= len)
        return err_plain(ENOEXEC, "bzImage is truncated (setup of %zu bytes, file of %zu)",
                         h->setup_len, len);
    h->header_end = (size_t)HDR_JUMP + 2 + image[HDR_JUMP + 1];
    if (h->header_end > h->setup_len || h->header_end > ZERO_PAGE_SIZE)
        return err_plain(ENOEXEC, "bzImage setup header is malformed");
    return 0;
}

static int place_initrd(const struct guest_memory *mem, const struct x86_boot_request *req,
                        const struct bzimage_header *h, uint64_t kernel_end, uint64_t *addr)
{
    /* The decompressor runs at max(load address, pref_address) and needs
     * init_size bytes there: the initrd must stay clear of it. */
    uint64_t busy = h->pref_address > X86_HIGH_MEMORY ? h->pref_address : X86_HIGH_MEMORY;
    uint64_t min_addr = busy + h->init_size;
    uint64_t limit = (uint64_t)h->initrd_addr_max + 1;

    if (min_addr < kernel_end)
        min_addr = kernel_end;
    return x86_place_initrd(mem, req, limit, min_addr, addr);
}

/* The zero page the 64-bit entry finds at RSI: the setup header (header:
 * the image's first header_end bytes, fields from 0x1f1 on), then what a
 * boot loader fills in: command line, initrd, RSDP, memory map. */
static int write_zero_page(const struct guest_memory *mem, const struct x86_boot_request *req,
                           const uint8_t *header, size_t header_end, uint32_t cmdline_size,
                           uint64_t initrd_addr)
{
    uint8_t zp[ZERO_PAGE_SIZE];
    struct e820_entry e820[BP_E820_MAX];
    unsigned n;
    size_t cmdline_len = req->cmdline ? strlen(req->cmdline) : 0;

    if (cmdline_size && cmdline_len > cmdline_size)
        return err_plain(E2BIG, "kernel command line of %zu bytes exceeds this kernel's %u",
                         cmdline_len, cmdline_size);
    memset(zp, 0, sizeof(zp));
    memcpy(zp + HDR_SETUP_SECTS, header + HDR_SETUP_SECTS, header_end - HDR_SETUP_SECTS);
    put_le(zp + BP_VID_MODE, VID_MODE_NORMAL, 2);
    zp[HDR_TYPE_OF_LOADER] = LOADER_UNDEFINED;
    zp[HDR_LOADFLAGS] |= LOADFLAG_CAN_USE_HEAP;
    put_le(zp + HDR_HEAP_END_PTR, HEAP_END, 2);
    put_le(zp + HDR_CMD_LINE_PTR, (uint32_t)X86_CMDLINE_ADDR, 4);
    put_le(zp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_addr, 4);
    put_le(zp + HDR_RAMDISK_SIZE, (uint32_t)req->initrd_len, 4);
    put_le(zp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32), 4);
    put_le(zp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)req->initrd_len >> 32), 4);
    put_le(zp + BP_EXT_CMD_LINE_PTR, 0, 4);
    put_le(zp + BP_ACPI_RSDP_ADDR, req->rsdp_gpa, 8);
    n = x86_e820_build(mem, e820, BP_E820_MAX);
    zp[BP_E820_ENTRIES] = (uint8_t)n;
    memcpy(zp + BP_E820_TABLE, e820, n * sizeof(e820[0]));
    return guest_write(mem, X86_ZERO_PAGE_ADDR, zp, sizeof(zp));
}

/* Long mode on the identity map, RIP at a 64-bit entry, RSI at the zero
 * page, as the boot protocol's 64-bit entry wants the CPU. */
static int enter_long_mode(const struct guest_memory *mem, uint64_t entry,
                           struct x86_cpu_state *bsp)
{
    int r = x86_write_identity_page_tables(mem);

    if (r < 0)
        return r;
    x86_flat_segments(bsp, 1);
    bsp->cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    bsp->cr3 = X86_PML4_ADDR;
    bsp->cr4 = X86_CR4_PAE;
    bsp->efer = X86_EFER_LME | X86_EFER_LMA;
    bsp->rip = entry;
    bsp->rsi = X86_ZERO_PAGE_ADDR;
    bsp->rsp = X86_BOOT_STACK_TOP;
    return 0;
}

/* Linux x86's COMMAND_LINE_SIZE (2048 with its NUL), fixed for the
 * architecture: what a bzImage's header says in cmdline_size. A vmlinux
 * has no header to say it; a longer line would be cut short by the
 * kernel without a word, so it is refused here, as for a bzImage. */
#define LINUX_X86_CMDLINE_MAX 2047

int x86_vmlinux_enter(const struct guest_memory *mem, const struct x86_boot_request *req,
                      uint64_t initrd_addr, uint64_t entry, struct x86_cpu_state *bsp)
{
    /* No setup header in a vmlinux: the one a boot loader would have
     * read from its bzImage, with what the kernel itself looks at (the
     * boot flag and magic; version 2.12, the protocol spoken here). */
    uint8_t header[HDR_MIN_END];
    int r;

    memset(header, 0, sizeof(header));
    put_le(header + HDR_BOOT_FLAG, 0xaa55, 2);
    memcpy(header + HDR_MAGIC, "HdrS", 4);
    put_le(header + HDR_VERSION, BOOT_PROTOCOL_MIN, 2);
    put_le(header + HDR_XLOADFLAGS, XLF_KERNEL_64, 2);
    r = write_zero_page(mem, req, header, sizeof(header), LINUX_X86_CMDLINE_MAX, initrd_addr);
    return r < 0 ? r : enter_long_mode(mem, entry, bsp);
}

int x86_bzimage_load(const struct guest_memory *mem, const struct x86_boot_request *req,
                     struct x86_cpu_state *bsp)
{
    struct bzimage_header h;
    size_t kernel_bytes;
    uint64_t initrd_addr;
    int r;

    r = bzimage_parse(req->kernel, req->kernel_len, &h);
    if (r < 0)
        return r;
    kernel_bytes = req->kernel_len - h.setup_len;
    if (guest_write(mem, X86_HIGH_MEMORY, req->kernel + h.setup_len, kernel_bytes) < 0)
        return err_plain(ENOMEM, "kernel of %zu KiB does not fit in guest memory",
                         kernel_bytes >> 10);
    r = place_initrd(mem, req, &h, X86_HIGH_MEMORY + kernel_bytes, &initrd_addr);
    if (r == 0)
        r = write_zero_page(mem, req, req->kernel, h.header_end, h.cmdline_size, initrd_addr);
    return r < 0 ? r : enter_long_mode(mem, X86_HIGH_MEMORY + ENTRY_64_OFFSET, bsp);
}
