/*
 * wake.c: the round trip of a cross-thread wake-up.
 *
 * Two threads, pinned to different CPUs, each block in their own event
 * loop. The initiator notes the time and wakes the responder's loop; the
 * responder's wake callback wakes the initiator's loop back, whose callback
 * notes the round trip and starts the next. Each implementation uses the
 * facility a user of it would:
 *
 *   epoll     the floor: an eventfd per loop, registered edge-triggered and
 *             written by the other thread (never read: each write is a new
 *             edge, as cmio's epoll waker does it);
 *   cmio      cmio_waker_wake;
 *   libevent  event_active on an fd-less event, with evthread_use_pthreads
 *             (the base is notified through its own eventfd);
 *   libev     ev_async_send;
 *   libuv     uv_async_send.
 *
 * The table shows the median and the 99th percentile round trip.
 */
#include "harness.h"
#include "peers.h"

#include <cmio/poll.h>

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { CPU_RESPONDER = 0, CPU_INITIATOR = 1 };
enum { WARMUP = 200 };

struct pingpong {
    long target; /* round trips to make, warm-up included */
    long done;
    int64_t sent_at;
    double *rtt; /* microseconds, after the warm-up */
    atomic_int stop;
};

struct side;

/* One implementation's loop with its wake facility. */
struct ops {
    void (*init)(struct side *s);
    void (*wake)(struct side *s); /* called from the other side's thread */
    void (*run)(struct side *s);  /* returns once on_wake said stop */
    void (*fini)(struct side *s);
};

struct side {
    bool initiator;
    struct side *peer;
    struct pingpong *pp;
    const struct ops *ops;
    union {
        struct {
            int epfd, efd;
        } ep;
        struct {
            cmio_poll *poll;
            cmio_events *events;
            cmio_waker *waker;
        } cm;
#ifdef BENCH_HAVE_LIBEVENT
        struct {
            struct event_base *base;
            struct event *ev;
        } le;
#endif
#ifdef BENCH_HAVE_LIBEV
        struct {
            struct ev_loop *loop;
            ev_async async;
        } lv;
#endif
#ifdef BENCH_HAVE_LIBUV
        struct {
            uv_loop_t loop;
            uv_async_t async;
        } lu;
#endif
    } u;
};

/* The same work for every implementation. Returns true when this side's
 * loop must end. */
static bool on_wake(struct side *s)
{
    struct pingpong *pp = s->pp;
    if (!s->initiator) {
        if (atomic_load(&pp->stop))
            return true;
        s->peer->ops->wake(s->peer);
        return false;
    }
    int64_t t = now_ns();
    if (pp->done >= WARMUP)
        pp->rtt[pp->done - WARMUP] = (double)(t - pp->sent_at) / 1e3;
    if (++pp->done == pp->target) {
        atomic_store(&pp->stop, 1);
        s->peer->ops->wake(s->peer);
        return true;
    }
    pp->sent_at = now_ns();
    s->peer->ops->wake(s->peer);
    return false;
}

/* ------------------------------------------------------------------------ */
/* epoll and eventfd: the floor                                             */
/* ------------------------------------------------------------------------ */

static void ep_init(struct side *s)
{
    s->u.ep.epfd = epoll_create1(EPOLL_CLOEXEC);
    s->u.ep.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 0};
    if (s->u.ep.epfd < 0 || s->u.ep.efd < 0 || epoll_ctl(s->u.ep.epfd, EPOLL_CTL_ADD, s->u.ep.efd, &ev) < 0)
        die("eventfd loop: %s", strerror(errno));
}

static void ep_wake(struct side *s)
{
    uint64_t one = 1;
    if (write(s->u.ep.efd, &one, sizeof(one)) != sizeof(one))
        die("eventfd write: %s", strerror(errno));
}

static void ep_run(struct side *s)
{
    struct epoll_event events[8];
    for (;;) {
        int k = epoll_wait(s->u.ep.epfd, events, 8, -1);
        if (k < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int j = 0; j < k; j++)
            if (on_wake(s))
                return;
    }
}

static void ep_fini(struct side *s)
{
    close(s->u.ep.efd);
    close(s->u.ep.epfd);
}

/* ------------------------------------------------------------------------ */
/* cmio                                                                     */
/* ------------------------------------------------------------------------ */

