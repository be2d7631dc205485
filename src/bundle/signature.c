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
#include "bundle/sections.h"
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
        if (strcmp(s->name, SECTION_SIGNATURE) == 0)
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

/* Key files are hex on one line, and say what they are by their length: a
 * public key is 64 digits (32 bytes); a private key is 128, the secret
 * seed followed by its public key (as NaCl keeps an ed25519 secret key),
 * so a public key given where the private one is wanted (or the reverse)
 * is refused before anything is signed or written. */
enum key_kind { PUBLIC_KEY = KEY_BYTES, PRIVATE_KEY = 2 * KEY_BYTES };

/* The bytes of a key file: *kind says how many it held. */
static int read_key_file(const char *path, const char *what, uint8_t key[PRIVATE_KEY],
                         enum key_kind *kind)
{
    char text[2 * PRIVATE_KEY + 2];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof(text));
    size_t digits;

    if (fd >= 0)
        close(fd);
    if (n < 0)
        return err_set(errno, "%s '%s'", what, path);
    digits = n > 0 && text[n - 1] == '\n' ? (size_t)n - 1 : (size_t)n;
    bool ok = digits == 2 * PUBLIC_KEY || digits == 2 * PRIVATE_KEY;
    for (size_t i = 0; ok && i < digits / 2; i++) {
        int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
        ok = hi >= 0 && lo >= 0;
        key[i] = ok ? (uint8_t)(hi << 4 | lo) : 0;
    }
    if (!ok)
        return err_plain(EINVAL, "%s '%s' is not a smolvm key (64 or 128 hex digits)", what,
                         path);
    *kind = (enum key_kind)(digits / 2);
    return 0;
}

/* The private key in path: its seed, checked against the public half. */
static int read_private_key(const char *path, uint8_t seed[KEY_BYTES])
{
    uint8_t key[PRIVATE_KEY], pub[KEY_BYTES];
    enum key_kind kind;
    int r = read_key_file(path, "signing key", key, &kind);

    if (r == 0 && kind != PRIVATE_KEY)
        r = err_plain(EINVAL,
                      "signing key '%s' is a public key, not a private key (sign with the "
                      "PREFIX.key that 'smolvm keygen' wrote)",
                      path);
    if (r == 0) {
        ed25519_sha512_public_key(pub, key);
        if (memcmp(pub, key + KEY_BYTES, KEY_BYTES) != 0)
            r = err_plain(EINVAL, "signing key '%s' is damaged: its halves do not match", path);
    }
    memcpy(seed, key, KEY_BYTES);
    explicit_bzero(key, sizeof(key));
    return r;
}

static int read_public_key(const char *path, uint8_t pub[KEY_BYTES])
{
    uint8_t key[PRIVATE_KEY];
    enum key_kind kind;
    int r = read_key_file(path, "public key", key, &kind);

    if (r == 0 && kind != PUBLIC_KEY)
        r = err_plain(EINVAL, "'%s' is a private key; verify with its public key (PREFIX.pub)",
                      path);
    memcpy(pub, key, KEY_BYTES);
    explicit_bzero(key, sizeof(key));
    return r;
}

int bundle_check_signing_key(const char *path)
{
    uint8_t seed[KEY_BYTES];
    int r = read_private_key(path, seed);
    explicit_bzero(seed, sizeof(seed));
    return r;
}

static int write_key(const char *path, const uint8_t *key, enum key_kind kind, mode_t mode)
{
    char hex[2 * PRIVATE_KEY + 1];
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode), r;

    if (fd < 0)
        return err_set(errno, "'%s'", path);
    for (size_t i = 0; i < kind; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    hex[2 * kind] = '\n';
    r = file_write_all(fd, hex, 2 * kind + 1, path);
    explicit_bzero(hex, sizeof(hex));
    if (r == 0 && fsync(fd) < 0)
        r = err_set(errno, "syncing '%s'", path);
    close(fd);
    if (r < 0)
        unlink(path);
    return r;
}

int bundle_keygen(const char *prefix)
{
    uint8_t priv[PRIVATE_KEY], *pub = priv + KEY_BYTES;
    char *key_path = NULL, *pub_path = NULL;
    int r;

    if (getrandom(priv, KEY_BYTES, 0) != (ssize_t)KEY_BYTES)
        return err_set(errno, "getrandom");
    ed25519_sha512_public_key(pub, priv);
    if (asprintf(&key_path, "%s.key", prefix) < 0)
        key_path = NULL;
    if (asprintf(&pub_path, "%s.pub", prefix) < 0)
        pub_path = NULL;
    if (!key_path || !pub_path)
        r = err_set(ENOMEM, "keygen");
    else if ((r = write_key(key_path, priv, PRIVATE_KEY, 0600)) == 0 &&
             (r = write_key(pub_path, pub, PUBLIC_KEY, 0644)) < 0)
        unlink(key_path);
    explicit_bzero(priv, sizeof(priv));
    free(key_path);
    free(pub_path);
    return r;
}

int bundle_sign(struct bundle_writer *w, const char *key_path)
{
    uint8_t priv[KEY_BYTES], digest[HASH_BYTES], payload[PAYLOAD];
    int r = read_private_key(key_path, priv);

    if (r < 0)
        return r;
    table_digest(w->sections, w->count, digest);
    memcpy(payload, MAGIC, 8);
    ed25519_sha512_public_key(payload + 8, priv);
    ed25519_sha512_sign(payload + 8, priv, sizeof(digest), digest, payload + 8 + KEY_BYTES);
    explicit_bzero(priv, sizeof(priv));
    return bundle_add(w, SECTION_SIGNATURE, payload, sizeof(payload), BUNDLE_RAW);
}

int bundle_sign_copy(const char *from, const char *to, const char *key_path)
{
    struct bundle *b;
    struct bundle_writer *w;
    int r = bundle_check_signing_key(key_path);

    if (r == 0)
        r = bundle_open(from, &b);
    if (r < 0)
        return r;
    if ((r = bundle_writer_open(to, &w)) == 0) {
        for (unsigned i = 0; r == 0 && i < b->count; i++)
            if (strcmp(b->sections[i].name, SECTION_SIGNATURE) != 0)
                r = bundle_copy_section(w, b, b->sections[i].name);
        if (r == 0)
            r = bundle_sign(w, key_path);
        if (r == 0)
            r = bundle_writer_commit(w);
        else
            bundle_writer_abort(w);
    }
    bundle_close(b);
    return r;
}

int bundle_check_signature(const struct bundle *b, const char *pub_path)
{
    uint8_t trusted[KEY_BYTES], digest[HASH_BYTES], *payload = NULL;
    size_t len = 0;
    int r = read_public_key(pub_path, trusted);

    if (r < 0)
        return r;
    if (!bundle_has(b, SECTION_SIGNATURE))
        return err_plain(EPERM, "'%s' is not signed", b->path);
    r = bundle_read(b, SECTION_SIGNATURE, &payload, &len);
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
