/*
 * allocs.c: calls into the allocator on the registration, wait and wake
 * paths.
 *
 * This program defines malloc, calloc, realloc and the aligned allocators
 * itself, forwarding to glibc's __libc_* entry points and counting every
 * call made while a counted section runs. Being in the executable, these
 * definitions take precedence over libc's for the shared peer libraries as
 * well as for the static cmio. A self-check makes sure the count sees both.
 *
 * For each implementation, on 1000 fresh socketpairs (read ends; the
 * watcher structures are provided by the caller where the API allows it, as
 * a careful user would, and are set up outside the counted sections):
 *
 *   register     epoll_ctl ADD / cmio_registry_register / event_assign +
 *                event_add / ev_io_start / uv_poll_init + uv_poll_start,
 *                then one non-blocking loop run (libev and libuv hand the
 *                changes to the kernel there);
 *   reregister   a new token or callback argument on every descriptor
 *                (EPOLL_CTL_MOD / cmio_registry_reregister / event_del +
 *                event_assign + event_add / ev_io_stop + ev_io_set +
 *                ev_io_start / uv_poll_start), then one loop run;
 *   wait         1000 non-blocking loop runs while 100 descriptors are
 *                readable (and stay so: level-triggered, never read);
 *   wake         1000 times a wake (eventfd write / cmio_waker_wake /
 *                event_active / ev_async_send / uv_async_send) and a loop
 *                run that delivers it;
 *   deregister   epoll_ctl DEL / cmio_registry_deregister / event_del /
 *                ev_io_stop / uv_poll_stop, then one loop run.
 *
 * The figure is allocator calls per operation. A table that grows with the
 * highest descriptor number shows up as a small fraction on the register
 * row. cmio's target is zero on every row.
 */
#include "harness.h"
#include "peers.h"

#include <cmio/poll.h>

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Counting allocator                                                       */
/* ------------------------------------------------------------------------ */

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *p);

static atomic_long alloc_calls;

static inline void counted(void)
{
    atomic_fetch_add_explicit(&alloc_calls, 1, memory_order_relaxed);
}

void *malloc(size_t size)
{
    counted();
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    counted();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    counted();
    return __libc_realloc(p, size);
}

void free(void *p)
{
    __libc_free(p);
}

