#include "bundle/machine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle/layers.h"
#include "bundle/signature.h"
#include "bundle/workingset.h"
#include "disk/copy.h"
#include "disk/disk.h"
#include "net/config.h"
#include "util/blob.h"
#include "util/cache.h"
#include "util/file.h"
#include "util/err.h"
#include "util/paths.h"
#include "util/trace.h"

#define SECTION_CONFIG "config"
#define SECTION_KERNEL "kernel"
#define SECTION_INITRD "initrd"
#define SECTION_STATE "state"
#define SECTION_MEMORY "memory"

static void disk_section(char *buf, size_t size, unsigned i)
{
    snprintf(buf, size, "disk.%u", i);
}

struct machine {
    struct vm *vm;
    struct bundle *source; /* the bundle it started from, or NULL */
    struct vm_config cfg;  /* strings owned here when started from a bundle */
    struct bundle_chains chains; /* disks carried as layers */
    char *dir;
    enum machine_memory memory;
    char *working_set; /* to record, a while after the start */
    struct working_set_recorder *recorder;
};

/* How long after a start the pages present make its working set: the
 * guest's first second (REAP's window). */
#define WORKING_SET_WINDOW_MS 1000

struct vm *machine_vm(struct machine *m)
{
    return m->vm;
}

void machine_destroy(struct machine *m)
{
    if (!m)
        return;
    working_set_recorder_stop(m->recorder);
    free(m->working_set);
    vm_destroy(m->vm);
    vm_config_release(&m->cfg);
    free(m->dir);
    bundle_chains_release(&m->chains);
    bundle_close(m->source);
    free(m);
}

int machine_boot(const struct vm_config *cfg, struct machine **out)
{
    struct machine *m = calloc(1, sizeof(*m));
    int r;

    if (!m)
        return err_set(ENOMEM, "machine");
    m->cfg = *cfg;
    m->cfg.owns_strings = false;
    r = vm_create(&m->cfg, &m->vm);
    if (r < 0) {
        free(m);
        return r;
    }
    *out = m;
    return 0;
}

/* What a bundle is written from: a machine (running or paused), or an
 * instance of the store at rest. */
struct save_job {
    const struct vm_config *cfg;
    const struct bundle *source; /* copied from when the files are not at hand */
    const char *path;
    bool flatten;
    struct bundle_chains chains;
};

/* The kernel and initrd come from the source bundle when there is one: a
 * restored VM has no files of them. */
static int add_boot_file(struct bundle_writer *w, const struct save_job *job, const char *section,
                         const char *path, enum bundle_encoding enc)
{
    if (job->source && bundle_has(job->source, section))
        return bundle_copy_section(w, job->source, section);
    if (!path)
        return 0;
    return bundle_add_file(w, section, path, enc);
}

/* A temporary file next to the bundle being written. */
static char *scratch_path(const struct save_job *job, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s.%s.tmp", job->path, name) < 0) {
        err_set(ENOMEM, "%s", name);
        return NULL;
    }
    unlink(p);
    return p;
}

/* A disk flattened into its whole content, raw: an overlay (qcow2 on a
 * cached base) or any other format becomes a sparse temporary file next to
 * the bundle first. The VM is paused, so reading beside its writer sees a
 * consistent image. */
static int add_flat_disk(struct bundle_writer *w, const struct save_job *job,
                         const struct vm_disk_config *cfg, const char *name)
{
    char *flat;
    struct disk *d, *out;
    struct disk_create_options o = {0};
    int r = disk_open_as(cfg->path, DISK_READ_ONLY | DISK_NO_LOCK, cfg->format, &d);

    if (r < 0)
        return r;
    if (d->format == &disk_format_raw && !d->backing) {
        disk_close(d);
        return bundle_add_file(w, name, cfg->path, BUNDLE_ZSTD);
    }
    o.size = d->size;
    if (!(flat = scratch_path(job, name))) {
        disk_close(d);
        return -ENOMEM;
    }
    r = disk_create("raw", flat, &o);
    if (r == 0)
        r = disk_open_as(flat, 0, "raw", &out);
    if (r == 0) {
        r = disk_copy(d, out, false, NULL, NULL);
        disk_close(out);
    }
    disk_close(d);
    if (r == 0)
        r = bundle_add_file(w, name, flat, BUNDLE_ZSTD);
    unlink(flat);
    free(flat);
    return r;
}

