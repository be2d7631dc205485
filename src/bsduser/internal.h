/* What the parts of bsd-user share: the handler tables each part
 * contributes, guest memory access, and the per-thread block. */
#ifndef SMOLVM_BSDUSER_INTERNAL_H
#define SMOLVM_BSDUSER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "bsduser/bsduser.h"

/* Arguments as the guest passed them (a[6]: a seventh from its stack);
 * returns a result, or a negative Linux errno. */
typedef long (*bsd_handler_fn)(const long *a);

/* A call by name ("name" for every BSD, "freebsd:name" or "netbsd:name"
 * for one's own way). */
struct bsd_handler {
    const char *name;
    bsd_handler_fn fn;
};

extern const struct bsd_handler bsd_thread_calls[];
extern const size_t bsd_thread_call_count;
extern const struct bsd_handler bsd_kqueue_calls[];
extern const size_t bsd_kqueue_call_count;

/* Guest memory through the kernel: a bad pointer is -EFAULT, never a
 * fault in smolvm. */
long bsd_copy_in(void *to, uint64_t from, size_t len);
long bsd_copy_out(uint64_t to, const void *from, size_t len);

/* A Linux call's result: the value, or -errno. */
static inline long bsd_result(long r)
{
    extern int *__errno_location(void);
    return r < 0 ? -*__errno_location() : r;
}

/* A FreeBSD signal number as Linux's, 0 for none there. */
int bsd_linux_signal(long bsd);

/* Every thread running guest code has an alternate signal stack aligned
 * to its size, starting with this block: the signal entry finds it from
 * the stack pointer alone, before it may touch the host's thread-local
 * storage (the guest's %fs base may be loaded). */
#define BSD_ALT_STACK_SIZE 0x40000
struct bsd_thread {
    uint64_t host_fs;  /* smolvm's thread pointer for this thread */
    uint64_t guest_fs; /* the guest's (sysarch AMD64_SET_FSBASE) */
};

/* This thread's block: its alternate stack, signal handling and Syscall
 * User Dispatch; guest code may run on it from here on. */
int bsd_thread_setup(void) __attribute__((warn_unused_result));
/* The signal entry (set as every handler): switches %fs to smolvm's, calls
 * bsd_on_signal, switches to the %fs it returns. */
void bsd_signal_entry(int sig, void *info, void *context);
/* Answers a signal with the host's %fs in place; returns the %fs base to
 * go back with (the guest's when guest code was interrupted). */
uint64_t bsd_on_signal(int sig, void *info, void *context);

#endif
