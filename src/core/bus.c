#include "core/bus.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler handler, void *opaque)
{
    unsigned at = 0;
    uint64_t end;

    if (len == 0 || __builtin_add_overflow(base, len, &end))
        return err_plain(EINVAL, "bad device range 0x%llx+0x%llx", (unsigned long long)base,
                         (unsigned long long)len);
    while (at < bus->count && bus->ranges[at].base < base)
        at++;
    if ((at > 0 && bus->ranges[at - 1].base + bus->ranges[at - 1].len > base) ||
        (at < bus->count && bus->ranges[at].base < end))
        return err_plain(EEXIST, "device range 0x%llx+0x%llx overlaps another device",
                         (unsigned long long)base, (unsigned long long)len);
    if (bus->count == bus->cap) {
        unsigned cap = bus->cap ? bus->cap * 2 : 8;
        struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));
        if (!r)
            return err_set(ENOMEM, "bus");
        bus->ranges = r;
        bus->cap = cap;
    }
    memmove(&bus->ranges[at + 1], &bus->ranges[at], (bus->count - at) * sizeof(*bus->ranges));
    bus->ranges[at] = (struct bus_range){base, len, handler, opaque};
    bus->count++;
    return 0;
}

bool bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, unsigned size,
                  bool is_write)
{
    unsigned lo = 0, hi = bus->count;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct bus_range *r = &bus->ranges[mid];
        if (addr < r->base) {
            hi = mid;
        } else if (addr - r->base >= r->len) {
            lo = mid + 1;
        } else {
            r->handler(r->opaque, addr - r->base, data, size, is_write);
            return true;
        }
    }
    return false;
}

void bus_free(struct bus *bus)
{
    free(bus->ranges);
    memset(bus, 0, sizeof(*bus));
}
