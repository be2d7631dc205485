/* smolvm-agent: the guest side of `smolvm exec` and `smolvm cp`. A small
 * static program the appliance init starts; it listens on vsock port
 * AGENT_PORT and serves each connection in a process of its own (so many
 * commands run at once), one request per connection, in the frames of
 * agent_proto.h (docs/agent-protocol.md).
 *
 * After a start from a bundle the host's connections are gone (the device
 * sends a transport reset, which ends the open connections): the listening
 * socket stays, so the agent answers the instant the VM runs again. Each
 * exec may carry the host's wall clock, which the agent applies when the
 * guest's is off by more than a second (a restored guest's clock is the
 * one of the moment it was saved). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "agent_proto.h"

#define MAX_ARGS 4096

static uint8_t frame[AGENT_FRAME_MAX + 1];

static void say(const char *fmt, const char *arg)
{
    fprintf(stderr, "smolvm-agent: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
}

static void send_error(int conn, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, arg, strerror(errno));
    agent_send(conn, AGENT_ERROR, msg, (uint32_t)strlen(msg));
}

static void send_number(int conn, uint8_t type, const char *key, long value)
{
    uint8_t payload[64];
    char text[24];
    uint32_t len = 0;
    snprintf(text, sizeof(text), "%ld", value);
    agent_field(payload, sizeof(payload), &len, key, text);
    agent_send(conn, type, payload, len);
}

/* ---- exec ---- */

struct exec_request {
    char *argv[MAX_ARGS + 1];
    char *envp[MAX_ARGS + 8];
    const char *cwd, *user;
    bool tty, has_stdin;
    struct winsize ws;
};

/* user: a name from /etc/passwd, or UID[:GID]. */
static int lookup_user(const char *user, uid_t *uid, gid_t *gid, char *home, size_t home_size)
{
    char line[512], *end;
    unsigned long v = strtoul(user, &end, 10);
    FILE *f;

    if (end != user && (*end == 0 || *end == ':')) {
        *uid = (uid_t)v;
        *gid = *end == ':' ? (gid_t)strtoul(end + 1, NULL, 10) : (gid_t)v;
        snprintf(home, home_size, "/");
        return 0;
    }
    f = fopen("/etc/passwd", "r");
    while (f && fgets(line, sizeof(line), f)) {
        char *fields[7] = {0}, *save = NULL, *p = line;
        int n = 0;
        line[strcspn(line, "\n")] = 0;
        for (char *t; n < 7 && (t = strsep(&p, ":"));)
            fields[n++] = t;
        (void)save;
        if (n >= 6 && strcmp(fields[0], user) == 0) {
            *uid = (uid_t)strtoul(fields[2], NULL, 10);
            *gid = (gid_t)strtoul(fields[3], NULL, 10);
            snprintf(home, home_size, "%s", fields[5]);
            fclose(f);
            return 0;
        }
    }
    if (f)
        fclose(f);
    errno = ENOENT;
    return -1;
}

static void set_clock(const char *text)
{
    struct timespec host = {0}, now;
    char *end;
    host.tv_sec = strtoll(text, &end, 10);
    if (*end == '.')
        host.tv_nsec = strtol(end + 1, NULL, 10) % 1000000000L;
    clock_gettime(CLOCK_REALTIME, &now);
    if (host.tv_sec > 0 && llabs((long long)(now.tv_sec - host.tv_sec)) > 1)
        clock_settime(CLOCK_REALTIME, &host);
}

