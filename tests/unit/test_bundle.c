/* The .smolmachine container and its memory codec, against hostile files:
 * every byte of a bundle may be truncated, flipped or forged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <zstd.h>

#include "bundle/bundle.h"
#include "bundle/format.h"
#include "machine/cache.h"
#include "bundle/internal.h"
#include "machine/machine.h"
#include "bundle/layers.h"
#include "machine/instance.h"
#include "machine/internal.h"
#include "machine/save_named.h"
#include "core/config.h"
#include "store/store.h"
#include "util/cache.h"
#include "util/le.h"
#include "util/err.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/layer_name.h"
#include "smaps.h"

#define RAM_LOW (3u << 20)
#define RAM_HIGH (1u << 20)

static char dir[64], path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/smolvm-test-bundle.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/m.smolmachine", dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Two regions, like low RAM and RAM above the 4 GiB hole: a pattern in
 * some chunks, random bytes in one (incompressible), the rest zero. */
static void fake_ram(struct guest_memory *mem)
{
    struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
    assert_int_equal(guest_memory_alloc(mem, layout, 2), 0);
    memset(mem->regions[0].host + 4096, 0xab, 100000);
    for (size_t i = 0; i < (512u << 10); i++)
        mem->regions[0].host[(2u << 20) + i] = (uint8_t)(rand() >> 7);
    memcpy(mem->regions[1].host + RAM_HIGH - 5, "tail", 5);
}

static void write_bundle(const struct guest_memory *mem)
{
    struct bundle_writer *w;
    static const char config[] = "{\"cpus\": 1}";
    uint8_t big[100000];

    memset(big, 'k', sizeof(big));
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "config", config, strlen(config), BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "kernel", big, sizeof(big), BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_add_memory(w, "memory", mem, NULL, NULL), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
}

static void round_trip(void **state)
{
    struct guest_memory mem, back;
    struct bundle *b;
    uint8_t *data;
    size_t len;
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_true(bundle_has(b, "kernel"));
    assert_false(bundle_has(b, "initrd"));
    assert_int_equal(bundle_read(b, "config", &data, &len), 0);
    assert_string_equal((char *)data, "{\"cpus\": 1}");
    free(data);
    assert_int_equal(bundle_read(b, "kernel", &data, &len), 0);
    assert_int_equal(len, 100000);
    assert_int_equal(data[99999], 'k');
    free(data);
    {
        char out[160], cmd[512];
        snprintf(out, sizeof(out), "%s/kernel.out", dir);
        assert_int_equal(bundle_extract(b, "kernel", out), 0);
        snprintf(cmd, sizeof(cmd), "test $(stat -c %%s '%s') -eq 100000 && "
                 "test $(tr -d k < '%s' | wc -c) -eq 0", out, out);
        assert_int_equal(system(cmd), 0);
        assert_true(bundle_extract(b, "memory", out) < 0);
    }
    {
        struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
        assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    }
    assert_int_equal(bundle_load_memory(b, "memory", &back), 0);
    assert_memory_equal(back.regions[0].host, mem.regions[0].host, RAM_LOW);
    assert_memory_equal(back.regions[1].host, mem.regions[1].host, RAM_HIGH);
    {
        /* A memory section copied as stored (an instance's saved state)
         * loads the same RAM from the new file. */
        char copy[160];
        struct bundle_writer *w;
        struct bundle *c;
        snprintf(copy, sizeof(copy), "%s/copy.smolmachine", dir);
        assert_int_equal(bundle_writer_open(copy, &w), 0);
        assert_int_equal(bundle_copy_section(w, b, "config"), 0);
        assert_int_equal(bundle_copy_section(w, b, "memory"), 0);
        assert_int_equal(bundle_writer_commit(w), 0);
        assert_int_equal(bundle_open(copy, &c), 0);
        memset(back.regions[0].host, 0, RAM_LOW);
        memset(back.regions[1].host, 0, RAM_HIGH);
        assert_int_equal(bundle_load_memory(c, "memory", &back), 0);
        assert_memory_equal(back.regions[0].host, mem.regions[0].host, RAM_LOW);
        assert_memory_equal(back.regions[1].host, mem.regions[1].host, RAM_HIGH);
        bundle_close(c);
    }
    bundle_close(b);
    guest_memory_free(&back);
    guest_memory_free(&mem);
}

/* A name planted where a section is unpacked (a jailed VMM can write the
 * cache folders and its instance folder, and knows the temporary names):
 * a symlink there is replaced, never written through. */
