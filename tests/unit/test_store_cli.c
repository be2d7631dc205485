/* The store verbs as a user runs them (the smolvm binary of this build, on
 * a store in a scratch folder; no KVM): exit 2 and one line
 * "smolvm: VERB: ..." for a usage error (a bad name, an unknown option),
 * 1 for a failure, {"error": ...} on stdout instead under --json; --json
 * on every verb, snake_case keys; ls sorted by name, layers oldest first,
 * sizes as `ls -h`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scratch.h"

static char smolvm[4200];

static int setup(void **state)
{
    (void)state;
    if (scratch_find_smolvm(smolvm, sizeof(smolvm)) < 0)
        return -1;
    return scratch_setup("store-cli") ||
           sh("head -c 2M /dev/urandom > img.raw && head -c 100 /dev/urandom > small.raw");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

/* smolvm ARGS on the scratch store (absolute: a relative XDG_DATA_HOME is
 * ignored; HOME too, so nothing lands in the user's): its exit code;
 * stdout in out, stderr in err. */
static int run(const char *args)
{
    return sh("HOME=\"$PWD\" XDG_DATA_HOME=\"$PWD/data\" '%s' %s > out 2> err", smolvm, args);
}

static json_t *out_json(void)
{
    json_error_t e;
    json_t *j = json_load_file(in_dir("out"), 0, &e);
    if (!j)
        fail_msg("stdout is not JSON: %s", e.text);
    return j;
}

/* One line on stderr starting "smolvm: VERB: ", nothing on stdout. */
static void expect_one_line(const char *verb)
{
    assert_int_equal(sh("test ! -s out && test $(wc -l < err) -eq 1 && grep -q '^smolvm: %s: ' err",
                        verb), 0);
}

/* Under --json, the shared convention: {"error", "verb", "exit_code"} on
 * stdout, after the one line on stderr. */
static void expect_json_error(const char *containing)
{
    json_t *j = out_json();
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")) ?: "", containing));
    assert_non_null(json_string_value(json_object_get(j, "verb")));
    assert_true(json_integer_value(json_object_get(j, "exit_code")) > 0);
    assert_int_equal(sh("test $(wc -l < err) -eq 1"), 0);
    json_decref(j);
}

