/* Frames of the migration protocol (protocol.h): encoding, checking,
 * reading and writing them with a stall timeout. */
#include "migrate/protocol.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/le.h"

#define MAGIC 0x46474d53u /* "SMGF" */
#define ERROR_TEXT_MAX 1024
#define CONFIG_MAX (1u << 20)
#define PEER_REASON_MS 1000 /* a peer that hung up: its ERROR, if it comes this soon */
#define LINGER_MS 2000      /* after our ERROR: the peer's bytes read and dropped */

static const struct {
    const char *name;
    uint32_t max; /* payload bytes */
} types[] = {
    [MIGRATE_HELLO] = {"HELLO", 8 + MIGRATE_CPUID_MAX * 24},
    [MIGRATE_ACCEPT] = {"ACCEPT", 4},
    [MIGRATE_CONFIG] = {"CONFIG", CONFIG_MAX},
    [MIGRATE_DATA] = {"DATA", MIGRATE_DATA_MAX},
    [MIGRATE_END] = {"END", 8 + 32},
    [MIGRATE_READY] = {"READY", 0},
    [MIGRATE_GO] = {"GO", 0},
    [MIGRATE_DONE] = {"DONE", 0},
    [MIGRATE_ERROR] = {"ERROR", ERROR_TEXT_MAX},
    [MIGRATE_RAM] = {"RAM", 8},
    [MIGRATE_PAGES] = {"PAGES", 8 + MIGRATE_PAGES_MAX * MIGRATE_PAGE},
    [MIGRATE_OFFER] = {"OFFER", 4 + MIGRATE_LAYERS_MAX * MIGRATE_LAYER_ENTRY},
    [MIGRATE_HAVE] = {"HAVE", 4 + MIGRATE_LAYERS_MAX},
    [MIGRATE_PART] = {"PART", 8 + MIGRATE_DATA_MAX},
};

/* Byte by byte, from a table: any CPU. */
static uint32_t crc32c_table(uint32_t crc, const uint8_t *p, size_t len)
{
    static uint32_t table[256];

    if (!table[1]) /* built once; racing builders write the same values */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
            table[i] = c;
        }
    for (size_t i = 0; i < len; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
/* SSE4.2's crc32 instruction (CRC-32C), 8 bytes a step: every frame's
 * payload is checked on both sides, up to 1 MiB a frame, and the table's
 * byte a step held a live migration's round 0 to a few MB/s in a nested
 * (TCG) host, where each table lookup is several emulated instructions. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
                                                                 size_t len)
{
    uint64_t c = crc, word;

    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
    }
    crc = (uint32_t)c;
    for (; len; p++, len--)
        crc = __builtin_ia32_crc32qi(crc, *p);
    return crc;
}

static bool have_sse42(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}
#endif

uint32_t migrate_crc32c(uint32_t crc, const void *data, size_t len)
{
#if defined(__x86_64__)
    if (have_sse42()) /* no cached answer: __builtin_cpu_init runs once */
        return ~crc32c_sse42(~crc, data, len);
#endif
    return ~crc32c_table(~crc, data, len);
}

/* Tests only (protocol.h): the table's answer, whatever the CPU. */
uint32_t migrate_crc32c_portable(uint32_t crc, const void *data, size_t len)
{
    return ~crc32c_table(~crc, data, len);
}

/* splitmix64's finalizer: every bit of z moves about half of the result. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ z >> 27) * 0x94d049bb133111ebull;
    return z ^ z >> 31;
}

uint32_t migrate_pages_sum(const void *pages, size_t len)
{
    typedef uint64_t lanes __attribute__((vector_size(16)));
    const uint8_t *p = pages;
    lanes a = {0, 0}, b = {0, 0}, w;

    for (; len >= 16; p += 16, len -= 16) {
        memcpy(&w, p, 16);
        a += w;
        b += a;
    }
    if (len) {
        uint8_t last[16] = {0};
        memcpy(last, p, len);
        memcpy(&w, last, 16);
        a += w;
        b += a;
    }
    /* Chained through a mixer, not added: a change in one sum and one in
     * another cannot cancel out (a bit flipped in a page moves the top
     * bit of both of its lane's sums). */
    uint64_t x = mix64(mix64(mix64(mix64(a[0]) ^ a[1]) ^ b[0]) ^ b[1]);
    return (uint32_t)(x ^ x >> 32);
}

/* From version 4 a PAGES frame's pages (after its u64 offset) are summed. */
static bool pages_summed(unsigned version, uint32_t type, uint64_t len)
{
    return version >= MIGRATE_PAGES_SUMMED && type == MIGRATE_PAGES && len >= 8;
}

