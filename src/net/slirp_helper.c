/* smolvm-net: user-mode NAT (libslirp) for one VM, in a process of its own.
 *
 *   smolvm-net --fd=N [--mtu=BYTES] [--restrict] [--no-ipv6] [-p HOSTIP:HOSTPORT:GUESTPORT/PROTO]...
 *
 * Descriptor N is a SOCK_SEQPACKET socket whose every message is one
 * Ethernet frame of the guest's (net/backend.h). The first message we send
 * says whether we serve (forwards bound) or why not. We exit when the VMM
 * closes its end: the VM is gone.
 *
 * The guest's network is QEMU's user network: 10.0.2.0/24, the host (its
 * loopback too) at the gateway 10.0.2.2, DNS forwarded at 10.0.2.3, the
 * guest leased 10.0.2.15 by DHCP; IPv6 fec0::/64 by router advertisement.
 *
 * Frames from the guest come in batches (recvmmsg). A frame slirp makes for
 * the guest goes to the socket at once, straight from slirp's buffer, when
 * none waits before it: no copy, and no wait for the end of the loop's
 * round (slirp's TCP window is 64 KiB, without scaling: with 64 KiB frames
 * the guest's next segment waits for this ACK). Frames that wait leave in
 * batches (sendmmsg).
 *
 * The link's MTU is NET_USER_MTU (64 KiB, as slirp4netns and passt): slirp
 * is a TCP endpoint of its own, so a large MTU costs nothing on the host's
 * side and moves 40 times fewer frames (and VM exits, copies, system
 * calls) per byte than Ethernet's 1500.
 *
 * Frames for the guest that the socket has no room for wait here, in order,
 * until it has (we poll for POLLOUT): a burst is not lost, and slirp's TCP
 * (no SACK, a slow recovery) never sees a loss the host did not make. The
 * wait is bounded (BACKLOG frames, BACKLOG_BYTES): beyond it, frames for a
 * guest that does not read are dropped (TCP retransmits), so memory here
 * does not grow with a stalled guest. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <slirp/libslirp.h>

#include "net/backend.h"
#include "net/slirp_seccomp.h"

#define GUEST_ERRORS_SHOWN 10
#define BATCH 64          /* frames per recvmmsg/sendmmsg */
#define BATCH_FRAME (NET_USER_MTU + 18) /* the largest frame either side passes */
#define BACKLOG 4096      /* frames for the guest waiting for room in the socket */
#define BACKLOG_BYTES (16u << 20)

/* Frames from the guest, gathered for one system call. */
struct batch {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint8_t frames[BATCH][BATCH_FRAME];
};

/* Frames for the guest, oldest first: a ring of copies. */
struct backlog {
    struct iovec frames[BACKLOG];
    unsigned head, count;
    size_t bytes;
    /* $SMOLVM_NET_STATS: how long the VMM left frames here (a stall
     * between us and the guest shows as seconds). */
    int64_t since_ms; /* when the oldest waiting frame came (count > 0) */
    int64_t longest_ms;
    unsigned long long waited, peak;
};

struct timer {
    SlirpTimerCb cb;
    void *opaque;
    int64_t expire_ms; /* -1: not armed */
    struct timer *next;
};

