/* Signals for the guest: its actions (sigaction), its per-thread mask and
 * alternate stack, and delivery as its BSD does it: a frame on the guest's
 * stack with a siginfo and a ucontext (each BSD's layout), the handler
 * called with (sig, &siginfo, &ucontext) and returning into a trampoline
 * (FreeBSD: a page of ours calling sigreturn; NetBSD: the one libc gave
 * __sigaction_sigtramp, calling setcontext(%r15)) that restores every
 * register from the (maybe changed) ucontext. A signal that interrupts smolvm's own code (a call
 * being answered) waits until the call returns to the guest; one the guest
 * masks waits until it unmasks it. Faults in guest code go to its handler
 * when it has one. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "bsduser/internal.h"

/* <sys/signal.h>, the same in both BSDs. */
enum { SA_ONSTACK_ = 0x1, SA_RESTART_ = 0x2, SA_RESETHAND_ = 0x4, SA_NODEFER_ = 0x10,
       SA_SIGINFO_ = 0x40, SIG_BLOCK_ = 1, SIG_UNBLOCK_ = 2, SIG_SETMASK_ = 3,
       SS_ONSTACK_ = 1, SS_DISABLE_ = 4, SIG_DFL_ = 0, SIG_IGN_ = 1 };
/* FreeBSD's frame: ucontext_t (880 bytes; mcontext at 16, 800 bytes) and
 * siginfo_t (80 bytes). */
enum { UC_SIZE = 880, UC_MCONTEXT = 16, MC_SIZE = 800, SI_SIZE = 80 };
/* mcontext_t fields. */
enum { MC_ONSTACK = 0, MC_RDI = 8, MC_RSI = 16, MC_RDX = 24, MC_RCX = 32, MC_R8 = 40, MC_R9 = 48,
       MC_RAX = 56, MC_RBX = 64, MC_RBP = 72, MC_R10 = 80, MC_R11 = 88, MC_R12 = 96,
       MC_R13 = 104, MC_R14 = 112, MC_R15 = 120, MC_TRAPNO = 128, MC_ADDR = 136,
       MC_FLAGS = 144, MC_ERR = 152, MC_RIP = 160, MC_CS = 168, MC_RFLAGS = 176, MC_RSP = 184,
       MC_SS = 192, MC_LEN = 200, MC_FPFORMAT = 208, MC_OWNEDFP = 216, MC_FPSTATE = 224,
       MC_FSBASE = 736, MC_GSBASE = 744 };
enum { MC_FPFMT_XMM = 0x10002, MC_FPOWNED_FPU = 0x20001, MC_HASBASES = 0x2 };

/* Per thread: the guest's mask, its signals waiting, its alternate stack. */
static __thread uint64_t mask[2], pending[2];
static __thread siginfo_t pending_info[BSD_SIGNALS];
static __thread struct {
    uint64_t sp, size;
    int32_t flags;
} altstack = {0, 0, SS_DISABLE_};

static bool in_set(const uint64_t *set, int sig)
{
    return (set[(sig - 1) / 64] >> ((sig - 1) % 64)) & 1;
}

/* One instruction: a signal handler that interrupts it (and marks
 * another signal pending) loses nothing. */
static void set_bit(uint64_t *set, int sig, bool on)
{
    uint64_t bit = 1ull << ((sig - 1) % 64);
    if (on)
        __atomic_fetch_or(&set[(sig - 1) / 64], bit, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&set[(sig - 1) / 64], ~bit, __ATOMIC_RELAXED);
}

/* Linux's number back to the guest's (the maps are one-to-one). */
int bsd_signal_number(int linux_sig)
{
    for (int s = 1; s < 65; s++)
        if (bsd_linux_signal(s) == linux_sig)
            return s;
    return 0;
}

bool bsd_fault_signal(int linux_sig)
{
    return linux_sig == SIGSEGV || linux_sig == SIGBUS || linux_sig == SIGILL ||
           linux_sig == SIGFPE;
}

/* Signals smolvm keeps its own handler on (faults and system calls). */
static bool ours(int linux_sig)
{
    return linux_sig == SIGSYS || bsd_fault_signal(linux_sig);
}

/* The trampoline page: a handler returns onto it with %rsp at the
 * ucontext; it calls sigreturn(ucontext). */
