/* Pausing a running VM at a consistent point, and its state as bytes:
 * the hypervisor's VM state, each vCPU's, then each registered device's,
 * as tagged records. Memory travels separately (the bundle stores it).
 *
 * A device record is {name, version, fields} (docs/smolmachine-format.md);
 * records from before versions existed (tag "DEV ") are read as version 1. */
#include <stdio.h>
#include <string.h>

#include "core/vm_internal.h"
#include "hv/hv.h"
#include "util/err.h"

enum state_record {
    STATE_FORMAT = 0x544d5246, /* "FRMT" */
    STATE_HV_VM = 0x4d565648,  /* "HVVM" */
    STATE_VCPU = 0x55504356,   /* "VCPU" */
    STATE_DEVICE_V1 = 0x20564544, /* "DEV ": unversioned, read as version 1 */
    STATE_DEVICE = 0x56564544,    /* "DEVV" */
};

void vm_park_vcpu(struct vm *vm)
{
    pthread_mutex_lock(&vm->pause_lock);
    if (vm->pause_requested) {
        vm->vcpus_paused++;
        pthread_cond_broadcast(&vm->pause_cond);
        while (vm->pause_requested && atomic_load(&vm->stop_reason) == VM_RUNNING)
            pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
        vm->vcpus_paused--;
    }
    pthread_mutex_unlock(&vm->pause_lock);
}

static unsigned running_vcpus(const struct vm *vm)
{
    unsigned n = 0;
    for (unsigned i = 0; i < vm->cfg.cpus; i++)
        n += vm->vcpus[i].started;
    return n;
}

int vm_pause(struct vm *vm)
{
    pthread_mutex_lock(&vm->pause_lock);
    if (vm->pause_requested) {
        pthread_mutex_unlock(&vm->pause_lock);
        return 0;
    }
    vm->pause_requested = true;
    pthread_mutex_unlock(&vm->pause_lock);
    for (unsigned i = 0; i < vm->cfg.cpus; i++)
        if (vm->vcpus[i].started)
            hv_vcpu_kick(vm->vcpus[i].hv);
    pthread_mutex_lock(&vm->pause_lock);
    while (vm->vcpus_paused < running_vcpus(vm) && atomic_load(&vm->stop_reason) == VM_RUNNING)
        pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
    pthread_mutex_unlock(&vm->pause_lock);
    if (atomic_load(&vm->stop_reason) != VM_RUNNING) {
        vm_resume(vm);
        return err_plain(ESRCH, "the VM stopped");
    }
    for (unsigned i = 0; i < vm->part_count; i++)
        if (vm->parts[i].desc->pause)
            vm->parts[i].desc->pause(vm->parts[i].opaque);
    vm->devices_paused = true;
    return 0;
}

void vm_resume(struct vm *vm)
{
    if (vm->devices_paused) {
        for (unsigned i = vm->part_count; i-- > 0;)
            if (vm->parts[i].desc->resume)
                vm->parts[i].desc->resume(vm->parts[i].opaque);
        vm->devices_paused = false;
        /* The guest's clock jumps over the pause; tell it so. */
        for (unsigned i = 0; i < vm->cfg.cpus; i++)
            hv_vcpu_tell_paused(vm->vcpus[i].hv);
    }
    pthread_mutex_lock(&vm->pause_lock);
    vm->pause_requested = false;
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
}

bool vm_paused(const struct vm *vm)
{
    return vm->devices_paused;
}

static int save_part(struct vm *vm, const struct vm_state_part *p, struct blob *out)
{
    size_t mark = blob_begin_record(out, STATE_DEVICE);
    uint16_t len = (uint16_t)strlen(p->name);
    struct state_io io = {.out = out, .version = p->desc->version, .mem = &vm->mem};
    int r;

    blob_put_u16(out, len);
    blob_put(out, p->name, len);
    blob_put_u32(out, p->desc->version);
    r = state_io_run(p->desc, p->opaque, &io, p->name);
    blob_end_record(out, mark);
    return r;
}

int vm_save_state(struct vm *vm, struct blob *out)
{
    const char *format = hv_state_format();
    size_t mark;
    int r;

    if (!vm->devices_paused)
        return err_plain(EBUSY, "the VM must be paused to save its state");
    blob_put_record(out, STATE_FORMAT, format, (uint32_t)strlen(format));
    mark = blob_begin_record(out, STATE_HV_VM);
    r = hv_vm_save(vm->hv, out);
    blob_end_record(out, mark);
    for (unsigned i = 0; r == 0 && i < vm->cfg.cpus; i++) {
        mark = blob_begin_record(out, STATE_VCPU);
        r = hv_vcpu_save(vm->vcpus[i].hv, out);
        blob_end_record(out, mark);
    }
    if (r == 0)
        r = vm_save_device_state(vm, out);
    return r;
}

static struct vm_state_part *find_part(struct vm *vm, const char *name)
{
    for (unsigned i = 0; i < vm->part_count; i++)
        if (strcmp(vm->parts[i].name, name) == 0)
            return &vm->parts[i];
    err_plain(EINVAL, "snapshot: state of a device this VM does not have (%s)", name);
    return NULL;
}

/* A device record's body (tag STATE_DEVICE, or STATE_DEVICE_V1 without the
 * version) into its device. */
