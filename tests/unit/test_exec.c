/* smolvm exec, cp and shell against the real guest agent, run on the host:
 * smolvm-agent --unix PATH listens where a VM's vsock socket would be
 * (RUNTIME/NAME.vsock) and answers the CONNECT line as smolvm's vsock
 * device does, so everything but the vsock device itself (test_virtio_vsock)
 * is the shipped code: the CLI, the protocol, the agent. Also: a VM that
 * does not exist, an agent that is not listening (the guest's RST), a VM
 * that never answers (paused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "../../guest/agent_proto.h"
#include "api/agent.h"
#include "confine/confine.h"
#include "scratch.h"

static char out[1 << 16], err[1 << 16];
static pid_t agent, agent2; /* agent2: hello_sets_the_hostname's */

/* smolvm ARGS with RUNTIME in the scratch folder; stdin from input (a
 * shell redirection or pipe source) */
static int smolvm_in(const char *input, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int smolvm_in(const char *input, const char *fmt, ...)
{
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    int status = sh("ASAN_OPTIONS=detect_leaks=0 XDG_RUNTIME_DIR=$PWD/run %s %s < %s > out 2> err",
                    SMOLVM_BINARY, args, input);
    slurp("out", out, sizeof(out));
    slurp("err", err, sizeof(err));
    return status;
}

#define smolvm(...) smolvm_in("/dev/null", __VA_ARGS__)

static int lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static void assert_one_line(int status, int want, const char *verb, const char *needle)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "smolvm: %s: ", verb);
    if (status != want || lines(err) != 1 || strncmp(err, prefix, strlen(prefix)) != 0 ||
        !strstr(err, needle))
        fail_msg("%s: exit %d (want %d), stderr:\n%s", verb, status, want, err);
}

