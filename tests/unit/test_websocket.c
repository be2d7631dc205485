/* The web console's WebSocket framing against hostile clients: unmasked
 * frames, lengths over the limit (refused from the header), control
 * frames fragmented or long, fragments out of order, reserved bits,
 * unknown opcodes; and every prefix of a valid stream is "need more". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "serve/websocket.h"

static void accept_key_from_the_rfc(void **state)
{
    char out[WS_ACCEPT_LEN + 1];
    (void)state;

    assert_true(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out));
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_false(ws_accept_key("", out));
    assert_false(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", out));
    assert_false(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ===", out));
    assert_false(ws_accept_key("!!!!!!!!!!!!!!!!!!!!!!!=", out));
}

/* A masked client frame of payload into out; its length. */
static size_t client_frame(uint8_t *out, int first_byte, const void *payload, size_t len)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t n = 0;

    out[n++] = (uint8_t)first_byte;
    if (len < 126) {
        out[n++] = (uint8_t)(0x80 | len);
    } else {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    }
    memcpy(out + n, mask, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        out[n + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    return n + len;
}

static void masked_hello_from_the_rfc(void **state)
{
    uint8_t frame[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct ws_reader r;
    struct ws_message m;
    size_t used;
    (void)state;

    ws_reader_init(&r, 1024);
    /* Every prefix: more is needed, nothing consumed. */
    for (size_t n = 0; n < sizeof(frame); n++) {
        uint8_t copy[sizeof(frame)];
        memcpy(copy, frame, sizeof(frame));
        assert_int_equal(ws_read(&r, copy, n, &used, &m), 0);
        assert_int_equal(used, 0);
    }
    assert_int_equal(ws_read(&r, frame, sizeof(frame), &used, &m), 1);
    assert_int_equal(used, sizeof(frame));
    assert_int_equal(m.opcode, WS_TEXT);
    assert_int_equal(m.len, 5);
    assert_memory_equal(m.data, "Hello", 5);
    ws_reader_free(&r);
}

static void refuses_what_breaks_the_protocol(void **state)
{
    uint8_t f[64];
    struct ws_reader r;
    struct ws_message m;
    size_t used;
    (void)state;

    ws_reader_init(&r, 1024);
    /* Unmasked (a server's frame sent by a client). */
    uint8_t unmasked[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    assert_int_equal(ws_read(&r, unmasked, sizeof(unmasked), &used, &m), -WS_CLOSE_PROTOCOL);
    /* Reserved bits, unknown opcodes. */
    client_frame(f, 0x81 | 0x40, "x", 1);
    assert_int_equal(ws_read(&r, f, 7, &used, &m), -WS_CLOSE_PROTOCOL);
    for (int op = 3; op <= 0xf; op++) {
        if (op >= WS_CLOSE && op <= WS_PONG)
            continue;
        client_frame(f, 0x80 | op, "x", 1);
        assert_int_equal(ws_read(&r, f, 7, &used, &m), -WS_CLOSE_PROTOCOL);
    }
    /* A control frame fragmented, or longer than 125 bytes. */
    client_frame(f, WS_PING, "x", 1);
    assert_int_equal(ws_read(&r, f, 7, &used, &m), -WS_CLOSE_PROTOCOL);
    uint8_t long_ping[] = {0x89, 0x80 | 126, 0, 126, 1, 2, 3, 4};
    assert_int_equal(ws_read(&r, long_ping, sizeof(long_ping), &used, &m), -WS_CLOSE_PROTOCOL);
    /* A continuation of nothing. */
    client_frame(f, 0x80 | WS_CONTINUATION, "x", 1);
    assert_int_equal(ws_read(&r, f, 7, &used, &m), -WS_CLOSE_PROTOCOL);
    ws_reader_free(&r);
}

static void lengths_refused_from_the_header(void **state)
{
    struct ws_reader r;
    struct ws_message m;
    size_t used;
    /* Only the header: the payload it announces is never sent. */
    uint8_t huge[] = {0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4};
    uint8_t top_bit[] = {0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    uint8_t just_over[] = {0x82, 0x80 | 126, 0x04, 0x01, 1, 2, 3, 4}; /* 1025 */
    uint8_t f[2100];
    (void)state;

    ws_reader_init(&r, 1024);
    assert_int_equal(ws_read(&r, huge, sizeof(huge), &used, &m), -WS_CLOSE_TOO_BIG);
    assert_int_equal(ws_read(&r, top_bit, sizeof(top_bit), &used, &m), -WS_CLOSE_PROTOCOL);
    assert_int_equal(ws_read(&r, just_over, sizeof(just_over), &used, &m), -WS_CLOSE_TOO_BIG);
    /* The limit is the message's: two fragments of 600 bytes are over it. */
    memset(f + 1000, 'a', 600);
    size_t n = client_frame(f, WS_BINARY, f + 1000, 600);
    assert_int_equal(ws_read(&r, f, n, &used, &m), 0);
    assert_int_equal(used, n);
    n = client_frame(f, 0x80 | WS_CONTINUATION, f + 1000, 600);
    assert_int_equal(ws_read(&r, f, n, &used, &m), -WS_CLOSE_TOO_BIG);
    ws_reader_free(&r);
}

static void fragments_with_a_ping_between(void **state)
{
    uint8_t stream[256];
    struct ws_reader r;
    struct ws_message m;
    size_t n = 0, at = 0, used;
    int got;
    (void)state;

    ws_reader_init(&r, 1024);
    n += client_frame(stream + n, WS_TEXT, "ls ", 3);
    n += client_frame(stream + n, 0x80 | WS_PING, "p", 1);
    n += client_frame(stream + n, WS_CONTINUATION, "-l", 2);
    n += client_frame(stream + n, 0x80 | WS_CONTINUATION, " /\n", 3);
    n += client_frame(stream + n, 0x80 | WS_CLOSE, "\x03\xe8", 2);
    /* A new message inside an open one is refused (checked at the end). */
    while ((got = ws_read(&r, stream + at, n - at, &used, &m)) == 0 && used)
        at += used;
    assert_int_equal(got, 1);
    assert_int_equal(m.opcode, WS_PING);
    assert_memory_equal(m.data, "p", 1);
    at += used;
    while ((got = ws_read(&r, stream + at, n - at, &used, &m)) == 0 && used)
        at += used;
    assert_int_equal(got, 1);
    assert_int_equal(m.opcode, WS_TEXT);
    assert_int_equal(m.len, 8);
    assert_memory_equal(m.data, "ls -l /\n", 8);
    at += used;
    assert_int_equal(ws_read(&r, stream + at, n - at, &used, &m), 1);
    assert_int_equal(m.opcode, WS_CLOSE);
    assert_int_equal(at + used, n);

    n = client_frame(stream, WS_TEXT, "a", 1);
    assert_int_equal(ws_read(&r, stream, n, &used, &m), 0);
    n = client_frame(stream, 0x80 | WS_BINARY, "b", 1);
    assert_int_equal(ws_read(&r, stream, n, &used, &m), -WS_CLOSE_PROTOCOL);
    ws_reader_free(&r);
}

/* Random bytes: any answer, but no crash, no read past len (ASan). */
static void random_bytes(void **state)
{
    struct ws_reader r;
    struct ws_message m;
    size_t used;
    (void)state;

    srand(22);
    ws_reader_init(&r, 4096);
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand() % 40);
        uint8_t *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rand();
        if (len)
            buf[0] = (uint8_t)((buf[0] & 0x8f) | 0x80);
        if (len > 1)
            buf[1] |= 0x80;
        int got = ws_read(&r, buf, len, &used, &m);
        assert_true(used <= len);
        if (got < 0)
            ws_reader_free(&r);
        free(buf);
    }
    ws_reader_free(&r);
}

static void server_frame_headers(void **state)
{
    uint8_t h[10];
    (void)state;

    assert_int_equal(ws_frame_header(h, WS_BINARY, 5), 2);
    assert_memory_equal(h, "\x82\x05", 2);
    assert_int_equal(ws_frame_header(h, WS_BINARY, 300), 4);
    assert_memory_equal(h, "\x82\x7e\x01\x2c", 4);
    assert_int_equal(ws_frame_header(h, WS_CLOSE, 70000), 10);
    assert_memory_equal(h, "\x88\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accept_key_from_the_rfc),
        cmocka_unit_test(masked_hello_from_the_rfc),
        cmocka_unit_test(refuses_what_breaks_the_protocol),
        cmocka_unit_test(lengths_refused_from_the_header),
        cmocka_unit_test(fragments_with_a_ping_between),
        cmocka_unit_test(random_bytes),
        cmocka_unit_test(server_frame_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
