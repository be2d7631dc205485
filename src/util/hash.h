/* SHA-256 of files, as the lowercase hex that names them in the layer
 * store and caches. */
#ifndef SMOLVM_UTIL_HASH_H
#define SMOLVM_UTIL_HASH_H

#include <stdbool.h>

#define HASH_HEX 65 /* 64 digits and the NUL */

/* 0, or a negative errno with the message set. */
/* Whether text is exactly 64 lowercase hex digits: a hash's name. */
bool hash_is_hex(const char *text);

int hash_file(const char *path, char hex[HASH_HEX]) __attribute__((warn_unused_result));

#endif
