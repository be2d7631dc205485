/* System call sites rewritten into jumps: a call made through Syscall
 * User Dispatch costs a SIGSYS delivery and a sigreturn (most of its
 * time); after the first one from a site in the executable's code, the
 * instructions just before that `syscall` (at least 5 bytes of them) are
 * replaced by a `jmp rel32` to a stub of ours (a page of its own near the
 * code), which runs them and then jumps into bsd_direct_entry (threads.c)
 * instead of trapping. The `syscall` itself stays where it was, so a jump
 * to it still works (through SIGSYS); no other bytes change.
 *
 * Verified, or not done: the function holding the site is decoded from its
 * first instruction (Go's function table, .gopclntab, or the ELF symbol
 * table gives it) up to the site, so the rewritten instructions are whole
 * ones, the first at least 5 bytes long (so no instruction begins inside
 * the jump: a thread stopped between two of them goes on with the old
 * bytes); none of them depends on where it is (%rip-relative operands,
 * jumps, calls); no jump of that function (of any function, for a non-Go
 * program, where a compiler's split-off cold parts jump back into their
 * parent) lands strictly inside them, and the function has no indirect
 * jump (a jump table could). The 5 bytes are written with one locked
 * 16-byte (aligned) or 8-byte (within a cache line) compare-exchange, so
 * another thread runs either the old instructions or the jump (a site
 * whose 5 bytes straddle a cache line stays on SIGSYS while the program
 * has other threads); the page is writable only for
 * that store (mprotect around it, under a lock).
 *
 * Rewriting is off under --strace (every call is traced on the C path) and
 * with SMOLVM_BSDUSER_REWRITE=0. */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bsduser/internal.h"

#define PAGE 4096ull
#define MAX_STUBS 512
#define STUB_REACH (1ull << 30) /* a stub lies this close to its site (rel32 reaches 2 GiB) */

uint64_t bsd_rewrite_lo, bsd_rewrite_hi;
uint8_t bsd_sites_seen[BSD_SITES_SEEN / 8];

/* ---- x86-64 instruction lengths ---- */

struct insn {
    unsigned len;
    bool rip_relative;  /* a memory operand relative to %rip */
    bool relative;      /* a jump or call to target */
    bool indirect_jump; /* jmp through a register or memory */
    bool moves_control; /* call, ret, int, syscall, ...: not to be moved */
    uint64_t target;
};

enum operands { BAD, NONE, MODRM, MODRM_I8, MODRM_IZ, GROUP3, I8, I16, IZ, IV, ENTER, MOFFS,
                REL8, REL32 };

/* The one-byte map (prefixes, REX, 0f, VEX and EVEX are taken before). */
static enum operands one_byte(uint8_t o)
{
    if (o < 0x40)
        return (o & 7) < 4 ? MODRM : (o & 7) == 4 ? I8 : (o & 7) == 5 ? IZ : BAD;
    if (o >= 0x50 && o <= 0x5f)
        return NONE;
    if (o == 0x63 || (o >= 0x84 && o <= 0x8f) || (o >= 0xd0 && o <= 0xd3) ||
        (o >= 0xd8 && o <= 0xdf) || o == 0xfe || o == 0xff)
        return MODRM;
    if (o == 0x69 || o == 0x81 || o == 0xc7)
        return MODRM_IZ;
    if (o == 0x6b || o == 0x80 || o == 0x83 || o == 0xc0 || o == 0xc1 || o == 0xc6)
        return MODRM_I8;
    if (o == 0x68 || o == 0xa9)
        return IZ;
    if (o == 0x6a || o == 0xa8 || (o >= 0xb0 && o <= 0xb7) || o == 0xcd || (o >= 0xe4 && o <= 0xe7))
        return I8;
    if ((o >= 0x6c && o <= 0x6f) || (o >= 0x90 && o <= 0x9f && o != 0x9a) ||
        (o >= 0xa4 && o <= 0xaf) || o == 0xc3 || o == 0xc9 || o == 0xcb || o == 0xcc ||
        o == 0xcf || o == 0xd7 || (o >= 0xec && o <= 0xef) || o == 0xf1 || o == 0xf4 ||
        o == 0xf5 || (o >= 0xf8 && o <= 0xfd))
        return NONE;
    if ((o >= 0x70 && o <= 0x7f) || (o >= 0xe0 && o <= 0xe3) || o == 0xeb)
        return REL8;
    if (o == 0xe8 || o == 0xe9)
        return REL32;
    if (o >= 0xb8 && o <= 0xbf)
        return IV;
    if (o >= 0xa0 && o <= 0xa3)
        return MOFFS;
    if (o == 0xc2 || o == 0xca)
        return I16;
    if (o == 0xc8)
        return ENTER;
    if (o == 0xf6 || o == 0xf7)
        return GROUP3;
    return BAD;
}

