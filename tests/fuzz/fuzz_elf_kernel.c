/* libFuzzer target: arbitrary bytes as an ELF vmlinux, through the PVH
 * loader: its headers, program headers and notes parsed, each loadable
 * segment checked against the file, RAM, the boot structures and the
 * other segments, then read into guest memory with its bss zeroed, and
 * the start info written. Read through the same source interface a kernel
 * file on disk is read through. */
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/boot.h"
#include "core/memory.h"
#include "util/err.h"

#define FUZZ_RAM (32ull << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct guest_memory mem;
    static int ready;
    struct guest_region layout[GUEST_MEMORY_MAX_REGIONS];
    struct x86_boot_request req = {.kernel = data, .kernel_len = size, .cmdline = "x"};
    struct x86_cpu_state bsp;

    if (!ready) {
        if (guest_memory_alloc(&mem, layout, x86_ram_layout(FUZZ_RAM, layout)) < 0)
            __builtin_trap();
        ready = 1;
    }
    if (x86_kernel_kind(data, size) == X86_KERNEL_ELF && x86_boot_load(&mem, &req, &bsp) < 0)
        err_clear();
    return 0;
}
