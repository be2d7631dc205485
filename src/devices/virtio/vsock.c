/* virtio-vsock served by smolvm (see vsock.h for the host protocol and the
 * limits). All queue work and all host socket work run on the device's own
 * thread under the transport's I/O lock, so a pause (which takes that lock)
 * holds the device still and the vCPUs only signal an eventfd.
 *
 * Flow control (virtio 1.2, 5.10.6.3): every packet carries the sender's
 * buf_alloc and fwd_cnt. Guest->host: smolvm offers VSOCK_BUF_ALLOC per
 * connection and counts bytes handed to the host socket in fwd_cnt; what the
 * host socket does not take at once waits in a buffer of at most that size,
 * and a guest sending more than its credit is reset. Host->guest: smolvm
 * reads the host socket only while the guest has room (its buf_alloc minus
 * the bytes in flight), so a guest that never grants credit costs nothing. */
#include "devices/virtio/vsock.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/state_io.h"
#include "core/vm.h"
#include "devices/device.h"
#include "devices/virtio/mmio.h"
#include "util/err.h"
#include "util/le.h"
#include "confine/confine.h"

#define CONFIG_BYTES 8
/* Each queue's size. The driver fills its whole rx queue with 4 KiB
 * buffers at probe (that many allocations and descriptors before the
 * guest's init runs): 128 is QEMU's vhost-vsock's, and 512 KiB of buffers
 * in flight to the guest is ample for an agent's and forwarded ports'
 * streams. smolvm offered 256 before: bundles saved then still restore. */
#define QUEUE_SIZE 128
#define QUEUE_SIZE_SAVED_BEFORE 256
#define RST_BACKLOG 64 /* RSTs for unknown connections waiting for rx buffers */
#define LINE_MAX_BYTES 32
#define POLL_MS 250

enum conn_state {
    CONN_FREE,
    CONN_HOST_LINE,      /* accepted on the socket, reading "CONNECT <port>\n" */
    CONN_HOST_REQUESTED, /* REQUEST sent to the guest, awaiting RESPONSE */
    CONN_ESTABLISHED,
    CONN_CLOSING,        /* host side closed; the RST to the guest is pending */
};

/* Control packets owed to the guest. */
enum {
    OWE_REQUEST = 1,
    OWE_RESPONSE = 2,
    OWE_CREDIT_UPDATE = 4,
    OWE_SHUTDOWN = 8,
    OWE_RST = 16,
};

struct conn {
    enum conn_state state;
    int fd;
    uint32_t local_port, peer_port; /* host side, guest side */
    unsigned owed;
    uint32_t shutdown_flags;  /* for OWE_SHUTDOWN */
    uint64_t deadline_ms;     /* CONN_HOST_LINE, CONN_HOST_REQUESTED */
    char line[LINE_MAX_BYTES];
    size_t line_len;
    /* guest -> host */
    uint32_t fwd_cnt, fwd_cnt_told;
    uint8_t *buf;             /* bytes the host socket has not taken yet */
    size_t buf_len;
    bool guest_shut_send, guest_shut_rcv;
    bool close_when_drained;  /* the guest closed: forward what is left, then RST */
    /* host -> guest */
    uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
    bool host_readable, host_eof;
};

struct vsock {
    struct vm *vm;
    struct virtio_mmio *transport;
    uint64_t cid;
    char *path;       /* the host socket; NULL: none */
    int listen_fd;
    int wake_fd;
    pthread_t thread;
    bool thread_running;
    bool stopping;
    bool reset_requested;     /* the driver reset the device */
    bool transport_reset_owed;/* a start from a bundle: tell the guest */
    /* Told, not yet handled: the guest's handler resets every connected
     * socket, so a connection it accepted before would die with the old
     * ones. Host connections wait until it re-posts its event buffer (the
     * avail index moves; a kick is no sign: a restore kicks every queue),
     * or VSOCK_RESET_ACK_MS. */
    bool awaiting_reset_ack;
    uint16_t event_avail_at_reset; /* the event queue's avail index then */
    uint64_t reset_ack_deadline_ms;
    bool was_live;            /* the queues were usable on the last round */
    uint32_t next_local_port;
    struct conn conns[VSOCK_MAX_CONNS];
    struct vsock_hdr rst_backlog[RST_BACKLOG];
    unsigned rst_count;
    unsigned rr;              /* round robin over connections for rx */
    struct virtq_chain chain;
    uint8_t bounce[VSOCK_MAX_PAYLOAD];
};

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t out[VSOCK_HDR_BYTES])
{
    put_le(out + 0, h->src_cid, 8);
    put_le(out + 8, h->dst_cid, 8);
    put_le(out + 16, h->src_port, 4);
    put_le(out + 20, h->dst_port, 4);
    put_le(out + 24, h->len, 4);
    put_le(out + 28, h->type, 2);
    put_le(out + 30, h->op, 2);
    put_le(out + 32, h->flags, 4);
    put_le(out + 36, h->buf_alloc, 4);
    put_le(out + 40, h->fwd_cnt, 4);
}

