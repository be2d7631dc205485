/* The working set file: a header (magic, the RAM's total size, the range
 * count) then ranges of pages {first page of the RAM laid end to end,
 * page count, written}; a range never crosses a region. Recorded from
 * /proc/self/pagemap: bit 63 says a page is present, bit 61 that it is
 * still the file's page (clear: the guest wrote it and has its own copy),
 * bit 62 that it was swapped out (only a written page can be). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <time.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "machine/workingset.h"
#include "util/err.h"
#include "util/file.h"
#include "confine/confine.h"

#define PAGE 4096u
#define MAGIC "SMOLWS\0\1"
#define MAX_RANGES (1u << 20)
#define PAGEMAP_BATCH 4096
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)

struct ws_header {
    char magic[8];
    uint64_t ram_total;
    uint32_t count, reserved;
};

struct ws_range {
    uint64_t first_page;
    uint32_t pages, written;
};

/* Ranges after a header, in one buffer the size of the file. */
struct ws_file {
    uint8_t *bytes;
    size_t count, room;
};

static struct ws_range *range_at(const struct ws_file *f, size_t i)
{
    return (struct ws_range *)(f->bytes + sizeof(struct ws_header)) + i;
}

/* Extends the last range with page, or starts one (always at a region's
 * first present page: may_join false). */
static int add_page(struct ws_file *f, uint64_t page, bool written, bool may_join)
{
    struct ws_range *last = f->count ? range_at(f, f->count - 1) : NULL;
    if (may_join && last && last->first_page + last->pages == page &&
        last->written == (uint32_t)written && last->pages < UINT32_MAX) {
        last->pages++;
        return 0;
    }
    if (f->count == MAX_RANGES)
        return err_plain(E2BIG, "working set: more than %u ranges", MAX_RANGES);
    if (f->count == f->room) {
        size_t room = f->room ? f->room * 2 : 256;
        uint8_t *more = realloc(f->bytes, sizeof(struct ws_header) + room * sizeof(struct ws_range));
        if (!more)
            return err_set(ENOMEM, "working set");
        f->bytes = more;
        f->room = room;
    }
    *range_at(f, f->count++) = (struct ws_range){page, 1, written};
    return 0;
}

/* Whether page is one the first start recorded the guest touching (only:
 * a bit per page of the RAM laid end to end; NULL: none recorded, any). */
static bool first_touched(const uint64_t *only, uint64_t page)
{
    return !only || (only[page / 64] >> (page % 64) & 1);
}

/* The present pages of one region; first_page: its first page's number
 * in the RAM laid end to end. A page read and not in only was mapped
 * around another one (the kernel's fault-around, up to 64 KiB about each
 * read fault of a file mapping), not touched: left out. */
static int scan_region(int pagemap, const struct guest_region *g, uint64_t first_page,
                       const uint64_t *only, struct ws_file *f)
{
    uint64_t entries[PAGEMAP_BATCH], pages = g->size / PAGE, vpage = (uintptr_t)g->host / PAGE;
    bool may_join = false;

    for (uint64_t done = 0; done < pages;) {
        size_t want = pages - done < PAGEMAP_BATCH ? (size_t)(pages - done) : PAGEMAP_BATCH;
        ssize_t n = pread(pagemap, entries, want * 8, (off_t)((vpage + done) * 8));
        if (n <= 0 || n % 8)
            return err_set(n < 0 ? errno : EIO, "reading /proc/self/pagemap");
        for (size_t i = 0; i < (size_t)n / 8; i++) {
            uint64_t e = entries[i];
            bool written = (e & PM_SWAPPED) || !(e & PM_FILE);
            if (!(e & (PM_PRESENT | PM_SWAPPED)) ||
                (!written && !first_touched(only, first_page + done + i)))
                continue;
            int r = add_page(f, first_page + done + i, written, may_join);
            if (r < 0)
                return r;
            may_join = true;
        }
        done += (uint64_t)n / 8;
    }
    return 0;
}

static void count_pages(const struct ws_file *f, struct working_set_counts *c)
{
    *c = (struct working_set_counts){.ranges = f->count};
    for (size_t i = 0; i < f->count; i++)
        *(range_at(f, i)->written ? &c->written_pages : &c->read_pages) += range_at(f, i)->pages;
}

/* reserved: 1 for a provisional file (working_set_write_chunks). */
static int write_file(const char *path, const struct ws_file *f, uint64_t ram_total,
                      uint32_t reserved)
{
    struct ws_header h = {.ram_total = ram_total, .count = (uint32_t)f->count, .reserved = reserved};
    memcpy(h.magic, MAGIC, sizeof(h.magic));
    memcpy(f->bytes, &h, sizeof(h));
    return file_replace(path, f->bytes, sizeof(h) + f->count * sizeof(struct ws_range));
}

