/* Bundles into the store: a bundle's disk (its chain of layers, or its
 * flattened image), kernel and initrd become layers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle/bundle.h"
#include "bundle/layers.h"
#include "bundle/sections.h"
#include "bundle/signature.h"
#include "core/config.h"
#include "store/internal.h"
#include "util/err.h"

/* A bundle section (kernel, initrd, a flattened disk) as a layer. */
static int import_section(struct store *s, const struct bundle *b, const char *section,
                          char hash[HASH_HEX])
{
    char *tmp;
    int r;

    hash[0] = 0;
    if (!bundle_has(b, section))
        return 0;
    /* Unpacked where the layer will live: moved into place, not copied. */
    if (!(tmp = store_layer_temp(s)))
        return -ENOMEM;
    r = bundle_extract(b, section, tmp);
    if (r == 0)
        r = store_adopt_layer(s, tmp, section, hash);
    else
        unlink(tmp);
    free(tmp);
    return r;
}

struct placing {
    const struct bundle *b;
    const struct bundle_chains *c;
    const struct bundle_layer *l;
};

static int place_layer(void *opaque, const char *dir)
{
    const struct placing *p = opaque;
    bool added;
    return bundle_layer_extract(p->b, p->c, p->l, dir, &added);
}

/* Layers the store has already (the same hash) are neither unpacked nor
 * stored again: two bundles on one OS layer keep one copy of it. */
static int import_chains(struct store *s, const struct bundle *b, char top[HASH_HEX])
{
    struct bundle_chains c;
    int r = bundle_chains_read(b, &c);

    for (size_t i = 0; r == 0 && i < c.count; i++) {
        struct placing p = {b, &c, &c.layers[i]};
        struct store_import in = {c.layers[i].hash, c.layers[i].format, c.layers[i].parent,
                                  c.layers[i].message, place_layer, &p};
        r = store_import_layer(s, &in);
    }
    if (r == 0 && c.disk_count > 0)
        snprintf(top, HASH_HEX, "%s", c.tops[0]);
    bundle_chains_release(&c);
    return r;
}

/* A bundle's disk 0 (as layers or flattened), kernel and initrd. */
int store_import_bundle(struct store *s, const char *path, char top[HASH_HEX],
                         char kernel[HASH_HEX], char initrd[HASH_HEX], struct vm_config *cfg,
                         const char *trusted_key)
{
    struct bundle *b;
    char disk0[BUNDLE_NAME_MAX + 1];
    uint8_t *json;
    size_t len;
    int r = bundle_open(path, &b);

    if (r < 0)
        return r;
    if (trusted_key && (r = bundle_check_signature(b, trusted_key)) < 0) {
        bundle_close(b);
        return r;
    }
    r = bundle_read(b, SECTION_CONFIG, &json, &len);
    if (r == 0) {
        r = vm_config_from_json((const char *)json, cfg);
        free(json);
    }
    top[0] = 0;
    if (r == 0 && cfg->disk_count > 1)
        r = err_plain(EINVAL, "'%s' has %u disks; an instance has one", path, cfg->disk_count);
    if (r == 0)
        r = import_chains(s, b, top);
    section_disk(disk0, 0);
    if (r == 0 && !top[0])
        r = import_section(s, b, disk0, top);
    if (r == 0)
        r = import_section(s, b, SECTION_KERNEL, kernel);
    if (r == 0)
        r = import_section(s, b, SECTION_INITRD, initrd);
    if (r == 0 && !top[0])
        r = err_plain(EINVAL, "'%s' holds no disk to make layers of", path);
    bundle_close(b);
    return r;
}

