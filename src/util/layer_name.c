#include "util/layer_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void layer_name(char name[LAYER_NAME_MAX], const char *hash, const char *suffix)
{
    snprintf(name, LAYER_NAME_MAX, "%s.%s", hash, suffix);
}

char *layer_path(const char *dir, const char *hash, const char *suffix)
{
    char *p = NULL;
    return asprintf(&p, "%s/%s.%s", dir, hash, suffix) < 0 ? NULL : p;
}

bool layer_name_parse(const char *path, const char *format, char hash[HASH_HEX])
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strlen(base) < 66 || base[64] != '.' || (format && strcmp(base + 65, format) != 0))
        return false;
    snprintf(hash, HASH_HEX, "%.64s", base);
    return hash_is_hex(hash);
}

json_t *layer_sidecar_load(const char *dir, const char *hash)
{
    char *path = hash_is_hex(hash) ? layer_path(dir, hash, LAYER_SIDECAR) : NULL;
    json_t *j = path ? json_load_file(path, 0, NULL) : NULL;
    free(path);
    return j;
}

json_t *layer_sidecar_beside(const char *path)
{
    char hash[HASH_HEX];
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    json_t *j = dir && layer_name_parse(path, NULL, hash) ? layer_sidecar_load(dir, hash) : NULL;
    free(dir);
    return j;
}
