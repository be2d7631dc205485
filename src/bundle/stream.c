/* Files as sections, streamed both ways in pieces, so a disk of any size
 * goes into a bundle and back out in a few MiB of memory: read around the
 * file's holes (SEEK_DATA/SEEK_HOLE: holes cost no I/O), compressed as one
 * zstd frame that records its content size (the reader checks it) with the
 * SHA-256 taken as the bytes are written; extracted after the section's
 * hash is checked, decompressed piece by piece, zeros left as holes. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "bundle/bundle.h"
#include "bundle/internal.h"
#include "util/err.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/iov.h"

#define PIECE BUNDLE_PIECE
#define ZSTD_WORKERS 2

static const uint8_t zeros[PIECE];

/* ---- into a bundle ---- */

struct section_out {
    struct bundle_writer *w;
    struct bundle_section *s;
    struct hash_state hash;
};

static int emit(struct section_out *o, const void *data, size_t len)
{
    if (!len)
        return 0;
    hash_add(&o->hash, data, len);
    int r = bundle_write_at(o->w, o->s->offset + o->s->stored, data, len);
    o->s->stored += len;
    return r;
}

/* The next piece of [at, end) of fd: a hole's zeros without reading, or
 * data read into buf. Its length, or -1 (message set). */
static ssize_t next_piece(int fd, uint64_t at, uint64_t end, uint8_t *buf, const uint8_t **piece,
                          const char *path)
{
    uint64_t room = end - at < PIECE ? end - at : PIECE;
    off_t data = lseek(fd, (off_t)at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) /* a hole to the end */
        data = (off_t)end;
    if (data > (off_t)at) {
        *piece = zeros;
        return (ssize_t)((uint64_t)data - at < room ? (uint64_t)data - at : room);
    }
    off_t hole = data < 0 ? -1 : lseek(fd, (off_t)at, SEEK_HOLE); /* no SEEK_DATA: all data */
    if (hole > (off_t)at && (uint64_t)hole - at < room)
        room = (uint64_t)hole - at;
    for (uint64_t done = 0; done < room;) {
        ssize_t n = pread(fd, buf + done, room - done, (off_t)(at + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err_set(n < 0 ? errno : EIO, "reading '%s'", path);
            return -1;
        }
        done += (uint64_t)n;
    }
    *piece = buf;
    return (ssize_t)room;
}

/* One zstd frame (content size pledged) from the file's pieces. */
static int compress_file(struct section_out *o, int fd, uint64_t len, uint8_t *in_buf,
                         const char *path)
{
    ZSTD_CCtx *z = ZSTD_createCCtx();
    size_t out_room = ZSTD_CStreamOutSize();
    uint8_t *out_buf = malloc(out_room);
    int r = z && out_buf ? 0 : err_set(ENOMEM, "compressing '%s'", path);

    if (r == 0) {
        ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, BUNDLE_ZSTD_LEVEL);
        ZSTD_CCtx_setParameter(z, ZSTD_c_nbWorkers, ZSTD_WORKERS); /* where libzstd has threads */
        ZSTD_CCtx_setPledgedSrcSize(z, len);
    }
    for (uint64_t at = 0; r == 0;) {
        const uint8_t *piece = zeros;
        ssize_t n = at < len ? next_piece(fd, at, len, in_buf, &piece, path) : 0;
        if (n < 0) {
            r = -EIO;
            break;
        }
        at += (uint64_t)n;
        ZSTD_EndDirective mode = at >= len ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer in = {piece, (size_t)n, 0};
        size_t left;
        do {
            ZSTD_outBuffer out = {out_buf, out_room, 0};
            left = ZSTD_compressStream2(z, &out, &in, mode);
            if (ZSTD_isError(left))
                r = err_plain(EIO, "compressing '%s': %s", path, ZSTD_getErrorName(left));
            else
                r = emit(o, out_buf, out.pos);
        } while (r == 0 && (mode == ZSTD_e_end ? left != 0 : in.pos < in.size));
        if (mode == ZSTD_e_end)
            break;
    }
    ZSTD_freeCCtx(z);
    free(out_buf);
    return r;
}

static int copy_file(struct section_out *o, int fd, uint64_t len, uint8_t *buf, const char *path)
{
    int r = 0;
    for (uint64_t at = 0; r == 0 && at < len;) {
        const uint8_t *piece;
        ssize_t n = next_piece(fd, at, len, buf, &piece, path);
        r = n < 0 ? -EIO : emit(o, piece, (size_t)n);
        at += n > 0 ? (uint64_t)n : 0;
    }
    return r;
}

int bundle_add_file(struct bundle_writer *w, const char *name, const char *path,
                    enum bundle_encoding enc)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t len = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);
    uint8_t *buf = malloc(PIECE);
    struct section_out o = {.w = w};
    int r = 0;

    hash_begin(&o.hash);
    if (fd < 0 || len < 0)
        r = err_set(errno, "cannot read %s '%s'", name, path);
    else if (!buf)
        r = err_set(ENOMEM, "bundle: section '%s'", name);
    else if (enc != BUNDLE_RAW && enc != BUNDLE_ZSTD)
        r = err_plain(EINVAL, "bundle: bad encoding for '%s'", name);
    else if (!(o.s = bundle_new_section(w, name, enc)))
        r = -ENOSPC;
    if (r == 0) {
        o.s->size = (uint64_t)len;
        r = enc == BUNDLE_ZSTD ? compress_file(&o, fd, (uint64_t)len, buf, path)
                               : copy_file(&o, fd, (uint64_t)len, buf, path);
    }
    if (r == 0)
        hash_end(&o.hash, o.s->sha256);
    if (o.s)
        w->end = o.s->offset + o.s->stored;
    free(buf);
    if (fd >= 0)
        close(fd);
    return r;
}

