#include "util/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"

#define CHUNK (1u << 20)

bool hash_is_hex(const char *text)
{
    return strspn(text, "0123456789abcdef") == 64 && text[64] == 0;
}

int hash_file(const char *path, char hex[HASH_HEX])
{
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    unsigned char digest[32];
    uint8_t *buf = malloc(CHUNK);
    int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;
    ssize_t n;

    if (fd < 0)
        r = err_set(errno, "'%s'", path);
    else if (!h || !buf || !EVP_DigestInit_ex(h, EVP_sha256(), NULL))
        r = err_set(ENOMEM, "hash");
    while (r == 0 && (n = read(fd, buf, CHUNK)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = err_set(errno, "reading '%s'", path);
        else
            EVP_DigestUpdate(h, buf, (size_t)n);
    }
    if (r == 0)
        EVP_DigestFinal_ex(h, digest, NULL);
    for (int i = 0; r == 0 && i < 32; i++)
        sprintf(hex + 2 * i, "%02x", digest[i]);
    if (fd >= 0)
        close(fd);
    free(buf);
    EVP_MD_CTX_free(h);
    return r;
}
