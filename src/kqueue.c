/*
 * kqueue.c: the backend for macOS, FreeBSD, OpenBSD and NetBSD.
 *
 * kqueue has native edges, so rearm is the inline no-op of the header, but
 * its model differs from the contract in ways this file bridges:
 *
 *   - Directions are separate filters. READABLE is an EVFILT_READ knote,
 *     WRITABLE an EVFILT_WRITE knote, both with the token in udata; one fd
 *     can therefore give two events in one batch (the contract allows it).
 *     Edge is EV_CLEAR, level is neither flag. PRIORITY has no portable
 *     filter (EVFILT_EXCEPT exists only on some systems) and is -ENOTSUP.
 *   - EV_ADD on a knote that exists silently modifies it, and the flags
 *     given at creation (EV_CLEAR, EV_ONESHOT, EV_DISPATCH) cannot be
 *     changed afterwards on FreeBSD. reregister therefore deletes both
 *     knotes and adds the new ones in the same kevent() call, which also
 *     re-evaluates readiness as the contract wants. A knote cannot be read
 *     back, so the old ones could not be restored if an add failed: the new
 *     interest is first tried on the index (below), where the same filters
 *     on the same fd meet the same refusals, and a refused reregister
 *     returns before the queue is touched, keeping the previous
 *     registration as a failed EPOLL_CTL_MOD does. Should an add still fail
 *     on the queue, the fd is deregistered rather than left registered and
 *     silent.
 *   - "Already registered" (-EEXIST) and "not registered" (-ENOENT) cannot be
 *     read from the queue without side effects: any change to an existing
 *     knote, even one with no action flag, overwrites its udata on FreeBSD
 *     and macOS, and no change fails because a knote exists. The contract
 *     also forbids a per-fd table that grows on register. So each selector
 *     owns a second kqueue, the index, whose events are never collected:
 *     every registered fd has a knote there for each direction it was
 *     registered with, on the same fd, with a constant udata. Probing and
 *     modifying index knotes is harmless, and the kernel drops them when
 *     the fd is closed, exactly like the real knotes, so a reused fd
 *     number registers again even if the caller broke the
 *     deregister-before-close rule. The price is one descriptor per poll,
 *     one or two extra knotes per registration, and two kevent() calls
 *     (plus an fstat) per register. Registration calls are serialised by
 *     a mutex so that the probe and the change act as one; nothing is
 *     allocated in user space.
 *   - Changes are batched with EV_RECEIPT and an output array as long as
 *     the changelist, so every change reports its own error and a failing
 *     change does not stop the ones after it (without room for an error,
 *     kevent() stops at the first failure).
 *   - Oneshot with one direction is EV_ONESHOT. With both directions the
 *     knotes are EV_DISPATCH, and when one fires the wait disables the
 *     other, so that the registration, not each filter, reports once. The
 *     disable names the knote by (fd, filter) only, so it must not reach a
 *     registration made after the event fired (a reregister, or a new
 *     socket that got the same number). Every registration call bumps a
 *     counter under the registration lock once its changes are made; the
 *     wait reads it before kevent() and issues its disables under the lock
 *     only if it has not moved. If it has, they are skipped: the sibling
 *     may then report once more, which the contract allows. Waits that
 *     see no EV_DISPATCH event never take the lock. A fired oneshot fd
 *     stays registered: its index knotes are untouched.
 *   - EV_EOF on EVFILT_READ is read-closed, on EVFILT_WRITE write-closed;
 *     a non-zero fflags with EV_EOF is the socket error (a reset, a refused
 *     connect), and EV_ERROR is an error too.
 *   - The kernel accepts EVFILT_READ/WRITE on regular files and
 *     directories (vnode filters); the contract says -EPERM, so register
 *     checks the type with fstat. Filters a device does not support
 *     (EINVAL, ENODEV, ENOTSUP) are -EPERM as well; add_error maps every
 *     other refusal onto the contract's codes too. The fd is checked
 *     before the interest, so a closed fd is -EBADF even with
 *     CMIO_PRIORITY, as on the poll(2) backend.
 *   - FreeBSD and older macOS refuse EVFILT_WRITE on a pipe whose reader
 *     is gone with EPIPE (OpenBSD and current macOS accept it and report
 *     EV_EOF at once). epoll and poll report error and write-closed at
 *     once, so the registration succeeds and an EVFILT_USER knote with the
 *     caller's token stands in for the write knote: triggered when added,
 *     reported as error + write-closed. Its ident is the fd shifted left
 *     with the low bit set, which no waker's ident (a pointer) has. It is
 *     not bound to the fd, so it is added with EV_CLEAR (or EV_ONESHOT)
 *     even in level mode: a level one would fire on every wait after a
 *     close without deregister. So it reports once per (re)registration;
 *     register, reregister and deregister of the number delete it. Without
 *     EVFILT_USER such a registration stays silent, as in mio, and the next
 *     write reports EPIPE.
 *   - Events are received into the caller's buffer as struct kevent
 *     records (cmio__sel_slot_size is the larger of the two sizes) and
 *     translated forward in place into the portable cmio_event: output i
 *     never reaches past input record i, which has been read already.
 *   - Timeouts are nanosecond timespecs. FreeBSD treats tv_sec above
 *     INT32_MAX as "forever", so one kevent() waits at most a day and the
 *     wait loops to the deadline, which also absorbs any early return.
 *   - Wakers are EVFILT_USER knotes with EV_CLEAR: NOTE_TRIGGER coalesces
 *     until the wait collects it. Where EVFILT_USER is missing (older
 *     NetBSD and OpenBSD) a non-blocking pipe with EV_CLEAR replaces
 *     it; a wake that finds the pipe full empties it and writes again.
 *     Defining CMIO_KQUEUE_PIPE_WAKER selects the pipe everywhere, to test
 *     that path. macOS has no pipe2(): pipe() and fcntl() there.
 *   - struct kevent differs per system in field types (NetBSD's udata is
 *     intptr_t before 10 and its filter and flags are 32-bit; data is
 *     intptr_t or int64_t; FreeBSD 12 appends ext[]) and
 *     kevent() takes size_t counts on NetBSD. kev_set, kev_token and
 *     kev_call are the only code that touches those differences.
 *   - kqueue descriptors are close-on-exec: kqueue1(O_CLOEXEC) on NetBSD,
 *     kqueuex(KQUEUE_CLOEXEC) on FreeBSD 14, FD_CLOEXEC right after
 *     kqueue() elsewhere (a kqueue is not inherited across fork on these
 *     systems, so the gap cannot leak it into a child).
 *
 * References: kqueue(2) of FreeBSD, macOS, OpenBSD and NetBSD; mio's
 * src/sys/unix/selector/kqueue.rs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "sys.h"
#include "unix.h"

_Static_assert(sizeof(cmio_event) <= sizeof(struct kevent),
               "events are translated in place, forward, from struct kevent records");

#ifndef EV_RECEIPT
#error "the kqueue backend needs EV_RECEIPT in <sys/event.h>"
#endif

#if defined(EVFILT_USER) && defined(NOTE_TRIGGER) && !defined(CMIO_KQUEUE_PIPE_WAKER)
#define CMIO__USER_WAKER 1
#endif

/* ------------------------------------------------------------------------ */
/* struct kevent across systems                                             */
/* ------------------------------------------------------------------------ */

