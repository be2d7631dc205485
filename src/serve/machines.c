/* The operations on machines behind the API. A machine is a store
 * instance, a running VM (its control socket answers), or both; nothing
 * is remembered between requests. Each running VM is a process of its
 * own, started as `smolvm start NAME --detach` starts it. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/control.h"
#include "api/spare.h"
#include "core/config.h"
#include "image/appliance.h"
#include "machine/instance.h"
#include "machine/save_named.h"
#include "machine/stop_named.h"
#include "serve/internal.h"
#include "store/store.h"
#include "util/err.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/paths.h"
#include "util/size.h"

extern char **environ;

const char *const api_create_fields[] = {"name", "from", "kernel", "initrd", "cmdline",
                                         "cpus", "mem", "verify", "share", NULL};
const char *const api_save_fields[] = {"output", "resume", "no-memory", "flatten", "sign", NULL};
const char *const api_stop_fields[] = {"timeout", "force", NULL};
const char *const api_no_fields[] = {NULL};

static char executable[PATH_MAX];

void api_set_executable(const char *path)
{
    snprintf(executable, sizeof(executable), "%s", path);
}

/* The VM's status answer (without "ok"), {"state": "busy"} when it is there
 * but does not take the request (a save in progress), NULL when no VM of
 * that name runs. */
json_t *machine_status(const char *name)
{
    json_t *req = json_pack("{s:s}", "command", "status"), *a = NULL;
    int r = control_request(name, req, &a);

    json_decref(req);
    err_clear();
    if (r == -ETIMEDOUT)
        return json_pack("{s:s}", "state", "busy");
    if (r < 0)
        return NULL;
    json_object_del(a, "ok");
    json_object_del(a, "name");
    return a;
}

/* The store's keys in snake_case; what only the store uses left out. */
static void add_instance_info(json_t *out, json_t *info)
{
    const char *key;
    json_t *value;

    json_object_foreach(info, key, value) {
        char k[64];
        snprintf(k, sizeof(k), "%s", key);
        for (char *p = k; *p; p++)
            *p = *p == '-' ? '_' : *p;
        if (strcmp(k, "pristine") != 0 && strcmp(k, "resume") != 0 && strcmp(k, "name") != 0)
            json_object_set(out, k, value);
    }
}

/* A machine as GET /machines/{name} shows it, from its instance's info
 * (NULL: no instance) and its VM's status; NULL when there is neither. */
static json_t *machine_view(const char *name, json_t *info)
{
    json_t *status = machine_status(name), *out;

    if (!info && !status)
        return NULL;
    out = json_pack("{s:s,s:s,s:b}", "name", name, "state", "stopped", "instance", info != NULL);
    if (info)
        add_instance_info(out, info);
    if (status)
        json_object_update(out, status);
    json_decref(status);
    return out;
}

/* The same, reading the instance from s (which may be NULL: no store). */
static json_t *machine_json(struct store *s, const char *name)
{
    json_t *info = s && store_name_ok(name) ? store_instance_info(s, name) : NULL, *out;

    err_clear();
    out = machine_view(name, info);
    json_decref(info);
    return out;
}

/* Adds the names of the control sockets in the runtime folders. */
static void running_names(json_t *names)
{
    char *dirs[PATHS_RUNTIME_MAX];
    int n = paths_runtime_dirs(dirs);

    for (int i = 0; i < n; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (len > 5 && strcmp(e->d_name + len - 5, ".sock") == 0) {
                e->d_name[len - 5] = 0;
                if (control_name_ok(e->d_name) && !json_object_get(names, e->d_name))
                    json_object_set_new(names, e->d_name, json_true());
            }
        }
        if (d)
            closedir(d);
    }
    paths_free(dirs, n);
}

