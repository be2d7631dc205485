/* The appliance builder's writers judged by tools nobody here wrote:
 * cpio archives listed and unpacked by GNU cpio, module closures compared
 * with modprobe --show-depends, ext2 images checked by e2fsck -fn and read
 * back with debugfs. */
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
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image/appliance.h"
#include "image/cpio.h"
#include "image/ext2.h"
#include "image/kmod.h"
#include "util/err.h"
#include "scratch.h"

static int setup(void **state)
{
    (void)state;
    return scratch_setup("image");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}


static void write_file(const char *name, const void *data, size_t len)
{
    int fd = open(in_dir(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_true(write(fd, data, len) == (ssize_t)len);
    close(fd);
}

static void test_cpio_read_by_gnu_cpio(void **state)
{
    struct cpio c;
    (void)state;
    cpio_init(&c, 1700000000);
    assert_int_equal(cpio_add_dir(&c, "bin", 0755), 0);
    assert_int_equal(cpio_add_file(&c, "bin/hello", 0755, "#!/bin/sh\necho hi\n", 18), 0);
    assert_int_equal(cpio_add_symlink(&c, "bin/sh", "busybox"), 0);
    assert_int_equal(cpio_add(&c, &(struct cpio_entry){.name = "console", .mode = S_IFCHR | 0600,
                                                       .rdev_major = 5, .rdev_minor = 1}), 0);
    assert_int_equal(cpio_add_file(&c, "empty", 0644, "", 0), 0);
    assert_int_equal(cpio_finish(&c), 0);
    assert_int_equal(c.out.len % 512, 0);
    write_file("a.cpio", c.out.data, c.out.len);
    cpio_free(&c);
    /* Exactly these entries, with their types and modes. */
    assert_int_equal(sh("cpio -it < a.cpio 2>/dev/null | tr '\\n' ' ' | "
                        "grep -qx 'bin bin/hello bin/sh console empty '"), 0);
    assert_int_equal(sh("cpio -itv < a.cpio 2>/dev/null > list && "
                        "grep -q '^drwxr-xr-x .* bin$' list && "
                        "grep -q '^-rwxr-xr-x .* 18 .* bin/hello$' list && "
                        "grep -q '^lrwxrwxrwx .* bin/sh -> busybox$' list && "
                        "grep -q '^crw------- .* 5, *1 .* console$' list"), 0);
    assert_int_equal(sh("mkdir x && cd x && cpio -idm --no-absolute-filenames < ../a.cpio "
                        "2>/dev/null; test \"$(cat bin/hello)\" = \"$(printf '#!/bin/sh\\necho hi')\""),
                     0);
}

static const char *kernel_release(void)
{
    static char release[128];
    FILE *p = popen("ls /lib/modules | sort -V | tail -n 1", "r");
    assert_non_null(p);
    assert_non_null(fgets(release, sizeof(release), p));
    pclose(p);
    release[strcspn(release, "\n")] = 0;
    return release;
}

/* Our closure of each module, in order, is modprobe's. */
static void test_kmod_matches_modprobe(void **state)
{
    static const char *const names[] = {"ext4", "9p", "9pnet_virtio", "virtio_blk", "virtio_net",
                                        "vmw_vsock_virtio_transport", "virtio_console",
                                        "virtio-rng", "virtio_mmio", "ext2"};
    char moddir[256], cmd[512], want[16384], got[16384];
    (void)state;
    snprintf(moddir, sizeof(moddir), "/lib/modules/%s", kernel_release());
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct kmod_list l;
        const char *one[] = {names[i]};
        if (kmod_resolve(moddir, one, 1, &l) < 0)
            fail_msg("%s: %s", names[i], err_msg());
        got[0] = 0;
        for (size_t k = 0; k < l.count; k++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s\n", l.paths[k]);
        kmod_list_free(&l);
        snprintf(cmd, sizeof(cmd),
                 "modprobe --show-depends -S %s %s | awk '$1 == \"insmod\" { print $2 }'",
                 kernel_release(), names[i]);
        FILE *p = popen(cmd, "r");
        size_t n = fread(want, 1, sizeof(want) - 1, p);
        pclose(p);
        want[n] = 0;
        if (strcmp(want, got) != 0)
            fail_msg("%s: modprobe says\n%s\nwe say\n%s", names[i], want, got);
    }
    struct kmod_list l;
    const char *bad[] = {"no_such_module_here"};
    assert_true(kmod_resolve(moddir, bad, 1, &l) < 0);
    assert_non_null(strstr(err_msg(), "no_such_module_here"));
}

/* Decompressed modules are the plain module's bytes. */
static void test_kmod_read_compressed(void **state)
{
    (void)state;
    assert_int_equal(sh("head -c 300000 /dev/urandom > m.ko && xz -k -c m.ko > m.ko.xz && "
                        "zstd -q -c m.ko > m.ko.zst && gzip -c m.ko > m.ko.gz"), 0);
    uint8_t *plain, *data;
    size_t plain_len, len;
    char path[256];
    snprintf(path, sizeof(path), "%s/m.ko", dir);
    assert_int_equal(kmod_read(path, &plain, &plain_len), 0);
    assert_int_equal(plain_len, 300000);
    static const char *const ext[] = {".xz", ".zst", ".gz"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/m.ko%s", dir, ext[i]);
        assert_int_equal(kmod_read(path, &data, &len), 0);
        assert_int_equal(len, plain_len);
        assert_memory_equal(data, plain, len);
        free(data);
    }
    free(plain);
    write_file("bad.ko.xz", "not xz at all", 13);
    snprintf(path, sizeof(path), "%s/bad.ko.xz", dir);
    assert_true(kmod_read(path, &data, &len) < 0);
}

/* A sparse host file with data blocks in each addressing range. */
static void make_sparse(const char *name, const uint64_t *offsets, int n, uint64_t size)
{
    int fd = open(in_dir(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    for (int i = 0; i < n; i++) {
        char tag[32];
        int len = snprintf(tag, sizeof(tag), "block-at-%llu", (unsigned long long)offsets[i]);
        assert_true(pwrite(fd, tag, (size_t)len, (off_t)offsets[i]) == len);
    }
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static void build_and_check(unsigned bs)
{
    struct ext2 *e;
    struct ext2_attr file = {S_IFREG | 0644, 0, 0, 1700000000};
    char path[256], long_target[200];
    (void)path;
    assert_int_equal(ext2_new(bs, 1700000000, &e), 0);
    /* Direct, single, double and triple indirect blocks, holes between:
     * triple starts at block 12 + p + p^2 (p = bs/4). */
    uint64_t p = bs / 4, triple = (12 + p + p * p) * bs;
    uint64_t offs[] = {0, 13 * bs, (12 + p + 5) * bs, triple + 7 * bs};
    make_sparse("big", offs, 4, triple + 64 * bs);
    assert_int_equal(ext2_add_file(e, "/data/big", &file, in_dir("big")), 0);
    /* A directory of thousands of entries. */
    for (int i = 0; i < 3000; i++) {
        char name[64], content[32];
        snprintf(name, sizeof(name), "/many/file-%04d", i);
        int n = snprintf(content, sizeof(content), "%d\n", i);
        assert_int_equal(ext2_add_data(e, name, &file, content, (size_t)n), 0);
    }
    /* A deep tree. */
    char deep[512] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "/d");
    assert_int_equal(ext2_add_data(e, strcat(deep, "/leaf"), &file, "deep\n", 5), 0);
    memset(long_target, 'x', 150);
    strcpy(long_target + 150, "/target");
    struct ext2_attr any = {0777, 1000, 1000, 1700000000};
    assert_int_equal(ext2_add_symlink(e, "/fast", "data/big", &any), 0);
    assert_int_equal(ext2_add_symlink(e, "/slow", long_target, &any), 0);
    assert_int_equal(ext2_add_node(e, "/dev/console", &(struct ext2_attr){S_IFCHR | 0600, 0, 5, 1},
                                   makedev(5, 1)), 0);
    assert_int_equal(ext2_add_node(e, "/dev/big", &(struct ext2_attr){S_IFBLK | 0660, 0, 6, 1},
                                   makedev(259, 70000)), 0);
    assert_int_equal(ext2_add_node(e, "/dev/fifo", &(struct ext2_attr){S_IFIFO | 0644, 0, 0, 1},
                                   0), 0);
    assert_int_equal(ext2_add_data(e, "/owned", &(struct ext2_attr){S_IFREG | 04750, 70000, 80000,
                                                                    1600000000},
                                   "x", 1), 0);
    assert_true(ext2_add_data(e, "/../escape", &file, "", 0) < 0);
    assert_true(ext2_add_data(e, "/fast/under-a-symlink", &file, "", 0) < 0);
    assert_int_equal(ext2_write(e, in_dir("fs.ext2"), 8u << 20), 0);
    ext2_free(e);

    if (sh("e2fsck -fn fs.ext2 > fsck.out 2>&1") != 0) {
        sh("cat fsck.out >&2");
        fail_msg("e2fsck -fn (block size %u) is not clean", bs);
    }
    assert_int_equal(sh("debugfs -R 'cat /many/file-2999' fs.ext2 2>/dev/null | grep -qx 2999"), 0);
    assert_int_equal(sh("debugfs -R 'ls /many' fs.ext2 2>/dev/null | grep -o 'file-[0-9]*' | "
                        "wc -l | grep -qx 3000"), 0);
    assert_int_equal(sh("debugfs -R 'cat %s' fs.ext2 2>/dev/null | grep -qx deep", deep), 0);
    assert_int_equal(sh("debugfs -R 'stat /data/big' fs.ext2 2>/dev/null | "
                        "grep -q 'Size: %llu'", (unsigned long long)(triple + 64 * bs)), 0);
    /* Each tagged block reads back at its offset; holes stay holes. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(sh("debugfs -R 'bmap /data/big %llu' fs.ext2 2>/dev/null | "
                            "grep -qv '^0$'", (unsigned long long)(offs[i] / bs)), 0);
    assert_int_equal(sh("debugfs -R 'bmap /data/big 3' fs.ext2 2>/dev/null | grep -qx 0"), 0);
    if (bs == 1024) /* 64 MiB: small enough to compare whole (4 GiB with 4 KiB blocks) */
        assert_int_equal(sh("debugfs -R 'dump /data/big big.out' fs.ext2 2>/dev/null && "
                            "cmp -s big big.out && rm big.out"), 0);
    assert_int_equal(sh("debugfs -R 'stat /fast' fs.ext2 2>/dev/null | grep -q 'Fast link dest: \"data/big\"'"),
                     0);
    assert_int_equal(sh("debugfs -R 'stat /slow' fs.ext2 2>/dev/null | grep -q 'Size: 157'"), 0);
    assert_int_equal(sh("debugfs -R 'stat /dev/big' fs.ext2 2>/dev/null | "
                        "grep -q 'Device major/minor number: 259:70000'"), 0);
    assert_int_equal(sh("debugfs -R 'stat /owned' fs.ext2 2>/dev/null | "
                        "grep -q 'Mode:  04750' && debugfs -R 'stat /owned' fs.ext2 2>/dev/null | "
                        "grep -q 'User: 70000   Group: 80000'"), 0);
    assert_int_equal(sh("debugfs -R 'stat /d' fs.ext2 2>/dev/null | grep -q 'Links: 3'"), 0);
}

static void test_ext2_checked_by_e2fsck(void **state)
{
    (void)state;
    build_and_check(1024);
    build_and_check(4096);
}

/* A host tree copied in: what debugfs sees is what the host has. */
static void test_ext2_from_host_tree(void **state)
{
    struct ext2 *e;
    (void)state;
    assert_int_equal(sh("mkdir -p tree/sub/deeper && echo one > tree/a && ln -s a tree/link && "
                        "head -c 100000 /dev/urandom > tree/sub/r && chmod 600 tree/sub/r && "
                        "mkfifo tree/sub/pipe && touch -d @1600000000 tree/a"), 0);
    assert_int_equal(ext2_new(4096, 1700000000, &e), 0);
    assert_int_equal(ext2_add_tree(e, in_dir("tree"), "/"), 0);
    assert_int_equal(ext2_write(e, in_dir("t.ext2"), 0), 0);
    ext2_free(e);
    assert_int_equal(sh("e2fsck -fn t.ext2 >/dev/null 2>&1"), 0);
    assert_int_equal(sh("debugfs -R 'dump /sub/r r.out' t.ext2 2>/dev/null && cmp -s r.out tree/sub/r"), 0);
    assert_int_equal(sh("debugfs -R 'stat /sub/r' t.ext2 2>/dev/null | grep -q 'Mode:  0600'"), 0);
    assert_int_equal(sh("debugfs -R 'stat /a' t.ext2 2>/dev/null | grep -q 'mtime: 0x5f5e1000'"), 0);
    assert_int_equal(sh("debugfs -R 'stat /link' t.ext2 2>/dev/null | grep -q 'Fast link dest: \"a\"'"), 0);
    assert_int_equal(sh("debugfs -R 'stat /sub/pipe' t.ext2 2>/dev/null | grep -q 'Type: FIFO'"), 0);
}

static char *built_init(void)
{
    static char path[4200];
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(path, sizeof(path), "%s/../../smolvm-init", exe);
    return path;
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* An appliance: kernel, an initrd with our init and the modules' closure
 * in load order, an e2fsck-clean root with busybox and what was added; an
 * unchanged rebuild is a lookup, a changed input a rebuild, two builders
 * at once one result. */
static void test_appliance_build_and_cache(void **state)
{
    struct appliance_add adds[] = {{NULL, "/etc/added"}, {NULL, "/opt/tree"}};
    struct appliance_options o = {.init = built_init(), .adds = adds, .add_count = 2};
    struct appliance a;
    (void)state;
    assert_int_equal(sh("echo added-file > added && mkdir -p tree/sub && echo deep > tree/sub/f"),
                     0);
    adds[0].host = strdup(in_dir("added"));
    adds[1].host = strdup(in_dir("tree"));
    o.out_dir = strdup(in_dir("app"));
    if (appliance_build(&o, &a) < 0)
        fail_msg("build: %s", err_msg());
    assert_false(a.cached);
    appliance_release(&a);
    assert_int_equal(sh("e2fsck -fn app/root.ext2 > /dev/null 2>&1"), 0);
    assert_int_equal(sh("debugfs -R 'cat /etc/added' app/root.ext2 2>/dev/null | grep -qx added-file && "
                        "debugfs -R 'cat /opt/tree/sub/f' app/root.ext2 2>/dev/null | grep -qx deep && "
                        "debugfs -R 'stat /bin/sh' app/root.ext2 2>/dev/null | "
                        "grep -q 'Fast link dest: \"/bin/busybox\"'"), 0);
    assert_int_equal(sh("cpio -it < app/initrd 2>/dev/null > list && grep -qx init list && "
                        "grep -qx modules/ext4.ko list && grep -qx modules/virtio_blk.ko list && "
                        "cmp -s app/kernel \"$(ls /boot/vmlinuz-* | sort -V | tail -n 1)\""), 0);
    /* Every module in the order file is in the archive, and ext4 comes
     * after jbd2 (its dependency). */
    assert_int_equal(sh("mkdir ix && cd ix && cpio -id < ../app/initrd 2>/dev/null && "
                        "for m in $(cat modules/order); do test -s modules/$m || exit 1; done && "
                        "test $(grep -n '^jbd2.ko$' modules/order | cut -d: -f1) -lt "
                        "$(grep -n '^ext4.ko$' modules/order | cut -d: -f1) && "
                        "cmp -s init %s", o.init), 0);
    /* The guest agent built beside the init, and the vsock modules it needs. */
    assert_int_equal(sh("cmp -s ix/smolvm-agent \"$(dirname %s)/smolvm-agent\" && "
                        "test -x ix/smolvm-agent && "
                        "grep -qx vmw_vsock_virtio_transport.ko ix/modules/order", o.init), 0);
    double t0 = seconds_now();
    assert_int_equal(appliance_build(&o, &a), 0);
    assert_true(a.cached);
    assert_true(seconds_now() - t0 < 1.0);
    char key[65];
    memcpy(key, a.key, sizeof(key));
    appliance_release(&a);
    assert_int_equal(sh("sleep 0.01; echo changed > tree/sub/f"), 0);
    assert_int_equal(appliance_build(&o, &a), 0);
    assert_false(a.cached);
    assert_string_not_equal(a.key, key);
    appliance_release(&a);
    assert_int_equal(sh("debugfs -R 'cat /opt/tree/sub/f' app/root.ext2 2>/dev/null | grep -qx changed"),
                     0);
    /* Two builders into the cache at once. */
    setenv("XDG_CACHE_HOME", in_dir("cache"), 1);
    free((char *)o.out_dir);
    o.out_dir = NULL;
    pid_t child = fork();
    if (child == 0)
        _exit(appliance_build(&o, &a) == 0 ? 0 : 1);
    assert_int_equal(appliance_build(&o, &a), 0);
    int status;
    waitpid(child, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(sh("ls cache/smolvm/appliance | grep -v '^\\.' | wc -l | grep -qx 1 && "
                        "e2fsck -fn %s/root.ext2 > /dev/null 2>&1", a.dir), 0);
    appliance_release(&a);
    unsetenv("XDG_CACHE_HOME");
    o.kernel = "/etc/hostname";
    assert_true(appliance_build(&o, &a) < 0);
    assert_non_null(strstr(err_msg(), "not a bzImage"));
    free((char *)adds[0].host);
    free((char *)adds[1].host);
}

/* -o PATH replaces only an appliance a build wrote: a file, a folder of the
 * user's, or the current folder is refused with one line and left byte for
 * byte; an appliance is swapped for the new one; no lock file or temporary
 * folder is left beside it. --modules adds to the default set; a --size the
 * root does not fit in is refused, the old appliance kept. */
static void test_appliance_output_replaces_only_appliances(void **state)
{
    const char *extra[] = {"loop"};
    struct appliance_options o = {.init = built_init()};
    struct appliance a;
    char cwd[4096];
    (void)state;
    /* fake: an appliance's names and manifest, but "kernel" is a folder of the user's. */
    assert_int_equal(sh("mkdir out && cd out && echo notes > notes.txt && mkdir mydir && "
                        "echo precious > mydir/precious.txt && mkdir here && echo mine > here/x && "
                        "mkdir -p fake/kernel && echo keep > fake/kernel/work.txt && "
                        "echo '{\"builder\": 1}' > fake/appliance.json && "
                        "find . -type f | sort | xargs sha256sum > ../before"), 0);
    const char *refused[] = {"out/notes.txt", "out/mydir", "out/fake", "."};
    const size_t cwd_case = 3;
    for (size_t i = 0; i < 4; i++) {
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        if (i == cwd_case)
            assert_int_equal(chdir(in_dir("out/here")), 0);
        o.out_dir = i == cwd_case ? refused[i] : strdup(in_dir(refused[i]));
        err_clear();
        assert_true(appliance_build(&o, &a) < 0);
        assert_non_null(strstr(err_msg(), "not replaced"));
        assert_null(strchr(err_msg(), '\n'));
        if (i == cwd_case)
            assert_int_equal(chdir(cwd), 0);
        else
            free((char *)o.out_dir);
    }
    assert_int_equal(sh("cd out && find . -type f | sort | xargs sha256sum | cmp -s - ../before"),
                     0);
    o.out_dir = strdup(in_dir("out/app"));
    if (appliance_build(&o, &a) < 0)
        fail_msg("build: %s", err_msg());
    assert_string_equal(a.release, kernel_release());
    assert_true(a.module_count > 9 && a.root_bytes >= (64u << 20));
    size_t defaults = a.module_count;
    appliance_release(&a);
    assert_int_equal(sh("ls -i out/app/kernel > old-inode"), 0);
    o.modules = extra;
    o.module_count = 1;
    if (appliance_build(&o, &a) < 0)
        fail_msg("rebuild: %s", err_msg());
    assert_false(a.cached);
    assert_true(a.module_count > defaults);
    appliance_release(&a);
    assert_int_equal(sh("grep -q '\"loop\"' out/app/appliance.json && "
                        "grep -q '\"ext4\"' out/app/appliance.json && "
                        "! ls -i out/app/kernel | cmp -s - old-inode"), 0);
    o.root_size = 1 << 20;
    err_clear();
    assert_true(appliance_build(&o, &a) < 0);
    assert_non_null(strstr(err_msg(), "too small"));
    assert_int_equal(sh("grep -q '\"loop\"' out/app/appliance.json && test -s out/app/root.ext2"),
                     0);
    /* Nothing of the builds' own beside the targets. */
    assert_int_equal(sh("test -z \"$(find out -name '.*' ! -name . ! -name ..)\""), 0);
    free((char *)o.out_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpio_read_by_gnu_cpio),
        cmocka_unit_test(test_kmod_matches_modprobe),
        cmocka_unit_test(test_kmod_read_compressed),
        cmocka_unit_test(test_ext2_checked_by_e2fsck),
        cmocka_unit_test(test_ext2_from_host_tree),
        cmocka_unit_test(test_appliance_build_and_cache),
        cmocka_unit_test(test_appliance_output_replaces_only_appliances),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
