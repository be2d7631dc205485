/* The on-disk layout shared by the bundle writer, reader and memory codec. */
#ifndef SMOLVM_BUNDLE_FORMAT_H
#define SMOLVM_BUNDLE_FORMAT_H

#include <stdint.h>

#include "bundle/bundle.h"

#define BUNDLE_MAGIC "SMOLMACH"
#define BUNDLE_VERSION 1
#define BUNDLE_HEADER_SIZE 4096
#define BUNDLE_ALIGN 4096
#define SHA256_BYTES 32

/* Fixed part: magic[8] version u32 count u32 file_size u64. */
#define HEADER_FIXED 24
/* name[24] encoding u32 reserved u32 offset u64 stored u64 size u64 sha[32] */
#define ENTRY_SIZE 88
#define BUNDLE_MAX_SECTIONS ((BUNDLE_HEADER_SIZE - HEADER_FIXED - SHA256_BYTES) / ENTRY_SIZE)

struct bundle_section {
    char name[BUNDLE_NAME_MAX + 1];
    uint32_t encoding;
    uint64_t offset;
    uint64_t stored; /* bytes in the file */
    uint64_t size;   /* bytes once decoded */
    uint8_t sha256[SHA256_BYTES];
};

/* Memory section: an index, then chunk data.
 *   magic "SMOLMEM1", chunk_size u32 (a power of two, MEMORY_CHUNK_MIN to
 *   MEMORY_CHUNK_MAX), region_count u32,
 *   regions {gpa u64, size u64}..., chunks {offset u64, stored u32,
 *   kind u8, pad[3], sha256[32]}... in guest-address order.
 * The section table's hash covers the index; each chunk's hash its bytes. */
#define MEMORY_MAGIC "SMOLMEM1"
/* What a writer writes: a first start served as the guest touches RAM
 * reads, checks and decodes a whole chunk for each first touch of one, and
 * a guest touches about one 64 KiB window of each 512 KiB chunk before its
 * first output (bench/coldstart): smaller chunks hash and decode only that. */
#define MEMORY_CHUNK (64u << 10)
/* What a reader takes (bundles saved before 64 KiB chunks: 512 KiB). */
#define MEMORY_CHUNK_MIN (64u << 10) /* the index: at most 48 bytes per 64 KiB of RAM */
#define MEMORY_CHUNK_MAX (512u << 10)
#define MEMORY_CHUNK_ENTRY 48
enum memory_chunk_kind { CHUNK_ZERO = 0, CHUNK_ZSTD = 1, CHUNK_RAW = 2 };

#endif
