#include "image/appliance.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image/cpio.h"
#include "image/ext2.h"
#include "image/kmod.h"
#include "util/err.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/paths.h"

/* Bumped whenever what a build makes changes: old cache entries are then
 * not reused. */
#define BUILDER_VERSION 2 /* 2: rcS brings a NIC up by DHCP */
#define BUSYBOX "/bin/busybox"
#define DEFAULT_CMDLINE "console=ttyS0 panic=-1"
#define ROOT_ROOM (64u << 20)

static const char *const default_modules[] = {
    "virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "virtio_rng",
    "9p", "9pnet_virtio", "vmw_vsock_virtio_transport", "ext4", "virtiofs",
    "button", "evdev", /* the ACPI power button's input device: init watches it */
};

static void step(const struct appliance_options *o, const char *what)
{
    if (o->progress)
        o->progress(o->opaque, what);
}

/* ---- inputs ---- */

static int newest_kernel(char **out)
{
    *out = file_newest("/boot/vmlinuz-*");
    return *out ? 0 : err_plain(ENOENT, "no kernel in /boot: install one (Debian: apt-get install "
                                        "linux-image-amd64)");
}

/* The release a bzImage was built as: its setup header points at a
 * "6.1.0-56-amd64 (...)" string. */
static int kernel_release(const char *kernel, char *out, size_t size)
{
    uint8_t h[1024];
    char text[256];
    int fd = open(kernel, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? pread(fd, h, sizeof(h), 0) : -1;
    int r = -EINVAL;

    if (n >= 0x210 && memcmp(h + 0x202, "HdrS", 4) == 0) {
        unsigned at = (unsigned)(h[0x20e] | h[0x20f] << 8) + 0x200;
        if (pread(fd, text, sizeof(text) - 1, at) > 0) {
            text[sizeof(text) - 1] = 0;
            size_t len = strcspn(text, " ");
            if (len && len < size) {
                memcpy(out, text, len);
                out[len] = 0;
                r = 0;
            }
        }
    }
    if (fd >= 0)
        close(fd);
    return r < 0 ? err_plain(EINVAL, "'%s' is not a bzImage kernel with a version", kernel) : 0;
}

static void hash_line(struct hash_state *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hash_line(struct hash_state *h, const char *fmt, ...)
{
    char line[4352];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    hash_add(h, line, n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line));
    hash_add(h, "\n", 1);
}

/* A file's identity without reading it: where, how big, when, which inode. */
static int hash_identity(struct hash_state *h, const char *what, const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return err_set(errno, "%s '%s'", what, path);
    hash_line(h, "%s %s %llu %lld.%09ld %llu %o", what, path, (unsigned long long)st.st_size,
              (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (unsigned long long)st.st_ino,
              st.st_mode);
    if (!S_ISDIR(st.st_mode))
        return 0;
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, alphasort), r = 0;
    if (n < 0)
        return err_set(errno, "%s '%s'", what, path);
    for (int i = 0; i < n; i++) {
        struct dirent *e = names[i];
        char *child = NULL;
        if (r == 0 && strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            asprintf(&child, "%s/%s", path, e->d_name) >= 0)
            r = hash_identity(h, what, child);
        free(child);
        free(e);
    }
    free(names);
    return r;
}

/* The guest agent built with the init (smolvm-agent beside it), or NULL:
 * appliances are made without one then. */
static char *agent_beside(const char *init)
{
    char *copy = strdup(init), *agent = NULL;
    if (copy && asprintf(&agent, "%s/smolvm-agent", dirname(copy)) >= 0 &&
        access(agent, R_OK) != 0) {
        free(agent);
        agent = NULL;
    }
    free(copy);
    return agent;
}

static int input_key(const struct appliance_options *o, const char *kernel, const char *init,
                     const char *const *modules, size_t count, char key[65])
{
    struct hash_state state, *h = &state;
    uint8_t digest[HASH_BYTES];

    hash_begin(h);
    hash_line(h, "builder %d", BUILDER_VERSION);
    int r = hash_identity(h, "kernel", kernel);
    if (r == 0)
        r = hash_identity(h, "init", init);
    char *agent = agent_beside(init);
    if (r == 0 && agent)
        r = hash_identity(h, "agent", agent);
    free(agent);
    if (r == 0)
        r = hash_identity(h, "busybox", BUSYBOX);
    for (size_t i = 0; r == 0 && i < count; i++)
        hash_line(h, "module %s", modules[i]);
    hash_line(h, "release %s builtin %d discovery %d", o->release ? o->release : "",
              o->builtin_modules, o->cmdline_discovery);
    for (size_t i = 0; r == 0 && i < o->add_count; i++) {
        hash_line(h, "add-to %s", o->adds[i].guest);
        r = hash_identity(h, "add", o->adds[i].host);
    }
    hash_line(h, "size %llu", (unsigned long long)o->root_size);
    hash_end(h, digest);
    if (r == 0)
        hash_to_hex(digest, key);
    return r;
}

/* ---- the parts ---- */

static int module_entries(struct cpio *c, const struct kmod_list *l)
{
    char order[16384] = "";
    int r = cpio_add_dir(c, "modules", 0755);

    for (size_t i = 0; r == 0 && i < l->count; i++) {
        char name[80], entry[96];
        uint8_t *data;
        size_t len;
        kmod_name(l->paths[i], name, sizeof(name) - 4);
        strcat(name, ".ko");
        snprintf(entry, sizeof(entry), "modules/%s", name);
        r = kmod_read(l->paths[i], &data, &len);
        if (r == 0) {
            r = cpio_add_file(c, entry, 0644, data, len);
            free(data);
        }
        snprintf(order + strlen(order), sizeof(order) - strlen(order), "%s\n", name);
    }
    return r < 0 ? r : cpio_add_file(c, "modules/order", 0644, order, strlen(order));
}

static int add_agent(struct cpio *c, const char *init)
{
    char *agent = agent_beside(init);
    struct mapped_file f;
    int r = agent ? file_map(agent, "agent", &f) : 0;

    if (agent && r == 0) {
        r = cpio_add_file(c, "smolvm-agent", 0755, f.data, f.len);
        file_unmap(&f);
    }
    free(agent);
    return r;
}

static int make_initrd(const char *path, const char *init, const struct kmod_list *modules,
                       uint32_t timestamp)
{
    static const char *const dirs[] = {"dev", "proc", "sys", "newroot"};
    struct mapped_file f;
    struct cpio c;
    int r = file_map(init, "init", &f);

    if (r < 0)
        return r;
    cpio_init(&c, timestamp);
    for (int i = 0; r == 0 && i < 4; i++)
        r = cpio_add_dir(&c, dirs[i], 0755);
    if (r == 0)
        r = cpio_add(&c, &(struct cpio_entry){.name = "dev/console", .mode = S_IFCHR | 0600,
                                              .rdev_major = 5, .rdev_minor = 1});
    if (r == 0)
        r = cpio_add_file(&c, "init", 0755, f.data, f.len);
    file_unmap(&f);
    if (r == 0)
        r = add_agent(&c, init);
    if (r == 0)
        r = module_entries(&c, modules);
    if (r == 0)
        r = cpio_finish(&c);
    if (r == 0)
        r = file_write_new(path, c.out.data, c.out.len);
    cpio_free(&c);
    return r;
}

static int busybox_links(struct ext2 *e, uint32_t timestamp)
{
    struct ext2_attr link = {S_IFLNK | 0777, 0, 0, timestamp};
    char line[256];
    FILE *list = popen(BUSYBOX " --list-full", "r");
    int r = list ? 0 : err_set(errno, "run " BUSYBOX);

    while (r == 0 && fgets(line, sizeof(line), list)) {
        char path[300];
        line[strcspn(line, "\n")] = 0;
        if (!line[0] || strcmp(line, "bin/busybox") == 0)
            continue;
        snprintf(path, sizeof(path), "/%s", line);
        r = ext2_add_symlink(e, path, "/bin/busybox", &link);
    }
    if (list && pclose(list) != 0 && r == 0)
        r = err_plain(EIO, BUSYBOX " --list-full failed");
    return r;
}

static int root_files(struct ext2 *e, uint32_t timestamp)
{
    static const struct {
        const char *path, *text;
        mode_t mode;
    } files[] = {
        {"/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644},
        {"/etc/group", "root:x:0:\n", 0644},
        {"/etc/hostname", "smolvm\n", 0644},
        {"/etc/fstab", "", 0644},
        {"/etc/inittab", "::sysinit:/etc/init.d/rcS\n::askfirst:-/bin/sh\n"
                         "::ctrlaltdel:/sbin/poweroff\n::shutdown:/bin/umount -a -r\n", 0644},
        {"/etc/init.d/rcS", "#!/bin/sh\nmount -t tmpfs tmpfs /tmp\nmount -t tmpfs tmpfs /run\n"
                            "hostname -F /etc/hostname\n/etc/init.d/net\n"
                            "echo \"smolvm appliance: $(uname -r)\"\n",
         0755},
        /* A NIC (--net user or tap) comes up with a DHCP lease; smolvm.run
         * commands can call it too. */
        {"/etc/init.d/net", "#!/bin/sh\nip link set lo up\n[ -e /sys/class/net/eth0 ] || exit 0\n"
                            "ip link set eth0 up\n"
                            "udhcpc -i eth0 -s /etc/udhcpc.script -q -t 5 -T 1 -b > /dev/null 2>&1\n",
         0755},
        {"/etc/udhcpc.script", "#!/bin/sh\ncase \"$1\" in bound|renew)\n"
                               "  ip addr flush dev \"$interface\"\n"
                               "  ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n"
                               "  ip route add default via \"$router\" dev \"$interface\"\n"
                               "  for d in $dns; do echo \"nameserver $d\"; done > /etc/resolv.conf;;\n"
                               "esac\n",
         0755},
    };
    static const struct {
        const char *path;
        mode_t mode;
    } dirs[] = {{"/bin", 0755}, {"/sbin", 0755}, {"/usr/bin", 0755}, {"/usr/sbin", 0755},
                {"/proc", 0555}, {"/sys", 0555}, {"/dev", 0755}, {"/tmp", 01777},
                {"/run", 0755}, {"/root", 0700}, {"/mnt", 0755}, {"/var/tmp", 01777}};
    int r = 0;

    for (size_t i = 0; r == 0 && i < sizeof(dirs) / sizeof(dirs[0]); i++)
        r = ext2_add_dir(e, dirs[i].path, &(struct ext2_attr){S_IFDIR | dirs[i].mode, 0, 0,
                                                              timestamp});
    for (size_t i = 0; r == 0 && i < sizeof(files) / sizeof(files[0]); i++)
        r = ext2_add_data(e, files[i].path,
                          &(struct ext2_attr){S_IFREG | files[i].mode, 0, 0, timestamp},
                          files[i].text, strlen(files[i].text));
    if (r == 0)
        r = ext2_add_file(e, "/bin/busybox", &(struct ext2_attr){S_IFREG | 0755, 0, 0, timestamp},
                          BUSYBOX);
    return r == 0 ? busybox_links(e, timestamp) : r;
}

static int add_host(struct ext2 *e, const struct appliance_add *a)
{
    struct stat st;
    if (stat(a->host, &st) < 0)
        return err_set(errno, "--add '%s'", a->host);
    if (S_ISDIR(st.st_mode))
        return ext2_add_tree(e, a->host, a->guest);
    return ext2_add_file(e, a->guest, &(struct ext2_attr){st.st_mode, st.st_uid, st.st_gid,
                                                         (uint32_t)st.st_mtime}, a->host);
}

static int make_root(const char *path, const struct appliance_options *o, uint32_t timestamp)
{
    struct ext2 *e;
    int r = ext2_new(4096, timestamp, &e);

    if (r < 0)
        return r;
    r = root_files(e, timestamp);
    for (size_t i = 0; r == 0 && i < o->add_count; i++)
        r = add_host(e, &o->adds[i]);
    if (r == 0)
        r = ext2_write(e, path, o->root_size ? o->root_size : ROOT_ROOM);
    ext2_free(e);
    /* ext2_write grows an image its content does not fit in: a --size the
     * user gave is refused instead of silently not honoured. */
    struct stat st;
    if (r == 0 && o->root_size && stat(path, &st) == 0 && (uint64_t)st.st_size > o->root_size)
        r = err_plain(EFBIG, "--size of %llu MiB is too small: the root needs %llu MiB",
                      (unsigned long long)(o->root_size >> 20),
                      (unsigned long long)(((uint64_t)st.st_size + (1 << 20) - 1) >> 20));
    return r;
}

static int write_manifest(const char *path, const struct appliance_options *o, const char *key,
                          const char *kernel, const char *release, const char *const *modules,
                          size_t count, size_t module_files)
{
    json_t *m = json_pack("{sisssssssss[]sIss}", "builder", BUILDER_VERSION, "key", key, "kernel",
                          kernel, "release", release, "cmdline", DEFAULT_CMDLINE, "modules",
                          "module_files", (json_int_t)module_files, "virtio_discovery",
                          o->cmdline_discovery ? "cmdline" : "acpi");
    for (size_t i = 0; m && i < count; i++)
        json_array_append_new(json_object_get(m, "modules"), json_string(modules[i]));
    char *text = m ? json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(m);
    int r = text ? file_write_new(path, text, strlen(text)) : err_set(ENOMEM, "manifest");
    free(text);
    return r;
}

/* ---- the build ---- */

static char *part(const char *dir, const char *name)
{
    char *p = NULL;
    return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

static int build_into(const char *tmp, const struct appliance_options *o, const char *kernel,
                      const char *release, const char *init, const char *const *modules,
                      size_t count, const char *key)
{
    char moddir[300], *k = part(tmp, "kernel"), *i = part(tmp, "initrd");
    char *root = part(tmp, "root.ext2"), *manifest = part(tmp, "appliance.json");
    struct kmod_list l = {0};
    struct stat st;
    int r = k && i && root && manifest ? 0 : -ENOMEM;
    uint32_t timestamp = stat(kernel, &st) == 0 ? (uint32_t)st.st_mtime : 0;

    snprintf(moddir, sizeof(moddir), "/lib/modules/%s", release);
    step(o, "kernel");
    if (r == 0)
        r = file_copy(kernel, k);
    step(o, "modules");
    if (r == 0 && !o->builtin_modules)
        r = kmod_resolve(moddir, modules, count, &l);
    step(o, "initrd");
    if (r == 0)
        r = make_initrd(i, init, &l, timestamp);
    step(o, "root file system");
    if (r == 0)
        r = make_root(root, o, timestamp);
    if (r == 0)
        r = write_manifest(manifest, o, key, kernel, release, modules, count, l.count);
    kmod_list_free(&l);
    free(k);
    free(i);
    free(root);
    free(manifest);
    return r;
}

static int default_init(char **out)
{
    char exe[4096], *candidates[2] = {NULL, NULL};
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return err_set(errno, "where am I");
    exe[n] = 0;
    char *dir = dirname(exe);
    if (asprintf(&candidates[0], "%s/smolvm-init", dir) < 0 ||
        asprintf(&candidates[1], "%s/../libexec/smolvm/smolvm-init", dir) < 0)
        return -ENOMEM;
    for (int i = 0; i < 2; i++)
        if (!*out && access(candidates[i], R_OK) == 0)
            *out = candidates[i];
        else
            free(candidates[i]);
    return *out ? 0 : err_plain(ENOENT, "no smolvm-init next to %s (build it, or give --init)", exe);
}

static bool ready(const char *dir, const char *key)
{
    char *manifest = part(dir, "appliance.json");
    json_t *m = manifest ? json_load_file(manifest, 0, NULL) : NULL;
    const char *have = json_string_value(json_object_get(m, "key"));
    bool same = have && strcmp(have, key) == 0;
    json_decref(m);
    free(manifest);
    return same;
}

/* What a build writes into its folder, and all it may replace there. */
static const char *const parts[] = {"kernel", "initrd", "root.ext2", "appliance.json"};

static bool is_part(const char *name)
{
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        if (strcmp(name, parts[i]) == 0)
            return true;
    return false;
}

/* 0 when dir is absent or an appliance this builder wrote: a folder of
 * only its parts, with a manifest naming the builder. Anything else is the
 * user's, and refused by name (shown as the user wrote it). */
static int replaceable(const char *dir, const char *shown)
{
    struct stat st;
    struct dirent *e;
    int r = 0;

    if (lstat(dir, &st) < 0)
        return errno == ENOENT ? 0 : err_set(errno, "'%s'", shown);
    if (!S_ISDIR(st.st_mode))
        return err_plain(EEXIST, "'%s' exists and is not an appliance folder: not replaced "
                                 "(remove it or give another -o)", shown);
    DIR *d = opendir(dir);
    bool empty = true;
    if (!d)
        return err_set(errno, "'%s'", shown);
    while (r == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        empty = false;
        struct stat part_st;
        /* A part is a plain file: a folder or link named "kernel" is the user's. */
        if (!is_part(e->d_name) ||
            fstatat(dirfd(d), e->d_name, &part_st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(part_st.st_mode))
            r = err_plain(EEXIST, "'%s' holds '%s', which no appliance build wrote: not "
                                  "replaced (remove it or give another -o)", shown, e->d_name);
    }
    closedir(d);
    if (r == 0 && empty)
        return 0; /* made for the build, presumably: nothing in it to lose */
    char *manifest = r == 0 ? part(dir, "appliance.json") : NULL;
    json_t *m = manifest ? json_load_file(manifest, 0, NULL) : NULL;
    if (r == 0 && !json_is_integer(json_object_get(m, "builder")))
        r = err_plain(EEXIST, "'%s' is a folder but not an appliance (no appliance.json of "
                              "'smolvm image build'): not replaced (remove it or give another -o)",
                      shown);
    json_decref(m);
    free(manifest);
    return r;
}

/* Puts the finished folder tmp at dir in one step: renamed into a free
 * name, or exchanged with the old appliance, which is then removed. A
 * file system without RENAME_EXCHANGE gets the old one moved aside first
 * (and back when the new one cannot follow). */
static int swap_into_place(const char *tmp, const char *dir, const char *aside, const char *shown)
{
    bool exists = access(dir, F_OK) == 0;

    if (!exists) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE) == 0 ||
            ((errno == EINVAL || errno == ENOSYS) && rename(tmp, dir) == 0))
            return 0;
        return err_set(errno, "rename into '%s'", dir);
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        /* tmp now holds what was at dir: checked once more, as something
         * else may have been put there since the last check; a user's
         * folder goes back, untouched. */
        int r = replaceable(tmp, shown);
        if (r < 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) < 0 &&
            rename(tmp, aside) == 0) /* out of the way of the caller's clean-up */
            r = err_plain(EEXIST, "'%s' changed during the build; what was there is now '%s'",
                          shown, aside);
        if (r < 0)
            return r;
        file_remove_tree(tmp);
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return err_set(errno, "rename into '%s'", dir);
    if (rename(dir, aside) < 0)
        return err_set(errno, "move '%s' aside", dir);
    int checked = replaceable(aside, shown);
    if (checked < 0) {
        rename(aside, dir);
        return checked;
    }
    if (rename(tmp, dir) < 0) {
        int r = err_set(errno, "rename into '%s'", dir);
        rename(aside, dir);
        return r;
    }
    file_remove_tree(aside);
    return 0;
}

/* The target as a path whose last part names it: "." and ".." (and
 * trailing slashes) resolved, so its parent and a sibling can be named. */
static int target_path(const char *given, char **out)
{
    char *path = strdup(given);
    size_t n = path ? strlen(path) : 0;

    if (!path)
        return -ENOMEM;
    while (n > 1 && path[n - 1] == '/')
        path[--n] = 0;
    const char *slash = strrchr(path, '/'), *last = slash ? slash + 1 : path;
    if (strcmp(last, ".") == 0 || strcmp(last, "..") == 0 || strcmp(path, "/") == 0) {
        char *real = realpath(path, NULL);
        free(path);
        if (!real)
            return err_set(errno, "'%s'", given);
        path = real;
    }
    if (strcmp(path, "/") == 0) {
        free(path);
        return err_plain(EINVAL, "cannot build into '/'");
    }
    *out = path;
    return 0;
}

/* Builds in a temporary folder beside the target, under a lock on the
 * parent folder (no lock file left behind), and swaps it into place: a
 * crash or a second builder never leaves half an appliance where a
 * finished one is expected, and only an appliance is ever replaced. */
static int build_locked(const struct appliance_options *o, const char *dir, const char *shown,
                        const char *kernel, const char *release, const char *init,
                        const char *const *modules, size_t count, struct appliance *out)
{
    char *copy = strdup(dir), *parent = copy ? dirname(copy) : NULL, *tmp = NULL, *aside = NULL;
    const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    int fd = -1, r = parent ? replaceable(dir, shown) : -ENOMEM;

    if (r == 0)
        r = paths_mkdirs(parent);
    if (r == 0 && (asprintf(&tmp, "%s/.%s.tmp-XXXXXX", parent, base) < 0 ||
                   asprintf(&aside, "%s/.%s.old-%d", parent, base, (int)getpid()) < 0))
        r = -ENOMEM;
    if (r == 0 && ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
                   flock(fd, LOCK_EX) < 0))
        r = err_set(errno, "lock '%s'", parent);
    if (r == 0 && ready(dir, out->key)) { /* another builder finished it meanwhile */
        out->cached = true;
    } else if (r == 0) {
        r = mkdtemp(tmp) && chmod(tmp, 0755) == 0 ? 0 : err_set(errno, "'%s'", tmp);
        if (r == 0)
            r = build_into(tmp, o, kernel, release, init, modules, count, out->key);
        if (r == 0)
            r = replaceable(dir, shown); /* again: it may have changed during the build */
        if (r == 0)
            r = swap_into_place(tmp, dir, aside, shown);
        if (r < 0)
            file_remove_tree(tmp);
    }
    if (fd >= 0)
        close(fd);
    free(copy);
    free(tmp);
    free(aside);
    return r;
}

