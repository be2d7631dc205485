/* NetBSD's light-weight processes: _lwp_create from a ucontext (every
 * register of the new thread, as getcontext gave it and the caller
 * changed it), _lwp_exit/_self/_kill, and _lwp_park/_lwp_unpark, a
 * one-token semaphore per LWP kept in a futex word. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "bsduser/internal.h"

/* NetBSD amd64 ucontext_t: uc_flags, uc_link, uc_sigmask (16), uc_stack
 * (24), then mcontext: __gregs[26], _mc_tlsbase, __fpregs[512]. */
#define UC_SIZE 784
#define UC_GREGS 56
#define UC_TLSBASE (UC_GREGS + 26 * 8)
enum { UC_TLSBASE_FLAG = 0x80000 }; /* uc_flags: _mc_tlsbase is set */
/* Its __gregs order. */
enum { G_RDI, G_RSI, G_RDX, G_RCX, G_R8, G_R9, G_R10, G_R11, G_R12, G_R13, G_R14, G_R15, G_RBP,
       G_RBX, G_RAX, G_GS, G_FS, G_ES, G_DS, G_TRAPNO, G_ERR, G_RIP, G_CS, G_RFLAGS, G_RSP, G_SS,
       G_COUNT };

/* getcontext(ucp): the caller's registers as they are at the call (it
 * returns 0 there, so %rax is 0 and carry clear). */
static long sys_getcontext(const long *a)
{
    uint8_t uc[880];
    ucontext_t now = *(ucontext_t *)bsd_context;
    now.uc_mcontext.gregs[REG_RAX] = 0;
    now.uc_mcontext.gregs[REG_EFL] &= ~1ll;
    bsd_context_save(uc, &now, *bsd_guest_fs());
    return bsd_copy_out((uint64_t)a[0], uc, UC_SIZE);
}

/* _lwp_create(ucp, flags, &new): a thread with every register of ucp. */
static long sys_lwp_create(const long *a)
{
    uint8_t uc[UC_SIZE];
    uint64_t gregs[G_COUNT], tls = 0;
    uint32_t flags;

    if (bsd_copy_in(uc, (uint64_t)a[0], sizeof(uc)) < 0)
        return -EFAULT;
    memcpy(&flags, uc, 4);
    memcpy(gregs, uc + UC_GREGS, sizeof(gregs));
    if (flags & UC_TLSBASE_FLAG)
        memcpy(&tls, uc + UC_TLSBASE, 8);
    struct bsd_guest_regs r = {
        .rip = gregs[G_RIP], .rsp = gregs[G_RSP], .fs = tls, .rdi = gregs[G_RDI],
        .rsi = gregs[G_RSI], .rdx = gregs[G_RDX], .rcx = gregs[G_RCX], .r8 = gregs[G_R8],
        .r9 = gregs[G_R9], .r10 = gregs[G_R10], .r11 = gregs[G_R11], .r12 = gregs[G_R12],
        .r13 = gregs[G_R13], .r14 = gregs[G_R14], .r15 = gregs[G_R15], .rbp = gregs[G_RBP],
        .rbx = gregs[G_RBX], .rax = gregs[G_RAX]};
    /* The id goes out as a 32-bit lwpid_t. */
    long id = bsd_thread_start(&r, 0, 0);
    if (id < 0)
        return id;
    int32_t lwp = (int32_t)id;
    return a[2] ? bsd_copy_out((uint64_t)a[2], &lwp, sizeof(lwp)) : 0;
}

static long sys_lwp_self(const long *a)
{
    (void)a;
    return bsd_thread_id();
}

static long sys_lwp_exit(const long *a)
{
    (void)a;
    bsd_thread_exit();
}

static long sys_lwp_kill(const long *a)
{
    int sig = bsd_linux_signal(a[1]);
    if (a[1] && !sig)
        return -EINVAL;
    return bsd_result(syscall(SYS_tgkill, getpid(), (pid_t)(a[0] - BSD_TID_BASE), sig));
}

/* (park tokens, _lwp_park and _lwp_unpark: bare.c) */

const struct bsd_handler bsd_lwp_calls[] = {
    {"netbsd:getcontext", sys_getcontext}, {"netbsd:_lwp_create", sys_lwp_create},
    {"netbsd:_lwp_self", sys_lwp_self}, {"netbsd:_lwp_exit", sys_lwp_exit},
    {"netbsd:_lwp_kill", sys_lwp_kill}, {"netbsd:___lwp_park60", bsd_lwp_park60},
    {"netbsd:_lwp_unpark", bsd_lwp_unpark},
};
const size_t bsd_lwp_call_count = sizeof(bsd_lwp_calls) / sizeof(bsd_lwp_calls[0]);
