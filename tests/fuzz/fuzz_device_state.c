/* libFuzzer target: device state read back from a bundle. Arbitrary bytes
 * go to every device's restore function (virtio-mmio transports and their
 * queues, the serial port, vmgenid, virtio-net's MAC) as the device records
 * of a saved state, on a VM of devices only (no KVM needed): a restore may fail,
 * never crash, hang or touch memory outside guest RAM. After a restore
 * that succeeds, each virtio device is kicked, as a resumed guest's
 * pending requests would be.
 *
 * FUZZ_DEVICE_STATE_SEED=DIR writes seeds and exits: the state of every
 * device as a guest driver leaves it (virtio devices set up through their
 * registers, queues ready and DRIVER_OK; the UART programmed), all devices
 * in one file and each device in a file of its own. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
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

/* The whole device state, then each record of it alone. */
static void write_seeds(const char *dir)
{
    struct blob state = {0};
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
        snprintf(name, sizeof(name), "device-%u", i);
        write_file(dir, name, at, (size_t)(in.p - at));
    }
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
    /* A NIC whose backend's far end nobody reads: frames stay bounded. */
    int net[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, net) < 0)
        abort();
    cfg.net.mode = VM_NET_FD;
    cfg.net.fd = net[1];
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