struct helper {
    Slirp *slirp;
    int fd;
    struct pollfd *fds;
    size_t nfds, cap;
    struct timer *timers;
    struct backlog to_guest;
    struct batch from_guest;
    unsigned long long dropped, to_guest_frames, truncated;
    unsigned guest_errors;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The backlog emptied (or we end): how long its oldest frames waited. */
static void backlog_drained(struct backlog *q)
{
    int64_t waited = now_ns() / 1000000 - q->since_ms;

    if (waited > q->longest_ms)
        q->longest_ms = waited;
}

/* Sends what waits for the guest, oldest first, as long as the socket has
 * room; the rest waits for POLLOUT. */
static void flush_to_guest(struct helper *h)
{
    struct backlog *q = &h->to_guest;
    struct mmsghdr msgs[BATCH];

    while (q->count) {
        unsigned n = 0;
        for (; n < BATCH && n < q->count; n++)
            msgs[n] = (struct mmsghdr){.msg_hdr = {
                .msg_iov = &q->frames[(q->head + n) % BACKLOG], .msg_iovlen = 1}};
        int sent = sendmmsg(h->fd, msgs, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent <= 0)
            return; /* full (EAGAIN, ENOBUFS), or the VMM is gone: the loop sees that */
        for (int i = 0; i < sent; i++) {
            struct iovec *f = &q->frames[q->head];
            q->bytes -= f->iov_len;
            free(f->iov_base);
            *f = (struct iovec){0};
            q->head = (q->head + 1) % BACKLOG;
            q->count--;
        }
        if (!q->count)
            backlog_drained(q);
    }
}

static ssize_t send_packet(const void *buf, size_t len, void *opaque)
{
    struct helper *h = opaque;
    struct backlog *q = &h->to_guest;
    void *copy;
    ssize_t sent;

    if (!q->count && len <= BATCH_FRAME) {
        do
            sent = send(h->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (sent < 0 && errno == EINTR);
        if (sent == (ssize_t)len) {
            h->to_guest_frames++;
            return sent; /* else it waits: no room, or the VMM is gone (the loop sees that) */
        }
    }
    if (q->count == BACKLOG || q->bytes + len > BACKLOG_BYTES)
        flush_to_guest(h);
    /* slirp's MTU is ours: never larger; a guest that does not read: dropped */
    if (len > BATCH_FRAME || q->count == BACKLOG || q->bytes + len > BACKLOG_BYTES ||
        !(copy = malloc(len))) {
        h->dropped++;
        return (ssize_t)len;
    }
    memcpy(copy, buf, len);
    if (!q->count)
        q->since_ms = now_ns() / 1000000;
    q->frames[(q->head + q->count) % BACKLOG] = (struct iovec){copy, len};
    q->count++;
    q->bytes += len;
    q->waited++;
    q->peak = q->count > q->peak ? q->count : q->peak;
    h->to_guest_frames++;
    return (ssize_t)len;
}

static void batch_init(struct batch *b)
{
    for (unsigned i = 0; i < BATCH; i++) {
        b->iov[i] = (struct iovec){.iov_base = b->frames[i], .iov_len = BATCH_FRAME};
        b->msgs[i].msg_hdr = (struct msghdr){.msg_iov = &b->iov[i], .msg_iovlen = 1};
    }
}

static void guest_error(const char *msg, void *opaque)
{
    struct helper *h = opaque;
    if (h->guest_errors++ < GUEST_ERRORS_SHOWN)
        fprintf(stderr, "smolvm-net: the guest sent a bad packet: %s\n", msg);
}

static int64_t clock_get_ns(void *opaque)
{
    (void)opaque;
    return now_ns();
}

static void *timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
    struct helper *h = opaque;
    struct timer *t = calloc(1, sizeof(*t));

    if (!t)
        abort();
    t->cb = cb;
    t->opaque = cb_opaque;
    t->expire_ms = -1;
    t->next = h->timers;
    h->timers = t;
    return t;
}

static void timer_free(void *timer, void *opaque)
{
    struct helper *h = opaque;

    for (struct timer **p = &h->timers; *p; p = &(*p)->next)
        if (*p == timer) {
            *p = (*p)->next;
            free(timer);
            return;
        }
}

static void timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    (void)opaque;
    ((struct timer *)timer)->expire_ms = expire_ms;
}

static void no_fd(int fd, void *opaque)
{
    (void)fd;
    (void)opaque;
}

static void notify(void *opaque)
{
    (void)opaque;
}

static const SlirpCb callbacks = {
    .send_packet = send_packet,
    .guest_error = guest_error,
    .clock_get_ns = clock_get_ns,
    .timer_new = timer_new,
    .timer_free = timer_free,
    .timer_mod = timer_mod,
    .register_poll_fd = no_fd,
    .unregister_poll_fd = no_fd,
    .notify = notify,
};

static int add_poll(int fd, int events, void *opaque)
{
    struct helper *h = opaque;
    short e = 0;

    if (h->nfds == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        struct pollfd *fds = realloc(h->fds, cap * sizeof(*fds));
        if (!fds)
            abort();
        h->fds = fds;
        h->cap = cap;
    }
    if (events & SLIRP_POLL_IN)
        e |= POLLIN;
    if (events & SLIRP_POLL_OUT)
        e |= POLLOUT;
    if (events & SLIRP_POLL_PRI)
        e |= POLLPRI;
    h->fds[h->nfds] = (struct pollfd){.fd = fd, .events = e};
    return (int)h->nfds++;
}

static int get_revents(int idx, void *opaque)
{
    struct helper *h = opaque;
    short r = h->fds[idx].revents;

    return (r & POLLIN ? SLIRP_POLL_IN : 0) | (r & POLLOUT ? SLIRP_POLL_OUT : 0) |
           (r & POLLPRI ? SLIRP_POLL_PRI : 0) | (r & POLLERR ? SLIRP_POLL_ERR : 0) |
           (r & POLLHUP ? SLIRP_POLL_HUP : 0);
}

