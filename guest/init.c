/* The /init of smolvm appliances: a static binary in the initramfs that
 * loads the kernel modules listed in /modules/order (virtio-mmio, the
 * disk, the root file system and the other devices, in dependency order),
 * mounts the root disk, moves /dev, /proc and /sys onto it and switches to
 * it. Then it runs the command given as smolvm.run="..." on the kernel
 * command line through /bin/sh and powers off, or execs /sbin/init.
 *
 * The guest agent (/smolvm-agent in the initramfs, when there) is started
 * on the new root before either: `smolvm exec` and `smolvm cp` talk to it.
 *
 * The ACPI power button (`smolvm stop`) shuts the guest down: a child
 * watches the button's input device (the button and evdev modules); when
 * pressed, the smolvm.run command gets SIGTERM and the guest powers off,
 * or /sbin/init is told to power off (busybox init: SIGUSR2, systemd:
 * SIGRTMIN+4).
 *
 * Kernel command line: smolvm.root=/dev/vda (default), smolvm.rootfs=ext2
 * (ext4 also mounts ext2), smolvm.ro, smolvm.run="command",
 * smolvm.share=TAG[:DIR][,TAG[:DIR]...] (virtio-fs shares mounted at DIR,
 * default /mnt/TAG; smolvm run adds the tags of its --share options),
 * smolvm.trace (smolvm run --trace-boot: each phase's end is written to
 * /dev/kmsg as "smolvm-init: trace NAME", so the kernel stamps it on its
 * clock and smolvm puts it on the boot's timeline).
 *
 * A kernel without ACPI (smolvm's micro kernel) cannot power off: the
 * machine is reset instead (the i8042's reset line), which ends the VM as
 * well. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/input.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMDLINE_MAX 4096
#define ROOT_WAIT_MS 5000
#define BUTTON_WAIT_MS 5000 /* evdev's node appears shortly after its module loads */
#define COMMAND_STOP_MS 3000 /* what the command gets between SIGTERM and the poweroff */

