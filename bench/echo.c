/*
 * echo.c: ping-pong of 64-byte messages over loopback TCP.
 *
 * One server thread (pinned to one CPU) echoes on c connections with each
 * implementation in turn; one client thread (pinned to another CPU, the same
 * raw epoll code for every server) keeps exactly one message in flight per
 * connection and checks every echoed byte. For each implementation the
 * table shows
 *
 *   - messages/s (echoes completed per second of the measuring window);
 *   - the 99th percentile of the round-trip time seen by the client;
 *   - the server thread's CPU time per message: the steadiest of the three
 *     on a shared machine, since time the server spends descheduled is not
 *     counted.
 *
 * The connections are opened once per case, so no accept is measured. The
 * client runs through the whole case while the servers take turns on the
 * connections, a short window each (see run_case). Every server makes the
 * same system calls per message: one recv into a 4 KiB buffer and one send
 * of what came, from the same function (echo_event), on level-triggered
 * persistent registrations (the one mode all five share; see pipechain.c),
 * waiting with no timeout. libuv is driven through uv_poll_t, not
 * uv_read_start, so that it too calls recv and send and its loop is what is
 * compared.
 */
#include "harness.h"
#include "peers.h"

#include <cmio/poll.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSG_SIZE 64
#define EVENTS_CAP 1024 /* the client's event buffer */
#define RTT_CAP (1L << 20)

enum { CPU_SERVER = 0, CPU_CLIENT = 1 };

struct server {
    enum impl impl;
    int c;     /* connections; token c is the control socket */
    int *fds;  /* server ends */
    int ctl;   /* readable when main wants the server to stop */
    atomic_int ready;
    long failures;
};

struct client {
    int c;
    int *fds;
    atomic_long msgs; /* echoes completed, for the main thread to sample */
    atomic_int stop;  /* send no new message; finish the ones in flight */
    /* Round-trip times in microseconds, in a ring: the main thread takes
     * those of its window, between two readings of nrtt. */
    double *rtt;
    atomic_long nrtt;
    long failures;
};

static struct server *g_server; /* for the peers' callbacks */

/* Returns false for the control socket: the loop must end. */
static inline bool echo_event(struct server *s, long idx)
{
    if (idx == s->c)
        return false;
    char buf[4096];
    int fd = s->fds[idx];
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r <= 0 || send(fd, buf, (size_t)r, 0) != r)
        s->failures++;
    return true;
}

/* ------------------------------------------------------------------------ */
/* The five servers                                                         */
/* ------------------------------------------------------------------------ */

/* Each one runs its loop until the control socket is readable. */

static void serve_epoll(struct server *s, void *loop)
{
    struct ep_loop *l = loop;
    for (;;) {
        int k = epoll_wait(l->epfd, l->events, BENCH_EVENTS_CAP, -1);
        if (k < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int j = 0; j < k; j++)
            if (!echo_event(s, (long)l->events[j].data.u64))
                return;
    }
}

static void serve_cmio(struct server *s, void *loop)
{
    struct cm_loop *l = loop;
    for (;;) {
        int k = cmio_poll_wait(l->poll, l->events, -1);
        if (k < 0 && k != -EINTR)
            die("cmio_poll_wait: %s", cmio_strerror(k));
        for (int j = 0; j < k; j++)
            if (!echo_event(s, (long)cmio_event_token(cmio_events_get(l->events, (size_t)j))))
                return;
    }
}

#ifdef BENCH_HAVE_LIBEVENT
static struct event_base *le_base;

static void le_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    if (!echo_event(g_server, (long)(uintptr_t)arg))
        event_base_loopbreak(le_base);
}

static void serve_libevent(struct server *s, void *loop)
{
    struct le_loop *l = loop;
    (void)s; /* the callback has it, as g_server */
    le_base = l->base;
    if (event_base_dispatch(l->base) < 0)
        die("event_base_dispatch failed");
}
#endif

#ifdef BENCH_HAVE_LIBEV
static void lv_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    if (!echo_event(g_server, (long)(uintptr_t)w->data))
        ev_break(loop, EVBREAK_ALL);
}

static void serve_libev(struct server *s, void *loop)
{
    struct lv_loop *l = loop;
    (void)s; /* the callback has it, as g_server */
    ev_run(l->loop, 0);
}
#endif

