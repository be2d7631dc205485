/* The plan of a VM's VMM under --jail (cli/jail.h): its own runtime
 * folder (vsock socket, log), instance folder, the caches a start fills,
 * the files its options name, and the devices it opens. */
#include "cli/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/control.h"
#include "api/spare.h"
#include "arch/x86/unpack.h"
#include "cli/cli.h"
#include "confine/cgroup.h"
#include "confine/jail.h"
#include "disk/disk.h"
#include "hv/hv.h"
#include "machine/instance.h"
#include "machine/machine.h"
#include "net/backend.h"
#include "util/cache.h"
#include "util/err.h"
#include "util/paths.h"
#include "util/trace.h"

/* The parts of a plan that are the same for every start (make_part()). */
enum plan_part {
    PART_CACHES,       /* the cache folders a start fills */
    PART_LAYERS,       /* the store's layers, read-only */
    PART_MIGRATE,      /* a migration's scratch */
    PART_DEVICES,      /* /dev/kvm and the like */
    PART_KERNEL_CACHE, /* the unpacked kernels, read-only */
    PART_NET_HELPER,   /* --net user's helper and what it loads */
    PART_COUNT
};

/* A folder the paths module names (made if missing), writable. */
static int add_owned(struct confine_plan *p, char *dir)
{
    int r = dir ? confine_plan_add(p, dir, true) : 0;
    free(dir);
    return r;
}

/* A disk, and read-only the backing files of its chain (opened here to
 * find them; one that does not open is the VM's error to report). */
static int add_disk(struct confine_plan *p, const struct vm_disk_config *cfg)
{
    struct disk *d = NULL;
    int r = confine_plan_add(p, cfg->path, !cfg->read_only);

    if (r == 0 && disk_open_as(cfg->path, DISK_READ_ONLY | DISK_NO_LOCK, cfg->format, &d) < 0)
        err_clear();
    for (const struct disk *b = d ? d->backing : NULL; b && r == 0; b = b->backing)
        r = confine_plan_add(p, b->path, false);
    if (d)
        disk_close(d);
    return r;
}

static int add_share(void *plan, const struct vm_share_config *share)
{
    return confine_plan_add(plan, share->path, !share->read_only);
}

/* start NAME of a store instance: the folders create --share gave it,
 * which the start maps unless --share remaps their tags (a remapped
 * one's folder is let in all the same: it is the user's own, named by
 * them). An instance that cannot be read is the start's error to say. */
struct instance_shares {
    struct confine_plan *plan;
    int r;
};

static int add_instance_share(void *ctx, const struct vm_share_config *share)
{
    struct instance_shares *s = ctx;
    return s->r = add_share(s->plan, share);
}

static int add_instance_shares(struct confine_plan *p, const char *name)
{
    struct instance_shares s = {p, 0};

    if (machine_start_named_each_share(name, add_instance_share, &s) < 0 && s.r == 0)
        err_clear();
    return s.r;
}

/* Whether $SMOLVM_NET_HELPER was set here (add_net_helper()), not by the
 * user: a spare sets it ahead, for every start; one whose VM has no
 * helper takes it out again (forget_net_helper()). */
static bool helper_named_here;

static void forget_net_helper(void)
{
    if (helper_named_here)
        unsetenv("SMOLVM_NET_HELPER");
    helper_named_here = false;
}

/* --net user's helper runs in the jail too: its executable (found now,
 * while /proc/self/exe is there), the shared libraries it loads, and the
 * host's resolver settings (its DNS proxy reads them). */
static int add_net_helper(struct confine_plan *p)
{
    static const char *const host_files[] = {"/usr", "/lib", "/lib64", "/etc/ld.so.cache",
                                             "/etc/resolv.conf", "/etc/hosts"};
    char helper[PATH_MAX];
    int r = net_helper_path(helper, sizeof(helper));

    if (r == 0)
        r = confine_plan_add(p, helper, false);
    if (r == 0 && !getenv("SMOLVM_NET_HELPER"))
        helper_named_here = true;
    if (r == 0 && setenv("SMOLVM_NET_HELPER", helper, 1) < 0)
        r = err_set(errno, "--jail");
    for (size_t i = 0; i < sizeof(host_files) / sizeof(host_files[0]) && r == 0; i++)
        r = confine_plan_add(p, host_files[i], false);
    return r;
}

/* The names VM name has in the runtime folder (runtime: NAME.sock,
 * .console, .vsock, its own folder own, DIR/NAME.vm) and its jail's root
 * in own, which the relay removes after it (the VMM cannot: they are out
 * of its view), in the order they are removed: the root before its
 * folder. Strings only: made before the name too (cli_confine_relay_waiting()). */
