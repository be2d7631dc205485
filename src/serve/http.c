/* smolvm-serve: the HTTP/1.1 daemon behind `smolvm serve` (libmicrohttpd,
 * one thread per connection: a slow client holds only its own). On a unix
 * socket (0600) it serves this user (and root), checked by SO_PEERCRED;
 * on TCP only requests carrying the token (Authorization: Bearer), and
 * only on loopback unless --allow-remote. No CORS headers: a browser page
 * of another origin cannot read the answers. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/control.h"
#include "serve/api.h"
#include "serve/websocket.h"
#include "util/err.h"

/* A request must arrive whole within this, and a connection idle this long
 * is closed. */
#define REQUEST_SECONDS 10
#define CONNECTIONS_MAX 256
/* What a console's client may send in one message (it is typed input). */
#define CONSOLE_MESSAGE_MAX 4096
#define COOKIE "smolvm_token"

struct request {
    char *body;
    size_t len;
    bool too_large, too_slow;
    struct timespec started;
    struct api_upload *upload; /* a body passed on as it arrives (PUT files) */
    char path[5120];           /* the URL with the query the API reads */
};

struct daemon_options {
    const char *socket_path;
    const char *listen; /* HOST:PORT */
    const char *token_file;
    bool allow_remote;
    bool no_confine, no_spare; /* tests and benchmarks only (usage) */
};

static char token[256];
/* The daemons' cls: which socket a connection came through. */
static const bool on_tcp = true, on_unix = false;

struct stream {
    struct api_stream body;
    int fd;
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    ssize_t n = s->body.read(s->body.opaque, s->fd, buf, max);
    (void)pos;
    return n < 0 ? (ssize_t)MHD_CONTENT_READER_END_OF_STREAM : n;
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    s->body.release(s->body.opaque);
    free(s);
}

/* A body that goes on: no idle limit for this connection (it is quiet
 * while the log is), its own thread blocked in stream_read. */
static struct MHD_Response *stream_response(struct MHD_Connection *c, struct api_reply *r)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct stream *s = malloc(sizeof(*s));
    struct MHD_Response *resp;

    if (!s)
        return NULL;
    s->body = r->stream;
    s->fd = info ? info->connect_fd : -1;
    memset(&r->stream, 0, sizeof(r->stream)); /* the response's now */
    resp = MHD_create_response_from_callback(r->sized ? r->size : MHD_SIZE_UNKNOWN, 16384,
                                             stream_read, s, stream_free);
    if (!resp)
        stream_free(s);
    else
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0);
    return resp;
}

/* ---- the web console's WebSocket ---- */

struct console_session {
    struct api_stream body; /* the VM's console */
    struct MHD_UpgradeResponseHandle *urh;
    int fd;
    pthread_mutex_t write_lock; /* the pump's frames and the reader's answers */
    uint8_t pending[2 * CONSOLE_MESSAGE_MAX]; /* what the client sent with the request */
    size_t pending_len;
};

static bool send_frame(struct console_session *s, enum ws_opcode op, const void *data,
                       size_t len)
{
    uint8_t header[10];
    size_t h = ws_frame_header(header, op, len), done = 0, total;
    struct iovec iov[2] = {{header, h}, {(void *)data, len}};
    bool ok = true;

    total = h + len;
    pthread_mutex_lock(&s->write_lock);
    while (ok && done < total) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        ssize_t n = sendmsg(s->fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        for (size_t left = n > 0 ? (size_t)n : 0; left; ) { /* past what went */
            struct iovec *v = iov[0].iov_len ? &iov[0] : &iov[1];
            size_t step = left < v->iov_len ? left : v->iov_len;
            v->iov_base = (uint8_t *)v->iov_base + step;
            v->iov_len -= step;
            left -= step;
            done += step;
        }
    }
    pthread_mutex_unlock(&s->write_lock);
    return ok;
}

