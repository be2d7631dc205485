#include "arch/x86/kernel_file.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"

/* x86_kernel_kind() looks no further than this into a file. */
#define KIND_BYTES 0x206

static int read_elf(const struct elf_source *src, void *dst, size_t len, uint64_t offset)
{
    const struct x86_kernel_file *f = (const void *)((const char *)src -
                                                     offsetof(struct x86_kernel_file, elf));
    return file_pread_exact(f->fd, dst, len, offset, f->what, f->path);
}

static int open_elf(struct x86_kernel_file *f, int fd, size_t size)
{
    struct elf_kernel k;

    f->fd = fd;
    f->elf = (struct elf_source){read_elf, size};
    return elf_kernel_read(&f->elf, &k);
}

int x86_kernel_open(const char *path, const char *what, struct x86_kernel_file *f)
{
    uint8_t head[KIND_BYTES];
    size_t size, n;
    int fd, r;

    *f = (struct x86_kernel_file){.fd = -1, .what = what, .path = strdup(path)};
    if (!f->path)
        return err_set(ENOMEM, "%s '%s'", what, path);
    fd = file_open_read(path, what, &size);
    if (fd < 0)
        return fd;
    n = size < sizeof(head) ? size : sizeof(head);
    r = file_read_exact(fd, head, n, what, path);
    if (r == 0 && x86_kernel_kind(head, n) == X86_KERNEL_ELF)
        r = open_elf(f, fd, size);
    else
        close(fd);
    if (r == 0 && f->fd < 0)
        r = file_map(path, what, &f->image);
    if (r == 0 && f->fd < 0)
        r = x86_kernel_check(f->image.data, f->image.len);
    /* Reading errors name the file already; what is wrong inside it not. */
    if (r == -ENOEXEC)
        err_prefix("%s '%s'", what, path);
    if (r < 0)
        x86_kernel_close(f);
    return r;
}

void x86_kernel_request(const struct x86_kernel_file *f, struct x86_boot_request *req)
{
    req->kernel = f->image.data;
    req->kernel_len = f->image.len;
    req->kernel_file = f->fd >= 0 ? &f->elf : NULL;
}

bool x86_kernel_is_bzimage(const struct x86_kernel_file *f)
{
    return f->fd < 0 && x86_kernel_kind(f->image.data, f->image.len) == X86_KERNEL_BZIMAGE;
}

void x86_kernel_close(struct x86_kernel_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    file_unmap(&f->image);
    free(f->path);
    f->path = NULL;
}