static int read_file(const char *path, const struct guest_memory *mem, struct ws_file *f,
                     struct ws_header *h);

/* The pages a provisional working set at path lists (what a first start
 * recorded its guest touching), a bit each, into *out (freed by the
 * caller); NULL when there is none (or not of this RAM). */
static int provisional_pages(const char *path, const struct guest_memory *mem, uint64_t **out)
{
    struct ws_file f = {0};
    struct ws_header h;

    *out = NULL;
    if (access(path, F_OK) < 0 || read_file(path, mem, &f, &h) < 0 || h.reserved != 1) {
        err_clear(); /* none: every present page counts */
        free(f.bytes);
        return 0;
    }
    uint64_t *bits = calloc(mem->total / PAGE / 64 + 1, sizeof(*bits));
    for (size_t i = 0; bits && i < f.count; i++)
        for (uint64_t p = range_at(&f, i)->first_page; p < range_at(&f, i)->first_page + range_at(&f, i)->pages; p++)
            bits[p / 64] |= 1ull << (p % 64);
    free(f.bytes);
    *out = bits;
    return bits ? 0 : err_set(ENOMEM, "working set");
}

int working_set_record(const char *path, const struct guest_memory *mem,
                       struct working_set_counts *counts)
{
    struct ws_file f = {.bytes = malloc(sizeof(struct ws_header))};
    uint64_t first_page = 0, *only = NULL;
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), r = 0;

    if (pagemap < 0 || !f.bytes) {
        r = pagemap < 0 ? err_set(errno, "opening /proc/self/pagemap") : err_set(ENOMEM, "working set");
        goto out;
    }
    r = provisional_pages(path, mem, &only);
    for (unsigned i = 0; r == 0 && i < mem->count; i++) {
        r = scan_region(pagemap, &mem->regions[i], first_page, only, &f);
        first_page += mem->regions[i].size / PAGE;
    }
    if (r == 0)
        r = write_file(path, &f, mem->total, 0);
    if (r == 0 && counts)
        count_pages(&f, counts);
out:
    if (pagemap >= 0)
        close(pagemap);
    free(only);
    free(f.bytes);
    return r;
}

int working_set_write_chunks(const char *path, const struct guest_memory *mem,
                             const struct working_set_chunk *chunks, size_t count)
{
    struct ws_file f = {.bytes = malloc(sizeof(struct ws_header))};
    int r = f.bytes ? 0 : err_set(ENOMEM, "working set");

    for (size_t i = 0; r == 0 && i < count; i++)
        for (uint32_t p = 0; r == 0 && p < chunks[i].pages; p++)
            r = add_page(&f, chunks[i].first_page + p, false, p > 0);
    if (r == 0)
        r = write_file(path, &f, mem->total, 1);
    free(f.bytes);
    return r;
}

/* Where page number first of the RAM laid end to end is, when all of
 * [first, first + pages) lies in one region; NULL otherwise. */
static uint8_t *host_of(const struct guest_memory *mem, uint64_t first, uint64_t pages)
{
    uint64_t base = 0;
    for (unsigned i = 0; i < mem->count; i++) {
        uint64_t n = mem->regions[i].size / PAGE;
        if (first >= base && first < base + n)
            return pages <= base + n - first ? mem->regions[i].host + (first - base) * PAGE : NULL;
        base += n;
    }
    return NULL;
}

/* Near ranges (at most this many pages apart, in one region) are asked
 * about in one mincore() call: a recorded working set has hundreds of
 * ranges, most a few pages apart. */
#define RESIDENT_GAP_PAGES 256

static bool all_resident(const unsigned char *vec, uint64_t pages)
{
    for (uint64_t i = 0; i < pages; i++)
        if (!(vec[i] & 1))
            return false;
    return true;
}

/* Queues the reads of every range not wholly in the page cache (after a
 * reboot, or with many bundles), MADV_WILLNEED on each, before any is
 * waited for and mapped. Which ranges those are is asked once per span of
 * near ranges (mincore): a later start usually finds them all cached, and
 * then made one call per range for nothing. Where mincore fails, every
 * range is queued. */
