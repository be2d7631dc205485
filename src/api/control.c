#include "api/control.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/paths.h"

#define MAX_REQUEST (64u << 10)
#define MAX_ANSWER (1u << 20)
/* The server's limit for reading a whole request (and writing each line). */
#define REQUEST_DEADLINE_MS 2000
/* A client's limit for connecting and for the server's first line: the
 * server may first finish another client's request. */
#define CLIENT_ANSWER_S 5
#define NAME_MAX_LEN CONTROL_NAME_MAX

/* Descriptors a client may pass with a request (SCM_RIGHTS): the first is
 * kept for the handler, any more are closed. */
#define PASSED_FDS_MAX 4

struct control {
    int fd;
    int client_fd; /* the connection being answered, or -1 */
    int passed_fd; /* what its client passed with the request, until taken; or -1 */
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

int control_dir(char **out)
{
    char *dirs[PATHS_RUNTIME_MAX];
    int n = paths_runtime_dirs(dirs), r = err_plain(ENOENT, "no runtime folder");

    *out = NULL;
    for (int i = 0; i < n && !*out; i++) {
        r = paths_private_dir(dirs[i]);
        if (r == 0)
            *out = dirs[i], dirs[i] = NULL;
    }
    paths_free(dirs, n);
    if (*out)
        err_clear();
    return *out ? 0 : r;
}

int control_vm_dir(const char *name, char **out)
{
    char *dir;
    int r = control_name_ok(name) ? control_dir(&dir) : err_plain(EINVAL, "bad VM name");

    if (r < 0)
        return r;
    if (asprintf(out, "%s/%s" CONTROL_VM_DIR_SUFFIX, dir, name) < 0)
        r = err_set(ENOMEM, "runtime folder"), *out = NULL;
    free(dir);
    if (r == 0 && (r = paths_private_dir(*out)) < 0) {
        free(*out);
        *out = NULL;
    }
    return r;
}

/* DIR/NAME.SUFFIX (the control socket's suffix is "sock"). */
static int socket_in(const char *dir, const char *name, const char *suffix,
                     struct sockaddr_un *addr)
{
    int r;

    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    r = snprintf(addr->sun_path, sizeof(addr->sun_path), "%s/%s.%s", dir, name, suffix);
    if (r < 0 || (size_t)r >= sizeof(addr->sun_path))
        return err_plain(ENAMETOOLONG, "socket path for '%s' is too long", name);
    return 0;
}

static int connect_to(const struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = CLIENT_ANSWER_S};

    if (fd < 0)
        return -errno;
    /* Bounds connect() to a VM whose backlog is full, and our writes. */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0) {
        int e = errno;
        close(fd);
        return e == EAGAIN || e == EINPROGRESS ? -ETIMEDOUT : -e;
    }
    return fd;
}

/* A connection to NAME's socket NAME.SUFFIX, in whichever runtime folder it
 * is; -ENOENT when none answers, -ETIMEDOUT when one is there but busy. */
static int connect_name(const char *name, const char *suffix)
{
    char *dirs[PATHS_RUNTIME_MAX];
    int n, fd = -ENOENT;

    if (!control_name_ok(name))
        return err_plain(EINVAL, "'%s' is not a valid VM name (letters, digits, '.', '_', '-')",
                         name);
    n = paths_runtime_dirs(dirs);
    for (int i = 0; i < n && fd < 0; i++) {
        struct sockaddr_un addr;
        int r = socket_in(dirs[i], name, suffix, &addr) < 0 ? -ENOENT : connect_to(&addr);
        if (r >= 0 || r == -ETIMEDOUT || fd == -ENOENT)
            fd = r;
    }
    paths_free(dirs, n);
    err_clear();
    if (fd == -ETIMEDOUT)
        return err_plain(ETIMEDOUT, "VM '%s' does not answer (busy?)", name);
    if (fd < 0)
        return err_plain(ENOENT, "no running VM named '%s'", name);
    return fd;
}

