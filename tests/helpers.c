/*
 * helpers.c: fixtures, expectations and portable socket helpers for the
 * conformance suite.
 */
#include "helpers.h"

#include <stdlib.h>

#ifdef _WIN32
#include <windows.h>
#define CLOSESOCK closesocket
int test_last_error(void) { return WSAGetLastError(); }
#else
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <time.h>
#define CLOSESOCK close
int test_last_error(void) { return errno; }
#endif

void test_init(void)
{
#ifdef _WIN32
    WSADATA wsa;
    WSAStartup(MAKEWORD(2, 2), &wsa);
#else
    signal(SIGPIPE, SIG_IGN);
#endif
    setvbuf(stdout, NULL, _IONBF, 0);
}

int test_is_backend(const char *name)
{
    return strcmp(cmio_backend(), name) == 0;
}

int64_t test_now_ns(void)
{
#ifdef _WIN32
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (int64_t)((double)c.QuadPart * 1e9 / (double)f.QuadPart);
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
}

void test_sleep_ms(int ms)
{
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
#endif
}

int test_open_fds(void)
{
#ifdef __linux__
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own descriptor */
#else
    return -1;
#endif
}

/* Fails a test (from its teardown) that changed the number of open
 * descriptors; `before` < 0 means the count is unknown here. */
static int check_fds(int before)
{
    int after = test_open_fds();
    if (before >= 0 && after != before) {
        print_error("descriptor leak: %d open before the test, %d after\n", before, after);
        return -1;
    }
    return 0;
}

int test_setup(void **state)
{
    test_ctx *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fds_before = test_open_fds();
    assert_int_equal(cmio_poll_new(&c->poll), 0);
    c->reg = cmio_poll_registry(c->poll);
    assert_non_null(c->reg);
    assert_int_equal(cmio_events_new(&c->events, 64), 0);
    *state = c;
    return 0;
}

int test_teardown(void **state)
{
    test_ctx *c = *state;
    if (c == NULL)
        return 0;
    cmio_events_free(c->events);
    cmio_poll_free(c->poll);
    int before = c->fds_before;
    free(c);
    *state = NULL;
    return check_fds(before);
}

int test_fd_mark(void **state)
{
    *state = (void *)(intptr_t)test_open_fds();
    return 0;
}

int test_fd_check(void **state)
{
    return check_fds((int)(intptr_t)*state);
}

unsigned test_event_flags(const cmio_event *e)
{
    unsigned f = 0;
    if (cmio_event_is_readable(e))
        f |= EXP_R;
    if (cmio_event_is_writable(e))
        f |= EXP_W;
    if (cmio_event_is_error(e))
        f |= EXP_ERR;
    if (cmio_event_is_read_closed(e))
        f |= EXP_RCLOSED;
    if (cmio_event_is_write_closed(e))
        f |= EXP_WCLOSED;
    if (cmio_event_is_priority(e))
        f |= EXP_PRI;
    return f;
}

#define MAX_EXPECT 64

/* One wait of the time left before deadline: the number of events, or -1
 * once the deadline has passed. A signal just waits again; any other error
 * fails the test. */
static int wait_until(test_ctx *c, int64_t deadline, const char *file, int line)
{
    for (;;) {
        int64_t left = deadline - test_now_ns();
        if (left <= 0)
            return -1;
        int rc = cmio_poll_wait(c->poll, c->events, left);
        if (rc == -EINTR)
            continue;
        if (rc < 0)
            fail_msg("%s:%d: cmio_poll_wait: %s", file, line, cmio_strerror(rc));
        return rc;
    }
}

void expect_events_(test_ctx *c, int64_t timeout_ns, int others_ok, const expect_t *exp, size_t n,
                    const char *file, int line)
{
    unsigned seen[MAX_EXPECT] = {0};
    int got[MAX_EXPECT] = {0};
    if (n > MAX_EXPECT)
        fail_msg("%s:%d: too many expectations", file, line);
    int64_t deadline = test_now_ns() + timeout_ns;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += got[i] && (seen[i] & exp[i].flags) == exp[i].flags;
        if (done == n)
            return;
        int rc = wait_until(c, deadline, file, line);
        if (rc < 0)
            break;
        for (int k = 0; k < rc; k++) {
            const cmio_event *e = cmio_events_get(c->events, (size_t)k);
            cmio_token t = cmio_event_token(e);
            size_t i = 0;
            while (i < n && exp[i].token != t)
                i++;
            if (i == n) {
                if (others_ok)
                    continue;
                fail_msg("%s:%d: unexpected event for token %lu (flags 0x%x)", file, line,
                         (unsigned long)t, test_event_flags(e));
            }
            got[i] = 1;
            seen[i] |= test_event_flags(e);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!got[i] || (seen[i] & exp[i].flags) != exp[i].flags)
            fail_msg("%s:%d: token %lu: expected flags 0x%x within %lld ms, saw %s0x%x", file, line,
                     (unsigned long)exp[i].token, exp[i].flags, (long long)(timeout_ns / MS),
                     got[i] ? "" : "no event, ", seen[i]);
    }
}