static void send_close(struct console_session *s, unsigned code)
{
    uint8_t body[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    send_frame(s, WS_CLOSE, body, sizeof(body));
}

/* The console to the client, until the VM ends or the client goes. */
static void *console_pump(void *opaque)
{
    struct console_session *s = opaque;
    char buf[16384];
    ssize_t n;

    while ((n = s->body.read(s->body.opaque, s->fd, buf, sizeof(buf))) > 0)
        if (!send_frame(s, WS_BINARY, buf, (size_t)n))
            return NULL;
    send_close(s, 1000);
    return NULL;
}

/* Takes the client's frames: text and binary messages typed on the VM's
 * console, pings answered, a close or a broken frame ends the session.
 * Returns when the session is over. */
static void console_read(struct console_session *s)
{
    struct ws_reader r;
    struct ws_message m;
    uint8_t *buf = s->pending;
    size_t have = s->pending_len, at, used;
    int got = 0;

    ws_reader_init(&r, CONSOLE_MESSAGE_MAX);
    for (;;) {
        at = 0;
        while ((got = ws_read(&r, buf + at, have - at, &used, &m)) >= 0 && (used || got)) {
            at += used;
            if (got == 1 && m.opcode == WS_CLOSE) {
                send_close(s, 1000);
                goto out;
            }
            if (got == 1 && m.opcode == WS_PING)
                send_frame(s, WS_PONG, m.data, m.len);
            if (got == 1 && (m.opcode == WS_TEXT || m.opcode == WS_BINARY) && s->body.write &&
                !s->body.write(s->body.opaque, m.data, m.len))
                s->body.write = NULL; /* the VM takes no more: its output goes on */
        }
        if (got < 0) {
            send_close(s, (unsigned)-got);
            goto out;
        }
        memmove(buf, buf + at, have - at);
        have -= at;
        /* A frame the reader takes fits: one that does not is refused from
         * its header before the buffer fills. */
        if (have == sizeof(s->pending))
            goto out;
        ssize_t n = recv(s->fd, buf + have, sizeof(s->pending) - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto out;
        have += (size_t)n;
    }
out:
    ws_reader_free(&r);
}

static void *console_session(void *opaque)
{
    struct console_session *s = opaque;
    pthread_t pump;
    bool pumping = pthread_create(&pump, NULL, console_pump, s) == 0;

    if (pumping)
        console_read(s);
    shutdown(s->fd, SHUT_RDWR); /* the pump's next read or send ends */
    if (pumping)
        pthread_join(pump, NULL);
    s->body.release(s->body.opaque);
    MHD_upgrade_action(s->urh, MHD_UPGRADE_ACTION_CLOSE);
    pthread_mutex_destroy(&s->write_lock);
    free(s);
    return NULL;
}

static void on_upgraded(void *cls, struct MHD_Connection *c, void *req_cls, const char *extra,
                        size_t extra_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct console_session *s = cls;
    pthread_t t;
    (void)c;
    (void)req_cls;

    s->fd = sock;
    s->urh = urh;
    /* libmicrohttpd's sockets are non-blocking; the session's threads block. */
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) & ~O_NONBLOCK);
    if (extra_size > sizeof(s->pending))
        extra_size = 0; /* more than a client may send at once: refused below */
    memcpy(s->pending, extra, extra_size);
    s->pending_len = extra_size;
    if (pthread_create(&t, NULL, console_session, s) == 0)
        pthread_detach(t);
    else
        console_session(s);
}

static bool header_has(struct MHD_Connection *c, const char *name, const char *word)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    return v && strcasestr(v, word);
}

/* A WebSocket handshake (RFC 6455 4.2.1) from this origin: 0 and the
 * accept key, or the status to refuse it with. A page of another origin
 * must not read a console with this user's cookie. */
static unsigned websocket_handshake(struct MHD_Connection *c, char accept[WS_ACCEPT_LEN + 1])
{
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    const char *version = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");

    if (!header_has(c, "Upgrade", "websocket") || !header_has(c, "Connection", "upgrade") ||
        !version || strcmp(version, "13") != 0 || !key || !ws_accept_key(key, accept))
        return 400;
    if (origin) {
        const char *rest = strncmp(origin, "http://", 7) == 0    ? origin + 7
                           : strncmp(origin, "https://", 8) == 0 ? origin + 8
                                                                 : NULL;
        if (!rest || !host || strcmp(rest, host) != 0)
            return 403;
    }
    return 0;
}

