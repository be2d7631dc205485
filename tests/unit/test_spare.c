/* The spare VMM's words with smolvm serve (api/spare.h): a name taken and
 * answered, then gone on with at the daemon's word only; anything that
 * is not one machine name refused, unanswered; a pair closed before a
 * name, or before the daemon's word, ends the spare quietly; the daemon hears no
 * answer from a spare gone or silent. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/control.h"
#include "api/spare.h"
#include "machine/instance.h"

static int pair[2]; /* [0] the daemon's end, [1] the spare's */

static int open_pair(void **state)
{
    (void)state;
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
}

static int close_pair(void **state)
{
    (void)state;
    close(pair[0]);
    close(pair[1]);
    return 0;
}

static void say(const void *bytes, size_t len)
{
    assert_int_equal(write(pair[0], bytes, len), (ssize_t)len);
}

/* Whether the spare answered (a byte waiting on the daemon's end). */
static bool answered(void)
{
    char byte;
    ssize_t n = recv(pair[0], &byte, 1, MSG_DONTWAIT);
    return n == 1 && byte == SPARE_TAKEN;
}

/* A daemon in a child of its own: gives name to the spare's end; its
 * exit status 0 when the spare took it. */
static pid_t daemon_gives(const char *name)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(spare_give_name(pair[0], name, 5000) == 0 ? 0 : 1);
    return pid;
}

