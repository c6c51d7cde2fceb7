/*
 * echo_server.c: a TCP echo server on cmio, written to be run, not only read.
 *
 *   echo_server [-a address] [-p port] [-t threads [-R]] [-c connections]
 *               [-b bytes] [-i seconds]          (--help gives the long forms)
 *
 * Whatever a client sends comes back to it, in order. Three layouts:
 *
 *   - One thread (the default): one cmio_poll holds the listener, every
 *     connection and the shutdown waker.
 *   - Hand-off (--threads N): N worker threads each own a cmio_poll and the
 *     connections on it. The main thread accepts and gives each connection
 *     to the least loaded worker by registering it, through a clone of that
 *     worker's registry, while the worker is blocked in cmio_poll_wait: the
 *     registration is the wake-up (see handoff() for why this is safe).
 *   - SO_REUSEPORT (--threads N --reuseport, Linux and FreeBSD): each worker
 *     has its own listener on the same port and accepts for itself; the
 *     kernel spreads incoming connections over the listeners.
 *
 * Every poll runs in edge mode (the default), and the code follows the rules
 * edge-triggered code lives by:
 *
 *   - After an event, read (or accept) until the call would block, then say
 *     so with cmio_registry_rearm: backends without native edges need it to
 *     report the next change, and on the others it costs nothing. Stopping
 *     early is allowed only if the work is resumed without waiting for an
 *     event, since no new edge will come (the run queue below).
 *   - Echoed bytes go straight back from a per-worker scratch buffer. Only
 *     what the client does not take at once waits, in a per-connection ring
 *     of at most --buffer bytes that exists only while bytes wait. WRITABLE
 *     is asked for only then. A connection whose ring is full is not read
 *     (READABLE leaves its interest): TCP flow control then slows the client
 *     down, so a client that sends and never reads costs the server one ring
 *     and one descriptor, never more, and is closed by the idle timeout.
 *   - A client that shuts down its sending side still gets the rest of its
 *     echo; the connection is closed once nothing waits. A reset or any
 *     other error closes it at once. Every socket is deregistered before it
 *     is closed.
 *   - Idle connections (no byte moved for --idle-timeout) are closed. Each
 *     worker keeps its connections in a list ordered by last activity; since
 *     they all share one timeout the oldest is always first, so the wait's
 *     timeout is the only timer and no connection needs a system call.
 *   - Running out of descriptors pauses accepting for a moment instead of
 *     spinning on a listener that stays ready (see acceptor_run).
 *   - A peer that vanished must cost an EPIPE, not the process: SIGPIPE is
 *     ignored and sends pass MSG_NOSIGNAL (SO_NOSIGPIPE where that exists).
 *   - SIGINT and SIGTERM wake the main thread through a cmio_waker, whose
 *     wake is async-signal-safe; it wakes every worker the same way, and
 *     each closes its connections and frees what it owns. The process exits
 *     0 with nothing left allocated.
 *
 * Memory is bounded by (--max-connections + RING_SPARES per worker) rings of
 * --buffer bytes, plus one scratch buffer and an events buffer per worker
 * and a small record per connection. Connections past the cap are accepted
 * and closed at once, which tells the client right away instead of leaving
 * it queued.
 *
 * The socket and thread calls are wrapped (common.h, shared with
 * echo_client.c) so that a Windows build needs only Winsock's start-up and
 * its error names; the logic is the same everywhere.
 */
#include "common.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <sys/resource.h>
#endif

/* Tokens on every poll: the shutdown waker, the listener, and for each
 * connection the address of its record, which is never 0 or 1. */
#define TOKEN_STOP ((cmio_token)0)
#define TOKEN_LISTENER ((cmio_token)1)

/* Bytes one connection may move per turn before the others get theirs. A
 * client that sends and reads as fast as the server echoes would otherwise
 * keep recv/send succeeding and hold the loop forever. */
#define TURN_BYTES ((size_t)256 * 1024)

/* Connections accepted per turn, for the same reason. */
#define ACCEPT_BATCH 64

/* How long accepting pauses after running out of descriptors. */
#define ACCEPT_PAUSE_NS ((int64_t)100 * 1000 * 1000)

/* Idle connections are closed in batches: a wait ends this long after the
 * oldest one's deadline, so connections that went quiet at about the same
 * time cost one wake-up, not one each. Never early, at most this late. */
#define IDLE_SLACK_NS ((int64_t)10 * 1000 * 1000)

/* The direct echo path reads at most this much at a time (and at most
 * --buffer), so that whatever the client does not take fits in a ring. */
#define SCRATCH_BYTES ((size_t)64 * 1024)

/* Rings a worker keeps for reuse instead of returning them to malloc. */
#define RING_SPARES 8

#define EVENTS_CAPACITY 256
#define MAX_THREADS 256

/* ------------------------------------------------------------------------ */
/* Server state                                                             */
/* ------------------------------------------------------------------------ */

/* A worker's two lists of connections, each threaded through links in the
 * connections themselves: the run queue (connections with work left from
 * their last turn) and every connection, least recently active first. */
enum list { RUNQ, LRU, LISTS };

/*
 * A connection. Once a worker has adopted it, only that worker's thread
 * touches it, so nothing in it is locked.
 */
struct conn {
    cmio_fd fd;
    unsigned char *ring;           /* unsent bytes; NULL while none wait */
    size_t head;                   /* ring offset of the first unsent byte */
    size_t len;                    /* unsent bytes */
    unsigned interest;             /* what is registered now */
    bool may_read;                 /* no would-block from recv since the last event */
    bool may_write;                /* no would-block from send since the last event */
    bool peer_done;                /* recv gave 0: the client sends nothing more */
    bool queued;                   /* on the run queue */
    bool closed;                   /* waiting to be freed at the end of the batch */
    int64_t last_active;           /* when a byte last moved */
    struct conn *prev[LISTS], *next[LISTS]; /* in the worker's lists */
    struct conn *link;             /* in the hand-off inbox, then in the graveyard */
};

