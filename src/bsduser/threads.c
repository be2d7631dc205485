/* Guest threads and what they need: each guest thread runs on a host
 * pthread (so smolvm's own code keeps its thread-local storage), with its
 * own alternate signal stack and Syscall User Dispatch; the %fs base is
 * swapped between the guest's TLS and smolvm's at every signal entry and
 * exit. thr_new/thr_exit/thr_kill, sysarch's fs base (_umtx_op on futexes: bare.c),
 * and the signal-state calls a runtime makes at start. */
#include <elf.h>
#include <errno.h>
#include <stddef.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bsduser/freebsd_abi.h"
#include "bsduser/internal.h"

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_ON 1
#endif
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define ARCH_SET_GS 0x1001
#define STR(x) #x
#define XSTR(x) STR(x)

/* ---- signal entry: %fs first, C after ---- */

/* The kernel calls this on the thread's alternate stack (every handler is
 * SA_ONSTACK); the block at the stack's aligned bottom holds the host %fs.
 * With FSGSBASE (Linux 5.9+ lets user space use it) %fs is swapped by
 * wrfsbase; without, by arch_prctl, which clobbers rax, rcx, r11 only.
 * The %fs base at entry goes to bsd_on_signal too: a signal that
 * interrupts smolvm's own code must return with it, as it found it. That
 * code may be this entry's own last steps (or a new thread's first ones)
 * after the guest's %fs is loaded and before guest code runs: the kernel's
 * sigreturn does not restore %fs, so returning there with the host's would
 * resume the guest on smolvm's TLS (Go then reads its g from the wrong
 * place: a nil g, SIGSEGV at 0x10). */
/*
 * Without FSGSBASE each arch_prctl is a system call, most of a guest call's
 * cost; so none is made that changes nothing: when guest code was
 * interrupted, the %fs base is the block's guest_fs (the guest's base
 * changes only through the calls that record it there, and every return
 * to guest code loads it), so it is not asked for; and a switch to the
 * base already loaded (a guest that never set its own runs on smolvm's)
 * is skipped. */
/*
 * A direct call (bsd_direct_calls) is made here, before any of that: its
 * arguments from the guest's registers, its result (or the BSD errno and
 * the carry flag) into them, and no C at all, so no %fs switch. Only when
 * no signal is kept for the guest: a signal that comes during the call
 * (kept, as it interrupts smolvm's code) is then delivered by the C path
 * entered as signal 0 ("the call is answered: deliver what is kept").
 */
#define UC_R8 40 /* offsetof(ucontext_t, uc_mcontext.gregs[REG_...]) */
#define UC_R9 48
#define UC_R10 56
#define UC_RDI 104
#define UC_RSI 112
#define UC_RDX 136
#define UC_RAX 144
#define UC_RIP 168
#define UC_EFL 176
#define UC_R12 72
#define UC_R13 80
#define UC_R14 88
#define UC_R15 96
#define UC_RBP 120
#define UC_RBX 128
#define UC_RSP 160
#define UC_FPREGS 224
#define DIRECT_TOP 64   /* offsetof(struct bsd_thread, direct_top) */
#define DIRECT_XSAVE 72 /* offsetof(struct bsd_thread, direct_xsave) */
#define DUC 128         /* offsetof(struct bsd_thread, direct_uc) */
#define UC_AT(reg) offsetof(ucontext_t, uc_mcontext.gregs[reg])
_Static_assert(UC_AT(REG_R12) == UC_R12 && UC_AT(REG_R13) == UC_R13 && UC_AT(REG_R14) == UC_R14 &&
                   UC_AT(REG_R15) == UC_R15 && UC_AT(REG_RBP) == UC_RBP &&
                   UC_AT(REG_RBX) == UC_RBX && UC_AT(REG_RSP) == UC_RSP &&
                   offsetof(ucontext_t, uc_mcontext.fpregs) == UC_FPREGS,
               "ucontext layout");
_Static_assert(offsetof(struct bsd_thread, direct_top) == DIRECT_TOP &&
                   offsetof(struct bsd_thread, direct_xsave) == DIRECT_XSAVE &&
                   offsetof(struct bsd_thread, direct_vdso) == 80 &&
                   offsetof(struct bsd_thread, direct_uc) == DUC &&
                   sizeof(struct bsd_thread) <= BSD_XSAVE_AT,
               "bsd_thread layout");
/* The guest's registers to and from the thread's direct_uc (a %gs operand). */
#define SAVED(reg) "%gs:" XSTR(DUC) "+" XSTR(UC_##reg)
#define EACH_KEPT_REG(X) X(R8, r8) X(R9, r9) X(R10, r10) X(R12, r12) X(R13, r13) X(R14, r14) \
    X(R15, r15) X(RDI, rdi) X(RSI, rsi) X(RBP, rbp) X(RBX, rbx) X(RDX, rdx) X(RAX, rax)
