#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "devices/serial.h"

static char sent[256];
static size_t sent_len;
static int irq_level, irq_changes;

static void transmit(void *opaque, const uint8_t *buf, size_t len)
{
    (void)opaque;
    memcpy(sent + sent_len, buf, len);
    sent_len += len;
}

static void set_irq(void *opaque, bool level)
{
    (void)opaque;
    irq_level = level;
    irq_changes++;
}

static int setup(void **state)
{
    static struct serial s;
    sent_len = 0;
    irq_level = 0;
    irq_changes = 0;
    serial_init(&s, transmit, set_irq, NULL);
    *state = &s;
    return 0;
}

static int teardown(void **state)
{
    serial_destroy(*state);
    return 0;
}

static void transmits_bytes(void **state)
{
    struct serial *s = *state;
    serial_write(s, 0, 'h');
    serial_write(s, 0, 'i');
    assert_int_equal(sent_len, 2);
    assert_memory_equal(sent, "hi", 2);
    assert_int_equal(serial_read(s, 5) & 0x60, 0x60); /* THRE | TEMT */
    assert_int_equal(irq_level, 0); /* no interrupts enabled */
}

/* Linux's 8250 probe: loopback with RTS|OUT2 must read back CTS|DCD. */
static void loopback_probe(void **state)
{
    struct serial *s = *state;
    serial_write(s, 4, 0x10 | 0x0a);
    assert_int_equal(serial_read(s, 6) & 0xf0, 0x90);
    serial_write(s, 0, 'x'); /* loops back, not transmitted */
    assert_int_equal(sent_len, 0);
    assert_int_equal(serial_read(s, 5) & 1, 1);
    assert_int_equal(serial_read(s, 0), 'x');
    serial_write(s, 4, 0x0b);
    assert_int_equal(serial_read(s, 6) & 0xf0, 0xb0);
}

static void thre_interrupt_handshake(void **state)
{
    struct serial *s = *state;
    serial_write(s, 1, 0x02); /* IER = THRI */
    assert_int_equal(irq_level, 1);
    assert_int_equal(serial_read(s, 2) & 0x0f, 0x02); /* IIR: THRE */
    assert_int_equal(irq_level, 0);                  /* acknowledged */
    assert_int_equal(serial_read(s, 2) & 0x0f, 0x01); /* nothing pending */
    serial_write(s, 0, 'a');                         /* THR empties again */
    assert_int_equal(irq_level, 1);
    serial_write(s, 1, 0);
    assert_int_equal(irq_level, 0);
}

static void receive_raises_data_interrupt(void **state)
{
    struct serial *s = *state;
    serial_write(s, 1, 0x01); /* IER = RDI */
    assert_int_equal(serial_receive(s, (const uint8_t *)"ok", 2), 2);
    assert_int_equal(irq_level, 1);
    assert_int_equal(serial_read(s, 2) & 0x0f, 0x04);
    assert_int_equal(serial_read(s, 0), 'o');
    assert_int_equal(irq_level, 1);
    assert_int_equal(serial_read(s, 0), 'k');
    assert_int_equal(irq_level, 0);
    assert_int_equal(serial_read(s, 5) & 1, 0);
}

static void receive_fifo_is_bounded(void **state)
{
    struct serial *s = *state;
    static uint8_t big[SERIAL_RX_FIFO + 100];
    assert_int_equal(serial_receive(s, big, sizeof(big)), SERIAL_RX_FIFO);
    serial_write(s, 2, 0x03); /* FCR: enable + clear RX */
    assert_int_equal(serial_read(s, 5) & 1, 0);
    assert_int_equal(serial_read(s, 2) & 0xc0, 0xc0); /* FIFOs enabled */
}

static void divisor_latch(void **state)
{
    struct serial *s = *state;
    serial_write(s, 3, 0x80);
    serial_write(s, 0, 0x01);
    serial_write(s, 1, 0x00);
    assert_int_equal(serial_read(s, 0), 0x01);
    assert_int_equal(sent_len, 0);
    serial_write(s, 3, 0x03);
    assert_int_equal(serial_read(s, 1), 0);   /* IER untouched by the DLM write */
    assert_int_equal(serial_read(s, 9), 0xff); /* out of range offset */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(transmits_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(loopback_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(thre_interrupt_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(receive_raises_data_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(receive_fifo_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(divisor_latch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
