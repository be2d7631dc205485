#include "bundle/layers.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle/sections.h"
#include "disk/disk.h"
#include "util/cache.h"
#include "util/err.h"
#include "util/file.h"
#include "util/layer_name.h"
#include "util/paths.h"

#define MAX_LAYERS 1024

static char *folder_of(const char *path)
{
    char *copy = strdup(path), *real = copy ? realpath(dirname(copy), NULL) : NULL;
    free(copy);
    return real;
}

/* Whether folder is the cache of bundles' disks: each named "<key>.raw",
 * the shape of a layer's name, but a key of the bundle's section, not the
 * hash of the disk's bytes, so not a layer. */
static bool is_disk_cache(const char *folder)
{
    char *cache = paths_cache_dir("disks"), *real = cache ? realpath(cache, NULL) : NULL;
    bool is = real && strcmp(real, folder) == 0;
    free(cache);
    free(real);
    return is;
}

/* Every backing file of d hash-named, all in one folder (not the disk
 * cache, whose names only look like layers'). */
static bool chain_is_layers(const struct disk *d)
{
    char *folder = folder_of(d->backing->path), hash[HASH_HEX];
    bool ok = folder != NULL && !is_disk_cache(folder);

    for (const struct disk *b = d->backing; ok && b; b = b->backing) {
        char *here = folder_of(b->path);
        ok = here && strcmp(here, folder) == 0 && layer_name_parse(b->path, b->format->name, hash);
        free(here);
    }
    free(folder);
    return ok;
}

bool bundle_disk_is_layered(const char *path, const char *format)
{
    struct disk *d;
    bool layered;

    if (disk_open_as(path, DISK_READ_ONLY | DISK_NO_LOCK, format, &d) < 0) {
        err_clear();
        return false;
    }
    layered = d->format == disk_format_find("qcow2") && d->backing && chain_is_layers(d);
    disk_close(d);
    return layered;
}

const struct bundle_layer *bundle_chains_find(const struct bundle_chains *c, const char *hash)
{
    for (size_t i = 0; i < c->count; i++)
        if (strcmp(c->layers[i].hash, hash) == 0)
            return &c->layers[i];
    return NULL;
}

static struct bundle_layer *append(struct bundle_chains *c, const char *hash, const char *parent,
                                   const char *format)
{
    if (c->count >= MAX_LAYERS) {
        err_plain(E2BIG, "more than %d layers", MAX_LAYERS);
        return NULL;
    }
    struct bundle_layer *more = realloc(c->layers, (c->count + 1) * sizeof(*more));
    if (!more) {
        err_set(ENOMEM, "layers");
        return NULL;
    }
    c->layers = more;
    struct bundle_layer *l = &c->layers[c->count];
    memset(l, 0, sizeof(*l));
    snprintf(l->hash, sizeof(l->hash), "%s", hash);
    snprintf(l->parent, sizeof(l->parent), "%s", parent);
    snprintf(l->format, sizeof(l->format), "%s", format);
    section_layer(l->section, c->count);
    c->count++;
    return l;
}

/* A store keeps a layer's message in its sidecar: it travels with the
 * layer, when there is one. */
static void remembered_message(const char *path, struct bundle_layer *l)
{
    json_t *j = layer_sidecar_beside(path);
    const char *message = json_string_value(json_object_get(j, "message"));
    snprintf(l->message, sizeof(l->message), "%s", message ? message : "");
    json_decref(j);
}

/* Layers of the chain below the delta, base first, each added once. */
static int add_backing_layers(struct bundle_chains *c, struct bundle_writer *w, const struct disk *b)
{
    char hash[HASH_HEX], parent[HASH_HEX] = "";
    int r;

    if (!b)
        return 0;
    r = add_backing_layers(c, w, b->backing);
    if (r < 0 || !layer_name_parse(b->path, b->format->name, hash))
        return r;
    if (bundle_chains_find(c, hash))
        return 0;
    if (b->backing && !layer_name_parse(b->backing->path, b->backing->format->name, parent))
        return err_plain(EINVAL, "'%s' is not a layer", b->backing->path);
    struct bundle_layer *l = append(c, hash, parent, b->format->name);
    if (!l)
        return -ENOMEM;
    remembered_message(b->path, l);
    for (size_t i = 0; i < c->omit_count; i++)
        if (strcmp(c->omit[i], hash) == 0) {
            l->section[0] = 0; /* listed, not carried */
            return 0;
        }
    return bundle_add_file(w, l->section, b->path, BUNDLE_ZSTD);
}

