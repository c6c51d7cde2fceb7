/*
 * pipechain.c: the event loop's own cost per event, by the method of
 * libevent's test/bench.c.
 *
 * n socketpairs; the read end of each is registered for reading. An
 * iteration sends one byte into a of them (spread evenly), then runs the
 * loop until every byte is consumed: each readable callback receives one
 * byte and, while any of the w writes are left, sends one byte to the next
 * pair. The figure is the time of the loop part of an iteration (a + w
 * events), in microseconds, as libevent's bench reports it.
 *
 * Every implementation makes the same system calls per event: one recv of
 * one byte and one send of one byte, from the same function (chain_event),
 * plus whatever its loop itself needs. The registrations are all
 * level-triggered and persistent: libevent's bench uses EV_PERSIST, libev's
 * ev_io and libuv's uv_poll_t have no other mode, and an edge-triggered
 * loop would need a second recv per event to see EAGAIN. The loop runs non-blocking (a zero timeout), as
 * EVLOOP_NONBLOCK does in libevent's bench; there is always a byte in
 * flight, so a blocking wait would return at once too.
 *
 * Registration is done once per implementation and round, outside the
 * timed part. The socketpairs are shared by the implementations, which run
 * one after the other: a descriptor watched by two epoll sets at once would
 * make the kernel wake both on every byte.
 *
 * An iteration is timed by the thread's CPU time (user and system), not the
 * wall clock: the loop never blocks, so the two differ only by the time
 * other processes held the CPU, which is noise here (--wall for the wall
 * clock, as libevent's bench has it).
 *
 *   --callgrind   counts user-space instructions per event instead, by
 *                 running each implementation under valgrind's callgrind
 *                 (steady where clocks are not).
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct chain {
    int *fds; /* fds[2 * i] is pair i's read end, fds[2 * i + 1] its write end */
    long n;
    long writes;   /* left to do in this iteration */
    long count;    /* bytes received */
    long fired;    /* bytes sent */
    long failures; /* recv or send that did not move one byte */
};

/* The callbacks of the peers find the chain here; the raw loop and cmio
 * pass it directly. Either way chain_event does the same work. */
static struct chain *g_chain;

static inline void chain_event(struct chain *c, long idx)
{
    unsigned char ch;
    if (recv(c->fds[2 * idx], &ch, 1, 0) == 1)
        c->count++;
    else
        c->failures++;
    if (c->writes > 0) {
        long next = idx + 1;
        if (next >= c->n)
            next -= c->n;
        if (send(c->fds[2 * next + 1], "e", 1, 0) != 1)
            c->failures++;
        c->writes--;
        c->fired++;
    }
}

/* ------------------------------------------------------------------------ */
/* The timed loops: run until the iteration's bytes are consumed            */
/* ------------------------------------------------------------------------ */

BENCH_TIMED static void pipechain_timed_epoll(void *loop, struct chain *c)
{
    struct ep_loop *l = loop;
    while (c->count != c->fired) {
        int k = epoll_wait(l->epfd, l->events, BENCH_EVENTS_CAP, 0);
        if (k < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int j = 0; j < k; j++)
            chain_event(c, (long)l->events[j].data.u64);
    }
}

BENCH_TIMED static void pipechain_timed_cmio(void *loop, struct chain *c)
{
    struct cm_loop *l = loop;
    while (c->count != c->fired) {
        int k = cmio_poll_wait(l->poll, l->events, 0);
        if (k < 0 && k != -EINTR)
            die("cmio_poll_wait: %s", cmio_strerror(k));
        for (int j = 0; j < k; j++)
            chain_event(c, (long)cmio_event_token(cmio_events_get(l->events, (size_t)j)));
    }
}

#ifdef BENCH_HAVE_LIBEVENT
static void le_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    chain_event(g_chain, (long)(uintptr_t)arg);
}

BENCH_TIMED static void pipechain_timed_libevent(void *loop, struct chain *c)
{
    struct le_loop *l = loop;
    while (c->count != c->fired)
        event_base_loop(l->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}
#endif

#ifdef BENCH_HAVE_LIBEV
static void lv_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    chain_event(g_chain, (long)(uintptr_t)w->data);
}

BENCH_TIMED static void pipechain_timed_libev(void *loop, struct chain *c)
{
    struct lv_loop *l = loop;
    while (c->count != c->fired)
        ev_run(l->loop, EVRUN_NOWAIT);
}
#endif

