/* The KVM backend of hv.h for x86-64 Linux hosts. */
#include "hv/hv.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "hv/kvm_internal.h"
#include "util/err.h"

/* KVM needs three pages for its own use below 4 GiB on Intel; they sit in
 * the MMIO hole, out of the guest's RAM. */
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull
#define KVM_TSS_ADDR 0xfffbd000ull

#define MSR_IA32_MISC_ENABLE 0x1a0
#define MISC_ENABLE_FAST_STRING 1ull
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7
#define CPUID_HYPERVISOR_BIT (1u << 31)
#define CPUID_TSC_DEADLINE_BIT (1u << 24)

/* The signal hv_vcpu_kick() sends to knock a thread out of KVM_RUN. */
#define KICK_SIGNAL SIGUSR1

int kvm_xioctl(int fd, unsigned long request, void *arg)
{
    int r;
    do
        r = ioctl(fd, request, arg);
    while (r < 0 && errno == EINTR);
    return r;
}

static void kick_handler(int sig)
{
    (void)sig;
}

static void install_kick_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler; /* no SA_RESTART: KVM_RUN must return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(KICK_SIGNAL, &sa, NULL);
}

/* kvm-pvm (Pagetable-based Virtual Machine) offers /dev/kvm without
 * hardware virtualization, but runs only PVM-enabled guest kernels. Told
 * by the modules loaded, looked at once (hv_decide()). */
static int pvm_only = -1; /* -1: not looked at yet */

void hv_decide(void)
{
    if (pvm_only < 0)
        pvm_only = access("/sys/module/kvm_pvm", F_OK) == 0 &&
                   access("/sys/module/kvm_intel", F_OK) != 0 &&
                   access("/sys/module/kvm_amd", F_OK) != 0;
}

static bool only_pvm_kvm(void)
{
    hv_decide();
    return pvm_only == 1;
}

static int open_kvm(void)
{
    int fd;

    if (only_pvm_kvm())
        return err_plain(ENODEV, "this host's /dev/kvm is kvm-pvm, which boots only PVM guest "
                                 "kernels (tests/nested/run runs smolvm inside a nested-KVM guest)");
    fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
        return err_plain(ENODEV, "no /dev/kvm on this host, so KVM is unavailable: load kvm_intel "
                                 "or kvm_amd (modprobe), enable nested virtualisation if this is "
                                 "a VM, or run smolvm in the nested harness it ships with "
                                 "(tests/nested/run)");
    if (errno == EACCES || errno == EPERM)
        return err_set(errno, "cannot open /dev/kvm (add your user to the 'kvm' group)");
    return err_set(errno, "cannot open /dev/kvm");
}

static int require_caps(struct hv_vm *vm)
{
    static const struct {
        int cap;
        const char *name;
    } caps[] = {
        {KVM_CAP_IRQCHIP, "IRQCHIP"},       {KVM_CAP_USER_MEMORY, "USER_MEMORY"},
        {KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"}, {KVM_CAP_PIT2, "PIT2"},
        {KVM_CAP_EXT_CPUID, "EXT_CPUID"},   {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"},
    };
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
        if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
            return err_plain(ENOTSUP, "this KVM lacks KVM_CAP_%s", caps[i].name);
    return 0;
}

/* KVM emulates the local APIC's TSC-deadline mode, yet KVM_GET_SUPPORTED_CPUID
 * leaves its bit out (it is no host CPU feature; QEMU adds it the same
 * way). Without it a guest calibrates its APIC timer against the PIT, a
 * tenth of a second of ticks at every boot. Part of what this host offers,
 * so a saved guest that saw it restores where KVM has it. */
static void offer_tsc_deadline(int kvm_fd, struct kvm_cpuid2 *c)
{
    if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) <= 0)
        return;
    for (unsigned i = 0; i < c->nent; i++)
        if (c->entries[i].function == 1)
            c->entries[i].ecx |= CPUID_TSC_DEADLINE_BIT;
}

