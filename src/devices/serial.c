/* 8250/16550A UART (COM1) wired to the host console. Register semantics
 * from the PC16550D datasheet; transmission is instant, so the transmitter
 * is always empty. */
#include "devices/serial.h"

#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "core/vm.h"
#include "devices/device.h"
#include "util/err.h"

enum {
    REG_DATA = 0, /* RBR/THR, DLL with DLAB */
    REG_IER = 1,  /* DLM with DLAB */
    REG_IIR = 2,  /* FCR on write */
    REG_LCR = 3,
    REG_MCR = 4,
    REG_LSR = 5,
    REG_MSR = 6,
    REG_SCR = 7,
};

#define LCR_DLAB 0x80
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IER_MASK 0x0f
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_ENABLED 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

void serial_init(struct serial *s, void (*transmit)(void *, const uint8_t *, size_t),
                 void (*set_irq)(void *, bool), void *opaque)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->transmit = transmit;
    s->set_irq = set_irq;
    s->opaque = opaque;
    s->mcr = MCR_OUT2;
    s->dll = 12; /* 9600 baud, as firmware leaves it */
}

void serial_destroy(struct serial *s)
{
    pthread_mutex_destroy(&s->lock);
}

static uint8_t pending_iir(const struct serial *s)
{
    if ((s->ier & IER_RDI) && s->rx_count)
        return IIR_RDI;
    if ((s->ier & IER_THRI) && s->thr_empty_pending)
        return IIR_THRI;
    return IIR_NO_INT;
}

static void update_irq(struct serial *s)
{
    bool level = pending_iir(s) != IIR_NO_INT;
    if (level != s->irq_level) {
        s->irq_level = level;
        s->set_irq(s->opaque, level);
    }
}

static void rx_push(struct serial *s, uint8_t byte)
{
    if (s->rx_count < SERIAL_RX_FIFO) {
        s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO] = byte;
        s->rx_count++;
    }
}

static uint8_t rx_pop(struct serial *s)
{
    uint8_t byte;
    if (!s->rx_count)
        return 0;
    byte = s->rx[s->rx_head];
    s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO;
    s->rx_count--;
    return byte;
}

/* In loopback mode the modem outputs feed the modem inputs: Linux's probe
 * relies on it to tell a real UART from an empty port. */
