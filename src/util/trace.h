/* Boot-time tracing in the spirit of NetBSD's tslog(4): named timestamps
 * since the VMM started, recorded once each, printed as a table or JSON.
 * Recording is lock-free and safe from any thread. */
#ifndef SMOLVM_UTIL_TRACE_H
#define SMOLVM_UTIL_TRACE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum trace_point {
    TRACE_VMM_START,
    TRACE_BUNDLE_OPENED, /* a .smolmachine's header checked, its config read */
    TRACE_INPUTS_READ, /* kernel and initrd in memory (and a bzImage unpacked) */
    TRACE_HV_READY,
    TRACE_MEMORY_MAPPED,
    TRACE_KERNEL_LOADED,
    TRACE_MEMORY_RESTORED, /* a .smolmachine's RAM is mapped or read */
    TRACE_STATE_RESTORED, /* a .smolmachine's memory and state are in place */
    TRACE_FIRST_VCPU_ENTRY,
    TRACE_FIRST_SERIAL_BYTE,
    TRACE_MARKER_SEEN,
    TRACE_GUEST_STOPPED,
    TRACE_POINT_COUNT
};

/* Counts recorded beside the timestamps (what a start did). */
enum trace_count {
    TRACE_PREFETCHED_PAGES, /* the working set faulted in before the guest ran */
    TRACE_FAULTED_CHUNKS,   /* a first start's RAM chunks placed as the guest touched them */
    TRACE_COUNT_COUNT
};

/* Sets time zero. Called first thing in main(). */
void trace_start(void);

/* Records the point unless it was already recorded. */
void trace_mark(enum trace_point point);

bool trace_recorded(enum trace_point point);

/* Nanoseconds from time zero to the point, or -1 if never recorded. */
int64_t trace_ns(enum trace_point point);

/* Sets a count (printed with the points once set). */
void trace_set_count(enum trace_count count, uint64_t value);

/* Prints every recorded point; marker names the --trace-until string. */
void trace_print_table(FILE *out, const char *marker);
void trace_print_json(FILE *out, const char *marker);

#endif
