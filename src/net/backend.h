/* Where the guest's Ethernet frames go: a backend is one file descriptor on
 * which each read and each write is one whole frame (a SOCK_SEQPACKET
 * socket, or a TAP device, then with the virtio-net header in front),
 * polled by the NIC's own thread.
 *
 * --net user runs libslirp in a helper process, smolvm-net, found beside
 * the smolvm executable (or at $SMOLVM_NET_HELPER): smolvm is one static
 * executable and libslirp comes only as a shared library, and the NAT
 * stack's bugs stay out of the VMM. The helper's end of a socketpair is
 * its only link to the VM; it exits when the VM closes it (or dies). */
#ifndef SMOLVM_NET_BACKEND_H
#define SMOLVM_NET_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/config.h"

#define NET_MAX_FRAME 65550 /* largest frame a backend passes: 64 KiB + headers */
/* --net user's link MTU (smolvm-net's and the NIC's, told to the guest by
 * VIRTIO_NET_F_MTU): 64 KiB frames, as slirp4netns and passt; a TAP keeps
 * Ethernet's 1500 (its segments go by TSO instead). */
#define NET_USER_MTU 65520
#define NET_MIN_MTU 576 /* IPv4's least: what $SMOLVM_NET_USER_MTU may ask */

/* The helper's first message on the socket, before any frame. */
#define NET_HELPER_READY "smolvm-net ready"
#define NET_HELPER_ERROR "smolvm-net error: "

struct net_backend;

/* Opens the backend cfg names. VM_NET_USER starts the helper; with
 * forwards it waits for the helper's first message (a forward whose host
 * port is taken fails here), without them it does not wait: frames sent
 * meanwhile queue in the socket, and a helper that cannot serve shows on
 * the first net_backend_recv (a message, and the backend is gone).
 * Message and <0 on failure. */
int net_backend_open(const struct vm_net_config *cfg, struct net_backend **out)
    __attribute__((warn_unused_result));
void net_backend_close(struct net_backend *b);

/* The descriptor to poll (POLLIN: a frame to receive; POLLOUT: room). */
int net_backend_fd(const struct net_backend *b);

/* One frame out: 0, -EAGAIN when the backend has no room now (poll for
 * POLLOUT), another negative errno when it is gone. */
int net_backend_send(struct net_backend *b, const void *frame, size_t len);

/* One frame in: its length (which may exceed cap: then only cap bytes
 * were stored and the frame is to be dropped), -EAGAIN when none waits,
 * 0 or another negative errno when the backend is gone. */
ssize_t net_backend_recv(struct net_backend *b, void *buf, size_t cap);

/* The same, the frame scattered over iov[0..count) (the guest's buffers:
 * no copy in between). */
struct iovec;
ssize_t net_backend_recv_iov(struct net_backend *b, const struct iovec *iov, unsigned count);

/* The next frame's length, the frame left in place (a socket's; a TAP
 * cannot say: -ENOTSUP), so that buffers for it can be found first;
 * -EAGAIN, 0 or another negative errno as net_backend_recv. */
ssize_t net_backend_peek(struct net_backend *b);

/* Whether each frame each way carries a virtio-net header (12 bytes,
 * num_buffers included) in front: a TAP, opened with IFF_VNET_HDR. */
bool net_backend_with_header(const struct net_backend *b);

/* For such a backend: what it may send with the header, as the guest
 * negotiated (checksums left partial, TCP segments up to 64 KiB over
 * IPv4, IPv6). Message and <0 on failure. */
int net_backend_set_offloads(struct net_backend *b, bool csum, bool tso4, bool tso6)
    __attribute__((warn_unused_result));

/* --net user's MTU: NET_USER_MTU, or $SMOLVM_NET_USER_MTU (NET_MIN_MTU to
 * NET_USER_MTU; bench/net compares sizes with it). */
unsigned net_user_mtu(void);

/* The helper's path: $SMOLVM_NET_HELPER, else smolvm-net beside this
 * executable. */
int net_helper_path(char *out, size_t size) __attribute__((warn_unused_result));

#endif
