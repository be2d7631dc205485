/* smolvm exec, cp and shell: commands and files in a running VM, through
 * the guest agent (guest/agent.c) on vsock port AGENT_PORT, reached over
 * the VM's vsock socket (RUNTIME/NAME.vsock, Firecracker's CONNECT
 * protocol). Protocol: docs/agent-protocol.md. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../../guest/agent_proto.h"
#include "api/agent.h"
#include "api/control.h"
#include "cli/cli.h"
#include "machine/stop_named.h"
#include "util/err.h"
#include "util/file.h"

#define JSON_OUTPUT_MAX (64u << 20)

static uint8_t frame[AGENT_FRAME_MAX + 1];

char *cli_vsock_path(const char *name)
{
    return agent_vsock_path(name);
}

/* ---- reaching the agent ---- */

/* A connection to NAME's agent, retried while it is not listening for up
 * to wait_ms (a VM still booting). Returns a CLI code. */
static int reach_agent(const char *name, long wait_ms, int *out)
{
    if (cli_check_name(name) != CLI_OK)
        return CLI_USAGE;
    return agent_open(name, wait_ms, out) < 0 ? cli_fail(CLI_FAILED, "%s", err_msg()) : CLI_OK;
}

static int lost_agent(const char *name)
{
    return cli_fail(CLI_FAILED, "the agent of VM '%s' closed the connection (did it die, or "
                                "the VM stop?)", name);
}

/* ---- exec ---- */

static const char exec_help[] =
    "usage: smolvm exec [options] NAME [--] COMMAND [ARG...]\n"
    "\n"
    "Runs COMMAND in the running VM NAME through its guest agent (appliances of\n"
    "'smolvm image build' have one) and exits with its exit status (128+N when a\n"
    "signal N killed it; 127 when it cannot be found, 126 when it cannot run).\n"
    "Its output and errors arrive on this stdout and stderr.\n"
    "\n"
    "  -i, --interactive      send this stdin to the command (else it reads nothing)\n"
    "  -t, --tty              run it on a terminal (window size and its changes\n"
    "                         passed on; output and errors both on stdout)\n"
    "  -e, --env K=V          set a variable (repeatable)\n"
    "  -w, --workdir DIR      run in DIR (default: the user's home)\n"
    "  -u, --user USER        run as USER (a name, or UID[:GID]; default root)\n"
    "      --wait SECONDS     wait that long for the agent to listen (a VM booting)\n"
    "      --json             print {\"exit_code\", \"signal\", \"stdout\", \"stderr\"} at the end\n"
    "                         instead of the output\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit status: the command's; 1 when it could not be run (no such VM, no agent,\n"
    "the agent died), 2 on a bad command line.\n";

struct exec_options {
    const char *name;
    char **argv;
    int argc;
    char *env[256];
    unsigned env_count;
    const char *workdir, *user;
    bool interactive, tty, json;
    long wait_ms;
};

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char s = (unsigned char)sig;
    (void)!write(signal_pipe[1], &s, 1);
    errno = saved;
}

static int parse_wait(const char *text, long *ms)
{
    char *end;
    double s = strtod(text, &end);
    if (end == text || *end || s < 0 || s > 3600)
        return -1;
    *ms = (long)(s * 1000);
    return 0;
}