/* Fires the timers due; returns ms until the next one (UINT32_MAX: none). */
static uint32_t run_timers(struct helper *h)
{
    int64_t now = now_ns() / 1000000, next = -1;

    for (struct timer *t = h->timers, *after; t; t = after) {
        after = t->next; /* a callback may re-arm or free its timer */
        if (t->expire_ms >= 0 && t->expire_ms <= now) {
            t->expire_ms = -1;
            t->cb(t->opaque);
        }
    }
    for (struct timer *t = h->timers; t; t = t->next)
        if (t->expire_ms >= 0 && (next < 0 || t->expire_ms < next))
            next = t->expire_ms;
    if (next < 0)
        return UINT32_MAX;
    return next <= now ? 0 : (uint32_t)(next - now < INT_MAX ? next - now : INT_MAX);
}

/* Frames from the guest, a batch of them; false when the VMM has gone. A
 * frame larger than the VMM passes (truncated) is dropped. */
static bool take_frames(struct helper *h)
{
    struct batch *b = &h->from_guest;
    int n;

    for (int i = 0; i < BATCH; i++)
        b->iov[i].iov_len = BATCH_FRAME;
    n = recvmmsg(h->fd, b->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    for (int i = 0; i < n; i++) {
        unsigned len = b->msgs[i].msg_len;
        if (len == 0)
            return false; /* end of file: the VMM has gone */
        if (!(b->msgs[i].msg_hdr.msg_flags & MSG_TRUNC))
            slirp_input(h->slirp, b->frames[i], (int)len);
        else
            h->truncated++;
    }
    return true;
}

static void serve(struct helper *h)
{
    for (;;) {
        uint32_t timeout = run_timers(h);
        int r;

        flush_to_guest(h); /* what this round made, before we sleep */
        h->nfds = 0;
        add_poll(h->fd, SLIRP_POLL_IN | (h->to_guest.count ? SLIRP_POLL_OUT : 0), h);
        slirp_pollfds_fill(h->slirp, &timeout, add_poll, h);
        r = poll(h->fds, h->nfds, timeout == UINT32_MAX ? -1 : (int)timeout);
        if (r < 0 && errno != EINTR)
            return;
        slirp_pollfds_poll(h->slirp, r < 0, get_revents, h);
        if (h->fds[0].revents & POLLIN) {
            if (!take_frames(h))
                return;
        } else if (h->fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            return;
        }
    }
}

/* $SMOLVM_NET_STATS (smolvm's environment): our figures at exit. */
static void say_stats(struct helper *h)
{
    const char *want = getenv("SMOLVM_NET_STATS");

    if (!want || !*want)
        return;
    if (h->to_guest.count)
        backlog_drained(&h->to_guest);
    fprintf(stderr, "smolvm-net: %llu frames for the guest, %llu waited for room (at most %llu at "
                    "once, longest %lld ms), %llu dropped; %llu from the guest too large\n",
            h->to_guest_frames, h->to_guest.waited, h->to_guest.peak,
            (long long)h->to_guest.longest_ms, h->dropped, h->truncated);
}

static void say(int fd, const char *prefix, const char *msg)
{
    char text[256];
    int n = snprintf(text, sizeof(text), "%s%s", prefix, msg);
    if (send(fd, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1, MSG_NOSIGNAL) < 0)
        return;
}

/* "A.B.C.D:HOSTPORT:GUESTPORT/tcp|udp", as smolvm passes it. */
static int add_forward(struct helper *h, const char *spec, char *why, size_t why_size)
{
    char addr[INET_ADDRSTRLEN + 1], proto[4];
    unsigned host_port, guest_port;
    struct in_addr host, guest = {.s_addr = 0}; /* 0: the guest's DHCP address */

    if (sscanf(spec, "%16[0-9.]:%u:%u/%3s", addr, &host_port, &guest_port, proto) != 4 ||
        inet_pton(AF_INET, addr, &host) != 1 || host_port == 0 || host_port > 65535 ||
        guest_port == 0 || guest_port > 65535 ||
        (strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0)) {
        snprintf(why, why_size, "bad forward '%s'", spec);
        return -1;
    }
    errno = 0;
    if (slirp_add_hostfwd(h->slirp, strcmp(proto, "udp") == 0, host, (int)host_port, guest,
                          (int)guest_port) < 0) {
        snprintf(why, why_size, "-p %s: cannot listen on host port %u/%s%s%s", spec, host_port,
                 proto, errno ? ": " : " (taken?)", errno ? strerror(errno) : "");
        return -1;
    }
    return 0;
}

static Slirp *new_slirp(struct helper *h, unsigned mtu, bool restricted, bool ipv6)
{
    SlirpConfig cfg = {
        .version = 4,
        .restricted = restricted,
        .in_enabled = true,
        .in6_enabled = ipv6,
        .vprefix_len = 64,
        .if_mtu = mtu,
        .if_mru = mtu,
    };

    inet_pton(AF_INET, "10.0.2.0", &cfg.vnetwork);
    inet_pton(AF_INET, "255.255.255.0", &cfg.vnetmask);
    inet_pton(AF_INET, "10.0.2.2", &cfg.vhost);
    inet_pton(AF_INET, "10.0.2.15", &cfg.vdhcp_start);
    inet_pton(AF_INET, "10.0.2.3", &cfg.vnameserver);
    inet_pton(AF_INET6, "fec0::", &cfg.vprefix_addr6);
    inet_pton(AF_INET6, "fec0::2", &cfg.vhost6);
    inet_pton(AF_INET6, "fec0::3", &cfg.vnameserver6);
    return slirp_new(&cfg, &callbacks, h);
}

int main(int argc, char **argv)
{
    static struct helper h = {.fd = -1}; /* its batch is 4 MiB */
    bool restricted = false, ipv6 = true;
    unsigned long mtu = NET_USER_MTU;
    char why[200] = "";
    int i;

    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); /* nothing we run gains privileges */
    signal(SIGINT, SIG_IGN); /* the terminal's ^C is the VM's; we end with it */
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    for (i = 1; i < argc && strncmp(argv[i], "-p", 2) != 0; i++) {
        if (strncmp(argv[i], "--fd=", 5) == 0)
            h.fd = atoi(argv[i] + 5);
        else if (strncmp(argv[i], "--mtu=", 6) == 0)
            mtu = strtoul(argv[i] + 6, NULL, 10);
        else if (strcmp(argv[i], "--restrict") == 0)
            restricted = true;
        else if (strcmp(argv[i], "--no-ipv6") == 0)
            ipv6 = false;
        else
            break;
    }
    batch_init(&h.from_guest);
    if (h.fd < 0) {
        fprintf(stderr, "usage: smolvm-net --fd=N [--mtu=BYTES] [--restrict] [-p FORWARD]... "
                        "(started by smolvm run --net user)\n");
        return 2;
    }
    if (mtu < NET_MIN_MTU || mtu > NET_USER_MTU)
        snprintf(why, sizeof(why), "--mtu must be %u to %u", NET_MIN_MTU, NET_USER_MTU);
    else
        h.slirp = new_slirp(&h, (unsigned)mtu, restricted, ipv6);
    if (!h.slirp && !why[0])
        snprintf(why, sizeof(why), "libslirp did not start");
    for (; h.slirp && !why[0] && i + 1 < argc && strcmp(argv[i], "-p") == 0; i += 2)
        add_forward(&h, argv[i + 1], why, sizeof(why));
    if (!why[0] && i < argc)
        snprintf(why, sizeof(why), "unknown argument '%s'", argv[i]);
    /* Confined before the first guest frame is read (the forwards listen). */
    if (!why[0] && (i = slirp_seccomp_install()) < 0)
        snprintf(why, sizeof(why), "cannot install its seccomp filter: %s", strerror(-i));
#ifdef SMOLVM_TEST_HOOKS
    if (!why[0] && getenv("SMOLVM_TEST_NET_VIOLATION"))
        execl("/nonexistent/smolvm-net-test", "smolvm-net-test", (char *)NULL);
#endif
    if (why[0]) {
        say(h.fd, NET_HELPER_ERROR, why);
    } else {
        say(h.fd, NET_HELPER_READY, "");
        serve(&h);
    }
    if (h.dropped)
        fprintf(stderr, "smolvm-net: %llu frames for the guest were dropped (it was not "
                        "reading them)\n", h.dropped);
    say_stats(&h);
    for (unsigned k = 0; k < h.to_guest.count; k++)
        free(h.to_guest.frames[(h.to_guest.head + k) % BACKLOG].iov_base);
    if (h.slirp)
        slirp_cleanup(h.slirp); /* frees its timers */
    free(h.fds);
    return why[0] ? 1 : 0;
}
