/*
 * Registration: what register, reregister and deregister promise.
 *
 *   - register of an fd already registered with the queue is -EEXIST;
 *   - reregister/deregister of an fd that is not registered is -ENOENT;
 *   - reregister replaces the token AND the interest, and re-evaluates
 *     readiness (a source ready now is reported by the next wait);
 *   - after deregister returns, no wait that starts later reports it;
 *   - a reused fd number can be registered again after deregister + close,
 *     and even after a close without deregister (which is itself -EBADF
 *     on a later deregister);
 *   - one fd may be registered with several queues, independently;
 *   - a registry clone registers on the same queue as the poll;
 *   - any token value round-trips, including 0 and UINTPTR_MAX;
 *   - regular files and directories are -EPERM.
 */
#include "helpers.h"

#include <stdlib.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <fcntl.h>
#endif

#define SILENCE (100 * MS)
#define ARRIVE (2000 * MS)

static void pair_close(cmio_fd sv[2])
{
    test_close(sv[0]);
    test_close(sv[1]);
}

static void register_twice_is_eexist(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    /* Same interest, another interest, another token: always -EEXIST. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), -EEXIST);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 2, CMIO_WRITABLE | CMIO_LEVEL), -EEXIST);
    /* The refused call changed nothing: the first registration still holds
     * (token 1, readable only), so a writable-ready socket stays silent... */
    expect_silence(c, SILENCE, ANY_TOKEN);
    /* ...and data is reported under token 1. */
    test_send_all(sv[1], "x", 1);
    expect_events(c, ARRIVE, {1, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    /* Once deregistered, it may be registered again. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 3, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    pair_close(sv);
}

static void unregistered_fd_is_enoent(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 1, CMIO_READABLE), -ENOENT);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);
    /* The failed reregister did not register it behind our back. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    /* Deregistered is "not registered" again. */
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 1, CMIO_WRITABLE), -ENOENT);
    expect_silence(c, SILENCE, ANY_TOKEN);
    pair_close(sv);
}

static void registration_with_another_queue_is_not_this_one(void **state)
{
    test_ctx *c = *state;
    cmio_poll *other;
    assert_int_equal(cmio_poll_new(&other), 0);
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(cmio_poll_registry(other), sv[0], 1, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 1, CMIO_READABLE), -ENOENT);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);
    assert_int_equal(cmio_registry_deregister(cmio_poll_registry(other), sv[0]), 0);
    cmio_poll_free(other);
    pair_close(sv);
}

static void reregister_replaces_token_and_interest(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 2, CMIO_WRITABLE), 0);
    /* The new direction is reported under the new token, and only it:
     * expect_events fails on any event carrying the old token 1. */
    expect_events(c, ARRIVE, {2, EXP_W});
    /* Readable is no longer watched: data arriving is not reported under
     * either token (the socket stays writable, which edge mode already
     * reported and the caller has not used since). */
    test_send_all(sv[1], "x", 1);
    expect_silence(c, SILENCE, ANY_TOKEN);

    /* And back: readable under token 3, the pending byte is reported at
     * once, never under token 1 or 2. */
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 3, CMIO_READABLE), 0);
    expect_events(c, ARRIVE, {3, EXP_R});
    assert_int_equal(test_drain(sv[0]), 1);
    assert_int_equal(cmio_registry_rearm(c->reg, sv[0], CMIO_READABLE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    test_send_all(sv[1], "y", 1);
    expect_events(c, ARRIVE, {3, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    pair_close(sv);
}

static void reregister_reports_source_that_is_ready_now(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    test_send_all(sv[1], "x", 1);
    expect_events(c, ARRIVE, {1, EXP_R});
    /* Edge mode, not drained, nothing new: silent. */
    expect_silence(c, SILENCE, 1);
    /* Reregistering (same interest, new token) re-evaluates: the unread
     * byte is reported by the next wait. */
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 4, CMIO_READABLE), 0);
    expect_events(c, ARRIVE, {4, EXP_R});
    expect_silence(c, SILENCE, ANY_TOKEN);
    /* Same token and interest as before: still re-evaluated. */
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 4, CMIO_READABLE), 0);
    expect_events(c, ARRIVE, {4, EXP_R});

    /* A source that is not ready is not reported by a reregister. */
    assert_int_equal(test_drain(sv[0]), 1);
    assert_int_equal(cmio_registry_rearm(c->reg, sv[0], CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 5, CMIO_READABLE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    pair_close(sv);
}

static void reregister_reports_writable_now(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    expect_silence(c, SILENCE, ANY_TOKEN);
    /* Adding a direction through reregister: both are evaluated anew. */
    test_send_all(sv[1], "x", 1);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 1, CMIO_READABLE | CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {1, EXP_R | EXP_W});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    pair_close(sv);
}

