/* The VM config as a .smolmachine carries it (JSON), and VM names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/control.h"
#include "arch/x86/acpi.h"
#include "core/config.h"
#include "core/vm.h"
#include "util/err.h"

static void round_trip(void **state)
{
    struct vm_config a, b;
    char *json;
    (void)state;

    vm_config_defaults(&a);
    a.cpus = 3;
    a.mem_bytes = 512ull << 20;
    a.cmdline = "console=hvc0 quiet \"quoted\"";
    a.console = VM_CONSOLE_VIRTIO;
    a.rng = false;
    a.discovery = VM_DISCOVERY_CMDLINE;
    a.kernel_path = "/host/path/not/carried";
    a.vsock_cid = 42;
    a.vsock_path = "/host/path/not/carried.vsock";
    a.disk_count = 2;
    a.disks[0] = (struct vm_disk_config){.path = "/x", .id = "root", .read_only = true};
    a.disks[1] = (struct vm_disk_config){.path = "/y", .direct = true};
    json = vm_config_to_json(&a);
    assert_non_null(json);
    assert_null(strstr(json, "/host/path"));
    assert_int_equal(vm_config_from_json(json, &b), 0);
    assert_int_equal(b.cpus, 3);
    assert_true(b.mem_bytes == 512ull << 20);
    assert_string_equal(b.cmdline, a.cmdline);
    assert_int_equal(b.console, VM_CONSOLE_VIRTIO);
    assert_false(b.rng);
    assert_int_equal(b.discovery, VM_DISCOVERY_CMDLINE);
    assert_null(b.kernel_path);
    assert_int_equal(b.vsock_cid, 42);
    assert_null(b.vsock_path);
    assert_int_equal(b.disk_count, 2);
    assert_string_equal(b.disks[0].id, "root");
    assert_true(b.disks[0].read_only);
    assert_null(b.disks[1].id);
    assert_true(b.disks[1].direct);
    vm_config_release(&b);
    free(json);
}

static void hostile_json_is_refused(void **state)
{
    static const char *const bad[] = {
        "", "[]", "{", "{\"cpus\": 0, \"mem_bytes\": 1}", "{\"cpus\": 100000, \"mem_bytes\": 1}",
        "{\"cpus\": 1}", "{\"cpus\": 1, \"mem_bytes\": -5}", "{\"cpus\": \"1\", \"mem_bytes\": 1}",
        "{\"cpus\": 1, \"mem_bytes\": 1, \"console\": \"vga\"}",
        "{\"cpus\": 1, \"mem_bytes\": 1, \"disks\": 5}",
        "{\"cpus\": 1, \"mem_bytes\": 1, \"disks\": [1]}",
        "{\"cpus\": 1, \"mem_bytes\": 1, \"disks\": [{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}]}",
        "{\"cpus\": 1, \"cpus\": 2, \"mem_bytes\": 1}",
        "{\"cpus\": 1, \"mem_bytes\": 1, \"discovery\": \"dt\"}",
        "{\"cpus\": 1, \"mem_bytes\": 1, \"vsock_cid\": 2}",
        "{\"cpus\": 1, \"mem_bytes\": 1, \"vsock_cid\": 4294967295}",
        "{\"cpus\": 1, \"mem_bytes\": 1, \"vsock_cid\": \"3\"}",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vm_config c;
        assert_true(vm_config_from_json(bad[i], &c) < 0);
    }
}

/* A bundle from before virtio-vsock has no device: its saved state has
 * none (its MMIO windows and state records stay as they were). */
static void old_bundle_has_no_vsock(void **state)
{
    struct vm_config c;
    (void)state;
    assert_int_equal(vm_config_from_json("{\"cpus\": 1, \"mem_bytes\": 16777216}", &c), 0);
    assert_int_equal(c.vsock_cid, 0);
    vm_config_release(&c);
    vm_config_defaults(&c);
    assert_int_equal(c.vsock_cid, 3); /* new VMs have one */
}

/* Every kernel gets the command line given, then no_timer_check (the
 * machine's timer pin works: no busy-wait for PIT ticks at boot); with the
 * devices on the command line also acpi=noirq and virtio_mmio.device=
 * <size>@<base>:<irq> in the form Linux's virtio_mmio module parses. Too
 * long is an error, never a cut line. */
static void kernel_cmdline(void **state)
{
    struct acpi_mmio_device d[2] = {{0xd0000000, 0x200, 5}, {0xd0000200, 0x200, 6}};
    char out[160];
    (void)state;
    assert_int_equal(vm_kernel_cmdline("console=ttyS0", true, d, 2, out, sizeof(out)), 0);
    assert_string_equal(out, "console=ttyS0 no_timer_check acpi=noirq "
                             "virtio_mmio.device=0x200@0xd0000000:5 "
                             "virtio_mmio.device=0x200@0xd0000200:6");
    assert_int_equal(vm_kernel_cmdline(NULL, true, d, 1, out, sizeof(out)), 0);
    assert_string_equal(out, "no_timer_check acpi=noirq virtio_mmio.device=0x200@0xd0000000:5");
    /* ACPI discovery: the devices are in the DSDT, not here */
    assert_int_equal(vm_kernel_cmdline("console=ttyS0", false, d, 2, out, sizeof(out)), 0);
    assert_string_equal(out, "console=ttyS0 no_timer_check");
    assert_int_equal(vm_kernel_cmdline("", false, NULL, 0, out, sizeof(out)), 0);
    assert_string_equal(out, "no_timer_check");
    assert_true(vm_kernel_cmdline("console=ttyS0", true, d, 2, out, 60) < 0);
    assert_true(vm_kernel_cmdline("console=ttyS0", false, d, 2, out, 20) < 0);
}

