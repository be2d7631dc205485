/* virtio-net as a guest driver sees it, on a VM of devices only: the test
 * plays the driver through the MMIO registers and rings in guest RAM, and
 * the backend's peer through the other end of a SOCK_SEQPACKET socketpair.
 * Frames (bytes, checksums, counts), the status register (a broken device
 * says DEVICE_NEEDS_RESET) and the drop counter are the judges. Also the
 * network options' parsers and their JSON in a bundle's config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "bundle/bundle.h"
#include "core/config.h"
#include "core/vm.h"
#include "devices/virtio/net.h"
#include "net/backend.h"
#include "net/config.h"
#include "util/blob.h"
#include "scratch.h"
#include "util/err.h"
#include "confine/confine.h"

#define BASE X86_VIRTIO_MMIO_BASE
#define RXQ 0
#define TXQ 1
#define CTRLQ 2
#define QSIZE 16
#define RINGS(q) (0x100000ull + (q) * 0x10000ull)
#define DATA 0x200000ull
#define F_CSUM (1ull << 0)
#define F_GUEST_CSUM (1ull << 1)
#define F_MRG_RXBUF (1ull << 15)
#define F_STATUS (1ull << 16)
#define F_CTRL_VQ (1ull << 17)
#define F_GUEST_ANNOUNCE (1ull << 21)
#define F_EVENT_IDX (1ull << 29)
#define F_VERSION_1 (1ull << 32)
#define NEEDS_RESET 0x40
#define D_NEXT 1
#define D_WRITE 2

static struct vm *vm;
static int peer = -1;   /* the backend's far end */
static uint16_t next_desc[3], avail_idx[3];

static void mmio_write(uint64_t off, uint32_t v)
{
    (void)vm_bus_access(vm, false, BASE + off, &v, 4, true);
}

static uint32_t mmio_read(uint64_t off)
{
    uint32_t v = 0;
    (void)vm_bus_access(vm, false, BASE + off, &v, 4, false);
    return v;
}

static uint8_t *ram(uint64_t gpa) { return gpa_ptr(vm_memory(vm), gpa, 1); }

static void driver_init(uint64_t features)
{
    mmio_write(0x070, 0);
    mmio_write(0x070, 1 | 2);
    mmio_write(0x024, 0);
    mmio_write(0x020, (uint32_t)features);
    mmio_write(0x024, 1);
    mmio_write(0x020, (uint32_t)(features >> 32));
    mmio_write(0x070, 1 | 2 | 8);
    assert_true(mmio_read(0x070) & 8);
    for (unsigned q = 0; q < 3; q++) {
        memset(ram(RINGS(q)), 0, 0x3000);
        next_desc[q] = avail_idx[q] = 0;
        mmio_write(0x030, q);
        mmio_write(0x038, QSIZE);
        mmio_write(0x080, (uint32_t)RINGS(q));
        mmio_write(0x090, (uint32_t)RINGS(q) + 0x1000);
        mmio_write(0x0a0, (uint32_t)RINGS(q) + 0x2000);
        mmio_write(0x044, 1);
    }
    mmio_write(0x070, 1 | 2 | 8 | 4);
}

/* Makes a chain of n buffers on queue q and publishes it (no kick). */
static uint16_t post(unsigned q, unsigned n, const uint64_t *gpa, const uint32_t *len,
                     const uint16_t *flags)
{
    uint16_t head = next_desc[q];
    for (unsigned i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % QSIZE), nxt = (uint16_t)((head + i + 1) % QSIZE);
        uint8_t *d = ram(RINGS(q) + 16ull * idx);
        uint16_t f = (uint16_t)(flags[i] | (i + 1 < n ? D_NEXT : 0));
        memcpy(d, &gpa[i], 8);
        memcpy(d + 8, &len[i], 4);
        memcpy(d + 12, &f, 2);
        memcpy(d + 14, &nxt, 2);
    }
    next_desc[q] = (uint16_t)((head + n) % QSIZE);
    uint16_t *avail = (uint16_t *)ram(RINGS(q) + 0x1000);
    avail[2 + avail_idx[q] % QSIZE] = head;
    __atomic_store_n(&avail[1], ++avail_idx[q], __ATOMIC_RELEASE);
    return head;
}

static void kick(unsigned q) { mmio_write(0x050, q); }

static uint16_t used_idx(unsigned q)
{
    return __atomic_load_n((uint16_t *)ram(RINGS(q) + 0x2000 + 2), __ATOMIC_ACQUIRE);
}

static uint32_t used_len(unsigned q, uint16_t i)
{
    uint32_t len;
    memcpy(&len, ram(RINGS(q) + 0x2000 + 4 + 8ull * (i % QSIZE) + 4), 4);
    return len;
}

/* RX is served on the device's thread: wait for it (10 s: a loaded host). */
static bool wait_used(unsigned q, uint16_t want)
{
    for (int i = 0; i < 10000; i++) {
        if (used_idx(q) == want)
            return true;
        usleep(1000);
    }
    return false;
}

/* One transmit request: header (12 bytes) then the frame in one buffer. */
static void send_frame(const uint8_t *hdr, const void *frame, uint32_t len)
{
    uint64_t gpa[2] = {DATA, DATA + 0x100};
    uint32_t lens[2] = {12, len};
    uint16_t flags[2] = {0, 0};
    memcpy(ram(DATA), hdr, 12);
    memcpy(ram(DATA + 0x100), frame, len);
    post(TXQ, 2, gpa, lens, flags);
    kick(TXQ);
}

/* The same in buffers of slot's own (several requests in flight). */
static void send_frame_in(unsigned slot, const void *frame, uint32_t len)
{
    uint64_t base = DATA + 0x10000 + slot * 0x1000ull;
    uint64_t gpa[2] = {base, base + 0x100};
    uint32_t lens[2] = {12, len};
    uint16_t flags[2] = {0, 0};
    memset(ram(base), 0, 12);
    memcpy(ram(base + 0x100), frame, len);
    post(TXQ, 2, gpa, lens, flags);
    kick(TXQ);
}

static ssize_t peer_recv(void *buf, size_t cap)
{
    struct pollfd p = {.fd = peer, .events = POLLIN};
    if (poll(&p, 1, 2000) <= 0)
        return -1;
    return recv(peer, buf, cap, MSG_DONTWAIT);
}

static bool peer_idle(void)
{
    struct pollfd p = {.fd = peer, .events = POLLIN};
    return poll(&p, 1, 50) == 0;
}

static void fill_frame(uint8_t *f, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        f[i] = (uint8_t)(seed + i * 13);
}

static int setup_with(const char *mode)
{
    struct vm_config cfg;
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    vm_config_defaults(&cfg);
    cfg.mem_bytes = 16u << 20;
    cfg.rng = false;
    if (mode) {
        assert_int_equal(net_parse_mode(mode, &cfg.net), 0);
        assert_int_equal(net_parse_forward("5353:53/udp", &cfg.net), 0);
    }
    cfg.net.mode = VM_NET_FD;
    cfg.net.fd = sv[1];
    assert_int_equal(net_parse_mac("52:54:00:ab:cd:ef", &cfg.net), 0);
    assert_int_equal(vm_create_devices_only(&cfg, &vm), 0);
    close(sv[1]);
    peer = sv[0];
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return setup_with(NULL);
}

static int setup_allowlist(void **state)
{
    (void)state;
    return setup_with("user,allow=192.0.2.0/24,allow=198.51.100.7");
}

static int teardown(void **state)
{
    (void)state;
    vm_destroy(vm);
    if (peer >= 0)
        close(peer);
    peer = -1;
    err_clear();
    return 0;
}

static void offers_mac_link_and_mtu(void **state)
{
    (void)state;
    assert_int_equal(mmio_read(0x008), 1); /* a network card */
    driver_init(F_VERSION_1 | F_STATUS | F_MRG_RXBUF);
    uint8_t cfg[12];
    for (unsigned i = 0; i < 12; i += 4) {
        uint32_t v = mmio_read(0x100 + i);
        memcpy(cfg + i, &v, 4);
    }
    assert_memory_equal(cfg, "\x52\x54\x00\xab\xcd\xef", 6);
    assert_int_equal(cfg[6] | cfg[7] << 8, 1);     /* LINK_UP */
    assert_int_equal(cfg[10] | cfg[11] << 8, 1500); /* mtu */
}

static void transmits_a_frame(void **state)
{
    uint8_t hdr[12] = {0}, frame[60], got[2000];
    (void)state;
    driver_init(F_VERSION_1);
    fill_frame(frame, sizeof(frame), 1);
    send_frame(hdr, frame, sizeof(frame));
    assert_int_equal(peer_recv(got, sizeof(got)), sizeof(frame));
    assert_memory_equal(got, frame, sizeof(frame));
    assert_int_equal(used_idx(TXQ), 1);
    assert_int_equal(mmio_read(0x070) & NEEDS_RESET, 0);
}