static void deregister_stops_events(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    /* Level mode: reported on every wait while registered. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_WRITABLE | CMIO_LEVEL), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    expect_events(c, ARRIVE, {1, EXP_W});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    pair_close(sv);
}

static void deregister_drops_readiness_not_yet_collected(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE | CMIO_WRITABLE), 0);
    test_send_all(sv[1], "x", 1);
    /* Give the queue time to notice both directions before deregistering,
     * so whatever it has queued internally must be dropped. */
    test_sleep_ms(20);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);

    /* A new registration of the same fd reports under its own token only. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 2, CMIO_READABLE), 0);
    expect_events(c, ARRIVE, {2, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    pair_close(sv);
}

static void reused_fd_number_registers_again(void **state)
{
    test_ctx *c = *state;
    cmio_fd a[2], b[2];
    test_tcp_pair(a);
    assert_int_equal(cmio_registry_register(c->reg, a[0], 1, CMIO_READABLE | CMIO_WRITABLE), 0);
    test_send_all(a[1], "x", 1);
    expect_events(c, ARRIVE, {1, EXP_R | EXP_W});
    /* The rule: deregister, then close. */
    assert_int_equal(cmio_registry_deregister(c->reg, a[0]), 0);
    cmio_fd old = a[0];
    test_close(a[0]);
    test_close(a[1]);

    test_tcp_pair(b);
#ifndef _WIN32
    /* POSIX hands out the lowest free number, so the new pair reuses the
     * old numbers (one of them: which end gets which depends on the order
     * the helper creates them). */
    assert_true(b[0] == old || b[1] == old);
    cmio_fd reused = b[0] == old ? b[0] : b[1];
#else
    /* Windows may or may not reuse a SOCKET value; the test still checks
     * that registering after a deregister + close works. */
    cmio_fd reused = b[0];
    (void)old;
#endif
    cmio_fd peer = reused == b[0] ? b[1] : b[0];
    assert_int_equal(cmio_registry_register(c->reg, reused, 2, CMIO_READABLE | CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {2, EXP_W});
    test_send_all(peer, "y", 1);
    expect_events(c, ARRIVE, {2, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, reused), 0);
    pair_close(b);
}

