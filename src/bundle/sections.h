/* Every section a .smolmachine holds, by name: the one list the writer
 * (machine/save.c), the starter (machine/start.c), the store's import and
 * the reader's size limits (bundle.c) go by. A bundle has at most one of
 * each, but "disk.N" and "layer.N" (N from 0). */
#ifndef SMOLVM_BUNDLE_SECTIONS_H
#define SMOLVM_BUNDLE_SECTIONS_H

#include <stdbool.h>
#include <stdio.h>

#include "bundle/bundle.h"

#define SECTION_CONFIG "config"       /* the VM's config, JSON (core/config.h) */
#define SECTION_KERNEL "kernel"       /* the kernel booted, as given */
#define SECTION_INITRD "initrd"       /* the initrd, zstd */
#define SECTION_STATE "state"         /* vCPU, VM and device state (core/state.c) */
#define SECTION_MEMORY "memory"       /* guest RAM (BUNDLE_MEMORY) */
#define SECTION_LAYERS "layers"       /* the table of disks carried as layers (layers.h) */
#define SECTION_SIGNATURE "signature" /* ed25519 over every other section (signature.h) */
/* Optional: the pages a start of the saved state touched before its first
 * output (machine/workingset.h's encoding), for a first start to decode
 * before the guest runs. */
#define SECTION_WORKINGSET "workingset"
#define SECTION_WORKINGSET_MAX (1u << 20)
#define SECTION_DISK_PREFIX "disk."   /* disk.N: disk N as its whole content, zstd */
#define SECTION_LAYER_PREFIX "layer." /* layer.N: one layer's file, zstd */

/* "disk.N" / "layer.N" into name. */
static inline void section_disk(char name[BUNDLE_NAME_MAX + 1], unsigned n)
{
    snprintf(name, BUNDLE_NAME_MAX + 1, SECTION_DISK_PREFIX "%u", n);
}

static inline void section_layer(char name[BUNDLE_NAME_MAX + 1], size_t n)
{
    snprintf(name, BUNDLE_NAME_MAX + 1, SECTION_LAYER_PREFIX "%zu", n);
}

/* Whether b holds a saved state (starting it resumes). */
bool bundle_has_state(const struct bundle *b);

/* A bundle at to holding only from's config, saved state and memory (as
 * stored): what a store instance resumes from. */
int bundle_copy_state(const char *from, const char *to) __attribute__((warn_unused_result));

#endif