static uint16_t sum16(const uint8_t *p, size_t len)
{
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1)
        s += (uint32_t)p[len - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

/* The guest leaves the sum to the device (NEEDS_CSUM from 34, field at
 * +16, seeded with 0x1234 as a pseudo-header's sum would be). */
static void completes_a_partial_checksum(void **state)
{
    uint8_t hdr[12] = {1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0}, frame[100], got[2000];
    (void)state;
    driver_init(F_VERSION_1 | F_CSUM);
    fill_frame(frame, sizeof(frame), 7);
    frame[50] = 0x12;
    frame[51] = 0x34;
    send_frame(hdr, frame, sizeof(frame));
    assert_int_equal(peer_recv(got, sizeof(got)), sizeof(frame));
    assert_memory_equal(got, frame, 50);
    /* With the pseudo-header's sum the receiver adds, the range sums to
     * 0xffff (ones' complement zero). */
    uint32_t s = sum16(got + 34, sizeof(frame) - 34) + 0x1234u;
    assert_int_equal((s & 0xffff) + (s >> 16), 0xffff);
    /* Offsets beyond the frame: dropped, and the device goes on. */
    uint64_t before = virtio_net_dropped();
    hdr[6] = 99;
    send_frame(hdr, frame, sizeof(frame));
    assert_true(peer_idle());
    assert_int_equal(virtio_net_dropped(), before + 1);
    assert_int_equal(mmio_read(0x070) & NEEDS_RESET, 0);
}

/* The sum the device completes, for every length and both alignments of
 * the range (odd lengths end in a zero-padded byte; the device sums 8
 * bytes at a time), against sum16's two bytes at a time. */
static void the_checksum_is_right_at_every_length(void **state)
{
    static const size_t starts[] = {14, 33, 34};
    uint8_t hdr[12] = {1, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0}, frame[1514], got[2000];
    (void)state;
    driver_init(F_VERSION_1 | F_CSUM);
    srand(19);
    for (unsigned k = 0; k < sizeof(starts) / sizeof(starts[0]); k++) {
        size_t start = starts[k];
        for (size_t len = start + 8; len <= sizeof(frame); len += len < start + 120 ? 1 : 97) {
            uint16_t seed = (uint16_t)rand();
            for (size_t i = 0; i < len; i++)
                frame[i] = (uint8_t)rand();
            frame[start + 6] = (uint8_t)(seed >> 8);
            frame[start + 7] = (uint8_t)seed;
            hdr[6] = (uint8_t)start;
            send_frame(hdr, frame, (uint32_t)len);
            assert_int_equal(peer_recv(got, sizeof(got)), (ssize_t)len);
            uint32_t s = sum16(got + start, len - start) + seed;
            while (s >> 16)
                s = (s & 0xffff) + (s >> 16);
            if (s != 0xffff)
                fail_msg("start %zu, length %zu: the range sums to %#x", start, len, s);
        }
    }
}

/* A backend with no room: the device leaves the guest's requests in its
 * ring (nothing dropped, no host memory) and takes them again, in order,
 * once the backend drains. */
static void a_full_backend_holds_the_queue_back(void **state)
{
    enum { TOTAL = 400, IN_FLIGHT = 8 };
    uint8_t frame[1500], got[2048];
    unsigned sent = 0, received = 0;
    bool stalled = false;
    uint64_t dropped = virtio_net_dropped();
    (void)state;
    driver_init(F_VERSION_1);
    while (received < TOTAL) {
        uint16_t before = used_idx(TXQ);
        while (sent < TOTAL && (uint16_t)(avail_idx[TXQ] - used_idx(TXQ)) < IN_FLIGHT) {
            fill_frame(frame, sizeof(frame), (uint8_t)sent);
            memcpy(frame, &sent, sizeof(sent));
            send_frame_in(sent % IN_FLIGHT, frame, sizeof(frame));
            sent++;
        }
        usleep(2000);
        /* Nobody reads until the device has stalled on the full backend. */
        if (!stalled && sent < TOTAL && used_idx(TXQ) == before)
            stalled = true;
        if (!stalled && sent < TOTAL)
            continue;
        struct pollfd p = {.fd = peer, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 5000), 1); /* the device goes on once there is room */
        ssize_t n;
        while ((n = recv(peer, got, sizeof(got), MSG_DONTWAIT)) > 0) {
            unsigned seq;
            memcpy(&seq, got, sizeof(seq));
            assert_int_equal(n, sizeof(frame));
            assert_int_equal(seq, received); /* in order, none lost */
            received++;
        }
    }
    assert_true(stalled);
    assert_int_equal(virtio_net_dropped(), dropped);
    assert_true(wait_used(TXQ, TOTAL));
}

static void drops_oversized_and_offload_frames(void **state)
{
    static uint8_t frame[VIRTIO_NET_MAX_FRAME + 1], got[70000];
    uint8_t hdr[12] = {0}, gso[12] = {0, 1 /* TCPV4 */};
    uint64_t before = virtio_net_dropped();
    (void)state;
    driver_init(F_VERSION_1);
    send_frame(hdr, frame, sizeof(frame));
    send_frame(gso, frame, 100);
    send_frame(hdr, frame, 10); /* shorter than an Ethernet header */
    assert_true(peer_idle());
    assert_int_equal(virtio_net_dropped(), before + 3);
    assert_int_equal(used_idx(TXQ), 3); /* each given back */
    send_frame(hdr, frame, VIRTIO_NET_MAX_FRAME);
    assert_int_equal(peer_recv(got, sizeof(got)), VIRTIO_NET_MAX_FRAME);
    assert_int_equal(mmio_read(0x070) & NEEDS_RESET, 0);
}

static void a_chain_without_header_breaks_the_device(void **state)
{
    uint64_t gpa[1] = {DATA};
    uint32_t len[1] = {8};
    uint16_t flags[1] = {0};
    (void)state;
    driver_init(F_VERSION_1);
    post(TXQ, 1, gpa, len, flags);
    kick(TXQ);
    assert_true(mmio_read(0x070) & NEEDS_RESET);
    assert_true(peer_idle());
}

static void a_looping_chain_breaks_the_device(void **state)
{
    uint64_t gpa[2] = {DATA, DATA + 0x100};
    uint32_t len[2] = {12, 60};
    uint16_t flags[2] = {0, 0};
    (void)state;
    driver_init(F_VERSION_1);
    post(TXQ, 2, gpa, len, flags);
    /* The second descriptor points back at the first. */
    uint16_t f = D_NEXT, back = 0;
    memcpy(ram(RINGS(TXQ) + 16 + 12), &f, 2);
    memcpy(ram(RINGS(TXQ) + 16 + 14), &back, 2);
    kick(TXQ);
    assert_true(mmio_read(0x070) & NEEDS_RESET);
    assert_true(peer_idle());
}

static void post_rx(uint64_t gpa, uint32_t len)
{
    uint16_t flags[1] = {D_WRITE};
    post(RXQ, 1, &gpa, &len, flags);
}

static void receives_into_mergeable_buffers(void **state)
{
    uint8_t frame[1000];
    (void)state;
    driver_init(F_VERSION_1 | F_MRG_RXBUF | F_GUEST_CSUM);
    fill_frame(frame, sizeof(frame), 3);
    post_rx(DATA, 2048);
    kick(RXQ);
    assert_int_equal(send(peer, frame, sizeof(frame), 0), sizeof(frame));
    assert_true(wait_used(RXQ, 1));
    assert_int_equal(used_len(RXQ, 0), 12 + sizeof(frame));
    assert_int_equal(ram(DATA)[10], 1);  /* num_buffers */
    assert_int_equal(ram(DATA)[0], 0);   /* not DATA_VALID: an fd backend vouches for nothing */
    assert_memory_equal(ram(DATA + 12), frame, sizeof(frame));
    /* Across three small buffers. */
    post_rx(DATA + 0x1000, 400);
    post_rx(DATA + 0x2000, 400);
    post_rx(DATA + 0x3000, 400);
    kick(RXQ);
    assert_int_equal(send(peer, frame, sizeof(frame), 0), sizeof(frame));
    assert_true(wait_used(RXQ, 4));
    assert_int_equal(ram(DATA + 0x1000)[10], 3);
    assert_int_equal(used_len(RXQ, 1) + used_len(RXQ, 2) + used_len(RXQ, 3), 12 + sizeof(frame));
    assert_memory_equal(ram(DATA + 0x1000 + 12), frame, 388);
    assert_memory_equal(ram(DATA + 0x2000), frame + 388, 400);
    assert_memory_equal(ram(DATA + 0x3000), frame + 788, sizeof(frame) - 788);
}

/* A guest that posts no buffers: the device reads one frame and stops;
 * the socket fills and the sender is told (bounded memory). Buffers then
 * get the frames in order, none lost. */
static void a_guest_that_stops_reading_costs_no_memory(void **state)
{
    uint8_t frame[1500];
    unsigned sent = 0;
    (void)state;
    driver_init(F_VERSION_1 | F_MRG_RXBUF);
    for (; sent < 100000; sent++) {
        fill_frame(frame, sizeof(frame), (uint8_t)sent);
        if (send(peer, frame, sizeof(frame), MSG_DONTWAIT) < 0)
            break;
    }
    assert_true(sent < 100000); /* the sender was told to wait */
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    for (unsigned i = 0; i < 4; i++)
        post_rx(DATA + 0x1000ull * i, 2048);
    kick(RXQ);
    assert_true(wait_used(RXQ, 4));
    for (unsigned i = 0; i < 4; i++) {
        fill_frame(frame, sizeof(frame), (uint8_t)i);
        assert_memory_equal(ram(DATA + 0x1000ull * i + 12), frame, sizeof(frame));
    }
}

