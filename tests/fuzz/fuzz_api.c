/* The REST API's request parsing fed arbitrary requests: the first byte
 * picks the method, the bytes up to the first newline are the path, the
 * rest is the body (routing, query, JSON, field checks). Nothing here
 * reaches the store: only what decides which operation runs, and with
 * what. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "serve/api.h"
#include "serve/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "POST", "DELETE", "PUT"};
    static const char *const *const fields[] = {api_create_fields, api_save_fields, api_no_fields};
    char path[512];
    const uint8_t *nl;
    struct api_match m;
    json_t *error, *body;

    if (size < 1)
        return 0;
    const char *method = methods[data[0] % 4];
    const char *const *allowed = fields[(data[0] >> 2) % 3];
    data++, size--;
    nl = memchr(data, '\n', size);
    size_t n = nl ? (size_t)(nl - data) : size;
    if (n >= sizeof(path))
        n = sizeof(path) - 1;
    memcpy(path, data, n);
    path[n] = 0; /* as the server hands it over: a C string */
    api_route(method, path, &m, &error);
    json_decref(error);
    if (nl) {
        api_parse_body((const char *)nl + 1, size - (size_t)(nl + 1 - data), allowed, &body,
                       &error);
        json_decref(body);
        json_decref(error);
    }
    return 0;
}
