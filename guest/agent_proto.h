/* The guest agent's wire protocol (docs/agent-protocol.md), shared by the
 * agent (guest/agent.c, a static program of its own) and smolvm's exec and
 * cp: frames of a 4-byte little-endian length N (1..AGENT_FRAME_MAX), then
 * N bytes: a type byte and N-1 bytes of payload. Request fields are
 * NUL-terminated "key=value" strings. Header-only so the agent needs no
 * part of smolvm. */
#ifndef SMOLVM_GUEST_AGENT_PROTO_H
#define SMOLVM_GUEST_AGENT_PROTO_H

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AGENT_PORT 5252
#define AGENT_FRAME_MAX (1u << 20) /* type byte and payload */
#define AGENT_CHUNK (32u << 10)    /* data frames the agent and smolvm send */

enum agent_type {
    /* client -> agent: the first frame says what the connection is for */
    AGENT_EXEC = 'E',    /* fields: arg= (each, in order), env=K=V, cwd=, user=, tty=1,
                            rows=, cols=, stdin=1, time=SECONDS */
    AGENT_PUT = 'P',     /* fields: path=, name=, mode= (octal), mtime=; then DATA frames */
    AGENT_GET = 'G',     /* fields: path= */
    AGENT_STDIN = 'I',   /* bytes for the command; empty: end of input */
    AGENT_SIGNAL = 'S',  /* fields: signal=N */
    AGENT_WINSIZE = 'W', /* fields: rows=, cols= */
    AGENT_HELLO = 'H',   /* fields: time=SECONDS.NANOS, hostname= (the VMM, after a start) */
    /* both ways */
    AGENT_DATA = 'D',    /* file bytes; empty: end of file */
    /* agent -> client */
    AGENT_STDOUT = 'O',
    AGENT_STDERR = 'R',
    AGENT_EXIT = 'X',    /* fields: exit=N or signal=N */
    AGENT_ERROR = 'Z',   /* a message; the connection ends */
    AGENT_FILE = 'F',    /* fields: mode=, mtime=, size= (before GET's DATA) */
    AGENT_OK = 'K',      /* PUT or HELLO done */
};

static inline int agent_full_write(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* 1: all read; 0: end of file before the first byte; -1: error or cut short. */
static inline int agent_full_read(int fd, void *data, size_t len)
{
    uint8_t *p = data;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0 && got == 0)
                return 0;
            if (n == 0)
                errno = EPIPE;
            return -1;
        }
        got += (size_t)n;
    }
    return 1;
}

static inline int agent_send(int fd, uint8_t type, const void *payload, uint32_t len)
{
    uint8_t head[5];
    uint32_t n = len + 1;
    if (len >= AGENT_FRAME_MAX)
        return -1;
    for (int i = 0; i < 4; i++)
        head[i] = (uint8_t)(n >> (8 * i));
    head[4] = type;
    return agent_full_write(fd, head, sizeof(head)) == 0 &&
                   (len == 0 || agent_full_write(fd, payload, len) == 0)
               ? 0
               : -1;
}

/* One frame into buf (AGENT_FRAME_MAX bytes; the payload is NUL-terminated
 * after its end for convenience, so buf holds AGENT_FRAME_MAX + 1). 1: a
 * frame; 0: the peer closed between frames; -1: error or a malformed length. */
static inline int agent_recv(int fd, uint8_t *type, uint8_t *buf, uint32_t *len)
{
    uint8_t head[4];
    uint32_t n;
    int r = agent_full_read(fd, head, sizeof(head));
    if (r <= 0)
        return r;
    n = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 |
        (uint32_t)head[3] << 24;
    if (n < 1 || n > AGENT_FRAME_MAX) {
        errno = EPROTO;
        return -1;
    }
    if (agent_full_read(fd, type, 1) != 1 || (n > 1 && agent_full_read(fd, buf, n - 1) != 1))
        return -1;
    *len = n - 1;
    buf[*len] = 0;
    return 1;
}

/* Appends "key=value\0" to a payload of *len bytes (size bytes of room);
 * -1 when it does not fit. */
static inline int agent_field(uint8_t *payload, uint32_t size, uint32_t *len, const char *key,
                              const char *value)
{
    size_t k = strlen(key), v = strlen(value);
    if (k + v + 2 > size - *len)
        return -1;
    memcpy(payload + *len, key, k);
    payload[*len + k] = '=';
    memcpy(payload + *len + k + 1, value, v + 1);
    *len += (uint32_t)(k + v + 2);
    return 0;
}

/* Walks the fields of a payload: *at starts at 0; returns the next
 * "key=value" string whose key is key (NULL: any), or NULL at the end.
 * A last field without its NUL ends at the payload's end (agent_recv
 * terminates the buffer). */
static inline const char *agent_next_field(const uint8_t *payload, uint32_t len, uint32_t *at,
                                           const char *key)
{
    size_t k = key ? strlen(key) : 0;
    while (*at < len) {
        const char *f = (const char *)payload + *at;
        *at += (uint32_t)strnlen(f, len - *at) + 1;
        if (!key || (strncmp(f, key, k) == 0 && f[k] == '='))
            return key ? f + k + 1 : f;
    }
    return NULL;
}

/* mode= (octal) and mtime= of st: GET's FILE frame, PUT's request and each
 * folder entry carry them. -1 when they do not fit. */
static inline int agent_attr_fields(uint8_t *fields, uint32_t size, uint32_t *len,
                                    const struct stat *st)
{
    char text[32];
    snprintf(text, sizeof(text), "%o", (unsigned)(st->st_mode & 07777));
    if (agent_field(fields, size, len, "mode", text) < 0)
        return -1;
    snprintf(text, sizeof(text), "%lld", (long long)st->st_mtime);
    return agent_field(fields, size, len, "mtime", text);
}

/* The fields of a folder entry's 'N' frame, from an nftw callback's
 * arguments (root_len: the length of the folder's own path): path=
 * (relative to the folder, "." for itself), type= (d, f or l), mode=,
 * mtime=, and a link's target=. 1: send it (a file's DATA follows);
 * 0: leave it out (fifos, sockets, devices, the unreadable, a link that
 * cannot be read); -1: the fields do not fit. Both ends of cp send
 * folders this way. */
static inline int agent_entry_fields(const char *fpath, size_t root_len, const struct stat *st,
                                     int flag, uint8_t *fields, uint32_t size, uint32_t *len)
{
    char target[4096];
    const char *rel = fpath + root_len;
    const char *kind = S_ISDIR(st->st_mode) ? "d" : S_ISREG(st->st_mode) ? "f"
                       : S_ISLNK(st->st_mode) ? "l" : NULL;

    while (*rel == '/')
        rel++;
    if (!kind || flag == FTW_NS || flag == FTW_DNR)
        return 0;
    if (agent_field(fields, size, len, "path", *rel ? rel : ".") < 0 ||
        agent_field(fields, size, len, "type", kind) < 0 ||
        agent_attr_fields(fields, size, len, st) < 0)
        return -1;
    if (kind[0] == 'l') {
        ssize_t n = readlink(fpath, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = 0;
        if (n <= 0 || agent_field(fields, size, len, "target", target) < 0)
            return 0;
    }
    return 1;
}

#endif
