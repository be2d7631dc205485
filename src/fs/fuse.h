/* The FUSE protocol (linux/fuse.h, 7.27 and later) as a virtio-fs device
 * serves it: one request's bytes in, the reply's bytes out, answered by a
 * passthrough file system (passthrough.h). Every request is hostile: a
 * short header, a length past the buffer, an unknown opcode, a name
 * without its NUL or with a '/', a node id or handle never given out
 * each get an error reply, never a crash. Thread-safe: the device serves
 * requests from several threads. */
#ifndef SMOLVM_FS_FUSE_H
#define SMOLVM_FS_FUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/passthrough.h"

/* Largest write (and read) a request may carry, offered in INIT: 128
 * pages, so a request's chain (a descriptor per page, plus headers) fits
 * the device's 256-entry queue even where the driver uses no indirect
 * descriptors (and the longest chain a device takes, VIRTQ_MAX_CHAIN). */
#define FUSE_SERVER_MAX_IO (512u << 10)
/* Buffers of these sizes hold any request and any reply. */
#define FUSE_SERVER_IN_MAX (FUSE_SERVER_MAX_IO + 4096)
#define FUSE_SERVER_OUT_MAX (FUSE_SERVER_MAX_IO + 4096)

struct fuse_server;

/* The opcode's name without its FUSE_ prefix ("READ"), "other" for one the
 * server does not serve. */
const char *fuse_opcode_name(uint32_t opcode);

/* A server for fs (still the caller's). NULL when out of memory. */
struct fuse_server *fuse_server_new(struct pt_fs *fs);
void fuse_server_free(struct fuse_server *s);

/* The device was reset: forget the session (a new INIT comes). */
void fuse_server_reset(struct fuse_server *s);

/* Whether the guest's INIT was answered (a snapshot keeps it: a restored
 * guest does not send INIT again). */
bool fuse_server_initialized(struct fuse_server *s);
void fuse_server_set_initialized(struct fuse_server *s, bool on);
/* Whether the guest's INIT offered FUSE_NO_OPEN_SUPPORT: it opens files
 * without asking (OPEN is answered ENOSYS once, RELEASE never comes) and
 * reads and writes each through its node (fh 0). Kept by a snapshot too. */
bool fuse_server_no_open(struct fuse_server *s);
void fuse_server_set_no_open(struct fuse_server *s, bool on);

/* Serves the request in[0..in_len): the bytes of the reply written to
 * out (at most out_cap), 0 when the request takes no reply (FORGET,
 * BATCH_FORGET, INTERRUPT) or out_cap cannot hold a reply header. */
size_t fuse_serve(struct fuse_server *s, const uint8_t *in, size_t in_len, uint8_t *out,
                  size_t out_cap);

/* The same for a request whose bytes after in[0..in_len) are the iovecs
 * data[0..data_count) in place (a WRITE's payload in the guest's pages,
 * written to the file without a copy). Any other request must come whole
 * in in[]: data's bytes past its header's length are never looked at. */
struct iovec;
size_t fuse_serve_data(struct fuse_server *s, const uint8_t *in, size_t in_len,
                       const struct iovec *data, unsigned data_count, uint8_t *out,
                       size_t out_cap);

/* The same for a READ whose data goes straight into dest[0..dest_count)
 * (the chain's writable bytes past the reply's header, in the guest's
 * pages: no copy on the way): only the reply's header is written to out,
 * the length returned counts the data too. Any other request is refused
 * (EINVAL). */
size_t fuse_serve_read(struct fuse_server *s, const uint8_t *in, size_t in_len,
                       const struct iovec *dest, unsigned dest_count, uint8_t *out,
                       size_t out_cap);

#endif
