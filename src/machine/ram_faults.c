/* The guest's first touch of a page of a chunk not yet in RAM stops its
 * thread (a vCPU in KVM, or a device thread) in the kernel and queues a
 * message here; the chunk is read and its stored bytes checked
 * (bundle_memory_image_begin), decoded only as far as the window holding
 * the page (WINDOW; zstd's blocks, bundle_chunk_decode_to), and that
 * window alone is placed with UFFDIO_COPY, which wakes it: placing a page
 * costs as much as decoding it, so the guest waits for 16 pages, not 128.
 * A later touch of the chunk is served from the fault thread's slot,
 * decoding on from where it stopped. Behind the guest, at idle priority,
 * the fill places the rest of each chunk the fault thread lets go of
 * (handed over with the slot, decoded on from there: no chunk the guest
 * touched is decoded twice, unless the fill is so far behind that no
 * spare slot is left), then every other chunk in order, and writes them
 * to the cache file; when all are in, the regions are unregistered (a
 * page missing later, after a MADV_DONTNEED, is plain anonymous memory
 * again) and the cache file is synced and named. */
#include "machine/ram_faults.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine/confine.h"
#include "disk/fileio.h"
#include "machine/workingset.h"
#include "util/err.h"
#include "util/file.h"
#include "util/trace.h"

#define PAGE 4096u
#define MESSAGES 16
/* What a fault places first around the touched page (aligned); chunks
 * (at most MEMORY_CHUNK) hold at most 32 windows. */
#define WINDOW (64u << 10)
#define WINDOWS_MAX 32
/* Chunks the fault thread keeps decoded (the guest's next touches), and
 * slots to take their place while the fill places the rest of chunks it
 * was handed. */
#define DECODED_SLOTS 4
#define SPARE_SLOTS 2
#define SLOTS (DECODED_SLOTS + SPARE_SLOTS)
/* How long a start's touches are recorded at most when the guest says
 * nothing sooner: WORKING_SET_WINDOW_MS (machine/cache.h). */
#define RECORD_MS 1000u

/* A chunk the fault thread began to decode (only as far as the guest
 * touched it): its windows are placed from here as the guest touches
 * them, and the fill, handed it, decodes the rest on from there. */
struct decoded {
    size_t chunk; /* chunks: none */
    bool zero;
    size_t ready;  /* bytes decoded */
    uint64_t used; /* when last touched (the slot least recently used is reused) */
    uint8_t *bytes;
    struct bundle_chunk_decoder *decoder; /* where its decoding stopped */
};

/* Slots passed from one thread to the other, neither waiting: one puts,
 * one takes. Every slot is in one place only, so SLOTS never overflow. */
struct slot_queue {
    struct decoded *items[SLOTS];
    atomic_size_t put, taken;
};

static void queue_put(struct slot_queue *q, struct decoded *d)
{
    size_t n = atomic_load_explicit(&q->put, memory_order_relaxed);
    q->items[n % SLOTS] = d;
    atomic_store_explicit(&q->put, n + 1, memory_order_release);
}

static struct decoded *queue_take(struct slot_queue *q)
{
    size_t n = atomic_load_explicit(&q->taken, memory_order_relaxed);
    if (n == atomic_load_explicit(&q->put, memory_order_acquire))
        return NULL;
    struct decoded *d = q->items[n % SLOTS];
    atomic_store_explicit(&q->taken, n + 1, memory_order_release);
    return d;
}

/* Two threads place windows of chunks: one serves faults (at the guest's
 * priority), one fills behind the guest in order (SCHED_IDLE: only the
 * CPU time the guest leaves) and writes the cache file. A window is
 * claimed (a bit in claimed[], set by one atomic or) before it is placed,
 * so the fill never places what the fault thread did. A touch of a window
 * the fill claimed but has not placed is placed by the fault thread too
 * (never waiting for the fill, which a busy guest starves): the one
 * placing there twice, where each page still lands once, as UFFDIO_COPY
 * never replaces a page that is there (EEXIST, skipped): nothing the
 * guest wrote is ever overwritten. */
struct ram_faults {
    int uffd;
    pthread_t fault_thread, fill_thread;
    bool fill_started;
    struct bundle_memory_image *img;
    struct guest_region regions[GUEST_MEMORY_MAX_REGIONS];
    size_t first_chunk[GUEST_MEMORY_MAX_REGIONS], chunk_size[GUEST_MEMORY_MAX_REGIONS];
    unsigned region_count;
    size_t chunks;
    atomic_size_t faulted, windows_left; /* windows not yet placed */
    atomic_uint *claimed, *placed;       /* per chunk, a bit per window */
    atomic_uchar *touched;               /* faulted in by the guest */
    atomic_uchar *held;                  /* in a slot of the fault thread's */
    struct decoded slots[SLOTS];
    struct decoded *decoded[DECODED_SLOTS]; /* the fault thread's */
    uint64_t uses;
    /* Chunks the fault thread lets go of, decoded in part, to the fill
     * (it does the rest of them first); their slots back. */
    struct slot_queue handed, spare;
    atomic_bool wants_held; /* the fill: every chunk left is held */
    uint8_t *filled;        /* the fill's: chunks it did */
    size_t filled_n, fill_from;
    char *working_set;
    struct guest_memory mem; /* the layout (for the working set) */
    /* Recording the guest's own touches (working_set set and
     * ram_faults_record_pages): until its first output (asked), or
     * RECORD_MS in, a fault places its page alone and writes it down
     * (touched_pages: a bit per page of the RAM laid end to end, the
     * fault thread's while recording), and the fill waits. */
    atomic_bool recording, record_asked;
    uint64_t record_until_us;
    uint64_t *touched_pages;
    uint64_t region_first_page[GUEST_MEMORY_MAX_REGIONS];
    uint8_t *fill_buffer;
    struct bundle_chunk_decoder *fill_decoder;
    char *cache_path, *tmp_path;
    int cache_fd;
    bool cache_failed; /* the fill's */
    atomic_bool stopping, gave_up, finished, reported, hurry;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done; /* every chunk in, or given up: under lock */
    int result;
    unsigned held_slot; /* held[]: the regions, for an exit */
    /* Who is told when serving fails for good (ram_faults_when_broken),
     * and what was said (empty: nothing yet): under lock. */
    void (*on_broken)(void *opaque, const char *message);
    void *broken_opaque;
    char broken_message[256];
};

