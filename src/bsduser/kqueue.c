/* kqueue/kevent on epoll. A kqueue is an epoll descriptor (the number the
 * guest sees) plus the notes registered on it: read and write readiness of
 * descriptors (one epoll registration per descriptor, for both filters),
 * user events and signals (an eventfd each) and timers (a timerfd each). Descriptors
 * epoll cannot watch (regular files, directories) are always ready, as
 * FreeBSD's vnode filter mostly is. Both BSDs' struct kevent layouts are
 * read and written here; internally a note is one shape. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "bsduser/freebsd_abi.h"
#include "bsduser/internal.h"
#include "bsduser/netbsd_abi.h"

#define MAX_KQUEUES BSD_MAX_KQUEUES
#define MAX_EVENTS 256
#define MAX_CHANGES 4096
/* epoll data: the descriptor, or a note's eventfd/timerfd with this bit. */
#define OWN_FD (1ull << 40)

enum filter { F_READ, F_WRITE, F_USER, F_TIMER, F_SIGNAL, F_NONE };

/* EV_* and NOTE_* values the two BSDs share. */
enum { EV_ADD = 0x1, EV_DELETE = 0x2, EV_ENABLE = 0x4, EV_DISABLE = 0x8, EV_ONESHOT = 0x10,
       EV_CLEAR = 0x20, EV_RECEIPT = 0x40, EV_DISPATCH = 0x80, EV_ERROR = 0x4000,
       EV_EOF = 0x8000, NOTE_TRIGGER = 0x1000000, NOTE_SECONDS = 1, NOTE_MSECONDS = 2,
       NOTE_USECONDS = 4, NOTE_NSECONDS = 8 };

struct kev {
    uint64_t ident;
    enum filter filter;
    int raw_filter; /* as the guest wrote it, for answers */
    uint32_t flags, fflags;
    int64_t data;
    uint64_t udata;
};

struct note {
    struct kev kev;
    bool enabled, always_ready;
    bool reported; /* always ready and EV_CLEAR: said once */
    int own_fd; /* eventfd (user) or timerfd (timer); -1 */
};

struct kqueue {
    ino_t ino; /* the epoll descriptor's, to notice a closed and reused number */
    struct note *notes;
    size_t count;
};

#define netbsd (bsd_personality() == BSD_NETBSD)

/* ---- the guest's struct kevent ---- */

/* FreeBSD 12+: ident, short filter, u_short flags, u_int fflags, int64
 * data, void *udata, uint64 ext[4]: 64 bytes. FreeBSD 11's (the
 * freebsd11_kevent call, Go up to 1.17): the same without ext[], 32 (its
 * intptr_t data is 8 bytes on amd64 too). NetBSD: ident, uint32 filter,
 * uint32 flags, uint32 fflags, (pad), int64 data, void *udata: 40. */
#define FREEBSD11_KEVENT_SIZE 32
static size_t kev_size(void)
{
    return netbsd ? 40 : 64;
}

static enum filter filter_of(int raw)
{
    if (netbsd)
        return raw == NETBSD_EVFILT_READ ? F_READ : raw == NETBSD_EVFILT_WRITE ? F_WRITE
             : raw == NETBSD_EVFILT_TIMER ? F_TIMER : raw == 8 /* EVFILT_USER */ ? F_USER
             : raw == NETBSD_EVFILT_SIGNAL ? F_SIGNAL : F_NONE;
    return raw == FREEBSD_EVFILT_READ ? F_READ : raw == FREEBSD_EVFILT_WRITE ? F_WRITE
         : raw == FREEBSD_EVFILT_TIMER ? F_TIMER : raw == FREEBSD_EVFILT_USER ? F_USER
         : raw == FREEBSD_EVFILT_SIGNAL ? F_SIGNAL : F_NONE;
}

static void get_kev(const uint8_t *b, struct kev *k)
{
    memset(k, 0, sizeof(*k));
    memcpy(&k->ident, b, 8);
    if (netbsd) {
        uint32_t f;
        memcpy(&f, b + 8, 4);
        k->raw_filter = (int)f;
        memcpy(&k->flags, b + 12, 4);
        memcpy(&k->fflags, b + 16, 4);
        memcpy(&k->data, b + 24, 8);
        memcpy(&k->udata, b + 32, 8);
    } else {
        int16_t f;
        uint16_t flags;
        memcpy(&f, b + 8, 2);
        memcpy(&flags, b + 10, 2);
        k->raw_filter = f;
        k->flags = flags;
        memcpy(&k->fflags, b + 12, 4);
        memcpy(&k->data, b + 16, 8);
        memcpy(&k->udata, b + 24, 8);
    }
    k->filter = filter_of(k->raw_filter);
}

