/* Snapshot and restore of KVM's VM and vCPU state, as records of KVM's own
 * structures. The order of the calls follows what KVM needs (and what
 * Firecracker and QEMU do): MP_STATE is read first because reading it
 * delivers pending INIT/SIPI; VCPU_EVENTS is read last and written last;
 * LAPIC goes after SREGS (the APIC base MSR lives there); TSC_DEADLINE is
 * written after the TSC. */
#include "hv/hv.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "arch/x86/cpuid.h"
#include "hv/kvm_internal.h"
#include "util/err.h"

#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MAX_MSRS 1024

enum record {
    REC_MP_STATE = 1,
    REC_REGS,
    REC_SREGS,
    REC_XSAVE,
    REC_XCRS,
    REC_DEBUGREGS,
    REC_LAPIC,
    REC_MSRS,
    REC_EVENTS,
    REC_TSC_KHZ,
    REC_CPUID,
    REC_IRQCHIP = 64,
    REC_PIT2,
    REC_CLOCK,
};

const char *hv_state_format(void)
{
    return "kvm-x86_64-1";
}

static size_t xsave_size(struct hv_vm *vm)
{
    int n = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    return n > (int)sizeof(struct kvm_xsave) ? (size_t)n : sizeof(struct kvm_xsave);
}

static struct kvm_msrs *msrs_alloc(unsigned n)
{
    struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
    if (m)
        m->nmsrs = n;
    return m;
}

static bool msr_readable(int vcpu_fd, uint32_t index)
{
    struct kvm_msrs *m = msrs_alloc(1);
    bool ok;

    if (!m)
        return false;
    m->entries[0].index = index;
    ok = ioctl(vcpu_fd, KVM_GET_MSRS, m) == 1;
    free(m);
    return ok;
}

/* KVM's index list holds MSRs this CPU cannot read; keep the rest, with
 * TSC_DEADLINE last so a restore arms the timer against the restored TSC. */
static int find_snapshot_msrs(struct hv_vcpu *vcpu)
{
    struct hv_vm *vm = vcpu->vm;
    struct kvm_msr_list *list;
    bool deadline = false;
    unsigned n = 0;

    if (vm->snapshot_msrs)
        return 0;
    list = calloc(1, sizeof(*list) + MAX_MSRS * sizeof(list->indices[0]));
    vm->snapshot_msrs = calloc(MAX_MSRS + 1, sizeof(uint32_t));
    if (!list || !vm->snapshot_msrs) {
        free(list);
        return err_set(ENOMEM, "MSR list");
    }
    list->nmsrs = MAX_MSRS;
    if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        free(list);
        return err_set(errno, "KVM_GET_MSR_INDEX_LIST");
    }
    for (unsigned i = 0; i < list->nmsrs; i++) {
        if (!msr_readable(vcpu->fd, list->indices[i]))
            continue;
        if (list->indices[i] == MSR_IA32_TSC_DEADLINE)
            deadline = true;
        else
            vm->snapshot_msrs[n++] = list->indices[i];
    }
    if (deadline)
        vm->snapshot_msrs[n++] = MSR_IA32_TSC_DEADLINE;
    vm->snapshot_msr_count = n;
    free(list);
    return 0;
}

static int save_msrs(struct hv_vcpu *vcpu, struct blob *out)
{
    struct hv_vm *vm = vcpu->vm;
    struct kvm_msrs *m;
    int r = find_snapshot_msrs(vcpu);

    if (r < 0)
        return r;
    m = msrs_alloc(vm->snapshot_msr_count);
    if (!m)
        return err_set(ENOMEM, "MSRs");
    for (unsigned i = 0; i < m->nmsrs; i++)
        m->entries[i].index = vm->snapshot_msrs[i];
    r = ioctl(vcpu->fd, KVM_GET_MSRS, m);
    if (r != (int)m->nmsrs) {
        free(m);
        return err_set(r < 0 ? errno : EIO, "KVM_GET_MSRS");
    }
    blob_put_record(out, REC_MSRS, m->entries, m->nmsrs * (uint32_t)sizeof(m->entries[0]));
    free(m);
    return 0;
}

/* One vCPU ioctl whose result becomes a record of its own. */
static int save_ioctl(int fd, unsigned long request, const char *name, uint32_t tag, size_t size,
                      struct blob *out)
{
    void *buf = calloc(1, size);
    int r = 0;

    if (!buf)
        return err_set(ENOMEM, "%s", name);
    if (ioctl(fd, request, buf) < 0)
        r = err_set(errno, "%s", name);
    else
        blob_put_record(out, tag, buf, (uint32_t)size);
    free(buf);
    return r;
}

