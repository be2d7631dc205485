#include "image/kmod.h"

#include <errno.h>
#include <fnmatch.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "util/err.h"
#include "util/file.h"

#define MAX_OUTPUT (256u << 20) /* no module inflates past this */

struct module {
    char name[64];
    char *path;   /* relative to moddir */
    char **deps;  /* relative paths, as modules.dep lists them */
    size_t dep_count;
    char **pre;   /* softdep pre: names */
    size_t pre_count;
    bool emitted;
};

struct alias {
    char *pattern, *module;
};

struct kmod_db {
    const char *moddir;
    struct module *mods;
    size_t count, mods_cap;
    struct alias *aliases;
    size_t alias_count, aliases_cap;
    char **builtin; /* names */
    size_t builtin_count, builtin_cap;
};

/* Room for one more element in *array (doubling: the files have
 * thousands of lines). */
static bool grow(void *array, size_t *cap, size_t count, size_t elem)
{
    void **p = array;
    if (count < *cap)
        return true;
    size_t more = *cap ? *cap * 2 : 256;
    void *bigger = realloc(*p, more * elem);
    if (!bigger)
        return false;
    *p = bigger;
    *cap = more;
    return true;
}

void kmod_name(const char *path, char *out, size_t size)
{
    const char *base = strrchr(path, '/');
    size_t n;

    base = base ? base + 1 : path;
    n = strcspn(base, ".");
    if (n >= size)
        n = size - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = base[i] == '-' ? '_' : base[i];
    out[n] = 0;
}

static void normalize(const char *name, char *out, size_t size)
{
    size_t i = 0;
    for (; name[i] && i + 1 < size; i++)
        out[i] = name[i] == '-' ? '_' : name[i];
    out[i] = 0;
}

static char *read_text(const char *moddir, const char *file)
{
    char path[4096];
    struct mapped_file f;
    char *text;

    snprintf(path, sizeof(path), "%s/%s", moddir, file);
    if (file_map(path, file, &f) < 0)
        return NULL;
    text = malloc(f.len + 1);
    if (text) {
        memcpy(text, f.data, f.len);
        text[f.len] = 0;
    }
    file_unmap(&f);
    return text;
}

/* Splits s at whitespace into a new array of strdup'd words. */
static char **words(char *s, size_t *count)
{
    char **out = NULL, *save = NULL;
    *count = 0;
    for (char *w = strtok_r(s, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        char **more = realloc(out, (*count + 1) * sizeof(*out));
        if (!more)
            break;
        out = more;
        out[(*count)++] = strdup(w);
    }
    return out;
}

static struct module *by_name(struct kmod_db *db, const char *name)
{
    for (size_t i = 0; i < db->count; i++)
        if (strcmp(db->mods[i].name, name) == 0)
            return &db->mods[i];
    return NULL;
}

static struct module *by_path(struct kmod_db *db, const char *path)
{
    for (size_t i = 0; i < db->count; i++)
        if (strcmp(db->mods[i].path, path) == 0)
            return &db->mods[i];
    return NULL;
}

static int load_deps(struct kmod_db *db)
{
    char *text = read_text(db->moddir, "modules.dep"), *save = NULL;
    if (!text)
        return err_plain(ENOENT, "no modules.dep in %s (is the kernel's module package installed?)",
                         db->moddir);
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon || !grow(&db->mods, &db->mods_cap, db->count, sizeof(*db->mods)))
            continue;
        *colon = 0;
        struct module *m = &db->mods[db->count++];
        memset(m, 0, sizeof(*m));
        m->path = strdup(line);
        kmod_name(line, m->name, sizeof(m->name));
        m->deps = words(colon + 1, &m->dep_count);
    }
    free(text);
    return 0;
}