static void drops_frames_larger_than_negotiated(void **state)
{
    static uint8_t big[VIRTIO_NET_MAX_FRAME + 100], small[64];
    uint64_t before = virtio_net_dropped();
    (void)state;
    driver_init(F_VERSION_1 | F_MRG_RXBUF);
    post_rx(DATA, 4096);
    post_rx(DATA + 0x2000, 4096);
    kick(RXQ);
    fill_frame(small, sizeof(small), 9);
    assert_int_equal(send(peer, big, sizeof(big), 0), sizeof(big));
    assert_int_equal(send(peer, small, sizeof(small), 0), sizeof(small));
    assert_true(wait_used(RXQ, 1));
    assert_int_equal(used_len(RXQ, 0), 12 + sizeof(small));
    assert_memory_equal(ram(DATA + 12), small, sizeof(small));
    assert_int_equal(virtio_net_dropped(), before + 1);
}

/* Frames for a driver with no buffers wait in the backend's socket, not in
 * the device (it learns a frame's length before it reads it): the device
 * holds nothing of the old driver's, and after a reset the new driver gets
 * what waited, in order, then what came after. */
static void a_reset_holds_no_frame(void **state)
{
    uint8_t old[100], fresh[100];
    int queued = 0;
    (void)state;
    driver_init(F_VERSION_1 | F_MRG_RXBUF);
    fill_frame(old, sizeof(old), 1);
    fill_frame(fresh, sizeof(fresh), 2);
    assert_int_equal(send(peer, old, sizeof(old), 0), sizeof(old));
    usleep(50 * 1000); /* time to take it, were it taken */
    assert_int_equal(ioctl(peer, SIOCOUTQ, &queued), 0);
    assert_int_not_equal(queued, 0); /* left in the socket */
    driver_init(F_VERSION_1 | F_MRG_RXBUF); /* resets first */
    assert_int_equal(send(peer, fresh, sizeof(fresh), 0), sizeof(fresh));
    post_rx(DATA, 2048);
    post_rx(DATA + 0x1000, 2048);
    kick(RXQ);
    assert_true(wait_used(RXQ, 2));
    assert_memory_equal(ram(DATA + 12), old, sizeof(old));
    assert_memory_equal(ram(DATA + 0x1000 + 12), fresh, sizeof(fresh));
}

/* The device's avail_event (VIRTIO_F_EVENT_IDX): after the used ring. */
static uint16_t avail_event(unsigned q)
{
    return __atomic_load_n((uint16_t *)ram(RINGS(q) + 0x2000 + 4 + 8ull * QSIZE),
                           __ATOMIC_ACQUIRE);
}

/* Linux's rule (vring_need_event): after adding chains old..new-1 the
 * driver kicks only when the device's avail_event lies among them. */
