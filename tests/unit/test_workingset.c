/* The working set of a restored guest: which pages are present is asked
 * of the kernel (/proc/self/pagemap), both when recording and when the
 * tests check what a prefetch faulted in; hostile working set files are
 * refused before any page is touched. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
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
 * Out of the page cache and without readahead, so a read fault maps only
 * the page read (the kernel maps cached neighbours with it otherwise). */
static void map_ram(void)
{
    mem = (struct guest_memory){.count = 2, .total = 2 * REGION_PAGES * PAGE};
    posix_fadvise(ram_fd, 0, 0, POSIX_FADV_DONTNEED);
    for (unsigned i = 0; i < 2; i++) {
        uint8_t *at = mmap(NULL, REGION_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, ram_fd,
                           (off_t)i * REGION_PAGES * PAGE);
        assert_true(at != MAP_FAILED);
        madvise(at, REGION_PAGES * PAGE, MADV_RANDOM);
        mem.regions[i] = (struct guest_region){.gpa = i ? 1ull << 32 : 0,
                                               .size = REGION_PAGES * PAGE, .host = at};
    }
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
    assert_int_equal(working_set_prefetch(in_dir("ram.ws"), &mem, -1, &p), 0);
    present_map(again);
    assert_string_equal(again, first);
    assert_memory_equal(&p, &c, sizeof(p));
    assert_int_equal(*page(40), 41);
    assert_int_equal(*page(5), 6);
    unmap_ram();
}

/* Hostile or stale files: refused (EINVAL) before any page is touched. */
static void expect_refused(const void *bytes, size_t len)
{
    assert_int_equal(file_write_new(in_dir("bad.ws"), bytes, len), 0);
    map_ram();
    assert_int_equal(working_set_prefetch(in_dir("bad.ws"), &mem, -1, NULL), -EINVAL);
    for (unsigned n = 0; n < 2 * REGION_PAGES; n++)
        assert_false(pagemap_entry(n) & PM_PRESENT);
    unmap_ram();
    err_clear();
}

/* A working set file's bytes, with n ranges. */
#define WS_FILE_IMAGE(n)                                                                           \
    struct {                                                                                       \
        char magic[8];                                                                             \
        uint64_t ram_total;                                                                        \
        uint32_t count, reserved;                                                                  \
        struct {                                                                                   \
            uint64_t first_page;                                                                   \
            uint32_t pages, written;                                                               \
        } range[n];                                                                                \
    }
typedef WS_FILE_IMAGE(2) ws_file_image;

static void test_hostile_files(void **state)
{
    ws_file_image good = {"SMOLWS\0\1", 2 * REGION_PAGES * PAGE, 2, 0,
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
    f = good, f.range[0].pages = 0;
    expect_refused(&f, sizeof(f));
    f = good, f.range[0].written = 7;
    expect_refused(&f, sizeof(f));
    map_ram();
    assert_int_equal(working_set_prefetch(in_dir("none.ws"), &mem, -1, NULL), -ENOENT);
    err_clear();
    assert_int_equal(file_write_new(in_dir("good.ws"), &good, sizeof(good)), 0);
    assert_int_equal(working_set_prefetch(in_dir("good.ws"), &mem, -1, NULL), 0);
    assert_true(pagemap_entry(2) & PM_PRESENT);
    unmap_ram();
}

/* ---- dense blocks copied into huge pages ---- */

#define BLOCK_PAGES 512u
#define BIG_BLOCKS 3u
#define HOLE_PAGE 7u /* of block 0: a hole in the file, zero RAM */
#define SPARE 32u    /* past a sparse block's listed pages: what fault-around may map */

static uint8_t big_byte(unsigned n)
{
    return n == HOLE_PAGE ? 0 : (uint8_t)(n * 7 + 1);
}

/* A sparse 6 MiB RAM file (page n filled with big_byte(n)) and a working
 * set over it, as bytes: block 0 holds 300 pages of it (dense, some
 * written), block 1 nine, block 2 255 (one short of half). */
static int big_ram(void)
{
    int fd = open(in_dir("big"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)BIG_BLOCKS * BLOCK_PAGES * PAGE), 0);
    for (unsigned n = 0; n < BIG_BLOCKS * BLOCK_PAGES; n++) {
        uint8_t b[PAGE];
        memset(b, big_byte(n), sizeof(b));
        if (n != HOLE_PAGE)
            assert_int_equal(pwrite(fd, b, sizeof(b), (off_t)n * PAGE), (ssize_t)sizeof(b));
    }
    assert_int_equal(fdatasync(fd), 0); /* clean pages: map_big drops them from the page cache */
    return fd;
}

static void write_big_set(const char *name, uint32_t reserved)
{
    WS_FILE_IMAGE(4) f = {"SMOLWS\0\1", (uint64_t)BIG_BLOCKS * BLOCK_PAGES * PAGE, 4, reserved,
           {{0, 200, 0}, {200, 100, 1}, {BLOCK_PAGES, 9, 0}, {2 * BLOCK_PAGES, 255, 0}}};
    unlink(in_dir(name));
    assert_int_equal(file_write_new(in_dir(name), &f, sizeof(f)), 0);
}

static uint64_t entry_at(const uint8_t *host)
{
    uint64_t e = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &e, 8, (off_t)((uintptr_t)host / PAGE * 8)), 8);
    close(fd);
    return e;
}

/* How the pages [first, first + n) of RAM are now: each 'r' (the file's,
 * mapped), 'w' (anonymous) or '.' (absent); c when all are c, else '?'. */