static int make_trampoline(void)
{
    /* mov %rsp,%rdi; mov $417,%eax (SYS_sigreturn); syscall; hlt */
    static const uint8_t code[] = {0x48, 0x89, 0xe7, 0xb8, 0xa1, 0x01, 0x00, 0x00, 0x0f, 0x05, 0xf4};
    if (bsd_proc->trampoline)
        return 0;
    uint64_t at = bsd_guest_map(4096);
    void *p = mmap((void *)at, 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    memcpy(p, code, sizeof(code));
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) < 0)
        return -errno;
    bsd_proc->trampoline = at;
    return 0;
}

/* ---- the calls ---- */

/* FreeBSD's struct sigaction: handler, int flags, sigset mask (32 bytes);
 * NetBSD's: handler, sigset mask, int flags. */
static void get_action(const uint8_t *b, struct bsd_action *a)
{
    bool netbsd = bsd_personality() == BSD_NETBSD;
    memcpy(&a->handler, b, 8);
    memcpy(&a->flags, b + (netbsd ? 24 : 8), 4);
    memcpy(a->mask, b + (netbsd ? 8 : 12), 16);
}

static void put_action(uint8_t *b, const struct bsd_action *a)
{
    bool netbsd = bsd_personality() == BSD_NETBSD;
    memset(b, 0, 32);
    memcpy(b, &a->handler, 8);
    memcpy(b + (netbsd ? 24 : 8), &a->flags, 4);
    memcpy(b + (netbsd ? 8 : 12), a->mask, 16);
}

/* kqueue notes on each signal (EVFILT_SIGNAL, bsd_proc->watchers): they
 * count it even while the guest ignores it, so then smolvm catches it and
 * drops it. */

static bool ignored_by_default(int linux_sig)
{
    return linux_sig == SIGCHLD || linux_sig == SIGURG || linux_sig == SIGWINCH ||
           linux_sig == SIGCONT;
}

static long install(int sig, const struct bsd_action *a)
{
    int host = bsd_linux_signal(sig);
    /* Ours stay: the dispatcher looks the action up. */
    if (!host || ours(host))
        return 0;
    struct sigaction sa = {.sa_flags = SA_SIGINFO | SA_ONSTACK};
    bool counted = bsd_proc->watchers[sig] && (a->handler == SIG_IGN_ || ignored_by_default(host));
    if ((a->handler == SIG_DFL_ || a->handler == SIG_IGN_) && !counted)
        sa.sa_handler = a->handler == SIG_DFL_ ? SIG_DFL : SIG_IGN;
    else
        sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))bsd_signal_entry;
    if (a->flags & SA_RESTART_)
        sa.sa_flags |= SA_RESTART;
    return sigaction(host, &sa, NULL) < 0 ? -errno : 0;
}

static long sys_sigaction(const long *a)
{
    int sig = (int)a[0];
    uint8_t b[32];
    struct bsd_action now;

    if (sig < 1 || sig >= BSD_SIGNALS || (a[1] && (bsd_linux_signal(sig) == SIGKILL ||
                                                    bsd_linux_signal(sig) == SIGSTOP)))
        return -EINVAL;
    if (a[1] && bsd_copy_in(b, (uint64_t)a[1], sizeof(b)) < 0)
        return -EFAULT;
    if (a[2]) {
        put_action(b + 0, &bsd_proc->actions[sig]);
        if (bsd_copy_out((uint64_t)a[2], b, sizeof(b)) < 0)
            return -EFAULT;
        if (a[1] && bsd_copy_in(b, (uint64_t)a[1], sizeof(b)) < 0)
            return -EFAULT;
    }
    if (!a[1])
        return 0;
    get_action(b, &now);
    /* NetBSD's __sigaction_sigtramp(sig, act, oact, tramp, version). */
    now.tramp = bsd_personality() == BSD_NETBSD ? (uint64_t)a[3] : 0;
    if (bsd_personality() == BSD_NETBSD && now.handler > SIG_IGN_ &&
        (!now.tramp || now.tramp >= BSDUSER_GUEST_LIMIT))
        return -EINVAL;
    if (now.handler > SIG_IGN_ && make_trampoline() < 0)
        return -ENOMEM;
    bsd_proc->actions[sig] = now;
    return install(sig, &now);
}

