/*
 * Events: the caller-owned buffer cmio_poll_wait fills.
 *
 *   - a wait writes at most the buffer's capacity and returns the count;
 *   - it replaces the contents (len is the last wait's count, never a sum),
 *     and get() past len is NULL;
 *   - ready sources beyond the capacity are reported by later waits, none
 *     lost: what the tests below assert for 200 ready sources and a
 *     capacity of 7 is
 *       edge:            every token exactly once, then silence;
 *       level:           every token at least once within a bounded number
 *                        of waits (no source starves behind the others);
 *       level + oneshot: every token exactly once, then silence;
 *   - one buffer can be reused across waits and across polls;
 *   - one batch may hold two entries for one token, which callers (and the
 *     expect_events helper) merge.
 */
#include "helpers.h"

#include <stdlib.h>


#define MANY 200
#define SMALL_CAP 7

static int wait_ok(cmio_poll *p, cmio_events *ev, int64_t timeout)
{
    int n;
    do
        n = cmio_poll_wait(p, ev, timeout);
    while (n == -EINTR);
    assert_true(n >= 0);
    assert_true((size_t)n <= cmio_events_capacity(ev));
    assert_int_equal(cmio_events_len(ev), (size_t)n);
    assert_null(cmio_events_get(ev, (size_t)n));
    return n;
}

static void fresh_buffer_is_empty(void **state)
{
    (void)state;
    const size_t caps[] = {1, 2, 7, 64, 1000};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        cmio_events *ev = NULL;
        assert_int_equal(cmio_events_new(&ev, caps[i]), 0);
        assert_non_null(ev);
        assert_int_equal(cmio_events_capacity(ev), caps[i]);
        assert_int_equal(cmio_events_len(ev), 0);
        assert_null(cmio_events_get(ev, 0));
        assert_null(cmio_events_get(ev, caps[i] - 1));
        assert_null(cmio_events_get(ev, SIZE_MAX));
        cmio_events_free(ev);
    }
}

static void wait_writes_at_most_capacity(void **state)
{
    test_ctx *c = *state;
    enum { N = 5 };
    cmio_fd sv[N][2];
    for (int i = 0; i < N; i++) {
        test_tcp_pair(sv[i]);
        assert_int_equal(cmio_registry_register(c->reg, sv[i][0], (cmio_token)(100 + i),
                                                CMIO_WRITABLE),
                         0);
    }
    /* Let every source become ready before the first wait. */
    test_sleep_ms(20);
    const size_t caps[] = {1, 3};
    for (size_t k = 0; k < 2; k++) {
        cmio_events *ev;
        assert_int_equal(cmio_events_new(&ev, caps[k]), 0);
        int seen[N] = {0};
        int total = 0;
        int64_t deadline = test_now_ns() + ARRIVE;
        while (total < N && test_now_ns() < deadline) {
            int n = wait_ok(c->poll, ev, ARRIVE);
            assert_true(n >= 1);
            assert_int_equal(cmio_events_capacity(ev), caps[k]);
            for (int i = 0; i < n; i++) {
                const cmio_event *e = cmio_events_get(ev, (size_t)i);
                assert_non_null(e);
                cmio_token t = cmio_event_token(e);
                assert_true(t >= 100 && t < 100 + N);
                assert_true(cmio_event_is_writable(e));
                /* Edge mode: each source once. */
                assert_int_equal(seen[t - 100], 0);
                seen[t - 100] = 1;
                total++;
            }
        }
        assert_int_equal(total, N);
        expect_silence(c, SILENCE, ANY_TOKEN);
        cmio_events_free(ev);
        /* Second round: reregister re-reports all of them. */
        for (int i = 0; i < N; i++)
            assert_int_equal(cmio_registry_reregister(c->reg, sv[i][0], (cmio_token)(100 + i),
                                                      CMIO_WRITABLE),
                             0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(cmio_registry_deregister(c->reg, sv[i][0]), 0);
        test_pair_close(sv[i]);
    }
}

/* Level-registers a and b, and waits until one wait reports both. */
static void fill_with_two(test_ctx *c, cmio_events *ev, cmio_fd a, cmio_fd b)
{
    assert_int_equal(cmio_registry_register(c->reg, a, 1, CMIO_WRITABLE | CMIO_LEVEL), 0);
    assert_int_equal(cmio_registry_register(c->reg, b, 2, CMIO_WRITABLE | CMIO_LEVEL), 0);
    int64_t deadline = test_now_ns() + ARRIVE;
    while (wait_ok(c->poll, ev, ARRIVE) != 2)
        assert_true(test_now_ns() < deadline);
    cmio_token t0 = cmio_event_token(cmio_events_get(ev, 0));
    cmio_token t1 = cmio_event_token(cmio_events_get(ev, 1));
    assert_true((t0 == 1 && t1 == 2) || (t0 == 2 && t1 == 1));
    assert_int_equal(cmio_registry_deregister(c->reg, a), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, b), 0);
}