static void extract_replaces_a_planted_symlink(void **state)
{
    char out[160], victim[160], back[16] = {0};
    struct bundle_writer *w;
    struct bundle *b;
    struct stat st;
    (void)state;

    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(out, sizeof(out), "%s/disk.raw.99.tmp", dir);
    assert_int_equal(file_write_new(victim, "precious", 8), 0);
    unlink(out);
    assert_int_equal(symlink(victim, out), 0);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "disk.0", "guest data", 10, BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(bundle_extract(b, "disk.0", out), 0);
    bundle_close(b);
    assert_int_equal(lstat(out, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 10);
    int fd = open(victim, O_RDONLY);
    assert_int_equal(read(fd, back, sizeof(back)), 8);
    close(fd);
    assert_string_equal(back, "precious");
}

/* What a confined VM leaves where it saves is taken as the user's bundle
 * only when it is a plain file of its own: a symlink or a hard link to one
 * of the user's files, or a FIFO, is refused, and the user's file stays
 * where and as it was. */
static void staged_save_takes_only_a_plain_file(void **state)
{
    char staged[160], out[160], victim[160], back[16] = {0};
    struct stat st;
    (void)state;

    snprintf(victim, sizeof(victim), "%s/id_key", dir);
    snprintf(staged, sizeof(staged), "%s/vm.save-1.smolmachine", dir);
    snprintf(out, sizeof(out), "%s/out.smolmachine", dir);
    assert_int_equal(file_write_new(victim, "precious", 8), 0);
    assert_int_equal(symlink(victim, staged), 0);
    assert_true(machine_save_take_staged(staged, out) < 0);
    assert_int_equal(lstat(out, &st), -1);
    unlink(staged);
    assert_int_equal(link(victim, staged), 0);
    assert_int_equal(machine_save_take_staged(staged, out), -EPERM);
    assert_int_equal(lstat(out, &st), -1);
    assert_int_equal(lstat(victim, &st), 0);
    unlink(staged);
    assert_int_equal(mkfifo(staged, 0600), 0);
    assert_int_equal(machine_save_take_staged(staged, out), -EINVAL);
    unlink(staged);
    /* A plain file: moved into place; a symlink at path is replaced, not
     * written through. */
    assert_int_equal(symlink(victim, out), 0);
    assert_int_equal(file_write_new(staged, "bundle", 6), 0);
    assert_int_equal(machine_save_take_staged(staged, out), 0);
    assert_int_equal(lstat(out, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 6);
    assert_int_equal(lstat(staged, &st), -1);
    int fd = open(victim, O_RDONLY);
    assert_int_equal(read(fd, back, sizeof(back)), 8);
    close(fd);
    assert_string_equal(back, "precious");
}

/* file_copy_fd copies what the descriptor holds, not what is at a name. */
static void copy_from_a_checked_descriptor(void **state)
{
    char from[160], to[160], back[32] = {0};
    struct stat st;
    (void)state;

    snprintf(from, sizeof(from), "%s/from", dir);
    snprintf(to, sizeof(to), "%s/to", dir);
    assert_int_equal(file_write_new(from, "checked bytes", 13), 0);
    int fd = file_open_sole(from, "file", &st);
    assert_true(fd >= 0);
    unlink(from);
    assert_int_equal(file_write_new(from, "swapped", 7), 0);
    assert_int_equal(file_copy_fd(fd, to), 0);
    close(fd);
    fd = open(to, O_RDONLY);
    assert_int_equal(read(fd, back, sizeof(back)), 13);
    close(fd);
    assert_string_equal(back, "checked bytes");
}

/* A VM's log is read where it is one: beneath its folder (a link that
 * stays there, as a jailed VM's name is, is followed), never a link out to
 * one of the user's files, never a FIFO waited on. */
static void vm_written_files_are_read_beneath_their_folder(void **state)
{
    char victim[160], name[256], sub[160], cmd[2048];
    struct stat st;
    FILE *f;
    (void)state;

    snprintf(victim, sizeof(victim), "%s/id_key", dir);
    assert_int_equal(file_write_new(victim, "precious", 8), 0);
    snprintf(sub, sizeof(sub), "%s/run", dir);
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s/vm.vm && echo log > %s/vm.vm/vm.log && ln -s vm.vm/vm.log %s/vm.log && "
             "ln -s %s %s/evil.log && ln -s ../id_key %s/up.log && mkfifo %s/fifo.log",
             sub, sub, sub, victim, sub, sub, sub);
    assert_int_equal(system(cmd), 0);
    snprintf(name, sizeof(name), "%s/vm.log", sub);
    assert_non_null(f = file_fopen_beneath(name));
    fclose(f);
    snprintf(name, sizeof(name), "%s/evil.log", sub);
    assert_null(file_fopen_beneath(name));
    snprintf(name, sizeof(name), "%s/up.log", sub);
    assert_null(file_fopen_beneath(name));
    snprintf(name, sizeof(name), "%s/fifo.log", sub);
    assert_int_equal(file_open_beneath(name, "log", &st), -EINVAL);
    err_clear();
    snprintf(name, sizeof(name), "%s/none.log", sub);
    assert_null(file_fopen_beneath(name));
    assert_int_equal(errno, ENOENT);
}

/* A disk section comes out sparse (its zeros are holes) with the same
 * bytes, and its key names its content. */
static void sparse_disk_extract(void **state)
{
    const size_t size = 4u << 20;
    uint8_t *disk = calloc(1, size), *back = malloc(size);
    struct bundle_writer *w;
    struct bundle *b;
    char out[160], key[65], again[65];
    struct stat st;
    (void)state;

    memset(disk, 0x5a, 70000);
    memcpy(disk + size - 4, "end", 4);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "disk.0", disk, size, BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    assert_int_equal(bundle_open(path, &b), 0);
    snprintf(out, sizeof(out), "%s/disk.out", dir);
    unlink(out);
    assert_int_equal(bundle_extract(b, "disk.0", out), 0);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_size, size);
    assert_true(st.st_blocks * 512 <= (512u << 10));
    int fd = open(out, O_RDONLY);
    assert_true(read(fd, back, size) == (ssize_t)size);
    close(fd);
    assert_memory_equal(back, disk, size);
    assert_int_equal(bundle_section_key(b, "disk.0", key), 0);
    assert_int_equal(strlen(key), 64);
    assert_true(bundle_section_key(b, "disk.1", again) < 0);
    bundle_close(b);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(bundle_section_key(b, "disk.0", again), 0);
    assert_string_equal(key, again);
    bundle_close(b);
    free(disk);
    free(back);
}

/* Mapped from the unpacked cache: the same bytes, built once, and the
 * guest's writes stay private to it. */
static void mapped_from_cache(void **state)
{
    struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
    struct guest_memory mem, a, b;
    struct bundle *bundle;
    char cache[128], cmd[200];
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    assert_int_equal(mkdir(cache, 0700), 0);
    assert_int_equal(bundle_open(path, &bundle), 0);
    assert_int_equal(guest_memory_alloc(&a, layout, 2), 0);
    assert_int_equal(machine_memory_cache(bundle, "memory", &a, cache, MEMORY_CACHE_MAP), 0);
    assert_memory_equal(a.regions[0].host, mem.regions[0].host, RAM_LOW);
    assert_memory_equal(a.regions[1].host, mem.regions[1].host, RAM_HIGH);
    /* Restored RAM stays out of core dumps, as fresh RAM does. */
    assert_true(smaps_has_flag(a.regions[0].host, "dd"));
    assert_true(smaps_has_flag(a.regions[1].host, "dd"));
    memset(a.regions[0].host, 0x77, 8192); /* private: must not reach b */
    assert_int_equal(guest_memory_alloc(&b, layout, 2), 0);
    assert_int_equal(machine_memory_cache(bundle, "memory", &b, cache, MEMORY_CACHE_COPY), 0);
    assert_memory_equal(b.regions[0].host, mem.regions[0].host, RAM_LOW);
    snprintf(cmd, sizeof(cmd), "test $(ls '%s' | grep -c '\\.ram$') -eq 1", cache);
    assert_int_equal(system(cmd), 0);
    bundle_close(bundle);
    guest_memory_free(&a);
    guest_memory_free(&b);
    guest_memory_free(&mem);
}

static long file_size(void)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static void flip_byte(long offset)
{
    int fd = open(path, O_RDWR);
    uint8_t c;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, offset), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, offset), 1);
    close(fd);
}

static void truncated_bundle_is_refused(void **state)
{
    struct guest_memory mem;
    struct bundle *b;
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    assert_int_equal(truncate(path, file_size() - 1), 0);
    assert_true(bundle_open(path, &b) < 0);
    assert_non_null(strstr(err_msg(), "truncated"));
    assert_int_equal(truncate(path, 100), 0);
    assert_true(bundle_open(path, &b) < 0);
    assert_non_null(strstr(err_msg(), "not a .smolmachine"));
    guest_memory_free(&mem);
}

static void newer_version_is_named(void **state)
{
    struct guest_memory mem;
    struct bundle *b;
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    flip_byte(9); /* version 1 -> 0x4001 */
    assert_true(bundle_open(path, &b) < 0);
    assert_non_null(strstr(err_msg(), "bundle version 16385; this smolvm reads version 1"));
    guest_memory_free(&mem);
}

static void corrupt_header_is_refused(void **state)
{
    struct guest_memory mem;
    struct bundle *b;
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    flip_byte(30); /* in the section table */
    assert_true(bundle_open(path, &b) < 0);
    assert_non_null(strstr(err_msg(), "checksum"));
    guest_memory_free(&mem);
}

/* Where the incompressible (stored raw) chunk's bytes sit in the file. */
static long find_raw_chunk(const struct guest_memory *mem)
{
    const uint8_t *needle = mem->regions[0].host + (2u << 20);
    long size = file_size(), off = -1;
    uint8_t *all = malloc((size_t)size);
    int fd = open(path, O_RDONLY);
    const uint8_t *hit;

    assert_int_equal(pread(fd, all, (size_t)size, 0), size);
    hit = memmem(all, (size_t)size, needle, 4096);
    if (hit)
        off = (long)(hit - all);
    close(fd);
    free(all);
    return off;
}

