/* The source side of a migration (migrate.h): hello and config, each
 * accepted; the layers the destination has; the bundle's kernel and
 * initrd while the VM runs; RAM while it runs (live: pre-copy rounds; warm:
 * round 0 alone); then the paused VM's last dirty pages and its part of
 * the bundle (device state, disks), then the two-step hand-over. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bundle/format.h"
#include "bundle/layers.h"
#include "hv/hv.h"
#include "migrate/migrate.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/iov.h"
#include "util/le.h"

/* The destination finishes the VM (unpacks disks, makes the devices)
 * before READY, and hashes the layers it has before HAVE. */
#define BUILD_WAIT_MS 300000

/* A frame the destination sends after slow work of its own (hashing its
 * layers, building the VM): the link may be silent up to BUILD_WAIT_MS. */
static int recv_after_work(struct migrate_link *l, enum migrate_frame_type type,
                           struct migrate_frame *f)
{
    int stall = l->stall_ms, r;

    l->stall_ms = BUILD_WAIT_MS;
    r = migrate_recv_frame(l, type, f);
    l->stall_ms = stall;
    return r;
}

static double seconds_of(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double now(void)
{
    return seconds_of(CLOCK_MONOTONIC);
}

/* Version and CPU first, then the config: a destination that cannot take
 * the VM says so before it is paused. */
static int handshake(struct migrate_link *l, struct machine *m)
{
    struct x86_cpuid_entry *cpuid;
    struct migrate_frame f;
    size_t n;
    uint8_t *hello;
    uint32_t len;
    int r = hv_host_cpuid(&cpuid, &n);

    if (r < 0)
        return r;
    r = migrate_hello_encode(cpuid, n, &hello, &len);
    free(cpuid);
    if (r < 0)
        return r;
    r = migrate_send_frame(l, MIGRATE_HELLO, hello, len);
    free(hello);
    if (r == 0 && (r = migrate_recv_frame(l, MIGRATE_ACCEPT, &f)) == 0)
        free(f.payload);
    if (r < 0)
        return r;
    char *json = vm_config_to_json(vm_config(machine_vm(m)));
    r = json ? migrate_send_frame(l, MIGRATE_CONFIG, json, (uint32_t)strlen(json))
             : err_set(ENOMEM, "migration config");
    free(json);
    if (r == 0 && (r = migrate_recv_frame(l, MIGRATE_ACCEPT, &f)) == 0)
        free(f.payload); /* it can run the VM */
    return r;
}

/* The layers under m's disks, each once, as an OFFER names them. */
static int disk_layers(struct machine *m, struct migrate_layer *out, size_t *n)
{
    const struct vm_config *cfg = vm_config(machine_vm(m));
    struct bundle_layer *found = calloc(MIGRATE_LAYERS_MAX, sizeof(*found));
    int r = found ? 0 : err_set(ENOMEM, "migration offer");

    *n = 0;
    for (unsigned d = 0; r == 0 && d < cfg->disk_count; d++) {
        size_t k;
        r = bundle_disk_layers(cfg->disks[d].path, cfg->disks[d].format, found,
                               MIGRATE_LAYERS_MAX, &k);
        for (size_t i = 0; r == 0 && i < k; i++) {
            bool listed = false;
            for (size_t j = 0; j < *n; j++)
                listed |= strcmp(out[j].hash, found[i].hash) == 0;
            if (listed)
                continue;
            if (*n == MIGRATE_LAYERS_MAX) {
                r = err_plain(E2BIG, "more than %d layers to offer", MIGRATE_LAYERS_MAX);
                break;
            }
            memcpy(out[*n].hash, found[i].hash, HASH_HEX);
            snprintf(out[(*n)++].format, sizeof(out->format), "%s", found[i].format);
        }
    }
    free(found);
    return r;
}

/* Layers the destination has: hashes malloc'd. */
struct layer_list {
    char (*hashes)[HASH_HEX];
    size_t count;
};

/* OFFER of the layers under m's disks, HAVE back: the ones the
 * destination has go into *omit, listed in the bundle but not carried. */
static int offer_layers(struct migrate_link *l, struct machine *m, struct layer_list *omit)
{
    struct migrate_layer *layers = calloc(MIGRATE_LAYERS_MAX, sizeof(*layers));
    bool *have = calloc(MIGRATE_LAYERS_MAX, sizeof(*have));
    struct migrate_frame f = {0};
    uint8_t *offer = NULL;
    uint32_t len;
    size_t n = 0;
    int r = layers && have ? disk_layers(m, layers, &n) : err_set(ENOMEM, "migration offer");

    if (r == 0)
        r = migrate_offer_encode(layers, n, &offer, &len);
    if (r == 0)
        r = migrate_send_frame(l, MIGRATE_OFFER, offer, len);
    if (r == 0)
        r = recv_after_work(l, MIGRATE_HAVE, &f);
    if (r == 0)
        r = migrate_have_parse(f.payload, f.len, n, have);
    if (r == 0 && !(omit->hashes = calloc(n ? n : 1, HASH_HEX)))
        r = err_set(ENOMEM, "migration offer");
    for (size_t i = 0; r == 0 && i < n; i++)
        if (have[i])
            memcpy(omit->hashes[omit->count++], layers[i].hash, HASH_HEX);
    free(f.payload);
    free(offer);
    free(layers);
    free(have);
    return r;
}

/* Sleeps as long as the cap asks: sent bytes since start. */
static void pace(uint64_t sent, double start, uint64_t rate)
{
    struct precopy cap = {.max_bandwidth = rate};
    double wait = precopy_pace(&cap, sent, now() - start);
    if (wait > 0) {
        struct timespec t = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&t, NULL);
    }
}