static void wait_replaces_contents(void **state)
{
    test_ctx *c = *state;
    cmio_fd a[2], b[2], d[2];
    test_tcp_pair(a);
    test_tcp_pair(b);
    test_tcp_pair(d);
    cmio_events *ev;
    assert_int_equal(cmio_events_new(&ev, 8), 0);

    /* Two events in the buffer, then a wait that finds nothing: empty. */
    fill_with_two(c, ev, a[0], b[0]);
    assert_int_equal(cmio_events_len(ev), 2);
    assert_int_equal(wait_ok(c->poll, ev, 0), 0);
    assert_int_equal(cmio_events_len(ev), 0);
    assert_null(cmio_events_get(ev, 0));
    assert_null(cmio_events_get(ev, 1));
    /* A timed wait that times out empties it too. */
    fill_with_two(c, ev, a[0], b[0]);
    assert_int_equal(wait_ok(c->poll, ev, 10 * MS), 0);
    assert_null(cmio_events_get(ev, 0));

    /* Two events, then a wait with one: exactly that one, nothing left
     * over from before and nothing appended after it. */
    fill_with_two(c, ev, a[0], b[0]);
    assert_int_equal(cmio_registry_register(c->reg, d[0], 3, CMIO_READABLE), 0);
    test_send_all(d[1], "x", 1);
    assert_int_equal(wait_ok(c->poll, ev, ARRIVE), 1);
    assert_int_equal(cmio_events_len(ev), 1);
    assert_int_equal(cmio_event_token(cmio_events_get(ev, 0)), 3);
    assert_true(cmio_event_is_readable(cmio_events_get(ev, 0)));
    assert_null(cmio_events_get(ev, 1));
    assert_int_equal(cmio_events_capacity(ev), 8);

    assert_int_equal(cmio_registry_deregister(c->reg, d[0]), 0);
    cmio_events_free(ev);
    test_pair_close(a);
    test_pair_close(b);
    test_pair_close(d);
}

static void buffer_reused_across_polls(void **state)
{
    test_ctx *c = *state;
    cmio_poll *other;
    assert_int_equal(cmio_poll_new(&other), 0);
    cmio_fd a[2], b[2];
    test_tcp_pair(a);
    test_tcp_pair(b);
    assert_int_equal(cmio_registry_register(c->reg, a[0], 1, CMIO_WRITABLE | CMIO_LEVEL), 0);
    assert_int_equal(
        cmio_registry_register(cmio_poll_registry(other), b[0], 2, CMIO_WRITABLE | CMIO_LEVEL), 0);
    cmio_events *ev;
    assert_int_equal(cmio_events_new(&ev, 4), 0);
    /* One buffer, alternating between two polls: each wait's contents are
     * that poll's events only. */
    for (int i = 0; i < 10; i++) {
        cmio_poll *p = i % 2 ? other : c->poll;
        cmio_token want = i % 2 ? 2 : 1;
        assert_int_equal(wait_ok(p, ev, ARRIVE), 1);
        assert_int_equal(cmio_event_token(cmio_events_get(ev, 0)), want);
        assert_true(cmio_event_is_writable(cmio_events_get(ev, 0)));
    }
    assert_int_equal(cmio_registry_deregister(c->reg, a[0]), 0);
    assert_int_equal(cmio_registry_deregister(cmio_poll_registry(other), b[0]), 0);
    cmio_events_free(ev);
    cmio_poll_free(other);
    test_pair_close(a);
    test_pair_close(b);
}

