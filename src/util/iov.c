#include "util/iov.h"

#include <string.h>

uint64_t iov_bytes(const struct iovec *iov, int n)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    return total;
}

/* Walks the pieces of [skip, skip+len), calling visit on each. */
static void iov_walk(const struct iovec *iov, int n, uint64_t skip, uint64_t len,
                     void (*visit)(void *base, size_t len, void *ctx), void *ctx)
{
    for (int i = 0; i < n && len > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t take = iov[i].iov_len - (size_t)skip;
        if (take > len)
            take = (size_t)len;
        visit((uint8_t *)iov[i].iov_base + skip, take, ctx);
        skip = 0;
        len -= take;
    }
}

struct slice_ctx {
    struct iovec *out;
    int max, count;
};

static void slice_visit(void *base, size_t len, void *ctx)
{
    struct slice_ctx *s = ctx;
    if (s->count < s->max)
        s->out[s->count] = (struct iovec){base, len};
    s->count++;
}

int iov_slice(const struct iovec *iov, int n, uint64_t skip, uint64_t len, struct iovec *out,
              int max)
{
    struct slice_ctx s = {out, max, 0};
    iov_walk(iov, n, skip, len, slice_visit, &s);
    return s.count > max ? -1 : s.count;
}

struct copy_ctx {
    uint8_t *buf;
    int to_iov;
};

static void copy_visit(void *base, size_t len, void *ctx)
{
    struct copy_ctx *c = ctx;
    if (c->to_iov)
        memcpy(base, c->buf, len);
    else
        memcpy(c->buf, base, len);
    c->buf += len;
}

void iov_to_buf(const struct iovec *iov, int n, uint64_t skip, void *buf, size_t len)
{
    struct copy_ctx c = {buf, 0};
    iov_walk(iov, n, skip, len, copy_visit, &c);
}

void iov_from_buf(const struct iovec *iov, int n, uint64_t skip, const void *buf, size_t len)
{
    struct copy_ctx c = {(uint8_t *)buf, 1};
    iov_walk(iov, n, skip, len, copy_visit, &c);
}

static void zero_visit(void *base, size_t len, void *ctx)
{
    (void)ctx;
    memset(base, 0, len);
}

void iov_zero(const struct iovec *iov, int n, uint64_t skip, uint64_t len)
{
    iov_walk(iov, n, skip, len, zero_visit, NULL);
}

int buf_is_zero(const void *buf, size_t len)
{
    /* 64 bytes a step, four 16-byte words OR-ed, one test a step: each
     * byte read once (memcmp against zeros, or against the buffer shifted
     * by one, reads it twice) -- a live migration's round 0 checks all of
     * a guest's RAM so, and where the CPU is emulated (a nested host)
     * every load counts. */
    typedef uint64_t word __attribute__((vector_size(16)));
    const uint8_t *p = buf;

    for (; len >= 64; p += 64, len -= 64) {
        word a, b, c, d;
        memcpy(&a, p, 16);
        memcpy(&b, p + 16, 16);
        memcpy(&c, p + 32, 16);
        memcpy(&d, p + 48, 16);
        a |= b | c | d;
        if (a[0] | a[1])
            return 0;
    }
    for (; len; p++, len--)
        if (*p)
            return 0;
    return 1;
}
