/* bsd-user against real BSD executables: freestanding programs built for
 * FreeBSD and NetBSD by clang and lld (tests/bsduser/prog.c) run under
 * `smolvm bsd-user`, checked by what they print, their exit status and
 * --strace; executables it cannot run are refused with one clear line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scratch.h"

static char smolvm[4200];

static int setup(void **state)
{
    (void)state;
    if (scratch_find_smolvm(smolvm, sizeof(smolvm)) < 0)
        return -1;
    if (scratch_setup("bsduser") < 0)
        return -1;
    /* The programs, as each BSD's toolchain would link them. */
    static const char flags[] = "-ffreestanding -fno-stack-protector -nostdlib -O1 "
                                "-fuse-ld=lld -Wl,-e,_start " SMOLVM_SOURCE_ROOT "/tests/bsduser/prog.c";
    return sh("clang --target=x86_64-unknown-freebsd13 -static %s -o fbsd && "
              "clang --target=x86_64-unknown-freebsd13 -fPIE -Wl,-pie -Wl,--no-dynamic-linker %s -o fbsd-pie && "
              "clang --target=x86_64-unknown-netbsd -DNETBSD -static %s -o nbsd && "
              "clang --target=x86_64-unknown-freebsd13 -fPIE -Wl,-pie "
              "-Wl,--dynamic-linker=/libexec/ld-elf.so.1 %s -o fbsd-dyn && "
              /* A sysroot with a stand-in runtime linker and a file of its own. */
              "mkdir -p root/libexec root/etc && echo -n 'from the root' > root/etc/smolvm-root-test && "
              "clang --target=x86_64-unknown-freebsd13 -ffreestanding -fno-stack-protector -nostdlib "
              "-O1 -fuse-ld=lld -fPIE -Wl,-pie -Wl,--no-dynamic-linker -Wl,-e,rtld_start "
              SMOLVM_SOURCE_ROOT "/tests/bsduser/rtld.c -o root/libexec/ld-elf.so.1",
              flags, flags, flags, flags) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

/* Runs smolvm bsd-user ARGS in the scratch dir; output in out/err. */
static int run(const char *args);

/* A test program's case must exit 0; else the step it failed (its exit
 * status) is reported, with --strace output in err. */
static void expect_program(const char *args)
{
    char traced[256];
    int r = run(args);
    snprintf(traced, sizeof(traced), "--strace %s", args);
    if (r != 0)
        fail_msg("%s: step %d failed (see err: %d with --strace)", args, r, run(traced));
}

/* Runs smolvm bsd-user ARGS in the scratch dir; output in out/err. */
static int run(const char *args)
{
    return sh("timeout 20 '%s' bsd-user %s > out 2> err", smolvm, args);
}

static void test_hello_and_exit_status(void **state)
{
    (void)state;
    assert_int_equal(run("./fbsd hello"), 7);
    assert_int_equal(sh("grep -qx 'hello from a BSD program' out"), 0);
    assert_int_equal(run("./fbsd-pie hello"), 7); /* position independent */
    assert_int_equal(run("./nbsd hello"), 7);     /* the NetBSD personality */
    assert_int_equal(run("./fbsd args one 'two words'"), 4);
    assert_int_equal(sh("printf 'one\\ntwo words\\n' | cmp -s - out"), 0);
}

static void test_files_memory_sysctl(void **state)
{
    (void)state;
    assert_int_equal(run("./fbsd files"), 0);
    assert_int_equal(sh("test \"$(cat bsd-file)\" = written"), 0);
    assert_int_equal(run("./fbsd memory"), 0);
    assert_int_equal(run("./fbsd-pie memory"), 0);
    assert_int_equal(run("./nbsd memory"), 0); /* NetBSD's seven-argument mmap */
    assert_int_equal(run("./fbsd sysctl"), 0);
    expect_program("./fbsd dirs");
    assert_int_equal(sh("test ! -e bsd-dir"), 0);
}