uint32_t migrate_frame_check(unsigned version, const uint8_t *header, const void *payload,
                             uint32_t len)
{
    uint32_t crc = migrate_crc32c(0, header, 12);

    if (!pages_summed(version, le16(header + 4), len))
        return migrate_crc32c(crc, payload, len);
    return migrate_crc32c(crc, payload, 8) ^
           migrate_pages_sum((const uint8_t *)payload + 8, len - 8);
}

const char *migrate_frame_name(uint32_t type)
{
    return type < sizeof(types) / sizeof(types[0]) ? types[type].name : NULL;
}

int migrate_header_parse(const uint8_t h[MIGRATE_HEADER], enum migrate_frame_type *type,
                         uint32_t *len)
{
    uint32_t t = le16(h + 4), n = le32(h + 8);
    const char *name = migrate_frame_name(t);

    if (le32(h) != MAGIC)
        return err_plain(EPROTO, "not a smolvm migration stream (bad frame magic)");
    if (!name)
        return err_plain(EPROTO, "unknown migration frame type %u", t);
    if (le16(h + 6))
        return err_plain(EPROTO, "migration frame %s has reserved bits set", name);
    if (n > types[t].max)
        return err_plain(EPROTO, "migration frame %s of %u bytes (at most %u)", name, n,
                         types[t].max);
    *type = (enum migrate_frame_type)t;
    *len = n;
    return 0;
}

/* All but the checksum. */
static void header_encode(uint8_t *h, enum migrate_frame_type type, uint32_t len)
{
    put_le(h, MAGIC, 4);
    put_le(h + 4, type, 2);
    put_le(h + 6, 0, 2);
    put_le(h + 8, len, 4);
}