void *memalign(size_t alignment, size_t size)
{
    counted();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
    counted();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    counted();
    void *p = __libc_memalign(alignment, size);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

static long allocs_now(void)
{
    return atomic_load(&alloc_calls);
}

/* ------------------------------------------------------------------------ */
/* The operations, per implementation                                       */
/* ------------------------------------------------------------------------ */

#define NFDS 1000
#define NREADY 100
#define NWAITS 1000
#define NWAKES 1000

static int g_fds[2 * NFDS]; /* g_fds[2 * i] read end, g_fds[2 * i + 1] write end */
static long g_events;

static void on_event(void)
{
    g_events++;
}

struct ops {
    void *(*create)(void);
    void (*reg)(void *l, long i);
    void (*rereg)(void *l, long i);
    void (*dereg)(void *l, long i);
    void (*run)(void *l); /* once, non-blocking */
    void (*wake)(void *l);
    void (*destroy)(void *l);
};

/* epoll ------------------------------------------------------------------ */

struct ep_state {
    int epfd, efd;
    struct epoll_event events[1024];
};

static void *ep_create(void)
{
    struct ep_state *l = malloc(sizeof(*l));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = UINT64_MAX};
    if (l == NULL || (l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0
        || (l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0
        || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->efd, &ev) < 0)
        die("epoll set-up: %s", strerror(errno));
    return l;
}

static void ep_ctl(struct ep_state *l, int op, long i, uint64_t token)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = token};
    if (epoll_ctl(l->epfd, op, g_fds[2 * i], &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void ep_reg(void *l, long i)
{
    ep_ctl(l, EPOLL_CTL_ADD, i, (uint64_t)i);
}

static void ep_rereg(void *l, long i)
{
    ep_ctl(l, EPOLL_CTL_MOD, i, (uint64_t)i + NFDS);
}

static void ep_dereg(void *l, long i)
{
    ep_ctl(l, EPOLL_CTL_DEL, i, 0);
}

static void ep_run(void *loop)
{
    struct ep_state *l = loop;
    int k = epoll_wait(l->epfd, l->events, 1024, 0);
    for (int j = 0; j < k; j++)
        on_event();
}

static void ep_wake(void *loop)
{
    struct ep_state *l = loop;
    uint64_t one = 1;
    if (write(l->efd, &one, sizeof(one)) != sizeof(one))
        die("eventfd write: %s", strerror(errno));
}

static void ep_destroy(void *loop)
{
    struct ep_state *l = loop;
    close(l->efd);
    close(l->epfd);
    free(l);
}

/* cmio ------------------------------------------------------------------- */

struct cm_state {
    cmio_poll *poll;
    cmio_registry *reg;
    cmio_events *events;
    cmio_waker *waker;
};

static void *cm_create(void)
{
    struct cm_state *l = malloc(sizeof(*l));
    int rc;
    if (l == NULL)
        die("out of memory");
    if ((rc = cmio_poll_new(&l->poll)) < 0 || (rc = cmio_events_new(&l->events, 1024)) < 0
        || (rc = cmio_waker_new(cmio_poll_registry(l->poll), UINTPTR_MAX, &l->waker)) < 0)
        die("cmio: %s", cmio_strerror(rc));
    l->reg = cmio_poll_registry(l->poll);
    return l;
}

static void cm_check(int rc, const char *what)
{
    if (rc < 0)
        die("%s: %s", what, cmio_strerror(rc));
}

static void cm_reg(void *loop, long i)
{
    struct cm_state *l = loop;
    cm_check(cmio_registry_register(l->reg, g_fds[2 * i], (cmio_token)i, CMIO_READABLE | CMIO_LEVEL), "register");
}

static void cm_rereg(void *loop, long i)
{
    struct cm_state *l = loop;
    cm_check(cmio_registry_reregister(l->reg, g_fds[2 * i], (cmio_token)i + NFDS, CMIO_READABLE | CMIO_LEVEL),
             "reregister");
}

static void cm_dereg(void *loop, long i)
{
    struct cm_state *l = loop;
    cm_check(cmio_registry_deregister(l->reg, g_fds[2 * i]), "deregister");
}

static void cm_run(void *loop)
{
    struct cm_state *l = loop;
    int k = cmio_poll_wait(l->poll, l->events, 0);
    for (int j = 0; j < k; j++)
        if (cmio_events_get(l->events, (size_t)j) != NULL)
            on_event();
}

static void cm_wake(void *loop)
{
    struct cm_state *l = loop;
    cm_check(cmio_waker_wake(l->waker), "wake");
}

static void cm_destroy(void *loop)
{
    struct cm_state *l = loop;
    cmio_waker_free(l->waker);
    cmio_events_free(l->events);
    cmio_poll_free(l->poll);
    free(l);
}

/* libevent --------------------------------------------------------------- */

#ifdef BENCH_HAVE_LIBEVENT
struct le_state {
    struct event_base *base;
    char *ev; /* NFDS events of event_get_struct_event_size() bytes */
    struct event *wake;
};

static struct event *le_ev(struct le_state *l, long i)
{
    return (struct event *)(void *)(l->ev + (size_t)i * event_get_struct_event_size());
}

static void le_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    on_event();
}

static void *le_create(void)
{
    struct le_state *l = malloc(sizeof(*l));
    if (l == NULL || (l->base = event_base_new()) == NULL
        || (l->ev = calloc(NFDS, event_get_struct_event_size())) == NULL
        || (l->wake = event_new(l->base, -1, 0, le_cb, NULL)) == NULL)
        die("libevent set-up failed");
    return l;
}

static void le_reg(void *loop, long i)
{
    struct le_state *l = loop;
    if (event_assign(le_ev(l, i), l->base, g_fds[2 * i], LE_READ | LE_PERSIST, le_cb, (void *)(intptr_t)i) < 0
        || event_add(le_ev(l, i), NULL) < 0)
        die("event_add failed");
}

static void le_rereg(void *loop, long i)
{
    struct le_state *l = loop;
    if (event_del(le_ev(l, i)) < 0
        || event_assign(le_ev(l, i), l->base, g_fds[2 * i], LE_READ | LE_PERSIST, le_cb, (void *)(intptr_t)(i + NFDS)) < 0
        || event_add(le_ev(l, i), NULL) < 0)
        die("event_add failed");
}

static void le_dereg(void *loop, long i)
{
    struct le_state *l = loop;
    if (event_del(le_ev(l, i)) < 0)
        die("event_del failed");
}

static void le_run(void *loop)
{
    struct le_state *l = loop;
    event_base_loop(l->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void le_wake(void *loop)
{
    struct le_state *l = loop;
    event_active(l->wake, LE_READ, 0);
}

static void le_destroy(void *loop)
{
    struct le_state *l = loop;
    event_free(l->wake);
    event_base_free(l->base);
    free(l->ev);
    free(l);
}
#endif

/* libev ------------------------------------------------------------------ */

#ifdef BENCH_HAVE_LIBEV
struct lv_state {
    struct ev_loop *loop;
    ev_io io[NFDS];
    ev_async async;
};

static void lv_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    on_event();
}

static void lv_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    on_event();
}

static void *lv_create(void)
{
    struct lv_state *l = malloc(sizeof(*l));
    if (l == NULL || (l->loop = ev_loop_new(EVBACKEND_EPOLL)) == NULL)
        die("ev_loop_new(EVBACKEND_EPOLL) failed");
    for (long i = 0; i < NFDS; i++)
        ev_io_init(&l->io[i], lv_cb, g_fds[2 * i], EV_READ);
    ev_async_init(&l->async, lv_async_cb);
    ev_async_start(l->loop, &l->async);
    return l;
}

static void lv_reg(void *loop, long i)
{
    struct lv_state *l = loop;
    l->io[i].data = (void *)(intptr_t)i;
    ev_io_start(l->loop, &l->io[i]);
}

static void lv_rereg(void *loop, long i)
{
    struct lv_state *l = loop;
    ev_io_stop(l->loop, &l->io[i]);
    ev_io_set(&l->io[i], g_fds[2 * i], EV_READ);
    l->io[i].data = (void *)(intptr_t)(i + NFDS);
    ev_io_start(l->loop, &l->io[i]);
}

static void lv_dereg(void *loop, long i)
{
    struct lv_state *l = loop;
    ev_io_stop(l->loop, &l->io[i]);
}

static void lv_run(void *loop)
{
    struct lv_state *l = loop;
    ev_run(l->loop, EVRUN_NOWAIT);
}

static void lv_wake(void *loop)
{
    struct lv_state *l = loop;
    ev_async_send(l->loop, &l->async);
}

static void lv_destroy(void *loop)
{
    struct lv_state *l = loop;
    ev_async_stop(l->loop, &l->async);
    ev_loop_destroy(l->loop);
    free(l);
}
#endif

/* libuv ------------------------------------------------------------------ */

#ifdef BENCH_HAVE_LIBUV
struct lu_state {
    uv_loop_t loop;
    uv_poll_t poll[NFDS];
    uv_async_t async;
};

static void lu_cb(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)status;
    (void)events;
    on_event();
}

