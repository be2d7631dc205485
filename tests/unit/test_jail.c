/* The VMM's confinement (src/confine/): a jail and landlock made in a forked
 * child here keep it to the plan's paths (read-only where read-only), with
 * no capabilities and no_new_privs; the cgroup helpers' text. A host that
 * allows neither mechanism skips those cases. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <cmocka.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>

#include "api/control.h"
#include "arch/x86/kernel_file.h"
#include "arch/x86/unpack.h"
#include "cli/cli.h"
#include "cli/jail.h"
#include "confine/cgroup.h"
#include "confine/confine.h"
#include "confine/jail.h"
#include "confine/seccomp_rules.h"
#include "util/file.h"
#include "machine/instance.h"
#include "machine/machine.h"
#include "machine/ram_faults.h"
#include "store/store.h"
#include "scratch.h"
#include "util/cache.h"
#include "util/err.h"
#include "util/paths.h"

#define UNAVAILABLE 77

static char inside[96], readonly[96], outside[96], root[96], link_to_inside[96];

static int setup(void **state)
{
    (void)state;
    if (scratch_setup("jail") < 0)
        return -1;
    snprintf(inside, sizeof(inside), "%s/inside", dir);
    snprintf(readonly, sizeof(readonly), "%s/readonly.txt", dir);
    snprintf(outside, sizeof(outside), "%s/outside.txt", dir);
    snprintf(root, sizeof(root), "%s/inside/vm.jail", dir); /* as in the runtime folder */
    snprintf(link_to_inside, sizeof(link_to_inside), "%s/link", dir);
    if (mkdir(inside, 0700) < 0 || symlink("inside", link_to_inside) < 0)
        return -1;
    FILE *f = fopen(readonly, "w"), *g = fopen(outside, "w");
    if (!f || !g)
        return -1;
    fputs("ro\n", f);
    fputs("secret\n", g);
    fclose(f);
    fclose(g);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return scratch_teardown();
}

/* "NoNewPrivs:\t1" in /proc/self/status, and no effective, permitted or
 * bounding capability unless landlock's (which leaves what the user has):
 * an empty bounding set too, or an exec could gain back what was dropped. */
/* As powerless(), of the thread or process whose status is at path. */
static bool powerless_at(const char *path, bool jailed)
{
    static const char *const none[] = {"CapEff:\t0000000000000000\n", "CapPrm:\t0000000000000000\n",
                                       "CapBnd:\t0000000000000000\n"};
    char line[256];
    unsigned caps = 0;
    bool nnp = false;
    FILE *f = fopen(path, "r");

    while (f && fgets(line, sizeof(line), f)) {
        for (unsigned i = 0; i < sizeof(none) / sizeof(none[0]); i++)
            caps += strcmp(line, none[i]) == 0;
        nnp |= strcmp(line, "NoNewPrivs:\t1\n") == 0;
    }
    if (f)
        fclose(f);
    return (caps == sizeof(none) / sizeof(none[0]) || !jailed) && nnp;
}

static bool powerless(bool jailed)
{
    return powerless_at("/proc/self/status", jailed);
}

/* Every thread of this process powerless (as powerless(true)). */
static bool every_thread_powerless(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    bool all = d != NULL;
    char path[64];

    while (all && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof(path), "/proc/self/task/%.16s/status", e->d_name);
            /* Unread, it has ended meanwhile (the VM's maker, done). */
            all = powerless_at(path, true) || access(path, F_OK) < 0;
        }
    if (d)
        closedir(d);
    return all;
}

/* An fd of this process through which the host's /etc/passwd opens: a
 * way out of the jail's root (review 45). */
static bool fd_reaches_host(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    bool out = false;

    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name), f;
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d))
            continue;
        if ((f = openat(fd, "etc/passwd", O_RDONLY | O_CLOEXEC)) >= 0) {
            fprintf(stderr, "fd %d reaches the host's /etc/passwd\n", fd);
            close(f);
            out = true;
        }
    }
    if (d)
        closedir(d);
    return out;
}

/* In the child, once confined: each check's number is its exit code. */
static int check_confined(bool jailed)
{
    char made[128];
    int fd;
    DIR *d;

    if (open(outside, O_RDONLY) >= 0)
        return 1; /* a host file outside the plan */
    if (open("/etc/passwd", O_RDONLY) >= 0)
        return 2;
    if ((fd = open(readonly, O_RDONLY)) < 0)
        return 3;
    close(fd);
    if (open(readonly, O_WRONLY) >= 0)
        return 4; /* read-only in the plan */
    snprintf(made, sizeof(made), "%s/made.txt", inside);
    if ((fd = open(made, O_WRONLY | O_CREAT, 0600)) < 0 || write(fd, "x", 1) != 1)
        return 5; /* writable in the plan */
    close(fd);
    if (!(d = opendir("/proc/self/fd")))
        return 6; /* the shares reopen their files through it */
    closedir(d);
    snprintf(made, sizeof(made), "%s/made.txt", link_to_inside);
    if (!(d = opendir(link_to_inside)) || access(made, F_OK) < 0)
        return 10; /* a link in the plan is there again */
    closedir(d);
    if (!powerless(jailed))
        return 7;
    if (jailed && getpid() != 1)
        return 11; /* pid 1 of its own pid namespace */
    if (jailed && confine_host_pid() <= 1)
        return 12; /* but knows its pid on the host, for status */
    if (jailed && (d = opendir("/proc")) != NULL) {
        struct dirent *e;
        int processes = 0;
        while ((e = readdir(d)))
            processes += e->d_name[0] >= '0' && e->d_name[0] <= '9';
        closedir(d);
        if (processes != 1)
            return 13; /* its /proc shows itself alone */
    }
    /* Landlock lets nothing be made or read outside either. */
    if (!jailed && open("/tmp/smolvm-landlock-probe", O_WRONLY | O_CREAT, 0600) >= 0)
        return 9;
    if (jailed && (d = opendir("/")) != NULL) {
        /* Nothing but the plan's folders: /tmp (the scratch), /proc. */
        struct dirent *e;
        int entries = 0;
        while ((e = readdir(d)))
            entries += e->d_name[0] != '.';
        closedir(d);
        if (entries != 2)
            return 8;
    }
    return 0;
}

/* The forked child's verdict: passed (0), or the host lacks what it tests. */
static void child_passed(pid_t pid)
{
    int status;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == UNAVAILABLE)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void run_confined(int (*enter)(const struct confine_plan *), bool jailed)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        struct confine_plan plan = {0};
        if (confine_plan_add(&plan, inside, true) < 0 ||
            confine_plan_add(&plan, readonly, false) < 0 ||
            confine_plan_add(&plan, link_to_inside, false) < 0 ||
            confine_plan_add(&plan, "/nonexistent-smolvm", false) < 0 ||
            !(plan.root = strdup(root)) ||
            confine_plan_leftover(&plan, inside, "vm.jail") < 0) /* as cli/jail.c's */
            _exit(100);
        int r = enter(&plan);
        if (r == -EPERM || r == -ENOSYS || r == -EINVAL || r == -EOPNOTSUPP || r == -ENOSPC)
            _exit(UNAVAILABLE);
        if (r < 0) {
            fprintf(stderr, "%s\n", err_msg());
            _exit(101);
        }
        confine_plan_release(&plan);
        /* exit(), not _exit(): under ASan, LeakSanitizer's tracer must
         * work in the jail (a process it clones, in its pid namespace). */
        exit(check_confined(jailed));
    }
    child_passed(pid);
    /* What it wrote is the host's file. */
    char made[128];
    snprintf(made, sizeof(made), "%s/made.txt", inside);
    assert_int_equal(access(made, F_OK), 0);
    unlink(made);
}

static void test_jail_keeps_to_plan(void **state)
{
    (void)state;
    run_confined(jail_enter, true);
    /* Its root's mount point is gone from the host again (the relay's
     * leftover, once the VMM has ended). */
    assert_int_equal(access(root, F_OK), -1);
}

/* What the plan's vmm_ahead saw (jail.h), in the VMM. */
static struct {
    pid_t pid, tid;
    bool done;
} ahead_saw;

static void look_ahead(void)
{
    ahead_saw.pid = getpid();
    ahead_saw.tid = (pid_t)syscall(SYS_gettid);
    /* Long enough that a jail that did not wait for it would return first. */
    nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
    ahead_saw.done = true;
}

/* The count of threads /proc/self/status gives, -1 when it gives none. */
static int threads(void)
{
    char line[256];
    int n = -1;
    FILE *f = fopen("/proc/self/status", "r");

    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "Threads:", 8) == 0)
            n = atoi(line + 8);
    if (f)
        fclose(f);
    return n;
}

/* In a forked child: plan, with inside (writable) and the root folder,
 * entered as a jail; returns in the VMM (the child ends when the host
 * allows no jail, or it failed). */
static void jail_with_inside(struct confine_plan *plan)
{
    if (confine_plan_add(plan, inside, true) < 0 || !(plan->root = strdup(root)) ||
        confine_plan_leftover(plan, inside, "vm.jail") < 0)
        _exit(100);
    int r = jail_enter(plan);
    if (r == -EPERM || r == -ENOSYS || r == -EINVAL || r == -EOPNOTSUPP || r == -ENOSPC)
        _exit(UNAVAILABLE);
    if (r < 0)
        _exit(101);
    confine_plan_release(plan);
}

/* The plan's vmm_ahead runs in the VMM (pid 1 of its namespace), on a
 * thread of its own, and is over before the VMM is confined: one thread
 * then, powerless. */
static void test_jail_runs_ahead_in_vmm(void **state)
{
    (void)state;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        jail_with_inside(&(struct confine_plan){.vmm_ahead = look_ahead});
        if (!ahead_saw.done)
            exit(1); /* not waited for */
        if (ahead_saw.pid != 1)
            exit(2); /* not in the VMM */
        if (ahead_saw.tid == 1)
            exit(3); /* not on a thread of its own */
        if (threads() != 1)
            exit(4);
        exit(powerless(true) ? 0 : 5);
    }
    child_passed(pid);
}

/* What the thread the plan's vmm_begin made saw (jail.h), in the VMM. */
static struct {
    void (*disarm)(void);
    pthread_t thread;
    int go[2];
    pid_t pid, tid;
    bool waited_for, powerless;
} begun_saw;

static void *held_thread(void *unused)
{
    struct pollfd go = {.events = POLLIN};

    begun_saw.disarm();
    go.fd = begun_saw.go[0];
    /* Held until the VMM is confined: a jail that waited for it times out. */
    begun_saw.waited_for = poll(&go, 1, 2000) != 1;
    begun_saw.pid = getpid();
    begun_saw.tid = (pid_t)syscall(SYS_gettid);
    begun_saw.powerless = powerless_at("/proc/thread-self/status", true);
    return unused;
}

static bool begin_held(void (*disarm)(void))
{
    begun_saw.disarm = disarm;
    if (pipe(begun_saw.go) < 0 || pthread_create(&begun_saw.thread, NULL, held_thread, NULL) != 0)
        _exit(102);
    return true;
}

/* The plan's vmm_begin runs in the VMM (pid 1 of its namespace) on a
 * thread it makes, which is powerless from its start (disarm: no
 * capability, none in its bounding set, no_new_privs), and the VMM is
 * confined -- root built, powerless -- without waiting for it. */
static void test_jail_begins_disarmed_in_vmm(void **state)
{
    (void)state;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        jail_with_inside(&(struct confine_plan){.vmm_begin = begin_held});
        bool confined = powerless(true);
        if (write(begun_saw.go[1], "g", 1) != 1 || pthread_join(begun_saw.thread, NULL) != 0)
            exit(1);
        if (begun_saw.waited_for)
            exit(2); /* the jail waited for it */
        if (begun_saw.pid != 1 || begun_saw.tid == 1)
            exit(3); /* not in the VMM, on a thread of its own */
        if (!begun_saw.powerless)
            exit(4);
        exit(confined ? 0 : 5);
    }
    child_passed(pid);
}

