/* The command line as a user meets it, build/smolvm run as a program
 * (with its own HOME and XDG folders; nothing here needs KVM): every verb
 * has -h, takes exact option names only, says what is wrong in one line
 * "smolvm: VERB: ..." with exit 2 for a wrong command line and 1 for a
 * failure, and under --json also as a JSON object on stdout. And the
 * shipped binary is hardened. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/control.h"
#include "bundle/bundle.h"
#include "bundle/signature.h"
#include "control_loop.h"
#include "scratch.h"

static char out[1 << 16], err[1 << 16];

static int setup(void **state)
{
    (void)state;
    return scratch_setup("cli");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

/* smolvm ARGS (shell words) in the scratch folder; its exit status, with
 * its stdout and stderr in out and err. */
static int smolvm(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int smolvm(const char *fmt, ...)
{
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    /* Under ASan, what a verb leaves allocated when it exits is no concern here. */
    int status = sh("mkdir -p home run && ASAN_OPTIONS=detect_leaks=0 "
                    "HOME=$PWD/home XDG_CACHE_HOME=$PWD/home/cache "
                    "XDG_DATA_HOME=$PWD/home/data XDG_RUNTIME_DIR=$PWD/run %s %s "
                    "< /dev/null > out 2> err",
                    SMOLVM_BINARY, args);
    slurp("out", out, sizeof(out));
    slurp("err", err, sizeof(err));
    return status;
}

static int lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* One line on stderr naming the verb, nothing on stdout, and that exit. */
static void assert_one_line(int status, int want, const char *verb)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "smolvm: %s: ", verb);
    if (status != want || lines(err) != 1 || strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("%s: exit %d (want %d), stderr:\n%s", verb, status, want, err);
    if (strstr(err, "usage:"))
        fail_msg("%s: a usage text after the error: %s", verb, err);
}

static const char *const verbs[] = {
    "run", "start", "save", "pack", "ps", "pause", "resume", "stop", "logs", "disk",
    "image build", "create", "reset", "commit", "rm", "ls", "layers", "gc", "keygen", "bsd-user",
    "exec", "cp", "shell", "attach",
};

static void test_every_verb_has_help(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        for (int longform = 0; longform < 2; longform++) {
            int status = smolvm("%s %s", verbs[i], longform ? "--help" : "-h");
            if (status != 0 || strncmp(out, "usage: ", 7) != 0 || err[0])
                fail_msg("smolvm %s %s: exit %d, stdout: %.80s, stderr: %s", verbs[i],
                         longform ? "--help" : "-h", status, out, err);
        }
    }
}