/* A listener and the state of accepting on it. */
struct acceptor {
    cmio_fd fd;             /* CMIO_INVALID_FD: none */
    cmio_registry *reg;     /* of the poll it is registered with */
    struct worker *owner;   /* serves what it accepts; NULL: hands off */
    bool more;              /* stopped at ACCEPT_BATCH: go on next turn */
    bool paused;            /* out of descriptors: wait until resume */
    int64_t resume;
    int64_t last_report;
    unsigned long long accepted, refused, pauses;
};

struct server;

struct worker {
    struct server *srv;
    unsigned id;
    cmio_poll *poll;
    cmio_registry *reg;     /* the poll's own, used by this worker's thread */
    cmio_registry *handoff; /* a clone, used by the accepting thread */
    cmio_events *events;
    cmio_waker *stop;
    struct acceptor acc;    /* with --reuseport, or the only thread */
    unsigned char *scratch;
    unsigned char *spare[RING_SPARES];
    size_t nspare;

    mutex_t inbox_lock;     /* guards inbox, and nothing else */
    struct conn *inbox;     /* handed over, not adopted yet */

    struct conn *head[LISTS], *tail[LISTS]; /* the run queue and the LRU list */
    struct conn *graveyard; /* closed during this batch */
    int64_t now;            /* taken once per turn */
    int status;

    size_t live; /* guarded by srv->lock */
    unsigned long long conns, closed, idle_closed, resets, errors, bytes;

    thread_t thread;
    bool started;
};

struct server {
    /* Options. */
    const char *host, *port;
    unsigned nthreads;
    bool reuseport;
    size_t max_conns;
    size_t limit;    /* ring size, --buffer */
    int64_t idle_ns; /* 0: never */

    struct worker *workers;

    /* The main thread's poll when workers run in threads: the stop waker,
     * and the listener in the hand-off layout. */
    cmio_poll *poll;
    cmio_events *events;
    cmio_waker *stop;
    struct acceptor acc;

    mutex_t lock; /* guards live, peak and every worker's live */
    size_t live, peak;

    int64_t stopped_at; /* when the stop signal was seen */
    struct totals {
        unsigned long long accepted, refused, pauses, idle, resets, errors, bytes;
    } totals;
};

/* ------------------------------------------------------------------------ */
/* Lists                                                                    */
/* ------------------------------------------------------------------------ */

static void list_append(struct worker *w, enum list l, struct conn *c)
{
    c->next[l] = NULL;
    c->prev[l] = w->tail[l];
    if (w->tail[l] != NULL)
        w->tail[l]->next[l] = c;
    else
        w->head[l] = c;
    w->tail[l] = c;
}

static void list_remove(struct worker *w, enum list l, struct conn *c)
{
    if (c->prev[l] != NULL)
        c->prev[l]->next[l] = c->next[l];
    else
        w->head[l] = c->next[l];
    if (c->next[l] != NULL)
        c->next[l]->prev[l] = c->prev[l];
    else
        w->tail[l] = c->prev[l];
    c->prev[l] = c->next[l] = NULL;
}

static void runq_push(struct worker *w, struct conn *c)
{
    if (c->queued)
        return;
    c->queued = true;
    list_append(w, RUNQ, c);
}

static void runq_remove(struct worker *w, struct conn *c)
{
    if (!c->queued)
        return;
    list_remove(w, RUNQ, c);
    c->queued = false;
}

/* Moving to the back on every activity keeps the list sorted by last
 * activity, and so by idle deadline, in O(1). */
static void conn_touch(struct worker *w, struct conn *c)
{
    c->last_active = w->now;
    if (w->tail[LRU] != c) {
        list_remove(w, LRU, c);
        list_append(w, LRU, c);
    }
}

/* ------------------------------------------------------------------------ */
/* The connection cap                                                       */
/* ------------------------------------------------------------------------ */

/*
 * Counts a new connection against the cap and picks who serves it: `owner`
 * if the listener has one, else the worker with the fewest connections (the
 * hand-off layout). NULL at the cap. Workers' tables are never looked at:
 * only these counters, under the server's lock, which one accept and one
 * close per connection take.
 */
static struct worker *server_claim(struct server *s, struct worker *owner)
{
    struct worker *w = owner;
    mutex_lock(&s->lock);
    if (s->live >= s->max_conns) {
        mutex_unlock(&s->lock);
        return NULL;
    }
    if (w == NULL) {
        w = &s->workers[0];
        for (unsigned i = 1; i < s->nthreads; i++)
            if (s->workers[i].live < w->live)
                w = &s->workers[i];
    }
    w->live++;
    if (++s->live > s->peak)
        s->peak = s->live;
    mutex_unlock(&s->lock);
    return w;
}