static bool driver_kicks(unsigned q, uint16_t old)
{
    uint16_t event = avail_event(q), now = avail_idx[q];
    return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

static bool wait_avail_event(unsigned q, uint16_t want)
{
    for (int i = 0; i < 2000 && avail_event(q) != want; i++)
        usleep(1000);
    return avail_event(q) == want;
}

/* With VIRTIO_F_EVENT_IDX a driver kicks only when the device asked for
 * it. A frame that finds too few buffers (none; then one of the three it
 * needs) waits for the guest's next buffers: the device must have asked to
 * be kicked for exactly those, or the driver adds them silently and the
 * frame waits (for a kick that never comes; the guest's TCP sees a stall
 * of its sender's retransmission timeout). */
static void event_idx_receive_asks_for_the_next_kick(void **state)
{
    uint8_t frame[1000];
    uint16_t old;
    (void)state;
    driver_init(F_VERSION_1 | F_MRG_RXBUF | F_EVENT_IDX);
    fill_frame(frame, sizeof(frame), 5);
    /* No buffers at all: the frame waits; three come (12 + 1000 bytes). */
    assert_int_equal(send(peer, frame, sizeof(frame), 0), sizeof(frame));
    usleep(50 * 1000);
    old = avail_idx[RXQ];
    for (unsigned i = 0; i < 3; i++)
        post_rx(DATA + 0x1000ull * i, 400);
    assert_true(driver_kicks(RXQ, old));
    kick(RXQ);
    assert_true(wait_used(RXQ, 3));
    assert_memory_equal(ram(DATA + 12), frame, 388);
    /* One buffer of the three the next frame needs: the device takes it,
     * finds the ring empty, gives it back and waits. */
    old = avail_idx[RXQ];
    post_rx(DATA + 0x4000, 400);
    if (driver_kicks(RXQ, old))
        kick(RXQ);
    assert_int_equal(send(peer, frame, sizeof(frame), 0), sizeof(frame));
    assert_true(wait_avail_event(RXQ, 4));
    assert_int_equal(used_idx(RXQ), 3); /* nothing given yet */
    old = avail_idx[RXQ];
    post_rx(DATA + 0x5000, 400);
    post_rx(DATA + 0x6000, 400);
    assert_true(driver_kicks(RXQ, old));
    kick(RXQ);
    assert_true(wait_used(RXQ, 6));
    assert_memory_equal(ram(DATA + 0x4000 + 12), frame, 388);
    assert_memory_equal(ram(DATA + 0x6000), frame + 788, sizeof(frame) - 788);
}

/* A frame of 200 bytes, one buffer of 100 for it: the device takes the
 * buffer, finds no second one, gives it back and waits (seen: it asked to
 * be kicked after the first buffer). */
static void a_frame_waits_for_a_second_buffer(const uint8_t *frame, size_t len)
{
    driver_init(F_VERSION_1 | F_MRG_RXBUF | F_EVENT_IDX);
    post_rx(DATA, 100);
    kick(RXQ);
    assert_int_equal(send(peer, frame, len, 0), (ssize_t)len);
    assert_true(wait_avail_event(RXQ, 1));
    /* A register write waits for the device's io lock: the pass that asked
     * for the kick, and its own look at the ring after asking, are over
     * before the caller adds buffers (a buffer added in between was found
     * by that look, not as unkicked: seen once on a loaded host). */
    mmio_write(0x000, 0); /* MagicValue: read-only, the write is ignored */
    assert_int_equal(used_idx(RXQ), 0);
}

/* The device counts an unkicked find after it has given the buffers back
 * (the guest may see them used first): the count, once it reaches `want`
 * or after 10 s (a loaded host). */
static uint64_t unkicked_count_reaching(uint64_t want)
{
    for (int i = 0; i < 10000 && virtio_net_rx_unkicked() < want; i++)
        usleep(1000);
    return virtio_net_rx_unkicked();
}

/* Buffers a guest adds without a kick (a lost notification) still get the
 * waiting frame: the device looks again while a frame waits, and counts
 * it, so a stall in the guest's TCP can be told from one here. */
static void buffers_added_without_a_kick_are_found(void **state)
{
    uint8_t frame[200];
    uint64_t before = virtio_net_rx_unkicked();
    (void)state;
    fill_frame(frame, sizeof(frame), 6);
    a_frame_waits_for_a_second_buffer(frame, sizeof(frame));
    post_rx(DATA + 0x1000, 2048); /* no kick */
    assert_true(wait_used(RXQ, 2));
    assert_memory_equal(ram(DATA + 12), frame, 88);
    assert_memory_equal(ram(DATA + 0x1000), frame + 88, sizeof(frame) - 88);
    assert_int_equal(unkicked_count_reaching(before + 1), before + 1);
}

/* $SMOLVM_NET_STATS: at exit the device says how long frames waited for
 * guest buffers (a stall in the device shows there, one in the guest's
 * TCP does not). */
/* The VM destroyed with $SMOLVM_NET_STATS set: what it said in said. */
static void stats_at_exit(char *said, size_t cap)
{
    int log, saved;

    setenv("SMOLVM_NET_STATS", "1", 1);
    saved = stderr_to("vmm.err", &log);
    vm_destroy(vm);
    vm = NULL;
    stderr_back(saved, log, said, cap);
    unsetenv("SMOLVM_NET_STATS");
}

static void stats_say_how_long_frames_waited(void **state)
{
    uint8_t frame[200];
    char said[512];
    long long longest = -1;
    (void)state;
    assert_int_equal(scratch_setup("net"), 0);
    fill_frame(frame, sizeof(frame), 7);
    a_frame_waits_for_a_second_buffer(frame, sizeof(frame));
    usleep(100 * 1000);
    post_rx(DATA + 0x1000, 2048);
    kick(RXQ);
    assert_true(wait_used(RXQ, 2));
    stats_at_exit(said, sizeof(said));
    char *at = strstr(said, "smolvm: virtio-net: 1 frames received; 1 waits for guest buffers, "
                            "longest ");
    assert_non_null(at);
    assert_int_equal(sscanf(at, "%*[^g]guest buffers, longest %lld ms", &longest), 1);
    assert_true(longest >= 100 && longest < 10000);
    assert_non_null(strstr(at, " ms, 0 ended without a kick; 0 dropped\n"));
    assert_int_equal(scratch_teardown(), 0);
}

/* A frame still waiting for guest buffers at exit was not received: its
 * wait counts (to the end), the frame does not. */
static void stats_count_no_frame_still_waiting(void **state)
{
    uint8_t frame[200];
    char said[512];
    (void)state;
    assert_int_equal(scratch_setup("net"), 0);
    fill_frame(frame, sizeof(frame), 8);
    a_frame_waits_for_a_second_buffer(frame, sizeof(frame));
    stats_at_exit(said, sizeof(said));
    assert_non_null(strstr(said, "smolvm: virtio-net: 0 frames received; 1 waits for guest "
                                 "buffers, longest "));
    assert_int_equal(scratch_teardown(), 0);
}

static uint16_t link_status(void)
{
    return (uint16_t)(mmio_read(0x104) >> 16);
}

static void the_link_goes_down_with_the_backend(void **state)
{
    (void)state;
    driver_init(F_VERSION_1 | F_STATUS);
    uint32_t generation = mmio_read(0x0fc);
    assert_int_equal(link_status() & 1, 1);
    close(peer);
    peer = -1;
    for (int i = 0; i < 10000 && (link_status() & 1); i++)
        usleep(1000);
    assert_int_equal(link_status() & 1, 0);
    assert_true(mmio_read(0x0fc) != generation);
    assert_true(mmio_read(0x060) & 2); /* a config-change interrupt */
}

/* A restored guest announces itself; the driver's ack clears the bit. */
static void a_restored_nic_announces_itself(void **state)
{
    struct blob saved = {0};
    uint64_t ctrl[2] = {DATA, DATA + 0x100};
    uint32_t len[2] = {2, 1};
    uint16_t flags[2] = {0, D_WRITE};
    (void)state;
    driver_init(F_VERSION_1 | F_STATUS | F_CTRL_VQ | F_GUEST_ANNOUNCE);
    assert_int_equal(vm_save_device_state(vm, &saved), 0);
    assert_int_equal(vm_restore_device_state(vm, saved.data, saved.len), 0);
    blob_free(&saved);
    assert_int_equal(link_status(), 1 | 2);
    ram(DATA)[0] = 3; /* VIRTIO_NET_CTRL_ANNOUNCE */
    ram(DATA)[1] = 0; /* ACK */
    ram(DATA + 0x100)[0] = 0xee;
    post(CTRLQ, 2, ctrl, len, flags);
    kick(CTRLQ);
    assert_int_equal(ram(DATA + 0x100)[0], 0); /* VIRTIO_NET_OK */
    assert_int_equal(link_status(), 1);
}

/* An Ethernet + IPv4 frame to dst with protocol proto and 20 bytes of
 * transport header (TCP flags, UDP ports as given). */
static size_t ipv4_frame(uint8_t *f, const char *dst, uint8_t proto, uint8_t tcp_flags,
                         uint16_t sport, uint16_t dport)
{
    memset(f, 0, 60);
    memcpy(f, "\x52\x55\x0a\x00\x02\x02\x52\x54\x00\xab\xcd\xef\x08\x00", 14);
    f[14] = 0x45;
    f[17] = 40;
    f[22] = 64;
    f[23] = proto;
    inet_pton(AF_INET, "10.0.2.15", f + 26);
    inet_pton(AF_INET, dst, f + 30);
    f[34] = (uint8_t)(sport >> 8);
    f[35] = (uint8_t)sport;
    f[36] = (uint8_t)(dport >> 8);
    f[37] = (uint8_t)dport;
    f[47] = tcp_flags;
    return 54;
}

/* user,allow=: the VMM lets out only what the list allows, judged on the
 * frame it copied; the rest is dropped and counted. */
static void the_allowlist_is_enforced_in_the_vmm(void **state)
{
    static const struct {
        const char *dst;
        uint8_t proto, flags;
        uint16_t sport, dport;
        bool out;
    } cases[] = {
        {"192.0.2.77", 6, 0x02, 40000, 443, true},    /* an allowed network */
        {"198.51.100.7", 17, 0, 40000, 123, true},    /* an allowed address */
        {"198.51.100.8", 6, 0x02, 40000, 443, false}, /* its neighbour */
        {"8.8.8.8", 17, 0, 40000, 53, false},
        {"10.0.2.3", 17, 0, 40000, 53, true},         /* the NAT's DNS */
        {"255.255.255.255", 17, 0, 68, 67, true},     /* DHCP */
        {"10.0.2.2", 6, 0x02, 40000, 22, false},      /* a new connection to the host */
        {"10.0.2.2", 6, 0x12, 80, 40000, true},       /* a forward's SYN-ACK */
        {"10.0.2.2", 6, 0x10, 80, 40000, true},       /* ... and its data */
        {"10.0.2.2", 17, 0, 53, 40000, true},         /* a UDP forward's reply */
        {"10.0.2.2", 17, 0, 54, 40000, false},        /* UDP to the host otherwise */
    };
    uint8_t hdr[12] = {0}, frame[60], got[2048];
    (void)state;
    driver_init(F_VERSION_1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t before = virtio_net_dropped();
        size_t len = ipv4_frame(frame, cases[i].dst, cases[i].proto, cases[i].flags,
                                cases[i].sport, cases[i].dport);
        send_frame(hdr, frame, (uint32_t)len);
        if (cases[i].out) {
            assert_int_equal(peer_recv(got, sizeof(got)), len);
        } else {
            assert_true(peer_idle());
            assert_int_equal(virtio_net_dropped(), before + 1);
        }
    }
    /* IPv6 and a header that lies about its length do not pass. */
    ipv4_frame(frame, "192.0.2.1", 6, 0x02, 1, 2);
    frame[12] = 0x86;
    frame[13] = 0xdd;
    send_frame(hdr, frame, 54);
    ipv4_frame(frame, "192.0.2.1", 6, 0x02, 1, 2);
    frame[14] = 0x4f; /* 60-byte header in a 40-byte packet */
    send_frame(hdr, frame, 34 + 10);
    assert_true(peer_idle());
    assert_int_equal(mmio_read(0x070) & NEEDS_RESET, 0);
}

/* ---- options and the bundle's JSON ---- */

static void parses_docker_port_forwards(void **state)
{
    struct vm_net_config net = {0};
    char text[64];
    (void)state;
    assert_int_equal(net_parse_forward("8080:80", &net), 0);
    assert_int_equal(net_parse_forward("127.0.0.1:5353:53/udp", &net), 0);
    assert_int_equal(net.forward_count, 2);
    assert_int_equal(net.forwards[0].host_port, 8080);
    assert_int_equal(net.forwards[0].guest_port, 80);
    assert_false(net.forwards[0].udp);
    assert_true(net.forwards[1].udp);
    net_format_forward(&net.forwards[1], text, sizeof(text));
    assert_string_equal(text, "127.0.0.1:5353:53/udp");
    const char *bad[] = {"80", "0:80", "8080:65536", "x:80", "8080:80/sctp", "1.2.3:80:80",
                         "8080:80/", ":80", "8080:", "99999999999:1", "::80:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_true(net_parse_forward(bad[i], &net) < 0);
    assert_int_equal(net.forward_count, 2);
    net.mode = VM_NET_NONE;
    assert_true(net_config_check(&net) < 0); /* forwards need user */
    net.mode = VM_NET_USER;
    assert_int_equal(net_config_check(&net), 0);
    assert_int_equal(net_parse_forward("0.0.0.0:8080:81", &net), 0);
    assert_true(net_config_check(&net) < 0); /* host port 8080/tcp twice */
}

static void parses_modes_and_macs(void **state)
{
    struct vm_net_config net = {0};
    (void)state;
    assert_int_equal(net_parse_option("net", "user,restrict", &net), 0);
    assert_true(net.mode == VM_NET_USER && net.restrict_outbound);
    assert_int_equal(net_parse_option("net", "none", &net), 0);
    assert_true(net.mode == VM_NET_NONE && !net.restrict_outbound);
    assert_true(net_parse_option("net", "tap", &net) < 0);
    assert_true(net_parse_option("net", "tap=", &net) < 0);
    assert_true(net_parse_option("net", "tap=a/b", &net) < 0);
    assert_true(net_parse_option("net", "tap=..", &net) < 0);
    assert_true(net_parse_option("net", "tap=0123456789abcdef", &net) < 0);
    assert_int_equal(net_parse_option("net", "tap=tap0", &net), 0);
    assert_true(net.mode == VM_NET_TAP && strcmp(net.tap_name, "tap0") == 0);
    assert_true(net_parse_option("net", "user,", &net) < 0);
    assert_int_equal(net_parse_option("net", "user,allow=10.1.0.0/16,allow=1.2.3.4", &net), 0);
    assert_int_equal(net.allow_count, 2);
    assert_int_equal(net.allow[0].mask, htonl(0xffff0000u));
    assert_int_equal(net.allow[1].mask, 0xffffffffu);
    const char *bad_user[] = {"user,", "user,bogus", "user,allow=", "user,allow=1.2.3.0/33",
                              "user,allow=1.2.3/24", "user,allow=1.2.3.4/-1",
                              "user,restrict,allow=1.2.3.4", "user,allow=example.com"};
    for (size_t i = 0; i < sizeof(bad_user) / sizeof(bad_user[0]); i++)
        assert_true(net_parse_option("net", bad_user[i], &net) < 0);
    assert_int_equal(net_parse_option("mac", "02:00:00:00:00:01", &net), 0);
    assert_true(net_parse_mac("03:00:00:00:00:01", &net) < 0);  /* multicast */
    assert_true(net_parse_mac("02:00:00:00:00:0g", &net) < 0);
    assert_true(net_parse_mac("02:00:00:00:00:001", &net) < 0);
    assert_true(net_parse_mac("02-00-00-00-00-01", &net) < 0);
    assert_true(net_parse_mac("2:0:0:0:0:1xxxxxx", &net) < 0);
}

static void the_bundle_carries_the_network(void **state)
{
    struct vm_config cfg, back;
    char *json;
    (void)state;
    vm_config_defaults(&cfg);
    assert_int_equal(net_parse_mode("user,restrict", &cfg.net), 0);
    assert_int_equal(net_parse_forward("10.1.2.3:8080:80", &cfg.net), 0);
    assert_int_equal(net_parse_mac("52:54:00:00:00:09", &cfg.net), 0);
    json = vm_config_to_json(&cfg);
    assert_non_null(json);
    assert_int_equal(vm_config_from_json(json, &back), 0);
    free(json);
    assert_int_equal(back.net.mode, VM_NET_USER);
    assert_true(back.net.restrict_outbound);
    assert_true(back.net.mac_set);
    assert_memory_equal(back.net.mac, cfg.net.mac, 6);
    assert_int_equal(back.net.forward_count, 1);
    assert_memory_equal(&back.net.forwards[0], &cfg.net.forwards[0], sizeof(cfg.net.forwards[0]));
    vm_config_release(&back);
    /* An allowlist, canonical. */
    vm_config_defaults(&cfg);
    assert_int_equal(net_parse_mode("user,allow=10.1.2.3/16,allow=1.2.3.4", &cfg.net), 0);
    json = vm_config_to_json(&cfg);
    assert_non_null(strstr(json, "\"10.1.0.0/16\""));
    assert_int_equal(vm_config_from_json(json, &back), 0);
    free(json);
    assert_int_equal(back.net.allow_count, 2);
    assert_memory_equal(back.net.allow, cfg.net.allow, 2 * sizeof(cfg.net.allow[0]));
    vm_config_release(&back);
    /* A TAP by its name. */
    vm_config_defaults(&cfg);
    assert_int_equal(net_parse_mode("tap=tap7", &cfg.net), 0);
    json = vm_config_to_json(&cfg);
    assert_int_equal(vm_config_from_json(json, &back), 0);
    free(json);
    assert_int_equal(back.net.mode, VM_NET_TAP);
    assert_string_equal(back.net.tap_name, "tap7");
    vm_config_release(&back);
    /* No "net": an older bundle, no network. */
    assert_int_equal(vm_config_from_json("{\"cpus\": 1, \"mem_bytes\": 16777216}", &back), 0);
    assert_int_equal(back.net.mode, VM_NET_NONE);
    vm_config_release(&back);
}

static void hostile_network_json_is_refused(void **state)
{
    static const char *const bad[] = {
        "\"user\"",
        "{\"mode\": \"tap\"}",
        "{\"mode\": 1}",
        "{}",
        "{\"mode\": \"user\", \"restrict\": \"yes\"}",
        "{\"mode\": \"user\", \"mac\": \"ff:ff:ff:ff:ff:ff\"}",
        "{\"mode\": \"user\", \"mac\": 5}",
        "{\"mode\": \"user\", \"forwards\": \"8080:80\"}",
        "{\"mode\": \"user\", \"forwards\": [80]}",
        "{\"mode\": \"user\", \"forwards\": [\"8080:80/icmp\"]}",
        "{\"mode\": \"none\", \"forwards\": [\"8080:80\"]}",
        "{\"mode\": \"user\", \"forwards\": [\"8080:80\", \"8080:81\"]}",
        "{\"mode\": \"tap\"}",
        "{\"mode\": \"tap\", \"tap\": \"../../x\"}",
        "{\"mode\": \"tap\", \"tap\": \"tap0\", \"restrict\": true}",
        "{\"mode\": \"user\", \"allow\": \"1.2.3.4\"}",
        "{\"mode\": \"user\", \"allow\": [\"1.2.3.4/40\"]}",
        "{\"mode\": \"user\", \"allow\": [7]}",
        "{\"mode\": \"user\", \"restrict\": true, \"allow\": [\"1.2.3.4\"]}",
        "{\"mode\": \"none\", \"allow\": [\"1.2.3.4\"]}",
        "{\"mode\": \"user\", \"allow\": [\"1.1.1.1\", \"1.1.1.2\", \"1.1.1.3\", \"1.1.1.4\", "
        "\"1.1.1.5\", \"1.1.1.6\", \"1.1.1.7\", \"1.1.1.8\", \"1.1.1.9\", \"1.1.1.10\", \"1.1.1.11\", "
        "\"1.1.1.12\", \"1.1.1.13\", \"1.1.1.14\", \"1.1.1.15\", \"1.1.1.16\", \"1.1.1.17\"]}",
    };
    struct vm_config cfg;
    char text[512];
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "{\"cpus\": 1, \"mem_bytes\": 16777216, \"net\": %s}", bad[i]);
        assert_true(vm_config_from_json(text, &cfg) < 0);
    }
    /* More forwards than a VM takes. */
    int n = snprintf(text, sizeof(text), "{\"cpus\": 1, \"mem_bytes\": 16777216, \"net\": "
                                         "{\"mode\": \"user\", \"forwards\": [");
    for (int i = 0; i <= VM_MAX_PORT_FORWARDS; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%s\"%d:80\"", i ? "," : "", 1000 + i);
    snprintf(text + n, sizeof(text) - (size_t)n, "]}}");
    assert_true(vm_config_from_json(text, &cfg) < 0);
}

