#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/elf.h"
#include "arch/x86/kernel_file.h"
#include "arch/x86/layout.h"
#include "util/err.h"
#include "util/file.h"

#define IMG_LEN 0x3000
#define LOAD_PADDR 0x1000000ull
#define ENTRY 0x1000850u

struct fake {
    uint8_t img[IMG_LEN];
    Elf64_Ehdr *eh;
    Elf64_Phdr *ph;
};

/* An ELF with one PT_LOAD (0x1000 bytes at file 0x1000, 0x2000 in memory)
 * and one PT_NOTE holding Xen's PHYS32_ENTRY. */
static void make_fake(struct fake *f)
{
    Elf64_Nhdr nh = {.n_namesz = 4, .n_descsz = 4, .n_type = 18};
    uint32_t entry = ENTRY;
    uint8_t *note = f->img + 0x800;

    memset(f->img, 0, sizeof(f->img));
    f->eh = (Elf64_Ehdr *)f->img;
    memcpy(f->eh->e_ident, ELFMAG, SELFMAG);
    f->eh->e_ident[EI_CLASS] = ELFCLASS64;
    f->eh->e_ident[EI_DATA] = ELFDATA2LSB;
    f->eh->e_machine = EM_X86_64;
    f->eh->e_phoff = sizeof(Elf64_Ehdr);
    f->eh->e_phentsize = sizeof(Elf64_Phdr);
    f->eh->e_phnum = 2;
    f->ph = (Elf64_Phdr *)(f->img + sizeof(Elf64_Ehdr));
    f->ph[0] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = 0x1000, .p_paddr = LOAD_PADDR,
                            .p_filesz = 0x1000, .p_memsz = 0x2000};
    f->ph[1] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 0x800, .p_filesz = 20};
    memcpy(note, &nh, sizeof(nh));
    memcpy(note + 12, "Xen", 4);
    memcpy(note + 16, &entry, 4);
    memset(f->img + 0x1000, 0x90, 0x1000);
}

static void parses_pvh_kernel(void **state)
{
    struct fake f;
    struct elf_kernel k;
    (void)state;

    make_fake(&f);
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), 0);
    assert_int_equal(k.pvh_entry, ENTRY);
    assert_int_equal(k.count, 1);
    assert_int_equal(k.end, LOAD_PADDR + 0x2000);
}

static void rejects_malformed_files(void **state)
{
    struct fake f;
    struct elf_kernel k;
    Elf64_Nhdr *nh;
    (void)state;

    make_fake(&f);
    assert_int_equal(elf_kernel_parse(f.img, 32, &k), -ENOEXEC); /* truncated header */
    f.eh->e_phoff = IMG_LEN - 8;
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), -ENOEXEC);
    make_fake(&f);
    f.eh->e_phoff = UINT64_MAX - 8; /* offset overflow */
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), -ENOEXEC);
    make_fake(&f);
    f.ph[0].p_filesz = 0x3000; /* segment past end of file */
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), -ENOEXEC);
    make_fake(&f);
    f.ph[0].p_memsz = 0x10; /* memsz < filesz */
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), -ENOEXEC);
    make_fake(&f);
    f.ph[0].p_paddr = UINT64_MAX - 0x100; /* paddr + memsz overflows */
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), -ENOEXEC);
    make_fake(&f);
    nh = (Elf64_Nhdr *)(f.img + 0x800);
    nh->n_namesz = 0xfffffff0; /* note name runs off the segment */
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), -ENOEXEC);
    make_fake(&f);
    nh = (Elf64_Nhdr *)(f.img + 0x800);
    nh->n_type = 17; /* no PVH note */
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), -ENOEXEC);
    make_fake(&f);
    f.eh->e_machine = EM_AARCH64;
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), -ENOEXEC);
    make_fake(&f);
    f.eh->e_phnum = 0;
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), -ENOEXEC);
}

#define FAKE_INITRD_LEN 5000

/* Boots f in 64 MiB of fresh guest memory with an initrd, a command line
 * and an RSDP, as a VM does. */
static void boot_fake(const struct fake *f, struct guest_memory *mem, struct x86_cpu_state *bsp)
{
    static const uint8_t initrd[FAKE_INITRD_LEN];
    struct guest_region r[2];
    struct x86_boot_request req = {.kernel = f->img, .kernel_len = IMG_LEN, .initrd = initrd,
                                   .initrd_len = sizeof(initrd), .cmdline = "console=ttyS0",
                                   .rsdp_gpa = X86_ACPI_ADDR};

    assert_int_equal(guest_memory_alloc(mem, r, x86_ram_layout(64ull << 20, r)), 0);
    assert_int_equal(x86_boot_load(mem, &req, bsp), 0);
}