static int fetch_supported_cpuid(struct hv_vm *vm)
{
    for (unsigned nent = 64; nent <= 4096; nent *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
        if (!c)
            return err_set(ENOMEM, "cpuid table");
        c->nent = nent;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            offer_tsc_deadline(vm->kvm_fd, c);
            vm->cpuid = c;
            return 0;
        }
        free(c);
        if (errno != E2BIG)
            return err_set(errno, "KVM_GET_SUPPORTED_CPUID");
    }
    return err_plain(E2BIG, "KVM_GET_SUPPORTED_CPUID: table too large");
}

int hv_host_cpuid(struct x86_cpuid_entry **out, size_t *count)
{
    struct hv_vm probe = {.kvm_fd = open_kvm()};
    int r;

    if (probe.kvm_fd < 0)
        return probe.kvm_fd;
    r = fetch_supported_cpuid(&probe);
    close(probe.kvm_fd);
    if (r < 0)
        return r;
    *count = probe.cpuid->nent;
    *out = calloc(*count ? *count : 1, sizeof(**out));
    for (size_t i = 0; *out && i < *count; i++) {
        const struct kvm_cpuid_entry2 *e = &probe.cpuid->entries[i];
        (*out)[i] = (struct x86_cpuid_entry){e->function, e->index, e->eax, e->ebx, e->ecx, e->edx};
    }
    free(probe.cpuid);
    return *out ? 0 : err_set(ENOMEM, "cpuid table");
}

/* The VM hv_check() made, kept for this process's hv_vm_create(): making a
 * second VM and tearing the first down cost every run and start a
 * KVM_CREATE_VM and a VM's teardown more (nested L1, strace -T: 16 ms and
 * 12 ms). KVM ties a VM to the memory of the process that made it, so a
 * process forked after the check cannot use it: the child lets go of its
 * copy (the parent's reference keeps the VM: no teardown in the child) and
 * makes its own. A VMM known to be forked (a jail's, a detached one) is
 * checked with hv_check_elsewhere(), which makes none. */
static struct {
    int kvm_fd, vm_fd;
    pid_t pid;
} checked = {-1, -1, 0};

/* The VM hv_vm_create_ahead() made, whole, for this process's next
 * hv_vm_create(): its setup sleeps too (KVM_CREATE_IRQCHIP and
 * KVM_CREATE_PIT2 each wait for an SRCU grace period as they register
 * their devices). Tied to the process that made it, as the check's. */
static struct {
    struct hv_vm *vm;
    pid_t pid;
} ahead = {NULL, 0};

static void let_go_of_checked(void)
{
    if (checked.vm_fd >= 0)
        close(checked.vm_fd);
    if (checked.kvm_fd >= 0)
        close(checked.kvm_fd);
    checked.vm_fd = checked.kvm_fd = -1;
}

/* A forked child's copies: the parent's references keep the VMs. */
static void let_go_in_child(void)
{
    let_go_of_checked();
    hv_vm_destroy(ahead.vm);
    ahead.vm = NULL;
}

static void register_fork_handlers(void)
{
    pthread_atfork(NULL, NULL, let_go_in_child);
}

/* Once a process, whichever of hv_check() and hv_vm_create_ahead() keeps
 * a VM first. */
static void let_children_go_of_kept_vms(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, register_fork_handlers);
}

static int cannot_create_vm(int e)
{
    return err_set(e, "/dev/kvm cannot create a VM (is virtualisation enabled in the "
                      "firmware, or nested virtualisation in the host of this VM?)");
}

