/* The working set of a restored guest: which pages are present is asked
 * of the kernel (/proc/self/pagemap), both when recording and when the
 * tests check what a prefetch faulted in; hostile working set files are
 * refused before any page is touched. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "machine/workingset.h"
#include "scratch.h"
#include "util/err.h"
#include "util/file.h"
#include "confine/confine.h"

#define PAGE 4096u
#define REGION_PAGES 32
#define PM_PRESENT (1ull << 63)
#define PM_FILE (1ull << 61)

static int ram_fd = -1;
static struct guest_memory mem;

/* Two regions, as a restore maps them: the RAM file's halves MAP_PRIVATE.
 * Out of the page cache (unless cached) and without readahead, so a read
 * fault maps only the page read (the kernel maps cached neighbours with it
 * otherwise). */
static void map_ram_cached(bool cached)
{
    mem = (struct guest_memory){.count = 2, .total = 2 * REGION_PAGES * PAGE};
    posix_fadvise(ram_fd, 0, 0, POSIX_FADV_DONTNEED);
    for (unsigned n = 0; cached && n < 2 * REGION_PAGES; n++) {
        uint8_t b[PAGE];
        assert_int_equal(pread(ram_fd, b, PAGE, (off_t)n * PAGE), PAGE);
    }
    for (unsigned i = 0; i < 2; i++) {
        uint8_t *at = mmap(NULL, REGION_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, ram_fd,
                           (off_t)i * REGION_PAGES * PAGE);
        assert_true(at != MAP_FAILED);
        madvise(at, REGION_PAGES * PAGE, MADV_RANDOM);
        mem.regions[i] = (struct guest_region){.gpa = i ? 1ull << 32 : 0,
                                               .size = REGION_PAGES * PAGE, .host = at};
    }
}

static void map_ram(void)
{
    map_ram_cached(false);
}

static void unmap_ram(void)
{
    for (unsigned i = 0; i < mem.count; i++)
        munmap(mem.regions[i].host, mem.regions[i].size);
}

static uint8_t *page(unsigned n)
{
    return mem.regions[n / REGION_PAGES].host + (n % REGION_PAGES) * PAGE;
}

static uint64_t pagemap_entry(unsigned n)
{
    uint64_t e = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &e, 8, (off_t)((uintptr_t)page(n) / PAGE * 8)), 8);
    close(fd);
    return e;
}

