/* A small poll() loop for the main thread: the console, the stop signal and
 * the control socket share it. Handlers run on the loop's thread. */
#ifndef SMOLVM_UTIL_LOOP_H
#define SMOLVM_UTIL_LOOP_H

#include <stdbool.h>

#define LOOP_MAX_WATCHES 32

/* Called when fd is readable (or hung up). Returning false ends loop_run(). */
typedef bool (*loop_fn)(void *opaque, int fd);

struct loop_watch {
    int fd;
    loop_fn fn;
    void *opaque;
};

struct loop {
    struct loop_watch watches[LOOP_MAX_WATCHES];
    unsigned count;
};

int loop_add(struct loop *l, int fd, loop_fn fn, void *opaque) __attribute__((warn_unused_result));
/* Safe from inside a handler. */
void loop_remove(struct loop *l, int fd);
/* Runs until a handler returns false. */
void loop_run(struct loop *l);

#endif