static int add_runtime_leftovers(struct confine_plan *p, const char *runtime, const char *own,
                                 const char *name)
{
    static const char *const beside[] = {"sock", "console", "vsock"};
    char *entry = NULL;
    int r = 0;

    for (size_t i = 0; i < sizeof(beside) / sizeof(beside[0]) && r == 0; i++) {
        r = asprintf(&entry, "%s.%s", name, beside[i]) < 0 ? err_set(ENOMEM, "--jail")
                                                           : confine_plan_leftover(p, runtime, entry);
        free(entry);
    }
    if (r == 0)
        r = confine_plan_leftover(p, own, "root");
    if (r == 0)
        r = confine_plan_leftover(p, runtime, strrchr(own, '/') + 1);
    return r;
}

/* The VM's own runtime folder (control_vm_dir(): its root's mount point
 * too), writable, and what it leaves there (add_runtime_leftovers()). */
static int add_runtime(struct confine_plan *p, const char *name)
{
    char *own, *runtime = NULL;
    int r = control_vm_dir(name, &own);

    if (r == 0 && (asprintf(&p->root, "%s/root", own) < 0 || !(runtime = strdup(own))))
        r = err_set(ENOMEM, "--jail"), p->root = NULL;
    if (r == 0)
        r = confine_plan_add(p, own, true);
    if (r == 0) { /* DIR/NAME.vm: the folder, and the name of each beside it */
        *strrchr(runtime, '/') = '\0';
        r = add_runtime_leftovers(p, runtime, own, name);
    }
    free(runtime);
    free(own);
    return r;
}

/* Cache folders a start fills (machine/cache.h: its disks' bases and
 * layers, its RAM and working set), made and checked now; the cache's
 * other folders (kernels, appliances) stay out. */
static int add_caches(struct confine_plan *p)
{
    static const char *const filled[] = {"disks", "layers", "memory"};
    char *dirs[sizeof(filled) / sizeof(filled[0])];
    int r = 0;

    /* One not made (NULL): no cache, the start unpacks from the bundle, as outside. */
    if (cache_dirs_prepare(filled, sizeof(filled) / sizeof(filled[0]), dirs) < 0)
        err_clear();
    for (size_t i = 0; i < sizeof(filled) / sizeof(filled[0]); i++) {
        if (r == 0)
            r = add_owned(p, dirs[i]); /* frees it */
        else
            free(dirs[i]);
    }
    return r;
}

/* The unpacked kernels' cache (arch/x86/unpack.h), read-only: a jailed
 * VMM boots a bzImage from its unpacked vmlinux as outside, not through
 * the guest's own decompressor (seconds: most of what a jailed boot cost
 * more, bench jail_bench). run's kernel, a file the user named, is
 * unpacked into it here first when it is not there yet; a bundle's is
 * not (its bytes are decompressed only in the jail), but found when one
 * was unpacked before. The VMM cannot write it: the kernels it holds are
 * booted by other VMs. */
static int add_kernel_cache(struct confine_plan *p, const struct vm_config *cfg, bool start)
{
    char *dir;

    if (!cfg->kernel_cache)
        return 0;
    if (!start && cfg->kernel_path)
        x86_kernel_unpack_ahead(cfg->kernel_path);
    if (!(dir = x86_kernel_cache_dir()))
        return 0; /* no cache: the bzImage boots as it is, as outside */
    int r = confine_plan_add(p, dir, false);
    free(dir);
    return r;
}

/* A folder of the data folder, made if missing: paths_data_dir() made it
 * (paths_mkdirs() again was one more path walk of the plan's, bench
 * jail_calls); one it could not make is not there, and the plan leaves
 * out what is not there (without a data folder, what needs it fails in
 * the VM, as outside). */
static int add_data(struct confine_plan *p, const char *sub, bool writable)
{
    char *dir = paths_data_dir(sub);
    int r = dir ? confine_plan_add(p, dir, writable) : 0;

    free(dir);
    return r;
}

/* Instance NAME's folder (machine/instance.h), writable: made now on a
 * start, which writes its deltas there; on a run, when it is there (an
 * appliance's root). It is a mount point in the jail: the relay removes
 * it after, once the VMM has emptied it (an unnamed VM's, which nothing
 * could name later). */
static int add_instance(struct confine_plan *p, const char *name, bool make)
{
    char *dir = NULL, *instances = NULL;
    int r = make ? instance_dir(name, &dir) : 0;

    /* Made: its folder is the instances' (INSTANCES/NAME), there, not
     * looked for again (two path walks fewer, bench jail_calls). */
    if (r == 0 && make && !(instances = strdup(dir)))
        r = err_set(ENOMEM, "--jail");
    else if (r == 0 && make)
        *strrchr(instances, '/') = '\0';
    else if (r == 0 && (instances = paths_instances_dir()) &&
             asprintf(&dir, "%s/%s", instances, name) < 0)
        r = err_set(ENOMEM, "--jail"), dir = NULL;
    if (r == 0 && dir && (make || access(dir, F_OK) == 0) &&
        (r = confine_plan_add(p, dir, true)) == 0 && instances)
        r = confine_plan_leftover(p, instances, name);
    free(dir);
    free(instances);
    return r;
}

