/* The source side of a warm migration (migrate.h): hello, config, then
 * the paused VM as a bundle (device state, RAM in the bundle's chunk
 * codec, disks), then the two-step hand-over. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hv/hv.h"
#include "migrate/link.h"
#include "migrate/migrate.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/le.h"

/* The destination builds the VM (unpacks RAM, disks) before READY. */
#define BUILD_WAIT_MS 300000

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Version and CPU first, then the config: a destination that cannot take
 * the VM says so before it is paused. */
static int handshake(struct migrate_link *l, struct machine *m)
{
    struct x86_cpuid_entry *cpuid;
    struct migrate_frame f;
    size_t n;
    uint8_t *hello;
    uint32_t len;
    int r = hv_host_cpuid(&cpuid, &n);

    if (r < 0)
        return r;
    r = migrate_hello_encode(cpuid, n, &hello, &len);
    free(cpuid);
    if (r < 0)
        return r;
    r = migrate_send_frame(l, MIGRATE_HELLO, hello, len);
    free(hello);
    if (r == 0 && (r = migrate_recv_frame(l, MIGRATE_ACCEPT, &f)) == 0)
        free(f.payload);
    if (r < 0)
        return r;
    char *json = vm_config_to_json(vm_config(machine_vm(m)));
    r = json ? migrate_send_frame(l, MIGRATE_CONFIG, json, (uint32_t)strlen(json))
             : err_set(ENOMEM, "migration config");
    free(json);
    return r;
}

/* Sleeps as long as sending sent bytes since start takes at rate. */
static void pace(uint64_t sent, double start, uint64_t rate)
{
    if (!rate)
        return;
    double due = start + (double)sent / (double)rate, wait = due - now();
    if (wait > 0) {
        struct timespec t = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&t, NULL);
    }
}

static int send_bundle(struct migrate_link *l, const char *path,
                       const struct migrate_send_options *o, uint64_t *sent)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t total = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);
    uint8_t *buf = malloc(MIGRATE_DATA_MAX), end[8 + HASH_BYTES];
    struct hash_state h;
    double start = now();
    int r = fd < 0 || total < 0 ? err_set(errno, "reading '%s'", path)
            : buf              ? 0
                               : err_set(ENOMEM, "migration");

    hash_begin(&h);
    for (*sent = 0; r == 0 && *sent < (uint64_t)total;) {
        ssize_t n = pread(fd, buf, MIGRATE_DATA_MAX, (off_t)*sent);
        if (n <= 0) {
            r = err_set(n < 0 ? errno : EIO, "reading '%s'", path);
            break;
        }
        hash_add(&h, buf, (size_t)n);
        r = migrate_send_frame(l, MIGRATE_DATA, buf, (uint32_t)n);
        *sent += (uint64_t)n;
        if (o->progress)
            o->progress(o->opaque, *sent, (uint64_t)total);
        pace(*sent, start, o->max_bandwidth);
    }
    if (r == 0) {
        put_le(end, (uint64_t)total, 8);
        hash_end(&h, end + 8);
        r = migrate_send_frame(l, MIGRATE_END, end, sizeof(end));
    }
    free(buf);
    if (fd >= 0)
        close(fd);
    return r;
}

/* READY (the VM is built there), GO (from here on the VM is theirs),
 * DONE. *committed: GO went out, so m must never run again. */
static int hand_over(struct migrate_link *l, bool *committed)
{
    struct migrate_frame f;
    int stall = l->stall_ms, r;

    l->stall_ms = BUILD_WAIT_MS;
    r = migrate_recv_frame(l, MIGRATE_READY, &f);
    l->stall_ms = stall;
    if (r < 0)
        return r;
    free(f.payload);
    if ((r = migrate_send_frame(l, MIGRATE_GO, NULL, 0)) < 0)
        return r;
    *committed = true;
    if ((r = migrate_recv_frame(l, MIGRATE_DONE, &f)) < 0) {
        err_prefix("told the destination to run, then");
        return r;
    }
    free(f.payload);
    return 0;
}

static int save_and_send(struct migrate_link *l, struct machine *m,
                         const struct migrate_send_options *o, uint64_t *sent, bool *committed)
{
    struct machine_save_options so = {.with_state = true};
    char *path;
    int r;

    if (asprintf(&path, "%s/migrate-%d.smolmachine", o->scratch_dir, (int)getpid()) < 0)
        return err_set(ENOMEM, "migration");
    r = machine_save(m, path, &so);
    if (r == 0)
        r = send_bundle(l, path, o, sent);
    unlink(path);
    free(path);
    return r == 0 ? hand_over(l, committed) : r;
}

int migrate_send(struct machine *m, const struct migrate_send_options *o,
                 struct migrate_send_result *res)
{
    struct vm *vm = machine_vm(m);
    struct migrate_link l = {.stall_ms = MIGRATE_STALL_MS};
    bool was_paused = vm_paused(vm), committed = false;
    double start = now(), paused_at;
    int r, fd = migrate_connect(o->to);

    memset(res, 0, sizeof(*res));
    if (fd < 0)
        return fd;
    l.in = l.out = fd;
    r = handshake(&l, m);
    paused_at = now();
    if (r == 0)
        r = vm_pause(vm);
    if (r == 0) {
        r = save_and_send(&l, m, o, &res->bytes, &committed);
        if (r < 0 && !committed)
            migrate_send_error(&l, err_msg());
        if (r < 0 && committed)
            err_prefix("the VM stays paused here (it may run there)");
        else if (r < 0 && !was_paused)
            vm_resume(vm);
    }
    close(fd);
    res->seconds = now() - start;
    res->downtime = now() - paused_at;
    return r;
}