static void kev_set(struct kevent *k, uintptr_t ident, int filter, unsigned flags,
                    unsigned fflags, cmio_token udata)
{
    memset(k, 0, sizeof(*k));
    k->ident = ident;
    k->filter = filter;
    k->flags = flags;
    k->fflags = fflags;
    /* void * almost everywhere, intptr_t on NetBSD before 10. */
    k->udata = _Generic(k->udata, intptr_t: (intptr_t)udata, default: (void *)udata);
}

static cmio_token kev_token(const struct kevent *k)
{
    return (cmio_token)k->udata;
}

static int kev_call(int kq, const struct kevent *changes, int nchanges, struct kevent *events,
                    int nevents, const struct timespec *timeout)
{
    return kevent(kq, changes, nchanges, events, nevents, timeout);
}

/* ------------------------------------------------------------------------ */
/* Selector                                                                 */
/* ------------------------------------------------------------------------ */

struct cmio__sel {
    int kq;               /* the queue that is waited on */
    int index;            /* knotes of the registered fds; never collected */
    pthread_mutex_t lock; /* makes each registration call one step */
    cmio__atomic changes; /* bumped under lock by each registration call */
};

struct cmio__wk {
    int kq;
    cmio_token token;
#ifndef CMIO__USER_WAKER
    int rfd, wfd;
#endif
};

