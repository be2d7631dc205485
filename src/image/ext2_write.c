/* Lays out and writes an ext2 tree: inode numbers (root 2, lost+found 11,
 * then depth first), a size plan (data and indirect blocks counted before
 * anything is written, so the group count is known), then data written
 * block by block with zero blocks left as holes, directories, inode
 * tables, bitmaps, group descriptors and the superblock with its sparse
 * backups. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "disk/fileio.h"
#include "image/ext2_internal.h"
#include "util/err.h"
#include "util/iov.h"
#include "util/le.h"

#define INODE_SIZE 128
#define FIRST_INO 11
#define ROOT_INO 2
#define LOST_FOUND_BYTES 16384
#define FAST_SYMLINK_MAX 59
#define COMPAT_NONE 0
#define INCOMPAT_FILETYPE 0x2
#define RO_COMPAT_SPARSE_SUPER 0x1
#define RO_COMPAT_LARGE_FILE 0x2

struct writer {
    struct ext2 *e;
    int fd;
    unsigned bs, ptrs;
    uint32_t groups, per_group, inodes_per_group, table_blocks, gdt_blocks, first_data;
    uint64_t blocks;
    uint32_t inodes_used, dirs;
    uint8_t *inode_table; /* all of it, written at the end */
    uint8_t *block_bitmap; /* one bit per block, all groups */
    uint32_t *group_dirs;
    uint64_t cursor; /* next block to hand out */
    uint64_t used_blocks;
};

/* ---- planning ---- */

static bool has_backup(uint32_t g)
{
    if (g <= 1)
        return true;
    for (uint32_t base = 3; base <= 7; base += 2) {
        uint64_t p = base;
        while (p < g)
            p *= base;
        if (p == g)
            return true;
    }
    return false;
}

static uint64_t group_start(const struct writer *w, uint32_t g)
{
    return w->first_data + (uint64_t)g * w->per_group;
}

static uint32_t group_overhead(const struct writer *w, uint32_t g)
{
    return (has_backup(g) ? 1 + w->gdt_blocks : 0) + 2 + w->table_blocks;
}

/* Indirect blocks needed by a file whose blocks [first, end) are present,
 * given the previous present block (UINT64_MAX: none) — counted as the
 * distinct tables on each level, walking in order. */
struct meta_count {
    uint64_t last_single, last_double_child, last_triple_l2, last_triple_l3;
    bool single, dbl, triple;
    uint64_t count;
};

static void count_block(struct meta_count *m, uint64_t idx, unsigned ptrs)
{
    uint64_t p = ptrs, b1 = 12, b2 = b1 + p, b3 = b2 + p * p;
    if (idx < b1)
        return;
    if (idx < b2) {
        m->count += !m->single;
        m->single = true;
        return;
    }
    if (idx < b3) {
        uint64_t c = (idx - b2) / p;
        m->count += !m->dbl + (m->last_double_child != c + 1);
        m->dbl = true;
        m->last_double_child = c + 1;
        return;
    }
    uint64_t l2 = (idx - b3) / (p * p), l3 = (idx - b3) / p;
    m->count += !m->triple + (m->last_triple_l2 != l2 + 1) + (m->last_triple_l3 != l3 + 1);
    m->triple = true;
    m->last_triple_l2 = l2 + 1;
    m->last_triple_l3 = l3 + 1;
}

/* Calls visit for each block index of a host file's data extents. */
static int host_extents(const char *path, unsigned bs,
                        void (*visit)(void *ctx, uint64_t first, uint64_t end), void *ctx,
                        uint64_t *size)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t at = 0;

    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return err_set(errno, "'%s'", path);
    }
    *size = (uint64_t)st.st_size;
    while (at < st.st_size) {
        off_t data = lseek(fd, at, SEEK_DATA), hole;
        if (data < 0)
            break; /* only a hole to the end (or no SEEK_DATA: then all data) */
        hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            hole = st.st_size;
        visit(ctx, (uint64_t)data / bs, ((uint64_t)hole + bs - 1) / bs);
        at = hole;
    }
    if (at == 0 && st.st_size > 0 && lseek(fd, 0, SEEK_DATA) < 0 && errno != ENXIO)
        visit(ctx, 0, ((uint64_t)st.st_size + bs - 1) / bs);
    close(fd);
    return 0;
}