static void server_release(struct server *s, struct worker *w)
{
    mutex_lock(&s->lock);
    w->live--;
    s->live--;
    mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

static unsigned char *ring_get(struct worker *w)
{
    if (w->nspare > 0)
        return w->spare[--w->nspare];
    return malloc(w->srv->limit);
}

static void ring_put(struct worker *w, struct conn *c)
{
    if (c->ring != NULL) {
        if (w->nspare < RING_SPARES)
            w->spare[w->nspare++] = c->ring;
        else
            free(c->ring);
    }
    c->ring = NULL;
    c->head = c->len = 0;
}

/* Closes the socket at once; the record is freed at the end of the batch,
 * since a later event of the same batch may still name it. */
static void conn_close(struct worker *w, struct conn *c)
{
    int rc = cmio_registry_deregister(w->reg, c->fd);
    if (rc < 0)
        log_msg("deregister: %s", cmio_strerror(rc));
    sock_close(c->fd);
    c->fd = CMIO_INVALID_FD;
    ring_put(w, c);
    runq_remove(w, c);
    list_remove(w, LRU, c);
    c->closed = true;
    c->link = w->graveyard;
    w->graveyard = c;
    w->closed++;
    server_release(w->srv, w);
}

static void worker_bury(struct worker *w)
{
    while (w->graveyard != NULL) {
        struct conn *c = w->graveyard;
        w->graveyard = c->link;
        free(c);
    }
}

/* Outcome of one recv or send. */
enum io_result { IO_MOVED, IO_BLOCKED, IO_EOF, IO_FAILED };

static enum io_result io_failed(struct worker *w, int err)
{
    /* EPIPE, ECONNRESET, ETIMEDOUT, ...: the client is gone. */
    if (SOCK_RESET(err))
        w->resets++;
    else
        w->errors++;
    return IO_FAILED;
}

/* Sends the first contiguous run of unsent bytes. */
static enum io_result conn_send(struct worker *w, struct conn *c, size_t *moved)
{
    size_t limit = w->srv->limit;
    size_t run = limit - c->head < c->len ? limit - c->head : c->len;
    int err;
    long n = sock_send(c->fd, c->ring + c->head, run, &err);
    if (n < 0) {
        if (SOCK_WOULDBLOCK(err)) {
            c->may_write = false;
            cmio_registry_rearm(w->reg, c->fd, CMIO_WRITABLE);
            return IO_BLOCKED;
        }
        return io_failed(w, err);
    }
    c->head = (c->head + (size_t)n) % limit;
    c->len -= (size_t)n;
    if (c->len == 0)
        ring_put(w, c); /* a caught-up connection holds no buffer */
    *moved += (size_t)n;
    w->bytes += (unsigned long long)n;
    return IO_MOVED;
}

/*
 * The common case: nothing waits to be sent, so what arrives can go straight
 * back from the worker's scratch buffer. Only the part the client does not
 * take at once is copied into a ring (at most --buffer bytes, since no more
 * is read at a time).
 */
static enum io_result conn_echo_direct(struct worker *w, struct conn *c, size_t *moved)
{
    size_t want = w->srv->limit < SCRATCH_BYTES ? w->srv->limit : SCRATCH_BYTES;
    int err;
    long n = sock_recv(c->fd, w->scratch, want, &err);
    if (n < 0) {
        if (SOCK_WOULDBLOCK(err)) {
            c->may_read = false;
            cmio_registry_rearm(w->reg, c->fd, CMIO_READABLE);
            return IO_BLOCKED;
        }
        return io_failed(w, err);
    }
    if (n == 0)
        return IO_EOF;
    size_t got = (size_t)n, sent = 0;
    *moved += got;
    while (sent < got) {
        n = sock_send(c->fd, w->scratch + sent, got - sent, &err);
        if (n < 0) {
            if (!SOCK_WOULDBLOCK(err))
                return io_failed(w, err);
            c->may_write = false;
            cmio_registry_rearm(w->reg, c->fd, CMIO_WRITABLE);
            break;
        }
        sent += (size_t)n;
    }
    *moved += sent;
    w->bytes += sent;
    if (sent < got) {
        if (c->ring == NULL)
            c->ring = ring_get(w);
        if (c->ring == NULL) {
            log_msg("out of memory for a %zu-byte buffer: closing the connection", w->srv->limit);
            w->errors++;
            return IO_FAILED;
        }
        memcpy(c->ring, w->scratch + sent, got - sent);
        c->head = 0;
        c->len = got - sent;
    }
    return IO_MOVED;
}

/* Receives behind the bytes that wait, into the ring's first free run. */
static enum io_result conn_recv(struct worker *w, struct conn *c, size_t *moved)
{
    if (c->len == 0 && c->may_write)
        return conn_echo_direct(w, c, moved);
    size_t limit = w->srv->limit;
    if (c->ring == NULL) {
        c->ring = ring_get(w);
        if (c->ring == NULL) {
            log_msg("out of memory for a %zu-byte buffer: closing the connection", limit);
            w->errors++;
            return IO_FAILED;
        }
    }
    /* Never full here, and head is 0 whenever the ring is empty. */
    size_t tail = (c->head + c->len) % limit;
    size_t room = tail >= c->head ? limit - tail : c->head - tail;
    int err;
    long n = sock_recv(c->fd, c->ring + tail, room, &err);
    if (n < 0) {
        if (SOCK_WOULDBLOCK(err)) {
            c->may_read = false;
            cmio_registry_rearm(w->reg, c->fd, CMIO_READABLE);
            if (c->len == 0)
                ring_put(w, c);
            return IO_BLOCKED;
        }
        return io_failed(w, err);
    }
    if (n == 0) {
        if (c->len == 0)
            ring_put(w, c);
        return IO_EOF;
    }
    c->len += (size_t)n;
    *moved += (size_t)n;
    return IO_MOVED;
}

/* Registers what the connection needs now: READABLE while the client may
 * send and the ring has room, WRITABLE while unsent bytes wait. */
static int conn_update_interest(struct worker *w, struct conn *c)
{
    unsigned want = 0;
    if (!c->peer_done && c->len < w->srv->limit)
        want |= CMIO_READABLE;
    if (c->len > 0)
        want |= CMIO_WRITABLE;
    if (want == c->interest)
        return 0;
    int rc = cmio_registry_reregister(w->reg, c->fd, (cmio_token)(uintptr_t)c, want);
    if (rc < 0) {
        log_msg("reregister: %s", cmio_strerror(rc));
        w->errors++;
        return rc;
    }
    c->interest = want;
    return 0;
}

/*
 * Moves bytes until neither direction can make progress: recv has would-
 * blocked (or the ring is full, or the client is done) and send has would-
 * blocked (or nothing is left to send). Sending first makes room before
 * reading. Closes the connection when it is finished or broken.
 */
static void conn_run(struct worker *w, struct conn *c)
{
    size_t moved = 0;
    runq_remove(w, c);
    for (;;) {
        bool progress = false;
        if (c->len > 0 && c->may_write) {
            enum io_result r = conn_send(w, c, &moved);
            if (r == IO_FAILED) {
                conn_close(w, c);
                return;
            }
            progress |= r == IO_MOVED;
        }
        if (!c->peer_done && c->len < w->srv->limit && c->may_read) {
            enum io_result r = conn_recv(w, c, &moved);
            if (r == IO_FAILED) {
                conn_close(w, c);
                return;
            }
            if (r == IO_EOF)
                c->peer_done = true;
            progress |= r != IO_BLOCKED;
        }
        if (!progress)
            break;
        if (moved >= TURN_BYTES) {
            runq_push(w, c);
            break;
        }
    }
    if (moved > 0)
        conn_touch(w, c);
    /* A half-closed client has had its whole echo: nothing more can come. */
    if (c->peer_done && c->len == 0) {
        conn_close(w, c);
        return;
    }
    if (conn_update_interest(w, c) < 0)
        conn_close(w, c);
}

static void runq_run(struct worker *w)
{
    /* Only the connections queued now: one that uses up its turn again goes
     * to the back and waits for the next round, after a non-blocking wait
     * has let everyone else in. */
    struct conn *last = w->tail[RUNQ];
    while (w->head[RUNQ] != NULL) {
        struct conn *c = w->head[RUNQ];
        bool was_last = c == last;
        conn_run(w, c); /* takes c off the queue first */
        if (was_last)
            break;
    }
}

/* Closes the connections whose last byte moved --idle-timeout ago or more:
 * the oldest are first in the list. */
static void worker_expire(struct worker *w)
{
    int64_t idle = w->srv->idle_ns;
    if (idle == 0)
        return;
    while (w->head[LRU] != NULL && w->now - w->head[LRU]->last_active >= idle) {
        conn_close(w, w->head[LRU]);
        w->idle_closed++;
    }
}

/* ------------------------------------------------------------------------ */
/* Handing connections over                                                 */
/* ------------------------------------------------------------------------ */

static struct conn *conn_new(cmio_fd fd, unsigned interest)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->interest = interest;
    c->may_read = c->may_write = true;
    return c;
}