/* A store instance's disk goes as its chain of layers (each stored once,
 * so an importer that has them skips them) unless flattened. */
static int add_disk(struct bundle_writer *w, struct save_job *job, unsigned index)
{
    const struct vm_disk_config *cfg = &job->cfg->disks[index];
    char name[BUNDLE_NAME_MAX + 1], *tmp;
    int r;

    disk_section(name, sizeof(name), index);
    if (job->flatten || !bundle_disk_is_layered(cfg->path, cfg->format))
        return add_flat_disk(w, job, cfg, name);
    if (!(tmp = scratch_path(job, name)))
        return -ENOMEM;
    r = bundle_chains_add_disk(&job->chains, w, index, cfg->path, tmp);
    free(tmp);
    return r;
}

static int add_config(struct bundle_writer *w, const struct save_job *job)
{
    char *json = vm_config_to_json(job->cfg);
    int r = json ? bundle_add(w, SECTION_CONFIG, json, strlen(json), BUNDLE_RAW) : -ENOMEM;
    free(json);
    return r;
}

static int add_inputs(struct bundle_writer *w, struct save_job *job)
{
    /* A bzImage is compressed already. */
    int r = add_boot_file(w, job, SECTION_KERNEL, job->cfg->kernel_path, BUNDLE_RAW);
    if (r == 0)
        r = add_boot_file(w, job, SECTION_INITRD, job->cfg->initrd_path, BUNDLE_ZSTD);
    for (unsigned i = 0; r == 0 && i < job->cfg->disk_count; i++)
        r = add_disk(w, job, i);
    if (r == 0)
        r = bundle_chains_write(&job->chains, w);
    bundle_chains_release(&job->chains);
    return r;
}

static int add_state(struct bundle_writer *w, struct vm *vm, const struct machine_save_options *o)
{
    struct blob state = {0};
    int r = vm_save_state(vm, &state);

    if (r == 0)
        r = bundle_add(w, SECTION_STATE, state.data, state.len, BUNDLE_RAW);
    blob_free(&state);
    if (r == 0)
        r = bundle_add_memory(w, SECTION_MEMORY, vm_memory(vm), o->progress, o->opaque);
    return r;
}

/* Signed last (sign_key: a private key file, or NULL), over every
 * section written. */
static int finish(struct bundle_writer *w, int r, const char *sign_key)
{
    if (r == 0 && sign_key)
        r = bundle_sign(w, sign_key);
    if (r < 0) {
        bundle_writer_abort(w);
        return r;
    }
    return bundle_writer_commit(w);
}

int machine_save(struct machine *m, const char *path, const struct machine_save_options *o)
{
    struct save_job job = {.cfg = &m->cfg, .source = m->source, .path = path,
                           .flatten = o->flatten};
    struct bundle_writer *w;
    int r;

    /* Its disks are read beside their writer: the guest must not write. */
    if (!vm_paused(m->vm))
        return err_plain(EBUSY, "the VM must be paused to save it");
    /* A bundle signed with a public key could never be verified. */
    if (o->sign_key && (r = bundle_check_signing_key(o->sign_key)) < 0)
        return r;
    r = bundle_writer_open(path, &w);
    if (r < 0)
        return r;
    /* State first: it is what must match the paused guest exactly. */
    if (o->with_state)
        r = add_state(w, m->vm, o);
    if (r == 0)
        r = add_config(w, &job);
    if (r == 0 && !o->state_only)
        r = add_inputs(w, &job);
    return finish(w, r, o->sign_key);
}

bool machine_has_state(const struct bundle *b)
{
    return bundle_has(b, SECTION_STATE);
}

int machine_copy_state(const char *from, const char *to)
{
    static const char *const sections[] = {SECTION_CONFIG, SECTION_STATE, SECTION_MEMORY};
    struct bundle *b;
    struct bundle_writer *w;
    int r = bundle_open(from, &b);

    if (r < 0)
        return r;
    if (!bundle_has(b, SECTION_STATE))
        r = err_plain(EINVAL, "'%s' holds no saved state", from);
    if (r == 0)
        r = bundle_writer_open(to, &w);
    for (size_t i = 0; r == 0 && i < sizeof(sections) / sizeof(sections[0]); i++)
        if ((r = bundle_copy_section(w, b, sections[i])) < 0)
            bundle_writer_abort(w);
    if (r == 0)
        r = bundle_writer_commit(w);
    bundle_close(b);
    return r;
}

