#include "cli/serve.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/control.h"
#include "cli/cli.h"
#include "core/console.h"
#include "devices/virtio/net.h"
#include "util/err.h"
#include "util/file.h"
#include "util/paths.h"
#include "util/trace.h"

struct server {
    struct machine *m; /* NULL until built: no request is served before */
    char name[80];
    struct control *control;
    struct timespec started;
    int ready_fd; /* --detach: tells the waiting parent the VM runs; else -1 */
    bool generated; /* no --name: nothing can find its files once it ends */
    bool detached;  /* stdout is the log */
    char *no_control; /* why there is no control socket (a VM without --name runs on) */
};

static struct vm *running_vm;

static void stop_on_signal(int sig)
{
    (void)sig;
    if (running_vm)
        vm_signal_stop(running_vm);
}

static void install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = stop_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static json_t *status(struct server *s)
{
    const struct vm_config *cfg = vm_config(machine_vm(s->m));
    return json_pack("{s:b,s:s,s:i,s:s,s:i,s:I,s:f,s:I,s:I}", "ok", 1, "name", s->name, "pid",
                     (int)getpid(), "state", vm_paused(machine_vm(s->m)) ? "paused" : "running",
                     "cpus", (int)cfg->cpus, "mem_bytes", (json_int_t)cfg->mem_bytes,
                     "uptime_s", seconds_since(&s->started), "console_dropped",
                     (json_int_t)console_dropped(vm_console(machine_vm(s->m))), "net_dropped",
                     (json_int_t)virtio_net_dropped());
}

static void save_progress(void *opaque, uint64_t done, uint64_t total)
{
    struct server *s = opaque;
    control_progress(s->control, done, total);
}

/* Every save pauses the VM (vCPUs parked, each device's I/O thread between
 * requests) for as long as it reads the VM: the state must match the guest
 * exactly, and a disk copied while the guest writes it would be torn (a
 * metadata block from before a write, a data block from after). A failed
 * save gives the VM back as it found it, and says so. */
static json_t *save(struct server *s, json_t *req)
{
    struct vm *vm = machine_vm(s->m);
    const char *path = json_string_value(json_object_get(req, "path"));
    struct machine_save_options o = {.with_state = !json_is_false(json_object_get(req, "memory")),
                                     .state_only = json_is_true(json_object_get(req, "state_only")),
                                     .flatten = json_is_true(json_object_get(req, "flatten")),
                                     .sign_key = json_string_value(json_object_get(req, "sign")),
                                     .progress = save_progress, .opaque = s};
    bool resume = json_is_true(json_object_get(req, "resume")), was_paused = vm_paused(vm);
    struct timespec t0;
    json_t *answer;

    if (!path || path[0] != '/')
        return control_error("save needs an absolute \"path\"");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (vm_pause(vm) < 0)
        return control_error("%s", err_msg());
    if (machine_save(s->m, path, &o) < 0) {
        answer = control_error("%s (the VM %s)", err_msg(),
                               was_paused ? "stays paused, as it was" : "runs on");
        if (!was_paused)
            vm_resume(vm);
        return answer;
    }
    answer = json_pack("{s:b,s:s,s:f}", "ok", 1, "path", path, "seconds", seconds_since(&t0));
    if (!resume)
        vm_request_stop(vm, VM_STOP_USER); /* saved: this instance's job is done */
    else if (!was_paused)
        vm_resume(vm);
    return answer;
}

static json_t *handle(void *opaque, const char *command, json_t *req)
{
    struct server *s = opaque;
    struct vm *vm = machine_vm(s->m);

    if (strcmp(command, "status") == 0)
        return status(s);
    if (strcmp(command, "pause") == 0)
        return vm_pause(vm) < 0 ? control_error("%s", err_msg()) : control_ok();
    if (strcmp(command, "resume") == 0) {
        vm_resume(vm);
        return control_ok();
    }
    if (strcmp(command, "stop") == 0) {
        vm_request_stop(vm, VM_STOP_USER);
        return control_ok();
    }
    if (strcmp(command, "save") == 0)
        return save(s, req);
    return control_error("unknown command '%s'", command);
}

static bool control_ready(void *opaque, int fd)
{
    struct server *s = opaque;
    (void)fd;
    control_accept(s->control);
    return true;
}

static int exit_code(struct vm *vm, enum vm_stop_reason why)
{
    switch (why) {
    case VM_STOP_POWEROFF:
    case VM_STOP_RESET:
    case VM_STOP_USER:
        return CLI_OK;
    case VM_STOP_SIGNAL:
        return cli_fail(CLI_FAILED, "stopped by a signal");
    default:
        return cli_fail(CLI_FAILED, "%s", vm_stop_message(vm));
    }
}

int serve_open(const char *name, struct server **out)
{
    struct server *s;

    if (name && !control_name_ok(name))
        return cli_fail(CLI_USAGE, "--name '%s': use 1-64 letters, digits, '.', '_', '-'", name);
    s = calloc(1, sizeof(*s));
    if (!s)
        return cli_fail(CLI_FAILED, "out of memory");
    s->ready_fd = -1;
    if (name)
        snprintf(s->name, sizeof(s->name), "%s", name);
    else
        snprintf(s->name, sizeof(s->name), "vm-%d", (int)getpid());
    s->generated = !name;
    if (control_open(s->name, handle, s, &s->control) < 0) {
        /* Nobody will look for a generated name: the VM is worth more
         * than its socket. */
        if (name || !(s->no_control = strdup(err_msg()))) {
            free(s);
            return cli_fail(CLI_FAILED, "%s", err_msg());
        }
        err_clear();
    }
    *out = s;
    return CLI_OK;
}

