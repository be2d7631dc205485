/* File system information: FreeBSD's statfs, fstatfs and getfsstat
 * (struct statfs, the ino64 layout) and NetBSD's statvfs1, fstatvfs1 and
 * getvfsstat (struct statvfs), from Linux's statfs and the mount's row in
 * /proc/self/mountinfo, which names its mount point, source and type.
 * BSD programs look at the type by name (f_fstypename): f_type is 0. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

#include "bsduser/freebsd_abi.h"
#include "bsduser/internal.h"
#include "bsduser/netbsd_abi.h"

#define FREEBSD_STATFS_SIZE 2344
#define FREEBSD_STATFS_VERSION 0x20140518u
#define NETBSD_STATVFS_SIZE 2256
#define NAME_ROOM 1024

struct mount_row {
    int id;
    char on[NAME_ROOM], from[NAME_ROOM], type[32];
};

/* Linux's type names the BSDs spell their own way. */
static const char *bsd_type_name(const char *linux_name)
{
    static const struct {
        const char *linux_, *bsd;
    } names[] = {{"ext2", "ext2fs"}, {"ext3", "ext2fs"}, {"ext4", "ext2fs"}, {"proc", "procfs"},
                 {"devtmpfs", "devfs"}, {"nfs4", "nfs"}, {"vfat", "msdosfs"}, {"overlay", "unionfs"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i].linux_, linux_name) == 0)
            return names[i].bsd;
    return strncmp(linux_name, "fuse", 4) == 0 ? "fusefs" : linux_name;
}

/* mountinfo writes space, tab, newline and backslash as \ooo. */
static void unescape(char *to, size_t room, const char *from)
{
    size_t n = 0;
    while (*from && n + 1 < room) {
        if (from[0] == '\\' && from[1] >= '0' && from[1] <= '3' && from[2] && from[3]) {
            to[n++] = (char)((from[1] - '0') * 64 + (from[2] - '0') * 8 + (from[3] - '0'));
            from += 4;
        } else {
            to[n++] = *from++;
        }
    }
    to[n] = '\0';
}

/* One mountinfo line: "id parent maj:min root mountpoint options [tags] - type source ...". */
static bool parse_row(char *line, struct mount_row *row)
{
    char *save = NULL, *field[6];
    int n = 0;
    for (char *t = strtok_r(line, " \n", &save); t && n < 5; t = strtok_r(NULL, " \n", &save))
        field[n++] = t;
    if (n < 5)
        return false;
    char *tail = strtok_r(NULL, "\n", &save);
    char *dash = tail ? strstr(tail, "- ") : NULL;
    char type[64], from[NAME_ROOM * 4];
    if (!dash || sscanf(dash, "- %63s %4095s", type, from) != 2)
        return false;
    row->id = atoi(field[0]);
    unescape(row->on, sizeof(row->on), field[4]);
    unescape(row->from, sizeof(row->from), from);
    const char *name = bsd_type_name(type);
    size_t len = strnlen(name, sizeof(row->type) - 1);
    memcpy(row->type, name, len);
    row->type[len] = '\0';
    return true;
}

/* Calls visit for each mount (all when id < 0, else the one with that
 * id) until it returns false; returns how many were visited. */
static long each_mount(int id, bool (*visit)(const struct mount_row *, void *), void *arg)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[3 * NAME_ROOM * 4];
    struct mount_row row;
    long seen = 0;
    if (!f)
        return -errno;
    while (fgets(line, sizeof(line), f))
        if (parse_row(line, &row) && (id < 0 || row.id == id)) {
            seen++;
            if (!visit(&row, arg))
                break;
        }
    fclose(f);
    return seen;
}

static bool take_row(const struct mount_row *row, void *arg)
{
    *(struct mount_row *)arg = *row;
    return false;
}

/* The mount holding fd (path NULL) or path; names stay empty when the
 * kernel cannot tell (no STATX_MNT_ID before Linux 5.8). */
static void mount_of(int fd, const char *path, struct mount_row *row)
{
    struct statx sx;
    memset(row, 0, sizeof(*row));
    snprintf(row->type, sizeof(row->type), "unknown");
    if (statx(path ? AT_FDCWD : fd, path ? path : "", path ? 0 : AT_EMPTY_PATH, STATX_MNT_ID,
              &sx) == 0 &&
        (sx.stx_mask & STATX_MNT_ID))
        each_mount((int)sx.stx_mnt_id, take_row, row);
}