/* Threads on their own TLS (sysarch, thr_new, thr_exit's wake, _umtx_op
 * waits with timeouts), affinity and resource limits. */
static void test_threads(void **state)
{
    (void)state;
    expect_program("./fbsd threads");
}

/* FreeBSD signal delivery: a handler gets the signal, a siginfo and a
 * ucontext whose changes sigreturn brings back (a register, and after a
 * fault the place to go on from); a masked signal waits, pending. */
static void test_signals(void **state)
{
    (void)state;
    expect_program("./fbsd signals");
    expect_program("./nbsd signals"); /* NetBSD's layouts and trampoline */
    for (int i = 0; i < 5; i++)
        expect_program("./fbsd storm"); /* signals arriving during sigreturn */
    /* ... and while a call's answer goes back, the program's %fs loaded
     * (getpid answered in the signal entry or the stub's jump, sigprocmask
     * by the C path, with or without a signal) */
    for (int i = 0; i < 3; i++)
        expect_program("./fbsd callstorm");
}

/* fork (both returns), wait4's status, execve of a BSD program (still
 * under bsd-user) and of a host one, a missing one's ENOENT, ECHILD. */
/* The calls the signal entry answers itself (clock_gettime, nanosleep,
 * read, ...) answer as the C path does; a signal that comes while one is
 * blocked in the kernel is delivered before its answer goes back (its
 * site rewritten: the call made without a SIGSYS). */
static void test_signal_during_call(void **state)
{
    (void)state;
    expect_program("./fbsd eintr");
    expect_program("./fbsd direct");
}

static void test_processes(void **state)
{
    (void)state;
    expect_program("./fbsd processes");
    assert_int_equal(sh("grep -qx 'hello from a BSD program' out"), 0);
}

/* Sockets with BSD sockaddrs (sa_len, 8-bit family), SOL_SOCKET options,
 * MSG_* flags and msghdrs translated: UNIX pairs, TCP and UDP on loopback. */
static void test_sockets(void **state)
{
    (void)state;
    expect_program("./fbsd sockets");
}

/* File system information in each BSD's struct (FreeBSD statfs, NetBSD
 * statvfs): the type by its BSD name, the mount point and the block count
 * the host's own tools (findmnt, stat -f) give for the same directory. */
static void test_fsinfo(void **state)
{
    static const char expect[] =
        "t=$(findmnt -n -o FSTYPE -T .); case $t in ext[234]) t=ext2fs;; overlay) t=unionfs;; esac; "
        "echo \"$t $(findmnt -n -o TARGET -T .) $(stat -f -c %%b .)\" > fs.expect";
    (void)state;
    assert_int_equal(sh(expect), 0);
    expect_program("./fbsd fsinfo");
    assert_int_equal(sh("diff -u fs.expect out >&2"), 0);
    expect_program("./nbsd fsinfo");
    assert_int_equal(sh("diff -u fs.expect out >&2"), 0);
}

/* ioctl: FIONREAD/FIOCLEX on a pipe, ENOTTY for terminal requests there;
 * in a pseudo-terminal (script(1) makes one), termios in BSD numbering
 * both ways and the window size. */
static void test_ioctl_termios(void **state)
{
    (void)state;
    expect_program("./fbsd ioctl");
    int r = sh("script -qec \"'%s' bsd-user ./fbsd tty\" /dev/null > tty.out 2>&1", smolvm);
    if (r != 0)
        fail_msg("tty: step %d failed", r);
}

/* Where Syscall User Dispatch is missing a seccomp filter on the
 * instruction pointer catches the guest's calls instead: the same
 * programs pass that way (forced here), threads and children included. */
