/* Sizes as users type them: "256M", "1G", "4096". Whole numbers with an
 * optional binary suffix (K, M, G, T, P, E; "Ki"/"KiB" and a trailing "B"
 * accepted); fractions are refused rather than rounded. */
#ifndef SMOLVM_UTIL_SIZE_H
#define SMOLVM_UTIL_SIZE_H

#include <stdint.h>

/* Parses text into bytes. default_unit multiplies a number with no suffix
 * (1 for bytes, 1<<20 for "megabytes unless told"). Returns 0 or -EINVAL
 * (garbage, empty, negative) / -ERANGE (overflow) with err_set() called. */
int size_parse(const char *text, uint64_t default_unit, uint64_t *out)
    __attribute__((warn_unused_result));

#endif