static bool is_local(const struct mount_row *row)
{
    static const char *const remote[] = {"nfs", "cifs", "smb3", "9p", "fusefs"};
    for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++)
        if (strcmp(row->type, remote[i]) == 0)
            return false;
    return true;
}

/* Linux's ST_* mount flags as the BSD's MNT_* (the same bits in both). */
static uint64_t mount_flags(const struct statfs *fs, const struct mount_row *row)
{
    bool net = bsd_personality() == BSD_NETBSD;
    uint64_t out = 0;
    if (fs->f_flags & ST_RDONLY)
        out |= FREEBSD_MNT_RDONLY;
    if (fs->f_flags & ST_SYNCHRONOUS)
        out |= FREEBSD_MNT_SYNCHRONOUS;
    if (fs->f_flags & ST_NOEXEC)
        out |= FREEBSD_MNT_NOEXEC;
    if (fs->f_flags & ST_NOSUID)
        out |= FREEBSD_MNT_NOSUID;
    if (fs->f_flags & ST_NOATIME)
        out |= net ? NETBSD_MNT_NOATIME : FREEBSD_MNT_NOATIME;
    if (net && (fs->f_flags & ST_NODEV))
        out |= NETBSD_MNT_NODEV;
    if (is_local(row))
        out |= FREEBSD_MNT_LOCAL;
    return out;
}

static void put64(uint8_t *b, size_t at, uint64_t v)
{
    memcpy(b + at, &v, 8);
}

/* A name into a zeroed field, cut to leave its terminating NUL. */
static void put_name(uint8_t *b, size_t at, size_t room, const char *name)
{
    memcpy(b + at, name, strnlen(name, room - 1));
}

static void put_names(uint8_t *b, size_t type_at, size_t type_room, size_t on_at, size_t from_at,
                      size_t name_room, const struct mount_row *row)
{
    put_name(b, type_at, type_room, row->type);
    put_name(b, on_at, name_room, row->on);
    put_name(b, from_at, name_room, row->from);
}

/* FreeBSD's struct statfs: today's, and FreeBSD 11's (the freebsd11_
 * calls), the same up to f_mntfromname, which has 88 bytes there, as
 * f_mntonname after it. */
struct statfs_format {
    size_t size;
    uint32_t version;
    size_t name_room;
};
static const struct statfs_format statfs_now = {FREEBSD_STATFS_SIZE, FREEBSD_STATFS_VERSION,
                                                NAME_ROOM};
static const struct statfs_format statfs_11 = {472, 0x20030518u, 88};

/* FreeBSD: f_bsize is the fragment size, f_iosize the transfer size. */
static void freebsd_statfs(uint8_t *b, const struct statfs_format *f, const struct statfs *fs,
                           const struct mount_row *row)
{
    memset(b, 0, f->size);
    memcpy(b, &f->version, 4);
    put64(b, 8, mount_flags(fs, row));
    put64(b, 16, (uint64_t)(fs->f_frsize ? fs->f_frsize : fs->f_bsize));
    put64(b, 24, (uint64_t)fs->f_bsize);
    put64(b, 32, fs->f_blocks);
    put64(b, 40, fs->f_bfree);
    put64(b, 48, fs->f_bavail);
    put64(b, 56, fs->f_files);
    put64(b, 64, fs->f_ffree);
    uint32_t namemax = (uint32_t)fs->f_namelen;
    memcpy(b + 184, &namemax, 4);
    memcpy(b + 192, &fs->f_fsid, 8);
    put_names(b, 280, 16, 296 + f->name_room, 296, f->name_room, row);
}

static void netbsd_statvfs(uint8_t *b, const struct statfs *fs, const struct mount_row *row)
{
    memset(b, 0, NETBSD_STATVFS_SIZE);
    put64(b, 0, mount_flags(fs, row));
    put64(b, 8, (uint64_t)fs->f_bsize);
    put64(b, 16, (uint64_t)(fs->f_frsize ? fs->f_frsize : fs->f_bsize));
    put64(b, 24, (uint64_t)fs->f_bsize);
    put64(b, 32, fs->f_blocks);
    put64(b, 40, fs->f_bfree);
    put64(b, 48, fs->f_bavail);
    put64(b, 56, fs->f_bfree - fs->f_bavail);
    put64(b, 64, fs->f_files);
    put64(b, 72, fs->f_ffree);
    put64(b, 80, fs->f_ffree);
    memcpy(b + 128, &fs->f_fsid, 8);
    int first;
    memcpy(&first, &fs->f_fsid, 4);
    put64(b, 136, (uint64_t)(uint32_t)first);
    put64(b, 144, (uint64_t)fs->f_namelen);
    put_names(b, 172, 32, 204, 204 + NAME_ROOM, NAME_ROOM, row);
}

