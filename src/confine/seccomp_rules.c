/* The rules of each kind of VMM thread (seccomp_rules.h), made with
 * libseccomp from lists of the calls each kind makes once the guest runs:
 * everything before (opening files, mapping memory, making the VM and its
 * threads) is done by then. Each list names why its calls are there. */
#include "confine/seccomp_rules.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h> /* RENAME_NOREPLACE */
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define END NULL
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Every thread: the C library, malloc, locks, and the signal handlers that
 * may run on any thread. */
static const char *const runtime_calls[] = {
    "futex",                                  /* mutexes, condition variables, joins */
    "mmap", "munmap", "mremap", "mprotect",   /* malloc's arenas grow and shrink */
    "brk", "madvise",                         /* malloc's main heap; giving memory back */
    "rt_sigreturn",                           /* the end of a signal handler (the vCPU kick, SIGTERM's stop) */
    "rt_sigprocmask",                         /* pthread functions block signals around their work */
    "exit", "exit_group",                     /* a thread ends; the process ends after a violation */
    "gettid", "getpid",                       /* log lines; tgkill's own process */
    "clock_gettime", "clock_nanosleep",       /* timeouts and trace marks (the vDSO's fallback) */
    "gettimeofday", "time",                   /* time() and the log's dates, where the vDSO has none */
    "nanosleep", "sched_yield",               /* waits and spins of the C library */
    "restart_syscall",                        /* an interrupted sleep goes on */
    "getrandom",                              /* malloc's and the hash tables' seeds */
    "write", "close",                         /* log lines on stderr; eventfd signals; an fd done with */
    END,
};

/* I/O on files and eventfds already open: a disk, an eventfd, a socket
 * given to the thread. Nothing here opens anything. */
static const char *const fd_io_calls[] = {
    "read", "readv", "pread64", "preadv", "preadv2",       /* disk reads, eventfd counts */
    "write", "writev", "pwrite64", "pwritev", "pwritev2",  /* disk writes, eventfd signals */
    "lseek", "fstat", "newfstatat", "statx",               /* a file's size (fstat is newfstatat(fd, "")) */
    "poll", "ppoll",                                       /* waiting on queue kicks and sockets */
    "fcntl",                                               /* O_NONBLOCK of a socket */
    "fsync", "fdatasync",                                  /* a guest's flush reaches the disk */
    "ftruncate", "fallocate",                              /* a qcow2 file grows; discard punches holes */
    END,
};

/* Sockets already connected (the slirp helper's, an accepted vsock peer):
 * a thread with write() could write to them anyway. */
static const char *const socket_io_calls[] = {
    "sendto", "recvfrom", "sendmsg", "recvmsg", /* send() and recv() are these */
    "shutdown",                                 /* a vsock stream's half close */
    "getsockopt",                               /* SO_ERROR of a non-blocking connect */
    END,
};

/* File operations by name below a folder the thread holds (a share's
 * root, the VM's instance and runtime folders). */
static const char *const path_calls[] = {
    "open", "openat",                           /* save's new files; the share's /proc/self/fd reopens */
    "openat2",                                  /* a share's names, one component RESOLVE_BENEATH */
    "mkdir", "mkdirat", "rmdir",                /* folders of a share; save's and stop's folders */
    "unlink", "unlinkat",                       /* deletion in a share; stop removes its sockets */
    "rename", "renameat", "renameat2",          /* rename in a share; save and log rotation replace files */
    "link", "linkat", "symlink", "symlinkat",   /* links made in a share */
    "readlink", "readlinkat",                   /* a link read in a share */
    "stat", "lstat", "access", "faccessat", "faccessat2",
    "chmod", "fchmod", "fchmodat",              /* FUSE_SETATTR; a socket's mode */
    "fchown", "fchownat",                       /* FUSE_SETATTR */
    "utimensat",                                /* FUSE_SETATTR (futimens is utimensat(fd, NULL)) */
    "statfs", "fstatfs",                        /* FUSE_STATFS */
    "getdents64",                               /* FUSE_READDIR; stop's folder removal */
    "flock",                                    /* locks of the store and instance files */
    END,
};

