/* virtio-console (virtio 1.2, section 5.3), one port: the guest's hvc0 on
 * the host terminal. Used with --console virtio; the 8250 still carries
 * early boot output. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "devices/device.h"
#include "devices/virtio/mmio.h"
#include "util/err.h"

#define VIRTIO_ID_CONSOLE 3
#define RECEIVEQ 0
#define TRANSMITQ 1
#define PENDING_MAX 4096

struct vconsole {
    struct vm *vm;
    struct virtio_mmio *transport;
    pthread_mutex_t lock; /* queues are driven from vCPU and console threads */
    struct virtq_chain chain;
    uint8_t pending[PENDING_MAX]; /* host input waiting for guest buffers */
    size_t pending_len;
};

/* Moves pending host input into the guest's receive buffers. Lock held. */
static void deliver_pending(struct vconsole *c)
{
    struct virtq *q = virtio_mmio_queue(c->transport, RECEIVEQ);
    bool pushed = false;
    int r = 0;

    if (!q)
        return;
    while (c->pending_len > 0 && (r = virtq_pop(q, &c->chain)) > 0) {
        size_t n = virtq_chain_write(&c->chain, 0, c->pending, c->pending_len);
        memmove(c->pending, c->pending + n, c->pending_len - n);
        c->pending_len -= n;
        if ((r = virtq_push(q, c->chain.head, (uint32_t)n)) < 0)
            break;
        pushed = true;
    }
    if (r < 0)
        virtio_mmio_fail(c->transport, err_msg());
    if (pushed)
        virtio_mmio_used(c->transport, RECEIVEQ);
}

static long transmit(void *dev, const struct virtq_chain *chain)
{
    struct vconsole *c = dev;
    for (unsigned i = 0; i < chain->readable; i++)
        console_output(vm_console(c->vm), chain->bufs[i].addr, chain->bufs[i].len);
    return 0;
}

static void vconsole_notify(void *dev, struct virtio_mmio *t, unsigned q)
{
    struct vconsole *c = dev;
    virtio_mmio_io_lock(t);
    pthread_mutex_lock(&c->lock);
    if (q == TRANSMITQ)
        virtio_mmio_serve(t, q, &c->chain, transmit, c);
    else
        deliver_pending(c);
    pthread_mutex_unlock(&c->lock);
    virtio_mmio_io_unlock(t);
}

static void vconsole_input(void *opaque, const uint8_t *buf, size_t len)
{
    struct vconsole *c = opaque;
    /* Lock order: the transport's io lock, then ours (resets come that way). */
    virtio_mmio_io_lock(c->transport);
    pthread_mutex_lock(&c->lock);
    if (len > PENDING_MAX - c->pending_len)
        len = PENDING_MAX - c->pending_len; /* a guest not reading loses the excess */
    memcpy(c->pending + c->pending_len, buf, len);
    c->pending_len += len;
    deliver_pending(c);
    pthread_mutex_unlock(&c->lock);
    virtio_mmio_io_unlock(c->transport);
}

static void vconsole_reset(void *dev)
{
    struct vconsole *c = dev;
    pthread_mutex_lock(&c->lock);
    c->pending_len = 0;
    pthread_mutex_unlock(&c->lock);
}

/* After the transport's fields. Version 2 keeps host input the guest had
 * no buffers for yet (typed while it was busy, or while paused); version 1
 * had no fields of its own, and lost that input. */
#define VCONSOLE_STATE_VERSION 2
static int vconsole_state(void *dev, struct state_io *io)
{
    struct vconsole *c = dev;
    uint32_t len;

    pthread_mutex_lock(&c->lock);
    len = (uint32_t)c->pending_len;
    if (state_since(io, 2)) {
        state_u32_max(io, &len, PENDING_MAX, "pending input");
        state_bytes(io, c->pending, len);
    } else {
        len = 0;
    }
    c->pending_len = state_failed(io) ? 0 : len;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static const struct virtio_device_ops vconsole_ops = {
    .name = "console",
    .device_id = VIRTIO_ID_CONSOLE,
    .num_queues = 2,
    .queue_max = 256,
    .queue_notify = vconsole_notify,
    .reset = vconsole_reset,
    .state = vconsole_state,
    .state_version = VCONSOLE_STATE_VERSION,
};

static void vconsole_destroy(void *state)
{
    struct vconsole *c = state;
    if (!c)
        return;
    virtio_mmio_destroy(c->transport);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int vconsole_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    struct vconsole *c;
    int r;

    *state = NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return err_set(ENOMEM, "virtio-console");
    c->vm = vm;
    pthread_mutex_init(&c->lock, NULL);
    r = virtio_mmio_create(vm, slot, &vconsole_ops, c, &c->transport);
    if (r < 0) {
        vconsole_destroy(c);
        return r;
    }
    console_set_input(vm_console(vm), vconsole_input, c);
    *state = c;
    return 0;
}

static const struct device_type virtio_console = {
    .name = "virtio-console",
    .create = vconsole_create,
    .destroy = vconsole_destroy,
};
DEVICE_REGISTER(virtio_console);
