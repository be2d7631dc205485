/* Starting a machine from a .smolmachine (resumed from its saved state,
 * or booted), or a store instance by its name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle/sections.h"
#include "bundle/signature.h"
#include "machine/cache.h"
#include "machine/instance.h"
#include "machine/internal.h"
#include "machine/ram_faults.h"
#include "machine/workingset.h"
#include "net/config.h"
#include "util/err.h"
#include "util/trace.h"

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

/* Disk i of the instance: a qcow2 overlay whose backing file is the cached
 * base, so a start copies nothing and the bundle's disk is never written;
 * a full copy where there is no cache, or where the start asked for one. */
static int instance_disk(struct machine *s, unsigned i)
{
    char name[BUNDLE_NAME_MAX + 1], *base = NULL, *overlay;
    const char *base_format = "raw";
    int r;

    section_disk(name, i);
    if (i < s->chains.disk_count && s->chains.tops[i][0]) {
        r = machine_cached_layers(s->source, &s->chains, i, &base);
        /* As the layer table says: a top declared raw is never opened as
         * what its bytes look like. */
        base_format = bundle_chains_find(&s->chains, s->chains.tops[i])->format;
        if (r < 0) {
            free(base);
            return r;
        }
    } else if (s->disks_private || machine_cached_disk(s->source, name, &base) < 0) {
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
        r = instance_overlay_at(overlay, base, base_format);
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

/* The saved RAM, as the start asked (machine/cache.h). */
static int load_memory(void *opaque, struct guest_memory *mem)
{
    struct machine *m = opaque;
    int r = machine_cached_memory(m->source, mem, m->memory, &m->working_set, &m->faults,
                                  &m->publisher);
    if (r == 0 && machine_working_set_path(m->source, &m->known_working_set) < 0)
        err_clear(); /* only a save loses: it carries none */
    return r;
}

static void record_now(void *recorder)
{
    working_set_recorder_now(recorder);
}

/* The pages the guest touched up to its first output (its answer, not an
 * echo of its input: core/console.h): what a later start
 * waits for before the user sees anything (machine/workingset.h). */
static void record_working_set(struct machine *m)
{
    if (working_set_recorder_start(m->working_set, vm_memory(m->vm), WORKING_SET_WINDOW_MS,
                                   &m->recorder) < 0) {
        err_clear(); /* only later starts lose */
        return;
    }
    console_on_next_output(vm_console(m->vm), record_now, m->recorder);
}

static void faults_record_now(void *faults)
{
    ram_faults_record_now(faults);
}

/* A first start's RAM that cannot be served whole (a corrupt chunk):
 * the VM stops as for any other error, its disks flushed and closed. */
static void stop_broken(void *vm, const char *message)
{
    vm_memory_lost(vm); /* devices write out no page let go as zeros */
    vm_fail(vm, "%s: the guest cannot go on", message);
}

static int build(struct machine *s)
{
    struct vm_snapshot snap = {.load_memory = load_memory, .opaque = s};
    uint8_t *state;
    size_t len;
    int r;

    if (s->prepared && *s->prepared && !bundle_has_state(s->source))
        return err_plain(EINVAL, "the VM's bundle has no saved state for the RAM it sent");
    if (!bundle_has_state(s->source))
        return vm_create(&s->cfg, &s->vm);
    r = bundle_read(s->source, SECTION_STATE, &state, &len);
    if (r < 0)
        return r;
    if (s->prepared) { /* vm_restore() takes it, built or not */
        snap.prepared = *s->prepared;
        *s->prepared = NULL;
    }
    snap.state = state;
    snap.state_len = len;
    r = vm_restore(&s->cfg, &snap, &s->vm);
    free(state);
    return r;
}

/* What a start's options set in a config: the terminal, the trace's
 * marker, the vsock socket, the shares' folders, the port forwards. */
static int apply_options(struct vm_config *cfg, const struct machine_start_options *o)
{
    cfg->interactive = o->interactive;
    cfg->trace_until = o->trace_until;
    cfg->vsock_path = o->vsock_path;
    int r = vm_config_map_shares(cfg, o->shares, o->share_count);
    if (r == 0 && o->forwards)
        r = net_replace_forwards(&cfg->net, o->forwards);
    return r;
}

int machine_prepare(const char *config, const struct machine_start_options *o, struct vm **out)
{
    struct vm_config cfg;
    int r = vm_config_from_json(config, &cfg);

    if (r == 0 && (r = apply_options(&cfg, o)) < 0)
        vm_config_release(&cfg);
    return r < 0 ? r : vm_prepare(&cfg, out);
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
    if (r == 0)
        r = apply_options(&m->cfg, o);
    trace_mark(TRACE_BUNDLE_OPENED);
    uint64_t filing = trace_now_us();
    if (r == 0) {
        m->memory = o->memory;
        m->prepared = o->prepared;
        m->disks_private = o->disks_private;
        /* A store instance has its folder (and disks) already. */
        if (r == 0 && !o->instance)
            r = instance_dir(o->name, &m->dir);
    }
    if (r == 0)
        r = bundle_chains_read_thin(m->source, &m->chains, o->have_layers, o->have_layer_count);
    if (r == 0 && o->instance)
        r = adopt_instance(&m->cfg, o->instance);
    else if (r == 0)
        r = extract_files(m, !bundle_has_state(m->source));
    trace_add_count(TRACE_START_FILES_US, trace_now_us() - filing);
    if (r == 0)
        r = build(m);
    if (r == 0 && m->faults) {
        ram_faults_when_broken(m->faults, stop_broken, m->vm);
        console_on_next_output(vm_console(m->vm), faults_record_now, m->faults);
    }
    if (r == 0 && m->working_set)
        record_working_set(m);
    if (r < 0) {
        machine_destroy(m);
        return r;
    }
    *out = m;
    return 0;
}

/* A store instance's settings (machine_start_named_prepare()); its
 * strings live as long as the VM. */
static struct {
    struct vm_config cfg;
    const char *resume;
    bool shared, read;
} named;

int machine_start_named_prepare(const char *what)
{
    int r;

    if (!instance_named(what) || named.read)
        return 0;
    vm_config_defaults(&named.cfg);
    r = machine_instance_config(what, &named.cfg, &named.resume, &named.shared);
    named.read = r == 0;
    return r;
}

bool machine_start_named_without_net(const char *what)
{
    return instance_named(what) && named.read && !named.resume &&
           named.cfg.net.mode == VM_NET_NONE;
}

int machine_start_named_each_share(const char *what,
                                   int (*add)(void *ctx, const struct vm_share_config *share),
                                   void *ctx)
{
    int r = 0;

    if (!instance_named(what) || !named.read)
        return machine_instance_each_share(what, add, ctx);
    /* Not yet remapped by --share (machine_start_named() does that). */
    for (unsigned k = 0; k < named.cfg.share_count && r == 0; k++)
        r = add(ctx, &named.cfg.shares[k]);
    return r;
}

int machine_start_named(const char *what, const struct machine_start_options *so,
                        struct machine **m)
{
    struct vm_config *cfg = &named.cfg;

    if (!instance_named(what))
        return machine_start(what, so, m);
    if (so->trusted_key)
        return err_plain(EINVAL, "--verify checks a bundle file; '%s' is an instance", what);
    int r = machine_start_named_prepare(what);
    if (r < 0)
        return r;
    cfg->interactive = so->interactive;
    cfg->trace_until = so->trace_until;
    cfg->vsock_path = so->vsock_path;
    r = vm_config_map_shares(cfg, so->shares, so->share_count);
    if (r == 0 && !named.resume && so->forwards) /* a saved state's own net: machine_start's */
        r = net_replace_forwards(&cfg->net, so->forwards);
    if (r < 0 || !named.resume)
        return r < 0 ? r : machine_boot(cfg, m);
    struct machine_start_options from_state = *so;
    from_state.instance = cfg;
    /* The instance's folders for the saved state's tags, then --share's. */
    static struct vm_share_config shares[2 * VM_MAX_SHARES];
    unsigned count = 0;
    for (unsigned i = 0; i < cfg->share_count; i++)
        shares[count++] = cfg->shares[i];
    for (unsigned i = 0; i < so->share_count; i++)
        shares[count++] = so->shares[i];
    from_state.shares = shares;
    from_state.share_count = count;
    /* A suspended state is read once: caching its memory would only fill
     * the cache. */
    if (!named.shared && so->memory == MACHINE_MEMORY_DEFAULT)
        from_state.memory = MACHINE_MEMORY_DECOMPRESS;
    return machine_start(named.resume, &from_state, m);
}
