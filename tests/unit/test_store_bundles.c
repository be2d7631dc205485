/* Instances travel as bundles: a saved instance carries its chain of
 * layers (or one flattened image), another store imports it keeping each
 * layer once, hostile layer tables and layer files are refused with the
 * store left as it was, and an instance made from a bundle with saved
 * state resumes it once, and again after each reset. qemu-img judges the
 * disks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle/bundle.h"
#include "bundle/layers.h"
#include "machine/machine.h"
#include "bundle/sections.h"
#include "core/config.h"
#include "disk/disk.h"
#include "store/store.h"
#include "util/err.h"
#include "scratch.h"
#include "store_check.h"

#define SIZE (4u << 20)

static char smolvm[4096];

static int setup(void **state)
{
    (void)state;
    if (scratch_find_smolvm(smolvm, sizeof(smolvm)) < 0)
        return -1;
    return scratch_setup("store-bundles");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

/* Each store in its own folder: the "host" a bundle goes to or comes from. */
static struct store *open_store(const char *which)
{
    struct store *s;
    setenv("XDG_DATA_HOME", in_dir(which), 1);
    if (store_open(&s) < 0)
        fail_msg("store %s: %s", which, err_msg());
    return s;
}

static void write_disk(const char *path, uint64_t offset, size_t len, int v)
{
    struct disk *d;
    uint8_t *buf = malloc(len);
    if (disk_open(path, 0, &d) < 0)
        fail_msg("open %s: %s", path, err_msg());
    memset(buf, v, len);
    struct iovec iov = {buf, len};
    assert_int_equal(disk_write(d, &iov, 1, offset), 0);
    disk_close(d);
    free(buf);
}

static char *delta_of(struct store *s, const char *name)
{
    struct instance i;
    if (store_instance(s, name, &i) < 0)
        fail_msg("instance %s: %s", name, err_msg());
    char *delta = strdup(i.delta);
    store_instance_release(&i);
    return delta;
}

/* Exports instance name as a bundle the way 'smolvm save' does at rest. */
static void export(struct store *s, const char *name, const char *path, bool flatten)
{
    struct instance i;
    struct vm_config cfg;
    assert_int_equal(store_instance(s, name, &i), 0);
    vm_config_defaults(&cfg);
    cfg.kernel_path = i.boot.kernel;
    cfg.disks[0] = (struct vm_disk_config){.path = i.delta, .format = "qcow2"};
    cfg.disk_count = 1;
    if (machine_export(&cfg, i.resume, path, flatten, NULL) < 0)
        fail_msg("export: %s", err_msg());
    store_instance_release(&i);
}

static void import(struct store *s, const char *bundle, const char *name)
{
    char top[HASH_HEX], kernel[HASH_HEX], initrd[HASH_HEX];
    struct vm_config cfg;
    /* Unpacked straight into the store, never staged in TMPDIR. */
    setenv("TMPDIR", "/nonexistent-smolvm-tmp", 1);
    int r = store_import_bundle(s, bundle, top, kernel, initrd, &cfg, NULL);
    unsetenv("TMPDIR");
    if (r < 0)
        fail_msg("import %s: %s", bundle, err_msg());
    struct instance_boot boot = {.kernel = kernel[0] ? kernel : NULL};
    vm_config_release(&cfg);
    assert_int_equal(store_create(s, name, top, &boot), 0);
}

static bool has_section(const char *path, const char *name)
{
    struct bundle *b;
    assert_int_equal(bundle_open(path, &b), 0);
    bool has = bundle_has(b, name);
    bundle_close(b);
    return has;
}

static ino_t inode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_ino;
}

/* Two instances on one OS layer and a committed layer, saved: the other
 * store gets the same disks, and the OS layer once. */
