#include "machine/stop_named.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "api/control.h"
#include "util/err.h"

#define POLL_MS 50

bool machine_answers_jailed(const char *name, bool *jailed)
{
    json_t *a = NULL, *req = json_pack("{s:s}", "command", "status");
    int r = control_request(name, req, &a);
    const char *how = r == 0 ? json_string_value(json_object_get(a, "confinement")) : NULL;

    if (jailed)
        *jailed = how && strcmp(how, "none") != 0;
    json_decref(req);
    json_decref(a);
    err_clear();
    return r == 0 || r == -ETIMEDOUT;
}

bool machine_answers(const char *name)
{
    return machine_answers_jailed(name, NULL);
}

int machine_command(const char *name, const char *command, json_t **answer)
{
    json_t *a = NULL, *req = json_pack("{s:s}", "command", command);
    int r = control_request(name, req, &a);

    json_decref(req);
    if (r == -ENOENT || r == -ECONNREFUSED)
        r = err_plain(ESRCH, "no VM '%s' is running", name);
    else if (r == 0 && !json_is_true(json_object_get(a, "ok"))) {
        const char *why = json_string_value(json_object_get(a, "error"));
        r = err_plain(ECANCELED, "%s: %s", name, why ? why : "failed");
    }
    if (r == 0 && answer)
        *answer = a;
    else
        json_decref(a);
    return r;
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Whether the VM went away (its control socket with it) within timeout_s. */
static bool gone_within(const char *name, unsigned timeout_s)
{
    struct timespec tick = {0, POLL_MS * 1000000L};
    long long deadline = now_ms() + (long long)timeout_s * 1000;

    do {
        if (!machine_answers(name))
            return true;
        nanosleep(&tick, NULL);
    } while (now_ms() < deadline);
    return !machine_answers(name);
}

int machine_stop_named(const char *name, unsigned timeout_s, bool force, bool *forced)
{
    json_t *status = NULL;
    const char *state;
    bool paused;
    int r = machine_command(name, "status", &status);

    *forced = false;
    if (r < 0)
        return r;
    state = json_string_value(json_object_get(status, "state"));
    paused = state && strcmp(state, "paused") == 0;
    json_decref(status);
    /* A VM without the button (a bundle saved before it existed, whose
     * tables do not have it) refuses the press: forced, as after a timeout. */
    if (!force && !paused && timeout_s > 0 && machine_command(name, "shutdown", NULL) == 0 &&
        gone_within(name, timeout_s))
        return 0;
    err_clear();
    *forced = true;
    r = machine_command(name, "stop", NULL);
    if (r == -ESRCH) { /* it powered off at the last moment */
        err_clear();
        *forced = false;
        r = 0;
    }
    return r;
}