/* A spare's VMM forked before its plan (jail_fork_ahead()): its
 * vmm_ahead runs in it (pid 1, on a thread of its own, over before it is
 * confined), and the plan its relay makes after the fork -- naming a file
 * made only then -- is the one it keeps to, over the template's root. */
static void test_vmm_forked_before_its_plan(void **state)
{
    (void)state;
    char later[128], spare_root[128];
    pid_t pid;

    snprintf(later, sizeof(later), "%s/made-after-the-fork.txt", dir);
    snprintf(spare_root, sizeof(spare_root), "%s/spare.root", inside);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct confine_plan common = {0}, plan = {0};
        enum confine_kind got;
        int ns[3], fd;

        if (confine_plan_add(&common, readonly, false) < 0 || !(common.root = strdup(spare_root)))
            _exit(100);
        if (jail_template_make(&common, ns) < 0)
            _exit(UNAVAILABLE);
        int r = jail_fork_ahead(ns, look_ahead);
        if (r == 1) { /* the VMM, confined */
            if (!ahead_saw.done || ahead_saw.pid != 1 || ahead_saw.tid == 1)
                exit(1); /* not run in it, on a thread, and waited for */
            if (threads() != 1 || !powerless(true) || getpid() != 1)
                exit(2);
            if ((fd = open(later, O_RDONLY)) < 0)
                exit(3); /* the plan made after the fork is the one it got */
            close(fd);
            if ((fd = open(readonly, O_RDONLY)) < 0)
                exit(4); /* the template's paths are there */
            close(fd);
            if (open(outside, O_RDONLY) >= 0 || open(later, O_WRONLY) >= 0)
                exit(5);
            if (fd_reaches_host())
                exit(6); /* the relay's handle on the host's root kept */
            exit(0);
        }
        if (r < 0)
            _exit(r == -EPERM || r == -ENOSYS || r == -EINVAL ? UNAVAILABLE : 101);
        /* The relay to be: the plan made now. */
        if ((fd = open(later, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
            _exit(102);
        close(fd);
        if (confine_plan_add(&plan, later, false) < 0 || !(plan.root = strdup(spare_root)) ||
            confine_plan_leftover(&plan, inside, "spare.root") < 0)
            _exit(100);
        memcpy(plan.template_ns, ns, sizeof(ns));
        r = confine_enter(&plan, &got); /* relays: returns only on failure */
        fprintf(stderr, "%s\n", err_msg());
        _exit(103);
    }
    child_passed(pid);
    unlink(later);
    assert_int_equal(access(spare_root, F_OK), -1); /* the relay's leftover */
}

static void test_landlock_keeps_to_plan(void **state)
{
    (void)state;
    run_confined(landlock_enter, false);
}

/* Whether a file can be made (or opened for writing) at path. */
static bool makes(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);

    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

/* The user's smolvm folders in the scratch ($XDG_RUNTIME_DIR, _DATA_HOME,
 * _CACHE_HOME under dir/PREFIX-*), as another VM left them: its control
 * socket listening, an instance's disk, a cached memory file. */
struct xdg {
    char runtime[128], data[128], cache[128];
    char other_sock[192], other_disk[192], other_cache[192];
};

static int listen_at(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%.*s", (int)sizeof(addr.sun_path) - 1, path);
    return fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0
               ? -1
               : fd;
}

static int xdg_in_scratch(const char *prefix, struct xdg *x)
{
    char smolvm[3][160];
    const char *vars[3] = {"XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_CACHE_HOME"};
    char *dirs[3] = {x->runtime, x->data, x->cache};

    for (int i = 0; i < 3; i++) {
        snprintf(dirs[i], sizeof(x->runtime), "%s/%s-%d", dir, prefix, i);
        snprintf(smolvm[i], sizeof(smolvm[i]), "%s/smolvm", dirs[i]);
        if (mkdir(dirs[i], 0700) < 0 || mkdir(smolvm[i], 0700) < 0 || setenv(vars[i], dirs[i], 1) < 0)
            return -1;
    }
    snprintf(x->other_sock, sizeof(x->other_sock), "%s/other.sock", smolvm[0]);
    snprintf(x->other_disk, sizeof(x->other_disk), "%s/instances/other/delta.qcow2", smolvm[1]);
    snprintf(x->other_cache, sizeof(x->other_cache), "%s/memory/other.ram", smolvm[2]);
    return listen_at(x->other_sock) < 0 ||
                   sh("mkdir -p %s/instances/other %s/memory && echo d > %s && echo m > %s",
                      smolvm[1], smolvm[2], x->other_disk, x->other_cache) != 0
               ? -1
               : 0;
}

/* In the jailed child: what another VM has is out of reach. 0, or the
 * check that failed (of 20 and up). */
static int others_out_of_reach(const struct xdg *x)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char made[192];
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    if ((size_t)snprintf(addr.sun_path, sizeof(addr.sun_path), "%.*s",
                         (int)sizeof(addr.sun_path) - 1, x->other_sock) >= sizeof(addr.sun_path))
        return 26;
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
        return 20; /* another VM's control socket */
    close(fd);
    if (open(x->other_disk, O_RDONLY) >= 0)
        return 21; /* another instance's disk */
    if (open(x->other_cache, O_RDONLY) >= 0)
        return 22; /* a cache entry (run fills none) */
    snprintf(made, sizeof(made), "%s/smolvm/planted", x->cache);
    if (makes(made))
        return 23; /* the cache's root */
    snprintf(made, sizeof(made), "%s/smolvm/planted", x->data);
    if (makes(made))
        return 24; /* the store's root */
    snprintf(made, sizeof(made), "%s/smolvm/planted", x->runtime);
    if (makes(made))
        return 25; /* the runtime folder, beside the VMs' sockets */
    return 0;
}

/* In the jailed child: a file made in VM name's own runtime folder. */
static int own_runtime_writable(const char *name)
{
    char *own, made[192];
    int fd;

    if (control_vm_dir(name, &own) < 0)
        return 30;
    snprintf(made, sizeof(made), "%s/%s.vsock", own, name);
    free(own);
    if ((fd = open(made, O_WRONLY | O_CREAT, 0600)) < 0)
        return 31;
    close(fd);
    return unlink(made) < 0 ? 32 : 0;
}

/* run --jail's plan (cli/jail.c), as run makes it: in a forked child, the
 * jailed VMM opens its kernel (not for writing), its disk and share, makes
 * files in its own runtime folder, and cannot open a file beside them,
 * connect to another VM's socket, read another instance's disk or a cache
 * entry, or write the runtime, cache or store's root. Once it has ended,
 * its relay has removed its names in the runtime folder (not a newer
 * VM's). */
static void test_run_jail_plan(void **state)
{
    struct xdg x;
    char sock[192], own[192];
    (void)state;

    assert_int_equal(xdg_in_scratch("run", &x), 0);
    snprintf(sock, sizeof(sock), "%s/smolvm/t.sock", x.runtime);
    snprintf(own, sizeof(own), "%s/smolvm/t.vm", x.runtime);
    assert_true(listen_at(sock) >= 0); /* as serve_open makes it */
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        char disk[128], made[160];
        struct vm_options o = {0};
        int fd, r;

        snprintf(disk, sizeof(disk), "%s/disk.raw", dir);
        if ((fd = open(disk, O_WRONLY | O_CREAT, 0600)) < 0 || ftruncate(fd, 1 << 20) < 0)
            _exit(100);
        close(fd);
        vm_config_defaults(&o.vm);
        o.vm.kernel_path = readonly;
        o.vm.disk_count = 1;
        o.vm.disks[0].path = disk;
        o.vm.share_count = 1;
        o.vm.shares[0] = (struct vm_share_config){.path = inside, .tag = "s"};
        o.jail = true;
        cli_set_verb("run");
        /* The relay removes the leftovers under its filter, as run's does. */
        if (confine_seccomp_set(CONFINE_SECCOMP_ON, "run") < 0 ||
            cli_confine(&o, "t", false, NULL) != CLI_OK)
            _exit(101);
        if (strcmp(confine_description(), "jail (user, mount, pid, ipc, net ns)") != 0)
            _exit(UNAVAILABLE);
        if (open(outside, O_RDONLY) >= 0)
            _exit(1);
        if ((fd = open(readonly, O_RDONLY)) < 0 || open(readonly, O_WRONLY) >= 0)
            _exit(2);
        close(fd);
        if ((fd = open(disk, O_RDWR)) < 0)
            _exit(3);
        close(fd);
        snprintf(made, sizeof(made), "%s/from-jail", inside);
        if (!makes(made))
            _exit(4);
        if ((r = own_runtime_writable("t")) != 0 || (r = others_out_of_reach(&x)) != 0)
            _exit(r);
        if ((fd = open("/dev/null", O_WRONLY)) < 0)
            _exit(7);
        _exit(0);
    }
    child_passed(pid);
    assert_int_equal(access(sock, F_OK), -1); /* the relay removed them */
    assert_int_equal(access(own, F_OK), -1);
    assert_int_equal(access(x.other_sock, F_OK), 0); /* and nothing else */
}

/* run --jail of a bzImage (this host's kernel): the VMM boots it from its
 * unpacked vmlinux, as outside -- made in the cache before the jail, and
 * found there read-only (the kernels are other VMs' too), not unpacked
 * again nor left to the guest's own decompressor (seconds: most of what
 * a jailed boot cost, bench jail_bench) -- and known by the file's
 * identity, recorded by the plan outside: the VMM neither reads nor
 * hashes the bzImage again (0.1-0.4 s in a TCG L1). */
static void test_run_jail_finds_unpacked_kernel(void **state)
{
    struct xdg x;
    glob_t g;
    (void)state;

    if (glob("/boot/vmlinuz-*", 0, NULL, &g) != 0)
        skip();
    assert_int_equal(xdg_in_scratch("kernel", &x), 0);
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        struct vm_options o = {.jail = true};
        struct x86_kernel_file k;
        char *cache, *unpacked = NULL, *known, made[256];
        struct stat seen;
        int fd;

        vm_config_defaults(&o.vm);
        o.vm.kernel_path = g.gl_pathv[g.gl_pathc - 1];
        cli_set_verb("run");
        if (cli_confine(&o, "k", false, NULL) != CLI_OK)
            _exit(101);
        if (strcmp(confine_description(), "jail (user, mount, pid, ipc, net ns)") != 0)
            _exit(UNAVAILABLE);
        if (x86_kernel_open(o.vm.kernel_path, "kernel", &k) < 0 || !x86_kernel_is_bzimage(&k))
            _exit(UNAVAILABLE); /* not a bzImage smolvm unpacks */
        if (!(cache = x86_kernel_cache_dir()))
            _exit(1);
        if (x86_unpacked_kernel(k.image.data, k.image.len, cache, &unpacked) < 0 || !unpacked)
            _exit(2);
        if (!(known = x86_unpacked_kernel_known(o.vm.kernel_path, cache, &seen)) ||
            strcmp(known, unpacked) != 0)
            _exit(5);
        if ((fd = open(unpacked, O_RDONLY)) < 0)
            _exit(3);
        close(fd);
        snprintf(made, sizeof(made), "%s/planted", cache);
        if (makes(made))
            _exit(4);
        _exit(0);
    }
    child_passed(pid);
    globfree(&g);
}

/* start --jail's: the bundle (read-only), and the host network kept for
 * the net helper it may start, which is found now and runs in the jail;
 * its instance folder, the cache folders a start fills and the migration
 * scratch are writable, nothing else of the user's smolvm folders. */
