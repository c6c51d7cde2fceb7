/*
 * idle_fds.c: the cost of one wait while many registered descriptors stay
 * idle.
 *
 * n idle eventfds (never written, so never readable) are registered for
 * reading next to one socket that always holds a byte and is never read.
 * Every wait therefore returns exactly one event at once, and the time per
 * wait is the loop's own cost plus one epoll_wait that reports one event:
 * a wait that did work per registered descriptor would show it here. Each
 * implementation runs its loop once per wait in blocking mode (epoll_wait
 * and cmio_poll_wait with no timeout, EVLOOP_ONCE, EVRUN_ONCE,
 * UV_RUN_ONCE), as a server does; the callback only counts.
 *
 * RLIMIT_NOFILE caps the idle descriptors (20 000 on some machines). Past
 * that cap, the raw epoll loop and cmio are measured with more
 * registrations than descriptors: epoll keys a registration by the pair
 * (open file, descriptor number) and keeps it while the file stays open, so
 * registering k duplicates of one eventfd and closing the duplicates leaves
 * k live registrations behind, and a few files times a few thousand numbers
 * give 100 000 of them. The peers keep a table indexed by descriptor number
 * and cannot be fed such registrations; their cells are n/a there.
 *
 * The cases are interleaved within each round, so the flatness figures
 * (wait cost at the largest n over wait cost at n=100, per implementation)
 * compare waits measured moments apart.
 */
#include "harness.h"
#include "peers.h"

#include <cmio/poll.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACTIVE_TOKEN ((uint64_t)-1)
#define BATCH 1000

struct idle_set {
    long n;       /* registrations wanted */
    int *fds;     /* real descriptors: n of them, or `files` when aliased */
    long files;   /* descriptors held */
    bool aliased; /* n registrations made from duplicates of `files` files */
    int active[2];
};

static long g_fired, g_stray;

static inline void on_event(uint64_t token)
{
    if (token == ACTIVE_TOKEN)
        g_fired++;
    else
        g_stray++;
}

/* ------------------------------------------------------------------------ */
/* The timed loops: one blocking run per wait                               */
/* ------------------------------------------------------------------------ */

BENCH_TIMED static void idle_timed_epoll(void *loop, long waits)
{
    struct ep_loop *l = loop;
    for (long w = 0; w < waits; w++) {
        int k = epoll_wait(l->epfd, l->events, BENCH_EVENTS_CAP, -1);
        if (k < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int j = 0; j < k; j++)
            on_event(l->events[j].data.u64);
    }
}

BENCH_TIMED static void idle_timed_cmio(void *loop, long waits)
{
    struct cm_loop *l = loop;
    for (long w = 0; w < waits; w++) {
        int k = cmio_poll_wait(l->poll, l->events, -1);
        if (k < 0 && k != -EINTR)
            die("cmio_poll_wait: %s", cmio_strerror(k));
        for (int j = 0; j < k; j++)
            on_event((uint64_t)cmio_event_token(cmio_events_get(l->events, (size_t)j)));
    }
}

#ifdef BENCH_HAVE_LIBEVENT
static void le_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    on_event((uint64_t)(uintptr_t)arg);
}

BENCH_TIMED static void idle_timed_libevent(void *loop, long waits)
{
    struct le_loop *l = loop;
    for (long w = 0; w < waits; w++)
        event_base_loop(l->base, EVLOOP_ONCE);
}
#endif

#ifdef BENCH_HAVE_LIBEV
static void lv_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    on_event((uint64_t)(uintptr_t)w->data);
}

BENCH_TIMED static void idle_timed_libev(void *loop, long waits)
{
    struct lv_loop *l = loop;
    for (long w = 0; w < waits; w++)
        ev_run(l->loop, EVRUN_ONCE);
}
#endif

#ifdef BENCH_HAVE_LIBUV
static void lu_cb(uv_poll_t *h, int status, int events)
{
    (void)events;
    if (status < 0)
        g_stray++;
    else
        on_event((uint64_t)(uintptr_t)h->data);
}

BENCH_TIMED static void idle_timed_libuv(void *loop, long waits)
{
    struct lu_loop *l = loop;
    for (long w = 0; w < waits; w++)
        uv_run(&l->loop, UV_RUN_ONCE);
}
#endif