static void loads_with_start_info(void **state)
{
    struct guest_memory mem;
    struct fake f;
    struct x86_cpu_state bsp;
    uint32_t *info;
    uint64_t *mod;
    (void)state;

    make_fake(&f);
    boot_fake(&f, &mem, &bsp);
    info = gpa_ptr(&mem, X86_PVH_INFO_ADDR, 56);
    assert_int_equal(info[0], 0x336ec578);       /* magic */
    assert_int_equal(info[3], 1);                /* nr_modules */
    mod = gpa_ptr(&mem, *(uint64_t *)&info[4], 32);
    assert_int_equal(mod[1], FAKE_INITRD_LEN);
    assert_true(mod[0] >= LOAD_PADDR + 0x2000);
    assert_int_equal(*(uint64_t *)&info[6], X86_CMDLINE_ADDR);
    assert_int_equal(*(uint64_t *)&info[8], X86_ACPI_ADDR);
    assert_int_equal(*(uint8_t *)gpa_ptr(&mem, LOAD_PADDR, 1), 0x90);
    assert_int_equal(*(uint8_t *)gpa_ptr(&mem, LOAD_PADDR + 0x1800, 1), 0); /* bss zeroed */
    assert_int_equal(bsp.rip, ENTRY);
    assert_int_equal(bsp.rbx, X86_PVH_INFO_ADDR);
    assert_false(bsp.cr0 & X86_CR0_PG);
    assert_int_equal(bsp.cs.db, 1);
    assert_int_equal(bsp.cs.l, 0);
    guest_memory_free(&mem);
}

/* The fake made Linux's: a second note owned by "Linux" (as every vmlinux
 * has: its build salt), and e_entry inside the loaded bytes. */
#define LINUX_ENTRY (LOAD_PADDR + 0x10)
static void make_linux_fake(struct fake *f)
{
    Elf64_Nhdr nh = {.n_namesz = 6, .n_descsz = 4, .n_type = 0x100};
    uint8_t *note = f->img + 0x800 + 20;

    make_fake(f);
    memcpy(note, &nh, sizeof(nh));
    memcpy(note + 12, "Linux", 6);
    f->ph[1].p_filesz = 20 + 12 + 8 + 4;
    f->eh->e_entry = LINUX_ENTRY;
}

static void linux_vmlinux_has_its_64bit_entry(void **state)
{
    struct fake f;
    struct elf_kernel k;
    (void)state;

    make_linux_fake(&f);
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), 0);
    assert_int_equal(k.linux_entry, LINUX_ENTRY);
    assert_int_equal(k.pvh_entry, ENTRY);
    /* Not Linux's: its e_entry means nothing to this loader. */
    make_fake(&f);
    f.eh->e_entry = LINUX_ENTRY;
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), 0);
    assert_int_equal(k.linux_entry, 0);
    /* An entry outside the bytes loaded from the file: the PVH entry. */
    make_linux_fake(&f);
    f.eh->e_entry = LOAD_PADDR + 0x1800; /* in the zeroed part */
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), 0);
    assert_int_equal(k.linux_entry, 0);
    make_linux_fake(&f);
    f.eh->e_entry = 0xffffffff81000010ull; /* a virtual address */
    assert_int_equal(elf_kernel_parse(f.img, IMG_LEN, &k), 0);
    assert_int_equal(k.linux_entry, 0);
}

/* Linux's vmlinux is entered as its bzImage's decompressor enters it:
 * long mode on the identity map, RIP at startup_64, RSI at a zero page
 * with the command line, the initrd and the memory map; no PVH start
 * info (the PVH entry first scans 256 CPUID leaves for Xen). */
