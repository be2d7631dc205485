/* Guest RAM in a bundle: fixed-size chunks, each compressed on its own
 * (zstd) so a restore decompresses them in parallel straight into guest
 * memory, all-zero chunks left out (fresh anonymous memory is zero
 * already, so they cost nothing on restore), and a SHA-256 per chunk. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY /* buffer-less decoding (bundle_chunk_decode_to) */
#include <zstd.h>

#include "bundle/internal.h"
#include "core/memory.h"
#include "disk/fileio.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/iov.h"
#include "util/le.h"
#include "util/trace.h"

#define MAX_WORKERS 4
#define PAGE 4096u
#define BATCH_BYTES (32u << 20) /* RAM compressed in parallel, then appended */
#define ZSTD_LEVEL 1 /* RAM is large and mostly easy; level 1 keeps saves quick */

struct chunk {
    const uint8_t *host; /* the guest memory it covers */
    uint64_t at;         /* where it starts in the RAM laid end to end */
    size_t len;
    bool anonymous; /* in anonymous RAM: a page never touched is zero */
    bool untouched; /* no page of it ever touched (mark_untouched) */
    uint8_t kind;
    uint8_t *packed; /* while saving */
    size_t stored;
    uint64_t offset; /* within the section */
    uint8_t sha256[SHA256_BYTES];
};

struct chunk_list {
    struct chunk *chunks;
    size_t count;
    size_t chunk_size; /* every chunk's but a region's last */
    int pagemap; /* /proc/self/pagemap, or -1 */
};

static unsigned worker_count(size_t jobs)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cpus > 0 ? (unsigned)cpus : 1;

    if (n > MAX_WORKERS)
        n = MAX_WORKERS;
    return jobs < n ? (unsigned)(jobs ? jobs : 1) : n;
}

/* Runs job(ctx, i) for i in [first, end) on a few threads. The first
 * failure's message is kept in err. */
struct parallel {
    atomic_size_t next;
    size_t end;
    int (*job)(void *ctx, size_t i);
    void *ctx;
    pthread_mutex_t lock;
    int result;
    char err[512];
};

static void *parallel_worker(void *arg)
{
    struct parallel *p = arg;

    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        int r;
        if (i >= p->end)
            return NULL;
        r = p->job(p->ctx, i);
        if (r < 0) {
            pthread_mutex_lock(&p->lock);
            if (p->result == 0) {
                p->result = r;
                snprintf(p->err, sizeof(p->err), "%s", err_msg());
            }
            pthread_mutex_unlock(&p->lock);
            atomic_store(&p->next, p->end); /* the others stop early */
        }
    }
}

static int run_parallel(size_t first, size_t end, int (*job)(void *, size_t), void *ctx)
{
    struct parallel p = {.end = end, .job = job, .ctx = ctx};
    pthread_t threads[MAX_WORKERS];
    unsigned n = worker_count(end - first), started = 0;

    atomic_init(&p.next, first);
    pthread_mutex_init(&p.lock, NULL);
    for (unsigned i = 1; i < n; i++)
        if (pthread_create(&threads[started], NULL, parallel_worker, &p) == 0)
            started++;
    parallel_worker(&p); /* the caller works too */
    for (unsigned i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&p.lock);
    if (p.result < 0)
        err_plain(-p.result, "%s", p.err);
    return p.result;
}

size_t bundle_memory_chunk_size = MEMORY_CHUNK;

/* How many chunks of chunk_size the RAM's regions make (each region's
 * last may be short). */
static size_t chunk_count(const struct guest_memory *mem, size_t chunk_size)
{
    size_t n = 0;
    for (unsigned r = 0; r < mem->count; r++)
        n += (mem->regions[r].size + chunk_size - 1) / chunk_size;
    return n;
}

static int list_chunks(const struct guest_memory *mem, size_t chunk_size, struct chunk_list *out)
{
    size_t n = chunk_count(mem, chunk_size), k = 0;
    uint64_t at = 0;

    out->chunk_size = chunk_size;
    out->chunks = calloc(n ? n : 1, sizeof(*out->chunks));
    if (!out->chunks)
        return err_set(ENOMEM, "memory chunk table");
    for (unsigned r = 0; r < mem->count; r++) {
        for (uint64_t off = 0; off < mem->regions[r].size; off += chunk_size) {
            uint64_t left = mem->regions[r].size - off;
            out->chunks[k].host = mem->regions[r].host + off;
            out->chunks[k].at = at + off;
            out->chunks[k].len = left < chunk_size ? (size_t)left : chunk_size;
            out->chunks[k].anonymous = !mem->regions[r].file_backed;
            k++;
        }
        at += mem->regions[r].size;
    }
    out->count = n;
    return 0;
}

