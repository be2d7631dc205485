#include "machine/save_named.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "machine/instance.h"
#include "machine/stop_named.h"
#include "util/err.h"
#include "util/file.h"

static double since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static int ask(const char *name, const struct machine_save_request *q, const char *path)
{
    json_t *answer = NULL, *req = json_pack(
        "{s:s,s:s,s:b,s:b,s:b,s:b}", "command", "save", "path", path, "resume", q->resume,
        "memory", !q->no_memory, "flatten", q->flatten, "state_only", !q->output);
    int r;

    if (q->sign_key)
        json_object_set_new(req, "sign", json_string(q->sign_key));
    /* No time limit once the VM has taken it: a save takes as long as it takes. */
    r = control_request_progress(name, req, &answer, -1, q->progress, q->opaque);
    json_decref(req);
    if (r == 0 && !json_is_true(json_object_get(answer, "ok"))) {
        const char *why = json_string_value(json_object_get(answer, "error"));
        r = err_plain(ECANCELED, "%s: %s", name, why ? why : "failed");
    }
    json_decref(answer);
    return r;
}

/* A confined VM cannot reach path: it saves into the runtime folder (its
 * own, and the caller's), and the bundle is moved to path from there:
 * renamed, or copied (synced) beside path and renamed when path is on
 * another file system. */
static int ask_confined(const char *name, const struct machine_save_request *q, const char *path)
{
    char *runtime, *staging = NULL, *copy = NULL;
    int r = control_dir(&runtime);

    if (r == 0 && asprintf(&staging, "%s/%s.save-%d.smolmachine", runtime, name, (int)getpid()) < 0)
        r = err_set(ENOMEM, "save"), staging = NULL;
    free(runtime);
    if (r == 0)
        r = ask(name, q, staging);
    if (r == 0 && rename(staging, path) < 0) {
        if (errno != EXDEV)
            r = err_set(errno, "save: cannot move the bundle to '%s'", path);
        else if (asprintf(&copy, "%s.tmp-%d", path, (int)getpid()) < 0)
            r = err_set(ENOMEM, "save"), copy = NULL;
        else if ((r = file_copy(staging, copy)) == 0 && rename(copy, path) < 0)
            r = err_set(errno, "save: cannot rename '%s'", copy);
        if (r < 0 && copy)
            unlink(copy);
    }
    if (staging)
        unlink(staging);
    free(staging);
    free(copy);
    return r;
}

int machine_save_named(const char *name, const struct machine_save_request *q, char **path,
                       double *seconds)
{
    struct timespec t0;
    bool confined;
    int r;

    *path = NULL;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!q->output) {
        if ((r = machine_instance_suspend_path(name, path)) < 0)
            return r;
        if (!machine_answers(name)) {
            free(*path);
            *path = NULL;
            return err_plain(ESRCH, "no VM '%s' is running", name);
        }
        r = ask(name, q, *path);
        if (r == 0)
            r = machine_instance_suspended(name);
    } else {
        if (!(*path = strdup(q->output)))
            return err_set(ENOMEM, "save");
        if (!machine_answers_jailed(name, &confined))
            r = machine_instance_export(name, *path, q->flatten, q->sign_key);
        else
            r = confined ? ask_confined(name, q, *path) : ask(name, q, *path);
    }
    if (r < 0) {
        free(*path);
        *path = NULL;
        return r;
    }
    *seconds = since(&t0);
    return 0;
}
