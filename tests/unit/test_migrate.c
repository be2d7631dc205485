/* The migration protocol (src/migrate/): frames checked whole, hostile
 * frames refused with one message, the hello's version and CPU check, and
 * the destination's receive of a VM's bundle from a scripted source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "machine/internal.h"
#include "migrate/link.h"
#include "migrate/migrate.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/iov.h"
#include "util/le.h"

/* A host with SSE4.2 and AVX2 (CPUID 1 ECX bit 20, 7.0 EBX bit 5). */
static const struct x86_cpuid_entry host[] = {
    {1, 0, 0, 0, 1u << 20, 0},
    {7, 0, 0, 1u << 5, 0, 0},
};

/* Bytes written into a pipe, read back as a link's input. */
static struct migrate_link link_over(const void *bytes, size_t len, int fds[2])
{
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], bytes, len), (ssize_t)len);
    close(fds[1]);
    return (struct migrate_link){.in = fds[0], .out = -1, .stall_ms = 1000,
                                 .version = MIGRATE_VERSION};
}

/* recv_frame on bytes: its result, message in *msg (static). */
static int recv_bytes(const void *bytes, size_t len, struct migrate_frame *f)
{
    int fds[2];
    struct migrate_link l = link_over(bytes, len, fds);
    err_clear();
    int r = migrate_recv_frame(&l, 0, f);
    close(fds[0]);
    return r;
}

static size_t frame(uint8_t *buf, enum migrate_frame_type type, const void *payload, uint32_t len)
{
    migrate_frame_encode(buf, type, payload, len);
    return MIGRATE_HEADER + len;
}

/* Round 0's check for pages of zeros: one byte set anywhere in a page
 * (or in the tail of a length that is no multiple of its step) is seen. */
static void zero_pages_found_exactly(void **state)
{
    static uint8_t page[MIGRATE_PAGE + 64];
    (void)state;
    assert_true(buf_is_zero(page, sizeof(page)));
    assert_true(buf_is_zero(page, 0));
    for (size_t at = 0; at < sizeof(page); at++) {
        page[at] = (uint8_t)(1u << (at % 8));
        assert_false(buf_is_zero(page, sizeof(page)));
        assert_true(buf_is_zero(page, at) && buf_is_zero(page + at + 1, sizeof(page) - at - 1));
        page[at] = 0;
    }
}

/* Version 4's sum of PAGES: any one bit flipped in a page, two of its
 * 16-byte words or the halves of one swapped -- each changes it. */