static int save_cpuid(struct hv_vcpu *vcpu, struct blob *out)
{
    unsigned n = vcpu->vm->cpuid->nent + 16;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

    if (!c)
        return err_set(ENOMEM, "cpuid");
    c->nent = n;
    if (ioctl(vcpu->fd, KVM_GET_CPUID2, c) < 0) {
        free(c);
        return err_set(errno, "KVM_GET_CPUID2");
    }
    blob_put_record(out, REC_CPUID, c->entries, c->nent * (uint32_t)sizeof(c->entries[0]));
    free(c);
    return 0;
}

static struct x86_cpuid_entry *plain_entries(const struct kvm_cpuid_entry2 *e, unsigned n)
{
    struct x86_cpuid_entry *p = calloc(n ? n : 1, sizeof(*p));
    for (unsigned i = 0; p && i < n; i++)
        p[i] = (struct x86_cpuid_entry){e[i].function, e[i].index, e[i].eax, e[i].ebx,
                                        e[i].ecx, e[i].edx};
    return p;
}

/* The saved guest must find every CPU feature it saw; then it sees exactly
 * the CPUID it saw, not this host's. */
static int set_cpuid(struct hv_vcpu *vcpu, const struct blob_reader *body)
{
    const struct kvm_cpuid2 *host = vcpu->vm->cpuid;
    size_t entry = sizeof(struct kvm_cpuid_entry2);
    unsigned n = (unsigned)(body->left / entry);
    struct x86_cpuid_entry *a, *b;
    struct kvm_cpuid2 *c;
    char why[128];
    int fits, r = 0;

    if (body->left % entry || n == 0 || n > 4096)
        return err_plain(EINVAL, "snapshot: malformed CPUID record");
    c = calloc(1, sizeof(*c) + n * entry);
    if (!c)
        return err_set(ENOMEM, "cpuid");
    c->nent = n;
    memcpy(c->entries, body->p, n * entry);
    a = plain_entries(c->entries, n);
    b = plain_entries(host->entries, host->nent);
    fits = a && b ? x86_cpuid_fits(a, n, b, host->nent, why, sizeof(why)) : -1;
    if (!a || !b)
        r = err_set(ENOMEM, "cpuid");
    else if (fits < 0)
        r = err_plain(ENOTSUP, "this host's CPU lacks a feature the saved guest uses: %s", why);
    else if (ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0)
        r = err_set(errno, "KVM_SET_CPUID2 with the saved CPU model");
    free(a);
    free(b);
    free(c);
    return r;
}

int hv_vcpu_save(struct hv_vcpu *vcpu, struct blob *out)
{
    const struct {
        unsigned long request;
        const char *name;
        uint32_t tag;
        size_t size;
    } steps[] = {
        {KVM_GET_MP_STATE, "KVM_GET_MP_STATE", REC_MP_STATE, sizeof(struct kvm_mp_state)},
        {KVM_GET_REGS, "KVM_GET_REGS", REC_REGS, sizeof(struct kvm_regs)},
        {KVM_GET_SREGS, "KVM_GET_SREGS", REC_SREGS, sizeof(struct kvm_sregs)},
        {xsave_size(vcpu->vm) > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
         "KVM_GET_XSAVE", REC_XSAVE, xsave_size(vcpu->vm)},
        {KVM_GET_XCRS, "KVM_GET_XCRS", REC_XCRS, sizeof(struct kvm_xcrs)},
        {KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", REC_DEBUGREGS, sizeof(struct kvm_debugregs)},
        {KVM_GET_LAPIC, "KVM_GET_LAPIC", REC_LAPIC, sizeof(struct kvm_lapic_state)},
    };
    struct kvm_vcpu_events events;
    int khz, r = save_cpuid(vcpu, out);

    /* MP_STATE still comes first among the state KVM computes. */
    for (size_t i = 0; r == 0 && i < sizeof(steps) / sizeof(steps[0]); i++)
        r = save_ioctl(vcpu->fd, steps[i].request, steps[i].name, steps[i].tag, steps[i].size,
                       out);
    if (r == 0)
        r = save_msrs(vcpu, out);
    if (r < 0)
        return r;
    khz = ioctl(vcpu->fd, KVM_GET_TSC_KHZ, 0);
    if (khz > 0)
        blob_put_record(out, REC_TSC_KHZ, &khz, sizeof(khz));
    if (ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &events) < 0)
        return err_set(errno, "KVM_GET_VCPU_EVENTS");
    blob_put_record(out, REC_EVENTS, &events, sizeof(events));
    return out->failed ? err_set(ENOMEM, "vCPU state") : 0;
}

