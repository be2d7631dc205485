/* A machine's lifecycle: booted from a config (boot.c), started from a
 * .smolmachine or a store instance (start.c: a bundle with saved state
 * resumes the guest where it was saved, one without boots), saved into a
 * bundle (save.c), answering its control requests (control.c). Its files
 * live in its instance folder (instance.h); what later starts reuse, in
 * the cache (cache.h). The bundle's file format is src/bundle/. */
#ifndef SMOLVM_MACHINE_MACHINE_H
#define SMOLVM_MACHINE_MACHINE_H

#include <stdbool.h>

#include "bundle/bundle.h"
#include "util/hash.h"
#include "core/vm.h"

struct machine;

/* A VM booted from cfg (which must outlive the machine). */
int machine_boot(const struct vm_config *cfg, struct machine **out)
    __attribute__((warn_unused_result));

struct machine_start_options {
    const char *name;        /* the instance: where its writable disks live */
    bool interactive;
    const char *trace_until;
    enum machine_memory {
        MACHINE_MEMORY_DEFAULT,    /* serve */
        MACHINE_MEMORY_MAP,        /* map the unpacked cache (unpacked first, also on a first start), its working set faulted in */
        MACHINE_MEMORY_LAZY,       /* map it, every page faulted in when touched */
        MACHINE_MEMORY_COPY,       /* copy the unpacked cache's data */
        MACHINE_MEMORY_DECOMPRESS, /* decompress from the bundle, no cache */
        MACHINE_MEMORY_SERVE,      /* map; a first start served by userfaultfd while the cache fills (the default) */
    } memory;
    /* A store instance resuming from a bundle of its state: its kernel,
     * initrd and disks replace the bundle's (which has none). */
    const struct vm_config *instance;
    /* A public key file: the bundle must be signed with its private key. */
    const char *trusted_key;
    /* start -p: port forwards replacing the bundle's (a saved host port may
     * be taken here); NULL or none: the bundle's. */
    const struct vm_net_config *forwards;
    /* The host folders of the bundle's shares, by tag (--share at start). */
    const struct vm_share_config *shares;
    unsigned share_count;
    const char *vsock_path; /* the host end of its vsock device, if it has one */
    /* A live migration's destination: the VM, built there while the
     * rounds ran (vm_prepare()), the guest's RAM received into it already,
     * for a bundle whose state goes without memory; finished from the
     * bundle's state. Taken as it is built (*prepared NULL from then on,
     * even when that fails), the caller's to destroy while it is not NULL.
     * NULL, or *prepared NULL: the bundle has its memory. */
    struct vm **prepared;
    /* ... and the layers it said it has (in the layer cache, checked), which
     * the bundle lists without carrying them. */
    const char (*have_layers)[HASH_HEX];
    size_t have_layer_count;
    /* A disk the bundle carries whole goes into the instance folder, not
     * through the disk cache: a bundle started once (a migration's) would
     * leave there a base no later start uses, a disk's size each time. */
    bool disks_private;
};

/* A live migration's destination: the VM built from config (the JSON
 * the source sent, checked against this host) with o's settings, as
 * machine_start() would from a bundle of that config, all but its saved
 * state (vm_prepare()): o->prepared's VM for the start of that bundle. */
int machine_prepare(const char *config, const struct machine_start_options *o, struct vm **out)
    __attribute__((warn_unused_result));

/* Opens FILE, checks it, and builds the VM: restored, or ready to boot. */
int machine_start(const char *path, const struct machine_start_options *o, struct machine **out)
    __attribute__((warn_unused_result));

/* A bundle file, or else (instance_named()) a store instance by name:
 * booted, or resumed from its saved state. An instance that resumed
 * (machine_resumed()) is the caller's to mark so in the store
 * (machine_instance_resumed()), before its guest runs. */
int machine_start_named(const char *what, const struct machine_start_options *o,
                        struct machine **out) __attribute__((warn_unused_result));
/* Reads store instance what's settings from the store for
 * machine_start_named(), when what names one: before --jail confines the
 * VMM, whose jail leaves the store out (docs/security.md). */
int machine_start_named_prepare(const char *what) __attribute__((warn_unused_result));
/* Whether what's start is known, before the jail, to give its VM no
 * network: a store instance whose settings machine_start_named_prepare()
 * read, with none, booting (a saved state brings its own config, read in
 * the jail). A bundle file's is not looked at outside (docs/security.md). */
bool machine_start_named_without_net(const char *what);
/* The folders store instance what maps by default (create --share), each
 * given to add (a non-zero answer stops and is returned): from the
 * settings machine_start_named_prepare() read when it did (instance.json
 * read once a start, not again for the jail's plan), else read now. */
int machine_start_named_each_share(const char *what,
                                   int (*add)(void *ctx, const struct vm_share_config *share),
                                   void *ctx);

struct vm *machine_vm(struct machine *m);
/* Whether m resumed a saved state (its guest did not boot). */
bool machine_resumed(const struct machine *m);
/* m's VM runs elsewhere now (migrated): whatever is left of m here is
 * cleaning up, and the calling thread (which machine_destroy() runs on
 * later) does it from now on behind every other task of the host
 * (SCHED_IDLE), which may be the VM's new home. */
void machine_handed_over(struct machine *m);
void machine_destroy(struct machine *m);

struct machine_save_options {
    bool with_state; /* false: --no-memory, the bundle boots fresh */
    bool state_only; /* config, state and memory only: the disks stay where they are */
    bool flatten;    /* every disk as its whole content, even a store instance's chain */
    bool memory_elsewhere; /* state without its memory: a live migration sent it */
    bool scratch; /* read once and removed (a migration's): not synced to the disk */
    const char *sign_key; /* a private key file: the bundle is signed with it */
    /* Layers listed but not carried (a migration's destination has them). */
    const char (*omit_layers)[HASH_HEX];
    size_t omit_layer_count;
    bundle_progress_fn progress;
    void *opaque;
};

/* Writes FILE from a paused VM (its disks are read while it cannot write
 * them; with state, its state and memory too). A machine started from a
 * bundle copies its kernel and initrd from there. */
int machine_save(struct machine *m, const char *path, const struct machine_save_options *o)
    __attribute__((warn_unused_result));

/* A save in two steps, for a migration: begin writes what cannot change
 * while the VM runs (its kernel and initrd; the VM may run), finish the
 * rest once it is paused (state, config, disks) and puts the file in
 * place, as machine_save(). Either frees s; abort drops it unwritten. */
struct machine_saving;
int machine_save_begin(struct machine *m, const char *path, const struct machine_save_options *o,
                       struct machine_saving **out) __attribute__((warn_unused_result));
/* The file being written (read it, do not close it): begin's bytes are
 * [BUNDLE_HEADER_SIZE, *end) of it, and finish leaves them as they are. */
int machine_saving_file(const struct machine_saving *s, uint64_t *end);
int machine_save_finish(struct machine_saving *s) __attribute__((warn_unused_result));
/* Returns once all of m's RAM is in place (a first start's may still be
 * coming from its bundle, served as the guest touches it): what reads
 * RAM as a whole -- a save, a migration -- calls it first. */
int machine_ram_whole(struct machine *m) __attribute__((warn_unused_result));
void machine_save_abort(struct machine_saving *s);

/* Writes FILE from a VM at rest: cfg's kernel, initrd and disks, and when
 * state names a bundle, that bundle's config, state and memory (as
 * stored). */
int machine_export(const struct vm_config *cfg, const char *state, const char *path, bool flatten,
                   const char *sign_key) __attribute__((warn_unused_result));

#endif