static bool pagemap_covers(const struct chunk *c)
{
    return c->anonymous && c->len % PAGE == 0 && (uintptr_t)c->host % PAGE == 0;
}

/* Marks the anonymous chunks of [first, end) of which the kernel says no
 * page was ever touched (none present, none swapped out): zero without
 * being read, so a save neither scans nor faults in RAM the guest never
 * used. One pagemap read covers chunks that lie end to end. */
static void mark_untouched(struct chunk_list *l, size_t first, size_t end)
{
    uint64_t *entries = l->pagemap >= 0 ? malloc((end - first) * (l->chunk_size / PAGE) * 8) : NULL;

    for (size_t i = first; entries && i < end;) {
        const struct chunk *c = &l->chunks[i];
        size_t run = 0, pages = 0, at = 0;
        while (i + run < end && pagemap_covers(&c[run]) &&
               (run == 0 || c[run].host == c[run - 1].host + c[run - 1].len))
            pages += c[run++].len / PAGE;
        ssize_t want = (ssize_t)(pages * 8);
        if (run && pread(l->pagemap, entries, (size_t)want,
                         (off_t)((uintptr_t)c->host / PAGE * 8)) == want)
            for (size_t k = 0; k < run; k++) {
                size_t n = c[k].len / PAGE;
                l->chunks[i + k].untouched = true;
                for (size_t p = 0; p < n; p++)
                    if (entries[at + p] & (3ull << 62)) /* present, swapped */
                        l->chunks[i + k].untouched = false;
                at += n;
            }
        i += run ? run : 1;
    }
    free(entries);
}

/* The calling thread's own compression context and decoding scratch, each
 * made once and freed when the thread ends: a fresh context per 64 KiB
 * chunk spends as long setting itself up as the work (in the L1, saves
 * took 1.4x as long as with 512 KiB chunks; a restore made and freed a
 * 96 KiB decoding context for every chunk, and unpacking to the
 * cache one for every group). NULL: none could be made. */
struct decode_scratch {
    ZSTD_DCtx *dctx;
    uint8_t *packed; /* MEMORY_CHUNK_MAX: stored bytes, a chunk's or a group's (file_group()) */
    uint8_t *plain;  /* MEMORY_CHUNK_MAX once needed: a chunk decoded aside (chunk_pages()) */
};

static pthread_key_t cctx_key, decode_key;

static void free_cctx(void *cctx)
{
    ZSTD_freeCCtx(cctx);
}

static void *make_cctx(void)
{
    return ZSTD_createCCtx();
}

static void free_decode_scratch(void *p)
{
    struct decode_scratch *d = p;
    ZSTD_freeDCtx(d->dctx);
    free(d->packed);
    free(d->plain);
    free(d);
}

static void *make_decode_scratch(void)
{
    struct decode_scratch *d = calloc(1, sizeof(*d));
    if (d && (!(d->dctx = ZSTD_createDCtx()) || !(d->packed = malloc(MEMORY_CHUNK_MAX)))) {
        free_decode_scratch(d);
        d = NULL;
    }
    return d;
}

static void make_keys(void)
{
    if (pthread_key_create(&cctx_key, free_cctx) != 0 ||
        pthread_key_create(&decode_key, free_decode_scratch) != 0)
        abort(); /* only when the process has run out of keys: a bug here */
}

static void *thread_own(pthread_key_t *key, void *(*make)(void), void (*drop)(void *))
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_keys);
    void *p = pthread_getspecific(*key);
    if (!p && (p = make()) && pthread_setspecific(*key, p) != 0) {
        drop(p);
        p = NULL;
    }
    return p;
}

static ZSTD_CCtx *thread_cctx(void)
{
    return thread_own(&cctx_key, make_cctx, free_cctx);
}

static struct decode_scratch *thread_decode_scratch(void)
{
    return thread_own(&decode_key, make_decode_scratch, free_decode_scratch);
}

static int pack_chunk(void *ctx, size_t i)
{
    struct chunk_list *l = ctx;
    struct chunk *c = &l->chunks[i];
    size_t cap = ZSTD_compressBound(c->len);
    ZSTD_CCtx *cctx;

    if (c->untouched || buf_is_zero(c->host, c->len)) {
        c->kind = CHUNK_ZERO;
        return 0;
    }
    c->packed = malloc(cap);
    if (!c->packed || !(cctx = thread_cctx()))
        return err_set(ENOMEM, "compressing memory");
    c->stored = ZSTD_compressCCtx(cctx, c->packed, cap, c->host, c->len, ZSTD_LEVEL);
    if (ZSTD_isError(c->stored))
        return err_plain(EIO, "zstd: %s", ZSTD_getErrorName(c->stored));
    if (c->stored >= c->len) { /* incompressible: keep it raw */
        c->kind = CHUNK_RAW;
        c->stored = c->len;
        memcpy(c->packed, c->host, c->len);
    } else {
        c->kind = CHUNK_ZSTD;
    }
    hash_bytes(c->packed, c->stored, c->sha256);
    return 0;
}

