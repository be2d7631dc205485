/* virtio-rng (virtio 1.2, section 5.4): fills each buffer the driver gives
 * with bytes from the host's getrandom(). */
#include <stdlib.h>
#include <sys/random.h>

#include "core/vm.h"
#include "devices/device.h"
#include "devices/virtio/mmio.h"
#include "util/err.h"

#define VIRTIO_ID_RNG 4

struct rng {
    struct virtio_mmio *transport;
    struct virtq_chain chain;
};

static long fill(void *dev, const struct virtq_chain *c)
{
    (void)dev;
    for (unsigned i = c->readable; i < c->count; i++) {
        const struct virtq_buf *b = &c->bufs[i];
        for (uint32_t done = 0; done < b->len;) {
            ssize_t n = getrandom(b->addr + done, b->len - done, 0);
            if (n > 0)
                done += (uint32_t)n;
        }
    }
    return (long)c->writable_bytes;
}

static void rng_notify(void *dev, struct virtio_mmio *t, unsigned qi)
{
    struct rng *rng = dev;
    virtio_mmio_serve(t, qi, &rng->chain, fill, rng);
}

static const struct virtio_device_ops rng_ops = {
    .name = "rng",
    .device_id = VIRTIO_ID_RNG,
    .num_queues = 1,
    .queue_max = 256,
    .queue_notify = rng_notify,
};

static int rng_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    struct rng *d;
    int r;

    *state = NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return err_set(ENOMEM, "virtio-rng");
    r = virtio_mmio_create(vm, slot, &rng_ops, d, &d->transport);
    if (r < 0) {
        free(d);
        return r;
    }
    *state = d;
    return 0;
}

static void rng_destroy(void *state)
{
    struct rng *d = state;
    if (!d)
        return;
    virtio_mmio_destroy(d->transport);
    free(d);
}

static const struct device_type virtio_rng = {
    .name = "virtio-rng",
    .create = rng_create,
    .destroy = rng_destroy,
};
DEVICE_REGISTER(virtio_rng);