/* The 0f map (0f 38 and 0f 3a are taken before). */
static enum operands two_byte(uint8_t o)
{
    if ((o >= 0x05 && o <= 0x09) || o == 0x0b || o == 0x0e || (o >= 0x30 && o <= 0x35) ||
        o == 0x37 || o == 0x77 || (o >= 0xa0 && o <= 0xa2) || (o >= 0xa8 && o <= 0xaa) ||
        (o >= 0xc8 && o <= 0xcf))
        return NONE;
    if (o >= 0x80 && o <= 0x8f)
        return REL32;
    if ((o >= 0x70 && o <= 0x73) || o == 0xa4 || o == 0xac || o == 0xba || o == 0xc2 ||
        (o >= 0xc4 && o <= 0xc6))
        return MODRM_I8;
    if (o == 0x04 || o == 0x0a || o == 0x0c || o == 0x0f || o == 0x36 || (o >= 0x39 && o <= 0x3f) ||
        o == 0xa6 || o == 0xa7)
        return BAD;
    return MODRM;
}

/* The bytes of a ModRM operand (SIB, displacement); -1: past avail. */
static int modrm_length(const uint8_t *p, size_t avail, bool *rip_relative)
{
    if (avail < 1)
        return -1;
    unsigned mod = p[0] >> 6, rm = p[0] & 7, n = 1;
    if (mod == 3)
        return 1;
    if (rm == 4) {
        if (avail < 2)
            return -1;
        n = 2 + (mod == 0 && (p[1] & 7) == 5 ? 4 : 0);
    } else if (mod == 0 && rm == 5) {
        *rip_relative = true;
        n += 4;
    }
    n += mod == 1 ? 1 : mod == 2 ? 4 : 0;
    return n <= avail ? (int)n : -1;
}

static bool is_prefix(uint8_t b)
{
    return b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e || b == 0x64 || b == 0x65 ||
           b == 0x66 || b == 0x67 || b == 0xf0 || b == 0xf2 || b == 0xf3;
}

/* The instruction at p (address at), at most avail bytes; false: not one
 * this decoder knows (nothing is rewritten then). */
