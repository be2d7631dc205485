/* Sockets of a migration (link.h). */
#include "migrate/link.h"

#include <errno.h>
#include <stdbool.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/err.h"

struct address {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } u;
    socklen_t len;
};

/* HOST: an IPv4 address, [IPv6], "localhost", or empty (every address, to
 * listen on): numbers only, so a static smolvm needs no resolver. */
static int parse_tcp(const char *text, struct address *a)
{
    const char *host = text + 4, *colon = strrchr(host, ':');
    char h[64], *end;

    if (!colon)
        return err_plain(EINVAL, "'%s' is not tcp:HOST:PORT or unix:PATH", text);
    size_t hlen = (size_t)(colon - host);
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 1 || port > 65535)
        return err_plain(EINVAL, "'%s': the port must be 1 to 65535", text);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    if (hlen >= sizeof(h))
        return err_plain(EINVAL, "'%s': the host is too long", text);
    memcpy(h, host, hlen);
    h[hlen] = 0;
    if (strcmp(h, "localhost") == 0)
        strcpy(h, "127.0.0.1");
    a->u.in4.sin_family = AF_INET;
    a->u.in4.sin_port = htons((uint16_t)port);
    a->len = sizeof(a->u.in4);
    if (!h[0] || inet_pton(AF_INET, h, &a->u.in4.sin_addr) == 1)
        return 0;
    memset(a, 0, sizeof(*a));
    a->u.in6.sin6_family = AF_INET6;
    a->u.in6.sin6_port = htons((uint16_t)port);
    a->len = sizeof(a->u.in6);
    if (inet_pton(AF_INET6, h, &a->u.in6.sin6_addr) == 1)
        return 0;
    return err_plain(EINVAL, "'%s': HOST must be an IP address (or localhost)", text);
}

static int parse(const char *text, struct address *a)
{
    memset(a, 0, sizeof(*a));
    if (strncmp(text, "tcp:", 4) == 0)
        return parse_tcp(text, a);
    if (strncmp(text, "unix:", 5) != 0)
        return err_plain(EINVAL, "'%s' is not tcp:HOST:PORT or unix:PATH", text);
    const char *path = text + 5;
    if (!*path || strlen(path) >= sizeof(a->u.un.sun_path))
        return err_plain(EINVAL, "'%s': a unix socket path of 1 to %zu bytes", text,
                         sizeof(a->u.un.sun_path) - 1);
    a->u.un.sun_family = AF_UNIX;
    strcpy(a->u.un.sun_path, path);
    a->len = sizeof(a->u.un);
    return 0;
}

int migrate_address_check(const char *address)
{
    struct address a;
    return parse(address, &a);
}

/* Each frame goes in one write, and the two sides take turns at the end
 * (END, READY, GO, DONE): Nagle's algorithm would hold a small frame back
 * behind bytes the peer has not acknowledged yet, until its delayed ACK
 * (up to 40 ms on Linux) -- inside the pause. bench/migrate's source timed
 * END to READY 22-38 ms longer than the destination's own work between.
 * A unix socket has no such option: nothing to do. */
static void send_at_once(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* connect(), or bind() and listen(). */
static int open_socket(const char *text, bool listening)
{
    struct address a;
    int r = parse(text, &a), fd, one = 1;

    if (r < 0)
        return r;
    fd = socket(a.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_set(errno, "socket");
    if (listening && a.u.sa.sa_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (listening)
        r = bind(fd, &a.u.sa, a.len) == 0 && listen(fd, 1) == 0 ? 0 : -1;
    else
        while ((r = connect(fd, &a.u.sa, a.len)) < 0 && errno == EINTR)
            ;
    if (r < 0) {
        r = err_set(errno, "%s", text);
        close(fd);
        return r;
    }
    if (!listening)
        send_at_once(fd);
    return fd;
}

int migrate_connect(const char *address)
{
    return open_socket(address, false);
}

int migrate_listen(const char *address)
{
    return open_socket(address, true);
}

int migrate_accept(int listener)
{
    int fd;
    do
        fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return err_set(errno, "accepting the migration");
    send_at_once(fd);
    return fd;
}