#define SAVE_REG(R, r) "    mov %" #r ", " SAVED(R) "\n"
#define LOAD_REG(R, r) "    mov " SAVED(R) ", %" #r "\n"
_Static_assert(UC_AT(REG_R8) == UC_R8 && UC_AT(REG_R9) == UC_R9 && UC_AT(REG_R10) == UC_R10 &&
                   UC_AT(REG_RDI) == UC_RDI && UC_AT(REG_RSI) == UC_RSI &&
                   UC_AT(REG_RDX) == UC_RDX && UC_AT(REG_RAX) == UC_RAX &&
                   UC_AT(REG_RIP) == UC_RIP && UC_AT(REG_EFL) == UC_EFL,
               "ucontext layout");
#define KEPT 16 /* offsetof(struct bsd_thread, signals_kept) */
_Static_assert(offsetof(struct bsd_thread, signals_kept) == KEPT, "bsd_thread layout");
_Static_assert(offsetof(struct bsd_thread, direct_slow) == 24 &&
                   offsetof(struct bsd_thread, direct_back) == 32 &&
                   offsetof(struct bsd_thread, direct_rdi) == 40 &&
                   offsetof(struct bsd_thread, direct_result) == 48 &&
                   offsetof(struct bsd_thread, direct_carry) == 56,
               "bsd_thread layout");
