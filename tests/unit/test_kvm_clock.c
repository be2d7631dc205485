/* The guest clock a start sets from a saved clock record: advanced by the
 * wall-clock time the VM spent saved, by KVM or by smolvm, never back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hv/kvm_internal.h"

#define SEC 1000000000ull

/* Saved on a host with a stable TSC: KVM paired the clock with its wall
 * clock, and KVM advances it on a host that can. */
static void kvm_advances_a_realtime_record(void **state)
{
    (void)state;
    struct kvm_clock_data saved = {.clock = 50 * SEC, .flags = KVM_CLOCK_REALTIME | KVM_CLOCK_TSC_STABLE,
                                   .realtime = 1000 * SEC, .host_tsc = 77};
    struct kvm_clock_data c = kvm_clock_for_restore(&saved, 1030 * SEC, true);

    assert_int_equal(c.clock, 50 * SEC);
    assert_int_equal(c.flags, KVM_CLOCK_REALTIME);
    assert_int_equal(c.realtime, 1000 * SEC);
    assert_int_equal(c.host_tsc, 0);
}

/* Saved on a host whose TSC was not stable (a loaded L1 on the HPET):
 * smolvm's own reading advances it over the 30 s gap. */
static void smolvm_advances_its_own_record(void **state)
{
    (void)state;
    struct kvm_clock_data saved = {.clock = 50 * SEC, .realtime = 1000 * SEC};
    struct kvm_clock_data c = kvm_clock_for_restore(&saved, 1030 * SEC, true);

    assert_int_equal(c.clock, 80 * SEC);
    assert_int_equal(c.flags, 0);
}

/* A KVM record started on a host that cannot advance it: smolvm does. */
static void smolvm_advances_when_this_host_cannot(void **state)
{
    (void)state;
    struct kvm_clock_data saved = {.clock = 50 * SEC, .flags = KVM_CLOCK_REALTIME, .realtime = 1000 * SEC};
    struct kvm_clock_data c = kvm_clock_for_restore(&saved, 1002 * SEC, false);

    assert_int_equal(c.clock, 52 * SEC);
    assert_int_equal(c.flags, 0);
}

/* A wall clock behind the saved one never moves the guest's back; a
 * bundle saved before the own reading was kept is not advanced. */
static void never_backwards_and_old_records_kept(void **state)
{
    (void)state;
    struct kvm_clock_data saved = {.clock = 50 * SEC, .realtime = 1000 * SEC};
    struct kvm_clock_data old = {.clock = 50 * SEC};

    assert_int_equal(kvm_clock_for_restore(&saved, 900 * SEC, false).clock, 50 * SEC);
    assert_int_equal(kvm_clock_for_restore(&old, 1000 * SEC, true).clock, 50 * SEC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kvm_advances_a_realtime_record),
        cmocka_unit_test(smolvm_advances_its_own_record),
        cmocka_unit_test(smolvm_advances_when_this_host_cannot),
        cmocka_unit_test(never_backwards_and_old_records_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
