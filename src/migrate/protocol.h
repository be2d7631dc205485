/* The migration wire protocol: length-framed, checksummed frames over one
 * stream (TCP or a unix socket), read with a stall timeout so a link that
 * dies silently is a cut link too. docs/migration.md has the sequence.
 *
 *   frame  0  magic "SMGF"
 *          4  type (u16, enum migrate_frame_type)
 *          6  reserved (u16, zero)
 *          8  payload length (u32, at most what the type carries)
 *         12  check: CRC-32C of bytes 0..11 and the payload (from
 *             version 4, a PAGES frame's pages after its offset go into
 *             migrate_pages_sum() instead, XOR-ed in: migrate_frame_check)
 *         16  payload
 *
 * Every field little-endian. A reader refuses, with one message and
 * before using the payload: a bad magic, an unknown type, a length over
 * the type's bound, a bad checksum, a stream that ends mid-frame. */
#ifndef SMOLVM_MIGRATE_PROTOCOL_H
#define SMOLVM_MIGRATE_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "arch/x86/cpuid.h"
#include "util/hash.h"

/* 2: OFFER/HAVE (layers the destination has are not sent). 3: PART (what
 * cannot change while the VM runs -- its kernel and initrd -- goes before
 * the pause). 4: PAGES' pages checked by a sum of 64-bit words, not
 * CRC-32C (in an emulated CPU -- a nested, TCG host -- CRC-32C ran at
 * ~27 MB/s, each side, and was most of a migration's time). A
 * destination takes every older source (a version 1 one offers nothing,
 * a version 2 one sends DATA only, up to 3 PAGES go under CRC-32C); an
 * older destination refuses a newer source with one line naming both
 * versions. */
#define MIGRATE_VERSION 4
#define MIGRATE_PAGES_SUMMED 4 /* the first version whose PAGES are summed */
#define MIGRATE_HEADER 16
#define MIGRATE_DATA_MAX (1u << 20) /* bytes of the bundle per DATA frame */
#define MIGRATE_CPUID_MAX 512
#define MIGRATE_PAGE 4096
#define MIGRATE_PAGES_MAX 255 /* pages per PAGES frame */
#define MIGRATE_STALL_MS 20000 /* a link silent this long is cut */
#define MIGRATE_LAYERS_MAX 256 /* layers per OFFER */
#define MIGRATE_LAYER_ENTRY 65 /* 64 hex digits of SHA-256, a format byte */

enum migrate_frame_type {
    MIGRATE_HELLO = 1,  /* source: u32 version, u32 n, n CPUID entries (6 x u32) */
    MIGRATE_ACCEPT = 2, /* destination: u32 version; the source may go on */
    MIGRATE_CONFIG = 3, /* source: the VM's config (JSON), checked before RAM moves */
    MIGRATE_DATA = 4,   /* source: the next bytes of the VM's bundle */
    MIGRATE_END = 5,    /* source: u64 bundle size, its SHA-256 */
    MIGRATE_READY = 6,  /* destination: the VM is built (not running) */
    MIGRATE_GO = 7,     /* source: stopped for good; run it */
    MIGRATE_DONE = 8,   /* destination: running */
    MIGRATE_ERROR = 9,  /* either side: a one-line reason, then the link closes */
    MIGRATE_RAM = 10,   /* source, live: u64 bytes of guest RAM (regions end to end) */
    MIGRATE_PAGES = 11, /* source, live: u64 offset into that RAM, whole pages */
    MIGRATE_OFFER = 12, /* source: u32 n, n layers of its disks' chains (MIGRATE_LAYER_ENTRY) */
    MIGRATE_HAVE = 13,  /* destination: u32 n, n bytes, 1 for each offered layer it has */
    MIGRATE_PART = 14,  /* source: u64 offset into the bundle, the bytes there (version 3) */
};

/* Offsets of PART are below this (1 TiB): a bundle is no larger. */
#define MIGRATE_BUNDLE_MAX (1ull << 40)

struct migrate_frame {
    enum migrate_frame_type type;
    uint32_t len;
    uint8_t *payload; /* malloc'd, len bytes (plus a NUL) */
};

/* Where a link's time went (seconds), counted as frames pass: what a
 * slow migration is traced by (the source's --json "link", the
 * destination's $SMOLVM_MIGRATE_STATS). waiting: in poll() for the peer
 * (its bytes, or room in the socket); io: in read()/write(); crc: the
 * checksums. */
struct migrate_link_stats {
    double waiting, io, crc;
    uint64_t frames, bytes;
};

/* The two ends of a link: in and out are the same socket but for tests
 * and the fuzzer. stall_ms: how long a read or write may wait. */
struct migrate_link {
    int in, out;
    int stall_ms;
    /* The protocol version both speak, once HELLO said it (the source's:
     * a destination takes older ones): how PAGES are checked. 0 until then. */
    unsigned version;
    struct migrate_link_stats stats;
};

/* CRC-32C (Castagnoli) of len bytes, continued from crc (0 to begin):
 * the CPU's instruction where it has one. */
uint32_t migrate_crc32c(uint32_t crc, const void *data, size_t len);
/* The same from a table on any CPU (tests hold the two against each other). */
uint32_t migrate_crc32c_portable(uint32_t crc, const void *data, size_t len);

