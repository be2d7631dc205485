/* smolvm-serve: the HTTP/1.1 daemon behind `smolvm serve` (libmicrohttpd,
 * one thread per connection: a slow client holds only its own). On a unix
 * socket (0600) it serves this user (and root), checked by SO_PEERCRED;
 * on TCP only requests carrying the token (Authorization: Bearer), and
 * only on loopback unless --allow-remote. No CORS headers: a browser page
 * of another origin cannot read the answers. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/control.h"
#include "serve/api.h"
#include "util/err.h"

/* A request must arrive whole within this, and a connection idle this long
 * is closed. */
#define REQUEST_SECONDS 10
#define CONNECTIONS_MAX 256

struct request {
    char *body;
    size_t len;
    bool too_large, too_slow;
    struct timespec started;
};

struct daemon_options {
    const char *socket_path;
    const char *listen; /* HOST:PORT */
    const char *token_file;
    bool allow_remote;
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
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s,
                                             stream_free);
    if (!resp)
        stream_free(s);
    else
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0);
    return resp;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, struct api_reply *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ok;
    char *json = NULL;

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
    ok = MHD_queue_response(c, r->status, resp);
    MHD_destroy_response(resp);
    api_reply_release(r);
    return ok;
}

static enum MHD_Result refuse(struct MHD_Connection *c, unsigned status, const char *code,
                              const char *message)
{
    struct api_reply r = {.status = status, .json = api_error(code, "%s", message)};
    return send_reply(c, &r);
}

/* 0 when the client may be served, else the status to refuse it with. */
static unsigned authorised(struct MHD_Connection *c, bool tcp)
{
    if (tcp) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        size_t n = strlen(token), given = auth ? strlen(auth) : 0;
        unsigned char diff = 0;
        if (!auth || given != n + 7 || strncmp(auth, "Bearer ", 7) != 0)
            return 401;
        for (size_t i = 0; i < n; i++) /* in constant time */
            diff |= (unsigned char)(auth[7 + i] ^ token[i]);
        return diff ? 401 : 0;
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
        if (length && strtoull(length, NULL, 10) > API_BODY_MAX)
            return refuse(c, 413, "too_large", "a body holds at most 65536 bytes");
        if (!(q = calloc(1, sizeof(*q))))
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &q->started);
        *state = q;
        return MHD_YES;
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
    api_handle(method, url, q->body ? q->body : "", q->len, &r);
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)REQUEST_SECONDS);
    return send_reply(c, &r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode why)
{
    struct request *q = *state;
    (void)cls;
    (void)c;
    (void)why;
    if (q)
        free(q->body);
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
    "  --allow-remote      let --listen take an address other than 127.x\n";

static int parse(int argc, char **argv, struct daemon_options *o)
{
    static const struct option longs[] = {
        {"socket", required_argument, NULL, 's'}, {"listen", required_argument, NULL, 'l'},
        {"token-file", required_argument, NULL, 't'}, {"allow-remote", no_argument, NULL, 'r'},
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
                                MHD_USE_POLL | MHD_USE_ERROR_LOG,
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
    printf("serving on %s%s%s\n", socket_path, o.listen ? " and " : "", o.listen ? o.listen : "");
    fflush(stdout);
    while (sigwait(&stop, &sig) != 0)
        ;
    MHD_stop_daemon(tcp_daemon);
    MHD_stop_daemon(unix_daemon);
    unlink(socket_path);
    free(socket_path);
    return 0;
}
