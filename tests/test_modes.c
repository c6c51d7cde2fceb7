/*
 * Modes: edge (the default), level and oneshot, as the contract states them.
 *
 *   - edge: one event per not-ready -> ready change of a direction; once the
 *     caller has drained it to EAGAIN and called cmio_registry_rearm, the
 *     source stays silent until something new arrives, and then it is
 *     reported again. Portable code rearms after every would-block, so
 *     these tests always do, even though epoll and kqueue need nothing;
 *   - level: reported on every wait while ready, silent once drained;
 *   - oneshot (with edge or level): reported once, then silent whatever
 *     happens (rearm does not re-enable it) until reregister, which reports
 *     a source that is ready at once;
 *   - a peer's shutdown or close is reported to a READABLE interest;
 *   - in edge mode an error or hang-up is reported once, not on every wait.
 */
#include "helpers.h"

#include <stdlib.h>


/* Waits the whole window and returns how many events carried `token`
 * (each entry counts; other tokens fail the test). */
static int count_events(test_ctx *c, int64_t window, cmio_token token)
{
    int count = 0;
    int64_t deadline = test_now_ns() + window;
    for (;;) {
        int64_t left = deadline - test_now_ns();
        if (left <= 0)
            return count;
        int n = cmio_poll_wait(c->poll, c->events, left);
        if (n == -EINTR)
            continue;
        assert_true(n >= 0);
        for (int i = 0; i < n; i++) {
            cmio_token t = cmio_event_token(cmio_events_get(c->events, (size_t)i));
            if (t != token)
                fail_msg("event for unexpected token %lu", (unsigned long)t);
            count++;
        }
    }
}

#ifndef _WIN32
/* Waits for the first batch holding `token` and returns the EXP_* flags of
 * all its entries for that token (other tokens fail the test). */
static unsigned first_event_flags(test_ctx *c, cmio_token token)
{
    int64_t deadline = test_now_ns() + ARRIVE;
    for (;;) {
        int64_t left = deadline - test_now_ns();
        if (left <= 0)
            fail_msg("no event for token %lu", (unsigned long)token);
        int n = cmio_poll_wait(c->poll, c->events, left);
        if (n == -EINTR)
            continue;
        assert_true(n >= 0);
        unsigned flags = 0;
        for (int i = 0; i < n; i++) {
            const cmio_event *e = cmio_events_get(c->events, (size_t)i);
            if (cmio_event_token(e) != token)
                fail_msg("event for unexpected token %lu", (unsigned long)cmio_event_token(e));
            flags |= test_event_flags(e);
        }
        if (n > 0)
            return flags;
    }
}
#endif

/* Reads everything there is and reports the would-block to the registry,
 * as portable edge-mode code does. */
