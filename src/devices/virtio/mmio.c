#include "devices/virtio/mmio.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/placement.h"
#include "core/vm.h"
#include "util/blob.h"
#include "util/err.h"
#include "confine/confine.h"

enum {
    REG_MAGIC = 0x000,
    REG_VERSION = 0x004,
    REG_DEVICE_ID = 0x008,
    REG_VENDOR_ID = 0x00c,
    REG_DEVICE_FEATURES = 0x010,
    REG_DEVICE_FEATURES_SEL = 0x014,
    REG_DRIVER_FEATURES = 0x020,
    REG_DRIVER_FEATURES_SEL = 0x024,
    REG_QUEUE_SEL = 0x030,
    REG_QUEUE_NUM_MAX = 0x034,
    REG_QUEUE_NUM = 0x038,
    REG_QUEUE_READY = 0x044,
    REG_QUEUE_NOTIFY = 0x050,
    REG_INTERRUPT_STATUS = 0x060,
    REG_INTERRUPT_ACK = 0x064,
    REG_STATUS = 0x070,
    REG_QUEUE_DESC_LOW = 0x080,
    REG_QUEUE_DESC_HIGH = 0x084,
    REG_QUEUE_DRIVER_LOW = 0x090,
    REG_QUEUE_DRIVER_HIGH = 0x094,
    REG_QUEUE_DEVICE_LOW = 0x0a0,
    REG_QUEUE_DEVICE_HIGH = 0x0a4,
    REG_SHM_LEN_LOW = 0x0b0,
    REG_SHM_LEN_HIGH = 0x0b4,
    REG_CONFIG_GENERATION = 0x0fc,
    REG_CONFIG = 0x100,
};

/* Registers whose writes only latch a value the device uses at a later
 * access (a select, a queue's size and addresses before QueueReady; the
 * reserved and read-only words between them ignore writes): the guest's
 * writes there are coalesced, replayed before its next exit (so before
 * any read, QueueReady, Status or a pause). A write with an effect of its
 * own -- QueueReady, QueueNotify, InterruptACK, Status, config space --
 * must stay out: it would take effect late. */
static const struct {
    uint32_t offset, len;
} latch_ranges[] = {
    {REG_DEVICE_FEATURES_SEL, REG_DRIVER_FEATURES_SEL + 4 - REG_DEVICE_FEATURES_SEL},
    {REG_QUEUE_SEL, REG_QUEUE_NUM + 4 - REG_QUEUE_SEL},
    {REG_QUEUE_DESC_LOW, REG_QUEUE_DEVICE_HIGH + 4 - REG_QUEUE_DESC_LOW},
};

bool virtio_mmio_write_latches(uint64_t offset)
{
    for (size_t i = 0; i < sizeof(latch_ranges) / sizeof(latch_ranges[0]); i++)
        if (offset >= latch_ranges[i].offset &&
            offset < latch_ranges[i].offset + latch_ranges[i].len)
            return true;
    return false;
}

#define MAGIC 0x74726976u /* "virt" */
#define VENDOR_SMOLVM 0x4c4f4d53u /* "SMOL" */
#define INTERRUPT_USED 1
#define INTERRUPT_CONFIG 2
#define TRANSPORT_FEATURES (VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC)

static void raise_irq_line(struct virtio_mmio *t)
{
    uint64_t one = 1;

    if (t->irq_fd >= 0 && write(t->irq_fd, &one, sizeof(one)) == sizeof(one))
        return;
    /* Edge-triggered, as the DSDT says: one pulse per interrupt. */
    vm_set_irq(t->vm, t->irq, true);
    vm_set_irq(t->vm, t->irq, false);
}

void (*virtio_mmio_raise_irq)(struct virtio_mmio *t) = raise_irq_line;

static uint64_t device_features(const struct virtio_mmio *t)
{
    return t->ops->features | TRANSPORT_FEATURES;
}

