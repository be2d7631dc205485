/* The destination side of a migration (migrate.h): every frame from the
 * source is hostile until checked; the bundle it sends is checked whole
 * here, and again section by section when the VM is built from it. */
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "migrate/migrate.h"
#include "util/err.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/le.h"

static int check_hello(struct migrate_link *l, const struct x86_cpuid_entry *host, size_t host_n)
{
    struct migrate_frame f;
    uint8_t version[4];
    int r = migrate_recv_frame(l, MIGRATE_HELLO, &f);

    if (r < 0)
        return r;
    r = migrate_hello_check(f.payload, f.len, host, host_n);
    free(f.payload);
    if (r < 0)
        return r;
    put_le(version, MIGRATE_VERSION, 4);
    return migrate_send_frame(l, MIGRATE_ACCEPT, version, sizeof(version));
}

/* The config the VM ran under must be one this host can run (memory,
 * CPUs) before its RAM comes. */
static int check_config(struct migrate_link *l)
{
    struct migrate_frame f;
    struct vm_config cfg = {0};
    int r = migrate_recv_frame(l, MIGRATE_CONFIG, &f);

    if (r < 0)
        return r;
    r = vm_config_from_json((const char *)f.payload, &cfg);
    if (r == 0 && (r = vm_config_check(&cfg)) < 0)
        err_prefix("the VM cannot run on this host");
    vm_config_release(&cfg);
    free(f.payload);
    return r;
}

static int check_end(const struct migrate_frame *f, uint64_t size, struct hash_state *h)
{
    uint8_t digest[HASH_BYTES];

    if (f->len != 8 + HASH_BYTES)
        return err_plain(EPROTO, "migration END of %u bytes", f->len);
    if (le64(f->payload) != size)
        return err_plain(EPROTO, "the source sent %llu bytes of the VM but says %llu",
                         (unsigned long long)size, (unsigned long long)le64(f->payload));
    hash_end(h, digest);
    if (memcmp(digest, f->payload + 8, HASH_BYTES))
        return err_plain(EPROTO, "the VM's bundle arrived corrupt (its SHA-256 differs)");
    return 0;
}

static int receive_data(struct migrate_link *l, int bundle_fd)
{
    struct hash_state h;
    uint64_t size = 0;

    hash_begin(&h);
    for (;;) {
        struct migrate_frame f;
        int r = migrate_recv_frame(l, 0, &f);
        if (r < 0)
            return r;
        if (f.type == MIGRATE_DATA) {
            hash_add(&h, f.payload, f.len);
            size += f.len;
            r = file_write_all(bundle_fd, f.payload, f.len, "the received VM");
        } else if (f.type == MIGRATE_END) {
            r = check_end(&f, size, &h);
            if (r == 0) {
                free(f.payload);
                return 0;
            }
        } else {
            r = err_plain(EPROTO, "migration frame %s where DATA or END was due",
                          migrate_frame_name(f.type));
        }
        free(f.payload);
        if (r < 0)
            return r;
    }
}

int migrate_receive_bundle(struct migrate_link *l, const struct x86_cpuid_entry *host,
                           size_t host_n, int bundle_fd)
{
    int r = check_hello(l, host, host_n);
    if (r == 0)
        r = check_config(l);
    if (r == 0)
        r = receive_data(l, bundle_fd);
    if (r < 0)
        migrate_send_error(l, err_msg());
    return r;
}

int migrate_receive_commit(struct migrate_link *l)
{
    struct migrate_frame f;
    int r = migrate_send_frame(l, MIGRATE_READY, NULL, 0);

    if (r == 0 && (r = migrate_recv_frame(l, MIGRATE_GO, &f)) == 0)
        free(f.payload);
    /* After GO the source has stopped for good: the VM runs here even if
     * DONE cannot reach it. */
    if (r == 0 && migrate_send_frame(l, MIGRATE_DONE, NULL, 0) < 0)
        err_clear();
    return r;
}