void vsock_hdr_decode(const uint8_t in[VSOCK_HDR_BYTES], struct vsock_hdr *h)
{
    h->src_cid = le64(in + 0);
    h->dst_cid = le64(in + 8);
    h->src_port = le32(in + 16);
    h->dst_port = le32(in + 20);
    h->len = le32(in + 24);
    h->type = le16(in + 28);
    h->op = le16(in + 30);
    h->flags = le32(in + 32);
    h->buf_alloc = le32(in + 36);
    h->fwd_cnt = le32(in + 40);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wake(struct vsock *v)
{
    uint64_t one = 1;
    if (write(v->wake_fd, &one, sizeof(one)) < 0) {
        /* full counter: the thread is awake anyway */
    }
}

/* ---- connections ---- */

static struct conn *find_conn(struct vsock *v, uint32_t local_port, uint32_t peer_port)
{
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct conn *c = &v->conns[i];
        if (c->state != CONN_FREE && c->state != CONN_HOST_LINE && c->local_port == local_port &&
            c->peer_port == peer_port)
            return c;
    }
    return NULL;
}

static struct conn *new_conn(struct vsock *v, int fd, enum conn_state state)
{
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct conn *c = &v->conns[i];
        if (c->state == CONN_FREE) {
            *c = (struct conn){.state = state, .fd = fd};
            return c;
        }
    }
    return NULL;
}

static void close_host_side(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->buf_len = 0;
}

static void free_conn(struct conn *c)
{
    close_host_side(c);
    c->state = CONN_FREE;
}

/* The host side is gone: the guest learns it by an RST, then the slot is
 * free. A connection the guest never heard of is simply freed. */
static void reset_conn(struct conn *c)
{
    close_host_side(c);
    if (c->state == CONN_HOST_LINE) {
        c->state = CONN_FREE;
        return;
    }
    c->state = CONN_CLOSING;
    c->owed = OWE_RST;
}

static void close_all(struct vsock *v)
{
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
        if (v->conns[i].state != CONN_FREE)
            free_conn(&v->conns[i]);
    v->rst_count = 0;
}

/* An RST for a packet that names no connection of ours. */
static void owe_rst_to(struct vsock *v, const struct vsock_hdr *h)
{
    if (h->op == VSOCK_OP_RST || v->rst_count == RST_BACKLOG)
        return; /* never answer an RST; a guest flooding us loses answers */
    v->rst_backlog[v->rst_count++] = (struct vsock_hdr){
        .src_cid = VSOCK_HOST_CID, .dst_cid = v->cid, .src_port = h->dst_port,
        .dst_port = h->src_port, .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST};
}

