/*
 * harness.c: options, clocks, pinning, statistics, the table and the loops
 * shared by the benchmark programs (see harness.h).
 */
#include "harness.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

const char *const impl_name[IMPL_COUNT] = {"epoll", "cmio", "libevent", "libev", "libuv"};

struct bench_opts bench_opts;

static const char *program_name = "bench";

static unsigned built_mask(void)
{
    unsigned m = 1u << IMPL_EPOLL | 1u << IMPL_CMIO;
#ifdef BENCH_HAVE_LIBEVENT
    m |= 1u << IMPL_LIBEVENT;
#endif
#ifdef BENCH_HAVE_LIBEV
    m |= 1u << IMPL_LIBEV;
#endif
#ifdef BENCH_HAVE_LIBUV
    m |= 1u << IMPL_LIBUV;
#endif
    return m;
}

static void vnote(const char *kind, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: %s", program_name, kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote("", fmt, ap);
    va_end(ap);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote("error: ", fmt, ap);
    va_end(ap);
    exit(1);
}

void bench_init(const char *program, int default_rounds)
{
    program_name = program;
    bench_opts.rounds = default_rounds;
    bench_opts.quick = false;
    bench_opts.header = true;
    bench_opts.impl_mask = built_mask();
    bench_opts.pin = true;
    bench_opts.verbose = false;

    /* The large cases need one descriptor per socket; the hard limit is
     * as far as an unprivileged process may go. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            note("cannot raise RLIMIT_NOFILE to %llu", (unsigned long long)rl.rlim_max);
    }
    signal(SIGPIPE, SIG_IGN);

    for (int i = IMPL_LIBEVENT; i < IMPL_COUNT; i++)
        if (!(built_mask() & 1u << i))
            note("%s not found when this benchmark was configured: skipped", impl_name[i]);
}

void bench_option(int argc, char **argv, int *i, const char *usage)
{
    const char *a = argv[*i];
    const char *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (strcmp(a, "--rounds") == 0 && val != NULL) {
        bench_opts.rounds = atoi(val);
        if (bench_opts.rounds < 1)
            die("--rounds must be at least 1");
        ++*i;
    } else if (strcmp(a, "--impls") == 0 && val != NULL) {
        char *list = strdup(val);
        bench_opts.impl_mask = 1u << IMPL_EPOLL; /* the floor is always needed */
        for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
            int k = 0;
            while (k < IMPL_COUNT && strcmp(tok, impl_name[k]) != 0)
                k++;
            if (k == IMPL_COUNT)
                die("unknown implementation '%s' (epoll, cmio, libevent, libev, libuv)", tok);
            if (!(built_mask() & 1u << k))
                note("%s was not built: ignored", tok);
            bench_opts.impl_mask |= 1u << k;
        }
        bench_opts.impl_mask &= built_mask();
        free(list);
        ++*i;
    } else if (strcmp(a, "--quick") == 0) {
        bench_opts.quick = true;
    } else if (strcmp(a, "--no-header") == 0) {
        bench_opts.header = false;
    } else if (strcmp(a, "--verbose") == 0) {
        bench_opts.verbose = true;
    } else if (strcmp(a, "--no-pin") == 0) {
        bench_opts.pin = false;
    } else if (strcmp(a, "--header-only") == 0) {
        table_header();
        exit(0);
    } else {
        fprintf(stderr,
                "usage: %s [options]\n%s"
                "  --rounds N        rounds of every implementation (median of N)\n"
                "  --impls LIST      comma-separated subset of epoll,cmio,libevent,libev,libuv\n"
                "  --quick           a small matrix, for a smoke run\n"
                "  --no-pin          do not pin threads to CPUs\n"
                "  --verbose         print every round's figures on stderr\n"
                "  --no-header       print table rows only\n"
                "  --header-only     print the table header and exit\n",
                program_name, usage);
        exit(strcmp(a, "--help") == 0 ? 0 : 2);
    }
}

bool impl_enabled(enum impl i)
{
    return (bench_opts.impl_mask & 1u << i) != 0;
}

int impl_order(int round, enum impl order[IMPL_COUNT])
{
    enum impl enabled[IMPL_COUNT];
    int n = 0;
    for (int i = 0; i < IMPL_COUNT; i++)
        if (impl_enabled((enum impl)i))
            enabled[n++] = (enum impl)i;
    for (int k = 0; k < n; k++)
        order[k] = enabled[(k + round) % n];
    return n;
}

long bench_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 1024;
    return (long)rl.rlim_cur;
}

