/* The jail (jail.h): namespaces, a root of only the plan's paths, no
 * capabilities. The paths keep their own names inside, so what the VMM
 * opens after is opened by the same name, and the host's sockets of the
 * VM (control, vsock: in the runtime folder, bound in) stay where
 * `smolvm ps` and the user's programs look for them. */
#include "confine/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "confine/cgroup.h"
#include "confine/confine.h"
#include "confine/seccomp_rules.h"
#include "util/err.h"
#include "util/file.h"
#include "util/trace.h"

/* Past the point of no return: the process is half confined and must not
 * run a VM. Says why; a result no caller takes for "not available here". */
static int broken(const char *what, const char *path)
{
    err_set(errno, "--jail: %s %s", what, path);
    return -ENOTRECOVERABLE;
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;
    size_t len = strlen(text);

    if (fd < 0)
        return -errno;
    if (write(fd, text, len) != (ssize_t)len)
        r = -errno;
    close(fd);
    return r;
}

/* The user's own ids, the same inside: files it makes keep their owner. */
static int map_ids(uid_t uid, gid_t gid)
{
    char line[64];
    int r = write_text("/proc/self/setgroups", "deny");

    if (r < 0 && r != -ENOENT)
        return broken("cannot write", "/proc/self/setgroups");
    snprintf(line, sizeof(line), "%u %u 1", (unsigned)uid, (unsigned)uid);
    if (write_text("/proc/self/uid_map", line) < 0)
        return broken("cannot write", "/proc/self/uid_map");
    snprintf(line, sizeof(line), "%u %u 1", (unsigned)gid, (unsigned)gid);
    if (write_text("/proc/self/gid_map", line) < 0)
        return broken("cannot write", "/proc/self/gid_map");
    return 0;
}

/* The root is built from inside it (build_root(): its folder is the
 * working folder, the umask 0), so each call below walks the path in the
 * jail, not the host's folders above the root too: a jailed start makes
 * ~20 mount points, and each call costs in a TCG L1. AT is a path as the
 * jail will see it (absolute); in_root(AT) names it from the root. */
static const char *in_root(const char *at)
{
    return at[1] ? at + 1 : ".";
}

/* The folders in the root so far, as build_root() made or bound them:
 * the root is a tmpfs of its own, so a folder it made holds only what it
 * made in it since. A mount point's folders are then looked at once, not
 * once for each path below them, nor is a folder known to be missing
 * looked for (a jailed start in the nested L1 made its 19 paths' points
 * in 89 calls, each a path walk, ~0.1-0.3 ms there: jail_binds_us). */
struct root_folder {
    char *at;
    bool setgid; /* made set-gid (what mkdir() passes on inside it) */
    bool bound;  /* a host folder bound there: what it holds is the host's */
};
static struct root_folder root_folders[4 * CONFINE_MAX_PATHS];
static unsigned root_folder_count;
/* The root was built ahead, by another process (jail_template_make()):
 * its folders are there, but not in root_folders. */
static bool root_prebuilt;

/* Unrecorded past the table's end: such a folder is looked at again. A
 * folder made, then bound over, is one entry, bound: what it holds is the
 * host's from then on. */
static void remember_folder(const char *at, bool setgid, bool bound)
{
    char *copy;

    for (unsigned i = 0; i < root_folder_count; i++)
        if (strcmp(root_folders[i].at, at) == 0) {
            root_folders[i].bound |= bound;
            return;
        }
    if (root_folder_count == sizeof(root_folders) / sizeof(root_folders[0]) ||
        !(copy = strdup(at)))
        return;
    root_folders[root_folder_count++] = (struct root_folder){copy, setgid, bound};
}

static void forget_folders(void)
{
    for (unsigned i = 0; i < root_folder_count; i++)
        free(root_folders[i].at);
    root_folder_count = 0;
}

/* The deepest folder recorded that AT is inside, or NULL (the root's). */
static const struct root_folder *known_folder_of(const char *at)
{
    const struct root_folder *best = NULL;

    for (unsigned i = 0; i < root_folder_count; i++) {
        size_t n = strlen(root_folders[i].at);
        if (strncmp(at, root_folders[i].at, n) == 0 && at[n] == '/' &&
            (!best || n > strlen(best->at)))
            best = &root_folders[i];
    }
    return best;
}

/* A folder on the way to a mount point, with the host folder's mode: the
 * VMM checks some of them as it would outside (smolvm's cache root must
 * be 0700, util/cache.h) and could not change them in the read-only root.
 * *setgid: in, whether the folder it is in is set-gid (mkdir() makes it
 * set-gid then, whatever its mode); out, whether it is. MISSING: known
 * not to be there yet (in a folder made here), else looked for first. */
static int make_folder_as_host(const char *at, bool missing, bool *setgid)
{
    struct stat st;
    mode_t mode;

    /* Inside a bound folder, most are there already: one call each. */
    if (!missing && stat(in_root(at), &st) == 0) {
        *setgid = st.st_mode & S_ISGID;
        return 0;
    }
    mode = stat(at, &st) == 0 ? st.st_mode & 07777 : 0755;
    if (mkdir(in_root(at), mode) < 0)
        return missing && errno == EEXIST ? make_folder_as_host(at, false, setgid)
                                          : broken("cannot make", at);
    /* mkdir() leaves set-id bits out of the mode it is given, and takes
     * its folder's set-gid bit. */
    if (((mode & (S_ISUID | S_ISGID)) || *setgid) && chmod(in_root(at), mode) < 0)
        return broken("cannot make", at);
    *setgid = mode & S_ISGID;
    remember_folder(at, *setgid, false);
    return 0;
}

/* The mount point itself: a folder, or an empty file to bind onto. 0, or
 * -errno (-EEXIST: inside a folder bound before, there already). */
static int make_point(const char *at, bool folder)
{
    int r = folder ? mkdir(in_root(at), 0755) : mknod(in_root(at), S_IFREG | 0644, 0);
    return r < 0 ? -errno : 0;
}

/* Over a root built ahead (its folders not recorded here): where in DIR
 * (AT, a copy) the deepest folder of AT's that is there ends -- looked
 * for from AT's own folder up, one call each (most of a start's points
 * are a folder or two below one of the template's) -- and its set-gid
 * bit; 0 when none is (the root's). Never inside a folder the template
 * bound (cli/jail.c's template_fits()): what is made below is the jail's. */
static size_t deepest_there(char *dir, bool *setgid)
{
    size_t at = strlen(dir);
    struct stat st;

    while (at > 0) {
        do
            at--;
        while (at > 0 && dir[at] != '/');
        if (at == 0)
            break;
        dir[at] = '\0';
        int r = stat(in_root(dir), &st);
        dir[at] = '/';
        if (r == 0) {
            *setgid = st.st_mode & S_ISGID;
            return at;
        }
    }
    return 0;
}

