/* Layers: content-addressed, read-only image files, each knowing its
 * parent through its qcow2 backing name ("<parent>.<format>", relative, so
 * the store can move) and its sidecar. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "disk/disk.h"
#include "store/internal.h"
#include "util/err.h"
#include "util/file.h"
#include "util/layer_name.h"
#include "util/paths.h"

int store_open(struct store **out)
{
    struct store *s = calloc(1, sizeof(*s));
    char *lock = NULL;

    if (!s)
        return -ENOMEM;
    s->lock_fd = -1;
    s->root = paths_data_dir("");
    s->layers = paths_data_dir("layers");
    s->instances = paths_instances_dir();
    if (!s->root || !s->layers || !s->instances) {
        store_close(s);
        return err_plain(ENOENT, "no data folder (set HOME or XDG_DATA_HOME)");
    }
    if (paths_mkdirs(s->layers) < 0 || paths_mkdirs(s->instances) < 0 ||
        asprintf(&lock, "%s/.lock", s->root) < 0 ||
        (s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        int r = err_set(errno ? errno : ENOMEM, "store '%s'", s->root);
        free(lock);
        store_close(s);
        return r;
    }
    free(lock);
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->root);
    free(s->layers);
    free(s->instances);
    free(s);
}

void store_lock(struct store *s)
{
    while (flock(s->lock_fd, LOCK_EX) < 0 && errno == EINTR)
        ;
}

void store_unlock(struct store *s)
{
    flock(s->lock_fd, LOCK_UN);
}

char *store_layer_file(const struct store *s, const char *hash, const char *format)
{
    return layer_path(s->layers, hash, format);
}

static char *sidecar(const struct store *s, const char *hash)
{
    return store_layer_file(s, hash, LAYER_SIDECAR);
}

json_t *store_layer_meta(const struct store *s, const char *hash)
{
    return layer_sidecar_load(s->layers, hash);
}

int store_write_json(const char *path, json_t *value)
{
    char *text = json_dumps(value, JSON_INDENT(2) | JSON_SORT_KEYS);
    int r = text ? file_replace(path, text, strlen(text)) : err_set(ENOMEM, "'%s'", path);
    free(text);
    return r;
}

/* The store layer an image's backing file is, or "" for none; an image
 * backed by anything else cannot become a layer. */
static int parent_of(const struct store *s, const struct disk *d, char parent[HASH_HEX])
{
    parent[0] = 0;
    if (!d->backing_path)
        return 0;
    char *real = realpath(d->backing_path, NULL), *layers = realpath(s->layers, NULL);
    const char *base = real ? strrchr(real, '/') : NULL;
    size_t dir_len = base ? (size_t)(base - real) : 0;
    int r = 0;

    if (!real || !layers || strlen(layers) != dir_len || strncmp(real, layers, dir_len) != 0 ||
        !layer_name_parse(real, NULL, parent)) {
        parent[0] = 0;
        r = err_plain(EINVAL, "'%s' is backed by '%s', which is not a layer of the store",
                      d->path, d->backing_path);
    }
    free(real);
    free(layers);
    return r;
}

/* A byte copy that keeps holes: sparse bases stay sparse. */
static int copy_sparse(const char *from, const char *to)
{
    struct disk *src, *dst;
    struct disk_create_options o = {0};
    int r = disk_open_as(from, DISK_READ_ONLY | DISK_NO_BACKING, "raw", &src);

    if (r < 0)
        return r;
    o.size = src->size;
    r = disk_create("raw", to, &o);
    if (r == 0)
        r = disk_open_as(to, 0, "raw", &dst);
    if (r == 0) {
        uint8_t *buf = malloc(1u << 20);
        for (uint64_t at = 0; r == 0 && buf && at < src->size;) {
            struct disk_extent e;
            r = disk_status(src, at, src->size - at < (1u << 20) ? src->size - at : 1u << 20, &e);
            struct iovec iov = {buf, e.length};
            if (r == 0 && e.kind == DISK_EXTENT_DATA && (r = disk_read(src, &iov, 1, at)) == 0)
                r = disk_write(dst, &iov, 1, at);
            at += r == 0 ? e.length : 0;
        }
        if (!buf)
            r = -ENOMEM;
        free(buf);
        if (r == 0)
            r = disk_flush(dst);
        disk_close(dst);
    }
    disk_close(src);
    return r < 0 ? err_set(-r, "copy '%s'", from) : 0;
}