static int setup_vm(struct hv_vm *vm)
{
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    uint64_t identity = KVM_IDENTITY_MAP_ADDR;
    int n;

    if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
        return err_plain(ENOTSUP, "unsupported KVM API version");
    if (require_caps(vm) < 0)
        return -ENOTSUP;
    if (vm->vm_fd < 0)
        vm->vm_fd = kvm_xioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0)
        return cannot_create_vm(errno);
    vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->run_size <= 0)
        return err_set(errno, "KVM_GET_VCPU_MMAP_SIZE");
    n = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (n <= 0)
        n = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    vm->max_vcpus = n > 0 ? (unsigned)n : 1;
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0)
        return err_set(errno, "KVM_SET_TSS_ADDR");
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
        return err_set(errno, "KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return err_set(errno, "KVM_CREATE_IRQCHIP");
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return err_set(errno, "KVM_CREATE_PIT2");
    return fetch_supported_cpuid(vm);
}

/* hv_check() but the VM: the API version and the VM itself are checked
 * where the VMM makes it (setup_vm()), with the same messages. */
int hv_check_elsewhere(void)
{
    int kvm = open_kvm();

    if (kvm < 0)
        return kvm;
    close(kvm);
    return 0;
}

int hv_check(void)
{
    int kvm = open_kvm(), vm;

    if (kvm < 0)
        return kvm;
    vm = kvm_xioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        int r = cannot_create_vm(errno);
        close(kvm);
        return r;
    }
    let_go_of_checked();
    let_children_go_of_kept_vms();
    checked.kvm_fd = kvm;
    checked.vm_fd = vm;
    checked.pid = getpid();
    return 0;
}

/* hv_vm_create_begin()'s thread, while it runs (this process's: a forked
 * child has none). */
static struct {
    pthread_t thread;
    pid_t pid;
    void (*first)(void); /* hv_vm_create_begin_after()'s */
} begun;

static void *create_ahead(void *unused)
{
    (void)unused;
    if (begun.first)
        begun.first();
    if (hv_vm_create_ahead() < 0)
        err_clear(); /* said again by hv_vm_create(), which makes it again */
    return NULL;
}

void hv_vm_create_begin(void)
{
    if (begun.pid != getpid() && pthread_create(&begun.thread, NULL, create_ahead, NULL) == 0)
        begun.pid = getpid();
}

bool hv_vm_create_begin_after(void (*first)(void))
{
    if (begun.pid == getpid())
        return false; /* begun already, without first: none here (the jail makes none before) */
    begun.first = first;
    hv_vm_create_begin();
    return begun.pid == getpid();
}

int hv_vm_create(struct hv_vm **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct hv_vm *vm;
    int r;

    if (begun.pid && begun.pid == getpid()) {
        pthread_join(begun.thread, NULL); /* its VM is ahead.vm, or it failed */
        begun.pid = 0;
    }
    pthread_once(&once, install_kick_handler);
    if (ahead.vm && ahead.pid == getpid()) {
        *out = ahead.vm;
        ahead.vm = NULL;
        return 0;
    }
    vm = calloc(1, sizeof(*vm));
    if (!vm)
        return err_set(ENOMEM, "hv_vm");
    vm->vm_fd = -1;
    pthread_mutex_init(&vm->ring_lock, NULL);
    if (checked.vm_fd >= 0 && checked.pid == getpid()) {
        vm->kvm_fd = checked.kvm_fd; /* the check's, this process's */
        vm->vm_fd = checked.vm_fd;
        checked.vm_fd = checked.kvm_fd = -1;
    } else {
        let_go_of_checked();
        vm->kvm_fd = open_kvm();
    }
    if (vm->kvm_fd < 0) {
        r = vm->kvm_fd;
        pthread_mutex_destroy(&vm->ring_lock);
        free(vm);
        return r;
    }
    r = setup_vm(vm);
    if (r < 0) {
        hv_vm_destroy(vm);
        return r;
    }
    *out = vm;
    return 0;
}

int hv_vm_create_ahead(void)
{
    struct hv_vm *vm;
    int r = hv_vm_create(&vm);

    if (r < 0)
        return r;
    let_children_go_of_kept_vms();
    hv_vm_destroy(ahead.vm);
    ahead.vm = vm;
    ahead.pid = getpid();
    return 0;
}