/* ------------------------------------------------------------------------ */
/* More ready sources than capacity                                         */
/* ------------------------------------------------------------------------ */

typedef struct {
    cmio_fd sv[MANY][2];
    int count[MANY];
} many_t;

static many_t *many_open(test_ctx *c, unsigned interest, int with_data)
{
    many_t *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    for (int i = 0; i < MANY; i++) {
        test_tcp_pair(m->sv[i]);
        /* Tokens far from the indexes, so an index passed off as a token
         * would be caught. */
        assert_int_equal(
            cmio_registry_register(c->reg, m->sv[i][0], (cmio_token)(5000 + i), interest), 0);
        if (with_data)
            test_send_all(m->sv[i][1], "x", 1);
    }
    test_sleep_ms(20);
    return m;
}

static void many_close(test_ctx *c, many_t *m)
{
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(cmio_registry_deregister(c->reg, m->sv[i][0]), 0);
        test_pair_close(m->sv[i]);
    }
    free(m);
}

/* One wait into `ev`; counts each token. Returns the number of events. */
static int many_wait(test_ctx *c, many_t *m, cmio_events *ev)
{
    int n = wait_ok(c->poll, ev, ARRIVE);
    for (int i = 0; i < n; i++) {
        cmio_token t = cmio_event_token(cmio_events_get(ev, (size_t)i));
        assert_true(t >= 5000 && t < 5000 + MANY);
        m->count[t - 5000]++;
    }
    return n;
}

static int many_seen(const many_t *m)
{
    int seen = 0;
    for (int i = 0; i < MANY; i++)
        seen += m->count[i] > 0;
    return seen;
}

/* Edge and oneshot: every token exactly once, in as many waits as it takes,
 * then nothing more. */
static void each_exactly_once(test_ctx *c, unsigned interest)
{
    many_t *m = many_open(c, interest, 1);
    cmio_events *ev;
    assert_int_equal(cmio_events_new(&ev, SMALL_CAP), 0);
    int waits = 0;
    int64_t deadline = test_now_ns() + 10 * ARRIVE;
    while (many_seen(m) < MANY) {
        assert_true(test_now_ns() < deadline);
        assert_true(many_wait(c, m, ev) > 0);
        waits++;
        for (int i = 0; i < MANY; i++)
            if (m->count[i] > 1)
                fail_msg("token %d reported %d times before all %d were seen", 5000 + i,
                         m->count[i], MANY);
    }
    assert_true(waits >= (MANY + SMALL_CAP - 1) / SMALL_CAP);
    expect_silence(c, SILENCE, ANY_TOKEN);
    cmio_events_free(ev);
    many_close(c, m);
}

static void overflow_edge_reports_each_once(void **state)
{
    each_exactly_once(*state, CMIO_READABLE);
}

static void overflow_oneshot_reports_each_once(void **state)
{
    each_exactly_once(*state, CMIO_READABLE | CMIO_LEVEL | CMIO_ONESHOT);
}

static void overflow_level_starves_nobody(void **state)
{
    test_ctx *c = *state;
    many_t *m = many_open(c, CMIO_READABLE | CMIO_LEVEL, 1);
    cmio_events *ev;
    assert_int_equal(cmio_events_new(&ev, SMALL_CAP), 0);
    /* Every source stays ready, so a backend that always served the same
     * few first would never get past them. A fair one needs 29 waits here;
     * allow a generous multiple. */
    const int max_waits = 8 * ((MANY + SMALL_CAP - 1) / SMALL_CAP);
    int waits = 0;
    while (many_seen(m) < MANY && waits < max_waits) {
        assert_true(many_wait(c, m, ev) > 0);
        waits++;
    }
    if (many_seen(m) < MANY)
        fail_msg("after %d waits only %d of %d level-ready sources were reported", waits,
                 many_seen(m), MANY);
    /* Still ready, so still reported: level mode does not go quiet. */
    assert_true(wait_ok(c->poll, ev, ARRIVE) > 0);
    cmio_events_free(ev);
    many_close(c, m);
}

