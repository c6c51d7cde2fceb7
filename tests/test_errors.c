/*
 * Errors: every public function fed NULL, invalid and wrong-state
 * arguments returns the documented negative errno value, never crashes,
 * and leaves out-pointers NULL and registrations unchanged.
 *
 *   NULL handle or out-pointer          -EINVAL (accessors: 0/false/NULL)
 *   fd CMIO_INVALID_FD / negative       -EBADF
 *   closed or never-opened fd           -EBADF (register, reregister,
 *                                        deregister)
 *   fd not registered                   -ENOENT (reregister, deregister);
 *                                        rearm ignores it and returns 0
 *   interest without a direction or     -EINVAL
 *   with unknown bits
 *   capacity 0 or > CMIO_EVENTS_MAX     -EINVAL
 *   a second thread in cmio_poll_wait   -EBUSY
 *   CMIO_PRIORITY                       works, or -ENOTSUP where the OS has
 *                                        no priority data (kqueue, poll(2)
 *                                        outside Linux)
 *
 * Timeouts: every int64_t is accepted; negative ones wait for an event,
 * huge ones neither wrap into "now" nor fail.
 */
#include "helpers.h"
#include "thread_helpers.h"

#include <limits.h>
#include <stdlib.h>

#ifndef _WIN32
#include <sys/resource.h>
#endif

/* Any pointer value that is not NULL, to see out-pointers reset. */
#define SENTINEL(type) ((type *)(void *)&sentinel_storage)
static int sentinel_storage;

/* ------------------------------------------------------------------------ */
/* NULL                                                                     */
/* ------------------------------------------------------------------------ */

static void null_handles_are_einval(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);

    assert_null(cmio_poll_registry(NULL));
    assert_int_equal(cmio_poll_wait(NULL, c->events, 0), -EINVAL);
    assert_int_equal(cmio_poll_wait(NULL, c->events, -1), -EINVAL);
    assert_int_equal(cmio_poll_wait(c->poll, NULL, 0), -EINVAL);
    assert_int_equal(cmio_poll_wait(c->poll, NULL, -1), -EINVAL);

    assert_int_equal(cmio_registry_register(NULL, sv[0], 1, CMIO_READABLE), -EINVAL);
    assert_int_equal(cmio_registry_reregister(NULL, sv[0], 1, CMIO_READABLE), -EINVAL);
    assert_int_equal(cmio_registry_deregister(NULL, sv[0]), -EINVAL);
    assert_int_equal(cmio_registry_rearm(NULL, sv[0], CMIO_READABLE), -EINVAL);

    cmio_registry *clone = SENTINEL(cmio_registry);
    assert_int_equal(cmio_registry_clone(NULL, &clone), -EINVAL);
    assert_null(clone);

    cmio_waker *w = SENTINEL(cmio_waker);
    assert_int_equal(cmio_waker_new(NULL, 1, &w), -EINVAL);
    assert_null(w);
    assert_int_equal(cmio_waker_wake(NULL), -EINVAL);

    /* A NULL registry in a register call did not register anything. */
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);
    test_pair_close(sv);
}

static void null_out_pointers_are_einval(void **state)
{
    test_ctx *c = *state;
    assert_int_equal(cmio_poll_new(NULL), -EINVAL);
    assert_int_equal(cmio_registry_clone(c->reg, NULL), -EINVAL);
    assert_int_equal(cmio_registry_clone(NULL, NULL), -EINVAL);
    assert_int_equal(cmio_events_new(NULL, 1), -EINVAL);
    assert_int_equal(cmio_events_new(NULL, 0), -EINVAL);
    assert_int_equal(cmio_waker_new(c->reg, 1, NULL), -EINVAL);
    assert_int_equal(cmio_waker_new(NULL, 1, NULL), -EINVAL);
    /* None of them left anything behind: the teardown counts descriptors,
     * and a waker created anyway would show up as an event. */
    expect_silence(c, SILENCE, ANY_TOKEN);
}

static void accessors_accept_null(void **state)
{
    (void)state;
    assert_int_equal(cmio_events_len(NULL), 0);
    assert_int_equal(cmio_events_capacity(NULL), 0);
    assert_null(cmio_events_get(NULL, 0));
    assert_null(cmio_events_get(NULL, SIZE_MAX));
    assert_int_equal(cmio_event_token(NULL), 0);
    assert_false(cmio_event_is_readable(NULL));
    assert_false(cmio_event_is_writable(NULL));
    assert_false(cmio_event_is_error(NULL));
    assert_false(cmio_event_is_read_closed(NULL));
    assert_false(cmio_event_is_write_closed(NULL));
    assert_false(cmio_event_is_priority(NULL));
}

