/* What the parts of bsd-user share: the handler tables each part
 * contributes, guest memory access, and the per-thread block. */
#ifndef SMOLVM_BSDUSER_INTERNAL_H
#define SMOLVM_BSDUSER_INTERNAL_H

#include <stdbool.h>
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

/* Each part's table of calls, and its length. */
#define BSD_CALLS(part)                                                                        \
    extern const struct bsd_handler bsd_##part##_calls[];                                      \
    extern const size_t bsd_##part##_call_count
BSD_CALLS(thread);
BSD_CALLS(kqueue);
BSD_CALLS(lwp);
BSD_CALLS(signal);
BSD_CALLS(process);
BSD_CALLS(socket);
BSD_CALLS(ioctl);
BSD_CALLS(fsinfo);

/* A handler's result meaning "the registers are set already" (sigreturn):
 * neither %rax nor the carry flag is touched. */
#define BSD_JUSTRETURN (-100000L)

/* A descriptor the guest closes: if it was a kqueue, its notes go. */
void bsd_kqueue_forget(int fd);
/* A signal arrived (BSD number; async-signal-safe): kqueue notes on it
 * count it, whatever the guest's action or mask. */
void bsd_kqueue_signalled(int sig);
/* A kqueue note on signal sig comes (on) or goes: while one is there,
 * the signal is caught even where the guest ignores it. */
long bsd_signal_watch(int sig, bool on);

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

/* A BSD signal number as Linux's, 0 for none there. */
int bsd_linux_signal(long bsd);
/* A Linux errno as the guest's BSD's. */
int bsd_errno(int linux_errno);
/* Which BSD the guest is. */
enum bsd_os bsd_personality(void);

/* Every thread running guest code has an alternate signal stack aligned
 * to its size, starting with this block: the signal entry finds it from
 * the stack pointer alone, before it may touch the host's thread-local
 * storage (the guest's %fs base may be loaded). */
#define BSD_ALT_STACK_SIZE 0x40000
struct bsd_thread {
    uint64_t host_fs;  /* smolvm's thread pointer for this thread */
    uint64_t guest_fs; /* the guest's (sysarch AMD64_SET_FSBASE) */
};

/* This thread's block (*out, may be NULL): its alternate stack, signal
 * handling and Syscall User Dispatch; guest code may run on it from here. */
int bsd_thread_setup(struct bsd_thread **out) __attribute__((warn_unused_result));
/* The signal entry (set as every handler): switches %fs to smolvm's, calls
 * bsd_on_signal, switches to the %fs it returns. */
void bsd_signal_entry(int sig, void *info, void *context);
/* Answers a signal with the host's %fs in place; returns the %fs base to
 * go back with (the guest's when guest code was interrupted). */
uint64_t bsd_on_signal(int sig, void *info, void *context);

/* Sleeps while the 32-bit word at guest address word holds expect, until
 * woken or ts (NULL: none; relative, or absolute on the monotonic or the
 * real-time clock) passes: 0, -ETIMEDOUT, -EINTR, -EAGAIN. */
struct timespec;
long bsd_futex_wait(uint64_t word, uint32_t expect, const struct timespec *ts, bool absolute,
                    bool realtime, bool private_);

/* A guest thread's first registers. */
struct bsd_guest_regs {
    uint64_t rip, rsp, fs;
    uint64_t sigmask[2]; /* the creator's: a new thread starts with it */
    uint64_t rdi, rsi, rdx, rcx, r8, r9, r10, r11, r12, r13, r14, r15, rbp, rbx, rax;
};
/* Starts a guest thread on a host pthread with regs; its id is written
 * to child_tid and parent_tid (guest addresses, 0: none) before it runs.
 * Returns the id. */
long bsd_thread_start(const struct bsd_guest_regs *regs, uint64_t child_tid, uint64_t parent_tid);
/* Ends the calling guest thread (the last one ends the process). */
void bsd_thread_exit(void) __attribute__((noreturn));
/* The calling thread's id as the guest sees it. */
long bsd_thread_id(void);

/* Signals (signals.c). A host signal meant for the guest: delivered into
 * context now, or kept until the guest can take it; false when the guest
 * has no handler for it. */
