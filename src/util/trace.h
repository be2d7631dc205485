/* Boot-time tracing in the spirit of NetBSD's tslog(4): named timestamps
 * since the VMM started, recorded once each, printed as a table or JSON.
 * Recording is lock-free and safe from any thread. */
#ifndef SMOLVM_UTIL_TRACE_H
#define SMOLVM_UTIL_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum trace_point {
    TRACE_VMM_START,
    TRACE_SPARE_NAMED, /* a spare VMM (serve keeps one ready) was told what to start: at 0, its clock restarted (spare_waited_us) */
    TRACE_VMM_READY, /* a start's own setup done (its control socket, filters, confinement) */
    TRACE_BUNDLE_OPENED, /* a .smolmachine's header checked, its config read */
    TRACE_INPUTS_READ, /* kernel and initrd in memory (and a bzImage unpacked) */
    TRACE_HV_READY,
    TRACE_MEMORY_MAPPED,
    TRACE_DEVICES_CREATED, /* the devices made (their threads, eventfds, KVM's irqfds and ioeventfds) */
    TRACE_KERNEL_LOADED,
    TRACE_MEMORY_RESTORED, /* a .smolmachine's RAM is mapped or read */
    TRACE_STATE_RESTORED, /* a .smolmachine's memory and state are in place */
    TRACE_MIGRATED_IN, /* a migration's destination: the source has stopped (GO), the VM runs here next */
    TRACE_FIRST_VCPU_ENTRY,
    TRACE_FIRST_SERIAL_BYTE,
    TRACE_MARKER_SEEN,
    TRACE_GUEST_STOPPED,
    TRACE_POINT_COUNT
};

/* Counts recorded beside the timestamps (what a start did). */
enum trace_count {
    TRACE_PREFETCHED_PAGES, /* the working set faulted in before the guest ran */
    TRACE_PREFETCH_US,      /* the time that took (its reads queued, then each range faulted in) */
    TRACE_PREFETCH_CALLS,   /* and its system calls: mincore, MADV_WILLNEED (ranges not cached), MADV_POPULATE_* */
    TRACE_FAULTED_CHUNKS,   /* a first start's RAM chunks placed as the guest touched them */
    TRACE_FAULT_SERVE_US,   /* the time those took: read, checked, decoded and placed */
    TRACE_FAULT_PLACE_US,   /* of which placing them (UFFDIO_COPY) */
    TRACE_FAULT_CHECK_US,   /* and reading them and checking their hash */
    TRACE_FAULTED_WINDOWS,  /* the windows of those chunks the guest waited for (the rest placed after) */
    TRACE_FAULT_SERVE_CPU_US, /* of fault_serve_us, the fault thread's own CPU (the rest: waiting for it) */
    TRACE_FAULT_PLACE_CPU_US, /* of fault_place_us, the fault thread's own CPU (the rest: the woken guest ran first) */
    TRACE_PREFILLED_CHUNKS, /* a first start's chunks holding a known working set, decoded into place before the guest ran */
    TRACE_PREFILLED_PAGES,  /* the pages of them placed then (the set's; a chunk wholly in it, whole) */
    TRACE_PREFILL_US,       /* the time that took (read, checked, decoded on a few threads) */
    TRACE_PREFILL_POPULATE_CPU_US, /* of the prefill, the threads' CPU making its chunks' pages present (summed) */
    TRACE_PREFILL_READ_CPU_US,   /* and reading its chunks */
    TRACE_PREFILL_HASH_CPU_US,   /* and checking their SHA-256 */
    TRACE_PREFILL_DECODE_CPU_US, /* and decoding them (zstd, or a copy) */
    TRACE_SECCOMP_US,       /* every thread's time putting its pid in its seccomp filter and loading it */
    TRACE_SECCOMP_CPU_US,   /* of which the threads' own CPU time (the rest: waiting for the CPU) */
    TRACE_SECCOMP_LOADS,    /* the filters loaded (one per thread) */
    TRACE_SECCOMP_AHEAD_US, /* a spare VMM: its threads made ahead, their filters loaded, before it was told what to start */
    TRACE_SECCOMP_AHEAD_LOADS, /* the filters loaded so, not in seccomp_loads */
    TRACE_JAIL_PLAN_US,     /* --jail: making its plan (cli/jail.c), outside */
    TRACE_JAIL_ENTER_US,    /* --jail: entering it (namespaces, mounts, the relay's fork) */
    TRACE_JAIL_FORK_US,     /* of which the relay's fork, as the VMM sees it (in its child) */
    TRACE_JAIL_ROOT_US,     /* and the jail's root: its mounts and pivot_root */
    TRACE_JAIL_DETACH_US,   /* of which detaching the host's mount tree after pivot_root */
    TRACE_JAIL_PRIVATE_US,  /* and making that tree private first (no propagation out) */
    TRACE_JAIL_BINDS_US,    /* and binding the plan's paths in */
    TRACE_JAIL_UNSHARE_US,  /* and its namespaces: unshare() and the id maps */
    TRACE_JAIL_UNSHARE_CALL_US, /* of which the unshare() (or a spare's setns()) call itself */
    TRACE_JAIL_PROC_US,     /* and mounting its pid namespace's procfs */
    TRACE_JAIL_CAPS_US,     /* and dropping the capabilities, after the root (in jail_root_us) */
    TRACE_JAIL_PATHS,       /* the files and folders its plan lets in (the net helper's 6 or not) */
    TRACE_JAIL_AHEAD_US,    /* the VMM's own work on a thread beside its root's building (its VM made) */
    TRACE_JAIL_AHEAD_WAIT_US, /* of which the VMM, its root built, still waited for (in jail_root_us) */
    TRACE_JAIL_PLAN_WAIT_US, /* a spare's VMM, forked before its plan was made: waiting for it (in jail_enter_us; jail_plan_us is the relay's, meanwhile) */
    TRACE_SPARE_AHEAD_US,   /* a spare VMM: its plan's common parts and its jail's template made before it was told what to start */
    TRACE_SPARE_WAITED_US,  /* a spare VMM: from its exec to being told what to start (its clock starts again there) */
    TRACE_SPARE_VMM_AHEAD_US, /* a spare VMM: its VMM forked (a jailed one's into its namespaces) and its VM made before it was told what to start */
    TRACE_START_FILES_US,   /* a start's instance folder, layer chains and files out of the bundle (machine/start.c) */
    TRACE_HV_CREATE_US,     /* the hypervisor's VM made (KVM_CREATE_VM and its checks) */
    TRACE_MINOR_FAULTS,     /* the VMM's page faults until its inputs are read (a jailed one's since the relay's fork) */
    TRACE_KERNEL_READ_US,   /* reading and hashing a bzImage to find its unpacked vmlinux (arch/x86/unpack.h) */
    TRACE_COALESCED_WRITES, /* guest MMIO writes queued by the hypervisor and replayed, each an exit saved */
    TRACE_COUNT_COUNT
};

