#include "api/agent.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../guest/agent_proto.h"
#include "util/err.h"

#define CONNECT_ANSWER_MS 5000 /* the device gives up on the guest after 2 s */

/* Reads "OK <port>\n": 1; 0 when the connection closed (nobody listens on
 * the port); -1 on a timeout or a malformed answer. */
static int read_ok_line(int fd)
{
    char line[32];
    size_t n = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};

    while (n < sizeof(line) - 1) {
        if (poll(&p, 1, CONNECT_ANSWER_MS) != 1)
            return -1;
        ssize_t got = read(fd, line + n, 1);
        if (got <= 0)
            return n == 0 && got == 0 ? 0 : -1;
        if (line[n++] == '\n')
            break;
    }
    line[n] = 0;
    return strncmp(line, "OK ", 3) == 0 ? 1 : -1;
}

static int connect_once(const char *path, int *out)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char line[32];
    int r;

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        r = -errno;
        if (fd >= 0)
            close(fd);
        return r;
    }
    int n = snprintf(line, sizeof(line), "CONNECT %u\n", AGENT_PORT);
    r = agent_full_write(fd, line, (size_t)n) < 0 ? -1 : read_ok_line(fd);
    if (r != 1) {
        close(fd);
        return r == 0 ? -ECONNREFUSED : -ETIMEDOUT;
    }
    *out = fd;
    return 0;
}

static long long now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000LL + now.tv_nsec / 1000000;
}

int agent_connect(const char *vsock_path, long wait_ms, int *out)
{
    struct timespec tick = {0, 100 * 1000 * 1000};
    long long deadline = now_ms() + wait_ms;
    int r;

    for (;;) {
        r = connect_once(vsock_path, out);
        /* Refused: no listener yet; timed out: no driver yet (or paused). */
        if ((r != -ECONNREFUSED && r != -ETIMEDOUT) || now_ms() >= deadline)
            return r;
        nanosleep(&tick, NULL);
    }
}

bool agent_hostname_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > 64 || name[0] == '-' || name[0] == '.')
        return false;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.") == n;
}

int agent_hello(const char *vsock_path, const char *hostname, long wait_ms)
{
    uint8_t payload[256], type = 0, *answer;
    uint32_t len = 0, answer_len = 0;
    struct timespec now;
    char text[48];
    int fd, r;

    if (hostname && !agent_hostname_ok(hostname))
        return err_plain(EINVAL, "hostname '%s' is not 1-64 of A-Z a-z 0-9 - .", hostname);
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(text, sizeof(text), "%lld.%09ld", (long long)now.tv_sec, now.tv_nsec);
    r = agent_field(payload, sizeof(payload), &len, "time", text);
    if (r == 0 && hostname)
        r = agent_field(payload, sizeof(payload), &len, "hostname", hostname);
    if (r < 0)
        return err_plain(EINVAL, "hello too long");
    if ((r = agent_connect(vsock_path, wait_ms, &fd)) < 0)
        return err_set(-r, "the guest agent (%s)", vsock_path);
    /* Any frame may be 1 MiB long. */
    if (!(answer = malloc(AGENT_FRAME_MAX + 1))) {
        close(fd);
        return err_set(ENOMEM, "the guest agent");
    }
    r = agent_send(fd, AGENT_HELLO, payload, len) < 0 ||
                agent_recv(fd, &type, answer, &answer_len) <= 0
            ? err_plain(EPIPE, "the guest agent closed the connection")
        : type == AGENT_ERROR ? err_plain(EIO, "the guest agent: %s", (char *)answer)
        : type != AGENT_OK    ? err_plain(EPROTO, "the guest agent answered '%c'", type)
                              : 0;
    free(answer);
    close(fd);
    return r;
}
