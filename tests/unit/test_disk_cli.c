/* The `smolvm disk` command line, run as users run it (the smolvm binary
 * built beside this test) and judged by qemu-img where qemu-img has the
 * same verb: exit codes (0 ok, 1 failed, 2 usage; compare's 1 = different,
 * check's 63 = cannot check), one-line messages "smolvm: disk VERB: ...",
 * -h on every verb, exact option names, --json and its errors, info and
 * measure JSON equal to qemu-img's, resize by a negative size, amend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scratch.h"

static char smolvm[512];

static int setup(void **state)
{
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    (void)state;
    if (n <= 0)
        return -1;
    self[n] = 0;
    /* build/tests/unit/test_disk_cli -> build/smolvm */
    snprintf(smolvm, sizeof(smolvm), "%s/../../smolvm", dirname(self));
    if (access(smolvm, X_OK) != 0)
        return -1;
    return scratch_setup("disk-cli");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

static char out[65536], err[65536];

static void slurp(const char *name, char *buf, size_t size)
{
    FILE *f = fopen(in_dir(name), "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
}

/* smolvm disk ARGS in the scratch folder; stdout and stderr into out, err. */
static int disk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int disk(const char *fmt, ...)
{
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    int status = sh("'%s' disk %s >out.txt 2>err.txt", smolvm, args);
    slurp("out.txt", out, sizeof(out));
    slurp("err.txt", err, sizeof(err));
    return status;
}

static unsigned lines(const char *text)
{
    unsigned n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static unsigned occurrences(const char *text, const char *what)
{
    unsigned n = 0;
    for (const char *p = strstr(text, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

/* One line on stderr, "smolvm: disk VERB: ...", nothing on stdout. */
static void assert_one_line(const char *verb)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "smolvm: disk %s: ", verb);
    if (lines(err) != 1 || strncmp(err, prefix, strlen(prefix)) != 0 || out[0])
        fail_msg("want one line '%s...', got stderr '%s' stdout '%s'", prefix, err, out);
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j)
        fail_msg("not JSON (%s): '%s'", e.text, text);
    return j;
}

/* The JSON a shell command prints. */
static json_t *json_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *json_of(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (sh("%s > json.txt", cmd) != 0)
        fail_msg("%s failed", cmd);
    slurp("json.txt", out, sizeof(out));
    return parse(out);
}

static void assert_same_json(json_t *want, json_t *got, const char *what)
{
    if (!json_equal(want, got)) {
        char *a = json_dumps(want, JSON_SORT_KEYS), *b = json_dumps(got, JSON_SORT_KEYS);
        fail_msg("%s: qemu-img says %s, smolvm %s", what, a, b);
    }
    json_decref(want);
    json_decref(got);
}

static const char *const verbs[] = {"create", "info",  "check",  "convert", "compare",
                                    "snapshot", "resize", "commit", "rebase", "amend",
                                    "measure", "bench", "map"};

/* Every verb: -h and --help print its usage and options on stdout, exit 0. */
static void test_every_verb_has_help(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        char usage[64];
        snprintf(usage, sizeof(usage), "usage: smolvm disk %s", verbs[i]);
        for (int long_form = 0; long_form < 2; long_form++) {
            if (disk("%s %s", verbs[i], long_form ? "--help" : "-h") != 0 ||
                strncmp(out, usage, strlen(usage)) != 0 || err[0] || !strstr(out, "--json") ||
                !strstr(out, "-h, --help") || !strstr(out, "{\"error\""))
                fail_msg("disk %s %s: '%s' '%s'", verbs[i], long_form ? "--help" : "-h", out, err);
        }
    }
}

/* getopt_long would take --out for --output and --back for --backing-chain:
 * refused, with the options the verb takes. */
static void test_prefix_option_refused(void **state)
{
    (void)state;
    assert_int_equal(sh("qemu-img create -q -f qcow2 p.qcow2 1M"), 0);
    assert_int_equal(disk("info --out=json p.qcow2"), 2);
    assert_one_line("info");
    assert_non_null(strstr(err, "unknown option '--out'"));
    assert_non_null(strstr(err, "--output"));
    assert_int_equal(disk("info --back p.qcow2"), 2);
    assert_one_line("info");
    assert_int_equal(disk("resize --shr p.qcow2 2M"), 2);
    assert_one_line("resize");
    assert_int_equal(disk("bench --flush=1 p.qcow2"), 2);
    assert_one_line("bench");
    /* The exact names work. */
    assert_int_equal(disk("info --output=json --backing-chain p.qcow2"), 0);
}

/* Bad sizes, unknown options, missing operands or values: exit 2, one
 * line, no usage dump. */
static void test_usage_errors_one_line(void **state)
{
    static const struct {
        const char *verb, *args;
    } cases[] = {
        {"create", "-f qcow2 u.qcow2 12Q"}, {"create", "-f qcow2 u.qcow2"},
        {"create", "-f nosuch u.img 1M"},   {"create", "-o cluster_size u.img 1M"},
        {"info", ""},                       {"info", "-x u.img"},
        {"info", "-f"},                     {"info", "--output=yaml u.img"},
        {"check", "-r some u.img"},         {"convert", "-t bogus a b"},
        {"convert", "a"},                   {"snapshot", "u.img"},
        {"resize", "u.img"},                {"resize", "u.img 1X"},
        {"resize", "u.img -1M"},            {"rebase", "u.img"},
        {"amend", "u.img"},                 {"amend", "-o refcount_bits=8 u.img"},
        {"amend", "-o compat=2.0 u.img"},   {"measure", "-O vdi --size 1G"},
        {"measure", "--size 1Q"},           {"measure", ""},
        {"bench", "-s 0 u.img"},            {"map", "a b"},
        {"commit", ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int status = disk("%s %s", cases[i].verb, cases[i].args);
        if (status != 2)
            fail_msg("disk %s %s: exit %d, not 2 (%s)", cases[i].verb, cases[i].args, status, err);
        assert_one_line(cases[i].verb);
    }
    assert_int_equal(sh("test ! -e u.qcow2"), 0);
}

/* A failure: exit 1, one line naming the file once. */
static void test_runtime_error_one_line(void **state)
{
    (void)state;
    static const char *const cases[] = {"info nope.qcow2", "check nope.qcow2",
                                        "map nope.qcow2", "convert nope.qcow2 n2.raw",
                                        "resize nope.qcow2 1M", "amend -o compat=1.1 nope.qcow2",
                                        "measure nope.qcow2", "snapshot -l nope.qcow2",
                                        "commit nope.qcow2", "bench -c 1 nope.qcow2"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char verb[16];
        sscanf(cases[i], "%15s", verb);
        if (disk("%s", cases[i]) != 1)
            fail_msg("disk %s: not exit 1 (%s)", cases[i], err);
        assert_one_line(verb);
        if (occurrences(err, "nope.qcow2") != 1)
            fail_msg("disk %s: names the file %u times: %s", cases[i],
                     occurrences(err, "nope.qcow2"), err);
    }
    /* A corrupt image (its L1 entry points between clusters): the driver's
     * finding is the one line, naming the file once. */
    assert_int_equal(sh("qemu-img create -q -f qcow2 bad.qcow2 64M && "
                        "qemu-io -c 'write -P 1 0 64k' bad.qcow2 >/dev/null && "
                        "qemu-img info --output=json bad.qcow2 >/dev/null && "
                        "printf '\\000\\000\\000\\000\\000\\005\\002\\001' | "
                        "dd of=bad.qcow2 bs=1 seek=196608 conv=notrunc 2>/dev/null && "
                        "cp bad.qcow2 bad2.qcow2"), 0);
    static const char *const corrupt[] = {"map bad.qcow2", "convert bad.qcow2 bad.raw",
                                          "measure bad.qcow2"};
    for (size_t i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
        char verb[16];
        sscanf(corrupt[i], "%15s", verb);
        if (disk("%s", corrupt[i]) != 1)
            fail_msg("disk %s: not exit 1 (%s)", corrupt[i], err);
        assert_one_line(verb);
        assert_int_equal(occurrences(err, "bad.qcow2"), 1);
        assert_non_null(strstr(err, "corrupt"));
    }
    assert_int_equal(disk("compare bad.qcow2 bad2.qcow2"), 2);
    assert_one_line("compare");
    /* A file that exists but cannot be amended. */
    assert_int_equal(sh("qemu-img create -q -f raw plain.raw 1M"), 0);
    assert_int_equal(disk("amend -o compat=1.1 plain.raw"), 1);
    assert_one_line("amend");
}

/* Under --json an error is {"error": "..."} on stdout, with the exit
 * status the error has without it; nothing on stderr. */
static void test_json_errors(void **state)
{
    (void)state;
    static const struct {
        const char *args;
        int status;
    } cases[] = {{"info --json nope.qcow2", 1},           {"info --output=json nope.qcow2", 1},
                 {"info --output json nope.qcow2", 1},    {"create --json -f qcow2 j.qcow2 1Q", 2},
                 {"info --json --bogus nope.qcow2", 2},   {"compare --json nope.qcow2 b", 2},
                 {"measure --json -O vdi --size 1G", 2},  {"check --json nope.qcow2", 1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int status = disk("%s", cases[i].args);
        /* The shared convention: the one line on stderr, the object on stdout. */
        if (status != cases[i].status || strncmp(err, "smolvm: disk ", 13) != 0 ||
            strchr(err, '\n') != err + strlen(err) - 1)
            fail_msg("disk %s: exit %d, stderr '%s'", cases[i].args, status, err);
        json_t *j = parse(out);
        if (!json_is_object(j) || !json_string_value(json_object_get(j, "error")) ||
            json_integer_value(json_object_get(j, "exit_code")) != cases[i].status ||
            strncmp(json_string_value(json_object_get(j, "verb")) ?: "", "disk ", 5) != 0)
            fail_msg("disk %s: not {\"error\", \"verb\", \"exit_code\"}: %s", cases[i].args, out);
        json_decref(j);
    }
}

/* info --output=json is qemu-img's, key for key and value for value, for
 * every format and for backing chains. */
static void test_info_json_matches_qemu(void **state)
{
    static const char *const images[] = {
        "i.raw", "i3.qcow2", "i2.qcow2", "io.qcow2", "sub/io.qcow2", "iz.qcow2", "isnap.qcow2",
        "idirty.qcow2", "iabs.qcow2", "i.vdi", "i.vpc", "ifixed.vpc", "i.vmdk", "mine.vmdk",
    };
    (void)state;
    assert_int_equal(sh("qemu-img create -q -f raw i.raw 1M && "
                        "qemu-img create -q -f qcow2 i3.qcow2 64M && "
                        "qemu-img create -q -f qcow2 -o compat=0.10 i2.qcow2 64M && "
                        "qemu-io -c 'write -P 1 0 100k' i2.qcow2 >/dev/null && "
                        "qemu-img create -q -f qcow2 -b i2.qcow2 -F qcow2 io.qcow2 && "
                        "mkdir -p sub && qemu-img create -q -f qcow2 sub/ib.qcow2 8M && "
                        "qemu-img create -q -f qcow2 -b ib.qcow2 -F qcow2 sub/io.qcow2 && "
                        "qemu-img create -q -f qcow2 -o compression_type=zstd,extended_l2=on,"
                        "cluster_size=16k,lazy_refcounts=on,refcount_bits=4 iz.qcow2 1G && "
                        "cp i3.qcow2 isnap.qcow2 && qemu-img snapshot -c one isnap.qcow2 && "
                        "qemu-img create -q -f qcow2 -o lazy_refcounts=on idirty.qcow2 8M && "
                        "(qemu-io -c 'write -P 3 0 64k' -c abort idirty.qcow2 >/dev/null 2>&1; true) && "
                        "qemu-img create -q -f qcow2 -b \"$PWD/i3.qcow2\" -F qcow2 iabs.qcow2 && "
                        "qemu-img create -q -f vdi i.vdi 10M && qemu-img create -q -f vpc i.vpc 10M && "
                        "qemu-img create -q -f vpc -o subformat=fixed ifixed.vpc 10M && "
                        "qemu-img create -q -f vmdk i.vmdk 10M"),
                     0);
    assert_int_equal(disk("convert -O vmdk i3.qcow2 mine.vmdk"), 0); /* ours, described */
    for (size_t i = 0; i < sizeof(images) / sizeof(images[0]); i++) {
        for (int chain = 0; chain < 2; chain++) {
            const char *flag = chain ? "--backing-chain" : "";
            json_t *want = json_of("qemu-img info --output=json %s %s", flag, images[i]);
            json_t *got = json_of("'%s' disk info --output=json %s %s", smolvm, flag, images[i]);
            assert_same_json(want, got, images[i]);
        }
    }
    /* --json is the same as --output=json; a dirty image says so. */
    assert_same_json(json_of("'%s' disk info --output=json idirty.qcow2", smolvm),
                     json_of("'%s' disk info --json idirty.qcow2", smolvm), "--json");
    assert_int_equal(disk("info --json idirty.qcow2"), 0);
    assert_non_null(strstr(out, "\"dirty-flag\": true"));
}

/* map, JSON and text, is qemu-img map's: extents merged as there, a raw
 * file's holes with their offset, each layer of a chain by its name. */
static void test_map_matches_qemu(void **state)
{
    static const char *const images[] = {"mp.qcow2", "mp.raw", "mpo.qcow2", "mpr.qcow2",
                                         "mp.vdi", "mp.vpc"};
    (void)state;
    assert_int_equal(sh("qemu-img create -q -f qcow2 mp.qcow2 64M && "
                        "qemu-io -c 'write -P 1 0 100k' -c 'write -P 2 1M 3k' -c 'write -z 2M 1M' "
                        "-c 'write -P 3 63M 1M' mp.qcow2 >/dev/null && "
                        "qemu-img convert -O raw mp.qcow2 mp.raw && "
                        "qemu-img convert -O vdi mp.qcow2 mp.vdi && "
                        "qemu-img convert -O vpc mp.qcow2 mp.vpc && "
                        "qemu-img create -q -f qcow2 -b mp.qcow2 -F qcow2 mpo.qcow2 && "
                        "qemu-io -c 'write -P 9 5M 70k' mpo.qcow2 >/dev/null && "
                        "qemu-img create -q -f qcow2 -b mp.raw -F raw mpr.qcow2 && "
                        "qemu-io -c 'write -P 9 3M 64k' mpr.qcow2 >/dev/null"), 0);
    for (size_t i = 0; i < sizeof(images) / sizeof(images[0]); i++) {
        assert_same_json(json_of("qemu-img map --output=json %s", images[i]),
                         json_of("'%s' disk map --output=json %s", smolvm, images[i]), images[i]);
        if (sh("qemu-img map %s > q.txt && '%s' disk map %s > s.txt && diff q.txt s.txt >&2",
               images[i], smolvm, images[i]) != 0)
            fail_msg("map %s: the text differs from qemu-img's", images[i]);
    }
}

/* 0 identical, 1 different, 2 for any error (qemu-img compare's). */
static void test_compare_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(sh("qemu-img create -q -f qcow2 ca.qcow2 4M && "
                        "qemu-img create -q -f raw cb.raw 4M && "
                        "qemu-img create -q -f qcow2 cc.qcow2 4M && "
                        "qemu-io -c 'write -P 7 1M 4k' cc.qcow2 >/dev/null"), 0);
    assert_int_equal(disk("compare ca.qcow2 cb.raw"), 0);
    assert_int_equal(disk("compare ca.qcow2 cc.qcow2"), 1);
    assert_non_null(strstr(out, "offset 1048576"));
    assert_int_equal(disk("compare --json ca.qcow2 cc.qcow2"), 1);
    json_t *j = parse(out);
    assert_true(json_is_false(json_object_get(j, "identical")));
    assert_int_equal(json_integer_value(json_object_get(j, "mismatch-offset")), 1048576);
    json_decref(j);
    assert_int_equal(disk("compare ca.qcow2 nope.qcow2"), 2);
    assert_one_line("compare");
    assert_int_equal(disk("compare ca.qcow2"), 2);
    assert_int_equal(disk("compare --bogus ca.qcow2 cb.raw"), 2);
    assert_int_equal(sh("qemu-img compare ca.qcow2 nope.qcow2 >/dev/null 2>&1"), 2);
}

/* raw (and vpc) cannot be checked: qemu-img says so and exits 63; so do we. */
static void test_check_raw(void **state)
{
    (void)state;
    assert_int_equal(sh("qemu-img create -q -f raw k.raw 1M && "
                        "qemu-img create -q -f vpc k.vpc 1M && "
                        "qemu-img create -q -f qcow2 k.qcow2 1M"), 0);
    assert_int_equal(sh("qemu-img check k.raw >/dev/null 2>&1"), 63);
    assert_int_equal(disk("check k.raw"), 63);
    assert_one_line("check");
    assert_non_null(strstr(err, "k.raw: this image format (raw) does not support checks"));
    assert_int_equal(disk("check -f vpc k.vpc"), 63);
    assert_int_equal(disk("check --json k.raw"), 63);
    json_t *j = parse(out);
    assert_non_null(json_string_value(json_object_get(j, "error")));
    json_decref(j);
    /* A qcow2 image is checked; JSON as qemu-img's, key for key. */
    assert_int_equal(disk("check k.qcow2"), 0);
    assert_int_equal(sh("cp k.qcow2 kd.qcow2 && "
                        "qemu-io -c 'write -P 1 0 300k' -c 'write -c -P 2 512k 64k' kd.qcow2 "
                        ">/dev/null && qemu-img snapshot -c one kd.qcow2 && "
                        "qemu-io -c 'write -P 3 0 64k' kd.qcow2 >/dev/null"), 0);
    assert_same_json(json_of("qemu-img check --output=json k.qcow2"),
                     json_of("'%s' disk check --output=json k.qcow2", smolvm), "check k.qcow2");
    assert_same_json(json_of("qemu-img check --output=json kd.qcow2"),
                     json_of("'%s' disk check --output=json kd.qcow2", smolvm), "check kd.qcow2");
    /* And the text, line for line. */
    assert_int_equal(sh("qemu-img check kd.qcow2 > q.txt && '%s' disk check kd.qcow2 > s.txt && "
                        "diff q.txt s.txt >&2", smolvm), 0);
}

/* resize F -512M shrinks with --shrink only; raw and qcow2. */
static void test_resize_negative(void **state)
{
    (void)state;
    assert_int_equal(sh("qemu-img create -q -f qcow2 rn.qcow2 64M && "
                        "qemu-io -c 'write -P 3 0 1M' -c 'write -P 4 60M 1M' rn.qcow2 >/dev/null && "
                        "qemu-img create -q -f raw rn.raw 4M"), 0);
    assert_int_equal(disk("resize rn.qcow2 -16M"), 2);
    assert_one_line("resize");
    assert_int_equal(disk("resize rn.qcow2 16M"), 1); /* smaller, absolute */
    assert_one_line("resize");
    assert_int_equal(disk("resize --shrink rn.qcow2 -16M"), 0);
    assert_int_equal(sh("qemu-img check -q rn.qcow2 && "
                        "qemu-img info rn.qcow2 | grep -q '(50331648 bytes)' && "
                        "qemu-io -c 'read -P 3 0 1M' rn.qcow2 >/dev/null"), 0);
    assert_int_equal(disk("resize rn.qcow2 --shrink -1G"), 1);
    assert_one_line("resize");
    assert_int_equal(disk("resize --shrink rn.raw -1M --json"), 0);
    json_t *j = parse(out);
    assert_int_equal(json_integer_value(json_object_get(j, "virtual-size")), 3 << 20);
    json_decref(j);
    assert_int_equal(sh("test $(stat -c %%s rn.raw) = 3145728"), 0);
    assert_int_equal(disk("resize rn.raw +1M"), 0);
    assert_int_equal(sh("test $(stat -c %%s rn.raw) = 4194304"), 0);
}

/* measure's numbers are qemu-img measure's, from a size or an image. */
static void test_measure_matches_qemu(void **state)
{
    static const char *const cases[] = {
        "-O qcow2 --size 1G",
        "-O raw --size 1000",
        "-O qcow2 -o cluster_size=4k,refcount_bits=1 --size 10G",
        "-O qcow2 m.qcow2",
        "-O qcow2 -o cluster_size=512 mo.qcow2",
        "-O qcow2 m2.qcow2",
        "-O qcow2 -f raw m.raw",
        "-O qcow2 -o cluster_size=2M -f raw m.raw",
        "-O raw m.qcow2",
        "-O raw -f raw m.raw",
    };
    (void)state;
    assert_int_equal(sh("qemu-img create -q -f qcow2 m.qcow2 64M && "
                        "qemu-io -c 'write -P 1 0 100k' -c 'write -P 2 1M 3k' -c 'write -z 2M 1M' "
                        "-c 'write -P 3 63M 1M' m.qcow2 >/dev/null && "
                        "qemu-img convert -O raw m.qcow2 m.raw && truncate -s 100M m.raw && "
                        "qemu-img convert -O qcow2 -o compat=0.10 m.qcow2 m2.qcow2 && "
                        "qemu-img create -q -f qcow2 -b m.qcow2 -F qcow2 mo.qcow2 && "
                        "qemu-io -c 'write -P 9 5M 70k' mo.qcow2 >/dev/null"), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_same_json(json_of("qemu-img measure --output=json %s", cases[i]),
                         json_of("'%s' disk measure --output=json %s", smolvm, cases[i]),
                         cases[i]);
    assert_int_equal(disk("measure --size 1G"), 0);
    assert_non_null(strstr(out, "required size: 393216\nfully allocated size: 1074135040\n"));
}

/* amend compat=1.1 <-> 0.10 and lazy_refcounts, judged by qemu-img check,
 * info and compare; what it cannot do is refused with the image as it was. */
static void test_amend(void **state)
{
    (void)state;
    assert_int_equal(sh("qemu-img create -q -f qcow2 -o compat=0.10 a.qcow2 8M && "
                        "qemu-io -c 'write -P 5 0 200k' a.qcow2 >/dev/null && "
                        "qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 ao.qcow2 && "
                        "qemu-img convert -O raw a.qcow2 a.raw"), 0);
    /* Upgrade, with a backing file name and format to carry over. */
    assert_int_equal(disk("amend -o compat=1.1 a.qcow2"), 0);
    assert_int_equal(sh("qemu-img check -q a.qcow2 && qemu-img compare -q a.qcow2 a.raw && "
                        "qemu-img info a.qcow2 | grep -q 'compat: 1.1'"), 0);
    assert_int_equal(disk("amend -o compat=0.10 ao.qcow2"), 0);
    assert_int_equal(disk("amend -o compat=1.1 ao.qcow2"), 0);
    assert_int_equal(sh("qemu-img check -q ao.qcow2 && qemu-img compare -q ao.qcow2 a.raw && "
                        "qemu-img info --output=json ao.qcow2 | grep -q '\"backing-filename-format\": \"qcow2\"'"),
                     0);
    assert_int_equal(disk("amend -o lazy_refcounts=on --json a.qcow2"), 0);
    assert_non_null(strstr(out, "\"lazy-refcounts\": true"));
    assert_int_equal(sh("qemu-img check -q a.qcow2 && "
                        "qemu-img info a.qcow2 | grep -q 'lazy refcounts: true'"), 0);
    /* Lazy refcounts do not exist in 0.10: said, and nothing changed. */
    assert_int_equal(disk("amend -o compat=0.10 a.qcow2"), 1);
    assert_one_line("amend");
    assert_int_equal(disk("amend -o compat=0.10,lazy_refcounts=off a.qcow2"), 0);
    assert_int_equal(sh("qemu-img check -q a.qcow2 && qemu-img compare -q a.qcow2 a.raw && "
                        "qemu-img info a.qcow2 | grep -q 'compat: 0.10'"), 0);
    /* Zero clusters (preallocated and not) become what reads the same in v2. */
    assert_int_equal(sh("qemu-img create -q -f qcow2 z.qcow2 8M && "
                        "qemu-io -c 'write -P 5 0 1M' -c 'write -z 64k 128k' "
                        "-c 'write -z 4M 1M' z.qcow2 >/dev/null && "
                        "qemu-img convert -O raw z.qcow2 z.raw"), 0);
    assert_int_equal(disk("amend -o compat=0.10 z.qcow2"), 0);
    assert_int_equal(sh("qemu-img check -q z.qcow2 && qemu-img compare -q z.qcow2 z.raw && "
                        "qemu-img info z.qcow2 | grep -q 'compat: 0.10'"), 0);
    /* Zero clusters over a backing file cannot be: refused, file unchanged
     * (the preallocated zero cluster before it too). */
    assert_int_equal(sh("qemu-img create -q -f qcow2 -b z.qcow2 -F qcow2 zb.qcow2 && "
                        "qemu-io -c 'write -P 1 0 64k' -c 'write -z 0 64k' -c 'write -z 1M 64k' "
                        "zb.qcow2 >/dev/null && cp zb.qcow2 zb.before && "
                        "qemu-img map --output=json zb.qcow2 | grep -q '\"start\": 0, .*\"zero\": true, .*\"offset\"'"),
                     0);
    assert_int_equal(disk("amend -o compat=0.10 zb.qcow2"), 1);
    assert_one_line("amend");
    assert_non_null(strstr(err, "zero clusters over its backing file"));
    assert_int_equal(sh("cmp -s zb.qcow2 zb.before"), 0);
    /* refcount_bits other than 16 cannot go to 0.10 either. */
    assert_int_equal(sh("qemu-img create -q -f qcow2 -o refcount_bits=8 r8.qcow2 1M"), 0);
    assert_int_equal(disk("amend -o compat=0.10 r8.qcow2"), 1);
    assert_non_null(strstr(err, "refcount_bits=16"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_verb_has_help),
        cmocka_unit_test(test_prefix_option_refused),
        cmocka_unit_test(test_usage_errors_one_line),
        cmocka_unit_test(test_runtime_error_one_line),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_info_json_matches_qemu),
        cmocka_unit_test(test_map_matches_qemu),
        cmocka_unit_test(test_compare_exit_codes),
        cmocka_unit_test(test_check_raw),
        cmocka_unit_test(test_resize_negative),
        cmocka_unit_test(test_measure_matches_qemu),
        cmocka_unit_test(test_amend),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