/* The event loop (the control socket, save, stop and the teardown), the
 * working-set recorder, and threads these start (save's compressors). */
static const char *const vmm_calls[] = {
    "accept", "accept4",                        /* a client of the control socket */
    "rt_sigaction",                             /* the stop signals are handed back after the run */
    "sigaltstack",                              /* a thread's signal stack */
    "wait4", "kill",                            /* the slirp helper process is ended and reaped */
    "getuid", "geteuid", "getgid", "getegid",   /* the runtime folder's owner */
    "getcwd",                                   /* realpath() of a relative path (a bundle's layers) */
    "sched_getaffinity", "sysinfo",             /* sysconf(): save's compressor threads, RAM size */
    "set_robust_list", "rseq",                  /* a thread save starts sets these up */
    /* No socket(), no connect(): migrate's link comes connected with the
     * request (recvmsg), made by `smolvm migrate` outside the VMM. */
    END,
};

/* The sanitizer runtimes (ASan, LSan, UBSan of the test builds) make calls
 * of their own on any thread: their allocator's memory, their reports
 * (which read /proc/self/maps), and LeakSanitizer's check at exit, which
 * stops the threads from a tracer it clones. The shipped build has none.
 * The tracer gets the exiting thread's filter with SIGSYS blocked, so a
 * call refused here kills it without a word and the exit spins forever
 * waiting for it (it lists the threads with getdents, the old call). */
#ifdef CONFINE_SANITIZED
static const char *const sanitizer_calls[] = {
    "sigaltstack", "prctl", "prlimit64", "sched_getaffinity",
    "open", "openat", "readlink", "getdents", "getdents64", "getppid",
    "clone", "ptrace", "wait4", "process_vm_readv", "rt_sigaction", "kill",
    END,
};
#endif

static int allow_all(scmp_filter_ctx ctx, const char *const *names)
{
    for (; *names; names++) {
        int nr = seccomp_syscall_resolve_name(*names);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a call of this architecture */
        int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (r < 0 && r != -EEXIST)
            return r;
    }
    return 0;
}

/* ioctl(fd, request): request's low 32 bits are the number (the C
 * library's unsigned long may carry garbage above them). */
static int allow_ioctl(scmp_filter_ctx ctx, unsigned long request)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, request));
}

static int allow_ioctls(scmp_filter_ctx ctx, const unsigned long *requests, size_t n)
{
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++)
        r = allow_ioctl(ctx, requests[i]);
    return r;
}

/* The kick of a vCPU, pthread_cancel and abort() signal threads of this
 * process only. */
static int allow_own_signals(scmp_filter_ctx ctx, pid_t self)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)self));
}

/* Every device thread raises its interrupt: through an irqfd (a write) or,
 * where the kernel has none, KVM_IRQ_LINE on the VM. isatty() of stdio.
 * virtio-net's threads set a TAP's offloads to what the guest negotiated. */
static const unsigned long device_ioctls[] = {KVM_IRQ_LINE, TCGETS, TUNSETOFFLOAD};

/* The terminal: its mode (put back at exit) and size. */
static const unsigned long terminal_ioctls[] = {TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ};

static int build_vcpu(scmp_filter_ctx ctx)
{
    /* KVM_RUN enters the guest; a device the exit lands on raises its
     * interrupt with KVM_IRQ_LINE (the serial port, i8042); stdio's
     * isatty() is TCGETS. The devices' synchronous paths (without a
     * queue thread) do their disk I/O and send frames on this thread. */
    static const unsigned long ioctls[] = {KVM_RUN};
    int r = allow_all(ctx, fd_io_calls);
    if (r == 0)
        r = allow_all(ctx, socket_io_calls);
    if (r == 0)
        r = allow_ioctls(ctx, device_ioctls, COUNT(device_ioctls));
    return r ? r : allow_ioctls(ctx, ioctls, COUNT(ioctls));
}

