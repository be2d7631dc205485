/* A first start's RAM served as the guest touches it (userfaultfd) from a
 * bundle's memory section (bundle_memory_image_read: its index checked
 * before the guest runs): the chunk holding a touched page is read into
 * private memory, its hash checked there and decoded from those same
 * bytes before any of it is placed (the bytes used are the bytes checked;
 * hashing every chunk before the guest runs would cost a first start
 * what it saves), only as far as the 64 KiB around the page, which are
 * placed first. The rest follows behind the guest, and the memory cache
 * file is written from the same decoded chunks, so later starts map it. A
 * chunk that fails its check is never placed: the guest, which needs it,
 * cannot go on: the VM is stopped (ram_faults_when_broken). Two threads
 * (faults; the fill); their system calls (their seccomp filter:
 * confine/seccomp_rules.c build_memory): poll (ppoll), read, pread64, ioctl
 * (UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WAKE, UFFDIO_UNREGISTER),
 * pwrite64, fdatasync, rename, unlink, close, write, tgkill (a stop's
 * vCPU kicks, when broken),
 * sched_setscheduler (SCHED_IDLE), futex, mmap/munmap/madvise (malloc),
 * exit, exit_group. */
#ifndef SMOLVM_MACHINE_RAM_FAULTS_H
#define SMOLVM_MACHINE_RAM_FAULTS_H

#include <semaphore.h>

#include "bundle/bundle.h"
#include "core/memory.h"
#include "machine/workingset.h"

struct ram_faults;

/* Whether this host gives smolvm a userfaultfd (see ram_faults_start). */
bool ram_faults_supported(void);

/* Registers mem's regions (fresh anonymous RAM, nothing touched yet) and
 * starts serving them from img (owned from here on, also on failure).
 * cache_path: the memory cache file to fill (through a temporary file
 * renamed when whole), or NULL; working_set: where the pages the guest
 * touched up to its first output (ram_faults_record_now) or a second in
 * are written down (a provisional working set, machine/workingset.h), or
 * NULL: until then each fault places its page alone (so a neighbour's
 * touch is a fault as well, and written down: no 64 KiB around a touch
 * counts as touched) and the fill waits. known: page
 * ranges the guest will touch (a working set: machine/workingset.h), whose
 * pages are decoded into place before the regions are registered (the
 * guest takes no fault for them; each chunk holding some checked whole),
 * or none. -EOPNOTSUPP, no message: this
 * host gives smolvm no userfaultfd (the caller unpacks as before);
 * -EINVAL: a chunk of known failed its check (said). */
int ram_faults_start(struct bundle_memory_image *img, const struct guest_memory *mem,
                     const char *cache_path, const char *working_set,
                     const struct working_set_chunk *known, size_t known_count,
                     struct ram_faults **out) __attribute__((warn_unused_result));

/* The guest's first output came (core/console.h: its answer): the
 * recording of its touches ends (see ram_faults_start), from any thread;
 * the fill goes on behind it. */
void ram_faults_record_now(struct ram_faults *f);

/* Returns once every chunk is in RAM (and the cache file named): what
 * reads RAM as a whole (a save) calls it first, and a VM that stopped.
 * The fill runs at normal priority from then on (SCHED_IDLE before:
 * behind a guest that no longer runs, a loaded host would starve it). */
int ram_faults_complete(struct ram_faults *f) __attribute__((warn_unused_result));

/* Stops serving and frees f (NULL: nothing); a cache file not yet whole
 * is dropped. mem must still be mapped. */
void ram_faults_stop(struct ram_faults *f);

/* Who is told when serving fails for good (a chunk fails its check or,
 * in a forged bundle, does not decompress; a chunk cannot be placed): fn,
 * once, with the message (no "smolvm:" prefix), on the thread that found
 * it (a server thread, under its seccomp filter: futex, write, tgkill
 * only) -- or at once on the caller's thread when that happened before
 * (a restore that touched the chunk). The guest cannot go on without the
 * chunk, and a vCPU waiting for it in KVM cannot be kicked out (Linux 6.1
 * waits killable there): fn stops the VM and kicks its vCPUs; when it
 * returns, the regions are let go, so every thread waiting for a page
 * wakes (to a zero page: a kicked vCPU leaves KVM before it runs the
 * guest again) and the vCPUs can be joined, the disks flushed and the VM
 * stopped as any other. Nobody named: nobody told (the VMM goes on).
 * A device thread that reads a page not yet placed after the regions are
 * let go (a request the guest queued before the stop) reads zeros there:
 * the machine's fn marks the RAM lost first (vm_memory_lost), and the
 * devices that write guest pages out to host files (virtio-blk, virtio-fs)
 * refuse such writes (core/memory.h guest_memory_holds_data).
 *
 * Every other end lets go too: ram_faults_stop; exit() from any thread
 * (an exit handler); _exit, a crash and SIGKILL through the kernel (the
 * waits are killable, the uffd is released with the last thread). */
void ram_faults_when_broken(struct ram_faults *f, void (*fn)(void *opaque, const char *message),
                            void *opaque);

/* Test seam: false serves faults only (no fill behind the guest). */
extern bool ram_faults_fill_behind;
/* Test seam: false records no touches (working_set then lists the chunks
 * faulted in before the fill was done, as smolvm did before; windows are
 * placed from the first fault on). */
extern bool ram_faults_record_pages;
/* Test seam: false places known's chunks whole (as smolvm did before),
 * not only the pages known names. */
extern bool ram_faults_prefill_pages;
/* Test seam: when set, the fill waits for it to be posted before it
 * places anything (so a test's touches are faults, whatever the load). */
extern sem_t *ram_faults_fill_gate;
/* Test seam: when set, the fault thread waits for it before it serves
 * anything (so a test's threads are waiting in their faults first). */
extern sem_t *ram_faults_serve_gate;
/* Test seam: called with every range about to be placed (by either
 * thread, under its seccomp filter: no system calls). */
extern void (*ram_faults_placed)(const uint8_t *at, size_t len);
/* Test seam: called with every chunk about to be decoded (by either
 * thread, under its seccomp filter: no system calls). */
extern void (*ram_faults_decoding)(size_t chunk);

#endif
