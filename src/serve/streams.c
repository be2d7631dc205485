/* The bodies that go on: a VM's log followed while it runs, and
 * server-sent events when a machine's state changes. Each runs on its
 * connection's own thread and blocks there; a client that hangs up ends
 * it at the next check. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/internal.h"
#include "util/err.h"
#include "util/file.h"

#define POLL_MS 200
#define EVENTS_POLL_MS 500
#define KEEPALIVE_MS 15000
/* A boot whose trace has no new phase for this long is done (a bundle's
 * start never reaches the guest's init again, so no "split" ends it). */
#define TRACE_SETTLED_MS 10000

bool api_client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

struct log_follow {
    char *name, *current, *older;
    FILE *f;
    bool in_older, ending;
    int input; /* a console's: its VM's console socket, or -1 */
};

/* Whether path is no longer the file f reads: the log was rotated. */
static bool rotated(const char *path, FILE *f)
{
    struct stat now, open_st;
    return stat(path, &now) == 0 && fstat(fileno(f), &open_st) == 0 &&
           (now.st_ino != open_st.st_ino || now.st_dev != open_st.st_dev);
}

static ssize_t log_read(void *opaque, int fd, char *buf, size_t max)
{
    struct log_follow *l = opaque;

    for (;;) {
        size_t n = l->f ? fread(buf, 1, max, l->f) : 0;
        if (n)
            return (ssize_t)n;
        if (l->f)
            clearerr(l->f);
        if (l->in_older || (l->f && rotated(l->current, l->f)) || !l->f) {
            FILE *next = file_fopen_beneath(l->current);
            bool was_older = l->in_older;
            l->in_older = false;
            if (next || was_older) {
                if (l->f)
                    fclose(l->f);
                l->f = next;
                continue;
            }
        }
        if (l->ending || api_client_gone(fd))
            return -1;
        json_t *status = machine_status(l->name);
        if (!status) {
            l->ending = true; /* what it wrote last, then the end */
            continue;
        }
        json_decref(status);
        usleep(POLL_MS * 1000);
    }
}

static void log_release(void *opaque)
{
    struct log_follow *l = opaque;
    if (l->f)
        fclose(l->f);
    if (l->input >= 0)
        close(l->input);
    free(l->name);
    free(l->current);
    free(l->older);
    free(l);
}

int log_stream(const char *name, char *current, char *older, struct api_stream *out)
{
    struct log_follow *l = calloc(1, sizeof(*l));

    if (!l || !(l->name = strdup(name))) {
        free(l);
        free(current);
        free(older);
        return -1;
    }
    l->current = current;
    l->older = older;
    l->input = -1;
    l->f = file_fopen_beneath(older);
    l->in_older = true;
    *out = (struct api_stream){.read = log_read, .release = log_release, .opaque = l};
    return 0;
}

/* The socket's sends are bounded (control_connect): a VM that stops
 * reading costs this client its input, not its thread. */
static bool console_write(void *opaque, const void *buf, size_t len)
{
    struct log_follow *l = opaque;

    for (size_t done = 0; done < len && l->input >= 0;) {
        ssize_t n = send(l->input, (const char *)buf + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(l->input);
            l->input = -1;
        } else {
            done += (size_t)n;
        }
    }
    return l->input >= 0;
}

void log_stream_input(struct api_stream *s, int fd)
{
    struct log_follow *l = s->opaque;

    if (l->input >= 0)
        close(l->input);
    l->input = fd;
    s->write = console_write;
}

struct events {
    json_t *last; /* {name: state} as last sent */
    json_t *last_progress; /* {name: {done, total}} as last sent */
    json_t *traced; /* {name: {"events": as last sent, "quiet_ms"}, or true: its boot is done} */
    char *pending;
    size_t len, sent;
    unsigned quiet_ms;
};

/* Queues "event: kind" with j (consumed) as its data. */
static void send_event(struct events *e, const char *kind, json_t *j)
{
    char *data = json_dumps(j, JSON_COMPACT), *line = NULL;
    int n = data ? asprintf(&line, "event: %s\ndata: %s\n\n", kind, data) : -1;
    char *grown = n > 0 ? realloc(e->pending, e->len + (size_t)n) : NULL;

    if (grown) {
        memcpy(grown + e->len, line, (size_t)n);
        e->pending = grown;
        e->len += (size_t)n;
    }
    free(line);
    free(data);
    json_decref(j);
}

static void event(struct events *e, const char *name, const char *state)
{
    send_event(e, "state", json_pack("{s:s,s:s}", "name", name, "state", state));
}