/* The default modules, then those --modules adds that are not among them;
 * none for a kernel with everything built in. */
static const char **module_set(const struct appliance_options *o, size_t *count)
{
    size_t defaults = o->builtin_modules ? 0 : sizeof(default_modules) / sizeof(default_modules[0]);
    const char **all = calloc(defaults + o->module_count, sizeof(*all));

    if (!all)
        return NULL;
    memcpy(all, default_modules, defaults * sizeof(default_modules[0]));
    *count = defaults;
    for (size_t i = 0; i < o->module_count; i++) {
        size_t j = 0;
        while (j < *count && strcmp(all[j], o->modules[i]) != 0)
            j++;
        if (j == *count)
            all[(*count)++] = o->modules[i];
    }
    return all;
}

/* What the folder holds, for the report: from its manifest and root. */
static void describe(struct appliance *a)
{
    char *manifest = part(a->dir, "appliance.json"), *root = part(a->dir, "root.ext2");
    json_t *m = manifest ? json_load_file(manifest, 0, NULL) : NULL;
    const char *release = json_string_value(json_object_get(m, "release"));
    json_t *files = json_object_get(m, "module_files");
    struct stat st;

    snprintf(a->release, sizeof(a->release), "%s", release ? release : "");
    a->module_count = json_is_integer(files) ? (size_t)json_integer_value(files)
                                             : json_array_size(json_object_get(m, "modules"));
    a->root_bytes = root && stat(root, &st) == 0 ? (uint64_t)st.st_size : 0;
    json_decref(m);
    free(manifest);
    free(root);
}

