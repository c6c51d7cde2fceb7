/*
 * echo_client.c: a load client for echo_server that checks every byte.
 *
 *   echo_client [-a address] [-p port] [-c connections] [-s bytes[-max]]
 *               [-P depth] [-d seconds] [-r percent] [-n noread] [-i idle]
 *               [-I seconds] [-S sources]       (--help gives the long forms)
 *
 * The load is a mix of connection behaviours, run together on one cmio_poll:
 *
 *   - Echo connections (-c) keep up to -P messages in flight, each of -s
 *     bytes or of a random size in a range, compare every echoed byte with
 *     what was sent and record each message's round trip.
 *   - With -r, that share of messages is cut short: after a random part of
 *     the message is sent the connection is reset (SO_LINGER 0, then close,
 *     which sends an RST), and the slot connects again.
 *   - Never-reading connections (-n) send as fast as the server takes bytes
 *     and never read: the server must stop reading them and keep its memory
 *     bounded. They report how much the server took before it stopped.
 *   - Idle connections (-i) never send. Given the server's idle timeout (-I),
 *     the server must close each of them no sooner than that after its
 *     connect began and not much later; a never-reading connection may then
 *     be closed too. Both connect again.
 *
 * Message bytes are a function of (connection, message number, offset), so
 * an echo that is cut, reordered, duplicated or delivered to the wrong
 * connection cannot match, and nothing sent has to be kept.
 *
 * When the time is up each echo connection shuts down its sending side as
 * soon as its message in progress is fully sent, reads the rest of its
 * echoes, and expects the server to close: a byte too many, a byte too few
 * or a reset is an error. This checks the server's half-close handling on
 * every connection.
 *
 * Progress goes to stderr once a second; the figures (messages/s, MB/s,
 * round-trip percentiles, connections, errors by kind) go to stdout. The
 * exit status is 0 only if no error of any kind occurred and, if there were
 * echo connections, at least one message went round.
 *
 * Like the server it runs cmio in edge mode: sends and receives go on until
 * they would block, and every would-block is reported with
 * cmio_registry_rearm. The plumbing both share (portable sockets, time,
 * messages, option parsing) is in common.h.
 */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long echo connections may take to finish once the time is up. */
#define DRAIN_NS (10 * NS_PER_S)

/* How late the server may close an idle connection after its timeout
 * before that counts as an error. Generous: a loaded machine may be slow
 * to run the server, but a missing timeout is never this close. */
#define IDLE_LATE_NS (3 * NS_PER_S)

/* Connects under way at once. Thousands at a time would overflow the
 * server's SYN and accept queues, and each dropped SYN costs its client a
 * second before the retry. */
#define CONNECTING_MAX 1024

#define CHUNK (64 * 1024)

/* Send buffer of a never-reading connection. The kernel would grow it to
 * megabytes, which the server never sees but the client pays for in
 * copying, and a client busy filling it neglects its echo connections. */
#define NOREAD_SNDBUF (64 * 1024)
#define EVENTS_CAPACITY 512
#define MAX_PIPELINE 1024

/* Errors reported one by one before only their count goes on. */
#define ERRORS_SHOWN 5

/* Closes with an RST instead of a FIN: what a crashed or killed client
 * looks like to the server. */
static void sock_abort(cmio_fd fd)
{
    struct linger lg;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof(lg));
    sock_close(fd);
}

/* ------------------------------------------------------------------------ */
/* Message contents                                                         */
/* ------------------------------------------------------------------------ */

/* splitmix64's finaliser: a cheap bijection whose outputs look random. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

/* Every message of every connection has its own key. */
static uint64_t msg_key(uint32_t conn, uint32_t seq)
{
    return mix64((((uint64_t)conn << 32) | seq) + 0x9E3779B97F4A7C15ull);
}

/* Bytes [off, off + n) of the message with this key: byte i is byte i % 8
 * of mix64(key + i / 8), so any stretch can be made without the rest. */
static void pattern(unsigned char *out, uint64_t key, size_t off, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t pos = off + i;
        uint64_t v = mix64(key + (uint64_t)(pos >> 3)) >> (8 * (pos & 7));
        for (size_t k = pos & 7; k < 8 && i < n; k++, i++, v >>= 8)
            out[i] = (unsigned char)v;
    }
}

/* ------------------------------------------------------------------------ */
/* Round-trip histogram                                                     */
/* ------------------------------------------------------------------------ */

/* Log-linear buckets of nanoseconds: exact below 64 ns, then 64 buckets per
 * power of two (under 1.6 % error), constant memory however long the run. */
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct histogram {
    uint64_t count;
    uint64_t buckets[HIST_BUCKETS];
};

static size_t hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (size_t)v;
    unsigned e = 63;
    while ((v >> e) == 0)
        e--;
    return (size_t)(e - HIST_SUB_BITS + 1) * HIST_SUB + (size_t)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

/* The middle of bucket i. */
static uint64_t hist_value(size_t i)
{
    if (i < HIST_SUB)
        return i;
    unsigned e = (unsigned)(i / HIST_SUB) + HIST_SUB_BITS - 1;
    uint64_t width = (uint64_t)1 << (e - HIST_SUB_BITS);
    return (HIST_SUB + i % HIST_SUB) * width + width / 2;
}

static void hist_add(struct histogram *h, int64_t ns)
{
    h->buckets[hist_index(ns > 0 ? (uint64_t)ns : 0)]++;
    h->count++;
}

