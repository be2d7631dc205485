/* The control socket as another local process sees it: 0600 in a 0700
 * folder, other users refused, a slow client cut off by one deadline for
 * the whole request; the runtime folders tried in order; a read-only home
 * replaced by a runtime folder; temporary files never written through a
 * planted link. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/control.h"
#include "util/file.h"
#include "util/paths.h"

#include "scratch.h"

static int handled;

static struct control *noting; /* the VM whose "rounds" command sends notes */
static struct control *linking; /* the VM whose "link" command takes a passed fd */
static int link_taken = -2;     /* what control_take_fd() gave "link" */

static json_t *handler(void *opaque, const char *command, json_t *req)
{
    (void)opaque;
    (void)req;
    handled++;
    if (strcmp(command, "rounds") == 0 && noting) {
        for (int i = 1; i <= 3; i++)
            control_note(noting, json_pack("{s:i}", "round", i));
        return json_pack("{s:b,s:i}", "ok", 1, "rounds", 3);
    }
    if (strcmp(command, "link") == 0 && linking) {
        /* As migrate does: takes the link and writes on it. */
        link_taken = control_take_fd(linking);
        if (link_taken >= 0) {
            assert_int_equal(write(link_taken, "via the VM", 10), 10);
            close(link_taken);
        }
        return control_ok();
    }
    return strcmp(command, "status") == 0 ? json_pack("{s:b,s:s}", "ok", 1, "state", "running")
                                          : control_error("unknown command '%s'", command);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Serves the next connection on c (the VM's loop, in short). */
static void serve_one(struct control *c)
{
    struct pollfd p = {.fd = control_listen_fd(c), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), 1);
    control_accept(c);
}

static int raw_connect(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void fresh_runtime(const char *name)
{
    char *run = in_dir(name);
    mkdir(run, 0700);
    setenv("XDG_RUNTIME_DIR", run, 1);
    setenv("TMPDIR", in_dir("tmp"), 1);
    mkdir(in_dir("tmp"), 0700);
}

static void socket_is_private(void **state)
{
    struct control *c;
    struct stat st;
    (void)state;

    fresh_runtime("run-mode");
    umask(0); /* what a careless parent could leave us */
    assert_int_equal(control_open("vm1", handler, NULL, &c), 0);
    umask(022);
    assert_int_equal(stat(in_dir("run-mode/smolvm/vm1.sock"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(in_dir("run-mode/smolvm"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    control_close(c);
}

struct client {
    const char *name;
    json_t *answer;
    int r;
};

static void *ask_status(void *opaque)
{
    struct client *cl = opaque;
    json_t *req = json_pack("{s:s}", "command", "status");
    cl->r = control_request(cl->name, req, &cl->answer);
    json_decref(req);
    return NULL;
}

static void request_round_trip(void **state)
{
    struct control *c;
    struct client cl = {.name = "vm2"};
    pthread_t t;
    (void)state;

    fresh_runtime("run-trip");
    assert_int_equal(control_open("vm2", handler, NULL, &c), 0);
    assert_int_equal(pthread_create(&t, NULL, ask_status, &cl), 0);
    serve_one(c);
    pthread_join(t, NULL);
    assert_int_equal(cl.r, 0);
    assert_string_equal(json_string_value(json_object_get(cl.answer, "state")), "running");
    json_decref(cl.answer);
    control_close(c);
}

struct noted {
    int rounds[8], n, r;
    json_t *answer;
};

static void take_note(void *opaque, json_t *note)
{
    struct noted *d = opaque;
    if (d->n < 8)
        d->rounds[d->n++] = (int)json_integer_value(json_object_get(note, "round"));
}

static void *ask_rounds(void *opaque)
{
    struct noted *d = opaque;
    json_t *req = json_pack("{s:s}", "command", "rounds");
    d->r = control_request_notes("vm7", req, &d->answer, CONTROL_WORK_MS, NULL, take_note, d);
    json_decref(req);
    return NULL;
}

/* Notes (a migration's rounds, live) reach the client in order, each as
 * it is sent, and the answer after them is still the answer. */
static void notes_come_before_the_answer(void **state)
{
    struct noted d = {0};
    pthread_t t;
    (void)state;

    fresh_runtime("run-notes");
    assert_int_equal(control_open("vm7", handler, NULL, &noting), 0);
    assert_int_equal(pthread_create(&t, NULL, ask_rounds, &d), 0);
    serve_one(noting);
    pthread_join(t, NULL);
    assert_int_equal(d.r, 0);
    assert_int_equal(d.n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(d.rounds[i], i + 1);
    assert_true(json_is_true(json_object_get(d.answer, "ok")));
    assert_int_equal(json_integer_value(json_object_get(d.answer, "rounds")), 3);
    json_decref(d.answer);
    control_close(noting);
    noting = NULL;
}

/* A client sending a byte every 0.3 s (each read well within any per-read
 * timeout) is cut off when the request's 2 s are up. */
static void *drip(void *opaque)
{
    int fd = raw_connect(opaque);
    for (int i = 0; fd >= 0 && i < 30; i++) {
        if (send(fd, "{", 1, MSG_NOSIGNAL) != 1)
            break;
        usleep(300000);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void slow_client_is_cut_off(void **state)
{
    struct control *c;
    pthread_t t;
    double t0;
    (void)state;

    fresh_runtime("run-drip");
    assert_int_equal(control_open("vm3", handler, NULL, &c), 0);
    assert_int_equal(pthread_create(&t, NULL, drip, in_dir("run-drip/smolvm/vm3.sock")), 0);
    t0 = now_s();
    serve_one(c);
    assert_true(now_s() - t0 < 3);
    pthread_join(t, NULL);
    control_close(c);
}

/* Nobody answers (a VM busy with a long request): the client gives up. */
static void client_gives_up_on_a_silent_vm(void **state)
{
    struct control *c;
    json_t *answer = NULL, *req = json_pack("{s:s}", "command", "status");
    double t0;
    (void)state;

    fresh_runtime("run-silent");
    assert_int_equal(control_open("vm4", handler, NULL, &c), 0);
    t0 = now_s();
    assert_int_equal(control_request("vm4", req, &answer), -ETIMEDOUT);
    assert_true(now_s() - t0 < 8);
    json_decref(req);
    control_close(c);
}

/* Another user reaching the socket (the folder and socket opened up, as a
 * socket passed on would be) is refused by its credentials. */
static void other_user_is_refused(void **state)
{
    struct control *c;
    char *sock;
    int status, before = handled;
    pid_t pid;
    (void)state;

    if (geteuid() != 0)
        skip();
    fresh_runtime("run-uid");
    assert_int_equal(control_open("vm5", handler, NULL, &c), 0);
    sock = in_dir("run-uid/smolvm/vm5.sock");
    chmod(dir, 0755);
    chmod(in_dir("run-uid"), 0755);
    chmod(in_dir("run-uid/smolvm"), 0755);
    chmod(sock, 0666);
    pid = fork();
    if (pid == 0) {
        char buf[64];
        int fd;
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(3);
        fd = raw_connect(sock);
        if (fd < 0)
            _exit(4);
        if (send(fd, "{\"command\":\"status\"}\n", 21, MSG_NOSIGNAL) < 0)
            _exit(0); /* already closed: refused */
        _exit(read(fd, buf, sizeof(buf)) > 0 ? 5 : 0); /* no answer at all */
    }
    serve_one(c);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(handled, before);
    chmod(dir, 0700);
    control_close(c);
}

/* Reads fd to its end into buf: false when the peer is still open after
 * 5 s (a copy of it left open somewhere). */
static bool read_to_end(int fd, char *buf, size_t size)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    size_t len = 0;
    ssize_t n = 1;

    while (n > 0 && len + 1 < size && poll(&p, 1, 5000) == 1)
        if ((n = read(fd, buf + len, size - 1 - len)) > 0)
            len += (size_t)n;
    buf[len] = 0;
    return n == 0;
}

struct passing {
    const char *command;
    int fd, r;
    json_t *answer;
};

static void *ask_passing(void *opaque)
{
    struct passing *p = opaque;
    json_t *req = json_pack("{s:s}", "command", p->command);
    p->r = control_request_passing("vm8", req, p->fd, &p->answer, CONTROL_WORK_MS, NULL, NULL,
                                   NULL);
    json_decref(req);
    return NULL;
}

/* migrate's link: one end of a socket pair passed with the request reaches
 * the handler, which writes on it; the client's copy is closed once sent,
 * so the other end sees the end of the link as soon as the VM closes it. */
static void passed_descriptor_reaches_the_handler(void **state)
{
    int pair[2];
    char got[64];
    pthread_t t;
    (void)state;

    fresh_runtime("run-pass");
    assert_int_equal(control_open("vm8", handler, NULL, &linking), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    struct passing p = {.command = "link", .fd = pair[0]};
    assert_int_equal(pthread_create(&t, NULL, ask_passing, &p), 0);
    serve_one(linking);
    pthread_join(t, NULL);
    assert_int_equal(p.r, 0);
    assert_true(json_is_true(json_object_get(p.answer, "ok")));
    assert_true(link_taken >= 0);
    assert_true(read_to_end(pair[1], got, sizeof(got)));
    assert_string_equal(got, "via the VM");
    json_decref(p.answer);
    /* Without one: the handler hears -1. */
    struct passing none = {.command = "link", .fd = -1};
    assert_int_equal(pthread_create(&t, NULL, ask_passing, &none), 0);
    serve_one(linking);
    pthread_join(t, NULL);
    assert_int_equal(none.r, 0);
    assert_int_equal(link_taken, -1);
    json_decref(none.answer);
    close(pair[1]);
    control_close(linking);
    linking = NULL;
}

/* A client passing descriptors the handler does not take, or more than
 * one, leaves none of them open in the VM: the peer of each sees its end. */
static void descriptors_not_taken_are_closed(void **state)
{
    int pairs[3][2], fds[3];
    char got[64];
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(fds))];
    } control;
    static char line[] = "{\"command\":\"link\"}\n";
    struct iovec iov = {.iov_base = line, .iov_len = sizeof(line) - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                         .msg_controllen = sizeof(control.space)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    (void)state;

    fresh_runtime("run-extra");
    assert_int_equal(control_open("vm9", handler, NULL, &linking), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[i]), 0);
        fds[i] = pairs[i][0];
    }
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(c), fds, sizeof(fds));
    int fd = raw_connect(in_dir("run-extra/smolvm/vm9.sock"));
    assert_true(fd >= 0);
    assert_int_equal(sendmsg(fd, &msg, MSG_NOSIGNAL), sizeof(line) - 1);
    for (int i = 0; i < 3; i++)
        close(pairs[i][0]);
    serve_one(linking);
    close(fd);
    assert_true(read_to_end(pairs[0][1], got, sizeof(got)));
    assert_string_equal(got, "via the VM"); /* the first, taken */
    for (int i = 1; i < 3; i++) {
        assert_true(read_to_end(pairs[i][1], got, sizeof(got))); /* not left open */
        close(pairs[i][1]);
    }
    close(pairs[0][1]);
    /* A status request passing one: not taken, closed with the answer. */
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    control_close(linking);
    assert_int_equal(control_open("vm8", handler, NULL, &linking), 0);
    pthread_t t;
    struct passing p = {.command = "status", .fd = pair[0]};
    assert_int_equal(pthread_create(&t, NULL, ask_passing, &p), 0);
    serve_one(linking);
    pthread_join(t, NULL);
    assert_int_equal(p.r, 0);
    assert_true(read_to_end(pair[1], got, sizeof(got)));
    json_decref(p.answer);
    close(pair[1]);
    control_close(linking);
    linking = NULL;
}

static void runtime_folders_in_order(void **state)
{
    char *d[PATHS_RUNTIME_MAX];
    int n;
    (void)state;

    n = paths_runtime_candidates("/run/user/7", "/var/tmp", 7, d);
    assert_int_equal(n, 2); /* $XDG_RUNTIME_DIR is /run/user/7: once */
    assert_string_equal(d[0], "/run/user/7/smolvm");
    assert_string_equal(d[1], "/var/tmp/smolvm-7");
    paths_free(d, n);
    n = paths_runtime_candidates("/x", "relative", 7, d);
    assert_int_equal(n, 3);
    assert_string_equal(d[0], "/x/smolvm");
    assert_string_equal(d[1], "/run/user/7/smolvm");
    assert_string_equal(d[2], "/tmp/smolvm-7");
    paths_free(d, n);
    n = paths_runtime_candidates(NULL, NULL, 7, d);
    assert_int_equal(n, 2);
    assert_string_equal(d[0], "/run/user/7/smolvm");
    paths_free(d, n);
}

/* paths_mkdirs: a folder whose own folder is there, and one with none of
 * its folders there, are made (each the user's only); one there already
 * is left as it is. */
static void folders_are_made_private(void **state)
{
    char one[160], deep[192], part[192];
    struct stat st;
    (void)state;

    snprintf(one, sizeof(one), "%s/made-one", dir);
    assert_int_equal(paths_mkdirs(one), 0);
    assert_int_equal(stat(one, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(chmod(one, 0750), 0);
    assert_int_equal(paths_mkdirs(one), 0); /* there: untouched */
    assert_int_equal(stat(one, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0750);
    snprintf(deep, sizeof(deep), "%s/made-a/b/c", dir);
    assert_int_equal(paths_mkdirs(deep), 0);
    for (const char *end = deep + strlen(dir) + 1; end; end = strchr(end + 1, '/')) {
        snprintf(part, sizeof(part), "%.*s", (int)(end - deep), deep);
        assert_int_equal(stat(part, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
    }
    assert_int_equal(stat(deep, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

/* A runtime folder where no socket can be made (here: its path too long
 * for a unix socket, as 9p or NFS refuse them): the next one is used, and
 * clients find the VM there. */
static void socket_falls_back_to_the_next_folder(void **state)
{
    struct control *c;
    struct client cl = {.name = "vm6"};
    char deep[200];
    pthread_t t;
    (void)state;

    snprintf(deep, sizeof(deep), "%s/%0120d", dir, 0);
    assert_int_equal(mkdir(deep, 0700), 0);
    setenv("XDG_RUNTIME_DIR", deep, 1);
    mkdir(in_dir("tmp6"), 0700);
    setenv("TMPDIR", in_dir("tmp6"), 1);
    assert_int_equal(control_open("vm6", handler, NULL, &c), 0);
    assert_int_equal(pthread_create(&t, NULL, ask_status, &cl), 0);
    serve_one(c);
    pthread_join(t, NULL);
    assert_int_equal(cl.r, 0);
    json_decref(cl.answer);
    control_close(c);
}

/* ~/.cache on a read-only file system: the cache goes to the runtime
 * folder instead (a child in its own mount namespace, as root). */
static void read_only_cache_falls_back(void **state)
{
    char *home = in_dir("rohome"), *run = in_dir("run-ro");
    int status;
    pid_t pid;
    (void)state;

    if (geteuid() != 0)
        skip();
    mkdir(home, 0700);
    mkdir(run, 0700);
    pid = fork();
    if (pid == 0) {
        char *cache, want[256];
        struct stat st;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", home, "tmpfs", MS_RDONLY, NULL) < 0)
            _exit(77);
        unsetenv("XDG_CACHE_HOME");
        setenv("HOME", home, 1);
        setenv("XDG_RUNTIME_DIR", run, 1);
        cache = paths_cache_dir("kernels");
        snprintf(want, sizeof(want), "%s/smolvm/cache/kernels", run);
        _exit(cache && strcmp(cache, want) == 0 && stat(cache, &st) == 0 && S_ISDIR(st.st_mode)
                  ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        skip();
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A symlink planted at save's temporary name is not written through. */
static void temporary_file_is_not_a_planted_link(void **state)
{
    char *victim = in_dir("victim"), tmp[300], *bundle = in_dir("out.smolmachine");
    struct stat st;
    (void)state;

    assert_int_equal(file_write_new(victim, "precious", 8), 0);
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d", bundle, (int)getpid());
    assert_int_equal(symlink(victim, tmp), 0);
    assert_true(file_create_exclusive(tmp, 0600) < 0);
    assert_true(file_replace(bundle, "new", 3) < 0);
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_size, 8);
    assert_int_equal(lstat(tmp, &st), 0);
    assert_true(S_ISLNK(st.st_mode)); /* left as it was */
    unlink(tmp);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return scratch_setup("control");
}

static int group_teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(socket_is_private),
        cmocka_unit_test(request_round_trip),
        cmocka_unit_test(notes_come_before_the_answer),
        cmocka_unit_test(slow_client_is_cut_off),
        cmocka_unit_test(client_gives_up_on_a_silent_vm),
        cmocka_unit_test(other_user_is_refused),
        cmocka_unit_test(passed_descriptor_reaches_the_handler),
        cmocka_unit_test(descriptors_not_taken_are_closed),
        cmocka_unit_test(runtime_folders_in_order),
        cmocka_unit_test(folders_are_made_private),
        cmocka_unit_test(socket_falls_back_to_the_next_folder),
        cmocka_unit_test(read_only_cache_falls_back),
        cmocka_unit_test(temporary_file_is_not_a_planted_link),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