static int setup(void **state)
{
    (void)state;
    if (scratch_setup("workingset") < 0)
        return -1;
    ram_fd = open(in_dir("ram"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    for (unsigned n = 0; ram_fd >= 0 && n < 2 * REGION_PAGES; n++) {
        uint8_t b[PAGE];
        memset(b, (int)n + 1, sizeof(b));
        if (write(ram_fd, b, sizeof(b)) != (ssize_t)sizeof(b))
            return -1;
    }
    return ram_fd < 0 || fdatasync(ram_fd) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    close(ram_fd);
    return scratch_teardown();
}

static const unsigned read_pages[] = {1, 2, 3, 31, 32, 33}, written_pages[] = {5, 40};

/* The guest's first second, played: some pages read, some written. */
static void touch(void)
{
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < sizeof(read_pages) / sizeof(read_pages[0]); i++)
        sum += *page(read_pages[i]);
    for (size_t i = 0; i < sizeof(written_pages) / sizeof(written_pages[0]); i++)
        *page(written_pages[i]) = 0xee;
    (void)sum;
}

/* What pagemap says of every page: '.' absent, 'r' the file's, 'w' a copy. */
static void present_map(char out[2 * REGION_PAGES + 1])
{
    for (unsigned n = 0; n < 2 * REGION_PAGES; n++) {
        uint64_t e = pagemap_entry(n);
        out[n] = !(e & PM_PRESENT) ? '.' : (e & PM_FILE) ? 'r' : 'w';
    }
    out[2 * REGION_PAGES] = 0;
}

static size_t count_of(const char *map, char c)
{
    size_t n = 0;
    for (; *map; map++)
        n += *map == c;
    return n;
}

/* Recorded from one mapping, prefetched into a fresh one: the same pages
 * are present (every page touched among them), written ones as private
 * copies, with the file's content (not the first mapping's writes). */
static void test_record_then_prefetch(void **state)
{
    struct working_set_counts c, p;
    char first[2 * REGION_PAGES + 1], again[2 * REGION_PAGES + 1];
    (void)state;
    map_ram();
    touch();
    present_map(first);
    assert_int_equal(working_set_record(in_dir("ram.ws"), &mem, &c), 0);
    unmap_ram();
    for (size_t i = 0; i < sizeof(read_pages) / sizeof(read_pages[0]); i++)
        assert_int_equal(first[read_pages[i]], 'r');
    assert_int_equal(first[5], 'w');
    assert_int_equal(first[40], 'w');
    assert_int_equal(c.written_pages, 2);
    assert_int_equal(c.read_pages, count_of(first, 'r'));
    assert_true(c.ranges >= 5); /* 1-3, 5, 31, 32-33 (a region starts), 40 */

    map_ram();
    assert_int_equal(working_set_prefetch(in_dir("ram.ws"), &mem, &p), 0);
    present_map(again);
    assert_string_equal(again, first);
    /* Out of the page cache: one question per region (its ranges are
     * near), then every range's reads queued. */
    assert_int_equal(p.resident_checks, 2);
    assert_int_equal(p.readahead_calls, c.ranges);
    p.resident_checks = p.readahead_calls = 0;
    assert_memory_equal(&p, &c, sizeof(p));
    assert_int_equal(*page(40), 41);
    assert_int_equal(*page(5), 6);
    unmap_ram();
}

/* A later start's usual case: the cache file's pages all in the page
 * cache. Nothing is queued (one question per region), and every page of
 * the working set is present all the same. */
static void test_cached_ranges_not_queued(void **state)
{
    struct working_set_counts c, p;
    (void)state;
    map_ram();
    touch();
    assert_int_equal(working_set_record(in_dir("ram.ws"), &mem, &c), 0);
    unmap_ram();
    map_ram_cached(true);
    assert_int_equal(working_set_prefetch(in_dir("ram.ws"), &mem, &p), 0);
    assert_int_equal(p.resident_checks, 2);
    assert_int_equal(p.readahead_calls, 0);
    assert_int_equal(p.read_pages + p.written_pages, c.read_pages + c.written_pages);
    for (size_t i = 0; i < sizeof(read_pages) / sizeof(read_pages[0]); i++)
        assert_true(pagemap_entry(read_pages[i]) & PM_PRESENT);
    for (size_t i = 0; i < sizeof(written_pages) / sizeof(written_pages[0]); i++)
        assert_int_equal(pagemap_entry(written_pages[i]) & (PM_PRESENT | PM_FILE), PM_PRESENT);
    assert_int_equal(*page(40), 41);
    unmap_ram();
}

/* Hostile or stale files: refused (EINVAL) before any page is touched. */
static void expect_refused(const void *bytes, size_t len)
{
    assert_int_equal(file_write_new(in_dir("bad.ws"), bytes, len), 0);
    map_ram();
    assert_int_equal(working_set_prefetch(in_dir("bad.ws"), &mem, NULL), -EINVAL);
    for (unsigned n = 0; n < 2 * REGION_PAGES; n++)
        assert_false(pagemap_entry(n) & PM_PRESENT);
    unmap_ram();
    err_clear();
}

struct ws_file_image {
    char magic[8];
    uint64_t ram_total;
    uint32_t count, reserved;
    struct {
        uint64_t first_page;
        uint32_t pages, written;
    } range[2];
};

static void test_hostile_files(void **state)
{
    struct ws_file_image good = {"SMOLWS\0\1", 2 * REGION_PAGES * PAGE, 2, 0,
                                 {{1, 2, 0}, {40, 1, 1}}},
                         f;
    (void)state;
    expect_refused(&good, 10); /* truncated header */
    expect_refused(&good, sizeof(good) - 1); /* truncated range */
    f = good, f.magic[0] = 'X';
    expect_refused(&f, sizeof(f));
    f = good, f.ram_total *= 2; /* another RAM size */
    expect_refused(&f, sizeof(f));
    f = good, f.count = 0xffffffffu; /* more ranges than the file holds */
    expect_refused(&f, sizeof(f));
    f = good, f.range[1].first_page = 2 * REGION_PAGES; /* past the RAM */
    expect_refused(&f, sizeof(f));
    f = good, f.range[1].first_page = 1ull << 60, f.range[1].pages = 0xffffffffu;
    expect_refused(&f, sizeof(f));
    f = good, f.range[0].first_page = 30, f.range[0].pages = 4; /* across two regions */
    expect_refused(&f, sizeof(f));
    f = good, f.range[1].first_page = 2 * REGION_PAGES - 2, f.range[1].pages = 3; /* one past */
    expect_refused(&f, sizeof(f));
    f = good, f.range[0].pages = 0;
    expect_refused(&f, sizeof(f));
    f = good, f.range[0].written = 7;
    expect_refused(&f, sizeof(f));
    map_ram();
    assert_int_equal(working_set_prefetch(in_dir("none.ws"), &mem, NULL), -ENOENT);
    err_clear();
    assert_int_equal(file_write_new(in_dir("good.ws"), &good, sizeof(good)), 0);
    assert_int_equal(working_set_prefetch(in_dir("good.ws"), &mem, NULL), 0);
    assert_true(pagemap_entry(2) & PM_PRESENT);
    unmap_ram();
    /* Ranges ending on a region's last page, and on the RAM's, are its own. */
    f = good, f.range[0].first_page = REGION_PAGES - 2, f.range[0].pages = 2;
    f.range[1].first_page = 2 * REGION_PAGES - 3, f.range[1].pages = 3;
    map_ram();
    assert_int_equal(file_write_new(in_dir("edges.ws"), &f, sizeof(f)), 0);
    assert_int_equal(working_set_prefetch(in_dir("edges.ws"), &mem, NULL), 0);
    assert_true(pagemap_entry(REGION_PAGES - 1) & PM_PRESENT);
    assert_true(pagemap_entry(2 * REGION_PAGES - 1) & PM_PRESENT);
    unmap_ram();
}

/* What a hostile VMM could leave in the cache for the next start: a FIFO
 * (or a link to one) is refused, not waited on forever; a file larger than
 * any working set is refused before it is read. */
static void test_fifo_and_oversized_files(void **state)
{
    int fd;

    (void)state;
    map_ram();
    assert_int_equal(mkfifo(in_dir("fifo.ws"), 0600), 0);
    assert_int_equal(working_set_prefetch(in_dir("fifo.ws"), &mem, NULL), -EINVAL);
    assert_int_equal(symlink(in_dir("fifo.ws"), in_dir("to-fifo.ws")), 0);
    assert_int_equal(working_set_prefetch(in_dir("to-fifo.ws"), &mem, NULL), -EINVAL);
    fd = open(in_dir("huge.ws"), O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)1 << 40), 0); /* sparse: 1 TiB */
    close(fd);
    assert_int_equal(working_set_prefetch(in_dir("huge.ws"), &mem, NULL), -EFBIG);
    err_clear();
    unmap_ram();
}