void migrate_frame_encode(uint8_t *out, enum migrate_frame_type type, const void *payload,
                          uint32_t len)
{
    header_encode(out, type, len);
    if (len)
        memcpy(out + MIGRATE_HEADER, payload, len);
    put_le(out + 12, migrate_frame_check(MIGRATE_VERSION, out, out + MIGRATE_HEADER, len), 4);
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Waits until fd is ready for events, at most the link's stall time. */
static int wait_ready(struct migrate_link *l, int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    double t0 = seconds();
    int n;

    do
        n = poll(&p, 1, l->stall_ms);
    while (n < 0 && errno == EINTR);
    l->stats.waiting += seconds() - t0;
    if (n < 0)
        return err_set(errno, "migration link");
    if (n == 0)
        return err_plain(ETIMEDOUT, "the migration link stalled for %d s", l->stall_ms / 1000);
    return 0;
}

static int read_exact(struct migrate_link *l, uint8_t *buf, size_t len, bool mid_frame)
{
    for (size_t done = 0; done < len;) {
        int r = wait_ready(l, l->in, POLLIN);
        if (r < 0)
            return r;
        double t0 = seconds();
        ssize_t n = read(l->in, buf + done, len - done);
        l->stats.io += seconds() - t0;
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return err_set(errno, "the migration link was cut");
        if (n == 0)
            return err_plain(ECONNRESET, "the migration link was closed%s",
                             done || mid_frame ? " in the middle of a frame" : "");
        done += (size_t)n;
    }
    return 0;
}

/* The pieces past the n bytes already written. */
static int iov_advance(struct iovec *iov, int count, size_t n)
{
    int i = 0;
    for (; i < count && n >= iov[i].iov_len; i++)
        n -= iov[i].iov_len;
    if (i < count) {
        iov[i].iov_base = (uint8_t *)iov[i].iov_base + n;
        iov[i].iov_len -= n;
    }
    return i;
}

static int write_exactv(struct migrate_link *l, struct iovec *iov, int count)
{
    for (int at = 0; at < count;) {
        int r = wait_ready(l, l->out, POLLOUT);
        if (r < 0)
            return r;
        /* A peer gone is an error here, never a SIGPIPE. */
        struct msghdr m = {.msg_iov = iov + at, .msg_iovlen = (size_t)(count - at)};
        double t0 = seconds();
        ssize_t n = sendmsg(l->out, &m, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = writev(l->out, iov + at, count - at);
        l->stats.io += seconds() - t0;
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return err_set(errno, "the migration link was cut");
        at += iov_advance(iov + at, count - at, (size_t)n);
    }
    return 0;
}

/* A peer that hung up mid-stream usually said why first (an ERROR it
 * sent before closing): that reason, rather than the bare reset. */
static int why_cut(struct migrate_link *l, int r)
{
    struct pollfd p = {.fd = l->in, .events = POLLIN};
    struct migrate_frame f;
    char cut[256];

    if ((r != -EPIPE && r != -ECONNRESET) || l->in < 0 || poll(&p, 1, PEER_REASON_MS) != 1)
        return r;
    snprintf(cut, sizeof(cut), "%s", err_msg());
    int said = migrate_recv_frame(l, MIGRATE_ERROR, &f);
    if (said == -ECANCELED)
        return said;
    if (said == 0)
        free(f.payload);
    return err_plain(-r, "%s", cut);
}

/* The frame's pieces after its header; a summed PAGES frame's offset a
 * piece of its own (split off the first), its pages the one after. */
static int frame_pieces(bool summed, const struct iovec *payload, int count, struct iovec *iov)
{
    int n = 0;

    for (int i = 0; i < count; i++) {
        if (summed && i == 0 && payload[0].iov_len > 8) {
            iov[n++] = (struct iovec){payload[0].iov_base, 8};
            iov[n++] = (struct iovec){(uint8_t *)payload[0].iov_base + 8, payload[0].iov_len - 8};
        } else {
            iov[n++] = payload[i];
        }
    }
    if (summed && (n != 2 || iov[0].iov_len != 8))
        return err_plain(EINVAL, "migration PAGES in pieces other than its offset and pages");
    return n;
}

int migrate_send_framev(struct migrate_link *l, enum migrate_frame_type type,
                        const struct iovec *payload, int count)
{
    struct iovec iov[6] = {{0}};
    uint8_t h[MIGRATE_HEADER];
    uint64_t len = 0;
    double t0 = seconds();

    if (count > 4)
        return err_plain(EINVAL, "migration frame in %d pieces", count);
    for (int i = 0; i < count; i++)
        len += payload[i].iov_len;
    if (len > UINT32_MAX)
        return err_plain(EINVAL, "migration frame of %llu bytes", (unsigned long long)len);
    bool summed = pages_summed(l->version, type, len);
    int n = frame_pieces(summed, payload, count, iov + 1);
    if (n < 0)
        return n;
    header_encode(h, type, (uint32_t)len);
    iov[0] = (struct iovec){h, sizeof(h)};
    uint32_t crc = migrate_crc32c(0, h, 12), sum = 0;
    for (int i = 1; i <= n; i++) {
        if (summed && i == 2)
            sum = migrate_pages_sum(iov[i].iov_base, iov[i].iov_len);
        else
            crc = migrate_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
    }
    put_le(h + 12, crc ^ sum, 4);
    l->stats.crc += seconds() - t0;
    l->stats.frames++;
    l->stats.bytes += sizeof(h) + len;
    int r = write_exactv(l, iov, 1 + n);
    return r < 0 ? why_cut(l, r) : 0;
}

int migrate_send_frame(struct migrate_link *l, enum migrate_frame_type type, const void *payload,
                       uint32_t len)
{
    struct iovec iov = {(void *)payload, len};
    return migrate_send_framev(l, type, &iov, len ? 1 : 0);
}

int migrate_peer_check(struct migrate_link *l)
{
    struct pollfd p = {.fd = l->in, .events = POLLIN};
    struct migrate_frame f;

    if (poll(&p, 1, 0) != 1)
        return 0;
    int r = migrate_recv_frame(l, MIGRATE_ERROR, &f);
    if (r == 0) /* an empty ERROR */
        r = err_plain(ECANCELED, "the other side refused");
    return r;
}

void migrate_linger(struct migrate_link *l)
{
    uint8_t sink[65536];
    struct pollfd p = {.fd = l->in, .events = POLLIN};
    struct timespec t;

    /* Our ERROR goes out first, and no reset (which may drop it) comes of
     * the bytes the peer sent that nobody will read. */
    shutdown(l->out, SHUT_WR);
    clock_gettime(CLOCK_MONOTONIC, &t);
    long long end = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000 + LINGER_MS, left;
    do {
        clock_gettime(CLOCK_MONOTONIC, &t);
        left = end - ((long long)t.tv_sec * 1000 + t.tv_nsec / 1000000);
    } while (left > 0 && poll(&p, 1, (int)left) == 1 && read(l->in, sink, sizeof(sink)) > 0);
}

void migrate_send_error(struct migrate_link *l, const char *message)
{
    char why[ERROR_TEXT_MAX + 1];
    size_t n = strlen(message);

    /* message is often err_msg() itself: a send that fails (the peer
     * gone) must not leave its own message, or none, in its place. */
    snprintf(why, sizeof(why), "%s", message);
    if (migrate_send_frame(l, MIGRATE_ERROR, why, n < ERROR_TEXT_MAX ? (uint32_t)n
                                                                    : ERROR_TEXT_MAX) < 0)
        err_plain(EIO, "%s", why);
}

/* An ERROR frame's text as the message: printable bytes only. */
static int peer_error(const struct migrate_frame *f)
{
    for (uint32_t i = 0; i < f->len; i++)
        if (f->payload[i] < 0x20 || f->payload[i] > 0x7e)
            f->payload[i] = '?';
    return err_plain(ECANCELED, "the other side refused: %s", (const char *)f->payload);
}

/* The payload's checksum against the header's, then an ERROR's text or
 * a type other than expect (0: any) as the error. */
static int check_frame(struct migrate_link *l, const uint8_t *h, uint32_t crc,
                       enum migrate_frame_type expect, struct migrate_frame *f)
{
    if (crc != le32(h + 12))
        return err_plain(EPROTO, "migration frame %s fails its checksum",
                         migrate_frame_name(f->type));
    l->stats.frames++;
    l->stats.bytes += MIGRATE_HEADER + (uint64_t)f->len;
    if (f->type == MIGRATE_ERROR)
        return peer_error(f);
    if (expect && f->type != expect)
        return err_plain(EPROTO, "migration frame %s where %s was due",
                         migrate_frame_name(f->type), migrate_frame_name(expect));
    return 0;
}

/* The check of a frame read (in pieces when its pages were placed),
 * its time counted. */
static uint32_t timed_check(struct migrate_link *l, const uint8_t *h, const uint8_t *at,
                            const uint8_t *payload, uint32_t len)
{
    double t0 = seconds();
    uint32_t check;

    if (!at)
        check = migrate_frame_check(l->version, h, payload, len);
    else if (l->version >= MIGRATE_PAGES_SUMMED)
        check = migrate_crc32c(migrate_crc32c(0, h, 12), at, 8) ^ migrate_pages_sum(payload, len);
    else
        check = migrate_crc32c(migrate_crc32c(migrate_crc32c(0, h, 12), at, 8), payload, len);
    l->stats.crc += seconds() - t0;
    return check;
}

/* A PAGES frame's pages into place, its offset (the payload's first 8
 * bytes) checked by place first; out->payload stays NULL. */
static int recv_placed(struct migrate_link *l, const uint8_t *h, migrate_place_fn place,
                       void *opaque, struct migrate_frame *out)
{
    uint8_t at[8];
    uint8_t *to;
    int r = out->len >= 8 ? read_exact(l, at, 8, true)
                          : err_plain(EPROTO, "migration PAGES frame of %u bytes", out->len);

    if (r < 0)
        return r;
    if ((r = place(opaque, le64(at), out->len - 8, &to)) < 0 ||
        (r = read_exact(l, to, out->len - 8, true)) < 0)
        return r;
    return check_frame(l, h, timed_check(l, h, at, to, out->len - 8), 0, out);
}

static int recv_frame(struct migrate_link *l, enum migrate_frame_type expect,
                      migrate_place_fn place, void *opaque, struct migrate_frame *out)
{
    uint8_t h[MIGRATE_HEADER];
    int r = read_exact(l, h, sizeof(h), false);

    memset(out, 0, sizeof(*out));
    if (r == 0)
        r = migrate_header_parse(h, &out->type, &out->len);
    if (r < 0)
        return r;
    if (place && out->type == MIGRATE_PAGES)
        return recv_placed(l, h, place, opaque, out);
    if (!(out->payload = malloc((size_t)out->len + 1)))
        return err_set(ENOMEM, "migration frame");
    out->payload[out->len] = 0;
    r = read_exact(l, out->payload, out->len, true);
    if (r == 0)
        r = check_frame(l, h, timed_check(l, h, NULL, out->payload, out->len), expect, out);
    if (r < 0) {
        free(out->payload);
        out->payload = NULL;
    }
    return r;
}

int migrate_recv_frame(struct migrate_link *l, enum migrate_frame_type expect,
                       struct migrate_frame *out)
{
    return recv_frame(l, expect, NULL, NULL, out);
}

int migrate_recv_frame_placing(struct migrate_link *l, migrate_place_fn place, void *opaque,
                               struct migrate_frame *out)
{
    return recv_frame(l, 0, place, opaque, out);
}

int migrate_hello_encode(const struct x86_cpuid_entry *cpuid, size_t n, uint8_t **out,
                         uint32_t *len)
{
    if (n > MIGRATE_CPUID_MAX)
        n = MIGRATE_CPUID_MAX;
    uint8_t *p = malloc(8 + n * 24);
    if (!p)
        return err_set(ENOMEM, "migration hello");
    put_le(p, MIGRATE_VERSION, 4);
    put_le(p + 4, n, 4);
    for (size_t i = 0; i < n; i++) {
        const uint32_t v[6] = {cpuid[i].function, cpuid[i].index, cpuid[i].eax,
                               cpuid[i].ebx, cpuid[i].ecx, cpuid[i].edx};
        for (int k = 0; k < 6; k++)
            put_le(p + 8 + i * 24 + k * 4, v[k], 4);
    }
    *out = p;
    *len = (uint32_t)(8 + n * 24);
    return 0;
}

int migrate_hello_check(const uint8_t *p, uint32_t len, const struct x86_cpuid_entry *host,
                        size_t host_n)
{
    char why[128];

    if (len < 8)
        return err_plain(EPROTO, "migration HELLO of %u bytes is too short", len);
    uint32_t version = le32(p), n = le32(p + 4);
    if (version > MIGRATE_VERSION || version == 0)
        return err_plain(EPROTONOSUPPORT,
                         "the source speaks migration protocol version %u; this smolvm speaks "
                         "version %u", version, MIGRATE_VERSION);
    if (n > MIGRATE_CPUID_MAX || len != 8 + (uint64_t)n * 24)
        return err_plain(EPROTO, "migration HELLO: %u CPUID entries do not fill %u bytes", n, len);
    struct x86_cpuid_entry *saved = calloc(n ? n : 1, sizeof(*saved));
    if (!saved)
        return err_set(ENOMEM, "migration hello");
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = p + 8 + (size_t)i * 24;
        saved[i] = (struct x86_cpuid_entry){le32(e), le32(e + 4), le32(e + 8),
                                            le32(e + 12), le32(e + 16), le32(e + 20)};
    }
    int fits = x86_cpuid_fits(saved, n, host, host_n, why, sizeof(why));
    free(saved);
    return fits < 0 ? err_plain(ENOTSUP, "this host's CPU lacks a feature the guest uses: %s", why)
                    : 0;
}

/* A layer's format on the wire. */
static const char *const layer_formats[] = {[1] = "raw", [2] = "qcow2"};

int migrate_offer_encode(const struct migrate_layer *layers, size_t n, uint8_t **out,
                         uint32_t *len)
{
    if (n > MIGRATE_LAYERS_MAX)
        return err_plain(E2BIG, "more than %d layers to offer", MIGRATE_LAYERS_MAX);
    uint8_t *p = calloc(1, 4 + n * MIGRATE_LAYER_ENTRY);
    if (!p)
        return err_set(ENOMEM, "migration offer");
    put_le(p, n, 4);
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = p + 4 + i * MIGRATE_LAYER_ENTRY;
        memcpy(e, layers[i].hash, HASH_HEX - 1);
        e[HASH_HEX - 1] = strcmp(layers[i].format, "raw") == 0 ? 1 : 2;
    }
    *out = p;
    *len = (uint32_t)(4 + n * MIGRATE_LAYER_ENTRY);
    return 0;
}

