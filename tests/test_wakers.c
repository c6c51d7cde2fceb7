/*
 * Wakers: a wake from another thread or from a signal handler ends a wait
 * with the waker's token; wakes coalesce (any number before a wait give at
 * least one event, and none is left over for the wait after); each waker
 * keeps its own token; a freed waker reports nothing more.
 */
#include "thread_helpers.h"

#define WAIT (5000 * MS)
#define QUIET (100 * MS)

/* Fails unless every one of the n events of the last wait is a
 * readable-only event for `token`. */
static void all_from_waker(test_ctx *c, int n, cmio_token token)
{
    for (int k = 0; k < n; k++) {
        const cmio_event *e = cmio_events_get(c->events, (size_t)k);
        assert_non_null(e);
        if (cmio_event_token(e) != token)
            fail_msg("event for token %lu, expected only the waker's %lu",
                     (unsigned long)cmio_event_token(e), (unsigned long)token);
        assert_true(cmio_event_is_readable(e));
        assert_false(cmio_event_is_writable(e));
    }
}

/* ------------------------------------------------------------------------ */
/* Wakes from another thread                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    cmio_waker *waker;
    cmio__atomic go; /* set by the main thread just before it waits */
    int delay_ms;    /* from go to the wake */
    int64_t woke_at; /* test_now_ns() just before the wake */
    int rc;          /* what cmio_waker_wake returned */
} wake_later_job;

static TEST_THREAD_MAIN(wake_later)
{
    wake_later_job *j = arg;
    test_thread_await(&j->go, j->delay_ms);
    j->woke_at = test_now_ns();
    j->rc = cmio_waker_wake(j->waker);
    TEST_THREAD_END;
}

static void wake_from_thread_ends_infinite_wait(void **state)
{
    test_ctx *c = *state;
    wake_later_job j;
    memset(&j, 0, sizeof(j));
    j.delay_ms = 100;
    assert_int_equal(cmio_waker_new(c->reg, 50, &j.waker), 0);
    test_thread t;
    test_thread_start(&t, wake_later, &j);

    int64_t start = test_now_ns();
    cmio__atomic_store(&j.go, 1);
    int n = cmio_poll_wait(c->poll, c->events, -1);
    int64_t end = test_now_ns();
    test_thread_join(t);

    assert_int_equal(j.rc, 0);
    assert_true(n >= 1);
    all_from_waker(c, n, 50);
    /* It blocked until the wake, and the wake ended it. */
    assert_true(end - start >= (int64_t)j.delay_ms * MS);
    assert_true(end >= j.woke_at);
    cmio_waker_free(j.waker);
}

typedef struct {
    cmio_waker *waker;
    int rounds;
    cmio__atomic round; /* the round the main thread is waiting for */
    int rc;
} ping_job;

static TEST_THREAD_MAIN(wake_each_round)
{
    ping_job *j = arg;
    for (int i = 1; i <= j->rounds; i++) {
        while (cmio__atomic_load(&j->round) < i)
            test_thread_yield();
        int rc = cmio_waker_wake(j->waker);
        if (rc != 0 && j->rc == 0)
            j->rc = rc;
    }
    TEST_THREAD_END;
}

static void wake_after_each_wait_is_never_lost(void **state)
{
    test_ctx *c = *state;
    ping_job j;
    memset(&j, 0, sizeof(j));
    j.rounds = 200;
    assert_int_equal(cmio_waker_new(c->reg, 51, &j.waker), 0);
    test_thread t;
    test_thread_start(&t, wake_each_round, &j);
    /* Round i's wake is sent only after the wait of round i-1 returned, so
     * it lands just before or during the wait of round i: that wait must
     * see it either way. */
    for (int i = 1; i <= j.rounds; i++) {
        cmio__atomic_store(&j.round, i);
        int n = cmio_poll_wait(c->poll, c->events, WAIT);
        if (n < 1)
            fail_msg("round %d: the wake was lost (wait returned %d)", i, n);
        all_from_waker(c, n, 51);
    }
    test_thread_join(t);
    assert_int_equal(j.rc, 0);
    cmio_waker_free(j.waker);
}

/* ------------------------------------------------------------------------ */
/* Coalescing, tokens, lifetime                                             */
/* ------------------------------------------------------------------------ */

