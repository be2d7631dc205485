/* The console's output path: a host that stops reading costs dropped
 * bytes, never a blocked vCPU; a detached VM's log is rotated; `smolvm
 * logs` shows the guest's text without its terminal escapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/console.h"
#include "util/ring.h"
#include "util/term.h"

#include "scratch.h"
#include "confine/confine.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void ring_full_drops_and_counts(void **state)
{
    struct ring r;
    const uint8_t *span;
    (void)state;

    assert_int_equal(ring_init(&r, 8), 0);
    assert_int_equal(ring_put(&r, "abcdef", 6), 6);
    assert_int_equal(ring_put(&r, "ghijkl", 6), 2); /* "gh" fits, "ijkl" dropped */
    assert_int_equal(r.dropped, 4);
    assert_int_equal(ring_peek(&r, &span), 8);
    assert_memory_equal(span, "abcdefgh", 8);
    ring_consume(&r, 5);
    /* Wraps: "fgh" at the end, "XYZ" at the start. */
    assert_int_equal(ring_put(&r, "XYZ", 3), 3);
    assert_int_equal(ring_peek(&r, &span), 3);
    assert_memory_equal(span, "fgh", 3);
    ring_consume(&r, 3);
    assert_int_equal(ring_peek(&r, &span), 3);
    assert_memory_equal(span, "XYZ", 3);
    ring_drop_all(&r);
    assert_int_equal(r.len, 0);
    assert_int_equal(r.dropped, 7);
    ring_free(&r);
}

/* The "vCPU" writes 4 MiB to a console whose stdout is a pipe nobody
 * reads: every write returns at once; the excess is counted, and closing
 * gives up on the stuck writer within a bounded time. */
static void unread_pipe_never_blocks_the_writer(void **state)
{
    static uint8_t chunk[64 << 10];
    struct console *con;
    int fds[2];
    double t0, t1;
    (void)state;

    assert_int_equal(pipe(fds), 0);
    memset(chunk, 'x', sizeof(chunk));
    assert_int_equal(console_open_fd(&con, false, NULL, fds[1]), 0);
    t0 = now_s();
    for (int i = 0; i < 64; i++)
        console_output(con, chunk, sizeof(chunk));
    t1 = now_s();
    assert_true(t1 - t0 < 0.5);
    /* The pipe (64 KiB) and the queue (256 KiB) took some; the rest is gone. */
    assert_true(console_dropped(con) >= (4u << 20) - (512u << 10));
    console_close(con);
    assert_true(now_s() - t1 < 5);
    close(fds[0]);
    close(fds[1]);
}

/* A host that reads gets every byte, in order, even those still queued
 * when the console closes. */
static void reader_gets_everything_in_order(void **state)
{
    struct console *con;
    char *path = in_dir("out.txt");
    char text[1000], got[4000];
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    (void)state;

    assert_true(fd >= 0);
    assert_int_equal(console_open_fd(&con, false, NULL, fd), 0);
    for (int i = 0; i < 3; i++) {
        memset(text, 'a' + i, sizeof(text));
        console_output(con, (uint8_t *)text, sizeof(text));
    }
    console_close(con);
    assert_int_equal(pread(fd, got, sizeof(got), 0), 3000);
    assert_int_equal(got[0], 'a');
    assert_int_equal(got[999], 'a');
    assert_int_equal(got[1000], 'b');
    assert_int_equal(got[2999], 'c');
    close(fd);
}

/* At the limit the log becomes NAME.log.1 (one generation) and a fresh
 * NAME.log goes on: never more than twice the limit in all. */
static void log_is_rotated_at_its_limit(void **state)
{
    struct console *con;
    char *log = in_dir("vm.log"), *older = in_dir("vm.log.1");
    char text[2500], got[3000];
    struct stat st;
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600), old;
    (void)state;

    assert_true(fd >= 0);
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('0' + i / 500);
    assert_int_equal(console_open_fd(&con, false, NULL, fd), 0);
    console_log_to(con, log, 1000);
    console_output(con, (uint8_t *)text, sizeof(text));
    console_close(con);
    assert_int_equal(stat(older, &st), 0);
    assert_int_equal(st.st_size, 1000);
    assert_int_equal(stat(log, &st), 0);
    assert_int_equal(st.st_size, 500);
    assert_int_equal(st.st_mode & 0777, 0600);
    old = open(older, O_RDONLY);
    assert_int_equal(read(old, got, sizeof(got)), 1000);
    assert_memory_equal(got, text + 1000, 1000); /* the second 1000 bytes */
    close(old);
    close(fd);
}

static void strips(const char *in, size_t len, const char *want)
{
    struct term_strip t = {0};
    uint8_t out[256];
    size_t n = term_strip(&t, (const uint8_t *)in, len, out);
    n += term_strip_end(&t, out + n);
    out[n] = 0;
    assert_string_equal((char *)out, want);
}