int bundle_disk_layers(const char *path, const char *format, struct bundle_layer *out,
                       size_t max, size_t *n)
{
    struct disk *d;
    int r = 0;

    *n = 0;
    if (!bundle_disk_is_layered(path, format))
        return 0;
    if ((r = disk_open_as(path, DISK_READ_ONLY | DISK_NO_LOCK, format, &d)) < 0)
        return r;
    for (const struct disk *b = d->backing; r == 0 && b; b = b->backing) {
        if (*n == max) {
            r = err_plain(E2BIG, "'%s': more than %zu layers", path, max);
            break;
        }
        /* Top first as walked; the caller's order does not matter to an offer. */
        memset(&out[*n], 0, sizeof(out[*n]));
        if (!layer_name_parse(b->path, b->format->name, out[*n].hash))
            r = err_plain(EINVAL, "'%s' is not a layer", b->path);
        snprintf(out[(*n)++].format, sizeof(out->format), "%s", b->format->name);
    }
    disk_close(d);
    return r;
}

/* The delta as a layer over top: a copy whose backing name is the one the
 * layers have among themselves. */
static int add_delta(struct bundle_chains *c, struct bundle_writer *w, const char *path,
                     const char *top, const char *top_format, const char *tmp, char hash[HASH_HEX])
{
    char name[LAYER_NAME_MAX];
    struct disk *t;
    int r = file_copy(path, tmp);

    layer_name(name, top, top_format);
    if (r == 0)
        r = disk_open_as(tmp, DISK_NO_BACKING, "qcow2", &t);
    if (r == 0) {
        r = t->format->set_backing(t, name, top_format);
        disk_close(t);
    }
    if (r == 0)
        r = hash_file(tmp, hash);
    if (r == 0 && !bundle_chains_find(c, hash)) {
        struct bundle_layer *l = append(c, hash, top, "qcow2");
        if (l)
            snprintf(l->message, sizeof(l->message), "saved instance");
        r = l ? bundle_add_file(w, l->section, tmp, BUNDLE_ZSTD) : -ENOMEM;
    }
    unlink(tmp);
    return r;
}

/* A store instance's disk, opened to read its chain. */
static int open_delta(const char *path, char top[HASH_HEX], struct disk **d)
{
    int r = disk_open_as(path, DISK_READ_ONLY | DISK_NO_LOCK, "qcow2", d);

    if (r == 0 && (!(*d)->backing ||
                   !layer_name_parse((*d)->backing->path, (*d)->backing->format->name, top))) {
        disk_close(*d);
        r = err_plain(EINVAL, "'%s' is not a delta over layers", path);
    }
    return r;
}

int bundle_chains_add_layers(struct bundle_chains *c, struct bundle_writer *w, const char *path)
{
    char top[HASH_HEX];
    struct disk *d;
    int r = open_delta(path, top, &d);

    if (r < 0)
        return r;
    r = add_backing_layers(c, w, d->backing);
    disk_close(d);
    return r;
}

int bundle_chains_add_disk(struct bundle_chains *c, struct bundle_writer *w, unsigned index,
                           const char *path, const char *tmp)
{
    char top[HASH_HEX];
    struct disk *d;
    int r;

    if (index >= VM_MAX_DISKS)
        return err_plain(EINVAL, "disk %u: too many disks", index);
    if ((r = open_delta(path, top, &d)) < 0)
        return r;
    r = add_backing_layers(c, w, d->backing); /* those added before: skipped */
    if (r == 0)
        r = add_delta(c, w, path, top, d->backing->format->name, tmp, c->tops[index]);
    disk_close(d);
    if (r == 0 && index >= c->disk_count)
        c->disk_count = index + 1;
    return r;
}

