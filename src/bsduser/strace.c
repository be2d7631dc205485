/* --strace: one line per system call, its arguments decoded as truss
 * does: strings quoted (escaped, cut at STRING_SHOWN bytes with "..."),
 * open, mmap and protection flags by name, descriptors and sizes in
 * decimal, structures by address; a failure's BSD errno with its name.
 * Calls without a format here show their arguments in hex. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bsduser/freebsd_abi.h"
#include "bsduser/internal.h"
#include "bsduser/netbsd_abi.h"

#define STRING_SHOWN 32

/* One letter per argument:
 *   i int   u unsigned   x hex   p a structure's address   m mode (octal)
 *   s string   W buffer the call reads (length: the next argument)
 *   R buffer the call fills (length: its result)   f a directory fd (AT_FDCWD)
 *   o open flags   P mmap protection   M mmap flags   a *at() flags */
static const struct {
    const char *name, *args;
} formats[] = {
    {"exit", "i"}, {"read", "iRu"}, {"write", "iWu"}, {"open", "som"}, {"openat", "fsom"},
    {"close", "i"}, {"pread", "iRui"}, {"pwrite", "iWui"}, {"readv", "ipi"}, {"writev", "ipi"},
    {"lseek", "iii"}, {"mmap", "xuPMix"}, {"munmap", "xu"}, {"mprotect", "xuP"},
    {"madvise", "xui"}, {"stat", "sp"}, {"lstat", "sp"}, {"fstat", "ip"}, {"fstatat", "fspa"},
    {"freebsd11_stat", "sp"}, {"freebsd11_lstat", "sp"}, {"freebsd11_fstat", "ip"},
    {"freebsd11_fstatat", "fspa"}, {"__stat50", "sp"}, {"__lstat50", "sp"},
    {"__fstat50", "ip"}, {"statfs", "sp"}, {"fstatfs", "ip"}, {"freebsd11_statfs", "sp"},
    {"freebsd11_fstatfs", "ip"}, {"statvfs1", "spi"}, {"fstatvfs1", "ipi"},
    {"access", "si"}, {"eaccess", "si"}, {"faccessat", "fsia"}, {"unlink", "s"},
    {"unlinkat", "fsa"}, {"mkdir", "sm"}, {"mkdirat", "fsm"}, {"rmdir", "s"}, {"chdir", "s"},
    {"fchdir", "i"}, {"rename", "ss"}, {"renameat", "fsfs"}, {"link", "ss"},
    {"linkat", "fsfsa"}, {"symlink", "ss"}, {"symlinkat", "sfs"}, {"readlink", "spu"},
    {"readlinkat", "fspu"}, {"chmod", "sm"}, {"fchmod", "im"}, {"fchmodat", "fsma"},
    {"chown", "sii"}, {"lchown", "sii"}, {"fchown", "iii"}, {"truncate", "si"},
    {"ftruncate", "ii"}, {"mknod", "smi"}, {"mknodat", "fsmi"}, {"freebsd11_mknod", "smi"},
    {"freebsd11_mknodat", "fsmi"}, {"mkfifo", "sm"}, {"execve", "spp"}, {"chroot", "s"},
    {"getdirentries", "ipup"}, {"freebsd11_getdirentries", "ipup"}, {"getdents", "ipu"},
    {"dup", "i"}, {"dup2", "ii"}, {"fcntl", "iix"}, {"ioctl", "ixp"}, {"kill", "ii"},
    {"pipe2", "px"}, {"fsync", "i"}, {"kevent", "ipipip"}, {"freebsd11_kevent", "ipipip"},
    {"socket", "iii"}, {"connect", "ipu"}, {"bind", "ipu"}, {"listen", "ii"},
    {"sendto", "iWuipu"}, {"recvfrom", "iRuipp"}, {"wait4", "ipip"}, {"fork", ""},
    {"getpid", ""},
};

struct line {
    char text[1024];
    size_t used;
};

static void add(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->text + l->used, sizeof(l->text) - l->used, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->used += (size_t)n < sizeof(l->text) - l->used ? (size_t)n : sizeof(l->text) - l->used - 1;
}

/* Up to len bytes of guest memory from at, page by page (a string may end
 * just before an unmapped page): how many could be read. */
static size_t peek(uint8_t *to, uint64_t at, size_t len)
{
    size_t got = 0;
    while (got < len) {
        size_t piece = 4096 - (size_t)((at + got) & 4095);
        if (piece > len - got)
            piece = len - got;
        if (bsd_copy_in(to + got, at + got, piece) < 0)
            break;
        got += piece;
    }
    return got;
}

/* Bytes as a C string literal: "..." after it when there are more. */
static void add_quoted(struct line *l, const uint8_t *b, size_t n, bool more)
{
    add(l, "\"");
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b[i];
        if (c == '"' || c == '\\')
            add(l, "\\%c", c);
        else if (c == '\n')
            add(l, "\\n");
        else if (c == '\t')
            add(l, "\\t");
        else if (c < 0x20 || c >= 0x7f)
            add(l, "\\x%02x", c);
        else
            add(l, "%c", c);
    }
    add(l, more ? "\"..." : "\"");
}

/* A NUL-terminated guest string, or its address when unreadable. */
static void add_string(struct line *l, uint64_t at)
{
    uint8_t b[STRING_SHOWN + 1];
    size_t got = at ? peek(b, at, sizeof(b)) : 0;
    uint8_t *nul = memchr(b, 0, got);
    if (!got || (!nul && got < sizeof(b)))
        add(l, "0x%lx", (unsigned long)at);
    else
        add_quoted(l, b, nul ? (size_t)(nul - b) : STRING_SHOWN, !nul);
}

