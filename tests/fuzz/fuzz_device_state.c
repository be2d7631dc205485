/* libFuzzer target: device state read back from a bundle. Arbitrary bytes
 * go through the device record reader (names, versions, lengths: "DEVV"
 * records and the unversioned "DEV " ones of older bundles, read as
 * version 1 and upgraded) into every device's state function (virtio-mmio
 * transports and their queues, virtio-console's pending input, the serial
 * port, vmgenid, virtio-fs's node table), on a VM of devices only (no KVM needed): a restore may
 * fail, never crash, hang or touch memory outside guest RAM. After a
 * restore that succeeds, each virtio device is kicked, as a resumed
 * guest's pending requests would be.
 *
 * FUZZ_DEVICE_STATE_SEED=DIR writes seeds and exits: the state of every
 * device as a guest driver leaves it (virtio devices set up through their
 * registers, queues ready and DRIVER_OK; the UART programmed), all devices
 * in one file and each device in a file of its own; then the same as an
 * older smolvm wrote them (unversioned "DEV " records, virtio-console
 * without its version-2 field). */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "core/config.h"
#include "core/vm.h"
#include "util/blob.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define RAM (16u << 20)
#define DISK (1u << 20)

static struct vm *vm;
static struct vm_config cfg;

static void mmio_write(uint64_t addr, uint32_t v)
{
    (void)vm_bus_access(vm, false, addr, &v, 4, true);
}

static uint32_t mmio_read(uint64_t addr)
{
    uint32_t v = 0;
    (void)vm_bus_access(vm, false, addr, &v, 4, false);
    return v;
}

/* What a virtio driver does at probe: features, each queue's rings in
 * RAM, DRIVER_OK. */
static void set_up_virtio(unsigned index)
{
    uint64_t base = X86_VIRTIO_MMIO_BASE + index * X86_VIRTIO_MMIO_WINDOW;
    uint64_t rings = 0x100000 + index * 0x40000ull;

    if (mmio_read(base) != 0x74726976u)
        return;
    mmio_write(base + 0x070, 0);
    mmio_write(base + 0x070, 1 | 2);
    mmio_write(base + 0x024, 1);
    mmio_write(base + 0x020, 1); /* VIRTIO_F_VERSION_1 */
    mmio_write(base + 0x024, 0);
    mmio_write(base + 0x020, 0);
    mmio_write(base + 0x070, 1 | 2 | 8);
    for (unsigned q = 0; q < 4; q++, rings += 0x4000) {
        mmio_write(base + 0x030, q);
        if (!mmio_read(base + 0x034))
            break;
        mmio_write(base + 0x038, 16);
        mmio_write(base + 0x080, (uint32_t)rings);
        mmio_write(base + 0x090, (uint32_t)rings + 0x1000);
        mmio_write(base + 0x0a0, (uint32_t)rings + 0x2000);
        mmio_write(base + 0x044, 1);
    }
    mmio_write(base + 0x070, 1 | 2 | 8 | 4);
}

static void set_up_uart(void)
{
    static const uint8_t regs[][2] = {{3, 0x83}, {0, 1}, {1, 0}, {3, 0x03}, {1, 0x0f},
                                      {4, 0x0b}, {7, 0x5a}, {2, 0xc7}};
    for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
        uint8_t v = regs[i][1];
        (void)vm_bus_access(vm, true, X86_PORT_COM1 + regs[i][0], &v, 1, true);
    }
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(f = fopen(path, "wb")) || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        exit(1);
}

#define TAG_DEVICE_V1 0x20564544u /* "DEV " */

/* A "DEVV" record as the unversioned "DEV " record of before versions:
 * no version field; virtio-console (version 2) without its pending input
 * count (0 here). Other records of versions above 1 are left out. */
static bool as_version_1(struct blob_reader body, struct blob *out)
{
    uint16_t len = blob_get_u16(&body);
    char name[64] = "";
    size_t mark, keep;
    uint32_t version;

    if (len >= sizeof(name) || !blob_get(&body, name, len))
        return false;
    version = blob_get_u32(&body);
    keep = body.left;
    if (version == 2 && strncmp(name, "virtio-console@", 15) == 0 && keep >= 4)
        keep -= 4;
    else if (version != 1)
        return false;
    mark = blob_begin_record(out, TAG_DEVICE_V1);
    blob_put_u16(out, len);
    blob_put(out, name, len);
    blob_put(out, body.p, keep);
    blob_end_record(out, mark);
    return true;
}

/* The whole device state, then each record of it alone; each also as an
 * older smolvm wrote it. */
static void write_seeds(const char *dir)
{
    struct blob state = {0}, old_all = {0};
    struct blob_reader in, body;
    const uint8_t *at;
    uint32_t tag;
    char name[32];

    for (unsigned i = 0; i < X86_VIRTIO_MAX_DEVICES; i++)
        set_up_virtio(i);
    set_up_uart();
    if (vm_save_device_state(vm, &state) < 0)
        exit(1);
    write_file(dir, "all", state.data, state.len);
    in = blob_reader(state.data, state.len);
    for (unsigned i = 0; (at = in.p), blob_next_record(&in, &tag, &body); i++) {
        struct blob old = {0};
        snprintf(name, sizeof(name), "device-%u", i);
        write_file(dir, name, at, (size_t)(in.p - at));
        if (as_version_1(body, &old) && as_version_1(body, &old_all)) {
            snprintf(name, sizeof(name), "device-%u-v1", i);
            write_file(dir, name, old.data, old.len);
        }
        blob_free(&old);
    }
    if (vm_restore_device_state(vm, old_all.data, old_all.len) < 0) {
        fprintf(stderr, "fuzz_device_state: the version-1 seed does not restore: %s\n",
                err_msg());
        exit(1);
    }
    write_file(dir, "all-v1", old_all.data, old_all.len);
    blob_free(&old_all);
    blob_free(&state);
    exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seeds = getenv("FUZZ_DEVICE_STATE_SEED");
    static char disk_path[64];
    int fd = memfd_create("fuzz-disk", 0);
    (void)argc;
    (void)argv;

    if (fd < 0 || ftruncate(fd, DISK) < 0)
        abort();
    snprintf(disk_path, sizeof(disk_path), "/proc/self/fd/%d", fd);
    vm_config_defaults(&cfg);
    cfg.mem_bytes = RAM;
    cfg.cpus = 1;
    cfg.rng = true;
    cfg.console = VM_CONSOLE_VIRTIO;
    cfg.disk_count = 1;
    cfg.disks[0].path = disk_path;
    cfg.disks[0].format = "raw";
    /* A virtio-fs share: its saved node and handle paths are hostile too. */
    static char share[] = "/tmp/fuzz-device-state-share.XXXXXX";
    if (!mkdtemp(share))
        abort();
    cfg.share_count = 1;
    cfg.shares[0].path = share;
    cfg.shares[0].tag = "fuzz";
    if (vm_create_devices_only(&cfg, &vm) < 0) {
        fprintf(stderr, "fuzz_device_state: %s\n", err_msg());
        abort();
    }
    if (seeds)
        write_seeds(seeds);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The state goes into the devices as they are after the last input:
     * what a restore meets is never assumed to be a fresh device. */
    if (vm_restore_device_state(vm, data, size) == 0)
        for (unsigned i = 0; i < X86_VIRTIO_MAX_DEVICES; i++)
            for (uint32_t q = 0; q < 4; q++)
                mmio_write(X86_VIRTIO_MMIO_BASE + i * X86_VIRTIO_MMIO_WINDOW + 0x050, q);
    err_clear();
    return 0;
}
