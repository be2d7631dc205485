/* smolvm bsd-user: run a FreeBSD or NetBSD amd64 executable on this Linux
 * host (also installed as smol-bsd-user, for binfmt_misc). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bsduser/bsduser.h"
#include "cli/cli.h"
#include "util/err.h"

static const char help[] =
    "usage: smolvm bsd-user [--root DIR] [--strace [-o FILE]] [--] PROGRAM [ARGS...]\n"
    "       smolvm bsd-user --register | --unregister\n"
    "\n"
    "Runs a FreeBSD (or NetBSD) amd64 executable natively, translating its system\n"
    "calls to Linux ones: threads, signals, kqueue, sockets, fork and exec (a BSD\n"
    "program it runs stays under bsd-user).\n"
    "\n"
    "      --root DIR  a BSD sysroot: a dynamic executable's runtime linker is\n"
    "                  loaded from there, and absolute paths are looked up there\n"
    "                  first (it must be a folder)\n"
    "      --strace    print every system call as truss does (strings, flags by\n"
    "                  name, structures by address, errno names); unsupported\n"
    "                  ones fail with ENOSYS and are named there\n"
    "      -o FILE     --strace's lines into FILE (made or emptied) instead of\n"
    "                  stderr, from the programs it execs too\n"
    "      --register  install the binfmt_misc entries that run FreeBSD amd64\n"
    "                  executables, and NetBSD's that Go built, directly (./prog)\n"
    "                  with smol-bsd-user, the link next to smolvm (made when\n"
    "                  missing); they work in containers and chroots (flag F) and\n"
    "                  keep the program's argv[0] (P). NetBSD's own toolchain\n"
    "                  marks its executables only by an ELF note at no fixed\n"
    "                  offset: run those as smolvm bsd-user PROGRAM\n"
    "      --unregister  remove it\n"
    "  -h, --help      this text\n"
    "Options end at PROGRAM: what follows it is the program's own.\n"
    "\n"
    "System calls are caught with Syscall User Dispatch (Linux 5.11+), else with a\n"
    "seccomp filter (SMOLVM_BSDUSER_DISPATCH=seccomp forces that).\n"
    "\n"
    "Exit status: the program's; 1 if it cannot be run; 2 on a bad command line;\n"
    "128+N when it dies of signal N.\n";

/* The interpreter binfmt_misc runs: smol-bsd-user next to this smolvm
 * (main enters bsd-user by that name), a link to it made when missing. */
static int interpreter_path(char *path, size_t size)
{
    char self[PATH_MAX];
    struct stat mine, there;
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0 || stat("/proc/self/exe", &mine) < 0)
        return err_set(errno, "/proc/self/exe");
    self[n] = 0;
    char *name = strrchr(self, '/');
    *name++ = 0;
    if (snprintf(path, size, "%s/smol-bsd-user", self) >= (int)size)
        return err_plain(ENAMETOOLONG, "%s: path too long", self);
    if (stat(path, &there) < 0 && errno == ENOENT && symlink(name, path) < 0)
        return err_set(errno, "%s (the link binfmt_misc runs)", path);
    if (stat(path, &there) < 0 || there.st_dev != mine.st_dev || there.st_ino != mine.st_ino)
        return err_plain(EEXIST, "%s is not this smolvm", path);
    return 0;
}

static int binfmt(bool add)
{
    char interpreter[PATH_MAX];
    int r = add ? interpreter_path(interpreter, sizeof(interpreter)) : 0;
    if (r == 0)
        r = add ? bsd_binfmt_register(interpreter) : bsd_binfmt_unregister();
    return r < 0 ? cli_fail(CLI_FAILED, "%s", err_msg()) : CLI_OK;
}

/* Run by binfmt_misc with flag P (the kernel says so in AT_FLAGS): argv is
 * smol-bsd-user, the program's path, then its own argv, argv[0] included;
 * nothing there is an option of ours. */
static bool from_binfmt(int argc, char **argv)
{
    const char *self = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    return argc >= 2 && strcmp(self, "smol-bsd-user") == 0 &&
           (getauxval(AT_FLAGS) & 1 /* AT_FLAGS_PRESERVE_ARGV0 */);
}

int cli_bsd_user(int argc, char **argv)
{
    static const struct option longs[] = {{"root", required_argument, NULL, 'r'},
                                          {"strace", no_argument, NULL, 's'},
                                          {"register", no_argument, NULL, 'R'},
                                          {"unregister", no_argument, NULL, 'U'},
                                          /* -o FILE's descriptor, passed on at an exec */
                                          {"trace-fd", required_argument, NULL, 'T'},
                                          {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    struct bsduser_options o = {0};
    int c;

    if (from_binfmt(argc, argv)) {
        char *path = argv[1];
        /* An empty argv (argc 0 for the program): its path stands in. */
        char **args = argc > 2 ? argv + 2 : argv + 1;
        if (bsduser_run(path, &o, argc > 2 ? argc - 2 : 1, args) < 0)
            return cli_fail(CLI_FAILED, "%s", err_msg());
        return CLI_FAILED;
    }
    optind = 1;
    /* Options end at the program: its own arguments are its own. */
    while ((c = cli_getopt_long(argc, argv, "+ho:", longs, NULL)) != -1) {
        if (c == 'o') {
            if (o.trace_fd > 0)
                return cli_fail(CLI_USAGE, "-o given twice");
            o.trace_fd = open(optarg, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (o.trace_fd < 0)
                return cli_fail(CLI_FAILED, "-o '%s': %s", optarg, strerror(errno));
        } else if (c == 'T') {
            char *end;
            long fd = strtol(optarg, &end, 10);
            if (*end || end == optarg || fd <= STDERR_FILENO || fd > 1 << 20 ||
                fcntl((int)fd, F_GETFD) < 0 || o.trace_fd > 0)
                return cli_fail(CLI_USAGE, "--trace-fd %s: not an open descriptor", optarg);
            o.trace_fd = (int)fd;
        } else if (c == 'r')
            o.root = optarg;
        else if (c == 's')
            o.strace = true;
        else if (c == 'R' || c == 'U') {
            if (optind != argc || argc != 2)
                return cli_fail(CLI_USAGE, "%s takes nothing else", argv[optind - 1]);
            return binfmt(c == 'R');
        } else if (c == 'h') {
            fputs(help, stdout);
            return CLI_OK;
        }
    }
    if (optind >= argc)
        return cli_fail(CLI_USAGE, "no program given (try 'smolvm bsd-user --help')");
    struct stat st;
    if (o.root && stat(o.root, &st) < 0)
        return cli_fail(CLI_FAILED, "--root '%s': %s", o.root, strerror(errno));
    if (o.root && !S_ISDIR(st.st_mode))
        return cli_fail(CLI_FAILED, "--root '%s' is not a folder", o.root);
    if (bsduser_run(argv[optind], &o, argc - optind, argv + optind) < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    return CLI_FAILED;
}
