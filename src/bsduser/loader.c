/* Loading a BSD ELF executable and laying out its first stack. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bsduser/bsduser.h"
#include "bsduser/internal.h"
#include "util/err.h"

#define PIE_BASE 0x200000000000ull /* above ASan's shadow, below the host */
#define INTERP_BASE 0x280000000000ull /* the runtime linker */
#define STACK_SIZE (8u << 20)
#define STACK_TOP 0x3ff000000000ull
#define PAGE 4096ull
#define FREEBSD_OSREL 1300139    /* 13.x */

/* FreeBSD's auxiliary vector keys (sys/elf_common.h). */
enum {
    AT_NULL_ = 0, AT_PHDR_ = 3, AT_PHENT_ = 4, AT_PHNUM_ = 5, AT_PAGESZ_ = 6, AT_BASE_ = 7,
    AT_FLAGS_ = 8, AT_ENTRY_ = 9, AT_EXECPATH_ = 15, AT_CANARY_ = 16, AT_CANARYLEN_ = 17,
    AT_OSRELDATE_ = 18, AT_NCPUS_ = 19, AT_PAGESIZES_ = 20, AT_PAGESIZESLEN_ = 21,
    AT_STACKPROT_ = 23, AT_HWCAP_ = 25,
};

uint64_t bsd_guest_map(uint64_t len)
{
    /* Threads map at once; a guard page between mappings. */
    return __atomic_fetch_add(&bsd_proc->next_map, ((len + PAGE - 1) & ~(PAGE - 1)) + PAGE,
                              __ATOMIC_RELAXED);
}

/* The BSD an executable is for: EI_OSABI, or a .note.tag / NetBSD note. */
static int which_bsd(const uint8_t *file, size_t len, const Elf64_Ehdr *h, enum bsd_os *os)
{
    if (h->e_ident[EI_OSABI] == ELFOSABI_FREEBSD || h->e_ident[EI_OSABI] == ELFOSABI_NETBSD) {
        *os = h->e_ident[EI_OSABI] == ELFOSABI_FREEBSD ? BSD_FREEBSD : BSD_NETBSD;
        return 0;
    }
    for (int i = 0; i < h->e_phnum; i++) {
        const Elf64_Phdr *p = (const Elf64_Phdr *)(file + h->e_phoff + (uint64_t)i * h->e_phentsize);
        if (p->p_type != PT_NOTE || p->p_offset > len || p->p_filesz > len - p->p_offset)
            continue;
        for (uint64_t at = p->p_offset; at + 12 <= p->p_offset + p->p_filesz;) {
            const uint32_t *n = (const uint32_t *)(file + at);
            uint64_t name = (n[0] + 3) & ~3u, desc = (n[1] + 3) & ~3u;
            const char *owner = (const char *)(file + at + 12);
            if (at + 12 + name > len)
                break;
            if (n[0] == 8 && memcmp(owner, "FreeBSD", 8) == 0) {
                *os = BSD_FREEBSD;
                return 0;
            }
            if (n[0] == 7 && memcmp(owner, "NetBSD", 7) == 0) {
                *os = BSD_NETBSD;
                return 0;
            }
            at += 12 + name + desc;
        }
    }
    return err_plain(ENOEXEC, "not a FreeBSD or NetBSD executable (no OS/ABI brand or note)");
}

static int check_header(size_t len, const Elf64_Ehdr *h)
{
    if (len < sizeof(*h) || memcmp(h->e_ident, ELFMAG, SELFMAG) != 0)
        return err_plain(ENOEXEC, "not an ELF file");
    if (h->e_ident[EI_CLASS] != ELFCLASS64 || h->e_machine != EM_X86_64)
        return err_plain(ENOEXEC, "not an amd64 (x86-64) executable");
    if (h->e_type != ET_EXEC && h->e_type != ET_DYN)
        return err_plain(ENOEXEC, "not an executable");
    if (h->e_phentsize != sizeof(Elf64_Phdr) || h->e_phoff > len ||
        (uint64_t)h->e_phnum * sizeof(Elf64_Phdr) > len - h->e_phoff)
        return err_plain(ENOEXEC, "program headers outside the file");
    if (h->e_phoff & 7) /* (read in place: a real ELF's are aligned) */
        return err_plain(ENOEXEC, "program headers not aligned");
    return 0;
}

/* Dynamic executables need the BSD's runtime linker, from --root; its
 * path (bounded, in the file) into interp when there is one. */
