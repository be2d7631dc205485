/* smolvm bsd-user: run a FreeBSD or NetBSD amd64 executable on this Linux
 * host (also installed as smol-bsd-user, for binfmt_misc). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "bsduser/bsduser.h"
#include "cli/cli.h"
#include "util/err.h"

static const char help[] =
    "usage: smolvm bsd-user [--root DIR] [--strace] [--] PROGRAM [ARGS...]\n"
    "\n"
    "Runs a FreeBSD (or NetBSD) amd64 executable natively, translating its system\n"
    "calls to Linux ones: threads, signals, kqueue, sockets, fork and exec (a BSD\n"
    "program it runs stays under bsd-user).\n"
    "\n"
    "      --root DIR  a BSD sysroot: a dynamic executable's runtime linker is\n"
    "                  loaded from there, and absolute paths are looked up there\n"
    "                  first (it must be a folder)\n"
    "      --strace    print every system call (as truss does); unsupported ones\n"
    "                  fail with ENOSYS and are named there\n"
    "  -h, --help      this text\n"
    "Options end at PROGRAM: what follows it is the program's own.\n"
    "\n"
    "System calls are caught with Syscall User Dispatch (Linux 5.11+), else with a\n"
    "seccomp filter (SMOLVM_BSDUSER_DISPATCH=seccomp forces that).\n"
    "\n"
    "Exit status: the program's; 1 if it cannot be run; 2 on a bad command line;\n"
    "128+N when it dies of signal N.\n";

int cli_bsd_user(int argc, char **argv)
{
    static const struct option longs[] = {{"root", required_argument, NULL, 'r'},
                                          {"strace", no_argument, NULL, 's'},
                                          {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    struct bsduser_options o = {0};
    int c;

    optind = 1;
    /* Options end at the program: its own arguments are its own. */
    while ((c = cli_getopt_long(argc, argv, "+h", longs, NULL)) != -1) {
        if (c == 'r')
            o.root = optarg;
        else if (c == 's')
            o.strace = true;
        else if (c == 'h') {
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
