/*
 * iocp.c: the Windows backend, readiness for sockets through AFD polls on an
 * I/O completion port (the technique of wepoll and mio).
 *
 * Windows has no readiness queue; the Winsock driver (AFD) answers
 * IOCTL_AFD_POLL requests, and a request issued on a helper handle that is
 * associated with a completion port ends as one packet on that port. The
 * socket logic is in iocp_sock.c; this file owns the port and handles these
 * platform behaviours:
 *
 *   - GetQueuedCompletionStatusEx fills an array of OVERLAPPED_ENTRY. It
 *     receives straight into the caller's events buffer (the core allocates
 *     slots of cmio__sel_slot_size() bytes), and each entry is translated in
 *     place, front to back: event k is written at or before entry k, after
 *     that entry has been read, so nothing unread is overwritten.
 *   - One packet arrives per accepted request, including those AFD
 *     satisfied inline; some carry nothing for the caller (cancels, closed
 *     sockets, wakers already reported). The wait absorbs them and keeps
 *     waiting for the rest of its time.
 *   - Timeouts are whole milliseconds, rounded up and clamped below
 *     INFINITE so that a huge timeout never means "forever"; the wait loops
 *     on QueryPerformanceCounter until the deadline because the port may
 *     wake up to a timer tick early.
 *   - When GetQueuedCompletionStatusEx times out, Wine reports one entry
 *     removed; the count is only trusted when the call succeeds.
 *   - The wait is not alertable, so it never ends with -EINTR.
 *   - Registration calls from other threads issue or cancel AFD requests
 *     themselves, under the lock, so changes reach the kernel at once
 *     rather than at the waiter's next pass. (Before Windows 8, I/O issued
 *     by a thread that exits is cancelled; iocp_sock.c re-issues it.)
 *   - Windows hands out the number of a closed socket again at once. A
 *     socket closed without deregistering is dropped when its
 *     AFD_POLL_LOCAL_CLOSE packet is processed, which may not have happened
 *     yet when the caller registers the new socket: make_room handles it.
 *   - Wakers post packets with PostQueuedCompletionStatus; an atomic flag
 *     coalesces wakes, and a waker freed with its packet still queued is
 *     kept until that packet is seen.
 *   - The kernel may refuse a poll request (out of nonpaged memory, say)
 *     while the waiter re-issues it. The socket stays queued and the waiter
 *     retries every few tens of milliseconds: cmio_poll_wait has no error
 *     for it, an error event would claim a fault the connection does not
 *     have, and a refusal that persists would make either one spin. Packets
 *     keep being dequeued meanwhile, so a LOCAL_CLOSE still drops the socket.
 *   - Posting can fail too. A packet make_room took off the port and cannot
 *     put back is handled where it is: the socket is polled afresh, the
 *     waker's wake is handed to the waiter by hand.
 *   - Teardown cancels every request and dequeues their packets before
 *     freeing the memory the kernel writes them into.
 */
#include <errno.h>
#include <stdint.h>

#include "iocp.h"
#include "win_error.h"

_Static_assert(sizeof(cmio_event) <= sizeof(OVERLAPPED_ENTRY),
               "an event must fit in the slot of the packet it is translated from");

/* The longest single wait: INFINITE (0xFFFFFFFF) would never end. */
#define MAX_WAIT_MS (INFINITE - 1)

/* How long the waiter waits before issuing refused requests again: the
 * first retry comes soon, for a shortage that passes; later ones back off. */
#define RETRY_FIRST_MS 10
#define RETRY_MAX_MS 50

size_t cmio__sel_slot_size(void)
{
    return sizeof(OVERLAPPED_ENTRY);
}

/* ------------------------------------------------------------------------ */
/* Time                                                                     */
/* ------------------------------------------------------------------------ */

static int64_t now_ns(void)
{
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    int64_t whole = c.QuadPart / f.QuadPart, part = c.QuadPart % f.QuadPart;
    return whole * 1000000000 + part * 1000000000 / f.QuadPart;
}

static DWORD ms_until(int64_t deadline)
{
    int64_t left = deadline - now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = left / 1000000 + (left % 1000000 != 0);
    return ms > (int64_t)MAX_WAIT_MS ? MAX_WAIT_MS : (DWORD)ms;
}

/* ------------------------------------------------------------------------ */
/* Failure injection (tests only; see iocp.h)                               */
/* ------------------------------------------------------------------------ */