/* The mount point of AT: one call when its folder is there (most are),
 * else its folders first -- those below a folder made here without
 * looking for them (not there), those in a bound folder each looked for. */
static int make_mount_point(const char *at, bool folder)
{
    const struct root_folder *known = known_folder_of(at);
    const char *rest = known ? at + strlen(known->at) : at;
    bool missing = !known || !known->bound, setgid = false; /* the root's tmpfs is not */
    char dir[PATH_MAX];
    int r;

    /* In a folder recorded, or in one bound (what is in it is there), or
     * in a root built ahead (the template's folders are not recorded
     * here: most of a start's own points are in one of them). */
    if (!missing || !strchr(rest + 1, '/') || root_prebuilt) {
        r = make_point(at, folder);
        if (r == 0 || r == -EEXIST)
            return 0;
        if (r != -ENOENT)
            return errno = -r, broken("cannot make", at);
    }
    /* Walked from below the folder made here, or from the bound one
     * itself (looked at: its set-gid bit is the host's), or the root. */
    if ((size_t)snprintf(dir, sizeof(dir), "%s", at) >= sizeof(dir))
        return errno = ENAMETOOLONG, broken("cannot make", at);
    char *slash = dir;
    if (!known && root_prebuilt) {
        slash += deepest_there(dir, &setgid);
    } else if (known && missing) {
        slash += rest - at;
        setgid = known->setgid;
    } else if (known) {
        slash += strrchr(known->at, '/') - known->at;
    }
    for (slash = strchr(slash + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if ((r = make_folder_as_host(dir, missing, &setgid)) < 0)
            return r;
        *slash = '/';
    }
    r = make_point(at, folder);
    return r == 0 || r == -EEXIST ? 0 : (errno = -r, broken("cannot make", at));
}

/* A read-only remount must keep the flags the source's mount has (nosuid,
 * nodev, noexec...): a user namespace may not lift them. */
static unsigned long kept_flags(const char *path)
{
    static const struct {
        unsigned long st, ms;
    } flags[] = {{ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC},
                 {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME},
                 {ST_RELATIME, MS_RELATIME}};
    struct statvfs sv;
    unsigned long ms = 0;

    if (statvfs(path, &sv) < 0)
        return 0;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (sv.f_flag & flags[i].st)
            ms |= flags[i].ms;
    return ms;
}

/* Read-only, keeping the flags the source's mount has (nosuid, nodev,
 * noexec...: a user namespace may not lift them): mount_setattr() sets
 * only this one, in one call; the remount, where the kernel lacks it,
 * must name them all (kept_flags()). */
static int make_read_only(const char *source, const char *target)
{
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};

    if (mount_setattr(AT_FDCWD, target, 0, &ro, sizeof(ro)) == 0)
        return 0;
    if (errno != ENOSYS)
        return -1;
    return mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(source), NULL);
}

/* source, bound in the root at the path at (its own path, but for an
 * arrival's folder), onto a folder or a file as planned. */
static int bind_at(const char *source, const char *at, bool folder, bool writable)
{
    int r;

    /* A folder or file that is no longer what the plan saw fails to bind. */
    if ((r = make_mount_point(at, folder)) < 0)
        return r;
    /* Without MS_REC: the folders under it mounted elsewhere stay out,
     * unless the kernel insists (EINVAL: they are locked to this one). */
    if (mount(source, in_root(at), NULL, MS_BIND, NULL) < 0 &&
        (errno != EINVAL || mount(source, in_root(at), NULL, MS_BIND | MS_REC, NULL) < 0))
        return broken("cannot bind", source);
    if (!writable && make_read_only(source, in_root(at)) < 0)
        return broken("cannot make read-only", source);
    if (folder)
        remember_folder(at, false, true);
    return 0;
}

static int bind_in(const struct confine_path *cp)
{
    return bind_at(cp->path, cp->path, cp->folder, cp->writable);
}

/* The arrival's folder (jail.h), at the name it will take. */
static int bind_arrival(const struct confine_arrival *a)
{
    char source[PATH_MAX], at[PATH_MAX];

    if (!a->name)
        return 0;
    if ((size_t)snprintf(source, sizeof(source), "%s/%s", a->dir, a->temporary) >= sizeof(source) ||
        (size_t)snprintf(at, sizeof(at), "%s/%s", a->dir, a->name) >= sizeof(at))
        return err_plain(ENAMETOOLONG, "--jail: %s: path too long", a->dir), -ENOTRECOVERABLE;
    return bind_at(source, at, true, true); /* a folder (jail.h) */
}

static int by_length(const void *a, const void *b)
{
    size_t la = strlen((*(const struct confine_path *const *)a)->path);
    size_t lb = strlen((*(const struct confine_path *const *)b)->path);
    return (la > lb) - (la < lb);
}

static int make_link(const struct confine_link *l)
{
    const char *at = in_root(l->path);
    int r;

    if (symlink(l->target, at) == 0 || errno == EEXIST)
        return 0; /* EEXIST: inside a folder bound in, there already */
    if (errno != ENOENT)
        return broken("cannot make", l->path);
    /* Its folders, as a mount point's (the link stands for a folder). */
    if ((r = make_mount_point(l->path, true)) < 0)
        return r;
    if (rmdir(at) < 0 || symlink(l->target, at) < 0)
        return broken("cannot make", l->path);
    return 0;
}

/* A procfs of the jail's pid namespace: the VMM and what it starts, no
 * other process (the shares reopen files through /proc/self/fd, saves
 * read /proc/self/pagemap). Mounted while the host's /proc is still
 * there: the kernel lets a namespace mount one only then. */
static int mount_proc(void)
{
    uint64_t start = trace_now_us();
    if (mkdir("proc", 0555) < 0 && errno != EEXIST)
        return broken("cannot make", "/proc");
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return broken("cannot mount a procfs on", "/proc");
    trace_add_count(TRACE_JAIL_PROC_US, trace_now_us() - start);
    return 0;
}

/* The mount a path is on (statx's mount id), 0 when not known. */
static uint64_t mount_of(const char *path)
{
    struct statx stx;

    if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx) < 0 || !(stx.stx_mask & STATX_MNT_ID))
        return 0;
    return stx.stx_mnt_id;
}

/* Whether order[i] is there already, as it must be, through the nearest
 * folder of the plan holding it (one of order[0..i-1]: they are shorter):
 * the same access, and on the same mount (a folder is bound without what
 * is mounted under it). Bound again on top, it would be a mount point the
 * VMM cannot remove or rename over: an unnamed VM's delta in its
 * instance folder, under the data folder, is removed when it ends. */
