/* virtio-vsock driven as a guest driver would drive it: a VM of devices
 * only, its three queues set up through the virtio-mmio registers in guest
 * RAM, packets laid into them, and real unix sockets on the host side
 * (Firecracker's protocol). The host sockets and the guest's rx queue are
 * the judges; the device runs on its own thread, so results are waited
 * for (up to WAIT_MS). Hostile-guest cases: over-long packets, unknown
 * ops and connections, credit overrun, no credit, connection floods. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "core/vm.h"
#include "devices/virtio/vsock.h"
#include "scratch.h"
#include "util/blob.h"
#include "util/err.h"
#include "util/le.h"
#include "confine/confine.h"

#define CID 3
#define QS 64
#define RING(q) (0x100000ull + (q) * 0x10000ull)
#define BUFS(q) (0x400000ull + (q) * 0x100000ull)
#define BUF_BYTES 0x4000u /* per descriptor */
#define WAIT_MS 3000

static struct vm *vm;
static uint64_t base;
static uint16_t avail_idx[3], used_seen[3];
static unsigned tx_next;

static void mmio_write(uint64_t off, uint32_t v)
{
    assert_true(vm_bus_access(vm, false, base + off, &v, 4, true));
}

static uint32_t mmio_read(uint64_t off)
{
    uint32_t v = 0;
    assert_true(vm_bus_access(vm, false, base + off, &v, 4, false));
    return v;
}