/* What the guest may still send us on c without overrunning our buffer. */
static uint32_t peer_credit(const struct conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
    return in_flight > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static void maybe_tell_credit(struct conn *c)
{
    if (c->fwd_cnt - c->fwd_cnt_told >= VSOCK_BUF_ALLOC / 4)
        c->owed |= OWE_CREDIT_UPDATE;
}

/* Hands buffered guest bytes to the host socket; false when it is gone. */
static bool flush_to_host(struct conn *c)
{
    while (c->buf_len > 0) {
        ssize_t n = send(c->fd, c->buf, c->buf_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        memmove(c->buf, c->buf + n, c->buf_len - (size_t)n);
        c->buf_len -= (size_t)n;
        c->fwd_cnt += (uint32_t)n;
    }
    maybe_tell_credit(c);
    if (c->close_when_drained) {
        close_host_side(c);
        c->state = CONN_CLOSING;
        c->owed = OWE_RST;
    } else if (c->guest_shut_send) {
        shutdown(c->fd, SHUT_WR);
    }
    return true;
}

/* Guest payload for the host socket: sent at once when nothing waits,
 * else buffered within the credit the guest was given. */
static bool to_host(struct conn *c, const uint8_t *data, size_t len)
{
    size_t done = 0;

    if (c->buf_len + len > VSOCK_BUF_ALLOC)
        return false; /* past its credit */
    if (c->buf_len == 0) {
        ssize_t n = send(c->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return false;
        done = n > 0 ? (size_t)n : 0;
        c->fwd_cnt += (uint32_t)done;
    }
    if (done < len) {
        if (!c->buf && !(c->buf = malloc(VSOCK_BUF_ALLOC)))
            return false;
        memcpy(c->buf + c->buf_len, data + done, len - done);
        c->buf_len += len - done;
    }
    maybe_tell_credit(c);
    return true;
}

/* ---- guest -> host: the tx queue ---- */

static int host_connect(struct vsock *v, uint32_t port)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd;

    if (!v->path || snprintf(addr.sun_path, sizeof(addr.sun_path), "%s_%u", v->path, port) >=
                        (int)sizeof(addr.sun_path))
        return -1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void guest_request(struct vsock *v, const struct vsock_hdr *h)
{
    int fd = host_connect(v, h->dst_port);
    struct conn *c = fd >= 0 ? new_conn(v, fd, CONN_ESTABLISHED) : NULL;

    if (!c) {
        if (fd >= 0)
            close(fd);
        owe_rst_to(v, h);
        return;
    }
    c->local_port = h->dst_port;
    c->peer_port = h->src_port;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    c->owed = OWE_RESPONSE;
}

static void guest_response(struct conn *c)
{
    char ok[LINE_MAX_BYTES];
    int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);

    if (send(c->fd, ok, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n) {
        reset_conn(c);
        return;
    }
    c->state = CONN_ESTABLISHED;
}

static void guest_shutdown(struct conn *c, uint32_t flags)
{
    c->guest_shut_send |= flags & VSOCK_SHUTDOWN_SEND;
    c->guest_shut_rcv |= flags & VSOCK_SHUTDOWN_RCV;
    if (c->guest_shut_send && c->guest_shut_rcv)
        c->close_when_drained = true; /* the guest closed: it waits for our RST */
    if (c->buf_len == 0 && !flush_to_host(c))
        reset_conn(c);
}

static void on_established(struct vsock *v, struct conn *c, const struct vsock_hdr *h,
                           const struct virtq_chain *chain)
{
    switch (h->op) {
    case VSOCK_OP_RW:
        if (c->guest_shut_send || c->close_when_drained)
            break; /* after its own shutdown: ignored */
        virtq_chain_read(chain, VSOCK_HDR_BYTES, v->bounce, h->len);
        if (!to_host(c, v->bounce, h->len))
            reset_conn(c);
        break;
    case VSOCK_OP_CREDIT_UPDATE:
        break; /* the credit fields were taken already */
    case VSOCK_OP_CREDIT_REQUEST:
        c->owed |= OWE_CREDIT_UPDATE;
        break;
    case VSOCK_OP_SHUTDOWN:
        guest_shutdown(c, h->flags);
        break;
    default: /* REQUEST or RESPONSE on an open connection, unknown ops */
        reset_conn(c);
        break;
    }
}

static void guest_packet(struct vsock *v, const struct vsock_hdr *h,
                         const struct virtq_chain *chain)
{
    struct conn *c;

    if (h->src_cid != v->cid || h->dst_cid != VSOCK_HOST_CID)
        return; /* not from our guest, or not for the host: dropped */
    if (h->type != VSOCK_TYPE_STREAM) {
        owe_rst_to(v, h);
        return;
    }
    c = find_conn(v, h->dst_port, h->src_port);
    if (!c) {
        if (h->op == VSOCK_OP_REQUEST)
            guest_request(v, h);
        else
            owe_rst_to(v, h);
        return;
    }
    if (c->state == CONN_CLOSING)
        return; /* our RST is on its way */
    if (h->op == VSOCK_OP_RST) {
        free_conn(c);
        return;
    }
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    if (c->state == CONN_HOST_REQUESTED) {
        if (h->op == VSOCK_OP_RESPONSE)
            guest_response(c);
        else
            reset_conn(c);
        return;
    }
    on_established(v, c, h, chain);
}

/* One tx chain: a header, then len bytes of payload. */
static long serve_tx(void *dev, const struct virtq_chain *chain)
{
    struct vsock *v = dev;
    uint8_t raw[VSOCK_HDR_BYTES];
    struct vsock_hdr h;

    if (chain->readable_bytes < VSOCK_HDR_BYTES)
        return err_plain(EINVAL, "tx packet shorter than its header");
    virtq_chain_read(chain, 0, raw, sizeof(raw));
    vsock_hdr_decode(raw, &h);
    if (h.len > VSOCK_MAX_PAYLOAD || h.len > chain->readable_bytes - VSOCK_HDR_BYTES)
        return err_plain(EINVAL, "tx packet of %u bytes is longer than its buffer (%llu)", h.len,
                         (unsigned long long)(chain->readable_bytes - VSOCK_HDR_BYTES));
    guest_packet(v, &h, chain);
    return 0;
}

/* Every tx chain the guest made available. The used ring (and the
 * transport's interrupt bookkeeping) is touched only when a chain was
 * taken: this runs on every round of the thread, and a restored VM's state
 * must read back as it was restored. */
static void drain_tx(struct vsock *v)
{
    struct virtq *q = virtio_mmio_queue(v->transport, VSOCK_TXQ);
    bool pushed = false;
    int r = 0;

    if (!q)
        return;
    while ((r = virtq_pop(q, &v->chain)) > 0) {
        long served = serve_tx(v, &v->chain);
        if (served < 0) {
            r = (int)served;
            break;
        }
        if ((r = virtq_push(q, v->chain.head, 0)) < 0)
            break;
        pushed = true;
    }
    if (r < 0)
        virtio_mmio_fail(v->transport, err_msg());
    if (pushed)
        virtio_mmio_used(v->transport, VSOCK_TXQ);
}

/* ---- host -> guest: the rx queue ---- */

static struct vsock_hdr conn_hdr(struct vsock *v, struct conn *c, uint16_t op)
{
    c->fwd_cnt_told = c->fwd_cnt;
    return (struct vsock_hdr){
        .src_cid = VSOCK_HOST_CID, .dst_cid = v->cid, .src_port = c->local_port,
        .dst_port = c->peer_port, .type = VSOCK_TYPE_STREAM, .op = op,
        .buf_alloc = VSOCK_BUF_ALLOC, .fwd_cnt = c->fwd_cnt};
}

/* Bytes waiting on the host socket (0 with host_readable set: end of file). */
static int host_pending(struct conn *c)
{
    int n = 0;
    if (!c->host_readable || c->host_eof || c->guest_shut_rcv || c->close_when_drained)
        return -1;
    if (ioctl(c->fd, FIONREAD, &n) < 0)
        return 0;
    return n;
}

/* The next packet c owes the guest, without its payload: false when none. */
static bool conn_next(struct vsock *v, struct conn *c, struct vsock_hdr *h)
{
    if (c->owed & OWE_RST) {
        *h = conn_hdr(v, c, VSOCK_OP_RST);
        return true;
    }
    if ((c->owed & OWE_REQUEST) && !v->awaiting_reset_ack) {
        *h = conn_hdr(v, c, VSOCK_OP_REQUEST);
        return true;
    }
    if (c->owed & OWE_RESPONSE) {
        *h = conn_hdr(v, c, VSOCK_OP_RESPONSE);
        return true;
    }
    if (c->state == CONN_ESTABLISHED && host_pending(c) >= 0 &&
        (peer_credit(c) > 0 || host_pending(c) == 0)) {
        *h = conn_hdr(v, c, host_pending(c) == 0 ? VSOCK_OP_SHUTDOWN : VSOCK_OP_RW);
        return true;
    }
    if (c->owed & OWE_CREDIT_UPDATE) {
        *h = conn_hdr(v, c, VSOCK_OP_CREDIT_UPDATE);
        return true;
    }
    if (c->owed & OWE_SHUTDOWN) {
        *h = conn_hdr(v, c, VSOCK_OP_SHUTDOWN);
        h->flags = c->shutdown_flags;
        return true;
    }
    return false;
}

/* Fills chain with h (and for RW, host bytes); the bytes written. */
static uint32_t conn_emit(struct vsock *v, struct conn *c, struct vsock_hdr *h,
                          const struct virtq_chain *chain)
{
    uint8_t raw[VSOCK_HDR_BYTES];

    switch (h->op) {
    case VSOCK_OP_RST:
        free_conn(c);
        break;
    case VSOCK_OP_REQUEST:
        c->owed &= ~(unsigned)OWE_REQUEST;
        c->deadline_ms = now_ms() + VSOCK_ANSWER_TIMEOUT_MS;
        break;
    case VSOCK_OP_RESPONSE: c->owed &= ~(unsigned)OWE_RESPONSE; break;
    case VSOCK_OP_CREDIT_UPDATE: c->owed &= ~(unsigned)OWE_CREDIT_UPDATE; break;
    case VSOCK_OP_SHUTDOWN:
        if (h->flags == 0) { /* end of file on the host socket */
            h->flags = VSOCK_SHUTDOWN_SEND;
            c->host_eof = true;
        }
        c->owed &= ~(unsigned)OWE_SHUTDOWN;
        break;
    case VSOCK_OP_RW: {
        size_t room = chain->writable_bytes - VSOCK_HDR_BYTES, want = (size_t)host_pending(c);
        ssize_t n;
        if (want > room)
            want = room;
        if (want > peer_credit(c))
            want = peer_credit(c);
        if (want > sizeof(v->bounce))
            want = sizeof(v->bounce);
        n = recv(c->fd, v->bounce, want, MSG_DONTWAIT);
        if (n <= 0) { /* nothing after all: a credit update is harmless */
            c->host_readable = false;
            h->op = VSOCK_OP_CREDIT_UPDATE;
            break;
        }
        h->len = (uint32_t)n;
        c->tx_cnt += (uint32_t)n;
        virtq_chain_write(chain, VSOCK_HDR_BYTES, v->bounce, (size_t)n);
        if (host_pending(c) == 0)
            c->host_readable = false; /* poll says when there is more */
        break;
    }
    }
    vsock_hdr_encode(h, raw);
    virtq_chain_write(chain, 0, raw, sizeof(raw));
    return VSOCK_HDR_BYTES + h->len;
}

/* The next packet for the guest into chain: bytes written, 0 if none. */
static bool next_packet(struct vsock *v, struct vsock_hdr *h, struct conn **owner)
{
    if (v->rst_count > 0) {
        *h = v->rst_backlog[0];
        *owner = NULL;
        return true;
    }
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct conn *c = &v->conns[(v->rr + i) % VSOCK_MAX_CONNS];
        if (c->state != CONN_FREE && c->state != CONN_HOST_LINE && conn_next(v, c, h)) {
            v->rr = (v->rr + i + 1) % VSOCK_MAX_CONNS;
            *owner = c;
            return true;
        }
    }
    return false;
}

/* The packet h (of owner c, or from the RST backlog) into chain, which has
 * room for a header: the bytes written. */
static uint32_t emit_packet(struct vsock *v, struct vsock_hdr *h, struct conn *c,
                            const struct virtq_chain *chain)
{
    uint8_t raw[VSOCK_HDR_BYTES];

    if (c)
        return conn_emit(v, c, h, chain);
    vsock_hdr_encode(h, raw);
    memmove(v->rst_backlog, v->rst_backlog + 1, --v->rst_count * sizeof(*h));
    return (uint32_t)virtq_chain_write(chain, 0, raw, sizeof(raw));
}

static void fill_rx(struct vsock *v)
{
    struct virtq *q = virtio_mmio_queue(v->transport, VSOCK_RXQ);
    bool pushed = false;
    struct vsock_hdr h;
    struct conn *c;
    int r = 0;

    if (!q)
        return;
    while (next_packet(v, &h, &c) && (r = virtq_pop(q, &v->chain)) > 0) {
        if (v->chain.writable_bytes < VSOCK_HDR_BYTES) {
            r = err_plain(EINVAL, "rx buffer shorter than a packet header");
            break;
        }
        if ((r = virtq_push(q, v->chain.head, emit_packet(v, &h, c, &v->chain))) < 0)
            break;
        pushed = true;
    }
    if (r < 0)
        virtio_mmio_fail(v->transport, err_msg());
    if (pushed)
        virtio_mmio_used(v->transport, VSOCK_RXQ);
}

/* The driver's avail index of q: it moves when the guest posts a buffer,
 * kick or not (with EVENT_IDX the guest kicks only when asked to). */
static uint16_t avail_index(const struct virtq *q)
{
    uint16_t *idx = (uint16_t *)gpa_ptr(q->mem, q->avail_gpa + 2, 2);
    return idx ? __atomic_load_n(idx, __ATOMIC_ACQUIRE) : 0;
}

static void deliver_transport_reset(struct vsock *v)
{
    struct virtq *q = virtio_mmio_queue(v->transport, VSOCK_EVENTQ);
    uint8_t event[4];
    int r;

    if (!q || !v->transport_reset_owed)
        return;
    r = virtq_pop(q, &v->chain);
    if (r == 0)
        return; /* when the guest gives a buffer */
    if (r > 0 && v->chain.writable_bytes < sizeof(event))
        r = err_plain(EINVAL, "event buffer shorter than an event");
    if (r > 0) {
        v->awaiting_reset_ack = true;
        v->reset_ack_deadline_ms = now_ms() + VSOCK_RESET_ACK_MS;
        v->event_avail_at_reset = avail_index(q);
        put_le(event, VSOCK_EVENT_TRANSPORT_RESET, 4);
        virtq_chain_write(&v->chain, 0, event, sizeof(event));
        r = virtq_push(q, v->chain.head, sizeof(event));
    }
    if (r < 0) {
        virtio_mmio_fail(v->transport, err_msg());
        return;
    }
    v->transport_reset_owed = false;
    virtio_mmio_used(v->transport, VSOCK_EVENTQ);
}

/* The guest handled the reset (it re-posted the event buffer), or gave no
 * sign for VSOCK_RESET_ACK_MS: the requests held meanwhile get their time
 * to reach it from now. */
static void check_reset_ack(struct vsock *v)
{
    struct virtq *q = virtio_mmio_queue(v->transport, VSOCK_EVENTQ);
    uint64_t now = now_ms();

    if (!v->awaiting_reset_ack)
        return;
    if (q && avail_index(q) == v->event_avail_at_reset && now < v->reset_ack_deadline_ms)
        return;
    v->awaiting_reset_ack = false;
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
        if (v->conns[i].owed & OWE_REQUEST)
            v->conns[i].deadline_ms = now + VSOCK_CONNECT_TIMEOUT_MS;
}

/* ---- the host socket ---- */

static uint32_t free_local_port(struct vsock *v)
{
    for (;;) {
        uint32_t port = v->next_local_port++;
        if (v->next_local_port < (1u << 30))
            v->next_local_port = 1u << 30; /* ephemeral ports stay clear of services */
        bool used = false;
        for (unsigned i = 0; i < VSOCK_MAX_CONNS && !used; i++)
            used = v->conns[i].state != CONN_FREE && v->conns[i].local_port == port;
        if (!used)
            return port;
    }
}

static void host_accept(struct vsock *v)
{
    int fd = accept4(v->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    struct conn *c;

    if (fd < 0)
        return;
    c = new_conn(v, fd, CONN_HOST_LINE);
    if (!c) {
        close(fd); /* full: the client sees the connection closed */
        return;
    }
    c->deadline_ms = now_ms() + VSOCK_CONNECT_TIMEOUT_MS;
}

static bool parse_connect(const char *line, uint32_t *port)
{
    char *end;
    unsigned long v;

    if (strncmp(line, "CONNECT ", 8) != 0 || line[8] < '0' || line[8] > '9')
        return false;
    errno = 0;
    v = strtoul(line + 8, &end, 10);
    if (errno || v > UINT32_MAX || strcmp(end, "\n") != 0)
        return false;
    *port = (uint32_t)v;
    return true;
}

/* Reads the CONNECT line up to its newline and never past it: what the
 * client sends after it is the guest's. */
static void host_line(struct vsock *v, struct conn *c)
{
    char peek[LINE_MAX_BYTES];
    size_t room = sizeof(c->line) - 1 - c->line_len;
    ssize_t n = recv(c->fd, peek, room, MSG_PEEK | MSG_DONTWAIT);
    char *nl;
    uint32_t port;

    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            free_conn(c);
        return;
    }
    nl = memchr(peek, '\n', (size_t)n);
    n = nl ? nl - peek + 1 : n;
    if (recv(c->fd, c->line + c->line_len, (size_t)n, MSG_DONTWAIT) != n) {
        free_conn(c);
        return;
    }
    c->line_len += (size_t)n;
    c->line[c->line_len] = 0;
    if (!nl) {
        if (c->line_len == sizeof(c->line) - 1)
            free_conn(c); /* no line of ours is this long */
        return;
    }
    if (!parse_connect(c->line, &port)) {
        free_conn(c);
        return;
    }
    c->state = CONN_HOST_REQUESTED;
    c->local_port = free_local_port(v);
    c->peer_port = port;
    c->owed = OWE_REQUEST;
    c->deadline_ms = now_ms() + VSOCK_CONNECT_TIMEOUT_MS;
}

static void host_event(struct vsock *v, struct conn *c, short revents)
{
    if (c->state == CONN_HOST_LINE) {
        if (revents & (POLLIN | POLLHUP | POLLERR))
            host_line(v, c);
        return;
    }
    if (c->state != CONN_ESTABLISHED)
        return;
    if ((revents & POLLOUT) && !flush_to_host(c)) {
        reset_conn(c);
        return;
    }
    if (revents & (POLLIN | POLLHUP))
        c->host_readable = true;
    if ((revents & POLLERR) && c->state == CONN_ESTABLISHED)
        reset_conn(c);
}

static void expire(struct vsock *v)
{
    uint64_t now = now_ms();
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct conn *c = &v->conns[i];
        /* A request held for the guest's reset waits with it (bounded by
         * VSOCK_RESET_ACK_MS), then gets its answer time. */
        bool held = (c->owed & OWE_REQUEST) && v->awaiting_reset_ack;
        if ((c->state == CONN_HOST_LINE || c->state == CONN_HOST_REQUESTED) && !held &&
            now >= c->deadline_ms)
            reset_conn(c); /* the client sees its connection closed */
    }
}

/* ---- the device thread ---- */

/* The poll set for the next wait: fds[i] belongs to slot[i] (-1: the wake
 * eventfd, -2: the listening socket). */
static unsigned poll_set(struct vsock *v, struct pollfd *fds, int *slot)
{
    unsigned n = 0;
    bool room = false;

    fds[n] = (struct pollfd){.fd = v->wake_fd, .events = POLLIN};
    slot[n++] = -1;
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct conn *c = &v->conns[i];
        short events = 0;
        room |= c->state == CONN_FREE;
        if (c->state == CONN_HOST_LINE)
            events = POLLIN;
        else if (c->state == CONN_ESTABLISHED) {
            if (!c->host_readable && !c->host_eof && !c->guest_shut_rcv && peer_credit(c) > 0)
                events |= POLLIN;
            if (c->buf_len > 0)
                events |= POLLOUT;
        }
        /* Only what we wait for: a hung-up socket would else wake us
         * forever (POLLHUP cannot be masked). */
        if (events) {
            fds[n] = (struct pollfd){.fd = c->fd, .events = events};
            slot[n++] = (int)i;
        }
    }
    /* A full table leaves new clients waiting in the backlog until a slot frees. */
    if (v->listen_fd >= 0 && room) {
        fds[n] = (struct pollfd){.fd = v->listen_fd, .events = POLLIN};
        slot[n++] = -2;
    }
    return n;
}

