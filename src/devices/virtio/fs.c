/* virtio-fs (virtio 1.2, section 5.11): one device per shared folder, its
 * FUSE requests served by the passthrough server (fs/fuse.h). Queue 0 is
 * the hiprio queue (FORGETs), queue 1 the request queue. Kicks are taken
 * on the transport's I/O thread, which only pops chains; a small pool of
 * threads of the device's own serves them, so a slow host file system
 * blocks neither a vCPU nor the other requests. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "core/vm.h"
#include "devices/device.h"
#include "devices/virtio/fs.h"
#include "devices/virtio/mmio.h"
#include "fs/fuse.h"
#include "core/state_io.h"
#include "util/blob.h"
#include "util/err.h"
#include "util/le.h"
#include "util/trace.h"
#include "confine/confine.h"

#define VIRTIO_ID_FS 26
#define QUEUE_SIZE 256
#define NUM_QUEUES 2 /* hiprio + one request queue */
#define NUM_REQUEST_QUEUES (NUM_QUEUES - 1)
#define CONFIG_BYTES 40 /* tag[36], num_request_queues */
#define WORKERS 4
/* Chains popped and not yet answered: past this, kicks wait for a worker. */
#define MAX_JOBS 64
/* Opcodes counted each on their own (FUSE's end at 51); the rest as one. */
#define STATS_OPCODES 64
/* A longer wait for the guest's next request is the guest busy elsewhere
 * (booting, between steps), not its side of a request. */
#define STATS_GAP_MAX_US 1000000u

struct job {
    struct virtq_chain chain;
    unsigned queue;
    unsigned epoch;
    uint64_t popped_us;
    uint64_t gap_us; /* the device had no request for this long before it */
};

/* Where one opcode's requests spent their time, for $SMOLVM_FS_STATS. */
struct op_stats {
    uint64_t count, bytes;
    uint64_t gap_us;      /* the device idle before them: the guest's side and the kick */
    uint64_t waiting_us;  /* popped until a server thread took them */
    uint64_t serving_us;  /* in the FUSE server */
    uint64_t replying_us; /* the reply pushed, the driver interrupted */
};

/* A READ's or WRITE's data: up to 4 KiB, up to 128 KiB (the guest's
 * default readahead window), more; counted apart (a big file's reads from
 * a small file's). */
#define STATS_SIZES 3
static const char *const stats_size_names[STATS_SIZES] = {"", " <=128K", " >128K"};

struct fs_stats {
    struct op_stats op[STATS_OPCODES + 1][STATS_SIZES]; /* the last: any other opcode */
    uint64_t kicks;      /* notifications that found requests */
    uint64_t popped;     /* requests they found */
    uint64_t idle_since; /* the device's last request answered then (0: none yet) */
};

struct worker {
    struct virtio_fs *dev;
    pthread_t thread;
    uint8_t *in, *out;
};

struct virtio_fs {
    struct pt_fs *pt;
    const struct guest_memory *mem;
    struct fuse_server *server;
    char tag[VM_SHARE_TAG_MAX];
    struct virtio_device_ops ops;
    struct virtio_mmio *transport;

    pthread_mutex_t lock; /* below; taken after the transport's io_lock */
    pthread_cond_t work, idle;
    struct job *jobs;
    unsigned free_jobs[MAX_JOBS], free_count;
    unsigned ready[MAX_JOBS], ready_head, ready_count; /* popped, waiting for a worker */
    unsigned busy;    /* jobs popped and not yet pushed */
    unsigned serving; /* of them, in the server: a READ may be writing guest memory */
    unsigned epoch;   /* bumped at each device reset: older jobs are dropped */
    bool paused, stopping, backlog;
    struct worker workers[WORKERS];
    unsigned worker_count;
    struct fs_stats stats;
};

static void fs_read_config(void *opaque, uint32_t offset, uint8_t *data, unsigned size)
{
    struct virtio_fs *d = opaque;
    uint8_t cfg[CONFIG_BYTES] = {0};

    memcpy(cfg, d->tag, sizeof(d->tag));
    put_le(cfg + 36, NUM_REQUEST_QUEUES, 4);
    memcpy(data, cfg + offset, size);
}