/* Binds NAME.SUFFIX in dir, 0600, and listens: the fd, its path in *path. */
static int bind_in(const char *dir, const char *name, const char *suffix, char **path)
{
    struct sockaddr_un addr;
    int r = socket_in(dir, name, suffix, &addr), fd;

    if (r < 0)
        return r;
    unlink(addr.sun_path); /* a stale socket of a VM that died */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    /* Nobody can connect before listen(): chmod in between leaves no window. */
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        chmod(addr.sun_path, 0600) < 0 || listen(fd, 8) < 0) {
        r = err_set(errno, "socket '%s'", addr.sun_path);
        if (fd >= 0)
            close(fd);
        unlink(addr.sun_path);
        return r;
    }
    if (!(*path = strdup(addr.sun_path))) {
        close(fd);
        unlink(addr.sun_path);
        return err_set(ENOMEM, "socket '%s'", addr.sun_path);
    }
    return fd;
}

int control_open(const char *name, control_handler fn, void *opaque, struct control **out)
{
    struct control *c = calloc(1, sizeof(*c));
    char *dirs[PATHS_RUNTIME_MAX];
    int r, live, n;

    if (!c)
        return err_set(ENOMEM, "control socket");
    c->fd = c->client_fd = c->passed_fd = -1;
    c->fn = fn;
    c->opaque = opaque;
    live = connect_name(name, "sock");
    if (live >= 0 || live == -ETIMEDOUT) {
        if (live >= 0)
            close(live);
        free(c);
        return err_plain(EEXIST, "a VM named '%s' is already running", name);
    }
    if (live == -EINVAL) {
        free(c);
        return live;
    }
    /* The first runtime folder where a socket can be made: unix sockets
     * fail on some file systems (9p, NFS). */
    n = paths_runtime_dirs(dirs);
    r = err_plain(ENOENT, "no runtime folder for the control socket");
    for (int i = 0; i < n && c->fd < 0; i++) {
        int e = paths_private_dir(dirs[i]);
        r = e < 0 ? e : bind_in(dirs[i], name, "sock", &c->path);
        if (r >= 0)
            c->fd = r;
    }
    paths_free(dirs, n);
    if (c->fd < 0) {
        free(c->path);
        free(c);
        return r;
    }
    err_clear();
    *out = c;
    return 0;
}

int control_listen_fd(const struct control *c)
{
    return c->fd;
}

int control_listen_beside(const struct control *c, const char *suffix, char **path)
{
    char *dir = strdup(c->path), *slash = dir ? strrchr(dir, '/') : NULL, *name, *dot;
    int fd;

    if (!slash) {
        free(dir);
        return err_set(ENOMEM, "socket");
    }
    *slash = 0;
    name = slash + 1;
    dot = strrchr(name, '.'); /* NAME.sock */
    if (dot)
        *dot = 0;
    fd = bind_in(dir, name, suffix, path);
    free(dir);
    return fd;
}

int control_connect(const char *name, const char *suffix)
{
    return connect_name(name, suffix);
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline (ms, CLOCK_MONOTONIC; -1: none). */
static bool wait_for(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int64_t left = deadline < 0 ? -1 : deadline - now_ms();
        int n;
        if (deadline >= 0 && left <= 0)
            return false;
        n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return true;
        if (n == 0 && deadline < 0)
            continue;
        if (n == 0 || errno != EINTR)
            return false;
    }
}

/* recv(), keeping the first descriptor passed along (*passed, when it is
 * still -1) and closing any other: a client cannot leave us holding more. */
static ssize_t recv_keeping_fd(int fd, char *buf, size_t len, int *passed)
{
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int) * PASSED_FDS_MAX)];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                         .msg_controllen = sizeof(control.space)};
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);

    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(got));
            if (*passed < 0)
                *passed = got;
            else
                close(got);
        }
    }
    return n;
}