static int parse_exec(int argc, char **argv, struct exec_options *o)
{
    enum { OPT_JSON = 256, OPT_WAIT };
    static const struct option longopts[] = {
        {"interactive", no_argument, NULL, 'i'}, {"tty", no_argument, NULL, 't'},
        {"env", required_argument, NULL, 'e'},   {"workdir", required_argument, NULL, 'w'},
        {"user", required_argument, NULL, 'u'},  {"wait", required_argument, NULL, OPT_WAIT},
        {"json", no_argument, NULL, OPT_JSON},   {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;

    optind = 1;
    while ((c = cli_getopt_long(argc, argv, "+ite:w:u:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i': o->interactive = true; break;
        case 't': o->tty = true; break;
        case 'e':
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return cli_fail(CLI_USAGE, "--env '%s' is not K=V", optarg);
            if (o->env_count == sizeof(o->env) / sizeof(o->env[0]))
                return cli_fail(CLI_USAGE, "at most 256 --env");
            o->env[o->env_count++] = optarg;
            break;
        case 'w': o->workdir = optarg; break;
        case 'u': o->user = optarg; break;
        case OPT_WAIT:
            if (parse_wait(optarg, &o->wait_ms) < 0)
                return cli_fail(CLI_USAGE, "--wait '%s' is not a number of seconds", optarg);
            break;
        case OPT_JSON: o->json = true; break;
        case 'h': fputs(exec_help, stdout); exit(CLI_OK);
        default: return CLI_USAGE;
        }
    }
    if (optind < argc)
        o->name = argv[optind++];
    if (optind < argc && strcmp(argv[optind], "--") == 0)
        optind++;
    if (!o->name || optind == argc)
        return cli_fail(CLI_USAGE, "needs a VM name and a command (try 'smolvm exec --help')");
    if (o->tty && o->json)
        return cli_fail(CLI_USAGE, "--tty and --json do not go together");
    o->argv = argv + optind;
    o->argc = argc - optind;
    return cli_check_name(o->name);
}

static struct agent_exec exec_request(const struct exec_options *o)
{
    struct agent_exec e = {.argv = o->argv, .argc = (unsigned)o->argc, .env = (char **)o->env,
                           .env_count = o->env_count, .cwd = o->workdir, .user = o->user,
                           .input = o->interactive, .tty = o->tty};
    struct winsize ws;

    if (o->tty && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
        e.rows = ws.ws_row;
        e.cols = ws.ws_col;
    }
    return e;
}

struct output {
    char *data;
    size_t len, cap;
};

static int collect(struct output *out, const uint8_t *data, uint32_t len)
{
    if (out->len + len > JSON_OUTPUT_MAX)
        return -1;
    if (out->len + len > out->cap) {
        size_t cap = (out->len + len) * 2;
        char *p = realloc(out->data, cap);
        if (!p)
            return -1;
        out->data = p;
        out->cap = cap;
    }
    memcpy(out->data + out->len, data, len);
    out->len += len;
    return 0;
}

static json_t *text_json(struct output *out)
{
    return agent_text_json(out->data ? out->data : (char[1]){0}, out->len);
}

struct exec_session {
    const struct exec_options *o;
    int conn;
    bool stdin_open;
    struct output out, err;
    char *error;
    int exit_code, signal;
    bool done;
};

static void send_winsize(int conn)
{
    struct winsize ws;
    uint8_t payload[64];
    uint32_t len = 0;
    char text[16];
    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0)
        return;
    snprintf(text, sizeof(text), "%u", ws.ws_row);
    agent_field(payload, sizeof(payload), &len, "rows", text);
    snprintf(text, sizeof(text), "%u", ws.ws_col);
    agent_field(payload, sizeof(payload), &len, "cols", text);
    agent_send(conn, AGENT_WINSIZE, payload, len);
}

static void forward_signal(struct exec_session *s)
{
    unsigned char sig;
    uint8_t payload[32];
    uint32_t len = 0;
    char text[8];
    if (read(signal_pipe[0], &sig, 1) != 1)
        return;
    if (sig == SIGWINCH) {
        send_winsize(s->conn);
        return;
    }
    snprintf(text, sizeof(text), "%u", sig);
    agent_field(payload, sizeof(payload), &len, "signal", text);
    agent_send(s->conn, AGENT_SIGNAL, payload, len);
}

static void forward_stdin(struct exec_session *s)
{
    static uint8_t buf[AGENT_CHUNK];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
        return;
    if (n <= 0)
        s->stdin_open = false;
    agent_send(s->conn, AGENT_STDIN, buf, n > 0 ? (uint32_t)n : 0);
}

/* A frame from the agent; false when the connection ended. */
static bool agent_frame(struct exec_session *s)
{
    struct agent_event ev;

    if (agent_exec_next(s->conn, frame, &ev) <= 0)
        return false;
    switch (ev.kind) {
    case AGENT_EVENT_STDOUT:
    case AGENT_EVENT_STDERR: {
        bool is_out = ev.kind == AGENT_EVENT_STDOUT;
        if (s->o->json) {
            if (collect(is_out ? &s->out : &s->err, ev.data, ev.len) < 0)
                return false;
        } else if (agent_full_write(is_out ? STDOUT_FILENO : STDERR_FILENO, ev.data, ev.len) <
                   0) {
            return false; /* our reader went away */
        }
        break;
    }
    case AGENT_EVENT_ERROR:
        free(s->error);
        s->error = strndup((const char *)ev.data, ev.len);
        break;
    case AGENT_EVENT_EXIT:
        s->signal = ev.signal;
        s->exit_code = ev.exit_code;
        s->done = true;
        return false;
    case AGENT_EVENT_OTHER:
        break;
    }
    return true;
}

static void run_exec(struct exec_session *s)
{
    while (!s->done) {
        struct pollfd p[3] = {{.fd = s->conn, .events = POLLIN},
                              {.fd = signal_pipe[0], .events = POLLIN},
                              {.fd = s->stdin_open ? STDIN_FILENO : -1, .events = POLLIN}};
        if (poll(p, 3, -1) < 0)
            continue;
        if (p[0].revents && !agent_frame(s))
            break;
        if (p[1].revents)
            forward_signal(s);
        if (p[2].revents)
            forward_stdin(s);
    }
}

static struct termios saved_term;
static bool term_raw;

static void restore_term(void)
{
    if (term_raw)
        tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_term);
    term_raw = false;
}

static void raw_term(void)
{
    struct termios t;
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_term) < 0)
        return;
    t = saved_term;
    cfmakeraw(&t);
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &t) == 0) {
        term_raw = true;
        atexit(restore_term);
    }
}