/* Test builds only (SMOLVM_TEST_HOOKS): $SMOLVM_TEST_MIGRATE_CUT names a
 * file saying where the next migration's link is cut, as a receiver
 * killed or a network gone would cut it: "10" or "50" (percent of the
 * way through round 0's walk of RAM) or "final" (halfway through the
 * bundle sent at stop-and-copy, the VM paused). The tests of a cut link (tests/nested, scenario migrate_load)
 * pull it; with no such file nothing is cut. */
static struct {
    unsigned percent; /* 1..100; 0: nothing to cut */
    bool final;
} cut_plan;

static void plan_cut(void)
{
    memset(&cut_plan, 0, sizeof(cut_plan));
#ifdef SMOLVM_TEST_HOOKS
    const char *path = getenv("SMOLVM_TEST_MIGRATE_CUT");
    char word[16] = "";
    FILE *f = path ? fopen(path, "re") : NULL;
    if (f && fgets(word, sizeof(word), f)) {
        cut_plan.final = strncmp(word, "final", 5) == 0;
        cut_plan.percent = cut_plan.final ? 50 : (unsigned)atoi(word);
    }
    if (f)
        fclose(f);
#endif
}

/* done of total through the part where the cut is planned (final: the
 * stop-and-copy's). */
static void cut_when_due(struct migrate_link *l, bool stop_and_copy, uint64_t done, uint64_t total)
{
    if (cut_plan.percent && stop_and_copy == cut_plan.final &&
        done * 100 >= total * cut_plan.percent) {
        shutdown(l->out, SHUT_RDWR);
        cut_plan.percent = 0;
    }
}

/* A frame of the VM's stream, unless the destination has spoken: while
 * the VM streams it only speaks to give up (an ERROR: its disk full, the
 * bundle refused), and then the reason is what the source says. */
static int send_watched(struct migrate_link *l, enum migrate_frame_type type, const void *payload,
                        uint32_t len)
{
    int r = migrate_peer_check(l);
    return r < 0 ? r : migrate_send_frame(l, type, payload, len);
}