/* A store instance (start NAME): its folder (its delta, saved states),
 * its instance.json read-only, and the store's layers read-only (its
 * delta's chain). The store itself -- instance.json written, its lock --
 * stays outside (cli/start.c reads and marks the instance there); so do
 * the other instances and the keys. */
static int add_part(struct confine_plan *p, enum plan_part part, const struct vm_options *o,
                    bool start);

static int add_store_instance(struct confine_plan *p, const struct vm_options *o,
                              const char *name)
{
    char *instances = paths_instances_dir(), *settings = NULL;
    int r = add_part(p, PART_LAYERS, o, true);

    if (r == 0)
        r = add_instance(p, name, false);
    if (r == 0 && instances && asprintf(&settings, "%s/%s/instance.json", instances, name) < 0)
        r = err_set(ENOMEM, "--jail"), settings = NULL;
    if (r == 0 && settings)
        r = confine_plan_add(p, settings, false);
    free(settings);
    free(instances);
    return r;
}

/* What the VM itself needs of the user's smolvm folders: its own runtime
 * folder, its instance folder, the caches a start fills, a migration's
 * scratch -- never the whole folders (another VM's sockets, another
 * instance's disks, the store). */
static int add_own_folders(struct confine_plan *p, const struct vm_options *o, const char *name,
                           bool start, const char *bundle,
                           const struct instance_receiving *receiving)
{
    int r = add_runtime(p, name);

    /* A jailed receive's: named once the VM has arrived (confine/jail.h). */
    if (r == 0 && receiving && receiving->temporary)
        r = confine_plan_arrival(p, receiving->instances, receiving->temporary, name,
                                 receiving->lock_fd);
    else if (r == 0)
        r = add_instance(p, name, start);
    if (r == 0 && start)
        r = add_part(p, PART_CACHES, o, start);
    if (r == 0 && start && bundle && instance_named(bundle))
        r = add_store_instance(p, o, bundle);
    /* receive (a start of no bundle file): the layers the store has need
     * not come over the link (machine_layer_at_hand()). */
    if (r == 0 && start && !bundle)
        r = add_part(p, PART_LAYERS, o, start);
    if (r == 0)
        r = add_part(p, PART_MIGRATE, o, start);
    return r;
}

/* The parts of a plan that do not depend on what a start starts: made
 * once ahead by a spare VMM (cli_confine_ahead()), or by each plan. */
static int make_part(struct confine_plan *p, enum plan_part part, const struct vm_options *o,
                     bool start)
{
    static const char *const devices[] = {"/dev/kvm", "/dev/null", "/dev/zero", "/dev/urandom"};
    int r = 0;

    switch (part) {
    case PART_CACHES:
        return add_caches(p);
    case PART_LAYERS:
        return add_data(p, "layers", false);
    case PART_MIGRATE: /* a migration's scratch, both ways (migrate/migrate.h) */
        return add_data(p, "migrate", true);
    case PART_DEVICES:
        for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]) && r == 0; i++)
            r = confine_plan_add(p, devices[i], true);
        /* A bundle's first start is served by a userfaultfd (machine/
         * ram_faults.c), which the jail's user namespace cannot make by the
         * system call (that needs privilege in the host's): the device's
         * permissions decide, as outside. */
        if (r == 0 && start)
            r = confine_plan_add(p, "/dev/userfaultfd", true);
        return r;
    case PART_KERNEL_CACHE:
        return add_kernel_cache(p, &o->vm, start);
    case PART_NET_HELPER:
        return add_net_helper(p);
    case PART_COUNT:
        break;
    }
    return 0;
}

/* A spare's parts made ahead (start only), each a plan of its own. */
static struct confine_plan ahead_parts[PART_COUNT];
static bool ahead_made;

static int add_part(struct confine_plan *p, enum plan_part part, const struct vm_options *o,
                    bool start)
{
    return ahead_made && start ? confine_plan_merge(p, &ahead_parts[part])
                               : make_part(p, part, o, start);
}

/* A spare's jail made ahead (jail_template_make()): its namespaces and
 * the plan its root holds -- the parts every instance start's plan has,
 * and the net helper's (most do: an appliance's user network, a saved
 * state whose network is read only in the jail), taken out again for a
 * start that has no helper (plan.template_drop). Used once. */