/* The "checked" stamp: what a layer file looked like (size, inode, mtime,
 * ctime) when its bytes were last found to hash to its name. verify()
 * trusts a stamp that still matches instead of reading the file again, so
 * a stamp must never vouch for bytes other than the ones hashed:
 * - It is taken only once those bytes are on disk: the file fsync'd, then
 *   renamed, then its folder synced, and only then the sidecar written.
 *   After a power loss a layer can read back as zeros only if it was never
 *   synced, and then it has no stamp. Stamps from before this rule (they
 *   lack ctime_ns; they were taken before any sync) are not trusted.
 * - It holds the ctime, which no one sets back (touch -d restores an
 *   mtime, not a ctime): bytes rewritten in place no longer match.
 * - It is taken once the clock has moved past the file's ctime (a tick,
 *   or a second on a file system that keeps seconds): a change in the same
 *   tick as the stamp would otherwise leave the ctime, and the stamp, as
 *   they were.
 * The bytes it vouches for were hashed by this process moments before:
 * under their temporary name (record) or by verify(), which syncs them
 * and stamps only a file that did not change while it was read. *before: the file as it was
 * when hashing began (NULL: record's own stat). No stamp is written when
 * the file changed, or its ctime is ahead of the clock: the next use hashes. */
static int64_t ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000ll + t.tv_nsec;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && a->st_ino == b->st_ino &&
           ns(a->st_mtim) == ns(b->st_mtim) && ns(a->st_ctim) == ns(b->st_ctim);
}

/* Waits until the clock files are stamped with has passed st's ctime
 * (false, at once, when that is more than a second away). */
static bool past_ctime(const struct stat *st)
{
    int64_t after = ns(st->st_ctim) + (st->st_ctim.tv_nsec == 0 ? 1000000000ll : 1);
    struct timespec now;

    for (;;) {
        clock_gettime(CLOCK_REALTIME_COARSE, &now);
        int64_t wait = after - ns(now);
        if (wait <= 0)
            return true;
        if (wait > 1100000000ll)
            return false;
        nanosleep(&(struct timespec){wait / 1000000000, wait % 1000000000}, NULL);
    }
}

static int stamp(json_t *meta, const char *path, const struct stat *before)
{
    struct stat st;

    json_object_del(meta, "checked");
    if (stat(path, &st) < 0)
        return err_set(errno, "'%s'", path);
    if ((before && !same_file(before, &st)) || !past_ctime(&st))
        return 0;
    json_object_set_new(meta, "checked",
                        json_pack("{sIsIsIsI}", "bytes", (json_int_t)st.st_size, "mtime_ns",
                                  (json_int_t)ns(st.st_mtim), "ctime_ns",
                                  (json_int_t)ns(st.st_ctim), "inode", (json_int_t)st.st_ino));
    return 0;
}

/* Whether a stamp (see stamp) still vouches for the file at st. */
static bool stamp_matches(json_t *checked, const struct stat *st)
{
    json_t *ctime = json_object_get(checked, "ctime_ns");
    return json_is_integer(ctime) && json_integer_value(ctime) == ns(st->st_ctim) &&
           json_integer_value(json_object_get(checked, "bytes")) == st->st_size &&
           json_integer_value(json_object_get(checked, "mtime_ns")) == ns(st->st_mtim) &&
           json_integer_value(json_object_get(checked, "inode")) == (json_int_t)st->st_ino;
}

/* The sidecar of a layer file in place: written last, once the file and
 * its name are on disk, so a layer with a sidecar is whole. */
static int record(struct store *s, const char *hash, const char *format, const char *parent,
                  uint64_t size, const char *message)
{
    char *file = store_layer_file(s, hash, format), *side = sidecar(s, hash);
    json_t *meta = json_pack("{sssssIsIss}", "format", format, "parent", parent, "virtual-size",
                             (json_int_t)size, "created", (json_int_t)time(NULL), "message",
                             message ? message : "");
    int r = file && side && meta ? 0 : -ENOMEM;

    if (r == 0 && file_sync(s->layers) < 0)
        r = err_set(errno, "sync '%s'", s->layers);
    if (r == 0)
        r = stamp(meta, file, NULL);
    if (r == 0)
        r = store_write_json(side, meta);
    if (r == 0 && file_sync(s->layers) < 0)
        r = err_set(errno, "sync '%s'", s->layers);
    json_decref(meta);
    free(file);
    free(side);
    return r;
}