static int setup(void **state)
{
    char path[4096];
    (void)state;
    if (scratch_setup("exec") < 0 || sh("mkdir -m 700 -p run/smolvm") != 0)
        return -1;
    snprintf(path, sizeof(path), "%s", SMOLVM_BINARY);
    strcpy(strrchr(path, '/'), "/smolvm-agent");
    agent = fork();
    if (agent == 0) {
        execl(path, "smolvm-agent", "--unix", in_dir("run/smolvm/vm1.vsock"), (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && access(in_dir("run/smolvm/vm1.vsock"), F_OK) != 0; i++)
        usleep(10000);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kill(agent, SIGTERM);
    waitpid(agent, NULL, 0);
    if (agent2 > 0) { /* a failed check left it running */
        kill(agent2, SIGTERM);
        waitpid(agent2, NULL, 0);
    }
    return scratch_teardown();
}

static void exec_streams_and_status(void **state)
{
    (void)state;
    assert_int_equal(smolvm("exec vm1 -- sh -c 'echo out-$((6*7)); echo err-line >&2; exit 7'"), 7);
    assert_string_equal(out, "out-42\n");
    assert_string_equal(err, "err-line\n");
    /* Options after the name are the command's. */
    assert_int_equal(smolvm("exec vm1 ls -d /"), 0);
    assert_string_equal(out, "/\n");
    assert_int_equal(smolvm("exec -e FOO=bar -e X=y -w /tmp vm1 -- sh -c 'echo $FOO$X $(pwd)'"), 0);
    assert_string_equal(out, "bary /tmp\n");
}

static void exec_stdin_only_with_i(void **state)
{
    (void)state;
    assert_int_equal(sh("printf 'hello\\n' > in.txt"), 0);
    assert_int_equal(smolvm_in("in.txt", "exec -i vm1 -- tr a-z A-Z"), 0);
    assert_string_equal(out, "HELLO\n");
    assert_int_equal(smolvm_in("in.txt", "exec vm1 -- cat"), 0);
    assert_string_equal(out, ""); /* without -i the command reads nothing */
}

static void exec_signal_death_and_missing_command(void **state)
{
    (void)state;
    assert_int_equal(smolvm("exec vm1 -- sh -c 'kill -9 $$'"), 137);
    assert_one_line(smolvm("exec vm1 -- /no/such/command"), 127, "exec", "cannot run");
    assert_int_equal(smolvm("exec --json vm1 -- sh -c 'echo a; echo b >&2; kill -TERM $$'"), 143);
    assert_non_null(strstr(out, "\"exit_code\":143"));
    assert_non_null(strstr(out, "\"signal\":15"));
    assert_non_null(strstr(out, "\"stdout\":\"a\\n\""));
    assert_non_null(strstr(out, "\"stderr\":\"b\\n\""));
}

static void exec_tty(void **state)
{
    (void)state;
    assert_int_equal(smolvm("exec -t vm1 -- sh -c 'test -t 0 && test -t 1 && echo TTY-$TERM'"), 0);
    assert_string_equal(out, "TTY-xterm\r\n"); /* a terminal's newline */
    /* Driven through a pty of its own (script): the window size reaches
     * the command's terminal, and typed input its stdin. */
    assert_int_equal(sh("printf 'typed\\n' | XDG_RUNTIME_DIR=$PWD/run script -qec "
                        "\"stty rows 33 cols 101; %s exec -i -t vm1 -- "
                        "sh -c 'stty size; read x; echo got-\\$x'\" /dev/null > out",
                        SMOLVM_BINARY), 0);
    slurp("out", out, sizeof(out));
    assert_non_null(strstr(out, "33 101\r\n"));
    assert_non_null(strstr(out, "got-typed\r\n"));
}

static void *one_exec(void *arg)
{
    char cmd[512];
    long i = (long)arg;
    snprintf(cmd, sizeof(cmd),
             "XDG_RUNTIME_DIR=$PWD/run %s exec vm1 -- sh -c 'sleep 1; echo c%ld' > c%ld.out",
             SMOLVM_BINARY, i, i);
    return (void *)(long)sh("%s", cmd);
}

static void execs_run_at_once(void **state)
{
    pthread_t t[8];
    char got[64], want[64];
    (void)state;
    time_t t0 = time(NULL);
    for (long i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, one_exec, (void *)i), 0);
    for (long i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_int_equal((long)r, 0);
        snprintf(want, sizeof(want), "c%ld\n", i);
        snprintf(got, sizeof(got), "c%ld.out", i);
        slurp(got, got, sizeof(got));
        assert_string_equal(got, want);
    }
    assert_true(time(NULL) - t0 < 7); /* 8 one-second commands side by side, not 8 s in a row */
}

static void cp_both_ways(void **state)
{
    (void)state;
    assert_int_equal(sh("head -c 3000000 /dev/urandom > src && chmod 640 src && "
                        "touch -d '2020-01-02 03:04:05' src && mkdir -p guest back"),
                     0);
    assert_int_equal(smolvm("cp src vm1:%s", in_dir("guest/")), 0);
    assert_int_equal(smolvm("cp --json vm1:%s back", in_dir("guest/src")), 0);
    assert_non_null(strstr(out, "\"bytes\":3000000"));
    assert_int_equal(sh("cmp src guest/src && cmp src back/src && "
                        "test \"$(stat -c '%%a %%Y' src)\" = \"$(stat -c '%%a %%Y' guest/src)\" && "
                        "test \"$(stat -c '%%a %%Y' src)\" = \"$(stat -c '%%a %%Y' back/src)\""),
                     0);
    assert_int_equal(sh("! ls guest back | grep -q smolvm-"), 0); /* no temporary left */
    /* A guest's setuid bit is not taken onto a host file. */
    assert_int_equal(sh("chmod 4755 guest/src"), 0);
    assert_int_equal(smolvm("cp vm1:%s back/suid", in_dir("guest/src")), 0);
    assert_int_equal(sh("test \"$(stat -c %%a back/suid)\" = 755"), 0);
    /* Errors: one line each. */
    assert_one_line(smolvm("cp vm1:/no/such/file back"), 1, "cp", "/no/such/file");
    assert_one_line(smolvm("cp vm1:/dev/null back"), 1, "cp", "neither a file nor a folder");
    assert_one_line(smolvm("cp src back"), 2, "cp", "NAME:PATH");
    assert_one_line(smolvm("cp vm1:/a vm1:/b"), 2, "cp", "NAME:PATH");
}

static void cp_folder_into_the_vm(void **state)
{
    (void)state;
    assert_int_equal(sh("mkdir -p tree/sub/deeper into && echo one > tree/a && "
                        "head -c 100000 /dev/urandom > tree/sub/deeper/b && chmod 600 tree/a && "
                        "ln -s ../a tree/sub/link && chmod 750 tree/sub && "
                        "touch -h -d '2021-05-06 07:08:09' tree/a tree/sub/deeper/b tree/sub/link "
                        "tree/sub/deeper tree/sub tree"),
                     0);
    /* Into a folder that is there: under its own name. */
    assert_int_equal(smolvm("cp tree vm1:%s", in_dir("into")), 0);
    /* To a name that is not there: the copy takes it. */
    assert_int_equal(smolvm("cp tree/ vm1:%s", in_dir("renamed")), 0);
    const char *attrs = "find . -printf '%p %y %m %T@ %l\\n' | sort"; /* via %s: one % */
    assert_int_equal(sh("a=$(cd tree && %s) && b=$(cd into/tree && %s) && c=$(cd renamed && %s) && "
                        "test \"$a\" = \"$b\" && test \"$a\" = \"$c\" && "
                        "cmp tree/sub/deeper/b into/tree/sub/deeper/b",
                        attrs, attrs, attrs),
                     0);
}

static void cp_folder_out_of_the_vm(void **state)
{
    (void)state;
    assert_int_equal(sh("mkdir -p vmtree/sub outdir && echo two > vmtree/sub/f && "
                        "head -c 70000 /dev/urandom > vmtree/big && ln -s sub/f vmtree/link && "
                        "chmod 4711 vmtree/big && chmod 700 vmtree/sub && "
                        "touch -h -d '2022-01-02 03:04:05' vmtree/big vmtree/sub/f vmtree/link "
                        "vmtree/sub vmtree"),
                     0);
    assert_int_equal(smolvm("cp vm1:%s outdir", in_dir("vmtree")), 0);
    /* The setuid bit stays in the guest: 711 on the host. */
    assert_int_equal(sh("chmod 711 vmtree/big && a=$(cd vmtree && %s) && b=$(cd outdir/vmtree && %s) "
                        "&& test \"$a\" = \"$b\" && cmp vmtree/big outdir/vmtree/big",
                        "find . -printf '%p %y %m %T@ %l\\n' | sort",
                        "find . -printf '%p %y %m %T@ %l\\n' | sort"),
                     0);
}

/* A hostile guest's agent: a link out of the folder, then a file through
 * it; then a name with "..". Neither may write outside the target. */
static void *evil_agent(void *arg)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), c;
    static uint8_t buf[AGENT_FRAME_MAX + 1];
    uint8_t fields[512], type;
    uint32_t n, len;
    char line[64];
    (void)arg;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", in_dir("run/smolvm/evil.vsock"));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0)
        return NULL;
    for (int round = 0; round < 2; round++) {
        c = accept(fd, NULL, NULL);
        if (read(c, line, 13) != 13 || write(c, "OK 1\n", 5) != 5 ||
            agent_recv(c, &type, buf, &len) != 1)
            break;
        n = 0;
        agent_field(fields, sizeof(fields), &n, "type", "d");
        agent_send(c, AGENT_FILE, fields, n);
        n = 0;
        agent_field(fields, sizeof(fields), &n, "path", round ? "../escaped" : "out");
        agent_field(fields, sizeof(fields), &n, "type", round ? "f" : "l");
        agent_field(fields, sizeof(fields), &n, "target", in_dir("outside"));
        agent_send(c, 'N', fields, n);
        if (!round) {
            n = 0;
            agent_field(fields, sizeof(fields), &n, "path", "out/pwned");
            agent_field(fields, sizeof(fields), &n, "type", "f");
            agent_send(c, 'N', fields, n);
        }
        agent_send(c, AGENT_DATA, "pwned", 5);
        agent_send(c, AGENT_DATA, NULL, 0);
        agent_send(c, 'N', NULL, 0);
        close(c);
    }
    close(fd);
    return NULL;
}