static bool decode(const uint8_t *p, size_t avail, uint64_t at, struct insn *in)
{
    size_t i = 0, imm = 0;
    bool opsize = false, addr32 = false, rex_w = false, one_byte_map = false;
    uint8_t o;
    enum operands kind;

    memset(in, 0, sizeof(*in));
    for (; i < avail && i < 14 && is_prefix(p[i]); i++) {
        opsize |= p[i] == 0x66;
        addr32 |= p[i] == 0x67;
    }
    if (i < avail && (p[i] & 0xf0) == 0x40)
        rex_w = p[i++] & 8;
    if (i >= avail)
        return false;
    o = p[i++];
    if (o == 0x0f) {
        if (i + 1 >= avail)
            return false;
        uint8_t o2 = p[i++];
        kind = o2 == 0x38 ? MODRM : o2 == 0x3a ? MODRM_I8 : two_byte(o2);
        if (o2 == 0x38 || o2 == 0x3a)
            i++;
        in->moves_control = o2 == 0x05 || o2 == 0x34 || o2 == 0x35 || o2 == 0x0b;
    } else if (o == 0xc4 || o == 0xc5 || o == 0x62) { /* VEX, EVEX */
        size_t extra = o == 0xc5 ? 1 : o == 0xc4 ? 2 : 3;
        if (i + extra + 1 >= avail)
            return false;
        unsigned map = o == 0xc5 ? 1 : p[i] & (o == 0x62 ? 3 : 0x1f);
        i += extra;
        uint8_t op = p[i++];
        if (map == 1 && op == 0x77 && o != 0x62)
            kind = NONE; /* vzeroupper, vzeroall */
        else if (map == 3 || (map == 1 && ((op >= 0x70 && op <= 0x73) || op == 0xc2 ||
                                           (op >= 0xc4 && op <= 0xc6))))
            kind = MODRM_I8;
        else
            kind = map == 1 || map == 2 ? MODRM : BAD;
    } else {
        one_byte_map = true;
        kind = one_byte(o);
        in->moves_control = o == 0xc2 || o == 0xc3 || o == 0xca || o == 0xcb || o == 0xcc ||
                            o == 0xcd || o == 0xcf || o == 0xf1 || o == 0xf4;
    }
    if (kind == MODRM || kind == MODRM_I8 || kind == MODRM_IZ || kind == GROUP3) {
        int m = modrm_length(p + i, avail - i, &in->rip_relative);
        if (m < 0)
            return false;
        unsigned reg = (p[i] >> 3) & 7;
        if (kind == GROUP3) /* test has an immediate; not, neg, mul, div none */
            kind = reg >= 2 ? MODRM : o == 0xf6 ? MODRM_I8 : MODRM_IZ;
        if (one_byte_map && o == 0xff && (reg == 4 || reg == 5))
            in->indirect_jump = true;
        if (one_byte_map && o == 0xff && (reg == 2 || reg == 3))
            in->moves_control = true;
        i += (size_t)m;
    }
    switch (kind) {
    case BAD:
        return false;
    case MODRM_I8:
    case I8:
        imm = 1;
        break;
    case MODRM_IZ:
    case IZ:
        imm = opsize && !rex_w ? 2 : 4;
        break;
    case I16:
        imm = 2;
        break;
    case IV:
        imm = rex_w ? 8 : opsize ? 2 : 4;
        break;
    case ENTER:
        imm = 3;
        break;
    case MOFFS:
        imm = addr32 ? 4 : 8;
        break;
    case REL8:
    case REL32:
        if (opsize)
            return false;
        imm = kind == REL8 ? 1 : 4;
        in->relative = true;
        in->moves_control = true;
        break;
    default:
        break;
    }
    if (i + imm > avail || i + imm > 15)
        return false;
    in->len = (unsigned)(i + imm);
    if (in->relative) {
        int32_t d32 = (int8_t)p[i];
        if (imm == 4)
            memcpy(&d32, p + i, 4);
        int64_t d = d32;
        in->target = at + in->len + (uint64_t)d;
    }
    return true;
}

/* ---- functions: where each begins ---- */

