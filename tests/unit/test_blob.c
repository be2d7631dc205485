/* Snapshot state bytes: the writer, the bounds-checked reader, and the
 * UART's state through them (a truncated or forged blob must fail). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/state_io.h"
#include "devices/serial.h"
#include "util/blob.h"

static void round_trip(void **state)
{
    struct blob b = {0};
    struct blob_reader r, body;
    uint32_t tag;
    size_t mark;
    (void)state;

    blob_put_u8(&b, 0x12);
    blob_put_u16(&b, 0x3456);
    blob_put_u32(&b, 0x789abcde);
    blob_put_u64(&b, 0x0123456789abcdefull);
    blob_put_record(&b, 7, "abc", 3);
    mark = blob_begin_record(&b, 9);
    for (int i = 0; i < 1000; i++)
        blob_put_u32(&b, (uint32_t)i);
    blob_end_record(&b, mark);
    assert_false(b.failed);

    r = blob_reader(b.data, b.len);
    assert_int_equal(blob_get_u8(&r), 0x12);
    assert_int_equal(blob_get_u16(&r), 0x3456);
    assert_int_equal(blob_get_u32(&r), 0x789abcde);
    assert_true(blob_get_u64(&r) == 0x0123456789abcdefull);
    assert_true(blob_next_record(&r, &tag, &body));
    assert_int_equal(tag, 7);
    assert_int_equal(body.left, 3);
    assert_true(blob_next_record(&r, &tag, &body));
    assert_int_equal(tag, 9);
    assert_int_equal(body.left, 4000);
    assert_int_equal(blob_get_u32(&body), 0);
    assert_false(blob_next_record(&r, &tag, &body));
    assert_false(r.failed);
    blob_free(&b);
}

static void reading_past_the_end_fails_and_sticks(void **state)
{
    uint8_t bytes[3] = {1, 2, 3};
    struct blob_reader r = blob_reader(bytes, sizeof(bytes));
    (void)state;

    assert_int_equal(blob_get_u32(&r), 0);
    assert_true(r.failed);
    assert_int_equal(blob_get_u8(&r), 0); /* stays failed though a byte is left */
}

static void record_longer_than_its_blob_fails(void **state)
{
    uint8_t bytes[12] = {1, 0, 0, 0, 100, 0, 0, 0};
    struct blob_reader r = blob_reader(bytes, sizeof(bytes)), body;
    uint32_t tag;
    (void)state;

    assert_false(blob_next_record(&r, &tag, &body));
    assert_true(r.failed);
}

static void bounded_values(void **state)
{
    struct blob b = {0};
    struct blob_reader r;
    (void)state;

    blob_put_u32(&b, 5);
    blob_put_u32(&b, 6);
    r = blob_reader(b.data, b.len);
    assert_int_equal(blob_get_bounded(&r, 5), 5);
    assert_false(r.failed);
    assert_int_equal(blob_get_bounded(&r, 5), 0);
    assert_true(r.failed);
    blob_free(&b);
}

static void transmit(void *o, const uint8_t *buf, size_t len) { (void)o, (void)buf, (void)len; }
static void set_irq(void *o, bool level) { (void)o, (void)level; }

static int uart_visit(void *s, struct state_io *io)
{
    return serial_state(s, io);
}

static const struct vm_state_desc uart_desc = {.version = 1, .state = uart_visit};

static void uart_save(struct serial *s, struct blob *out)
{
    struct state_io io = {.out = out, .version = 1};
    assert_int_equal(state_io_run(&uart_desc, s, &io, "uart"), 0);
}

static int uart_restore(struct serial *s, struct blob_reader *in)
{
    struct state_io io = {.in = in, .version = 1};
    return state_io_run(&uart_desc, s, &io, "uart");
}

static void uart_state_round_trip(void **state)
{
    struct serial a, b;
    struct blob out = {0};
    struct blob_reader r;
    (void)state;

    serial_init(&a, transmit, set_irq, NULL);
    serial_init(&b, transmit, set_irq, NULL);
    serial_write(&a, 3, 0x83);  /* DLAB */
    serial_write(&a, 0, 1);     /* 115200 baud */
    serial_write(&a, 3, 0x03);  /* 8N1 */
    serial_write(&a, 1, 0x01);  /* RX interrupts */
    serial_write(&a, 7, 0x5a);
    serial_receive(&a, (const uint8_t *)"hi", 2);
    uart_save(&a, &out);
    r = blob_reader(out.data, out.len);
    assert_int_equal(uart_restore(&b, &r), 0);
    assert_int_equal(r.left, 0);
    assert_int_equal(serial_read(&b, 7), 0x5a);
    assert_int_equal(serial_read(&b, 3), 0x03);
    assert_int_equal(serial_read(&b, 1), 0x01);
    assert_int_equal(serial_read(&b, 2) & 0x0f, 0x04); /* data waiting */
    assert_int_equal(serial_read(&b, 0), 'h');
    assert_int_equal(serial_read(&b, 0), 'i');
    assert_int_equal(serial_read(&b, 5) & 1, 0);
    /* Every truncation fails cleanly. */
    for (size_t len = 0; len < out.len; len++) {
        r = blob_reader(out.data, len);
        assert_true(uart_restore(&b, &r) < 0);
    }
    blob_free(&out);
    serial_destroy(&a);
    serial_destroy(&b);
}

static void uart_state_with_forged_fifo_count_fails(void **state)
{
    struct serial s;
    struct blob out = {0};
    struct blob_reader r;
    (void)state;

    serial_init(&s, transmit, set_irq, NULL);
    blob_put(&out, (uint8_t[9]){0}, 9);
    blob_put_u32(&out, SERIAL_RX_FIFO + 1);
    r = blob_reader(out.data, out.len);
    assert_true(uart_restore(&s, &r) < 0);
    blob_free(&out);
    serial_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(reading_past_the_end_fails_and_sticks),
        cmocka_unit_test(record_longer_than_its_blob_fails),
        cmocka_unit_test(bounded_values),
        cmocka_unit_test(uart_state_round_trip),
        cmocka_unit_test(uart_state_with_forged_fifo_count_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
