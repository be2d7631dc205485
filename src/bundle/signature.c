/* The signature section: magic "SMOLSIG1", the signer's public key (32
 * bytes), the ed25519 signature (64) of a SHA-256 over a domain string
 * and every other section's table entry (name, encoding, place, sizes,
 * SHA-256) in table order. Reading a section checks it against that
 * SHA-256, so a signed table vouches for every byte. */
#include "bundle/signature.h"

#include <errno.h>
#include <fcntl.h>
#include <nettle/eddsa.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "bundle/internal.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/le.h"

#define MAGIC "SMOLSIG1"
#define KEY_BYTES ED25519_KEY_SIZE
#define SIG_BYTES ED25519_SIGNATURE_SIZE
#define PAYLOAD (8 + KEY_BYTES + SIG_BYTES)
#define DOMAIN "smolvm .smolmachine section table, signed\n"

static void table_digest(const struct bundle_section *sections, unsigned count,
                         uint8_t digest[HASH_BYTES])
{
    struct hash_state h;
    hash_begin(&h);
    hash_add(&h, DOMAIN, sizeof(DOMAIN));
    for (unsigned i = 0; i < count; i++) {
        const struct bundle_section *s = &sections[i];
        uint8_t e[4 + 8 * 3];
        if (strcmp(s->name, SIGNATURE_SECTION) == 0)
            continue;
        hash_add(&h, s->name, strnlen(s->name, BUNDLE_NAME_MAX) + 1); /* with its NUL */
        put_le(e, s->encoding, 4);
        put_le(e + 4, s->offset, 8);
        put_le(e + 12, s->stored, 8);
        put_le(e + 20, s->size, 8);
        hash_add(&h, e, sizeof(e));
        hash_add(&h, s->sha256, SHA256_BYTES);
    }
    hash_end(&h, digest);
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 32 bytes from a file of 64 hex digits (and a newline). */
static int read_key(const char *path, const char *what, uint8_t key[KEY_BYTES])
{
    char text[2 * KEY_BYTES + 2];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof(text));

    if (fd >= 0)
        close(fd);
    if (n < 0)
        return err_set(errno, "%s '%s'", what, path);
    bool ok = n == 2 * KEY_BYTES || (n == 2 * KEY_BYTES + 1 && text[2 * KEY_BYTES] == '\n');
    for (unsigned i = 0; ok && i < KEY_BYTES; i++) {
        int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
        ok = hi >= 0 && lo >= 0;
        key[i] = ok ? (uint8_t)(hi << 4 | lo) : 0;
    }
    return ok ? 0 : err_plain(EINVAL, "%s '%s' is not 64 hex digits", what, path);
}

static int write_key(const char *path, const uint8_t key[KEY_BYTES], mode_t mode)
{
    char hex[HASH_HEX];
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode), r;

    if (fd < 0)
        return err_set(errno, "'%s'", path);
    hash_to_hex(key, hex); /* 32 bytes as hex, as a digest is */
    hex[2 * KEY_BYTES] = '\n';
    r = file_write_all(fd, hex, 2 * KEY_BYTES + 1, path);
    if (r == 0 && fsync(fd) < 0)
        r = err_set(errno, "syncing '%s'", path);
    close(fd);
    if (r < 0)
        unlink(path);
    return r;
}

int bundle_keygen(const char *prefix)
{
    uint8_t priv[KEY_BYTES], pub[KEY_BYTES];
    char *key_path = NULL, *pub_path = NULL;
    int r;

    if (getrandom(priv, sizeof(priv), 0) != (ssize_t)sizeof(priv))
        return err_set(errno, "getrandom");
    ed25519_sha512_public_key(pub, priv);
    if (asprintf(&key_path, "%s.key", prefix) < 0)
        key_path = NULL;
    if (asprintf(&pub_path, "%s.pub", prefix) < 0)
        pub_path = NULL;
    if (!key_path || !pub_path)
        r = err_set(ENOMEM, "keygen");
    else if ((r = write_key(key_path, priv, 0600)) == 0 && (r = write_key(pub_path, pub, 0644)) < 0)
        unlink(key_path);
    explicit_bzero(priv, sizeof(priv));
    free(key_path);
    free(pub_path);
    return r;
}

int bundle_sign(struct bundle_writer *w, const char *key_path)
{
    uint8_t priv[KEY_BYTES], digest[HASH_BYTES], payload[PAYLOAD];
    int r = read_key(key_path, "signing key", priv);

    if (r < 0)
        return r;
    table_digest(w->sections, w->count, digest);
    memcpy(payload, MAGIC, 8);
    ed25519_sha512_public_key(payload + 8, priv);
    ed25519_sha512_sign(payload + 8, priv, sizeof(digest), digest, payload + 8 + KEY_BYTES);
    explicit_bzero(priv, sizeof(priv));
    return bundle_add(w, SIGNATURE_SECTION, payload, sizeof(payload), BUNDLE_RAW);
}

int bundle_check_signature(const struct bundle *b, const char *pub_path)
{
    uint8_t trusted[KEY_BYTES], digest[HASH_BYTES], *payload = NULL;
    size_t len = 0;
    int r = read_key(pub_path, "public key", trusted);

    if (r < 0)
        return r;
    if (!bundle_has(b, SIGNATURE_SECTION))
        return err_plain(EPERM, "'%s' is not signed", b->path);
    r = bundle_read(b, SIGNATURE_SECTION, &payload, &len);
    if (r == 0 && (len != PAYLOAD || memcmp(payload, MAGIC, 8) != 0))
        r = err_plain(EINVAL, "'%s' is corrupt: bad signature section", b->path);
    if (r == 0 && memcmp(payload + 8, trusted, KEY_BYTES) != 0)
        r = err_plain(EPERM, "'%s' is signed by another key than '%s'", b->path, pub_path);
    if (r == 0) {
        table_digest(b->sections, b->count, digest);
        if (!ed25519_sha512_verify(trusted, sizeof(digest), digest, payload + 8 + KEY_BYTES))
            r = err_plain(EPERM, "'%s': its signature does not match its contents", b->path);
    }
    free(payload);
    return r;
}
