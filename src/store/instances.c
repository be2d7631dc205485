/* Instances: a folder with instance.json (its top layer and what it
 * boots) and delta.qcow2, whose backing file is its top layer, by a name
 * relative to the folder. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bundle/sections.h"
#include "disk/disk.h"
#include "net/config.h"
#include "store/internal.h"
#include "util/err.h"
#include "util/file.h"

#define NAME_MAX_LEN 64
#define PRISTINE "pristine.smolmachine"
#define SUSPENDED "suspended.smolmachine"

bool store_name_ok(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= NAME_MAX_LEN && name[0] != '.' &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static char *instance_file(const struct store *s, const char *name, const char *file)
{
    char *p = NULL;
    if (!store_name_ok(name)) {
        err_plain(EINVAL, "'%s' is not a valid instance name (letters, digits, . _ -)", name);
        return NULL;
    }
    if (asprintf(&p, "%s/%s%s%s", s->instances, name, file ? "/" : "", file ? file : "") < 0)
        return NULL;
    return p;
}

static json_t *load(const struct store *s, const char *name)
{
    char *path = instance_file(s, name, "instance.json");
    json_t *j = path ? json_load_file(path, 0, NULL) : NULL;
    if (path && !j)
        err_plain(ENOENT, "no instance '%s'", name);
    free(path);
    return j;
}

/* The disk library's flock on the delta, shared (a VM writing the delta
 * holds it exclusive), taken before the delta is copied, replaced or
 * removed: refused while any VM, under whatever name, has it open for
 * writing; held, no VM can open it for writing until *fd is closed, while
 * readers (the copy a commit makes) still can. An instance without a
 * delta has nothing to guard (*fd -1). */