static double hist_percentile_ms(const struct histogram *h, double q)
{
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank)
            return (double)hist_value(i) / 1e6;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* State                                                                    */
/* ------------------------------------------------------------------------ */

enum kind { KIND_ECHO, KIND_NOREAD, KIND_IDLE };

enum state {
    ST_QUEUED,     /* waiting for its turn to connect */
    ST_CONNECTING,
    ST_OPEN,
    ST_DONE,       /* finished, failed, or stopped: never again */
};

enum error_kind {
    ERR_CONNECT, /* a connect failed */
    ERR_REFUSED, /* closed or reset by the server before any echo: its cap? */
    ERR_RESET,   /* reset by the server later */
    ERR_EOF,     /* closed by the server with echo still owed */
    ERR_CORRUPT, /* a wrong byte, or more bytes than were sent */
    ERR_IDLE,    /* an idle connection closed too early, too late or at all */
    ERR_TIMEOUT, /* not finished DRAIN_NS after the end */
    ERR_OTHER,
    ERR_KINDS
};

static const char *const error_names[ERR_KINDS] = {"connect", "refused", "reset", "eof",
                                                   "corrupt", "idle",    "timeout", "other"};

/*
 * One slot: a connection of one kind, connected again after a deliberate
 * reset or an expected idle close. Each connection gets a new id, so its
 * bytes differ from its predecessors'.
 */
struct conn {
    cmio_fd fd;
    uint32_t id;
    unsigned char kind, state;
    bool may_read, may_write;
    bool started;            /* message send_seq has had bytes offered */
    bool shut;               /* our sending side is shut down */
    bool queued;             /* on the run queue */
    uint32_t send_seq;       /* message being sent (or the next one) */
    uint32_t recv_seq;       /* message being echoed */
    size_t send_size, send_off, cut;
    size_t recv_size, recv_off;
    uint64_t sent, echoed;   /* bytes over the connection's life */
    int64_t connect_start;   /* before connect(): no accept can precede it */
    int64_t connected;       /* when the connect was seen to complete */
    size_t run_next;         /* run queue link */
    size_t connect_next;     /* connect queue link */
};

#define NO_CONN SIZE_MAX
#define NO_CUT SIZE_MAX

struct client {
    /* Options. */
    size_t nconns, nnoread, nidle;
    size_t min_size, max_size;
    unsigned depth;          /* messages in flight per echo connection */
    unsigned reset_ppm;      /* messages cut by a reset, per million */
    int64_t idle_ns;         /* the server's idle timeout; 0: not known */
    unsigned sources;
    bool quiet;

    struct addrinfo *addr;
    cmio_poll *poll;
    cmio_registry *reg;
    cmio_events *events;
    struct conn *conns;
    size_t nslots;
    int64_t *stamps;         /* depth start times per slot, by seq % depth */
    unsigned char *out, *in, *expect;
    unsigned char *noise;    /* what never-reading connections send */
    uint32_t next_id;
    bool stopping;

    size_t connect_head, connect_tail; /* slots waiting to connect */
    size_t connecting, open, peak_open, active;
    size_t runq_head, runq_tail;

    /* Results. */
    unsigned long long messages, verified, finished, resets, reconnects;
    unsigned long long noread_bytes, noread_opened, noread_closed, idle_closed;
    int64_t idle_min, idle_max;
    unsigned long long errors[ERR_KINDS];
    struct histogram hist;
};

static unsigned long long error_total(const struct client *cl)
{
    unsigned long long n = 0;
    for (int k = 0; k < ERR_KINDS; k++)
        n += cl->errors[k];
    return n;
}