/* A running machine's boot trace each time it has new phases, until its
 * boot is done (its init ran: "split", or no new phase for a while); a
 * machine that stops and runs again is followed again. */
static void compare_traces(struct events *e, json_t *now)
{
    const char *name;
    json_t *state;
    void *tmp;

    json_object_foreach_safe(e->traced, tmp, name, state) {
        const char *is = json_string_value(json_object_get(now, name));
        if (!is || (strcmp(is, "running") != 0 && strcmp(is, "paused") != 0))
            json_object_del(e->traced, name);
    }
    json_object_foreach(now, name, state) {
        json_t *seen = json_object_get(e->traced, name), *trace;

        if (json_is_true(seen) || !json_is_string(state) ||
            strcmp(json_string_value(state), "running") != 0)
            continue;
        if (machine_trace(name, &trace) < 0) { /* an older smolvm, or ended meanwhile */
            err_clear();
            json_object_set_new(e->traced, name, json_true());
            continue;
        }
        json_t *events = json_object_get(trace, "events");
        json_int_t quiet = json_integer_value(json_object_get(seen, "quiet_ms"));
        if (!seen || !json_equal(events, json_object_get(seen, "events"))) {
            send_event(e, "trace", json_pack("{s:s,s:O}", "name", name, "trace", trace));
            quiet = 0;
        } else {
            quiet += EVENTS_POLL_MS;
        }
        if (json_object_get(trace, "split") || quiet >= TRACE_SETTLED_MS)
            json_object_set_new(e->traced, name, json_true());
        else
            json_object_set_new(e->traced, name,
                                json_pack("{s:O,s:I}", "events", events, "quiet_ms", quiet));
        json_decref(trace);
    }
}

/* One event per machine whose state differs from the last sent ("gone"
 * for a machine no longer there), then its boot trace's new phases. */
static void compare(struct events *e)
{
    json_t *now, *v;
    const char *name;

    /* Saves in progress, each step once (first: a VM busy saving answers
     * the status requests below only once its save is done). */
    json_t *progress = machines_progress();
    json_object_foreach(progress, name, v) {
        json_t *before = json_object_get(e->last_progress, name);
        if (!before || !json_equal(before, v))
            send_event(e, "progress", json_pack("{s:s,s:s,s:O,s:O}", "name", name, "operation",
                                                "save", "done", json_object_get(v, "done"),
                                                "total", json_object_get(v, "total")));
    }
    json_decref(e->last_progress);
    e->last_progress = progress;

    now = machines_states();

    json_object_foreach(now, name, v) {
        json_t *before = json_object_get(e->last, name);
        if (!before || !json_equal(before, v))
            event(e, name, json_string_value(v));
    }
    json_object_foreach(e->last, name, v)
        if (!json_object_get(now, name))
            event(e, name, "gone");
    compare_traces(e, now);
    json_decref(e->last);
    e->last = now;
}

static ssize_t events_read(void *opaque, int fd, char *buf, size_t max)
{
    struct events *e = opaque;

    for (;;) {
        if (e->sent < e->len) {
            size_t n = e->len - e->sent < max ? e->len - e->sent : max;
            memcpy(buf, e->pending + e->sent, n);
            if ((e->sent += n) == e->len)
                e->sent = e->len = 0;
            e->quiet_ms = 0;
            return (ssize_t)n;
        }
        if (api_client_gone(fd))
            return -1;
        if (e->quiet_ms >= KEEPALIVE_MS) { /* a comment: proxies keep it open */
            static const char keepalive[] = ": keepalive\n\n";
            e->quiet_ms = 0;
            if (max >= sizeof(keepalive) - 1) {
                memcpy(buf, keepalive, sizeof(keepalive) - 1);
                return (ssize_t)(sizeof(keepalive) - 1);
            }
        }
        if (e->last) {
            usleep(EVENTS_POLL_MS * 1000);
            e->quiet_ms += EVENTS_POLL_MS;
        } else {
            e->last = json_object();
        }
        compare(e);
    }
}

static void events_release(void *opaque)
{
    struct events *e = opaque;
    json_decref(e->last);
    json_decref(e->last_progress);
    json_decref(e->traced);
    free(e->pending);
    free(e);
}

int events_stream(struct api_stream *out)
{
    struct events *e = calloc(1, sizeof(*e));
    if (!e || !(e->traced = json_object())) {
        free(e);
        return -1;
    }
    *out = (struct api_stream){.read = events_read, .release = events_release, .opaque = e};
    return 0;
}
