/* The destination side of a migration (migrate.h): every frame from the
 * source is hostile until checked; the bundle it sends is checked whole
 * here, and again section by section when the VM is built from it. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "migrate/migrate.h"
#include "util/err.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/le.h"

static int accept_step(struct migrate_link *l)
{
    uint8_t version[4];
    put_le(version, MIGRATE_VERSION, 4);
    return migrate_send_frame(l, MIGRATE_ACCEPT, version, sizeof(version));
}

static int check_hello(struct migrate_link *l, const struct x86_cpuid_entry *host, size_t host_n)
{
    struct migrate_frame f;
    int r = migrate_recv_frame(l, MIGRATE_HELLO, &f);

    if (r < 0)
        return r;
    r = migrate_hello_check(f.payload, f.len, host, host_n);
    if (r == 0) /* checked: 1 up to this smolvm's; the source's frames go by it */
        l->version = le32(f.payload);
    free(f.payload);
    return r < 0 ? r : accept_step(l);
}

/* What the config announces: the RAM's size, the CPUs, and the config
 * itself (its JSON, malloc'd), which the VM is built from ahead. */
struct announced {
    uint64_t mem_bytes;
    unsigned cpus;
    char *config;
};

/* The config the VM ran under must be one this host can run (memory,
 * CPUs) before its RAM comes. */
static int check_config(struct migrate_link *l, struct announced *vm)
{
    struct migrate_frame f;
    struct vm_config cfg = {0};
    int r = migrate_recv_frame(l, MIGRATE_CONFIG, &f);

    if (r < 0)
        return r;
    r = vm_config_from_json((const char *)f.payload, &cfg);
    if (r == 0 && (r = vm_config_check(&cfg)) < 0)
        err_prefix("the VM cannot run on this host");
    vm->mem_bytes = cfg.mem_bytes;
    vm->cpus = cfg.cpus;
    vm_config_release(&cfg);
    if (r < 0) {
        free(f.payload);
        return r;
    }
    vm->config = (char *)f.payload; /* NUL-terminated (migrate_recv_frame) */
    return accept_step(l);
}

/* Where the bundle's bytes go. DATA continues where the last bytes
 * ended; PART (version 3) names its offset. A source sends one run from
 * where it begins to the bundle's end -- what cannot change while the VM
 * runs before the pause, the rest after -- then, at most once, a second
 * run from 0 up to where the first began (the header, written last). So
 * the bytes, hashed in the order they come, cover the file once, with no
 * gap and no overlap: END checks that, the size and the hash. */
struct bundle_stream {
    bool started, wrapped;
    uint64_t first; /* where the first run began */
    uint64_t next;  /* where the next bytes go */
    uint64_t size;  /* wrapped: where the first run ended */
    struct hash_state hash;
};

static int stream_place(struct bundle_stream *s, uint64_t at, uint64_t len)
{
    if (!s->started) {
        s->started = true;
        s->first = s->next = at;
    } else if (at != s->next) {
        if (s->wrapped || at != 0 || s->first == 0)
            return err_plain(EPROTO, "migration bundle bytes at %llu where %llu were due",
                             (unsigned long long)at, (unsigned long long)s->next);
        s->wrapped = true;
        s->size = s->next;
    }
    if (at >= MIGRATE_BUNDLE_MAX || len > MIGRATE_BUNDLE_MAX - at ||
        (s->wrapped && at + len > s->first))
        return err_plain(EPROTO, "migration bundle bytes at %llu (%llu of them) out of place",
                         (unsigned long long)at, (unsigned long long)len);
    s->next = at + len;
    return 0;
}