PRINTF_LIKE(3, 4)
static void conn_error(struct client *cl, enum error_kind kind, const char *fmt, ...)
{
    if (cl->errors[kind]++ < ERRORS_SHOWN) {
        char text[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        log_msg("error (%s): %s%s", error_names[kind], text,
                cl->errors[kind] == ERRORS_SHOWN ? " (no more of this kind shown)" : "");
    }
}

static size_t msg_size(const struct client *cl, uint32_t id, uint32_t seq)
{
    if (cl->min_size == cl->max_size)
        return cl->min_size;
    uint64_t r = mix64(msg_key(id, seq) ^ 0x5157u);
    return cl->min_size + (size_t)(r % (uint64_t)(cl->max_size - cl->min_size + 1));
}

/* ------------------------------------------------------------------------ */
/* Queues                                                                   */
/* ------------------------------------------------------------------------ */

static void runq_push(struct client *cl, struct conn *c)
{
    if (c->queued)
        return;
    c->queued = true;
    c->run_next = NO_CONN;
    size_t i = (size_t)(c - cl->conns);
    if (cl->runq_tail != NO_CONN)
        cl->conns[cl->runq_tail].run_next = i;
    else
        cl->runq_head = i;
    cl->runq_tail = i;
}

/* A slot may still be on the run queue when it is queued to connect again
 * (a reset in the middle of its turn): the two queues have their own links,
 * and the run queue skips slots that are not open. */
static void connect_queue_push(struct client *cl, struct conn *c)
{
    c->state = ST_QUEUED;
    c->connect_next = NO_CONN;
    size_t i = (size_t)(c - cl->conns);
    if (cl->connect_tail != NO_CONN)
        cl->conns[cl->connect_tail].connect_next = i;
    else
        cl->connect_head = i;
    cl->connect_tail = i;
}

/* ------------------------------------------------------------------------ */
/* Opening and closing                                                      */
/* ------------------------------------------------------------------------ */

static void conn_close(struct client *cl, struct conn *c, bool abort)
{
    int rc = cmio_registry_deregister(cl->reg, c->fd);
    if (rc < 0)
        log_msg("deregister: %s", cmio_strerror(rc));
    if (abort)
        sock_abort(c->fd);
    else
        sock_close(c->fd);
    c->fd = CMIO_INVALID_FD;
    if (c->state == ST_CONNECTING)
        cl->connecting--;
    else
        cl->open--;
}

/* Closes and retires the slot for good. */
static void conn_done(struct client *cl, struct conn *c, bool abort)
{
    if (c->fd != CMIO_INVALID_FD)
        conn_close(cl, c, abort);
    c->state = ST_DONE;
    cl->active--;
}

/* Closes, and connects the slot again unless the run is ending. */
static void conn_again(struct client *cl, struct conn *c, bool abort)
{
    conn_close(cl, c, abort);
    if (cl->stopping) {
        c->state = ST_DONE;
        cl->active--;
        return;
    }
    cl->reconnects++;
    connect_queue_push(cl, c);
}

static void conn_fail(struct client *cl, struct conn *c)
{
    conn_done(cl, c, true);
}

/* Spreads the source addresses over 127.0.0.1 .. 127.0.0.N: each address has
 * its own ephemeral ports, so more connections fit in TIME_WAIT's shadow. */
static void conn_bind_source(struct client *cl, struct conn *c)
{
    if (cl->sources <= 1 || cl->addr->ai_family != AF_INET)
        return;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(0x7F000001u + (uint32_t)((size_t)(c - cl->conns) % cl->sources));
    int one = 1;
#ifdef IP_BIND_ADDRESS_NO_PORT
    /* Linux: leave the port to connect(), which may share it among
     * different destinations, instead of reserving one now. */
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, (const char *)&one, sizeof(one));
#endif
    (void)one;
    bind(c->fd, (struct sockaddr *)&sin, sizeof(sin)); /* failing, the kernel picks */
}

static void conn_start(struct client *cl, struct conn *c)
{
    const struct addrinfo *ai = cl->addr;
    cmio_fd fd = (cmio_fd)socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd == CMIO_INVALID_FD) {
        conn_error(cl, ERR_CONNECT, "socket: %s", sock_strerror(sock_error()));
        c->state = ST_DONE;
        cl->active--;
        return;
    }
    sock_tune(fd);
    c->fd = fd;
    c->state = ST_CONNECTING;
    cl->connecting++;
    c->id = cl->next_id++;
    c->connect_start = now_ns();
    conn_bind_source(cl, c);
    if (c->kind == KIND_NOREAD) {
        int size = NOREAD_SNDBUF;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, (const char *)&size, sizeof(size));
    }
    if (sock_set_nonblocking(fd) < 0
        || (connect(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) < 0 && !SOCK_INPROGRESS(sock_error()))) {
        conn_error(cl, ERR_CONNECT, "connect: %s", sock_strerror(sock_error()));
        conn_fail(cl, c);
        return;
    }
    /* WRITABLE reports the end of the connect for every kind. */
    int rc = cmio_registry_register(cl->reg, fd, (cmio_token)(c - cl->conns), CMIO_READABLE | CMIO_WRITABLE);
    if (rc < 0) {
        conn_error(cl, ERR_OTHER, "register: %s", cmio_strerror(rc));
        conn_fail(cl, c);
    }
}

/* Starts connects while few are under way. */
static void connect_pump(struct client *cl)
{
    while (cl->connecting < CONNECTING_MAX && cl->connect_head != NO_CONN) {
        struct conn *c = &cl->conns[cl->connect_head];
        cl->connect_head = c->connect_next;
        if (cl->connect_head == NO_CONN)
            cl->connect_tail = NO_CONN;
        c->connect_next = NO_CONN;
        conn_start(cl, c);
    }
}

/* 1 once connected, 0 while the connect is under way, -1 if it failed. */
static int conn_check_connected(struct client *cl, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (char *)&err, &len) < 0)
        err = sock_error();
    if (err == 0) {
        struct sockaddr_storage peer;
        len = sizeof(peer);
        if (getpeername(c->fd, (struct sockaddr *)&peer, &len) == 0)
            return 1;
        err = sock_error();
        if (SOCK_NOTCONN(err)) {
            /* A spurious event: the connect is still under way. */
            cmio_registry_rearm(cl->reg, c->fd, CMIO_WRITABLE);
            return 0;
        }
    }
    conn_error(cl, ERR_CONNECT, "connection %u: connect: %s", (unsigned)c->id, sock_strerror(err));
    return -1;
}

static void conn_opened(struct client *cl, struct conn *c)
{
    c->state = ST_OPEN;
    c->connected = now_ns();
    cl->connecting--;
    if (++cl->open > cl->peak_open)
        cl->peak_open = cl->open;
    c->may_read = c->may_write = true;
    c->started = c->shut = false;
    c->send_seq = c->recv_seq = 0;
    c->send_off = c->recv_off = 0;
    c->sent = c->echoed = 0;
    c->recv_size = msg_size(cl, c->id, 0);
    if (c->kind == KIND_NOREAD)
        cl->noread_opened++;
}