static struct confine_plan template_plan;
static int template_ns[3];
static bool template_made;
/* The host's mount table when the template was made: its root is a copy
 * of the mounts then (binds, the tree under them). A start after the host
 * mounted or unmounted anything makes its jail whole instead, so a VM
 * never sees a volume since unmounted, nor the folder under one since
 * mounted (a fresh jail sees the host as it is). */
static char *template_mounts;
static size_t template_mounts_len;

/* The whole of /proc/self/mountinfo (bounded: a larger table is not
 * snapshotted, and no template is used). NULL when unread. */
static char *mount_table(size_t *len)
{
    enum { MOUNT_TABLE_MAX = 1 << 20 };
    size_t size = 16384, used = 0;
    char *buf = malloc(size);
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    ssize_t n = 1;

    while (buf && fd >= 0 && n > 0) {
        if (used == size) {
            char *bigger = size < MOUNT_TABLE_MAX ? realloc(buf, size * 2) : NULL;
            if (!bigger)
                break;
            buf = bigger, size *= 2;
        }
        n = read(fd, buf + used, size - used);
        if (n < 0 && errno == EINTR)
            n = 1;
        else if (n > 0)
            used += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    if (!buf || fd < 0 || n != 0) {
        free(buf);
        return NULL;
    }
    *len = used;
    return buf;
}

/* The template's paths, watched (inotify) from before it was made: one
 * removed, renamed or replaced -- or a folder on its way -- while the
 * spare waits is still the old one in the template's root (a cache folder
 * removed and made again: the VM's writes to it lost). A start after one
 * did makes its jail whole, as it makes it when the mounts changed. Each
 * watch is a folder's or file's (in wd), and for a folder on a path's
 * way, the name on that way (a change of another name there is none of
 * the template's); NULL: the path itself (any change). */
enum { TEMPLATE_WATCHES_MAX = 4 * CONFINE_MAX_PATHS };
static struct {
    int wd;
    char *name;
} watches[TEMPLATE_WATCHES_MAX];
static unsigned watch_count;
static int watch_fd = -1;

static void template_unwatch(void)
{
    if (watch_fd >= 0)
        close(watch_fd);
    watch_fd = -1;
    for (unsigned i = 0; i < watch_count; i++)
        free(watches[i].name);
    watch_count = 0;
}

/* path (absolute, as resolved: no link on its way) and the folders on its
 * way watched. 0, or -1 (the template unused). */
static int watch_path(const char *path)
{
    char *way = strdup(path), *slash = NULL;
    int r = way ? 0 : -1;

    for (bool self = true; r == 0; self = false) {
        const char *name = self ? NULL : slash + 1;
        uint32_t mask = IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_MASK_ADD |
                        (self ? 0 : IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_CREATE);
        int wd = inotify_add_watch(watch_fd, *way ? way : "/", mask);
        if (wd < 0 || watch_count == TEMPLATE_WATCHES_MAX ||
            (name && !(name = strdup(name))))
            r = -1;
        else
            watches[watch_count++] = (typeof(watches[0])){wd, (char *)name};
        if (r < 0 || !*way)
            break;
        slash = strrchr(way, '/');
        *slash = '\0'; /* its folder next ("" is /), watched for slash + 1 */
    }
    free(way);
    return r;
}

static int template_watch(void)
{
    template_unwatch();
    if ((watch_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) < 0)
        return -1;
    for (unsigned i = 0; i < template_plan.count; i++)
        if (watch_path(template_plan.paths[i].path) < 0)
            return -1;
    /* A link the template made (/etc/resolv.conf, /lib) re-pointed, as
     * `ln -sfn` does, is a change too: the watch on the link itself does
     * not follow it (review 45). */
    for (unsigned i = 0; i < template_plan.link_count; i++)
        if (watch_path(template_plan.links[i].path) < 0)
            return -1;
    return 0;
}

/* Whether an event on wd naming name (NULL: none) is one of the template's. */
static bool watched(int wd, const char *name)
{
    for (unsigned i = 0; i < watch_count; i++)
        if (watches[i].wd == wd && (!watches[i].name || !name || strcmp(watches[i].name, name) == 0))
            return true;
    return false;
}

/* Whether none of the template's paths changed since it was made (one
 * read of the events queued). The watches let go of: asked once. */
static bool template_paths_unchanged(void)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    bool changed = watch_fd < 0;

    while (!changed && (n = read(watch_fd, buf, sizeof(buf))) > 0)
        for (char *at = buf; at < buf + n && !changed;) {
            const struct inotify_event *e = (const struct inotify_event *)at;
            /* One with no name is the watched path's own (or the queue
             * overflowed, or a watch went): a change. */
            changed = (e->mask & IN_Q_OVERFLOW) || watched(e->wd, e->len ? e->name : NULL);
            at += sizeof(*e) + e->len;
        }
    if (!changed && errno != EAGAIN)
        changed = true; /* unread: not known unchanged */
    template_unwatch();
    return !changed;
}