static void say(const char *fmt, ...)
{
    va_list ap;
    fputs("smolvm-init: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int trace_fd = -1; /* /dev/kmsg when smolvm.trace is on */

static void trace(const char *phase)
{
    char line[96];
    /* One plain write() per record: dprintf() first asks the descriptor
     * for its offset (lseek SEEK_CUR), which /dev/kmsg refuses with
     * EINVAL, and then writes nothing. */
    int n = snprintf(line, sizeof(line), "<5>smolvm-init: trace %s\n", phase);
    if (trace_fd >= 0 && n > 0 && (size_t)n < sizeof(line) && write(trace_fd, line, (size_t)n) < 0)
        trace_fd = -1;
}

static void power_off(void)
{
    sync();
    /* Without ACPI, Linux's power-off halts the CPUs and the VM would
     * stay; its reboot resets through the keyboard controller. */
    reboot(access("/sys/firmware/acpi", F_OK) == 0 ? RB_POWER_OFF : RB_AUTOBOOT);
    for (;;)
        pause();
}

static void fail(const char *what)
{
    say("%s: %s; powering off", what, strerror(errno));
    power_off();
}

/* The value of key=... on the command line (double quotes allowed), or
 * NULL; "" for a bare key. */
static const char *param(const char *cmdline, const char *key, char *out, size_t size)
{
    size_t klen = strlen(key);
    for (const char *p = cmdline; *p;) {
        while (*p == ' ' || *p == '\n')
            p++;
        const char *start = p;
        bool quoted = false;
        while (*p && (quoted || (*p != ' ' && *p != '\n'))) {
            if (*p == '"')
                quoted = !quoted;
            p++;
        }
        if ((size_t)(p - start) >= klen && strncmp(start, key, klen) == 0 &&
            (start[klen] == '=' || start + klen == p)) {
            const char *v = start[klen] == '=' ? start + klen + 1 : p;
            size_t n = 0;
            for (; v < p && n + 1 < size; v++)
                if (*v != '"')
                    out[n++] = *v;
            out[n] = 0;
            return out;
        }
    }
    return NULL;
}

/* A module's parameters from the kernel command line ("virtio_mmio.device=...":
 * module name, a dot, the parameter), as modprobe passes them: the kernel
 * applies command-line parameters only to built-in code. */
static void module_args(const char *cmdline, const char *file, char *out, size_t size)
{
    char module[64];
    const char *base = strrchr(file, '/');
    size_t n = strcspn(base ? base + 1 : file, ".");
    snprintf(module, sizeof(module), "%.*s", (int)n, base ? base + 1 : file);
    for (char *c = module; *c; c++)
        *c = *c == '-' ? '_' : *c;
    out[0] = 0;
    for (const char *p = cmdline; *p;) {
        size_t len = strcspn(p, " \n");
        if (len > strlen(module) + 1 && strncmp(p, module, strlen(module)) == 0 &&
            p[strlen(module)] == '.' && strlen(out) + len < size - 1) {
            strncat(out, p + strlen(module) + 1, len - strlen(module) - 1);
            strcat(out, " ");
        }
        p += len;
        p += strspn(p, " \n");
    }
}

static void load_modules(const char *cmdline)
{
    char name[256], path[300], args[1024];
    FILE *order = fopen("/modules/order", "r");

    while (order && fgets(name, sizeof(name), order)) {
        name[strcspn(name, "\n")] = 0;
        snprintf(path, sizeof(path), "/modules/%s", name);
        module_args(cmdline, name, args, sizeof(args));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (syscall(SYS_finit_module, fd, args, 0) < 0 && errno != EEXIST))
            say("module %s: %s", name, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    if (order)
        fclose(order);
}

static void wait_for(const char *device)
{
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int waited = 0; access(device, F_OK) != 0 && waited < ROOT_WAIT_MS; waited += 10)
        nanosleep(&tick, NULL);
}

static void switch_root(const char *dev, const char *fstype, bool ro)
{
    static const char *const moved[] = {"/dev", "/proc", "/sys"};
    char target[32];

    mkdir("/newroot", 0755);
    wait_for(dev);
    if (mount(dev, "/newroot", fstype, ro ? MS_RDONLY : 0, NULL) < 0 &&
        mount(dev, "/newroot", "ext4", ro ? MS_RDONLY : 0, NULL) < 0)
        fail(dev);
    for (int i = 0; i < 3; i++) {
        snprintf(target, sizeof(target), "/newroot%s", moved[i]);
        mkdir(target, 0755);
        if (mount(moved[i], target, NULL, MS_MOVE, NULL) < 0)
            say("move %s: %s", moved[i], strerror(errno));
    }
    /* The initramfs stays in memory, unreachable: it is small. */
    if (chdir("/newroot") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
        chdir("/") < 0)
        fail("switch root");
}

/* mkdir -p of an absolute path. */
static void make_dirs(char *path)
{
    for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = 0;
        mkdir(path, 0755);
        *p = '/';
    }
    mkdir(path, 0755);
}

/* A share's file is read in the page cache's readahead windows, a READ
 * each up to 512 KiB (the server's max_pages), 128 KiB by default (the
 * server can only lower it). Nested fs bench (--bench, boots 1/2/3), a
 * 64 MiB read, guest pages already touched: 512 KiB windows 0.53/1.91/
 * 0.58 s (and again after the others 1.57/0.83/0.46), 256 KiB 0.98/1.32/
 * 0.72, 1 MiB (two READs each) 0.87/0.87/0.50, 128 KiB 0.95/2.55/0.95;
 * QEMU's 9p 1.43/0.93/1.27. Most of a READ's cost (the guest's side,
 * its notification and interrupt) does not grow with its size: the
 * fewer the better, up to the largest one READ carries. The stat waits
 * for the server's answer to INIT, which would lower a window set before
 * it to the kernel's default. */
#define SHARE_READAHEAD_KB "512"

static void widen_readahead(const char *dir)
{
    char path[64];
    struct stat st;
    int fd;

    if (stat(dir, &st) < 0)
        return;
    snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
             minor(st.st_dev));
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, SHARE_READAHEAD_KB, strlen(SHARE_READAHEAD_KB)) < 0)
        say("share at %s: readahead: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static void mount_shares(const char *cmdline)
{
    char list[CMDLINE_MAX], dir[CMDLINE_MAX], *save = NULL;

    if (!param(cmdline, "smolvm.share", list, sizeof(list)))
        return;
    for (char *tag = strtok_r(list, ",", &save); tag; tag = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tag, ':');
        if (colon)
            *colon = 0;
        snprintf(dir, sizeof(dir), "%s%s", colon ? "" : "/mnt/", colon ? colon + 1 : tag);
        if (dir[0] != '/')
            continue;
        make_dirs(dir);
        if (mount(tag, dir, "virtiofs", 0, NULL) < 0)
            say("share %s at %s: %s", tag, dir, strerror(errno));
        else
            widen_readahead(dir);
    }
}

/* The agent runs from the initramfs file, opened before the switch, on
 * the new root. */
static void start_agent(int fd)
{
    static char *const argv[] = {"smolvm-agent", NULL};
    extern char **environ;

    if (fd < 0)
        return;
    if (fork() == 0) {
        setsid();
        fexecve(fd, argv, environ);
        say("agent: %s", strerror(errno));
        _exit(127);
    }
    close(fd);
}