int machine_export(const struct vm_config *cfg, const char *state, const char *path, bool flatten,
                   const char *sign_key)
{
    struct save_job job = {.cfg = cfg, .path = path, .flatten = flatten};
    struct bundle *source = NULL;
    struct bundle_writer *w;
    int r = sign_key ? bundle_check_signing_key(sign_key) : 0;

    if (r == 0 && state)
        r = bundle_open(state, &source);
    if (r == 0)
        r = bundle_writer_open(path, &w);
    if (r < 0) {
        bundle_close(source);
        return r;
    }
    /* The saved state goes with the config it was saved under. */
    if (source)
        r = bundle_copy_section(w, source, SECTION_STATE);
    if (r == 0 && source)
        r = bundle_copy_section(w, source, SECTION_MEMORY);
    if (r == 0)
        r = source ? bundle_copy_section(w, source, SECTION_CONFIG) : add_config(w, &job);
    if (r == 0)
        r = add_inputs(w, &job);
    bundle_close(source);
    return finish(w, r, sign_key);
}

/* ---- start ---- */

/* Where an instance's own files (its disks, its kernel) live. */
static int instance_dir(const char *name, char **out)
{
    char *dir = paths_data_dir("instances"), *path = NULL;
    int r;

    if (!dir || asprintf(&path, "%s/%s", dir, name) < 0) {
        free(dir);
        return err_plain(ENOENT, "no folder for instances (set HOME or XDG_DATA_HOME)");
    }
    r = paths_mkdirs(path);
    free(dir);
    if (r < 0) {
        r = err_set(-r, "cannot create '%s'", path);
        free(path);
        return r;
    }
    *out = path;
    return 0;
}

static int extract(struct machine *s, const char *section, const char **path)
{
    char *p;
    int r;

    if (asprintf(&p, "%s/%s", s->dir, section) < 0)
        return err_set(ENOMEM, "%s", section);
    *path = p; /* owned by s->cfg */
    r = bundle_extract(s->source, section, p);
    return r;
}

/* A bundle's disk, unpacked once into the cache under the hash of its
 * section and never written again: the shared, read-only base of every
 * instance started from it. */
static int cached_base(const struct machine *s, const char *section, char **out)
{
    char key[65], *dir = NULL, *path = NULL, *tmp = NULL;
    int r = cache_dir_prepare("disks", &dir);

    if (r == 0)
        r = bundle_section_key(s->source, section, key);
    if (r == 0 && (asprintf(&path, "%s/%s.raw", dir, key) < 0 ||
                   asprintf(&tmp, "%s.%d.tmp", path, (int)getpid()) < 0))
        r = err_set(ENOMEM, "disk cache");
    if (r == 0 && !cache_file_usable(path)) {
        /* Unpacked under a temporary name and renamed: a crash or a
         * concurrent start never leaves a half-written base in place. */
        r = bundle_extract(s->source, section, tmp);
        if (r == 0 && (chmod(tmp, 0444) < 0 || file_sync(tmp) < 0 || rename(tmp, path) < 0))
            r = err_set(errno, "disk cache '%s'", path);
        if (r < 0)
            unlink(tmp);
    }
    free(dir);
    free(tmp);
    if (r < 0) {
        free(path);
        return r;
    }
    *out = path;
    return 0;
}

/* Disk i of the instance: a qcow2 overlay whose backing file is the cached
 * base, so a start copies nothing and the bundle's disk is never written;
 * a full copy where there is no cache. */
/* A fresh, empty qcow2 delta at path on top of base. */
static int fresh_overlay(const char *path, const char *base, const char *base_format)
{
    struct disk *b;
    int r;

    unlink(path);
    r = disk_open_as(base, DISK_READ_ONLY, base_format, &b);
    if (r == 0) {
        struct disk_create_options o = {.size = b->size, .backing = base,
                                        .backing_format = base_format};
        disk_close(b);
        r = disk_create("qcow2", path, &o);
    }
    return r;
}