/* Each implementation's timed loop, and its callback if it is a peer. */
struct ops {
    void (*run)(void *loop, long waits);
    peer_cb cb;
};

static const struct ops impl_ops[IMPL_COUNT] = {
    [IMPL_EPOLL] = {idle_timed_epoll, NULL},
    [IMPL_CMIO] = {idle_timed_cmio, NULL},
#ifdef BENCH_HAVE_LIBEVENT
    [IMPL_LIBEVENT] = {idle_timed_libevent, PEER_CB(le_cb)},
#endif
#ifdef BENCH_HAVE_LIBEV
    [IMPL_LIBEV] = {idle_timed_libev, PEER_CB(lv_cb)},
#endif
#ifdef BENCH_HAVE_LIBUV
    [IMPL_LIBUV] = {idle_timed_libuv, PEER_CB(lu_cb)},
#endif
};

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

static void set_open(struct idle_set *set, long n, long real_max)
{
    set->n = n;
    set->aliased = n > real_max;
    /* Aliased: files of up to 10 000 registrations each (fewer if the
     * limit is lower), duplicated onto numbers that are freed again. */
    long per_file = real_max / 2 < 10000 ? real_max / 2 : 10000;
    set->files = set->aliased ? (n + per_file - 1) / per_file : n;
    set->fds = malloc(sizeof(int) * (size_t)set->files);
    if (set->fds == NULL)
        die("out of memory");
    for (long i = 0; i < set->files; i++)
        if ((set->fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
            die("eventfd %ld of %ld: %s", i + 1, set->files, strerror(errno));
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, set->active) < 0
        || send(set->active[1], "x", 1, 0) != 1)
        die("active socket: %s", strerror(errno));
}

static void set_close(struct idle_set *set)
{
    for (long i = 0; i < set->files; i++)
        close(set->fds[i]);
    close(set->active[0]);
    close(set->active[1]);
    free(set->fds);
}

/* Registers every idle registration and the active socket. With an aliased
 * set (epoll and cmio only), each file is duplicated onto many numbers,
 * every duplicate is registered, and the duplicates are closed again: the
 * registrations stay, as long as the original descriptor keeps the file
 * open. */
static void *set_setup(enum impl i, struct idle_set *set)
{
    void *loop = loop_open(i, set->n + 1, impl_ops[i].cb);
    if (!set->aliased) {
        for (long k = 0; k < set->n; k++)
            loop_watch(i, loop, set->fds[k], (uint64_t)k);
    } else {
        long per_file = (set->n + set->files - 1) / set->files, done = 0;
        int *dups = malloc(sizeof(int) * (size_t)per_file);
        if (dups == NULL)
            die("out of memory");
        for (long f = 0; f < set->files && done < set->n; f++) {
            long k = 0;
            for (; k < per_file && done < set->n; k++, done++) {
                if ((dups[k] = dup(set->fds[f])) < 0)
                    die("dup: %s", strerror(errno));
                loop_watch(i, loop, dups[k], (uint64_t)done);
            }
            while (k > 0)
                close(dups[--k]);
        }
        free(dups);
    }
    loop_watch(i, loop, set->active[0], ACTIVE_TOKEN);
    return loop;
}

/* Median nanoseconds per wait over batches of BATCH waits, for about
 * budget_ms. The thread's CPU time: the wait never blocks (see harness.h). */
static double measure(enum impl i, struct idle_set *set, double budget_ms)
{
    const struct ops *o = &impl_ops[i];
    void *loop = set_setup(i, set);
    double samples[512];
    size_t ns = 0;
    g_fired = g_stray = 0;
    o->run(loop, BATCH); /* warm-up; libev and libuv also apply the registrations here */
    int64_t end = now_ns() + (int64_t)(budget_ms * 1e6);
    while (ns < 512 && (ns < 5 || now_ns() < end)) {
        int64_t t0 = self_cpu_ns();
        o->run(loop, BATCH);
        samples[ns++] = (double)(self_cpu_ns() - t0) / BATCH;
    }
    loop_close(i, loop);
    if (g_stray != 0 || g_fired != (long)(ns + 1) * BATCH)
        die("%s: %ld events for %ld waits, %ld from idle descriptors", impl_name[i], g_fired,
            (long)(ns + 1) * BATCH, g_stray);
    return median(samples, ns);
}