static void test_start_jail_plan(void **state)
{
    struct xdg x;
    (void)state;

    assert_int_equal(xdg_in_scratch("start", &x), 0);
    assert_int_equal(sh("mkdir -p %s/smolvm/appliance && echo a > %s/smolvm/appliance/a.raw",
                        x.cache, x.cache), 0);
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        static const char *const writable[] = {"instances/s/", "migrate/"};
        static const char *const filled[] = {"disks/", "layers/", "memory/"};
        struct vm_options o = {.jail = true};
        char made[192];
        int fd, r;

        /* Whether this host gives this user a userfaultfd (as a bundle's
         * first start is served): the jail must not take it away. */
        bool uffd = ram_faults_supported();

        setenv("SMOLVM_NET_HELPER", "/usr/bin/true", 1); /* a stand-in */
        cli_set_verb("start");
        if (cli_confine(&o, "s", true, readonly) != CLI_OK)
            _exit(101);
        if (strcmp(confine_description(), "jail (user, mount, pid, ipc ns)") != 0)
            _exit(UNAVAILABLE);
        if ((fd = open(readonly, O_RDONLY)) < 0 || open(readonly, O_WRONLY) >= 0)
            _exit(1);
        close(fd);
        if (open(outside, O_RDONLY) >= 0)
            _exit(2);
        for (size_t i = 0; i < 5; i++) {
            snprintf(made, sizeof(made), "%s/smolvm/%sfrom-jail", i < 2 ? x.data : x.cache,
                     i < 2 ? writable[i] : filled[i - 2]);
            if ((fd = open(made, O_WRONLY | O_CREAT, 0600)) < 0)
                _exit(40 + (int)i);
            close(fd);
        }
        if ((r = own_runtime_writable("s")) != 0)
            _exit(r);
        /* The start's own check of the cache passes in the jail (its
         * root 0700 there too, util/cache.h). */
        char *filled_dir;
        if (cache_dir_prepare("memory", &filled_dir) < 0)
            _exit(6);
        free(filled_dir);
        /* The cache entry is the start's now (it fills memory/). */
        snprintf(x.other_cache, sizeof(x.other_cache), "%s/smolvm/appliance/a.raw", x.cache);
        if ((r = others_out_of_reach(&x)) != 0)
            _exit(r);
        const char *helper = getenv("SMOLVM_NET_HELPER");
        if (!helper || strcmp(helper, "/usr/bin/true") != 0)
            _exit(3);
        if (uffd && !ram_faults_supported())
            _exit(5);
        execl(helper, "true", (char *)NULL);
        _exit(4);
    }
    child_passed(pid);
}

/* start --jail in a read-only home (a child in its own mount namespace,
 * as root): the data and cache folders fell back to the runtime folder
 * outside, and the jailed VMM finds them there too -- its instance
 * folder, the migration scratch, a cache it fills -- not in the home it
 * would have taken again, its fallback out of its view. */
static void test_start_jail_in_readonly_home(void **state)
{
    char home[128], run[128];
    (void)state;

    if (geteuid() != 0)
        skip();
    snprintf(home, sizeof(home), "%s/rohome", dir);
    snprintf(run, sizeof(run), "%s/rohome-run", dir);
    assert_int_equal(mkdir(home, 0700), 0);
    assert_int_equal(mkdir(run, 0700), 0);
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        struct vm_options o = {.jail = true};
        char want[256], made[300], *got = NULL;
        int fd;

        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", home, "tmpfs", MS_RDONLY, NULL) < 0)
            _exit(UNAVAILABLE);
        unsetenv("XDG_DATA_HOME");
        unsetenv("XDG_CACHE_HOME");
        setenv("HOME", home, 1);
        setenv("XDG_RUNTIME_DIR", run, 1);
        setenv("SMOLVM_NET_HELPER", "/usr/bin/true", 1); /* a stand-in */
        cli_set_verb("start");
        if (cli_confine(&o, "ro", true, readonly) != CLI_OK)
            _exit(101);
        if (strcmp(confine_description(), "jail (user, mount, pid, ipc ns)") != 0)
            _exit(UNAVAILABLE);
        snprintf(want, sizeof(want), "%s/smolvm/data/instances/ro", run);
        if (instance_dir("ro", &got) < 0 || strcmp(got, want) != 0)
            _exit(1);
        snprintf(made, sizeof(made), "%s/delta", got);
        if (!makes(made))
            _exit(2);
        free(got);
        snprintf(want, sizeof(want), "%s/smolvm/data/migrate", run);
        if (!(got = paths_data_dir("migrate")) || strcmp(got, want) != 0 ||
            (fd = open(got, O_TMPFILE | O_RDWR, 0600)) < 0)
            _exit(3);
        close(fd);
        free(got);
        snprintf(want, sizeof(want), "%s/smolvm/cache/memory", run);
        if (cache_dir_prepare("memory", &got) < 0 || strcmp(got, want) != 0)
            _exit(4);
        free(got);
        _exit(0);
    }
    child_passed(pid);
}

/* start NAME --jail of a store instance made with create --share: its
 * folder, named in instance.json and not on the command line, is in the
 * jail, writable; so is its instance folder, but not its instance.json
 * (read-only) or the store's lock (absent: the store does not open there,
 * start reads and marks the instance outside); the store's layers are
 * read-only, another instance out of reach. */
/* over_template: as a spare VMM of smolvm serve starts it (api/spare.h):
 * the plan's common parts and the jail's root made ahead, before the
 * machine is named; the same checks hold, the jail was made over that
 * root (no root folder of its own in its runtime folder), and the
 * template's folder is gone once the VMM has ended. unfit: the caches
 * inside the instance's share, as in the first case: a template holding
 * the caches does not fit, and the jail is made whole (its own root
 * folder) with the same checks holding. */
/* TEMPLATE_STALE: the mounts changed after the template was made (a
 * tmpfs mounted, in the test's own mount namespace): the jail is made
 * whole, as the host is now. */
/* TEMPLATE_REMADE: a cache folder the template holds was moved away
 * and made again while the spare waited: the jail is made whole, and the
 * VM writes into the new one. */
/* VMM_WAITED: as OVER_TEMPLATE, the VMM forked before the machine was
 * named (vmm_waits_for_name()) makes its plan itself and is confined over
 * the template; its relay removes the template's folder after it. */
/* TEMPLATE_LINK_MOVED: a link the template made for the net helper
 * (/etc/resolv.conf, in the test's own mount namespace over an /etc of
 * its own) re-pointed while the spare waited, as `ln -sfn` does: the VM
 * reads the link's new target, as a fresh jail would (review 45). */
enum template_case {
    NO_TEMPLATE,
    OVER_TEMPLATE,
    TEMPLATE_UNFIT,
    OVER_TEMPLATE_NET,
    TEMPLATE_STALE,
    TEMPLATE_REMADE,
    TEMPLATE_LINK_MOVED,
    VMM_WAITED,
    VMM_WAITED_LINK_MOVED,
    ROOT_FAILS,
    VMM_WAITED_ROOT_FAILS
};
/* VMM_WAITED_LINK_MOVED (review 46): as TEMPLATE_LINK_MOVED, but the link
 * re-pointed while a VMM forked before its name waits (the spare's
 * order: fork_waiting_vmm(), then tell_waiting_vmm()'s check): the spare
 * lets that VMM go and the VM reads the new target.
 * ROOT_FAILS, VMM_WAITED_ROOT_FAILS (review 46): the VMM's root cannot be
 * built (pivot_root refused by a filter the test loads): the start fails,
 * and what it made in the runtime folder (NAME.vm) is removed by its
 * relay -- in the CLI's jail_enter() and in a VMM forked before its name. */

/* In a test's forked child, as a spare under --jail begins: its own data
 * and cache folders (DIR/WHO-data, DIR/WHO-cache), the runtime folder
 * inside, and the template made. Returns only when it was made; else the
 * child ends (UNAVAILABLE: no namespaces here; 100: its folders). */
static void spare_template_made(const char *who)
{
    struct vm_options o = {.jail = true};
    char data[128], cache[128];

    snprintf(data, sizeof(data), "%s/%s-data", dir, who);
    snprintf(cache, sizeof(cache), "%s/%s-cache", dir, who);
    if (mkdir(data, 0700) < 0 || mkdir(cache, 0700) < 0 || setenv("XDG_DATA_HOME", data, 1) < 0 ||
        setenv("XDG_CACHE_HOME", cache, 1) < 0 || setenv("XDG_RUNTIME_DIR", inside, 1) < 0)
        _exit(100);
    cli_confine_ahead(&o);
    if (!cli_confine_template_made())
        _exit(UNAVAILABLE); /* no namespaces here */
}

/* As a spare's child does (cli/start.c's fork_waiting_vmm()): the VMM
 * forked into the template's namespaces before the machine is named --
 * pid 1 of its own pid namespace then -- and told the name by this
 * process, its relay, which holds what the VM leaves and ends as the VMM
 * does (it never returns). In the VMM: whether it was, and was told name. */
static bool vmm_waits_for_name(const char *name)
{
    int down[2];
    char got[64] = "";

    if (pipe(down) < 0)
        return false;
    int r = cli_confine_fork_waiting();
    if (r == 0) {
        close(down[0]);
        cli_confine_relay_waiting(name, down[1]);
    }
    if (r != 1)
        return false;
    close(down[1]);
    bool before_its_name = getpid() == 1;
    ssize_t n = read(down[0], got, sizeof(got) - 1);
    close(down[0]);
    return before_its_name && n == (ssize_t)strlen(name) + 1 && strncmp(got, name, strlen(name)) == 0;
}

/* As fork_waiting_vmm() and its child do: this process forks the relay
 * to be, which forks the VMM into the template's namespaces; both wait for
 * the name the spare (this process) writes on the pipe *named. Returns the
 * relay's pid here; in the VMM, 0 once named (an unnamed one ends). */
static pid_t vmm_forked_waiting(int *named)
{
    int spare[2], down[2];
    char name[64] = "";
    ssize_t n;

    if (pipe(spare) < 0)
        return -1;
    pid_t relay = fork();
    if (relay != 0) {
        close(spare[0]);
        *named = spare[1];
        return relay;
    }
    close(spare[1]);
    if (pipe(down) < 0)
        _exit(100);
    int r = cli_confine_fork_waiting();
    if (r == 0) {
        close(down[0]);
        if ((n = read(spare[0], name, sizeof(name) - 1)) <= 0)
            _exit(0); /* let go */
        name[n - 1] = '\0';
        cli_confine_relay_waiting(name, down[1]);
    }
    if (r != 1)
        _exit(100);
    close(down[1]);
    close(spare[0]);
    if (read(down[0], name, sizeof(name)) <= 0)
        _exit(0);
    close(down[0]);
    return 0;
}

/* A filter refusing pivot_root (EPERM): the jail's root cannot be made. */
static bool pivot_root_refused(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    bool ok = ctx && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(pivot_root), 0) == 0 &&
              seccomp_load(ctx) == 0;

    seccomp_release(ctx);
    return ok;
}

/* In a mount namespace of this process's own: an /etc (etc) with the
 * files the net helper's plan names, its resolv.conf a link to a (reading
 * "A"), b ("B") beside it, mounted over the host's. */
static bool etc_with_resolv_link(const char *etc, const char *a, const char *b, const char *resolv)
{
    char cache[200], hosts[200];
    snprintf(cache, sizeof(cache), "%s/ld.so.cache", etc);
    snprintf(hosts, sizeof(hosts), "%s/hosts", etc);
    return unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
           mkdir(etc, 0755) == 0 && file_write_new(a, "A\n", 2) == 0 && file_write_new(b, "B\n", 2) == 0 &&
           makes(cache) && makes(hosts) && symlink(a, resolv) == 0 &&
           mount(etc, "/etc", NULL, MS_BIND, NULL) == 0;
}

