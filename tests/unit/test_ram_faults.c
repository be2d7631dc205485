/* A first start's RAM served by userfaultfd from a bundle's memory section
 * (machine/ram_faults.c), on plain mappings: the bytes a touch gets are
 * the saved ones, the cache file filled behind is the RAM laid end to end,
 * a corrupt chunk stops the start before anything is served. Skipped
 * where this host gives no userfaultfd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bundle/bundle.h"
#include "bundle/internal.h"
#include "bundle/format.h"
#include "bundle/sections.h"
#include "confine/confine.h"
#include "machine/cache.h"
#include "machine/ram_faults.h"
#include "machine/workingset.h"
#include "util/err.h"

#define RAM_LOW (6u << 20)
#define RAM_HIGH (1u << 20)

static char dir[64], path[128], cache[128];
static const struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};

/* Most tests here save RAM in 512 KiB chunks, as smolvm did before 64 KiB
 * ones (bundles that keep starting): a chunk of 8 windows, served a
 * window at a time. The tests of the chunks written now say so. */
#define OLD_CHUNK (512u << 10)

static int setup(void **state)
{
    (void)state;
    bundle_memory_chunk_size = OLD_CHUNK;
    /* Most tests here look at windows placed from the first fault on, as
     * before a first start recorded its guest's touches (a page at a time,
     * the fill waiting, up to the guest's first output); the test of that
     * says so. */
    ram_faults_record_pages = false;
    ram_faults_prefill_pages = false; /* chunks of a known set placed whole, as before */
    snprintf(dir, sizeof(dir), "/tmp/smolvm-test-uffd.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/m.smolmachine", dir);
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    mkdir(cache, 0700);
    setenv("XDG_CACHE_HOME", cache, 1);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    bundle_memory_chunk_size = MEMORY_CHUNK;
    /* A test that failed between setting a hook and setting it back must
     * not leave the next tests without their fill. */
    ram_faults_fill_behind = true;
    ram_faults_record_pages = true;
    ram_faults_prefill_pages = true;
    ram_faults_fill_gate = NULL;
    ram_faults_serve_gate = NULL;
    unsetenv("XDG_CACHE_HOME");
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Every chunk its own pattern, one of random bytes (stored raw), some
 * zero; written into a bundle, with a working set section when ws. */
static void saved_ram_with(struct guest_memory *mem, const uint8_t *ws, size_t ws_len)
{
    struct bundle_writer *w;
    assert_int_equal(guest_memory_alloc(mem, layout, 2), 0);
    for (size_t at = 0; at < RAM_LOW; at += 512u << 10)
        if ((at >> 19) % 3)
            memset(mem->regions[0].host + at + 100, (int)(at >> 19), 300000);
    for (size_t i = 0; i < (512u << 10); i++)
        mem->regions[0].host[(2u << 20) + i] = (uint8_t)(rand() >> 7);
    memcpy(mem->regions[1].host + RAM_HIGH - 5, "tail", 5);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, SECTION_CONFIG, "{}", 2, BUNDLE_RAW), 0);
    assert_int_equal(bundle_add_memory(w, SECTION_MEMORY, mem, NULL, NULL), 0);
    if (ws)
        assert_int_equal(bundle_add(w, SECTION_WORKINGSET, ws, ws_len, BUNDLE_RAW), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
}

static void saved_ram(struct guest_memory *mem)
{
    saved_ram_with(mem, NULL, 0);
}

static void assert_same_ram(const struct guest_memory *a, const struct guest_memory *b)
{
    /* The last chunk first: the fill goes in order, so this is a fault. */
    assert_memory_equal(a->regions[1].host, b->regions[1].host, RAM_HIGH);
    assert_memory_equal(a->regions[0].host, b->regions[0].host, RAM_LOW);
}

/* The one file in cache/smolvm/memory ending in suffix, or NULL. */
static char *cache_file(const char *suffix)
{
    static char found[256];
    char where[160];
    struct dirent *e;
    snprintf(where, sizeof(where), "%s/smolvm/memory", cache);
    DIR *d = opendir(where);
    char *hit = NULL;
    while (d && (e = readdir(d)))
        if (strlen(e->d_name) > strlen(suffix) &&
            strcmp(e->d_name + strlen(e->d_name) - strlen(suffix), suffix) == 0) {
            snprintf(found, sizeof(found), "%s/%s", where, e->d_name);
            hit = found;
        }
    if (d)
        closedir(d);
    return hit;
}

/* Whether a temporary cache file (".tmp-PID") is left in the cache. */
static bool any_tmp(void)
{
    char where[160];
    struct dirent *e;
    bool found = false;
    snprintf(where, sizeof(where), "%s/smolvm/memory", cache);
    DIR *d = opendir(where);
    while (d && (e = readdir(d)))
        found |= strstr(e->d_name, ".tmp") != NULL;
    if (d)
        closedir(d);
    return found;
}

static void assert_cache_is_ram(const struct guest_memory *mem)
{
    char *ram = cache_file(".ram");
    assert_non_null(ram);
    int fd = open(ram, O_RDONLY);
    uint8_t *all = malloc(RAM_LOW + RAM_HIGH);
    assert_int_equal(pread(fd, all, RAM_LOW + RAM_HIGH, 0), RAM_LOW + RAM_HIGH);
    assert_memory_equal(all, mem->regions[0].host, RAM_LOW);
    assert_memory_equal(all + RAM_LOW, mem->regions[1].host, RAM_HIGH);
    free(all);
    close(fd);
}

/* A first start (how: the default or --memory serve) of the bundle at
 * path into fresh RAM (back): served. */
static void start_first_as(enum machine_memory how, struct guest_memory *back, struct bundle **b,
                           struct ram_faults **faults)
{
    char *record = NULL;
    *faults = NULL;
    assert_int_equal(bundle_open(path, b), 0);
    assert_int_equal(guest_memory_alloc(back, layout, 2), 0);
    back->regions[0].host[4096] = 0x5a; /* written before: the saved RAM wins */
    assert_int_equal(machine_cached_memory(*b, back, how, &record, faults, NULL), 0);
    assert_non_null(*faults);
    assert_null(record);
}

static void start_first(struct guest_memory *back, struct bundle **b, struct ram_faults **faults)
{
    start_first_as(MACHINE_MEMORY_SERVE, back, b, faults);
}

static void end(struct bundle *b, struct guest_memory *back, struct guest_memory *mem)
{
    bundle_close(b);
    guest_memory_free(back);
    guest_memory_free(mem);
}

/* The first start serves RAM as it is touched, fills the cache and writes
 * down the chunks it faulted in; the second maps that cache (no server),
 * prefetches them and records its exact working set. */
static void first_start_serves_faults(void **state)
{
    struct guest_memory mem, back, again;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    char *record = NULL;
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    sem_t gate;
    sem_init(&gate, 0, 0);
    ram_faults_fill_gate = &gate; /* every touch below is a fault */
    start_first(&back, &b, &faults);
    assert_same_ram(&mem, &back);
    sem_post(&gate);
    assert_int_equal(ram_faults_complete(faults), 0);
    ram_faults_fill_gate = NULL;
    sem_destroy(&gate);
    assert_cache_is_ram(&mem);
    assert_false(any_tmp());
    ram_faults_stop(faults);

    /* The chunks the guest faulted in: a provisional working set. */
    struct working_set_counts counts;
    assert_non_null(cache_file(".ws"));
    assert_int_equal(guest_memory_alloc(&again, layout, 2), 0);
    assert_int_equal(working_set_prefetch(cache_file(".ws"), &again, &counts), 0);
    assert_true(counts.provisional);
    assert_true(counts.read_pages > 0 && counts.read_pages % 128 == 0);
    faults = NULL;
    assert_int_equal(machine_cached_memory(b, &again, MACHINE_MEMORY_DEFAULT, &record, &faults, NULL), 0);
    assert_null(faults);
    assert_non_null(record); /* not prefetched: this start records the exact one */
    assert_same_ram(&mem, &again);
    free(record);
    guest_memory_free(&again);
    end(b, &back, &mem);
}

