#include "serve/websocket.h"

#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <stdlib.h>
#include <string.h>

#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define KEY_BYTES 16
#define FIN 0x80
#define RESERVED 0x70
#define OPCODE 0x0f
#define MASKED 0x80
#define LENGTH 0x7f

bool ws_accept_key(const char *client_key, char out[WS_ACCEPT_LEN + 1])
{
    struct base64_decode_ctx dec;
    struct sha1_ctx sha;
    uint8_t raw[KEY_BYTES + 2], digest[SHA1_DIGEST_SIZE];
    size_t raw_len = sizeof(raw), key_len = strlen(client_key);

    if (key_len != BASE64_ENCODE_RAW_LENGTH(KEY_BYTES))
        return false;
    base64_decode_init(&dec);
    if (!base64_decode_update(&dec, &raw_len, raw, key_len, client_key) ||
        !base64_decode_final(&dec) || raw_len != KEY_BYTES)
        return false;
    sha1_init(&sha);
    sha1_update(&sha, key_len, (const uint8_t *)client_key);
    sha1_update(&sha, strlen(GUID), (const uint8_t *)GUID);
    sha1_digest(&sha, sizeof(digest), digest);
    base64_encode_raw(out, sizeof(digest), digest);
    out[WS_ACCEPT_LEN] = 0;
    return true;
}

void ws_reader_init(struct ws_reader *r, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
    r->opcode = -1;
}

void ws_reader_free(struct ws_reader *r)
{
    free(r->data);
    ws_reader_init(r, r->max);
}

static bool is_control(int opcode)
{
    return opcode & 0x8;
}

static bool known(int opcode)
{
    return opcode == WS_CONTINUATION || opcode == WS_TEXT || opcode == WS_BINARY ||
           opcode == WS_CLOSE || opcode == WS_PING || opcode == WS_PONG;
}

/* A frame's header: its length in *header, payload length in *payload;
 * 0: not all of the header is there yet. */
static int parse_header(const uint8_t *buf, size_t len, size_t *header, uint64_t *payload)
{
    size_t need = 2;
    uint64_t n;

    if (len < need)
        return 0;
    n = buf[1] & LENGTH;
    if (n == 126)
        need += 2;
    else if (n == 127)
        need += 8;
    need += 4; /* the mask */
    if (len < need)
        return 0;
    if (n == 126)
        n = (uint64_t)buf[2] << 8 | buf[3];
    else if (n == 127) {
        if (buf[2] & 0x80) /* the top bit must be 0 */
            return -WS_CLOSE_PROTOCOL;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | buf[2 + i];
    }
    *header = need;
    *payload = n;
    return 1;
}

int ws_read(struct ws_reader *r, uint8_t *buf, size_t len, size_t *used, struct ws_message *msg)
{
    size_t header;
    uint64_t payload;
    int opcode, got;
    bool fin;
    uint8_t *data;

    *used = 0;
    if (len >= 1) {
        opcode = buf[0] & OPCODE;
        fin = buf[0] & FIN;
        if ((buf[0] & RESERVED) || !known(opcode) || (is_control(opcode) && !fin))
            return -WS_CLOSE_PROTOCOL;
        if (opcode == WS_CONTINUATION ? r->opcode < 0 : !is_control(opcode) && r->opcode >= 0)
            return -WS_CLOSE_PROTOCOL; /* a continuation of nothing, or a message inside one */
    }
    if (len >= 2 && !(buf[1] & MASKED))
        return -WS_CLOSE_PROTOCOL; /* clients must mask */
    if ((got = parse_header(buf, len, &header, &payload)) <= 0)
        return got;
    if (is_control(opcode) && payload > WS_CONTROL_MAX)
        return -WS_CLOSE_PROTOCOL;
    /* Refused from the header, before any of it is buffered. */
    if (!is_control(opcode) && payload > r->max - r->len)
        return -WS_CLOSE_TOO_BIG;
    if (len - header < payload)
        return 0;
    data = buf + header;
    for (uint64_t i = 0; i < payload; i++)
        data[i] ^= buf[header - 4 + (i & 3)];
    *used = header + (size_t)payload;
    if (is_control(opcode)) {
        memcpy(r->control, data, (size_t)payload);
        *msg = (struct ws_message){opcode, r->control, (size_t)payload};
        return 1;
    }
    if (payload) {
        uint8_t *grown = realloc(r->data, r->len + (size_t)payload);
        if (!grown)
            return -WS_CLOSE_TOO_BIG;
        memcpy(grown + r->len, data, (size_t)payload);
        r->data = grown;
        r->len += (size_t)payload;
    }
    if (opcode != WS_CONTINUATION)
        r->opcode = opcode;
    if (!fin)
        return 0;
    *msg = (struct ws_message){r->opcode, r->data, r->len};
    r->opcode = -1;
    r->len = 0; /* the bytes stay until the next message overwrites them */
    return 1;
}

size_t ws_frame_header(uint8_t *out, enum ws_opcode opcode, uint64_t len)
{
    out[0] = (uint8_t)(FIN | opcode);
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}
