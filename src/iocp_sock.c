/*
 * iocp_sock.c: the poll requests of one registered socket.
 *
 * AFD has no edge mode and no persistent interest: a poll request completes
 * once, as soon as any condition it asks about holds (at once if one already
 * does), and must then be issued again. Each socket therefore owns two
 * requests:
 *
 *   ev  asks about the directions that may be reported now (`armed`). A
 *       level registration re-issues it before every wait, so a source that
 *       stays ready is reported each time, and one drained between waits is
 *       not. An edge registration drops a direction from `armed` when it is
 *       reported and gets it back from cmio_registry_rearm, after the caller
 *       hit would-block: the new request then completes at once if the
 *       source became ready in between, so no event is lost, and a drained
 *       source is not asked about, so nothing spins. A oneshot registration
 *       empties `armed` until it is registered again.
 *   lc  asks only for AFD_POLL_LOCAL_CLOSE and stays pending for the life of
 *       the registration, so that a socket closed without deregistering is
 *       noticed even while ev is idle (between waits in level mode, or with
 *       nothing armed). See make_room in iocp.c for why that matters.
 *
 * A request that is no longer wanted is cancelled, never abandoned: its
 * buffers belong to the kernel until its packet is dequeued, so a socket is
 * freed only when neither request is busy (or at teardown, after draining).
 * A cancelled request's answer is dropped and the socket queued to be polled
 * afresh, which is also how a changed interest reaches the kernel.
 *
 * AFD conditions map onto the event flags the way Linux reports the same
 * socket states: DISCONNECT (the peer's FIN) is readable and read-closed;
 * ABORT (a reset) and CONNECT_FAIL are readable, writable, error and both
 * closed, as epoll's EPOLLIN|EPOLLOUT|EPOLLERR|EPOLLHUP. A local
 * shutdown(SD_SEND) has no AFD condition, so write-closed is only ever set
 * together with an error.
 */
#include <errno.h>

#include "iocp.h"

/* What to ask AFD for each direction. */
#define AFD_FOR_READ                                                                               \
    (CMIO__AFD_RECEIVE | CMIO__AFD_ACCEPT | CMIO__AFD_DISCONNECT | CMIO__AFD_ABORT                 \
     | CMIO__AFD_CONNECT_FAIL)
#define AFD_FOR_WRITE (CMIO__AFD_SEND | CMIO__AFD_ABORT | CMIO__AFD_CONNECT_FAIL)
#define AFD_FOR_PRIORITY CMIO__AFD_RECEIVE_EXPEDITED

#define EV_DIRECTIONS (CMIO__EV_IN | CMIO__EV_OUT | CMIO__EV_PRI)
#define EV_BROKEN (CMIO__EV_IN | CMIO__EV_OUT | CMIO__EV_ERR | CMIO__EV_RCLOSED | CMIO__EV_WCLOSED)
/* A request that failed says nothing about the connection: let the
 * caller's next operation find out. */
#define EV_FAILED (CMIO__EV_IN | CMIO__EV_OUT | CMIO__EV_ERR)

static ULONG afd_events(unsigned directions)
{
    ULONG e = 0;
    if (directions & CMIO_READABLE)
        e |= AFD_FOR_READ;
    if (directions & CMIO_WRITABLE)
        e |= AFD_FOR_WRITE;
    if (directions & CMIO_PRIORITY)
        e |= AFD_FOR_PRIORITY;
    return e != 0 ? e | CMIO__AFD_LOCAL_CLOSE : 0;
}

static uint32_t event_flags(ULONG afd)
{
    uint32_t f = 0;
    if (afd & (CMIO__AFD_RECEIVE | CMIO__AFD_ACCEPT))
        f |= CMIO__EV_IN;
    if (afd & CMIO__AFD_RECEIVE_EXPEDITED)
        f |= CMIO__EV_PRI;
    if (afd & CMIO__AFD_SEND)
        f |= CMIO__EV_OUT;
    if (afd & CMIO__AFD_DISCONNECT)
        f |= CMIO__EV_IN | CMIO__EV_RCLOSED;
    if (afd & (CMIO__AFD_ABORT | CMIO__AFD_CONNECT_FAIL))
        f |= EV_BROKEN;
    return f;
}

static uint32_t flags_of_directions(unsigned directions)
{
    return ((directions & CMIO_READABLE) ? CMIO__EV_IN : 0)
           | ((directions & CMIO_WRITABLE) ? CMIO__EV_OUT : 0)
           | ((directions & CMIO_PRIORITY) ? CMIO__EV_PRI : 0);
}