static void linux_vmlinux_boots_through_its_64bit_entry(void **state)
{
    struct guest_memory mem;
    struct fake f;
    struct x86_cpu_state bsp;
    const uint8_t *zp;
    uint32_t ramdisk;
    (void)state;

    make_linux_fake(&f);
    boot_fake(&f, &mem, &bsp);
    assert_int_equal(bsp.rip, LINUX_ENTRY);
    assert_int_equal(bsp.rsi, X86_ZERO_PAGE_ADDR);
    assert_true(bsp.cr0 & X86_CR0_PG);
    assert_true(bsp.efer & X86_EFER_LMA);
    assert_int_equal(bsp.cr3, X86_PML4_ADDR);
    assert_int_equal(bsp.cs.l, 1);
    zp = gpa_ptr(&mem, X86_ZERO_PAGE_ADDR, 4096);
    assert_memory_equal(zp + 0x202, "HdrS", 4);
    assert_int_equal(zp[0x1fe] | zp[0x1ff] << 8, 0xaa55);
    assert_int_not_equal(zp[0x210], 0); /* type_of_loader: the kernel keeps the initrd */
    assert_int_equal(*(const uint32_t *)(zp + 0x228), X86_CMDLINE_ADDR);
    memcpy(&ramdisk, zp + 0x218, 4);
    assert_true(ramdisk >= LOAD_PADDR + 0x2000);
    assert_int_equal(*(const uint32_t *)(zp + 0x21c), FAKE_INITRD_LEN);
    assert_int_equal(*(const uint64_t *)(zp + 0x070), X86_ACPI_ADDR);
    assert_true(zp[0x1e8] >= 2); /* e820 entries */
    assert_string_equal((const char *)gpa_ptr(&mem, X86_CMDLINE_ADDR, 14), "console=ttyS0");
    assert_int_equal(*(const uint32_t *)gpa_ptr(&mem, X86_PVH_INFO_ADDR, 4), 0);
    assert_int_equal(*(uint8_t *)gpa_ptr(&mem, LOAD_PADDR, 1), 0x90);
    guest_memory_free(&mem);
}

/* A vmlinux has no header saying how long a command line its kernel
 * takes: Linux x86's 2047 bytes hold, one more is refused (the kernel
 * would cut it short without a word), as a bzImage's header has it. */
static void linux_vmlinux_command_line_bounded(void **state)
{
    static char line[2049];
    struct guest_region r[2];
    struct guest_memory mem;
    struct x86_cpu_state bsp;
    struct fake f;
    (void)state;

    make_linux_fake(&f);
    memset(line, 'a', 2047);
    struct x86_boot_request req = {.kernel = f.img, .kernel_len = IMG_LEN, .cmdline = line};
    assert_int_equal(guest_memory_alloc(&mem, r, x86_ram_layout(64ull << 20, r)), 0);
    assert_int_equal(x86_boot_load(&mem, &req, &bsp), 0);
    line[2047] = 'a';
    assert_int_equal(x86_boot_load(&mem, &req, &bsp), -E2BIG);
    guest_memory_free(&mem);
}

struct initrd_file {
    int fd;
    const char *path;
};

static int read_initrd_file(void *opaque, void *dst, size_t len)
{
    struct initrd_file *f = opaque;
    return file_read_exact(f->fd, dst, len, "initrd", f->path);
}

/* An initrd read from its file straight into guest memory (no copy in
 * between) lands where the start info says, byte for byte; one that shrank
 * after it was opened is an error naming it, not a crash or a short module. */
static void initrd_is_read_into_guest_memory(void **state)
{
    char path[] = "/tmp/smolvm-test-initrd.XXXXXX";
    struct guest_region r[2];
    struct guest_memory mem;
    struct fake f;
    struct x86_cpu_state bsp;
    uint8_t bytes[9000];
    size_t size = 0;
    struct initrd_file file = {.path = path};
    struct x86_boot_request req = {.kernel = f.img, .kernel_len = IMG_LEN,
                                   .read_initrd = read_initrd_file, .read_initrd_opaque = &file,
                                   .cmdline = "console=ttyS0", .rsdp_gpa = X86_ACPI_ADDR};
    uint32_t *info;
    uint64_t *mod;
    int tmp = mkstemp(path);
    (void)state;

    for (size_t i = 0; i < sizeof(bytes); i++)
        bytes[i] = (uint8_t)(i * 7 + 1);
    assert_true(tmp >= 0);
    assert_int_equal(write(tmp, bytes, sizeof(bytes)), sizeof(bytes));
    close(tmp);
    file.fd = file_open_read(path, "initrd", &size);
    assert_true(file.fd >= 0);
    assert_int_equal(size, sizeof(bytes));
    req.initrd_len = size;
    make_fake(&f);
    assert_int_equal(guest_memory_alloc(&mem, r, x86_ram_layout(64ull << 20, r)), 0);
    assert_int_equal(x86_boot_load(&mem, &req, &bsp), 0);
    info = gpa_ptr(&mem, X86_PVH_INFO_ADDR, 56);
    assert_int_equal(info[3], 1); /* nr_modules */
    mod = gpa_ptr(&mem, *(uint64_t *)&info[4], 32);
    assert_int_equal(mod[1], sizeof(bytes));
    assert_memory_equal(gpa_ptr(&mem, mod[0], sizeof(bytes)), bytes, sizeof(bytes));

    assert_int_equal(truncate(path, 100), 0);
    assert_int_not_equal(x86_boot_load(&mem, &req, &bsp), 0);
    assert_non_null(strstr(err_msg(), "became shorter"));
    assert_non_null(strstr(err_msg(), path));
    close(file.fd);
    unlink(path);
    guest_memory_free(&mem);
}

