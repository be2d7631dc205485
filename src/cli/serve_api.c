/* smolvm serve: the REST API daemon. It is its own executable,
 * smolvm-serve beside smolvm, linked with libmicrohttpd (whose static
 * build pulls in GnuTLS, which Debian ships no static build of the rest
 * of): smolvm stays one static-pie file, and the VMs the daemon starts
 * are that file. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_serve(int argc, char **argv)
{
    (void)argc; /* argv ends in NULL: it goes to the daemon whole */
    char self[PATH_MAX], daemon[PATH_MAX + 16], *slash;
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

    if (n <= 0)
        return cli_fail(CLI_FAILED, "/proc/self/exe: %s", strerror(errno));
    self[n] = 0;
    snprintf(daemon, sizeof(daemon), "%s", self);
    if ((slash = strrchr(daemon, '/')))
        strcpy(slash + 1, "smolvm-serve");
    setenv("SMOLVM_EXE", self, 1); /* what the daemon starts VMs with */
    argv[0] = "smolvm-serve";
    execv(daemon, argv);
    return cli_fail(CLI_FAILED, "%s: %s (built when libmicrohttpd-dev is installed)", daemon,
                    strerror(errno));
}
