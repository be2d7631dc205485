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

/* Bytes as `ls -h` shows them: "512", "1.5K", "12K", "1.0G" (binary
 * units, rounded up; one decimal below 10). */
#define SIZE_TEXT_MAX 8
void size_format(uint64_t bytes, char out[SIZE_TEXT_MAX]);

#endif
