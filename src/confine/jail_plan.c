/* The plan (jail.h), and choosing the confinement a host allows. */
#include "confine/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/err.h"

static const char *description = "none";

/* Whether an absolute name has a '.', '..' or empty part: made again
 * under the root as typed, "/a/../../x" would climb out of it. */
static bool has_dot_or_empty_part(const char *path)
{
    for (const char *part = path + 1;; ) {
        size_t len = strcspn(part, "/");
        bool last = part[len] == '\0';

        if ((len == 0 && !last) || (len == 1 && part[0] == '.') ||
            (len == 2 && part[0] == '.' && part[1] == '.'))
            return true;
        if (last)
            return false;
        part += len + 1;
    }
}

static int add_link(struct confine_plan *p, const char *path)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof(target) - 1);

    if (n <= 0 || path[0] != '/')
        return 0; /* a relative name: what it resolves to is enough */
    if (has_dot_or_empty_part(path))
        return err_plain(EINVAL,
                         "--jail: '%s' names a link through '.', '..' or '//': give its path "
                         "without them",
                         path);
    target[n] = '\0';
    if (p->link_count == CONFINE_MAX_LINKS)
        return err_plain(E2BIG, "--jail: more than %d links to make", CONFINE_MAX_LINKS);
    p->links[p->link_count].path = strdup(path);
    p->links[p->link_count].target = strdup(target);
    if (!p->links[p->link_count].path || !p->links[p->link_count].target)
        return err_set(ENOMEM, "--jail");
    p->link_count++;
    return 0;
}

/* Whether path is absolute and written as realpath() would write it
 * (no '.', '..', empty part, nor a '/' at its end): with no link on its
 * way either, it is its own real path. */
static bool canonical(const char *path)
{
    size_t n = strlen(path);
    return path[0] == '/' && (n == 1 || (path[n - 1] != '/' && !has_dot_or_empty_part(path)));
}

/* An open (O_PATH) of path that follows no link on its way: -1 where one
 * is there (ELOOP), or openat2 is not (before Linux 5.6: ENOSYS). */
static int open_linkless(const char *path)
{
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_SYMLINKS};
    return (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
}

/* /proc's name of what fd opened (its path as this process sees it). */
static bool named_by_proc(int fd, char real[PATH_MAX])
{
    char link[32];
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, real, PATH_MAX - 1);
    if (n <= 0 || n >= PATH_MAX - 1 || real[0] != '/')
        return false;
    real[n] = '\0';
    return true;
}

/* realpath()'s answer, and what it names (*st, followed), from one open
 * (a jailed start plans ~20 paths; each call is costly in a TCG L1): the
 * kernel resolves the path once, fstat() says what that is without
 * walking the path again. A canonical name (most of a plan's: its own
 * folders, the caches, the devices) opened through no link is its own
 * real path; another is named by /proc as it was opened (a second path
 * walk, in /proc), or by realpath() itself where /proc does not say. */
static bool resolve(const char *path, char real[PATH_MAX], struct stat *st)
{
    bool as_written = strlen(path) < PATH_MAX && canonical(path);
    int fd = as_written ? open_linkless(path) : -1;
    bool named = fd >= 0;

    if (named)
        strcpy(real, path);
    else if (as_written && (errno == ENOENT || errno == ENOTDIR || errno == EACCES))
        return false; /* met before any link: open() would meet it too */
    else if ((fd = open(path, O_PATH | O_CLOEXEC)) < 0)
        return false;
    else
        named = named_by_proc(fd, real);
    named = fstat(fd, st) == 0 && (named || realpath(path, real) != NULL);
    close(fd);
    return named;
}