static void wakes_coalesce(void **state)
{
    test_ctx *c = *state;
    cmio_waker *w;
    assert_int_equal(cmio_waker_new(c->reg, 20, &w), 0);
    /* A fresh waker is silent. */
    expect_silence(c, QUIET, ANY_TOKEN);

    /* More wakes than any pipe or counter a waker might use can hold
     * without being drained; errno is left alone by each of them. */
    for (int i = 0; i < 100000; i++) {
        errno = EDOM;
        assert_int_equal(cmio_waker_wake(w), 0);
        assert_int_equal(errno, EDOM);
    }
    int n = cmio_poll_wait(c->poll, c->events, WAIT);
    assert_true(n >= 1);
    all_from_waker(c, n, 20);
    /* All of them were consumed by that one wait. */
    expect_silence(c, QUIET, ANY_TOKEN);

    /* And the waker still works afterwards. */
    assert_int_equal(cmio_waker_wake(w), 0);
    expect_events(c, WAIT, {20, EXP_R});
    expect_silence(c, QUIET, ANY_TOKEN);
    cmio_waker_free(w);
}

static void several_wakers_keep_their_tokens(void **state)
{
    test_ctx *c = *state;
    /* Any token value is allowed, the extremes included. */
    const cmio_token tokens[4] = {0, 1, (cmio_token)0xdeadbeef, UINTPTR_MAX};
    cmio_waker *w[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(cmio_waker_new(c->reg, tokens[i], &w[i]), 0);
    expect_silence(c, QUIET, ANY_TOKEN);

    /* Only the woken ones report, each under its own token. */
    assert_int_equal(cmio_waker_wake(w[1]), 0);
    assert_int_equal(cmio_waker_wake(w[3]), 0);
    assert_int_equal(cmio_waker_wake(w[3]), 0);
    expect_events(c, WAIT, {tokens[1], EXP_R}, {tokens[3], EXP_R});
    expect_silence(c, QUIET, ANY_TOKEN);

    for (int i = 0; i < 4; i++)
        assert_int_equal(cmio_waker_wake(w[i]), 0);
    expect_events(c, WAIT, {tokens[0], EXP_R}, {tokens[1], EXP_R}, {tokens[2], EXP_R},
                  {tokens[3], EXP_R});
    expect_silence(c, QUIET, ANY_TOKEN);
    for (int i = 0; i < 4; i++)
        cmio_waker_free(w[i]);
}

static void waker_created_through_a_clone(void **state)
{
    test_ctx *c = *state;
    cmio_registry *clone;
    cmio_waker *w;
    assert_int_equal(cmio_registry_clone(c->reg, &clone), 0);
    assert_int_equal(cmio_waker_new(clone, 31, &w), 0);
    /* The waker belongs to the queue, not to the handle it was made with. */
    cmio_registry_free(clone);
    expect_silence(c, QUIET, ANY_TOKEN);
    assert_int_equal(cmio_waker_wake(w), 0);
    expect_events(c, WAIT, {31, EXP_R});
    cmio_waker_free(w);
}

static void freed_waker_reports_nothing(void **state)
{
    test_ctx *c = *state;
    cmio_waker *w;
    assert_int_equal(cmio_waker_new(c->reg, 40, &w), 0);
    assert_int_equal(cmio_waker_wake(w), 0);
    expect_events(c, WAIT, {40, EXP_R});
    /* Woken again but freed before the next wait: that wake is gone too. */
    assert_int_equal(cmio_waker_wake(w), 0);
    cmio_waker_free(w);
    expect_silence(c, QUIET, ANY_TOKEN);

    /* A new waker (which may reuse the same descriptor) reports under its
     * own token only. */
    assert_int_equal(cmio_waker_new(c->reg, 41, &w), 0);
    assert_int_equal(cmio_waker_wake(w), 0);
    expect_events(c, WAIT, {41, EXP_R});
    expect_silence(c, QUIET, ANY_TOKEN);
    cmio_waker_free(w);
}

/* ------------------------------------------------------------------------ */
/* Wakes from a signal handler (POSIX)                                      */
/* ------------------------------------------------------------------------ */

#ifndef _WIN32
/* What the handler uses and records: plain sig_atomic_t for the flags it
 * writes, an atomic pointer for the waker the main thread hands it. */
static _Atomic(cmio_waker *) handler_waker;
static volatile sig_atomic_t handler_runs;
static volatile sig_atomic_t handler_errno_changed;
static volatile sig_atomic_t handler_wake_failed;

static void wake_in_handler(int sig)
{
    (void)sig;
    int saved = errno;
    cmio_waker *w = handler_waker;
    if (w != NULL) {
        /* A value no wake path produces, to see that it survives. */
        errno = EDOM;
        if (cmio_waker_wake(w) != 0)
            handler_wake_failed = 1;
        if (errno != EDOM)
            handler_errno_changed = 1;
    }
    handler_runs++;
    errno = saved;
}

static void install_handler(struct sigaction *old)
{
    handler_runs = 0;
    handler_errno_changed = 0;
    handler_wake_failed = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = wake_in_handler;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, old), 0);
}

