#include "cli/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/agent.h"
#include "cli/cli.h"
#include "core/console.h"
#include "machine/control.h"
#include "machine/instance.h"
#include "util/err.h"
#include "util/file.h"
#include "util/trace.h"

struct server {
    struct machine_control ctl; /* what the control socket's requests reach */
    char name[80];
    struct control *control;
    int ready_fd; /* --detach: tells the waiting parent the VM runs; else -1 */
    bool generated; /* no --name: nothing can find its files once it ends */
    bool detached;  /* stdout is the log */
    char *no_control; /* why there is no control socket (a VM without --name runs on) */
    char *vsock_path; /* serve_vsock_path()'s answer, NULL until asked */
    char *own_dir;    /* serve_use_own_folder(): RUNTIME/NAME.vm, or NULL */
    int console_fd;     /* RUNTIME/NAME.console, listening: input for the console; or -1 */
    char *console_path;
};

/* Closes this process's handles; with remove, the console socket's file too
 * (after a fork the child keeps serving it). */
static void server_free(struct server *s, bool remove)
{
    if (s->console_fd >= 0)
        close(s->console_fd);
    if (remove && s->console_path)
        unlink(s->console_path);
    free(s->console_path);
    free(s->no_control);
    free(s->vsock_path);
    free(s->own_dir);
    free(s);
}

static bool control_ready(void *opaque, int fd)
{
    struct server *s = opaque;
    (void)fd;
    control_accept(s->control);
    return true;
}

/* A client of the console socket (`smolvm attach`, the web console): what
 * it writes is typed on the guest's console. */
static bool console_client(void *opaque, int fd)
{
    struct server *s = opaque;
    int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (client < 0)
        return true;
    if (!control_peer_allowed(client))
        close(client);
    else if (console_add_input(vm_console(machine_vm(s->ctl.m)), client) < 0)
        err_clear(); /* closed: the client sees its connection end */
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
    s->console_fd = -1;
    if (name)
        snprintf(s->name, sizeof(s->name), "%s", name);
    else
        snprintf(s->name, sizeof(s->name), "vm-%d", (int)getpid());
    s->generated = !name;
    s->ctl.name = s->name;
    if (control_open(s->name, machine_control_handle, &s->ctl, &s->control) < 0) {
        /* Nobody will look for a generated name: the VM is worth more
         * than its socket. */
        if (name || !(s->no_control = strdup(err_msg()))) {
            free(s);
            return cli_fail(CLI_FAILED, "%s", err_msg());
        }
        err_clear();
    } else if ((s->console_fd = control_listen_beside(s->control, "console",
                                                      &s->console_path)) < 0) {
        /* The VM runs on without input from outside its terminal. */
        fprintf(stderr, "smolvm: no console socket: %s\n", err_msg());
        err_clear();
        s->console_fd = -1;
    }
    *out = s;
    return CLI_OK;
}

const char *serve_name(const struct server *s)
{
    return s->name;
}

const char *serve_vsock_path(struct server *s)
{
    if (!s->no_control && !s->vsock_path && s->own_dir &&
        asprintf(&s->vsock_path, "%s/%s.vsock", s->own_dir, s->name) < 0)
        s->vsock_path = NULL;
    else if (!s->no_control && !s->vsock_path)
        s->vsock_path = cli_vsock_path(s->name);
    return s->vsock_path;
}

/* RUNTIME/NAME.SUFFIX, where clients look, made a link to the same name in
 * the VM's own folder (whatever was there is a stale one: the name is
 * this VM's since its control socket is). */
static int link_into_own_folder(const struct server *s, const char *suffix)
{
    char *runtime = strdup(s->own_dir), *at = NULL, *target = NULL, *slash;
    int r = 0;

    if (!runtime || !(slash = strrchr(runtime, '/')) ||
        asprintf(&at, "%.*s/%s.%s", (int)(slash - runtime), runtime, s->name, suffix) < 0 ||
        asprintf(&target, "%s/%s.%s", slash + 1, s->name, suffix) < 0)
        r = err_set(ENOMEM, "--jail");
    else if ((unlink(at) < 0 && errno != ENOENT) || symlink(target, at) < 0)
        r = err_set(errno, "--jail: '%s'", at);
    free(runtime);
    free(at);
    free(target);
    return r;
}