long bsd_signal_watch(int sig, bool on)
{
    if (sig < 1 || sig >= BSD_SIGNALS || !bsd_linux_signal(sig))
        return -EINVAL;
    bsd_proc->watchers[sig] += on ? 1 : -1;
    return install(sig, &bsd_proc->actions[sig]);
}

static long sys_sigprocmask(const long *a)
{
    uint64_t set[2], old[2] = {mask[0], mask[1]};
    if (a[1]) {
        if (bsd_copy_in(set, (uint64_t)a[1], sizeof(set)) < 0)
            return -EFAULT;
        for (int i = 0; i < 2; i++)
            mask[i] = a[0] == SIG_BLOCK_ ? mask[i] | set[i]
                    : a[0] == SIG_UNBLOCK_ ? mask[i] & ~set[i] : set[i];
        if (a[0] < SIG_BLOCK_ || a[0] > SIG_SETMASK_) {
            memcpy(mask, old, sizeof(old));
            return -EINVAL;
        }
        /* SIGKILL and SIGSTOP cannot be masked. */
        set_bit(mask, bsd_signal_number(SIGKILL), false);
        set_bit(mask, bsd_signal_number(SIGSTOP), false);
    }
    return a[2] ? bsd_copy_out((uint64_t)a[2], old, sizeof(old)) : 0;
}

static long sys_sigaltstack(const long *a)
{
    __typeof__(altstack) now, old = altstack;
    if (a[0]) {
        if (bsd_copy_in(&now, (uint64_t)a[0], sizeof(now)) < 0)
            return -EFAULT;
        if (!(now.flags & SS_DISABLE_) && now.size < 2048)
            return -ENOMEM;
        altstack = now;
    }
    return a[1] ? bsd_copy_out((uint64_t)a[1], &old, sizeof(old)) : 0;
}

static long sys_sigpending(const long *a)
{
    return bsd_copy_out((uint64_t)a[0], pending, sizeof(pending));
}

/* ---- delivery ---- */

/* ---- the guest's ucontext_t and siginfo_t, per BSD ---- */

struct reg_slot {
    int linux_reg;
    size_t at; /* in the ucontext */
};

#define FB(r, mc) {REG_##r, UC_MCONTEXT + MC_##mc}
static const struct reg_slot freebsd_regs[] = {
    FB(RDI, RDI), FB(RSI, RSI), FB(RDX, RDX), FB(RCX, RCX), FB(R8, R8),   FB(R9, R9),
    FB(RAX, RAX), FB(RBX, RBX), FB(RBP, RBP), FB(R10, R10), FB(R11, R11), FB(R12, R12),
    FB(R13, R13), FB(R14, R14), FB(R15, R15), FB(RIP, RIP), FB(EFL, RFLAGS), FB(RSP, RSP),
    FB(ERR, ERR), FB(TRAPNO, TRAPNO)};
/* NetBSD's __gregs[] order, from 56. */
#define NB(r, i) {REG_##r, 56 + 8 * (i)}
static const struct reg_slot netbsd_regs[] = {
    NB(RDI, 0),  NB(RSI, 1),  NB(RDX, 2),  NB(RCX, 3),  NB(R8, 4),   NB(R9, 5),
    NB(R10, 6),  NB(R11, 7),  NB(R12, 8),  NB(R13, 9),  NB(R14, 10), NB(R15, 11),
    NB(RBP, 12), NB(RBX, 13), NB(RAX, 14), NB(TRAPNO, 19), NB(ERR, 20), NB(RIP, 21),
    NB(EFL, 23), NB(RSP, 24)};

struct context_format {
    size_t size, si_size;
    const struct reg_slot *regs;
    size_t nregs;
    size_t mask_at, fp_at, fs_at;
    /* What else the format keeps (lengths, flags). */
    void (*mark)(uint8_t *uc, bool has_fp);
    /* Whether the context carries the registers, the FPU, the %fs base,
     * the mask (NetBSD's uc_flags; FreeBSD's always do). */
    uint32_t (*parts)(const uint8_t *uc);
    void (*siginfo)(uint8_t *si, int sig, const siginfo_t *info);
};
enum { HAS_CPU = 1, HAS_FPU = 2, HAS_FS = 4, HAS_MASK = 8 };