/* The guest's struct (f: FreeBSD's format; NetBSD's statvfs has one). */
static long put_fsinfo(uint64_t to, const struct statfs_format *f, const struct statfs *fs,
                       const struct mount_row *row)
{
    uint8_t b[FREEBSD_STATFS_SIZE];
    if (bsd_personality() == BSD_NETBSD) {
        netbsd_statvfs(b, fs, row);
        return bsd_copy_out(to, b, NETBSD_STATVFS_SIZE);
    }
    freebsd_statfs(b, f, fs, row);
    return bsd_copy_out(to, b, f->size);
}

static size_t fsinfo_size(const struct statfs_format *f)
{
    return bsd_personality() == BSD_NETBSD ? NETBSD_STATVFS_SIZE : f->size;
}

static long statfs_as(const long *a, const struct statfs_format *f)
{
    struct statfs fs;
    struct mount_row row;
    PATH_ARG(path, a[0]);
    if (statfs(path, &fs) < 0)
        return -errno;
    mount_of(-1, path, &row);
    return put_fsinfo((uint64_t)a[1], f, &fs, &row);
}

static long fstatfs_as(const long *a, const struct statfs_format *f)
{
    struct statfs fs;
    struct mount_row row;
    if (fstatfs((int)a[0], &fs) < 0)
        return -errno;
    mount_of((int)a[0], NULL, &row);
    return put_fsinfo((uint64_t)a[1], f, &fs, &row);
}

struct listing {
    const struct statfs_format *format;
    uint64_t to, room, written;
    long error;
};

/* One mount into the guest's array while it has room (a mount that
 * cannot be asked, like one of another namespace, is left out). */
static bool list_mount(const struct mount_row *row, void *arg)
{
    struct listing *l = arg;
    size_t size = fsinfo_size(l->format);
    struct statfs fs;
    if (!l->to)
        return true;
    if ((l->written + 1) * size > l->room)
        return false;
    if (statfs(row->on, &fs) < 0)
        return true;
    l->error = put_fsinfo(l->to + l->written * size, l->format, &fs, row);
    l->written++;
    return l->error == 0;
}

/* getfsstat(buf, bufsize, mode) / getvfsstat(buf, bufsize, flags): how
 * many mounts there are (buf NULL), or how many were written. */
static long getfsstat_as(const long *a, const struct statfs_format *f)
{
    struct listing l = {.format = f, .to = (uint64_t)a[0], .room = (uint64_t)a[1]};
    if (a[1] < 0)
        return -EINVAL;
    long seen = each_mount(-1, list_mount, &l);
    if (seen < 0 || l.error < 0)
        return seen < 0 ? seen : l.error;
    return l.to ? (long)l.written : seen;
}

/* NetBSD's statvfs1(path, buf, flags) and fstatvfs1(fd, buf, flags): the
 * flags (wait or not for fresh figures) change nothing here. */
static long sys_statfs(const long *a) { return statfs_as(a, &statfs_now); }
static long sys_fstatfs(const long *a) { return fstatfs_as(a, &statfs_now); }
static long sys_getfsstat(const long *a) { return getfsstat_as(a, &statfs_now); }
static long sys_freebsd11_statfs(const long *a) { return statfs_as(a, &statfs_11); }
static long sys_freebsd11_fstatfs(const long *a) { return fstatfs_as(a, &statfs_11); }
static long sys_freebsd11_getfsstat(const long *a) { return getfsstat_as(a, &statfs_11); }

const struct bsd_handler bsd_fsinfo_calls[] = {
    {"freebsd:statfs", sys_statfs}, {"freebsd:fstatfs", sys_fstatfs},
    {"freebsd:getfsstat", sys_getfsstat}, {"freebsd:freebsd11_statfs", sys_freebsd11_statfs},
    {"freebsd:freebsd11_fstatfs", sys_freebsd11_fstatfs},
    {"freebsd:freebsd11_getfsstat", sys_freebsd11_getfsstat}, {"netbsd:statvfs1", sys_statfs},
    {"netbsd:fstatvfs1", sys_fstatfs}, {"netbsd:getvfsstat", sys_getfsstat},
};
const size_t bsd_fsinfo_call_count = sizeof(bsd_fsinfo_calls) / sizeof(bsd_fsinfo_calls[0]);