bool ram_faults_fill_behind = true;
bool ram_faults_record_pages = true;
bool ram_faults_prefill_pages = true;
sem_t *ram_faults_fill_gate, *ram_faults_serve_gate;
void (*ram_faults_placed)(const uint8_t *at, size_t len);
void (*ram_faults_decoding)(size_t chunk);

/* The regions each server of this process holds, kept apart from the
 * server (plain ints and ranges, read by an exit handler while another
 * thread may free the server): an exit from any thread lets go of them
 * first (let_go_at_exit). uffd + 1, 0: a free slot. */
#define HELD_SLOTS 4
static struct held_ram {
    atomic_int uffd_plus_1;
    unsigned count;
    struct uffdio_range ranges[GUEST_MEMORY_MAX_REGIONS];
} held[HELD_SLOTS];

/* A userfaultfd that also sees the kernel's own faults (KVM's, into guest
 * RAM): from the system call (privileged, or vm.unprivileged_userfaultfd=1)
 * or /dev/userfaultfd (Linux 6.1+, as its permissions say). One opened
 * with UFFD_USER_MODE_ONLY would not do: KVM_RUN would fail with EFAULT. */
static int open_userfaultfd(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
#ifdef USERFAULTFD_IOC_NEW
    if (fd < 0) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev >= 0) {
            fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
            close(dev);
        }
    }
#endif
    return fd;
}

