#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <glob.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "arch/x86/unpack.h"
#include "util/file.h"

#define SETUP_LEN 4096
#define PAYLOAD_LEN 100000

static uint8_t payload[PAYLOAD_LEN];

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A bzImage whose payload is `compressed`. */
static uint8_t *bzimage_with(const uint8_t *compressed, size_t clen, size_t *len)
{
    uint8_t *img = calloc(1, SETUP_LEN + clen + 4);
    img[0x1f1] = SETUP_LEN / 512 - 1;
    img[0x1fe] = 0x55, img[0x1ff] = 0xaa;
    img[0x200] = 0xeb, img[0x201] = 0x66;
    memcpy(img + 0x202, "HdrS", 4);
    img[0x206] = 0x0f, img[0x207] = 0x02;
    img[0x236] = 1;
    put32(img + 0x248, 0);
    put32(img + 0x24c, (uint32_t)clen);
    memcpy(img + SETUP_LEN, compressed, clen);
    *len = SETUP_LEN + clen + 4; /* trailing size word, as the kernel build adds */
    return img;
}

static void make_payload(void)
{
    for (size_t i = 0; i < PAYLOAD_LEN; i++)
        payload[i] = (uint8_t)(i * 7 + (i >> 9));
}

static size_t xz_compress(uint8_t *c, size_t cap)
{
    size_t clen = 0;
    assert_int_equal(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, payload, PAYLOAD_LEN, c,
                                             &clen, cap),
                     LZMA_OK);
    return clen;
}

static void check_roundtrip(const uint8_t *compressed, size_t clen)
{
    size_t len, out_len;
    uint8_t *img = bzimage_with(compressed, clen, &len), *out;

    assert_int_equal(x86_bzimage_unpack(img, len, &out, &out_len), 0);
    assert_int_equal(out_len, PAYLOAD_LEN);
    assert_memory_equal(out, payload, PAYLOAD_LEN);
    free(out);
    free(img);
}

static void unpacks_xz(void **state)
{
    static uint8_t c[PAYLOAD_LEN * 2];
    (void)state;
    make_payload();
    check_roundtrip(c, xz_compress(c, sizeof(c)));
}

static void unpacks_zstd(void **state)
{
    static uint8_t c[PAYLOAD_LEN * 2];
    size_t clen;
    (void)state;
    make_payload();
    clen = ZSTD_compress(c, sizeof(c), payload, PAYLOAD_LEN, 3);
    assert_false(ZSTD_isError(clen));
    check_roundtrip(c, clen);
}

static void unpacks_gzip(void **state)
{
    static uint8_t c[PAYLOAD_LEN * 2];
    z_stream z;
    (void)state;
    make_payload();
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = payload;
    z.avail_in = PAYLOAD_LEN;
    z.next_out = c;
    z.avail_out = sizeof(c);
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    check_roundtrip(c, z.total_out);
    deflateEnd(&z);
}

static void corrupt_or_unknown_payloads_are_refused(void **state)
{
    static uint8_t c[PAYLOAD_LEN * 2];
    size_t clen = 0, len, out_len;
    uint8_t *img, *out;
    char *path = (char *)1;
    (void)state;

    make_payload();
    clen = xz_compress(c, sizeof(c));
    c[clen / 2] ^= 0xff; /* corrupt the middle of the stream */
    img = bzimage_with(c, clen, &len);
    assert_int_equal(x86_bzimage_unpack(img, len, &out, &out_len), -EINVAL);
    /* Not bootable that way: no error, no path, the bzImage boots as is. */
    assert_int_equal(x86_unpacked_kernel(img, len, "/tmp/smolvm-unpack-test", &path), 0);
    assert_null(path);
    free(img);

    memset(c, 0x42, 64); /* no known magic */
    img = bzimage_with(c, 64, &len);
    assert_int_equal(x86_bzimage_unpack(img, len, &out, &out_len), -ENOTSUP);
    put32(img + 0x24c, 0x7fffffff); /* payload claims to run past the file */
    assert_int_equal(x86_bzimage_unpack(img, len, &out, &out_len), -ENOTSUP);
    free(img);
}

/* The oracle: unpacking the host's Debian kernel gives exactly what the xz
 * command line tool extracted from it. */
static void host_kernel_unpacks_like_xz(void **state)
{
    const char *expected_path = getenv("SMOLVM_TEST_VMLINUX");
    struct mapped_file kernel, expected;
    glob_t g;
    uint8_t *out;
    size_t out_len;
    (void)state;

    if (!expected_path || glob("/boot/vmlinuz-*", 0, NULL, &g) != 0) {
        skip();
        return;
    }
    assert_int_equal(file_map(g.gl_pathv[g.gl_pathc - 1], "kernel", &kernel), 0);
    assert_int_equal(file_map(expected_path, "vmlinux", &expected), 0);
    assert_int_equal(x86_bzimage_unpack(kernel.data, kernel.len, &out, &out_len), 0);
    assert_int_equal(out_len, expected.len);
    assert_memory_equal(out, expected.data, out_len);
    free(out);
    file_unmap(&kernel);
    file_unmap(&expected);
    globfree(&g);
}

/* The unpacked-kernel cache is named by the bzImage's SHA-256 (sha256sum
 * is the oracle): bundles' kernels land in it too, and a key an attacker
 * can collide would boot a hostile bundle's kernel for a trusted one. */
