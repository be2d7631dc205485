/* A device's saved state, described once for both directions.
 *
 * Each device instance with guest-visible state is one record of a saved
 * state: {name, version, length, fields} (docs/smolmachine-format.md,
 * "Device records"). The device writes ONE function that visits its fields
 * in order. Saving, each state_*() call appends the field; restoring, the
 * same call reads it back into the same variable, checked. Save and restore
 * cannot drift apart because they are the same code.
 *
 * Versions: vm_state_desc.version is the layout this binary writes. On
 * restore io's version is the record's: a newer record is refused before the
 * function runs (naming the device and both versions); an older one runs the
 * function with that version, and a field added later is skipped with
 * state_since(), the device putting what the older version meant instead.
 * Bump the version whenever the fields change; never change what an old
 * version's fields mean.
 *
 * Hostile records: every read is bounds-checked (a record shorter than its
 * fields, or longer, is refused by the caller with one message), state_bool()
 * takes 0 or 1 only, state_u32_max() values up to a bound; anything else a
 * device must check it says with state_check(). After the first failure
 * every further read yields 0, so a device never sees a half-read value
 * that was not checked. The caller reports "snapshot: NAME (version V): WHY".
 *
 * Example: a device with a register, a FIFO, and a flag added in version 2.
 *
 *     static int uart_state(void *opaque, struct state_io *io)
 *     {
 *         struct uart *u = opaque;
 *         state_u8(io, &u->lcr);
 *         state_u32_max(io, &u->count, FIFO_SIZE);  // a forged count fails here
 *         state_bytes(io, u->fifo, u->count);
 *         if (state_since(io, 2))
 *             state_bool(io, &u->loopback);
 *         else
 *             u->loopback = false;                   // what version 1 meant
 *         return 0;
 *     }
 *     static const struct vm_state_desc uart_desc = {.version = 2, .state = uart_state};
 *     // in the device's create(): its name comes from its placement slot
 *     r = vm_register_state(vm, slot->state_name, &uart_desc, u);
 */
#ifndef SMOLVM_CORE_STATE_IO_H
#define SMOLVM_CORE_STATE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/blob.h"

struct guest_memory;

struct state_io {
    struct blob *out;         /* saving */
    struct blob_reader *in;   /* restoring */
    unsigned version;         /* saving: the desc's; restoring: the record's */
    const struct guest_memory *mem;
    bool failed;              /* a check failed: why says which */
    char why[160];
};

/* How a device describes its record; registered with vm_register_state(). */
struct vm_state_desc {
    unsigned version; /* >= 1: the layout state() writes */
    /* Visits every field; 0, or a negative errno with an err_set() message
     * (for failures other than the fields': the caller checks those). */
    int (*state)(void *opaque, struct state_io *io);
    /* After every record of the VM is restored: act on the restored state
     * (kick queues, raise interrupts). 0, or a negative errno with a
     * message (the restore fails). NULL: nothing to do. */
    int (*restored)(void *opaque);
    /* Between vm_pause() and vm_resume(); NULL: nothing runs outside the
     * vCPUs. */
    void (*pause)(void *opaque);
    void (*resume)(void *opaque);
};

static inline bool state_restoring(const struct state_io *io)
{
    return io->in != NULL;
}

/* Whether fields added in `version` are in this record. */
static inline bool state_since(const struct state_io *io, unsigned version)
{
    return io->version >= version;
}

/* A field failed a check, or the record ended early. */
bool state_failed(const struct state_io *io);

void state_u8(struct state_io *io, uint8_t *v);
void state_u16(struct state_io *io, uint16_t *v);
void state_u32(struct state_io *io, uint32_t *v);
void state_u64(struct state_io *io, uint64_t *v);
/* One byte, 0 or 1. */
void state_bool(struct state_io *io, bool *v);
/* A u32 that restores only when <= max (a count, a size, an enum). */
void state_u32_max(struct state_io *io, uint32_t *v, uint32_t max, const char *what);
void state_bytes(struct state_io *io, void *p, size_t len);
/* Restoring: fails the record with `what` unless ok. Saving: nothing. */
void state_check(struct state_io *io, bool ok, const char *what, ...)
    __attribute__((format(printf, 3, 4)));
/* Restoring: [gpa, gpa+len) must lie inside guest RAM. */
void state_check_gpa(struct state_io *io, uint64_t gpa, uint64_t len, const char *what);

/* For the VM core: a record's body run through desc, and the result as
 * one message ("NAME (version V): WHY"). */
int state_io_run(const struct vm_state_desc *desc, void *opaque, struct state_io *io,
                 const char *name) __attribute__((warn_unused_result));

#endif