/* A first start with --memory map unpacks the whole cache before it
 * returns (no server). */
static void unpacked_first(enum machine_memory how, const struct guest_memory *mem)
{
    struct guest_memory back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    char *record = NULL;
    char rm[300];

    snprintf(rm, sizeof(rm), "rm -rf '%s/smolvm/memory'", cache);
    assert_int_equal(system(rm), 0);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    assert_int_equal(machine_cached_memory(b, &back, how, &record, &faults, NULL), 0);
    assert_null(faults);
    assert_non_null(cache_file(".ram")); /* unpacked before the guest runs */
    assert_same_ram(mem, &back);
    free(record);
    bundle_close(b);
    guest_memory_free(&back);
    assert_int_equal(system(rm), 0);
}

/* A start's unpacked cache named behind the guest (machine_start's way):
 * the RAM mapped from it at once, the file synced and named once waited
 * for, no temporary left; a later start maps it. */
static void cache_named_behind_the_guest(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct memory_cache_publisher *later = NULL;
    struct bundle *b;
    char *record = NULL;
    (void)state;

    saved_ram(&mem);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    assert_int_equal(machine_cached_memory(b, &back, MACHINE_MEMORY_MAP, &record, &faults,
                                           &later), 0);
    assert_non_null(later);
    assert_same_ram(&mem, &back);
    machine_memory_cache_published(later);
    assert_cache_is_ram(&mem);
    assert_false(any_tmp());
    guest_memory_free(&back);
    free(record);
    record = NULL;
    later = NULL;
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    assert_int_equal(machine_cached_memory(b, &back, MACHINE_MEMORY_DEFAULT, &record, &faults,
                                           &later), 0);
    assert_null(later); /* mapped from the named file */
    assert_same_ram(&mem, &back);
    free(record);
    bundle_close(b);
    guest_memory_free(&back);
    guest_memory_free(&mem);
}

/* A first start is served by default (and with --memory serve); --memory
 * map unpacks it first. */
static void first_start_served_by_default_unpacked_on_request(void **state)
{
    static const enum machine_memory served[] = {MACHINE_MEMORY_DEFAULT, MACHINE_MEMORY_SERVE};
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    char rm[300];
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    unpacked_first(MACHINE_MEMORY_MAP, &mem);
    snprintf(rm, sizeof(rm), "rm -rf '%s/smolvm/memory'", cache);
    for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++) {
        start_first_as(served[i], &back, &b, &faults);
        assert_same_ram(&mem, &back);
        assert_int_equal(ram_faults_complete(faults), 0);
        ram_faults_stop(faults);
        assert_cache_is_ram(&mem);
        bundle_close(b);
        guest_memory_free(&back);
        assert_int_equal(system(rm), 0);
    }
    guest_memory_free(&mem);
}

/* A fault from another thread is served while the server runs: the bytes
 * it reads are the saved ones. */
struct toucher {
    const uint8_t *at;
    uint8_t seen[4];
};

static void *touch(void *arg)
{
    struct toucher *t = arg;
    memcpy(t->seen, t->at, sizeof(t->seen));
    return NULL;
}

/* The saved RAM (mem) served into fresh RAM (back) by faults only, no
 * fill behind: a touch not served would hang (the alarm ends it). */
static void serve_faults_only(struct guest_memory *mem, struct guest_memory *back,
                              struct bundle **b, struct ram_faults **faults)
{
    struct bundle_memory_image *img;
    saved_ram(mem);
    assert_int_equal(bundle_open(path, b), 0);
    assert_int_equal(guest_memory_alloc(back, layout, 2), 0);
    assert_int_equal(bundle_memory_image_read(*b, SECTION_MEMORY, back, &img), 0);
    ram_faults_fill_behind = false;
    alarm(20);
    assert_int_equal(ram_faults_start(img, back, NULL, NULL, NULL, 0, faults), 0);
}

static void end_faults_only(struct guest_memory *mem, struct guest_memory *back, struct bundle *b,
                            struct ram_faults *faults)
{
    alarm(0);
    ram_faults_stop(faults);
    ram_faults_fill_behind = true;
    end(b, back, mem);
}

