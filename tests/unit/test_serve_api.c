/* The REST API without its HTTP server (src/serve/api.c, machines.c):
 * routing, request bodies (bad JSON, unknown fields, wrong types, too
 * large), and the machine operations against a real store and a fake VM
 * answering on a control socket, as a detached VM does; exec and files
 * against the guest agent itself, run on the host (smolvm-agent --unix). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "api/control.h"
#include "serve/api.h"

#include "control_loop.h"
#include "scratch.h"

static void route_is(const char *method, const char *path, unsigned status, enum api_route route,
                     const char *name, const char *action)
{
    struct api_match m;
    json_t *error;
    unsigned got = api_route(method, path, &m, &error);

    assert_int_equal(got, status);
    if (status) {
        assert_non_null(json_string_value(json_object_get(error, "code")));
        assert_non_null(json_string_value(json_object_get(error, "message")));
        json_decref(error);
        return;
    }
    assert_null(error);
    assert_int_equal(m.route, route);
    if (name)
        assert_string_equal(m.name, name);
    if (action)
        assert_string_equal(m.action, action);
}

static void routes(void **state)
{
    (void)state;
    route_is("GET", "/machines", 0, API_LIST, NULL, NULL);
    route_is("GET", "/machines?all=1", 0, API_LIST, NULL, NULL);
    route_is("POST", "/machines", 0, API_CREATE, NULL, NULL);
    route_is("PUT", "/machines", 405, 0, NULL, NULL);
    route_is("GET", "/machines/web", 0, API_INSPECT, "web", NULL);
    route_is("DELETE", "/machines/web", 0, API_DELETE, "web", NULL);
    route_is("POST", "/machines/web", 405, 0, NULL, NULL);
    for (const char *const *a = (const char *const[]){"start", "stop", "pause", "resume", "save",
                                                      NULL}; *a; a++) {
        char path[64];
        snprintf(path, sizeof(path), "/machines/web-2.x/%s", *a);
        route_is("POST", path, 0, API_ACTION, "web-2.x", *a);
        route_is("GET", path, 405, 0, NULL, NULL);
    }
    route_is("GET", "/machines/web/logs", 0, API_LOGS, "web", "logs");
    route_is("POST", "/machines/web/reboot", 404, 0, NULL, NULL);
    route_is("POST", "/machines/web/start/now", 404, 0, NULL, NULL);
    route_is("GET", "/machines//start", 404, 0, NULL, NULL);
    route_is("GET", "/machines/..", 400, 0, NULL, NULL);
    route_is("GET", "/machines/.hidden", 400, 0, NULL, NULL);
    route_is("GET", "/machines/a%2Fb", 400, 0, NULL, NULL);
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name));
    memcpy(long_name, "/machines/", 10);
    long_name[sizeof(long_name) - 1] = 0;
    route_is("GET", long_name, 404, 0, NULL, NULL);
    route_is("GET", "/openapi.json", 0, API_OPENAPI, NULL, NULL);
    route_is("GET", "/metrics", 0, API_METRICS, NULL, NULL);
    route_is("GET", "/events", 0, API_EVENTS, NULL, NULL);
    route_is("GET", "/layers", 0, API_LAYERS, NULL, NULL);
    route_is("POST", "/gc", 0, API_GC, NULL, NULL);
    route_is("GET", "/gc", 405, 0, NULL, NULL);
    route_is("POST", "/machines/web/reset", 0, API_ACTION, "web", "reset");
    route_is("GET", "/", 0, API_PAGE, NULL, NULL);
    route_is("GET", "/?token=x", 0, API_PAGE, NULL, NULL);
    route_is("POST", "/", 405, 0, NULL, NULL);
    route_is("GET", "/static/xterm.js", 0, API_STATIC, "xterm.js", NULL);
    route_is("GET", "/static/xterm.css", 0, API_STATIC, "xterm.css", NULL);
    route_is("GET", "/static/../../etc/passwd", 404, 0, NULL, NULL);
    route_is("GET", "/static/other.js", 404, 0, NULL, NULL);
    route_is("GET", "/machines/web/console", 0, API_CONSOLE, "web", "console");
    route_is("POST", "/machines/web/console", 405, 0, NULL, NULL);
    route_is("GET", "/etc/passwd", 404, 0, NULL, NULL);
}

static const char *const fields[] = {"name", "from", NULL};

static void body_is(const char *body, unsigned status, const char *code)
{
    json_t *out, *error;
    unsigned got = api_parse_body(body, strlen(body), fields, &out, &error);

    assert_int_equal(got, status);
    if (status) {
        assert_null(out);
        assert_string_equal(json_string_value(json_object_get(error, "code")), code);
        json_decref(error);
    } else {
        assert_null(error);
        json_decref(out);
    }
}

static void bodies(void **state)
{
    (void)state;
    body_is("", 0, NULL);
    body_is("{}", 0, NULL);
    body_is("{\"name\":\"a\",\"from\":\"/x\"}", 0, NULL);
    body_is("{\"name\":", 400, "bad_json");
    body_is("[1,2]", 400, "bad_json");
    body_is("\"name\"", 400, "bad_json");
    body_is("{\"name\":\"a\",\"name\":\"b\"}", 400, "bad_json");
    body_is("{\"name\":\"a\",\"size\":1}", 400, "unknown_field");
    body_is("{\"name\":\"a\"} trailing", 400, "bad_json");
    char *huge = malloc(API_BODY_MAX + 2);
    assert_non_null(huge);
    memset(huge, ' ', API_BODY_MAX + 1);
    huge[0] = '{';
    huge[API_BODY_MAX] = '}';
    huge[API_BODY_MAX + 1] = 0;
    body_is(huge, 413, "too_large");
    free(huge);
}

/* One request through api_handle: its status, its JSON body (returned,
 * a new reference) or NULL for a text body. */