static void start_instance_jail(enum template_case how)
{
    bool over_template = how == OVER_TEMPLATE || how == OVER_TEMPLATE_NET || how == VMM_WAITED ||
                         how == VMM_WAITED_ROOT_FAILS,
         ahead = how != NO_TEMPLATE && how != ROOT_FAILS,
         link_moved = how == TEMPLATE_LINK_MOVED || how == VMM_WAITED_LINK_MOVED,
         net = how == OVER_TEMPLATE_NET || link_moved,
         root_fails = how == ROOT_FAILS || how == VMM_WAITED_ROOT_FAILS;
    char own[192], own_root[200];

    snprintf(own, sizeof(own), "%s/smolvm/sharing.vm", inside);
    snprintf(own_root, sizeof(own_root), "%s/root", own);
    rmdir(own_root); /* an earlier case's, were they left */
    rmdir(own);
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        char data[128], layer[128], shared[128], cache[128], made[256];
        struct vm_share_config share = {.path = shared, .tag = "w"};
        struct store_create_request q = {.name = "sharing", .from = layer, .kernel = layer,
                                         .shares = &share, .share_count = 1};
        struct vm_options o = {.jail = true};
        struct store *s;
        int fd;

        /* Each case its own folders; over the template, the caches are
         * not inside the share (a template's folder holding one of the
         * start's paths does not fit it: the jail is made whole then). */
        const char *as = how == OVER_TEMPLATE    ? "spare-"
                         : how == TEMPLATE_UNFIT ? "unfit-"
                         : how == TEMPLATE_STALE ? "stale-"
                         : how == TEMPLATE_REMADE ? "remade-"
                         : how == TEMPLATE_LINK_MOVED ? "link-"
                         : how == VMM_WAITED ? "waited-"
                         : how == VMM_WAITED_LINK_MOVED ? "wlink-"
                         : how == ROOT_FAILS ? "rootfail-"
                         : how == VMM_WAITED_ROOT_FAILS ? "wrootfail-"
                         : net                   ? "net-"
                                                 : "";
        static const struct vm_net_config user_net = {.mode = VM_NET_USER, .fd = -1};
        q.net = net ? &user_net : NULL;
        snprintf(data, sizeof(data), "%s/%sinstance-data", dir, as);
        snprintf(layer, sizeof(layer), "%s/%sinstance-layer.raw", dir, as);
        snprintf(shared, sizeof(shared), "%s/%sinstance-share", dir, as);
        snprintf(cache, sizeof(cache), "%s/%sinstance-cache", dir, as);
        if (mkdir(data, 0700) < 0 || mkdir(shared, 0700) < 0 || mkdir(cache, 0700) < 0 ||
            setenv("XDG_DATA_HOME", data, 1) < 0 || setenv("XDG_RUNTIME_DIR", inside, 1) < 0 ||
            setenv("XDG_CACHE_HOME", how == TEMPLATE_UNFIT || how == NO_TEMPLATE ? shared : cache, 1) < 0 ||
            (fd = open(layer, O_WRONLY | O_CREAT, 0600)) < 0 || ftruncate(fd, 1 << 16) < 0)
            _exit(100);
        close(fd);
        struct store_create_request other = {.name = "other", .from = layer, .kernel = layer};
        if (store_open(&s) < 0 || store_create_from(s, &q) < 0 || store_create_from(s, &other) < 0)
            _exit(100);
        store_close(s);
        /* The user's, a stand-in; over a template, none: the spare names
         * the helper itself (beside this program: not there). */
        if (!over_template)
            setenv("SMOLVM_NET_HELPER", "/usr/bin/true", 1);
        cli_set_verb("start");
        /* Its mount made where the host does not see it. */
        if (how == TEMPLATE_STALE &&
            (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0))
            _exit(UNAVAILABLE);
        char etc[160], resolv_a[160], resolv_b[160], resolv[200], resolv_new[208];
        snprintf(etc, sizeof(etc), "%s/%setc", dir, as);
        snprintf(resolv_a, sizeof(resolv_a), "%s/%sresolv-a", dir, as);
        snprintf(resolv_b, sizeof(resolv_b), "%s/%sresolv-b", dir, as);
        snprintf(resolv, sizeof(resolv), "%s/resolv.conf", etc);
        snprintf(resolv_new, sizeof(resolv_new), "%s.new", resolv);
        if (link_moved && !etc_with_resolv_link(etc, resolv_a, resolv_b, resolv))
            _exit(UNAVAILABLE);
        if (ahead) {
            cli_confine_ahead(&o);
            snprintf(made, sizeof(made), "%s/smolvm/spare-%d.root", inside, (int)getpid());
            if (access(made, F_OK) < 0)
                _exit(UNAVAILABLE); /* no namespaces here: no template */
        }
        if (how == TEMPLATE_STALE) {
            snprintf(made, sizeof(made), "%s/stale-mount", dir);
            if (mkdir(made, 0700) < 0 || mount("stale", made, "tmpfs", 0, "size=64k") < 0)
                _exit(100);
        }
        char disks[192], moved[200];
        snprintf(disks, sizeof(disks), "%s/smolvm/disks", cache);
        snprintf(moved, sizeof(moved), "%s.old", disks);
        if (how == TEMPLATE_REMADE && (rename(disks, moved) < 0 || mkdir(disks, 0700) < 0))
            _exit(100);
        int named = -1;
        pid_t waiting = how == VMM_WAITED_LINK_MOVED ? vmm_forked_waiting(&named) : 1;
        if (waiting < 0)
            _exit(100);
        if (link_moved && waiting > 0 &&
            (symlink(resolv_b, resolv_new) < 0 || rename(resolv_new, resolv) < 0))
            _exit(100);
        if (how == VMM_WAITED_LINK_MOVED && waiting > 0) {
            /* The spare named: tell_waiting_vmm()'s check, then the VMM
             * told (its status is the start's) or let go. */
            int status;
            if (cli_confine_ahead_current()) {
                if (write(named, "sharing\n", 8) != 8 || waitpid(waiting, &status, 0) != waiting)
                    _exit(100);
                _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 100);
            }
            close(named);
            if (waitpid(waiting, &status, 0) != waiting)
                _exit(100);
        }
        if ((how == VMM_WAITED || how == VMM_WAITED_ROOT_FAILS) && !vmm_waits_for_name("sharing"))
            _exit(17);
        if (root_fails && !pivot_root_refused())
            _exit(100);
        /* As start does: the store read outside, then the jail. */
        if (chdir(dir) < 0 || machine_start_named_prepare("sharing") < 0 ||
            cli_confine(&o, "sharing", true, "sharing") != CLI_OK)
            _exit(101);
        if (link_moved) {
            char got[8] = "";
            FILE *f = fopen("/etc/resolv.conf", "r");
            _exit(f && fgets(got, sizeof(got), f) && got[0] == 'B' ? 0 : !f ? 15 : got[0] == 'A' ? 16 : 14);
        }
        snprintf(made, sizeof(made), "%s/smolvm/sharing.vm/root", inside);
        if ((access(made, F_OK) == 0) == over_template)
            _exit(10); /* its own root folder made, or not, as it should be */
        if (strcmp(confine_description(), "jail (user, mount, pid, ipc ns)") != 0)
            _exit(UNAVAILABLE);
        /* As the CLI's start --jail (review 46): pid 1 of its own pid
         * namespace, every thread -- its VM's maker too, still at work
         * (jail.h's vmm_begin) -- with no capability (bounding set too)
         * and no_new_privs. */
        if (getpid() != 1 || !every_thread_powerless())
            _exit(18);
        snprintf(made, sizeof(made), "%s/from-jail", disks);
        if (how == TEMPLATE_REMADE && !makes(made))
            _exit(11); /* the cache folder as it is now */
        snprintf(made, sizeof(made), "%s/from-instance", shared);
        if (!makes(made))
            _exit(1);
        if (open(outside, O_RDONLY) >= 0)
            _exit(2);
        if (store_open(&s) == 0)
            _exit(3); /* the store, its lock, is outside (start reads it first) */
        snprintf(made, sizeof(made), "%s/smolvm/.lock", data);
        if (open(made, O_RDONLY) >= 0)
            _exit(7);
        snprintf(made, sizeof(made), "%s/smolvm/instances/sharing/instance.json", data);
        if (open(made, O_WRONLY) >= 0 || errno != EROFS || unlink(made) == 0)
            _exit(8); /* its settings: read-only, not replaced */
        snprintf(made, sizeof(made), "%s/smolvm/instances/sharing/from-jail", data);
        if (!makes(made))
            _exit(4);
        snprintf(made, sizeof(made), "%s/smolvm/instances/other/instance.json", data);
        if (open(made, O_RDONLY) >= 0)
            _exit(5);
        snprintf(made, sizeof(made), "%s/smolvm/layers/planted", data);
        if (open(made, O_WRONLY | O_CREAT, 0600) >= 0 || errno != EROFS)
            _exit(6);
        /* Its settings say no network: no net helper, nor /usr for it
         * (over a template, which holds them, taken out); with --net user
         * the helper is there. */
        if ((open("/usr/bin/true", O_RDONLY) >= 0) != net)
            _exit(9);
        /* The helper named for a VM that may run it (the spare's, set
         * ahead, taken out again for one that has none); the user's kept. */
        const char *helper = getenv("SMOLVM_NET_HELPER");
        if (over_template ? (helper != NULL) != net : !helper || strcmp(helper, "/usr/bin/true"))
            _exit(12);
        if (fd_reaches_host())
            _exit(13);
        _exit(0);
    }
    char template[160];
    snprintf(template, sizeof(template), "%s/smolvm/spare-%d.root", inside, (int)pid);
    if (root_fails) {
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        rmdir(template); /* the spare's daemon removes it after a failed start */
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == UNAVAILABLE)
            skip();
        assert_int_equal(WEXITSTATUS(status), 101); /* its start failed, and said so */
        bool left = access(own, F_OK) == 0;
        if (left) { /* what is left, said */
            char ls[512];
            snprintf(ls, sizeof(ls), "ls -la %s %s/smolvm >&2", own, inside);
            if (system(ls) != 0) {
            }
        }
        rmdir(own_root);
        rmdir(own);
        assert_false(left); /* NAME.vm: removed by the relay */
        return;
    }
    child_passed(pid);
    assert_int_equal(access(template, F_OK), -1);
    if (how == TEMPLATE_REMADE) {
        char made[192];
        snprintf(made, sizeof(made), "%s/remade-instance-cache/smolvm/disks/from-jail", dir);
        assert_int_equal(access(made, F_OK), 0);
    }
}

/* What start NAME's plan learns of the instance's shares. */
static int count_share(void *ctx, const struct vm_share_config *share)
{
    char *shared = ctx;
    if (strcmp(share->path, shared) != 0)
        return -EINVAL;
    shared[0] = '\0'; /* seen */
    return 0;
}

/* A start reads its instance's settings once (machine_start_named_prepare(),
 * outside): the jail's plan takes the shares from them, not from
 * instance.json read again. */
static void test_start_reads_instance_settings_once(void **state)
{
    (void)state;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        char data[128], layer[128], shared[128], settings[192];
        struct vm_share_config share = {.path = shared, .tag = "w"};
        struct store_create_request q = {.name = "once", .from = layer, .kernel = layer,
                                         .shares = &share, .share_count = 1};
        struct store *s;
        int fd;

        snprintf(data, sizeof(data), "%s/once-data", dir);
        snprintf(layer, sizeof(layer), "%s/once-layer.raw", dir);
        snprintf(shared, sizeof(shared), "%s/once-share", dir);
        if (mkdir(data, 0700) < 0 || mkdir(shared, 0700) < 0 ||
            setenv("XDG_DATA_HOME", data, 1) < 0 ||
            (fd = open(layer, O_WRONLY | O_CREAT, 0600)) < 0 || ftruncate(fd, 1 << 16) < 0)
            _exit(100);
        close(fd);
        if (store_open(&s) < 0 || store_create_from(s, &q) < 0)
            _exit(100);
        store_close(s);
        if (machine_start_named_prepare("once") < 0)
            _exit(101);
        /* Changed after it was read: not read again. */
        snprintf(settings, sizeof(settings), "%s/smolvm/instances/once/instance.json", data);
        if ((fd = open(settings, O_WRONLY | O_TRUNC)) < 0 || write(fd, "{", 1) != 1)
            _exit(100);
        close(fd);
        if (machine_start_named_each_share("once", count_share, shared) < 0)
            _exit(1);
        _exit(shared[0] == '\0' ? 0 : 2);
    }
    child_passed(pid);
}