static unsigned directions_of_flags(uint32_t f)
{
    return ((f & CMIO__EV_IN) ? CMIO_READABLE : 0u) | ((f & CMIO__EV_OUT) ? CMIO_WRITABLE : 0u)
           | ((f & CMIO__EV_PRI) ? CMIO_PRIORITY : 0u);
}

static int start(struct cmio__sel *s, struct cmio__op *op, ULONG events)
{
    struct cmio__sock *sock = op->sock;
    if (cmio__iocp_failing(CMIO__FAIL_AFD_POLL))
        return -ENOMEM;
    int rc = cmio__afd_poll(sock->group->afd, &op->poll, sock->base, events, op);
    if (rc < 0)
        return rc;
    op->busy = 1;
    op->cancelled = 0;
    op->events = events;
    s->busy_ops++;
    return 0;
}

static void cancel(struct cmio__op *op)
{
    if (op->busy && !op->cancelled) {
        op->cancelled = 1;
        cmio__afd_cancel(op->sock->group->afd, &op->poll);
    }
}

void cmio__sock_cancel_all(struct cmio__sock *sock)
{
    cancel(&sock->ev);
    cancel(&sock->lc);
}

/* Frees a dead socket once the kernel holds none of its buffers. */
static void release_if_idle(struct cmio__sock *sock)
{
    if (sock->ev.busy || sock->lc.busy)
        return;
    cmio__list_remove(&sock->all);
    cmio__group_release(sock->group);
    cmio__free(sock);
}

int cmio__sock_new(struct cmio__sel *s, SOCKET fd, SOCKET base, cmio_token t, unsigned interest)
{
    struct cmio__sock *sock = cmio__calloc(1, sizeof(*sock));
    if (sock == NULL)
        return -ENOMEM;
    int rc = cmio__group_acquire(s, &sock->group);
    if (rc < 0) {
        cmio__free(sock);
        return rc;
    }
    sock->fd = fd;
    sock->base = base;
    sock->ev.sock = sock;
    sock->lc.sock = sock;
    cmio__list_push(&s->socks, &sock->all);
    rc = start(s, &sock->lc, CMIO__AFD_LOCAL_CLOSE);
    if (rc < 0) {
        sock->dead = 1;
        release_if_idle(sock);
        return rc;
    }
    cmio__table_add(s, sock);
    rc = cmio__sock_set(s, sock, t, interest);
    if (rc < 0)
        cmio__sock_kill(s, sock);
    return rc;
}

/*
 * Registers anew. A call that fails changes nothing, as a failed
 * EPOLL_CTL_MOD leaves the old registration in force (register and
 * reregister may fail with -ENOMEM; rearm, which may not, keeps its change
 * queued instead). cmio__sock_update fails only before it has cancelled
 * anything (an idle lc refused, or an idle ev refused: a busy ev is kept or
 * cancelled, never refused), so the kernel still does what the old state
 * asked and restoring the fields is all there is to undo. The socket may
 * stay queued; the re-poll then issues what the old state wants, which it
 * was queued for anyway if that is anything (an idle ev with something
 * armed always is).
 */
int cmio__sock_set(struct cmio__sel *s, struct cmio__sock *sock, cmio_token t, unsigned interest)
{
    cmio_token old_token = sock->token;
    unsigned old_interest = sock->interest, old_armed = sock->armed;
    sock->token = t;
    sock->interest = interest;
    /* Registering anew resets every edge and re-enables a fired oneshot. */
    sock->armed = interest & CMIO__DIRECTIONS;
    int rc = cmio__sock_update(s, sock);
    if (rc < 0) {
        sock->token = old_token;
        sock->interest = old_interest;
        sock->armed = old_armed;
    }
    return rc;
}

int cmio__sock_rearm(struct cmio__sel *s, struct cmio__sock *sock, unsigned directions)
{
    /* Level registrations never disarm; a oneshot stays silent until it is
     * registered again, whatever the caller drained. */
    if (sock->interest & (CMIO_LEVEL | CMIO_ONESHOT))
        return 0;
    unsigned add = directions & sock->interest & ~sock->armed;
    if (add == 0)
        return 0;
    sock->armed |= add;
    return cmio__sock_update(s, sock);
}

/*
 * Brings the requests in line with `armed`. A request the kernel refuses for
 * any reason but a closed socket leaves the socket queued: the waiter tries
 * again before each wait, at a slower pace while it keeps failing (see
 * flush_updates in iocp.c), so a change is delayed, never lost. The error
 * is still returned, for callers that must report or undo it.
 */
