#include "core/config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/config.h"
#include "util/err.h"

void vm_config_defaults(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->mem_bytes = VM_DEFAULT_MEM;
    cfg->cpus = 1;
    cfg->cmdline = "console=ttyS0";
    cfg->rng = true;
    cfg->kernel_cache = true;
    cfg->vsock_cid = VM_DEFAULT_VSOCK_CID;
    cfg->net.fd = -1;
}

static uint64_t host_memory_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : UINT64_MAX;
}

int vm_config_check(const struct vm_config *cfg)
{
    uint64_t host = host_memory_bytes();

    if (cfg->cpus == 0 || cfg->cpus > VM_MAX_CPUS)
        return err_plain(EINVAL, "--cpus must be between 1 and %d", VM_MAX_CPUS);
    if (cfg->mem_bytes < VM_MIN_MEM)
        return err_plain(EINVAL, "--mem must be at least %llu MiB",
                         (unsigned long long)(VM_MIN_MEM >> 20));
    if (cfg->vsock_cid != 0 && (cfg->vsock_cid < 3 || cfg->vsock_cid == UINT32_MAX))
        return err_plain(EINVAL, "--vsock-cid must be at least 3 (0, 1 and 2 are reserved)");
    if (cfg->mem_bytes % 4096)
        return err_plain(EINVAL, "--mem must be a multiple of 4 KiB");
    if (cfg->mem_bytes > host)
        return err_plain(ENOMEM, "guest memory (--mem) of %llu MiB is more than this host's %llu MiB",
                         (unsigned long long)(cfg->mem_bytes >> 20),
                         (unsigned long long)(host >> 20));
    return 0;
}

/* ---- JSON, as a .smolmachine carries it ---- */

static const char *console_name(enum vm_console_kind k)
{
    return k == VM_CONSOLE_VIRTIO ? "virtio" : "serial";
}

