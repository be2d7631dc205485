/* The layer store: chains three deep read back the right data (against a
 * raw model), commit/reset/gc keep every instance's data, the same bytes
 * are stored once, bad layers (modified, missing, in use) give clear
 * errors, and 20 processes creating instances at once all succeed.
 * qemu-img checks every layer and delta. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bundle/bundle.h"
#include "disk/disk.h"
#include "machine/instance.h"
#include "store/store.h"
#include "util/err.h"
#include "util/hash.h"
#include "scratch.h"
#include "store_check.h"

#define SIZE (4u << 20)

static uint8_t model[SIZE];

static int setup(void **state)
{
    (void)state;
    int r = scratch_setup("store");
    setenv("XDG_DATA_HOME", in_dir("data"), 1);
    return r;
}

static int teardown(void **state)
{
    (void)state;
    sh("umount full 2>/dev/null");
    return scratch_teardown();
}

/* Writes a pattern to the instance's delta (through its chain) and to
 * the model. */
static void write_instance(struct store *s, const char *name, uint64_t offset, size_t len, int v)
{
    struct instance i;
    struct disk *d;
    uint8_t *buf = malloc(len);
    assert_int_equal(store_instance(s, name, &i), 0);
    if (disk_open(i.delta, 0, &d) < 0)
        fail_msg("open %s: %s", i.delta, err_msg());
    memset(buf, v, len);
    struct iovec iov = {buf, len};
    assert_int_equal(disk_write(d, &iov, 1, offset), 0);
    disk_close(d);
    memcpy(model + offset, buf, len);
    free(buf);
    store_instance_release(&i);
}

static void expect_content(struct store *s, const char *name)
{
    struct instance i;
    struct disk *d;
    static uint8_t back[SIZE];
    assert_int_equal(store_instance(s, name, &i), 0);
    assert_int_equal(disk_open(i.delta, DISK_READ_ONLY, &d), 0);
    struct iovec iov = {back, SIZE};
    assert_int_equal(disk_read(d, &iov, 1, 0), 0);
    disk_close(d);
    assert_memory_equal(back, model, SIZE);
    assert_int_equal(sh("qemu-img check -q '%s'", i.delta), 0);
    store_instance_release(&i);
}

