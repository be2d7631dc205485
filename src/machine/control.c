#include "machine/control.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "confine/confine.h"
#include "confine/jail.h"
#include "core/console.h"
#include "devices/virtio/net.h"
#include "migrate/migrate.h"
#include "util/err.h"
#include "util/trace.h"
#include "util/paths.h"

/* For the signal handler: the VM a signal stops. */
static struct vm *running_vm;

static void stop_on_signal(int sig)
{
    (void)sig;
    if (running_vm)
        vm_signal_stop(running_vm);
}

void machine_stop_on_signals(struct machine *m)
{
    running_vm = m ? machine_vm(m) : NULL;
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

static json_t *status(struct machine_control *s)
{
    const struct vm_config *cfg = vm_config(machine_vm(s->m));
    return json_pack("{s:b,s:s,s:i,s:s,s:i,s:I,s:f,s:I,s:I,s:s,s:s}", "ok", 1, "name", s->name, "pid",
                     (int)confine_host_pid(), "state", vm_paused(machine_vm(s->m)) ? "paused" : "running",
                     "cpus", (int)cfg->cpus, "mem_bytes", (json_int_t)cfg->mem_bytes,
                     "uptime_s", seconds_since(&s->started), "console_dropped",
                     (json_int_t)console_dropped(vm_console(machine_vm(s->m))), "net_dropped",
                     (json_int_t)virtio_net_dropped(), "confinement", confine_description(), "seccomp",
                     confine_seccomp_name());
}

static void save_progress(void *opaque, uint64_t done, uint64_t total)
{
    struct machine_control *s = opaque;
    control_progress(s->control, done, total);
}

/* Every save pauses the VM (vCPUs parked, each device's I/O thread between
 * requests) for as long as it reads the VM: the state must match the guest
 * exactly, and a disk copied while the guest writes it would be torn (a
 * metadata block from before a write, a data block from after). A failed
 * save gives the VM back as it found it, and says so. */
static json_t *save(struct machine_control *s, json_t *req)
{
    struct vm *vm = machine_vm(s->m);
    const char *path = json_string_value(json_object_get(req, "path"));
    struct machine_save_options o = {.with_state = !json_is_false(json_object_get(req, "memory")),
                                     .state_only = json_is_true(json_object_get(req, "state_only")),
                                     .flatten = json_is_true(json_object_get(req, "flatten")),
                                     .sign_key = json_string_value(json_object_get(req, "sign")),
                                     .progress = save_progress, .opaque = s};
    bool resume = json_is_true(json_object_get(req, "resume")), was_paused = vm_paused(vm);
    /* A jailed VM's save goes to its runtime folder and the caller moves
     * it where asked (machine/save_named.c): held paused until then, the
     * VM ends only once its bundle is there, and runs on if it cannot be. */
    bool hold = json_is_true(json_object_get(req, "hold"));
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
    answer = json_pack("{s:b,s:s,s:f,s:b}", "ok", 1, "path", path, "seconds", seconds_since(&t0),
                       "was_paused", was_paused);
    if (hold)
        ; /* the caller says what next: "stop", or "resume" */
    else if (!resume)
        vm_request_stop(vm, VM_STOP_USER); /* saved: this instance's job is done */
    else if (!was_paused)
        vm_resume(vm);
    return answer;
}

struct migration {
    struct machine_control *control;
    json_t *rounds;
};

static void migrate_progress(void *opaque, uint64_t done, uint64_t total)
{
    struct migration *mig = opaque;
    save_progress(mig->control, done, total);
}

/* Each pre-copy round as the answer lists it, and to the client as it
 * ends (`smolvm migrate` shows it live). */
static void migrate_round(void *opaque, const struct precopy *p)
{
    struct migration *mig = opaque;
    json_t *round = json_pack("{s:i,s:f,s:f,s:I,s:I,s:f,s:i}", "round", (int)p->round,
                              "dirty_rate", p->dirty_rate, "bandwidth", p->bandwidth,
                              "sent_bytes", (json_int_t)p->sent, "remaining_bytes",
                              (json_int_t)p->remaining, "expected_downtime_ms",
                              p->expected_downtime_ms, "throttle", (int)p->throttle);
    if (!round)
        return;
    control_note(mig->control->control, json_deep_copy(round));
    json_array_append_new(mig->rounds, round);
}

static bool whole(json_t *v)
{
    return !v || (json_is_integer(v) && json_integer_value(v) >= 0);
}

/* The link `smolvm migrate` connected and passed with the request: a
 * stream socket, or -1 with the answer's error in *why. */
static int passed_link(struct machine_control *s, json_t **why)
{
    int fd = control_take_fd(s->control), type = 0;
    socklen_t len = sizeof(type);

    if (fd < 0) {
        *why = control_error("migrate needs the link to the destination passed with the "
                             "request ('smolvm migrate' connects it)");
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
        close(fd);
        *why = control_error("the link passed with migrate is not a stream socket");
        return -1;
    }
    return fd;
}

/* Migration (migrate/migrate.h): once the destination runs the VM, this
 * one stops; a failure leaves it as it was, and says so. The VMM never
 * dials: jailed, it has neither the host's network nor its file system. */
static json_t *migrate(struct machine_control *s, json_t *req)
{
    json_t *cap = json_object_get(req, "max_bandwidth"),
           *downtime = json_object_get(req, "max_downtime_ms"), *why;
    struct migration mig = {.control = s};
    struct migrate_send_options o = {.max_bandwidth = (uint64_t)json_integer_value(cap),
                                     .live = json_is_true(json_object_get(req, "live")),
                                     .max_downtime_ms = downtime ? (uint64_t)json_integer_value(downtime) : 300,
                                     .progress = migrate_progress, .round = migrate_round,
                                     .opaque = &mig};
    struct migrate_send_result res;
    char *scratch;
    int r;

    if (!whole(cap) || !whole(downtime))
        return control_error("migrate needs whole \"max_bandwidth\" and \"max_downtime_ms\"");
    if ((o.link = passed_link(s, &why)) < 0)
        return why;
    if (!(scratch = paths_data_dir("migrate")) || !(mig.rounds = json_array())) {
        free(scratch);
        close(o.link);
        return control_error("%s", scratch ? "out of memory" : err_msg());
    }
    o.scratch_dir = scratch;
    r = migrate_send(s->m, &o, &res);
    free(scratch);
    if (r < 0) {
        json_decref(mig.rounds);
        return control_error("%s", err_msg());
    }
    vm_request_stop(machine_vm(s->m), VM_STOP_USER); /* it runs there now */
    return json_pack("{s:b,s:f,s:f,s:f,s:f,s:I,s:o,s:{s:f,s:f,s:f,s:f,s:f},s:{s:f,s:f,s:f,s:f,s:f,"
                     "s:f,s:f,s:I,s:I}}",
                     "ok", 1, "seconds", res.seconds, "downtime_ms", res.downtime * 1000,
                     "wind_down_ms", res.wind_down * 1000, "paused_at_unix_ms", res.paused_wall * 1000,
                     "bytes", (json_int_t)res.bytes, "rounds", mig.rounds, "downtime_split_ms",
                     "pages", res.pages * 1000, "save", res.save * 1000, "send",
                     res.send * 1000, "build", res.build * 1000, "handover",
                     res.handover * 1000, "stats_ms", "scan", res.scan * 1000, "copy",
                     res.copy * 1000, "pace", res.pace * 1000, "fetch", res.fetch * 1000,
                     "link_waiting", res.link.waiting * 1000, "link_io", res.link.io * 1000,
                     "checksums", res.link.crc * 1000, "frames", (json_int_t)res.link.frames,
                     "untouched_pages", (json_int_t)res.untouched);
}

/* The boot trace so far, as --trace-boot --json prints it at the end
 * (the web console's chart). */
static json_t *boot_trace(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    json_t *trace;

    if (!f)
        return control_error("out of memory");
    trace_print_json(f, NULL);
    fclose(f);
    trace = json_loadb(text ? text : "", len, 0, NULL);
    free(text);
    return trace ? json_pack("{s:b,s:o}", "ok", 1, "trace", trace)
                 : control_error("the boot trace is not JSON");
}

json_t *machine_control_handle(void *opaque, const char *command, json_t *req)
{
    struct machine_control *s = opaque;
    struct vm *vm = machine_vm(s->m);

    if (strcmp(command, "status") == 0)
        return status(s);
    if (strcmp(command, "trace") == 0)
        return boot_trace();
    if (strcmp(command, "pause") == 0)
        return vm_pause(vm) < 0 ? control_error("%s", err_msg()) : control_ok();
    if (strcmp(command, "resume") == 0) {
        vm_resume(vm);
        return control_ok();
    }
    /* The guest decides: `smolvm stop` forces it off ("stop") when it has
     * not powered off in time. */
    if (strcmp(command, "shutdown") == 0)
        return vm_press_power_button(vm) < 0 ? control_error("%s", err_msg()) : control_ok();
    if (strcmp(command, "stop") == 0) {
        vm_request_stop(vm, VM_STOP_USER);
        return control_ok();
    }
    if (strcmp(command, "save") == 0)
        return save(s, req);
    if (strcmp(command, "migrate") == 0)
        return migrate(s, req);
    return control_error("unknown command '%s'", command);
}