static void cm_init(struct side *s)
{
    int rc;
    if ((rc = cmio_poll_new(&s->u.cm.poll)) < 0 || (rc = cmio_events_new(&s->u.cm.events, 8)) < 0
        || (rc = cmio_waker_new(cmio_poll_registry(s->u.cm.poll), 0, &s->u.cm.waker)) < 0)
        die("cmio: %s", cmio_strerror(rc));
}

static void cm_wake(struct side *s)
{
    int rc = cmio_waker_wake(s->u.cm.waker);
    if (rc < 0)
        die("cmio_waker_wake: %s", cmio_strerror(rc));
}

static void cm_run(struct side *s)
{
    for (;;) {
        int k = cmio_poll_wait(s->u.cm.poll, s->u.cm.events, -1);
        if (k < 0 && k != -EINTR)
            die("cmio_poll_wait: %s", cmio_strerror(k));
        for (int j = 0; j < k; j++)
            if (on_wake(s))
                return;
    }
}

static void cm_fini(struct side *s)
{
    cmio_waker_free(s->u.cm.waker);
    cmio_events_free(s->u.cm.events);
    cmio_poll_free(s->u.cm.poll);
}

/* ------------------------------------------------------------------------ */
/* libevent                                                                 */
/* ------------------------------------------------------------------------ */

#ifdef BENCH_HAVE_LIBEVENT
static void le_cb(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;
    (void)fd;
    (void)what;
    if (on_wake(s))
        event_base_loopbreak(s->u.le.base);
}

static void le_init(struct side *s)
{
    if ((s->u.le.base = event_base_new()) == NULL
        || (s->u.le.ev = event_new(s->u.le.base, -1, 0, le_cb, s)) == NULL)
        die("libevent set-up failed");
}

static void le_wake(struct side *s)
{
    event_active(s->u.le.ev, LE_READ, 0);
}

static void le_run(struct side *s)
{
    if (event_base_loop(s->u.le.base, EVLOOP_NO_EXIT_ON_EMPTY) < 0)
        die("event_base_loop failed");
}

static void le_fini(struct side *s)
{
    event_free(s->u.le.ev);
    event_base_free(s->u.le.base);
}
#endif

/* ------------------------------------------------------------------------ */
/* libev                                                                    */
/* ------------------------------------------------------------------------ */

#ifdef BENCH_HAVE_LIBEV
static void lv_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    if (on_wake(w->data))
        ev_break(loop, EVBREAK_ALL);
}

static void lv_init(struct side *s)
{
    if ((s->u.lv.loop = ev_loop_new(EVBACKEND_EPOLL)) == NULL)
        die("ev_loop_new(EVBACKEND_EPOLL) failed");
    ev_async_init(&s->u.lv.async, lv_cb);
    s->u.lv.async.data = s;
    ev_async_start(s->u.lv.loop, &s->u.lv.async);
}

static void lv_wake(struct side *s)
{
    ev_async_send(s->u.lv.loop, &s->u.lv.async);
}

static void lv_run(struct side *s)
{
    ev_run(s->u.lv.loop, 0);
}

static void lv_fini(struct side *s)
{
    ev_async_stop(s->u.lv.loop, &s->u.lv.async);
    ev_loop_destroy(s->u.lv.loop);
}
#endif

/* ------------------------------------------------------------------------ */
/* libuv                                                                    */
/* ------------------------------------------------------------------------ */

#ifdef BENCH_HAVE_LIBUV
static void lu_cb(uv_async_t *h)
{
    if (on_wake(h->data))
        uv_stop(h->loop);
}

static void lu_init(struct side *s)
{
    if (uv_loop_init(&s->u.lu.loop) != 0 || uv_async_init(&s->u.lu.loop, &s->u.lu.async, lu_cb) != 0)
        die("libuv set-up failed");
    s->u.lu.async.data = s;
}

static void lu_wake(struct side *s)
{
    if (uv_async_send(&s->u.lu.async) != 0)
        die("uv_async_send failed");
}

static void lu_run(struct side *s)
{
    uv_run(&s->u.lu.loop, UV_RUN_DEFAULT);
}

static void lu_fini(struct side *s)
{
    uv_close((uv_handle_t *)&s->u.lu.async, NULL);
    uv_run(&s->u.lu.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&s->u.lu.loop) != 0)
        die("uv_loop_close: handles left open");
}
#endif

