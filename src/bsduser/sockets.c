/* Sockets: Linux's, with what the BSDs lay out or number differently
 * translated: struct sockaddr (sa_len and an 8-bit family first; INET6's
 * family number), SOCK_CLOEXEC/SOCK_NONBLOCK, SOL_SOCKET and its options,
 * MSG_* flags, struct msghdr and its control messages (descriptors). */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "bsduser/freebsd_abi.h"
#include "bsduser/internal.h"
#include "bsduser/netbsd_abi.h"

#define MAX_IOV 1024

struct pair {
    long bsd;
    int linux_;
};

#define SOCKET_OPTIONS(P)                                                                      \
    {{P##_SO_DEBUG, SO_DEBUG}, {P##_SO_REUSEADDR, SO_REUSEADDR}, {P##_SO_KEEPALIVE, SO_KEEPALIVE}, \
     {P##_SO_DONTROUTE, SO_DONTROUTE}, {P##_SO_BROADCAST, SO_BROADCAST},                       \
     {P##_SO_LINGER, SO_LINGER}, {P##_SO_OOBINLINE, SO_OOBINLINE},                             \
     {P##_SO_REUSEPORT, SO_REUSEPORT}, {P##_SO_SNDBUF, SO_SNDBUF}, {P##_SO_RCVBUF, SO_RCVBUF},  \
     {P##_SO_SNDLOWAT, SO_SNDLOWAT}, {P##_SO_RCVLOWAT, SO_RCVLOWAT},                           \
     {P##_SO_ERROR, SO_ERROR}, {P##_SO_TYPE, SO_TYPE}, {P##_SO_ACCEPTCONN, SO_ACCEPTCONN}}
#define MSG_FLAGS(P)                                                                           \
    {{P##_MSG_OOB, MSG_OOB}, {P##_MSG_PEEK, MSG_PEEK}, {P##_MSG_DONTROUTE, MSG_DONTROUTE},      \
     {P##_MSG_EOR, MSG_EOR}, {P##_MSG_TRUNC, MSG_TRUNC}, {P##_MSG_CTRUNC, MSG_CTRUNC},         \
     {P##_MSG_WAITALL, MSG_WAITALL}, {P##_MSG_DONTWAIT, MSG_DONTWAIT},                         \
     {P##_MSG_NOSIGNAL, MSG_NOSIGNAL}, {P##_MSG_CMSG_CLOEXEC, MSG_CMSG_CLOEXEC}}

static const struct pair freebsd_options[] = SOCKET_OPTIONS(FREEBSD),
                         netbsd_options[] = SOCKET_OPTIONS(NETBSD),
                         freebsd_msg[] = MSG_FLAGS(FREEBSD), netbsd_msg[] = MSG_FLAGS(NETBSD);
#define PAIRS(t) (sizeof(t) / sizeof(t[0]))

static bool netbsd(void)
{
    return bsd_personality() == BSD_NETBSD;
}

/* A whole value through a table (-1: none there). */
static int one_of(const struct pair *t, size_t n, long bsd)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].bsd == bsd)
            return t[i].linux_;
    return -1;
}

/* Flag bits through a table, both ways. */
static long bits(const struct pair *t, size_t n, long in, bool to_linux)
{
    long out = 0;
    for (size_t i = 0; i < n; i++)
        if (in & (to_linux ? t[i].bsd : t[i].linux_))
            out |= to_linux ? t[i].linux_ : t[i].bsd;
    return out;
}

static int msg_flags(long bsd)
{
    return (int)(netbsd() ? bits(netbsd_msg, PAIRS(netbsd_msg), bsd, true)
                          : bits(freebsd_msg, PAIRS(freebsd_msg), bsd, true));
}

static long bsd_msg_flags(int linux_flags)
{
    return netbsd() ? bits(netbsd_msg, PAIRS(netbsd_msg), linux_flags, false)
                    : bits(freebsd_msg, PAIRS(freebsd_msg), linux_flags, false);
}

static int family(long bsd)
{
    long inet6 = netbsd() ? NETBSD_AF_INET6 : FREEBSD_AF_INET6;
    return bsd == inet6 ? AF_INET6 : bsd == AF_INET || bsd == AF_UNIX ? (int)bsd : -1;
}

static int bsd_family(int linux_family)
{
    return linux_family == AF_INET6 ? (netbsd() ? NETBSD_AF_INET6 : FREEBSD_AF_INET6)
                                    : linux_family;
}

/* SOCK_CLOEXEC and SOCK_NONBLOCK: the same bits in both BSDs. */
static int sock_type(long bsd)
{
    return (int)(bsd & 0xffff) | (bsd & FREEBSD_SOCK_CLOEXEC ? SOCK_CLOEXEC : 0) |
           (bsd & FREEBSD_SOCK_NONBLOCK ? SOCK_NONBLOCK : 0);
}

/* ---- struct sockaddr: sa_len, sa_family (8 bits each), then the same
 * bytes as Linux's after its 16-bit family ---- */

/* A path socket's name under the --root rule (bind makes its entry,
 * connect and sendto find one): rewritten in place when the sysroot's is
 * the one, -ENAMETOOLONG when that does not fit sun_path. */
static long unix_path_in_root(struct sockaddr_un *un, socklen_t *out_len, enum bsd_path_use use)
{
    char path[sizeof(un->sun_path) + 1], buf[PATH_MAX];
    size_t n = *out_len - offsetof(struct sockaddr_un, sun_path);
    memcpy(path, un->sun_path, n < sizeof(un->sun_path) ? n : sizeof(un->sun_path));
    path[n < sizeof(un->sun_path) ? n : sizeof(un->sun_path)] = 0;
    const char *host = bsd_root_lookup(path, buf, use);
    if (host == path)
        return 0;
    if (strlen(host) >= sizeof(un->sun_path))
        return -ENAMETOOLONG;
    memcpy(un->sun_path, host, strlen(host) + 1);
    *out_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(host) + 1);
    return 0;
}

/* The guest's address at addr (len bytes) as Linux's; an AF_UNIX path is
 * looked up as use says. */
static long sockaddr_in(uint64_t addr, long len, struct sockaddr_storage *out, socklen_t *out_len,
                        enum bsd_path_use use)
{
    uint8_t b[sizeof(struct sockaddr_storage)];
    if (len < 2 || len > (long)sizeof(b))
        return -EINVAL;
    if (bsd_copy_in(b, addr, (size_t)len) < 0)
        return -EFAULT;
    int f = family(b[1]);
    if (f < 0)
        return -EAFNOSUPPORT;
    memset(out, 0, sizeof(*out));
    out->ss_family = (sa_family_t)f;
    memcpy((uint8_t *)out + 2, b + 2, (size_t)len - 2);
    *out_len = (socklen_t)len;
    /* A path socket's length may leave the terminating NUL out. */
    if (f == AF_UNIX && len < (long)sizeof(struct sockaddr_un))
        *out_len = (socklen_t)len + 1;
    if (f == AF_UNIX && len > 2)
        return unix_path_in_root((struct sockaddr_un *)out, out_len, use);
    return 0;
}

/* Writes a Linux address out the BSD way, as much as the guest's room
 * holds, and the full length into *lenp. */
static long sockaddr_out(uint64_t addr, uint64_t lenp, const struct sockaddr_storage *in,
                         socklen_t len)
{
    uint8_t b[sizeof(struct sockaddr_storage)];
    uint32_t room;
    if (!addr || !lenp)
        return 0;
    if (bsd_copy_in(&room, lenp, 4) < 0)
        return -EFAULT;
    if (len > sizeof(b))
        len = sizeof(b);
    memcpy(b, in, len);
    b[0] = (uint8_t)len;
    b[1] = (uint8_t)bsd_family(in->ss_family);
    if (bsd_copy_out(addr, b, room < len ? room : len) < 0)
        return -EFAULT;
    return bsd_copy_out(lenp, &(uint32_t){len}, 4);
}

/* ---- the calls ---- */

static long sys_socket(const long *a)
{
    int f = family(a[0]);
    return f < 0 ? -EAFNOSUPPORT : bsd_result(socket(f, sock_type(a[1]), (int)a[2]));
}

static long sys_socketpair(const long *a)
{
    int f = family(a[0]), sv[2];
    if (f < 0)
        return -EAFNOSUPPORT;
    if (socketpair(f, sock_type(a[1]), (int)a[2], sv) < 0)
        return -errno;
    return bsd_copy_out((uint64_t)a[3], sv, sizeof(sv));
}

static long with_address(const long *a, int (*op)(int, const struct sockaddr *, socklen_t),
                         enum bsd_path_use use)
{
    struct sockaddr_storage ss;
    socklen_t len;
    long r = sockaddr_in((uint64_t)a[1], a[2], &ss, &len, use);
    return r < 0 ? r : bsd_result(op((int)a[0], (struct sockaddr *)&ss, len));
}

static long sys_bind(const long *a)
{
    return with_address(a, bind, BSD_PATH_MAKE);
}

static long sys_connect(const long *a)
{
    return with_address(a, connect, BSD_PATH_FIND);
}

static long sys_listen(const long *a)
{
    return bsd_result(listen((int)a[0], (int)a[1]));
}

static long accept_with(const long *a, long flags)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = accept4((int)a[0], (struct sockaddr *)&ss, &len, sock_type(flags) & ~0xffff);
    if (fd < 0)
        return -errno;
    long r = sockaddr_out((uint64_t)a[1], (uint64_t)a[2], &ss, len);
    if (r < 0)
        close(fd);
    return r < 0 ? r : fd;
}

static long sys_accept(const long *a)
{
    return accept_with(a, 0);
}

static long sys_accept4(const long *a)
{
    return accept_with(a, a[3]);
}

/* NetBSD's paccept(fd, addr, lenp, sigmask, flags). */
static long sys_paccept(const long *a)
{
    return accept_with(a, a[4]);
}

static long named(const long *a, int (*op)(int, struct sockaddr *, socklen_t *))
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (op((int)a[0], (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    return sockaddr_out((uint64_t)a[1], (uint64_t)a[2], &ss, len);
}

static long sys_getsockname(const long *a)
{
    return named(a, getsockname);
}

static long sys_getpeername(const long *a)
{
    return named(a, getpeername);
}

static long sys_sendto(const long *a)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    long r = a[4] ? sockaddr_in((uint64_t)a[4], a[5], &ss, &len, BSD_PATH_FIND) : 0;
    return r < 0 ? r : bsd_result(sendto((int)a[0], (void *)a[1], (size_t)a[2], msg_flags(a[3]),
                                         a[4] ? (struct sockaddr *)&ss : NULL, len));
}

static long sys_recvfrom(const long *a)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    ssize_t n = recvfrom((int)a[0], (void *)a[1], (size_t)a[2], msg_flags(a[3]),
                         (struct sockaddr *)&ss, &len);
    if (n < 0)
        return -errno;
    long r = a[4] ? sockaddr_out((uint64_t)a[4], (uint64_t)a[5], &ss, len) : 0;
    return r < 0 ? r : n;
}

/* struct msghdr: name, namelen (32-bit), iov, iovlen (int), control,
 * controllen (32-bit), flags: 48 bytes in both BSDs. */
struct bsd_msghdr {
    uint64_t name;
    uint32_t namelen, pad0;
    uint64_t iov;
    int32_t iovlen, pad1;
    uint64_t control;
    uint32_t controllen;
    int32_t flags;
};

/* Control messages. Both BSDs lay a header out as {uint32 len; int level;
 * int type;} with the data 8-aligned at 16 and the next header at len
 * rounded up to 8; Linux's length is 64-bit, its data also at 16. Only
 * descriptors (SOL_SOCKET, SCM_RIGHTS: the same number everywhere) pass:
 * anything else is refused when sent and left out when received. */
#define CONTROL_ROOM 4096
#define BSD_CMSG_DATA 16
#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

struct bsd_cmsghdr {
    uint32_t len;
    int32_t level, type;
};

static long control_in(uint64_t guest, size_t len, uint8_t *out, size_t *out_len)
{
    uint8_t in[CONTROL_ROOM];
    struct bsd_cmsghdr c;
    size_t at = 0, put = 0;
    if (len > sizeof(in))
        return -ENOBUFS;
    if (bsd_copy_in(in, guest, len) < 0)
        return -EFAULT;
    while (at + sizeof(c) <= len) {
        memcpy(&c, in + at, sizeof(c));
        if (c.len < BSD_CMSG_DATA || c.len > len - at)
            return -EINVAL;
        if (c.level != FREEBSD_SOL_SOCKET || c.type != SCM_RIGHTS)
            return -EINVAL;
        size_t data = c.len - BSD_CMSG_DATA;
        struct cmsghdr *h = (struct cmsghdr *)(out + put);
        if (put + CMSG_SPACE(data) > CONTROL_ROOM)
            return -ENOBUFS;
        *h = (struct cmsghdr){.cmsg_len = CMSG_LEN(data), .cmsg_level = SOL_SOCKET,
                              .cmsg_type = SCM_RIGHTS};
        memcpy(CMSG_DATA(h), in + at + BSD_CMSG_DATA, data);
        put += CMSG_SPACE(data);
        at += ALIGN8(c.len);
    }
    *out_len = put;
    return 0;
}

/* Descriptors a message carried that the guest cannot be given. */
static void close_passed(const struct cmsghdr *h)
{
    size_t n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(fd));
        close(fd);
    }
}

/* What recvmsg got, into the guest's buffer of room bytes: the length
 * written, MSG_CTRUNC into *flags when something did not fit. */
static long control_out(struct msghdr *m, uint64_t guest, size_t room, int *flags)
{
    uint8_t out[CONTROL_ROOM] = {0};
    size_t put = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(m); h; h = CMSG_NXTHDR(m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t data = h->cmsg_len - CMSG_LEN(0);
        if (put + BSD_CMSG_DATA + data > room) {
            close_passed(h);
            *flags |= MSG_CTRUNC;
            continue;
        }
        struct bsd_cmsghdr c = {.len = (uint32_t)(BSD_CMSG_DATA + data),
                                .level = FREEBSD_SOL_SOCKET, .type = SCM_RIGHTS};
        memcpy(out + put, &c, sizeof(c));
        memcpy(out + put + BSD_CMSG_DATA, CMSG_DATA(h), data);
        put = ALIGN8(put + BSD_CMSG_DATA + data);
    }
    put = put < room ? put : room;
    return bsd_copy_out(guest, out, put) < 0 ? -EFAULT : (long)put;
}

static long message(const long *a, bool sending)
{
    struct bsd_msghdr m;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct iovec *iov;
    uint8_t control[CONTROL_ROOM] __attribute__((aligned(8)));
    size_t control_len = 0;
    long r;

    if (bsd_copy_in(&m, (uint64_t)a[1], sizeof(m)) < 0)
        return -EFAULT;
    if (m.iovlen < 0 || m.iovlen > MAX_IOV)
        return -EMSGSIZE;
    if (!m.control)
        m.controllen = 0;
    if (sending && m.controllen) {
        r = control_in(m.control, m.controllen, control, &control_len);
        if (r < 0)
            return r;
    } else if (!sending) {
        control_len = m.controllen < CONTROL_ROOM ? m.controllen : CONTROL_ROOM;
    }
    iov = calloc((size_t)m.iovlen + 1, sizeof(*iov));
    if (!iov)
        return -ENOMEM;
    r = bsd_copy_in(iov, m.iov, (size_t)m.iovlen * sizeof(*iov)); /* the same layout */
    if (r == 0 && sending && m.name)
        r = sockaddr_in(m.name, m.namelen, &ss, &len, BSD_PATH_FIND);
    struct msghdr h = {.msg_name = m.name ? &ss : NULL, .msg_namelen = m.name ? len : 0,
                       .msg_iov = iov, .msg_iovlen = (size_t)m.iovlen,
                       .msg_control = control_len ? control : NULL, .msg_controllen = control_len};
    ssize_t n = r < 0 ? -1 : sending ? sendmsg((int)a[0], &h, msg_flags(a[2]))
                                     : recvmsg((int)a[0], &h, msg_flags(a[2]));
    if (r == 0 && n < 0)
        r = -errno;
    if (r == 0 && !sending) {
        if (m.name)
            r = sockaddr_out(m.name, (uint64_t)a[1] + offsetof(struct bsd_msghdr, namelen), &ss,
                             h.msg_namelen);
        long put = h.msg_controllen ? control_out(&h, m.control, m.controllen, &h.msg_flags) : 0;
        m.flags = (int32_t)bsd_msg_flags(h.msg_flags);
        m.controllen = put < 0 ? 0 : (uint32_t)put;
        if (r == 0)
            r = put < 0 ? put : bsd_copy_out((uint64_t)a[1] + offsetof(struct bsd_msghdr, controllen),
                                             &m.controllen, 8);
    }
    free(iov);
    return r < 0 ? r : n;
}

static long sys_sendmsg(const long *a)
{
    return message(a, true);
}

static long sys_recvmsg(const long *a)
{
    return message(a, false);
}

/* The level and name of an option as Linux's; -1 when there is none. */
static int option(long level, long name, int *linux_level)
{
    if (level != FREEBSD_SOL_SOCKET) { /* the protocols keep their numbers */
        *linux_level = (int)level;
        if (level == IPPROTO_IPV6 && name == FREEBSD_IPV6_V6ONLY)
            return IPV6_V6ONLY;
        return (int)name;
    }
    *linux_level = SOL_SOCKET;
    return netbsd() ? one_of(netbsd_options, PAIRS(netbsd_options), name)
                    : one_of(freebsd_options, PAIRS(freebsd_options), name);
}

static long sys_setsockopt(const long *a)
{
    int level, name = option(a[1], a[2], &level);
    uint8_t value[256];
    if (name < 0)
        return -ENOPROTOOPT;
    if (a[4] < 0 || a[4] > (long)sizeof(value) || bsd_copy_in(value, (uint64_t)a[3], (size_t)a[4]) < 0)
        return a[4] > (long)sizeof(value) ? -EINVAL : -EFAULT;
    return bsd_result(setsockopt((int)a[0], level, name, value, (socklen_t)a[4]));
}

static long sys_getsockopt(const long *a)
{
    int level, name = option(a[1], a[2], &level);
    uint8_t value[256];
    uint32_t room;
    if (name < 0)
        return -ENOPROTOOPT;
    if (bsd_copy_in(&room, (uint64_t)a[4], 4) < 0)
        return -EFAULT;
    socklen_t len = room < sizeof(value) ? room : sizeof(value);
    if (getsockopt((int)a[0], level, name, value, &len) < 0)
        return -errno;
    if (level == SOL_SOCKET && name == SO_ERROR && len == 4) {
        int e;
        memcpy(&e, value, 4);
        e = e ? bsd_errno(e) : 0;
        memcpy(value, &e, 4);
    }
    if (bsd_copy_out((uint64_t)a[3], value, len) < 0)
        return -EFAULT;
    return bsd_copy_out((uint64_t)a[4], &(uint32_t){len}, 4);
}

static long sys_shutdown(const long *a)
{
    return bsd_result(shutdown((int)a[0], (int)a[1]));
}

const struct bsd_handler bsd_socket_calls[] = {
    {"socket", sys_socket}, {"socketpair", sys_socketpair}, {"bind", sys_bind},
    {"connect", sys_connect}, {"listen", sys_listen}, {"accept", sys_accept},
    {"accept4", sys_accept4}, {"netbsd:paccept", sys_paccept},
    {"getsockname", sys_getsockname}, {"getpeername", sys_getpeername},
    {"sendto", sys_sendto}, {"recvfrom", sys_recvfrom}, {"sendmsg", sys_sendmsg},
    {"recvmsg", sys_recvmsg}, {"setsockopt", sys_setsockopt}, {"getsockopt", sys_getsockopt},
    {"shutdown", sys_shutdown},
};
const size_t bsd_socket_call_count = sizeof(bsd_socket_calls) / sizeof(bsd_socket_calls[0]);