/* ------------------------------------------------------------------------ */
/* Bad descriptors                                                          */
/* ------------------------------------------------------------------------ */

static void invalid_fd_is_ebadf(void **state)
{
    test_ctx *c = *state;
#ifdef _WIN32
    const cmio_fd bad[] = {CMIO_INVALID_FD};
#else
    const cmio_fd bad[] = {CMIO_INVALID_FD, -2, INT_MIN};
#endif
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cmio_registry_register(c->reg, bad[i], 1, CMIO_READABLE), -EBADF);
        assert_int_equal(cmio_registry_reregister(c->reg, bad[i], 1, CMIO_READABLE), -EBADF);
        assert_int_equal(cmio_registry_deregister(c->reg, bad[i]), -EBADF);
        assert_int_equal(cmio_registry_rearm(c->reg, bad[i], CMIO_READABLE), -EBADF);
        assert_int_equal(cmio_registry_rearm(c->reg, bad[i], CMIO_WRITABLE), -EBADF);
    }
}

static void closed_fd_is_ebadf(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    cmio_fd closed = sv[0];
    test_pair_close(sv);
    /* Nothing else opens descriptors in this process meanwhile, so the
     * number stays closed. */
    assert_int_equal(cmio_registry_register(c->reg, closed, 1, CMIO_READABLE), -EBADF);
    assert_int_equal(cmio_registry_reregister(c->reg, closed, 1, CMIO_READABLE), -EBADF);
    assert_int_equal(cmio_registry_deregister(c->reg, closed), -EBADF);
    /* The fd is checked before the interest: -EBADF, not the -ENOTSUP of
     * backends without CMIO_PRIORITY. */
    assert_int_equal(
        cmio_registry_register(c->reg, closed, 1, CMIO_READABLE | CMIO_PRIORITY), -EBADF);
    assert_int_equal(
        cmio_registry_reregister(c->reg, closed, 1, CMIO_READABLE | CMIO_PRIORITY), -EBADF);
    /* rearm never says whether an fd is registered (a rearm racing a
     * deregister and close must be harmless): a closed number is simply
     * not registered. */
    assert_int_equal(cmio_registry_rearm(c->reg, closed, CMIO_READABLE), 0);

    /* A number that was never opened, far above anything in use (on
     * Windows too: handle values are small multiples of 4). */
    const cmio_fd never = (cmio_fd)(1 << 20);
    assert_int_equal(cmio_registry_register(c->reg, never, 1, CMIO_READABLE), -EBADF);
    assert_int_equal(cmio_registry_reregister(c->reg, never, 1, CMIO_READABLE), -EBADF);
    assert_int_equal(cmio_registry_deregister(c->reg, never), -EBADF);
    expect_silence(c, SILENCE, ANY_TOKEN);
}

static void closed_before_deregister_is_ebadf(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE | CMIO_LEVEL), 0);
    /* Breaking the rule (close before deregister) is reported, not hidden. */
    cmio_fd fd = sv[0];
    test_close(sv[0]);
    assert_int_equal(cmio_registry_deregister(c->reg, fd), -EBADF);
    assert_int_equal(cmio_registry_reregister(c->reg, fd, 2, CMIO_READABLE), -EBADF);
    test_close(sv[1]);
    expect_silence(c, SILENCE, ANY_TOKEN);
}

static void unregistered_fd_is_enoent(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 1, CMIO_READABLE), -ENOENT);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 1, CMIO_READABLE), -ENOENT);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);
    test_pair_close(sv);
}

/* ------------------------------------------------------------------------ */
/* Bad interests                                                            */
/* ------------------------------------------------------------------------ */

static const unsigned no_direction[] = {
    0, CMIO_EDGE, CMIO_LEVEL, CMIO_ONESHOT, CMIO_LEVEL | CMIO_ONESHOT,
};

