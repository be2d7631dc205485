/* What the disk library refuses, and what it does instead, with qemu-img
 * as the judge: rebase -b "" makes an image stand alone (its chain's data
 * copied in first, unless -u) and a failed rebase leaves the header as it
 * was; a backing file is recorded with its format, and one whose format
 * is not recorded is read raw or refused, never probed into another
 * format; a guest cannot turn a probed raw disk into a qcow2 by changing
 * its buffer between the check and the write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "disk/copy.h"
#include "disk/disk.h"
#include "util/err.h"
#include "scratch.h"

static char smolvm[4096];

static int setup(void **state)
{
    (void)state;
    if (scratch_find_smolvm(smolvm, sizeof(smolvm)) < 0)
        return -1;
    return scratch_setup("disk-rules");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

/* base.qcow2 <- top.qcow2, each holding data of its own; want.raw: what
 * top reads as. */
static void make_chain(void)
{
    assert_int_equal(sh("rm -f base.qcow2 top.qcow2 want.raw && "
                        "qemu-img create -q -f qcow2 base.qcow2 4M && "
                        "qemu-io -c 'write -P 0x11 0 2M' base.qcow2 >/dev/null && "
                        "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 && "
                        "qemu-io -c 'write -P 0x22 1M 1M' -c 'write -z 512k 64k' top.qcow2 "
                        ">/dev/null && qemu-img convert -O raw top.qcow2 want.raw"), 0);
}

static void expect_standalone(const char *image)
{
    assert_int_equal(sh("qemu-img check -q %s && ! qemu-img info %s | grep -q 'backing file' && "
                        "qemu-img compare -q -f qcow2 -F raw %s want.raw", image, image, image), 0);
}

/* rebase -b "": safe mode copies the chain's data in, so the image reads
 * the same with no backing file; -u only drops the name (as qemu-img
 * rebase -u -b "" does to the same image). */
static void test_rebase_to_standalone(void **state)
{
    (void)state;
    make_chain();
    assert_int_equal(disk_rebase(in_dir("top.qcow2"), NULL, "", NULL, false, NULL, NULL), 0);
    expect_standalone("top.qcow2");

    make_chain();
    assert_int_equal(disk_rebase(in_dir("top.qcow2"), "qcow2", "", "qcow2", false, NULL, NULL), 0);
    expect_standalone("top.qcow2");

    make_chain();
    assert_int_equal(sh("cp top.qcow2 oracle.qcow2 && qemu-img rebase -u -b '' oracle.qcow2"), 0);
    assert_int_equal(disk_rebase(in_dir("top.qcow2"), NULL, "", NULL, true, NULL, NULL), 0);
    assert_int_equal(sh("qemu-img check -q top.qcow2 && ! qemu-img info top.qcow2 | grep -q "
                        "'backing file' && qemu-img compare -q top.qcow2 oracle.qcow2 && "
                        "! qemu-img compare -q -F raw top.qcow2 want.raw"), 0);
    /* The command line says the same. */
    make_chain();
    assert_int_equal(sh("'%s' disk rebase -b '' top.qcow2", smolvm), 0);
    expect_standalone("top.qcow2");
}

/* A rebase that fails changes nothing in the image's header (and nothing
 * it reads). */
static void test_failed_rebase_keeps_header(void **state)
{
    static const struct {
        const char *backing, *format;
        bool unsafe;
        const char *message;
    } cases[] = {
        {"missing.qcow2", "qcow2", false, "missing.qcow2"},
        {"base.qcow2", NULL, false, "format"},
        {"base.qcow2", NULL, true, "format"},
        {"base.qcow2", "nosuch", false, "nosuch"},
        {NULL, "qcow2", true, "too long"},
    };
    char long_name[1100];
    (void)state;
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_chain();
        assert_int_equal(sh("head -c 65536 top.qcow2 > header.before"), 0);
        int r = disk_rebase(in_dir("top.qcow2"), NULL, cases[i].backing ?: long_name,
                            cases[i].format, cases[i].unsafe, NULL, NULL);
        if (r == 0)
            fail_msg("case %zu: rebased", i);
        if (!strstr(err_msg(), cases[i].message))
            fail_msg("case %zu: '%s' lacks '%s'", i, err_msg(), cases[i].message);
        assert_int_equal(sh("head -c 65536 top.qcow2 | cmp -s - header.before && "
                            "qemu-img check -q top.qcow2 && "
                            "qemu-img compare -q -F raw top.qcow2 want.raw"), 0);
    }
}