static size_t index_size(const struct guest_memory *mem, size_t chunks)
{
    return 16 + (size_t)mem->count * 16 + chunks * MEMORY_CHUNK_ENTRY;
}

static void encode_index(const struct guest_memory *mem, const struct chunk_list *l, uint8_t *p)
{
    memcpy(p, MEMORY_MAGIC, 8);
    put_le(p + 8, l->chunk_size, 4);
    put_le(p + 12, mem->count, 4);
    p += 16;
    for (unsigned r = 0; r < mem->count; r++, p += 16) {
        put_le(p, mem->regions[r].gpa, 8);
        put_le(p + 8, mem->regions[r].size, 8);
    }
    for (size_t i = 0; i < l->count; i++, p += MEMORY_CHUNK_ENTRY) {
        const struct chunk *c = &l->chunks[i];
        memset(p, 0, MEMORY_CHUNK_ENTRY);
        put_le(p, c->offset, 8);
        put_le(p + 8, c->stored, 4);
        p[12] = c->kind;
        memcpy(p + 16, c->sha256, SHA256_BYTES);
    }
}

/* The batch's chunks [first, end) appended in order, gathered into writes
 * of up to WRITE_BYTES (64 KiB chunks are small: a write each would be
 * 8x the system calls of 512 KiB ones), unless r (their compression)
 * failed; their compressed bytes freed either way. Returns r or the
 * writes' failure. */
#define WRITE_BYTES (1u << 20)

static int append_batch(struct bundle_writer *w, const struct bundle_section *s,
                        struct chunk_list *l, size_t first, size_t end, uint64_t *pos, int r)
{
    uint8_t *gathered = r == 0 ? malloc(WRITE_BYTES) : NULL;
    size_t held = 0;

    if (r == 0 && !gathered)
        r = err_set(ENOMEM, "writing memory");

    for (size_t i = first; i < end; i++) {
        struct chunk *c = &l->chunks[i];
        if (r == 0 && c->kind != CHUNK_ZERO) {
            if (held + c->stored > WRITE_BYTES) { /* stored <= MEMORY_CHUNK_MAX < WRITE_BYTES */
                r = bundle_write_at(w, s->offset + *pos - held, gathered, held);
                held = 0;
            }
            c->offset = *pos;
            memcpy(gathered + held, c->packed, c->stored);
            held += c->stored;
            *pos += c->stored;
        }
        free(c->packed);
        c->packed = NULL;
    }
    if (r == 0 && held)
        r = bundle_write_at(w, s->offset + *pos - held, gathered, held);
    free(gathered);
    return r;
}

/* Compresses a batch in parallel, then appends it in order. */
static int write_chunks(struct bundle_writer *w, struct bundle_section *s, struct chunk_list *l,
                        uint64_t *pos, bundle_progress_fn progress, void *opaque)
{
    size_t batch = BATCH_BYTES / l->chunk_size;

    for (size_t first = 0; first < l->count; first += batch) {
        size_t end = first + batch < l->count ? first + batch : l->count;
        mark_untouched(l, first, end);
        int r = append_batch(w, s, l, first, end, pos, run_parallel(first, end, pack_chunk, l));
        if (r < 0)
            return r;
        if (progress)
            progress(opaque, (uint64_t)end * l->chunk_size, (uint64_t)l->count * l->chunk_size);
    }
    return 0;
}