static const struct ops impl_ops[IMPL_COUNT] = {
    [IMPL_EPOLL] = {ep_init, ep_wake, ep_run, ep_fini},
    [IMPL_CMIO] = {cm_init, cm_wake, cm_run, cm_fini},
#ifdef BENCH_HAVE_LIBEVENT
    [IMPL_LIBEVENT] = {le_init, le_wake, le_run, le_fini},
#endif
#ifdef BENCH_HAVE_LIBEV
    [IMPL_LIBEV] = {lv_init, lv_wake, lv_run, lv_fini},
#endif
#ifdef BENCH_HAVE_LIBUV
    [IMPL_LIBUV] = {lu_init, lu_wake, lu_run, lu_fini},
#endif
};

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

static void *responder_main(void *arg)
{
    struct side *s = arg;
    bench_pin(CPU_RESPONDER);
    s->ops->run(s);
    return NULL;
}

static void *initiator_main(void *arg)
{
    struct side *s = arg;
    bench_pin(CPU_INITIATOR);
    s->pp->sent_at = now_ns();
    s->peer->ops->wake(s->peer);
    s->ops->run(s);
    return NULL;
}

/* Median and p99 in microseconds of `trips` round trips. */
static void measure(enum impl impl, long trips, double *rtt, double *med, double *p99)
{
    struct pingpong pp = {.target = trips + WARMUP, .rtt = rtt};
    atomic_init(&pp.stop, 0);
    struct side a = {.initiator = false, .pp = &pp, .ops = &impl_ops[impl]};
    struct side b = {.initiator = true, .pp = &pp, .ops = &impl_ops[impl]};
    a.peer = &b;
    b.peer = &a;
    /* Both loops exist before either thread may wake the other. */
    a.ops->init(&a);
    b.ops->init(&b);
    pthread_t ta, tb;
    if (pthread_create(&ta, NULL, responder_main, &a) != 0 || pthread_create(&tb, NULL, initiator_main, &b) != 0)
        die("pthread_create failed");
    pthread_join(tb, NULL);
    pthread_join(ta, NULL);
    a.ops->fini(&a);
    b.ops->fini(&b);
    if (pp.done != pp.target)
        die("%s: %ld round trips of %ld", impl_name[impl], pp.done, pp.target);
    *p99 = percentile(rtt, (size_t)trips, 0.99);
    *med = median(rtt, (size_t)trips);
}

int main(int argc, char **argv)
{
    bench_init("wake", 21);
    long trips = 2000;
    const char *usage = "  --trips N         round trips per implementation and round (default 2000)\n";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--trips") == 0 && i + 1 < argc)
            trips = atol(argv[++i]);
        else
            bench_option(argc, argv, &i, usage);
    }
    if (trips < 100)
        die("--trips must be at least 100");
    if (bench_opts.quick) {
        trips = 1000;
        if (bench_opts.rounds > 2)
            bench_opts.rounds = 2;
    }
#ifdef BENCH_HAVE_LIBEVENT
    if (evthread_use_pthreads() != 0)
        die("evthread_use_pthreads failed");
#endif
    if (bench_opts.header)
        table_header();

    double *rtt = malloc(sizeof(double) * (size_t)trips);
    double(*med)[IMPL_COUNT] = malloc(sizeof(*med) * (size_t)bench_opts.rounds);
    double(*p99)[IMPL_COUNT] = malloc(sizeof(*p99) * (size_t)bench_opts.rounds);
    if (rtt == NULL || med == NULL || p99 == NULL)
        die("out of memory");
    note("%ld round trips: %d rounds", trips, bench_opts.rounds);
    for (int r = 0; r < bench_opts.rounds; r++) {
        enum impl order[IMPL_COUNT];
        int k = impl_order(r, order);
        for (int i = 0; i < IMPL_COUNT; i++)
            med[r][i] = p99[r][i] = NAN;
        for (int j = 0; j < k; j++)
            measure(order[j], trips, rtt, &med[r][order[j]], &p99[r][order[j]]);
    }
    struct row rm = {"wake", "cross-thread", "median round trip us", CELL_RATIO, false, {0}, 1.10, true};
    struct row rp = {"wake", "cross-thread", "p99 round trip us", CELL_RATIO, false, {0}, NAN, true};
    row_from_rounds(&rm, (const double(*)[IMPL_COUNT])med, bench_opts.rounds);
    row_from_rounds(&rp, (const double(*)[IMPL_COUNT])p99, bench_opts.rounds);
    row_print(&rm);
    row_print(&rp);
    free(rtt);
    free(med);
    free(p99);
    return 0;
}