/* Reads from a non-blocking socket until EOF, a newline (when
 * stop_at_newline), max bytes or the deadline: NULL when the message did
 * not end by then. A descriptor passed with it lands in *passed. */
static char *read_message(int fd, size_t max, bool stop_at_newline, int64_t deadline,
                          int *passed)
{
    size_t len = 0;
    char *buf = malloc(max + 1);

    if (!buf)
        return NULL;
    while (len < max) {
        ssize_t n = recv_keeping_fd(fd, buf + len, max - len, passed);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && wait_for(fd, POLLIN, deadline))
            continue;
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (stop_at_newline && memchr(buf + len - (size_t)n, '\n', (size_t)n))
            break;
    }
    buf[len] = 0;
    return buf;
}

/* Writes to a non-blocking fd until done or the deadline (-1: none). */
static bool write_all(int fd, const char *s, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && wait_for(fd, POLLOUT, deadline))
            continue;
        if (n <= 0)
            return false;
        s += n;
        len -= (size_t)n;
    }
    return true;
}

static bool write_line(int fd, const char *line, int64_t deadline)
{
    return write_all(fd, line, strlen(line), deadline) && write_all(fd, "\n", 1, deadline);
}

/* Only this user and root may drive the VM (the folder is 0700 and the
 * socket 0600, but a socket passed on or a folder made by root must not
 * widen that). */