static int parse_exec(uint8_t *payload, uint32_t len, struct exec_request *r)
{
    static char path[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    unsigned argc = 0, envc = 0;
    uint32_t at = 0;
    const char *f;

    memset(r, 0, sizeof(*r));
    r->envp[envc++] = path;
    while ((f = agent_next_field(payload, len, &at, NULL))) {
        const char *v = strchr(f, '=') ? strchr(f, '=') + 1 : "";
        if (strncmp(f, "arg=", 4) == 0 && argc < MAX_ARGS)
            r->argv[argc++] = (char *)v;
        else if (strncmp(f, "env=", 4) == 0 && envc < MAX_ARGS)
            r->envp[envc++] = (char *)v;
        else if (strncmp(f, "cwd=", 4) == 0)
            r->cwd = v;
        else if (strncmp(f, "user=", 5) == 0)
            r->user = v;
        else if (strncmp(f, "tty=", 4) == 0)
            r->tty = strcmp(v, "1") == 0;
        else if (strncmp(f, "stdin=", 6) == 0)
            r->has_stdin = strcmp(v, "1") == 0;
        else if (strncmp(f, "rows=", 5) == 0)
            r->ws.ws_row = (unsigned short)atoi(v);
        else if (strncmp(f, "cols=", 5) == 0)
            r->ws.ws_col = (unsigned short)atoi(v);
        else if (strncmp(f, "time=", 5) == 0)
            set_clock(v);
    }
    if (argc == 0) {
        errno = EINVAL;
        return -1;
    }
    if (r->tty && envc < MAX_ARGS)
        r->envp[envc++] = "TERM=xterm";
    return 0;
}

/* Has key=... in envp already (the user's wins over our defaults). */
static bool has_env(char **envp, const char *key)
{
    size_t k = strlen(key);
    for (; *envp; envp++)
        if (strncmp(*envp, key, k) == 0 && (*envp)[k] == '=')
            return true;
    return false;
}

/* In the child: becomes the command, or writes errno to report_fd. */
static void become(struct exec_request *r, int in, int out, int err, int report_fd)
{
    static char home_env[300];
    char home[256] = "/root";
    uid_t uid = 0;
    gid_t gid = 0;
    int e;

    setsid();
    if (r->tty)
        ioctl(in, TIOCSCTTY, 0);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    if (r->user && lookup_user(r->user, &uid, &gid, home, sizeof(home)) < 0)
        goto failed;
    if (!has_env(r->envp, "HOME")) {
        snprintf(home_env, sizeof(home_env), "HOME=%s", home);
        for (int i = 0; i < MAX_ARGS + 7; i++)
            if (!r->envp[i]) {
                r->envp[i] = home_env;
                break;
            }
    }
    if (r->user && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0))
        goto failed;
    if (r->cwd && chdir(r->cwd) < 0)
        goto failed;
    if (!r->cwd && chdir(home) < 0 && chdir("/") < 0)
        goto failed;
    signal(SIGPIPE, SIG_DFL);
    execvpe(r->argv[0], r->argv, r->envp);
failed:
    e = errno;
    agent_full_write(report_fd, &e, sizeof(e));
    _exit(127);
}

struct session {
    int conn, in, out, err; /* in: where stdin goes (-1 closed) */
    pid_t pid;
    uint8_t *pending;       /* stdin bytes the command has not taken */
    uint32_t pending_len, pending_off;
    bool stdin_eof;
};

static bool forward_output(struct session *s, int *fd, uint8_t type)
{
    static uint8_t buf[AGENT_CHUNK];
    ssize_t n = read(*fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0) { /* end of output (EIO: a pty whose command is gone) */
        close(*fd);
        if (s->in == *fd)
            s->in = -1;
        *fd = -1;
        return true;
    }
    return agent_send(s->conn, type, buf, (uint32_t)n) == 0;
}

static void close_stdin(struct session *s)
{
    if (s->in >= 0 && s->in != s->out)
        close(s->in);
    else if (s->in >= 0) /* a pty: end of input is ^D */
        (void)!write(s->in, "\x04", 1);
    if (s->in != s->out)
        s->in = -1;
    s->stdin_eof = true;
}

/* A frame from the client while the command runs; false when it is gone. */
static bool client_frame(struct session *s)
{
    uint8_t type;
    uint32_t len, at = 0;
    const char *v;

    if (agent_recv(s->conn, &type, frame, &len) <= 0)
        return false;
    switch (type) {
    case AGENT_STDIN:
        if (len == 0) {
            close_stdin(s);
        } else if (s->in >= 0 && !s->stdin_eof) {
            s->pending = frame;
            s->pending_len = len;
            s->pending_off = 0;
        }
        break;
    case AGENT_SIGNAL:
        if ((v = agent_next_field(frame, len, &at, "signal")))
            kill(-s->pid, atoi(v));
        break;
    case AGENT_WINSIZE:
        if (s->in >= 0 && s->in == s->out) {
            struct winsize ws = {0};
            if ((v = agent_next_field(frame, len, &at, "rows")))
                ws.ws_row = (unsigned short)atoi(v);
            at = 0;
            if ((v = agent_next_field(frame, len, &at, "cols")))
                ws.ws_col = (unsigned short)atoi(v);
            ioctl(s->out, TIOCSWINSZ, &ws);
        }
        break;
    default:
        break;
    }
    return true;
}