static int check_static(const uint8_t *file, size_t len, const Elf64_Ehdr *h,
                        const struct bsduser_options *o, char *interp, size_t size)
{
    for (int i = 0; i < h->e_phnum; i++) {
        const Elf64_Phdr *p = (const Elf64_Phdr *)(file + h->e_phoff + (uint64_t)i * sizeof(*p));
        if (p->p_type != PT_INTERP)
            continue;
        if (!o->root)
            return err_plain(ENOEXEC, "a dynamic executable: give --root DIR, a sysroot with "
                                      "the BSD's runtime linker and libraries");
        if (p->p_offset > len || p->p_filesz > len - p->p_offset || p->p_filesz < 2 ||
            p->p_filesz > size || file[p->p_offset + p->p_filesz - 1] != 0 ||
            file[p->p_offset] != '/')
            return err_plain(ENOEXEC, "its runtime linker's path (PT_INTERP) is malformed");
        if (interp)
            memcpy(interp, file + p->p_offset, p->p_filesz);
    }
    return 0;
}

/* A loadable segment lies in the file and, moved by bias, in the guest's
 * range. */
static int check_segment(const Elf64_Phdr *p, uint64_t bias, size_t file_len)
{
    uint64_t start = (p->p_vaddr + bias) & ~(PAGE - 1), shift = (p->p_vaddr + bias) - start;
    uint64_t end = (p->p_vaddr + bias + p->p_memsz + PAGE - 1) & ~(PAGE - 1);

    if (p->p_filesz > p->p_memsz || p->p_offset > file_len || p->p_filesz > file_len - p->p_offset ||
        p->p_vaddr > BSDUSER_GUEST_LIMIT || p->p_memsz > BSDUSER_GUEST_LIMIT ||
        end > BSDUSER_GUEST_LIMIT || end <= start || (p->p_offset & (PAGE - 1)) != (shift & (PAGE - 1)))
        return err_plain(ENOEXEC, "a segment at 0x%llx is invalid or out of range",
                         (unsigned long long)p->p_vaddr);
    return 0;
}

/* The segment's file pages mapped from the file itself (as the kernel's
 * loader does: no copy, the page cache's pages until written), its bss
 * zeroed and anonymous past them: 0; 1 when the file cannot be mapped
 * (the caller reads it instead); a negative errno. */
