/*
 * echo_server.c: a TCP echo server on cmio, written as one that runs in
 * production has to be.
 *
 *   echo_server [-a address] [-p port] [-b bytes] [-c connections]
 *
 * Whatever a client sends comes back to it, in order. One thread runs one
 * cmio_poll in edge mode (the default), and the code follows the rules that
 * edge-triggered code lives by:
 *
 *   - After an event, read (or accept) until the call would block, then say
 *     so with cmio_registry_rearm: backends without native edges need it to
 *     report the next change, and on the others it costs nothing. Stopping
 *     early is allowed only if the work is resumed without waiting for an
 *     event, since no new edge will come (the run queue below).
 *   - Unsent bytes wait in a per-connection ring of at most -b bytes, and
 *     WRITABLE is asked for only while some wait. A connection whose ring is
 *     full is not read (READABLE leaves its interest): TCP flow control then
 *     slows the client down, so a client that sends without reading costs
 *     the server -b bytes and one descriptor, never more.
 *   - A client that shuts down its sending side still gets the rest of its
 *     echo; the connection is closed once the ring is empty. A reset or any
 *     other error closes it at once.
 *   - Every socket is deregistered before it is closed.
 *   - Running out of descriptors pauses accepting for a moment instead of
 *     spinning on a listener that stays ready (see server_accept).
 *   - A peer that vanished must cost an EPIPE, not the process: SIGPIPE is
 *     ignored and sends pass MSG_NOSIGNAL (SO_NOSIGPIPE where that exists).
 *   - SIGINT and SIGTERM wake the loop through a cmio_waker, whose wake is
 *     async-signal-safe; the server then closes and frees everything and
 *     exits 0.
 *
 * Memory is bounded by the connection cap (-c) times the ring size (-b);
 * rings are allocated on a connection's first read, so idle connections cost
 * only their table slot. Connections past the cap are accepted and closed at
 * once, which tells the client right away instead of leaving it queued.
 *
 * The socket calls are wrapped so that a Windows build needs only Winsock's
 * start-up and its error names; the logic is the same everywhere.
 */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* accept4, MSG_NOSIGNAL and POSIX declarations under -std=c11 */
#endif
#if defined(__MINGW32__) && !defined(__USE_MINGW_ANSI_STDIO)
#define __USE_MINGW_ANSI_STDIO 1 /* C99 printf (%zu, %llu) instead of msvcrt's */
#endif

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmio/poll.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#else
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#endif

/* Tokens: the listener, the shutdown waker, then one per table slot. */
#define TOKEN_LISTENER ((cmio_token)0)
#define TOKEN_STOP ((cmio_token)1)
#define TOKEN_CONN0 ((cmio_token)2)

/* Bytes one connection may move per turn before the others get theirs. A
 * client that sends and reads as fast as the server echoes would otherwise
 * keep recv/send succeeding and hold the loop forever. */
#define TURN_BYTES ((size_t)256 * 1024)

/* Connections accepted per turn, for the same reason. */
#define ACCEPT_BATCH 64

/* How long accepting pauses after running out of descriptors. */
#define ACCEPT_PAUSE_NS ((int64_t)100 * 1000 * 1000)

#define EVENTS_CAPACITY 256

/* ------------------------------------------------------------------------ */
/* Sockets, portably                                                        */
/* ------------------------------------------------------------------------ */

#ifdef _WIN32
#define SOCK_WOULDBLOCK(e) ((e) == WSAEWOULDBLOCK)
#define SOCK_INTR(e) ((e) == WSAEINTR)
#define SOCK_NO_DESCRIPTORS(e) ((e) == WSAEMFILE || (e) == WSAENOBUFS)
#define SEND_FLAGS 0

static int sock_error(void)
{
    return WSAGetLastError();
}

static void sock_close(cmio_fd fd)
{
    closesocket((SOCKET)fd);
}

static const char *sock_strerror(int err)
{
    static char text[32];
    snprintf(text, sizeof(text), "Winsock error %d", err);
    return text;
}

static int sock_set_nonblocking(cmio_fd fd)
{
    u_long on = 1;
    return ioctlsocket((SOCKET)fd, FIONBIO, &on) == 0 ? 0 : -1;
}

