/* bsd-user: FreeBSD (and NetBSD) amd64 executables run on a Linux amd64
 * host, natively (same instruction set), their system calls translated.
 * Syscall User Dispatch sends every `syscall` outside smolvm's own address
 * range (the guest is loaded below GUEST_LIMIT, smolvm and its libraries
 * live above) to a SIGSYS handler that answers it the BSD way. */
#ifndef SMOLVM_BSDUSER_BSDUSER_H
#define SMOLVM_BSDUSER_BSDUSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The guest lives below this; smolvm (PIE at 0x55..., libraries at
 * 0x7f...) above, where system calls go straight to Linux. */
#define BSDUSER_GUEST_LIMIT 0x500000000000ull

enum bsd_os { BSD_FREEBSD, BSD_NETBSD };

/* The executable's code, for rewriting its system call sites (rewrite.c):
 * its text segment [lo, hi) and where its functions begin (sorted; go:
 * from Go's function table, else from the ELF symbol table). */
struct bsd_code {
    uint64_t lo, hi;
    uint64_t *funcs;
    size_t nfuncs;
    bool go;
};

struct bsd_image {
    enum bsd_os os;
    uint64_t entry;              /* the program's (AT_ENTRY) */
    uint64_t start;              /* where execution begins: the runtime linker's entry, or entry */
    uint64_t phdr, phent, phnum; /* for the auxiliary vector */
    uint64_t base;               /* load bias (PIE), 0 otherwise */
    uint64_t interp_base;        /* the runtime linker's load address (AT_BASE), 0: none */
    uint64_t brk;                /* end of the highest segment */
    struct bsd_code code;        /* the executable's (not the runtime linker's) */
};

struct bsduser_options {
    bool strace;
    /* Where --strace's lines go: a descriptor open for writing (-o FILE's;
     * it implies --strace); 0: stderr. */
    int trace_fd;
    /* A BSD sysroot: a dynamic executable's runtime linker comes from
     * there, and absolute paths the program uses are looked up there
     * first (as QEMU's -L does). */
    const char *root;
};

/* Maps path's segments (and, for a dynamic executable, its runtime linker
 * from the --root sysroot); refuses what we cannot run with one clear
 * message (dynamic executables without --root, other OSes, machines). */
int bsd_load(const char *path, const struct bsduser_options *o, struct bsd_image *out)
    __attribute__((warn_unused_result));

/* The checks bsd_load makes before it maps anything, on a file's bytes
 * in memory: 0, or -ENOEXEC (-ENOTSUP) with the message set. */
int bsd_check_elf(const uint8_t *file, size_t len, const struct bsduser_options *o,
                  enum bsd_os *os) __attribute__((warn_unused_result));

/* Whether path is an executable bsd-user runs (a FreeBSD or NetBSD amd64
 * ELF): an execve of one stays under bsd-user. */
bool bsd_probe(const char *path);

/* Builds the initial stack as the BSD kernel lays it out and returns the
 * stack pointer to start with. */
uint64_t bsd_stack(const struct bsd_image *img, const char *path, int argc, char **argv,
                   char **envp);

/* Installs the system call translation and jumps to the guest: returns
 * only on failure to set up (message set). */
int bsduser_run(const char *path, const struct bsduser_options *o, int argc, char **argv)
    __attribute__((warn_unused_result));

/* binfmt_misc: the entries that run FreeBSD amd64 executables and
 * NetBSD's branded in their ELF header (Go's) with interpreter (a path
 * whose name is smol-bsd-user), replacing older ones (both made, or
 * neither); their removal (none there: nothing to do). binfmt_misc is
 * mounted when it is not. 0, or a negative errno with the message set. */
#define BSDUSER_BINFMT_FREEBSD "smolvm-freebsd"
#define BSDUSER_BINFMT_NETBSD "smolvm-netbsd"
int bsd_binfmt_register(const char *interpreter) __attribute__((warn_unused_result));
int bsd_binfmt_unregister(void) __attribute__((warn_unused_result));

/* Guest memory allocation below BSDUSER_GUEST_LIMIT (mmap without a fixed
 * address lands here). */
uint64_t bsd_guest_map(uint64_t len);

#endif
