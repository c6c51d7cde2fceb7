/*
 * Timeouts: 0 never blocks; a positive timeout never ends early (elapsed >=
 * requested, always, whatever rounding the OS needs) and is not wildly
 * late; internal wake-ups that carry nothing for the caller do not end a
 * timed wait; huge values neither wrap nor turn into 0 or an error; a
 * negative timeout waits for an event; and on POSIX a signal ends a wait
 * with -EINTR and an empty events buffer.
 *
 * Lower bounds are exact. Upper bounds are generous: these are shared,
 * noisy machines, and tests also run under valgrind.
 */
#include "thread_helpers.h"

#include <limits.h>

#define WAIT (5000 * MS)
#define SLACK (50 * MS) /* how late the best of several waits may be */

/* An idle connection registered for reading: the queue watches something
 * that never becomes ready. */
static void register_idle(test_ctx *c, cmio_fd sv[2])
{
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
}

static void unregister_idle(test_ctx *c, cmio_fd sv[2])
{
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_close(sv[0]);
    test_close(sv[1]);
}

/* ------------------------------------------------------------------------ */
/* Zero and positive timeouts                                               */
/* ------------------------------------------------------------------------ */

static void zero_timeout_never_blocks(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    register_idle(c, sv);

    /* If a zero wait blocked for as little as a millisecond, these would
     * take over a second. */
    enum { N = 1000 };
    int64_t start = test_now_ns();
    for (int i = 0; i < N; i++)
        assert_int_equal(cmio_poll_wait(c->poll, c->events, 0), 0);
    int64_t took = test_now_ns() - start;
    if (took >= N * MS)
        fail_msg("%d zero-timeout waits took %lld ms", N, (long long)(took / MS));

    /* And it does report what is ready. */
    test_send_all(sv[1], "x", 1);
    int n;
    int64_t deadline = test_now_ns() + WAIT;
    while ((n = cmio_poll_wait(c->poll, c->events, 0)) == 0) {
        assert_true(test_now_ns() < deadline);
        test_sleep_ms(1);
    }
    assert_int_equal(n, 1);
    assert_int_equal(cmio_event_token(cmio_events_get(c->events, 0)), 1);
    assert_true(cmio_event_is_readable(cmio_events_get(c->events, 0)));
    unregister_idle(c, sv);
}

static void positive_timeout_never_returns_early(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    register_idle(c, sv);
    /* Whole milliseconds, sub-millisecond parts, and values just either
     * side of a millisecond boundary, where rounding down would show. */
    static const int64_t timeouts[] = {
        1, 250000, 999999, 1 * MS, 1 * MS + 1, 1500000, 2345678, 10 * MS, 20 * MS + 500000, 50 * MS,
    };
    enum { REPEAT = 5 };
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        int64_t t = timeouts[i];
        int64_t best = INT64_MAX;
        for (int k = 0; k < REPEAT; k++) {
            int64_t start = test_now_ns();
            int rc = cmio_poll_wait(c->poll, c->events, t);
            int64_t elapsed = test_now_ns() - start;
            assert_int_equal(rc, 0);
            assert_int_equal(cmio_events_len(c->events), 0);
            if (elapsed < t)
                fail_msg("a wait of %lld ns returned after %lld ns", (long long)t,
                         (long long)elapsed);
            if (elapsed < best)
                best = elapsed;
        }
        /* Precision: the best of a few tries is not far over. */
        if (best > t + SLACK)
            fail_msg("a wait of %lld ns took at best %lld ns", (long long)t, (long long)best);
    }
    unregister_idle(c, sv);
}

typedef struct {
    cmio_registry *clone;
    cmio_fd fd;
    cmio__atomic done;
    long rounds;
    int bad_rc; /* the first unexpected result, or 0 */
} poke_job;

/* Registers, changes and deregisters a source that never becomes ready,
 * over and over: on backends that must interrupt their wait to take a new
 * registration into account, each of these is an internal wake-up. */
