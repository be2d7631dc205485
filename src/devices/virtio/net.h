/* virtio-net's transmit side, apart from its transport and backend, so
 * tests and the fuzzer can feed it chains straight from a virtqueue. */
#ifndef SMOLVM_DEVICES_VIRTIO_NET_H
#define SMOLVM_DEVICES_VIRTIO_NET_H

#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/queue.h"

#define VIRTIO_NET_HDR_BYTES 12  /* struct virtio_net_hdr_v1, num_buffers included */
#define VIRTIO_NET_MTU 1500
#define VIRTIO_NET_MAX_FRAME 1518 /* the MTU, an Ethernet header and one VLAN tag */
#define VIRTIO_NET_FRAME_HEADERS 18 /* what a frame adds to the MTU: Ethernet, a VLAN tag */
#define VIRTIO_NET_MIN_FRAME 14   /* an Ethernet header */
#define VIRTIO_NET_TX_DROP 1

/* Copies the frame of a transmit chain (header, then the frame) into
 * frame[max_frame] (VIRTIO_NET_MAX_FRAME, or the MTU of the NIC's backend
 * and 18 bytes of headers), completing the checksum the guest left to the
 * device when csum_offload was negotiated. 0 with *len set;
 * VIRTIO_NET_TX_DROP for a frame no peer may see (longer than max_frame, a
 * segmentation offload or checksum we did not offer, checksum offsets
 * outside the frame); <0 with a message for a chain that is not a
 * transmit request (no header, device-writable buffers). */
int virtio_net_tx_frame(const struct virtq_chain *c, bool csum_offload, size_t max_frame,
                        uint8_t *frame, size_t *len) __attribute__((warn_unused_result));

/* The transmit chain whole, header and frame, into
 * out[VIRTIO_NET_HDR_BYTES + NET_MAX_FRAME], for a backend that takes the
 * header (a TAP with IFF_VNET_HDR: its kernel completes checksums and
 * segments). host_tso4/host_tso6: the segmentation the guest negotiated,
 * the only kinds passed on. 0 with *len (header included) set;
 * VIRTIO_NET_TX_DROP for a frame no peer may see (over 1518 bytes without
 * segmentation, an offload not negotiated, checksum or segment fields
 * outside the frame); <0 with a message as virtio_net_tx_frame. */
int virtio_net_tx_with_header(const struct virtq_chain *c, bool csum_offload, bool host_tso4,
                              bool host_tso6, uint8_t *out, size_t *len)
    __attribute__((warn_unused_result));

/* Frames this process's NICs dropped, both ways (a guest's oversized or
 * malformed frames or those its allowlist refuses, frames too large for
 * its receive buffers). */
uint64_t virtio_net_dropped(void);

/* Times this process's NICs found receive buffers the guest added without
 * a kick (the device looks again every 250 ms while a frame waits): 0
 * unless a notification was lost. */
uint64_t virtio_net_rx_unkicked(void);

#endif