static void bad_interest_on_register_is_einval(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    for (size_t i = 0; i < sizeof(no_direction) / sizeof(no_direction[0]); i++)
        assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, no_direction[i]), -EINVAL);
    /* Every bit the header does not define, alone and with a direction. */
    const unsigned known = CMIO_READABLE | CMIO_WRITABLE | CMIO_PRIORITY | CMIO_LEVEL | CMIO_ONESHOT;
    for (unsigned bit = 1; bit != 0; bit <<= 1) {
        if (bit & known)
            continue;
        assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, bit), -EINVAL);
        assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, bit | CMIO_READABLE), -EINVAL);
        assert_int_equal(
            cmio_registry_register(c->reg, sv[0], 1, bit | CMIO_READABLE | CMIO_WRITABLE), -EINVAL);
    }
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, ~0u), -EINVAL);
    /* None of those registered the fd. */
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

static void bad_interest_on_reregister_is_einval(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_WRITABLE | CMIO_LEVEL), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    for (size_t i = 0; i < sizeof(no_direction) / sizeof(no_direction[0]); i++)
        assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 2, no_direction[i]), -EINVAL);
    const unsigned known = CMIO_READABLE | CMIO_WRITABLE | CMIO_PRIORITY | CMIO_LEVEL | CMIO_ONESHOT;
    for (unsigned bit = 1; bit != 0; bit <<= 1) {
        if (bit & known)
            continue;
        assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 2, bit | CMIO_WRITABLE), -EINVAL);
    }
    /* The registration is unchanged: token 1, writable, level. */
    expect_events(c, ARRIVE, {1, EXP_W});
    expect_events(c, ARRIVE, {1, EXP_W});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

/* ------------------------------------------------------------------------ */
/* Events buffer                                                            */
/* ------------------------------------------------------------------------ */

static void events_capacity_bounds(void **state)
{
    (void)state;
    const size_t bad[] = {0, CMIO_EVENTS_MAX + 1, CMIO_EVENTS_MAX * 2, SIZE_MAX / 2, SIZE_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cmio_events *ev = SENTINEL(cmio_events);
        assert_int_equal(cmio_events_new(&ev, bad[i]), -EINVAL);
        assert_null(ev);
    }
    /* The bounds themselves are fine. */
    cmio_events *ev = NULL;
    assert_int_equal(cmio_events_new(&ev, 1), 0);
    cmio_events_free(ev);
    assert_int_equal(cmio_events_new(&ev, CMIO_EVENTS_MAX), 0);
    assert_int_equal(cmio_events_capacity(ev), CMIO_EVENTS_MAX);
    cmio_events_free(ev);
}

/* ------------------------------------------------------------------------ */
/* rearm                                                                    */
/* ------------------------------------------------------------------------ */

static void rearm_arguments(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    const unsigned bad[] = {0,
                            CMIO_LEVEL,
                            CMIO_ONESHOT,
                            CMIO_LEVEL | CMIO_ONESHOT,
                            CMIO_READABLE | CMIO_LEVEL,
                            CMIO_WRITABLE | CMIO_ONESHOT,
                            CMIO_READABLE | 0x80u,
                            CMIO_READABLE | 0x80000000u,
                            ~0u};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cmio_registry_rearm(c->reg, sv[0], bad[i]), -EINVAL);
        assert_int_equal(cmio_registry_rearm(NULL, sv[0], bad[i]), -EINVAL);
    }
    const unsigned good[] = {CMIO_READABLE, CMIO_WRITABLE, CMIO_PRIORITY,
                             CMIO_READABLE | CMIO_WRITABLE,
                             CMIO_READABLE | CMIO_WRITABLE | CMIO_PRIORITY};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        /* Not registered (yet): ignored, 0 (a documented decision, so that
         * a rearm racing a deregister is harmless). */
        assert_int_equal(cmio_registry_rearm(c->reg, sv[0], good[i]), 0);
        assert_int_equal(cmio_registry_rearm(NULL, sv[0], good[i]), -EINVAL);
        assert_int_equal(cmio_registry_rearm(c->reg, CMIO_INVALID_FD, good[i]), -EBADF);
    }
    /* A rearm of an unregistered fd did not register it. */
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);

    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(cmio_registry_rearm(c->reg, sv[0], good[i]), 0);
    /* Rearming a direction that is not ready reports nothing. */
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(cmio_registry_rearm(c->reg, sv[0], good[i]), 0);
    /* Nor did a rearm after the deregister bring it back. */
    test_send_all(sv[1], "x", 1);
    expect_silence(c, SILENCE, ANY_TOKEN);

    /* Through a clone, the same rules. */
    cmio_registry *clone;
    assert_int_equal(cmio_registry_clone(c->reg, &clone), 0);
    assert_int_equal(cmio_registry_rearm(clone, sv[0], 0), -EINVAL);
    assert_int_equal(cmio_registry_rearm(clone, CMIO_INVALID_FD, CMIO_READABLE), -EBADF);
    assert_int_equal(cmio_registry_rearm(clone, sv[0], CMIO_READABLE), 0);
    cmio_registry_free(clone);
    test_pair_close(sv);
}