static void put_kev(uint8_t *b, size_t size, const struct kev *k)
{
    memset(b, 0, size);
    memcpy(b, &k->ident, 8);
    if (netbsd) {
        uint32_t f = (uint32_t)k->raw_filter;
        memcpy(b + 8, &f, 4);
        memcpy(b + 12, &k->flags, 4);
        memcpy(b + 16, &k->fflags, 4);
        memcpy(b + 24, &k->data, 8);
        memcpy(b + 32, &k->udata, 8);
    } else {
        int16_t f = (int16_t)k->raw_filter;
        uint16_t flags = (uint16_t)k->flags;
        memcpy(b + 8, &f, 2);
        memcpy(b + 10, &flags, 2);
        memcpy(b + 12, &k->fflags, 4);
        memcpy(b + 16, &k->data, 8);
        memcpy(b + 24, &k->udata, 8);
    }
}

/* ---- queues and notes (under lock) ---- */

static struct kqueue *queue(int fd)
{
    struct stat st;
    if (fd < 0 || fd >= MAX_KQUEUES || !bsd_proc->queues[fd] || fstat(fd, &st) < 0 ||
        st.st_ino != bsd_proc->queues[fd]->ino)
        return NULL;
    return bsd_proc->queues[fd];
}

/* ---- signal notes: counted from the signal handler, without locks ---- */

/* A signal note's eventfd (+1; 0: a free slot) and signal; busy counts
 * handlers writing to it, so it is closed only once none is. */
#define MAX_SIGNAL_NOTES BSD_MAX_SIGNAL_NOTES

void bsd_kqueue_signalled(int sig)
{
    for (int i = 0; i < MAX_SIGNAL_NOTES; i++) {
        atomic_fetch_add(&bsd_proc->signal_notes[i].busy, 1);
        int fd = atomic_load(&bsd_proc->signal_notes[i].fd_plus_1) - 1;
        if (fd >= 0 && atomic_load(&bsd_proc->signal_notes[i].sig) == sig)
            eventfd_write(fd, 1);
        atomic_fetch_sub(&bsd_proc->signal_notes[i].busy, 1);
    }
}

static long watch_signal(int sig, int fd)
{
    for (int i = 0; i < MAX_SIGNAL_NOTES; i++) {
        int free_slot = 0;
        /* Taken (-1: no descriptor yet) before its signal changes. */
        if (atomic_compare_exchange_strong(&bsd_proc->signal_notes[i].fd_plus_1, &free_slot, -1)) {
            atomic_store(&bsd_proc->signal_notes[i].sig, sig);
            atomic_store(&bsd_proc->signal_notes[i].fd_plus_1, fd + 1);
            return bsd_signal_watch(sig, true);
        }
    }
    return -ENOMEM;
}

static void unwatch_signal(int sig, int fd)
{
    for (int i = 0; i < MAX_SIGNAL_NOTES; i++) {
        int mine = fd + 1;
        if (atomic_compare_exchange_strong(&bsd_proc->signal_notes[i].fd_plus_1, &mine, 0)) {
            while (atomic_load(&bsd_proc->signal_notes[i].busy))
                sched_yield();
            bsd_signal_watch(sig, false);
            return;
        }
    }
}

static struct note *find(struct kqueue *q, uint64_t ident, enum filter filter)
{
    for (size_t i = 0; i < q->count; i++)
        if (q->notes[i].kev.ident == ident && q->notes[i].kev.filter == filter)
            return &q->notes[i];
    return NULL;
}

static void drop(struct kqueue *q, struct note *n)
{
    if (n->kev.filter == F_SIGNAL && n->own_fd >= 0)
        unwatch_signal((int)n->kev.ident, n->own_fd);
    if (n->own_fd >= 0)
        close(n->own_fd);
    *n = q->notes[--q->count];
}

static void free_queue(struct kqueue *q)
{
    while (q && q->count)
        drop(q, &q->notes[0]);
    if (q)
        free(q->notes);
    free(q);
}