/* Pops what queue q holds into free job slots (with the transport's
 * io_lock: pops and pushes are serialised with resets). */
static void pump(struct virtio_fs *d, struct virtio_mmio *t, unsigned q)
{
    struct virtq *vq;
    uint64_t popped;
    int r = 0;

    virtio_mmio_io_lock(t);
    vq = virtio_mmio_queue(t, q);
    pthread_mutex_lock(&d->lock);
    popped = d->stats.popped; /* workers pump too: read under the lock */
    while (vq && !d->paused && !d->stopping) {
        struct job *j;
        if (d->free_count == 0) {
            d->backlog = true; /* a worker pumps again when one is free */
            break;
        }
        j = &d->jobs[d->free_jobs[d->free_count - 1]];
        r = virtq_pop(vq, &j->chain);
        if (r <= 0)
            break;
        d->free_count--;
        j->queue = q;
        j->epoch = d->epoch;
        j->popped_us = trace_now_us();
        j->gap_us = d->busy == 0 && d->stats.idle_since ? j->popped_us - d->stats.idle_since : 0;
        d->stats.popped++;
        d->ready[(d->ready_head + d->ready_count++) % MAX_JOBS] = (unsigned)(j - d->jobs);
        d->busy++;
        pthread_cond_signal(&d->work);
    }
    d->stats.kicks += d->stats.popped != popped;
    pthread_mutex_unlock(&d->lock);
    if (r < 0)
        virtio_mmio_fail(t, err_msg());
    virtio_mmio_io_unlock(t);
}

static void fs_notify(void *opaque, struct virtio_mmio *t, unsigned q)
{
    pump(opaque, t, q);
}

static void pump_all(struct virtio_fs *d)
{
    for (unsigned q = 0; q < NUM_QUEUES; q++)
        pump(d, d->transport, q);
}

/* The reply's first head bytes into the chain (the rest is there
 * already) and the chain back to the driver with len bytes written, unless
 * the device was reset since it was popped. */
static void complete(struct virtio_fs *d, struct job *j, const uint8_t *reply, size_t head,
                     size_t len)
{
    struct virtio_mmio *t = d->transport;
    struct virtq *vq;
    bool current;

    virtio_mmio_io_lock(t);
    pthread_mutex_lock(&d->lock);
    current = j->epoch == d->epoch;
    pthread_mutex_unlock(&d->lock);
    vq = current ? virtio_mmio_queue(t, j->queue) : NULL;
    if (vq) {
        size_t written = virtq_chain_write(&j->chain, 0, reply, head);
        if (written == head)
            written = len;
        if (virtq_push(vq, j->chain.head, (uint32_t)written) < 0)
            virtio_mmio_fail(t, err_msg());
        else
            virtio_mmio_used(t, j->queue);
    }
    virtio_mmio_io_unlock(t);
}

/* One chain: its readable bytes are the request, its writable ones take
 * the reply. A WRITE's payload is written to the file from the guest's
 * pages where they are, a READ's data read from the file into them; any
 * other request is copied whole into in. A request longer than any FUSE
 * request is cut, and then answered EINVAL by the server (its header's
 * length is past the end). */
size_t virtio_fs_serve_chain(struct fuse_server *server, const struct guest_memory *mem,
                             const struct virtq_chain *c, uint8_t *in, uint8_t *out, size_t *head)
{
    const size_t write_head = sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in);
    size_t out_cap = c->writable_bytes < FUSE_SERVER_OUT_MAX ? c->writable_bytes
                                                             : FUSE_SERVER_OUT_MAX;
    size_t in_len = virtq_chain_read(c, 0, in, write_head), data_len;
    struct iovec data[VIRTQ_MAX_CHAIN];
    unsigned data_count;
    uint32_t opcode = in_len >= sizeof(struct fuse_in_header)
                          ? le32(in + offsetof(struct fuse_in_header, opcode))
                          : 0;
    size_t len;

    if (in_len == write_head && opcode == FUSE_WRITE) {
        data_count = virtq_chain_readable_iov(c, write_head, data, VIRTQ_MAX_CHAIN, &data_len);
        if (mem && !guest_memory_holds_data(mem, data, data_count))
            return *head = fuse_serve(server, in, in_len, out, out_cap); /* no payload: EINVAL */
        return *head = fuse_serve_data(server, in, in_len, data, data_count, out, out_cap);
    }
    in_len += virtq_chain_read(c, in_len, in + in_len, FUSE_SERVER_IN_MAX - in_len);
    if (opcode != FUSE_READ)
        return *head = fuse_serve(server, in, in_len, out, out_cap);
    data_count = virtq_chain_writable_iov(c, sizeof(struct fuse_out_header), data,
                                          VIRTQ_MAX_CHAIN, &data_len);
    len = fuse_serve_read(server, in, in_len, data, data_count, out, out_cap);
    *head = len < sizeof(struct fuse_out_header) ? len : sizeof(struct fuse_out_header);
    return len;
}