static uint8_t *ram(uint64_t gpa, uint64_t len)
{
    uint8_t *p = gpa_ptr(vm_memory(vm), gpa, len);
    assert_non_null(p);
    return p;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static volatile uint16_t *used_idx_ptr(unsigned q)
{
    return (volatile uint16_t *)ram(RING(q) + 0x2000 + 2, 2);
}

/* Publishes descriptor d of queue q (its buffer, len bytes), no kick. */
static void publish_quietly(unsigned q, uint16_t d, uint32_t len, bool writable)
{
    uint8_t *desc = ram(RING(q) + 16ull * d, 16);
    uint8_t *avail = ram(RING(q) + 0x1000, 4 + 2 * QS);

    put_le(desc, BUFS(q) + (uint64_t)d * BUF_BYTES, 8);
    put_le(desc + 8, len, 4);
    put_le(desc + 12, writable ? 2 : 0, 2);
    put_le(avail + 4 + 2 * (avail_idx[q] % QS), d, 2);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    put_le(avail + 2, ++avail_idx[q], 2);
}

/* The same, and kicks. */
static void publish(unsigned q, uint16_t d, uint32_t len, bool writable)
{
    publish_quietly(q, d, len, writable);
    mmio_write(0x050, q);
}

static void set_up_queue(unsigned q)
{
    mmio_write(0x030, q);
    mmio_write(0x038, QS);
    mmio_write(0x080, (uint32_t)RING(q));
    mmio_write(0x090, (uint32_t)(RING(q) + 0x1000));
    mmio_write(0x0a0, (uint32_t)(RING(q) + 0x2000));
    mmio_write(0x044, 1);
}

static void driver_probe(void)
{
    memset(avail_idx, 0, sizeof(avail_idx));
    memset(used_seen, 0, sizeof(used_seen));
    tx_next = 0;
    memset(ram(RING(0), 0x30000), 0, 0x30000);
    mmio_write(0x070, 0);
    mmio_write(0x070, 1 | 2);
    mmio_write(0x024, 1);
    mmio_write(0x020, 1); /* VIRTIO_F_VERSION_1 */
    mmio_write(0x070, 1 | 2 | 8);
    for (unsigned q = 0; q < 3; q++)
        set_up_queue(q);
    mmio_write(0x070, 1 | 2 | 8 | 4);
    for (uint16_t d = 0; d < QS; d++)
        publish(VSOCK_RXQ, d, BUF_BYTES, true);
    publish(VSOCK_EVENTQ, 0, 4, true);
}

static int setup(void **state)
{
    struct vm_config cfg;
    (void)state;
    vm_config_defaults(&cfg);
    cfg.mem_bytes = 32u << 20;
    cfg.rng = false;
    cfg.vsock_cid = CID;
    cfg.vsock_path = in_dir("vm.vsock");
    assert_int_equal(vm_create_devices_only(&cfg, &vm), 0);
    for (base = X86_VIRTIO_MMIO_BASE; mmio_read(0x008) != VIRTIO_ID_VSOCK;
         base += X86_VIRTIO_MMIO_WINDOW)
        assert_true(base < X86_VIRTIO_MMIO_BASE + 8 * X86_VIRTIO_MMIO_WINDOW);
    driver_probe();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vm_destroy(vm);
    err_clear();
    return 0;
}

static struct vsock_hdr hdr(uint32_t src_port, uint32_t dst_port, uint16_t op)
{
    return (struct vsock_hdr){.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = src_port,
                              .dst_port = dst_port, .type = VSOCK_TYPE_STREAM, .op = op,
                              .buf_alloc = 1u << 20};
}

/* A tx packet: the header claims h.len, the buffer holds buffer_len bytes
 * of payload. Waits until the device took it. */
static void send_raw(struct vsock_hdr h, const void *payload, uint32_t buffer_len)
{
    uint16_t d = (uint16_t)(tx_next++ % QS);
    uint8_t *buf = ram(BUFS(VSOCK_TXQ) + (uint64_t)d * BUF_BYTES, BUF_BYTES);
    uint64_t until = now_ms() + WAIT_MS;

    vsock_hdr_encode(&h, buf);
    if (buffer_len)
        memcpy(buf + VSOCK_HDR_BYTES, payload, buffer_len);
    publish(VSOCK_TXQ, d, VSOCK_HDR_BYTES + buffer_len, false);
    while (*used_idx_ptr(VSOCK_TXQ) != avail_idx[VSOCK_TXQ] && now_ms() < until &&
           !(mmio_read(0x070) & 0x40))
        usleep(1000);
}

static void send_pkt(struct vsock_hdr h, const void *payload, uint32_t len)
{
    h.len = len;
    send_raw(h, payload, len);
}

/* The next packet the device put in the rx queue (its payload into data):
 * false when none came within ms. The buffer goes back to the device. */
static bool recv_pkt(struct vsock_hdr *h, void *data, unsigned ms)
{
    uint64_t until = now_ms() + ms;
    uint8_t *used = ram(RING(VSOCK_RXQ) + 0x2000, 4 + 8 * QS);
    uint16_t d;

    while (*used_idx_ptr(VSOCK_RXQ) == used_seen[VSOCK_RXQ]) {
        if (now_ms() >= until)
            return false;
        usleep(1000);
    }
    d = (uint16_t)le32(used + 4 + 8 * (used_seen[VSOCK_RXQ]++ % QS));
    const uint8_t *buf = ram(BUFS(VSOCK_RXQ) + (uint64_t)d * BUF_BYTES, BUF_BYTES);
    vsock_hdr_decode(buf, h);
    assert_true(h->len <= BUF_BYTES - VSOCK_HDR_BYTES);
    if (data)
        memcpy(data, buf + VSOCK_HDR_BYTES, h->len);
    publish(VSOCK_RXQ, d, BUF_BYTES, true);
    return true;
}

static void expect_op(uint16_t op, uint32_t local_port, uint32_t peer_port)
{
    struct vsock_hdr h;
    assert_true(recv_pkt(&h, NULL, WAIT_MS));
    assert_int_equal(h.op, op);
    assert_int_equal(h.src_cid, VSOCK_HOST_CID);
    assert_int_equal(h.dst_cid, CID);
    assert_int_equal(h.src_port, local_port);
    assert_int_equal(h.dst_port, peer_port);
}

static int unix_listen(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 256), 0);
    return fd;
}

