/* Creating an instance from what `smolvm create --from` and the API's
 * POST /machines take: one implementation for both. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bundle/bundle.h"
#include "bundle/sections.h"
#include "core/config.h"
#include "image/appliance.h"
#include "store/store.h"
#include "util/err.h"

/* --from a bundle that must be signed with trusted_key's private key: the
 * import checks it before anything of the bundle enters the store. */
static int import_verified(struct store *s, const char *from, char top[HASH_HEX],
                           char kernel[HASH_HEX], char initrd[HASH_HEX], struct vm_config *cfg,
                           const char **state, const char *trusted_key)
{
    struct bundle *b;
    int r = bundle_open(from, &b);

    if (r < 0) {
        err_prefix("--verify checks a bundle file");
        return r;
    }
    *state = bundle_has_state(b) ? from : NULL;
    bundle_close(b);
    return store_import_bundle(s, from, top, kernel, initrd, cfg, trusted_key);
}

/* --from: an appliance folder, a .smolmachine, a layer hash or an image.
 * *cmdline: an appliance's (malloc'd), else untouched; cfg: a bundle's
 * config, or an appliance's device discovery. */
static int import_source(struct store *s, const char *from, char top[HASH_HEX],
                         char kernel[HASH_HEX], char initrd[HASH_HEX], struct vm_config *cfg,
                         char **cmdline, const char **state, const char *trusted_key)
{
    struct appliance_files f;
    struct stat st;
    int r;

    kernel[0] = initrd[0] = 0;
    if (trusted_key)
        return import_verified(s, from, top, kernel, initrd, cfg, state, trusted_key);
    if (hash_is_hex(from)) {
        snprintf(top, HASH_HEX, "%s", from);
        return 0;
    }
    if (stat(from, &st) < 0)
        return err_set(errno, "'%s'", from);
    if (S_ISDIR(st.st_mode)) {
        bool reused;
        r = appliance_open(from, &f);
        if (r == 0)
            r = store_add_source(s, f.root, "appliance root", top, &reused);
        if (r == 0)
            r = store_add_source(s, f.kernel, "kernel", kernel, &reused);
        if (r == 0)
            r = store_add_source(s, f.initrd, "initrd", initrd, &reused);
        if (r == 0) {
            *cmdline = f.cmdline, f.cmdline = NULL;
            cfg->discovery = f.cmdline_discovery ? VM_DISCOVERY_CMDLINE : VM_DISCOVERY_ACPI;
        }
        appliance_files_release(&f);
        return r;
    }
    /* A file with the bundle's magic is a bundle or an error: a corrupt
     * one is never taken for a raw disk image. */
    struct bundle *b;
    if ((r = bundle_probe(from)) != 0) {
        if (r > 0 && (r = bundle_open(from, &b)) == 0) {
            *state = bundle_has_state(b) ? from : NULL;
            bundle_close(b);
            r = store_import_bundle(s, from, top, kernel, initrd, cfg, NULL);
        }
        return r;
    }
    return store_add_layer(s, from, "image", top);
}

int store_create_from(struct store *s, const struct store_create_request *q)
{
    const char *state = NULL;
    char top[HASH_HEX], kernel[HASH_HEX], initrd[HASH_HEX], *appliance_cmdline = NULL;
    struct vm_config cfg;
    bool reused;
    int r;

    vm_config_defaults(&cfg);
    cfg.cmdline = NULL;
    r = import_source(s, q->from, top, kernel, initrd, &cfg, &appliance_cmdline, &state,
                      q->trusted_key);
    if (r == 0 && state && (q->cpus || q->mem_bytes))
        r = err_plain(EINVAL, "'%s' holds a saved state, which fixes its CPUs and memory", q->from);
    if (r == 0 && q->kernel)
        r = store_add_source(s, q->kernel, "kernel", kernel, &reused);
    if (r == 0 && q->initrd)
        r = store_add_source(s, q->initrd, "initrd", initrd, &reused);
    const char *cmdline = q->cmdline ? q->cmdline : appliance_cmdline ? appliance_cmdline
                                                                       : cfg.cmdline;
    char *with_shares = NULL;
    /* An appliance's init mounts the shares the command line names. */
    if (r == 0 && appliance_cmdline && q->share_count &&
        asprintf(&with_shares, "%s%s", cmdline,
                 vm_share_param(q->shares, q->share_count, cmdline)) < 0)
        r = err_set(ENOMEM, "cmdline");
    struct instance_boot boot = {
        .kernel = kernel[0] ? kernel : NULL,
        .initrd = initrd[0] ? initrd : NULL,
        .cmdline = with_shares ? with_shares : cmdline,
        .state = state,
        .cpus = q->cpus ? q->cpus : cfg.cpus,
        .mem_bytes = q->mem_bytes ? q->mem_bytes : cfg.mem_bytes,
        .discovery = q->discovery_given ? q->discovery : cfg.discovery,
        .share_count = q->share_count <= VM_MAX_SHARES ? q->share_count : VM_MAX_SHARES,
    };
    for (unsigned i = 0; i < boot.share_count; i++)
        boot.shares[i] = q->shares[i];
    boot.net = q->net ? *q->net : cfg.net; /* cfg: a bundle's, or defaults (none) */
    if (r == 0)
        r = store_create(s, q->name, top, &boot);
    free(appliance_cmdline);
    free(with_shares);
    vm_config_release(&cfg); /* a bundle's strings (smolvm serve creates many) */
    return r;
}
