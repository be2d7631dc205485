#include "core/vm.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/kernel_file.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "arch/x86/unpack.h"
#include "core/vm_internal.h"
#include "devices/device.h"
#include "hv/hv.h"
#include "util/err.h"
#include "util/file.h"
#include "util/trace.h"
#include "confine/confine.h"

static void stop_with(struct vm *vm, enum vm_stop_reason why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void stop_with(struct vm *vm, enum vm_stop_reason why, const char *fmt, ...)
{
    uint64_t one = 1;
    va_list ap;

    pthread_mutex_lock(&vm->stop_lock);
    if (atomic_load(&vm->stop_reason) == VM_RUNNING) {
        if (fmt) {
            va_start(ap, fmt);
            vsnprintf(vm->stop_message, sizeof(vm->stop_message), fmt, ap);
            va_end(ap);
        }
        atomic_store(&vm->stop_reason, why);
    }
    pthread_mutex_unlock(&vm->stop_lock);
    if (write(vm->stop_fd, &one, sizeof(one)) < 0) {
        /* The counter cannot overflow from a handful of stops. */
    }
    /* Parked vCPUs must see the stop. */
    pthread_mutex_lock(&vm->pause_lock);
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason why)
{
    stop_with(vm, why, NULL);
}

void vm_fail(struct vm *vm, const char *fmt, ...)
{
    char message[sizeof(vm->stop_message)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    stop_with(vm, VM_STOP_ERROR, "%s", message);
    /* Out of the guest now, not when vm_run() gets to it: a vCPU that
     * waits in a fault leaves KVM with the kick pending once it is
     * woken, before it runs the guest again. */
    pthread_mutex_lock(&vm->stop_lock);
    for (unsigned i = 0; !vm->vcpus_ending && vm->vcpus && i < vm->cfg.cpus; i++)
        if (vm->vcpus[i].hv)
            hv_vcpu_kick(vm->vcpus[i].hv);
    pthread_mutex_unlock(&vm->stop_lock);
}

void vm_memory_lost(struct vm *vm)
{
    atomic_store(&vm->mem.lost, true);
}

void vm_signal_stop(struct vm *vm)
{
    int running = VM_RUNNING;
    uint64_t one = 1;

    /* No mutex here: this runs in a signal handler. */
    atomic_compare_exchange_strong(&vm->stop_reason, &running, VM_STOP_SIGNAL);
    if (write(vm->stop_fd, &one, sizeof(one)) < 0) {
    }
}

const char *vm_stop_message(const struct vm *vm)
{
    return vm->stop_message;
}

const struct vm_config *vm_config(const struct vm *vm)
{
    return &vm->cfg;
}

const struct guest_memory *vm_memory(const struct vm *vm)
{
    return &vm->mem;
}

struct console *vm_console(struct vm *vm)
{
    return vm->console;
}

int vm_register_state(struct vm *vm, const char *name, const struct vm_state_desc *desc,
                      void *opaque)
{
    struct vm_state_part *p;

    if (vm->part_count == VM_MAX_STATE_PARTS || strlen(name) >= VM_STATE_NAME_MAX || !*name)
        return err_plain(ENOSPC, "cannot register the state of '%s'", name);
    for (unsigned i = 0; i < vm->part_count; i++)
        if (strcmp(vm->parts[i].name, name) == 0)
            return err_plain(EEXIST, "two devices named %s", name);
    p = &vm->parts[vm->part_count++];
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->desc = desc;
    p->opaque = opaque;
    return 0;
}

const struct device_slot *vm_device_slots(const struct vm *vm, unsigned *count)
{
    *count = vm->slot_count;
    return vm->slots;
}

bool vm_restoring(const struct vm *vm)
{
    return vm->restoring != NULL;
}

int vm_watch(struct vm *vm, int fd, loop_fn fn, void *opaque)
{
    return loop_add(&vm->loop, fd, fn, opaque);
}

void vm_unwatch(struct vm *vm, int fd)
{
    loop_remove(&vm->loop, fd);
}

int vm_register_pio(struct vm *vm, uint64_t port, uint64_t len, bus_handler fn, void *opaque)
{
    return bus_register(&vm->pio, port, len, fn, opaque);
}

int vm_register_mmio(struct vm *vm, uint64_t gpa, uint64_t len, bus_handler fn, void *opaque)
{
    return bus_register(&vm->mmio, gpa, len, fn, opaque);
}

int vm_describe_mmio_device(struct vm *vm, uint64_t gpa, uint32_t size, uint32_t irq)
{
    if (vm->acpi.mmio_count == ACPI_MAX_MMIO_DEVICES)
        return err_plain(ENOSPC, "more than %d virtio-mmio devices", ACPI_MAX_MMIO_DEVICES);
    vm->acpi.mmio[vm->acpi.mmio_count++] = (struct acpi_mmio_device){gpa, size, irq};
    return 0;
}

/* Facts about smolvm's machine every kernel is told. no_timer_check: the
 * I/O APIC's timer pin is KVM's in-kernel PIT and works. Without it Linux
 * busy-waits in check_timer() for five PIT ticks (up to 40e9/HZ TSC cycles,
 * about 76 ms) before it trusts the pin: 25 ms of a micro kernel's quiet
 * boot in a nested L1, 172 ms when that L1 was loaded (bench/boot's
 * profile), and a timer tick late enough there fails the check and panics
 * the guest ("IO-APIC + timer doesn't work"), as it did the L1 itself. */
#define MACHINE_CMDLINE "no_timer_check"

int vm_kernel_cmdline(const char *base, bool devices_on_cmdline, const struct acpi_mmio_device *d,
                      unsigned n, char *out, size_t size)
{
    /* Under hardware-reduced ACPI Linux numbers its IRQs apart from the
     * GSIs, so "IRQ 5" would be nothing; with ACPI's interrupt routing
     * off it takes the MP table's, where IRQ N is GSI N. */
    int len = snprintf(out, size, "%s%s" MACHINE_CMDLINE "%s", base ? base : "",
                       base && *base ? " " : "", devices_on_cmdline ? " acpi=noirq" : "");
    for (unsigned i = 0; devices_on_cmdline && i < n && len >= 0 && (size_t)len < size; i++)
        len += snprintf(out + len, size - (size_t)len, " virtio_mmio.device=0x%x@0x%llx:%u",
                        d[i].size, (unsigned long long)d[i].base, d[i].irq);
    if (len < 0 || (size_t)len >= size)
        return err_plain(E2BIG, "the kernel command line with smolvm's additions (%u "
                                "virtio_mmio.device= entries) is longer than %zu bytes",
                         devices_on_cmdline ? n : 0, size - 1);
    return 0;
}

int vm_describe_isa_device(struct vm *vm, const char *hid, uint16_t port, uint8_t len,
                           uint8_t irq)
{
    struct acpi_isa_device *d;

    if (vm->acpi.isa_count == ACPI_MAX_ISA_DEVICES || strlen(hid) >= sizeof(d->hid))
        return err_plain(ENOSPC, "cannot describe legacy device %s", hid);
    d = &vm->acpi.isa[vm->acpi.isa_count++];
    snprintf(d->hid, sizeof(d->hid), "%s", hid);
    d->port = port;
    d->port_len = len;
    d->irq = irq;
    return 0;
}

int vm_describe_vmgenid(struct vm *vm, uint64_t gpa, uint32_t gsi)
{
    if (vm->acpi.vmgenid_gpa)
        return err_plain(EEXIST, "two VM generation ID devices");
    vm->acpi.vmgenid_gpa = gpa;
    vm->acpi.ged_irq = gsi;
    return 0;
}

int vm_describe_power_button(struct vm *vm, uint32_t gsi)
{
    if (vm->acpi.power_button_irq)
        return err_plain(EEXIST, "two power buttons");
    vm->acpi.power_button_irq = gsi;
    return 0;
}

/* A VM of devices only (vm_create_devices_only) has no hypervisor to
 * take interrupts or eventfds: its devices keep their synchronous paths. */
static int no_hv(void)
{
    return err_plain(ENODEV, "no hypervisor (a VM of devices only)");
}

int vm_set_irq(struct vm *vm, unsigned gsi, bool level)
{
    return vm->hv ? hv_vm_set_irq(vm->hv, gsi, level) : no_hv();
}

/* An edge: the interrupt controller latches it until a vCPU takes it. */
int vm_press_power_button(struct vm *vm)
{
    unsigned gsi = vm->acpi.power_button_irq;
    int r;

    if (!gsi)
        return err_plain(ENOENT, "the VM has no power button");
    r = vm_set_irq(vm, gsi, true);
    return r < 0 ? r : vm_set_irq(vm, gsi, false);
}

int vm_notify_fd(struct vm *vm, uint64_t gpa, uint32_t len, uint64_t value, int notify_fd)
{
    return vm->hv ? hv_vm_ioeventfd(vm->hv, gpa, len, value, notify_fd) : no_hv();
}

static void coalesced_write(void *opaque, uint64_t gpa, const uint8_t *data, uint32_t len)
{
    struct vm *vm = opaque;
    uint8_t copy[8]; /* the bus takes bytes it may write (reads share its path) */
    uint32_t n = len <= sizeof(copy) ? len : sizeof(copy);

    memcpy(copy, data, n);
    bus_dispatch(&vm->mmio, gpa, copy, n, true);
}

int vm_coalesce_writes(struct vm *vm, uint64_t gpa, uint64_t len)
{
    return vm->hv ? hv_vm_coalesce_writes(vm->hv, gpa, len, coalesced_write, vm) : no_hv();
}

int vm_irq_fd(struct vm *vm, unsigned gsi, int irq_fd)
{
    return vm->hv ? hv_vm_irqfd(vm->hv, gsi, irq_fd) : no_hv();
}

/* Swaps a bzImage for its cached, unpacked vmlinux when there is one: the
 * guest then skips its own decompressor, and the file's identity names it
 * from now on (open_kernel()). Any failure keeps the bzImage. */
static void use_unpacked_kernel(struct vm *vm)
{
    struct x86_kernel_file unpacked;
    char *dir, *path = NULL;

    if (!vm->cfg.kernel_cache || !x86_kernel_is_bzimage(&vm->kernel))
        return;
    uint64_t began = trace_now_us();
    dir = x86_kernel_cache_dir();
    if (x86_unpacked_kernel(vm->kernel.image.data, vm->kernel.image.len, dir, &path) == 0 &&
        path && x86_kernel_open(path, "unpacked kernel", &unpacked) == 0) {
        x86_unpacked_kernel_remember(vm->cfg.kernel_path, &vm->kernel_seen, dir, path);
        x86_kernel_close(&vm->kernel);
        vm->kernel = unpacked;
    }
    err_clear();
    free(path);
    free(dir);
    trace_add_count(TRACE_KERNEL_READ_US, trace_now_us() - began);
}

/* The kernel to boot: the unpacked vmlinux its file is known by
 * (arch/x86/unpack.h) without reading or hashing the file -- a jailed
 * boot's plan recorded it outside --, else the file itself. */
static int open_kernel(struct vm *vm)
{
    uint64_t began = trace_now_us();
    char *dir = vm->cfg.kernel_cache ? x86_kernel_cache_dir() : NULL;
    char *known = dir ? x86_unpacked_kernel_known(vm->cfg.kernel_path, dir, &vm->kernel_seen)
                      : NULL;
    int r = known ? x86_kernel_open(known, "unpacked kernel", &vm->kernel) : -ENOENT;

    if (known && r < 0)
        err_clear(); /* the file itself, then */
    free(known);
    free(dir);
    if (r < 0)
        r = x86_kernel_open(vm->cfg.kernel_path, "kernel", &vm->kernel);
    trace_add_count(TRACE_KERNEL_READ_US, trace_now_us() - began);
    return r;
}

static int load_inputs(struct vm *vm)
{
    int r;

    if (!vm->cfg.kernel_path)
        return err_plain(EINVAL, "no kernel given (--kernel PATH)");
    r = open_kernel(vm);
    if (r == 0 && vm->cfg.initrd_path) {
        vm->initrd_fd = file_open_read(vm->cfg.initrd_path, "initrd", &vm->initrd_len);
        r = vm->initrd_fd < 0 ? vm->initrd_fd : 0;
    }
    return r;
}

static void close_initrd(struct vm *vm)
{
    if (vm->initrd_fd >= 0)
        close(vm->initrd_fd);
    vm->initrd_fd = -1;
}

static int read_initrd(void *opaque, void *dst, size_t len)
{
    struct vm *vm = opaque;
    return file_read_exact(vm->initrd_fd, dst, len, "initrd", vm->cfg.initrd_path);
}

int vm_check_disks(const struct vm_config *cfg)
{
    for (unsigned i = 0; i < cfg->disk_count; i++) {
        struct stat st;
        if (stat(cfg->disks[i].path, &st) < 0)
            return err_set(errno, "disk '%s'", cfg->disks[i].path);
        if (S_ISDIR(st.st_mode))
            return err_plain(EISDIR, "disk '%s' is a folder", cfg->disks[i].path);
    }
    return 0;
}

static int setup_memory(struct vm *vm)
{
    struct guest_region layout[GUEST_MEMORY_MAX_REGIONS];
    unsigned n = x86_ram_layout(vm->cfg.mem_bytes, layout);
    int r = guest_memory_alloc(&vm->mem, layout, n);

    for (unsigned i = 0; r == 0 && i < vm->mem.count; i++)
        r = hv_vm_map_memory(vm->hv, vm->mem.regions[i].gpa, vm->mem.regions[i].host,
                             vm->mem.regions[i].size);
    return r;
}

/* One instance per slot of the placement table, in its order. */
static int create_devices(struct vm *vm)
{
    int r = placement_for(&vm->cfg, vm->slots, PLACEMENT_MAX, &vm->slot_count);

    for (unsigned i = 0; r == 0 && i < vm->slot_count; i++) {
        const struct device_slot *slot = &vm->slots[i];
        const struct device_type *type = device_type_find(slot->type);
        struct device_instance *d = &vm->devices[vm->device_count];

        if (!type)
            return err_plain(ENOENT, "no device type %s in this smolvm", slot->type);
        d->type = type;
        d->state = NULL;
        r = type->create(vm, slot, &d->state);
        if (r < 0)
            err_prefix("%s", slot->type);
        else
            vm->device_count++;
    }
    if (r == 0)
        trace_mark(TRACE_DEVICES_CREATED);
    return r;
}

static int build_machine(struct vm *vm, struct x86_cpu_state *bsp)
{
    uint8_t *acpi = gpa_ptr(&vm->mem, X86_ACPI_ADDR, X86_ACPI_SIZE);
    uint8_t *mptable = gpa_ptr(&vm->mem, X86_MPTABLE_ADDR, X86_MPTABLE_SIZE);
    struct x86_boot_request req = {
        .initrd_len = vm->initrd_len,
        .read_initrd = vm->initrd_fd >= 0 ? read_initrd : NULL,
        .read_initrd_opaque = vm,
        .cmdline = vm->cfg.cmdline,
        .rsdp_gpa = X86_ACPI_ADDR,
    };
    struct acpi_config tables = vm->acpi;
    char cmdline[X86_CMDLINE_MAX];
    long used;
    int r;

    bool devices_on_cmdline = vm->cfg.discovery == VM_DISCOVERY_CMDLINE;

    if (vm_kernel_cmdline(vm->cfg.cmdline, devices_on_cmdline, tables.mmio, tables.mmio_count,
                          cmdline, sizeof(cmdline)) < 0)
        return -E2BIG;
    req.cmdline = cmdline;
    /* Devices on the command line are left out of the DSDT: the guest
     * would find them twice. */
    if (devices_on_cmdline)
        tables.mmio_count = 0;
    tables.cpus = vm->cfg.cpus;
    used = acpi ? acpi_build(acpi, X86_ACPI_SIZE, X86_ACPI_ADDR, &tables) : -ENOSPC;
    if (used < 0)
        return err_plain(ENOSPC, "ACPI tables do not fit their area");
    used = mptable ? mptable_build(mptable, X86_MPTABLE_SIZE, X86_MPTABLE_ADDR,
                                   vm->cfg.cpus < MPTABLE_MAX_CPUS ? vm->cfg.cpus
                                                                   : MPTABLE_MAX_CPUS)
                   : -ENOSPC;
    if (used < 0)
        return err_plain(ENOSPC, "the MP table does not fit its area");
    x86_kernel_request(&vm->kernel, &req);
    r = x86_boot_load(&vm->mem, &req, bsp);
    if (r < 0)
        return r;
    trace_mark(TRACE_KERNEL_LOADED);
    /* The guest has its own copy now. */
    x86_kernel_close(&vm->kernel);
    close_initrd(vm);
    return 0;
}

static int create_vcpus(struct vm *vm, const struct x86_cpu_state *bsp)
{
    vm->vcpus = calloc(vm->cfg.cpus, sizeof(*vm->vcpus));
    if (!vm->vcpus)
        return err_set(ENOMEM, "vCPUs");
    for (unsigned i = 0; i < vm->cfg.cpus; i++) {
        int r;
        vm->vcpus[i].vm = vm;
        vm->vcpus[i].index = i;
        r = hv_vcpu_create(vm->hv, i, &vm->vcpus[i].hv);
        if (r < 0)
            return r;
    }
    /* Application processors wait for INIT/SIPI from the boot CPU. */
    return bsp ? hv_vcpu_set_x86_state(vm->vcpus[0].hv, bsp) : 0;
}

static int restore_machine(struct vm *vm)
{
    const struct vm_snapshot *snap = vm->restoring;
    int r = snap->prepared ? 0 : snap->load_memory(snap->opaque, &vm->mem);

    if (r == 0) {
        trace_mark(TRACE_MEMORY_RESTORED);
        r = vm_restore_state(vm, snap->state, snap->state_len);
    }
    if (r == 0)
        trace_mark(TRACE_STATE_RESTORED);
    return r;
}

/* The process's page faults so far (before any filter: the main thread's
 * comes in vm_run()): what a jailed VMM pays in pages copied after the
 * relay's fork shows against an unjailed one (bench jail_bench). */
static void count_faults(void)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) == 0)
        trace_set_count(TRACE_MINOR_FAULTS, (uint64_t)usage.ru_minflt);
}

