/* The .smolmachine container: one file of named sections behind a header
 * with a section table. Every section carries a SHA-256 (the memory
 * section one per chunk) and the table carries one of its own, so a reader
 * verifies what it uses and nothing more. Sections start page-aligned.
 *
 *   0     header: magic "SMOLMACH", version, section count, file size,
 *         the section table, SHA-256 of all that; 4 KiB
 *   4096  sections, each at a 4 KiB boundary
 *
 * A writer builds the file under a temporary name, fsyncs it and renames it
 * into place: a crash leaves the old file or the new one, never half. */
#ifndef SMOLVM_BUNDLE_BUNDLE_H
#define SMOLVM_BUNDLE_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/memory.h"

#define BUNDLE_NAME_MAX 24

enum bundle_encoding {
    BUNDLE_RAW = 0,    /* the bytes as they are (mmap-able) */
    BUNDLE_ZSTD = 1,   /* one zstd frame */
    BUNDLE_MEMORY = 2, /* guest RAM in independently compressed chunks, zero chunks elided */
};

/* Called now and then during long work: done of total bytes. */
typedef void (*bundle_progress_fn)(void *opaque, uint64_t done, uint64_t total);

struct bundle_writer;

int bundle_writer_open(const char *path, struct bundle_writer **out)
    __attribute__((warn_unused_result));
int bundle_add(struct bundle_writer *w, const char *name, const void *data, size_t len,
               enum bundle_encoding enc) __attribute__((warn_unused_result));
int bundle_add_file(struct bundle_writer *w, const char *name, const char *path,
                    enum bundle_encoding enc) __attribute__((warn_unused_result));
/* The chunk size bundle_add_memory writes (MEMORY_CHUNK; a test sets the
 * 512 KiB older smolvm wrote). */
extern size_t bundle_memory_chunk_size;
int bundle_add_memory(struct bundle_writer *w, const char *name, const struct guest_memory *mem,
                      bundle_progress_fn progress, void *opaque) __attribute__((warn_unused_result));
/* Copies a section of another bundle as it is stored (no re-encoding). */
struct bundle;
int bundle_copy_section(struct bundle_writer *w, const struct bundle *src, const char *name)
    __attribute__((warn_unused_result));
/* The file being written (w keeps it: read it, do not close it) and
 * where its sections end so far: bytes written stay as they are. */
int bundle_writer_file(const struct bundle_writer *w, uint64_t *end);
/* A file read once and removed (a migration's, streamed as it is
 * written): its commit does not sync it to the disk, which can take as
 * long as the rest of a migration's pause. */
void bundle_writer_scratch(struct bundle_writer *w);
/* Writes the header, syncs, renames into place; frees w either way. */
int bundle_writer_commit(struct bundle_writer *w) __attribute__((warn_unused_result));
/* Drops the temporary file; frees w. */
void bundle_writer_abort(struct bundle_writer *w);

struct bundle;

/* Opens the file and checks its header and section table; each section's
 * hash is checked on the bytes as they are read (into private memory: a
 * file changed or truncated under the reader is a corrupt bundle). */
int bundle_open(const char *path, struct bundle **out) __attribute__((warn_unused_result));
/* 1 when the file starts with the bundle magic (it is a bundle or a
 * corrupt one, never anything else), 0 when not; <0, message set. */
int bundle_probe(const char *path) __attribute__((warn_unused_result));
void bundle_close(struct bundle *b);
bool bundle_has(const struct bundle *b, const char *name);
/* A metadata section's bytes, decoded and verified, in a malloc'd buffer
 * (plus a NUL after them, for text). Capped by kind (config 1 MiB, layers
 * 4 MiB, state 16 MiB, signature 4 KiB, any other 16 MiB): larger is
 * refused (-EFBIG) before anything is read or decompressed. */
int bundle_read(const struct bundle *b, const char *name, uint8_t **data, size_t *len)
    __attribute__((warn_unused_result));
/* A name for a section's decoded content (caches are keyed by it): the hex
 * SHA-256 of its stored bytes' SHA-256, its encoding and its decoded size.
 * 0, or -ENOENT without such a section. */
int bundle_section_key(const struct bundle *b, const char *name, char key[65]);
/* Decodes and verifies a section into a new file at path (mode 0600),
 * sparse where the content is zeros. */
int bundle_extract(const struct bundle *b, const char *name, const char *path)
    __attribute__((warn_unused_result));