static void corrupt_memory_chunk_is_refused(void **state)
{
    struct guest_memory mem, back;
    struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
    struct bundle *b;
    long at;
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    at = find_raw_chunk(&mem);
    assert_true(at > 0);
    flip_byte(at + 1000);
    assert_int_equal(bundle_open(path, &b), 0); /* chunks are checked when loaded */
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    assert_true(bundle_load_memory(b, "memory", &back) < 0);
    assert_non_null(strstr(err_msg(), "memory chunk"));
    bundle_close(b);
    guest_memory_free(&back);
    guest_memory_free(&mem);
}

/* The same when unpacked into the memory cache (a first start's default,
 * a group of chunks read at once): refused by name, no cache file left,
 * for the chunks written now and the 512 KiB ones older smolvm wrote. */
static void corrupt_memory_chunk_is_refused_when_unpacked(void **state)
{
    struct guest_memory mem, back;
    struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
    static const size_t sizes[] = {MEMORY_CHUNK, 512u << 10};
    char cache[128], cmd[300];
    struct bundle *b;
    (void)state;

    fake_ram(&mem);
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    assert_int_equal(mkdir(cache, 0700), 0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        bundle_memory_chunk_size = sizes[i];
        write_bundle(&mem);
        bundle_memory_chunk_size = MEMORY_CHUNK;
        flip_byte(find_raw_chunk(&mem) + 5000);
        assert_int_equal(bundle_open(path, &b), 0);
        assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
        assert_int_equal(machine_memory_cache(b, "memory", &back, cache, MEMORY_CACHE_MAP), -EINVAL);
        char named[32];
        snprintf(named, sizeof(named), "memory chunk %zu ", (2u << 20) / sizes[i] + 5000 / sizes[i]);
        if (!strstr(err_msg(), named))
            fail_msg("'%s' does not name %s", err_msg(), named);
        snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", cache);
        assert_int_equal(system(cmd), 0);
        bundle_close(b);
        guest_memory_free(&back);
    }
    guest_memory_free(&mem);
}

/* docs/smolmachine-format.md is enough to read a bundle: the reader written
 * from it alone (docs/smolmachine_ls.py) lists what smolvm wrote and checks
 * every hash (table, sections, memory index and chunks), and catches a
 * changed memory chunk. */
static int format_reader(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "python3 %s/docs/smolmachine_ls.py '%s' > %s/ls.out 2>&1",
             SMOLVM_SOURCE_ROOT, path, dir);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void format_document_reader_agrees(void **state)
{
    struct guest_memory mem;
    long at;
    (void)state;

    if (system("command -v python3 > /dev/null") != 0)
        skip();
    fake_ram(&mem);
    write_bundle(&mem);
    assert_int_equal(format_reader(), 0);
    at = find_raw_chunk(&mem);
    assert_true(at > 0);
    flip_byte(at + 1000);
    assert_int_equal(format_reader(), 1);
    guest_memory_free(&mem);
}

/* A cache key names the decoded content: the same stored bytes declared raw
 * instead of zstd (a hostile bundle copying a genuine one's section) get
 * another key, so they can never be served from the genuine one's cache. */
static void cache_key_covers_encoding(void **state)
{
    struct guest_memory mem;
    struct bundle *b;
    char genuine[65], relabelled[65];
    uint8_t h[4096];
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(bundle_section_key(b, "kernel", genuine), 0);
    bundle_close(b);
    int fd = open(path, O_RDWR);
    assert_int_equal(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
    uint32_t count = le32(h + 12);
    uint8_t *kernel = h + 24 + 88; /* entry 1: config, kernel, memory */
    assert_memory_equal(kernel, "kernel", 6);
    put_le(kernel + 24, BUNDLE_RAW, 4);
    memcpy(kernel + 48, kernel + 40, 8); /* size = stored */
    hash_bytes(h, 24 + 88 * count, h + 24 + 88 * count);
    assert_int_equal(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
    close(fd);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(bundle_section_key(b, "kernel", relabelled), 0);
    bundle_close(b);
    assert_string_not_equal(genuine, relabelled);
    guest_memory_free(&mem);
}

/* RAM in the chunks written now and in the 512 KiB ones older smolvm
 * wrote reads back the same; a chunk size that is no power of two, or
 * outside what a reader has room for, is refused by name. */
static void memory_chunk_sizes(void **state)
{
    struct guest_memory mem, back;
    struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
    static const size_t sizes[] = {MEMORY_CHUNK, 512u << 10};
    static const uint32_t hostile[] = {0, 2048, 32u << 10, 3u << 16, 1u << 20, UINT32_MAX};
    struct bundle *b;
    (void)state;

    fake_ram(&mem);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        bundle_memory_chunk_size = sizes[i];
        write_bundle(&mem);
        bundle_memory_chunk_size = MEMORY_CHUNK;
        assert_int_equal(bundle_open(path, &b), 0);
        assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
        assert_int_equal(bundle_load_memory(b, "memory", &back), 0);
        assert_memory_equal(back.regions[0].host, mem.regions[0].host, RAM_LOW);
        assert_memory_equal(back.regions[1].host, mem.regions[1].host, RAM_HIGH);
        bundle_close(b);
        guest_memory_free(&back);
    }
    long size = file_size();
    uint8_t *all = malloc((size_t)size);
    int fd = open(path, O_RDWR);
    assert_int_equal(pread(fd, all, (size_t)size, 0), size);
    const uint8_t *index = memmem(all, (size_t)size, "SMOLMEM1", 8);
    assert_non_null(index);
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        uint8_t le[4] = {(uint8_t)hostile[i], (uint8_t)(hostile[i] >> 8),
                         (uint8_t)(hostile[i] >> 16), (uint8_t)(hostile[i] >> 24)};
        assert_int_equal(pwrite(fd, le, 4, index + 8 - all), 4);
        assert_int_equal(bundle_open(path, &b), 0);
        assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
        assert_true(bundle_load_memory(b, "memory", &back) < 0);
        assert_non_null(strstr(err_msg(), "memory chunks of"));
        bundle_close(b);
        guest_memory_free(&back);
    }
    close(fd);
    free(all);
    guest_memory_free(&mem);
}

static void memory_layout_must_match(void **state)
{
    struct guest_memory mem, other;
    struct guest_region layout[1] = {{0, RAM_LOW, NULL}};
    struct bundle *b;
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(guest_memory_alloc(&other, layout, 1), 0);
    assert_true(bundle_load_memory(b, "memory", &other) < 0);
    assert_non_null(strstr(err_msg(), "layout"));
    assert_true(bundle_load_memory(b, "kernel", &other) < 0);
    bundle_close(b);
    guest_memory_free(&other);
    guest_memory_free(&mem);
}

/* Every single-byte change anywhere in the header or the index must be
 * caught, and random garbage must never crash the reader. */
static void survives_random_corruption(void **state)
{
    struct guest_memory mem, back;
    struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
    long size;
    (void)state;

    fake_ram(&mem);
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    write_bundle(&mem);
    size = file_size();
    for (int i = 0; i < 300; i++) {
        struct bundle *b;
        long at = i < 150 ? rand() % 8192 : rand() % size;
        uint8_t *data;
        size_t len;
        int loaded = 1;

        write_bundle(&mem);
        flip_byte(at);
        if (bundle_open(path, &b) < 0)
            continue;
        if (bundle_read(b, "kernel", &data, &len) == 0)
            free(data);
        loaded = bundle_load_memory(b, "memory", &back);
        if (loaded == 0) /* the flip hit padding: what loaded must be exact */
            assert_memory_equal(back.regions[0].host, mem.regions[0].host, RAM_LOW);
        bundle_close(b);
    }
    guest_memory_free(&back);
    guest_memory_free(&mem);
}