static void load_softdeps(struct kmod_db *db)
{
    char *text = read_text(db->moddir, "modules.softdep"), *save = NULL;
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        char name[64], *pre, *post;
        if (strncmp(line, "softdep ", 8) != 0 || !(pre = strstr(line, " pre: ")))
            continue;
        *pre = 0;
        normalize(line + 8, name, sizeof(name));
        post = strstr(pre + 6, " post:");
        if (post)
            *post = 0;
        struct module *m = by_name(db, name);
        if (m && !m->pre)
            m->pre = words(pre + 6, &m->pre_count);
    }
    free(text);
}

static void load_aliases(struct kmod_db *db)
{
    char *text = read_text(db->moddir, "modules.alias"), *save = NULL;
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        char *pattern = line + 6, *space;
        if (strncmp(line, "alias ", 6) != 0 || !(space = strchr(pattern, ' ')))
            continue;
        *space = 0;
        if (!grow(&db->aliases, &db->aliases_cap, db->alias_count, sizeof(*db->aliases)))
            break;
        db->aliases[db->alias_count].pattern = strdup(pattern);
        db->aliases[db->alias_count++].module = strdup(space + 1);
    }
    free(text);
}

static void load_builtin(struct kmod_db *db)
{
    char *text = read_text(db->moddir, "modules.builtin"), *save = NULL;
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        if (!grow(&db->builtin, &db->builtin_cap, db->builtin_count, sizeof(*db->builtin)))
            break;
        db->builtin[db->builtin_count] = malloc(64);
        if (db->builtin[db->builtin_count])
            kmod_name(line, db->builtin[db->builtin_count++], 64);
    }
    free(text);
}

static bool is_builtin(const struct kmod_db *db, const char *name)
{
    for (size_t i = 0; i < db->builtin_count; i++)
        if (strcmp(db->builtin[i], name) == 0)
            return true;
    return false;
}

static int append(struct kmod_list *out, const char *moddir, const char *path)
{
    char **more = realloc(out->paths, (out->count + 1) * sizeof(*more));
    if (!more)
        return -ENOMEM;
    out->paths = more;
    if (asprintf(&out->paths[out->count], "%s/%s", moddir, path) < 0)
        return -ENOMEM;
    out->count++;
    return 0;
}

static int resolve_name(struct kmod_db *db, const char *name, struct kmod_list *out, int depth);

/* M after what it needs: its softdeps, then its dependencies (modules.dep
 * lists them all, the deepest last: loaded from the end). */
static int emit(struct kmod_db *db, struct module *m, struct kmod_list *out, int depth)
{
    int r = 0;
    if (m->emitted)
        return 0;
    m->emitted = true;
    for (size_t i = 0; r == 0 && i < m->pre_count; i++)
        r = resolve_name(db, m->pre[i], out, depth + 1);
    for (size_t i = m->dep_count; r == 0 && i-- > 0;) {
        struct module *d = by_path(db, m->deps[i]);
        if (!d)
            return err_plain(ENOENT, "%s needs %s, which modules.dep does not list", m->name,
                             m->deps[i]);
        r = emit(db, d, out, depth + 1);
    }
    return r ? r : append(out, db->moddir, m->path);
}

static int resolve_name(struct kmod_db *db, const char *raw, struct kmod_list *out, int depth)
{
    char name[64];
    struct module *m;
    bool found = false;
    int r = 0;

    if (depth > 32)
        return err_plain(ELOOP, "module dependencies loop at '%s'", raw);
    normalize(raw, name, sizeof(name));
    if ((m = by_name(db, name)))
        return emit(db, m, out, depth);
    if (is_builtin(db, name))
        return 0;
    for (size_t i = 0; r == 0 && i < db->alias_count; i++) {
        if (fnmatch(db->aliases[i].pattern, raw, 0) != 0 &&
            fnmatch(db->aliases[i].pattern, name, 0) != 0)
            continue;
        found = true;
        r = resolve_name(db, db->aliases[i].module, out, depth + 1);
    }
    if (r == 0 && !found)
        return err_plain(ENOENT, "no kernel module or alias '%s' in %s", raw, db->moddir);
    return r;
}

