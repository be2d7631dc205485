#include "core/console.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/loop.h"
#include "util/ring.h"
#include "util/trace.h"
#include "confine/confine.h"

#define CTRL_A 0x01
#define MARKER_MAX 256
/* What one read of input takes: a client typing fast still leaves the
 * loop to the stop request and the control socket between its reads. */
#define INPUT_CHUNK 256
/* Output the host has not taken yet: bursts up to this much are kept. */
#define OUTPUT_BUFFER (256u << 10)
/* At the end, a writer that made no progress for this long is given up. */
#define DRAIN_PATIENCE_NS 1000000000L
/* Input whose echo is looked for (a typed line; more is not looked for). */
#define ECHO_MAX 64

struct console {
    bool interactive;
    bool tty_saved;
    struct termios saved;
    bool escape_pending;
    pthread_mutex_t lock;
    console_input_fn input;
    void *input_opaque;
    console_output_fn next_output; /* console_on_next_output() */
    void *next_output_opaque;
    /* Input given to the guest whose echo has not come out yet: the
     * guest's terminal echoing it back is no answer (echo_at: the next
     * byte expected; a newline as "\n" or "\r\n"). */
    uint8_t echo[ECHO_MAX];
    size_t echo_len, echo_at;
    char marker[MARKER_MAX];
    size_t marker_len;
    char window[MARKER_MAX]; /* the last marker_len output bytes */
    size_t window_fill;
    char line[160]; /* the output line so far, for trace_guest_line() */
    size_t line_fill;
    struct loop *loop;
    bool quit;
    int clients[CONSOLE_INPUT_CLIENTS]; /* console_add_input()'s, -1 when free */

    /* Guest output goes through a queue that a writer thread empties into
     * out_fd, so a host that stops reading (a full pipe, a stopped
     * terminal) costs dropped bytes, never a blocked vCPU. */
    int out_fd;
    pthread_mutex_t out_lock;
    pthread_cond_t out_queued;  /* bytes queued, or closing */
    pthread_cond_t out_written; /* the writer made progress */
    struct ring out;
    bool closing, writer_started;
    pthread_t writer;
    uint64_t written;
    char *log_path;     /* out_fd is this log, rotated at log_limit bytes */
    uint64_t log_limit;
};

static void *writer_thread(void *opaque);

static int start_output(struct console *con, int out_fd)
{
    pthread_condattr_t attr;
    int r = ring_init(&con->out, OUTPUT_BUFFER);

    if (r < 0)
        return r;
    con->out_fd = out_fd;
    pthread_mutex_init(&con->out_lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&con->out_queued, NULL);
    pthread_cond_init(&con->out_written, &attr);
    pthread_condattr_destroy(&attr);
    if (confine_thread_start(&con->writer, CONFINE_CONSOLE, writer_thread, con) != 0)
        return err_plain(EAGAIN, "cannot start the console's output thread");
    con->writer_started = true;
    return 0;
}

int console_open(struct console **out, bool interactive, const char *marker)
{
    return console_open_fd(out, interactive, marker, STDOUT_FILENO);
}