static bool broken(const struct virtio_mmio *t)
{
    return t->status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED);
}

static void reset_locked(struct virtio_mmio *t)
{
    t->status = 0;
    t->driver_features = 0;
    t->interrupt_status = 0;
    t->device_features_sel = t->driver_features_sel = t->queue_sel = 0;
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
        t->queues[i] = (struct virtq){.mem = vm_memory(t->vm)};
    if (t->ops->reset)
        t->ops->reset(t->dev);
}

static struct virtq *selected_queue(struct virtio_mmio *t)
{
    return t->queue_sel < t->ops->num_queues ? &t->queues[t->queue_sel] : NULL;
}

static void set_half(uint64_t *v, bool high, uint32_t half)
{
    *v = high ? (*v & 0xffffffffull) | (uint64_t)half << 32 : (*v & ~0xffffffffull) | half;
}

static uint32_t read_reg(struct virtio_mmio *t, uint64_t offset)
{
    struct virtq *q = selected_queue(t);
    uint64_t f;

    switch (offset) {
    case REG_MAGIC: return MAGIC;
    case REG_VERSION: return 2;
    case REG_DEVICE_ID: return t->ops->device_id;
    case REG_VENDOR_ID: return VENDOR_SMOLVM;
    case REG_DEVICE_FEATURES:
        f = device_features(t);
        return t->device_features_sel == 0 ? (uint32_t)f
               : t->device_features_sel == 1 ? (uint32_t)(f >> 32) : 0;
    case REG_QUEUE_NUM_MAX: return q ? t->ops->queue_max : 0;
    case REG_QUEUE_READY: return q ? q->ready : 0;
    case REG_INTERRUPT_STATUS: return t->interrupt_status;
    case REG_STATUS: return t->status;
    case REG_CONFIG_GENERATION: return t->config_generation;
    /* No shared memory regions: a length of -1 says so (a 0 would be a
     * region at 0 of size 0, which Linux's virtiofs tries to claim for
     * DAX, failing the probe). */
    case REG_SHM_LEN_LOW:
    case REG_SHM_LEN_HIGH: return 0xffffffffu;
    default: return 0;
    }
}

