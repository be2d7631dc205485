/* cgroup v2 limits (cgroup.h). */
#include "confine/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "util/err.h"

int cgroup_own_path(const char *text, char *out, size_t size)
{
    const char *line = text;

    while (line && strncmp(line, "0::", 3) != 0)
        line = (line = strchr(line, '\n')) ? line + 1 : NULL;
    if (!line || line[3] != '/')
        return -ENOENT;
    line += 3;
    size_t len = strcspn(line, "\n");
    if (len >= size)
        return -ENAMETOOLONG;
    memcpy(out, line, len);
    out[len] = '\0';
    return 0;
}

void cgroup_cpu_max(uint64_t cpu_quota_milli, char *out, size_t size)
{
    snprintf(out, size, "%" PRIu64 " %d", cpu_quota_milli * (CGROUP_PERIOD_US / 1000),
             CGROUP_PERIOD_US);
}

static int read_text(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, size - 1);

    if (fd >= 0)
        close(fd);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

static int write_in(const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX];
    int fd, r = 0;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
        return err_plain(ENAMETOOLONG, "cgroup: %s: path too long", dir);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        r = err_set(errno, "cgroup: cannot write '%s' to %s", text, path);
    if (fd >= 0)
        close(fd);
    return r;
}

/* The controllers must be enabled for dir's children. */
static bool delegates(const char *dir)
{
    static const char *const needed[] = {"cpu", "memory", "pids"};
    char path[PATH_MAX], list[256];

    if ((size_t)snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir) >= sizeof(path) ||
        read_text(path, list, sizeof(list)) < 0 || access(path, W_OK) < 0)
        return false;
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        const char *at = strstr(list, needed[i]);
        size_t len = strlen(needed[i]);
        if (!at || (at > list && at[-1] != ' ') || (at[len] && !strchr(" \n", at[len])))
            return false;
    }
    return true;
}

/* Where cgroup v2 is mounted: /sys/fs/cgroup, or its unified part on a
 * hybrid host. */
static const char *mount_point(void)
{
    static const char *const candidates[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    struct statfs st;

    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (statfs(candidates[i], &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC)
            return candidates[i];
    return NULL;
}

/* The cgroup this process made and entered (a name in the folder held by
 * parent_fd) and the one it came from, held open: the jail's relay leaves
 * and removes it after the VMM, from inside the jail's root (pivot_root
 * moved its root too), where /sys/fs/cgroup is not. -1: none. */
static int came_from_procs = -1, parent_fd = -1;
static char made_name[NAME_MAX + 1];

void cgroup_forget(void)
{
    if (came_from_procs >= 0)
        close(came_from_procs);
    if (parent_fd >= 0)
        close(parent_fd);
    came_from_procs = parent_fd = -1;
}

int cgroup_held_folder(void)
{
    return parent_fd;
}

void cgroup_leave(void)
{
    char pid[24];

    if (came_from_procs < 0 || parent_fd < 0)
        return;
    snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    /* Its last processes (the net helper) may be a moment from gone. */
    if (write(came_from_procs, pid, strlen(pid)) == (ssize_t)strlen(pid))
        for (int i = 0; i < 50 && unlinkat(parent_fd, made_name, AT_REMOVEDIR) < 0 &&
                        errno == EBUSY;
             i++)
            usleep(20000);
    cgroup_forget();
}

int cgroup_enter(const char *name, const struct cgroup_limits *l)
{
    char text[4096], own[PATH_MAX], base[PATH_MAX], dir[PATH_MAX], value[64];
    const char *root = mount_point();
    int r;

    if (!root || read_text("/proc/self/cgroup", text, sizeof(text)) < 0 ||
        cgroup_own_path(text, own, sizeof(own)) < 0)
        return err_plain(ENOTSUP, "cgroup: this host has no cgroup v2 (needed for --cpu-quota, "
                                  "--mem-limit)");
    /* Under its own cgroup when that may have children with the
     * controllers (the root's), else beside it (a delegated scope). */
    if ((size_t)snprintf(base, sizeof(base), "%s%s", root, strcmp(own, "/") == 0 ? "" : own) >=
        sizeof(base))
        return err_plain(ENAMETOOLONG, "cgroup: %s: path too long", own);
    if (!delegates(base)) {
        char *slash = strrchr(base, '/');
        if (slash && slash > base + strlen(root) - 1)
            *slash = '\0';
        if (strlen(base) < strlen(root) || !delegates(base))
            return err_plain(EPERM, "cgroup: no cgroup with the cpu, memory and pids controllers "
                                    "is delegated to this user (in %s%s or above it)",
                             root, own);
    }
    if ((size_t)snprintf(dir, sizeof(dir), "%s/smolvm-%s", base, name) >= sizeof(dir))
        return err_plain(ENAMETOOLONG, "cgroup: %s: path too long", base);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return err_set(errno, "cgroup: cannot make %s", dir);
    strcpy(value, "max 100000");
    if (l->cpu_quota_milli)
        cgroup_cpu_max(l->cpu_quota_milli, value, sizeof(value));
    if ((r = write_in(dir, "cpu.max", value)) < 0)
        return r;
    if (l->mem_bytes)
        snprintf(value, sizeof(value), "%" PRIu64, l->mem_bytes);
    else
        strcpy(value, "max");
    if ((r = write_in(dir, "memory.max", value)) < 0)
        return r;
    /* No swap either: the limit is on the guest's RAM, swapped or not. */
    if (l->mem_bytes && write_in(dir, "memory.swap.max", "0") < 0)
        err_clear(); /* a host without swap accounting has no such file */
    snprintf(value, sizeof(value), "%d", CGROUP_PIDS_MAX);
    if ((r = write_in(dir, "pids.max", value)) < 0)
        return r;
    if ((r = write_in(dir, "cgroup.procs", "0")) < 0)
        return r;
    /* Held open for cgroup_leave(): the cgroup.procs of the one it came
     * from, the folder it made its own in (the jail's relay, under its
     * filter, opens nothing). */
    if ((size_t)snprintf(made_name, sizeof(made_name), "smolvm-%s", name) < sizeof(made_name)) {
        char from[PATH_MAX];
        snprintf(from, sizeof(from), "%s%s", root, strcmp(own, "/") == 0 ? "" : own);
        strncat(from, "/cgroup.procs", sizeof(from) - strlen(from) - 1);
        came_from_procs = open(from, O_WRONLY | O_CLOEXEC);
        parent_fd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
        atexit(cgroup_leave);
    }
    return 0;
}