/* Shares go into a bundle as tags: the host folders are not carried, and
 * a start maps each tag to a folder again (all of them, no unknown tag). */
static void shares_carry_tags_not_paths(void **state)
{
    struct vm_config a, b;
    struct vm_share_config given[2] = {{.path = "/new/src", .tag = "src"},
                                       {.path = "/new/data", .tag = "data", .read_only = false}};
    char *json;
    (void)state;

    vm_config_defaults(&a);
    a.cmdline = "";
    a.share_count = 2;
    a.shares[0] = (struct vm_share_config){.path = "/host/secret/src", .tag = "src"};
    a.shares[1] = (struct vm_share_config){.path = "/host/data", .tag = "data", .read_only = true};
    json = vm_config_to_json(&a);
    assert_non_null(json);
    assert_null(strstr(json, "/host"));
    assert_int_equal(vm_config_from_json(json, &b), 0);
    assert_int_equal(b.share_count, 2);
    assert_string_equal(b.shares[0].tag, "src");
    assert_null(b.shares[0].path);
    assert_true(b.shares[1].read_only);
    /* A start without a folder for each tag is refused, naming the tag. */
    assert_int_equal(vm_config_map_shares(&b, given, 1), -EINVAL);
    assert_non_null(strstr(err_msg(), "data"));
    assert_int_equal(vm_config_map_shares(&b, given, 2), 0);
    assert_string_equal(b.shares[0].path, "/new/src");
    assert_true(b.shares[1].read_only); /* the bundle's ro stays */
    given[0].tag = "other";
    assert_int_equal(vm_config_map_shares(&b, given, 1), -EINVAL);
    vm_config_release(&b);
    free(json);

    /* Hostile shares: bad tags, a tag twice, too many. */
    assert_int_equal(vm_config_from_json("{\"cpus\":1,\"mem_bytes\":268435456,"
                                         "\"shares\":[{\"tag\":\"a/b\"}]}", &b), -EINVAL);
    assert_int_equal(vm_config_from_json("{\"cpus\":1,\"mem_bytes\":268435456,"
                                         "\"shares\":[{\"tag\":\"\"}]}", &b), -EINVAL);
    assert_int_equal(vm_config_from_json("{\"cpus\":1,\"mem_bytes\":268435456,"
                                         "\"shares\":[{\"tag\":\"a\"},{\"tag\":\"a\"}]}", &b),
                     -EINVAL);
    assert_int_equal(vm_config_from_json("{\"cpus\":1,\"mem_bytes\":268435456,"
                                         "\"shares\":[{},{},{},{},{},{},{},{},{}]}", &b), -EINVAL);
    assert_int_equal(vm_config_from_json("{\"cpus\":1,\"mem_bytes\":268435456,"
                                         "\"shares\":[{\"tag\":\"x\",\"path\":\"/etc\"}]}", &b), 0);
    assert_null(b.shares[0].path); /* a bundle cannot name a host folder */
    vm_config_release(&b);
}

static void vm_names(void **state)
{
    (void)state;
    assert_true(control_name_ok("web-1"));
    assert_true(control_name_ok("a.b_c"));
    assert_false(control_name_ok(""));
    assert_false(control_name_ok("../etc"));
    assert_false(control_name_ok("a/b"));
    assert_false(control_name_ok(".hidden"));
    assert_false(control_name_ok("-rf"));
    assert_false(control_name_ok("x x"));
    assert_false(control_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

/* The appliance init's smolvm.share= names every tag (run and create add
 * it), unless the command line says where already. */
static void share_param_names_the_tags(void **state)
{
    struct vm_share_config shares[2] = {{.tag = "src", .path = "/a"}, {.tag = "out", .path = "/b"}};
    (void)state;

    assert_string_equal(vm_share_param(shares, 2, "console=ttyS0"), " smolvm.share=src,out");
    assert_string_equal(vm_share_param(shares, 1, NULL), " smolvm.share=src");
    assert_string_equal(vm_share_param(shares, 2, "quiet smolvm.share=src:/x"), "");
    assert_string_equal(vm_share_param(shares, 0, NULL), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(hostile_json_is_refused),
        cmocka_unit_test(vm_names),
        cmocka_unit_test(shares_carry_tags_not_paths),
        cmocka_unit_test(kernel_cmdline),
        cmocka_unit_test(old_bundle_has_no_vsock),
        cmocka_unit_test(share_param_names_the_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
