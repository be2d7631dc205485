/* virtio-net (virtio 1.2, section 5.1) over a frame backend (net/backend.h):
 * one receive and one transmit queue and the control queue, mergeable
 * receive buffers, checksum offload both ways, link status and announce.
 *
 * Frames move off the vCPU threads: the transport's I/O thread serves the
 * guest's kicks (transmit, control), and a thread of the device's own
 * polls the backend (receive, and transmit once a full backend has room
 * again). Both work under the transport's io lock, so resets and saves
 * see a quiet device.
 *
 * A socket's frame (--net user) is received straight into the guest's
 * buffers: its length is read first, buffers for it found, then the frame
 * read into them, with no copy in between. A TAP cannot tell a frame's
 * length before it is read: its frames are read into the device, then
 * copied.
 *
 * Host memory does not grow with what a guest does not read: the device
 * holds at most one received frame (a TAP's); while the guest posts no
 * buffers it stops reading the backend, whose socket (bounded by the
 * kernel) fills and whose peer then drops. It reads again on the guest's
 * kick, or after RX_RECHECK_MS if buffers came without one (counted). A
 * guest's frames that no peer may see are dropped and counted
 * (virtio_net_dropped(), `ps --json`); a chain that is not a request at
 * all marks the device DEVICE_NEEDS_RESET. */
#include "devices/virtio/net.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/vm.h"
#include "devices/device.h"
#include "devices/virtio/mmio.h"
#include "net/backend.h"
#include "net/config.h"
#include "net/filter.h"
#include "util/err.h"
#include "util/iov.h"
#include "util/le.h"
#include "util/trace.h"
#include "confine/confine.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_NET_F_CSUM (1ull << 0)
#define VIRTIO_NET_F_GUEST_CSUM (1ull << 1)
#define VIRTIO_NET_F_MTU (1ull << 3)
#define VIRTIO_NET_F_GUEST_TSO4 (1ull << 7)
#define VIRTIO_NET_F_GUEST_TSO6 (1ull << 8)
#define VIRTIO_NET_F_HOST_TSO4 (1ull << 11)
#define VIRTIO_NET_F_HOST_TSO6 (1ull << 12)
#define VIRTIO_NET_F_MAC (1ull << 5)
#define VIRTIO_NET_F_MRG_RXBUF (1ull << 15)
#define VIRTIO_NET_F_STATUS (1ull << 16)
#define VIRTIO_NET_F_CTRL_VQ (1ull << 17)
#define VIRTIO_NET_F_GUEST_ANNOUNCE (1ull << 21)
#define VIRTIO_NET_F_CTRL_MAC_ADDR (1ull << 23)
#define FEATURES                                                                           \
    (VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_MTU | VIRTIO_NET_F_MAC |   \
     VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_CTRL_VQ |                 \
     VIRTIO_NET_F_GUEST_ANNOUNCE | VIRTIO_NET_F_CTRL_MAC_ADDR)
/* Offered only over a backend that takes the header (a TAP, IFF_VNET_HDR). */
#define OFFLOAD_FEATURES                                                                   \
    (VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_HOST_TSO4 |          \
     VIRTIO_NET_F_HOST_TSO6)

#define HDR_F_NEEDS_CSUM 1
#define HDR_F_DATA_VALID 2
#define HDR_GSO_NONE 0
#define HDR_GSO_TCPV4 1
#define HDR_GSO_TCPV6 4
#define HDR_GSO_ECN 0x80
#define HDR_NUM_BUFFERS 10 /* offset of num_buffers in the header */

#define STATUS_LINK_UP 1
#define STATUS_ANNOUNCE 2

#define CTRL_MAC 1
#define CTRL_MAC_ADDR_SET 1
#define CTRL_ANNOUNCE 3
#define CTRL_ANNOUNCE_ACK 0
#define CTRL_OK 0
#define CTRL_ERR 1

#define RXQ 0
#define TXQ 1
#define CTRLQ 2
#define QUEUE_SIZE 256
#define CONFIG_BYTES 12   /* mac, status, max_virtqueue_pairs, mtu */
#define RX_BUDGET 256     /* frames per wake-up, so transmit gets its turn */
#define RX_IOV 1024       /* guest buffers one received frame may fill */
/* While a frame waits for guest buffers the device also looks again this
 * often on its own: a lost kick then costs this long, not a TCP timeout
 * (seconds), and is counted (virtio_net_rx_unkicked). */
#define RX_RECHECK_MS 250

static uint64_t dropped_frames, unkicked_waits;