static void set_status(struct virtio_mmio *t, uint32_t v)
{
    if (v == 0) {
        reset_locked(t);
        return;
    }
    if ((v & VIRTIO_STATUS_FEATURES_OK) && !(t->status & VIRTIO_STATUS_FEATURES_OK)) {
        /* Refuse features we did not offer, and legacy drivers. */
        if ((t->driver_features & ~device_features(t)) ||
            !(t->driver_features & VIRTIO_F_VERSION_1))
            v &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
    }
    t->status = v | (t->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void queue_ready(struct virtio_mmio *t, struct virtq *q, uint32_t v)
{
    if (!v) {
        q->ready = false;
        return;
    }
    q->mem = vm_memory(t->vm);
    q->event_idx = t->driver_features & VIRTIO_F_EVENT_IDX;
    if (q->size > t->ops->queue_max || virtq_validate(q) < 0) {
        char why[160];
        snprintf(why, sizeof(why), "queue %u: %s", t->queue_sel,
                 q->size > t->ops->queue_max ? "size above QueueNumMax" : err_msg());
        pthread_mutex_unlock(&t->lock);
        virtio_mmio_fail(t, why);
        pthread_mutex_lock(&t->lock);
        return;
    }
    q->ready = true;
}

/* Returns the queue to notify, or -1. */
static int write_reg(struct virtio_mmio *t, uint64_t offset, uint32_t v)
{
    struct virtq *q = selected_queue(t);

    switch (offset) {
    case REG_DEVICE_FEATURES_SEL: t->device_features_sel = v; break;
    case REG_DRIVER_FEATURES:
        if (t->driver_features_sel < 2)
            set_half(&t->driver_features, t->driver_features_sel == 1, v);
        break;
    case REG_DRIVER_FEATURES_SEL: t->driver_features_sel = v; break;
    case REG_QUEUE_SEL: t->queue_sel = v; break;
    case REG_QUEUE_NUM:
        if (q && !q->ready)
            q->size = (uint16_t)(v > 0xffff ? 0 : v);
        break;
    case REG_QUEUE_READY:
        if (q)
            queue_ready(t, q, v);
        break;
    case REG_QUEUE_NOTIFY:
        if (v < t->ops->num_queues && (t->status & VIRTIO_STATUS_DRIVER_OK) && !broken(t))
            return (int)v;
        break;
    case REG_INTERRUPT_ACK: t->interrupt_status &= ~v; break;
    case REG_STATUS: set_status(t, v); break;
    case REG_QUEUE_DESC_LOW:
    case REG_QUEUE_DESC_HIGH:
        if (q && !q->ready)
            set_half(&q->desc_gpa, offset == REG_QUEUE_DESC_HIGH, v);
        break;
    case REG_QUEUE_DRIVER_LOW:
    case REG_QUEUE_DRIVER_HIGH:
        if (q && !q->ready)
            set_half(&q->avail_gpa, offset == REG_QUEUE_DRIVER_HIGH, v);
        break;
    case REG_QUEUE_DEVICE_LOW:
    case REG_QUEUE_DEVICE_HIGH:
        if (q && !q->ready)
            set_half(&q->used_gpa, offset == REG_QUEUE_DEVICE_HIGH, v);
        break;
    default: break;
    }
    return -1;
}

static void config_access(struct virtio_mmio *t, uint64_t offset, uint8_t *data, unsigned size,
                          bool is_write)
{
    uint64_t off = offset - REG_CONFIG;

    if (off >= t->ops->config_size || size > t->ops->config_size - off) {
        if (!is_write)
            memset(data, 0, size);
        return;
    }
    if (!is_write && t->ops->read_config)
        t->ops->read_config(t->dev, (uint32_t)off, data, size);
    else if (is_write && t->ops->write_config)
        t->ops->write_config(t->dev, (uint32_t)off, data, size);
}

void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, unsigned size,
                        bool is_write)
{
    struct virtio_mmio *t = opaque;
    int notify = -1;
    uint32_t v = 0;

    if (offset >= REG_CONFIG) {
        config_access(t, offset, data, size, is_write);
        return;
    }
    if (size != 4 || (offset & 3)) { /* the spec allows only aligned 32-bit access */
        if (!is_write)
            memset(data, 0, size);
        return;
    }
    if (is_write) {
        /* A write may reset the device: keep queue work out meanwhile. */
        pthread_mutex_lock(&t->io_lock);
        pthread_mutex_lock(&t->lock);
        memcpy(&v, data, 4);
        notify = write_reg(t, offset, v);
        pthread_mutex_unlock(&t->lock);
        pthread_mutex_unlock(&t->io_lock);
    } else {
        pthread_mutex_lock(&t->lock);
        v = read_reg(t, offset);
        pthread_mutex_unlock(&t->lock);
        memcpy(data, &v, 4);
    }
    if (notify >= 0 && t->ops->queue_notify)
        t->ops->queue_notify(t->dev, t, (unsigned)notify);
}

struct virtq *virtio_mmio_queue(struct virtio_mmio *t, unsigned q)
{
    struct virtq *vq;
    pthread_mutex_lock(&t->lock);
    vq = (q < t->ops->num_queues && t->queues[q].ready && !broken(t)) ? &t->queues[q] : NULL;
    pthread_mutex_unlock(&t->lock);
    return vq;
}

void virtio_mmio_used(struct virtio_mmio *t, unsigned q)
{
    bool raise = false;

    pthread_mutex_lock(&t->lock);
    if (q < t->ops->num_queues && t->queues[q].ready && virtq_needs_interrupt(&t->queues[q])) {
        t->interrupt_status |= INTERRUPT_USED;
        raise = true;
    }
    pthread_mutex_unlock(&t->lock);
    if (raise)
        virtio_mmio_raise_irq(t);
}

void virtio_mmio_serve(struct virtio_mmio *t, unsigned qi, struct virtq_chain *chain,
                       long (*serve)(void *dev, const struct virtq_chain *c), void *dev)
{
    struct virtq *q;
    long written;
    int r;

    pthread_mutex_lock(&t->io_lock);
    q = virtio_mmio_queue(t, qi);
    if (!q) {
        pthread_mutex_unlock(&t->io_lock);
        return;
    }
    while ((r = virtq_pop(q, chain)) > 0) {
        written = serve(dev, chain);
        r = written < 0 ? (int)written : virtq_push(q, chain->head, (uint32_t)written);
        if (r < 0)
            break;
    }
    if (r < 0)
        virtio_mmio_fail(t, err_msg());
    virtio_mmio_used(t, qi);
    pthread_mutex_unlock(&t->io_lock);
}

void virtio_mmio_io_lock(struct virtio_mmio *t)
{
    pthread_mutex_lock(&t->io_lock);
}

void virtio_mmio_io_unlock(struct virtio_mmio *t)
{
    pthread_mutex_unlock(&t->io_lock);
}

static void *io_thread(void *arg)
{
    struct virtio_mmio *t = arg;
    struct pollfd fds[VIRTIO_MMIO_MAX_QUEUES + 1];
    unsigned n = t->ops->num_queues;
    char name[16];

    snprintf(name, sizeof(name), "virtio-%s", t->ops->name);
    confine_thread(CONFINE_DEVICE, name);
    for (unsigned i = 0; i < n; i++)
        fds[i] = (struct pollfd){.fd = t->notify_fd[i], .events = POLLIN};
    fds[n] = (struct pollfd){.fd = t->stop_fd, .events = POLLIN};
    for (;;) {
        uint64_t count;
        if (poll(fds, n + 1, -1) < 0)
            continue;
        if (fds[n].revents)
            return NULL;
        for (unsigned i = 0; i < n; i++)
            if (fds[i].revents && read(t->notify_fd[i], &count, sizeof(count)) == sizeof(count)) {
                confine_test_violation();
                t->ops->queue_notify(t->dev, t, i);
            }
    }
}

static void close_fds(struct virtio_mmio *t)
{
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++) {
        if (t->notify_fd[i] >= 0)
            close(t->notify_fd[i]);
        t->notify_fd[i] = -1;
    }
}