static TEST_THREAD_MAIN(poke_registrations)
{
    poke_job *j = arg;
    while (cmio__atomic_load(&j->done) == 0 && j->bad_rc == 0) {
        int rc = cmio_registry_register(j->clone, j->fd, 2, CMIO_READABLE);
        if (rc == 0)
            rc = cmio_registry_reregister(j->clone, j->fd, 3, CMIO_READABLE | CMIO_LEVEL);
        if (rc == 0)
            rc = cmio_registry_rearm(j->clone, j->fd, CMIO_READABLE);
        if (rc == 0)
            rc = cmio_registry_deregister(j->clone, j->fd);
        if (rc != 0)
            j->bad_rc = rc;
        j->rounds++;
        test_sleep_ms(2);
    }
    TEST_THREAD_END;
}

static void timed_wait_absorbs_empty_wakeups(void **state)
{
    test_ctx *c = *state;
    cmio_fd idle[2], poked[2];
    register_idle(c, idle);
    test_tcp_pair(poked);
    poke_job j;
    memset(&j, 0, sizeof(j));
    j.fd = poked[0];
    assert_int_equal(cmio_registry_clone(c->reg, &j.clone), 0);
    test_thread t;
    test_thread_start(&t, poke_registrations, &j);

    const int64_t timeout = 300 * MS;
    int64_t start = test_now_ns();
    int rc = cmio_poll_wait(c->poll, c->events, timeout);
    int64_t elapsed = test_now_ns() - start;
    cmio__atomic_store(&j.done, 1);
    test_thread_join(t);

    assert_int_equal(j.bad_rc, 0);
    assert_true(j.rounds > 0);
    assert_int_equal(rc, 0);
    if (elapsed < timeout)
        fail_msg("a wait of %lld ms returned after %lld ns", (long long)(timeout / MS),
                 (long long)elapsed);
    cmio_registry_free(j.clone);
    test_close(poked[0]);
    test_close(poked[1]);
    unregister_idle(c, idle);
}

/* ------------------------------------------------------------------------ */
/* Huge and negative timeouts: only an event ends them                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    cmio_waker *waker; /* woken, or else... */
    cmio_fd send_fd;   /* ...a byte sent on this socket */
    cmio__atomic go;   /* set by the main thread just before it waits */
    int rc;            /* 0 if the wake or send worked */
} later_job;

#define LATER_MS 100

static TEST_THREAD_MAIN(act_later)
{
    later_job *j = arg;
    test_thread_await(&j->go, LATER_MS);
    if (j->waker != NULL) {
        j->rc = cmio_waker_wake(j->waker);
    } else {
        int err = 0;
        j->rc = test_send(j->send_fd, "x", 1, &err) == 1 ? 0 : -1;
    }
    TEST_THREAD_END;
}

/* Waits with `timeout` while another thread acts LATER_MS from now; the
 * wait must last until then, end with the event for `token`, and block
 * meanwhile: a timeout turned into 0 by a wrapping conversion, and retried
 * until the deadline, would spin instead. */
static void wait_until_later(test_ctx *c, later_job *j, int64_t timeout, cmio_token token)
{
    cmio__atomic_store(&j->go, 0);
    test_thread t;
    test_thread_start(&t, act_later, j);
    int64_t start = test_now_ns();
    int64_t cpu_start = test_thread_cpu_ns();
    cmio__atomic_store(&j->go, 1);
    int n = cmio_poll_wait(c->poll, c->events, timeout);
    int64_t cpu = test_thread_cpu_ns() - cpu_start;
    int64_t elapsed = test_now_ns() - start;
    test_thread_join(t);

    assert_int_equal(j->rc, 0);
    if (n < 1)
        fail_msg("a wait of %lld ns returned %d (%s) after %lld ns", (long long)timeout, n,
                 n < 0 ? cmio_strerror(n) : "no event", (long long)elapsed);
    assert_int_equal(cmio_event_token(cmio_events_get(c->events, 0)), token);
    assert_true(cmio_event_is_readable(cmio_events_get(c->events, 0)));
    assert_true(elapsed >= LATER_MS * MS);
    if (cpu > elapsed / 2)
        fail_msg("a wait of %lld ns used %lld ms of CPU in %lld ms", (long long)timeout,
                 (long long)(cpu / MS), (long long)(elapsed / MS));
}

