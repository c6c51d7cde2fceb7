/*
 * Sockets: what each kind of source reports as it goes through its life
 * (listening, connecting, connected, closed by the peer, reset, half-closed;
 * datagrams; pipes on POSIX), read against <cmio/poll.h>: readable and
 * writable are reliable, while error, read-closed and write-closed are hints
 * that may be missing on some OS but are never set wrongly. Where a hint may
 * be missing the test accepts any of the flags an OS could use, and then
 * lets the socket's own answer (SO_ERROR, recv, write) decide.
 *
 * Edge mode is the default, so every test that expects a second event first
 * drains the source until it would block and calls cmio_registry_rearm, as
 * portable code must.
 */
#include "helpers.h"

#ifdef _WIN32
#define TEST_ECONNREFUSED WSAECONNREFUSED
#define TEST_ECONNRESET WSAECONNRESET
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#define TEST_ECONNREFUSED ECONNREFUSED
#define TEST_ECONNRESET ECONNRESET
#endif

#define WAIT (5000 * MS) /* upper bound for something that must happen */
#define QUIET (100 * MS) /* how long "nothing happens" is watched */

/*
 * Waits until the events for `token`, merged across entries and batches,
 * hold every flag of all_of and (if any_of is non-zero) at least one flag of
 * any_of. Returns the merged flags, including those of any further entry for
 * the token that is already queued. Events for other tokens fail the test.
 */
static unsigned wait_flags(test_ctx *c, cmio_token token, unsigned all_of, unsigned any_of)
{
    unsigned seen = 0;
    int got = 0;
    int64_t deadline = test_now_ns() + WAIT;
    for (;;) {
        int done = got && (seen & all_of) == all_of && (any_of == 0 || (seen & any_of) != 0);
        int64_t left = done ? 0 : deadline - test_now_ns();
        if (left <= 0 && !done)
            fail_msg("token %lu: wanted all of 0x%x and any of 0x%x within %lld ms, saw %s0x%x",
                     (unsigned long)token, all_of, any_of, (long long)(WAIT / MS),
                     got ? "" : "no event, ", seen);
        int rc = cmio_poll_wait(c->poll, c->events, left);
        if (rc == -EINTR)
            continue;
        assert_true(rc >= 0);
        for (int k = 0; k < rc; k++) {
            const cmio_event *e = cmio_events_get(c->events, (size_t)k);
            if (cmio_event_token(e) != token)
                fail_msg("unexpected event for token %lu (flags 0x%x)",
                         (unsigned long)cmio_event_token(e), test_event_flags(e));
            got = 1;
            seen |= test_event_flags(e);
        }
        if (done)
            return seen;
    }
}

static int socket_error(cmio_fd fd)
{
    int err = -1;
    socklen_t len = sizeof(err);
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ERROR, (char *)&err, &len), 0);
    return err;
}

/* Accepts until the listener would block; returns how many came in. */
static size_t accept_all(cmio_fd l, cmio_fd *out, size_t room)
{
    size_t n = 0;
    for (;;) {
        cmio_fd a = accept(l, NULL, NULL);
        if (a == CMIO_INVALID_FD) {
            int err = test_last_error();
            if (!TEST_WOULDBLOCK(err))
                fail_msg("accept: unexpected error %d", err);
            return n;
        }
        assert_true(n < room);
        out[n++] = a;
    }
}

/* ------------------------------------------------------------------------ */
/* TCP                                                                      */
/* ------------------------------------------------------------------------ */