/* Queue kicks become eventfd signals served by a thread of the device's
 * own; on any failure the device keeps the synchronous path. */
static void start_io_thread(struct virtio_mmio *t)
{
    t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    for (unsigned i = 0; i < t->ops->num_queues; i++) {
        t->notify_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (t->notify_fd[i] < 0 ||
            vm_notify_fd(t->vm, t->base + REG_QUEUE_NOTIFY, 4, i, t->notify_fd[i]) < 0) {
            close_fds(t);
            return;
        }
    }
    if (t->stop_fd >= 0 && confine_thread_start(&t->thread, CONFINE_DEVICE, io_thread, t) == 0)
        t->thread_running = true;
}

void virtio_mmio_fail(struct virtio_mmio *t, const char *why)
{
    bool first;

    pthread_mutex_lock(&t->lock);
    first = !(t->status & VIRTIO_STATUS_NEEDS_RESET);
    t->status |= VIRTIO_STATUS_NEEDS_RESET;
    t->interrupt_status |= INTERRUPT_CONFIG;
    pthread_mutex_unlock(&t->lock);
    if (first)
        fprintf(stderr, "smolvm: virtio-%s at 0x%llx: %s; device needs reset\n", t->ops->name,
                (unsigned long long)t->base, why);
    virtio_mmio_raise_irq(t);
}