static int check_cpus(struct vm *vm)
{
    if (vm->cfg.cpus > hv_max_vcpus(vm->hv))
        return err_plain(EINVAL, "--cpus %u is more than this host's KVM allows (%u)",
                         vm->cfg.cpus, hv_max_vcpus(vm->hv));
    return 0;
}

static int setup(struct vm *vm)
{
    struct x86_cpu_state bsp;
    int r;

    r = vm_config_check(&vm->cfg);
    if (r == 0 && !vm->restoring)
        r = load_inputs(vm);
    if (r == 0 && !vm->restoring)
        r = vm_check_disks(&vm->cfg);
    /* The user's mistakes first, then KVM, then the work (unpacking). */
    uint64_t creating = trace_now_us();
    if (r == 0)
        r = hv_vm_create(&vm->hv);
    trace_add_count(TRACE_HV_CREATE_US, trace_now_us() - creating);
    if (r == 0 && !vm->restoring)
        use_unpacked_kernel(vm);
    if (r == 0) {
        trace_mark(TRACE_INPUTS_READ);
        count_faults();
        r = console_open(&vm->console, vm->cfg.interactive, vm->cfg.trace_until);
    }
    if (r < 0)
        return r;
    trace_mark(TRACE_HV_READY);
    r = check_cpus(vm);
    if (r == 0)
        r = setup_memory(vm);
    if (r < 0)
        return r;
    trace_mark(TRACE_MEMORY_MAPPED);
    r = create_devices(vm);
    if (r < 0)
        return r;
    if (vm->restoring)
        return create_vcpus(vm, NULL) ?: restore_machine(vm);
    r = build_machine(vm, &bsp);
    if (r == 0)
        r = create_vcpus(vm, &bsp);
    return r;
}