/* Whether the host's mounts are still those the template was made over. */
static bool template_mounts_current(void)
{
    size_t len = 0;
    char *now = template_mounts ? mount_table(&len) : NULL;
    bool same = now && len == template_mounts_len && memcmp(now, template_mounts, len) == 0;

    free(now);
    return same;
}

/* What this process knows of the template let go (its watches, plan and
 * the host's mount table), its namespaces' fds left alone: taken by
 * jail_enter(), or already closed (a VMM forked ahead). */
static void template_forget(void)
{
    template_unwatch();
    confine_plan_release(&template_plan);
    template_made = false;
    free(template_mounts);
    template_mounts = NULL;
}

/* A spare's VMM forked before its name, or its relay to be
 * (cli_confine_fork_waiting()): the template's namespaces joined, their
 * fds closed by the fork. In the VMM, its plan is made here and taken
 * over the template (template_ns then only says there is one). */
static bool template_ns_joined, vmm_waiting;

/* The template let go unused: its namespaces (and its root with them),
 * its folder. */
static void template_discard(void)
{
    if (template_made && !template_ns_joined)
        for (int i = 0; i < 3; i++)
            close(template_ns[i]);
    if (template_plan.root)
        rmdir(template_plan.root);
    template_forget();
}

static void template_make(void)
{
    static const enum plan_part held[] = {PART_CACHES,  PART_LAYERS,       PART_MIGRATE,
                                          PART_DEVICES, PART_KERNEL_CACHE, PART_NET_HELPER};
    int r = 0;

    for (size_t i = 0; i < sizeof(held) / sizeof(held[0]) && r == 0; i++)
        r = confine_plan_merge(&template_plan, &ahead_parts[held[i]]);
    /* Read, and watched, before the template copies the mounts and binds
     * its paths: a change in between is seen as one. */
    if (r == 0 && template_watch() < 0)
        r = -1;
    if (r == 0)
        template_mounts = mount_table(&template_mounts_len);
    if (r == 0 && template_mounts && (template_plan.root = spare_root_dir(getpid())) &&
        jail_template_make(&template_plan, template_ns) == 0) {
        template_made = true;
        return;
    }
    template_discard(); /* the start makes its jail whole */
    err_clear();
}

/* Whether the template's root is the host's as it is now: the mounts it
 * copied, the paths it holds (each asked once a start). */
static bool template_current(void)
{
    bool paths = template_paths_unchanged(); /* asked whatever the mounts say: let go of */
    return template_mounts_current() && paths;
}

static const struct confine_path *plan_path(const struct confine_plan *p, const char *path)
{
    for (unsigned i = 0; i < p->count; i++)
        if (strcmp(p->paths[i].path, path) == 0)
            return &p->paths[i];
    return NULL;
}

static const struct confine_path *template_path(const char *path)
{
    return plan_path(&template_plan, path);
}

/* Whether a or b is inside the other (a folder of the template holding a
 * path of the start's, or the other way): bound in the template's root,
 * the order fill_root() keeps (outer first) would not hold. */
static bool nested(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), n = la < lb ? la : lb;

    if (strcmp(a, "/") == 0 || strcmp(b, "/") == 0) /* holds every other path */
        return la != lb;
    return la != lb && strncmp(a, b, n) == 0 && (la < lb ? b : a)[n] == '/';
}

/* Whether the template's root suits plan p: every path of p's that the
 * template holds, it holds as p would (not read-only where p writes);
 * none of p's others is inside one of the template's, nor holds one. */
static bool template_fits(const struct confine_plan *p)
{
    for (unsigned i = 0; i < p->count; i++) {
        const struct confine_path *held = template_path(p->paths[i].path);
        if (held ? p->paths[i].writable && !held->writable : false)
            return false;
        for (unsigned j = 0; !held && j < template_plan.count; j++)
            if (nested(p->paths[i].path, template_plan.paths[j].path))
                return false;
    }
    return true;
}

/* The template's folder (RUNTIME/spare-PID.root) among p's leftovers:
 * the relay removes it after the VM. */
static int template_folder_left(struct confine_plan *p)
{
    char *dir = strdup(template_plan.root);
    int r = dir ? 0 : err_set(ENOMEM, "--jail");

    if (r == 0) {
        *strrchr(dir, '/') = '\0';
        r = confine_plan_leftover(p, dir, strrchr(template_plan.root, '/') + 1);
    }
    free(dir);
    return r;
}

/* p made a plan of what the template's root lacks: the paths and links
 * it holds taken out, its root the template's (removed by the relay after
 * the VM), its namespaces joined by jail_enter(). */