int bundle_add_memory(struct bundle_writer *w, const char *name, const struct guest_memory *mem,
                      bundle_progress_fn progress, void *opaque)
{
    struct bundle_section *s = bundle_new_section(w, name, BUNDLE_MEMORY);
    struct chunk_list l = {0};
    uint8_t *index = NULL;
    size_t index_len;
    uint64_t pos;
    int r;

    if (!s)
        return -ENOSPC;
    if (bundle_memory_chunk_size < MEMORY_CHUNK_MIN || bundle_memory_chunk_size > MEMORY_CHUNK_MAX ||
        (bundle_memory_chunk_size & (bundle_memory_chunk_size - 1)))
        return err_plain(EINVAL, "memory chunks of %zu bytes", bundle_memory_chunk_size);
    r = list_chunks(mem, bundle_memory_chunk_size, &l);
    if (r < 0)
        return r;
    l.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    index_len = index_size(mem, l.count);
    pos = (index_len + BUNDLE_ALIGN - 1) / BUNDLE_ALIGN * BUNDLE_ALIGN;
    r = write_chunks(w, s, &l, &pos, progress, opaque);
    if (r == 0 && !(index = malloc(index_len)))
        r = err_set(ENOMEM, "memory index");
    if (r == 0) {
        encode_index(mem, &l, index);
        hash_bytes(index, index_len, s->sha256);
        s->stored = pos;
        s->size = mem->total;
        r = bundle_write_at(w, s->offset, index, index_len);
        w->end = s->offset + pos;
    }
    free(index);
    free(l.chunks);
    if (l.pagemap >= 0)
        close(l.pagemap);
    return r;
}

/* ---- restore ---- */

/* The index is read into private memory, its hash checked there, and
 * parsed from that copy; each chunk likewise (see bundle_pread). */
struct load {
    const struct bundle *b;
    uint8_t *index;
    const struct bundle_section *s;
    struct chunk_list l;
    int fd; /* bundle_unpack_memory's file: the RAM laid end to end */
};

static int parse_index(struct load *ld, const struct guest_memory *mem, size_t *index_len)
{
    const struct bundle_section *s = ld->s;
    uint8_t head[16], *p;
    size_t len, chunk_size;

    if (s->stored < 16 || bundle_pread(ld->b, s->offset, head, sizeof(head)) < 0 ||
        memcmp(head, MEMORY_MAGIC, 8) != 0)
        return err_plain(EINVAL, "'%s' is corrupt: bad memory index", ld->b->path);
    /* Any power of two a reader has room for (the index that follows must
     * lie within the section, which bounds how many chunks there are). */
    chunk_size = le32(head + 8);
    if (chunk_size < MEMORY_CHUNK_MIN || chunk_size > MEMORY_CHUNK_MAX ||
        (chunk_size & (chunk_size - 1)))
        return err_plain(EINVAL, "'%s' is corrupt: memory chunks of %zu bytes", ld->b->path,
                         chunk_size);
    if (le32(head + 12) != mem->count)
        return err_plain(EINVAL, "'%s': saved RAM layout differs from this VM's", ld->b->path);
    /* The index is in the section before anything is made for its chunks. */
    len = index_size(mem, chunk_count(mem, chunk_size));
    if (len > s->stored)
        return err_plain(EINVAL, "'%s' is corrupt: memory index truncated", ld->b->path);
    if (list_chunks(mem, chunk_size, &ld->l) < 0)
        return -ENOMEM;
    if (!(p = ld->index = malloc(len)))
        return err_set(ENOMEM, "memory index");
    if (bundle_pread(ld->b, s->offset, p, len) < 0 ||
        bundle_verify(ld->b, p, len, s->sha256, "the memory index") < 0)
        return -EINVAL;
    for (unsigned r = 0; r < mem->count; r++)
        if (le64(p + 16 + r * 16) != mem->regions[r].gpa ||
            le64(p + 24 + r * 16) != mem->regions[r].size)
            return err_plain(EINVAL, "'%s': saved RAM layout differs from this VM's", ld->b->path);
    *index_len = len;
    return 0;
}

static int parse_chunks(struct load *ld, const uint8_t *e, size_t index_len)
{
    for (size_t i = 0; i < ld->l.count; i++, e += MEMORY_CHUNK_ENTRY) {
        struct chunk *c = &ld->l.chunks[i];
        c->offset = le64(e);
        c->stored = le32(e + 8);
        c->kind = e[12];
        memcpy(c->sha256, e + 16, SHA256_BYTES);
        if (c->kind == CHUNK_ZERO)
            continue;
        /* A compressed chunk is smaller than its RAM (the writer keeps
         * it raw otherwise): what it is read into is bounded. */
        if (c->kind > CHUNK_RAW || c->offset < index_len || c->offset > ld->s->stored ||
            c->stored > ld->s->stored - c->offset || (c->kind == CHUNK_RAW && c->stored != c->len) ||
            (c->kind == CHUNK_ZSTD && c->stored >= c->len))
            return err_plain(EINVAL, "'%s' is corrupt: memory chunk %zu out of place",
                             ld->b->path, i);
    }
    return 0;
}

/* Chunk i's stored bytes read into packed (private memory) and their hash
 * checked there. */