static void pages_sum_sees_changes(void **state)
{
    static uint8_t page[MIGRATE_PAGE];
    (void)state;
    for (size_t i = 0; i < sizeof(page); i++)
        page[i] = (uint8_t)(i * 7 + 1);
    uint32_t sum = migrate_pages_sum(page, sizeof(page));
    for (size_t bit = 0; bit < sizeof(page) * 8; bit += 13) {
        page[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_not_equal(migrate_pages_sum(page, sizeof(page)), sum);
        page[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    uint8_t word[16];
    memcpy(word, page + 32, 16);
    memcpy(page + 32, page + 256, 16);
    memcpy(page + 256, word, 16);
    assert_int_not_equal(migrate_pages_sum(page, sizeof(page)), sum);
    memcpy(page + 256, page + 32, 16);
    memcpy(page + 32, word, 16);
    assert_int_equal(migrate_pages_sum(page, sizeof(page)), sum);
    memcpy(page + 32, word + 8, 8);
    memcpy(page + 40, word, 8);
    assert_int_not_equal(migrate_pages_sum(page, sizeof(page)), sum);
}

/* A RAM of two pages for placing_pages(). */
static uint8_t placed_ram[2 * MIGRATE_PAGE];

static int place_in_ram(void *opaque, uint64_t at, uint64_t len, uint8_t **to)
{
    (void)opaque;
    if (at > sizeof(placed_ram) || len > sizeof(placed_ram) - at)
        return err_plain(EPROTO, "outside the RAM");
    *to = placed_ram + at;
    return 0;
}

/* PAGES read straight into place: where the offset says, checked by the
 * placer before a byte lands (one past the RAM lands nothing), and the
 * checksum over the pages as placed (a byte flipped on the way: refused). */
static void placing_pages(void **state)
{
    static uint8_t payload[8 + MIGRATE_PAGE], stream[MIGRATE_HEADER + sizeof(payload)];
    struct migrate_frame f;
    int fds[2];
    (void)state;

    memset(payload + 8, 'x', MIGRATE_PAGE);
    for (int i = 0; i < 3; i++) {
        put_le(payload, i == 2 ? 2 * MIGRATE_PAGE : MIGRATE_PAGE, 8);
        size_t n = frame(stream, MIGRATE_PAGES, payload, sizeof(payload));
        if (i == 1)
            stream[MIGRATE_HEADER + 100] ^= 1;
        memset(placed_ram, 0, sizeof(placed_ram));
        struct migrate_link l = link_over(stream, n, fds);
        int r = migrate_recv_frame_placing(&l, place_in_ram, NULL, &f);
        close(fds[0]);
        assert_null(f.payload);
        if (i == 0) {
            assert_int_equal(r, 0);
            assert_int_equal(f.type, MIGRATE_PAGES);
            assert_int_equal(placed_ram[MIGRATE_PAGE], 'x');
            assert_int_equal(placed_ram[2 * MIGRATE_PAGE - 1], 'x');
            assert_int_equal(placed_ram[MIGRATE_PAGE - 1], 0);
        } else {
            assert_int_equal(r, -EPROTO);
            assert_string_equal(err_msg(), i == 1 ? "migration frame PAGES fails its checksum"
                                                  : "outside the RAM");
            assert_true(i == 1 || buf_is_zero(placed_ram, sizeof(placed_ram)));
        }
    }
}

/* CRC-32C's check value ("123456789": 0xe3069283), from the CPU's
 * instruction and the table alike, and the two agree on every length and
 * alignment, whole or continued piece by piece. */
static void crc32c_known_and_agreed(void **state)
{
    uint8_t buf[1024 + 8];
    (void)state;
    assert_int_equal(migrate_crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(migrate_crc32c_portable(0, "123456789", 9), 0xe3069283u);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t at = 0; at < 8; at++)
        for (size_t len = 0; len + at <= sizeof(buf); len += 37) {
            uint32_t whole = migrate_crc32c(0, buf + at, len);
            assert_int_equal(whole, migrate_crc32c_portable(0, buf + at, len));
            assert_int_equal(whole, migrate_crc32c(migrate_crc32c(0, buf + at, len / 3),
                                                   buf + at + len / 3, len - len / 3));
        }
}

static void frames_round_trip(void **state)
{
    uint8_t buf[64];
    struct migrate_frame f;
    (void)state;
    size_t n = frame(buf, MIGRATE_ERROR, "no room", 7);
    assert_int_equal(recv_bytes(buf, n, &f), -ECANCELED);
    assert_non_null(strstr(err_msg(), "refused: no room"));
    n = frame(buf, MIGRATE_END, "0123456789012345678901234567890123456789", 40);
    assert_int_equal(recv_bytes(buf, n, &f), 0);
    assert_int_equal(f.type, MIGRATE_END);
    assert_int_equal(f.len, 40);
    assert_memory_equal(f.payload, "0123456789", 10);
    free(f.payload);
}

/* Each hostile frame: refused, one line saying why. */
static void hostile_frames_refused(void **state)
{
    static uint8_t buf[MIGRATE_HEADER + 100];
    struct migrate_frame f;
    size_t n;
    (void)state;

    n = frame(buf, MIGRATE_DATA, "abcdefgh", 8);
    assert_int_equal(recv_bytes(buf, n - 3, &f), -ECONNRESET); /* short */
    assert_non_null(strstr(err_msg(), "in the middle of a frame"));
    assert_int_equal(recv_bytes(buf, 5, &f), -ECONNRESET); /* short header */
    assert_null(strchr(err_msg(), '\n'));

    n = frame(buf, MIGRATE_DATA, "abcdefgh", 8);
    buf[MIGRATE_HEADER + 3] ^= 1; /* a flipped payload bit */
    assert_int_equal(recv_bytes(buf, n, &f), -EPROTO);
    assert_string_equal(err_msg(), "migration frame DATA fails its checksum");

    n = frame(buf, MIGRATE_READY, NULL, 0);
    put_le(buf + 8, 1, 4); /* long: READY carries nothing */
    assert_int_equal(recv_bytes(buf, n + 1, &f), -EPROTO);
    assert_string_equal(err_msg(), "migration frame READY of 1 bytes (at most 0)");

    n = frame(buf, MIGRATE_DATA, NULL, 0);
    put_le(buf + 8, MIGRATE_DATA_MAX + 1, 4);
    assert_int_equal(recv_bytes(buf, n, &f), -EPROTO);
    assert_non_null(strstr(err_msg(), "DATA of 1048577 bytes"));

    n = frame(buf, MIGRATE_GO, NULL, 0);
    put_le(buf + 4, 77, 2); /* unknown type */
    assert_int_equal(recv_bytes(buf, n, &f), -EPROTO);
    assert_string_equal(err_msg(), "unknown migration frame type 77");

    n = frame(buf, MIGRATE_GO, NULL, 0);
    buf[0] = 'X';
    assert_int_equal(recv_bytes(buf, n, &f), -EPROTO);
    assert_non_null(strstr(err_msg(), "bad frame magic"));

    n = frame(buf, MIGRATE_GO, NULL, 0);
    put_le(buf + 6, 1, 2);
    assert_int_equal(recv_bytes(buf, n, &f), -EPROTO);
    assert_non_null(strstr(err_msg(), "reserved"));
}

static void wrong_frame_for_the_step(void **state)
{
    uint8_t buf[MIGRATE_HEADER];
    struct migrate_frame f;
    int fds[2];
    (void)state;
    size_t n = frame(buf, MIGRATE_GO, NULL, 0);
    struct migrate_link l = link_over(buf, n, fds);
    assert_int_equal(migrate_recv_frame(&l, MIGRATE_READY, &f), -EPROTO);
    assert_string_equal(err_msg(), "migration frame GO where READY was due");
    close(fds[0]);
}

static void stalled_link_times_out(void **state)
{
    int fds[2];
    struct migrate_frame f;
    (void)state;
    assert_int_equal(pipe(fds), 0);
    struct migrate_link l = {.in = fds[0], .out = -1, .stall_ms = 100};
    assert_int_equal(migrate_recv_frame(&l, 0, &f), -ETIMEDOUT);
    assert_non_null(strstr(err_msg(), "stalled"));
    close(fds[0]);
    close(fds[1]);
}

static void hello_checks_version_and_cpu(void **state)
{
    uint8_t *p;
    uint32_t len;
    (void)state;

    assert_int_equal(migrate_hello_encode(host, 2, &p, &len), 0);
    assert_int_equal(migrate_hello_check(p, len, host, 2), 0);
    /* This host lacks AVX2: named. */
    assert_int_equal(migrate_hello_check(p, len, host, 1), -ENOTSUP);
    assert_non_null(strstr(err_msg(), "(avx2)"));
    put_le(p, MIGRATE_VERSION + 1, 4); /* too new */
    assert_int_equal(migrate_hello_check(p, len, host, 2), -EPROTONOSUPPORT);
    assert_non_null(strstr(err_msg(), "version 5; this smolvm speaks version 4"));
    put_le(p, 1, 4); /* a version 1 source (it offers no layers) is taken */
    assert_int_equal(migrate_hello_check(p, len, host, 2), 0);
    put_le(p, MIGRATE_VERSION, 4);
    assert_int_equal(migrate_hello_check(p, len - 1, host, 2), -EPROTO); /* count lies */
    assert_int_equal(migrate_hello_check(p, 7, host, 2), -EPROTO);
    put_le(p + 4, 0xffffffffu, 4);
    assert_int_equal(migrate_hello_check(p, len, host, 2), -EPROTO);
    free(p);
}

static void addresses(void **state)
{
    (void)state;
    assert_int_equal(migrate_address_check("tcp:127.0.0.1:4000"), 0);
    assert_int_equal(migrate_address_check("tcp::4000"), 0);
    assert_int_equal(migrate_address_check("tcp:[::1]:4000"), 0);
    assert_int_equal(migrate_address_check("tcp:localhost:4000"), 0);
    assert_int_equal(migrate_address_check("unix:/tmp/m.sock"), 0);
    assert_int_equal(migrate_address_check("tcp:127.0.0.1:0"), -EINVAL);
    assert_int_equal(migrate_address_check("tcp:127.0.0.1"), -EINVAL);
    assert_int_equal(migrate_address_check("tcp:example.org:80"), -EINVAL);
    assert_int_equal(migrate_address_check("unix:"), -EINVAL);
    assert_int_equal(migrate_address_check("udp:1.2.3.4:5"), -EINVAL);
}

/* ---- the destination against a scripted source ---- */

struct source {
    int fd;
    unsigned version;  /* the protocol it speaks (0: this smolvm's) */
    int pages;         /* live: RAM of 4 pages, then this many PAGES frames */
    uint64_t page_at;  /* where the last one goes */
    bool corrupt_end;  /* END's hash differs from the bytes */
    bool big_config;   /* a config this host cannot run */
    int ram_pages;     /* pages of RAM (0: 4) */
    bool wide;         /* the last PAGES frame has two pages */
    int cut;           /* the link cut after this percent of the pages; 100: in the bundle */
    int offer;         /* OFFER this many layers (of offered[]) before the bundle */
    /* Version 3: the bundle as PARTs {offset, bytes} in this order (none:
     * DATA), the first `early` of them before the RAM (before the pause). */
    const uint64_t (*parts)[2];
    int part_count, early;
    uint8_t have[8];   /* HAVE's answer, one byte per layer offered */
    char answer[256];  /* what the destination said last */
};

/* The source's end cut, as a network gone or the source killed cuts it. */
static bool cut_here(struct source *s, int percent)
{
    if (s->cut != percent)
        return false;
    shutdown(s->fd, SHUT_RDWR);
    return true;
}

static void source_send(struct migrate_link *l, enum migrate_frame_type t, const void *p,
                        uint32_t len)
{
    if (migrate_send_frame(l, t, p, len) < 0)
        err_clear(); /* the destination hung up: its answer says why */
}

/* Layers a source offers: the destination (has_one_layer) has the second. */
static const struct migrate_layer offered[] = {
    {"1111111111111111111111111111111111111111111111111111111111111111", "raw"},
    {"2222222222222222222222222222222222222222222222222222222222222222", "qcow2"},
    {"3333333333333333333333333333333333333333333333333333333333333333", "qcow2"},
};

static int has_one_layer(const char *hash, const char *format, bool *have)
{
    *have = strcmp(hash, offered[1].hash) == 0 && strcmp(format, "qcow2") == 0;
    return 0;
}

static void source_offers(struct source *s, struct migrate_link *l)
{
    struct migrate_frame f;
    uint8_t *offer;
    uint32_t len;
    bool have[8];

    assert_int_equal(migrate_offer_encode(offered, (size_t)s->offer, &offer, &len), 0);
    source_send(l, MIGRATE_OFFER, offer, len);
    free(offer);
    if (migrate_recv_frame(l, MIGRATE_HAVE, &f) < 0)
        return;
    if (migrate_have_parse(f.payload, f.len, (size_t)s->offer, have) == 0)
        for (int i = 0; i < s->offer; i++)
            s->have[i] = have[i];
    free(f.payload);
}

static const char bundle_bytes[] = "the VM's bundle, in two frames";

/* Parts [from, to) of s->parts, hashed in the order sent. */
static void send_parts(struct source *s, struct migrate_link *l, int from, int to,
                       struct hash_state *h)
{
    static uint8_t part[8 + sizeof(bundle_bytes)];
    for (int i = from; i < to; i++) {
        uint64_t at = s->parts[i][0], len = s->parts[i][1];
        put_le(part, at, 8);
        if (at < sizeof(bundle_bytes))
            memcpy(part + 8, bundle_bytes + at, len);
        hash_add(h, part + 8, len);
        source_send(l, MIGRATE_PART, part, (uint32_t)(8 + len));
    }
}

static void *run_source(void *opaque)
{
    struct source *s = opaque;
    struct migrate_link l = {.in = s->fd, .out = s->fd, .stall_ms = 5000,
                             .version = s->version ? s->version : MIGRATE_VERSION};
    struct migrate_frame f;
    struct vm_config cfg;
    uint8_t *hello, end[8 + HASH_BYTES];
    uint32_t len;
    const char *data = bundle_bytes;
    struct hash_state h;

    assert_int_equal(migrate_hello_encode(host, 2, &hello, &len), 0);
    put_le(hello, l.version, 4);
    source_send(&l, MIGRATE_HELLO, hello, len);
    free(hello);
    if (migrate_recv_frame(&l, MIGRATE_ACCEPT, &f) == 0)
        free(f.payload);
    vm_config_defaults(&cfg);
    if (s->big_config)
        cfg.mem_bytes = 1ull << 60;
    char *json = vm_config_to_json(&cfg);
    source_send(&l, MIGRATE_CONFIG, json, (uint32_t)strlen(json));
    free(json);
    if (migrate_recv_frame(&l, MIGRATE_ACCEPT, &f) < 0) { /* refused: nothing more goes */
        snprintf(s->answer, sizeof(s->answer), "%s", err_msg());
        return NULL;
    }
    free(f.payload);
    if (s->offer)
        source_offers(s, &l);
    hash_begin(&h);
    if (s->parts)
        send_parts(s, &l, 0, s->early, &h);
    if (s->pages) {
        static uint8_t page[8 + 2 * MIGRATE_PAGE];
        uint8_t ram[8];
        put_le(ram, (uint64_t)(s->ram_pages ? s->ram_pages : 4) * MIGRATE_PAGE, 8);
        source_send(&l, MIGRATE_RAM, ram, sizeof(ram));
        for (int i = 0; i < s->pages; i++) {
            if (s->cut && s->cut < 100 && i * 100 >= s->pages * s->cut && cut_here(s, s->cut))
                return NULL;
            bool last = i + 1 == s->pages;
            uint32_t n = last && s->wide ? 2 : 1;
            put_le(page, last ? s->page_at : (uint64_t)i * MIGRATE_PAGE, 8);
            memset(page + 8, 'a' + i, n * MIGRATE_PAGE);
            source_send(&l, MIGRATE_PAGES, page, 8 + n * MIGRATE_PAGE);
        }
    }
    if (s->parts) {
        send_parts(s, &l, s->early, s->part_count, &h);
        hash_end(&h, end + 8);
    } else {
        source_send(&l, MIGRATE_DATA, data, 10);
        if (cut_here(s, 100)) /* in the final stop-and-copy */
            return NULL;
        source_send(&l, MIGRATE_DATA, data + 10, sizeof(bundle_bytes) - 10);
        hash_bytes(data, sizeof(bundle_bytes) - (s->corrupt_end ? 1 : 0), end + 8);
    }
    put_le(end, sizeof(bundle_bytes), 8);
    source_send(&l, MIGRATE_END, end, sizeof(end));
    err_clear();
    if (migrate_recv_frame(&l, MIGRATE_READY, &f) == 0)
        free(f.payload);
    snprintf(s->answer, sizeof(s->answer), "%s", err_msg());
    return NULL;
}

/* Runs a scripted source against migrate_receive_bundle(): its result,
 * the bundle's bytes in *got. */
static char (*received_have)[HASH_HEX]; /* the last receive's rx.have */
static size_t received_have_count;

/* The VM's memory a live receive puts the pages into, as smolvm
 * receive's vm_prepare() makes it: home_pages pages (the RAM frame's size)
 * in two regions far apart in guest-physical space. */
static unsigned home_pages = 4;
static struct guest_memory home;

static int ram_home(void *opaque, const char *config, uint64_t mem_bytes, unsigned cpus,
                    const struct guest_memory **out)
{
    struct guest_region layout[] = {
        {.gpa = 0, .size = home_pages / 2 * MIGRATE_PAGE},
        {.gpa = 1ull << 30, .size = (home_pages - home_pages / 2) * MIGRATE_PAGE}};
    int r = guest_memory_alloc(&home, layout, 2);
    struct vm_config sent;
    (void)opaque;
    assert_int_equal(mem_bytes, VM_DEFAULT_MEM); /* the config's, not the frame's */
    assert_int_equal(cpus, 1);
    /* ... and the config itself, the VM's devices are built from ahead */
    vm_config_defaults(&sent);
    char *json = vm_config_to_json(&sent);
    assert_string_equal(config, json);
    free(json);
    if (r == 0)
        *out = &home;
    return r;
}

/* Byte off of the RAM, the regions end to end. */
static uint8_t *ram_at(uint64_t off)
{
    for (unsigned i = 0; i < home.count; off -= home.regions[i++].size)
        if (off < home.regions[i].size)
            return home.regions[i].host + off;
    fail();
    return NULL;
}

/* The RAM a receive left, freed (a receive that failed still left it to
 * its caller, as smolvm receive destroys the VM it prepared). */
static void home_free(void)
{
    guest_memory_free(&home);
}

static int receive_from(struct source *s, char *got, size_t got_size)
{
    int sv[2], out = memfd_create("bundle", 0);
    pthread_t t;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    s->fd = sv[1];
    assert_int_equal(pthread_create(&t, NULL, run_source, s), 0);
    struct migrate_link l = {.in = sv[0], .out = sv[0], .stall_ms = 5000};
    struct migrate_receive rx = {.host = host, .host_n = 2, .bundle_fd = out,
                                 .scratch_dir = "/tmp", .have_layer = has_one_layer,
                                 .ram_home = ram_home};
    home_free();
    home_pages = s->ram_pages ? (unsigned)s->ram_pages : 4;
    int r = migrate_receive_bundle(&l, &rx);
    assert_true(rx.home == NULL || rx.home == &home);
    free(received_have);
    received_have = rx.have;
    received_have_count = rx.have_count;
    if (r == 0)
        assert_int_equal(migrate_send_frame(&l, MIGRATE_READY, NULL, 0), 0);
    else
        close(sv[0]);
    pthread_join(t, NULL);
    memset(got, 0, got_size);
    assert_true(pread(out, got, got_size - 1, 0) >= 0);
    if (r == 0)
        close(sv[0]);
    close(sv[1]);
    close(out);
    return r;
}

static void receives_a_bundle(void **state)
{
    struct source s = {0};
    char got[64];
    (void)state;
    assert_int_equal(receive_from(&s, got, sizeof(got)), 0);
    assert_string_equal(got, "the VM's bundle, in two frames");
}

/* Version 3: what cannot change while the VM runs goes first (bytes 10
 * to 21 here, as a bundle's kernel and initrd after its header), the RAM
 * after it, then the rest to the end and the header at 0, written last:
 * the bundle lands whole, its hash taken in the order the bytes came. */
static void receives_a_bundle_in_parts(void **state)
{
    static const uint64_t parts[][2] = {{10, 6}, {16, 5}, {21, 10}, {0, 4}, {4, 6}};
    struct source s = {.parts = parts, .part_count = 5, .early = 2, .pages = 2,
                       .page_at = MIGRATE_PAGE};
    char got[64];
    (void)state;
    assert_int_equal(receive_from(&s, got, sizeof(got)), 0);
    assert_memory_equal(got, bundle_bytes, sizeof(bundle_bytes));
}

/* Bytes of the bundle out of that order: each refused with one line
 * before the VM is built -- a gap, an overlap, the header twice or past
 * where the bundle began, a piece left out, an offset past any bundle. */
static void refuses_parts_out_of_place(void **state)
{
    static const uint64_t gap[][2] = {{10, 11}, {25, 6}, {0, 10}};
    static const uint64_t overlap[][2] = {{10, 21}, {0, 12}};
    static const uint64_t twice[][2] = {{10, 21}, {0, 5}, {0, 5}};
    static const uint64_t no_header[][2] = {{10, 21}};
    static const uint64_t half_header[][2] = {{10, 21}, {0, 5}};
    static const uint64_t far[][2] = {{1ull << 40, 1}};
    static const struct {
        const uint64_t (*parts)[2];
        int count;
        const char *why;
    } cases[] = {
        {gap, 3, "bundle bytes at 25 where 21 were due"},
        {overlap, 2, "bundle bytes at 0 (12 of them) out of place"},
        {twice, 3, "bundle bytes at 0 where 5 were due"},
        {no_header, 1, "left bytes of the VM's bundle out (0 to 10)"},
        {half_header, 2, "left bytes of the VM's bundle out (5 to 10)"},
        {far, 1, "bundle bytes at 1099511627776 (1 of them) out of place"},
    };
    char got[64];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct source s = {.parts = cases[i].parts, .part_count = cases[i].count};
        assert_int_equal(receive_from(&s, got, sizeof(got)), -EPROTO);
        if (!strstr(err_msg(), cases[i].why))
            fail_msg("case %zu: '%s', wanted '%s'", i, err_msg(), cases[i].why);
        assert_null(strchr(err_msg(), '\n'));
    }
}

/* A bundle that arrives changed is refused, and the source is told. */
static void refuses_a_corrupt_bundle(void **state)
{
    struct source s = {.corrupt_end = true};
    char got[64];
    (void)state;
    assert_int_equal(receive_from(&s, got, sizeof(got)), -EPROTO);
    assert_non_null(strstr(err_msg(), "arrived corrupt"));
    assert_non_null(strstr(s.answer, "refused: the VM's bundle arrived corrupt"));
}

/* A config this host cannot run: refused before any of the VM moves. */
static void refuses_a_config_too_big(void **state)
{
    struct source s = {.big_config = true};
    char got[64];
    (void)state;
    assert_true(receive_from(&s, got, sizeof(got)) < 0);
    assert_non_null(strstr(err_msg(), "cannot run on this host"));
    assert_string_equal(got, "");
    assert_non_null(strstr(s.answer, "refused: the VM cannot run on this host"));
}

/* OFFER and HAVE: the destination says which layers it has (the second
 * of three), remembers them for the bundle that lists them without
 * carrying them, and the bundle comes as ever. */
static void answers_an_offer_of_layers(void **state)
{
    struct source s = {.offer = 3};
    char got[64];
    (void)state;
    assert_int_equal(receive_from(&s, got, sizeof(got)), 0);
    assert_string_equal(got, "the VM's bundle, in two frames");
    assert_memory_equal(s.have, ((uint8_t[]){0, 1, 0}), 3);
    assert_int_equal(received_have_count, 1);
    assert_string_equal(received_have[0], offered[1].hash);
}

/* OFFER and HAVE are checked whole: a hash that is not one, a format
 * that is not raw or qcow2, a count the bytes do not fill; a HAVE that
 * answers another number of layers, or says neither yes nor no. */
static void hostile_offers_refused(void **state)
{
    struct migrate_layer *l;
    uint8_t *p;
    uint32_t len;
    size_t n;
    bool have[3];
    (void)state;

    assert_int_equal(migrate_offer_encode(offered, 3, &p, &len), 0);
    assert_int_equal(migrate_offer_parse(p, len, &l, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(l[2].hash, offered[2].hash);
    assert_string_equal(l[0].format, "raw");
    free(l);
    assert_int_equal(migrate_offer_parse(p, len - 1, &l, &n), -EPROTO);
    p[4 + 5] = 'G';
    assert_int_equal(migrate_offer_parse(p, len, &l, &n), -EPROTO);
    p[4 + 5] = '1';
    p[4 + MIGRATE_LAYER_ENTRY + HASH_HEX - 1] = 7;
    assert_int_equal(migrate_offer_parse(p, len, &l, &n), -EPROTO);
    put_le(p, 1000, 4);
    assert_int_equal(migrate_offer_parse(p, len, &l, &n), -EPROTO);
    free(p);
    uint8_t answer[7] = {3, 0, 0, 0, 1, 0, 1};
    assert_int_equal(migrate_have_parse(answer, 7, 3, have), 0);
    assert_true(have[0] && !have[1] && have[2]);
    assert_int_equal(migrate_have_parse(answer, 7, 2, have), -EPROTO);
    answer[5] = 2;
    assert_int_equal(migrate_have_parse(answer, 7, 3, have), -EPROTO);
    err_clear();
}

/* Live: RAM pages land where they say, inside the RAM: memory the
 * machine takes as it is, where pages never sent are zeros and take no
 * room. */
static void receives_live_pages(void **state)
{
    struct source s = {.pages = 3, .page_at = 3 * MIGRATE_PAGE};
    char got[64];
    unsigned char resident[2];
    (void)state;
    assert_int_equal(receive_from(&s, got, sizeof(got)), 0);
    assert_int_equal(home.total, 4 * MIGRATE_PAGE);
    assert_int_equal(*ram_at(0), 'a');
    assert_int_equal(*ram_at(MIGRATE_PAGE), 'b');
    /* the second region's: where its own offsets say */
    assert_int_equal(home.regions[1].host[2 * MIGRATE_PAGE - 1], 'c');
    assert_int_equal(mincore(home.regions[1].host, 2 * MIGRATE_PAGE, resident), 0);
    assert_false(resident[0] & 1); /* never sent: no page there */
    assert_true(buf_is_zero(home.regions[1].host, MIGRATE_PAGE));
    home_free();
}

/* The link cut at 10%, at 50% of the RAM and in the final stop-and-copy:
 * each time the destination fails with one line and keeps nothing (no
 * RAM, no file in its scratch folder). */
static void a_cut_link_leaves_nothing(void **state)
{
    static const int cuts[] = {10, 50, 100};
    char scratch[] = "/tmp/test-migrate-cut.XXXXXX";
    (void)state;

    assert_non_null(mkdtemp(scratch));
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        struct source s = {.pages = 20, .ram_pages = 20, .page_at = 19 * MIGRATE_PAGE,
                           .cut = cuts[i]};
        int sv[2], bundle = open(scratch, O_TMPFILE | O_RDWR, 0600);
        pthread_t t;
        assert_true(bundle >= 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        s.fd = sv[1];
        assert_int_equal(pthread_create(&t, NULL, run_source, &s), 0);
        struct migrate_link l = {.in = sv[0], .out = sv[0], .stall_ms = 5000};
        struct migrate_receive rx = {.host = host, .host_n = 2, .bundle_fd = bundle,
                                     .scratch_dir = scratch, .ram_home = ram_home};
        home_pages = 20;
        err_clear();
        assert_int_equal(migrate_receive_bundle(&l, &rx), -ECONNRESET);
        pthread_join(t, NULL);
        assert_string_equal(err_msg(), "the migration link was closed");
        home_free(); /* the VM it prepared: the caller's to destroy */
        close(bundle); /* as smolvm receive does: its bundle had no name */
        close(sv[0]);
        close(sv[1]);
        assert_int_equal(rmdir(scratch), 0); /* nothing in it */
        assert_int_equal(mkdir(scratch, 0700), 0);
    }
    rmdir(scratch);
}

/* A version 3 source checks its PAGES with CRC-32C, as they all did: its
 * pages are taken so (a destination that summed them would refuse). */
static void a_version_3_source_is_taken(void **state)
{
    static const uint64_t parts[][2] = {{0, sizeof(bundle_bytes)}};
    struct source s = {.version = 3, .parts = parts, .part_count = 1, .pages = 2,
                       .page_at = MIGRATE_PAGE};
    char got[64];
    (void)state;
    assert_int_equal(receive_from(&s, got, sizeof(got)), 0);
    assert_int_equal(*ram_at(MIGRATE_PAGE), 'b');
    home_free();
}

/* A page past the RAM, not on a page boundary, or a frame across the
 * border of two regions (each whole page inside the RAM, but the bytes
 * would run past the first region's mapping): refused, nothing placed. */
static void refuses_pages_outside_ram(void **state)
{
    struct source past = {.pages = 1, .page_at = 4 * MIGRATE_PAGE};
    struct source odd = {.pages = 1, .page_at = 100};
    struct source across = {.pages = 1, .page_at = MIGRATE_PAGE, .wide = true};
    struct source *cases[] = {&past, &odd, &across};
    char got[64];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(receive_from(cases[i], got, sizeof(got)), -EPROTO);
        assert_non_null(strstr(err_msg(), "outside the RAM"));
        for (unsigned r = 0; r < home.count; r++)
            assert_true(buf_is_zero(home.regions[r].host, home.regions[r].size));
        home_free();
    }
    /* Two pages inside the second region: in place. */
    struct source inside = {.pages = 1, .page_at = 2 * MIGRATE_PAGE, .wide = true};
    assert_int_equal(receive_from(&inside, got, sizeof(got)), 0);
    assert_int_equal(home.regions[1].host[0], 'a');
    assert_int_equal(home.regions[1].host[2 * MIGRATE_PAGE - 1], 'a');
    home_free();
}

/* A RAM or PART frame shorter than its u64 (the fuzzer found both read past the
 * payload): refused by its length before its bytes are used. */
static void refuses_short_ram_and_part_frames(void **state)
{
    /* PART too: its offset is a u64 as well. */
    static const struct {
        enum migrate_frame_type type;
        const char *why;
    } cases[] = {
        {MIGRATE_RAM, "migration RAM frame out of place"},
        {MIGRATE_PART, "migration PART of 5 bytes"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        static uint8_t stream[8192];
        uint8_t *hello, *five = malloc(5);
        uint32_t len;
        struct vm_config cfg;
        size_t n = 0;
        int fds[2], bundle = memfd_create("bundle", 0), out = open("/dev/null", O_WRONLY);

        memcpy(five, "\0\0\1\0\0", 5);
        assert_int_equal(migrate_hello_encode(host, 2, &hello, &len), 0);
        n += frame(stream + n, MIGRATE_HELLO, hello, len);
        free(hello);
        vm_config_defaults(&cfg);
        char *json = vm_config_to_json(&cfg);
        n += frame(stream + n, MIGRATE_CONFIG, json, (uint32_t)strlen(json));
        free(json);
        n += frame(stream + n, cases[i].type, five, 5);
        free(five);
        struct migrate_link l = link_over(stream, n, fds);
        l.out = out;
        struct migrate_receive rx = {.host = host, .host_n = 2, .bundle_fd = bundle,
                                     .scratch_dir = "/tmp"};
        assert_int_equal(migrate_receive_bundle(&l, &rx), -EPROTO);
        assert_string_equal(err_msg(), cases[i].why);
        assert_null(rx.home);
        close(fds[0]);
        close(bundle);
        close(out);
    }
}

/* ---- a destination that gives up while the VM streams ---- */

struct full_destination {
    int fd;
    bool linger; /* as smolvm receive does before it closes */
    int result;
    char message[512];
};

/* The destination with its scratch file system full (/dev/full takes
 * the bundle): it fails at the first DATA, says so, and hangs up. */
static void *run_full_destination(void *opaque)
{
    struct full_destination *d = opaque;
    struct migrate_link l = {.in = d->fd, .out = d->fd, .stall_ms = 5000};
    struct migrate_receive rx = {.host = host, .host_n = 2, .scratch_dir = "/scratch",
                                 .bundle_fd = open("/dev/full", O_WRONLY | O_CLOEXEC)};

    d->result = migrate_receive_bundle(&l, &rx);
    snprintf(d->message, sizeof(d->message), "%s", err_msg());
    if (d->linger)
        migrate_linger(&l);
    close(rx.bundle_fd);
    close(d->fd);
    return NULL;
}

/* The source's side up to the VM's bytes: hello and config, accepted. */
static void source_handshake(struct migrate_link *l)
{
    struct migrate_frame f;
    struct vm_config cfg;
    uint8_t *hello;
    uint32_t len;

    assert_int_equal(migrate_hello_encode(host, 2, &hello, &len), 0);
    assert_int_equal(migrate_send_frame(l, MIGRATE_HELLO, hello, len), 0);
    free(hello);
    assert_int_equal(migrate_recv_frame(l, MIGRATE_ACCEPT, &f), 0);
    free(f.payload);
    vm_config_defaults(&cfg);
    char *json = vm_config_to_json(&cfg);
    assert_int_equal(migrate_send_frame(l, MIGRATE_CONFIG, json, (uint32_t)strlen(json)), 0);
    free(json);
    assert_int_equal(migrate_recv_frame(l, MIGRATE_ACCEPT, &f), 0);
    free(f.payload);
}

/* Streams up to frames DATA frames of 1 MiB (checking the peer before
 * each, as send.c does, when check_peer): the first failure, frames sent. */
static int stream_bundle(struct migrate_link *l, int frames, bool check_peer, int *sent)
{
    uint8_t *data = calloc(1, MIGRATE_DATA_MAX);
    int r = 0;

    assert_non_null(data);
    for (*sent = 0; r == 0 && *sent < frames; ++*sent)
        if ((r = check_peer ? migrate_peer_check(l) : 0) == 0)
            r = migrate_send_frame(l, MIGRATE_DATA, data, MIGRATE_DATA_MAX);
    free(data);
    return r;
}

/* The source stops at once and says what the destination said (its disk
 * full, the file named), not "the link was cut". */
static void source_hears_the_destination_is_full(void **state)
{
    struct full_destination d = {.linger = true};
    int sv[2], sent;
    pthread_t t;
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    d.fd = sv[1];
    assert_int_equal(pthread_create(&t, NULL, run_full_destination, &d), 0);
    struct migrate_link l = {.in = sv[0], .out = sv[0], .stall_ms = 5000};
    source_handshake(&l);
    int r = stream_bundle(&l, 200, true, &sent);
    pthread_join(t, NULL);
    close(sv[0]);
    assert_int_equal(d.result, -ENOSPC);
    assert_string_equal(d.message, "writing the VM's bundle into a file without a name in "
                                   "'/scratch': No space left on device");
    assert_int_equal(r, -ECANCELED);
    assert_string_equal(err_msg(), "the other side refused: writing the VM's bundle into a file "
                                   "without a name in '/scratch': No space left on device");
    assert_true(sent < 10); /* stopped at once, not after the 200 MiB */
}

/* A destination that closes with the source's bytes unread resets a TCP
 * link; the ERROR it sent first is still the source's message. */
static void a_reset_link_still_says_why(void **state)
{
    struct full_destination d = {.linger = false};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), src, sent;
    pthread_t t;
    (void)state;

    assert_true(listener >= 0);
    assert_int_equal(bind(listener, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(listener, 1), 0);
    assert_int_equal(getsockname(listener, (struct sockaddr *)&a, &alen), 0);
    src = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(src, (struct sockaddr *)&a, sizeof(a)), 0);
    d.fd = accept(listener, NULL, NULL);
    close(listener);
    assert_true(d.fd >= 0);
    assert_int_equal(pthread_create(&t, NULL, run_full_destination, &d), 0);
    struct migrate_link l = {.in = src, .out = src, .stall_ms = 5000};
    source_handshake(&l);
    int r = stream_bundle(&l, 200, false, &sent);
    pthread_join(t, NULL);
    close(src);
    assert_int_equal(r, -ECANCELED);
    assert_non_null(strstr(err_msg(), "refused: writing the VM's bundle into a file without a "
                                      "name in '/scratch': No space left on device"));
}

/* ---- pre-copy rounds, on made-up clocks ---- */

/* An idle guest: round 0 sends 1 GiB at 100 MB/s, 400 KiB dirty after
 * it: 4 ms at that rate, well inside what the first round allows (a
 * 300 ms limit less the pause's 50 ms rest, an eighth of it: 31 ms): stop.
 * The expected downtime counts the pause's rest. */
static void idle_guest_stops_after_one_round(void **state)
{
    struct precopy p = {.max_downtime_ms = 300};
    (void)state;
    assert_int_equal(precopy_round(&p, 1ull << 30, 400 << 10, 400 << 10, 10.737), PRECOPY_STOP);
    assert_int_equal(p.round, 1);
    assert_true(p.bandwidth > 99e6 && p.bandwidth < 101e6);
    assert_true(p.expected_downtime_ms > 54 && p.expected_downtime_ms < 55);
    assert_int_equal(p.throttle, 0);
}

/* A guest dirtying 64 MiB/s under a 100 MB/s link: the rounds do not
 * shrink what is left, so after two such rounds the vCPUs are throttled,
 * step by step, until the rest fits. */
static void fast_dirtier_gets_throttled(void **state)
{
    struct precopy p = {.max_downtime_ms = 100, .max_bandwidth = 100000000};
    uint64_t mib = 1 << 20;
    (void)state;
    assert_int_equal(precopy_round(&p, 1ull << 30, 640 * mib, 640 * mib, 10), PRECOPY_AGAIN);
    assert_int_equal(p.throttle, 0);
    assert_int_equal(precopy_round(&p, 640 * mib, 448 * mib, 448 * mib, 7), PRECOPY_AGAIN);
    assert_int_equal(p.throttle, PRECOPY_THROTTLE_STEP);
    assert_true(p.dirty_rate > 60 * 1e6);
    /* Still outrunning half the link at 20%: two more rounds, 40%. */
    assert_int_equal(precopy_round(&p, 448 * mib, 300 * mib, 300 * mib, 4.7), PRECOPY_AGAIN);
    assert_int_equal(p.throttle, PRECOPY_THROTTLE_STEP);
    assert_int_equal(precopy_round(&p, 300 * mib, 200 * mib, 200 * mib, 3.15), PRECOPY_AGAIN);
    assert_int_equal(p.throttle, 2 * PRECOPY_THROTTLE_STEP);
    /* Slowed enough: 4 MiB left at 100 MB/s is 42 ms, more than round 5
     * allows (the limit less 50 ms, 5/8 of it: 31 ms); one more, 2 MiB
     * (21 ms): stop. No more throttle once it fits the limit. */
    assert_int_equal(precopy_round(&p, 200 * mib, 4 * mib, 4 * mib, 2.1), PRECOPY_AGAIN);
    assert_int_equal(precopy_round(&p, 4 * mib, 2 * mib, 2 * mib, 0.042), PRECOPY_STOP);
    assert_int_equal(p.throttle, 2 * PRECOPY_THROTTLE_STEP);
}

/* A guest that dirties in bursts: after round 0, 20 MiB left (210 ms at
 * 100 MB/s) fits a 300 ms limit, where QEMU would stop; the first rounds
 * ask for less (31 ms, then 62), and the round that ends between bursts
 * leaves 1 MiB: stop there, with a tenth of the pause. Not throttled: it
 * fits the limit all along. */
static void bursty_guest_stops_between_bursts(void **state)
{
    struct precopy p = {.max_downtime_ms = 300, .max_bandwidth = 100000000};
    uint64_t mib = 1 << 20;
    (void)state;
    assert_int_equal(precopy_round(&p, 1ull << 30, 20 * mib, 20 * mib, 10.7), PRECOPY_AGAIN);
    assert_true(p.expected_downtime_ms > 255 && p.expected_downtime_ms < 265);
    assert_int_equal(precopy_round(&p, 20 * mib, 20 * mib, 20 * mib, 0.21), PRECOPY_AGAIN);
    assert_int_equal(precopy_round(&p, 20 * mib, 1 * mib, 1 * mib, 0.21), PRECOPY_STOP);
    assert_int_equal(p.throttle, 0);
    /* A round that sent 64 KiB in 20 ms timed the dirty log's fetch, not
     * the link: 1 MiB left is still 10 ms at the last measured rate (at
     * 3 MB/s it would be 320 ms), stop. */
    struct precopy q = {.max_downtime_ms = 300, .max_bandwidth = 100000000};
    assert_int_equal(precopy_round(&q, 1ull << 30, 20 * mib, 20 * mib, 10.7), PRECOPY_AGAIN);
    assert_int_equal(precopy_round(&q, 64 << 10, 1 * mib, 1 * mib, 0.02), PRECOPY_STOP);
    assert_true(q.bandwidth > 99e6);
}

/* Patience runs out: a guest that leaves 20 MiB after every round (210 ms
 * of pages, within the 250 ms the limit leaves them) is stopped once a
 * round allows that much -- round 7 (7/8 of 250: 219 ms) -- not after
 * all PRECOPY_MAX_ROUNDS, and never throttled (the pause fits). */
static void patience_runs_out_within_the_limit(void **state)
{
    struct precopy p = {.max_downtime_ms = 300, .max_bandwidth = 100000000};
    uint64_t mib = 1 << 20;
    enum precopy_step step = PRECOPY_AGAIN;
    (void)state;
    while (step == PRECOPY_AGAIN)
        step = precopy_round(&p, 20 * mib, 20 * mib, 20 * mib, 0.21);
    assert_int_equal(step, PRECOPY_STOP);
    assert_int_equal(p.round, 7);
    assert_int_equal(p.throttle, 0);
    /* A limit under twice the pause's rest leaves the pages half of it. */
    struct precopy small = {.max_downtime_ms = 40, .max_bandwidth = 100000000};
    for (unsigned i = 0; i < PRECOPY_PATIENT_ROUNDS - 1; i++)
        assert_int_equal(precopy_round(&small, 2 * mib, 2 * mib, 2 * mib, 0.021), PRECOPY_AGAIN);
    assert_int_equal(precopy_round(&small, 2 * mib, 1900000, 1900000, 0.021), PRECOPY_STOP);
}

/* The link never measures faster than the cap, and a guest that never
 * converges is stopped after the last round anyway. */
static void cap_and_round_limit(void **state)
{
    struct precopy p = {.max_downtime_ms = 1, .max_bandwidth = 1000};
    enum precopy_step step = PRECOPY_AGAIN;
    (void)state;
    for (unsigned i = 0; i < PRECOPY_MAX_ROUNDS && step == PRECOPY_AGAIN; i++)
        step = precopy_round(&p, 1 << 20, 1 << 20, 1 << 20, 0.001);
    assert_int_equal(step, PRECOPY_GIVE_UP);
    assert_int_equal(p.round, PRECOPY_MAX_ROUNDS);
    assert_true(p.bandwidth <= 1000);
    assert_true(p.throttle <= PRECOPY_THROTTLE_MAX);
    /* 5000 bytes at 1000 B/s: 5 s from the start; 2 s in, 3 s to wait. */
    assert_true(precopy_pace(&p, 5000, 2) > 2.99 && precopy_pace(&p, 5000, 2) < 3.01);
    assert_true(precopy_pace(&p, 5000, 6) == 0);
}

/* Warm: round 0 while the VM runs, then the pause, however much is left
 * (the guest dirtying 64 MiB/s) and with no throttle: the pause sends what
 * changed during that round, never a second round. */
static void warm_is_round_zero_alone(void **state)
{
    struct precopy p = {.max_downtime_ms = 1, .max_bandwidth = 100000000, .max_rounds = 1};
    uint64_t mib = 1 << 20;
    (void)state;
    assert_int_equal(precopy_round(&p, 1ull << 30, 640 * mib, 640 * mib, 10), PRECOPY_GIVE_UP);
    assert_int_equal(p.round, 1);
    assert_int_equal(p.throttle, 0);
}

/* The source, once its VM runs on the destination, tears down behind
 * every other task (SCHED_IDLE), from the hand-over on (DONE: its answer
 * and the rest of its end too): in a one-CPU host the destination's guest
 * must not wait for the old copy's RAM to be freed. A machine that was
 * not handed over tears down as it ran. */
struct teardown {
    bool handed_over;
    int policy_then, policy_after; /* right after the hand-over; after the teardown */
};

static void *destroy_and_tell_policy(void *arg)
{
    struct teardown *t = arg;
    struct machine *m = calloc(1, sizeof(*m));

    assert_non_null(m);
    if (t->handed_over)
        machine_handed_over(m);
    t->policy_then = sched_getscheduler(0);
    machine_destroy(m);
    t->policy_after = sched_getscheduler(0);
    return NULL;
}

static struct teardown teardown_policy(bool handed_over)
{
    struct teardown t = {.handed_over = handed_over};
    pthread_t thread;

    assert_int_equal(pthread_create(&thread, NULL, destroy_and_tell_policy, &t), 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    return t;
}

static void handed_over_source_tears_down_idle(void **state)
{
    (void)state;
    assert_int_equal(teardown_policy(true).policy_then, SCHED_IDLE);
    assert_int_equal(teardown_policy(true).policy_after, SCHED_IDLE);
    assert_int_equal(teardown_policy(false).policy_after, SCHED_OTHER);
}

static int tcp_no_delay(int fd)
{
    int on = 0;
    socklen_t len = sizeof(on);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    return on;
}

/* A TCP link sends each frame at once, both ways (TCP_NODELAY): Nagle's
 * algorithm held END behind unacknowledged bytes until the destination's
 * delayed ACK, up to 40 ms of the pause. */
static void tcp_links_send_at_once(void **state)
{
    char address[32];
    int listener = -1, out, in;

    (void)state;
    for (unsigned port = 47900; listener < 0 && port < 48000; port++) {
        snprintf(address, sizeof(address), "tcp:127.0.0.1:%u", port);
        if ((listener = migrate_listen(address)) < 0)
            err_clear();
    }
    assert_true(listener >= 0);
    out = migrate_connect(address);
    assert_true(out >= 0);
    in = migrate_accept(listener);
    assert_true(in >= 0);
    assert_int_equal(tcp_no_delay(out), 1);
    assert_int_equal(tcp_no_delay(in), 1);
    close(in);
    close(out);
    close(listener);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_known_and_agreed),
        cmocka_unit_test(zero_pages_found_exactly),
        cmocka_unit_test(pages_sum_sees_changes),
        cmocka_unit_test(placing_pages),
        cmocka_unit_test(frames_round_trip),
        cmocka_unit_test(hostile_frames_refused),
        cmocka_unit_test(wrong_frame_for_the_step),
        cmocka_unit_test(stalled_link_times_out),
        cmocka_unit_test(hello_checks_version_and_cpu),
        cmocka_unit_test(addresses),
        cmocka_unit_test(receives_a_bundle),
        cmocka_unit_test(answers_an_offer_of_layers),
        cmocka_unit_test(hostile_offers_refused),
        cmocka_unit_test(refuses_a_corrupt_bundle),
        cmocka_unit_test(receives_a_bundle_in_parts),
        cmocka_unit_test(refuses_parts_out_of_place),
        cmocka_unit_test(refuses_a_config_too_big),
        cmocka_unit_test(receives_live_pages),
        cmocka_unit_test(a_version_3_source_is_taken),
        cmocka_unit_test(refuses_pages_outside_ram),
        cmocka_unit_test(a_cut_link_leaves_nothing),
        cmocka_unit_test(refuses_short_ram_and_part_frames),
        cmocka_unit_test(source_hears_the_destination_is_full),
        cmocka_unit_test(a_reset_link_still_says_why),
        cmocka_unit_test(idle_guest_stops_after_one_round),
        cmocka_unit_test(fast_dirtier_gets_throttled),
        cmocka_unit_test(bursty_guest_stops_between_bursts),
        cmocka_unit_test(handed_over_source_tears_down_idle),
        cmocka_unit_test(tcp_links_send_at_once),
        cmocka_unit_test(patience_runs_out_within_the_limit),
        cmocka_unit_test(cap_and_round_limit),
        cmocka_unit_test(warm_is_round_zero_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