/* getopt would take these for the option they begin; each is refused. */
static void test_abbreviated_options_refused(void **state)
{
    static const struct {
        const char *verb, *args;
    } cases[] = {
        {"start", "web --mem 1G"}, {"run", "--ker /boot/x"}, {"pack", "--out x.smolmachine"},
        {"save", "vm --out x"}, {"image build", "--out app"}, {"create", "c --fro x"},
        {"commit", "c --mess hello"}, {"keygen", "k --js"}, {"bsd-user", "--ro / /bin/true"},
        {"pause", "vm --js"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int status = smolvm("%s %s", cases[i].verb, cases[i].args);
        assert_one_line(status, 2, cases[i].verb);
        assert_non_null(strstr(err, "unknown option '--"));
        assert_non_null(strstr(err, "options: --"));
        assert_int_equal(out[0], 0);
    }
    assert_one_line(smolvm("start web --mem 1G"), 2, "start");
    assert_non_null(strstr(err, "'--mem'"));
    assert_non_null(strstr(err, "--memory"));
}

/* The VM options of run, pack, start and create come from one table: every
 * option a verb's --help lists, that verb takes (with a value when the
 * help shows one), and the options only some verbs take are listed by
 * those alone. */
static void test_vm_options_help_lists_what_is_taken(void **state)
{
    static const char *const vm_verbs[] = {"run", "pack", "start", "create"};
    static char help[sizeof(out)];
    char line[256];
    (void)state;
    for (size_t i = 0; i < sizeof(vm_verbs) / sizeof(vm_verbs[0]); i++) {
        assert_int_equal(smolvm("%s --help", vm_verbs[i]), 0);
        snprintf(help, sizeof(help), "%s", out);
        int listed = 0;
        for (char *p = help; *p; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] != 0)) {
            char name[64] = "", value[64] = "";
            snprintf(line, sizeof(line), "%.*s", (int)strcspn(p, "\n"), p);
            char *dash = strstr(line, "--");
            if (strncmp(line, "  ", 2) != 0 || !dash || dash - line > 6 ||
                sscanf(dash, "--%63s %63s", name, value) < 1 || strcmp(name, "help") == 0)
                continue;
            listed++;
            /* A value is shown in capitals or as choices: value=x. */
            bool takes_value = value[0] && (strchr(value, '|') || (value[0] >= 'A' && value[0] <= 'Z'));
            smolvm("%s --%s%s", vm_verbs[i], name, takes_value ? "=x" : "");
            if (strstr(err, "unknown option") || strstr(err, "needs a value") ||
                strstr(err, "doesn't allow"))
                fail_msg("%s --%s: listed but not taken: %s", vm_verbs[i], name, err);
        }
        if (listed < 5)
            fail_msg("%s --help lists %d options:\n%s", vm_verbs[i], listed, help);
    }
    assert_int_equal(smolvm("run --help"), 0);
    assert_non_null(strstr(out, "--disk"));
    assert_null(strstr(out, "--memory"));
    assert_int_equal(smolvm("start --help"), 0);
    assert_non_null(strstr(out, "--memory"));
    assert_null(strstr(out, "--disk"));
    /* run and pack take each other's options, unlisted, as they always did. */
    assert_one_line(smolvm("pack --name x --detach --trace-boot --kernel k"), 2, "pack");
    assert_null(strstr(err, "unknown option"));
    assert_one_line(smolvm("run -o x.smolmachine --kernel k"), 2, "run");
    assert_non_null(strstr(err, "smolvm pack"));
}

/* A wrong value is a wrong command line: exit 2, one line, no usage text. */
static void test_usage_errors_exit_2(void **state)
{
    static const char *const run_args[] = {
        "--kernel k --mem 12Q", "--kernel k --mem 0", "--kernel k --cpus 0",
        "--kernel k --cpus 9999", "--kernel k --frobnicate", "--kernel", "--kernel k --name a/b",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(run_args) / sizeof(run_args[0]); i++)
        assert_one_line(smolvm("run %s", run_args[i]), 2, "run");
    assert_one_line(smolvm("pack -o x.smolmachine --kernel k --mem 0"), 2, "pack");
    assert_one_line(smolvm("create bad/name --from x"), 2, "create");
    assert_one_line(smolvm("rm ../x"), 2, "rm");
    assert_one_line(smolvm("image build --size 12Q"), 2, "image build");
    assert_one_line(smolvm("keygen"), 2, "keygen");
    assert_one_line(smolvm("stop"), 2, "stop");
    assert_one_line(smolvm("stop a/b"), 2, "stop");
    assert_one_line(smolvm("save a/b -o x.smolmachine"), 2, "save");
    assert_one_line(smolvm("bsd-user"), 2, "bsd-user");
}

/* A runtime failure is exit 1, one line, named once. */
static void test_failures_exit_1(void **state)
{
    (void)state;
    assert_one_line(smolvm("stop nosuchvm"), 1, "stop");
    assert_one_line(smolvm("bsd-user --root /nonexistent/sysroot /bin/true"), 1, "bsd-user");
    assert_non_null(strstr(err, "/nonexistent/sysroot"));
    assert_one_line(smolvm("image build --kernel /etc/hostname -o app"), 1, "image build");
}

/* --share: a wrong spec, or a folder that is not there (named), is an
 * error of the command line (the option table's exit 2), before any work. */