static void cache_is_named_by_sha256(void **state)
{
    struct mapped_file kernel;
    char cmd[512], want[65] = "", *path = NULL, dir[] = "/tmp/smolvm-unpack-key-XXXXXX";
    glob_t g;
    FILE *f;
    (void)state;

    if (glob("/boot/vmlinuz-*", 0, NULL, &g) != 0) {
        skip();
        return;
    }
    snprintf(cmd, sizeof(cmd), "sha256sum '%s'", g.gl_pathv[g.gl_pathc - 1]);
    assert_non_null(f = popen(cmd, "r"));
    assert_int_equal(fscanf(f, "%64s", want), 1);
    pclose(f);
    assert_int_equal(file_map(g.gl_pathv[g.gl_pathc - 1], "kernel", &kernel), 0);
    /* Its own folder: the normal and ASan builds of this test run at once. */
    assert_non_null(mkdtemp(dir));
    assert_int_equal(x86_unpacked_kernel(kernel.data, kernel.len, dir, &path), 0);
    assert_non_null(path);
    if (!strstr(path, want))
        fail_msg("cache file '%s' is not named by the SHA-256 %s", path, want);
    free(path);
    file_unmap(&kernel);
    globfree(&g);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* sha256sum's digest of path (the oracle of the cache's names). */
static void sha256sum(const char *path, char want[65])
{
    char cmd[512];
    FILE *f;

    snprintf(cmd, sizeof(cmd), "sha256sum '%s'", path);
    assert_non_null(f = popen(cmd, "r"));
    assert_int_equal(fscanf(f, "%64s", want), 1);
    pclose(f);
}

/* What the VMM (core/vm.c) and a jail's plan (x86_kernel_unpack_ahead) do
 * with a kernel file not known yet: stat it, read and hash it, unpack it,
 * remember its identity. The unpacked vmlinux's path. */
static char *unpack_and_remember(const char *kernel, const char *dir)
{
    struct mapped_file k;
    struct stat before;
    char *known = x86_unpacked_kernel_known(kernel, dir, &before), *path = NULL;

    assert_null(known);
    assert_int_equal(file_map(kernel, "kernel", &k), 0);
    assert_int_equal(x86_unpacked_kernel(k.data, k.len, dir, &path), 0);
    assert_non_null(path);
    x86_unpacked_kernel_remember(kernel, &before, dir, path);
    file_unmap(&k);
    return path;
}

static void __attribute__((format(printf, 1, 2))) run(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* A kernel file is known by its identity once settled, and never by a
 * stale one: a changed file (another size; the same size rewritten in
 * place, same inode) is hashed again, and names its own unpacked kernel. */
static void kernel_file_known_by_identity_until_changed(void **state)
{
    char dir[] = "/tmp/smolvm-unpack-identity-XXXXXX", kernel[128], want[65], *p1, *p2, *known;
    struct stat st;
    glob_t g;
    (void)state;

    if (glob("/boot/vmlinuz-*", 0, NULL, &g) != 0) {
        skip();
        return;
    }
    assert_non_null(mkdtemp(dir));
    snprintf(kernel, sizeof(kernel), "%s/vmlinuz", dir);
    run("cp '%s' '%s'", g.gl_pathv[g.gl_pathc - 1], kernel);
    globfree(&g);

    /* Just written: not recorded (a second write in the same tick of the
     * file system's clock would not change its times). */
    free(unpack_and_remember(kernel, dir));
    assert_null(x86_unpacked_kernel_known(kernel, dir, &st));

    sleep(X86_KERNEL_SETTLED_SECONDS + 1);
    p1 = unpack_and_remember(kernel, dir);
    assert_non_null(known = x86_unpacked_kernel_known(kernel, dir, &st));
    assert_string_equal(known, p1);
    free(known);

    /* Another size, the same inode: not known, and its own kernel. */
    run("printf '\\0' >> '%s'", kernel);
    assert_null(x86_unpacked_kernel_known(kernel, dir, &st));
    sleep(X86_KERNEL_SETTLED_SECONDS + 1);
    p2 = unpack_and_remember(kernel, dir);
    sha256sum(kernel, want);
    if (!strstr(p2, want) || strcmp(p1, p2) == 0)
        fail_msg("the changed kernel unpacks to '%s', not to one named by %s", p2, want);
    assert_non_null(known = x86_unpacked_kernel_known(kernel, dir, &st));
    assert_string_equal(known, p2);
    free(known);

    /* A link naming anything but one of the cache's kernels by its name
     * (here the same kernel, through the folder above) is not followed. */
    run("for l in '%s'/file-v*; do ln -sfn \"../$(basename '%s')/$(basename '%s')\" \"$l\"; done",
        dir, dir, p2);
    assert_null(x86_unpacked_kernel_known(kernel, dir, &st));
    run("for l in '%s'/file-v*; do ln -sfn \"$(basename '%s')\" \"$l\"; done", dir, p2);
    assert_non_null(known = x86_unpacked_kernel_known(kernel, dir, &st));
    free(known);

    /* The same size rewritten in place: its times changed, not known. */
    run("cp '%s' '%s.copy'", kernel, kernel);
    run("cat '%s.copy' > '%s'", kernel, kernel);
    assert_null(x86_unpacked_kernel_known(kernel, dir, &st));

    free(p1);
    free(p2);
    run("rm -rf '%s'", dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unpacks_xz),
        cmocka_unit_test(unpacks_zstd),
        cmocka_unit_test(unpacks_gzip),
        cmocka_unit_test(corrupt_or_unknown_payloads_are_refused),
        cmocka_unit_test(kernel_file_known_by_identity_until_changed),
        cmocka_unit_test(host_kernel_unpacks_like_xz),
        cmocka_unit_test(cache_is_named_by_sha256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