uint64_t virtio_net_dropped(void)
{
    return __atomic_load_n(&dropped_frames, __ATOMIC_RELAXED);
}

uint64_t virtio_net_rx_unkicked(void)
{
    return __atomic_load_n(&unkicked_waits, __ATOMIC_RELAXED);
}

/* The monotonic clock in ms (trace's clock: one source for durations). */
static int64_t now_ms(void)
{
    return (int64_t)(trace_now_us() / 1000);
}


/* ---- the transmit path (no device state: tests and the fuzzer call it) ---- */

/* RFC 1071's sum, 8 bytes an addition: the ones'-complement sum does not
 * depend on the order of the bytes in a word (RFC 1071 2(B)), so words are
 * loaded in the host's order and the 16-bit result swapped once at the end.
 * Two bytes an addition cost the VMM a pass of 3.5 instructions a byte over
 * every 64 KiB frame of --net user. */
static uint16_t internet_checksum(const uint8_t *p, size_t len)
{
    uint64_t sum = 0, word;

    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the swap below is for LE");
    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&word, p, 8);
        sum += word;
        sum += sum < word; /* the end-around carry; cannot carry again */
    }
    word = 0;
    memcpy(&word, p, len); /* an odd last byte is the high byte of a zero-padded word */
    sum += word;
    sum += sum < word;
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~__builtin_bswap16((uint16_t)sum);
}

/* A transmit request is device-readable only and starts with a header. */
static int tx_chain_check(const struct virtq_chain *c)
{
    if (c->readable != c->count)
        return err_plain(EINVAL, "transmit chain with device-writable buffers");
    if (c->readable_bytes < VIRTIO_NET_HDR_BYTES)
        return err_plain(EINVAL, "transmit chain without a virtio-net header");
    return 0;
}

int virtio_net_tx_frame(const struct virtq_chain *c, bool csum_offload, size_t max_frame,
                        uint8_t *frame, size_t *len)
{
    uint8_t hdr[VIRTIO_NET_HDR_BYTES];
    size_t start, at;
    uint64_t n;
    uint16_t sum;

    if (tx_chain_check(c) < 0)
        return -EINVAL;
    virtq_chain_read(c, 0, hdr, sizeof(hdr)); /* read once, used from here */
    n = c->readable_bytes - VIRTIO_NET_HDR_BYTES;
    if (n > max_frame || n < VIRTIO_NET_MIN_FRAME || hdr[1] != HDR_GSO_NONE)
        return VIRTIO_NET_TX_DROP;
    virtq_chain_read(c, VIRTIO_NET_HDR_BYTES, frame, n);
    if (hdr[0] & HDR_F_NEEDS_CSUM) {
        start = get_le(hdr + 6, 2);
        at = start + get_le(hdr + 8, 2);
        if (!csum_offload || at + 2 > n)
            return VIRTIO_NET_TX_DROP;
        /* The field holds the pseudo-header's sum; the sum over the
         * rest completes it. 0 is sent as 0xffff (the same in ones'
         * complement; for UDP 0 would mean "no checksum"). */
        sum = internet_checksum(frame + start, n - start);
        sum = sum ? sum : 0xffff;
        frame[at] = (uint8_t)(sum >> 8);
        frame[at + 1] = (uint8_t)sum;
    }
    *len = n;
    return 0;
}

int virtio_net_tx_with_header(const struct virtq_chain *c, bool csum_offload, bool host_tso4,
                              bool host_tso6, uint8_t *out, size_t *len)
{
    uint8_t *hdr = out;
    uint64_t n;
    unsigned gso;

    if (tx_chain_check(c) < 0)
        return -EINVAL;
    n = c->readable_bytes - VIRTIO_NET_HDR_BYTES;
    if (n < VIRTIO_NET_MIN_FRAME || n > NET_MAX_FRAME)
        return VIRTIO_NET_TX_DROP;
    virtq_chain_read(c, 0, out, VIRTIO_NET_HDR_BYTES + n); /* read once, used from here */
    gso = hdr[1] & (uint8_t)~HDR_GSO_ECN;
    if (gso == HDR_GSO_NONE ? n > VIRTIO_NET_MAX_FRAME
                            : !((gso == HDR_GSO_TCPV4 && host_tso4) ||
                                (gso == HDR_GSO_TCPV6 && host_tso6)) ||
                                  !(hdr[0] & HDR_F_NEEDS_CSUM) || get_le(hdr + 4, 2) == 0)
        return VIRTIO_NET_TX_DROP; /* segments need their size and checksums */
    if (hdr[0] & HDR_F_NEEDS_CSUM &&
        (!csum_offload || get_le(hdr + 6, 2) + get_le(hdr + 8, 2) + 2 > n))
        return VIRTIO_NET_TX_DROP;
    put_le(hdr + HDR_NUM_BUFFERS, 0, 2);
    *len = VIRTIO_NET_HDR_BYTES + n;
    return 0;
}

