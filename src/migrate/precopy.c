/* Pre-copy rounds (precopy.h). */
#include "migrate/precopy.h"

#include <stdbool.h>

enum precopy_step precopy_round(struct precopy *p, uint64_t sent, uint64_t dirtied,
                                uint64_t remaining, double seconds)
{
    if (seconds < 1e-6)
        seconds = 1e-6;
    uint64_t before = p->remaining;

    p->round++;
    p->sent = sent;
    if (sent)
        p->bandwidth = (double)sent / seconds;
    if (p->max_bandwidth && p->bandwidth > (double)p->max_bandwidth)
        p->bandwidth = (double)p->max_bandwidth;
    p->dirty_rate = (double)dirtied / seconds;
    p->remaining = remaining;
    p->expected_downtime_ms =
        p->bandwidth > 0 ? (double)remaining / p->bandwidth * 1000 : (remaining ? 1e12 : 0);
    /* Within the limit: stop -- unless the pages alone would take more
     * than half of it and another round still halves them. The pause
     * does more than send pages (the devices saved, the VM built on the
     * destination: 40-150 ms in a nested host), and the limit is the
     * whole pause's. */
    bool halving = p->round == 1 || remaining < before / 2;
    if (p->expected_downtime_ms <= (double)p->max_downtime_ms &&
        (p->expected_downtime_ms <= (double)p->max_downtime_ms / 2 || !halving))
        return PRECOPY_STOP;
    /* The guest dirties more than half of what the link carries: the
     * rounds would not shrink what is left, so slow it down. */
    if (p->bandwidth > 0 && p->dirty_rate > p->bandwidth / 2) {
        if (++p->slow_rounds >= 2 && p->throttle < PRECOPY_THROTTLE_MAX) {
            p->throttle += PRECOPY_THROTTLE_STEP;
            if (p->throttle > PRECOPY_THROTTLE_MAX)
                p->throttle = PRECOPY_THROTTLE_MAX;
            p->slow_rounds = 0;
        }
    } else {
        p->slow_rounds = 0;
    }
    return p->round >= (p->max_rounds ? p->max_rounds : PRECOPY_MAX_ROUNDS) ? PRECOPY_GIVE_UP
                                                                            : PRECOPY_AGAIN;
}

double precopy_pace(const struct precopy *p, uint64_t bytes_since_start, double elapsed)
{
    if (!p->max_bandwidth)
        return 0;
    double due = (double)bytes_since_start / (double)p->max_bandwidth - elapsed;
    return due > 0 ? due : 0;
}