static int unix_connect(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Reads exactly len bytes (or fails the test after WAIT_MS). */
static void read_exact(int fd, void *out, size_t len)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (size_t got = 0; got < len;) {
        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        ssize_t n = read(fd, (char *)out + got, len - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
}

/* 0 for end of file, 1 for data, -1 when nothing came within ms. */
static int host_peek(int fd, unsigned ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    if (poll(&p, 1, (int)ms) != 1)
        return -1;
    return recv(fd, &c, 1, MSG_PEEK) > 0 ? 1 : 0;
}

/* A guest connection to host port 1234, accepted on "<socket>_1234". */
static int guest_connects(int listener, uint32_t guest_port)
{
    int fd;
    send_pkt(hdr(guest_port, 1234, VSOCK_OP_REQUEST), NULL, 0);
    expect_op(VSOCK_OP_RESPONSE, 1234, guest_port);
    fd = accept(listener, NULL, NULL);
    assert_true(fd >= 0);
    return fd;
}

static void guest_connects_to_a_host_port(void **state)
{
    int listener = unix_listen(in_dir("vm.vsock_1234")), fd;
    char got[16];
    struct vsock_hdr h;
    (void)state;

    fd = guest_connects(listener, 5000);
    send_pkt(hdr(5000, 1234, VSOCK_OP_RW), "hello", 5);
    read_exact(fd, got, 5);
    assert_memory_equal(got, "hello", 5);
    assert_int_equal(write(fd, "world", 5), 5);
    assert_true(recv_pkt(&h, got, WAIT_MS));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 5);
    assert_memory_equal(got, "world", 5);
    assert_int_equal(h.buf_alloc, VSOCK_BUF_ALLOC);
    assert_int_equal(h.fwd_cnt, 5); /* the 5 bytes it forwarded */
    /* The guest closes: the host sees end of file, the guest its RST. */
    struct vsock_hdr bye = hdr(5000, 1234, VSOCK_OP_SHUTDOWN);
    bye.flags = VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND;
    send_pkt(bye, NULL, 0);
    assert_int_equal(host_peek(fd, WAIT_MS), 0);
    expect_op(VSOCK_OP_RST, 1234, 5000);
    /* A port nobody listens on: RST. */
    send_pkt(hdr(5001, 999, VSOCK_OP_REQUEST), NULL, 0);
    expect_op(VSOCK_OP_RST, 999, 5001);
    close(fd);
    close(listener);
}

/* Host side: "CONNECT port\n", the guest's REQUEST; returns the host port. */
static uint32_t host_connects(int fd, uint32_t port)
{
    struct vsock_hdr h;
    char line[32];
    dprintf(fd, "CONNECT %u\n", port);
    assert_true(recv_pkt(&h, NULL, WAIT_MS));
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    assert_int_equal(h.dst_port, port);
    send_pkt(hdr(port, h.src_port, VSOCK_OP_RESPONSE), NULL, 0);
    int n = snprintf(line, sizeof(line), "OK %u\n", h.src_port);
    char got[32] = {0};
    read_exact(fd, got, (size_t)n);
    assert_string_equal(got, line);
    return h.src_port;
}

static void host_connects_to_a_guest_port(void **state)
{
    int fd = unix_connect(in_dir("vm.vsock"));
    struct vsock_hdr h;
    char got[16];
    (void)state;

    uint32_t hp = host_connects(fd, 52);
    assert_int_equal(write(fd, "ping", 4), 4);
    assert_true(recv_pkt(&h, got, WAIT_MS));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.dst_port, 52);
    assert_memory_equal(got, "ping", 4);
    send_pkt(hdr(52, hp, VSOCK_OP_RW), "pong", 4);
    read_exact(fd, got, 4);
    assert_memory_equal(got, "pong", 4);
    /* The host closes: the guest is told it will get no more. */
    shutdown(fd, SHUT_WR);
    assert_true(recv_pkt(&h, NULL, WAIT_MS));
    assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
    close(fd);

    /* Nobody listens on the guest port: the guest's RST closes the client. */
    fd = unix_connect(in_dir("vm.vsock"));
    dprintf(fd, "CONNECT 53\n");
    assert_true(recv_pkt(&h, NULL, WAIT_MS));
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    send_pkt(hdr(53, h.src_port, VSOCK_OP_RST), NULL, 0);
    assert_int_equal(host_peek(fd, WAIT_MS), 0);
    close(fd);
    /* A line that is not CONNECT: closed, the guest hears nothing. */
    fd = unix_connect(in_dir("vm.vsock"));
    dprintf(fd, "HELLO 53\n");
    assert_int_equal(host_peek(fd, WAIT_MS), 0);
    assert_false(recv_pkt(&h, NULL, 100));
    close(fd);
}

static void unknown_ops_and_connections_get_rst(void **state)
{
    int listener = unix_listen(in_dir("vm.vsock_1234")), fd;
    (void)state;

    send_pkt(hdr(6000, 4321, VSOCK_OP_RW), "x", 1); /* no such connection */
    expect_op(VSOCK_OP_RST, 4321, 6000);
    fd = guest_connects(listener, 6001);
    send_pkt(hdr(6001, 1234, 99), NULL, 0); /* an op no spec has */
    expect_op(VSOCK_OP_RST, 1234, 6001);
    assert_int_equal(host_peek(fd, WAIT_MS), 0); /* and its host end closed */
    close(fd);
    struct vsock_hdr dgram = hdr(6002, 1234, VSOCK_OP_REQUEST);
    dgram.type = 2; /* not a stream */
    send_pkt(dgram, NULL, 0);
    expect_op(VSOCK_OP_RST, 1234, 6002);
    close(listener);
}

