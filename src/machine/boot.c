/* A machine's life: booted from a config here, started from a bundle in
 * start.c, saved in save.c; destroyed here. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "bundle/sections.h"
#include "machine/cache.h"
#include "machine/internal.h"
#include "machine/ram_faults.h"
#include "machine/workingset.h"
#include "util/err.h"

struct vm *machine_vm(struct machine *m)
{
    return m->vm;
}

bool machine_resumed(const struct machine *m)
{
    return m->source && bundle_has_state(m->source);
}

/* A migrated VM's teardown (its RAM unmapped, the hypervisor's VM freed,
 * the process's exit) ran for 400 ms in a one-CPU nested L1 right as the
 * destination there resumed the guest, and took 119 ms of that CPU
 * before the guest's first line (bench/migrate, traced). */
static void yield_to_others(void)
{
    struct sched_param none = {0};

    pthread_setschedparam(pthread_self(), SCHED_IDLE, &none);
}

void machine_handed_over(struct machine *m)
{
    m->handed_over = true;
    yield_to_others(); /* from the hand-over on, not once the answer went */
}

void machine_destroy(struct machine *m)
{
    if (!m)
        return;
    if (m->handed_over)
        yield_to_others();
    if (m->recorder || m->faults) /* no call from a vCPU under way past this */
        console_on_next_output(vm_console(m->vm), NULL, NULL);
    working_set_recorder_stop(m->recorder);
    /* A guest that ran: its RAM's cache is finished first, so the next
     * start maps it even when this one was short. */
    if (m->faults && m->vm && ram_faults_complete(m->faults) < 0)
        err_clear();
    ram_faults_stop(m->faults);
    machine_memory_cache_published(m->publisher);
    free(m->working_set);
    free(m->known_working_set);
    vm_destroy(m->vm);
    vm_config_release(&m->cfg);
    free(m->dir);
    bundle_chains_release(&m->chains);
    bundle_close(m->source);
    free(m);
}

int machine_boot(const struct vm_config *cfg, struct machine **out)
{
    struct machine *m = calloc(1, sizeof(*m));
    int r;

    if (!m)
        return err_set(ENOMEM, "machine");
    m->cfg = *cfg;
    m->cfg.owns_strings = false;
    r = vm_create(&m->cfg, &m->vm);
    if (r < 0) {
        free(m);
        return r;
    }
    *out = m;
    return 0;
}
