/*
 * harness.c: options, clocks, pinning, statistics and the table shared by
 * the benchmark programs (see harness.h).
 */
#include "harness.h"

#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

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

void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", program_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", program_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
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