_Static_assert(BSD_MAX_SYSCALL == 1024 && SIGSYS == 31, "the direct call table");
_Static_assert(BSD_SITES_SEEN == 65536, "the rewritten sites' bits");
uint16_t bsd_direct_calls[BSD_MAX_SYSCALL];
uint8_t bsd_direct_clocks[BSD_DIRECT_CLOCKS];
uint8_t bsd_direct_c[BSD_MAX_SYSCALL];
_Static_assert(BSD_DIRECT_CLOCK == 0x8000 && BSD_DIRECT_CLOCKS == 16, "the direct clocks");
int32_t bsd_direct_errno[200];
#define GUEST_LIMIT 0x500000000000 /* BSDUSER_GUEST_LIMIT, as the assembler spells it */
_Static_assert(GUEST_LIMIT == BSDUSER_GUEST_LIMIT, "the guest limit");
__attribute__((visibility("hidden"))) int bsd_fsgsbase;
__asm__(".text\n"
        ".globl bsd_signal_entry\n"
        ".type bsd_signal_entry, @function\n"
        "bsd_signal_entry:\n"
        "    cmp $31, %edi\n" /* SIGSYS */
        "    jne 9f\n"
        "    mov %rsp, %r14\n"
        "    and $-" XSTR(BSD_ALT_STACK_SIZE) ", %r14\n"
        "    cmpl $0, " XSTR(KEPT) "(%r14)\n"
        "    jne 9f\n"
        "    mov " XSTR(UC_RIP) "(%rdx), %rax\n"
        "    movabs $" XSTR(GUEST_LIMIT) ", %rcx\n"
        "    cmp %rcx, %rax\n"
        "    jae 9f\n"
        /* A site not tried yet for rewriting: the C path tries it. */
        "    cmp bsd_rewrite_lo(%rip), %rax\n"
        "    jb 1f\n"
        "    cmp bsd_rewrite_hi(%rip), %rax\n"
        "    jae 1f\n"
        "    movzwl %ax, %ecx\n" /* (BSD_SITES_SEEN bits) */
        "    lea bsd_sites_seen(%rip), %r15\n"
        "    bt %ecx, (%r15)\n"
        "    jnc 9f\n"
        "1:  mov " XSTR(UC_RAX) "(%rdx), %rax\n"
        "    cmp $1024, %rax\n" /* unsigned: a negative number too */
        "    jae 9f\n"
        "    lea bsd_direct_calls(%rip), %rcx\n"
        "    movzwl (%rcx,%rax,2), %eax\n"
        "    test %eax, %eax\n"
        "    jz 9f\n"
        "    mov " XSTR(UC_RDI) "(%rdx), %r15\n" /* (%rdi stays the signal: 9f needs it) */
        "    btr $15, %eax\n" /* BSD_DIRECT_CLOCK: the clock id, as Linux's */
        "    jnc 4f\n"
        "    cmp $16, %r15\n"
        "    jae 9f\n"
        "    lea bsd_direct_clocks(%rip), %rcx\n"
        "    movzbl (%rcx,%r15), %r15d\n"
        "    test %r15d, %r15d\n"
        "    jz 9f\n"
        "    dec %r15d\n"
        "4:  dec %eax\n"
        "    mov %rdx, %r12\n"
        "    mov %rsi, %r13\n"
        "    mov %r15, %rdi\n"
        "    mov " XSTR(UC_RSI) "(%r12), %rsi\n"
        "    mov " XSTR(UC_RDX) "(%r12), %rdx\n"
        "    mov " XSTR(UC_R10) "(%r12), %r10\n"
        "    mov " XSTR(UC_R8) "(%r12), %r8\n"
        "    mov " XSTR(UC_R9) "(%r12), %r9\n"
        "    syscall\n"
        "    cmp $-4095, %rax\n"
        "    jae 5f\n"
        "    mov %rax, " XSTR(UC_RAX) "(%r12)\n"
        "    andq $-2, " XSTR(UC_EFL) "(%r12)\n" /* carry clear: a result */
        "    jmp 6f\n"
        "5:  neg %rax\n"
        "    mov $78, %ecx\n" /* ENOSYS: a Linux errno the BSD has not */
        "    cmp $200, %rax\n"
        "    jae 7f\n"
        "    lea bsd_direct_errno(%rip), %rcx\n"
        "    movslq (%rcx,%rax,4), %rcx\n"
        "7:  mov %rcx, " XSTR(UC_RAX) "(%r12)\n"
        "    orq $1, " XSTR(UC_EFL) "(%r12)\n" /* carry set: an errno */
        "6:  cmpl $0, " XSTR(KEPT) "(%r14)\n"
        "    jne 8f\n"
        "    ret\n"
        "8:  xor %edi, %edi\n" /* signal 0: deliver what came meanwhile */
        "    mov %r13, %rsi\n"
        "    mov %r12, %rdx\n"
        "9:  push %rdi\n"
        "    push %rsi\n"
        "    push %rdx\n"
        "    sub $16, %rsp\n" /* (%rsp): the %fs base at entry; 8(%rsp): alignment */
        "    mov %rsp, %rax\n"
        "    and $-" XSTR(BSD_ALT_STACK_SIZE) ", %rax\n"
        "    mov " XSTR(UC_RIP) "(%rdx), %rcx\n"
        "    movabs $" XSTR(GUEST_LIMIT) ", %rsi\n"
        "    cmp %rsi, %rcx\n"
        "    jae 1f\n"
        "    mov 8(%rax), %rcx\n" /* guest code: its base is guest_fs */
        "    mov %rcx, (%rsp)\n"
        "    jmp 2f\n"
        "1:  call bsd_get_fs\n"
        "2:  mov %rsp, %rax\n"
        "    and $-" XSTR(BSD_ALT_STACK_SIZE) ", %rax\n"
        "    mov (%rax), %rsi\n"
        "    cmp (%rsp), %rsi\n" /* smolvm's base loaded already? */
        "    je 3f\n"
        "    call bsd_set_fs\n"
        "3:  mov 32(%rsp), %rdi\n"
        "    mov 24(%rsp), %rsi\n"
        "    mov 16(%rsp), %rdx\n"
        "    mov (%rsp), %rcx\n"
        "    call bsd_on_signal@PLT\n"
        "    add $40, %rsp\n"
        "    mov %rax, %rsi\n"
        "    mov %rsp, %rcx\n" /* the block's host_fs: the base loaded now */
        "    and $-" XSTR(BSD_ALT_STACK_SIZE) ", %rcx\n"
        "    cmp (%rcx), %rsi\n"
        "    je 4f\n"
        "    call bsd_set_fs\n"
        "4:  ret\n"
        ".size bsd_signal_entry, .-bsd_signal_entry\n"
        /* From a rewritten site's stub (rewrite.c), on the guest's stack with
         * the guest's registers and %fs, %rcx the stub's syscall; %gs is the
         * thread's block. Only %rax (the result), %rcx, %r11 and the flags
         * change, as a syscall changes them. */
        ".globl bsd_direct_entry\n"
        ".type bsd_direct_entry, @function\n"
        "bsd_direct_entry:\n"
        "    cmpl $0, %gs:" XSTR(KEPT) "\n"
        "    jne 8f\n"
        "    cmp $1024, %rax\n"
        "    jae 8f\n"
        "    mov %rcx, %gs:24\n" /* direct_slow */
        "    lea 2(%rcx), %r11\n"
        "    mov %r11, %gs:32\n" /* direct_back: the stub's jump to the site's end */
        "    lea bsd_direct_calls(%rip), %r11\n"
        "    movzwl (%r11,%rax,2), %ecx\n"
        "    test %ecx, %ecx\n"
        "    jz 5f\n"
        "    mov %rdi, %gs:40\n" /* direct_rdi */
        "    btr $15, %ecx\n" /* BSD_DIRECT_CLOCK */
        "    jnc 1f\n"
        "    cmp $16, %rdi\n"
        "    jae 7f\n"
        "    lea bsd_direct_clocks(%rip), %r11\n"
        "    movzbl (%r11,%rdi), %edi\n"
        "    test %edi, %edi\n"
        "    jz 6f\n"
        "    dec %edi\n"
        "    mov bsd_vdso_clock_gettime(%rip), %r11\n"
        "    test %r11, %r11\n"
        "    jnz 9f\n"
        "1:  lea -1(%rcx), %eax\n"
        "    syscall\n"
        "4:  mov %gs:40, %rdi\n"
        "    xor %r11d, %r11d\n" /* the carry to return */
        "    cmp $-4095, %rax\n"
        "    jb bsd_direct_tail\n"
        "    neg %rax\n"
        "    mov $78, %ecx\n" /* ENOSYS: a Linux errno the BSD has not */
        "    cmp $200, %rax\n"
        "    jae 2f\n"
        "    lea bsd_direct_errno(%rip), %rcx\n"
        "    movslq (%rcx,%rax,4), %rcx\n"
        "2:  mov %rcx, %rax\n"
        "    mov $1, %r11d\n"
        ".globl bsd_direct_tail\n"
        "bsd_direct_tail:\n"
        "    cmpl $0, %gs:" XSTR(KEPT) "\n"
        "    jne 3f\n"
        "    bt $0, %r11d\n"
        "    jmp *%gs:32\n"
        ".globl bsd_direct_tail_end\n"
        "bsd_direct_tail_end:\n"
        "3:  mov %rax, %gs:48\n" /* signals kept: through SIGSYS, which delivers them */
        "    mov %r11, %gs:56\n"
        "    mov $" XSTR(BSD_DIRECT_RESULT) ", %eax\n"
        "    jmp *%gs:24\n"
        "6:  mov %gs:40, %rdi\n"
        "7:  mov %gs:24, %rcx\n"
        "8:  jmp *%rcx\n"
        /* The C path, without a signal: the guest's registers into
         * direct_uc, the alternate stack, smolvm's %fs, bsd_direct_c_call;
         * back the same way. */
        "5:  lea bsd_direct_c(%rip), %r11\n"
        "    cmpb $0, (%r11,%rax)\n"
        "    je 7b\n"
        EACH_KEPT_REG(SAVE_REG)
        "    mov %rsp, " SAVED(RSP) "\n"
        "    mov %gs:32, %r11\n"
        "    mov %r11, " SAVED(RIP) "\n"
        "    movq $0, " SAVED(FPREGS) "\n"
        "    mov %gs:" XSTR(DIRECT_TOP) ", %rsp\n"
        "    pushfq\n" /* (DF and the rest; the arithmetic ones are the syscall's to set) */
        "    popq " SAVED(EFL) "\n"
        "    cld\n"
        /* bare.c's answer, on the guest's %fs and without touching the
         * vector registers, when it has one. */
        "    call bsd_bare_call\n"
        "    test %al, %al\n"
        "    jnz bsd_direct_c_tail\n"
        /* The C code uses the vector registers: the guest's are kept, as a
         * syscall keeps them. */
        "    mov $-1, %eax\n"
        "    mov $-1, %edx\n"
        "    mov %gs:" XSTR(DIRECT_XSAVE) ", %rcx\n"
        "    xsave64 (%rcx)\n"
        "    mov %gs:0, %rsi\n" /* host_fs */
        "    cmp %gs:8, %rsi\n" /* guest_fs: the same? */
        "    je 1f\n"
        "    call bsd_set_fs\n"
        "1:  call bsd_direct_c_call\n"
        "    mov %gs:8, %rsi\n"
        "    cmp %gs:0, %rsi\n"
        "    je 1f\n"
        "    call bsd_set_fs\n"
        "1:  mov $-1, %eax\n"
        "    mov $-1, %edx\n"
        "    mov %gs:" XSTR(DIRECT_XSAVE) ", %rcx\n"
        "    xrstor64 (%rcx)\n"
        /* From here on a signal sends it back here (bsd_on_signal), with
         * whatever %rsp: each step is done again from the block. */
        ".globl bsd_direct_c_tail\n"
        "bsd_direct_c_tail:\n"
        "    mov %gs:" XSTR(DIRECT_TOP) ", %rsp\n"
        "    cmpl $0, %gs:" XSTR(KEPT) "\n"
        "    jne 2f\n"
        "    pushq " SAVED(EFL) "\n" /* with the carry the answer set */
        "    popfq\n"
        EACH_KEPT_REG(LOAD_REG)
        "    mov " SAVED(RSP) ", %rsp\n"
        "    jmp *" SAVED(RIP) "\n"
        ".globl bsd_direct_c_tail_end\n"
        "bsd_direct_c_tail_end:\n"
        "2:  mov " SAVED(RAX) ", %r11\n" /* signals kept: through SIGSYS */
        "    mov %r11, %gs:48\n"
        "    mov " SAVED(EFL) ", %r11\n"
        "    mov %r11, %gs:56\n"
        EACH_KEPT_REG(LOAD_REG)
        "    mov " SAVED(RSP) ", %rsp\n"
        "    mov $" XSTR(BSD_DIRECT_RESULT) ", %eax\n"
        "    jmp *%gs:24\n"
        /* clock_gettime by the vDSO (%edi the Linux clock, %rsi the guest's
         * timespec): on the alternate stack, into a timespec there, copied
         * out guarded (a bad pointer: EFAULT, as the kernel says). */
        "9:  mov %rsp, %gs:80\n"
        "    mov %rsi, %gs:88\n"
        "    mov %rdx, %gs:96\n"
        "    mov %r8, %gs:104\n"
        "    mov %r9, %gs:112\n"
        "    mov %r10, %gs:120\n"
        "    mov %gs:" XSTR(DIRECT_TOP) ", %rsp\n"
        "    sub $16, %rsp\n"
        "    mov %rsp, %rsi\n"
        "    call *%r11\n"
        "    test %rax, %rax\n"
        "    jnz 1f\n"
        "    mov $-" XSTR(EFAULT) ", %rax\n"
        "    mov %gs:88, %rdi\n"
        "    movabs $" XSTR(GUEST_LIMIT) "-16, %rcx\n"
        "    cmp %rcx, %rdi\n"
        "    ja 1f\n"
        "    mov %rsp, %rsi\n"
        "    mov $16, %edx\n"
        "    call bsd_copy_guarded\n"
        "1:  mov %gs:88, %rsi\n"
        "    mov %gs:96, %rdx\n"
        "    mov %gs:104, %r8\n"
        "    mov %gs:112, %r9\n"
        "    mov %gs:120, %r10\n"
        "    mov %gs:80, %rsp\n"
        "    jmp 4b\n"
        ".size bsd_direct_entry, .-bsd_direct_entry\n"
        /* bsd_copy_guarded(to, from, len): 0, or -EFAULT when the copy
         * faulted (bsd_on_signal sends it to bsd_copy_fixup). */
        ".globl bsd_copy_guarded\n"
        ".type bsd_copy_guarded, @function\n"
        "bsd_copy_guarded:\n"
        "    mov %rdx, %rcx\n"
        ".globl bsd_copy_faulting\n"
        "bsd_copy_faulting:\n"
        "    rep movsb\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".globl bsd_copy_fixup\n"
        "bsd_copy_fixup:\n"
        "    mov $-" XSTR(EFAULT) ", %rax\n"
        "    ret\n"
        ".size bsd_copy_guarded, .-bsd_copy_guarded\n"
        /* %fs base := %rsi; clobbers rax, rcx, rdi, r11. */
        "bsd_set_fs:\n"
        "    cmpl $0, bsd_fsgsbase(%rip)\n"
        "    je 1f\n"
        "    wrfsbase %rsi\n"
        "    ret\n"
        "1:  mov $" XSTR(ARCH_SET_FS) ", %edi\n"
        "    mov $" XSTR(SYS_arch_prctl) ", %eax\n"
        "    syscall\n"
        "    ret\n"
        /* The caller's (%rsp) := %fs base; clobbers rax, rcx, rsi, rdi, r11. */
        "bsd_get_fs:\n"
        "    cmpl $0, bsd_fsgsbase(%rip)\n"
        "    je 1f\n"
        "    rdfsbase %rax\n"
        "    mov %rax, 8(%rsp)\n"
        "    ret\n"
        "1:  lea 8(%rsp), %rsi\n"
        "    mov $" XSTR(ARCH_GET_FS) ", %edi\n"
        "    mov $" XSTR(SYS_arch_prctl) ", %eax\n"
        "    syscall\n"
        "    ret\n");