static void test_start_instance_jail_plan(void **state)
{
    (void)state;
    start_instance_jail(NO_TEMPLATE);
}

static void test_start_instance_jail_over_spare_template(void **state)
{
    (void)state;
    start_instance_jail(OVER_TEMPLATE);
}

static void test_start_instance_jail_template_stale(void **state)
{
    (void)state;
    start_instance_jail(TEMPLATE_STALE);
}

static void test_start_instance_jail_template_unfit(void **state)
{
    (void)state;
    start_instance_jail(TEMPLATE_UNFIT);
}

static void test_start_instance_jail_template_remade(void **state)
{
    (void)state;
    start_instance_jail(TEMPLATE_REMADE);
}

static void test_start_instance_jail_template_link_moved(void **state)
{
    (void)state;
    start_instance_jail(TEMPLATE_LINK_MOVED);
}

static void test_start_instance_jail_vmm_waited_for_name(void **state)
{
    (void)state;
    start_instance_jail(VMM_WAITED);
}

static void test_start_instance_jail_vmm_waited_link_moved(void **state)
{
    (void)state;
    start_instance_jail(VMM_WAITED_LINK_MOVED);
}

static void test_start_instance_jail_root_fails_leaves_nothing(void **state)
{
    (void)state;
    start_instance_jail(ROOT_FAILS);
}

static void test_vmm_waited_root_fails_leaves_nothing(void **state)
{
    (void)state;
    start_instance_jail(VMM_WAITED_ROOT_FAILS);
}

/* A VMM forked before its name that ends before its root is built (the
 * name is another running VM's: its start fails there) leaves what it was
 * named alone: its relay holds nothing (the other VM's socket stays) and
 * ends with the VMM's status. */
static void test_vmm_waited_failing_first_holds_nothing(void **state)
{
    (void)state;
    char busy[192], template[192];
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        spare_template_made("busy");
        snprintf(busy, sizeof(busy), "%s/smolvm/busy.sock", inside);
        if (!makes(busy))
            _exit(100);
        if (!vmm_waits_for_name("busy"))
            _exit(101);
        _exit(3); /* as start does: 'busy' is already running */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    snprintf(template, sizeof(template), "%s/smolvm/spare-%d.root", inside, (int)pid);
    rmdir(template); /* the spare's daemon removes it then */
    if (WIFEXITED(status) && WEXITSTATUS(status) == UNAVAILABLE)
        skip();
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 3);
    snprintf(busy, sizeof(busy), "%s/smolvm/busy.sock", inside);
    assert_int_equal(access(busy, F_OK), 0);
    unlink(busy);
}

/* The relay of a VMM forked before its name lives as long as the VM: it
 * keeps nothing of the template's watch (the spare checks the template,
 * not the relay). Kept, each VM started through a spare pins an inotify
 * instance of the user's (fs.inotify.max_user_instances, 128 by default)
 * and its queue, for the VM's life (review 46: seen in the L1 as
 * anon_inode:inotify among a running API VM's relay's fds). */
static void test_relay_waiting_keeps_no_template_watch(void **state)
{
    (void)state;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        spare_template_made("watch");
        int r = cli_confine_fork_waiting();
        if (r == 1)
            _exit(0); /* the VMM: let go at once */
        if (r != 0)
            _exit(100);
        /* The relay to be, as it waits for the name and then relays. */
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        char at[300], target[64];
        int watches = 0;
        while (d && (e = readdir(d))) {
            ssize_t n;
            snprintf(at, sizeof(at), "/proc/self/fd/%s", e->d_name);
            if ((n = readlink(at, target, sizeof(target) - 1)) > 0) {
                target[n] = '\0';
                watches += strcmp(target, "anon_inode:inotify") == 0;
            }
        }
        if (d)
            closedir(d);
        while (wait(NULL) > 0)
            ;
        cli_confine_ahead_release();
        _exit(watches ? 1 : 0);
    }
    char template[160];
    snprintf(template, sizeof(template), "%s/smolvm/spare-%d.root", inside, (int)pid);
    child_passed(pid);
    rmdir(template); /* the spare's daemon removes it then */
}

static void test_start_instance_jail_over_template_with_net(void **state)
{
    (void)state;
    start_instance_jail(OVER_TEMPLATE_NET);
}

/* receive --jail's, made once the source has connected: the VM arrives
 * in an unnamed file in the data folder's migrate/ (and its instance
 * folder there), its shares are writable, the net helper runs in the
 * jail, a host file beside them is out of reach; --seccomp's words. */
static void test_receive_jail_plan(void **state)
{
    (void)state;
    enum confine_seccomp mode = CONFINE_SECCOMP_OFF;
    pid_t pid;

    assert_int_equal(cli_parse_seccomp("log", &mode), 0);
    assert_int_equal(mode, CONFINE_SECCOMP_LOG);
    assert_int_equal(cli_parse_seccomp("on", &mode), 0);
    assert_int_equal(mode, CONFINE_SECCOMP_ON);
    assert_int_equal(cli_parse_seccomp("yes", &mode), -EINVAL);
    assert_non_null(strstr(err_msg(), "'log'"));
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct vm_share_config share = {.path = inside, .tag = "s"};
        char data[128], migrate[160], made[160];
        int fd;

        snprintf(data, sizeof(data), "%s/data", dir);
        snprintf(migrate, sizeof(migrate), "%s/smolvm/migrate", data);
        if (mkdir(data, 0700) < 0 || setenv("XDG_DATA_HOME", data, 1) < 0 ||
            setenv("XDG_CACHE_HOME", data, 1) < 0 || setenv("XDG_RUNTIME_DIR", inside, 1) < 0)
            _exit(100);
        setenv("SMOLVM_NET_HELPER", "/usr/bin/true", 1); /* a stand-in */
        cli_set_verb("receive");
        if (cli_confine_receiver(true, &share, 1, "r", NULL) != CLI_OK)
            _exit(101);
        if (strcmp(confine_description(), "jail (user, mount, pid, ipc ns)") != 0)
            _exit(UNAVAILABLE);
        if (open(outside, O_RDONLY) >= 0)
            _exit(1);
        if (mkdir(migrate, 0700) < 0 && errno != EEXIST)
            _exit(2);
        if ((fd = open(migrate, O_TMPFILE | O_RDWR, 0600)) < 0)
            _exit(3);
        close(fd);
        snprintf(made, sizeof(made), "%s/from-receiver", inside);
        if (!makes(made))
            _exit(4);
        execl(getenv("SMOLVM_NET_HELPER"), "true", (char *)NULL);
        _exit(5);
    }
    child_passed(pid);
    char made[160];
    snprintf(made, sizeof(made), "%s/from-receiver", inside);
    assert_int_equal(unlink(made), 0);
}

/* The jailed receiver of VM name, forked: makes its temporary folder and
 * confines itself (it stays outside as the relay; the VMM goes on in the
 * jail). The VMM writes a file in its folder, says so on told (a byte),
 * waits for a byte on go and says the VM arrived, tells again, and ends
 * when go closes. Exit UNAVAILABLE where there is no jail. */
static pid_t jailed_receiver(const char *name, const int told[2], const int go[2])
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        close(told[0]);
        close(go[1]); /* go's end is the test's alone: closed, the VMM ends */
        struct instance_receiving receiving;
        char *own = NULL, made[256], byte;

        cli_set_verb("receive");
        setenv("SMOLVM_NET_HELPER", "/usr/bin/true", 1); /* a stand-in */
        /* Filters on: the relay waits and renames under its own. */
        if (confine_seccomp_set(CONFINE_SECCOMP_ON, "receive") < 0 ||
            instance_receiving_make(name, &receiving) < 0 || !receiving.temporary ||
            cli_confine_receiver(true, NULL, 0, name, &receiving) != CLI_OK)
            _exit(101);
        if (strcmp(confine_description(), "jail (user, mount, pid, ipc ns)") != 0)
            _exit(UNAVAILABLE);
        if (instance_dir(name, &own) < 0) /* where a receive's VM writes */
            _exit(1);
        snprintf(made, sizeof(made), "%s/delta", own);
        if (!makes(made) || write(told[1], "m", 1) != 1)
            _exit(2);
        if (read(go[0], &byte, 1) != 1)
            _exit(0); /* killed, or not wanted */
        confine_arrived();
        if (write(told[1], "a", 1) != 1)
            _exit(3);
        while (read(go[0], &byte, 1) > 0)
            ;
        _exit(0);
    }
    return pid;
}

/* The receiver's VMM's next word on told, or the receiver's end: skipped
 * where there is no jail, failed otherwise. */
static void receiver_told(int told, pid_t receiver)
{
    struct pollfd p = {.fd = told, .events = POLLIN};
    char byte;
    int status;

    while (poll(&p, 1, 100) == 0) {
        if (waitpid(receiver, &status, WNOHANG) != receiver)
            continue;
        if (WIFEXITED(status) && WEXITSTATUS(status) == UNAVAILABLE)
            skip();
        /* On stdout too: tests/run keeps a TAP output's "#" lines only. */
        printf("# receiver ended before its word: status %#x\n", (unsigned)status);
        fail_msg("receiver: status %#x", status);
    }
    assert_int_equal(read(told, &byte, 1), 1);
}

/* The host's folders of instances matching pattern (a glob). */
static size_t instances_matching(const char *data, const char *pattern)
{
    char path[256];
    glob_t g;
    size_t n;

    snprintf(path, sizeof(path), "%s/smolvm/instances/%s", data, pattern);
    if (glob(path, GLOB_PERIOD, NULL, &g) != 0)
        return 0;
    n = g.gl_pathc;
    globfree(&g);
    return n;
}

/* receive --jail's instance folder (machine/instance.h, confine/jail.h):
 * made as .r.receiving-PID, and the VMM writes it as instances/r; the host
 * has no folder r until the VMM says the VM arrived, then r holds what it
 * wrote and the temporary name is gone. A receiver SIGKILLed before
 * leaves only its temporary folder, which the next receive's sweep
 * removes -- but never a live receiver's. */
static void test_receive_jail_names_folder_on_arrival(void **state)
{
    struct xdg x;
    struct instance_receiving live;
    int told[2], go[2], status;
    char *instances, reused[256];
    (void)state;

    assert_int_equal(xdg_in_scratch("arrival", &x), 0);
    assert_int_equal(pipe(told), 0);
    assert_int_equal(pipe(go), 0);
    pid_t receiver = jailed_receiver("r", told, go);
    receiver_told(told[0], receiver);
    assert_int_equal(instances_matching(x.data, "r"), 0);
    assert_int_equal(instances_matching(x.data, ".r.receiving-*/delta"), 1);
    assert_int_equal(write(go[1], "1", 1), 1);
    receiver_told(told[0], receiver);
    /* The relay renames it, under its filter, which it builds at run time
     * first (libseccomp; slow in the ASan build on a loaded machine). */
    for (int i = 0; i < 1000 && instances_matching(x.data, "r/delta") == 0; i++)
        usleep(10000);
    assert_int_equal(instances_matching(x.data, "r/delta"), 1);
    assert_int_equal(instances_matching(x.data, ".r.receiving-*"), 0);
    close(go[1]);
    child_passed(receiver);
    assert_int_equal(instances_matching(x.data, "r/delta"), 1); /* not a leftover: it holds a file */

    /* Killed before the VM arrived: the temporary folder is all it left. */
    close(go[0]);
    assert_int_equal(pipe(go), 0);
    receiver = jailed_receiver("k", told, go);
    receiver_told(told[0], receiver);
    assert_int_equal(kill(receiver, SIGKILL), 0);
    assert_int_equal(waitpid(receiver, &status, 0), receiver);
    assert_int_equal(instances_matching(x.data, "k"), 0);
    assert_int_equal(instances_matching(x.data, ".k.receiving-*"), 1);
    /* The next receive sweeps it, but not a live one's (this process's),
     * and it takes its own name again when a gone receiver had its pid. */
    snprintf(reused, sizeof(reused), "%s/smolvm/instances/.live.receiving-%d", x.data,
             (int)getpid());
    assert_int_equal(mkdir(reused, 0700), 0);
    assert_int_equal(instance_receiving_make("live", &live), 0);
    assert_non_null(live.temporary);
    assert_non_null(instances = paths_instances_dir());
    instance_receiving_sweep(instances);
    assert_int_equal(instances_matching(x.data, ".k.receiving-*"), 0);
    assert_int_equal(instances_matching(x.data, ".live.receiving-*"), 1);
    instance_receiving_remove(&live);
    assert_int_equal(instances_matching(x.data, ".live.receiving-*"), 0);
    free(instances);
    close(go[0]);
    close(go[1]);
    close(told[0]);
    close(told[1]);
}