void hv_vm_destroy(struct hv_vm *vm)
{
    if (!vm)
        return;
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    close(vm->kvm_fd);
    free(vm->cpuid);
    free(vm->snapshot_msrs);
    pthread_mutex_destroy(&vm->ring_lock);
    free(vm);
}

unsigned hv_max_vcpus(struct hv_vm *vm)
{
    return vm->max_vcpus;
}

int hv_vm_map_memory(struct hv_vm *vm, uint64_t gpa, void *host, uint64_t size)
{
    struct kvm_userspace_memory_region region = {
        .slot = vm->next_slot,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    if (vm->next_slot >= sizeof(vm->slots) / sizeof(vm->slots[0]))
        return err_plain(ENOSPC, "guest RAM in too many pieces");
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return err_set(errno, "KVM_SET_USER_MEMORY_REGION at 0x%llx", (unsigned long long)gpa);
    vm->slots[vm->next_slot++] = region;
    return 0;
}

int hv_vm_dirty_log(struct hv_vm *vm, bool on)
{
    for (unsigned i = 0; i < vm->next_slot; i++) {
        struct kvm_userspace_memory_region r = vm->slots[i];
        r.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0;
        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
            return err_set(errno, "dirty-page logging %s", on ? "on" : "off");
        vm->slots[i].flags = r.flags;
    }
    return 0;
}

int hv_vm_dirty_fetch(struct hv_vm *vm, uint64_t gpa, uint64_t *bitmap)
{
    for (unsigned i = 0; i < vm->next_slot; i++) {
        if (vm->slots[i].guest_phys_addr != gpa)
            continue;
        struct kvm_dirty_log log = {.slot = vm->slots[i].slot, .dirty_bitmap = bitmap};
        return ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0
                   ? err_set(errno, "KVM_GET_DIRTY_LOG at 0x%llx", (unsigned long long)gpa)
                   : 0;
    }
    return err_plain(ENOENT, "no guest RAM mapped at 0x%llx", (unsigned long long)gpa);
}

int hv_vm_set_irq(struct hv_vm *vm, unsigned gsi, bool level)
{
    struct kvm_irq_level irq = {.irq = gsi, .level = level};
    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
        return err_set(errno, "KVM_IRQ_LINE %u", gsi);
    return 0;
}

int hv_vm_ioeventfd(struct hv_vm *vm, uint64_t gpa, uint32_t len, uint64_t value, int fd)
{
    struct kvm_ioeventfd e = {
        .datamatch = value, .addr = gpa, .len = len, .fd = fd,
        .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
    };
    if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &e) < 0)
        return err_set(errno, "KVM_IOEVENTFD at 0x%llx", (unsigned long long)gpa);
    return 0;
}

int hv_vm_irqfd(struct hv_vm *vm, unsigned gsi, int fd)
{
    struct kvm_irqfd i = {.fd = (uint32_t)fd, .gsi = gsi};
    if (ioctl(vm->vm_fd, KVM_IRQFD, &i) < 0)
        return err_set(errno, "KVM_IRQFD for GSI %u", gsi);
    return 0;
}

/* The host's CPU as KVM can virtualize it, with each vCPU's own APIC ID and
 * the hypervisor bit so the guest looks for the KVM leaves (kvmclock). */
static int set_cpuid(struct hv_vcpu *vcpu, unsigned index)
{
    const struct kvm_cpuid2 *supported = vcpu->vm->cpuid;
    size_t bytes = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
    struct kvm_cpuid2 *c = malloc(bytes);
    int r = 0;

    if (!c)
        return err_set(ENOMEM, "cpuid");
    memcpy(c, supported, bytes);
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x00ffffffu) | (index << 24);
            e->ecx |= CPUID_HYPERVISOR_BIT;
            break;
        case 0xb:
        case 0x1f:
            e->edx = index;
            break;
        }
    }
    if (ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0)
        r = err_set(errno, "KVM_SET_CPUID2");
    free(c);
    return r;
}

