#include "arch/x86/cpuid.h"

#include <stdio.h>

enum reg { EAX, EBX, ECX, EDX };

/* The leaves whose registers are feature flags. Bits the VMM itself sets
 * per VM (the hypervisor bit) or the guest's OS toggles (OSXSAVE, OSPKE)
 * are masked out. */
static const struct {
    uint32_t function, index;
    enum reg reg;
    uint32_t ignore;
} feature_regs[] = {
    {1, 0, ECX, (1u << 31) | (1u << 27)}, {1, 0, EDX, 0},
    {7, 0, EBX, 0}, {7, 0, ECX, 1u << 4}, {7, 0, EDX, 0}, {7, 1, EAX, 0},
    {0xd, 1, EAX, 0},
    {0x80000001, 0, ECX, 0}, {0x80000001, 0, EDX, 0},
    {0x80000008, 0, EBX, 0},
};

static const struct {
    uint32_t function, index;
    enum reg reg;
    unsigned bit;
    const char *name;
} known[] = {
    {1, 0, ECX, 0, "sse3"}, {1, 0, ECX, 9, "ssse3"}, {1, 0, ECX, 12, "fma"},
    {1, 0, ECX, 19, "sse4.1"}, {1, 0, ECX, 20, "sse4.2"}, {1, 0, ECX, 22, "movbe"},
    {1, 0, ECX, 23, "popcnt"}, {1, 0, ECX, 24, "tsc-deadline"}, {1, 0, ECX, 25, "aes"},
    {1, 0, ECX, 26, "xsave"},
    {1, 0, ECX, 28, "avx"}, {1, 0, ECX, 29, "f16c"}, {1, 0, ECX, 30, "rdrand"},
    {7, 0, EBX, 3, "bmi1"}, {7, 0, EBX, 5, "avx2"}, {7, 0, EBX, 8, "bmi2"},
    {7, 0, EBX, 16, "avx512f"}, {7, 0, EBX, 18, "rdseed"}, {7, 0, EBX, 19, "adx"},
    {7, 0, EBX, 29, "sha"}, {7, 0, ECX, 9, "vaes"}, {7, 0, ECX, 10, "vpclmulqdq"},
    {0xd, 1, EAX, 0, "xsaveopt"}, {0xd, 1, EAX, 1, "xsavec"},
    {0x80000001, 0, ECX, 5, "abm"}, {0x80000001, 0, EDX, 27, "rdtscp"},
};

static uint32_t reg_of(const struct x86_cpuid_entry *e, enum reg r)
{
    return r == EAX ? e->eax : r == EBX ? e->ebx : r == ECX ? e->ecx : e->edx;
}

static const struct x86_cpuid_entry *find(const struct x86_cpuid_entry *t, size_t n,
                                          uint32_t function, uint32_t index)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].function == function && t[i].index == index)
            return &t[i];
    return NULL;
}

static const char *feature_name(uint32_t function, uint32_t index, enum reg r, unsigned bit)
{
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (known[i].function == function && known[i].index == index && known[i].reg == r &&
            known[i].bit == bit)
            return known[i].name;
    return NULL;
}

int x86_cpuid_fits(const struct x86_cpuid_entry *saved, size_t saved_count,
                   const struct x86_cpuid_entry *host, size_t host_count, char *why,
                   size_t why_size)
{
    static const char regs[] = "ABCD";

    for (size_t i = 0; i < sizeof(feature_regs) / sizeof(feature_regs[0]); i++) {
        const struct x86_cpuid_entry *s = find(saved, saved_count, feature_regs[i].function,
                                               feature_regs[i].index);
        const struct x86_cpuid_entry *h = find(host, host_count, feature_regs[i].function,
                                               feature_regs[i].index);
        uint32_t missing;
        unsigned bit;
        const char *name;

        if (!s)
            continue;
        missing = reg_of(s, feature_regs[i].reg) & ~(h ? reg_of(h, feature_regs[i].reg) : 0) &
                  ~feature_regs[i].ignore;
        if (!missing)
            continue;
        bit = (unsigned)__builtin_ctz(missing);
        name = feature_name(s->function, s->index, feature_regs[i].reg, bit);
        snprintf(why, why_size, "CPUID 0x%x.%u E%cX bit %u%s%s%s", s->function, s->index,
                 regs[feature_regs[i].reg], bit, name ? " (" : "", name ? name : "",
                 name ? ")" : "");
        return -1;
    }
    return 0;
}
