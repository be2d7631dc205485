/* An x86-64 ELF vmlinux as a PVH boot loader sees it: its loadable
 * segments and the XEN_ELFNOTE_PHYS32_ENTRY note. */
#ifndef SMOLVM_ARCH_X86_ELF_H
#define SMOLVM_ARCH_X86_ELF_H

#include <stddef.h>
#include <stdint.h>

#define ELF_KERNEL_MAX_SEGMENTS 16

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
    uint64_t end;       /* highest paddr + memsz over all segments */
};

/* Checks every header, segment and note against the file's size (with
 * overflow checks); a malformed file gets a message, never a bad read. */
int elf_kernel_parse(const uint8_t *image, size_t len, struct elf_kernel *out)
    __attribute__((warn_unused_result));

#endif