static void test_chains_commit_reset_gc(void **state)
{
    struct store *s;
    char base[HASH_HEX], again[HASH_HEX], l2[HASH_HEX], l3[HASH_HEX];
    struct instance_boot boot = {.cmdline = "console=ttyS0"};
    unsigned removed;
    (void)state;

    for (size_t i = 0; i < SIZE; i++)
        model[i] = (uint8_t)(i / 4096 + 1);
    int fd = open(in_dir("base.raw"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(write(fd, model, SIZE) == SIZE);
    close(fd);
    assert_int_equal(store_open(&s), 0);
    assert_int_equal(store_add_layer(s, in_dir("base.raw"), "os", base), 0);
    assert_int_equal(store_add_layer(s, in_dir("base.raw"), "again", again), 0);
    assert_string_equal(base, again); /* the same bytes, stored once */
    assert_int_equal(layer_count(s), 1);

    assert_int_equal(store_create(s, "one", base, &boot), 0);
    assert_int_equal(store_create(s, "one", base, &boot), -EEXIST);
    assert_int_equal(sh("test $(du -k data/smolvm/instances/one/delta.qcow2 | cut -f1) -lt 512"), 0);
    write_instance(s, "one", 4096 * 3 + 100, 10000, 0xa1);
    assert_int_equal(store_commit(s, "one", "deps", l2), 0);
    write_instance(s, "one", SIZE - 70000, 70000, 0xb2);
    assert_int_equal(store_commit(s, "one", "user", l3), 0);
    write_instance(s, "one", 0, 5000, 0xc3); /* in the delta, on three layers */
    expect_content(s, "one");
    assert_int_equal(sh("for f in data/smolvm/layers/*.qcow2; do qemu-img check -q $f || exit 1; done"),
                     0);
    assert_int_equal(sh("qemu-img info --backing-chain data/smolvm/instances/one/delta.qcow2 | "
                        "grep -c '^image:' | grep -qx 4"), 0);

    /* Reset: the delta goes, the committed layers stay. */
    assert_int_equal(store_reset(s, "one"), 0);
    for (size_t i = 0; i < 5000; i++)
        model[i] = (uint8_t)(i / 4096 + 1);
    expect_content(s, "one");

    /* A second instance on the middle layer sees only what it holds. */
    assert_int_equal(store_create(s, "two", l2, &boot), 0);
    assert_true(store_remove_layer(s, l2) == -EBUSY);
    assert_non_null(strstr(err_msg(), "in use"));
    assert_int_equal(store_gc(s, &removed), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(store_remove(s, "one"), 0);
    assert_int_equal(store_gc(s, &removed), 0);
    assert_int_equal(removed, 1); /* l3: nobody's any more */
    assert_int_equal(layer_count(s), 2);
    assert_int_equal(store_remove(s, "two"), 0);
    assert_int_equal(store_gc(s, &removed), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(layer_count(s), 0);
    store_close(s);
}

static void test_bad_layers(void **state)
{
    struct store *s;
    char base[HASH_HEX], top[HASH_HEX];
    struct instance_boot boot = {0};
    struct instance i;
    (void)state;

    assert_int_equal(sh("head -c 1M /dev/urandom > b2.raw"), 0);
    assert_int_equal(store_open(&s), 0);
    assert_int_equal(store_add_layer(s, in_dir("b2.raw"), NULL, base), 0);
    assert_int_equal(store_create(s, "victim", base, &boot), 0);
    write_instance(s, "victim", 0, 4096, 7);
    assert_int_equal(store_commit(s, "victim", NULL, top), 0);
    assert_int_equal(store_instance(s, "victim", &i), 0);
    store_instance_release(&i);
    /* A layer changed behind the store's back: one byte flipped (writing a
     * fixed byte left the random layer as it was 1 time in 256). */
    char layer[128];
    unsigned char byte;
    snprintf(layer, sizeof(layer), "data/smolvm/layers/%s.raw", base);
    assert_int_equal(chmod(in_dir(layer), 0644), 0);
    int fd = open(in_dir(layer), O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &byte, 1, 100), 1);
    byte ^= 0xff;
    assert_int_equal(pwrite(fd, &byte, 1, 100), 1);
    close(fd);
    assert_true(store_instance(s, "victim", &i) < 0);
    assert_non_null(strstr(err_msg(), "was modified"));
    /* A layer gone. */
    assert_int_equal(sh("rm data/smolvm/layers/%s.raw", base), 0);
    assert_true(store_instance(s, "victim", &i) < 0);
    assert_non_null(strstr(err_msg(), "missing"));
    /* Names that could escape the instances folder. */
    assert_true(store_create(s, "../evil", top, &boot) < 0);
    assert_true(store_create(s, "a/b", top, &boot) < 0);
    assert_true(store_create(s, "x", "not-a-hash", &boot) < 0);
    /* An image backed by something outside the store is no layer. */
    assert_int_equal(sh("qemu-img create -q -f qcow2 -b b2.raw -F raw outside.qcow2"), 0);
    assert_true(store_add_layer(s, in_dir("outside.qcow2"), NULL, top) < 0);
    assert_non_null(strstr(err_msg(), "not a layer"));
    assert_int_equal(store_remove(s, "victim"), 0);
    store_close(s);
}

/* Overwrites layer hash's bytes with zeros in place, keeping its size and
 * mtime (what a power loss leaves of a file never synced, or a careful
 * hand). */
static void zero_layer_keeping_mtime(const char *hash)
{
    assert_int_equal(sh("f=data/smolvm/layers/%s.raw; touch -r $f mtime.ref && chmod u+w $f && "
                        "dd if=/dev/zero of=$f bs=64k count=16 conv=notrunc 2>/dev/null && "
                        "touch -r mtime.ref $f && chmod 0444 $f", hash), 0);
}

/* The "checked" stamp never vouches for bytes other than those hashed: a
 * layer rewritten with its size and mtime restored (touch -d) is hashed
 * again and refused; so is one whose stamp predates the rule (taken
 * before the file was synced: no ctime), even when that stamp matches. */
static void test_stamp_vouches_only_for_hashed_bytes(void **state)
{
    struct store *s;
    char base[HASH_HEX], *path = NULL;
    (void)state;

    assert_int_equal(sh("head -c 1M /dev/urandom > stamp1.raw && head -c 1M /dev/urandom > "
                        "stamp2.raw"), 0);
    assert_int_equal(store_open(&s), 0);
    assert_int_equal(store_add_layer(s, in_dir("stamp1.raw"), NULL, base), 0);
    assert_int_equal(store_layer_path(s, base, &path), 0);
    free(path);
    assert_int_equal(sh("grep -q ctime_ns data/smolvm/layers/%s.json", base), 0);
    zero_layer_keeping_mtime(base);
    assert_true(store_layer_path(s, base, &path) < 0);
    assert_non_null(strstr(err_msg(), "was modified"));
    /* Adding the same bytes again repairs the layer. */
    assert_int_equal(store_add_layer(s, in_dir("stamp1.raw"), NULL, base), 0);
    assert_int_equal(store_layer_path(s, base, &path), 0);
    assert_int_equal(sh("cmp -s '%s' stamp1.raw", path), 0);
    free(path);

    /* An old stamp (no ctime_ns) that matches the zeroed file's size,
     * mtime and inode. */
    assert_int_equal(store_add_layer(s, in_dir("stamp2.raw"), NULL, base), 0);
    zero_layer_keeping_mtime(base);
    assert_int_equal(sh("python3 -c \"import json,os;f='data/smolvm/layers/%s';"
                        "m=json.load(open(f+'.json'));st=os.stat(f+'.raw');"
                        "m['checked']={'bytes':st.st_size,'mtime_ns':st.st_mtime_ns,"
                        "'inode':st.st_ino};json.dump(m,open(f+'.json','w'))\"", base), 0);
    assert_true(store_layer_path(s, base, &path) < 0);
    assert_non_null(strstr(err_msg(), "was modified"));
    store_close(s);
}

/* Twenty processes create instances of one base at once. */
static void test_concurrent_creates(void **state)
{
    struct store *s;
    char base[HASH_HEX];
    pid_t pids[20];
    (void)state;
    assert_int_equal(sh("head -c 1M /dev/zero > z.raw && printf base >> z.raw"), 0);
    assert_int_equal(store_open(&s), 0);
    assert_int_equal(store_add_layer(s, in_dir("z.raw"), NULL, base), 0);
    for (int i = 0; i < 20; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            struct store *mine;
            char name[32];
            snprintf(name, sizeof(name), "par-%d", i);
            _exit(store_open(&mine) == 0 &&
                          store_create(mine, name, base, &(struct instance_boot){0}) == 0
                      ? 0
                      : 1);
        }
    }
    for (int i = 0; i < 20; i++) {
        int status;
        waitpid(pids[i], &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    json_t *list = json_array();
    assert_int_equal(store_list(s, list), 0);
    assert_true(json_array_size(list) >= 20);
    json_decref(list);
    assert_int_equal(sh("for d in data/smolvm/instances/par-*; do qemu-img check -q $d/delta.qcow2 "
                        "|| exit 1; done"), 0);
    store_close(s);
}

/* A disk that fills up during a commit: the commit fails with a clear
 * error and the instance, its data and the store stay as they were. Needs
 * a small file system: a tmpfs (root only; skipped otherwise). */
static void test_full_disk_during_commit(void **state)
{
    struct store *s;
    char base[HASH_HEX], hash[HASH_HEX];
    (void)state;
    if (sh("mkdir -p full && mount -t tmpfs -o size=2560k tmpfs full 2>/dev/null") != 0) {
        skip();
        return;
    }
    setenv("XDG_DATA_HOME", in_dir("full"), 1);
    assert_int_equal(sh("head -c 1M /dev/urandom > small.raw"), 0);
    assert_int_equal(store_open(&s), 0);
    assert_int_equal(store_add_layer(s, in_dir("small.raw"), NULL, base), 0);
    assert_int_equal(store_create(s, "filled", base, &(struct instance_boot){0}), 0);
    memset(model, 0, sizeof(model));
    write_instance(s, "filled", 0, 900 << 10, 0x77); /* a delta that fits once, not twice */
    int r = store_commit(s, "filled", "too big", hash);
    assert_true(r < 0);
    assert_non_null(strstr(err_msg(), "space"));
    /* Nothing half-made in the store; the instance reads as before. */
    assert_int_equal(layer_count(s), 1);
    assert_int_equal(sh("ls -A full/smolvm/layers | grep -c tmp | grep -qx 0"), 0);
    struct instance i;
    assert_int_equal(store_instance(s, "filled", &i), 0);
    assert_string_equal(i.top, base);
    store_instance_release(&i);
    uint8_t back[4096];
    assert_int_equal(store_instance(s, "filled", &i), 0);
    struct disk *d;
    assert_int_equal(disk_open(i.delta, DISK_READ_ONLY, &d), 0);
    struct iovec iov = {back, sizeof(back)};
    assert_int_equal(disk_read(d, &iov, 1, 800 << 10), 0);
    assert_int_equal(back[0], 0x77);
    disk_close(d);
    store_instance_release(&i);
    store_close(s);
    sh("umount full");
    setenv("XDG_DATA_HOME", in_dir("data"), 1);
}

/* The hashes that name layers and key caches are SHA-256 as coreutils'
 * sha256sum computes it: a file crossing the 1 MiB read chunk, and bytes
 * fed piece by piece against the same bytes at once. */
static void test_hash_is_sha256(void **state)
{
    char ours[HASH_HEX], theirs[HASH_HEX + 1] = "";
    uint8_t whole[HASH_BYTES], pieces[HASH_BYTES];
    struct hash_state h;
    (void)state;
    assert_int_equal(sh("head -c 3000000 /dev/urandom > hashed && sha256sum hashed | cut -c1-64 > sum"), 0);
    assert_int_equal(hash_file(in_dir("hashed"), ours), 0);
    FILE *f = fopen(in_dir("sum"), "r");
    assert_non_null(f);
    assert_non_null(fgets(theirs, sizeof(theirs), f));
    theirs[strcspn(theirs, "\n")] = 0;
    fclose(f);
    assert_string_equal(ours, theirs);
    hash_bytes("abcdefgh", 8, whole);
    hash_begin(&h);
    hash_add(&h, "abc", 3);
    hash_add(&h, "defgh", 5);
    hash_end(&h, pieces);
    assert_memory_equal(whole, pieces, HASH_BYTES);
    hash_bytes("abc", 3, whole); /* FIPS 180-2's first example */
    hash_to_hex(whole, ours);
    assert_string_equal(ours, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* A VM that runs the instance under another name holds its delta the way
 * the VMM does (the disk library's open for writing): reset, rm and commit
 * refuse, with one line naming it, and leave the folder as it was. */
static void test_delta_in_use(void **state)
{
    struct store *s;
    struct disk *vm_disk;
    struct instance i;
    char base[HASH_HEX], layer[HASH_HEX];
    struct instance_boot boot = {.cmdline = "console=ttyS0"};
    (void)state;

    assert_int_equal(sh("head -c 1M /dev/urandom > busy.raw"), 0);
    assert_int_equal(store_open(&s), 0);
    assert_int_equal(store_add_layer(s, in_dir("busy.raw"), "os", base), 0);
    assert_int_equal(store_create(s, "busy", base, &boot), 0);
    write_instance(s, "busy", 0, 4096, 0x5a);
    unsigned layers = layer_count(s);
    assert_int_equal(sh("cd data/smolvm/instances/busy && ls -li --time-style=full-iso > ../../../before"),
                     0);
    assert_int_equal(store_instance(s, "busy", &i), 0);
    assert_int_equal(disk_open(i.delta, 0, &vm_disk), 0);

    assert_int_equal(store_reset(s, "busy"), -EBUSY);
    assert_non_null(strstr(err_msg(), "instance 'busy' is running"));
    assert_null(strchr(err_msg(), '\n'));
    assert_int_equal(store_remove(s, "busy"), -EBUSY);
    assert_int_equal(store_commit(s, "busy", "live", layer), -EBUSY);
    assert_int_equal(layer_count(s), layers);
    assert_int_equal(sh("cd data/smolvm/instances/busy && ls -li --time-style=full-iso | "
                        "cmp -s - ../../../before"), 0);

    /* The VM gone, each goes through again. */
    disk_close(vm_disk);
    assert_int_equal(store_commit(s, "busy", "at rest", layer), 0);
    assert_int_equal(store_reset(s, "busy"), 0);
    assert_int_equal(store_remove(s, "busy"), 0);
    store_instance_release(&i);
    store_close(s);
}

/* A file added again with the same stamp is not read again; a changed
 * one (in place, or replaced by another file) is; a file that changed in
 * the last moments is not remembered. */
static void test_sources_reused(void **state)
{
    struct store *s;
    char first[HASH_HEX], again[HASH_HEX], changed[HASH_HEX], expect[HASH_HEX];
    bool reused;
    (void)state;

    /* Byte 1000 of src.raw is not 'x' (the change below writes one: a
     * random byte already 'x', 1 in 256, would leave the file as it was). */
    assert_int_equal(sh("head -c 1M /dev/urandom > src.raw && head -c 1M /dev/urandom > other.raw "
                        "&& printf a | dd of=src.raw bs=1 seek=1000 conv=notrunc 2>/dev/null"),
                     0);
    assert_int_equal(store_open(&s), 0);
    assert_int_equal(store_add_source(s, in_dir("src.raw"), "root", first, &reused), 0);
    assert_false(reused);
    assert_int_equal(store_add_source(s, in_dir("src.raw"), "root", again, &reused), 0);
    assert_false(reused); /* just written: its stamp could hide a change */
    sleep(3);
    assert_int_equal(store_add_source(s, in_dir("src.raw"), "root", again, &reused), 0);
    assert_false(reused);
    assert_int_equal(store_add_source(s, in_dir("src.raw"), "root", again, &reused), 0);
    assert_true(reused);
    assert_string_equal(again, first);

    /* Changed in place, the same size: copied again, a new layer. */
    assert_int_equal(sh("printf x | dd of=src.raw bs=1 seek=1000 conv=notrunc 2>/dev/null"), 0);
    assert_int_equal(store_add_source(s, in_dir("src.raw"), "root", changed, &reused), 0);
    assert_false(reused);
    assert_int_equal(hash_file(in_dir("src.raw"), expect), 0);
    assert_string_equal(changed, expect);
    assert_string_not_equal(changed, first);

    /* Another file moved in its place. */
    sleep(3);
    assert_int_equal(store_add_source(s, in_dir("other.raw"), "root", again, &reused), 0);
    assert_int_equal(store_add_source(s, in_dir("other.raw"), "root", again, &reused), 0);
    assert_true(reused);
    assert_int_equal(sh("cp other.raw copy.raw && touch -r other.raw copy.raw && mv copy.raw src.raw"),
                     0);
    assert_int_equal(store_add_source(s, in_dir("src.raw"), "root", changed, &reused), 0);
    assert_false(reused);
    assert_string_equal(changed, again);
    store_close(s);
}

/* create --share: the instance keeps its folders by tag; a start's
 * config has them, --share remaps a tag (an unknown one refused); shares
 * in instance.json are checked like any input. */
static void test_instance_shares(void **state)
{
    struct vm_share_config given[2] = {{.path = "/srv/a", .tag = "src", .read_only = true},
                                       {.path = "/srv/b", .tag = "out"}};
    struct store_create_request q = {.name = "sharing", .from = in_dir("s.raw"),
                                     .kernel = in_dir("s.raw"), .shares = given,
                                     .share_count = 2};
    struct vm_config cfg;
    struct instance i;
    const char *resume;
    bool shared;
    struct store *s;
    (void)state;

    assert_int_equal(sh("head -c 64K /dev/urandom > s.raw"), 0);
    assert_int_equal(store_open(&s), 0);
    assert_int_equal(store_create_from(s, &q), 0);
    assert_int_equal(store_instance(s, "sharing", &i), 0);
    assert_int_equal(i.boot.share_count, 2);
    assert_string_equal(i.boot.shares[0].tag, "src");
    assert_string_equal(i.boot.shares[0].path, "/srv/a");
    assert_true(i.boot.shares[0].read_only);
    assert_string_equal(i.boot.shares[1].path, "/srv/b");
    assert_false(i.boot.shares[1].read_only);
    store_instance_release(&i);

    vm_config_defaults(&cfg);
    assert_int_equal(machine_instance_config("sharing", &cfg, &resume, &shared), 0);
    assert_int_equal(cfg.share_count, 2);
    assert_string_equal(cfg.shares[1].path, "/srv/b");
    given[1].path = "/srv/elsewhere";
    assert_int_equal(vm_config_map_shares(&cfg, &given[1], 1), 0);
    assert_string_equal(cfg.shares[1].path, "/srv/elsewhere");
    given[1].tag = "nope";
    assert_true(vm_config_map_shares(&cfg, &given[1], 1) < 0);

    /* Hostile instance.json: a relative path, a tag with a '/'. */
    assert_int_equal(sh("cd data/smolvm/instances/sharing && "
                        "sed -i 's|\"/srv/a\"|\"../../x\"|' instance.json"), 0);
    assert_true(store_instance(s, "sharing", &i) < 0);
    assert_non_null(strstr(err_msg(), "bad share 0"));
    assert_int_equal(sh("cd data/smolvm/instances/sharing && "
                        "sed -i 's|\"../../x\"|\"/srv/a\"|; s|\"out\"|\"o/t\"|' instance.json"), 0);
    assert_true(store_instance(s, "sharing", &i) < 0);
    assert_non_null(strstr(err_msg(), "bad share 1"));
    assert_int_equal(store_remove(s, "sharing"), 0);
    store_close(s);
}

/* The discovery a start of the instance boots with, as its saved bundle
 * keeps it (machine_instance_export: the config every start is made from). */
static enum vm_discovery started_discovery(const char *name)
{
    struct vm_config cfg;
    struct bundle *b;
    uint8_t *config;
    size_t len;

    if (machine_instance_export(name, in_dir("started.smolmachine"), false, NULL) < 0)
        fail_msg("instance %s: %s", name, err_msg());
    assert_int_equal(bundle_open(in_dir("started.smolmachine"), &b), 0);
    assert_int_equal(bundle_read(b, "config", &config, &len), 0);
    assert_int_equal(vm_config_from_json((const char *)config, &cfg), 0);
    enum vm_discovery d = cfg.discovery;
    vm_config_release(&cfg);
    free(config);
    bundle_close(b);
    unlink(in_dir("started.smolmachine"));
    return d;
}

/* A bundle that boots (no state) whose kernel finds its devices on the
 * command line, as 'smolvm pack' of a micro appliance makes. */
static void cmdline_bundle(const char *path)
{
    struct bundle_writer *w;
    struct vm_config cfg;
    vm_config_defaults(&cfg);
    cfg.discovery = VM_DISCOVERY_CMDLINE;
    cfg.disk_count = 1;
    cfg.disks[0].format = "raw";
    char *config = vm_config_to_json(&cfg);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "config", config, strlen(config), BUNDLE_RAW), 0);
    assert_int_equal(bundle_add_file(w, "kernel", in_dir("m.raw"), BUNDLE_RAW), 0);
    assert_int_equal(bundle_add_file(w, "disk.0", in_dir("m.raw"), BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    free(config);
}

/* An instance of an appliance built with --kernel micro (no ACPI) boots
 * with its devices on the command line, as 'run' of the appliance does;
 * so does one of a bundle packed from it; --virtio-discovery at create
 * wins; a stock appliance's instance keeps ACPI; a bad value in
 * instance.json is refused by name. */
static void test_instance_keeps_discovery(void **state)
{
    struct store_create_request q = {.name = "micro", .from = in_dir("micro-app")};
    struct instance i;
    struct store *s;
    (void)state;

    assert_int_equal(sh("mkdir -p micro-app stock-app && head -c 64K /dev/urandom > m.raw && "
                        "for a in micro-app stock-app; do cp m.raw $a/kernel && cp m.raw $a/initrd "
                        "&& cp m.raw $a/root.ext2; done && "
                        "echo '{\"cmdline\": \"console=ttyS0\", \"virtio_discovery\": \"cmdline\"}' "
                        "> micro-app/appliance.json && "
                        "echo '{\"cmdline\": \"console=ttyS0\", \"virtio_discovery\": \"acpi\"}' "
                        "> stock-app/appliance.json"), 0);
    assert_int_equal(store_open(&s), 0);
    assert_int_equal(store_create_from(s, &q), 0);
    assert_int_equal(started_discovery("micro"), VM_DISCOVERY_CMDLINE);

    q.name = "micro-acpi";
    q.discovery_given = true;
    q.discovery = VM_DISCOVERY_ACPI;
    assert_int_equal(store_create_from(s, &q), 0);
    assert_int_equal(started_discovery("micro-acpi"), VM_DISCOVERY_ACPI);

    cmdline_bundle(in_dir("m.smolmachine"));
    q = (struct store_create_request){.name = "micro-bundle", .from = in_dir("m.smolmachine")};
    assert_int_equal(store_create_from(s, &q), 0);
    assert_int_equal(started_discovery("micro-bundle"), VM_DISCOVERY_CMDLINE);

    q = (struct store_create_request){.name = "stock", .from = in_dir("stock-app")};
    assert_int_equal(store_create_from(s, &q), 0);
    assert_int_equal(started_discovery("stock"), VM_DISCOVERY_ACPI);

    assert_int_equal(sh("cd data/smolvm/instances/micro && "
                        "sed -i 's|\"virtio_discovery\": \"cmdline\"|\"virtio_discovery\": \"pci\"|' instance.json && "
                        "grep -q '\"virtio_discovery\": \"pci\"' instance.json"), 0);
    assert_true(store_instance(s, "micro", &i) < 0);
    assert_non_null(strstr(err_msg(), "bad virtio_discovery"));
    for (const char *const *n = (const char *const[]){"micro", "micro-acpi", "micro-bundle", "stock", NULL};
         *n; n++)
        assert_int_equal(store_remove(s, *n), 0);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chains_commit_reset_gc),
        cmocka_unit_test(test_bad_layers),
        cmocka_unit_test(test_stamp_vouches_only_for_hashed_bytes),
        cmocka_unit_test(test_concurrent_creates),
        cmocka_unit_test(test_full_disk_during_commit),
        cmocka_unit_test(test_hash_is_sha256),
        cmocka_unit_test(test_delta_in_use),
        cmocka_unit_test(test_sources_reused),
        cmocka_unit_test(test_instance_shares),
        cmocka_unit_test(test_instance_keeps_discovery),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