/* A worker starts serving a connection it owns from now on. */
static void worker_adopt(struct worker *w, struct conn *c)
{
    c->last_active = w->now;
    list_append(w, LRU, c);
    w->conns++;
}

/* A connection accepted on the worker's own listener. */
static int worker_accept_local(struct worker *w, cmio_fd fd)
{
    struct conn *c = conn_new(fd, CMIO_READABLE);
    if (c == NULL)
        return -ENOMEM;
    /* Data that arrived with the connection is reported by the next wait:
     * register reports a source that is ready already. */
    int rc = cmio_registry_register(w->reg, fd, (cmio_token)(uintptr_t)c, CMIO_READABLE);
    if (rc < 0) {
        free(c);
        return rc;
    }
    worker_adopt(w, c);
    return 0;
}

/*
 * Gives a connection to worker w while w's thread may be blocked in
 * cmio_poll_wait: the capability registry clones exist for.
 *
 * The accepting thread allocates and fills the record, then, holding w's
 * inbox lock, registers the socket through w's registry clone with the
 * record's address as the token, and pushes the record onto w's inbox.
 * After every wait, before it looks at the events, w takes the whole inbox
 * under the same lock (worker_take_inbox). That ordering is what makes it
 * safe:
 *
 *   - An event with the new token can only come from a wait that returned
 *     after the registration, and the registration and the push happened
 *     under one hold of the lock. So when w takes the lock after that wait,
 *     the record is in the inbox: no event names a record w has not
 *     adopted. And the lock orders this thread's writes to the record
 *     before w's reads of it. The kernel's queue orders them too, but that
 *     ordering is invisible to the C memory model and to ThreadSanitizer;
 *     the lock makes it explicit, at the cost of one uncontended lock per
 *     wait.
 *   - Registering inside the lock makes "register, then publish" one step:
 *     if the register fails, w never saw the record and this thread frees
 *     it, so there is no half-handed-over state to tell w about.
 *   - From the push on, the record is w's alone. This thread never reads it
 *     again, and never touches w's table of connections or its lists.
 *   - The interest is READABLE | WRITABLE: a new socket is writable at once,
 *     so the registration itself wakes w (no waker, no extra system call),
 *     even for a client that never sends. w narrows the interest to what
 *     the connection needs on its first turn.
 *
 * Records live until w closes them, then until the end of that batch, and
 * w's thread frees them; the address stays unique among w's registrations
 * for as long as it is a token.
 */
static int handoff(struct worker *w, cmio_fd fd)
{
    unsigned interest = CMIO_READABLE | CMIO_WRITABLE;
    struct conn *c = conn_new(fd, interest);
    if (c == NULL)
        return -ENOMEM;
    mutex_lock(&w->inbox_lock);
    int rc = cmio_registry_register(w->handoff, fd, (cmio_token)(uintptr_t)c, interest);
    if (rc == 0) {
        c->link = w->inbox;
        w->inbox = c;
    }
    mutex_unlock(&w->inbox_lock);
    if (rc < 0)
        free(c);
    return rc;
}

static void worker_take_inbox(struct worker *w)
{
    mutex_lock(&w->inbox_lock);
    struct conn *list = w->inbox;
    w->inbox = NULL;
    mutex_unlock(&w->inbox_lock);
    while (list != NULL) {
        struct conn *c = list;
        list = c->link;
        c->link = NULL;
        worker_adopt(w, c);
    }
}

/* ------------------------------------------------------------------------ */
/* Accepting                                                                */
/* ------------------------------------------------------------------------ */

static void accept_pause(struct acceptor *a, int err)
{
    int64_t now = now_ns();
    a->paused = true;
    a->resume = now + ACCEPT_PAUSE_NS;
    a->pauses++;
    /* Once a second at most: a long shortage must not flood the log. */
    if (a->last_report == 0 || now - a->last_report >= 1000000000) {
        a->last_report = now;
        log_msg("accept: %s; pausing accepts for %d ms", sock_strerror(err),
                (int)(ACCEPT_PAUSE_NS / 1000000));
    }
}