static void cp_folder_from_a_hostile_guest_stays_inside(void **state)
{
    pthread_t t;
    (void)state;
    assert_int_equal(sh("mkdir -p outside evilout"), 0);
    pthread_create(&t, NULL, evil_agent, NULL);
    usleep(100000);
    assert_one_line(smolvm("cp evil:/x evilout"), 1, "cp", "out/pwned");
    assert_one_line(smolvm("cp evil:/x evilout"), 1, "cp", "bad folder entry");
    pthread_join(t, NULL);
    assert_int_equal(sh("test -z \"$(ls outside)\" && test ! -e escaped && test ! -e evilout/escaped"),
                     0);
}

/* A listener at RUNTIME/NAME.vsock that reads the CONNECT line, then
 * either closes (the guest's RST: nobody listens) or never answers. */
static void *fake_vm(void *arg)
{
    const char *mode = arg;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), c;
    char line[64];
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", in_dir(mode[0] == 'r' ? "run/smolvm/rst.vsock"
                                                                         : "run/smolvm/mute.vsock"));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0)
        return NULL;
    c = accept(fd, NULL, NULL);
    if (read(c, line, sizeof(line)) <= 0 || mode[0] == 'r') {
        close(c);
    } else {
        sleep(10); /* past the client's wait (api/agent.c CONNECT_ANSWER_MS, 8 s) */
        close(c);
    }
    close(fd);
    return NULL;
}