/* The command line into a bundle: smolvm pack with the network options,
 * the bundle's config read back; bad options are usage errors (exit 2). */
static void pack_carries_the_network_options(void **state)
{
    char smolvm[4096], cmd[8192];
    struct vm_config back;
    struct bundle *b;
    uint8_t *json;
    size_t len;
    (void)state;
    assert_int_equal(scratch_setup("net"), 0);
    assert_int_equal(scratch_find_smolvm(smolvm, sizeof(smolvm)), 0);
    assert_int_equal(sh("head -c 4096 /dev/zero > kernel"), 0);
    snprintf(cmd, sizeof(cmd), "'%s' pack -o t.smolmachine --kernel kernel --net user,restrict "
             "-p 127.0.0.1:8080:80 --publish 5353:53/udp --mac 52:54:00:00:00:07 > /dev/null",
             smolvm);
    assert_int_equal(sh("%s", cmd), 0);
    assert_int_equal(bundle_open(in_dir("t.smolmachine"), &b), 0);
    assert_int_equal(bundle_read(b, "config", &json, &len), 0);
    bundle_close(b);
    assert_int_equal(vm_config_from_json((const char *)json, &back), 0);
    free(json);
    assert_int_equal(back.net.mode, VM_NET_USER);
    assert_true(back.net.restrict_outbound);
    assert_int_equal(back.net.forward_count, 2);
    assert_true(back.net.forwards[1].udp && back.net.forwards[1].host_port == 5353);
    assert_int_equal(back.net.mac[5], 7);
    vm_config_release(&back);
    const char *bad[] = {"--net wifi", "-p 80", "--net none -p 8080:80", "--mac 01:00:5e:00:00:01",
                         "--net user -p 8080:80 -p 8080:81"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(cmd, sizeof(cmd), "'%s' pack -o u.smolmachine --kernel kernel %s 2> err", smolvm,
                 bad[i]);
        assert_int_equal(sh("%s", cmd), 2);
        assert_int_equal(sh("test $(wc -l < err) -eq 1 && ! test -e u.smolmachine"), 0);
    }
    assert_int_equal(scratch_teardown(), 0);
}

/* The network the bundle at path (in the scratch folder) was packed with. */
static enum vm_net_mode packed_net_mode(const char *path, unsigned *forwards)
{
    struct vm_config back;
    struct bundle *b;
    uint8_t *json;
    size_t len;

    assert_int_equal(bundle_open(in_dir(path), &b), 0);
    assert_int_equal(bundle_read(b, "config", &json, &len), 0);
    bundle_close(b);
    assert_int_equal(vm_config_from_json((const char *)json, &back), 0);
    free(json);
    enum vm_net_mode mode = back.net.mode;
    *forwards = back.net.forward_count;
    vm_config_release(&back);
    return mode;
}

/* The default network, decided by the command line: an appliance gets
 * user-mode NAT unless --net none (and -p works on it without --net, as
 * docker's); a kernel of the user's own gets no NIC; --help says so. */
