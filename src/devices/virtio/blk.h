/* The request side of virtio-blk, apart from its transport, so tests and
 * the fuzzer can feed it chains straight from a virtqueue. */
#ifndef SMOLVM_DEVICES_VIRTIO_BLK_H
#define SMOLVM_DEVICES_VIRTIO_BLK_H

#include "devices/virtio/queue.h"
#include "disk/disk.h"

struct blk;

/* A request server for disk (owned by the caller) answering GET_ID with
 * id. NULL when out of memory. */
struct blk *virtio_blk_new(struct disk *disk, const char *id);
void virtio_blk_free(struct blk *b);
/* Writes are checked against mem (guest_memory_holds_data): a write of
 * pages let go as zeros is refused (VIRTIO_BLK_S_IOERR). */
struct guest_memory;
void virtio_blk_check_memory(struct blk *b, const struct guest_memory *mem);

/* Serves one chain: the bytes written into it (data + status), or <0 with
 * an err_set() message when it is not a well-formed request. */
long virtio_blk_serve(void *blk, const struct virtq_chain *chain);

#endif
