/* The setup header of a bzImage (Documentation/arch/x86/boot.rst), parsed
 * and checked. */
#ifndef SMOLVM_ARCH_X86_BZIMAGE_H
#define SMOLVM_ARCH_X86_BZIMAGE_H

#include <stddef.h>
#include <stdint.h>

struct bzimage_header {
    uint16_t version;
    uint8_t loadflags;
    uint16_t xloadflags;
    uint32_t initrd_addr_max;
    uint32_t cmdline_size;
    uint64_t pref_address;
    uint32_t init_size;
    size_t setup_len;  /* bytes before the protected-mode kernel */
    size_t header_end; /* file offset just past the setup header */
};

/* Fails with a message on a truncated file, a missing "HdrS" magic, a
 * protocol older than 2.12 or a kernel without the 64-bit entry point. */
int bzimage_parse(const uint8_t *image, size_t len, struct bzimage_header *out)
    __attribute__((warn_unused_result));

#endif