bool control_peer_allowed(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return false;
    if (cred.uid == getuid() || cred.uid == 0)
        return true;
    fprintf(stderr, "smolvm: control socket: refused a connection from uid %u (pid %d)\n",
            (unsigned)cred.uid, (int)cred.pid);
    return false;
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

static void close_passed(struct control *c)
{
    if (c->passed_fd >= 0)
        close(c->passed_fd);
    c->passed_fd = -1;
}

int control_take_fd(struct control *c)
{
    int fd = c->passed_fd;
    c->passed_fd = -1;
    return fd;
}

void control_accept(struct control *c)
{
    int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    json_t *answer;
    char *text, *reply;

    if (fd < 0)
        return;
    if (!control_peer_allowed(fd)) {
        close(fd);
        return;
    }
    /* The whole request by one deadline: a client dripping a byte at a
     * time must not hold up the loop that also serves stop and signals. */
    text = read_message(fd, MAX_REQUEST, true, now_ms() + REQUEST_DEADLINE_MS, &c->passed_fd);
    if (!text) {
        close_passed(c);
        close(fd);
        return;
    }
    /* The acknowledgement: a progress line the client reads as "working". */
    write_line(fd, "{\"progress\":0,\"total\":0}", now_ms() + REQUEST_DEADLINE_MS);
    c->client_fd = fd;
    answer = answer_for(c, text);
    c->client_fd = -1;
    close_passed(c); /* not taken: not wanted */
    reply = json_dumps(answer, JSON_COMPACT);
    if (reply)
        write_line(fd, reply, now_ms() + REQUEST_DEADLINE_MS);
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
    /* Advisory: a client that does not read loses lines, the save goes on. */
    if (send(c->client_fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        return;
}

void control_note(struct control *c, json_t *note)
{
    json_t *line = json_pack("{s:o}", "note", note);
    char *text = c->client_fd >= 0 && line ? json_dumps(line, JSON_COMPACT) : NULL;

    json_decref(line);
    if (!text)
        return;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps' NUL: the line's end, sent as one */
    /* Advisory, as progress. */
    if (send(c->client_fd, text, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        free(text);
        return;
    }
    free(text);
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

/* What the client does with the lines before the answer. */
struct reply_listener {
    control_progress_fn progress;
    control_note_fn note;
    void *opaque;
};

/* One line of the reply: a progress report, a note, or the answer. */
static void take_line(const char *line, json_t **answer, const struct reply_listener *to)
{
    json_error_t error;
    json_t *j = json_loads(line, 0, &error);
    json_t *done = json_object_get(j, "progress"), *note = json_object_get(j, "note");
    control_progress_fn fn = to->progress;
    void *opaque = to->opaque;

    if (note && json_object_size(j) == 1) {
        if (to->note)
            to->note(opaque, note);
        json_decref(j);
        return;
    }
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

/* Reads the reply line by line until the server closes: the first line
 * (the acknowledgement) within CLIENT_ANSWER_S, each later one within
 * work_ms (-1: no limit). -ETIMEDOUT when a wait ran out. */
static int read_reply(int fd, json_t **answer, long work_ms, const struct reply_listener *to)
{
    char *buf = malloc(MAX_ANSWER + 1);
    size_t len = 0;
    bool acknowledged = false;
    int r = buf ? 0 : -ENOMEM;

    *answer = NULL;
    while (buf && len < MAX_ANSWER) {
        long wait = acknowledged ? work_ms : CLIENT_ANSWER_S * 1000;
        ssize_t n;
        char *start = buf, *nl;
        if (!wait_for(fd, POLLIN, wait < 0 ? -1 : now_ms() + wait)) {
            r = -ETIMEDOUT;
            break;
        }
        n = read(fd, buf + len, MAX_ANSWER - len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = 0;
        while ((nl = strchr(start, '\n'))) {
            *nl = 0;
            take_line(start, answer, to);
            acknowledged = true;
            start = nl + 1;
        }
        len -= (size_t)(start - buf);
        memmove(buf, start, len);
    }
    free(buf);
    return r;
}

int control_request_progress(const char *name, json_t *request, json_t **answer, long work_ms,
                             control_progress_fn fn, void *opaque)
{
    return control_request_notes(name, request, answer, work_ms, fn, NULL, opaque);
}

/* The request's first bytes with fd passed along them (SCM_RIGHTS); the
 * rest as any request's. */
static bool write_line_passing(int sock, const char *line, int fd, int64_t deadline)
{
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = (void *)line, .iov_len = strlen(line)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                         .msg_controllen = sizeof(control.space)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    ssize_t n;

    if (fd < 0)
        return write_line(sock, line, deadline);
    memset(control.space, 0, sizeof(control.space));
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(fd));
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n > 0 && write_line(sock, line + n, deadline);
}

int control_request_notes(const char *name, json_t *request, json_t **answer, long work_ms,
                          control_progress_fn fn, control_note_fn note_fn, void *opaque)
{
    return control_request_passing(name, request, -1, answer, work_ms, fn, note_fn, opaque);
}

int control_request_passing(const char *name, json_t *request, int pass_fd, json_t **answer,
                            long work_ms, control_progress_fn fn, control_note_fn note_fn,
                            void *opaque)
{
    const struct reply_listener to = {fn, note_fn, opaque};
    char *text = json_dumps(request, JSON_COMPACT);
    int fd = connect_name(name, "sock"), r;

    *answer = NULL;
    if (fd < 0 || !text) {
        free(text);
        if (fd >= 0)
            close(fd);
        if (pass_fd >= 0)
            close(pass_fd);
        return fd < 0 ? fd : err_set(ENOMEM, "request");
    }
    r = write_line_passing(fd, text, pass_fd, now_ms() + CLIENT_ANSWER_S * 1000) ? 0 : -errno;
    if (pass_fd >= 0)
        close(pass_fd); /* the VM's copy is the only one now */
    free(text);
    shutdown(fd, SHUT_WR);
    if (r == 0)
        r = read_reply(fd, answer, work_ms, &to);
    close(fd);
    if (r == -ETIMEDOUT) {
        json_decref(*answer);
        return err_plain(ETIMEDOUT, "VM '%s' does not answer (busy?)", name);
    }
    if (!json_is_object(*answer)) {
        json_decref(*answer);
        return err_plain(EIO, "VM '%s' gave no answer", name);
    }
    return 0;
}

int control_request(const char *name, json_t *request, json_t **answer)
{
    return control_request_progress(name, request, answer, CONTROL_WORK_MS, NULL, NULL);
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
