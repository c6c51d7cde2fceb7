/*
 * epoll.c: the Linux backend.
 *
 * epoll gives everything the contract asks for natively, so this file is a
 * thin translation. The kernel behaviours it relies on or works around:
 *
 *   - The event is the kernel's own struct epoll_event: <cmio/poll.h>
 *     declares cmio_event with the same layout (checked below), the token
 *     rides in epoll_event.data, and the accessors decode the epoll bits
 *     lazily. Waiting therefore copies nothing.
 *   - Edge mode is EPOLLET, level is the default, oneshot is EPOLLONESHOT;
 *     EPOLL_CTL_MOD re-evaluates readiness, which gives reregister its
 *     "ready now is reported next" rule. cmio_registry_rearm has nothing to
 *     do and is an inline argument check in the header.
 *   - EPOLLRDHUP (2.6.17) is asked for with READABLE so a peer's shutdown is
 *     reported as read-closed; EPOLLERR and EPOLLHUP come unasked.
 *   - epoll tracks open file descriptions, not descriptor numbers: a dup()ed
 *     fd keeps a registration alive after the registered number is closed.
 *     The header tells callers to deregister before close.
 *   - epoll_wait takes milliseconds. epoll_pwait2 (5.11) takes a timespec
 *     but costs a few percent more per call, so it is used only when the
 *     timeout has a sub-millisecond part. It is probed once per queue: old
 *     kernels, seccomp filters and valgrind 3.19 fail it with ENOSYS (or
 *     EPERM), and then the timeout is rounded up to whole milliseconds. A
 *     filter installed after the probe is met the same way, at the first
 *     wait that fails. It takes a 64-bit timespec even where time_t is 32
 *     bits.
 *   - epoll_ctl checks that the target can be polled before it looks the
 *     fd up, so MOD and DEL of a regular file or directory fail with EPERM.
 *     Such an fd can never have been registered, so the contract's answer
 *     for an unregistered fd, -ENOENT, is returned instead.
 *   - EPOLL_CTL_DEL ignores its event argument but kernels before 2.6.9
 *     demanded a non-NULL one; one is passed.
 *   - Wakers are eventfds registered edge-triggered: every write() is a
 *     wake-up even while the counter is non-zero, and wakes before a wait
 *     coalesce into one event because the item is queued only once. The
 *     counter is never read except when it is about to overflow.
 */
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sys.h"
#include "unix.h"

_Static_assert(sizeof(cmio_event) == sizeof(struct epoll_event), "cmio_event is epoll_event");
_Static_assert(offsetof(cmio_event, cmio__events) == offsetof(struct epoll_event, events),
               "cmio_event.events");
_Static_assert(offsetof(cmio_event, cmio__data) == offsetof(struct epoll_event, data),
               "cmio_event.data");
_Static_assert(CMIO__EV_IN == EPOLLIN && CMIO__EV_PRI == EPOLLPRI && CMIO__EV_OUT == EPOLLOUT
                   && CMIO__EV_ERR == EPOLLERR && CMIO__EV_HUP == EPOLLHUP
                   && CMIO__EV_RDHUP == EPOLLRDHUP,
               "epoll bit values in <cmio/poll.h>");

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441 /* the same number on every architecture */
#endif

struct cmio__sel {
    int epfd;
    int has_pwait2;
};

struct cmio__wk {
    int fd;
};

size_t cmio__sel_slot_size(void)
{
    return sizeof(struct epoll_event);
}

static int epoll_pwait2_ns(int epfd, struct epoll_event *buf, int cap, int64_t ns)
{
    /* The raw system call (glibc has a wrapper only from 2.35 on) takes the
     * kernel's struct __kernel_timespec: two 64-bit fields on every
     * architecture, unlike libc's timespec where time_t is 32 bits. */
    struct {
        int64_t tv_sec;
        int64_t tv_nsec;
    } ts = {ns / 1000000000, ns % 1000000000};
    return (int)syscall(SYS_epoll_pwait2, epfd, buf, cap, &ts, NULL, 0);
}

int cmio__sel_new(struct cmio__sel **out)
{
    struct cmio__sel *s = cmio__malloc(sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        int err = errno;
        cmio__free(s);
        return -err;
    }
    struct epoll_event probe;
    s->has_pwait2 = epoll_pwait2_ns(s->epfd, &probe, 1, 0) >= 0;
    *out = s;
    return 0;
}

void cmio__sel_free(struct cmio__sel *s)
{
    close(s->epfd);
    cmio__free(s);
}

