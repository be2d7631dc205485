/* Snapshot state as bytes: a growable little-endian writer and a bounds-
 * checked reader. A reader that runs past its end, or a writer that cannot
 * grow, goes into a failed state that sticks, so a sequence of gets or puts
 * is checked once at the end: a truncated or hostile state blob can make a
 * restore fail, never read out of bounds. */
#ifndef SMOLVM_UTIL_BLOB_H
#define SMOLVM_UTIL_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blob {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* out of memory */
};

void blob_put(struct blob *b, const void *src, size_t len);
void blob_put_u8(struct blob *b, uint8_t v);
void blob_put_u16(struct blob *b, uint16_t v);
void blob_put_u32(struct blob *b, uint32_t v);
void blob_put_u64(struct blob *b, uint64_t v);
/* A length-prefixed record: tag, then bytes. */
void blob_put_record(struct blob *b, uint32_t tag, const void *src, uint32_t len);
/* Starts a record whose length is known only once its contents are put;
 * blob_end_record() fills it in. Returns the mark to pass there. */
size_t blob_begin_record(struct blob *b, uint32_t tag);
void blob_end_record(struct blob *b, size_t mark);
void blob_free(struct blob *b);

struct blob_reader {
    const uint8_t *p;
    size_t left;
    bool failed; /* read past the end, or a value out of range */
};

static inline struct blob_reader blob_reader(const void *data, size_t len)
{
    return (struct blob_reader){.p = data, .left = len};
}

/* Copies len bytes, or zeroes dst and fails. */
bool blob_get(struct blob_reader *r, void *dst, size_t len);
uint8_t blob_get_u8(struct blob_reader *r);
uint16_t blob_get_u16(struct blob_reader *r);
uint32_t blob_get_u32(struct blob_reader *r);
uint64_t blob_get_u64(struct blob_reader *r);
/* The next record: its tag and a reader over its bytes. false at the end or
 * when the record claims more bytes than there are (r fails then). */
bool blob_next_record(struct blob_reader *r, uint32_t *tag, struct blob_reader *body);
/* A boolean/enum/count read back must be in [0, max]; out of range fails r. */
uint32_t blob_get_bounded(struct blob_reader *r, uint32_t max);

#endif
