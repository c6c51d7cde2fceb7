/*
 * core.c: the backend-independent part of cmio.
 *
 * Every public call starts here: arguments are checked once, so backends see
 * only valid handles, fds and interests (see sys.h). The core also owns
 *
 *   - the queue's reference count: a poll, each registry clone and each waker
 *     hold one reference, and the backend selector is freed with the last;
 *   - the one-waiter rule: a flag set for the duration of cmio_poll_wait,
 *     so a second concurrent waiter gets -EBUSY instead of sharing a kernel
 *     queue in ways no backend defines;
 *   - the events container and the error strings.
 *
 * Nothing here talks to the OS.
 */
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "sys.h"

/* The OS queue shared by a poll, its clones and its wakers. */
struct cmio__queue {
    cmio__atomic refs;
    struct cmio__sel *sel;
};

struct cmio_registry {
    struct cmio__queue *q;
    int is_clone; /* 0 for the registry embedded in a cmio_poll */
};

struct cmio_poll {
    struct cmio_registry reg;
    cmio__atomic waiting; /* 1 while a thread is inside cmio_poll_wait */
};

struct cmio_waker {
    struct cmio__queue *q;
    struct cmio__wk *wk;
};

#define CMIO__KNOWN_BITS (CMIO__DIRECTIONS | CMIO_LEVEL | CMIO_ONESHOT)


/* ------------------------------------------------------------------------ */
/* Allocation                                                               */
/* ------------------------------------------------------------------------ */

/* Failure injection for the tests (see cmio__alloc_fail_after in sys.h):
 * the number of allocations still allowed to succeed, or -1 for all. */
static cmio__atomic alloc_budget = -1;

void cmio__alloc_fail_after(long n)
{
    cmio__atomic_store(&alloc_budget, n);
}

static int alloc_allowed(void)
{
    for (;;) {
        long left = cmio__atomic_load(&alloc_budget);
        if (left < 0)
            return 1;
        if (left == 0)
            return 0;
        if (cmio__atomic_cas(&alloc_budget, left, left - 1))
            return 1;
    }
}

void *cmio__malloc(size_t size)
{
    return alloc_allowed() ? malloc(size) : NULL;
}

void *cmio__calloc(size_t n, size_t size)
{
    return alloc_allowed() ? calloc(n, size) : NULL;
}

void *cmio__realloc(void *p, size_t size)
{
    return alloc_allowed() ? realloc(p, size) : NULL;
}