static void catch_signals(bool tty)
{
    static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};

    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaction(forwarded[i], &sa, NULL);
    if (tty)
        sigaction(SIGWINCH, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int print_json_result(struct exec_session *s)
{
    json_t *j = json_pack("{s:i,s:o,s:o}", "exit_code", s->exit_code, "stdout",
                          text_json(&s->out), "stderr", text_json(&s->err));
    if (s->signal)
        json_object_set_new(j, "signal", json_integer(s->signal));
    if (s->error)
        json_object_set_new(j, "error", json_string(s->error));
    json_dumpf(j, stdout, JSON_COMPACT);
    putchar('\n');
    json_decref(j);
    return s->exit_code;
}

static int exec_with(const struct exec_options *o)
{
    struct exec_session s = {.o = o, .stdin_open = o->interactive};
    struct agent_exec e = exec_request(o);
    int code, r;

    code = reach_agent(o->name, o->wait_ms, &s.conn);
    if (code != CLI_OK)
        return code;
    catch_signals(o->tty);
    if ((r = agent_exec_send(s.conn, &e)) < 0) {
        close(s.conn);
        return r == -E2BIG ? cli_fail(CLI_USAGE, "%s", err_msg()) : lost_agent(o->name);
    }
    if (o->tty && o->interactive)
        raw_term();
    run_exec(&s);
    restore_term();
    close(s.conn);
    if (s.error && !o->json)
        cli_fail(s.done ? s.exit_code : CLI_FAILED, "%s", s.error);
    if (!s.done)
        code = s.error ? CLI_FAILED : lost_agent(o->name);
    else
        code = o->json ? print_json_result(&s) : s.exit_code;
    free(s.out.data);
    free(s.err.data);
    free(s.error);
    return code;
}

int cli_exec(int argc, char **argv)
{
    struct exec_options o = {0};
    int code = parse_exec(argc, argv, &o);
    return code != CLI_OK ? code : exec_with(&o);
}

static const char shell_help[] =
    "usage: smolvm shell NAME [--wait SECONDS]\n"
    "\n"
    "A shell (/bin/sh) in the running VM NAME on this terminal: 'smolvm exec -i -t\n"
    "NAME -- /bin/sh' (without -t when stdin is not a terminal).\n"
    "\n"
    "Exit status: the shell's; 1 when it could not be run, 2 on a bad command line.\n";

int cli_shell(int argc, char **argv)
{
    static char *sh[] = {"/bin/sh", NULL};
    struct exec_options o = {.interactive = true, .tty = isatty(STDIN_FILENO), .argv = sh,
                             .argc = 1};
    int i = 1;

    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(shell_help, stdout);
        return CLI_OK;
    }
    if (argc == 4 && strcmp(argv[1], "--wait") == 0) {
        if (parse_wait(argv[2], &o.wait_ms) < 0)
            return cli_fail(CLI_USAGE, "--wait '%s' is not a number of seconds", argv[2]);
        i = 3;
    }
    if (argc != i + 1)
        return cli_fail(CLI_USAGE, "needs one VM name (try 'smolvm shell --help')");
    o.name = argv[i];
    return cli_check_name(o.name) != CLI_OK ? CLI_USAGE : exec_with(&o);
}

