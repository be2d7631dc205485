#include "machine/instance.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/disk.h"
#include "machine/machine.h"
#include "store/store.h"
#include "util/err.h"
#include "util/file.h"
#include "util/paths.h"

/* NAME's folder under the root (malloc'd), or NULL. */
static char *instance_path(const char *name)
{
    char *dir = paths_instances_dir(), *path = NULL;
    if (dir && asprintf(&path, "%s/%s", dir, name) < 0)
        path = NULL;
    free(dir);
    return path;
}

int instance_dir(const char *name, char **out)
{
    char *path = instance_path(name);
    int r;

    if (!path)
        return err_plain(ENOENT, "no folder for instances (set HOME or XDG_DATA_HOME)");
    r = paths_mkdirs(path);
    if (r < 0) {
        r = err_set(-r, "cannot create '%s'", path);
        free(path);
        return r;
    }
    *out = path;
    return 0;
}

void instance_dir_remove_unnamed(const char *name)
{
    char *path = instance_path(name), *store = NULL;

    if (path && asprintf(&store, "%s/instance.json", path) >= 0 && access(store, F_OK) < 0 &&
        access(path, F_OK) == 0)
        file_remove_tree(path);
    free(store);
    free(path);
}

#define RECEIVING ".receiving-"

/* .NAME.receiving-PID's PID, or 0 when name is not one. */
static pid_t receiving_pid(const char *name)
{
    const char *mark = name[0] == '.' ? strstr(name, RECEIVING) : NULL;
    char *end;
    long pid;

    if (!mark || mark == name + 1)
        return 0;
    while (strstr(mark + 1, RECEIVING))
        mark = strstr(mark + 1, RECEIVING); /* NAME may hold the mark too */
    pid = strtol(mark + strlen(RECEIVING), &end, 10);
    return *end == '\0' && pid > 0 && pid <= INT_MAX ? (pid_t)pid : 0;
}

/* Whether a receiver still holds the folder dir/name: its process is
 * there (kill() would reach it: between its mkdir and its lock), or the
 * lock is taken (a receiver in another pid namespace). This process's own
 * pid is a gone receiver's reused when the lock is free. */
static bool receiving_held(int dir, const char *name, pid_t pid)
{
    int fd;
    bool held;

    if (pid != getpid() && (kill(pid, 0) == 0 || errno != ESRCH))
        return true;
    fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return true; /* not a folder of ours to judge */
    held = flock(fd, LOCK_EX | LOCK_NB) < 0;
    close(fd);
    return held;
}

void instance_receiving_sweep(const char *instances)
{
    DIR *d = opendir(instances);
    struct dirent *e;
    char *path;
    pid_t pid;

    while (d && (e = readdir(d))) {
        if (!(pid = receiving_pid(e->d_name)) || receiving_held(dirfd(d), e->d_name, pid))
            continue;
        if (asprintf(&path, "%s/%s", instances, e->d_name) >= 0) {
            file_remove_tree(path);
            free(path);
        }
    }
    if (d)
        closedir(d);
}

int instance_receiving_make(const char *name, struct instance_receiving *out)
{
    char *instances = paths_instances_dir(), *temporary = NULL, *path = NULL;
    struct stat st;
    int r = instances ? paths_mkdirs(instances) : -ENOENT, fd = -1;

    *out = (struct instance_receiving){.lock_fd = -1};
    if (r < 0) {
        free(instances);
        return err_plain(-r, "no folder for instances (set HOME or XDG_DATA_HOME)");
    }
    instance_receiving_sweep(instances);
    if (asprintf(&path, "%s/%s", instances, name) < 0)
        path = NULL;
    if (path && stat(path, &st) == 0) {
        out->instances = instances; /* there already: the VM's, as it is */
        free(path);
        return 0;
    }
    free(path);
    path = NULL;
    if (asprintf(&temporary, "." "%s" RECEIVING "%d", name, (int)getpid()) < 0 ||
        asprintf(&path, "%s/%s", instances, temporary) < 0)
        r = err_set(ENOMEM, "instance folder");
    else if (mkdir(path, 0700) < 0)
        r = err_set(errno, "cannot create '%s'", path);
    else if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
             flock(fd, LOCK_EX) < 0)
        r = err_set(errno, "cannot lock '%s'", path), rmdir(path);
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        free(temporary);
        free(instances);
    } else {
        *out = (struct instance_receiving){instances, temporary, fd};
    }
    free(path);
    return r;
}

void instance_receiving_remove(struct instance_receiving *r)
{
    char *path = NULL;

    if (r->temporary && asprintf(&path, "%s/%s", r->instances, r->temporary) >= 0)
        rmdir(path);
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    free(path);
    free(r->temporary);
    free(r->instances);
    *r = (struct instance_receiving){.lock_fd = -1};
}

int instance_overlay_at(const char *path, const char *base, const char *base_format)
{
    struct disk *b;
    int r;

    unlink(path);
    r = disk_open_as(base, DISK_READ_ONLY, base_format, &b);
    if (r == 0) {
        struct disk_create_options o = {.size = b->size, .backing = base,
                                        .backing_format = base_format};
        disk_close(b);
        r = disk_create("qcow2", path, &o);
    }
    return r;
}

