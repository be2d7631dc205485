#include "util/term.h"

#include <stdbool.h>

#define ESC 0x1b
#define BEL 0x07
/* A string sequence (OSC, DCS, ...) left unterminated this long is
 * abandoned: a guest must not be able to swallow all later output. */
#define STRING_MAX 4096

enum { TEXT, AFTER_ESC, ESC_INTERMEDIATE, CSI, STRING, STRING_ESC };

static bool is_final(uint8_t c) { return c >= 0x30 && c <= 0x7e; }

/* The state a sequence introducer leads to: ESC X or its C1 form 0x40+X. */
static int introduced(uint8_t c)
{
    switch (c) {
    case '[': return CSI;
    case ']': case 'P': case 'X': case '^': case '_': return STRING;
    default: return -1;
    }
}

static size_t emit(struct term_strip *t, uint8_t c, uint8_t *out)
{
    size_t n = 0;

    if (t->pending_cr) {
        t->pending_cr = 0;
        out[n++] = '\n';
        if (c == '\n')
            return n; /* CR LF: one newline */
    }
    if (c == '\r') {
        t->pending_cr = 1;
        return n;
    }
    out[n++] = c;
    return n;
}

/* A byte in text: kept, or the start of a sequence. */
static size_t text_byte(struct term_strip *t, uint8_t c, uint8_t *out)
{
    if (t->utf8_left && c >= 0x80 && c <= 0xbf) {
        t->utf8_left--;
        return emit(t, c, out);
    }
    t->utf8_left = 0;
    if (c == ESC) {
        t->state = AFTER_ESC;
        return 0;
    }
    if (c >= 0x80 && c <= 0x9f) { /* an 8-bit C1 control */
        int s = introduced((uint8_t)(c - 0x40));
        if (s >= 0) {
            t->state = s;
            t->string_len = 0;
        }
        return 0;
    }
    if (c >= 0xc2 && c <= 0xf4)
        t->utf8_left = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
    if ((c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f)
        return 0;
    return emit(t, c, out);
}

static size_t step(struct term_strip *t, uint8_t c, uint8_t *out)
{
    int s;

    switch (t->state) {
    case AFTER_ESC:
        t->state = TEXT;
        if ((s = introduced(c)) >= 0) {
            t->state = s;
            t->string_len = 0;
        } else if (c >= 0x20 && c <= 0x2f) {
            t->state = ESC_INTERMEDIATE;
        } else if (!is_final(c)) {
            return text_byte(t, c, out); /* a lone ESC: only it goes */
        }
        return 0;
    case ESC_INTERMEDIATE:
        if (c >= 0x20 && c <= 0x2f)
            return 0;
        t->state = TEXT;
        return is_final(c) ? 0 : text_byte(t, c, out);
    case CSI:
        if (c >= 0x20 && c <= 0x3f)
            return 0; /* parameters and intermediates */
        t->state = TEXT;
        return c >= 0x40 && c <= 0x7e ? 0 : text_byte(t, c, out);
    case STRING:
    case STRING_ESC:
        if (c == BEL || c == 0x9c || (t->state == STRING_ESC && c == '\\') ||
            ++t->string_len > STRING_MAX) {
            t->state = TEXT;
            return 0;
        }
        t->state = c == ESC ? STRING_ESC : STRING;
        return 0;
    default:
        return text_byte(t, c, out);
    }
}

size_t term_strip(struct term_strip *t, const uint8_t *in, size_t len, uint8_t *out)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        n += step(t, in[i], out + n);
    return n;
}

size_t term_strip_end(struct term_strip *t, uint8_t *out)
{
    size_t n = t->pending_cr ? 1 : 0;

    if (n)
        out[0] = '\n';
    t->pending_cr = 0;
    return n;
}
