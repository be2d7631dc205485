#include "util/loop.h"

#include <errno.h>
#include <poll.h>

#include "util/err.h"

int loop_add(struct loop *l, int fd, loop_fn fn, void *opaque)
{
    if (l->count == LOOP_MAX_WATCHES)
        return err_plain(ENOSPC, "too many open connections");
    l->watches[l->count++] = (struct loop_watch){fd, fn, opaque};
    return 0;
}

void loop_remove(struct loop *l, int fd)
{
    for (unsigned i = 0; i < l->count; i++)
        if (l->watches[i].fd == fd)
            l->watches[i].fd = -1; /* compacted by loop_run, after handlers */
}

static void compact(struct loop *l)
{
    unsigned out = 0;
    for (unsigned i = 0; i < l->count; i++)
        if (l->watches[i].fd >= 0)
            l->watches[out++] = l->watches[i];
    l->count = out;
}

void loop_run(struct loop *l)
{
    for (;;) {
        struct pollfd fds[LOOP_MAX_WATCHES];
        struct loop_watch ready[LOOP_MAX_WATCHES];
        unsigned n = l->count, nready = 0;

        for (unsigned i = 0; i < n; i++)
            fds[i] = (struct pollfd){.fd = l->watches[i].fd, .events = POLLIN};
        if (poll(fds, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        /* Handlers may add and remove watches: work from a copy. */
        for (unsigned i = 0; i < n; i++)
            if (fds[i].revents)
                ready[nready++] = l->watches[i];
        for (unsigned i = 0; i < nready; i++) {
            bool live = false;
            for (unsigned j = 0; j < l->count; j++)
                live |= l->watches[j].fd == ready[i].fd && l->watches[j].fn == ready[i].fn;
            if (live && !ready[i].fn(ready[i].opaque, ready[i].fd))
                return;
        }
        compact(l);
    }
}
