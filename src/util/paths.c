#include "util/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *xdg_dir(const char *var, const char *fallback, const char *sub)
{
    const char *base = getenv(var), *home = getenv("HOME");
    char *dir = NULL;

    if (base && base[0] == '/') {
        if (asprintf(&dir, "%s/smolvm/%s", base, sub) < 0)
            return NULL;
    } else if (home && home[0] == '/') {
        if (asprintf(&dir, "%s/%s/smolvm/%s", home, fallback, sub) < 0)
            return NULL;
    }
    return dir;
}

char *paths_cache_dir(const char *sub)
{
    return xdg_dir("XDG_CACHE_HOME", ".cache", sub);
}

char *paths_data_dir(const char *sub)
{
    return xdg_dir("XDG_DATA_HOME", ".local/share", sub);
}

int paths_mkdirs(const char *dir)
{
    char *path = strdup(dir);
    int r = 0;

    if (!path)
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