static json_t *call(const char *method, const char *path, const char *body, unsigned status)
{
    struct api_reply r;
    json_t *j;

    api_handle(method, path, body, strlen(body), &r);
    if (r.status != status)
        fail_msg("%s %s: %u, not %u: %s", method, path, r.status, status,
                 r.json ? json_dumps(r.json, 0) : r.text);
    j = json_incref(r.json);
    if (!j)
        assert_non_null(r.text);
    api_reply_release(&r);
    return j;
}

static void code_is(json_t *j, const char *code)
{
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "code")), code);
    assert_non_null(json_string_value(json_object_get(j, "message")));
    json_decref(j);
}

static int group_setup(void **state)
{
    (void)state;
    if (scratch_setup("serve-api") < 0)
        return -1;
    mkdir(in_dir("run"), 0700);
    mkdir(in_dir("tmp"), 0700);
    setenv("XDG_RUNTIME_DIR", in_dir("run"), 1);
    setenv("TMPDIR", in_dir("tmp"), 1);
    setenv("XDG_DATA_HOME", in_dir("data"), 1);
    setenv("XDG_CACHE_HOME", in_dir("cache"), 1);
    api_set_executable("/nonexistent/smolvm");
    /* There, "disk.img" names a file: a relative path is refused anyway. */
    return chdir(dir) == 0 ? sh("truncate -s 1M disk.img") : -1;
}

static pid_t agent;
static int group_teardown(void **state)
{
    (void)state;
    if (agent > 0) {
        kill(agent, SIGTERM);
        waitpid(agent, NULL, 0);
    }
    return scratch_teardown();
}

/* The daemon's spare VMM (api/spare.h), a stand-in smolvm again: a start
 * goes through it (told its name on fd 3, it answers), with the options
 * the daemon's VMs get; a spare that died is passed over and the start
 * goes the normal way; --no-confine's spare is plain. */
static void starts_through_a_spare(void)
{
    assert_int_equal(sh("printf '#!/bin/sh\\nif [ \"$2\" = --spare-fd ]; then "
                        "[ -z \"$SPARE_DIES\" ] || exit 1; read name <&3; printf k >&3; head -c 1 <&3 > /dev/null; "
                        "echo \"spare $name $*\" > args; else echo \"$*\" > args; fi\\n' "
                        "> fake-spare && chmod +x fake-spare"), 0);
    api_set_executable(in_dir("fake-spare"));
    unsetenv("SPARE_DIES");
    api_set_vm_options(true, true);
    api_spare_make();
    json_decref(call("POST", "/machines/web/start", "", 200));
    assert_int_equal(sh("grep -qx 'spare web start --spare-fd 3 --detach --jail' args"), 0);
    api_spare_end(); /* the one made behind it */
    setenv("SPARE_DIES", "1", 1);
    api_spare_make();
    json_decref(call("POST", "/machines/web/start", "", 200));
    assert_int_equal(sh("grep -qx 'start web --detach --jail' args"), 0);
    api_spare_end();
    unsetenv("SPARE_DIES");
    api_set_vm_options(false, true);
    api_spare_make();
    json_decref(call("POST", "/machines/web/start", "", 200));
    assert_int_equal(sh("grep -qx 'spare web start --spare-fd 3 --detach --seccomp=off' args"), 0);
    api_spare_end();
    api_set_vm_options(true, false);
}

