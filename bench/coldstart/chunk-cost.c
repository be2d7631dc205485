/* Probe (not a test; bench/coldstart/probe-chunk-cost.sh builds and runs
 * it in the L1): what one 64 KiB chunk of RAM costs a first start to check
 * and decode, stored three ways: zstd level 1 (as smolvm saves it), zstd
 * level 1 with its literals left uncompressed (a frame any zstd reader
 * takes, quicker to decode), and as it is (kind raw). The SHA-256 is
 * over the stored bytes, as the format has it. The thread's CPU time per
 * chunk, over up to 16 MiB of a file's chunks that are not all zeros,
 * after a pass that only warms up.
 * usage: chunk-cost FILE */
#define _GNU_SOURCE
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_c_literalCompressionMode */
#include <nettle/sha2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#define CHUNK 65536u
#define MOST (16u << 20)

enum stored_as { ZSTD_1, ZSTD_1_RAW_LITERALS, RAW, WAYS };
static const char *const names[WAYS] = {"zstd level 1", "zstd level 1, literals raw", "raw"};

static double cpu_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void sha256(const uint8_t *p, size_t n, uint8_t digest[SHA256_DIGEST_SIZE])
{
    struct sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, n, p);
    sha256_digest(&c, SHA256_DIGEST_SIZE, digest);
}

/* The file's chunks that are not all zeros (a RAM image is mostly zeros,
 * never stored), up to MOST bytes of them, into in; their count. */
static size_t sample(FILE *f, uint8_t *in)
{
    static const uint8_t zero[CHUNK];
    static uint8_t buf[CHUNK];
    size_t n = 0;
    while (n + CHUNK <= MOST && fread(buf, 1, CHUNK, f) == CHUNK)
        if (memcmp(buf, zero, CHUNK) != 0) {
            memcpy(in + n, buf, CHUNK);
            n += CHUNK;
        }
    return n / CHUNK;
}

/* The chunk stored as way says, into packed; its stored length. */
static size_t store(ZSTD_CCtx *cc, enum stored_as way, const uint8_t *chunk, uint8_t *packed)
{
    size_t n = way == RAW ? CHUNK : ZSTD_compress2(cc, packed, ZSTD_compressBound(CHUNK), chunk, CHUNK);
    if (way == RAW || ZSTD_isError(n) || n >= CHUNK) { /* incompressible: raw, as smolvm */
        memcpy(packed, chunk, CHUNK);
        n = CHUNK;
    }
    return n;
}

/* One way's cost over the sample's chunks, printed when say. */
static void measure(enum stored_as way, const uint8_t *in, size_t chunks, bool say)
{
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    uint8_t *out = malloc(CHUNK), *packed = malloc(ZSTD_compressBound(CHUNK));
    uint8_t digest[SHA256_DIGEST_SIZE];
    double hash = 0, decode = 0;
    size_t stored = 0;

    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
    if (way == ZSTD_1_RAW_LITERALS)
        ZSTD_CCtx_setParameter(cc, ZSTD_c_literalCompressionMode, ZSTD_ps_disable);
    for (size_t i = 0; out && packed && i < chunks; i++) {
        size_t n = store(cc, way, in + i * CHUNK, packed);
        double t0 = cpu_us();
        sha256(packed, n, digest);
        double t1 = cpu_us();
        if (n < CHUNK)
            ZSTD_decompressDCtx(dc, out, CHUNK, packed, n);
        double t2 = cpu_us(); /* raw: read straight into place, nothing to decode */
        hash += t1 - t0;
        decode += t2 - t1;
        stored += n;
    }
    if (say)
        printf("%s: %zu chunks, %.1f KiB stored each; per chunk: SHA-256 %.0f us, decode %.0f us, "
               "both %.0f us\n",
               names[way], chunks, (double)stored / 1024 / (double)chunks, hash / (double)chunks,
               decode / (double)chunks, (hash + decode) / (double)chunks);
    ZSTD_freeCCtx(cc);
    ZSTD_freeDCtx(dc);
    free(out);
    free(packed);
}

int main(int argc, char **argv)
{
    FILE *f = argc == 2 ? fopen(argv[1], "rb") : NULL;
    uint8_t *in = malloc(MOST);

    if (!f || !in) {
        fprintf(stderr, "usage: chunk-cost FILE\n");
        return 2;
    }
    size_t chunks = sample(f, in);
    fclose(f);
    /* Twice: the first pass only warms up (under QEMU-TCG, the first run
     * of the hashing and decoding code includes translating it). */
    for (int pass = 0; pass < 2 && chunks; pass++)
        for (int way = 0; way < WAYS; way++)
            measure((enum stored_as)way, in, chunks, pass == 1);
    free(in);
    return 0;
}
