/* The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2). A
 * virtio device supplies its ops; the transport owns the registers, the
 * queues and the interrupt, and gives every device the same defences: a
 * malformed queue marks the device DEVICE_NEEDS_RESET, the VMM goes on. */
#ifndef SMOLVM_DEVICES_VIRTIO_MMIO_H
#define SMOLVM_DEVICES_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/state_io.h"
#include "devices/virtio/queue.h"

struct vm;
struct device_slot;

#define VIRTIO_MMIO_MAX_QUEUES 8
#define VIRTIO_MMIO_WINDOW 0x1000

#define VIRTIO_F_INDIRECT_DESC (1ull << 28)
#define VIRTIO_F_EVENT_IDX (1ull << 29)
#define VIRTIO_F_VERSION_1 (1ull << 32)

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

struct virtio_mmio;

struct virtio_device_ops {
    const char *name;
    uint32_t device_id;
    uint64_t features; /* the transport adds VERSION_1, EVENT_IDX, INDIRECT_DESC */
    unsigned num_queues;
    uint16_t queue_max;
    /* The largest QueueNumMax an older smolvm offered, when larger than
     * queue_max (0: none): the queues of bundles it saved are that size,
     * and they still restore. */
    uint16_t queue_max_saved;
    /* Device config space: reads of [offset, offset+size) within
     * config_size; writes are ignored unless write_config is set. */
    uint32_t config_size;
    void (*read_config)(void *dev, uint32_t offset, uint8_t *data, unsigned size);
    void (*write_config)(void *dev, uint32_t offset, const uint8_t *data, unsigned size);
    /* The driver kicked queue q (called with the transport unlocked). */
    void (*queue_notify)(void *dev, struct virtio_mmio *t, unsigned q);
    /* The driver reset the device: drop in-flight state. */
    void (*reset)(void *dev);
    /* Serve queue notifications on a thread of the device's own, woken by
     * the hypervisor (ioeventfd), instead of on the kicking vCPU. */
    bool io_thread;
    /* The device's own saved fields, visited after the transport's in the
     * same record (core/state_io.h); NULL: none. state_version is the
     * record's version (0 means 1): bump it when the transport's fields or
     * the device's change. */
    int (*state)(void *dev, struct state_io *io);
    unsigned state_version;
};

struct virtio_mmio {
    struct vm *vm;
    const struct virtio_device_ops *ops;
    void *dev;
    uint64_t base;
    uint32_t irq;
    pthread_mutex_t lock;    /* the registers */
    pthread_mutex_t io_lock; /* queue processing vs. reset; recursive; taken before lock */
    int irq_fd;              /* irqfd, or -1: KVM_IRQ_LINE pulses */
    int notify_fd[VIRTIO_MMIO_MAX_QUEUES]; /* ioeventfds of the I/O thread, or -1 */
    int stop_fd;
    pthread_t thread;
    bool thread_running;
    uint32_t status;
    uint32_t device_features_sel, driver_features_sel, queue_sel;
    uint64_t driver_features;
    uint32_t interrupt_status;
    uint32_t config_generation;
    struct virtq queues[VIRTIO_MMIO_MAX_QUEUES];
    struct vm_state_desc state_desc;
};

/* Places the device in its slot's virtio-mmio window (its MMIO range, IRQ
 * and DSDT entry) and registers its state under the slot's name. */
int virtio_mmio_create(struct vm *vm, const struct device_slot *slot,
                       const struct virtio_device_ops *ops, void *dev, struct virtio_mmio **out)
    __attribute__((warn_unused_result));
void virtio_mmio_destroy(struct virtio_mmio *t);

/* The register file, for the bus and for unit tests. */
void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, unsigned size,
                        bool is_write);

/* Whether a write at offset in the register file only latches a value for
 * a later access (such writes are coalesced: vm_coalesce_writes). */
bool virtio_mmio_write_latches(uint64_t offset);

/* Queue q of a live device, or NULL when not ready or broken. */
struct virtq *virtio_mmio_queue(struct virtio_mmio *t, unsigned q);

/* After pushing used buffers to queue q: interrupts the driver if it
 * asked for it. */
void virtio_mmio_used(struct virtio_mmio *t, unsigned q);

/* Pops every available chain of queue q, hands each to serve (which returns
 * the bytes it wrote into the chain, or <0 for a malformed request), pushes
 * it back and interrupts the driver if it asked. A malformed queue or
 * request marks the device broken. */
void virtio_mmio_serve(struct virtio_mmio *t, unsigned q, struct virtq_chain *chain,
                       long (*serve)(void *dev, const struct virtq_chain *c), void *dev);

/* Serializes a device's own queue work (outside virtio_mmio_serve) with
 * resets and with the I/O thread. */
void virtio_mmio_io_lock(struct virtio_mmio *t);
void virtio_mmio_io_unlock(struct virtio_mmio *t);

/* The guest broke the protocol: set DEVICE_NEEDS_RESET, tell the driver,
 * log one line, stop using the queues until the driver resets us. */
void virtio_mmio_fail(struct virtio_mmio *t, const char *why);

/* The device's config space changed (a link went down, an announce is
 * asked): bump the generation and interrupt a live driver. */
void virtio_mmio_config_changed(struct virtio_mmio *t);

/* The features the driver accepted (0 before FEATURES_OK). */
uint64_t virtio_mmio_features(struct virtio_mmio *t);

/* Drives the interrupt line; tests replace it. */
extern void (*virtio_mmio_raise_irq)(struct virtio_mmio *t);

#endif