static int alloc_vm(const struct vm_config *cfg, const struct vm_snapshot *snap, struct vm **out)
{
    struct vm *vm = calloc(1, sizeof(*vm));
    int r;

    if (!vm)
        return err_set(ENOMEM, "vm");
    vm->cfg = *cfg;
    vm->restoring = snap;
    vm->initrd_fd = -1;
    vm->kernel.fd = -1;
    pthread_mutex_init(&vm->stop_lock, NULL);
    pthread_mutex_init(&vm->pause_lock, NULL);
    pthread_cond_init(&vm->pause_cond, NULL);
    atomic_store(&vm->stop_reason, VM_RUNNING);
    vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->stop_fd < 0) {
        r = err_set(errno, "eventfd");
        free(vm);
        return r;
    }
    *out = vm;
    return 0;
}

int vm_create_devices_only(const struct vm_config *cfg, struct vm **out)
{
    struct guest_region layout[GUEST_MEMORY_MAX_REGIONS];
    struct vm *vm;
    int r = alloc_vm(cfg, NULL, &vm);

    if (r < 0)
        return r;
    r = console_open(&vm->console, false, NULL);
    if (r == 0)
        r = guest_memory_alloc(&vm->mem, layout, x86_ram_layout(vm->cfg.mem_bytes, layout));
    if (r == 0)
        r = create_devices(vm);
    if (r < 0) {
        vm_destroy(vm);
        return r;
    }
    *out = vm;
    return 0;
}