int console_open_fd(struct console **out, bool interactive, const char *marker, int out_fd)
{
    struct console *con = calloc(1, sizeof(*con));
    int r;

    if (!con)
        return err_set(ENOMEM, "console");
    if (marker && strlen(marker) >= MARKER_MAX) {
        free(con);
        return err_plain(EINVAL, "--trace-until text is longer than %d bytes", MARKER_MAX - 1);
    }
    pthread_mutex_init(&con->lock, NULL);
    for (unsigned i = 0; i < CONSOLE_INPUT_CLIENTS; i++)
        con->clients[i] = -1;
    r = start_output(con, out_fd);
    if (r < 0) {
        console_close(con);
        return r;
    }
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

/* Moves a full log aside (NAME.log -> NAME.log.1, one generation) and
 * points out_fd, and stderr when it shares the log, at a fresh one. */
static void rotate_log(struct console *con)
{
    char *old = NULL;
    struct stat out_st, err_st;
    bool err_too = fstat(con->out_fd, &out_st) == 0 && fstat(STDERR_FILENO, &err_st) == 0 &&
                   out_st.st_dev == err_st.st_dev && out_st.st_ino == err_st.st_ino;
    int fd;

    if (asprintf(&old, "%s.1", con->log_path) < 0)
        return;
    if (rename(con->log_path, old) == 0 &&
        (fd = open(con->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
                   0600)) >= 0) {
        dup2(fd, con->out_fd);
        if (err_too)
            dup2(fd, STDERR_FILENO);
        close(fd);
    }
    free(old);
}

/* How much of len may go to out_fd now: a log is rotated when full. */
static size_t log_room(struct console *con, size_t len)
{
    struct stat st;

    if (!con->log_path || fstat(con->out_fd, &st) < 0)
        return len;
    if ((uint64_t)st.st_size >= con->log_limit) {
        rotate_log(con);
        if (fstat(con->out_fd, &st) < 0 || (uint64_t)st.st_size >= con->log_limit)
            return len; /* could not rotate: better a long log than a lost one */
    }
    return con->log_limit - (uint64_t)st.st_size < len ? con->log_limit - (uint64_t)st.st_size
                                                         : len;
}

/* One write, the only place the writer may block; it can be cancelled
 * there when console_close() gives up on it. */
static ssize_t write_out(struct console *con, const uint8_t *buf, size_t len)
{
    ssize_t n;
    int old;

    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
    n = write(con->out_fd, buf, len);
    if (n < 0 && errno == EAGAIN) { /* someone made our stdout non-blocking */
        struct pollfd p = {.fd = con->out_fd, .events = POLLOUT};
        poll(&p, 1, -1);
        errno = EINTR;
    }
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    return n;
}

static void *writer_thread(void *opaque)
{
    struct console *con = opaque;
    int old;

    confine_thread(CONFINE_CONSOLE, "console");
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    pthread_mutex_lock(&con->out_lock);
    for (;;) {
        const uint8_t *span;
        size_t len;
        ssize_t n;

        while (con->out.len == 0 && !con->closing)
            pthread_cond_wait(&con->out_queued, &con->out_lock);
        if (con->out.len == 0)
            break;
        len = ring_peek(&con->out, &span);
        pthread_mutex_unlock(&con->out_lock);
        /* The producer only fills free space: span stays ours unlocked. */
        n = write_out(con, span, log_room(con, len));
        pthread_mutex_lock(&con->out_lock);
        if (n > 0) {
            ring_consume(&con->out, (size_t)n);
            con->written += (uint64_t)n;
        } else if (n == 0 || errno != EINTR) {
            ring_drop_all(&con->out); /* a closed stdout must not stop the guest */
        }
        pthread_cond_broadcast(&con->out_written);
    }
    pthread_mutex_unlock(&con->out_lock);
    return NULL;
}

static void add_ns(struct timespec *t, long ns)
{
    t->tv_nsec += ns;
    t->tv_sec += t->tv_nsec / 1000000000L;
    t->tv_nsec %= 1000000000L;
}

/* Lets the writer empty the queue while it makes progress; a writer stuck
 * on a host that reads nothing is cancelled and what it held dropped. */
static void stop_output(struct console *con)
{
    bool stuck = false;

    if (!con->writer_started)
        return;
    pthread_mutex_lock(&con->out_lock);
    con->closing = true;
    pthread_cond_signal(&con->out_queued);
    while (con->out.len && !stuck) {
        uint64_t before = con->written;
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        add_ns(&deadline, DRAIN_PATIENCE_NS);
        while (con->out.len && con->written == before && !stuck)
            stuck = pthread_cond_timedwait(&con->out_written, &con->out_lock, &deadline) ==
                    ETIMEDOUT;
    }
    pthread_mutex_unlock(&con->out_lock);
    if (stuck)
        pthread_cancel(con->writer);
    pthread_join(con->writer, NULL);
    ring_drop_all(&con->out);
    con->writer_started = false;
}

uint64_t console_dropped(struct console *con)
{
    uint64_t n;

    pthread_mutex_lock(&con->out_lock);
    n = con->out.dropped;
    pthread_mutex_unlock(&con->out_lock);
    return n;
}

void console_log_to(struct console *con, const char *path, uint64_t limit)
{
    pthread_mutex_lock(&con->out_lock);
    free(con->log_path);
    con->log_path = path ? strdup(path) : NULL;
    con->log_limit = limit;
    pthread_mutex_unlock(&con->out_lock);
}

void console_close(struct console *con)
{
    if (!con)
        return;
    if (con->out.buf)
        stop_output(con); /* before the terminal is restored: the last lines as they were */
    if (con->tty_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &con->saved);
    if (con->out.buf) {
        if (con->out.dropped)
            fprintf(stderr, "smolvm: %llu bytes of the guest's console output were dropped "
                            "(stdout did not keep up)\n",
                    (unsigned long long)con->out.dropped);
        ring_free(&con->out);
        pthread_cond_destroy(&con->out_queued);
        pthread_cond_destroy(&con->out_written);
        pthread_mutex_destroy(&con->out_lock);
    }
    for (unsigned i = 0; i < CONSOLE_INPUT_CLIENTS; i++)
        if (con->clients[i] >= 0)
            close(con->clients[i]); /* their peers see the console end */
    free(con->log_path);
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

/* Lines for the boot trace's guest phases: a marker is near a line's start,
 * so a longer line is cut (its head is enough). */
static void watch_line(struct console *con, uint8_t byte)
{
    if (byte == '\n') {
        trace_guest_line(con->line, con->line_fill);
        con->line_fill = 0;
    } else if (con->line_fill < sizeof(con->line)) {
        con->line[con->line_fill++] = (char)byte;
    }
}

/* Whether output byte is the echo of the input given (consumed then);
 * any other output ends the echo looked for. */
static bool is_echo(struct console *con, uint8_t byte)
{
    if (con->echo_at < con->echo_len) {
        uint8_t want = con->echo[con->echo_at];
        if (byte == '\r' && want == '\n')
            return true; /* a terminal's "\r\n" for a newline */
        if (byte == want) {
            con->echo_at++;
            return true;
        }
    }
    con->echo_len = con->echo_at = 0;
    return false;
}

/* The output told to console_on_next_output()'s function: the first
 * byte that is not an echo of the input given (with nobody told and no
 * echo looked for, no byte is looked at). */
static void watch_answer(struct console *con, const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len && (con->next_output || con->echo_len); i++)
        if (!is_echo(con, buf[i]) && con->next_output) {
            console_output_fn fn = con->next_output;
            con->next_output = NULL;
            fn(con->next_output_opaque);
            return;
        }
}

void console_output(struct console *con, const uint8_t *buf, size_t len)
{
    bool lines = trace_guest_enabled();
    if (len == 0)
        return;
    trace_mark(TRACE_FIRST_SERIAL_BYTE);
    pthread_mutex_lock(&con->lock);
    watch_answer(con, buf, len);
    for (size_t i = 0; i < len; i++) {
        watch_marker(con, buf[i]);
        if (lines)
            watch_line(con, buf[i]);
    }
    pthread_mutex_unlock(&con->lock);
    pthread_mutex_lock(&con->out_lock);
    if (ring_put(&con->out, buf, len))
        pthread_cond_signal(&con->out_queued);
    pthread_mutex_unlock(&con->out_lock);
}

void console_set_input(struct console *con, console_input_fn fn, void *opaque)
{
    pthread_mutex_lock(&con->lock);
    con->input = fn;
    con->input_opaque = opaque;
    pthread_mutex_unlock(&con->lock);
}

void console_on_next_output(struct console *con, console_output_fn fn, void *opaque)
{
    pthread_mutex_lock(&con->lock);
    con->next_output = fn;
    con->next_output_opaque = opaque;
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

/* Input given to the guest, as far as ECHO_MAX: its echo is looked for
 * (a carriage return as the newline a terminal makes of it). */
static void expect_echo(struct console *con, const uint8_t *buf, size_t len)
{
    if (con->echo_at == con->echo_len)
        con->echo_len = con->echo_at = 0;
    for (size_t i = 0; i < len && con->echo_len < ECHO_MAX; i++)
        con->echo[con->echo_len++] = buf[i] == '\r' ? '\n' : buf[i];
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
    if (fn)
        expect_echo(con, buf, len);
    pthread_mutex_unlock(&con->lock);
    if (fn && len)
        fn(opaque, buf, len);
}

static bool read_input(void *opaque, int fd)
{
    struct console *con = opaque;
    uint8_t buf[INPUT_CHUNK];
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

/* A client of the input socket: its bytes go to the guest as they are (no
 * Ctrl-A escapes: quitting is for the terminal that runs the VM). */
static bool read_client(void *opaque, int fd)
{
    struct console *con = opaque;
    uint8_t buf[INPUT_CHUNK];
    ssize_t n = read(fd, buf, sizeof(buf));

    if (n > 0) {
        deliver(con, buf, (size_t)n);
        return true;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    loop_remove(con->loop, fd);
    for (unsigned i = 0; i < CONSOLE_INPUT_CLIENTS; i++)
        if (con->clients[i] == fd)
            con->clients[i] = -1;
    close(fd);
    return true;
}

int console_add_input(struct console *con, int fd)
{
    int r = err_plain(EBUSY, "the console has %d input clients already", CONSOLE_INPUT_CLIENTS);

    for (unsigned i = 0; i < CONSOLE_INPUT_CLIENTS; i++)
        if (con->clients[i] < 0) {
            r = con->loop ? loop_add(con->loop, fd, read_client, con)
                          : err_plain(EINVAL, "the console is not attached to a loop");
            if (r == 0)
                con->clients[i] = fd;
            break;
        }
    if (r < 0)
        close(fd);
    return r;
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
