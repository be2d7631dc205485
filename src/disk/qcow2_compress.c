/* Compressed qcow2 clusters: raw deflate (window 2^12, no zlib header, as
 * QEMU writes them) or a zstd frame, each inflating to exactly one
 * cluster. */
#include <errno.h>
#include <zlib.h>
#include <zstd.h>

#include "disk/qcow2.h"
#include "disk/qcow2_compress.h"
#include "util/err.h"

static int inflate_cluster(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    z_stream s = {.next_in = (Bytef *)in, .avail_in = (uInt)in_len,
                  .next_out = out, .avail_out = (uInt)out_len};
    int r;

    if (inflateInit2(&s, -12) != Z_OK)
        return -ENOMEM;
    r = inflate(&s, Z_FINISH);
    inflateEnd(&s);
    /* The data may end with the padding of its last sector: what counts
     * is a full cluster out. */
    return (r == Z_STREAM_END || r == Z_OK || r == Z_BUF_ERROR) && s.avail_out == 0 ? 0 : -EIO;
}

static int unzstd_cluster(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    ZSTD_DCtx *ctx = ZSTD_createDCtx();
    ZSTD_inBuffer src = {in, in_len, 0};
    ZSTD_outBuffer dst = {out, out_len, 0};
    int r = 0;

    if (!ctx)
        return -ENOMEM;
    while (dst.pos < dst.size) {
        size_t left = ZSTD_decompressStream(ctx, &dst, &src);
        if (ZSTD_isError(left) || (src.pos == src.size && dst.pos < dst.size) ||
            (left == 0 && dst.pos < dst.size)) {
            r = -EIO;
            break;
        }
    }
    ZSTD_freeDCtx(ctx);
    return r;
}

int qcow2_decompress(unsigned type, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    switch (type) {
    case QCOW2_COMPRESSION_DEFLATE:
        return inflate_cluster(in, in_len, out, out_len);
    case QCOW2_COMPRESSION_ZSTD:
        return unzstd_cluster(in, in_len, out, out_len);
    default:
        return -EINVAL;
    }
}

ssize_t qcow2_compress(unsigned type, const uint8_t *in, size_t in_len, uint8_t *out,
                       size_t out_cap)
{
    if (type == QCOW2_COMPRESSION_ZSTD) {
        size_t n = ZSTD_compress(out, out_cap, in, in_len, 3);
        return ZSTD_isError(n) ? -ENOSPC : (ssize_t)n;
    }
    z_stream s = {.next_in = (Bytef *)in, .avail_in = (uInt)in_len,
                  .next_out = out, .avail_out = (uInt)out_cap};
    if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    int r = deflate(&s, Z_FINISH);
    deflateEnd(&s);
    return r == Z_STREAM_END ? (ssize_t)(out_cap - s.avail_out) : -ENOSPC;
}