static bool reached_through_folder(const struct confine_path *const *order, unsigned i)
{
    const char *path = order[i]->path;
    uint64_t mount;

    for (unsigned j = i; j-- > 0;) {
        const char *dir = order[j]->path;
        size_t n = strlen(dir);
        if (strncmp(path, dir, n) != 0 || (path[n] != '/' && strcmp(dir, "/") != 0))
            continue;
        return order[j]->writable == order[i]->writable && (mount = mount_of(path)) != 0 &&
               mount == mount_of(dir);
    }
    return false;
}

/* The plan's paths, the arrival's folder, a procfs (with_proc: only a
 * process of the jail's pid namespace can mount it) and the links, made
 * in the root, which is the working folder (see in_root()). */
static int fill_root(const struct confine_plan *p, bool with_proc)
{
    const struct confine_path *order[CONFINE_MAX_PATHS];
    int r;

    for (unsigned i = 0; i < p->count; i++)
        order[i] = &p->paths[i];
    qsort(order, p->count, sizeof(order[0]), by_length);
    uint64_t binding = trace_now_us();
    for (unsigned i = 0; i < p->count; i++)
        if (!reached_through_folder(order, i) && (r = bind_in(order[i])) < 0)
            return r;
    trace_add_count(TRACE_JAIL_BINDS_US, trace_now_us() - binding);
    if ((r = bind_arrival(&p->arrival)) < 0 || (with_proc && (r = mount_proc()) < 0))
        return r;
    for (unsigned i = 0; i < p->link_count; i++)
        if ((r = make_link(&p->links[i])) < 0)
            return r;
    return 0;
}

/* The mount tree made private (nothing propagates in or out: the jail
 * keeps the host's mounts as they were when the VM began). */
static int make_private(void)
{
    uint64_t privating = trace_now_us();
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return broken("cannot make private", "/");
    trace_add_count(TRACE_JAIL_PRIVATE_US, trace_now_us() - privating);
    return 0;
}

/* The mount tree made private, or for a template a slave (the host's
 * unmounts reach it: a volume the user unmounts while a spare waits is
 * not held busy by it; the VM makes it private when it joins), and a
 * tmpfs on p->root made the working folder, to fill. */