bool vm_bus_access(struct vm *vm, bool pio, uint64_t addr, void *data, unsigned size,
                   bool write)
{
    return bus_dispatch(pio ? &vm->pio : &vm->mmio, addr, data, size, write);
}

/* A VM whose building ended with r: *out, or destroyed. */
static int built(struct vm *vm, int r, struct vm **out)
{
    if (r < 0) {
        vm_destroy(vm);
        return r;
    }
    vm->restoring = NULL;
    *out = vm;
    return 0;
}

static int create(const struct vm_config *cfg, const struct vm_snapshot *snap, struct vm **out)
{
    struct vm *vm;
    int r = alloc_vm(cfg, snap, &vm);

    return r < 0 ? r : built(vm, setup(vm), out);
}

int vm_create(const struct vm_config *cfg, struct vm **out)
{
    return create(cfg, NULL, out);
}

/* The console and the devices of a prepared VM, made as for a restore
 * (no device writes the guest's RAM, which is still coming). */
static int make_devices_ahead(struct vm *vm)
{
    static const struct vm_snapshot ahead; /* only vm_restoring() looks */
    int r = console_open(&vm->console, vm->cfg.interactive, vm->cfg.trace_until);

    vm->restoring = &ahead;
    if (r == 0)
        r = create_devices(vm);
    vm->restoring = NULL;
    vm->devices_ahead = r == 0;
    return r;
}

