/* Booting a bzImage without its in-guest decompressor: the compressed
 * vmlinux inside it (xz, zstd or gzip) is unpacked once on the host, kept
 * in a cache keyed by the bzImage's content, and booted through its PVH
 * entry. Every later boot of the same kernel skips the decompression that
 * dominates a microVM's time to init. */
#ifndef SMOLVM_ARCH_X86_UNPACK_H
#define SMOLVM_ARCH_X86_UNPACK_H

#include <stddef.h>
#include <stdint.h>

/* Decompresses the payload of a bzImage into a malloc'd buffer. -ENOTSUP
 * when the payload's compression is not one smolvm reads, -EINVAL when it
 * is corrupt. */
int x86_bzimage_unpack(const uint8_t *image, size_t len, uint8_t **out, size_t *out_len)
    __attribute__((warn_unused_result));

/* The path (malloc'd) of the cached, unpacked vmlinux of this bzImage,
 * made on first use in cache_dir; NULL in *out_path (and 0 returned) when
 * the kernel cannot be booted that way (no PVH note, unknown compression):
 * the caller then boots the bzImage itself. */
int x86_unpacked_kernel(const uint8_t *image, size_t len, const char *cache_dir, char **out_path)
    __attribute__((warn_unused_result));

/* $XDG_CACHE_HOME/smolvm/kernels, or ~/.cache/smolvm/kernels; NULL when
 * neither variable is set. malloc'd. */
char *x86_kernel_cache_dir(void);

/* Makes the cache entry of the kernel file at path now, if it is a
 * bzImage not unpacked yet (run --jail: the jailed VMM finds it in the
 * cache it may read but not write, cli/jail.c). Any failure: nothing made,
 * nothing said (the VM boots the bzImage, or says what is wrong). */
void x86_kernel_unpack_ahead(const char *path);

#endif
