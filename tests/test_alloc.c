/*
 * Allocation failures: every allocating call, with its k-th allocation made
 * to fail for every k, returns -ENOMEM, leaks nothing (the fixture counts
 * descriptors; the sanitizer and valgrind runs count memory) and leaves the
 * poll usable. On epoll and kqueue, waiting and registering allocate
 * nothing at all: they must succeed with every allocation failing. On every
 * backend, waiting, rearming and waking allocate nothing.
 *
 * The kernel out of memory (iocp): a poll request AFD refuses and a
 * completion packet that cannot be posted again cost neither an event nor
 * a registration. cmio_poll_wait keeps its documented errors, rearm keeps
 * returning 0, and a reregister that fails leaves the old registration in
 * force, as a failed EPOLL_CTL_MOD does.
 */
#include "helpers.h"
#include "thread_helpers.h"

#include <stdlib.h>

void cmio__alloc_fail_after(long n); /* test hook in the library */

#ifdef _WIN32
/* Test hook in the iocp backend (src/iocp.h): the OS calls to fail from
 * now on; returns how many it failed since the last call. */
long cmio__iocp_fail(unsigned calls);
#define FAIL_AFD_POLL 1u /* starting an AFD poll request */
#define FAIL_REPOST 2u   /* putting a packet back on the completion port */
#else
#define NO_AFD_REQUESTS                                                                            \
    "only Windows AFD watches a socket through a request that must be issued again after "        \
    "each answer; epoll, kqueue and poll(2) keep no per-socket request for the kernel to refuse"
#endif

static int native_backend(void)
{
    return test_is_backend("epoll") || test_is_backend("kqueue");
}

/* Checks that the poll still works: a fresh registration is reported. */
static void assert_usable(test_ctx *c)
{
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 77, CMIO_WRITABLE), 0);
    expect_events(c, 2000 * MS, {77, EXP_W});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_close(sv[0]);
    test_close(sv[1]);
}

/* Runs op with the k-th allocation failing for k = 0, 1, ... until it
 * succeeds; every failure must be -ENOMEM. Returns how many allocations the
 * successful call made room for (the k it succeeded at). */
typedef int (*op_fn)(test_ctx *c, void **made);
typedef void (*undo_fn)(void *made);