int vm_prepare(struct vm_config *cfg, struct vm **out)
{
    struct vm *vm;
    int r;

    if ((r = alloc_vm(cfg, NULL, &vm)) < 0) {
        vm_config_release(cfg);
        return r;
    }
    vm->owns_cfg = true; /* cfg is taken: vm_destroy() releases it */
    cfg->owns_strings = false;
    r = vm_config_check(&vm->cfg);
    if (r == 0)
        r = hv_vm_create(&vm->hv);
    if (r == 0)
        r = check_cpus(vm);
    if (r == 0)
        r = setup_memory(vm);
    /* Its RAM keeps the huge pages guest_memory_alloc() asked for while
     * the pages come: the first page into each 2 MiB zeroes the whole of
     * it (before the pause, as QEMU's destination does), and the guest
     * then takes one nested page fault per 2 MiB after the hand-over, not
     * one per page (bench/migrate's idle guest: 31 against 537 before its
     * first line, in a nested L1 where each costs the guest's vCPU). */
    if (r == 0)
        r = create_vcpus(vm, NULL);
    /* A disk's file comes with the bundle, in the pause: a VM with disks
     * makes its devices then. */
    if (r == 0 && vm->cfg.disk_count == 0)
        r = make_devices_ahead(vm);
    return built(vm, r, out);
}