static int template_take(struct confine_plan *p)
{
    unsigned kept = 0, links = 0;
    char *root = strdup(template_plan.root);
    int r = root ? 0 : err_set(ENOMEM, "--jail");

    /* What the template holds that p does not let in: taken out of its
     * root (one inside another of the template's goes with that one, or
     * stays in reach through it as in p). */
    for (unsigned i = 0; i < template_plan.count && r == 0; i++) {
        const char *held = template_plan.paths[i].path;
        bool inside = false;
        for (unsigned j = 0; j < template_plan.count; j++)
            inside |= nested(held, template_plan.paths[j].path) &&
                      strlen(template_plan.paths[j].path) < strlen(held);
        if (!plan_path(p, held) && !inside &&
            !(p->template_drop[p->template_drop_count++] = strdup(held)))
            r = err_set(ENOMEM, "--jail");
    }

    for (unsigned i = 0; i < p->count; i++) {
        if (template_path(p->paths[i].path))
            free(p->paths[i].path);
        else
            p->paths[kept++] = p->paths[i];
    }
    p->count = kept;
    for (unsigned i = 0; i < p->link_count; i++) {
        bool held = false;
        for (unsigned j = 0; j < template_plan.link_count; j++)
            held |= strcmp(template_plan.links[j].path, p->links[i].path) == 0;
        if (held)
            free(p->links[i].path), free(p->links[i].target);
        else
            p->links[links++] = p->links[i];
    }
    p->link_count = links;
    if (r == 0)
        r = template_folder_left(p);
    if (r == 0) {
        free(p->root);
        p->root = root, root = NULL;
        memcpy(p->template_ns, template_ns, sizeof(template_ns));
        template_forget(); /* jail_enter() closes the namespaces */
    }
    free(root);
    return r;
}

/* This process forked its VMM before making its plan (fork_vmm_ahead()):
 * the template's namespaces joined, it is the relay to be. */
static bool vmm_forked_ahead;

/* An instance start's plan p (start NAME, the daemon's): over the spare's
 * template when there is one and it fits; else the template let go. */
static int template_use(struct confine_plan *p, bool start, const char *bundle)
{
    int r = 0;

    if (!template_made)
        return 0;
    if (start && bundle && instance_named(bundle) && !p->new_net && template_fits(p))
        return template_take(p);
    /* A VMM forked ahead makes its root whole in the template's
     * namespaces (joined), where the template's folder is a mount point:
     * the relay removes it after. */
    if (vmm_forked_ahead)
        r = template_folder_left(p);
    template_discard();
    return r;
}

void cli_confine_ahead_release(void)
{
    for (unsigned i = 0; i < PART_COUNT; i++)
        confine_plan_release(&ahead_parts[i]);
    ahead_made = false;
    template_discard();
}

/* Before any plan: a template the host has moved on from (mounts, a
 * path or a link of its own changed as the spare waited) is let go of
 * with the parts made ahead beside it, which name the same paths and
 * links: the plan is made as the host is now (review 45: a link
 * re-pointed stayed old in the parts). Without a template nothing
 * watched them: made again too. */
static void ahead_check(void)
{
    if (ahead_made && !(template_made && template_current()))
        cli_confine_ahead_release();
}

void cli_confine_ahead(const struct vm_options *o)
{
    int r = 0;

    if (!o->jail || ahead_made)
        return;
    uint64_t began = trace_now_us();
    paths_decide();
    hv_decide();
    for (unsigned i = 0; i < PART_COUNT && r == 0; i++)
        r = make_part(&ahead_parts[i], i, o, true);
    if (r < 0) { /* the start makes its plan whole, and says what fails */
        cli_confine_ahead_release();
        err_clear();
        return;
    }
    ahead_made = true;
    template_make();
    trace_add_count(TRACE_SPARE_AHEAD_US, trace_now_us() - began);
}

/* Whether the VM may run --net user's helper (make_plan()). */
static bool needs_net_helper(const struct vm_config *cfg, bool start, const char *bundle)
{
    return start ? !(bundle && machine_start_named_without_net(bundle))
                 : cfg->net.mode == VM_NET_USER;
}

static int make_plan(const struct vm_options *o, const char *name, bool start,
                     const char *bundle, const struct instance_receiving *receiving,
                     struct confine_plan *p)
{
    const struct vm_config *cfg = &o->vm;
    int r = add_own_folders(p, o, name, start, bundle, receiving);