/*
 * Accepts until accept() would block, ACCEPT_BATCH connections were taken,
 * or descriptors ran out.
 *
 * Out of descriptors (EMFILE, ENFILE) the listener stays readable and every
 * accept() fails at once, so retrying now would spin. The two usual cures:
 * keep a spare descriptor and, when the limit is hit, close it, accept and
 * close the waiting clients, and reopen it (libuv); or stop accepting for a
 * short while (nginx, Go's net/http). This server pauses for 100 ms. Waiting
 * clients then stay queued in the kernel's backlog and are served as soon as
 * other connections close, so a transient shortage costs nobody their
 * connection; the same path covers ENOBUFS and ENOMEM, where a spare
 * descriptor would not help, and a system-wide ENFILE, where the reopened
 * spare could be lost to another process. The price is at most ten failed
 * accept() calls a second while the shortage lasts. Listener events that
 * arrive during the pause are ignored; the wait's timeout resumes accepting.
 */
static void acceptor_run(struct server *s, struct acceptor *a)
{
    a->more = false;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        cmio_fd fd = sock_accept(a->fd);
        if (fd == CMIO_INVALID_FD) {
            int err = sock_error();
            if (SOCK_INTR(err))
                continue;
            if (SOCK_WOULDBLOCK(err)) {
                cmio_registry_rearm(a->reg, a->fd, CMIO_READABLE);
                return;
            }
            if (SOCK_NO_DESCRIPTORS(err)) {
                accept_pause(a, err);
                return;
            }
            /* ECONNABORTED, and on Linux the pending network errors of the
             * new connection (EPROTO, ENETDOWN, EHOSTUNREACH, ...): that
             * client's problem, not the listener's. */
            continue;
        }
        a->accepted++;
        struct worker *w = server_claim(s, a->owner);
        if (w == NULL) {
            /* At the cap. Closing at once tells the client now; leaving it
             * in the backlog would stall it for as long as the server is
             * full. */
            sock_close(fd);
            a->refused++;
            continue;
        }
        sock_tune(fd);
        int rc = a->owner != NULL ? worker_accept_local(w, fd) : handoff(w, fd);
        if (rc < 0) {
            log_msg("register: %s", cmio_strerror(rc));
            server_release(s, w);
            sock_close(fd);
            a->refused++;
        }
    }
    a->more = true;
}

/* The wait's timeout for a loop that accepts on `a` (if it has a listener):
 * zero while accepting is unfinished, the end of a pause otherwise. */
static int64_t acceptor_timeout(const struct acceptor *a, int64_t now)
{
    if (a->fd == CMIO_INVALID_FD)
        return -1;
    if (a->more)
        return 0;
    if (a->paused)
        return a->resume > now ? a->resume - now : 0;
    return -1;
}

/* Handles a listener event, or the end of a pause, and accepts. */
static void acceptor_poll(struct server *s, struct acceptor *a, bool event, int64_t now)
{
    if (a->fd == CMIO_INVALID_FD)
        return;
    if (event && !a->paused)
        a->more = true;
    if (a->paused && now >= a->resume) {
        a->paused = false;
        a->more = true;
    }
    if (a->more)
        acceptor_run(s, a);
}

/* ------------------------------------------------------------------------ */
/* A worker's loop                                                          */
/* ------------------------------------------------------------------------ */

