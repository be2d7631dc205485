#include "bundle/bundle.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "bundle/format.h"
#include "bundle/internal.h"
#include "util/err.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/le.h"

/* Sections read into memory are small (config, state); files (disks) are
 * streamed by stream.c. */
#define BUNDLE_READ_MAX (1ull << 30)

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

int bundle_copy_section(struct bundle_writer *w, const struct bundle *src, const char *name)
{
    const struct bundle_section *from = bundle_section(src, name);
    struct bundle_section *s;

    if (!from)
        return err_plain(ENOENT, "'%s' has no '%s' section", src->path, name);
    /* A memory section's hash covers its index; its chunks carry their own
     * and every reader checks both, so the copy is checked where it is used.
     * Its offsets are within the section: the bytes move as they are. */
    if (from->encoding != BUNDLE_MEMORY &&
        bundle_verify(src, src->file.data + from->offset, from->stored, from->sha256, name) < 0)
        return -EINVAL;
    s = bundle_new_section(w, name, (enum bundle_encoding)from->encoding);
    if (!s)
        return -ENOSPC;
    s->stored = from->stored;
    s->size = from->size;
    memcpy(s->sha256, from->sha256, SHA256_BYTES);
    w->end = s->offset + s->stored;
    return bundle_write_at(w, s->offset, src->file.data + from->offset, from->stored);
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

int bundle_writer_commit(struct bundle_writer *w)
{
    uint8_t header[BUNDLE_HEADER_SIZE];
    int r;

    encode_header(w, header);
    /* Data first, then the header that makes it a bundle, then the name. */
    r = ftruncate(w->fd, (off_t)w->end) < 0 ? err_set(errno, "bundle: sizing") : 0;
    if (r == 0 && fdatasync(w->fd) < 0)
        r = err_set(errno, "syncing '%s'", w->tmp_path);
    if (r == 0)
        r = bundle_write_at(w, 0, header, sizeof(header));
    if (r == 0 && fsync(w->fd) < 0)
        r = err_set(errno, "syncing '%s'", w->tmp_path);
    if (r == 0 && rename(w->tmp_path, w->path) < 0)
        r = err_set(errno, "renaming '%s' to '%s'", w->tmp_path, w->path);
    if (r == 0)
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
        s->offset > b->file.len || s->stored > b->file.len - s->offset)
        return err_plain(EINVAL, "'%s' is corrupt: section '%s' lies outside the file", b->path,
                         s->name);
    for (const struct bundle_section *o = b->sections; o < s; o++)
        if (strcmp(o->name, s->name) == 0)
            return err_plain(EINVAL, "'%s' is corrupt: two sections named '%s'", b->path,
                             s->name);
    return 0;
}

static int parse_header(struct bundle *b)
{
    const uint8_t *h = b->file.data;
    uint8_t digest[SHA256_BYTES];
    uint32_t version;
    size_t table_end;

    if (b->file.len < BUNDLE_HEADER_SIZE || memcmp(h, BUNDLE_MAGIC, 8) != 0)
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
    if (le64(h + 16) != b->file.len)
        return err_plain(EINVAL, "'%s' is truncated or padded: %llu bytes, header says %llu",
                         b->path, (unsigned long long)b->file.len,
                         (unsigned long long)le64(h + 16));
    for (unsigned i = 0; i < b->count; i++)
        if (parse_entry(b, h + HEADER_FIXED + (size_t)i * ENTRY_SIZE, &b->sections[i]) < 0)
            return -EINVAL;
    return 0;
}

int bundle_open(const char *path, struct bundle **out)
{
    struct bundle *b = calloc(1, sizeof(*b));
    int r;

    if (!b)
        return err_set(ENOMEM, "bundle");
    b->path = strdup(path);
    /* Mapped: a start from the memory cache reads the header, config and
     * state, never the memory chunks. */
    r = b->path ? file_map_lazy(path, "bundle", &b->file) : err_set(ENOMEM, "bundle");
    if (r == 0)
        r = parse_header(b);
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
    file_unmap(&b->file);
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

const struct bundle_section *bundle_checked_section(const struct bundle *b, const char *name)
{
    const struct bundle_section *s = bundle_section(b, name);
    const uint8_t *stored;

    if (!s) {
        err_plain(ENOENT, "'%s' has no '%s' section", b->path, name);
        return NULL;
    }
    stored = b->file.data + s->offset;
    if (s->encoding == BUNDLE_MEMORY || (s->encoding == BUNDLE_RAW && s->size != s->stored) ||
        (s->encoding == BUNDLE_ZSTD &&
         ZSTD_getFrameContentSize(stored, s->stored) != (unsigned long long)s->size)) {
        err_plain(EINVAL, "'%s' is corrupt: section '%s' has a bad size", b->path, name);
        return NULL;
    }
    if (bundle_verify(b, stored, s->stored, s->sha256, name) < 0)
        return NULL;
    return s;
}

int bundle_read(const struct bundle *b, const char *name, uint8_t **data, size_t *len)
{
    const struct bundle_section *s = bundle_checked_section(b, name);
    const uint8_t *stored;
    uint8_t *buf;
    size_t n;

    if (!s)
        return -EINVAL;
    if (s->size > BUNDLE_READ_MAX)
        return err_plain(EFBIG, "'%s': section '%s' is too large to load (%llu bytes)", b->path,
                         name, (unsigned long long)s->size);
    stored = b->file.data + s->offset;
    buf = malloc(s->size + 1);
    if (!buf)
        return err_set(ENOMEM, "'%s': section '%s' (%llu bytes)", b->path, name,
                       (unsigned long long)s->size);
    if (s->encoding == BUNDLE_RAW) {
        memcpy(buf, stored, s->size);
    } else {
        n = ZSTD_decompress(buf, s->size, stored, s->stored);
        if (ZSTD_isError(n) || n != s->size) {
            free(buf);
            return err_plain(EINVAL, "'%s' is corrupt: section '%s' does not decompress", b->path,
                             name);
        }
    }
    buf[s->size] = 0;
    *data = buf;
    *len = s->size;
    return 0;
}

int bundle_section_key(const struct bundle *b, const char *name, char key[65])
{
    const struct bundle_section *s = bundle_section(b, name);
    if (!s)
        return err_plain(ENOENT, "'%s' has no '%s' section", b->path, name);
    hash_to_hex(s->sha256, key);
    return 0;
}