/* The calling thread's block, from where its signal handler runs. */
static struct bsd_thread *self(void)
{
    return (struct bsd_thread *)((uintptr_t)__builtin_frame_address(0) &
                                 ~(uintptr_t)(BSD_ALT_STACK_SIZE - 1));
}

void bsd_thread_signals_kept(bool any)
{
    self()->signals_kept = any;
}

/* Every system call made below the guest limit raises SIGSYS; smolvm's,
 * above it, go through. Syscall User Dispatch (Linux 5.11+) is per task:
 * threads and forked children turn it on again. Where it is missing (or
 * SMOLVM_BSDUSER_DISPATCH=seccomp asks), a seccomp filter does the same
 * from the instruction pointer, for this process and all it starts. */
static int dispatch_by_seccomp(void)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (uint32_t)(BSDUSER_GUEST_LIMIT >> 32), 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        return -errno;
    return 0;
}

int bsd_dispatch_on(void)
{
    static enum { UNDECIDED, USER_DISPATCH, SECCOMP } how;
    static volatile char selector = 1; /* SYSCALL_DISPATCH_FILTER_BLOCK */
    const char *want = getenv("SMOLVM_BSDUSER_DISPATCH");

    if (how == SECCOMP)
        return 0; /* inherited by threads and children */
    if (how == UNDECIDED && want && strcmp(want, "seccomp") == 0) {
        how = SECCOMP;
        return dispatch_by_seccomp();
    }
    if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, BSDUSER_GUEST_LIMIT,
              0x800000000000ull - BSDUSER_GUEST_LIMIT, &selector) == 0) {
        how = USER_DISPATCH;
        return 0;
    }
    if (how != UNDECIDED || errno != EINVAL)
        return -errno;
    static const char warning[] = "smolvm bsd-user: no Syscall User Dispatch here (Linux 5.11+); "
                                  "catching system calls with a seccomp filter instead\n";
    if (write(STDERR_FILENO, warning, sizeof(warning) - 1) < 0)
        return -EIO;
    how = SECCOMP;
    return dispatch_by_seccomp();
}

