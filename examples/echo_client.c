/*
 * echo_client.c: a load client for echo_server that checks every byte.
 *
 *   echo_client [-a address] [-p port] [-c connections] [-s bytes] [-d seconds]
 *
 * Opens -c connections and, on each, sends a message of -s bytes, waits for
 * its whole echo while comparing every byte, records the round trip and
 * sends the next, for -d seconds. Each message is a pseudo-random pattern
 * seeded by the connection and the message number, so an echo that is cut,
 * reordered, duplicated or delivered to the wrong connection cannot match.
 *
 * When the time is up each connection shuts down its sending side as soon as
 * its current message is fully sent, reads the rest of the echo, and expects
 * the server to close: a byte too many, a byte too few or a reset is an error.
 * This also checks the server's half-close handling on every connection.
 *
 * Progress goes to stderr once a second; the result is one line on stdout.
 * The exit status is 0 only if at least one message went round, every byte
 * matched and every connection ended cleanly.
 *
 * Like the server it runs cmio in edge mode: sends and receives go on until
 * they would block, and every would-block is reported with
 * cmio_registry_rearm.
 */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* MSG_NOSIGNAL and POSIX declarations under -std=c11 */
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

#define NS_PER_S ((int64_t)1000000000)

/* How long connections may take to finish once the time is up. */
#define DRAIN_NS (10 * NS_PER_S)

#define RECV_CHUNK (64 * 1024)
#define EVENTS_CAPACITY 256

/* ------------------------------------------------------------------------ */
/* Sockets, portably                                                        */
/* ------------------------------------------------------------------------ */

#ifdef _WIN32
#define SOCK_WOULDBLOCK(e) ((e) == WSAEWOULDBLOCK)
#define SOCK_INTR(e) ((e) == WSAEINTR)
#define SOCK_INPROGRESS(e) ((e) == WSAEWOULDBLOCK)
#define SOCK_NOTCONN(e) ((e) == WSAENOTCONN)
#define SHUT_WR SD_SEND

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

static int64_t now_ns(void)
{
    return (int64_t)GetTickCount64() * 1000000;
}
#else
#define SOCK_WOULDBLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK)
#define SOCK_INTR(e) ((e) == EINTR)
#define SOCK_INPROGRESS(e) ((e) == EINPROGRESS)
#define SOCK_NOTCONN(e) ((e) == ENOTCONN)
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

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}
#endif

#if defined(__MINGW32__)
__attribute__((format(gnu_printf, 1, 2)))
#elif defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void log_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("echo_client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Message patterns                                                         */
/* ------------------------------------------------------------------------ */

/* Bytes from xorshift64*, seeded by (connection, message number): every
 * message of every connection differs, so a misplaced echo cannot match. */
