#include "machine/cache.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle/sections.h"
#include "confine/confine.h"
#include "machine/ram_faults.h"
#include "machine/workingset.h"
#include "util/cache.h"
#include "util/err.h"
#include "util/file.h"
#include "util/layer_name.h"
#include "util/paths.h"
#include "util/trace.h"

/* A bundle's disk, unpacked once into the cache under the hash of its
 * section and never written again: the shared, read-only base of every
 * instance started from it. */
int machine_cached_disk(const struct bundle *b, const char *section, char **out)
{
    char key[65], *dir = NULL, *path = NULL, *tmp = NULL;
    int r = cache_dir_prepare("disks", &dir);

    if (r == 0)
        r = bundle_section_key(b, section, key);
    if (r == 0 && (asprintf(&path, "%s/%s.raw", dir, key) < 0 ||
                   asprintf(&tmp, "%s.%d.tmp", path, (int)getpid()) < 0))
        r = err_set(ENOMEM, "disk cache");
    if (r == 0 && !cache_file_usable(path)) {
        /* Unpacked under a temporary name and renamed: a crash or a
         * concurrent start never leaves a half-written base in place. */
        r = bundle_extract(b, section, tmp);
        if (r == 0 && (chmod(tmp, 0444) < 0 || file_sync(tmp) < 0 || rename(tmp, path) < 0))
            r = err_set(errno, "disk cache '%s'", path);
        if (r < 0)
            unlink(tmp);
    }
    free(dir);
    free(tmp);
    if (r < 0) {
        free(path);
        return r;
    }
    *out = path;
    return 0;
}

/* Each layer unpacked once (and checked) into the layer cache, where they
 * back each other by name. */
int machine_cached_layers(const struct bundle *b, const struct bundle_chains *c, unsigned i,
                          char **top)
{
    const struct bundle_layer *l = bundle_chains_find(c, c->tops[i]);
    char *dir = NULL;
    int r = cache_dir_prepare("layers", &dir);
    bool added;

    if (r == 0 && !(*top = layer_path(dir, l->hash, l->format)))
        r = err_set(ENOMEM, "layers");
    /* Parents come before children in the table: the walk ends. */
    for (; r == 0 && l; l = l->parent[0] ? bundle_chains_find(c, l->parent) : NULL)
        r = bundle_layer_extract(b, c, l, dir, &added);
    free(dir);
    return r;
}

/* Whether the file at path hashes to hash (a file that cannot be read does not). */
static bool hashes_to(const char *path, const char *hash)
{
    char got[HASH_HEX];
    if (hash_file(path, got) < 0) {
        err_clear();
        return false;
    }
    return strcmp(got, hash) == 0;
}

/* The store's copy of a layer into the cache as path, checked there (a
 * copy under a temporary name, synced, renamed: as extract does). */
static bool copy_from_store(const char *hash, const char *format, const char *path)
{
    char *store = paths_data_dir("layers"), *from = store ? layer_path(store, hash, format) : NULL;
    char *tmp = NULL;
    bool ok = from && asprintf(&tmp, "%s.%d.tmp", path, (int)getpid()) >= 0 &&
              access(from, R_OK) == 0 && file_copy(from, tmp) == 0 && hashes_to(tmp, hash) &&
              chmod(tmp, 0444) == 0 && file_sync(tmp) == 0 && rename(tmp, path) == 0;
    if (!ok && tmp)
        unlink(tmp);
    err_clear();
    free(store);
    free(from);
    free(tmp);
    return ok;
}

int machine_layer_at_hand(const char *hash, const char *format, bool *have)
{
    char *dir = NULL, *path = NULL;
    int r = cache_dir_prepare("layers", &dir);

    *have = false;
    if (r == 0 && !(path = layer_path(dir, hash, format)))
        r = err_set(ENOMEM, "layers");
    /* One that does not hash to its name goes: it would be used as it is. */
    if (r == 0 && cache_file_usable(path) && !(*have = hashes_to(path, hash)))
        unlink(path);
    if (r == 0 && !*have)
        *have = copy_from_store(hash, format, path);
    free(dir);
    free(path);
    return r;
}

/* Unpacks the section into a fresh file next to path (*tmp, its name): a
 * sparse file (zero chunks are holes). Returns its fd, or <0. */