static void listener_readable_on_incoming_connection(void **state)
{
    test_ctx *c = *state;
    uint16_t port;
    cmio_fd l = test_tcp_listener(&port);
    assert_int_equal(cmio_registry_register(c->reg, l, 1, CMIO_READABLE), 0);
    /* Nobody is connecting yet: a listener is not readable. */
    expect_silence(c, QUIET, ANY_TOKEN);

    enum { N = 3 };
    cmio_fd clients[N + 1], accepted[N + 1];
    for (int i = 0; i < N; i++)
        clients[i] = test_tcp_connect(port);
    /* The connections may come in over several events; each is followed by
     * accepting until would-block and a rearm, so none is lost. */
    size_t n = 0;
    int64_t deadline = test_now_ns() + WAIT;
    while (n < N) {
        assert_true(test_now_ns() < deadline);
        expect_events(c, WAIT, {1, EXP_R});
        n += accept_all(l, accepted + n, N - n);
        assert_int_equal(cmio_registry_rearm(c->reg, l, CMIO_READABLE), 0);
    }

    /* Drained and rearmed: a new connection is a new edge. */
    clients[N] = test_tcp_connect(port);
    expect_events(c, WAIT, {1, EXP_R});
    assert_int_equal(accept_all(l, accepted + N, 1), 1);
    assert_int_equal(cmio_registry_rearm(c->reg, l, CMIO_READABLE), 0);
    /* And nothing has changed since: no repeated event. */
    expect_silence(c, QUIET, ANY_TOKEN);

    assert_int_equal(cmio_registry_deregister(c->reg, l), 0);
    test_close(l);
    for (int i = 0; i <= N; i++) {
        test_close(clients[i]);
        test_close(accepted[i]);
    }
}

static void connecting_socket_writable_when_connected(void **state)
{
    test_ctx *c = *state;
    uint16_t port;
    cmio_fd l = test_tcp_listener(&port);
    cmio_fd s = test_tcp_connect(port);
    assert_int_equal(cmio_registry_register(c->reg, s, 2, CMIO_WRITABLE), 0);
    unsigned f = wait_flags(c, 2, EXP_W, 0);
    /* A successful connect carries no failure hints. */
    assert_int_equal(f & (EXP_ERR | EXP_WCLOSED | EXP_RCLOSED), 0);
    assert_int_equal(socket_error(s), 0);

    /* Writable meant connected: data goes through to the accepted end. */
    cmio_fd a;
    int64_t deadline = test_now_ns() + WAIT;
    while ((a = accept(l, NULL, NULL)) == CMIO_INVALID_FD) {
        assert_true(TEST_WOULDBLOCK(test_last_error()));
        assert_true(test_now_ns() < deadline);
        test_sleep_ms(1);
    }
    test_send_all(s, "hi", 2);
    char buf[4];
    long got;
    int err = 0;
    while ((got = test_recv(a, buf, sizeof(buf), &err)) < 0) {
        assert_true(TEST_WOULDBLOCK(err));
        assert_true(test_now_ns() < deadline);
        test_sleep_ms(1);
    }
    assert_int_equal(got, 2);
    assert_memory_equal(buf, "hi", 2);

    assert_int_equal(cmio_registry_deregister(c->reg, s), 0);
    test_close(s);
    test_close(a);
    test_close(l);
}

static void connect_refused_reports_error(void **state)
{
    test_ctx *c = *state;
    /* A port that is bound but not listening refuses connections, and
     * stays ours (nobody else can start listening on it) during the test. */
    cmio_fd bound = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(bound != CMIO_INVALID_FD);
    struct sockaddr_in a = test_loopback(0);
    assert_int_equal(bind(bound, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t alen = sizeof(a);
    assert_int_equal(getsockname(bound, (struct sockaddr *)&a, &alen), 0);

    cmio_fd s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s != CMIO_INVALID_FD);
    test_set_nonblocking(s);
    int rc = connect(s, (struct sockaddr *)&a, sizeof(a));
    assert_int_not_equal(rc, 0);
    int err = test_last_error();
#ifdef _WIN32
    assert_int_equal(err, WSAEWOULDBLOCK);
#else
    assert_int_equal(err, EINPROGRESS);
#endif

    assert_int_equal(cmio_registry_register(c->reg, s, 3, CMIO_READABLE | CMIO_WRITABLE), 0);
    /* Writable (the connect attempt is over), error, or closed: which ones
     * an OS sets differs, but it must set one of them. */
    wait_flags(c, 3, 0, EXP_W | EXP_ERR | EXP_WCLOSED | EXP_RCLOSED);
    assert_int_equal(socket_error(s), TEST_ECONNREFUSED);

    assert_int_equal(cmio_registry_deregister(c->reg, s), 0);
    test_close(s);
    test_close(bound);
}

static void peer_close_is_readable_and_read_closed(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 4, CMIO_READABLE), 0);
    /* An idle connection is not readable. */
    expect_silence(c, QUIET, ANY_TOKEN);

    test_close(sv[1]);
    unsigned f = wait_flags(c, 4, EXP_R | EXP_RCLOSED, 0);
    /* An orderly close is no error. */
    assert_int_equal(f & EXP_ERR, 0);
    char buf[8];
    int err = 0;
    assert_int_equal(test_recv(sv[0], buf, sizeof(buf), &err), 0);

    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_close(sv[0]);
}