static void segment_outside_ram_is_an_error(void **state)
{
    struct guest_region r[2];
    struct guest_memory mem;
    struct fake f;
    struct x86_cpu_state bsp;
    struct x86_boot_request req = {.kernel = f.img, .kernel_len = IMG_LEN};
    (void)state;

    make_fake(&f);
    f.ph[0].p_paddr = 0x3ff0000; /* straddles the end of 64 MiB */
    f.ph[0].p_memsz = 0x20000;
    assert_int_equal(guest_memory_alloc(&mem, r, x86_ram_layout(64ull << 20, r)), 0);
    assert_int_equal(x86_boot_load(&mem, &req, &bsp), -ENOMEM);
    guest_memory_free(&mem);
}

/* f written to a fresh file; its path in path (a mkstemp template, made
 * one again first so that a test may write several). */
static void write_fake(const struct fake *f, char *path)
{
    int fd;

    memcpy(path + strlen(path) - 6, "XXXXXX", 6);
    fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, f->img, IMG_LEN), IMG_LEN);
    close(fd);
}

/* f written to a file (path), opened as the kernel, req pointed at it and
 * 64 MiB of guest memory for it in mem. */
static void open_fake(const struct fake *f, char *path, struct x86_kernel_file *kernel,
                      struct x86_boot_request *req, struct guest_memory *mem)
{
    struct guest_region r[2];

    write_fake(f, path);
    assert_int_equal(x86_kernel_open(path, "kernel", kernel), 0);
    x86_kernel_request(kernel, req);
    assert_int_equal(guest_memory_alloc(mem, r, x86_ram_layout(64ull << 20, r)), 0);
}

/* An ELF vmlinux on disk is opened with only its headers read (no copy of
 * the file in the VMM) and its segment read from the file straight into
 * guest memory, its bss zeroed over what was there; a file that shrank
 * after it was opened is an error naming it. */
static void kernel_segments_are_read_from_the_file(void **state)
{
    char path[] = "/tmp/smolvm-test-vmlinux.XXXXXX";
    struct guest_memory mem;
    struct fake f;
    struct x86_cpu_state bsp;
    struct x86_kernel_file kernel;
    struct x86_boot_request req = {.cmdline = "console=ttyS0", .rsdp_gpa = X86_ACPI_ADDR};
    uint8_t *seg;
    (void)state;

    make_fake(&f);
    open_fake(&f, path, &kernel, &req, &mem);
    assert_null(kernel.image.data);
    assert_false(x86_kernel_is_bzimage(&kernel));
    assert_non_null(req.kernel_file);
    seg = gpa_ptr(&mem, LOAD_PADDR, 0x2000);
    memset(seg, 0xee, 0x2000);
    assert_int_equal(x86_boot_load(&mem, &req, &bsp), 0);
    assert_memory_equal(seg, f.img + 0x1000, 0x1000);
    for (unsigned i = 0x1000; i < 0x2000; i++)
        assert_int_equal(seg[i], 0);
    assert_int_equal(bsp.rip, ENTRY);

    assert_int_equal(truncate(path, 0x1800), 0); /* mid-segment */
    assert_int_not_equal(x86_boot_load(&mem, &req, &bsp), 0);
    assert_non_null(strstr(err_msg(), "became shorter"));
    assert_non_null(strstr(err_msg(), path));
    assert_null(strchr(err_msg(), '\n'));
    x86_kernel_close(&kernel);
    x86_kernel_close(&kernel); /* idempotent */
    unlink(path);
    guest_memory_free(&mem);
}

/* The same checks hold for a kernel read from its file: what lies past
 * its end is refused when it is opened, with one line naming it. */
