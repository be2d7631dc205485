/* --share HOSTDIR[:TAG][,ro]: one host folder for virtio-fs (run, pack,
 * start, create, receive; POST /machines's "share"). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/config.h"
#include "util/err.h"

/* The tag when none is given: the folder's name, when it makes a tag. */
static const char *default_tag(const char *path)
{
    const char *base = strrchr(path, '/');

    base = base ? base + 1 : path;
    return vm_share_tag_valid(base) ? base : "share";
}

int vm_share_parse(char *spec, struct vm_share_config *shares, unsigned *count)
{
    struct vm_share_config *s;
    char *opts = strchr(spec, ','), *colon, *path;
    struct stat st;

    if (*count == VM_MAX_SHARES)
        return err_plain(EINVAL, "at most %d shares", VM_MAX_SHARES);
    s = &shares[*count];
    *s = (struct vm_share_config){0};
    if (opts)
        *opts++ = 0;
    while (opts && *opts) {
        char *next = strchr(opts, ',');
        if (next)
            *next++ = 0;
        if (strcmp(opts, "ro") == 0)
            s->read_only = true;
        else if (strcmp(opts, "rw") != 0)
            return err_plain(EINVAL, "unknown share option '%s'", opts);
        opts = next;
    }
    colon = strrchr(spec, ':');
    if (colon) {
        *colon = 0;
        s->tag = colon + 1;
        if (!vm_share_tag_valid(s->tag))
            return err_plain(EINVAL, "tag '%s' is not 1 to %d of A-Z a-z 0-9 . _ -", s->tag,
                             VM_SHARE_TAG_MAX);
    }
    if (!*spec)
        return err_plain(EINVAL, "no folder in the share");
    /* Absolute: a detached VM serves it from another working folder. */
    path = realpath(spec, NULL);
    if (!path || stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        int e = path ? ENOTDIR : errno;
        free(path);
        return err_set(e, "shared folder '%s'", spec);
    }
    s->path = path;
    if (!s->tag)
        s->tag = default_tag(path);
    for (unsigned i = 0; i < *count; i++)
        if (strcmp(shares[i].tag, s->tag) == 0) {
            int r = err_plain(EINVAL, "two shares tagged '%s'", s->tag);
            free(path); /* not counted: the caller frees only what is */
            *s = (struct vm_share_config){0};
            return r;
        }
    (*count)++;
    return 0;
}