static void failed_write_leaves_nothing(void **state)
{
    struct bundle_writer *w;
    struct stat st;
    (void)state;

    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "config", "{}", 2, BUNDLE_RAW), 0);
    assert_true(bundle_add(w, "config", "{}", 2, BUNDLE_RAW) < 0); /* duplicate */
    assert_true(bundle_add_file(w, "kernel", "/nonexistent/kernel", BUNDLE_RAW) < 0);
    bundle_writer_abort(w);
    assert_true(stat(path, &st) < 0);
    {
        char cmd[160];
        snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", dir);
        assert_int_equal(system(cmd), 0);
    }
}

static bool page_present(const void *at)
{
    uint64_t e = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &e, 8, (off_t)((uintptr_t)at / 4096 * 8)), 8);
    close(fd);
    return e >> 63;
}

/* Saving RAM the guest never touched neither reads nor maps it (the
 * kernel's pagemap says it stays absent); what was written comes back. */
static void save_skips_untouched_ram(void **state)
{
    struct guest_region layout[1] = {{0, 64u << 20, NULL}};
    struct guest_memory mem, back;
    struct bundle_writer *w;
    struct bundle *b;
    (void)state;

    assert_int_equal(guest_memory_alloc(&mem, layout, 1), 0);
    memset(mem.regions[0].host + (5u << 20), 0x77, 8192);
    mem.regions[0].host[(40u << 20) + 1] = 1;
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add_memory(w, "memory", &mem, NULL, NULL), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    assert_false(page_present(mem.regions[0].host + (20u << 20)));
    assert_false(page_present(mem.regions[0].host + (60u << 20)));
    assert_int_equal(guest_memory_alloc(&back, layout, 1), 0);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(bundle_load_memory(b, "memory", &back), 0);
    bundle_close(b);
    assert_memory_equal(back.regions[0].host + (5u << 20), mem.regions[0].host + (5u << 20), 8192);
    assert_int_equal(back.regions[0].host[(40u << 20) + 1], 1);
    guest_memory_free(&back);
    guest_memory_free(&mem);
}

/* A disk larger than any section read into memory (1 GiB) goes in and
 * comes out streamed: same bytes (qemu-img compare), holes kept, and the process never
 * held more than a few tens of MiB of it. */
static void large_disk_streams(void **state)
{
    const off_t size = (1ll << 30) + 4096; /* just over what a section read may hold */
    char src[160], out[160], cmd[1200];
    struct bundle_writer *w;
    struct bundle *b;
    struct rusage ru;
    struct stat st;
    (void)state;

    snprintf(src, sizeof(src), "%s/big.raw", dir);
    snprintf(out, sizeof(out), "%s/big.out", dir);
    snprintf(cmd, sizeof(cmd),
             "truncate -s %lld '%s' && printf first | dd of='%s' conv=notrunc status=none && "
             "head -c 2M /dev/urandom | dd of='%s' bs=1M seek=700 conv=notrunc status=none && "
             "printf last | dd of='%s' bs=1 seek=%lld conv=notrunc status=none",
             (long long)size, src, src, src, src, (long long)size - 4);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add_file(w, "disk.0", src, BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size < (8 << 20)); /* zeros compress away */
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(bundle_extract(b, "disk.0", out), 0);
    bundle_close(b);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_size, size);
    assert_true(st.st_blocks * 512 < (16 << 20)); /* sparse */
    snprintf(cmd, sizeof(cmd), "qemu-img compare -q -f raw -F raw '%s' '%s'", src, out);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    assert_true(ru.ru_maxrss < 256 * 1024); /* KiB */
    unlink(src);
    unlink(out);
}

/* A section whose bytes match its hash but whose zstd frame is cut short,
 * or followed by more: extraction fails (EINVAL), leaving no file. */
static void bad_frame_is_refused(void **state)
{
    const size_t size = 3u << 20;
    uint8_t *data = malloc(size), *frame = malloc(ZSTD_compressBound(size) + 16);
    size_t n;
    char out[160];
    (void)state;

    memset(data, 'x', size);
    n = ZSTD_compress(frame, ZSTD_compressBound(size), data, size, 1);
    assert_false(ZSTD_isError(n));
    memcpy(frame + n, "trailing", 8);
    snprintf(out, sizeof(out), "%s/frame.out", dir);
    const size_t lengths[] = {n - 6, n + 8};
    for (size_t i = 0; i < 2; i++) {
        struct bundle_writer *w;
        struct bundle *b;
        assert_int_equal(bundle_writer_open(path, &w), 0);
        struct bundle_section *s = bundle_new_section(w, "disk.0", BUNDLE_ZSTD);
        assert_non_null(s);
        s->stored = lengths[i];
        s->size = size;
        hash_bytes(frame, lengths[i], s->sha256);
        assert_int_equal(bundle_write_at(w, s->offset, frame, lengths[i]), 0);
        w->end = s->offset + s->stored;
        assert_int_equal(bundle_writer_commit(w), 0);
        assert_int_equal(bundle_open(path, &b), 0);
        assert_int_equal(bundle_extract(b, "disk.0", out), -EINVAL);
        assert_non_null(strstr(err_msg(), "does not decompress"));
        assert_int_equal(access(out, F_OK), -1);
        bundle_close(b);
        err_clear();
    }
    free(data);
    free(frame);
}