/* A buffer of len bytes: its first STRING_SHOWN. */
static void add_buffer(struct line *l, uint64_t at, long len)
{
    uint8_t b[STRING_SHOWN];
    size_t want = len < 0 ? 0 : (size_t)len < sizeof(b) ? (size_t)len : sizeof(b);
    if (len < 0 || peek(b, at, want) < want)
        add(l, "0x%lx", (unsigned long)at);
    else
        add_quoted(l, b, want, (size_t)len > want);
}

struct flag {
    long bit;
    const char *name;
};

/* Set bits by name, joined by '|'; what is left in hex; none: zero. */
static void add_flags(struct line *l, long v, const struct flag *f, size_t n, const char *zero)
{
    bool first = true;
    for (size_t i = 0; i < n; i++)
        if (f[i].bit && (v & f[i].bit) == f[i].bit) {
            add(l, "%s%s", first ? "" : "|", f[i].name);
            v &= ~f[i].bit;
            first = false;
        }
    if (v || first)
        add(l, first ? "%s" : "|%s", v ? "" : zero);
    if (v)
        add(l, "0x%lx", (unsigned long)v);
}

#define F(p, name) {p##_##name, #name}
#define OPEN_FLAG_NAMES(p)                                                                     \
    {F(p, O_NONBLOCK), F(p, O_APPEND), F(p, O_CREAT), F(p, O_TRUNC), F(p, O_EXCL),           \
     F(p, O_NOFOLLOW), F(p, O_DIRECTORY), F(p, O_CLOEXEC), F(p, O_NOCTTY), F(p, O_SYNC)}

static void add_open_flags(struct line *l, long v)
{
    static const struct flag freebsd[] = OPEN_FLAG_NAMES(FREEBSD), netbsd[] = OPEN_FLAG_NAMES(NETBSD);
    static const char *const access_mode[] = {"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"};
    add(l, "%s", access_mode[v & 3]);
    if (v & ~3l) {
        add(l, "|");
        add_flags(l, v & ~3l, bsd_proc->os == BSD_NETBSD ? netbsd : freebsd,
                  sizeof(freebsd) / sizeof(freebsd[0]), "");
    }
}

/* Both BSDs number these alike. */
static const struct flag prot_names[] = {F(FREEBSD, PROT_READ), F(FREEBSD, PROT_WRITE),
                                         F(FREEBSD, PROT_EXEC)};
static const struct flag map_names[] = {F(FREEBSD, MAP_SHARED), F(FREEBSD, MAP_PRIVATE),
                                        F(FREEBSD, MAP_FIXED), F(FREEBSD, MAP_ANON),
                                        F(FREEBSD, MAP_STACK), F(FREEBSD, MAP_NOCORE)};
static const struct flag at_names[] = {F(FREEBSD, AT_SYMLINK_NOFOLLOW), F(FREEBSD, AT_REMOVEDIR),
                                       F(FREEBSD, AT_SYMLINK_FOLLOW), F(FREEBSD, AT_EACCESS)};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void add_arg(struct line *l, char kind, const long *a, int i, long r)
{
    long v = a[i];
    switch (kind) {
    case 'i': add(l, "%d", (int)v); break;
    case 'u': add(l, "%lu", (unsigned long)v); break;
    case 'm': add(l, "0%lo", (unsigned long)v); break;
    case 's': add_string(l, (uint64_t)v); break;
    case 'W': add_buffer(l, (uint64_t)v, i < 5 ? a[i + 1] : 0); break;
    case 'R': add_buffer(l, (uint64_t)v, r); break;
    case 'f': v == FREEBSD_AT_FDCWD ? add(l, "AT_FDCWD") : add(l, "%d", (int)v); break;
    case 'o': add_open_flags(l, v); break;
    case 'P': add_flags(l, v, prot_names, COUNT(prot_names), "PROT_NONE"); break;
    case 'M': add_flags(l, v, map_names, COUNT(map_names), "0"); break;
    case 'a': add_flags(l, v, at_names, COUNT(at_names), "0"); break;
    default: add(l, "0x%lx", (unsigned long)v); break;
    }
}

static const char *format_of(const char *name)
{
    for (size_t i = 0; name && i < COUNT(formats); i++)
        if (strcmp(formats[i].name, name) == 0)
            return formats[i].args;
    return NULL;
}

void bsd_trace(const struct bsd_sysent *e, const long *a, long r, bool supported)
{
    struct line l = {.used = 0};
    const char *format = format_of(e ? e->name : NULL);
    int args = format ? (int)strlen(format) : e ? e->nargs : 6;
    add(&l, "%d %s(", getpid(), e ? e->name : "unknown");
    for (int i = 0; i < args && i < 6; i++) {
        if (i)
            add(&l, ",");
        add_arg(&l, format ? format[i] : 'x', a, i, r);
    }
    if (e && strcmp(e->name, "exit") == 0) /* traced before: it does not come back */
        add(&l, ")\n");
    else if (r == BSD_JUSTRETURN)
        add(&l, ") = (its context restored)\n");
    else if (r < 0 && r > -4096) {
        const char *name = strerrorname_np((int)-r);
        add(&l, ") ERR#%d %s '%s'%s\n", -r < 200 ? bsd_proc->errno_map[-r] : (int)-r,
            name ? name : "?", strerror((int)-r), supported ? "" : " (not supported)");
    } else
        add(&l, ") = %ld (0x%lx)\n", r, (unsigned long)r);
    /* One write per line: lines of threads and processes stay whole. */
    if (write(bsd_proc->trace_fd, l.text, l.used) < 0)
        return;
}
