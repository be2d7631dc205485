/* SHA-256 of files, as the lowercase hex that names them in the layer
 * store and caches. */
#ifndef SMOLVM_UTIL_HASH_H
#define SMOLVM_UTIL_HASH_H

#define HASH_HEX 65 /* 64 digits and the NUL */

/* 0, or a negative errno with the message set. */
int hash_file(const char *path, char hex[HASH_HEX]) __attribute__((warn_unused_result));

#endif