/* In a forked child: into the jail of plan, or exit UNAVAILABLE where
 * this host allows none (exit 101: it failed halfway). */
static void jail_or_skip(const struct confine_plan *plan)
{
    int r = jail_enter(plan);

    if (r == -EPERM || r == -ENOSYS || r == -EINVAL || r == -ENOSPC || r == -EACCES)
        _exit(UNAVAILABLE);
    if (r < 0)
        _exit(101);
}

/* A file of the plan inside a folder of the plan with the same access is
 * reached through the folder, not bound again on top (a mount point cannot
 * be removed: an unnamed VM's delta, in its instance folder under the data
 * folder, is removed as the VM ends); one with less access still is. */
static void test_files_inside_folders(void **state)
{
    char delta[160], base[160];
    (void)state;

    snprintf(delta, sizeof(delta), "%s/delta.qcow2", inside);
    snprintf(base, sizeof(base), "%s/base.raw", inside);
    assert_int_equal(sh("echo d > '%s' && echo b > '%s'", delta, base), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct confine_plan plan = {0};
        int fd;

        if (confine_plan_add(&plan, inside, true) < 0 || confine_plan_add(&plan, delta, true) < 0 ||
            confine_plan_add(&plan, base, false) < 0 || !(plan.root = strdup(root)))
            _exit(100);
        jail_or_skip(&plan);
        if (open(base, O_WRONLY) >= 0 || errno != EROFS)
            _exit(1); /* read-only inside the writable folder */
        if ((fd = open(base, O_RDONLY)) < 0)
            _exit(2);
        close(fd);
        if (unlink(delta) < 0)
            _exit(3);
        _exit(0);
    }
    child_passed(pid);
    assert_int_equal(access(delta, F_OK), -1); /* removed on the host */
    assert_int_equal(unlink(base), 0);
}

/* The root's mount points are made from inside it, with the umask off:
 * the folders on the way keep the host's modes exactly (sticky, set-gid,
 * 0711), and a read-only bind keeps the flags of the mount it comes from
 * (/dev's nosuid: a user namespace may not lift them) while it is
 * read-only; a file and a folder of the plan are bound as what they are. */
static void test_root_keeps_modes_and_flags(void **state)
{
    char folders[4][192], leaf[224], other[224];
    mode_t host_mode[4];
    struct statvfs host_dev;
    struct stat st;
    (void)state;

    snprintf(folders[0], sizeof(folders[0]), "%s/sticky", dir);
    snprintf(folders[1], sizeof(folders[1]), "%s/sticky/setgid", dir);
    snprintf(folders[2], sizeof(folders[2]), "%s/sticky/setgid/private", dir);
    /* A second path below the set-gid folder, made in the root for a path
     * bound before (a shorter one: other/ below setgid/ without its bit):
     * the root remembers the set-gid folder it made, and what mkdir()
     * gives private/ from it is taken back as for the first. */
    snprintf(folders[3], sizeof(folders[3]), "%s/sticky/setgid/other", dir);
    snprintf(leaf, sizeof(leaf), "%s/sticky/setgid/private/leaf.txt", dir);
    snprintf(other, sizeof(other), "%s/sticky/setgid/other/o.txt", dir);
    assert_int_equal(sh("mkdir -p '%s' '%s' && chmod 1777 '%s' && chmod 2755 '%s' && chmod 711 '%s' && "
                        "chmod 00750 '%s' && echo l > '%s' && echo o > '%s'",
                        folders[2], folders[3], folders[0], folders[1], folders[2], folders[3],
                        leaf, other),
                     0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(stat(folders[i], &st), 0);
        host_mode[i] = st.st_mode & 07777;
    }
    assert_int_equal(host_mode[0], 01777);
    assert_int_equal(host_mode[1] & 02000, 02000);
    assert_int_equal(host_mode[3], 0750);
    assert_int_equal(statvfs("/dev/null", &host_dev), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct confine_plan plan = {0};
        struct statvfs sv;

        if (confine_plan_add(&plan, leaf, false) < 0 || confine_plan_add(&plan, other, false) < 0 ||
            confine_plan_add(&plan, inside, true) < 0 ||
            confine_plan_add(&plan, "/dev/null", false) < 0 || !(plan.root = strdup(root)))
            _exit(100);
        jail_or_skip(&plan);
        for (int i = 0; i < 4; i++)
            if (stat(folders[i], &st) < 0 || (st.st_mode & 07777) != host_mode[i])
                _exit(10 + i); /* the folders on the way: the host's modes */
        if (stat(leaf, &st) < 0 || !S_ISREG(st.st_mode) || stat(inside, &st) < 0 ||
            !S_ISDIR(st.st_mode))
            _exit(4);
        if (statvfs("/dev/null", &sv) < 0 || !(sv.f_flag & ST_RDONLY))
            _exit(5);
        if ((host_dev.f_flag & ST_NOSUID) && !(sv.f_flag & ST_NOSUID))
            _exit(6);
        if (statvfs(leaf, &sv) < 0 || !(sv.f_flag & ST_RDONLY) || statvfs(inside, &sv) < 0 ||
            (sv.f_flag & ST_RDONLY))
            _exit(7);
        _exit(0);
    }
    child_passed(pid);
    assert_int_equal(sh("rm -rf '%s'", folders[0]), 0);
}

/* The net helper runs in the jail: a dynamically linked program does, given
 * /usr and the links (/lib64 -> usr/lib64) its loader is named through. */
static void test_jail_runs_a_dynamic_program(void **state)
{
    (void)state;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        static const char *const system[] = {"/usr", "/lib", "/lib64", "/etc/ld.so.cache"};
        struct confine_plan plan = {0};
        for (size_t i = 0; i < sizeof(system) / sizeof(system[0]); i++)
            if (confine_plan_add(&plan, system[i], false) < 0)
                _exit(100);
        if (confine_plan_add(&plan, inside, true) < 0 || !(plan.root = strdup(root)))
            _exit(100);
        jail_or_skip(&plan);
        execl("/usr/bin/true", "true", (char *)NULL);
        _exit(102);
    }
    child_passed(pid);
}

/* A jailed VMM under the filters, its relay outside (the forked child).
 * The VMM says it runs on ready, then waits; SIGTERM ends it with exit 42
 * (a handler, as the VMM's stop on signals: pid 1 of a namespace ignores
 * the signals it has none for). */
static void vmm_stops(int sig)
{
    (void)sig;
    _exit(42);
}

/* leftovers: paths the relay removes after the VMM, NULL at the end (or
 * none); slot_taken: another file at one of the relay's slots. */
static pid_t jailed_vmm_leaving(int ready, void (*ahead)(void), char *const *leftovers,
                                bool slot_taken)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        struct confine_plan plan = {.vmm_ahead = ahead};
        if (confine_plan_add(&plan, inside, true) < 0 || !(plan.root = strdup(root)))
            _exit(100);
        for (char *const *left = leftovers; left && *left; left++) {
            char *slash = strrchr(*left, '/');
            *slash = '\0';
            if (confine_plan_leftover(&plan, *left, slash + 1) < 0)
                _exit(100);
            *slash = '/';
        }
        /* Another file at one of the relay's slots (seccomp_rules.h). */
        if (slot_taken && dup2(STDIN_FILENO, SECCOMP_RELAY_FD_BASE + 5) < 0)
            _exit(100);
        if (confine_seccomp_set(CONFINE_SECCOMP_ON, "run") < 0)
            _exit(UNAVAILABLE);
        jail_or_skip(&plan);
        signal(SIGTERM, vmm_stops);
        if (write(ready, "r", 1) != 1)
            _exit(101);
        for (;;)
            pause();
    }
    return pid;
}

static pid_t jailed_vmm(int ready, void (*ahead)(void))
{
    return jailed_vmm_leaving(ready, ahead, NULL, false);
}

/* "Seccomp:\t2" in /proc/PID/status within 5 s (the relay installs its
 * filter just after the fork). */
static bool filtered(pid_t pid)
{
    char path[64], text[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    for (int i = 0; i < 250; i++) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
        if (f)
            fclose(f);
        text[n] = 0;
        if (strstr(text, "\nSeccomp:\t2\n"))
            return true;
        usleep(20000);
    }
    return false;
}

/* The relay's child, the VMM, as the host sees it. */
static pid_t vmm_of(pid_t relay)
{
    char path[64];
    int child = 0;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)relay, (int)relay);
    FILE *f = fopen(path, "r");
    if (f && fscanf(f, "%d", &child) != 1)
        child = 0;
    if (f)
        fclose(f);
    return child;
}

/* Fails the test, ending the jailed VMM (the relay then ends too). */
static void relay_failed(pid_t relay, const char *why)
{
    pid_t vmm = vmm_of(relay);
    if (vmm > 0)
        kill(vmm, SIGKILL);
    waitpid(relay, NULL, 0);
    fail_msg("%s", why);
}

/* A jailed VMM and its relay, ready: the relay's pid. */
static pid_t relay_ready(int ready[2])
{
    char c;
    pid_t relay = jailed_vmm(ready[1], NULL);
    if (read(ready[0], &c, 1) != 1) {
        child_passed(relay); /* its reason: skipped, or failed */
        fail_msg("the jailed child said nothing");
    }
    return relay;
}

/* The jail's relay stays outside the VMM's pid namespace, so it gets a
 * filter of its own (a process of the VMM's, unfiltered, was what the
 * nested seccomp check found under --jail). Under it, it still passes
 * SIGTERM on to the VMM and ends with the VMM's exit status, and when the
 * VMM is killed (SIGKILL) it ends by the same signal. It runs at nice
 * 19, off the VMM's way to its guest. */
static void test_relay_is_filtered_and_relays(void **state)
{
    int ready[2], status;
    (void)state;

    assert_int_equal(pipe(ready), 0);
    pid_t relay = relay_ready(ready);
    if (!filtered(relay))
        relay_failed(relay, "the relay shows no Seccomp: 2");
    errno = 0;
    if (getpriority(PRIO_PROCESS, (id_t)relay) != 19) /* off the VMM's way (jail.c) */
        relay_failed(relay, "the relay does not run at nice 19");
    assert_int_equal(kill(relay, SIGTERM), 0);
    assert_int_equal(waitpid(relay, &status, 0), relay);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 42)
        fail_msg("relay: status %#x, not the VMM's exit 42 after SIGTERM", status);
    relay = relay_ready(ready);
    if (!filtered(relay))
        relay_failed(relay, "the relay shows no Seccomp: 2");
    pid_t vmm = vmm_of(relay);
    assert_true(vmm > 0);
    assert_int_equal(kill(vmm, SIGKILL), 0);
    assert_int_equal(waitpid(relay, &status, 0), relay);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("relay: status %#x, not ended by the VMM's SIGKILL", status);
    close(ready[0]);
    close(ready[1]);
}

