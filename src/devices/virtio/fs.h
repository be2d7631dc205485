/* virtio-fs: the part of the device that turns a popped chain into a FUSE
 * request and its reply, apart from the transport and the worker threads,
 * for tests and the fuzzer. */
#ifndef SMOLVM_DEVICES_VIRTIO_FS_H
#define SMOLVM_DEVICES_VIRTIO_FS_H

#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/queue.h"
#include "fs/fuse.h"

/* Serves chain c with server: the request is copied out of its readable
 * buffers into in (FUSE_SERVER_IN_MAX bytes), the reply built in out
 * (FUSE_SERVER_OUT_MAX) for the chain's writable bytes. The reply's
 * length (0: no reply); its first *head bytes are in out, still to be
 * copied into the chain; the rest (a READ's data, read from the file into
 * the chain's buffers) is there already. A WRITE's payload is written
 * only while mem holds the guest's data (guest_memory_holds_data; mem
 * NULL: not checked), else refused (EINVAL). */
size_t virtio_fs_serve_chain(struct fuse_server *server, const struct guest_memory *mem,
                             const struct virtq_chain *c, uint8_t *in, uint8_t *out, size_t *head);

#endif
