/* Landlock (jail.h): when no namespaces may be made, the kernel's landlock
 * LSM (Linux 5.13+, when the LSM is enabled) keeps file access to the
 * plan's paths: what is under a folder with it, a file alone. It cannot
 * hide the host's processes or network; on ABI 6+ it also keeps signals
 * inside (no kill of the user's other processes). System calls directly:
 * no library needed. */
#include "confine/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/err.h"

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#define SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define SCOPE_SIGNAL (1ULL << 1)

/* struct landlock_ruleset_attr as of ABI 6; older kernels are given the
 * first field only. */
struct ruleset_attr {
    uint64_t handled_access_fs, handled_access_net, scoped;
};

#define FILE_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_EXECUTE)
#define FILE_WRITE (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)
#define DIR_READ (FILE_READ | LANDLOCK_ACCESS_FS_READ_DIR)
#define DIR_WRITE                                                                           \
    (FILE_WRITE | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |          \
     LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | \
     LANDLOCK_ACCESS_FS_MAKE_SYM | LANDLOCK_ACCESS_FS_REFER)

/* Every access this ABI knows is handled: none is left to chance. */
static uint64_t handled(int abi)
{
    uint64_t all = DIR_READ | DIR_WRITE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                   LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK;
    if (abi < 2)
        all &= ~LANDLOCK_ACCESS_FS_REFER;
    if (abi < 3)
        all &= ~LANDLOCK_ACCESS_FS_TRUNCATE;
    return all;
}

static int allow(int ruleset, const struct confine_path *cp, uint64_t handled_fs)
{
    struct landlock_path_beneath_attr rule = {0};
    struct stat st;
    int r = 0;

    rule.parent_fd = open(cp->path, O_PATH | O_CLOEXEC);
    if (rule.parent_fd < 0 || fstat(rule.parent_fd, &st) < 0) {
        r = err_set(errno, "--jail: landlock: %s", cp->path);
        goto out;
    }
    if (S_ISDIR(st.st_mode))
        rule.allowed_access = cp->writable ? DIR_READ | DIR_WRITE : DIR_READ;
    else
        rule.allowed_access = cp->writable ? FILE_READ | FILE_WRITE : FILE_READ;
    rule.allowed_access &= handled_fs;
    if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0)
        r = err_set(errno, "--jail: landlock: %s", cp->path);
out:
    if (rule.parent_fd >= 0)
        close(rule.parent_fd);
    return r < 0 ? -ENOTRECOVERABLE : 0;
}

int landlock_enter(const struct confine_plan *p)
{
    int abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    struct ruleset_attr attr = {0};
    int ruleset, r = 0;

    if (abi < 1)
        return errno == EOPNOTSUPP ? -EOPNOTSUPP : -ENOSYS;
    attr.handled_access_fs = handled(abi);
    if (abi >= 6)
        attr.scoped = SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET;
    ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr,
                           abi >= 6 ? sizeof(attr) : sizeof(attr.handled_access_fs), 0);
    if (ruleset < 0)
        return -errno;
    for (unsigned i = 0; i < p->count && r == 0; i++)
        r = allow(ruleset, &p->paths[i], attr.handled_access_fs);
    /* An arrival's folder, by the name it took at once (jail.h). */
    char *arrived = NULL;
    if (r == 0 && p->arrival.name &&
        asprintf(&arrived, "%s/%s", p->arrival.dir, p->arrival.name) < 0)
        r = err_set(ENOMEM, "--jail: landlock"), arrived = NULL;
    if (r == 0 && arrived)
        r = allow(ruleset, &(struct confine_path){.path = arrived, .writable = true},
                  attr.handled_access_fs);
    free(arrived);
    /* Its own /proc/PID (the jail mounts a procfs of its own instead): the
     * shares reopen files through /proc/self/fd. */
    char self[32];
    snprintf(self, sizeof(self), "/proc/%d", (int)getpid());
    if (r == 0)
        r = allow(ruleset, &(struct confine_path){.path = self}, attr.handled_access_fs);
    if (r == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        r = err_set(errno, "--jail: no_new_privs"), r = -ENOTRECOVERABLE;
    if (r == 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
        r = err_set(errno, "--jail: landlock"), r = -ENOTRECOVERABLE;
    close(ruleset);
    return r;
}
