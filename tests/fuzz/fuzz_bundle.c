/* libFuzzer target: a .smolmachine from nowhere. Opens the bytes as a
 * bundle, reads every section it names, parses the config and loads the
 * memory section into a small guest RAM, with and without the mapped
 * cache, extracts its disk (streamed) and checks its signature against a
 * fixed key (the seed is signed with it). Nothing may crash, hang or read out of bounds.
 * FUZZ_BUNDLE_SEED=PATH writes a valid seed bundle to PATH and exits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <nettle/eddsa.h>

#include "bundle/bundle.h"
#include "machine/cache.h"
#include "bundle/signature.h"
#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define RAM (1u << 20)

static struct guest_memory ram;
static char cache_dir[] = "/tmp/smolvm-fuzz-cache-XXXXXX";
static char key_path[64], pub_path[64];

/* A fixed key pair (private key all 0x01), so the seed's signature holds
 * from run to run. */
static void write_keys(void)
{
    uint8_t priv[ED25519_KEY_SIZE], pub[ED25519_KEY_SIZE];
    FILE *k, *p;
    memset(priv, 1, sizeof(priv));
    ed25519_sha512_public_key(pub, priv);
    snprintf(key_path, sizeof(key_path), "%s/k.key", cache_dir);
    snprintf(pub_path, sizeof(pub_path), "%s/k.pub", cache_dir);
    k = fopen(key_path, "w");
    p = fopen(pub_path, "w");
    if (!k || !p)
        abort();
    for (size_t i = 0; i < sizeof(priv); i++) {
        fprintf(k, "%02x", priv[i]);
        fprintf(p, "%02x", pub[i]);
    }
    for (size_t i = 0; i < sizeof(pub); i++) /* a private key carries its public key */
        fprintf(k, "%02x", pub[i]);
    fputc('\n', k);
    fputc('\n', p);
    fclose(k);
    fclose(p);
}

static void write_seed(const char *path)
{
    struct bundle_writer *w;
    static const char config[] = "{\"cpus\": 1, \"mem_bytes\": 16777216}";

    memset(ram.regions[0].host + 4096, 0x5a, 3000);
    if (bundle_writer_open(path, &w) < 0 ||
        bundle_add(w, "config", config, strlen(config), BUNDLE_RAW) < 0 ||
        bundle_add(w, "state", "state", 5, BUNDLE_ZSTD) < 0 ||
        bundle_add(w, "disk.0", ram.regions[0].host, 16384, BUNDLE_ZSTD) < 0 ||
        bundle_add_memory(w, "memory", &ram, NULL, NULL) < 0 || bundle_sign(w, key_path) < 0 ||
        bundle_writer_commit(w) < 0)
        exit(1);
    exit(0);
}

static void remove_cache(void)
{
    char cmd[80];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cache_dir);
    if (system(cmd) != 0) {
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct guest_region layout = {0, RAM, NULL};
    const char *seed = getenv("FUZZ_BUNDLE_SEED");
    (void)argc;
    (void)argv;

    if (guest_memory_alloc(&ram, &layout, 1) < 0 || !mkdtemp(cache_dir))
        abort();
    atexit(remove_cache);
    write_keys();
    if (seed)
        write_seed(seed);
    return 0;
}

static void read_sections(struct bundle *b)
{
    static const char *const names[] = {"config", "kernel", "initrd", "state", "memory"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        uint8_t *bytes;
        size_t len;
        if (bundle_read(b, names[i], &bytes, &len) < 0)
            continue;
        if (i == 0) {
            struct vm_config cfg;
            if (vm_config_from_json((const char *)bytes, &cfg) == 0)
                vm_config_release(&cfg);
        }
        free(bytes);
    }
}

/* The memory decoded as a first start serves it: chunk by chunk, a
 * window (64 KiB) further at a time. */
static void decode_in_windows(const struct bundle *b)
{
    static uint8_t chunk[512u << 10];
    struct bundle_memory_image *img;
    struct bundle_chunk_decoder *d;

    if (bundle_memory_image_read(b, "memory", &ram, &img) < 0)
        return;
    if (bundle_chunk_decoder_new(&d) == 0) {
        for (size_t i = 0; i < bundle_memory_image_chunks(img); i++) {
            uint64_t at;
            size_t len, ready = 0;
            uint8_t *host;
            bool zero;
            bundle_memory_image_place(img, i, &at, &len, &host);
            if (len > sizeof(chunk) || bundle_memory_image_begin(img, d, i, chunk, &zero) < 0)
                continue;
            for (size_t upto = 0; ready < len; upto += 64u << 10) /* ends: all, or corrupt */
                if (bundle_chunk_decode_to(d, upto < len ? upto : len, &ready) < 0)
                    break;
        }
        bundle_chunk_decoder_free(d);
    }
    bundle_memory_image_free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    struct bundle *b;
    int fd = memfd_create("bundle", 0);

    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (bundle_open(path, &b) == 0) {
        read_sections(b);
        (void)bundle_load_memory(b, "memory", &ram);
        decode_in_windows(b);
        /* The cache keys on the section hash: a fresh folder each time
         * would be slow; stale entries are what a real cache meets too. */
        (void)machine_memory_cache(b, "memory", &ram, cache_dir, MEMORY_CACHE_COPY);
        char disk[96];
        snprintf(disk, sizeof(disk), "%s/disk", cache_dir);
        if (bundle_extract(b, "disk.0", disk) == 0)
            unlink(disk);
        (void)bundle_check_signature(b, pub_path);
        bundle_close(b);
    }
    close(fd);
    return 0;
}