struct plan_ctx {
    struct meta_count meta;
    uint64_t data;
    unsigned ptrs;
};

static void plan_visit(void *opaque, uint64_t first, uint64_t end)
{
    struct plan_ctx *p = opaque;
    for (uint64_t i = first; i < end; i++)
        count_block(&p->meta, i, p->ptrs);
    p->data += end - first;
}

static int dir_bytes(const struct ext2_node *dir, unsigned bs, uint64_t *out);

/* Upper bound of the blocks a node takes (data + indirect). */
static int node_blocks(const struct ext2_node *n, unsigned bs, uint64_t *out)
{
    struct plan_ctx p = {.ptrs = bs / 4};
    uint64_t size = 0;
    int r = 0;

    if (S_ISDIR(n->attr.mode)) {
        r = dir_bytes(n, bs, &size);
        plan_visit(&p, 0, size / bs);
    } else if (S_ISLNK(n->attr.mode)) {
        p.data = n->len > FAST_SYMLINK_MAX;
    } else if (S_ISREG(n->attr.mode) && n->host_path) {
        r = host_extents(n->host_path, bs, plan_visit, &p, &size);
    } else if (S_ISREG(n->attr.mode)) {
        plan_visit(&p, 0, (n->len + bs - 1) / bs);
    }
    *out = p.data + p.meta.count;
    return r;
}

static uint32_t entry_size(size_t name_len)
{
    return (uint32_t)((8 + name_len + 3) & ~(size_t)3);
}

/* A directory's size: "." and ".." then its entries, none across a block. */
static int dir_bytes(const struct ext2_node *dir, unsigned bs, uint64_t *out)
{
    uint64_t used = entry_size(1) + entry_size(2), blocks = 1;
    for (const struct ext2_node *c = dir->children; c; c = c->next) {
        uint32_t need = entry_size(strlen(c->name));
        if (used + need > bs) {
            blocks++;
            used = 0;
        }
        used += need;
    }
    if (dir->ino == FIRST_INO && blocks * bs < LOST_FOUND_BYTES)
        blocks = LOST_FOUND_BYTES / bs;
    *out = blocks * bs;
    return 0;
}

/* Sorted children (stable output) and inode numbers, depth first. */
static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(struct ext2_node *const *)a)->name, (*(struct ext2_node *const *)b)->name);
}