#ifdef BENCH_HAVE_LIBUV
static void lu_cb(uv_poll_t *h, int status, int events)
{
    (void)events;
    if (status < 0)
        g_server->failures++;
    else if (!echo_event(g_server, (long)(uintptr_t)h->data))
        uv_stop(h->loop);
}

static void serve_libuv(struct server *s, void *loop)
{
    struct lu_loop *l = loop;
    (void)s; /* the callback has it, as g_server */
    uv_run(&l->loop, UV_RUN_DEFAULT);
}
#endif

/* Each implementation's server loop, and its callback if it is a peer. */
static const struct {
    void (*serve)(struct server *s, void *loop);
    peer_cb cb;
} impl_ops[IMPL_COUNT] = {
    [IMPL_EPOLL] = {serve_epoll, NULL},
    [IMPL_CMIO] = {serve_cmio, NULL},
#ifdef BENCH_HAVE_LIBEVENT
    [IMPL_LIBEVENT] = {serve_libevent, PEER_CB(le_cb)},
#endif
#ifdef BENCH_HAVE_LIBEV
    [IMPL_LIBEV] = {serve_libev, PEER_CB(lv_cb)},
#endif
#ifdef BENCH_HAVE_LIBUV
    [IMPL_LIBUV] = {serve_libuv, PEER_CB(lu_cb)},
#endif
};

/* Watches every connection (token i) and the control socket (token c). */
static void *server_main(void *arg)
{
    struct server *s = arg;
    bench_pin(CPU_SERVER);
    void *loop = loop_open(s->impl, s->c + 1, impl_ops[s->impl].cb);
    for (int i = 0; i <= s->c; i++)
        loop_watch(s->impl, loop, i < s->c ? s->fds[i] : s->ctl, (uint64_t)i);
    atomic_store(&s->ready, 1);
    impl_ops[s->impl].serve(s, loop);
    loop_close(s->impl, loop);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The client                                                               */
/* ------------------------------------------------------------------------ */

static void *client_main(void *arg)
{
    struct client *cl = arg;
    bench_pin(CPU_CLIENT);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event *events = malloc(sizeof(*events) * EVENTS_CAP);
    int64_t *sent_at = calloc((size_t)cl->c, sizeof(int64_t));
    int *got = calloc((size_t)cl->c, sizeof(int));
    unsigned char *buf = malloc((size_t)cl->c * MSG_SIZE);
    unsigned char msg[MSG_SIZE];
    if (ep < 0 || events == NULL || sent_at == NULL || got == NULL || buf == NULL)
        die("client set-up failed");
    for (int i = 0; i < MSG_SIZE; i++)
        msg[i] = (unsigned char)(i * 7 + 1);

    for (int i = 0; i < cl->c; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cl->fds[i], &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
    }
    long msgs = 0;
    int in_flight = 0;
    for (int i = 0; i < cl->c; i++) {
        sent_at[i] = now_ns();
        if (send(cl->fds[i], msg, MSG_SIZE, 0) != MSG_SIZE)
            die("client send: %s", strerror(errno));
        in_flight++;
    }
    while (in_flight > 0) {
        int k = epoll_wait(ep, events, EVENTS_CAP, 10000);
        if (k < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        if (k == 0)
            die("client: no echo for ten seconds (%d messages in flight)", in_flight);
        for (int j = 0; j < k; j++) {
            int i = (int)events[j].data.u64;
            ssize_t r = recv(cl->fds[i], buf + (size_t)i * MSG_SIZE + got[i], (size_t)(MSG_SIZE - got[i]), 0);
            if (r < 0 && errno == EAGAIN)
                continue;
            if (r <= 0)
                die("client recv: %s", r == 0 ? "connection closed" : strerror(errno));
            got[i] += (int)r;
            if (got[i] < MSG_SIZE)
                continue;
            got[i] = 0;
            if (memcmp(buf + (size_t)i * MSG_SIZE, msg, MSG_SIZE) != 0)
                cl->failures++;
            int64_t t = now_ns();
            cl->rtt[msgs % RTT_CAP] = (double)(t - sent_at[i]) / 1e3;
            atomic_store_explicit(&cl->nrtt, msgs + 1, memory_order_release);
            atomic_store_explicit(&cl->msgs, ++msgs, memory_order_relaxed);
            if (atomic_load_explicit(&cl->stop, memory_order_relaxed)) {
                in_flight--;
                continue;
            }
            sent_at[i] = t;
            if (send(cl->fds[i], msg, MSG_SIZE, 0) != MSG_SIZE)
                die("client send: %s", strerror(errno));
        }
    }
    close(ep);
    free(events);
    free(sent_at);
    free(got);
    free(buf);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

struct conns {
    int c;
    int *srv, *cli;
    int ctl[2];
};

static void conns_open(struct conns *cn, int c)
{
    int one = 1;
    cn->c = c;
    cn->srv = malloc(sizeof(int) * (size_t)c);
    cn->cli = malloc(sizeof(int) * (size_t)c);
    if (cn->srv == NULL || cn->cli == NULL)
        die("out of memory");
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0
        || getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)
        die("listener: %s", strerror(errno));
    for (int i = 0; i < c; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            die("connect %d of %d: %s", i + 1, c, strerror(errno));
        int sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (sfd < 0)
            die("accept: %s", strerror(errno));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Reset at close: thousands of connections a run would otherwise
         * fill the port range with TIME_WAIT. */
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
            die("fcntl: %s", strerror(errno));
        cn->cli[i] = fd;
        cn->srv[i] = sfd;
    }
    close(lfd);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, cn->ctl) < 0)
        die("socketpair: %s", strerror(errno));
}