static long sock_recv(cmio_fd fd, void *buf, size_t len)
{
    return recv((SOCKET)fd, (char *)buf, len > INT32_MAX ? INT32_MAX : (int)len, 0);
}

static long sock_send(cmio_fd fd, const void *buf, size_t len)
{
    return send((SOCKET)fd, (const char *)buf, len > INT32_MAX ? INT32_MAX : (int)len, 0);
}

static cmio_fd sock_accept(cmio_fd listener)
{
    SOCKET s = accept((SOCKET)listener, NULL, NULL);
    if (s == INVALID_SOCKET)
        return CMIO_INVALID_FD;
    if (sock_set_nonblocking((cmio_fd)s) < 0) {
        int err = sock_error();
        closesocket(s);
        WSASetLastError(err);
        return CMIO_INVALID_FD;
    }
    return (cmio_fd)s;
}

static int64_t now_ns(void)
{
    return (int64_t)GetTickCount64() * 1000000;
}
#else
#define SOCK_WOULDBLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK)
#define SOCK_INTR(e) ((e) == EINTR)
/* ENOBUFS and ENOMEM are the kernel running short of socket memory: as with
 * descriptors, retrying at once cannot help. */
#define SOCK_NO_DESCRIPTORS(e) ((e) == EMFILE || (e) == ENFILE || (e) == ENOBUFS || (e) == ENOMEM)
#ifdef MSG_NOSIGNAL
#define SEND_FLAGS MSG_NOSIGNAL
#else
#define SEND_FLAGS 0 /* SO_NOSIGPIPE is set on each socket instead */
#endif

static int sock_error(void)
{
    return errno;
}

static void sock_close(cmio_fd fd)
{
    close(fd);
}

static const char *sock_strerror(int err)
{
    return strerror(err);
}

static int sock_set_nonblocking(cmio_fd fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? -1 : 0;
}

static long sock_recv(cmio_fd fd, void *buf, size_t len)
{
    return (long)recv(fd, buf, len, 0);
}

static long sock_send(cmio_fd fd, const void *buf, size_t len)
{
    return (long)send(fd, buf, len, SEND_FLAGS);
}