static void write_file(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* A migration sends what cannot change while the VM runs before it
 * pauses: a save begun writes the kernel, the initrd and the layers under
 * a store instance's disk (not its delta: the guest writes it), right
 * behind the header, and no later section or the commit touches those
 * bytes again -- what went early is what the finished bundle has. */
static void begun_save_writes_boot_files_first(void **state)
{
    static uint8_t kernel[20000], early[262144], later[262144], layer[65536];
    char kernel_path[160], initrd_path[160], layers[128], base[256], overlay[160];
    char hash[HASH_HEX];
    struct machine m = {0};
    struct machine_saving *saving;
    struct bundle_writer *w;
    struct bundle *b;
    uint64_t end, later_end;
    uint8_t *initrd;
    size_t len;
    (void)state;

    for (size_t i = 0; i < sizeof(kernel); i++)
        kernel[i] = (uint8_t)(i * 7 + (i >> 9));
    snprintf(kernel_path, sizeof(kernel_path), "%s/kernel", dir);
    snprintf(initrd_path, sizeof(initrd_path), "%s/initrd", dir);
    write_file(kernel_path, kernel, sizeof(kernel));
    write_file(initrd_path, "an initrd", 9);
    /* A store instance's disk: a delta over a layer of random bytes. */
    snprintf(layers, sizeof(layers), "%s/layers", dir);
    assert_int_equal(mkdir(layers, 0700), 0);
    snprintf(base, sizeof(base), "%s/base", layers);
    for (size_t i = 0; i < sizeof(layer); i++)
        layer[i] = (uint8_t)(rand() >> 5);
    write_file(base, layer, sizeof(layer));
    assert_int_equal(hash_file(base, hash), 0);
    char *named = layer_path(layers, hash, "raw");
    assert_int_equal(rename(base, named), 0);
    snprintf(overlay, sizeof(overlay), "%s/delta.qcow2", dir);
    assert_int_equal(instance_overlay_at(overlay, named, "raw"), 0);
    free(named);
    vm_config_defaults(&m.cfg);
    m.cfg.kernel_path = kernel_path;
    m.cfg.initrd_path = initrd_path;
    m.cfg.disk_count = 1;
    m.cfg.disks[0].path = overlay;
    m.cfg.disks[0].format = "qcow2";
    struct machine_save_options o = {.with_state = true};
    assert_int_equal(machine_save_begin(&m, path, &o, &saving), 0);
    int fd = machine_saving_file(saving, &end);
    /* kernel, initrd, the layer (incompressible): no delta, no state yet */
    assert_true(end > BUNDLE_HEADER_SIZE + sizeof(kernel) + sizeof(layer) && end < sizeof(early));
    assert_true(end < BUNDLE_HEADER_SIZE + 5 * BUNDLE_ALIGN /* kernel */ + BUNDLE_ALIGN /* initrd */ +
                          sizeof(layer) + 1024);
    assert_int_equal(pread(fd, early, end - BUNDLE_HEADER_SIZE, BUNDLE_HEADER_SIZE),
                     (ssize_t)(end - BUNDLE_HEADER_SIZE));
    assert_memory_equal(early, kernel, sizeof(kernel)); /* raw, first */
    machine_save_abort(saving);

    /* The same through the rest of a save and its commit. */
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add_file(w, "kernel", kernel_path, BUNDLE_RAW), 0);
    assert_int_equal(bundle_add_file(w, "initrd", initrd_path, BUNDLE_ZSTD), 0);
    fd = bundle_writer_file(w, &end);
    assert_int_equal(pread(fd, early, end - BUNDLE_HEADER_SIZE, BUNDLE_HEADER_SIZE),
                     (ssize_t)(end - BUNDLE_HEADER_SIZE));
    assert_int_equal(bundle_add(w, "state", "paused", 6, BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "config", "{}", 2, BUNDLE_RAW), 0);
    bundle_writer_file(w, &later_end);
    assert_true(later_end > end);
    assert_int_equal(bundle_writer_commit(w), 0);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_int_equal(pread(fd, later, end - BUNDLE_HEADER_SIZE, BUNDLE_HEADER_SIZE),
                     (ssize_t)(end - BUNDLE_HEADER_SIZE));
    close(fd);
    assert_memory_equal(later, early, end - BUNDLE_HEADER_SIZE);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(bundle_read(b, "initrd", &initrd, &len), 0);
    assert_memory_equal(initrd, "an initrd", 9);
    free(initrd);
    bundle_close(b);
}

/* A bundle saved on a bigger host asks for more RAM than this one has:
 * refused by name before anything is unpacked or an instance made. */
static void too_much_memory_is_refused(void **state)
{
    struct vm_config cfg;
    struct bundle_writer *w;
    struct machine *m = NULL;
    char data[128], instance[192];
    (void)state;

    vm_config_defaults(&cfg);
    cfg.mem_bytes = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) +
                    (1ull << 30);
    char *json = vm_config_to_json(&cfg);
    assert_non_null(json);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "config", json, strlen(json), BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "state", "x", 1, BUNDLE_RAW), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    free(json);
    snprintf(data, sizeof(data), "%s/data", dir);
    setenv("XDG_DATA_HOME", data, 1);
    setenv("XDG_CACHE_HOME", data, 1);
    struct machine_start_options o = {.name = "big"};
    assert_int_equal(machine_start(path, &o, &m), -ENOMEM);
    assert_null(m);
    assert_non_null(strstr(err_msg(), "cannot start on this host"));
    assert_non_null(strstr(err_msg(), "more than this host's"));
    snprintf(instance, sizeof(instance), "%s/smolvm", data);
    assert_int_equal(access(instance, F_OK), -1);
    unsetenv("XDG_DATA_HOME");
    unsetenv("XDG_CACHE_HOME");
    err_clear();
}

/* A VM started from a bundle runs on a qcow2 overlay over the bundle's
 * disk unpacked into the disk cache as "<key>.raw": a name of the layers'
 * shape, but the key is not the hash of the disk's bytes. Saved as a chain
 * of layers, its reader would refuse that "layer" as corrupt: it is not
 * one, and the save flattens the disk instead. */
static void started_disk_is_not_a_layer_chain(void **state)
{
    struct bundle_writer *w;
    struct bundle *b;
    struct vm_config cfg;
    char xdg[128], overlay[160], *base = NULL;
    uint8_t disk[65536];
    (void)state;

    memset(disk, 0x5a, sizeof(disk));
    vm_config_defaults(&cfg);
    char *json = vm_config_to_json(&cfg);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "config", json, strlen(json), BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "disk.0", disk, sizeof(disk), BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    free(json);
    snprintf(xdg, sizeof(xdg), "%s/xdg", dir);
    setenv("XDG_CACHE_HOME", xdg, 1);
    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(machine_cached_disk(b, "disk.0", &base), 0);
    snprintf(overlay, sizeof(overlay), "%s/disk.0.qcow2", dir);
    assert_int_equal(instance_overlay_at(overlay, base, "raw"), 0);
    assert_false(bundle_disk_is_layered(overlay, "qcow2"));
    bundle_close(b);
    free(base);
    unsetenv("XDG_CACHE_HOME");
}

/* A store instance's chain for a migration whose destination has the
 * base: the bundle lists the base but does not carry it (smaller by it);
 * only a reader told it has that layer takes the list, and it finds the
 * layer in its folder or fails saying so. */
