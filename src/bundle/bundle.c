#include "bundle/bundle.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "bundle/format.h"
#include "bundle/internal.h"
#include "bundle/sections.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/le.h"

/* Sections read whole into memory are metadata, each capped by kind (a
 * bundle of a few KiB must not make the reader allocate a GiB: the limits
 * are checked against the declared size before anything is read or
 * decompressed, and the decompressor cannot write past the declared size).
 * Real bundles need far less: a config is a few KiB, a layer table about
 * 300 bytes per layer, a saved state tens of KiB per vCPU. Files (disks,
 * kernel, initrd) and RAM are streamed by stream.c and memory.c. */
static const struct section_limit {
    const char *name;
    uint64_t max;
} section_limits[] = {
    {SECTION_CONFIG, 1ull << 20},
    {SECTION_LAYERS, 4ull << 20},
    {SECTION_STATE, 16ull << 20},
    {SECTION_SIGNATURE, 4096},
    {SECTION_WORKINGSET, SECTION_WORKINGSET_MAX},
};
#define SECTION_READ_MAX_OTHER (16ull << 20)

/* ---- writing ---- */

int bundle_writer_open(const char *path, struct bundle_writer **out)
{
    struct bundle_writer *w = calloc(1, sizeof(*w));

    if (!w)
        return err_set(ENOMEM, "bundle");
    w->path = strdup(path);
    if (!w->path || asprintf(&w->tmp_path, "%s.tmp-%d", path, (int)getpid()) < 0) {
        free(w->path);
        free(w);
        return err_set(ENOMEM, "bundle");
    }
    w->fd = file_create_exclusive(w->tmp_path, 0644);
    if (w->fd < 0) {
        int r = w->fd;
        free(w->tmp_path);
        free(w->path);
        free(w);
        return r;
    }
    w->end = BUNDLE_HEADER_SIZE;
    *out = w;
    return 0;
}