/* ------------------------------------------------------------------------ */
/* Timeouts                                                                 */
/* ------------------------------------------------------------------------ */

static const int64_t odd_timeouts[] = {
    -1,
    -2,
    -1000 * MS,
    INT64_MIN,
    INT64_MIN + 1,
    INT64_MAX,
    INT64_MAX - 1,
    (int64_t)INT_MAX * MS + 1,         /* milliseconds overflow an int */
    ((int64_t)UINT32_MAX + 1) * MS,    /* ...and an unsigned 32-bit count */
    (int64_t)UINT32_MAX * 1000000000,  /* seconds overflow 32 bits */
    (INT64_MAX / MS - 1) * MS + 1,     /* huge, with a 1 ns sub-millisecond part */
};

static void any_timeout_returns_a_ready_event(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_WRITABLE | CMIO_LEVEL), 0);
    for (size_t i = 0; i < sizeof(odd_timeouts) / sizeof(odd_timeouts[0]); i++) {
        int64_t t0 = test_now_ns();
        int n = cmio_poll_wait(c->poll, c->events, odd_timeouts[i]);
        if (n != 1)
            fail_msg("timeout %lld: wait returned %d", (long long)odd_timeouts[i], n);
        assert_int_equal(cmio_event_token(cmio_events_get(c->events, 0)), 1);
        assert_true(test_now_ns() - t0 < ARRIVE);
    }
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

typedef struct {
    cmio_waker *w;
    int delay_ms;
    int rc;
} late_wake_t;

/* A helper thread must not assert: it records, the main thread checks. */
static TEST_THREAD_MAIN(late_wake)
{
    late_wake_t *lw = arg;
    test_sleep_ms(lw->delay_ms);
    lw->rc = cmio_waker_wake(lw->w);
    TEST_THREAD_END;
}

static void huge_and_negative_timeouts_wait_for_the_event(void **state)
{
    test_ctx *c = *state;
    late_wake_t lw = {NULL, 50, -1};
    assert_int_equal(cmio_waker_new(c->reg, 77, &lw.w), 0);
    for (size_t i = 0; i < sizeof(odd_timeouts) / sizeof(odd_timeouts[0]); i++) {
        /* Nothing is ready until the waker fires: a timeout that wrapped to
         * zero or to a small value would return 0 early, or spin through
         * zero-timeout waits until the event came. */
        test_thread th;
        int64_t cpu0 = test_thread_cpu_ns();
        int64_t t0 = test_now_ns();
        test_thread_start(&th, late_wake, &lw);
        int n;
        do
            n = cmio_poll_wait(c->poll, c->events, odd_timeouts[i]);
        while (n == -EINTR);
        int64_t elapsed = test_now_ns() - t0;
        int64_t cpu = cpu0 >= 0 ? test_thread_cpu_ns() - cpu0 : -1;
        test_thread_join(th);
        assert_int_equal(lw.rc, 0);
        if (n != 1)
            fail_msg("timeout %lld: wait returned %d after %lld ms", (long long)odd_timeouts[i], n,
                     (long long)(elapsed / MS));
        assert_int_equal(cmio_event_token(cmio_events_get(c->events, 0)), 77);
        assert_true(elapsed >= 40 * MS);
        if (cpu > elapsed / 2)
            fail_msg("timeout %lld: the wait used %lld ms of CPU in %lld ms: it did not block",
                     (long long)odd_timeouts[i], (long long)(cpu / MS), (long long)(elapsed / MS));
    }
    cmio_waker_free(lw.w);
}

static void tiny_timeouts_time_out(void **state)
{
    test_ctx *c = *state;
    const int64_t tiny[] = {0, 1, 999, 1000 * 1000 - 1, 1000 * 1000 + 1};
    for (size_t i = 0; i < sizeof(tiny) / sizeof(tiny[0]); i++) {
        int64_t t0 = test_now_ns();
        assert_int_equal(cmio_poll_wait(c->poll, c->events, tiny[i]), 0);
        /* Never shorter than asked. */
        assert_true(test_now_ns() - t0 >= tiny[i]);
        assert_int_equal(cmio_events_len(c->events), 0);
    }
}