/* What the relay holds at fd (its /proc link), "" for nothing. */
static void relay_fd(pid_t relay, int fd, char *target, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)relay, fd);
    ssize_t n = readlink(path, target, size - 1);
    target[n > 0 ? n : 0] = '\0';
}

/* The relay moves the folders it holds to the numbers its build-time
 * filter names (seccomp_rules.h: no libseccomp building it as the VM
 * starts), each folder once (two leftovers in one folder share its
 * descriptor), and removes its leftovers under that filter once the VMM
 * has ended. Another file at one of those numbers -- which that filter
 * would reach -- leaves them where they were (its filter built, naming
 * them); it removes them all the same. */
static void test_relay_holds_its_folders_in_slots(void **state)
{
    char left[3][160], there[3][PATH_MAX], want[2][PATH_MAX];
    int ready[2], status;
    char c;
    (void)state;

    assert_non_null(realpath(dir, want[0]));
    assert_non_null(realpath(inside, want[1]));
    assert_int_equal(pipe(ready), 0);
    for (int taken = 0; taken < 2; taken++) {
        snprintf(left[0], sizeof(left[0]), "%s/left-%d", dir, taken);
        snprintf(left[1], sizeof(left[1]), "%s/left-%d", inside, taken);
        snprintf(left[2], sizeof(left[2]), "%s/left-%d.b", dir, taken);
        for (int i = 0; i < 3; i++)
            assert_int_equal(mkdir(left[i], 0700), 0);
        pid_t relay = jailed_vmm_leaving(ready[1], NULL, (char *[]){left[0], left[1], left[2], NULL},
                                         taken);
        if (read(ready[0], &c, 1) != 1) {
            child_passed(relay); /* its reason: skipped, or failed */
            fail_msg("the jailed child said nothing");
        }
        if (!filtered(relay))
            relay_failed(relay, "the relay shows no Seccomp: 2");
        for (int i = 0; i < 3; i++)
            relay_fd(relay, SECCOMP_RELAY_FD_BASE + i, there[i], sizeof(there[i]));
        if (strcmp(there[0], taken ? "" : want[0]) != 0 ||
            strcmp(there[1], taken ? "" : want[1]) != 0 || strcmp(there[2], "") != 0) {
            char why[3 * PATH_MAX + 64];
            snprintf(why, sizeof(why), "%s: the relay's slots hold '%s', '%s', '%s'",
                     taken ? "a slot taken" : "its slots free", there[0], there[1], there[2]);
            relay_failed(relay, why);
        }
        assert_int_equal(kill(relay, SIGTERM), 0);
        assert_int_equal(waitpid(relay, &status, 0), relay);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 42)
            fail_msg("relay: status %#x, not the VMM's exit 42 after SIGTERM", status);
        for (int i = 0; i < 3; i++) /* removed, under its filter */
            if (access(left[i], F_OK) == 0)
                fail_msg("%s is left", left[i]);
    }
    close(ready[0]);
    close(ready[1]);
}

/* The pipes between test_relay_waits_for_the_root() and its VMM's ahead
 * thread: "the root is being built" (the thread's byte), "go on" (the
 * test's). */
static int ahead_says[2], ahead_hears[2];

static void ahead_waits_for_test(void)
{
    char c;
    if (write(ahead_says[1], "a", 1) != 1 || read(ahead_hears[0], &c, 1) != 1)
        _exit(103);
}

/* "State" and "Seccomp" of PID's status, read at once. */
static bool relay_state(pid_t pid, char *state, int *seccomp)
{
    char path[64], text[4096], *at;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
    if (f)
        fclose(f);
    text[n] = 0;
    if (!(at = strstr(text, "\nState:\t")) || sscanf(at, "\nState:\t%c", state) != 1)
        return false;
    return (at = strstr(text, "\nSeccomp:\t")) && sscanf(at, "\nSeccomp:\t%d", seccomp) == 1;
}

/* While the VMM builds its root (its ahead thread runs then, held here),
 * the relay sleeps and has loaded no filter yet: it takes no CPU from the
 * VMM (jail.c relay()). Once the root is built it loads its filter. */
static void test_relay_waits_for_the_root(void **state)
{
    int ready[2], seccomp = -1;
    char c, st = '?';
    (void)state;

    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(ahead_says), 0);
    assert_int_equal(pipe(ahead_hears), 0);
    pid_t relay = jailed_vmm(ready[1], ahead_waits_for_test);
    close(ahead_says[1]); /* the child's alone: its end is this test's end of the wait */
    close(ahead_hears[0]);
    struct pollfd said = {.fd = ahead_says[0], .events = POLLIN};
    if (poll(&said, 1, 10000) != 1 || read(ahead_says[0], &c, 1) != 1) {
        child_passed(relay); /* its reason: skipped, or failed */
        fail_msg("the jailed VMM's ahead thread said nothing");
    }
    /* Asleep (within 5 s: it may not have run since the fork), unfiltered. */
    for (int i = 0; i < 250 && relay_state(relay, &st, &seccomp) && st != 'S'; i++)
        usleep(20000);
    assert_int_equal(write(ahead_hears[1], "g", 1), 1);
    if (st != 'S' || seccomp != 0) {
        char why[96];
        snprintf(why, sizeof(why), "while the root is built, the relay is '%c', Seccomp %d", st,
                 seccomp);
        relay_failed(relay, why);
    }
    if (read(ready[0], &c, 1) != 1)
        relay_failed(relay, "the jailed VMM did not get ready");
    if (!filtered(relay))
        relay_failed(relay, "the relay shows no Seccomp: 2 after the root");
    assert_int_equal(kill(relay, SIGTERM), 0);
    assert_int_equal(waitpid(relay, NULL, 0), relay);
    close(ready[0]);
    close(ready[1]);
    close(ahead_says[0]);
    close(ahead_hears[1]);
}

static void *idle(void *opaque)
{
    pause();
    return opaque;
}

/* A process that may not make namespaces (here: one of two threads, which
 * unshare(CLONE_NEWUSER) refuses) gets landlock, and says so. */
static void test_falls_back_to_landlock(void **state)
{
    (void)state;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        struct confine_plan plan = {0};
        enum confine_kind got;
        pthread_t t;
        if (pthread_create(&t, NULL, idle, NULL) != 0 || confine_plan_add(&plan, inside, true) < 0 ||
            !(plan.root = strdup(root)))
            _exit(100);
        if (confine_enter(&plan, &got) < 0)
            _exit(101);
        /* None is right only where the kernel has no landlock. */
        if (got == CONFINE_NONE)
            _exit(syscall(SYS_landlock_create_ruleset, NULL, 0, 1) < 1 ? UNAVAILABLE : 102);
        if (got != CONFINE_LANDLOCK || strcmp(confine_description(), "landlock") != 0)
            _exit(103);
        _exit(open(outside, O_RDONLY) >= 0 ? 104 : 0);
    }
    child_passed(pid);
}

/* The test hook's probes (test builds): a reachable NAME.vsock is
 * connected to (opening a socket fails even when reachable), a folder is
 * written in, a missing file is denied. */
static void test_probe_reaches_what_is_there(void **state)
{
#ifdef SMOLVM_TEST_HOOKS
    char sock[128], list[512], log[128], text[1024] = "";
    int saved = dup(STDERR_FILENO), fd;
    (void)state;

    snprintf(sock, sizeof(sock), "%s/probe.vsock", dir);
    snprintf(log, sizeof(log), "%s/probe.log", dir);
    assert_true(listen_at(sock) >= 0);
    snprintf(list, sizeof(list), "%s:%s/:%s/missing", sock, inside, dir);
    setenv("SMOLVM_TEST_JAIL_PROBE", list, 1);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0 && dup2(fd, STDERR_FILENO) >= 0);
    confine_probe();
    dup2(saved, STDERR_FILENO);
    close(fd);
    close(saved);
    unsetenv("SMOLVM_TEST_JAIL_PROBE");
    fd = open(log, O_RDONLY);
    assert_true(fd >= 0 && read(fd, text, sizeof(text) - 1) > 0);
    close(fd);
    snprintf(list, sizeof(list), "confine probe: %s: opened", sock);
    assert_non_null(strstr(text, list));
    snprintf(list, sizeof(list), "confine probe: %s/: opened", inside);
    assert_non_null(strstr(text, list));
    snprintf(list, sizeof(list), "confine probe: %s/missing: denied", dir);
    assert_non_null(strstr(text, list));
#else
    (void)state;
    skip();
#endif
}

/* A name to remove after asked for twice (an instance folder is the
 * start's own and the store's) takes one of the few slots, not two. */
static void test_plan_leftover_once(void **state)
{
    (void)state;
    struct confine_plan plan = {0};

    assert_int_equal(confine_plan_leftover(&plan, "/run/x", "a"), 0);
    assert_int_equal(confine_plan_leftover(&plan, "/run/x", "a"), 0);
    assert_int_equal(plan.leftover_count, 1);
    assert_int_equal(confine_plan_leftover(&plan, "/run/x", "b"), 0);
    assert_int_equal(confine_plan_leftover(&plan, "/run/y", "a"), 0);
    assert_int_equal(plan.leftover_count, 3);
    confine_plan_release(&plan);
}

/* A part of a plan made ahead (a spare's, cli/jail.h), merged into
 * another as it was resolved: each path once (writable when either is),
 * what it is (folder or file) kept, its links made again; a plan full is
 * an error, not a path left out. */
static void test_plan_merge(void **state)
{
    (void)state;
    struct confine_plan part = {0}, plan = {0};
    char alias[128];

    snprintf(alias, sizeof(alias), "%s/alias-for-merge", dir);
    assert_int_equal(symlink(inside, alias), 0);
    assert_int_equal(confine_plan_add(&part, readonly, false), 0);
    assert_int_equal(confine_plan_add(&part, alias, true), 0);
    unlink(alias);
    assert_int_equal(confine_plan_add(&plan, readonly, true), 0);
    assert_int_equal(confine_plan_merge(&plan, &part), 0);
    assert_int_equal(plan.count, 2);
    assert_string_equal(plan.paths[0].path, readonly);
    assert_true(plan.paths[0].writable); /* the plan's own, kept */
    assert_false(plan.paths[0].folder);
    assert_string_equal(plan.paths[1].path, inside);
    assert_true(plan.paths[1].writable && plan.paths[1].folder);
    assert_int_equal(plan.link_count, 1);
    assert_string_equal(plan.links[0].path, alias);
    assert_string_equal(plan.links[0].target, inside);
    confine_plan_release(&plan);
    /* Full: refused whole. */
    for (unsigned i = 0; i < CONFINE_MAX_PATHS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "/merge-%u", i);
        plan.paths[i].path = strdup(name);
    }
    plan.count = CONFINE_MAX_PATHS;
    assert_int_equal(confine_plan_merge(&plan, &part), -E2BIG);
    confine_plan_release(&plan);
    confine_plan_release(&part);
}