static void queue_reads(const struct ws_file *f, size_t ranges, const struct guest_memory *mem,
                        struct working_set_counts *c)
{
    unsigned char *vec = NULL;
    size_t vec_len = 0;
    for (size_t i = 0, j; i < ranges; i = j) {
        uint64_t first = range_at(f, i)->first_page, end = first + range_at(f, i)->pages;
        for (j = i + 1; j < ranges; j++) {
            const struct ws_range *w = range_at(f, j);
            if (w->first_page < end || w->first_page - end > RESIDENT_GAP_PAGES ||
                !host_of(mem, first, w->first_page + w->pages - first))
                break;
            end = w->first_page + w->pages;
        }
        size_t pages = (size_t)(end - first);
        if (pages > vec_len) {
            free(vec);
            vec = malloc(pages);
            vec_len = vec ? pages : 0;
        }
        bool known = false;
        if (vec) {
            known = mincore(host_of(mem, first, pages), pages * PAGE, vec) == 0;
            c->resident_checks++;
        }
        for (size_t k = i; k < j; k++) {
            const struct ws_range *w = range_at(f, k);
            if (known && all_resident(vec + (w->first_page - first), w->pages))
                continue;
            madvise(host_of(mem, w->first_page, w->pages), (size_t)w->pages * PAGE, MADV_WILLNEED);
            c->readahead_calls++;
        }
    }
    free(vec);
}

/* Checks a working set's encoding (len bytes at data: a file's, or a
 * bundle's section; what names it) against mem's layout, and copies it
 * into f; *h: its header. */
static int check_encoding(const uint8_t *data, size_t len, const struct guest_memory *mem,
                          const char *what, struct ws_file *f, struct ws_header *h)
{
    memset(h, 0, sizeof(*h));
    if (len >= sizeof(*h))
        memcpy(h, data, sizeof(*h));
    int r = len < sizeof(*h) || memcmp(h->magic, MAGIC, sizeof(h->magic)) != 0 ||
                    h->ram_total != mem->total || h->count > MAX_RANGES || h->reserved > 1 ||
                    len != sizeof(*h) + (size_t)h->count * sizeof(struct ws_range)
                ? err_plain(EINVAL, "%s is not a working set of this guest's RAM", what)
                : 0;
    f->count = h->count;
    f->bytes = r == 0 ? malloc(len) : NULL;
    if (r == 0 && !f->bytes)
        r = err_set(ENOMEM, "working set");
    if (r == 0)
        memcpy(f->bytes, data, len);
    for (size_t i = 0; r == 0 && i < f->count; i++)
        if (!range_at(f, i)->pages || range_at(f, i)->written > 1 ||
            !host_of(mem, range_at(f, i)->first_page, range_at(f, i)->pages))
            r = err_plain(EINVAL, "%s: range %zu lies outside the guest's RAM", what, i);
    if (r < 0) {
        free(f->bytes);
        f->bytes = NULL;
    }
    return r;
}

/* Reads and checks the whole file before anything is touched. */
static int read_file(const char *path, const struct guest_memory *mem, struct ws_file *f,
                     struct ws_header *h)
{
    struct mapped_file m;
    char what[PATH_MAX + 2];
    int r = file_map_at_most(path, "working set",
                             sizeof(*h) + (size_t)MAX_RANGES * sizeof(struct ws_range), &m);
    if (r < 0)
        return r;
    snprintf(what, sizeof(what), "'%s'", path);
    r = check_encoding(m.data, m.len, mem, what, f, h);
    file_unmap(&m);
    return r;
}

int working_set_encoding(const char *path, const struct guest_memory *mem, size_t most,
                         uint8_t **out, size_t *len)
{
    struct ws_file f = {0};
    struct ws_header h;
    int r = read_file(path, mem, &f, &h);

    if (r == 0 && h.reserved != 0)
        r = err_plain(EINVAL, "'%s' is a provisional working set", path);
    size_t bytes = sizeof(h) + f.count * sizeof(struct ws_range);
    if (r == 0 && bytes > most)
        r = err_plain(E2BIG, "'%s' is larger than %zu bytes", path, most);
    if (r < 0) {
        free(f.bytes);
        return r;
    }
    *out = f.bytes;
    *len = bytes;
    return 0;
}

int working_set_adopt(const char *path, const struct guest_memory *mem, const uint8_t *data,
                      size_t len)
{
    struct ws_file f = {0};
    struct ws_header h;
    int r = check_encoding(data, len, mem, "the bundle's working set", &f, &h);

    if (r == 0 && h.reserved != 0)
        r = err_plain(EINVAL, "the bundle's working set is not an exact one");
    if (r == 0)
        r = write_file(path, &f, mem->total, 1);
    free(f.bytes);
    return r;
}

/* Read ranges at most this many pages apart (in one region) are faulted
 * in with one call: the kernel maps a file's cached pages up to 64 KiB
 * around each read fault anyway, and a set recorded from the guest's own
 * touches lists a few pages of each such window, apart. */
