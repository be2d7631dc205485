#include "arch/x86/elf.h"

#include <elf.h>
#include <string.h>

#include "util/err.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

static int in_file(uint64_t offset, uint64_t size, size_t len)
{
    uint64_t end;
    return !__builtin_add_overflow(offset, size, &end) && end <= len;
}

static uint64_t align4(uint64_t v)
{
    return (v + 3) & ~3ull;
}

/* Walks one PT_NOTE segment looking for Xen's PHYS32_ENTRY note. */
static int scan_notes(const uint8_t *p, uint64_t size, uint64_t *entry)
{
    uint64_t off = 0;

    while (size - off >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr n;
        uint64_t name_off, desc_off, next;

        memcpy(&n, p + off, sizeof(n));
        name_off = off + sizeof(n);
        desc_off = name_off + align4(n.n_namesz);
        next = desc_off + align4(n.n_descsz);
        if (desc_off > size || next > size || next <= off)
            return err_plain(ENOEXEC, "ELF kernel has a malformed note");
        if (n.n_type == XEN_ELFNOTE_PHYS32_ENTRY && n.n_namesz == 4 &&
            memcmp(p + name_off, "Xen", 4) == 0) {
            uint32_t e32;
            uint64_t e64;
            if (n.n_descsz == 4) {
                memcpy(&e32, p + desc_off, 4);
                *entry = e32;
            } else if (n.n_descsz == 8) {
                memcpy(&e64, p + desc_off, 8);
                *entry = e64;
            } else {
                return err_plain(ENOEXEC, "ELF kernel's PVH note has %u bytes", n.n_descsz);
            }
        }
        off = next;
    }
    return 0;
}

static int add_segment(struct elf_kernel *k, const Elf64_Phdr *ph, size_t len)
{
    struct elf_kernel_segment *s;
    uint64_t end;

    if (!in_file(ph->p_offset, ph->p_filesz, len))
        return err_plain(ENOEXEC, "ELF kernel segment lies outside the file");
    if (ph->p_memsz < ph->p_filesz || __builtin_add_overflow(ph->p_paddr, ph->p_memsz, &end))
        return err_plain(ENOEXEC, "ELF kernel segment has impossible sizes");
    if (k->count == ELF_KERNEL_MAX_SEGMENTS)
        return err_plain(ENOEXEC, "ELF kernel has more than %d loadable segments",
                         ELF_KERNEL_MAX_SEGMENTS);
    s = &k->segments[k->count++];
    *s = (struct elf_kernel_segment){ph->p_paddr, ph->p_offset, ph->p_filesz, ph->p_memsz};
    if (end > k->end)
        k->end = end;
    return 0;
}

int elf_kernel_parse(const uint8_t *image, size_t len, struct elf_kernel *k)
{
    Elf64_Ehdr eh;
    int r;

    memset(k, 0, sizeof(*k));
    if (len < sizeof(eh) || memcmp(image, ELFMAG, SELFMAG) != 0)
        return err_plain(ENOEXEC, "not an ELF file");
    memcpy(&eh, image, sizeof(eh));
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
        eh.e_machine != EM_X86_64)
        return err_plain(ENOEXEC, "ELF kernel is not x86-64");
    if (eh.e_phentsize != sizeof(Elf64_Phdr) ||
        !in_file(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), len))
        return err_plain(ENOEXEC, "ELF kernel's program headers are malformed");
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, image + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type == PT_LOAD)
            r = add_segment(k, &ph, len);
        else if (ph.p_type == PT_NOTE && in_file(ph.p_offset, ph.p_filesz, len))
            r = scan_notes(image + ph.p_offset, ph.p_filesz, &k->pvh_entry);
        else if (ph.p_type == PT_NOTE)
            r = err_plain(ENOEXEC, "ELF kernel note segment lies outside the file");
        else
            r = 0;
        if (r < 0)
            return r;
    }
    if (k->count == 0)
        return err_plain(ENOEXEC, "ELF kernel has no loadable segment");
    if (!k->pvh_entry)
        return err_plain(ENOEXEC, "ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); "
                                  "boot its bzImage instead");
    return 0;
}
