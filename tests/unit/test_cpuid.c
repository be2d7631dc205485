/* A saved guest's CPU model against a host's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "arch/x86/cpuid.h"

static const struct x86_cpuid_entry host[] = {
    {1, 0, 0x800f12, 0x0, 0x7ed8320b, 0x178bfbff},
    {7, 0, 0, 0x219c91a9, 0x00400004, 0},
    {0x80000001, 0, 0x800f12, 0, 0x75c237ff, 0x2fd3fbff},
};

static void same_model_fits(void **state)
{
    char why[128];
    (void)state;
    assert_int_equal(x86_cpuid_fits(host, 3, host, 3, why, sizeof(why)), 0);
}

static void a_subset_fits(void **state)
{
    struct x86_cpuid_entry saved[2] = {host[0], host[1]};
    char why[128];
    (void)state;
    saved[1].ebx &= ~(1u << 5); /* the guest saw no avx2: fine */
    assert_int_equal(x86_cpuid_fits(saved, 2, host, 3, why, sizeof(why)), 0);
}

static void a_missing_feature_is_named(void **state)
{
    struct x86_cpuid_entry saved[3] = {host[0], host[1], host[2]};
    char why[128];
    (void)state;
    saved[1].ebx |= 1u << 16; /* avx512f, which the host lacks */
    assert_int_equal(x86_cpuid_fits(saved, 3, host, 3, why, sizeof(why)), -1);
    assert_string_equal(why, "CPUID 0x7.0 EBX bit 16 (avx512f)");
}

static void a_leaf_the_host_lacks(void **state)
{
    struct x86_cpuid_entry saved[2] = {host[0], {0xd, 1, 0x1, 0, 0, 0}};
    char why[128];
    (void)state;
    assert_int_equal(x86_cpuid_fits(saved, 2, host, 3, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "xsaveopt"));
}

/* smolvm adds the TSC-deadline timer KVM emulates: a guest that saw it
 * cannot go where KVM lacks it, and the refusal names it. */
static void tsc_deadline_is_named(void **state)
{
    struct x86_cpuid_entry saved[1] = {host[0]};
    char why[128];
    (void)state;
    saved[0].ecx |= 1u << 24;
    assert_int_equal(x86_cpuid_fits(saved, 1, host, 1, why, sizeof(why)), -1);
    assert_string_equal(why, "CPUID 0x1.0 ECX bit 24 (tsc-deadline)");
}

static void vmm_and_os_bits_are_ignored(void **state)
{
    struct x86_cpuid_entry saved[1] = {host[0]}, h[1] = {host[0]};
    char why[128];
    (void)state;
    saved[0].ecx |= (1u << 31) | (1u << 27); /* hypervisor, OSXSAVE */
    h[0].ecx &= ~((1u << 31) | (1u << 27));
    assert_int_equal(x86_cpuid_fits(saved, 1, h, 1, why, sizeof(why)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_model_fits),
        cmocka_unit_test(a_subset_fits),
        cmocka_unit_test(a_missing_feature_is_named),
        cmocka_unit_test(a_leaf_the_host_lacks),
        cmocka_unit_test(tsc_deadline_is_named),
        cmocka_unit_test(vmm_and_os_bits_are_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