int store_import_layer(struct store *s, const struct store_import *l)
{
    json_t *meta, *parent = NULL;
    char *file = store_layer_file(s, l->hash, l->format);
    struct disk *d;
    int r = file ? 0 : -ENOMEM;

    store_lock(s);
    meta = store_layer_meta(s, l->hash);
    if (l->parent[0] && !(parent = store_layer_meta(s, l->parent)))
        r = err_plain(ENOENT, "layer %.12s: its parent %.12s is not in the store", l->hash,
                      l->parent);
    /* A layer whose sidecar outlived its file is placed again; so is a
     * file without its sidecar (a crash came between them): nothing says
     * it was whole or checked, and placing it checks it. */
    if (r == 0 && !meta && unlink(file) < 0 && errno != ENOENT)
        r = err_set(errno, "'%s'", file);
    if (r == 0 && (!meta || access(file, F_OK) != 0)) {
        r = l->place(l->opaque, s->layers);
        if (r == 0)
            r = disk_open_as(file, DISK_READ_ONLY | DISK_NO_BACKING, l->format, &d);
        if (r == 0) {
            uint64_t size = d->size;
            disk_close(d);
            r = record(s, l->hash, l->format, l->parent, size, l->message);
        }
    }
    store_unlock(s);
    json_decref(meta);
    json_decref(parent);
    free(file);
    return r;
}

static int verify(struct store *s, const char *hash, const char *path, json_t *meta);

/* Moves a finished temporary copy into place under its content hash: its
 * bytes on disk before its name (record syncs the name before the
 * sidecar). */
static int admit(struct store *s, const char *tmp, const char *format, const char *parent,
                 uint64_t size, const char *message, char hash[HASH_HEX])
{
    char *final = NULL;
    json_t *meta = NULL;
    int r = hash_file(tmp, hash);

    if (r == 0 && !(final = store_layer_file(s, hash, format)))
        r = -ENOMEM;
    if (r == 0)
        meta = store_layer_meta(s, hash);
    /* The same bytes are there already, whole: the copy is dropped. A
     * file without its sidecar, or no longer its bytes, is replaced. */
    if (r == 0 && meta &&
        strcmp(json_string_value(json_object_get(meta, "format")) ?: "", format) == 0 &&
        verify(s, hash, final, meta) == 0) {
        unlink(tmp);
    } else if (r == 0) {
        err_clear();
        if (chmod(tmp, 0444) < 0 || file_sync(tmp) < 0 || rename(tmp, final) < 0)
            r = err_set(errno, "layer '%s'", final);
        if (r == 0)
            r = record(s, hash, format, parent, size, message);
    }
    if (r < 0)
        unlink(tmp);
    json_decref(meta);
    free(final);
    return r;
}

/* An image's format (as given, or probed when NULL), virtual size and
 * parent layer ("" for none). */
static int inspect(struct store *s, const char *image, const char **format, uint64_t *size,
                   char parent[HASH_HEX])
{
    struct disk *d;
    int r = disk_open_as(image, DISK_READ_ONLY | DISK_NO_BACKING, *format, &d);

    if (r < 0)
        return r;
    *format = d->format->name;
    *size = d->size;
    if (strcmp(*format, "raw") != 0 && strcmp(*format, "qcow2") != 0)
        r = err_plain(EINVAL, "layers are raw or qcow2 images ('%s' is %s)", image, *format);
    if (r == 0)
        r = parent_of(s, d, parent);
    disk_close(d);
    return r;
}

/* A copy in the layers folder becomes a layer: its parent named relative
 * to that folder, then moved under its hash. Removed on failure. */
static int finish(struct store *s, const char *tmp, const char *format, const char *parent,
                  uint64_t size, const char *message, char hash[HASH_HEX])
{
    struct disk *d;
    int r = 0;

    if (parent[0]) {
        r = disk_open_as(tmp, DISK_NO_BACKING, "qcow2", &d);
        if (r == 0) {
            char name[LAYER_NAME_MAX];
            json_t *pm = store_layer_meta(s, parent);
            layer_name(name, parent, json_string_value(json_object_get(pm, "format")) ?: "qcow2");
            r = d->format->set_backing(d, name, json_string_value(json_object_get(pm, "format")));
            json_decref(pm);
            disk_close(d);
        }
    }
    if (r == 0) {
        store_lock(s);
        r = admit(s, tmp, format, parent, size, message, hash);
        store_unlock(s);
    } else {
        unlink(tmp);
    }
    return r;
}

char *store_layer_temp(const struct store *s)
{
    char *tmp;
    return asprintf(&tmp, "%s/.tmp-%d-%ld", s->layers, (int)getpid(), (long)random()) < 0 ? NULL
                                                                                           : tmp;
}

