/* The tree of what goes into an ext2 image, built path by path. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/ext2_internal.h"
#include "util/err.h"

#define NAME_MAX_BYTES 255

static struct ext2_node *new_node(const char *name, size_t len, const struct ext2_attr *a)
{
    struct ext2_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->name = strndup(name, len);
    n->attr = *a;
    if (!n->name) {
        free(n);
        return NULL;
    }
    return n;
}

int ext2_new(unsigned block_size, uint32_t timestamp, struct ext2 **out)
{
    struct ext2_attr root = {S_IFDIR | 0755, 0, 0, timestamp};
    struct ext2 *e = calloc(1, sizeof(*e));

    if (block_size != 1024 && block_size != 2048 && block_size != 4096)
        return err_plain(EINVAL, "ext2 block size %u is not 1024, 2048 or 4096", block_size);
    if (!e || !(e->root = new_node("", 0, &root))) {
        free(e);
        return err_set(ENOMEM, "ext2");
    }
    e->block_size = block_size;
    e->timestamp = timestamp;
    *out = e;
    return 0;
}

static void free_node(struct ext2_node *n)
{
    while (n) {
        struct ext2_node *next = n->next;
        free_node(n->children);
        free(n->name);
        free(n->host_path);
        free(n->data);
        free(n);
        n = next;
    }
}

void ext2_free(struct ext2 *e)
{
    if (!e)
        return;
    free_node(e->root);
    free(e);
}

static struct ext2_node *child(struct ext2_node *dir, const char *name, size_t len)
{
    for (struct ext2_node *c = dir->children; c; c = c->next)
        if (strlen(c->name) == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

/* The node for path, made (with its missing parents) if need be; an
 * existing one of another kind is cleared and reused. */
static int place(struct ext2 *e, const char *path, const struct ext2_attr *a,
                 struct ext2_node **out)
{
    static const struct ext2_attr parent = {S_IFDIR | 0755, 0, 0, 0};
    struct ext2_node *dir = e->root;
    const char *p = path;

    if (*p != '/')
        return err_plain(EINVAL, "ext2: '%s' is not an absolute path", path);
    for (;;) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len == 0) { /* the root itself */
            dir->attr = *a;
            *out = dir;
            return 0;
        }
        if (len > NAME_MAX_BYTES || (len <= 2 && strncmp(p, "..", len) == 0))
            return err_plain(EINVAL, "ext2: bad name in '%s'", path);
        bool last = p[len] == 0 || p[len + strspn(p + len, "/")] == 0;
        struct ext2_node *c = child(dir, p, len);
        if (!c) {
            struct ext2_attr pa = parent;
            pa.mtime = e->timestamp;
            c = new_node(p, len, last ? a : &pa);
            if (!c)
                return err_set(ENOMEM, "ext2");
            c->parent = dir;
            c->next = dir->children;
            dir->children = c;
        } else if (last) {
            free(c->host_path);
            free(c->data);
            c->host_path = NULL, c->data = NULL, c->len = 0;
            c->attr = *a;
        } else if (!S_ISDIR(c->attr.mode)) {
            return err_plain(ENOTDIR, "ext2: a parent of '%s' is not a directory", path);
        }
        if (last) {
            *out = c;
            return 0;
        }
        dir = c;
        p += len;
    }
}

static int place_typed(struct ext2 *e, const char *path, const struct ext2_attr *a, mode_t type,
                       struct ext2_node **out)
{
    struct ext2_attr typed = *a;
    typed.mode = type | (a->mode & 07777);
    return place(e, path, &typed, out);
}

int ext2_add_dir(struct ext2 *e, const char *path, const struct ext2_attr *a)
{
    struct ext2_node *n;
    return place_typed(e, path, a, S_IFDIR, &n);
}

int ext2_add_file(struct ext2 *e, const char *path, const struct ext2_attr *a,
                  const char *host_path)
{
    struct ext2_node *n;
    int r = place_typed(e, path, a, S_IFREG, &n);
    if (r == 0 && !(n->host_path = strdup(host_path)))
        r = err_set(ENOMEM, "ext2");
    return r;
}

static int set_data(struct ext2_node *n, const void *data, size_t len)
{
    n->data = malloc(len ? len : 1);
    if (!n->data)
        return err_set(ENOMEM, "ext2");
    memcpy(n->data, data, len);
    n->len = len;
    return 0;
}

int ext2_add_data(struct ext2 *e, const char *path, const struct ext2_attr *a, const void *data,
                  size_t len)
{
    struct ext2_node *n;
    int r = place_typed(e, path, a, S_IFREG, &n);
    return r < 0 ? r : set_data(n, data, len);
}

int ext2_add_symlink(struct ext2 *e, const char *path, const char *target,
                     const struct ext2_attr *a)
{
    struct ext2_node *n;
    size_t len = strlen(target);
    if (len == 0 || len >= 4096)
        return err_plain(EINVAL, "ext2: symlink target of '%s' is empty or too long", path);
    int r = place_typed(e, path, a, S_IFLNK, &n);
    if (r == 0)
        n->attr.mode = S_IFLNK | 0777;
    return r < 0 ? r : set_data(n, target, len);
}

int ext2_add_node(struct ext2 *e, const char *path, const struct ext2_attr *a, dev_t rdev)
{
    struct ext2_node *n;
    mode_t type = a->mode & S_IFMT;
    if (type != S_IFCHR && type != S_IFBLK && type != S_IFIFO && type != S_IFSOCK)
        return err_plain(EINVAL, "ext2: '%s' is not a device, FIFO or socket", path);
    int r = place(e, path, a, &n);
    if (r == 0)
        n->rdev = rdev;
    return r;
}

static int add_entry(struct ext2 *e, const char *host, const char *path, const struct stat *st)
{
    struct ext2_attr a = {st->st_mode, st->st_uid, st->st_gid, (uint32_t)st->st_mtime};
    char target[4096];
    ssize_t n;

    switch (st->st_mode & S_IFMT) {
    case S_IFDIR:
        return ext2_add_tree(e, host, path);
    case S_IFREG:
        return ext2_add_file(e, path, &a, host);
    case S_IFLNK:
        n = readlink(host, target, sizeof(target) - 1);
        if (n < 0)
            return err_set(errno, "readlink '%s'", host);
        target[n] = 0;
        return ext2_add_symlink(e, path, target, &a);
    default:
        return ext2_add_node(e, path, &a, st->st_rdev);
    }
}

int ext2_add_tree(struct ext2 *e, const char *host_dir, const char *path)
{
    struct stat st;
    DIR *dir;
    struct dirent *d;
    int r;

    if (lstat(host_dir, &st) < 0)
        return err_set(errno, "'%s'", host_dir);
    r = ext2_add_dir(e, path, &(struct ext2_attr){st.st_mode, st.st_uid, st.st_gid,
                                                  (uint32_t)st.st_mtime});
    if (r < 0 || !(dir = opendir(host_dir)))
        return r < 0 ? r : err_set(errno, "'%s'", host_dir);
    while (r == 0 && (d = readdir(dir))) {
        char *host = NULL, *guest = NULL;
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        if (asprintf(&host, "%s/%s", host_dir, d->d_name) < 0 ||
            asprintf(&guest, "%s/%s", strcmp(path, "/") ? path : "", d->d_name) < 0)
            r = err_set(ENOMEM, "ext2");
        else if (lstat(host, &st) < 0)
            r = err_set(errno, "'%s'", host);
        else
            r = add_entry(e, host, guest, &st);
        free(host);
        free(guest);
    }
    closedir(dir);
    return r;
}