static void put64(uint8_t *b, size_t at, uint64_t v)
{
    memcpy(b + at, &v, 8);
}

static uint64_t get64(const uint8_t *b, size_t at)
{
    uint64_t v;
    memcpy(&v, b + at, 8);
    return v;
}

static void freebsd_mark(uint8_t *uc, bool has_fp)
{
    uint8_t *mc = uc + UC_MCONTEXT;
    put64(mc, MC_CS, 0x43);
    put64(mc, MC_SS, 0x3b);
    put64(mc, MC_LEN, MC_SIZE);
    memcpy(mc + MC_FLAGS, &(uint32_t){MC_HASBASES}, 4);
    if (has_fp) {
        put64(mc, MC_FPFORMAT, MC_FPFMT_XMM);
        put64(mc, MC_OWNEDFP, MC_FPOWNED_FPU);
    }
}

static uint32_t freebsd_parts(const uint8_t *uc)
{
    uint32_t flags;
    memcpy(&flags, uc + UC_MCONTEXT + MC_FLAGS, 4);
    return HAS_CPU | HAS_MASK |
           (get64(uc + UC_MCONTEXT, MC_FPFORMAT) == MC_FPFMT_XMM ? HAS_FPU : 0) |
           ((flags & MC_HASBASES) && get64(uc + UC_MCONTEXT, MC_FSBASE) ? HAS_FS : 0);
}

/* FreeBSD's siginfo_t: signo, errno, code, pid, uid, status, addr, value (80 bytes). */
static void freebsd_siginfo(uint8_t *si, int sig, const siginfo_t *info)
{
    int32_t head[6] = {sig, 0, info->si_code > 0 ? info->si_code : 0x10001 /* SI_USER */,
                       info->si_pid, (int32_t)info->si_uid, 0};
    memcpy(si, head, sizeof(head));
    put64(si, 24, (uint64_t)info->si_addr);
}

/* NetBSD's uc_flags. */
enum { NB_SIGMASK = 0x1, NB_STACK = 0x2, NB_CPU = 0x4, NB_FPU = 0x8, NB_TLSBASE = 0x80000 };

static void netbsd_mark(uint8_t *uc, bool has_fp)
{
    uint32_t flags = NB_SIGMASK | NB_STACK | NB_CPU | NB_TLSBASE | (has_fp ? NB_FPU : 0);
    memcpy(uc, &flags, 4);
}

static uint32_t netbsd_parts(const uint8_t *uc)
{
    uint32_t flags;
    memcpy(&flags, uc, 4);
    return (flags & NB_CPU ? HAS_CPU : 0) | (flags & NB_FPU ? HAS_FPU : 0) |
           (flags & NB_TLSBASE ? HAS_FS : 0) | (flags & NB_SIGMASK ? HAS_MASK : 0);
}

/* NetBSD's siginfo_t: signo, code, errno, pad, then the reason (pid and
 * uid, or the fault address) at 16: 128 bytes. */
static void netbsd_siginfo(uint8_t *si, int sig, const siginfo_t *info)
{
    int32_t head[6] = {sig, info->si_code > 0 ? info->si_code : 0 /* SI_USER */, 0, 0,
                       info->si_pid, (int32_t)info->si_uid};
    memcpy(si, head, sizeof(head));
    if (info->si_code > 0)
        put64(si, 16, (uint64_t)info->si_addr);
}

static const struct context_format freebsd_format = {
    UC_SIZE, SI_SIZE, freebsd_regs, sizeof(freebsd_regs) / sizeof(freebsd_regs[0]),
    0, UC_MCONTEXT + MC_FPSTATE, UC_MCONTEXT + MC_FSBASE, freebsd_mark, freebsd_parts,
    freebsd_siginfo};
static const struct context_format netbsd_format = {
    784, 128, netbsd_regs, sizeof(netbsd_regs) / sizeof(netbsd_regs[0]),
    16, 272, 264, netbsd_mark, netbsd_parts, netbsd_siginfo};
#define MAX_UC 880
#define MAX_SI 128

static const struct context_format *format(void)
{
    return bsd_personality() == BSD_NETBSD ? &netbsd_format : &freebsd_format;
}