static int read_checked_timed(const struct load *ld, size_t i, uint8_t *packed, bool timed)
{
    const struct chunk *c = &ld->l.chunks[i];
    char what[48];
    uint64_t start = timed ? trace_thread_cpu_us() : 0;
    int r = bundle_pread(ld->b, ld->s->offset + c->offset, packed, c->stored);
    uint64_t read = timed ? trace_thread_cpu_us() : 0;

    snprintf(what, sizeof(what), "memory chunk %zu", i);
    if (r == 0)
        r = bundle_verify(ld->b, packed, c->stored, c->sha256, what);
    if (timed) {
        trace_add_count(TRACE_PREFILL_READ_CPU_US, read - start);
        trace_add_count(TRACE_PREFILL_HASH_CPU_US, trace_thread_cpu_us() - read);
    }
    return r;
}

static int read_checked(const struct load *ld, size_t i, uint8_t *packed)
{
    return read_checked_timed(ld, i, packed, false);
}

/* A chunk being decoded a part at a time (zstd's buffer-less decoding:
 * block by block straight into dst, where the blocks before stay as its
 * window), from stored bytes read and checked whole first. */
struct bundle_chunk_decoder {
    uint8_t *packed; /* MEMORY_CHUNK_MAX: a zstd chunk is stored in fewer bytes than it holds */
    ZSTD_DCtx *zstd;
    const struct load *ld; /* the chunk begun: */
    size_t chunk;
    uint8_t *dst;
    size_t in, out; /* stored bytes used, bytes decoded */
};

int bundle_chunk_decoder_new(struct bundle_chunk_decoder **out)
{
    struct bundle_chunk_decoder *d = calloc(1, sizeof(*d));

    if (d && (!(d->packed = malloc(MEMORY_CHUNK_MAX)) || !(d->zstd = ZSTD_createDCtx()))) {
        bundle_chunk_decoder_free(d);
        d = NULL;
    }
    if (!d)
        return err_set(ENOMEM, "memory chunk decoder");
    *out = d;
    return 0;
}

void bundle_chunk_decoder_free(struct bundle_chunk_decoder *d)
{
    if (!d)
        return;
    free(d->packed);
    ZSTD_freeDCtx(d->zstd);
    free(d);
}

/* A checked chunk's stored bytes (packed) decoded into dst (zstd: with
 * dctx, the caller's own). */
static int decode_chunk(const struct load *ld, size_t i, const uint8_t *packed, uint8_t *dst,
                        ZSTD_DCtx *dctx)
{
    const struct chunk *c = &ld->l.chunks[i];
    size_t n;

    if (c->kind == CHUNK_RAW) {
        if (packed != dst)
            memcpy(dst, packed, c->len);
        return 0;
    }
    n = ZSTD_decompressDCtx(dctx, dst, c->len, packed, c->stored);
    if (ZSTD_isError(n) || n != c->len)
        return err_plain(EINVAL, "'%s' is corrupt: memory chunk %zu does not decompress",
                         ld->b->path, i);
    return 0;
}

void (*bundle_decode_hook)(const uint8_t *dst, size_t len);

/* Chunk i read, checked and decoded into dst (guest RAM not yet running:
 * bundle_load_memory, or a known working set's chunk through
 * bundle_memory_image_load). 0 with *zero set: an elided chunk, dst
 * untouched. Its pages are made present first, in one call: decoding
 * into fresh RAM otherwise faults each in, 16 a 64 KiB chunk (in the
 * nested L1: 0.17-0.32 ms of first touches, 0.18-0.27 ms for one
 * MADV_POPULATE_WRITE, of a chunk's ~1 ms decoding). Each step is timed
 * on the thread's CPU clock (trace: prefill_populate_cpu_us,
 * prefill_read_cpu_us, prefill_hash_cpu_us, prefill_decode_cpu_us, summed
 * over the threads: what a prefilled chunk costs). */
static int chunk_bytes(const struct load *ld, size_t i, uint8_t *dst, bool *zero)
{
    const struct chunk *c = &ld->l.chunks[i];
    struct decode_scratch *scratch = NULL;
    uint8_t *packed = dst;
    int r;

    *zero = c->kind == CHUNK_ZERO;
    if (*zero)
        return 0;
    if (c->kind == CHUNK_ZSTD && !(scratch = thread_decode_scratch()))
        return err_set(ENOMEM, "memory chunk %zu", i);
    if (scratch)
        packed = scratch->packed; /* stored < len <= MEMORY_CHUNK_MAX */
    uint64_t populating = trace_thread_cpu_us();
    guest_memory_populate(dst, c->len, true);
    trace_add_count(TRACE_PREFILL_POPULATE_CPU_US, trace_thread_cpu_us() - populating);
    r = read_checked_timed(ld, i, packed, true);
    uint64_t decoding = trace_thread_cpu_us();
    if (r == 0 && bundle_decode_hook)
        bundle_decode_hook(dst, c->len);
    if (r == 0)
        r = decode_chunk(ld, i, packed, dst, scratch ? scratch->dctx : NULL); /* NULL: raw */
    trace_add_count(TRACE_PREFILL_DECODE_CPU_US, trace_thread_cpu_us() - decoding);
    return r;
}

