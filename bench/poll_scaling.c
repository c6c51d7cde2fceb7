/*
 * poll_scaling: what one cmio_poll_wait costs as the number of registered
 * descriptors grows while only one of them is ready.
 *
 *   poll_scaling [N ...]        default: 10 1000 10000
 *
 * For each N it registers N socket descriptors (both ends of N/2 AF_UNIX
 * socket pairs, level-triggered readable), makes exactly one of them
 * readable, and times waits that each return that one event. It also times
 * registering and deregistering the N descriptors, which should cost the
 * same per descriptor at every N.
 *
 * The figures show the backend's shape, not an absolute speed: the poll(2)
 * backend hands the kernel all N descriptors on every wait, so its wait cost
 * grows with N; epoll and kqueue keep the set in the kernel and do not.
 * Build with the backend to measure (-DCMIO_BACKEND=poll or epoll) and
 * -DCMIO_BUILD_BENCH=ON; run on a quiet machine.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmio/poll.h>

#define MIN_SECONDS 0.5 /* each wait figure is the mean over at least this long */
#define MIN_WAITS 200

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "poll_scaling: %s: %s\n", what, err < 0 ? cmio_strerror(err) : strerror(err));
    exit(1);
}

/* Room for n registered descriptors plus a few of our own and the queue's. */
static int raise_fd_limit(size_t n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rlim_t want = (rlim_t)n + 64;
    if (rl.rlim_cur >= want)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        return -1;
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

/* One wait, which must report exactly the active descriptor. */
static void wait_for(cmio_poll *poll, cmio_events *events, size_t active)
{
    int rc = cmio_poll_wait(poll, events, 1000000000);
    if (rc != 1 || cmio_event_token(cmio_events_get(events, 0)) != (cmio_token)active)
        die("cmio_poll_wait did not return exactly the active descriptor", rc < 0 ? rc : EIO);
}

static void run(size_t n)
{
    if (n < 2 || n % 2 != 0) {
        fprintf(stderr, "poll_scaling: %zu: N must be even and at least 2\n", n);
        return;
    }
    if (raise_fd_limit(n) != 0) {
        printf("%10zu  skipped: RLIMIT_NOFILE allows fewer than %zu descriptors\n", n, n + 64);
        return;
    }
    int *fds = malloc(n * sizeof(*fds));
    if (fds == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < n; i += 2) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, &fds[i]) != 0)
            die("socketpair", errno);
    }

    cmio_poll *poll;
    cmio_events *events;
    int rc = cmio_poll_new(&poll);
    if (rc < 0)
        die("cmio_poll_new", rc);
    if ((rc = cmio_events_new(&events, 64)) < 0)
        die("cmio_events_new", rc);
    cmio_registry *reg = cmio_poll_registry(poll);

    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        rc = cmio_registry_register(reg, fds[i], (cmio_token)i, CMIO_READABLE | CMIO_LEVEL);
        if (rc < 0)
            die("cmio_registry_register", rc);
    }
    double reg_ns = (now_s() - t0) * 1e9 / (double)n;

    /* The one active descriptor sits in the middle of the set. */
    size_t active = n / 2;
    if (write(fds[active ^ 1], "x", 1) != 1)
        die("write", errno);

    /* One untimed wait lets the backend settle its set after registering. */
    wait_for(poll, events, active);
    long waits = 0;
    double start = now_s(), elapsed;
    do {
        for (int k = 0; k < 50; k++, waits++)
            wait_for(poll, events, active);
        elapsed = now_s() - start;
    } while (elapsed < MIN_SECONDS || waits < MIN_WAITS);
    double wait_ns = elapsed * 1e9 / (double)waits;

    t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        rc = cmio_registry_deregister(reg, fds[i]);
        if (rc < 0)
            die("cmio_registry_deregister", rc);
    }
    double dereg_ns = (now_s() - t0) * 1e9 / (double)n;

    printf("%10zu  %12.0f  %12.2f  %12.0f  %12.0f  %8ld\n", n, wait_ns, wait_ns / (double)n, reg_ns,
           dereg_ns, waits);

    cmio_events_free(events);
    cmio_poll_free(poll);
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
}

int main(int argc, char **argv)
{
    static const size_t defaults[] = {10, 1000, 10000};
    printf("cmio %s backend: one wait with 1 ready descriptor among N registered\n",
           cmio_backend());
    printf("%10s  %12s  %12s  %12s  %12s  %8s\n", "N", "wait ns", "ns per fd", "register ns",
           "dereg ns", "waits");
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            run((size_t)strtoul(argv[i], NULL, 10));
    } else {
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
            run(defaults[i]);
    }
    return 0;
}
