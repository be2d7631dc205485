/* binfmt_misc entries, so `./prog` runs a FreeBSD executable under
 * bsd-user as qemu-user runs foreign ones. One entry, FreeBSD's: its
 * executables say so at a fixed place (ELF OSABI 9, e_ident[7]). NetBSD's
 * say OSABI 0 (SYSV), as Linux's do, and only a note (.note.netbsd.ident)
 * tells them apart, whose file offset depends on the linker and on how
 * many program headers come first: no magic at a fixed offset matches
 * them without matching Linux executables too, so they get no entry
 * (`smolvm bsd-user PROGRAM` runs them). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bsduser/bsduser.h"
#include "util/err.h"

#define BINFMT_DIR "/proc/sys/fs/binfmt_misc"
#define BINFMT_ENTRY BINFMT_DIR "/" BSDUSER_BINFMT_NAME

/* A 64-bit little-endian ELF, version 1, OSABI FreeBSD (any ABI version);
 * e_type EXEC or DYN (2 or 3: the mask drops the low bit); e_machine
 * x86-64 (0x3e). */
static const char freebsd_magic[] =
    "\\x7fELF\\x02\\x01\\x01\\x09\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x3e\\x00";
static const char freebsd_mask[] =
    "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\xfe\\xff\\xff\\xff";

/* binfmt_misc mounted where its files are (it mounts it when it is not). */
static int binfmt_ready(void)
{
    if (access(BINFMT_DIR "/register", F_OK) == 0)
        return 0;
    if (mount("binfmt_misc", BINFMT_DIR, "binfmt_misc", 0, NULL) < 0)
        return err_set(errno, "binfmt_misc is not mounted at %s and cannot be", BINFMT_DIR);
    return 0;
}

/* One write of line to a binfmt_misc control file (the kernel takes a
 * command per write). */
static int binfmt_write(const char *path, const char *line)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(errno, "%s", path);
    ssize_t n = write(fd, line, strlen(line));
    int saved = errno;
    close(fd);
    if (n != (ssize_t)strlen(line))
        return err_set(n < 0 ? saved : EIO, "%s", path);
    return 0;
}

int bsd_binfmt_unregister(void)
{
    int r = binfmt_ready();
    if (r < 0)
        return r;
    if (access(BINFMT_ENTRY, F_OK) < 0)
        return 0; /* none: nothing to undo */
    return binfmt_write(BINFMT_ENTRY, "-1");
}

/* Whether the kernel tells the interpreter that argv[0] was kept (flag P):
 * AT_FLAGS_PRESERVE_ARGV0, Linux 5.12+. Without it, smol-bsd-user could not
 * tell the program's argv[0] from an argument of its own. */
static bool kernel_says_argv0_kept(void)
{
    struct utsname u;
    int major = 0, minor = 0;
    return uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
           (major > 5 || (major == 5 && minor >= 12));
}

int bsd_binfmt_register(const char *interpreter)
{
    char line[512];
    /* P: the program's own argv[0] is kept (the kernel says so in
     * AT_FLAGS; on older kernels the program's path stands in for it);
     * F: the interpreter is opened now, so the entry works in containers
     * and chroots that do not have it. */
    if (snprintf(line, sizeof(line), ":%s:M::%s:%s:%s:%sF", BSDUSER_BINFMT_NAME, freebsd_magic,
                 freebsd_mask, interpreter, kernel_says_argv0_kept() ? "P" : "") >=
            (int)sizeof(line) ||
        strchr(interpreter, ':'))
        return err_plain(EINVAL, "%s: not usable as a binfmt_misc interpreter (too long, or a ':')",
                         interpreter);
    int r = bsd_binfmt_unregister(); /* an older entry is replaced */
    return r < 0 ? r : binfmt_write(BINFMT_DIR "/register", line);
}