/* The recorder writes the file after its delay, or when stopped sooner. */
static void test_recorder(void **state)
{
    struct working_set_recorder *w;
    (void)state;
    map_ram();
    touch();
    unlink(in_dir("late.ws"));
    assert_int_equal(working_set_recorder_start(in_dir("late.ws"), &mem, 20, &w), 0);
    for (int i = 0; i < 500 && access(in_dir("late.ws"), F_OK) < 0; i++)
        usleep(10000);
    assert_int_equal(access(in_dir("late.ws"), F_OK), 0);
    working_set_recorder_stop(w);
    assert_int_equal(working_set_recorder_start(in_dir("soon.ws"), &mem, 600000, &w), 0);
    working_set_recorder_stop(w);
    assert_int_equal(access(in_dir("soon.ws"), F_OK), 0);
    unmap_ram();
}

/* Told to record now, the recorder writes what is present then, not
 * what the guest touches after (its output came: machine/start.c). */
static void test_recorder_now(void **state)
{
    struct working_set_recorder *w;
    struct working_set_counts c;
    (void)state;
    map_ram();
    touch();
    unlink(in_dir("now.ws"));
    assert_int_equal(working_set_recorder_start(in_dir("now.ws"), &mem, 600000, &w), 0);
    working_set_recorder_now(w);
    for (int i = 0; i < 1000 && access(in_dir("now.ws"), F_OK) < 0; i++)
        usleep(10000);
    assert_int_equal(access(in_dir("now.ws"), F_OK), 0);
    *page(50) = 0xee; /* after: not in it */
    working_set_recorder_stop(w);
    unmap_ram();
    map_ram();
    assert_int_equal(working_set_prefetch(in_dir("now.ws"), &mem, &c), 0);
    assert_int_equal(c.written_pages, 2);
    assert_false(pagemap_entry(50) & PM_PRESENT);
    unmap_ram();
}