void virtio_mmio_config_changed(struct virtio_mmio *t)
{
    bool live;

    pthread_mutex_lock(&t->lock);
    t->config_generation++;
    live = (t->status & VIRTIO_STATUS_DRIVER_OK) && !broken(t);
    if (live)
        t->interrupt_status |= INTERRUPT_CONFIG;
    pthread_mutex_unlock(&t->lock);
    if (live)
        virtio_mmio_raise_irq(t);
}

uint64_t virtio_mmio_features(struct virtio_mmio *t)
{
    uint64_t f;

    pthread_mutex_lock(&t->lock);
    f = (t->status & VIRTIO_STATUS_FEATURES_OK) ? t->driver_features : 0;
    pthread_mutex_unlock(&t->lock);
    return f;
}

/* ---- snapshots: the registers and each queue's place in its rings ---- */

/* The largest queue a saved record may hold: what this device offers, or
 * what an older smolvm offered if that was more. */
static uint16_t restorable_queue_max(const struct virtio_device_ops *ops)
{
    return ops->queue_max_saved > ops->queue_max ? ops->queue_max_saved : ops->queue_max;
}

/* A saved queue is as hostile as one the guest sets up: it passes the same
 * checks as at QueueReady (but for a size an older smolvm offered). */
static void queue_state(struct virtio_mmio *t, unsigned index, struct state_io *io)
{
    struct virtq *q = &t->queues[index];

    q->mem = vm_memory(t->vm);
    state_u16(io, &q->size);
    state_bool(io, &q->ready);
    state_bool(io, &q->event_idx);
    state_u64(io, &q->desc_gpa);
    state_u64(io, &q->avail_gpa);
    state_u64(io, &q->used_gpa);
    state_u16(io, &q->last_avail);
    state_u16(io, &q->used_idx);
    state_u16(io, &q->signalled_used);
    state_bool(io, &q->signalled_valid);
    if (!state_restoring(io) || state_failed(io) || !q->ready)
        return;
    uint16_t max = restorable_queue_max(t->ops);
    state_check(io, q->size <= max, "queue %u: size %u above QueueNumMax %u", index, q->size, max);
    if (!state_failed(io) && virtq_validate(q) < 0)
        state_check(io, false, "queue %u: %s", index, err_msg());
}

/* Version 1 (every virtio device's record since before versions): the
 * registers, then each queue's place in its rings; then the device's own
 * fields, if it has any. */
static int transport_state(void *opaque, struct state_io *io)
{
    struct virtio_mmio *t = opaque;
    uint32_t queues = t->ops->num_queues;
    bool restoring = state_restoring(io);
    int r;

    /* A restore rewrites the queues: keep queue work (a device's own
     * threads answering requests) out meanwhile, as for a reset. */
    if (restoring)
        pthread_mutex_lock(&t->io_lock);
    pthread_mutex_lock(&t->lock);
    state_u32(io, &t->status);
    state_u32(io, &t->device_features_sel);
    state_u32(io, &t->driver_features_sel);
    state_u32(io, &t->queue_sel);
    state_u64(io, &t->driver_features);
    state_u32(io, &t->interrupt_status);
    state_u32(io, &t->config_generation);
    state_u32(io, &queues);
    state_check(io, queues == t->ops->num_queues && !(t->driver_features & ~device_features(t)),
                "state of a different device (%u queues, features 0x%llx)", queues,
                (unsigned long long)t->driver_features);
    for (unsigned i = 0; i < t->ops->num_queues && !state_failed(io); i++)
        queue_state(t, i, io);
    if (state_failed(io))
        reset_locked(t);
    pthread_mutex_unlock(&t->lock);
    /* The device's own fields too (vsock's thread acts on them). */
    r = t->ops->state && !state_failed(io) ? t->ops->state(t->dev, io) : 0;
    if (restoring)
        pthread_mutex_unlock(&t->io_lock);
    return r;
}

