/* Little-endian fields in byte buffers (boot headers, ACPI tables, virtio
 * config space), independent of alignment and host byte order. */
#ifndef SMOLVM_UTIL_LE_H
#define SMOLVM_UTIL_LE_H

#include <stdint.h>

static inline void put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint16_t le16(const uint8_t *p) { return (uint16_t)get_le(p, 2); }
static inline uint32_t le32(const uint8_t *p) { return (uint32_t)get_le(p, 4); }
static inline uint64_t le64(const uint8_t *p) { return get_le(p, 8); }

#endif
