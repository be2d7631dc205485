/* Threads made ahead (confine.h): a spare's VMM waits for its name with a
 * thread of each kind its machine will most likely want already made,
 * its filter loaded. Loading one is the kernel's work that user space
 * cannot make cheaper (it checks the program, compiles it, and runs it
 * for every call number to know which it may allow without running it
 * again): 1.4 ms a thread in the nested L1, 8.4 ms of an API start's
 * 51 ms before these. Nothing of the machine's is in them: they wait
 * for the function a start hands them, as a new thread would run it. */
#include "confine/confine.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "confine/jail.h"
#include "util/trace.h"

#define THREADS_AHEAD_MAX 8

struct thread_ahead {
    pthread_t thread;
    enum confine_thread kind;
    void *(*fn)(void *); /* handed by confine_thread_start(); NULL: waits */
    void *arg;
    bool ready, taken, failed;
    bool drop_capabilities;
};

static struct thread_ahead ahead[THREADS_AHEAD_MAX];
static unsigned ahead_count;
static bool ending;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;

/* What a thread of its kind is called until its work names it (the
 * violation line does; /proc keeps this: renaming is not a call its
 * filter allows). */
static void name_ahead(const struct thread_ahead *t, unsigned index, char name[16])
{
    static const char *const names[CONFINE_THREAD_KINDS] = {
        [CONFINE_VCPU] = "vcpu", [CONFINE_DEVICE] = "virtio-io", [CONFINE_VSOCK] = "virtio-vsock",
        [CONFINE_FS] = "virtio-fs", [CONFINE_CONSOLE] = "console", [CONFINE_VMM] = "smolvm-vmm",
        [CONFINE_MEMORY] = "memory",
    };
    if (t->kind == CONFINE_VCPU)
        snprintf(name, 16, "vcpu%u", index); /* vm_run() takes them in order */
    else
        snprintf(name, 16, "%s", names[t->kind] ? names[t->kind] : "smolvm");
}

static void *wait_for_work(void *arg)
{
    struct thread_ahead *t = arg;
    char name[16];
    unsigned index = 0;

    for (struct thread_ahead *o = ahead; o < t; o++)
        index += o->kind == t->kind;
    name_ahead(t, index, name);
    /* The process's capabilities (a jailed VMM's, in its user namespace,
     * until its root is built) are each thread's own: dropped here, as
     * the main thread drops its own later. */
    bool fit = !t->drop_capabilities || jail_drop_capabilities() == 0;
    if (fit)
        confine_thread_ahead(t->kind, name);
    pthread_mutex_lock(&lock);
    t->failed = !fit;
    t->ready = true;
    pthread_cond_broadcast(&changed);
    while (fit && !t->fn && !ending)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    return t->fn ? t->fn(t->arg) : NULL;
}

void confine_threads_ahead(const unsigned counts[CONFINE_THREAD_KINDS], bool drop_capabilities)
{
    uint64_t start = trace_now_us();

    if (confine_seccomp_mode() == CONFINE_SECCOMP_OFF)
        return;
    for (int kind = 0; kind < CONFINE_THREAD_KINDS; kind++)
        for (unsigned i = 0; i < counts[kind] && ahead_count < THREADS_AHEAD_MAX; i++) {
            struct thread_ahead *t = &ahead[ahead_count];
            *t = (struct thread_ahead){.kind = kind, .drop_capabilities = drop_capabilities};
            if (pthread_create(&t->thread, NULL, wait_for_work, t) == 0)
                ahead_count++;
        }
    /* Each ready (its filter loaded) before the name can come: on one
     * CPU, one still loading would take it from the start. */
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < ahead_count; i++)
        while (!ahead[i].ready)
            pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    trace_add_count(TRACE_SECCOMP_AHEAD_US, trace_now_us() - start);
}

int confine_thread_start(pthread_t *thread, enum confine_thread kind, void *(*fn)(void *),
                         void *arg)
{
    struct thread_ahead *t = NULL;

    pthread_mutex_lock(&lock);
    for (unsigned i = 0; !ending && i < ahead_count && !t; i++)
        if (ahead[i].kind == kind && !ahead[i].taken && !ahead[i].failed)
            t = &ahead[i];
    if (t) {
        t->taken = true;
        t->arg = arg;
        t->fn = fn;
        pthread_cond_broadcast(&changed);
    }
    pthread_mutex_unlock(&lock);
    if (!t)
        return pthread_create(thread, NULL, fn, arg);
    *thread = t->thread;
    return 0;
}

void confine_threads_ahead_end(void)
{
    pthread_mutex_lock(&lock);
    ending = true;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    for (unsigned i = 0; i < ahead_count; i++)
        if (!ahead[i].taken)
            pthread_join(ahead[i].thread, NULL);
}