int store_add_layer(struct store *s, const char *image, const char *message, char hash[HASH_HEX])
{
    const char *format = NULL; /* the user's image: probed, as qemu-img does */
    char parent[HASH_HEX], *tmp = NULL;
    uint64_t size;
    int r = inspect(s, image, &format, &size, parent);

    if (r == 0 && !(tmp = store_layer_temp(s)))
        r = -ENOMEM;
    if (r == 0)
        r = strcmp(format, "raw") == 0 ? copy_sparse(image, tmp) : file_copy(image, tmp);
    if (r == 0)
        r = finish(s, tmp, format, parent, size, message, hash);
    else if (tmp)
        unlink(tmp);
    free(tmp);
    return r;
}

int store_adopt_layer(struct store *s, const char *tmp, const char *message, char hash[HASH_HEX])
{
    /* A bundle's kernel, initrd and flattened disk are raw bytes: pinned,
     * never probed (a disk whose bytes are a qcow2 stays those bytes). */
    const char *format = "raw";
    char parent[HASH_HEX];
    uint64_t size;
    int r = inspect(s, tmp, &format, &size, parent);

    if (r == 0)
        return finish(s, tmp, format, parent, size, message, hash);
    unlink(tmp);
    return r;
}

/* Rehashes a layer whose stamp does not vouch for it (see stamp). */
static int verify(struct store *s, const char *hash, const char *path, json_t *meta)
{
    struct stat st;
    char now[HASH_HEX];

    if (stat(path, &st) < 0)
        return err_set(errno, "layer %.12s is missing", hash);
    if (stamp_matches(json_object_get(meta, "checked"), &st))
        return 0;
    int r = hash_file(path, now);
    if (r == 0 && strcmp(now, hash) != 0)
        return err_plain(EIO, "layer %.12s was modified (its content hash is now %.12s)", hash, now);
    if (r < 0)
        return r;
    /* The stamp only saves the next check a rehash: best effort, and only
     * once the bytes just hashed are on disk (a file an older version
     * never synced is read from the page cache here). */
    char *side = file_sync(path) == 0 && stamp(meta, path, &st) == 0 &&
                         json_object_get(meta, "checked")
                     ? sidecar(s, hash) : NULL;
    if (side && store_write_json(side, meta) < 0)
        err_clear();
    free(side);
    err_clear();
    return 0;
}

int store_layer_path(struct store *s, const char *hash, char **path)
{
    json_t *meta = store_layer_meta(s, hash);
    const char *format = json_string_value(json_object_get(meta, "format"));
    int r;

    if (!meta || !format) {
        json_decref(meta);
        return err_plain(ENOENT, "no layer %.64s in the store", hash);
    }
    *path = store_layer_file(s, hash, format);
    r = *path ? verify(s, hash, *path, meta) : -ENOMEM;
    json_decref(meta);
    if (r < 0) {
        free(*path);
        *path = NULL;
    }
    return r;
}

int store_chain(struct store *s, const char *top, void (*visit)(void *opaque, const char *hash),
                void *opaque)
{
    char hash[HASH_HEX];
    snprintf(hash, sizeof(hash), "%s", top);
    for (int depth = 0; hash[0]; depth++) {
        json_t *meta = store_layer_meta(s, hash);
        if (!meta)
            return err_plain(ENOENT, "layer %.12s (in a chain) is missing", hash);
        if (depth >= DISK_MAX_CHAIN) {
            json_decref(meta);
            return err_plain(ELOOP, "the chain of layer %.12s loops", top);
        }
        if (visit)
            visit(opaque, hash);
        snprintf(hash, sizeof(hash), "%s", json_string_value(json_object_get(meta, "parent")) ?: "");
        json_decref(meta);
    }
    return 0;
}

/* ---- listing and collecting ---- */

struct usage {
    char (*hashes)[HASH_HEX];
    unsigned *users;
    size_t count;
};

static void count_use(void *opaque, const char *hash)
{
    struct usage *u = opaque;
    for (size_t i = 0; i < u->count; i++)
        if (strcmp(u->hashes[i], hash) == 0)
            u->users[i]++;
}

