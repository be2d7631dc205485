/* Pre-copy rounds (precopy.h). */
#include "migrate/precopy.h"

#include <stdbool.h>

/* Of the limit, what the pause's rest is given: PRECOPY_PAUSE_REST_MS, at
 * most half of it (a small --max-downtime still leaves the pages some). */
static double pause_rest_ms(const struct precopy *p)
{
    double half = (double)p->max_downtime_ms / 2;
    return half < PRECOPY_PAUSE_REST_MS ? half : PRECOPY_PAUSE_REST_MS;
}

/* What the last pages may take after the rounds done so far. */
static double pages_allowed_ms(const struct precopy *p)
{
    unsigned k = p->round < PRECOPY_PATIENT_ROUNDS ? p->round : PRECOPY_PATIENT_ROUNDS;
    return ((double)p->max_downtime_ms - pause_rest_ms(p)) * k / PRECOPY_PATIENT_ROUNDS;
}

/* The guest dirties more than half of what the link carries (and what is
 * left does not fit the limit): the rounds would not shrink it, so slow
 * the guest down, a step after two such rounds in a row. */
static void auto_converge(struct precopy *p, bool over_limit)
{
    if (!over_limit || p->bandwidth <= 0 || p->dirty_rate <= p->bandwidth / 2) {
        p->slow_rounds = 0;
        return;
    }
    if (++p->slow_rounds >= 2 && p->throttle < PRECOPY_THROTTLE_MAX) {
        p->throttle += PRECOPY_THROTTLE_STEP;
        if (p->throttle > PRECOPY_THROTTLE_MAX)
            p->throttle = PRECOPY_THROTTLE_MAX;
        p->slow_rounds = 0;
    }
}

enum precopy_step precopy_round(struct precopy *p, uint64_t sent, uint64_t dirtied,
                                uint64_t remaining, double seconds)
{
    if (seconds < 1e-6)
        seconds = 1e-6;
    p->round++;
    p->sent = sent;
    if (sent >= PRECOPY_MEASURE_MIN || (sent && p->bandwidth <= 0))
        p->bandwidth = (double)sent / seconds;
    if (p->max_bandwidth && p->bandwidth > (double)p->max_bandwidth)
        p->bandwidth = (double)p->max_bandwidth;
    p->dirty_rate = (double)dirtied / seconds;
    p->remaining = remaining;
    double pages_ms =
        p->bandwidth > 0 ? (double)remaining / p->bandwidth * 1000 : (remaining ? 1e12 : 0);
    p->expected_downtime_ms = pages_ms + pause_rest_ms(p);
    if (pages_ms <= pages_allowed_ms(p))
        return PRECOPY_STOP;
    auto_converge(p, p->expected_downtime_ms > (double)p->max_downtime_ms);
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