static void overflow_edge_then_new_data(void **state)
{
    test_ctx *c = *state;
    many_t *m = many_open(c, CMIO_READABLE, 1);
    cmio_events *ev;
    assert_int_equal(cmio_events_new(&ev, SMALL_CAP), 0);
    int64_t deadline = test_now_ns() + 10 * ARRIVE;
    while (many_seen(m) < MANY) {
        assert_true(test_now_ns() < deadline);
        many_wait(c, m, ev);
    }
    /* Drain and rearm all, then make every third one ready again: exactly
     * those come back, once each. */
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(test_drain(m->sv[i][0]), 1);
        assert_int_equal(cmio_registry_rearm(c->reg, m->sv[i][0], CMIO_READABLE), 0);
        m->count[i] = 0;
    }
    expect_silence(c, SILENCE, ANY_TOKEN);
    int want = 0;
    for (int i = 0; i < MANY; i += 3) {
        test_send_all(m->sv[i][1], "y", 1);
        want++;
    }
    test_sleep_ms(20);
    int got = 0;
    while (got < want) {
        assert_true(test_now_ns() < deadline);
        got += many_wait(c, m, ev);
    }
    for (int i = 0; i < MANY; i++)
        assert_int_equal(m->count[i], i % 3 == 0 ? 1 : 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    cmio_events_free(ev);
    many_close(c, m);
}

/* ------------------------------------------------------------------------ */
/* Two entries for one token                                                */
/* ------------------------------------------------------------------------ */

static void two_entries_for_one_token_are_merged(void **state)
{
    test_ctx *c = *state;
    /* Two sources under one token (any token value is allowed, duplicates
     * included): the library cannot merge them, so the caller sees two
     * entries; the helpers merge the directions. */
    cmio_fd a[2], b[2];
    test_tcp_pair(a);
    test_tcp_pair(b);
    assert_int_equal(cmio_registry_register(c->reg, a[0], 42, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_register(c->reg, b[0], 42, CMIO_WRITABLE), 0);
    test_send_all(a[1], "x", 1);
    test_sleep_ms(20);

    int entries = 0;
    unsigned flags = 0;
    int64_t deadline = test_now_ns() + ARRIVE;
    while (entries < 2 && test_now_ns() < deadline) {
        int n = wait_ok(c->poll, c->events, 100 * MS);
        for (int i = 0; i < n; i++) {
            const cmio_event *e = cmio_events_get(c->events, (size_t)i);
            assert_int_equal(cmio_event_token(e), 42);
            flags |= test_event_flags(e);
            entries++;
        }
    }
    /* At least the two (a spurious extra one is allowed). */
    assert_true(entries >= 2);
    assert_true((flags & (EXP_R | EXP_W)) == (EXP_R | EXP_W));
    expect_silence(c, SILENCE, ANY_TOKEN);

    /* The same through expect_events, which merges entries and batches. */
    assert_int_equal(cmio_registry_reregister(c->reg, a[0], 42, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_reregister(c->reg, b[0], 42, CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {42, EXP_R | EXP_W});

    /* And one source with both directions: however the backend splits
     * them, both are seen. */
    assert_int_equal(cmio_registry_deregister(c->reg, b[0]), 0);
    assert_int_equal(cmio_registry_reregister(c->reg, a[0], 43, CMIO_READABLE | CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {43, EXP_R | EXP_W});
    assert_int_equal(cmio_registry_deregister(c->reg, a[0]), 0);
    test_pair_close(a);
    test_pair_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmio_unit_test(fresh_buffer_is_empty),
        cmocka_unit_test_setup_teardown(wait_writes_at_most_capacity, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(wait_replaces_contents, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(buffer_reused_across_polls, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(overflow_edge_reports_each_once, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(overflow_oneshot_reports_each_once, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(overflow_level_starves_nobody, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(overflow_edge_then_new_data, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(two_entries_for_one_token_are_merged, test_setup,
                                        test_teardown),
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
