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
    bool scratch; /* bundle_writer_scratch() */
};

struct bundle {
    char *path;
    int fd;       /* read with pread into private memory, never mapped */
    uint64_t len; /* the size the header vouches for */
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

/* Streamed sections move in pieces of this size. */
#define BUNDLE_PIECE (1u << 20)

/* All len bytes at offset into buf (private memory): a file that shrinks
 * under the reader is a corrupt bundle (-EINVAL, message set). */
int bundle_pread(const struct bundle *b, uint64_t offset, void *buf, size_t len)
    __attribute__((warn_unused_result));
/* Test seam: called after each successful bundle_pread, so a test can
 * change or truncate the file between two reads. NULL in smolvm. */
extern void (*bundle_read_hook)(const struct bundle *b, uint64_t offset, size_t len);
/* Test seam: called as a chunk is about to be decoded into guest RAM
 * (bundle_load_memory, bundle_memory_image_load). NULL in smolvm. */
extern void (*bundle_decode_hook)(const uint8_t *dst, size_t len);

/* The section, its sizes checked against what its encoding allows (its
 * hash is checked on the bytes as they are read); NULL, message set. */
const struct bundle_section *bundle_sized_section(const struct bundle *b, const char *name);
/* How many bytes bundle_read() decodes of a section of this name. */
uint64_t bundle_read_limit(const char *name);

#endif