static int lock_delta(const struct store *s, const char *name, int *fd)
{
    char *delta = instance_file(s, name, "delta.qcow2");
    int r = 0;

    *fd = delta ? open(delta, O_RDONLY | O_CLOEXEC) : -1;
    if (!delta)
        r = -EINVAL;
    else if (*fd < 0 && errno != ENOENT)
        r = err_set(errno, "'%s'", delta);
    else if (*fd >= 0 && flock(*fd, LOCK_SH | LOCK_NB) < 0)
        r = errno == EWOULDBLOCK
                ? err_plain(EBUSY, "instance '%s' is running: a VM has its disk '%s' open "
                                   "(stop or save it first)", name, delta)
                : err_set(errno, "lock '%s'", delta);
    if (r < 0 && *fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    free(delta);
    return r;
}

static void unlock_delta(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* A fresh, empty delta on layer top. */
static int new_delta(struct store *s, const char *name, const char *top)
{
    json_t *meta = store_layer_meta(s, top);
    const char *format = json_string_value(json_object_get(meta, "format"));
    char *delta = instance_file(s, name, "delta.qcow2"), *backing = NULL, *tmp = NULL;
    int r = meta && format ? 0 : err_plain(ENOENT, "no layer %.64s in the store", top);

    if (r == 0 && (!delta || asprintf(&backing, "../../layers/%s.%s", top, format) < 0 ||
                   asprintf(&tmp, "%s.tmp", delta) < 0))
        r = -ENOMEM;
    if (r == 0) {
        struct disk_create_options o = {
            .size = (uint64_t)json_integer_value(json_object_get(meta, "virtual-size")),
            .backing = backing, .backing_format = format};
        unlink(tmp);
        r = disk_create("qcow2", tmp, &o);
    }
    if (r == 0 && rename(tmp, delta) < 0)
        r = err_set(errno, "'%s'", delta);
    json_decref(meta);
    free(delta);
    free(backing);
    free(tmp);
    return r;
}

static int save(const struct store *s, const char *name, json_t *j)
{
    char *path = instance_file(s, name, "instance.json");
    int r = path ? store_write_json(path, j) : -ENOMEM;
    free(path);
    return r;
}

static json_t *shares_json(const struct instance_boot *b)
{
    json_t *a = json_array();

    for (unsigned i = 0; i < b->share_count; i++)
        json_array_append_new(a, json_pack("{sssssb}", "tag", b->shares[i].tag, "path",
                                           b->shares[i].path, "read_only",
                                           b->shares[i].read_only));
    return a;
}

/* instance.json's shares, as hostile as any file: a tag that makes no tag,
 * a path that is not absolute, or too many, are refused by name. */
static int read_shares(json_t *j, const char *name, struct instance_boot *b)
{
    json_t *a = json_object_get(j, "shares"), *e;
    size_t i;

    if (!a)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > VM_MAX_SHARES)
        return err_plain(EINVAL, "instance '%s': bad shares", name);
    json_array_foreach(a, i, e) {
        const char *tag = json_string_value(json_object_get(e, "tag"));
        const char *path = json_string_value(json_object_get(e, "path"));
        if (!tag || !vm_share_tag_valid(tag) || !path || path[0] != '/')
            return err_plain(EINVAL, "instance '%s': bad share %zu", name, i);
        b->shares[i] = (struct vm_share_config){
            .tag = strdup(tag), .path = strdup(path),
            .read_only = json_is_true(json_object_get(e, "read_only")),
        };
        b->share_count++;
        if (!b->shares[i].tag || !b->shares[i].path)
            return err_set(ENOMEM, "instance '%s'", name);
    }
    return 0;
}

/* instance.json's virtio_discovery: absent (an older instance) is ACPI;
 * a value that names neither is refused. */
static int read_discovery(json_t *j, const char *name, struct instance_boot *b)
{
    json_t *v = json_object_get(j, "virtio_discovery");
    const char *word = json_string_value(v);

    b->discovery = VM_DISCOVERY_ACPI;
    if (!v)
        return 0;
    if (word && strcmp(word, "cmdline") == 0)
        b->discovery = VM_DISCOVERY_CMDLINE;
    else if (!word || strcmp(word, "acpi") != 0)
        return err_plain(EINVAL, "instance '%s': bad virtio_discovery", name);
    return 0;
}

int store_create(struct store *s, const char *name, const char *top,
                 const struct instance_boot *b)
{
    char *dir = instance_file(s, name, NULL);
    int r;

    if (!dir)
        return -EINVAL;
    store_lock(s);
    json_t *meta = store_layer_meta(s, top), *km = NULL, *im = NULL;
    if (b->kernel && !(km = store_layer_meta(s, b->kernel)))
        r = err_plain(ENOENT, "no kernel layer %.64s in the store", b->kernel);
    else if (b->initrd && !(im = store_layer_meta(s, b->initrd)))
        r = err_plain(ENOENT, "no initrd layer %.64s in the store", b->initrd);
    else if (!meta)
        r = err_plain(ENOENT, "no layer %.64s in the store", top);
    else if (mkdir(dir, 0700) < 0)
        r = errno == EEXIST ? err_plain(EEXIST, "an instance '%s' exists already", name)
                            : err_set(errno, "'%s'", dir);
    else
        r = new_delta(s, name, top);
    char *pristine = b->state && r == 0 ? instance_file(s, name, PRISTINE) : NULL;
    if (pristine)
        r = bundle_copy_state(b->state, pristine);
    free(pristine);
    json_decref(meta);
    json_decref(km);
    json_decref(im);
    if (r == 0) {
        json_t *j = json_pack("{sssssIsisI}", "name", name, "top", top, "created",
                              (json_int_t)time(NULL), "cpus", b->cpus ? (int)b->cpus : 1,
                              "mem_bytes", (json_int_t)(b->mem_bytes ? b->mem_bytes : 256u << 20));
        if (b->kernel)
            json_object_set_new(j, "kernel", json_string(b->kernel));
        if (b->initrd)
            json_object_set_new(j, "initrd", json_string(b->initrd));
        if (b->cmdline)
            json_object_set_new(j, "cmdline", json_string(b->cmdline));
        if (b->share_count)
            json_object_set_new(j, "shares", shares_json(b));
        if (b->net.mode != VM_NET_NONE)
            json_object_set_new(j, "net", net_config_to_json(&b->net));
        if (b->discovery == VM_DISCOVERY_CMDLINE)
            json_object_set_new(j, "virtio_discovery", json_string("cmdline"));
        if (b->state) {
            json_object_set_new(j, "pristine", json_string(PRISTINE));
            json_object_set_new(j, "resume", json_string(PRISTINE));
        }
        r = save(s, name, j);
        json_decref(j);
    }
    if (r < 0 && r != -EEXIST && file_remove_tree(dir) < 0)
        err_clear();
    store_unlock(s);
    free(dir);
    return r;
}

/* Sets (or with NULL removes) what the next start resumes. */
static int set_resume(struct store *s, const char *name, const char *file)
{
    json_t *j = load(s, name);
    int r = j ? 0 : -ENOENT;

    store_lock(s);
    if (r == 0)
        r = file ? json_object_set_new(j, "resume", json_string(file)) : json_object_del(j, "resume");
    if (r == 0)
        r = save(s, name, j);
    store_unlock(s);
    json_decref(j);
    return r == -1 ? 0 : r;
}

/* A suspended state is resumed once: its guest then runs on. */
static void drop_suspended(struct store *s, const char *name)
{
    char *path = instance_file(s, name, SUSPENDED);
    if (path)
        unlink(path);
    free(path);
}

int store_reset(struct store *s, const char *name)
{
    json_t *j = load(s, name);
    int r, held;

    if (!j)
        return -ENOENT;
    r = lock_delta(s, name, &held);
    store_lock(s);
    if (r == 0)
        r = new_delta(s, name, json_string_value(json_object_get(j, "top")));
    store_unlock(s);
    unlock_delta(held);
    if (r == 0)
        r = set_resume(s, name, json_string_value(json_object_get(j, "pristine")));
    if (r == 0)
        drop_suspended(s, name);
    json_decref(j);
    return r;
}

int store_resumed(struct store *s, const char *name)
{
    int r = set_resume(s, name, NULL);
    if (r == 0)
        drop_suspended(s, name);
    return r;
}

int store_suspend_path(struct store *s, const char *name, char **path)
{
    json_t *j = load(s, name);
    json_decref(j);
    *path = j ? instance_file(s, name, SUSPENDED) : NULL;
    return *path ? 0 : -ENOENT;
}

int store_suspended(struct store *s, const char *name)
{
    return set_resume(s, name, SUSPENDED);
}

int store_commit(struct store *s, const char *name, const char *message, char hash[HASH_HEX])
{
    json_t *j = load(s, name);
    char *delta = instance_file(s, name, "delta.qcow2");
    int r = j && delta ? 0 : -ENOENT, held = -1;

    if (r == 0)
        r = lock_delta(s, name, &held);
    /* The delta becomes a layer (its parent: the top it is on); only then
     * does the instance move onto it, with a new empty delta. A failure
     * (a full disk) leaves the instance as it was. */
    if (r == 0)
        r = store_add_layer(s, delta, message, hash);
    if (r == 0) {
        store_lock(s);
        json_object_set_new(j, "top", json_string(hash));
        r = new_delta(s, name, hash);
        if (r == 0)
            r = save(s, name, j);
        store_unlock(s);
    }
    unlock_delta(held);
    json_decref(j);
    free(delta);
    return r;
}

int store_remove(struct store *s, const char *name)
{
    char *dir = instance_file(s, name, NULL);
    json_t *j = dir ? load(s, name) : NULL;
    int r = j ? 0 : -ENOENT, held = -1;

    if (r == 0)
        r = lock_delta(s, name, &held);
    store_lock(s);
    if (r == 0 && file_remove_tree(dir) < 0)
        r = err_set(errno, "cannot remove '%s'", dir);
    store_unlock(s);
    unlock_delta(held);
    json_decref(j);
    free(dir);
    return r;
}

/* What its next start does, in words. */
static const char *next_start(json_t *j)
{
    const char *resume = json_string_value(json_object_get(j, "resume"));
    return !resume ? "boots" : strcmp(resume, SUSPENDED) == 0 ? "resumes suspended"
                                                              : "resumes saved state";
}

json_t *store_instance_info(struct store *s, const char *name)
{
    json_t *j = load(s, name);
    char *delta = j ? instance_file(s, name, "delta.qcow2") : NULL;
    struct stat st;

    if (!j)
        return NULL;
    json_object_set_new(j, "delta_bytes", json_integer(delta && stat(delta, &st) == 0
                                                           ? (json_int_t)st.st_blocks * 512 : 0));
    json_object_set_new(j, "next_start", json_string(next_start(j)));
    free(delta);
    return j;
}

int store_list(struct store *s, json_t *list)
{
    DIR *d = opendir(s->instances);
    struct dirent *e;

    if (!d)
        return err_set(errno, "'%s'", s->instances);
    while ((e = readdir(d))) {
        json_t *j = store_name_ok(e->d_name) ? store_instance_info(s, e->d_name) : NULL;
        if (j)
            json_array_append_new(list, j);
    }
    err_clear();
    closedir(d);
    return 0;
}

static char *dup_field(json_t *j, const char *key)
{
    const char *v = json_string_value(json_object_get(j, key));
    return v ? strdup(v) : NULL;
}

struct check_ctx {
    struct store *s;
    int r;
};

static void check_layer(void *opaque, const char *hash)
{
    struct check_ctx *c = opaque;
    char *path = NULL;
    if (c->r == 0)
        c->r = store_layer_path(c->s, hash, &path);
    free(path);
}

int store_instance(struct store *s, const char *name, struct instance *out)
{
    json_t *j = load(s, name);
    struct check_ctx c = {s, 0};
    int r;

    memset(out, 0, sizeof(*out));
    if (!j)
        return -ENOENT;
    out->top = dup_field(j, "top");
    out->delta = instance_file(s, name, "delta.qcow2");
    char *kernel = dup_field(j, "kernel"), *initrd = dup_field(j, "initrd");
    out->boot.cmdline = dup_field(j, "cmdline");
    out->boot.cpus = (unsigned)json_integer_value(json_object_get(j, "cpus"));
    out->boot.mem_bytes = (uint64_t)json_integer_value(json_object_get(j, "mem_bytes"));
    const char *resume = json_string_value(json_object_get(j, "resume"));
    if (resume && store_name_ok(resume)) {
        out->resume = instance_file(s, name, resume);
        out->resume_pristine = strcmp(resume, PRISTINE) == 0;
    }
    r = read_shares(j, name, &out->boot);
    if (r == 0 && (r = net_config_from_json(json_object_get(j, "net"), &out->boot.net)) < 0)
        err_prefix("instance '%s'", name);
    if (r == 0)
        r = read_discovery(j, name, &out->boot);
    json_decref(j);
    if (r == 0)
        r = out->top && out->delta ? store_chain(s, out->top, check_layer, &c) : -ENOMEM;
    if (r == 0)
        r = c.r;
    if (r == 0 && kernel)
        r = store_layer_path(s, kernel, (char **)&out->boot.kernel);
    if (r == 0 && initrd)
        r = store_layer_path(s, initrd, (char **)&out->boot.initrd);
    free(kernel);
    free(initrd);
    if (r < 0)
        store_instance_release(out);
    return r;
}

void store_instance_release(struct instance *i)
{
    free((char *)i->boot.kernel);
    free((char *)i->boot.initrd);
    free((char *)i->boot.cmdline);
    for (unsigned k = 0; k < i->boot.share_count; k++) {
        free((char *)i->boot.shares[k].tag);
        free((char *)i->boot.shares[k].path);
    }
    free(i->delta);
    free(i->top);
    free(i->resume);
    memset(i, 0, sizeof(*i));
}
