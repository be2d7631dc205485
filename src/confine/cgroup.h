/* Resource limits of a VMM (--cpu-quota, --mem-limit; a bound on its
 * processes and threads with them): a cgroup v2 of its own,
 * smolvm-NAME, made beside or under the one it runs in, where the host
 * delegates one with the cpu, memory and pids controllers to this user
 * (root; a systemd scope with Delegate=yes). When the VMM ends it goes
 * back to the cgroup it came from and removes its own (cgroup_leave, at
 * exit; a jailed VMM lets go of the cgroups: its relay outside does). */
#ifndef SMOLVM_CONFINE_CGROUP_H
#define SMOLVM_CONFINE_CGROUP_H

#include <stddef.h>
#include <stdint.h>

#define CGROUP_PERIOD_US 100000 /* cpu.max's period: quotas are of 100 ms */
#define CGROUP_PIDS_MAX 1024    /* threads and processes of one VMM */

struct cgroup_limits {
    uint64_t cpu_quota_milli; /* thousandths of a CPU; 0: no limit */
    uint64_t mem_bytes;       /* 0: no limit */
};

/* Moves this process into NAME's cgroup with limits l. 0, or an error
 * (err.h) saying what the host lacks. */
int cgroup_enter(const char *name, const struct cgroup_limits *l)
    __attribute__((warn_unused_result));

/* Moves this process back to the cgroup it was in before cgroup_enter()
 * and removes the one it made (what else is in it may be ending: waits a
 * second). Nothing when it entered none, or cannot (err.h cleared). Runs
 * at exit on its own. */
void cgroup_leave(void);

/* Lets go of what cgroup_leave() needs, in a process that must not move
 * itself out of its limits (the jailed VMM: its relay leaves for it). */
void cgroup_forget(void);

/* The folder cgroup_leave() removes the cgroup from, held open (an fd),
 * or -1: the jail's relay may remove a folder there and nowhere else. */
int cgroup_held_folder(void);

/* The cgroup v2 path ("/a/b") in /proc/self/cgroup's text: its "0::" line.
 * 0, or -ENOENT (no cgroup v2) / -ENAMETOOLONG. */
int cgroup_own_path(const char *text, char *out, size_t size);

/* cpu.max's line for a quota: "150000 100000" for 1.5 CPUs. */
void cgroup_cpu_max(uint64_t cpu_quota_milli, char *out, size_t size);

#endif