void bsd_context_save(uint8_t *uc, const void *context, uint64_t guest_fs)
{
    const struct context_format *f = format();
    const ucontext_t *host = context;
    memset(uc, 0, f->size);
    memcpy(uc + f->mask_at, mask, 16);
    for (size_t i = 0; i < f->nregs; i++)
        put64(uc, f->regs[i].at, (uint64_t)host->uc_mcontext.gregs[f->regs[i].linux_reg]);
    put64(uc, f->fs_at, guest_fs);
    if (host->uc_mcontext.fpregs)
        memcpy(uc + f->fp_at, host->uc_mcontext.fpregs, 512);
    f->mark(uc, host->uc_mcontext.fpregs != NULL);
}

/* The flags a program may change: the arithmetic ones, TF, DF, OF, AC. */
#define USER_FLAGS 0x40dd5ull

static void load_context(const uint8_t *uc, ucontext_t *host, uint64_t *guest_fs)
{
    const struct context_format *f = format();
    uint32_t parts = f->parts(uc);
    greg_t *g = host->uc_mcontext.gregs;
    uint64_t flags = (uint64_t)g[REG_EFL];
    for (size_t i = 0; (parts & HAS_CPU) && i < f->nregs; i++)
        g[f->regs[i].linux_reg] = (greg_t)get64(uc, f->regs[i].at);
    if (parts & HAS_CPU)
        g[REG_EFL] = (greg_t)((flags & ~USER_FLAGS) | ((uint64_t)g[REG_EFL] & USER_FLAGS));
    if ((parts & HAS_FPU) && host->uc_mcontext.fpregs) {
        uint32_t mxcsr_mask = host->uc_mcontext.fpregs->mxcr_mask;
        memcpy(host->uc_mcontext.fpregs, uc + f->fp_at, 512);
        /* Reserved MXCSR bits would fault the return to the guest. */
        host->uc_mcontext.fpregs->mxcsr &= mxcsr_mask ? mxcsr_mask : 0xffbf;
        host->uc_mcontext.fpregs->mxcr_mask = mxcsr_mask;
    }
    if ((parts & HAS_FS) && get64(uc, f->fs_at))
        *guest_fs = get64(uc, f->fs_at);
    if (parts & HAS_MASK)
        memcpy(mask, uc + f->mask_at, 16);
}

/* Builds the frame on the guest's stack and points the context at the
 * handler; false when the frame cannot be written (the guest's stack is
 * gone: it dies as FreeBSD kills it). */
static bool deliver(int sig, const siginfo_t *info, ucontext_t *host, uint64_t *guest_fs)
{
    const struct context_format *f = format();
    struct bsd_action *a = &bsd_proc->actions[sig];
    greg_t *g = host->uc_mcontext.gregs;
    uint64_t sp = (uint64_t)g[REG_RSP];
    bool on_alt = altstack.sp && sp >= altstack.sp && sp < altstack.sp + altstack.size;
    uint8_t uc[MAX_UC], si[MAX_SI] = {0};
    /* FreeBSD's handlers return into our trampoline (sigreturn); NetBSD's
     * into the one libc gave sigaction, which calls setcontext(%r15). */
    uint64_t ret = bsd_personality() == BSD_NETBSD ? a->tramp : bsd_proc->trampoline;

    if ((a->flags & SA_ONSTACK_) && !(altstack.flags & SS_DISABLE_) && !on_alt)
        sp = altstack.sp + altstack.size;
    sp -= 128; /* the interrupted code's red zone */
    uint64_t si_at = (sp - f->si_size) & ~15ull, uc_at = (si_at - f->size) & ~63ull;
    uint64_t frame = uc_at - 8; /* the return address: as after a call */
    bsd_context_save(uc, host, *guest_fs);
    f->siginfo(si, sig, info);
    if (!ret || bsd_copy_out(si_at, si, f->si_size) < 0 || bsd_copy_out(uc_at, uc, f->size) < 0 ||
        bsd_copy_out(frame, &ret, 8) < 0)
        return false;
    for (int i = 0; i < 2; i++)
        mask[i] |= a->mask[i];
    if (!(a->flags & SA_NODEFER_))
        set_bit(mask, sig, true);
    g[REG_RIP] = (greg_t)a->handler;
    g[REG_RSP] = (greg_t)frame;
    g[REG_RDI] = sig;
    g[REG_RSI] = (greg_t)si_at;
    g[REG_RDX] = (greg_t)uc_at;
    g[REG_R15] = (greg_t)uc_at;
    g[REG_RAX] = 0;
    g[REG_EFL] &= ~(greg_t)0x400; /* DF clear, as the ABI wants */
    if (a->flags & SA_RESETHAND_)
        bsd_proc->actions[sig].handler = SIG_DFL_;
    return true;
}