#ifdef BENCH_HAVE_LIBUV
static void lu_cb(uv_poll_t *h, int status, int events)
{
    (void)events;
    if (status < 0)
        g_chain->failures++;
    else
        chain_event(g_chain, (long)(uintptr_t)h->data);
}

BENCH_TIMED static void pipechain_timed_libuv(void *loop, struct chain *c)
{
    struct lu_loop *l = loop;
    while (c->count != c->fired)
        uv_run(&l->loop, UV_RUN_NOWAIT);
}
#endif

/* Each implementation's timed loop, and its callback if it is a peer. */
struct ops {
    void (*run)(void *loop, struct chain *c);
    peer_cb cb;
};

static const struct ops impl_ops[IMPL_COUNT] = {
    [IMPL_EPOLL] = {pipechain_timed_epoll, NULL},
    [IMPL_CMIO] = {pipechain_timed_cmio, NULL},
#ifdef BENCH_HAVE_LIBEVENT
    [IMPL_LIBEVENT] = {pipechain_timed_libevent, PEER_CB(le_cb)},
#endif
#ifdef BENCH_HAVE_LIBEV
    [IMPL_LIBEV] = {pipechain_timed_libev, PEER_CB(lv_cb)},
#endif
#ifdef BENCH_HAVE_LIBUV
    [IMPL_LIBUV] = {pipechain_timed_libuv, PEER_CB(lu_cb)},
#endif
};

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

static void chain_open(struct chain *c, long n)
{
    c->n = n;
    c->fds = malloc(sizeof(int) * 2 * (size_t)n);
    if (c->fds == NULL)
        die("out of memory");
    for (long i = 0; i < n; i++)
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, &c->fds[2 * i]) < 0)
            die("socketpair %ld of %ld: %s", i + 1, n, strerror(errno));
}

static void chain_close(struct chain *c)
{
    for (long i = 0; i < 2 * c->n; i++)
        close(c->fds[i]);
    free(c->fds);
}

/* Registers every read end, with its pair's index as the token. */
static void *chain_setup(enum impl i, struct chain *c)
{
    void *loop = loop_open(i, c->n, impl_ops[i].cb);
    for (long k = 0; k < c->n; k++)
        loop_watch(i, loop, c->fds[2 * k], (uint64_t)k);
    loop_settle(i, loop);
    return loop;
}

/* The thread's CPU time by default: see harness.h. */
static bool wall_clock;

static int64_t clock_ns(void)
{
    return wall_clock ? now_ns() : self_cpu_ns();
}

/* One iteration: prime a pairs, then time the loop until all is consumed.
 * Returns microseconds. */
static double iterate(const struct ops *o, void *loop, struct chain *c, long a, long w)
{
    c->count = c->fired = c->failures = 0;
    c->writes = w;
    long space = c->n / a;
    for (long i = 0; i < a; i++) {
        if (send(c->fds[2 * (i * space) + 1], "e", 1, 0) != 1)
            die("priming send: %s", strerror(errno));
        c->fired++;
    }
    int64_t t0 = clock_ns();
    o->run(loop, c);
    int64_t t1 = clock_ns();
    if (c->failures != 0)
        die("%ld recv/send calls did not move one byte", c->failures);
    if (c->count != a + w)
        die("received %ld bytes, expected %ld", c->count, a + w);
    return (double)(t1 - t0) / 1e3;
}

/* Median microseconds per iteration over a block of about block_ms. */
static double block(enum impl i, void *loop, struct chain *c, long a, long w, double block_ms)
{
    double samples[256];
    size_t ns = 0;
    int64_t end = now_ns() + (int64_t)(block_ms * 1e6);
    do
        samples[ns++] = iterate(&impl_ops[i], loop, c, a, w);
    while (ns < 256 && now_ns() < end);
    return median(samples, ns);
}

/* Noise on a shared machine comes in bursts of some milliseconds, so the
 * implementations take turns in short blocks, and each block is compared
 * with the floor's block of the same round. They share one set of
 * socketpairs, registered anew for each block: with a set each, they would
 * also differ by where the kernel happened to place their sockets, and the
 * five sets together would crowd the caches. */