int machine_instance_overlay(const char *name, const char *file, const char *base,
                             const char *base_format, char **out)
{
    char *dir, *path = NULL;
    int r = instance_dir(name, &dir);

    if (r < 0)
        return r;
    if (asprintf(&path, "%s/%s", dir, file) < 0)
        r = err_set(ENOMEM, "%s", file);
    free(dir);
    if (r == 0)
        r = instance_overlay_at(path, base, base_format);
    if (r < 0) {
        free(path);
        return r;
    }
    *out = path;
    return 0;
}

/* The name a spare was told (instance_name_told()), or NULL. */
static const char *told_name;

void instance_name_told(const char *name)
{
    told_name = name;
}

bool instance_named(const char *what)
{
    struct stat st;
    if (told_name && strcmp(what, told_name) == 0)
        return true;
    /* The '/' first: a path is never a name, and needs no path walk (a
     * jailed start asks five times of its bundle). */
    return !strchr(what, '/') && stat(what, &st) < 0;
}

/* ---- instances of the store ---- */

/* i's boot settings and delta into cfg (strings stay i's). */
static int instance_boot_config(const char *name, const struct instance *i, struct vm_config *cfg)
{
    if (!i->boot.kernel)
        return err_plain(EINVAL, "instance '%s' has no kernel (create it with --kernel)", name);
    cfg->kernel_path = i->boot.kernel;
    cfg->initrd_path = i->boot.initrd;
    if (i->boot.cmdline)
        cfg->cmdline = i->boot.cmdline;
    if (i->boot.cpus)
        cfg->cpus = i->boot.cpus;
    if (i->boot.mem_bytes)
        cfg->mem_bytes = i->boot.mem_bytes;
    cfg->discovery = i->boot.discovery;
    cfg->disks[0] = (struct vm_disk_config){.path = i->delta, .format = "qcow2"};
    cfg->disk_count = 1;
    /* create --share: the folders a start maps by default (--share remaps). */
    for (unsigned k = 0; k < i->boot.share_count; k++)
        cfg->shares[k] = i->boot.shares[k];
    cfg->share_count = i->boot.share_count;
    cfg->net = i->boot.net; /* create's --net, or its default */
    return 0;
}

static int read_instance(const char *name, struct instance *i)
{
    struct store *s;
    int r = store_open(&s);

    if (r < 0)
        return r;
    r = store_instance(s, name, i);
    store_close(s);
    return r;
}

/* The started instance: the VM's config points into it for the VM's life
 * (one VM a process), so it is kept reachable here. */
static struct instance *volatile kept_instance; /* volatile: a store the optimiser keeps */

int machine_instance_config(const char *name, struct vm_config *cfg, const char **resume,
                        bool *resume_shared)
{
    struct instance *i = calloc(1, sizeof(*i));
    int r = i ? read_instance(name, i) : -ENOMEM;

    if (r == 0 && (r = instance_boot_config(name, i, cfg)) < 0)
        store_instance_release(i);
    if (r < 0) {
        free(i);
        return r;
    }
    kept_instance = i;
    *resume = i->resume;
    *resume_shared = i->resume_pristine;
    return 0;
}

int machine_instance_each_share(const char *name,
                                int (*add)(void *ctx, const struct vm_share_config *share),
                                void *ctx)
{
    struct instance i = {0};
    int r = read_instance(name, &i);

    for (unsigned k = 0; r == 0 && k < i.boot.share_count; k++)
        r = add(ctx, &i.boot.shares[k]);
    store_instance_release(&i);
    return r;
}

/* Re-entrant and leaving nothing behind: smolvm serve exports on
 * several threads. */
int machine_instance_export(const char *name, const char *path, bool flatten, const char *sign_key)
{
    struct vm_config cfg;
    struct instance i = {0};
    int r = read_instance(name, &i);

    vm_config_defaults(&cfg);
    if (r == 0)
        r = instance_boot_config(name, &i, &cfg);
    if (r == 0)
        r = machine_export(&cfg, i.resume, path, flatten, sign_key);
    store_instance_release(&i);
    return r;
}

/* The instance's store, for one call. */
static int with_store(const char *name, int (*op)(struct store *, const char *, char **),
                      char **out)
{
    struct store *s;
    int r = store_open(&s);
    if (r == 0)
        r = op(s, name, out);
    store_close(s);
    return r;
}

static int resumed(struct store *s, const char *name, char **unused)
{
    (void)unused;
    return store_resumed(s, name);
}

static int suspended(struct store *s, const char *name, char **unused)
{
    (void)unused;
    return store_suspended(s, name);
}

int machine_instance_suspend_path(const char *name, char **path)
{
    return with_store(name, store_suspend_path, path);
}

int machine_instance_suspended(const char *name)
{
    return with_store(name, suspended, NULL);
}

int machine_instance_resumed(const char *name)
{
    return with_store(name, resumed, NULL);
}
