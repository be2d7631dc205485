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

/* Puts value in every BPF_JMP|BPF_JEQ|BPF_K instruction of insns whose k is
 * sentinel. Fails closed, -EINVAL, when that is not exactly expected of
 * them, or when any other instruction holds the sentinel (a value left
 * unset): the program is then not to be loaded. 0 otherwise. */
int seccomp_patch(struct sock_filter *insns, size_t len, uint32_t sentinel, uint32_t value,
                  unsigned expected);

/* Whether kind's rules name nothing known only at run time but the own
 * pid, so that its program can be made at build time and the pid put in
 * when it is loaded. The relay's name a varying number of folders, in an
 * order libseccomp gives by their values: built when it starts. */
bool seccomp_rules_prebuildable(enum confine_thread kind);

/* kind's filter for mode (CONFINE_SECCOMP_ON: a forbidden call traps;
 * CONFINE_SECCOMP_LOG: it is logged and goes on) naming values, exported as
 * the BPF program seccomp_load() would load, into out->filter (malloc'd,
 * the caller frees it). 0, or -errno. */
int seccomp_rules_program(enum confine_thread kind, enum confine_seccomp mode,
                          const struct seccomp_values *values, struct sock_fprog *out);

#endif
