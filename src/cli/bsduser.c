/* smolvm bsd-user: run a FreeBSD or NetBSD amd64 executable on this Linux
 * host (also installed as smol-bsd-user, for binfmt_misc). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "bsduser/bsduser.h"
#include "cli/cli.h"
#include "util/err.h"

static const char help[] =
    "usage: smolvm bsd-user [--root DIR] [--strace] PROGRAM [ARGS...]\n"
    "\n"
    "Runs a FreeBSD (or NetBSD) amd64 executable natively, translating its system\n"
    "calls to Linux ones: threads, signals, kqueue, sockets, fork and exec (a BSD\n"
    "program it runs stays under bsd-user).\n"
    "\n"
    "      --root DIR  a BSD sysroot: a dynamic executable's runtime linker is\n"
    "                  loaded from there, and absolute paths are looked up there\n"
    "                  first\n"
    "      --strace    print every system call (as truss does); unsupported ones\n"
    "                  fail with ENOSYS and are named there\n"
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
    while ((c = getopt_long(argc, argv, "+", longs, NULL)) != -1) {
        if (c == 'r')
            o.root = optarg;
        else if (c == 's')
            o.strace = true;
        else if (c == 'h') {
            fputs(help, stdout);
            return CLI_OK;
        } else
            return cli_fail(CLI_USAGE, "unknown option (try 'smolvm bsd-user --help')");
    }
    if (optind >= argc)
        return cli_fail(CLI_USAGE, "no program given (try 'smolvm bsd-user --help')");
    if (bsduser_run(argv[optind], &o, argc - optind, argv + optind) < 0)
        return cli_fail(CLI_FAILED, "bsd-user: %s", err_msg());
    return CLI_FAILED;
}
