/* smolvm kernel build: the cache key, the check that Kconfig kept every
 * option the fragment sets, what counts as a build step, the built-in micro
 * configuration, and the whole build flow (unpack, configure, make, check,
 * cache, reuse, a failed build's log) against a fake kernel source whose
 * Makefile stands in for Linux's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/kernel.h"
#include "util/err.h"
#include "scratch.h"

static int setup(void **state)
{
    (void)state;
    return scratch_setup("kernel");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

static void key_follows_source_and_fragment(void **state)
{
    char a[HASH_HEX], b[HASH_HEX], c[HASH_HEX], d[HASH_HEX];
    (void)state;

    kernel_cache_key("linux-source-6.1.tar.xz 138008000 1.0", "CONFIG_A=y\n", 11, a);
    kernel_cache_key("linux-source-6.1.tar.xz 138008000 1.0", "CONFIG_A=y\n", 11, b);
    kernel_cache_key("linux-source-6.1.tar.xz 138008001 1.0", "CONFIG_A=y\n", 11, c);
    kernel_cache_key("linux-source-6.1.tar.xz 138008000 1.0", "CONFIG_B=y\n", 11, d);
    assert_true(hash_is_hex(a));
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
}

static void config_missing_finds_dropped_options(void **state)
{
    char missing[128];
    (void)state;
    const char *dotconfig = "CONFIG_64BIT=y\n# CONFIG_PCI is not set\nCONFIG_PCI_MSI_X=y\n"
                            "CONFIG_NR_CPUS=8\nCONFIG_9P_FS=y";

    assert_int_equal(kernel_config_missing("# a comment\n\nCONFIG_64BIT=y\nCONFIG_9P_FS=y\n"
                                           "CONFIG_NR_CPUS=8\n# CONFIG_PCI is not set\n",
                                           dotconfig, missing, sizeof(missing)), 0);
    /* Dropped: a dependency was not set. */
    assert_int_equal(kernel_config_missing("CONFIG_64BIT=y\nCONFIG_VIRTIO_FS=y  \n", dotconfig,
                                           missing, sizeof(missing)), 1);
    assert_string_equal(missing, "CONFIG_VIRTIO_FS=y");
    /* Another value, and a prefix of a set option's name, are not it. */
    assert_int_equal(kernel_config_missing("CONFIG_NR_CPUS=4\n", dotconfig, missing,
                                           sizeof(missing)), 1);
    assert_int_equal(kernel_config_missing("CONFIG_PCI_MSI=y\n", dotconfig, missing,
                                           sizeof(missing)), 1);
    /* Off: "is not set", or not there at all; on is a miss. */
    assert_int_equal(kernel_config_missing("# CONFIG_ACPI is not set\n", dotconfig, missing,
                                           sizeof(missing)), 0);
    assert_int_equal(kernel_config_missing("# CONFIG_64BIT is not set\n", dotconfig, missing,
                                           sizeof(missing)), 1);
    assert_int_equal(kernel_config_missing("# CONFIG_PCI_MSI is not set\n", dotconfig, missing,
                                           sizeof(missing)), 0);
}

static void make_steps(void **state)
{
    (void)state;
    assert_true(kernel_make_step("  CC      kernel/fork.o"));
    assert_true(kernel_make_step("  HOSTCC  scripts/basic/fixdep"));
    assert_true(kernel_make_step("  LD      vmlinux.o"));
    assert_false(kernel_make_step("make[1]: Entering directory '/x'"));
    assert_false(kernel_make_step("  CC      "));
    assert_false(kernel_make_step("kernel/fork.c:12: warning: unused"));
    assert_false(kernel_make_step(""));
}

static void micro_config_is_built_in(void **state)
{
    (void)state;
    /* What smolvm's machine needs, and what it must not have. */
    static const char *const wanted[] = {"CONFIG_PVH=y", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y",
                                         "CONFIG_VIRTIO_BLK=y", "CONFIG_VIRTIO_NET=y",
                                         "CONFIG_VIRTIO_VSOCKETS=y", "CONFIG_VIRTIO_FS=y",
                                         "CONFIG_9P_FS=y", "CONFIG_EXT4_FS=y",
                                         "CONFIG_VIRTIO_CONSOLE=y", "CONFIG_HW_RANDOM_VIRTIO=y",
                                         "CONFIG_PRINTK_TIME=y", "CONFIG_KVM_GUEST=y",
                                         /* no SMP-to-UP text_poke of every LOCK at boot */
                                         "CONFIG_CMDLINE_BOOL=y", "CONFIG_CMDLINE=\"noreplace-smp\""};
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
        assert_non_null(strstr(kernel_micro_config, wanted[i]));
    assert_null(strstr(kernel_micro_config, "CONFIG_MODULES=y"));
    assert_null(strstr(kernel_micro_config, "CONFIG_PCI=y"));
    assert_null(strstr(kernel_micro_config, "CONFIG_ACPI=y"));
}