bool ram_faults_supported(void)
{
    int fd = open_userfaultfd();
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

/* Places len bytes at dst: copied from src, or zero pages (src NULL).
 * A page already there (EEXIST) is left as it is, and whoever waits for
 * it woken: EEXIST says the page is there, not that its waiters were
 * woken (the kernel's own userfaultfd tests wake after it too). */
static int place(int uffd, uint8_t *dst, const uint8_t *src, size_t len)
{
    bool existed = false;

    if (ram_faults_placed)
        ram_faults_placed(dst, len);
    for (size_t done = 0; done < len;) {
        int64_t moved;
        int r;
        if (src) {
            struct uffdio_copy c = {.dst = (uintptr_t)(dst + done),
                                    .src = (uintptr_t)(src + done), .len = len - done};
            r = ioctl(uffd, UFFDIO_COPY, &c);
            moved = c.copy;
        } else {
            struct uffdio_zeropage z = {.range = {(uintptr_t)(dst + done), len - done}};
            r = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
            moved = z.zeropage;
        }
        if (r == 0)
            break;
        if (moved > 0) {
            done += (size_t)moved;
        } else if (errno == EEXIST) {
            done += PAGE;
            existed = true;
        } else if (errno != EAGAIN) {
            return -errno;
        }
    }
    if (existed) {
        struct uffdio_range all = {(uintptr_t)dst, len};
        ioctl(uffd, UFFDIO_WAKE, &all);
    }
    return 0;
}

/* Chunk i's windows: a bit each. */
static uint32_t all_windows(const struct ram_faults *f, size_t i)
{
    uint64_t at;
    size_t len;
    uint8_t *host;

    bundle_memory_image_place(f->img, i, &at, &len, &host);
    unsigned n = (unsigned)((len + WINDOW - 1) / WINDOW);
    return n >= 32 ? UINT32_MAX : (1u << n) - 1;
}

/* Serving failed for good: said once, to whoever ram_faults_when_broken()
 * named (the machine, which stops its VM), on this thread, before any
 * thread waiting for a page is let go; kept for one not named yet. The
 * message and the callback are read in one critical section with the
 * naming, so exactly one of the two calls it. */
static void report_broken(struct ram_faults *f, const char *message)
{
    void (*tell)(void *, const char *);

    if (atomic_exchange(&f->reported, true))
        return;
    pthread_mutex_lock(&f->lock);
    snprintf(f->broken_message, sizeof(f->broken_message), "%s",
             message && *message ? message : "the guest's memory could not be served");
    tell = f->on_broken;
    pthread_mutex_unlock(&f->lock);
    if (tell)
        tell(f->broken_opaque, f->broken_message);
}

void ram_faults_when_broken(struct ram_faults *f, void (*fn)(void *opaque, const char *message),
                            void *opaque)
{
    bool already;

    pthread_mutex_lock(&f->lock);
    f->on_broken = fn;
    f->broken_opaque = opaque;
    already = f->broken_message[0] != 0;
    pthread_mutex_unlock(&f->lock);
    if (already && fn)
        fn(opaque, f->broken_message);
}

/* r: a chunk's check or decoding (<0: it failed, message set), said once
 * when it failed (report_broken: the VM stops): none of a chunk that
 * fails its check is ever placed. */
static int refused(struct ram_faults *f, int r)
{
    if (r < 0) {
        if (f->cache_fd >= 0)
            unlink(f->tmp_path); /* no cache of RAM that cannot be whole */
        report_broken(f, err_msg());
    }
    return r;
}

/* Chunk i begun into slot d: read and checked, nothing decoded yet. */
static int begin_checked(struct ram_faults *f, struct decoded *d, size_t i)
{
    if (ram_faults_decoding)
        ram_faults_decoding(i);
    d->chunk = f->chunks;
    uint64_t start = trace_now_us();
    int r = refused(f, bundle_memory_image_begin(f->img, d->decoder, i, d->bytes, &d->zero));
    trace_add_count(TRACE_FAULT_CHECK_US, trace_now_us() - start);
    if (r == 0)
        r = refused(f, bundle_chunk_decode_to(d->decoder, 0, &d->ready));
    if (r == 0)
        d->chunk = i;
    return r;
}

/* Slot d's chunk decoded at least up to upto (said when it fails). */
static int decoded_to(struct ram_faults *f, struct decoded *d, size_t upto)
{
    return d->ready >= upto ? 0 : refused(f, bundle_chunk_decode_to(d->decoder, upto, &d->ready));
}

/* The windows of chunk i in want, claimed and placed from bytes (chunk i
 * decoded; NULL: zero), each run of adjacent ones in one call: those
 * nobody claimed yet, or (overtake: the fault thread's) all of them, so a
 * fault never waits for a window the idle fill claimed and has not placed. */
static int place_windows(struct ram_faults *f, size_t i, uint32_t want, const uint8_t *bytes,
                         bool overtake)
{
    uint64_t at;
    size_t len;
    uint8_t *host;
    uint32_t unclaimed = want & ~atomic_fetch_or(&f->claimed[i], want);
    uint32_t mine = overtake ? want : unclaimed;

    bundle_memory_image_place(f->img, i, &at, &len, &host);
    for (unsigned w = 0; w < WINDOWS_MAX && mine >> w;) {
        if (!(mine >> w & 1)) {
            w++;
            continue;
        }
        unsigned end = w;
        while (end < WINDOWS_MAX && mine >> end & 1)
            end++;
        size_t from = (size_t)w * WINDOW, to = (size_t)end * WINDOW < len ? (size_t)end * WINDOW : len;
        int r = place(f->uffd, host + from, bytes ? bytes + from : NULL, to - from);
        if (r < 0)
            return err_set(-r, "placing memory chunk %zu", i);
        uint32_t run = (end >= 32 ? UINT32_MAX : (1u << end) - 1) & ~((1u << w) - 1);
        uint32_t first_placed = run & ~atomic_fetch_or(&f->placed[i], run);
        atomic_fetch_sub(&f->windows_left, (size_t)__builtin_popcount(first_placed));
        w = end;
    }
    return 0;
}

/* The fault thread lets go of its slot k (decoding, or asked to): the
 * chunk in it goes to the fill with the slot, and a spare takes its place;
 * with none spare (the fill behind), the chunk is dropped (the fill decodes
 * it itself). False: kept (keep_if_no_spare). */
static bool let_go_of_slot(struct ram_faults *f, unsigned k, bool keep_if_no_spare)
{
    struct decoded *d = f->decoded[k], *spare = queue_take(&f->spare);
    size_t i = d->chunk;

    if (!spare && keep_if_no_spare)
        return false;
    if (spare) {
        queue_put(&f->handed, d); /* before it is no longer held: the fill never loses it */
        f->decoded[k] = spare;
    }
    f->decoded[k]->chunk = f->chunks;
    atomic_store(&f->held[i], 0);
    return true;
}

/* Chunk i in a slot of the fault thread's: kept, or begun now in the slot
 * least recently used. NULL: it failed its check (said). */
static struct decoded *decoded_chunk(struct ram_faults *f, size_t i)
{
    unsigned lru = 0;

    for (unsigned k = 0; k < DECODED_SLOTS; k++) {
        if (f->decoded[k]->chunk == i) {
            f->decoded[k]->used = ++f->uses;
            return f->decoded[k];
        }
        if (f->decoded[k]->used < f->decoded[lru]->used)
            lru = k;
    }
    if (f->decoded[lru]->chunk != f->chunks)
        let_go_of_slot(f, lru, false);
    struct decoded *d = f->decoded[lru];
    atomic_store(&f->held[i], 1);
    if (begin_checked(f, d, i) < 0) {
        atomic_store(&f->held[i], 0);
        return NULL;
    }
    trace_set_count(TRACE_FAULTED_CHUNKS, atomic_fetch_add(&f->faulted, 1) + 1);
    d->used = ++f->uses;
    return d;
}

/* What the fill asked for: the chunks the fault thread holds, as many as
 * spare slots allow (it asks again). */
static void hand_over_held(struct ram_faults *f)
{
    if (!atomic_exchange(&f->wants_held, false))
        return;
    for (unsigned k = 0; k < DECODED_SLOTS; k++)
        if (f->decoded[k]->chunk != f->chunks && !let_go_of_slot(f, k, true))
            return;
}

/* The chunk holding addr, or chunks when it is none of ours. */
static size_t chunk_of(const struct ram_faults *f, uint64_t addr)
{
    for (unsigned r = 0; r < f->region_count; r++) {
        uintptr_t host = (uintptr_t)f->regions[r].host;
        if (addr >= host && addr - host < f->regions[r].size)
            return f->first_chunk[r] + (addr - host) / f->chunk_size[r];
    }
    return f->chunks;
}

/* Page number of addr (in one of the regions) in the RAM laid end to end. */
static uint64_t page_number(const struct ram_faults *f, uint64_t addr)
{
    for (unsigned r = 0; r < f->region_count; r++) {
        uintptr_t host = (uintptr_t)f->regions[r].host;
        if (addr >= host && addr - host < f->regions[r].size)
            return f->region_first_page[r] + (addr - host) / PAGE;
    }
    return 0; /* (never: chunk_of found it) */
}

/* While recording: the page at addr alone placed from slot d (its chunk,
 * decoded past it; host: where the chunk lies) and written down, so the
 * guest's next touch of a neighbour is a fault too: the set holds what
 * the guest touched, not what was placed around it. */
static int place_recorded_page(struct ram_faults *f, const struct decoded *d, const uint8_t *host,
                               uint64_t addr)
{
    uint64_t page = page_number(f, addr);
    f->touched_pages[page / 64] |= 1ull << (page % 64);
    size_t off = (size_t)(addr - (uintptr_t)host);
    int r = place(f->uffd, (uint8_t *)(uintptr_t)addr, d->zero ? NULL : d->bytes + off, PAGE);
    return r < 0 ? err_set(-r, "placing a page of memory chunk %zu", d->chunk) : 0;
}

/* Recording ends (asked, or its time is up): the fill may go on. */
static void end_recording_when_due(struct ram_faults *f)
{
    if (atomic_load(&f->recording) &&
        (atomic_load(&f->record_asked) || trace_now_us() >= f->record_until_us))
        atomic_store(&f->recording, false);
}

/* The page at addr, in chunk i, touched: its window placed (waking the
 * guest), the rest of the chunk left to the fill, which does it next. */
static int serve_page(struct ram_faults *f, size_t i, uint64_t addr)
{
    uint64_t at;
    size_t len;
    uint8_t *host;

    bundle_memory_image_place(f->img, i, &at, &len, &host);
    unsigned w = (unsigned)((addr - (uintptr_t)host) / WINDOW);
    atomic_store(&f->touched[i], 1);
    if (atomic_load(&f->placed[i]) >> w & 1) { /* placed after this fault was queued */
        struct uffdio_range page = {addr, PAGE};
        ioctl(f->uffd, UFFDIO_WAKE, &page);
        return 0;
    }
    uint64_t start = trace_now_us(), cpu = trace_thread_cpu_us();
    struct decoded *d = decoded_chunk(f, i);
    size_t window_end = (size_t)(w + 1) * WINDOW;
    if (!d || decoded_to(f, d, window_end < len ? window_end : len) < 0)
        return -EBADMSG;
    uint64_t placing = trace_now_us(), placing_cpu = trace_thread_cpu_us();
    int r = atomic_load(&f->recording) ? place_recorded_page(f, d, host, addr)
                                       : place_windows(f, i, 1u << w, d->zero ? NULL : d->bytes, true);
    uint64_t end = trace_now_us(), end_cpu = trace_thread_cpu_us();
    trace_add_count(TRACE_FAULT_PLACE_US, end - placing);
    trace_add_count(TRACE_FAULT_PLACE_CPU_US, end_cpu - placing_cpu);
    trace_add_count(TRACE_FAULT_SERVE_US, end - start);
    trace_add_count(TRACE_FAULT_SERVE_CPU_US, end_cpu - cpu);
    trace_add_count(TRACE_FAULTED_WINDOWS, 1);
    return r;
}

static int serve_faults(struct ram_faults *f)
{
    struct uffd_msg msgs[MESSAGES];
    ssize_t n = read(f->uffd, msgs, sizeof(msgs));

    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : err_set(errno, "reading guest faults");
    for (size_t k = 0; k < (size_t)n / sizeof(msgs[0]); k++) {
        if (msgs[k].event != UFFD_EVENT_PAGEFAULT)
            continue;
        uint64_t addr = msgs[k].arg.pagefault.address & ~(uint64_t)(PAGE - 1);
        size_t i = chunk_of(f, addr);
        int r = i == f->chunks ? 0 : serve_page(f, i, addr);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The regions are plain RAM again: every thread waiting for a page of
 * them wakes (to a zero page where nothing was placed), and no touch waits
 * any more. Only system calls: an exit handler calls it too. */
static void let_go(int uffd, const struct uffdio_range *ranges, unsigned count)
{
    for (unsigned r = 0; r < count; r++) {
        struct uffdio_range range = ranges[r];
        ioctl(uffd, UFFDIO_UNREGISTER, &range);
    }
}

static void unregister(struct ram_faults *f)
{
    struct held_ram *h = &held[f->held_slot];
    let_go(f->uffd, h->ranges, h->count);
}

/* exit() from any thread (a fatal error, the end of main) while a server
 * holds RAM: its regions are let go before the other threads are ended,
 * so no exit handler or ASan's leak check waits for a vCPU that waits for
 * a chunk. (_exit and SIGKILL leave this to the kernel: every thread
 * waiting for a page sleeps killable or interruptible, and the uffd, only
 * ever in this process's own descriptor table, is released with its last
 * thread, which wakes anything else, such as KVM's async page fault
 * worker, that still waits in it.) */
static void let_go_at_exit(void)
{
    for (unsigned i = 0; i < HELD_SLOTS; i++) {
        int uffd = atomic_load(&held[i].uffd_plus_1) - 1;
        if (uffd >= 0)
            let_go(uffd, held[i].ranges, held[i].count);
    }
}

static void exit_lets_go(void)
{
    atexit(let_go_at_exit);
}

/* Serving failed for good (message set): the guest cannot go on. Said
 * first (report_broken: the VM is told to stop, its vCPUs kicked), then
 * the regions are let go, so nothing waits for a chunk nobody will place:
 * a vCPU woken to a zero page there finds its kick pending and leaves
 * KVM before it enters the guest again, and the VM stops the normal way
 * (vCPUs joined, disks flushed and closed). */
static void give_up(struct ram_faults *f)
{
    report_broken(f, err_msg());
    unregister(f);
}

/* The cache file named when whole, else removed. */
static void close_cache_file(struct ram_faults *f, bool whole)
{
    if (f->cache_fd < 0)
        return;
    if (!whole || f->cache_failed || fdatasync(f->cache_fd) < 0 ||
        rename(f->tmp_path, f->cache_path) < 0)
        unlink(f->tmp_path);
    close(f->cache_fd);
    f->cache_fd = -1;
}

/* Ends the work of both threads with r (<0: given up, message set; while
 * stopping, a chunk the stop took from under a thread, no failure). */
static void conclude(struct ram_faults *f, int r)
{
    if (r < 0 && !atomic_load(&f->stopping) && !atomic_exchange(&f->gave_up, true))
        give_up(f);
    pthread_mutex_lock(&f->lock);
    if (!f->done || r < 0)
        f->result = r;
    f->done = true;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void *fault_main(void *arg)
{
    struct ram_faults *f = arg;
    struct pollfd p = {.fd = f->uffd, .events = POLLIN};

    confine_thread(CONFINE_MEMORY, "ram-faults");
    if (ram_faults_serve_gate)
        sem_wait(ram_faults_serve_gate);
    /* The flags are looked at between waits of at most 20 ms. */
    while (!atomic_load(&f->stopping) && !atomic_load(&f->finished) && !atomic_load(&f->gave_up)) {
        int r = poll(&p, 1, 20) > 0 && (p.revents & POLLIN) ? serve_faults(f) : 0;
        end_recording_when_due(f);
        hand_over_held(f);
        /* Once finished, the regions are unregistered under it (and every
         * chunk is in): a failed placing is no failure then. */
        if (r < 0 && !atomic_load(&f->finished))
            conclude(f, r);
    }
    return NULL;
}

/* The pages the guest touched while recording, in runs, as a
 * provisional working set (the next start records which of them it
 * touches as well, and which it wrote). */
static void write_touched_pages(struct ram_faults *f)
{
    uint64_t pages = f->mem.total / PAGE;
    struct working_set_chunk *list = calloc(pages / 2 + 2, sizeof(*list));
    size_t n = 0;

    for (uint64_t p = 0; list && p < pages; p++) {
        if (!(f->touched_pages[p / 64] >> (p % 64) & 1))
            continue;
        if (n && list[n - 1].first_page + list[n - 1].pages == p)
            list[n - 1].pages++;
        else
            list[n++] = (struct working_set_chunk){p, 1};
    }
    if (list && n && working_set_write_chunks(f->working_set, &f->mem, list, n) < 0)
        err_clear(); /* only later starts lose */
    free(list);
}

/* The chunks the guest faulted in, for the next start to prefetch (when
 * its touches were not recorded). */
static void write_working_set(struct ram_faults *f)
{
    struct working_set_chunk *list = f->working_set && !f->touched_pages
                                         ? calloc(f->chunks + 1, sizeof(*list))
                                         : NULL;
    size_t n = 0;

    for (size_t i = 0; list && i < f->chunks; i++) {
        uint64_t at;
        size_t len;
        uint8_t *host;
        if (!atomic_load(&f->touched[i]))
            continue;
        bundle_memory_image_place(f->img, i, &at, &len, &host);
        list[n++] = (struct working_set_chunk){at / PAGE, (uint32_t)(len / PAGE)};
    }
    if (list && n && working_set_write_chunks(f->working_set, &f->mem, list, n) < 0)
        err_clear(); /* only later starts lose */
    free(list);
}

/* Chunk i's windows placed where nobody did, from bytes (NULL: zero),
 * and written to the cache file. */
static int place_rest(struct ram_faults *f, size_t i, const uint8_t *bytes)
{
    uint64_t at;
    size_t len;
    uint8_t *host;
    int r = 0;

    /* A window at a time: a touch of a window claimed here and not yet
     * placed is served by the fault thread too. */
    for (uint32_t w = 0, all = all_windows(f, i); r == 0 && w < WINDOWS_MAX && all >> w; w++)
        r = place_windows(f, i, (1u << w) & all, bytes, false);
    bundle_memory_image_place(f->img, i, &at, &len, &host);
    /* A cache that cannot be written costs only later starts. */
    if (r == 0 && bytes && f->cache_fd >= 0 && !f->cache_failed &&
        disk_pwrite_all(f->cache_fd, bytes, len, (off_t)at) < 0)
        f->cache_failed = true;
    return r;
}

static void mark_filled(struct ram_faults *f, size_t i)
{
    f->filled[i] = 1;
    f->filled_n++;
}

/* Chunk i decoded here (the fill's own buffer) and done. */
static int fill_chunk(struct ram_faults *f, size_t i)
{
    bool zero;
    bool caching = f->cache_fd >= 0 && !f->cache_failed;

    mark_filled(f, i);
    if (!caching && !(all_windows(f, i) & ~atomic_load(&f->claimed[i])))
        return 0; /* nothing left to do with it */
    if (ram_faults_decoding)
        ram_faults_decoding(i);
    int r = refused(f, bundle_memory_image_decode(f->img, f->fill_decoder, i, f->fill_buffer, &zero));
    return r < 0 ? r : place_rest(f, i, zero ? NULL : f->fill_buffer);
}

/* A chunk the fault thread handed over: decoded on from where it stopped
 * and done; the slot back to it. */
static int fill_handed(struct ram_faults *f, struct decoded *d)
{
    uint64_t at;
    size_t len;
    uint8_t *host;
    size_t i = d->chunk;
    int r = 0;

    bundle_memory_image_place(f->img, i, &at, &len, &host);
    if (!f->filled[i]) {
        mark_filled(f, i);
        r = decoded_to(f, d, len);
        if (r == 0)
            r = place_rest(f, i, d->zero ? NULL : d->bytes);
    }
    d->chunk = f->chunks;
    queue_put(&f->spare, d);
    return r;
}

/* The next chunk the fill does itself: the first not done and not held by
 * the fault thread (chunks: none). */
static size_t next_to_fill(struct ram_faults *f)
{
    while (f->fill_from < f->chunks && f->filled[f->fill_from])
        f->fill_from++;
    for (size_t i = f->fill_from; i < f->chunks; i++)
        if (!f->filled[i] && !atomic_load(&f->held[i]))
            return i;
    return f->chunks;
}

/* One step of the fill: a chunk handed over (the guest touched it: it
 * touches it again), else one in order; with only chunks the fault
 * thread holds left, it is asked for them. 1: every chunk done. */
static int fill_step(struct ram_faults *f)
{
    struct decoded *d = queue_take(&f->handed);
    size_t i;

    if (d)
        return fill_handed(f, d);
    if ((i = next_to_fill(f)) < f->chunks)
        return fill_chunk(f, i);
    if (f->filled_n == f->chunks)
        return 1;
    atomic_store(&f->wants_held, true);
    usleep(1000);
    return 0;
}

static void *fill_main(void *arg)
{
    struct ram_faults *f = arg;
    struct sched_param none = {0};
    int r = 0;

    confine_thread(CONFINE_MEMORY, "ram-fill");
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &none);
    if (ram_faults_fill_gate)
        sem_wait(ram_faults_fill_gate);
    /* Nothing placed behind the guest while its touches are written down:
     * each would be one fewer. */
    while (atomic_load(&f->recording)) {
        if (atomic_load(&f->stopping) || atomic_load(&f->gave_up))
            return NULL;
        usleep(1000);
    }
    if (f->touched_pages && f->working_set)
        write_touched_pages(f);
    /* Only this thread writes the cache file. */
    while (r == 0) {
        if (atomic_load(&f->stopping) || atomic_load(&f->gave_up))
            return NULL;
        /* Waited for (a save, a VM that stopped): no guest to leave the
         * CPU to any more, so no reason to take only what others leave. */
        if (atomic_exchange(&f->hurry, false))
            pthread_setschedparam(pthread_self(), SCHED_OTHER, &none);
        r = fill_step(f);
    }
    if (r < 0) {
        conclude(f, r);
        return NULL;
    }
    /* A window the fault thread claimed is placed in a moment: the
     * regions stay registered until it is. */
    while (atomic_load(&f->windows_left) > 0) {
        if (atomic_load(&f->stopping) || atomic_load(&f->gave_up))
            return NULL;
        usleep(1000);
    }
    /* Every chunk in: the regions are plain RAM again, the cache named. */
    atomic_store(&f->finished, true);
    unregister(f);
    close_cache_file(f, true);
    write_working_set(f);
    conclude(f, 0);
    return NULL;
}

/* The slots, each with room for the largest chunk: the fault thread's
 * first, the rest spare. */
static int make_slots(struct ram_faults *f, size_t largest)
{
    for (unsigned k = 0; k < SLOTS; k++) {
        struct decoded *d = &f->slots[k];
        *d = (struct decoded){.chunk = f->chunks, .bytes = aligned_alloc(PAGE, largest)};
        if (!d->bytes || bundle_chunk_decoder_new(&d->decoder) < 0)
            return err_set(ENOMEM, "guest memory server");
        if (k < DECODED_SLOTS)
            f->decoded[k] = d;
        else
            queue_put(&f->spare, d);
    }
    return 0;
}

/* The chunk tables: each region's first chunk and chunk size (all but a
 * region's last are whole), and a buffer for the largest. */
static int index_chunks(struct ram_faults *f, const struct guest_memory *mem)
{
    size_t largest = PAGE;

    f->region_count = mem->count;
    memcpy(f->regions, mem->regions, sizeof(mem->regions[0]) * mem->count);
    for (unsigned r = 0; r < mem->count; r++)
        f->first_chunk[r] = f->chunks;
    for (size_t i = 0; i < f->chunks; i++) {
        uint64_t at;
        size_t len;
        uint8_t *host;
        bundle_memory_image_place(f->img, i, &at, &len, &host);
        for (unsigned r = 0; r < mem->count; r++)
            if (host == mem->regions[r].host) {
                f->first_chunk[r] = i;
                f->chunk_size[r] = len;
            }
        if ((uintptr_t)host % PAGE || len % PAGE || len > (size_t)WINDOW * WINDOWS_MAX)
            return err_plain(EINVAL, "memory chunk %zu is not whole pages", i);
        largest = len > largest ? len : largest;
    }
    f->claimed = calloc(f->chunks ? f->chunks : 1, sizeof(*f->claimed));
    f->placed = calloc(f->chunks ? f->chunks : 1, sizeof(*f->placed));
    f->touched = calloc(f->chunks ? f->chunks : 1, sizeof(*f->touched));
    f->held = calloc(f->chunks ? f->chunks : 1, sizeof(*f->held));
    f->filled = calloc(f->chunks ? f->chunks : 1, sizeof(*f->filled));
    f->mem = *mem;
    f->fill_buffer = aligned_alloc(PAGE, largest);
    if (!f->claimed || !f->placed || !f->touched || !f->held || !f->filled || !f->fill_buffer)
        return err_set(ENOMEM, "guest memory server");
    for (size_t i = 0; i < f->chunks; i++)
        f->windows_left += (size_t)__builtin_popcount(all_windows(f, i));
    int r = make_slots(f, largest);
    return r < 0 ? r : bundle_chunk_decoder_new(&f->fill_decoder);
}

static int open_cache_file(struct ram_faults *f, const char *path, uint64_t total)
{
    if (!path)
        return 0;
    if (!(f->cache_path = strdup(path)) || asprintf(&f->tmp_path, "%s.tmp-%d", path, (int)getpid()) < 0)
        return err_set(ENOMEM, "memory cache");
    f->cache_fd = file_create_fresh(f->tmp_path, 0600);
    if (f->cache_fd < 0)
        err_clear();
    else if (ftruncate(f->cache_fd, (off_t)total) < 0)
        close_cache_file(f, false);
    return 0; /* no cache file: only later starts lose */
}

/* Fresh RAM, nothing present (anything written meanwhile is dropped: the
 * saved RAM replaces it whole, as a load would). */
static int fresh_regions(struct ram_faults *f)
{
    for (unsigned r = 0; r < f->region_count; r++)
        if (madvise(f->regions[r].host, f->regions[r].size, MADV_DONTNEED) < 0)
            return -EOPNOTSUPP;
    return 0;
}

/* The chunk holding byte at of the RAM laid end to end (chunks lie in
 * that order). */
static size_t chunk_at(const struct ram_faults *f, uint64_t at)
{
    size_t lo = 0, hi = f->chunks;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t mid_at;
        size_t len;
        uint8_t *host;
        bundle_memory_image_place(f->img, mid, &mid_at, &len, &host);
        if (mid_at <= at)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* The chunks (not zero: those are left to faults) holding the known
 * working set's pages, each once, in order, into list; their count. Each
 * range marks where its chunks begin and end (starts[] counts the ranges
 * open at a chunk): however many ranges, and however large, one pass. */
static size_t known_chunks(const struct ram_faults *f, const struct working_set_chunk *known,
                           size_t count, int64_t *starts, size_t *list)
{
    size_t n = 0;
    int64_t open = 0;

    for (size_t k = 0; k < count && f->chunks; k++) {
        uint64_t from = known[k].first_page * PAGE, last = from + (uint64_t)known[k].pages * PAGE - 1;
        starts[chunk_at(f, from)]++;
        starts[chunk_at(f, last) + 1]--;
    }
    for (size_t i = 0; i < f->chunks; i++)
        if ((open += starts[i]) > 0 && !bundle_memory_image_zero(f->img, i))
            list[n++] = i;
    return n;
}

static int by_first_page(const void *a, const void *b)
{
    uint64_t x = ((const struct working_set_chunk *)a)->first_page;
    uint64_t y = ((const struct working_set_chunk *)b)->first_page;
    return x < y ? -1 : x > y;
}

/* The known working set's pages, a bit each, in a bitmap of the RAM laid
 * end to end (*out, freed by the caller; its ranges checked to lie in
 * it): each page set once, however many ranges overlap (sorted first). */
static int known_page_bits(const struct ram_faults *f, const struct working_set_chunk *known,
                           size_t count, uint64_t **out)
{
    struct working_set_chunk *sorted = malloc((count ? count : 1) * sizeof(*sorted));
    uint64_t *bits = calloc(f->mem.total / PAGE / 64 + 1, sizeof(*bits)), done = 0;

    if (!sorted || !bits) {
        free(sorted);
        free(bits);
        return err_set(ENOMEM, "guest memory server");
    }
    memcpy(sorted, known, count * sizeof(*sorted));
    qsort(sorted, count, sizeof(*sorted), by_first_page);
    for (size_t k = 0; k < count; k++)
        for (uint64_t p = sorted[k].first_page > done ? sorted[k].first_page : done;
             p < sorted[k].first_page + sorted[k].pages; p++, done = p)
            bits[p / 64] |= 1ull << (p % 64);
    free(sorted);
    *out = bits;
    return 0;
}

/* Chunk i's pages that bits (known_page_bits) names. */
static struct bundle_chunk_pages pages_of_chunk(const struct ram_faults *f, const uint64_t *bits,
                                                size_t i)
{
    struct bundle_chunk_pages want = {{0}};
    uint64_t at;
    size_t len;
    uint8_t *host;

    bundle_memory_image_place(f->img, i, &at, &len, &host);
    for (uint64_t p = 0, first = at / PAGE; p < len / PAGE; p++)
        if (bits[(first + p) / 64] >> ((first + p) % 64) & 1)
            want.bits[p / 64] |= 1ull << (p % 64);
    return want;
}

/* How many pages want names (pages_of_chunk() names none past its chunk). */
static size_t pages_named(const struct bundle_chunk_pages *want)
{
    size_t n = 0;
    for (size_t w = 0; w < sizeof(want->bits) / sizeof(want->bits[0]); w++)
        n += (size_t)__builtin_popcountll(want->bits[w]);
    return n;
}

/* Of each listed chunk, the known pages (ram_faults_prefill_pages), or
 * NULL: every listed chunk whole. */
static int known_pages(const struct ram_faults *f, const struct working_set_chunk *known,
                       size_t count, const size_t *list, size_t n,
                       struct bundle_chunk_pages **out)
{
    uint64_t *bits = NULL;
    *out = NULL;
    if (!ram_faults_prefill_pages || !n)
        return 0;
    int r = known_page_bits(f, known, count, &bits);
    if (r == 0 && !(*out = calloc(n, sizeof(**out))))
        r = err_set(ENOMEM, "guest memory server");
    for (size_t k = 0; r == 0 && k < n; k++)
        (*out)[k] = pages_of_chunk(f, bits, list[k]);
    free(bits);
    return r;
}

/* A known working set (the pages a later start touches) decoded straight
 * into place before anything is registered or the guest runs: the guest
 * finds those pages there and waits for no fault of theirs; one pass, on
 * a few threads, no placing. Each chunk holding some of it is read and
 * checked whole, and only the set's pages of it placed (recorded from the
 * guest's own touches, a few of a chunk's 16): a chunk placed whole counts
 * as placed for both threads, the rest of one placed in part is left to
 * them (a page there is skipped: UFFDIO_COPY never replaces one). Neither
 * counts as filled: the fill decodes them again behind the guest for the
 * cache file (the guest may have written RAM by then). A chunk that fails
 * its check fails the start. */
static int load_known(struct ram_faults *f, const struct working_set_chunk *known, size_t count)
{
    int64_t *starts = calloc(f->chunks + 1, sizeof(*starts));
    size_t *list = calloc(f->chunks ? f->chunks : 1, sizeof(*list)), n = 0, pages = 0;
    struct bundle_chunk_pages *want = NULL;
    uint64_t start = trace_now_us();
    int r = starts && list ? 0 : err_set(ENOMEM, "guest memory server");

    if (r == 0 && (n = known_chunks(f, known, count, starts, list)) > 0)
        r = known_pages(f, known, count, list, n, &want);
    if (r == 0 && n)
        r = bundle_memory_image_load(f->img, list, want, n);
    for (size_t k = 0; r == 0 && k < n; k++) {
        uint32_t all = all_windows(f, list[k]);
        uint64_t at;
        size_t len;
        uint8_t *host;
        bundle_memory_image_place(f->img, list[k], &at, &len, &host);
        if (want && pages_named(&want[k]) < len / PAGE) { /* placed in part */
            pages += pages_named(&want[k]);
            continue;
        }
        pages += len / PAGE;
        atomic_store(&f->claimed[list[k]], all);
        atomic_store(&f->placed[list[k]], all);
        f->windows_left -= (size_t)__builtin_popcount(all);
    }
    if (r == 0) {
        trace_set_count(TRACE_PREFILLED_CHUNKS, n);
        trace_set_count(TRACE_PREFILLED_PAGES, pages);
        trace_set_count(TRACE_PREFILL_US, trace_now_us() - start);
    }
    free(want);
    free(starts);
    free(list);
    return r;
}

/* The regions registered: a touch of a page not present waits for us. */
static int register_regions(struct ram_faults *f)
{
    struct uffdio_api api = {.api = UFFD_API};
    uint64_t needed = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);

    if (ioctl(f->uffd, UFFDIO_API, &api) < 0)
        return -EOPNOTSUPP;
    for (unsigned r = 0; r < f->region_count; r++) {
        struct uffdio_register reg = {
            .range = {(uintptr_t)f->regions[r].host, f->regions[r].size},
            .mode = UFFDIO_REGISTER_MODE_MISSING};
        if (ioctl(f->uffd, UFFDIO_REGISTER, &reg) < 0 || (reg.ioctls & needed) != needed)
            return -EOPNOTSUPP;
    }
    return 0;
}

/* The regions written down for let_go_at_exit, in a free slot. */
static int hold(struct ram_faults *f)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, exit_lets_go);
    for (unsigned i = 0; i < HELD_SLOTS; i++) {
        int free_slot = 0;
        if (!atomic_compare_exchange_strong(&held[i].uffd_plus_1, &free_slot, -1))
            continue; /* taken (-1: being filled in) */
        held[i].count = f->region_count;
        for (unsigned r = 0; r < f->region_count; r++)
            held[i].ranges[r] = (struct uffdio_range){(uintptr_t)f->regions[r].host,
                                                      f->regions[r].size};
        atomic_store(&held[i].uffd_plus_1, f->uffd + 1);
        f->held_slot = i;
        return 0;
    }
    return -EOPNOTSUPP; /* more first starts at once than a VMM makes */
}

static void release(struct ram_faults *f)
{
    if (f->held_slot < HELD_SLOTS)
        atomic_store(&held[f->held_slot].uffd_plus_1, 0);
    close_cache_file(f, false);
    if (f->uffd >= 0)
        close(f->uffd);
    bundle_memory_image_free(f->img);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f->claimed);
    free(f->placed);
    free(f->touched);
    free(f->held);
    free(f->filled);
    free(f->touched_pages);
    free(f->working_set);
    for (unsigned k = 0; k < SLOTS; k++) {
        free(f->slots[k].bytes);
        bundle_chunk_decoder_free(f->slots[k].decoder);
    }
    free(f->fill_buffer);
    bundle_chunk_decoder_free(f->fill_decoder);
    free(f->cache_path);
    free(f->tmp_path);
    free(f);
}

