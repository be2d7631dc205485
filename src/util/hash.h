/* SHA-256: of bytes, of a stream fed piece by piece, of files (as the
 * lowercase hex that names them in the layer store and caches). On
 * nettle: no global state to set up, so a start's first hash costs what
 * hashing costs (OpenSSL's first call built its provider tables: most of a
 * millisecond on every start). */
#ifndef SMOLVM_UTIL_HASH_H
#define SMOLVM_UTIL_HASH_H

#include <nettle/sha2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HASH_BYTES 32
#define HASH_HEX 65 /* 64 digits and the NUL */

struct hash_state {
    struct sha256_ctx ctx;
};

void hash_begin(struct hash_state *h);
void hash_add(struct hash_state *h, const void *data, size_t len);
void hash_end(struct hash_state *h, uint8_t digest[HASH_BYTES]);
void hash_bytes(const void *data, size_t len, uint8_t digest[HASH_BYTES]);
void hash_to_hex(const uint8_t digest[HASH_BYTES], char hex[HASH_HEX]);

/* Whether text is exactly 64 lowercase hex digits: a hash's name. */
bool hash_is_hex(const char *text);

/* 0, or a negative errno with the message set. */
int hash_file(const char *path, char hex[HASH_HEX]) __attribute__((warn_unused_result));

#endif