void bsd_threads_forked(bool child)
{
    if (child)
        atomic_store(&bsd_proc->live_threads, 1); /* the caller is the only one */
}

int bsd_thread_setup(struct bsd_thread **out)
{
    bsd_fsgsbase = (getauxval(AT_HWCAP2) & 2) != 0; /* HWCAP2_FSGSBASE */
    /* Twice the size, then trimmed: an aligned stack. */
    uint8_t *raw = mmap(NULL, 2 * BSD_ALT_STACK_SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return -errno;
    uintptr_t at = ((uintptr_t)raw + BSD_ALT_STACK_SIZE - 1) & ~(uintptr_t)(BSD_ALT_STACK_SIZE - 1);
    if (at > (uintptr_t)raw)
        munmap(raw, at - (uintptr_t)raw);
    munmap((void *)(at + BSD_ALT_STACK_SIZE), (uintptr_t)raw + BSD_ALT_STACK_SIZE - at);
    struct bsd_thread *t = (struct bsd_thread *)at;
    if (syscall(SYS_arch_prctl, ARCH_GET_FS, &t->host_fs) < 0 ||
        syscall(SYS_arch_prctl, ARCH_SET_GS, t) < 0) /* for bsd_direct_entry */
        return -errno;
    t->guest_fs = t->host_fs; /* until the guest sets its own */
    t->direct_top = at + BSD_ALT_STACK_SIZE;
    t->direct_xsave = at + BSD_XSAVE_AT;
    stack_t ss = {.ss_sp = (void *)at, .ss_size = BSD_ALT_STACK_SIZE};
    /* Only now, with the stack the signal entry needs, may signals come
     * (a new thread starts with them all blocked). */
    sigset_t none;
    sigemptyset(&none);
    if (sigaltstack(&ss, NULL) < 0 || pthread_sigmask(SIG_SETMASK, &none, NULL) != 0 ||
        bsd_dispatch_on() < 0)
        return -errno;
    if (out)
        *out = t;
    return 0;
}

uint64_t bsd_dispatch(int sig, void *info, void *context);

uint64_t *bsd_guest_fs(void)
{
    return &self()->guest_fs;
}

uint64_t bsd_vdso_clock_gettime;

/* __vdso_clock_gettime in the vDSO's dynamic symbols. */
void bsd_vdso_find(void)
{
    const uint8_t *v = (const uint8_t *)getauxval(AT_SYSINFO_EHDR);
    if (!v || memcmp(v, ELFMAG, SELFMAG) != 0)
        return;
    const Elf64_Ehdr *h = (const Elf64_Ehdr *)v;
    const Elf64_Shdr *s = (const Elf64_Shdr *)(v + h->e_shoff);
    uint64_t load = 0;
    for (int i = 0; i < h->e_phnum; i++) {
        const Elf64_Phdr *p = (const Elf64_Phdr *)(v + h->e_phoff) + i;
        if (p->p_type == PT_LOAD) {
            load = p->p_vaddr;
            break;
        }
    }
    for (int i = 0; h->e_shoff && i < h->e_shnum; i++) {
        if (s[i].sh_type != SHT_DYNSYM || s[i].sh_link >= h->e_shnum)
            continue;
        const Elf64_Sym *sym = (const Elf64_Sym *)(v + s[i].sh_offset);
        const char *names = (const char *)(v + s[s[i].sh_link].sh_offset);
        for (size_t k = 0; k < s[i].sh_size / sizeof(*sym); k++)
            if (sym[k].st_value && strcmp(names + sym[k].st_name, "__vdso_clock_gettime") == 0)
                bsd_vdso_clock_gettime = (uint64_t)(v + sym[k].st_value - load);
    }
}

bool bsd_xsave_fits(void)
{
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    if (!(c & (1u << 27))) /* OSXSAVE */
        return false;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0xd), "c"(0));
    return b <= BSD_XSAVE_MAX; /* the size XCR0's parts take */
}