    if (r == 0)
        r = add_part(p, PART_DEVICES, o, start);
    if (r == 0)
        r = confine_plan_add(p, cfg->kernel_path, false);
    if (r == 0)
        r = add_part(p, PART_KERNEL_CACHE, o, start);
    if (r == 0)
        r = confine_plan_add(p, cfg->initrd_path, false);
    if (r == 0)
        r = confine_plan_add(p, o->appliance, false);
    if (r == 0)
        r = confine_plan_add(p, bundle, false);
    if (r == 0)
        r = confine_plan_add(p, o->trusted_key, false);
    for (unsigned i = 0; i < cfg->disk_count && r == 0; i++)
        r = add_disk(p, &cfg->disks[i]);
    for (unsigned i = 0; i < cfg->share_count && r == 0; i++)
        r = add_share(p, &cfg->shares[i]);
    if (r == 0 && start && bundle && instance_named(bundle))
        r = add_instance_shares(p, bundle);
    /* start: the bundle's network is not known yet (but a store
     * instance's, read outside: without one, no helper, nor the 6 host
     * paths it needs -- ~60 calls of a jailed start, bench jail_bench);
     * run: only --net none may lose the host's network (a TAP is
     * attached, the helper connects, in the host's). */
    p->new_net = !start && cfg->net.mode == VM_NET_NONE;
    if (r == 0 && cfg->net.mode == VM_NET_TAP)
        r = confine_plan_add(p, "/dev/net/tun", true);
    if (r == 0 && needs_net_helper(cfg, start, bundle))
        r = add_part(p, PART_NET_HELPER, o, start);
    else
        forget_net_helper(); /* a spare's, set ahead */
    return r;
}

/* A spare's VMM's VM, made on a thread as its root is built (jail.h's
 * vmm_ahead; a start's own jail begins it as plan.vmm_begin): making it
 * mostly sleeps (KVM_CREATE_VM waits for an RCU grace period, 12-14 ms
 * of a jailed start in the nested L1; its
 * interrupt controller and timer for SRCU's), and hv_vm_create() takes
 * the VM made here. A failure is said there, when it makes the VM again. */
static void make_vm_ahead(void)
{
    if (hv_vm_create_ahead() < 0)
        err_clear();
}

/* A start through a spare (start NAME over its template, the host's
 * mounts unchanged, no cgroup to enter first): its VMM forked now, its
 * VM made as this process makes the plan (jail_fork_ahead()). 1 in the
 * VMM, confined; 0 here (forked or not: vmm_forked_ahead); an error. */
static int fork_vmm_ahead(bool start, const char *bundle,
                          const struct instance_receiving *receiving,
                          const struct cgroup_limits *limits)
{
    int r;

    if (!template_made || !start || !bundle || !instance_named(bundle) || receiving ||
        limits->cpu_quota_milli || limits->mem_bytes)
        return 0;
    r = confine_fork_ahead(template_ns, make_vm_ahead);
    if (r == 1) {
        /* The VMM keeps nothing of the template's: the host's mount table
         * in particular (review 45). Not template_discard(): the
         * namespaces' fds were closed by the fork's child, their numbers
         * maybe another file's now. */
        template_forget();
    } else if (r == 0)
        vmm_forked_ahead = true;
    else if (r < 0 && r != -ENOTRECOVERABLE) { /* nothing changed */
        template_discard();
        err_clear();
        r = 0;
    }
    return r;
}

/* Confined as asked (got): a jail that is less is said. */
static int confined(enum confine_kind got)
{
    /* Asked for a jail, the user hears when it is less (status says it
     * always: 'smolvm ps --json'). */
    if (got != CONFINE_JAIL)
        fprintf(stderr, "smolvm: %s: --jail: no namespaces allowed here; confinement: %s\n",
                cli_verb(), confine_description());
    confine_probe();
    return CLI_OK;
}