static void omitted_layers_are_listed_not_carried(void **state)
{
    char layers[128], base[256], overlay[160], hash[HASH_HEX], cache[160], cached[256];
    struct bundle_chains c = {0}, thin;
    struct bundle_layer found[4];
    struct bundle_writer *w;
    struct bundle *b;
    size_t n;
    bool added;
    uint8_t disk[65536];
    (void)state;

    /* A base layer named by its hash, a delta over it. */
    snprintf(layers, sizeof(layers), "%s/layers", dir);
    assert_int_equal(mkdir(layers, 0700), 0);
    snprintf(base, sizeof(base), "%s/base", layers);
    for (size_t i = 0; i < sizeof(disk); i++)
        disk[i] = (uint8_t)(rand() >> 5);
    FILE *f = fopen(base, "w");
    assert_int_equal(fwrite(disk, 1, sizeof(disk), f), sizeof(disk));
    fclose(f);
    assert_int_equal(hash_file(base, hash), 0);
    char *named = layer_path(layers, hash, "raw");
    assert_int_equal(rename(base, named), 0);
    snprintf(overlay, sizeof(overlay), "%s/delta.qcow2", dir);
    assert_int_equal(instance_overlay_at(overlay, named, "raw"), 0);
    /* What an offer names: the base. */
    assert_int_equal(bundle_disk_layers(overlay, "qcow2", found, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(found[0].hash, hash);
    assert_string_equal(found[0].format, "raw");

    /* Saved with the base omitted. */
    char omit[1][HASH_HEX];
    memcpy(omit[0], hash, HASH_HEX);
    c.omit = (const char(*)[HASH_HEX])omit;
    c.omit_count = 1;
    snprintf(base, sizeof(base), "%s/delta.tmp", dir);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_chains_add_disk(&c, w, 0, overlay, base), 0);
    assert_int_equal(bundle_chains_write(&c, w), 0);
    bundle_chains_release(&c);
    assert_int_equal(bundle_writer_commit(w), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size < (off_t)sizeof(disk)); /* random bytes: it would not shrink */

    assert_int_equal(bundle_open(path, &b), 0);
    assert_int_equal(bundle_chains_read(b, &thin), -EINVAL);
    assert_non_null(strstr(err_msg(), "is not in the bundle"));
    assert_int_equal(bundle_chains_read_thin(b, &thin, (const char(*)[HASH_HEX])omit, 1), 0);
    const struct bundle_layer *l = bundle_chains_find(&thin, hash);
    assert_non_null(l);
    assert_string_equal(l->section, "");
    /* Not in the folder: said so; there: taken as it is. */
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    assert_int_equal(mkdir(cache, 0700), 0);
    assert_int_equal(bundle_layer_extract(b, &thin, l, cache, &added), -ENOENT);
    assert_non_null(strstr(err_msg(), "neither in the bundle"));
    snprintf(cached, sizeof(cached), "%s/%s.raw", cache, hash);
    assert_int_equal(link(named, cached), 0);
    assert_int_equal(chmod(cached, 0444), 0);
    assert_int_equal(bundle_layer_extract(b, &thin, l, cache, &added), 0);
    assert_false(added);
    bundle_chains_release(&thin);
    bundle_close(b);
    free(named);
    err_clear();
}

/* A migration's destination starts its bundle once: a disk carried whole
 * goes into the instance folder, and nothing into the disk cache (where
 * each migration left a base the size of the disk, never used again). A
 * start as ever caches it. The fake kernel fails the build after the
 * disks are in place. */
static void private_disks_skip_the_disk_cache(void **state)
{
    struct vm_config cfg;
    struct bundle_writer *w;
    struct machine *m = NULL;
    char xdg[128], disks[192];
    uint8_t disk[65536];
    (void)state;

    memset(disk, 0x5a, sizeof(disk));
    vm_config_defaults(&cfg);
    cfg.mem_bytes = 64ull << 20;
    cfg.disk_count = 1;
    cfg.disks[0].path = "/saved/on/the/source.raw";
    cfg.disks[0].format = "raw";
    char *json = vm_config_to_json(&cfg);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "config", json, strlen(json), BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "kernel", "not a kernel", 12, BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "disk.0", disk, sizeof(disk), BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    free(json);
    snprintf(xdg, sizeof(xdg), "%s/xdg", dir);
    setenv("XDG_DATA_HOME", xdg, 1);
    setenv("XDG_CACHE_HOME", xdg, 1);
    snprintf(disks, sizeof(disks), "%s/smolvm/disks", xdg);
    struct machine_start_options o = {.name = "moved", .disks_private = true};
    assert_true(machine_start(path, &o, &m) < 0);
    assert_null(m);
    assert_int_equal(access(disks, F_OK), -1);
    o.disks_private = false; /* as ever: the base cached */
    assert_true(machine_start(path, &o, &m) < 0);

    assert_int_equal(access(disks, F_OK), 0);
    unsetenv("XDG_DATA_HOME");
    unsetenv("XDG_CACHE_HOME");
    err_clear();
}

/* A file with the bundle's magic is a bundle or an error: truncated, it
 * still probes as one (create --from refuses it instead of importing it as
 * a raw disk); a file without the magic does not. */
static void magic_means_bundle(void **state)
{
    struct guest_memory mem;
    struct bundle *b;
    char other[160];
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    assert_int_equal(bundle_probe(path), 1);
    assert_int_equal(truncate(path, 5000), 0);
    assert_int_equal(bundle_probe(path), 1);
    assert_true(bundle_open(path, &b) < 0);
    assert_non_null(strstr(err_msg(), path));
    snprintf(other, sizeof(other), "%s/disk.raw", dir);
    close(open(other, O_WRONLY | O_CREAT, 0600));
    assert_int_equal(truncate(other, 1 << 20), 0);
    assert_int_equal(bundle_probe(other), 0);
    assert_true(bundle_probe("/nonexistent/x") < 0);
    guest_memory_free(&mem);
    err_clear();
}

/* The test seam: what the hook does to the file between two reads. */
static enum { HOOK_OFF, HOOK_TRUNCATE, HOOK_REWRITE } hook_action;
static uint64_t hook_after; /* acts on the first read at or past this offset */

static void change_file(const struct bundle *b, uint64_t offset, size_t len)
{
    (void)b;
    (void)len;
    if (hook_action == HOOK_OFF || offset < hook_after)
        return;
    if (hook_action == HOOK_TRUNCATE) {
        assert_int_equal(truncate(path, (off_t)offset + 1), 0);
    } else {
        int fd = open(path, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "XXXX", 4, (off_t)offset), 4);
        close(fd);
    }
    hook_action = HOOK_OFF;
}

static const struct bundle_section *section_of(const struct bundle *b, const char *name)
{
    const struct bundle_section *s = bundle_section(b, name);
    assert_non_null(s);
    return s;
}

/* Another process writes the bundle after a section's hash was checked:
 * the bytes used are the ones checked (read once, into private memory),
 * never a second read of the file. */
static void bytes_changed_after_check_are_not_used(void **state)
{
    struct guest_memory mem;
    struct bundle *b;
    uint8_t *data;
    size_t len;
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    assert_int_equal(bundle_open(path, &b), 0);
    bundle_read_hook = change_file;
    hook_action = HOOK_REWRITE;
    hook_after = section_of(b, "config")->offset;
    assert_int_equal(bundle_read(b, "config", &data, &len), 0);
    assert_int_equal(hook_action, HOOK_OFF); /* the file did change */
    assert_string_equal((char *)data, "{\"cpus\": 1}");
    free(data);
    /* Read again, the changed bytes fail their hash. */
    assert_int_equal(bundle_read(b, "config", &data, &len), -EINVAL);
    assert_non_null(strstr(err_msg(), "fails its checksum"));
    /* The same for a memory chunk, changed once it was read. */
    struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
    struct guest_memory back;
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    hook_action = HOOK_REWRITE;
    hook_after = section_of(b, "memory")->offset + 4096; /* past the index */
    assert_int_equal(bundle_load_memory(b, "memory", &back), 0);
    assert_int_equal(hook_action, HOOK_OFF);
    assert_memory_equal(back.regions[0].host, mem.regions[0].host, RAM_LOW);
    assert_memory_equal(back.regions[1].host, mem.regions[1].host, RAM_HIGH);
    assert_int_equal(bundle_load_memory(b, "memory", &back), -EINVAL);
    assert_non_null(strstr(err_msg(), "fails its checksum"));
    guest_memory_free(&back);
    bundle_read_hook = NULL;
    bundle_close(b);
    guest_memory_free(&mem);
    err_clear();
}

/* The file truncated while it is unpacked (after its header and the memory
 * index were read): one line saying it is corrupt, no crash (nothing of it
 * is mapped: no SIGBUS) and nothing left in the cache or beside the
 * extracted file. */