static void lu_async_cb(uv_async_t *h)
{
    (void)h;
    on_event();
}

static void *lu_create(void)
{
    struct lu_state *l = malloc(sizeof(*l));
    if (l == NULL || uv_loop_init(&l->loop) != 0 || uv_async_init(&l->loop, &l->async, lu_async_cb) != 0)
        die("libuv set-up failed");
    return l;
}

static void lu_reg(void *loop, long i)
{
    struct lu_state *l = loop;
    int rc = uv_poll_init(&l->loop, &l->poll[i], g_fds[2 * i]);
    if (rc == 0)
        rc = uv_poll_start(&l->poll[i], UV_READABLE, lu_cb);
    if (rc != 0)
        die("uv_poll: %s", uv_strerror(rc));
    l->poll[i].data = (void *)(intptr_t)i;
}

static void lu_rereg(void *loop, long i)
{
    struct lu_state *l = loop;
    l->poll[i].data = (void *)(intptr_t)(i + NFDS);
    int rc = uv_poll_start(&l->poll[i], UV_READABLE, lu_cb);
    if (rc != 0)
        die("uv_poll_start: %s", uv_strerror(rc));
}

static void lu_dereg(void *loop, long i)
{
    struct lu_state *l = loop;
    if (uv_poll_stop(&l->poll[i]) != 0)
        die("uv_poll_stop failed");
}

