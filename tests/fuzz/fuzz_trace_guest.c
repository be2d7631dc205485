/* The boot trace's guest phases fed arbitrary console output: the guest
 * writes what it likes to its console, and each line goes through
 * trace_guest_line() (its stamp, its phase name) into the printed table
 * and JSON. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    const char *text = (const char *)data;
    int64_t seen = 0;

    if (!sink)
        sink = fopen("/dev/null", "w");
    trace_start();
    trace_mark(TRACE_FIRST_VCPU_ENTRY);
    while (size > 0) {
        const char *nl = memchr(text, '\n', size);
        size_t n = nl ? (size_t)(nl - text) : size;
        trace_guest_line_at(text, n, seen += 1000000);
        text += n + (nl != NULL);
        size -= n + (nl != NULL);
    }
    trace_print_table(sink, NULL);
    trace_print_json(sink, "marker");
    return 0;
}