int serve_use_own_folder(struct server *s)
{
    if (s->no_control)
        return CLI_OK; /* nobody looks for an unnamed VM without a socket */
    free(s->vsock_path);
    s->vsock_path = NULL;
    if (control_vm_dir(s->name, &s->own_dir) < 0 || link_into_own_folder(s, "vsock") < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    return CLI_OK;
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

/* line appended to the log a jailed VM NAME writes in its own folder
 * (serve_use_own_folder()), by a process outside it: opened only now, as
 * its VMM made it before asking, and it may have replaced it since --
 * never created, followed or blocked on (a FIFO). 0, or -1. */
static int say_in_own_log(const char *name, const char *line)
{
    char *runtime, *log = NULL;
    struct stat st;
    int fd = -1, r = -1;

    if (control_dir(&runtime) < 0)
        return -1;
    if (asprintf(&log, "%s/%s" CONTROL_VM_DIR_SUFFIX "/%s.log", runtime, name, name) < 0)
        log = NULL;
    free(runtime);
    if (log && (fd = open(log, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) >= 0 &&
        fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        r = dprintf(fd, "%s\n", line) > 0 ? 0 : -1;
    if (fd >= 0)
        close(fd);
    free(log);
    return r;
}

void serve_mark_resumed_when_asked(int pair, const char *name, bool say_in_vm_log)
{
    char asked, answer = 'n', why[600];

    if (read(pair, &asked, 1) == 1) {
        if (machine_instance_resumed(name) == 0) {
            answer = 'y';
        } else {
            /* Said before the answer: the VMM's line that follows is not the reason. */
            snprintf(why, sizeof(why), "smolvm: start: %s", err_msg());
            if (!say_in_vm_log || say_in_own_log(name, why) < 0)
                fprintf(stderr, "%s\n", why);
        }
        if (write(pair, &answer, 1) != 1) {
            /* the VMM is gone: it starts nothing */
        }
    }
    _exit(0);
}

/* The VM name's log, its last line said: why its detached VMM failed. */
static int say_why_from_log(const char *name)
{
    char *log = serve_log_path(name), line[512] = "", last[512] = "";
    FILE *f = log ? fopen(log, "r") : NULL;

    while (f && fgets(line, sizeof(line), f))
        snprintf(last, sizeof(last), "%s", line);
    if (f)
        fclose(f);
    free(log);
    last[strcspn(last, "\n")] = 0;
    fprintf(stderr, "%s\n", last[0] ? last : "smolvm: the VM did not start");
    return CLI_FAILED;
}

/* The parent's side: "ok" on the pipe means the VM runs; anything else,
 * the child failed and its log says why. */
static int wait_for_child(struct server *s, int fd)
{
    char buf[8] = {0};
    ssize_t n = read(fd, buf, sizeof(buf) - 1);

    close(fd);
    if (n == 2 && strcmp(buf, "ok") == 0) {
        puts(s->name);
        return CLI_OK;
    }
    return say_why_from_log(s->name);
}

int serve_wait_for_vmm(const char *name, int fd, pid_t vmm)
{
    char buf[4] = "";
    size_t len = 0;
    ssize_t n;
    int status;

    while (len < sizeof(buf) - 1 && ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0 ||
                                     (n < 0 && errno == EINTR)))
        len += n > 0 ? (size_t)n : 0;
    close(fd);
    if (strcmp(buf, "Lok") == 0) {
        puts(name);
        return CLI_OK;
    }
    if (buf[0] == 'L')
        return say_why_from_log(name);
    /* Ended before its log: it said why here, and its status is ours. */
    while (waitpid(vmm, &status, 0) < 0)
        if (errno != EINTR)
            return CLI_FAILED;
    return WIFEXITED(status) && WEXITSTATUS(status) != CLI_OK ? WEXITSTATUS(status) : CLI_FAILED;
}

/* Where the VM's console log is written: in its own folder when it has
 * one (rotated there: the jail lets it write nowhere else), else
 * serve_log_path(). */
static char *own_log_path(const struct server *s)
{
    char *path = NULL;

    if (!s->own_dir)
        return serve_log_path(s->name);
    if (asprintf(&path, "%s/%s.log", s->own_dir, s->name) < 0)
        path = NULL;
    return path;
}

/* An earlier VM's log of the same name at path and path.1: removed, never
 * opened -- a link or FIFO its (jailed) VMM left in its own folder must
 * not be written through or block this start. */
static void remove_old_log(const char *path)
{
    char *older = NULL;

    if (!path)
        return;
    unlink(path);
    if (asprintf(&older, "%s.1", path) >= 0)
        unlink(older);
    free(older);
}

static int redirect_to_log(const struct server *s)
{
    char *log = own_log_path(s), *shown = serve_log_path(s->name);
    int fd = -1, null = open("/dev/null", O_RDONLY | O_CLOEXEC);

    remove_old_log(shown); /* the link, or the log itself un-jailed */
    if (s->own_dir)
        remove_old_log(log);
    free(shown);
    /* Appended to: stdout and stderr share it, and the console rotates it. */
    if (log && (fd = file_create_fresh(log, 0600)) >= 0 && fcntl(fd, F_SETFL, O_APPEND) < 0) {
        close(fd);
        fd = -1;
    }
    free(log);
    if (s->own_dir && fd >= 0 &&
        (link_into_own_folder(s, "log") < 0 || link_into_own_folder(s, "log.1") < 0))
        err_clear(); /* the log is written all the same; `smolvm logs` does not find it */
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
        server_free(s, false);
        return code;
    }
    *parent = false;
    close(fds[0]);
    setsid();
    if (redirect_to_log(s) < 0)
        _exit(CLI_FAILED);
    s->ready_fd = fds[1];
    s->detached = true;
    return CLI_OK;
}

int serve_detached_ahead(struct server *s, int ready_fd)
{
    if (s->no_control)
        return cli_fail(CLI_FAILED, "--detach: %s", s->no_control);
    setsid();
    if (redirect_to_log(s) < 0)
        _exit(CLI_FAILED);
    if (write(ready_fd, "L", 1) != 1) {
        /* the spare is gone: the VM starts all the same, as a detached one does */
    }
    s->ready_fd = ready_fd;
    s->detached = true;
    return CLI_OK;
}

void serve_abort(struct server *s)
{
    char why[512];

    if (!s)
        return;
    /* The caller says next why it gave up: finding the instance folder
     * may clear the message (a jail's read-only data folder, paths.c). */
    snprintf(why, sizeof(why), "%s", err_msg());
    control_close(s->control);
    if (s->generated)
        instance_dir_remove_unnamed(s->name);
    server_free(s, true);
    err_plain(0, "%s", why);
}

/* How long the hello waits for the agent: a booting guest under nested
 * emulation takes seconds to start it. */
#define HELLO_WAIT_MS 120000

struct hello {
    char *vsock_path, *hostname; /* the thread's own copies */
};

static void *send_hello(void *arg)
{
    struct hello *h = arg;

    /* A guest without an agent is no error, unless a hostname was asked. */
    if (agent_hello_confined(h->vsock_path, h->hostname, HELLO_WAIT_MS) < 0 && h->hostname)
        fprintf(stderr, "smolvm: hostname %s not set: %s\n", h->hostname, err_msg());
    free(h->vsock_path);
    free(h->hostname);
    free(h);
    return NULL;
}

/* After a restore (the guest's clock is the save's) or with --hostname:
 * the agent hears this start's clock and hostname as soon as it can, on a
 * thread of its own (the VM runs meanwhile). */
static void start_hello(struct server *s, struct machine *m, const char *hostname)
{
    const char *path = serve_vsock_path(s);
    struct hello *h;
    pthread_t t;

    if (!path || (!hostname && !machine_resumed(m)) || !(h = calloc(1, sizeof(*h))))
        return;
    h->vsock_path = strdup(path);
    h->hostname = hostname ? strdup(hostname) : NULL;
    if (!h->vsock_path || (hostname && !h->hostname) ||
        pthread_create(&t, NULL, send_hello, h) != 0) {
        free(h->vsock_path);
        free(h->hostname);
        free(h);
        return;
    }
    pthread_detach(t);
}

int serve_machine(struct server *s, struct machine *m, const struct serve_options *o)
{
    struct vm *vm = machine_vm(m);
    enum vm_stop_reason why;
    int code;

    s->ctl.m = m;
    s->ctl.control = s->control;
    clock_gettime(CLOCK_MONOTONIC, &s->ctl.started);
    if (s->detached) {
        char *log = own_log_path(s);
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
    if (s->console_fd >= 0 && vm_watch(vm, s->console_fd, console_client, s) < 0) {
        fprintf(stderr, "smolvm: no console socket: %s\n", err_msg());
        err_clear();
    }
    machine_stop_on_signals(m);
    if (s->ready_fd >= 0) {
        if (write(s->ready_fd, "ok", 2) != 2) {
            /* The parent is gone; the VM runs on regardless. */
        }
        close(s->ready_fd);
        s->ready_fd = -1;
    }
    start_hello(s, m, o->hostname);
    why = vm_run(vm);
    machine_stop_on_signals(NULL);
    code = exit_code(vm, why);
    serve_abort(s);
    machine_destroy(m); /* restores the terminal before the trace is printed */
    if (o->trace_boot && o->json)
        trace_print_json(stderr, o->trace_until);
    else if (o->trace_boot)
        trace_print_table(stderr, o->trace_until);
    return code;
}
