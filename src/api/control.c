#include "api/control.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/err.h"

#define MAX_REQUEST (64u << 10)
#define MAX_ANSWER (1u << 20)
#define CLIENT_TIMEOUT_S 2
#define NAME_MAX_LEN 64

struct control {
    int fd;
    int client_fd; /* the connection being answered, or -1 */
    char *path;
    control_handler fn;
    void *opaque;
};

bool control_name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > NAME_MAX_LEN || name[0] == '.' || name[0] == '-')
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* A folder under /tmp could be someone else's trap: ours, 0700, or refused. */
static int check_private_dir(const char *dir)
{
    struct stat st;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return err_set(errno, "cannot create '%s'", dir);
    if (lstat(dir, &st) < 0)
        return err_set(errno, "'%s'", dir);
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
        return err_plain(EPERM, "'%s' is not a private folder of this user", dir);
    return 0;
}

int control_dir(char **out)
{
    const char *runtime = getenv("XDG_RUNTIME_DIR"), *tmp = getenv("TMPDIR");
    char *dir;
    int r;

    if (runtime && runtime[0] == '/')
        r = asprintf(&dir, "%s/smolvm", runtime);
    else
        r = asprintf(&dir, "%s/smolvm-%u", tmp && tmp[0] == '/' ? tmp : "/tmp", (unsigned)getuid());
    if (r < 0)
        return err_set(ENOMEM, "control folder");
    r = check_private_dir(dir);
    if (r < 0) {
        free(dir);
        return r;
    }
    *out = dir;
    return 0;
}

static int socket_address(const char *name, struct sockaddr_un *addr, char **path)
{
    char *dir;
    int r;

    if (!control_name_ok(name))
        return err_plain(EINVAL, "'%s' is not a valid VM name (letters, digits, '.', '_', '-')",
                         name);
    r = control_dir(&dir);
    if (r < 0)
        return r;
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    r = snprintf(addr->sun_path, sizeof(addr->sun_path), "%s/%s.sock", dir, name);
    free(dir);
    if (r < 0 || (size_t)r >= sizeof(addr->sun_path))
        return err_plain(ENAMETOOLONG, "socket path for '%s' is too long", name);
    if (path && !(*path = strdup(addr->sun_path)))
        return err_set(ENOMEM, "control socket");
    return 0;
}