/* One round of work on the queues and connections, under the I/O lock. */
static void work(struct vsock *v)
{
    bool live = virtio_mmio_queue(v->transport, VSOCK_TXQ) != NULL;

    if (v->reset_requested || (v->was_live && !live)) {
        close_all(v); /* the driver reset us, or the device broke */
        v->reset_requested = false;
    }
    v->was_live = live;
    check_reset_ack(v);
    expire(v); /* a guest without a driver lets its host clients go too */
    if (!live)
        return;
    drain_tx(v);
    fill_rx(v);
    deliver_transport_reset(v);
}

static void *vsock_thread(void *arg)
{
    struct vsock *v = arg;
    struct pollfd fds[VSOCK_MAX_CONNS + 2];
    int slot[VSOCK_MAX_CONNS + 2];
    unsigned n;

    confine_thread(CONFINE_VSOCK, "virtio-vsock");
    virtio_mmio_io_lock(v->transport);
    for (;;) {
        uint64_t count;
        work(v);
        if (v->stopping)
            break;
        n = poll_set(v, fds, slot);
        virtio_mmio_io_unlock(v->transport);
        /* Slots change only on this thread: the set stays valid while we wait. */
        /* Waiting for the guest to re-post its event buffer: look often. */
        int r = poll(fds, n, v->awaiting_reset_ack ? 2 : POLL_MS);
        virtio_mmio_io_lock(v->transport);
        if (r <= 0 || v->reset_requested)
            continue;
        for (unsigned i = 0; i < n; i++) {
            if (!fds[i].revents)
                continue;
            if (slot[i] == -1 && read(v->wake_fd, &count, sizeof(count)) < 0)
                continue;
            if (slot[i] == -2)
                host_accept(v);
            else if (slot[i] >= 0 && v->conns[slot[i]].fd == fds[i].fd)
                host_event(v, &v->conns[slot[i]], fds[i].revents);
        }
    }
    virtio_mmio_io_unlock(v->transport);
    return NULL;
}