static enum MHD_Result refuse(struct MHD_Connection *c, unsigned status, const char *code,
                              const char *message);

static enum MHD_Result upgrade_to_console(struct MHD_Connection *c, struct api_reply *r)
{
    char accept[WS_ACCEPT_LEN + 1];
    unsigned status = websocket_handshake(c, accept);
    struct console_session *s;
    struct MHD_Response *resp;
    enum MHD_Result ok;

    if (status) {
        api_reply_release(r);
        return refuse(c, status, status == 403 ? "forbidden" : "invalid_value",
                      status == 403 ? "a WebSocket from another origin"
                                    : "this path takes a WebSocket (version 13) handshake");
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        api_reply_release(r);
        return MHD_NO;
    }
    s->body = r->stream;
    memset(&r->stream, 0, sizeof(r->stream)); /* the session's now */
    pthread_mutex_init(&s->write_lock, NULL);
    resp = MHD_create_response_for_upgrade(on_upgraded, s);
    if (!resp) {
        s->body.release(s->body.opaque);
        free(s);
        api_reply_release(r);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u); /* quiet while the VM is */
    ok = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
    MHD_destroy_response(resp);
    api_reply_release(r);
    return ok;
}

/* ---- replies ---- */

/* The token, as it may go in a cookie: letters, digits and -._~+/= only. */
static bool cookie_safe(const char *t)
{
    return t[strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")] == 0;
}

static enum MHD_Result send_reply_setting(struct MHD_Connection *c, struct api_reply *r,
                                          bool set_cookie)
{
    struct MHD_Response *resp;
    enum MHD_Result ok;
    char *json = NULL;

    if (r->websocket)
        return upgrade_to_console(c, r);
    if (r->stream.read) {
        resp = stream_response(c, r);
    } else if (r->json) {
        json = json_dumps(r->json, JSON_COMPACT);
        resp = MHD_create_response_from_buffer(json ? strlen(json) : 0, json,
                                               MHD_RESPMEM_MUST_FREE);
    } else {
        size_t n = r->text_len ? r->text_len : r->text ? strlen(r->text) : 0;
        resp = MHD_create_response_from_buffer(n, r->text, MHD_RESPMEM_MUST_FREE);
        r->text = NULL;
    }
    if (!resp) {
        api_reply_release(r);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type",
                            r->content_type ? r->content_type : "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY"); /* the page's buttons */
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer"); /* ?token= stays here */
    if (set_cookie && cookie_safe(token)) {
        char cookie[sizeof(token) + 64];
        snprintf(cookie, sizeof(cookie), COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/", token);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    }
    ok = MHD_queue_response(c, r->status, resp);
    MHD_destroy_response(resp);
    api_reply_release(r);
    return ok;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, struct api_reply *r)
{
    return send_reply_setting(c, r, false);
}

static enum MHD_Result refuse(struct MHD_Connection *c, unsigned status, const char *code,
                              const char *message)
{
    struct api_reply r = {.status = status, .json = api_error(code, "%s", message)};
    return send_reply(c, &r);
}

static bool token_is(const char *given)
{
    size_t n = strlen(token);
    unsigned char diff = 0;

    if (!given || strlen(given) != n)
        return false;
    for (size_t i = 0; i < n; i++) /* in constant time */
        diff |= (unsigned char)(given[i] ^ token[i]);
    return diff == 0;
}

/* The token in the URL (?token=): a browser's first visit to the page. */
static bool token_in_query(struct MHD_Connection *c)
{
    return token_is(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token"));
}

/* 0 when the client may be served, else the status to refuse it with. On
 * TCP the token comes as 'Authorization: Bearer', or from a browser as
 * the cookie the page set, or in the URL. */
static unsigned authorised(struct MHD_Connection *c, bool tcp)
{
    if (tcp) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (auth)
            return strncmp(auth, "Bearer ", 7) == 0 && token_is(auth + 7) ? 0 : 401;
        return token_is(MHD_lookup_connection_value(c, MHD_COOKIE_KIND, COOKIE)) ||
                       token_in_query(c)
                   ? 0
                   : 401;
    }
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (!info || getsockopt(info->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return 403;
    return cred.uid == getuid() || cred.uid == 0 ? 0 : 403;
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The URL again with the query arguments the API reads (libmicrohttpd
 * hands them over decoded): follow, and path percent-encoded. */
static void request_path(struct MHD_Connection *c, const char *url, char *out, size_t size)
{
    const char *follow = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "follow");
    const char *file = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "path");
    size_t n = (size_t)snprintf(out, size, "%s?", url);

    if (follow && n < size)
        n += (size_t)snprintf(out + n, size - n, "follow=%s&", follow);
    if (file && n + 6 < size) {
        n += (size_t)snprintf(out + n, size - n, "path=");
        for (const unsigned char *p = (const unsigned char *)file; *p && n + 4 < size; p++)
            n += (size_t)(strchr("&%+#?", *p) || *p < 0x21 || *p >= 0x7f
                              ? snprintf(out + n, size - n, "%%%02X", *p)
                              : snprintf(out + n, size - n, "%c", *p));
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **state)
{
    struct request *q = *state;
    unsigned status;
    (void)version;

    if (!q) { /* the headers are in: refuse what will not be served before any body */
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if ((status = authorised(c, *(const bool *)cls)) != 0)
            return refuse(c, status, status == 401 ? "unauthorized" : "forbidden",
                          status == 401 ? "this socket needs 'Authorization: Bearer TOKEN'"
                                        : "only the daemon's user is served");
        if (!(q = calloc(1, sizeof(*q))))
            return MHD_NO;
        request_path(c, url, q->path, sizeof(q->path));
        struct api_reply r;
        if (api_upload_begin(method, q->path, &q->upload, &r) && !q->upload) {
            free(q);
            return send_reply(c, &r); /* refused before its body */
        }
        if (!q->upload && length && strtoull(length, NULL, 10) > API_BODY_MAX) {
            free(q);
            return refuse(c, 413, "too_large", "a body holds at most 65536 bytes");
        }
        clock_gettime(CLOCK_MONOTONIC, &q->started);
        *state = q;
        return MHD_YES;
    }
    if (q->upload) { /* as long as it takes; an idle connection is still closed */
        struct api_reply r;
        if (*upload_size) {
            api_upload_write(q->upload, upload, *upload_size);
            *upload_size = 0;
            return MHD_YES;
        }
        api_upload_finish(q->upload, &r);
        q->upload = NULL;
        return send_reply(c, &r);
    }
    if (*upload_size) {
        if (elapsed(&q->started) > REQUEST_SECONDS)
            q->too_slow = true;
        if (q->too_large || q->too_slow || q->len + *upload_size > API_BODY_MAX) {
            q->too_large = !q->too_slow;
            free(q->body);
            q->body = NULL;
        } else {
            char *grown = realloc(q->body, q->len + *upload_size);
            if (!grown)
                return MHD_NO;
            memcpy(grown + q->len, upload, *upload_size);
            q->body = grown;
            q->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->too_large)
        return refuse(c, 413, "too_large", "a body holds at most 65536 bytes");
    if (q->too_slow)
        return refuse(c, 408, "too_slow", "the request took too long to arrive");
    struct api_reply r;
    /* Work may take long (a stop waits for the guest, a save for its
     * bytes): no idle limit meanwhile; setting it again from none restarts
     * the clock, so the reply gets the whole limit to go out. */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    api_handle(method, q->path, q->body ? q->body : "", q->len, &r);
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)REQUEST_SECONDS);
    return send_reply_setting(c, &r, *(const bool *)cls && token_in_query(c));
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode why)
{
    struct request *q = *state;
    (void)cls;
    (void)c;
    (void)why;
    if (q) {
        free(q->body);
        api_upload_abort(q->upload); /* the client went away mid-upload */
    }
    free(q);
    *state = NULL;
}

/* The unix socket, 0600 from its creation; a stale one (nobody answers)
 * is replaced, a live one refused. */
static int unix_socket(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(a.sun_path))
        return err_plain(ENAMETOOLONG, "'%s': too long for a unix socket", path);
    strcpy(a.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_set(errno, "socket");
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        close(fd);
        return err_plain(EADDRINUSE, "'%s': a daemon answers there already", path);
    }
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) { /* never a file of the user's */
        close(fd);
        return err_plain(EEXIST, "'%s' exists and is not a socket", path);
    }
    unlink(path); /* a socket nobody answers on: a daemon killed */
    mode_t old = umask(0177);
    int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
    umask(old);
    if (r < 0 || chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
        r = err_set(errno, "'%s'", path);
        close(fd);
        return r;
    }
    return fd;
}

static int tcp_socket(const char *listen_on, bool allow_remote)
{
    char host[64];
    const char *colon = strrchr(listen_on, ':');
    struct sockaddr_in a = {.sin_family = AF_INET};
    char *end;
    long port;
    int fd, one = 1;

    if (!colon || (size_t)(colon - listen_on) >= sizeof(host))
        return err_plain(EINVAL, "--listen '%s': use HOST:PORT (127.0.0.1:8080)", listen_on);
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen_on), listen_on);
    port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return err_plain(EINVAL, "--listen '%s': use an IPv4 HOST:PORT (127.0.0.1:8080)",
                         listen_on);
    if ((ntohl(a.sin_addr.s_addr) >> 24) != 127 && !allow_remote)
        return err_plain(EINVAL, "--listen '%s' is not loopback: add --allow-remote to serve "
                                 "other hosts", listen_on);
    a.sin_port = htons((uint16_t)port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_set(errno, "socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0) {
        int r = err_set(errno, "--listen '%s'", listen_on);
        close(fd);
        return r;
    }
    return fd;
}

/* The token: the file's first line, at least 16 characters; the file must
 * be readable by its owner only. */
static int read_token(const char *path)
{
    struct stat st;
    FILE *f = fopen(path, "re");

    if (!f)
        return err_set(errno, "--token-file '%s'", path);
    if (fstat(fileno(f), &st) < 0 || (st.st_mode & 077)) {
        fclose(f);
        return err_plain(EPERM, "--token-file '%s': others may read it (chmod 600)", path);
    }
    if (!fgets(token, sizeof(token), f))
        token[0] = 0;
    fclose(f);
    token[strcspn(token, "\r\n")] = 0;
    if (strlen(token) < 16)
        return err_plain(EINVAL, "--token-file '%s': the token needs at least 16 characters",
                         path);
    return 0;
}

static const char usage[] =
    "usage: smolvm serve [--socket PATH] [--listen 127.0.0.1:PORT --token-file FILE]\n"
    "\n"
    "Serves the REST API (docs/openapi.yaml, also at GET /openapi.json) that lists,\n"
    "creates, starts, stops, pauses, resumes, saves and removes machines. Each VM\n"
    "runs in a process of its own and outlives the daemon; a daemon started again\n"
    "finds the VMs that run. Runs until SIGINT or SIGTERM.\n"
    "\n"
    "  --socket PATH       the unix socket (0600; this user and root are served);\n"
    "                      default api.socket in the runtime folder\n"
    "  --listen HOST:PORT  also TCP, loopback only unless --allow-remote; needs\n"
    "  --token-file FILE   a file (mode 0600) whose first line is the token clients\n"
    "                      send as 'Authorization: Bearer TOKEN'\n"
    "  --allow-remote      let --listen take an address other than 127.x\n"
    "\n"
    "A VM is started as 'smolvm start NAME --detach --jail' would start it, through\n"
    "a spare VMM the daemon keeps ready ahead of the next start (only what does\n"
    "not depend on the machine done in it: the start is the same, sooner).\n"
    "For tests and benchmarks only:\n"
    "  --no-confine        start VMs without --jail and with --seccomp=off\n"
    "  --no-spare          keep no spare VMM: each start is a new process\n";

static int parse(int argc, char **argv, struct daemon_options *o)
{
    static const struct option longs[] = {
        {"socket", required_argument, NULL, 's'}, {"listen", required_argument, NULL, 'l'},
        {"token-file", required_argument, NULL, 't'}, {"allow-remote", no_argument, NULL, 'r'},
        {"no-confine", no_argument, NULL, 'c'}, {"no-spare", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'}, {0},
    };
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        switch (c) {
        case 's': o->socket_path = optarg; break;
        case 'l': o->listen = optarg; break;
        case 't': o->token_file = optarg; break;
        case 'r': o->allow_remote = true; break;
        case 'c': o->no_confine = true; break;
        case 'n': o->no_spare = true; break;
        case 'h': fputs(usage, stdout); return -1;
        default:
            fprintf(stderr, "smolvm: serve: %s '%s' (try 'smolvm serve --help')\n",
                    c == ':' ? "option needs a value:" : "unknown option",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "smolvm: serve: takes no arguments ('%s')\n", argv[optind]);
        return 2;
    }
    if (!o->listen != !o->token_file) {
        fprintf(stderr, "smolvm: serve: --listen needs --token-file, and the other way round\n");
        return 2;
    }
    return 0;
}

static struct MHD_Daemon *serve_on(int fd, const bool *tcp)
{
    return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE,
                            0, NULL, NULL, on_request, (void *)tcp,
                            MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)REQUEST_SECONDS,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTIONS_MAX,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                            MHD_OPTION_END);
}