/* The VM's bundle on its way, written in two steps (machine.h): what
 * cannot change while the VM runs -- bytes [BUNDLE_HEADER_SIZE, early) --
 * goes before the pause, the rest from early to the end after it, then
 * the header (written last). Each as PART frames, hashed in that order
 * (the destination's check: migrate/receive.c). */
struct outgoing {
    char *path;
    struct machine_saving *saving; /* until finished */
    uint64_t early;
    struct hash_state hash;
    uint8_t *frame; /* u64 offset, then up to MIGRATE_DATA_MAX bytes */
};

/* Bytes [from, to) of fd as PARTs, at most cap bytes/s (0: no cap).
 * stop_and_copy: the bulk sent while the VM is paused (the cut hook's
 * "final", the progress). */
static int send_range(struct migrate_link *l, struct outgoing *out, int fd, uint64_t from,
                      uint64_t to, bool stop_and_copy, uint64_t cap,
                      const struct migrate_send_options *o, uint64_t *sent)
{
    double start = now();
    int r = 0;

    for (uint64_t at = from; r == 0 && at < to;) {
        size_t want = to - at < MIGRATE_DATA_MAX ? (size_t)(to - at) : MIGRATE_DATA_MAX;
        ssize_t n = pread(fd, out->frame + 8, want, (off_t)at);
        if (n <= 0)
            return err_set(n < 0 ? errno : EIO, "reading '%s'", out->path);
        put_le(out->frame, at, 8);
        hash_add(&out->hash, out->frame + 8, (size_t)n);
        r = send_watched(l, MIGRATE_PART, out->frame, (uint32_t)(8 + n));
        at += (uint64_t)n;
        *sent += (uint64_t)n;
        if (stop_and_copy) {
            cut_when_due(l, true, at - from, to - from);
            if (o->progress)
                o->progress(o->opaque, at - from, to - from);
        }
        pace(at - from, start, cap);
    }
    return r;
}

/* Before the pause: the bundle begun, its kernel and initrd sent. */
static int send_early(struct migrate_link *l, struct machine *m, struct outgoing *out,
                      const struct machine_save_options *so, const struct migrate_send_options *o,
                      uint64_t *sent)
{
    int fd, r;

    if (asprintf(&out->path, "%s/migrate-%d.smolmachine", o->scratch_dir, (int)getpid()) < 0)
        out->path = NULL;
    if (!out->path || !(out->frame = malloc(8 + MIGRATE_DATA_MAX)))
        return err_set(ENOMEM, "migration");
    hash_begin(&out->hash);
    r = machine_save_begin(m, out->path, so, &out->saving);
    if (r < 0)
        return r;
    fd = machine_saving_file(out->saving, &out->early);
    return send_range(l, out, fd, BUNDLE_HEADER_SIZE, out->early, false, o->max_bandwidth, o,
                      sent);
}

/* After it: the rest of the bundle from where the early bytes ended, the
 * header, END (the size, the hash of it all as sent). */
static int send_rest(struct migrate_link *l, struct outgoing *out,
                     const struct migrate_send_options *o, uint64_t *sent)
{
    int fd = open(out->path, O_RDONLY | O_CLOEXEC);
    off_t total = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);
    uint8_t end[8 + HASH_BYTES];
    int r = fd < 0 || total < 0 ? err_set(errno, "reading '%s'", out->path) : 0;

    /* Paused: at the link's own speed (precopy()'s last pages say why). */
    if (r == 0)
        r = send_range(l, out, fd, out->early, (uint64_t)total, true, 0, o, sent);
    if (r == 0)
        r = send_range(l, out, fd, 0, BUNDLE_HEADER_SIZE, false, 0, o, sent);
    if (r == 0) {
        put_le(end, (uint64_t)total, 8);
        hash_end(&out->hash, end + 8);
        r = migrate_send_frame(l, MIGRATE_END, end, sizeof(end));
    }
    if (fd >= 0)
        close(fd);
    return r;
}

static void outgoing_free(struct outgoing *out)
{
    machine_save_abort(out->saving);
    if (out->path)
        unlink(out->path);
    free(out->path);
    free(out->frame);
}