static int sort_children(struct ext2_node *dir)
{
    size_t n = 0, i = 0;
    for (struct ext2_node *c = dir->children; c; c = c->next)
        n++;
    if (n < 2)
        return 0;
    struct ext2_node **v = malloc(n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (struct ext2_node *c = dir->children; c; c = c->next)
        v[i++] = c;
    qsort(v, n, sizeof(*v), cmp_name);
    for (i = 0; i + 1 < n; i++)
        v[i]->next = v[i + 1];
    v[n - 1]->next = NULL;
    dir->children = v[0];
    free(v);
    return 0;
}

static int number(struct writer *w, struct ext2_node *n, uint64_t *blocks)
{
    uint64_t b = 0;
    int r = sort_children(n);

    if (r < 0)
        return err_set(ENOMEM, "ext2");
    if (!n->ino)
        n->ino = w->inodes_used++ + 1;
    if (S_ISDIR(n->attr.mode))
        w->dirs++;
    for (struct ext2_node *c = n->children; r == 0 && c; c = c->next)
        if (c->ino != FIRST_INO)
            r = number(w, c, blocks);
    if (r == 0)
        r = node_blocks(n, w->bs, &b);
    *blocks += b;
    return r;
}

/* Groups, inode tables and the block count for the content plus room. */
static void size_up(struct writer *w, uint64_t content_blocks, uint64_t min_bytes)
{
    uint64_t want = min_bytes / w->bs, inodes = (uint64_t)w->inodes_used * 5 / 4 + 64;
    w->per_group = w->bs * 8;
    w->first_data = w->bs == 1024;
    if (want < content_blocks * 5 / 4 + 256)
        want = content_blocks * 5 / 4 + 256;
    for (;;) {
        w->groups = (uint32_t)((want - w->first_data + w->per_group - 1) / w->per_group);
        uint64_t per = (inodes + w->groups - 1) / w->groups, per_block = w->bs / INODE_SIZE;
        per = (per + per_block - 1) / per_block * per_block;
        if (per > w->bs * 8)
            per = w->bs * 8;
        w->inodes_per_group = (uint32_t)per;
        w->table_blocks = (uint32_t)(per / per_block);
        w->gdt_blocks = (uint32_t)((w->groups * 32 + w->bs - 1) / w->bs);
        uint64_t overhead = 0;
        for (uint32_t g = 0; g < w->groups; g++)
            overhead += group_overhead(w, g);
        w->blocks = want;
        /* The last group must hold its own metadata and some data. */
        uint64_t last = want - group_start(w, w->groups - 1);
        if (last < group_overhead(w, w->groups - 1) + 64) {
            want = group_start(w, w->groups - 1) + group_overhead(w, w->groups - 1) + 64;
            continue;
        }
        if (want - w->first_data >= overhead + content_blocks + 64 &&
            (uint64_t)w->groups * w->inodes_per_group >= inodes)
            return;
        want += want / 4 + 64;
    }
}

/* ---- writing ---- */

static void mark(struct writer *w, uint64_t block)
{
    w->block_bitmap[(block - w->first_data) / 8] |= (uint8_t)(1u << ((block - w->first_data) % 8));
    w->used_blocks++;
}

static int alloc_block(struct writer *w, uint64_t *block)
{
    for (; w->cursor < w->blocks; w->cursor++) {
        uint32_t g = (uint32_t)((w->cursor - w->first_data) / w->per_group);
        if (w->cursor - group_start(w, g) < group_overhead(w, g))
            continue;
        *block = w->cursor++;
        mark(w, *block);
        return 0;
    }
    return err_plain(ENOSPC, "ext2: the plan ran out of blocks");
}

static int write_block(struct writer *w, uint64_t block, const void *data, size_t len)
{
    int r = disk_pwrite_all(w->fd, data, len, block * w->bs);
    return r < 0 ? err_set(-r, "write ext2 image") : 0;
}

/* A file's block map: direct pointers in the inode, indirect tables kept
 * in memory until the file is done. */
struct file_map {
    struct writer *w;
    uint32_t i_block[15];
    uint64_t blocks; /* in use, counting tables */
    struct table {
        uint64_t at;
        uint32_t *entries;
    } *tables;
    size_t table_count;
};

static int table_get(struct file_map *f, uint32_t *slot, uint32_t **entries)
{
    if (*slot) {
        for (size_t i = 0; i < f->table_count; i++)
            if (f->tables[i].at == *slot) {
                *entries = f->tables[i].entries;
                return 0;
            }
    }
    uint64_t at;
    struct table *more = realloc(f->tables, (f->table_count + 1) * sizeof(*more));
    if (!more)
        return err_set(ENOMEM, "ext2");
    f->tables = more;
    int r = alloc_block(f->w, &at);
    if (r < 0)
        return r;
    *entries = calloc(f->w->ptrs, 4);
    if (!*entries)
        return err_set(ENOMEM, "ext2");
    f->tables[f->table_count++] = (struct table){at, *entries};
    f->blocks++;
    *slot = (uint32_t)at;
    return 0;
}

/* Points logical block idx at physical block at, making tables on the way. */
static int map_block(struct file_map *f, uint64_t idx, uint64_t at)
{
    uint64_t p = f->w->ptrs, b2 = 12 + p, b3 = b2 + p * p;
    uint32_t *t1, *t2, *t3;
    int r;

    f->blocks++;
    if (idx < 12) {
        f->i_block[idx] = (uint32_t)at;
        return 0;
    }
    if (idx < b2) {
        r = table_get(f, &f->i_block[12], &t1);
        if (r == 0)
            t1[idx - 12] = (uint32_t)at;
        return r;
    }
    if (idx < b3) {
        r = table_get(f, &f->i_block[13], &t1);
        if (r == 0)
            r = table_get(f, &t1[(idx - b2) / p], &t2);
        if (r == 0)
            t2[(idx - b2) % p] = (uint32_t)at;
        return r;
    }
    if ((idx - b3) / (p * p) >= p)
        return err_plain(EFBIG, "ext2: file too large for this block size");
    r = table_get(f, &f->i_block[14], &t1);
    if (r == 0)
        r = table_get(f, &t1[(idx - b3) / (p * p)], &t2);
    if (r == 0)
        r = table_get(f, &t2[(idx - b3) / p % p], &t3);
    if (r == 0)
        t3[(idx - b3) % p] = (uint32_t)at;
    return r;
}

static int finish_map(struct file_map *f)
{
    int r = 0;
    uint8_t *raw = malloc(f->w->bs);
    for (size_t i = 0; i < f->table_count; i++) {
        for (unsigned k = 0; raw && k < f->w->ptrs; k++)
            put_le(raw + 4 * k, f->tables[i].entries[k], 4);
        if (r == 0)
            r = raw ? write_block(f->w, f->tables[i].at, raw, f->w->bs) : err_set(ENOMEM, "ext2");
        free(f->tables[i].entries);
    }
    free(f->tables);
    free(raw);
    return r;
}

/* Data from memory, zero blocks left out. */
static int put_data(struct file_map *f, const uint8_t *data, uint64_t len, uint64_t first_idx)
{
    unsigned bs = f->w->bs;
    uint8_t *block = malloc(bs);
    int r = block ? 0 : err_set(ENOMEM, "ext2");

    for (uint64_t off = 0; r == 0 && off < len; off += bs) {
        uint64_t n = len - off < bs ? len - off : bs, at;
        memset(block, 0, bs);
        memcpy(block, data + off, n);
        if (buf_is_zero(block, bs))
            continue;
        r = alloc_block(f->w, &at);
        if (r == 0)
            r = write_block(f->w, at, block, bs);
        if (r == 0)
            r = map_block(f, first_idx + off / bs, at);
    }
    free(block);
    return r;
}

struct copy_ctx {
    struct file_map *f;
    int fd;
    uint8_t *buf;
    int r;
};

static void copy_visit(void *opaque, uint64_t first, uint64_t end)
{
    struct copy_ctx *c = opaque;
    unsigned bs = c->f->w->bs;
    const uint64_t chunk = 256;
    for (uint64_t i = first; c->r == 0 && i < end; i += chunk) {
        uint64_t n = end - i < chunk ? end - i : chunk;
        c->r = disk_pread_all(c->fd, c->buf, n * bs, i * bs);
        if (c->r == 0)
            c->r = put_data(c->f, c->buf, n * bs, i);
    }
}

static int put_host_file(struct file_map *f, const char *path, uint64_t *size)
{
    struct copy_ctx c = {f, open(path, O_RDONLY | O_CLOEXEC), malloc(256 * f->w->bs), 0};
    int r;

    if (c.fd < 0 || !c.buf) {
        r = c.fd < 0 ? err_set(errno, "'%s'", path) : err_set(ENOMEM, "ext2");
    } else {
        r = host_extents(path, f->w->bs, copy_visit, &c, size);
        if (r == 0)
            r = c.r;
    }
    if (c.fd >= 0)
        close(c.fd);
    free(c.buf);
    return r;
}

static uint8_t file_type(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return 1;
    case S_IFDIR: return 2;
    case S_IFCHR: return 3;
    case S_IFBLK: return 4;
    case S_IFIFO: return 5;
    case S_IFSOCK: return 6;
    default: return 7;
    }
}

