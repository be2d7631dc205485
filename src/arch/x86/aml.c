#include "arch/x86/aml.h"

#include <string.h>

#define PKGLEN_RESERVED 4

void aml_bytes(struct aml *a, const void *data, size_t n)
{
    if (a->overflow || n > a->cap - a->len) {
        a->overflow = 1;
        return;
    }
    memcpy(a->buf + a->len, data, n);
    a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

void aml_integer(struct aml *a, uint64_t v)
{
    uint8_t le[8];
    int width;

    if (v <= 1) {
        aml_byte(a, (uint8_t)v); /* ZeroOp, OneOp */
        return;
    }
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    if (v <= 0xff) {
        aml_byte(a, 0x0a);
        width = 1;
    } else if (v <= 0xffff) {
        aml_byte(a, 0x0b);
        width = 2;
    } else if (v <= 0xffffffffu) {
        aml_byte(a, 0x0c);
        width = 4;
    } else {
        aml_byte(a, 0x0e);
        width = 8;
    }
    aml_bytes(a, le, (size_t)width);
}

void aml_string(struct aml *a, const char *s)
{
    aml_byte(a, 0x0d);
    aml_bytes(a, s, strlen(s) + 1);
}

int aml_eisa_id(struct aml *a, const char *id)
{
    uint32_t v = 0;
    uint8_t le[4];

    if (strlen(id) != 7)
        return -1;
    for (int i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z')
            return -1;
        v = (v << 5) | (uint32_t)(id[i] - 'A' + 1);
    }
    for (int i = 3; i < 7; i++) {
        char c = id[i];
        uint32_t nibble;
        if (c >= '0' && c <= '9')
            nibble = (uint32_t)(c - '0');
        else if (c >= 'A' && c <= 'F')
            nibble = (uint32_t)(c - 'A' + 10);
        else
            return -1;
        v = (v << 4) | nibble;
    }
    /* The 32 bits are stored big-endian inside the little-endian DWord. */
    le[0] = (uint8_t)(v >> 24);
    le[1] = (uint8_t)(v >> 16);
    le[2] = (uint8_t)(v >> 8);
    le[3] = (uint8_t)v;
    aml_byte(a, 0x0c);
    aml_bytes(a, le, 4);
    return 0;
}

void aml_name_seg(struct aml *a, const char *seg4)
{
    aml_bytes(a, seg4, 4);
}

size_t aml_open(struct aml *a)
{
    static const uint8_t room[PKGLEN_RESERVED];
    size_t mark = a->len;
    aml_bytes(a, room, sizeof(room));
    return mark;
}

/* PkgLength counts its own bytes: 1 byte holds up to 63, then 1-3 extra
 * bytes carry 4 + 8*k bits. The body was written after 4 reserved bytes and
 * moves back over the ones the encoding does not need. */
void aml_close(struct aml *a, size_t mark)
{
    size_t body, total;
    int extra;

    if (a->overflow)
        return;
    body = a->len - mark - PKGLEN_RESERVED;
    for (extra = 0; extra <= 3; extra++) {
        total = body + 1 + (size_t)extra;
        if ((extra == 0 && total < 0x40) || (extra > 0 && total < (1u << (4 + 8 * extra))))
            break;
    }
    if (extra > 3) {
        a->overflow = 1;
        return;
    }
    if (extra == 0) {
        a->buf[mark] = (uint8_t)total;
    } else {
        a->buf[mark] = (uint8_t)((extra << 6) | (total & 0xf));
        for (int i = 1; i <= extra; i++)
            a->buf[mark + (size_t)i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
    }
    memmove(a->buf + mark + 1 + extra, a->buf + mark + PKGLEN_RESERVED, body);
    a->len -= (size_t)(PKGLEN_RESERVED - 1 - extra);
}