static int by_address(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static const Elf64_Shdr *section(const uint8_t *file, size_t len, const char *name, uint32_t type)
{
    const Elf64_Ehdr *h = (const Elf64_Ehdr *)file;
    /* (a real ELF's headers are aligned: these are read in place) */
    if (h->e_shoff == 0 || (h->e_shoff & 7) || h->e_shentsize != sizeof(Elf64_Shdr) ||
        h->e_shstrndx >= h->e_shnum ||
        h->e_shoff > len || (uint64_t)h->e_shnum * sizeof(Elf64_Shdr) > len - h->e_shoff)
        return NULL;
    const Elf64_Shdr *s = (const Elf64_Shdr *)(file + h->e_shoff), *names = &s[h->e_shstrndx];
    if (names->sh_offset > len || names->sh_size > len - names->sh_offset)
        return NULL;
    for (unsigned i = 0; i < h->e_shnum; i++) {
        size_t n = strlen(name) + 1;
        if ((type == SHT_NULL || s[i].sh_type == type) && s[i].sh_name < names->sh_size &&
            n <= names->sh_size - s[i].sh_name &&
            memcmp(file + names->sh_offset + s[i].sh_name, name, n) == 0 &&
            s[i].sh_offset <= len && s[i].sh_size <= len - s[i].sh_offset)
            return &s[i];
    }
    return NULL;
}

static uint64_t word(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;
    memcpy(&v, p, size);
    return v;
}

/* Go's function table (runtime/symtab.go, pcHeader): the entries from Go
 * 1.2's layout to 1.20's (from 1.18 offsets from the text section, whose
 * address the header has as 0 since 1.22). */
static size_t go_functions(const uint8_t *t, size_t len, uint64_t text_section, uint64_t **out)
{
    if (len < 72 || t[4] || t[5] || t[7] != 8)
        return 0;
    uint32_t magic = (uint32_t)word(t, 4);
    uint64_t n = word(t + 8, 8), table, text = 0;
    unsigned entry_size;
    if (magic == 0xfffffffb) { /* 1.2 to 1.15: pc, offset */
        table = 16;
        entry_size = 16;
    } else if (magic == 0xfffffffa) { /* 1.16, 1.17 */
        table = word(t + 56, 8);
        entry_size = 16;
    } else if (magic == 0xfffffff0 || magic == 0xfffffff1) { /* 1.18 on: 32-bit offsets from text */
        text = text_section;
        table = word(t + 64, 8);
        entry_size = 8;
    } else
        return 0;
    if (n == 0 || n > len / entry_size || table > len || (n + 1) * entry_size > len - table)
        return 0;
    uint64_t *f = malloc((n + 1) * sizeof(*f));
    for (uint64_t i = 0; f && i <= n; i++)
        f[i] = text + word(t + table + i * entry_size, entry_size / 2);
    *out = f;
    return f ? (size_t)n + 1 : 0; /* the last: the end of the text */
}

/* The ELF symbol table's functions. */
static size_t elf_functions(const uint8_t *file, size_t len, uint64_t bias, uint64_t **out)
{
    const Elf64_Shdr *s = section(file, len, ".symtab", SHT_SYMTAB);
    if (!s || s->sh_entsize != sizeof(Elf64_Sym) || (s->sh_offset & 7))
        return 0;
    const Elf64_Sym *sym = (const Elf64_Sym *)(file + s->sh_offset);
    size_t count = s->sh_size / sizeof(Elf64_Sym), n = 0;
    uint64_t *f = malloc((count + 1) * sizeof(*f));
    for (size_t i = 0; f && i < count; i++)
        if (ELF64_ST_TYPE(sym[i].st_info) == STT_FUNC && sym[i].st_shndx != SHN_UNDEF)
            f[n++] = sym[i].st_value + bias;
    *out = f;
    return n;
}

void bsd_rewrite_scan(const uint8_t *file, size_t len, uint64_t bias, struct bsd_code *out)
{
    const Elf64_Ehdr *h = (const Elf64_Ehdr *)file;
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < h->e_phnum; i++) {
        const Elf64_Phdr *p = (const Elf64_Phdr *)(file + h->e_phoff + (uint64_t)i * sizeof(*p));
        /* The largest code segment (the executable's text). */
        if (p->p_type == PT_LOAD && (p->p_flags & PF_X) && !(p->p_flags & PF_W) &&
            p->p_filesz > out->hi - out->lo) {
            out->lo = p->p_vaddr + bias;
            out->hi = out->lo + p->p_filesz;
        }
    }
    const Elf64_Shdr *go = section(file, len, ".gopclntab", SHT_NULL),
                     *text = section(file, len, ".text", SHT_PROGBITS);
    if (go && text && bias == 0)
        out->nfuncs = go_functions(file + go->sh_offset, go->sh_size, text->sh_addr, &out->funcs);
    out->go = out->nfuncs > 0;
    if (!out->go)
        out->nfuncs = elf_functions(file, len, bias, &out->funcs);
    if (out->nfuncs)
        qsort(out->funcs, out->nfuncs, sizeof(*out->funcs), by_address);
    else
        out->lo = out->hi = 0;
}

/* ---- one site ---- */