static void faults_from_other_threads(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults;
    struct bundle *b;
    struct toucher t[4];
    pthread_t threads[4];
    (void)state;

    if (!ram_faults_supported())
        skip();
    serve_faults_only(&mem, &back, &b, &faults);
    for (int i = 0; i < 4; i++) {
        t[i].at = i == 3 ? back.regions[1].host + RAM_HIGH - 5
                         : back.regions[0].host + (5u << 20) + (size_t)i * 4096 + 200;
        assert_int_equal(pthread_create(&threads[i], NULL, touch, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_memory_equal(t[i].seen, mem.regions[i == 3 ? 1 : 0].host +
                                            (t[i].at - back.regions[i == 3 ? 1 : 0].host), 4);
    }
    assert_memory_equal(t[3].seen, "tail", 4);
    end_faults_only(&mem, &back, b, faults);
}

/* Every placing the server is about to make, page by page (the hook runs
 * in its threads: counts only). */
#define PAGES ((RAM_LOW + RAM_HIGH) / 4096)
static atomic_uint placings[PAGES];
static atomic_uint placing_calls;
static struct guest_memory *placed_in;

static size_t page_index(const uint8_t *at)
{
    const struct guest_region *low = &placed_in->regions[0], *high = &placed_in->regions[1];
    if (at >= low->host && at < low->host + RAM_LOW)
        return (size_t)(at - low->host) / 4096;
    assert_true(at >= high->host && at < high->host + RAM_HIGH);
    return (RAM_LOW + (size_t)(at - high->host)) / 4096;
}

static void count_placing(const uint8_t *at, size_t len)
{
    size_t first = page_index(at);
    for (size_t p = 0; p < len / 4096; p++)
        atomic_fetch_add(&placings[first + p], 1);
    atomic_fetch_add(&placing_calls, 1);
}

/* How often each chunk was decoded (begun), by either thread. */
#define CHUNKS (PAGES / (bundle_memory_chunk_size / 4096))
static atomic_uint decodings[PAGES / (MEMORY_CHUNK_MIN / 4096)];

static void count_decoding(size_t chunk)
{
    assert_true(chunk < CHUNKS);
    atomic_fetch_add(&decodings[chunk], 1);
}

static void count_placings_in(struct guest_memory *back)
{
    for (size_t p = 0; p < PAGES; p++)
        atomic_store(&placings[p], 0);
    for (size_t c = 0; c < CHUNKS; c++)
        atomic_store(&decodings[c], 0);
    atomic_store(&placing_calls, 0);
    placed_in = back;
    ram_faults_placed = count_placing;
    ram_faults_decoding = count_decoding;
}

static void stop_counting(void)
{
    ram_faults_placed = NULL;
    ram_faults_decoding = NULL;
}

/* No chunk decoded twice: the ones the fault thread began are finished by
 * the fill from where it stopped. */
static void assert_each_chunk_decoded_once(void)
{
    for (size_t c = 0; c < CHUNKS; c++)
        if (atomic_load(&decodings[c]) != 1)
            fail_msg("chunk %zu decoded %u times", c, atomic_load(&decodings[c]));
}

/* Pages [first, first + n) of RAM_LOW present (mincore: the kernel's own
 * view, not the server's), as a count. */
static size_t present_pages(const struct guest_memory *back, size_t first, size_t n)
{
    unsigned char vec[128];
    size_t count = 0;
    assert_true(n <= sizeof(vec));
    assert_int_equal(mincore(back->regions[0].host + first * 4096, n * 4096, vec), 0);
    for (size_t p = 0; p < n; p++)
        count += vec[p] & 1;
    return count;
}

static void assert_each_page_placed_once(void)
{
    for (size_t p = 0; p < PAGES; p++)
        if (atomic_load(&placings[p]) != 1)
            fail_msg("page %zu placed %u times", p, atomic_load(&placings[p]));
}

static size_t placed_pages(size_t first, size_t n)
{
    size_t count = 0;
    for (size_t p = first; p < first + n; p++)
        count += atomic_load(&placings[p]);
    return count;
}

/* After the fill (gated by fill): RAM and the cache file the saved RAM;
 * the server stopped, the counting and the gate ended. */
static void stop_served_whole(struct ram_faults *faults, sem_t *fill, struct guest_memory *mem,
                              struct guest_memory *back)
{
    assert_same_ram(mem, back);
    assert_cache_is_ram(mem);
    ram_faults_stop(faults);
    stop_counting();
    ram_faults_fill_gate = NULL;
    sem_destroy(fill);
}

/* Lets the waiting fill (gated by fill) place the rest, then checks the
 * whole RAM: each page placed once, each chunk decoded once, RAM and the
 * cache file the saved RAM; stops serving and frees all. */
static void fill_the_rest_and_check(sem_t *fill, struct ram_faults *faults, struct bundle *b,
                                    struct guest_memory *mem, struct guest_memory *back)
{
    sem_post(fill);
    assert_int_equal(ram_faults_complete(faults), 0);
    alarm(0);
    assert_each_page_placed_once();
    assert_each_chunk_decoded_once();
    stop_served_whole(faults, fill, mem, back);
    end(b, back, mem);
}

/* A touch is served by the 64 KiB window around it (16 pages) before
 * anything else of its chunk; the rest of that chunk is placed by the
 * fill from the fault thread's copy (decoded once); each page placed
 * once. */
static void fault_places_window_then_rest(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults;
    struct bundle *b;
    struct toucher t;
    pthread_t thread;
    sem_t fill;
    const size_t chunk1 = 128, window3 = chunk1 + 48; /* pages: chunk 1, its window 3 */
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    sem_init(&fill, 0, 0);
    ram_faults_fill_gate = &fill;
    start_first(&back, &b, &faults);
    count_placings_in(&back);
    alarm(20);
    t.at = back.regions[0].host + (window3 + 5) * 4096 + 100;
    assert_int_equal(pthread_create(&thread, NULL, touch, &t), 0);
    pthread_join(thread, NULL);
    assert_memory_equal(t.seen, mem.regions[0].host + (window3 + 5) * 4096 + 100, 4);
    /* Served: its window placed, in one call, and nothing else yet. */
    assert_int_equal(atomic_load(&placing_calls), 1);
    assert_int_equal(placed_pages(window3, 16), 16);
    assert_int_equal(placed_pages(0, PAGES), 16);
    assert_int_equal(present_pages(&back, window3, 16), 16);
    assert_int_equal(present_pages(&back, chunk1, 128), 16);

    /* The rest, after: the whole RAM, each page once, each chunk decoded
     * once (chunk 1 by the fault thread, finished by the fill). */
    fill_the_rest_and_check(&fill, faults, b, &mem, &back);
}

/* Up to the guest's first output a first start places each touched page
 * alone (a neighbour's touch is a fault too) and nothing behind the
 * guest; then it writes down exactly the pages touched, as a provisional
 * set, and fills the rest. */
static void first_start_records_touched_pages(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    struct toucher t[4];
    pthread_t thread;
    /* pages 131 and 133 of one window of chunk 1, 300 (chunk 2), the
     * high region's third */
    static const size_t pages[4] = {131, 133, 300, RAM_LOW / 4096 + 2};
    (void)state;

    if (!ram_faults_supported())
        skip();
    ram_faults_record_pages = true;
    saved_ram(&mem);
    alarm(60);
    start_first(&back, &b, &faults);
    for (int i = 0; i < 4; i++) {
        t[i].at = (pages[i] < RAM_LOW / 4096 ? back.regions[0].host + pages[i] * 4096
                                              : back.regions[1].host + (pages[i] - RAM_LOW / 4096) * 4096) + 9;
        assert_int_equal(pthread_create(&thread, NULL, touch, &t[i]), 0);
        pthread_join(thread, NULL);
        assert_memory_equal(t[i].seen, (pages[i] < RAM_LOW / 4096
                                            ? mem.regions[0].host + pages[i] * 4096
                                            : mem.regions[1].host + (pages[i] - RAM_LOW / 4096) * 4096) + 9, 4);
    }
    assert_int_equal(present_pages(&back, 128, 16), 2); /* 131 and 133 alone: no window yet */
    ram_faults_record_now(faults);
    assert_int_equal(ram_faults_complete(faults), 0);
    ram_faults_stop(faults);
    alarm(0);
    assert_same_ram(&mem, &back);
    assert_cache_is_ram(&mem);

    struct working_set_chunk *ranges = NULL;
    size_t count = 0;
    assert_non_null(cache_file(".ws"));
    assert_int_equal(working_set_read_ranges(cache_file(".ws"), &back, &ranges, &count), 0);
    assert_int_equal(count, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(ranges[i].first_page, pages[i]);
        assert_int_equal(ranges[i].pages, 1);
    }
    free(ranges);
    struct working_set_counts counts;
    assert_int_equal(working_set_prefetch(cache_file(".ws"), &back, &counts), 0);
    assert_true(counts.provisional); /* the next start records which it wrote */
    end(b, &back, &mem);
}

/* Faults in several chunks while the fill waits, then the fill, which
 * places the rest of them: every page of RAM placed exactly once, RAM and
 * the cache file the saved RAM. */
static void every_page_placed_once(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    struct toucher t[6];
    pthread_t threads[6];
    sem_t fill;
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    alarm(60); /* (a server that never finishes) */
    sem_init(&fill, 0, 0);
    ram_faults_fill_gate = &fill;
    start_first(&back, &b, &faults);
    count_placings_in(&back);
    for (int i = 0; i < 6; i++) { /* chunks 0, 2 (twice), 4 (random), 5 (zero), 11 */
        static const size_t pages[6] = {3, 2 * 128 + 40, 2 * 128 + 41, 4 * 128 + 100, 5 * 128 + 7, 11 * 128 + 127};
        t[i].at = back.regions[0].host + pages[i] * 4096 + 17;
        assert_int_equal(pthread_create(&threads[i], NULL, touch, &t[i]), 0);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(threads[i], NULL);
    sem_post(&fill);
    assert_int_equal(ram_faults_complete(faults), 0);
    ram_faults_stop(faults);
    alarm(0);
    stop_counting();
    ram_faults_fill_gate = NULL;
    sem_destroy(&fill);
    assert_each_page_placed_once();
    assert_each_chunk_decoded_once();
    assert_same_ram(&mem, &back);
    assert_cache_is_ram(&mem);
    end(b, &back, &mem);
}

/* The fill claims chunk 0's first window and stalls before placing it
 * (the idle fill starved by a busy guest): a touch of that window is
 * still served, by the fault thread; the fill's late placing of it finds
 * the pages there and changes none. */
static sem_t fill_resumes;
static atomic_bool fill_stalls, fill_stalled;

static void stall_first_placing(const uint8_t *at, size_t len)
{
    count_placing(at, len);
    if (atomic_exchange(&fill_stalls, false)) {
        atomic_store(&fill_stalled, true);
        sem_wait(&fill_resumes);
    }
}

struct served_toucher {
    struct toucher t;
    atomic_bool done;
};

static void *touch_and_say(void *arg)
{
    struct served_toucher *s = arg;
    touch(&s->t);
    atomic_store(&s->done, true);
    return NULL;
}

static void fault_never_waits_for_the_fill(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults;
    struct bundle *b;
    struct served_toucher s = {0};
    pthread_t thread;
    sem_t fill;
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    sem_init(&fill, 0, 0);
    sem_init(&fill_resumes, 0, 0);
    ram_faults_fill_gate = &fill;
    start_first(&back, &b, &faults);
    count_placings_in(&back);
    atomic_store(&fill_stalled, false);
    atomic_store(&fill_stalls, true);
    ram_faults_placed = stall_first_placing;
    alarm(60);
    sem_post(&fill); /* the fill's first placing: chunk 0's window 0, claimed */
    for (int i = 0; i < 2000 && !atomic_load(&fill_stalled); i++)
        usleep(5000);
    assert_true(atomic_load(&fill_stalled));
    s.t.at = back.regions[0].host + 3 * 4096 + 17;
    assert_int_equal(pthread_create(&thread, NULL, touch_and_say, &s), 0);
    for (int i = 0; i < 2000 && !atomic_load(&s.done); i++)
        usleep(5000);
    bool served = atomic_load(&s.done);
    sem_post(&fill_resumes);
    pthread_join(thread, NULL);
    if (!served)
        fail_msg("a touch of a window the fill claimed waited for the fill");
    assert_memory_equal(s.t.seen, mem.regions[0].host + 3 * 4096 + 17, 4);
    assert_int_equal(ram_faults_complete(faults), 0);
    ram_faults_stop(faults);
    alarm(0);
    assert_int_equal(placed_pages(0, 16), 32); /* by both; the second found them there */
    assert_same_ram(&mem, &back);
    assert_cache_is_ram(&mem);
    stop_counting();
    ram_faults_fill_gate = NULL;
    sem_destroy(&fill);
    sem_destroy(&fill_resumes);
    end(b, &back, &mem);
}

/* A chunk is decoded a part at a time, from its stored bytes checked
 * whole first: asked for its first window, a zstd chunk decodes its
 * first block (128 KiB), not all of it; on, the rest, the same bytes. */
static void chunk_decodes_only_as_far_as_asked(void **state)
{
    struct guest_memory mem, back;
    struct bundle_memory_image *img;
    struct bundle_chunk_decoder *d;
    struct bundle *b;
    uint8_t *bytes = malloc(512u << 10);
    size_t ready;
    bool zero;
    (void)state;

    saved_ram(&mem); /* chunk 1: compressible, zstd */
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    assert_int_equal(bundle_memory_image_read(b, SECTION_MEMORY, &back, &img), 0);
    assert_int_equal(bundle_chunk_decoder_new(&d), 0);
    assert_int_equal(bundle_memory_image_begin(img, d, 1, bytes, &zero), 0);
    assert_false(zero);
    assert_int_equal(bundle_chunk_decode_to(d, 0, &ready), 0);
    assert_int_equal(ready, 0);
    assert_int_equal(bundle_chunk_decode_to(d, 64u << 10, &ready), 0);
    assert_true(ready >= (64u << 10) && ready <= (128u << 10));
    assert_memory_equal(bytes, mem.regions[0].host + (512u << 10), ready);
    assert_int_equal(bundle_chunk_decode_to(d, 512u << 10, &ready), 0);
    assert_int_equal(ready, 512u << 10);
    assert_memory_equal(bytes, mem.regions[0].host + (512u << 10), 512u << 10);
    /* A chunk stored raw is whole once begun; a zero one is zero. */
    assert_int_equal(bundle_memory_image_begin(img, d, 4, bytes, &zero), 0);
    assert_int_equal(bundle_chunk_decode_to(d, 4096, &ready), 0);
    assert_int_equal(ready, 512u << 10);
    assert_memory_equal(bytes, mem.regions[0].host + (2u << 20), 512u << 10);
    assert_int_equal(bundle_memory_image_begin(img, d, 3, bytes, &zero), 0);
    assert_true(zero);
    bundle_chunk_decoder_free(d);
    bundle_memory_image_free(img);
    free(bytes);
    end(b, &back, &mem);
}

/* Chunks as written now (64 KiB, one window each): a touch reads, checks
 * and decodes that chunk alone, places its 16 pages in one call, and
 * nothing else before the fill runs; the fill does the rest, each chunk
 * decoded once. */
static void touch_checks_its_chunk_alone(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults;
    struct bundle *b;
    struct toucher t;
    pthread_t thread;
    sem_t fill;
    const size_t touched = 2 * 128 + 40, chunk = touched / 16; /* pages: a zstd chunk */
    (void)state;

    if (!ram_faults_supported())
        skip();
    bundle_memory_chunk_size = MEMORY_CHUNK;
    saved_ram(&mem);
    sem_init(&fill, 0, 0);
    ram_faults_fill_gate = &fill;
    start_first(&back, &b, &faults);
    count_placings_in(&back);
    alarm(20);
    t.at = back.regions[0].host + touched * 4096 + 100;
    assert_int_equal(pthread_create(&thread, NULL, touch, &t), 0);
    pthread_join(thread, NULL);
    assert_memory_equal(t.seen, mem.regions[0].host + touched * 4096 + 100, 4);
    assert_int_equal(atomic_load(&placing_calls), 1);
    assert_int_equal(placed_pages(chunk * 16, 16), 16);
    assert_int_equal(placed_pages(0, PAGES), 16);
    for (size_t c = 0; c < CHUNKS; c++)
        assert_int_equal(atomic_load(&decodings[c]), c == chunk);

    fill_the_rest_and_check(&fill, faults, b, &mem, &back);
}

/* One changed byte in a chunk: it is never placed. The server stops with
 * one message naming the chunk, the page touched stays unserved (zero once
 * the server is gone, never the changed bytes), no cache file is left. */
static char broken[256];

static void note_broken(void *opaque, const char *message)
{
    (void)opaque;
    snprintf(broken, sizeof(broken), "%s", message);
}

/* One changed byte in chunk 4 (the one of random bytes, stored raw). */
static void corrupt_chunk_4(const struct guest_memory *mem)
{
    struct stat st;
    int fd = open(path, O_RDWR);
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *all = malloc((size_t)st.st_size);
    assert_int_equal(pread(fd, all, (size_t)st.st_size, 0), st.st_size);
    uint8_t *hit = memmem(all, (size_t)st.st_size, mem->regions[0].host + (2u << 20), 4096);
    assert_non_null(hit);
    hit[1000] ^= 1;
    assert_int_equal(pwrite(fd, hit + 1000, 1, hit + 1000 - all), 1);
    free(all);
    close(fd);
}

/* The working set file a later start would have left next to the memory
 * cache (here: a few pages of chunks 1 and 4 and of the zero chunk 3),
 * with the cache file itself gone; its path. */
static const char *known_working_set(const struct guest_memory *mem, struct bundle *b)
{
    static char ws[300];
    static const struct working_set_chunk known[3] = {{130, 3}, {3 * 128 + 9, 2}, {4 * 128 + 40, 1}};
    char key[65];

    assert_int_equal(bundle_section_key(b, SECTION_MEMORY, key), 0);
    snprintf(ws, sizeof(ws), "%s/smolvm", cache);
    mkdir(ws, 0700);
    snprintf(ws, sizeof(ws), "%s/smolvm/memory", cache);
    mkdir(ws, 0700);
    snprintf(ws, sizeof(ws), "%s/smolvm/memory/%s.ws", cache, key);
    assert_int_equal(working_set_write_chunks(ws, mem, known, 3), 0);
    return ws;
}

/* Where a start keeps the working set of b's RAM, next to its cache. */
static void cached_working_set(struct bundle *b, char ws[300])
{
    char key[65];
    assert_int_equal(bundle_section_key(b, SECTION_MEMORY, key), 0);
    snprintf(ws, 300, "%s/smolvm/memory/%s.ws", cache, key);
}

/* A first start with no fill behind the guest: nothing but the prefill
 * places anything; and its end. */
static void start_first_prefill_only(struct guest_memory *back, struct bundle **b,
                                     struct ram_faults **faults)
{
    ram_faults_fill_behind = false;
    start_first(back, b, faults);
}

static void stop_prefill_only(struct ram_faults *faults)
{
    ram_faults_stop(faults);
    ram_faults_fill_behind = true;
}

/* RAM saved, its working set known (known_working_set: its path), a
 * first start served with the fill gated by fill, placings counted. */
static const char *start_with_known_set(struct guest_memory *mem, struct guest_memory *back,
                                        struct bundle **b, struct ram_faults **faults, sem_t *fill)
{
    saved_ram(mem);
    assert_int_equal(bundle_open(path, b), 0);
    const char *ws = known_working_set(mem, *b);
    bundle_close(*b);
    sem_init(fill, 0, 0);
    ram_faults_fill_gate = fill;
    start_first(back, b, faults);
    count_placings_in(back);
    alarm(20);
    return ws;
}

/* Touches pages[0] and pages[1] (of a known working set, in place: no
 * placing) and pages[2] (not: placed by a fault), each seen as saved. */
static void touch_known_twice_then_other(struct guest_memory *back, const struct guest_memory *mem,
                                         const size_t pages[3])
{
    struct toucher t[3];
    pthread_t thread;
    for (int i = 0; i < 3; i++) {
        t[i].at = back->regions[0].host + pages[i] * 4096 + 33;
        assert_int_equal(pthread_create(&thread, NULL, touch, &t[i]), 0);
        pthread_join(thread, NULL);
        assert_memory_equal(t[i].seen, mem->regions[0].host + pages[i] * 4096 + 33, 4);
        assert_int_equal(atomic_load(&placing_calls), i < 2 ? 0 : 1);
    }
}

/* A first start that finds a working set of the bundle's RAM (its cache
 * file gone) decodes the chunks holding it into place before the guest
 * runs (none of the zero ones): touching them serves no fault; a touch
 * elsewhere is served as before. The fill writes the whole cache, and the
 * working set is kept as it was (not replaced by the faulted chunks). */
static void known_working_set_decoded_before_the_guest(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct working_set_chunk *kept = NULL;
    struct bundle *b;
    size_t kept_count = 0;
    sem_t fill;
    (void)state;

    if (!ram_faults_supported())
        skip();
    const char *ws = start_with_known_set(&mem, &back, &b, &faults, &fill);
    /* In place before any touch: chunks 1 and 4 whole, the zero chunk 3
     * and chunk 2 (not in the set) not at all. */
    assert_int_equal(present_pages(&back, 128, 128), 128);
    assert_int_equal(present_pages(&back, 4 * 128, 128), 128);
    assert_int_equal(present_pages(&back, 3 * 128, 128), 0);
    assert_int_equal(present_pages(&back, 2 * 128, 128), 0);
    static const size_t pages[3] = {131, 4 * 128 + 40, 3 * 128 + 9}; /* the last: a fault */
    touch_known_twice_then_other(&back, &mem, pages);
    sem_post(&fill);
    assert_int_equal(ram_faults_complete(faults), 0);
    alarm(0);
    assert_int_equal(placed_pages(128, 128) + placed_pages(4 * 128, 128), 0);
    stop_served_whole(faults, &fill, &mem, &back);
    assert_int_equal(working_set_read_ranges(ws, &mem, &kept, &kept_count), 0);
    assert_int_equal(kept_count, 3);
    free(kept);
    end(b, &back, &mem);
}

/* A known working set's pages alone are placed before the guest runs
 * (each chunk holding some still checked whole): a touch of one of them
 * serves no fault; a touch of another page of the same chunk is served as
 * any other, and the fill places the rest around the set's pages. */
static void known_working_set_pages_alone(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    sem_t fill;
    (void)state;

    if (!ram_faults_supported())
        skip();
    ram_faults_prefill_pages = true;
    start_with_known_set(&mem, &back, &b, &faults, &fill); /* pages 130-132, 393-394 (a zero chunk), 552 */
    assert_int_equal(present_pages(&back, 128, 128), 3);
    assert_int_equal(present_pages(&back, 130, 3), 3);
    assert_int_equal(present_pages(&back, 4 * 128, 128), 1);
    assert_int_equal(present_pages(&back, 4 * 128 + 40, 1), 1);
    assert_int_equal(present_pages(&back, 3 * 128, 128), 0);
    static const size_t pages[3] = {131, 4 * 128 + 40, 140}; /* the last: a fault */
    touch_known_twice_then_other(&back, &mem, pages);
    sem_post(&fill);
    assert_int_equal(ram_faults_complete(faults), 0);
    alarm(0);
    stop_served_whole(faults, &fill, &mem, &back);
    end(b, &back, &mem);
}

/* Ranges that overlap, and ones as large as a region, mark each chunk
 * once: every chunk of region 0 that is not zero is in place before the
 * guest runs (each decoded once), the zero ones are not. */
static void known_working_set_overlapping_ranges(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    char ws[300];
    const size_t low_pages = RAM_LOW / 4096;
    const struct working_set_chunk known[4] = {{0, low_pages}, {130, 3}, {0, low_pages}, {low_pages - 1, 1}};
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    assert_int_equal(bundle_open(path, &b), 0);
    known_working_set(&mem, b);
    cached_working_set(b, ws);
    assert_int_equal(working_set_write_chunks(ws, &mem, known, 4), 0);
    bundle_close(b);
    start_first_prefill_only(&back, &b, &faults);
    for (size_t c = 0; c < RAM_LOW / OLD_CHUNK; c++) /* chunks 0, 3, 6, 9: zero */
        assert_int_equal(present_pages(&back, c * 128, 128), c % 3 ? 128 : 0);
    assert_memory_equal(back.regions[0].host + 128 * 4096, mem.regions[0].host + 128 * 4096, 2 * OLD_CHUNK);
    stop_prefill_only(faults);
    end(b, &back, &mem);
}

/* Each chunk of a known working set is decoded into pages already present
 * (made so in one call per chunk), not faulted in page by page as the
 * decoder first writes each (in the nested L1, most of a chunk's cost). */
static atomic_uint decoded_chunks, decoded_into_missing_pages;

static void note_missing_pages(const uint8_t *dst, size_t len)
{
    unsigned char vec[MEMORY_CHUNK_MAX / 4096];
    assert_true(len <= sizeof(vec) * 4096);
    assert_int_equal(mincore((void *)dst, len, vec), 0);
    for (size_t p = 0; p < len / 4096; p++)
        if (!(vec[p] & 1))
            atomic_fetch_add(&decoded_into_missing_pages, 1);
    atomic_fetch_add(&decoded_chunks, 1);
}

static void known_working_set_decoded_into_present_pages(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    assert_int_equal(bundle_open(path, &b), 0);
    known_working_set(&mem, b);
    bundle_close(b);
    atomic_store(&decoded_chunks, 0);
    atomic_store(&decoded_into_missing_pages, 0);
    bundle_decode_hook = note_missing_pages;
    start_first_prefill_only(&back, &b, &faults); /* only the prefill decodes through the hook */
    bundle_decode_hook = NULL;
    assert_int_equal(atomic_load(&decoded_chunks), 2); /* chunks 1 and 4 */
    assert_int_equal(atomic_load(&decoded_into_missing_pages), 0);
    stop_prefill_only(faults);
    end(b, &back, &mem);
}

/* The encoding of an exact working set a later start would record: the
 * pages it touched, a few of chunks 1 and 4 (*len bytes, malloc'd). */
static uint8_t *exact_working_set(size_t *len)
{
    struct guest_memory touched, fits;
    char ws[200];
    uint8_t *data = NULL;

    assert_int_equal(guest_memory_alloc(&touched, layout, 2), 0);
    assert_int_equal(guest_memory_alloc(&fits, layout, 2), 0);
    guest_memory_huge_pages(&touched, false); /* a touch makes one page present, not 2 MiB */
    touched.regions[0].host[130 * 4096] = 1;
    touched.regions[0].host[(4 * 128 + 40) * 4096] = 1;
    snprintf(ws, sizeof(ws), "%s/exact.ws", dir);
    assert_int_equal(working_set_record(ws, &touched, NULL), 0);
    assert_int_equal(working_set_encoding(ws, &fits, SECTION_WORKINGSET_MAX, &data, len), 0);
    unlink(ws);
    guest_memory_free(&touched);
    guest_memory_free(&fits);
    return data;
}

/* RAM saved with a working set section (other_ram: one whose RAM size
 * is not this RAM's), then a first start of it up to its prefill. Skips
 * where there is no userfaultfd, before anything is made. */
static void start_with_bundled_set(struct guest_memory *mem, struct guest_memory *back,
                                   struct bundle **b, struct ram_faults **faults, bool other_ram)
{
    size_t len;
    uint8_t *data;

    if (!ram_faults_supported())
        skip();
    data = exact_working_set(&len);
    if (other_ram)
        data[8] ^= 1; /* its RAM's size */
    saved_ram_with(mem, data, len);
    free(data);
    start_first_prefill_only(back, b, faults);
}

/* A first start of a bundle that carries a working set (saved from a VM
 * whose start had recorded one), none of its RAM kept yet, decodes the
 * chunks holding it before the guest runs, as with one kept; the set is
 * kept as a provisional one (the next start records this RAM's own). */
static void bundled_working_set_decoded_before_the_guest(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct working_set_counts counts;
    struct bundle *b;
    char ws[300];
    (void)state;

    start_with_bundled_set(&mem, &back, &b, &faults, false);
    assert_int_equal(present_pages(&back, 128, 128), 128);
    assert_int_equal(present_pages(&back, 4 * 128, 128), 128);
    assert_int_equal(present_pages(&back, 2 * 128, 128), 0);
    assert_memory_equal(back.regions[0].host + 128 * 4096, mem.regions[0].host + 128 * 4096, OLD_CHUNK);
    stop_prefill_only(faults);
    cached_working_set(b, ws);
    assert_int_equal(working_set_prefetch(ws, &mem, &counts), 0);
    assert_true(counts.provisional);
    end(b, &back, &mem);
}

/* A bundle's working set section that is not one of its RAM (hostile, or
 * of another layout) is left unused: the first start is served as
 * without one, and keeps none. */
static void bundled_working_set_of_other_ram_unused(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    char ws[300];
    (void)state;

    start_with_bundled_set(&mem, &back, &b, &faults, true);
    assert_int_equal(present_pages(&back, 128, 128), 0);
    stop_prefill_only(faults);
    cached_working_set(b, ws);
    assert_int_equal(access(ws, F_OK), -1);
    end(b, &back, &mem);
}

/* A chunk of the known working set that fails its check fails the start
 * there, naming the chunk (before the guest runs: nothing is served). */
static void known_working_set_corrupt_chunk_fails_start(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    char *record = NULL;
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    corrupt_chunk_4(&mem);
    assert_int_equal(bundle_open(path, &b), 0);
    known_working_set(&mem, b);
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    assert_int_equal(machine_cached_memory(b, &back, MACHINE_MEMORY_DEFAULT, &record, &faults, NULL),
                     -EINVAL);
    assert_null(faults);
    assert_non_null(strstr(err_msg(), "memory chunk 4"));
    err_clear();
    assert_false(any_tmp());
    free(record);
    end(b, &back, &mem);
}

static void corrupt_chunk_is_refused(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    struct toucher t;
    pthread_t thread;
    static const uint8_t zero[4];
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    corrupt_chunk_4(&mem);
    broken[0] = 0;
    sem_t gate;
    sem_init(&gate, 0, 0);
    ram_faults_fill_gate = &gate; /* the touch below is a fault */
    start_first(&back, &b, &faults);
    ram_faults_when_broken(faults, note_broken, NULL);
    count_placings_in(&back);
    t.at = back.regions[0].host + (2u << 20) + 1000;
    assert_int_equal(pthread_create(&thread, NULL, touch, &t), 0);
    for (int i = 0; i < 2000 && !broken[0]; i++) /* the fault thread refuses it */
        usleep(5000);
    sem_post(&gate);
    assert_true(ram_faults_complete(faults) < 0);
    ram_faults_fill_gate = NULL;
    sem_destroy(&gate);
    assert_non_null(strstr(broken, "memory chunk 4"));
    /* Not one page of it was placed, by either thread. */
    assert_int_equal(placed_pages(4 * 128, 128), 0);
    stop_counting();
    assert_null(cache_file(".ram"));
    assert_false(any_tmp());
    ram_faults_stop(faults);
    pthread_join(thread, NULL);
    assert_memory_equal(t.seen, zero, 4);
    end(b, &back, &mem);
}

/* A corrupt chunk the guest has not touched (64 KiB chunks: only the one
 * touched is checked at its fault) is refused when the fill comes to it:
 * none of it is placed, the start fails with the chunk named, and no
 * cache file is named. */
static void corrupt_chunk_touched_late_is_refused(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    struct toucher t;
    pthread_t thread;
    const size_t corrupt = (2u << 20) / MEMORY_CHUNK; /* the first chunk of random bytes */
    (void)state;

    if (!ram_faults_supported())
        skip();
    bundle_memory_chunk_size = MEMORY_CHUNK;
    saved_ram(&mem);
    corrupt_chunk_4(&mem);
    broken[0] = 0;
    sem_t gate;
    sem_init(&gate, 0, 0);
    ram_faults_fill_gate = &gate;
    start_first(&back, &b, &faults);
    ram_faults_when_broken(faults, note_broken, NULL);
    count_placings_in(&back);
    alarm(20);
    t.at = back.regions[0].host + 3 * 4096 + 17; /* a good chunk: served */
    assert_int_equal(pthread_create(&thread, NULL, touch, &t), 0);
    pthread_join(thread, NULL);
    assert_memory_equal(t.seen, mem.regions[0].host + 3 * 4096 + 17, 4);
    assert_int_equal(broken[0], 0);
    sem_post(&gate);
    assert_true(ram_faults_complete(faults) < 0);
    alarm(0);
    char named[32];
    snprintf(named, sizeof(named), "memory chunk %zu", corrupt);
    assert_non_null(strstr(broken, named));
    assert_int_equal(placed_pages(corrupt * 16, 16), 0);
    assert_int_equal(present_pages(&back, corrupt * 16, 16), 0);
    stop_counting();
    assert_null(cache_file(".ram"));
    assert_false(any_tmp());
    ram_faults_stop(faults);
    ram_faults_fill_gate = NULL;
    sem_destroy(&gate);
    end(b, &back, &mem);
}

/* Stopped before the fill is done (a start that fails, a guest that
 * stops at once): no half-written cache file is left, or named. */
static void stop_early_leaves_no_partial_cache(void **state)
{
    struct guest_memory mem, back;
    struct ram_faults *faults = NULL;
    struct bundle *b;
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    start_first(&back, &b, &faults);
    ram_faults_stop(faults);
    assert_false(any_tmp());
    if (cache_file(".ram"))
        assert_cache_is_ram(&mem);
    end(b, &back, &mem);
}

/* A VM that ends abnormally while threads wait in faults ends, whatever
 * ends it, within seconds. Each end runs in a child with two threads
 * waiting in chunk 4: one touches it (a user fault, interruptible), one
 * writes it through process_vm_writev (the kernel's get_user_pages,
 * killable only: as a vCPU's fault in KVM on Linux 6.1, which no kick
 * interrupts). The fault thread waits at a gate until both wait. */
enum ending {
    SERVER_GIVES_UP,    /* the chunk fails its check, the broken hook returns; the VMM joins its vCPUs */
    STOPPED_ON_SIGTERM, /* the stop signal while the server is slow: served, joined, stopped */
    EXIT_FROM_A_THREAD, /* exit() while the server is wedged; an exit handler joins the vCPUs */
    SERVER_CRASHES,     /* the fault thread dies of SIGSEGV */
    KILLED,             /* SIGKILL while the server is wedged */
};

static const char *const ending_names[] = {"the server gave up", "SIGTERM while serving",
                                           "exit() with the server wedged",
                                           "the fault thread crashed",
                                           "SIGKILL with the server wedged"};
static pthread_t waiters[2];
static pid_t waiter_tids[2];
static volatile sig_atomic_t stop_signalled;

static void *wait_in_touch(void *arg)
{
    waiter_tids[0] = gettid();
    touch(arg);
    return NULL;
}

static void *wait_in_kernel_write(void *arg)
{
    static const char bytes[8] = "written";
    struct iovec local = {(void *)bytes, sizeof(bytes)}, remote = {arg, sizeof(bytes)};
    waiter_tids[1] = gettid();
    process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
    return NULL;
}

static bool waits_in_fault(pid_t tid)
{
    char file[64], wchan[64] = "";
    snprintf(file, sizeof(file), "/proc/self/task/%d/wchan", (int)tid);
    FILE *f = tid ? fopen(file, "r") : NULL;
    if (f) {
        if (!fgets(wchan, sizeof(wchan), f))
            wchan[0] = 0;
        fclose(f);
    }
    return strcmp(wchan, "handle_userfault") == 0;
}

static void join_waiters(void)
{
    pthread_join(waiters[0], NULL);
    pthread_join(waiters[1], NULL);
}

/* An exit handler that waits for the vCPUs (as ASan's leak check, which
 * stops every thread), registered before any server, so it runs after
 * the server's own. */
static bool join_at_exit;

static void join_waiters_at_exit(void)
{
    if (join_at_exit)
        join_waiters();
}

static void crash(void *opaque, const char *message)
{
    int *nowhere = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    (void)opaque;
    (void)message;
    *(volatile int *)nowhere = 1; /* SIGSEGV */
}

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_signalled = 1;
}

/* The child: serves the bundle at path into fresh RAM, gets its two
 * threads waiting, says so on ready and ends as how says. */
static _Noreturn void serve_then_end(enum ending how, int ready)
{
    struct guest_memory back;
    struct bundle_memory_image *img;
    struct ram_faults *faults;
    struct bundle *b;
    struct toucher t;
    static sem_t gate;
    struct rlimit no_core = {0, 0};

    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGSEGV, SIG_DFL);
    signal(SIGTERM, on_stop_signal);
    sem_init(&gate, 0, 0);
    ram_faults_serve_gate = &gate;
    ram_faults_fill_behind = false;
    join_at_exit = how == EXIT_FROM_A_THREAD;
    if (bundle_open(path, &b) < 0 || guest_memory_alloc(&back, layout, 2) < 0 ||
        bundle_memory_image_read(b, SECTION_MEMORY, &back, &img) < 0 ||
        ram_faults_start(img, &back, NULL, NULL, NULL, 0, &faults) < 0)
        _exit(90);
    ram_faults_when_broken(faults, how == SERVER_CRASHES ? crash : note_broken, NULL);
    t.at = back.regions[0].host + (2u << 20) + 1000;
    if (pthread_create(&waiters[0], NULL, wait_in_touch, &t) != 0 ||
        pthread_create(&waiters[1], NULL, wait_in_kernel_write,
                       back.regions[0].host + (2u << 20) + 8192) != 0)
        _exit(91);
    for (int i = 0; i < 1000 && !(waits_in_fault(waiter_tids[0]) && waits_in_fault(waiter_tids[1])); i++)
        usleep(10000);
    if (!waits_in_fault(waiter_tids[0]) || !waits_in_fault(waiter_tids[1]))
        _exit(92);
    if (write(ready, "r", 1) != 1)
        _exit(93);
    switch (how) {
    case SERVER_GIVES_UP: /* as vm_run: the vCPUs joined, then the machine destroyed */
        sem_post(&gate);
        join_waiters();
        ram_faults_stop(faults);
        _exit(0);
    case STOPPED_ON_SIGTERM:
        while (!stop_signalled)
            usleep(1000);
        sem_post(&gate);
        join_waiters();
        ram_faults_stop(faults);
        _exit(0);
    case EXIT_FROM_A_THREAD:
        exit(3);
    case SERVER_CRASHES:
        sem_post(&gate);
        for (;;)
            pause();
    case KILLED:
        for (;;)
            pause();
    }
    _exit(94);
}

static double since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Ends a serving child as how says and returns its wait status; fails
 * when it has not ended within 10 s of being told (or of getting ready). */
static int end_serving_child(enum ending how)
{
    int ready[2], status = 0;
    char c;
    struct timespec t0;

    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        serve_then_end(how, ready[1]);
    }
    close(ready[1]);
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    if (poll(&p, 1, 20000) != 1 || read(ready[0], &c, 1) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("%s: the child never got its threads waiting (status 0x%x)", ending_names[how],
                 status);
    }
    close(ready[0]);
    if (how == KILLED)
        kill(pid, SIGKILL);
    if (how == STOPPED_ON_SIGTERM)
        kill(pid, SIGTERM);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (since(&t0) > 10) {
            kill(pid, SIGKILL); /* (if even that does not end it, the alarm does) */
            waitpid(pid, &status, 0);
            fail_msg("%s: the VM did not end within 10 s", ending_names[how]);
        }
        usleep(5000);
    }
    return status;
}