static void packet_longer_than_its_buffer_breaks_the_device(void **state)
{
    struct vsock_hdr h = hdr(7000, 1234, VSOCK_OP_RW);
    (void)state;
    h.len = 4096;
    send_raw(h, "short", 5);
    assert_true(mmio_read(0x070) & 0x40); /* DEVICE_NEEDS_RESET */
    driver_probe(); /* a reset brings it back */
    assert_false(mmio_read(0x070) & 0x40);
    send_pkt(hdr(7001, 999, VSOCK_OP_REQUEST), NULL, 0);
    expect_op(VSOCK_OP_RST, 999, 7001);
}

static void guest_past_its_credit_is_reset(void **state)
{
    int listener = unix_listen(in_dir("vm.vsock_1234")), fd;
    static uint8_t chunk[BUF_BYTES - VSOCK_HDR_BYTES];
    struct vsock_hdr h;
    (void)state;

    fd = guest_connects(listener, 8000);
    /* The host never reads: its socket buffer, then smolvm's fill up. */
    for (unsigned i = 0; i < 2 * (VSOCK_BUF_ALLOC + (1u << 20)) / sizeof(chunk); i++)
        send_pkt(hdr(8000, 1234, VSOCK_OP_RW), chunk, sizeof(chunk));
    for (;;) {
        assert_true(recv_pkt(&h, NULL, WAIT_MS));
        if (h.op == VSOCK_OP_RST)
            break;
        assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    }
    assert_int_equal(h.dst_port, 8000);
    close(fd);
    close(listener);
}

static void guest_without_credit_gets_no_data(void **state)
{
    int listener = unix_listen(in_dir("vm.vsock_1234")), fd;
    static uint8_t lots[1u << 20];
    struct vsock_hdr h, grant;
    uint32_t got = 0;
    (void)state;

    send_pkt((struct vsock_hdr){.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = 9000,
                                .dst_port = 1234, .type = VSOCK_TYPE_STREAM,
                                .op = VSOCK_OP_REQUEST, .buf_alloc = 0},
             NULL, 0);
    expect_op(VSOCK_OP_RESPONSE, 1234, 9000);
    fd = accept(listener, NULL, NULL);
    /* The host writes far more than the guest may take. */
    assert_true(send(fd, lots, sizeof(lots), MSG_DONTWAIT) > 0);
    assert_false(recv_pkt(&h, NULL, 300));
    grant = hdr(9000, 1234, VSOCK_OP_CREDIT_UPDATE);
    grant.buf_alloc = 6000;
    send_pkt(grant, NULL, 0);
    while (recv_pkt(&h, NULL, 300)) {
        assert_int_equal(h.op, VSOCK_OP_RW);
        got += h.len;
    }
    assert_int_equal(got, 6000); /* exactly its credit */
    grant.fwd_cnt = 6000; /* it consumed them all */
    send_pkt(grant, NULL, 0);
    got = 0;
    while (recv_pkt(&h, NULL, 300))
        got += h.len;
    assert_int_equal(got, 6000);
    close(fd);
    close(listener);
}

static void connection_flood_is_bounded(void **state)
{
    int listener = unix_listen(in_dir("vm.vsock_1234"));
    unsigned responses = 0, rsts = 0;
    struct vsock_hdr h;
    (void)state;

    for (uint32_t i = 0; i < VSOCK_MAX_CONNS + 20; i++) {
        send_pkt(hdr(10000 + i, 1234, VSOCK_OP_REQUEST), NULL, 0);
        while (recv_pkt(&h, NULL, 20))
            h.op == VSOCK_OP_RESPONSE ? responses++ : h.op == VSOCK_OP_RST ? rsts++ : 0;
    }
    while (recv_pkt(&h, NULL, 200))
        h.op == VSOCK_OP_RESPONSE ? responses++ : h.op == VSOCK_OP_RST ? rsts++ : 0;
    assert_int_equal(responses, VSOCK_MAX_CONNS);
    assert_int_equal(rsts, 20);
    /* The host end too: the clients past the table wait or are closed. */
    close(listener);
}