static void conns_close(struct conns *cn)
{
    for (int i = 0; i < cn->c; i++) {
        close(cn->cli[i]);
        close(cn->srv[i]);
    }
    close(cn->ctl[0]);
    close(cn->ctl[1]);
    free(cn->srv);
    free(cn->cli);
}

static void sleep_ms(double ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void server_start(struct server *s, pthread_t *thread)
{
    atomic_store(&s->ready, 0);
    g_server = s;
    if (pthread_create(thread, NULL, server_main, s) != 0)
        die("pthread_create failed");
    while (!atomic_load(&s->ready))
        sleep_ms(0.2);
}

static void server_stop(struct server *s, pthread_t thread, int ctl_write)
{
    char q;
    if (send(ctl_write, "q", 1, 0) != 1)
        die("control send: %s", strerror(errno));
    pthread_join(thread, NULL);
    if (recv(s->ctl, &q, 1, 0) != 1)
        die("control byte lost");
    if (s->failures != 0)
        die("%s: %ld failed recv or send calls", impl_name[s->impl], s->failures);
}

/* The client runs through the whole case and the servers take turns on the
 * same connections, each for a short window: a new server picks up where
 * the last one stopped (the sockets stay readable; level-triggered). So the
 * implementations alternate every few hundred milliseconds, and each
 * window is compared with the floor's window of the same round. */
static void run_case(int c, double warm_ms, double window_ms)
{
    struct conns cn;
    conns_open(&cn, c);
    struct client cl = {.c = c, .fds = cn.cli};
    atomic_init(&cl.msgs, 0);
    atomic_init(&cl.stop, 0);
    atomic_init(&cl.nrtt, 0);
    cl.rtt = malloc(sizeof(double) * RTT_CAP);
    double *window = malloc(sizeof(double) * RTT_CAP);
    double(*fig)[3][IMPL_COUNT] = malloc(sizeof(*fig) * (size_t)bench_opts.rounds);
    if (cl.rtt == NULL || window == NULL || fig == NULL)
        die("out of memory");
    note("%d connection%s: %d rounds", c, c == 1 ? "" : "s", bench_opts.rounds);

    struct server s = {.c = c, .fds = cn.srv, .ctl = cn.ctl[0]};
    pthread_t st, ct;
    bool running = false;
    for (int r = 0; r < bench_opts.rounds; r++) {
        enum impl order[IMPL_COUNT];
        int k = impl_order(r, order);
        for (int m = 0; m < 3; m++)
            for (int i = 0; i < IMPL_COUNT; i++)
                fig[r][m][i] = NAN;
        for (int j = 0; j < k; j++) {
            if (running)
                server_stop(&s, st, cn.ctl[1]);
            s.impl = order[j];
            server_start(&s, &st);
            if (!running && pthread_create(&ct, NULL, client_main, &cl) != 0)
                die("pthread_create failed");
            running = true;

            /* Messages that waited through the switch finish first. */
            sleep_ms(warm_ms);
            long m0 = atomic_load(&cl.msgs), n0 = atomic_load(&cl.nrtt);
            int64_t cpu0 = thread_cpu_ns(st), t0 = now_ns();
            sleep_ms(window_ms);
            long m1 = atomic_load(&cl.msgs), n1 = atomic_load(&cl.nrtt);
            int64_t cpu1 = thread_cpu_ns(st), t1 = now_ns();

            if (m1 <= m0) {
                /* Seen when other processes drive the host's TCP memory
                 * into pressure: loopback segments are dropped and wait for
                 * a retransmission timeout. Such a window says nothing
                 * about the loop; leave it out. */
                note("%s: no echo at all in a %.0f ms window: window left out", impl_name[s.impl],
                     window_ms);
                continue;
            }
            if (n1 - n0 > RTT_CAP)
                n0 = n1 - RTT_CAP;
            for (long x = n0; x < n1; x++)
                window[x - n0] = cl.rtt[x % RTT_CAP];
            fig[r][0][s.impl] = (double)(m1 - m0) * 1e9 / (double)(t1 - t0);
            fig[r][1][s.impl] = percentile(window, (size_t)(n1 - n0), 0.99);
            fig[r][2][s.impl] = (double)(cpu1 - cpu0) / (double)(m1 - m0);
        }
    }
    /* The last server echoes what is still in flight. */
    atomic_store(&cl.stop, 1);
    pthread_join(ct, NULL);
    server_stop(&s, st, cn.ctl[1]);
    if (cl.failures != 0)
        die("client: %ld echoes differed from the message", cl.failures);

    double(*per)[IMPL_COUNT] = malloc(sizeof(*per) * (size_t)bench_opts.rounds);
    if (per == NULL)
        die("out of memory");
    char cas[32];
    snprintf(cas, sizeof(cas), "%d conn%s", c, c == 1 ? "" : "s");
    struct row rows[3] = {
        {"echo", cas, "messages/s", CELL_RATIO, true, {0}, NAN, true},
        {"echo", cas, "p99 round trip us", CELL_RATIO, false, {0}, NAN, true},
        {"echo", cas, "server CPU ns/message", CELL_RATIO, false, {0}, 1.03, true},
    };
    for (int m = 0; m < 3; m++) {
        for (int r = 0; r < bench_opts.rounds; r++)
            memcpy(per[r], fig[r][m], sizeof(per[r]));
        row_from_rounds(&rows[m], (const double(*)[IMPL_COUNT])per, bench_opts.rounds);
        row_print(&rows[m]);
    }
    free(per);
    free(fig);
    free(window);
    free(cl.rtt);
    conns_close(&cn);
}

int main(int argc, char **argv)
{
    bench_init("echo", 11);
    long cs[8] = {1, 100, 1000};
    int nc = 3;
    double warm_ms = 50, window_ms = 150;
    const char *usage = "  --conns LIST      connection counts (default 1,100,1000)\n"
                        "  --ms MS           measuring window per implementation and round (default 150)\n";
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--conns") == 0 && val) {
            nc = parse_list(argv[++i], cs, 8);
        } else if (strcmp(argv[i], "--ms") == 0 && val) {
            window_ms = atof(argv[++i]);
        } else {
            bench_option(argc, argv, &i, usage);
        }
    }
    if (bench_opts.quick) {
        window_ms = 50;
        warm_ms = 20;
        if (bench_opts.rounds > 2)
            bench_opts.rounds = 2;
    }
    if (bench_opts.header)
        table_header();
    long limit = bench_fd_limit();
    for (int k = 0; k < nc; k++) {
        if (2 * cs[k] + 64 > limit) {
            note("%ld connections skipped: needs %ld descriptors, RLIMIT_NOFILE is %ld", cs[k],
                 2 * cs[k] + 64, limit);
            continue;
        }
        run_case((int)cs[k], warm_ms, window_ms);
    }
    return 0;
}
