#include "util/trace.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const point_names[TRACE_POINT_COUNT] = {
    [TRACE_VMM_START] = "vmm_start",
    [TRACE_SPARE_NAMED] = "spare_named",
    [TRACE_VMM_READY] = "vmm_ready",
    [TRACE_BUNDLE_OPENED] = "bundle_opened",
    [TRACE_INPUTS_READ] = "inputs_read",
    [TRACE_HV_READY] = "hypervisor_ready",
    [TRACE_MEMORY_MAPPED] = "guest_memory_mapped",
    [TRACE_DEVICES_CREATED] = "devices_created",
    [TRACE_KERNEL_LOADED] = "kernel_loaded",
    [TRACE_MEMORY_RESTORED] = "memory_restored",
    [TRACE_STATE_RESTORED] = "state_restored",
    [TRACE_MIGRATED_IN] = "migrated_in",
    [TRACE_FIRST_VCPU_ENTRY] = "first_vcpu_entry",
    [TRACE_FIRST_SERIAL_BYTE] = "first_serial_byte",
    [TRACE_MARKER_SEEN] = "marker_seen",
    [TRACE_GUEST_STOPPED] = "guest_stopped",
};

static const char *const count_names[TRACE_COUNT_COUNT] = {
    [TRACE_PREFETCHED_PAGES] = "prefetched_pages",
    [TRACE_PREFETCH_US] = "prefetch_us",
    [TRACE_PREFETCH_CALLS] = "prefetch_calls",
    [TRACE_FAULTED_CHUNKS] = "faulted_chunks",
    [TRACE_FAULT_SERVE_US] = "fault_serve_us",
    [TRACE_FAULT_PLACE_US] = "fault_place_us",
    [TRACE_FAULT_CHECK_US] = "fault_check_us",
    [TRACE_FAULTED_WINDOWS] = "faulted_windows",
    [TRACE_FAULT_SERVE_CPU_US] = "fault_serve_cpu_us",
    [TRACE_FAULT_PLACE_CPU_US] = "fault_place_cpu_us",
    [TRACE_PREFILLED_CHUNKS] = "prefilled_chunks",
    [TRACE_PREFILLED_PAGES] = "prefilled_pages",
    [TRACE_PREFILL_US] = "prefill_us",
    [TRACE_PREFILL_POPULATE_CPU_US] = "prefill_populate_cpu_us",
    [TRACE_PREFILL_READ_CPU_US] = "prefill_read_cpu_us",
    [TRACE_PREFILL_HASH_CPU_US] = "prefill_hash_cpu_us",
    [TRACE_PREFILL_DECODE_CPU_US] = "prefill_decode_cpu_us",
    [TRACE_SECCOMP_US] = "seccomp_us",
    [TRACE_SECCOMP_CPU_US] = "seccomp_cpu_us",
    [TRACE_SECCOMP_LOADS] = "seccomp_loads",
    [TRACE_SECCOMP_AHEAD_US] = "seccomp_ahead_us",
    [TRACE_SECCOMP_AHEAD_LOADS] = "seccomp_ahead_loads",
    [TRACE_JAIL_PLAN_US] = "jail_plan_us",
    [TRACE_JAIL_ENTER_US] = "jail_enter_us",
    [TRACE_JAIL_FORK_US] = "jail_fork_us",
    [TRACE_JAIL_ROOT_US] = "jail_root_us",
    [TRACE_JAIL_DETACH_US] = "jail_detach_us",
    [TRACE_JAIL_PRIVATE_US] = "jail_private_us",
    [TRACE_JAIL_BINDS_US] = "jail_binds_us",
    [TRACE_JAIL_UNSHARE_US] = "jail_unshare_us",
    [TRACE_JAIL_UNSHARE_CALL_US] = "jail_unshare_call_us",
    [TRACE_JAIL_PROC_US] = "jail_proc_us",
    [TRACE_JAIL_CAPS_US] = "jail_caps_us",
    [TRACE_JAIL_PATHS] = "jail_paths",
    [TRACE_JAIL_AHEAD_US] = "jail_ahead_us",
    [TRACE_JAIL_PLAN_WAIT_US] = "jail_plan_wait_us",
    [TRACE_JAIL_AHEAD_WAIT_US] = "jail_ahead_wait_us",
    [TRACE_SPARE_AHEAD_US] = "spare_ahead_us",
    [TRACE_SPARE_WAITED_US] = "spare_waited_us",
    [TRACE_SPARE_VMM_AHEAD_US] = "spare_vmm_ahead_us",
    [TRACE_START_FILES_US] = "start_files_us",
    [TRACE_HV_CREATE_US] = "hv_create_us",
    [TRACE_MINOR_FAULTS] = "minor_faults",
    [TRACE_KERNEL_READ_US] = "kernel_read_us",
    [TRACE_COALESCED_WRITES] = "coalesced_writes",
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

/* ---- the guest's phases ---- */

#define GUEST_EVENTS_MAX 16
#define INIT_PREFIX "smolvm-init: trace "

struct guest_event {
    char name[TRACE_GUEST_NAME_MAX];
    int64_t guest_ns, host_ns;
};

static pthread_mutex_t guest_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool guest_wanted;
static struct guest_event guest_events[GUEST_EVENTS_MAX];
static unsigned guest_count;

/* The kernel's lines that mark its phases (message prefixes). */
static const struct {
    const char *prefix, *name;
} kernel_phases[] = {
    {"Linux version ", "kernel_start"},
    {"smp: Brought up ", "kernel_cpus_up"},
    {"Freeing unused kernel image", "kernel_init_freed"},
    {"Run /init as init process", "kernel_run_init"},
    {"Run /sbin/init as init process", "kernel_run_init"},
};

/* "[    1.234567] " at the start: the stamp in ns, and where the message
 * starts. */
static bool parse_stamp(const char *line, size_t len, int64_t *ns, size_t *message)
{
    size_t i = 0;
    int64_t sec = 0, usec = 0;
    unsigned digits = 0;

    if (len < 10 || line[i++] != '[')
        return false;
    while (i < len && line[i] == ' ')
        i++;
    for (; i < len && line[i] >= '0' && line[i] <= '9'; i++, digits++)
        if (digits == 9) /* over 30 years of uptime: not a stamp */
            return false;
        else
            sec = sec * 10 + (line[i] - '0');
    if (digits == 0 || i >= len || line[i++] != '.')
        return false;
    for (digits = 0; i < len && line[i] >= '0' && line[i] <= '9' && digits < 6; i++, digits++)
        usec = usec * 10 + (line[i] - '0');
    if (digits != 6 || i >= len || line[i++] != ']')
        return false;
    if (i < len && line[i] == ' ')
        i++;
    *ns = sec * 1000000000 + usec * 1000;
    *message = i;
    return true;
}

static bool starts(const char *text, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(text, prefix, n) == 0;
}

bool trace_guest_parse(const char *line, size_t len, char name[TRACE_GUEST_NAME_MAX],
                       int64_t *guest_ns)
{
    size_t at;

    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    if (!parse_stamp(line, len, guest_ns, &at))
        return false;
    const char *m = line + at;
    len -= at;
    for (size_t i = 0; i < sizeof(kernel_phases) / sizeof(kernel_phases[0]); i++)
        if (starts(m, len, kernel_phases[i].prefix)) {
            snprintf(name, TRACE_GUEST_NAME_MAX, "%s", kernel_phases[i].name);
            return true;
        }
    if (!starts(m, len, INIT_PREFIX))
        return false;
    /* init_NAME, NAME of [a-z0-9_] only: it is printed and put in JSON. */
    size_t n = strlen(INIT_PREFIX), k = 5;
    memcpy(name, "init_", 5);
    for (; n < len && k < TRACE_GUEST_NAME_MAX - 1; n++, k++) {
        char c = m[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
        name[k] = c;
    }
    name[k] = 0;
    return n == len && k > 5;
}

void trace_guest_enable(void)
{
    atomic_store(&guest_wanted, true);
}

bool trace_guest_enabled(void)
{
    return atomic_load(&guest_wanted);
}

void trace_guest_line_at(const char *line, size_t len, int64_t host_ns)
{
    char name[TRACE_GUEST_NAME_MAX];
    int64_t guest_ns;

    if (!trace_guest_parse(line, len, name, &guest_ns))
        return;
    pthread_mutex_lock(&guest_lock);
    bool seen = false;
    for (unsigned i = 0; i < guest_count; i++)
        seen = seen || strcmp(guest_events[i].name, name) == 0;
    if (!seen && guest_count < GUEST_EVENTS_MAX) {
        struct guest_event *e = &guest_events[guest_count++];
        memcpy(e->name, name, sizeof(name));
        e->guest_ns = guest_ns;
        e->host_ns = host_ns;
    }
    pthread_mutex_unlock(&guest_lock);
}

void trace_guest_line(const char *line, size_t len)
{
    trace_guest_line_at(line, len, now_ns() - time_zero);
}

void trace_start(void)
{
    pthread_mutex_lock(&guest_lock);
    guest_count = 0;
    pthread_mutex_unlock(&guest_lock);
    time_zero = now_ns();
    for (int i = 0; i < TRACE_POINT_COUNT; i++)
        atomic_store(&recorded[i], 0);
    for (int i = 0; i < TRACE_COUNT_COUNT; i++)
        atomic_store(&counts[i], 0);
    trace_mark(TRACE_VMM_START);
}

int64_t trace_restart(void)
{
    int64_t now = now_ns(), since = now - time_zero;

    time_zero = now;
    for (int i = 0; i < TRACE_POINT_COUNT; i++)
        atomic_store(&recorded[i], 0);
    trace_mark(TRACE_VMM_START);
    return since;
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

void trace_add_count(enum trace_count count, uint64_t value)
{
    uint64_t old = atomic_load(&counts[count]);
    while (!atomic_compare_exchange_weak(&counts[count], &old, (old ? old : 1) + value))
        ;
}

uint64_t trace_count(enum trace_count count)
{
    uint64_t value = atomic_load(&counts[count]);
    return value ? value - 1 : 0;
}

uint64_t trace_now_us(void)
{
    return (uint64_t)now_ns() / 1000;
}

uint64_t trace_thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
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

/* The timeline: the VMM's points and the guest's phases, by time. */
struct row {
    const char *name;
    int64_t ns;
    bool marker;
    unsigned seq; /* ties keep this order: the VMM's points first */
};

#define ROWS_MAX (TRACE_POINT_COUNT + GUEST_EVENTS_MAX)

static int by_time(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    if (x->ns != y->ns)
        return x->ns < y->ns ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Where the guest's clock starts on the VMM's. */
static int64_t guest_offset(void)
{
    int64_t offset = INT64_MAX;
    for (unsigned i = 0; i < guest_count; i++)
        if (guest_events[i].host_ns - guest_events[i].guest_ns < offset)
            offset = guest_events[i].host_ns - guest_events[i].guest_ns;
    if (trace_recorded(TRACE_FIRST_VCPU_ENTRY) && offset < trace_ns(TRACE_FIRST_VCPU_ENTRY))
        offset = trace_ns(TRACE_FIRST_VCPU_ENTRY);
    return offset;
}

static unsigned timeline(struct row *rows)
{
    unsigned n = 0;
    for (int i = 0; i < TRACE_POINT_COUNT; i++)
        if (trace_recorded(i)) {
            rows[n] = (struct row){point_names[i], trace_ns(i), i == TRACE_MARKER_SEEN, n};
            n++;
        }
    int64_t offset = guest_offset();
    for (unsigned i = 0; i < guest_count; i++) {
        rows[n] = (struct row){guest_events[i].name, guest_events[i].guest_ns + offset, false, n};
        n++;
    }
    qsort(rows, n, sizeof(*rows), by_time);
    return n;
}

/* VMM: until the first vCPU entry; kernel: from there until it runs init;
 * init: from there to the init's last phase (or the --trace-until marker,
 * for an init that says no phases). False until the kernel ran init. */
struct split {
    int64_t vmm, kernel, init;
};

static bool boot_split(const struct row *rows, unsigned n, struct split *out)
{
    int64_t entry = trace_ns(TRACE_FIRST_VCPU_ENTRY), run_init = -1, last_init = -1;
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(rows[i].name, "kernel_run_init") == 0)
            run_init = rows[i].ns;
        if ((strncmp(rows[i].name, "init_", 5) == 0 || rows[i].marker) && rows[i].ns > last_init)
            last_init = rows[i].ns;
    }
    if (entry < 0 || run_init < 0)
        return false;
    out->vmm = entry;
    out->kernel = run_init - entry;
    out->init = last_init > run_init ? last_init - run_init : 0;
    return true;
}

void trace_print_table(FILE *out, const char *marker)
{
    struct row rows[ROWS_MAX];
    struct split split;
    int64_t previous = 0;

    pthread_mutex_lock(&guest_lock);
    unsigned n = timeline(rows);
    pthread_mutex_unlock(&guest_lock);
    fprintf(out, "%-22s %12s %12s\n", "event", "ms", "delta ms");
    for (unsigned i = 0; i < n; i++) {
        fprintf(out, "%-22s %12.3f %12.3f", rows[i].name, rows[i].ns / 1e6,
                (rows[i].ns - previous) / 1e6);
        if (rows[i].marker && marker)
            fprintf(out, "  \"%s\"", marker);
        fputc('\n', out);
        previous = rows[i].ns;
    }
    for (int i = 0; i < TRACE_COUNT_COUNT; i++)
        if (atomic_load(&counts[i]))
            fprintf(out, "%-22s %12llu\n", count_names[i],
                    (unsigned long long)(atomic_load(&counts[i]) - 1));
    if (boot_split(rows, n, &split))
        fprintf(out, "split: vmm %.3f ms, kernel %.3f ms, init %.3f ms\n", split.vmm / 1e6,
                split.kernel / 1e6, split.init / 1e6);
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
    struct row rows[ROWS_MAX];
    struct split split;
    const char *sep = "";

    pthread_mutex_lock(&guest_lock);
    unsigned n = timeline(rows);
    pthread_mutex_unlock(&guest_lock);
    fputs("{\"unit\":\"ms\",\"events\":{", out);
    for (unsigned i = 0; i < n; i++) {
        fprintf(out, "%s\"%s\":%.3f", sep, rows[i].name, rows[i].ns / 1e6);
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
    if (boot_split(rows, n, &split))
        fprintf(out, ",\"split\":{\"vmm\":%.3f,\"kernel\":%.3f,\"init\":%.3f}",
                split.vmm / 1e6, split.kernel / 1e6, split.init / 1e6);
    if (marker) {
        fputs(",\"marker\":", out);
        json_string(out, marker);
    }
    fputs("}\n", out);
}
