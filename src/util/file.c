#include "util/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

int file_map(const char *path, const char *what, struct mapped_file *out)
{
    struct stat st;
    void *p;
    int fd, e;

    out->data = NULL;
    out->len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(errno, "cannot open %s '%s'", what, path);
    if (fstat(fd, &st) < 0) {
        e = errno;
        close(fd);
        return err_set(e, "cannot stat %s '%s'", what, path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_plain(EINVAL, "%s '%s' is not a regular file", what, path);
    }
    if (st.st_size == 0) {
        close(fd);
        return err_plain(ENOEXEC, "%s '%s' is empty", what, path);
    }
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    e = errno;
    close(fd);
    if (p == MAP_FAILED)
        return err_set(e, "cannot read %s '%s'", what, path);
    out->data = p;
    out->len = (size_t)st.st_size;
    return 0;
}

void file_unmap(struct mapped_file *f)
{
    if (f->data)
        munmap((void *)f->data, f->len);
    f->data = NULL;
    f->len = 0;
}