static int restore_device(struct vm *vm, struct blob_reader *body, bool versioned,
                          uint64_t *restored)
{
    char name[VM_STATE_NAME_MAX];
    uint16_t len = blob_get_u16(body);
    struct state_io io = {.in = body, .mem = &vm->mem};
    struct vm_state_part *p;
    unsigned index;
    int r;

    if (len >= sizeof(name) || !blob_get(body, name, len))
        return err_plain(EINVAL, "snapshot: malformed device record (its name)");
    name[len] = 0;
    io.version = versioned ? blob_get_u32(body) : 1;
    if (body->failed)
        return err_plain(EINVAL, "snapshot: malformed device record (%s: no version)", name);
    if (!(p = find_part(vm, name)))
        return -EINVAL;
    if (io.version == 0 || io.version > p->desc->version)
        return err_plain(EINVAL, "snapshot: %s state is version %u; this smolvm reads up to "
                                 "version %u (a newer smolvm saved it)",
                         name, io.version, p->desc->version);
    index = (unsigned)(p - vm->parts);
    if (*restored & (1ull << index))
        return err_plain(EINVAL, "snapshot: %s saved twice", p->name);
    r = state_io_run(p->desc, p->opaque, &io, p->name);
    if (r < 0) {
        err_prefix("snapshot");
        return r;
    }
    *restored |= 1ull << index;
    return 0;
}

/* Once every record is in: each device acts on its restored state. */
static int devices_restored(struct vm *vm)
{
    for (unsigned i = 0; i < vm->part_count; i++) {
        const struct vm_state_part *p = &vm->parts[i];
        int r = p->desc->restored ? p->desc->restored(p->opaque) : 0;
        if (r < 0) {
            err_prefix("snapshot: %s", p->name);
            return r;
        }
    }
    return 0;
}

/* Device records of either framing; any other tag is unknown. */
static int restore_device_record(struct vm *vm, uint32_t tag, struct blob_reader *body,
                                 uint64_t *restored)
{
    if (tag != STATE_DEVICE && tag != STATE_DEVICE_V1)
        return err_plain(EINVAL, "snapshot: unknown state record 0x%x", tag);
    return restore_device(vm, body, tag == STATE_DEVICE, restored);
}

static int check_format(const struct blob_reader *body)
{
    const char *mine = hv_state_format();

    if (body->left == strlen(mine) && memcmp(body->p, mine, body->left) == 0)
        return 0;
    return err_plain(EINVAL, "snapshot: state written by another hypervisor backend ('%.*s'; "
                             "this is '%s')", (int)(body->left > 64 ? 64 : body->left),
                     (const char *)body->p, mine);
}

static int restore_record(struct vm *vm, uint32_t tag, struct blob_reader *body,
                          unsigned *vcpus, uint64_t *restored)
{
    switch (tag) {
    case STATE_FORMAT: return check_format(body);
    case STATE_HV_VM: return hv_vm_restore(vm->hv, body);
    case STATE_VCPU:
        if (*vcpus == vm->cfg.cpus)
            return err_plain(EINVAL, "snapshot: more vCPUs than its config says");
        return hv_vcpu_restore(vm->vcpus[(*vcpus)++].hv, body);
    default: return restore_device_record(vm, tag, body, restored);
    }
}

int vm_save_device_state(struct vm *vm, struct blob *out)
{
    int r = 0;
    for (unsigned i = 0; r == 0 && i < vm->part_count; i++)
        r = save_part(vm, &vm->parts[i], out);
    return r == 0 && out->failed ? err_set(ENOMEM, "VM state") : r;
}

int vm_restore_device_state(struct vm *vm, const void *state, size_t len)
{
    struct blob_reader in = blob_reader(state, len), body;
    uint64_t restored = 0;
    uint32_t tag;
    int r = 0;

    while (r == 0 && blob_next_record(&in, &tag, &body))
        r = restore_device_record(vm, tag, &body, &restored);
    if (r == 0 && in.failed)
        r = err_plain(EINVAL, "snapshot: truncated state");
    return r == 0 ? devices_restored(vm) : r;
}

int vm_restore_state(struct vm *vm, const void *state, size_t len)
{
    struct blob_reader in = blob_reader(state, len), body;
    uint64_t restored = 0;
    unsigned vcpus = 0;
    uint32_t tag;
    int r;

    if (!blob_next_record(&in, &tag, &body) || tag != STATE_FORMAT)
        return err_plain(EINVAL, "snapshot: no state format record");
    r = check_format(&body);
    while (r == 0 && blob_next_record(&in, &tag, &body))
        r = restore_record(vm, tag, &body, &vcpus, &restored);
    if (r < 0)
        return r;
    if (in.failed)
        return err_plain(EINVAL, "snapshot: truncated state");
    if (vcpus != vm->cfg.cpus)
        return err_plain(EINVAL, "snapshot: state of %u vCPUs, config says %u", vcpus,
                         vm->cfg.cpus);
    for (unsigned i = 0; i < vm->part_count; i++)
        if (!(restored & (1ull << i)))
            return err_plain(EINVAL, "snapshot: no state for %s", vm->parts[i].name);
    r = devices_restored(vm);
    for (unsigned i = 0; r == 0 && i < vm->cfg.cpus; i++)
        hv_vcpu_tell_paused(vm->vcpus[i].hv);
    return r;
}