static long drain_and_rearm(test_ctx *c, cmio_fd fd)
{
    long n = test_drain(fd);
    assert_int_equal(cmio_registry_rearm(c->reg, fd, CMIO_READABLE), 0);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Edge                                                                     */
/* ------------------------------------------------------------------------ */

static void edge_reports_each_transition_once(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE | CMIO_EDGE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);

    for (int round = 0; round < 3; round++) {
        /* Two arrivals before anyone waits are one change to ready. */
        test_send_all(sv[1], "ab", 2);
        test_sleep_ms(10);
        test_send_all(sv[1], "cd", 2);
        test_sleep_ms(10);
        assert_int_equal(count_events(c, SILENCE, 1), 1);
        assert_int_equal(drain_and_rearm(c, sv[0]), 4);
        /* Drained and rearmed, nothing new: silent, no spinning. */
        expect_silence(c, SILENCE, ANY_TOKEN);
    }
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

static void edge_is_the_default(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    /* No mode bit at all: edge. A level registration would be reported on
     * every wait while the byte stays unread. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    test_send_all(sv[1], "x", 1);
    expect_events(c, ARRIVE, {1, EXP_R});
    expect_silence(c, SILENCE, 1);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

static void edge_undrained_is_silent_until_drained(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    test_send_all(sv[1], "abcd", 4);
    expect_events(c, ARRIVE, {1, EXP_R});
    /* Read only part of it: still ready, never went not-ready, so edge mode
     * has nothing new to say. Whether more data arriving now is reported is
     * left open by the contract (epoll and kqueue do, emulated edges wait
     * for the rearm), so nothing more is sent until the caller drains. */
    char b;
    assert_int_equal(test_recv(sv[0], &b, 1, NULL), 1);
    expect_silence(c, SILENCE, 1);

    /* Having caught up (drain to EAGAIN, rearm), the next change is
     * reported again. */
    assert_int_equal(drain_and_rearm(c, sv[0]), 3);
    expect_silence(c, SILENCE, 1);
    test_send_all(sv[1], "e", 1);
    expect_events(c, ARRIVE, {1, EXP_R});
    assert_int_equal(drain_and_rearm(c, sv[0]), 1);
    expect_silence(c, SILENCE, 1);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

static void edge_writable_after_fill_and_drain(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    expect_silence(c, SILENCE, 1);

    /* Fill until EAGAIN and rearm. TCP may still free a little space as
     * late ACKs arrive, which is a real change and may be reported; what
     * must not happen is an endless stream of events while the socket
     * stays full. Refill after each such event and require that silence is
     * reached within a few rounds. */
    assert_true(test_fill(sv[0]) > 0);
    assert_int_equal(cmio_registry_rearm(c->reg, sv[0], CMIO_WRITABLE), 0);
    int quiet = 0;
    for (int round = 0; round < 10 && !quiet; round++) {
        if (count_events(c, SILENCE, 1) == 0) {
            quiet = 1;
        } else {
            test_fill(sv[0]);
            assert_int_equal(cmio_registry_rearm(c->reg, sv[0], CMIO_WRITABLE), 0);
        }
    }
    assert_true(quiet);

    /* The peer reads: space comes back, and writable is reported again. */
    int writable = 0;
    int64_t deadline = test_now_ns() + ARRIVE;
    while (!writable && test_now_ns() < deadline) {
        test_drain(sv[1]);
        int n = cmio_poll_wait(c->poll, c->events, 10 * MS);
        assert_true(n >= 0);
        for (int i = 0; i < n; i++) {
            const cmio_event *e = cmio_events_get(c->events, (size_t)i);
            assert_int_equal(cmio_event_token(e), 1);
            writable |= cmio_event_is_writable(e);
        }
    }
    assert_true(writable);
    /* And it really is writable. */
    int err = 0;
    assert_int_equal(test_send(sv[0], "z", 1, &err), 1);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

/* ------------------------------------------------------------------------ */
/* Level                                                                    */
/* ------------------------------------------------------------------------ */

static void level_reports_every_wait_while_ready(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE | CMIO_LEVEL), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    test_send_all(sv[1], "abc", 3);
    expect_events(c, ARRIVE, {1, EXP_R});
    /* Still ready: every wait reports it, a non-blocking one included. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cmio_poll_wait(c->poll, c->events, 0), 1);
        assert_int_equal(cmio_event_token(cmio_events_get(c->events, 0)), 1);
        assert_true(cmio_event_is_readable(cmio_events_get(c->events, 0)));
    }
    /* Partly read: still ready, still reported. */
    char b;
    assert_int_equal(test_recv(sv[0], &b, 1, NULL), 1);
    expect_events(c, ARRIVE, {1, EXP_R});
    expect_events(c, ARRIVE, {1, EXP_R});
    /* Drained: silent. No rearm is needed in level mode. */
    assert_int_equal(test_drain(sv[0]), 2);
    expect_silence(c, SILENCE, ANY_TOKEN);
    test_send_all(sv[1], "d", 1);
    expect_events(c, ARRIVE, {1, EXP_R});
    expect_events(c, ARRIVE, {1, EXP_R});
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

static void level_writable_repeats(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_WRITABLE | CMIO_LEVEL), 0);
    for (int i = 0; i < 5; i++)
        expect_events(c, ARRIVE, {1, EXP_W});
    /* Full: no longer writable, so level mode goes quiet too. TCP may free
     * some space as late ACKs arrive; refill until it stays quiet. */
    int quiet = 0;
    for (int round = 0; round < 10 && !quiet; round++) {
        test_fill(sv[0]);
        quiet = count_events(c, SILENCE, 1) == 0;
    }
    assert_true(quiet);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

/* ------------------------------------------------------------------------ */
/* Oneshot                                                                  */
/* ------------------------------------------------------------------------ */

static void oneshot_reports_once_until_reregister(test_ctx *c, unsigned mode)
{
    cmio_fd sv[2];
    test_tcp_pair(sv);
    const unsigned interest = CMIO_READABLE | CMIO_ONESHOT | mode;
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, interest), 0);
    test_send_all(sv[1], "a", 1);
    assert_int_equal(count_events(c, SILENCE, 1), 1);

    /* Disabled: more data, a partial read, a full drain with rearm and
     * more data after it are all ignored. */
    test_send_all(sv[1], "b", 1);
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_int_equal(drain_and_rearm(c, sv[0]), 2);
    test_send_all(sv[1], "c", 1);
    expect_silence(c, SILENCE, ANY_TOKEN);

    /* Reregister with data waiting: reported by the next wait, once, under
     * the new token. */
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 2, interest), 0);
    assert_int_equal(count_events(c, SILENCE, 2), 1);
    expect_silence(c, SILENCE, ANY_TOKEN);

    /* Reregister with nothing waiting: silent until data comes, then once. */
    assert_int_equal(drain_and_rearm(c, sv[0]), 1);
    assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 3, interest), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    test_send_all(sv[1], "d", 1);
    assert_int_equal(count_events(c, SILENCE, 3), 1);
    test_send_all(sv[1], "e", 1);
    expect_silence(c, SILENCE, ANY_TOKEN);

    /* A oneshot registration that has fired is still registered. */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 4, interest), -EEXIST);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

