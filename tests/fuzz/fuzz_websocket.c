/* The web console's WebSocket reader fed what a hostile client sends: the
 * first byte sets the message limit, the rest is the stream, cut into
 * reads at the points the next bytes pick, as recv() would hand it over. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/websocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile int sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ws_reader r;
    struct ws_message m;
    uint8_t *buf;
    size_t have = 0, at = 0, used;

    if (size < 2)
        return 0;
    ws_reader_init(&r, (size_t)data[0] * 64);
    data++, size--;
    buf = malloc(size);
    if (!buf)
        return 0;
    for (size_t fed = 0; fed < size;) {
        size_t step = 1 + data[fed] % 64;
        if (step > size - fed)
            step = size - fed;
        memcpy(buf + have, data + fed, step);
        have += step;
        fed += step;
        int result;
        while ((result = ws_read(&r, buf + at, have - at, &used, &m)) >= 0 && (used || result)) {
            at += used;
            if (result == 1 && m.len) /* the message's bytes are readable */
                sink = m.data[0] + m.data[m.len - 1];
        }
        if (result < 0)
            break;
    }
    ws_reader_free(&r);
    free(buf);
    return 0;
}
