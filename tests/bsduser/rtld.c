/* A stand-in for a BSD runtime linker in the --root tests: loaded as the
 * program's interpreter from the sysroot, it checks the auxiliary vector
 * the kernel (here, bsd-user) gives a runtime linker (AT_BASE: where it
 * was loaded; AT_ENTRY: the program's entry), says so, and starts the
 * program with the stack it was given. Freestanding, position
 * independent, FreeBSD-branded. */
static long sys3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

void rtld_start(long *ap);
void rtld_start(long *ap)
{
    static const char hello[] = "rtld: starting the program\n";
    long argc = ap[0], *p = ap + 1 + argc + 1;
    unsigned long entry = 0, base = 0, self = (unsigned long)rtld_start;
    while (*p)
        p++;
    for (p++; p[0]; p += 2) {
        if (p[0] == 9) /* AT_ENTRY */
            entry = (unsigned long)p[1];
        if (p[0] == 7) /* AT_BASE */
            base = (unsigned long)p[1];
    }
    if (!entry || !base || self < base || self > base + (1ul << 20))
        sys3(1, 99, 0, 0); /* exit */
    sys3(4, 2, (long)hello, sizeof(hello) - 1);
    /* As exec_setregs leaves it: %rdi at argc, %rsp as after a call. */
    __asm__ volatile("mov %0, %%rdi\n\t"
                     "lea -8(%0), %%rsp\n\t"
                     "and $-16, %%rsp\n\t"
                     "add $8, %%rsp\n\t"
                     "jmp *%1\n\t"
                     :
                     : "r"(ap), "r"(entry)
                     : "rdi", "memory");
    __builtin_unreachable();
}