static void hostile_kernel_file_is_refused_when_opened(void **state)
{
    char path[] = "/tmp/smolvm-test-vmlinux.XXXXXX";
    struct fake f;
    struct x86_kernel_file kernel;
    (void)state;

    make_fake(&f);
    f.ph[0].p_offset = IMG_LEN - 0x800; /* the segment runs past EOF */
    write_fake(&f, path);
    assert_int_equal(x86_kernel_open(path, "kernel", &kernel), -ENOEXEC);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "outside the file"));
    assert_null(strchr(err_msg(), '\n'));
    assert_int_equal(kernel.fd, -1);
    unlink(path);

    make_fake(&f);
    f.eh->e_phnum = ELF_KERNEL_MAX_PHDRS + 1; /* in the file, but more than read */
    write_fake(&f, path);
    assert_int_equal(x86_kernel_open(path, "kernel", &kernel), -ENOEXEC);
    assert_non_null(strstr(err_msg(), "program headers"));
    unlink(path);
}

/* A kernel file rewritten in place after it was opened and checked (its
 * headers now putting the segment over the boot structures, the entry
 * elsewhere): the load uses the headers that were checked, not a second
 * read of them (which, refused, would not even name the file). */
static void kernel_file_changed_after_open_loads_what_was_checked(void **state)
{
    char path[] = "/tmp/smolvm-test-vmlinux.XXXXXX";
    struct guest_memory mem;
    struct fake f;
    struct x86_cpu_state bsp;
    struct x86_kernel_file kernel;
    struct x86_boot_request req = {.cmdline = "console=ttyS0"};
    int fd;
    (void)state;

    make_fake(&f);
    open_fake(&f, path, &kernel, &req, &mem);
    f.ph[0].p_paddr = X86_PVH_INFO_ADDR;
    f.eh->e_entry = 0x1234; /* not used: the PVH note is */
    memset(f.img + 0x800 + 16, 0x42, 4);
    fd = open(path, O_WRONLY); /* the same file, not a new one renamed over it */
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, f.img, 0x1000, 0), 0x1000);
    close(fd);
    assert_int_equal(x86_boot_load(&mem, &req, &bsp), 0);
    assert_memory_equal(gpa_ptr(&mem, LOAD_PADDR, 0x1000), f.img + 0x1000, 0x1000);
    assert_int_equal(bsp.rip, ENTRY);
    x86_kernel_close(&kernel);
    unlink(path);
    guest_memory_free(&mem);
}

static int load_fake(const struct fake *f, uint64_t mem_bytes)
{
    struct guest_region r[2];
    struct guest_memory mem;
    struct x86_cpu_state bsp;
    struct x86_boot_request req = {.kernel = f->img, .kernel_len = IMG_LEN};
    int ret;

    assert_int_equal(guest_memory_alloc(&mem, r, x86_ram_layout(mem_bytes, r)), 0);
    ret = x86_boot_load(&mem, &req, &bsp);
    guest_memory_free(&mem);
    if (ret < 0)
        assert_null(strchr(err_msg(), '\n'));
    return ret;
}

/* Segments that would overwrite one another or the boot structures, lie
 * in the MMIO hole or outside RAM, or are larger than their file space:
 * each refused with one line, before anything is written into the guest. */
static void hostile_segments_are_refused(void **state)
{
    struct fake f;
    struct elf_kernel k;
    uint8_t *big;
    (void)state;

    make_fake(&f);
    assert_int_equal(load_fake(&f, 64ull << 20), 0);

    make_fake(&f); /* a second segment over the first one's bss */
    f.ph[1] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = 0x1000, .p_paddr = LOAD_PADDR + 0x1800,
                           .p_filesz = 0x100, .p_memsz = 0x100};
    f.eh->e_phnum = 3;
    f.ph[2] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 0x800, .p_filesz = 20};
    assert_int_equal(load_fake(&f, 64ull << 20), -ENOEXEC);
    assert_non_null(strstr(err_msg(), "overlap"));

    make_fake(&f); /* over the PVH start info and page tables */
    f.ph[0].p_paddr = X86_PVH_INFO_ADDR;
    assert_int_equal(load_fake(&f, 64ull << 20), -ENOEXEC);
    assert_non_null(strstr(err_msg(), "boot structures"));

    make_fake(&f); /* in the MMIO hole */
    f.ph[0].p_paddr = X86_VIRTIO_MMIO_BASE;
    assert_int_equal(load_fake(&f, 64ull << 20), -ENOMEM);
    assert_non_null(strstr(err_msg(), "does not fit"));

    make_fake(&f); /* larger than RAM */
    f.ph[0].p_memsz = 1ull << 30;
    assert_int_equal(load_fake(&f, 64ull << 20), -ENOMEM);

    make_fake(&f); /* more bytes from the file than the segment holds */
    f.ph[0].p_filesz = 0x1800;
    f.ph[0].p_memsz = 0x1000;
    assert_int_equal(load_fake(&f, 64ull << 20), -ENOEXEC);

    make_fake(&f); /* a note segment larger than is read, inside a larger file */
    big = calloc(1, 2 * ELF_KERNEL_MAX_NOTES);
    assert_non_null(big);
    f.ph[1].p_filesz = ELF_KERNEL_MAX_NOTES + 4;
    memcpy(big, f.img, IMG_LEN);
    assert_int_equal(elf_kernel_parse(big, 2 * ELF_KERNEL_MAX_NOTES, &k), -ENOEXEC);
    assert_non_null(strstr(err_msg(), "larger than"));
    free(big);
}