int cmio__sock_update(struct cmio__sel *s, struct cmio__sock *sock)
{
    struct cmio__op *op = &sock->ev;
    ULONG want = afd_events(sock->armed);
    cmio__queue_remove(sock);
    if (!sock->lc.busy) {
        /* Its last answer was no news and it could not be issued again
         * then (feed_watcher). */
        int rc = start(s, &sock->lc, CMIO__AFD_LOCAL_CLOSE);
        if (rc < 0) {
            if (rc != -EBADF)
                cmio__queue_add(s, sock);
            return rc;
        }
    }
    if (op->busy) {
        if (op->cancelled) {
            /* Already being replaced: its packet queues the socket again
             * and the new request is built from `armed` then. */
        } else if ((want & ~op->events) == 0) {
            /* The pending request covers everything wanted. It may end on
             * a condition no longer wanted; feed filters that out and polls
             * again. */
        } else {
            /* It misses a wanted condition: replace it. */
            cancel(op);
        }
        return 0;
    }
    if (want == 0)
        return 0; /* nothing armed: only lc watches the socket */
    int rc = start(s, op, want);
    if (rc < 0 && rc != -EBADF)
        cmio__queue_add(s, sock);
    return rc;
}

void cmio__sock_kill(struct cmio__sel *s, struct cmio__sock *sock)
{
    if (sock->dead)
        return;
    sock->dead = 1;
    cmio__table_remove(s, sock);
    cmio__queue_remove(sock);
    cmio__sock_cancel_all(sock);
    release_if_idle(sock);
}

/* The watcher's answer. It never produces an event. */
static void feed_watcher(struct cmio__sel *s, struct cmio__sock *sock, ULONG afd, int failed)
{
    if ((afd & CMIO__AFD_LOCAL_CLOSE) || failed) {
        /* Closed without deregistering (or its handle is otherwise gone):
         * drop it so the number can be registered again. */
        cmio__sock_kill(s, sock);
        return;
    }
    /* It ended without news (cancelled because the thread that issued it
     * exited, on old Windows): watch again. */
    int rc = start(s, &sock->lc, CMIO__AFD_LOCAL_CLOSE);
    if (rc == -EBADF)
        cmio__sock_kill(s, sock);
    else if (rc < 0)
        cmio__queue_add(s, sock); /* cmio__sock_update tries again */
}

/*
 * op's packet was taken off the port by a thread that may not report it
 * (process_watchers in iocp.c) and could not be posted again. Its answer is
 * lost, so the socket is polled afresh: a condition that still holds ends
 * the new request at once and is reported then, and one that no longer holds
 * needs no event (an edge source drained since, a level one gone quiet).
 */
void cmio__sock_drop_answer(struct cmio__sel *s, struct cmio__op *op)
{
    struct cmio__sock *sock = op->sock;
    op->busy = 0;
    op->cancelled = 0;
    s->busy_ops--;
    if (sock->dead)
        release_if_idle(sock);
    else
        cmio__queue_add(s, sock);
}

int cmio__sock_feed(struct cmio__sel *s, struct cmio__op *op, cmio_event *out)
{
    struct cmio__sock *sock = op->sock;
    int failed;
    ULONG afd = cmio__afd_result(&op->poll, &failed);
    int stale = op->cancelled;
    op->busy = 0;
    op->cancelled = 0;
    s->busy_ops--;

    if (sock->dead) {
        /* Deregistered or closed earlier; this was the packet it waited
         * for before its memory could go. */
        release_if_idle(sock);
        return 0;
    }
    if (op == &sock->lc) {
        feed_watcher(s, sock, afd, failed);
        return 0;
    }
    if (afd & CMIO__AFD_LOCAL_CLOSE) {
        cmio__sock_kill(s, sock);
        return 0;
    }
    if (stale) {
        /* Replaced by a change of interest or a rearm: ask again with what
         * is wanted now; a condition that still holds is reported then. */
        cmio__queue_add(s, sock);
        return 0;
    }

    uint32_t f = failed ? EV_FAILED : event_flags(afd);
    uint32_t dirs = f & flags_of_directions(sock->armed);
    if (dirs == 0) {
        /* Nothing reportable: no news (a cancel we did not ask for, or an
         * empty answer) or only conditions of a direction no longer armed. */
        if (sock->armed != 0)
            cmio__queue_add(s, sock);
        return 0;
    }
    if (sock->interest & CMIO_ONESHOT)
        sock->armed = 0;
    else if (!(sock->interest & CMIO_LEVEL))
        sock->armed &= ~directions_of_flags(dirs);
    /* Polled again before the next wait, not now: a level source drained
     * in between must not be reported from a stale answer. */
    if (sock->armed != 0)
        cmio__queue_add(s, sock);

    out->cmio__token = sock->token;
    out->cmio__flags = dirs | (f & ~EV_DIRECTIONS);
    return 1;
}