#define READ_SPAN_GAP_PAGES 16

static void populate_span(const struct guest_memory *mem, uint64_t first, uint64_t end,
                          bool written)
{
    guest_memory_populate(host_of(mem, first, end - first), (size_t)(end - first) * PAGE, written);
}

/* Faults in the first ranges of f: written ones one call each
 * (MADV_POPULATE_WRITE: copied), read ones near each other in one. */
static void populate_ranges(const struct ws_file *f, size_t ranges, const struct guest_memory *mem)
{
    uint64_t first = 0, end = 0;
    bool open = false;

    for (size_t i = 0; i <= ranges; i++) {
        const struct ws_range *w = i < ranges ? range_at(f, i) : NULL;
        if (w && w->written) {
            populate_span(mem, w->first_page, w->first_page + w->pages, true);
            continue;
        }
        if (w && open && w->first_page >= end && w->first_page - end <= READ_SPAN_GAP_PAGES &&
            host_of(mem, first, w->first_page + w->pages - first)) {
            end = w->first_page + w->pages;
            continue;
        }
        if (open)
            populate_span(mem, first, end, false);
        open = w != NULL;
        if (w) {
            first = w->first_page;
            end = first + w->pages;
        }
    }
}

int working_set_prefetch(const char *path, const struct guest_memory *mem,
                         struct working_set_counts *counts)
{
    struct ws_file f = {0};
    struct ws_header h = {0};
    if (access(path, F_OK) < 0)
        return err_set(errno, "'%s'", path);
    int r = read_file(path, mem, &f, &h);
    size_t ranges = r < 0 || h.reserved == 1 ? 0 : f.count; /* provisional: none */
    struct working_set_counts calls = {0};
    queue_reads(&f, ranges, mem, &calls);
    populate_ranges(&f, ranges, mem);
    if (r == 0 && counts) {
        count_pages(&f, counts);
        counts->provisional = h.reserved == 1;
        counts->resident_checks = calls.resident_checks;
        counts->readahead_calls = calls.readahead_calls;
    }
    free(f.bytes);
    return r;
}

int working_set_read_ranges(const char *path, const struct guest_memory *mem,
                            struct working_set_chunk **out, size_t *count)
{
    struct ws_file f = {0};
    struct ws_header h;
    int r = access(path, F_OK) < 0 ? err_set(errno, "'%s'", path) : read_file(path, mem, &f, &h);
    struct working_set_chunk *list = r == 0 ? calloc(f.count + 1, sizeof(*list)) : NULL;

    if (r == 0 && !list)
        r = err_set(ENOMEM, "working set");
    for (size_t i = 0; r == 0 && i < f.count; i++)
        list[i] = (struct working_set_chunk){range_at(&f, i)->first_page, range_at(&f, i)->pages};
    free(f.bytes);
    if (r < 0) {
        free(list);
        return r;
    }
    *out = list;
    *count = f.count;
    return 0;
}

/* ---- recording a while after the start ---- */

struct working_set_recorder {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping, now;
    unsigned delay_ms;
    char *path;
    const struct guest_memory *mem;
};

static void *recorder_main(void *arg)
{
    struct working_set_recorder *w = arg;
    struct timespec until;
    /* Reads /proc/self/pagemap and writes the working set's file. */
    confine_thread(CONFINE_VMM, "working-set");
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += w->delay_ms / 1000;
    until.tv_nsec += (long)(w->delay_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->stopping && !w->now &&
           pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&w->lock);
    /* Outside the lock: working_set_recorder_now() never waits for it. */
    if (working_set_record(w->path, w->mem, NULL) < 0)
        fprintf(stderr, "smolvm: the working set was not recorded: %s\n", err_msg());
    return NULL;
}

int working_set_recorder_start(const char *path, const struct guest_memory *mem,
                               unsigned delay_ms, struct working_set_recorder **out)
{
    struct working_set_recorder *w = calloc(1, sizeof(*w));
    pthread_condattr_t attr;
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return err_set(ENOMEM, "working set");
    }
    w->mem = mem;
    w->delay_ms = delay_ms;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    int r = confine_thread_start(&w->thread, CONFINE_VMM, recorder_main, w);
    if (r != 0) {
        free(w->path);
        free(w);
        return err_set(r, "working set recorder");
    }
    *out = w;
    return 0;
}

void working_set_recorder_now(struct working_set_recorder *w)
{
    pthread_mutex_lock(&w->lock);
    w->now = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void working_set_recorder_stop(struct working_set_recorder *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w->path);
    free(w);
}