/* ------------------------------------------------------------------------ */
/* Echo connections                                                         */
/* ------------------------------------------------------------------------ */

/* A receive or send error, or an end of stream, where none belongs. */
static void echo_broken(struct client *cl, struct conn *c, int err, const char *what)
{
    enum error_kind kind = err == 0 ? ERR_EOF : SOCK_RESET(err) ? ERR_RESET : ERR_OTHER;
    if (c->echoed == 0 && kind != ERR_OTHER)
        kind = ERR_REFUSED; /* closed before any echo: at the server's cap? */
    conn_error(cl, kind, "connection %u: %s: %s (message %u, %llu of %llu bytes echoed)",
               (unsigned)c->id, what, err == 0 ? "closed by the server" : sock_strerror(err),
               (unsigned)c->recv_seq, (unsigned long long)c->echoed, (unsigned long long)c->sent);
    conn_fail(cl, c);
}

/* Whether this connection has (or may start) a message to send. */
static bool echo_has_work(const struct client *cl, const struct conn *c)
{
    if (c->started)
        return true;
    return !cl->stopping && c->send_seq - c->recv_seq < cl->depth;
}

/* Sends a piece of the message in progress, starting one if the window has
 * room. 1 if bytes moved, 0 if the send would block, -1 if the connection
 * is gone (failed, or reset on purpose). */
static int echo_send(struct client *cl, struct conn *c)
{
    if (!c->started) {
        uint64_t key = msg_key(c->id, c->send_seq);
        c->started = true;
        c->send_size = msg_size(cl, c->id, c->send_seq);
        c->send_off = 0;
        c->cut = NO_CUT;
        if (cl->reset_ppm > 0 && mix64(key ^ 0x7E5Eu) % 1000000 < cl->reset_ppm)
            c->cut = (size_t)(mix64(key ^ 0xC07u) % c->send_size);
        cl->stamps[(size_t)(c - cl->conns) * cl->depth + c->send_seq % cl->depth] = now_ns();
    }
    size_t end = c->cut != NO_CUT ? c->cut : c->send_size;
    if (c->send_off == end) { /* only a cut message gets here */
        cl->resets++;
        conn_again(cl, c, true);
        return -1;
    }
    size_t n = end - c->send_off < CHUNK ? end - c->send_off : CHUNK;
    pattern(cl->out, msg_key(c->id, c->send_seq), c->send_off, n);
    int err;
    long k = sock_send(c->fd, cl->out, n, &err);
    if (k < 0) {
        if (SOCK_WOULDBLOCK(err)) {
            c->may_write = false;
            cmio_registry_rearm(cl->reg, c->fd, CMIO_WRITABLE);
            return 0;
        }
        echo_broken(cl, c, err, "send");
        return -1;
    }
    c->send_off += (size_t)k;
    c->sent += (uint64_t)k;
    if (c->send_off == c->send_size) {
        c->send_seq++;
        c->started = false;
    }
    return 1;
}

/* Compares received bytes with the messages in flight, in order; a piece
 * may end one message and begin the next. false on a mismatch. */
static bool echo_check(struct client *cl, struct conn *c, const unsigned char *p, size_t n, int *completed)
{
    size_t i = 0;
    while (i < n) {
        size_t take = n - i < c->recv_size - c->recv_off ? n - i : c->recv_size - c->recv_off;
        pattern(cl->expect, msg_key(c->id, c->recv_seq), c->recv_off, take);
        if (memcmp(p + i, cl->expect, take) != 0) {
            size_t j = 0;
            while (p[i + j] == cl->expect[j])
                j++;
            conn_error(cl, ERR_CORRUPT, "connection %u: message %u byte %zu is 0x%02x, expected 0x%02x",
                       (unsigned)c->id, (unsigned)c->recv_seq, c->recv_off + j, p[i + j], cl->expect[j]);
            return false;
        }
        i += take;
        c->recv_off += take;
        if (c->recv_off == c->recv_size) {
            int64_t started = cl->stamps[(size_t)(c - cl->conns) * cl->depth + c->recv_seq % cl->depth];
            hist_add(&cl->hist, now_ns() - started);
            cl->messages++;
            (*completed)++;
            c->recv_seq++;
            c->recv_off = 0;
            c->recv_size = msg_size(cl, c->id, c->recv_seq);
        }
    }
    return true;
}

/* 1 if something arrived, 0 if the receive would block, -1 if the
 * connection is gone (finished, or failed). */
static int echo_recv(struct client *cl, struct conn *c, int *completed)
{
    int err;
    long n = sock_recv(c->fd, cl->in, CHUNK, &err);
    if (n < 0) {
        if (SOCK_WOULDBLOCK(err)) {
            c->may_read = false;
            cmio_registry_rearm(cl->reg, c->fd, CMIO_READABLE);
            return 0;
        }
        echo_broken(cl, c, err, "recv");
        return -1;
    }
    if (n == 0) {
        if (c->shut && c->echoed == c->sent) {
            cl->finished++;
            conn_done(cl, c, false);
        } else {
            echo_broken(cl, c, 0, "recv");
        }
        return -1;
    }
    if (c->echoed + (uint64_t)n > c->sent) {
        conn_error(cl, ERR_CORRUPT, "connection %u: %llu bytes echoed but only %llu sent", (unsigned)c->id,
                   (unsigned long long)(c->echoed + (uint64_t)n), (unsigned long long)c->sent);
        conn_fail(cl, c);
        return -1;
    }
    if (!echo_check(cl, c, cl->in, (size_t)n, completed)) {
        conn_fail(cl, c);
        return -1;
    }
    c->echoed += (uint64_t)n;
    cl->verified += (unsigned long long)n;
    return 1;
}

