/* libFuzzer target: arbitrary bytes as a BSD executable, through every
 * check bsd-user's loader makes before it maps anything (ELF header,
 * program headers, the FreeBSD/NetBSD brand and notes, PT_INTERP, each
 * loadable segment's place in the file and in the guest's range). */
#include <stddef.h>
#include <stdint.h>

#include "bsduser/bsduser.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* ELF headers are read in place: give them the alignment a mapping has. */
    static uint64_t copy[1 << 17];
    struct bsduser_options o = {0};
    enum bsd_os os;
    if (size > sizeof(copy))
        return 0;
    __builtin_memcpy(copy, data, size);
    if (bsd_check_elf((const uint8_t *)copy, size, &o, &os) < 0)
        err_clear();
    return 0;
}
