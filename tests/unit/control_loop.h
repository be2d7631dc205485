/* A stand-in VM's control socket for the serve tests: its connections
 * served on a thread of the test until told to stop. */
#ifndef SMOLVM_TESTS_CONTROL_LOOP_H
#define SMOLVM_TESTS_CONTROL_LOOP_H

#include <poll.h>
#include <stdbool.h>

#include "api/control.h"

/* Serves c's connections until *stop (looked at every 20 ms). */
static inline void serve_control_until(struct control *c, volatile bool *stop)
{
    struct pollfd p = {.fd = control_listen_fd(c), .events = POLLIN};
    while (!*stop)
        if (poll(&p, 1, 20) == 1)
            control_accept(c);
}

#endif
