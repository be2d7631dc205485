#include "arch/x86/unpack.h"

#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "arch/x86/bzimage.h"
#include "arch/x86/elf.h"
#include "arch/x86/kernel_file.h"
#include "util/cache.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/paths.h"
#include "util/le.h"

#define HDR_PAYLOAD_OFFSET 0x248
#define HDR_PAYLOAD_LENGTH 0x24c
#define MAX_VMLINUX (1ull << 30)
#define CACHE_FORMAT_VERSION 2

/* Output buffer that grows by doubling, capped at MAX_VMLINUX. */
struct sink {
    uint8_t *buf;
    size_t len, cap;
};

static int sink_room(struct sink *s, size_t want)
{
    if (s->cap - s->len >= want)
        return 0;
    size_t cap = s->cap ? s->cap : (16u << 20);
    while (cap - s->len < want)
        cap *= 2;
    if (cap > MAX_VMLINUX)
        return -EFBIG;
    uint8_t *b = realloc(s->buf, cap);
    if (!b)
        return -ENOMEM;
    s->buf = b;
    s->cap = cap;
    return 0;
}

static int unxz(const uint8_t *in, size_t len, struct sink *s)
{
    lzma_stream z = LZMA_STREAM_INIT;
    lzma_ret r;

    if (lzma_stream_decoder(&z, UINT64_MAX, 0) != LZMA_OK)
        return -ENOMEM;
    z.next_in = in;
    z.avail_in = len;
    do {
        if (sink_room(s, 1 << 20) < 0) {
            lzma_end(&z);
            return -EFBIG;
        }
        z.next_out = s->buf + s->len;
        z.avail_out = s->cap - s->len;
        r = lzma_code(&z, LZMA_FINISH);
        s->len = s->cap - z.avail_out;
    } while (r == LZMA_OK || (r == LZMA_BUF_ERROR && z.avail_out == 0));
    lzma_end(&z);
    /* The kernel build appends the size after the stream: ignore it. */
    return r == LZMA_STREAM_END ? 0 : -EINVAL;
}

static int unzstd(const uint8_t *in, size_t len, struct sink *s)
{
    ZSTD_DStream *z = ZSTD_createDStream();
    ZSTD_inBuffer src = {in, len, 0};
    size_t r = 1;

    if (!z)
        return -ENOMEM;
    while (r != 0) {
        ZSTD_outBuffer dst;
        if (sink_room(s, 1 << 20) < 0) {
            ZSTD_freeDStream(z);
            return -EFBIG;
        }
        dst = (ZSTD_outBuffer){s->buf + s->len, s->cap - s->len, 0};
        r = ZSTD_decompressStream(z, &dst, &src);
        s->len += dst.pos;
        if (ZSTD_isError(r) || (src.pos == src.size && dst.pos == 0 && r != 0)) {
            ZSTD_freeDStream(z);
            return -EINVAL;
        }
    }
    ZSTD_freeDStream(z);
    return 0;
}

static int ungzip(const uint8_t *in, size_t len, struct sink *s)
{
    z_stream z;
    int r;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    do {
        if (sink_room(s, 1 << 20) < 0) {
            inflateEnd(&z);
            return -EFBIG;
        }
        z.next_out = s->buf + s->len;
        z.avail_out = (uInt)(s->cap - s->len > UINT32_MAX ? UINT32_MAX : s->cap - s->len);
        uInt before = z.avail_out;
        r = inflate(&z, Z_NO_FLUSH);
        s->len += before - z.avail_out;
    } while (r == Z_OK);
    inflateEnd(&z);
    return r == Z_STREAM_END ? 0 : -EINVAL;
}

int x86_bzimage_unpack(const uint8_t *image, size_t len, uint8_t **out, size_t *out_len)
{
    static const uint8_t xz[] = {0xfd, '7', 'z', 'X', 'Z', 0}, zst[] = {0x28, 0xb5, 0x2f, 0xfd},
                         gz[] = {0x1f, 0x8b};
    struct bzimage_header h;
    struct sink s = {0};
    const uint8_t *p;
    uint64_t offset, plen;
    int r;

    if (bzimage_parse(image, len, &h) < 0)
        return -EINVAL;
    offset = h.setup_len + (uint64_t)le32(image + HDR_PAYLOAD_OFFSET);
    plen = le32(image + HDR_PAYLOAD_LENGTH);
    if (h.version < 0x0208 || plen < 8 || offset > len || plen > len - offset)
        return err_plain(ENOTSUP, "bzImage has no payload to unpack");
    p = image + offset;
    if (memcmp(p, xz, sizeof(xz)) == 0)
        r = unxz(p, plen, &s);
    else if (memcmp(p, zst, sizeof(zst)) == 0)
        r = unzstd(p, plen, &s);
    else if (memcmp(p, gz, sizeof(gz)) == 0)
        r = ungzip(p, plen, &s);
    else
        return err_plain(ENOTSUP, "bzImage payload compression is not xz, zstd or gzip");
    if (r < 0) {
        free(s.buf);
        return err_plain(-r, "bzImage payload does not decompress");
    }
    *out = s.buf;
    *out_len = s.len;
    return 0;
}

static int write_atomically(const char *path, const uint8_t *data, size_t len)
{
    char tmp[4200];
    int fd;
    size_t done = 0;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return -EIO;
        }
        done += (size_t)w;
    }
    /* A crash may lose the cache entry, never leave half of one: rename
     * only a complete file, synced (a torn one would also fail the ELF
     * checks). */
    int synced = fsync(fd);
    if (close(fd) < 0 || synced < 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        return -EIO;
    }
    return 0;
}