/* Chunk i read and checked whole, decoded aside (the thread's scratch),
 * and only the pages want names copied into place (dst: the chunk's),
 * each made present by that copy: a working set's few pages of a chunk,
 * not all 16 of a 64 KiB one (most of the prefill's cost where the set
 * was recorded from the guest's own touches). */
static int chunk_pages(const struct load *ld, size_t i, uint8_t *dst,
                       const struct bundle_chunk_pages *want)
{
    const struct chunk *c = &ld->l.chunks[i];
    struct decode_scratch *scratch = c->kind == CHUNK_ZERO ? NULL : thread_decode_scratch();

    if (c->kind == CHUNK_ZERO)
        return 0;
    if (!scratch || (!scratch->plain && !(scratch->plain = malloc(MEMORY_CHUNK_MAX))))
        return err_set(ENOMEM, "memory chunk %zu", i);
    int r = read_checked_timed(ld, i, scratch->packed, true); /* stored <= len */
    uint64_t decoding = trace_thread_cpu_us();
    const uint8_t *plain = scratch->packed; /* a raw chunk: as stored */
    if (r == 0 && c->kind == CHUNK_ZSTD) {
        r = decode_chunk(ld, i, scratch->packed, scratch->plain, scratch->dctx);
        plain = scratch->plain;
    }
    uint64_t placing = trace_thread_cpu_us();
    trace_add_count(TRACE_PREFILL_DECODE_CPU_US, placing - decoding);
    for (size_t p = 0; r == 0 && p < c->len / PAGE; p++)
        if (want->bits[p / 64] >> (p % 64) & 1)
            memcpy(dst + p * PAGE, plain + p * PAGE, PAGE);
    trace_add_count(TRACE_PREFILL_POPULATE_CPU_US, trace_thread_cpu_us() - placing);
    return r;
}

_Static_assert(sizeof(((struct bundle_chunk_pages *)0)->bits) * 8 >= MEMORY_CHUNK_MAX / PAGE,
               "a chunk's pages fit its bits");

/* Whether want names every page of a chunk of len bytes. */
static bool every_page(const struct bundle_chunk_pages *want, size_t len)
{
    for (size_t p = 0; p < len / PAGE; p++)
        if (!(want->bits[p / 64] >> (p % 64) & 1))
            return false;
    return true;
}

static int load_chunk(void *ctx, size_t i)
{
    struct load *ld = ctx;
    bool zero;
    return chunk_bytes(ld, i, (uint8_t *)ld->l.chunks[i].host, &zero);
}

/* The file is written a group of chunks at a time, MEMORY_CHUNK_MAX of
 * RAM (one chunk of a 512 KiB bundle): one read of their stored bytes
 * (written one after another), one decoder, one write per run of chunks
 * that are not zero. Smaller chunks then cost no more calls than before. */
static size_t group_chunks(const struct load *ld)
{
    return MEMORY_CHUNK_MAX / ld->l.chunk_size;
}

static size_t group_count(const struct load *ld)
{
    return (ld->l.count + group_chunks(ld) - 1) / group_chunks(ld);
}

/* Whether the stored bytes of chunks [first, end) that are not zero lie
 * one after another (as smolvm writes them); *from, *len: where. */
static bool stored_in_one_run(const struct load *ld, size_t first, size_t end, uint64_t *from,
                              size_t *len)
{
    uint64_t next = 0;
    bool any = false;

    for (size_t i = first; i < end; i++) {
        const struct chunk *c = &ld->l.chunks[i];
        if (c->kind == CHUNK_ZERO)
            continue;
        if (any && c->offset != next)
            return false;
        if (!any)
            *from = c->offset;
        any = true;
        next = c->offset + c->stored;
    }
    *len = any ? (size_t)(next - *from) : 0;
    return true;
}

/* Chunks [first, end) read, checked and decoded into out (laid end to
 * end from chunk first's place); each chunk's hash checked on the very
 * bytes decoded (private memory). */