static void instances(void **state)
{
    char body[512];
    json_t *j;
    (void)state;

    j = call("GET", "/machines", "", 200);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
    snprintf(body, sizeof(body), "{\"name\":\"web\",\"from\":\"%s\",\"cpus\":2,\"mem\":\"64M\"}",
             in_dir("disk.img"));
    j = call("POST", "/machines", body, 201);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "web");
    assert_string_equal(json_string_value(json_object_get(j, "state")), "stopped");
    assert_true(json_is_true(json_object_get(j, "instance")));
    assert_int_equal(json_integer_value(json_object_get(j, "cpus")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "mem_bytes")), 64 << 20);
    json_decref(j);
    code_is(call("POST", "/machines", body, 409), "exists");
    j = call("GET", "/machines/web", "", 200);
    assert_string_equal(json_string_value(json_object_get(j, "next_start")), "boots");
    json_decref(j);
    j = call("GET", "/machines", "", 200);
    assert_int_equal(json_array_size(j), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "next_start")),
                        "boots");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "cpus")), 2);
    json_decref(j);

    code_is(call("GET", "/machines/nothere", "", 404), "not_found");
    code_is(call("POST", "/machines/web/pause", "", 409), "not_running");
    code_is(call("POST", "/machines/nothere/pause", "", 404), "not_found");
    code_is(call("POST", "/machines/web/save", "", 409), "not_running");
    code_is(call("POST", "/machines/web/save", "{\"output\":\"rel.smolmachine\"}", 400),
            "invalid_value");
    code_is(call("POST", "/machines/web/save", "{\"resume\":true}", 400), "invalid_value");
    code_is(call("POST", "/machines/web/save", "{\"resume\":1,\"output\":\"/x\"}", 400),
            "invalid_value");
    code_is(call("POST", "/machines/web/start", "", 500), "failed"); /* no smolvm there */
    /* A stand-in smolvm: what the API makes of each way start ends. */
    assert_int_equal(sh("printf '#!/bin/sh\\necho \"$*\" > args; echo booting; "
                        "echo \"smolvm: start: $WHY\" >&2; exit $CODE\\n' > fake && chmod +x fake"), 0);
    api_set_executable(in_dir("fake"));
    setenv("CODE", "0", 1);
    j = call("POST", "/machines/web/start", "", 200);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "web");
    json_decref(j);
    /* Jailed (docs/security.md): the daemon's VMs always are. */
    assert_int_equal(sh("grep -qx 'start web --detach --jail' args"), 0);
    setenv("CODE", "1", 1);
    setenv("WHY", "a VM named 'web' is already running", 1);
    j = call("POST", "/machines/web/start", "", 409);
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        "a VM named 'web' is already running");
    code_is(j, "already_running");
    setenv("WHY", "no KVM here", 1);
    j = call("POST", "/machines/web/start", "", 500);
    assert_string_equal(json_string_value(json_object_get(j, "message")), "no KVM here");
    code_is(j, "start_failed");
    setenv("CODE", "2", 1);
    setenv("WHY", "bad option", 1);
    code_is(call("POST", "/machines/web/start", "", 400), "invalid_value");
    starts_through_a_spare();
    api_set_executable("/nonexistent/smolvm");
    code_is(call("POST", "/machines/web/start", "{\"x\":1}", 400), "unknown_field");

    /* Bodies as the CLI's options: each value checked. */
    code_is(call("POST", "/machines", "{\"name\":\"a\"}", 400), "invalid_value");
    code_is(call("POST", "/machines", "", 400), "invalid_value");
    code_is(call("POST", "/machines", "{\"name\":\"a b\",\"from\":\"/x\"}", 400), "invalid_name");
    code_is(call("POST", "/machines", "{\"name\":7,\"from\":\"/x\"}", 400), "invalid_value");
    code_is(call("POST", "/machines", "{\"name\":\"a\",\"from\":\"/no/such/file\"}", 400),
            "invalid_value");
    code_is(call("POST", "/machines", "{\"name\":\"a\",\"from\":\"disk.img\"}", 400),
            "invalid_value"); /* relative: whose folder? */
    snprintf(body, sizeof(body), "{\"name\":\"b\",\"from\":\"%s\",\"kernel\":\"vmlinuz\"}",
             in_dir("disk.img"));
    code_is(call("POST", "/machines", body, 400), "invalid_value");
    snprintf(body, sizeof(body), "{\"name\":\"b\",\"from\":\"%s\",\"cpus\":0}", in_dir("disk.img"));
    code_is(call("POST", "/machines", body, 400), "invalid_value");
    snprintf(body, sizeof(body), "{\"name\":\"b\",\"from\":\"%s\",\"mem\":\"lots\"}",
             in_dir("disk.img"));
    code_is(call("POST", "/machines", body, 400), "invalid_value");
    snprintf(body, sizeof(body), "{\"name\":\"b\",\"from\":\"%s\",\"mem\":true}", in_dir("disk.img"));
    code_is(call("POST", "/machines", body, 400), "invalid_value");
    code_is(call("POST", "/machines", "{\"name\":\"a\",\"from\":\"/x\",\"memory\":\"1G\"}", 400),
            "unknown_field");

    /* reset, layers, gc, as the CLI's verbs */
    j = call("POST", "/machines/web/reset", "", 200);
    assert_string_equal(json_string_value(json_object_get(j, "next_start")), "boots");
    json_decref(j);
    code_is(call("POST", "/machines/nothere/reset", "", 404), "not_found");
    j = call("GET", "/layers", "", 200);
    assert_int_equal(json_array_size(j), 1);
    char top[80];
    snprintf(top, sizeof(top), "/layers/%s",
             json_string_value(json_object_get(json_array_get(j, 0), "hash")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "users")), 1);
    assert_non_null(json_object_get(json_array_get(j, 0), "virtual_size"));
    json_decref(j);
    code_is(call("DELETE", top, "", 409), "busy"); /* web is on it */
    code_is(call("DELETE", "/layers/xyz", "", 400), "invalid_name");
    code_is(call("GET", top, "", 405), "method_not_allowed");

    j = call("DELETE", "/machines/web", "", 200);
    assert_true(json_is_true(json_object_get(j, "removed")));
    json_decref(j);
    code_is(call("DELETE", "/machines/web", "", 404), "not_found");
    j = call("POST", "/gc", "", 200);
    assert_int_equal(json_integer_value(json_object_get(j, "layers_removed")), 1);
    json_decref(j);
    j = call("GET", "/layers", "", 200);
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
    code_is(call("DELETE", top, "", 404), "not_found");
}