static int confine_as(const struct vm_options *o, const char *name, bool start,
                      const char *bundle, const struct instance_receiving *receiving)
{
    /* The VMM's VM made on a thread of its own from its fork on, beside
     * its root's building and what follows until it takes the VM
     * (hv_vm_create() waits for it there): the thread powerless first. */
    struct confine_plan plan = {.vmm_begin = hv_vm_create_begin_after};
    struct cgroup_limits limits = {o->cpu_quota_milli, o->mem_limit};
    enum confine_kind got;
    int r = 0;

    if ((limits.cpu_quota_milli || limits.mem_bytes) && cgroup_enter(name, &limits) < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (!o->jail)
        return CLI_OK;
    uint64_t began = trace_now_us(), planned;
    paths_decide(); /* here, outside: the VMM could not look again (util/paths.h) */
    hv_decide();    /* which KVM this is: no /sys in the jail (hv/hv.h) */
    if (!vmm_waiting) /* its spare checked the template as it was named */
        ahead_check();
    if (!vmm_waiting && (r = fork_vmm_ahead(start, bundle, receiving, &limits)) == 1) {
        if (!needs_net_helper(&o->vm, start, bundle))
            forget_net_helper(); /* as its relay's plan does */
        return confined(CONFINE_JAIL);
    }
    if (r < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (vmm_forked_ahead)
        began = trace_now_us(); /* the plan's own time, sent to the VMM's trace */
    r = make_plan(o, name, start, bundle, receiving, &plan);
    if (r == 0)
        r = template_use(&plan, start, bundle);
    trace_add_count(TRACE_JAIL_PLAN_US, (planned = trace_now_us()) - began);
    trace_add_count(TRACE_JAIL_PATHS, plan.count);
    if (r == 0 && vmm_waiting) /* its spare's VMM, forked before it was named */
        r = confine_waited(&plan), got = CONFINE_JAIL;
    else if (r == 0)
        r = confine_enter(&plan, &got);
    trace_add_count(TRACE_JAIL_ENTER_US, trace_now_us() - planned);
    confine_plan_release(&plan);
    if (r < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    return confined(got);
}

bool cli_confine_template_made(void)
{
    return template_made;
}

bool cli_confine_ahead_current(void)
{
    ahead_check();
    return template_made;
}

/* A relay to be's folders (cli_confine_fork_waiting()), found before
 * the name: the runtime folder, the instances folder (NULL: none). */
static char *relay_runtime, *relay_instances;

int cli_confine_fork_waiting(void)
{
    int r = jail_fork_waiting(template_ns);

    if (r >= 0 || r == -ENOTRECOVERABLE)
        template_ns_joined = true; /* closed by the fork */
    if (r == 0 && control_dir(&relay_runtime) < 0)
        err_clear(), relay_runtime = NULL; /* no runtime folder: no VM starts */
    if (r == 0)
        relay_instances = paths_instances_dir();
    if (r >= 0) {
        /* What the spare checks as it is named (ahead_check()): neither
         * the VMM's nor its relay's, which lives as long as the VM (a kept
         * watch pins one of the user's inotify instances: review 46). */
        template_unwatch();
        free(template_mounts);
        template_mounts = NULL;
    }
    if (r == 1)
        vmm_waiting = true;
    return r;
}

void cli_confine_relay_waiting(const char *name, int vmm_name_fd)
{
    struct confine_plan p = {0};
    char line[CONTROL_NAME_MAX + 2], *own = NULL;
    int len = snprintf(line, sizeof(line), "%s\n", name);

    /* What the VM's plan names to remove after it (add_runtime(),
     * add_instance(), the template's folder), from its name and the
     * folders found before it: not a path looked at on the VMM's way
     * (hold_leftovers() passes over a name that is not there). */
    if (!relay_runtime ||
        asprintf(&own, "%s/%s" CONTROL_VM_DIR_SUFFIX, relay_runtime, name) < 0 ||
        add_runtime_leftovers(&p, relay_runtime, own, name) < 0 ||
        (relay_instances && confine_plan_leftover(&p, relay_instances, name) < 0) ||
        template_folder_left(&p) < 0)
        err_clear(); /* what was planned is held */
    free(own);
    /* One write (a pipe's, atomic); a VMM gone first is relayed as it
     * ended, not this process ended by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    if (write(vmm_name_fd, line, (size_t)len) != len) {
        /* the VMM is gone: its relay ends as it did */
    }
    signal(SIGPIPE, SIG_DFL);
    close(vmm_name_fd);
    jail_relay_waiting(&p);
}

int cli_confine(const struct vm_options *o, const char *name, bool start, const char *bundle)
{
    return confine_as(o, name, start, bundle, NULL);
}

int cli_confine_receiver(bool jail, const struct vm_share_config *shares, unsigned share_count,
                         const char *name, const struct instance_receiving *receiving)
{
    struct vm_options o = {.jail = jail};

    if (share_count > VM_MAX_SHARES)
        return cli_fail(CLI_USAGE, "too many shares");
    if (share_count) /* shares may be NULL then: memcpy's source never may */
        memcpy(o.vm.shares, shares, share_count * sizeof(*shares));
    o.vm.share_count = share_count;
    return confine_as(&o, name, true, NULL, receiving);
}

int cli_parse_seccomp(const char *word, enum confine_seccomp *mode)
{
    static const struct {
        const char *word;
        enum confine_seccomp mode;
    } modes[] = {{"on", CONFINE_SECCOMP_ON}, {"off", CONFINE_SECCOMP_OFF},
                 {"log", CONFINE_SECCOMP_LOG}};

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (strcmp(word, modes[i].word) == 0) {
            *mode = modes[i].mode;
            return 0;
        }
    return err_plain(EINVAL, "must be one of 'on', 'off', 'log'");
}

int cli_hv_check(bool vmm_forked)
{
    return (vmm_forked ? hv_check_elsewhere() : hv_check()) < 0 ? -1 : 0;
}
