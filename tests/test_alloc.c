/*
 * Allocation failures: every allocating call, with its k-th allocation made
 * to fail for every k, returns -ENOMEM, leaks nothing (the fixture counts
 * descriptors; the sanitizer and valgrind runs count memory) and leaves the
 * poll usable. On epoll and kqueue, waiting and registering allocate
 * nothing at all: they must succeed with every allocation failing.
 */
#include "helpers.h"

#include <stdlib.h>

void cmio__alloc_fail_after(long n); /* test hook in the library */

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(poll_new_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(events_new_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(clone_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(waker_new_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(register_fails_cleanly, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(hot_path_allocates_nothing, test_setup, test_teardown),
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