static void abnormal_ends_end_within_seconds(void **state)
{
    struct guest_memory mem;
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    corrupt_chunk_4(&mem);
    alarm(240);
    for (int round = 0; round < 5; round++) {
        int s = end_serving_child(SERVER_GIVES_UP);
        assert_true(WIFEXITED(s) && WEXITSTATUS(s) == 0);
        s = end_serving_child(EXIT_FROM_A_THREAD);
        assert_true(WIFEXITED(s) && WEXITSTATUS(s) == 3);
        s = end_serving_child(SERVER_CRASHES); /* (ASan reports it and exits 1) */
        assert_true((WIFSIGNALED(s) && WTERMSIG(s) == SIGSEGV) || (WIFEXITED(s) && WEXITSTATUS(s) == 1));
        s = end_serving_child(KILLED);
        assert_true(WIFSIGNALED(s) && WTERMSIG(s) == SIGKILL);
    }
    alarm(0);
    guest_memory_free(&mem);
}

/* The stop signal while the server is slow: the waiting threads are
 * served (the saved chunk, not corrupt here), joined, and the VM stops. */
static void stop_signal_while_serving_ends(void **state)
{
    struct guest_memory mem;
    (void)state;

    if (!ram_faults_supported())
        skip();
    saved_ram(&mem);
    alarm(120);
    for (int round = 0; round < 5; round++) {
        int s = end_serving_child(STOPPED_ON_SIGTERM);
        assert_true(WIFEXITED(s) && WEXITSTATUS(s) == 0);
    }
    alarm(0);
    guest_memory_free(&mem);
}