/* ---- the device ---- */

struct vnet {
    struct vm *vm;
    struct virtio_mmio *transport;
    struct net_backend *backend;
    /* vnet_ops with the features of this backend: segmentation offloads
     * over a TAP with IFF_VNET_HDR. */
    struct virtio_device_ops ops;
    bool checksums_valid; /* the backend's frames carry correct checksums */
    bool with_header;     /* the backend's frames carry the virtio-net header */
    uint16_t mtu;         /* the link's: --net user's 64 KiB, else Ethernet's */
    size_t max_frame;     /* the largest frame without segmentation, each way */
    uint64_t offloads_set; /* the features the backend's offloads were set for */
    pthread_mutex_t cfg_lock; /* mac, status: config reads come from vCPUs */
    uint8_t mac[6];
    uint16_t status;
    int wake_fd, stop_fd;
    pthread_t thread;
    bool thread_running;
    /* Under the transport's io lock: */
    bool backend_gone;
    bool tx_blocked;  /* the backend had no room: resume on POLLOUT */
    bool rx_waiting;  /* no guest buffers for rx_frame: resume on a kick */
    size_t rx_len;    /* a frame read, not yet given to the guest (0: none) */
    uint8_t rx_frame[VIRTIO_NET_HDR_BYTES + NET_MAX_FRAME];
    uint8_t tx_frame[VIRTIO_NET_HDR_BYTES + NET_MAX_FRAME];
    struct virtq_chain chain;
    unsigned rx_iov_count;
    struct iovec rx_iov[RX_IOV];      /* the guest's buffers for one frame */
    struct iovec rx_data_iov[RX_IOV]; /* the same past the header */
    uint64_t dropped;
    /* What tells a stall in the device from one elsewhere (a guest's TCP,
     * the NAT): frames given, times a frame waited for guest buffers, the
     * longest wait, waits that ended without the guest's kick. */
    uint64_t rx_frames, rx_waits, rx_unkicked;
    int64_t rx_wait_since_ms, rx_wait_longest_ms; /* since: 0 when none waits */
    uint16_t heads[QUEUE_SIZE];
    uint32_t lens[QUEUE_SIZE];
};

static void count_drop(struct vnet *n)
{
    n->dropped++;
    __atomic_fetch_add(&dropped_frames, 1, __ATOMIC_RELAXED);
}

static void vnet_read_config(void *dev, uint32_t offset, uint8_t *data, unsigned size)
{
    struct vnet *n = dev;
    uint8_t cfg[CONFIG_BYTES] = {0};

    pthread_mutex_lock(&n->cfg_lock);
    memcpy(cfg, n->mac, 6);
    put_le(cfg + 6, n->status, 2);
    pthread_mutex_unlock(&n->cfg_lock);
    put_le(cfg + 8, 1, 2); /* max_virtqueue_pairs */
    put_le(cfg + 10, n->mtu, 2);
    memcpy(data, cfg + offset, size);
}

static void set_status(struct vnet *n, uint16_t set, uint16_t clear)
{
    pthread_mutex_lock(&n->cfg_lock);
    n->status = (uint16_t)((n->status | set) & ~clear);
    pthread_mutex_unlock(&n->cfg_lock);
}

static void wake(struct vnet *n)
{
    uint64_t one = 1;
    if (write(n->wake_fd, &one, sizeof(one)) < 0)
        return; /* the counter is full: the thread is awake anyway */
}

/* A backend that takes the header does for the guest what it negotiated
 * to receive: checksums left to it, large TCP segments (its kernel sends
 * neither otherwise). Called as features may have changed. io lock held. */
static void set_offloads(struct vnet *n, uint64_t features)
{
    if (!n->with_header || features == n->offloads_set || n->backend_gone)
        return;
    n->offloads_set = features;
    if (net_backend_set_offloads(n->backend, features & VIRTIO_NET_F_GUEST_CSUM,
                                 features & VIRTIO_NET_F_GUEST_TSO4,
                                 features & VIRTIO_NET_F_GUEST_TSO6) < 0)
        fprintf(stderr, "smolvm: virtio-net: %s\n", err_msg());
}

/* One transmit chain into tx_frame: the frame alone (its checksum
 * completed here), or header and frame for a backend that takes both. */
