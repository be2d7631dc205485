#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "core/bus.h"

static uint64_t last_offset;
static int calls;

static void handler(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
    (void)is_write;
    last_offset = offset;
    calls++;
    memset(data, *(int *)opaque, size);
}

static void dispatches_by_range(void **state)
{
    struct bus bus = {0};
    int a = 0xaa, b = 0xbb;
    uint8_t data[4];
    (void)state;

    assert_int_equal(bus_register(&bus, 0x3f8, 8, handler, &a), 0);
    assert_int_equal(bus_register(&bus, 0x60, 5, handler, &b), 0);
    assert_int_equal(bus_register(&bus, 0x600, 3, handler, &b), 0);
    assert_true(bus_dispatch(&bus, 0x3fd, data, 1, false));
    assert_int_equal(last_offset, 5);
    assert_int_equal(data[0], 0xaa);
    assert_true(bus_dispatch(&bus, 0x64, data, 1, false));
    assert_int_equal(data[0], 0xbb);
    assert_false(bus_dispatch(&bus, 0x400, data, 1, false));
    assert_false(bus_dispatch(&bus, 0x65, data, 1, false));
    assert_false(bus_dispatch(&bus, 0, data, 1, false));
    bus_free(&bus);
}

static void refuses_overlaps_and_wraps(void **state)
{
    struct bus bus = {0};
    int a = 0;
    (void)state;

    assert_int_equal(bus_register(&bus, 0x100, 0x10, handler, &a), 0);
    assert_int_equal(bus_register(&bus, 0x10f, 1, handler, &a), -EEXIST);
    assert_int_equal(bus_register(&bus, 0xf8, 9, handler, &a), -EEXIST);
    assert_int_equal(bus_register(&bus, 0xf8, 8, handler, &a), 0);
    assert_int_equal(bus_register(&bus, UINT64_MAX, 2, handler, &a), -EINVAL);
    assert_int_equal(bus_register(&bus, 0x1000, 0, handler, &a), -EINVAL);
    bus_free(&bus);
}

static void many_ranges_stay_sorted(void **state)
{
    struct bus bus = {0};
    int a = 1;
    uint8_t data[1];
    (void)state;

    for (int i = 99; i >= 0; i--)
        assert_int_equal(bus_register(&bus, (uint64_t)i * 0x10, 8, handler, &a), 0);
    calls = 0;
    for (int i = 0; i < 100; i++) {
        assert_true(bus_dispatch(&bus, (uint64_t)i * 0x10 + 7, data, 1, true));
        assert_false(bus_dispatch(&bus, (uint64_t)i * 0x10 + 8, data, 1, true));
    }
    assert_int_equal(calls, 100);
    bus_free(&bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dispatches_by_range),
        cmocka_unit_test(refuses_overlaps_and_wraps),
        cmocka_unit_test(many_ranges_stay_sorted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
