/* smolvm kernel build: a Linux kernel made for smolvm's machine, built
 * from Debian's linux-source tarball with a configuration fragment (the
 * repository's kernel/micro.config, built into smolvm, or a file) on top
 * of `make allnoconfig`. The result, an ELF vmlinux booted through its
 * PVH entry (nothing to decompress), is cached under
 *   $XDG_CACHE_HOME/smolvm/kernels/KEY/{vmlinux,config,release}
 * where KEY hashes the source tarball's identity and the fragment, so it
 * is built once. A build runs niced, under a lock (a second builder waits
 * and then finds it), in a temporary folder renamed into place. */
#ifndef SMOLVM_IMAGE_KERNEL_H
#define SMOLVM_IMAGE_KERNEL_H

#include <stdbool.h>
#include <stddef.h>

#include "util/hash.h"

/* kernel/micro.config, as the repository held it when smolvm was built. */
extern const char kernel_micro_config[];

struct kernel_build_options {
    const char *config; /* "micro" or a fragment file (CONFIG_X=y lines) */
    const char *source; /* NULL: the newest /usr/src/linux-source-*.tar.xz */
    unsigned jobs;      /* make -jN; 0: the online CPUs */
    /* One line of progress at a time (what is being done, how far). */
    void (*progress)(void *opaque, const char *line);
    void *opaque;
};

struct kernel_build_result {
    char *path; /* the cached vmlinux (malloc'd) */
    char key[HASH_HEX];
    char release[64]; /* "6.1.192" */
    bool cached;      /* found built, nothing done */
};

int kernel_build(const struct kernel_build_options *o, struct kernel_build_result *out)
    __attribute__((warn_unused_result));
/* Only looks: 0 and *out filled when the kernel is cached, 1 when it would
 * have to be built (out->key filled), <0 for bad inputs (no source...). */
int kernel_build_lookup(const struct kernel_build_options *o, struct kernel_build_result *out)
    __attribute__((warn_unused_result));
void kernel_build_release(struct kernel_build_result *r);

/* ---- the pure parts (unit-tested) ---- */

/* The cache key: the recipe's version, the source's identity (its name,
 * size and modification time: hashing 140 MB on every lookup would cost
 * more than the lookup) and the fragment's bytes. */
void kernel_cache_key(const char *source_identity, const char *fragment, size_t len,
                      char key[HASH_HEX]);

/* The first option the fragment sets ("CONFIG_X=y", "CONFIG_X=123",
 * "# CONFIG_X is not set") that the resulting .config does not have so:
 * Kconfig drops an option whose dependencies are missing without a word.
 * Returns 1 and copies the fragment's line into missing, or 0 when every
 * one is there. */
int kernel_config_missing(const char *fragment, const char *dotconfig, char *missing,
                          size_t size);

/* Whether a line of make's output is one build step ("  CC      fs/x.o"):
 * what progress counts. */
bool kernel_make_step(const char *line);

#endif
