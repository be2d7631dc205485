/* Disks carried as chains of layers rather than flattened: a bundle saved
 * from a store instance holds each layer of its chain once (section
 * "layer.N", the file's bytes) and a "layers" section saying, base first,
 * each layer's content hash, format and parent, and which layer is the top
 * of each disk. A qcow2 layer names its parent as "<hash>.<format>" in its
 * own folder, so unpacking the layers into one folder rebuilds the chain,
 * and an importer that has a layer already (same hash) skips it. */
#ifndef SMOLVM_BUNDLE_LAYERS_H
#define SMOLVM_BUNDLE_LAYERS_H

#include <stdbool.h>
#include <stddef.h>

#include "bundle/bundle.h"
#include "core/config.h"
#include "util/hash.h"

struct bundle_layer {
    char hash[HASH_HEX];
    char parent[HASH_HEX]; /* "" for a base */
    char format[8];        /* raw or qcow2 */
    /* "" for a layer the bundle does not carry: a migration's destination
     * said it has it (bundle_chains_read_thin) */
    char section[BUNDLE_NAME_MAX + 1];
    char message[96];
};

struct bundle_chains {
    struct bundle_layer *layers; /* a parent always comes before its children */
    size_t count;
    char tops[VM_MAX_DISKS][HASH_HEX]; /* per disk: its top layer, "" when carried whole */
    unsigned disk_count;
    /* Writing: layers listed but not carried (the reader has them); not owned. */
    const char (*omit)[HASH_HEX];
    size_t omit_count;
};

/* True when the disk at path is a qcow2 delta over layers named by their
 * hashes (a store instance's disk), which a bundle can carry as a chain. */
bool bundle_disk_is_layered(const char *path, const char *format);

/* The layers under a layered disk (bundle_disk_is_layered), top first,
 * into out (hash and format; at most max, *n set): what a bundle of it
 * would carry but its delta. A disk that is not layered has none. */
int bundle_disk_layers(const char *path, const char *format, struct bundle_layer *out,
                       size_t max, size_t *n) __attribute__((warn_unused_result));

/* Adds the layers under the delta at path (each not yet in c): files that
 * never change, so a migration sends them while the VM still writes its
 * delta; bundle_chains_add_disk() then skips them. */
int bundle_chains_add_layers(struct bundle_chains *c, struct bundle_writer *w, const char *path)
    __attribute__((warn_unused_result));
/* Adds disk index's chain (each layer not yet in c, then the delta as a
 * layer of its own, its backing name made "<top>.<format>"). tmp: a path
 * for the delta's copy. */
int bundle_chains_add_disk(struct bundle_chains *c, struct bundle_writer *w, unsigned index,
                           const char *path, const char *tmp) __attribute__((warn_unused_result));
/* Writes the "layers" section (when any disk was added). */
int bundle_chains_write(const struct bundle_chains *c, struct bundle_writer *w)
    __attribute__((warn_unused_result));

/* Reads and checks the "layers" section: hashes, formats, parents that come
 * earlier, sections that exist. No section: an empty c. A bad one: -EINVAL. */
int bundle_chains_read(const struct bundle *b, struct bundle_chains *c)
    __attribute__((warn_unused_result));
/* The same, but a layer listed without a section is taken when its hash
 * is one of the have_count in have (a migration's destination said it has
 * them); any other is refused as ever. */
int bundle_chains_read_thin(const struct bundle *b, struct bundle_chains *c,
                            const char (*have)[HASH_HEX], size_t have_count)
    __attribute__((warn_unused_result));
void bundle_chains_release(struct bundle_chains *c);
const struct bundle_layer *bundle_chains_find(const struct bundle_chains *c, const char *hash);

/* Unpacks layer l into dir as "<hash>.<format>" unless it is there (a
 * layer the bundle does not carry must be),
 * checking that its bytes hash to its name and that it is backed by its
 * parent and by nothing else (a hostile bundle could point a backing file
 * anywhere on the host). *added: whether it was unpacked now. */
int bundle_layer_extract(const struct bundle *b, const struct bundle_chains *c,
                         const struct bundle_layer *l, const char *dir, bool *added)
    __attribute__((warn_unused_result));

#endif
