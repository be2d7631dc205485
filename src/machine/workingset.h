/* A restored guest's working set (after REAP, ASPLOS'21: record the pages
 * a restored function touches, prefetch them on later starts). RAM mapped
 * MAP_PRIVATE from the unpacked cache faults in page by page as the guest
 * touches it; the pages present a while after the first start are written
 * down once, next to the cache file, and faulted in before the vCPUs run
 * on every later start: read ones mapped from the page cache (still shared
 * between instances), written ones copied. */
#ifndef SMOLVM_MACHINE_WORKINGSET_H
#define SMOLVM_MACHINE_WORKINGSET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/memory.h"

struct working_set_counts {
    uint64_t read_pages, written_pages, ranges;
    bool provisional; /* written by working_set_write_chunks */
};

/* Writes down which pages of mem (mapped from a file, MAP_PRIVATE) are
 * present (read: still the file's; written: copied) into path, through a
 * temporary file and a rename. counts may be NULL. */
int working_set_record(const char *path, const struct guest_memory *mem,
                       struct working_set_counts *counts) __attribute__((warn_unused_result));

/* Writes a provisional working set into path: whole chunks of the RAM
 * laid end to end ({first page, pages} each, none crossing a region), all
 * read. A first start served by userfaultfd knows only which chunks the
 * guest faulted in; the start that prefetches it records the exact one. */
struct working_set_chunk {
    uint64_t first_page;
    uint32_t pages;
};
int working_set_write_chunks(const char *path, const struct guest_memory *mem,
                             const struct working_set_chunk *chunks, size_t count)
    __attribute__((warn_unused_result));

/* Faults in the pages path lists. -ENOENT: none recorded; -EINVAL: the
 * file is not a working set of this RAM layout (nothing was touched). */
int working_set_prefetch(const char *path, const struct guest_memory *mem,
                         struct working_set_counts *counts) __attribute__((warn_unused_result));

/* Records path from mem (which must stay mapped) delay_ms from now, or
 * when stopped if that comes first. */
struct working_set_recorder;
int working_set_recorder_start(const char *path, const struct guest_memory *mem,
                               unsigned delay_ms, struct working_set_recorder **out)
    __attribute__((warn_unused_result));
/* Records now unless it has, and frees w (NULL: nothing). */
void working_set_recorder_stop(struct working_set_recorder *w);

#endif