/* Whether cfg (a bundle's) is the config vm was prepared from: the same
 * JSON, as the guest sees it; the host's parts (shares' folders, the
 * console's terminal, the vsock socket) came from the same start. */
static int check_same_config(const struct vm *vm, const struct vm_config *cfg)
{
    char *had = vm_config_to_json(&vm->cfg), *got = vm_config_to_json(cfg);
    int r = had && got ? 0 : err_set(ENOMEM, "config");

    if (r == 0 && strcmp(had, got) != 0)
        r = err_plain(EINVAL, "the VM's bundle has another config than the one its RAM came "
                              "with (its devices are made from that one)");
    free(had);
    free(got);
    return r;
}

/* The rest of a prepared restore: the console and the devices unless
 * they were made ahead, the state. */
static int finish_prepared(const struct vm_config *cfg, const struct vm_snapshot *snap,
                           struct vm **out)
{
    struct vm *vm = snap->prepared;
    int r = 0;

    /* Checked before cfg is taken: the vCPUs made are vm->cfg.cpus. */
    if (cfg->mem_bytes != vm->cfg.mem_bytes || cfg->cpus != vm->cfg.cpus) {
        r = err_plain(EINVAL,
                      "the saved VM has %u CPUs and %llu MiB of RAM, not the %u and %llu MiB "
                      "its RAM came for",
                      cfg->cpus, (unsigned long long)(cfg->mem_bytes >> 20), vm->cfg.cpus,
                      (unsigned long long)(vm->cfg.mem_bytes >> 20));
        return built(vm, r, out);
    }
    vm->restoring = snap;
    if (vm->devices_ahead) /* they keep the config they were made from */
        return built(vm, check_same_config(vm, cfg) ?: restore_machine(vm), out);
    if (vm->owns_cfg)
        vm_config_release(&vm->cfg);
    vm->owns_cfg = false;
    vm->cfg = *cfg;
    r = console_open(&vm->console, vm->cfg.interactive, vm->cfg.trace_until);
    if (r == 0)
        r = create_devices(vm);
    if (r == 0)
        r = restore_machine(vm);
    return built(vm, r, out);
}