static void restore_handler(const struct sigaction *old)
{
    handler_waker = NULL;
    test_restore_signal(SIGUSR1, old);
}

static void wake_from_signal_handler(void **state)
{
    test_ctx *c = *state;
    cmio_waker *w;
    struct sigaction old;
    assert_int_equal(cmio_waker_new(c->reg, 60, &w), 0);
    handler_waker = w;
    install_handler(&old);

    /* raise() runs the handler before it returns. */
    errno = ERANGE;
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(errno, ERANGE);
    assert_int_equal(handler_runs, 1);
    restore_handler(&old);
    assert_int_equal(handler_wake_failed, 0);
    assert_int_equal(handler_errno_changed, 0);

    expect_events(c, WAIT, {60, EXP_R});
    expect_silence(c, QUIET, ANY_TOKEN);
    cmio_waker_free(w);
}

static void wake_from_signal_handler_during_wait(void **state)
{
    test_ctx *c = *state;
    cmio_waker *w;
    struct sigaction old;
    assert_int_equal(cmio_waker_new(c->reg, 61, &w), 0);
    handler_waker = w;
    install_handler(&old);

    test_signaller j;
    memset(&j, 0, sizeof(j));
    j.target = pthread_self();
    j.sig = SIGUSR1;
    test_thread t;
    test_thread_start(&t, test_signal_until_done, &j);
    cmio__atomic_store(&j.go, 1);
    /* The signal interrupts the wait (-EINTR) or arrives before it; the
     * wake made by its handler is then reported without another signal. */
    int n;
    int interrupted = 0;
    int64_t deadline = test_now_ns() + WAIT;
    while ((n = cmio_poll_wait(c->poll, c->events, deadline - test_now_ns())) == -EINTR)
        interrupted++;
    cmio__atomic_store(&j.done, 1);
    test_thread_join(t);
    restore_handler(&old);

    assert_true(n >= 1);
    all_from_waker(c, n, 61);
    assert_true(j.sent >= 1);
    assert_true(handler_runs >= 1);
    assert_true(interrupted <= handler_runs);
    assert_int_equal(handler_wake_failed, 0);
    assert_int_equal(handler_errno_changed, 0);
    cmio_waker_free(w);
}
#else
static void wake_from_signal_handler(void **state)
{
    (void)state;
    test_skip_because("Windows has no POSIX signals (no SIGUSR1, no sigaction): a C runtime "
                      "handler is a plain call from raise() or runs on a thread of its own, "
                      "which wake_from_thread_ends_infinite_wait covers");
}

static void wake_from_signal_handler_during_wait(void **state)
{
    (void)state;
    test_skip_because("Windows cannot deliver a signal to a waiting thread: console-event "
                      "handlers run on a thread of their own, which "
                      "wake_from_thread_ends_infinite_wait covers");
}
#endif /* !_WIN32 */

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(wake_from_thread_ends_infinite_wait),
        T(wake_after_each_wait_is_never_lost),
        T(wakes_coalesce),
        T(several_wakers_keep_their_tokens),
        T(waker_created_through_a_clone),
        T(freed_waker_reports_nothing),
        T(wake_from_signal_handler),
        T(wake_from_signal_handler_during_wait),
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
