/* Whether a saved guest's CPU model fits this host: a snapshot records the
 * CPUID its vCPUs saw, and a restore on a host that lacks one of those
 * features must refuse (the guest chose code paths by them) instead of
 * letting the guest fault later. */
#ifndef SMOLVM_ARCH_X86_CPUID_H
#define SMOLVM_ARCH_X86_CPUID_H

#include <stddef.h>
#include <stdint.h>

struct x86_cpuid_entry {
    uint32_t function, index;
    uint32_t eax, ebx, ecx, edx;
};

/* 0 when every feature bit set in saved is offered by host; otherwise -1
 * and why names the first missing one ("CPUID 0x7.0 EBX bit 16 (avx512f)"). */
int x86_cpuid_fits(const struct x86_cpuid_entry *saved, size_t saved_count,
                   const struct x86_cpuid_entry *host, size_t host_count, char *why,
                   size_t why_size);

#endif
