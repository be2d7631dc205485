/* The seccomp programs made at build time (seccomp_gen.c writes
 * seccomp_programs.c), one per kind of thread and mode, and what loading
 * one takes: the own pid put where the program names it. */
#ifndef SMOLVM_CONFINE_SECCOMP_PREBUILT_H
#define SMOLVM_CONFINE_SECCOMP_PREBUILT_H

#include "confine/seccomp_rules.h"

/* A program made for one pid: libseccomp lays out a program whose pid
 * equals another value it compares with (the vsock thread's AF_UNIX, 1:
 * a jailed VMM's pid) otherwise than the sentinel's, sharing their blocks. */
struct seccomp_pid_program {
    pid_t pid;
    const struct sock_filter *insns;
    unsigned short len;
};

/* One kind's program in one mode: insns with the sentinel in self_count
 * BPF_JMP|BPF_JEQ|BPF_K instructions, and the programs for the pids
 * that would not give libseccomp's program patched in. len 0: built at
 * run time. */
struct seccomp_prebuilt {
    const struct sock_filter *insns;
    unsigned short len;
    unsigned short self_count;
    const struct seccomp_pid_program *for_pids;
    unsigned short for_pid_count;
};

/* [kind][0]: CONFINE_SECCOMP_ON (a forbidden call traps); [kind][1]:
 * CONFINE_SECCOMP_LOG. */
extern const struct seccomp_prebuilt seccomp_prebuilt[CONFINE_THREAD_KINDS][2];

/* The relay's programs for its folders in their slots (seccomp_rules.h):
 * [mode as above][whether its own pid is above its VMM's], the own pid's
 * sentinel in SECCOMP_RELAY_NAMING_SELF comparisons, the VMM's
 * (SECCOMP_SENTINEL_VMM_ABOVE, or _BELOW in [..][1]) in
 * SECCOMP_RELAY_NAMING_VMM. */
extern const struct seccomp_prebuilt seccomp_relay_prebuilt[2][2];

/* The kernel's names of this architecture's calls, for the violation's
 * line (the SIGSYS handler may call neither malloc nor libseccomp). */
#define SECCOMP_SYSCALL_NAMES 512
#define SECCOMP_SYSCALL_NAME_MAX 32 /* with its '\0'; "" for a number that names none */
extern const char seccomp_syscall_names[SECCOMP_SYSCALL_NAMES][SECCOMP_SYSCALL_NAME_MAX];

/* kind's build-time program for mode with self as the own pid, in
 * out->filter (malloc'd, the caller frees it). -ENOENT when kind has
 * none (the relay's: seccomp_relay_prebuilt_program()), -EINVAL from seccomp_patch(),
 * -ENOMEM. */
int seccomp_prebuilt_program(enum confine_thread kind, enum confine_seccomp mode, pid_t self,
                             struct sock_fprog *out);

/* The relay's build-time program for mode with its folders in their
 * slots, self its own pid and vmm its VMM's, in out->filter (malloc'd).
 * -ENOENT when a pid is a value the program compares with elsewhere
 * (libseccomp would lay it out otherwise: built at run time), -EINVAL
 * (a pid not > 0, the two equal, a sentinel not where expected), -ENOMEM. */
int seccomp_relay_prebuilt_program(enum confine_seccomp mode, pid_t self, pid_t vmm,
                                   struct sock_fprog *out);

#endif