void bench_pin(int cpu)
{
    if (!bench_opts.pin)
        return;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || CPU_COUNT(&allowed) < 2)
        return;
    int want = cpu % CPU_COUNT(&allowed);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &allowed))
            continue;
        if (want-- == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
            return;
        }
    }
}

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t thread_cpu_ns(pthread_t thread)
{
    clockid_t cid;
    struct timespec ts;
    if (pthread_getcpuclockid(thread, &cid) != 0 || clock_gettime(cid, &ts) != 0)
        die("cannot read a thread's CPU clock");
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t self_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double percentile(double *v, size_t n, double p)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof(*v), cmp_double);
    /* Nearest rank: the smallest value with at least p of them at or below. */
    size_t rank = (size_t)ceil(p * (double)n);
    return v[rank == 0 ? 0 : rank - 1];
}

double median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int parse_list(const char *s, long *out, int max)
{
    int k = 0;
    char *copy = strdup(s);
    if (copy == NULL)
        die("out of memory");
    for (char *tok = strtok(copy, ","); tok != NULL && k < max; tok = strtok(NULL, ","))
        if ((out[k] = atol(tok)) > 0)
            k++;
    free(copy);
    return k;
}

void row_from_rounds(struct row *row, const double (*fig)[IMPL_COUNT], int rounds)
{
    double *tmp = malloc(sizeof(double) * (size_t)rounds);
    if (tmp == NULL)
        die("out of memory");
    if (bench_opts.verbose) {
        note("%s, %s, %s: the figures of each round", row->bench, row->cas, row->metric);
        for (int r = 0; r < rounds; r++) {
            fprintf(stderr, "  round %2d:", r + 1);
            for (int i = 0; i < IMPL_COUNT; i++)
                fprintf(stderr, " %s %.4g%s", impl_name[i], fig[r][i], i + 1 < IMPL_COUNT ? "," : "\n");
        }
    }
    for (int i = 0; i < IMPL_COUNT; i++) {
        size_t n = 0;
        for (int r = 0; r < rounds; r++) {
            double floor = fig[r][IMPL_EPOLL], v = fig[r][i];
            if (isnan(v) || (i != IMPL_EPOLL && row->mode != CELL_ABS && isnan(floor)))
                continue;
            if (i == IMPL_EPOLL || row->mode == CELL_ABS)
                tmp[n++] = v;
            else if (row->mode == CELL_RATIO)
                tmp[n++] = v / floor;
            else
                tmp[n++] = v - floor;
        }
        row->value[i] = n > 0 ? median(tmp, n) : NAN;
    }
    free(tmp);
}

/* ------------------------------------------------------------------------ */
/* Table                                                                    */
/* ------------------------------------------------------------------------ */

static void fmt_abs(char *out, size_t size, double v)
{
    double a = fabs(v);
    if (v == 0)
        snprintf(out, size, "0");
    else if (a >= 10000 || (a >= 100 && v == floor(v)))
        snprintf(out, size, "%.0f", v);
    else if (a >= 100)
        snprintf(out, size, "%.1f", v);
    else if (a >= 1)
        snprintf(out, size, "%.2f", v);
    else
        snprintf(out, size, "%.3f", v);
}

static void fmt_cell(char *out, size_t size, const struct row *row, int i)
{
    double v = row->value[i];
    if (!impl_enabled((enum impl)i))
        snprintf(out, size, "-");
    else if (isnan(v))
        snprintf(out, size, "n/a");
    else if (i == IMPL_EPOLL || row->mode == CELL_ABS)
        fmt_abs(out, size, v);
    else if (row->mode == CELL_RATIO)
        snprintf(out, size, "%.3f", v);
    else
        snprintf(out, size, "%+.0f", v);
}

/* Worse than `than` in the direction of this row? */
static bool worse(const struct row *row, double v, double than)
{
    return row->higher_better ? v < than : v > than;
}

/* "<= 1.02 ok, ahead ok", or MISS where cmio's cell misses a target (with
 * the peers that beat it). */
static void fmt_target(char *out, size_t size, const struct row *row)
{
    double c = row->value[IMPL_CMIO];
    size_t len = 0;
    out[0] = '\0';
    if (!impl_enabled(IMPL_CMIO) || isnan(c))
        return;
    if (!isnan(row->limit)) {
        char lim[32];
        if (row->mode == CELL_RATIO)
            snprintf(lim, sizeof(lim), "%.2f", row->limit);
        else if (row->mode == CELL_DELTA)
            snprintf(lim, sizeof(lim), "%+.0f", row->limit);
        else
            fmt_abs(lim, sizeof(lim), row->limit);
        len += (size_t)snprintf(out + len, size - len, "%s %s %s", row->higher_better ? ">=" : "<=", lim,
                                worse(row, c, row->limit) ? "MISS" : "ok");
    }
    if (row->ahead) {
        char beaten_by[64] = "";
        size_t blen = 0;
        bool any_peer = false;
        for (int i = IMPL_LIBEVENT; i < IMPL_COUNT; i++) {
            double p = row->value[i];
            if (!impl_enabled((enum impl)i) || isnan(p))
                continue;
            any_peer = true;
            if (worse(row, c, p))
                blen += (size_t)snprintf(beaten_by + blen, sizeof(beaten_by) - blen, "%s%s",
                                         blen ? ", " : "", impl_name[i]);
        }
        if (any_peer)
            snprintf(out + len, size - len, "%sahead %s%s%s", len ? ", " : "", blen ? "MISS (" : "ok",
                     beaten_by, blen ? ")" : "");
    }
}