static int group_bytes(const struct load *ld, size_t first, size_t end, uint8_t *packed,
                       uint8_t *out, ZSTD_DCtx *dctx)
{
    uint64_t from = 0;
    size_t len;
    bool one_read = stored_in_one_run(ld, first, end, &from, &len) && len <= MEMORY_CHUNK_MAX;
    int r = one_read && len ? bundle_pread(ld->b, ld->s->offset + from, packed, len) : 0;

    for (size_t i = first; r == 0 && i < end; i++) {
        const struct chunk *c = &ld->l.chunks[i];
        const uint8_t *stored = packed;
        char what[48];
        if (c->kind == CHUNK_ZERO)
            continue;
        snprintf(what, sizeof(what), "memory chunk %zu", i);
        if (one_read) /* from..from + len holds every chunk's stored bytes */
            stored = packed + (c->offset - from);
        else /* a writer other than smolvm's: a chunk at a time */
            r = bundle_pread(ld->b, ld->s->offset + c->offset, packed, c->stored);
        if (r == 0)
            r = bundle_verify(ld->b, stored, c->stored, c->sha256, what);
        if (r == 0)
            r = decode_chunk(ld, i, stored, out + (c->at - ld->l.chunks[first].at), dctx);
    }
    return r;
}

/* Group g into the file through a buffer: decompressed into a shared
 * mapping of the file instead, every page of it would be a fault. */
static int file_group(void *ctx, size_t g)
{
    struct load *ld = ctx;
    size_t first = g * group_chunks(ld), end = first + group_chunks(ld);
    struct decode_scratch *scratch = thread_decode_scratch();
    uint8_t *out = malloc(MEMORY_CHUNK_MAX);
    int r = scratch && out ? 0 : err_set(ENOMEM, "memory chunk decoder");

    if (end > ld->l.count)
        end = ld->l.count;
    if (r == 0)
        r = group_bytes(ld, first, end, scratch->packed, out, scratch->dctx);
    /* Runs of chunks that are not zero: zero ones stay holes. */
    for (size_t i = first; r == 0 && i < end;) {
        size_t run = i, bytes = 0;
        while (run < end && ld->l.chunks[run].kind != CHUNK_ZERO)
            bytes += ld->l.chunks[run++].len;
        int w = bytes ? disk_pwrite_all(ld->fd, out + (ld->l.chunks[i].at - ld->l.chunks[first].at),
                                        bytes, ld->l.chunks[i].at)
                      : 0;
        if (w < 0)
            r = err_set(-w, "writing the memory cache");
        i = run == i ? i + 1 : run;
    }
    free(out);
    return r;
}

/* Parses and checks the section's index and chunk table against the
 * layout of mem (whose host pointers say where each chunk goes). */
static int open_section(struct load *ld, const struct bundle *b, const char *name,
                        const struct guest_memory *mem)
{
    size_t index_len = 0;
    int r;

    *ld = (struct load){.b = b, .s = bundle_section(b, name), .fd = -1};
    if (!ld->s || ld->s->encoding != BUNDLE_MEMORY)
        return err_plain(ENOENT, "'%s' holds no saved memory", b->path);
    r = parse_index(ld, mem, &index_len);
    if (r == 0)
        r = parse_chunks(ld, ld->index + 16 + mem->count * 16, index_len);
    return r;
}

int bundle_load_memory(const struct bundle *b, const char *name, const struct guest_memory *mem)
{
    struct load ld;
    int r = open_section(&ld, b, name, mem);

    if (r == 0)
        r = run_parallel(0, ld.l.count, load_chunk, &ld);
    free(ld.l.chunks);
    free(ld.index);
    return r;
}

/* ---- RAM as a file (machine/cache.c keeps it as the memory cache) ---- */

int bundle_memory_key(const struct bundle *b, const char *name, char key[65])
{
    const struct bundle_section *s = bundle_section(b, name);

    if (!s || s->encoding != BUNDLE_MEMORY)
        return err_plain(ENOENT, "'%s' holds no saved memory", b->path);
    /* The section's hash covers every chunk's hash: it names the content. */
    return bundle_section_key(b, name, key);
}

int bundle_unpack_memory(const struct bundle *b, const char *name,
                         const struct guest_memory *mem, int fd)
{
    struct load ld;
    int r = open_section(&ld, b, name, mem);

    ld.fd = fd;
    if (r == 0)
        r = run_parallel(0, group_count(&ld), file_group, &ld);
    free(ld.l.chunks);
    free(ld.index);
    return r;
}

/* ---- chunks decoded on demand ---- */

struct bundle_memory_image {
    struct load ld;
};

int bundle_memory_image_read(const struct bundle *b, const char *name,
                             const struct guest_memory *mem, struct bundle_memory_image **out)
{
    struct bundle_memory_image *img = calloc(1, sizeof(*img));
    int r;

    if (!img)
        return err_set(ENOMEM, "memory image");
    r = open_section(&img->ld, b, name, mem);
    if (r < 0) {
        bundle_memory_image_free(img);
        return r;
    }
    *out = img;
    return 0;
}