/* The oracle: Debian's own vmlinux, extracted by the test runner. */
static void parses_debian_vmlinux(void **state)
{
    const char *path = getenv("SMOLVM_TEST_VMLINUX");
    struct mapped_file file;
    struct elf_kernel k;
    (void)state;

    if (!path || file_map(path, "vmlinux", &file) < 0)
        skip();
    assert_int_equal(elf_kernel_parse(file.data, file.len, &k), 0);
    assert_int_equal(k.pvh_entry, 0x1000850);
    assert_int_equal(k.linux_entry, 0x1000000); /* phys_startup_64 */
    file_unmap(&file);
}

/* The oracle again: Debian's vmlinux read from its file lands in guest RAM
 * byte for byte as the in-memory loader puts it (every page of RAM). */
static void debian_vmlinux_loads_the_same_from_its_file(void **state)
{
    const char *path = getenv("SMOLVM_TEST_VMLINUX");
    struct guest_region r[2];
    struct guest_memory from_file, from_memory;
    struct mapped_file image;
    struct x86_kernel_file kernel;
    struct x86_cpu_state bsp_file, bsp_memory;
    struct x86_boot_request req = {.cmdline = "console=ttyS0"};
    uint64_t size = 256ull << 20;
    (void)state;

    if (!path || file_map(path, "vmlinux", &image) < 0)
        skip();
    assert_int_equal(x86_kernel_open(path, "kernel", &kernel), 0);
    x86_kernel_request(&kernel, &req);
    assert_int_equal(guest_memory_alloc(&from_file, r, x86_ram_layout(size, r)), 0);
    assert_int_equal(x86_boot_load(&from_file, &req, &bsp_file), 0);
    req = (struct x86_boot_request){.kernel = image.data, .kernel_len = image.len,
                                    .cmdline = "console=ttyS0"};
    assert_int_equal(guest_memory_alloc(&from_memory, r, x86_ram_layout(size, r)), 0);
    assert_int_equal(x86_boot_load(&from_memory, &req, &bsp_memory), 0);
    assert_memory_equal(gpa_ptr(&from_file, 0, size), gpa_ptr(&from_memory, 0, size), size);
    assert_int_equal(bsp_file.rip, bsp_memory.rip);
    x86_kernel_close(&kernel);
    file_unmap(&image);
    guest_memory_free(&from_file);
    guest_memory_free(&from_memory);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_pvh_kernel),
        cmocka_unit_test(rejects_malformed_files),
        cmocka_unit_test(loads_with_start_info),
        cmocka_unit_test(linux_vmlinux_has_its_64bit_entry),
        cmocka_unit_test(linux_vmlinux_boots_through_its_64bit_entry),
        cmocka_unit_test(linux_vmlinux_command_line_bounded),
        cmocka_unit_test(initrd_is_read_into_guest_memory),
        cmocka_unit_test(segment_outside_ram_is_an_error),
        cmocka_unit_test(kernel_segments_are_read_from_the_file),
        cmocka_unit_test(hostile_kernel_file_is_refused_when_opened),
        cmocka_unit_test(hostile_segments_are_refused),
        cmocka_unit_test(kernel_file_changed_after_open_loads_what_was_checked),
        cmocka_unit_test(parses_debian_vmlinux),
        cmocka_unit_test(debian_vmlinux_loads_the_same_from_its_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