static void feed_stdin(struct session *s)
{
    ssize_t n = write(s->in, s->pending + s->pending_off, s->pending_len - s->pending_off);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) { /* the command closed its input: the rest is dropped */
        s->pending = NULL;
        return;
    }
    s->pending_off += (uint32_t)n;
    if (s->pending_off == s->pending_len)
        s->pending = NULL;
}

static void run_session(struct session *s)
{
    int status = 0;

    while (s->out >= 0 || s->err >= 0) {
        struct pollfd p[4];
        int n = 0, ci = -1, oi = -1, ei = -1, ii = -1;
        if (!s->pending)
            ci = n, p[n++] = (struct pollfd){.fd = s->conn, .events = POLLIN};
        if (s->out >= 0)
            oi = n, p[n++] = (struct pollfd){.fd = s->out, .events = POLLIN};
        if (s->err >= 0)
            ei = n, p[n++] = (struct pollfd){.fd = s->err, .events = POLLIN};
        if (s->pending && s->in >= 0)
            ii = n, p[n++] = (struct pollfd){.fd = s->in, .events = POLLOUT};
        if (poll(p, (nfds_t)n, -1) < 0)
            continue;
        if (ci >= 0 && p[ci].revents && !client_frame(s))
            goto client_gone;
        if (ii >= 0 && p[ii].revents)
            feed_stdin(s);
        if (oi >= 0 && p[oi].revents && !forward_output(s, &s->out, AGENT_STDOUT))
            goto client_gone;
        if (ei >= 0 && p[ei].revents && !forward_output(s, &s->err, AGENT_STDERR))
            goto client_gone;
    }
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFSIGNALED(status))
        send_number(s->conn, AGENT_EXIT, "signal", WTERMSIG(status));
    else
        send_number(s->conn, AGENT_EXIT, "exit", WEXITSTATUS(status));
    return;
client_gone: /* nobody to read its output: the command goes too */
    kill(-s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
}

/* The command's ends: pipes, or a pty for all three. */
static int open_ends(const struct exec_request *r, int child[3], int parent[3])
{
    int p[3][2];

    if (r->tty) {
        int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0)
            return -1;
        int slave = open(ptsname(m), O_RDWR | O_NOCTTY);
        if (slave < 0)
            return -1;
        if (r->ws.ws_row && r->ws.ws_col)
            ioctl(m, TIOCSWINSZ, &r->ws);
        child[0] = child[1] = child[2] = slave;
        parent[0] = parent[1] = m;
        parent[2] = -1;
        return 0;
    }
    for (int i = 0; i < 3; i++)
        if (pipe2(p[i], O_CLOEXEC) < 0)
            return -1;
    if (!r->has_stdin) { /* /dev/null, as docker exec without -i */
        close(p[0][0]);
        close(p[0][1]);
        p[0][0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        p[0][1] = -1;
    }
    child[0] = p[0][0], parent[0] = p[0][1];
    child[1] = p[1][1], parent[1] = p[1][0];
    child[2] = p[2][1], parent[2] = p[2][0];
    return 0;
}

static void do_exec(int conn, uint8_t *payload, uint32_t len)
{
    static struct exec_request r;
    int child[3], parent[3], report[2], e = 0;
    struct session s = {.conn = conn};

    if (parse_exec(payload, len, &r) < 0) {
        send_error(conn, "exec request without a command%s", "");
        return;
    }
    if (open_ends(&r, child, parent) < 0 || pipe2(report, O_CLOEXEC) < 0) {
        send_error(conn, "cannot set up the command's input and output%s: %s", "");
        return;
    }
    s.pid = fork();
    if (s.pid == 0) {
        signal(SIGCHLD, SIG_DFL);
        become(&r, child[0], child[1], child[2], report[1]);
    }
    close(report[1]);
    for (int i = 0; i < 3; i++)
        if (child[i] >= 0 && (i == 0 || child[i] != child[i - 1]))
            close(child[i]);
    if (s.pid < 0 || agent_full_read(report[0], &e, sizeof(e)) == 1) {
        if (s.pid > 0)
            waitpid(s.pid, NULL, 0);
        errno = s.pid < 0 ? errno : e;
        send_error(conn, "cannot run '%s': %s", r.argv[0]);
        send_number(conn, AGENT_EXIT, "exit", e == ENOENT ? 127 : 126);
        return;
    }
    close(report[0]);
    s.in = parent[0];
    s.out = parent[1];
    s.err = parent[2];
    if (s.in >= 0)
        fcntl(s.in, F_SETFL, fcntl(s.in, F_GETFL) | O_NONBLOCK);
    run_session(&s);
}

