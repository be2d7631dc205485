#include "devices/virtio/queue.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "util/err.h"

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

#define DESC_SIZE 16
#define RING_HEADER 4 /* flags, idx */

static uint64_t avail_bytes(uint16_t size) { return RING_HEADER + 2ull * size + 2; }
static uint64_t used_bytes(uint16_t size) { return RING_HEADER + 8ull * size + 2; }

static bool overlap(uint64_t a, uint64_t a_len, uint64_t b, uint64_t b_len)
{
    return a < b + b_len && b < a + a_len;
}

int virtq_validate(const struct virtq *q)
{
    if (q->size == 0 || q->size > VIRTQ_MAX_SIZE || (q->size & (q->size - 1)))
        return err_plain(EINVAL, "queue size %u is not a power of 2 up to %d", q->size,
                         VIRTQ_MAX_SIZE);
    if (!gpa_ptr(q->mem, q->desc_gpa, (uint64_t)DESC_SIZE * q->size) ||
        !gpa_ptr(q->mem, q->avail_gpa, avail_bytes(q->size)) ||
        !gpa_ptr(q->mem, q->used_gpa, used_bytes(q->size)))
        return err_plain(EFAULT, "queue rings lie outside guest RAM");
    if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
        return err_plain(EINVAL, "queue rings are misaligned");
    /* The device writes the used ring: laid over the avail ring, each
     * push would move the avail index and a single kick would serve
     * forever (found by fuzz_device_state); over the descriptors, it
     * would rewrite a chain as it is walked. */
    if (overlap(q->used_gpa, used_bytes(q->size), q->avail_gpa, avail_bytes(q->size)) ||
        overlap(q->used_gpa, used_bytes(q->size), q->desc_gpa, (uint64_t)DESC_SIZE * q->size))
        return err_plain(EINVAL, "the used ring overlaps the avail ring or the descriptors");
    return 0;
}

static uint16_t *avail_ring(const struct virtq *q)
{
    return gpa_ptr(q->mem, q->avail_gpa, avail_bytes(q->size));
}

static uint8_t *used_ring(const struct virtq *q)
{
    return gpa_ptr(q->mem, q->used_gpa, used_bytes(q->size));
}

static int add_buf(struct virtq_chain *c, const struct virtq *q, const struct vring_desc *d)
{
    bool writable = d->flags & VIRTQ_DESC_F_WRITE;
    uint8_t *p = NULL;

    if (c->count == VIRTQ_MAX_CHAIN)
        return err_plain(E2BIG, "descriptor chain longer than %d", VIRTQ_MAX_CHAIN);
    if (!writable && c->readable != c->count)
        return err_plain(EINVAL, "readable descriptor after a writable one");
    if (d->len) {
        p = gpa_ptr(q->mem, d->addr, d->len);
        if (!p)
            return err_plain(EFAULT, "descriptor buffer 0x%llx+%u is outside guest RAM",
                             (unsigned long long)d->addr, d->len);
        if (writable) /* the device writes it: a live migration sends it again */
            guest_memory_mark_dirty(q->mem, d->addr, d->len);
    }
    c->bufs[c->count++] = (struct virtq_buf){p, d->len, writable};
    if (writable)
        c->writable_bytes += d->len;
    else {
        c->readable++;
        c->readable_bytes += d->len;
    }
    return 0;
}

/* Follows a chain through table[0..table_size). A chain with more links
 * than the table has entries must revisit one: that is a loop. */
static int walk(const struct virtq *q, struct virtq_chain *c, const uint8_t *table,
                uint32_t table_size, uint16_t idx, bool in_indirect)
{
    for (uint32_t steps = 0;; steps++) {
        struct vring_desc d;
        int r;

        if (idx >= table_size)
            return err_plain(EINVAL, "descriptor index %u out of range", idx);
        if (steps >= table_size)
            return err_plain(ELOOP, "descriptor chain loops");
        memcpy(&d, table + (size_t)idx * DESC_SIZE, sizeof(d)); /* read each once */
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            const uint8_t *sub;
            if (in_indirect || (d.flags & VIRTQ_DESC_F_NEXT))
                return err_plain(EINVAL, "nested or chained indirect descriptor table");
            if (d.len == 0 || d.len % DESC_SIZE)
                return err_plain(EINVAL, "indirect table of %u bytes", d.len);
            sub = gpa_ptr(q->mem, d.addr, d.len);
            if (!sub)
                return err_plain(EFAULT, "indirect table outside guest RAM");
            return walk(q, c, sub, d.len / DESC_SIZE, 0, true);
        }
        r = add_buf(c, q, &d);
        if (r < 0)
            return r;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        idx = d.next;
    }
}