/* The opcode of the request in chain c (0 when it has no header). */
static uint32_t chain_opcode(const struct virtq_chain *c)
{
    uint8_t h[8];

    return virtq_chain_read(c, 0, h, sizeof(h)) == sizeof(h) ? le32(h + 4) : 0;
}

/* The file data a request carried: a WRITE's payload, a READ's reply. */
static uint64_t data_bytes(const struct virtq_chain *c, uint32_t opcode, size_t reply_len)
{
    const size_t write_head = sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in);
    const size_t read_head = sizeof(struct fuse_out_header);

    if (opcode == FUSE_WRITE && c->readable_bytes > write_head)
        return c->readable_bytes - write_head;
    if (opcode == FUSE_READ && reply_len > read_head)
        return reply_len - read_head;
    return 0;
}

/* Job j, answered: its times (taken, served, replied: trace_now_us) into
 * the statistics (with d->lock). */
static void count_job(struct virtio_fs *d, const struct job *j, uint32_t opcode, size_t len,
                      uint64_t taken, uint64_t served, uint64_t replied)
{
    uint64_t bytes = data_bytes(&j->chain, opcode, len);
    unsigned size = bytes > (128u << 10) ? 2 : bytes > 4096 ? 1 : 0;
    struct op_stats *o = &d->stats.op[opcode < STATS_OPCODES ? opcode : STATS_OPCODES][size];

    o->count++;
    o->bytes += bytes;
    o->gap_us += j->gap_us < STATS_GAP_MAX_US ? j->gap_us : 0;
    o->waiting_us += taken - j->popped_us;
    o->serving_us += served - taken;
    o->replying_us += replied - served;
    if (d->busy == 1)
        d->stats.idle_since = replied;
}

static unsigned long long per_request(uint64_t total_us, uint64_t count)
{
    return (unsigned long long)(total_us / count);
}

/* $SMOLVM_FS_STATS (smolvm's environment): at exit, per opcode, how many
 * requests, their file data and where each one's time went on average:
 * bench/fs keeps these beside its figures. */
