/* The rules of each kind of VMM thread's seccomp filter (confine.h), as
 * libseccomp builds them: the one description that both the programs made
 * at build time (seccomp_gen.c, loaded by seccomp.c) and the filters built
 * at run time (the relay's; the tests' oracle) come from. */
#ifndef SMOLVM_CONFINE_SECCOMP_RULES_H
#define SMOLVM_CONFINE_SECCOMP_RULES_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "confine/confine.h"

/* The values a filter names that are known only when it is loaded. */
struct seccomp_values {
    pid_t self;                   /* the process's own pid: tgkill's, the relay's kill */
    pid_t relay_vmm;              /* the relay's VMM (0: none) */
    int relay_cgroup_folder;      /* the folder the relay removes the cgroup from (-1: none) */
    const int *relay_leftover_dirs; /* folders the relay removes the VM's names from */
    unsigned relay_leftover_count;
    int relay_arrival_pipe;       /* the arrival's byte is read from it (-1: none) */
    int relay_arrival_dir;        /* the arrival's folder is renamed in it (-1: none) */
};

/* How many rules of kind name values->self: each is one BPF_JMP|BPF_JEQ|
 * BPF_K instruction whose k is the pid in the exported program (a pid's
 * upper 32 bits are 0, compared apart). */
#define SECCOMP_RULES_NAMING_SELF 1

/* The largest pid Linux gives (PID_MAX_LIMIT on 64 bits). */
#define SECCOMP_PID_MAX (1 << 22)

/* The pid the build-time programs are made with: no pid (pid_max is at
 * most 2^22), and no call number, ioctl or mask a filter compares with
 * (the generator checks it names only the rules that name the pid). */
#define SECCOMP_SENTINEL_SELF 0x5ecc0b1du

/* The relay's held folders at fixed numbers (jail.c moves them there as
 * it relays): its rules then name nothing known only at run time but two
 * pids, its own and its VMM's, and its program is made at build time too
 * (libseccomp building it as the relay began took ~2.6 ms of a jailed
 * start's CPU in the nested L1, bench jail_cpu). SECCOMP_RELAY_SLOTS
 * numbers from SECCOMP_RELAY_FD_BASE, each a leftover's folder or
 * closed (the relay's filter lets it make no file descriptor): below 64,
 * in the table of descriptors a process begins with. No cgroup and no
 * arrival: a relay that holds either builds its filter as it starts. */
#define SECCOMP_RELAY_FD_BASE 48
#define SECCOMP_RELAY_SLOTS 8

/* The relay's rules name its own pid twice (tgkill, kill) and its VMM's
 * twice (wait4, kill). libseccomp orders the two comparisons of kill by
 * their values: a program is made for each order, the VMM's sentinel
 * above the own one's or below. */
#ifndef CONFINE_SANITIZED
#define SECCOMP_RELAY_NAMING_SELF 2
#define SECCOMP_RELAY_NAMING_VMM 2
#else /* the sanitizers' calls allow kill and wait4 whatever their pid */
#define SECCOMP_RELAY_NAMING_SELF 1
#define SECCOMP_RELAY_NAMING_VMM 0
#endif
#define SECCOMP_SENTINEL_VMM_ABOVE (SECCOMP_SENTINEL_SELF + 1)
#define SECCOMP_SENTINEL_VMM_BELOW (SECCOMP_SENTINEL_SELF - 1)

/* The relay's values with its folders in their slots (all of them), its
 * own pid self and its VMM's vmm. */
void seccomp_relay_slot_values(struct seccomp_values *v, pid_t self, pid_t vmm);
/* Whether v is a relay's that its build-time program fits: its VMM
 * named, its folders in their slots, in order, no cgroup, no arrival. */
bool seccomp_relay_in_slots(const struct seccomp_values *v);

/* Puts value in every BPF_JMP|BPF_JEQ|BPF_K instruction of insns whose k is
 * sentinel. Fails closed, -EINVAL, when that is not exactly expected of
 * them, or when any other instruction holds the sentinel (a value left
 * unset): the program is then not to be loaded. 0 otherwise. */
int seccomp_patch(struct sock_filter *insns, size_t len, uint32_t sentinel, uint32_t value,
                  unsigned expected);

/* Whether any instruction of insns holds k (a pid equal to a value the
 * program compares with elsewhere: libseccomp may share their blocks). */
bool seccomp_program_holds(const struct sock_filter *insns, size_t len, uint32_t k);

/* Whether kind's rules name nothing known only at run time but the own
 * pid, so that its program can be made at build time and the pid put in
 * when it is loaded. The relay's name its folders and its VMM too: made
 * apart, for its folders in their slots (above). */
bool seccomp_rules_prebuildable(enum confine_thread kind);

/* kind's filter for mode (CONFINE_SECCOMP_ON: a forbidden call traps;
 * CONFINE_SECCOMP_LOG: it is logged and goes on) naming values, exported as
 * the BPF program seccomp_load() would load, into out->filter (malloc'd,
 * the caller frees it). 0, or -errno. */
int seccomp_rules_program(enum confine_thread kind, enum confine_seccomp mode,
                          const struct seccomp_values *values, struct sock_fprog *out);

#endif