/* Fills guest RAM laid out as it was saved (same regions) from a
 * BUNDLE_MEMORY section, verifying each chunk. */
int bundle_load_memory(const struct bundle *b, const char *name, const struct guest_memory *mem)
    __attribute__((warn_unused_result));

/* The key that names a BUNDLE_MEMORY section's content (its hash, which
 * covers every chunk's); -ENOENT when there is no such section. */
int bundle_memory_key(const struct bundle *b, const char *name, char key[65])
    __attribute__((warn_unused_result));
/* Decodes a BUNDLE_MEMORY section into fd, a file of mem->total bytes (the
 * regions laid end to end), verifying each chunk; zero chunks are left as
 * they are (holes in a fresh file). */
int bundle_unpack_memory(const struct bundle *b, const char *name,
                         const struct guest_memory *mem, int fd) __attribute__((warn_unused_result));

/* A BUNDLE_MEMORY section's index, checked against mem's layout, and its
 * chunks decoded one by one on demand (as a restored guest first touches
 * them): each read into private memory, its hash checked there and
 * decoded from those bytes. The bundle must outlive the image. */
struct bundle_memory_image;
int bundle_memory_image_read(const struct bundle *b, const char *name,
                             const struct guest_memory *mem, struct bundle_memory_image **out)
    __attribute__((warn_unused_result));
size_t bundle_memory_image_chunks(const struct bundle_memory_image *img);
/* Chunk i's place: its offset in the RAM laid end to end, its length, and
 * where it lies in mem (the mem the image was read for). */
void bundle_memory_image_place(const struct bundle_memory_image *img, size_t i, uint64_t *at,
                               size_t *len, uint8_t **host);
/* Whether chunk i is all zero (left out of the bundle: nothing to decode). */
bool bundle_memory_image_zero(const struct bundle_memory_image *img, size_t i);
/* What decoding chunks needs (a buffer for a chunk's stored bytes, a zstd
 * context), kept by a thread that decodes many: nothing is allocated (and
 * faulted in) per chunk. */
struct bundle_chunk_decoder;
int bundle_chunk_decoder_new(struct bundle_chunk_decoder **out) __attribute__((warn_unused_result));
void bundle_chunk_decoder_free(struct bundle_chunk_decoder *d);
/* Reads chunk i's stored bytes into d and checks their hash: nothing is
 * decoded before (a chunk that fails it is never decoded into dst, room
 * for its length). 0 with *zero set: an all-zero chunk, dst untouched. A
 * stored (raw) chunk is read straight into dst, whole. */
int bundle_memory_image_begin(const struct bundle_memory_image *img,
                              struct bundle_chunk_decoder *d, size_t i, uint8_t *dst,
                              bool *zero) __attribute__((warn_unused_result));
/* Decodes d's chunk on into its dst until at least upto bytes are out
 * (zstd blocks: up to 128 KiB more), or all: *ready, the bytes out. Once
 * all are, the frame must end there with the stored bytes. -EINVAL
 * (message naming the chunk): corrupt; a zero chunk is ready whole. */
int bundle_chunk_decode_to(struct bundle_chunk_decoder *d, size_t upto, size_t *ready)
    __attribute__((warn_unused_result));
/* Begins and decodes chunk i whole into dst with d; -EINVAL (message
 * naming the chunk): corrupt. */
int bundle_memory_image_decode(const struct bundle_memory_image *img,
                               struct bundle_chunk_decoder *d, size_t i, uint8_t *dst,
                               bool *zero) __attribute__((warn_unused_result));
/* Pages of one chunk: bit p (of word p / 64), its page p (a chunk holds
 * at most 128: MEMORY_CHUNK_MAX). */
struct bundle_chunk_pages {
    uint64_t bits[2];
};
/* Reads, checks and decodes the count chunks listed straight into their
 * place in mem (a few threads; RAM nobody else touches yet: no guest runs,
 * no userfaultfd is registered there). pages (NULL: every chunk whole):
 * of chunks[k] only the pages pages[k] names are placed (the chunk is
 * still checked whole, and decoded aside); the others stay as they were.
 * A chunk that fails its check is said (-EINVAL); what was decoded before
 * stays. */
int bundle_memory_image_load(struct bundle_memory_image *img, const size_t *chunks,
                             const struct bundle_chunk_pages *pages, size_t count)
    __attribute__((warn_unused_result));
void bundle_memory_image_free(struct bundle_memory_image *img);

#endif