static int set_msrs(struct hv_vcpu *vcpu, const struct blob_reader *body)
{
    size_t entry = sizeof(struct kvm_msr_entry);
    unsigned n = (unsigned)(body->left / entry);
    struct kvm_msrs *m;
    int r;

    if (body->left % entry || n > MAX_MSRS + 1)
        return err_plain(EINVAL, "snapshot: malformed MSR record");
    m = msrs_alloc(n);
    if (!m)
        return err_set(ENOMEM, "MSRs");
    memcpy(m->entries, body->p, n * entry);
    r = ioctl(vcpu->fd, KVM_SET_MSRS, m);
    if (r != (int)n) {
        uint32_t bad = r >= 0 && r < (int)n ? m->entries[r].index : 0;
        free(m);
        return err_plain(EINVAL, "snapshot: this host's KVM refuses MSR 0x%x", bad);
    }
    free(m);
    return 0;
}

/* A record's bytes must be exactly the size of KVM's structure. */
static int set_ioctl(int fd, unsigned long request, const char *name,
                     const struct blob_reader *body, size_t size)
{
    void *buf;
    int r = 0;

    if (body->left != size)
        return err_plain(EINVAL, "snapshot: %s record has %zu bytes, KVM wants %zu", name,
                         body->left, size);
    buf = malloc(size);
    if (!buf)
        return err_set(ENOMEM, "%s", name);
    memcpy(buf, body->p, size);
    if (ioctl(fd, request, buf) < 0)
        r = err_set(errno, "%s", name);
    free(buf);
    return r;
}

static int set_tsc_khz(struct hv_vcpu *vcpu, const struct blob_reader *body)
{
    int saved, now;

    if (body->left != sizeof(saved))
        return err_plain(EINVAL, "snapshot: malformed TSC frequency record");
    memcpy(&saved, body->p, sizeof(saved));
    now = ioctl(vcpu->fd, KVM_GET_TSC_KHZ, 0);
    if (saved <= 0 || now == saved)
        return 0;
    if (ioctl(vcpu->fd, KVM_SET_TSC_KHZ, (unsigned long)saved) < 0)
        return err_set(errno, "the snapshot's TSC runs at %d kHz, this host's at %d kHz, and "
                              "KVM cannot scale it", saved, now);
    return 0;
}

static int restore_record(struct hv_vcpu *vcpu, uint32_t tag, const struct blob_reader *body)
{
    int fd = vcpu->fd;

    switch (tag) {
    case REC_MP_STATE: return set_ioctl(fd, KVM_SET_MP_STATE, "KVM_SET_MP_STATE", body,
                                        sizeof(struct kvm_mp_state));
    case REC_REGS: return set_ioctl(fd, KVM_SET_REGS, "KVM_SET_REGS", body, sizeof(struct kvm_regs));
    case REC_SREGS: return set_ioctl(fd, KVM_SET_SREGS, "KVM_SET_SREGS", body,
                                     sizeof(struct kvm_sregs));
    case REC_XSAVE: return set_ioctl(fd, KVM_SET_XSAVE, "KVM_SET_XSAVE", body,
                                     xsave_size(vcpu->vm));
    case REC_XCRS: return set_ioctl(fd, KVM_SET_XCRS, "KVM_SET_XCRS", body, sizeof(struct kvm_xcrs));
    case REC_DEBUGREGS: return set_ioctl(fd, KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", body,
                                         sizeof(struct kvm_debugregs));
    case REC_LAPIC: return set_ioctl(fd, KVM_SET_LAPIC, "KVM_SET_LAPIC", body,
                                     sizeof(struct kvm_lapic_state));
    case REC_MSRS: return set_msrs(vcpu, body);
    case REC_TSC_KHZ: return set_tsc_khz(vcpu, body);
    case REC_EVENTS: return set_ioctl(fd, KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", body,
                                      sizeof(struct kvm_vcpu_events));
    default: return err_plain(EINVAL, "snapshot: unknown vCPU record %u", tag);
    }
}

int hv_vcpu_restore(struct hv_vcpu *vcpu, struct blob_reader *in)
{
    struct blob_reader body;
    uint32_t tag, seen = 0;
    int r;

    /* The CPU model, then the TSC frequency, before anything that depends
     * on them (XSAVE layout, the MSRs that set the TSC). */
    for (struct blob_reader scan = *in; blob_next_record(&scan, &tag, &body);)
        if (tag == REC_CPUID && (r = set_cpuid(vcpu, &body)) < 0)
            return r;
    for (struct blob_reader scan = *in; blob_next_record(&scan, &tag, &body);)
        if (tag == REC_TSC_KHZ && (r = set_tsc_khz(vcpu, &body)) < 0)
            return r;
    while (blob_next_record(in, &tag, &body)) {
        if (tag == REC_TSC_KHZ || tag == REC_CPUID)
            continue;
        r = restore_record(vcpu, tag, &body);
        if (r < 0)
            return r;
        if (tag < 32)
            seen |= 1u << tag;
    }
    if (in->failed)
        return err_plain(EINVAL, "snapshot: truncated vCPU state");
    if (!(seen & (1u << REC_REGS)) || !(seen & (1u << REC_SREGS)) || !(seen & (1u << REC_EVENTS)))
        return err_plain(EINVAL, "snapshot: vCPU state lacks registers");
    return 0;
}