/* ---- a build against a fake source ---- */

/* The smallest vmlinux smolvm boots: an ELF with a PT_LOAD and the PVH
 * entry note. */
static void write_fake_vmlinux(const char *path)
{
    uint8_t img[0x2000] = {0};
    Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
    Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));
    Elf64_Nhdr nh = {.n_namesz = 4, .n_descsz = 4, .n_type = 18};
    uint32_t entry = 0x1000000;

    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_machine = EM_X86_64;
    eh->e_phoff = sizeof(*eh);
    eh->e_phentsize = sizeof(*ph);
    eh->e_phnum = 2;
    ph[0] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = 0x1000, .p_paddr = 0x1000000,
                         .p_filesz = 0x1000, .p_memsz = 0x1000};
    ph[1] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 0x800, .p_filesz = 20};
    memcpy(img + 0x800, &nh, sizeof(nh));
    memcpy(img + 0x80c, "Xen", 4);
    memcpy(img + 0x810, &entry, 4);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(img, 1, sizeof(img), f), sizeof(img));
    fclose(f);
}

/* linux-fake/ with a Makefile: allnoconfig takes the fragment but drops
 * CONFIG_DROPPED (as Kconfig drops an option whose dependency is off);
 * vmlinux prints kbuild's step lines and counts its runs in the file makes. */
static void make_fake_source(void)
{
    assert_int_equal(sh("mkdir -p linux-fake && printf '%%s\\n' "
                        "'allnoconfig:' "
                        "'\tgrep -v CONFIG_DROPPED $(KCONFIG_ALLCONFIG) > .config' "
                        "'\tmkdir -p include/config && echo 6.1.0-fake > include/config/kernel.release' "
                        "'vmlinux:' "
                        "'\t@echo \"  CC      init/main.o\"; echo run >> %s' "
                        "'\tcp vmlinux.in vmlinux' > linux-fake/Makefile", in_dir("makes")), 0);
    write_fake_vmlinux(in_dir("linux-fake/vmlinux.in"));
    assert_int_equal(sh("tar -cJf linux-source-fake.tar.xz linux-fake"), 0);
}

static unsigned lines_said;
static void count_progress(void *opaque, const char *line)
{
    (void)opaque;
    (void)line;
    lines_said++;
}

static void builds_once_then_cached(void **state)
{
    struct kernel_build_options o = {.config = in_dir("frag.config"),
                                     .source = in_dir("linux-source-fake.tar.xz"),
                                     .jobs = 1, .progress = count_progress};
    struct kernel_build_result k;
    char text[256];
    (void)state;

    make_fake_source();
    setenv("XDG_CACHE_HOME", in_dir("cache"), 1);
    assert_int_equal(sh("printf 'CONFIG_64BIT=y\\nCONFIG_PVH=y\\n' > frag.config"), 0);
    assert_int_equal(kernel_build_lookup(&o, &k), 1);
    assert_int_equal(kernel_build(&o, &k), 0);
    assert_false(k.cached);
    assert_true(lines_said >= 3); /* unpacking, configuring, compiling */
    assert_string_equal(k.release, "6.1.0-fake");
    assert_non_null(strstr(k.path, k.key));
    assert_int_equal(access(k.path, R_OK), 0);
    slurp("makes", text, sizeof(text));
    assert_string_equal(text, "run\n");
    /* The entry holds the configuration it was built with; no build folder
     * is left behind. */
    assert_int_equal(sh("grep -qx CONFIG_PVH=y cache/smolvm/kernels/%s/config", k.key), 0);
    assert_int_equal(sh("! ls -a cache/smolvm/kernels | grep -q build-"), 0);
    kernel_build_release(&k);

    /* Again: found, make not run. */
    assert_int_equal(kernel_build_lookup(&o, &k), 0);
    assert_true(k.cached);
    kernel_build_release(&k);
    assert_int_equal(kernel_build(&o, &k), 0);
    assert_true(k.cached);
    kernel_build_release(&k);
    slurp("makes", text, sizeof(text));
    assert_string_equal(text, "run\n");

    /* A vmlinux replaced by one another user could write is not used. */
    assert_int_equal(kernel_build(&o, &k), 0);
    chmod(k.path, 0666);
    kernel_build_release(&k);
    assert_int_equal(kernel_build(&o, &k), 0);
    assert_false(k.cached);
    kernel_build_release(&k);
}