static int check_end(const struct migrate_frame *f, struct bundle_stream *s)
{
    uint8_t digest[HASH_BYTES];
    uint64_t size = s->wrapped ? s->size : s->next;

    if (f->len != 8 + HASH_BYTES)
        return err_plain(EPROTO, "migration END of %u bytes", f->len);
    if (s->wrapped ? s->next != s->first : s->first != 0)
        return err_plain(EPROTO, "the source left bytes of the VM's bundle out (%llu to %llu)",
                         (unsigned long long)(s->wrapped ? s->next : 0),
                         (unsigned long long)s->first);
    if (le64(f->payload) != size)
        return err_plain(EPROTO, "the source sent %llu bytes of the VM but says %llu",
                         (unsigned long long)size, (unsigned long long)le64(f->payload));
    hash_end(&s->hash, digest);
    if (memcmp(digest, f->payload + 8, HASH_BYTES))
        return err_plain(EPROTO, "the VM's bundle arrived corrupt (its SHA-256 differs)");
    return 0;
}

/* RAM (live): the VM is built here now, while the source's rounds run
 * (rx->ram_home), and its pages go straight into its memory: anonymous,
 * so pages never sent (zeros) take no room, as on the source; nothing
 * copied, no file system to fill. The size must be the VM's whole RAM. */
static int open_ram(struct migrate_receive *rx, const struct migrate_frame *f,
                    const struct announced *vm)
{
    if (f->len != 8 || rx->home)
        return err_plain(EPROTO, "migration RAM frame out of place");
    uint64_t total = le64(f->payload);
    if (!total || total > vm->mem_bytes || total % MIGRATE_PAGE)
        return err_plain(EPROTO, "migration RAM of %llu bytes for a VM of %llu",
                         (unsigned long long)total, (unsigned long long)vm->mem_bytes);
    if (!rx->ram_home)
        return err_plain(EPROTO, "this destination takes no RAM apart from the bundle");
    int r = rx->ram_home(rx->opaque, vm->config, vm->mem_bytes, vm->cpus, &rx->home);
    if (r == 0 && rx->home->total != total)
        r = err_plain(EPROTO, "migration RAM of %llu bytes for a VM of %llu",
                      (unsigned long long)total, (unsigned long long)rx->home->total);
    return r;
}

/* Where in the VM's memory [at, at + len) of its regions end to end is:
 * inside one region, or NULL. */
static uint8_t *in_home(const struct guest_memory *mem, uint64_t at, uint64_t len)
{
    for (unsigned i = 0; i < mem->count; at -= mem->regions[i++].size)
        if (at < mem->regions[i].size)
            return len <= mem->regions[i].size - at ? mem->regions[i].host + at : NULL;
    return NULL;
}

/* A PAGES frame's place: whole pages inside the RAM (migrate_place_fn). */
static int place_pages(void *opaque, uint64_t at, uint64_t len, uint8_t **to)
{
    const struct migrate_receive *rx = opaque;

    *to = rx->home && len >= MIGRATE_PAGE && len % MIGRATE_PAGE == 0 && at % MIGRATE_PAGE == 0
              ? in_home(rx->home, at, len)
              : NULL;
    return *to ? 0 : err_plain(EPROTO, "migration PAGES frame out of place or outside the RAM");
}

/* len bytes at offset at of the receiver's unnamed bundle file; a write
 * that fails (its file system full, most likely) names the folder the
 * file without a name is in. */
static int write_scratch(const struct migrate_receive *rx, const uint8_t *p, uint64_t len,
                         uint64_t at)
{
    for (uint64_t done = 0; done < len;) {
        ssize_t n = pwrite(rx->bundle_fd, p + done, len - done, (off_t)(at + done));
        if (n <= 0)
            return err_set(n < 0 ? errno : EIO,
                           "writing the VM's bundle into a file without a name in '%s'",
                           rx->scratch_dir);
        done += (uint64_t)n;
    }
    return 0;
}

/* OFFER: each layer this host has (rx->have_layer) is answered 1 in HAVE
 * and remembered: the bundle may list it without carrying it. */
