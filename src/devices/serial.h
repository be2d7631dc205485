/* The 8250/16550A UART model, separate from its wiring to a VM so unit
 * tests can drive its registers directly. */
#ifndef SMOLVM_DEVICES_SERIAL_H
#define SMOLVM_DEVICES_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIAL_RX_FIFO 4096

struct serial {
    pthread_mutex_t lock;
    uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
    bool thr_empty_pending; /* a THR-empty interrupt waits to be seen in IIR */
    bool irq_level;
    uint8_t rx[SERIAL_RX_FIFO];
    size_t rx_head, rx_count;
    /* Where transmitted bytes and IRQ level changes go. */
    void (*transmit)(void *opaque, const uint8_t *buf, size_t len);
    void (*set_irq)(void *opaque, bool level);
    void *opaque;
};

void serial_init(struct serial *s, void (*transmit)(void *, const uint8_t *, size_t),
                 void (*set_irq)(void *, bool), void *opaque);
void serial_destroy(struct serial *s);

/* A register access at offset 0..7 from the UART's base port. */
uint8_t serial_read(struct serial *s, unsigned offset);
void serial_write(struct serial *s, unsigned offset, uint8_t value);

/* The registers and the receive FIFO as fields of a state record
 * (core/state_io.h), for snapshots. A restore checks what it reads and
 * fails on values a real UART cannot hold. */
struct state_io;
int serial_state(struct serial *s, struct state_io *io);

/* Bytes typed on the host; returns how many fit in the receive FIFO. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

#endif