/* Every layer, and how many instances' chains go through each. */
static int usage(struct store *s, struct usage *u)
{
    DIR *d = opendir(s->layers);
    struct dirent *e;
    json_t *instances = json_array();
    size_t i;
    json_t *inst;

    memset(u, 0, sizeof(*u));
    if (!d)
        return err_set(errno, "'%s'", s->layers);
    while ((e = readdir(d))) {
        char hash[HASH_HEX];
        if (!layer_name_parse(e->d_name, LAYER_SIDECAR, hash))
            continue;
        void *more = realloc(u->hashes, (u->count + 1) * sizeof(*u->hashes));
        void *more_users = more ? realloc(u->users, (u->count + 1) * sizeof(*u->users)) : NULL;
        if (more)
            u->hashes = more;
        if (!more || !more_users)
            break;
        u->users = more_users;
        memcpy(u->hashes[u->count], hash, HASH_HEX);
        u->users[u->count++] = 0;
    }
    closedir(d);
    int r = store_list(s, instances);
    /* A broken chain (a missing layer) still counts what it reaches. */
    json_array_foreach(instances, i, inst) {
        if (r == 0 && store_chain(s, json_string_value(json_object_get(inst, "top")), count_use,
                                  u) < 0)
            err_clear();
        static const char *const boot[] = {"kernel", "initrd"};
        for (int k = 0; k < 2; k++)
            if (json_string_value(json_object_get(inst, boot[k])))
                count_use(u, json_string_value(json_object_get(inst, boot[k])));
    }
    json_decref(instances);
    return r;
}

static void usage_free(struct usage *u)
{
    free(u->hashes);
    free(u->users);
}

/* Layers whose parent is hash (a layer is used by its children too). */
static unsigned children(struct store *s, const struct usage *u, const char *hash)
{
    unsigned n = 0;
    for (size_t i = 0; i < u->count; i++) {
        json_t *m = store_layer_meta(s, u->hashes[i]);
        n += strcmp(json_string_value(json_object_get(m, "parent")) ?: "", hash) == 0;
        json_decref(m);
    }
    return n;
}

int store_list_layers(struct store *s, json_t *list)
{
    struct usage u;
    int r = usage(s, &u);

    for (size_t i = 0; r == 0 && i < u.count; i++) {
        json_t *m = store_layer_meta(s, u.hashes[i]);
        struct stat st;
        char *path = store_layer_file(s, u.hashes[i],
                                      json_string_value(json_object_get(m, "format")) ?: "raw");
        json_object_set_new(m, "hash", json_string(u.hashes[i]));
        json_object_set_new(m, "users", json_integer(u.users[i]));
        json_object_set_new(m, "bytes", json_integer(path && stat(path, &st) == 0
                                                         ? (json_int_t)st.st_blocks * 512 : 0));
        json_object_del(m, "checked");
        json_array_append_new(list, m);
        free(path);
    }
    usage_free(&u);
    return r;
}

static int remove_layer_files(struct store *s, const char *hash)
{
    json_t *m = store_layer_meta(s, hash);
    char *file = store_layer_file(s, hash, json_string_value(json_object_get(m, "format")) ?: "raw");
    char *side = sidecar(s, hash);
    int r = file && side ? 0 : -ENOMEM;

    /* The sidecar last: a crash between leaves a layer gc finds again. */
    if (r == 0 && unlink(file) < 0 && errno != ENOENT)
        r = err_set(errno, "'%s'", file);
    if (r == 0 && unlink(side) < 0)
        r = err_set(errno, "'%s'", side);
    json_decref(m);
    free(file);
    free(side);
    return r;
}

int store_remove_layer(struct store *s, const char *hash)
{
    struct usage u;
    int r;

    store_lock(s);
    r = usage(s, &u);
    size_t i = 0;
    while (r == 0 && i < u.count && strcmp(u.hashes[i], hash) != 0)
        i++;
    if (r == 0 && i == u.count)
        r = err_plain(ENOENT, "no layer %.64s in the store", hash);
    else if (r == 0 && (u.users[i] || children(s, &u, hash)))
        r = err_plain(EBUSY, "layer %.12s is in use (%u instances, %u layers on it)", hash,
                      u.users[i], children(s, &u, hash));
    else if (r == 0)
        r = remove_layer_files(s, hash);
    usage_free(&u);
    store_unlock(s);
    return r;
}

int store_gc(struct store *s, unsigned *removed)
{
    struct usage u;
    int r;
    bool again = true;

    *removed = 0;
    store_lock(s);
    /* Leaves first: removing a layer can free its parent. */
    while (again) {
        again = false;
        r = usage(s, &u);
        for (size_t i = 0; r == 0 && i < u.count; i++) {
            if (u.users[i] || children(s, &u, u.hashes[i]))
                continue;
            r = remove_layer_files(s, u.hashes[i]);
            ++*removed;
            again = r == 0;
        }
        usage_free(&u);
        if (r < 0)
            break;
    }
    store_unlock(s);
    return r;
}
