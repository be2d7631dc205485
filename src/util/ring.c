#include "util/ring.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

int ring_init(struct ring *r, size_t cap)
{
    *r = (struct ring){.buf = malloc(cap), .cap = cap};
    return r->buf ? 0 : err_set(ENOMEM, "console buffer");
}

void ring_free(struct ring *r)
{
    free(r->buf);
    r->buf = NULL;
}

size_t ring_put(struct ring *r, const void *buf, size_t len)
{
    size_t room = r->cap - r->len, take = len < room ? len : room;
    size_t end = (r->start + r->len) % (r->cap ? r->cap : 1);
    size_t first = take < r->cap - end ? take : r->cap - end;

    memcpy(r->buf + end, buf, first);
    memcpy(r->buf, (const uint8_t *)buf + first, take - first);
    r->len += take;
    r->dropped += len - take;
    return take;
}

size_t ring_peek(const struct ring *r, const uint8_t **span)
{
    size_t to_end = r->cap - r->start;

    *span = r->buf + r->start;
    return r->len < to_end ? r->len : to_end;
}

void ring_consume(struct ring *r, size_t n)
{
    r->len -= n;
    r->start = r->len ? (r->start + n) % r->cap : 0;
}

void ring_drop_all(struct ring *r)
{
    r->dropped += r->len;
    r->len = 0;
    r->start = 0;
}
