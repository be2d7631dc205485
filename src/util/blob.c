#include "util/blob.h"

#include <stdlib.h>
#include <string.h>

#include "util/le.h"

static bool reserve(struct blob *b, size_t more)
{
    size_t cap;
    uint8_t *p;

    if (b->failed)
        return false;
    if (more <= b->cap - b->len)
        return true;
    cap = b->cap ? b->cap : 256;
    while (cap - b->len < more) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void blob_put(struct blob *b, const void *src, size_t len)
{
    if (len == 0 || !reserve(b, len))
        return;
    memcpy(b->data + b->len, src, len);
    b->len += len;
}

static void put_int(struct blob *b, uint64_t v, int bytes)
{
    uint8_t buf[8];
    put_le(buf, v, bytes);
    blob_put(b, buf, (size_t)bytes);
}

void blob_put_u8(struct blob *b, uint8_t v) { put_int(b, v, 1); }
void blob_put_u16(struct blob *b, uint16_t v) { put_int(b, v, 2); }
void blob_put_u32(struct blob *b, uint32_t v) { put_int(b, v, 4); }
void blob_put_u64(struct blob *b, uint64_t v) { put_int(b, v, 8); }

void blob_put_record(struct blob *b, uint32_t tag, const void *src, uint32_t len)
{
    blob_put_u32(b, tag);
    blob_put_u32(b, len);
    blob_put(b, src, len);
}

size_t blob_begin_record(struct blob *b, uint32_t tag)
{
    blob_put_u32(b, tag);
    blob_put_u32(b, 0);
    return b->len;
}

void blob_end_record(struct blob *b, size_t mark)
{
    if (b->failed || mark < 4 || mark > b->len || b->len - mark > UINT32_MAX) {
        b->failed = true;
        return;
    }
    put_le(b->data + mark - 4, b->len - mark, 4);
}

void blob_free(struct blob *b)
{
    free(b->data);
    *b = (struct blob){0};
}

bool blob_get(struct blob_reader *r, void *dst, size_t len)
{
    if (r->failed || len > r->left) {
        r->failed = true;
        memset(dst, 0, len);
        return false;
    }
    memcpy(dst, r->p, len);
    r->p += len;
    r->left -= len;
    return true;
}

static uint64_t get_int(struct blob_reader *r, int bytes)
{
    uint8_t buf[8];
    blob_get(r, buf, (size_t)bytes);
    return get_le(buf, bytes);
}

uint8_t blob_get_u8(struct blob_reader *r) { return (uint8_t)get_int(r, 1); }
uint16_t blob_get_u16(struct blob_reader *r) { return (uint16_t)get_int(r, 2); }
uint32_t blob_get_u32(struct blob_reader *r) { return (uint32_t)get_int(r, 4); }
uint64_t blob_get_u64(struct blob_reader *r) { return get_int(r, 8); }

uint32_t blob_get_bounded(struct blob_reader *r, uint32_t max)
{
    uint32_t v = blob_get_u32(r);
    if (v > max) {
        r->failed = true;
        return 0;
    }
    return v;
}

bool blob_next_record(struct blob_reader *r, uint32_t *tag, struct blob_reader *body)
{
    uint32_t len;

    if (r->failed || r->left == 0)
        return false;
    *tag = blob_get_u32(r);
    len = blob_get_u32(r);
    if (r->failed || len > r->left) {
        r->failed = true;
        return false;
    }
    *body = blob_reader(r->p, len);
    r->p += len;
    r->left -= len;
    return true;
}