static void huge_timeout_waits_for_event(void **state)
{
    test_ctx *c = *state;
    /* Values that overflow a millisecond int, a deadline computed as
     * now + timeout, or a 32-bit count of milliseconds (2^32 ms truncates
     * to 0). */
    static const int64_t timeouts[] = {
        INT64_MAX,
        INT64_MAX - 1,
        (int64_t)INT_MAX * MS + 1,
        ((int64_t)INT_MAX + 1) * MS,
        (int64_t)UINT32_MAX * MS,
        ((int64_t)1 << 32) * MS,
        (int64_t)UINT32_MAX * MS * 1000,
        (int64_t)1 << 62,
    };
    later_job j;
    memset(&j, 0, sizeof(j));
    assert_int_equal(cmio_waker_new(c->reg, 7, &j.waker), 0);
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++)
        wait_until_later(c, &j, timeouts[i], 7);
    cmio_waker_free(j.waker);
}

static void negative_timeout_waits_for_event(void **state)
{
    test_ctx *c = *state;
    static const int64_t timeouts[] = {-1, -2, -1 * MS, INT64_MIN};
    later_job j;
    memset(&j, 0, sizeof(j));
    assert_int_equal(cmio_waker_new(c->reg, 8, &j.waker), 0);
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++)
        wait_until_later(c, &j, timeouts[i], 8);
    cmio_waker_free(j.waker);

    /* Not only a wake: data arriving ends it too. */
    cmio_fd sv[2];
    register_idle(c, sv);
    memset(&j, 0, sizeof(j));
    j.send_fd = sv[1];
    wait_until_later(c, &j, -1, 1);
    unregister_idle(c, sv);
}

/* ------------------------------------------------------------------------ */
/* Signals (POSIX)                                                          */
/* ------------------------------------------------------------------------ */

#ifndef _WIN32
static volatile sig_atomic_t handler_runs;

static void count_signal(int sig)
{
    (void)sig;
    handler_runs++;
}

static void signal_interrupts_wait(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    register_idle(c, sv);
    cmio_waker *w;
    assert_int_equal(cmio_waker_new(c->reg, 9, &w), 0);

    /* No SA_RESTART: the caller asked to see interruptions. */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = count_signal;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);

    static const int64_t timeouts[] = {-1, 10000 * MS, 10000 * MS + 500000};
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        /* Leave an event in the buffer, to see the interrupted wait empty it. */
        assert_int_equal(cmio_waker_wake(w), 0);
        expect_events(c, WAIT, {9, EXP_R});
        assert_true(cmio_events_len(c->events) >= 1);

        handler_runs = 0;
        test_signaller j;
        memset(&j, 0, sizeof(j));
        j.target = pthread_self();
        j.sig = SIGUSR1;
        j.fallback = w;
        test_thread t;
        test_thread_start(&t, test_signal_until_done, &j);
        cmio__atomic_store(&j.go, 1);
        int rc = cmio_poll_wait(c->poll, c->events, timeouts[i]);
        cmio__atomic_store(&j.done, 1);
        test_thread_join(t);

        if (rc != -EINTR)
            fail_msg("timeout %lld ns: the signal gave %d (%s), not -EINTR",
                     (long long)timeouts[i], rc, rc < 0 ? cmio_strerror(rc) : "events");
        assert_true(handler_runs >= 1);
        assert_int_equal(cmio_events_len(c->events), 0);
        assert_null(cmio_events_get(c->events, 0));
    }

    test_restore_signal(SIGUSR1, &old);

    cmio_waker_free(w);
    unregister_idle(c, sv);
}
#else
static void signal_interrupts_wait(void **state)
{
    (void)state;
    test_skip_because("Windows cannot interrupt a waiting thread with a signal: the C runtime "
                      "runs console-event handlers on a thread of their own, so -EINTR never "
                      "happens");
}
#endif /* !_WIN32 */

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(zero_timeout_never_blocks),
        T(positive_timeout_never_returns_early),
        T(timed_wait_absorbs_empty_wakeups),
        T(huge_timeout_waits_for_event),
        T(negative_timeout_waits_for_event),
        T(signal_interrupts_wait),
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