int bundle_chains_write(const struct bundle_chains *c, struct bundle_writer *w)
{
    json_t *layers = json_array(), *tops = json_array();
    for (size_t i = 0; i < c->count; i++) {
        const struct bundle_layer *l = &c->layers[i];
        json_array_append_new(layers, json_pack("{ssssssssss}", "hash", l->hash, "parent",
                                                l->parent, "format", l->format, "section",
                                                l->section, "message", l->message));
    }
    for (unsigned i = 0; i < c->disk_count; i++)
        json_array_append_new(tops, json_string(c->tops[i]));
    json_t *j = json_pack("{soso}", "layers", layers, "disks", tops);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    int r = text ? 0 : err_set(ENOMEM, "layers");

    if (r == 0 && c->count)
        r = bundle_add(w, SECTION_LAYERS, text, strlen(text), BUNDLE_RAW);
    free(text);
    json_decref(j);
    return r;
}

void bundle_chains_release(struct bundle_chains *c)
{
    free(c->layers);
    memset(c, 0, sizeof(*c));
}

static bool copy_field(char *out, size_t size, json_t *object, const char *key)
{
    const char *v = json_string_value(json_object_get(object, key));
    return v && snprintf(out, size, "%s", v) < (int)size;
}

/* One entry, checked against the ones before it. */
static bool is_had(const char *hash, const char (*have)[HASH_HEX], size_t have_count)
{
    for (size_t i = 0; i < have_count; i++)
        if (strcmp(have[i], hash) == 0)
            return true;
    return false;
}

static int parse_layer(const struct bundle *b, struct bundle_chains *c, json_t *e,
                       const char (*have)[HASH_HEX], size_t have_count)
{
    char hash[HASH_HEX], parent[HASH_HEX], format[8], section[BUNDLE_NAME_MAX + 1];
    const struct bundle_layer *p;

    if (!copy_field(hash, sizeof(hash), e, "hash") || !hash_is_hex(hash) ||
        !copy_field(parent, sizeof(parent), e, "parent") ||
        !copy_field(format, sizeof(format), e, "format") ||
        !copy_field(section, sizeof(section), e, "section"))
        return err_plain(EINVAL, "a layer entry is malformed");
    if (strcmp(format, "raw") != 0 && strcmp(format, "qcow2") != 0)
        return err_plain(EINVAL, "layer %.12s: format '%s' is not raw or qcow2", hash, format);
    if (bundle_chains_find(c, hash))
        return err_plain(EINVAL, "layer %.12s is listed twice", hash);
    if (parent[0] && (!(p = bundle_chains_find(c, parent)) || strcmp(format, "raw") == 0))
        return err_plain(EINVAL, "layer %.12s: its parent %.12s is not a layer before it", hash,
                         parent);
    /* Not carried: only a layer the reader said it has. */
    if (!section[0] && !is_had(hash, have, have_count))
        return err_plain(EINVAL, "layer %.12s is not in the bundle", hash);
    if (section[0] && !bundle_has(b, section))
        return err_plain(EINVAL, "layer %.12s: no section '%s'", hash, section);
    struct bundle_layer *l = append(c, hash, parent, format);
    if (!l)
        return -ENOMEM;
    snprintf(l->section, sizeof(l->section), "%s", section);
    if (!copy_field(l->message, sizeof(l->message), e, "message"))
        l->message[0] = 0;
    return 0;
}

static int parse(const struct bundle *b, struct bundle_chains *c, json_t *j,
                 const char (*have)[HASH_HEX], size_t have_count)
{
    json_t *layers = json_object_get(j, "layers"), *tops = json_object_get(j, "disks"), *e;
    size_t i;
    int r = 0;

    if (!json_is_array(layers) || !json_is_array(tops) || json_array_size(tops) > VM_MAX_DISKS)
        return err_plain(EINVAL, "the layer table is malformed");
    json_array_foreach(layers, i, e) {
        if (r == 0)
            r = parse_layer(b, c, e, have, have_count);
    }
    for (i = 0; r == 0 && i < json_array_size(tops); i++) {
        const char *top = json_string_value(json_array_get(tops, i));
        if (!top || (top[0] && !bundle_chains_find(c, top)))
            r = err_plain(EINVAL, "disk %zu: its top layer is not in the bundle", i);
        else
            snprintf(c->tops[i], HASH_HEX, "%s", top);
    }
    c->disk_count = (unsigned)json_array_size(tops);
    return r;
}