static void test_share_option(void **state)
{
    (void)state;
    assert_int_equal(sh("mkdir -p shared && touch afile"), 0);
    assert_one_line(smolvm("run --kernel k --share shared:bad/tag"), 2, "run");
    assert_one_line(smolvm("run --kernel k --share shared:a --share shared:a"), 2, "run");
    assert_non_null(strstr(err, "two shares tagged 'a'"));
    assert_one_line(smolvm("run --kernel k --share shared,rx"), 2, "run");
    assert_one_line(smolvm("pack -o x.smolmachine --kernel k --share :t"), 2, "pack");
    assert_one_line(smolvm("run --kernel k --share nofolder:t"), 2, "run");
    assert_non_null(strstr(err, "nofolder"));
    assert_one_line(smolvm("run --kernel k --share afile"), 2, "run");
    assert_one_line(smolvm("start x.smolmachine --share shared:toolongtoolongtoolongtoolongtoolongtoolong"),
                    2, "start");
}

/* Under --json an error is also {"error", "verb", "exit_code"} on stdout,
 * even when --json comes after what is wrong. */
static void test_json_errors(void **state)
{
    static const struct {
        const char *args, *verb;
        int code;
    } cases[] = {
        {"run --mem 0 --kernel k --json", "run", 2},
        {"stop nosuchvm --json", "stop", 1},
        {"image build --out x --json", "image build", 2},
        {"create c --from /nonexistent --json", "create", 1},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int status = smolvm("%s", cases[i].args);
        assert_int_equal(status, cases[i].code);
        json_error_t e;
        json_t *j = json_loads(out, 0, &e);
        if (!j)
            fail_msg("%s: stdout is not JSON: %s", cases[i].args, out);
        assert_non_null(json_string_value(json_object_get(j, "error")));
        assert_string_equal(json_string_value(json_object_get(j, "verb")), cases[i].verb);
        assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), cases[i].code);
        json_decref(j);
        assert_int_equal(lines(err), 1);
    }
}

static void test_keygen_json(void **state)
{
    (void)state;
    assert_int_equal(smolvm("keygen signer --json"), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "private_key")), "signer.key");
    assert_string_equal(json_string_value(json_object_get(j, "public_key")), "signer.pub");
    const char *id = json_string_value(json_object_get(j, "key_id"));
    assert_non_null(id);
    assert_int_equal(strlen(id), 64);
    assert_int_equal(sh("grep -qx %s signer.pub", id), 0);
    json_decref(j);
    assert_one_line(smolvm("keygen signer"), 1, "keygen"); /* the files exist */
}

/* image build -o over a file, a folder of the user's, or the current
 * folder: one line (with a reason after the colon), exit 1, all kept. */
static void test_image_build_output_refused(void **state)
{
    (void)state;
    assert_int_equal(sh("mkdir -p user/mydir user/here && echo notes > user/notes.txt && "
                        "echo precious > user/mydir/precious.txt && echo mine > user/here/x && "
                        "cd user && find . -type f | sort | xargs sha256sum > ../sums"), 0);
    assert_one_line(smolvm("image build -o user/notes.txt"), 1, "image build");
    assert_one_line(smolvm("image build -o user/mydir"), 1, "image build");
    assert_int_equal(sh("cd user/here && HOME=$PWD %s image build -o . > ../../out 2> ../../err",
                        SMOLVM_BINARY), 1);
    slurp("err", err, sizeof(err));
    assert_one_line(1, 1, "image build");
    assert_true(strlen(err) > strlen("smolvm: image build: \n"));
    assert_int_equal(sh("test -z \"$(find user -name '.*' ! -name . ! -name ..)\" && "
                        "cd user && find . -type f | sort | xargs sha256sum | cmp -s - ../sums"), 0);
}

/* Stack canaries, checked libc calls, and a read-only GOT bound at load:
 * in the shipped build (the sanitizer builds have their own checks). */
