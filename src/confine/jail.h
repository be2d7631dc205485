/* Confining the VMM before it builds a VM (--jail): the files it may reach
 * are a list (a plan), and the strongest confinement the host allows keeps
 * it to them:
 *   jail (jail.c): new user, mount, ipc, pid (the VMM forks into it: its
 *     parent stays outside, relaying its exit) and, unless the VM's
 *     network needs the host's, network namespaces; the
 *     root is a tmpfs holding only the plan's paths, bind-mounted at their
 *     own paths (read-only where read-only); every capability dropped;
 *   landlock (landlock.c): without the privileges for namespaces, the
 *     kernel's landlock LSM restricts file access to the same paths;
 *   none: neither is there, and the VM says so.
 * All of them set no_new_privs. The VMM must still be one thread (a user
 * namespace and landlock are per thread: every thread made after inherits
 * them). Resource limits (cgroup.c) are apart: --cpu-quota, --mem-limit. */
#ifndef SMOLVM_CONFINE_JAIL_H
#define SMOLVM_CONFINE_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CONFINE_MAX_PATHS 64

struct confine_path {
    char *path;     /* absolute; a file or a folder (with what is under it) */
    bool writable;
    bool folder;    /* as planned: the jail binds it onto a folder, else a file */
};

/* A symbolic link the jail makes again (/lib64 -> usr/lib64: programs
 * name their loader through it). */
struct confine_link {
    char *path, *target;
};
#define CONFINE_MAX_LINKS 8

/* A name in a folder outside the jail that the relay removes once the
 * VMM has ended (jail only): what the VMM cannot remove itself, being out
 * of its view (the control socket in the runtime folder) or a mount point
 * in it (its own folders, bound in). Removed only if it is still the
 * file the plan saw (a VM of the same name started since keeps its own);
 * a folder only if empty. */
struct confine_leftover {
    char *dir, *name;
};
#define CONFINE_MAX_LEFTOVERS 8

/* A folder made under a temporary name that takes its own only once the
 * VM has arrived (receive --jail): a receiver killed before leaves no
 * folder of that name. The jail binds dir/temporary at dir/name, where
 * the VMM looks for it; the relay renames it when the VMM says the VM
 * arrived (confine_arrived()), and keeps lock_fd (the folder, flock'd:
 * its receiver lives) open for as long as it lives; the VMM does not keep
 * it. Without a jail, no process stays outside: renamed at once. The
 * temporary name is also a leftover of the plan (removed after if empty). */
struct confine_arrival {
    char *dir, *temporary, *name; /* name NULL: none */
    int lock_fd;
};

struct confine_plan {
    struct confine_path paths[CONFINE_MAX_PATHS];
    unsigned count;
    struct confine_link links[CONFINE_MAX_LINKS];
    unsigned link_count;
    struct confine_leftover leftovers[CONFINE_MAX_LEFTOVERS];
    unsigned leftover_count;
    struct confine_arrival arrival;
    char *root;    /* jail: the empty folder its tmpfs root is mounted on */
    bool new_net;  /* jail: a network namespace of its own (no TAP, no helper) */
    /* jail: work of the VMM's own that mostly sleeps (KVM_CREATE_VM waits
     * for an RCU grace period: 2 or 12-14 ms in the nested L1), run on a
     * thread of the VMM from its fork on, beside the building of its root,
     * and waited for before the capabilities are dropped: the VMM is one
     * thread again before it is powerless (capabilities and no_new_privs
     * are per thread) and before it reads anything a bundle or guest
     * controls. It must read none itself. NULL: none. */
    void (*vmm_ahead)(void);
    /* jail, instead of vmm_ahead: the same work begun by the VMM on a
     * thread it makes itself (hv_vm_create_begin_after()) right after its
     * fork, and not waited for: that thread calls disarm first (its
     * capabilities dropped, none left in its bounding set -- the VMM
     * empties that before it makes the thread -- no_new_privs), so it is
     * powerless before the VMM reads anything a bundle or guest controls,
     * and whoever takes its work waits for it (hv_vm_create()). The VMM
     * drops its own once its root is built, without waiting: KVM_CREATE_VM
     * sleeps on beside what follows; it is confined only once the thread
     * has disarmed (at once, mostly: the VMM yields to it first). disarm
     * ends the process (one line) when a thread cannot be made powerless.
     * It returns whether it made its thread. NULL: none. */
    bool (*vmm_begin)(void (*disarm)(void));
    /* jail: a root built ahead (jail_template_make()): the user, mount
     * and ipc namespaces to join, in that order (> 0), p->root the
     * template's, already holding its paths: the plan's are added (and a
     * pid namespace made). The fds are closed once joined. 0: none, the
     * jail made whole. */
    int template_ns[3];
    /* jail over a template: the template's paths this plan does not let
     * in (the net helper's, which every template holds), unmounted before
     * the root is made read-only; none inside another of the template's. */
    char *template_drop[CONFINE_MAX_PATHS];
    unsigned template_drop_count;
};

/* Adds path (made absolute, links resolved; a path that does not exist is
 * left out: the VMM cannot need it). When path itself is a symbolic link,
 * the jail makes it again beside what it names. 0, or an error (err.h)
 * when the plan is full. */
int confine_plan_add(struct confine_plan *p, const char *path, bool writable);
void confine_plan_release(struct confine_plan *p);
/* Adds from's paths and links to `to`, as from resolved them (no path
 * looked at again: a part of a plan made ahead, cli/jail.h). 0, or an
 * error (err.h) when `to` is full. */
