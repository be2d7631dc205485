/* An x86-64 ELF vmlinux as a boot loader sees it: its loadable segments,
 * the XEN_ELFNOTE_PHYS32_ENTRY note, and whether it is Linux's (a note
 * owned by "Linux"), whose e_entry is then startup_64's physical address:
 * the x86 Linux boot protocol's 64-bit entry. Only the ELF header, the
 * program headers and the note segments are read (bounded reads), never
 * the whole file: the segments go from the file straight into guest RAM. */
#ifndef SMOLVM_ARCH_X86_ELF_H
#define SMOLVM_ARCH_X86_ELF_H

#include <stddef.h>
#include <stdint.h>

#include "core/memory.h"

#define ELF_KERNEL_MAX_SEGMENTS 16
#define ELF_KERNEL_MAX_PHDRS 64
#define ELF_KERNEL_MAX_NOTES (64u << 10) /* bytes of one note segment */

struct elf_kernel_segment {
    uint64_t paddr;
    uint64_t offset;
    uint64_t filesz;
    uint64_t memsz;
};

struct elf_kernel {
    struct elf_kernel_segment segments[ELF_KERNEL_MAX_SEGMENTS];
    unsigned count;
    uint64_t pvh_entry; /* 0: no PVH note */
    /* A Linux vmlinux's 64-bit entry (its e_entry, inside the file bytes
     * of a loaded segment); 0: none, boot it through its PVH note. */
    uint64_t linux_entry;
    uint64_t end; /* highest paddr + memsz over all segments */
};

/* Where an ELF kernel's bytes come from: read() fills dst with the len
 * bytes at offset, or fails with a message naming the file (one that
 * shrank after it was opened). size is the file's size when opened: every
 * header and segment must lie inside it. Embedded in the reader's own
 * struct, which read() finds from src (so it may be moved). */
struct elf_source {
    int (*read)(const struct elf_source *src, void *dst, size_t len, uint64_t offset);
    uint64_t size;
};

/* A source over an image in memory (image must outlive the source). */
struct elf_memory_source {
    struct elf_source source;
    const uint8_t *image;
};
const struct elf_source *elf_memory_source(struct elf_memory_source *m, const uint8_t *image,
                                           size_t len);

/* Checks every header, segment and note against the file's size (with
 * overflow checks); segments that overlap one another or lie below 1 MiB
 * (the boot structures) are refused. A malformed file gets a message,
 * never a bad read. */
int elf_kernel_read(const struct elf_source *src, struct elf_kernel *out)
    __attribute__((warn_unused_result));
int elf_kernel_parse(const uint8_t *image, size_t len, struct elf_kernel *out)
    __attribute__((warn_unused_result));

/* Reads each segment of k from src straight into guest RAM at its paddr
 * and zeroes the rest of its memsz; a segment outside one RAM region is an
 * error naming it. */
int elf_kernel_load(const struct guest_memory *mem, const struct elf_source *src,
                    const struct elf_kernel *k) __attribute__((warn_unused_result));

#endif