static void run_case(long n, const char *label, long a, long w, double block_ms)
{
    struct chain c;
    chain_open(&c, n);
    g_chain = &c;
    double(*fig)[IMPL_COUNT] = malloc(sizeof(*fig) * (size_t)bench_opts.rounds);
    if (fig == NULL)
        die("out of memory");
    note("n=%ld a=%ld w=%ld: %d rounds", n, a, w, bench_opts.rounds);
    for (int r = 0; r < bench_opts.rounds; r++) {
        enum impl order[IMPL_COUNT];
        int k = impl_order(r, order);
        for (int i = 0; i < IMPL_COUNT; i++)
            fig[r][i] = NAN;
        for (int j = 0; j < k; j++) {
            enum impl i = order[j];
            void *loop = chain_setup(i, &c);
            iterate(&impl_ops[i], loop, &c, a, w); /* warm caches and lazily bound symbols */
            fig[r][i] = block(i, loop, &c, a, w, block_ms);
            loop_close(i, loop);
        }
    }
    char cas[96], metric[64];
    snprintf(cas, sizeof(cas), "%s a=%ld", label, a);
    snprintf(metric, sizeof(metric), "%s us/iteration (w=%ld)", wall_clock ? "wall" : "CPU", w);
    struct row row = {"pipechain", cas, metric, CELL_RATIO, false, {0}, 1.02, true};
    row_from_rounds(&row, (const double(*)[IMPL_COUNT])fig, bench_opts.rounds);
    row_print(&row);
    free(fig);
    chain_close(&c);
}

/* ------------------------------------------------------------------------ */
/* Callgrind                                                                */
/* ------------------------------------------------------------------------ */

/* In the child under valgrind: run `iters` iterations (every one of them
 * inside the collected function) and print how many events they handled. */
static int callgrind_child(const char *name, long n, long a, long w, int iters)
{
    int i = 0;
    while (i < IMPL_COUNT && strcmp(name, impl_name[i]) != 0)
        i++;
    if (i == IMPL_COUNT || impl_ops[i].run == NULL)
        die("implementation '%s' not built", name);
    struct chain c;
    chain_open(&c, n);
    g_chain = &c;
    void *loop = chain_setup((enum impl)i, &c);
    for (int k = 0; k < iters; k++)
        iterate(&impl_ops[i], loop, &c, a, w);
    loop_close((enum impl)i, loop);
    chain_close(&c);
    printf("events %ld\n", (long)iters * (a + w));
    return 0;
}

/* Runs one implementation under callgrind; returns instructions per event,
 * or NAN if valgrind failed (its messages are shown). */