int virtq_pop(struct virtq *q, struct virtq_chain *c)
{
    uint16_t *avail = avail_ring(q);
    const uint8_t *desc = gpa_ptr(q->mem, q->desc_gpa, (uint64_t)DESC_SIZE * q->size);
    uint16_t avail_idx, head;
    int r;

    if (!q->ready || !avail || !desc)
        return err_plain(EINVAL, "queue used before it is ready");
    /* Acquire pairs with the driver's write barrier between filling the
     * ring slot and publishing avail->idx. */
    avail_idx = __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE);
    if (avail_idx == q->last_avail)
        return 0;
    if ((uint16_t)(avail_idx - q->last_avail) > q->size)
        return err_plain(EINVAL, "avail index moved %u entries in a queue of %u",
                         (uint16_t)(avail_idx - q->last_avail), q->size);
    head = avail[2 + q->last_avail % q->size];
    c->head = head;
    c->count = c->readable = 0;
    c->readable_bytes = c->writable_bytes = 0;
    r = walk(q, c, desc, q->size, head, false);
    if (r < 0)
        return r;
    q->last_avail++;
    if (q->event_idx && !q->notify_off) {
        /* avail_event: ask to be notified when the driver adds past this. */
        uint8_t *used = used_ring(q);
        __atomic_store_n((uint16_t *)(used + RING_HEADER + 8ull * q->size), q->last_avail,
                         __ATOMIC_RELEASE);
        /* Store-load order, which only a full fence keeps: the next pop's
         * read of avail->idx must come after this store is visible, or a
         * driver adding a chain meanwhile reads the older avail_event,
         * does not kick, and the device, having read the older idx, waits
         * for a kick that never comes (pairs with the driver's barrier
         * between publishing avail->idx and reading avail_event). */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
    return 1;
}

#define VRING_USED_F_NO_NOTIFY 1

void virtq_notify_off(struct virtq *q)
{
    uint8_t *used = used_ring(q);

    if (q->notify_off || !used)
        return;
    q->notify_off = true;
    if (!q->event_idx)
        __atomic_store_n((uint16_t *)used, VRING_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
}

bool virtq_notify_on(struct virtq *q)
{
    uint8_t *used = used_ring(q);
    uint16_t *avail = avail_ring(q);

    if (!used || !avail)
        return false;
    q->notify_off = false;
    if (q->event_idx)
        __atomic_store_n((uint16_t *)(used + RING_HEADER + 8ull * q->size), q->last_avail,
                         __ATOMIC_RELAXED);
    else
        __atomic_store_n((uint16_t *)used, 0, __ATOMIC_RELAXED);
    /* Our request must be visible before we look for chains the driver
     * added without kicking (pairs with its barrier before reading it). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE) != q->last_avail;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
    uint8_t *used = used_ring(q);
    uint32_t elem[2] = {head, written};

    if (!used)
        return err_plain(EFAULT, "used ring outside guest RAM");
    memcpy(used + RING_HEADER + 8ull * (q->used_idx % q->size), elem, sizeof(elem));
    q->used_idx++;
    /* Release pairs with the driver's read barrier after it reads
     * used->idx: the element above is visible before the index. */
    __atomic_store_n((uint16_t *)(used + 2), q->used_idx, __ATOMIC_RELEASE);
    guest_memory_mark_dirty(q->mem, q->used_gpa, used_bytes(q->size));
    return 0;
}

bool virtq_needs_interrupt(struct virtq *q)
{
    uint16_t *avail = avail_ring(q);
    uint16_t old = q->signalled_used, event;
    bool valid = q->signalled_valid;

    if (!avail)
        return false;
    /* Full barrier: our used->idx store must be visible before we read the
     * driver's suppression state (pairs with the driver's barrier between
     * writing used_event/flags and re-reading used->idx). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    q->signalled_used = q->used_idx;
    q->signalled_valid = true;
    if (!q->event_idx)
        return !(__atomic_load_n(&avail[0], __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    if (!valid)
        return true;
    event = __atomic_load_n(&avail[2 + q->size], __ATOMIC_RELAXED);
    return (uint16_t)(q->used_idx - event - 1) < (uint16_t)(q->used_idx - old);
}

static size_t chain_copy(const struct virtq_chain *c, bool writable, size_t offset, void *flat,
                         size_t len, bool to_chain)
{
    size_t done = 0;
    unsigned first = writable ? c->readable : 0, last = writable ? c->count : c->readable;

    for (unsigned i = first; i < last && done < len; i++) {
        const struct virtq_buf *b = &c->bufs[i];
        size_t n;
        if (offset >= b->len) {
            offset -= b->len;
            continue;
        }
        n = b->len - offset;
        if (n > len - done)
            n = len - done;
        if (to_chain)
            memcpy(b->addr + offset, (const uint8_t *)flat + done, n);
        else
            memcpy((uint8_t *)flat + done, b->addr + offset, n);
        done += n;
        offset = 0;
    }
    return done;
}

size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *dst, size_t len)
{
    return chain_copy(c, false, offset, dst, len, false);
}

size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *src, size_t len)
{
    return chain_copy(c, true, offset, (void *)src, len, true);
}

/* bufs[first..end) from offset on as iovecs. */
static unsigned chain_iov(const struct virtq_chain *c, unsigned first, unsigned end, size_t offset,
                          struct iovec *iov, unsigned cap, size_t *bytes)
{
    unsigned n = 0;

    *bytes = 0;
    for (unsigned i = first; i < end && n < cap; i++) {
        const struct virtq_buf *b = &c->bufs[i];
        if (offset >= b->len) {
            offset -= b->len;
            continue;
        }
        iov[n++] = (struct iovec){b->addr + offset, b->len - offset};
        *bytes += b->len - offset;
        offset = 0;
    }
    return n;
}

unsigned virtq_chain_readable_iov(const struct virtq_chain *c, size_t offset, struct iovec *iov,
                                  unsigned cap, size_t *bytes)
{
    return chain_iov(c, 0, c->readable, offset, iov, cap, bytes);
}

unsigned virtq_chain_writable_iov(const struct virtq_chain *c, size_t offset, struct iovec *iov,
                                  unsigned cap, size_t *bytes)
{
    return chain_iov(c, c->readable, c->count, offset, iov, cap, bytes);
}