int x86_unpacked_kernel(const uint8_t *image, size_t len, const char *cache_dir, char **out_path)
{
    struct elf_kernel k;
    uint8_t *vmlinux;
    size_t vlen;
    char path[4096];
    int r;

    *out_path = NULL;
    if (!cache_dir)
        return 0;
    /* Named by the bzImage's SHA-256: a bundle's kernel lands in this cache
     * too, and a key an attacker can collide (a fast non-cryptographic hash,
     * as before) would let a hostile bundle's kernel be booted later for a
     * trusted one. About 5 ms for an 8 MiB bzImage with SHA-NI. */
    uint8_t digest[HASH_BYTES];
    char key[HASH_HEX];
    hash_bytes(image, len, digest);
    hash_to_hex(digest, key);
    snprintf(path, sizeof(path), "%s/vmlinux-v%d-%s", cache_dir, CACHE_FORMAT_VERSION, key);
    if (cache_file_usable(path)) {
        *out_path = strdup(path);
        return *out_path ? 0 : -ENOMEM;
    }
    if (x86_bzimage_unpack(image, len, &vmlinux, &vlen) < 0)
        return 0; /* boot the bzImage as it is */
    r = elf_kernel_parse(vmlinux, vlen, &k);
    if (r == 0 && paths_mkdirs(cache_dir) == 0 && write_atomically(path, vmlinux, vlen) == 0)
        *out_path = strdup(path);
    free(vmlinux);
    err_clear();
    return 0;
}

/* The name of the link recording a kernel file's identity (unpack.h). */
static void identity_name(const struct stat *st, char name[160])
{
    snprintf(name, 160, "file-v%d-%llx-%llx-%llx-%llx.%09ld-%llx.%09ld", CACHE_FORMAT_VERSION,
             (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
             (unsigned long long)st->st_size, (unsigned long long)st->st_mtim.tv_sec,
             st->st_mtim.tv_nsec, (unsigned long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Unchanged for X86_KERNEL_SETTLED_SECONDS (unpack.h: why). */
static bool settled(const struct stat *st)
{
    struct timespec now;
    return clock_gettime(CLOCK_REALTIME, &now) == 0 &&
           now.tv_sec - st->st_ctim.tv_sec >= X86_KERNEL_SETTLED_SECONDS &&
           now.tv_sec - st->st_mtim.tv_sec >= X86_KERNEL_SETTLED_SECONDS;
}

/* A link's target is one of this cache's unpacked kernels by name, never
 * a path elsewhere. */
static bool unpacked_name(const char *target)
{
    char prefix[32];
    size_t n = (size_t)snprintf(prefix, sizeof(prefix), "vmlinux-v%d-", CACHE_FORMAT_VERSION);

    if (strncmp(target, prefix, n) != 0 || strlen(target + n) != HASH_HEX - 1)
        return false;
    return strspn(target + n, "0123456789abcdef") == HASH_HEX - 1;
}

char *x86_unpacked_kernel_known(const char *path, const char *cache_dir, struct stat *before)
{
    char name[160], target[128], *unpacked = NULL;
    ssize_t n;
    int dir;

    memset(before, 0, sizeof(*before));
    if (!cache_dir || stat(path, before) < 0 || !S_ISREG(before->st_mode)) {
        memset(before, 0, sizeof(*before));
        return NULL;
    }
    identity_name(before, name);
    if (!settled(before))
        before->st_ino = 0; /* not to be recorded: changed just before this look */
    if ((dir = open(cache_dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
        return NULL;
    n = readlinkat(dir, name, target, sizeof(target) - 1);
    close(dir);
    if (n <= 0)
        return NULL;
    target[n] = '\0';
    if (!unpacked_name(target) || asprintf(&unpacked, "%s/%s", cache_dir, target) < 0)
        return NULL;
    if (!cache_file_usable(unpacked)) {
        free(unpacked);
        return NULL;
    }
    return unpacked;
}

void x86_unpacked_kernel_remember(const char *path, const struct stat *before,
                                  const char *cache_dir, const char *unpacked)
{
    const char *target = strrchr(unpacked, '/');
    char name[160], tmp[200];
    struct stat now;
    int dir;

    if (!before->st_ino || !target || !unpacked_name(++target) || stat(path, &now) < 0 ||
        !same_file(before, &now))
        return;
    identity_name(&now, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", name, (int)getpid());
    if ((dir = open(cache_dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
        return;
    /* Made aside and renamed: a reader never sees half a link. */
    if (symlinkat(target, dir, tmp) == 0 && renameat(dir, tmp, dir, name) < 0)
        unlinkat(dir, tmp, 0);
    close(dir);
}

char *x86_kernel_cache_dir(void)
{
    char *dir;
    if (cache_dir_prepare("kernels", &dir) < 0) {
        err_clear(); /* no usable cache: the bzImage boots as it is */
        return NULL;
    }
    return dir;
}

void x86_kernel_unpack_ahead(const char *path)
{
    struct x86_kernel_file k;
    struct stat before;
    char *dir = x86_kernel_cache_dir(), *unpacked;

    if (!dir)
        return;
    if ((unpacked = x86_unpacked_kernel_known(path, dir, &before))) {
        free(unpacked); /* known: nothing to read */
        free(dir);
        return;
    }
    if (x86_kernel_open(path, "kernel", &k) < 0) {
        err_clear(); /* the VM's own error to report */
        free(dir);
        return;
    }
    if (x86_kernel_is_bzimage(&k)) {
        if (x86_unpacked_kernel(k.image.data, k.image.len, dir, &unpacked) < 0)
            err_clear();
        else if (unpacked)
            x86_unpacked_kernel_remember(path, &before, dir, unpacked);
        free(unpacked);
    }
    x86_kernel_close(&k);
    free(dir);
}