static int64_t min_timeout(int64_t a, int64_t b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

static int64_t worker_timeout(struct worker *w)
{
    if (w->head[RUNQ] != NULL || w->acc.more)
        return 0;
    int64_t now = now_ns();
    int64_t timeout = acceptor_timeout(&w->acc, now);
    if (w->srv->idle_ns > 0 && w->head[LRU] != NULL) {
        int64_t left = w->head[LRU]->last_active + w->srv->idle_ns - now;
        timeout = min_timeout(timeout, left > 0 ? left + IDLE_SLACK_NS : 0);
    }
    return timeout;
}

/* Runs until the stop waker fires. 0, or -1 if the poll failed. */
static int worker_loop(struct worker *w)
{
    for (;;) {
        int n = cmio_poll_wait(w->poll, w->events, worker_timeout(w));
        if (n == -EINTR)
            continue; /* the handler has woken the waker if it wants us to stop */
        if (n < 0) {
            log_msg("worker %u: wait: %s", w->id, cmio_strerror(n));
            return -1;
        }
        w->now = now_ns();
        /* Before the events: any of them may name a record handed over
         * since the last wait (see handoff). */
        worker_take_inbox(w);
        bool listener = false;
        for (int i = 0; i < n; i++) {
            cmio_token t = cmio_event_token(cmio_events_get(w->events, (size_t)i));
            if (t == TOKEN_STOP)
                return 0;
            if (t == TOKEN_LISTENER) {
                listener = true;
                continue;
            }
            struct conn *c = (struct conn *)t;
            if (c->closed)
                continue; /* closed earlier in this batch */
            /* Whatever the event says, try both directions and let recv and
             * send decide: the flags beyond readable/writable are hints. */
            c->may_read = c->may_write = true;
            conn_run(w, c);
        }
        worker_expire(w);
        acceptor_poll(w->srv, &w->acc, listener, w->now);
        runq_run(w);
        worker_bury(w);
    }
}

/* Closes everything the worker serves: its connections, the ones handed to
 * it but not adopted yet, and its listener. */
static void worker_close_all(struct worker *w)
{
    worker_take_inbox(w);
    while (w->head[LRU] != NULL)
        conn_close(w, w->head[LRU]);
    worker_bury(w);
    if (w->acc.fd != CMIO_INVALID_FD) {
        cmio_registry_deregister(w->reg, w->acc.fd);
        sock_close(w->acc.fd);
        w->acc.fd = CMIO_INVALID_FD;
    }
}

static THREAD_MAIN(worker_thread)
{
    struct worker *w = arg;
    w->status = worker_loop(w);
    worker_close_all(w);
    THREAD_END;
}

static int worker_init(struct server *s, struct worker *w, unsigned id)
{
    w->srv = s;
    w->id = id;
    w->acc.fd = CMIO_INVALID_FD;
    mutex_init(&w->inbox_lock);
    w->scratch = malloc(SCRATCH_BYTES);
    if (w->scratch == NULL) {
        log_msg("out of memory");
        return -1;
    }
    int rc = cmio_poll_new(&w->poll);
    if (rc == 0)
        rc = cmio_events_new(&w->events, EVENTS_CAPACITY);
    if (rc == 0) {
        w->reg = cmio_poll_registry(w->poll);
        rc = cmio_waker_new(w->reg, TOKEN_STOP, &w->stop);
    }
    /* A clone is another handle on the same queue, for the accepting
     * thread; it costs no descriptor. */
    if (rc == 0 && s->nthreads > 1 && !s->reuseport)
        rc = cmio_registry_clone(w->reg, &w->handoff);
    if (rc < 0) {
        log_msg("cmio: %s", cmio_strerror(rc));
        return -1;
    }
    return 0;
}

/* After worker_close_all, and after the thread (if any) has ended. */
static void worker_free(struct worker *w)
{
    while (w->nspare > 0)
        free(w->spare[--w->nspare]);
    free(w->scratch);
    cmio_waker_free(w->stop);
    cmio_registry_free(w->handoff);
    cmio_events_free(w->events);
    cmio_poll_free(w->poll);
    mutex_destroy(&w->inbox_lock);
}

/* ------------------------------------------------------------------------ */
/* Signals                                                                  */
/* ------------------------------------------------------------------------ */

static cmio_waker *volatile stop_waker;

static void on_stop_signal(int sig)
{
    (void)sig;
    cmio_waker *w = stop_waker;
    if (w != NULL)
        cmio_waker_wake(w);
}

static int install_signals(cmio_waker *w)
{
    stop_waker = w;
#ifdef _WIN32
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    return 0;
#else
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop_signal;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return -1;
    return 0;
#endif
}

/* Blocks or unblocks SIGINT and SIGTERM in the calling thread. Threads
 * started while they are blocked inherit that, so the handler runs on the
 * main thread and worker waits never end with -EINTR. */
static void mask_stop_signals(bool block)
{
#ifndef _WIN32
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
#else
    (void)block;
#endif
}

/* ------------------------------------------------------------------------ */
/* Listening                                                                */
/* ------------------------------------------------------------------------ */

#if defined(SO_REUSEPORT_LB)
#define REUSEPORT_OPTION SO_REUSEPORT_LB /* FreeBSD 12+: balancing needs _LB */
#elif defined(SO_REUSEPORT) && defined(__linux__)
#define REUSEPORT_OPTION SO_REUSEPORT /* Linux 3.9+ balances with the plain option */
#endif
/* Elsewhere (macOS, OpenBSD, NetBSD) SO_REUSEPORT lets sockets share a port
 * but does not spread connections over them, and Windows has no such option:
 * --reuseport is refused there. */

/* Opens a non-blocking listener. *port_out receives the port it is bound
 * to, desc its address for humans. */
static int listen_on(const char *host, const char *port, bool reuseport, cmio_fd *out,
                     char *port_out, size_t portlen, char *desc, size_t desclen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        log_msg("%s: %s", host, gai_strerror(rc));
        return -1;
    }
    int err = 0;
    cmio_fd fd = CMIO_INVALID_FD;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = (cmio_fd)socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd == CMIO_INVALID_FD) {
            err = sock_error();
            continue;
        }
#ifndef _WIN32
        /* Restarting must not wait for the old connections' TIME_WAIT. (On
         * Windows the option means something else: stealing a port.) */
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
#endif
#ifdef REUSEPORT_OPTION
        if (reuseport && setsockopt(fd, SOL_SOCKET, REUSEPORT_OPTION, &one, sizeof(one)) < 0) {
            err = sock_error();
            sock_close(fd);
            fd = CMIO_INVALID_FD;
            continue;
        }
#else
        (void)reuseport;