/* ---- out of a bundle ---- */

/* Writes data at fd's position, leaving holes where whole blocks are zeros
 * (disk images are mostly empty). */
static int write_sparse(int fd, const uint8_t *data, size_t len, const char *path)
{
    const size_t block = 64u << 10;
    int r = 0;

    for (size_t at = 0; r == 0 && at < len; at += block) {
        size_t n = len - at < block ? len - at : block;
        if (buf_is_zero(data + at, n)) {
            if (lseek(fd, (off_t)n, SEEK_CUR) < 0)
                r = err_set(errno, "writing '%s'", path);
        } else {
            r = file_write_all(fd, data + at, n, path);
        }
    }
    return r;
}

/* The stored bytes, read piece by piece into private memory and hashed as
 * they are used: decoded into the file at once, which is removed unless
 * every byte read matches the section's hash. */
struct section_in {
    const struct bundle *b;
    const struct bundle_section *s;
    int fd;
    const char *path;
    ZSTD_DCtx *z; /* NULL: stored raw */
    uint8_t *out_buf;
    uint64_t total; /* bytes decoded so far */
    size_t left;    /* what ZSTD_decompressStream last said: 0 at a frame's end */
};

static int corrupt(const struct section_in *in)
{
    return err_plain(EINVAL, "'%s' is corrupt: section '%s' does not decompress", in->b->path,
                     in->s->name);
}

/* Decodes one piece of stored bytes; last: no more follow. */
static int decode_piece(struct section_in *in, const uint8_t *piece, size_t len, bool last)
{
    ZSTD_inBuffer src = {piece, len, 0};
    bool full = false;
    int r = 0;

    if (!in->z)
        return write_sparse(in->fd, piece, len, in->path);
    while (r == 0 && (src.pos < src.size || full)) {
        ZSTD_outBuffer out = {in->out_buf, PIECE, 0};
        if (in->left == 0) { /* the frame ended: bytes after it are corrupt */
            if (src.pos < src.size)
                return corrupt(in);
            break;
        }
        in->left = ZSTD_decompressStream(in->z, &out, &src);
        if (ZSTD_isError(in->left) || in->total + out.pos > in->s->size)
            return corrupt(in);
        r = write_sparse(in->fd, in->out_buf, out.pos, in->path);
        in->total += out.pos;
        full = out.pos == out.size;
    }
    if (r == 0 && last && (in->left != 0 || in->total != in->s->size))
        r = corrupt(in);
    return r;
}

static int decode_section(struct section_in *in)
{
    const struct bundle_section *s = in->s;
    uint8_t *buf = malloc(PIECE), digest[SHA256_BYTES];
    struct hash_state hash;
    int r = buf ? 0 : err_set(ENOMEM, "unpacking '%s'", in->path);

    hash_begin(&hash);
    /* At least once: an empty zstd section is no frame at all. */
    for (uint64_t at = 0; r == 0;) {
        size_t n = s->stored - at < PIECE ? (size_t)(s->stored - at) : PIECE;
        r = bundle_pread(in->b, s->offset + at, buf, n);
        if (r == 0) {
            hash_add(&hash, buf, n);
            at += n;
            r = decode_piece(in, buf, n, at == s->stored);
        }
        if (at == s->stored)
            break;
    }
    hash_end(&hash, digest);
    if (r == 0 && memcmp(digest, s->sha256, SHA256_BYTES) != 0)
        r = err_plain(EINVAL, "'%s' is corrupt: %s fails its checksum", in->b->path, s->name);
    free(buf);
    return r;
}

int bundle_extract(const struct bundle *b, const char *name, const char *path)
{
    const struct bundle_section *s = bundle_sized_section(b, name);
    struct section_in in = {.b = b, .s = s, .path = path, .left = 1};
    int r = 0;

    if (!s)
        return -EINVAL;
    if (s->encoding == BUNDLE_ZSTD && (!(in.z = ZSTD_createDCtx()) || !(in.out_buf = malloc(PIECE))))
        r = err_set(ENOMEM, "unpacking '%s'", path);
    in.fd = r == 0 ? file_create_fresh(path, 0600) : -1;
    if (r == 0 && in.fd < 0)
        r = in.fd;
    if (r == 0)
        r = decode_section(&in);
    if (r == 0 && ftruncate(in.fd, (off_t)s->size) < 0)
        r = err_set(errno, "writing '%s'", path);
    if (in.fd >= 0 && close(in.fd) < 0 && r == 0)
        r = err_set(errno, "writing '%s'", path);
    if (r < 0 && in.fd >= 0)
        unlink(path);
    ZSTD_freeDCtx(in.z);
    free(in.out_buf);
    return r;
}
