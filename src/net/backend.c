#include "net/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/config.h"
#include "util/err.h"

#define HELPER_FD 3
#define HELPER_START_MS 5000
#define HELPER_EXIT_MS 3000
#define SOCKET_BUFFER (1 << 20) /* frames queued each way before senders wait */
#define MAX_HELPER_ARGS (6 + 2 * VM_MAX_PORT_FORWARDS + 1)

#define VNET_HDR_BYTES 12 /* struct virtio_net_hdr_v1 */

struct net_backend {
    int fd;
    bool socket;  /* else a TAP: read() and write() */
    bool with_header; /* a TAP with IFF_VNET_HDR */
    pid_t helper; /* 0: none */
    bool greeting; /* the helper's first message is still to come */
};

int net_helper_path(char *out, size_t size)
{
    const char *env = getenv("SMOLVM_NET_HELPER");
    static const char *const beside[] = {"smolvm-net", "../libexec/smolvm/smolvm-net"};
    char self[PATH_MAX];
    ssize_t n;

    if (env && *env) {
        if ((size_t)snprintf(out, size, "%s", env) >= size)
            return err_plain(ENAMETOOLONG, "SMOLVM_NET_HELPER is too long");
        return 0;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0)
        return err_set(errno, "/proc/self/exe");
    self[n] = '\0';
    *strrchr(self, '/') = '\0';
    /* Beside smolvm in a build tree; in libexec once installed. */
    for (size_t i = 0; i < sizeof(beside) / sizeof(beside[0]); i++) {
        if ((size_t)snprintf(out, size, "%s/%s", self, beside[i]) >= size)
            return err_plain(ENAMETOOLONG, "%s: path too long", self);
        if (access(out, X_OK) == 0)
            return 0;
    }
    snprintf(out, size, "%s/%s", self, beside[0]);
    return 0;
}

unsigned net_user_mtu(void)
{
    const char *env = getenv("SMOLVM_NET_USER_MTU");
    char *end;
    unsigned long mtu;

    if (!env || !*env)
        return NET_USER_MTU;
    mtu = strtoul(env, &end, 10);
    return *end || mtu < NET_MIN_MTU || mtu > NET_USER_MTU ? NET_USER_MTU : (unsigned)mtu;
}

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? -1 : 0;
}

/* After fork, before exec: only async-signal-safe calls. */
static void __attribute__((noreturn)) exec_helper(const char *path, char **argv, int fd)
{
    sigset_t none;
    int null = open("/dev/null", O_RDWR);

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0)
        _exit(127);
    if (fd == HELPER_FD)
        fcntl(fd, F_SETFD, 0);
    else if (dup2(fd, HELPER_FD) < 0)
        _exit(127);
    syscall(SYS_close_range, HELPER_FD + 1, ~0u, 0); /* the VM's descriptors stay ours */
    execv(path, argv);
    _exit(127);
}

/* The helper's first message, received: ready, or why it cannot serve (a
 * taken port). */
static int helper_greeting(struct net_backend *b, int flags)
{
    char msg[256];
    ssize_t n;

    do
        n = recv(b->fd, msg, sizeof(msg) - 1, flags);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EWOULDBLOCK)
        return -EAGAIN;
    b->greeting = false;
    if (n <= 0)
        return err_plain(EIO, "smolvm-net exited at start (is libslirp installed?)");
    msg[n] = '\0';
    if (strcmp(msg, NET_HELPER_READY) == 0)
        return 0;
    if (strncmp(msg, NET_HELPER_ERROR, strlen(NET_HELPER_ERROR)) == 0)
        return err_plain(EIO, "--net user: %s", msg + strlen(NET_HELPER_ERROR));
    return err_plain(EIO, "smolvm-net: unexpected first message");
}

static int await_helper(struct net_backend *b, const char *path)
{
    struct pollfd p = {.fd = b->fd, .events = POLLIN};

    if (poll(&p, 1, HELPER_START_MS) <= 0)
        return err_plain(ETIMEDOUT, "%s did not answer within %d s", path, HELPER_START_MS / 1000);
    return helper_greeting(b, 0);
}

