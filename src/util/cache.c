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

/* dir (st: what stat() said of it) is the user's own, and only theirs to
 * enter (fixed if it is not). */
static int own_dir_as(const char *dir, const struct stat *st)
{
    if (!S_ISDIR(st->st_mode))
        return err_plain(ENOTDIR, "cache folder '%s' is not a folder", dir);
    if (st->st_uid != geteuid())
        return err_plain(EPERM, "cache folder '%s' belongs to uid %u, not to this user: not used",
                         dir, (unsigned)st->st_uid);
    if ((st->st_mode & 0777) != 0700 && chmod(dir, 0700) < 0)
        return err_set(errno, "cannot make cache folder '%s' private", dir);
    return 0;
}

/* The root checked (made private), once: before any folder in it is
 * looked at, so no folder is taken from a look made while the root was
 * still open to others (one swapped for another user's after the look).
 * A root not there yet is made below by us, private, and checked then. */
static int check_root(const char *root, bool *checked)
{
    struct stat st;
    int r;

    if (*checked)
        return 0;
    if (stat(root, &st) < 0)
        return errno == ENOENT ? 0 : err_set(errno, "cache folder '%s'", root);
    r = own_dir_as(root, &st);
    *checked = r == 0;
    return r;
}

/* What dir is, into st: -ENOENT (no message) when it is not there. A link
 * is followed only when this user made it (one another user planted while
 * the root was open to them would pass as the user's own folder). */
static int look_at_folder(const char *dir, struct stat *st)
{
    if (lstat(dir, st) < 0)
        return errno == ENOENT ? -ENOENT : err_set(errno, "cache folder '%s'", dir);
    if (!S_ISLNK(st->st_mode))
        return 0;
    if (st->st_uid != geteuid())
        return err_plain(EPERM, "cache folder '%s' is a link made by uid %u, not by this user: "
                                "not used", dir, (unsigned)st->st_uid);
    if (stat(dir, st) < 0)
        return err_set(errno, "cache folder '%s'", dir);
    return 0;
}

/* paths_cache_dir(sub), made if missing, and checked (the root once,
 * first: *root_checked). Each folder is looked at once where it is there
 * already (a jailed start prepares three in its plan, each call a path
 * walk in a TCG L1). */
static int prepare_one(const char *root, const char *sub, bool *root_checked, char **out)
{
    char *dir = paths_cache_dir(sub);
    struct stat st = {0};
    int r = root && dir ? check_root(root, root_checked)
                        : err_plain(ENOENT, "no cache folder (set HOME or XDG_CACHE_HOME)");

    if (r == 0 && (r = look_at_folder(dir, &st)) == -ENOENT) {
        if ((r = paths_mkdirs(dir)) < 0)
            err_set(-r, "cannot create cache folder '%s'", dir);
        else if ((r = look_at_folder(dir, &st)) == -ENOENT)
            err_set(ENOENT, "cannot create cache folder '%s'", dir);
    }
    if (r == 0)
        r = check_root(root, root_checked); /* made just now, if it was not there */
    if (r == 0)
        r = own_dir_as(dir, &st);
    if (r < 0) {
        free(dir);
        return r;
    }
    *out = dir;
    return 0;
}

int cache_dir_prepare(const char *sub, char **out)
{
    char *root = paths_cache_dir("");
    bool root_checked = false;
    int r = prepare_one(root, sub, &root_checked, out);

    free(root);
    return r;
}

int cache_dirs_prepare(const char *const *subs, size_t count, char **outs)
{
    char *root = paths_cache_dir("");
    bool root_checked = false;
    int r = 0;

    for (size_t i = 0; i < count; i++) {
        outs[i] = NULL;
        if (prepare_one(root, subs[i], &root_checked, &outs[i]) < 0) {
            r = -1;
            err_clear();
        }
    }
    free(root);
    return r;
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