int confine_plan_merge(struct confine_plan *to, const struct confine_plan *from);
/* Adds dir/name to what the relay removes after the VMM (see above). */
int confine_plan_leftover(struct confine_plan *p, const char *dir, const char *name);
/* Plans dir/temporary (a folder, made and flock'd through lock_fd by the
 * caller, which keeps lock_fd) to be bound at dir/name and take that
 * name once the VM has arrived (see above). */
int confine_plan_arrival(struct confine_plan *p, const char *dir, const char *temporary,
                         const char *name, int lock_fd);

/* The VMM, once the VM has arrived: the relay names its folder (above).
 * Does nothing when no arrival was planned or it was named at once. */
void confine_arrived(void);

enum confine_kind { CONFINE_NONE, CONFINE_LANDLOCK, CONFINE_JAIL };

/* The jail if it can be made, else landlock, else none; all set
 * no_new_privs. A failure once half made (a bind mount refused) is an
 * error (err.h): the caller must not run the VM half confined. */
int confine_enter(const struct confine_plan *p, enum confine_kind *got)
    __attribute__((warn_unused_result));
/* jail_fork_ahead(), and in the VMM (1) confine_description() said. */
int confine_fork_ahead(const int ns[3], void (*vmm_ahead)(void))
    __attribute__((warn_unused_result));

/* What confine_enter() gave this process, in one phrase ("jail (user,
 * mount, pid, ipc, net ns)", "landlock", "none"), for its stderr line and
 * status. */
const char *confine_description(void);

/* This process's pid as the host sees it (status's "pid"): inside the jail
 * the VMM is pid 1. */
pid_t confine_host_pid(void);

/* A spare VMM's jail made ahead (api/spare.h): a child makes the user,
 * mount and ipc namespaces, and in them the root -- a tmpfs on
 * common->root (made here if missing) holding common's paths and links,
 * not yet read-only, no procfs -- then ends; its namespaces stay, held
 * by the fds put in ns[3] (jail_enter() joins them: plan.template_ns).
 * 0, or -errno (nothing left but the folder common->root) when this host
 * allows no namespaces or the root could not be built. */
int jail_template_make(const struct confine_plan *common, int ns[3]);

/* A spare's start (cli/jail.c), its VMM forked before its plan is made:
 * this process joins the template's namespaces ns (jail_template_make()),
 * makes the pid namespace and forks the VMM into it, which begins
 * vmm_ahead (its VM: KVM_CREATE_VM mostly sleeps, now beside the plan's
 * making) and waits for its plan. Returns 0 in this process, which makes
 * the plan and gives it to confine_enter(): it is sent to the VMM (over
 * the template's root when p->template_ns[0] > 0, else a root made whole
 * in these namespaces), and this process becomes the relay (never
 * returns). Returns 1 in the VMM once it is confined as jail_enter()'s
 * would be. -errno when the first namespace could not be joined (nothing
 * changed: make the jail whole); other errors (err.h) past that. The host's
 * mounts must be checked unchanged since the template first: in its
 * namespace this process no longer sees them. */
int jail_fork_ahead(const int ns[3], void (*vmm_ahead)(void));

/* A spare's VMM forked before it is told what to start (cli/start.c):
 * this process joins the template's namespaces ns (jail_template_make(),
 * closed here), makes the pid namespace and forks the VMM into it.
 * Returns 1 in the VMM, which may make its VM now and, once named, starts
 * as a start does: its plan made there, jail_enter() builds its root (over
 * the template's when p->template_ns[0] > 0, else whole) and drops its
 * capabilities, as jail_fork_ahead()'s VMM. Returns 0 in this process,
 * the relay to be (jail_relay_waiting()). -errno when the first namespace
 * could not be joined (nothing changed); other errors (err.h) past it.
 * Threads the VMM makes while it waits (confine_threads_ahead()) are in
 * its namespaces already, and share its root once built (CLONE_FS); its
 * capabilities are each thread's own: each drops its own. */
int jail_fork_waiting(const int ns[3]);
/* In jail_fork_waiting()'s VMM, named, its plan p made: its root built
 * (over the template's when p->template_ns[0] > 0 -- joined at the fork,
 * the numbers kept only to say so -- else whole, in the template's
 * namespaces), its capabilities dropped, no_new_privs; its relay holds
 * the leftovers. 0, or an error (err.h): it must not run the VM. */
int jail_confine_waited(const struct confine_plan *p);
/* The same, in confine's words: confine_description() says the jail. */
int confine_waited(const struct confine_plan *p) __attribute__((warn_unused_result));
/* The relay of jail_fork_waiting()'s VMM: once the VMM has built its root,
 * p's leftovers (as the host sees them, made from the VM's name before
 * the VMM was told it) are held, and it relays (never returns). A VMM
 * that ended first holds nothing: its exit status is this process's. */
void jail_relay_waiting(const struct confine_plan *p) __attribute__((noreturn));

/* Every capability of the calling thread dropped (bounding, ambient,
 * effective, permitted, inheritable: each thread's own), as the jail's
 * VMM drops them once its root is built. 0, or an error (err.h). */
int jail_drop_capabilities(void);

/* The two mechanisms: 0, -EPERM/-ENOSYS/-EINVAL when the host does not
 * allow them (nothing changed, try the next), other errors (err.h) when
 * it failed halfway. */
int jail_enter(const struct confine_plan *p);
int landlock_enter(const struct confine_plan *p);

/* Test builds only (SMOLVM_TEST_HOOKS): $SMOLVM_TEST_JAIL_PROBE names host
 * paths, ':' between them; once confined, the VMM tries each -- connects
 * to a name ending in "sock" (another VM's NAME.sock, NAME.vsock), makes a file in a PATH/
 * (a folder: the cache's root), opens anything else -- and says on stderr
 * whether it could ("confine probe: PATH: opened" or "...: denied
 * (reason)"). */
void confine_probe(void);

#endif