/* ---- files ---- */

/* mode= and mtime= of a request or entry. */
static void file_attrs(const uint8_t *payload, uint32_t len, mode_t *mode,
                       struct timespec times[2])
{
    uint32_t at = 0;
    const char *v;

    times[0] = (struct timespec){0, UTIME_OMIT};
    times[1] = (struct timespec){0, UTIME_OMIT};
    if ((v = agent_next_field(payload, len, &at, "mode")))
        *mode = (mode_t)strtoul(v, NULL, 8) & 07777;
    at = 0;
    if ((v = agent_next_field(payload, len, &at, "mtime")))
        times[1] = (struct timespec){strtoll(v, NULL, 10), 0};
}

/* The DATA frames that follow, into path: under a temporary name, synced,
 * renamed. 0, or -1 with the error sent (or the client gone). */
static int receive_file(int conn, const char *path, mode_t mode, const struct timespec times[2])
{
    char tmp[4200];
    uint8_t type;
    uint32_t len;
    int fd;

    snprintf(tmp, sizeof(tmp), "%s.smolvm-put-%d", path, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        send_error(conn, "cannot write '%s': %s", path);
        return -1;
    }
    for (;;) {
        if (agent_recv(conn, &type, frame, &len) <= 0 || type != AGENT_DATA) {
            unlink(tmp); /* the client went away: nothing half-written stays */
            close(fd);
            return -1;
        }
        if (len == 0)
            break;
        if (agent_full_write(fd, frame, len) < 0) {
            send_error(conn, "cannot write '%s': %s", path);
            unlink(tmp);
            close(fd);
            return -1;
        }
    }
    if (fchmod(fd, mode) < 0 || futimens(fd, times) < 0 || fsync(fd) < 0 || close(fd) < 0 ||
        rename(tmp, path) < 0) {
        send_error(conn, "cannot write '%s': %s", path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* A tree entry's path: relative, no "..": it stays under the root. */
static bool inside(const char *rel)
{
    if (rel[0] == '/' || rel[0] == 0)
        return false;
    for (const char *p = rel; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
        if (strncmp(p, "..", 2) == 0 && (p[2] == '/' || p[2] == 0))
            return false;
    return true;
}

struct dir_attrs {
    char *path;
    mode_t mode;
    struct timespec times[2];
};

/* A folder's entries ('N' frames, each file's DATA after it, an empty 'N'
 * at the end) under root. Folders get their mode and time last (their
 * entries change their time). */
static int receive_tree(int conn, const char *root)
{
    struct dir_attrs *dirs = NULL;
    size_t ndirs = 0;
    int r = 0;

    for (;;) {
        char full[4096];
        struct timespec times[2];
        mode_t mode = 0755;
        uint8_t type;
        uint32_t len, at = 0;
        const char *rel, *kind, *target;

        if (agent_recv(conn, &type, frame, &len) <= 0 || type != 'N') {
            r = -1;
            break;
        }
        if (len == 0)
            break;
        rel = agent_next_field(frame, len, &at, "path");
        at = 0;
        kind = agent_next_field(frame, len, &at, "type");
        at = 0;
        target = agent_next_field(frame, len, &at, "target");
        file_attrs(frame, len, &mode, times);
        if (!rel || !kind || !inside(rel) ||
            (size_t)snprintf(full, sizeof(full), "%s/%s", root, rel) >= sizeof(full)) {
            errno = EINVAL;
            send_error(conn, "bad folder entry '%s': %s", rel ? rel : "");
            r = -1;
            break;
        }
        if (kind[0] == 'f') {
            if ((r = receive_file(conn, full, mode, times)) < 0)
                break;
        } else if (kind[0] == 'd') {
            struct dir_attrs *more = realloc(dirs, (ndirs + 1) * sizeof(*dirs));
            if (more)
                dirs = more;
            if (!more || (mkdir(full, 0700) < 0 && errno != EEXIST)) {
                send_error(conn, "cannot make '%s': %s", full);
                r = -1;
                break;
            }
            dirs[ndirs++] = (struct dir_attrs){strdup(full), mode, {times[0], times[1]}};
        } else if (kind[0] == 'l' && target) {
            unlink(full);
            if (symlink(target, full) < 0) {
                send_error(conn, "cannot make '%s': %s", full);
                r = -1;
                break;
            }
            utimensat(AT_FDCWD, full, times, AT_SYMLINK_NOFOLLOW);
        }
    }
    while (ndirs > 0) {
        struct dir_attrs *d = &dirs[--ndirs];
        if (r == 0 && d->path && (chmod(d->path, d->mode) < 0 ||
                                  utimensat(AT_FDCWD, d->path, d->times, 0) < 0)) {
            send_error(conn, "cannot set up '%s': %s", d->path);
            r = -1;
        }
        free(d->path);
    }
    free(dirs);
    return r;
}

static void do_put(int conn, uint8_t *payload, uint32_t len)
{
    char path[4096];
    const char *p, *name, *tree;
    uint32_t at = 0;
    mode_t mode = 0644;
    struct timespec times[2];
    struct stat st;
    int r;

    if (!(p = agent_next_field(payload, len, &at, "path"))) {
        send_error(conn, "put request without a path%s", "");
        return;
    }
    at = 0;
    name = agent_next_field(payload, len, &at, "name");
    at = 0;
    tree = agent_next_field(payload, len, &at, "tree");
    snprintf(path, sizeof(path), "%s", p);
    /* Into a folder: under the name it had on the host (cp's rule). */
    if (name && stat(path, &st) == 0 && S_ISDIR(st.st_mode) && !strchr(name, '/'))
        snprintf(path, sizeof(path), "%s/%s", p, name);
    file_attrs(payload, len, &mode, times);
    if (tree && strcmp(tree, "1") == 0) {
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            send_error(conn, "cannot make '%s': %s", path);
            return;
        }
        r = receive_tree(conn, path);
    } else {
        r = receive_file(conn, path, mode, times);
    }
    if (r == 0)
        agent_send(conn, AGENT_OK, NULL, 0);
}

/* fd's bytes as DATA frames, then the empty one: 0, or -1 (error sent, or
 * the client gone). */
static int send_data(int conn, int fd, const char *path)
{
    static uint8_t buf[AGENT_CHUNK];
    for (;;) {
        ssize_t got = read(fd, buf, sizeof(buf));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            send_error(conn, "cannot read '%s': %s", path);
            return -1;
        }
        if (agent_send(conn, AGENT_DATA, buf, (uint32_t)got) < 0)
            return -1;
        if (got == 0)
            return 0;
    }
}

/* The folder being sent (nftw passes no context). */
static struct {
    int conn;
    size_t root_len;
} walk;

/* One entry of a folder: an 'N' frame (and a file's DATA). Entries that
 * cannot be described or opened are left out. */
static int send_entry(const char *fpath, const struct stat *st, int flag, struct FTW *ftw)
{
    uint8_t fields[8192];
    uint32_t n = 0;
    int fd = -1, r = 0;

    (void)ftw;
    if (agent_entry_fields(fpath, walk.root_len, st, flag, fields, sizeof(fields), &n) <= 0)
        return 0;
    if (S_ISREG(st->st_mode) && (fd = open(fpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return 0; /* gone meanwhile */
    if (agent_send(walk.conn, 'N', fields, n) < 0)
        r = -1;
    else if (fd >= 0)
        r = send_data(walk.conn, fd, fpath);
    if (fd >= 0)
        close(fd);
    return r < 0;
}

static void do_get(int conn, uint8_t *payload, uint32_t len)
{
    uint8_t info[128];
    char text[32];
    uint32_t at = 0, n = 0;
    const char *path = agent_next_field(payload, len, &at, "path");
    struct stat st;
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;

    if (fd < 0 || fstat(fd, &st) < 0) {
        send_error(conn, "cannot read '%s': %s", path ? path : "");
        return;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        errno = EINVAL;
        send_error(conn, "cannot read '%s': %s (neither a file nor a folder)", path);
        close(fd);
        return;
    }
    agent_attr_fields(info, sizeof(info), &n, &st);
    snprintf(text, sizeof(text), "%lld", (long long)st.st_size);
    agent_field(info, sizeof(info), &n, "size", text);
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        agent_field(info, sizeof(info), &n, "type", "d");
        agent_send(conn, AGENT_FILE, info, n);
        walk.conn = conn;
        walk.root_len = strlen(path);
        if (nftw(path, send_entry, 16, FTW_PHYS) == 0)
            agent_send(conn, 'N', NULL, 0);
        return;
    }
    agent_send(conn, AGENT_FILE, info, n);
    send_data(conn, fd, path);
    close(fd);
}

/* ---- the hello of a start ---- */

/* The VMM's first words after a start (a restore from a bundle, or a boot
 * with --hostname): the host's clock, and the hostname of this start. */
static void do_hello(int conn, uint8_t *payload, uint32_t len)
{
    uint32_t at = 0;
    const char *f;

    while ((f = agent_next_field(payload, len, &at, NULL))) {
        const char *v = strchr(f, '=') ? strchr(f, '=') + 1 : "";
        if (strncmp(f, "time=", 5) == 0) {
            set_clock(v);
        } else if (strncmp(f, "hostname=", 9) == 0) {
            size_t n = strlen(v);
            if (n == 0 || n > 64 || sethostname(v, n) < 0) {
                if (n == 0 || n > 64)
                    errno = EINVAL;
                send_error(conn, "hostname%s: %s", "");
                return;
            }
        }
    }
    agent_send(conn, AGENT_OK, NULL, 0);
}

/* ---- connections ---- */

static void serve(int conn)
{
    uint8_t type;
    uint32_t len;

    signal(SIGCHLD, SIG_DFL); /* this process waits for its command */
    if (agent_recv(conn, &type, frame, &len) <= 0)
        return;
    switch (type) {
    case AGENT_EXEC: do_exec(conn, frame, len); break;
    case AGENT_PUT: do_put(conn, frame, len); break;
    case AGENT_GET: do_get(conn, frame, len); break;
    case AGENT_HELLO: do_hello(conn, frame, len); break;
    default:
        errno = EPROTO;
        send_error(conn, "unknown request%s: %s", "");
        break;
    }
}

static int listen_vsock(void)
{
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
                               .svm_port = AGENT_PORT};
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 && listen(fd, 64) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* exec -t needs pseudo-terminals: an appliance's init mounts devtmpfs but
 * not devpts (nested: "cannot set up the command's input and output"). */
static void mount_devpts(void)
{
    mkdir("/dev/pts", 0755);
    if (mount("devpts", "/dev/pts", "devpts", 0, "gid=5,mode=620,ptmxmode=666") < 0 &&
        errno != EBUSY)
        say("devpts: %s", strerror(errno));
}

/* For tests on the host (no vsock there): a unix socket at path that
 * speaks the host side of smolvm's vsock socket ("CONNECT <port>\n",
 * "OK <port>\n") before the agent's protocol. */
static int listen_unix(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    unlink(path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 64) < 0) {
        perror(path);
        exit(1);
    }
    return fd;
}

static bool unix_handshake(int conn)
{
    char line[32];
    size_t n = 0;
    while (n < sizeof(line) - 1 && read(conn, line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = 0;
    if (strncmp(line, "CONNECT ", 8) != 0)
        return false;
    snprintf(line, sizeof(line), "OK %d\n", AGENT_PORT);
    return agent_full_write(conn, line, strlen(line)) == 0;
}

int main(int argc, char **argv)
{
    struct timespec tick = {0, 100 * 1000 * 1000};
    bool on_unix = argc == 3 && strcmp(argv[1], "--unix") == 0;
    int fd, waited = 0;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN); /* connection processes are reaped by the kernel */
    if (on_unix)
        fd = listen_unix(argv[2]);
    else
        mount_devpts();
    /* The vsock driver may still be probing. */
    while (!on_unix && (fd = listen_vsock()) < 0) {
        if (waited++ == 50)
            say("no vsock (%s): still trying", strerror(errno));
        nanosleep(&tick, NULL);
    }
    for (;;) {
        int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno != EINTR && errno != ECONNABORTED && errno != ECONNRESET)
                nanosleep(&tick, NULL);
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(fd);
            if (on_unix && !unix_handshake(conn))
                _exit(1);
            serve(conn);
            _exit(0);
        }
        close(conn);
    }
}