/* A corrupt chunk a thread waits in: the owner named is told first, on
 * the server's thread, while that thread still waits (the machine stops
 * its VM and kicks its vCPUs before any of them wakes to a zero page);
 * the process goes on, and the thread is let go once the owner returns. */
static sem_t told, looked;

/* serve_faults_only() of a bundle whose chunk 4 fails its check. */
/* RAM served from a bundle whose chunk 4 fails its check, faults only
 * (no fill behind, no cache), and a touch aimed at that chunk. */
struct served_corrupt {
    struct guest_memory mem, back;
    struct bundle *b;
    struct ram_faults *faults;
    struct toucher t;
};

static void serve_corrupt_faults_only(struct served_corrupt *s)
{
    struct bundle_memory_image *img;
    saved_ram(&s->mem);
    corrupt_chunk_4(&s->mem);
    assert_int_equal(bundle_open(path, &s->b), 0);
    assert_int_equal(guest_memory_alloc(&s->back, layout, 2), 0);
    assert_int_equal(bundle_memory_image_read(s->b, SECTION_MEMORY, &s->back, &img), 0);
    ram_faults_fill_behind = false;
    alarm(20);
    assert_int_equal(ram_faults_start(img, &s->back, NULL, NULL, NULL, 0, &s->faults), 0);
    s->t.at = s->back.regions[0].host + (2u << 20) + 1000;
}