static void lu_run(void *loop)
{
    struct lu_state *l = loop;
    uv_run(&l->loop, UV_RUN_NOWAIT);
}

static void lu_wake(void *loop)
{
    struct lu_state *l = loop;
    if (uv_async_send(&l->async) != 0)
        die("uv_async_send failed");
}

static void lu_destroy(void *loop)
{
    struct lu_state *l = loop;
    for (long i = 0; i < NFDS; i++)
        uv_close((uv_handle_t *)&l->poll[i], NULL);
    uv_close((uv_handle_t *)&l->async, NULL);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&l->loop) != 0)
        die("uv_loop_close: handles left open");
    free(l);
}
#endif

static const struct ops impl_ops[IMPL_COUNT] = {
    [IMPL_EPOLL] = {ep_create, ep_reg, ep_rereg, ep_dereg, ep_run, ep_wake, ep_destroy},
    [IMPL_CMIO] = {cm_create, cm_reg, cm_rereg, cm_dereg, cm_run, cm_wake, cm_destroy},
#ifdef BENCH_HAVE_LIBEVENT
    [IMPL_LIBEVENT] = {le_create, le_reg, le_rereg, le_dereg, le_run, le_wake, le_destroy},
#endif
#ifdef BENCH_HAVE_LIBEV
    [IMPL_LIBEV] = {lv_create, lv_reg, lv_rereg, lv_dereg, lv_run, lv_wake, lv_destroy},
#endif
#ifdef BENCH_HAVE_LIBUV
    [IMPL_LIBUV] = {lu_create, lu_reg, lu_rereg, lu_dereg, lu_run, lu_wake, lu_destroy},
#endif
};

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

enum { OP_REGISTER, OP_REREGISTER, OP_WAIT, OP_WAKE, OP_DEREGISTER, OP_COUNT };

static const char *const op_name[OP_COUNT] = {"register", "reregister", "wait", "wake", "deregister"};

static void drain(long i)
{
    char buf[16];
    while (recv(g_fds[2 * i], buf, sizeof(buf), 0) > 0)
        ;
}

