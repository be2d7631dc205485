/* The plan (jail.h), and choosing the confinement a host allows. */
#include "confine/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

static const char *description = "none";

static int add_link(struct confine_plan *p, const char *path)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof(target) - 1);

    if (n <= 0 || path[0] != '/')
        return 0; /* a relative name: what it resolves to is enough */
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

int confine_plan_add(struct confine_plan *p, const char *path, bool writable)
{
    char real[PATH_MAX];
    struct stat st;
    int r;

    if (!path || !realpath(path, real))
        return 0; /* nothing there: nothing the VMM can need */
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && strcmp(path, "/proc/self") != 0 &&
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
    p->paths[p->count++].writable = writable;
    return 0;
}

void confine_plan_release(struct confine_plan *p)
{
    for (unsigned i = 0; i < p->count; i++)
        free(p->paths[i].path);
    for (unsigned i = 0; i < p->link_count; i++) {
        free(p->links[i].path);
        free(p->links[i].target);
    }
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

const char *confine_description(void)
{
    return description;
}

void confine_probe(void)
{
#ifdef SMOLVM_TEST_HOOKS
    const char *path = getenv("SMOLVM_TEST_JAIL_PROBE");
    int fd;

    if (!path)
        return;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fprintf(stderr, "confine probe: %s: opened\n", path);
        close(fd);
    } else {
        fprintf(stderr, "confine probe: %s: denied (%s)\n", path, strerror(errno));
    }
#endif
}
