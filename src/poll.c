/*
 * poll.c: the poll(2) backend, for POSIX systems without epoll or kqueue.
 * On Linux it is built with -DCMIO_BACKEND=poll, which makes it the native
 * test bed for the edge emulation ("rearm") that the Windows backend needs.
 *
 * poll() is stateless: every call hands the kernel a whole array of
 * struct pollfd and gets level-triggered readiness back. Everything else
 * the contract asks for is built here, around one mutex:
 *
 *   - The registrations live in a dense array (`regs`) with an fd-indexed
 *     table (`slot`) pointing into it, so register, reregister, deregister
 *     and rearm find an fd in O(1); deregister moves the last registration
 *     into the hole. Both arrays grow in register (this backend allocates
 *     there; the contract forbids it only on epoll and kqueue).
 *   - The array poll() reads (`set`) mirrors `regs`: entry 0 is the internal
 *     wake descriptor, entry 1 + i is regs[i]. The kernel reads the array for
 *     the whole call and writes revents back at the end (some kernels write
 *     the whole struct), so nobody may touch it while the waiter is inside
 *     poll(). A change made then only marks the mirror stale (`dirty`) and
 *     wakes the waiter through the wake descriptor; the waiter rebuilds the
 *     mirror under the lock before its next poll() and absorbs the wake-up.
 *     A change made while nobody polls patches its entry in place, so the
 *     single-threaded hot path (report, rearm, report) never rebuilds.
 *     The mirror is allocated in register, never in wait: when it must grow
 *     while the waiter is inside poll(), the bigger one waits in `next` and
 *     the waiter swaps it in; the old one is freed by a later registry call.
 *   - Registrations changed while the waiter was inside poll() are matched
 *     again through `slot` and a per-registration generation number, so a
 *     result poll() produced for a registration that was since deregistered,
 *     replaced or reregistered is dropped: no wait that starts after
 *     deregister returns reports it. A dropped result is never lost: the
 *     readiness is still there for the next poll(), which is level-triggered.
 *   - Edge mode: after a direction is reported it leaves the fd's mask until
 *     cmio_registry_rearm (the caller hit EAGAIN) or reregister. POLLERR and
 *     POLLHUP cannot be masked: they end a poll() even with an empty mask.
 *     That is useful once (an fd whose directions were all reported still
 *     gets the error or hang-up edge epoll would give it), so after
 *     reporting one of them in edge mode the fd leaves the set altogether
 *     (a negative fd, which poll() skips) until rearm or reregister;
 *     otherwise a hung-up socket would report on every wait. Oneshot takes
 *     the fd out of the set after its report, until reregister. Nothing is
 *     disarmed that was not reported, so a source beyond the events
 *     capacity is reported by a later wait; the scan starts where the last
 *     full one stopped, so none is starved.
 *   - POLLNVAL means the fd was closed while registered. epoll forgets such
 *     a registration silently; here it is taken out of the set (no busy
 *     loop) and forgotten when its number is registered again. Because
 *     numbers are reused, every register/reregister/deregister fstat()s the
 *     fd and compares st_dev/st_ino with the registration's: a registration
 *     whose number now names another file is stale and is replaced
 *     (register) or dropped with -ENOENT (reregister, deregister), as epoll,
 *     which tracks the open file, would behave. fstat() also gives -EBADF for
 *     a closed fd, and shows the regular files, directories and block
 *     devices that poll() would report ready forever: register refuses them
 *     with -EPERM as epoll does; reregister and deregister say -ENOENT, as
 *     the epoll backend does, since they cannot have been registered.
 *   - The wake descriptor is an eventfd on Linux and a pipe elsewhere, both
 *     close-on-exec and non-blocking. Registry calls write it only while the
 *     waiter is inside poll() and only once per poll(). Wakers cost no
 *     descriptor: each is an atomic flag; a wake sets it and, on the 0 -> 1
 *     transition only, writes the wake descriptor (both async-signal-safe).
 *     The waiter drains the descriptor before it reads the flags, so a wake
 *     is either seen now or has written after the drain and ends a later
 *     poll(): none is lost, and wakes before a wait coalesce into one event.
 *   - Read-closed is POLLRDHUP on Linux (asked for with POLLIN) or POLLHUP;
 *     write-closed is POLLHUP, or POLLERR with POLLOUT or alone, decoded as
 *     the epoll backend decodes the same bits.
 *   - Priority is POLLPRI, supported on Linux only, where it means TCP
 *     urgent data as EPOLLPRI does; what POLLPRI means for sockets differs
 *     between the other systems, so there it is -ENOTSUP.
 *   - Timeouts: ppoll() takes a timespec on Linux (nanoseconds); elsewhere
 *     poll() takes milliseconds, rounded up. Either way the wait loops to
 *     its deadline so it never ends early, and absorbs internal wake-ups.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "atomic.h"
#include "sys.h"
#include "unix.h"

#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

#ifdef __linux__
#define HAVE_PRIORITY 1
#else
#define HAVE_PRIORITY 0
#endif

/* Why a registration with armed directions is still kept out of the set. */
#define HOLD_HANGUP 0x1u  /* edge mode reported POLLERR/POLLHUP: until rearm or reregister */
#define HOLD_ONESHOT 0x2u /* a oneshot registration reported: until reregister */
#define HOLD_CLOSED 0x4u  /* poll() said POLLNVAL: the fd was closed while registered */