int confine_plan_add(struct confine_plan *p, const char *path, bool writable)
{
    char real[PATH_MAX];
    struct stat st;
    int r;

    if (!path || !resolve(path, real, &st))
        return 0; /* nothing there: nothing the VMM can need */
    /* A name the kernel resolved to another may end in a link (/lib, to
     * usr/lib), made again in the root (add_link() reads it: not a link,
     * as /lib/x of /usr/lib/x, it adds none). A name that is its own real
     * path has no link in it: no call for it (no lstat(), no stat() of
     * what a link names: st is what was opened). */
    if (strcmp(path, real) != 0 && strcmp(path, "/proc/self") != 0 &&
        (r = add_link(p, path)) < 0)
        return r;
    for (unsigned i = 0; i < p->count; i++)
        if (strcmp(p->paths[i].path, real) == 0) {
            p->paths[i].writable |= writable;
            return 0;
        }
    if (p->count == CONFINE_MAX_PATHS)
        return err_plain(E2BIG, "--jail: more than %d files and folders to let in",
                         CONFINE_MAX_PATHS);
    if (!(p->paths[p->count].path = strdup(real)))
        return err_set(ENOMEM, "--jail");
    /* What it is, known now: the jail makes its mount point without
     * looking again (one call fewer for each path, bench jail_bench). */
    p->paths[p->count].folder = S_ISDIR(st.st_mode);
    p->paths[p->count++].writable = writable;
    return 0;
}

/* One path of another plan, as it was resolved there (no call made). */
static int merge_path(struct confine_plan *to, const struct confine_path *path)
{
    for (unsigned i = 0; i < to->count; i++)
        if (strcmp(to->paths[i].path, path->path) == 0) {
            to->paths[i].writable |= path->writable;
            return 0;
        }
    if (to->count == CONFINE_MAX_PATHS)
        return err_plain(E2BIG, "--jail: more than %d files and folders to let in",
                         CONFINE_MAX_PATHS);
    if (!(to->paths[to->count].path = strdup(path->path)))
        return err_set(ENOMEM, "--jail");
    to->paths[to->count].folder = path->folder;
    to->paths[to->count++].writable = path->writable;
    return 0;
}

int confine_plan_merge(struct confine_plan *to, const struct confine_plan *from)
{
    int r = 0;

    for (unsigned i = 0; i < from->link_count && r == 0; i++) {
        struct confine_link *l = &to->links[to->link_count];
        if (to->link_count == CONFINE_MAX_LINKS)
            return err_plain(E2BIG, "--jail: more than %d links to make", CONFINE_MAX_LINKS);
        l->path = strdup(from->links[i].path);
        l->target = strdup(from->links[i].target);
        if (!l->path || !l->target) {
            free(l->path);
            free(l->target);
            *l = (struct confine_link){0};
            return err_set(ENOMEM, "--jail");
        }
        to->link_count++;
    }
    for (unsigned i = 0; i < from->count && r == 0; i++)
        r = merge_path(to, &from->paths[i]);
    return r;
}

int confine_plan_leftover(struct confine_plan *p, const char *dir, const char *name)
{
    struct confine_leftover *l = &p->leftovers[p->leftover_count];

    /* One name asked for twice (an instance folder is both the start's
     * own and the store's) is removed once: a slot each would run out. */
    for (unsigned i = 0; i < p->leftover_count; i++)
        if (strcmp(p->leftovers[i].dir, dir) == 0 && strcmp(p->leftovers[i].name, name) == 0)
            return 0;
    if (p->leftover_count == CONFINE_MAX_LEFTOVERS)
        return err_plain(E2BIG, "--jail: more than %d names to remove after",
                         CONFINE_MAX_LEFTOVERS);
    if (!(l->dir = strdup(dir)) || !(l->name = strdup(name))) {
        free(l->dir);
        return err_set(ENOMEM, "--jail");
    }
    p->leftover_count++;
    return 0;
}

int confine_plan_arrival(struct confine_plan *p, const char *dir, const char *temporary,
                         const char *name, int lock_fd)
{
    struct confine_arrival *a = &p->arrival;

    if (!(a->dir = strdup(dir)) || !(a->temporary = strdup(temporary)) ||
        !(a->name = strdup(name))) {
        free(a->dir);
        free(a->temporary);
        *a = (struct confine_arrival){0};
        return err_set(ENOMEM, "--jail");
    }
    a->lock_fd = lock_fd;
    return confine_plan_leftover(p, dir, temporary);
}