void table_header(void)
{
    printf("| benchmark | case | metric | epoll (floor) | cmio | libevent | libev | libuv | cmio target |\n");
    printf("|---|---|---|--:|--:|--:|--:|--:|---|\n");
    fflush(stdout);
}

void row_print(const struct row *row)
{
    char cell[IMPL_COUNT][32], target[160];
    for (int i = 0; i < IMPL_COUNT; i++)
        fmt_cell(cell[i], sizeof(cell[i]), row, i);
    fmt_target(target, sizeof(target), row);
    printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row->bench, row->cas, row->metric,
           cell[IMPL_EPOLL], cell[IMPL_CMIO], cell[IMPL_LIBEVENT], cell[IMPL_LIBEV], cell[IMPL_LIBUV],
           target);
    fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Loops                                                                    */
/* ------------------------------------------------------------------------ */

struct loop_ops {
    void *(*open)(long capacity, peer_cb cb);
    void (*watch)(void *loop, int fd, uint64_t token);
    void (*settle)(void *loop);
    void (*close)(void *loop);
};

/* epoll ------------------------------------------------------------------ */

static void *ep_open(long capacity, peer_cb cb)
{
    (void)capacity;
    (void)cb;
    struct ep_loop *l = malloc(sizeof(*l));
    if (l == NULL || (l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1: %s", strerror(errno));
    return l;
}

static void ep_watch(void *loop, int fd, uint64_t token)
{
    struct ep_loop *l = loop;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = token};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void ep_close(void *loop)
{
    struct ep_loop *l = loop;
    close(l->epfd);
    free(l);
}

/* cmio ------------------------------------------------------------------- */

static void *cm_open(long capacity, peer_cb cb)
{
    (void)capacity;
    (void)cb;
    struct cm_loop *l = malloc(sizeof(*l));
    int rc;
    if (l == NULL)
        die("out of memory");
    if ((rc = cmio_poll_new(&l->poll)) < 0 || (rc = cmio_events_new(&l->events, BENCH_EVENTS_CAP)) < 0)
        die("cmio: %s", cmio_strerror(rc));
    l->reg = cmio_poll_registry(l->poll);
    return l;
}

static void cm_watch(void *loop, int fd, uint64_t token)
{
    struct cm_loop *l = loop;
    int rc = cmio_registry_register(l->reg, fd, (cmio_token)token, CMIO_READABLE | CMIO_LEVEL);
    if (rc < 0)
        die("cmio_registry_register: %s", cmio_strerror(rc));
}

static void cm_close(void *loop)
{
    struct cm_loop *l = loop;
    cmio_events_free(l->events);
    cmio_poll_free(l->poll);
    free(l);
}

/* libevent --------------------------------------------------------------- */

#ifdef BENCH_HAVE_LIBEVENT
static void *le_open(long capacity, peer_cb cb)
{
    struct le_loop *l = malloc(sizeof(*l));
    if (l == NULL || (l->base = event_base_new()) == NULL)
        die("event_base_new failed");
    if (strcmp(event_base_get_method(l->base), "epoll") != 0)
        die("libevent chose %s, not epoll", event_base_get_method(l->base));
    l->cb = (event_callback_fn)cb;
    l->n = 0;
    l->cap = capacity;
    l->ev = malloc(sizeof(*l->ev) * (size_t)capacity);
    if (l->ev == NULL)
        die("out of memory");
    return l;
}

static void le_watch(void *loop, int fd, uint64_t token)
{
    struct le_loop *l = loop;
    if (l->n == l->cap)
        die("libevent loop: more than %ld descriptors", l->cap);
    struct event *ev = event_new(l->base, fd, LE_READ | LE_PERSIST, l->cb, (void *)(uintptr_t)token);
    if (ev == NULL || event_add(ev, NULL) < 0)
        die("event_add failed");
    l->ev[l->n++] = ev;
}

static void le_settle(void *loop)
{
    struct le_loop *l = loop;
    event_base_loop(l->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void le_close(void *loop)
{
    struct le_loop *l = loop;
    for (long i = 0; i < l->n; i++)
        event_free(l->ev[i]);
    free(l->ev);
    event_base_free(l->base);
    free(l);
}
#endif

/* libev ------------------------------------------------------------------ */

#ifdef BENCH_HAVE_LIBEV
static void *lv_open(long capacity, peer_cb cb)
{
    struct lv_loop *l = malloc(sizeof(*l));
    if (l == NULL || (l->loop = ev_loop_new(EVBACKEND_EPOLL)) == NULL)
        die("ev_loop_new(EVBACKEND_EPOLL) failed");
    l->cb = (lv_io_cb)cb;
    l->n = 0;
    l->cap = capacity;
    l->io = malloc(sizeof(*l->io) * (size_t)capacity);
    if (l->io == NULL)
        die("out of memory");
    return l;
}

static void lv_watch(void *loop, int fd, uint64_t token)
{
    struct lv_loop *l = loop;
    if (l->n == l->cap)
        die("libev loop: more than %ld descriptors", l->cap);
    ev_io *w = &l->io[l->n++];
    ev_io_init(w, l->cb, fd, EV_READ);
    w->data = (void *)(uintptr_t)token;
    ev_io_start(l->loop, w);
}

static void lv_settle(void *loop)
{
    struct lv_loop *l = loop;
    ev_run(l->loop, EVRUN_NOWAIT);
}

static void lv_close(void *loop)
{
    struct lv_loop *l = loop;
    for (long i = 0; i < l->n; i++)
        ev_io_stop(l->loop, &l->io[i]);
    ev_loop_destroy(l->loop);
    free(l->io);
    free(l);
}
#endif

/* libuv ------------------------------------------------------------------ */

#ifdef BENCH_HAVE_LIBUV
static void *lu_open(long capacity, peer_cb cb)
{
    struct lu_loop *l = malloc(sizeof(*l));
    if (l == NULL || uv_loop_init(&l->loop) != 0)
        die("uv_loop_init failed");
    l->cb = (uv_poll_cb)cb;
    l->n = 0;
    l->cap = capacity;
    l->poll = malloc(sizeof(*l->poll) * (size_t)capacity);
    if (l->poll == NULL)
        die("out of memory");
    return l;
}

static void lu_watch(void *loop, int fd, uint64_t token)
{
    struct lu_loop *l = loop;
    if (l->n == l->cap)
        die("libuv loop: more than %ld descriptors", l->cap);
    uv_poll_t *p = &l->poll[l->n++];
    int rc = uv_poll_init(&l->loop, p, fd);
    if (rc == 0)
        rc = uv_poll_start(p, UV_READABLE, l->cb);
    if (rc != 0)
        die("uv_poll: %s", uv_strerror(rc));
    p->data = (void *)(uintptr_t)token;
}

static void lu_settle(void *loop)
{
    struct lu_loop *l = loop;
    uv_run(&l->loop, UV_RUN_NOWAIT);
}

static void lu_close(void *loop)
{
    struct lu_loop *l = loop;
    for (long i = 0; i < l->n; i++)
        uv_close((uv_handle_t *)&l->poll[i], NULL);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&l->loop) != 0)
        die("uv_loop_close: handles left open");
    free(l->poll);
    free(l);
}
#endif

static const struct loop_ops loop_ops[IMPL_COUNT] = {
    [IMPL_EPOLL] = {ep_open, ep_watch, NULL, ep_close},
    [IMPL_CMIO] = {cm_open, cm_watch, NULL, cm_close},
#ifdef BENCH_HAVE_LIBEVENT
    [IMPL_LIBEVENT] = {le_open, le_watch, le_settle, le_close},
#endif
#ifdef BENCH_HAVE_LIBEV
    [IMPL_LIBEV] = {lv_open, lv_watch, lv_settle, lv_close},
#endif
#ifdef BENCH_HAVE_LIBUV
    [IMPL_LIBUV] = {lu_open, lu_watch, lu_settle, lu_close},
#endif
};

void *loop_open(enum impl i, long capacity, peer_cb cb)
{
    if (loop_ops[i].open == NULL)
        die("implementation %s not built", impl_name[i]);
    return loop_ops[i].open(capacity, cb);
}

void loop_watch(enum impl i, void *loop, int fd, uint64_t token)
{
    loop_ops[i].watch(loop, fd, token);
}

void loop_settle(enum impl i, void *loop)
{
    if (loop_ops[i].settle != NULL)
        loop_ops[i].settle(loop);
}

void loop_close(enum impl i, void *loop)
{
    loop_ops[i].close(loop);
}