/* A device's queue thread: a disk's reads and writes, virtio-net's frames
 * (send and recv on the slirp helper's socket: its queue thread sends what
 * the guest queued, its own thread receives). */
static int build_device(scmp_filter_ctx ctx)
{
    int r = allow_all(ctx, fd_io_calls);
    if (r == 0)
        r = allow_all(ctx, socket_io_calls);
    return r ? r : allow_ioctls(ctx, device_ioctls, COUNT(device_ioctls));
}

/* Unix sockets only: a guest that takes the vsock thread can reach the
 * host's unix sockets it could already name, not the network. */
static int allow_unix_sockets(scmp_filter_ctx ctx)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                            SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
}

static int build_vsock(scmp_filter_ctx ctx)
{
    /* accept4: exec and cp connect to the VM's socket; connect: a guest
     * connection to a host port is a unix socket "PATH_PORT"; FIONREAD:
     * how much a host peer has sent. */
    static const char *const calls[] = {"accept4", "connect", END};
    int r = build_device(ctx);
    if (r == 0)
        r = allow_all(ctx, calls);
    if (r == 0)
        r = allow_unix_sockets(ctx);
    return r ? r : allow_ioctl(ctx, FIONREAD);
}

static int build_fs(scmp_filter_ctx ctx)
{
    int r = build_device(ctx);
    return r ? r : allow_all(ctx, path_calls);
}

static int build_console(scmp_filter_ctx ctx)
{
    /* The log: rotated by rename, the new one opened and put in place
     * with dup2. */
    static const char *const calls[] = {"open", "openat", "rename", "renameat", "renameat2",
                                        "dup2", END};
    int r = allow_all(ctx, fd_io_calls);
    if (r == 0)
        r = allow_all(ctx, calls);
    return r ? r : allow_ioctls(ctx, terminal_ioctls, COUNT(terminal_ioctls));
}

static int build_vmm(scmp_filter_ctx ctx)
{
    int r = build_fs(ctx);
    if (r == 0)
        r = allow_all(ctx, vmm_calls);
    if (r == 0)
        r = allow_ioctls(ctx, terminal_ioctls, COUNT(terminal_ioctls));
    /* A migrated VM's teardown runs at SCHED_IDLE (machine_destroy()):
     * that policy only, no other. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sched_setscheduler), 1,
                             SCMP_A1(SCMP_CMP_EQ, SCHED_IDLE));
    /* Save reads the vCPUs' and the VM's state, a restored guest's clock
     * is set: the KVM ioctls (type 0xAE), on the fds KVM gave us. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00u, (scmp_datum_t)KVMIO << 8));
    /* A first start's RAM is plain memory again when the VM stops before
     * every chunk was placed (machine/ram_faults.c). */
    if (r == 0)
        r = allow_ioctl(ctx, UFFDIO_UNREGISTER);
    /* Threads (save's compressors), never a new process. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    return r;
}

/* A first start's two threads (machine/ram_faults.c): one places the
 * chunks the guest faults on, the other fills the rest in and writes the
 * memory cache, names it when whole and writes the working set beside it;
 * the thread that syncs and names a cache unpacked before the guest ran
 * (machine/cache.c) is under it as well.
 * They read the bundle and write the cache through descriptors opened
 * before; a chunk that fails its check stops the VM (a write to its stop
 * eventfd, the vCPUs' kicks: every thread's calls). */
static int build_memory(scmp_filter_ctx ctx)
{
    static const unsigned long ioctls[] = {UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WAKE,
                                           UFFDIO_UNREGISTER};
    /* sched_setscheduler: the filler runs at SCHED_IDLE, behind the guest. */
    static const char *const calls[] = {"sched_setscheduler", END};
    int r = allow_all(ctx, fd_io_calls);
    if (r == 0)
        r = allow_all(ctx, path_calls);
    if (r == 0)
        r = allow_all(ctx, calls);
    return r ? r : allow_ioctls(ctx, ioctls, COUNT(ioctls));
}

/* A receive's relay waits for the VMM's byte (the VM has arrived), then
 * gives the arrival's folder its name in the folder it holds, never over
 * another (jail.c name_arrival()). */
static int allow_arrival(scmp_filter_ctx ctx, const struct seccomp_values *v)
{
    int r = 0;

    if (v->relay_arrival_pipe >= 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(read), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)v->relay_arrival_pipe));
    if (r == 0 && v->relay_arrival_dir >= 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(renameat2), 3,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)v->relay_arrival_dir),
                             SCMP_A2(SCMP_CMP_EQ, (scmp_datum_t)v->relay_arrival_dir),
                             SCMP_A4(SCMP_CMP_EQ, RENAME_NOREPLACE));
    return r;
}