static struct store *open_store(void)
{
    struct store *s = NULL;
    if (store_open(&s) < 0) {
        err_clear();
        return NULL;
    }
    return s;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void machines_list(struct api_reply *r)
{
    struct store *s = open_store();
    json_t *names = json_object(), *instances = json_array(), *list = json_array(), *x, *v;
    const char *key;
    size_t i, n = 0;

    /* names: each machine's instance info, or true for a VM alone */
    if (s && store_list(s, instances) == 0)
        json_array_foreach(instances, i, x)
            json_object_set(names, json_string_value(json_object_get(x, "name")) ?: "", x);
    err_clear();
    running_names(names);
    json_object_del(names, "");
    const char **sorted = calloc(json_object_size(names) + 1, sizeof(*sorted));
    json_object_foreach(names, key, v)
        if (sorted)
            sorted[n++] = key;
    if (sorted)
        qsort(sorted, n, sizeof(*sorted), by_name);
    for (i = 0; i < n; i++) {
        json_t *info = json_object_get(names, sorted[i]);
        if ((x = machine_view(sorted[i], json_is_object(info) ? info : NULL)))
            json_array_append_new(list, x);
    }
    free(sorted);
    json_decref(names);
    json_decref(instances);
    store_close(s);
    api_ok(r, 200, list);
}

void machines_inspect(const char *name, struct api_reply *r)
{
    struct store *s = open_store();
    json_t *m = machine_json(s, name);

    store_close(s);
    if (m)
        api_ok(r, 200, m);
    else
        api_fail(r, 404, "not_found", "no machine '%s'", name);
}

/* A string field, or NULL; false (the reply set) when it is not one. */
static bool string_field(json_t *body, const char *key, const char **out, struct api_reply *r)
{
    json_t *v = json_object_get(body, key);
    *out = json_string_value(v);
    if (v && (!*out || !**out || strlen(*out) != json_string_length(v))) {
        api_fail(r, 400, "invalid_value", "'%s' must be a non-empty string", key);
        return false;
    }
    return true;
}

static bool bool_field(json_t *body, const char *key, bool *out, struct api_reply *r)
{
    json_t *v = json_object_get(body, key);
    if (v && !json_is_boolean(v)) {
        api_fail(r, 400, "invalid_value", "'%s' must be true or false", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* "cpus": 2 or "2"; "mem": "512M" or a number of MiB, as --mem takes. */
static bool sizes(json_t *body, struct store_create_request *q, struct api_reply *r)
{
    json_t *cpus = json_object_get(body, "cpus"), *mem = json_object_get(body, "mem");
    char text[32];

    if (cpus) {
        long long v = json_is_integer(cpus) ? json_integer_value(cpus)
                      : json_is_string(cpus) ? strtoll(json_string_value(cpus), NULL, 10) : 0;
        if (v < 1 || v > VM_MAX_CPUS) {
            api_fail(r, 400, "invalid_value", "'cpus' must be a number from 1 to %d",
                     VM_MAX_CPUS);
            return false;
        }
        q->cpus = (unsigned)v;
    }
    if (mem) {
        if (json_is_integer(mem) && json_integer_value(mem) > 0)
            snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(mem));
        else if (json_is_string(mem))
            snprintf(text, sizeof(text), "%s", json_string_value(mem));
        else
            text[0] = 0;
        if (size_parse(text, 1ull << 20, &q->mem_bytes) < 0 || !q->mem_bytes) {
            err_clear();
            api_fail(r, 400, "invalid_value", "'mem' must be a size such as \"512M\"");
            return false;
        }
    }
    return true;
}

struct shares;
static void create_with(json_t *body, struct shares *sh, struct api_reply *r);

struct shares {
    struct vm_share_config list[VM_MAX_SHARES];
    char *specs[VM_MAX_SHARES];
    unsigned count;
};

static void shares_free(struct shares *sh)
{
    for (unsigned i = 0; i < sh->count; i++)
        free((char *)sh->list[i].path);
    for (unsigned i = 0; i < VM_MAX_SHARES; i++)
        free(sh->specs[i]);
}

/* "share": one "HOSTDIR[:TAG][,ro]" or an array of them, as create --share
 * (one parser); absolute folders only, the daemon's folder being none of
 * the client's. False with r set when they are not right. */
static bool shares_field(json_t *body, struct shares *sh, struct api_reply *r)
{
    json_t *v = json_object_get(body, "share"), *one = json_is_string(v) ? v : NULL, *item;
    size_t i, n = one ? 1 : json_array_size(v);

    if (!v)
        return true;
    if ((!one && !json_is_array(v)) || n > VM_MAX_SHARES) {
        api_fail(r, 400, "invalid_value", "'share' is \"HOSTDIR[:TAG][,ro]\" or an array of at "
                                          "most %d of them", VM_MAX_SHARES);
        return false;
    }
    for (i = 0; i < n; i++) {
        const char *spec = json_string_value(item = one ? one : json_array_get(v, i));
        if (!spec || spec[0] != '/') {
            api_fail(r, 400, "invalid_value", "'share': each is \"HOSTDIR[:TAG][,ro]\" with an "
                                              "absolute HOSTDIR");
            return false;
        }
        if (!(sh->specs[i] = strdup(spec)) || vm_share_parse(sh->specs[i], sh->list, &sh->count) < 0) {
            api_fail(r, 400, "invalid_value", "'share': %s", sh->specs[i] ? err_msg() : "out of memory");
            err_clear();
            return false;
        }
    }
    return true;
}

void machines_create(json_t *body, struct api_reply *r)
{
    struct shares sh = {0};

    create_with(body, &sh, r);
    shares_free(&sh);
}

static void create_with(json_t *body, struct shares *sh, struct api_reply *r)
{
    struct store_create_request q = {0};
    struct store *s;
    int e;

    if (!body || !string_field(body, "name", &q.name, r) || !q.name ||
        !string_field(body, "from", &q.from, r) || !q.from) {
        if (!r->json)
            api_fail(r, 400, "invalid_value", "'name' and 'from' are required");
        return;
    }
    if (!string_field(body, "kernel", &q.kernel, r) || !string_field(body, "initrd", &q.initrd, r) ||
        !string_field(body, "cmdline", &q.cmdline, r) ||
        !string_field(body, "verify", &q.trusted_key, r) || !sizes(body, &q, r) ||
        !shares_field(body, sh, r))
        return;
    q.shares = sh->list;
    q.share_count = sh->count;
    /* The daemon's folder is no concern of the client's. */
    if ((q.from[0] != '/' && !hash_is_hex(q.from)) || (q.kernel && q.kernel[0] != '/') ||
        (q.initrd && q.initrd[0] != '/') || (q.trusted_key && q.trusted_key[0] != '/'))
        return api_fail(r, 400, "invalid_value", "'from' (unless a layer's hash), 'kernel', "
                                                 "'initrd' and 'verify' must be absolute paths");
    if (!store_name_ok(q.name) || !control_name_ok(q.name))
        return api_fail(r, 400, "invalid_name", "'%s' is not a machine name (1-64 letters, "
                                                "digits, '.', '_', '-')", q.name);
    /* As `smolvm create`: an appliance gets the user network. */
    static const struct vm_net_config user_net = {.mode = VM_NET_USER, .fd = -1};
    if (appliance_folder(q.from))
        q.net = &user_net;
    if (store_open(&s) < 0)
        return api_fail_errno(r, EIO);
    e = store_create_from(s, &q);
    if (e == 0) {
        api_ok(r, 201, machine_json(s, q.name));
    } else if (e == -EEXIST) {
        api_fail_errno(r, EEXIST);
    } else if (e == -ENOENT || e == -EINVAL || e == -EACCES || e == -ENOTDIR) {
        api_fail(r, 400, "invalid_value", "%s", err_msg()); /* the client named it */
        err_clear();
    } else {
        api_fail_errno(r, -e);
    }
    store_close(s);
}

void machines_delete(const char *name, struct api_reply *r)
{
    json_t *status = machine_status(name);
    struct store *s;
    int e;

    if (status) {
        json_decref(status);
        return api_fail(r, 409, "running", "'%s' is running: stop it first", name);
    }
    if (!store_name_ok(name) || store_open(&s) < 0)
        return api_fail(r, 404, "not_found", "no instance '%s'", name);
    e = store_remove(s, name);
    store_close(s);
    if (e < 0)
        return api_fail_errno(r, -e);
    api_ok(r, 200, json_pack("{s:s,s:b}", "name", name, "removed", 1));
}

/* How the daemon starts VMs (api_set_vm_options()): the spare only once
 * the daemon asks (the API's tests in process start none). */
static bool vms_confined = true, spare_kept = false;

void api_set_vm_options(bool confined, bool keep_spare)
{
    vms_confined = confined;
    spare_kept = keep_spare;
}

/* `smolvm start` with the daemon's options after the first of argv's (a
 * name, or --spare-fd FD): --detach, and --jail (the daemon's VMs are
 * confined) or, for tests and benchmarks only, --seccomp=off. */
static void start_argv(char *argv[8], char *first, char *second)
{
    unsigned n = 0;

    argv[n++] = "smolvm";
    argv[n++] = "start";
    argv[n++] = first;
    if (second)
        argv[n++] = second;
    argv[n++] = "--detach";
    argv[n++] = vms_confined ? "--jail" : "--seccomp=off";
    argv[n] = NULL;
}

/* A `smolvm start` process: stdin /dev/null, stdout and stderr into a pipe
 * whose end *output is (read until its end, then the process waited for:
 * start_outcome()); fd 3 pair when it is >= 0 (a spare's). 0 or an errno. */
static int spawn_start(char *const argv[], int pair, pid_t *pid, int *output)
{
    posix_spawn_file_actions_t fa;
    int fds[2];

    if (pipe2(fds, O_CLOEXEC) < 0)
        return errno;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
    if (pair >= 0)
        posix_spawn_file_actions_adddup2(&fa, pair, 3);
    int e = posix_spawn(pid, executable, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (e)
        close(fds[0]);
    else
        *output = fds[0];
    return e;
}

/* The spare VMM (api/spare.h): one `smolvm start --spare-fd 3 --detach`
 * made ahead of the next start, its end of the pair, its output. */
struct spare {
    pid_t pid; /* 0: none */
    int pair, output;
};
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spare spare;

/* What a jailed spare leaves when no VM of its own removes it: the
 * folder its root was built on ahead (api/spare.h; empty on the host). */
static void spare_root_remove(pid_t pid)
{
    char *root = spare_root_dir(pid);

    if (root)
        rmdir(root);
    free(root);
}

/* A spare that will start nothing: killed (it made nothing yet but its
 * root's folder: it makes the machine's only once told SPARE_GO, which a
 * daemon that gave up on its answer never sends) and waited for. */
static void spare_discard(struct spare *s)
{
    kill(s->pid, SIGKILL);
    while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    close(s->pair);
    close(s->output);
    spare_root_remove(s->pid);
    s->pid = 0;
}

void api_spare_make(void)
{
    char *argv[8];
    int pair[2];

    static bool swept;

    pthread_mutex_lock(&spare_lock);
    if (spare_kept && !swept)
        spare_roots_sweep(), swept = true;
    if (spare_kept && !spare.pid && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0) {
        start_argv(argv, "--spare-fd", "3");
        if (spawn_start(argv, pair[1], &spare.pid, &spare.output) == 0)
            spare.pair = pair[0];
        else
            spare.pid = 0, close(pair[0]);
        close(pair[1]);
    }
    pthread_mutex_unlock(&spare_lock);
}

/* The spare told to start name: *pid and *output, as spawn_start() gives
 * them. false when there was none, or it did not take the name (died,
 * never answered): the start goes the normal way. */
static bool spare_take(const char *name, pid_t *pid, int *output)
{
    struct spare s;

    pthread_mutex_lock(&spare_lock);
    s = spare;
    spare.pid = 0;
    pthread_mutex_unlock(&spare_lock);
    if (!s.pid)
        return false;
    if (spare_give_name(s.pair, name, SPARE_ANSWER_MS) < 0) {
        spare_discard(&s);
        return false;
    }
    close(s.pair);
    *pid = s.pid;
    *output = s.output;
    return true;
}

void api_spare_end(void)
{
    pthread_mutex_lock(&spare_lock);
    if (spare.pid) {
        /* Its pair closed: a spare waiting for a name ends at once, as
         * one still planning does once it would wait. Not waited for
         * longer than a second or so: then killed. */
        close(spare.pair);
        spare.pair = -1;
        pid_t ended = 0;
        for (int i = 0; i < 100 && (ended = waitpid(spare.pid, NULL, WNOHANG)) == 0; i++)
            usleep(10000);
        if (ended == spare.pid) {
            close(spare.output);
            spare_root_remove(spare.pid);
            spare.pid = 0;
        } else {
            spare_discard(&spare);
        }
    }
    pthread_mutex_unlock(&spare_lock);
}

/* The last line a command printed, without "smolvm: VERB: ". */
static const char *last_line(char *out)
{
    char *end = out + strlen(out), *line;
    while (end > out && end[-1] == '\n')
        *--end = 0;
    line = strrchr(out, '\n');
    line = line ? line + 1 : out;
    if (strncmp(line, "smolvm: ", 8) == 0 && strchr(line + 8, ':'))
        line = strchr(line + 8, ':') + 2;
    return *line ? line : "the VM did not start";
}

/* A start's output read to its end, the process waited for, the reply;
 * whether it started. */
static bool start_outcome(const char *name, pid_t pid, int output, struct api_reply *r)
{
    char out[4096];
    size_t len = 0;
    ssize_t n;
    int status;

    while ((n = read(output, out + len, sizeof(out) - 1 - len)) > 0 ||
           (n < 0 && errno == EINTR))
        if (n > 0 && (len += (size_t)n) == sizeof(out) - 1)
            len = 0; /* only the end matters */
    out[len] = 0;
    close(output);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        struct store *s = open_store();
        json_t *m = machine_json(s, name);
        store_close(s);
        api_ok(r, 200, m ? m : json_pack("{s:s,s:s,s:b}", "name", name, "state", "stopped",
                                         "instance", 1));
        return true;
    }
    const char *why = last_line(out);
    if (strstr(why, "is already running")) /* a start of the same name won the race */
        api_fail(r, 409, "already_running", "%s", why);
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
        api_fail(r, 400, "invalid_value", "%s", why);
    else
        api_fail(r, 500, "start_failed", "%s", why);
    return false;
}

/* `smolvm start NAME --detach`: the VM becomes a process of its own (in
 * its own session: it outlives this daemon), started exactly as the CLI
 * starts it, and confined (--jail: the daemon's VMs are always jailed,
 * but for tests' --no-confine). Through the spare when there is one (the
 * same start, made ahead: api/spare.h), then the next spare made. */
static void start(const char *name, struct api_reply *r)
{
    char *argv[8];
    int output, e = 0;
    pid_t pid;
    bool spared = spare_take(name, &pid, &output);

    if (!spared) {
        start_argv(argv, (char *)name, NULL);
        e = spawn_start(argv, -1, &pid, &output);
    }
    if (e)
        api_fail(r, 500, "failed", "%s: %s", executable, strerror(e));
    else if (!start_outcome(name, pid, output, r) && spared)
        spare_root_remove(pid); /* a VM that started removes it when it ends */
    api_spare_make();
}

/* Sends one request to a running VM; the answer (minus "ok") or the
 * reply set. */
static json_t *ask(const char *name, json_t *req, long work_ms, struct api_reply *r)
{
    json_t *a = NULL;
    int e = control_request_progress(name, req, &a, work_ms, NULL, NULL);

    json_decref(req);
    if (e < 0) {
        api_fail_errno(r, -e);
        return NULL;
    }
    if (!json_is_true(json_object_get(a, "ok"))) {
        const char *why = json_string_value(json_object_get(a, "error"));
        api_fail(r, 409, "refused", "%s: %s", name, why ? why : "failed");
        json_decref(a);
        return NULL;
    }
    json_object_del(a, "ok");
    return a;
}

/* Saves in progress, {name: {"done", "total"}}: GET /events reports them. */
static pthread_mutex_t progress_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *progress;

static void save_progress(void *opaque, uint64_t done, uint64_t total)
{
    pthread_mutex_lock(&progress_lock);
    if (!progress)
        progress = json_object();
    json_object_set_new(progress, opaque, json_pack("{s:I,s:I}", "done", (json_int_t)done,
                                                    "total", (json_int_t)total));
    pthread_mutex_unlock(&progress_lock);
}

static void save_done(const char *name)
{
    pthread_mutex_lock(&progress_lock);
    json_object_del(progress, name);
    pthread_mutex_unlock(&progress_lock);
}

json_t *machines_progress(void)
{
    json_t *copy;
    pthread_mutex_lock(&progress_lock);
    copy = progress ? json_deep_copy(progress) : json_object();
    pthread_mutex_unlock(&progress_lock);
    return copy;
}

/* As `smolvm save` (the same machine_save_named): with "output" (an
 * absolute path), a bundle; without, a running store instance suspended
 * into its folder. */
static void save(const char *name, json_t *body, bool running, struct api_reply *r)
{
    struct machine_save_request q = {0};
    char *path;
    double seconds;
    int e;

    if (!string_field(body, "output", &q.output, r) || !string_field(body, "sign", &q.sign_key, r) ||
        !bool_field(body, "resume", &q.resume, r) || !bool_field(body, "no-memory", &q.no_memory, r) ||
        !bool_field(body, "flatten", &q.flatten, r))
        return;
    if ((q.output && q.output[0] != '/') || (q.sign_key && q.sign_key[0] != '/'))
        return api_fail(r, 400, "invalid_value", "'output' and 'sign' must be absolute paths");
    if (!q.output && (q.resume || q.no_memory || q.flatten || q.sign_key))
        return api_fail(r, 400, "invalid_value", "'resume', 'no-memory', 'flatten' and 'sign' "
                                                 "need 'output'");
    if (!q.output && !running)
        return api_fail(r, 409, "not_running", "no VM '%s' is running", name);
    q.progress = save_progress;
    q.opaque = (void *)name;
    e = machine_save_named(name, &q, &path, &seconds);
    save_done(name);
    if (e == -ESRCH)
        return api_fail(r, 409, "not_running", "%s", err_msg());
    if (e == -ECANCELED)
        return api_fail(r, 409, "refused", "%s", err_msg());
    if (e < 0)
        return api_fail_errno(r, -e);
    api_ok(r, 200, json_pack("{s:s,s:f}", "path", path, "seconds", seconds));
    free(path);
}

/* As `smolvm reset NAME`: the instance's delta emptied. */
static void reset(const char *name, struct api_reply *r)
{
    struct store *s;
    int e;

    if (!store_name_ok(name) || store_open(&s) < 0)
        return api_fail(r, 404, "not_found", "no instance '%s'", name);
    e = store_reset(s, name);
    if (e == 0)
        api_ok(r, 200, machine_json(s, name));
    else
        api_fail_errno(r, -e);
    store_close(s);
}

static int by_created(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t cx = json_integer_value(json_object_get(x, "created"));
    json_int_t cy = json_integer_value(json_object_get(y, "created"));
    return cx != cy ? (cx > cy) - (cx < cy)
                    : strcmp(json_string_value(json_object_get(x, "hash")) ?: "",
                             json_string_value(json_object_get(y, "hash")) ?: "");
}

/* As `smolvm layers --json`: oldest first, keys in snake_case. */
void layers_list(struct api_reply *r)
{
    json_t *all = json_array(), *out = json_array(), *x, **items;
    struct store *s = NULL;
    size_t i, n;
    int e = store_open(&s);

    if (e == 0)
        e = store_list_layers(s, all);
    store_close(s);
    if (e < 0) {
        json_decref(all);
        json_decref(out);
        return api_fail_errno(r, -e);
    }
    n = json_array_size(all);
    items = calloc(n + 1, sizeof(*items));
    json_array_foreach(all, i, x)
        if (items)
            items[i] = x;
    if (items)
        qsort(items, n, sizeof(*items), by_created);
    for (i = 0; items && i < n; i++) {
        json_t *layer = json_object();
        add_instance_info(layer, items[i]);
        json_object_set(layer, "hash", json_object_get(items[i], "hash"));
        json_array_append_new(out, layer);
    }
    free(items);
    json_decref(all);
    api_ok(r, 200, out);
}

void layers_delete(const char *hash, struct api_reply *r)
{
    struct store *s;
    int e = store_open(&s);

    if (e == 0) {
        e = store_remove_layer(s, hash);
        store_close(s);
    }
    if (e < 0)
        return api_fail_errno(r, -e);
    api_ok(r, 200, json_pack("{s:s,s:b}", "hash", hash, "removed", 1));
}

void layers_gc(struct api_reply *r)
{
    struct store *s;
    unsigned removed = 0;
    int e = store_open(&s);

    if (e == 0) {
        e = store_gc(s, &removed);
        store_close(s);
    }
    if (e < 0)
        return api_fail_errno(r, -e);
    api_ok(r, 200, json_pack("{s:i}", "layers_removed", (int)removed));
}

/* The body of a stop: "timeout" (seconds, default 10) and "force". */
static bool stop_options(json_t *body, unsigned *timeout, bool *force, struct api_reply *r)
{
    json_t *t = json_object_get(body, "timeout");

    if (!bool_field(body, "force", force, r))
        return false;
    if (t && (!json_is_integer(t) || json_integer_value(t) < 0 ||
              json_integer_value(t) > MACHINE_STOP_TIMEOUT_MAX_S)) {
        api_fail(r, 400, "invalid_value", "'timeout' must be whole seconds, 0-%d",
                 MACHINE_STOP_TIMEOUT_MAX_S);
        return false;
    }
    *timeout = t ? (unsigned)json_integer_value(t) : MACHINE_STOP_TIMEOUT_S;
    return true;
}

/* As `smolvm stop` (the same machine_stop_named): the power button, then
 * forced after the timeout, or at once with force. */
static void stop(const char *name, unsigned timeout, bool force, struct api_reply *r)
{
    bool forced;
    int e = machine_stop_named(name, timeout, force, &forced);

    if (e < 0)
        return api_fail(r, 409, e == -ESRCH ? "not_running" : "refused", "%s", err_msg());
    api_ok(r, 200, json_pack("{s:s,s:s,s:b}", "name", name, "state", "stopped", "forced", forced));
}

void machines_action(const char *name, const char *action, json_t *body, struct api_reply *r)
{
    bool is_stop = strcmp(action, "stop") == 0, force = false;
    unsigned timeout = 0;
    json_t *status, *a;

    if (is_stop && !stop_options(body, &timeout, &force, r))
        return;
    status = machine_status(name);
    bool running = status != NULL;
    const char *state = json_string_value(json_object_get(status, "state"));
    bool busy = state && strcmp(state, "busy") == 0;

    json_decref(status);
    if (strcmp(action, "start") == 0) {
        struct store *s;
        json_t *info;
        if (running)
            return api_fail(r, 409, "already_running", "'%s' is running already", name);
        if (!store_name_ok(name) || store_open(&s) < 0)
            return api_fail(r, 404, "not_found", "no instance '%s'", name);
        info = store_instance_info(s, name);
        store_close(s);
        err_clear();
        if (!info)
            return api_fail(r, 404, "not_found", "no instance '%s'", name);
        json_decref(info);
        return start(name, r);
    }
    if (strcmp(action, "save") == 0)
        return save(name, body, running, r);
    if (strcmp(action, "reset") == 0)
        return running ? api_fail(r, 409, "running", "'%s' is running: stop it first", name)
                       : reset(name, r);
    if (!running) {
        struct store *s = open_store();
        json_t *info = s && store_name_ok(name) ? store_instance_info(s, name) : NULL;
        store_close(s);
        err_clear();
        if (!info)
            return api_fail(r, 404, "not_found", "no machine '%s'", name);
        json_decref(info);
        return api_fail(r, 409, "not_running", "'%s' is not running", name);
    }
    if (busy)
        return api_fail(r, 409, "busy", "'%s' is busy with another request", name);
    if (is_stop)
        return stop(name, timeout, force, r);
    if ((a = ask(name, json_pack("{s:s}", "command", action), CONTROL_WORK_MS, r))) {
        json_decref(a);
        api_ok(r, 200, json_pack("{s:s,s:s}", "name", name, "state",
                                 strcmp(action, "pause") == 0 ? "paused"
                                 : strcmp(action, "resume") == 0 ? "running" : "stopped"));
    }
}

void machines_console(const char *name, struct api_reply *r)
{
    json_t *status = machine_status(name);

    if (!status)
        return api_fail(r, 404, "not_found", "no VM '%s' is running", name);
    json_decref(status);
    machines_logs(name, true, r);
    r->websocket = r->status == 200;
    if (r->websocket) {
        /* A VM from before console sockets shows its console, reading nothing. */
        int input = control_connect(name, "console");
        if (input >= 0)
            log_stream_input(&r->stream, input);
        err_clear();
    }
}

int machine_trace(const char *name, json_t **trace)
{
    json_t *req = json_pack("{s:s}", "command", "trace"), *a = NULL;
    int e = control_request(name, req, &a);

    json_decref(req);
    *trace = NULL;
    if (e == 0 && json_is_object(json_object_get(a, "trace")))
        *trace = json_incref(json_object_get(a, "trace"));
    else if (e == 0)
        e = -ENOTSUP;
    json_decref(a);
    return e;
}

void machines_trace(const char *name, struct api_reply *r)
{
    json_t *trace;
    int e = machine_trace(name, &trace);

    if (e == -ENOENT)
        api_fail(r, 404, "not_found", "no VM '%s' is running", name);
    else if (e == -ENOTSUP)
        api_fail(r, 500, "failed", "VM '%s' has no boot trace (an older smolvm runs it)", name);
    else if (e < 0)
        api_fail_errno(r, -e);
    else
        api_ok(r, 200, trace);
    err_clear();
}

int machine_log_paths(const char *name, char **current, char **older)
{
    char *dir;

    *current = *older = NULL;
    if (control_dir(&dir) < 0)
        return -ENOENT;
    if (asprintf(current, "%s/%s.log", dir, name) < 0)
        *current = NULL;
    if (asprintf(older, "%s/%s.log.1", dir, name) < 0)
        *older = NULL;
    free(dir);
    if (*current && *older)
        return 0;
    free(*current);
    free(*older);
    return -ENOMEM;
}

/* Appends what f holds to r's text, and closes f; false when f is NULL. */
static bool append_stream(FILE *f, struct api_reply *r)
{
    char buf[65536];
    size_t n;

    if (!f)
        return false;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        char *grown = realloc(r->text, r->text_len + n + 1);
        if (!grown)
            break;
        r->text = grown;
        memcpy(r->text + r->text_len, buf, n);
        r->text_len += n;
        r->text[r->text_len] = 0;
    }
    fclose(f);
    return true;
}

/* Appends what path holds to r's text; false when there is no such file. */
bool api_append_file(const char *path, struct api_reply *r)
{
    return append_stream(fopen(path, "r"), r);
}

/* The log of a detached VM: NAME.log.1 then NAME.log, as the guest wrote
 * them; followed, for as long as the VM runs. */
void machines_logs(const char *name, bool follow, struct api_reply *r)
{
    char *current, *older;
    int e = machine_log_paths(name, &current, &older);

    if (e < 0)
        return api_fail(r, 404, "not_found", "no log for '%s'", name);
    if (access(current, R_OK) < 0) {
        free(current);
        free(older);
        return api_fail(r, 404, "not_found", "no log for '%s' (was it started detached?)", name);
    }
    r->status = 200;
    r->content_type = "text/plain; charset=utf-8";
    if (follow) {
        if (log_stream(name, current, older, &r->stream) < 0)
            api_fail(r, 500, "failed", "out of memory");
        return; /* the paths are the stream's */
    }
    /* Written by the VM: read only where it is its log (file_open_beneath). */
    append_stream(file_fopen_beneath(older), r);
    append_stream(file_fopen_beneath(current), r);
    free(current);
    free(older);
    if (!r->text && !(r->text = strdup("")))
        api_fail(r, 500, "failed", "out of memory");
}

void machines_events(struct api_reply *r)
{
    if (events_stream(&r->stream) < 0)
        return api_fail(r, 500, "failed", "out of memory");
    r->status = 200;
    r->content_type = "text/event-stream";
}

/* {name: state} for every machine (events compare one with the next). */
json_t *machines_states(void)
{
    struct api_reply r = {0};
    json_t *states = json_object(), *m;
    size_t i;

    machines_list(&r);
    json_array_foreach(r.json, i, m)
        json_object_set(states, json_string_value(json_object_get(m, "name")),
                        json_object_get(m, "state"));
    api_reply_release(&r);
    return states;
}

/* utime + stime in seconds and the resident set of process pid. */
static bool process_usage(long pid, double *cpu, unsigned long long *rss)
{
    char path[64], buf[1024], *p;
    unsigned long long utime, stime;
    long pages;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r")))
        return false;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* After the command's ")": field 3 on; utime and stime are 14, 15,
     * rss 24. */
    if (!(p = strrchr(buf, ')')) ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                      "%*d %*d %*u %*u %ld", &utime, &stime, &pages) != 3)
        return false;
    *cpu = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    *rss = (unsigned long long)pages * (unsigned long long)sysconf(_SC_PAGESIZE);
    return true;
}

static void append(char **text, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char **text, size_t *len, const char *fmt, ...)
{
    char line[512], *grown;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) || !(grown = realloc(*text, *len + (size_t)n + 1)))
        return;
    memcpy(grown + *len, line, (size_t)n + 1);
    *text = grown;
    *len += (size_t)n;
}