static void expect_open(const char *name, const char *message)
{
    struct disk *d = NULL;
    int r = disk_open_as(in_dir(name), DISK_READ_ONLY, "qcow2", &d);
    if (!message) {
        if (r < 0)
            fail_msg("%s: %s", name, err_msg());
        disk_close(d);
        return;
    }
    if (r == 0) {
        disk_close(d);
        fail_msg("%s opened, expected '%s'", name, message);
    }
    if (!strstr(err_msg(), message))
        fail_msg("%s: '%s' lacks '%s'", name, err_msg(), message);
}

/* As qemu-img: no image is written with a backing file but not its
 * format. An image read without one (older tools wrote them) gets its
 * backing file raw when it looks raw, and is refused, saying how to
 * record the format, when it looks like anything else: a guest that wrote
 * a qcow2 header into a raw disk never has it followed. */
static void test_backing_format_required(void **state)
{
    struct disk_create_options o = {.size = 1u << 20, .backing = "base.qcow2"};
    (void)state;
    make_chain();
    sh("rm -f new.qcow2");
    assert_int_equal(disk_create("qcow2", in_dir("new.qcow2"), &o), -EINVAL);
    assert_non_null(strstr(err_msg(), "format"));
    assert_int_equal(access(in_dir("new.qcow2"), F_OK), -1);

    /* A raw base whose bytes are a qcow2 backed by a host file. */
    assert_int_equal(sh("rm -f hostfile looks.raw o.qcow2 && yes s3cr3t | head -c 1M > hostfile && "
                        "qemu-img create -q -f qcow2 -F raw -b \"$PWD/hostfile\" looks.raw 1M && "
                        "qemu-img create -q -f qcow2 -F raw -b looks.raw o.qcow2"), 0);
    expect_open("o.qcow2", NULL); /* recorded raw: raw */
    scratch_forget_backing_format("o.qcow2");
    expect_open("o.qcow2", "no recorded format");
    assert_non_null(strstr(err_msg(), "looks like qcow2"));
    assert_non_null(strstr(err_msg(), "rebase -u -F qcow2"));
    /* commit writes into the backing file: the same rule, nothing written. */
    assert_int_equal(sh("cp looks.raw looks.before"), 0);
    assert_true(disk_commit(in_dir("o.qcow2"), NULL, false, NULL, NULL) < 0);
    assert_non_null(strstr(err_msg(), "no recorded format"));
    assert_int_equal(sh("cmp -s looks.raw looks.before"), 0);
    /* Its format recorded again, it opens as that format. */
    assert_int_equal(disk_rebase(in_dir("o.qcow2"), NULL, "looks.raw", "raw", true, NULL, NULL), 0);
    expect_open("o.qcow2", NULL);
    assert_int_equal(sh("qemu-img info o.qcow2 | grep -q 'backing file format: raw'"), 0);

    /* A plain raw base without a recorded format is read raw. */
    assert_int_equal(sh("rm -f plain.raw p.qcow2 && yes plain | head -c 1M > plain.raw && "
                        "qemu-img create -q -f qcow2 -F raw -b plain.raw p.qcow2"), 0);
    scratch_forget_backing_format("p.qcow2");
    struct disk *d;
    uint8_t b[6];
    struct iovec iov = {b, sizeof(b)};
    assert_int_equal(disk_open_as(in_dir("p.qcow2"), DISK_READ_ONLY, "qcow2", &d), 0);
    assert_string_equal(d->backing->format->name, "raw");
    assert_int_equal(disk_read(d, &iov, 1, 0), 0);
    assert_memory_equal(b, "plain\n", 6);
    disk_close(d);
}