static void free_db(struct kmod_db *db)
{
    for (size_t i = 0; i < db->count; i++) {
        for (size_t k = 0; k < db->mods[i].dep_count; k++)
            free(db->mods[i].deps[k]);
        for (size_t k = 0; k < db->mods[i].pre_count; k++)
            free(db->mods[i].pre[k]);
        free(db->mods[i].deps);
        free(db->mods[i].pre);
        free(db->mods[i].path);
    }
    for (size_t i = 0; i < db->alias_count; i++) {
        free(db->aliases[i].pattern);
        free(db->aliases[i].module);
    }
    for (size_t i = 0; i < db->builtin_count; i++)
        free(db->builtin[i]);
    free(db->mods);
    free(db->aliases);
    free(db->builtin);
}

int kmod_resolve(const char *moddir, const char *const *names, size_t count, struct kmod_list *out)
{
    struct kmod_db db = {.moddir = moddir};
    int r = load_deps(&db);

    memset(out, 0, sizeof(*out));
    if (r == 0) {
        load_softdeps(&db);
        load_aliases(&db);
        load_builtin(&db);
    }
    for (size_t i = 0; r == 0 && i < count; i++)
        r = resolve_name(&db, names[i], out, 0);
    free_db(&db);
    if (r < 0)
        kmod_list_free(out);
    return r;
}

void kmod_list_free(struct kmod_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof(*l));
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Inflates in with one of three decoders into a growing buffer. */
static int inflate_xz(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *got)
{
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&s, UINT64_MAX, 0) != LZMA_OK)
        return -ENOMEM;
    s.next_in = in, s.avail_in = len, s.next_out = out, s.avail_out = cap;
    lzma_ret r = lzma_code(&s, LZMA_FINISH);
    *got = cap - s.avail_out;
    lzma_end(&s);
    return r == LZMA_STREAM_END ? 0 : r == LZMA_BUF_ERROR || r == LZMA_OK ? -ENOSPC : -EIO;
}

static int inflate_zst(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *got)
{
    size_t n = ZSTD_decompress(out, cap, in, len);
    if (ZSTD_isError(n)) /* too small a buffer or bad data: a larger one will tell */
        return -ENOSPC;
    *got = n;
    return 0;
}

static int inflate_gz(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *got)
{
    z_stream s = {.next_in = (Bytef *)in, .avail_in = (uInt)len, .next_out = out,
                  .avail_out = (uInt)cap};
    if (inflateInit2(&s, 16 + MAX_WBITS) != Z_OK)
        return -ENOMEM;
    int r = inflate(&s, Z_FINISH);
    *got = cap - s.avail_out;
    inflateEnd(&s);
    return r == Z_STREAM_END ? 0 : r == Z_BUF_ERROR ? -ENOSPC : -EIO;
}

int kmod_read(const char *path, uint8_t **data, size_t *len)
{
    int (*decode)(const uint8_t *, size_t, uint8_t *, size_t, size_t *) =
        ends_with(path, ".xz") ? inflate_xz : ends_with(path, ".zst") ? inflate_zst
                                            : ends_with(path, ".gz") ? inflate_gz : NULL;
    struct mapped_file f;
    int r = file_map(path, "kernel module", &f);

    if (r < 0)
        return r;
    size_t cap = decode ? f.len * 4 + 4096 : f.len + 1;
    for (;;) {
        uint8_t *buf = malloc(cap);
        if (!buf) {
            r = -ENOMEM;
            break;
        }
        if (!decode) {
            memcpy(buf, f.data, f.len);
            *data = buf, *len = f.len;
            break;
        }
        r = decode(f.data, f.len, buf, cap, len);
        if (r == 0) {
            *data = buf;
            break;
        }
        free(buf);
        if (r != -ENOSPC || cap >= MAX_OUTPUT) {
            r = err_plain(EIO, "cannot decompress '%s'", path);
            break;
        }
        cap *= 2;
    }
    file_unmap(&f);
    return r;
}