static uint8_t *dir_data(const struct ext2_node *dir, unsigned bs, uint64_t *len)
{
    uint8_t *d;
    uint64_t at = 0, last = 0;
    dir_bytes(dir, bs, len);
    d = calloc(1, *len);
    if (!d)
        return NULL;
    const struct ext2_node *self = dir, *up = dir->parent ? dir->parent : dir;
    struct {
        const char *name;
        const struct ext2_node *node;
    } dots[2] = {{".", self}, {"..", up}};
    for (int i = 0; i < 2; i++) {
        put_le(d + at, dots[i].node->ino, 4);
        put_le(d + at + 4, entry_size(strlen(dots[i].name)), 2);
        d[at + 6] = (uint8_t)strlen(dots[i].name);
        d[at + 7] = 2;
        memcpy(d + at + 8, dots[i].name, strlen(dots[i].name));
        last = at;
        at += entry_size(strlen(dots[i].name));
    }
    for (const struct ext2_node *c = dir->children; c; c = c->next) {
        size_t name_len = strlen(c->name);
        if (at % bs + entry_size(name_len) > bs || (at % bs == 0 && at)) {
            if (at % bs) /* the previous entry takes the rest of its block */
                put_le(d + last + 4, bs - last % bs, 2);
            at = (at + bs - 1) / bs * bs;
        }
        put_le(d + at, c->ino, 4);
        put_le(d + at + 4, entry_size(name_len), 2);
        d[at + 6] = (uint8_t)name_len;
        d[at + 7] = file_type(c->attr.mode);
        memcpy(d + at + 8, c->name, name_len);
        last = at;
        at += entry_size(name_len);
    }
    put_le(d + last + 4, bs - last % bs, 2);
    /* Blocks past the entries (lost+found's room) hold one empty entry. */
    for (uint64_t b = (at + bs - 1) / bs * bs; b < *len; b += bs)
        put_le(d + b + 4, bs, 2);
    return d;
}