int appliance_build(const struct appliance_options *o, struct appliance *out)
{
    size_t count = 0;
    const char **modules = module_set(o, &count);
    char *kernel = NULL, *init = NULL, release[128], *cache = NULL;
    int r = modules ? 0 : -ENOMEM;

    memset(out, 0, sizeof(*out));
    if (r == 0)
        r = o->kernel ? ((kernel = strdup(o->kernel)) ? 0 : -ENOMEM) : newest_kernel(&kernel);
    if (r == 0 && o->release)
        snprintf(release, sizeof(release), "%s", o->release);
    else if (r == 0)
        r = kernel_release(kernel, release, sizeof(release));
    if (r == 0)
        r = o->init ? ((init = strdup(o->init)) ? 0 : -ENOMEM) : default_init(&init);
    if (r == 0)
        r = input_key(o, kernel, init, modules, count, out->key);
    if (r == 0 && o->out_dir) {
        r = target_path(o->out_dir, &out->dir);
    } else if (r == 0) {
        cache = paths_cache_dir("appliance");
        if (!cache || asprintf(&out->dir, "%s/%s", cache, out->key) < 0)
            r = err_plain(ENOENT, "no cache folder (set HOME or XDG_CACHE_HOME, or give -o DIR)");
    }
    if (r == 0 && !out->dir)
        r = -ENOMEM;
    if (r == 0 && ready(out->dir, out->key))
        out->cached = true;
    else if (r == 0)
        r = build_locked(o, out->dir, o->out_dir ? o->out_dir : out->dir, kernel, release, init,
                         modules, count, out);
    if (r == 0)
        describe(out);
    free(modules);
    free(kernel);
    free(init);
    free(cache);
    if (r < 0)
        appliance_release(out);
    return r;
}