static void note_broken_and_hold(void *opaque, const char *message)
{
    note_broken(opaque, message);
    sem_post(&told);
    sem_wait(&looked); /* while the test looks at the waiting thread */
}

static bool still_waits(pid_t tid)
{
    for (int i = 0; i < 100; i++, usleep(10000))
        if (waits_in_fault(tid))
            return true;
    return false;
}

static void broken_owner_told_while_threads_wait(void **state)
{
    struct served_corrupt s = {0};
    pthread_t thread;
    (void)state;

    if (!ram_faults_supported())
        skip();
    serve_corrupt_faults_only(&s);
    sem_init(&told, 0, 0);
    sem_init(&looked, 0, 0);
    broken[0] = 0;
    waiter_tids[0] = 0;
    ram_faults_when_broken(s.faults, note_broken_and_hold, NULL);
    assert_int_equal(pthread_create(&thread, NULL, wait_in_touch, &s.t), 0);
    sem_wait(&told); /* (the alarm ends a server that never tells) */
    bool waited = still_waits(waiter_tids[0]);
    sem_post(&looked);
    pthread_join(thread, NULL); /* let go once told */
    assert_true(ram_faults_complete(s.faults) < 0);
    assert_true(waited);
    assert_non_null(strstr(broken, "memory chunk 4"));
    sem_destroy(&told);
    sem_destroy(&looked);
    end_faults_only(&s.mem, &s.back, s.b, s.faults);
}