/* A wait with a positive timeout: loop until an event or the deadline, so
 * that neither millisecond rounding nor clamping can end it early. Kept out
 * of line: inlined, its state made every wait, timed or not, save and
 * restore six registers (35 instructions for an untimed wait, 17 without). */
__attribute__((noinline))
static int wait_timed(struct cmio__sel *s, struct epoll_event *buf, int cap, int64_t timeout_ns)
{
    int64_t deadline = cmio__unix_deadline(timeout_ns);
    int64_t left = timeout_ns;
    for (;;) {
        int n;
        if (s->has_pwait2 && left % 1000000 != 0) {
            n = epoll_pwait2_ns(s->epfd, buf, cap, left);
            if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
                /* A seccomp filter installed after the probe: fall back
                 * for good (only the one waiter reads this flag). */
                s->has_pwait2 = 0;
                continue;
            }
        } else {
            n = epoll_wait(s->epfd, buf, cap, cmio__unix_ms_ceil(left));
        }
        if (n != 0)
            return n;
        left = deadline - cmio__unix_now_ns();
        if (left <= 0)
            return 0;
    }
}

int cmio__sel_wait(struct cmio__sel *s, cmio_events *events, int64_t timeout_ns)
{
    struct epoll_event *buf = (struct epoll_event *)(void *)events->cmio__buf;
    int cap = (int)events->cmio__cap;
    int n;
    if (timeout_ns > 0)
        n = wait_timed(s, buf, cap, timeout_ns);
    else
        n = epoll_wait(s->epfd, buf, cap, timeout_ns < 0 ? -1 : 0);
    if (n < 0) {
        events->cmio__len = 0;
        return -errno;
    }
    events->cmio__len = (size_t)n;
    return n;
}

static uint32_t epoll_bits(unsigned interest)
{
    uint32_t ev = 0;
    if (interest & CMIO_READABLE)
        ev |= EPOLLIN | EPOLLRDHUP;
    if (interest & CMIO_WRITABLE)
        ev |= EPOLLOUT;
    if (interest & CMIO_PRIORITY)
        ev |= EPOLLPRI;
    if (!(interest & CMIO_LEVEL))
        ev |= EPOLLET;
    if (interest & CMIO_ONESHOT)
        ev |= EPOLLONESHOT;
    return ev;
}

static int ctl(struct cmio__sel *s, int op, int fd, cmio_token t, unsigned interest)
{
    struct epoll_event ev;
    ev.events = epoll_bits(interest);
    ev.data.u64 = (uint64_t)t;
    return epoll_ctl(s->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

int cmio__sel_register(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest)
{
    return ctl(s, EPOLL_CTL_ADD, fd, t, interest);
}

int cmio__sel_reregister(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest)
{
    int rc = ctl(s, EPOLL_CTL_MOD, fd, t, interest);
    return rc == -EPERM ? -ENOENT : rc;
}

int cmio__sel_deregister(struct cmio__sel *s, cmio_fd fd)
{
    struct epoll_event unused = {0, {0}};
    if (epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, &unused) == 0)
        return 0;
    return errno == EPERM ? -ENOENT : -errno;
}

int cmio__sel_rearm(struct cmio__sel *s, cmio_fd fd, unsigned directions)
{
    (void)s;
    (void)fd;
    (void)directions;
    return 0;
}

int cmio__sel_waker_new(struct cmio__sel *s, cmio_token t, struct cmio__wk **out)
{
    struct cmio__wk *w = cmio__malloc(sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = w->fd < 0 ? -errno : ctl(s, EPOLL_CTL_ADD, w->fd, t, CMIO_READABLE);
    if (rc < 0) {
        if (w->fd >= 0)
            close(w->fd);
        cmio__free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int cmio__sel_waker_wake(struct cmio__wk *w)
{
    /* Called from signal handlers: keep the interrupted code's errno. */
    int saved = errno;
    int rc = 0;
    uint64_t one = 1;
    for (;;) {
        if (write(w->fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            /* The counter is at its maximum: empty it and write again. */
            uint64_t drained;
            if (read(w->fd, &drained, sizeof(drained)) < 0 && errno != EAGAIN) {
                rc = -errno;
                break;
            }
            continue;
        }
        rc = -errno;
        break;
    }
    errno = saved;
    return rc;
}

void cmio__sel_waker_free(struct cmio__sel *s, struct cmio__wk *w)
{
    cmio__sel_deregister(s, w->fd);
    close(w->fd);
    cmio__free(w);
}
