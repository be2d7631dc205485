#include "arch/x86/elf.h"

#include <elf.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "util/err.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

static int in_file(uint64_t offset, uint64_t size, uint64_t len)
{
    uint64_t end;
    return !__builtin_add_overflow(offset, size, &end) && end <= len;
}

static uint64_t align4(uint64_t v)
{
    return (v + 3) & ~3ull;
}

static int read_memory(const struct elf_source *src, void *dst, size_t len, uint64_t offset)
{
    const struct elf_memory_source *m = (const void *)((const char *)src -
                                                       offsetof(struct elf_memory_source, source));

    if (!in_file(offset, len, m->source.size))
        return err_plain(EIO, "ELF image read past its end");
    memcpy(dst, m->image + offset, len);
    return 0;
}

const struct elf_source *elf_memory_source(struct elf_memory_source *m, const uint8_t *image,
                                           size_t len)
{
    *m = (struct elf_memory_source){{read_memory, len}, image};
    return &m->source;
}

/* What the notes say: the PVH entry (0: none), and whether one of them is
 * owned by "Linux" (Linux's build notes, in every vmlinux since 5.x). */
struct elf_notes {
    uint64_t pvh_entry;
    bool linux_owned;
};

static bool note_named(const uint8_t *name, uint32_t namesz, const char *want)
{
    return namesz == strlen(want) + 1 && memcmp(name, want, namesz) == 0;
}

/* Walks one PT_NOTE segment's bytes looking for Xen's PHYS32_ENTRY note
 * and for a note of Linux's. */
static int scan_notes(const uint8_t *p, uint64_t size, struct elf_notes *found)
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
        if (note_named(p + name_off, n.n_namesz, "Linux"))
            found->linux_owned = true;
        if (n.n_type == XEN_ELFNOTE_PHYS32_ENTRY && note_named(p + name_off, n.n_namesz, "Xen")) {
            uint32_t e32;
            uint64_t e64;
            if (n.n_descsz == 4) {
                memcpy(&e32, p + desc_off, 4);
                found->pvh_entry = e32;
            } else if (n.n_descsz == 8) {
                memcpy(&e64, p + desc_off, 8);
                found->pvh_entry = e64;
            } else {
                return err_plain(ENOEXEC, "ELF kernel's PVH note has %u bytes", n.n_descsz);
            }
        }
        off = next;
    }
    return 0;
}

/* Reads one PT_NOTE segment (bounded) and scans it. */
static int read_notes(const struct elf_source *src, const Elf64_Phdr *ph,
                      struct elf_notes *found)
{
    uint8_t *notes;
    int r;

    if (!in_file(ph->p_offset, ph->p_filesz, src->size))
        return err_plain(ENOEXEC, "ELF kernel note segment lies outside the file");
    if (ph->p_filesz > ELF_KERNEL_MAX_NOTES)
        return err_plain(ENOEXEC, "ELF kernel note segment is larger than %u KiB",
                         ELF_KERNEL_MAX_NOTES >> 10);
    notes = malloc(ph->p_filesz ? ph->p_filesz : 1);
    if (!notes)
        return err_set(ENOMEM, "ELF kernel notes");
    r = src->read(src, notes, ph->p_filesz, ph->p_offset);
    if (r == 0)
        r = scan_notes(notes, ph->p_filesz, found);
    free(notes);
    return r;
}

static int overlaps(const struct elf_kernel_segment *a, const struct elf_kernel_segment *b)
{
    return a->paddr < b->paddr + b->memsz && b->paddr < a->paddr + a->memsz;
}

static int add_segment(struct elf_kernel *k, const Elf64_Phdr *ph, uint64_t len)
{
    struct elf_kernel_segment s = {ph->p_paddr, ph->p_offset, ph->p_filesz, ph->p_memsz};
    uint64_t end;

    if (!in_file(ph->p_offset, ph->p_filesz, len))
        return err_plain(ENOEXEC, "ELF kernel segment lies outside the file");
    if (ph->p_memsz < ph->p_filesz || __builtin_add_overflow(ph->p_paddr, ph->p_memsz, &end))
        return err_plain(ENOEXEC, "ELF kernel segment has impossible sizes");
    if (ph->p_paddr < X86_HIGH_MEMORY)
        return err_plain(ENOEXEC, "ELF kernel segment at 0x%llx lies on the boot structures "
                                  "below 1 MiB",
                         (unsigned long long)ph->p_paddr);
    for (unsigned i = 0; i < k->count; i++)
        if (overlaps(&k->segments[i], &s))
            return err_plain(ENOEXEC, "ELF kernel segments at 0x%llx and 0x%llx overlap",
                             (unsigned long long)k->segments[i].paddr,
                             (unsigned long long)s.paddr);
    if (k->count == ELF_KERNEL_MAX_SEGMENTS)
        return err_plain(ENOEXEC, "ELF kernel has more than %d loadable segments",
                         ELF_KERNEL_MAX_SEGMENTS);
    k->segments[k->count++] = s;
    if (end > k->end)
        k->end = end;
    return 0;
}