static const struct timespec zero_ts = {0, 0};

size_t cmio__sel_slot_size(void)
{
    return sizeof(struct kevent);
}

static int queue_new(void)
{
#if defined(__NetBSD__)
    int kq = kqueue1(O_CLOEXEC);
#elif defined(KQUEUE_CLOEXEC)
    int kq = kqueuex(KQUEUE_CLOEXEC);
#else
    int kq = kqueue();
    if (kq >= 0 && fcntl(kq, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        close(kq);
        errno = err;
        return -1;
    }
#endif
    return kq;
}

int cmio__sel_new(struct cmio__sel **out)
{
    struct cmio__sel *s = cmio__malloc(sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    int rc = 0;
    s->kq = queue_new();
    if (s->kq < 0)
        rc = -errno;
    s->index = rc == 0 ? queue_new() : -1;
    if (rc == 0 && s->index < 0)
        rc = -errno;
    if (rc == 0 && pthread_mutex_init(&s->lock, NULL) != 0)
        rc = -ENOMEM;
    cmio__atomic_store(&s->changes, 0);
    if (rc < 0) {
        if (s->kq >= 0)
            close(s->kq);
        if (s->index >= 0)
            close(s->index);
        cmio__free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cmio__sel_free(struct cmio__sel *s)
{
    close(s->kq);
    close(s->index);
    pthread_mutex_destroy(&s->lock);
    cmio__free(s);
}

/* ------------------------------------------------------------------------ */
/* Changes                                                                  */
/* ------------------------------------------------------------------------ */

#define MAX_CHANGES 5

/*
 * Applies n changes with EV_RECEIPT and stores each one's errno (0 for
 * success) in err[]. Receipts come back in changelist order everywhere, and
 * as they fill the output array kevent() returns without collecting any
 * event: the index queue relies on that. Returns 0, or a negative errno
 * value if kevent() itself failed.
 */
static int apply(int kq, struct kevent *changes, int n, int err[])
{
    struct kevent receipts[MAX_CHANGES];
    for (int i = 0; i < n; i++)
        changes[i].flags |= EV_RECEIPT;
    int got;
    do
        got = kev_call(kq, changes, n, receipts, n, &zero_ts);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        if (i >= got)
            err[i] = EIO;
        else if (receipts[i].flags & EV_ERROR)
            err[i] = (int)receipts[i].data;
        else
            err[i] = 0;
    }
    return 0;
}

/*
 * An add that the kernel refused, as one of the codes the contract gives
 * registration calls: kqueue(2) lists more (ESRCH, EACCES, ...), and
 * cmio_strerror must be able to name whatever is returned.
 */
static int add_error(int err)
{
    switch (err) {
    case EBADF:
    case ESRCH: /* the object is gone (documented for process filters) */
        return -EBADF;
    case ENOMEM:
    case ENOBUFS:
    case EAGAIN:
        return -ENOMEM;
    case ENOSPC:
    case EMFILE:
    case ENFILE:
        return -ENOSPC; /* a limit on what one queue or process may watch */
    default:
        /* EINVAL, ENODEV, ENXIO, ENOTSUP: the object has no such filter;
         * EPERM, EACCES: a policy forbids watching it. Anything else is
         * also a refusal of this fd, not a fault of the caller. */
        return -EPERM;
    }
}

/* After a probe found nothing: -EBADF if fd is not open, else -ENOENT. */
static int absent(cmio_fd fd)
{
    return fcntl(fd, F_GETFD) < 0 && errno == EBADF ? -EBADF : -ENOENT;
}

#ifdef EVFILT_USER
/* The ident of the EVFILT_USER knote standing in for the write knote of a
 * pipe whose reader is gone. Odd, so it never equals a waker's ident, the
 * address of its (malloc-aligned) struct. */
static uintptr_t widow_ident(cmio_fd fd)
{
    return ((uintptr_t)fd << 1) | 1;
}
#endif

/*
 * Index step of register and reregister, in one kevent() call: probes both
 * filters of fd in the index and adds the index knotes of `interest`
 * (harmless on knotes that exist). An add there meets the refusals the
 * queue's add of the same filter would, so this also vets the interest
 * before the queue is touched. *present tells whether fd was registered
 * before the call; *add_err is 0 if the interest is acceptable, else the
 * contract's code for the refusal. Returns 0 or a negative errno value
 * (-EBADF for an fd that is not open).
 */
static int index_step(struct cmio__sel *s, cmio_fd fd, unsigned interest, int *present,
                      int *add_err)
{
    struct kevent ch[4];
    int err[4];
    int n = 0;
    kev_set(&ch[n++], (uintptr_t)fd, EVFILT_READ, 0, 0, 0);
    kev_set(&ch[n++], (uintptr_t)fd, EVFILT_WRITE, 0, 0, 0);
    if (interest & CMIO_READABLE)
        kev_set(&ch[n++], (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0);
    if (interest & CMIO_WRITABLE)
        kev_set(&ch[n++], (uintptr_t)fd, EVFILT_WRITE, EV_ADD, 0, 0);
    int rc = apply(s->index, ch, n, err);
    if (rc < 0)
        return rc;
    /* Only ENOENT from a probe means something (a probe of an existing
     * knote may fail for reasons of its own); the adds see a bad fd. */
    *present = err[0] != ENOENT || err[1] != ENOENT;
    *add_err = 0;
    int added = 0;
    for (int i = 2; i < n; i++) {
        if (err[i] == EBADF)
            return -EBADF;
        if (err[i] == 0)
            added = 1;
        else if (!(err[i] == EPIPE && ch[i].filter == EVFILT_WRITE) && *add_err == 0)
            *add_err = add_error(err[i]);
    }
    if (!added && *add_err == 0) {
        /* Only a write knote was asked for, on a pipe whose reader is gone
         * (queue_set deals with that): any filter of fd will do here. */
        kev_set(&ch[0], (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0);
        if ((rc = apply(s->index, ch, 1, err)) < 0)
            return rc;
        if (err[0] == EBADF)
            return -EBADF;
        *add_err = err[0] == 0 ? 0 : add_error(err[0]);
    }
    return 0;
}

/* Removes fd from the index. Returns 0 if it was there, -ENOENT or -EBADF
 * if not, or another negative errno value. */
static int index_del(struct cmio__sel *s, cmio_fd fd)
{
    struct kevent ch[2];
    int err[2];
    kev_set(&ch[0], (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0);
    kev_set(&ch[1], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0);
    int rc = apply(s->index, ch, 2, err);
    if (rc < 0)
        return rc;
    if (err[0] == 0 || err[1] == 0)
        return 0;
    if (err[0] == EBADF || err[1] == EBADF)
        return -EBADF;
    return absent(fd);
}

/* Deletes every knote fd may have in the queue; missing ones are fine. */
static void queue_del(struct cmio__sel *s, cmio_fd fd)
{
    struct kevent ch[3];
    int err[3];
    int n = 0;
    kev_set(&ch[n++], (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0);
    kev_set(&ch[n++], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0);
#ifdef EVFILT_USER
    kev_set(&ch[n++], widow_ident(fd), EVFILT_USER, EV_DELETE, 0, 0);
#endif
    apply(s->kq, ch, n, err);
}

static unsigned knote_flags(unsigned interest)
{
    unsigned flags = EV_ADD;
    if (!(interest & CMIO_LEVEL))
        flags |= EV_CLEAR;
    if (interest & CMIO_ONESHOT) {
        int both = (interest & CMIO_READABLE) && (interest & CMIO_WRITABLE);
        flags |= both ? EV_DISPATCH : EV_ONESHOT;
    }
    return flags;
}

/*
 * Adds the stand-in for the write knote of a pipe whose reader is gone,
 * triggered so that the next wait reports it. Without EVFILT_USER there is
 * none and the registration stays silent.
 */
static int add_widow(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest)
{
#ifdef EVFILT_USER
    struct kevent ch[2];
    int err[2];
    unsigned flags = EV_ADD | ((interest & CMIO_ONESHOT) ? EV_ONESHOT : EV_CLEAR);
    kev_set(&ch[0], widow_ident(fd), EVFILT_USER, flags, 0, t);
    /* A separate change: FreeBSD ignores NOTE_TRIGGER in the one that
     * creates the knote. */
    kev_set(&ch[1], widow_ident(fd), EVFILT_USER, 0, NOTE_TRIGGER, t);
    int rc = apply(s->kq, ch, 2, err);
    if (rc == 0 && (err[0] != 0 || err[1] != 0))
        rc = add_error(err[0] != 0 ? err[0] : err[1]);
    return rc;
#else
    (void)s;
    (void)fd;
    (void)t;
    (void)interest;
    return 0;
#endif
}

/*
 * The knotes of the queue itself: deletes both filters of fd if `replace`
 * (a missing one is fine) and any stand-in of a widowed pipe (one may be
 * left by a close without deregister), then adds those of `interest`. If
 * an add fails, fd is left with no knote in the queue.
 */
static int queue_set(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest, int replace)
{
    struct kevent ch[MAX_CHANGES];
    int err[MAX_CHANGES];
    int n = 0, first_add, widowed = 0;
    if (replace) {
        kev_set(&ch[n++], (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0);
        kev_set(&ch[n++], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0);
    }
#ifdef EVFILT_USER
    kev_set(&ch[n++], widow_ident(fd), EVFILT_USER, EV_DELETE, 0, 0);
#endif
    first_add = n;
    unsigned flags = knote_flags(interest);
    if (interest & CMIO_READABLE)
        kev_set(&ch[n++], (uintptr_t)fd, EVFILT_READ, flags, 0, t);
    if (interest & CMIO_WRITABLE)
        kev_set(&ch[n++], (uintptr_t)fd, EVFILT_WRITE, flags, 0, t);
    int rc = apply(s->kq, ch, n, err);
    if (rc < 0)
        return rc;
    for (int i = first_add; i < n && rc == 0; i++) {
        if (err[i] == EPIPE && ch[i].filter == EVFILT_WRITE)
            widowed = 1;
        else if (err[i] != 0)
            rc = add_error(err[i]);
    }
    if (rc == 0 && widowed)
        rc = add_widow(s, fd, t, interest);
    if (rc < 0)
        queue_del(s, fd);
    return rc;
}

/* A regular file or directory is always "ready" to kqueue's vnode filters;
 * the contract refuses them as epoll does. */
static int check_pollable(cmio_fd fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
        return -EPERM;
    return 0;
}

/* Ends a registration call: lets a wait that collected events before it
 * know that its sibling disables may name knotes of other registrations. */
static void changed_unlock(struct cmio__sel *s)
{
    cmio__atomic_fetch_add(&s->changes, 1);
    pthread_mutex_unlock(&s->lock);
}

int cmio__sel_register(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest)
{
    if (fd == s->kq || fd == s->index)
        return -EINVAL;
    int rc = check_pollable(fd);
    if (rc < 0)
        return rc;
    if (interest & CMIO_PRIORITY)
        return -ENOTSUP;
    int present = 0, add_err = 0;
    pthread_mutex_lock(&s->lock);
    rc = index_step(s, fd, interest, &present, &add_err);
    if (rc == 0 && present) {
        rc = -EEXIST;
    } else if (rc == 0 && add_err < 0) {
        index_del(s, fd);
        rc = add_err;
    } else if (rc == 0 && (rc = queue_set(s, fd, t, interest, 0)) < 0) {
        index_del(s, fd);
    }
    changed_unlock(s);
    return rc;
}

int cmio__sel_reregister(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest)
{
    if (fd == s->kq || fd == s->index)
        return -EINVAL;
    if (interest & CMIO_PRIORITY)
        return fcntl(fd, F_GETFD) < 0 && errno == EBADF ? -EBADF : -ENOTSUP;
    int present = 0, add_err = 0;
    pthread_mutex_lock(&s->lock);
    int rc = index_step(s, fd, interest, &present, &add_err);
    if (rc == 0 && !present) {
        /* Not registered; undo the entries the step added. */
        index_del(s, fd);
        rc = absent(fd);
    } else if (rc == 0 && add_err < 0) {
        rc = add_err; /* the queue is untouched: the old registration stands */
    } else if (rc == 0 && (rc = queue_set(s, fd, t, interest, 1)) < 0) {
        index_del(s, fd);
    }
    changed_unlock(s);
    return rc;
}

int cmio__sel_deregister(struct cmio__sel *s, cmio_fd fd)
{
    if (fd == s->kq || fd == s->index)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    int rc = index_del(s, fd);
    if (rc == 0)
        queue_del(s, fd);
    changed_unlock(s);
    return rc;
}

int cmio__sel_rearm(struct cmio__sel *s, cmio_fd fd, unsigned directions)
{
    (void)s;
    (void)fd;
    (void)directions;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */
/* ------------------------------------------------------------------------ */

/* One kevent() waits at most this long; the loop in cmio__sel_wait goes on
 * to the deadline. */
#define MAX_STEP_NS ((int64_t)86400 * 1000000000)

static struct timespec to_timespec(int64_t ns)
{
    if (ns > MAX_STEP_NS)
        ns = MAX_STEP_NS;
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

#define MAX_DISABLES 32

/* Disables the other direction of fired EV_DISPATCH knotes (both-direction
 * oneshot). Called under the registration lock, with no registration call
 * made since the events were collected. A sibling that does not exist is
 * reported as ENOENT: ignored. */
static void disable_siblings(int kq, struct kevent *changes, int n)
{
    struct kevent receipts[MAX_DISABLES];
    for (int i = 0; i < n; i++)
        changes[i].flags |= EV_RECEIPT;
    while (kev_call(kq, changes, n, receipts, n, &zero_ts) < 0 && errno == EINTR) {
    }
}

static uint32_t event_bits(const struct kevent *k)
{
    uint32_t bits = 0;
    if (k->flags & EV_ERROR)
        return CMIO__EV_ERR;
    if (k->filter == EVFILT_READ) {
        bits = CMIO__EV_IN;
        if (k->flags & EV_EOF)
            bits |= CMIO__EV_RCLOSED;
    } else if (k->filter == EVFILT_WRITE) {
        bits = CMIO__EV_OUT;
        if (k->flags & EV_EOF)
            bits |= CMIO__EV_WCLOSED;
#ifdef EVFILT_USER
    } else if (k->filter == EVFILT_USER && (k->ident & 1)) {
        return CMIO__EV_ERR | CMIO__EV_WCLOSED; /* a widowed pipe's stand-in */
#endif
    } else {
        bits = CMIO__EV_IN; /* a waker */
    }
    if ((k->flags & EV_EOF) && k->fflags != 0)
        bits |= CMIO__EV_ERR;
    return bits;
}

/* Turns the n kevent records at the start of the buffer into cmio_events,
 * in place, and returns how many there are. `seen` is the registration
 * change count read before the kevent() that collected them. */
static int translate(struct cmio__sel *s, cmio_events *events, int n, long seen)
{
    const char *in = (const char *)(void *)events->cmio__buf;
    cmio_event *out = events->cmio__buf;
    struct kevent disable[MAX_DISABLES];
    int ndisable = 0, locked = 0, moved = 0;
    for (int i = 0; i < n; i++) {
        struct kevent k;
        memcpy(&k, in + (size_t)i * sizeof(struct kevent), sizeof(k));
        if ((k.flags & EV_DISPATCH) && (k.filter == EVFILT_READ || k.filter == EVFILT_WRITE)) {
            if (!locked) {
                pthread_mutex_lock(&s->lock);
                locked = 1;
                moved = cmio__atomic_load(&s->changes) != seen;
            }
            if (!moved) {
                int other = k.filter == EVFILT_READ ? EVFILT_WRITE : EVFILT_READ;
                kev_set(&disable[ndisable++], k.ident, other, EV_DISABLE, 0, kev_token(&k));
                if (ndisable == MAX_DISABLES) {
                    disable_siblings(s->kq, disable, ndisable);
                    ndisable = 0;
                }
            }
        }
        out[i].cmio__token = kev_token(&k);
        out[i].cmio__flags = event_bits(&k);
    }
    if (locked) {
        if (ndisable > 0)
            disable_siblings(s->kq, disable, ndisable);
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}

int cmio__sel_wait(struct cmio__sel *s, cmio_events *events, int64_t timeout_ns)
{
    struct kevent *buf = (struct kevent *)(void *)events->cmio__buf;
    int cap = (int)events->cmio__cap;
    int64_t deadline = timeout_ns > 0 ? cmio__unix_deadline(timeout_ns) : 0;
    struct timespec ts = to_timespec(timeout_ns > 0 ? timeout_ns : 0);
    const struct timespec *tsp = timeout_ns < 0 ? NULL : &ts;
    for (;;) {
        long seen = cmio__atomic_load(&s->changes);
        int n = kev_call(s->kq, NULL, 0, buf, cap, tsp);
        if (n < 0) {
            events->cmio__len = 0;
            return -errno;
        }
        if (n > 0) {
            n = translate(s, events, n, seen);
            events->cmio__len = (size_t)n;
            return n;
        }
        if (timeout_ns == 0)
            break;
        if (timeout_ns > 0) {
            int64_t left = deadline - cmio__unix_now_ns();
            if (left <= 0)
                break;
            ts = to_timespec(left);
        }
    }
    events->cmio__len = 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Wakers                                                                   */
/* ------------------------------------------------------------------------ */

#ifdef CMIO__USER_WAKER

static uintptr_t waker_ident(const struct cmio__wk *w)
{
    return (uintptr_t)w; /* unique while the waker lives */
}

int cmio__sel_waker_new(struct cmio__sel *s, cmio_token t, struct cmio__wk **out)
{
    struct cmio__wk *w = cmio__malloc(sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->kq = s->kq;
    w->token = t;
    struct kevent ch;
    int err;
    kev_set(&ch, waker_ident(w), EVFILT_USER, EV_ADD | EV_CLEAR, 0, t);
    int rc = apply(s->kq, &ch, 1, &err);
    if (rc == 0 && err != 0)
        rc = -err;
    if (rc < 0) {
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
    struct kevent ch;
    kev_set(&ch, waker_ident(w), EVFILT_USER, 0, NOTE_TRIGGER, w->token);
    int rc;
    while ((rc = kev_call(w->kq, &ch, 1, NULL, 0, &zero_ts)) < 0 && errno == EINTR) {
    }
    rc = rc < 0 ? -errno : 0;
    errno = saved;
    return rc;
}

void cmio__sel_waker_free(struct cmio__sel *s, struct cmio__wk *w)
{
    struct kevent ch;
    int err;
    kev_set(&ch, waker_ident(w), EVFILT_USER, EV_DELETE, 0, 0);
    apply(s->kq, &ch, 1, &err);
    cmio__free(w);
}

#else /* no EVFILT_USER: a pipe */

static int pipe_cloexec_nonblock(int p[2])
{
#if defined(__APPLE__)
    /* No pipe2(). Another thread's fork()+exec() between pipe() and the
     * fcntl()s could inherit the pair, which is harmless. */
    if (pipe(p) < 0)
        return -errno;
    int rc = cmio__unix_cloexec_nonblock(p[0]);
    if (rc == 0)
        rc = cmio__unix_cloexec_nonblock(p[1]);
    if (rc < 0) {
        close(p[0]);
        close(p[1]);
    }
    return rc;
#else
    return pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0 ? -errno : 0;
#endif
}

int cmio__sel_waker_new(struct cmio__sel *s, cmio_token t, struct cmio__wk **out)
{
    struct cmio__wk *w = cmio__malloc(sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    int p[2];
    int rc = pipe_cloexec_nonblock(p);
    if (rc < 0) {
        cmio__free(w);
        return rc;
    }
    w->kq = s->kq;
    w->token = t;
    w->rfd = p[0];
    w->wfd = p[1];
    struct kevent ch;
    int err;
    kev_set(&ch, (uintptr_t)w->rfd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, t);
    /* Under the lock and counted as a change like a registration: the
     * pipe may get the number of an fd closed without deregister whose
     * sibling disable is pending in a wait. */
    pthread_mutex_lock(&s->lock);
    rc = apply(s->kq, &ch, 1, &err);
    changed_unlock(s);
    if (rc == 0 && err != 0)
        rc = -err;
    if (rc < 0) {
        close(p[0]);
        close(p[1]);
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
    char byte = 1, sink[256];
    for (;;) {
        if (write(w->wfd, &byte, 1) == 1)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            /* Full: every byte already made its edge. Empty it so this
             * write makes a new one. */
            while (read(w->rfd, sink, sizeof(sink)) > 0) {
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
    struct kevent ch;
    int err;
    kev_set(&ch, (uintptr_t)w->rfd, EVFILT_READ, EV_DELETE, 0, 0);
    apply(s->kq, &ch, 1, &err);
    close(w->rfd);
    close(w->wfd);
    cmio__free(w);
}

#endif