/* READY (the VM is built there), GO (from here on the VM is theirs),
 * DONE. *committed: GO went out, so m must never run again. */
static int hand_over(struct migrate_link *l, bool *committed, struct migrate_send_result *res)
{
    struct migrate_frame f;
    double t0 = now();
    int r = recv_after_work(l, MIGRATE_READY, &f);

    res->build = now() - t0;
    if (r < 0)
        return r;
    free(f.payload);
    if ((r = migrate_send_frame(l, MIGRATE_GO, NULL, 0)) < 0)
        return r;
    *committed = true;
    if ((r = migrate_recv_frame(l, MIGRATE_DONE, &f)) < 0)
        return r;
    free(f.payload);
    res->handover = now() - t0 - res->build;
    return 0;
}

/* ---- RAM while the VM runs: pre-copy rounds ---- */

struct dirty {
    uint64_t *bits[GUEST_MEMORY_MAX_REGIONS];
};

static uint64_t words(const struct guest_region *g)
{
    return (g->size / MIGRATE_PAGE + 63) / 64;
}

/* Page p is to go: marked, and (skip_zero: round 0) not zeros. */
static bool sendable(const uint64_t *bits, const uint8_t *host, uint64_t p, bool skip_zero)
{
    return (bits[p / 64] >> (p % 64) & 1) &&
           !(skip_zero && buf_is_zero(host + p * MIGRATE_PAGE, MIGRATE_PAGE));
}

/* From *p on, the next run of pages to go (at most a frame's): its
 * length, *p its first page. The pages passed over are unmarked. */
static unsigned next_run(uint64_t *bits, const uint8_t *host, uint64_t pages, uint64_t *p,
                         bool skip_zero)
{
    uint64_t at = *p;
    unsigned n = 0;

    while (at < pages && !sendable(bits, host, at, skip_zero)) {
        if (!bits[at / 64] && at % 64 == 0) { /* 64 clean pages: a word */
            at += 64;
            continue;
        }
        bits[at / 64] &= ~(1ull << (at % 64));
        at++;
    }
    while (at + n < pages && n < MIGRATE_PAGES_MAX && sendable(bits, host, at + n, skip_zero))
        n++;
    *p = at;
    return n;
}

/* Sends the marked pages (clearing the marks), runs of them a frame each;
 * in the first round pages of zeros are left out (the destination's RAM
 * starts as zeros). The cap and the vCPU throttle are kept meanwhile. */
static int send_pages(struct migrate_link *l, struct vm *vm, struct dirty *d, bool skip_zero,
                      uint64_t cap, struct migrate_send_result *res)
{
    const struct guest_memory *mem = vm_memory(vm);
    uint8_t *frame = malloc(8 + MIGRATE_PAGES_MAX * MIGRATE_PAGE);
    double start = now();
    uint64_t base = 0, before = res->bytes;
    int r = frame ? 0 : err_set(ENOMEM, "migration");

    for (unsigned i = 0; r == 0 && i < mem->count; base += mem->regions[i++].size) {
        const struct guest_region *g = &mem->regions[i];
        uint64_t pages = g->size / MIGRATE_PAGE;
        for (uint64_t p = 0; r == 0 && p < pages;) {
            double t0 = now();
            unsigned n = next_run(d->bits[i], g->host, pages, &p, skip_zero);
            double t1 = now();
            res->scan += t1 - t0;
            if (!n)
                break;
            /* A copy, not the guest's pages themselves: the checksum must
             * be of the bytes that go, and the guest writes on. */
            put_le(frame, base + p * MIGRATE_PAGE, 8);
            memcpy(frame + 8, g->host + p * MIGRATE_PAGE, (size_t)n * MIGRATE_PAGE);
            for (unsigned k = 0; k < n; k++, p++)
                d->bits[i][p / 64] &= ~(1ull << (p % 64));
            res->copy += now() - t1;
            r = send_watched(l, MIGRATE_PAGES, frame, 8 + n * MIGRATE_PAGE);
            res->bytes += (uint64_t)n * MIGRATE_PAGE;
            if (skip_zero) /* round 0 */
                cut_when_due(l, false, base + p * MIGRATE_PAGE, mem->total);
            t0 = now();
            pace(res->bytes - before, start, cap);
            res->pace += now() - t0;
            vm_throttle_tick(vm);
        }
    }
    free(frame);
    return r;
}