int bundle_write_at(struct bundle_writer *w, uint64_t offset, const void *data, size_t len)
{
    const uint8_t *p = data;

    while (len > 0) {
        ssize_t n = pwrite(w->fd, p, len, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return err_set(n < 0 ? errno : EIO, "writing '%s'", w->tmp_path);
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

struct bundle_section *bundle_new_section(struct bundle_writer *w, const char *name,
                                          enum bundle_encoding enc)
{
    struct bundle_section *s;

    if (w->count == BUNDLE_MAX_SECTIONS || strlen(name) > BUNDLE_NAME_MAX) {
        err_plain(ENOSPC, "bundle: cannot add section '%s'", name);
        return NULL;
    }
    for (unsigned i = 0; i < w->count; i++)
        if (strcmp(w->sections[i].name, name) == 0) {
            err_plain(EEXIST, "bundle: two sections named '%s'", name);
            return NULL;
        }
    /* Guest RAM and the saved vCPU and device state hold the guest's
     * secrets: a bundle that carries them is its owner's only, like the
     * RAM cache (before any byte of them is written). */
    if ((enc == BUNDLE_MEMORY || strcmp(name, SECTION_STATE) == 0) && fchmod(w->fd, 0600) < 0) {
        err_set(errno, "bundle: '%s'", w->tmp_path);
        return NULL;
    }
    s = &w->sections[w->count++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->encoding = enc;
    s->offset = (w->end + BUNDLE_ALIGN - 1) / BUNDLE_ALIGN * BUNDLE_ALIGN;
    return s;
}

int bundle_add(struct bundle_writer *w, const char *name, const void *data, size_t len,
               enum bundle_encoding enc)
{
    struct bundle_section *s = bundle_new_section(w, name, enc);
    void *packed = NULL;
    const void *bytes = data;
    size_t stored = len;
    int r;

    if (!s)
        return -ENOSPC;
    if (enc == BUNDLE_ZSTD) {
        size_t cap = ZSTD_compressBound(len);
        packed = malloc(cap ? cap : 1);
        if (!packed)
            return err_set(ENOMEM, "bundle: compressing '%s'", name);
        stored = ZSTD_compress(packed, cap, data, len, BUNDLE_ZSTD_LEVEL);
        if (ZSTD_isError(stored)) {
            free(packed);
            return err_plain(EIO, "bundle: zstd: %s", ZSTD_getErrorName(stored));
        }
        bytes = packed;
    } else if (enc != BUNDLE_RAW) {
        return err_plain(EINVAL, "bundle: bad encoding for '%s'", name);
    }
    s->stored = stored;
    s->size = len;
    hash_bytes(bytes, stored, s->sha256);
    r = bundle_write_at(w, s->offset, bytes, stored);
    w->end = s->offset + stored;
    free(packed);
    return r;
}

/* The bytes are copied piece by piece through private memory and hashed
 * as they go: what is written is what was checked. A memory section's hash
 * covers its index only; its chunks carry their own and every reader
 * checks both, so that copy is checked where it is used. Its offsets are
 * within the section: the bytes move as they are. */
int bundle_copy_section(struct bundle_writer *w, const struct bundle *src, const char *name)
{
    const struct bundle_section *from = bundle_section(src, name);
    struct bundle_section *s;
    struct hash_state hash;
    uint8_t digest[SHA256_BYTES], *buf;
    int r = 0;

    if (!from)
        return err_plain(ENOENT, "'%s' has no '%s' section", src->path, name);
    s = bundle_new_section(w, name, (enum bundle_encoding)from->encoding);
    if (!s)
        return -ENOSPC;
    if (!(buf = malloc(BUNDLE_PIECE)))
        return err_set(ENOMEM, "bundle: copying '%s'", name);
    s->stored = from->stored;
    s->size = from->size;
    memcpy(s->sha256, from->sha256, SHA256_BYTES);
    w->end = s->offset + s->stored;
    hash_begin(&hash);
    for (uint64_t at = 0; r == 0 && at < from->stored;) {
        size_t n = from->stored - at < BUNDLE_PIECE ? (size_t)(from->stored - at) : BUNDLE_PIECE;
        r = bundle_pread(src, from->offset + at, buf, n);
        hash_add(&hash, buf, n);
        if (r == 0)
            r = bundle_write_at(w, s->offset + at, buf, n);
        at += n;
    }
    hash_end(&hash, digest);
    free(buf);
    if (r == 0 && from->encoding != BUNDLE_MEMORY && memcmp(digest, from->sha256, SHA256_BYTES))
        r = err_plain(EINVAL, "'%s' is corrupt: %s fails its checksum", src->path, name);
    return r;
}

int bundle_writer_file(const struct bundle_writer *w, uint64_t *end)
{
    *end = w->end;
    return w->fd;
}

static void encode_header(const struct bundle_writer *w, uint8_t *h)
{
    uint8_t *e = h + HEADER_FIXED;

    memset(h, 0, BUNDLE_HEADER_SIZE);
    memcpy(h, BUNDLE_MAGIC, 8);
    put_le(h + 8, BUNDLE_VERSION, 4);
    put_le(h + 12, w->count, 4);
    put_le(h + 16, w->end, 8);
    for (unsigned i = 0; i < w->count; i++, e += ENTRY_SIZE) {
        const struct bundle_section *s = &w->sections[i];
        memcpy(e, s->name, strlen(s->name));
        put_le(e + 24, s->encoding, 4);
        put_le(e + 32, s->offset, 8);
        put_le(e + 40, s->stored, 8);
        put_le(e + 48, s->size, 8);
        memcpy(e + 56, s->sha256, SHA256_BYTES);
    }
    hash_bytes(h, (size_t)(e - h), e);
}

static int sync_dir_of(const char *path)
{
    char *copy = strdup(path);
    int fd, r = 0;

    if (!copy)
        return err_set(ENOMEM, "bundle");
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        r = err_set(errno, "syncing the folder of '%s'", path);
    if (fd >= 0)
        close(fd);
    free(copy);
    return r;
}

static void writer_free(struct bundle_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    free(w->tmp_path);
    free(w->path);
    free(w);
}

void bundle_writer_scratch(struct bundle_writer *w)
{
    w->scratch = true;
}

int bundle_writer_commit(struct bundle_writer *w)
{
    uint8_t header[BUNDLE_HEADER_SIZE];
    bool sync = !w->scratch;
    int r;

    encode_header(w, header);
    /* Data first, then the header that makes it a bundle, then the name. */
    r = ftruncate(w->fd, (off_t)w->end) < 0 ? err_set(errno, "bundle: sizing") : 0;
    if (r == 0 && sync && fdatasync(w->fd) < 0)
        r = err_set(errno, "syncing '%s'", w->tmp_path);
    if (r == 0)
        r = bundle_write_at(w, 0, header, sizeof(header));
    if (r == 0 && sync && fsync(w->fd) < 0)
        r = err_set(errno, "syncing '%s'", w->tmp_path);
    if (r == 0 && rename(w->tmp_path, w->path) < 0)
        r = err_set(errno, "renaming '%s' to '%s'", w->tmp_path, w->path);
    if (r == 0 && sync)
        r = sync_dir_of(w->path);
    if (r < 0)
        unlink(w->tmp_path);
    writer_free(w);
    return r;
}

void bundle_writer_abort(struct bundle_writer *w)
{
    if (!w)
        return;
    unlink(w->tmp_path);
    writer_free(w);
}

/* ---- reading ---- */

/* Nothing of a bundle is mapped: another process may write the file or
 * truncate it while it is read (a shared mapping turns that into bytes
 * changing after their hash was checked, or SIGBUS). Every byte used is
 * read into private memory first, its hash checked there, and that same
 * copy is what gets used. */

void (*bundle_read_hook)(const struct bundle *b, uint64_t offset, size_t len);

int bundle_pread(const struct bundle *b, uint64_t offset, void *buf, size_t len)
{
    uint8_t *p = buf;

    for (size_t done = 0; done < len;) {
        ssize_t n = pread(b->fd, p + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_set(errno, "reading '%s'", b->path);
        if (n == 0)
            return err_plain(EINVAL, "'%s' is corrupt: it shrank while being read", b->path);
        done += (size_t)n;
    }
    if (bundle_read_hook)
        bundle_read_hook(b, offset, len);
    return 0;
}

static int parse_entry(struct bundle *b, const uint8_t *e, struct bundle_section *s)
{
    memcpy(s->name, e, BUNDLE_NAME_MAX);
    s->name[BUNDLE_NAME_MAX] = 0;
    s->encoding = le32(e + 24);
    s->offset = le64(e + 32);
    s->stored = le64(e + 40);
    s->size = le64(e + 48);
    memcpy(s->sha256, e + 56, SHA256_BYTES);
    if (!s->name[0] || s->encoding > BUNDLE_MEMORY || s->offset < BUNDLE_HEADER_SIZE ||
        s->offset > b->len || s->stored > b->len - s->offset)
        return err_plain(EINVAL, "'%s' is corrupt: section '%s' lies outside the file", b->path,
                         s->name);
    for (const struct bundle_section *o = b->sections; o < s; o++)
        if (strcmp(o->name, s->name) == 0)
            return err_plain(EINVAL, "'%s' is corrupt: two sections named '%s'", b->path,
                             s->name);
    return 0;
}

/* h: the header as read (private), file_len: the file's size then. */
static int parse_header(struct bundle *b, const uint8_t *h, uint64_t file_len)
{
    uint8_t digest[SHA256_BYTES];
    uint32_t version;
    size_t table_end;

    if (file_len < BUNDLE_HEADER_SIZE || memcmp(h, BUNDLE_MAGIC, 8) != 0)
        return err_plain(EINVAL, "'%s' is not a .smolmachine bundle", b->path);
    version = le32(h + 8);
    if (version != BUNDLE_VERSION)
        return err_plain(ENOTSUP, "'%s' is bundle version %u; this smolvm reads version %d",
                         b->path, version, BUNDLE_VERSION);
    b->count = le32(h + 12);
    if (b->count > BUNDLE_MAX_SECTIONS)
        return err_plain(EINVAL, "'%s' is corrupt: %u sections", b->path, b->count);
    table_end = HEADER_FIXED + (size_t)b->count * ENTRY_SIZE;
    hash_bytes(h, table_end, digest);
    if (memcmp(digest, h + table_end, SHA256_BYTES) != 0)
        return err_plain(EINVAL, "'%s' is corrupt: its header fails its checksum", b->path);
    if (le64(h + 16) != file_len)
        return err_plain(EINVAL, "'%s' is truncated or padded: %llu bytes, header says %llu",
                         b->path, (unsigned long long)file_len, (unsigned long long)le64(h + 16));
    b->len = file_len;
    for (unsigned i = 0; i < b->count; i++)
        if (parse_entry(b, h + HEADER_FIXED + (size_t)i * ENTRY_SIZE, &b->sections[i]) < 0)
            return -EINVAL;
    return 0;
}

int bundle_probe(const char *path)
{
    char magic[8];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, magic, sizeof(magic), 0);

    if (n < 0) {
        int r = err_set(errno, "'%s'", path);
        if (fd >= 0)
            close(fd);
        return r;
    }
    close(fd);
    return n == (ssize_t)sizeof(magic) && memcmp(magic, BUNDLE_MAGIC, 8) == 0;
}

int bundle_open(const char *path, struct bundle **out)
{
    struct bundle *b = calloc(1, sizeof(*b));
    uint8_t header[BUNDLE_HEADER_SIZE] = {0};
    struct stat st;
    int r = 0;

    if (!b)
        return err_set(ENOMEM, "bundle");
    b->fd = -1;
    if (!(b->path = strdup(path)))
        r = err_set(ENOMEM, "bundle");
    if (r == 0 && (b->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        r = err_set(errno, "bundle '%s'", path);
    if (r == 0 && fstat(b->fd, &st) < 0)
        r = err_set(errno, "bundle '%s'", path);
    if (r == 0 && !S_ISREG(st.st_mode))
        r = err_plain(EINVAL, "'%s' is not a .smolmachine bundle (not a file)", path);
    if (r == 0 && st.st_size >= BUNDLE_HEADER_SIZE)
        r = bundle_pread(b, 0, header, sizeof(header));
    if (r == 0)
        r = parse_header(b, header, (uint64_t)st.st_size);
    if (r < 0) {
        bundle_close(b);
        return r;
    }
    *out = b;
    return 0;
}

void bundle_close(struct bundle *b)
{
    if (!b)
        return;
    if (b->fd >= 0)
        close(b->fd);
    free(b->path);
    free(b);
}

const struct bundle_section *bundle_section(const struct bundle *b, const char *name)
{
    for (unsigned i = 0; i < b->count; i++)
        if (strcmp(b->sections[i].name, name) == 0)
            return &b->sections[i];
    return NULL;
}

bool bundle_has(const struct bundle *b, const char *name)
{
    return bundle_section(b, name) != NULL;
}

int bundle_verify(const struct bundle *b, const void *data, size_t len,
                  const uint8_t expected[SHA256_BYTES], const char *what)
{
    uint8_t digest[SHA256_BYTES];

    hash_bytes(data, len, digest);
    if (memcmp(digest, expected, SHA256_BYTES) != 0)
        return err_plain(EINVAL, "'%s' is corrupt: %s fails its checksum", b->path, what);
    return 0;
}

const struct bundle_section *bundle_sized_section(const struct bundle *b, const char *name)
{
    const struct bundle_section *s = bundle_section(b, name);

    if (!s) {
        err_plain(ENOENT, "'%s' has no '%s' section", b->path, name);
        return NULL;
    }
    if (s->encoding == BUNDLE_MEMORY || (s->encoding == BUNDLE_RAW && s->size != s->stored)) {
        err_plain(EINVAL, "'%s' is corrupt: section '%s' has a bad size", b->path, name);
        return NULL;
    }
    return s;
}

uint64_t bundle_read_limit(const char *name)
{
    for (size_t i = 0; i < sizeof(section_limits) / sizeof(section_limits[0]); i++)
        if (strcmp(section_limits[i].name, name) == 0)
            return section_limits[i].max;
    return SECTION_READ_MAX_OTHER;
}

int bundle_read(const struct bundle *b, const char *name, uint8_t **data, size_t *len)
{
    const struct bundle_section *s = bundle_sized_section(b, name);
    uint64_t limit = bundle_read_limit(name);
    uint8_t *stored = NULL, *buf = NULL;
    int r;

    if (!s)
        return -EINVAL;
    /* Before any byte is read: the declared size, and what a frame of
     * that size can take stored. */
    if (s->size > limit || s->stored > ZSTD_compressBound(limit))
        return err_plain(EFBIG, "'%s' is corrupt: section '%s' is larger than %llu KiB", b->path,
                         name, (unsigned long long)(limit >> 10));
    if (!(stored = malloc(s->stored ? s->stored : 1)) || !(buf = malloc(s->size + 1))) {
        free(stored);
        return err_set(ENOMEM, "'%s': section '%s'", b->path, name);
    }
    r = bundle_pread(b, s->offset, stored, s->stored);
    if (r == 0)
        r = bundle_verify(b, stored, s->stored, s->sha256, name);
    if (r == 0 && s->encoding == BUNDLE_RAW) {
        memcpy(buf, stored, s->size);
    } else if (r == 0) {
        /* dst holds the declared size: a frame that says less than it
         * holds fails here instead of growing. */
        size_t n = ZSTD_getFrameContentSize(stored, s->stored) == s->size
                       ? ZSTD_decompress(buf, s->size, stored, s->stored)
                       : (size_t)-1;
        if (n == (size_t)-1 || ZSTD_isError(n) || n != s->size)
            r = err_plain(EINVAL, "'%s' is corrupt: section '%s' does not decompress", b->path,
                          name);
    }
    free(stored);
    if (r < 0) {
        free(buf);
        return r;
    }
    buf[s->size] = 0;
    *data = buf;
    *len = s->size;
    return 0;
}

int bundle_section_key(const struct bundle *b, const char *name, char key[65])
{
    const struct bundle_section *s = bundle_section(b, name);
    uint8_t what[SHA256_BYTES + 12], digest[SHA256_BYTES];

    if (!s)
        return err_plain(ENOENT, "'%s' has no '%s' section", b->path, name);
    /* The stored bytes' hash alone does not name the content: the same
     * bytes declared raw instead of zstd decode to something else, and a
     * hostile bundle could plant that under a genuine bundle's key. */
    memcpy(what, s->sha256, SHA256_BYTES);
    put_le(what + SHA256_BYTES, s->encoding, 4);
    put_le(what + SHA256_BYTES + 4, s->size, 8);
    hash_bytes(what, sizeof(what), digest);
    hash_to_hex(digest, key);
    return 0;
}
