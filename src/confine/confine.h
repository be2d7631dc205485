/* Confinement of the VMM process: what code that a hostile guest takes over
 * (through a bug in a device's parser) can still do on the host.
 *
 * Today: one seccomp filter per kind of thread (seccomp.c), each allowing
 * only the system calls that kind of thread makes, installed by each thread
 * before the guest runs. A forbidden call ends the process with one line:
 *     smolvm: run: seccomp: thread vcpu0 made a forbidden system call execve (nr 59)
 * The jail (namespaces, landlock; jail.h) is apart and says what it got
 * through confine_description().
 *
 * The process-wide mode is set once, by run and start, before any thread of
 * the VM exists; the default (for every other program and the unit tests)
 * is no filters. */
#ifndef SMOLVM_CONFINE_CONFINE_H
#define SMOLVM_CONFINE_CONFINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Defined in the ASan builds (the test builds), whose filters also allow
 * the calls the sanitizer runtimes make on any thread (seccomp.c). */
#if defined(__SANITIZE_ADDRESS__)
#define CONFINE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONFINE_SANITIZED 1
#endif
#endif

enum confine_seccomp {
    CONFINE_SECCOMP_ON,  /* forbidden calls end the process (run's and start's default) */
    CONFINE_SECCOMP_OFF, /* no filters */
    CONFINE_SECCOMP_LOG, /* forbidden calls go on, logged by the kernel (dmesg, audit) */
};

/* The kinds of thread of a VMM, each with its own filter. */
enum confine_thread {
    CONFINE_VCPU,    /* runs the guest, dispatches its port and MMIO exits */
    CONFINE_DEVICE,  /* a virtio device's queue thread, virtio-net's: I/O on open files and sockets */
    CONFINE_VSOCK,   /* virtio-vsock's: accepts and makes unix-socket connections */
    CONFINE_FS,      /* virtio-fs's workers: file operations below the shared folder */
    CONFINE_CONSOLE, /* the console's writer: the terminal, or a log it rotates */
    CONFINE_VMM,     /* the event loop (control socket, save, stop) and its helpers */
    CONFINE_MEMORY,  /* a first start's RAM: faults served from the bundle, the cache filled */
    CONFINE_RELAY,   /* the jail's relay outside the VMM's pid namespace (confine_relay()) */
    CONFINE_THREAD_KINDS
};

/* Sets the mode for this process; verb ("run", "start") names the
 * violation's line. Installs the violation handler when filters are on.
 * Returns 0, or -1 after err_set() when the kernel has no seccomp filters. */
int confine_seccomp_set(enum confine_seccomp mode, const char *verb);
enum confine_seccomp confine_seccomp_mode(void);

/* Names the calling thread (at most 15 characters, in /proc too) and
 * installs kind's filter in it. Does nothing when the mode is off. A filter
 * that cannot be installed ends the process with one line: a VM the user
 * asked to confine never runs unconfined. */
void confine_thread(enum confine_thread kind, const char *name);

/* Threads made ahead (thread_ahead.c), for a VMM that waits before it
 * knows its machine (a spare's, cli/start.c): counts[kind] threads of each
 * kind made now, each with its filter loaded (and, drop_capabilities,
 * its capabilities dropped first: a jailed VMM's main thread drops its
 * own once its root is built), waiting for the work
 * confine_thread_start() hands one; returns once all are. Nothing when
 * the mode is off; a thread that cannot be made is made later, as ever. */
void confine_threads_ahead(const unsigned counts[CONFINE_THREAD_KINDS], bool drop_capabilities);

/* pthread_create(thread, NULL, fn, arg) for a thread of kind (whose fn
 * calls confine_thread(kind, ...) first): one made ahead of that kind
 * when one waits, so its confine_thread() loads nothing; a new thread
 * otherwise. 0 or an error number, as pthread_create. */
int confine_thread_start(pthread_t *thread, enum confine_thread kind, void *(*fn)(void *),
                         void *arg);

/* Those made ahead and never handed work end (joined), and every later
 * confine_thread_start() makes a new thread. */
void confine_threads_ahead_end(void);

/* confine_thread() of a thread made ahead: its load counted apart. */
void confine_thread_ahead(enum confine_thread kind, const char *name);

/* What the jail's relay (jail.c) holds once it has forked the VMM. */
struct confine_relay_holds {
    int cgroup_folder;        /* the VM's cgroup is removed from it (-1: none) */
    const int *leftover_dirs; /* folders it removes the VM's names from (jail.h) */
    unsigned leftover_count;
    int arrival_pipe;         /* a receive's: the VMM's one byte (-1: none) */
    int arrival_dir;          /* where the arrival's folder is renamed (-1: none) */
};

/* The relay's filter lets it wait for the VMM, pass signals on to it, end
 * itself as the VMM ended, remove the VM's cgroup, look at and remove
 * names in the folders it holds open, read the arrival's byte and rename
 * within the arrival's folder (never over a name: RENAME_NOREPLACE) --
 * nothing else. */
void confine_relay(pid_t vmm, const struct confine_relay_holds *holds);

/* The mode, for the VM's status ("seccomp"): "on", "log" or "off". */
const char *confine_seccomp_name(void);

/* Only in test builds (sanitizer builds, SMOLVM_TEST_HOOKS) and only when
 * SMOLVM_TEST_SECCOMP_VIOLATION is set in the environment: makes the
 * calling (device) thread try a call its filter forbids, for the nested
 * test that checks the process is ended with its reason. Elsewhere: no-op. */
void confine_test_violation(void);

#endif
