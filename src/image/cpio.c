#include "image/cpio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util/err.h"

#define NAME_MAX_BYTES 4096

void cpio_init(struct cpio *c, uint32_t mtime)
{
    memset(c, 0, sizeof(*c));
    c->next_ino = 1;
    c->mtime = mtime;
}

static void pad4(struct blob *b)
{
    static const uint8_t zeros[4];
    blob_put(b, zeros, (4 - b->len % 4) % 4);
}

int cpio_add(struct cpio *c, const struct cpio_entry *e)
{
    char header[111];
    size_t name_len = strlen(e->name) + 1;

    if (name_len > NAME_MAX_BYTES)
        return err_plain(ENAMETOOLONG, "cpio: name too long: %.40s...", e->name);
    if (e->len > UINT32_MAX)
        return err_plain(EFBIG, "cpio: '%s' is larger than newc allows", e->name);
    /* magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
     * devminor, rdevmajor, rdevminor, namesize, check */
    snprintf(header, sizeof(header),
             "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
             c->next_ino++, (unsigned)e->mode, e->uid, e->gid, S_ISDIR(e->mode) ? 2u : 1u,
             c->mtime, (unsigned)e->len, 0u, 0u, e->rdev_major, e->rdev_minor,
             (unsigned)name_len, 0u);
    blob_put(&c->out, header, 110);
    blob_put(&c->out, e->name, name_len);
    pad4(&c->out);
    blob_put(&c->out, e->data, e->len);
    pad4(&c->out);
    return c->out.failed ? err_set(ENOMEM, "cpio") : 0;
}

int cpio_add_dir(struct cpio *c, const char *name, mode_t perm)
{
    return cpio_add(c, &(struct cpio_entry){.name = name, .mode = S_IFDIR | perm});
}

int cpio_add_file(struct cpio *c, const char *name, mode_t perm, const void *data, size_t len)
{
    return cpio_add(c, &(struct cpio_entry){.name = name, .mode = S_IFREG | perm,
                                            .data = data, .len = len});
}

int cpio_add_symlink(struct cpio *c, const char *name, const char *target)
{
    return cpio_add(c, &(struct cpio_entry){.name = name, .mode = S_IFLNK | 0777,
                                            .data = target, .len = strlen(target)});
}

int cpio_finish(struct cpio *c)
{
    int r = cpio_add(c, &(struct cpio_entry){.name = "TRAILER!!!"});
    /* The kernel reads the archive in 512-byte blocks, as cpio writes it. */
    static const uint8_t zeros[512];
    if (r == 0)
        blob_put(&c->out, zeros, (512 - c->out.len % 512) % 512);
    return r == 0 && c->out.failed ? err_set(ENOMEM, "cpio") : r;
}

void cpio_free(struct cpio *c)
{
    blob_free(&c->out);
}