static int connect_to(const struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int control_open(const char *name, control_handler fn, void *opaque, struct control **out)
{
    struct sockaddr_un addr;
    struct control *c = calloc(1, sizeof(*c));
    int r, live;

    if (!c)
        return err_set(ENOMEM, "control socket");
    c->fd = c->client_fd = -1;
    c->fn = fn;
    c->opaque = opaque;
    r = socket_address(name, &addr, &c->path);
    if (r < 0)
        goto fail;
    live = connect_to(&addr);
    if (live >= 0) {
        close(live);
        r = err_plain(EEXIST, "a VM named '%s' is already running", name);
        goto fail;
    }
    unlink(addr.sun_path); /* a stale socket of a VM that died */
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(c->fd, 8) < 0) {
        r = err_set(errno, "control socket '%s'", addr.sun_path);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (c->fd >= 0)
        close(c->fd);
    free(c->path);
    free(c);
    return r;
}

int control_listen_fd(const struct control *c)
{
    return c->fd;
}

static void set_timeout(int fd)
{
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Reads until EOF, a newline (when stop_at_newline) or max bytes. */
static char *read_message(int fd, size_t max, bool stop_at_newline)
{
    size_t len = 0;
    char *buf = malloc(max + 1);

    if (!buf)
        return NULL;
    while (len < max) {
        ssize_t n = read(fd, buf + len, max - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (stop_at_newline && memchr(buf + len - (size_t)n, '\n', (size_t)n))
            break;
    }
    buf[len] = 0;
    return buf;
}

static void write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

static json_t *answer_for(struct control *c, const char *text)
{
    json_error_t error;
    json_t *req = json_loads(text, JSON_DISABLE_EOF_CHECK, &error), *answer;
    const char *command = json_string_value(json_object_get(req, "command"));

    if (!json_is_object(req) || !command)
        answer = control_error("request is not {\"command\": ...}");
    else
        answer = c->fn(c->opaque, command, req);
    json_decref(req);
    return answer;
}

void control_accept(struct control *c)
{
    int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
    json_t *answer;
    char *text, *reply;

    if (fd < 0)
        return;
    set_timeout(fd); /* a client that never finishes must not hold up the VM */
    text = read_message(fd, MAX_REQUEST, true);
    c->client_fd = fd;
    answer = text ? answer_for(c, text) : control_error("out of memory");
    c->client_fd = -1;
    reply = json_dumps(answer, JSON_COMPACT);
    if (reply) {
        write_all(fd, reply, strlen(reply));
        write_all(fd, "\n", 1);
    }
    free(reply);
    json_decref(answer);
    free(text);
    close(fd);
}

void control_progress(struct control *c, uint64_t done, uint64_t total)
{
    char line[96];
    int n;

    if (c->client_fd < 0)
        return;
    n = snprintf(line, sizeof(line), "{\"progress\":%llu,\"total\":%llu}\n",
                 (unsigned long long)done, (unsigned long long)total);
    write_all(c->client_fd, line, (size_t)n);
}

void control_close(struct control *c)
{
    if (!c)
        return;
    close(c->fd);
    unlink(c->path);
    free(c->path);
    free(c);
}

void control_forget(struct control *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->path);
    free(c);
}

/* One line of the reply: a progress report, or the answer. */
static void take_line(const char *line, json_t **answer, control_progress_fn fn, void *opaque)
{
    json_error_t error;
    json_t *j = json_loads(line, 0, &error);
    json_t *done = json_object_get(j, "progress");

    if (done && json_object_size(j) == 2) {
        if (fn)
            fn(opaque, (uint64_t)json_integer_value(done),
               (uint64_t)json_integer_value(json_object_get(j, "total")));
        json_decref(j);
        return;
    }
    json_decref(*answer);
    *answer = j;
}

/* Reads the reply line by line until the server closes. */
static void read_reply(int fd, json_t **answer, control_progress_fn fn, void *opaque)
{
    char *buf = malloc(MAX_ANSWER + 1);
    size_t len = 0;

    *answer = NULL;
    while (buf && len < MAX_ANSWER) {
        ssize_t n = read(fd, buf + len, MAX_ANSWER - len);
        char *start = buf, *nl;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = 0;
        while ((nl = strchr(start, '\n'))) {
            *nl = 0;
            take_line(start, answer, fn, opaque);
            start = nl + 1;
        }
        len -= (size_t)(start - buf);
        memmove(buf, start, len);
    }
    free(buf);
}

int control_request_progress(const char *name, json_t *request, json_t **answer,
                             control_progress_fn fn, void *opaque)
{
    struct sockaddr_un addr;
    char *text;
    int fd, r = socket_address(name, &addr, NULL);

    if (r < 0)
        return r;
    fd = connect_to(&addr);
    if (fd < 0)
        return err_plain(ENOENT, "no running VM named '%s'", name);
    text = json_dumps(request, JSON_COMPACT);
    if (text) {
        write_all(fd, text, strlen(text));
        write_all(fd, "\n", 1);
    }
    shutdown(fd, SHUT_WR);
    read_reply(fd, answer, fn, opaque);
    close(fd);
    free(text);
    if (!json_is_object(*answer)) {
        json_decref(*answer);
        return err_plain(EIO, "VM '%s' gave no answer", name);
    }
    return 0;
}

int control_request(const char *name, json_t *request, json_t **answer)
{
    return control_request_progress(name, request, answer, NULL, NULL);
}

json_t *control_ok(void)
{
    return json_pack("{s:b}", "ok", 1);
}

json_t *control_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{s:b,s:s}", "ok", 0, "error", msg);
}