/* ---- the packet engine alone, for the fuzzer ---- */

struct vsock *vsock_core_new(uint64_t cid, const char *host_path)
{
    struct vsock *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->cid = cid;
    v->listen_fd = v->wake_fd = -1;
    v->next_local_port = 1u << 30;
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
        v->conns[i].fd = -1;
    v->path = host_path ? strdup(host_path) : NULL;
    return v;
}

void vsock_core_free(struct vsock *v)
{
    if (!v)
        return;
    close_all(v);
    free(v->path);
    free(v);
}

long vsock_core_tx(struct vsock *v, const struct virtq_chain *chain)
{
    return serve_tx(v, chain);
}

uint32_t vsock_core_rx(struct vsock *v, const struct virtq_chain *chain)
{
    struct vsock_hdr h;
    struct conn *c;
    if (chain->writable_bytes < VSOCK_HDR_BYTES || !next_packet(v, &h, &c))
        return 0;
    return emit_packet(v, &h, c, chain);
}

void vsock_core_host_events(struct vsock *v)
{
    struct pollfd fds[VSOCK_MAX_CONNS + 2];
    int slot[VSOCK_MAX_CONNS + 2];
    unsigned n = poll_set(v, fds, slot);

    if (poll(fds, n, 0) <= 0)
        return;
    for (unsigned i = 0; i < n; i++)
        if (fds[i].revents && slot[i] >= 0)
            host_event(v, &v->conns[slot[i]], fds[i].revents);
    expire(v);
}