void expect_silence_(test_ctx *c, int64_t timeout_ns, cmio_token token, const char *file, int line)
{
    int64_t deadline = test_now_ns() + timeout_ns;
    for (;;) {
        int rc = wait_until(c, deadline, file, line);
        if (rc < 0)
            return;
        for (int k = 0; k < rc; k++) {
            const cmio_event *e = cmio_events_get(c->events, (size_t)k);
            if (token == ANY_TOKEN || cmio_event_token(e) == token)
                fail_msg("%s:%d: expected silence, got an event for token %lu (flags 0x%x)", file,
                         line, (unsigned long)cmio_event_token(e), test_event_flags(e));
        }
    }
}

void test_set_nonblocking(cmio_fd fd)
{
#ifdef _WIN32
    u_long on = 1;
    assert_int_equal(ioctlsocket(fd, FIONBIO, &on), 0);
#else
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
#endif
}

void test_close(cmio_fd fd)
{
    CLOSESOCK(fd);
}

void test_pair_close(cmio_fd sv[2])
{
    test_close(sv[0]);
    test_close(sv[1]);
}

struct sockaddr_in test_loopback(uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static uint16_t local_port(cmio_fd fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

cmio_fd test_tcp_listener(uint16_t *port)
{
    cmio_fd l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l != CMIO_INVALID_FD);
    struct sockaddr_in a = test_loopback(0);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 128), 0);
    test_set_nonblocking(l);
    *port = local_port(l);
    return l;
}

cmio_fd test_tcp_connect(uint16_t port)
{
    cmio_fd s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s != CMIO_INVALID_FD);
    test_set_nonblocking(s);
    struct sockaddr_in a = test_loopback(port);
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int err = test_last_error();
#ifdef _WIN32
        assert_true(err == WSAEWOULDBLOCK);
#else
        assert_true(err == EINPROGRESS);
#endif
    }
    return s;
}

void test_tcp_pair(cmio_fd out[2])
{
    uint16_t port;
    cmio_fd l = test_tcp_listener(&port);
    cmio_fd c = test_tcp_connect(port);
    cmio_fd a = CMIO_INVALID_FD;
    int64_t deadline = test_now_ns() + 5000 * MS;
    while (a == CMIO_INVALID_FD) {
        a = accept(l, NULL, NULL);
        if (a == CMIO_INVALID_FD) {
            assert_true(TEST_WOULDBLOCK(test_last_error()));
            assert_true(test_now_ns() < deadline);
            test_sleep_ms(1);
        }
    }
    test_close(l);
    test_set_nonblocking(a);
    int one = 1;
    setsockopt(a, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof(one));
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof(one));
    /* Wait until the connecting side is established too. */
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer);
        if (getpeername(c, (struct sockaddr *)&peer, &len) == 0)
            break;
        assert_true(test_now_ns() < deadline);
        test_sleep_ms(1);
    }
    out[0] = c;
    out[1] = a;
}

cmio_fd test_udp_socket(uint16_t *port)
{
    cmio_fd s = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(s != CMIO_INVALID_FD);
    struct sockaddr_in a = test_loopback(0);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    test_set_nonblocking(s);
    *port = local_port(s);
    return s;
}

long test_send(cmio_fd fd, const void *buf, size_t len, int *err)
{
#ifdef _WIN32
    int n = send(fd, (const char *)buf, (int)len, 0);
#else
#ifdef MSG_NOSIGNAL
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
#else
    ssize_t n = send(fd, buf, len, 0); /* SIGPIPE is ignored in test_init */
#endif
#endif
    if (n < 0 && err != NULL)
        *err = test_last_error();
    return (long)n;
}

long test_recv(cmio_fd fd, void *buf, size_t len, int *err)
{
#ifdef _WIN32
    int n = recv(fd, (char *)buf, (int)len, 0);
#else
    ssize_t n = recv(fd, buf, len, 0);
#endif
    if (n < 0 && err != NULL)
        *err = test_last_error();
    return (long)n;
}

long test_drain(cmio_fd fd)
{
    char buf[65536];
    long total = 0;
    for (;;) {
        int err = 0;
        long n = test_recv(fd, buf, sizeof(buf), &err);
        if (n > 0) {
            total += n;
            continue;
        }
        if (n == 0)
            return total;
        if (TEST_WOULDBLOCK(err))
            return total;
        return total; /* reset or other error: nothing more to read */
    }
}

long test_fill(cmio_fd fd)
{
    static char buf[65536];
    long total = 0;
    for (;;) {
        int err = 0;
        long n = test_send(fd, buf, sizeof(buf), &err);
        if (n > 0) {
            total += n;
            continue;
        }
        assert_true(TEST_WOULDBLOCK(err));
        return total;
    }
}

void test_send_all(cmio_fd fd, const void *buf, size_t len)
{
    int err = 0;
    long n = test_send(fd, buf, len, &err);
    assert_int_equal(n, (long)len);
}