struct bsd_thread *bsd_thread_self(void)
{
    return self();
}

uint64_t bsd_on_signal(int sig, void *info, void *context, uint64_t entry_fs)
{
    struct bsd_thread *t = self();
    ucontext_t *uc = context;
    greg_t *rip = &uc->uc_mcontext.gregs[REG_RIP];
    /* Past bsd_direct_entry's last look at signals kept: it looks again
     * (this one is kept: smolvm's code was running). */
    if ((uint64_t)*rip > (uint64_t)bsd_direct_tail && (uint64_t)*rip < (uint64_t)bsd_direct_tail_end)
        *rip = (greg_t)bsd_direct_tail;
    if ((uint64_t)*rip > (uint64_t)bsd_direct_c_tail &&
        (uint64_t)*rip < (uint64_t)bsd_direct_c_tail_end)
        *rip = (greg_t)bsd_direct_c_tail;
    /* A guest pointer that is not there: EFAULT. */
    if (bsd_fault_signal(sig) && (uint64_t)*rip == (uint64_t)bsd_copy_faulting) {
        *rip = (greg_t)bsd_copy_fixup;
        return entry_fs;
    }
    bsd_dispatch(sig, info, context);
    return (uint64_t)uc->uc_mcontext.gregs[REG_RIP] < BSDUSER_GUEST_LIMIT ? t->guest_fs
                                                                           : entry_fs;
}

/* ---- sysarch / _lwp_setprivate: the guest's thread pointer ---- */

enum { AMD64_GET_FSBASE = 128, AMD64_SET_FSBASE = 129 };

static long sys_sysarch(const long *a)
{
    uint64_t base;
    if (a[0] == AMD64_GET_FSBASE)
        return bsd_copy_out((uint64_t)a[1], &self()->guest_fs, 8);
    if (a[0] != AMD64_SET_FSBASE)
        return -EINVAL;
    if (bsd_copy_in(&base, (uint64_t)a[1], 8) < 0)
        return -EFAULT;
    self()->guest_fs = base;
    return 0;
}

