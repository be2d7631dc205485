/* Booting a bzImage without its in-guest decompressor: the compressed
 * vmlinux inside it (xz, zstd or gzip) is unpacked once on the host, kept
 * in a cache keyed by the bzImage's content, and booted through its PVH
 * entry. Every later boot of the same kernel skips the decompression that
 * dominates a microVM's time to init. */
#ifndef SMOLVM_ARCH_X86_UNPACK_H
#define SMOLVM_ARCH_X86_UNPACK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

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

/* Knowing a kernel file by its identity instead of its bytes: hashing an
 * 8 MiB bzImage costs 5 ms natively but 130-390 ms in a TCG L1, on every
 * boot (and twice on a jailed one: the plan outside, the VMM inside).
 * Once a kernel file has been hashed and unpacked, its identity -- device,
 * inode, size, modification and change times -- names the unpacked
 * vmlinux through a link in the cache, "file-v2-<identity>" ->
 * "vmlinux-v2-<sha256>". Any write to the file changes its change time
 * (which no user can set), so a changed kernel is never known by a stale
 * name. A file changed in the last X86_KERNEL_SETTLED_SECONDS is not
 * recorded: a second write within the same tick of the file system's
 * clock would not change its times (a kernel being rebuilt is hashed on
 * every boot, as before). */
#define X86_KERNEL_SETTLED_SECONDS 2

/* The unpacked vmlinux (a malloc'd path) the kernel file at path is known
 * to unpack to, or NULL (not recorded, changed since, or gone from the
 * cache). *before gets the file's stat, to hand to
 * x86_unpacked_kernel_remember() once its bytes are read: st_ino 0 when
 * it is not to be recorded (none, or changed in the last
 * X86_KERNEL_SETTLED_SECONDS before this look). Nothing of the file is
 * read. */
char *x86_unpacked_kernel_known(const char *path, const char *cache_dir, struct stat *before);

/* Records that the kernel file at path (as *before saw it, before its
 * bytes were read) unpacks to unpacked (a path in cache_dir): only if the
 * file was settled then and is the same now. Any failure (a read-only cache in the
 * jail): nothing recorded, nothing said. */
void x86_unpacked_kernel_remember(const char *path, const struct stat *before,
                                  const char *cache_dir, const char *unpacked);

/* $XDG_CACHE_HOME/smolvm/kernels, or ~/.cache/smolvm/kernels; NULL when
 * neither variable is set. malloc'd. */
char *x86_kernel_cache_dir(void);

/* Makes the cache entry of the kernel file at path now, and records its
 * identity, if it is a bzImage not known yet (run --jail: the jailed VMM
 * finds it in the cache it may read but not write, cli/jail.c, without
 * reading the file again). Known already, it costs a stat and a readlink.
 * Any failure: nothing made, nothing said (the VM boots the bzImage, or
 * says what is wrong). */
void x86_kernel_unpack_ahead(const char *path);

#endif
