#include "util/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/paths.h"

/* dir is the user's own, and only theirs to enter (fixed if it is not). */
static int own_dir(const char *dir)
{
    struct stat st;

    if (stat(dir, &st) < 0)
        return err_set(errno, "cache folder '%s'", dir);
    if (!S_ISDIR(st.st_mode))
        return err_plain(ENOTDIR, "cache folder '%s' is not a folder", dir);
    if (st.st_uid != geteuid())
        return err_plain(EPERM, "cache folder '%s' belongs to uid %u, not to this user: not used",
                         dir, (unsigned)st.st_uid);
    if ((st.st_mode & 0777) != 0700 && chmod(dir, 0700) < 0)
        return err_set(errno, "cannot make cache folder '%s' private", dir);
    return 0;
}

int cache_dir_prepare(const char *sub, char **out)
{
    char *root = paths_cache_dir(""), *dir = paths_cache_dir(sub);
    int r = root && dir ? paths_mkdirs(dir) : -ENOENT;

    if (r == -ENOENT && (!root || !dir))
        err_plain(ENOENT, "no cache folder (set HOME or XDG_CACHE_HOME)");
    else if (r < 0)
        err_set(-r, "cannot create cache folder '%s'", dir);
    if (r == 0)
        r = own_dir(root);
    if (r == 0)
        r = own_dir(dir);
    free(root);
    if (r < 0) {
        free(dir);
        return r;
    }
    *out = dir;
    return 0;
}

static bool trusted(const struct stat *st)
{
    return S_ISREG(st->st_mode) && st->st_uid == geteuid() && !(st->st_mode & 022);
}

bool cache_fd_trusted(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && trusted(&st);
}

bool cache_file_usable(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return false;
    if (trusted(&st))
        return true;
    unlink(path);
    return false;
}