static void set_lvt_mode(struct kvm_lapic_state *lapic, unsigned offset, uint32_t mode)
{
    uint32_t v;
    memcpy(&v, &lapic->regs[offset], sizeof(v));
    v = (v & ~0x700u) | (mode << 8);
    memcpy(&lapic->regs[offset], &v, sizeof(v));
}

/* What firmware does before handing over: FPU defaults, the local APIC in
 * virtual-wire mode (LINT0 ExtINT, LINT1 NMI) and fast strings on. */
static int set_firmware_defaults(struct hv_vcpu *vcpu)
{
    struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
    struct kvm_lapic_state lapic;
    union {
        struct kvm_msrs header;
        uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
    } msrs;

    if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
        return err_set(errno, "KVM_SET_FPU");
    if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
        return err_set(errno, "KVM_GET_LAPIC");
    set_lvt_mode(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
    set_lvt_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
    if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
        return err_set(errno, "KVM_SET_LAPIC");
    memset(&msrs, 0, sizeof(msrs));
    msrs.header.nmsrs = 1;
    msrs.header.entries[0] = (struct kvm_msr_entry){.index = MSR_IA32_MISC_ENABLE,
                                                    .data = MISC_ENABLE_FAST_STRING};
    if (ioctl(vcpu->fd, KVM_SET_MSRS, &msrs) != 1)
        return err_set(errno, "KVM_SET_MSRS");
    return 0;
}

int hv_vcpu_create(struct hv_vm *vm, unsigned index, struct hv_vcpu **out)
{
    struct hv_vcpu *vcpu;
    int r;

    vcpu = calloc(1, sizeof(*vcpu));
    if (!vcpu)
        return err_set(ENOMEM, "hv_vcpu");
    vcpu->vm = vm;
    vcpu->run = MAP_FAILED;
    vcpu->fd = kvm_xioctl(vm->vm_fd, KVM_CREATE_VCPU, (void *)(uintptr_t)index);
    if (vcpu->fd < 0) {
        r = err_set(errno, "KVM_CREATE_VCPU %u", index);
        goto fail;
    }
    vcpu->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
    if (vcpu->run == MAP_FAILED) {
        r = err_set(errno, "mmap of vCPU %u", index);
        goto fail;
    }
    r = set_cpuid(vcpu, index);
    if (r == 0)
        r = set_firmware_defaults(vcpu);
    if (r < 0)
        goto fail;
    *out = vcpu;
    return 0;
fail:
    hv_vcpu_destroy(vcpu);
    return r;
}

void hv_vcpu_destroy(struct hv_vcpu *vcpu)
{
    if (!vcpu)
        return;
    if (vcpu->run != MAP_FAILED)
        munmap(vcpu->run, (size_t)vcpu->vm->run_size);
    if (vcpu->fd >= 0)
        close(vcpu->fd);
    free(vcpu);
}

static void to_kvm_segment(struct kvm_segment *k, const struct x86_segment *s)
{
    *k = (struct kvm_segment){
        .base = s->base, .limit = s->limit, .selector = s->selector, .type = s->type,
        .present = s->present, .dpl = s->dpl, .db = s->db, .s = s->s, .l = s->l, .g = s->g,
        .unusable = !s->present,
    };
}

int hv_vcpu_set_x86_state(struct hv_vcpu *vcpu, const struct x86_cpu_state *st)
{
    struct kvm_sregs sregs;
    struct kvm_regs regs;

    if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
        return err_set(errno, "KVM_GET_SREGS");
    to_kvm_segment(&sregs.cs, &st->cs);
    to_kvm_segment(&sregs.ds, &st->ds);
    to_kvm_segment(&sregs.es, &st->es);
    to_kvm_segment(&sregs.fs, &st->fs);
    to_kvm_segment(&sregs.gs, &st->gs);
    to_kvm_segment(&sregs.ss, &st->ss);
    to_kvm_segment(&sregs.tr, &st->tr);
    to_kvm_segment(&sregs.ldt, &st->ldt);
    sregs.gdt.base = st->gdt.base;
    sregs.gdt.limit = st->gdt.limit;
    sregs.idt.base = st->idt.base;
    sregs.idt.limit = st->idt.limit;
    sregs.cr0 = st->cr0;
    sregs.cr3 = st->cr3;
    sregs.cr4 = st->cr4;
    sregs.efer = st->efer;
    if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
        return err_set(errno, "KVM_SET_SREGS");
    memset(&regs, 0, sizeof(regs));
    regs.rip = st->rip;
    regs.rflags = st->rflags;
    regs.rsp = st->rsp;
    regs.rsi = st->rsi;
    regs.rbx = st->rbx;
    if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
        return err_set(errno, "KVM_SET_REGS");
    return 0;
}

static void fill_exit(const struct kvm_run *run, struct hv_exit *exit)
{
    exit->reason = run->exit_reason;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        exit->kind = HV_EXIT_IO;
        exit->addr = run->io.port;
        exit->size = run->io.size;
        exit->count = run->io.count;
        exit->is_write = run->io.direction == KVM_EXIT_IO_OUT;
        exit->data = (uint8_t *)run + run->io.data_offset;
        break;
    case KVM_EXIT_MMIO:
        exit->kind = HV_EXIT_MMIO;
        exit->addr = run->mmio.phys_addr;
        exit->size = run->mmio.len;
        exit->count = 1;
        exit->is_write = run->mmio.is_write;
        exit->data = (uint8_t *)run->mmio.data;
        break;
    case KVM_EXIT_SHUTDOWN:
        exit->kind = HV_EXIT_TRIPLE_FAULT;
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        exit->reason = run->system_event.type;
        exit->kind = run->system_event.type == KVM_SYSTEM_EVENT_RESET      ? HV_EXIT_RESET
                     : run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ? HV_EXIT_POWEROFF
                                                                           : HV_EXIT_FAILED;
        break;
    case KVM_EXIT_INTR:
        exit->kind = HV_EXIT_INTERRUPTED;
        break;
    case KVM_EXIT_FAIL_ENTRY:
        exit->kind = HV_EXIT_FAILED;
        exit->reason = (uint32_t)run->fail_entry.hardware_entry_failure_reason;
        break;
    default:
        exit->kind = HV_EXIT_FAILED;
        break;
    }
}