/* Signals waiting that the mask now lets through, into the guest
 * context about to be resumed. */
void bsd_signals_flush(void *context, uint64_t *guest_fs)
{
    for (int sig = 1; sig < BSD_SIGNALS; sig++)
        if (in_set(pending, sig) && !in_set(mask, sig)) {
            set_bit(pending, sig, false);
            bsd_thread_signals_kept(pending[0] || pending[1]);
            if (bsd_proc->actions[sig].handler > SIG_IGN_ &&
                !deliver(sig, &pending_info[sig], context, guest_fs))
                _exit(128 + SIGSEGV);
            return; /* one at a time: the handler's return brings the next */
        }
}

/* A host signal for the guest: delivered now when guest code was running
 * and the guest does not mask it, else kept for later. false: no handler
 * of the guest's (the caller acts as the default would). */
bool bsd_signal_arrived(int linux_sig, const siginfo_t *info, void *context, uint64_t *guest_fs)
{
    int sig = bsd_signal_number(linux_sig);
    const greg_t *g = ((ucontext_t *)context)->uc_mcontext.gregs;
    bool guest_code = (uint64_t)g[REG_RIP] < BSDUSER_GUEST_LIMIT &&
                      !bsd_direct_pending((uint64_t)g[REG_RIP], (uint64_t)g[REG_RAX]);

    if (sig)
        bsd_kqueue_signalled(sig);
    if (!sig || bsd_proc->actions[sig].handler <= SIG_IGN_)
        return false;
    bool fault = bsd_fault_signal(linux_sig);
    if (fault && (!guest_code || in_set(mask, sig)))
        return false; /* a fault that cannot wait: the default */
    if (!fault && (!guest_code || in_set(mask, sig))) {
        pending_info[sig] = *info;
        set_bit(pending, sig, true);
        bsd_thread_signals_kept(true);
        return true;
    }
    if (!deliver(sig, info, context, guest_fs))
        return false;
    return true;
}

/* sigreturn(ucontext) on FreeBSD, setcontext(ucontext) on NetBSD: every
 * register back from the (maybe changed) context; the call's own result
 * is none (the registers are the result). */
static long sys_sigreturn(const long *a)
{
    const struct context_format *f = format();
    uint8_t uc[MAX_UC];
    if (bsd_copy_in(uc, (uint64_t)a[0], f->size) < 0)
        return -EFAULT;
    for (size_t i = 0; i < f->nregs; i++)
        if (f->regs[i].linux_reg == REG_RIP && get64(uc, f->regs[i].at) >= BSDUSER_GUEST_LIMIT)
            return -EINVAL;
    load_context(uc, bsd_context, bsd_guest_fs());
    return BSD_JUSTRETURN;
}

void bsd_signal_mask(uint64_t out[2], const uint64_t in[2])
{
    if (out)
        memcpy(out, mask, sizeof(mask));
    if (in)
        memcpy(mask, in, sizeof(mask));
}

const struct bsd_handler bsd_signal_calls[] = {
    {"sigaction", sys_sigaction}, {"sigprocmask", sys_sigprocmask},
    {"sigaltstack", sys_sigaltstack}, {"sigpending", sys_sigpending},
    {"freebsd:sigreturn", sys_sigreturn}, {"netbsd:setcontext", sys_sigreturn},
    {"netbsd:__sigprocmask14", sys_sigprocmask}, {"netbsd:__sigaltstack14", sys_sigaltstack},
    {"netbsd:__sigaction_sigtramp", sys_sigaction},
};
const size_t bsd_signal_call_count = sizeof(bsd_signal_calls) / sizeof(bsd_signal_calls[0]);