struct reg {
    int fd;
    unsigned interest;
    unsigned armed; /* directions whose readiness the next poll() looks for */
    unsigned hold;
    cmio_token token;
    uint64_t gen; /* new on register and reregister; never reused */
    dev_t dev;    /* which file the fd named at registration */
    ino_t ino;
};

/* What poll() is given, with the generation each entry was copied from. */
struct pollset {
    uint64_t *gen;
    struct pollfd *pfd;
    size_t cap;
};

struct cmio__sel {
    pthread_mutex_t lock;
    int wake_rd, wake_wr; /* the same eventfd on Linux */

    int *slot; /* fd -> index in regs, or -1 */
    size_t nslot;
    struct reg *regs;
    size_t nregs, cap;
    uint64_t next_gen;

    struct pollset set; /* entry 0: wake_rd; entry 1 + i: regs[i] unless dirty */
    size_t nset;
    struct pollset next;    /* a bigger set made while the waiter was in poll() */
    struct pollset retired; /* the set the waiter gave up for `next` */
    size_t cursor;          /* where the next scan of the set starts */

    int dirty;       /* set no longer mirrors regs */
    int polling;     /* the waiter is inside poll(): set is the kernel's */
    int signalled;   /* a registry call wrote the wake descriptor */
    int waker_check; /* waker flags may be set: look at them */

    struct cmio__wk *wakers;    /* doubly linked */
    struct cmio__wk *wk_resume; /* the waker a full batch stopped at */
};

struct cmio__wk {
    cmio__atomic pending;
    cmio_token token;
    struct cmio__sel *sel;
    struct cmio__wk *prev, *next;
};

size_t cmio__sel_slot_size(void)
{
    return sizeof(cmio_event);
}

/* ------------------------------------------------------------------------ */
/* The wake descriptor                                                      */
/* ------------------------------------------------------------------------ */

static int wake_open(struct cmio__sel *s)
{
#ifdef __linux__
    s->wake_rd = s->wake_wr = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return s->wake_rd < 0 ? -errno : 0;
#else
    /* pipe2() is not everywhere yet; another thread's fork()+exec() between
     * pipe() and the fcntl()s could inherit the pair, which is harmless. */
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    int rc = cmio__unix_cloexec_nonblock(p[0]);
    if (rc == 0)
        rc = cmio__unix_cloexec_nonblock(p[1]);
    if (rc < 0) {
        close(p[0]);
        close(p[1]);
        return rc;
    }
    s->wake_rd = p[0];
    s->wake_wr = p[1];
    return 0;
#endif
}