/* ------------------------------------------------------------------------ */
/* One waiter per poll                                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    cmio_poll *poll;
    int rc;
    cmio_token token;
} waiter_t;

static TEST_THREAD_MAIN(waiter)
{
    waiter_t *wt = arg;
    cmio_events *ev;
    if (cmio_events_new(&ev, 4) != 0) {
        wt->rc = -ENOMEM;
        TEST_THREAD_END;
    }
    /* The main thread probes with waits of its own until it sees -EBUSY,
     * so this thread may meet -EBUSY too before it gets in. */
    do
        wt->rc = cmio_poll_wait(wt->poll, ev, -1);
    while (wt->rc == -EINTR || wt->rc == -EBUSY);
    wt->token = wt->rc > 0 ? cmio_event_token(cmio_events_get(ev, 0)) : 0;
    cmio_events_free(ev);
    TEST_THREAD_END;
}

static void second_waiter_is_ebusy(void **state)
{
    test_ctx *c = *state;
    cmio_waker *w;
    assert_int_equal(cmio_waker_new(c->reg, 5, &w), 0);
    cmio_poll *other;
    assert_int_equal(cmio_poll_new(&other), 0);

    waiter_t wt = {c->poll, 1, 0};
    test_thread th;
    test_thread_start(&th, waiter, &wt);
    /* Wait until the thread is inside cmio_poll_wait: until then a second
     * wait simply finds nothing. */
    int rc = 0;
    int64_t deadline = test_now_ns() + ARRIVE;
    while ((rc = cmio_poll_wait(c->poll, c->events, 0)) == 0 && test_now_ns() < deadline)
        test_sleep_ms(1);
    assert_int_equal(rc, -EBUSY);
    assert_int_equal(cmio_poll_wait(c->poll, c->events, 10 * MS), -EBUSY);
    assert_int_equal(cmio_poll_wait(c->poll, c->events, -1), -EBUSY);
    /* Only that poll is busy: another one is independent. */
    assert_int_equal(cmio_poll_wait(other, c->events, 10 * MS), 0);

    assert_int_equal(cmio_waker_wake(w), 0);
    test_thread_join(th);
    assert_int_equal(wt.rc, 1);
    assert_int_equal(wt.token, 5);
    /* The waiter left: waiting works again. */
    assert_int_equal(cmio_poll_wait(c->poll, c->events, 10 * MS), 0);
    cmio_poll_free(other);
    cmio_waker_free(w);
}

/* ------------------------------------------------------------------------ */
/* CMIO_PRIORITY                                                            */
/* ------------------------------------------------------------------------ */

static void priority_works_or_is_enotsup(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    /* Where the OS has priority data the backend must support it: epoll
     * (EPOLLPRI), iocp (AFD expedited receive), poll(2) on Linux (POLLPRI). */
    int supported = test_is_backend("epoll") || test_is_backend("iocp");
#ifdef __linux__
    supported |= test_is_backend("poll");
#endif
    int rc = cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE | CMIO_PRIORITY);
    assert_int_equal(rc, supported ? 0 : -ENOTSUP);
    if (rc == -ENOTSUP) {
        /* Refused whole: nothing was registered, and reregister agrees. */
        assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_PRIORITY), -ENOTSUP);
        assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);
        assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
        assert_int_equal(
            cmio_registry_reregister(c->reg, sv[0], 1, CMIO_READABLE | CMIO_PRIORITY), -ENOTSUP);
        assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
        test_pair_close(sv);
        test_skip_because("no priority data on this backend's OS: CMIO_PRIORITY is -ENOTSUP");
        return;
    }
    assert_int_equal(rc, 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    /* TCP urgent data is the priority data sockets have. */
    assert_int_equal(send(sv[1], "!", 1, MSG_OOB), 1);
    expect_events(c, ARRIVE, {1, EXP_PRI});
    /* Priority alone is a direction too. */
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 2, CMIO_PRIORITY), 0);
    expect_events(c, ARRIVE, {2, EXP_PRI});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

/* ------------------------------------------------------------------------ */
/* Resource exhaustion (POSIX: the descriptor limit can be lowered)         */
/* ------------------------------------------------------------------------ */