static int start_helper(const struct vm_net_config *cfg, struct net_backend *b)
{
    char path[PATH_MAX], fwd[VM_MAX_PORT_FORWARDS][64], mtu[32];
    char *argv[MAX_HELPER_ARGS];
    int sv[2], argc = 0, r, size = SOCKET_BUFFER;

    if ((r = net_helper_path(path, sizeof(path))) < 0)
        return r;
    if (access(path, X_OK) < 0)
        return err_set(errno, "--net user (an appliance's default; --net none runs without a "
                              "NIC) needs its helper %s, built beside smolvm", path);
    argv[argc++] = path;
    argv[argc++] = "--fd=3";
    snprintf(mtu, sizeof(mtu), "--mtu=%u", net_user_mtu());
    argv[argc++] = mtu;
    if (cfg->restrict_outbound)
        argv[argc++] = "--restrict";
    if (cfg->allow_count) /* the allowlist is IPv4's */
        argv[argc++] = "--no-ipv6";
    for (unsigned i = 0; i < cfg->forward_count; i++) {
        net_format_forward(&cfg->forwards[i], fwd[i], sizeof(fwd[i]));
        argv[argc++] = "-p";
        argv[argc++] = fwd[i];
    }
    argv[argc] = NULL;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return err_set(errno, "socketpair");
    for (int i = 0; i < 2; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    b->helper = fork();
    if (b->helper == 0)
        exec_helper(path, argv, sv[1]);
    close(sv[1]);
    b->fd = sv[0];
    if (b->helper < 0) {
        b->helper = 0;
        return err_set(errno, "fork");
    }
    /* A forward's host port may be taken: run fails at once, saying so.
     * Without forwards nothing can fail but the helper itself: the VM
     * boots meanwhile, its frames wait in the socket, and the greeting is
     * read before the first frame back (net_backend_recv). */
    b->greeting = true;
    return cfg->forward_count ? await_helper(b, path) : 0;
}

/* An existing TAP (one the user may open: 'ip tuntap add NAME mode tap
 * user USER'), or a new one when we may make it (root; it goes with us). */
static int open_tap(const char *name, struct net_backend *b)
{
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    int header = VNET_HDR_BYTES;

    b->fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (b->fd < 0)
        return err_set(errno, "--net tap=%s: /dev/net/tun", name);
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(b->fd, TUNSETIFF, &ifr) < 0)
        return err_set(errno, "--net tap=%s: cannot attach (make it first: 'ip tuntap add %s "
                              "mode tap user $USER')", name, name);
    /* The guest's header goes with each frame: the host's kernel completes
     * checksums and segments, as the guest negotiated (offloads off until
     * then). */
    if (ioctl(b->fd, TUNSETVNETHDRSZ, &header) < 0 || ioctl(b->fd, TUNSETOFFLOAD, 0) < 0)
        return err_set(errno, "--net tap=%s: virtio-net headers", name);
    b->with_header = true;
    return 0;
}

bool net_backend_with_header(const struct net_backend *b)
{
    return b->with_header;
}

int net_backend_set_offloads(struct net_backend *b, bool csum, bool tso4, bool tso6)
{
    unsigned long flags = 0;

    if (csum) /* segments need checksums left to the receiver */
        flags = TUN_F_CSUM | (tso4 ? TUN_F_TSO4 : 0) | (tso6 ? TUN_F_TSO6 : 0);
    if (ioctl(b->fd, TUNSETOFFLOAD, flags) < 0)
        return err_set(errno, "TAP offloads");
    return 0;
}

int net_backend_open(const struct vm_net_config *cfg, struct net_backend **out)
{
    struct net_backend *b = calloc(1, sizeof(*b));
    int r = 0;

    *out = NULL;
    if (!b)
        return err_set(ENOMEM, "net backend");
    b->fd = -1;
    b->socket = cfg->mode != VM_NET_TAP;
    if (cfg->mode == VM_NET_USER)
        r = start_helper(cfg, b);
    else if (cfg->mode == VM_NET_TAP)
        r = open_tap(cfg->tap_name, b);
    else if (cfg->mode == VM_NET_FD && (b->fd = fcntl(cfg->fd, F_DUPFD_CLOEXEC, 0)) < 0)
        r = err_set(errno, "net: fd %d", cfg->fd);
    else if (cfg->mode != VM_NET_FD)
        r = err_plain(EINVAL, "net: no backend");
    if (r == 0 && set_nonblocking(b->fd) < 0)
        r = err_set(errno, "net: O_NONBLOCK");
    if (r < 0) {
        net_backend_close(b);
        return r;
    }
    *out = b;
    return 0;
}

/* The helper exits when its socket closes; one that does not (in 3 s) is
 * killed. */
static void reap_helper(pid_t pid)
{
    struct timespec tick = {0, 10 * 1000 * 1000};

    for (int waited = 0; waited < HELPER_EXIT_MS; waited += 10) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        nanosleep(&tick, NULL);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

void net_backend_close(struct net_backend *b)
{
    if (!b)
        return;
    if (b->fd >= 0)
        close(b->fd);
    if (b->helper > 0)
        reap_helper(b->helper);
    free(b);
}

int net_backend_fd(const struct net_backend *b)
{
    return b->fd;
}

int net_backend_send(struct net_backend *b, const void *frame, size_t len)
{
    ssize_t n;

    do
        n = b->socket ? send(b->fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL)
                      : write(b->fd, frame, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return 0;
}

/* The helper's greeting, when it is still to come, before its frames:
 * 0 read (or none due), -EAGAIN not yet, -EIO it cannot serve (said). */
static int greeting_first(struct net_backend *b)
{
    int r;

    if (!b->greeting || (r = helper_greeting(b, MSG_DONTWAIT)) == 0)
        return 0;
    if (r != -EAGAIN)
        fprintf(stderr, "smolvm: %s\n", err_msg());
    return r == -EAGAIN ? r : -EIO;
}

ssize_t net_backend_recv_iov(struct net_backend *b, const struct iovec *iov, unsigned count)
{
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = count};
    ssize_t n;

    if ((n = greeting_first(b)) < 0)
        return n;
    do /* a TAP truncates silently: cap is more than any frame it passes */
        n = b->socket ? recvmsg(b->fd, &msg, MSG_DONTWAIT | MSG_TRUNC) : readv(b->fd, iov, (int)count);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

ssize_t net_backend_recv(struct net_backend *b, void *buf, size_t cap)
{
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    return net_backend_recv_iov(b, &iov, 1);
}

ssize_t net_backend_peek(struct net_backend *b)
{
    ssize_t n;

    if (!b->socket)
        return -ENOTSUP;
    if ((n = greeting_first(b)) < 0)
        return n;
    do
        n = recv(b->fd, NULL, 0, MSG_DONTWAIT | MSG_PEEK | MSG_TRUNC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}