/* ---- the virtio device ---- */

static void vsock_read_config(void *dev, uint32_t offset, uint8_t *data, unsigned size)
{
    struct vsock *v = dev;
    uint8_t cfg[CONFIG_BYTES];

    put_le(cfg, v->cid, 8);
    memcpy(data, cfg + offset, size);
}

static void vsock_notify(void *dev, struct virtio_mmio *t, unsigned q)
{
    (void)t;
    (void)q;
    wake(dev);
}

/* Called with the I/O lock held: the thread drops the connections next. */
static void vsock_reset(void *dev)
{
    struct vsock *v = dev;
    v->reset_requested = true;
    v->transport_reset_owed = v->awaiting_reset_ack = false;
    wake(v);
}

static int vsock_state(void *dev, struct state_io *io);

static const struct virtio_device_ops vsock_ops = {
    .name = "vsock",
    .device_id = VIRTIO_ID_VSOCK,
    .num_queues = 3,
    .queue_max = QUEUE_SIZE,
    .queue_max_saved = QUEUE_SIZE_SAVED_BEFORE,
    .config_size = CONFIG_BYTES,
    .read_config = vsock_read_config,
    .queue_notify = vsock_notify,
    .reset = vsock_reset,
    .state = vsock_state,
};

/* ---- snapshots: the guest's connections do not survive a start from a
 * bundle (their host ends were in the process that saved), so the guest is
 * told with a transport reset and closes them at once. The record (after
 * the transport's, version 1) holds the guest CID. Called under the
 * transport's I/O lock. ---- */

