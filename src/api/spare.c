/* The spare VMM's words with the daemon (api/spare.h). */
#include "api/spare.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "api/control.h"
#include "util/err.h"

int spare_take_name(int fd, char *name, size_t size)
{
    size_t len = 0;
    char *end = NULL;

    while (!end) {
        ssize_t n = read(fd, name + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET; /* closed: the daemon ends us */
        len += (size_t)n;
        name[len] = '\0';
        end = memchr(name, '\n', len);
        if (!end && len == size - 1)
            return err_plain(EINVAL, "the spare's name is longer than a machine name");
    }
    if (end != name + len - 1 || memchr(name, '\0', len))
        return err_plain(EINVAL, "the spare was told more than one machine name");
    *end = '\0';
    if (!control_name_ok(name))
        return err_plain(EINVAL, "'%s' is not a machine name", name);
    const char taken = SPARE_TAKEN;
    char go = 0;
    ssize_t n;
    while (send(fd, &taken, 1, MSG_NOSIGNAL) != 1)
        if (errno != EINTR)
            return errno == EPIPE ? -ECONNRESET : -errno;
    /* Nothing of the machine's made before the daemon says so: one it
     * gave up on (spare_give_name()'s timeout) kills a spare that made
     * nothing. */
    while ((n = read(fd, &go, 1)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return errno == ECONNRESET ? -ECONNRESET : -errno;
    return n == 1 && go == SPARE_GO ? 0 : -ECONNRESET;
}

int spare_give_name(int fd, const char *name, int timeout_ms)
{
    char line[80], answer;
    size_t len = strlen(name);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n;

    if (len + 1 > sizeof(line))
        return -ENAMETOOLONG;
    memcpy(line, name, len);
    line[len++] = '\n';
    if ((n = send(fd, line, len, MSG_NOSIGNAL)) != (ssize_t)len)
        return n < 0 ? -errno : -EIO;
    while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
        ;
    if (n <= 0)
        return n < 0 ? -errno : -ETIMEDOUT;
    while ((n = read(fd, &answer, 1)) < 0 && errno == EINTR)
        ;
    if (n != 1 || answer != SPARE_TAKEN)
        return -ECONNRESET;
    const char go = SPARE_GO;
    return send(fd, &go, 1, MSG_NOSIGNAL) == 1 ? 0 : -ECONNRESET;
}

char *spare_root_dir(pid_t spare)
{
    char *dir, *root = NULL;

    if (control_dir(&dir) < 0)
        return NULL;
    if (asprintf(&root, "%s/spare-%d.root", dir, (int)spare) < 0) {
        err_set(ENOMEM, "spare");
        root = NULL;
    }
    free(dir);
    return root;
}

/* PID of a spare's root folder name ("spare-PID.root"), 0 when the name
 * is not one. */
static pid_t spare_of(const char *name)
{
    char *end;
    long pid;

    if (strncmp(name, "spare-", 6) != 0 || name[6] < '1' || name[6] > '9')
        return 0;
    errno = 0;
    pid = strtol(name + 6, &end, 10);
    return errno == 0 && pid > 0 && pid <= INT32_MAX && strcmp(end, ".root") == 0 ? (pid_t)pid
                                                                                : 0;
}

void spare_roots_sweep(void)
{
    char *dir;
    DIR *d;
    struct dirent *e;

    if (control_dir(&dir) < 0) {
        err_clear(); /* no runtime folder: nothing left in one */
        return;
    }
    d = opendir(dir);
    while (d && (e = readdir(d))) {
        pid_t pid = spare_of(e->d_name);
        if (pid && kill(pid, 0) < 0 && errno == ESRCH)
            unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
    }
    if (d)
        closedir(d);
    free(dir);
}