int main(int argc, char **argv)
{
    bench_init("idle_fds", 7);
    long req[8] = {100, 1000, 10000, 100000};
    int nreq = 4;
    double budget_ms = 20;
    const char *usage = "  --n LIST          idle registrations (default 100,1000,10000,100000)\n"
                        "  --ms MS           time per implementation, case and round (default 20)\n";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            nreq = parse_list(argv[++i], req, 8);
        } else if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc) {
            budget_ms = atof(argv[++i]);
        } else {
            bench_option(argc, argv, &i, usage);
        }
    }
    if (bench_opts.quick) {
        budget_ms = 5;
        if (bench_opts.rounds > 3)
            bench_opts.rounds = 3;
    }

    /* The cases: each requested n, plus the largest n the descriptor limit
     * allows with one descriptor per registration when some n is beyond it
     * (that one then runs aliased, for epoll and cmio only). */
    long limit = bench_fd_limit();
    long real_max = (limit - 100) / 100 * 100;
    long cases[9];
    int nc = 0;
    bool beyond = false;
    for (int k = 0; k < nreq; k++) {
        if (req[k] <= real_max)
            cases[nc++] = req[k];
        else
            beyond = true;
    }
    if (beyond) {
        cases[nc++] = real_max;
        for (int k = 0; k < nreq; k++)
            if (req[k] > real_max)
                cases[nc++] = req[k];
        note("RLIMIT_NOFILE is %ld: n up to %ld with one descriptor each; beyond, epoll and cmio "
             "only, with aliased registrations",
             limit, real_max);
    }

    double(*fig)[9][IMPL_COUNT] = malloc(sizeof(*fig) * (size_t)bench_opts.rounds);
    if (fig == NULL)
        die("out of memory");
    note("n=%ld..%ld: %d rounds", cases[0], cases[nc - 1], bench_opts.rounds);
    for (int r = 0; r < bench_opts.rounds; r++) {
        for (int c = 0; c < nc; c++) {
            struct idle_set set;
            set_open(&set, cases[c], real_max);
            enum impl order[IMPL_COUNT];
            int k = impl_order(r + c, order);
            for (int i = 0; i < IMPL_COUNT; i++)
                fig[r][c][i] = NAN;
            for (int j = 0; j < k; j++)
                if (!set.aliased || order[j] == IMPL_EPOLL || order[j] == IMPL_CMIO)
                    fig[r][c][order[j]] = measure(order[j], &set, budget_ms);
            set_close(&set);
        }
    }

    if (bench_opts.header)
        table_header();
    double(*per)[IMPL_COUNT] = malloc(sizeof(*per) * (size_t)bench_opts.rounds);
    if (per == NULL)
        die("out of memory");
    for (int c = 0; c < nc; c++) {
        char cas[64];
        snprintf(cas, sizeof(cas), "n=%ld idle%s", cases[c], cases[c] > real_max ? " (aliased)" : "");
        for (int r = 0; r < bench_opts.rounds; r++)
            memcpy(per[r], fig[r][c], sizeof(per[r]));
        struct row row = {"idle fds", cas, "CPU ns/wait", CELL_RATIO, false, {0}, NAN, true};
        row_from_rounds(&row, (const double(*)[IMPL_COUNT])per, bench_opts.rounds);
        row_print(&row);
    }
    /* Flatness: each implementation against itself, from n=100 (the first
     * case) to the largest real and the largest aliased n. */
    for (int c = 1; c < nc; c++) {
        bool last_real = cases[c] <= real_max && (c + 1 == nc || cases[c + 1] > real_max);
        if (!last_real && c + 1 != nc)
            continue;
        for (int r = 0; r < bench_opts.rounds; r++)
            for (int i = 0; i < IMPL_COUNT; i++)
                per[r][i] = fig[r][c][i] / fig[r][0][i];
        char cas[64], metric[64];
        snprintf(cas, sizeof(cas), "n=%ld vs n=%ld", cases[c], cases[0]);
        snprintf(metric, sizeof(metric), "own CPU ns/wait ratio");
        /* Flat: within 10 % from the smallest to the largest n. */
        struct row row = {"idle fds", cas, metric, CELL_ABS, false, {0}, 1.10, false};
        row_from_rounds(&row, (const double(*)[IMPL_COUNT])per, bench_opts.rounds);
        row_print(&row);
    }
    free(per);
    free(fig);
    return 0;
}