static int map_segment_file(int fd, const Elf64_Phdr *p, uint64_t bias, int prot)
{
    uint64_t start = (p->p_vaddr + bias) & ~(PAGE - 1), shift = (p->p_vaddr + bias) - start;
    uint64_t end = (p->p_vaddr + bias + p->p_memsz + PAGE - 1) & ~(PAGE - 1);
    uint64_t file_end = p->p_vaddr + bias + p->p_filesz;
    uint64_t file_pages_end = (file_end + PAGE - 1) & ~(PAGE - 1);
    bool bss_in_page = p->p_memsz > p->p_filesz && (file_end & (PAGE - 1));
    if (p->p_filesz == 0)
        return 1;
    void *m = mmap((void *)start, file_pages_end - start, prot | (bss_in_page ? PROT_WRITE : 0),
                   MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, (off_t)(p->p_offset - shift));
    if (m == MAP_FAILED)
        return errno == EEXIST ? err_set(errno, "map a segment at 0x%llx", (unsigned long long)start)
                               : 1;
    if (bss_in_page) {
        memset((void *)file_end, 0, file_pages_end - file_end);
        if (mprotect(m, file_pages_end - start, prot) < 0)
            return err_set(errno, "protect a segment");
    }
    if (end > file_pages_end &&
        mmap((void *)file_pages_end, end - file_pages_end, prot,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED)
        return err_set(errno, "map a segment at 0x%llx", (unsigned long long)file_pages_end);
    return 0;
}

static int map_segment(int fd, const Elf64_Phdr *p, uint64_t bias, size_t file_len)
{
    uint64_t start = (p->p_vaddr + bias) & ~(PAGE - 1), shift = (p->p_vaddr + bias) - start;
    uint64_t end = (p->p_vaddr + bias + p->p_memsz + PAGE - 1) & ~(PAGE - 1);
    int prot = (p->p_flags & PF_R ? PROT_READ : 0) | (p->p_flags & PF_W ? PROT_WRITE : 0) |
               (p->p_flags & PF_X ? PROT_EXEC : 0);
    int r = check_segment(p, bias, file_len);
    if (r < 0)
        return r;
    r = map_segment_file(fd, p, bias, prot);
    if (r <= 0)
        return r;
    void *m = mmap((void *)start, end - start, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (m == MAP_FAILED)
        return err_set(errno, "map a segment at 0x%llx", (unsigned long long)start);
    if (pread(fd, (uint8_t *)m + shift, p->p_filesz, (off_t)p->p_offset) != (ssize_t)p->p_filesz)
        return err_plain(EIO, "read a segment");
    if (mprotect(m, end - start, prot) < 0)
        return err_set(errno, "protect a segment");
    return 0;
}

/* The file mapped read-only and its header checked: an ELF for amd64 from
 * one of the BSDs. */
struct elf_file {
    int fd;
    uint8_t *data;
    size_t len;
};

static void elf_close(struct elf_file *f)
{
    if (f->data && f->data != MAP_FAILED)
        munmap(f->data, f->len);
    if (f->fd >= 0)
        close(f->fd);
}

static int elf_open(const char *path, struct elf_file *f, enum bsd_os *os)
{
    struct stat st;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    f->data = NULL;
    if (f->fd < 0 || fstat(f->fd, &st) < 0) {
        /* Only the reason: the callers put the path (and its role) in front. */
        int e = errno, r = err_plain(e, "%s", strerror(e));
        elf_close(f);
        return r;
    }
    f->len = (size_t)st.st_size;
    f->data = f->len >= sizeof(Elf64_Ehdr) ? mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, f->fd, 0)
                                           : MAP_FAILED;
    if (f->data == MAP_FAILED) {
        elf_close(f);
        return err_plain(ENOEXEC, "'%s' is not an ELF file", path);
    }
    const Elf64_Ehdr *h = (const Elf64_Ehdr *)f->data;
    int r = check_header(f->len, h);
    if (r == 0)
        r = which_bsd(f->data, f->len, h, os);
    if (r < 0)
        elf_close(f);
    return r;
}

int bsd_check_elf(const uint8_t *file, size_t len, const struct bsduser_options *o,
                  enum bsd_os *os)
{
    const Elf64_Ehdr *h = (const Elf64_Ehdr *)file;
    int r = check_header(len, h);
    if (r == 0)
        r = which_bsd(file, len, h, os);
    if (r == 0)
        r = check_static(file, len, h, o, NULL, PATH_MAX);
    for (int i = 0; r == 0 && i < h->e_phnum; i++) {
        const Elf64_Phdr *p = (const Elf64_Phdr *)(file + h->e_phoff + (uint64_t)i * sizeof(*p));
        if (p->p_type == PT_LOAD)
            r = check_segment(p, h->e_type == ET_DYN ? PIE_BASE : 0, len);
    }
    return r;
}

bool bsd_probe(const char *path)
{
    struct elf_file f;
    enum bsd_os os;
    if (elf_open(path, &f, &os) < 0) {
        err_clear();
        return false;
    }
    elf_close(&f);
    return true;
}

/* Maps every loadable segment of f moved by bias; the highest end into
 * *brk, the program headers' address into *phdr. */
static int map_all(const struct elf_file *f, uint64_t bias, uint64_t *brk, uint64_t *phdr)
{
    const Elf64_Ehdr *h = (const Elf64_Ehdr *)f->data;
    int r = 0;
    for (int i = 0; r == 0 && i < h->e_phnum; i++) {
        const Elf64_Phdr *p = (const Elf64_Phdr *)(f->data + h->e_phoff + (uint64_t)i * sizeof(*p));
        if (p->p_type != PT_LOAD)
            continue;
        r = map_segment(f->fd, p, bias, f->len);
        uint64_t end = (p->p_vaddr + bias + p->p_memsz + PAGE - 1) & ~(PAGE - 1);
        if (end > *brk)
            *brk = end;
        if (p->p_offset <= h->e_phoff && h->e_phoff < p->p_offset + p->p_filesz)
            *phdr = p->p_vaddr + bias + (h->e_phoff - p->p_offset);
    }
    return r;
}

/* The runtime linker from the sysroot, at INTERP_BASE: where the program
 * starts. */
static int load_interpreter(const char *root, const char *interp, struct bsd_image *out)
{
    char path[PATH_MAX];
    struct elf_file f;
    enum bsd_os os;
    uint64_t brk = 0, phdr = 0;

    if (snprintf(path, sizeof(path), "%s%s", root, interp) >= (int)sizeof(path))
        return err_plain(ENAMETOOLONG, "its runtime linker's path is too long");
    int r = elf_open(path, &f, &os);
    if (r < 0)
        return err_prefix("the runtime linker '%s'", path), r;
    if (((const Elf64_Ehdr *)f.data)->e_type != ET_DYN)
        r = err_plain(ENOEXEC, "the runtime linker '%s' is not position independent", path);
    if (r == 0)
        r = map_all(&f, INTERP_BASE, &brk, &phdr);
    if (r == 0) {
        out->interp_base = INTERP_BASE;
        out->start = ((const Elf64_Ehdr *)f.data)->e_entry + INTERP_BASE;
    }
    elf_close(&f);
    return r;
}

int bsd_load(const char *path, const struct bsduser_options *o, struct bsd_image *out)
{
    struct elf_file f;
    char interp[PATH_MAX] = "";
    int r;

    memset(out, 0, sizeof(*out));
    r = elf_open(path, &f, &out->os);
    if (r < 0)
        return r == -ENOEXEC ? r : (err_prefix("'%s'", path), r);
    const Elf64_Ehdr *h = (const Elf64_Ehdr *)f.data;
    r = check_static(f.data, f.len, h, o, interp, sizeof(interp));
    out->base = h->e_type == ET_DYN ? PIE_BASE : 0;
    if (r == 0)
        r = map_all(&f, out->base, &out->brk, &out->phdr);
    if (r == 0)
        bsd_rewrite_scan(f.data, f.len, out->base, &out->code);
    out->entry = out->start = h->e_entry + out->base;
    out->phent = sizeof(Elf64_Phdr);
    out->phnum = h->e_phnum;
    elf_close(&f);
    if (r == 0 && interp[0]) {
        r = load_interpreter(o->root, interp, out);
        if (r < 0)
            free(out->code.funcs);
        return r;
    }
    return r < 0 ? (err_prefix("'%s'", path), r) : 0;
}

/* Pushes bytes onto the stack being built, returns their address. */
static uint64_t push(uint64_t *sp, const void *data, size_t len)
{
    *sp -= len;
    memcpy((void *)*sp, data, len);
    return *sp;
}

uint64_t bsd_stack(const struct bsd_image *img, const char *path, int argc, char **argv,
                   char **envp)
{
    uint64_t top = STACK_TOP, sp, base = top - STACK_SIZE;
    void *m = mmap((void *)base, STACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_GROWSDOWN, -1, 0);
    int envc = 0;
    uint8_t canary[64];
    uint64_t pagesizes[3] = {4096, 2u << 20, 1u << 30};

    if (m == MAP_FAILED)
        return 0;
    while (envp[envc])
        envc++;
    sp = top;
    /* Strings and blocks at the top, as the BSD kernel puts them. */
    uint64_t exec_path = push(&sp, path, strlen(path) + 1);
    if (getrandom(canary, sizeof(canary), 0) != sizeof(canary))
        memset(canary, 0x5a, sizeof(canary));
    uint64_t canary_at = push(&sp, canary, sizeof(canary));
    uint64_t sizes_at = push(&sp, pagesizes, sizeof(pagesizes));
    uint64_t *arg_ptrs = calloc((size_t)argc + 1, 8), *env_ptrs = calloc((size_t)envc + 1, 8);
    for (int i = argc - 1; i >= 0; i--)
        arg_ptrs[i] = push(&sp, argv[i], strlen(argv[i]) + 1);
    for (int i = envc - 1; i >= 0; i--)
        env_ptrs[i] = push(&sp, envp[i], strlen(envp[i]) + 1);
    sp &= ~15ull;
    uint64_t aux[][2] = {
        {AT_PHDR_, img->phdr}, {AT_PHENT_, img->phent}, {AT_PHNUM_, img->phnum},
        {AT_PAGESZ_, PAGE}, {AT_BASE_, img->interp_base}, {AT_FLAGS_, 0}, {AT_ENTRY_, img->entry},
        {AT_EXECPATH_, exec_path}, {AT_CANARY_, canary_at}, {AT_CANARYLEN_, sizeof(canary)},
        {AT_OSRELDATE_, FREEBSD_OSREL}, {AT_NCPUS_, (uint64_t)sysconf(_SC_NPROCESSORS_ONLN)},
        {AT_PAGESIZES_, sizes_at}, {AT_PAGESIZESLEN_, sizeof(pagesizes)},
        {AT_STACKPROT_, PROT_READ | PROT_WRITE}, {AT_HWCAP_, 0}, {AT_NULL_, 0},
    };
    size_t words = 1 + (size_t)argc + 1 + (size_t)envc + 1 + 2 * (sizeof(aux) / sizeof(aux[0]));
    if (words % 2)
        sp -= 8; /* argc 16-byte aligned */
    push(&sp, aux, sizeof(aux));
    push(&sp, env_ptrs, ((size_t)envc + 1) * 8);
    push(&sp, arg_ptrs, ((size_t)argc + 1) * 8);
    uint64_t count = (uint64_t)argc;
    push(&sp, &count, 8);
    free(arg_ptrs);
    free(env_ptrs);
    return sp;
}
