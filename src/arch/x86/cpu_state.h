/* x86 vCPU state in a hypervisor-neutral form: what the boot code sets and
 * what a backend (KVM today, Hypervisor.framework later) translates. */
#ifndef SMOLVM_ARCH_X86_CPU_STATE_H
#define SMOLVM_ARCH_X86_CPU_STATE_H

#include <stdint.h>

struct x86_segment {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint8_t type;
    uint8_t present, dpl, db, s, l, g;
};

struct x86_table {
    uint64_t base;
    uint16_t limit;
};

struct x86_cpu_state {
    uint64_t rip, rflags, rsp, rsi, rbx;
    struct x86_segment cs, ds, es, fs, gs, ss, tr, ldt;
    struct x86_table gdt, idt;
    uint64_t cr0, cr3, cr4, efer;
};

#define X86_CR0_PE (1ull << 0)
#define X86_CR0_ET (1ull << 4)
#define X86_CR0_PG (1ull << 31)
#define X86_CR4_PAE (1ull << 5)
#define X86_EFER_LME (1ull << 8)
#define X86_EFER_LMA (1ull << 10)

#endif
