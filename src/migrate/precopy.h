/* The rounds of a pre-copy migration (live; a warm one is its round 0
 * alone), as arithmetic: no clock, no socket, no VM -- send.c feeds in
 * what each round measured, and this says whether to go on, stop and copy
 * the rest, or slow the guest down (auto-converge). Unit-tested with made-up clocks (test_migrate). */
#ifndef SMOLVM_MIGRATE_PRECOPY_H
#define SMOLVM_MIGRATE_PRECOPY_H

#include <stdbool.h>
#include <stdint.h>

#define PRECOPY_MAX_ROUNDS 30
#define PRECOPY_THROTTLE_STEP 20 /* percent of vCPU time taken per step */
#define PRECOPY_THROTTLE_MAX 90
/* What the pause takes besides the last pages (the devices saved, the
 * rest of the bundle sent, the hand-over; the VM is built on the
 * destination before it): 20-80 ms in a nested host. At most half of
 * the limit is set aside for it. */
#define PRECOPY_PAUSE_REST_MS 50
/* The rounds' patience: after round k the last pages may take k/8 of the
 * time the limit leaves them, from round 8 on all of it. */
#define PRECOPY_PATIENT_ROUNDS 8
/* A round that sends less than this measures the round's fixed costs
 * (fetching the dirty log, the scan), not the link: the bandwidth of the
 * last round that sent more is kept. */
#define PRECOPY_MEASURE_MIN (1u << 20)

struct precopy {
    /* set by the caller */
    uint64_t max_downtime_ms; /* what the final pause may take */
    uint64_t max_bandwidth;   /* bytes/s cap; 0: none */
    unsigned max_rounds;      /* 0: PRECOPY_MAX_ROUNDS (warm: 1) */
    /* measured, round by round */
    unsigned round;           /* rounds done */
    uint64_t sent;            /* bytes the last round sent */
    double bandwidth;         /* bytes/s the link carried last round */
    double dirty_rate;        /* bytes/s the guest dirtied last round */
    uint64_t remaining;       /* bytes dirty now (what a stop would send) */
    double expected_downtime_ms; /* those bytes at that rate, and the pause's rest */
    unsigned throttle;        /* percent of vCPU time taken away */
    unsigned slow_rounds;     /* rounds in a row the guest outran the link */
};

enum precopy_step {
    PRECOPY_AGAIN,    /* send what is dirty, another round */
    PRECOPY_STOP,     /* pause and send the rest: it fits the downtime */
    PRECOPY_GIVE_UP,  /* rounds spent: pause and send the rest anyway */
};

/* A round ended: sent bytes took seconds on the link, while the guest
 * dirtied dirty bytes (remaining: all now dirty). Returns the next step;
 * may raise p->throttle (the caller slows the vCPUs to it).
 *
 * The stop point: the pages left, sent at the bandwidth measured, must
 * fit what the limit leaves after the pause's rest (PRECOPY_PAUSE_REST_MS,
 * at most half the limit) -- as QEMU's rule, which stops once they fit --
 * but early rounds ask for less: after round k, k/PRECOPY_PATIENT_ROUNDS
 * of it. A guest that dirties in bursts leaves little after a round that
 * ends between them, and a few rounds' patience finds one; one that always
 * leaves too much is stopped once the full limit is reached, and one that
 * never fits it is throttled, then given up on after max_rounds. */
enum precopy_step precopy_round(struct precopy *p, uint64_t sent, uint64_t dirtied,
                                uint64_t remaining, double seconds);

/* Seconds sending bytes must take at the cap, from a start (0: no wait). */
double precopy_pace(const struct precopy *p, uint64_t bytes_since_start, double elapsed);

#endif