/*
 * Moves bytes until both directions would block or wait on the other, or
 * until a window's worth of messages came back: then the connection goes to
 * the back of the run queue, so that one whose echoes return fast cannot
 * keep the loop to itself and skew everyone else's latencies.
 */
static void echo_run(struct client *cl, struct conn *c)
{
    int completed = 0;
    for (;;) {
        int progress = 0;
        if (c->may_write && !c->shut && echo_has_work(cl, c)) {
            int rc = echo_send(cl, c);
            if (rc < 0)
                return;
            progress |= rc;
        }
        if (cl->stopping && !c->shut && !c->started) {
            if (shutdown(c->fd, SHUT_WR) < 0) {
                conn_error(cl, ERR_OTHER, "connection %u: shutdown: %s", (unsigned)c->id,
                           sock_strerror(sock_error()));
                conn_fail(cl, c);
                return;
            }
            c->shut = true;
        }
        if (c->may_read) {
            int rc = echo_recv(cl, c, &completed);
            if (rc < 0)
                return;
            progress |= rc;
        }
        if (completed >= (int)cl->depth) {
            runq_push(cl, c);
            return;
        }
        if (!progress)
            return;
    }
}

/* ------------------------------------------------------------------------ */
/* Never-reading and idle connections                                       */
/* ------------------------------------------------------------------------ */

/* Sends until the server stops taking bytes; never reads. The bytes are
 * never checked (they never come back), so they need not differ. */
static void noread_run(struct client *cl, struct conn *c)
{
    while (c->may_write && !cl->stopping) {
        int err;
        long k = sock_send(c->fd, cl->noise, CHUNK, &err);
        if (k >= 0) {
            c->sent += (uint64_t)k;
            cl->noread_bytes += (unsigned long long)k;
            continue;
        }
        if (SOCK_WOULDBLOCK(err)) {
            c->may_write = false;
            cmio_registry_rearm(cl->reg, c->fd, CMIO_WRITABLE);
            return;
        }
        if (SOCK_RESET(err) && cl->idle_ns > 0) {
            /* A stalled connection moves no byte: the idle timeout may close it. */
            cl->noread_closed++;
            conn_again(cl, c, true);
            return;
        }
        conn_error(cl, SOCK_RESET(err) ? ERR_RESET : ERR_OTHER, "connection %u (never reads): send: %s",
                   (unsigned)c->id, sock_strerror(err));
        conn_fail(cl, c);
        return;
    }
}

/* Waits for the server to close the connection, and checks when it did. */
static void idle_run(struct client *cl, struct conn *c)
{
    int err;
    long n = sock_recv(c->fd, cl->in, CHUNK, &err);
    if (n < 0 && SOCK_WOULDBLOCK(err)) {
        c->may_read = false;
        cmio_registry_rearm(cl->reg, c->fd, CMIO_READABLE);
        return;
    }
    if (n > 0) {
        conn_error(cl, ERR_CORRUPT, "connection %u (idle): %ld bytes it never sent", (unsigned)c->id, n);
        conn_fail(cl, c);
        return;
    }
    if (n < 0 && !SOCK_RESET(err)) {
        conn_error(cl, ERR_OTHER, "connection %u (idle): recv: %s", (unsigned)c->id, sock_strerror(err));
        conn_fail(cl, c);
        return;
    }
    /* Closed by the server. It cannot have accepted the connection before
     * the connect began, so measured from then a correct timeout is never
     * early (a millisecond allows for clock granularity). Lateness is
     * measured from the end of the connect: a connect that waited in a full
     * accept queue is not the timeout's fault. */
    int64_t now = now_ns();
    int64_t after = now - c->connect_start;
    if (cl->idle_ns == 0) {
        conn_error(cl, ERR_IDLE, "connection %u (idle): closed by the server after %.3f s, with no idle "
                   "timeout given (-I)", (unsigned)c->id, (double)after / 1e9);
        conn_fail(cl, c);
        return;
    }
    if (after < cl->idle_ns - 1000000 || now - c->connected > cl->idle_ns + IDLE_LATE_NS) {
        conn_error(cl, ERR_IDLE, "connection %u (idle): closed by the server after %.3f s; its idle "
                   "timeout is %.3f s", (unsigned)c->id, (double)after / 1e9, (double)cl->idle_ns / 1e9);
        conn_fail(cl, c);
        return;
    }
    if (cl->idle_closed++ == 0 || after < cl->idle_min)
        cl->idle_min = after;
    if (after > cl->idle_max)
        cl->idle_max = after;
    conn_again(cl, c, false);
}