/* A VM as the API sees it: a process answering on its control socket. */
static bool paused;
static int trace_phases = 1;
static struct control *fake_control;
static json_t *fake_vm(void *opaque, const char *command, json_t *req)
{
    (void)opaque;
    if (strcmp(command, "save") == 0) { /* 4 steps, 300 ms apart */
        for (uint64_t done = 1; done <= 4; done++) {
            usleep(300000);
            control_progress(fake_control, done << 20, 4 << 20);
        }
        return json_pack("{s:b,s:s,s:f}", "ok", 1, "path",
                         json_string_value(json_object_get(req, "path")), "seconds", 1.2);
    }
    if (strcmp(command, "trace") == 0) /* its boot so far: one phase, then two */
        return json_pack("{s:b,s:{s:s,s:o}}", "ok", 1, "trace", "unit", "ms", "events",
                         trace_phases == 1 ? json_pack("{s:f}", "first_vcpu_entry", 1.5)
                                           : json_pack("{s:f,s:f}", "first_vcpu_entry", 1.5,
                                                       "kernel_run_init", 80.25));
    if (strcmp(command, "pause") == 0)
        paused = true;
    else if (strcmp(command, "resume") == 0)
        paused = false;
    else if (strcmp(command, "status") != 0)
        return control_error("cannot %s", command);
    return json_pack("{s:b,s:s,s:i,s:s,s:i,s:I,s:f,s:I}", "ok", 1, "name", "vm1", "pid",
                     (int)getpid(), "state", paused ? "paused" : "running", "cpus", 1,
                     "mem_bytes", (json_int_t)(256 << 20), "uptime_s", 1.5, "console_dropped",
                     (json_int_t)0);
}

static volatile bool vm_stop;
static void *vm_loop(void *opaque)
{
    serve_control_until(opaque, &vm_stop);
    return NULL;
}

static volatile bool save_finished;
static void *save_vm1(void *opaque)
{
    const char *body = "{\"output\":\"/x.smolmachine\"}";
    api_handle("POST", "/machines/vm1/save", body, strlen(body), opaque);
    save_finished = true;
    json_decref(call("POST", "/machines/vm1/pause", "", 200)); /* an event: the reader wakes */
    return NULL;
}

/* What an event stream sends next (at least one byte), as a string. */
static const char *next_events(struct api_reply *r, char *buf, size_t size)
{
    ssize_t n = r->stream.read(r->stream.opaque, -1, buf, size - 1);

    assert_true(n > 0);
    buf[n] = 0;
    return buf;
}

