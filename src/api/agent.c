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
#include "api/control.h"
#include "confine/confine.h"
#include "machine/stop_named.h"
#include "util/err.h"

/* Longer than the device gives a running guest (devices/virtio/vsock.h:
 * the request delivered within 2 s, or 4 s held for a restore's reset,
 * then answered within 3 s): its closing says "no agent", this timeout a
 * paused VM. */
#define CONNECT_ANSWER_MS 8000

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

int agent_hello_confined(const char *vsock_path, const char *hostname, long wait_ms)
{
    confine_thread(CONFINE_VSOCK, "agent-hello");
    return agent_hello(vsock_path, hostname, wait_ms);
}

/* ---- the requests ---- */

char *agent_vsock_path(const char *name)
{
    char *dir = NULL, *path = NULL;
    if (control_dir(&dir) == 0 && asprintf(&path, "%s/%s.vsock", dir, name) < 0)
        path = NULL;
    free(dir);
    return path;
}

int agent_open(const char *name, long wait_ms, int *out)
{
    char *path;
    int r;

    if (!control_name_ok(name))
        return err_plain(EINVAL, "'%s' is not a VM name", name);
    if (!(path = agent_vsock_path(name)))
        return err_plain(ENOENT, "no runtime folder for VM sockets");
    r = agent_connect(path, wait_ms, out);
    free(path);
    if (r == -ENOENT)
        return err_plain(ENOENT, machine_answers(name)
                                     ? "VM '%s' has no vsock device (started without one)"
                                     : "no VM '%s' is running", name);
    if (r == -ETIMEDOUT)
        return err_plain(ETIMEDOUT, "no answer from VM '%s' (is it paused?)", name);
    if (r == -ECONNREFUSED)
        return err_plain(ECONNREFUSED, "no agent answers in VM '%s' (an appliance of 'smolvm "
                                       "image build' runs one; still booting? try --wait)", name);
    if (r < 0)
        return err_plain(-r, "VM '%s': %s", name, strerror(-r));
    return 0;
}

static int exec_fields(const struct agent_exec *e, uint8_t *payload, uint32_t *len)
{
    char text[48];
    struct timespec now;
    int r = 0;

    *len = 0;
    for (unsigned i = 0; r == 0 && i < e->argc; i++)
        r = agent_field(payload, AGENT_FRAME_MAX, len, "arg", e->argv[i]);
    for (unsigned i = 0; r == 0 && i < e->env_count; i++)
        r = agent_field(payload, AGENT_FRAME_MAX, len, "env", e->env[i]);
    if (r == 0 && e->cwd)
        r = agent_field(payload, AGENT_FRAME_MAX, len, "cwd", e->cwd);
    if (r == 0 && e->user)
        r = agent_field(payload, AGENT_FRAME_MAX, len, "user", e->user);
    if (r == 0 && e->input)
        r = agent_field(payload, AGENT_FRAME_MAX, len, "stdin", "1");
    if (r == 0 && e->tty)
        r = agent_field(payload, AGENT_FRAME_MAX, len, "tty", "1");
    if (r == 0 && e->tty && e->rows && e->cols) {
        snprintf(text, sizeof(text), "%u", e->rows);
        r = agent_field(payload, AGENT_FRAME_MAX, len, "rows", text);
        snprintf(text, sizeof(text), "%u", e->cols);
        if (r == 0)
            r = agent_field(payload, AGENT_FRAME_MAX, len, "cols", text);
    }
    /* The host's clock: a guest started from a bundle has the saved one. */
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(text, sizeof(text), "%lld.%09ld", (long long)now.tv_sec, now.tv_nsec);
    if (r == 0)
        r = agent_field(payload, AGENT_FRAME_MAX, len, "time", text);
    return r;
}

int agent_exec_send(int conn, const struct agent_exec *e)
{
    uint8_t *payload = malloc(AGENT_FRAME_MAX);
    uint32_t len;
    int r;

    if (!payload)
        return err_set(ENOMEM, "exec");
    if (e->argc == 0 || exec_fields(e, payload, &len) < 0)
        r = err_plain(E2BIG, e->argc ? "the command line is too long" : "no command");
    else if (agent_send(conn, AGENT_EXEC, payload, len) < 0)
        r = err_plain(EPIPE, "the agent closed the connection");
    else
        r = 0;
    free(payload);
    return r;
}