static void test_binary_hardened(void **state)
{
    (void)state;
    if (!SMOLVM_HARDENED)
        skip();
    if (sh("command -v readelf > /dev/null && command -v nm > /dev/null") != 0)
        skip();
    assert_int_equal(sh("readelf -lW %s | grep -q GNU_RELRO", SMOLVM_BINARY), 0);
    assert_int_equal(sh("readelf -d %s | grep -Eq 'BIND_NOW|FLAGS_1.*NOW'", SMOLVM_BINARY), 0);
    assert_int_equal(sh("nm %s | grep -q __stack_chk_fail", SMOLVM_BINARY), 0);
    assert_int_equal(sh("nm %s | grep -Eq ' (U|T) _*(snprintf|memcpy|vsnprintf|fprintf)_chk$'",
                        SMOLVM_BINARY), 0);
    /* Bound at load and still starting (a static-pie relocates itself). */
    assert_int_equal(sh("%s --version | grep -q '^smolvm '", SMOLVM_BINARY), 0);
}


/* attach types on a VM's console socket (a stand-in here): what stdin
 * holds goes as it is, Ctrl-P then another key as both, up to Ctrl-P
 * Ctrl-Q, which detaches (exit 0, nothing after it sent); with no such VM,
 * one line and exit 1. */
static void test_attach(void **state)
{
    static const char want[] = "echo hi\r\x10x";
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char got[64];
    size_t len = 0;
    ssize_t n;
    int listener, typed;
    (void)state;

    assert_int_equal(sh("mkdir -p home && mkdir -p -m 0700 run/smolvm && "
                        "printf 'echo hi\\r\\020x\\020\\021after' > typed"), 0);
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/run/smolvm/fake.console", dir);
    listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(listener >= 0);
    assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(listener, 4), 0);
    int status = sh("ASAN_OPTIONS=detect_leaks=0 HOME=$PWD/home XDG_RUNTIME_DIR=$PWD/run "
                    "timeout 20 %s attach fake < typed > out 2> err", SMOLVM_BINARY);
    slurp("err", err, sizeof(err));
    if (status != 0 || !strstr(err, "detached from fake"))
        fail_msg("attach: exit %d, stderr: %s", status, err);
    typed = accept(listener, NULL, NULL);
    assert_true(typed >= 0);
    while (len < sizeof(got) && (n = read(typed, got + len, sizeof(got) - len)) > 0)
        len += (size_t)n;
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(got, want, len);
    close(typed);
    close(listener);
    assert_one_line(smolvm("attach nosuchvm"), 1, "attach");
    assert_non_null(strstr(err, "no running VM named 'nosuchvm'"));
    assert_one_line(smolvm("attach"), 2, "attach");
}

/* A stand-in VM for migrate: the link passed with the request is written on
 * (as the VMM sends its frames), and what the request asked is kept. */
static struct control *fake_vm;
static int migrate_asked;
static char migrate_to[256];

static char fake_vm_after_save[64]; /* the commands after its last save */
static bool fake_vm_saved_held;
static char fake_vm_saved_to[256]; /* the folder it was asked to save into */
static char fake_vm_sign_key[256];  /* the key it was given to sign with, as it read it */
static char fake_vm_sign_path[256];

/* A jailed VM's save: the bundle written where asked (its runtime
 * folder), what it was asked to do after kept. */