/* Pages dirtied since the last fetch into d; their bytes. */
static int fetch_dirty(struct vm *vm, struct dirty *d, bool take_vmm, uint64_t *bytes)
{
    const struct guest_memory *mem = vm_memory(vm);
    int r = 0;

    *bytes = 0;
    for (unsigned i = 0; r == 0 && i < mem->count; i++) {
        uint64_t *fresh = calloc(words(&mem->regions[i]), 8);
        r = fresh ? vm_dirty_fetch(vm, i, fresh, take_vmm) : err_set(ENOMEM, "dirty bitmap");
        for (uint64_t w = 0; r == 0 && w < words(&mem->regions[i]); w++) {
            d->bits[i][w] |= fresh[w];
            *bytes += (uint64_t)__builtin_popcountll(d->bits[i][w]) * MIGRATE_PAGE;
        }
        free(fresh);
    }
    return r;
}

/* RAM in rounds while the VM runs, until what is left fits the downtime
 * (or the rounds are spent; warm: after round 0, whatever is left, so
 * that the pause sends only what the guest changed meanwhile, not all of
 * RAM); then the VM pauses and the rest goes. */
static int precopy(struct migrate_link *l, struct vm *vm, const struct migrate_send_options *o,
                   struct dirty *d, struct migrate_send_result *res, double *paused_at)
{
    const struct guest_memory *mem = vm_memory(vm);
    struct precopy p = {.max_downtime_ms = o->max_downtime_ms, .max_bandwidth = o->max_bandwidth,
                        .max_rounds = o->live ? 0 : 1};
    uint8_t total[8];
    uint64_t left;
    int r;

    put_le(total, mem->total, 8);
    for (unsigned i = 0; i < mem->count; i++) {
        if (!(d->bits[i] = malloc(words(&mem->regions[i]) * 8)))
            return err_set(ENOMEM, "dirty bitmap");
        memset(d->bits[i], 0xff, words(&mem->regions[i]) * 8); /* round 0: all of it */
    }
    r = migrate_send_frame(l, MIGRATE_RAM, total, sizeof(total));
    if (r == 0)
        r = vm_dirty_log(vm, true);
    /* Pages the guest never touched are zeros: round 0 need not read
     * them (for an idle guest most of its RAM). Asked after the dirty log
     * is on: a page touched after the answer is in the log. */
    for (unsigned i = 0; r == 0 && i < mem->count; i++) {
        int64_t n = guest_memory_untouched(&mem->regions[i], d->bits[i]);
        res->untouched += n > 0 ? (uint64_t)n : 0;
    }
    for (enum precopy_step step = PRECOPY_AGAIN; r == 0 && step == PRECOPY_AGAIN;) {
        uint64_t before = res->bytes;
        double t0 = now();
        r = send_pages(l, vm, d, p.round == 0, o->max_bandwidth, res);
        double t1 = now();
        if (r == 0)
            r = fetch_dirty(vm, d, false, &left);
        res->fetch += now() - t1;
        if (r < 0)
            break;
        step = precopy_round(&p, res->bytes - before, left, left, now() - t0);
        vm_throttle(vm, p.throttle);
        if (o->round)
            o->round(o->opaque, &p);
    }
    res->rounds = p.round;
    *paused_at = now();
    /* The wall clock: a benchmark lines it up with the guest's console
     * lines, which it stamps by that clock. */
    res->paused_wall = seconds_of(CLOCK_REALTIME);
    if (r == 0)
        r = vm_pause(vm);
    if (r == 0)
        r = fetch_dirty(vm, d, true, &left);
    /* Paused, the cap no longer holds: the pause is the guest's downtime,
     * and the cap is for the rounds, which share the link with the
     * guest's own traffic for seconds (QEMU lifts its cap at this point
     * too). */
    if (r == 0)
        r = send_pages(l, vm, d, false, 0, res);
    res->pages = now() - *paused_at;
    return r;
}