static void test_seccomp_fallback(void **state)
{
    static const char *const cases[] = {"./fbsd threads", "./fbsd signals", "./fbsd processes",
                                        "./fbsd sockets", "./nbsd lwp", "./fbsd storm",
                                        "./fbsd callstorm"};
    (void)state;
    setenv("SMOLVM_BSDUSER_DISPATCH", "seccomp", 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_program(cases[i]);
    assert_int_equal(run("./fbsd hello"), 7);
    unsetenv("SMOLVM_BSDUSER_DISPATCH");
}

/* --root: a dynamic executable starts in its runtime linker, loaded from
 * the sysroot with AT_BASE and AT_ENTRY set; absolute paths are looked
 * up in the sysroot first; a sysroot without the linker, or none at all:
 * one line. */
static void test_root(void **state)
{
    (void)state;
    assert_int_equal(run("--root root ./fbsd-dyn hello"), 7);
    assert_int_equal(sh("grep -qx 'hello from a BSD program' out && "
                        "grep -qx 'rtld: starting the program' err"), 0);
    expect_program("--root root ./fbsd rootfile");
    assert_int_equal(run("./fbsd rootfile"), 1); /* no sysroot: the host has no such file */
    assert_int_equal(sh("mkdir -p emptyroot"), 0);
    assert_int_equal(run("--root emptyroot ./fbsd-dyn hello"), 1);
    assert_int_equal(sh("grep -q \"runtime linker 'emptyroot/libexec/ld-elf.so.1'\" err && "
                        "test $(wc -l < err) -eq 1"), 0);
    /* A --root that is not there is refused before anything runs. */
    assert_int_equal(run("--root /nonexistent ./fbsd hello"), 1);
    assert_int_equal(sh("grep -q \"^smolvm: bsd-user: --root '/nonexistent': No such file\" err && "
                        "test $(wc -l < err) -eq 1 && ! test -s out"), 0);
}

/* --root R for every call that takes a path: with B a directory both the
 * host and R have, the program's unlink, mkdir(at), rmdir, rename(at),
 * chmod, chown, readlink, access, truncate, utimes, utimensat, link,
 * symlink, open O_CREAT, mkfifo, statfs, pathconf, chflags, chdir (and
 * getcwd), bind and connect of B/... act in R/B and leave the host's B as
 * it was; a new name the host has already (host-only) stays the host's. */
static void test_root_every_path_call(void **state)
{
    static const char both[] = "victim victim2 ren-src ren2-src mode mode2 trunc times times2 linksrc";
    (void)state;
    assert_int_equal(sh("B=$PWD/rb && mkdir -p $B/sub root$B/sub && "
                        "for f in %s; do echo host > $B/$f; echo root-content > root$B/$f; done && "
                        "chmod 644 $B/* root$B/* && echo host > $B/host-only && "
                        "touch root$B/only-in-root && ln -s target-text root$B/link", both), 0);
    expect_program("--root root ./fbsd rootops $PWD/rb");
    /* R/B changed ... */
    assert_int_equal(sh("cd root$PWD/rb && test ! -e victim && test ! -e victim2 && test -d d1 && "
                        "test ! -e d2 && test ! -e d3 && test ! -e ren-src && test -f ren-dst && "
                        "test ! -e ren2-src && test -f ren2-dst && test $(stat -c %%a mode) = 600 && "
                        "test $(stat -c %%a mode2) = 600 && test $(stat -c %%s trunc) = 3 && "
                        "test $(stat -c %%Y times) = 1000000 && test $(stat -c %%Y times2) = 2000000 && "
                        "test $(stat -c %%h linksrc) = 3 && test $(readlink sym) = sym-text && "
                        "test $(readlink sym2) = sym-text && test -f created && test -p fifo && "
                        "test -f sub/rel && test -S sock && test ! -e host-only"), 0);
    /* ... the host's B did not. */
    assert_int_equal(sh("cd rb && for f in %s; do test \"$(cat $f)\" = host || exit 1; done && "
                        "test $(stat -c %%a mode) = 644 && test $(stat -c %%Y times) != 1000000 && "
                        "test \"$(cat host-only)\" = guest && "
                        "test \"$(ls -A | sort | tr '\\n' ' ')\" = "
                        "'host-only linksrc mode mode2 ren-src ren2-src sub times times2 trunc victim victim2 ' && "
                        "test -z \"$(ls -A sub)\"", both), 0);
}

/* NetBSD's LWPs: _lwp_create from getcontext's registers (rip, rsp, rdi,
 * rsi changed), _lwp_park/_lwp_unpark, a park timing out; getdents. */
static void test_netbsd_lwp(void **state)
{
    (void)state;
    expect_program("./nbsd lwp");
}

/* kqueue on epoll: a pipe's readiness with its byte count and udata, once
 * under EV_CLEAR; a user event; a one-shot timer; errors as EV_ERROR
 * events, or the call's error without room; EV_DELETE. */
static void test_kqueue(void **state)
{
    (void)state;
    expect_program("./fbsd kqueue");
    expect_program("./fbsd ksignal"); /* EVFILT_SIGNAL, the signal ignored */
}

/* FreeBSD 11's calls (freebsd11_stat, _fstat, _lstat, _fstatat,
 * _getdirentries, _kevent, _statfs, _getfsstat, _mknod) in their old
 * layouts: what programs built for FreeBSD 11 and Go up to 1.17 call. */
static void test_freebsd11_abi(void **state)
{
    (void)state;
    expect_program("./fbsd freebsd11");
}

/* Failures come back the BSD way: carry set, BSD errno numbers (ENOENT 2,
 * EBADF 9, ENOSYS 78 for what is not supported), and --strace says so. */
static void test_errors_and_strace(void **state)
{
    (void)state;
    assert_int_equal(run("--strace ./fbsd errors"), 0);
    assert_int_equal(sh("grep -q 'open(.*) ERR#2 ENOENT ' err && grep -q 'read(12345,.*) ERR#9 EBADF ' err && "
                        "grep -q 'ptrace(.*) ERR#78 .*(not supported)' err && grep -q 'getpid() = ' err && "
                        "grep -q 'exit(0)' err"), 0);
}

/* --strace -o FILE: the lines go to FILE (stderr stays the program's),
 * arguments decoded as truss does: strings quoted and cut at 32 bytes,
 * flags by name, errno names; a program it execs traces into it too. */
static void test_strace_to_file(void **state)
{
    (void)state;
    assert_int_equal(run("--strace -o trace ./fbsd files"), 0);
    assert_int_equal(sh("test ! -s err && cut -d' ' -f2- trace > calls && printf '%%s\\n' "
                        "'open(\"bsd-file\",O_WRONLY|O_CREAT|O_TRUNC,0644) = 3 (0x3)' "
                        "'write(3,\"written\",7) = 7 (0x7)' 'close(3) = 0 (0x0)' "
                        "'open(\"bsd-file\",O_RDONLY,00) = 3 (0x3)' "
                        "'read(3,\"written\",16) = 7 (0x7)' 'exit(0)' | diff - calls"),
                     0);
    assert_int_equal(run("-o trace ./fbsd args 0123456789012345678901234567890123456789"), 3);
    assert_int_equal(sh("grep -qF 'write(1,\"01234567890123456789012345678901\"...,40) = 40 (0x28)' trace"), 0);
    assert_int_equal(run("-o trace ./fbsd errors"), 0);
    assert_int_equal(sh("grep -qF 'open(\"/no/such/file\",O_RDONLY,00) ERR#2 ENOENT' trace"), 0);
    assert_int_equal(run("-o trace ./fbsd memory"), 0);
    assert_int_equal(sh("grep -qF 'mmap(0x0,1048576,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANON,-1,0x0) = ' trace"), 0);
    assert_int_equal(run("-o trace ./fbsd processes"), 0);
    assert_int_equal(sh("grep -qF 'write(1,\"hello from a BSD program\\n\",25)' trace"), 0);
    assert_int_equal(run("-o trace ./fbsd tracefd"), 0);
    assert_int_equal(sh("grep -qF 'write(1,\"after the closes\\n\",17)' trace"), 0);
    assert_int_equal(run("-o /nonexistent-dir/trace ./fbsd"), 1);
}

/* Where the CPU has no FSGSBASE every %fs switch is an arch_prctl system
 * call, most of a guest call's cost: a guest that never set its own base
 * runs on smolvm's, and its calls switch nothing (smolvm's setup makes
 * two; it was three more per call). Sites not rewritten: every call
 * through SIGSYS. */
static void test_calls_switch_no_needless_fs(void **state)
{
    (void)state;
    if (sh("strace -V > /dev/null 2>&1") != 0)
        skip(); /* no strace here to count them */
    assert_int_equal(sh("SMOLVM_BSDUSER_REWRITE=0 strace -f -qq -e trace=arch_prctl -o calls '%s' "
                        "bsd-user ./fbsd files > /dev/null && test $(grep -c SIGSYS calls) -ge 6 && "
                        "test $(grep -c 'arch_prctl(ARCH_[SG]ET_FS' calls) -le 2", smolvm),
                     0);
}

/* The C path's most frequent calls from rewritten sites (fstat, fstatat,
 * openat, close, sched_yield; FreeBSD's _umtx_op, NetBSD's stat, lstat,
 * _lwp_park, _lwp_unpark: bare.c) are answered on the guest's own %fs
 * base, here an unmapped page (smolvm's code reading its thread-local
 * storage through it would fault): right answers every time, under both
 * BSDs, and no %fs switch but for the rare calls the C path still answers
 * (a kqueue, its close, a fault: 10 of each). The same answers from the C
 * path, every site on SIGSYS. */
static void test_bare_calls(void **state)
{
    (void)state;
    static const char *const progs[] = {"fbsd", "nbsd"};
    for (int i = 0; i < 2; i++) {
        char args[64];
        snprintf(args, sizeof(args), "./%s bare", progs[i]);
        expect_program(args);
        assert_int_equal(sh("SMOLVM_BSDUSER_REWRITE=0 timeout 60 '%s' bsd-user %s", smolvm, args), 0);
        if (sh("strace -V > /dev/null 2>&1") != 0)
            skip(); /* no strace here to count them */
        assert_int_equal(sh("strace -f -qq -e trace=arch_prctl -o calls '%s' bsd-user %s && "
                            "n=$(grep -c 'arch_prctl(ARCH_[SG]ET_FS' calls) && test $n -le 200",
                            smolvm, args),
                         0);
    }
}

/* System call sites rewritten into jumps after their first call: a
 * loop's 1000 getpids and 1000 sigprocmasks (answered by the C path) take
 * one SIGSYS each (4000 and more without rewriting); two sites whose
 * preceding instruction a jump lands inside, from the same function or
 * another, stay as they are (1000 SIGSYS each);
 * all answer right every time, under both BSDs, and %xmm0/%xmm1 keep
 * their values across a call the C path answers. */
static void test_rewritten_sites(void **state)
{
    (void)state;
    expect_program("./fbsd rewrite");
    expect_program("./nbsd rewrite");
    if (sh("strace -V > /dev/null 2>&1") != 0)
        skip(); /* no strace here to count them */
    static const char count[] = "%s strace -f -qq -e trace=none -e signal=SIGSYS -o sigs '%s' "
                                "bsd-user ./%s rewrite && n=$(grep -c SIGSYS sigs) && test $n %s";
    assert_int_equal(sh(count, "", smolvm, "fbsd", "-ge 2000 -a $n -lt 2010"), 0);
    assert_int_equal(sh(count, "", smolvm, "nbsd", "-ge 2000 -a $n -lt 2010"), 0);
    assert_int_equal(sh(count, "SMOLVM_BSDUSER_REWRITE=0", smolvm, "fbsd", "-ge 4000"), 0);
}

static void test_refusals_and_faults(void **state)
{
    (void)state;
    assert_int_equal(run("./fbsd fault"), 139);
    assert_int_equal(sh("grep -q 'fbsd faulted: Segmentation fault at address 0x10' err"), 0);
    assert_int_equal(run("./fbsd-dyn"), 1);
    assert_int_equal(sh("grep -q 'dynamic executable: give --root' err && test $(wc -l < err) -eq 1"), 0);
    assert_int_equal(run("/bin/true"), 1);
    assert_int_equal(sh("grep -q 'not a FreeBSD or NetBSD executable' err"), 0);
    assert_int_equal(run("/etc/hostname"), 1);
    assert_int_equal(sh("grep -q 'not an ELF file' err"), 0);
    assert_int_equal(sh("head -c 100 fbsd > truncated && chmod +x truncated"), 0);
    assert_int_equal(run("./truncated"), 1);
    assert_int_equal(run(""), 2);
}

/* --register installs the binfmt_misc entries: ./fbsd and a NetBSD
 * program branded OSABI 2 as Go brands them run under bsd-user, argv
 * whole; --unregister removes both. Run in a user namespace of its own,
 * whose binfmt_misc (Linux 6.7+) goes with it: nothing is left on the
 * host, even when a step fails. */
static void test_binfmt_misc(void **state)
{
    (void)state;
    if (sh("unshare --user --map-root-user --mount sh -c "
           "'mount -t binfmt_misc none /proc/sys/fs/binfmt_misc' 2>/dev/null") != 0)
        skip(); /* no binfmt_misc of a user namespace's own here (Linux < 6.7, or no userns) */
    assert_int_equal(sh("cp nbsd nbsd-go && printf '\\002' | "
                        "dd of=nbsd-go bs=1 seek=7 conv=notrunc status=none"),
                     0);
    assert_int_equal(sh("unshare --user --map-root-user --mount sh -c '"
                        "\"$0\" bsd-user --register && "
                        "grep -qx \"flags: PF\" /proc/sys/fs/binfmt_misc/smolvm-freebsd && "
                        "grep -qx \"flags: PF\" /proc/sys/fs/binfmt_misc/smolvm-netbsd && "
                        "timeout 60 ./fbsd args one two > out; echo $? > status; "
                        "timeout 60 ./nbsd-go args three > nout; echo $? > nstatus; "
                        "\"$0\" bsd-user --unregister && "
                        "! test -e /proc/sys/fs/binfmt_misc/smolvm-freebsd && "
                        "! test -e /proc/sys/fs/binfmt_misc/smolvm-netbsd' '%s' 2> err",
                        smolvm),
                     0);
    assert_int_equal(sh("test $(cat status) = 4 && printf 'one\\ntwo\\n' | cmp - out"), 0);
    assert_int_equal(sh("test $(cat nstatus) = 3 && printf 'three\\n' | cmp - nout"), 0);
    assert_int_equal(run("--register extra"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_and_exit_status),
        cmocka_unit_test(test_files_memory_sysctl),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_kqueue),
        cmocka_unit_test(test_freebsd11_abi),
        cmocka_unit_test(test_netbsd_lwp),
        cmocka_unit_test(test_signals),
        cmocka_unit_test(test_signal_during_call),
        cmocka_unit_test(test_rewritten_sites),
        cmocka_unit_test(test_processes),
        cmocka_unit_test(test_sockets),
        cmocka_unit_test(test_fsinfo),
        cmocka_unit_test(test_ioctl_termios),
        cmocka_unit_test(test_seccomp_fallback),
        cmocka_unit_test(test_root),
        cmocka_unit_test(test_root_every_path_call),
        cmocka_unit_test(test_bare_calls),
        cmocka_unit_test(test_errors_and_strace),
        cmocka_unit_test(test_strace_to_file),
        cmocka_unit_test(test_refusals_and_faults),
        cmocka_unit_test(test_binfmt_misc),
        cmocka_unit_test(test_calls_switch_no_needless_fs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
