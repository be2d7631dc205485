/* How a layer file is named, wherever it lives (the store's layers/ folder,
 * the layer cache a bundle's chain unpacks into): "<sha256>.<format>", its
 * bytes' hash and raw or qcow2, and a qcow2 layer's backing name is its
 * parent's such name, relative, so a folder of layers moves as a whole.
 * Beside a layer in the store, "<sha256>.json" (its sidecar) says its
 * format, parent, size and message. The store and the bundle's layer codec
 * both go by this file, so neither parses the other's names. */
#ifndef SMOLVM_UTIL_LAYER_NAME_H
#define SMOLVM_UTIL_LAYER_NAME_H

#include <jansson.h>
#include <stdbool.h>

#include "util/hash.h"

/* "<hash>.<format>": the longest format is "qcow2", the sidecar's "json". */
#define LAYER_NAME_MAX (HASH_HEX + 8)
#define LAYER_SIDECAR "json"

/* "<hash>.<suffix>" into name. */
void layer_name(char name[LAYER_NAME_MAX], const char *hash, const char *suffix);
/* dir/<hash>.<suffix>, malloc'd (NULL when out of memory). */
char *layer_path(const char *dir, const char *hash, const char *suffix);
/* Whether the last part of path is a layer's name, "<64 hex>.<format>"
 * (format NULL: any suffix); its hash into hash. */
bool layer_name_parse(const char *path, const char *format, char hash[HASH_HEX]);

/* The sidecar of layer hash in dir, or NULL when there is none. */
json_t *layer_sidecar_load(const char *dir, const char *hash);
/* The sidecar beside the layer file at path, or NULL. */
json_t *layer_sidecar_beside(const char *path);

#endif