static struct {
    atomic_flag busy;
    int stubs;
    uint64_t next_stub;   /* pages go down from below the code */
    uint64_t lowest_stub; /* the lowest one made (0: none) */
    /* A non-Go program's jump targets, all of them, sorted (decoded at its
     * first rewrite); known: 1, -1 when some function did not decode. */
    uint64_t *targets;
    size_t ntargets;
    int known;
} rewriter = {ATOMIC_FLAG_INIT, 0, 0, 0, NULL, 0, 0};

static bool in_code(uint64_t at, uint64_t len)
{
    const struct bsd_code *c = &bsd_proc->code;
    return at >= c->lo && at <= c->hi && len <= c->hi - at;
}

/* The function holding at: [*lo, *hi). */
static bool function_of(uint64_t at, uint64_t *lo, uint64_t *hi)
{
    const struct bsd_code *c = &bsd_proc->code;
    size_t a = 0, b = c->nfuncs;
    while (b - a > 1) {
        size_t m = (a + b) / 2;
        if (c->funcs[m] <= at)
            a = m;
        else
            b = m;
    }
    if (c->funcs[a] > at)
        return false;
    *lo = c->funcs[a];
    *hi = b < c->nfuncs ? c->funcs[b] : c->hi;
    return in_code(*lo, *hi - *lo);
}

/* Whether no jump of [lo, hi) lands strictly inside (from, to), and none
 * is indirect; false too when it cannot all be decoded. */
static bool no_jump_into(uint64_t lo, uint64_t hi, uint64_t from, uint64_t to)
{
    struct insn in;
    for (uint64_t at = lo; at < hi; at += in.len) {
        if (!decode((const uint8_t *)at, hi - at, at, &in))
            return false;
        if (in.indirect_jump || (in.relative && in.target > from && in.target < to))
            return false;
    }
    return true;
}

/* The start of the whole instructions, at least 5 bytes of them (and
 * more when longer is true), that end at site (all movable); 0: none. */
static uint64_t window_before(uint64_t lo, uint64_t site, uint64_t longer)
{
    enum { KEEP = 16 };
    uint64_t starts[KEEP];
    unsigned n = 0;
    struct insn in, moved;
    uint64_t at = lo;
    for (; at < site; at += in.len) {
        if (!decode((const uint8_t *)at, site + 2 - at, at, &in))
            return 0;
        starts[n++ % KEEP] = at;
    }
    if (at != site)
        return 0; /* the site is inside an instruction: not one we know */
    for (unsigned k = 1; k <= n && k < KEEP; k++) {
        uint64_t w = starts[(n - k) % KEEP], next = k > 1 ? starts[(n - k + 1) % KEEP] : site;
        if (!decode((const uint8_t *)w, site - w, w, &moved) || moved.rip_relative ||
            moved.relative || moved.indirect_jump || moved.moves_control)
            return 0;
        /* No instruction may begin inside the jump's 5 bytes: a thread
         * stopped there (another one, or this one under a signal handler)
         * would go on in the middle of the jump. Past them the old bytes
         * stay, and lead to the syscall, which still traps. */
        if (site - w >= 5 && site - w > longer && next - w >= 5)
            return site - w <= 32 ? w : 0;
    }
    return 0;
}

/* A page for one stub, within reach of the code (below it: the guest's own
 * mappings go far above). */
static uint8_t *stub_page(uint64_t site)
{
    if (!rewriter.next_stub)
        rewriter.next_stub = (bsd_proc->code.lo & ~(PAGE - 1)) - PAGE;
    for (; rewriter.next_stub >= 0x10000 && site - rewriter.next_stub < STUB_REACH;
         rewriter.next_stub -= PAGE) {
        void *p = mmap((void *)rewriter.next_stub, PAGE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p != MAP_FAILED) {
            __atomic_store_n(&rewriter.lowest_stub, rewriter.next_stub, __ATOMIC_RELAXED);
            rewriter.next_stub -= PAGE;
            return p;
        }
    }
    return NULL;
}

static void put_rel32(uint8_t *at, uint64_t from_end, uint64_t to)
{
    int32_t d = (int32_t)(to - from_end);
    memcpy(at, &d, 4);
}

/* The stub: the moved instructions; %rcx := its own syscall, the way back
 * through SIGSYS; on to bsd_direct_entry, which returns to that syscall's
 * end, a jump to the instruction after the site's. */