/* ---- cp ---- */

static const char cp_help[] =
    "usage: smolvm cp [--json] HOSTPATH NAME:PATH\n"
    "       smolvm cp [--json] NAME:PATH HOSTPATH\n"
    "\n"
    "Copies a file or a folder into or out of the running VM NAME through its\n"
    "guest agent, keeping modes, modification times (seconds) and symbolic links.\n"
    "A destination that is a folder gets the copy under its own name; one that\n"
    "is not there becomes the copy. Each file appears whole or not at all\n"
    "(written under a temporary name, synced, renamed). What comes out of a VM\n"
    "is written only beneath the destination (no link the guest made is\n"
    "followed) and never setuid, setgid or sticky.\n"
    "\n"
    "      --json             print {\"bytes\", \"source\", \"destination\"}\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit status: 0 when copied, 1 on errors, 2 on a bad command line.\n";

/* NAME:PATH (a name as VMs have, before the first ':'); a path with a ':'
 * of its own is written ./a:b. */
static bool remote(const char *arg, char *name, size_t size, const char **path)
{
    const char *colon = strchr(arg, ':');
    if (!colon || (size_t)(colon - arg) >= size)
        return false;
    snprintf(name, size, "%.*s", (int)(colon - arg), arg);
    *path = colon + 1;
    return control_name_ok(name);
}

/* A CLI code for agent_expect()'s r. */
static int answer_code(int r, const char *name)
{
    if (r == -EPIPE)
        return lost_agent(name);
    if (r == -EPROTO)
        return cli_fail(CLI_FAILED, "the agent of VM '%s' answered out of turn", name);
    return r < 0 ? cli_fail(CLI_FAILED, "%s", err_msg()) : CLI_OK;
}

/* The agent's next frame must be of type want (its payload in frame,
 * *len bytes); its ERROR is the message. */
static int expect_answer(int conn, const char *name, uint8_t want, uint32_t *answer_len)
{
    return answer_code(agent_expect(conn, want, frame, answer_len), name);
}

/* fd's bytes as DATA frames, then the empty one. CLI code. */
static int send_data(int conn, int fd, const char *host, const char *name, uint64_t *bytes)
{
    static uint8_t buf[AGENT_CHUNK];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cli_fail(CLI_FAILED, "'%s': %s", host, strerror(errno));
        if (agent_data_send(conn, buf, (uint32_t)n) < 0) {
            int code = expect_answer(conn, name, AGENT_OK, NULL); /* it said why it stopped */
            return code == CLI_OK ? lost_agent(name) : code;
        }
        if (n == 0)
            return CLI_OK;
        *bytes += (uint64_t)n;
    }
}

/* The folder being sent (nftw passes no context). */
static struct {
    int conn;
    const char *name;
    size_t root_len;
    uint64_t *bytes;
    int code;
} tree;