static void conn_run(struct client *cl, struct conn *c)
{
    if (c->state == ST_CONNECTING) {
        int rc = conn_check_connected(cl, c);
        if (rc < 0)
            conn_fail(cl, c);
        if (rc <= 0)
            return;
        conn_opened(cl, c);
    }
    if (c->state != ST_OPEN)
        return;
    switch (c->kind) {
    case KIND_ECHO:
        echo_run(cl, c);
        break;
    case KIND_NOREAD:
        noread_run(cl, c);
        break;
    default:
        if (c->may_read)
            idle_run(cl, c);
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

/* The time is up: no new connections or messages. Echo connections finish
 * what is in flight; the others close now. */
static void client_stop(struct client *cl)
{
    int64_t now = now_ns();
    cl->stopping = true;
    while (cl->connect_head != NO_CONN) {
        struct conn *c = &cl->conns[cl->connect_head];
        cl->connect_head = c->connect_next;
        c->state = ST_DONE;
        cl->active--;
    }
    cl->connect_tail = NO_CONN;
    for (size_t i = 0; i < cl->nslots; i++) {
        struct conn *c = &cl->conns[i];
        if (c->state == ST_CONNECTING) {
            conn_done(cl, c, true);
        } else if (c->state == ST_OPEN && c->kind == KIND_IDLE) {
            int64_t after = now - c->connected;
            if (cl->idle_ns > 0 && after > cl->idle_ns + IDLE_LATE_NS)
                conn_error(cl, ERR_IDLE, "connection %u (idle): still open after %.3f s; the idle "
                           "timeout is %.3f s", (unsigned)c->id, (double)after / 1e9,
                           (double)cl->idle_ns / 1e9);
            conn_done(cl, c, false);
        } else if (c->state == ST_OPEN && c->kind == KIND_NOREAD) {
            conn_done(cl, c, true);
        } else if (c->state == ST_OPEN) {
            echo_run(cl, c); /* shuts down sending if nothing is half sent */
        }
    }
}

static void client_report_progress(struct client *cl, int64_t start, int64_t now,
                                   unsigned long long *last_messages, unsigned long long *last_verified)
{
    if (!cl->quiet)
        fprintf(stderr, "echo_client: %3llds  %8llu msg/s  %8.2f MB/s  %6zu open  %llu errors\n",
                (long long)((now - start + NS_PER_S / 2) / NS_PER_S), cl->messages - *last_messages,
                (double)(cl->verified - *last_verified) / 1e6, cl->open, error_total(cl));
    *last_messages = cl->messages;
    *last_verified = cl->verified;
}

static int client_run(struct client *cl, int64_t duration_ns)
{
    int64_t start = now_ns();
    int64_t deadline = start + duration_ns;
    int64_t next_report = start + NS_PER_S;
    unsigned long long last_messages = 0, last_verified = 0;

    connect_pump(cl);
    while (cl->active > 0) {
        int64_t now = now_ns();
        if (now >= next_report) {
            client_report_progress(cl, start, now, &last_messages, &last_verified);
            next_report += NS_PER_S;
        }
        if (!cl->stopping && now >= deadline)
            client_stop(cl);
        if (cl->stopping && now >= deadline + DRAIN_NS) {
            for (size_t i = 0; i < cl->nslots; i++) {
                struct conn *c = &cl->conns[i];
                if (c->state == ST_OPEN) {
                    conn_error(cl, ERR_TIMEOUT, "connection %u: not finished %d s after the end "
                               "(message %u, %llu of %llu bytes echoed)", (unsigned)c->id,
                               (int)(DRAIN_NS / NS_PER_S), (unsigned)c->recv_seq,
                               (unsigned long long)c->echoed, (unsigned long long)c->sent);
                    conn_fail(cl, c);
                }
            }
            break;
        }
        int64_t until = cl->stopping ? deadline + DRAIN_NS : deadline;
        if (next_report < until)
            until = next_report;
        int64_t timeout = until > now ? until - now : 0;
        if (cl->runq_head != NO_CONN)
            timeout = 0;
        int n = cmio_poll_wait(cl->poll, cl->events, timeout);
        if (n == -EINTR)
            continue;
        if (n < 0) {
            log_msg("wait: %s", cmio_strerror(n));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            cmio_token t = cmio_event_token(cmio_events_get(cl->events, (size_t)i));
            if (t >= cl->nslots)
                continue;
            struct conn *c = &cl->conns[t];
            if (c->state != ST_OPEN && c->state != ST_CONNECTING)
                continue; /* closed earlier in this batch */
            /* Let send and recv decide: the other event flags are hints. */
            c->may_read = c->may_write = true;
            conn_run(cl, c);
        }
        /* The connections queued before this round; those that queue
         * themselves again wait for the next one. */
        size_t i = cl->runq_head;
        cl->runq_head = cl->runq_tail = NO_CONN;
        while (i != NO_CONN) {
            struct conn *c = &cl->conns[i];
            i = c->run_next;
            c->queued = false;
            if (c->state == ST_OPEN)
                conn_run(cl, c);
        }
        /* Reconnects start here, after the batch, so no event of this batch
         * can be taken for the new socket in a reused slot. */
        connect_pump(cl);
    }
    return 0;
}

static void client_report(const struct client *cl, double secs)
{
    printf("%llu messages in %.2f s: %.0f messages/s, %.2f MB/s, round trip p50 %.3f ms p99 %.3f ms "
           "p999 %.3f ms, %llu connections, %llu bytes verified\n",
           cl->messages, secs, (double)cl->messages / secs, (double)cl->verified / 1e6 / secs,
           hist_percentile_ms(&cl->hist, 0.50), hist_percentile_ms(&cl->hist, 0.99),
           hist_percentile_ms(&cl->hist, 0.999), cl->finished, cl->verified);
    printf("connections: %zu echo, %zu never reading, %zu idle; peak %zu open at once; "
           "%llu reconnects\n",
           cl->nconns, cl->nnoread, cl->nidle, cl->peak_open, cl->reconnects);
    if (cl->reset_ppm > 0)
        printf("resets: %llu messages cut by an RST, their connections reopened\n", cl->resets);
    if (cl->noread_opened > 0)
        printf("never reading: %.1f MB sent, %.0f KiB per connection before sending blocked (the "
               "server's buffer and both kernels' socket buffers); %llu closed by the server\n",
               (double)cl->noread_bytes / 1e6,
               (double)cl->noread_bytes / 1024.0 / (double)cl->noread_opened, cl->noread_closed);
    if (cl->nidle > 0 && cl->idle_closed > 0)
        printf("idle: %llu closed by the server %.3f to %.3f s after their connect began\n",
               cl->idle_closed, (double)cl->idle_min / 1e9, (double)cl->idle_max / 1e9);
    else if (cl->nidle > 0)
        printf("idle: none closed by the server\n");
    printf("errors: %llu (", error_total(cl));
    for (int k = 0; k < ERR_KINDS; k++)
        printf("%s%s %llu", k > 0 ? ", " : "", error_names[k], cl->errors[k]);
    printf(")\n");
    fflush(stdout);
}

static void client_free(struct client *cl)
{
    if (cl->conns != NULL) {
        for (size_t i = 0; i < cl->nslots; i++)
            if (cl->conns[i].fd != CMIO_INVALID_FD)
                conn_close(cl, &cl->conns[i], true);
    }
    free(cl->conns);
    free(cl->stamps);
    free(cl->out);
    free(cl->in);
    free(cl->expect);
    free(cl->noise);
    cmio_events_free(cl->events);
    cmio_poll_free(cl->poll);
    if (cl->addr != NULL)
        freeaddrinfo(cl->addr);
}

static int client_init(struct client *cl, const char *host, const char *port)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &cl->addr);
    if (rc != 0) {
        log_msg("%s: %s", host, gai_strerror(rc));
        return -1;
    }
    cl->nslots = cl->nconns + cl->nnoread + cl->nidle;
    unsigned long long limit;
    if (!raise_fd_limit(cl->nslots + 16, &limit))
        log_msg("the descriptor limit is %llu, below the %zu needed: raise it with ulimit -n", limit,
                cl->nslots + 16);
    cl->conns = calloc(cl->nslots, sizeof(*cl->conns));
    cl->stamps = calloc(cl->nslots, cl->depth * sizeof(*cl->stamps));
    cl->out = malloc(CHUNK);
    cl->in = malloc(CHUNK);
    cl->expect = malloc(CHUNK);
    cl->noise = malloc(CHUNK);
    if (cl->conns == NULL || cl->stamps == NULL || cl->out == NULL || cl->in == NULL || cl->expect == NULL
        || cl->noise == NULL) {
        log_msg("out of memory");
        return -1;
    }
    pattern(cl->noise, msg_key(UINT32_MAX, 0), 0, CHUNK);
    cl->connect_head = cl->connect_tail = NO_CONN;
    cl->runq_head = cl->runq_tail = NO_CONN;
    /* Interleaved kinds, so that each kind connects from the start. */
    size_t left[3];
    left[KIND_ECHO] = cl->nconns;
    left[KIND_NOREAD] = cl->nnoread;
    left[KIND_IDLE] = cl->nidle;
    size_t i = 0;
    while (i < cl->nslots) {
        for (int k = 0; k < 3 && i < cl->nslots; k++) {
            if (left[k] == 0)
                continue;
            left[k]--;
            struct conn *c = &cl->conns[i++];
            c->fd = CMIO_INVALID_FD;
            c->kind = (unsigned char)k;
            connect_queue_push(cl, c);
        }
    }
    cl->active = cl->nslots;
    rc = cmio_poll_new(&cl->poll);
    if (rc == 0)
        rc = cmio_events_new(&cl->events, EVENTS_CAPACITY);
    if (rc < 0) {
        log_msg("cmio: %s", cmio_strerror(rc));
        return -1;
    }
    cl->reg = cmio_poll_registry(cl->poll);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: echo_client [OPTION]...\n"
            "Loads an echo server with a mix of connections and checks every echoed byte.\n"
            "\n"
            "  -a, --address=ADDRESS       server address (default 127.0.0.1)\n"
            "  -p, --port=PORT             server port (default 7000)\n"
            "  -c, --connections=N         echo connections (default 100; 0 for none)\n"
            "  -s, --size=BYTES[-MAX]      message size, or a range for a random size per\n"
            "                              message (default 1k; suffixes k, m)\n"
            "  -P, --pipeline=N            messages in flight per echo connection, 1 to %d\n"
            "                              (default 1)\n"
            "  -d, --duration=SECONDS      how long to send (default 5; fractions allowed)\n"
            "  -r, --reset=PERCENT         share of messages cut short by resetting their\n"
            "                              connection (an RST), which then reconnects\n"
            "                              (default 0)\n"
            "  -n, --noread=N              connections that send and never read (default 0)\n"
            "  -i, --idle=N                connections that never send (default 0)\n"
            "  -I, --idle-timeout=SECONDS  the server's idle timeout: it must close each idle\n"
            "                              connection no sooner than that after its connect\n"
            "                              began and at most %d s later than that after it\n"
            "                              completed; it may close never-reading ones;\n"
            "                              both then reconnect. Without it, any close of an\n"
            "                              idle or never-reading connection is an error\n"
            "  -S, --sources=N             spread connections over the source addresses\n"
            "                              127.0.0.1 to 127.0.0.N (loopback servers only)\n"
            "  -q, --quiet                 no progress lines\n"
            "  -h, --help                  show this help and exit\n"
            "\n"
            "Progress goes to stderr once a second, the results to stdout: messages/s,\n"
            "MB/s, round-trip p50/p99/p999, connections, and errors by kind (connect,\n"
            "refused, reset, eof, corrupt, idle, timeout, other). Exit status: 0 if\n"
            "there was no error, 1 otherwise, 2 on bad usage.\n",
            MAX_PIPELINE, (int)(IDLE_LATE_NS / NS_PER_S));
}

