/* What the kernel says of the mapping holding an address (/proc/self/smaps):
 * for tests of how guest RAM is mapped. */
#ifndef SMOLVM_TESTS_SMAPS_H
#define SMOLVM_TESTS_SMAPS_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Whether the mapping holding addr has VmFlag flag ("dd": not dumped);
 * false when there is no such mapping. */
static inline bool smaps_has_flag(const void *addr, const char *flag)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512], want[8];
    unsigned long start, end, at = (unsigned long)addr;
    bool inside = false, found = false;

    snprintf(want, sizeof(want), " %s", flag);
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = at >= start && at < end;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            line[strcspn(line, "\n")] = ' ';
            found = strstr(line + 8, want) && strstr(line + 8, want)[strlen(want)] == ' ';
            break;
        }
    }
    if (f)
        fclose(f);
    return found;
}

#endif