bool vm_share_tag_valid(const char *tag)
{
    size_t len = strlen(tag);

    return len >= 1 && len <= VM_SHARE_TAG_MAX &&
           strspn(tag, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

const char *vm_share_param(const struct vm_share_config *shares, unsigned count,
                           const char *cmdline)
{
    static char text[32 + VM_MAX_SHARES * (VM_SHARE_TAG_MAX + 1)];

    if (count == 0 || count > VM_MAX_SHARES || (cmdline && strstr(cmdline, "smolvm.share=")))
        return "";
    strcpy(text, " smolvm.share=");
    for (unsigned i = 0; i < count; i++) {
        strncat(text, shares[i].tag, VM_SHARE_TAG_MAX);
        strcat(text, i + 1 < count ? "," : "");
    }
    return text;
}

/* Tags and read-only flags: where a tag's folder is on the host is for
 * whoever starts the VM to say. */
static json_t *shares_to_json(const struct vm_config *cfg)
{
    json_t *shares = json_array();

    for (unsigned i = 0; i < cfg->share_count; i++)
        json_array_append_new(shares, json_pack("{s:s, s:b}", "tag", cfg->shares[i].tag,
                                                "read_only", cfg->shares[i].read_only));
    return shares;
}

static int parse_shares(json_t *shares, struct vm_config *cfg)
{
    size_t i;
    json_t *o;

    if (!json_is_array(shares) || json_array_size(shares) > VM_MAX_SHARES)
        return err_plain(EINVAL, "config: bad \"shares\"");
    json_array_foreach(shares, i, o) {
        const char *tag = json_string_value(json_object_get(o, "tag"));
        struct vm_share_config *sc = &cfg->shares[cfg->share_count];
        if (!tag || !vm_share_tag_valid(tag))
            return err_plain(EINVAL, "config: bad share %zu", i);
        for (unsigned j = 0; j < cfg->share_count; j++)
            if (strcmp(cfg->shares[j].tag, tag) == 0)
                return err_plain(EINVAL, "config: share tag %s twice", tag);
        sc->tag = strdup(tag);
        sc->read_only = json_is_true(json_object_get(o, "read_only"));
        cfg->share_count++;
    }
    return 0;
}

int vm_config_map_shares(struct vm_config *cfg, const struct vm_share_config *given,
                         unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        struct vm_share_config *sc = NULL;
        for (unsigned j = 0; j < cfg->share_count && !sc; j++)
            if (strcmp(cfg->shares[j].tag, given[i].tag) == 0)
                sc = &cfg->shares[j];
        if (!sc)
            return err_plain(EINVAL, "--share %s: the VM has no share tagged %s", given[i].path,
                             given[i].tag);
        if (cfg->owns_strings) {
            free((char *)sc->path);
            sc->path = strdup(given[i].path);
            if (!sc->path)
                return err_set(ENOMEM, "share %s", sc->tag);
        } else {
            sc->path = given[i].path;
        }
        sc->read_only |= given[i].read_only;
    }
    for (unsigned i = 0; i < cfg->share_count; i++)
        if (!cfg->shares[i].path)
            return err_plain(EINVAL, "share %s needs a host folder: --share DIR:%s",
                             cfg->shares[i].tag, cfg->shares[i].tag);
    return 0;
}

char *vm_config_to_json(const struct vm_config *cfg)
{
    json_t *root = json_object(), *disks = json_array();
    char *text;

    for (unsigned i = 0; i < cfg->disk_count; i++) {
        const struct vm_disk_config *d = &cfg->disks[i];
        json_t *o = json_object();
        if (d->id)
            json_object_set_new(o, "id", json_string(d->id));
        if (d->format)
            json_object_set_new(o, "format", json_string(d->format));
        json_object_set_new(o, "read_only", json_boolean(d->read_only));
        json_object_set_new(o, "direct", json_boolean(d->direct));
        json_array_append_new(disks, o);
    }
    json_object_set_new(root, "cpus", json_integer(cfg->cpus));
    json_object_set_new(root, "mem_bytes", json_integer((json_int_t)cfg->mem_bytes));
    json_object_set_new(root, "cmdline", json_string(cfg->cmdline ? cfg->cmdline : ""));
    json_object_set_new(root, "console", json_string(console_name(cfg->console)));
    json_object_set_new(root, "rng", json_boolean(cfg->rng));
    json_object_set_new(root, "discovery",
                        json_string(cfg->discovery == VM_DISCOVERY_CMDLINE ? "cmdline" : "acpi"));
    json_object_set_new(root, "disks", disks);
    json_object_set_new(root, "net", net_config_to_json(&cfg->net));
    if (cfg->share_count)
        json_object_set_new(root, "shares", shares_to_json(cfg));
    json_object_set_new(root, "vsock_cid", json_integer(cfg->vsock_cid));
    text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (!text)
        err_set(ENOMEM, "config");
    return text;
}

static char *dup_string(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? strdup(v) : NULL;
}

static int parse_disks(json_t *disks, struct vm_config *cfg)
{
    size_t i;
    json_t *d;

    if (!json_is_array(disks) || json_array_size(disks) > VM_MAX_DISKS)
        return err_plain(EINVAL, "config: bad \"disks\"");
    json_array_foreach(disks, i, d) {
        struct vm_disk_config *dc = &cfg->disks[cfg->disk_count++];
        if (!json_is_object(d))
            return err_plain(EINVAL, "config: bad disk %zu", i);
        dc->id = dup_string(d, "id");
        dc->format = dup_string(d, "format");
        dc->read_only = json_is_true(json_object_get(d, "read_only"));
        dc->direct = json_is_true(json_object_get(d, "direct"));
    }
    return 0;
}

/* Bundles from before virtio-vsock have none: their saved state has no
 * such device. */
static int parse_vsock_cid(json_t *v, struct vm_config *cfg)
{
    cfg->vsock_cid = 0;
    if (!v)
        return 0;
    if (!json_is_integer(v) || (json_integer_value(v) != 0 && json_integer_value(v) < 3) ||
        json_integer_value(v) > UINT32_MAX - 1)
        return err_plain(EINVAL, "config: bad \"vsock_cid\"");
    cfg->vsock_cid = (uint32_t)json_integer_value(v);
    return 0;
}

int vm_config_from_json(const char *text, struct vm_config *cfg)
{
    json_error_t error;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &error), *v;
    const char *console;
    int r = 0;

    vm_config_defaults(cfg);
    cfg->cmdline = NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return err_plain(EINVAL, "config: %s (line %d)", root ? "not an object" : error.text,
                         error.line);
    }
    v = json_object_get(root, "cpus");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > VM_MAX_CPUS)
        r = err_plain(EINVAL, "config: bad \"cpus\"");
    else
        cfg->cpus = (unsigned)json_integer_value(v);
    v = json_object_get(root, "mem_bytes");
    if (r == 0 && (!json_is_integer(v) || json_integer_value(v) <= 0))
        r = err_plain(EINVAL, "config: bad \"mem_bytes\"");
    else if (r == 0)
        cfg->mem_bytes = (uint64_t)json_integer_value(v);
    console = json_string_value(json_object_get(root, "console"));
    if (r == 0 && console && strcmp(console, "virtio") == 0)
        cfg->console = VM_CONSOLE_VIRTIO;
    else if (r == 0 && console && strcmp(console, "serial") != 0)
        r = err_plain(EINVAL, "config: bad \"console\"");
    cfg->rng = !json_is_false(json_object_get(root, "rng"));
    const char *discovery = json_string_value(json_object_get(root, "discovery"));
    if (r == 0 && discovery && strcmp(discovery, "cmdline") == 0)
        cfg->discovery = VM_DISCOVERY_CMDLINE;
    else if (r == 0 && discovery && strcmp(discovery, "acpi") != 0)
        r = err_plain(EINVAL, "config: bad \"discovery\"");
    if (r == 0)
        r = parse_vsock_cid(json_object_get(root, "vsock_cid"), cfg);
    cfg->cmdline = dup_string(root, "cmdline");
    cfg->owns_strings = true;
    if (r == 0 && json_object_get(root, "disks"))
        r = parse_disks(json_object_get(root, "disks"), cfg);
    if (r == 0)
        r = net_config_from_json(json_object_get(root, "net"), &cfg->net);
    if (r == 0 && json_object_get(root, "shares"))
        r = parse_shares(json_object_get(root, "shares"), cfg);
    json_decref(root);
    if (r < 0)
        vm_config_release(cfg);
    return r;
}

void vm_config_release(struct vm_config *cfg)
{
    if (!cfg->owns_strings)
        return;
    free((char *)cfg->cmdline);
    free((char *)cfg->kernel_path);
    free((char *)cfg->initrd_path);
    cfg->kernel_path = cfg->initrd_path = NULL;
    for (unsigned i = 0; i < cfg->disk_count; i++) {
        free((char *)cfg->disks[i].id);
        free((char *)cfg->disks[i].format);
        free((char *)cfg->disks[i].path);
    }
    for (unsigned i = 0; i < cfg->share_count; i++) {
        free((char *)cfg->shares[i].tag);
        free((char *)cfg->shares[i].path);
    }
    cfg->share_count = 0;
    cfg->cmdline = NULL;
    cfg->disk_count = 0;
    cfg->owns_strings = false;
}
