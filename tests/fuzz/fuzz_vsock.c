/* libFuzzer target: virtio-vsock's packet engine fed arbitrary tx packets
 * from a hostile guest (any header, any op, lengths that lie about their
 * buffers, any credit), with a host listener at <socket>_1234 so requests
 * open real connections; after each packet the engine's answers are taken
 * into rx buffers of varying size and host socket events are served. Any
 * crash, sanitizer report, hang or leak is a bug; refusals are expected.
 *
 * Input: records of [flags][44-byte header][2-byte buffer length][payload].
 * flags bit 0 puts the right CIDs and stream type into the header (to get
 * past the first checks), bit 1 makes the next rx buffer header-sized. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/queue.h"
#include "devices/virtio/vsock.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CID 3
#define MAX_RX 8

static char path[108];
static int listener = -1;
static uint8_t tx_buf[VSOCK_HDR_BYTES + 0x10000], rx_buf[4096];

static void setup_once(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(path, sizeof(path), "/tmp/fuzz-vsock-%d", (int)getpid());
    snprintf(a.sun_path, sizeof(a.sun_path), "%s_1234", path);
    unlink(a.sun_path);
    listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(listener, 128) < 0)
        abort();
}

/* Connections the engine opened are taken (and, one in two, dropped). */
static void host_side(void)
{
    static unsigned n;
    int fd;
    while ((fd = accept(listener, NULL, NULL)) >= 0) {
        if (n++ % 2 == 0 && send(fd, "host bytes", 10, MSG_NOSIGNAL) == 10)
            shutdown(fd, SHUT_WR);
        close(fd);
    }
}

static void drain(struct vsock *v, bool tiny)
{
    struct virtq_chain c = {.count = 1};
    c.bufs[0] = (struct virtq_buf){rx_buf, tiny ? VSOCK_HDR_BYTES : sizeof(rx_buf), true};
    c.writable_bytes = c.bufs[0].len;
    for (int i = 0; i < MAX_RX && vsock_core_rx(v, &c) > 0; i++)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vsock *v;
    struct virtq_chain c = {.count = 1, .readable = 1};

    if (listener < 0)
        setup_once();
    v = vsock_core_new(CID, path);
    if (!v)
        return 0;
    while (size >= 1 + VSOCK_HDR_BYTES + 2) {
        uint8_t flags = data[0];
        uint32_t len = (uint32_t)data[1 + VSOCK_HDR_BYTES] |
                       (uint32_t)data[2 + VSOCK_HDR_BYTES] << 8;
        memcpy(tx_buf, data + 1, VSOCK_HDR_BYTES);
        data += 3 + VSOCK_HDR_BYTES;
        size -= 3 + VSOCK_HDR_BYTES;
        if (len > size)
            len = (uint32_t)size;
        memcpy(tx_buf + VSOCK_HDR_BYTES, data, len);
        data += len;
        size -= len;
        if (flags & 1) {
            struct vsock_hdr h;
            vsock_hdr_decode(tx_buf, &h);
            h.src_cid = CID;
            h.dst_cid = VSOCK_HOST_CID;
            h.type = VSOCK_TYPE_STREAM;
            vsock_hdr_encode(&h, tx_buf);
        }
        c.bufs[0] = (struct virtq_buf){tx_buf, VSOCK_HDR_BYTES + len, false};
        c.readable_bytes = VSOCK_HDR_BYTES + len;
        if (vsock_core_tx(v, &c) < 0)
            break; /* the device would be broken now */
        host_side();
        vsock_core_host_events(v);
        drain(v, flags & 2);
    }
    vsock_core_free(v);
    host_side();
    err_clear();
    return 0;
}