#define STRIPS(in, want) strips(in, sizeof(in) - 1, want)

static void escapes_are_stripped(void **state)
{
    (void)state;
    STRIPS("plain text\n", "plain text\n");
    STRIPS("\033[1;31mred\033[0m \033[2J\033[?25l", "red ");
    STRIPS("a\033]0;owned title\007b", "ab");          /* OSC ... BEL */
    STRIPS("a\033]52;c;aGk=\033\\b", "ab");            /* OSC ... ST (clipboard write) */
    STRIPS("a\033P1$r\033\\b\033_apc\033\\c", "abc"); /* DCS, APC */
    STRIPS("a\033(Bb\033=c\033#8d", "abcd");           /* ESC sequences of 2 and 3 bytes */
    STRIPS("a\033\nb\033", "a\nb");                    /* a lone ESC goes, the text stays */
    STRIPS("a\x9b" "31mb\x9d" "0;t\x9c" "c\x85" "d", "abcd"); /* 8-bit C1 */
    STRIPS("caf\xc3\xa9 \xc3\x9b \xe2\x9c\x93", "caf\xc3\xa9 \xc3\x9b \xe2\x9c\x93"); /* UTF-8 */
    STRIPS("a\bb\x07\x7f\x01" "c\td", "abc\td");          /* C0 controls but tab */
    STRIPS("one\r\ntwo\rthree\r", "one\ntwo\nthree\n"); /* no text hidden by CR */
}

static void split_sequences_are_stripped(void **state)
{
    const char in[] = "x\033[3" "1mred\033]0;ti" "tle\033" "\\y\r" "\nz";
    struct term_strip t = {0};
    uint8_t out[64];
    size_t n = 0;
    (void)state;

    /* One byte at a time: every state crosses a call boundary. */
    for (size_t i = 0; i < sizeof(in) - 1; i++)
        n += term_strip(&t, (const uint8_t *)in + i, 1, out + n);
    n += term_strip_end(&t, out + n);
    out[n] = 0;
    assert_string_equal((char *)out, "xredy\nz");
}

/* An OSC never terminated does not swallow everything after it. */
static void unterminated_string_ends(void **state)
{
    static char in[8000];
    struct term_strip t = {0};
    static uint8_t out[sizeof(in) + 1];
    size_t n;
    (void)state;

    memcpy(in, "\033]0;", 4);
    memset(in + 4, 'x', sizeof(in) - 4);
    n = term_strip(&t, (uint8_t *)in, sizeof(in), out);
    assert_true(n > 0 && n < sizeof(in) - 4096 + 1);
}

/* `smolvm logs NAME` of a detached VM's log: the rotated part first, the
 * escapes gone; --raw gives the bytes back. */
static void logs_shows_safe_text(void **state)
{
    char smolvm[4096], *run = in_dir("run-logs");
    ssize_t n = readlink("/proc/self/exe", smolvm, sizeof(smolvm) - 32);
    (void)state;

    assert_true(n > 0);
    smolvm[n] = 0;
    strcpy(strrchr(smolvm, '/'), "/../../smolvm");
    assert_int_equal(mkdir(run, 0700), 0);
    assert_int_equal(sh("mkdir -m 0700 run-logs/smolvm && "
                        "printf 'old \\033]0;title\\007line\\n' > run-logs/smolvm/web.log.1 && "
                        "printf 'new\\033[2J line\\r\\n' > run-logs/smolvm/web.log"),
                     0);
    assert_int_equal(sh("XDG_RUNTIME_DIR=$PWD/run-logs %s logs web > safe.out && "
                        "printf 'old line\\nnew line\\n' | cmp - safe.out", smolvm),
                     0);
    assert_int_equal(sh("XDG_RUNTIME_DIR=$PWD/run-logs %s logs --raw web > raw.out && "
                        "cat run-logs/smolvm/web.log.1 run-logs/smolvm/web.log | cmp - raw.out",
                        smolvm),
                     0);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return scratch_setup("console");
}

static int group_teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

int main(void)
{
    /* The device threads under their seccomp filters, as in run and start. */
    confine_seccomp_set(CONFINE_SECCOMP_ON, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ring_full_drops_and_counts),
        cmocka_unit_test(unread_pipe_never_blocks_the_writer),
        cmocka_unit_test(reader_gets_everything_in_order),
        cmocka_unit_test(log_is_rotated_at_its_limit),
        cmocka_unit_test(escapes_are_stripped),
        cmocka_unit_test(split_sequences_are_stripped),
        cmocka_unit_test(unterminated_string_ends),
        cmocka_unit_test(logs_shows_safe_text),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