static int tx_take(struct vnet *n, uint64_t features, size_t *len, size_t *header)
{
    bool csum = features & VIRTIO_NET_F_CSUM;

    *header = n->with_header ? VIRTIO_NET_HDR_BYTES : 0;
    if (n->with_header)
        return virtio_net_tx_with_header(&n->chain, csum, features & VIRTIO_NET_F_HOST_TSO4,
                                         features & VIRTIO_NET_F_HOST_TSO6, n->tx_frame, len);
    return virtio_net_tx_frame(&n->chain, csum, n->max_frame, n->tx_frame, len);
}

/* Transmit: everything the guest queued, until the backend is full. Held
 * back chains are taken again once it has room. io lock held. */
static void tx_process(struct vnet *n)
{
    struct virtq *q = virtio_mmio_queue(n->transport, TXQ);
    uint64_t features = virtio_mmio_features(n->transport);
    bool pushed = false;
    size_t len, header;
    int r = 0;

    if (!q)
        return;
    set_offloads(n, features);
    virtq_notify_off(q); /* no kicks while we drain */
again:
    while (!n->tx_blocked && (r = virtq_pop(q, &n->chain)) > 0) {
        r = tx_take(n, features, &len, &header);
        if (r < 0)
            break;
        if (r == 0 && !net_egress_allowed(&vm_config(n->vm)->net, n->tx_frame + header,
                                          len - header))
            r = VIRTIO_NET_TX_DROP; /* not on the allowlist */
        if (r == 0 && !n->backend_gone) {
            r = net_backend_send(n->backend, n->tx_frame, len);
            if (r == -EAGAIN) {
                q->last_avail--; /* not taken: served again on POLLOUT */
                n->tx_blocked = true;
                wake(n);
                r = 0;
                break;
            }
        }
        if (r != 0 || n->backend_gone)
            count_drop(n);
        if ((r = virtq_push(q, n->chain.head, 0)) < 0)
            break;
        pushed = true;
    }
    /* Drained (a full backend resumes us on POLLOUT instead): kicks again. */
    if (r == 0 && !n->tx_blocked && virtq_notify_on(q)) {
        virtq_notify_off(q);
        goto again;
    }
    if (r < 0)
        virtio_mmio_fail(n->transport, err_msg());
    if (pushed)
        virtio_mmio_used(n->transport, TXQ);
}

/* One receive chain as mergeable buffers give it: device-writable only. */
static int pop_rx(struct virtq *q, struct virtq_chain *c)
{
    int r = virtq_pop(q, c);
    if (r > 0 && (c->readable || c->writable_bytes == 0))
        return err_plain(EINVAL, "receive buffer that the device cannot write");
    return r;
}

/* Takes receive chains until they hold `total` bytes (header and frame):
 * their buffers in rx_iov (rx_iov_count), heads[] and lens[] (the bytes
 * each is to take). The count of chains; 0 when the ring holds too little
 * (none taken: the guest still owns them); <0 for a malformed queue. A
 * frame the chains cannot hold (without mergeable buffers, a first chain
 * too small; more than RX_IOV buffers) leaves *fits false: it is dropped
 * and the chains taken go back empty. */
static int rx_buffers(struct vnet *n, struct virtq *q, bool mergeable, size_t total, bool *fits)
{
    uint16_t start = q->last_avail;
    size_t done = 0, bytes;
    unsigned used = 0;
    int r;

    n->rx_iov_count = 0;
    *fits = true;
    while (done < total) {
        size_t take;
        if ((r = pop_rx(q, &n->chain)) <= 0) {
            if (r == 0 && used >= q->size)
                r = err_plain(EINVAL, "a full receive ring holds less than one frame");
            q->last_avail = start;
            return r;
        }
        take = n->chain.writable_bytes < total - done ? n->chain.writable_bytes : total - done;
        n->heads[used] = n->chain.head;
        n->lens[used++] = (uint32_t)take;
        done += take;
        n->rx_iov_count += virtq_chain_writable_iov(&n->chain, 0, n->rx_iov + n->rx_iov_count,
                                                    RX_IOV - n->rx_iov_count, &bytes);
        if ((!mergeable && take < total) || bytes < n->chain.writable_bytes) {
            *fits = false;
            break;
        }
    }
    return (int)used;
}

static int rx_push(struct vnet *n, struct virtq *q, unsigned used, bool empty)
{
    int r;

    for (unsigned i = 0; i < used; i++)
        if ((r = virtq_push(q, n->heads[i], empty ? 0 : n->lens[i])) < 0)
            return r;
    return 1;
}

/* Gives rx_frame (header in front) to the guest: 1 done (or dropped),
 * 0 not enough buffers (none taken), <0 malformed queue. */