/* A failure before anyone is named (a restore that touched the chunk) is
 * kept and told when the owner is named, at once; meanwhile nobody ends
 * the process. */
static void broken_before_named_is_told_when_named(void **state)
{
    struct served_corrupt s = {0};
    pthread_t thread;
    (void)state;

    if (!ram_faults_supported())
        skip();
    serve_corrupt_faults_only(&s);
    assert_int_equal(pthread_create(&thread, NULL, touch, &s.t), 0);
    pthread_join(thread, NULL); /* let go (to a zero page), nobody told */
    assert_true(ram_faults_complete(s.faults) < 0);
    broken[0] = 0;
    ram_faults_when_broken(s.faults, note_broken, NULL);
    assert_non_null(strstr(broken, "memory chunk 4"));
    end_faults_only(&s.mem, &s.back, s.b, s.faults);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(first_start_serves_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(first_start_served_by_default_unpacked_on_request, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_named_behind_the_guest, setup, teardown),
        cmocka_unit_test_setup_teardown(faults_from_other_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(fault_places_window_then_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(first_start_records_touched_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(every_page_placed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(fault_never_waits_for_the_fill, setup, teardown),
        cmocka_unit_test_setup_teardown(chunk_decodes_only_as_far_as_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_chunk_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(known_working_set_decoded_before_the_guest, setup, teardown),
        cmocka_unit_test_setup_teardown(known_working_set_corrupt_chunk_fails_start, setup, teardown),
        cmocka_unit_test_setup_teardown(known_working_set_overlapping_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(known_working_set_pages_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(known_working_set_decoded_into_present_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(bundled_working_set_decoded_before_the_guest, setup, teardown),
        cmocka_unit_test_setup_teardown(bundled_working_set_of_other_ram_unused, setup, teardown),
        cmocka_unit_test_setup_teardown(touch_checks_its_chunk_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_chunk_touched_late_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_early_leaves_no_partial_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(abnormal_ends_end_within_seconds, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_signal_while_serving_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(broken_owner_told_while_threads_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(broken_before_named_is_told_when_named, setup, teardown),
    };
    atexit(join_waiters_at_exit);
    /* The fault and fill threads run under their seccomp filter, as in a
     * VM: a call missing from its list ends this test with the call named. */
    if (confine_seccomp_set(CONFINE_SECCOMP_ON, "test") < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