static void peer_reset_is_readable_or_error(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 5, CMIO_READABLE), 0);

    /* A zero linger time makes close() send a reset instead of a FIN. */
    struct linger lg;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof(lg)), 0);
    test_close(sv[1]);

    wait_flags(c, 5, 0, EXP_R | EXP_ERR);
    /* The read says what happened: the reset, or (where the OS has already
     * consumed it) the end of the stream; never "try again". */
    char buf[8];
    int err = 0;
    long n = test_recv(sv[0], buf, sizeof(buf), &err);
    assert_true(n <= 0);
    if (n < 0)
        assert_int_equal(err, TEST_ECONNRESET);

    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    test_close(sv[0]);
}

static void half_close_is_read_closed_and_still_writable(void **state)
{
    test_ctx *c = *state;
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 6, CMIO_READABLE | CMIO_WRITABLE), 0);
    expect_events(c, WAIT, {6, EXP_W});

    /* The peer stops sending but keeps receiving. */
    assert_int_equal(shutdown(sv[1], TEST_SHUT_WR), 0);
    unsigned f = wait_flags(c, 6, EXP_R | EXP_RCLOSED, 0);
    /* Only the peer's direction is closed: our writes still work. */
    assert_int_equal(f & (EXP_WCLOSED | EXP_ERR), 0);
    char buf[8];
    int err = 0;
    assert_int_equal(test_recv(sv[0], buf, sizeof(buf), &err), 0);

    test_send_all(sv[0], "pong", 4);
    assert_int_equal(cmio_registry_register(c->reg, sv[1], 7, CMIO_READABLE), 0);
    expect_events(c, WAIT, {7, EXP_R});
    assert_int_equal(test_recv(sv[1], buf, sizeof(buf), &err), 4);
    assert_memory_equal(buf, "pong", 4);

    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, sv[1]), 0);
    test_close(sv[0]);
    test_close(sv[1]);
}

/* ------------------------------------------------------------------------ */
/* UDP                                                                      */
/* ------------------------------------------------------------------------ */

static void send_datagram(cmio_fd from, uint16_t to_port, const char *msg)
{
    struct sockaddr_in to = test_loopback(to_port);
    size_t len = strlen(msg);
    long n = (long)sendto(from, msg, (int)len, 0, (struct sockaddr *)&to, sizeof(to));
    assert_int_equal(n, (long)len);
}