static uint16_t subdirs(const struct ext2_node *dir)
{
    uint16_t n = 0;
    for (const struct ext2_node *c = dir->children; c; c = c->next)
        n += S_ISDIR(c->attr.mode);
    return n;
}

static void put_inode(struct writer *w, const struct ext2_node *n, const struct file_map *f,
                      uint64_t size)
{
    uint8_t *i = w->inode_table + (uint64_t)(n->ino - 1) * INODE_SIZE;
    const struct ext2_attr *a = &n->attr;

    put_le(i, a->mode, 2);
    put_le(i + 2, a->uid & 0xffff, 2);
    put_le(i + 4, size & 0xffffffff, 4);
    put_le(i + 8, a->mtime, 4);
    put_le(i + 12, a->mtime, 4);
    put_le(i + 16, a->mtime, 4);
    put_le(i + 24, a->gid & 0xffff, 2);
    put_le(i + 26, S_ISDIR(a->mode) ? 2u + subdirs(n) : 1u, 2);
    put_le(i + 28, f->blocks * (w->bs / 512), 4);
    for (int k = 0; k < 15; k++)
        put_le(i + 40 + 4 * k, f->i_block[k], 4);
    if (S_ISREG(a->mode))
        put_le(i + 108, size >> 32, 4);
    put_le(i + 120, a->uid >> 16, 2);
    put_le(i + 122, a->gid >> 16, 2);
    if (S_ISLNK(a->mode) && n->len <= FAST_SYMLINK_MAX)
        memcpy(i + 40, n->data, n->len); /* fast symlink: the target in the block map */
    if (S_ISCHR(a->mode) || S_ISBLK(a->mode)) {
        unsigned ma = major(n->rdev), mi = minor(n->rdev);
        if (ma < 256 && mi < 256)
            put_le(i + 40, (ma << 8) | mi, 4);
        else
            put_le(i + 44, (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12), 4);
    }
}

static int write_node(struct writer *w, struct ext2_node *n)
{
    struct file_map f = {.w = w};
    uint64_t size = 0;
    int r = 0;

    if (S_ISDIR(n->attr.mode)) {
        uint8_t *d = dir_data(n, w->bs, &size);
        uint64_t at;
        r = d ? 0 : err_set(ENOMEM, "ext2");
        /* Every directory block is allocated, even empty ones. */
        for (uint64_t b = 0; r == 0 && b < size / w->bs; b++) {
            r = alloc_block(w, &at);
            if (r == 0)
                r = write_block(w, at, d + b * w->bs, w->bs);
            if (r == 0)
                r = map_block(&f, b, at);
        }
        free(d);
        w->group_dirs[(n->ino - 1) / w->inodes_per_group]++;
    } else if (S_ISLNK(n->attr.mode)) {
        size = n->len;
        if (n->len > FAST_SYMLINK_MAX) {
            uint64_t at;
            uint8_t *block = calloc(1, w->bs);
            r = block ? alloc_block(w, &at) : err_set(ENOMEM, "ext2");
            if (r == 0) {
                memcpy(block, n->data, n->len);
                r = write_block(w, at, block, w->bs);
            }
            if (r == 0)
                r = map_block(&f, 0, at);
            free(block);
        }
    } else if (S_ISREG(n->attr.mode) && n->host_path) {
        r = put_host_file(&f, n->host_path, &size);
    } else if (S_ISREG(n->attr.mode)) {
        size = n->len;
        r = put_data(&f, n->data, n->len, 0);
    }
    if (r == 0)
        r = finish_map(&f);
    else
        finish_map(&f);
    if (r == 0)
        put_inode(w, n, &f, size);
    for (struct ext2_node *c = n->children; r == 0 && c; c = c->next)
        r = write_node(w, c);
    return r;
}

