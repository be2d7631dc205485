#include "core/console.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "util/err.h"
#include "util/loop.h"
#include "util/trace.h"

#define CTRL_A 0x01
#define MARKER_MAX 256

struct console {
    bool interactive;
    bool tty_saved;
    struct termios saved;
    bool escape_pending;
    pthread_mutex_t lock;
    console_input_fn input;
    void *input_opaque;
    char marker[MARKER_MAX];
    size_t marker_len;
    char window[MARKER_MAX]; /* the last marker_len output bytes */
    size_t window_fill;
    struct loop *loop;
    bool quit;
};

int console_open(struct console **out, bool interactive, const char *marker)
{
    struct console *con = calloc(1, sizeof(*con));

    if (!con)
        return err_set(ENOMEM, "console");
    if (marker && strlen(marker) >= MARKER_MAX) {
        free(con);
        return err_plain(EINVAL, "--trace-until text is longer than %d bytes", MARKER_MAX - 1);
    }
    pthread_mutex_init(&con->lock, NULL);
    con->interactive = interactive;
    if (marker) {
        con->marker_len = strlen(marker);
        memcpy(con->marker, marker, con->marker_len);
    }
    if (interactive && tcgetattr(STDIN_FILENO, &con->saved) == 0) {
        struct termios raw = con->saved;
        cfmakeraw(&raw);
        raw.c_oflag |= OPOST | ONLCR; /* keep newlines readable on the host side */
        con->tty_saved = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    *out = con;
    return 0;
}

void console_close(struct console *con)
{
    if (!con)
        return;
    if (con->tty_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &con->saved);
    pthread_mutex_destroy(&con->lock);
    free(con);
}

static void watch_marker(struct console *con, uint8_t byte)
{
    if (con->marker_len == 0 || trace_recorded(TRACE_MARKER_SEEN))
        return;
    if (con->window_fill == con->marker_len) {
        memmove(con->window, con->window + 1, con->marker_len - 1);
        con->window_fill--;
    }
    con->window[con->window_fill++] = (char)byte;
    if (con->window_fill == con->marker_len &&
        memcmp(con->window, con->marker, con->marker_len) == 0)
        trace_mark(TRACE_MARKER_SEEN);
}

void console_output(struct console *con, const uint8_t *buf, size_t len)
{
    size_t done = 0;

    if (len == 0)
        return;
    trace_mark(TRACE_FIRST_SERIAL_BYTE);
    pthread_mutex_lock(&con->lock);
    for (size_t i = 0; i < len; i++)
        watch_marker(con, buf[i]);
    while (done < len) {
        ssize_t n = write(STDOUT_FILENO, buf + done, len - done);
        if (n <= 0 && errno != EINTR)
            break; /* a closed stdout must not stop the guest */
        if (n > 0)
            done += (size_t)n;
    }
    pthread_mutex_unlock(&con->lock);
}

void console_set_input(struct console *con, console_input_fn fn, void *opaque)
{
    pthread_mutex_lock(&con->lock);
    con->input = fn;
    con->input_opaque = opaque;
    pthread_mutex_unlock(&con->lock);
}

/* Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A, as in QEMU. Returns the
 * bytes left to forward in buf. */
static size_t filter_escapes(struct console *con, uint8_t *buf, size_t len, int *quit)
{
    size_t out = 0;

    for (size_t i = 0; i < len; i++) {
        uint8_t c = buf[i];
        if (con->escape_pending) {
            con->escape_pending = false;
            if (c == 'x' || c == 'X') {
                *quit = 1;
                return out;
            }
            if (c != CTRL_A)
                continue;
        } else if (c == CTRL_A) {
            con->escape_pending = true;
            continue;
        }
        buf[out++] = c;
    }
    return out;
}

/* The device's input function runs outside con->lock: the device holds its
 * own lock while it calls console_output(), so taking them in the other
 * order here would deadlock. */
static void deliver(struct console *con, const uint8_t *buf, size_t len)
{
    console_input_fn fn;
    void *opaque;

    pthread_mutex_lock(&con->lock);
    fn = con->input;
    opaque = con->input_opaque;
    pthread_mutex_unlock(&con->lock);
    if (fn && len)
        fn(opaque, buf, len);
}

static bool read_input(void *opaque, int fd)
{
    struct console *con = opaque;
    uint8_t buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));
    int quit = 0;

    if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            return true;
        loop_remove(con->loop, fd); /* stdin closed: the guest runs on without input */
        return true;
    }
    n = (ssize_t)(con->interactive ? filter_escapes(con, buf, (size_t)n, &quit) : (size_t)n);
    deliver(con, buf, (size_t)n);
    con->quit = quit;
    return !quit;
}

int console_attach(struct console *con, struct loop *l)
{
    con->loop = l;
    return loop_add(l, STDIN_FILENO, read_input, con);
}

bool console_quit_requested(const struct console *con)
{
    return con->quit;
}