/* The guest's touches written down from its first fault on (the fill
 * waits meanwhile), for at most RECORD_MS. */
static int start_recording(struct ram_faults *f)
{
    uint64_t first = 0;
    for (unsigned r = 0; r < f->region_count; r++) {
        f->region_first_page[r] = first;
        first += f->regions[r].size / PAGE;
    }
    f->touched_pages = calloc(first / 64 + 1, sizeof(*f->touched_pages));
    if (!f->touched_pages)
        return err_set(ENOMEM, "working set");
    f->record_until_us = trace_now_us() + RECORD_MS * 1000ull;
    atomic_store(&f->recording, true);
    return 0;
}

int ram_faults_start(struct bundle_memory_image *img, const struct guest_memory *mem,
                     const char *cache_path, const char *working_set,
                     const struct working_set_chunk *known, size_t known_count,
                     struct ram_faults **out)
{
    struct ram_faults *f = calloc(1, sizeof(*f));
    int r;

    if (!f) {
        bundle_memory_image_free(img);
        return err_set(ENOMEM, "guest memory server");
    }
    f->img = img;
    f->chunks = bundle_memory_image_chunks(img);
    f->cache_fd = -1;
    f->held_slot = HELD_SLOTS;
    f->uffd = open_userfaultfd();
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    r = f->uffd < 0 ? -EOPNOTSUPP : index_chunks(f, mem);
    if (r == 0)
        r = hold(f);
    if (r == 0)
        r = fresh_regions(f);
    if (r == 0 && known_count) { /* no huge page may make the rest present as zero */
        guest_memory_huge_pages(&f->mem, false);
        r = load_known(f, known, known_count);
    }
    if (r == 0)
        r = register_regions(f);
    if (known_count) /* registered: a page not present waits for us, huge or not */
        guest_memory_huge_pages(&f->mem, true);
    if (r == 0)
        r = open_cache_file(f, cache_path, mem->total);
    if (r == 0 && working_set && !(f->working_set = strdup(working_set)))
        r = err_set(ENOMEM, "working set");
    if (r == 0 && working_set && ram_faults_record_pages)
        r = start_recording(f);
    if (r == 0 && ram_faults_fill_behind) {
        r = -confine_thread_start(&f->fill_thread, CONFINE_MEMORY, fill_main, f);
        f->fill_started = r == 0;
    }
    if (r == 0)
        r = -confine_thread_start(&f->fault_thread, CONFINE_MEMORY, fault_main, f);
    if (r < 0) { /* what the fill placed meanwhile is the saved RAM too */
        atomic_store(&f->stopping, true);
        if (f->fill_started)
            pthread_join(f->fill_thread, NULL);
        if (f->held_slot < HELD_SLOTS)
            unregister(f);
        release(f);
        return r;
    }
    *out = f;
    return 0;
}

void ram_faults_record_now(struct ram_faults *f)
{
    atomic_store(&f->record_asked, true);
}

int ram_faults_complete(struct ram_faults *f)
{
    atomic_store(&f->record_asked, true); /* the fill waits for no recording */
    atomic_store(&f->hurry, true);
    pthread_mutex_lock(&f->lock);
    while (!f->done)
        pthread_cond_wait(&f->cond, &f->lock);
    int r = f->result;
    pthread_mutex_unlock(&f->lock);
    return r < 0 ? err_plain(-r, "the guest's memory could not be served whole") : 0;
}

/* The fault thread ends first (within its 20 ms wait) and the regions
 * are let go at once: a thread still waiting wakes (to a zero page) now,
 * not after the chunk the fill is decoding; the fill's placing fails
 * then, which the stop takes for no failure. */
void ram_faults_stop(struct ram_faults *f)
{
    if (!f)
        return;
    atomic_store(&f->stopping, true);
    pthread_join(f->fault_thread, NULL);
    if (!atomic_load(&f->finished))
        unregister(f);
    if (f->fill_started)
        pthread_join(f->fill_thread, NULL);
    release(f);
}