static void udp_datagram_is_readable(void **state)
{
    test_ctx *c = *state;
    uint16_t rx_port, tx_port;
    cmio_fd rx = test_udp_socket(&rx_port);
    cmio_fd tx = test_udp_socket(&tx_port);
    assert_int_equal(cmio_registry_register(c->reg, rx, 8, CMIO_READABLE), 0);
    assert_int_equal(cmio_registry_register(c->reg, tx, 9, CMIO_WRITABLE), 0);
    /* A UDP socket can always send; nothing has arrived for rx yet. The
     * sender is dropped before sending: each datagram it sends may give it
     * a new writable edge. */
    expect_events(c, WAIT, {9, EXP_W});
    assert_int_equal(cmio_registry_deregister(c->reg, tx), 0);
    expect_silence(c, QUIET, ANY_TOKEN);

    char buf[16];
    int err = 0;
    send_datagram(tx, rx_port, "one");
    expect_events(c, WAIT, {8, EXP_R});
    assert_int_equal(test_recv(rx, buf, sizeof(buf), &err), 3);
    assert_memory_equal(buf, "one", 3);
    assert_int_equal(test_recv(rx, buf, sizeof(buf), &err), -1);
    assert_true(TEST_WOULDBLOCK(err));
    assert_int_equal(cmio_registry_rearm(c->reg, rx, CMIO_READABLE), 0);

    /* Each datagram after a drain is a new edge. */
    send_datagram(tx, rx_port, "two");
    expect_events(c, WAIT, {8, EXP_R});
    assert_int_equal(test_recv(rx, buf, sizeof(buf), &err), 3);
    assert_memory_equal(buf, "two", 3);

    assert_int_equal(cmio_registry_deregister(c->reg, rx), 0);
    test_close(rx);
    test_close(tx);
}

/* ------------------------------------------------------------------------ */
/* Pipes (POSIX)                                                            */
/* ------------------------------------------------------------------------ */

#ifndef _WIN32
static void make_pipe(int p[2])
{
    assert_int_equal(pipe(p), 0);
    for (int i = 0; i < 2; i++) {
        test_set_nonblocking(p[i]);
        assert_int_equal(fcntl(p[i], F_SETFD, FD_CLOEXEC), 0);
    }
}

/* Writes into a pipe until it is full; returns the bytes written. */
static long fill_pipe(int fd)
{
    static char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t n = write(fd, buf, sizeof(buf));
        if (n > 0) {
            total += n;
            continue;
        }
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        return total;
    }
}

static long drain_pipe(int fd)
{
    char buf[4096];
    long total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        total += n;
    return total;
}