static void oneshot_edge(void **state)
{
    oneshot_reports_once_until_reregister(*state, CMIO_EDGE);
}

static void oneshot_level(void **state)
{
    oneshot_reports_once_until_reregister(*state, CMIO_LEVEL);
}

static void oneshot_writable(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    /* Level + oneshot on an always-writable socket: once, not every wait. */
    const unsigned interest = CMIO_WRITABLE | CMIO_LEVEL | CMIO_ONESHOT;
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, interest), 0);
    assert_int_equal(count_events(c, SILENCE, 1), 1);
    assert_int_equal(cmio_registry_rearm(c->reg, sv[0], CMIO_WRITABLE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cmio_registry_reregister(c->reg, sv[0], 1, interest), 0);
        assert_int_equal(count_events(c, SILENCE, 1), 1);
    }
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

/* ------------------------------------------------------------------------ */
/* The peer going away                                                      */
/* ------------------------------------------------------------------------ */

/* Read-closed is a hint (possibly missing on some OS). Every backend here
 * has a way to see a half-close except poll(2) outside Linux, which has no
 * POLLRDHUP. */
static unsigned read_closed_hint(void)
{
#ifndef __linux__
    if (test_is_backend("poll")) {
        print_message("[  NOTE    ] poll: no POLLRDHUP outside Linux, the read-closed hint "
                      "is not asserted here\n");
        return 0;
    }
#endif
    return EXP_RCLOSED;
}