static void an_appliance_gets_the_user_network_by_default(void **state)
{
    static const struct {
        const char *args;
        enum vm_net_mode mode;
        unsigned forwards;
    } cases[] = {
        {"app", VM_NET_USER, 0},
        {"-p 8080:80 app", VM_NET_USER, 1},
        {"--net none app", VM_NET_NONE, 0},
        {"--net tap=tap7 app", VM_NET_TAP, 0},
        {"--kernel kernel", VM_NET_NONE, 0},
    };
    char smolvm[4096];
    unsigned forwards;
    (void)state;
    assert_int_equal(scratch_setup("net"), 0);
    assert_int_equal(scratch_find_smolvm(smolvm, sizeof(smolvm)), 0);
    assert_int_equal(sh("head -c 4096 /dev/zero > kernel && mkdir app && "
                        "echo '{}' > app/appliance.json && cp kernel app/kernel && "
                        "cp kernel app/initrd && head -c 65536 /dev/zero > app/root.ext2"),
                     0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(sh("'%s' pack -o %zu.smolmachine %s > /dev/null", smolvm, i,
                            cases[i].args),
                         0);
        char bundle[32];
        snprintf(bundle, sizeof(bundle), "%zu.smolmachine", i);
        assert_int_equal(packed_net_mode(bundle, &forwards), cases[i].mode);
        assert_int_equal(forwards, cases[i].forwards);
    }
    /* A kernel of one's own still needs --net user for a forward. */
    assert_int_equal(sh("'%s' pack -o x.smolmachine --kernel kernel -p 8080:80 2> /dev/null",
                        smolvm),
                     2);
    assert_int_equal(sh("'%s' run --help | tr -s ' \n' ' ' | "
                        "grep -q 'Default: user for an appliance'", smolvm),
                     0);
    /* create keeps the network in instance.json, which each start boots
     * with: an appliance's default, --net none, a bundle's own (with its
     * forwards), none for an image. */
    static const struct {
        const char *args, *net;
    } creates[] = {
        {"i-app --from app", "\"mode\":\"user\""},
        {"i-none --from app --net none", NULL},
        {"i-bundle --from c.smolmachine", "\"0.0.0.0:8080:80/tcp\"],\"mode\":\"user\""},
        {"i-image --from app/root.ext2", NULL},
    };
    assert_int_equal(sh("'%s' pack -o c.smolmachine --kernel kernel --disk app/root.ext2 "
                        "--net user -p 8080:80 > /dev/null", smolvm),
                     0);
    for (size_t i = 0; i < sizeof(creates) / sizeof(creates[0]); i++) {
        const char *name = creates[i].args;
        int n = (int)strcspn(name, " ");
        assert_int_equal(sh("HOME=\"$PWD\" XDG_DATA_HOME=\"$PWD/data\" '%s' create %s > /dev/null",
                            smolvm, creates[i].args),
                         0);
        if (creates[i].net)
            assert_int_equal(sh("tr -d ' \\n' < data/smolvm/instances/%.*s/instance.json | "
                                "grep -qF '%s'", n, name, creates[i].net),
                             0);
        else
            assert_int_equal(sh("! grep -q '\"net\"' data/smolvm/instances/%.*s/instance.json", n,
                                name),
                             0);
    }
    assert_int_equal(scratch_teardown(), 0);
}

/* ---- --net user: the smolvm-net helper (libslirp) behind the backend ---- */

static void use_built_helper(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s", SMOLVM_BINARY);
    *strrchr(path, '/') = '\0';
    strcat(path, "/smolvm-net");
    if (access(path, X_OK) < 0)
        skip(); /* built without libslirp-dev */
    setenv("SMOLVM_NET_HELPER", path, 1);
}

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

/* Who has IP (from 10.0.2.15)? as the guest would ask. */
static void send_arp_request(struct net_backend *b, const uint8_t ip[4])
{
    uint8_t f[42] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    memcpy(f + 6, guest_mac, 6);
    memcpy(f + 12, "\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01", 10);
    memcpy(f + 22, guest_mac, 6);
    memcpy(f + 28, "\x0a\x00\x02\x0f", 4);
    memcpy(f + 38, ip, 4);
    assert_int_equal(net_backend_send(b, f, sizeof(f)), 0);
}

/* The next frame (the helper's greeting before it taken: -EAGAIN). */
static ssize_t backend_frame(struct net_backend *b, uint8_t *buf, size_t cap)
{
    struct pollfd p = {.fd = net_backend_fd(b), .events = POLLIN};
    ssize_t n = -EAGAIN;
    while (n == -EAGAIN && poll(&p, 1, 3000) > 0)
        n = net_backend_recv(b, buf, cap);
    return n == -EAGAIN ? -1 : n;
}

static void the_nat_answers_at_the_gateway(void **state)
{
    struct vm_net_config cfg = {.mode = VM_NET_USER, .fd = -1};
    struct net_backend *b;
    uint8_t frame[2048];
    (void)state;
    use_built_helper();
    assert_int_equal(net_backend_open(&cfg, &b), 0);
    send_arp_request(b, (const uint8_t[]){10, 0, 2, 2});
    ssize_t n = backend_frame(b, frame, sizeof(frame));
    assert_true(n >= 42);
    assert_memory_equal(frame, guest_mac, 6);               /* to us */
    assert_memory_equal(frame + 12, "\x08\x06", 2);          /* ARP */
    assert_int_equal(frame[21], 2);                         /* a reply */
    assert_memory_equal(frame + 28, "\x0a\x00\x02\x02", 4); /* from the gateway */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    net_backend_close(b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* It left on its own when its socket closed, well before the kill at 3 s. */
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    print_message("smolvm-net exited %ld ms after its socket closed\n", ms);
    assert_true(ms < 2000);
}

/* $SMOLVM_NET_STATS (inherited from smolvm): at exit the helper says how
 * many frames it made for the guest, how many waited for room in the
 * socket to the VMM and for how long, how many it dropped. */
static void the_helper_says_its_figures(void **state)
{
    struct vm_net_config cfg = {.mode = VM_NET_USER, .fd = -1};
    struct net_backend *b;
    uint8_t frame[2048];
    char said[512];
    int log, saved;
    (void)state;
    use_built_helper();
    assert_int_equal(scratch_setup("net"), 0);
    setenv("SMOLVM_NET_STATS", "1", 1);
    saved = stderr_to("helper.err", &log);
    assert_int_equal(net_backend_open(&cfg, &b), 0);
    unsetenv("SMOLVM_NET_STATS");
    send_arp_request(b, (const uint8_t[]){10, 0, 2, 2});
    ssize_t n = backend_frame(b, frame, sizeof(frame));
    net_backend_close(b);
    stderr_back(saved, log, said, sizeof(said));
    assert_true(n >= 42);
    assert_non_null(strstr(said, "smolvm-net: "));
    assert_non_null(strstr(said, " frames for the guest, "));
    assert_non_null(strstr(said, " dropped; 0 from the guest too large\n"));
    assert_int_equal(scratch_teardown(), 0);
}

/* The pid of this test's smolvm-net child (its only child named so). */
static pid_t helper_child(void)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    pid_t found = 0;
    int pid;
    while (!found && fscanf(f, "%d", &pid) == 1) {
        char comm[64] = "";
        snprintf(line, sizeof(line), "/proc/%d/comm", pid);
        FILE *c = fopen(line, "r");
        if (c && fgets(comm, sizeof(comm), c) && strcmp(comm, "smolvm-net\n") == 0)
            found = pid;
        if (c)
            fclose(c);
    }
    fclose(f);
    return found;
}

/* The helper parses the guest's frames (libslirp) under a seccomp filter of
 * its own, installed before it says it is ready: Seccomp 2 in its /proc
 * status while it answers. */
static void the_helper_runs_under_its_filter(void **state)
{
    struct vm_net_config cfg = {.mode = VM_NET_USER, .fd = -1};
    struct net_backend *b;
    uint8_t frame[2048];
    char path[64], line[256];
    bool filtered = false;
    (void)state;
    use_built_helper();
    assert_int_equal(net_backend_open(&cfg, &b), 0);
    send_arp_request(b, (const uint8_t[]){10, 0, 2, 2});
    assert_true(backend_frame(b, frame, sizeof(frame)) >= 42); /* it serves */
    pid_t pid = helper_child();
    assert_true(pid > 0);
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        filtered |= strcmp(line, "Seccomp:\t2\n") == 0;
    fclose(f);
    assert_true(filtered);
    net_backend_close(b);
}

/* Test builds: the helper's hook makes a call its filter forbids (execve)
 * once it is confined; it ends with one line, and the link with it. */
static void a_forbidden_call_ends_the_helper(void **state)
{
    struct vm_net_config cfg = {.mode = VM_NET_USER, .fd = -1};
    struct net_backend *b;
    uint8_t frame[2048];
    char said[256] = "";
    (void)state;
#ifndef SMOLVM_TEST_HOOKS
    skip(); /* the hook is in the test builds only */
#endif
    use_built_helper();
    assert_int_equal(scratch_setup("net"), 0);
    int log, saved = stderr_to("helper.err", &log);
    setenv("SMOLVM_TEST_NET_VIOLATION", "1", 1);
    int r = net_backend_open(&cfg, &b);
    ssize_t n = r == 0 ? backend_frame(b, frame, sizeof(frame)) : -1;
    unsetenv("SMOLVM_TEST_NET_VIOLATION");
    if (r == 0)
        net_backend_close(b);
    stderr_back(saved, log, said, sizeof(said));
    assert_true(n < 0); /* no frame: the helper is gone */
    assert_non_null(strstr(said, "smolvm-net: seccomp: forbidden system call nr 59\n"));
    assert_int_equal(scratch_teardown(), 0);
}