#ifndef _WIN32
static void descriptor_exhaustion_is_emfile(void **state)
{
    test_ctx *c = *state;
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* The lowest free number: every number below it is in use, so a limit
     * equal to it leaves no descriptor to create. */
    int lowest = dup(0);
    assert_true(lowest >= 0);
    close(lowest);
    struct rlimit low = old;
    low.rlim_cur = (rlim_t)lowest;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0)
        test_skip_because("cannot lower RLIMIT_NOFILE here");

    cmio_poll *p = SENTINEL(cmio_poll);
    int rc_poll = cmio_poll_new(&p);
    cmio_poll *p_after = p;
    cmio_waker *w = SENTINEL(cmio_waker);
    int rc_waker = cmio_waker_new(c->reg, 1, &w);
    cmio_waker *w_after = w;
    /* Restore before asserting, so a failure leaves the process usable. */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    if (rc_poll == 0)
        cmio_poll_free(p_after);

    /* Every POSIX queue needs a descriptor (epoll, kqueue, or the poll(2)
     * backend's wake-up channel). */
    assert_int_equal(rc_poll, -EMFILE);
    assert_null(p_after);
    /* A waker may need none (kqueue's EVFILT_USER, a channel shared by the
     * queue): then it must simply work. epoll's wakers are eventfds. */
    if (test_is_backend("epoll"))
        assert_int_equal(rc_waker, -EMFILE);
    if (rc_waker == 0) {
        assert_non_null(w_after);
        assert_ptr_not_equal(w_after, SENTINEL(cmio_waker));
        assert_int_equal(cmio_waker_wake(w_after), 0);
        expect_events(c, ARRIVE, {1, EXP_R});
        cmio_waker_free(w_after);
    } else {
        if (rc_waker != -EMFILE)
            fail_msg("cmio_waker_new at the descriptor limit: %d (%s)", rc_waker,
                     cmio_strerror(rc_waker));
        assert_null(w_after);
    }
    /* And everything works again once descriptors are available. */
    assert_int_equal(cmio_poll_new(&p), 0);
    cmio_poll_free(p);
    assert_int_equal(cmio_waker_new(c->reg, 1, &w), 0);
    cmio_waker_free(w);
}
#else
static void descriptor_exhaustion_is_emfile(void **state)
{
    (void)state;
    test_skip_because("Windows has no per-process handle limit a test can lower (no "
                      "RLIMIT_NOFILE): handles run out only with memory");
}
#endif

/* ------------------------------------------------------------------------ */
/* The queue itself                                                         */
/* ------------------------------------------------------------------------ */

#ifdef __linux__
static void registering_the_queue_itself_is_einval(void **state)
{
    (void)state;
    if (!test_is_backend("epoll"))
        test_skip_because("only epoll's queue is a descriptor the caller could find");
    /* The epoll descriptor takes the lowest free number. */
    int lowest = dup(0);
    assert_true(lowest >= 0);
    close(lowest);
    cmio_poll *p;
    assert_int_equal(cmio_poll_new(&p), 0);
    char path[64], link[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", lowest);
    ssize_t len = readlink(path, link, sizeof(link) - 1);
    assert_true(len > 0);
    link[len] = '\0';
    assert_string_equal(link, "anon_inode:[eventpoll]");
    assert_int_equal(cmio_registry_register(cmio_poll_registry(p), lowest, 1, CMIO_READABLE),
                     -EINVAL);
    cmio_poll_free(p);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(null_handles_are_einval, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(null_out_pointers_are_einval, test_setup, test_teardown),
        cmio_unit_test(accessors_accept_null),
        cmocka_unit_test_setup_teardown(invalid_fd_is_ebadf, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(closed_fd_is_ebadf, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(closed_before_deregister_is_ebadf, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(unregistered_fd_is_enoent, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(bad_interest_on_register_is_einval, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(bad_interest_on_reregister_is_einval, test_setup,
                                        test_teardown),
        cmio_unit_test(events_capacity_bounds),
        cmocka_unit_test_setup_teardown(rearm_arguments, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(any_timeout_returns_a_ready_event, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(huge_and_negative_timeouts_wait_for_the_event, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(tiny_timeouts_time_out, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(second_waiter_is_ebusy, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(priority_works_or_is_enotsup, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(descriptor_exhaustion_is_emfile, test_setup,
                                        test_teardown),
#ifdef __linux__
        cmio_unit_test(registering_the_queue_itself_is_einval),
#endif
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