const char *serve_name(const struct server *s)
{
    return s->name;
}

char *serve_log_path(const char *name)
{
    char *dir, *path = NULL;

    if (control_dir(&dir) < 0)
        return NULL;
    if (asprintf(&path, "%s/%s.log", dir, name) < 0)
        path = NULL;
    free(dir);
    return path;
}

/* The parent's side: "ok" on the pipe means the VM runs; anything else,
 * the child failed and its log says why. */
static int wait_for_child(struct server *s, int fd)
{
    char buf[8] = {0}, *log = serve_log_path(s->name), line[512] = "", last[512] = "";
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    FILE *f;

    close(fd);
    if (n == 2 && strcmp(buf, "ok") == 0) {
        free(log);
        puts(s->name);
        return CLI_OK;
    }
    f = log ? fopen(log, "r") : NULL;
    while (f && fgets(line, sizeof(line), f))
        snprintf(last, sizeof(last), "%s", line);
    if (f)
        fclose(f);
    free(log);
    last[strcspn(last, "\n")] = 0;
    fprintf(stderr, "%s\n", last[0] ? last : "smolvm: the VM did not start");
    return CLI_FAILED;
}

static int redirect_to_log(const char *name)
{
    char *log = serve_log_path(name), *older = NULL;
    int fd = log ? open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600)
                 : -1;
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (log && asprintf(&older, "%s.1", log) >= 0)
        unlink(older); /* an earlier VM's of the same name */
    free(older);
    free(log);
    if (fd < 0 || null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0 ||
        dup2(fd, STDERR_FILENO) < 0)
        return -1;
    close(fd);
    close(null);
    return 0;
}

int serve_detach(struct server *s, bool *parent)
{
    int fds[2];
    pid_t pid;

    *parent = true;
    if (s->no_control)
        return cli_fail(CLI_FAILED, "--detach: %s", s->no_control);
    if (pipe2(fds, O_CLOEXEC) < 0)
        return cli_fail(CLI_FAILED, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return cli_fail(CLI_FAILED, "fork: %s", strerror(errno));
    if (pid > 0) {
        int code;
        close(fds[1]);
        code = wait_for_child(s, fds[0]);
        /* The socket is the child's now: close it without removing it. */
        control_forget(s->control);
        free(s->no_control);
        free(s);
        return code;
    }
    *parent = false;
    close(fds[0]);
    setsid();
    if (redirect_to_log(s->name) < 0)
        _exit(CLI_FAILED);
    s->ready_fd = fds[1];
    s->detached = true;
    return CLI_OK;
}

/* The disks a VM with a generated name wrote (its deltas, in the folder a
 * bundle's or an appliance's start makes) would pile up unseen: no later
 * command can name them. A store instance of that name keeps its folder. */
static void remove_unnamed_files(const struct server *s)
{
    char *dir = s->generated ? paths_data_dir("instances") : NULL, *path = NULL, *store = NULL;

    if (dir && asprintf(&path, "%s/%s", dir, s->name) >= 0 &&
        asprintf(&store, "%s/instance.json", path) >= 0 && access(store, F_OK) < 0 &&
        access(path, F_OK) == 0)
        file_remove_tree(path);
    free(store);
    free(path);
    free(dir);
}

void serve_abort(struct server *s)
{
    if (!s)
        return;
    control_close(s->control);
    remove_unnamed_files(s);
    free(s->no_control);
    free(s);
}

int serve_machine(struct server *s, struct machine *m, const struct serve_options *o)
{
    struct vm *vm = machine_vm(m);
    enum vm_stop_reason why;
    int code;

    s->m = m;
    clock_gettime(CLOCK_MONOTONIC, &s->started);
    if (s->detached) {
        char *log = serve_log_path(s->name);
        console_log_to(vm_console(vm), log, SERVE_LOG_LIMIT);
        free(log);
    }
    if (s->no_control)
        fprintf(stderr, "smolvm: no control socket (%s): 'smolvm ps/stop/save' will not see "
                        "this VM\n", s->no_control);
    if (s->control && vm_watch(vm, control_listen_fd(s->control), control_ready, s) < 0) {
        code = cli_fail(CLI_FAILED, "%s", err_msg());
        serve_abort(s);
        machine_destroy(m);
        return code;
    }
    running_vm = vm;
    install_signal_handlers();
    if (s->ready_fd >= 0) {
        if (write(s->ready_fd, "ok", 2) != 2) {
            /* The parent is gone; the VM runs on regardless. */
        }
        close(s->ready_fd);
        s->ready_fd = -1;
    }
    why = vm_run(vm);
    running_vm = NULL;
    code = exit_code(vm, why);
    serve_abort(s);
    machine_destroy(m); /* restores the terminal before the trace is printed */
    if (o->trace_boot && o->json)
        trace_print_json(stderr, o->trace_until);
    else if (o->trace_boot)
        trace_print_table(stderr, o->trace_until);
    return code;
}
