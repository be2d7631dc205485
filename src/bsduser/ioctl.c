/* ioctl: terminals (struct termios, whose flag bits, control-character
 * slots and speeds the BSDs number their own way; window sizes; the
 * foreground process group) and the FIO* descriptor requests. What else
 * a program asks is ENOTTY, as for a request a BSD driver does not know. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "bsduser/freebsd_abi.h"
#include "bsduser/internal.h"
#include "bsduser/netbsd_abi.h"

/* <sys/filio.h>: _IOR('f', 127, int), _IOW('f', 126, int), _IO('f', 1), _IO('f', 2). */
enum { BSD_FIONREAD = 0x4004667f, BSD_FIONBIO = 0x8004667e, BSD_FIOCLEX = 0x20006601,
       BSD_FIONCLEX = 0x20006602 };

struct pair {
    unsigned long bsd, linux_;
};

#define IFLAGS(P)                                                                              \
    {{P##_IGNBRK, IGNBRK}, {P##_BRKINT, BRKINT}, {P##_IGNPAR, IGNPAR}, {P##_PARMRK, PARMRK},     \
     {P##_INPCK, INPCK},   {P##_ISTRIP, ISTRIP}, {P##_INLCR, INLCR},   {P##_IGNCR, IGNCR},       \
     {P##_ICRNL, ICRNL},   {P##_IXON, IXON},     {P##_IXOFF, IXOFF},   {P##_IXANY, IXANY},       \
     {P##_IMAXBEL, IMAXBEL}}
#define OFLAGS(P) {{P##_OPOST, OPOST}, {P##_ONLCR, ONLCR}, {P##_OCRNL, OCRNL}, {P##_ONOCR, ONOCR}, \
                   {P##_ONLRET, ONLRET}}
#define CFLAGS(P)                                                                              \
    {{P##_CSTOPB, CSTOPB}, {P##_CREAD, CREAD}, {P##_PARENB, PARENB}, {P##_PARODD, PARODD},     \
     {P##_HUPCL, HUPCL},   {P##_CLOCAL, CLOCAL}, {P##_CRTSCTS, CRTSCTS}}
#define LFLAGS(P)                                                                              \
    {{P##_ECHOKE, ECHOKE}, {P##_ECHOE, ECHOE},     {P##_ECHOK, ECHOK},   {P##_ECHO, ECHO},       \
     {P##_ECHONL, ECHONL}, {P##_ECHOPRT, ECHOPRT}, {P##_ECHOCTL, ECHOCTL}, {P##_ISIG, ISIG},     \
     {P##_ICANON, ICANON}, {P##_IEXTEN, IEXTEN},   {P##_TOSTOP, TOSTOP}, {P##_NOFLSH, NOFLSH},   \
     {P##_PENDIN, PENDIN}, {P##_FLUSHO, FLUSHO}}
#define CSIZES(P) {{P##_CS5, CS5}, {P##_CS6, CS6}, {P##_CS7, CS7}, {P##_CS8, CS8}}
#define CCS(P)                                                                                 \
    {{P##_VEOF, VEOF},       {P##_VEOL, VEOL},     {P##_VEOL2, VEOL2},   {P##_VERASE, VERASE},   \
     {P##_VWERASE, VWERASE}, {P##_VKILL, VKILL},   {P##_VREPRINT, VREPRINT},                     \
     {P##_VINTR, VINTR},     {P##_VQUIT, VQUIT},   {P##_VSUSP, VSUSP},   {P##_VSTART, VSTART},   \
     {P##_VSTOP, VSTOP},     {P##_VLNEXT, VLNEXT}, {P##_VDISCARD, VDISCARD},                     \
     {P##_VMIN, VMIN},       {P##_VTIME, VTIME}}

struct termios_map {
    struct pair iflags[13], oflags[5], cflags[7], lflags[14], csizes[4], ccs[16];
    unsigned long csize_mask;
};

static const struct termios_map freebsd = {IFLAGS(FREEBSD), OFLAGS(FREEBSD), CFLAGS(FREEBSD),
                                           LFLAGS(FREEBSD), CSIZES(FREEBSD), CCS(FREEBSD),
                                           FREEBSD_CSIZE};
static const struct termios_map netbsd = {IFLAGS(NETBSD), OFLAGS(NETBSD), CFLAGS(NETBSD),
                                          LFLAGS(NETBSD), CSIZES(NETBSD), CCS(NETBSD),
                                          NETBSD_CSIZE};

static const struct termios_map *map(void)
{
    return bsd_personality() == BSD_NETBSD ? &netbsd : &freebsd;
}

#define COUNT(a) (sizeof(a) / sizeof(a[0]))

static unsigned long convert(const struct pair *t, size_t n, unsigned long in, bool to_linux)
{
    unsigned long out = 0;
    for (size_t i = 0; i < n; i++)
        if (in & (to_linux ? t[i].bsd : t[i].linux_))
            out |= to_linux ? t[i].linux_ : t[i].bsd;
    return out;
}

/* The BSD's struct termios: four 32-bit flag words, c_cc[20], two speeds
 * as plain numbers: 44 bytes. */
struct bsd_termios {
    uint32_t iflag, oflag, cflag, lflag;
    uint8_t cc[20];
    uint32_t ispeed, ospeed;
};

static const struct {
    speed_t code;
    uint32_t baud;
} speeds[] = {{B0, 0},         {B50, 50},         {B75, 75},         {B110, 110},
              {B134, 134},     {B150, 150},       {B200, 200},       {B300, 300},
              {B600, 600},     {B1200, 1200},     {B1800, 1800},     {B2400, 2400},
              {B4800, 4800},   {B9600, 9600},     {B19200, 19200},   {B38400, 38400},
              {B57600, 57600}, {B115200, 115200}, {B230400, 230400}, {B460800, 460800}};

static uint32_t baud_of(speed_t code)
{
    for (size_t i = 0; i < COUNT(speeds); i++)
        if (speeds[i].code == code)
            return speeds[i].baud;
    return 38400;
}

static speed_t code_of(uint32_t baud)
{
    for (size_t i = 0; i < COUNT(speeds); i++)
        if (speeds[i].baud == baud)
            return speeds[i].code;
    return B38400;
}

static void to_bsd(const struct termios *t, struct bsd_termios *b)
{
    const struct termios_map *m = map();
    memset(b, 0, sizeof(*b));
    b->iflag = (uint32_t)convert(m->iflags, COUNT(m->iflags), t->c_iflag, false);
    b->oflag = (uint32_t)convert(m->oflags, COUNT(m->oflags), t->c_oflag, false);
    b->cflag = (uint32_t)convert(m->cflags, COUNT(m->cflags), t->c_cflag, false);
    for (size_t i = 0; i < COUNT(m->csizes); i++)
        if ((t->c_cflag & CSIZE) == m->csizes[i].linux_)
            b->cflag |= (uint32_t)m->csizes[i].bsd;
    b->lflag = (uint32_t)convert(m->lflags, COUNT(m->lflags), t->c_lflag, false);
    for (size_t i = 0; i < COUNT(m->ccs); i++)
        b->cc[m->ccs[i].bsd] = t->c_cc[m->ccs[i].linux_];
    b->ispeed = baud_of(cfgetispeed(t));
    b->ospeed = baud_of(cfgetospeed(t));
}

static void from_bsd(const struct bsd_termios *b, struct termios *t)
{
    const struct termios_map *m = map();
    t->c_iflag = (tcflag_t)convert(m->iflags, COUNT(m->iflags), b->iflag, true);
    t->c_oflag = (tcflag_t)convert(m->oflags, COUNT(m->oflags), b->oflag, true);
    t->c_cflag = (tcflag_t)convert(m->cflags, COUNT(m->cflags), b->cflag, true);
    for (size_t i = 0; i < COUNT(m->csizes); i++)
        if ((b->cflag & m->csize_mask) == m->csizes[i].bsd)
            t->c_cflag |= (tcflag_t)m->csizes[i].linux_;
    t->c_lflag = (tcflag_t)convert(m->lflags, COUNT(m->lflags), b->lflag, true);
    for (size_t i = 0; i < COUNT(m->ccs); i++)
        t->c_cc[m->ccs[i].linux_] = b->cc[m->ccs[i].bsd];
    cfsetispeed(t, code_of(b->ispeed));
    cfsetospeed(t, code_of(b->ospeed));
}

static long get_termios(int fd, uint64_t out)
{
    struct termios t;
    struct bsd_termios b;
    if (tcgetattr(fd, &t) < 0)
        return -errno;
    to_bsd(&t, &b);
    return bsd_copy_out(out, &b, sizeof(b));
}

static long set_termios(int fd, uint64_t in, int when)
{
    struct termios t;
    struct bsd_termios b;
    if (bsd_copy_in(&b, in, sizeof(b)) < 0)
        return -EFAULT;
    if (tcgetattr(fd, &t) < 0)
        return -errno;
    from_bsd(&b, &t);
    return bsd_result(tcsetattr(fd, when, &t));
}

/* An int in or out of the guest around a Linux ioctl. */
static long int_request(int fd, unsigned long request, uint64_t arg, bool in)
{
    int v = 0;
    if (in && bsd_copy_in(&v, arg, sizeof(v)) < 0)
        return -EFAULT;
    if (ioctl(fd, request, &v) < 0)
        return -errno;
    return in ? 0 : bsd_copy_out(arg, &v, sizeof(v));
}

/* The two BSDs number these requests alike (4.4BSD's encoding). */
_Static_assert(FREEBSD_TIOCGETA == NETBSD_TIOCGETA && FREEBSD_TIOCSETA == NETBSD_TIOCSETA &&
                   FREEBSD_TIOCSETAW == NETBSD_TIOCSETAW && FREEBSD_TIOCSETAF == NETBSD_TIOCSETAF &&
                   FREEBSD_TIOCGWINSZ == NETBSD_TIOCGWINSZ &&
                   FREEBSD_TIOCSWINSZ == NETBSD_TIOCSWINSZ &&
                   FREEBSD_TIOCGPGRP == NETBSD_TIOCGPGRP && FREEBSD_TIOCSPGRP == NETBSD_TIOCSPGRP,
               "terminal requests differ between the BSDs");

static long sys_ioctl(const long *a)
{
    int fd = (int)a[0];
    unsigned long request = (unsigned long)a[1] & 0xffffffffu;
    uint64_t arg = (uint64_t)a[2];
    struct winsize ws;

    switch (request) {
    case FREEBSD_TIOCGETA: return get_termios(fd, arg);
    case FREEBSD_TIOCSETA: return set_termios(fd, arg, TCSANOW);
    case FREEBSD_TIOCSETAW: return set_termios(fd, arg, TCSADRAIN);
    case FREEBSD_TIOCSETAF: return set_termios(fd, arg, TCSAFLUSH);
    case FREEBSD_TIOCGWINSZ: /* struct winsize: the same four shorts */
        return ioctl(fd, TIOCGWINSZ, &ws) < 0 ? -errno : bsd_copy_out(arg, &ws, sizeof(ws));
    case FREEBSD_TIOCSWINSZ:
        if (bsd_copy_in(&ws, arg, sizeof(ws)) < 0)
            return -EFAULT;
        return bsd_result(ioctl(fd, TIOCSWINSZ, &ws));
    case FREEBSD_TIOCGPGRP: return int_request(fd, TIOCGPGRP, arg, false);
    case FREEBSD_TIOCSPGRP: return int_request(fd, TIOCSPGRP, arg, true);
    case BSD_FIONREAD: return int_request(fd, FIONREAD, arg, false);
    case BSD_FIONBIO: return int_request(fd, FIONBIO, arg, true);
    case BSD_FIOCLEX: return bsd_result(fcntl(fd, F_SETFD, FD_CLOEXEC));
    case BSD_FIONCLEX: return bsd_result(fcntl(fd, F_SETFD, 0));
    default:
        return fcntl(fd, F_GETFD) < 0 ? -EBADF : -ENOTTY;
    }
}

const struct bsd_handler bsd_ioctl_calls[] = {{"ioctl", sys_ioctl}};
const size_t bsd_ioctl_call_count = sizeof(bsd_ioctl_calls) / sizeof(bsd_ioctl_calls[0]);