void hv_vcpu_tell_paused(struct hv_vcpu *vcpu)
{
    /* Fails with EINVAL when the guest does not use kvmclock: nothing to tell. */
    if (ioctl(vcpu->fd, KVM_KVMCLOCK_CTRL, 0) < 0) {
    }
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int hv_vm_save(struct hv_vm *vm, struct blob *out)
{
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;

    for (uint32_t chip = 0; chip < 3; chip++) { /* PIC master, PIC slave, IOAPIC */
        struct kvm_irqchip c = {.chip_id = chip};
        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c) < 0)
            return err_set(errno, "KVM_GET_IRQCHIP %u", chip);
        blob_put_record(out, REC_IRQCHIP, &c, sizeof(c));
    }
    if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
        return err_set(errno, "KVM_GET_PIT2");
    blob_put_record(out, REC_PIT2, &pit, sizeof(pit));
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
        return err_set(errno, "KVM_GET_CLOCK");
    /* KVM pairs the clock with the host's wall clock only while the host
     * runs on a stable TSC (a loaded L1 under TCG drops to the HPET):
     * otherwise our own reading, taken right after, lets the start
     * advance the clock over the gap itself. */
    if (!(clock.flags & KVM_CLOCK_REALTIME))
        clock.realtime = realtime_ns();
    blob_put_record(out, REC_CLOCK, &clock, sizeof(clock));
    return out->failed ? err_set(ENOMEM, "VM state") : 0;
}

struct kvm_clock_data kvm_clock_for_restore(const struct kvm_clock_data *saved,
                                            uint64_t now_realtime_ns, bool kvm_adds_realtime)
{
    struct kvm_clock_data clock = {.clock = saved->clock};

    /* The guest's clock carries over, advanced by the wall-clock time the
     * VM spent saved, so the guest neither sees time run backwards nor
     * keeps a stale date. KVM adds it when given KVM_CLOCK_REALTIME (and a
     * host on a stable TSC); else we add what our own readings say. The
     * other flags describe the host the clock was read on. A bundle saved
     * before the own reading was kept has realtime 0: no advance. */
    if ((saved->flags & KVM_CLOCK_REALTIME) && kvm_adds_realtime) {
        clock.realtime = saved->realtime;
        clock.flags = KVM_CLOCK_REALTIME;
    } else if (saved->realtime != 0 && now_realtime_ns > saved->realtime) {
        clock.clock += now_realtime_ns - saved->realtime;
    }
    return clock;
}

static int set_clock(struct hv_vm *vm, const struct blob_reader *body)
{
    struct kvm_clock_data saved, clock;
    bool kvm_adds_realtime;

    if (body->left != sizeof(saved))
        return err_plain(EINVAL, "snapshot: malformed clock record");
    memcpy(&saved, body->p, sizeof(saved));
    int clock_flags = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK);
    kvm_adds_realtime = clock_flags > 0 && (clock_flags & KVM_CLOCK_REALTIME);
    clock = kvm_clock_for_restore(&saved, realtime_ns(), kvm_adds_realtime);
    if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
        return err_set(errno, "KVM_SET_CLOCK");
    return 0;
}

int hv_vm_restore(struct hv_vm *vm, struct blob_reader *in)
{
    struct blob_reader body;
    uint32_t tag;
    int r = 0;

    while (r == 0 && blob_next_record(in, &tag, &body)) {
        switch (tag) {
        case REC_IRQCHIP:
            r = set_ioctl(vm->vm_fd, KVM_SET_IRQCHIP, "KVM_SET_IRQCHIP", &body,
                          sizeof(struct kvm_irqchip));
            break;
        case REC_PIT2:
            r = set_ioctl(vm->vm_fd, KVM_SET_PIT2, "KVM_SET_PIT2", &body,
                          sizeof(struct kvm_pit_state2));
            break;
        case REC_CLOCK: r = set_clock(vm, &body); break;
        default: r = err_plain(EINVAL, "snapshot: unknown VM record %u", tag);
        }
    }
    if (r == 0 && in->failed)
        r = err_plain(EINVAL, "snapshot: truncated VM state");
    return r;
}
