/* binfmt_misc entries, so `./prog` runs a BSD executable under bsd-user
 * as qemu-user runs foreign ones. An entry matches bytes at fixed offsets,
 * so only executables branded in the ELF header get one: FreeBSD's (OSABI
 * 9, e_ident[7], set by FreeBSD's toolchain and Go) and NetBSD's that Go
 * built (Go brands them OSABI 2). NetBSD's own toolchain leaves OSABI 0
 * (SYSV), as Linux's do, and only a note (.note.netbsd.ident) at no fixed
 * offset tells them apart: no magic matches those without matching Linux
 * executables too (`smolvm bsd-user PROGRAM` runs them). */
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
/* A 64-bit little-endian ELF, version 1, OSABI (byte 7, filled in per
 * BSD; any ABI version); e_type EXEC or DYN (2 or 3: the mask drops the
 * low bit); e_machine x86-64 (0x3e). */
#define ELF_MAGIC(osabi)                                                                           \
    "\\x7fELF\\x02\\x01\\x01\\x" osabi "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x3e\\x00"
static const char elf_mask[] =
    "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\xfe\\xff\\xff\\xff";

static const struct binfmt_entry {
    const char *name, *magic;
} entries[] = {
    {BSDUSER_BINFMT_FREEBSD, ELF_MAGIC("09")},
    {BSDUSER_BINFMT_NETBSD, ELF_MAGIC("02")},
};

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

/* The entry's control file, /proc/sys/fs/binfmt_misc/NAME. */
static void entry_path(char *path, size_t size, const struct binfmt_entry *e)
{
    snprintf(path, size, "%s/%s", BINFMT_DIR, e->name);
}

int bsd_binfmt_unregister(void)
{
    int r = binfmt_ready();
    for (size_t i = 0; r == 0 && i < sizeof(entries) / sizeof(entries[0]); i++) {
        char path[PATH_MAX];
        entry_path(path, sizeof(path), &entries[i]);
        if (access(path, F_OK) == 0) /* none: nothing to undo */
            r = binfmt_write(path, "-1");
    }
    return r;
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

/* One entry's registration line (0), or -1 when the interpreter's path
 * cannot be in one. */
static int entry_line(char *line, size_t size, const struct binfmt_entry *e, const char *interpreter)
{
    /* P: the program's own argv[0] is kept (the kernel says so in
     * AT_FLAGS; on older kernels the program's path stands in for it);
     * F: the interpreter is opened now, so the entry works in containers
     * and chroots that do not have it. */
    int n = snprintf(line, size, ":%s:M::%s:%s:%s:%sF", e->name, e->magic, elf_mask, interpreter,
                     kernel_says_argv0_kept() ? "P" : "");
    return n < 0 || (size_t)n >= size || strchr(interpreter, ':') ? -1 : 0;
}

int bsd_binfmt_register(const char *interpreter)
{
    enum { ENTRIES = sizeof(entries) / sizeof(entries[0]) };
    char lines[ENTRIES][512];
    for (size_t i = 0; i < ENTRIES; i++) /* every line made before anything is touched */
        if (entry_line(lines[i], sizeof(lines[i]), &entries[i], interpreter) < 0)
            return err_plain(EINVAL,
                             "%s: not usable as a binfmt_misc interpreter (too long, or a ':')",
                             interpreter);
    int r = bsd_binfmt_unregister(); /* older entries are replaced */
    for (size_t i = 0; r == 0 && i < ENTRIES; i++)
        r = binfmt_write(BINFMT_DIR "/register", lines[i]);
    if (r < 0) /* all or none: an entry made before the failure goes */
        (void)!bsd_binfmt_unregister();
    return r;
}