static void dropped_option_fails_with_log(void **state)
{
    struct kernel_build_options o = {.config = in_dir("dropped.config"),
                                     .source = in_dir("linux-source-fake.tar.xz"), .jobs = 1};
    struct kernel_build_result k;
    (void)state;

    setenv("XDG_CACHE_HOME", in_dir("cache"), 1);
    assert_int_equal(sh("printf 'CONFIG_64BIT=y\\nCONFIG_DROPPED=y\\n' > dropped.config"), 0);
    assert_true(kernel_build(&o, &k) < 0);
    assert_non_null(strstr(err_msg(), "'CONFIG_DROPPED=y'"));
    assert_non_null(strstr(err_msg(), ".log"));
    assert_int_equal(sh("ls cache/smolvm/kernels/*.log > /dev/null"), 0);
    assert_int_equal(sh("! ls -a cache/smolvm/kernels | grep -q build-"), 0);
}

static void bad_inputs(void **state)
{
    struct kernel_build_options o = {.config = in_dir("nothing.config"),
                                     .source = in_dir("linux-source-fake.tar.xz")};
    struct kernel_build_result k;
    (void)state;

    setenv("XDG_CACHE_HOME", in_dir("cache"), 1);
    assert_int_equal(sh("echo 'no options here' > nothing.config"), 0);
    assert_true(kernel_build(&o, &k) < 0);
    assert_non_null(strstr(err_msg(), "sets no CONFIG_ option"));
    o.config = in_dir("absent.config");
    assert_true(kernel_build(&o, &k) < 0);
    assert_non_null(strstr(err_msg(), "absent.config"));
    o.config = "micro";
    o.source = in_dir("no-such-source.tar.xz");
    assert_true(kernel_build_lookup(&o, &k) < 0);
    assert_non_null(strstr(err_msg(), "no-such-source.tar.xz"));
}

/* image build --kernel micro, through the program: the micro kernel found
 * in the cache (planted here under the key the build would use), so no
 * build; the appliance holds no modules and says how its devices are
 * found. */
static void appliance_on_cached_micro_kernel(void **state)
{
    struct kernel_build_options o = {.config = "micro"};
    struct kernel_build_result k;
    char smolvm[4096], manifest[4096];
    (void)state;

    setenv("XDG_CACHE_HOME", in_dir("micro-cache"), 1);
    int r = kernel_build_lookup(&o, &k);
    if (r < 0) {
        skip(); /* no linux-source here */
        return;
    }
    assert_int_equal(r, 1);
    assert_int_equal(sh("mkdir -p micro-cache/smolvm/kernels/%s && echo 6.1.0-micro > "
                        "micro-cache/smolvm/kernels/%s/release", k.key, k.key), 0);
    char entry[128];
    snprintf(entry, sizeof(entry), "micro-cache/smolvm/kernels/%s/vmlinux", k.key);
    write_fake_vmlinux(in_dir(entry));
    assert_int_equal(kernel_build_lookup(&o, &k), 0);
    kernel_build_release(&k);
    assert_int_equal(scratch_find_smolvm(smolvm, sizeof(smolvm)), 0);
    assert_int_equal(sh("XDG_CACHE_HOME=$PWD/micro-cache %s image build --kernel micro "
                        "-o micro-app > /dev/null 2> micro-build.err", smolvm), 0);
    assert_int_equal(sh("! grep -q 'building' micro-build.err && "
                        "grep -q 'Linux 6.1.0-micro, 0 module files' micro-build.err && "
                        "cmp micro-app/kernel %s", entry), 0);
    slurp("micro-app/appliance.json", manifest, sizeof(manifest));
    assert_non_null(strstr(manifest, "\"virtio_discovery\": \"cmdline\""));
    assert_non_null(strstr(manifest, "\"module_files\": 0"));
    /* --modules makes no sense for it: a usage error, nothing built. */
    assert_int_equal(sh("XDG_CACHE_HOME=$PWD/micro-cache %s image build --kernel micro "
                        "--modules ext4 -o micro-app2 2> /dev/null", smolvm), 2);
    assert_int_equal(access(in_dir("micro-app2"), F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_follows_source_and_fragment),
        cmocka_unit_test(config_missing_finds_dropped_options),
        cmocka_unit_test(make_steps),
        cmocka_unit_test(micro_config_is_built_in),
        cmocka_unit_test(builds_once_then_cached),
        cmocka_unit_test(dropped_option_fails_with_log),
        cmocka_unit_test(bad_inputs),
        cmocka_unit_test(appliance_on_cached_micro_kernel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