static void exec_errors_are_one_line(void **state)
{
    pthread_t t;
    (void)state;
    assert_one_line(smolvm("exec nosuchvm -- true"), 1, "exec", "no VM 'nosuchvm' is running");
    assert_one_line(smolvm("exec vm1"), 2, "exec", "needs a VM name and a command");
    assert_one_line(smolvm("exec -t --json vm1 -- true"), 2, "exec", "--tty");
    pthread_create(&t, NULL, fake_vm, "rst");
    usleep(100000);
    assert_one_line(smolvm("exec rst -- true"), 1, "exec", "no agent");
    pthread_join(t, NULL);
    pthread_create(&t, NULL, fake_vm, "mute");
    usleep(100000);
    assert_one_line(smolvm("exec mute -- true"), 1, "exec", "paused");
    pthread_join(t, NULL);
}

/* The hello thread of a started VM (cli/serve.c) with the filters on, in a
 * forked child: the hello goes through under the vsock filter, and the
 * thread is under it after (an exec ends the child with the one line). */
static void *confined_hello(void *arg)
{
    (void)arg;
    if (agent_hello_confined(in_dir("run/smolvm/vm2.vsock"), "start-3.example", 2000) < 0)
        _exit(5);
    execl("/nonexistent/smolvm-test", "smolvm-test", (char *)NULL);
    return NULL;
}

static void hello_is_confined(void)
{
    int pipe_fds[2], status;
    char said[512] = "";
    ssize_t n;

    assert_int_equal(pipe(pipe_fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_t t;
        dup2(pipe_fds[1], STDERR_FILENO);
        if (confine_seccomp_set(CONFINE_SECCOMP_ON, "start") < 0 ||
            pthread_create(&t, NULL, confined_hello, NULL) != 0)
            _exit(3);
        pthread_join(t, NULL);
        _exit(0); /* the exec failed: no filter */
    }
    close(pipe_fds[1]);
    n = read(pipe_fds[0], said, sizeof(said) - 1);
    said[n > 0 ? n : 0] = 0;
    close(pipe_fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1 ||
        !strstr(said, "smolvm: start: seccomp: thread agent-hello made a forbidden system call execve"))
        fail_msg("hello thread: status %#x, stderr '%s'", status, said);
}

/* The hello the VMM sends after a start: an agent in a UTS namespace of
 * its own (unshare: the host's hostname is not ours to change) takes the
 * hostname, and a command sees it; a bad name is refused before sending;
 * no agent at all is an error for the caller to judge. */
static void hello_sets_the_hostname(void **state)
{
    char path[4096];
    (void)state;

    snprintf(path, sizeof(path), "%s", SMOLVM_BINARY);
    strcpy(strrchr(path, '/'), "/smolvm-agent");
    agent2 = fork();
    if (agent2 == 0) {
        execlp("unshare", "unshare", "-Uru", path, "--unix", in_dir("run/smolvm/vm2.vsock"),
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && access(in_dir("run/smolvm/vm2.vsock"), F_OK) != 0; i++)
        usleep(10000);
    assert_int_equal(agent_hello(in_dir("run/smolvm/vm2.vsock"), "start-2.example", 2000), 0);
    assert_int_equal(smolvm("exec vm2 -- hostname"), 0);
    assert_string_equal(out, "start-2.example\n");
    /* The clock alone (a restore without --hostname). */
    assert_int_equal(agent_hello(in_dir("run/smolvm/vm2.vsock"), NULL, 2000), 0);
    assert_int_equal(agent_hello(in_dir("run/smolvm/vm2.vsock"), "-bad", 2000), -EINVAL);
    assert_int_equal(agent_hello(in_dir("run/smolvm/none.vsock"), NULL, 200), -ENOENT);
    hello_is_confined();
    kill(agent2, SIGTERM);
    waitpid(agent2, NULL, 0);
    agent2 = 0;
    assert_one_line(smolvm("start --hostname 'a b' x.smolmachine"), 2, "start", "--hostname");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exec_streams_and_status),
        cmocka_unit_test(exec_stdin_only_with_i),
        cmocka_unit_test(exec_signal_death_and_missing_command),
        cmocka_unit_test(exec_tty),
        cmocka_unit_test(execs_run_at_once),
        cmocka_unit_test(cp_both_ways),
        cmocka_unit_test(cp_folder_into_the_vm),
        cmocka_unit_test(cp_folder_out_of_the_vm),
        cmocka_unit_test(cp_folder_from_a_hostile_guest_stays_inside),
        cmocka_unit_test(exec_errors_are_one_line),
        cmocka_unit_test(hello_sets_the_hostname),
    };
    /* The fake agents in this process write to CLIs that may have closed
     * their end already (the hostile guest's cp is refused midway). */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup, teardown);
}