void bsd_kqueue_forget(int fd)
{
    pthread_mutex_lock(&bsd_proc->kqueue_lock);
    if (fd >= 0 && fd < MAX_KQUEUES) {
        free_queue(bsd_proc->queues[fd]);
        bsd_proc->queues[fd] = NULL;
    }
    pthread_mutex_unlock(&bsd_proc->kqueue_lock);
}

static long sys_kqueue(const long *a)
{
    (void)a;
    int fd = epoll_create1(EPOLL_CLOEXEC);
    struct kqueue *q = calloc(1, sizeof(*q));
    struct stat st;
    if (fd < 0 || !q || fd >= MAX_KQUEUES || fstat(fd, &st) < 0) {
        int e = fd < 0 ? errno : fd >= MAX_KQUEUES ? EMFILE : ENOMEM;
        if (fd >= 0)
            close(fd);
        free(q);
        return -e;
    }
    q->ino = st.st_ino;
    pthread_mutex_lock(&bsd_proc->kqueue_lock);
    free_queue(bsd_proc->queues[fd]); /* a kqueue closed since, whose number came back */
    bsd_proc->queues[fd] = q;
    pthread_mutex_unlock(&bsd_proc->kqueue_lock);
    return fd;
}

/* The one epoll registration of descriptor fd, from its read and write
 * notes; EPERM: a file epoll cannot watch (always ready). */
static int rearm_fd(int epfd, struct kqueue *q, int fd)
{
    struct note *r = find(q, (uint64_t)fd, F_READ), *w = find(q, (uint64_t)fd, F_WRITE);
    uint32_t ev = 0;
    if (r && r->enabled)
        ev |= EPOLLIN | EPOLLRDHUP;
    if (w && w->enabled)
        ev |= EPOLLOUT;
    if ((r && (r->kev.flags & EV_CLEAR)) || (w && (w->kev.flags & EV_CLEAR)))
        ev |= EPOLLET;
    struct epoll_event e = {.events = ev, .data.u64 = (uint64_t)fd};
    if (!r && !w)
        return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != ENOENT ? -errno : 0;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &e) == 0)
        return 0;
    if (errno == ENOENT && epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) == 0)
        return 0;
    if (errno == EPERM) {
        if (r)
            r->always_ready = true;
        if (w)
            w->always_ready = true;
        return 0;
    }
    return -errno;
}

static uint64_t timer_ns(const struct kev *k)
{
    uint64_t unit = k->fflags & NOTE_SECONDS ? 1000000000ull : k->fflags & NOTE_USECONDS ? 1000
                  : k->fflags & NOTE_NSECONDS ? 1 : 1000000;
    return (uint64_t)(k->data > 0 ? k->data : 1) * unit;
}

/* A user event's or a signal's eventfd, or a timer's timerfd, watched
 * by the queue. */
static int own_fd(int epfd, struct note *n, size_t index)
{
    if (n->own_fd < 0) {
        n->own_fd = n->kev.filter == F_TIMER
                        ? timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
                        : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event e = {.events = EPOLLIN, .data.u64 = OWN_FD | index};
        if (n->own_fd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, n->own_fd, &e) < 0)
            return -errno;
        if (n->kev.filter == F_SIGNAL)
            return watch_signal((int)n->kev.ident, n->own_fd);
    }
    if (n->kev.filter == F_TIMER) {
        uint64_t ns = timer_ns(&n->kev);
        struct itimerspec t = {.it_value = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)}};
        if (!(n->kev.flags & EV_ONESHOT))
            t.it_interval = t.it_value;
        if (!n->enabled)
            memset(&t, 0, sizeof(t));
        if (timerfd_settime(n->own_fd, 0, &t, NULL) < 0)
            return -errno;
    }
    return 0;
}

/* Re-points every note's epoll data at its index (indices move on drop). */
static void reindex(int epfd, struct kqueue *q)
{
    for (size_t i = 0; i < q->count; i++)
        if (q->notes[i].own_fd >= 0) {
            struct epoll_event e = {.events = EPOLLIN, .data.u64 = OWN_FD | i};
            epoll_ctl(epfd, EPOLL_CTL_MOD, q->notes[i].own_fd, &e);
        }
}