static json_t *fake_vm_save(json_t *req)
{
    const char *path = json_string_value(json_object_get(req, "path"));
    struct bundle_writer *w;

    if (!path || bundle_writer_open(path, &w) < 0 ||
        bundle_add(w, "config", "a bundle", 8, BUNDLE_RAW) < 0 || bundle_writer_commit(w) < 0)
        return control_error("cannot write the bundle");
    fake_vm_saved_held = json_is_true(json_object_get(req, "hold"));
    snprintf(fake_vm_saved_to, sizeof(fake_vm_saved_to), "%.*s",
             (int)(strrchr(path, '/') - path), path);
    const char *key = json_string_value(json_object_get(req, "sign"));
    FILE *k = key ? fopen(key, "r") : NULL;
    fake_vm_sign_key[0] = 0;
    snprintf(fake_vm_sign_path, sizeof(fake_vm_sign_path), "%s", key ? key : "");
    if (k) {
        if (!fgets(fake_vm_sign_key, sizeof(fake_vm_sign_key), k))
            fake_vm_sign_key[0] = 0;
        fclose(k);
    }
    fake_vm_after_save[0] = 0;
    return json_pack("{s:b,s:s,s:f,s:b}", "ok", 1, "path", path, "seconds", 0.1, "was_paused", 0);
}

static json_t *fake_vm_handler(void *opaque, const char *command, json_t *req)
{
    (void)opaque;
    if (strcmp(command, "save") == 0)
        return fake_vm_save(req);
    if (strcmp(command, "stop") == 0 || strcmp(command, "resume") == 0) {
        strncat(fake_vm_after_save, command, sizeof(fake_vm_after_save) - strlen(fake_vm_after_save) - 1);
        return json_pack("{s:b}", "ok", 1);
    }
    if (strcmp(command, "migrate") != 0)
        return json_pack("{s:b,s:s}", "ok", 1, "confinement", "jail (user, mount, pid, ipc ns)");
    migrate_asked++;
    snprintf(migrate_to, sizeof(migrate_to), "%s", json_string_value(json_object_get(req, "to")));
    int link = control_take_fd(fake_vm);
    if (link < 0)
        return control_error("no link passed");
    if (write(link, "frames from the VM", 18) != 18) {
        close(link);
        return control_error("the link does not take the frames");
    }
    close(link);
    return json_pack("{s:b,s:f,s:f,s:I,s:[]}", "ok", 1, "seconds", 0.5, "downtime_ms", 12.0,
                     "bytes", (json_int_t)(1 << 20), "rounds");
}

static volatile bool fake_vm_stop;

static void *serve_fake_vm(void *opaque)
{
    (void)opaque;
    serve_control_until(fake_vm, &fake_vm_stop);
    return NULL;
}

/* The stand-in VM NAME answering on its control socket in run/, served
 * by a thread until stop_fake_vm(). */
static pthread_t start_fake_vm(const char *name)
{
    pthread_t t;

    assert_int_equal(sh("mkdir -p home && mkdir -p -m 0700 run"), 0);
    setenv("XDG_RUNTIME_DIR", in_dir("run"), 1);
    assert_int_equal(control_open(name, fake_vm_handler, NULL, &fake_vm), 0);
    fake_vm_stop = false;
    assert_int_equal(pthread_create(&t, NULL, serve_fake_vm, NULL), 0);
    return t;
}

static void stop_fake_vm(pthread_t t)
{
    fake_vm_stop = true;
    pthread_join(t, NULL);
    control_close(fake_vm);
}

/* migrate connects to the destination itself and passes the link to the
 * VM over its control socket, so that a jailed VMM (no host network, no
 * host files) never dials: the destination here gets what the VM wrote.
 * A destination not there, or a VM not there: exit 1, one line, and the
 * other side is left alone. */
