/* QCOW2 internals shared by the driver's files: qcow2.c (open, mapping,
 * read and write), qcow2_refcount.c (refcounts and cluster allocation),
 * qcow2_create.c. The format is QEMU's docs/interop/qcow2.txt; every field
 * on disk is big-endian. */
#ifndef SMOLVM_DISK_QCOW2_H
#define SMOLVM_DISK_QCOW2_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "disk/disk.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_V2_HEADER 72
#define QCOW2_V3_HEADER 104
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21

#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

#define QCOW2_EXT_END 0
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u

#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO 1ull
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull

#define QCOW2_COMPRESSION_DEFLATE 0
#define QCOW2_COMPRESSION_ZSTD 1

/* Metadata tables (L2 tables, refcount blocks) held in memory; writes go
 * through to the file at once, so the cache is never dirty. */
#define QCOW2_CACHE_SLOTS 16
struct qcow2_cache {
    uint64_t offset[QCOW2_CACHE_SLOTS]; /* 0: empty */
    uint64_t used[QCOW2_CACHE_SLOTS];
    uint8_t *tables;
    uint64_t tick;
};

/* Clusters whose refcount is already 1 on disk and synced, handed out to
 * writes so that a new cluster never needs a sync of its own. A crash
 * leaks what is left here (a leak, which check -r leaks repairs), never
 * corrupts. */
#define QCOW2_POOL_MAX 512
#define QCOW2_PENDING_MAX 256

struct qcow2 {
    pthread_mutex_t lock;
    struct disk *disk;
    int fd;
    unsigned version;
    unsigned cluster_bits;
    uint64_t cluster_size;
    unsigned l2_entry_bytes; /* 8, or 16 with extended L2 entries */
    uint64_t l2_entries;     /* entries per L2 table */
    uint64_t l1_offset;
    uint32_t l1_size;
    uint64_t *l1; /* host byte order */
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint64_t reftable_entries;
    uint64_t *reftable;
    unsigned refcount_order;
    uint64_t refblock_entries;
    uint64_t incompatible, compatible, autoclear;
    unsigned header_length;
    uint8_t compression_type;
    char *backing_name;
    char *backing_format;
    uint32_t snapshot_count;
    uint64_t snapshots_offset;
    struct qcow2_cache l2_cache, refblock_cache;
    uint64_t file_size;   /* bytes, grows as clusters are written */
    uint64_t free_hint;   /* no free cluster below this index */
    uint64_t pool[QCOW2_POOL_MAX]; /* cluster indexes, ascending */
    unsigned pool_count;
    struct {
        uint64_t cluster, count;
    } pending_free[QCOW2_PENDING_MAX]; /* to unreference after the next sync */
    unsigned pending_count;
    uint64_t compress_cursor; /* where the next compressed cluster may go, or 0 */
    uint8_t *inflated;        /* the compressed cluster read last, inflated */
    uint64_t inflated_entry;  /* its L2 entry (0: none) */
    bool broken; /* corruption found: no more writes */
};

/* Marks the image broken, records the message, returns -EIO. */
int qcow2_corrupt(struct qcow2 *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Metadata table cache: a table at offset, loaded if not present. */
int qcow2_cache_init(struct qcow2_cache *c, uint64_t table_size);
void qcow2_cache_free(struct qcow2_cache *c);
int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t offset, uint8_t **table);
void qcow2_cache_drop(struct qcow2 *q, struct qcow2_cache *c, uint64_t offset);

/* Writes len bytes at offset, all of them. */
int qcow2_pwrite(struct qcow2 *q, const void *buf, size_t len, uint64_t offset);
int qcow2_pread(struct qcow2 *q, void *buf, size_t len, uint64_t offset);

/* Refcounts (qcow2_refcount.c). */
int qcow2_refcount_open(struct qcow2 *q);
int qcow2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *count);
/* Adds delta to the refcount of each cluster in [offset, offset+len). */
int qcow2_refcount_update(struct qcow2 *q, uint64_t offset, uint64_t len, int delta);
/* A run of up to want contiguous clusters with refcount 1 (synced): host
 * offset in *offset, count in *got (>= 1). */
int qcow2_alloc(struct qcow2 *q, uint64_t want, uint64_t *offset, uint64_t *got);
/* n contiguous clusters past everything in use, counted and synced (for
 * tables: L1 copies, snapshot tables). */
int qcow2_alloc_run(struct qcow2 *q, uint64_t n, uint64_t *offset);
/* Drops a reference to the clusters of [offset, offset+len) once the
 * metadata that stopped using them is synced. */
int qcow2_free_later(struct qcow2 *q, uint64_t offset, uint64_t len);
/* fdatasync, then the deferred frees. */
int qcow2_sync(struct qcow2 *q);
/* Returns the unused pool to free clusters (on close). */
int qcow2_release_pool(struct qcow2 *q);

/* A new empty image (qcow2_create.c). */
int qcow2_create(const char *path, const struct disk_create_options *o);

/* Points the whole clusters of [offset, offset+len) at nothing (flags 0:
 * unallocated, reading through to the backing file) or at zeros (flags
 * QCOW2_OFLAG_ZERO), dropping what they held (qcow2.c). */
int qcow2_set_clusters(struct qcow2 *q, uint64_t offset, uint64_t len, uint64_t flags);

/* Virtual size, backing file, emptying (qcow2_header.c). */
int qcow2_resize(struct disk *d, uint64_t size);
int qcow2_set_backing(struct disk *d, const char *name, const char *format);
int qcow2_make_empty(struct disk *d);

/* Internal snapshots (qcow2_snapshot.c). */
int qcow2_snapshot(struct disk *d, enum disk_snapshot_op op, const char *name);
int qcow2_snapshot_list(struct disk *d, struct json_t *list);

/* qemu-img check (qcow2_check.c). */
int qcow2_check(struct disk *d, unsigned repair, struct disk_check_result *res);
/* Sets one cluster's refcount (repairs only). */
int qcow2_refcount_set(struct qcow2 *q, uint64_t cluster, uint64_t value);

/* The host bytes a compressed cluster's L2 entry points to. */
void qcow2_compressed_range(const struct qcow2 *q, uint64_t entry, uint64_t *start,
                            uint64_t *len);

/* Writes entry index of an in-memory table (L1, refcount table) and its
 * copy on disk at table_offset. */
int qcow2_write_table_entry(struct qcow2 *q, uint64_t table_offset, uint64_t *table,
                            uint64_t index, uint64_t value);

/* Header fields written in place (qcow2.c). */
int qcow2_write_incompatible(struct qcow2 *q, uint64_t bits);

static inline uint64_t qcow2_div_round_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

#endif
