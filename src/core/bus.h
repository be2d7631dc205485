/* An address space of device ranges (port I/O or MMIO): devices register
 * handlers at setup, vCPU threads dispatch accesses to them. Registration
 * happens before vCPUs run, so dispatch takes no lock. */
#ifndef SMOLVM_CORE_BUS_H
#define SMOLVM_CORE_BUS_H

#include <stdbool.h>
#include <stdint.h>

/* offset is relative to the range's base; data holds size bytes, little
 * endian: read from it on a write, fill it on a read. */
typedef void (*bus_handler)(void *opaque, uint64_t offset, uint8_t *data, unsigned size,
                            bool is_write);

struct bus_range {
    uint64_t base;
    uint64_t len;
    bus_handler handler;
    void *opaque;
};

struct bus {
    struct bus_range *ranges; /* sorted by base, never overlapping */
    unsigned count;
    unsigned cap;
};

/* -EEXIST (with a message) when the range overlaps a registered one. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler handler, void *opaque)
    __attribute__((warn_unused_result));

/* Calls the handler owning addr; false when no device is there (the caller
 * then reads all-ones or drops the write). */
bool bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, unsigned size,
                  bool is_write);

void bus_free(struct bus *bus);

#endif