static uint8_t modem_status(const struct serial *s)
{
    uint8_t msr = 0;
    if (!(s->mcr & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS;
    if (s->mcr & MCR_RTS)
        msr |= MSR_CTS;
    if (s->mcr & MCR_DTR)
        msr |= MSR_DSR;
    if (s->mcr & MCR_OUT1)
        msr |= MSR_RI;
    if (s->mcr & MCR_OUT2)
        msr |= MSR_DCD;
    return msr;
}

static uint8_t read_locked(struct serial *s, unsigned offset)
{
    uint8_t v;

    switch (offset) {
    case REG_DATA:
        if (s->lcr & LCR_DLAB)
            return s->dll;
        v = rx_pop(s);
        update_irq(s);
        return v;
    case REG_IER:
        return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
    case REG_IIR:
        v = pending_iir(s);
        if (v == IIR_THRI) {
            s->thr_empty_pending = false; /* reading IIR acknowledges THRE */
            update_irq(s);
        }
        return v | ((s->fcr & FCR_ENABLE) ? IIR_FIFO_ENABLED : 0);
    case REG_LCR:
        return s->lcr;
    case REG_MCR:
        return s->mcr;
    case REG_LSR:
        return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
    case REG_MSR:
        return modem_status(s);
    case REG_SCR:
        return s->scr;
    default:
        return 0xff;
    }
}

static void write_locked(struct serial *s, unsigned offset, uint8_t v)
{
    switch (offset) {
    case REG_DATA:
        if (s->lcr & LCR_DLAB) {
            s->dll = v;
            return;
        }
        if (s->mcr & MCR_LOOP)
            rx_push(s, v);
        else
            s->transmit(s->opaque, &v, 1);
        s->thr_empty_pending = true;
        break;
    case REG_IER:
        if (s->lcr & LCR_DLAB) {
            s->dlm = v;
            return;
        }
        if (!(s->ier & IER_THRI) && (v & IER_THRI))
            s->thr_empty_pending = true; /* enabling THRI with an empty THR interrupts */
        s->ier = v & IER_MASK;
        break;
    case REG_IIR:
        s->fcr = v;
        if (v & FCR_CLEAR_RX)
            s->rx_count = 0;
        break;
    case REG_LCR:
        s->lcr = v;
        return;
    case REG_MCR:
        s->mcr = v & 0x1f;
        return;
    case REG_SCR:
        s->scr = v;
        return;
    default:
        return;
    }
    update_irq(s);
}

uint8_t serial_read(struct serial *s, unsigned offset)
{
    uint8_t v;
    pthread_mutex_lock(&s->lock);
    v = read_locked(s, offset);
    pthread_mutex_unlock(&s->lock);
    return v;
}

void serial_write(struct serial *s, unsigned offset, uint8_t value)
{
    pthread_mutex_lock(&s->lock);
    write_locked(s, offset, value);
    pthread_mutex_unlock(&s->lock);
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    for (; n < len && s->rx_count < SERIAL_RX_FIFO; n++)
        rx_push(s, buf[n]);
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* The FIFO's bytes from rx[0] on, so that they are one field. */
static void unwrap_rx(struct serial *s)
{
    uint8_t fifo[SERIAL_RX_FIFO];

    for (size_t i = 0; i < s->rx_count; i++)
        fifo[i] = s->rx[(s->rx_head + i) % SERIAL_RX_FIFO];
    memcpy(s->rx, fifo, s->rx_count);
    s->rx_head = 0;
}

/* Version 1: the registers (a byte each), the FIFO's length (u32), its
 * bytes. */
int serial_state(struct serial *s, struct state_io *io)
{
    uint32_t count;

    pthread_mutex_lock(&s->lock);
    if (!state_restoring(io))
        unwrap_rx(s);
    count = (uint32_t)s->rx_count;
    state_u8(io, &s->ier);
    state_u8(io, &s->lcr);
    state_u8(io, &s->mcr);
    state_u8(io, &s->scr);
    state_u8(io, &s->dll);
    state_u8(io, &s->dlm);
    state_u8(io, &s->fcr);
    state_bool(io, &s->thr_empty_pending);
    state_bool(io, &s->irq_level); /* the interrupt controller's state holds the line */
    state_u32_max(io, &count, SERIAL_RX_FIFO, "receive FIFO length");
    state_bytes(io, s->rx, count);
    if (state_restoring(io)) {
        s->ier &= IER_MASK;
        s->rx_head = 0;
        s->rx_count = state_failed(io) ? 0 : count;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ---- wiring to the VM: COM1 at 0x3f8, IRQ 4, the host console ---- */

struct com1 {
    struct serial uart;
    struct vm *vm;
};

static void com1_transmit(void *opaque, const uint8_t *buf, size_t len)
{
    struct com1 *c = opaque;
    console_output(vm_console(c->vm), buf, len);
}

static void com1_set_irq(void *opaque, bool level)
{
    struct com1 *c = opaque;
    vm_set_irq(c->vm, X86_IRQ_COM1, level);
}

static void com1_input(void *opaque, const uint8_t *buf, size_t len)
{
    struct com1 *c = opaque;
    serial_receive(&c->uart, buf, len);
}

static void com1_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
    struct com1 *c = opaque;
    if (size != 1)
        return;
    if (is_write)
        serial_write(&c->uart, (unsigned)offset, data[0]);
    else
        data[0] = serial_read(&c->uart, (unsigned)offset);
}

static int com1_state(void *opaque, struct state_io *io)
{
    struct com1 *c = opaque;
    return serial_state(&c->uart, io);
}

static const struct vm_state_desc com1_desc = {.version = 1, .state = com1_state};

static int com1_create(struct vm *vm, const struct device_slot *slot, void **state)
{
    struct com1 *c = calloc(1, sizeof(*c));
    int r;

    if (!c)
        return err_set(ENOMEM, "serial");
    c->vm = vm;
    serial_init(&c->uart, com1_transmit, com1_set_irq, c);
    r = vm_register_pio(vm, X86_PORT_COM1, 8, com1_io, c);
    if (r == 0)
        r = vm_describe_isa_device(vm, "PNP0501", X86_PORT_COM1, 8, X86_IRQ_COM1);
    if (r == 0)
        r = vm_register_state(vm, slot->state_name, &com1_desc, c);
    if (r < 0) {
        serial_destroy(&c->uart);
        free(c);
        return r;
    }
    if (vm_config(vm)->console == VM_CONSOLE_SERIAL)
        console_set_input(vm_console(vm), com1_input, c);
    *state = c;
    return 0;
}

static void com1_destroy(void *state)
{
    struct com1 *c = state;
    serial_destroy(&c->uart);
    free(c);
}

static const struct device_type serial_com1 = {
    .name = "serial",
    .create = com1_create,
    .destroy = com1_destroy,
};
DEVICE_REGISTER(serial_com1);