static cmio_fd sock_accept(cmio_fd listener)
{
#if defined(__linux__) && defined(SOCK_NONBLOCK)
    return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int fd = accept(listener, NULL, NULL);
    if (fd >= 0 && sock_set_nonblocking(fd) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#endif

/* Options every connected socket gets. Failures are harmless: the echo stays
 * correct, only latency (Nagle) or SIGPIPE safety (already ignored) suffer. */
static void sock_tune(cmio_fd fd)
{
    int one = 1;
    /* An echo is request/response: without TCP_NODELAY, Nagle's algorithm and
     * the peer's delayed ACK can hold a partial echo back for tens of ms. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof(one));
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, (const char *)&one, sizeof(one));
#endif
}

/* ------------------------------------------------------------------------ */
/* Server state                                                             */
/* ------------------------------------------------------------------------ */

struct conn {
    cmio_fd fd;               /* CMIO_INVALID_FD while the slot is free */
    unsigned char *ring;      /* unsent bytes; allocated on the first read */
    size_t head;              /* ring offset of the first unsent byte */
    size_t len;               /* unsent bytes */
    unsigned interest;        /* what is registered now */
    bool may_read;            /* no would-block from recv since the last event */
    bool may_write;           /* no would-block from send since the last event */
    bool peer_done;           /* recv gave 0: the client sends nothing more */
    bool queued;              /* on the run queue */
    struct conn *prev, *next; /* run queue links */
};

struct server {
    cmio_poll *poll;
    cmio_registry *reg;
    cmio_events *events;
    cmio_waker *stop;
    cmio_fd listener;

    size_t limit; /* ring size, -b */
    size_t max_conns;
    struct conn *conns; /* the table, indexed by token - TOKEN_CONN0 */
    size_t *free_slots; /* stack of free table indexes */
    size_t nfree;

    /* Connections that stopped because their turn ran out, not because a
     * call would block: they are run again before the next blocking wait. */
    struct conn *runq_head, *runq_tail;

    bool accept_more;         /* accepting stopped at ACCEPT_BATCH: go on */
    bool accept_paused;       /* out of descriptors: wait until accept_resume */
    int64_t accept_resume;
    int64_t last_pause_report;

    unsigned long long accepted, refused, closed, errors, pauses, bytes;
    size_t peak;
};

#if defined(__MINGW32__)
__attribute__((format(gnu_printf, 1, 2)))
#elif defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void log_msg(const char *fmt, ...)
{
    /* One write per line: stderr is unbuffered, and lines from a loaded
     * server should neither interleave nor cost three system calls. */
    char line[256] = "echo_server: ";
    size_t used = strlen(line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + used, sizeof(line) - used - 1, fmt, ap);
    va_end(ap);
    strcat(line, "\n");
    fputs(line, stderr);
}

static cmio_token conn_token(const struct server *s, const struct conn *c)
{
    return TOKEN_CONN0 + (cmio_token)(c - s->conns);
}

static size_t live_conns(const struct server *s)
{
    return s->max_conns - s->nfree;
}

/* ------------------------------------------------------------------------ */
/* Run queue                                                                */
/* ------------------------------------------------------------------------ */

static void runq_push(struct server *s, struct conn *c)
{
    if (c->queued)
        return;
    c->queued = true;
    c->next = NULL;
    c->prev = s->runq_tail;
    if (s->runq_tail != NULL)
        s->runq_tail->next = c;
    else
        s->runq_head = c;
    s->runq_tail = c;
}

static void runq_remove(struct server *s, struct conn *c)
{
    if (!c->queued)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->runq_head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        s->runq_tail = c->prev;
    c->queued = false;
    c->prev = c->next = NULL;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

static void conn_close(struct server *s, struct conn *c)
{
    int rc = cmio_registry_deregister(s->reg, c->fd);
    if (rc < 0)
        log_msg("deregister: %s", cmio_strerror(rc));
    sock_close(c->fd);
    free(c->ring);
    runq_remove(s, c);
    memset(c, 0, sizeof(*c));
    c->fd = CMIO_INVALID_FD;
    s->free_slots[s->nfree++] = (size_t)(c - s->conns);
    s->closed++;
}

/* Outcome of one recv or send. */
enum io_result { IO_MOVED, IO_BLOCKED, IO_EOF, IO_FAILED };

/* Sends the first contiguous run of unsent bytes. */
static enum io_result conn_send(struct server *s, struct conn *c, size_t *moved)
{
    size_t run = s->limit - c->head < c->len ? s->limit - c->head : c->len;
    long n;
    int err;
    do {
        n = sock_send(c->fd, c->ring + c->head, run);
        err = n < 0 ? sock_error() : 0;
    } while (n < 0 && SOCK_INTR(err));
    if (n < 0) {
        if (SOCK_WOULDBLOCK(err)) {
            c->may_write = false;
            cmio_registry_rearm(s->reg, c->fd, CMIO_WRITABLE);
            return IO_BLOCKED;
        }
        /* EPIPE, ECONNRESET, ETIMEDOUT, ...: the client is gone. */
        s->errors++;
        return IO_FAILED;
    }
    c->head = (c->head + (size_t)n) % s->limit;
    c->len -= (size_t)n;
    if (c->len == 0)
        c->head = 0; /* the next read then gets the whole ring in one run */
    *moved += (size_t)n;
    s->bytes += (unsigned long long)n;
    return IO_MOVED;
}

/* Receives into the first contiguous run of free ring space. */
static enum io_result conn_recv(struct server *s, struct conn *c, size_t *moved)
{
    if (c->ring == NULL) {
        c->ring = malloc(s->limit);
        if (c->ring == NULL) {
            log_msg("out of memory for a %zu-byte buffer: closing the connection", s->limit);
            return IO_FAILED;
        }
    }
    /* Never full here, and head is 0 whenever the ring is empty. */
    size_t tail = (c->head + c->len) % s->limit;
    size_t room = tail >= c->head ? s->limit - tail : c->head - tail;
    long n;
    int err;
    do {
        n = sock_recv(c->fd, c->ring + tail, room);
        err = n < 0 ? sock_error() : 0;
    } while (n < 0 && SOCK_INTR(err));
    if (n < 0) {
        if (SOCK_WOULDBLOCK(err)) {
            c->may_read = false;
            cmio_registry_rearm(s->reg, c->fd, CMIO_READABLE);
            return IO_BLOCKED;
        }
        s->errors++;
        return IO_FAILED;
    }
    if (n == 0)
        return IO_EOF;
    c->len += (size_t)n;
    *moved += (size_t)n;
    return IO_MOVED;
}

/* Registers what the connection needs now: READABLE while the client may
 * send and the ring has room, WRITABLE while unsent bytes wait. */
static int conn_update_interest(struct server *s, struct conn *c)
{
    unsigned want = 0;
    if (!c->peer_done && c->len < s->limit)
        want |= CMIO_READABLE;
    if (c->len > 0)
        want |= CMIO_WRITABLE;
    if (want == c->interest)
        return 0;
    int rc = cmio_registry_reregister(s->reg, c->fd, conn_token(s, c), want);
    if (rc < 0) {
        log_msg("reregister: %s", cmio_strerror(rc));
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
static void conn_run(struct server *s, struct conn *c)
{
    size_t moved = 0;
    runq_remove(s, c);
    for (;;) {
        bool progress = false;
        if (c->len > 0 && c->may_write) {
            enum io_result r = conn_send(s, c, &moved);
            if (r == IO_FAILED) {
                conn_close(s, c);
                return;
            }
            progress |= r == IO_MOVED;
        }
        if (!c->peer_done && c->len < s->limit && c->may_read) {
            enum io_result r = conn_recv(s, c, &moved);
            if (r == IO_FAILED) {
                conn_close(s, c);
                return;
            }
            if (r == IO_EOF)
                c->peer_done = true;
            progress |= r != IO_BLOCKED;
        }
        if (!progress)
            break;
        if (moved >= TURN_BYTES) {
            runq_push(s, c);
            break;
        }
    }
    /* A half-closed client has had its whole echo: nothing more can come. */
    if (c->peer_done && c->len == 0) {
        conn_close(s, c);
        return;
    }
    if (conn_update_interest(s, c) < 0)
        conn_close(s, c);
}

static void runq_run(struct server *s)
{
    /* Only the connections queued now: one that uses up its turn again goes
     * to the back and waits for the next round, after a non-blocking wait
     * has let everyone else in. */
    struct conn *last = s->runq_tail;
    while (s->runq_head != NULL) {
        struct conn *c = s->runq_head;
        bool was_last = c == last;
        conn_run(s, c); /* takes c off the queue first */
        if (was_last)
            break;
    }
}

/* ------------------------------------------------------------------------ */
/* Accepting                                                                */
/* ------------------------------------------------------------------------ */

static void accept_pause(struct server *s, int err)
{
    int64_t now = now_ns();
    s->accept_paused = true;
    s->accept_resume = now + ACCEPT_PAUSE_NS;
    s->pauses++;
    /* Once a second at most: a long shortage must not flood the log. */
    if (s->last_pause_report == 0 || now - s->last_pause_report >= 1000000000) {
        s->last_pause_report = now;
        log_msg("accept: %s; pausing accepts for %d ms", sock_strerror(err), (int)(ACCEPT_PAUSE_NS / 1000000));
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
 * arrive during the pause are ignored; the timer resumes accepting.
 */
static void server_accept(struct server *s)
{
    s->accept_more = false;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        cmio_fd fd = sock_accept(s->listener);
        if (fd == CMIO_INVALID_FD) {
            int err = sock_error();
            if (SOCK_INTR(err))
                continue;
            if (SOCK_WOULDBLOCK(err)) {
                cmio_registry_rearm(s->reg, s->listener, CMIO_READABLE);
                return;
            }
            if (SOCK_NO_DESCRIPTORS(err)) {
                accept_pause(s, err);
                return;
            }
            /* ECONNABORTED, and on Linux the pending network errors of the
             * new connection (EPROTO, ENETDOWN, EHOSTUNREACH, ...): that
             * client's problem, not the listener's. */
            continue;
        }
        s->accepted++;
        if (s->nfree == 0) {
            /* At the cap. Closing at once tells the client now; leaving it
             * in the backlog would stall it for as long as the server is
             * full. */
            sock_close(fd);
            s->refused++;
            continue;
        }
        sock_tune(fd);
        struct conn *c = &s->conns[s->free_slots[s->nfree - 1]];
        /* Data that arrived with the connection is reported by the next
         * wait: register reports a source that is ready already. */
        int rc = cmio_registry_register(s->reg, fd, conn_token(s, c), CMIO_READABLE);
        if (rc < 0) {
            log_msg("register: %s", cmio_strerror(rc));
            sock_close(fd);
            s->refused++;
            continue;
        }
        s->nfree--;
        c->fd = fd;
        c->interest = CMIO_READABLE;
        c->may_read = c->may_write = true;
        if (live_conns(s) > s->peak)
            s->peak = live_conns(s);
    }
    s->accept_more = true;
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

static int server_run(struct server *s)
{
    for (;;) {
        int64_t timeout = -1;
        if (s->runq_head != NULL || s->accept_more) {
            timeout = 0;
        } else if (s->accept_paused) {
            int64_t left = s->accept_resume - now_ns();
            timeout = left > 0 ? left : 0;
        }
        int n = cmio_poll_wait(s->poll, s->events, timeout);
        if (n == -EINTR)
            continue; /* the handler has woken the waker if it wants us to stop */
        if (n < 0) {
            log_msg("wait: %s", cmio_strerror(n));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            cmio_token t = cmio_event_token(cmio_events_get(s->events, (size_t)i));
            if (t == TOKEN_STOP)
                return 0;
            if (t == TOKEN_LISTENER) {
                if (!s->accept_paused)
                    s->accept_more = true;
                continue;
            }
            size_t slot = (size_t)(t - TOKEN_CONN0);
            if (slot >= s->max_conns || s->conns[slot].fd == CMIO_INVALID_FD)
                continue; /* closed earlier in this batch */
            /* Whatever the event says, try both directions and let recv and
             * send decide: the flags beyond readable/writable are hints, and
             * a slot closed and reused within this batch sees a stale event,
             * which is then just a spurious one. */
            struct conn *c = &s->conns[slot];
            c->may_read = c->may_write = true;
            conn_run(s, c);
        }
        if (s->accept_paused && now_ns() >= s->accept_resume) {
            s->accept_paused = false;
            s->accept_more = true;
        }
        if (s->accept_more)
            server_accept(s);
        runq_run(s);
    }
}

/* ------------------------------------------------------------------------ */
/* Set-up and tear-down                                                     */
/* ------------------------------------------------------------------------ */

static cmio_waker *volatile stop_waker;

static void on_stop_signal(int sig)
{
    (void)sig;
    cmio_waker *w = stop_waker;
    if (w != NULL)
        cmio_waker_wake(w);
}

static int install_signals(void)
{
#ifdef _WIN32
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    return 0;
#else
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) < 0)
        return -1;
    sa.sa_handler = on_stop_signal;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return -1;
    return 0;
#endif
}

/* Stops signal delivery before the waker the handler uses is freed. */
static void block_stop_signals(void)
{
#ifndef _WIN32
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
#endif
    stop_waker = NULL;
}

/* Opens a non-blocking listener and describes its bound address. */
static int listen_on(const char *host, const char *port, cmio_fd *out, char *desc, size_t desclen)
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
    snprintf(desc, desclen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
    *out = fd;
    return 0;
}

static void server_free(struct server *s)
{
    if (s->conns != NULL) {
        for (size_t i = 0; i < s->max_conns; i++)
            if (s->conns[i].fd != CMIO_INVALID_FD)
                conn_close(s, &s->conns[i]);
    }
    if (s->listener != CMIO_INVALID_FD) {
        cmio_registry_deregister(s->reg, s->listener);
        sock_close(s->listener);
    }
    block_stop_signals();
    cmio_waker_free(s->stop);
    cmio_events_free(s->events);
    cmio_poll_free(s->poll);
    free(s->conns);
    free(s->free_slots);
}

static int server_init(struct server *s, const char *host, const char *port)
{
    char desc[96];
    s->listener = CMIO_INVALID_FD;
    s->conns = calloc(s->max_conns, sizeof(*s->conns));
    s->free_slots = calloc(s->max_conns, sizeof(*s->free_slots));
    if (s->conns == NULL || s->free_slots == NULL) {
        log_msg("out of memory for a table of %zu connections", s->max_conns);
        return -1;
    }
    /* Lowest slots first: the stack pops them in index order. */
    for (size_t i = 0; i < s->max_conns; i++) {
        s->conns[i].fd = CMIO_INVALID_FD;
        s->free_slots[i] = s->max_conns - 1 - i;
    }
    s->nfree = s->max_conns;

    int rc = cmio_poll_new(&s->poll);
    if (rc == 0)
        rc = cmio_events_new(&s->events, EVENTS_CAPACITY);
    if (rc == 0) {
        s->reg = cmio_poll_registry(s->poll);
        rc = cmio_waker_new(s->reg, TOKEN_STOP, &s->stop);
    }
    if (rc < 0) {
        log_msg("cmio: %s", cmio_strerror(rc));
        return -1;
    }
    stop_waker = s->stop;
    if (install_signals() < 0) {
        log_msg("sigaction: %s", strerror(errno));
        return -1;
    }

    if (listen_on(host, port, &s->listener, desc, sizeof(desc)) < 0)
        return -1;
    rc = cmio_registry_register(s->reg, s->listener, TOKEN_LISTENER, CMIO_READABLE);
    if (rc < 0) {
        log_msg("register listener: %s", cmio_strerror(rc));
        return -1;
    }
    printf("listening on %s\n", desc);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: echo_server [-a address] [-p port] [-b bytes] [-c connections]\n"
               "  -a address      address to listen on (default 127.0.0.1)\n"
               "  -p port         port (default 7000; 0 picks a free one)\n"
               "  -b bytes        per-connection buffer; reading stops while it is full\n"
               "                  (default 64k; suffix k or m allowed)\n"
               "  -c connections  most connections served at once; more are accepted\n"
               "                  and closed (default 1024)\n"
               "  -h              this help\n"
               "Prints \"listening on ADDRESS:PORT\" once ready; SIGINT or SIGTERM stops it.\n");
}

/* A positive number with an optional k/m suffix, at most max. */
static bool parse_size(const char *text, size_t max, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-')
        return false;
    unsigned long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024, end++;
    if (*end != '\0' || v == 0 || v > max / mult)
        return false;
    *out = (size_t)(v * mult);
    return true;
}

static bool parse_port(const char *text)
{
    size_t n = strlen(text);
    if (n == 0 || n > 5 || strspn(text, "0123456789") != n)
        return false;
    return strtol(text, NULL, 10) <= 65535;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *port = "7000";
    struct server s;
    memset(&s, 0, sizeof(s));
    s.limit = 64 * 1024;
    s.max_conns = 1024;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (opt[0] != '-' || opt[1] == '\0' || opt[2] != '\0' || i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *val = argv[++i];
        switch (opt[1]) {
        case 'a':
            host = val;
            break;
        case 'p':
            if (!parse_port(val)) {
                log_msg("bad port '%s' (0 to 65535)", val);
                return 2;
            }
            port = val;
            break;
        case 'b':
            if (!parse_size(val, (size_t)1 << 30, &s.limit)) {
                log_msg("bad buffer size '%s' (1 to 1g)", val);
                return 2;
            }
            break;
        case 'c':
            if (!parse_size(val, 1000000, &s.max_conns)) {
                log_msg("bad connection count '%s' (1 to 1000000)", val);
                return 2;
            }
            break;
        default:
            usage(stderr);
            return 2;
        }
    }

#ifdef _WIN32
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        log_msg("WSAStartup failed");
        return 1;
    }
#endif

    int rc = server_init(&s, host, port);
    if (rc == 0)
        rc = server_run(&s);
    if (rc == 0)
        fprintf(stderr,
                "echo_server: stopping: %llu connections accepted, %llu refused at the cap, "
                "peak %zu at once, %llu closed on errors, %llu accept pauses, %llu bytes echoed\n",
                s.accepted, s.refused, s.peak, s.errors, s.pauses, s.bytes);
    server_free(&s);
#ifdef _WIN32
    WSACleanup();
#endif
    return rc == 0 ? 0 : 1;
}