static uint64_t make_stub(uint64_t w, uint64_t site)
{
    uint8_t *p = stub_page(site);
    if (!p)
        return 0;
    uint64_t at = (uint64_t)p, k = site - w, entry_ptr = at + 64;
    uint8_t *c = p;
    memcpy(c, (const void *)w, k);
    c += k;
    uint64_t slow = at + k + 7 + 6;
    memcpy(c, "\x48\x8d\x0d", 3); /* lea slow(%rip), %rcx */
    put_rel32(c + 3, at + k + 7, slow);
    c += 7;
    memcpy(c, "\xff\x25", 2); /* jmp *entry_ptr(%rip) */
    put_rel32(c + 2, at + k + 13, entry_ptr);
    c += 6;
    memcpy(c, "\x0f\x05\xe9", 3); /* syscall; jmp site + 2 */
    put_rel32(c + 3, slow + 7, site + 2);
    uint64_t entry = (uint64_t)bsd_direct_entry;
    memcpy(p + 64, &entry, 8);
    if (mprotect(p, PAGE, PROT_READ | PROT_EXEC) < 0) {
        munmap(p, PAGE);
        return 0;
    }
    return at;
}

/* Where the one locked store that writes 5 bytes at w goes: the aligned
 * 16 bytes holding them, else the 8 from w when they lie in one cache line
 * (a locked store across two is not atomic everywhere); 0: none. With no
 * other guest thread, the 5 bytes as they are (size 5): nothing else runs
 * them meanwhile (the only thread is here). */
static uint64_t store_at(uint64_t w, unsigned *size)
{
    bool single = atomic_load(&bsd_proc->live_threads) == 1;
    *size = (w & 15) <= 11 ? 16 : (w & 63) <= 56 ? 8 : single ? 5 : 0;
    return *size == 16 ? w & ~15ull : *size ? w : 0;
}

/* The 5 bytes at w := jmp stub, in one locked store: another thread
 * runs either the old bytes or the new. */
static bool patch(uint64_t w, uint64_t stub)
{
    unsigned size;
    uint64_t at = store_at(w, &size), old[2], new[2];
    uint64_t page = at & ~(PAGE - 1), pages = ((at + size + PAGE - 1) & ~(PAGE - 1)) - page;
    memcpy(old, (const void *)at, size);
    memcpy(new, old, size);
    uint8_t jmp[5] = {0xe9};
    put_rel32(jmp + 1, w + 5, stub);
    memcpy((uint8_t *)new + (w - at), jmp, 5);
    if (mprotect((void *)page, pages, PROT_READ | PROT_WRITE | PROT_EXEC) < 0)
        return false;
    if (size == 16)
        __asm__ volatile("lock cmpxchg16b (%4)"
                         : "+a"(old[0]), "+d"(old[1])
                         : "b"(new[0]), "c"(new[1]), "r"(at)
                         : "memory", "cc");
    else if (size == 8)
        __asm__ volatile("lock cmpxchgq %1, (%2)" : "+a"(old[0]) : "r"(new[0]), "r"(at)
                         : "memory", "cc");
    else
        memcpy((void *)at, new, size);
    /* The code segment's own protection back (bsd_rewrite_forget stops
     * all rewriting once the guest changes it). */
    if (mprotect((void *)page, pages, PROT_READ | PROT_EXEC) < 0)
        abort(); /* a code page left writable */
    return true;
}

/* Every function's direct jumps into rewriter.targets, once: a non-Go
 * program's split-off cold parts jump back into their parents. */