static int rx_deliver(struct vnet *n, struct virtq *q, bool mergeable)
{
    size_t total = VIRTIO_NET_HDR_BYTES + n->rx_len;
    bool fits;
    int used = rx_buffers(n, q, mergeable, total, &fits);

    if (used <= 0)
        return used;
    if (!fits) {
        count_drop(n); /* a frame larger than the guest's buffers */
        return rx_push(n, q, (unsigned)used, true);
    }
    put_le(n->rx_frame + HDR_NUM_BUFFERS, (uint64_t)used, 2);
    iov_from_buf(n->rx_iov, (int)n->rx_iov_count, 0, n->rx_frame, total);
    return rx_push(n, q, (unsigned)used, false);
}

/* Reads the next frame and forgets it. */
static int rx_skip(struct vnet *n)
{
    count_drop(n);
    return net_backend_recv(n->backend, n->rx_frame, sizeof(n->rx_frame)) < 0 ? -EPIPE : 1;
}

/* A socket's next frame straight into the guest's buffers (no copy in
 * between): its length first, then buffers for it, then the frame. 1 a
 * frame given (or dropped), 0 no buffers for it (it waits in the socket:
 * host memory does not grow), -EAGAIN none waits, -ENOTSUP the backend
 * cannot say a frame's length (rx_take's copy instead), -EPIPE the backend
 * is gone, other <0 a malformed queue. */
static int rx_direct(struct vnet *n, struct virtq *q, uint64_t features)
{
    uint8_t hdr[VIRTIO_NET_HDR_BYTES] = {0};
    ssize_t len = net_backend_peek(n->backend), got;
    bool fits;
    int used, count;

    if (len <= 0)
        return len == -EAGAIN || len == -ENOTSUP ? (int)len : -EPIPE;
    if (len < VIRTIO_NET_MIN_FRAME || (size_t)len > n->max_frame)
        return rx_skip(n); /* more than the guest agreed to take */
    used = rx_buffers(n, q, features & VIRTIO_NET_F_MRG_RXBUF,
                      VIRTIO_NET_HDR_BYTES + (size_t)len, &fits);
    if (used <= 0)
        return used;
    if (!fits) {
        if (rx_skip(n) < 0)
            return -EPIPE;
        return rx_push(n, q, (unsigned)used, true);
    }
    count = iov_slice(n->rx_iov, (int)n->rx_iov_count, VIRTIO_NET_HDR_BYTES, (uint64_t)len,
                      n->rx_data_iov, RX_IOV);
    if (count < 0) { /* cannot be (the chains were sized for the frame): the
                      * frame is read and dropped, or it would be peeked again
                      * on every wake-up; the buffers stay the guest's */
        q->last_avail = (uint16_t)(q->last_avail - used);
        return rx_skip(n);
    }
    got = net_backend_recv_iov(n->backend, n->rx_data_iov, (unsigned)count);
    if (got != len) { /* cannot be either: the read took the frame whole or failed */
        q->last_avail = (uint16_t)(q->last_avail - used);
        count_drop(n);
        return got < 0 ? -EPIPE : 1;
    }
    if (n->checksums_valid && (features & VIRTIO_NET_F_GUEST_CSUM))
        hdr[0] = HDR_F_DATA_VALID;
    put_le(hdr + HDR_NUM_BUFFERS, (uint64_t)used, 2);
    iov_from_buf(n->rx_iov, (int)n->rx_iov_count, 0, hdr, sizeof(hdr));
    return rx_push(n, q, (unsigned)used, false);
}

static void backend_closed(struct vnet *n)
{
    if (n->backend_gone)
        return;
    n->backend_gone = true;
    fprintf(stderr, "smolvm: virtio-net: the network backend closed; the link is down\n");
    set_status(n, 0, STATUS_LINK_UP);
    virtio_mmio_config_changed(n->transport);
}

/* One frame from the backend into rx_frame, header in front: its length
 * without the header, 0 when it is to be dropped, <0 as the backend's. */