static int begin_root(const struct confine_plan *p, bool template)
{
    if (!template && make_private() < 0)
        return -ENOTRECOVERABLE;
    if (template && mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        return broken("cannot make a slave", "/");
    if (mount("smolvm-jail", p->root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        return broken("cannot mount a tmpfs on", p->root);
    return 0;
}

/* The plan's paths in the root (p->root, the working folder then). */
static int fill_root_at(const struct confine_plan *p, bool with_proc)
{
    mode_t umask_was;
    int r;

    if (chdir(p->root) < 0)
        return broken("cannot enter", p->root);
    umask_was = umask(0); /* the folders take the host's modes as they are made */
    r = fill_root(p, with_proc);
    forget_folders();
    umask(umask_was);
    return r;
}

/* Over a template: what it holds that the plan does not let in, taken
 * out of the root (jail.h). Each was bound there: one that will not
 * unmount is an error, never left in reach. */
static int drop_template_paths(const struct confine_plan *p)
{
    for (unsigned i = 0; i < p->template_drop_count; i++)
        if (umount2(in_root(p->template_drop[i]), MNT_DETACH) < 0)
            return broken("cannot take out of the spare's root", p->template_drop[i]);
    return 0;
}

/* A tmpfs on p->root holding the plan's paths (outer folders bound before
 * what is inside them), read-only itself, then made /. Over a root built
 * ahead (p->template_ns), only the plan's paths are added: the rest is
 * there. */
static int build_root(const struct confine_plan *p)
{
    int r;

    if ((!root_prebuilt && (r = begin_root(p, false)) < 0) ||
        (root_prebuilt && (r = make_private()) < 0) || (r = fill_root_at(p, true)) < 0 ||
        (root_prebuilt && (r = drop_template_paths(p)) < 0) ||
        (mount(NULL, ".", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0 &&
         (r = broken("cannot make read-only", p->root)) < 0) ||
        /* pivot_root(".", "."): the old root ends up on top, detached at once. */
        (syscall(SYS_pivot_root, ".", ".") < 0 && (r = broken("cannot pivot_root into", p->root)) < 0)) {
        /* Not made: its tmpfs off the mount point, which the relay (in
         * this mount namespace) then finds as it held it and removes
         * (review 46: NAME.vm/root was left). */
        if (!root_prebuilt && chdir("/") == 0)
            umount2(p->root, MNT_DETACH);
        return r;
    }
    uint64_t detaching = trace_now_us();
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return broken("cannot detach the host's root from", p->root);
    trace_add_count(TRACE_JAIL_DETACH_US, trace_now_us() - detaching);
    return 0;
}

/* Emptied before a thread is made that must be powerless from its start
 * (plan.vmm_begin): threads inherit it, and its drop is one call per
 * capability. Per thread, as the set is: a thread made ahead
 * (thread_ahead.c) empties its own. */
static __thread bool bounding_set_dropped;

/* The bounding set emptied (what any exec could give back), as far as
 * this kernel knows capabilities. The other sets stay: the root is built
 * with them. */
static void drop_bounding_set(void)
{
    for (int cap = 0; cap < 64 && !bounding_set_dropped; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
            break; /* past the last this kernel knows */
    bounding_set_dropped = true;
}

/* The calling thread's ambient, inheritable, permitted and effective
 * capabilities dropped: 0, or -1 (errno). */
static int drop_thread_capabilities(void)
{
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct none[2] = {{0}};

    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    return syscall(SYS_capset, &head, none) < 0 ? -1 : 0;
}

int jail_drop_capabilities(void)
{
    drop_bounding_set();
    if (drop_thread_capabilities() < 0)
        return broken("cannot drop", "the capabilities");
    return 0;
}

/* plan.vmm_begin's thread: made and not yet disarmed (1), or not (0). */
static _Atomic int arming;

/* plan.vmm_begin's disarm, first on the thread it makes (jail.h): no
 * capability (its bounding set was emptied before it was made), no new
 * privileges; else the process ends. The VMM waits for it to have
 * (wait_for_disarm()). */
static void disarm_thread(void)
{
    static const char line[] = "smolvm: --jail: a thread of the VMM cannot drop its capabilities\n";

    if (drop_thread_capabilities() == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) {
        atomic_store(&arming, 0);
        syscall(SYS_futex, &arming, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        return;
    }
    if (write(STDERR_FILENO, line, sizeof(line) - 1) < 0) {
        /* the exit status says it still */
    }
    syscall(SYS_exit_group, 1);
}

static pid_t host_pid; /* the VMM's pid in the host's namespace; 0: not jailed */
static pid_t vmm;      /* the relay's: its child, the VMM */

/* The plan's leftovers as the relay holds them: each folder open (the
 * VMM's pivot_root moves the relay's root too: names would reach the
 * jail's), and what the name was when the jail was made. */
struct held_leftover {
    int dir;
    const char *name;
    dev_t dev;
    ino_t ino;
    unsigned planned; /* its index in the plan's leftovers */
};
static struct held_leftover held[CONFINE_MAX_LEFTOVERS];
static unsigned held_count;

/* A VMM forked ahead of its plan (jail_fork_ahead()), as its relay sees
 * it: the host's root, opened before the template's namespaces were
 * joined (the leftovers are held through it, as the host sees them: in
 * the template's mount namespace a spare's root folder is a tmpfs), the
 * pipe its plan goes down, and its pid. */
static struct {
    int host_root, plan_down;
    pid_t vmm;
    bool forked;
} early = {-1, -1, 0, false};

/* In a spare's VMM forked before its name (jail_fork_waiting()): it makes
 * its own plan, the template's namespaces joined; as it begins its root
 * (its names its own), it says so with a byte (jail_confine_waited()), not
 * only its pipe's end, which its exit would close too
 * (jail_relay_waiting()); the end then says its root is built. */
static bool waiting_vmm;

/* Folder dir (absolute), opened as the host sees it. */
static int open_host_dir(const char *dir)
{
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT};

    int fd;

    if (early.host_root < 0)
        return open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    fd = (int)syscall(SYS_openat2, early.host_root, dir, &how, sizeof(how));
    /* Before Linux 5.6: from the host's root all the same (a link on the
     * way naming an absolute path resolves in the template's, the same
     * folders but the spare's root). */
    if (fd < 0 && errno == ENOSYS)
        fd = openat(early.host_root, dir + 1, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd;
}

/* The held folder of leftover i: the descriptor of one held already for
 * the same folder, shared (most are in the runtime folder: one path walk
 * and one descriptor, not four), else -1. */
static int held_dir_of(const struct confine_plan *p, unsigned i)
{
    for (unsigned h = 0; h < held_count; h++)
        if (strcmp(p->leftovers[held[h].planned].dir, p->leftovers[i].dir) == 0)
            return held[h].dir;
    return -1;
}

/* Whether held[i]'s folder is the first entry to hold its descriptor
 * (each is closed, or moved, once). */
static bool first_to_hold(unsigned i)
{
    for (unsigned h = 0; h < i; h++)
        if (held[h].dir == held[i].dir)
            return false;
    return true;
}

static void hold_leftovers(const struct confine_plan *p)
{
    for (unsigned i = 0; i < p->leftover_count; i++) {
        const struct confine_leftover *l = &p->leftovers[i];
        int shared = held_dir_of(p, i), dir = shared >= 0 ? shared : open_host_dir(l->dir);
        struct stat st;

        if (dir >= 0 && fstatat(dir, l->name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            held[held_count++] = (struct held_leftover){dir, l->name, st.st_dev, st.st_ino, i};
        else if (dir >= 0 && shared < 0)
            close(dir);
    }
}

/* The VMM must not keep a way out of its root. */
static void let_go_of_leftovers(void)
{
    for (unsigned i = 0; i < held_count; i++)
        if (first_to_hold(i))
            close(held[i].dir);
    held_count = 0;
}

/* The arrival (jail.h): the pipe's end each keeps (the VMM writes a byte
 * once the VM has arrived; the relay reads it, or its end as the VMM ends
 * first), and the plan's names. */
static int arrival_pipe = -1;
static const struct confine_arrival *arrival;

/* The held folder the arrival's folder is in (held[]'s index), or -1. */
static int arrival_held(void)
{
    for (unsigned i = 0; arrival_pipe >= 0 && i < held_count; i++)
        if (strcmp(held[i].name, arrival->temporary) == 0)
            return (int)i;
    return -1;
}

/* The relay, under its filter (confine_relay(): this read and rename
 * only): waits for the VMM's word, then gives the arrival's folder (held
 * as held[i], arrival_held()) its name -- never over a folder of that
 * name made meanwhile, which stays the user's. */
static void name_arrival(int i)
{
    char byte;
    ssize_t n;

    if (arrival_pipe < 0)
        return;
    while ((n = read(arrival_pipe, &byte, 1)) < 0 && errno == EINTR)
        ;
    close(arrival_pipe);
    if (n != 1 || i < 0)
        return;
    if (renameat2(held[i].dir, arrival->temporary, held[i].dir, arrival->name,
                  RENAME_NOREPLACE) == 0)
        held[i].name = arrival->name; /* the same folder: removed after if empty */
    else
        fprintf(stderr, "smolvm: the VM's folder stays '%s/%s' (%s: %s)\n", arrival->dir,
                arrival->temporary, arrival->name, strerror(errno));
}

void confine_arrived(void)
{
    if (arrival_pipe < 0)
        return;
    if (write(arrival_pipe, "", 1) != 1) {
        /* the relay is gone: the VM ends with it (PR_SET_PDEATHSIG) */
    }
    close(arrival_pipe);
    arrival_pipe = -1;
}

/* The VMM's and relay's ends of the arrival's pipe: 0, or an error. */
static int plan_arrival(const struct confine_plan *p, int ends[2])
{
    ends[0] = ends[1] = -1;
    if (!p->arrival.name)
        return 0;
    arrival = &p->arrival;
    return pipe2(ends, O_CLOEXEC) < 0 ? broken("cannot make", "the arrival's pipe") : 0;
}

static void remove_leftovers(void)
{
    for (unsigned i = 0; i < held_count; i++) {
        struct stat st;
        if (fstatat(held[i].dir, held[i].name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            st.st_dev == held[i].dev && st.st_ino == held[i].ino)
            unlinkat(held[i].dir, held[i].name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
    }
}

pid_t confine_host_pid(void)
{
    return host_pid ? host_pid : getpid();
}

static void forward(int sig)
{
    kill(vmm, sig);
}

/* The relay's and the VMM's ends of the pipe the VMM closes once its root
 * is built (root_built()): the relay waits for that before it does
 * anything that takes the CPU. */
static int root_pipe[2] = {-1, -1};

/* In the relay: waits until the VMM has closed its end (its root is built,
 * or it has ended). poll(), not read(): the relay takes no byte, nothing
 * at all from the VMM before its filter is loaded; all a VMM could do
 * with this pipe is end the wait early. */
static void wait_for_root(void)
{
    struct pollfd end = {.fd = root_pipe[0], .events = POLLIN};

    if (end.fd < 0)
        return;
    while (poll(&end, 1, -1) < 0 && errno == EINTR)
        ;
    close(end.fd);
    root_pipe[0] = -1;
}

/* In the VMM, its root built and its capabilities dropped: the relay may
 * go on (wait_for_root()). */
static void root_built(void)
{
    if (root_pipe[1] >= 0)
        close(root_pipe[1]);
    root_pipe[1] = -1;
}

_Static_assert(SECCOMP_RELAY_SLOTS >= CONFINE_MAX_LEFTOVERS, "a slot for every leftover's folder");

/* The relay's held folders moved to the numbers its build-time filter
 * names (seccomp_rules.h): it loads that program, not one libseccomp
 * builds now. Only when every one of those numbers is free -- one that
 * held another file would be in its filter's reach -- and it holds no
 * cgroup and no arrival (their filter is built); else, or where a move
 * fails, they stay where they are and its filter names them. */
static void hold_in_slots(void)
{
    struct pollfd slots[SECCOMP_RELAY_SLOTS];
    int slot = SECCOMP_RELAY_FD_BASE;

    if (cgroup_held_folder() >= 0 || arrival_pipe >= 0)
        return;
    /* Each number free: POLLNVAL (one call for them all). */
    for (int i = 0; i < SECCOMP_RELAY_SLOTS; i++)
        slots[i] = (struct pollfd){.fd = SECCOMP_RELAY_FD_BASE + i};
    if (poll(slots, SECCOMP_RELAY_SLOTS, 0) != SECCOMP_RELAY_SLOTS)
        return;
    for (int i = 0; i < SECCOMP_RELAY_SLOTS; i++)
        if (slots[i].revents != POLLNVAL)
            return;
    for (unsigned i = 0; i < held_count; i++) {
        int was = held[i].dir;
        if (!first_to_hold(i))
            continue; /* moved with the first that held it */
        if (dup3(was, slot, O_CLOEXEC) < 0)
            return;
        close(was);
        for (unsigned j = i; j < held_count; j++)
            if (held[j].dir == was)
                held[j].dir = slot;
        slot++;
    }
}

/* The held folders' descriptors, each once, in the order first held. */
static unsigned held_dirs(int dirs[CONFINE_MAX_LEFTOVERS])
{
    unsigned n = 0;

    for (unsigned i = 0; i < held_count; i++)
        if (first_to_hold(i))
            dirs[n++] = held[i].dir;
    return n;
}

/* The process that made the jail stays outside it, as the VMM's parent:
 * it passes on the signals meant for the VM (Ctrl-C reaches the VMM from
 * the terminal itself) and leaves as the VMM does. It keeps off the VMM's
 * way to its guest: right after the fork it only sets its nice (19), its
 * signal handlers, and sleeps until the VMM has built its root (a nested
 * L1 has one CPU: the relay, run first after the fork, building its filter
 * -- libseccomp, at run time: it names what it holds -- took 4-6.5 ms of
 * it before the VMM first ran, and more during its binds; jail_fork_us,
 * jail_binds_us). Then it loads its filter at nice 19 (made at build time
 * for its folders moved to fixed numbers, hold_in_slots(); built now for
 * a relay that holds a cgroup or an arrival). Not
 * SCHED_IDLE: woken (the arrival's byte, the VMM's end), it still runs
 * within a slice or so beside a busy guest. Until its filter is loaded it
 * reads nothing: no byte from the VMM (wait_for_root() polls), nothing of
 * the bundle or the guest; it is outside the jail, as it always was, and
 * the VMM has not run the guest yet when it is let go. (A spare's VMM
 * forked before its name writes one byte on that pipe, its root built:
 * jail_relay_waiting() reads it, and only whether it came.) */
static void __attribute__((noreturn)) relay(pid_t child)
{
    struct sigaction sa = {.sa_handler = forward};
    int status, dirs[CONFINE_MAX_LEFTOVERS];

    setpriority(PRIO_PROCESS, 0, 19); /* refused: as before */
    vmm = child;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGINT, SIG_IGN);
    wait_for_root();
    hold_in_slots();
    unsigned dir_count = held_dirs(dirs);
    int at = arrival_held();
    confine_relay(child, &(struct confine_relay_holds){
                             .cgroup_folder = cgroup_held_folder(),
                             .leftover_dirs = dirs,
                             .leftover_count = dir_count,
                             .arrival_pipe = arrival_pipe,
                             .arrival_dir = at >= 0 ? held[at].dir : -1,
                         });
    name_arrival(at);
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR)
            _exit(1);
    cgroup_leave(); /* the cgroup made before the jail, held open (the VMM let it go) */
    remove_leftovers();
    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
    signal(WTERMSIG(status), SIG_DFL);
    kill(getpid(), WTERMSIG(status));
    _exit(128 + WTERMSIG(status));
}

/* The plan's vmm_ahead (jail.h), on the thread ahead_begin() made. */
static void *run_ahead(void *plan)
{
    uint64_t start = trace_now_us();

    ((const struct confine_plan *)plan)->vmm_ahead();
    trace_add_count(TRACE_JAIL_AHEAD_US, trace_now_us() - start);
    return NULL;
}

/* In the VMM, just forked: the plan's vmm_ahead begun beside the root's
 * building. Without a thread for it, it runs here and now, as it would
 * have later. */
static bool ahead_begin(const struct confine_plan *p, pthread_t *thread)
{
    if (!p->vmm_ahead)
        return false;
    if (pthread_create(thread, NULL, run_ahead, (void *)p) == 0) {
        /* Its first calls now, until it sleeps: on one CPU (the nested
         * L1) it would wait for the VMM's slice to end, and what it sleeps
         * for is what the root's building should overlap. */
        sched_yield();
        return true;
    }
    run_ahead((void *)p);
    return false;
}

/* In the VMM, just forked: the plan's vmm_begin begun (jail.h), on a
 * thread that disarms itself, its bounding set emptied first; then, as
 * ahead_begin(), the CPU given to it until it sleeps. */
static void begin_disarmed(const struct confine_plan *p)
{
    uint64_t start = trace_now_us();

    drop_bounding_set();
    trace_add_count(TRACE_JAIL_CAPS_US, trace_now_us() - start);
    atomic_store(&arming, 1);
    if (!p->vmm_begin(disarm_thread))
        atomic_store(&arming, 0);
    sched_yield();
}

/* No thread of the VMM's with a capability left: plan.vmm_begin's has
 * disarmed (it mostly has, the CPU given to it as it began). */
static void wait_for_disarm(void)
{
    while (atomic_load(&arming))
        syscall(SYS_futex, &arming, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
}

/* The VMM one thread again: before it drops its capabilities, on every
 * way out of the jail's making (jail.h). */
static void ahead_end(bool begun, pthread_t thread)
{
    if (!begun)
        return;
    uint64_t start = trace_now_us();
    pthread_join(thread, NULL);
    trace_add_count(TRACE_JAIL_AHEAD_WAIT_US, trace_now_us() - start);
}

/* The VMM, forked: its root built (the plan's paths), its vmm_ahead
 * waited for (one thread again), its capabilities dropped, the relay let
 * go on, no_new_privs. 0, or an error (broken). */
static int confine_to_root(const struct confine_plan *p, bool ahead, pthread_t thread)
{
    uint64_t rooting = trace_now_us();
    int r = build_root(p);

    ahead_end(ahead, thread);
    wait_for_disarm();
    uint64_t dropping = trace_now_us();
    if (r < 0 || (r = jail_drop_capabilities()) < 0)
        return r;
    trace_add_count(TRACE_JAIL_CAPS_US, trace_now_us() - dropping);
    trace_add_count(TRACE_JAIL_ROOT_US, trace_now_us() - rooting);
    root_built();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return broken("cannot set", "no_new_privs");
    return 0;
}

/* jail_enter() failed before its fork: what it opened so far closed (the
 * arrival's pipe, ends; the root's; the leftovers' folders), r returned. */
static int unmade(int r, int ends[2])
{
    for (int i = 0; i < 2; i++) {
        if (ends[i] >= 0)
            close(ends[i]);
        if (root_pipe[i] >= 0)
            close(root_pipe[i]);
        ends[i] = root_pipe[i] = -1;
    }
    let_go_of_leftovers();
    return r;
}

/* The namespaces a template holds, in the order they are joined. Not a
 * pid namespace: the kernel lets none be joined before its first process
 * (the VMM, pid 1) is in it; a start unshares its own. */
static const int template_kinds[3] = {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWIPC};

int jail_template_make(const struct confine_plan *common, int ns[3])
{
    static const char *const names[3] = {"user", "mnt", "ipc"};
    char ok = 'n', path[64];
    int ready[2], r = 0;
    pid_t maker;

    for (int i = 0; i < 3; i++)
        ns[i] = -1;
    if (!common->root)
        return -EINVAL;
    if ((mkdir(common->root, 0700) < 0 && errno != EEXIST) || pipe2(ready, O_CLOEXEC) < 0)
        return -errno;
    fflush(NULL);
    if ((maker = fork()) < 0) {
        r = -errno;
        close(ready[0]);
        close(ready[1]);
        return r;
    }
    if (maker == 0) {
        uid_t uid = geteuid();
        gid_t gid = getegid();
        close(ready[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the spare gone: its template with it */
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC) == 0 &&
            map_ids(uid, gid) == 0 && begin_root(common, true) == 0 && fill_root_at(common, false) == 0)
            ok = 'y';
        if (write(ready[1], &ok, 1) == 1)
            pause(); /* until the spare has its namespaces: killed then */
        _exit(0);
    }
    close(ready[1]);
    while (read(ready[0], &ok, 1) < 0 && errno == EINTR)
        ;
    close(ready[0]);
    for (int i = 0; i < 3 && ok == 'y'; i++) {
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)maker, names[i]);
        if ((ns[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            ok = 'n';
    }
    kill(maker, SIGKILL);
    while (waitpid(maker, NULL, 0) < 0 && errno == EINTR)
        ;
    if (ok == 'y')
        return 0;
    for (int i = 0; i < 3; i++)
        if (ns[i] >= 0)
            close(ns[i]), ns[i] = -1;
    return -EPERM;
}

/* The template's namespaces joined (jail.h): 0; -errno when not even the
 * first was (nothing changed: the jail is made whole); past it, broken. */
/* The template's user, mount and ipc namespaces (ns) joined, in that
 * order, and a pid namespace of its own made in them (this process's
 * children are born into it). 0; -errno when the user namespace cannot be
 * joined (no message: the caller may make its jail whole); else said. */
static int enter_template(const int ns[3])
{
    for (int i = 0; i < 3; i++)
        if (setns(ns[i], template_kinds[i]) < 0)
            return i == 0 ? -errno : broken("cannot enter", "the spare's namespaces");
    if (unshare(CLONE_NEWPID) < 0)
        return broken("cannot make", "a pid namespace in the spare's");
    return 0;
}

static int join_template(const struct confine_plan *p)
{
    int r = enter_template(p->template_ns);

    for (int i = 0; i < 3; i++)
        close(p->template_ns[i]); /* a way out: neither the relay nor the VMM keeps them */
    return r;
}

/* A spare's VMM forked before its plan is made (jail.h's
 * jail_fork_ahead()): its relay makes the plan meanwhile and sends it down
 * a pipe -- the relay's own words to its child, never the other way (the
 * relay reads nothing from the VMM). The head, then the strings, each
 * ending in a NUL: the root, the paths, each link's path and target, the
 * template's paths to take out. */
struct plan_head {
    uint32_t size; /* of the strings */
    uint32_t count, link_count, drop_count;
    uint8_t writable[CONFINE_MAX_PATHS], folder[CONFINE_MAX_PATHS];
    uint8_t prebuilt; /* over the template's root (else made whole, in its namespaces) */
    uint64_t planned_us, paths; /* the relay's trace of it, for the VMM's */
};

/* len bytes from the pipe fd (util/file.h's reads are of files, at an
 * offset): 0, or -1 at its end first. */
static int read_all(int fd, void *buf, size_t len)
{
    for (char *at = buf; len > 0;) {
        ssize_t n = read(fd, at, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        at += n, len -= (size_t)n;
    }
    return 0;
}

/* The strings of p in the order plan_head says, one after another. */
static size_t plan_strings(const struct confine_plan *p, const char **out)
{
    size_t n = 0;

    out[n++] = p->root;
    for (unsigned i = 0; i < p->count; i++)
        out[n++] = p->paths[i].path;
    for (unsigned i = 0; i < p->link_count; i++)
        out[n++] = p->links[i].path, out[n++] = p->links[i].target;
    for (unsigned i = 0; i < p->template_drop_count; i++)
        out[n++] = p->template_drop[i];
    return n;
}

static int send_plan(int fd, const struct confine_plan *p, bool prebuilt)
{
    const char *strings[1 + CONFINE_MAX_PATHS + 2 * CONFINE_MAX_LINKS + CONFINE_MAX_PATHS];
    size_t n = plan_strings(p, strings), size = 0;
    struct plan_head head = {.count = p->count,
                             .link_count = p->link_count,
                             .drop_count = p->template_drop_count,
                             .prebuilt = prebuilt,
                             .planned_us = trace_count(TRACE_JAIL_PLAN_US),
                             .paths = trace_count(TRACE_JAIL_PATHS)};

    for (size_t i = 0; i < n; i++)
        size += strlen(strings[i]) + 1;
    head.size = (uint32_t)size;
    for (unsigned i = 0; i < p->count; i++)
        head.writable[i] = p->paths[i].writable, head.folder[i] = p->paths[i].folder;
    if (file_write_all(fd, &head, sizeof(head), "the VMM's plan") < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (file_write_all(fd, strings[i], strlen(strings[i]) + 1, "the VMM's plan") < 0)
            return -1;
    return 0;
}

/* The next string of buf (at *at, below end), or NULL. */
static char *next_string(char *buf, size_t *at, size_t end)
{
    char *s = buf + *at, *nul = *at < end ? memchr(s, '\0', end - *at) : NULL;

    if (!nul)
        return NULL;
    *at += (size_t)(nul - s) + 1;
    return s;
}

/* The plan the relay sent (send_plan()), into p; its strings point into
 * one buffer (*buf, the caller's to free). 0, or -1. */
static int receive_plan(int fd, struct confine_plan *p, char **buf, bool *prebuilt)
{
    struct plan_head head;
    size_t at = 0;
    char *s = NULL;

    if (read_all(fd, &head, sizeof(head)) < 0 || head.count > CONFINE_MAX_PATHS ||
        head.link_count > CONFINE_MAX_LINKS || head.drop_count > CONFINE_MAX_PATHS ||
        head.size > (1u << 20) || !(*buf = malloc(head.size ? head.size : 1)) ||
        read_all(fd, *buf, head.size) < 0 || !(p->root = next_string(*buf, &at, head.size)))
        return -1;
    for (unsigned i = 0; i < head.count; i++, p->count++)
        if (!(s = next_string(*buf, &at, head.size)))
            return -1;
        else
            p->paths[i] = (struct confine_path){s, head.writable[i], head.folder[i]};
    for (unsigned i = 0; i < head.link_count; i++, p->link_count++)
        if (!(p->links[i].path = next_string(*buf, &at, head.size)) ||
            !(p->links[i].target = next_string(*buf, &at, head.size)))
            return -1;
    for (unsigned i = 0; i < head.drop_count; i++, p->template_drop_count++)
        if (!(p->template_drop[i] = next_string(*buf, &at, head.size)))
            return -1;
    *prebuilt = head.prebuilt;
    trace_add_count(TRACE_JAIL_PLAN_US, head.planned_us);
    trace_add_count(TRACE_JAIL_PATHS, head.paths);
    return 0;
}

/* The VMM forked ahead: its VM begun on a thread, its plan awaited, then
 * its root built and its capabilities dropped, as jail_enter()'s child.
 * 1, or an error. */
static int vmm_forked_ahead(int plan_up, int begun, void (*vmm_ahead)(void), uint64_t began)
{
    static struct confine_plan ahead_plan, plan;
    char self[32] = "", *strings = NULL;
    bool prebuilt = false;
    pthread_t thread;
    int r;

    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the relay gone: the VM with it */
    trace_add_count(TRACE_JAIL_FORK_US, trace_now_us() - began);
    ahead_plan.vmm_ahead = vmm_ahead;
    bool ahead = ahead_begin(&ahead_plan, &thread);
    close(begun); /* the relay may make the plan now */
    if (readlink("/proc/self", self, sizeof(self) - 1) > 0)
        host_pid = (pid_t)atoi(self);
    uint64_t waiting = trace_now_us();
    r = receive_plan(plan_up, &plan, &strings, &prebuilt);
    close(plan_up);
    trace_add_count(TRACE_JAIL_PLAN_WAIT_US, trace_now_us() - waiting);
    if (r < 0) { /* the relay failed its plan, and says why */
        ahead_end(ahead, thread);
        _exit(1);
    }
    root_prebuilt = prebuilt;
    r = confine_to_root(&plan, ahead, thread);
    free(strings); /* the plan's names: the mounts are made */
    trace_add_count(TRACE_JAIL_ENTER_US, trace_now_us() - began);
    return r < 0 ? r : 1;
}

int jail_fork_ahead(const int ns[3], void (*vmm_ahead)(void))
{
    uint64_t began = trace_now_us();
    int down[2] = {-1, -1}, begun[2] = {-1, -1}, r;
    pid_t child = -1;

    early.host_root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (early.host_root < 0)
        return -errno;
    r = enter_template(ns);
    trace_add_count(TRACE_JAIL_UNSHARE_CALL_US, trace_now_us() - began);
    trace_add_count(TRACE_JAIL_UNSHARE_US, trace_now_us() - began);
    if (r == 0 && (pipe2(down, O_CLOEXEC) < 0 || pipe2(root_pipe, O_CLOEXEC) < 0 ||
                   pipe2(begun, O_CLOEXEC) < 0))
        r = broken("cannot make", "the VMM's pipes");
    fflush(NULL);
    if (r == 0 && (child = fork()) < 0)
        r = broken("cannot fork", "into its pid namespace");
    if (r < 0) {
        close(early.host_root), early.host_root = -1;
        unmade(0, down);
        unmade(0, begun);
        return r;
    }
    close(root_pipe[child > 0 ? 1 : 0]);
    root_pipe[child > 0 ? 1 : 0] = -1;
    if (child > 0) {
        close(down[0]);
        close(begun[1]);
        /* The VMM's VM begun (its thread asleep in KVM_CREATE_VM) before
         * this process takes the CPU for the plan: run first, the plan
         * left nothing for the VM to overlap (one CPU, a nested L1). Its
         * end closed, not a byte read: the relay reads nothing of the
         * VMM's (relay()). */
        struct pollfd end = {.fd = begun[0], .events = POLLIN};
        while (poll(&end, 1, -1) < 0 && errno == EINTR)
            ;
        close(begun[0]);
        early = (typeof(early)){early.host_root, down[1], child, true};
        return 0;
    }
    /* The VMM keeps no way out: the host's root, the namespaces' fds. */
    close(down[1]);
    close(begun[0]);
    close(early.host_root), early.host_root = -1;
    for (int i = 0; i < 3; i++)
        close(ns[i]);
    return vmm_forked_ahead(down[0], begun[1], vmm_ahead, began);
}

/* The relay of a VMM forked ahead, its plan made: it holds the plan's
 * leftovers (as the host sees them), sends the VMM the plan, and relays. */
static int relay_forked_ahead(const struct confine_plan *p)
{
    bool prebuilt = p->template_ns[0] > 0;
    int r;

    if (prebuilt)
        for (int i = 0; i < 3; i++)
            close(p->template_ns[i]); /* joined ahead */
    /* Its mount point, made before the leftovers are held (jail_enter()). */
    if (!prebuilt && mkdir(p->root, 0700) < 0 && errno != EEXIST)
        return unmade(broken("cannot make", p->root), (int[2]){early.plan_down, -1});
    hold_leftovers(p);
    close(early.host_root), early.host_root = -1;
    /* A VMM gone before its plan is an error said here, not a SIGPIPE
     * that ends this process before it removes what the start made. */
    void (*was)(int) = signal(SIGPIPE, SIG_IGN);
    r = send_plan(early.plan_down, p, prebuilt);
    signal(SIGPIPE, was);
    close(early.plan_down), early.plan_down = -1;
    if (r < 0)
        return unmade(broken("cannot send", "the VMM its plan"), (int[2]){-1, -1});
    relay(early.vmm);
}

/* The VMM is pid 1 of a pid namespace of its own: it forks into it here,
 * before any thread (KVM's VM, made later, belongs to the process that
 * makes it). Returns in the child; the parent never returns (relay()). */
int jail_enter(const struct confine_plan *p)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID;
    char self[32] = "";
    pid_t child;
    int r, ends[2];

    if (early.forked)
        return relay_forked_ahead(p);
    if (!p->root)
        return -EINVAL;
    uint64_t unsharing = trace_now_us();
    root_prebuilt = false;
    /* A template's root is held as the host sees it, before joining: in
     * its mount namespace, the template's tmpfs is on it. */
    if (p->template_ns[0] > 0 && !p->new_net) {
        hold_leftovers(p);
        uint64_t joining = trace_now_us();
        r = join_template(p);
        trace_add_count(TRACE_JAIL_UNSHARE_CALL_US, trace_now_us() - joining);
        if (r == -ENOTRECOVERABLE)
            return unmade(r, (int[2]){-1, -1});
        root_prebuilt = r == 0;
        if (!root_prebuilt)
            let_go_of_leftovers();
    }
    uint64_t calling = trace_now_us();
    if (!root_prebuilt && unshare(flags | (p->new_net ? CLONE_NEWNET : 0)) < 0)
        return -errno; /* not here: nothing changed */
    if (!root_prebuilt)
        trace_add_count(TRACE_JAIL_UNSHARE_CALL_US, trace_now_us() - calling);
    if ((!root_prebuilt && (r = map_ids(uid, gid)) < 0) || (r = plan_arrival(p, ends)) < 0)
        return unmade(r, (int[2]){-1, -1});
    trace_add_count(TRACE_JAIL_UNSHARE_US, trace_now_us() - unsharing);
    /* The root's mount point, made before the relay holds the leftovers:
     * it is one (jail.h), removed by the relay once the VM has ended. Its
     * rmdir after pivot_root took 3-109 ms on a VM's way to its guest (a
     * host strace of test_jail: mean 25 ms, waiting for the file system,
     * not the CPU). */
    if (!root_prebuilt && mkdir(p->root, 0700) < 0 && errno != EEXIST)
        return unmade(broken("cannot make", p->root), ends);
    if (!root_prebuilt)
        hold_leftovers(p);
    if (pipe2(root_pipe, O_CLOEXEC) < 0)
        return unmade(broken("cannot make", "the root's pipe"), ends);
    fflush(NULL);
    uint64_t forking = trace_now_us();
    if ((child = fork()) < 0)
        return unmade(broken("cannot fork", "into its pid namespace"), ends);
    arrival_pipe = child > 0 ? ends[0] : ends[1];
    if (ends[0] >= 0)
        close(child > 0 ? ends[1] : ends[0]);
    close(root_pipe[child > 0 ? 1 : 0]);
    root_pipe[child > 0 ? 1 : 0] = -1;
    if (child > 0)
        relay(child);
    trace_add_count(TRACE_JAIL_FORK_US, trace_now_us() - forking);
    pthread_t thread = 0; /* read only when ahead_begin() made it */
    bool ahead = !p->vmm_begin && ahead_begin(p, &thread);
    if (p->vmm_begin)
        begin_disarmed(p);
    let_go_of_leftovers();
    if (p->arrival.name)
        close(p->arrival.lock_fd); /* a way out of its root: the relay holds the lock */
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the relay killed: the VM with it */
    cgroup_forget(); /* its limits stay its own: the relay leaves the cgroup after it */
    /* The host's /proc, still there, names this process as the host sees it. */
    if (readlink("/proc/self", self, sizeof(self) - 1) > 0)
        host_pid = (pid_t)atoi(self);
    return confine_to_root(p, ahead, thread);
}

int jail_fork_waiting(const int ns[3])
{
    int r;
    pid_t child = -1;

    early.host_root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (early.host_root < 0)
        return -errno;
    r = enter_template(ns);
    if (r == 0 && pipe2(root_pipe, O_CLOEXEC) < 0)
        r = broken("cannot make", "the root's pipe");
    fflush(NULL);
    if (r == 0 && (child = fork()) < 0)
        r = broken("cannot fork", "into its pid namespace");
    for (int i = 0; i < 3; i++)
        close(ns[i]); /* a way out: neither the relay nor the VMM keeps them */
    if (r < 0) {
        close(early.host_root), early.host_root = -1;
        return unmade(r, (int[2]){-1, -1});
    }
    close(root_pipe[child > 0 ? 1 : 0]);
    root_pipe[child > 0 ? 1 : 0] = -1;
    if (child > 0) {
        early.vmm = child;
        return 0;
    }
    /* The VMM keeps no way out: the host's root. */
    close(early.host_root), early.host_root = -1;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the relay gone: the VMM with it */
    char self[32] = "";
    if (readlink("/proc/self", self, sizeof(self) - 1) > 0)
        host_pid = (pid_t)atoi(self);
    waiting_vmm = true;
    return 1;
}

int jail_confine_waited(const struct confine_plan *p)
{
    if (!waiting_vmm)
        return -EINVAL;
    root_prebuilt = p->template_ns[0] > 0;
    if (!root_prebuilt && mkdir(p->root, 0700) < 0 && errno != EEXIST)
        return broken("cannot make", p->root);
    /* Its names are its own from here (its socket made, its root's
     * mount point): the relay holds them now, so a root that cannot be
     * built leaves none behind (review 46), and goes on once the root is
     * (root_built() closes the pipe). */
    if (write(root_pipe[1], "", 1) != 1) {
        /* the relay is gone: so is this VMM (PR_SET_PDEATHSIG) */
    }
    return confine_to_root(p, false, (pthread_t){0});
}

void jail_relay_waiting(const struct confine_plan *p)
{
    char built;
    ssize_t n;
    int status;

    /* Off the VMM's way from here, as relay() is: woken by its byte at
     * nice 0, this process took the one CPU of the nested L1 from the VMM
     * (jail_enter_us 3-5.5 ms of which jail_root_us 2). */
    setpriority(PRIO_PROCESS, 0, 19); /* refused: as before */
    /* Nothing held before the VMM begins its root: one that failed
     * first (its name taken: another VM's socket) ended, and what it
     * named is not its own to remove. Its byte (jail_confine_waited()),
     * or the pipe's end: nothing else is read, and it comes before the
     * VMM has read anything a bundle or guest controls. relay() then
     * waits for the root as ever (the pipe's end, root_built()). */
    while ((n = read(root_pipe[0], &built, 1)) < 0 && errno == EINTR)
        ;
    if (n != 1) {
        close(root_pipe[0]), root_pipe[0] = -1;
        while (waitpid(early.vmm, &status, 0) < 0 && errno == EINTR)
            ;
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
    }
    hold_leftovers(p);
    close(early.host_root), early.host_root = -1;
    relay(early.vmm);
}