static void read_closed_on_peer_shutdown(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_int_equal(shutdown(sv[1], TEST_SHUT_WR), 0);
    expect_events(c, ARRIVE, {1, EXP_R | read_closed_hint()});
    /* Readable really means the read does not block: it sees end of file. */
    char b;
    assert_int_equal(test_recv(sv[0], &b, 1, NULL), 0);
    /* The other direction is still open. */
    test_send_all(sv[0], "x", 1);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

static void read_closed_after_data_on_peer_shutdown(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    test_send_all(sv[1], "abc", 3);
    expect_events(c, ARRIVE, {1, EXP_R});
    assert_int_equal(drain_and_rearm(c, sv[0]), 3);
    expect_silence(c, SILENCE, ANY_TOKEN);
    /* The end of the stream is a change too. */
    assert_int_equal(shutdown(sv[1], TEST_SHUT_WR), 0);
    expect_events(c, ARRIVE, {1, EXP_R | read_closed_hint()});
    char b;
    assert_int_equal(test_recv(sv[0], &b, 1, NULL), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_pair_close(sv);
}

static void read_closed_on_peer_close(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    test_close(sv[1]);
    expect_events(c, ARRIVE, {1, EXP_R | read_closed_hint()});
    char b;
    assert_int_equal(test_recv(sv[0], &b, 1, NULL), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_close(sv[0]);
}

/* An error or hang-up is a change like any other: reported once in edge
 * mode. The operations then fail or see the end of the stream, never
 * EAGAIN, so the caller does not rearm and the source stays silent. poll()
 * and AFD report these conditions whatever the mask, so a backend that
 * emulates edges must hold them back itself. */
static void edge_reset_is_reported_once(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE | CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    /* A zero linger time makes close() send a reset instead of a FIN. */
    struct linger lg;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof(lg)), 0);
    test_close(sv[1]);
    expect_events(c, ARRIVE, {1, EXP_ANY});
    char buf[8];
    assert_true(test_recv(sv[0], buf, sizeof(buf), NULL) <= 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_close(sv[0]);
}

/* ------------------------------------------------------------------------ */
/* POSIX-only sources                                                       */
/* ------------------------------------------------------------------------ */

#ifndef _WIN32
static void edge_on_a_pipe(void **state)
{
    test_ctx *c = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    test_set_nonblocking(p[0]);
    test_set_nonblocking(p[1]);
    assert_int_equal(cmio_registry_register(c->reg, p[0], 1, CMIO_READABLE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(write(p[1], "ab", 2), 2);
        assert_int_equal(count_events(c, SILENCE, 1), 1);
        char buf[8];
        assert_int_equal(read(p[0], buf, sizeof(buf)), 2);
        assert_int_equal(read(p[0], buf, sizeof(buf)), -1);
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        assert_int_equal(cmio_registry_rearm(c->reg, p[0], CMIO_READABLE), 0);
        expect_silence(c, SILENCE, ANY_TOKEN);
    }
    /* The writer goes away. An empty pipe then reports a hang-up without
     * data (epoll gives EPOLLHUP alone), so the event may carry only the
     * read-closed hint; it must carry one of the two, and the read then
     * sees end of file without blocking. */
    close(p[1]);
    assert_true((first_event_flags(c, 1) & (EXP_R | EXP_RCLOSED)) != 0);
    char b;
    assert_int_equal(read(p[0], &b, 1), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, p[0]), 0);
    close(p[0]);
}

static void pipe_writer_sees_reader_go_away(void **state)
{
    test_ctx *c = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    test_set_nonblocking(p[1]);
    assert_int_equal(cmio_registry_register(c->reg, p[1], 1, CMIO_WRITABLE), 0);
    expect_events(c, ARRIVE, {1, EXP_W});
    expect_silence(c, SILENCE, ANY_TOKEN);
    /* The event may carry only hints (error, write-closed) rather than
     * writable; the write then tells the truth. */
    close(p[0]);
    assert_true((first_event_flags(c, 1) & (EXP_W | EXP_ERR | EXP_WCLOSED)) != 0);
    assert_int_equal(write(p[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(cmio_registry_deregister(c->reg, p[1]), 0);
    close(p[1]);
}

static void edge_pipe_hangup_is_reported_once(void **state)
{
    test_ctx *c = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    test_set_nonblocking(p[0]);
    assert_int_equal(cmio_registry_register(c->reg, p[0], 1, CMIO_READABLE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    close(p[1]);
    expect_events(c, ARRIVE, {1, EXP_ANY});
    char b;
    assert_int_equal(read(p[0], &b, 1), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_int_equal(cmio_registry_deregister(c->reg, p[0]), 0);
    close(p[0]);
}

static void edge_and_level_on_a_socketpair(void **state)
{
    test_ctx *c = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    test_set_nonblocking(sv[0]);
    test_set_nonblocking(sv[1]);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 1, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_register(c->reg, sv[1], 2, CMIO_READABLE | CMIO_LEVEL), 0);
    test_send_all(sv[1], "x", 1);
    test_send_all(sv[0], "y", 1);
    expect_events(c, ARRIVE, {1, EXP_R}, {2, EXP_R});
    /* Token 2 is level: it comes back; token 1 is edge: it does not. */
    expect_events(c, ARRIVE, {2, EXP_R});
    expect_events(c, ARRIVE, {2, EXP_R});
    assert_int_equal(test_drain(sv[1]), 1);
    assert_int_equal(drain_and_rearm(c, sv[0]), 1);
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[1]), 0);
    close(sv[0]);
    close(sv[1]);
}
#else
#define NO_PIPES "Windows pipes are not sockets: AFD polls sockets only, so a cmio_fd is a SOCKET there"
static void edge_on_a_pipe(void **state)
{
    (void)state;
    test_skip_because(NO_PIPES);
}

static void pipe_writer_sees_reader_go_away(void **state)
{
    (void)state;
    test_skip_because(NO_PIPES);
}

static void edge_pipe_hangup_is_reported_once(void **state)
{
    (void)state;
    test_skip_because(NO_PIPES);
}

static void edge_and_level_on_a_socketpair(void **state)
{
    (void)state;
    test_skip_because("Windows has no socketpair(); its TCP sockets are covered by the tests above");
}
#endif

#ifdef __linux__
#include <sys/eventfd.h>

static void eventfd_edge(void **state)
{
    test_ctx *c = *state;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(cmio_registry_register(c->reg, fd, 1, CMIO_READABLE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    uint64_t v = 1;
    assert_int_equal(write(fd, &v, sizeof(v)), sizeof(v));
    assert_int_equal(count_events(c, SILENCE, 1), 1);
    assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
    assert_int_equal(v, 1);
    assert_int_equal(read(fd, &v, sizeof(v)), -1);
    assert_int_equal(cmio_registry_rearm(c->reg, fd, CMIO_READABLE), 0);
    expect_silence(c, SILENCE, ANY_TOKEN);
    assert_int_equal(cmio_registry_deregister(c->reg, fd), 0);
    close(fd);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(edge_reports_each_transition_once, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(edge_is_the_default, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(edge_undrained_is_silent_until_drained, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(edge_writable_after_fill_and_drain, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(level_reports_every_wait_while_ready, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(level_writable_repeats, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(oneshot_edge, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(oneshot_level, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(oneshot_writable, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(read_closed_on_peer_shutdown, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(read_closed_after_data_on_peer_shutdown, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(read_closed_on_peer_close, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(edge_reset_is_reported_once, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(edge_on_a_pipe, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(pipe_writer_sees_reader_go_away, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(edge_pipe_hangup_is_reported_once, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(edge_and_level_on_a_socketpair, test_setup, test_teardown),
#ifdef __linux__
        cmocka_unit_test_setup_teardown(eventfd_edge, test_setup, test_teardown),
#endif
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