int machine_instance_overlay(const char *name, const char *file, const char *base,
                             const char *base_format, char **out)
{
    char *dir, *path = NULL;
    int r = instance_dir(name, &dir);

    if (r < 0)
        return r;
    if (asprintf(&path, "%s/%s", dir, file) < 0)
        r = err_set(ENOMEM, "%s", file);
    free(dir);
    if (r == 0)
        r = fresh_overlay(path, base, base_format);
    if (r < 0) {
        free(path);
        return r;
    }
    *out = path;
    return 0;
}

/* Disk i is now the file at path (owned by cfg from here on). */
static int set_disk(struct vm_config *cfg, unsigned i, char *path, const char *format)
{
    char *f = format ? strdup(format) : NULL;
    free((char *)cfg->disks[i].path);
    free((char *)cfg->disks[i].format);
    cfg->disks[i].path = path;
    cfg->disks[i].format = f;
    return !path || (format && !f) ? err_set(ENOMEM, "disk %u", i) : 0;
}

/* A disk carried as layers: each unpacked once (and checked) into the
 * layer cache, where they back each other by name. *top: the top's file. */
static int cached_layers(const struct machine *s, unsigned i, char **top)
{
    const struct bundle_layer *l = bundle_chains_find(&s->chains, s->chains.tops[i]);
    char *dir = NULL;
    int r = cache_dir_prepare("layers", &dir);
    bool added;

    if (r == 0 && asprintf(top, "%s/%s.%s", dir, l->hash, l->format) < 0)
        r = err_set(ENOMEM, "layers");
    /* Parents come before children in the table: the walk ends. */
    for (; r == 0 && l; l = l->parent[0] ? bundle_chains_find(&s->chains, l->parent) : NULL)
        r = bundle_layer_extract(s->source, &s->chains, l, dir, &added);
    free(dir);
    return r;
}

static int instance_disk(struct machine *s, unsigned i)
{
    char name[BUNDLE_NAME_MAX + 1], *base = NULL, *overlay;
    const char *base_format = "raw";
    int r;

    disk_section(name, sizeof(name), i);
    if (i < s->chains.disk_count && s->chains.tops[i][0]) {
        r = cached_layers(s, i, &base);
        /* As the layer table says: a top declared raw is never opened as
         * what its bytes look like. */
        base_format = bundle_chains_find(&s->chains, s->chains.tops[i])->format;
        if (r < 0) {
            free(base);
            return r;
        }
    } else if (cached_base(s, name, &base) < 0) {
        const char *path = NULL;
        err_clear();
        r = extract(s, name, &path);
        int owned = set_disk(&s->cfg, i, (char *)path, "raw");
        return r < 0 ? r : owned;
    }
    if (asprintf(&overlay, "%s/%s.qcow2", s->dir, name) < 0) {
        free(base);
        return err_set(ENOMEM, "%s", name);
    }
    r = set_disk(&s->cfg, i, overlay, "qcow2");
    if (r == 0)
        r = fresh_overlay(overlay, base, base_format);
    free(base);
    return r;
}

/* A store instance resuming: its own files, the state's config. */
static int adopt_instance(struct vm_config *cfg, const struct vm_config *instance)
{
    if (instance->disk_count != cfg->disk_count)
        return err_plain(EINVAL, "the instance has %u disks, its saved state %u",
                         instance->disk_count, cfg->disk_count);
    free((char *)cfg->kernel_path);
    free((char *)cfg->initrd_path);
    cfg->kernel_path = instance->kernel_path ? strdup(instance->kernel_path) : NULL;
    cfg->initrd_path = instance->initrd_path ? strdup(instance->initrd_path) : NULL;
    int r = 0;
    for (unsigned i = 0; r == 0 && i < cfg->disk_count; i++)
        r = set_disk(cfg, i, strdup(instance->disks[i].path), instance->disks[i].format);
    return r;
}

static int extract_files(struct machine *s, bool boots)
{
    int r = 0;

    if (boots) {
        r = extract(s, SECTION_KERNEL, &s->cfg.kernel_path);
        if (r == 0 && bundle_has(s->source, SECTION_INITRD))
            r = extract(s, SECTION_INITRD, &s->cfg.initrd_path);
    }
    for (unsigned i = 0; r == 0 && i < s->cfg.disk_count; i++)
        r = instance_disk(s, i);
    return r;
}

/* The working set recorded next to the memory cache is faulted in; when
 * there is none (or it does not fit this RAM) this start records one. */
