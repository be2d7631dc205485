/* --trace-boot into the guest: which console lines mark a phase (and which
 * hostile or malformed ones do not), and how the guest's phases land on the
 * VMM's timeline and split the boot between VMM, kernel and init. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/trace.h"

static bool parse(const char *line, char *name, int64_t *ns)
{
    return trace_guest_parse(line, strlen(line), name, ns);
}

static void kernel_and_init_phases(void **state)
{
    char name[TRACE_GUEST_NAME_MAX];
    int64_t ns;
    (void)state;

    assert_true(parse("[    0.000000] Linux version 6.1.192 (gcc 12) #1 SMP\r", name, &ns));
    assert_string_equal(name, "kernel_start");
    assert_int_equal(ns, 0);
    assert_true(parse("[    0.123456] Run /init as init process", name, &ns));
    assert_string_equal(name, "kernel_run_init");
    assert_int_equal(ns, 123456000);
    assert_true(parse("[   12.000001] smolvm-init: trace root_mounted\r\n", name, &ns));
    assert_string_equal(name, "init_root_mounted");
    assert_int_equal(ns, 12000001000);
    assert_true(parse("[    0.050000] Freeing unused kernel image (initmem) memory: 600K", name,
                      &ns));
    assert_string_equal(name, "kernel_init_freed");
}

static void other_and_malformed_lines(void **state)
{
    char name[TRACE_GUEST_NAME_MAX];
    int64_t ns;
    (void)state;

    /* Not a phase, or no stamp: the same words without "[...]" too. */
    assert_false(parse("[    0.100000] virtio_blk virtio1: [vda] 32768 512-byte sectors", name, &ns));
    assert_false(parse("Linux version 6.1.192", name, &ns));
    assert_false(parse("smolvm-init: trace start", name, &ns));
    /* Stamps the kernel does not print. */
    assert_false(parse("[    0.12345] Linux version x", name, &ns));
    assert_false(parse("[    0.1234567] Linux version x", name, &ns));
    assert_false(parse("[ .123456] Linux version x", name, &ns));
    assert_false(parse("[9999999999.000000] Linux version x", name, &ns));
    assert_false(parse("[    0.123456 Linux version x", name, &ns));
    assert_false(parse("[", name, &ns));
    assert_false(parse("", name, &ns));
    /* An init phase name goes into a table and JSON: [a-z0-9_] only, not
     * empty, cut at the name's size. */
    assert_false(parse("[    1.000000] smolvm-init: trace \"},\"x\":1", name, &ns));
    assert_false(parse("[    1.000000] smolvm-init: trace ", name, &ns));
    assert_false(parse("[    1.000000] smolvm-init: trace a b", name, &ns));
    assert_false(parse("[    1.000000] smolvm-init: trace " "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                       name, &ns));
}

static char *printed(bool json)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    if (json)
        trace_print_json(f, NULL);
    else
        trace_print_table(f, NULL);
    fclose(f);
    return text;
}

#define LINE(s) s, strlen(s)

static void merged_timeline_and_split(void **state)
{
    (void)state;
    trace_start();
    trace_mark(TRACE_FIRST_VCPU_ENTRY); /* ~0 ms: time zero is just before */
    /* The kernel's lines seen late (its console registered at 30 ms guest
     * time replays them), the later ones as they were printed: the offset
     * comes from the tightest, 50 ms - 40 ms = 10 ms. */
    trace_guest_line_at(LINE("[    0.000000] Linux version 6.1\r"), 45000000);
    trace_guest_line_at(LINE("[    0.040000] Run /init as init process\r"), 50000000);
    trace_guest_line_at(LINE("[    0.045000] smolvm-init: trace root_mounted\r"), 56000000);
    trace_guest_line_at(LINE("[    0.047000] smolvm-init: trace command_started\r"), 58000000);
    /* A repeat keeps the first. */
    trace_guest_line_at(LINE("[    0.090000] Linux version again\r"), 95000000);

    char *json = printed(true);
    assert_non_null(strstr(json, "\"kernel_start\":10.000"));
    assert_non_null(strstr(json, "\"kernel_run_init\":50.000"));
    assert_non_null(strstr(json, "\"init_command_started\":57.000"));
    /* In time order: the VMM's entry, then the guest's. */
    assert_true(strstr(json, "first_vcpu_entry") < strstr(json, "kernel_start"));
    assert_true(strstr(json, "init_root_mounted") < strstr(json, "init_command_started"));
    double vmm, kernel, init;
    const char *split = strstr(json, "\"split\":");
    assert_non_null(split);
    assert_int_equal(sscanf(split, "\"split\":{\"vmm\":%lf,\"kernel\":%lf,\"init\":%lf", &vmm,
                            &kernel, &init), 3);
    assert_true(vmm >= 0 && vmm < 5);
    assert_true(kernel > 45 && kernel <= 50);
    assert_true(init > 6.9 && init < 7.1);
    free(json);

    char *table = printed(false);
    assert_non_null(strstr(table, "kernel_run_init"));
    assert_non_null(strstr(table, "split: vmm "));
    free(table);
}

static void no_guest_phases_no_split(void **state)
{
    (void)state;
    trace_start();
    trace_mark(TRACE_FIRST_VCPU_ENTRY);
    /* A guest's line stamped later than it was seen cannot pull the guest
     * before its first vCPU entry: the offset stays at or after it. */
    trace_guest_line_at(LINE("[  100.000000] Linux version 6.1\r"), 1000000);
    char *json = printed(true);
    assert_null(strstr(json, "\"split\""));
    assert_non_null(strstr(json, "\"kernel_start\":"));
    double at = 0;
    assert_int_equal(sscanf(strstr(json, "\"kernel_start\":"), "\"kernel_start\":%lf", &at), 1);
    assert_true(at >= 100000);
    free(json);
}

static void tie_keeps_vmm_first(void **state)
{
    (void)state;
    trace_start();
    trace_mark(TRACE_FIRST_VCPU_ENTRY);
    /* Seen "before" the entry: the guest's clock starts at the entry, and
     * its 0.000000 line lands on it, after it in the timeline. */
    trace_guest_line_at(LINE("[    0.000000] Linux version 6.1\r"), 0);
    char *json = printed(true);
    assert_non_null(strstr(json, "\"first_vcpu_entry\":"));
    assert_true(strstr(json, "\"first_vcpu_entry\":") < strstr(json, "\"kernel_start\":"));
    free(json);
}

/* Durations summed from several threads at once (the fault thread's
 * chunks, every thread's seccomp filter): none is lost, and a count never
 * set starts at zero. */
static void *add_thousand(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        trace_add_count(TRACE_SECCOMP_US, 3);
    return NULL;
}

static void counts_added_from_threads(void **state)
{
    pthread_t t[4];
    (void)state;
    trace_start();
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, add_thousand, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    trace_add_count(TRACE_FAULT_PLACE_US, 0); /* set, even to nothing */
    char *json = printed(true);
    assert_non_null(strstr(json, "\"seccomp_us\":12000"));
    assert_non_null(strstr(json, "\"fault_place_us\":0"));
    assert_null(strstr(json, "\"fault_serve_us\""));
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kernel_and_init_phases),
        cmocka_unit_test(other_and_malformed_lines),
        cmocka_unit_test(merged_timeline_and_split),
        cmocka_unit_test(no_guest_phases_no_split),
        cmocka_unit_test(tie_keeps_vmm_first),
        cmocka_unit_test(counts_added_from_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
