/*
 * Lifecycle: creating and freeing polls, registries, clones, events and
 * wakers in every order the contract allows, and the queue living until
 * the last handle on it is gone.
 */
#include "helpers.h"

#include <stdlib.h>

static void poll_new_and_free(void **state)
{
    (void)state;
    int before = test_open_fds();
    cmio_poll *p = NULL;
    assert_int_equal(cmio_poll_new(&p), 0);
    assert_non_null(p);
    assert_non_null(cmio_poll_registry(p));
    assert_ptr_equal(cmio_poll_registry(p), cmio_poll_registry(p));
    cmio_poll_free(p);
    assert_int_equal(test_open_fds(), before);
}

static void many_polls_are_independent(void **state)
{
    (void)state;
    cmio_poll *p[16];
    for (int i = 0; i < 16; i++)
        assert_int_equal(cmio_poll_new(&p[i]), 0);
    cmio_fd sv[2];
    test_tcp_pair(sv);
    /* The same fd may be registered with several queues at once. */
    for (int i = 0; i < 16; i++)
        assert_int_equal(cmio_registry_register(cmio_poll_registry(p[i]), sv[0], (cmio_token)i,
                                                CMIO_WRITABLE),
                         0);
    cmio_events *ev;
    assert_int_equal(cmio_events_new(&ev, 4), 0);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(cmio_poll_wait(p[i], ev, 2000 * MS), 1);
        assert_int_equal(cmio_event_token(cmio_events_get(ev, 0)), (cmio_token)i);
    }
    for (int i = 0; i < 16; i++) {
        assert_int_equal(cmio_registry_deregister(cmio_poll_registry(p[i]), sv[0]), 0);
        cmio_poll_free(p[i]);
    }
    cmio_events_free(ev);
    test_close(sv[0]);
    test_close(sv[1]);
}

static void events_new_reports_capacity(void **state)
{
    (void)state;
    cmio_events *ev = NULL;
    assert_int_equal(cmio_events_new(&ev, 1), 0);
    assert_int_equal(cmio_events_capacity(ev), 1);
    assert_int_equal(cmio_events_len(ev), 0);
    assert_null(cmio_events_get(ev, 0));
    cmio_events_free(ev);
    assert_int_equal(cmio_events_new(&ev, CMIO_EVENTS_MAX), 0);
    assert_int_equal(cmio_events_capacity(ev), CMIO_EVENTS_MAX);
    cmio_events_free(ev);
}

static void clone_outlives_poll(void **state)
{
    (void)state;
    int before = test_open_fds();
    cmio_poll *p;
    cmio_registry *c1, *c2;
    assert_int_equal(cmio_poll_new(&p), 0);
    int with_poll = test_open_fds();
    assert_int_equal(cmio_registry_clone(cmio_poll_registry(p), &c1), 0);
    assert_int_equal(cmio_registry_clone(c1, &c2), 0);
    /* A clone costs no descriptor. */
    assert_int_equal(test_open_fds(), with_poll);
    cmio_poll_free(p);
    /* The queue is still alive for the clones: registration still works. */
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c2, sv[0], 1, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_register(c1, sv[0], 1, CMIO_READABLE), -EEXIST);
    assert_int_equal(cmio_registry_deregister(c1, sv[0]), 0);
    cmio_registry_free(c1);
    cmio_registry_free(c2);
    test_close(sv[0]);
    test_close(sv[1]);
    assert_int_equal(test_open_fds(), before);
}

static void poll_registry_is_not_freed_by_registry_free(void **state)
{
    test_ctx *c = *state;
    /* Passing the poll's own registry to cmio_registry_free is ignored. */
    cmio_registry_free(c->reg);
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 5, CMIO_WRITABLE), 0);
    expect_events(c, 2000 * MS, {5, EXP_W});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_close(sv[0]);
    test_close(sv[1]);
}

static void waker_outlives_poll(void **state)
{
    (void)state;
    int before = test_open_fds();
    cmio_poll *p;
    cmio_waker *w;
    assert_int_equal(cmio_poll_new(&p), 0);
    assert_int_equal(cmio_waker_new(cmio_poll_registry(p), 9, &w), 0);
    cmio_poll_free(p);
    assert_int_equal(cmio_waker_wake(w), 0);
    cmio_waker_free(w);
    assert_int_equal(test_open_fds(), before);
}

static void free_functions_accept_null(void **state)
{
    (void)state;
    cmio_poll_free(NULL);
    cmio_registry_free(NULL);
    cmio_events_free(NULL);
    cmio_waker_free(NULL);
}

static void backend_is_named(void **state)
{
    (void)state;
    const char *b = cmio_backend();
    assert_non_null(b);
    assert_true(strcmp(b, "epoll") == 0 || strcmp(b, "kqueue") == 0 || strcmp(b, "iocp") == 0
                || strcmp(b, "poll") == 0);
    assert_string_equal(b, CMIO_BACKEND_NAME);
}

static void strerror_names_every_code(void **state)
{
    (void)state;
    const int codes[] = {EINVAL, EBADF, EEXIST, ENOENT, EPERM, ENOTSUP, EBUSY, EINTR, ENOMEM};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *s = cmio_strerror(-codes[i]);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
        assert_string_equal(s, cmio_strerror(codes[i]));
    }
    assert_string_equal(cmio_strerror(0), "success");
    assert_string_equal(cmio_strerror(-123456), "unknown error");
    assert_non_null(cmio_strerror(INT32_MIN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmio_unit_test(poll_new_and_free),
        cmio_unit_test(many_polls_are_independent),
        cmio_unit_test(events_new_reports_capacity),
        cmio_unit_test(clone_outlives_poll),
        cmocka_unit_test_setup_teardown(poll_registry_is_not_freed_by_registry_free, test_setup,
                                        test_teardown),
        cmio_unit_test(waker_outlives_poll),
        cmio_unit_test(free_functions_accept_null),
        cmio_unit_test(backend_is_named),
        cmio_unit_test(strerror_names_every_code),
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
