/* virtio-vsock (virtio 1.2, section 5.10) served by smolvm itself: no
 * vhost-vsock module, no privileges. The host side is one unix socket per
 * VM with Firecracker's protocol, so existing clients work:
 *  - a host program connects to the socket, writes "CONNECT <port>\n" and
 *    reads "OK <hostport>\n" once the guest accepted (the connection is
 *    closed when nobody listens on that guest port);
 *  - a guest connection to host port P is a connection to "<socket>_P".
 * Every field of every packet comes from the guest and is checked: packets
 * longer than their buffers and queues without room for a header mark the
 * device broken; unknown operations and connections are answered with RST;
 * a guest sending past the credit it was given is reset; a guest that
 * never grants credit only stops its connections (smolvm then stops
 * reading the host socket); connections are at most VSOCK_MAX_CONNS. */
#ifndef SMOLVM_DEVICES_VIRTIO_VSOCK_H
#define SMOLVM_DEVICES_VIRTIO_VSOCK_H

#include <stdint.h>

#define VIRTIO_ID_VSOCK 19
#define VSOCK_HOST_CID 2

#define VSOCK_RXQ 0
#define VSOCK_TXQ 1
#define VSOCK_EVENTQ 2

/* struct virtio_vsock_hdr, little-endian, packed. */
#define VSOCK_HDR_BYTES 44
#define VSOCK_TYPE_STREAM 1
enum vsock_op {
    VSOCK_OP_INVALID = 0,
    VSOCK_OP_REQUEST = 1,
    VSOCK_OP_RESPONSE = 2,
    VSOCK_OP_RST = 3,
    VSOCK_OP_SHUTDOWN = 4,
    VSOCK_OP_RW = 5,
    VSOCK_OP_CREDIT_UPDATE = 6,
    VSOCK_OP_CREDIT_REQUEST = 7,
};
#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2
#define VSOCK_EVENT_TRANSPORT_RESET 0

/* Limits a guest cannot move. */
#define VSOCK_MAX_CONNS 64              /* open connections, both directions */
#define VSOCK_BUF_ALLOC (256u << 10)    /* guest->host bytes buffered per connection */
#define VSOCK_MAX_PAYLOAD (64u << 10)   /* one packet's payload */
#define VSOCK_CONNECT_TIMEOUT_MS 2000   /* CONNECT line, and the request reaching the guest */
/* The guest's answer, counted from when it has the request (not while the
 * request was held for a transport reset): a restored guest under nested
 * emulation, faulting its RAM in, took over 2 s from the line. */
#define VSOCK_ANSWER_TIMEOUT_MS 3000
/* After a start from a bundle, host connections wait until the guest has
 * handled the transport reset, at most this long (a driver that never
 * says so): a loaded nested guest faulting its RAM in took over 1 s, and
 * a connection let through before was killed by the reset it then
 * handled ("the agent closed the connection"). */
#define VSOCK_RESET_ACK_MS 4000

struct vsock_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t out[VSOCK_HDR_BYTES]);
void vsock_hdr_decode(const uint8_t in[VSOCK_HDR_BYTES], struct vsock_hdr *h);

/* The packet engine without a transport or thread (for the fuzzer): tx
 * chains in (<0: a malformed packet, which breaks the device), the next
 * packet owed to the guest out (bytes written into chain; 0: none), and one
 * non-blocking round of host socket events. */
struct vsock;
struct virtq_chain;
struct vsock *vsock_core_new(uint64_t cid, const char *host_path);
void vsock_core_free(struct vsock *v);
long vsock_core_tx(struct vsock *v, const struct virtq_chain *chain);
uint32_t vsock_core_rx(struct vsock *v, const struct virtq_chain *chain);
void vsock_core_host_events(struct vsock *v);

#endif