#endif
        if (bind(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0
            && sock_set_nonblocking(fd) == 0)
            break;
        err = sock_error();
        sock_close(fd);
        fd = CMIO_INVALID_FD;
    }
    freeaddrinfo(res);
    if (fd == CMIO_INVALID_FD) {
        log_msg("cannot listen on %s port %s: %s", host, port, sock_strerror(err));
        return -1;
    }

    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char h[64] = "?", p[16] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0)
        getnameinfo((struct sockaddr *)&ss, sslen, h, sizeof(h), p, sizeof(p),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(port_out, portlen, "%s", p);
    snprintf(desc, desclen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
    *out = fd;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Running                                                                  */
/* ------------------------------------------------------------------------ */

/* The main thread while workers run: waits for the stop signal and, in the
 * hand-off layout, accepts. */
static int server_main_loop(struct server *s)
{
    for (;;) {
        int64_t timeout = acceptor_timeout(&s->acc, now_ns());
        int n = cmio_poll_wait(s->poll, s->events, timeout);
        if (n == -EINTR)
            continue;
        if (n < 0) {
            log_msg("wait: %s", cmio_strerror(n));
            return -1;
        }
        bool listener = false;
        for (int i = 0; i < n; i++) {
            cmio_token t = cmio_event_token(cmio_events_get(s->events, (size_t)i));
            if (t == TOKEN_STOP)
                return 0;
            if (t == TOKEN_LISTENER)
                listener = true;
        }
        acceptor_poll(s, &s->acc, listener, now_ns());
    }
}

static int server_run(struct server *s)
{
    if (s->nthreads == 1) {
        struct worker *w = &s->workers[0];
        int rc = worker_loop(w);
        s->stopped_at = now_ns();
        worker_close_all(w);
        return rc;
    }
    mask_stop_signals(true);
    unsigned started = 0;
    for (; started < s->nthreads; started++) {
        struct worker *w = &s->workers[started];
        if (thread_start(&w->thread, worker_thread, w) < 0) {
            log_msg("cannot start worker thread %u", started);
            break;
        }
        w->started = true;
    }
    mask_stop_signals(false);
    int rc = started == s->nthreads ? server_main_loop(s) : -1;
    s->stopped_at = now_ns();
    /* Accepting has stopped, so no more hand-offs: stop the workers. */
    for (unsigned i = 0; i < started; i++)
        cmio_waker_wake(s->workers[i].stop);
    for (unsigned i = 0; i < started; i++) {
        thread_join(s->workers[i].thread);
        if (s->workers[i].status < 0)
            rc = -1;
    }
    return rc;
}

static int server_init(struct server *s)
{
    char desc[96], port[16];
    s->acc.fd = CMIO_INVALID_FD;
    mutex_init(&s->lock);
    s->workers = calloc(s->nthreads, sizeof(*s->workers));
    if (s->workers == NULL) {
        log_msg("out of memory");
        return -1;
    }
    for (unsigned i = 0; i < s->nthreads; i++)
        if (worker_init(s, &s->workers[i], i) < 0)
            return -1;

    size_t fds = s->max_conns + 16 + (s->reuseport ? s->nthreads : 1);
    unsigned long long limit;
    if (!raise_fd_limit(fds, &limit))
        log_msg("the descriptor limit is %llu, below %zu connections: accepting will pause "
                "when it is reached (raise it with ulimit -n)",
                limit, fds);
    int rc = 0;
    cmio_waker *stop = s->workers[0].stop;
    if (s->nthreads > 1) {
        rc = cmio_poll_new(&s->poll);
        if (rc == 0)
            rc = cmio_events_new(&s->events, 64);
        if (rc == 0)
            rc = cmio_waker_new(cmio_poll_registry(s->poll), TOKEN_STOP, &s->stop);
        if (rc < 0) {
            log_msg("cmio: %s", cmio_strerror(rc));
            return -1;
        }
        stop = s->stop;
    }
    if (install_signals(stop) < 0) {
        log_msg("sigaction: %s", strerror(errno));
        return -1;
    }

    if (s->reuseport && s->nthreads > 1) {
        /* One listener per worker. The first one settles the port (which may
         * have been 0), the others join it. */
        const char *want = s->port;
        for (unsigned i = 0; i < s->nthreads; i++) {
            struct worker *w = &s->workers[i];
            if (listen_on(s->host, want, true, &w->acc.fd, port, sizeof(port), desc, sizeof(desc)) < 0)
                return -1;
            want = port;
            w->acc.reg = w->reg;
            w->acc.owner = w;
            rc = cmio_registry_register(w->reg, w->acc.fd, TOKEN_LISTENER, CMIO_READABLE);
            if (rc < 0)
                break;
        }
    } else {
        struct acceptor *a = s->nthreads == 1 ? &s->workers[0].acc : &s->acc;
        if (listen_on(s->host, s->port, false, &a->fd, port, sizeof(port), desc, sizeof(desc)) < 0)
            return -1;
        if (s->nthreads == 1) {
            a->reg = s->workers[0].reg;
            a->owner = &s->workers[0];
        } else {
            a->reg = cmio_poll_registry(s->poll);
        }
        rc = cmio_registry_register(a->reg, a->fd, TOKEN_LISTENER, CMIO_READABLE);
    }
    if (rc < 0) {
        log_msg("register listener: %s", cmio_strerror(rc));
        return -1;
    }

    printf("listening on %s\n", desc);
    fflush(stdout);
    char idle[32] = "none";
    if (s->idle_ns > 0)
        snprintf(idle, sizeof(idle), "%.3g s", (double)s->idle_ns / 1e9);
    char threads[96] = "one thread";
    if (s->nthreads > 1)
        snprintf(threads, sizeof(threads), "%u worker threads, %s", s->nthreads,
                 s->reuseport ? "one listener each (SO_REUSEPORT)"
                              : "an accepting thread hands connections over");
    log_msg("%s; at most %zu connections, %zu-byte buffers, idle timeout %s, backend %s", threads,
            s->max_conns, s->limit, idle, cmio_backend());
    return 0;
}

static void server_free(struct server *s)
{
    if (s->workers != NULL) {
        for (unsigned i = 0; i < s->nthreads; i++) {
            /* Threads close their own; these were never started. */
            if (!s->workers[i].started && s->workers[i].srv != NULL)
                worker_close_all(&s->workers[i]);
        }
    }
    if (s->acc.fd != CMIO_INVALID_FD) {
        cmio_registry_deregister(s->acc.reg, s->acc.fd);
        sock_close(s->acc.fd);
    }
    /* Stop signal delivery before the waker the handler uses is freed. */
    mask_stop_signals(true);
    stop_waker = NULL;
    if (s->workers != NULL) {
        for (unsigned i = 0; i < s->nthreads; i++)
            if (s->workers[i].srv != NULL)
                worker_free(&s->workers[i]);
    }
    free(s->workers);
    cmio_waker_free(s->stop);
    cmio_events_free(s->events);
    cmio_poll_free(s->poll);
    mutex_destroy(&s->lock);
}

/* Adds up the counters, before server_free frees the workers. */
static void server_tally(struct server *s)
{
    struct totals *t = &s->totals;
    t->accepted = s->acc.accepted;
    t->refused = s->acc.refused;
    t->pauses = s->acc.pauses;
    for (unsigned i = 0; s->workers != NULL && i < s->nthreads; i++) {
        const struct worker *w = &s->workers[i];
        t->accepted += w->acc.accepted;
        t->refused += w->acc.refused;
        t->pauses += w->acc.pauses;
        t->idle += w->idle_closed;
        t->resets += w->resets;
        t->errors += w->errors;
        t->bytes += w->bytes;
        if (s->nthreads > 1)
            log_msg("worker %u: %llu connections, %llu bytes echoed", i, w->conns, w->bytes);
    }
}

/* After server_free: the time from the stop signal to here covers closing
 * every connection and freeing everything. */
static void server_report(const struct server *s)
{
    const struct totals *t = &s->totals;
    char rss[48] = "";
#ifndef _WIN32
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
#ifdef __APPLE__
        double mib = (double)ru.ru_maxrss / (1024.0 * 1024.0); /* bytes there */
#else
        double mib = (double)ru.ru_maxrss / 1024.0; /* KiB on Linux and the BSDs */
#endif
        snprintf(rss, sizeof(rss), ", peak RSS %.1f MiB", mib);
    }
#endif
    log_msg("stopped in %.1f ms: %llu connections accepted, %llu refused, peak %zu at once, "
            "%llu closed idle, %llu reset by clients, %llu other errors, %llu accept pauses, "
            "%llu bytes echoed%s",
            (double)(now_ns() - s->stopped_at) / 1e6, t->accepted, t->refused, s->peak, t->idle,
            t->resets, t->errors, t->pauses, t->bytes, rss);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: echo_server [OPTION]...\n"
            "A TCP echo server on cmio: whatever a client sends comes back to it.\n"
            "\n"
            "  -a, --address=ADDRESS      address to listen on (default 127.0.0.1)\n"
            "  -p, --port=PORT            port; 0 picks a free one (default 7000)\n"
            "  -t, --threads=N            worker threads, 1 to %d (default 1); with more\n"
            "                             than one, a separate thread accepts and hands\n"
            "                             each connection to the least loaded worker\n"
            "  -R, --reuseport            with --threads: one listener per worker on the same\n"
            "                             port instead (SO_REUSEPORT; Linux, FreeBSD)\n"
            "  -c, --max-connections=N    connections served at once; more are accepted and\n"
            "                             closed at once (default 1024)\n"
            "  -b, --buffer=BYTES         per-connection limit on echo the client has not\n"
            "                             read yet; reading it stops while it is full\n"
            "                             (default 64k; suffixes k, m)\n"
            "  -i, --idle-timeout=SECONDS close connections that moved no byte for this\n"
            "                             long; 0 never does (default 60; fractions allowed)\n"
            "  -h, --help                 show this help and exit\n"
            "\n"
            "Prints \"listening on ADDRESS:PORT\" on stdout once ready. SIGINT or SIGTERM\n"
            "stops it: it closes every connection, frees everything and prints a summary\n"
            "on stderr. Exit status: 0 after such a stop, 1 on a failure, 2 on bad usage.\n",
            MAX_THREADS);
}

