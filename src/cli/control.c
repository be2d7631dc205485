/* The verbs that talk to a running VM over its control socket: ps, pause,
 * resume, stop, save, migrate. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "api/control.h"
#include "bundle/signature.h"
#include "cli/cli.h"
#include "cli/serve.h"
#include "machine/instance.h"
#include "machine/save_named.h"
#include "machine/stop_named.h"
#include "migrate/link.h"
#include "util/err.h"
#include "util/file.h"
#include "util/paths.h"
#include "util/size.h"
#include "util/term.h"

/* A bar on stderr when it is a terminal: "saving: 42% of 256 MiB". */
static void show_progress(void *opaque, uint64_t done, uint64_t total)
{
    const char *what = opaque;
    if (total)
        fprintf(stderr, "\r%s: %3llu%% of %llu MiB", what,
                (unsigned long long)(done * 100 / total), (unsigned long long)(total >> 20));
}

/* Sends req (consumed) to NAME; prints the error of a failed answer.
 * progress_what names long work (no time limit once the VM has taken the
 * request) to show progress of on a terminal, when show_bar; note_fn
 * shows the VM's notes as they come (a migration's rounds). */
/* Asks VM NAME, passing fd along (consumed; -1: none) and showing
 * progress and notes as they come. */
static int ask_passing(const char *name, json_t *req, int fd, json_t **answer,
                       const char *progress_what, bool show_bar, control_note_fn note_fn)
{
    bool bar = progress_what && show_bar && isatty(STDERR_FILENO);
    json_t *a;
    int r = control_request_passing(name, req, fd, &a, progress_what ? -1 : CONTROL_WORK_MS,
                                    bar ? show_progress : NULL, note_fn, (void *)progress_what);

    if (bar)
        fputs("\r\033[K", stderr);
    json_decref(req);
    if (r < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (!json_is_true(json_object_get(a, "ok"))) {
        const char *why = json_string_value(json_object_get(a, "error"));
        int code = cli_fail(CLI_FAILED, "%s: %s", name, why ? why : "failed");
        json_decref(a); /* why is a's */
        return code;
    }
    if (answer)
        *answer = a;
    else
        json_decref(a);
    return CLI_OK;
}

static int ask_noting(const char *name, json_t *req, json_t **answer, const char *progress_what,
                      bool show_bar, control_note_fn note_fn)
{
    return ask_passing(name, req, -1, answer, progress_what, show_bar, note_fn);
}

static int ask_showing(const char *name, json_t *req, json_t **answer, const char *progress_what,
                       bool show_bar)
{
    return ask_noting(name, req, answer, progress_what, show_bar, NULL);
}

static int ask(const char *name, json_t *req, json_t **answer)
{
    return ask_showing(name, req, answer, NULL, false);
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

/* pause, resume: NAME [--json]; under --json, the VM's state after. */
static int simple_verb(int argc, char **argv, const char *command, const char *state,
                       const char *help)
{
    static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'}, {0}};
    int c;

    optind = 1;
    while ((c = cli_getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        if (c == 'h') {
            fputs(help, stdout);
            fputs("\n  --json  print {\"name\", \"state\"} when done\n", stdout);
            return CLI_OK;
        }
    if (optind != argc - 1)
        return cli_fail(CLI_USAGE, "takes one VM name (try 'smolvm %s --help')", argv[0]);
    if (cli_check_name(argv[optind]) != CLI_OK)
        return CLI_USAGE;
    int code = ask(argv[optind], json_pack("{s:s}", "command", command), NULL);
    if (code == CLI_OK && cli_json()) {
        json_t *j = json_pack("{s:s,s:s}", "name", argv[optind], "state", state);
        json_dumpf(j, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(j);
    }
    return code;
}

int cli_pause(int argc, char **argv)
{
    return simple_verb(argc, argv, "pause", "paused",
                       "usage: smolvm pause NAME [--json]\n\nStops the VM's vCPUs; 'smolvm resume' "
                       "continues them.\n");
}

int cli_resume(int argc, char **argv)
{
    return simple_verb(argc, argv, "resume", "running",
                       "usage: smolvm resume NAME [--json]\n\nContinues a paused VM.\n");
}

static const char stop_help[] =
    "usage: smolvm stop NAME [--timeout S] [--force] [--json]\n"
    "\n"
    "Presses the VM's ACPI power button, so the guest shuts down cleanly, and\n"
    "ends the VM at once if it is still running S seconds later (a paused VM at\n"
    "once).\n"
    "\n"
    "  -t, --timeout S  how long the guest has (default 10, at most 3600; 0: at once)\n"
    "      --force      end it at once, no guest shutdown\n"
    "      --json       print {\"name\", \"state\", \"forced\"} when done\n";

int cli_stop(int argc, char **argv)
{
    enum { OPT_FORCE = 256, OPT_JSON };
    static const struct option longopts[] = {
        {"timeout", required_argument, NULL, 't'}, {"force", no_argument, NULL, OPT_FORCE},
        {"json", no_argument, NULL, OPT_JSON}, {"help", no_argument, NULL, 'h'}, {0},
    };
    unsigned long timeout = MACHINE_STOP_TIMEOUT_S;
    bool force = false, forced;
    char *end;
    int c;

    optind = 1;
    opterr = 0;
    while ((c = cli_getopt_long(argc, argv, ":t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            errno = 0;
            timeout = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-' ||
                timeout > MACHINE_STOP_TIMEOUT_MAX_S)
                return cli_fail(CLI_USAGE, "--timeout takes whole seconds, 0-%d (not '%s')",
                                MACHINE_STOP_TIMEOUT_MAX_S, optarg);
            break;
        case OPT_FORCE: force = true; break;
        case OPT_JSON: break; /* cli_json() */
        case 'h': fputs(stop_help, stdout); return CLI_OK;
        default: return CLI_USAGE; /* cli_getopt_long said why */
        }
    }
    if (optind != argc - 1)
        return cli_fail(CLI_USAGE, "takes one VM name (try 'smolvm stop --help')");
    if (cli_check_name(argv[optind]) != CLI_OK)
        return CLI_USAGE;
    if (machine_stop_named(argv[optind], (unsigned)timeout, force, &forced) < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (cli_json()) {
        json_t *j = json_pack("{s:s,s:s,s:b}", "name", argv[optind], "state", "stopped",
                              "forced", forced);
        json_dumpf(j, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(j);
    }
    return CLI_OK;
}

/* FILE's folder must exist; FILE itself need not. */
static int absolute_path(const char *file, char **out)
{
    const char *slash = strrchr(file, '/');
    char *dir = slash ? strndup(file, (size_t)(slash - file)) : strdup("."), *real;
    int r = 0;

    if (!dir)
        return err_set(ENOMEM, "path");
    real = realpath(dir[0] ? dir : "/", NULL);
    if (!real)
        r = err_set(errno, "the folder of '%s'", file);
    else if (asprintf(out, "%s/%s", strcmp(real, "/") ? real : "", slash ? slash + 1 : file) < 0)
        r = err_set(ENOMEM, "path");
    free(real);
    free(dir);
    return r;
}

static const char save_help[] =
    "usage: smolvm save NAME -o FILE.smolmachine [--resume] [--no-memory] [--flatten] [--sign KEY]\n"
    "       smolvm save INSTANCE                  (suspends a running store instance)\n"
    "\n"
    "Writes the VM NAME into one file: its config, kernel, initrd, disks and, for a\n"
    "running VM unless --no-memory, its state and memory, so 'smolvm start FILE'\n"
    "resumes it where it was. The VM ends after the save unless --resume. A store\n"
    "instance's disk goes as its chain of layers (an importer that has a layer\n"
    "skips it); a stopped instance can be saved too. Without -o, a running\n"
    "instance is suspended into its own folder: 'smolvm start INSTANCE' resumes it.\n"
    "\n"
    "  -o, --output FILE  the bundle to write (replaced atomically)\n"
    "      --resume       keep the VM running after the save\n"
    "      --no-memory    no state: the bundle boots afresh\n"
    "      --flatten      every disk as one image, not a chain of layers\n"
    "      --sign KEY     sign it with the private key KEY ('smolvm keygen')\n"
    "      --json         print {\"ok\", \"path\", \"seconds\"} when saved\n";

static void print_saved(const char *path, json_t *answer, bool json)
{
    if (json)
        json_dumpf(answer, stdout, JSON_COMPACT), putchar('\n');
    else
        printf("saved %s in %.3f s\n", path, json_real_value(json_object_get(answer, "seconds")));
}

int cli_save(int argc, char **argv)
{
    enum { OPT_RESUME = 256, OPT_NO_MEMORY, OPT_JSON, OPT_FLATTEN, OPT_SIGN };
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'}, {"resume", no_argument, NULL, OPT_RESUME},
        {"no-memory", no_argument, NULL, OPT_NO_MEMORY}, {"json", no_argument, NULL, OPT_JSON},
        {"flatten", no_argument, NULL, OPT_FLATTEN}, {"sign", required_argument, NULL, OPT_SIGN},
        {"help", no_argument, NULL, 'h'}, {0},
    };
    const char *output = NULL;
    bool resume = false, memory = true, json = false, flatten = false, suspend;
    char *key = NULL;
    int c, code;

    optind = 1;
    opterr = 0;
    while ((c = cli_getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case OPT_RESUME: resume = true; break;
        case OPT_NO_MEMORY: memory = false; break;
        case OPT_JSON: json = true; break;
        case OPT_FLATTEN: flatten = true; break;
        case OPT_SIGN:
            free(key);
            key = NULL;
            /* Checked before the VM is asked (or paused). */
            if (absolute_path(optarg, &key) < 0 || bundle_check_signing_key(key) < 0) {
                free(key);
                return cli_fail(CLI_FAILED, "%s", err_msg());
            }
            break;
        case 'h': fputs(save_help, stdout); return CLI_OK;
        default: return CLI_USAGE; /* cli_getopt_long said why */
        }
    }
    suspend = !output;
    if (optind != argc - 1 || (suspend && (resume || !memory || flatten || key))) {
        free(key);
        return cli_fail(CLI_USAGE, "usage: smolvm save NAME -o FILE.smolmachine");
    }
    const char *name = argv[optind];
    if (cli_check_name(name) != CLI_OK) {
        free(key);
        return CLI_USAGE;
    }
    /* The VM resolves paths from its own working folder: send an absolute one. */
    char *absolute = NULL, *saved;
    double seconds;
    bool bar = !json && isatty(STDERR_FILENO);
    struct machine_save_request q = {.resume = resume, .no_memory = !memory, .flatten = flatten,
                                     .sign_key = key, .progress = bar ? show_progress : NULL,
                                     .opaque = "saving memory"};
    if (!suspend && absolute_path(output, &absolute) < 0) {
        code = cli_fail(CLI_FAILED, "%s", err_msg());
    } else {
        q.output = absolute;
        int r = machine_save_named(name, &q, &saved, &seconds);
        if (bar)
            fputs("\r\033[K", stderr);
        if (r < 0) {
            code = cli_fail(CLI_FAILED, "%s", err_msg());
        } else {
            json_t *a = json_pack("{s:b,s:s,s:f}", "ok", 1, "path", saved, "seconds", seconds);
            print_saved(saved, a, json);
            json_decref(a);
            free(saved);
            code = CLI_OK;
        }
    }
    free(absolute);
    free(key);
    return code;
}

static void print_status(json_t *a, bool json)
{
    if (json) {
        json_object_del(a, "ok");
        return;
    }
    printf("%-20s %-8d %-8s %4lld %8lld %10.1f\n",
           json_string_value(json_object_get(a, "name")),
           (int)json_integer_value(json_object_get(a, "pid")),
           json_string_value(json_object_get(a, "state")),
           (long long)json_integer_value(json_object_get(a, "cpus")),
           (long long)(json_integer_value(json_object_get(a, "mem_bytes")) >> 20),
           json_real_value(json_object_get(a, "uptime_s")));
}

/* The status of one VM for ps: its answer, or {"name", "state": "busy"}
 * when it is there but answers nothing (say, in the middle of a save);
 * NULL for a socket left by a VM that died. */
static json_t *vm_status(const char *name, json_t *status_request)
{
    json_t *a = NULL;
    int r = control_request(name, status_request, &a);

    err_clear();
    if (r == -ETIMEDOUT)
        return json_pack("{s:s,s:s}", "name", name, "state", "busy");
    return r < 0 ? NULL : a;
}

/* Adds the VMs whose sockets are in dir, once each (seen: names so far). */
static void list_vms(const char *dir, json_t *status_request, json_t *seen, json_t *list, bool json)
{
    DIR *d = paths_private_dir(dir) == 0 ? opendir(dir) : NULL;
    struct dirent *e;

    err_clear();
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        json_t *a;
        if (n <= 5 || strcmp(e->d_name + n - 5, ".sock") != 0)
            continue;
        e->d_name[n - 5] = 0;
        if (json_object_get(seen, e->d_name) || !(a = vm_status(e->d_name, status_request)))
            continue;
        json_object_set_new(seen, e->d_name, json_true());
        if (json_object_get(a, "pid"))
            print_status(a, json);
        else if (!json)
            printf("%-20s %-8s %-8s\n", e->d_name, "-", "busy");
        json_array_append_new(list, a);
    }
    if (d)
        closedir(d);
}

int cli_ps(int argc, char **argv)
{
    bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
    json_t *list, *seen, *status_request;
    char *dirs[PATHS_RUNTIME_MAX];
    int n;

    if (wants_help(argc, argv)) {
        fputs("usage: smolvm ps [--json]\n\nLists this user's running VMs (a VM busy with\n"
              "a long request, such as a save, shows as busy).\n\n"
              "  --json  an array of {\"name\", \"pid\", \"state\", \"cpus\", \"mem_bytes\",\n"
              "          \"uptime_s\", \"console_dropped\", \"net_dropped\", \"confinement\"}\n"
              "          ({\"name\", \"state\": \"busy\"} for a busy VM; confinement: what\n"
              "          --jail got, docs/security.md; seccomp: on, log or off)\n", stdout);
        return CLI_OK;
    }
    if (argc > 2 || (argc == 2 && !json))
        return cli_fail(CLI_USAGE, "usage: smolvm ps [--json]");
    if (!json)
        printf("%-20s %-8s %-8s %4s %8s %10s\n", "NAME", "PID", "STATE", "CPUS", "MEM_MIB",
               "UPTIME_S");
    list = json_array();
    seen = json_object();
    status_request = json_pack("{s:s}", "command", "status");
    n = paths_runtime_dirs(dirs);
    for (int i = 0; i < n; i++)
        list_vms(dirs[i], status_request, seen, list, json);
    paths_free(dirs, n);
    json_decref(status_request);
    json_decref(seen);
    if (json)
        json_dumpf(list, stdout, JSON_INDENT(2)), putchar('\n');
    json_decref(list);
    return CLI_OK;
}

/* Copies f to stdout, made safe for a terminal unless raw. */
static void copy_out(FILE *f, struct term_strip *strip, bool raw)
{
    uint8_t buf[65536], safe[sizeof(buf) + 1];
    size_t n;

    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        if (raw)
            fwrite(buf, 1, n, stdout);
        else
            fwrite(safe, 1, term_strip(strip, buf, n, safe), stdout);
    }
    clearerr(f);
}

/* Whether PATH is no longer the file f reads: the log was rotated. */
static bool replaced(const char *path, FILE *f)
{
    struct stat now, open_st;
    return stat(path, &now) == 0 && fstat(fileno(f), &open_st) == 0 &&
           (now.st_ino != open_st.st_ino || now.st_dev != open_st.st_dev);
}

static const char logs_help[] =
    "usage: smolvm logs [-f] [--raw] NAME\n"
    "\n"
    "Prints the console of a VM run with --detach: its log holds the last 1-2 MiB\n"
    "(NAME.log, rotated to NAME.log.1 at 1 MiB). The guest's terminal escape\n"
    "sequences and control characters are left out unless --raw.\n"
    "\n"
    "  -f, --follow  keep printing until the VM ends\n"
    "      --raw     the bytes as the guest wrote them\n";

/* Copies what the log holds (the rotated part first); with follow, waits
 * for more while the VM still answers on its socket. */
int cli_logs(int argc, char **argv)
{
    bool follow = false, raw = false;
    const char *name = NULL;
    char *path, *older = NULL;
    struct term_strip strip = {0};
    uint8_t tail[1];
    json_t *status_request;
    FILE *f;

    if (wants_help(argc, argv)) {
        fputs(logs_help, stdout);
        return CLI_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--follow") == 0)
            follow = true;
        else if (strcmp(argv[i], "--raw") == 0)
            raw = true;
        else if (argv[i][0] == '-' || name)
            return cli_fail(CLI_USAGE, "usage: smolvm logs [-f] [--raw] NAME");
        else
            name = argv[i];
    }
    if (!name)
        return cli_fail(CLI_USAGE, "usage: smolvm logs [-f] [--raw] NAME");
    if (!control_name_ok(name))
        return cli_fail(CLI_USAGE, "'%s' is not a VM name", name);
    path = serve_log_path(name);
    f = path ? file_fopen_beneath(path) : NULL;
    if (!f) {
        int e = path ? errno : ENOMEM;
        free(path);
        if (e != ENOENT)
            return cli_fail(CLI_FAILED, "cannot read the log of '%s': %s", name, strerror(e));
        return cli_fail(CLI_FAILED, "no log for '%s' (was it run with --detach?)", name);
    }
    if (asprintf(&older, "%s.1", path) >= 0) {
        FILE *old = file_fopen_beneath(older);
        if (old) {
            copy_out(old, &strip, raw);
            fclose(old);
        }
        free(older);
    }
    status_request = json_pack("{s:s}", "command", "status");
    for (;;) {
        json_t *a;
        copy_out(f, &strip, raw);
        fflush(stdout);
        if (!follow || control_request(name, status_request, &a) < 0)
            break;
        json_decref(a);
        if (replaced(path, f)) {
            FILE *next = file_fopen_beneath(path);
            if (next) {
                copy_out(f, &strip, raw); /* what came before the rotation */
                fclose(f);
                f = next;
                continue;
            }
        }
        usleep(200000);
    }
    if (!raw)
        fwrite(tail, 1, term_strip_end(&strip, tail), stdout);
    json_decref(status_request);
    fclose(f);
    free(path);
    return CLI_OK;
}

#define CTRL_P 0x10
#define CTRL_Q 0x11

static const char attach_help[] =
    "usage: smolvm attach NAME\n"
    "\n"
    "Connects this terminal to the console of running VM NAME (started with\n"
    "--detach, or by smolvm serve): what the guest writes from now on is shown,\n"
    "what is typed goes to the guest as it is. Ctrl-P Ctrl-Q detaches; the VM runs\n"
    "on. Ends when the VM does.\n";

/* docker's detach keys: Ctrl-P Ctrl-Q ends the session (*detach), Ctrl-P and
 * anything else goes on as both. Returns the bytes left to send in buf
 * (room for one more: a Ctrl-P held from the previous call). */
static size_t attach_keys(bool *ctrl_p, uint8_t *buf, size_t len, bool *detach)
{
    uint8_t in[512];
    size_t out = 0;

    memcpy(in, buf, len);
    for (size_t i = 0; i < len; i++) {
        if (*ctrl_p) {
            *ctrl_p = false;
            if (in[i] == CTRL_Q) {
                *detach = true;
                return out;
            }
            buf[out++] = CTRL_P;
        }
        if (in[i] == CTRL_P)
            *ctrl_p = true;
        else
            buf[out++] = in[i];
    }
    return out;
}

static bool send_all(int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* The log from its end on, to stdout, following a rotation. */
static void follow_log(const char *path, FILE **f)
{
    if (*f && replaced(path, *f)) {
        FILE *next = file_fopen_beneath(path);
        if (next) {
            copy_out(*f, NULL, true); /* what came before the rotation */
            fclose(*f);
            *f = next;
        }
    }
    if (*f)
        copy_out(*f, NULL, true);
    fflush(stdout);
}

int cli_attach(int argc, char **argv)
{
    const char *name = argc == 2 ? argv[1] : NULL;
    bool tty = isatty(STDIN_FILENO), ctrl_p = false, detach = false, stdin_open = true;
    struct termios saved, raw;
    char *path;
    FILE *log;
    int fd;

    if (wants_help(argc, argv)) {
        fputs(attach_help, stdout);
        return CLI_OK;
    }
    if (!name || name[0] == '-')
        return cli_fail(CLI_USAGE, "needs one VM name (try 'smolvm attach --help')");
    if (!control_name_ok(name))
        return cli_fail(CLI_USAGE, "'%s' is not a VM name", name);
    fd = control_connect(name, "console");
    if (fd == -ENOENT)
        return cli_fail(CLI_FAILED, machine_answers(name) ? "VM '%s' has no console socket (an "
                                                            "older smolvm started it)"
                                                          : "no running VM named '%s'", name);
    if (fd < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    path = serve_log_path(name);
    log = path ? file_fopen_beneath(path) : NULL;
    if (log)
        fseek(log, 0, SEEK_END); /* `smolvm logs` has the past */
    if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
        raw = saved;
        cfmakeraw(&raw);
        raw.c_oflag |= OPOST | ONLCR;
        tty = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    } else {
        tty = false;
    }
    while (!detach) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                              {.fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN}};
        uint8_t buf[256 + 1];
        ssize_t n;

        follow_log(path, &log);
        if (poll(p, 2, 100) < 0 && errno != EINTR)
            break;
        if (p[0].revents) /* the VM never writes here: its end */
            break;
        if (!p[1].revents)
            continue;
        n = read(STDIN_FILENO, buf, sizeof(buf) - 1);
        if (n <= 0) {
            stdin_open = n < 0 && errno == EINTR; /* the guest runs on; so do we */
            continue;
        }
        n = (ssize_t)attach_keys(&ctrl_p, buf, (size_t)n, &detach);
        if (!send_all(fd, buf, (size_t)n))
            break;
    }
    follow_log(path, &log);
    if (tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    if (log)
        fclose(log);
    free(path);
    close(fd);
    fprintf(stderr, detach ? "\r\nsmolvm: detached from %s (it runs on)\n"
                           : "\r\nsmolvm: %s ended\n", name);
    return CLI_OK;
}

static const char migrate_help[] =
    "usage: smolvm migrate NAME --to tcp:HOST:PORT|unix:PATH [options]\n"
    "\n"
    "Moves running VM NAME to the smolvm listening there ('smolvm receive'). Warm:\n"
    "its RAM goes once while it runs, then the VM pauses, what it changed since,\n"
    "its config, device state and disks go over the link, and it stops here once\n"
    "it runs there. A link cut at any point leaves it running here as before.\n"
    "This command connects to the destination and hands the connection to the VM,\n"
    "so a VM started with --jail migrates too.\n"
    "docs/migration.md has the protocol.\n"
    "\n"
    "  --to ADDRESS           tcp:HOST:PORT or unix:PATH\n"
    "  --max-bandwidth RATE   at most RATE bytes per second on the link while the\n"
    "                         VM runs (256M, 1G); paused, it goes at link speed\n"
    "  --live                 pre-copy: RAM goes in rounds while the VM runs (each\n"
    "                         round what the guest dirtied since), then it pauses\n"
    "                         for the rest; a guest dirtying faster than the link\n"
    "                         carries is slowed (auto-converge)\n"
    "  --max-downtime MS      with --live: the longest pause (default 300): rounds go\n"
    "                         on until what is left fits it, the first ones until\n"
    "                         it fits a share of it (docs/migration.md)\n"
    "  --json                 print {\"seconds\", \"downtime_ms\", \"bytes\", \"rounds\": [{\"round\",\n"
    "                         \"sent_bytes\", \"dirty_rate\", \"bandwidth\", \"remaining_bytes\",\n"
    "                         \"expected_downtime_ms\", \"throttle\"}], \"downtime_split_ms\":\n"
    "                         {\"pages\", \"save\", \"send\", \"build\", \"handover\"}}; each\n"
    "                         round also as it ends, one such line on stderr\n"
    "\n"
    "Each round (warm: the one) is shown on stderr as it ends (sent, link rate,\n"
    "dirty rate, what is left, expected downtime, throttle).\n"
    "\n"
    "Exit status: 0 when the VM runs on the destination, 1 when it could not move\n"
    "(it runs on here), 2 on a bad command line.\n";

/* A pre-copy round as it ends, on stderr: a line for people... */
static void round_line(void *opaque, json_t *round)
{
    (void)opaque;
    if (isatty(STDERR_FILENO))
        fputs("\r\033[K", stderr); /* over the progress bar */
    fprintf(stderr,
            "round %lld: sent %.1f MiB, link %.1f MB/s, dirty %.1f MB/s, %.1f MiB left, "
            "expected downtime %.0f ms, vCPUs throttled %lld%%\n",
            (long long)json_integer_value(json_object_get(round, "round")),
            (double)json_integer_value(json_object_get(round, "sent_bytes")) / (1 << 20),
            json_real_value(json_object_get(round, "bandwidth")) / 1e6,
            json_real_value(json_object_get(round, "dirty_rate")) / 1e6,
            (double)json_integer_value(json_object_get(round, "remaining_bytes")) / (1 << 20),
            json_real_value(json_object_get(round, "expected_downtime_ms")),
            (long long)json_integer_value(json_object_get(round, "throttle")));
}

/* ... and with --json one line of JSON, as the answer's "rounds" has it. */
static void round_json(void *opaque, json_t *round)
{
    (void)opaque;
    json_dumpf(round, stderr, JSON_COMPACT);
    fputc('\n', stderr);
}

int cli_migrate(int argc, char **argv)
{
    enum { OPT_TO = 256, OPT_LIVE, OPT_BANDWIDTH, OPT_DOWNTIME, OPT_JSON };
    static const struct option longopts[] = {
        {"to", required_argument, NULL, OPT_TO}, {"live", no_argument, NULL, OPT_LIVE},
        {"max-bandwidth", required_argument, NULL, OPT_BANDWIDTH},
        {"max-downtime", required_argument, NULL, OPT_DOWNTIME},
        {"json", no_argument, NULL, OPT_JSON}, {"help", no_argument, NULL, 'h'}, {0},
    };
    const char *to = NULL, *downtime = NULL;
    bool live = false, json = false;
    uint64_t bandwidth = 0, downtime_ms = 300;
    char *end;
    int c;

    optind = 1;
    opterr = 0;
    while ((c = cli_getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_TO: to = optarg; break;
        case OPT_LIVE: live = true; break;
        case OPT_BANDWIDTH:
            if (size_parse(optarg, 1, &bandwidth) < 0 || !bandwidth || bandwidth > INT64_MAX)
                return cli_fail(CLI_USAGE, "--max-bandwidth '%s': a rate in bytes per second",
                                optarg);
            break;
        case OPT_DOWNTIME:
            downtime = optarg;
            downtime_ms = strtoull(optarg, &end, 10);
            if (!*optarg || *end || !downtime_ms || downtime_ms > 3600000)
                return cli_fail(CLI_USAGE, "--max-downtime '%s': milliseconds, 1 to 3600000",
                                optarg);
            break;
        case OPT_JSON: json = true; break;
        case 'h': fputs(migrate_help, stdout); return CLI_OK;
        default: return CLI_USAGE;
        }
    }
    if (optind != argc - 1 || !to)
        return cli_fail(CLI_USAGE, "usage: smolvm migrate NAME --to tcp:HOST:PORT|unix:PATH");
    if (downtime && !live)
        return cli_fail(CLI_USAGE, "--max-downtime goes with --live");
    if (migrate_address_check(to) < 0)
        return cli_fail(CLI_USAGE, "--to %s", err_msg());
    const char *name = argv[optind];
    if (cli_check_name(name) != CLI_OK)
        return CLI_USAGE;
    /* The link is made here and passed to the VM, which never dials: a
     * jailed VMM has neither the host's network nor its file system. The
     * VM first, so that a wrong name does not use up the receiver. */
    if (!machine_answers(name))
        return cli_fail(CLI_FAILED, "no running VM named '%s'", name);
    int link = migrate_connect(to);
    if (link < 0)
        return cli_fail(CLI_FAILED, "destination %s", err_msg());
    json_t *a, *req = json_pack("{s:s,s:s,s:I,s:b,s:I}", "command", "migrate", "to", to,
                                "max_bandwidth", (json_int_t)bandwidth, "live", live,
                                "max_downtime_ms", (json_int_t)downtime_ms);
    int code = ask_passing(name, req, link, &a, "migrating", !json,
                           json ? round_json : round_line);
    if (code != CLI_OK)
        return code;
    json_object_del(a, "ok");
    if (json) {
        json_dumpf(a, stdout, JSON_COMPACT), putchar('\n');
        json_decref(a);
        return CLI_OK;
    }
    printf("migrated %s to %s in %.3f s (downtime %.0f ms, %.1f MiB)\n", name, to,
               json_real_value(json_object_get(a, "seconds")),
               json_real_value(json_object_get(a, "downtime_ms")),
               (double)json_integer_value(json_object_get(a, "bytes")) / (1 << 20));
    json_decref(a);
    return CLI_OK;
}