void appliance_release(struct appliance *a)
{
    free(a->dir);
    a->dir = NULL;
}

int appliance_open(const char *dir, struct appliance_files *out)
{
    char *manifest = part(dir, "appliance.json");
    json_t *m = manifest ? json_load_file(manifest, 0, NULL) : NULL;
    const char *cmdline = json_string_value(json_object_get(m, "cmdline"));
    int r = 0;

    memset(out, 0, sizeof(*out));
    out->kernel = part(dir, "kernel");
    out->initrd = part(dir, "initrd");
    out->root = part(dir, "root.ext2");
    out->cmdline = strdup(cmdline ? cmdline : DEFAULT_CMDLINE);
    const char *discovery = json_string_value(json_object_get(m, "virtio_discovery"));
    out->cmdline_discovery = discovery && strcmp(discovery, "cmdline") == 0;
    if (!m || !out->kernel || !out->initrd || !out->root || !out->cmdline ||
        access(out->kernel, R_OK) || access(out->initrd, R_OK) || access(out->root, R_OK))
        r = err_plain(ENOENT, "'%s' is not an appliance (smolvm image build makes one)", dir);
    json_decref(m);
    free(manifest);
    if (r < 0)
        appliance_files_release(out);
    return r;
}

bool appliance_folder(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void appliance_files_release(struct appliance_files *f)
{
    free(f->kernel);
    free(f->initrd);
    free(f->root);
    free(f->cmdline);
    memset(f, 0, sizeof(*f));
}