/* No key of any object (at any depth) has a '-' or an upper-case letter. */
static void expect_snake_case(json_t *j)
{
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_array(j))
        json_array_foreach(j, i, v)
            expect_snake_case(v);
    json_object_foreach(j, key, v) {
        if (strpbrk(key, "-ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
            fail_msg("key '%s' is not snake_case", key);
        expect_snake_case(v);
    }
}

static void test_usage_errors(void **state)
{
    (void)state;
    assert_int_equal(run("create Bad/name --from img.raw"), 2);
    expect_one_line("create");
    assert_int_equal(run("create Bad/name --from img.raw --json"), 2);
    expect_json_error("not a valid instance name");
    assert_int_equal(run("create x --from img.raw --bogus"), 2);
    expect_one_line("create");
    assert_int_equal(run("create x --from img.raw --mem 0"), 2);
    expect_one_line("create");
    assert_int_equal(run("create x"), 2);
    expect_one_line("create");
    assert_int_equal(run("rm .hidden"), 2);
    expect_one_line("rm");
    assert_int_equal(run("reset a b"), 2);
    expect_one_line("reset");
    assert_int_equal(run("commit"), 2);
    expect_one_line("commit");
    assert_int_equal(run("ls extra"), 2);
    expect_one_line("ls");
    assert_int_equal(run("layers --bogus --json"), 2);
    expect_json_error("unknown option '--bogus'");
    assert_int_equal(run("gc extra"), 2);
    expect_one_line("gc");
    /* Runtime failures: 1, the same two shapes. */
    assert_int_equal(run("rm nobody"), 1);
    expect_one_line("rm");
    assert_int_equal(run("reset nobody --json"), 1);
    expect_json_error("no instance 'nobody'");
    assert_int_equal(run("create y --from missing.raw --json"), 1);
    expect_json_error("missing.raw");
}

static void test_json_and_tables(void **state)
{
    json_t *j, *x;
    (void)state;

    /* zeta first: ls still lists alpha first. */
    assert_int_equal(run("create zeta --from img.raw --json"), 0);
    j = out_json();
    assert_string_equal(json_string_value(json_object_get(j, "name")), "zeta");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "top")) ?: ""), 64);
    assert_string_equal(json_string_value(json_object_get(j, "next_start")), "boots");
    assert_true(json_integer_value(json_object_get(j, "delta_bytes")) > 0);
    expect_snake_case(j);
    json_decref(j);
    assert_int_equal(run("create alpha --from img.raw"), 0);
    assert_int_equal(sh("test \"$(cat out)\" = alpha"), 0);
    assert_int_equal(run("create mid --from img.raw"), 0);

    assert_int_equal(run("ls"), 0);
    assert_int_equal(sh("sed -n 2p out | grep -q '^alpha ' && sed -n 3p out | grep -q '^mid ' && "
                        "sed -n 4p out | grep -q '^zeta ' && "
                        "sed -n 2p out | grep -Eq ' [0-9.]+K  boots$'"), 0);
    assert_int_equal(run("ls --json"), 0);
    j = out_json();
    expect_snake_case(j);
    assert_int_equal(json_array_size(j), 3);
    x = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(x, "name")), "alpha");
    /* Every column of the table: name, layer, delta, next start. */
    assert_non_null(json_string_value(json_object_get(x, "top")));
    assert_true(json_is_integer(json_object_get(x, "delta_bytes")));
    assert_non_null(json_string_value(json_object_get(x, "next_start")));
    json_decref(j);

    /* A later layer lists after the older one, sizes as ls -h. */
    sleep(1);
    assert_int_equal(run("commit alpha -m later --json"), 0);
    j = out_json();
    char layer[65];
    snprintf(layer, sizeof(layer), "%s", json_string_value(json_object_get(j, "layer")) ?: "");
    assert_string_equal(json_string_value(json_object_get(j, "top")), layer);
    expect_snake_case(j);
    json_decref(j);
    sleep(1);
    assert_int_equal(run("create small --from small.raw"), 0); /* the newest layer */
    assert_int_equal(run("layers"), 0);
    assert_int_equal(sh("sed -n 2p out | grep -Eq '^[0-9a-f]{12} +raw +2.0M +2.0M +3  image$' && "
                        "sed -n 3p out | grep -q ' later$' && sed -n 4p out | grep -Eq ' 100 +.* 1  image$'"),
                     0);
    assert_int_equal(run("layers --json"), 0);
    j = out_json();
    expect_snake_case(j);
    assert_int_equal(json_array_size(j), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1), "hash")), layer);
    x = json_array_get(j, 0);
    assert_int_equal(json_integer_value(json_object_get(x, "virtual_size")), 2 << 20);
    static const char *const columns[] = {"hash", "format", "parent", "virtual_size", "bytes",
                                          "users", "message"};
    for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++)
        assert_non_null(json_object_get(x, columns[i]));
    json_decref(j);

    assert_int_equal(run("reset alpha --json"), 0);
    j = out_json();
    assert_string_equal(json_string_value(json_object_get(j, "top")), layer);
    json_decref(j);
    assert_int_equal(run("rm small --json"), 0);
    j = out_json();
    assert_true(json_is_true(json_object_get(j, "removed")));
    assert_string_equal(json_string_value(json_object_get(j, "name")), "small");
    json_decref(j);
    assert_int_equal(run("gc --json"), 0);
    j = out_json();
    assert_int_equal(json_integer_value(json_object_get(j, "layers_removed")), 1);
    json_decref(j);
    assert_int_equal(run("gc"), 0);
    assert_int_equal(sh("grep -qx '0 layers removed' out"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_json_and_tables),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