static void wake_close(struct cmio__sel *s)
{
    close(s->wake_rd);
    if (s->wake_wr != s->wake_rd)
        close(s->wake_wr);
}

/* Async-signal-safe. A full pipe or counter is already readable: fine. */
static void wake_write(struct cmio__sel *s)
{
    int saved = errno;
#ifdef __linux__
    uint64_t one = 1;
    while (write(s->wake_wr, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
#else
    char one = 1;
    while (write(s->wake_wr, &one, 1) < 0 && errno == EINTR) {
    }
#endif
    errno = saved;
}

static void wake_drain(struct cmio__sel *s)
{
#ifdef __linux__
    uint64_t count;
    while (read(s->wake_rd, &count, sizeof(count)) < 0 && errno == EINTR) {
    }
#else
    char buf[256];
    for (;;) {
        ssize_t n = read(s->wake_rd, buf, sizeof(buf));
        if (n == (ssize_t)sizeof(buf) || (n < 0 && errno == EINTR))
            continue;
        break;
    }
#endif
}

/* Under the lock: make a poll() that is under way return, once per poll(). */
static void wake_waiter(struct cmio__sel *s)
{
    if (s->polling && !s->signalled) {
        s->signalled = 1;
        wake_write(s);
    }
}

/* ------------------------------------------------------------------------ */
/* The poll set and its mirror of regs                                      */
/* ------------------------------------------------------------------------ */

static int pollset_alloc(struct pollset *ps, size_t cap)
{
    /* One block: the generations first, for their alignment. */
    ps->gen = cmio__malloc(cap * (sizeof(uint64_t) + sizeof(struct pollfd)));
    if (ps->gen == NULL)
        return -ENOMEM;
    ps->pfd = (struct pollfd *)(void *)(ps->gen + cap);
    ps->cap = cap;
    return 0;
}

static void pollset_free(struct pollset *ps)
{
    cmio__free(ps->gen);
    ps->gen = NULL;
    ps->pfd = NULL;
    ps->cap = 0;
}

static short poll_mask(unsigned directions)
{
    short m = 0;
    if (directions & CMIO_READABLE)
        m |= POLLIN | POLLRDHUP;
    if (directions & CMIO_WRITABLE)
        m |= POLLOUT;
    if (directions & CMIO_PRIORITY)
        m |= POLLPRI;
    return m;
}

static void fill_entry(struct cmio__sel *s, size_t i)
{
    const struct reg *r = &s->regs[i];
    struct pollfd *p = &s->set.pfd[1 + i];
    /* With no direction armed the fd stays in the set: an empty mask still
     * reports POLLERR/POLLHUP (a new edge, as epoll reports it) and POLLNVAL.
     * A negative fd, which poll() skips, is the only way to silence those. */
    p->fd = r->hold != 0 ? -1 : r->fd;
    p->events = poll_mask(r->armed);
    p->revents = 0;
    s->set.gen[1 + i] = r->gen;
}

/* Under the lock, before poll(): make the set mirror regs again. */
static void rebuild(struct cmio__sel *s)
{
    if (s->next.gen != NULL) {
        /* The waiter holds no pointer into the old set any more, but free()
         * is left to the registry calls: wait never calls the allocator. */
        s->retired = s->set;
        s->set = s->next;
        s->next = (struct pollset){NULL, NULL, 0};
    }
    s->set.pfd[0].fd = s->wake_rd;
    s->set.pfd[0].events = POLLIN;
    s->set.pfd[0].revents = 0;
    s->set.gen[0] = 0;
    for (size_t i = 0; i < s->nregs; i++)
        fill_entry(s, i);
    s->nset = 1 + s->nregs;
    s->dirty = 0;
}

/* Under the lock, after regs[i] changed. */
static void changed(struct cmio__sel *s, size_t i)
{
    if (s->polling) {
        s->dirty = 1;
        wake_waiter(s);
    } else if (!s->dirty) {
        fill_entry(s, i);
    }
}

/* Under the lock: room for `need` registrations in regs and in the set. */
static int reserve(struct cmio__sel *s, size_t need)
{
    if (s->retired.gen != NULL)
        pollset_free(&s->retired);
    if (need <= s->cap)
        return 0;
    size_t cap = s->cap * 2 > need ? s->cap * 2 : need;
    struct pollset ps;
    if (pollset_alloc(&ps, 1 + cap) < 0)
        return -ENOMEM;
    struct reg *regs = cmio__realloc(s->regs, cap * sizeof(*regs));
    if (regs == NULL) {
        pollset_free(&ps);
        return -ENOMEM;
    }
    s->regs = regs;
    s->cap = cap;
    pollset_free(&s->next);
    if (s->polling) {
        s->next = ps; /* the kernel is reading s->set */
    } else {
        pollset_free(&s->set);
        s->set = ps;
    }
    s->dirty = 1;
    return 0;
}

static int reserve_slot(struct cmio__sel *s, int fd)
{
    if ((size_t)fd < s->nslot)
        return 0;
    size_t n = s->nslot * 2 > (size_t)fd ? s->nslot * 2 : (size_t)fd + 1;
    int *slot = cmio__realloc(s->slot, n * sizeof(*slot));
    if (slot == NULL)
        return -ENOMEM;
    for (size_t k = s->nslot; k < n; k++)
        slot[k] = -1;
    s->slot = slot;
    s->nslot = n;
    return 0;
}

static int lookup(const struct cmio__sel *s, int fd)
{
    return (size_t)fd < s->nslot ? s->slot[fd] : -1;
}

static void append(struct cmio__sel *s, int fd, cmio_token t, unsigned interest,
                   const struct stat *st)
{
    size_t i = s->nregs++;
    struct reg *r = &s->regs[i];
    r->fd = fd;
    r->interest = interest;
    r->armed = interest & CMIO__DIRECTIONS;
    r->hold = 0;
    r->token = t;
    r->gen = ++s->next_gen;
    r->dev = st->st_dev;
    r->ino = st->st_ino;
    s->slot[fd] = (int)i;
    if (s->polling) {
        s->dirty = 1;
        wake_waiter(s);
    } else if (!s->dirty) {
        fill_entry(s, i);
        s->nset = 1 + s->nregs;
    }
}

static void remove_at(struct cmio__sel *s, size_t i)
{
    size_t last = s->nregs - 1;
    s->slot[s->regs[i].fd] = -1;
    if (i != last) {
        s->regs[i] = s->regs[last];
        s->slot[s->regs[i].fd] = (int)i;
    }
    s->nregs--;
    if (s->polling) {
        s->dirty = 1;
        wake_waiter(s);
    } else if (!s->dirty) {
        if (i != last) {
            s->set.pfd[1 + i] = s->set.pfd[1 + last];
            s->set.gen[1 + i] = s->set.gen[1 + last];
        }
        s->nset = 1 + s->nregs;
    }
}

/* ------------------------------------------------------------------------ */
/* Selector                                                                 */
/* ------------------------------------------------------------------------ */

#define INITIAL_CAP 16

int cmio__sel_new(struct cmio__sel **out)
{
    struct cmio__sel *s = cmio__calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->regs = cmio__malloc(INITIAL_CAP * sizeof(*s->regs));
    int rc = s->regs == NULL ? -ENOMEM : pollset_alloc(&s->set, 1 + INITIAL_CAP);
    if (rc == 0 && pthread_mutex_init(&s->lock, NULL) != 0)
        rc = -ENOMEM;
    if (rc == 0) {
        rc = wake_open(s);
        if (rc < 0)
            pthread_mutex_destroy(&s->lock);
    }
    if (rc < 0) {
        pollset_free(&s->set);
        cmio__free(s->regs);
        cmio__free(s);
        return rc;
    }
    s->cap = INITIAL_CAP;
    rebuild(s);
    *out = s;
    return 0;
}

void cmio__sel_free(struct cmio__sel *s)
{
    wake_close(s);
    pthread_mutex_destroy(&s->lock);
    pollset_free(&s->set);
    pollset_free(&s->next);
    pollset_free(&s->retired);
    cmio__free(s->regs);
    cmio__free(s->slot);
    cmio__free(s);
}

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */
/* ------------------------------------------------------------------------ */

static int poll_for(struct pollfd *pfd, size_t n, int64_t timeout_ns)
{
#ifdef __linux__
    if (timeout_ns < 0)
        return ppoll(pfd, (nfds_t)n, NULL, NULL);
    /* Clamped like the millisecond path; the caller loops to its deadline. */
    if (timeout_ns > (int64_t)INT32_MAX * 1000000)
        timeout_ns = (int64_t)INT32_MAX * 1000000;
    struct timespec ts = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
    return ppoll(pfd, (nfds_t)n, &ts, NULL);
#else
    return poll(pfd, (nfds_t)n, timeout_ns < 0 ? -1 : cmio__unix_ms_ceil(timeout_ns));
#endif
}

/* Reports the set flags of pending wakers, resuming where a full batch
 * stopped so that no waker is starved. 0 if the batch filled up first. */
static int report_wakers(struct cmio__sel *s, cmio_events *events, size_t *count)
{
    struct cmio__wk *start = s->wk_resume != NULL ? s->wk_resume : s->wakers;
    struct cmio__wk *w = start;
    while (w != NULL) {
        if (*count == events->cmio__cap) {
            s->wk_resume = w;
            return 0;
        }
        if (cmio__atomic_exchange(&w->pending, 0) != 0) {
            cmio_event *e = &events->cmio__buf[(*count)++];
            e->cmio__token = w->token;
            e->cmio__flags = CMIO__EV_IN;
        }
        w = w->next != NULL ? w->next : s->wakers;
        if (w == start)
            break;
    }
    s->wk_resume = NULL;
    s->waker_check = 0;
    return 1;
}

/* Turns set entry k (revents != 0) into an event in *e and applies the
 * registration's mode. 0 if there is nothing to report. */
static int report_entry(struct cmio__sel *s, size_t k, cmio_event *e)
{
    const struct pollfd *p = &s->set.pfd[k];
    short re = p->revents;
    size_t i;
    if (!s->dirty) {
        i = k - 1;
    } else {
        /* regs changed during poll(): only the same registration, unchanged,
         * may be reported from this result. */
        int j = lookup(s, p->fd);
        if (j < 0 || s->regs[j].gen != s->set.gen[k])
            return 0;
        i = (size_t)j;
    }
    struct reg *r = &s->regs[i];

    if (re & POLLNVAL) {
        r->hold |= HOLD_CLOSED;
        changed(s, i);
        return 0;
    }

    uint32_t f = 0;
    unsigned seen = 0;
    if (re & POLLIN)
        f |= CMIO__EV_IN;
    if (re & POLLOUT)
        f |= CMIO__EV_OUT;
    if (re & POLLPRI)
        f |= CMIO__EV_PRI;
    if (re & POLLERR)
        f |= CMIO__EV_ERR;
    if ((re & (POLLHUP | POLLRDHUP)) != 0)
        f |= CMIO__EV_RCLOSED;
    if ((re & POLLHUP) != 0 || (re & (POLLOUT | POLLERR)) == (POLLOUT | POLLERR) || re == POLLERR)
        f |= CMIO__EV_WCLOSED;
    if (re & (POLLIN | POLLRDHUP))
        seen |= CMIO_READABLE;
    if (re & POLLOUT)
        seen |= CMIO_WRITABLE;
    if (re & POLLPRI)
        seen |= CMIO_PRIORITY;

    if (r->interest & CMIO_ONESHOT) {
        r->hold |= HOLD_ONESHOT;
        changed(s, i);
    } else if (!(r->interest & CMIO_LEVEL)) {
        r->armed &= ~seen;
        if (re & (POLLERR | POLLHUP))
            r->hold |= HOLD_HANGUP;
        changed(s, i);
    }
    e->cmio__token = r->token;
    e->cmio__flags = f;
    return 1;
}

/* Under the lock, after poll() returned `ready`: fills events, starting the
 * scan at the cursor so that a full batch does not starve later entries. */
static size_t collect(struct cmio__sel *s, cmio_events *events, int ready)
{
    int wake_hit = s->set.pfd[0].revents != 0;
    if (wake_hit || s->signalled) {
        wake_drain(s);
        s->signalled = 0;
        s->waker_check = 1;
    }
    size_t todo = (size_t)ready - (size_t)wake_hit + (size_t)s->waker_check;
    size_t n = s->nset;
    size_t k = s->cursor < n ? s->cursor : 0;
    size_t count = 0;
    for (size_t visited = 0; visited < n && todo > 0; visited++) {
        if (k == 0) {
            if (s->waker_check) {
                if (!report_wakers(s, events, &count)) {
                    /* Full of wakes: the next scan starts with the fds,
                     * or wakers woken before every wait would starve them
                     * (wk_resume keeps the wakers' own turn). */
                    k = n > 1 ? 1 : 0;
                    break;
                }
                todo--;
            }
        } else if (s->set.pfd[k].revents != 0) {
            if (count == events->cmio__cap)
                break;
            count += (size_t)report_entry(s, k, &events->cmio__buf[count]);
            todo--;
        }
        k = k + 1 < n ? k + 1 : 0;
    }
    s->cursor = k;
    return count;
}

int cmio__sel_wait(struct cmio__sel *s, cmio_events *events, int64_t timeout_ns)
{
    int64_t deadline = timeout_ns > 0 ? cmio__unix_deadline(timeout_ns) : 0;
    int64_t left = timeout_ns;
    events->cmio__len = 0;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->dirty)
            rebuild(s);
        struct pollfd *pfd = s->set.pfd;
        size_t n = s->nset;
        /* Wakers left over from a full batch are ready now. */
        int64_t t = s->waker_check ? 0 : left;
        s->polling = 1;
        pthread_mutex_unlock(&s->lock);

        int ready = poll_for(pfd, n, t);
        int err = errno;

        pthread_mutex_lock(&s->lock);
        s->polling = 0;
        if (ready < 0) {
            pthread_mutex_unlock(&s->lock);
            return -err;
        }
        size_t count = collect(s, events, ready);
        int done = count > 0 || timeout_ns == 0;
        if (!done && timeout_ns > 0) {
            left = deadline - cmio__unix_now_ns();
            done = left <= 0;
        }
        if (done) {
            pthread_mutex_unlock(&s->lock);
            events->cmio__len = count;
            return (int)count;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Registration                                                             */
/* ------------------------------------------------------------------------ */

/* The fd checks epoll_ctl makes, in its order: open, then pollable (for
 * register only: reregister and deregister answer -ENOENT for an fd that
 * could never have been registered, as the epoll backend does). */
static int check_fd(struct cmio__sel *s, cmio_fd fd, struct stat *st, int adding)
{
    if (fstat(fd, st) < 0) {
        int err = errno;
        if (err == EBADF) {
            /* Whatever was registered under this number was closed. Look
             * again under the lock: another thread may have opened the
             * number and registered it since, and that one stays. */
            pthread_mutex_lock(&s->lock);
            struct stat again;
            int i = lookup(s, fd);
            if (i >= 0 && fstat(fd, &again) < 0 && errno == EBADF)
                remove_at(s, (size_t)i);
            pthread_mutex_unlock(&s->lock);
        }
        return -err;
    }
    if (adding && (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISBLK(st->st_mode)))
        return -EPERM;
    if (fd == s->wake_rd || fd == s->wake_wr)
        return -EINVAL;
    return 0;
}

static int check_interest(unsigned interest)
{
    return (interest & CMIO_PRIORITY) && !HAVE_PRIORITY ? -ENOTSUP : 0;
}

/* Under the lock: is regs[i] still the file fd names now? */
static int is_stale(const struct reg *r, const struct stat *st)
{
    return (r->hold & HOLD_CLOSED) || r->dev != st->st_dev || r->ino != st->st_ino;
}

int cmio__sel_register(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest)
{
    struct stat st;
    int rc = check_fd(s, fd, &st, 1);
    if (rc == 0)
        rc = check_interest(interest);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    int i = lookup(s, fd);
    if (i >= 0 && !is_stale(&s->regs[i], &st)) {
        rc = -EEXIST;
    } else {
        if (i >= 0)
            remove_at(s, (size_t)i);
        rc = reserve_slot(s, fd);
        if (rc == 0)
            rc = reserve(s, s->nregs + 1);
        if (rc == 0)
            append(s, fd, t, interest, &st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int cmio__sel_reregister(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest)
{
    struct stat st;
    int rc = check_fd(s, fd, &st, 0);
    if (rc == 0)
        rc = check_interest(interest);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    int i = lookup(s, fd);
    if (i < 0) {
        rc = -ENOENT;
    } else if (is_stale(&s->regs[i], &st)) {
        remove_at(s, (size_t)i);
        rc = -ENOENT;
    } else {
        struct reg *r = &s->regs[i];
        r->interest = interest;
        r->armed = interest & CMIO__DIRECTIONS;
        r->hold = 0;
        r->token = t;
        r->gen = ++s->next_gen;
        changed(s, (size_t)i);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int cmio__sel_deregister(struct cmio__sel *s, cmio_fd fd)
{
    struct stat st;
    int rc = check_fd(s, fd, &st, 0);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    int i = lookup(s, fd);
    if (i < 0) {
        rc = -ENOENT;
    } else {
        rc = is_stale(&s->regs[i], &st) ? -ENOENT : 0;
        remove_at(s, (size_t)i);
        if (s->retired.gen != NULL)
            pollset_free(&s->retired);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int cmio__sel_rearm(struct cmio__sel *s, cmio_fd fd, unsigned directions)
{
    pthread_mutex_lock(&s->lock);
    int i = lookup(s, fd);
    if (i >= 0) {
        struct reg *r = &s->regs[i];
        unsigned dirs = directions & r->interest;
        /* Level registrations are always armed; a fired oneshot waits for
         * reregister; a closed fd is gone. */
        if (dirs != 0 && !(r->interest & CMIO_LEVEL) && !(r->hold & (HOLD_ONESHOT | HOLD_CLOSED))
            && ((dirs & ~r->armed) != 0 || (r->hold & HOLD_HANGUP))) {
            r->armed |= dirs;
            r->hold &= ~HOLD_HANGUP;
            changed(s, (size_t)i);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Wakers                                                                   */
/* ------------------------------------------------------------------------ */

int cmio__sel_waker_new(struct cmio__sel *s, cmio_token t, struct cmio__wk **out)
{
    struct cmio__wk *w = cmio__malloc(sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    cmio__atomic_store(&w->pending, 0);
    w->token = t;
    w->sel = s;
    w->prev = NULL;
    pthread_mutex_lock(&s->lock);
    w->next = s->wakers;
    if (s->wakers != NULL)
        s->wakers->prev = w;
    s->wakers = w;
    pthread_mutex_unlock(&s->lock);
    *out = w;
    return 0;
}

int cmio__sel_waker_wake(struct cmio__wk *w)
{
    if (cmio__atomic_exchange(&w->pending, 1) == 0)
        wake_write(w->sel);
    return 0;
}

void cmio__sel_waker_free(struct cmio__sel *s, struct cmio__wk *w)
{
    pthread_mutex_lock(&s->lock);
    if (s->wk_resume == w)
        s->wk_resume = w->next;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        s->wakers = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&s->lock);
    cmio__free(w);
}
