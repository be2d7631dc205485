/* smolvm-serve as clients reach it: the unix socket 0600 and other users
 * refused by their credentials, TCP only with the token and only on
 * loopback, bodies too large refused from their Content-Length, a client
 * that never finishes its request holding nobody else up (50 clients
 * served meanwhile) and cut off after the time limit, and a daemon
 * killed -9 replaced by one that takes over its socket; every response
 * checked against docs/openapi.yaml. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "api/control.h"
#include "control_loop.h"
#include "scratch.h"

#define TOKEN "0123456789abcdef-token"

static pid_t daemon_pid = -1;
static int port;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int unix_connect(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int tcp_connect(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends request on fd and reads the answer until the server closes;
 * returns the HTTP status (0: none) and the answer in out. */
static int exchange(int fd, const char *request, char *out, size_t size)
{
    size_t len = 0;
    ssize_t n;
    int status = 0;

    if (fd < 0)
        return 0;
    if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0) {
        close(fd);
        return 0;
    }
    while (len < size - 1 && (n = read(fd, out + len, size - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(fd);
    sscanf(out, "HTTP/1.1 %d", &status);
    return status;
}

static char *sock_path(void)
{
    return in_dir("run/smolvm/api.socket");
}

static int get(const char *path, char *out, size_t size)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    return exchange(unix_connect(sock_path()), req, out, size);
}

/* Starts the daemon; waits for its socket to answer. extra: more options. */
static pid_t start_daemon(const char *extra1, const char *extra2)
{
    char listen_on[32], answer[4096];
    pid_t pid;

    snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%d", port);
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        execl(SMOLVM_SERVE, "smolvm-serve", "--listen", listen_on, "--token-file",
              in_dir("token"), extra1, extra2, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (get("/machines", answer, sizeof(answer)) == 200)
            return pid;
        usleep(20000);
    }
    fail_msg("the daemon does not answer");
    return -1;
}

static int group_setup(void **state)
{
    (void)state;
    if (scratch_setup("serve-http") < 0)
        return -1;
    mkdir(in_dir("run"), 0700);
    mkdir(in_dir("tmp"), 0700);
    setenv("XDG_RUNTIME_DIR", in_dir("run"), 1);
    setenv("TMPDIR", in_dir("tmp"), 1);
    setenv("XDG_DATA_HOME", in_dir("data"), 1);
    setenv("XDG_CACHE_HOME", in_dir("cache"), 1);
    /* The web console's xterm.js: only where the test puts it. */
    setenv("HOME", in_dir("home"), 1);
    setenv("SMOLVM_XTERM_DIR", in_dir("xterm"), 1);
    signal(SIGPIPE, SIG_IGN);
    port = 20000 + getpid() % 20000;
    if (sh("printf '%%s\\n' '" TOKEN "' > token && chmod 600 token") != 0)
        return -1;
    daemon_pid = start_daemon(NULL, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        waitpid(daemon_pid, NULL, 0);
    }
    return scratch_teardown();
}

static void unix_socket_private(void **state)
{
    char answer[4096];
    struct stat st;
    (void)state;

    assert_int_equal(stat(sock_path(), &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(get("/machines", answer, sizeof(answer)), 200);
    assert_non_null(strstr(answer, "\r\n\r\n[]"));
    assert_null(strcasestr(answer, "Access-Control")); /* no CORS */
    assert_int_equal(get("/nothing", answer, sizeof(answer)), 404);
    assert_non_null(strstr(answer, "\"code\":\"no_route\""));
}

/* Another user reaching the socket (opened up, as a socket passed on
 * would be) gets 403. */
static void other_user_refused(void **state)
{
    int status;
    pid_t pid;
    (void)state;

    if (geteuid() != 0)
        skip();
    chmod(dir, 0755);
    chmod(in_dir("run"), 0755);
    chmod(in_dir("run/smolvm"), 0755);
    chmod(sock_path(), 0666);
    pid = fork();
    if (pid == 0) {
        char answer[4096];
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(3);
        int code = get("/machines", answer, sizeof(answer));
        _exit(code == 403 && strstr(answer, "\"code\":\"forbidden\"") ? 0 : code == 200 ? 1 : 2);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    chmod(sock_path(), 0600);
    chmod(in_dir("run/smolvm"), 0700);
    chmod(in_dir("run"), 0700);
    chmod(dir, 0700);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static int tcp_get(const char *auth_header, char *out, size_t size)
{
    char req[512];
    snprintf(req, sizeof(req), "GET /machines HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n",
             auth_header);
    return exchange(tcp_connect(), req, out, size);
}

static void tcp_needs_the_token(void **state)
{
    char answer[4096];
    (void)state;

    assert_int_equal(tcp_get("", answer, sizeof(answer)), 401);
    assert_non_null(strstr(answer, "\"code\":\"unauthorized\""));
    assert_int_equal(tcp_get("Authorization: Bearer wrong\r\n", answer, sizeof(answer)), 401);
    assert_int_equal(tcp_get("Authorization: Bearer " TOKEN "x\r\n", answer, sizeof(answer)), 401);
    assert_int_equal(tcp_get("Authorization: Bearer 0123456789abcdef-tokeN\r\n", answer,
                             sizeof(answer)), 401);
    assert_int_equal(tcp_get("Authorization: Basic " TOKEN "\r\n", answer, sizeof(answer)), 401);
    assert_int_equal(tcp_get("Authorization: Bearer " TOKEN "\r\n", answer, sizeof(answer)), 200);
}

/* What the daemon refuses to start with: exit 2 for the command line,
 * 1 for a token file others can read or a non-loopback address. */
static void bad_setups_refused(void **state)
{
    (void)state;
    assert_int_equal(sh("%s --listen 127.0.0.1:1 2>err; test $? = 2", SMOLVM_SERVE), 0);
    assert_int_equal(sh("%s --bogus 2>err; test $? = 2", SMOLVM_SERVE), 0);
    assert_int_equal(sh("cp token open-token && chmod 644 open-token && "
                        "%s --socket %s --listen 127.0.0.1:1 --token-file open-token 2>err; "
                        "test $? = 1 && grep -q 'chmod 600' err", SMOLVM_SERVE, in_dir("s2")), 0);
    assert_int_equal(sh("%s --socket %s --listen 0.0.0.0:1 --token-file token 2>err; "
                        "test $? = 1 && grep -q allow-remote err", SMOLVM_SERVE, in_dir("s3")), 0);
    /* a file that is not a socket is never replaced */
    assert_int_equal(sh("echo mine > notasocket && timeout 5 %s --socket %s 2>err; test $? = 1 && "
                        "grep -q 'not a socket' err && grep -q mine notasocket",
                        SMOLVM_SERVE, in_dir("notasocket")), 0);
    /* a second daemon on a live socket */
    assert_int_equal(sh("%s 2>err; test $? = 1 && grep -q 'answers there already' err",
                        SMOLVM_SERVE), 0);
}

static void huge_body_refused_unread(void **state)
{
    char answer[4096];
    (void)state;

    /* Refused from its Content-Length: the body is never sent. */
    assert_int_equal(exchange(unix_connect(sock_path()),
                              "POST /machines HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
                              "Content-Type: application/json\r\n\r\n",
                              answer, sizeof(answer)), 413);
    assert_non_null(strstr(answer, "\"code\":\"too_large\""));
    /* Chunked, so no length up front: refused once it passes the limit. */
    int fd = unix_connect(sock_path());
    const char *head = "POST /machines HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "Connection: close\r\n\r\n";
    char chunk[8192 + 16];
    assert_true(send(fd, head, strlen(head), MSG_NOSIGNAL) > 0);
    memset(chunk, ' ', sizeof(chunk));
    memcpy(chunk, "2000\r\n", 6);
    memcpy(chunk + 6 + 8192, "\r\n", 2);
    for (int i = 0; i < 10; i++)
        if (send(fd, chunk, 6 + 8192 + 2, MSG_NOSIGNAL) < 0)
            break;
    assert_int_equal(exchange(fd, "0\r\n\r\n", answer, sizeof(answer)), 413);
}

struct client {
    int status;
};

static void *lister(void *opaque)
{
    struct client *c = opaque;
    char answer[4096];
    c->status = get("/machines", answer, sizeof(answer));
    return NULL;
}

/* A client that sends half a request holds only its own connection: 50
 * others are served meanwhile, and it is cut off after the time limit. */
static void slow_client_blocks_nobody(void **state)
{
    struct client clients[50];
    pthread_t threads[50];
    char buf[4096];
    int slow = unix_connect(sock_path());
    double t0;
    (void)state;

    assert_true(slow >= 0);
    assert_true(send(slow, "POST /machines HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"na",
                     61, MSG_NOSIGNAL) > 0);
    t0 = now_s();
    for (int i = 0; i < 50; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, lister, &clients[i]), 0);
    for (int i = 0; i < 50; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(clients[i].status, 200);
    }
    assert_true(now_s() - t0 < 5);
    /* cut off: the daemon closes it (with or without an answer) */
    struct pollfd p = {.fd = slow, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 15000), 1);
    (void)!read(slow, buf, sizeof(buf));
    assert_true(now_s() - t0 < 14);
    close(slow);
}

/* Every response to a run of requests (tests/api/openapi_check.py: good
 * and bad bodies, a fake running VM with the guest agent run on the host
 * for exec and files, errors of every kind) validates against
 * docs/openapi.yaml. */
static void responses_match_openapi(void **state)
{
    char agent[4096];
    (void)state;
    if (system("python3 -c 'import yaml' 2>/dev/null") != 0)
        skip(); /* tools/deps.sh installs python3-yaml (and python3-jsonschema) */
    assert_int_equal(scratch_find_smolvm(agent, sizeof(agent)), 0);
    assert_int_equal(sh("SMOLVM_AGENT=%s-agent python3 %s/tests/api/openapi_check.py live %s",
                        agent, SMOLVM_SOURCE_ROOT, sock_path()), 0);
}

/* kill -9 leaves the socket file behind: the next daemon replaces it. */
static void restarted_after_kill(void **state)
{
    char answer[4096];
    (void)state;

    kill(daemon_pid, SIGKILL);
    waitpid(daemon_pid, NULL, 0);
    daemon_pid = -1;
    assert_int_equal(access(sock_path(), F_OK), 0);
    assert_int_equal(get("/machines", answer, sizeof(answer)), 0);
    daemon_pid = start_daemon(NULL, NULL);
    assert_int_equal(get("/machines", answer, sizeof(answer)), 200);
}

/* ---- the web console ---- */

static int tcp_request(const char *path, const char *headers, char *out, size_t size)
{
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sConnection: close\r\n\r\n",
             path, port, headers);
    return exchange(tcp_connect(), req, out, size);
}

/* The page and xterm.js's files, only with the token (in the URL once: the
 * answer sets it as a cookie); one line saying how to get xterm.js when it
 * is not there. */
static void web_page_and_token(void **state)
{
    char answer[65536];
    (void)state;

    assert_int_equal(sh("rm -rf xterm"), 0);
    assert_int_equal(tcp_request("/?token=" TOKEN, "", answer, sizeof(answer)), 503);
    assert_non_null(strstr(answer, "\r\n\r\nsmolvm serve: the web console needs xterm.js: run "
                                   "tools/fetch-xterm.sh"));
    assert_int_equal(strchr(strstr(answer, "\r\n\r\n") + 4, '\n')[1], 0); /* one line */
    assert_int_equal(sh("mkdir -p xterm/lib xterm/css && echo '/* fake xterm */' > xterm/lib/xterm.js && "
                        "echo '.xterm{}' > xterm/css/xterm.css"), 0);
    assert_int_equal(tcp_request("/", "", answer, sizeof(answer)), 401);
    assert_int_equal(tcp_request("/?token=wrong", "", answer, sizeof(answer)), 401);
    assert_int_equal(tcp_request("/?token=" TOKEN, "", answer, sizeof(answer)), 200);
    assert_non_null(strstr(answer, "Set-Cookie: smolvm_token=" TOKEN "; HttpOnly; SameSite=Strict"));
    assert_non_null(strstr(answer, "Content-Type: text/html"));
    assert_non_null(strstr(answer, "X-Frame-Options: DENY"));
    assert_non_null(strstr(answer, "Referrer-Policy: no-referrer"));
    assert_non_null(strstr(answer, "new Terminal("));
    assert_null(strstr(answer, "Access-Control-Allow-Origin"));
    assert_int_equal(tcp_request("/static/xterm.js", "Cookie: smolvm_token=" TOKEN "\r\n", answer,
                                 sizeof(answer)), 200);
    assert_non_null(strstr(answer, "/* fake xterm */"));
    assert_non_null(strstr(answer, "Content-Type: text/javascript"));
    assert_int_equal(tcp_request("/static/xterm.css", "Cookie: smolvm_token=x" TOKEN "\r\n", answer,
                                 sizeof(answer)), 401);
    assert_int_equal(tcp_request("/static/other.js", "Cookie: smolvm_token=" TOKEN "\r\n", answer,
                                 sizeof(answer)), 404);
}

static json_t *console_vm(void *opaque, const char *command, json_t *req)
{
    (void)opaque;
    (void)req;
    if (strcmp(command, "status") != 0)
        return control_error("cannot %s", command);
    return json_pack("{s:b,s:s,s:s}", "ok", 1, "name", "wsvm", "state", "running");
}

static volatile bool console_vm_stop;
static void *console_vm_loop(void *opaque)
{
    serve_control_until(opaque, &console_vm_stop);
    return NULL;
}

/* Reads exactly n bytes within 5 s. */
static bool read_exactly(int fd, uint8_t *buf, size_t n)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (size_t got = 0; got < n;) {
        ssize_t r;
        if (poll(&p, 1, 5000) != 1 || (r = read(fd, buf + got, n - got)) <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* One server frame (unmasked, under 64 KiB): its first byte, payload in out. */
static int read_frame(int fd, uint8_t *out, size_t *len)
{
    uint8_t h[4];
    if (!read_exactly(fd, h, 2))
        return -1;
    assert_int_equal(h[1] & 0x80, 0);
    *len = h[1] & 0x7f;
    if (*len == 126) {
        if (!read_exactly(fd, h + 2, 2))
            return -1;
        *len = (size_t)h[2] << 8 | h[3];
    }
    assert_true(*len < 65536);
    return read_exactly(fd, out, *len) ? h[0] : -1;
}

/* A WebSocket handshake for NAME's console with extra headers; the
 * connection, after the 101 (else -1 and the status in *status). */
static int console_connect(const char *headers, int *status)
{
    char req[1024], answer[4096] = "";
    size_t len = 0;
    int fd = tcp_connect();

    snprintf(req, sizeof(req),
             "GET /machines/wsvm/console HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\nCookie: smolvm_token=" TOKEN "\r\n%s\r\n", port, headers);
    assert_true(fd >= 0);
    assert_true(send(fd, req, strlen(req), MSG_NOSIGNAL) > 0);
    while (!strstr(answer, "\r\n\r\n") && len < sizeof(answer) - 1) { /* byte by byte: no frame taken */
        if (!read_exactly(fd, (uint8_t *)answer + len, 1))
            break;
        answer[++len] = 0;
    }
    *status = 0;
    sscanf(answer, "HTTP/1.1 %d", status);
    if (*status != 101) {
        close(fd);
        return -1;
    }
    assert_non_null(strstr(answer, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    /* What the page sends once open: an empty binary frame (masked). */
    return fd;
}

/* The stand-in VM's console socket, RUNTIME/NAME.console, listening. */
static int console_socket(const char *name)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/smolvm/%s.console", in_dir("run"), name);
    unlink(addr.sun_path);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

/* A running VM's console over a WebSocket: its log so far, then what it
 * writes; what the page types (text and binary messages) reaches the VM's
 * console socket; a ping answered; an unmasked frame closes with 1002;
 * another origin's page and a request that is no handshake refused. */
static void console_websocket(void **state)
{
    struct control *c;
    pthread_t t;
    uint8_t frame[65536];
    size_t len;
    int fd, status;
    (void)state;

    assert_int_equal(sh("printf 'guest says hello\\r\\n' > run/smolvm/wsvm.log"), 0);
    assert_int_equal(control_open("wsvm", console_vm, NULL, &c), 0);
    int listener = console_socket("wsvm"), typed;
    uint8_t got[16];
    console_vm_stop = false;
    assert_int_equal(pthread_create(&t, NULL, console_vm_loop, c), 0);

    char origin[128];
    snprintf(origin, sizeof(origin), "Origin: http://127.0.0.1:%d\r\n", port);
    fd = console_connect(origin, &status);
    assert_int_equal(status, 101);
    assert_int_equal(read_frame(fd, frame, &len), 0x82);
    frame[len] = 0;
    assert_string_equal((char *)frame, "guest says hello\r\n");
    assert_int_equal(sh("printf 'login: ' >> run/smolvm/wsvm.log"), 0);
    assert_int_equal(read_frame(fd, frame, &len), 0x82);
    assert_int_equal(len, 7);
    assert_memory_equal(frame, "login: ", 7);
    /* Typed: "ls\r" as text, "\x03" as binary (masked 0x01020304). */
    uint8_t text[] = {0x81, 0x83, 1, 2, 3, 4, 'l' ^ 1, 's' ^ 2, '\r' ^ 3};
    uint8_t binary[] = {0x82, 0x81, 1, 2, 3, 4, 0x03 ^ 1};
    assert_int_equal(send(fd, text, sizeof(text), MSG_NOSIGNAL), sizeof(text));
    assert_int_equal(send(fd, binary, sizeof(binary), MSG_NOSIGNAL), sizeof(binary));
    typed = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    assert_true(typed >= 0);
    assert_true(read_exactly(typed, got, 4));
    assert_memory_equal(got, "ls\r\x03", 4);
    /* A masked ping "hi" (mask 0x01020304). */
    uint8_t ping[] = {0x89, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2};
    assert_int_equal(send(fd, ping, sizeof(ping), MSG_NOSIGNAL), sizeof(ping));
    assert_int_equal(read_frame(fd, frame, &len), 0x8a);
    assert_int_equal(len, 2);
    assert_memory_equal(frame, "hi", 2);
    /* An unmasked frame: closed with 1002, then the connection. */
    uint8_t unmasked[] = {0x81, 0x01, 'x'};
    assert_int_equal(send(fd, unmasked, sizeof(unmasked), MSG_NOSIGNAL), sizeof(unmasked));
    assert_int_equal(read_frame(fd, frame, &len), 0x88);
    assert_int_equal(len, 2);
    assert_int_equal(frame[0] << 8 | frame[1], 1002);
    assert_false(read_exactly(fd, frame, 1));
    close(fd);
    assert_false(read_exactly(typed, got, 1)); /* the session's input ended with it */
    close(typed);
    close(listener);

    assert_int_equal(console_connect("Origin: http://evil.example\r\n", &status), -1);
    assert_int_equal(status, 403);
    char req[512], answer[4096];
    assert_int_equal(tcp_request("/machines/wsvm/console", "Cookie: smolvm_token=" TOKEN "\r\n",
                                 answer, sizeof(answer)), 400);
    snprintf(req, sizeof(req), "Cookie: smolvm_token=%s\r\n", "wrong-token-wrong");
    assert_int_equal(tcp_request("/machines/wsvm/console", req, answer, sizeof(answer)), 401);

    /* The VM ends: the console closes with 1000. */
    fd = console_connect("", &status);
    assert_int_equal(status, 101);
    assert_int_equal(read_frame(fd, frame, &len), 0x82);
    console_vm_stop = true;
    pthread_join(t, NULL);
    control_close(c);
    while (read_frame(fd, frame, &len) == 0x82)
        ;
    assert_int_equal(frame[0] << 8 | frame[1], 1000);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unix_socket_private),
        cmocka_unit_test(other_user_refused),
        cmocka_unit_test(tcp_needs_the_token),
        cmocka_unit_test(bad_setups_refused),
        cmocka_unit_test(huge_body_refused_unread),
        cmocka_unit_test(slow_client_blocks_nobody),
        cmocka_unit_test(web_page_and_token),
        cmocka_unit_test(console_websocket),
        cmocka_unit_test(responses_match_openapi),
        cmocka_unit_test(restarted_after_kill),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