void cmio__free(void *p)
{
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Queue reference counting                                                 */
/* ------------------------------------------------------------------------ */

static void queue_ref(struct cmio__queue *q)
{
    cmio__atomic_fetch_add(&q->refs, 1);
}

static void queue_unref(struct cmio__queue *q)
{
    if (cmio__atomic_fetch_add(&q->refs, -1) == 1) {
        cmio__sel_free(q->sel);
        cmio__free(q);
    }
}

/* ------------------------------------------------------------------------ */
/* Poll                                                                     */
/* ------------------------------------------------------------------------ */

int cmio_poll_new(cmio_poll **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;

    cmio_poll *p = cmio__calloc(1, sizeof(*p));
    struct cmio__queue *q = cmio__calloc(1, sizeof(*q));
    if (p == NULL || q == NULL) {
        cmio__free(p);
        cmio__free(q);
        return -ENOMEM;
    }
    int rc = cmio__sel_new(&q->sel);
    if (rc < 0) {
        cmio__free(p);
        cmio__free(q);
        return rc;
    }
    cmio__atomic_store(&q->refs, 1);
    cmio__atomic_store(&p->waiting, 0);
    p->reg.q = q;
    p->reg.is_clone = 0;
    *out = p;
    return 0;
}

void cmio_poll_free(cmio_poll *poll)
{
    if (poll == NULL)
        return;
    queue_unref(poll->reg.q);
    cmio__free(poll);
}

cmio_registry *cmio_poll_registry(cmio_poll *poll)
{
    return poll != NULL ? &poll->reg : NULL;
}

int cmio_poll_wait(cmio_poll *poll, cmio_events *events, int64_t timeout_ns)
{
    if (poll == NULL || events == NULL)
        return -EINVAL;
    if (cmio__atomic_exchange(&poll->waiting, 1) != 0)
        return -EBUSY;
    int n = cmio__sel_wait(poll->reg.q->sel, events, timeout_ns);
    cmio__atomic_store(&poll->waiting, 0);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */
/* ------------------------------------------------------------------------ */

/* The checks register and reregister share: a handle, an interest with a
 * direction and only known bits, a possible fd. */
static int check_registration(const cmio_registry *r, cmio_fd fd, unsigned interest)
{
    if (r == NULL || (interest & ~CMIO__KNOWN_BITS) != 0 || (interest & CMIO__DIRECTIONS) == 0)
        return -EINVAL;
    return CMIO__FD_INVALID(fd) ? -EBADF : 0;
}

int cmio_registry_register(cmio_registry *r, cmio_fd fd, cmio_token t, unsigned interest)
{
    int rc = check_registration(r, fd, interest);
    return rc < 0 ? rc : cmio__sel_register(r->q->sel, fd, t, interest);
}

int cmio_registry_reregister(cmio_registry *r, cmio_fd fd, cmio_token t, unsigned interest)
{
    int rc = check_registration(r, fd, interest);
    return rc < 0 ? rc : cmio__sel_reregister(r->q->sel, fd, t, interest);
}

int cmio_registry_deregister(cmio_registry *r, cmio_fd fd)
{
    if (r == NULL)
        return -EINVAL;
    if (CMIO__FD_INVALID(fd))
        return -EBADF;
    return cmio__sel_deregister(r->q->sel, fd);
}

int cmio__registry_rearm(cmio_registry *r, cmio_fd fd, unsigned directions)
{
    int rc = cmio__rearm_check(r, fd, directions);
    return rc < 0 ? rc : cmio__sel_rearm(r->q->sel, fd, directions);
}

int cmio_registry_clone(cmio_registry *r, cmio_registry **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (r == NULL)
        return -EINVAL;
    cmio_registry *c = cmio__malloc(sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    queue_ref(r->q);
    c->q = r->q;
    c->is_clone = 1;
    *out = c;
    return 0;
}

void cmio_registry_free(cmio_registry *clone)
{
    /* The poll's own registry is part of the poll: ignoring it here turns a
     * likely double free into a harmless no-op. */
    if (clone == NULL || !clone->is_clone)
        return;
    queue_unref(clone->q);
    cmio__free(clone);
}

/* ------------------------------------------------------------------------ */
/* Events                                                                   */
/* ------------------------------------------------------------------------ */

int cmio_events_new(cmio_events **out, size_t capacity)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (capacity == 0 || capacity > CMIO_EVENTS_MAX)
        return -EINVAL;

    /* One block: the container, then the slots, aligned for any OS record
     * the backend receives into them. */
    size_t head = (sizeof(cmio_events) + 15) & ~(size_t)15;
    cmio_events *ev = cmio__malloc(head + capacity * cmio__sel_slot_size());
    if (ev == NULL)
        return -ENOMEM;
    ev->cmio__buf = (cmio_event *)(void *)((char *)ev + head);
    ev->cmio__len = 0;
    ev->cmio__cap = capacity;
    *out = ev;
    return 0;
}

void cmio_events_free(cmio_events *events)
{
    cmio__free(events);
}

/* ------------------------------------------------------------------------ */
/* Wakers                                                                   */
/* ------------------------------------------------------------------------ */

int cmio_waker_new(cmio_registry *r, cmio_token t, cmio_waker **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (r == NULL)
        return -EINVAL;
    cmio_waker *w = cmio__malloc(sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    int rc = cmio__sel_waker_new(r->q->sel, t, &w->wk);
    if (rc < 0) {
        cmio__free(w);
        return rc;
    }
    queue_ref(r->q);
    w->q = r->q;
    *out = w;
    return 0;
}

int cmio_waker_wake(cmio_waker *w)
{
    if (w == NULL)
        return -EINVAL;
    return cmio__sel_waker_wake(w->wk);
}

void cmio_waker_free(cmio_waker *w)
{
    if (w == NULL)
        return;
    cmio__sel_waker_free(w->q->sel, w->wk);
    queue_unref(w->q);
    cmio__free(w);
}

/* ------------------------------------------------------------------------ */
/* Misc                                                                     */
/* ------------------------------------------------------------------------ */

/* Every code the library can return, with its description. */
#define CMIO__ERRORS(X)                                                                            \
    X(EINVAL, "invalid argument")                                                                  \
    X(EBADF, "bad file descriptor (negative, closed or not open)")                                 \
    X(EEXIST, "file descriptor already registered with this queue")                                \
    X(ENOENT, "file descriptor not registered with this queue")                                    \
    X(EPERM, "file descriptor does not support polling")                                           \
    X(ENOTSUP, "operation not supported by this backend")                                          \
    X(EBUSY, "another thread is already waiting on this poll")                                     \
    X(EINTR, "wait interrupted by a signal")                                                       \
    X(ENOMEM, "out of memory")                                                                     \
    X(ENOSPC, "system limit on watched descriptors reached")                                       \
    X(EMFILE, "too many open files in this process")                                               \
    X(ENFILE, "too many open files in the system")                                                 \
    X(ELOOP, "registration would create a loop of nested queues")                                 \
    X(EAGAIN, "resource temporarily unavailable")                                                  \
    X(EIO, "input/output error")

const char *cmio_strerror(int err)
{
    if (err == 0)
        return "success";
    if (err > 0)
        err = -err;
    switch (err) {
#define CMIO__ERROR_CASE(code, text)                                                               \
    case -(code):                                                                                  \
        return text;
        CMIO__ERRORS(CMIO__ERROR_CASE)
#undef CMIO__ERROR_CASE
    default:
        return "unknown error";
    }
}

const char *cmio_backend(void)
{
    return CMIO_BACKEND_NAME;
}

const char *cmio_version(void)
{
    return CMIO_VERSION_STRING;
}