int bundle_chains_read(const struct bundle *b, struct bundle_chains *c)
{
    return bundle_chains_read_thin(b, c, NULL, 0);
}

int bundle_chains_read_thin(const struct bundle *b, struct bundle_chains *c,
                            const char (*have)[HASH_HEX], size_t have_count)
{
    uint8_t *text;
    size_t len;
    int r;

    memset(c, 0, sizeof(*c));
    if (!bundle_has(b, SECTION_LAYERS))
        return 0;
    r = bundle_read(b, SECTION_LAYERS, &text, &len);
    if (r < 0)
        return r;
    json_t *j = json_loadb((const char *)text, len, 0, NULL);
    free(text);
    r = j ? parse(b, c, j, have, have_count) : err_plain(EINVAL, "the layer table is not JSON");
    json_decref(j);
    if (r < 0)
        bundle_chains_release(c);
    return r;
}

/* The unpacked file is the layer it claims to be: opened as its declared
 * format (never probed: a raw layer's bytes may look like anything),
 * backed by nothing if it is a base, else by exactly its parent's name
 * ("<hash>.<format>", which the layers use among themselves) with its
 * parent's format recorded (without it the parent would be probed when
 * the chain opens). A qcow2 with an external data file fails to open. */
static int check_layer(const struct bundle_chains *c, const struct bundle_layer *l,
                       const char *path)
{
    const struct bundle_layer *p = l->parent[0] ? bundle_chains_find(c, l->parent) : NULL;
    char hash[HASH_HEX], want[LAYER_NAME_MAX] = "";
    struct disk *d;
    int r = disk_open_as(path, DISK_READ_ONLY | DISK_NO_BACKING, l->format, &d);

    if (r < 0) {
        err_prefix("layer %.12s", l->hash);
        return r;
    }
    if (p)
        layer_name(want, p->hash, p->format);
    if (!p && d->backing_name)
        r = err_plain(EINVAL, "layer %.12s is a base but has a backing file ('%s')", l->hash,
                      d->backing_name);
    else if (p && (!d->backing_name || strcmp(d->backing_name, want) != 0))
        r = err_plain(EINVAL, "layer %.12s is not backed by its parent (it names '%s', not '%s')",
                      l->hash, d->backing_name ? d->backing_name : "nothing", want);
    else if (p && !d->backing_format)
        r = err_plain(EINVAL, "layer %.12s does not record its parent's format", l->hash);
    else if (p && strcmp(d->backing_format, p->format) != 0)
        r = err_plain(EINVAL, "layer %.12s records its parent as %s, not %s", l->hash,
                      d->backing_format, p->format);
    disk_close(d);
    if (r == 0)
        r = hash_file(path, hash);
    if (r == 0 && strcmp(hash, l->hash) != 0)
        r = err_plain(EINVAL, "layer %.12s is corrupt (its bytes hash to %.12s)", l->hash, hash);
    return r;
}

int bundle_layer_extract(const struct bundle *b, const struct bundle_chains *c,
                         const struct bundle_layer *l, const char *dir, bool *added)
{
    char *final = NULL, *tmp = NULL;
    int r = 0;

    *added = false;
    if (!(final = layer_path(dir, l->hash, l->format)) ||
        asprintf(&tmp, "%s/.%s.%d.tmp", dir, l->hash, (int)getpid()) < 0)
        r = err_set(ENOMEM, "layer");
    if (r == 0 && !cache_file_usable(final) && !l->section[0])
        r = err_plain(ENOENT, "layer %.12s is neither in the bundle nor in '%s'", l->hash, dir);
    else if (r == 0 && !cache_file_usable(final)) {
        r = bundle_extract(b, l->section, tmp);
        if (r == 0)
            r = check_layer(c, l, tmp);
        /* Its bytes on disk before its name, its name before anything
         * (a store's sidecar) says it is there. */
        if (r == 0 && (chmod(tmp, 0444) < 0 || file_sync(tmp) < 0 || rename(tmp, final) < 0 ||
                       file_sync(dir) < 0))
            r = err_set(errno, "layer '%s'", final);
        unlink(tmp);
        *added = r == 0;
    }
    free(final);
    free(tmp);
    return r;
}