static int save_and_send(struct migrate_link *l, struct outgoing *out,
                         const struct migrate_send_options *o, struct migrate_send_result *res,
                         bool *committed)
{
    double t0 = now();
    int r = machine_save_finish(out->saving);

    out->saving = NULL;
    res->save = now() - t0;
    if (r == 0)
        r = send_rest(l, out, o, &res->bytes);
    res->send = now() - t0 - res->save;
    return r == 0 ? hand_over(l, committed, res) : r;
}

/* Tracking off, the VM given back unless it is theirs now; the
 * migration's own failure stays the message. */
static int wind_down(struct migrate_link *l, struct vm *vm, int r, bool was_paused,
                     bool committed)
{
    char why[512];

    snprintf(why, sizeof(why), "%s", r < 0 ? err_msg() : "");
    if (r < 0 && !committed)
        migrate_send_error(l, why);
    /* A VM handed over never runs here again: its log is left to its
     * teardown, not switched off (each memory slot re-registered) while
     * the guest resumes there, maybe on the same CPU. */
    if (!committed && vm_dirty_log(vm, false) < 0)
        err_clear();
    if (r < 0 && !committed && !was_paused && vm_paused(vm))
        vm_resume(vm);
    if (r < 0)
        return err_plain(-r, "%s%s", committed ? "the VM stays paused here (it may run there): "
                                               : "",
                         why);
    return 0;
}

int migrate_send(struct machine *m, const struct migrate_send_options *o,
                 struct migrate_send_result *res)
{
    struct vm *vm = machine_vm(m);
    /* Its own version: a destination that speaks an older one refuses
     * HELLO, before any PAGES. */
    struct migrate_link l = {.stall_ms = MIGRATE_STALL_MS, .version = MIGRATE_VERSION};
    struct dirty d = {0};
    struct layer_list omit = {0};
    struct outgoing out = {0};
    bool was_paused = vm_paused(vm), committed = false;
    double start = now(), paused_at = 0;
    int r, fd = o->link;

    memset(res, 0, sizeof(*res));
    plan_cut();
    l.in = l.out = fd;
    r = handshake(&l, m);
    if (r == 0)
        r = offer_layers(&l, m, &omit);
    if (r == 0) {
        /* A store instance's disk goes as its chain (the layers the
         * destination has listed, not carried); any other disk whole. */
        struct machine_save_options so = {.with_state = true, .memory_elsewhere = true,
                                          .scratch = true,
                                          .omit_layers = (const char(*)[HASH_HEX])omit.hashes,
                                          .omit_layer_count = omit.count};
        r = send_early(&l, m, &out, &so, o, &res->bytes);
    }
    if (r == 0) /* untouched pages must be zeros: none still to come from a bundle */
        r = machine_ram_whole(m);
    if (r == 0)
        r = precopy(&l, vm, o, &d, res, &paused_at);
    if (r == 0)
        r = save_and_send(&l, &out, o, res, &committed);
    /* The VM runs there from DONE on: the dirty log's teardown here is
     * not its downtime. */
    double ended = now();
    if (r == 0)
        machine_handed_over(m); /* what is left here yields to the guest there */
    r = wind_down(&l, vm, r, was_paused, committed);
    for (unsigned i = 0; i < GUEST_MEMORY_MAX_REGIONS; i++)
        free(d.bits[i]);
    outgoing_free(&out);
    free(omit.hashes);
    close(fd);
    res->link = l.stats;
    res->wind_down = now() - ended;
    res->seconds = ended - start;
    res->downtime = paused_at ? ended - paused_at : 0;
    return r;
}
