/*
 * harness.h: what the benchmark programs share.
 *
 * Every program measures the same five implementations of one event loop,
 * side by side in one process:
 *
 *   epoll     a hand-written epoll loop: the floor, what nothing can beat;
 *   cmio      this library, through its public API only;
 *   libevent, libev, libuv   the libraries a user would pick instead, when
 *             the build found them (each one is skipped with a message
 *             otherwise).
 *
 * Shared machines are noisy, so absolute times are not comparable from one
 * run to the next. What is comparable is the ratio of each implementation to
 * the floor measured moments apart: a program runs several rounds, each
 * round runs every implementation once (in a rotated order), each figure is
 * divided by the floor's figure of the same round, and the table shows the
 * median of those ratios. The floor's own column shows its median absolute
 * value.
 *
 * Output is one Markdown table on stdout (row_print); progress and skip
 * messages go to stderr, so that bench/run.sh can gather the rows of every
 * program into a single table.
 *
 * The programs that watch descriptors for reading (pipechain, idle_fds,
 * echo) set up and tear down each implementation's loop here (loop_open and
 * the rest); what they time, the running of the loop and the work per
 * event, stays in each program.
 */
#ifndef BENCH_HARNESS_H_
#define BENCH_HARNESS_H_

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include <cmio/poll.h>

#include "peers.h"

enum impl { IMPL_EPOLL, IMPL_CMIO, IMPL_LIBEVENT, IMPL_LIBEV, IMPL_LIBUV, IMPL_COUNT };

extern const char *const impl_name[IMPL_COUNT];

/* Options every program takes. Program-specific ones are parsed first by
 * the program, which hands anything it does not know to bench_option. */
struct bench_opts {
    int rounds;         /* --rounds N */
    bool quick;         /* --quick: a smaller matrix, for a smoke run */
    bool header;        /* --no-header clears it: run.sh prints one header */
    unsigned impl_mask; /* --impls epoll,cmio,... (default: all built) */
    bool pin;           /* --no-pin clears it */
    bool verbose;       /* --verbose: every round's figures on stderr */
};

extern struct bench_opts bench_opts;

/* Sets the defaults, raises RLIMIT_NOFILE to the hard limit, ignores
 * SIGPIPE and says on stderr which peers this build lacks. */
void bench_init(const char *program, int default_rounds);

/* Parses argv[*i] (and its value, advancing *i) if it is a common option;
 * exits with a usage message on anything unknown. */
void bench_option(int argc, char **argv, int *i, const char *usage);

/* True if the implementation was built and selected. */
bool impl_enabled(enum impl i);

/* The enabled implementations in the order to run them in this round:
 * rotated by one each round so that none always runs first (just after the
 * setup of the case) or last. Returns how many. */
int impl_order(int round, enum impl order[IMPL_COUNT]);

/* The current RLIMIT_NOFILE soft limit (after bench_init raised it). */
long bench_fd_limit(void);

/* Pins the calling thread to one CPU (modulo the CPUs this process may
 * use). A no-op with --no-pin or on a single-CPU machine. */
void bench_pin(int cpu);

int64_t now_ns(void);
/* CPU time of a thread, or of the calling one. On a shared machine this
 * leaves out the time other processes held the CPU, which wall-clock time
 * of a single-threaded, never-blocking loop does not. */
int64_t thread_cpu_ns(pthread_t thread);
int64_t self_cpu_ns(void);

/* Prints to stderr, prefixed with the program's name. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sorts v in place. */
double median(double *v, size_t n);
double percentile(double *v, size_t n, double p);

/* A comma-separated list of positive numbers, at most max of them (others
 * are left out); returns how many. */
int parse_list(const char *s, long *out, int max);

/* ------------------------------------------------------------------------ */
/* Loops                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * One loop of an implementation, watching descriptors for reading with a
 * token each: level-triggered and persistent, the one mode all five share
 * (libevent's bench uses EV_PERSIST; libev's ev_io and libuv's uv_poll_t
 * have no other mode). The raw loop and cmio report the token in their
 * events, which the program's own loop reads; a peer hands it to the
 * program's callback, as its argument (libevent) or in the watcher's data
 * (libev, libuv), as a uintptr_t.
 *
 * The structs are open because the programs run the loops themselves.
 */
#define BENCH_EVENTS_CAP 1024 /* the raw loop's and cmio's event buffer (libuv uses 1024 too) */

struct ep_loop {
    int epfd;
    struct epoll_event events[BENCH_EVENTS_CAP];
};

struct cm_loop {
    cmio_poll *poll;
    cmio_registry *reg;
    cmio_events *events;
};

#ifdef BENCH_HAVE_LIBEVENT
struct le_loop {
    struct event_base *base;
    event_callback_fn cb;
    struct event **ev;
    long n, cap;
};
#endif

#ifdef BENCH_HAVE_LIBEV
typedef void (*lv_io_cb)(struct ev_loop *loop, ev_io *w, int revents);
struct lv_loop {
    struct ev_loop *loop;
    lv_io_cb cb;
    ev_io *io;
    long n, cap;
};
#endif

#ifdef BENCH_HAVE_LIBUV
struct lu_loop {
    uv_loop_t loop;
    uv_poll_cb cb;
    uv_poll_t *poll;
    long n, cap;
};
#endif

/* A peer's callback, passed as PEER_CB(f) and cast back to the peer's own
 * type (event_callback_fn, lv_io_cb, uv_poll_cb) before it is called. */
typedef void (*peer_cb)(void);
#define PEER_CB(f) ((peer_cb)(f))

/* A loop of implementation i (which must be built) for up to capacity
 * descriptors: a struct ep_loop, cm_loop, le_loop, lv_loop or lu_loop. cb
 * is the peers' callback; NULL for epoll and cmio. Dies on failure. */
void *loop_open(enum impl i, long capacity, peer_cb cb);

/* Watches fd for reading; token comes back with its events. */
void loop_watch(enum impl i, void *loop, int fd, uint64_t token);

/* One non-blocking run of a peer's loop after its watchers were added, so
 * that no timed run pays for applying them (libev and libuv pass new
 * watchers to epoll only in their next run). Call it while no watched
 * descriptor is readable. Nothing for epoll and cmio, which register at
 * once. */
void loop_settle(enum impl i, void *loop);

/* Stops every watcher and frees the loop. */
void loop_close(enum impl i, void *loop);

/* ------------------------------------------------------------------------ */
/* Table                                                                    */
/* ------------------------------------------------------------------------ */

enum cell_mode {
    CELL_RATIO, /* floor absolute, the others as their ratio to it */
    CELL_DELTA, /* floor absolute, the others as their difference to it */
    CELL_ABS,   /* every cell absolute */
};

/* Targets are checked on the cmio column and shown in the last one. */
struct row {
    const char *bench, *cas, *metric;
    enum cell_mode mode;
    bool higher_better;
    double value[IMPL_COUNT]; /* NAN: not measured (n/a) */
    double limit;             /* cmio's ratio (or value) must not pass it; NAN: none */
    bool ahead;               /* no peer may beat cmio */
};

/* Fills row->value from per-round figures: the floor's median, and each
 * implementation's median ratio (or difference, or value) to the floor of
 * the same round. NAN figures are skipped. */
void row_from_rounds(struct row *row, const double (*fig)[IMPL_COUNT], int rounds);

void table_header(void);
void row_print(const struct row *row);

#endif /* BENCH_HARNESS_H_ */
