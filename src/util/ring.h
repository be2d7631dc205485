/* A bounded byte queue that never waits: what does not fit is dropped and
 * counted. Not locked: its owner serialises access. One producer may copy
 * in while one consumer writes out of the span ring_peek() gave, as long
 * as ring_put() and ring_consume() are serialised. */
#ifndef SMOLVM_UTIL_RING_H
#define SMOLVM_UTIL_RING_H

#include <stddef.h>
#include <stdint.h>

struct ring {
    uint8_t *buf;
    size_t cap;
    size_t start; /* first queued byte */
    size_t len;
    uint64_t dropped; /* bytes that found the queue full, ever */
};

int ring_init(struct ring *r, size_t cap) __attribute__((warn_unused_result));
void ring_free(struct ring *r);
/* Queues what fits of buf; the rest counts as dropped. Returns the bytes queued. */
size_t ring_put(struct ring *r, const void *buf, size_t len);
/* The oldest queued bytes that lie in one piece; their count. */
size_t ring_peek(const struct ring *r, const uint8_t **span);
/* Forgets the n oldest bytes (n <= queued). */
void ring_consume(struct ring *r, size_t n);
/* Forgets everything queued, counting it as dropped. */
void ring_drop_all(struct ring *r);

#endif
