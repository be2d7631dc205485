#include "util/size.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/err.h"

static int suffix_shift(const char *s, unsigned *shift)
{
    static const char units[] = "KMGTPE";
    const char *u;

    if (*s == '\0') {
        *shift = 0;
        return 0;
    }
    u = strchr(units, toupper((unsigned char)*s));
    if (!u) {
        if (strcasecmp(s, "B") == 0) {
            *shift = 0;
            return 0;
        }
        return -1;
    }
    *shift = 10u * (unsigned)(u - units + 1);
    s++;
    if (*s == 'i' || *s == 'I')
        s++;
    if (*s == 'B' || *s == 'b')
        s++;
    return *s == '\0' ? 0 : -1;
}

int size_parse(const char *text, uint64_t default_unit, uint64_t *out)
{
    uint64_t value = 0, multiplier;
    const char *p = text;
    unsigned shift;

    if (!text || !isdigit((unsigned char)*p))
        return err_plain(EINVAL, "invalid size '%s'", text ? text : "");
    for (; isdigit((unsigned char)*p); p++) {
        if (__builtin_mul_overflow(value, 10, &value) ||
            __builtin_add_overflow(value, (uint64_t)(*p - '0'), &value))
            return err_plain(ERANGE, "size '%s' is too large", text);
    }
    if (suffix_shift(p, &shift) < 0)
        return err_plain(EINVAL, "invalid size '%s' (use a suffix K, M, G or T)", text);
    multiplier = (*p == '\0') ? default_unit : (uint64_t)1 << shift;
    if (__builtin_mul_overflow(value, multiplier, out))
        return err_plain(ERANGE, "size '%s' is too large", text);
    return 0;
}

void size_format(uint64_t bytes, char out[SIZE_TEXT_MAX])
{
    static const char units[] = "KMGTPE";
    unsigned u = 0;
    long double scale = 1024;

    if (bytes < 1024) {
        snprintf(out, SIZE_TEXT_MAX, "%u", (unsigned)bytes);
        return;
    }
    while (u < 5 && (long double)bytes / scale >= 1024)
        scale *= 1024, u++;
    long double v = (long double)bytes / scale, tenths = ceill(v * 10), whole = ceill(v);
    if (tenths < 100)
        snprintf(out, SIZE_TEXT_MAX, "%.1Lf%c", tenths / 10, units[u]);
    else if (whole < 1024 || u == 5)
        snprintf(out, SIZE_TEXT_MAX, "%.0Lf%c", whole, units[u]);
    else
        snprintf(out, SIZE_TEXT_MAX, "1.0%c", units[u + 1]);
}