static long fail_each_allocation(test_ctx *c, op_fn op, undo_fn undo)
{
    for (long k = 0; k < 64; k++) {
        void *made = NULL;
        int before = test_open_fds();
        cmio__alloc_fail_after(k);
        int rc = op(c, &made);
        cmio__alloc_fail_after(-1);
        if (rc == 0) {
            undo(made);
            return k;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_null(made);
        assert_int_equal(test_open_fds(), before);
        assert_usable(c);
    }
    fail_msg("operation never succeeded");
    return -1;
}

static int op_poll_new(test_ctx *c, void **made)
{
    (void)c;
    return cmio_poll_new((cmio_poll **)made);
}
static void undo_poll(void *made) { cmio_poll_free(made); }

static int op_events_new(test_ctx *c, void **made)
{
    (void)c;
    return cmio_events_new((cmio_events **)made, 100);
}
static void undo_events(void *made) { cmio_events_free(made); }

static int op_clone(test_ctx *c, void **made)
{
    return cmio_registry_clone(c->reg, (cmio_registry **)made);
}
static void undo_clone(void *made) { cmio_registry_free(made); }

static int op_waker_new(test_ctx *c, void **made)
{
    return cmio_waker_new(c->reg, 5, (cmio_waker **)made);
}
static void undo_waker(void *made) { cmio_waker_free(made); }

static void poll_new_fails_cleanly(void **state)
{
    assert_true(fail_each_allocation(*state, op_poll_new, undo_poll) >= 1);
}

static void events_new_fails_cleanly(void **state)
{
    assert_true(fail_each_allocation(*state, op_events_new, undo_events) >= 1);
}

static void clone_fails_cleanly(void **state)
{
    assert_true(fail_each_allocation(*state, op_clone, undo_clone) >= 1);
}

static void waker_new_fails_cleanly(void **state)
{
    assert_true(fail_each_allocation(*state, op_waker_new, undo_waker) >= 1);
}

/* Registration: on emulating backends register may allocate (a table
 * grows); whatever it needs, failure is -ENOMEM with no trace left. */
static void register_fails_cleanly(void **state)
{
    test_ctx *c = *state;
    enum { N = 300 }; /* enough to make a growing table grow */
    cmio_fd socks[N][2];
    for (int i = 0; i < N; i++)
        test_tcp_pair(socks[i]);
    for (int i = 0; i < N; i++) {
        int rc;
        long k = 0;
        do {
            cmio__alloc_fail_after(k++);
            rc = cmio_registry_register(c->reg, socks[i][0], (cmio_token)i, CMIO_WRITABLE);
            cmio__alloc_fail_after(-1);
            if (rc == -ENOMEM) {
                /* Nothing was registered: deregister says so. */
                assert_int_equal(cmio_registry_deregister(c->reg, socks[i][0]), -ENOENT);
            }
        } while (rc == -ENOMEM && k < 64);
        assert_int_equal(rc, 0);
        if (native_backend())
            assert_int_equal(k, 1); /* succeeded with no allocation allowed */
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(cmio_registry_deregister(c->reg, socks[i][0]), 0);
        test_close(socks[i][0]);
        test_close(socks[i][1]);
    }
    assert_usable(c);
}

/* On epoll and kqueue the whole event path runs with allocation failing. */
static void hot_path_allocates_nothing(void **state)
{
    test_ctx *c = *state;
    if (test_is_backend("iocp"))
        test_skip_because("AFD writes into each socket's poll request until that request "
                          "completes, which may be after deregister returns: iocp registration "
                          "allocates that state per socket");
    if (!native_backend())
        test_skip_because("only epoll and kqueue promise allocation-free registration");
    cmio_fd sv[2];
    test_tcp_pair(sv);
    cmio_waker *w;
    assert_int_equal(cmio_waker_new(c->reg, 9, &w), 0);
    cmio__alloc_fail_after(0);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE | CMIO_WRITABLE), 0);
    expect_events(c, 2000 * MS, {1, EXP_W});
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 2, CMIO_READABLE | CMIO_LEVEL), 0);
    test_send_all(sv[1], "x", 1);
    expect_events(c, 2000 * MS, {2, EXP_R});
    assert_int_equal(cmio_registry_rearm(c->reg, sv[0], CMIO_READABLE), 0);
    assert_int_equal(cmio_waker_wake(w), 0);
    expect_events_among_others(c, 2000 * MS, {9, EXP_R});
    assert_int_equal(cmio_poll_wait(c->poll, c->events, 0) >= 0, 1);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    cmio__alloc_fail_after(-1);
    cmio_waker_free(w);
    test_close(sv[0]);
    test_close(sv[1]);
}

/* On every backend, emulating ones included, waiting, rearming and waking
 * allocate nothing (emulating backends may allocate in the registry calls). */
static void wait_rearm_and_wake_allocate_nothing(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    cmio_waker *w;
    assert_int_equal(cmio_waker_new(c->reg, 9, &w), 0);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE | CMIO_WRITABLE), 0);
    cmio__alloc_fail_after(0);
    expect_events(c, 2000 * MS, {1, EXP_W});
    test_send_all(sv[1], "x", 1);
    expect_events(c, 2000 * MS, {1, EXP_R});
    assert_int_equal(test_drain(sv[0]), 1);
    assert_int_equal(cmio_registry_rearm(c->reg, sv[0], CMIO_READABLE), 0);
    test_send_all(sv[1], "y", 1);
    expect_events(c, 2000 * MS, {1, EXP_R});
    assert_int_equal(cmio_waker_wake(w), 0);
    expect_events_among_others(c, 2000 * MS, {9, EXP_R});
    assert_int_equal(cmio_poll_wait(c->poll, c->events, 0) >= 0, 1);
    cmio__alloc_fail_after(-1);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    cmio_waker_free(w);
    test_close(sv[0]);
    test_close(sv[1]);
}

/* A test that fails mid-way must not leave the kernel "failing" for the
 * next one. */
static int teardown_refusals(void **state)
{
#ifdef _WIN32
    cmio__iocp_fail(0);
#endif
    return test_teardown(state);
}

