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

/* As `ls -sh` and `du -h` print them: rounded up, one decimal below 10. */
static void formats_like_ls_h(void **state)
{
    static const struct {
        uint64_t bytes;
        const char *text;
    } cases[] = {{0, "0"},           {1023, "1023"},         {1024, "1.0K"},
                 {1025, "1.1K"},     {1536, "1.5K"},         {10240, "10K"},
                 {12288, "12K"},     {10239, "10K"},         {1048575, "1.0M"},
                 {67108864, "64M"},  {1073741824, "1.0G"},   {UINT64_MAX, "16E"}};
    char out[SIZE_TEXT_MAX];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_format(cases[i].bytes, out);
        assert_string_equal(out, cases[i].text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_suffixes),
        cmocka_unit_test(plain_numbers_use_default_unit),
        cmocka_unit_test(rejects_garbage),
        cmocka_unit_test(rejects_overflow),
        cmocka_unit_test(formats_like_ls_h),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