/* A Linux vmlinux's e_entry is startup_64's physical address: it must be
 * among the bytes loaded from the file, and under 4 GiB (what the boot
 * page tables map), else the kernel boots through PVH. */
static bool entry_is_loaded(const struct elf_kernel *k, uint64_t entry)
{
    if (entry >= (1ull << 32))
        return false;
    for (unsigned i = 0; i < k->count; i++)
        if (entry >= k->segments[i].paddr && entry - k->segments[i].paddr < k->segments[i].filesz)
            return true;
    return false;
}

static int check_header(const Elf64_Ehdr *eh, uint64_t len)
{
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return err_plain(ENOEXEC, "not an ELF file");
    if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
        eh->e_machine != EM_X86_64)
        return err_plain(ENOEXEC, "ELF kernel is not x86-64");
    if (eh->e_phentsize != sizeof(Elf64_Phdr) ||
        !in_file(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), len))
        return err_plain(ENOEXEC, "ELF kernel's program headers are malformed");
    if (eh->e_phnum > ELF_KERNEL_MAX_PHDRS)
        return err_plain(ENOEXEC, "ELF kernel has more than %d program headers",
                         ELF_KERNEL_MAX_PHDRS);
    return 0;
}

int elf_kernel_read(const struct elf_source *src, struct elf_kernel *k)
{
    Elf64_Phdr ph[ELF_KERNEL_MAX_PHDRS];
    struct elf_notes notes = {0};
    Elf64_Ehdr eh;
    int r;

    memset(k, 0, sizeof(*k));
    if (src->size < sizeof(eh))
        return err_plain(ENOEXEC, "not an ELF file");
    r = src->read(src, &eh, sizeof(eh), 0);
    if (r == 0)
        r = check_header(&eh, src->size);
    if (r == 0)
        r = src->read(src, ph, eh.e_phnum * sizeof(ph[0]), eh.e_phoff);
    for (unsigned i = 0; r == 0 && i < eh.e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD)
            r = add_segment(k, &ph[i], src->size);
        else if (ph[i].p_type == PT_NOTE)
            r = read_notes(src, &ph[i], &notes);
    }
    if (r < 0)
        return r;
    if (k->count == 0)
        return err_plain(ENOEXEC, "ELF kernel has no loadable segment");
    k->pvh_entry = notes.pvh_entry;
    if (!k->pvh_entry)
        return err_plain(ENOEXEC, "ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); "
                                  "boot its bzImage instead");
    if (notes.linux_owned && entry_is_loaded(k, eh.e_entry))
        k->linux_entry = eh.e_entry;
    return 0;
}

int elf_kernel_parse(const uint8_t *image, size_t len, struct elf_kernel *k)
{
    struct elf_memory_source m;
    return elf_kernel_read(elf_memory_source(&m, image, len), k);
}

int elf_kernel_load(const struct guest_memory *mem, const struct elf_source *src,
                    const struct elf_kernel *k)
{
    for (unsigned i = 0; i < k->count; i++) {
        const struct elf_kernel_segment *s = &k->segments[i];
        uint8_t *dst = gpa_ptr(mem, s->paddr, s->memsz);
        int r;

        if (!dst)
            return err_plain(ENOMEM, "kernel segment at 0x%llx (%llu KiB) does not fit in "
                                     "guest memory",
                             (unsigned long long)s->paddr, (unsigned long long)(s->memsz >> 10));
        r = src->read(src, dst, s->filesz, s->offset);
        if (r < 0)
            return r;
        memset(dst + s->filesz, 0, s->memsz - s->filesz);
        guest_memory_mark_dirty(mem, s->paddr, s->memsz);
    }
    return 0;
}