/* The guest's buffer, and a pwritev that changes it just before the
 * kernel copies it (what a second vCPU can do): every pwritev in this
 * program goes through here (it is linked in before the C library's). */
static uint8_t *guest_buffer;
static bool flip_armed;

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t offset)
{
    if (flip_armed) {
        flip_armed = false;
        memcpy(guest_buffer, "QFI\xfb\0\0\0\3", 8); /* a qcow2 v3 header's start */
    }
    return syscall(SYS_pwritev, fd, iov, n, (long)offset, 0L);
}

/* The bytes written to a probed raw disk's head are the bytes checked: a
 * buffer changed into a qcow2 header after the check does not reach the
 * file, which still opens as raw. */
static void test_raw_guard_writes_checked_bytes(void **state)
{
    static uint8_t buffer[8192];
    struct disk *d;
    uint8_t head[8];
    (void)state;
    assert_int_equal(sh("rm -f g.raw && truncate -s 1M g.raw"), 0);
    assert_int_equal(disk_open(in_dir("g.raw"), 0, &d), 0);
    assert_true(d->probed_raw);
    /* A qcow2 header written outright is refused. */
    memcpy(buffer, "QFI\xfb\0\0\0\3", 8);
    struct iovec whole = {buffer, sizeof(buffer)};
    assert_int_equal(disk_write(d, &whole, 1, 0), -EPERM);
    /* Zeros checked, a header there by the time the kernel reads. */
    guest_buffer = buffer;
    for (size_t split = 0; split < 3; split++) {
        struct iovec parts[2] = {{buffer, split ? 256 * split : sizeof(buffer)},
                                 {buffer + 256 * split, sizeof(buffer) - 256 * split}};
        memset(buffer, 0, sizeof(buffer));
        flip_armed = true;
        assert_int_equal(disk_write(d, parts, split ? 2 : 1, 0), 0);
        assert_false(flip_armed);
        int fd = open(in_dir("g.raw"), O_RDONLY);
        assert_int_equal(pread(fd, head, sizeof(head), 0), (ssize_t)sizeof(head));
        close(fd);
        assert_memory_equal(head, "\0\0\0\0\0\0\0\0", 8);
    }
    /* What lies past the probed head still comes from the guest's buffer. */
    memset(buffer, 0x5a, sizeof(buffer));
    assert_int_equal(disk_write(d, &whole, 1, 512), 0);
    disk_close(d);
    assert_int_equal(sh("qemu-img info g.raw | grep -q 'file format: raw' && "
                        "qemu-io -f raw -c 'read -P 0x5a 512 8192' g.raw | grep -q '^read'"), 0);
    /* With O_DIRECT (where the file system has it), the copy keeps an
     * aligned request aligned. */
    if (disk_open(in_dir("g.raw"), DISK_DIRECT, &d) == 0) {
        uint8_t *aligned = aligned_alloc(4096, 3 * 4096);
        memset(aligned, 0x33, 3 * 4096);
        struct iovec pieces[2] = {{aligned, 4096}, {aligned + 4096, 2 * 4096}};
        assert_int_equal(disk_write(d, pieces, 2, 0), 0);
        disk_close(d);
        free(aligned);
        assert_int_equal(sh("qemu-io -f raw -c 'read -P 0x33 0 12k' g.raw | grep -q '^read'"), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebase_to_standalone),
        cmocka_unit_test(test_failed_rebase_keeps_header),
        cmocka_unit_test(test_backing_format_required),
        cmocka_unit_test(test_raw_guard_writes_checked_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