static long change(int epfd, struct kqueue *q, const struct kev *k)
{
    struct note *n = find(q, k->ident, k->filter);
    bool fd_filter = k->filter == F_READ || k->filter == F_WRITE;

    if (k->filter == F_NONE)
        return -EINVAL;
    if (fd_filter && fcntl((int)k->ident, F_GETFD) < 0)
        return -EBADF;
    if (k->filter == F_SIGNAL && (k->ident < 1 || k->ident >= 128))
        return -EINVAL;
    if (!n && !(k->flags & EV_ADD))
        return -ENOENT;
    if (k->flags & EV_DELETE) {
        drop(q, n);
        reindex(epfd, q);
        return fd_filter ? rearm_fd(epfd, q, (int)k->ident) : 0;
    }
    if (!n) {
        struct note *more = realloc(q->notes, (q->count + 1) * sizeof(*more));
        if (!more)
            return -ENOMEM;
        q->notes = more;
        n = &q->notes[q->count++];
        *n = (struct note){.kev = *k, .enabled = true, .own_fd = -1};
        if (k->filter == F_SIGNAL) /* counted since the last report */
            n->kev.flags |= EV_CLEAR;
    } else if (k->flags & EV_ADD) {
        n->reported = false;
        n->kev.udata = k->udata;
        n->kev.flags = k->flags;
        n->kev.data = k->data;
    }
    if (k->flags & (EV_ENABLE | EV_ADD))
        n->enabled = !(k->flags & EV_DISABLE);
    if (k->flags & EV_DISABLE)
        n->enabled = false;
    if (fd_filter)
        return rearm_fd(epfd, q, (int)k->ident);
    long r = own_fd(epfd, n, (size_t)(n - q->notes));
    if (r == 0 && k->filter == F_USER && (k->fflags & NOTE_TRIGGER) &&
        eventfd_write(n->own_fd, 1) < 0)
        r = -errno;
    return r;
}

/* ---- kevent ---- */

struct answer {
    uint8_t *buf;
    size_t kev_size; /* the guest's struct kevent's */
    int max, count;
};

static void add(struct answer *a, const struct kev *k)
{
    if (a->count < a->max)
        put_kev(a->buf + (size_t)a->count++ * a->kev_size, a->kev_size, k);
}

/* What one epoll event (or an always-ready note) says, as kevents. */
static void report_fd(struct kqueue *q, int fd, uint32_t ev, struct answer *a)
{
    static const enum filter filters[] = {F_READ, F_WRITE};
    for (int i = 0; i < 2; i++) {
        struct note *n = find(q, (uint64_t)fd, filters[i]);
        uint32_t want = i == 0 ? EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP
                               : EPOLLOUT | EPOLLHUP | EPOLLERR;
        if (!n || !n->enabled || !(ev & want) || (n->always_ready && n->reported))
            continue;
        n->reported = n->always_ready && (n->kev.flags & EV_CLEAR);
        struct kev k = n->kev;
        int pending = 0;
        k.flags = (k.flags & (EV_CLEAR | EV_ONESHOT)) | EV_ADD |
                  (ev & (EPOLLHUP | EPOLLRDHUP) ? EV_EOF : 0);
        k.data = i == 0 && ioctl(fd, FIONREAD, &pending) == 0 ? pending : 0;
        k.fflags = 0;
        add(a, &k);
        if (n->kev.flags & (EV_ONESHOT | EV_DISPATCH))
            n->enabled = false;
    }
}

static void report_own(int epfd, struct kqueue *q, size_t index, struct answer *a)
{
    if (index >= q->count)
        return;
    struct note *n = &q->notes[index];
    uint64_t count = 0;
    /* A user event stays triggered until cleared (EV_CLEAR: by this
     * report); timers and signals say how many times they fired. */
    bool counted = n->kev.filter == F_TIMER || n->kev.filter == F_SIGNAL;
    if (counted || (n->kev.flags & EV_CLEAR))
        if (read(n->own_fd, &count, sizeof(count)) < 0 && counted)
            return; /* read before: nothing new */
    if (!n->enabled)
        return;
    struct kev k = n->kev;
    k.flags = (k.flags & (EV_CLEAR | EV_ONESHOT)) | EV_ADD;
    k.data = counted ? (int64_t)count : 0;
    k.fflags = 0;
    add(a, &k);
    if (n->kev.flags & EV_ONESHOT) {
        drop(q, n);
        reindex(epfd, q);
    }
}