/* Without forwards nothing waits for the helper to start (a boot goes on
 * meanwhile): a slow helper (here a second late) still answers the frames
 * sent before it was up. */
static void the_helper_starts_while_the_vm_boots(void **state)
{
    struct vm_net_config cfg = {.mode = VM_NET_USER, .fd = -1};
    struct net_backend *b;
    struct timespec t0, t1;
    uint8_t frame[2048];
    ssize_t n;
    (void)state;
    use_built_helper();
    assert_int_equal(scratch_setup("net"), 0);
    assert_int_equal(sh("printf '#!/bin/sh\\nsleep 1\\nexec %%s \"$@\"\\n' '%s' > slow-helper && "
                        "chmod +x slow-helper", getenv("SMOLVM_NET_HELPER")), 0);
    setenv("SMOLVM_NET_HELPER", in_dir("slow-helper"), 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(net_backend_open(&cfg, &b), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    print_message("net_backend_open returned after %ld ms\n", ms);
    assert_true(ms < 500);
    send_arp_request(b, (const uint8_t[]){10, 0, 2, 2});
    n = backend_frame(b, frame, sizeof(frame));
    assert_true(n >= 42);
    assert_int_equal(frame[21], 2);                         /* an ARP reply */
    assert_memory_equal(frame + 28, "\x0a\x00\x02\x02", 4); /* from the gateway */
    net_backend_close(b);
    assert_int_equal(scratch_teardown(), 0);
}

/* A helper that cannot serve shows on the first receive: one line, and
 * the backend is gone (the link goes down), not a frame of its words. */
static void a_helper_that_fails_late_is_gone(void **state)
{
    struct vm_net_config cfg = {.mode = VM_NET_USER, .fd = -1};
    struct net_backend *b;
    uint8_t frame[2048];
    (void)state;
    assert_int_equal(scratch_setup("net"), 0);
    assert_int_equal(sh("printf '#!/bin/sh\\nprintf \"smolvm-net error: no slirp\" >&3\\n' "
                        "> failing-helper && chmod +x failing-helper"), 0);
    setenv("SMOLVM_NET_HELPER", in_dir("failing-helper"), 1);
    assert_int_equal(net_backend_open(&cfg, &b), 0);
    assert_int_equal(backend_frame(b, frame, sizeof(frame)), -EIO);
    assert_non_null(strstr(err_msg(), "no slirp"));
    net_backend_close(b);
    assert_int_equal(scratch_teardown(), 0);
}

static int listening_port(int *fd)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*fd >= 0);
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(*fd, 1), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* A host port forward: a connection to it reaches the guest's network (the
 * NAT asks where 10.0.2.15 is first); a port already taken is refused at
 * start, by name. */
static void forwards_a_host_port_and_refuses_a_taken_one(void **state)
{
    struct vm_net_config cfg = {.mode = VM_NET_USER, .fd = -1};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct net_backend *b;
    uint8_t frame[2048];
    char spec[64];
    int taken, port = listening_port(&taken), c;
    (void)state;
    use_built_helper();
    snprintf(spec, sizeof(spec), "127.0.0.1:%d:80", port);
    assert_int_equal(net_parse_forward(spec, &cfg), 0);
    assert_true(net_backend_open(&cfg, &b) < 0);
    assert_non_null(strstr(err_msg(), "cannot listen on host port"));
    close(taken); /* now free */
    assert_int_equal(net_backend_open(&cfg, &b), 0);
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    a.sin_port = htons((uint16_t)port);
    connect(c, (struct sockaddr *)&a, sizeof(a));
    ssize_t n = backend_frame(b, frame, sizeof(frame));
    assert_true(n >= 42);
    assert_memory_equal(frame + 12, "\x08\x06", 2);          /* ARP */
    assert_memory_equal(frame + 38, "\x0a\x00\x02\x0f", 4); /* who has the guest? */
    close(c);
    net_backend_close(b);
}

/* The user backend with a UDP forward from a free port of 127.0.0.1 to
 * the guest's port 53: the backend, and the host's address to send to. */
static struct net_backend *open_udp_forward(struct sockaddr_in *a)
{
    struct vm_net_config cfg = {.mode = VM_NET_USER, .fd = -1};
    struct net_backend *b;
    socklen_t len = sizeof(*a);
    char spec[64];
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    use_built_helper();
    /* A free port: bound, read, let go. */
    *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(u, (struct sockaddr *)a, sizeof(*a)), 0);
    assert_int_equal(getsockname(u, (struct sockaddr *)a, &len), 0);
    close(u);
    snprintf(spec, sizeof(spec), "127.0.0.1:%d:53/udp", ntohs(a->sin_port));
    assert_int_equal(net_parse_forward(spec, &cfg), 0);
    assert_int_equal(net_backend_open(&cfg, &b), 0);
    return b;
}

/* A UDP forward (-p HOSTPORT:GUESTPORT/udp): a datagram to the host port
 * reaches the guest's network (the NAT asks where 10.0.2.15 is). */
static void forwards_a_udp_port(void **state)
{
    struct sockaddr_in a;
    struct net_backend *b = open_udp_forward(&a);
    uint8_t frame[2048];
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    (void)state;
    assert_int_equal(sendto(u, "ping", 4, 0, (struct sockaddr *)&a, sizeof(a)), 4);
    ssize_t n = backend_frame(b, frame, sizeof(frame));
    assert_true(n >= 42);
    assert_memory_equal(frame + 12, "\x08\x06", 2);          /* ARP */
    assert_memory_equal(frame + 38, "\x0a\x00\x02\x0f", 4); /* who has the guest? */
    close(u);
    net_backend_close(b);
}

/* Bytes waiting in the receive queue of this host's UDP socket bound to
 * 127.0.0.1:port (the helper's forward), from /proc/net/udp; -1: none. */
static long udp_queued(int port)
{
    char line[512], want[32];
    long queued = -1;
    FILE *f = fopen("/proc/net/udp", "r");
    snprintf(want, sizeof(want), "0100007F:%04X ", port);
    while (f && fgets(line, sizeof(line), f)) {
        unsigned long tx, rx;
        char *at = strstr(line, want);
        if (at && sscanf(at + strlen(want), "%*s %*s %lx:%lx", &tx, &rx) == 2)
            queued = (long)rx;
    }
    if (f)
        fclose(f);
    return queued;
}

/* A burst for the guest larger than the socket to the VMM holds (a VMM
 * busy elsewhere, a guest slow to post buffers) waits in the helper and
 * arrives whole, in order, once the VMM reads: slirp's TCP must not see
 * losses the host never made. Each datagram to a UDP forward is one frame
 * for the guest; the sender waits until the helper has taken each group,
 * so none is lost on the host's side. */
static void a_burst_for_a_slow_reader_is_not_lost(void **state)
{
    /* More than the socket holds (smolvm sets 1 MiB, which the kernel
     * doubles, or less where wmem_max is lower), less than the helper keeps. */
    enum { FRAMES = 1600, GROUP = 20 };
    struct sockaddr_in a;
    struct net_backend *b = open_udp_forward(&a);
    uint8_t frame[2048], payload[1000] = "burst";
    int u, port = ntohs(a.sin_port), got = 0, next = 0;
    ssize_t n;
    (void)state;
    send_arp_request(b, (const uint8_t[]){10, 0, 2, 2}); /* the NAT learns our MAC */
    assert_true(backend_frame(b, frame, sizeof(frame)) >= 42);
    u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    for (int i = 0; i < FRAMES; i++) {
        memcpy(payload + 8, &i, sizeof(i));
        assert_int_equal(sendto(u, payload, sizeof(payload), 0, (struct sockaddr *)&a, sizeof(a)),
                         sizeof(payload));
        for (int waited = 0; (i + 1) % GROUP == 0 && udp_queued(port) > 0 && waited < 5000;
             waited++)
            poll(NULL, 0, 1);
    }
    close(u);
    /* Now the reader comes: every frame, in the order sent. */
    while (got < FRAMES && (n = backend_frame(b, frame, sizeof(frame))) > 0) {
        int seq;
        if (n != 14 + 20 + 8 + (ssize_t)sizeof(payload) || frame[23] != 17)
            continue; /* not one of ours (an ARP, IPv6's router advertisement) */
        memcpy(&seq, frame + 42 + 8, sizeof(seq));
        assert_int_equal(seq, next);
        next++;
        got++;
    }
    net_backend_close(b);
    assert_int_equal(got, FRAMES);
}

/* ---- --net tap=IFNAME (needs CAP_NET_ADMIN to make one: skipped without) ---- */

static int tap_up(const char *name)
{
    struct ifreq ifr = {0};
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    r = ioctl(s, SIOCGIFFLAGS, &ifr);
    ifr.ifr_flags |= IFF_UP;
    r = r ?: ioctl(s, SIOCSIFFLAGS, &ifr);
    r = r ?: ioctl(s, SIOCGIFINDEX, &ifr);
    close(s);
    return r < 0 ? -1 : ifr.ifr_ifindex;
}

/* Frames both ways between the backend and the host's side of the TAP (a
 * packet socket on it), in the local experimental ethertype 0x88b5. */
