#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>

#include "util/size.h"

static void parses_suffixes(void **state)
{
    uint64_t v;
    (void)state;
    assert_int_equal(size_parse("256M", 1, &v), 0);
    assert_int_equal(v, 256ull << 20);
    assert_int_equal(size_parse("1G", 1, &v), 0);
    assert_int_equal(v, 1ull << 30);
    assert_int_equal(size_parse("4k", 1, &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(size_parse("2GiB", 1, &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(size_parse("512B", 1, &v), 0);
    assert_int_equal(v, 512);
}

static void plain_numbers_use_default_unit(void **state)
{
    uint64_t v;
    (void)state;
    assert_int_equal(size_parse("300", 1ull << 20, &v), 0);
    assert_int_equal(v, 300ull << 20);
    assert_int_equal(size_parse("0", 1ull << 20, &v), 0);
    assert_int_equal(v, 0);
}

static void rejects_garbage(void **state)
{
    uint64_t v;
    (void)state;
    assert_int_equal(size_parse("", 1, &v), -EINVAL);
    assert_int_equal(size_parse("-1", 1, &v), -EINVAL);
    assert_int_equal(size_parse("1.5G", 1, &v), -EINVAL);
    assert_int_equal(size_parse("12Q", 1, &v), -EINVAL);
    assert_int_equal(size_parse("M", 1, &v), -EINVAL);
    assert_int_equal(size_parse("1GG", 1, &v), -EINVAL);
    assert_int_equal(size_parse(NULL, 1, &v), -EINVAL);
}

static void rejects_overflow(void **state)
{
    uint64_t v;
    (void)state;
    assert_int_equal(size_parse("99999999999999999999999", 1, &v), -ERANGE);
    assert_int_equal(size_parse("17179869184G", 1, &v), -ERANGE);
    assert_int_equal(size_parse("16E", 1, &v), -ERANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_suffixes),
        cmocka_unit_test(plain_numbers_use_default_unit),
        cmocka_unit_test(rejects_garbage),
        cmocka_unit_test(rejects_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