static void test_migrate_passes_the_link(void **state)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char got[64] = "";
    size_t len = 0;
    ssize_t n;
    pthread_t t;
    (void)state;

    t = start_fake_vm("mover");
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/dest.sock", dir);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(listener >= 0);
    assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(listener, 4), 0);

    int status = smolvm("migrate mover --to unix:%s/dest.sock", dir);
    if (status != 0 || !strstr(out, "migrated mover to unix:"))
        fail_msg("migrate: exit %d, stdout: %s, stderr: %s", status, out, err);
    assert_int_equal(migrate_asked, 1);
    assert_string_equal(migrate_to + 5, addr.sun_path); /* "unix:PATH", for its messages */
    int link = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    assert_true(link >= 0);
    /* Ended too: the VM's copy was the only one left. */
    while (len < sizeof(got) - 1 && (n = read(link, got + len, sizeof(got) - 1 - len)) > 0)
        len += (size_t)n;
    got[len] = 0;
    assert_string_equal(got, "frames from the VM");
    close(link);

    assert_one_line(smolvm("migrate mover --to unix:%s/nobody.sock", dir), 1, "migrate");
    assert_non_null(strstr(err, "destination unix:"));
    assert_int_equal(migrate_asked, 1); /* the VM was not asked */
    assert_one_line(smolvm("migrate nosuchvm --to unix:%s/dest.sock", dir), 1, "migrate");
    assert_non_null(strstr(err, "no running VM named 'nosuchvm'"));
    assert_int_equal(accept4(listener, NULL, NULL, SOCK_CLOEXEC), -1); /* not dialled */
    assert_int_equal(errno, EAGAIN);

    stop_fake_vm(t);
    close(listener);
}

/* save -o of a jailed VM: it saves into its own runtime folder (NAME.vm,
 * the one its jail lets it write) and save moves the bundle where asked. The VM is held paused until the bundle is there,
 * then stopped; a move that fails (-o names a folder) gives the VM back
 * running, says so in one line, and leaves no bundle in the runtime
 * folder. With --resume it is never held. */
static void test_jailed_save_moves_then_stops(void **state)
{
    pthread_t t;
    (void)state;

    assert_int_equal(sh("mkdir -p a-folder"), 0);
    t = start_fake_vm("kept");

    int status = smolvm("save kept -o %s/kept.smolmachine", dir);
    if (status != 0)
        fail_msg("save: exit %d, stderr: %s", status, err);
    assert_true(fake_vm_saved_held);
    assert_string_equal(fake_vm_after_save, "stop"); /* once the bundle was there */
    assert_int_equal(sh("grep -q 'a bundle' kept.smolmachine"), 0);
    assert_non_null(strstr(fake_vm_saved_to, "/smolvm/kept.vm"));

    assert_one_line(smolvm("save kept -o %s/a-folder", dir), 1, "save");
    assert_non_null(strstr(err, "a-folder"));
    assert_non_null(strstr(err, "(the VM runs on)"));
    assert_string_equal(fake_vm_after_save, "resume");
    assert_int_equal(sh("find run -name 'save-*' | grep -q ."), 1); /* nothing left behind */

    assert_int_equal(smolvm("save kept -o %s/again.smolmachine --resume", dir), 0);
    assert_false(fake_vm_saved_held);
    /* --sign: the VM is given no key (not even a copy): save signs the
     * bundle it wrote on its way out. */
    char pub[128], signed_path[128];
    struct bundle *b;
    assert_int_equal(smolvm("keygen outside"), 0);
    int signed_status = smolvm("save kept -o %s/signed.smolmachine --resume --sign %s/outside.key", dir, dir);
    if (signed_status != 0)
        fail_msg("save --sign: exit %d, stderr: %s", signed_status, err);
    assert_string_equal(fake_vm_sign_path, "");
    snprintf(pub, sizeof(pub), "%s/outside.pub", dir);
    snprintf(signed_path, sizeof(signed_path), "%s/signed.smolmachine", dir);
    assert_int_equal(bundle_open(signed_path, &b), 0);
    assert_int_equal(bundle_check_signature(b, pub), 0);
    bundle_close(b);
    assert_string_equal(fake_vm_after_save, "");

    stop_fake_vm(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_verb_has_help),
        cmocka_unit_test(test_abbreviated_options_refused),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_vm_options_help_lists_what_is_taken),
        cmocka_unit_test(test_failures_exit_1),
        cmocka_unit_test(test_share_option),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_keygen_json),
        cmocka_unit_test(test_image_build_output_refused),
        cmocka_unit_test(test_binary_hardened),
        cmocka_unit_test(test_attach),
        cmocka_unit_test(test_migrate_passes_the_link),
        cmocka_unit_test(test_jailed_save_moves_then_stops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
