#include "util/trace.h"

#include <stdatomic.h>
#include <time.h>

static const char *const point_names[TRACE_POINT_COUNT] = {
    [TRACE_VMM_START] = "vmm_start",
    [TRACE_BUNDLE_OPENED] = "bundle_opened",
    [TRACE_INPUTS_READ] = "inputs_read",
    [TRACE_HV_READY] = "hypervisor_ready",
    [TRACE_MEMORY_MAPPED] = "guest_memory_mapped",
    [TRACE_KERNEL_LOADED] = "kernel_loaded",
    [TRACE_MEMORY_RESTORED] = "memory_restored",
    [TRACE_STATE_RESTORED] = "state_restored",
    [TRACE_FIRST_VCPU_ENTRY] = "first_vcpu_entry",
    [TRACE_FIRST_SERIAL_BYTE] = "first_serial_byte",
    [TRACE_MARKER_SEEN] = "marker_seen",
    [TRACE_GUEST_STOPPED] = "guest_stopped",
};

static const char *const count_names[TRACE_COUNT_COUNT] = {
    [TRACE_PREFETCHED_PAGES] = "prefetched_pages",
    [TRACE_FAULTED_CHUNKS] = "faulted_chunks",
};

static int64_t time_zero;
/* 0: not set; a value is stored as value + 1. */
static _Atomic uint64_t counts[TRACE_COUNT_COUNT];
/* 0 means "not recorded": a real point is stored as ns + 1. */
static _Atomic int64_t recorded[TRACE_POINT_COUNT];

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void trace_start(void)
{
    time_zero = now_ns();
    for (int i = 0; i < TRACE_POINT_COUNT; i++)
        atomic_store(&recorded[i], 0);
    for (int i = 0; i < TRACE_COUNT_COUNT; i++)
        atomic_store(&counts[i], 0);
    trace_mark(TRACE_VMM_START);
}

void trace_mark(enum trace_point point)
{
    int64_t expected = 0;
    atomic_compare_exchange_strong(&recorded[point], &expected, now_ns() - time_zero + 1);
}

void trace_set_count(enum trace_count count, uint64_t value)
{
    atomic_store(&counts[count], value + 1);
}

bool trace_recorded(enum trace_point point)
{
    return atomic_load(&recorded[point]) != 0;
}

int64_t trace_ns(enum trace_point point)
{
    int64_t v = atomic_load(&recorded[point]);
    return v ? v - 1 : -1;
}

void trace_print_table(FILE *out, const char *marker)
{
    int64_t previous = 0;

    fprintf(out, "%-22s %12s %12s\n", "event", "ms", "delta ms");
    for (int i = 0; i < TRACE_POINT_COUNT; i++) {
        int64_t t = trace_ns(i);
        if (t < 0)
            continue;
        fprintf(out, "%-22s %12.3f %12.3f", point_names[i], t / 1e6, (t - previous) / 1e6);
        if (i == TRACE_MARKER_SEEN && marker)
            fprintf(out, "  \"%s\"", marker);
        fputc('\n', out);
        previous = t;
    }
    for (int i = 0; i < TRACE_COUNT_COUNT; i++)
        if (atomic_load(&counts[i]))
            fprintf(out, "%-22s %12llu\n", count_names[i],
                    (unsigned long long)(atomic_load(&counts[i]) - 1));
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

void trace_print_json(FILE *out, const char *marker)
{
    const char *sep = "";

    fputs("{\"unit\":\"ms\",\"events\":{", out);
    for (int i = 0; i < TRACE_POINT_COUNT; i++) {
        int64_t t = trace_ns(i);
        if (t < 0)
            continue;
        fprintf(out, "%s\"%s\":%.3f", sep, point_names[i], t / 1e6);
        sep = ",";
    }
    fputs("}", out);
    bool any = false;
    for (int i = 0; i < TRACE_COUNT_COUNT; i++)
        if (atomic_load(&counts[i])) {
            fprintf(out, "%s\"%s\":%llu", any ? "," : ",\"counts\":{", count_names[i],
                    (unsigned long long)(atomic_load(&counts[i]) - 1));
            any = true;
        }
    if (any)
        fputs("}", out);
    if (marker) {
        fputs(",\"marker\":", out);
        json_string(out, marker);
    }
    fputs("}\n", out);
}