int main(int argc, char **argv)
{
    struct daemon_options o = {0};
    struct MHD_Daemon *unix_daemon = NULL, *tcp_daemon = NULL;
    char *dir = NULL, *socket_path = NULL, exe[PATH_MAX];
    const char *smolvm = getenv("SMOLVM_EXE");
    int code = parse(argc, argv, &o), fd, sig;
    sigset_t stop;

    if (code)
        return code < 0 ? 0 : code;
    if (!smolvm) { /* smolvm beside this executable */
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 8);
        char *slash;
        exe[n > 0 ? n : 0] = 0;
        if ((slash = strrchr(exe, '/')))
            strcpy(slash + 1, "smolvm");
        smolvm = exe;
    }
    api_set_executable(smolvm);
    if (o.socket_path)
        socket_path = strdup(o.socket_path);
    else if (control_dir(&dir) < 0 || asprintf(&socket_path, "%s/api.socket", dir) < 0)
        socket_path = NULL;
    free(dir);
    if (!socket_path) {
        fprintf(stderr, "smolvm: serve: no runtime folder for the socket: %s\n", err_msg());
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* before any thread: sigwait takes them */
    if (o.token_file && read_token(o.token_file) < 0) {
        fprintf(stderr, "smolvm: serve: %s\n", err_msg());
        return 1;
    }
    if ((fd = unix_socket(socket_path)) < 0 || !(unix_daemon = serve_on(fd, &on_unix))) {
        fprintf(stderr, "smolvm: serve: %s\n", fd < 0 ? err_msg() : "cannot serve the socket");
        free(socket_path);
        return 1;
    }
    if (o.listen) {
        if ((fd = tcp_socket(o.listen, o.allow_remote)) < 0 || !(tcp_daemon = serve_on(fd, &on_tcp))) {
            fprintf(stderr, "smolvm: serve: %s\n", fd < 0 ? err_msg() : "cannot serve TCP");
            MHD_stop_daemon(unix_daemon);
            unlink(socket_path);
            free(socket_path);
            return 1;
        }
    }
    /* Paths in requests must be absolute; a name never reads as a file
     * of whatever folder the daemon was started in. */
    if (chdir("/") < 0) {
        fprintf(stderr, "smolvm: serve: chdir /: %s\n", strerror(errno));
        return 1;
    }
    api_set_vm_options(!o.no_confine, !o.no_spare);
    api_spare_make();
    printf("serving on %s%s%s\n", socket_path, o.listen ? " and " : "", o.listen ? o.listen : "");
    fflush(stdout);
    while (sigwait(&stop, &sig) != 0)
        ;
    MHD_stop_daemon(tcp_daemon);
    MHD_stop_daemon(unix_daemon);
    api_spare_end();
    unlink(socket_path);
    free(socket_path);
    return 0;
}
