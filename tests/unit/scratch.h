/* A scratch directory per test program, and shell commands run in it: the
 * tests that ask outside tools (qemu-img, e2fsck, cpio) to judge files. */
#ifndef SMOLVM_TESTS_SCRATCH_H
#define SMOLVM_TESTS_SCRATCH_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

/* Group setup and teardown: mkdtemp /tmp/smolvm-test-<name>.XXXXXX. */
static inline int scratch_setup(const char *name)
{
    snprintf(dir, sizeof(dir), "/tmp/smolvm-test-%s.XXXXXX", name);
    return mkdtemp(dir) ? 0 : -1;
}

static inline int scratch_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The smolvm binary of this build (build/tests/unit/.. /smolvm) into path:
 * 0, or -1 when /proc/self/exe cannot be read. */
static int scratch_find_smolvm(char *path, size_t size) __attribute__((unused));
static int scratch_find_smolvm(char *path, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", path, size - 32);
    if (n <= 0)
        return -1;
    path[n] = 0;
    strcpy(strrchr(path, '/'), "/../../smolvm");
    return 0;
}

/* dir/name, in one of 8 rotating buffers (several may be in use at once). */
static inline char *in_dir(const char *name)
{
    static char paths[8][256];
    static unsigned next;
    char *p = paths[next++ % 8];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

/* stderr into the scratch file NAME until stderr_back (which returns
 * what was said); the saved stderr is returned. */
static inline int stderr_to(const char *name, int *log)
{
    int saved = dup(STDERR_FILENO);
    fflush(stderr);
    *log = open(in_dir(name), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (saved < 0 || *log < 0) {
        perror("stderr_to");
        exit(1);
    }
    dup2(*log, STDERR_FILENO);
    return saved;
}

static inline void stderr_back(int saved, int log, char *said, size_t cap)
{
    ssize_t n;
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    n = pread(log, said, cap - 1, 0);
    said[n > 0 ? n : 0] = '\0';
    close(log);
}

/* Runs a shell command in the scratch directory; returns its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    int n = snprintf(cmd, sizeof(cmd), "cd '%s' && ", dir);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* The scratch file name read into buf (empty when it is missing), NUL-ended. */
static void slurp(const char *name, char *buf, size_t size) __attribute__((unused));
static void slurp(const char *name, char *buf, size_t size)
{
    FILE *f = fopen(in_dir(name), "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
}

/* A qcow2 image's backing-format header extension (0xe2792aca) renamed to a
 * type nobody knows: the image then records no backing format, as images
 * from older tools do (qemu-img no longer writes them). Needs assert_*. */
#define scratch_forget_backing_format(image)                                                 \
    assert_int_equal(sh("python3 -c \"d=open('%s','rb').read(65536);i=d.find(bytes.fromhex(" \
                        "'e2792aca'));assert i>0;f=open('%s','r+b');f.seek(i);"              \
                        "f.write(bytes.fromhex('0badf00d'))\"",                            \
                        (image), (image)),                                                   \
                     0)

#endif