size_t bundle_memory_image_chunks(const struct bundle_memory_image *img)
{
    return img->ld.l.count;
}

void bundle_memory_image_place(const struct bundle_memory_image *img, size_t i, uint64_t *at,
                               size_t *len, uint8_t **host)
{
    const struct chunk *c = &img->ld.l.chunks[i];
    *at = c->at;
    *len = c->len;
    *host = (uint8_t *)c->host;
}

bool bundle_memory_image_zero(const struct bundle_memory_image *img, size_t i)
{
    return img->ld.l.chunks[i].kind == CHUNK_ZERO;
}

int bundle_memory_image_begin(const struct bundle_memory_image *img,
                              struct bundle_chunk_decoder *d, size_t i, uint8_t *dst, bool *zero)
{
    const struct chunk *c = &img->ld.l.chunks[i];
    int r = 0;

    *d = (struct bundle_chunk_decoder){.packed = d->packed, .zstd = d->zstd, .ld = &img->ld,
                                       .chunk = i, .dst = dst, .out = c->len};
    *zero = c->kind == CHUNK_ZERO;
    if (c->kind == CHUNK_RAW)
        r = read_checked(&img->ld, i, dst);
    if (c->kind != CHUNK_ZSTD)
        return r;
    d->out = 0;
    r = read_checked(&img->ld, i, d->packed);
    if (r == 0 && ZSTD_isError(ZSTD_decompressBegin(d->zstd)))
        r = err_set(ENOMEM, "memory chunk decoder");
    return r;
}

/* The decoder's chunk corrupt (said). */
static int undecodable(const struct bundle_chunk_decoder *d)
{
    return err_plain(EINVAL, "'%s' is corrupt: memory chunk %zu does not decompress",
                     d->ld->b->path, d->chunk);
}

int bundle_chunk_decode_to(struct bundle_chunk_decoder *d, size_t upto, size_t *ready)
{
    const struct chunk *c = &d->ld->l.chunks[d->chunk];
    size_t need;

    if (c->kind != CHUNK_ZSTD) { /* ready whole since begun */
        *ready = d->out;
        return 0;
    }
    /* Once all of it is out, on to the frame's end: nothing may follow. */
    while ((need = ZSTD_nextSrcSizeToDecompress(d->zstd)) && (d->out < upto || d->out == c->len)) {
        if (need > c->stored - d->in)
            return undecodable(d);
        size_t n = ZSTD_decompressContinue(d->zstd, d->dst + d->out, c->len - d->out,
                                           d->packed + d->in, need);
        if (ZSTD_isError(n))
            return undecodable(d);
        d->in += need;
        d->out += n;
    }
    if (!need && (d->out != c->len || d->in != c->stored))
        return undecodable(d);
    *ready = d->out;
    return 0;
}

int bundle_memory_image_decode(const struct bundle_memory_image *img,
                               struct bundle_chunk_decoder *d, size_t i, uint8_t *dst, bool *zero)
{
    size_t ready;
    int r = bundle_memory_image_begin(img, d, i, dst, zero);
    return r < 0 ? r : bundle_chunk_decode_to(d, img->ld.l.chunks[i].len, &ready);
}

/* The chunks a list names, loaded straight into place (those of their
 * pages named, when pages). */
struct listed {
    struct load *ld;
    const size_t *chunks;
    const struct bundle_chunk_pages *pages;
};

static int load_listed(void *ctx, size_t k)
{
    struct listed *l = ctx;
    const struct chunk *c = &l->ld->l.chunks[l->chunks[k]];
    if (l->pages && !every_page(&l->pages[k], c->len))
        return chunk_pages(l->ld, l->chunks[k], (uint8_t *)c->host, &l->pages[k]);
    return load_chunk(l->ld, l->chunks[k]);
}

int bundle_memory_image_load(struct bundle_memory_image *img, const size_t *chunks,
                             const struct bundle_chunk_pages *pages, size_t count)
{
    struct listed l = {&img->ld, chunks, pages};

    for (size_t k = 0; k < count; k++)
        if (chunks[k] >= img->ld.l.count)
            return err_plain(EINVAL, "memory chunk %zu: no such chunk", chunks[k]);
    return count ? run_parallel(0, count, load_listed, &l) : 0;
}

void bundle_memory_image_free(struct bundle_memory_image *img)
{
    if (!img)
        return;
    free(img->ld.l.chunks);
    free(img->ld.index);
    free(img);
}