static void truncated_while_reading_leaves_nothing(void **state)
{
    struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
    struct guest_memory mem, back;
    struct bundle *b;
    char cache[128], out[160], cmd[400];
    (void)state;

    fake_ram(&mem);
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    assert_int_equal(mkdir(cache, 0700), 0);
    snprintf(out, sizeof(out), "%s/kernel.out", dir);
    bundle_read_hook = change_file;
    for (int round = 0; round < 3; round++) {
        if (round < 2) {
            write_bundle(&mem);
        } else { /* a disk of three pieces, truncated after the first */
            struct bundle_writer *w;
            assert_int_equal(bundle_writer_open(path, &w), 0);
            assert_int_equal(bundle_add(w, "kernel", mem.regions[0].host, 3u << 20, BUNDLE_RAW), 0);
            assert_int_equal(bundle_writer_commit(w), 0);
        }
        assert_int_equal(bundle_open(path, &b), 0);
        const struct bundle_section *s = section_of(b, round == 2 ? "kernel" : "memory");
        hook_action = HOOK_TRUNCATE;
        hook_after = s->offset + (round == 2 ? 0 : 4096); /* past the memory index */
        int r = round == 0   ? machine_memory_cache(b, "memory", &back, cache, MEMORY_CACHE_COPY)
                : round == 1 ? bundle_load_memory(b, "memory", &back)
                             : bundle_extract(b, "kernel", out);
        if (r != -EINVAL)
            fail_msg("round %d: %d (%s)", round, r, err_msg());
        assert_non_null(strstr(err_msg(), "is corrupt"));
        assert_null(strchr(err_msg(), '\n'));
        bundle_close(b);
        err_clear();
    }
    bundle_read_hook = NULL;
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\" && ! test -e '%s'", cache, out);
    assert_int_equal(system(cmd), 0);
    guest_memory_free(&back);
    guest_memory_free(&mem);
}

/* The same in the store: a bundle whose disk is cut short while create
 * --from unpacks it leaves no .tmp-* and no layer behind. */
static void truncated_import_leaves_nothing_in_store(void **state)
{
    char data[128], cmd[400], top[HASH_HEX], kernel[HASH_HEX], initrd[HASH_HEX];
    struct vm_config cfg, back;
    struct bundle_writer *w;
    struct bundle *b;
    struct store *s;
    uint8_t *disk = malloc(3u << 20);
    (void)state;

    for (size_t i = 0; i < (3u << 20); i++)
        disk[i] = (uint8_t)(i * 7 + (i >> 12));
    vm_config_defaults(&cfg);
    char *json = vm_config_to_json(&cfg);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "config", json, strlen(json), BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "disk.0", disk, 3u << 20, BUNDLE_RAW), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    free(json);
    free(disk);
    assert_int_equal(bundle_open(path, &b), 0);
    hook_after = section_of(b, "disk.0")->offset;
    bundle_close(b);
    snprintf(data, sizeof(data), "%s/data", dir);
    setenv("XDG_DATA_HOME", data, 1);
    assert_int_equal(store_open(&s), 0);
    bundle_read_hook = change_file;
    hook_action = HOOK_TRUNCATE;
    assert_int_equal(store_import_bundle(s, path, top, kernel, initrd, &back, NULL), -EINVAL);
    bundle_read_hook = NULL;
    assert_non_null(strstr(err_msg(), "is corrupt"));
    assert_null(strchr(err_msg(), '\n'));
    vm_config_release(&back);
    store_close(s);
    snprintf(cmd, sizeof(cmd), "test -z \"$(find '%s/smolvm/layers' -type f)\"", data);
    assert_int_equal(system(cmd), 0);
    unsetenv("XDG_DATA_HOME");
    err_clear();
}

/* One zstd frame of 1 GiB of zeros (about 32 KiB stored); its header says
 * content_size, which may be a lie. */
static size_t zeros_frame(uint8_t **out, uint64_t content_size)
{
    const size_t piece = 1u << 20;
    uint8_t *zero = calloc(1, piece), *frame = malloc(1u << 20);
    ZSTD_CCtx *z = ZSTD_createCCtx();
    size_t len = 0;

    assert_non_null(zero);
    assert_non_null(frame);
    ZSTD_CCtx_setPledgedSrcSize(z, 1ull << 30);
    for (size_t done = 0; done < (1u << 30); done += piece) {
        ZSTD_inBuffer in = {zero, piece, 0};
        ZSTD_EndDirective end = done + piece == (1u << 30) ? ZSTD_e_end : ZSTD_e_continue;
        size_t left;
        do {
            ZSTD_outBuffer o = {frame + len, (1u << 20) - len, 0};
            left = ZSTD_compressStream2(z, &o, &in, end);
            assert_false(ZSTD_isError(left));
            len += o.pos;
        } while (end == ZSTD_e_end ? left != 0 : in.pos < in.size);
    }
    ZSTD_freeCCtx(z);
    free(zero);
    /* The frame header: magic, descriptor, [window], [dict id], size. */
    uint8_t fhd = frame[4];
    size_t at = 5 + !(fhd & 0x20) + (size_t[]){0, 1, 2, 4}[fhd & 3];
    assert_int_equal(fhd >> 6, 2); /* a 4-byte content size */
    assert_int_equal(frame[at] | frame[at + 1] << 8 | frame[at + 2] << 16 |
                         (uint32_t)frame[at + 3] << 24, 1u << 30);
    for (int i = 0; i < 4; i++)
        frame[at + i] = (uint8_t)(content_size >> (8 * i));
    *out = frame;
    return len;
}

/* A config section of 1 GiB of zeros, declared as such or as 100 bytes (the
 * frame lying about its size too): refused with one line, and the reader's
 * peak RSS stays small. Measured in a child, whose peak starts at its
 * parent's RSS when forked. */
static void config_bomb_is_refused(void **state)
{
    for (int lie = 0; lie < 2; lie++) {
        uint64_t declared = lie ? 100 : 1ull << 30;
        uint8_t *frame;
        size_t len = zeros_frame(&frame, declared);
        struct bundle_writer *w;
        assert_int_equal(bundle_writer_open(path, &w), 0);
        struct bundle_section *s = bundle_new_section(w, "config", BUNDLE_ZSTD);
        assert_non_null(s);
        s->stored = len;
        s->size = declared;
        hash_bytes(frame, len, s->sha256);
        assert_int_equal(bundle_write_at(w, s->offset, frame, len), 0);
        w->end = s->offset + s->stored;
        assert_int_equal(bundle_writer_commit(w), 0);
        free(frame);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            struct rusage before, after;
            struct bundle *b;
            uint8_t *data;
            size_t n;
            getrusage(RUSAGE_SELF, &before);
            if (bundle_open(path, &b) < 0 || bundle_read(b, "config", &data, &n) == 0)
                _exit(10);
            fprintf(stderr, "refused: %s\n", err_msg());
            if (strchr(err_msg(), '\n') || !strstr(err_msg(), "is corrupt"))
                _exit(11);
            getrusage(RUSAGE_SELF, &after);
            _exit(after.ru_maxrss - before.ru_maxrss < 64 * 1024 ? 0 : 12); /* KiB */
        }
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    (void)state;
}

/* A bundle that carries guest RAM (or saved state) is its owner's only;
 * one without stays readable (pack's output is meant to be shared). */
static void ram_bundle_is_private(void **state)
{
    struct guest_memory mem;
    struct bundle_writer *w;
    struct stat st;
    mode_t old = umask(022);
    (void)state;

    fake_ram(&mem);
    write_bundle(&mem);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "config", "{}", 2, BUNDLE_RAW), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    umask(old);
    guest_memory_free(&mem);
}

/* The memory cache is reused without hashing it again, so a cache file
 * another user could have written is not used (it is rebuilt), and cache
 * folders are made the user's only, or refused when they are another's. */