static int unpack_to_tmp(const struct bundle *b, const char *name,
                         const struct guest_memory *mem, const char *path, char **tmp)
{
    int fd, r;

    if (asprintf(tmp, "%s.tmp-%d", path, (int)getpid()) < 0) {
        *tmp = NULL;
        return err_set(ENOMEM, "memory cache");
    }
    fd = file_create_fresh(*tmp, 0600);
    r = fd < 0 ? fd : ftruncate(fd, (off_t)mem->total) < 0 ? err_set(errno, "'%s'", *tmp) : 0;
    if (r == 0)
        r = bundle_unpack_memory(b, name, mem, fd);
    if (r == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    unlink(*tmp);
    free(*tmp);
    *tmp = NULL;
    return r;
}

/* The unpacked file gets its name once synced: a crash never leaves a
 * file there that is not whole. Takes fd (closed) and tmp (freed). */
static int publish(int fd, char *tmp, const char *path)
{
    int r = fdatasync(fd) < 0 ? err_set(errno, "syncing '%s'", tmp) : 0;
    if (r == 0 && rename(tmp, path) < 0)
        r = err_set(errno, "naming '%s'", path);
    if (r < 0)
        unlink(tmp);
    close(fd);
    free(tmp);
    return r;
}

struct memory_cache_publisher {
    pthread_t thread;
    int fd;
    char *tmp, *path;
};

static void *publisher_main(void *arg)
{
    struct memory_cache_publisher *p = arg;
    struct sched_param none = {0};
    /* Behind the guest: its first output does not wait for the disk. */
    confine_thread(CONFINE_MEMORY, "memory-cache");
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &none);
    if (publish(p->fd, p->tmp, p->path) < 0)
        err_clear(); /* the next start unpacks it again */
    return NULL;
}

/* publish() in a thread of its own; where none can be made, here. */
static void publish_later(int fd, char *tmp, const char *path,
                          struct memory_cache_publisher **out)
{
    struct memory_cache_publisher *p = calloc(1, sizeof(*p));
    if (p && (p->path = strdup(path))) {
        p->fd = fd;
        p->tmp = tmp;
        if (confine_thread_start(&p->thread, CONFINE_MEMORY, publisher_main, p) == 0) {
            *out = p;
            return;
        }
        free(p->path);
    }
    free(p);
    if (publish(fd, tmp, path) < 0)
        err_clear(); /* the next start unpacks it again */
}

void machine_memory_cache_published(struct memory_cache_publisher *p)
{
    if (!p)
        return;
    pthread_join(p->thread, NULL);
    free(p->path);
    free(p);
}

/* Copies the file's data extents (holes are zero RAM already). */
static int copy_regions(const struct guest_memory *mem, int fd)
{
    uint64_t base = 0;
    struct stat st;

    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != mem->total)
        return err_plain(EIO, "memory cache file has the wrong size");
    for (unsigned i = 0; i < mem->count; i++) {
        const struct guest_region *g = &mem->regions[i];
        off_t pos = (off_t)base, end = (off_t)(base + g->size);
        while (pos < end) {
            off_t data = lseek(fd, pos, SEEK_DATA), hole;
            if (data < 0 || data >= end)
                break;
            hole = lseek(fd, data, SEEK_HOLE);
            if (hole < 0 || hole > end)
                hole = end;
            for (off_t at = data; at < hole;) {
                ssize_t n = pread(fd, g->host + (at - (off_t)base), (size_t)(hole - at), at);
                if (n <= 0)
                    return err_set(n < 0 ? errno : EIO, "reading the memory cache");
                at += n;
            }
            pos = hole;
        }
        base += g->size;
    }
    return 0;
}

/* machine_memory_cache(), naming an unpacked file behind the guest where
 * later is not NULL (*later then set, or left NULL when named already). */
static int memory_cache(const struct bundle *b, const char *name, struct guest_memory *mem,
                        const char *cache_dir, enum machine_memory_use use,
                        struct memory_cache_publisher **later)
{
    char key[65], *path, *tmp = NULL;
    int fd, r = bundle_memory_key(b, name, key);

