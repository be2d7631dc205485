/* Files added from outside the store (an appliance's kernel, initrd and
 * root) remembered by their identity and stamp, as git's index remembers
 * a checked-out file: a create from the same appliance folder finds their
 * layers without reading them again. Any change to a file changes its
 * ctime (which no one can set back), so a differing stamp means a copy. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/internal.h"
#include "util/err.h"

#define SOURCES_FILE "sources.json"
/* Enough for a few appliances; the oldest go first. */
#define SOURCES_MAX 256
/* A file changed this recently may change again within the same tick of
 * the filesystem's clock (a coarse tick, or a whole second on some) without
 * its stamp moving: such a stamp is not remembered. */
#define RACY_NS 2000000000ll

static long long ns(const struct timespec *t)
{
    return t->tv_sec * 1000000000ll + t->tv_nsec;
}

static json_t *stamp_of(const struct stat *st)
{
    return json_pack("{sIsIsIsIsI}", "dev", (json_int_t)st->st_dev, "inode",
                     (json_int_t)st->st_ino, "bytes", (json_int_t)st->st_size, "mtime_ns",
                     (json_int_t)ns(&st->st_mtim), "ctime_ns", (json_int_t)ns(&st->st_ctim));
}

static bool same_file(json_t *entry, json_t *stamp)
{
    return json_equal(json_object_get(entry, "dev"), json_object_get(stamp, "dev")) &&
           json_equal(json_object_get(entry, "inode"), json_object_get(stamp, "inode"));
}

static bool same_stamp(json_t *entry, json_t *stamp)
{
    const char *key;
    json_t *value;
    json_object_foreach(stamp, key, value)
        if (!json_equal(json_object_get(entry, key), value))
            return false;
    return true;
}

static json_t *load_sources(const char *path)
{
    json_t *all = json_load_file(path, 0, NULL);
    if (json_is_array(all))
        return all;
    json_decref(all);
    return json_array();
}

/* The layer remembered for a file with this stamp, if it is still in the
 * store and whole. */
static bool known(struct store *s, const char *sources, json_t *stamp, char hash[HASH_HEX])
{
    json_t *all = load_sources(sources), *e;
    size_t i;
    bool found = false;

    json_array_foreach(all, i, e) {
        const char *h = json_string_value(json_object_get(e, "hash"));
        char *layer = NULL;
        if (!h || !hash_is_hex(h) || !same_stamp(e, stamp))
            continue;
        found = store_layer_path(s, h, &layer) == 0;
        free(layer);
        if (found)
            snprintf(hash, HASH_HEX, "%s", h);
        else
            err_clear();
        break;
    }
    json_decref(all);
    return found;
}

static void remember(struct store *s, const char *sources, json_t *stamp, const char *hash)
{
    json_t *all, *e;
    size_t i;

    store_lock(s);
    all = load_sources(sources); /* again: another create may have added one */
    json_array_foreach(all, i, e)
        if (same_file(e, stamp)) {
            json_array_remove(all, i);
            break;
        }
    while (json_array_size(all) >= SOURCES_MAX)
        json_array_remove(all, 0);
    e = json_deep_copy(stamp);
    json_object_set_new(e, "hash", json_string(hash));
    json_array_append_new(all, e);
    if (store_write_json(sources, all) < 0)
        err_clear(); /* it only saves a later create the copy */
    store_unlock(s);
    json_decref(all);
}

int store_add_source(struct store *s, const char *path, const char *message, char hash[HASH_HEX],
                     bool *reused)
{
    struct stat st;
    struct timespec now;
    char *sources = NULL;
    json_t *stamp;
    int r;

    *reused = false;
    if (stat(path, &st) < 0)
        return err_set(errno, "'%s'", path);
    /* A block device's content changes without its stamp. */
    if (!S_ISREG(st.st_mode) || asprintf(&sources, "%s/%s", s->root, SOURCES_FILE) < 0)
        return store_add_layer(s, path, message, hash);
    stamp = stamp_of(&st);
    *reused = stamp && known(s, sources, stamp, hash);
    r = *reused ? 0 : store_add_layer(s, path, message, hash);
    clock_gettime(CLOCK_REALTIME, &now);
    /* Remembered only when the path still has that stamp after the copy:
     * renamed or replaced meanwhile, the bytes copied may be another
     * file's, and the stamp would vouch for them. */
    struct stat after;
    json_t *stamp_after = r == 0 && stat(path, &after) == 0 ? stamp_of(&after) : NULL;
    if (r == 0 && !*reused && stamp && json_equal(stamp, stamp_after) &&
        ns(&now) - ns(&st.st_ctim) > RACY_NS && ns(&now) - ns(&st.st_mtim) > RACY_NS)
        remember(s, sources, stamp, hash);
    json_decref(stamp_after);
    json_decref(stamp);
    free(sources);
    return r;
}