static void say_stats(const struct virtio_fs *d)
{
    const struct fs_stats *s = &d->stats;
    const char *want = getenv("SMOLVM_FS_STATS");

    if (!want || !*want)
        return;
    fprintf(stderr, "smolvm: virtio-fs %s: %llu requests in %llu notifications\n", d->tag,
            (unsigned long long)s->popped, (unsigned long long)s->kicks);
    for (unsigned i = 0; i < (STATS_OPCODES + 1) * STATS_SIZES; i++) {
        const struct op_stats *o = &s->op[i / STATS_SIZES][i % STATS_SIZES];
        if (!o->count)
            continue;
        fprintf(stderr,
                "smolvm: virtio-fs %s: %s%s %llu requests, %llu KiB; each: %llu us idle before "
                "it, %llu us waiting for a thread, %llu us serving, %llu us replying\n",
                d->tag, i / STATS_SIZES < STATS_OPCODES ? fuse_opcode_name(i / STATS_SIZES) : "other",
                stats_size_names[i % STATS_SIZES], (unsigned long long)o->count, (unsigned long long)(o->bytes >> 10),
                per_request(o->gap_us, o->count), per_request(o->waiting_us, o->count),
                per_request(o->serving_us, o->count), per_request(o->replying_us, o->count));
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct virtio_fs *d = w->dev;

    confine_thread(CONFINE_FS, "virtio-fs");
    pthread_mutex_lock(&d->lock);
    for (;;) {
        struct job *j;
        size_t len, head;
        uint64_t taken, served, replied;
        uint32_t opcode;
        bool backlog;

        while (!d->stopping && d->ready_count == 0)
            pthread_cond_wait(&d->work, &d->lock);
        if (d->stopping)
            break;
        j = &d->jobs[d->ready[d->ready_head]];
        d->ready_head = (d->ready_head + 1) % MAX_JOBS;
        d->ready_count--;
        d->serving++;
        pthread_mutex_unlock(&d->lock);

        taken = trace_now_us();
        opcode = chain_opcode(&j->chain);
        len = virtio_fs_serve_chain(d->server, d->mem, &j->chain, w->in, w->out, &head);
        served = trace_now_us();
        pthread_mutex_lock(&d->lock);
        d->serving--;
        pthread_cond_broadcast(&d->idle);
        pthread_mutex_unlock(&d->lock);
        complete(d, j, w->out, head, len);
        replied = trace_now_us();

        pthread_mutex_lock(&d->lock);
        count_job(d, j, opcode, len, taken, served, replied);
        d->free_jobs[d->free_count++] = (unsigned)(j - d->jobs);
        d->busy--;
        backlog = d->backlog && !d->paused;
        d->backlog = false;
        pthread_cond_broadcast(&d->idle);
        if (backlog) {
            pthread_mutex_unlock(&d->lock);
            pump_all(d);
            pthread_mutex_lock(&d->lock);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Called by the transport with its locks held: jobs not started are
 * dropped, running ones will not be pushed (their epoch is old), the FUSE
 * session ends (the driver sends INIT again). Requests in the server are
 * waited for (it takes none of the transport's locks): a READ writes the
 * guest's pages, which after a reset are no longer the device's. */
static void fs_reset(void *opaque)
{
    struct virtio_fs *d = opaque;

    pthread_mutex_lock(&d->lock);
    d->epoch++;
    while (d->ready_count) {
        d->free_jobs[d->free_count++] = d->ready[d->ready_head];
        d->ready_head = (d->ready_head + 1) % MAX_JOBS;
        d->ready_count--;
        d->busy--;
    }
    while (d->serving)
        pthread_cond_wait(&d->idle, &d->lock);
    pthread_mutex_unlock(&d->lock);
    if (d->server)
        fuse_server_reset(d->server);
}

/* ---- snapshots ---- */

/* Before the transport saves its rings: every popped request answered,
 * no new one popped until resume. */
static void fs_pause(void *opaque)
{
    struct virtio_fs *d = opaque;

    pthread_mutex_lock(&d->lock);
    d->paused = true;
    while (d->busy)
        pthread_cond_wait(&d->idle, &d->lock);
    pthread_mutex_unlock(&d->lock);
}

static void fs_resume(void *opaque)
{
    struct virtio_fs *d = opaque;

    pthread_mutex_lock(&d->lock);
    d->paused = false;
    pthread_mutex_unlock(&d->lock);
    pump_all(d);
}

/* Version 1: the FUSE session (0: no INIT answered yet, 1: answered,
 * 3: answered, and the guest opens files without asking, fuse.h
 * fuse_server_no_open), then the node and handle tables as paths
 * (fs/passthrough.h, pt_save). */
#define SESSION_INITIALIZED 1u
#define SESSION_NO_OPEN 2u

static int fs_state(void *opaque, struct state_io *io)
{
    struct virtio_fs *d = opaque;
    uint8_t session;
    int r;

    if (!state_restoring(io)) {
        session = fuse_server_initialized(d->server) ? SESSION_INITIALIZED : 0;
        if (session && fuse_server_no_open(d->server))
            session |= SESSION_NO_OPEN;
        blob_put_u8(io->out, session);
        return pt_save(d->pt, io->out);
    }
    session = blob_get_u8(io->in);
    r = io->in->failed || (session != 0 && session != SESSION_INITIALIZED &&
                           session != (SESSION_INITIALIZED | SESSION_NO_OPEN))
            ? err_plain(EINVAL, "virtio-fs %s: bad session state", d->tag)
            : pt_restore(d->pt, io->in);
    fuse_server_set_initialized(d->server, r == 0 && (session & SESSION_INITIALIZED));
    fuse_server_set_no_open(d->server, r == 0 && (session & SESSION_NO_OPEN));
    return r;
}

static const struct vm_state_desc fs_state_desc = {
    .version = 1,
    .state = fs_state,
    .pause = fs_pause,
    .resume = fs_resume,
};

/* ---- set-up ---- */

static void fs_free(struct virtio_fs *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_broadcast(&d->work);
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < d->worker_count; i++)
        pthread_join(d->workers[i].thread, NULL);
    virtio_mmio_destroy(d->transport); /* its I/O thread pumps no more */
    if (d->worker_count)
        say_stats(d);
    for (unsigned i = 0; i < d->worker_count; i++) {
        free(d->workers[i].in);
        free(d->workers[i].out);
    }
    fuse_server_free(d->server);
    pt_free(d->pt);
    free(d->jobs);
    pthread_cond_destroy(&d->work);
    pthread_cond_destroy(&d->idle);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static int start_workers(struct virtio_fs *d)
{
    for (unsigned i = 0; i < WORKERS; i++) {
        struct worker *w = &d->workers[i];
        w->dev = d;
        w->in = malloc(FUSE_SERVER_IN_MAX);
        w->out = malloc(FUSE_SERVER_OUT_MAX);
        if (!w->in || !w->out || confine_thread_start(&w->thread, CONFINE_FS, worker_main, w) != 0) {
            free(w->in);
            free(w->out);
            return err_set(ENOMEM, "virtio-fs: server threads");
        }
        d->worker_count++;
    }
    return 0;
}

/* The share of the config that slot names. */
static int fs_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    const struct vm_share_config *cfg = &vm_config(vm)->shares[slot->index];
    struct virtio_fs *d;
    char name[64];
    int r;

    if (!cfg->path)
        return err_plain(EINVAL, "share %s has no host folder (give --share DIR:%s)", cfg->tag,
                         cfg->tag);
    d = calloc(1, sizeof(*d));
    if (!d)
        return err_set(ENOMEM, "virtio-fs");
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->work, NULL);
    pthread_cond_init(&d->idle, NULL);
    memcpy(d->tag, cfg->tag, strnlen(cfg->tag, sizeof(d->tag)));
    d->mem = vm_memory(vm);
    d->jobs = calloc(MAX_JOBS, sizeof(*d->jobs));
    if (!d->jobs) {
        fs_free(d);
        return err_set(ENOMEM, "virtio-fs");
    }
    for (unsigned i = 0; i < MAX_JOBS; i++)
        d->free_jobs[d->free_count++] = i;
    struct pt_limits limits;
    pt_vm_limits(&limits, vm_config(vm)->share_count);
    r = pt_new(cfg->path, cfg->read_only, &limits, &d->pt);
    if (r == 0) {
        d->server = fuse_server_new(d->pt);
        r = d->server ? 0 : err_set(ENOMEM, "virtio-fs");
    }
    d->ops = (struct virtio_device_ops){
        .name = "fs",
        .device_id = VIRTIO_ID_FS,
        .num_queues = NUM_QUEUES,
        .queue_max = QUEUE_SIZE,
        .config_size = CONFIG_BYTES,
        .read_config = fs_read_config,
        .queue_notify = fs_notify,
        .reset = fs_reset,
        .io_thread = true,
    };
    /* Registered before the transport: paused (drained) before it saves. */
    snprintf(name, sizeof(name), "virtio-fs:%s", cfg->tag);
    if (r == 0)
        r = vm_register_state(vm, name, &fs_state_desc, d);
    if (r == 0)
        r = virtio_mmio_create(vm, slot, &d->ops, d, &d->transport);
    if (r == 0)
        r = start_workers(d);
    if (r < 0) {
        fs_free(d);
        return r;
    }
    *state = d;
    return 0;
}

static void fs_destroy(void *state)
{
    fs_free(state);
}

static const struct device_type virtio_fs = {
    .name = "virtio-fs",
    .create = fs_create,
    .destroy = fs_destroy,
};
DEVICE_REGISTER(virtio_fs);