static int send_entry(const char *fpath, const struct stat *st, int flag, struct FTW *ftw)
{
    uint8_t fields[8192];
    uint32_t len = 0;
    int fd = -1;
    int r = agent_entry_fields(fpath, tree.root_len, st, flag, fields, sizeof(fields), &len);

    (void)ftw;
    if (r < 0) {
        tree.code = cli_fail(CLI_FAILED, "'%s': the path is too long", fpath);
        return 1;
    }
    if (r == 0)
        return 0;
    if (S_ISREG(st->st_mode) && (fd = open(fpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        tree.code = cli_fail(CLI_FAILED, "'%s': %s", fpath, strerror(errno));
        return 1;
    }
    if (agent_send(tree.conn, 'N', fields, len) < 0) {
        tree.code = expect_answer(tree.conn, tree.name, AGENT_OK, NULL);
        tree.code = tree.code == CLI_OK ? lost_agent(tree.name) : tree.code;
    } else if (fd >= 0) {
        tree.code = send_data(tree.conn, fd, fpath, tree.name, tree.bytes);
    }
    if (fd >= 0)
        close(fd);
    return tree.code != CLI_OK;
}

static int put_file(const char *host, const char *name, const char *path, uint64_t *bytes)
{
    char *copy;
    struct stat st;
    int fd = open(host, O_RDONLY | O_CLOEXEC), conn, code, r;
    bool folder;

    if (fd < 0 || fstat(fd, &st) < 0)
        return cli_fail(CLI_FAILED, "'%s': %s", host, strerror(errno));
    folder = S_ISDIR(st.st_mode);
    if (!folder && !S_ISREG(st.st_mode)) {
        close(fd);
        return cli_fail(CLI_FAILED, "'%s' is neither a file nor a folder", host);
    }
    code = reach_agent(name, 0, &conn);
    if (code != CLI_OK) {
        close(fd);
        return code;
    }
    signal(SIGPIPE, SIG_IGN);
    copy = strdup(host);
    r = copy ? agent_put_start(conn, path, basename(copy), &st, folder) : -ENOMEM;
    free(copy);
    code = r == -E2BIG ? cli_fail(CLI_USAGE, "the path is too long")
           : r < 0     ? lost_agent(name)
                       : CLI_OK;
    if (code == CLI_OK && !folder) {
        code = send_data(conn, fd, host, name, bytes);
    } else if (code == CLI_OK) {
        tree.conn = conn;
        tree.name = name;
        tree.root_len = strlen(host);
        tree.bytes = bytes;
        tree.code = CLI_OK;
        if (nftw(host, send_entry, 16, FTW_PHYS) < 0 && tree.code == CLI_OK)
            tree.code = cli_fail(CLI_FAILED, "'%s': %s", host, strerror(errno));
        code = tree.code;
        if (code == CLI_OK && agent_send(conn, 'N', NULL, 0) < 0)
            code = lost_agent(name);
    }
    if (code == CLI_OK)
        code = expect_answer(conn, name, AGENT_OK, NULL);
    close(conn);
    close(fd);
    return code;
}

/* Receives the file into fd; CLI code. */
static int receive_file(int conn, const char *name, int fd, const char *tmp, uint64_t *bytes)
{
    for (;;) {
        uint32_t len;
        int r = agent_data_next(conn, frame, &len);
        if (r <= 0)
            return answer_code(r, name);
        if (file_write_all(fd, frame, len, tmp) < 0)
            return cli_fail(CLI_FAILED, "%s", err_msg());
        *bytes += len;
    }
}

/* ---- a folder out of the VM: every name it sends is resolved beneath
 * the target without following any symbolic link (openat2), so a hostile
 * guest's "link -> /etc" then "link/passwd" cannot write outside it. ---- */

static int open_beneath(int root, const char *rel, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                      RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, root, rel, &how, sizeof(how));
}

/* "a/b/c": the folder "a/b" opened beneath root, *base "c". */
static int parent_beneath(int root, char *rel, const char **base)
{
    char *slash = strrchr(rel, '/');
    if (!slash) {
        *base = rel;
        return open_beneath(root, ".", O_PATH | O_DIRECTORY);
    }
    *slash = 0;
    *base = slash + 1;
    return open_beneath(root, rel, O_PATH | O_DIRECTORY);
}

static bool safe_relative(const char *rel)
{
    if (!rel || rel[0] == '/' || rel[0] == 0)
        return false;
    for (const char *p = rel; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
        if (strncmp(p, "..", 2) == 0 && (p[2] == '/' || p[2] == 0))
            return false;
    return true;
}

static void entry_attrs(uint32_t len, mode_t *mode, struct timespec times[2])
{
    uint32_t at = 0;
    const char *v = agent_next_field(frame, len, &at, "mode");
    /* The guest says; setuid, setgid and sticky bits are not taken from it. */
    *mode = v ? (mode_t)strtoul(v, NULL, 8) & 0777 : 0644;
    at = 0;
    v = agent_next_field(frame, len, &at, "mtime");
    times[0] = (struct timespec){0, UTIME_OMIT};
    times[1] = (struct timespec){v ? (time_t)strtoll(v, NULL, 10) : 0, 0};
}

static int receive_file(int conn, const char *name, int fd, const char *tmp, uint64_t *bytes);

/* One file of the folder: under a temporary name beside it, renamed. */
static int tree_file(int conn, const char *name, int dir, const char *base, mode_t mode,
                     const struct timespec times[2], uint64_t *bytes)
{
    char tmp[300];
    int fd, code;

    snprintf(tmp, sizeof(tmp), ".%.200s.smolvm-cp-%d", base, (int)getpid());
    fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return cli_fail(CLI_FAILED, "'%s': %s", base, strerror(errno));
    code = receive_file(conn, name, fd, base, bytes);
    if (code == CLI_OK && (fchmod(fd, mode) < 0 || futimens(fd, times) < 0 || fsync(fd) < 0 ||
                           renameat(dir, tmp, dir, base) < 0))
        code = cli_fail(CLI_FAILED, "'%s': %s", base, strerror(errno));
    close(fd);
    if (code != CLI_OK)
        unlinkat(dir, tmp, 0);
    return code;
}

struct tree_dir {
    char *rel;
    mode_t mode;
    struct timespec times[2];
};

/* One entry ('N' frame of len bytes in frame); CLI code. */
static int tree_entry(int conn, const char *name, int root, uint32_t len, struct tree_dir **dirs,
                      size_t *ndirs, uint64_t *bytes)
{
    uint32_t at = 0;
    const char *rel = agent_next_field(frame, len, &at, "path"), *kind, *target, *base;
    struct timespec times[2];
    char copy[4096];
    mode_t mode;
    int dir, code = CLI_OK;

    at = 0;
    kind = agent_next_field(frame, len, &at, "type");
    at = 0;
    target = agent_next_field(frame, len, &at, "target");
    entry_attrs(len, &mode, times);
    if (!kind || (strcmp(rel ? rel : "", ".") != 0 && !safe_relative(rel)) ||
        strlen(rel) >= sizeof(copy))
        return cli_fail(CLI_FAILED, "the agent of VM '%s' sent a bad folder entry", name);
    if (kind[0] == 'd') {
        struct tree_dir *more = realloc(*dirs, (*ndirs + 1) * sizeof(**dirs));
        if (!more)
            return cli_fail(CLI_FAILED, "out of memory");
        *dirs = more;
        (*dirs)[(*ndirs)++] = (struct tree_dir){strdup(rel), mode, {times[0], times[1]}};
        if (strcmp(rel, ".") == 0)
            return CLI_OK;
    }
    strcpy(copy, rel);
    dir = parent_beneath(root, copy, &base);
    if (dir < 0)
        return cli_fail(CLI_FAILED, "'%s' from VM '%s': %s", rel, name, strerror(errno));
    if (kind[0] == 'd' && mkdirat(dir, base, 0700) < 0 && errno != EEXIST)
        code = cli_fail(CLI_FAILED, "'%s': %s", rel, strerror(errno));
    else if (kind[0] == 'f')
        code = tree_file(conn, name, dir, base, mode, times, bytes);
    else if (kind[0] == 'l' && target) {
        unlinkat(dir, base, 0);
        if (symlinkat(target, dir, base) < 0 ||
            utimensat(dir, base, times, AT_SYMLINK_NOFOLLOW) < 0)
            code = cli_fail(CLI_FAILED, "'%s': %s", rel, strerror(errno));
    }
    close(dir);
    return code;
}

static int get_tree(int conn, const char *name, const char *target, uint64_t *bytes)
{
    struct tree_dir *dirs = NULL;
    size_t ndirs = 0;
    int root, code = CLI_OK;

    if (mkdir(target, 0700) < 0 && errno != EEXIST)
        return cli_fail(CLI_FAILED, "'%s': %s", target, strerror(errno));
    root = open(target, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        return cli_fail(CLI_FAILED, "'%s': %s", target, strerror(errno));
    if (open_beneath(root, ".", O_PATH | O_DIRECTORY) < 0 && errno == ENOSYS)
        code = cli_fail(CLI_FAILED, "folders come out of a VM only on Linux 5.6 or later (openat2)");
    while (code == CLI_OK) {
        uint8_t type;
        uint32_t len;
        if (agent_recv(conn, &type, frame, &len) <= 0)
            code = lost_agent(name);
        else if (type == AGENT_ERROR)
            code = cli_fail(CLI_FAILED, "%.*s", (int)len, (const char *)frame);
        else if (type != 'N')
            code = cli_fail(CLI_FAILED, "the agent of VM '%s' answered out of turn", name);
        else if (len == 0)
            break;
        else
            code = tree_entry(conn, name, root, len, &dirs, &ndirs, bytes);
    }
    /* Folders get their mode and time after their entries changed them. */
    while (ndirs > 0) {
        struct tree_dir *d = &dirs[--ndirs];
        int fd = d->rel ? open_beneath(root, d->rel, O_RDONLY | O_DIRECTORY) : -1;
        if (code == CLI_OK && (fd < 0 || fchmod(fd, d->mode) < 0 || futimens(fd, d->times) < 0))
            code = cli_fail(CLI_FAILED, "'%s': %s", d->rel ? d->rel : "", strerror(errno));
        if (fd >= 0)
            close(fd);
        free(d->rel);
    }
    free(dirs);
    close(root);
    return code;
}

static int get_file(const char *name, const char *path, const char *host, uint64_t *bytes)
{
    uint32_t at, info_len = 0;
    char target[4096], tmp[4200], *copy;
    struct stat st;
    mode_t mode;
    time_t mtime;
    const char *v;
    int conn, code, fd, r;

    if (strlen(path) > 8000)
        return cli_fail(CLI_USAGE, "the path is too long");
    copy = strdup(path);
    if (stat(host, &st) == 0 && S_ISDIR(st.st_mode) && copy)
        snprintf(target, sizeof(target), "%s/%s", host, basename(copy));
    else
        snprintf(target, sizeof(target), "%s", host);
    free(copy);
    code = reach_agent(name, 0, &conn);
    if (code != CLI_OK)
        return code;
    if ((r = agent_get_start(conn, path, frame, &info_len)) < 0) {
        close(conn);
        return answer_code(r, name);
    }
    at = 0;
    v = agent_next_field(frame, info_len, &at, "type");
    if (v && strcmp(v, "d") == 0) {
        code = get_tree(conn, name, target, bytes);
        close(conn);
        return code;
    }
    at = 0;
    v = agent_next_field(frame, info_len, &at, "mode");
    /* The guest says; setuid, setgid and sticky bits are not taken from it. */
    mode = v ? (mode_t)strtoul(v, NULL, 8) & 0777 : 0644;
    at = 0;
    v = agent_next_field(frame, info_len, &at, "mtime");
    mtime = v ? (time_t)strtoll(v, NULL, 10) : 0;
    snprintf(tmp, sizeof(tmp), "%s.smolvm-cp-%d", target, (int)getpid());
    fd = file_create_exclusive(tmp, 0600);
    if (fd < 0) {
        close(conn);
        return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    code = receive_file(conn, name, fd, tmp, bytes);
    struct timespec times[2] = {{0, UTIME_OMIT}, {mtime, 0}};
    if (code == CLI_OK && (fchmod(fd, mode) < 0 || futimens(fd, times) < 0 || fsync(fd) < 0 ||
                           rename(tmp, target) < 0))
        code = cli_fail(CLI_FAILED, "'%s': %s", target, strerror(errno));
    close(fd);
    close(conn);
    if (code != CLI_OK)
        unlink(tmp);
    return code;
}

int cli_cp(int argc, char **argv)
{
    enum { OPT_JSON = 256 };
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON}, {"help", no_argument, NULL, 'h'}, {0}};
    char src_name[80], dst_name[80];
    const char *src_path, *dst_path;
    bool json = false, from_vm, to_vm;
    uint64_t bytes = 0;
    int c, code;

    optind = 1;
    while ((c = cli_getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(cp_help, stdout);
            return CLI_OK;
        }
        if (c != OPT_JSON)
            return CLI_USAGE;
        json = true;
    }
    if (argc - optind != 2)
        return cli_fail(CLI_USAGE, "needs a source and a destination (try 'smolvm cp --help')");
    from_vm = remote(argv[optind], src_name, sizeof(src_name), &src_path);
    to_vm = remote(argv[optind + 1], dst_name, sizeof(dst_name), &dst_path);
    if (from_vm == to_vm)
        return cli_fail(CLI_USAGE, "one of source and destination must be NAME:PATH, the "
                                   "other a host path");
    if ((from_vm ? src_path : dst_path)[0] == 0)
        return cli_fail(CLI_USAGE, "no path after '%s:'", from_vm ? src_name : dst_name);
    code = from_vm ? get_file(src_name, src_path, argv[optind + 1], &bytes)
                   : put_file(argv[optind], dst_name, dst_path, &bytes);
    if (code == CLI_OK && json) {
        json_t *j = json_pack("{s:I,s:s,s:s}", "bytes", (json_int_t)bytes, "source",
                              argv[optind], "destination", argv[optind + 1]);
        json_dumpf(j, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(j);
    }
    return code;
}
