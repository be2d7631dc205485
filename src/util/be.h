/* Big-endian fields in byte buffers (qcow2, vhd, vmdk headers). */
#ifndef SMOLVM_UTIL_BE_H
#define SMOLVM_UTIL_BE_H

#include <stdint.h>

static inline void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)get_be(p, 2); }
static inline uint32_t be32(const uint8_t *p) { return (uint32_t)get_be(p, 4); }
static inline uint64_t be64(const uint8_t *p) { return get_be(p, 8); }

#endif
