/* Moving a running VM to another smolvm (docs/migration.md): the source
 * side runs in the VM's own process (send.c, asked over its control
 * socket by `smolvm migrate`), the destination in `smolvm receive`
 * (receive.c). The link's frames are protocol.h, its sockets link.h. */
#ifndef SMOLVM_MIGRATE_MIGRATE_H
#define SMOLVM_MIGRATE_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>

#include "machine/machine.h"
#include "migrate/precopy.h"
#include "migrate/protocol.h"

struct migrate_send_options {
    /* The link to the destination, connected by `smolvm migrate` and passed
     * over the control socket: a jailed VMM can reach neither the network
     * nor the file system to dial it itself. migrate_send() closes it. */
    int link;
    uint64_t max_bandwidth;  /* bytes per second on the link; 0: no cap */
    const char *scratch_dir; /* where the paused VM is written before it goes */
    bool live;                /* pre-copy rounds while it runs (warm: round 0) */
    uint64_t max_downtime_ms; /* live: the final pause to aim for */
    /* called after each round (precopy.h has what it measured) */
    void (*round)(void *opaque, const struct precopy *p);
    bundle_progress_fn progress;
    void *opaque;
};

struct migrate_send_result {
    double seconds;  /* from the call to the destination running */
    /* After the hand-over: this side's teardown (the dirty log, the link),
     * which runs idle behind the guest there; not in seconds, as QEMU's
     * total-time ends at completion. */
    double wind_down;
    double downtime; /* from the pause to the destination running */
    double paused_wall; /* when the pause began: CLOCK_REALTIME, seconds (0: never) */
    uint64_t bytes;  /* of the VM sent */
    unsigned rounds; /* pre-copy rounds (warm: 1) */
    /* Where the downtime went (seconds; what a slow one is traced by):
     * the last dirty pages, saving the bundle, sending it, the destination
     * building the VM (READY), the hand-over (GO, DONE). */
    double pages, save, send, build, handover;
    /* Where the rounds' time went (seconds; --json "stats"): finding the
     * pages to send (the dirty bits, round 0's check for zeros), copying
     * them out of the running guest, waiting for the cap, fetching the
     * dirty log; and the link's (frames, checksums, writes). */
    double scan, copy, pace, fetch;
    uint64_t untouched; /* pages round 0 left unread: never touched, zeros */
    struct migrate_link_stats link;
};

/* Warm migration of m over o->link: checks the destination takes it (version, CPU,
 * config), pauses m, sends its config, device state, RAM and disks, and
 * tells the destination to run once it has built the VM. 0: the VM runs
 * there and m must stop (it stays paused). Otherwise the message is set
 * and m is as it was (resumed if it ran) -- but for a link cut after the
 * destination was told to run, when m stays paused (never two running). */
int migrate_send(struct machine *m, const struct migrate_send_options *o,
                 struct migrate_send_result *res) __attribute__((warn_unused_result));

struct migrate_receive {
    const struct x86_cpuid_entry *host; /* this host's CPU */
    size_t host_n;
    int bundle_fd;           /* the bundle goes here: a file in scratch_dir */
    const char *scratch_dir; /* where bundle_fd is (its messages name it) */
    /* Whether this host has a layer the source offers (its bytes checked
     * against its hash): *have set; <0 with the message set when it cannot
     * tell. NULL: it has none. */
    int (*have_layer)(const char *hash, const char *format, bool *have);
    /* Where the RAM's pages go: called as the RAM comes (its size checked
     * against the config's memory), with the config's memory and CPUs and
     * the config itself (CONFIG's JSON, checked against this host), it
     * builds the VM there (vm_prepare(): all of it the bundle's state does
     * not decide) and sets *home to its memory, the regions end to end as
     * the pages' offsets count them; 0, or a negative errno with the
     * message set. The VM stays the caller's (to finish from the bundle,
     * whose config must be this one, or destroy), also when the migration
     * fails. NULL: RAM is refused (only a bundle with its memory is taken). */
    int (*ram_home)(void *opaque, const char *config, uint64_t mem_bytes, unsigned cpus,
                    const struct guest_memory **home);
    void *opaque;
    /* out: ram_home's memory, once it has been asked (or NULL) */
    const struct guest_memory *home;
    /* out: the layers it said it has, which the bundle lists without
     * carrying them (malloc'd; freed by the caller) */
    char (*have)[HASH_HEX];
    size_t have_count;
};

/* The destination's part up to the VM built: a HELLO checked against this
 * host's CPU, the config against this host, an OFFER of layers answered
 * with HAVE (rx->have_layer), a live migration's RAM pages
 * (each inside the RAM the config has), then the VM's bundle written to
 * rx->bundle_fd and checked whole (size, SHA-256). 0, or a negative errno
 * with the message set, the source told why. */
int migrate_receive_bundle(struct migrate_link *l, struct migrate_receive *rx)
    __attribute__((warn_unused_result));

/* After the VM is built from that bundle: READY, then GO awaited (the
 * source has stopped), DONE sent. 0: run it; otherwise drop it. */
int migrate_receive_commit(struct migrate_link *l) __attribute__((warn_unused_result));

#endif