/* Requests the guest made available before the save but the device had
 * not taken yet: nobody will kick for them again. */
static int transport_restored(void *opaque)
{
    struct virtio_mmio *t = opaque;
    uint64_t one = 1;

    if (!(t->status & VIRTIO_STATUS_DRIVER_OK) || broken(t) || !t->ops->queue_notify)
        return 0;
    for (unsigned i = 0; i < t->ops->num_queues; i++) {
        if (!t->queues[i].ready)
            continue;
        if (t->notify_fd[i] >= 0 && write(t->notify_fd[i], &one, sizeof(one)) == sizeof(one))
            continue;
        t->ops->queue_notify(t->dev, t, i);
    }
    return 0;
}

static void transport_pause(void *opaque)
{
    virtio_mmio_io_lock(opaque);
}

static void transport_resume(void *opaque)
{
    virtio_mmio_io_unlock(opaque);
}

int virtio_mmio_create(struct vm *vm, const struct device_slot *slot,
                       const struct virtio_device_ops *ops, void *dev, struct virtio_mmio **out)
{
    struct virtio_mmio *t;
    int r;

    if (ops->num_queues > VIRTIO_MMIO_MAX_QUEUES || restorable_queue_max(ops) > VIRTQ_MAX_SIZE)
        return err_plain(EINVAL, "virtio-%s: too many or too large queues", ops->name);
    t = calloc(1, sizeof(*t));
    if (!t)
        return err_set(ENOMEM, "virtio-%s", ops->name);
    t->vm = vm;
    t->ops = ops;
    t->dev = dev;
    t->irq_fd = t->stop_fd = -1;
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
        t->notify_fd[i] = -1;
    pthread_mutex_init(&t->lock, NULL);
    {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&t->io_lock, &a);
        pthread_mutexattr_destroy(&a);
    }
    reset_locked(t);
    t->base = slot->mmio_base;
    t->irq = slot->irq;
    t->state_desc = (struct vm_state_desc){
        .version = ops->state_version ? ops->state_version : 1,
        .state = transport_state,
        .restored = transport_restored,
        .pause = transport_pause,
        .resume = transport_resume,
    };
    r = slot->mmio_size == VIRTIO_MMIO_WINDOW
            ? 0
            : err_plain(EINVAL, "virtio-%s: no virtio-mmio window in its slot", ops->name);
    if (r == 0)
        r = vm_register_mmio(vm, t->base, VIRTIO_MMIO_WINDOW, virtio_mmio_access, t);
    if (r == 0)
        r = vm_describe_mmio_device(vm, t->base, VIRTIO_MMIO_WINDOW, t->irq);
    if (r == 0)
        r = vm_register_state(vm, slot->state_name, &t->state_desc, t);
    if (r < 0) {
        virtio_mmio_destroy(t);
        return r;
    }
    t->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->irq_fd >= 0 && vm_irq_fd(vm, t->irq, t->irq_fd) < 0) {
        close(t->irq_fd);
        t->irq_fd = -1;
    }
    if (ops->io_thread && ops->queue_notify)
        start_io_thread(t);
    /* An optimisation only: without it each such write is an exit. */
    for (size_t i = 0; i < sizeof(latch_ranges) / sizeof(latch_ranges[0]); i++)
        if (vm_coalesce_writes(vm, t->base + latch_ranges[i].offset, latch_ranges[i].len) < 0)
            break;
    err_clear();
    *out = t;
    return 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
    uint64_t one = 1;

    if (!t)
        return;
    if (t->thread_running && write(t->stop_fd, &one, sizeof(one)) == sizeof(one))
        pthread_join(t->thread, NULL);
    close_fds(t);
    if (t->stop_fd >= 0)
        close(t->stop_fd);
    if (t->irq_fd >= 0)
        close(t->irq_fd);
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->io_lock);
    free(t);
}
