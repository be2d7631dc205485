/* libFuzzer target: what bsd-user's call-site rewriter reads of a program
 * (src/bsduser/rewrite.c), fed arbitrary bytes twice over:
 *   - as an executable that passed the loader's checks: its functions from
 *     Go's .gopclntab or the ELF symbol table (bsd_rewrite_scan);
 *   - as its code: every `syscall` in it a site whose window is planned
 *     (bsd_rewrite_window: functions decoded from their start, jumps into
 *     the window, every function's jump targets for a non-Go program),
 *     the functions starting after each run of int3 padding.
 * A window must lie inside the code, whole instructions of 5 to 32 bytes
 * before the site; nothing may be read past the code (ASan: the code is a
 * heap block of its exact size). Seeds: small FreeBSD executables with a
 * symbol table, with .gopclntab in Go 1.2, 1.16 and 1.18+ layouts, with
 * misaligned headers; 4 KiB of tests/bsduser/prog.c's code. */
#include <stdlib.h>
#include <string.h>

#include "bsduser/bsduser.h"
#include "bsduser/internal.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* Undefined behaviour is a finding too (a misaligned header read in place). */
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

static void scan(const uint8_t *data, size_t size)
{
    /* ELF headers are read in place: give them the alignment a mapping has. */
    static uint64_t copy[16384 / 8];
    struct bsduser_options o = {0};
    enum bsd_os os;
    __builtin_memcpy(copy, data, size);
    if (bsd_check_elf((const uint8_t *)copy, size, &o, &os) < 0) {
        err_clear();
        return;
    }
    for (uint64_t bias = 0; bias <= 0x10000; bias += 0x10000) { /* (Go's table: bias 0 only) */
        struct bsd_code code;
        bsd_rewrite_scan((const uint8_t *)copy, size, bias, &code);
        for (size_t i = 1; i < code.nfuncs; i++)
            if (code.funcs[i] < code.funcs[i - 1])
                abort(); /* not sorted: the binary search would miss */
        free(code.funcs);
    }
}

static void plan_sites(const uint8_t *data, size_t size)
{
    static struct bsd_process proc;
    uint8_t *text = malloc(size);
    uint64_t *funcs = malloc((size + 1) * sizeof(*funcs));
    if (!text || !funcs || size < 2)
        goto out;
    memcpy(text, data, size);
    uint64_t lo = (uint64_t)text, hi = lo + size;
    size_t n = 0;
    funcs[n++] = lo;
    for (size_t i = 1; i < size; i++)
        if (text[i - 1] == 0xcc && text[i] != 0xcc)
            funcs[n++] = lo + i;
    bsd_proc = &proc;
    proc.code = (struct bsd_code){lo, hi, funcs, n, text[0] & 1};
    atomic_store(&proc.live_threads, 1 + (text[1] & 1)); /* one thread may store 5 bytes as they are */
    /* (at most 32 sites: each decodes its function again) */
    for (size_t i = 0, sites = 0; i + 1 < size && sites < 32; i++) {
        if (text[i] != 0x0f || text[i + 1] != 0x05)
            continue;
        sites++;
        uint64_t site = lo + i, w = bsd_rewrite_window(site);
        if (w && (w < lo || site - w < 5 || site - w > 32))
            abort();
    }
    bsd_rewrite_reset();
    bsd_proc = NULL;
out:
    free(text);
    free(funcs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    scan(data, size);
    plan_sites(data, size);
    return 0;
}
