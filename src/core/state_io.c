/* The field visitor behind every device record (state_io.h). */
#include "core/state_io.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/memory.h"
#include "util/err.h"

static void fail(struct state_io *io, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void fail(struct state_io *io, const char *fmt, va_list ap)
{
    if (io->failed)
        return; /* the first failure is the one to report */
    io->failed = true;
    vsnprintf(io->why, sizeof(io->why), fmt, ap);
}

static void failf(struct state_io *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(struct state_io *io, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail(io, fmt, ap);
    va_end(ap);
}

bool state_failed(const struct state_io *io)
{
    return io->failed || (io->in && io->in->failed);
}

/* Restoring: whether the next field may be read; after a failure it is not,
 * and the field reads as 0. */
static bool readable(struct state_io *io, void *p, size_t len)
{
    if (!io->failed && !io->in->failed)
        return true;
    memset(p, 0, len);
    return false;
}

static void ended_early(struct state_io *io)
{
    if (io->in->failed)
        failf(io, "the record ends before its fields do");
}

#define STATE_INT(bits)                                                                  \
    void state_u##bits(struct state_io *io, uint##bits##_t *v)                           \
    {                                                                                    \
        if (!state_restoring(io)) {                                                      \
            blob_put_u##bits(io->out, *v);                                               \
            return;                                                                      \
        }                                                                                \
        if (readable(io, v, sizeof(*v))) {                                               \
            *v = blob_get_u##bits(io->in);                                               \
            ended_early(io);                                                             \
        }                                                                                \
    }
STATE_INT(8)
STATE_INT(16)
STATE_INT(32)
STATE_INT(64)

void state_bool(struct state_io *io, bool *v)
{
    uint8_t byte = *v;

    state_u8(io, &byte);
    if (!state_restoring(io))
        return;
    if (byte > 1) {
        failf(io, "a flag holds %u (0 or 1 expected)", byte);
        byte = 0;
    }
    *v = byte;
}

void state_u32_max(struct state_io *io, uint32_t *v, uint32_t max, const char *what)
{
    state_u32(io, v);
    if (state_restoring(io) && *v > max) {
        failf(io, "%s %u is more than %u", what, *v, max);
        *v = 0;
    }
}

void state_bytes(struct state_io *io, void *p, size_t len)
{
    if (!state_restoring(io)) {
        blob_put(io->out, p, len);
        return;
    }
    if (readable(io, p, len)) {
        blob_get(io->in, p, len);
        ended_early(io);
    }
}

void state_check(struct state_io *io, bool ok, const char *what, ...)
{
    va_list ap;

    if (!state_restoring(io) || ok)
        return;
    va_start(ap, what);
    fail(io, what, ap);
    va_end(ap);
}

void state_check_gpa(struct state_io *io, uint64_t gpa, uint64_t len, const char *what)
{
    state_check(io, !io->mem || gpa_ptr(io->mem, gpa, len) != NULL,
                "%s at 0x%llx (+0x%llx) is not guest RAM", what, (unsigned long long)gpa,
                (unsigned long long)len);
}

int state_io_run(const struct vm_state_desc *desc, void *opaque, struct state_io *io,
                 const char *name)
{
    int r = desc->state(opaque, io);

    if (r < 0) {
        err_prefix("%s (version %u)", name, io->version);
        return r;
    }
    if (!state_restoring(io))
        return 0;
    ended_early(io);
    if (!io->failed && io->in->left)
        failf(io, "%zu bytes after its fields", io->in->left);
    return io->failed ? err_plain(EINVAL, "%s (version %u): %s", name, io->version, io->why)
                      : 0;
}