static void reused_fd_number_after_close_without_deregister(void **state)
{
    test_ctx *c = *state;
    cmio_fd a[2], b[2];
    test_tcp_pair(a);
    assert_int_equal(cmio_registry_register(c->reg, a[0], 1, CMIO_READABLE | CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    /* Breaking the rule: close without deregistering. What the old
     * registration reports from now on is not specified, but it must not
     * poison the number for the next owner. */
    cmio_fd old = a[0];
    test_close(a[0]);
    test_close(a[1]);
    assert_int_equal(cmio_registry_deregister(c->reg, old), -EBADF);
    /* One wait in between, as an event loop would have, so a backend may
     * notice the close there; its events are not checked. */
    assert_true(cmio_poll_wait(c->poll, c->events, 20 * MS) >= 0);

    test_tcp_pair(b);
#ifndef _WIN32
    assert_true(b[0] == old || b[1] == old);
    cmio_fd reused = b[0] == old ? b[0] : b[1];
#else
    cmio_fd reused = b[0];
#endif
    cmio_fd peer = reused == b[0] ? b[1] : b[0];
    assert_int_equal(cmio_registry_register(c->reg, reused, 2, CMIO_READABLE | CMIO_WRITABLE), 0);
    /* Only the new token from here on: expect_events fails on token 1. */
    expect_events(c, ARRIVE, {2, EXP_W});
    test_send_all(peer, "y", 1);
    expect_events(c, ARRIVE, {2, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, reused), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    pair_close(b);
}

static void one_fd_in_two_polls(void **state)
{
    test_ctx *c = *state;
    test_ctx other;
    memset(&other, 0, sizeof(other));
    assert_int_equal(cmio_poll_new(&other.poll), 0);
    other.reg = cmio_poll_registry(other.poll);
    assert_int_equal(cmio_events_new(&other.events, 8), 0);

    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE | CMIO_LEVEL), 0);
    assert_int_equal(cmio_registry_register(other.reg, sv[0], 2, CMIO_READABLE | CMIO_LEVEL), 0);
    test_send_all(sv[1], "x", 1);
    /* Each queue reports its own token and never the other's. */
    expect_events(c, ARRIVE, {1, EXP_R});
    expect_events(&other, ARRIVE, {2, EXP_R});

    /* Deregistering from one leaves the other untouched. */
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    expect_events(&other, ARRIVE, {2, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);
    assert_int_equal(cmio_registry_deregister(other.reg, sv[0]), 0);
    expect_silence(&other, SILENCE, ANY_TOKEN);

    cmio_events_free(other.events);
    cmio_poll_free(other.poll);
    pair_close(sv);
}

static void clone_registers_on_the_same_queue(void **state)
{
    test_ctx *c = *state;
    cmio_registry *clone = NULL;
    assert_int_equal(cmio_registry_clone(c->reg, &clone), 0);
    assert_non_null(clone);
    assert_ptr_not_equal(clone, c->reg);

    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(clone, sv[0], 7, CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {7, EXP_W});
    /* One queue, one set of registrations, whichever handle is used. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 8, CMIO_READABLE), -EEXIST);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 8, CMIO_READABLE), 0);
    test_send_all(sv[1], "x", 1);
    expect_events(c, ARRIVE, {8, EXP_R});
    assert_int_equal(cmio_registry_deregister(clone, sv[0]), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), -ENOENT);

    /* Level mode so that anything left registered would show. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 9, CMIO_READABLE | CMIO_LEVEL), 0);
    assert_int_equal(cmio_registry_deregister(clone, sv[0]), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);

    /* A clone of a clone is the same queue too. */
    cmio_registry *clone2 = NULL;
    assert_int_equal(cmio_registry_clone(clone, &clone2), 0);
    cmio_registry_free(clone);
    assert_int_equal(cmio_registry_register(clone2, sv[0], 10, CMIO_READABLE), 0);
    expect_events(c, ARRIVE, {10, EXP_R});
    assert_int_equal(cmio_registry_deregister(clone2, sv[0]), 0);
    cmio_registry_free(clone2);
    pair_close(sv);
}

static void extreme_tokens_round_trip(void **state)
{
    test_ctx *c = *state;
    const cmio_token tokens[] = {0, UINTPTR_MAX, UINTPTR_MAX - 1, (cmio_token)1 << 31,
                                 (cmio_token)INTPTR_MAX + 1};
    enum { N = sizeof(tokens) / sizeof(tokens[0]) };
    cmio_fd sv[N][2];
    for (size_t i = 0; i < N; i++) {
        test_tcp_pair(sv[i]);
        assert_int_equal(cmio_registry_register(c->reg, sv[i][0], tokens[i], CMIO_WRITABLE), 0);
    }
    expect_events(c, ARRIVE, {tokens[0], EXP_W}, {tokens[1], EXP_W}, {tokens[2], EXP_W},
                  {tokens[3], EXP_W}, {tokens[4], EXP_W});
    /* The same values through reregister. */
    for (size_t i = 0; i < N; i++)
        assert_int_equal(
            cmio_registry_reregister(c->reg, sv[i][0], tokens[N - 1 - i], CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {tokens[0], EXP_W}, {tokens[1], EXP_W}, {tokens[2], EXP_W},
                  {tokens[3], EXP_W}, {tokens[4], EXP_W});
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(cmio_registry_deregister(c->reg, sv[i][0]), 0);
        pair_close(sv[i]);
    }
}

static void token_is_exact_per_event(void **state)
{
    test_ctx *c = *state;
    /* Raw events, not merged ones: each must carry its own source's token
     * and the direction that source was registered for. */
    cmio_fd a[2], b[2];
    test_tcp_pair(a);
    test_tcp_pair(b);
    const cmio_token ta = (cmio_token)0x5555aaaa, tb = UINTPTR_MAX;
    assert_int_equal(cmio_registry_register(c->reg, a[0], ta, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_register(c->reg, b[0], tb, CMIO_WRITABLE), 0);
    test_send_all(a[1], "x", 1);
    int seen_a = 0, seen_b = 0;
    int64_t deadline = test_now_ns() + ARRIVE;
    while ((!seen_a || !seen_b) && test_now_ns() < deadline) {
        int n = cmio_poll_wait(c->poll, c->events, 100 * MS);
        assert_true(n >= 0);
        for (int i = 0; i < n; i++) {
            const cmio_event *e = cmio_events_get(c->events, (size_t)i);
            cmio_token t = cmio_event_token(e);
            if (t == ta) {
                assert_true(cmio_event_is_readable(e));
                seen_a = 1;
            } else if (t == tb) {
                assert_true(cmio_event_is_writable(e));
                seen_b = 1;
            } else {
                fail_msg("event with token %#lx", (unsigned long)t);
            }
        }
    }
    assert_true(seen_a && seen_b);
    assert_int_equal(cmio_registry_deregister(c->reg, a[0]), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, b[0]), 0);
    pair_close(a);
    pair_close(b);
}

#ifndef _WIN32
static void regular_file_is_eperm(void **state)
{
    test_ctx *c = *state;
    FILE *f = tmpfile();
    assert_non_null(f);
    int fd = fileno(f);
    assert_int_equal(cmio_registry_register(c->reg, fd, 1, CMIO_READABLE), -EPERM);
    assert_int_equal(cmio_registry_register(c->reg, fd, 1, CMIO_WRITABLE | CMIO_LEVEL), -EPERM);
    /* Refused, so never registered: the -ENOENT of any unregistered fd. */
    assert_int_equal(cmio_registry_reregister(c->reg, fd, 1, CMIO_READABLE), -ENOENT);
    assert_int_equal(cmio_registry_deregister(c->reg, fd), -ENOENT);
    fclose(f);

    int dir = open(".", O_RDONLY);
    assert_true(dir >= 0);
    assert_int_equal(cmio_registry_register(c->reg, dir, 2, CMIO_READABLE), -EPERM);
    close(dir);
    expect_silence(c, SILENCE, ANY_TOKEN);
}

static void pipe_ends_register(void **state)
{
    test_ctx *c = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    test_set_nonblocking(p[0]);
    test_set_nonblocking(p[1]);
    assert_int_equal(cmio_registry_register(c->reg, p[0], 1, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_register(c->reg, p[1], 2, CMIO_WRITABLE), 0);
    assert_int_equal(cmio_registry_register(c->reg, p[1], 2, CMIO_WRITABLE), -EEXIST);
    expect_events(c, ARRIVE, {2, EXP_W});
    assert_int_equal(write(p[1], "x", 1), 1);
    expect_events(c, ARRIVE, {1, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, p[0]), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, p[1]), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, p[1]), -ENOENT);
    close(p[0]);
    close(p[1]);
}
#else
/* On Windows a descriptor is a SOCKET, but any handle can be passed as
 * one: a file or directory handle is open, so it is -EPERM, not -EBADF. */
static void regular_file_is_eperm(void **state)
{
    test_ctx *c = *state;
    char dir[MAX_PATH], path[MAX_PATH];
    assert_true(GetTempPathA((DWORD)sizeof(dir), dir) > 0);
    assert_true(GetTempFileNameA(dir, "cmi", 0, path) != 0);
    HANDLE f = CreateFileA(path, GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_ALWAYS,
                           FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE, NULL);
    assert_true(f != INVALID_HANDLE_VALUE);
    cmio_fd fd = (cmio_fd)(uintptr_t)f;
    assert_int_equal(cmio_registry_register(c->reg, fd, 1, CMIO_READABLE), -EPERM);
    assert_int_equal(cmio_registry_register(c->reg, fd, 1, CMIO_WRITABLE | CMIO_LEVEL), -EPERM);
    /* Refused, so never registered: the -ENOENT of any unregistered fd. */
    assert_int_equal(cmio_registry_reregister(c->reg, fd, 1, CMIO_READABLE), -ENOENT);
    assert_int_equal(cmio_registry_deregister(c->reg, fd), -ENOENT);
    CloseHandle(f);

    HANDLE d = CreateFileA(dir, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                           OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    assert_true(d != INVALID_HANDLE_VALUE);
    assert_int_equal(cmio_registry_register(c->reg, (cmio_fd)(uintptr_t)d, 2, CMIO_READABLE),
                     -EPERM);
    CloseHandle(d);
    expect_silence(c, SILENCE, ANY_TOKEN);
}

static void pipe_ends_register(void **state)
{
    (void)state;
    test_skip_because("Windows pipes are not sockets: AFD polls sockets only, so a cmio_fd is a "
                      "SOCKET there (a pipe handle is -EPERM like a file)");
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(register_twice_is_eexist, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(unregistered_fd_is_enoent, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(registration_with_another_queue_is_not_this_one, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(reregister_replaces_token_and_interest, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(reregister_reports_source_that_is_ready_now, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(reregister_reports_writable_now, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(deregister_stops_events, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(deregister_drops_readiness_not_yet_collected, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(reused_fd_number_registers_again, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(reused_fd_number_after_close_without_deregister, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(one_fd_in_two_polls, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(clone_registers_on_the_same_queue, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(extreme_tokens_round_trip, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(token_is_exact_per_event, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(regular_file_is_eperm, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(pipe_ends_register, test_setup, test_teardown),
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