/* Prometheus text format (version 0.0.4): one series per running VM. */
void machines_metrics(struct api_reply *r)
{
    static const struct { const char *name, *type, *help; } series[] = {
        {"smolvm_machine_up", "gauge", "1 for each running VM (state: running, paused, busy)"},
        {"smolvm_machine_cpu_seconds_total", "counter", "CPU time of the VM's process"},
        {"smolvm_machine_rss_bytes", "gauge", "resident memory of the VM's process"},
        {"smolvm_machine_memory_bytes", "gauge", "guest RAM"},
        {"smolvm_machine_uptime_seconds", "gauge", "seconds since the VM started"},
        {"smolvm_machine_console_dropped_bytes_total", "counter", "console bytes dropped"},
    };
    json_t *names = json_object(), *v, *status[256];
    const char *key, *keys[256];
    size_t len = 0, n = 0;
    char *text = strdup("");

    running_names(names);
    json_object_foreach(names, key, v)
        if (n < 256 && (status[n] = machine_status(key)))
            keys[n++] = key;
    for (size_t s = 0; s < sizeof(series) / sizeof(series[0]); s++) {
        append(&text, &len, "# HELP %s %s\n# TYPE %s %s\n", series[s].name, series[s].help,
               series[s].name, series[s].type);
        for (size_t i = 0; i < n; i++) {
            const char *state = json_string_value(json_object_get(status[i], "state"));
            long pid = (long)json_integer_value(json_object_get(status[i], "pid"));
            double cpu = 0;
            unsigned long long rss = 0;
            bool usage = pid > 0 && process_usage(pid, &cpu, &rss);
            if (s == 0)
                append(&text, &len, "%s{name=\"%s\",state=\"%s\"} 1\n", series[s].name, keys[i],
                       state ? state : "running");
            else if (s == 1 && usage)
                append(&text, &len, "%s{name=\"%s\"} %.2f\n", series[s].name, keys[i], cpu);
            else if (s == 2 && usage)
                append(&text, &len, "%s{name=\"%s\"} %llu\n", series[s].name, keys[i], rss);
            else if (s == 3 && json_object_get(status[i], "mem_bytes"))
                append(&text, &len, "%s{name=\"%s\"} %lld\n", series[s].name, keys[i],
                       (long long)json_integer_value(json_object_get(status[i], "mem_bytes")));
            else if (s == 4 && json_object_get(status[i], "uptime_s"))
                append(&text, &len, "%s{name=\"%s\"} %.3f\n", series[s].name, keys[i],
                       json_real_value(json_object_get(status[i], "uptime_s")));
            else if (s == 5 && json_object_get(status[i], "console_dropped"))
                append(&text, &len, "%s{name=\"%s\"} %lld\n", series[s].name, keys[i],
                       (long long)json_integer_value(json_object_get(status[i], "console_dropped")));
        }
    }
    for (size_t i = 0; i < n; i++)
        json_decref(status[i]);
    json_decref(names);
    if (!text)
        return api_fail(r, 500, "failed", "out of memory");
    r->status = 200;
    r->text = text;
    r->text_len = len;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