static void a_tap_carries_frames_both_ways(void **state)
{
    struct vm_net_config cfg = {.fd = -1};
    struct net_backend *b;
    uint8_t out[60] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x88, 0xb5},
            in[60], got[2048];
    char name[16];
    (void)state;
    snprintf(name, sizeof(name), "smoltest%d", (int)(getpid() % 100000));
    char arg[32];
    snprintf(arg, sizeof(arg), "tap=%s", name);
    assert_int_equal(net_parse_mode(arg, &cfg), 0);
    if (net_backend_open(&cfg, &b) < 0) {
        print_message("no TAP here: %s\n", err_msg());
        skip();
    }
    int ifindex = tap_up(name);
    assert_true(ifindex > 0);
    int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(0x88b5));
    assert_true(ps >= 0);
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(0x88b5),
                             .sll_ifindex = ifindex, .sll_halen = 6};
    assert_int_equal(bind(ps, (struct sockaddr *)&ll, sizeof(ll)), 0);
    assert_true(net_backend_with_header(b)); /* each frame after a virtio-net header */
    uint8_t with_hdr[12 + sizeof(out)] = {0};
    memcpy(out + 14, "from-the-guest", 14);
    memcpy(with_hdr + 12, out, sizeof(out));
    assert_int_equal(net_backend_send(b, with_hdr, sizeof(with_hdr)), 0);
    struct pollfd p = {.fd = ps, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_int_equal(recv(ps, got, sizeof(got), 0), sizeof(out));
    assert_memory_equal(got, out, sizeof(out));
    memcpy(in, out, sizeof(in));
    memcpy(in + 14, "from-the-host!", 14);
    memset(ll.sll_addr, 0xff, 6);
    assert_int_equal(sendto(ps, in, sizeof(in), 0, (struct sockaddr *)&ll, sizeof(ll)),
                     sizeof(in));
    ssize_t n;
    do /* the host may send its own frames too (IPv6 neighbour discovery) */
        n = backend_frame(b, got, sizeof(got));
    while (n > 26 && memcmp(got + 12 + 12, "\x88\xb5", 2) != 0);
    assert_int_equal(n, 12 + sizeof(in));
    assert_int_equal(got[1], 0); /* no segmentation: none was asked for */
    assert_memory_equal(got + 12, in, sizeof(in));
    close(ps);
    net_backend_close(b); /* a TAP we made goes with us */
    assert_true(tap_up(name) < 0);
}

#define F_GUEST_TSO4 (1ull << 7)
#define F_HOST_TSO4 (1ull << 11)

/* A NIC on a TAP (IFF_VNET_HDR) offers TCP segmentation both ways and
 * hands the guest's header to the host's kernel: a 3000-byte TCPv4
 * segment with its checksum left partial leaves whole for the kernel to
 * cut (the same without the offload negotiated: dropped); a frame from the
 * host arrives behind the kernel's header. */
static void a_tap_takes_segmentation_offloads(void **state)
{
    struct vm_config cfg;
    char name[16], arg[32];
    uint8_t hdr[12] = {1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0}; /* NEEDS_CSUM, TCPV4, 1448 */
    static uint8_t seg[54 + 3000], got[8192];
    (void)state;
    snprintf(name, sizeof(name), "smolgso%d", (int)(getpid() % 100000));
    snprintf(arg, sizeof(arg), "tap=%s", name);
    vm_config_defaults(&cfg);
    cfg.mem_bytes = 16u << 20;
    cfg.rng = false;
    assert_int_equal(net_parse_mode(arg, &cfg.net), 0);
    if (vm_create_devices_only(&cfg, &vm) < 0) {
        print_message("no TAP here: %s\n", err_msg());
        skip();
    }
    int ifindex = tap_up(name);
    assert_true(ifindex > 0);
    mmio_write(0x014, 0);
    assert_true(mmio_read(0x010) & F_HOST_TSO4 && mmio_read(0x010) & F_GUEST_TSO4);
    int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                             .sll_ifindex = ifindex, .sll_halen = 6};
    assert_true(ps >= 0);
    assert_int_equal(bind(ps, (struct sockaddr *)&ll, sizeof(ll)), 0);
    /* Ethernet, IPv4 (20 bytes, TCP, 10.9.9.2 -> 10.9.9.1), TCP (20 bytes). */
    memset(seg, 0xff, 6);
    memcpy(seg + 6, "\x52\x54\x00\xab\xcd\xef\x08\x00", 8);
    memcpy(seg + 14, "\x45\x00\x0b\xe8\x00\x01\x40\x00\x40\x06\x00\x00"
                     "\x0a\x09\x09\x02\x0a\x09\x09\x01", 20);
    memcpy(seg + 34, "\x30\x39\x00\x50\x00\x00\x00\x01\x00\x00\x00\x00\x50\x18\xff\xff",
           16);
    memset(seg + 54, 'x', 3000);
    driver_init(F_VERSION_1 | F_CSUM | F_GUEST_CSUM | F_MRG_RXBUF); /* no TSO */
    uint64_t before = virtio_net_dropped();
    send_frame(hdr, seg, sizeof(seg));
    assert_true(wait_used(TXQ, 1));
    assert_int_equal(virtio_net_dropped(), before + 1);
    driver_init(F_VERSION_1 | F_CSUM | F_GUEST_CSUM | F_MRG_RXBUF | F_HOST_TSO4 | F_GUEST_TSO4);
    send_frame(hdr, seg, sizeof(seg));
    ssize_t n;
    struct pollfd p = {.fd = ps, .events = POLLIN};
    do /* the host's own frames (IPv6 neighbour discovery) may come first */
        n = poll(&p, 1, 2000) == 1 ? recv(ps, got, sizeof(got), 0) : -1;
    while (n > 0 && n != (ssize_t)sizeof(seg));
    assert_int_equal(n, sizeof(seg)); /* one frame, past the MTU: the kernel segments it */
    assert_memory_equal(got + 54, seg + 54, 3000);
    /* From the host: a frame behind the header the kernel wrote. */
    uint8_t in[60] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0, 0, 0, 1, 0x88, 0xb5};
    memcpy(in + 14, "from-the-host!", 14);
    post_rx(DATA + 0x8000, 4096);
    kick(RXQ);
    memcpy(ll.sll_addr, in, 6);
    assert_int_equal(sendto(ps, in, sizeof(in), 0, (struct sockaddr *)&ll, sizeof(ll)),
                     sizeof(in));
    for (uint16_t i = 1; i < 8 && wait_used(RXQ, i); i++) { /* again past the host's own */
        if (memcmp(ram(DATA + 0x8000 + 12 + 12), "\x88\xb5", 2) == 0)
            break;
        post_rx(DATA + 0x8000, 4096);
        kick(RXQ);
    }
    assert_memory_equal(ram(DATA + 0x8000 + 12), in, sizeof(in));
    assert_int_equal(ram(DATA + 0x8000)[10], 1); /* num_buffers */
    close(ps);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    /* The device threads under their seccomp filters, as in run and start. */
    confine_seccomp_set(CONFINE_SECCOMP_ON, "test");
    const struct CMUnitTest tests[] = {
        T(offers_mac_link_and_mtu),
        T(transmits_a_frame),
        T(completes_a_partial_checksum),
        T(the_checksum_is_right_at_every_length),
        T(a_full_backend_holds_the_queue_back),
        T(drops_oversized_and_offload_frames),
        T(a_chain_without_header_breaks_the_device),
        T(a_looping_chain_breaks_the_device),
        T(receives_into_mergeable_buffers),
        T(a_guest_that_stops_reading_costs_no_memory),
        T(drops_frames_larger_than_negotiated),
        T(a_reset_holds_no_frame),
        T(event_idx_receive_asks_for_the_next_kick),
        T(buffers_added_without_a_kick_are_found),
        T(stats_say_how_long_frames_waited),
        T(stats_count_no_frame_still_waiting),
        T(the_link_goes_down_with_the_backend),
        T(a_restored_nic_announces_itself),
        cmocka_unit_test_setup_teardown(the_allowlist_is_enforced_in_the_vmm, setup_allowlist,
                                        teardown),
        cmocka_unit_test(parses_docker_port_forwards),
        cmocka_unit_test(parses_modes_and_macs),
        cmocka_unit_test(the_bundle_carries_the_network),
        cmocka_unit_test(hostile_network_json_is_refused),
        cmocka_unit_test(pack_carries_the_network_options),
        cmocka_unit_test(an_appliance_gets_the_user_network_by_default),
        cmocka_unit_test(the_nat_answers_at_the_gateway),
        cmocka_unit_test(the_helper_says_its_figures),
        cmocka_unit_test(the_helper_starts_while_the_vm_boots),
        cmocka_unit_test(the_helper_runs_under_its_filter),
        cmocka_unit_test(a_forbidden_call_ends_the_helper),
        cmocka_unit_test(a_helper_that_fails_late_is_gone),
        cmocka_unit_test(forwards_a_host_port_and_refuses_a_taken_one),
        cmocka_unit_test(forwards_a_udp_port),
        cmocka_unit_test(a_burst_for_a_slow_reader_is_not_lost),
        cmocka_unit_test(a_tap_carries_frames_both_ways),
        cmocka_unit_test_teardown(a_tap_takes_segmentation_offloads, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
