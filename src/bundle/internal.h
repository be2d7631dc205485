/* What bundle.c and memory.c share. */
#ifndef SMOLVM_BUNDLE_INTERNAL_H
#define SMOLVM_BUNDLE_INTERNAL_H

#include "bundle/format.h"
#include "util/file.h"

struct bundle_writer {
    char *path, *tmp_path;
    int fd;
    uint64_t end; /* where the next section may start */
    struct bundle_section sections[BUNDLE_MAX_SECTIONS];
    unsigned count;
};

struct bundle {
    char *path;
    struct mapped_file file;
    struct bundle_section sections[BUNDLE_MAX_SECTIONS];
    unsigned count;
};

int bundle_write_at(struct bundle_writer *w, uint64_t offset, const void *data, size_t len)
    __attribute__((warn_unused_result));
/* Appends a table entry at the next aligned offset; NULL (message set)
 * when full or the name is taken. */
struct bundle_section *bundle_new_section(struct bundle_writer *w, const char *name,
                                          enum bundle_encoding enc);
const struct bundle_section *bundle_section(const struct bundle *b, const char *name);
int bundle_verify(const struct bundle *b, const void *data, size_t len,
                  const uint8_t expected[SHA256_BYTES], const char *what)
    __attribute__((warn_unused_result));

/* zstd level of compressed sections (RAM chunks use their own). */
#define BUNDLE_ZSTD_LEVEL 3

/* The section, verified, with its sizes checked against what its encoding
 * says (a zstd frame records its content size); NULL, message set. */
const struct bundle_section *bundle_checked_section(const struct bundle *b, const char *name);

#endif