static void test_chain_travels(void **state)
{
    char base[HASH_HEX], kernel[HASH_HEX], mid[HASH_HEX];
    struct disk_create_options o = {.size = SIZE};
    (void)state;

    struct store *a = open_store("a");
    assert_int_equal(disk_create("raw", in_dir("os.raw"), &o), 0);
    write_disk(in_dir("os.raw"), 0, SIZE / 2, 0x11);
    assert_int_equal(sh("echo not-a-kernel > kernel"), 0);
    assert_int_equal(store_add_layer(a, in_dir("os.raw"), "os", base), 0);
    assert_int_equal(store_add_layer(a, in_dir("kernel"), "kernel", kernel), 0);
    struct instance_boot boot = {.kernel = kernel};
    assert_int_equal(store_create(a, "web", base, &boot), 0);
    assert_int_equal(store_create(a, "db", base, &boot), 0);
    char *web = delta_of(a, "web"), *db = delta_of(a, "db");
    write_disk(web, 65536, 100000, 0x22);
    assert_int_equal(store_commit(a, "web", "deps", mid), 0);
    write_disk(web, SIZE - 4096, 4096, 0x33); /* uncommitted: goes as a layer too */
    write_disk(db, 8192, 4096, 0x44);
    export(a, "web", in_dir("web.smolmachine"), false);
    export(a, "db", in_dir("db.smolmachine"), false);
    export(a, "web", in_dir("flat.smolmachine"), true);
    store_close(a);
    assert_true(has_section(in_dir("web.smolmachine"), SECTION_LAYERS));
    assert_false(has_section(in_dir("web.smolmachine"), "disk.0"));
    assert_true(has_section(in_dir("flat.smolmachine"), "disk.0"));
    assert_false(has_section(in_dir("flat.smolmachine"), SECTION_LAYERS));

    struct store *b = open_store("b");
    import(b, in_dir("web.smolmachine"), "web");
    assert_int_equal(layer_count(b), 4); /* os, deps, the saved delta, kernel */
    assert_int_equal(sh("grep -q '\"message\": \"deps\"' b/smolvm/layers/*.json"), 0);
    char *os_file = NULL;
    assert_int_equal(store_layer_path(b, base, &os_file), 0);
    ino_t before = inode(os_file);
    import(b, in_dir("db.smolmachine"), "db");
    assert_int_equal(layer_count(b), 5); /* db's delta only: os and kernel were there */
    assert_true(inode(os_file) == before);
    import(b, in_dir("web.smolmachine"), "web2");
    assert_int_equal(layer_count(b), 5);
    import(b, in_dir("flat.smolmachine"), "flat");
    char *web_b = delta_of(b, "web"), *db_b = delta_of(b, "db"), *flat_b = delta_of(b, "flat");
    assert_int_equal(sh("qemu-img compare -q '%s' '%s'", web, web_b), 0);
    assert_int_equal(sh("qemu-img compare -q '%s' '%s'", db, db_b), 0);
    assert_int_equal(sh("qemu-img compare -q '%s' '%s'", web, flat_b), 0);
    assert_int_equal(sh("qemu-img compare -q '%s' '%s'", web, db_b), 1);
    assert_int_equal(sh("for f in b/smolvm/layers/*.qcow2; do qemu-img check -q $f || exit 1; done"),
                     0);
    assert_int_equal(sh("qemu-img info --backing-chain '%s' | grep -c '^image:' | grep -qx 4", web_b),
                     0);
    store_close(b);
    free(os_file);
    free(web);
    free(db);
    free(web_b);
    free(db_b);
    free(flat_b);
}

