/* WebSocket (RFC 6455), the parts the web console needs: the handshake's
 * accept key, a parser of client frames that trusts nothing (each frame
 * masked, lengths bounded before anything is buffered, control frames
 * short and whole, fragments in order, reserved bits clear), and the
 * header of a server frame. No I/O: the caller owns the socket. */
#ifndef SMOLVM_SERVE_WEBSOCKET_H
#define SMOLVM_SERVE_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_CONTINUATION = 0x0,
    WS_TEXT = 0x1,
    WS_BINARY = 0x2,
    WS_CLOSE = 0x8,
    WS_PING = 0x9,
    WS_PONG = 0xa,
};

/* Close codes the parser fails with. */
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_TOO_BIG 1009

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 */
#define WS_CONTROL_MAX 125

/* Sec-WebSocket-Accept for the client's Sec-WebSocket-Key: false when the
 * key is not the base64 of 16 bytes. out: WS_ACCEPT_LEN + 1 bytes. */
bool ws_accept_key(const char *client_key, char out[WS_ACCEPT_LEN + 1]);

/* A message being read: data frames and their continuations, up to max
 * bytes in all; control frames between fragments are whole messages of
 * their own. */
struct ws_reader {
    size_t max;        /* the largest message taken */
    uint8_t *data;     /* the message so far (malloc'd) */
    size_t len;
    int opcode;        /* the message's: WS_TEXT or WS_BINARY; -1: none open */
    uint8_t control[WS_CONTROL_MAX];
};

struct ws_message {
    int opcode;          /* WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING or WS_PONG */
    const uint8_t *data; /* valid until the next call */
    size_t len;
};

void ws_reader_init(struct ws_reader *r, size_t max);
void ws_reader_free(struct ws_reader *r);

/* Takes the bytes at buf (len of them): *used is how many it consumed (a
 * whole frame, or none). Returns 1 with *msg when a message is complete,
 * 0 when more bytes are needed (or a fragment was taken: call again with
 * the rest), or -WS_CLOSE_PROTOCOL / -WS_CLOSE_TOO_BIG: the client broke
 * the protocol, close the connection with that code. The payload at buf
 * is unmasked in place. */
int ws_read(struct ws_reader *r, uint8_t *buf, size_t len, size_t *used, struct ws_message *msg);

/* The header of an unmasked server frame with FIN set: 2, 4 or 10 bytes
 * into out (10 bytes of room). */
size_t ws_frame_header(uint8_t *out, enum ws_opcode opcode, uint64_t len);

#endif