static int answer_offer(struct migrate_receive *rx, struct migrate_link *l,
                        const struct migrate_frame *f)
{
    struct migrate_layer *offered = NULL;
    size_t n = 0;
    int r = migrate_offer_parse(f->payload, f->len, &offered, &n);
    uint8_t *answer = r == 0 ? calloc(1, 4 + n) : NULL;

    if (r == 0 && (!answer || !(rx->have = calloc(n ? n : 1, HASH_HEX))))
        r = err_set(ENOMEM, "migration offer");
    for (size_t i = 0; r == 0 && i < n; i++) {
        bool have = false;
        if (rx->have_layer && (r = rx->have_layer(offered[i].hash, offered[i].format, &have)) < 0)
            break;
        answer[4 + i] = have;
        if (have)
            memcpy(rx->have[rx->have_count++], offered[i].hash, HASH_HEX);
    }
    if (r == 0) {
        put_le(answer, n, 4);
        r = migrate_send_frame(l, MIGRATE_HAVE, answer, (uint32_t)(4 + n));
    }
    free(answer);
    free(offered);
    return r;
}

/* DATA's bytes where the stream is, PART's at the offset it names. */
static int write_bundle(struct migrate_receive *rx, struct bundle_stream *s,
                        const struct migrate_frame *f)
{
    bool part = f->type == MIGRATE_PART;
    const uint8_t *p = f->payload + (part ? 8 : 0);
    uint64_t at, len;
    int r;

    /* Its length first: the offset is read only from a frame that has one. */
    if (part && f->len < 8)
        return err_plain(EPROTO, "migration PART of %u bytes", f->len);
    at = part ? le64(f->payload) : s->next;
    len = f->len - (part ? 8 : 0);
    if ((r = stream_place(s, at, len)) < 0)
        return r;
    hash_add(&s->hash, p, len);
    return write_scratch(rx, p, len, at);
}

static int receive_data(struct migrate_receive *rx, struct migrate_link *l,
                        const struct announced *vm)
{
    bool offered = false;
    struct bundle_stream s = {0};
    hash_begin(&s.hash);
    for (;;) {
        struct migrate_frame f;
        int r = migrate_recv_frame_placing(l, place_pages, rx, &f);
        if (r < 0)
            return r;
        if (f.type == MIGRATE_PAGES) {
            /* in place already */
        } else if (f.type == MIGRATE_DATA || f.type == MIGRATE_PART) {
            r = write_bundle(rx, &s, &f);
        } else if (f.type == MIGRATE_OFFER && !s.started && !offered && !rx->home) {
            offered = true;
            r = answer_offer(rx, l, &f);
        } else if (f.type == MIGRATE_RAM) { /* live RAM goes while the bundle's first run may */
            r = open_ram(rx, &f, vm);
        } else if (f.type == MIGRATE_END) {
            r = check_end(&f, &s);
            if (r == 0) {
                free(f.payload);
                return 0;
            }
        } else {
            r = err_plain(EPROTO, "migration frame %s where DATA, PART or END was due",
                          migrate_frame_name(f.type));
        }
        free(f.payload);
        if (r < 0)
            return r;
    }
}

int migrate_receive_bundle(struct migrate_link *l, struct migrate_receive *rx)
{
    struct announced vm = {0};
    int r = check_hello(l, rx->host, rx->host_n);

    rx->home = NULL;
    rx->have = NULL;
    rx->have_count = 0;
    if (r == 0)
        r = check_config(l, &vm);
    if (r == 0)
        r = receive_data(rx, l, &vm);
    free(vm.config);
    if (r < 0) {
        migrate_send_error(l, err_msg());
    }
    return r;
}

int migrate_receive_commit(struct migrate_link *l)
{
    struct migrate_frame f;
    int r = migrate_send_frame(l, MIGRATE_READY, NULL, 0);

    if (r == 0 && (r = migrate_recv_frame(l, MIGRATE_GO, &f)) == 0)
        free(f.payload);
    /* After GO the source has stopped for good: the VM runs here even if
     * DONE cannot reach it. */
    if (r == 0 && migrate_send_frame(l, MIGRATE_DONE, NULL, 0) < 0)
        err_clear();
    return r;
}