static void pipe_read_end_readable(void **state)
{
    test_ctx *c = *state;
    int p[2];
    make_pipe(p);
    assert_int_equal(cmio_registry_register(c->reg, p[0], 10, CMIO_READABLE), 0);
    expect_silence(c, QUIET, ANY_TOKEN);

    assert_int_equal(write(p[1], "x", 1), 1);
    expect_events(c, WAIT, {10, EXP_R});
    char ch;
    assert_int_equal(read(p[0], &ch, 1), 1);
    assert_int_equal(ch, 'x');
    assert_int_equal(read(p[0], &ch, 1), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    assert_int_equal(cmio_registry_rearm(c->reg, p[0], CMIO_READABLE), 0);

    assert_int_equal(write(p[1], "y", 1), 1);
    expect_events(c, WAIT, {10, EXP_R});

    assert_int_equal(cmio_registry_deregister(c->reg, p[0]), 0);
    close(p[0]);
    close(p[1]);
}

static void pipe_write_end_writable(void **state)
{
    test_ctx *c = *state;
    int p[2];
    make_pipe(p);
    assert_int_equal(cmio_registry_register(c->reg, p[1], 11, CMIO_WRITABLE), 0);
    expect_events(c, WAIT, {11, EXP_W});

    assert_true(fill_pipe(p[1]) > 0);
    assert_int_equal(cmio_registry_rearm(c->reg, p[1], CMIO_WRITABLE), 0);
    /* Full: not writable, so no event. */
    expect_silence(c, QUIET, ANY_TOKEN);

    /* Emptied by the reader: writable again. */
    assert_true(drain_pipe(p[0]) > 0);
    expect_events(c, WAIT, {11, EXP_W});

    assert_int_equal(cmio_registry_deregister(c->reg, p[1]), 0);
    close(p[0]);
    close(p[1]);
}

static void pipe_writer_closed_is_read_closed(void **state)
{
    test_ctx *c = *state;
    int p[2];
    make_pipe(p);
    assert_int_equal(cmio_registry_register(c->reg, p[0], 12, CMIO_READABLE), 0);
    close(p[1]);
    /* Linux reports a widowed pipe as hang-up without "in": read-closed
     * alone is a valid report, readable alone too. */
    wait_flags(c, 12, 0, EXP_R | EXP_RCLOSED);
    char ch;
    assert_int_equal(read(p[0], &ch, 1), 0);

    assert_int_equal(cmio_registry_deregister(c->reg, p[0]), 0);
    close(p[0]);
}

static void pipe_reader_closed_is_write_error(void **state)
{
    test_ctx *c = *state;
    int p[2];
    make_pipe(p);
    assert_int_equal(cmio_registry_register(c->reg, p[1], 13, CMIO_WRITABLE), 0);
    expect_events(c, WAIT, {13, EXP_W});
    /* Full and rearmed, so the reader going away is the next change. */
    fill_pipe(p[1]);
    assert_int_equal(cmio_registry_rearm(c->reg, p[1], CMIO_WRITABLE), 0);

    close(p[0]);
    wait_flags(c, 13, 0, EXP_ERR | EXP_WCLOSED);
    assert_int_equal(write(p[1], "z", 1), -1);
    assert_int_equal(errno, EPIPE);

    assert_int_equal(cmio_registry_deregister(c->reg, p[1]), 0);
    close(p[1]);
}

static void pipe_reader_gone_before_register_is_write_error(void **state)
{
    test_ctx *c = *state;
    int p[2];
    make_pipe(p);
    close(p[0]);
    /* Registering still succeeds (FreeBSD's kqueue refuses a write filter
     * on such a pipe), and the registration tells the writer at once. */
    assert_int_equal(cmio_registry_register(c->reg, p[1], 14, CMIO_WRITABLE), 0);
    wait_flags(c, 14, 0, EXP_ERR | EXP_WCLOSED);
    assert_int_equal(write(p[1], "z", 1), -1);
    assert_int_equal(errno, EPIPE);
    /* Edge: nothing changes any more, so nothing more is reported. */
    expect_silence(c, QUIET, ANY_TOKEN);

    /* reregister re-evaluates readiness, with the new token. */
    assert_int_equal(cmio_registry_reregister(c->reg, p[1], 15, CMIO_WRITABLE | CMIO_ONESHOT), 0);
    wait_flags(c, 15, 0, EXP_ERR | EXP_WCLOSED);
    expect_silence(c, QUIET, ANY_TOKEN);

    assert_int_equal(cmio_registry_reregister(c->reg, p[1], 16, CMIO_WRITABLE), 0);
    assert_int_equal(cmio_registry_deregister(c->reg, p[1]), 0);
    expect_silence(c, QUIET, ANY_TOKEN);
    close(p[1]);
}
#else
#define NO_PIPES "Windows pipes are not sockets: AFD polls sockets only, so a cmio_fd is a SOCKET there"
static void pipe_read_end_readable(void **state)
{
    (void)state;
    test_skip_because(NO_PIPES);
}

static void pipe_write_end_writable(void **state)
{
    (void)state;
    test_skip_because(NO_PIPES);
}

static void pipe_writer_closed_is_read_closed(void **state)
{
    (void)state;
    test_skip_because(NO_PIPES);
}

static void pipe_reader_closed_is_write_error(void **state)
{
    (void)state;
    test_skip_because(NO_PIPES);
}

static void pipe_reader_gone_before_register_is_write_error(void **state)
{
    (void)state;
    test_skip_because(NO_PIPES);
}
#endif /* !_WIN32 */

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(listener_readable_on_incoming_connection),
        T(connecting_socket_writable_when_connected),
        T(connect_refused_reports_error),
        T(peer_close_is_readable_and_read_closed),
        T(peer_reset_is_readable_or_error),
        T(half_close_is_read_closed_and_still_writable),
        T(udp_datagram_is_readable),
        T(pipe_read_end_readable),
        T(pipe_write_end_writable),
        T(pipe_writer_closed_is_read_closed),
        T(pipe_reader_closed_is_write_error),
        T(pipe_reader_gone_before_register_is_write_error),
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
