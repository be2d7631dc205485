/* The CLI's VM server (src/cli/serve.c) before any VM: --detach's child
 * gets its console log as a fresh file, whatever an earlier VM of the name
 * left there, jailed (its own folder) or not; a server given up keeps the
 * reason the caller is about to print; a resume marker that could not mark
 * says why in the VM's log. No KVM needed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli/cli.h"
#include "cli/serve.h"
#include "scratch.h"
#include "util/err.h"

static int setup(void **state)
{
    char runtime[96];

    (void)state;
    if (scratch_setup("serve") < 0)
        return -1;
    snprintf(runtime, sizeof(runtime), "%s/run", dir);
    return mkdir(runtime, 0700) < 0 || setenv("XDG_RUNTIME_DIR", runtime, 1) < 0 ||
                   setenv("XDG_DATA_HOME", dir, 1) < 0
               ? -1
               : 0;
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

/* Detaches a server named name (in its own folder when jailed); the child
 * writes a line to its log and ends without saying it runs. The log's
 * path (the name clients read) into log. */
static void detach_and_write(const char *name, bool jailed, char *log, size_t size)
{
    struct server *s;
    bool parent;
    int code;

    assert_int_equal(serve_open(name, &s), CLI_OK);
    if (jailed)
        assert_int_equal(serve_use_own_folder(s), CLI_OK);
    snprintf(log, size, "%s/run/smolvm/%s.log", dir, name);
    code = serve_detach(s, &parent);
    if (!parent) {
        printf("child of %s wrote its log\n", name);
        fflush(stdout);
        _exit(0);
    }
    assert_int_equal(code, CLI_FAILED); /* the child never said "ok" */
}

static bool file_has(const char *path, const char *text)
{
    char buf[256] = "";
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

    if (fd >= 0)
        close(fd);
    return n > 0 && strstr(buf, text);
}

/* Un-jailed, twice: the child reaches its log (a double free on the way
 * there once killed every detached start). */
static void test_detach_writes_its_log(void **state)
{
    char log[160];

    (void)state;
    for (int i = 0; i < 2; i++) {
        detach_and_write("plain", false, log, sizeof(log));
        assert_true(file_has(log, "child of plain wrote its log"));
    }
}

/* Jailed: a FIFO and a link an earlier VMM of the name left in its own
 * folder (it may write there) are replaced, neither blocking the start
 * nor written through. */
static void test_detach_replaces_planted_log(void **state)
{
    char log[160], own[192], older[200], victim[128];
    struct stat st;
    int reader;

    (void)state;
    detach_and_write("jailed", true, log, sizeof(log));
    assert_true(file_has(log, "child of jailed wrote its log"));
    snprintf(own, sizeof(own), "%s/run/smolvm/jailed.vm/jailed.log", dir);
    snprintf(older, sizeof(older), "%s.1", own);
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    assert_int_equal(unlink(own), 0);
    assert_int_equal(mkfifo(own, 0600), 0);
    /* Read from: a start opening it would write there, not block. */
    assert_true((reader = open(own, O_RDONLY | O_NONBLOCK)) >= 0);
    assert_int_equal(sh("echo untouched > %s && ln -s %s %s", victim, victim, older), 0);
    detach_and_write("jailed", true, log, sizeof(log));
    assert_int_equal(lstat(own, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    close(reader);
    assert_true(file_has(log, "child of jailed wrote its log"));
    assert_true(file_has(victim, "untouched"));
    assert_int_equal(unlink(own), 0);
    assert_int_equal(symlink(victim, own), 0);
    detach_and_write("jailed", true, log, sizeof(log));
    assert_true(file_has(log, "child of jailed wrote its log"));
    assert_true(file_has(victim, "untouched"));
    assert_false(file_has(victim, "wrote"));
}

/* A resume marker that cannot mark instance name (none of the name is in
 * the store), its reason for the VM's log (say_in_vm_log): its answer. */
static char ask_marker(const char *name)
{
    char answer = 0;
    int pair[2], status;
    pid_t marker;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    assert_true((marker = fork()) >= 0);
    if (marker == 0) {
        close(pair[0]);
        serve_mark_resumed_when_asked(pair[1], name, true);
    }
    close(pair[1]);
    assert_int_equal(write(pair[0], "r", 1), 1);
    assert_int_equal(read(pair[0], &answer, 1), 1);
    close(pair[0]);
    assert_int_equal(waitpid(marker, &status, 0), marker);
    return answer;
}

/* The resume marker made ahead (its stderr nowhere), asked to mark an
 * instance it cannot: its VMM hears 'n', and the VM's log -- which
 * `smolvm logs` reads -- says why, as the VMM's own lines do. A link the
 * (jailed) VMM left in its log's place is not written through. */
static void test_marker_says_why_in_the_log(void **state)
{
    char log[160], own[192], victim[128];

    (void)state;
    detach_and_write("unmarked", true, log, sizeof(log));
    assert_int_equal(ask_marker("unmarked"), 'n');
    assert_true(file_has(log, "child of unmarked wrote its log"));
    assert_true(file_has(log, "\nsmolvm: start: no instance 'unmarked'\n"));
    snprintf(own, sizeof(own), "%s/run/smolvm/unmarked.vm/unmarked.log", dir);
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    assert_int_equal(sh("echo untouched > %s && rm %s && ln -s %s %s", victim, own, victim, own),
                     0);
    assert_int_equal(ask_marker("unmarked"), 'n');
    assert_true(file_has(victim, "untouched"));
    assert_false(file_has(victim, "smolvm"));
}

/* A server given up (the VM failed to build) keeps the reason, even where
 * finding its instance folder falls back and clears messages (the data
 * folder cannot be written: a jail's, or here sysfs's EPERM). */
static void test_abort_keeps_the_reason(void **state)
{
    struct server *s;

    (void)state;
    assert_int_equal(serve_open(NULL, &s), CLI_OK);
    setenv("XDG_DATA_HOME", "/sys/kernel", 1);
    err_plain(EINVAL, "the bundle is signed by another key");
    serve_abort(s);
    setenv("XDG_DATA_HOME", dir, 1);
    assert_string_equal(err_msg(), "the bundle is signed by another key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detach_writes_its_log),
        cmocka_unit_test(test_detach_replaces_planted_log),
        cmocka_unit_test(test_marker_says_why_in_the_log),
        cmocka_unit_test(test_abort_keeps_the_reason),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