static ssize_t rx_take(struct vnet *n, uint64_t features)
{
    size_t header = n->with_header ? 0 : VIRTIO_NET_HDR_BYTES, largest = n->max_frame;
    ssize_t got = net_backend_recv(n->backend, n->rx_frame + header,
                                   sizeof(n->rx_frame) - header);
    unsigned gso;

    if (got <= 0)
        return got ? got : -EPIPE;
    if (!n->with_header) {
        memset(n->rx_frame, 0, VIRTIO_NET_HDR_BYTES);
        if (n->checksums_valid && (features & VIRTIO_NET_F_GUEST_CSUM))
            n->rx_frame[0] = HDR_F_DATA_VALID;
    } else { /* the backend's kernel wrote the header, for what the guest asked */
        got -= VIRTIO_NET_HDR_BYTES;
        gso = n->rx_frame[1] & (uint8_t)~HDR_GSO_ECN;
        if ((gso == HDR_GSO_TCPV4 && (features & VIRTIO_NET_F_GUEST_TSO4)) ||
            (gso == HDR_GSO_TCPV6 && (features & VIRTIO_NET_F_GUEST_TSO6)))
            largest = NET_MAX_FRAME;
        else if (gso != HDR_GSO_NONE)
            return 0; /* set before the guest's features changed */
        if (!(features & VIRTIO_NET_F_GUEST_CSUM)) {
            if (n->rx_frame[0] & HDR_F_NEEDS_CSUM)
                return 0; /* set before the guest's features changed */
            n->rx_frame[0] &= (uint8_t)~HDR_F_DATA_VALID; /* only for a guest that asked */
        }
    }
    if (got < VIRTIO_NET_MIN_FRAME || (size_t)got > largest)
        return 0; /* more than the guest agreed to take */
    n->rx_frame[HDR_NUM_BUFFERS] = 1;
    n->rx_frame[HDR_NUM_BUFFERS + 1] = 0;
    return got;
}

/* A frame found too few guest buffers: the device stops reading the
 * backend until the guest kicks (or RX_RECHECK_MS passes). */
static void rx_wait(struct vnet *n)
{
    n->rx_waiting = true;
    if (!n->rx_wait_since_ms) {
        n->rx_waits++;
        n->rx_wait_since_ms = now_ms();
    }
}

/* A wait for guest buffers ended (or the device does): how long it was. */
static void rx_wait_ended(struct vnet *n)
{
    int64_t waited;

    if (!n->rx_wait_since_ms)
        return;
    waited = now_ms() - n->rx_wait_since_ms;
    if (waited > n->rx_wait_longest_ms)
        n->rx_wait_longest_ms = waited;
    n->rx_wait_since_ms = 0;
}

/* A frame left the backend (given to the guest, or dropped). */
static void rx_taken(struct vnet *n)
{
    n->rx_frames++;
    rx_wait_ended(n);
}

/* Receive: frames from the backend into the guest's buffers while it
 * has some; whether any was taken. io lock held. */
static bool rx_process(struct vnet *n)
{
    uint64_t features = virtio_mmio_features(n->transport);
    bool pushed = false;
    int r = 0;

    set_offloads(n, features);
    for (unsigned i = 0; i < RX_BUDGET && !n->backend_gone; i++) {
        struct virtq *q = virtio_mmio_queue(n->transport, RXQ);
        if (!n->rx_len && q && (r = rx_direct(n, q, features)) != -ENOTSUP) {
            if (r == -EAGAIN || r == -EPIPE) {
                if (r == -EPIPE)
                    backend_closed(n);
                r = 0;
                break;
            }
            if (r == 0)
                rx_wait(n);
            if (r <= 0)
                break;
            rx_taken(n);
            pushed = true;
            continue;
        }
        r = 0; /* a TAP: read first, then buffers for what was read */
        if (!n->rx_len) {
            ssize_t got = rx_take(n, features);
            if (got == -EAGAIN)
                break;
            if (got < 0) {
                backend_closed(n);
                break;
            }
            if (got == 0) {
                count_drop(n);
                rx_taken(n);
                continue;
            }
            n->rx_len = (size_t)got;
        }
        if (!q) {
            rx_wait(n);
            break;
        }
        r = rx_deliver(n, q, features & VIRTIO_NET_F_MRG_RXBUF);
        if (r == 0)
            rx_wait(n);
        if (r <= 0)
            break;
        n->rx_len = 0;
        rx_taken(n);
        pushed = true;
    }
    if (r < 0) {
        n->rx_len = 0;
        virtio_mmio_fail(n->transport, err_msg());
    }
    if (pushed)
        virtio_mmio_used(n->transport, RXQ);
    return pushed;
}

/* RX_RECHECK_MS passed with a frame waiting for guest buffers and no kick:
 * buffers found now came without one (a lost notification, or a kick
 * later than that: counted and said once). io lock held. */
static void rx_recheck(struct vnet *n)
{
    n->rx_waiting = false;
    if (!rx_process(n))
        return; /* still too few buffers */
    n->rx_unkicked++;
    if (__atomic_fetch_add(&unkicked_waits, 1, __ATOMIC_RELAXED) == 0)
        fprintf(stderr, "smolvm: virtio-net: the guest added receive buffers without a kick "
                        "(found %d ms later)\n", RX_RECHECK_MS);
}