/* The relay (confine_relay()) runs no guest code and reads nothing of the
 * guest's, but it stays outside the VMM's pid namespace: a filter keeps
 * it to waiting and passing signals on even so. */
static int build_relay(scmp_filter_ctx ctx, const struct seccomp_values *v)
{
    int r = 0;

    /* waitpid(): the VMM's end, its status. SIGTERM and SIGHUP go on to
     * the VMM. (Never pid 0 or -1: a process group, every process.) */
    if (v->relay_vmm > 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(wait4), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)v->relay_vmm));
    if (r == 0 && v->relay_vmm > 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)v->relay_vmm));
    /* A VMM killed by a signal is passed on as the relay's own end, its
     * handler reset first. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)v->self));
    if (r == 0)
        r = allow_all(ctx, (const char *const[]){"rt_sigaction", END});
    /* cgroup_leave(): its pid written to cgroup.procs held open (write),
     * the VM's cgroup removed from the folder held open. */
    if (r == 0 && v->relay_cgroup_folder >= 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(unlinkat), 2,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)v->relay_cgroup_folder),
                             SCMP_A2(SCMP_CMP_EQ, AT_REMOVEDIR));
    /* The VM's leftovers (jail.h): each looked at (still the file the
     * jail saw?) and removed, by name in a folder held open. */
    for (unsigned i = 0; i < v->relay_leftover_count && r == 0; i++) {
        scmp_datum_t dir = (scmp_datum_t)v->relay_leftover_dirs[i];
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), 1,
                             SCMP_A0(SCMP_CMP_EQ, dir));
        if (r == 0)
            r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(unlinkat), 1,
                                 SCMP_A0(SCMP_CMP_EQ, dir));
    }
    return r ? r : allow_arrival(ctx, v);
}

static const int relay_slots[SECCOMP_RELAY_SLOTS] = {
    SECCOMP_RELAY_FD_BASE,     SECCOMP_RELAY_FD_BASE + 1, SECCOMP_RELAY_FD_BASE + 2,
    SECCOMP_RELAY_FD_BASE + 3, SECCOMP_RELAY_FD_BASE + 4, SECCOMP_RELAY_FD_BASE + 5,
    SECCOMP_RELAY_FD_BASE + 6, SECCOMP_RELAY_FD_BASE + 7,
};

void seccomp_relay_slot_values(struct seccomp_values *v, pid_t self, pid_t vmm)
{
    *v = (struct seccomp_values){
        .self = self,
        .relay_vmm = vmm,
        .relay_cgroup_folder = -1,
        .relay_leftover_dirs = relay_slots,
        .relay_leftover_count = SECCOMP_RELAY_SLOTS,
        .relay_arrival_pipe = -1,
        .relay_arrival_dir = -1,
    };
}

bool seccomp_relay_in_slots(const struct seccomp_values *v)
{
    if (v->relay_vmm <= 0 || v->relay_cgroup_folder >= 0 || v->relay_arrival_pipe >= 0 ||
        v->relay_arrival_dir >= 0 || v->relay_leftover_count > SECCOMP_RELAY_SLOTS)
        return false;
    for (unsigned i = 0; i < v->relay_leftover_count; i++)
        if (v->relay_leftover_dirs[i] != relay_slots[i])
            return false;
    return true;
}