void confine_plan_release(struct confine_plan *p)
{
    for (unsigned i = 0; i < p->count; i++)
        free(p->paths[i].path);
    for (unsigned i = 0; i < p->leftover_count; i++) {
        free(p->leftovers[i].dir);
        free(p->leftovers[i].name);
    }
    for (unsigned i = 0; i < p->link_count; i++) {
        free(p->links[i].path);
        free(p->links[i].target);
    }
    for (unsigned i = 0; i < p->template_drop_count; i++)
        free(p->template_drop[i]);
    free(p->arrival.dir);
    free(p->arrival.temporary);
    free(p->arrival.name);
    free(p->root);
    memset(p, 0, sizeof(*p));
}

/* The host lacks the mechanism or forbids it to this user: nothing was
 * changed, the next one may do. */
static bool unavailable(int r)
{
    return r == -EPERM || r == -ENOSYS || r == -EINVAL || r == -EOPNOTSUPP || r == -ENOSPC ||
           r == -EACCES;
}

/* Where no process stays outside to rename it later (landlock, none):
 * the arrival's folder takes its name now. */
static int arrive_at_once(const struct confine_arrival *a)
{
    char *from = NULL, *to = NULL;
    int r = 0;

    if (!a->name)
        return 0;
    if (asprintf(&from, "%s/%s", a->dir, a->temporary) < 0 ||
        asprintf(&to, "%s/%s", a->dir, a->name) < 0)
        r = err_set(ENOMEM, "--jail");
    else if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) < 0)
        r = err_set(errno, "--jail: cannot name '%s' '%s'", from, to);
    free(from);
    free(to);
    return r;
}

int confine_enter(const struct confine_plan *p, enum confine_kind *got)
{
    int r = jail_enter(p);

    *got = CONFINE_JAIL;
    if (r == 0) {
        description = p->new_net ? "jail (user, mount, pid, ipc, net ns)"
                                 : "jail (user, mount, pid, ipc ns)";
        return 0;
    }
    if (!unavailable(r))
        return r;
    err_clear();
    if ((r = arrive_at_once(&p->arrival)) < 0)
        return r;
    *got = CONFINE_LANDLOCK;
    r = landlock_enter(p);
    if (r == 0) {
        description = "landlock";
        return 0;
    }
    if (!unavailable(r))
        return r;
    err_clear();
    *got = CONFINE_NONE;
    description = "none";
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return err_set(errno, "--jail: no_new_privs");
    return 0;
}

int confine_fork_ahead(const int ns[3], void (*vmm_ahead)(void))
{
    int r = jail_fork_ahead(ns, vmm_ahead);

    if (r == 1)
        description = "jail (user, mount, pid, ipc ns)";
    return r;
}

int confine_waited(const struct confine_plan *p)
{
    int r = jail_confine_waited(p);

    if (r == 0)
        description = "jail (user, mount, pid, ipc ns)";
    return r;
}

const char *confine_description(void)
{
    return description;
}

#ifdef SMOLVM_TEST_HOOKS
/* One probe: a name ending in "sock" is connected to (another VM's
 * control or vsock socket: opening one would fail even where it could be
 * reached), one ending in '/' is a folder to make a file in (the
 * cache's, the store's root), anything else is opened to read. 0 or -errno. */
static int probe_one(const char *path)
{
    size_t n = strlen(path);
    char made[PATH_MAX];
    int fd;

    if (n > 4 && strcmp(path + n - 4, "sock") == 0) {
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    } else if (n > 0 && path[n - 1] == '/') {
        snprintf(made, sizeof(made), "%sconfine-probe-%d", path, (int)getpid());
        fd = open(made, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            unlink(made);
    } else {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}
#endif

void confine_probe(void)
{
#ifdef SMOLVM_TEST_HOOKS
    const char *list = getenv("SMOLVM_TEST_JAIL_PROBE");
    char *copy = list ? strdup(list) : NULL, *save = NULL;

    for (char *path = copy ? strtok_r(copy, ":", &save) : NULL; path;
         path = strtok_r(NULL, ":", &save)) {
        int r = probe_one(path);
        if (r == 0)
            fprintf(stderr, "confine probe: %s: opened\n", path);
        else
            fprintf(stderr, "confine probe: %s: denied (%s)\n", path, strerror(-r));
    }
    free(copy);
#endif
}