int vm_restore(const struct vm_config *cfg, const struct vm_snapshot *snap, struct vm **out)
{
    return snap->prepared ? finish_prepared(cfg, snap, out) : create(cfg, snap, out);
}

static void dispatch(const struct bus *bus, const struct hv_exit *e)
{
    for (uint32_t i = 0; i < e->count; i++) {
        uint8_t *data = e->data + (size_t)i * e->size;
        if (!bus_dispatch(bus, e->addr, data, e->size, e->is_write) && !e->is_write)
            memset(data, 0xff, e->size); /* nothing there: the bus floats high */
    }
}

/* Auto-converge: vm_throttle_tick() kicks every vCPU about every 10 ms;
 * each then sits out its share of that. */
static void throttled(struct vm *vm)
{
    unsigned pct = atomic_load(&vm->throttle);
    if (pct)
        usleep(pct * 100);
}

void vm_throttle(struct vm *vm, unsigned percent)
{
    atomic_store(&vm->throttle, percent > 99 ? 99 : percent);
}

void vm_throttle_tick(struct vm *vm)
{
    if (!atomic_load(&vm->throttle))
        return;
    for (unsigned i = 0; i < vm->cfg.cpus; i++)
        hv_vcpu_kick(vm->vcpus[i].hv);
}

int vm_dirty_log(struct vm *vm, bool on)
{
    for (unsigned i = 0; on && i < vm->mem.count; i++) {
        if (!vm->vmm_dirty[i])
            vm->vmm_dirty[i] = calloc((vm->mem.regions[i].size / 4096 + 63) / 64, 8);
        if (!vm->vmm_dirty[i])
            return err_set(ENOMEM, "dirty-page bitmap");
    }
    int r = hv_vm_dirty_log(vm->hv, on);
    for (unsigned i = 0; i < vm->mem.count; i++)
        vm->mem.regions[i].vmm_dirty = r == 0 && on ? vm->vmm_dirty[i] : NULL;
    if (!on)
        vm_throttle(vm, 0);
    return r;
}