#include <signal.h>
bool bsd_signal_arrived(int linux_sig, const siginfo_t *info, void *context, uint64_t *guest_fs);
/* SIGSEGV, SIGBUS, SIGILL, SIGFPE: a fault that cannot wait. */
bool bsd_fault_signal(int linux_sig);
/* Delivers a kept signal the guest's mask lets through, into the context
 * about to be resumed (at the end of each call). */
void bsd_signals_flush(void *context, uint64_t *guest_fs);
/* The calling thread's guest signal mask: old into out, in as the new
 * (either may be NULL). */
void bsd_signal_mask(uint64_t out[2], const uint64_t in[2]);
/* Linux's signal number as the guest's BSD's (0: none there). */
int bsd_signal_number(int linux_sig);
/* Whether --strace is on, and the --root sysroot (NULL: none): an exec'd
 * BSD program keeps both. */
bool bsd_tracing(void);
const char *bsd_root(void);
/* Every path argument of every call goes through bsd_path: it reads the
 * guest's string (at most PATH_MAX bytes, a bad pointer: NULL, EFAULT)
 * and applies the --root rule (QEMU's -L, extended to calls that make an
 * entry). An absolute path is taken from the sysroot R
 *   - when R/path exists (lstat: a dangling link there counts), or
 *   - for BSD_PATH_MAKE, when path does not exist on the host and R has
 *     its parent directory: the new entry goes where the next lookup of
 *     the same path will find it (with no such rule mkdir("/d") would make
 *     the host's /d, and the program could not see it in R afterwards);
 * otherwise it is the host's (/dev, /proc, /tmp where R has none).
 * Relative paths, and all paths without --root, are used as given. A
 * symlink's contents (BSD_PATH_CONTENT) are stored as given, never looked
 * up. --root is a lookup order, not a jail ("..", links, the host's
 * absolute paths all reach the host), as QEMU's -L. */
enum bsd_path_use {
    BSD_PATH_FIND,   /* an existing entry: open, stat, unlink, chdir, ... */
    BSD_PATH_MAKE,   /* an entry the call may create: O_CREAT, mkdir, rename's and
                        link's new name, symlink's, mkfifo, bind */
    BSD_PATH_CONTENT /* not a lookup: symlink's contents */
};
/* The host path for the guest's path at guest; buf: PATH_MAX bytes.
 * NULL: the guest pointer is bad (EFAULT). */
const char *bsd_path(uint64_t guest, char *buf, enum bsd_path_use use);
/* The same rule on a path already in smolvm's memory (an AF_UNIX
 * socket's): the host path, in buf (PATH_MAX bytes) or path itself. */
const char *bsd_root_lookup(const char *path, char *buf, enum bsd_path_use use);
/* In a handler: the guest path at value as the host's, in name (a local
 * buffer); a bad pointer returns -EFAULT from the handler. PATH_ARG finds
 * an existing entry, NEW_PATH_ARG names one the call may make. */
#define PATH_ARG_USE(name, value, use)                                                         \
    char name##_buf[PATH_MAX];                                                                 \
    const char *name = bsd_path((uint64_t)(value), name##_buf, use);                          \
    if (!name)                                                                                 \
        return -EFAULT
#define PATH_ARG(name, value) PATH_ARG_USE(name, value, BSD_PATH_FIND)
#define NEW_PATH_ARG(name, value) PATH_ARG_USE(name, value, BSD_PATH_MAKE)
#define LINK_CONTENT_ARG(name, value) PATH_ARG_USE(name, value, BSD_PATH_CONTENT)

/* Syscall User Dispatch on for the calling task (a thread, a forked child). */
int bsd_dispatch_on(void);
/* After fork: in the child only the caller's thread is left. */
void bsd_threads_forked(bool child);

/* The interrupted guest context (a Linux ucontext_t) as the guest BSD's
 * ucontext_t into uc (880 bytes of room), with the thread's mask. */
void bsd_context_save(uint8_t *uc, const void *context, uint64_t guest_fs);

/* In a handler: where the calling thread's guest %fs base is kept. */
uint64_t *bsd_guest_fs(void);

/* The registers of the guest's interrupted code, while its call is being
 * answered (a Linux ucontext_t). */
extern __thread void *bsd_context;

#endif
