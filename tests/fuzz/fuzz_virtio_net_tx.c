/* libFuzzer target: arbitrary guest memory holding a transmit queue,
 * walked by the virtqueue code and each chain turned into a frame by
 * virtio-net's transmit path (header checks, size limits, checksum
 * completion), with and without checksum offload negotiated, or passed on
 * whole with TSO as a TAP takes it (virtio_net_tx_with_header), then through
 * the egress allowlist of --net user,allow=. Any crash,
 * sanitizer report or hang is a bug; drops and refusals are expected. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/net.h"
#include "devices/virtio/queue.h"
#include "net/backend.h"
#include "net/config.h"
#include "net/filter.h"
#include "fuzz_queue.h"

#define MAX_REQUESTS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct guest_memory mem;
static struct virtq_chain chain;
static uint8_t frame[NET_USER_MTU + VIRTIO_NET_FRAME_HEADERS];
static uint8_t big_frame[VIRTIO_NET_HDR_BYTES + NET_MAX_FRAME];
static struct vm_net_config allowlist;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct virtq q;

    if (!allowlist.allow_count &&
        (net_parse_mode("user,allow=10.0.0.0/8,allow=1.2.3.4", &allowlist) < 0 ||
         net_parse_forward("5353:53/udp", &allowlist) < 0))
        abort();
    /* data[1] also chooses the offloads. */
    if (!fuzz_queue_from(&mem, data, size, &q))
        return 0;
    for (int i = 0; i < MAX_REQUESTS; i++) {
        size_t len = 0;
        int r;
        if (virtq_pop(&q, &chain) <= 0)
            break;
        if (data[1] & 4) { /* a TAP's way: the header passed on, TSO as data[1] says */
            r = virtio_net_tx_with_header(&chain, data[1] & 2, data[1] & 8, data[1] & 16,
                                          big_frame, &len);
            if (r < 0)
                break;
            if (r == 0 && (len < VIRTIO_NET_HDR_BYTES + VIRTIO_NET_MIN_FRAME ||
                           len > VIRTIO_NET_HDR_BYTES + NET_MAX_FRAME ||
                           (big_frame[1] == 0 && len > VIRTIO_NET_HDR_BYTES + VIRTIO_NET_MAX_FRAME)))
                abort(); /* a frame no peer may see went out */
        } else {
            /* --net user's 64 KiB frames, or Ethernet's */
            size_t max = data[1] & 32 ? sizeof(frame) : VIRTIO_NET_MAX_FRAME;
            r = virtio_net_tx_frame(&chain, data[1] & 2, max, frame, &len);
            if (r < 0)
                break;
            if (r == 0 && (len < VIRTIO_NET_MIN_FRAME || len > max))
                abort(); /* a frame no peer may see went out */
            if (r == 0)
                (void)net_egress_allowed(&allowlist, frame, len);
        }
        if (virtq_push(&q, chain.head, 0) < 0)
            break;
    }
    return 0;
}