static void pattern_fill(unsigned char *p, size_t n, uint32_t conn, uint32_t seq)
{
    uint64_t x = (((uint64_t)conn << 32) | seq) * 0x9E3779B97F4A7C15ull + 1;
    if (x == 0)
        x = 1;
    for (size_t i = 0; i < n; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545F4914F6CDD1Dull;
        for (size_t k = 0; k < 8 && i + k < n; k++)
            p[i + k] = (unsigned char)(v >> (8 * k));
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

static uint64_t hist_percentile(const struct histogram *h, double q)
{
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank)
            return hist_value(i);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

struct conn {
    cmio_fd fd;          /* CMIO_INVALID_FD once finished */
    uint32_t id;
    uint32_t seq;        /* number of the message in flight */
    unsigned char *msg;  /* the message in flight, kept to check its echo */
    size_t sent, got;    /* bytes of it sent, and echoed */
    int64_t started;     /* when its first byte was offered to send */
    bool connected;
    bool may_read;       /* no would-block from recv since the last event */
    bool may_write;
    bool idle;           /* echo complete; the next message starts next turn */
    bool last;           /* the message in flight (or the next) is the last */
    bool shut;           /* our sending side is shut down */
    bool queued;         /* on the run queue */
    size_t next_ready;   /* run queue link */
};

struct client {
    cmio_poll *poll;
    cmio_registry *reg;
    cmio_events *events;
    struct conn *conns;
    size_t nconns, open, finished;
    size_t size;
    bool stopping;
    /* Connections that finished a message: each gets one message per turn,
     * so that a connection whose echoes come back fast cannot keep the loop
     * to itself and starve the others (which would skew the latencies). In
     * edge mode no event will come for them, so they are run again after
     * the next non-blocking wait. */
    size_t runq_head, runq_tail;
    unsigned char *scratch;
    unsigned long long messages, verified;
    struct histogram hist;
};

#define NO_CONN SIZE_MAX

static void runq_push(struct client *cl, struct conn *c)
{
    if (c->queued)
        return;
    c->queued = true;
    c->next_ready = NO_CONN;
    size_t i = (size_t)(c - cl->conns);
    if (cl->runq_tail != NO_CONN)
        cl->conns[cl->runq_tail].next_ready = i;
    else
        cl->runq_head = i;
    cl->runq_tail = i;
}

static void conn_start_message(struct client *cl, struct conn *c)
{
    c->seq++;
    pattern_fill(c->msg, cl->size, c->id, c->seq);
    c->sent = c->got = 0;
    c->started = now_ns();
}

static void conn_finish(struct client *cl, struct conn *c)
{
    int rc = cmio_registry_deregister(cl->reg, c->fd);
    if (rc < 0)
        log_msg("connection %u: deregister: %s", (unsigned)c->id, cmio_strerror(rc));
    sock_close(c->fd);
    c->fd = CMIO_INVALID_FD;
    cl->open--;
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
    log_msg("connection %u: connect: %s", (unsigned)c->id, sock_strerror(err));
    return -1;
}

/* Sends what is left of the message in flight; 1 if bytes moved, 0 if the
 * send would block, -1 on error. */
static int conn_send(struct client *cl, struct conn *c)
{
    long n;
    int err;
    do {
        n = sock_send(c->fd, c->msg + c->sent, cl->size - c->sent);
        err = n < 0 ? sock_error() : 0;
    } while (n < 0 && SOCK_INTR(err));
    if (n < 0) {
        if (SOCK_WOULDBLOCK(err)) {
            c->may_write = false;
            cmio_registry_rearm(cl->reg, c->fd, CMIO_WRITABLE);
            return 0;
        }
        log_msg("connection %u: send: %s", (unsigned)c->id, sock_strerror(err));
        return -1;
    }
    c->sent += (size_t)n;
    return 1;
}

/* Receives echo bytes and checks them against the message in flight, or,
 * after the last echo, waits for the server's close. 1 if something
 * happened, 0 if the receive would block, -1 on any error or mismatch. */
static int conn_recv(struct client *cl, struct conn *c)
{
    bool awaiting_close = c->got == cl->size;
    size_t want = awaiting_close ? RECV_CHUNK : cl->size - c->got;
    if (want > RECV_CHUNK)
        want = RECV_CHUNK;
    long n;
    int err;
    do {
        n = sock_recv(c->fd, cl->scratch, want);
        err = n < 0 ? sock_error() : 0;
    } while (n < 0 && SOCK_INTR(err));
    if (n < 0) {
        if (SOCK_WOULDBLOCK(err)) {
            c->may_read = false;
            cmio_registry_rearm(cl->reg, c->fd, CMIO_READABLE);
            return 0;
        }
        log_msg("connection %u: recv: %s (message %u, %zu of %zu bytes echoed)", (unsigned)c->id,
                sock_strerror(err), (unsigned)c->seq, c->got, cl->size);
        return -1;
    }
    if (awaiting_close) {
        if (n > 0) {
            log_msg("connection %u: %ld unexpected bytes after the last echo", (unsigned)c->id, n);
            return -1;
        }
        conn_finish(cl, c);
        cl->finished++;
        return 1;
    }
    if (n == 0) {
        log_msg("connection %u: closed by the server with %zu of %zu bytes of message %u echoed",
                (unsigned)c->id, c->got, cl->size, (unsigned)c->seq);
        return -1;
    }
    if (c->got + (size_t)n > c->sent) {
        log_msg("connection %u: %zu bytes echoed but only %zu sent", (unsigned)c->id,
                c->got + (size_t)n, c->sent);
        return -1;
    }
    if (memcmp(cl->scratch, c->msg + c->got, (size_t)n) != 0) {
        size_t i = 0;
        while (cl->scratch[i] == c->msg[c->got + i])
            i++;
        log_msg("connection %u: message %u byte %zu is 0x%02x, expected 0x%02x", (unsigned)c->id,
                (unsigned)c->seq, c->got + i, cl->scratch[i], c->msg[c->got + i]);
        return -1;
    }
    c->got += (size_t)n;
    cl->verified += (unsigned long long)n;
    if (c->got == cl->size) {
        hist_add(&cl->hist, now_ns() - c->started);
        cl->messages++;
        if (!c->last)
            c->idle = true;
    }
    return 1;
}

/* Moves bytes until both directions would block or wait on the other. */
static int conn_run(struct client *cl, struct conn *c)
{
    if (!c->connected) {
        int rc = conn_check_connected(cl, c);
        if (rc <= 0)
            return rc;
        c->connected = true;
        c->may_read = c->may_write = true;
        c->idle = true;
    }
    if (c->idle) {
        c->idle = false;
        conn_start_message(cl, c);
    }
    for (;;) {
        int progress = 0;
        if (c->sent < cl->size && c->may_write) {
            int rc = conn_send(cl, c);
            if (rc < 0)
                return -1;
            progress |= rc;
        }
        if (c->last && c->sent == cl->size && !c->shut) {
            if (shutdown(c->fd, SHUT_WR) < 0) {
                log_msg("connection %u: shutdown: %s", (unsigned)c->id, sock_strerror(sock_error()));
                return -1;
            }
            c->shut = true;
        }
        if (c->may_read) {
            int rc = conn_recv(cl, c);
            if (rc < 0)
                return -1;
            if (c->fd == CMIO_INVALID_FD)
                return 0; /* finished */
            if (c->idle) {
                runq_push(cl, c); /* its turn is over */
                return 0;
            }
            progress |= rc;
        }
        if (!progress)
            return 0;
    }
}

/* The time is up: the message in flight on each connection is its last. */
static int client_stop(struct client *cl)
{
    cl->stopping = true;
    for (size_t i = 0; i < cl->nconns; i++) {
        struct conn *c = &cl->conns[i];
        if (c->fd == CMIO_INVALID_FD)
            continue;
        c->last = true;
        /* Shuts down sending now if the message in flight is fully sent. */
        if (c->connected && !c->idle && conn_run(cl, c) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Set-up, the loop, tear-down                                              */
/* ------------------------------------------------------------------------ */

static int client_connect(struct client *cl, const char *host, const char *port)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        log_msg("%s: %s", host, gai_strerror(rc));
        return -1;
    }
    int status = 0;
    for (size_t i = 0; i < cl->nconns && status == 0; i++) {
        struct conn *c = &cl->conns[i];
        cmio_fd fd = (cmio_fd)socket(res->ai_family, res->ai_socktype, res->ai_protocol);
        if (fd == CMIO_INVALID_FD) {
            log_msg("socket (connection %zu): %s", i, sock_strerror(sock_error()));
            status = -1;
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof(one));
#ifdef SO_NOSIGPIPE
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, (const char *)&one, sizeof(one));
#endif
        if (sock_set_nonblocking(fd) < 0
            || (connect(fd, res->ai_addr, (socklen_t)res->ai_addrlen) < 0
                && !SOCK_INPROGRESS(sock_error()))) {
            log_msg("connect (connection %zu): %s", i, sock_strerror(sock_error()));
            sock_close(fd);
            status = -1;
            break;
        }
        rc = cmio_registry_register(cl->reg, fd, (cmio_token)i, CMIO_READABLE | CMIO_WRITABLE);
        if (rc < 0) {
            log_msg("register: %s", cmio_strerror(rc));
            sock_close(fd);
            status = -1;
            break;
        }
        c->fd = fd;
        cl->open++;
    }
    freeaddrinfo(res);
    return status;
}

static int client_run(struct client *cl, int64_t duration_ns)
{
    int64_t start = now_ns();
    int64_t deadline = start + duration_ns;
    int64_t next_report = start + NS_PER_S;
    unsigned long long last_messages = 0, last_verified = 0;

    while (cl->open > 0) {
        int64_t now = now_ns();
        if (now >= next_report) {
            fprintf(stderr, "echo_client: %3llds  %8llu msg/s  %8.2f MB/s  %zu open\n",
                    (long long)((now - start + NS_PER_S / 2) / NS_PER_S),
                    cl->messages - last_messages, (double)(cl->verified - last_verified) / 1e6,
                    cl->open);
            last_messages = cl->messages;
            last_verified = cl->verified;
            next_report += NS_PER_S;
        }
        if (!cl->stopping && now >= deadline && client_stop(cl) < 0)
            return -1;
        if (cl->stopping && now >= deadline + DRAIN_NS) {
            log_msg("%zu of %zu connections did not finish within %d s after the deadline",
                    cl->open, cl->nconns, (int)(DRAIN_NS / NS_PER_S));
            return -1;
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
            if (t >= cl->nconns || cl->conns[t].fd == CMIO_INVALID_FD)
                continue;
            struct conn *c = &cl->conns[t];
            /* Let send and recv decide: the other event flags are hints. */
            c->may_read = c->may_write = true;
            if (conn_run(cl, c) < 0)
                return -1;
        }
        /* The connections queued before this round; those that queue
         * themselves again wait for the next one. */
        size_t i = cl->runq_head;
        cl->runq_head = cl->runq_tail = NO_CONN;
        while (i != NO_CONN) {
            struct conn *c = &cl->conns[i];
            i = c->next_ready;
            c->queued = false;
            if (c->fd != CMIO_INVALID_FD && conn_run(cl, c) < 0)
                return -1;
        }
    }

    double secs = (double)(now_ns() - start) / 1e9;
    if (cl->messages == 0) {
        log_msg("no message went round");
        return -1;
    }
    printf("%llu messages in %.2f s: %.0f messages/s, %.2f MB/s, round trip p50 %.3f ms "
           "p99 %.3f ms, %zu connections, %llu bytes verified\n",
           cl->messages, secs, (double)cl->messages / secs, (double)cl->verified / 1e6 / secs,
           (double)hist_percentile(&cl->hist, 0.50) / 1e6,
           (double)hist_percentile(&cl->hist, 0.99) / 1e6, cl->finished, cl->verified);
    fflush(stdout);
    return 0;
}

static void client_free(struct client *cl)
{
    if (cl->conns != NULL) {
        for (size_t i = 0; i < cl->nconns; i++) {
            if (cl->conns[i].fd != CMIO_INVALID_FD)
                conn_finish(cl, &cl->conns[i]);
            free(cl->conns[i].msg);
        }
    }
    free(cl->conns);
    free(cl->scratch);
    cmio_events_free(cl->events);
    cmio_poll_free(cl->poll);
}

static int client_init(struct client *cl)
{
    cl->conns = calloc(cl->nconns, sizeof(*cl->conns));
    cl->scratch = malloc(RECV_CHUNK);
    if (cl->conns == NULL || cl->scratch == NULL) {
        log_msg("out of memory");
        return -1;
    }
    for (size_t i = 0; i < cl->nconns; i++) {
        cl->conns[i].fd = CMIO_INVALID_FD;
        cl->conns[i].id = (uint32_t)i;
        cl->conns[i].msg = malloc(cl->size);
        if (cl->conns[i].msg == NULL) {
            log_msg("out of memory for %zu messages of %zu bytes", cl->nconns, cl->size);
            return -1;
        }
    }
    int rc = cmio_poll_new(&cl->poll);
    if (rc == 0)
        rc = cmio_events_new(&cl->events, EVENTS_CAPACITY);
    if (rc < 0) {
        log_msg("cmio: %s", cmio_strerror(rc));
        return -1;
    }
    cl->reg = cmio_poll_registry(cl->poll);
    cl->runq_head = cl->runq_tail = NO_CONN;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: echo_client [-a address] [-p port] [-c connections] [-s bytes] [-d seconds]\n"
               "  -a address      server address (default 127.0.0.1)\n"
               "  -p port         server port (default 7000)\n"
               "  -c connections  connections, each with one message in flight (default 100)\n"
               "  -s bytes        message size (default 1k; suffix k or m allowed)\n"
               "  -d seconds      how long to send (default 5; fractions allowed)\n"
               "  -h              this help\n");
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

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *port = "7000";
    double seconds = 5;
    struct client *cl = calloc(1, sizeof(*cl)); /* the histogram is large for a stack */
    if (cl == NULL) {
        log_msg("out of memory");
        return 1;
    }
    cl->nconns = 100;
    cl->size = 1024;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
            usage(stdout);
            free(cl);
            return 0;
        }
        if (opt[0] != '-' || opt[1] == '\0' || opt[2] != '\0' || i + 1 >= argc) {
            usage(stderr);
            free(cl);
            return 2;
        }
        const char *val = argv[++i];
        bool ok = true;
        char *end;
        switch (opt[1]) {
        case 'a':
            host = val;
            break;
        case 'p':
            port = val;
            break;
        case 'c':
            ok = parse_size(val, 1000000, &cl->nconns);
            break;
        case 's':
            ok = parse_size(val, (size_t)64 << 20, &cl->size);
            break;
        case 'd':
            errno = 0;
            seconds = strtod(val, &end);
            ok = errno == 0 && end != val && *end == '\0' && seconds > 0 && seconds <= 1e6;
            break;
        default:
            ok = false;
            break;
        }
        if (!ok) {
            log_msg("bad value '%s' for %s", val, opt);
            usage(stderr);
            free(cl);
            return 2;
        }
    }

#ifdef _WIN32
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        log_msg("WSAStartup failed");
        free(cl);
        return 1;
    }
#else
    signal(SIGPIPE, SIG_IGN);
#endif

    int rc = client_init(cl);
    if (rc == 0)
        rc = client_connect(cl, host, port);
    if (rc == 0)
        rc = client_run(cl, (int64_t)(seconds * 1e9));
    if (rc < 0)
        log_msg("FAILED after %llu messages, %llu bytes verified, %zu of %zu connections finished",
                cl->messages, cl->verified, cl->finished, cl->nconns);
    client_free(cl);
    free(cl);
#ifdef _WIN32
    WSACleanup();
#endif
    return rc == 0 ? 0 : 1;
}