/* Allocator calls per operation, for one implementation. */
static void count(enum impl impl, double out[OP_COUNT])
{
    const struct ops *o = &impl_ops[impl];
    void *l = o->create();
    long a0;

    a0 = allocs_now();
    for (long i = 0; i < NFDS; i++)
        o->reg(l, i);
    o->run(l);
    out[OP_REGISTER] = (double)(allocs_now() - a0) / NFDS;

    a0 = allocs_now();
    for (long i = 0; i < NFDS; i++)
        o->rereg(l, i);
    o->run(l);
    out[OP_REREGISTER] = (double)(allocs_now() - a0) / NFDS;

    for (long i = 0; i < NREADY; i++)
        if (send(g_fds[2 * (i * (NFDS / NREADY)) + 1], "r", 1, 0) != 1)
            die("send: %s", strerror(errno));
    g_events = 0;
    a0 = allocs_now();
    for (long w = 0; w < NWAITS; w++)
        o->run(l);
    out[OP_WAIT] = (double)(allocs_now() - a0) / NWAITS;
    /* libevent's first waits return fewer (its buffer starts at 32 events
     * and grows), the rest come in the next wait: level-triggered. */
    if (g_events < (long)NWAITS * NREADY * 9 / 10 || g_events > (long)NWAITS * NREADY)
        die("%s: %ld events in %d waits, expected about %d each", impl_name[impl], g_events, NWAITS, NREADY);
    for (long i = 0; i < NREADY; i++)
        drain(i * (NFDS / NREADY));
    o->run(l);

    g_events = 0;
    a0 = allocs_now();
    for (long w = 0; w < NWAKES; w++) {
        o->wake(l);
        o->run(l);
    }
    out[OP_WAKE] = (double)(allocs_now() - a0) / NWAKES;
    if (g_events != NWAKES)
        die("%s: %ld wake-ups delivered of %d", impl_name[impl], g_events, NWAKES);

    a0 = allocs_now();
    for (long i = 0; i < NFDS; i++)
        o->dereg(l, i);
    o->run(l);
    out[OP_DEREGISTER] = (double)(allocs_now() - a0) / NFDS;

    o->destroy(l);
}

/* The counter must see the static cmio and the shared peers alike, or a
 * zero would prove nothing. */
static void self_check(void)
{
    long a0 = allocs_now();
    cmio_events *ev;
    if (cmio_events_new(&ev, 16) < 0 || allocs_now() - a0 != 1)
        die("self-check: cmio_events_new made %ld counted allocations, expected 1", allocs_now() - a0);
    cmio_events_free(ev);
#ifdef BENCH_HAVE_LIBEVENT
    a0 = allocs_now();
    struct event_base *b = event_base_new();
    if (b == NULL || allocs_now() == a0)
        die("self-check: libevent's allocations are not counted");
    event_base_free(b);
#endif
#ifdef BENCH_HAVE_LIBEV
    a0 = allocs_now();
    struct ev_loop *lp = ev_loop_new(EVBACKEND_EPOLL);
    if (lp == NULL || allocs_now() == a0)
        die("self-check: libev's allocations are not counted");
    ev_loop_destroy(lp);
#endif
#ifdef BENCH_HAVE_LIBUV
    a0 = allocs_now();
    uv_loop_t *ul = uv_loop_new();
    if (ul == NULL || allocs_now() == a0)
        die("self-check: libuv's allocations are not counted");
    uv_loop_delete(ul);
#endif
}

int main(int argc, char **argv)
{
    bench_init("allocs", 1);
    for (int i = 1; i < argc; i++)
        bench_option(argc, argv, &i, "");
    self_check();
    for (long i = 0; i < NFDS; i++)
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, &g_fds[2 * i]) < 0)
            die("socketpair: %s", strerror(errno));

    double fig[OP_COUNT][1][IMPL_COUNT];
    for (int i = 0; i < IMPL_COUNT; i++) {
        double out[OP_COUNT];
        for (int op = 0; op < OP_COUNT; op++)
            out[op] = NAN;
        if (impl_enabled((enum impl)i))
            count((enum impl)i, out);
        for (int op = 0; op < OP_COUNT; op++)
            fig[op][0][i] = out[op];
    }
    if (bench_opts.header)
        table_header();
    for (int op = 0; op < OP_COUNT; op++) {
        struct row row = {"allocations", op_name[op], "allocator calls/op", CELL_ABS, false, {0}, 0, true};
        row_from_rounds(&row, (const double(*)[IMPL_COUNT])fig[op], 1);
        row_print(&row);
    }
    for (long i = 0; i < 2 * NFDS; i++)
        close(g_fds[i]);
    return 0;
}