/* A bundle with one qcow2 layer (of the given bytes) and a layer table. */
static void hostile_bundle(const char *name, const char *table, const char *layer)
{
    struct bundle_writer *w;
    const char *layer_file = in_dir(layer);
    assert_int_equal(bundle_writer_open(in_dir(name), &w), 0);
    assert_int_equal(bundle_add(w, "config", "{\"cpus\":1,\"mem_bytes\":134217728}", 32, BUNDLE_RAW),
                     0);
    assert_int_equal(bundle_add_file(w, "layer.0", layer_file, BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_add(w, SECTION_LAYERS, table, strlen(table), BUNDLE_RAW), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
}

/* A layer table of one layer (and disk 0's top). */
static const char *table(const char *hash, const char *parent, const char *format,
                         const char *section, const char *top)
{
    static char text[1024];
    snprintf(text, sizeof(text),
             "{\"layers\":[{\"hash\":\"%s\",\"parent\":\"%s\",\"format\":\"%s\","
             "\"section\":\"%s\"}],\"disks\":[\"%s\"]}", hash, parent, format, section, top);
    return text;
}

static char *file_hash(const char *path)
{
    static char hex[HASH_HEX];
    assert_int_equal(hash_file(path, hex), 0);
    return hex;
}

static void expect_refused(struct store *s, const char *bundle, const char *why)
{
    char top[HASH_HEX], kernel[HASH_HEX], initrd[HASH_HEX];
    struct vm_config cfg;
    int r = store_import_bundle(s, bundle, top, kernel, initrd, &cfg, NULL);
    if (r >= 0)
        fail_msg("%s: imported", bundle);
    if (!strstr(err_msg(), why))
        fail_msg("%s: '%s' does not say '%s'", bundle, err_msg(), why);
    vm_config_release(&cfg);
}

/* A layer backed by a host file, a layer whose bytes are not its name, and
 * tables that lie: each refused, nothing left in the store. */
static void test_hostile_layers(void **state)
{
    char zero[65];
    (void)state;
    memset(zero, '0', 64);
    zero[64] = 0;
    assert_int_equal(sh("echo secret > secret && qemu-img create -q -f qcow2 -F raw -b "
                        "\"$PWD/secret\" evil.qcow2 1M && qemu-img create -q -f qcow2 plain.qcow2 1M"),
                     0);
    struct store *s = open_store("c");

    const char *evil = file_hash(in_dir("evil.qcow2"));
    hostile_bundle("evil.smolmachine", table(evil, "", "qcow2", "layer.0", evil), "evil.qcow2");
    expect_refused(s, in_dir("evil.smolmachine"), "is a base but has a backing file");

    hostile_bundle("liar.smolmachine", table(zero, "", "qcow2", "layer.0", zero), "plain.qcow2");
    expect_refused(s, in_dir("liar.smolmachine"), "corrupt");

    const char *plain = file_hash(in_dir("plain.qcow2"));
    hostile_bundle("orphan.smolmachine", table(plain, zero, "qcow2", "layer.0", plain), "plain.qcow2");
    expect_refused(s, in_dir("orphan.smolmachine"), "is not a layer before it");

    hostile_bundle("nosection.smolmachine", table(plain, "", "qcow2", "layer.7", plain), "plain.qcow2");
    expect_refused(s, in_dir("nosection.smolmachine"), "no section");

    hostile_bundle("notop.smolmachine", table(plain, "", "qcow2", "layer.0", zero), "plain.qcow2");
    expect_refused(s, in_dir("notop.smolmachine"), "top layer");

    hostile_bundle("format.smolmachine", table(plain, "", "../x", "layer.0", plain), "plain.qcow2");
    expect_refused(s, in_dir("format.smolmachine"), "not raw or qcow2");

    hostile_bundle("garbage.smolmachine", "{\"layers\": [", "plain.qcow2");
    expect_refused(s, in_dir("garbage.smolmachine"), "not JSON");

    assert_int_equal(layer_count(s), 0);
    assert_int_equal(sh("test -z \"$(ls -A c/smolvm/layers)\""), 0);
    store_close(s);
}

/* A bundle of two layers, base (layer.0) and child (layer.1), as the
 * table declares them. */
static void chain_bundle(const char *name, const char *base, const char *base_format,
                         const char *child)
{
    char text[1024], base_hash[HASH_HEX], child_hash[HASH_HEX];
    struct bundle_writer *w;
    snprintf(base_hash, sizeof(base_hash), "%s", file_hash(in_dir(base)));
    snprintf(child_hash, sizeof(child_hash), "%s", file_hash(in_dir(child)));
    snprintf(text, sizeof(text),
             "{\"layers\":[{\"hash\":\"%s\",\"parent\":\"\",\"format\":\"%s\","
             "\"section\":\"layer.0\"},{\"hash\":\"%s\",\"parent\":\"%s\",\"format\":"
             "\"qcow2\",\"section\":\"layer.1\"}],\"disks\":[\"%s\"]}",
             base_hash, base_format, child_hash, base_hash, child_hash);
    assert_int_equal(bundle_writer_open(in_dir(name), &w), 0);
    assert_int_equal(bundle_add(w, "config", "{\"cpus\":1,\"mem_bytes\":134217728}", 32, BUNDLE_RAW),
                     0);
    assert_int_equal(bundle_add_file(w, "layer.0", in_dir(base), BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_add_file(w, "layer.1", in_dir(child), BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_add(w, SECTION_LAYERS, text, strlen(text), BUNDLE_RAW), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
}

/* Refused, naming the layer (the first 12 digits of its hash). */
static void expect_refused_naming(struct store *s, const char *bundle, const char *layer,
                                  const char *why)
{
    char prefix[13];
    snprintf(prefix, sizeof(prefix), "%.12s", file_hash(in_dir(layer)));
    expect_refused(s, bundle, why);
    if (!strstr(err_msg(), prefix))
        fail_msg("%s: '%s' does not name layer %s", bundle, err_msg(), prefix);
}

/* Formats in a bundle's chain are the layer table's, never probed: a layer
 * declared raw whose bytes are a qcow2 backed by a host file gives the
 * guest those bytes, never the host file's; a child that does not record
 * its parent's format, names another backing file, or keeps its data in
 * an external file is refused by name, and the store keeps nothing. */
static void test_chain_formats_pinned(void **state)
{
    char host_file[4096];
    (void)state;
    assert_int_equal(sh("rm -f hostfile fake.raw && yes s3cr3t-d4t4 | head -c 1M > hostfile && "
                        "qemu-img create -q -f qcow2 -F raw -b \"$PWD/hostfile\" fake.raw 1M"), 0);
    snprintf(host_file, sizeof(host_file), "%s", in_dir("hostfile"));
    const char *fake = file_hash(in_dir("fake.raw"));
    char fake_hash[HASH_HEX];
    snprintf(fake_hash, sizeof(fake_hash), "%s", fake);

    /* Declared raw, and the top of disk 0: the guest reads its bytes. */
    struct store *s = open_store("pinned");
    hostile_bundle("fake.smolmachine", table(fake_hash, "", "raw", "layer.0", fake_hash),
                   "fake.raw");
    import(s, in_dir("fake.smolmachine"), "fake");
    /* ... and a qcow2 child on it that records it as raw. */
    assert_int_equal(sh("qemu-img create -q -f qcow2 -F raw -b %s.raw -u child.qcow2 1M",
                        fake_hash), 0);
    chain_bundle("raw-child.smolmachine", "fake.raw", "raw", "child.qcow2");
    import(s, in_dir("raw-child.smolmachine"), "child");
    static const char *const names[] = {"fake", "child"};
    for (int i = 0; i < 2; i++) {
        char *delta = delta_of(s, names[i]);
        struct disk *d;
        if (disk_open_as(delta, DISK_READ_ONLY, "qcow2", &d) < 0)
            fail_msg("%s: %s", names[i], err_msg());
        uint8_t *seen = malloc(d->size);
        struct iovec iov = {seen, d->size};
        assert_int_equal(disk_read(d, &iov, 1, 0), 0);
        assert_memory_equal(seen, "QFI\xfb", 4); /* the layer's own bytes */
        assert_null(memmem(seen, d->size, "s3cr3t-d4t4", 11));
        disk_close(d);
        free(seen);
        free(delta);
    }
    unsigned layers = layer_count(s);

    /* A child without its parent's format recorded. */
    assert_int_equal(sh("rm -f nofmt.qcow2 && qemu-img create -q -f qcow2 -F raw -b %s.raw -u "
                        "nofmt.qcow2 1M", fake_hash), 0);
    scratch_forget_backing_format("nofmt.qcow2");
    chain_bundle("nofmt.smolmachine", "fake.raw", "raw", "nofmt.qcow2");
    expect_refused_naming(s, in_dir("nofmt.smolmachine"), "nofmt.qcow2",
                          "does not record its parent's format");
    /* A child recording its raw parent as a qcow2. */
    assert_int_equal(sh("rm -f asqcow.qcow2 && qemu-img create -q -f qcow2 -F qcow2 -b %s.raw -u "
                        "asqcow.qcow2 1M", fake_hash), 0);
    chain_bundle("asqcow.smolmachine", "fake.raw", "raw", "asqcow.qcow2");
    expect_refused_naming(s, in_dir("asqcow.smolmachine"), "asqcow.qcow2", "not raw");
    /* A child backed by a host file, or by its parent under another name. */
    assert_int_equal(sh("rm -f other.qcow2 && qemu-img create -q -f qcow2 -F raw -b '%s' -u "
                        "other.qcow2 2M", host_file), 0);
    chain_bundle("other.smolmachine", "fake.raw", "raw", "other.qcow2");
    expect_refused_naming(s, in_dir("other.smolmachine"), "other.qcow2",
                          "not backed by its parent");
    assert_int_equal(sh("rm -f alias.qcow2 && qemu-img create -q -f qcow2 -F raw -b ./%s.raw -u "
                        "alias.qcow2 1M", fake_hash), 0);
    chain_bundle("alias.smolmachine", "fake.raw", "raw", "alias.qcow2");
    expect_refused_naming(s, in_dir("alias.smolmachine"), "alias.qcow2",
                          "not backed by its parent");
    /* A qcow2 whose data lives in a host file. */
    assert_int_equal(sh("rm -f ext.qcow2 && qemu-img create -q -f qcow2 -o data_file='%s' "
                        "ext.qcow2 1M", host_file), 0);
    const char *ext = file_hash(in_dir("ext.qcow2"));
    char ext_hash[HASH_HEX];
    snprintf(ext_hash, sizeof(ext_hash), "%s", ext);
    hostile_bundle("ext.smolmachine", table(ext_hash, "", "qcow2", "layer.0", ext_hash),
                   "ext.qcow2");
    expect_refused_naming(s, in_dir("ext.smolmachine"), "ext.qcow2", "external data file");
    assert_int_equal(layer_count(s), layers);
    assert_int_equal(sh("test -z \"$(ls -A pinned/smolvm/layers | grep -v '^[0-9a-f]\\{64\\}\\.')\""),
                     0);
    store_close(s);
}

static void state_bundle(const char *path);

/* A base layer and a qcow2 child on it, as a bundle. */
static void small_chain_bundle(const char *name)
{
    assert_int_equal(sh("rm -f cb.raw cc.qcow2 && head -c 1M /dev/urandom > cb.raw && "
                        "qemu-img create -q -f qcow2 -F raw -b $(sha256sum cb.raw | cut -c1-64).raw "
                        "-u cc.qcow2 1M"), 0);
    chain_bundle(name, "cb.raw", "raw", "cc.qcow2");
}

/* A layer file in place without its sidecar (a crash came between the
 * two) is not taken as checked: the next import places it again, whole,
 * even when a power loss left it as zeros with its size and mtime. */
static void test_layer_without_sidecar_placed_again(void **state)
{
    char base[HASH_HEX], *path = NULL;
    (void)state;
    small_chain_bundle("crash.smolmachine");
    snprintf(base, sizeof(base), "%s", file_hash(in_dir("cb.raw")));
    struct store *s = open_store("crash");
    import(s, in_dir("crash.smolmachine"), "one");
    assert_int_equal(sh("cd crash/smolvm/layers && rm %s.json && touch -r %s.raw ref && "
                        "chmod u+w %s.raw && dd if=/dev/zero of=%s.raw bs=1M count=1 conv=notrunc "
                        "2>/dev/null && touch -r ref %s.raw && rm ref", base, base, base, base, base),
                     0);
    import(s, in_dir("crash.smolmachine"), "two");
    assert_int_equal(store_layer_path(s, base, &path), 0);
    assert_string_equal(file_hash(path), base);
    free(path);
    store_close(s);
}

/* Python: from an strace of an import, whether every layer renamed into
 * the layers folder (argv[1]) was fsync'd before its rename, and the
 * folder synced after it, before its sidecar was renamed in. */
static const char ordering_check[] =
    "import os,re,sys\n"
    "layers=os.path.realpath(sys.argv[1]);synced=set();unsynced=set();seen=0;bad=[]\n"
    "for l in open(sys.argv[2]):\n"
    "  m=re.search(r'f(?:data)?sync\\(\\d+<([^>]*)>\\) += 0',l)\n"
    "  if m:\n"
    "    synced.add(m.group(1))\n"
    "    if m.group(1)==layers: unsynced.clear()\n"
    "    continue\n"
    "  m=re.search(r'rename(?:at2?)?\\((?:[^\"]*)\"([^\"]*)\", (?:[^\"]*)\"([^\"]*)\".* = 0',l)\n"
    "  if not m: continue\n"
    "  src,dst=os.path.realpath(m.group(1)),os.path.realpath(m.group(2))\n"
    "  if os.path.dirname(dst)!=layers: continue\n"
    "  name=os.path.basename(dst)\n"
    "  if re.fullmatch(r'[0-9a-f]{64}\\.(raw|qcow2)',name):\n"
    "    seen+=1;unsynced.add(name[:64])\n"
    "    if src not in synced: bad.append('renamed unsynced: '+name)\n"
    "  elif re.fullmatch(r'[0-9a-f]{64}\\.json',name) and name[:64] in unsynced:\n"
    "    bad.append('sidecar before the folder was synced: '+name)\n"
    "print('\\n'.join(bad));sys.exit(1 if bad or seen<2 else 0)\n";

/* Layers enter the store durably: each file fsync'd before its rename,
 * the folder synced before the sidecar that says the layer is there, for
 * chain layers and for a bundle's kernel and flattened disk alike (read
 * from an strace of smolvm create). */
static void test_layers_synced_before_sidecar(void **state)
{
    (void)state;
    if (sh("strace -o /dev/null true 2>/dev/null") != 0) {
        skip();
        return;
    }
    small_chain_bundle("sync-chain.smolmachine");
    state_bundle(in_dir("sync-flat.smolmachine"));
    assert_int_equal(sh("cat > order.py <<'EOF'\n%sEOF", ordering_check), 0);
    static const char *const bundles[] = {"sync-chain", "sync-flat"};
    for (int i = 0; i < 2; i++) {
        /* LeakSanitizer (in the ASan build) cannot run under ptrace. */
        int r = sh("XDG_DATA_HOME=\"$PWD/traced-%d\" ASAN_OPTIONS=detect_leaks=0 strace -f -y -qq -o trace-%d.txt -e "
                   "trace=fsync,fdatasync,rename,renameat,renameat2 '%s' create x --from "
                   "%s.smolmachine >/dev/null && python3 order.py traced-%d/smolvm/layers "
                   "trace-%d.txt", i, i, smolvm, bundles[i], i, i);
        if (r != 0)
            fail_msg("%s: layers not synced in order (trace-%d.txt)", bundles[i], i);
    }
}

/* A bundle as a VM saved with its state would be (the state and memory
 * are opaque here: only their journey is tested). */
static void state_bundle(const char *path)
{
    struct bundle_writer *w;
    struct vm_config cfg;
    vm_config_defaults(&cfg);
    cfg.disk_count = 1;
    cfg.disks[0].format = "raw";
    char *config = vm_config_to_json(&cfg);
    assert_int_equal(sh("truncate -s 1M disk.raw && echo kernel > kernel"), 0);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "state", "vcpus...", 8, BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "memory", "pages...", 8, BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "config", config, strlen(config), BUNDLE_RAW), 0);
    assert_int_equal(bundle_add_file(w, "kernel", in_dir("kernel"), BUNDLE_RAW), 0);
    assert_int_equal(bundle_add_file(w, "disk.0", in_dir("disk.raw"), BUNDLE_ZSTD), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    free(config);
}

static void expect_resume(struct store *s, const char *name, const char *file)
{
    struct instance i;
    assert_int_equal(store_instance(s, name, &i), 0);
    if (!file)
        assert_null(i.resume);
    else if (!i.resume || !strstr(i.resume, file))
        fail_msg("%s resumes from %s, not %s", name, i.resume ? i.resume : "nothing", file);
    store_instance_release(&i);
}

/* Pristine state: resumed by the first start, again after a reset; a
 * suspended state: resumed once, dropped by a reset. */
static void test_saved_state(void **state)
{
    char top[HASH_HEX], kernel[HASH_HEX], initrd[HASH_HEX];
    struct vm_config cfg;
    char *suspended = NULL;
    (void)state;

    state_bundle(in_dir("state.smolmachine"));
    struct store *s = open_store("d");
    assert_int_equal(store_import_bundle(s, in_dir("state.smolmachine"), top, kernel, initrd, &cfg, NULL),
                     0);
    vm_config_release(&cfg);
    struct instance_boot boot = {.kernel = kernel, .state = in_dir("state.smolmachine")};
    assert_int_equal(store_create(s, "vm", top, &boot), 0);
    expect_resume(s, "vm", "pristine");

    /* The instance's state goes with it when it is saved before running. */
    export(s, "vm", in_dir("again.smolmachine"), false);
    struct bundle *b;
    assert_int_equal(bundle_open(in_dir("again.smolmachine"), &b), 0);
    assert_true(bundle_has_state(b));
    bundle_close(b);

    assert_int_equal(store_resumed(s, "vm"), 0);
    expect_resume(s, "vm", NULL);
    assert_int_equal(store_reset(s, "vm"), 0);
    expect_resume(s, "vm", "pristine");

    assert_int_equal(store_resumed(s, "vm"), 0);
    assert_int_equal(store_suspend_path(s, "vm", &suspended), 0);
    assert_int_equal(sh("echo state > '%s'", suspended), 0);
    assert_int_equal(store_suspended(s, "vm"), 0);
    expect_resume(s, "vm", "suspended");
    assert_int_equal(store_reset(s, "vm"), 0);
    expect_resume(s, "vm", "pristine");
    assert_int_equal(access(suspended, F_OK), -1);

    /* A bundle without state gives an instance that boots. */
    assert_int_equal(store_create(s, "cold", top, &(struct instance_boot){.kernel = kernel}), 0);
    expect_resume(s, "cold", NULL);
    assert_int_equal(store_reset(s, "cold"), 0);
    expect_resume(s, "cold", NULL);
    free(suspended);
    store_close(s);
}

/* smolvm pack: a bundle that boots (no state) from a kernel, an initrd and
 * a disk, each section the file's bytes, the config as given; bad command
 * lines and missing files: one line, exit 2 or 1. */
static void test_pack(void **state)
{
    uint8_t *data;
    size_t len;
    struct vm_config cfg;
    struct bundle *b;
    (void)state;

    assert_int_equal(sh("head -c 300000 /dev/urandom > K && echo initrd > I && truncate -s 4M D && "
                        "printf DISKDATA | dd of=D bs=1 seek=1048576 conv=notrunc 2>/dev/null"), 0);
    assert_int_equal(sh("'%s' pack -o p.smolmachine --kernel K --initrd I --disk D --cpus 2 "
                        "--mem 300M --cmdline 'console=ttyS0 x=y' > pack.out", smolvm), 0);
    assert_int_equal(bundle_open(in_dir("p.smolmachine"), &b), 0);
    assert_false(bundle_has_state(b));
    assert_int_equal(bundle_read(b, "config", &data, &len), 0);
    assert_int_equal(vm_config_from_json((const char *)data, &cfg), 0);
    free(data);
    assert_int_equal(cfg.cpus, 2);
    assert_true(cfg.mem_bytes == 300ull << 20);
    assert_string_equal(cfg.cmdline, "console=ttyS0 x=y");
    assert_int_equal(cfg.disk_count, 1);
    vm_config_release(&cfg);
    assert_int_equal(bundle_extract(b, "kernel", in_dir("K.out")), 0);
    assert_int_equal(bundle_extract(b, "initrd", in_dir("I.out")), 0);
    assert_int_equal(bundle_extract(b, "disk.0", in_dir("D.out")), 0);
    bundle_close(b);
    assert_int_equal(sh("cmp -s K K.out && cmp -s I I.out && cmp -s D D.out"), 0);
    assert_int_equal(sh("'%s' pack --kernel K 2> err", smolvm), 2);
    assert_int_equal(sh("'%s' pack -o q.smolmachine --kernel missing 2> err; test $? -eq 1 && "
                        "test $(wc -l < err) -eq 1 && test ! -e q.smolmachine", smolvm), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_travels),
        cmocka_unit_test(test_hostile_layers),
        cmocka_unit_test(test_chain_formats_pinned),
        cmocka_unit_test(test_layer_without_sidecar_placed_again),
        cmocka_unit_test(test_layers_synced_before_sidecar),
        cmocka_unit_test(test_saved_state),
        cmocka_unit_test(test_pack),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
