/* The local store under $XDG_DATA_HOME/smolvm: read-only layers named by
 * the SHA-256 of their bytes (layers/<hash>.raw|.qcow2, each with a JSON
 * sidecar saying its parent, format and size), and instances
 * (instances/<name>/: instance.json, and delta.qcow2 on top of a layer
 * chain). Changes happen under one lock and land by rename, so two smolvm
 * processes never see a half-made layer or instance. A layer file is never
 * opened for writing once it is in the store. */
#ifndef SMOLVM_STORE_STORE_H
#define SMOLVM_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "util/hash.h"

struct json_t;
struct store;

/* What an instance boots with (its disk is always its delta). The kernel
 * and initrd are layers too (raw bytes, content-addressed, shared):
 * store_create takes their hashes, store_instance gives their paths. */
struct instance_boot {
    const char *kernel, *initrd, *cmdline;
    /* A bundle with saved state: the instance's pristine state, which its
     * first start (and the first after each reset) resumes. */
    const char *state;
    unsigned cpus;
    uint64_t mem_bytes;
    /* How its kernel finds the virtio devices: a kernel without ACPI
     * (--kernel micro) needs them on its command line. */
    enum vm_discovery discovery;
    /* create --share: host folders by tag (each start may remap a tag) */
    struct vm_share_config shares[VM_MAX_SHARES];
    unsigned share_count;
    /* the guest's network (instance.json "net"; none when absent, as in
     * instances made before networks were kept) */
    struct vm_net_config net;
};

int store_open(struct store **out) __attribute__((warn_unused_result));
void store_close(struct store *s);

/* Copies an image (raw, or qcow2 whose backing file is a store layer) into
 * the store as a layer; the same bytes give the same layer, stored once. */
int store_add_layer(struct store *s, const char *image, const char *message, char hash[HASH_HEX])
    __attribute__((warn_unused_result));
/* store_add_layer for a file outside the store that is added again and
 * again (an appliance's kernel, initrd and root): a regular file whose
 * identity and stamp (device, inode, size, mtime, ctime) match one added
 * before gives that layer without being read (*reused); any other is
 * copied, and remembered unless it changed in the last 2 s. */
int store_add_source(struct store *s, const char *path, const char *message, char hash[HASH_HEX],
                     bool *reused) __attribute__((warn_unused_result));
/* Brings a layer in by its known hash (from a bundle): when the store lacks
 * it, place() puts the checked file at dir/<hash>.<format>, and the store
 * records it. The parent must be in the store already. */
struct store_import {
    const char *hash, *format, *parent, *message;
    int (*place)(void *opaque, const char *dir);
    void *opaque;
};
int store_import_layer(struct store *s, const struct store_import *l)
    __attribute__((warn_unused_result));
/* Imports a bundle's disk 0 (its chain, each layer the store lacks, or its
 * flattened image), kernel and initrd as layers; cfg gets its config.
 * A hash is "" where the bundle has no such thing. With trusted_key (a
 * public key file), the bundle opened is first checked to be signed with
 * it, so what is imported is what was verified. */
struct vm_config;
int store_import_bundle(struct store *s, const char *path, char top[HASH_HEX],
                        char kernel[HASH_HEX], char initrd[HASH_HEX], struct vm_config *cfg,
                        const char *trusted_key) __attribute__((warn_unused_result));
/* The layer's file, checked against its name when its file changed since
 * the last check (a modified or missing layer is an error naming it).
 * *path malloc'd. */
int store_layer_path(struct store *s, const char *hash, char **path)
    __attribute__((warn_unused_result));
/* One object per layer: hash, format, parent, virtual-size, bytes, users. */
int store_list_layers(struct store *s, struct json_t *list) __attribute__((warn_unused_result));
/* Removes a layer no instance or layer uses; -EBUSY (named) otherwise. */
int store_remove_layer(struct store *s, const char *hash) __attribute__((warn_unused_result));
/* Removes every layer nothing uses; *removed counts them. */
int store_gc(struct store *s, unsigned *removed) __attribute__((warn_unused_result));

/* A new instance on layer top (O(1): an empty delta). -EEXIST if taken. */
int store_create(struct store *s, const char *name, const char *top,
                 const struct instance_boot *boot) __attribute__((warn_unused_result));
/* store_create from what `smolvm create NAME --from FROM` takes: FROM is
 * an appliance folder (its root, kernel and initrd become layers), a
 * .smolmachine (its layers imported; a saved state kept: the first start
 * resumes it), a disk image or a layer's hash. kernel, initrd, cmdline
 * (NULL: the source's) and cpus, mem_bytes (0: the source's; refused for a
 * source with a saved state) override, and so does discovery when
 * discovery_given (else an appliance's or a bundle's is kept); trusted_key
 * (a public key file): FROM must be a bundle signed with its private key. */
struct store_create_request {
    const char *name, *from, *kernel, *initrd, *cmdline, *trusted_key;
    unsigned cpus;
    uint64_t mem_bytes;
    enum vm_discovery discovery;
    bool discovery_given;
    const struct vm_share_config *shares; /* --share: kept in instance.json */
    unsigned share_count;
    const struct vm_net_config *net; /* --net (or the CLI's default); NULL: a
                                      * bundle's own network, else none */
};
int store_create_from(struct store *s, const struct store_create_request *q)
    __attribute__((warn_unused_result));
/* Discards the instance's delta (and any newer state): the next start sees
 * its layers as they are, resuming the pristine state when it has one. */
int store_reset(struct store *s, const char *name) __attribute__((warn_unused_result));
/* Freezes the delta into a new layer on top of the chain and starts an
 * empty delta on it. */
int store_commit(struct store *s, const char *name, const char *message, char hash[HASH_HEX])
    __attribute__((warn_unused_result));
int store_remove(struct store *s, const char *name) __attribute__((warn_unused_result));
/* reset, commit and remove refuse (-EBUSY, named) while a VM, under any
 * name, has the instance's delta open for writing. */
/* One object per instance, as store_instance_info gives it. */
int store_list(struct store *s, struct json_t *list) __attribute__((warn_unused_result));
/* An instance as ls shows it: its instance.json (name, top, created, cpus,
 * mem_bytes, kernel, initrd, cmdline, ...), delta_bytes and next_start
 * ("boots", "resumes saved state", "resumes suspended"); NULL when there
 * is no such instance (named by err). */
struct json_t *store_instance_info(struct store *s, const char *name);
/* Whether name can name an instance: 1-64 letters, digits, '.', '_', '-',
 * not starting with '.'. */
bool store_name_ok(const char *name);

/* For a start: the instance's boot settings (strings malloc'd, freed by
 * store_instance_release) and its delta's path, after checking every layer
 * of its chain. */
struct instance {
    struct instance_boot boot;
    char *delta;
    char *top;
    char *resume; /* the state bundle this start resumes from, or NULL: it boots */
    bool resume_pristine; /* resume is the pristine state, shared by every start */
};
int store_instance(struct store *s, const char *name, struct instance *out)
    __attribute__((warn_unused_result));
void store_instance_release(struct instance *i);
/* The instance resumed (its guest now runs on and writes its delta): its
 * saved state is spent, and later starts boot, until a reset. */
int store_resumed(struct store *s, const char *name) __attribute__((warn_unused_result));
/* Where a running instance's state goes when it is suspended (*path
 * malloc'd), and the mark, once written, that its next start resumes it. */
int store_suspend_path(struct store *s, const char *name, char **path)
    __attribute__((warn_unused_result));
int store_suspended(struct store *s, const char *name) __attribute__((warn_unused_result));

#endif