static void running_vm(void **state)
{
    struct control *c;
    pthread_t t;
    json_t *j;
    struct api_reply r;
    (void)state;

    assert_int_equal(control_open("vm1", fake_vm, NULL, &c), 0);
    fake_control = c;
    vm_stop = false;
    assert_int_equal(pthread_create(&t, NULL, vm_loop, c), 0);

    j = call("GET", "/machines", "", 200);
    if (json_array_size(j) != 1)
        fail_msg("%s", json_dumps(j, 0));
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "name")), "vm1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "state")),
                        "running");
    assert_true(json_is_false(json_object_get(json_array_get(j, 0), "instance")));
    json_decref(j);
    j = call("POST", "/machines/vm1/pause", "", 200);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "paused");
    json_decref(j);
    j = call("GET", "/machines/vm1", "", 200);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "paused");
    json_decref(j);
    json_decref(call("POST", "/machines/vm1/resume", "", 200));
    assert_false(paused);
    /* Events: the state of each machine (and a running one's boot trace),
     * then each change. */
    char buf[512];
    api_handle("GET", "/events", "", 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/event-stream");
    assert_string_equal(next_events(&r, buf, sizeof(buf)), "event: state\ndata: {\"name\":\"vm1\",\"state\":\"running\"}\n\n"
                             "event: trace\ndata: {\"name\":\"vm1\",\"trace\":{\"unit\":\"ms\","
                             "\"events\":{\"first_vcpu_entry\":1.5}}}\n\n");
    trace_phases = 2; /* a new phase: its trace again, once running */
    json_decref(call("POST", "/machines/vm1/pause", "", 200));
    assert_string_equal(next_events(&r, buf, sizeof(buf)), "event: state\ndata: {\"name\":\"vm1\",\"state\":\"paused\"}\n\n");
    json_decref(call("POST", "/machines/vm1/resume", "", 200));
    assert_string_equal(next_events(&r, buf, sizeof(buf)), "event: state\ndata: {\"name\":\"vm1\",\"state\":\"running\"}\n\n"
                             "event: trace\ndata: {\"name\":\"vm1\",\"trace\":{\"unit\":\"ms\","
                             "\"events\":{\"first_vcpu_entry\":1.5,\"kernel_run_init\":80.25}}}\n\n");

    /* A save's progress comes as events while it runs. */
    pthread_t saver;
    struct api_reply saved;
    assert_int_equal(pthread_create(&saver, NULL, save_vm1, &saved), 0);
    char all[4096] = "";
    size_t len = 0;
    while (!strstr(all, "event: progress") && !save_finished) {
        ssize_t n = r.stream.read(r.stream.opaque, -1, all + len, sizeof(all) - 1 - len);
        assert_true(n > 0);
        len += (size_t)n;
        all[len] = 0;
    }
    pthread_join(saver, NULL);
    json_decref(call("POST", "/machines/vm1/resume", "", 200));
    assert_int_equal(saved.status, 200);
    assert_string_equal(json_string_value(json_object_get(saved.json, "path")), "/x.smolmachine");
    api_reply_release(&saved);
    const char *p = strstr(all, "event: progress\ndata: {\"name\":\"vm1\",\"operation\":\"save\","
                                "\"done\":");
    if (!p)
        fail_msg("no progress event in: %s", all);
    assert_non_null(strstr(p, ",\"total\":4194304}\n\n"));
    api_reply_release(&r);

    code_is(call("POST", "/machines/vm1/stop", "", 409), "refused"); /* the VM said no */
    code_is(call("POST", "/machines/vm1/start", "", 409), "already_running");
    code_is(call("DELETE", "/machines/vm1", "", 409), "running");

    api_handle("GET", "/metrics", "", 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.text, "smolvm_machine_up{name=\"vm1\",state=\"running\"} 1\n"));
    assert_non_null(strstr(r.text, "smolvm_machine_memory_bytes{name=\"vm1\"} 268435456\n"));
    assert_non_null(strstr(r.text, "# TYPE smolvm_machine_cpu_seconds_total counter\n"));
    assert_non_null(strstr(r.text, "smolvm_machine_rss_bytes{name=\"vm1\"} "));
    api_reply_release(&r);

    vm_stop = true;
    pthread_join(t, NULL);
    control_close(c);
    code_is(call("POST", "/machines/vm1/pause", "", 404), "not_found");
}

/* A guest behind the power button: it powers off when pressed (its VM's
 * socket goes away) unless it ignores the button; "stop" ends it at once. */
static bool guest_obeys;
static volatile bool guest_gone;
static int pressed, forced_off;
static json_t *guest(void *opaque, const char *command, json_t *req)
{
    (void)opaque;
    (void)req;
    if (strcmp(command, "shutdown") == 0) {
        pressed++;
        guest_gone = guest_obeys;
    } else if (strcmp(command, "stop") == 0) {
        forced_off++;
        guest_gone = true;
    } else if (strcmp(command, "status") != 0) {
        return control_error("cannot %s", command);
    }
    return json_pack("{s:b,s:s,s:s}", "ok", 1, "name", "vm2", "state",
                     paused ? "paused" : "running");
}

static void *guest_loop(void *opaque)
{
    serve_control_until(opaque, &guest_gone);
    control_close(opaque); /* powered off: the socket goes with the VM */
    return NULL;
}