/* The kinds whose rules name nothing but constants (and the own pid, in
 * build()); the relay's are built apart. */
static int (*const builders[CONFINE_THREAD_KINDS])(scmp_filter_ctx) = {
    [CONFINE_VCPU] = build_vcpu,
    [CONFINE_DEVICE] = build_device,
    [CONFINE_VSOCK] = build_vsock,
    [CONFINE_FS] = build_fs,
    [CONFINE_CONSOLE] = build_console,
    [CONFINE_VMM] = build_vmm,
    [CONFINE_MEMORY] = build_memory,
};

bool seccomp_rules_prebuildable(enum confine_thread kind)
{
    return kind < CONFINE_THREAD_KINDS && builders[kind] != NULL;
}

static int build(scmp_filter_ctx ctx, enum confine_thread kind, const struct seccomp_values *v)
{
    int r = allow_all(ctx, runtime_calls);
    /* The one rule naming the own pid (SECCOMP_RULES_NAMING_SELF). */
    if (r == 0)
        r = allow_own_signals(ctx, v->self);
    /* clone3's arguments are out of a filter's reach: ENOSYS makes the C
     * library's pthread_create fall back to clone, which it can check. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
#ifdef CONFINE_SANITIZED
    if (r == 0)
        r = allow_all(ctx, sanitizer_calls);
#endif
    if (r == 0)
        r = kind == CONFINE_RELAY ? build_relay(ctx, v) : builders[kind](ctx);
    return r;
}

/* What seccomp_load would load (libseccomp 2.5 exports only to a file). */
static int export(scmp_filter_ctx ctx, struct sock_fprog *out)
{
    int fd = memfd_create("smolvm-seccomp", MFD_CLOEXEC);
    struct stat st;
    int r = fd < 0 ? -errno : seccomp_export_bpf(ctx, fd);

    if (r == 0 && fstat(fd, &st) < 0)
        r = -errno;
    if (r == 0 && (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) ||
                   st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS))
        r = -E2BIG;
    if (r == 0 && !(out->filter = malloc((size_t)st.st_size)))
        r = -ENOMEM;
    if (r == 0 && pread(fd, out->filter, (size_t)st.st_size, 0) != st.st_size) {
        free(out->filter);
        r = -EIO;
    }
    if (r == 0)
        out->len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
    if (fd >= 0)
        close(fd);
    return r;
}

int seccomp_rules_program(enum confine_thread kind, enum confine_seccomp mode,
                          const struct seccomp_values *values, struct sock_fprog *out)
{
    scmp_filter_ctx ctx;
    int r;

    *out = (struct sock_fprog){0};
    if (kind >= CONFINE_THREAD_KINDS || mode == CONFINE_SECCOMP_OFF)
        return -EINVAL;
    ctx = seccomp_init(mode == CONFINE_SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
    if (!ctx)
        return -ENOMEM;
    /* The calls in a binary tree, not one chain: a call is judged in ~8
     * comparisons, not up to one per rule; and the kernel, which runs the
     * filter for every call number as it loads it (to know which it may
     * allow without running it again), does ~450 of those walks per
     * thread (seccomp_us in bench jail_bench, nested L1). */
    r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (r == 0)
        r = build(ctx, kind, values);
    if (r == 0)
        r = export(ctx, out);
    seccomp_release(ctx);
    return r;
}

int seccomp_patch(struct sock_filter *insns, size_t len, uint32_t sentinel, uint32_t value,
                  unsigned expected)
{
    unsigned found = 0;

    for (size_t i = 0; i < len; i++) {
        if (insns[i].k != sentinel)
            continue;
        if (insns[i].code != (BPF_JMP | BPF_JEQ | BPF_K) || ++found > expected)
            return -EINVAL;
    }
    if (found != expected)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        if (insns[i].k == sentinel)
            insns[i].k = value;
    return 0;
}

bool seccomp_program_holds(const struct sock_filter *insns, size_t len, uint32_t k)
{
    for (size_t i = 0; i < len; i++)
        if (insns[i].k == k)
            return true;
    return false;
}