static int vsock_state(void *dev, struct state_io *io)
{
    struct vsock *v = dev;
    uint64_t cid = v->cid;

    state_u64(io, &cid);
    if (!state_restoring(io))
        return 0;
    state_check(io, cid == v->cid, "vsock state of guest CID %llu, config says %llu",
                (unsigned long long)cid, (unsigned long long)v->cid);
    if (state_failed(io))
        return 0;
    close_all(v);
    v->transport_reset_owed = true;
    wake(v);
    return 0;
}

static int listen_on(struct vsock *v, const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};

    if (snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path) >= (int)sizeof(addr.sun_path))
        return err_plain(ENAMETOOLONG, "vsock socket path '%s' is too long", path);
    v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (v->listen_fd < 0)
        return err_set(errno, "vsock socket");
    unlink(path); /* a stale one of a VM of this name: the name is ours now */
    if (bind(v->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        chmod(path, 0600) < 0 || listen(v->listen_fd, 16) < 0)
        return err_set(errno, "vsock socket '%s'", path);
    v->path = strdup(path);
    return v->path ? 0 : err_set(ENOMEM, "vsock");
}

static void vsock_destroy(void *state)
{
    struct vsock *v = state;

    if (!v)
        return;
    if (v->thread_running) {
        virtio_mmio_io_lock(v->transport);
        v->stopping = true;
        wake(v);
        virtio_mmio_io_unlock(v->transport);
        pthread_join(v->thread, NULL);
    }
    close_all(v);
    virtio_mmio_destroy(v->transport);
    if (v->listen_fd >= 0) {
        close(v->listen_fd);
        if (v->path)
            unlink(v->path);
    }
    if (v->wake_fd >= 0)
        close(v->wake_fd);
    free(v->path);
    free(v);
}