/* Sets time zero. Called first thing in main(). */
void trace_start(void);

/* Time zero moved to now, the points recorded dropped and vmm_start
 * marked again; the counts kept. A spare VMM told what to start (api/
 * spare.h): its start is timed from there, as a start's from its exec.
 * Returns the ns since the old zero. */
int64_t trace_restart(void);

/* Records the point unless it was already recorded. */
void trace_mark(enum trace_point point);

bool trace_recorded(enum trace_point point);

/* Nanoseconds from time zero to the point, or -1 if never recorded. */
int64_t trace_ns(enum trace_point point);

/* Sets a count (printed with the points once set). */
void trace_set_count(enum trace_count count, uint64_t value);
/* Adds to a count (from any thread; a count never set starts at 0). */
void trace_add_count(enum trace_count count, uint64_t value);
/* A count's value (0 when never set). */
uint64_t trace_count(enum trace_count count);
/* Microseconds since some fixed point, for the durations trace_add_count sums. */
uint64_t trace_now_us(void);
/* Microseconds of CPU the calling thread has used (what of a duration was
 * its own work, not waiting for the CPU). */
uint64_t trace_thread_cpu_us(void);

/* The guest's own phases, on the same timeline (--trace-boot continued
 * into the guest, as tslog does): lines of its console that carry a printk
 * timestamp, "[    1.234567] MESSAGE", and whose message marks a phase: the
 * kernel's well-known lines ("Linux version", "Run /init as init process")
 * and the appliance init's "smolvm-init: trace NAME" (written to /dev/kmsg,
 * so stamped by the kernel's clock too). The guest clock is put on the
 * VMM's by the tightest offset: a line reaches the host no sooner than it
 * was stamped, and the guest runs no sooner than its first vCPU entry.
 * Lines come from the guest: anything else, or a malformed stamp, is
 * ignored; each phase is kept once (its first line). */
#define TRACE_GUEST_NAME_MAX 32
void trace_guest_enable(void);
bool trace_guest_enabled(void);
void trace_guest_line(const char *line, size_t len);
/* The same with the time the line was seen (tests). */
void trace_guest_line_at(const char *line, size_t len, int64_t host_ns);
/* The phase a line marks and its stamp: false for any other line. */
bool trace_guest_parse(const char *line, size_t len, char name[TRACE_GUEST_NAME_MAX],
                       int64_t *guest_ns);

/* Prints every recorded point, the guest's phases merged in by time, and
 * (when the guest's were seen) how the boot splits between VMM, kernel and
 * init; marker names the --trace-until string. */
void trace_print_table(FILE *out, const char *marker);
void trace_print_json(FILE *out, const char *marker);

#endif
