/* Saving a machine into a .smolmachine: from a paused VM (machine_save),
 * or from a store instance at rest (machine_export). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle/sections.h"
#include "bundle/signature.h"
#include "disk/copy.h"
#include "disk/disk.h"
#include "machine/internal.h"
#include "machine/ram_faults.h"
#include "machine/workingset.h"
#include "util/blob.h"
#include "util/err.h"

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

    section_disk(name, index);
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

/* What cannot change while the VM runs: its kernel and initrd, and the
 * layers under a store instance's disks (not the delta the guest writes). */
static int add_boot_files(struct bundle_writer *w, struct save_job *job)
{
    /* A bzImage is compressed already. */
    int r = add_boot_file(w, job, SECTION_KERNEL, job->cfg->kernel_path, BUNDLE_RAW);
    if (r == 0)
        r = add_boot_file(w, job, SECTION_INITRD, job->cfg->initrd_path, BUNDLE_ZSTD);
    for (unsigned i = 0; r == 0 && !job->flatten && i < job->cfg->disk_count; i++) {
        const struct vm_disk_config *d = &job->cfg->disks[i];
        if (bundle_disk_is_layered(d->path, d->format))
            r = bundle_chains_add_layers(&job->chains, w, d->path);
    }
    return r;
}

static int add_disks(struct bundle_writer *w, struct save_job *job)
{
    int r = 0;
    for (unsigned i = 0; r == 0 && i < job->cfg->disk_count; i++)
        r = add_disk(w, job, i);
    if (r == 0)
        r = bundle_chains_write(&job->chains, w);
    bundle_chains_release(&job->chains);
    return r;
}

static int add_inputs(struct bundle_writer *w, struct save_job *job)
{
    int r = add_boot_files(w, job);
    return r ? r : add_disks(w, job);
}

/* The working set a later start of the bundle m started from recorded
 * (the pages the guest touched before its first output), when there is an
 * exact one of this RAM: a first start of the new bundle decodes its
 * chunks before the guest runs, as a later start would find them. None is
 * no failure (the section is optional). */
static int add_working_set(struct bundle_writer *w, const struct machine *m)
{
    uint8_t *data;
    size_t len;

    if (!m->known_working_set ||
        working_set_encoding(m->known_working_set, vm_memory(m->vm), SECTION_WORKINGSET_MAX, &data,
                             &len) < 0) {
        err_clear();
        return 0;
    }
    int r = bundle_add(w, SECTION_WORKINGSET, data, len, BUNDLE_RAW);
    free(data);
    return r;
}

static int add_state(struct bundle_writer *w, const struct machine *m,
                     const struct machine_save_options *o)
{
    struct blob state = {0};
    int r = vm_save_state(m->vm, &state);

    if (r == 0)
        r = bundle_add(w, SECTION_STATE, state.data, state.len, BUNDLE_RAW);
    blob_free(&state);
    if (r == 0 && !o->memory_elsewhere)
        r = bundle_add_memory(w, SECTION_MEMORY, vm_memory(m->vm), o->progress, o->opaque);
    if (r == 0 && !o->memory_elsewhere)
        r = add_working_set(w, m);
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

struct machine_saving {
    struct machine *m;
    struct machine_save_options o;
    struct save_job job;
    struct bundle_writer *w;
};

int machine_save_begin(struct machine *m, const char *path, const struct machine_save_options *o,
                       struct machine_saving **out)
{
    struct machine_saving *s;
    int r;

    /* A bundle signed with a public key could never be verified. */
    if (o->sign_key && (r = bundle_check_signing_key(o->sign_key)) < 0)
        return r;
    if (!(s = calloc(1, sizeof(*s))))
        return err_set(ENOMEM, "saving");
    s->m = m;
    s->o = *o;
    s->job = (struct save_job){.cfg = &m->cfg, .source = m->source, .path = path,
                               .flatten = o->flatten,
                               .chains = {.omit = o->omit_layers,
                                          .omit_count = o->omit_layer_count}};
    r = bundle_writer_open(path, &s->w);
    if (r == 0 && o->scratch)
        bundle_writer_scratch(s->w);
    if (r == 0 && !o->state_only)
        r = add_boot_files(s->w, &s->job);
    if (r < 0) {
        machine_save_abort(s);
        return r;
    }
    *out = s;
    return 0;
}

int machine_saving_file(const struct machine_saving *s, uint64_t *end)
{
    return bundle_writer_file(s->w, end);
}

int machine_ram_whole(struct machine *m)
{
    return m->faults ? ram_faults_complete(m->faults) : 0;
}

int machine_save_finish(struct machine_saving *s)
{
    struct bundle_writer *w = s->w;
    int r = 0;

    /* Its disks are read beside their writer: the guest must not write. */
    if (!vm_paused(s->m->vm))
        r = err_plain(EBUSY, "the VM must be paused to save it");
    if (r == 0)
        r = machine_ram_whole(s->m);
    if (r == 0 && s->o.with_state)
        r = add_state(w, s->m, &s->o);
    if (r == 0)
        r = add_config(w, &s->job);
    if (r == 0 && !s->o.state_only)
        r = add_disks(w, &s->job);
    r = finish(w, r, s->o.sign_key);
    bundle_chains_release(&s->job.chains); /* a failure before the disks */
    free(s);
    return r;
}

void machine_save_abort(struct machine_saving *s)
{
    if (!s)
        return;
    bundle_writer_abort(s->w);
    bundle_chains_release(&s->job.chains);
    free(s);
}

int machine_save(struct machine *m, const char *path, const struct machine_save_options *o)
{
    struct machine_saving *s;
    int r;

    /* Checked before anything is written. */
    if (!vm_paused(m->vm))
        return err_plain(EBUSY, "the VM must be paused to save it");
    r = machine_save_begin(m, path, o, &s);
    return r ? r : machine_save_finish(s);
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
    if (r == 0 && source && bundle_has(source, SECTION_WORKINGSET))
        r = bundle_copy_section(w, source, SECTION_WORKINGSET);
    if (r == 0)
        r = source ? bundle_copy_section(w, source, SECTION_CONFIG) : add_config(w, &job);
    if (r == 0)
        r = add_inputs(w, &job);
    bundle_close(source);
    return finish(w, r, sign_key);
}