static double callgrind_one(enum impl i, long n, long a, long w, int iters)
{
    char out[] = "/tmp/cmio-bench-callgrind-XXXXXX";
    char log[] = "/tmp/cmio-bench-valgrind-XXXXXX";
    int ofd = mkstemp(out), lfd = mkstemp(log);
    int pfd[2];
    if (ofd < 0 || lfd < 0 || pipe(pfd) < 0)
        die("temporary files: %s", strerror(errno));
    close(ofd);

    char a_out[128], a_toggle[128], s_n[32], s_a[32], s_w[32], s_it[32];
    snprintf(a_out, sizeof(a_out), "--callgrind-out-file=%s", out);
    snprintf(a_toggle, sizeof(a_toggle), "--toggle-collect=pipechain_timed_%s*", impl_name[i]);
    snprintf(s_n, sizeof(s_n), "%ld", n);
    snprintf(s_a, sizeof(s_a), "%ld", a);
    snprintf(s_w, sizeof(s_w), "%ld", w);
    snprintf(s_it, sizeof(s_it), "%d", iters);
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl < 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    self[sl] = '\0';

    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(lfd, 2);
        close(pfd[0]);
        /* Bind every symbol at start: lazy binding inside the collected
         * function would be counted as the loop's work. */
        setenv("LD_BIND_NOW", "1", 1);
        execlp("valgrind", "valgrind", "--tool=callgrind", a_out, a_toggle, self, "--callgrind-child",
               impl_name[i], "--n", s_n, "--a", s_a, "--writes", s_w, "--iters", s_it, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char buf[256] = "";
    size_t got = 0;
    ssize_t r;
    while (got < sizeof(buf) - 1 && (r = read(pfd[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    close(pfd[0]);
    int status;
    waitpid(pid, &status, 0);

    double result = NAN;
    long events = 0;
    char *ev = strstr(buf, "events ");
    if (ev != NULL)
        events = atol(ev + 7);
    FILE *f = fopen(out, "r");
    char line[512];
    unsigned long long total = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "totals:", 7) == 0)
            total = strtoull(line + 7, NULL, 10);
    if (f != NULL)
        fclose(f);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && events > 0 && total > 0) {
        result = (double)total / (double)events;
    } else {
        note("callgrind run of %s failed (status %d); its messages:", impl_name[i], status);
        FILE *lf = fdopen(lfd, "r");
        lfd = -1;
        if (lf != NULL) {
            rewind(lf);
            while (fgets(line, sizeof(line), lf) != NULL)
                fputs(line, stderr);
            fclose(lf);
        }
    }
    if (lfd >= 0)
        close(lfd);
    unlink(out);
    unlink(log);
    return result;
}

static void callgrind_case(long n, long a, long w, int iters)
{
    double fig[1][IMPL_COUNT];
    note("callgrind: n=%ld a=%ld w=%ld, %d iterations per implementation", n, a, w, iters);
    for (int i = 0; i < IMPL_COUNT; i++)
        fig[0][i] = impl_enabled((enum impl)i) ? callgrind_one((enum impl)i, n, a, w, iters) : NAN;
    char cas[64];
    snprintf(cas, sizeof(cas), "n=%ld a=%ld", n, a);
    /* "Within a few dozen instructions of the raw loop": four dozen. */
    struct row row = {"pipechain (callgrind)", cas, "instructions/event", CELL_DELTA, false, {0}, 48, true};
    row_from_rounds(&row, (const double(*)[IMPL_COUNT])fig, 1);
    row_print(&row);
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    bench_init("pipechain", 61);
    long ns[16] = {100, 1000, 10000, 100000}, as[16] = {1, 100};
    int nn = 4, na = 2, iters = 5;
    long w = 1000;
    double block_ms = 3;
    bool callgrind = false, user_n = false;
    const char *child = NULL;
    const char *usage = "  --n LIST          socketpairs (default 100,1000,10000,100000: as the fd limit allows)\n"
                        "  --a LIST          active pairs (default 1,100)\n"
                        "  --writes W        writes per iteration (default 1000)\n"
                        "  --ms MS           time per implementation and round (default 3)\n"
                        "  --wall            time iterations by the wall clock, not the thread's CPU time\n"
                        "  --callgrind       instructions per event under callgrind (n=1000, a=1,100)\n"
                        "  --iters K         callgrind iterations per implementation (default 5)\n";
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--n") == 0 && val)
            nn = parse_list(argv[++i], ns, 16), user_n = true;
        else if (strcmp(argv[i], "--a") == 0 && val)
            na = parse_list(argv[++i], as, 16);
        else if (strcmp(argv[i], "--writes") == 0 && val)
            w = atol(argv[++i]);
        else if (strcmp(argv[i], "--ms") == 0 && val)
            block_ms = atof(argv[++i]);
        else if (strcmp(argv[i], "--iters") == 0 && val)
            iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--callgrind") == 0)
            callgrind = true;
        else if (strcmp(argv[i], "--wall") == 0)
            wall_clock = true;
        else if (strcmp(argv[i], "--callgrind-child") == 0 && val)
            child = argv[++i];
        else
            bench_option(argc, argv, &i, usage);
    }
    if (child != NULL)
        return callgrind_child(child, ns[0], as[0], w, iters);
    if (bench_opts.quick) {
        if (!user_n)
            ns[0] = 100, ns[1] = 1000, nn = 2;
        block_ms = 2;
        if (bench_opts.rounds > 5)
            bench_opts.rounds = 5;
    }

    if (bench_opts.header)
        table_header();

    if (callgrind) {
        long n = user_n ? ns[0] : 1000;
        for (int j = 0; j < na; j++)
            callgrind_case(n, as[j], w, iters);
        return 0;
    }

    /* Two descriptors per pair, and a few for stdio and the loops' own. */
    long limit = bench_fd_limit();
    long nmax = (limit - 64) / 2 / 100 * 100;
    bool capped = false;
    for (int k = 0; k < nn; k++) {
        long n = ns[k];
        char label[64];
        snprintf(label, sizeof(label), "n=%ld", n);
        if (n > nmax) {
            if (capped) {
                note("n=%ld skipped: needs %ld descriptors, RLIMIT_NOFILE is %ld", n, 2 * n + 64, limit);
                continue;
            }
            note("n=%ld needs %ld descriptors, RLIMIT_NOFILE is %ld: running n=%ld instead", n,
                 2 * n + 64, limit, nmax);
            capped = true;
            n = nmax;
            snprintf(label, sizeof(label), "n=%ld (fd limit)", n);
        }
        for (int j = 0; j < na; j++) {
            if (as[j] > n)
                continue;
            run_case(n, label, as[j], w, block_ms);
        }
    }
    return 0;
}