static void put_superblock(const struct writer *w, uint8_t *s, uint32_t group)
{
    uint64_t free_blocks = w->blocks - w->used_blocks;
    uint32_t inodes = w->groups * w->inodes_per_group;

    put_le(s + 0, inodes, 4);
    put_le(s + 4, w->blocks, 4);
    put_le(s + 12, free_blocks, 4);
    put_le(s + 16, inodes - w->inodes_used, 4);
    put_le(s + 20, w->first_data, 4);
    put_le(s + 24, (uint32_t)__builtin_ctz(w->bs) - 10, 4);
    put_le(s + 28, (uint32_t)__builtin_ctz(w->bs) - 10, 4);
    put_le(s + 32, w->per_group, 4);
    put_le(s + 36, w->per_group, 4);
    put_le(s + 40, w->inodes_per_group, 4);
    put_le(s + 48, w->e->timestamp, 4);
    put_le(s + 54, 0xffff, 2); /* no forced checks */
    put_le(s + 56, 0xef53, 2);
    put_le(s + 58, 1, 2);      /* clean */
    put_le(s + 60, 1, 2);      /* on errors: continue */
    put_le(s + 64, w->e->timestamp, 4);
    put_le(s + 76, 1, 4);      /* revision 1: dynamic inode sizes, features */
    put_le(s + 84, FIRST_INO, 4);
    put_le(s + 88, INODE_SIZE, 2);
    put_le(s + 90, group, 2);
    put_le(s + 92, COMPAT_NONE, 4);
    put_le(s + 96, INCOMPAT_FILETYPE, 4);
    put_le(s + 100, RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE, 4);
    /* A UUID from what the image holds: the same inputs, the same bytes. */
    for (int i = 0; i < 16; i++)
        s[104 + i] = (uint8_t)((w->e->timestamp >> (8 * (i % 4))) ^ (w->inodes_used * 131u + i * 29u) ^
                               (uint8_t)(w->used_blocks >> (i % 8)));
    s[104 + 6] = (uint8_t)((s[104 + 6] & 0x0f) | 0x40);
    s[104 + 8] = (uint8_t)((s[104 + 8] & 0x3f) | 0x80);
    memcpy(s + 120, "smolvm", 6);
}