/* POST .../stop with body; the answer's "forced", and how long it took. */
static bool stop_guest(const char *body, bool obeys, bool is_paused, double *seconds)
{
    struct control *c;
    struct timespec t0, t1;
    pthread_t t;
    json_t *j;
    bool forced;

    guest_obeys = obeys;
    paused = is_paused;
    guest_gone = false;
    pressed = forced_off = 0;
    assert_int_equal(control_open("vm2", guest, NULL, &c), 0);
    assert_int_equal(pthread_create(&t, NULL, guest_loop, c), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    j = call("POST", "/machines/vm2/stop", body, 200);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(t, NULL);
    paused = false;
    assert_string_equal(json_string_value(json_object_get(j, "state")), "stopped");
    forced = json_is_true(json_object_get(j, "forced"));
    json_decref(j);
    *seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    return forced;
}

static void stop_presses_the_power_button(void **state)
{
    double s;
    (void)state;

    /* A guest that powers off when pressed is not forced. */
    assert_false(stop_guest("", true, false, &s));
    assert_int_equal(pressed, 1);
    assert_int_equal(forced_off, 0);
    assert_true(s < 5);
    /* One that ignores the button is forced off after the timeout. */
    assert_true(stop_guest("{\"timeout\":1}", false, false, &s));
    assert_int_equal(pressed, 1);
    assert_int_equal(forced_off, 1);
    assert_true(s >= 1 && s < 5);
    /* force, a timeout of 0 and a paused VM: at once, no press. */
    assert_true(stop_guest("{\"force\":true}", true, false, &s));
    assert_int_equal(pressed, 0);
    assert_true(stop_guest("{\"timeout\":0}", true, false, &s));
    assert_int_equal(pressed, 0);
    assert_true(stop_guest("", true, true, &s));
    assert_int_equal(pressed, 0);
    assert_int_equal(forced_off, 1);
    /* Bad bodies, before any VM is asked. */
    code_is(call("POST", "/machines/vm2/stop", "{\"timeout\":-1}", 400), "invalid_value");
    code_is(call("POST", "/machines/vm2/stop", "{\"timeout\":3601}", 400), "invalid_value");
    code_is(call("POST", "/machines/vm2/stop", "{\"timeout\":\"5\"}", 400), "invalid_value");
    code_is(call("POST", "/machines/vm2/stop", "{\"force\":1}", 400), "invalid_value");
    code_is(call("POST", "/machines/vm2/stop", "{\"grace\":1}", 400), "unknown_field");
}

static void logs_and_openapi(void **state)
{
    struct api_reply r;
    json_t *doc;
    (void)state;

    code_is(call("GET", "/machines/quiet/logs", "", 404), "not_found");
    assert_int_equal(sh("printf 'old\\n' > run/smolvm/talk.log.1 && "
                        "printf 'new\\0bytes\\n' > run/smolvm/talk.log"), 0);
    api_handle("GET", "/machines/talk/logs", "", 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.text_len, 14);
    assert_memory_equal(r.text, "old\nnew\0bytes\n", 14);
    api_reply_release(&r);
    /* A log a VMM made a link to one of the user's files, or a FIFO: not
     * read through, and no wait. */
    assert_int_equal(sh("printf 'secret' > id_key && ln -s \"$PWD/id_key\" run/smolvm/evil.log "
                        "&& mkfifo run/smolvm/fifo.log"), 0);
    api_handle("GET", "/machines/evil/logs", "", 0, &r);
    assert_true(!r.text || !strstr(r.text, "secret"));
    api_reply_release(&r);
    api_handle("GET", "/machines/fifo/logs", "", 0, &r);
    assert_true(!r.text || !r.text_len);
    api_reply_release(&r);

    /* Followed: the same bytes, and the end once no VM of that name runs. */
    char buf[64];
    size_t got = 0;
    ssize_t n;
    api_handle("GET", "/machines/talk/logs?follow=1", "", 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(r.stream.read);
    while ((n = r.stream.read(r.stream.opaque, -1, buf + got, sizeof(buf) - got)) > 0)
        got += (size_t)n;
    assert_int_equal(got, 14);
    assert_memory_equal(buf, "old\nnew\0bytes\n", 14);
    api_reply_release(&r);

    api_handle("GET", "/openapi.json", "", 0, &r);
    assert_int_equal(r.status, 200);
    doc = json_loads(r.text, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    assert_non_null(json_object_get(json_object_get(doc, "paths"), "/machines/{name}/start"));
    json_decref(doc);
    api_reply_release(&r);
}

/* POST /machines of an appliance folder: its instance gets the user
 * network, as `smolvm create` gives it; of a disk image, none. */
static void an_appliance_instance_gets_the_user_network(void **state)
{
    char body[512];
    json_t *j;
    (void)state;
    assert_int_equal(sh("mkdir app && echo '{}' > app/appliance.json && head -c 4096 /dev/zero > "
                        "app/kernel && cp app/kernel app/initrd && truncate -s 64K app/root.ext2"),
                     0);
    snprintf(body, sizeof(body), "{\"name\":\"appnet\",\"from\":\"%s\"}", in_dir("app"));
    j = call("POST", "/machines", body, 201);
    assert_non_null(json_object_get(j, "net"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "net"), "mode")),
                        "user");
    json_decref(j);
    snprintf(body, sizeof(body), "{\"name\":\"nonet\",\"from\":\"%s\"}", in_dir("disk.img"));
    j = call("POST", "/machines", body, 201);
    assert_null(json_object_get(j, "net"));
    json_decref(j);
}

/* POST /machines's "share" is create --share (one parser): folders kept
 * with the instance, by tag; a relative or missing folder, a bad tag or
 * option, a tag twice and a wrong type refused, nothing created. */
static void create_with_shares(void **state)
{
    char body[8192];
    json_t *j;
    (void)state;

    assert_int_equal(sh("mkdir -p shared other"), 0);
    snprintf(body, sizeof(body), "{\"name\":\"sharing\",\"from\":\"%s\",\"share\":[\"%s:data,ro\","
             "\"%s\"]}", in_dir("disk.img"), in_dir("shared"), in_dir("other"));
    json_decref(call("POST", "/machines", body, 201));
    j = call("GET", "/machines/sharing", "", 200);
    char *text = json_dumps(json_object_get(j, "shares"), JSON_COMPACT);
    assert_non_null(text);
    if (!strstr(text, "\"tag\":\"data\"") || !strstr(text, "\"read_only\":true") ||
        !strstr(text, "\"tag\":\"other\""))
        fail_msg("the instance's shares: %s", text);
    free(text);
    json_decref(j);
    char bad[7][900], folder[200];
    snprintf(folder, sizeof(folder), "%s", in_dir("shared"));
    snprintf(bad[0], sizeof(bad[0]), "\"relative:data\"");
    snprintf(bad[1], sizeof(bad[1]), "[\"/nonexistent/folder\"]");
    snprintf(bad[2], sizeof(bad[2]), "[\"%s:bad/tag\"]", folder);
    snprintf(bad[3], sizeof(bad[3]), "[\"%s,rx\"]", folder);
    snprintf(bad[4], sizeof(bad[4]), "[\"%s:t\", \"%s:t\"]", folder, folder);
    snprintf(bad[5], sizeof(bad[5]), "5");
    snprintf(bad[6], sizeof(bad[6]), "[5]");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body, sizeof(body), "{\"name\":\"badshare\",\"from\":\"%s\",\"share\":%s}",
                 in_dir("disk.img"), bad[i]);
        code_is(call("POST", "/machines", body, 400), "invalid_value");
    }
    code_is(call("GET", "/machines/badshare", "", 404), "not_found");
    json_decref(call("DELETE", "/machines/sharing", "", 200));
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A stream's whole body (read as the daemon does, no client socket). */
static size_t read_all(struct api_reply *r, char *buf, size_t size)
{
    size_t got = 0;
    ssize_t n;

    assert_non_null(r->stream.read);
    while (got < size - 1 && (n = r->stream.read(r->stream.opaque, -1, buf + got,
                                                 size - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    return got;
}

/* An exec's lines: stdout and stderr concatenated, and the last line. */
static void exec_lines(char *body, char *out, char *err, json_t **last)
{
    *out = *err = 0;
    *last = NULL;
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        const char *o = json_string_value(json_object_get(j, "stdout"));
        const char *e = json_string_value(json_object_get(j, "stderr"));
        assert_non_null(j);
        if (o)
            strcat(out, o);
        if (e)
            strcat(err, e);
        json_decref(*last);
        *last = j;
    }
}

static bool unix_socket_answers(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* POST exec: output streamed as lines, stdin, env and cwd passed, the
 * exit status last; bad bodies refused; GET and PUT files: a file's bytes
 * both ways (its length known), a folder and a missing file refused. The
 * same requests as `smolvm exec` and `cp` make (api/agent.c). */
/* agent: stopped by the teardown too, a failed check must not leave it. */
static void exec_and_files_through_the_agent(void **state)
{
    char agent_path[4096], body[65536], out[4096], err[4096], path[512];
    struct api_reply r;
    json_t *last, *j;
    (void)state;

    assert_int_equal(scratch_find_smolvm(agent_path, sizeof(agent_path)), 0);
    strcat(agent_path, "-agent");
    mkdir(in_dir("run/smolvm"), 0700);
    agent = fork();
    if (agent == 0) {
        execl(agent_path, "smolvm-agent", "--unix", in_dir("run/smolvm/agentvm.vsock"),
              (char *)NULL);
        _exit(127);
    }
    /* Until it answers, not only until its socket is named (bound before
     * it listens), and for up to 30 s: an ASan agent on a loaded 2-core
     * CI machine once took longer than 5 s (the exec got 409). */
    for (int i = 0; i < 3000 && !unix_socket_answers(in_dir("run/smolvm/agentvm.vsock")); i++)
        usleep(10000);

    static const char request[] =
        "{\"command\": [\"sh\", \"-c\", \"echo out-$((6*7))-$A-$(pwd); echo err-line >&2; "
        "read x; echo got-$x; exit 3\"], \"env\": [\"A=b\"], \"cwd\": \"/tmp\", "
        "\"stdin\": \"typed\\n\"}";
    api_handle("POST", "/machines/agentvm/exec", request, strlen(request), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/x-ndjson");
    read_all(&r, body, sizeof(body));
    api_reply_release(&r);
    exec_lines(body, out, err, &last);
    assert_string_equal(out, "out-42-b-/tmp\ngot-typed\n");
    assert_string_equal(err, "err-line\n");
    assert_int_equal(json_integer_value(json_object_get(last, "exit_code")), 3);
    json_decref(last);

    code_is(call("POST", "/machines/agentvm/exec", "{\"command\": []}", 400), "invalid_value");
    code_is(call("POST", "/machines/agentvm/exec", "{\"command\": \"ls\"}", 400), "invalid_value");
    code_is(call("POST", "/machines/agentvm/exec", "{\"command\": [\"ls\"], \"env\": [\"=x\"]}",
                 400), "invalid_value");
    code_is(call("POST", "/machines/agentvm/exec", "{\"command\": [\"ls\"], \"tty\": true}", 400),
            "unknown_field");
    code_is(call("POST", "/machines/novm/exec", "{\"command\": [\"ls\"]}", 404), "not_found");
    code_is(call("GET", "/machines/agentvm/exec", "", 405), "method_not_allowed");

    /* A file in (its name percent-encoded), then out again. */
    snprintf(path, sizeof(path), "/machines/agentvm/files?path=%s/a%%20file", dir);
    j = call("PUT", path, "file bytes\n", 200);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 11);
    json_decref(j);
    assert_int_equal(sh("test \"$(cat 'a file')\" = 'file bytes'"), 0);
    api_handle("GET", path, "", 0, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.sized);
    assert_int_equal(r.size, 11);
    assert_int_equal(read_all(&r, body, sizeof(body)), 11);
    assert_string_equal(body, "file bytes\n");
    api_reply_release(&r);

    snprintf(path, sizeof(path), "/machines/agentvm/files?path=%s/nothere", dir);
    code_is(call("GET", path, "", 404), "not_found");
    snprintf(path, sizeof(path), "/machines/agentvm/files?path=%s/nofolder/x", dir);
    code_is(call("PUT", path, "x", 400), "invalid_value");
    snprintf(path, sizeof(path), "/machines/agentvm/files?path=%s", dir);
    code_is(call("GET", path, "", 400), "invalid_value");
    code_is(call("GET", "/machines/agentvm/files", "", 400), "invalid_value");
    code_is(call("GET", "/machines/agentvm/files?path=%zz", "", 400), "invalid_value");

    code_is(call("GET", "/machines/agentvm/files?path=a%00b", "", 400), "invalid_value");
    code_is(call("GET", "/machines/agentvm/files?path=a%2", "", 400), "invalid_value");

    /* A client that hangs up mid-command: the stream ends within a check's
     * time, and the agent kills the command. */
    int sv[2];
    alarm(60); /* a stream that does not notice kills the test rather than hang it */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    static const char sleeper[] = "{\"command\": [\"sh\", \"-c\", \"exec sleep 4242\"]}";
    api_handle("POST", "/machines/agentvm/exec", sleeper, strlen(sleeper), &r);
    assert_int_equal(r.status, 200);
    close(sv[1]);
    double t0 = now_s();
    assert_true(r.stream.read(r.stream.opaque, sv[0], body, sizeof(body)) < 0);
    assert_true(now_s() - t0 < 5);
    alarm(0);
    api_reply_release(&r);
    close(sv[0]);
    int i = 0;
    while (sh("pgrep -f 'slee[p] 4242' > /dev/null") == 0 && i++ < 100)
        usleep(50000);
    assert_int_not_equal(sh("pgrep -f 'slee[p] 4242' > /dev/null"), 0);

    kill(agent, SIGTERM);
    waitpid(agent, NULL, 0);
    agent = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes),
        cmocka_unit_test(bodies),
        cmocka_unit_test(instances),
        cmocka_unit_test(running_vm),
        cmocka_unit_test(stop_presses_the_power_button),
        cmocka_unit_test(logs_and_openapi),
        cmocka_unit_test(an_appliance_instance_gets_the_user_network),
        cmocka_unit_test(exec_and_files_through_the_agent),
        cmocka_unit_test(create_with_shares),
    };
    /* As `smolvm serve` does (serve/http.c): a peer gone mid-answer is an
     * error to handle, not the end of the process (this program once died
     * of SIGPIPE, status 141, on a loaded host). */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