/* The input device Linux's ACPI button driver names "Power Button", or -1. */
static int open_power_button(void)
{
    char path[32], name[32];

    for (int i = 0; i < 32; i++) {
        snprintf(path, sizeof(path), "/dev/input/event%d", i);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        memset(name, 0, sizeof(name));
        if (ioctl(fd, EVIOCGNAME(sizeof(name) - 1), name) >= 0 &&
            strcmp(name, "Power Button") == 0)
            return fd;
        close(fd);
    }
    return -1;
}

/* Whether KEY_POWER was pressed (false: no button, or its device failed). */
static bool power_key_pressed(void)
{
    struct timespec tick = {0, 50 * 1000 * 1000};
    struct input_event ev;
    int fd = open_power_button();

    for (int waited = 0; fd < 0 && waited < BUTTON_WAIT_MS; waited += 50) {
        nanosleep(&tick, NULL);
        fd = open_power_button();
    }
    for (;;) {
        ssize_t n = fd < 0 ? -1 : read(fd, &ev, sizeof(ev));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(ev))
            return false;
        if (ev.type == EV_KEY && ev.code == KEY_POWER && ev.value == 1)
            return true;
    }
}

/* A child that exits 0 when the power button is pressed, after sending
 * signal (0: none) to PID 1; 0 when it could not be started. */
static pid_t watch_power_button(int signal)
{
    pid_t pid = fork();

    if (pid != 0)
        return pid > 0 ? pid : 0;
    if (!power_key_pressed())
        _exit(1);
    say("power button pressed: shutting down");
    if (signal)
        kill(1, signal);
    _exit(0);
}

/* The signal that makes /sbin/init power off. */
static int init_poweroff_signal(void)
{
    char target[256];
    ssize_t n = readlink("/sbin/init", target, sizeof(target) - 1);

    target[n > 0 ? n : 0] = 0;
    return strstr(target, "systemd") ? SIGRTMIN + 4 : SIGUSR2;
}

/* Runs the smolvm.run command until it exits or the power button is
 * pressed (then it gets SIGTERM, and COMMAND_STOP_MS to end). */
static void run_command(const char *run)
{
    struct timespec tick = {0, 50 * 1000 * 1000};
    pid_t watcher = watch_power_button(0), child = fork(), ended;
    int status = 0, waited = 0;

    if (child == 0) {
        setpgid(0, 0); /* SIGTERM reaches the whole command */
        execl("/bin/sh", "sh", "-c", run, (char *)NULL);
        _exit(127);
    }
    while (child > 0 && (ended = waitpid(-1, &status, 0)) != child) {
        if (ended < 0 && errno != EINTR)
            break;
        if (ended != watcher || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            continue;
        kill(-child, SIGTERM);
        kill(child, SIGTERM);
        status = SIGTERM; /* a wait status: killed by SIGTERM, unless it ends in time */
        while (waitpid(child, &status, WNOHANG) == 0 && waited < COMMAND_STOP_MS) {
            nanosleep(&tick, NULL);
            waited += 50;
        }
        break;
    }
    trace("command_exited");
    printf("smolvm-init: command exited with %d\n",
           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
    fflush(stdout);
}

int main(void)
{
    char cmdline[CMDLINE_MAX] = "", dev[128], fstype[32], run[CMDLINE_MAX];
    int fd;

    mkdir("/dev", 0755);
    mkdir("/proc", 0555);
    mkdir("/sys", 0555);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    fd = open("/proc/cmdline", O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, cmdline, sizeof(cmdline) - 1);
        cmdline[n > 0 ? n : 0] = 0;
        close(fd);
    }
    if (param(cmdline, "smolvm.trace", run, sizeof(run)))
        trace_fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    trace("start");
    load_modules(cmdline);
    trace("modules_loaded");
    int agent = open("/smolvm-agent", O_RDONLY | O_CLOEXEC);
    switch_root(param(cmdline, "smolvm.root", dev, sizeof(dev)) ? dev : "/dev/vda",
                param(cmdline, "smolvm.rootfs", fstype, sizeof(fstype)) ? fstype : "ext2",
                param(cmdline, "smolvm.ro", run, sizeof(run)) != NULL);
    trace("root_mounted");
    mount_shares(cmdline);
    setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
    setenv("HOME", "/root", 1);
    start_agent(agent);
    if (!param(cmdline, "smolvm.run", run, sizeof(run))) {
        watch_power_button(init_poweroff_signal());
        trace("exec_sbin_init");
        execl("/sbin/init", "init", (char *)NULL);
        fail("/sbin/init");
    }
    trace("command_started");
    run_command(run);
    power_off();
    return 0;
}