#ifdef _WIN32
/* A socket registered for READABLE (edge) whose first event was reported
 * and drained, so the next rearm issues a new request. */
static void reported_and_drained(test_ctx *c, cmio_fd sv[2])
{
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    test_send_all(sv[1], "x", 1);
    expect_events(c, ARRIVE, {1, EXP_R});
    assert_int_equal(test_drain(sv[0]), 1);
}
#endif

/* A refused request is retried by the wait, at a slow pace, and the event
 * it was for comes once the kernel accepts it again. */
static void refused_request_is_retried(void **state)
{
#ifndef _WIN32
    (void)state;
    test_skip_because(NO_AFD_REQUESTS);
#else
    test_ctx *c = *state;
    cmio_fd sv[2];
    reported_and_drained(c, sv);
    cmio__iocp_fail(FAIL_AFD_POLL);
    assert_int_equal(cmio_registry_rearm(c->reg, sv[0], CMIO_READABLE), 0);
    test_send_all(sv[1], "y", 1);
    int64_t start = test_now_ns();
    assert_int_equal(cmio_poll_wait(c->poll, c->events, 300 * MS), 0);
    assert_true(test_now_ns() - start >= 300 * MS);
    long refused = cmio__iocp_fail(0);
    assert_true(refused >= 3);  /* the rearm and retries within the wait */
    assert_true(refused <= 40); /* ... every 10 to 50 ms, not in a spin */
    expect_events(c, ARRIVE, {1, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
#endif
}

#ifdef _WIN32
typedef struct {
    cmio_registry *reg;
    cmio_fd fd, peer;
    int rc;
} rearm_job;

/* While the main thread is blocked in a wait: a rearm the kernel refuses,
 * then data, then the kernel accepting requests again. */
static TEST_THREAD_MAIN(refused_rearm_later)
{
    rearm_job *j = arg;
    test_sleep_ms(100);
    cmio__iocp_fail(FAIL_AFD_POLL);
    j->rc = cmio_registry_rearm(j->reg, j->fd, CMIO_READABLE);
    send(j->peer, "y", 1, 0);
    test_sleep_ms(100);
    cmio__iocp_fail(0);
    TEST_THREAD_END;
}
#endif

/* The waiter is blocked when another thread's rearm is refused: it must
 * still be told to retry, not only when its own timeout ends. */
static void refused_rearm_reaches_a_blocked_waiter(void **state)
{
#ifndef _WIN32
    (void)state;
    test_skip_because(NO_AFD_REQUESTS);
#else
    test_ctx *c = *state;
    cmio_fd sv[2];
    reported_and_drained(c, sv);
    rearm_job j = {c->reg, sv[0], sv[1], -1};
    test_thread t;
    test_thread_start(&t, refused_rearm_later, &j);
    int64_t start = test_now_ns();
    int n = cmio_poll_wait(c->poll, c->events, 1500 * MS);
    int64_t took = test_now_ns() - start;
    test_thread_join(t);
    assert_int_equal(j.rc, 0);
    assert_int_equal(n, 1);
    assert_int_equal(cmio_event_token(cmio_events_get(c->events, 0)), 1);
    assert_true(cmio_event_is_readable(cmio_events_get(c->events, 0)));
    assert_true(took < 1000 * MS);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
#endif
}

/* With every request refused, waits still dequeue: wakes are reported and
 * a socket closed without deregistering is dropped, which ends its
 * retries. */
static void refusals_do_not_wedge_the_poll(void **state)
{
#ifndef _WIN32
    (void)state;
    test_skip_because(NO_AFD_REQUESTS);
#else
    test_ctx *c = *state;
    cmio_waker *w;
    assert_int_equal(cmio_waker_new(c->reg, 9, &w), 0);
    cmio_fd sv[2];
    test_tcp_pair(sv);
    /* Level: every report queues it to be polled again before the next
     * wait, which is then refused. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_WRITABLE | CMIO_LEVEL), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    cmio__iocp_fail(FAIL_AFD_POLL);
    assert_int_equal(cmio_waker_wake(w), 0);
    expect_events(c, ARRIVE, {9, EXP_R});
    test_close(sv[0]);
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_true(cmio__iocp_fail(FAIL_AFD_POLL) >= 1);
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_int_equal(cmio__iocp_fail(0), 0); /* dropped: nothing left to retry */
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -EBADF);
    test_close(sv[1]);
    cmio_waker_free(w);
    assert_usable(c);
#endif
}

/* A reregister the kernel refuses fails and changes nothing. */
static void refused_reregister_keeps_the_old_registration(void **state)
{
#ifndef _WIN32
    (void)state;
    test_skip_because(NO_AFD_REQUESTS);
#else
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_WRITABLE | CMIO_LEVEL), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    cmio__iocp_fail(FAIL_AFD_POLL);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 2, CMIO_READABLE), -ENOMEM);
    assert_true(cmio__iocp_fail(0) >= 1);
    /* Still token 1, level, writable: token 2 would fail this. */
    expect_events(c, ARRIVE, {1, EXP_W});
    expect_events(c, ARRIVE, {1, EXP_W});
    test_send_all(sv[1], "x", 1);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 2, CMIO_READABLE), 0);
    expect_events(c, ARRIVE, {2, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
#endif
}

/*
 * Registering a reused socket number makes the registering thread take
 * every packet off the port to find the old socket's close, and put the
 * others back. Those it cannot put back must not be lost: a socket's answer
 * is asked for again, a wake is reported all the same.
 */
static void packets_that_cannot_be_put_back_are_not_lost(void **state)
{
#ifndef _WIN32
    (void)state;
    test_skip_because(NO_AFD_REQUESTS);
#else
    test_ctx *c = *state;
    cmio_waker *w;
    assert_int_equal(cmio_waker_new(c->reg, 9, &w), 0);
    cmio_fd a[2], b[2];
    test_tcp_pair(a);
    test_tcp_pair(b);
    assert_int_equal(cmio_registry_register(c->reg, a[0], 1, CMIO_READABLE), 0);
    /* Packets on the port, not yet dequeued by any wait: b[0] is writable
     * at once, and a wake. */
    assert_int_equal(cmio_registry_register(c->reg, b[0], 3, CMIO_WRITABLE), 0);
    assert_int_equal(cmio_waker_wake(w), 0);
    /* Closed without deregistering, and its number taken by a new socket. */
    cmio_fd old = a[0];
    test_close(a[0]);
    test_sleep_ms(20);
    cmio_fd spare[64];
    int nspare = 0;
    cmio_fd reused = CMIO_INVALID_FD;
    uint16_t port;
    while (reused == CMIO_INVALID_FD && nspare < 64) {
        cmio_fd s = test_udp_socket(&port);
        if (s == old)
            reused = s;
        else
            spare[nspare++] = s;
    }
    for (int i = 0; i < nspare; i++)
        test_close(spare[i]);
    assert_true(reused != CMIO_INVALID_FD);

    cmio__iocp_fail(FAIL_REPOST);
    assert_int_equal(cmio_registry_register(c->reg, reused, 2, CMIO_READABLE), 0);
    assert_true(cmio__iocp_fail(0) >= 2); /* b[0]'s answer and the wake */
    expect_events(c, ARRIVE, {3, EXP_W}, {9, EXP_R});
    /* The wake was reported, so a new one posts a packet again. */
    assert_int_equal(cmio_waker_wake(w), 0);
    expect_events(c, ARRIVE, {9, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, reused), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, b[0]), 0);
    test_close(reused);
    test_close(a[1]);
    test_pair_close(b);
    cmio_waker_free(w);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(poll_new_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(events_new_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(clone_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(waker_new_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(register_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(hot_path_allocates_nothing, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(wait_rearm_and_wake_allocate_nothing, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(refused_request_is_retried, test_setup,
                                        teardown_refusals),
        cmocka_unit_test_setup_teardown(refused_rearm_reaches_a_blocked_waiter, test_setup,
                                        teardown_refusals),
        cmocka_unit_test_setup_teardown(refusals_do_not_wedge_the_poll, test_setup,
                                        teardown_refusals),
        cmocka_unit_test_setup_teardown(refused_reregister_keeps_the_old_registration, test_setup,
                                        teardown_refusals),
        cmocka_unit_test_setup_teardown(packets_that_cannot_be_put_back_are_not_lost, test_setup,
                                        teardown_refusals),
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