/* "SIZE" or "MIN-MAX". */
static bool parse_size_range(const char *text, struct client *cl)
{
    char lo[32];
    const char *dash = strchr(text, '-');
    if (dash == NULL)
        return parse_size(text, 1, (size_t)64 << 20, &cl->min_size)
            && parse_size(text, 1, (size_t)64 << 20, &cl->max_size);
    if ((size_t)(dash - text) >= sizeof(lo))
        return false;
    memcpy(lo, text, (size_t)(dash - text));
    lo[dash - text] = '\0';
    return parse_size(lo, 1, (size_t)64 << 20, &cl->min_size)
        && parse_size(dash + 1, 1, (size_t)64 << 20, &cl->max_size) && cl->min_size <= cl->max_size;
}

/* 0 to go on, else the exit status. */
static int parse_options(int argc, char **argv, struct client *cl, const char **host, const char **port,
                         double *seconds)
{
    static const struct option longs[] = {
        {"address", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"connections", required_argument, NULL, 'c'},
        {"size", required_argument, NULL, 's'},
        {"pipeline", required_argument, NULL, 'P'},
        {"duration", required_argument, NULL, 'd'},
        {"reset", required_argument, NULL, 'r'},
        {"noread", required_argument, NULL, 'n'},
        {"idle", required_argument, NULL, 'i'},
        {"idle-timeout", required_argument, NULL, 'I'},
        {"sources", required_argument, NULL, 'S'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = opt_next(argc, argv, "a:p:c:s:P:d:r:n:i:I:S:qh", longs)) != -1) {
        bool ok = true;
        size_t n = 0;
        double v = 0;
        switch (c) {
        case 'a':
            *host = opt_arg;
            break;
        case 'p':
            *port = opt_arg;
            break;
        case 'c':
            ok = parse_size(opt_arg, 0, 1000000, &cl->nconns);
            break;
        case 's':
            ok = parse_size_range(opt_arg, cl);
            break;
        case 'P':
            ok = parse_size(opt_arg, 1, MAX_PIPELINE, &n);
            cl->depth = (unsigned)n;
            break;
        case 'd':
            ok = parse_number(opt_arg, 1e6, seconds) && *seconds > 0;
            break;
        case 'r':
            ok = parse_number(opt_arg, 100, &v);
            cl->reset_ppm = (unsigned)(v * 10000 + 0.5);
            break;
        case 'n':
            ok = parse_size(opt_arg, 0, 1000000, &cl->nnoread);
            break;
        case 'i':
            ok = parse_size(opt_arg, 0, 1000000, &cl->nidle);
            break;
        case 'I':
            ok = parse_number(opt_arg, 1e6, &v);
            cl->idle_ns = (int64_t)(v * 1e9);
            break;
        case 'S':
            ok = parse_size(opt_arg, 1, 254, &n);
            cl->sources = (unsigned)n;
            break;
        case 'q':
            cl->quiet = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return try_help();
        }
        if (!ok) {
            log_msg("bad value '%s' for -%c", opt_arg, c);
            return try_help();
        }
    }
    if (opt_ind < argc) {
        log_msg("unexpected argument '%s'", argv[opt_ind]);
        return try_help();
    }
    if (cl->nconns + cl->nnoread + cl->nidle == 0) {
        log_msg("no connections to make (-c, -n and -i are all 0)");
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *port = "7000";
    double seconds = 5;
    set_program_name("echo_client");
    struct client *cl = calloc(1, sizeof(*cl)); /* the histogram is large for a stack */
    if (cl == NULL) {
        log_msg("out of memory");
        return 1;
    }
    cl->nconns = 100;
    cl->min_size = cl->max_size = 1024;
    cl->depth = 1;
    cl->sources = 1;
    int status = parse_options(argc, argv, cl, &host, &port, &seconds);
    if (status >= 0) {
        free(cl);
        return status;
    }

    if (net_start() < 0) {
        free(cl);
        return 1;
    }

    int64_t start = now_ns();
    int rc = client_init(cl, host, port);
    if (rc == 0)
        rc = client_run(cl, (int64_t)(seconds * 1e9));
    if (rc == 0) {
        client_report(cl, (double)(now_ns() - start) / 1e9);
        if (error_total(cl) > 0) {
            log_msg("FAILED: %llu errors", error_total(cl));
            rc = -1;
        } else if (cl->nconns > 0 && cl->messages == 0) {
            log_msg("FAILED: no message went round");
            rc = -1;
        }
    }
    client_free(cl);
    free(cl);
    net_stop();
    return rc == 0 ? 0 : 1;
}
