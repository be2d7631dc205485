#include "util/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"

#define CHUNK (1u << 20)

void hash_begin(struct hash_state *h)
{
    sha256_init(&h->ctx);
}

void hash_add(struct hash_state *h, const void *data, size_t len)
{
    sha256_update(&h->ctx, len, data);
}

void hash_end(struct hash_state *h, uint8_t digest[HASH_BYTES])
{
    sha256_digest(&h->ctx, HASH_BYTES, digest);
}

void hash_bytes(const void *data, size_t len, uint8_t digest[HASH_BYTES])
{
    struct hash_state h;
    hash_begin(&h);
    hash_add(&h, data, len);
    hash_end(&h, digest);
}

void hash_to_hex(const uint8_t digest[HASH_BYTES], char hex[HASH_HEX])
{
    for (int i = 0; i < HASH_BYTES; i++)
        sprintf(hex + 2 * i, "%02x", digest[i]);
}

bool hash_is_hex(const char *text)
{
    return strspn(text, "0123456789abcdef") == 64 && text[64] == 0;
}

int hash_file(const char *path, char hex[HASH_HEX])
{
    struct hash_state h;
    uint8_t digest[HASH_BYTES], *buf = malloc(CHUNK);
    int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;
    ssize_t n;

    if (fd < 0)
        r = err_set(errno, "'%s'", path);
    else if (!buf)
        r = err_set(ENOMEM, "hash");
    hash_begin(&h);
    while (r == 0 && (n = read(fd, buf, CHUNK)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = err_set(errno, "reading '%s'", path);
        else
            hash_add(&h, buf, (size_t)n);
    }
    if (r == 0) {
        hash_end(&h, digest);
        hash_to_hex(digest, hex);
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return r;
}