static void prefetch(struct machine *m, const char *dir, const struct guest_memory *mem)
{
    char key[65], *path;
    if (bundle_section_key(m->source, SECTION_MEMORY, key) < 0 ||
        asprintf(&path, "%s/%s.ws", dir, key) < 0)
        return;
    struct working_set_counts c;
    int r = working_set_prefetch(path, mem, &c);
    if (r == 0)
        trace_set_count(TRACE_PREFETCHED_PAGES, c.read_pages + c.written_pages);
    if (r == -EINVAL)
        unlink(path);
    if (r < 0)
        m->working_set = path;
    else
        free(path);
    err_clear();
}

/* Mapped from the unpacked cache by default (bench/coldstart: fastest of
 * the three, and flat in RAM size); read into RAM when there can be no
 * cache (no cache folder, or a full disk). */
static int load_memory(void *opaque, struct guest_memory *mem)
{
    struct machine *m = opaque;
    char *dir = NULL;
    enum bundle_memory_mode mode = m->memory == MACHINE_MEMORY_COPY ? BUNDLE_COPY : BUNDLE_MAP;
    int r = -ENOENT;

    if (m->memory != MACHINE_MEMORY_DECOMPRESS && cache_dir_prepare("memory", &dir) < 0)
        err_clear(); /* no usable cache: decompressed from the bundle */
    if (dir)
        r = bundle_cached_memory(m->source, SECTION_MEMORY, mem, dir, mode);
    if (r == 0 && (m->memory == MACHINE_MEMORY_DEFAULT || m->memory == MACHINE_MEMORY_MAP))
        prefetch(m, dir, mem);
    free(dir);
    if (r == 0 || r == -EINVAL)
        return r;
    err_clear();
    return bundle_load_memory(m->source, SECTION_MEMORY, mem);
}

static int build(struct machine *s)
{
    struct vm_snapshot snap = {.load_memory = load_memory, .opaque = s};
    uint8_t *state;
    size_t len;
    int r;

    if (!bundle_has(s->source, SECTION_STATE))
        return vm_create(&s->cfg, &s->vm);
    r = bundle_read(s->source, SECTION_STATE, &state, &len);
    if (r < 0)
        return r;
    snap.state = state;
    snap.state_len = len;
    r = vm_restore(&s->cfg, &snap, &s->vm);
    free(state);
    return r;
}

int machine_start(const char *path, const struct machine_start_options *o, struct machine **out)
{
    struct machine *m = calloc(1, sizeof(*m));
    uint8_t *json = NULL;
    size_t len;
    int r;

    if (!m)
        return err_set(ENOMEM, "machine");
    r = bundle_open(path, &m->source);
    if (r == 0 && o->trusted_key)
        r = bundle_check_signature(m->source, o->trusted_key);
    if (r == 0)
        r = bundle_read(m->source, SECTION_CONFIG, &json, &len);
    if (r == 0)
        r = vm_config_from_json((const char *)json, &m->cfg);
    free(json);
    /* A bundle moved to a smaller host is refused before anything of it
     * is unpacked or an instance folder made. */
    if (r == 0 && (r = vm_config_check(&m->cfg)) < 0)
        err_prefix("'%s' cannot start on this host", path);
    trace_mark(TRACE_BUNDLE_OPENED);
    if (r == 0) {
        m->cfg.interactive = o->interactive;
        m->cfg.trace_until = o->trace_until;
        m->memory = o->memory;
        if (o->forwards)
            r = net_replace_forwards(&m->cfg.net, o->forwards);
        /* A store instance has its folder (and disks) already. */
        if (!o->instance)
            r = instance_dir(o->name, &m->dir);
    }
    if (r == 0)
        r = bundle_chains_read(m->source, &m->chains);
    if (r == 0 && o->instance)
        r = adopt_instance(&m->cfg, o->instance);
    else if (r == 0)
        r = extract_files(m, !bundle_has(m->source, SECTION_STATE));
    if (r == 0)
        r = build(m);
    if (r == 0 && m->working_set &&
        working_set_recorder_start(m->working_set, vm_memory(m->vm), WORKING_SET_WINDOW_MS,
                                   &m->recorder) < 0)
        err_clear(); /* only later starts lose */
    if (r < 0) {
        machine_destroy(m);
        return r;
    }
    *out = m;
    return 0;
}