static cmio__atomic fail_calls = 0;
static cmio__atomic failed_calls = 0;

long cmio__iocp_fail(unsigned calls)
{
    cmio__atomic_store(&fail_calls, (long)calls);
    return cmio__atomic_exchange(&failed_calls, 0);
}

int cmio__iocp_failing(unsigned call)
{
    if ((cmio__atomic_load(&fail_calls) & (long)call) == 0)
        return 0;
    cmio__atomic_fetch_add(&failed_calls, 1);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Selector                                                                 */
/* ------------------------------------------------------------------------ */

int cmio__sel_new(struct cmio__sel **out)
{
    struct cmio__sel *s = cmio__calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    if (cmio__table_init(s) < 0) {
        cmio__free(s);
        return -ENOMEM;
    }
    s->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    if (s->port == NULL) {
        int rc = cmio__win_error(GetLastError());
        cmio__table_free(s);
        cmio__free(s);
        return rc;
    }
    InitializeSRWLock(&s->lock);
    InitializeConditionVariable(&s->batch);
    cmio__list_init(&s->socks);
    cmio__list_init(&s->updates);
    *out = s;
    return 0;
}

/* Dequeues the packets of cancelled requests until none is outstanding.
 * Bounded: should the kernel never answer, the sockets are leaked rather
 * than freed under it. */
static void drain_for_teardown(struct cmio__sel *s)
{
    OVERLAPPED_ENTRY e[64];
    int64_t give_up = now_ns() + (int64_t)5000 * 1000000;
    while (s->busy_ops > 0 && now_ns() < give_up) {
        ULONG n = 0;
        if (!GetQueuedCompletionStatusEx(s->port, e, 64, &n, 100, FALSE))
            continue;
        for (ULONG i = 0; i < n; i++) {
            if ((e[i].lpCompletionKey & CMIO__KEY_KIND) != CMIO__KEY_AFD)
                continue;
            struct cmio__op *op = (struct cmio__op *)(void *)e[i].lpOverlapped;
            op->busy = 0;
            s->busy_ops--;
        }
    }
}

void cmio__sel_free(struct cmio__sel *s)
{
    struct cmio__link *l;
    for (l = s->socks.next; l != &s->socks; l = l->next)
        cmio__sock_cancel_all(CMIO__CONTAINER(l, struct cmio__sock, all));
    drain_for_teardown(s);
    cmio__groups_close(s);
    CloseHandle(s->port);
    while (!cmio__list_empty(&s->socks)) {
        struct cmio__sock *sock = CMIO__CONTAINER(s->socks.next, struct cmio__sock, all);
        cmio__list_remove(&sock->all);
        if (!sock->ev.busy && !sock->lc.busy)
            cmio__free(sock);
    }
    while (s->dead_wakers != NULL) {
        struct cmio__wk *w = s->dead_wakers;
        s->dead_wakers = w->next;
        cmio__free(w);
    }
    cmio__table_free(s);
    cmio__free(s);
}

/* ------------------------------------------------------------------------ */
/* Registration                                                             */
/* ------------------------------------------------------------------------ */

/* Frees a waker its owner freed while its packet was queued, now that the
 * packet is seen. */
static void free_dead_waker(struct cmio__sel *s, struct cmio__wk *w)
{
    struct cmio__wk **p = &s->dead_wakers;
    while (*p != w)
        p = &(*p)->next;
    *p = w->next;
    cmio__free(w);
}

/* A woken waker's packet is gone: the waiter reports the wake instead.
 * `posted` stays set meanwhile, so further wakes coalesce into that one. */
static void hold_waker(struct cmio__sel *s, struct cmio__wk *w)
{
    if (w->dead) {
        free_dead_waker(s, w); /* nobody wants the wake any more */
        return;
    }
    w->held = s->held_wakers;
    s->held_wakers = w;
}

/* Puts a packet process_watchers took back on the port, marked; or, when
 * that fails, deals with it here, as the waiter would have without an
 * event. */
static void requeue(struct cmio__sel *s, const OVERLAPPED_ENTRY *e, ULONG_PTR mark)
{
    ULONG_PTR kind = e->lpCompletionKey & CMIO__KEY_KIND;
    if (!cmio__iocp_failing(CMIO__FAIL_REPOST)
        && PostQueuedCompletionStatus(s->port, e->dwNumberOfBytesTransferred, kind | mark,
                                      e->lpOverlapped))
        return;
    if (kind == CMIO__KEY_AFD)
        cmio__sock_drop_answer(s, (struct cmio__op *)(void *)e->lpOverlapped);
    else if (kind == CMIO__KEY_WAKER)
        hold_waker(s, (struct cmio__wk *)(void *)e->lpOverlapped);
    else
        s->rescan = 0; /* a lost nudge: let hand_to_waiter post another */
}

/*
 * Takes every packet now on the port, processes those of lc watchers (which
 * never produce events, so any thread may) and queues the others again,
 * marked with this pass's number so the loop knows when it has gone round.
 */
static void process_watchers(struct cmio__sel *s)
{
    ULONG_PTR mark = CMIO__KEY_REQUEUED | (++s->passes << 3);
    OVERLAPPED_ENTRY e[32];
    for (;;) {
        ULONG n = 0;
        if (!GetQueuedCompletionStatusEx(s->port, e, 32, &n, 0, FALSE))
            return;
        int done = n < 32;
        for (ULONG i = 0; i < n; i++) {
            ULONG_PTR key = e[i].lpCompletionKey;
            struct cmio__op *op = (struct cmio__op *)(void *)e[i].lpOverlapped;
            if ((key & ~(ULONG_PTR)CMIO__KEY_KIND) == mark)
                done = 1;
            if ((key & CMIO__KEY_KIND) == CMIO__KEY_AFD && cmio__op_is_watcher(op))
                cmio__sock_feed(s, op, NULL);
            else
                requeue(s, &e[i], mark);
        }
        if (done)
            return;
    }
}

/*
 * Work that only the waiter does (re-polling queued sockets, reporting held
 * wakers) may have been left by this call: a refused request, or a packet
 * that could not be put back. A waiter blocked on the port would not see it
 * until something else woke it, so it is nudged. Best effort: if even that
 * post fails, the next registration call or the waiter's next pass tries
 * again.
 */
static void hand_to_waiter(struct cmio__sel *s)
{
    if (!s->polling || s->rescan)
        return;
    if (cmio__list_empty(&s->updates) && s->held_wakers == NULL)
        return;
    if (PostQueuedCompletionStatus(s->port, 0, CMIO__KEY_NUDGE, NULL))
        s->rescan = 1;
}

/* Lets the waiting thread process the packets it may hold. */
static void await_waiter_pass(struct cmio__sel *s)
{
    unsigned long seen = s->batches;
    PostQueuedCompletionStatus(s->port, 0, CMIO__KEY_NUDGE, NULL);
    while (s->polling && s->batches == seen)
        if (!SleepConditionVariableSRW(&s->batch, &s->lock, 1000, 0))
            break;
}

/*
 * fd is in the table. It may be a socket the caller closed without
 * deregistering, whose number the new socket now has: closing queued a
 * LOCAL_CLOSE packet for its watcher, which is either still on the port or
 * in the hands of a thread blocked in cmio_poll_wait. 0 once the number is
 * free, -EEXIST if it really is registered.
 */
static int make_room(struct cmio__sel *s, SOCKET fd)
{
    if (cmio__table_find(s, fd) == NULL)
        return 0;
    process_watchers(s);
    if (cmio__table_find(s, fd) == NULL)
        return 0;
    if (s->polling) {
        await_waiter_pass(s);
        if (cmio__table_find(s, fd) == NULL)
            return 0;
    }
    return -EEXIST;
}

int cmio__sel_register(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest)
{
    SOCKET base = INVALID_SOCKET;
    int rc = cmio__afd_base_socket((SOCKET)fd, &base);
    if (rc < 0)
        return rc;
    AcquireSRWLockExclusive(&s->lock);
    rc = make_room(s, (SOCKET)fd);
    if (rc == 0)
        rc = cmio__sock_new(s, (SOCKET)fd, base, t, interest);
    hand_to_waiter(s);
    ReleaseSRWLockExclusive(&s->lock);
    return rc;
}

/* Whether fd is still open, for reregister and deregister. A handle that
 * is open but no socket can never have been registered: it gets the
 * -ENOENT of any unregistered descriptor. */
static int check_open(cmio_fd fd)
{
    int rc = cmio__afd_check_socket((SOCKET)fd);
    return rc == -EPERM ? 0 : rc;
}

int cmio__sel_reregister(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest)
{
    int valid = check_open(fd);
    AcquireSRWLockExclusive(&s->lock);
    struct cmio__sock *sock = cmio__table_find(s, (SOCKET)fd);
    int rc;
    if (valid < 0) {
        /* Closed before its LOCAL_CLOSE was processed: drop it now. */
        if (sock != NULL)
            cmio__sock_kill(s, sock);
        rc = valid;
    } else if (sock == NULL) {
        rc = -ENOENT;
    } else {
        /* On failure the old registration stays in force (see
         * cmio__sock_set). */
        rc = cmio__sock_set(s, sock, t, interest);
        if (rc == -EBADF)
            cmio__sock_kill(s, sock);
        hand_to_waiter(s);
    }
    ReleaseSRWLockExclusive(&s->lock);
    return rc;
}

int cmio__sel_deregister(struct cmio__sel *s, cmio_fd fd)
{
    int valid = check_open(fd);
    AcquireSRWLockExclusive(&s->lock);
    struct cmio__sock *sock = cmio__table_find(s, (SOCKET)fd);
    if (sock != NULL)
        cmio__sock_kill(s, sock);
    ReleaseSRWLockExclusive(&s->lock);
    if (valid < 0)
        return valid;
    return sock != NULL ? 0 : -ENOENT;
}

/* Never fails: a request the kernel refuses stays queued with the new
 * `armed` and is issued by a later retry (cmio__sock_update), and rearm has
 * no error to report that with anyway. */
int cmio__sel_rearm(struct cmio__sel *s, cmio_fd fd, unsigned directions)
{
    AcquireSRWLockExclusive(&s->lock);
    struct cmio__sock *sock = cmio__table_find(s, (SOCKET)fd);
    if (sock != NULL) {
        int rc = cmio__sock_rearm(s, sock, directions);
        if (rc == -EBADF) {
            /* Closed under us: as good as not registered, which rearm
             * ignores. */
            cmio__sock_kill(s, sock);
        }
        hand_to_waiter(s);
    }
    ReleaseSRWLockExclusive(&s->lock);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Wakers                                                                   */
/* ------------------------------------------------------------------------ */

int cmio__sel_waker_new(struct cmio__sel *s, cmio_token t, struct cmio__wk **out)
{
    struct cmio__wk *w = cmio__calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    cmio__atomic_store(&w->posted, 0);
    w->token = t;
    w->port = s->port;
    *out = w;
    return 0;
}

int cmio__sel_waker_wake(struct cmio__wk *w)
{
    if (cmio__atomic_exchange(&w->posted, 1) != 0)
        return 0; /* a packet is already queued: wakes coalesce */
    if (!PostQueuedCompletionStatus(w->port, 0, CMIO__KEY_WAKER, (OVERLAPPED *)(void *)w)) {
        int rc = cmio__win_error(GetLastError());
        cmio__atomic_store(&w->posted, 0);
        return rc;
    }
    return 0;
}

void cmio__sel_waker_free(struct cmio__sel *s, struct cmio__wk *w)
{
    AcquireSRWLockExclusive(&s->lock);
    if (cmio__atomic_load(&w->posted)) {
        /* Its packet is still to be dequeued and points at it. */
        w->dead = 1;
        w->next = s->dead_wakers;
        s->dead_wakers = w;
    } else {
        cmio__free(w);
    }
    ReleaseSRWLockExclusive(&s->lock);
}

static int feed_waker(struct cmio__sel *s, struct cmio__wk *w, cmio_event *out)
{
    if (w->dead) {
        free_dead_waker(s, w);
        return 0;
    }
    /* Cleared before the event is handed out: a wake from now on posts a
     * new packet and is reported by a later wait. */
    cmio__atomic_store(&w->posted, 0);
    out->cmio__token = w->token;
    out->cmio__flags = CMIO__EV_IN;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Issues the requests of every socket queued since the last wait. Returns
 * whether the kernel refused some: those sockets are queued again (by
 * cmio__sock_update) for a retry after a short wait.
 */
static int flush_updates(struct cmio__sel *s)
{
    struct cmio__link todo;
    cmio__list_take(&s->updates, &todo);
    while (!cmio__list_empty(&todo)) {
        struct cmio__sock *sock = CMIO__CONTAINER(todo.next, struct cmio__sock, update);
        cmio__queue_remove(sock);
        if (cmio__sock_update(s, sock) == -EBADF)
            cmio__sock_kill(s, sock); /* closed: LOCAL_CLOSE would say the same */
    }
    return !cmio__list_empty(&s->updates);
}

/* Reports the wakers process_watchers could not put back on the port, in
 * the room left after the batch's events. */
static int report_held(struct cmio__sel *s, cmio_event *out, size_t room)
{
    size_t count = 0;
    while (s->held_wakers != NULL && count < room) {
        struct cmio__wk *w = s->held_wakers;
        s->held_wakers = w->held;
        w->held = NULL;
        count += (size_t)feed_waker(s, w, &out[count]);
    }
    return (int)count;
}

/* Translates n packets received into buf into events, in place. */
static int feed(struct cmio__sel *s, void *buf, ULONG n)
{
    OVERLAPPED_ENTRY *entries = buf;
    cmio_event *events = buf;
    int count = 0;
    /* Watchers first: a socket closed without deregistering may have an
     * answer from before its close in the same batch, and must not be
     * reported after the caller closed it. Their entries are then spent
     * (the socket may be freed), so they are turned into nudges. */
    for (ULONG i = 0; i < n; i++) {
        struct cmio__op *op = (struct cmio__op *)(void *)entries[i].lpOverlapped;
        ULONG_PTR kind = entries[i].lpCompletionKey & CMIO__KEY_KIND;
        if (kind == CMIO__KEY_AFD && cmio__op_is_watcher(op)) {
            cmio__sock_feed(s, op, NULL);
            entries[i].lpCompletionKey = CMIO__KEY_NUDGE;
        }
    }
    for (ULONG i = 0; i < n; i++) {
        OVERLAPPED_ENTRY e = entries[i];
        switch (e.lpCompletionKey & CMIO__KEY_KIND) {
        case CMIO__KEY_AFD:
            count += cmio__sock_feed(s, (struct cmio__op *)(void *)e.lpOverlapped, &events[count]);
            break;
        case CMIO__KEY_WAKER:
            count += feed_waker(s, (struct cmio__wk *)(void *)e.lpOverlapped, &events[count]);
            break;
        default:
            break; /* a nudge: it has done its job by ending the wait */
        }
    }
    return count;
}

int cmio__sel_wait(struct cmio__sel *s, cmio_events *events, int64_t timeout_ns)
{
    int64_t deadline = 0;
    if (timeout_ns > 0) {
        int64_t now = now_ns();
        deadline = timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
    }
    ULONG cap = (ULONG)events->cmio__cap;
    events->cmio__len = 0;
    DWORD retry_ms = RETRY_FIRST_MS;
    /* With a zero timeout, a few rounds let re-issued requests that are
     * satisfied at once be reported; more would only spin. */
    for (int round = 0;; round++) {
        AcquireSRWLockExclusive(&s->lock);
        int retry = flush_updates(s);
        int held = s->held_wakers != NULL;
        s->polling = 1;
        s->rescan = retry || held;
        ReleaseSRWLockExclusive(&s->lock);

        DWORD ms = timeout_ns < 0 ? INFINITE : timeout_ns == 0 ? 0 : ms_until(deadline);
        if (held) {
            ms = 0; /* wakes to report already: just collect what else is due */
        } else if (!retry) {
            retry_ms = RETRY_FIRST_MS;
        } else if (ms > retry_ms) {
            ms = retry_ms;
            retry_ms = retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry_ms * 2;
        }
        ULONG n = 0;
        OVERLAPPED_ENTRY *entries = (OVERLAPPED_ENTRY *)(void *)events->cmio__buf;
        BOOL ok = GetQueuedCompletionStatusEx(s->port, entries, cap, &n, ms, FALSE);
        DWORD err = ok ? 0 : GetLastError();
        if (!ok)
            n = 0;

        AcquireSRWLockExclusive(&s->lock);
        s->polling = 0;
        s->rescan = 0;
        int count = ok ? feed(s, entries, n) : 0;
        count += report_held(s, &events->cmio__buf[count], cap - (size_t)count);
        s->batches++;
        ReleaseSRWLockExclusive(&s->lock);
        WakeAllConditionVariable(&s->batch);

        if (!ok && err != WAIT_TIMEOUT && ms > 0) {
            /* Only a port that is gone fails otherwise, which the core
             * rules out; cmio_poll_wait has no error for it, so it is
             * waited out like a refused request, without spinning. */
            Sleep(ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS);
        }
        if (count > 0) {
            events->cmio__len = (size_t)count;
            return count;
        }
        if (timeout_ns == 0 && (n == 0 || round >= 4))
            return 0;
        if (timeout_ns > 0 && now_ns() >= deadline)
            return 0;
    }
}
