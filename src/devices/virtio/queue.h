/* The split virtqueue (virtio 1.2, section 2.7) as a device sees it. Every
 * index, address, length and flag in it comes from the guest and is checked
 * here: a malformed queue makes virtq_pop() fail, and the device then marks
 * itself broken (DEVICE_NEEDS_RESET) instead of trusting it. */
#ifndef SMOLVM_DEVICES_VIRTIO_QUEUE_H
#define SMOLVM_DEVICES_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/memory.h"

#define VIRTQ_MAX_SIZE 1024
/* Longest chain a device accepts, direct and indirect descriptors counted
 * together; longer chains are refused as malformed. */
#define VIRTQ_MAX_CHAIN 256

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq {
    const struct guest_memory *mem;
    uint16_t size;        /* QueueNum, a power of 2 */
    bool ready;
    bool event_idx;       /* VIRTIO_F_EVENT_IDX negotiated */
    uint64_t desc_gpa, avail_gpa, used_gpa;
    uint16_t last_avail;  /* next avail ring slot to consume */
    uint16_t used_idx;    /* our copy of used->idx */
    uint16_t signalled_used; /* used_idx when we last notified (event idx) */
    bool signalled_valid;
    bool notify_off;      /* the driver need not kick: we are draining the ring */
};

/* One buffer of a chain, already translated to host memory. */
struct virtq_buf {
    uint8_t *addr;
    uint32_t len;
    bool writable; /* device-writable (VIRTQ_DESC_F_WRITE) */
};

struct virtq_chain {
    uint16_t head;
    unsigned count;    /* buffers in bufs[] */
    unsigned readable; /* the first `readable` bufs are driver->device */
    uint64_t readable_bytes, writable_bytes;
    struct virtq_buf bufs[VIRTQ_MAX_CHAIN];
};

/* Checks the rings lie in guest RAM once the driver sets QueueReady. */
int virtq_validate(const struct virtq *q) __attribute__((warn_unused_result));

/* 1: a chain was taken; 0: none available; <0: the queue is malformed
 * (bad avail index, descriptor index, address, length, loop, over-long
 * chain, readable buffer after a writable one, nested indirect table). */
int virtq_pop(struct virtq *q, struct virtq_chain *chain) __attribute__((warn_unused_result));

/* Kicks while the device drains the ring anyway cost the guest an exit
 * each: off asks the driver not to kick (avail_event left behind, or
 * VRING_USED_F_NO_NOTIFY); on asks again and says whether chains arrived
 * meanwhile (the device then drains again: none is left unseen). */
void virtq_notify_off(struct virtq *q);
bool virtq_notify_on(struct virtq *q) __attribute__((warn_unused_result));

/* Returns the chain with `written` bytes written by the device. */
int virtq_push(struct virtq *q, uint16_t head, uint32_t written)
    __attribute__((warn_unused_result));

/* After pushes: does the driver want an interrupt (flags or used_event)? */
bool virtq_needs_interrupt(struct virtq *q);

/* Copies between a chain's buffers and flat memory, starting at offset
 * into the readable (or writable) part. Return bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *dst, size_t len);
size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *src, size_t len);

/* The chain's readable (writable) bytes from offset on as iovecs into
 * the guest's memory (for a device that hands them to writev/readv
 * without a copy): how many of iov[0..cap) were filled; *bytes their
 * total. */
struct iovec;
unsigned virtq_chain_readable_iov(const struct virtq_chain *c, size_t offset, struct iovec *iov,
                                  unsigned cap, size_t *bytes);
unsigned virtq_chain_writable_iov(const struct virtq_chain *c, size_t offset, struct iovec *iov,
                                  unsigned cap, size_t *bytes);

#endif