    if (r < 0)
        return r;
    if (asprintf(&path, "%s/%s.ram", cache_dir, key) < 0)
        return err_set(ENOMEM, "memory cache");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && !cache_fd_trusted(fd)) { /* see util/cache.h: rebuilt */
        close(fd);
        fd = -1;
        unlink(path);
    }
    if (fd < 0) {
        fd = unpack_to_tmp(b, name, mem, path, &tmp);
        r = fd < 0 ? fd : 0;
    }
    if (r == 0)
        r = use == MEMORY_CACHE_MAP ? guest_memory_map_file(mem, fd) : copy_regions(mem, fd);
    if (r == 0 && tmp) { /* named once synced; RAM is mapped from it meanwhile */
        if (later)
            publish_later(fd, tmp, path, later);
        else if (publish(fd, tmp, path) < 0)
            err_clear(); /* this start has its RAM; the next unpacks again */
    } else {
        if (fd >= 0)
            close(fd);
        if (tmp)
            unlink(tmp);
        free(tmp);
    }
    free(path);
    return r;
}

int machine_memory_cache(const struct bundle *b, const char *name, struct guest_memory *mem,
                         const char *cache_dir, enum machine_memory_use use)
{
    return memory_cache(b, name, mem, cache_dir, use, NULL);
}

static int working_set_path_in(const struct bundle *b, const char *dir, char **path)
{
    char key[65];
    int r = bundle_section_key(b, SECTION_MEMORY, key);
    if (r == 0 && asprintf(path, "%s/%s.ws", dir, key) < 0)
        r = err_set(ENOMEM, "working set");
    if (r < 0)
        *path = NULL;
    return r;
}

int machine_working_set_path(const struct bundle *b, char **path)
{
    char *dir;
    int r = cache_dir_prepare("memory", &dir);
    if (r == 0)
        r = working_set_path_in(b, dir, path);
    free(dir);
    return r;
}

/* A bundle that carries a working set (SECTION_WORKINGSET: saved from a
 * VM whose start had recorded one), where none of its RAM is kept yet:
 * written there as a provisional one, for this first start to decode
 * before the guest runs (machine/workingset.h). A section that fails its
 * hash is a corrupt bundle (-EINVAL); one that is not a working set of
 * this RAM is left unused. */
static int adopt_bundled_working_set(const struct bundle *b, const char *dir,
                                     const struct guest_memory *mem)
{
    uint8_t *data = NULL;
    size_t len;
    char *path = NULL;
    int r = 0;

    if (!bundle_has(b, SECTION_WORKINGSET) || working_set_path_in(b, dir, &path) < 0 ||
        access(path, F_OK) == 0) {
        err_clear();
        free(path);
        return 0;
    }
    r = bundle_read(b, SECTION_WORKINGSET, &data, &len);
    if (r == 0 && working_set_adopt(path, mem, data, len) < 0)
        err_clear(); /* only this first start loses */
    free(data);
    free(path);
    return r == -EFBIG ? -EINVAL : r;
}

/* The working set recorded next to the memory cache is faulted in; when
 * there is none (or it does not fit this RAM, or it is a first start's
 * provisional one, not faulted in) this start records one, every page
 * faulted in as touched until then. */
static void prefetch(const struct bundle *b, const char *dir, const struct guest_memory *mem,
                     char **record)
{
    char key[65], *path;
    if (bundle_section_key(b, SECTION_MEMORY, key) < 0 ||
        asprintf(&path, "%s/%s.ws", dir, key) < 0)
        return;
    struct working_set_counts c;
    uint64_t t0 = trace_now_us();
    int r = working_set_prefetch(path, mem, &c);
    if (r == 0 && !c.provisional) { /* a provisional one is not faulted in */
        trace_set_count(TRACE_PREFETCHED_PAGES, c.read_pages + c.written_pages);
        trace_set_count(TRACE_PREFETCH_US, trace_now_us() - t0);
        trace_set_count(TRACE_PREFETCH_CALLS, c.resident_checks + c.readahead_calls + c.ranges);
    }
    if (r == -EINVAL)
        unlink(path);
    if (r < 0 || c.provisional)
        *record = path;
    else
        free(path);
    err_clear();
}

