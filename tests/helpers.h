/*
 * helpers.h: what every conformance test shares.
 *
 * Each test executable covers one concept and is built once per backend;
 * CMIO_TEST_MAIN names the cmocka group "<concept> on <backend>" so the
 * summaries say which backend they ran on.
 *
 * Socket helpers are portable (Winsock and POSIX) so the same tests run on
 * every backend; pipes and socketpair() are POSIX-only and their tests are
 * compiled out on Windows.
 */
#ifndef CMIO_TEST_HELPERS_H_
#define CMIO_TEST_HELPERS_H_

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <cmio/poll.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#define TEST_WOULDBLOCK(err) ((err) == WSAEWOULDBLOCK)
#define TEST_SHUT_WR SD_SEND
#else
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#define TEST_WOULDBLOCK(err) ((err) == EAGAIN || (err) == EWOULDBLOCK)
#define TEST_SHUT_WR SHUT_WR
#endif

#define MS ((int64_t)1000000)

/* How long a test waits for an event that must come, and how long it
 * watches for one that must not. Generous / short: these machines are
 * shared and noisy, and silence checks add up. */
#define ARRIVE (2000 * MS)
#define SILENCE (100 * MS)

/* What a test expects of one token: OR of these (all must be seen). */
#define EXP_R 0x01u       /* readable */
#define EXP_W 0x02u       /* writable */
#define EXP_ERR 0x04u     /* error hint */
#define EXP_RCLOSED 0x08u /* read-closed hint */
#define EXP_WCLOSED 0x10u /* write-closed hint */
#define EXP_PRI 0x20u     /* priority */
#define EXP_ANY 0x00u     /* any event at all for the token */

typedef struct {
    cmio_token token;
    unsigned flags;
} expect_t;

/* A poll, its registry and an events buffer, created by test_setup and
 * freed by test_teardown (cmocka group/test fixtures). */
typedef struct {
    cmio_poll *poll;
    cmio_registry *reg;
    cmio_events *events;
    int fds_before; /* open descriptors before setup, checked at teardown */
} test_ctx;

int test_setup(void **state);    /* capacity 64 */
int test_teardown(void **state); /* also checks nothing leaked a descriptor */

/* For tests without the poll fixture: records the open descriptors before
 * the test and fails it if any more or fewer are open after. */
int test_fd_mark(void **state);
int test_fd_check(void **state);
#define cmio_unit_test(f) cmocka_unit_test_setup_teardown(f, test_fd_mark, test_fd_check)

/* The event flags as EXP_* bits. */
unsigned test_event_flags(const cmio_event *e);

/*
 * Waits (up to timeout) until every expectation has been met, merging all
 * events of a token across batches and entries (kqueue reports directions
 * separately). Spurious extra flags or repeated events for an expected token
 * are tolerated; an event for a token that is not expected fails the test,
 * unless `others_ok` is set.
 */
void expect_events_(test_ctx *c, int64_t timeout_ns, int others_ok, const expect_t *exp, size_t n,
                    const char *file, int line);
#define expect_events(c, timeout_ns, ...)                                                          \
    do {                                                                                           \
        const expect_t exp_[] = {__VA_ARGS__};                                                     \
        expect_events_((c), (timeout_ns), 0, exp_, sizeof(exp_) / sizeof(exp_[0]), __FILE__,      \
                       __LINE__);                                                                  \
    } while (0)
#define expect_events_among_others(c, timeout_ns, ...)                                             \
    do {                                                                                           \
        const expect_t exp_[] = {__VA_ARGS__};                                                     \
        expect_events_((c), (timeout_ns), 1, exp_, sizeof(exp_) / sizeof(exp_[0]), __FILE__,      \
                       __LINE__);                                                                  \
    } while (0)

/* Waits the whole timeout and fails on any event for `token` (any token at
 * all with EXPECT_NO_TOKEN_FILTER). Returns nothing: used for "stays
 * silent" checks of edge and oneshot modes. */
#define ANY_TOKEN ((cmio_token)0xA11A11A11ull)
void expect_silence_(test_ctx *c, int64_t timeout_ns, cmio_token token, const char *file, int line);
#define expect_silence(c, timeout_ns, token) expect_silence_((c), (timeout_ns), (token), __FILE__, __LINE__)

/* Monotonic time. */
int64_t test_now_ns(void);
void test_sleep_ms(int ms);

/* A connected pair of non-blocking TCP sockets over loopback. */
void test_tcp_pair(cmio_fd out[2]);
/* A non-blocking listening TCP socket on 127.0.0.1, ephemeral port. */
cmio_fd test_tcp_listener(uint16_t *port);
/* A non-blocking TCP socket whose connect to 127.0.0.1:port is under way
 * (or done). */
cmio_fd test_tcp_connect(uint16_t port);
/* A bound non-blocking UDP socket on 127.0.0.1. */
cmio_fd test_udp_socket(uint16_t *port);

/* The last socket error: errno, or WSAGetLastError() on Windows. */
int test_last_error(void);
/* 127.0.0.1:port. */
struct sockaddr_in test_loopback(uint16_t port);

void test_set_nonblocking(cmio_fd fd);
void test_close(cmio_fd fd);
/* Closes both ends of a pair. */
void test_pair_close(cmio_fd sv[2]);

/* send/recv wrappers: bytes moved, or -1 and *err set to the OS error
 * (errno / WSAGetLastError). */
long test_send(cmio_fd fd, const void *buf, size_t len, int *err);
long test_recv(cmio_fd fd, void *buf, size_t len, int *err);
/* Reads until would-block; returns bytes read (0 after EOF is fine). */
long test_drain(cmio_fd fd);
/* Writes until would-block; returns bytes written. */
long test_fill(cmio_fd fd);
/* Sends all of buf, asserting it fits without blocking. */
void test_send_all(cmio_fd fd, const void *buf, size_t len);

/* Number of open descriptors in this process (-1 where unknown). */
int test_open_fds(void);

/* Skips the current test with a reason, printed so the log says why. */
#define test_skip_because(reason)                                                                  \
    do {                                                                                           \
        print_message("[  SKIP    ] %s: %s\n", cmio_backend(), (reason));                          \
        skip();                                                                                    \
    } while (0)

int test_is_backend(const char *name);

/* Process start-up (Winsock, SIGPIPE) and a named group run. */
void test_init(void);
#define CMIO_TEST_MAIN(tests, setup, teardown)                                                     \
    int main(void)                                                                                 \
    {                                                                                              \
        test_init();                                                                               \
        return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests,      \
                                           setup, teardown);                                       \
    }

#endif /* CMIO_TEST_HELPERS_H_ */