static bool parse_port(const char *text)
{
    size_t n = strlen(text);
    if (n == 0 || n > 5 || strspn(text, "0123456789") != n)
        return false;
    return strtol(text, NULL, 10) <= 65535;
}

/* 0 to go on, else the exit status. */
static int parse_options(int argc, char **argv, struct server *s)
{
    static const struct option longs[] = {
        {"address", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, 't'},
        {"reuseport", no_argument, NULL, 'R'},
        {"max-connections", required_argument, NULL, 'c'},
        {"buffer", required_argument, NULL, 'b'},
        {"idle-timeout", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    size_t n;
    double secs;
    while ((c = opt_next(argc, argv, "a:p:t:Rc:b:i:h", longs)) != -1) {
        switch (c) {
        case 'a':
            s->host = opt_arg;
            break;
        case 'p':
            if (!parse_port(opt_arg)) {
                log_msg("bad port '%s' (0 to 65535)", opt_arg);
                return 2;
            }
            s->port = opt_arg;
            break;
        case 't':
            if (strspn(opt_arg, "0123456789") != strlen(opt_arg) || !parse_size(opt_arg, 1, MAX_THREADS, &n)) {
                log_msg("bad thread count '%s' (1 to %d)", opt_arg, MAX_THREADS);
                return 2;
            }
            s->nthreads = (unsigned)n;
            break;
        case 'R':
            s->reuseport = true;
            break;
        case 'c':
            if (!parse_size(opt_arg, 1, 10000000, &s->max_conns)) {
                log_msg("bad connection count '%s' (1 to 10000000)", opt_arg);
                return 2;
            }
            break;
        case 'b':
            if (!parse_size(opt_arg, 1, (size_t)1 << 30, &s->limit)) {
                log_msg("bad buffer size '%s' (1 to 1g)", opt_arg);
                return 2;
            }
            break;
        case 'i':
            if (!parse_number(opt_arg, 1e7, &secs)) {
                log_msg("bad idle timeout '%s' (seconds, 0 for none)", opt_arg);
                return 2;
            }
            s->idle_ns = (int64_t)(secs * 1e9);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return try_help();
        }
    }
    if (opt_ind < argc) {
        log_msg("unexpected argument '%s'", argv[opt_ind]);
        return try_help();
    }
#ifndef REUSEPORT_OPTION
    if (s->reuseport) {
        log_msg("--reuseport: this system's SO_REUSEPORT does not spread connections over "
                "listeners; use --threads alone");
        return 2;
    }
#endif
    return -1;
}

int main(int argc, char **argv)
{
    set_program_name("echo_server");
    struct server s;
    memset(&s, 0, sizeof(s));
    s.host = "127.0.0.1";
    s.port = "7000";
    s.nthreads = 1;
    s.limit = 64 * 1024;
    s.max_conns = 1024;
    s.idle_ns = 60 * NS_PER_S;
    int status = parse_options(argc, argv, &s);
    if (status >= 0)
        return status;

    if (net_start() < 0)
        return 1;

    int rc = server_init(&s);
    if (rc == 0)
        rc = server_run(&s);
    server_tally(&s);
    server_free(&s);
    if (rc == 0)
        server_report(&s);
    net_stop();
    return rc == 0 ? 0 : 1;
}