/* A first start: the memory index checked, then the guest runs while
 * each chunk it touches is read, checked and placed, the rest behind it
 * and into the cache file. Where a working set of this memory is known
 * (recorded by an earlier start whose cache file is gone), its chunks are
 * decoded into place first, and it is kept as it is; otherwise the pages
 * the guest touched up to its first output are written down as a
 * provisional one (machine/ram_faults.h). 1: not here
 * (a cache file is there already, or no userfaultfd): the caller goes on
 * as before. */
static int serve_first_start(const struct bundle *b, const struct guest_memory *mem,
                             const char *dir, struct ram_faults **faults)
{
    struct bundle_memory_image *img;
    struct working_set_chunk *known = NULL;
    size_t known_count = 0;
    char key[65], *path, *ws = NULL;
    int r = bundle_memory_key(b, SECTION_MEMORY, key);

    if (r < 0 || !ram_faults_supported())
        return r < 0 ? r : 1;
    if (asprintf(&path, "%s/%s.ram", dir, key) < 0)
        return err_set(ENOMEM, "memory cache");
    r = access(path, F_OK) == 0 ? 1 : bundle_memory_image_read(b, SECTION_MEMORY, mem, &img);
    if (r == 0 && (bundle_section_key(b, SECTION_MEMORY, key) < 0 ||
                   asprintf(&ws, "%s/%s.ws", dir, key) < 0))
        ws = NULL; /* only later starts lose */
    if (ws && working_set_read_ranges(ws, mem, &known, &known_count) == 0) {
        free(ws); /* kept as it is: what the next start prefetches, or records from */
        ws = NULL;
    } else if (ws) {
        err_clear(); /* none known (or not of this RAM): as without */
    }
    if (r == 0 && (r = ram_faults_start(img, mem, path, ws, known, known_count, faults)) < 0) {
        if (r != -EINVAL) { /* a corrupt chunk of the working set fails the start */
            err_clear();
            r = 1;
        }
    }
    free(known);
    free(path);
    free(ws);
    return r;
}

/* Mapped from the unpacked cache by default (bench/coldstart: fastest of
 * the three, and flat in RAM size); read into RAM when there can be no
 * cache (no cache folder, or a full disk). A first start (no cache file
 * yet) is served by userfaultfd by default, as MACHINE_MEMORY_SERVE asks:
 * with 64 KiB chunks, in bench/coldstart that beat unpacking first in
 * every round for both guests. MACHINE_MEMORY_MAP unpacks the whole cache
 * first instead. Every way a served VM can end lets go of its RAM first
 * (machine/ram_faults.h; nested first_start_served ends a served start
 * with SIGTERM and SIGKILL). */
int machine_cached_memory(const struct bundle *b, struct guest_memory *mem,
                          enum machine_memory how, char **record, struct ram_faults **faults,
                          struct memory_cache_publisher **later)
{
    char *dir = NULL;
    enum machine_memory_use use = how == MACHINE_MEMORY_COPY ? MEMORY_CACHE_COPY : MEMORY_CACHE_MAP;
    int r = -ENOENT;

    if (how != MACHINE_MEMORY_DECOMPRESS && cache_dir_prepare("memory", &dir) < 0)
        err_clear(); /* no usable cache: decompressed from the bundle */
    if (dir && (r = adopt_bundled_working_set(b, dir, mem)) < 0) { /* a corrupt bundle */
        free(dir);
        return r;
    }
    r = -ENOENT;
    if (dir && (how == MACHINE_MEMORY_DEFAULT || how == MACHINE_MEMORY_SERVE)) {
        r = serve_first_start(b, mem, dir, faults);
        if (r == 0 || r == -EINVAL) { /* served, or a corrupt bundle */
            free(dir);
            return r;
        }
        err_clear(); /* as before: unpacked into the cache, or loaded */
    }
    if (dir)
        r = memory_cache(b, SECTION_MEMORY, mem, dir, use, later);
    if (r == 0 && (how == MACHINE_MEMORY_DEFAULT || how == MACHINE_MEMORY_MAP ||
                   how == MACHINE_MEMORY_SERVE))
        prefetch(b, dir, mem, record);
    free(dir);
    if (r == 0 || r == -EINVAL)
        return r;
    err_clear();
    return bundle_load_memory(b, SECTION_MEMORY, mem);
}