static void *vnet_thread(void *arg)
{
    struct vnet *n = arg;

    confine_thread(CONFINE_DEVICE, "virtio-net-rx");
    for (;;) {
        struct pollfd p[3];
        uint64_t count;
        bool waiting;
        int ready;

        virtio_mmio_io_lock(n->transport);
        waiting = n->rx_waiting;
        p[0] = (struct pollfd){
            .fd = n->backend_gone ? -1 : net_backend_fd(n->backend),
            .events = (short)((n->rx_waiting ? 0 : POLLIN) | (n->tx_blocked ? POLLOUT : 0)),
        };
        virtio_mmio_io_unlock(n->transport);
        p[1] = (struct pollfd){.fd = n->wake_fd, .events = POLLIN};
        p[2] = (struct pollfd){.fd = n->stop_fd, .events = POLLIN};
        ready = poll(p, 3, waiting ? RX_RECHECK_MS : -1);
        if (ready < 0)
            continue;
        if (p[2].revents)
            return NULL;
        virtio_mmio_io_lock(n->transport);
        if (ready == 0 && n->rx_waiting)
            rx_recheck(n);
        if (p[1].revents && read(n->wake_fd, &count, sizeof(count)) == sizeof(count))
            n->rx_waiting = false;
        if ((p[0].revents & (POLLHUP | POLLERR)) && !(p[0].revents & POLLIN))
            backend_closed(n);
        if (p[0].revents & POLLOUT) {
            n->tx_blocked = false;
            tx_process(n);
        }
        if (p[0].revents & POLLIN || p[1].revents)
            rx_process(n);
        virtio_mmio_io_unlock(n->transport);
    }
}

/* One control command: class, command, data; the device writes the ack. */
static long ctrl_serve(void *dev, const struct virtq_chain *c)
{
    struct vnet *n = dev;
    uint8_t cmd[2 + 6] = {0}, ack = CTRL_ERR;

    if (c->readable_bytes < 2 || c->writable_bytes < 1)
        return err_plain(EINVAL, "control command without a class or an ack byte");
    virtq_chain_read(c, 0, cmd, sizeof(cmd));
    if (cmd[0] == CTRL_ANNOUNCE && cmd[1] == CTRL_ANNOUNCE_ACK) {
        set_status(n, 0, STATUS_ANNOUNCE);
        ack = CTRL_OK;
    } else if (cmd[0] == CTRL_MAC && cmd[1] == CTRL_MAC_ADDR_SET && c->readable_bytes == 8) {
        pthread_mutex_lock(&n->cfg_lock);
        memcpy(n->mac, cmd + 2, 6);
        pthread_mutex_unlock(&n->cfg_lock);
        ack = CTRL_OK;
    }
    virtq_chain_write(c, 0, &ack, 1);
    return 1;
}

static void vnet_notify(void *dev, struct virtio_mmio *t, unsigned q)
{
    struct vnet *n = dev;

    if (q == RXQ) {
        /* Buffers for what waits: delivered here, one thread hop less; the
         * backend thread is woken only to poll its socket again. */
        virtio_mmio_io_lock(t);
        if (n->rx_waiting) {
            n->rx_waiting = false;
            rx_process(n);
            if (!n->rx_waiting)
                wake(n);
        }
        virtio_mmio_io_unlock(t);
    } else if (q == TXQ) {
        virtio_mmio_io_lock(t);
        tx_process(n);
        virtio_mmio_io_unlock(t);
    } else {
        virtio_mmio_serve(t, q, &n->chain, ctrl_serve, n);
    }
}

/* io lock held: nothing of the old driver's survives, not even a frame. */
static void vnet_reset(void *dev)
{
    struct vnet *n = dev;

    if (n->rx_len)
        count_drop(n);
    n->rx_len = 0;
    n->tx_blocked = false;
    n->rx_waiting = false;
    n->rx_wait_since_ms = 0;
    set_status(n, 0, STATUS_ANNOUNCE);
    if (n->wake_fd >= 0)
        wake(n);
}

/* The record: the transport's fields, then the MAC (version 1). */
#define VNET_STATE_VERSION 1
static int vnet_state(void *dev, struct state_io *io);

