/* Signed bundles: a bundle signed with a key verifies against its public
 * key only, and any section added, dropped or swapped after signing, a
 * foreign key, a forged signature section or a malformed key file is
 * refused by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <unistd.h>

#include "bundle/bundle.h"
#include "machine/machine.h"
#include "core/config.h"
#include "bundle/sections.h"
#include "bundle/signature.h"
#include "scratch.h"
#include "util/err.h"

static int setup(void **state)
{
    (void)state;
    if (scratch_setup("signature") < 0 || bundle_keygen(in_dir("k")) < 0 ||
        bundle_keygen(in_dir("other")) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

/* A bundle of two sections; signed with key (NULL: not), then extra
 * sections added after the signature. */
static const char *write_bundle(const char *name, const char *key, const char *extra)
{
    struct bundle_writer *w;
    const char *path = in_dir(name);
    assert_int_equal(bundle_writer_open(path, &w), 0);
    assert_int_equal(bundle_add(w, "config", "{}", 2, BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, "kernel", "kernel bytes", 12, BUNDLE_ZSTD), 0);
    if (key)
        assert_int_equal(bundle_sign(w, key), 0);
    if (extra)
        assert_int_equal(bundle_add(w, extra, "more", 4, BUNDLE_RAW), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    return path;
}

/* bundle_check_signature's result on path against pub; message checked. */
static void signature_check(const char *path, const char *pub, int want, const char *message)
{
    struct bundle *b;
    assert_int_equal(bundle_open(path, &b), 0);
    err_clear();
    assert_int_equal(bundle_check_signature(b, pub), want);
    if (message && !strstr(err_msg(), message))
        fail_msg("wanted \"%s\", got \"%s\"", message, err_msg());
    bundle_close(b);
}

static void signed_bundle_verifies(void **state)
{
    struct stat st;
    (void)state;
    signature_check(write_bundle("a.smolmachine", in_dir("k.key"), NULL), in_dir("k.pub"), 0, NULL);
    assert_int_equal(stat(in_dir("k.key"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void other_key_is_refused(void **state)
{
    (void)state;
    signature_check(write_bundle("b.smolmachine", in_dir("k.key"), NULL), in_dir("other.pub"),
                 -EPERM, "signed by another key");
    signature_check(write_bundle("c.smolmachine", NULL, NULL), in_dir("k.pub"), -EPERM,
                 "is not signed");
}

/* A section added after signing (what a forger who rewrites the table's
 * hashes can do) breaks the signature. */
static void section_added_after_signing_is_refused(void **state)
{
    (void)state;
    signature_check(write_bundle("d.smolmachine", in_dir("k.key"), "state"), in_dir("k.pub"), -EPERM,
                 "does not match its contents");
}

/* A signature section made by hand: the right key's bytes with a
 * signature of zeros, and one of the wrong length. */
static void forged_signature_sections_are_refused(void **state)
{
    uint8_t payload[104] = "SMOLSIG1";
    char hex[65] = {0};
    struct bundle_writer *w;
    FILE *f = fopen(in_dir("k.pub"), "r");
    (void)state;
    assert_non_null(f);
    assert_int_equal(fread(hex, 1, 64, f), 64);
    fclose(f);
    for (int i = 0; i < 32; i++)
        sscanf(hex + 2 * i, "%2hhx", &payload[8 + i]);
    assert_int_equal(bundle_writer_open(in_dir("e.smolmachine"), &w), 0);
    assert_int_equal(bundle_add(w, "config", "{}", 2, BUNDLE_RAW), 0);
    assert_int_equal(bundle_add(w, SECTION_SIGNATURE, payload, sizeof(payload), BUNDLE_RAW), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    signature_check(in_dir("e.smolmachine"), in_dir("k.pub"), -EPERM, "does not match");
    assert_int_equal(bundle_writer_open(in_dir("f.smolmachine"), &w), 0);
    assert_int_equal(bundle_add(w, SECTION_SIGNATURE, payload, 50, BUNDLE_RAW), 0);
    assert_int_equal(bundle_writer_commit(w), 0);
    signature_check(in_dir("f.smolmachine"), in_dir("k.pub"), -EINVAL, "bad signature section");
}

/* A jailed VM's save --sign: the bundle its VMM wrote (unsigned, or
 * carrying a signature section of its own by another key) is signed on
 * its way out, by a key the VMM never saw: the copy verifies with that
 * key, has the VM's sections, and only the one signature. */
static void copy_is_signed_outside(void **state)
{
    struct bundle *b;
    uint8_t *data;
    size_t len;
    (void)state;
    assert_int_equal(bundle_sign_copy(write_bundle("g.smolmachine", NULL, NULL),
                                      in_dir("g-signed.smolmachine"), in_dir("k.key")), 0);
    signature_check(in_dir("g-signed.smolmachine"), in_dir("k.pub"), 0, NULL);
    assert_int_equal(bundle_sign_copy(write_bundle("i.smolmachine", in_dir("other.key"), NULL),
                                      in_dir("i-signed.smolmachine"), in_dir("k.key")), 0);
    signature_check(in_dir("i-signed.smolmachine"), in_dir("k.pub"), 0, NULL);
    assert_int_equal(bundle_open(in_dir("i-signed.smolmachine"), &b), 0);
    assert_int_equal(bundle_read(b, "kernel", &data, &len), 0);
    assert_memory_equal(data, "kernel bytes", 12);
    free(data);
    bundle_close(b);
    /* A public key signs nothing, and nothing is written. */
    assert_true(bundle_sign_copy(in_dir("g.smolmachine"), in_dir("j.smolmachine"),
                                 in_dir("k.pub")) < 0);
    assert_int_equal(access(in_dir("j.smolmachine"), F_OK), -1);
}

static void bad_key_files_are_named(void **state)
{
    struct bundle_writer *w;
    (void)state;
    FILE *f = fopen(in_dir("short.pub"), "w");
    fputs("abcd\n", f);
    fclose(f);
    f = fopen(in_dir("nothex.key"), "w");
    fputs("zz56e99ac65a60000e470c7ecc4dc92053b0ba1bf8ee4d9eed5acef312577542\n", f);
    fclose(f);
    signature_check(write_bundle("g.smolmachine", in_dir("k.key"), NULL), in_dir("short.pub"), -EINVAL,
                 "is not a smolvm key");
    signature_check(in_dir("g.smolmachine"), in_dir("missing.pub"), -ENOENT, "missing.pub");
    assert_int_equal(bundle_writer_open(in_dir("h.smolmachine"), &w), 0);
    assert_int_equal(bundle_sign(w, in_dir("nothex.key")), -EINVAL);
    bundle_writer_abort(w);
    assert_int_equal(bundle_keygen(in_dir("k")), -EEXIST); /* never overwrites a key */
}

/* pack/save --sign with the public key would write a bundle nobody can
 * verify: refused by name before anything is written; --verify with the
 * private key is refused too. */
static void public_key_cannot_sign(void **state)
{
    struct vm_config cfg;
    const char *out = in_dir("p.smolmachine");
    char tmp[512];
    (void)state;

    assert_int_equal(bundle_check_signing_key(in_dir("k.key")), 0);
    assert_int_equal(bundle_check_signing_key(in_dir("k.pub")), -EINVAL);
    assert_non_null(strstr(err_msg(), "is a public key, not a private key"));
    assert_non_null(strstr(err_msg(), "k.pub"));
    vm_config_defaults(&cfg);
    err_clear();
    assert_int_equal(machine_export(&cfg, NULL, out, true, in_dir("k.pub")), -EINVAL);
    assert_non_null(strstr(err_msg(), "is a public key"));
    /* Before the bundle is even created: not "cannot create". */
    assert_int_equal(machine_export(&cfg, NULL, in_dir("nowhere/p.smolmachine"), true,
                                    in_dir("k.pub")), -EINVAL);
    assert_non_null(strstr(err_msg(), "is a public key"));
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d", out, (int)getpid());
    assert_int_equal(access(out, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), -1);
    signature_check(write_bundle("q.smolmachine", in_dir("k.key"), NULL), in_dir("k.key"), -EINVAL,
                    "is a private key");
    /* A private key whose public half is not its own. */
    FILE *f = fopen(in_dir("mixed.key"), "w"), *k = fopen(in_dir("k.key"), "r"),
         *o = fopen(in_dir("other.pub"), "r");
    char seed[65] = {0}, pub[65] = {0};
    assert_int_equal(fread(seed, 1, 64, k), 64);
    assert_int_equal(fread(pub, 1, 64, o), 64);
    fprintf(f, "%s%s\n", seed, pub);
    fclose(f);
    fclose(k);
    fclose(o);
    assert_int_equal(bundle_check_signing_key(in_dir("mixed.key")), -EINVAL);
    assert_non_null(strstr(err_msg(), "damaged"));
    err_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signed_bundle_verifies),
        cmocka_unit_test(other_key_is_refused),
        cmocka_unit_test(section_added_after_signing_is_refused),
        cmocka_unit_test(forged_signature_sections_are_refused),
        cmocka_unit_test(copy_is_signed_outside),
        cmocka_unit_test(bad_key_files_are_named),
        cmocka_unit_test(public_key_cannot_sign),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