static char pages_are(const struct guest_memory *ram, unsigned first, unsigned n)
{
    char all = 0;
    for (unsigned p = first; p < first + n; p++) {
        uint64_t e = entry_at(ram->regions[0].host + (uint64_t)p * PAGE);
        char c = !(e & PM_PRESENT) ? '.' : (e & PM_FILE) ? 'r' : 'w';
        if (all && c != all)
            return '?';
        all = c;
    }
    return all;
}

static void map_big(struct guest_memory *ram, int fd)
{
    const struct guest_region layout = {.gpa = 0, .size = (uint64_t)BIG_BLOCKS * BLOCK_PAGES * PAGE};
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    assert_int_equal(guest_memory_alloc(ram, &layout, 1), 0);
    assert_int_equal(guest_memory_map_file(ram, fd), 0);
    madvise(ram->regions[0].host, layout.size, MADV_RANDOM);
}

/* A block the working set covers at least half of is copied whole into
 * anonymous memory (a huge page can back it) with the file's bytes, holes
 * zero; sparser blocks are faulted in page by page from the file, as
 * without the cache file, and as for a provisional set. */
static void test_dense_blocks_copied_whole(void **state)
{
    struct guest_memory ram;
    struct working_set_counts c;
    int fd = big_ram();
    (void)state;
    write_big_set("big.ws", 0);
    map_big(&ram, fd);
    assert_int_equal(working_set_prefetch(in_dir("big.ws"), &ram, fd, &c), 0);
    assert_int_equal(c.huge_blocks, 1);
    assert_int_equal(c.read_pages + c.written_pages, 200 + 100 + 9 + 255);
    assert_int_equal(pages_are(&ram, 0, BLOCK_PAGES), 'w'); /* all of it, 212 pages unlisted too */
    for (unsigned n = 0; n < BIG_BLOCKS * BLOCK_PAGES; n++)
        assert_int_equal(ram.regions[0].host[(uint64_t)n * PAGE + PAGE - 1], big_byte(n));
    guest_memory_free(&ram);

    /* The guest's accesses above fault in the rest: checked afresh. The
     * kernel may map a few cached neighbours with a page (fault-around,
     * 16 pages): the sparse blocks' pages from SPARE on are absent. */
    map_big(&ram, fd);
    assert_int_equal(working_set_prefetch(in_dir("big.ws"), &ram, fd, &c), 0);
    assert_int_equal(pages_are(&ram, BLOCK_PAGES, 9), 'r');
    assert_int_equal(pages_are(&ram, BLOCK_PAGES + SPARE, BLOCK_PAGES - SPARE), '.');
    assert_int_equal(pages_are(&ram, 2 * BLOCK_PAGES, 255), 'r');
    assert_int_equal(pages_are(&ram, 2 * BLOCK_PAGES + 255 + SPARE, BLOCK_PAGES - 255 - SPARE), '.');
    guest_memory_free(&ram);

    map_big(&ram, fd); /* no cache file at hand: page by page */
    assert_int_equal(working_set_prefetch(in_dir("big.ws"), &ram, -1, &c), 0);
    assert_int_equal(c.huge_blocks, 0);
    assert_int_equal(pages_are(&ram, 0, 200), 'r');
    assert_int_equal(pages_are(&ram, 200, 100), 'w');
    assert_int_equal(pages_are(&ram, 300 + SPARE, BLOCK_PAGES - 300 - SPARE), '.');
    guest_memory_free(&ram);

    write_big_set("prov.ws", 1); /* provisional: the recorder must see the guest's pages */
    map_big(&ram, fd);
    assert_int_equal(working_set_prefetch(in_dir("prov.ws"), &ram, fd, &c), 0);
    assert_int_equal(c.huge_blocks, 0);
    assert_int_equal(pages_are(&ram, 300 + SPARE, BLOCK_PAGES - 300 - SPARE), '.');
    guest_memory_free(&ram);
    close(fd);
}

/* A block that cannot be read: the guest must not run on it (-EFAULT
 * when it cannot be the file's again either); one not on a 2 MiB
 * boundary is refused with nothing changed. */
static void test_huge_copy_failures(void **state)
{
    struct guest_memory ram;
    struct working_set_counts c;
    int fd = big_ram(), wronly = open(in_dir("big"), O_WRONLY);
    (void)state;
    assert_true(wronly >= 0);
    map_big(&ram, fd);
    assert_int_equal(guest_memory_copy_huge(&ram, fd, PAGE), -EINVAL);
    assert_int_equal(guest_memory_copy_huge(&ram, fd, (uint64_t)BIG_BLOCKS * BLOCK_PAGES * PAGE), -EINVAL);
    assert_int_equal(pages_are(&ram, 0, BLOCK_PAGES), '.');
    write_big_set("big.ws", 0);
    assert_int_equal(working_set_prefetch(in_dir("big.ws"), &ram, wronly, &c), -EFAULT);
    err_clear();
    guest_memory_free(&ram);
    close(wronly);
    close(fd);
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

int main(void)
{
    /* The device threads under their seccomp filters, as in run and start. */
    confine_seccomp_set(CONFINE_SECCOMP_ON, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_then_prefetch),
        cmocka_unit_test(test_hostile_files),
        cmocka_unit_test(test_recorder),
        cmocka_unit_test(test_dense_blocks_copied_whole),
        cmocka_unit_test(test_huge_copy_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