/* A first start's provisional set (whole chunks) is counted, not faulted
 * in: that start's successor records the exact one (machine/cache.c). */
static void test_provisional_not_prefetched(void **state)
{
    const struct working_set_chunk chunks[] = {{0, 8}, {REGION_PAGES, 4}};
    struct working_set_counts c;
    (void)state;
    map_ram();
    assert_int_equal(working_set_write_chunks(in_dir("chunks.ws"), &mem, chunks, 2), 0);
    assert_int_equal(working_set_prefetch(in_dir("chunks.ws"), &mem, &c), 0);
    assert_true(c.provisional);
    assert_int_equal(c.read_pages, 12);
    for (unsigned n = 0; n < 2 * REGION_PAGES; n++)
        assert_false(pagemap_entry(n) & PM_PRESENT);
    unmap_ram();
}

/* The next start after a first one that recorded its guest's touches (a
 * provisional set of exact pages) keeps, of the pages it read, only those:
 * the kernel maps cached neighbours around each read fault of the file
 * (fault-around), which the guest never touched. Every written page
 * counts. */
static void test_record_keeps_first_touches(void **state)
{
    const struct working_set_chunk touched[] = {{1, 1}, {33, 1}};
    struct working_set_counts c;
    char map[2 * REGION_PAGES + 1];
    volatile uint8_t sum = 0;
    (void)state;
    map_ram_cached(true);
    madvise(mem.regions[0].host, REGION_PAGES * PAGE, MADV_NORMAL);
    sum += *page(1);
    *page(5) = 0xee;
    (void)sum;
    present_map(map);
    if (count_of(map, 'r') < 2) { /* no fault-around here: nothing to leave out */
        unmap_ram();
        skip();
    }
    assert_int_equal(working_set_write_chunks(in_dir("touched.ws"), &mem, touched, 2), 0);
    assert_int_equal(working_set_record(in_dir("touched.ws"), &mem, &c), 0);
    assert_int_equal(c.read_pages, 1); /* page 1 (33 was not read here) */
    assert_int_equal(c.written_pages, 1);
    assert_int_equal(working_set_prefetch(in_dir("touched.ws"), &mem, &c), 0);
    assert_false(c.provisional);
    unmap_ram();
}

/* Read ranges a few pages apart are faulted in with one call (the kernel
 * maps a cached file's pages around each read fault anyway): out of the
 * page cache and without readahead, the pages between them are present
 * too; not those up to a range far off. */
static void test_near_read_ranges_one_call(void **state)
{
    const struct working_set_chunk read[] = {{1, 1}, {4, 2}, {10, 1}, {30, 1}};
    struct working_set_counts c;
    uint8_t bytes[4096];
    (void)state;
    map_ram();
    /* An exact set, as recorded: written from a provisional one's pages. */
    assert_int_equal(working_set_write_chunks(in_dir("near.ws"), &mem, read, 4), 0);
    int fd = open(in_dir("near.ws"), O_RDWR);
    assert_true(fd >= 0);
    ssize_t n = pread(fd, bytes, sizeof(bytes), 0);
    assert_true(n > 24);
    bytes[20] = 0; /* reserved: not provisional */
    assert_int_equal(pwrite(fd, bytes, (size_t)n, 0), n);
    close(fd);
    assert_int_equal(working_set_prefetch(in_dir("near.ws"), &mem, &c), 0);
    assert_false(c.provisional);
    assert_int_equal(c.read_pages, 5);
    for (unsigned p = 1; p <= 10; p++) /* one span */
        assert_true(pagemap_entry(p) & PM_PRESENT);
    for (unsigned p = 11; p < 30; p++) /* 30: another */
        assert_false(pagemap_entry(p) & PM_PRESENT);
    assert_true(pagemap_entry(30) & PM_PRESENT);
    unmap_ram();
}

int main(void)
{
    /* The device threads under their seccomp filters, as in run and start. */
    confine_seccomp_set(CONFINE_SECCOMP_ON, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_then_prefetch),
        cmocka_unit_test(test_cached_ranges_not_queued),
        cmocka_unit_test(test_hostile_files),
        cmocka_unit_test(test_fifo_and_oversized_files),
        cmocka_unit_test(test_recorder),
        cmocka_unit_test(test_recorder_now),
        cmocka_unit_test(test_provisional_not_prefetched),
        cmocka_unit_test(test_record_keeps_first_touches),
        cmocka_unit_test(test_near_read_ranges_one_call),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
