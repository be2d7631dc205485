/* A restored guest's working set (after REAP, ASPLOS'21: record the pages
 * a restored function touches, prefetch them on later starts). RAM mapped
 * MAP_PRIVATE from the unpacked cache faults in page by page as the guest
 * touches it; the pages present at the guest's first output after the
 * first start (its answer: an echo of its input does not count,
 * core/console.h) (what a start as the user sees it waits for; at most a
 * second after it) are written down once, next to the cache file, and
 * faulted in before the vCPUs run on every later start: read ones mapped
 * from the page cache (still shared between instances), written ones
 * copied. Recorded later, the set also held what the guest touched after
 * that output (9.5k pages a second in, in bench/coldstart): a later start
 * prefetching it lost to one faulting every page in as touched. */
#ifndef SMOLVM_MACHINE_WORKINGSET_H
#define SMOLVM_MACHINE_WORKINGSET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/memory.h"

struct working_set_counts {
    uint64_t read_pages, written_pages, ranges;
    /* prefetch: mincore calls (one per span of near ranges), and
     * MADV_WILLNEED calls (one per range not wholly in the page cache) */
    uint64_t resident_checks, readahead_calls;
    bool provisional;         /* written by working_set_write_chunks */
};

/* Writes down which pages of mem (mapped from a file, MAP_PRIVATE) are
 * present (read: still the file's; written: copied) into path, through a
 * temporary file and a rename. Where path holds a provisional set (a
 * first start's: the pages its guest touched, machine/ram_faults.h), of
 * the pages read only those it lists are kept: the kernel maps up to 64
 * KiB of the file's cached pages around each read fault (fault-around),
 * which pagemap cannot tell from the guest's touches. counts may be
 * NULL. */
int working_set_record(const char *path, const struct guest_memory *mem,
                       struct working_set_counts *counts) __attribute__((warn_unused_result));

/* Writes a provisional working set into path: ranges of the RAM laid end
 * to end ({first page, pages} each, none crossing a region), all read. A
 * first start served by userfaultfd knows which pages the guest touched,
 * not which it wrote; the next start records the exact one from them. */
struct working_set_chunk {
    uint64_t first_page;
    uint32_t pages;
};
int working_set_write_chunks(const char *path, const struct guest_memory *mem,
                             const struct working_set_chunk *chunks, size_t count)
    __attribute__((warn_unused_result));

/* The page ranges path lists ({first page of the RAM laid end to end,
 * pages} each, none crossing a region; written or not, exact or
 * provisional alike), checked against mem's layout as a prefetch checks
 * them, into *out (freed by the caller). -ENOENT: none recorded; -EINVAL:
 * not a working set of this RAM. */
int working_set_read_ranges(const char *path, const struct guest_memory *mem,
                            struct working_set_chunk **out, size_t *count)
    __attribute__((warn_unused_result));

/* An exact working set recorded at path (as a later start left it next to
 * the memory cache), checked against mem's layout, in its encoding (at
 * most most bytes): what a save carries in its bundle (SECTION_WORKINGSET,
 * docs/smolmachine-format.md) into *out (freed by the caller). -ENOENT:
 * none; -EINVAL: not of this RAM, or provisional; -E2BIG: larger. */
int working_set_encoding(const char *path, const struct guest_memory *mem, size_t most,
                         uint8_t **out, size_t *len) __attribute__((warn_unused_result));

/* A bundle's working set (len bytes of its encoding, hostile: checked as
 * a file's is, and exact) written to path as a provisional one: a first
 * start decodes its chunks into place before the guest runs, and the next
 * start, prefetching none of it, records this RAM's exact set. */
int working_set_adopt(const char *path, const struct guest_memory *mem, const uint8_t *data,
                      size_t len) __attribute__((warn_unused_result));

/* Faults in the pages path lists. -ENOENT: none recorded; -EINVAL: the
 * file is not a working set of this RAM layout (nothing was touched). A
 * provisional one is checked and counted, not faulted in: whole chunks
 * (nearly every one, in bench/coldstart) are far more than the guest
 * touches before its first output; the start records the exact one. */
int working_set_prefetch(const char *path, const struct guest_memory *mem,
                         struct working_set_counts *counts) __attribute__((warn_unused_result));

/* Records path from mem (which must stay mapped) delay_ms from now, or
 * when told to (working_set_recorder_now) or stopped if that comes
 * first: once. */
struct working_set_recorder;
int working_set_recorder_start(const char *path, const struct guest_memory *mem,
                               unsigned delay_ms, struct working_set_recorder **out)
    __attribute__((warn_unused_result));
/* Records now (in the recorder's thread: returns at once, from any
 * thread) unless it has. */
void working_set_recorder_now(struct working_set_recorder *w);
/* Records now unless it has, and frees w (NULL: nothing). */
void working_set_recorder_stop(struct working_set_recorder *w);

#endif