static void restore_sends_transport_reset(void **state)
{
    int listener = unix_listen(in_dir("vm.vsock_1234")), fd;
    struct blob saved = {0};
    uint8_t *event = ram(BUFS(VSOCK_EVENTQ), 4);
    (void)state;

    fd = guest_connects(listener, 11000);
    memset(event, 0xee, 4);
    assert_int_equal(vm_save_device_state(vm, &saved), 0);
    assert_int_equal(vm_restore_device_state(vm, saved.data, saved.len), 0);
    uint64_t until = now_ms() + WAIT_MS;
    while (*used_idx_ptr(VSOCK_EVENTQ) == 0 && now_ms() < until)
        usleep(1000);
    assert_int_equal(*used_idx_ptr(VSOCK_EVENTQ), 1);
    assert_int_equal(le32(event), VSOCK_EVENT_TRANSPORT_RESET);
    /* The connection open at save time is closed on the host, not left hanging. */
    assert_int_equal(host_peek(fd, WAIT_MS), 0);
    /* A host connection waits until the guest handled the reset (it
     * re-posts its event buffer): else the guest's reset would kill it too. */
    int client = unix_connect(in_dir("vm.vsock"));
    struct vsock_hdr h;
    dprintf(client, "CONNECT 52\n");
    assert_false(recv_pkt(&h, NULL, 300));
    /* Linux's refill does not kick when the device asked for no kick
     * (EVENT_IDX): the posted buffer alone is the sign. */
    publish_quietly(VSOCK_EVENTQ, 0, 4, true);
    assert_true(recv_pkt(&h, NULL, 200));
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    close(client);
    blob_free(&saved);
    close(fd);
    close(listener);
}

/* A host connection held while the guest has not handled a restore's
 * transport reset is not closed by the CONNECT line's 2 s meanwhile, and
 * the guest gets its whole answer time once the request reaches it
 * (nested: a restored guest answered exec's first connect after the
 * device had closed it, "no agent answers"). */
static void held_request_gets_its_answer_time(void **state)
{
    struct blob saved = {0};
    struct vsock_hdr h;
    char got[32] = {0}, line[32];
    int client, n;
    (void)state;

    assert_int_equal(vm_save_device_state(vm, &saved), 0);
    assert_int_equal(vm_restore_device_state(vm, saved.data, saved.len), 0);
    client = unix_connect(in_dir("vm.vsock"));
    dprintf(client, "CONNECT 52\n");
    /* The event buffer never comes back: the request is held past the
     * line's 2 s, then goes. */
    assert_true(recv_pkt(&h, NULL, VSOCK_RESET_ACK_MS + 1000));
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    usleep((VSOCK_ANSWER_TIMEOUT_MS - 500) * 1000); /* past the 2 s to reach it */
    send_pkt(hdr(52, h.src_port, VSOCK_OP_RESPONSE), NULL, 0);
    n = snprintf(line, sizeof(line), "OK %u\n", h.src_port);
    read_exact(client, got, (size_t)n);
    assert_string_equal(got, line);
    close(client);
    blob_free(&saved);
}

static void driver_reset_closes_host_connections(void **state)
{
    int fd = unix_connect(in_dir("vm.vsock"));
    (void)state;
    host_connects(fd, 52);
    driver_probe();
    assert_int_equal(host_peek(fd, WAIT_MS), 0);
    close(fd);
}

/* No driver (a guest without vsock, or before it loads): a host client is
 * let go after the connect timeout instead of waiting forever. */
static void host_client_let_go_without_a_driver(void **state)
{
    int fd;
    (void)state;
    mmio_write(0x070, 0);
    fd = unix_connect(in_dir("vm.vsock"));
    dprintf(fd, "CONNECT 52\n");
    assert_int_equal(host_peek(fd, VSOCK_CONNECT_TIMEOUT_MS + 1000), 0);
    close(fd);
}

int main(void)
{
    /* The device threads under their seccomp filters, as in run and start. */
    confine_seccomp_set(CONFINE_SECCOMP_ON, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(guest_connects_to_a_host_port, setup, teardown),
        cmocka_unit_test_setup_teardown(host_connects_to_a_guest_port, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_ops_and_connections_get_rst, setup, teardown),
        cmocka_unit_test_setup_teardown(packet_longer_than_its_buffer_breaks_the_device, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(guest_past_its_credit_is_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(guest_without_credit_gets_no_data, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_flood_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(restore_sends_transport_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(held_request_gets_its_answer_time, setup, teardown),
        cmocka_unit_test_setup_teardown(driver_reset_closes_host_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(host_client_let_go_without_a_driver, setup, teardown),
    };
    if (scratch_setup("vsock") < 0)
        return 1;
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    scratch_teardown();
    return r;
}
