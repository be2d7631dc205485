/* What layers.c and instances.c share. */
#ifndef SMOLVM_STORE_INTERNAL_H
#define SMOLVM_STORE_INTERNAL_H

#include <jansson.h>

#include "store/store.h"

struct store {
    char *root, *layers, *instances;
    int lock_fd;
};

/* The store's one lock, for every change. */
void store_lock(struct store *s);
void store_unlock(struct store *s);

/* layers/<hash>.<suffix>, malloc'd. */
char *store_layer_file(const struct store *s, const char *hash, const char *suffix);
/* A fresh temporary path in the layers folder (malloc'd), for a file to
 * hand to store_adopt_layer: on the same filesystem, so it moves, not
 * copies, into place. */
char *store_layer_temp(const struct store *s);
/* store_add_layer for a raw file (a bundle's kernel, initrd or flattened
 * disk: never probed) at a store_layer_temp() path: taken over (moved
 * under its hash, or removed), not copied. */
int store_adopt_layer(struct store *s, const char *tmp, const char *message, char hash[HASH_HEX])
    __attribute__((warn_unused_result));
/* A layer's sidecar, or NULL when there is no such layer. */
json_t *store_layer_meta(const struct store *s, const char *hash);
/* Walks a chain from top to its base; errors on a missing layer or loop. */
int store_chain(struct store *s, const char *top, void (*visit)(void *opaque, const char *hash),
                void *opaque) __attribute__((warn_unused_result));
/* JSON to a file by temp + rename. */
int store_write_json(const char *path, json_t *value) __attribute__((warn_unused_result));

#endif