static int write_metadata(struct writer *w)
{
    uint8_t *gdt = calloc(w->gdt_blocks, w->bs), *sb = calloc(1, w->bs), *bitmap = malloc(w->bs);
    int r = gdt && sb && bitmap ? 0 : err_set(ENOMEM, "ext2");

    for (uint32_t g = 0; r == 0 && g < w->groups; g++) {
        uint64_t start = group_start(w, g), meta = start + (has_backup(g) ? 1 + w->gdt_blocks : 0);
        uint64_t end = g + 1 < w->groups ? start + w->per_group : w->blocks;
        uint32_t used = 0, inodes_used = 0;
        const uint8_t *bits = w->block_bitmap + (start - w->first_data) / 8;
        memset(bitmap, 0, w->bs);
        for (uint64_t b = 0; b < w->per_group; b++) {
            bool set = start + b >= end || b < group_overhead(w, g) || (bits[b / 8] >> (b % 8) & 1);
            if (set)
                bitmap[b / 8] |= (uint8_t)(1u << (b % 8));
            used += set && start + b < end;
        }
        r = write_block(w, meta, bitmap, w->bs);
        memset(bitmap, 0, w->bs);
        for (uint32_t i = 0; i < w->bs * 8; i++) {
            uint32_t ino = g * w->inodes_per_group + i + 1;
            bool set = i >= w->inodes_per_group || ino <= w->inodes_used || ino < FIRST_INO;
            if (set)
                bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
            inodes_used += set && i < w->inodes_per_group;
        }
        if (r == 0)
            r = write_block(w, meta + 1, bitmap, w->bs);
        if (r == 0)
            r = disk_pwrite_all(w->fd, w->inode_table + (uint64_t)g * w->inodes_per_group * INODE_SIZE,
                                (size_t)w->table_blocks * w->bs, (meta + 2) * w->bs);
        uint8_t *d = gdt + 32 * g;
        put_le(d, meta, 4);
        put_le(d + 4, meta + 1, 4);
        put_le(d + 8, meta + 2, 4);
        put_le(d + 12, (end - start) - used, 2);
        put_le(d + 14, w->inodes_per_group - inodes_used, 2);
        put_le(d + 16, w->group_dirs[g], 2);
    }
    for (uint32_t g = 0; r == 0 && g < w->groups; g++) {
        if (!has_backup(g))
            continue;
        uint64_t start = group_start(w, g);
        memset(sb, 0, w->bs);
        /* Group 0's superblock is 1024 bytes into the device. */
        size_t at = g == 0 && w->bs > 1024 ? 1024 : 0;
        put_superblock(w, sb + at, g);
        r = write_block(w, start, sb, w->bs);
        if (r == 0)
            r = write_block(w, start + 1, gdt, (size_t)w->gdt_blocks * w->bs);
    }
    free(gdt);
    free(sb);
    free(bitmap);
    return r;
}

static int lost_found(struct ext2 *e, struct ext2_node **out)
{
    for (struct ext2_node *c = e->root->children; c; c = c->next)
        if (strcmp(c->name, "lost+found") == 0 && S_ISDIR(c->attr.mode)) {
            *out = c;
            return 0;
        }
    int r = ext2_add_dir(e, "/lost+found", &(struct ext2_attr){S_IFDIR | 0700, 0, 0, e->timestamp});
    return r < 0 ? r : lost_found(e, out);
}

int ext2_write(struct ext2 *e, const char *path, uint64_t min_bytes)
{
    struct writer w = {.e = e, .bs = e->block_size, .ptrs = e->block_size / 4};
    struct ext2_node *lf;
    uint64_t content = 0;
    int r = lost_found(e, &lf);

    if (r < 0)
        return r;
    e->root->ino = ROOT_INO;
    lf->ino = FIRST_INO;
    w.inodes_used = FIRST_INO;
    r = number(&w, e->root, &content);
    uint64_t lf_blocks;
    if (r == 0)
        r = node_blocks(lf, w.bs, &lf_blocks);
    if (r < 0)
        return r;
    w.dirs++;
    size_up(&w, content + lf_blocks, min_bytes);
    if (w.blocks > UINT32_MAX)
        return err_plain(EFBIG, "ext2: image too large");
    w.inode_table = calloc((size_t)w.groups * w.inodes_per_group, INODE_SIZE);
    w.block_bitmap = calloc((size_t)w.groups * w.per_group / 8 + 1, 1);
    w.group_dirs = calloc(w.groups, sizeof(uint32_t));
    w.cursor = w.first_data;
    w.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!w.inode_table || !w.block_bitmap || !w.group_dirs)
        r = err_set(ENOMEM, "ext2");
    else if (w.fd < 0)
        r = err_set(errno, "cannot create '%s'", path);
    else if (ftruncate(w.fd, (off_t)(w.blocks * w.bs)) < 0)
        r = err_set(errno, "size '%s'", path);
    /* Metadata blocks count as used, in the totals. */
    for (uint32_t g = 0; g < w.groups; g++)
        w.used_blocks += group_overhead(&w, g);
    w.used_blocks += w.first_data;
    if (r == 0)
        r = write_node(&w, e->root);
    if (r == 0)
        r = write_metadata(&w);
    if (r == 0 && fsync(w.fd) < 0)
        r = err_set(errno, "sync '%s'", path);
    if (w.fd >= 0)
        close(w.fd);
    if (r < 0 && w.fd >= 0)
        unlink(path);
    free(w.inode_table);
    free(w.block_bitmap);
    free(w.group_dirs);
    return r;
}
