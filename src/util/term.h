/* Makes a guest's console text safe to show on the user's terminal: drops
 * escape sequences (CSI, OSC/DCS/APC/PM/SOS strings, two- and three-byte
 * ESC sequences, their 8-bit C1 forms) and control characters other than
 * newline and tab. CR LF becomes LF and a lone CR a newline, so no text can
 * be hidden by being written over. UTF-8 passes through (its continuation
 * bytes are not mistaken for C1 controls). Streams: a sequence may be split
 * across calls. */
#ifndef SMOLVM_UTIL_TERM_H
#define SMOLVM_UTIL_TERM_H

#include <stddef.h>
#include <stdint.h>

struct term_strip {
    int state;
    unsigned utf8_left; /* continuation bytes still expected */
    size_t string_len;  /* bytes of the OSC/DCS... string so far */
    int pending_cr;
};

/* Writes the kept bytes of in to out (room for len bytes, plus one for a
 * carriage return pending from the previous call); returns their count. */
size_t term_strip(struct term_strip *t, const uint8_t *in, size_t len, uint8_t *out);
/* The end of the text: a carriage return still pending. Returns 0 or 1
 * byte written to out. */
size_t term_strip_end(struct term_strip *t, uint8_t *out);

#endif