/* Version 4's check of a PAGES frame's pages (len bytes): two sums mod
 * 2^64, lane by lane, of the pages as 16-byte words of two little-endian
 * u64 (the last padded with zeros): a += word, b += a -- b weighs each
 * word by its place -- mixed and folded to 32 bits. What an emulated CPU adds as
 * fast as it copies, where CRC-32C is a helper a bit at a time. */
uint32_t migrate_pages_sum(const void *pages, size_t len);
/* A frame's check field (header: its first 12 bytes) under version. */
uint32_t migrate_frame_check(unsigned version, const uint8_t *header, const void *payload,
                             uint32_t len);

/* The frame's name ("HELLO"), or NULL for an unknown type. */
const char *migrate_frame_name(uint32_t type);

/* Checks a frame's 16-byte header: 0 with *type and *len set, or a
 * negative errno with the message set (bad magic, unknown type, too long
 * for its type). */
int migrate_header_parse(const uint8_t header[MIGRATE_HEADER], enum migrate_frame_type *type,
                         uint32_t *len) __attribute__((warn_unused_result));
/* Header and payload into out (MIGRATE_HEADER + len bytes), checked as
 * MIGRATE_VERSION checks. */
void migrate_frame_encode(uint8_t *out, enum migrate_frame_type type, const void *payload,
                          uint32_t len);

/* A write that fails as the peer hangs up (EPIPE, ECONNRESET) takes the
 * ERROR it sent before it did, if one comes within 1 s, as the message. */
int migrate_send_frame(struct migrate_link *l, enum migrate_frame_type type, const void *payload,
                       uint32_t len) __attribute__((warn_unused_result));
/* The same, its payload in pieces (at most 4), written as they are:
 * nothing copied. */
int migrate_send_framev(struct migrate_link *l, enum migrate_frame_type type,
                        const struct iovec *payload, int count) __attribute__((warn_unused_result));
/* The next frame, checked whole (out->payload freed with free()). A frame
 * of another type than expect (0: any) is an error, but for ERROR, whose
 * text becomes the message. */
int migrate_recv_frame(struct migrate_link *l, enum migrate_frame_type expect,
                       struct migrate_frame *out) __attribute__((warn_unused_result));
/* Where a PAGES frame's pages go: *to, len bytes for RAM offset at; or a
 * negative errno with the message set when they do not fit the RAM. */
typedef int (*migrate_place_fn)(void *opaque, uint64_t at, uint64_t len, uint8_t **to);
/* As migrate_recv_frame(expect 0), but a PAGES frame's pages are read
 * straight into place(opaque, offset, bytes) -- its offset checked by
 * place before a page is read -- and not kept in out (out->payload
 * NULL): RAM is copied once, from the socket. Their checksum is checked
 * after; a frame that fails it leaves its bytes in that RAM, which the
 * caller then drops. */
int migrate_recv_frame_placing(struct migrate_link *l, migrate_place_fn place, void *opaque,
                               struct migrate_frame *out) __attribute__((warn_unused_result));
/* An ERROR frame with message, best effort; the current message stays
 * (a send that fails does not replace it). */
void migrate_send_error(struct migrate_link *l, const char *message);
/* After an ERROR, before the close: no more writes, and what the peer
 * still sends read and dropped until it hangs up (at most 2 s), so the
 * close is no reset that might lose the ERROR on its way. */
void migrate_linger(struct migrate_link *l);
/* For a side that only sends (the source streaming the VM): 0 while the
 * peer has said nothing; its ERROR (or its hang-up) as the message once
 * it has, so the source stops at once and says what the peer said. */
int migrate_peer_check(struct migrate_link *l) __attribute__((warn_unused_result));

/* HELLO's payload: malloc'd into *out. */
int migrate_hello_encode(const struct x86_cpuid_entry *cpuid, size_t n, uint8_t **out,
                         uint32_t *len) __attribute__((warn_unused_result));
/* Checks a HELLO against this host: the version, then every CPU feature
 * the source's guest may use (host: this host's table); the first one
 * missing is named. */
int migrate_hello_check(const uint8_t *payload, uint32_t len, const struct x86_cpuid_entry *host,
                        size_t host_n) __attribute__((warn_unused_result));

/* A layer of a disk's chain as OFFER names it: its bytes' SHA-256 (the
 * name it has in a layer folder) and its format. */
struct migrate_layer {
    char hash[HASH_HEX];
    char format[8]; /* raw or qcow2 */
};

/* OFFER's payload: malloc'd into *out. */
int migrate_offer_encode(const struct migrate_layer *layers, size_t n, uint8_t **out,
                         uint32_t *len) __attribute__((warn_unused_result));
/* Checks an OFFER whole (count, hex hashes, formats): its layers
 * malloc'd into *out. */
int migrate_offer_parse(const uint8_t *payload, uint32_t len, struct migrate_layer **out,
                        size_t *n) __attribute__((warn_unused_result));
/* Checks a HAVE answering an OFFER of n layers: have[i] (n bools) set. */
int migrate_have_parse(const uint8_t *payload, uint32_t len, size_t n, bool *have)
    __attribute__((warn_unused_result));

#endif