static long sys_lwp_setprivate(const long *a)
{
    self()->guest_fs = (uint64_t)a[0];
    return 0;
}

/* ---- threads ---- */

long bsd_thread_id(void)
{
    return syscall(SYS_gettid) + BSD_TID_BASE;
}

static long sys_thr_self(const long *a)
{
    long tid = bsd_thread_id();
    return bsd_copy_out((uint64_t)a[0], &tid, sizeof(tid));
}

struct start {
    struct bsd_guest_regs regs;
    uint64_t tid_out[2]; /* where the new thread's id goes before it runs */
    atomic_int state;    /* 0 starting, 1 running, <0 -errno */
    long tid;
};

static void tell(struct start *s, int state)
{
    atomic_store(&s->state, state);
    syscall(SYS_futex, &s->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *thread_main(void *opaque)
{
    struct start *s = opaque;
    struct bsd_guest_regs regs = s->regs;
    long tid = bsd_thread_id();
    struct bsd_thread *t = NULL;
    int r = bsd_thread_setup(&t);

    for (int i = 0; i < 2 && r == 0; i++)
        if (s->tid_out[i] && bsd_copy_out(s->tid_out[i], &tid, 8) < 0)
            r = -EFAULT;
    if (r < 0) {
        tell(s, r);
        return NULL;
    }
    s->tid = tid;
    atomic_fetch_add(&bsd_proc->live_threads, 1);
    tell(s, 1); /* s is the creator's: not touched after this */
    bsd_signal_mask(NULL, regs.sigmask);
    /* Not in a handler: the block comes from the setup, not the stack. */
    if (!regs.fs)
        regs.fs = t->host_fs;
    else
        t->guest_fs = regs.fs;
    /* From the guest's %fs on, no more host C: every register from regs,
     * then its %rip. */
    __asm__ volatile("mov %c[fs](%%rbx), %%rsi\n\t"
                     "mov $" XSTR(ARCH_SET_FS) ", %%edi\n\t"
                     "mov $" XSTR(SYS_arch_prctl) ", %%eax\n\t"
                     "syscall\n\t"
                     "mov %c[rsp](%%rbx), %%rsp\n\t"
                     "push %c[rip](%%rbx)\n\t"
                     "mov %c[rdi](%%rbx), %%rdi\n\t"
                     "mov %c[rsi](%%rbx), %%rsi\n\t"
                     "mov %c[rdx](%%rbx), %%rdx\n\t"
                     "mov %c[rcx](%%rbx), %%rcx\n\t"
                     "mov %c[r8](%%rbx), %%r8\n\t"
                     "mov %c[r9](%%rbx), %%r9\n\t"
                     "mov %c[r10](%%rbx), %%r10\n\t"
                     "mov %c[r11](%%rbx), %%r11\n\t"
                     "mov %c[r12](%%rbx), %%r12\n\t"
                     "mov %c[r13](%%rbx), %%r13\n\t"
                     "mov %c[r14](%%rbx), %%r14\n\t"
                     "mov %c[r15](%%rbx), %%r15\n\t"
                     "mov %c[rbp](%%rbx), %%rbp\n\t"
                     "mov %c[rax](%%rbx), %%rax\n\t"
                     "mov %c[rbx](%%rbx), %%rbx\n\t"
                     "ret\n\t"
                     :
                     : "b"(&regs), [fs] "i"(offsetof(struct bsd_guest_regs, fs)),
                       [rsp] "i"(offsetof(struct bsd_guest_regs, rsp)),
                       [rip] "i"(offsetof(struct bsd_guest_regs, rip)),
                       [rdi] "i"(offsetof(struct bsd_guest_regs, rdi)),
                       [rsi] "i"(offsetof(struct bsd_guest_regs, rsi)),
                       [rdx] "i"(offsetof(struct bsd_guest_regs, rdx)),
                       [rcx] "i"(offsetof(struct bsd_guest_regs, rcx)),
                       [r8] "i"(offsetof(struct bsd_guest_regs, r8)),
                       [r9] "i"(offsetof(struct bsd_guest_regs, r9)),
                       [r10] "i"(offsetof(struct bsd_guest_regs, r10)),
                       [r11] "i"(offsetof(struct bsd_guest_regs, r11)),
                       [r12] "i"(offsetof(struct bsd_guest_regs, r12)),
                       [r13] "i"(offsetof(struct bsd_guest_regs, r13)),
                       [r14] "i"(offsetof(struct bsd_guest_regs, r14)),
                       [r15] "i"(offsetof(struct bsd_guest_regs, r15)),
                       [rbp] "i"(offsetof(struct bsd_guest_regs, rbp)),
                       [rax] "i"(offsetof(struct bsd_guest_regs, rax)),
                       [rbx] "i"(offsetof(struct bsd_guest_regs, rbx))
                     : "memory");
    __builtin_unreachable();
}

long bsd_thread_start(const struct bsd_guest_regs *regs, uint64_t child_tid, uint64_t parent_tid)
{
    struct start s = {.regs = *regs, .tid_out = {child_tid, parent_tid}, .state = 0};
    bsd_signal_mask(s.regs.sigmask, NULL);
    pthread_attr_t attr;
    pthread_t th;

    if (!regs->rip || regs->rip >= BSDUSER_GUEST_LIMIT)
        return -EINVAL;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 128 << 10);
    /* Blocked until the new thread has its alternate stack: the signal
     * entry finds its block there and nowhere else. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&th, &attr, thread_main, &s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (r != 0)
        return -r;
    while (atomic_load(&s.state) == 0)
        syscall(SYS_futex, &s.state, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    return atomic_load(&s.state) < 0 ? atomic_load(&s.state) : s.tid;
}

void bsd_thread_exit(void)
{
    if (atomic_fetch_sub(&bsd_proc->live_threads, 1) == 1)
        syscall(SYS_exit_group, 0);
    for (;;)
        syscall(SYS_exit, 0);
}

/* FreeBSD's struct thr_param. */
struct thr_param {
    uint64_t start_func, arg, stack_base, stack_size, tls_base, tls_size;
    uint64_t child_tid, parent_tid;
    int32_t flags;
    uint64_t rtp;
    uint64_t spare[3];
};

/* The new thread starts at start_func(arg), %rsp as after a call, on
 * tls_base. */
static long sys_thr_new(const long *a)
{
    struct thr_param p = {0};
    size_t size = (size_t)a[1] < sizeof(p) ? (size_t)a[1] : sizeof(p);

    if (bsd_copy_in(&p, (uint64_t)a[0], size) < 0)
        return -EFAULT;
    if (!p.stack_size)
        return -EINVAL;
    struct bsd_guest_regs regs = {.rip = p.start_func, .rdi = p.arg, .fs = p.tls_base,
                                  .rsp = ((p.stack_base + p.stack_size) & ~15ull) - 8};
    long r = bsd_thread_start(&regs, p.child_tid, p.parent_tid);
    return r < 0 ? r : 0;
}

/* The state word is set and its waiters woken (as FreeBSD does), then the
 * thread ends; the last one ends the process. */
static long sys_thr_exit(const long *a)
{
    if (a[0]) {
        long one = 1;
        if (bsd_copy_out((uint64_t)a[0], &one, sizeof(one)) == 0)
            syscall(SYS_futex, (void *)a[0], FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
    bsd_thread_exit();
    return 0;
}

static long sys_thr_kill(const long *a)
{
    int sig = bsd_linux_signal(a[1]);
    if (a[1] && !sig)
        return -EINVAL;
    return bsd_result(syscall(SYS_tgkill, getpid(), (pid_t)(a[0] - BSD_TID_BASE), sig));
}

/* ---- scheduling ---- */

/* cpuset_getaffinity(level, which, id, size, mask): this process's CPUs. */
static long sys_cpuset_getaffinity(const long *a)
{
    cpu_set_t set;
    uint8_t mask[128] = {0};
    size_t size = (size_t)a[3];
    if (size > sizeof(mask) || size < 8)
        return size < 8 ? -ERANGE : -EINVAL;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return -errno;
    for (int cpu = 0; cpu < CPU_SETSIZE && (size_t)cpu < size * 8; cpu++)
        if (CPU_ISSET(cpu, &set))
            mask[cpu / 8] |= (uint8_t)(1u << (cpu % 8));
    return bsd_copy_out((uint64_t)a[4], mask, size);
}

/* rtprio(function, pid, struct rtprio *) and rtprio_thread(function,
 * lwpid, ...): every thread runs in the time-sharing class at priority 0;
 * asking for a real-time or idle class is refused, as FreeBSD refuses an
 * unprivileged caller. */
static long sys_rtprio(const long *a)
{
    enum { RTP_LOOKUP = 0, RTP_SET = 1, RTP_PRIO_NORMAL = 3 };
    uint16_t rtp[2] = {RTP_PRIO_NORMAL, 0};
    if (a[0] == RTP_LOOKUP)
        return bsd_copy_out((uint64_t)a[2], rtp, sizeof(rtp));
    if (a[0] != RTP_SET)
        return -EINVAL;
    if (bsd_copy_in(rtp, (uint64_t)a[2], sizeof(rtp)) < 0)
        return -EFAULT;
    return rtp[0] == RTP_PRIO_NORMAL ? 0 : -EPERM;
}

static long sys_nothing(const long *a)
{
    (void)a;
    return 0;
}

const struct bsd_handler bsd_thread_calls[] = {
    {"sysarch", sys_sysarch}, {"netbsd:_lwp_setprivate", sys_lwp_setprivate},
    {"thr_self", sys_thr_self}, {"thr_new", sys_thr_new}, {"thr_exit", sys_thr_exit},
    {"thr_kill", sys_thr_kill}, {"_umtx_op", bsd_umtx_op}, {"netbsd:__setitimer50", sys_nothing},
    {"sched_yield", bsd_sched_yield}, {"cpuset_getaffinity", sys_cpuset_getaffinity},
    {"rtprio_thread", sys_rtprio}, {"freebsd:rtprio", sys_rtprio}, {"thr_set_name", sys_nothing},
};
const size_t bsd_thread_call_count = sizeof(bsd_thread_calls) / sizeof(bsd_thread_calls[0]);