int hv_vcpu_run(struct hv_vcpu *vcpu, struct hv_exit *exit)
{
    int r, saved_errno;

    if (!atomic_load(&vcpu->thread_known)) {
        vcpu->thread = pthread_self();
        atomic_store(&vcpu->thread_known, true);
    }
    memset(exit, 0, sizeof(*exit));
    r = ioctl(vcpu->fd, KVM_RUN, 0);
    saved_errno = errno;
    /* Whatever ended the run, the writes queued before it come first. */
    kvm_coalesced_flush(vcpu);
    errno = saved_errno;
    if (r < 0) {
        if (errno == EINTR || errno == EAGAIN) {
            vcpu->run->immediate_exit = 0;
            exit->kind = HV_EXIT_INTERRUPTED;
            return 0;
        }
        return err_set(errno, "KVM_RUN");
    }
    fill_exit(vcpu->run, exit);
    return 0;
}

void hv_vcpu_kick(struct hv_vcpu *vcpu)
{
    /* immediate_exit covers a kick that lands before KVM_RUN; the signal
     * covers one that lands while the vCPU is inside the guest. */
    ((volatile struct kvm_run *)vcpu->run)->immediate_exit = 1;
    if (atomic_load(&vcpu->thread_known))
        pthread_kill(vcpu->thread, KICK_SIGNAL);
}