int migrate_offer_parse(const uint8_t *p, uint32_t len, struct migrate_layer **out, size_t *n)
{
    uint32_t count = len >= 4 ? le32(p) : 0;

    if (len < 4 || count > MIGRATE_LAYERS_MAX || len != 4 + (uint64_t)count * MIGRATE_LAYER_ENTRY)
        return err_plain(EPROTO, "migration OFFER of %u bytes is malformed", len);
    struct migrate_layer *l = calloc(count ? count : 1, sizeof(*l));
    if (!l)
        return err_set(ENOMEM, "migration offer");
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = p + 4 + (size_t)i * MIGRATE_LAYER_ENTRY;
        uint8_t format = e[HASH_HEX - 1];
        memcpy(l[i].hash, e, HASH_HEX - 1);
        l[i].hash[HASH_HEX - 1] = 0;
        if (!hash_is_hex(l[i].hash) || (format != 1 && format != 2)) {
            free(l);
            return err_plain(EPROTO, "migration OFFER: layer %u is not a SHA-256 and a format", i);
        }
        snprintf(l[i].format, sizeof(l[i].format), "%s", layer_formats[format]);
    }
    *out = l;
    *n = count;
    return 0;
}

int migrate_have_parse(const uint8_t *p, uint32_t len, size_t n, bool *have)
{
    if (len < 4 || le32(p) != n || len != 4 + n)
        return err_plain(EPROTO, "migration HAVE of %u bytes does not answer %zu layers", len, n);
    for (size_t i = 0; i < n; i++) {
        if (p[4 + i] > 1)
            return err_plain(EPROTO, "migration HAVE: layer %zu is neither had nor not", i);
        have[i] = p[4 + i] == 1;
    }
    return 0;
}