static int vsock_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    const struct vm_config *cfg = vm_config(vm);
    struct vsock *v;
    int r;

    *state = NULL;
    if (cfg->vsock_cid == 0)
        return 0;
    v = calloc(1, sizeof(*v));
    if (!v)
        return err_set(ENOMEM, "virtio-vsock");
    v->vm = vm;
    v->cid = cfg->vsock_cid;
    v->listen_fd = -1;
    v->next_local_port = 1u << 30;
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
        v->conns[i].fd = -1;
    v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r = v->wake_fd < 0 ? err_set(errno, "eventfd") : 0;
    if (r == 0)
        r = virtio_mmio_create(vm, slot, &vsock_ops, v, &v->transport);
    if (r == 0 && cfg->vsock_path)
        r = listen_on(v, cfg->vsock_path);
    if (r == 0 && confine_thread_start(&v->thread, CONFINE_VSOCK, vsock_thread, v) != 0)
        r = err_plain(EAGAIN, "virtio-vsock: no thread");
    v->thread_running = r == 0;
    if (r < 0) {
        vsock_destroy(v);
        return r;
    }
    *state = v;
    return 0;
}

static const struct device_type virtio_vsock = {
    .name = "virtio-vsock",
    .create = vsock_create,
    .destroy = vsock_destroy,
};
DEVICE_REGISTER(virtio_vsock);
