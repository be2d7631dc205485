#include "util/paths.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

static char *xdg_base(const char *var, const char *fallback)
{
    const char *base = getenv(var), *home = getenv("HOME");
    char *dir = NULL;

    if (base && base[0] == '/') {
        if (asprintf(&dir, "%s/smolvm", base) < 0)
            return NULL;
    } else if (home && home[0] == '/') {
        if (asprintf(&dir, "%s/%s/smolvm", home, fallback) < 0)
            return NULL;
    }
    return dir;
}

static char *join(const char *dir, const char *sub)
{
    char *path = NULL;
    if (asprintf(&path, "%s%s%s", dir, sub[0] ? "/" : "", sub) < 0)
        return NULL;
    return path;
}

/* Created if missing, and writable (access() sees a read-only mount even
 * for root, mkdir of an existing folder does not). 0 or -errno. */
static int writable(const char *dir)
{
    int r = paths_mkdirs(dir);
    if (r == 0 && access(dir, W_OK) < 0)
        r = -errno;
    return r;
}

/* KIND/SUB in the first runtime folder that is this user's and where it
 * can be written; *root names that folder. */
static char *runtime_dir(const char *kind, const char *sub, char **root)
{
    char *runtime[PATHS_RUNTIME_MAX], *dir = NULL, *kind_dir;
    int n = paths_runtime_dirs(runtime);

    for (int i = 0; i < n && !dir; i++) {
        if (paths_private_dir(runtime[i]) < 0 || !(kind_dir = join(runtime[i], kind)))
            continue;
        dir = join(kind_dir, sub);
        free(kind_dir);
        if (dir && writable(dir) < 0) {
            free(dir);
            dir = NULL;
        }
        if (dir)
            *root = runtime[i], runtime[i] = NULL;
    }
    err_clear();
    paths_free(runtime, n);
    return dir;
}

/* One of the user's folders: $VAR/smolvm (default ~/FALLBACK/smolvm), or
 * RUNTIME/KIND when that cannot be written. */
struct base {
    const char *var, *fallback, *kind;
    char *decided; /* paths_decide()'s folder: SUB is below it, nothing tried again */
};
static struct base cache_base = {"XDG_CACHE_HOME", ".cache", "cache", NULL};
static struct base data_base = {"XDG_DATA_HOME", ".local/share", "data", NULL};

/* BASE/SUB when it can be written; when it is read-only (or not ours),
 * KIND/SUB in the runtime folder, said once (for caches and data alike). */
static char *writable_dir(const struct base *b, const char *sub)
{
    static bool warned;
    char *base, *dir, *alt = NULL, *root = NULL;
    int r;

    if (b->decided) {
        dir = join(b->decided, sub);
        if (dir)
            paths_mkdirs(dir); /* best effort, as below: a jail's is there already */
        return dir;
    }
    base = xdg_base(b->var, b->fallback);
    dir = base ? join(base, sub) : NULL;
    r = dir ? writable(dir) : 0;
    if (r < 0 && paths_needs_fallback(-r))
        alt = runtime_dir(b->kind, sub, &root);
    if (alt) {
        if (!warned)
            fprintf(stderr, "smolvm: %s cannot be written (%s): using %s instead (lost at "
                            "reboot)\n", base, strerror(-r), root);
        warned = true;
        free(dir);
        dir = alt;
    }
    free(root);
    free(base);
    return dir;
}

void paths_decide(void)
{
    struct base *bases[] = {&cache_base, &data_base};

    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++)
        if (!bases[i]->decided)
            bases[i]->decided = writable_dir(bases[i], "");
}

bool paths_needs_fallback(int err)
{
    return err == EROFS || err == EACCES || err == EPERM;
}

char *paths_cache_dir(const char *sub)
{
    return writable_dir(&cache_base, sub);
}

char *paths_data_dir(const char *sub)
{
    return writable_dir(&data_base, sub);
}

char *paths_instances_dir(void)
{
    return paths_data_dir("instances");
}

int paths_runtime_candidates(const char *xdg_runtime, const char *tmpdir, unsigned uid,
                             char *out[PATHS_RUNTIME_MAX])
{
    char *c[PATHS_RUNTIME_MAX] = {0};
    int n = 0;

    if (xdg_runtime && xdg_runtime[0] == '/' && asprintf(&c[0], "%s/smolvm", xdg_runtime) < 0)
        c[0] = NULL;
    if (asprintf(&c[1], "/run/user/%u/smolvm", uid) < 0)
        c[1] = NULL;
    if (asprintf(&c[2], "%s/smolvm-%u", tmpdir && tmpdir[0] == '/' ? tmpdir : "/tmp", uid) < 0)
        c[2] = NULL;
    for (int i = 0; i < PATHS_RUNTIME_MAX; i++) {
        bool seen = !c[i];
        for (int j = 0; j < n && !seen; j++)
            seen = strcmp(out[j], c[i]) == 0;
        if (seen)
            free(c[i]);
        else
            out[n++] = c[i];
    }
    return n;
}

int paths_runtime_dirs(char *out[PATHS_RUNTIME_MAX])
{
    return paths_runtime_candidates(getenv("XDG_RUNTIME_DIR"), getenv("TMPDIR"),
                                    (unsigned)getuid(), out);
}

void paths_free(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
}

/* A folder under /tmp could be someone else's trap: ours, 0700, or refused. */
int paths_private_dir(const char *dir)
{
    struct stat st;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return err_set(errno, "cannot create '%s'", dir);
    if (lstat(dir, &st) < 0)
        return err_set(errno, "'%s'", dir);
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
        return err_plain(EPERM, "'%s' is not a private folder of this user", dir);
    return 0;
}

int paths_mkdirs(const char *dir)
{
    struct stat st;
    char *path;
    int r = 0;

    /* Mostly there already: one call, not one per folder of the path (a
     * jailed start's plan makes a dozen, ~20 calls each in a TCG L1). */
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    /* Missing, its own folder mostly is not (an instance's, a VM's
     * runtime folder): one call, not one per folder from the root. */
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (!(path = strdup(dir)))
        return -ENOMEM;
    for (char *q = path + 1; *q && r == 0; q++) {
        if (*q != '/')
            continue;
        *q = 0;
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            r = -errno;
        *q = '/';
    }
    if (r == 0 && mkdir(path, 0700) < 0 && errno != EEXIST)
        r = -errno;
    free(path);
    return r;
}