static void test_plan_paths(void **state)
{
    (void)state;
    struct confine_plan plan = {0};
    char relative[128];

    assert_int_equal(confine_plan_add(&plan, "/nonexistent-smolvm", true), 0);
    assert_int_equal(plan.count, 0); /* nothing there: left out */
    assert_int_equal(confine_plan_add(&plan, readonly, false), 0);
    assert_int_equal(confine_plan_add(&plan, readonly, true), 0);
    assert_int_equal(plan.count, 1); /* once, writable when any asks */
    assert_true(plan.paths[0].writable);
    assert_int_equal(chdir(dir), 0);
    snprintf(relative, sizeof(relative), "./inside/../inside");
    assert_int_equal(confine_plan_add(&plan, relative, false), 0);
    assert_string_equal(plan.paths[1].path, inside); /* made absolute */
    snprintf(relative, sizeof(relative), "%s/", inside);
    assert_int_equal(confine_plan_add(&plan, relative, false), 0);
    assert_int_equal(plan.count, 2); /* its real name has no '/' at its end */
    /* A link: what it names (let in once), and the link made again. */
    snprintf(relative, sizeof(relative), "%s/alias-of-inside", dir);
    assert_int_equal(symlink(inside, relative), 0);
    assert_int_equal(confine_plan_add(&plan, relative, false), 0);
    unlink(relative);
    assert_int_equal(plan.count, 2);
    assert_int_equal(plan.link_count, 1);
    assert_string_equal(plan.links[0].target, inside);
    assert_true(plan.paths[1].folder);
    /* A link to a file: a file's mount point; a name through a link
     * (link/f) adds no link of its own. */
    char file[160], alias[160], through[160];
    snprintf(file, sizeof(file), "%s/planned-file", inside);
    snprintf(alias, sizeof(alias), "%s/alias-of-file", dir);
    snprintf(through, sizeof(through), "%s/planned-file", link_to_inside);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(symlink(file, alias), 0);
    assert_int_equal(confine_plan_add(&plan, alias, false), 0);
    assert_int_equal(confine_plan_add(&plan, through, false), 0);
    unlink(alias);
    unlink(file);
    assert_int_equal(plan.count, 3);
    assert_string_equal(plan.paths[2].path, file);
    assert_false(plan.paths[2].folder);
    assert_int_equal(plan.link_count, 2);
    assert_string_equal(plan.links[1].path, alias);
    /* A link to a folder not planned before: a folder's mount point. */
    snprintf(file, sizeof(file), "%s/planned-folder", inside);
    snprintf(alias, sizeof(alias), "%s/alias-of-folder", dir);
    assert_int_equal(mkdir(file, 0700), 0);
    assert_int_equal(symlink(file, alias), 0);
    assert_int_equal(confine_plan_add(&plan, alias, false), 0);
    unlink(alias);
    rmdir(file);
    assert_int_equal(plan.count, 4);
    assert_true(plan.paths[3].folder);
    /* A link named through '..' or '//': refused (made again under the
     * root as typed, the name could climb out of it). */
    snprintf(alias, sizeof(alias), "%s/alias-of-inside", dir);
    assert_int_equal(symlink(inside, alias), 0);
    snprintf(through, sizeof(through), "%s/../%s/alias-of-inside", dir, strrchr(dir, '/') + 1);
    assert_int_equal(confine_plan_add(&plan, through, false), -EINVAL);
    snprintf(through, sizeof(through), "%s//alias-of-inside", dir);
    assert_int_equal(confine_plan_add(&plan, through, false), -EINVAL);
    err_clear();
    unlink(alias);
    assert_int_equal(plan.count, 4);
    for (int i = plan.count; i < CONFINE_MAX_PATHS; i++)
        plan.paths[plan.count++].path = strdup("/x");
    assert_int_equal(confine_plan_add(&plan, "/", false), -E2BIG);
    confine_plan_release(&plan);
    assert_int_equal(plan.count, 0);
}

/* In a forked child: only descriptors 0-2 open (a hole among them filled
 * with /dev/null), so what jail_enter() opens next is 3, 4, ... */
static void only_standard_descriptors(void)
{
    int fd;

    close_range(3, ~0u, 0);
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd < 3)
        ;
    if (fd > 2)
        close(fd);
}

/* Each of descriptors 3..63 closed: 0, else the first open one. */
static int first_open_descriptor(void)
{
    for (int fd = 3; fd < 64; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            return fd;
    return 0;
}

enum broken_step { ROOT_PIPE_REFUSED, FORK_REFUSED };

/* In a forked child: jail_enter() with an arrival's pipe and a leftover
 * held, failing at STEP -- the root's pipe (no descriptor left: the
 * arrival's pipe takes 3-4, the leftover's folder 5, the limit is 6) or
 * the fork (a filter refuses clone) -- must close what it opened. Exit 0,
 * UNAVAILABLE, or 102 (it did not fail there), 103 (a descriptor left). */
static void __attribute__((noreturn)) enter_failing_at(enum broken_step step)
{
    struct confine_plan plan = {0};
    char arriving[160];

    snprintf(arriving, sizeof(arriving), "%s/arriving", inside);
    if (mkdir(arriving, 0700) < 0 && errno != EEXIST)
        _exit(100);
    if (confine_plan_add(&plan, inside, true) < 0 || !(plan.root = strdup(root)) ||
        confine_plan_leftover(&plan, inside, "vm.jail") < 0 ||
        confine_plan_arrival(&plan, inside, "arriving", "arrived", -1) < 0)
        _exit(100);
    if (step == ROOT_PIPE_REFUSED) {
        struct rlimit six = {6, 6};
        if (setrlimit(RLIMIT_NOFILE, &six) < 0)
            _exit(100);
    } else {
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx || seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAGAIN), SCMP_SYS(clone), 0) < 0 ||
            seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAGAIN), SCMP_SYS(clone3), 0) < 0 ||
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || seccomp_load(ctx) < 0)
            _exit(100);
        seccomp_release(ctx);
    }
    only_standard_descriptors();
    int r = jail_enter(&plan);
    if (r == -EPERM || r == -ENOSYS || r == -EINVAL || r == -ENOSPC || r == -EACCES)
        _exit(UNAVAILABLE);
    if (r != -ENOTRECOVERABLE ||
        !strstr(err_msg(), step == ROOT_PIPE_REFUSED ? "the root's pipe" : "cannot fork"))
        _exit(102);
    int left = first_open_descriptor();
    if (left)
        fprintf(stderr, "descriptor %d left open\n", left);
    _exit(left ? 103 : 0);
}

/* jail_enter() failing before its fork closes the pipes and folders it
 * opened (the caller ends, but a descriptor must not outlive its use). */
static void test_failure_before_fork_closes_what_it_opened(void **state)
{
    (void)state;
    for (enum broken_step step = ROOT_PIPE_REFUSED; step <= FORK_REFUSED; step++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            enter_failing_at(step);
        child_passed(pid);
    }
    char arriving[160];
    snprintf(arriving, sizeof(arriving), "%s/arriving", inside);
    rmdir(arriving);
    rmdir(root); /* made on the host's file system before the fork */
}

static void test_cgroup_own_path(void **state)
{
    (void)state;
    char path[64];

    assert_int_equal(cgroup_own_path("4:memory:/x\n0::/user.slice/a.scope\n", path, sizeof(path)), 0);
    assert_string_equal(path, "/user.slice/a.scope");
    assert_int_equal(cgroup_own_path("0::/\n", path, sizeof(path)), 0);
    assert_string_equal(path, "/");
    assert_int_equal(cgroup_own_path("1:cpu:/\n10::/x\n", path, sizeof(path)), -ENOENT);
    assert_int_equal(cgroup_own_path("0::relative\n", path, sizeof(path)), -ENOENT);
    assert_int_equal(cgroup_own_path("0::/a\n", path, 2), -ENAMETOOLONG);
}

/* In a forked child: moved into smolvm-unit-test with the limits, or, on a
 * host that delegates no cgroup, one message naming what is missing (skip).
 * The child ends (exit): back where it was, its cgroup is gone. */
static void test_cgroup_limits(void **state)
{
    (void)state;
    struct cgroup_limits l = {.cpu_quota_milli = 500, .mem_bytes = 64ull << 20};
    char own[256] = "", report[512] = "";
    int fds[2];
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char text[1024], path[512], line[64] = "";
        int r = cgroup_enter("unit-test", &l);
        if (r < 0) {
            bool says = strstr(err_msg(), "cgroup") != NULL;
            _exit(says && (r == -EPERM || r == -ENOTSUP) ? UNAVAILABLE : 100);
        }
        FILE *f = fopen("/proc/self/cgroup", "r");
        size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
        text[n] = '\0';
        if (f)
            fclose(f);
        if (cgroup_own_path(text, own, sizeof(own)) < 0 || !strstr(own, "/smolvm-unit-test"))
            _exit(101);
        snprintf(path, sizeof(path), "/sys/fs/cgroup%s", own);
        if (access(path, F_OK) < 0)
            snprintf(path, sizeof(path), "/sys/fs/cgroup/unified%s", own);
        snprintf(text, sizeof(text), "%s/cpu.max", path);
        if (!(f = fopen(text, "r")) || !fgets(line, sizeof(line), f))
            _exit(102);
        fclose(f);
        dprintf(fds[1], "%s\n%s", path, line);
        exit(0); /* not _exit(): cgroup_leave() runs at exit */
    }
    close(fds[1]);
    ssize_t n = read(fds[0], report, sizeof(report) - 1);
    close(fds[0]);
    report[n > 0 ? n : 0] = '\0';
    child_passed(pid);
    char *line = strchr(report, '\n');
    assert_non_null(line);
    *line++ = '\0';
    assert_string_equal(line, "50000 100000\n");
    assert_int_equal(access(report, F_OK), -1); /* removed when it ended */
}

static void test_cgroup_cpu_max(void **state)
{
    (void)state;
    char line[64];

    cgroup_cpu_max(1500, line, sizeof(line));
    assert_string_equal(line, "150000 100000");
    cgroup_cpu_max(10, line, sizeof(line));
    assert_string_equal(line, "1000 100000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jail_keeps_to_plan),
        cmocka_unit_test(test_jail_runs_ahead_in_vmm),
        cmocka_unit_test(test_jail_begins_disarmed_in_vmm),
        cmocka_unit_test(test_vmm_forked_before_its_plan),
        cmocka_unit_test(test_landlock_keeps_to_plan),
        cmocka_unit_test(test_run_jail_plan),
        cmocka_unit_test(test_run_jail_finds_unpacked_kernel),
        cmocka_unit_test(test_start_jail_plan),
        cmocka_unit_test(test_start_instance_jail_plan),
        cmocka_unit_test(test_start_reads_instance_settings_once),
        cmocka_unit_test(test_start_instance_jail_over_spare_template),
        cmocka_unit_test(test_start_instance_jail_template_stale),
        cmocka_unit_test(test_start_instance_jail_template_unfit),
        cmocka_unit_test(test_start_instance_jail_over_template_with_net),
        cmocka_unit_test(test_start_instance_jail_template_remade),
        cmocka_unit_test(test_start_instance_jail_template_link_moved),
        cmocka_unit_test(test_start_instance_jail_vmm_waited_for_name),
        cmocka_unit_test(test_vmm_waited_failing_first_holds_nothing),
        cmocka_unit_test(test_start_instance_jail_vmm_waited_link_moved),
        cmocka_unit_test(test_start_instance_jail_root_fails_leaves_nothing),
        cmocka_unit_test(test_vmm_waited_root_fails_leaves_nothing),
        cmocka_unit_test(test_relay_waiting_keeps_no_template_watch),
        cmocka_unit_test(test_start_jail_in_readonly_home),
        cmocka_unit_test(test_receive_jail_plan),
        cmocka_unit_test(test_receive_jail_names_folder_on_arrival),
        cmocka_unit_test(test_files_inside_folders),
        cmocka_unit_test(test_root_keeps_modes_and_flags),
        cmocka_unit_test(test_jail_runs_a_dynamic_program),
        cmocka_unit_test(test_relay_is_filtered_and_relays),
        cmocka_unit_test(test_relay_holds_its_folders_in_slots),
        cmocka_unit_test(test_relay_waits_for_the_root),
        cmocka_unit_test(test_falls_back_to_landlock),
        cmocka_unit_test(test_probe_reaches_what_is_there),
        cmocka_unit_test(test_plan_paths),
        cmocka_unit_test(test_plan_leftover_once),
        cmocka_unit_test(test_plan_merge),
        cmocka_unit_test(test_failure_before_fork_closes_what_it_opened),
        cmocka_unit_test(test_cgroup_own_path),
        cmocka_unit_test(test_cgroup_cpu_max),
        cmocka_unit_test(test_cgroup_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