static const struct virtio_device_ops vnet_ops = {
    .name = "net",
    .device_id = VIRTIO_ID_NET,
    .features = FEATURES,
    .num_queues = 3,
    .queue_max = QUEUE_SIZE,
    .config_size = CONFIG_BYTES,
    .read_config = vnet_read_config,
    .queue_notify = vnet_notify,
    .reset = vnet_reset,
    .io_thread = true,
    .state = vnet_state,
    .state_version = VNET_STATE_VERSION,
};


/* ---- snapshots: the MAC after the transport's fields (its queues) ---- */

/* A restored guest is somewhere new: it announces itself (gratuitous ARP)
 * when it negotiated that, and keeps its MAC. */
static int vnet_state(void *dev, struct state_io *io)
{
    struct vnet *n = dev;
    bool announce;

    pthread_mutex_lock(&n->cfg_lock);
    state_bytes(io, n->mac, sizeof(n->mac));
    pthread_mutex_unlock(&n->cfg_lock);
    if (!state_restoring(io) || state_failed(io))
        return 0;
    announce = virtio_mmio_features(n->transport) & VIRTIO_NET_F_GUEST_ANNOUNCE;
    set_status(n, (uint16_t)(STATUS_LINK_UP | (announce ? STATUS_ANNOUNCE : 0)), 0);
    if (announce)
        virtio_mmio_config_changed(n->transport);
    return 0;
}

/* $SMOLVM_NET_STATS: the receive side's figures at exit (bench/net keeps
 * them beside each run's result: a stall shows where it was). */
static void say_stats(struct vnet *n)
{
    const char *want = getenv("SMOLVM_NET_STATS");

    if (!want || !*want)
        return;
    rx_wait_ended(n); /* a wait to the end: no frame taken */
    fprintf(stderr, "smolvm: virtio-net: %llu frames received; %llu waits for guest buffers, "
                    "longest %lld ms, %llu ended without a kick; %llu dropped\n",
            (unsigned long long)n->rx_frames, (unsigned long long)n->rx_waits,
            (long long)n->rx_wait_longest_ms, (unsigned long long)n->rx_unkicked,
            (unsigned long long)n->dropped);
}

static void vnet_destroy(void *state)
{
    struct vnet *n = state;
    uint64_t one = 1;

    if (!n)
        return;
    if (n->thread_running && write(n->stop_fd, &one, sizeof(one)) == sizeof(one))
        pthread_join(n->thread, NULL);
    if (n->thread_running)
        say_stats(n);
    virtio_mmio_destroy(n->transport);
    net_backend_close(n->backend);
    if (n->wake_fd >= 0)
        close(n->wake_fd);
    if (n->stop_fd >= 0)
        close(n->stop_fd);
    if (n->dropped)
        fprintf(stderr, "smolvm: virtio-net dropped %llu frames (not allowed out, oversized "
                        "or malformed, or larger than the guest's buffers)\n",
                (unsigned long long)n->dropped);
    pthread_mutex_destroy(&n->cfg_lock);
    free(n);
}

static int vnet_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    const struct vm_net_config *cfg = &vm_config(vm)->net;
    struct vnet *n;
    int r;

    *state = NULL;
    n = calloc(1, sizeof(*n));
    if (!n)
        return err_set(ENOMEM, "virtio-net");
    n->vm = vm;
    n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    n->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&n->cfg_lock, NULL);
    net_choose_mac(cfg, n->mac);
    n->status = STATUS_LINK_UP;
    n->checksums_valid = cfg->mode == VM_NET_USER; /* libslirp sums what it sends */
    n->mtu = cfg->mode == VM_NET_USER ? (uint16_t)net_user_mtu() : VIRTIO_NET_MTU;
    n->max_frame = n->mtu + VIRTIO_NET_FRAME_HEADERS;
    if (n->wake_fd < 0 || n->stop_fd < 0)
        r = err_set(errno, "virtio-net: eventfd");
    else
        r = net_backend_open(cfg, &n->backend);
    n->ops = vnet_ops;
    if (r == 0 && (n->with_header = net_backend_with_header(n->backend)))
        n->ops.features |= OFFLOAD_FEATURES;
    if (r == 0)
        r = virtio_mmio_create(vm, slot, &n->ops, n, &n->transport);
    if (r == 0 && confine_thread_start(&n->thread, CONFINE_DEVICE, vnet_thread, n) != 0)
        r = err_plain(EAGAIN, "virtio-net: cannot start its thread");
    if (r < 0) {
        vnet_destroy(n);
        return r;
    }
    n->thread_running = true;
    *state = n;
    return 0;
}

static const struct device_type virtio_net = {
    .name = "virtio-net",
    .create = vnet_create,
    .destroy = vnet_destroy,
};
DEVICE_REGISTER(virtio_net);
