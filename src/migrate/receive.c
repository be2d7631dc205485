/* The destination side of a migration (migrate.h): every frame from the
 * source is hostile until checked; the bundle it sends is checked whole
 * here, and again section by section when the VM is built from it. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "migrate/migrate.h"
#include "util/err.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/le.h"

static int accept_step(struct migrate_link *l)
{
    uint8_t version[4];
    put_le(version, MIGRATE_VERSION, 4);
    return migrate_send_frame(l, MIGRATE_ACCEPT, version, sizeof(version));
}

static int check_hello(struct migrate_link *l, const struct x86_cpuid_entry *host, size_t host_n)
{
    struct migrate_frame f;
    int r = migrate_recv_frame(l, MIGRATE_HELLO, &f);

    if (r < 0)
        return r;
    r = migrate_hello_check(f.payload, f.len, host, host_n);
    free(f.payload);
    return r < 0 ? r : accept_step(l);
}

/* The config the VM ran under must be one this host can run (memory,
 * CPUs) before its RAM comes. */
static int check_config(struct migrate_link *l, uint64_t *mem_bytes)
{
    struct migrate_frame f;
    struct vm_config cfg = {0};
    int r = migrate_recv_frame(l, MIGRATE_CONFIG, &f);

    if (r < 0)
        return r;
    r = vm_config_from_json((const char *)f.payload, &cfg);
    if (r == 0 && (r = vm_config_check(&cfg)) < 0)
        err_prefix("the VM cannot run on this host");
    *mem_bytes = cfg.mem_bytes;
    vm_config_release(&cfg);
    free(f.payload);
    return r < 0 ? r : accept_step(l);
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

/* RAM (live): a file of its size, sparse, in the scratch folder. */
static int open_ram(struct migrate_receive *rx, const struct migrate_frame *f, uint64_t mem_bytes)
{
    if (f->len != 8 || rx->memory_fd >= 0)
        return err_plain(EPROTO, "migration RAM frame out of place");
    uint64_t total = le64(f->payload);
    if (!total || total > mem_bytes || total % MIGRATE_PAGE)
        return err_plain(EPROTO, "migration RAM of %llu bytes for a VM of %llu",
                         (unsigned long long)total, (unsigned long long)mem_bytes);
    rx->memory_fd = open(rx->scratch_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (rx->memory_fd < 0)
        return err_set(errno, "a file in '%s' for the VM's RAM", rx->scratch_dir);
    if (ftruncate(rx->memory_fd, (off_t)total) < 0)
        return err_set(errno, "sizing the VM's RAM");
    /* All of it, now: the VM maps this file, and a page the source never
     * sent (zeros) that the guest touches there would take room then --
     * on a full file system (a tmpfs) a SIGBUS after the source has
     * stopped, the VM lost. Here a full one fails before any RAM moves. */
    int e = posix_fallocate(rx->memory_fd, 0, (off_t)total);
    if (e)
        return err_set(e, "no room for the VM's RAM (%llu MiB) in '%s'",
                       (unsigned long long)(total >> 20), rx->scratch_dir);
    rx->memory_bytes = total;
    return 0;
}

/* A write into the scratch folder failed (its file system full, most
 * likely): one line naming the folder the file without a name is in. */
static int scratch_failed(const struct migrate_receive *rx, int errnum, const char *what)
{
    return err_set(errnum, "writing the VM's %s into a file without a name in '%s'", what,
                   rx->scratch_dir);
}

static int write_pages(struct migrate_receive *rx, const struct migrate_frame *f)
{
    uint64_t at = f->len >= 8 ? le64(f->payload) : 0, len = f->len >= 8 ? f->len - 8 : 0;

    if (rx->memory_fd < 0 || f->len < 8 + MIGRATE_PAGE || len % MIGRATE_PAGE ||
        at % MIGRATE_PAGE || at > rx->memory_bytes || len > rx->memory_bytes - at)
        return err_plain(EPROTO, "migration PAGES frame out of place or outside the RAM");
    for (uint64_t done = 0; done < len;) {
        ssize_t n = pwrite(rx->memory_fd, f->payload + 8 + done, len - done, (off_t)(at + done));
        if (n <= 0)
            return scratch_failed(rx, n < 0 ? errno : EIO, "RAM");
        done += (uint64_t)n;
    }
    return 0;
}

/* OFFER: each layer this host has (rx->have_layer) is answered 1 in HAVE
 * and remembered: the bundle may list it without carrying it. */
static int answer_offer(struct migrate_receive *rx, struct migrate_link *l,
                        const struct migrate_frame *f)
{
    struct migrate_layer *offered = NULL;
    size_t n = 0;
    int r = migrate_offer_parse(f->payload, f->len, &offered, &n);
    uint8_t *answer = r == 0 ? calloc(1, 4 + n) : NULL;

    if (r == 0 && (!answer || !(rx->have = calloc(n ? n : 1, HASH_HEX))))
        r = err_set(ENOMEM, "migration offer");
    for (size_t i = 0; r == 0 && i < n; i++) {
        bool have = false;
        if (rx->have_layer && (r = rx->have_layer(offered[i].hash, offered[i].format, &have)) < 0)
            break;
        answer[4 + i] = have;
        if (have)
            memcpy(rx->have[rx->have_count++], offered[i].hash, HASH_HEX);
    }
    if (r == 0) {
        put_le(answer, n, 4);
        r = migrate_send_frame(l, MIGRATE_HAVE, answer, (uint32_t)(4 + n));
    }
    free(answer);
    free(offered);
    return r;
}

static int receive_data(struct migrate_receive *rx, struct migrate_link *l, uint64_t mem_bytes)
{
    bool offered = false;
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
            r = file_write_all(rx->bundle_fd, f.payload, f.len, "");
            if (r < 0)
                r = scratch_failed(rx, -r, "bundle");
        } else if (f.type == MIGRATE_OFFER && !size && !offered && rx->memory_fd < 0) {
            offered = true;
            r = answer_offer(rx, l, &f);
        } else if (f.type == MIGRATE_RAM && !size) {
            r = open_ram(rx, &f, mem_bytes);
        } else if (f.type == MIGRATE_PAGES && !size) {
            r = write_pages(rx, &f);
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

int migrate_receive_bundle(struct migrate_link *l, struct migrate_receive *rx)
{
    uint64_t mem_bytes = 0;
    int r = check_hello(l, rx->host, rx->host_n);

    rx->memory_fd = -1;
    rx->have = NULL;
    rx->have_count = 0;
    if (r == 0)
        r = check_config(l, &mem_bytes);
    if (r == 0)
        r = receive_data(rx, l, mem_bytes);
    if (r == 0 && rx->memory_fd >= 0 && fsync(rx->memory_fd) < 0)
        r = err_set(errno, "the VM's RAM");
    if (r < 0) {
        migrate_send_error(l, err_msg());
        if (rx->memory_fd >= 0)
            close(rx->memory_fd);
        rx->memory_fd = -1;
    }
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
