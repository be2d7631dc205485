/* Cache policy: what a start keeps under $XDG_CACHE_HOME/smolvm so later
 * starts of the same bundle do less, each entry named by the hash of the
 * section it came from (util/cache.h says who may write them):
 * - disks/<key>.raw: a disk carried whole, unpacked once: the read-only base
 *   every instance started from it writes its own delta over;
 * - layers/<hash>.<format>: a disk carried as layers, each unpacked once
 *   (and checked) where they back each other by name;
 * - memory/<key>.ram: saved RAM unpacked once, then mapped (or copied) by
 *   every start; memory/<key>.ws: the working set the first start
 *   recorded, faulted in before the vCPUs of every later one run.
 * Where there is no usable cache a start unpacks from the bundle itself. */
#ifndef SMOLVM_MACHINE_CACHE_H
#define SMOLVM_MACHINE_CACHE_H

#include "bundle/bundle.h"
#include "bundle/layers.h"
#include "core/memory.h"
#include "machine/machine.h"

/* How long after a start the pages present make its working set when
 * the guest says nothing sooner (see machine/workingset.h): its first
 * second (REAP's window). */
#define WORKING_SET_WINDOW_MS 1000

/* The cached base of b's section (a disk carried whole); *out malloc'd. */
int machine_cached_disk(const struct bundle *b, const char *section, char **out)
    __attribute__((warn_unused_result));
/* Disk i's chain of layers in the layer cache; *top: the top's file. */
int machine_cached_layers(const struct bundle *b, const struct bundle_chains *c, unsigned i,
                          char **top) __attribute__((warn_unused_result));
/* Whether layer hash (format raw or qcow2) is at hand for a migration's
 * destination: in the layer cache, or in the store's layers (then copied
 * into the cache, where a chain's layers back each other by name), its
 * bytes hashing to its name either way. *have: so; 0, or <0 with the
 * message set when the cache cannot be used. */
int machine_layer_at_hand(const char *hash, const char *format, bool *have)
    __attribute__((warn_unused_result));
/* From the memory cache: section name is unpacked once (verified) into
 * cache_dir/<its key>.ram (a sparse file), then each start either maps it
 * (MEMORY_CACHE_MAP: MAP_PRIVATE, the guest faults in only what it
 * touches, its writes never reach the file) or copies its data extents
 * into RAM (MEMORY_CACHE_COPY: no decompression or hashing, and RAM keeps
 * huge pages). -EINVAL means the bundle is corrupt; other errors concern
 * the cache (the caller may fall back to bundle_load_memory()). */
enum machine_memory_use { MEMORY_CACHE_MAP, MEMORY_CACHE_COPY };
int machine_memory_cache(const struct bundle *b, const char *name, struct guest_memory *mem,
                         const char *cache_dir, enum machine_memory_use use)
    __attribute__((warn_unused_result));
/* b's saved RAM into mem, as how says. *record: where this start should
 * record its working set (malloc'd), or NULL when one is there already.
 * The first start (no memory cache yet, the default how) leaves *faults
 * serving RAM as the guest touches it while the cache fills behind it
 * (machine/ram_faults.h), where this host gives smolvm a userfaultfd. */
struct ram_faults;
struct memory_cache_publisher;
int machine_cached_memory(const struct bundle *b, struct guest_memory *mem,
                          enum machine_memory how, char **record, struct ram_faults **faults,
                          struct memory_cache_publisher **later)
    __attribute__((warn_unused_result));
/* A memory cache file this start unpacked is synced and named behind the
 * guest, which runs from it meanwhile (a first start's fdatasync of the
 * whole RAM is not in its time to the guest's first output), where later
 * is not NULL: *later is then what machine_memory_cache_published() waits
 * for and frees (NULL: nothing), before the process ends. */
void machine_memory_cache_published(struct memory_cache_publisher *p);

/* Where the working set of b's RAM is kept (recorded by a later start;
 * machine/workingset.h), *path malloc'd: a save of the VM started from b
 * carries it in its bundle (SECTION_WORKINGSET). */
int machine_working_set_path(const struct bundle *b, char **path)
    __attribute__((warn_unused_result));

#endif