int agent_exec_next(int conn, uint8_t *buf, struct agent_event *ev)
{
    uint8_t type;
    uint32_t len, at = 0;
    const char *v;

    if (agent_recv(conn, &type, buf, &len) <= 0)
        return 0;
    *ev = (struct agent_event){.kind = AGENT_EVENT_OTHER, .data = buf, .len = len};
    switch (type) {
    case AGENT_STDOUT: ev->kind = AGENT_EVENT_STDOUT; break;
    case AGENT_STDERR: ev->kind = AGENT_EVENT_STDERR; break;
    case AGENT_ERROR: ev->kind = AGENT_EVENT_ERROR; break;
    case AGENT_EXIT:
        ev->kind = AGENT_EVENT_EXIT;
        if ((v = agent_next_field(buf, len, &at, "signal"))) {
            ev->signal = atoi(v) > 0 && atoi(v) < 128 ? atoi(v) : 127;
            ev->exit_code = 128 + ev->signal;
        } else if ((at = 0, v = agent_next_field(buf, len, &at, "exit"))) {
            ev->exit_code = atoi(v) & 0xff;
        }
        break;
    default: break;
    }
    return 1;
}

int agent_expect(int conn, uint8_t want, uint8_t *buf, uint32_t *len)
{
    uint8_t type;
    uint32_t n = 0;

    if (agent_recv(conn, &type, buf, &n) <= 0)
        return err_plain(EPIPE, "the agent closed the connection (did it die, or the VM stop?)");
    if (type == AGENT_ERROR)
        return err_plain(EIO, "%.*s", (int)n, (const char *)buf);
    if (type != want)
        return err_plain(EPROTO, "the agent answered out of turn");
    if (len)
        *len = n;
    return 0;
}

int agent_get_start(int conn, const char *path, uint8_t *buf, uint32_t *len)
{
    uint8_t fields[8192];
    uint32_t n = 0;

    if (agent_field(fields, sizeof(fields), &n, "path", path) < 0)
        return err_plain(E2BIG, "the path is too long");
    if (agent_send(conn, AGENT_GET, fields, n) < 0)
        return err_plain(EPIPE, "the agent closed the connection");
    return agent_expect(conn, AGENT_FILE, buf, len);
}

int agent_data_next(int conn, uint8_t *buf, uint32_t *len)
{
    int r = agent_expect(conn, AGENT_DATA, buf, len);
    return r < 0 ? r : *len > 0;
}

int agent_put_start(int conn, const char *path, const char *name, const struct stat *st, bool tree)
{
    uint8_t fields[8192];
    uint32_t len = 0;

    if (agent_field(fields, sizeof(fields), &len, "path", path) < 0 ||
        agent_field(fields, sizeof(fields), &len, "name", name) < 0 ||
        agent_field(fields, sizeof(fields), &len, "tree", tree ? "1" : "0") < 0 ||
        agent_attr_fields(fields, sizeof(fields), &len, st) < 0)
        return err_plain(E2BIG, "the path is too long");
    if (agent_send(conn, AGENT_PUT, fields, len) < 0)
        return err_plain(EPIPE, "the agent closed the connection");
    return 0;
}

int agent_data_send(int conn, const void *data, uint32_t len)
{
    return agent_send(conn, AGENT_DATA, data, len) < 0
               ? err_plain(EPIPE, "the agent closed the connection")
               : 0;
}

json_t *agent_text_json(char *data, size_t len)
{
    json_t *j = json_stringn(data, len);
    if (j)
        return j;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] >= 0x80)
            data[i] = '?';
    return json_stringn(data, len);
}

int agent_put_finish(int conn, uint8_t *buf)
{
    /* Sent or not: a refusing agent said why before it closed. */
    agent_data_send(conn, NULL, 0);
    return agent_expect(conn, AGENT_OK, buf, NULL);
}