static bool all_targets_known(void)
{
    const struct bsd_code *c = &bsd_proc->code;
    size_t n = 0, room = 4096;
    uint64_t *t = rewriter.known ? NULL : malloc(room * sizeof(*t));
    bool ok = t != NULL;
    struct insn in;
    for (size_t i = 0; ok && i < c->nfuncs; i++) {
        uint64_t end = i + 1 < c->nfuncs ? c->funcs[i + 1] : c->hi;
        for (uint64_t at = c->funcs[i]; ok && at < end && in_code(at, end - at); at += in.len) {
            ok = decode((const uint8_t *)at, end - at, at, &in);
            if (ok && in.relative && n == room) {
                uint64_t *more = realloc(t, (room *= 2) * sizeof(*t));
                ok = more != NULL;
                t = more ? more : t;
            }
            if (ok && in.relative)
                t[n++] = in.target;
        }
    }
    if (!rewriter.known) {
        if (ok)
            qsort(t, n, sizeof(*t), by_address);
        else
            free(t);
        rewriter.targets = ok ? t : NULL;
        rewriter.ntargets = n;
        rewriter.known = ok ? 1 : -1;
    }
    return rewriter.known > 0;
}

/* Whether a jump anywhere lands strictly inside (from, to). */
static bool targeted_inside(uint64_t from, uint64_t to)
{
    size_t a = 0, b = rewriter.ntargets; /* the first target above from */
    while (a < b) {
        size_t m = (a + b) / 2;
        if (rewriter.targets[m] <= from)
            a = m + 1;
        else
            b = m;
    }
    return a < rewriter.ntargets && rewriter.targets[a] < to;
}

uint64_t bsd_rewrite_window(uint64_t site)
{
    uint64_t lo, hi, w;
    if (!function_of(site, &lo, &hi) || site + 2 > hi || memcmp((void *)site, "\x0f\x05", 2) != 0)
        return 0;
    /* The shortest window the jump can be stored into at once. */
    unsigned size;
    uint64_t at = 0;
    w = window_before(lo, site, 0);
    while (w && !(at = store_at(w, &size)))
        w = window_before(lo, site, site - w);
    if (!at || !in_code(at, size) || !no_jump_into(lo, hi, w, site))
        return 0;
    if (!bsd_proc->code.go && (!all_targets_known() || targeted_inside(w, site)))
        return 0;
    return w;
}

void bsd_rewrite_reset(void)
{
    free(rewriter.targets);
    rewriter.targets = NULL;
    rewriter.ntargets = 0;
    rewriter.known = 0;
}

static void rewrite(uint64_t site)
{
    uint64_t w = bsd_rewrite_window(site);
    uint64_t stub = w && rewriter.stubs < MAX_STUBS ? make_stub(w, site) : 0;
    if (stub && patch(w, stub))
        rewriter.stubs++;
}

void bsd_rewrite_site(uint64_t rip)
{
    uint64_t site = rip - 2;
    uint64_t bit = rip % BSD_SITES_SEEN;
    if (__atomic_fetch_or(&bsd_sites_seen[bit / 8], (uint8_t)(1u << (bit % 8)), __ATOMIC_RELAXED) &
        (1u << (bit % 8)))
        return; /* tried already (or another site with the same bit: it stays on SIGSYS) */
    if (!in_code(site, 2))
        return;
    while (atomic_flag_test_and_set(&rewriter.busy))
        ;
    if (bsd_rewrite_hi) /* (the guest may have changed its code meanwhile) */
        rewrite(site);
    atomic_flag_clear(&rewriter.busy);
}

int bsd_rewrite_forget(uint64_t at, uint64_t len)
{
    uint64_t stubs_lo = __atomic_load_n(&rewriter.lowest_stub, __ATOMIC_RELAXED);
    if (stubs_lo && at < bsd_proc->code.lo && at + len > stubs_lo)
        return -EINVAL;
    if (at < bsd_proc->code.hi && at + len > bsd_proc->code.lo)
        bsd_rewrite_lo = bsd_rewrite_hi = 0;
    return 0;
}

bool bsd_direct_pending(uint64_t rip, uint64_t rax)
{
    uint64_t stubs_lo = __atomic_load_n(&rewriter.lowest_stub, __ATOMIC_RELAXED);
    return rax == BSD_DIRECT_RESULT && stubs_lo && rip >= stubs_lo && rip < bsd_proc->code.lo;
}

void bsd_rewrite_start(const struct bsd_code *code, bool on)
{
    bsd_proc->code = *code;
    if (on && code->nfuncs) {
        bsd_rewrite_lo = code->lo;
        bsd_rewrite_hi = code->hi;
    }
}