static long wait_ms(uint64_t timeout)
{
    struct timespec ts;
    if (!timeout)
        return -1;
    if (bsd_copy_in(&ts, timeout, sizeof(ts)) < 0)
        return -EFAULT;
    if (ts.tv_sec < 0 || ts.tv_nsec < 0 || ts.tv_nsec >= 1000000000)
        return -EINVAL;
    if (ts.tv_sec > 1000000)
        return 1000000000;
    return ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000;
}

static long apply_changes(int kq, uint64_t list, long nchanges, struct answer *a)
{
    uint8_t raw[64];
    for (long i = 0; i < nchanges; i++) {
        struct kev k;
        if (bsd_copy_in(raw, list + (uint64_t)i * a->kev_size, a->kev_size) < 0)
            return -EFAULT;
        get_kev(raw, &k);
        pthread_mutex_lock(&bsd_proc->kqueue_lock);
        struct kqueue *q = queue(kq);
        long r = q ? change(kq, q, &k) : -EBADF;
        pthread_mutex_unlock(&bsd_proc->kqueue_lock);
        /* Errors (and every change, with EV_RECEIPT) are answered in the
         * event list while it has room; else the call fails. */
        if (r < 0 && a->count >= a->max)
            return r;
        if (r < 0 || (k.flags & EV_RECEIPT)) {
            k.flags = EV_ERROR;
            k.data = r < 0 ? bsd_errno(-r) : 0;
            add(a, &k);
        }
    }
    return 0;
}

/* kevent(kq, changes, nchanges, events, nevents, timeout), its struct
 * kevent size bytes. */
static long kevent_sized(const long *a, size_t size)
{
    int kq = (int)a[0];
    long nchanges = a[2], nevents = a[4], ms = wait_ms((uint64_t)a[5]);
    struct epoll_event ev[MAX_EVENTS];
    struct answer out = {NULL, size, 0, 0};

    if (nchanges < 0 || nevents < 0 || nchanges > MAX_CHANGES)
        return -EINVAL;
    if (ms < -1)
        return ms;
    out.max = nevents > MAX_EVENTS ? MAX_EVENTS : (int)nevents;
    out.buf = calloc((size_t)out.max + 1, size);
    if (!out.buf)
        return -ENOMEM;
    long r = apply_changes(kq, (uint64_t)a[1], nchanges, &out);
    bool ready = false;
    pthread_mutex_lock(&bsd_proc->kqueue_lock);
    struct kqueue *q = queue(kq);
    for (size_t i = 0; q && i < q->count; i++)
        ready |= q->notes[i].always_ready && q->notes[i].enabled;
    pthread_mutex_unlock(&bsd_proc->kqueue_lock);
    if (r == 0 && !q)
        r = -EBADF;
    if (r == 0 && out.count == 0 && out.max > 0) {
        int n = epoll_wait(kq, ev, out.max, ready ? 0 : (int)ms);
        pthread_mutex_lock(&bsd_proc->kqueue_lock);
        q = queue(kq);
        for (int i = 0; q && i < n; i++) {
            if (ev[i].data.u64 & OWN_FD)
                report_own(kq, q, (size_t)(ev[i].data.u64 & ~OWN_FD), &out);
            else
                report_fd(q, (int)ev[i].data.u64, ev[i].events, &out);
        }
        for (size_t i = 0; q && i < q->count; i++)
            if (q->notes[i].always_ready)
                report_fd(q, (int)q->notes[i].kev.ident, EPOLLIN | EPOLLOUT, &out);
        pthread_mutex_unlock(&bsd_proc->kqueue_lock);
        if (n < 0)
            r = -errno;
    }
    if (r == 0 && out.count && bsd_copy_out((uint64_t)a[3], out.buf, (size_t)out.count * size) < 0)
        r = -EFAULT;
    free(out.buf);
    return r < 0 ? r : out.count;
}

static long sys_kevent(const long *a) { return kevent_sized(a, kev_size()); }
static long sys_freebsd11_kevent(const long *a) { return kevent_sized(a, FREEBSD11_KEVENT_SIZE); }

const struct bsd_handler bsd_kqueue_calls[] = {
    {"kqueue", sys_kqueue}, {"kqueue1", sys_kqueue}, {"kevent", sys_kevent},
    {"freebsd:freebsd11_kevent", sys_freebsd11_kevent},
};
const size_t bsd_kqueue_call_count = sizeof(bsd_kqueue_calls) / sizeof(bsd_kqueue_calls[0]);
