#include "machine/save_named.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bundle/signature.h"
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

/* Asks NAME to save into path; hold: it stays paused after (and
 * *was_paused, may be NULL, says whether it was before). */
static int ask(const char *name, const struct machine_save_request *q, const char *path, bool hold,
               bool *was_paused)
{
    json_t *answer = NULL, *req = json_pack(
        "{s:s,s:s,s:b,s:b,s:b,s:b,s:b}", "command", "save", "path", path, "resume", q->resume,
        "memory", !q->no_memory, "flatten", q->flatten, "state_only", !q->output, "hold", hold);
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
    if (r == 0 && was_paused)
        *was_paused = json_is_true(json_object_get(answer, "was_paused"));
    json_decref(answer);
    return r;
}

/* Whether the file at path is the one st describes (not followed). */
static bool same_file(const char *path, const struct stat *st)
{
    struct stat now;
    return lstat(path, &now) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino;
}

/* What is at staging is taken only as file_open_sole checks it, and never
 * by its name again: renamed beside path and found to be that same file,
 * or copied from the checked descriptor when path is on another file
 * system; then renamed into place. */
int machine_save_take_staged(const char *staging, const char *path)
{
    struct stat st;
    char *beside = NULL;
    int fd = file_open_sole(staging, "saved bundle", &st), r = 0;

    if (fd < 0)
        return fd;
    if (asprintf(&beside, "%s.tmp-%d", path, (int)getpid()) < 0) {
        close(fd);
        return err_set(ENOMEM, "save");
    }
    if (rename(staging, beside) == 0)
        r = same_file(beside, &st) ? 0
                                   : err_plain(EPERM, "save: the saved bundle was replaced "
                                                      "while it was moved; not taken");
    else if (errno == EXDEV)
        r = file_copy_fd(fd, beside);
    else
        r = err_set(errno, "save: cannot move the bundle to '%s'", path);
    close(fd);
    if (r == 0 && rename(beside, path) < 0)
        r = err_set(errno, "save: cannot rename '%s'", beside);
    if (r < 0)
        unlink(beside);
    free(beside);
    return r;
}

/* The bundle the confined VM staged, to path: signed on its way with
 * key when there is one, read through the descriptor file_open_sole
 * checked (never by the staged name, which the VM could change). */
static int take_staged(const char *staging, const char *path, const char *key)
{
    struct stat st;
    char checked[64];
    int fd, r;

    if (!key)
        return machine_save_take_staged(staging, path);
    if ((fd = file_open_sole(staging, "saved bundle", &st)) < 0)
        return fd;
    snprintf(checked, sizeof(checked), "/proc/self/fd/%d", fd);
    r = bundle_sign_copy(checked, path, key);
    close(fd);
    return r;
}

/* A confined VM cannot reach path: it saves into its own runtime folder
 * (control_vm_dir(), the one it may write, and the caller's too), and the
 * bundle is moved to path from there.
 * Without --resume the VM is held paused over the move and stopped once
 * the bundle is in place; a move that fails gives the VM back as it was
 * and says so, as a save that fails in the VM does. */
static int ask_confined(const char *name, const struct machine_save_request *q, const char *path)
{
    char *runtime, *staging = NULL, why[512];
    bool was_paused = false, hold = !q->resume;
    /* --sign: the VM writes the bundle, save signs it on its way to path
     * (the key never enters the jail). */
    struct machine_save_request inside = *q;
    int r = q->sign_key ? bundle_check_signing_key(q->sign_key) : 0;

    inside.sign_key = NULL;
    if (r == 0)
        r = control_vm_dir(name, &runtime);
    if (r == 0 && asprintf(&staging, "%s/save-%d.smolmachine", runtime, (int)getpid()) < 0)
        r = err_set(ENOMEM, "save"), staging = NULL;
    if (r == 0)
        free(runtime);
    if (r == 0 && (r = ask(name, &inside, staging, hold, &was_paused)) == 0) {
        if ((r = take_staged(staging, path, q->sign_key)) < 0) {
            snprintf(why, sizeof(why), "%s", err_msg());
            if (hold && !was_paused && machine_command(name, "resume", NULL) < 0)
                err_clear(); /* it went away meanwhile: nothing to give back */
            r = err_plain(-r, "%s (the VM %s)", why,
                          was_paused ? "stays paused, as it was" : "runs on");
        } else if (hold && machine_command(name, "stop", NULL) < 0) {
            err_clear(); /* it went away meanwhile: its bundle is saved */
        }
    }
    if (staging)
        unlink(staging);
    free(staging);
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
        r = ask(name, q, *path, false, NULL);
        if (r == 0)
            r = machine_instance_suspended(name);
    } else {
        if (!(*path = strdup(q->output)))
            return err_set(ENOMEM, "save");
        if (!machine_answers_jailed(name, &confined))
            r = machine_instance_export(name, *path, q->flatten, q->sign_key);
        else
            r = confined ? ask_confined(name, q, *path) : ask(name, q, *path, false, NULL);
    }
    if (r < 0) {
        free(*path);
        *path = NULL;
        return r;
    }
    *seconds = since(&t0);
    return 0;
}