static void tampered_cache_is_not_used(void **state)
{
    struct guest_region layout[2] = {{0, RAM_LOW, NULL}, {1ull << 32, RAM_HIGH, NULL}};
    struct guest_memory mem, back;
    struct bundle *b;
    char xdg[128], root[160], ram[512], *cache;
    struct stat st;
    (void)state;

    snprintf(xdg, sizeof(xdg), "%s/xdg", dir);
    snprintf(root, sizeof(root), "%s/smolvm", xdg);
    setenv("XDG_CACHE_HOME", xdg, 1);
    assert_int_equal(cache_dir_prepare("memory", &cache), 0);
    assert_int_equal(chmod(root, 0777), 0);
    assert_int_equal(chmod(cache, 0777), 0);
    free(cache);
    assert_int_equal(cache_dir_prepare("memory", &cache), 0);
    assert_int_equal(stat(root, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(cache, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    fake_ram(&mem);
    write_bundle(&mem);
    assert_int_equal(guest_memory_alloc(&back, layout, 2), 0);
    assert_int_equal(bundle_open(path, &b), 0);
    char key[65];
    assert_int_equal(bundle_section_key(b, "memory", key), 0);
    snprintf(ram, sizeof(ram), "%s/%s.ram", cache, key);
    for (int round = 0; round < (geteuid() == 0 ? 2 : 1); round++) {
        assert_int_equal(machine_memory_cache(b, "memory", &back, cache, MEMORY_CACHE_COPY), 0);
        /* Another user writes the cache file: world-writable, or theirs. */
        int fd = open(ram, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "evil", 4, 4096), 4);
        close(fd);
        if (round == 0)
            assert_int_equal(chmod(ram, 0666), 0);
        else
            assert_int_equal(chown(ram, 12345, 12345), 0);
        memset(back.regions[0].host, 0, RAM_LOW);
        assert_int_equal(machine_memory_cache(b, "memory", &back, cache, MEMORY_CACHE_COPY), 0);
        assert_memory_equal(back.regions[0].host, mem.regions[0].host, RAM_LOW);
        assert_int_equal(stat(ram, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(st.st_uid, geteuid());
    }
    if (geteuid() == 0) { /* a folder of another user's is refused */
        char *again;
        assert_int_equal(chown(cache, 12345, 12345), 0);
        assert_int_equal(cache_dir_prepare("memory", &again), -EPERM);
        assert_non_null(strstr(err_msg(), "belongs to uid 12345"));
        err_clear();
    }
    bundle_close(b);
    free(cache);
    unsetenv("XDG_CACHE_HOME");
    guest_memory_free(&back);
    guest_memory_free(&mem);
}

/* The cache folders a jailed start's plan prepares together: the root
 * checked once, but checked (made private), each folder made private, and
 * one that is not a folder left out without the others. */
static void cache_dirs_are_prepared_together(void **state)
{
    static const char *const subs[] = {"disks", "layers", "memory"};
    char xdg[128], root[160], layers[192], *dirs[3];
    struct stat st;
    (void)state;

    snprintf(xdg, sizeof(xdg), "%s/xdg", dir);
    snprintf(root, sizeof(root), "%s/smolvm", xdg);
    snprintf(layers, sizeof(layers), "%s/layers", root);
    setenv("XDG_CACHE_HOME", xdg, 1);
    assert_int_equal(cache_dirs_prepare(subs, 3, dirs), 0);
    for (int i = 0; i < 3; i++) {
        assert_non_null(dirs[i]);
        assert_int_equal(stat(dirs[i], &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
        assert_int_equal(chmod(dirs[i], 0755), 0);
        free(dirs[i]);
    }
    assert_int_equal(chmod(root, 0755), 0);
    assert_int_equal(rmdir(layers), 0);
    int fd = open(layers, O_WRONLY | O_CREAT | O_EXCL, 0600); /* not a folder */
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(cache_dirs_prepare(subs, 3, dirs), -1);
    assert_non_null(dirs[0]);
    assert_null(dirs[1]);
    assert_non_null(dirs[2]);
    assert_int_equal(stat(root, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700); /* checked, once */
    for (int i = 0; i < 3; i += 2) {
        assert_int_equal(stat(dirs[i], &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        free(dirs[i]);
    }
    unlink(layers);
    unsetenv("XDG_CACHE_HOME");
}

/* Another user's hands in the cache (as root, the test plays them with
 * chown): a root of theirs is refused, and a folder that is a link they
 * made is refused though it leads to a folder of ours. */
static void cache_refuses_what_another_user_made(void **state)
{
    static const char *const subs[] = {"disks"};
    char xdg[128], root[160], disks[192], ours[192], *dirs[1];
    (void)state;

    if (geteuid() != 0)
        skip(); /* chown to another uid needs root */
    snprintf(xdg, sizeof(xdg), "%s/xdg2", dir);
    snprintf(root, sizeof(root), "%s/smolvm", xdg);
    snprintf(disks, sizeof(disks), "%s/disks", root);
    snprintf(ours, sizeof(ours), "%s/ours", xdg);
    assert_int_equal(mkdir(xdg, 0700), 0);
    assert_int_equal(mkdir(root, 0777), 0);
    assert_int_equal(chown(root, 12345, 12345), 0);
    setenv("XDG_CACHE_HOME", xdg, 1);
    assert_int_equal(cache_dirs_prepare(subs, 1, dirs), -1);
    assert_null(dirs[0]);
    assert_int_equal(chown(root, 0, 0), 0);
    assert_int_equal(rmdir(disks), 0); /* paths_cache_dir() made it, ours, before the check */
    assert_int_equal(mkdir(ours, 0700), 0);
    assert_int_equal(symlink(ours, disks), 0);
    assert_int_equal(lchown(disks, 12345, 12345), 0);
    assert_int_equal(cache_dir_prepare("disks", &dirs[0]), -EPERM);
    assert_non_null(strstr(err_msg(), "is a link made by uid 12345"));
    err_clear();
    assert_int_equal(lchown(disks, 0, 0), 0); /* the user's own link is followed */
    assert_int_equal(cache_dir_prepare("disks", &dirs[0]), 0);
    free(dirs[0]);
    unlink(disks);
    unsetenv("XDG_CACHE_HOME");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(begun_save_writes_boot_files_first, setup, teardown),
        cmocka_unit_test_setup_teardown(sparse_disk_extract, setup, teardown),
        cmocka_unit_test_setup_teardown(extract_replaces_a_planted_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(staged_save_takes_only_a_plain_file, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_from_a_checked_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(vm_written_files_are_read_beneath_their_folder, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(large_disk_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(save_skips_untouched_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_frame_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(mapped_from_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_bundle_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_version_is_named, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_header_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_memory_chunk_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(memory_layout_must_match, setup, teardown),
        cmocka_unit_test_setup_teardown(memory_chunk_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_memory_chunk_is_refused_when_unpacked, setup, teardown),
        cmocka_unit_test_setup_teardown(format_document_reader_agrees, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_key_covers_encoding, setup, teardown),
        cmocka_unit_test_setup_teardown(survives_random_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_write_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(too_much_memory_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(magic_means_bundle, setup, teardown),
        cmocka_unit_test_setup_teardown(bytes_changed_after_check_are_not_used, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_while_reading_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_import_leaves_nothing_in_store, setup, teardown),
        cmocka_unit_test_setup_teardown(config_bomb_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(ram_bundle_is_private, setup, teardown),
        cmocka_unit_test_setup_teardown(tampered_cache_is_not_used, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_dirs_are_prepared_together, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_refuses_what_another_user_made, setup, teardown),
        cmocka_unit_test_setup_teardown(started_disk_is_not_a_layer_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(omitted_layers_are_listed_not_carried, setup, teardown),
        cmocka_unit_test_setup_teardown(private_disks_skip_the_disk_cache, setup, teardown),
    };
    srand(7);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