int vm_dirty_fetch(struct vm *vm, unsigned region, uint64_t *bitmap, bool take_vmm)
{
    const struct guest_region *g = &vm->mem.regions[region];
    int r = hv_vm_dirty_fetch(vm->hv, g->gpa, bitmap);

    for (uint64_t w = 0; r == 0 && w < (g->size / 4096 + 63) / 64; w++)
        bitmap[w] |= take_vmm ? atomic_exchange(&vm->vmm_dirty[region][w], 0)
                              : atomic_load(&vm->vmm_dirty[region][w]);
    return r;
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vm *vm = v->vm;
    struct hv_exit e;
    char name[16];

    snprintf(name, sizeof(name), "vcpu%u", v->index);
    confine_thread(CONFINE_VCPU, name);
    while (atomic_load(&vm->stop_reason) == VM_RUNNING) {
        if (v->index == 0)
            trace_mark(TRACE_FIRST_VCPU_ENTRY);
        if (hv_vcpu_run(v->hv, &e) < 0) {
            stop_with(vm, VM_STOP_ERROR, "vCPU %u: %s", v->index, err_msg());
            break;
        }
        switch (e.kind) {
        case HV_EXIT_IO:
            dispatch(&vm->pio, &e);
            break;
        case HV_EXIT_MMIO:
            dispatch(&vm->mmio, &e);
            break;
        case HV_EXIT_INTERRUPTED:
            /* Pending I/O of an earlier exit is complete now: a safe
             * point to hold still for a snapshot. */
            vm_park_vcpu(vm);
            throttled(vm);
            break;
        case HV_EXIT_RESET:
            vm_request_stop(vm, VM_STOP_RESET);
            break;
        case HV_EXIT_POWEROFF:
            vm_request_stop(vm, VM_STOP_POWEROFF);
            break;
        case HV_EXIT_TRIPLE_FAULT:
            stop_with(vm, VM_STOP_TRIPLE_FAULT, "the guest crashed (triple fault on vCPU %u)",
                      v->index);
            break;
        case HV_EXIT_FAILED:
            stop_with(vm, VM_STOP_ERROR, "the hypervisor could not run vCPU %u (exit reason %u)",
                      v->index, e.reason);
            break;
        }
    }
    return NULL;
}

static bool stop_requested(void *opaque, int fd)
{
    (void)opaque;
    (void)fd;
    return false;
}

enum vm_stop_reason vm_run(struct vm *vm)
{
    for (unsigned i = 0; i < vm->cfg.cpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (confine_thread_start(&v->thread, CONFINE_VCPU, vcpu_thread, v) != 0) {
            stop_with(vm, VM_STOP_ERROR, "cannot start the thread of vCPU %u", i);
            break;
        }
        v->started = true;
    }
    /* After the vCPUs' threads are made: they start with none of its rules. */
    confine_thread(CONFINE_VMM, "smolvm");
    if (loop_add(&vm->loop, vm->stop_fd, stop_requested, vm) < 0 ||
        console_attach(vm->console, &vm->loop) < 0)
        stop_with(vm, VM_STOP_ERROR, "%s", err_msg());
    else
        loop_run(&vm->loop);
    if (console_quit_requested(vm->console))
        vm_request_stop(vm, VM_STOP_USER);
    vm_resume(vm); /* a paused VM stopped from outside */
    pthread_mutex_lock(&vm->stop_lock);
    vm->vcpus_ending = true;
    pthread_mutex_unlock(&vm->stop_lock);
    for (unsigned i = 0; i < vm->cfg.cpus; i++)
        if (vm->vcpus[i].started)
            hv_vcpu_kick(vm->vcpus[i].hv);
    for (unsigned i = 0; i < vm->cfg.cpus; i++)
        if (vm->vcpus[i].started)
            pthread_join(vm->vcpus[i].thread, NULL);
    confine_threads_ahead_end(); /* a spare's, its machine did not want */
    trace_mark(TRACE_GUEST_STOPPED);
    return (enum vm_stop_reason)atomic_load(&vm->stop_reason);
}

void vm_destroy(struct vm *vm)
{
    if (!vm)
        return;
    for (unsigned i = 0; vm->vcpus && i < vm->cfg.cpus; i++)
        hv_vcpu_destroy(vm->vcpus[i].hv);
    free(vm->vcpus);
    for (unsigned i = vm->device_count; i-- > 0;)
        if (vm->devices[i].type->destroy)
            vm->devices[i].type->destroy(vm->devices[i].state);
    guest_memory_free(&vm->mem);
    for (unsigned i = 0; i < GUEST_MEMORY_MAX_REGIONS; i++)
        free(vm->vmm_dirty[i]);
    hv_vm_destroy(vm->hv);
    bus_free(&vm->pio);
    bus_free(&vm->mmio);
    console_close(vm->console);
    if (vm->owns_cfg)
        vm_config_release(&vm->cfg);
    x86_kernel_close(&vm->kernel);
    close_initrd(vm);
    close(vm->stop_fd);
    pthread_mutex_destroy(&vm->stop_lock);
    pthread_mutex_destroy(&vm->pause_lock);
    pthread_cond_destroy(&vm->pause_cond);
    free(vm);
}