static void daemon_took(pid_t pid)
{
    int status;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void takes_a_name_and_answers(void **state)
{
    char name[CONTROL_NAME_MAX + 2];
    (void)state;

    pid_t daemon = daemon_gives("web-1");
    assert_int_equal(spare_take_name(pair[1], name, sizeof(name)), 0);
    assert_string_equal(name, "web-1");
    daemon_took(daemon);
}

/* The daemon gave up (its answer timed out) and closed the pair before
 * SPARE_GO: the spare starts nothing, though it answered. */
static void a_name_given_up_on_starts_nothing(void **state)
{
    char name[CONTROL_NAME_MAX + 2];
    (void)state;

    say("web-1\n", 6);
    shutdown(pair[0], SHUT_WR); /* no SPARE_GO will come */
    assert_int_equal(spare_take_name(pair[1], name, sizeof(name)), -ECONNRESET);
    assert_true(answered()); /* it had answered: too late */
}

static void takes_the_longest_name(void **state)
{
    char name[CONTROL_NAME_MAX + 2], line[CONTROL_NAME_MAX + 1];
    (void)state;

    memset(line, 'a', CONTROL_NAME_MAX);
    line[CONTROL_NAME_MAX] = '\0';
    pid_t daemon = daemon_gives(line);
    assert_int_equal(spare_take_name(pair[1], name, sizeof(name)), 0);
    assert_int_equal(strlen(name), CONTROL_NAME_MAX);
    daemon_took(daemon);
}

static void refused(const void *bytes, size_t len)
{
    char name[CONTROL_NAME_MAX + 2];

    say(bytes, len);
    assert_int_equal(spare_take_name(pair[1], name, sizeof(name)), -EINVAL);
    assert_false(answered());
}

static void refuses_what_is_not_a_name(void **state)
{
    (void)state;
    refused("../etc\n", 7);
}

static void refuses_an_option(void **state)
{
    (void)state;
    refused("--jail\n", 7);
}

static void refuses_two_names(void **state)
{
    (void)state;
    refused("a\nb\n", 4);
}

static void refuses_a_nul_inside(void **state)
{
    (void)state;
    refused("a\0b\n", 4);
}

static void refuses_a_name_too_long(void **state)
{
    char line[CONTROL_NAME_MAX + 2];
    (void)state;

    memset(line, 'a', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\n';
    refused(line, sizeof(line));
}

static void closed_before_a_whole_name_ends_it(void **state)
{
    char name[CONTROL_NAME_MAX + 2];
    (void)state;

    say("half", 4);
    shutdown(pair[0], SHUT_WR);
    assert_int_equal(spare_take_name(pair[1], name, sizeof(name)), -ECONNRESET);
}

static void daemon_hears_the_answer(void **state)
{
    char line[16] = "";
    (void)state;

    assert_int_equal(write(pair[1], (char[]){SPARE_TAKEN}, 1), 1); /* answered at once */
    assert_int_equal(spare_give_name(pair[0], "vm", 1000), 0);
    assert_int_equal(read(pair[1], line, sizeof(line)), 4);
    assert_memory_equal(line, "vm\n", 3);
    assert_int_equal(line[3], SPARE_GO); /* after the answer: go on */
}

static void daemon_hears_a_dead_spare(void **state)
{
    (void)state;
    close(pair[1]);
    pair[1] = -1;
    assert_true(spare_give_name(pair[0], "vm", 1000) < 0);
}

static void daemon_hears_a_spare_gone_after_the_name(void **state)
{
    (void)state;
    shutdown(pair[1], SHUT_WR); /* read nothing back: no answer */
    assert_int_equal(spare_give_name(pair[0], "vm", 1000), -ECONNRESET);
}

static void daemon_gives_up_on_a_silent_spare(void **state)
{
    char line[16];
    (void)state;
    assert_int_equal(spare_give_name(pair[0], "vm", 20), -ETIMEDOUT);
    assert_int_equal(recv(pair[1], line, sizeof(line), MSG_DONTWAIT), 3); /* no SPARE_GO */
}

static void root_is_in_the_runtime_folder(void **state)
{
    char runtime[] = "/tmp/smolvm-test-spare.XXXXXX", want[96];
    (void)state;

    assert_non_null(mkdtemp(runtime));
    setenv("XDG_RUNTIME_DIR", runtime, 1);
    char *root = spare_root_dir(1234);
    snprintf(want, sizeof(want), "%s/smolvm/spare-1234.root", runtime);
    assert_non_null(root);
    assert_string_equal(root, want);
    free(root);
    rmdir(want); /* not made: only named */
    snprintf(want, sizeof(want), "%s/smolvm", runtime);
    rmdir(want);
    rmdir(runtime);
}

/* A dead process's pid: a child reaped. */
static pid_t gone_pid(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

static void dead_spares_roots_swept(void **state)
{
    char runtime[] = "/tmp/smolvm-test-spare.XXXXXX", dead[128], live[128], full[128], other[128];
    (void)state;

    assert_non_null(mkdtemp(runtime));
    setenv("XDG_RUNTIME_DIR", runtime, 1);
    snprintf(dead, sizeof(dead), "%s/smolvm/spare-%d.root", runtime, (int)gone_pid());
    snprintf(live, sizeof(live), "%s/smolvm/spare-%d.root", runtime, (int)getpid());
    snprintf(full, sizeof(full), "%s/smolvm/spare-%d.root", runtime, (int)gone_pid());
    snprintf(other, sizeof(other), "%s/smolvm/spare-x.root", runtime);
    char *made = spare_root_dir(1); /* makes RUNTIME/smolvm */
    free(made);
    assert_int_equal(mkdir(dead, 0700), 0);
    assert_int_equal(mkdir(live, 0700), 0);
    assert_int_equal(mkdir(full, 0700), 0);
    assert_int_equal(mkdir(other, 0700), 0);
    char inside[160];
    snprintf(inside, sizeof(inside), "%s/kept", full);
    assert_int_equal(mkdir(inside, 0700), 0);

    spare_roots_sweep();
    assert_int_equal(access(dead, F_OK), -1); /* its spare is gone */
    assert_int_equal(access(live, F_OK), 0);  /* a spare still there */
    assert_int_equal(access(full, F_OK), 0);  /* not empty: not ours to empty */
    assert_int_equal(access(other, F_OK), 0); /* not a spare's name */
    rmdir(inside);
    rmdir(full);
    rmdir(live);
    rmdir(other);
    snprintf(other, sizeof(other), "%s/smolvm", runtime);
    rmdir(other);
    rmdir(runtime);
}

/* A spare runs in its daemon's working folder ("/"): the name it is told
 * is an instance's even where a folder there has that name. */
static void told_name_is_an_instance_whatever_the_folder_holds(void **state)
{
    char here[] = "/tmp/smolvm-test-spare.XXXXXX", cwd[4096], folder[64] = "srv";
    (void)state;

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_non_null(mkdtemp(here));
    assert_int_equal(chdir(here), 0);
    assert_int_equal(mkdir(folder, 0700), 0);
    assert_false(instance_named(folder)); /* a file or folder of that name is a bundle's path */
    assert_true(instance_named("web"));
    instance_name_told(folder);
    assert_true(instance_named("srv"));
    assert_false(instance_named("srv/x"));
    instance_name_told(NULL);
    assert_false(instance_named(folder));
    rmdir(folder);
    assert_int_equal(chdir(cwd), 0);
    rmdir(here);
}

int main(void)
{
#define PAIRED(t) cmocka_unit_test_setup_teardown(t, open_pair, close_pair)
    const struct CMUnitTest tests[] = {
        PAIRED(takes_a_name_and_answers),
        PAIRED(a_name_given_up_on_starts_nothing),
        PAIRED(takes_the_longest_name),
        PAIRED(refuses_what_is_not_a_name),
        PAIRED(refuses_an_option),
        PAIRED(refuses_two_names),
        PAIRED(refuses_a_nul_inside),
        PAIRED(refuses_a_name_too_long),
        PAIRED(closed_before_a_whole_name_ends_it),
        PAIRED(daemon_hears_the_answer),
        PAIRED(daemon_hears_a_dead_spare),
        PAIRED(daemon_hears_a_spare_gone_after_the_name),
        PAIRED(daemon_gives_up_on_a_silent_spare),
        cmocka_unit_test(root_is_in_the_runtime_folder),
        cmocka_unit_test(dead_spares_roots_swept),
        cmocka_unit_test(told_name_is_an_instance_whatever_the_folder_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
