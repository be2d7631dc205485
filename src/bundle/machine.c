#include "bundle/machine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/copy.h"
#include "disk/disk.h"
#include "util/blob.h"
#include "util/file.h"
#include "util/err.h"
#include "util/paths.h"

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
    char *dir;
    enum machine_memory memory;
};

struct vm *machine_vm(struct machine *m)
{
    return m->vm;
}

void machine_destroy(struct machine *m)
{
    if (!m)
        return;
    vm_destroy(m->vm);
    vm_config_release(&m->cfg);
    free(m->dir);
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

/* The kernel and initrd come from the source bundle when there is one: a
 * restored VM has no files of them. */
static int add_boot_file(struct bundle_writer *w, const struct machine *m, const char *section,
                         const char *path, enum bundle_encoding enc)
{
    if (m->source && bundle_has(m->source, section))
        return bundle_copy_section(w, m->source, section);
    if (!path)
        return 0;
    return bundle_add_file(w, section, path, enc);
}

/* A bundle holds each disk as its whole content, raw: an instance's
 * overlay (qcow2 on a cached base) or any other format is flattened into
 * a sparse temporary file next to the bundle first. The VM is paused, so
 * reading beside its writer sees a consistent image. */
static int add_disk(struct bundle_writer *w, const struct vm_disk_config *cfg, unsigned index,
                    const char *bundle_path)
{
    char name[BUNDLE_NAME_MAX + 1], *flat = NULL;
    struct disk *d, *out;
    struct disk_create_options o = {0};
    int r;

    disk_section(name, sizeof(name), index);
    r = disk_open_as(cfg->path, DISK_READ_ONLY | DISK_NO_LOCK, cfg->format, &d);
    if (r < 0)
        return r;
    if (d->format == &disk_format_raw && !d->backing) {
        disk_close(d);
        return bundle_add_file(w, name, cfg->path, BUNDLE_ZSTD);
    }
    o.size = d->size;
    if (asprintf(&flat, "%s.%s.tmp", bundle_path, name) < 0) {
        disk_close(d);
        return err_set(ENOMEM, "%s", name);
    }
    unlink(flat);
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

static int add_inputs(struct bundle_writer *w, const struct machine *m, const char *path)
{
    char *json = vm_config_to_json(&m->cfg);
    int r;

    if (!json)
        return -ENOMEM;
    r = bundle_add(w, SECTION_CONFIG, json, strlen(json), BUNDLE_RAW);
    free(json);
    /* A bzImage is compressed already. */
    if (r == 0)
        r = add_boot_file(w, m, SECTION_KERNEL, m->cfg.kernel_path, BUNDLE_RAW);
    if (r == 0)
        r = add_boot_file(w, m, SECTION_INITRD, m->cfg.initrd_path, BUNDLE_ZSTD);
    for (unsigned i = 0; r == 0 && i < m->cfg.disk_count; i++)
        r = add_disk(w, &m->cfg.disks[i], i, path);
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

int machine_save(struct machine *m, const char *path, const struct machine_save_options *o)
{
    struct bundle_writer *w;
    int r;

    if (o->with_state && !vm_paused(m->vm))
        return err_plain(EBUSY, "the VM must be paused to save its state");
    r = bundle_writer_open(path, &w);
    if (r < 0)
        return r;
    /* State first: it is what must match the paused guest exactly. */
    if (o->with_state)
        r = add_state(w, m->vm, o);
    if (r == 0)
        r = add_inputs(w, m, path);
    if (r < 0) {
        bundle_writer_abort(w);
        return r;
    }
    return bundle_writer_commit(w);
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
    char key[65], *dir = paths_cache_dir("disks"), *path = NULL, *tmp = NULL;
    int r = dir ? paths_mkdirs(dir) : -ENOENT;

    if (r == 0)
        r = bundle_section_key(s->source, section, key);
    if (r == 0 && (asprintf(&path, "%s/%s.raw", dir, key) < 0 ||
                   asprintf(&tmp, "%s.%d.tmp", path, (int)getpid()) < 0))
        r = err_set(ENOMEM, "disk cache");
    if (r == 0 && access(path, R_OK) != 0) {
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

static int instance_disk(struct machine *s, unsigned i)
{
    char name[BUNDLE_NAME_MAX + 1], *base = NULL, *overlay;
    int r;

    disk_section(name, sizeof(name), i);
    if (cached_base(s, name, &base) < 0) {
        err_clear();
        return extract(s, name, &s->cfg.disks[i].path);
    }
    if (asprintf(&overlay, "%s/%s.qcow2", s->dir, name) < 0) {
        free(base);
        return err_set(ENOMEM, "%s", name);
    }
    s->cfg.disks[i].path = overlay; /* owned by s->cfg */
    r = fresh_overlay(overlay, base, "raw");
    free(base);
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

/* Mapped from the unpacked cache by default (bench/coldstart: fastest of
 * the three, and flat in RAM size); read into RAM when there can be no
 * cache (no cache folder, or a full disk). */
static int load_memory(void *opaque, const struct guest_memory *mem)
{
    const struct machine *m = opaque;
    char *dir = m->memory != MACHINE_MEMORY_DECOMPRESS ? paths_cache_dir("memory") : NULL;
    enum bundle_memory_mode mode = m->memory == MACHINE_MEMORY_COPY ? BUNDLE_COPY : BUNDLE_MAP;
    int r = -ENOENT;

    if (dir && paths_mkdirs(dir) == 0)
        r = bundle_cached_memory(m->source, SECTION_MEMORY, mem, dir, mode);
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
    if (r == 0)
        r = bundle_read(m->source, SECTION_CONFIG, &json, &len);
    if (r == 0)
        r = vm_config_from_json((const char *)json, &m->cfg);
    free(json);
    if (r == 0) {
        m->cfg.interactive = o->interactive;
        m->cfg.trace_until = o->trace_until;
        m->memory = o->memory;
        r = instance_dir(o->name, &m->dir);
    }
    if (r == 0)
        r = extract_files(m, !bundle_has(m->source, SECTION_STATE));
    if (r == 0)
        r = build(m);
    if (r < 0) {
        machine_destroy(m);
        return r;
    }
    *out = m;
    return 0;
}
