/*
 * common.h: the plumbing echo_server.c and echo_client.c share, so that each
 * of them reads as a cmio program and nothing else.
 *
 *   - Sockets, threads and time behind one set of names on POSIX and
 *     Windows: a Windows build needs only Winsock's start-up (net_start) and
 *     its error names, which the SOCK_* tests below hide.
 *   - recv and send that retry EINTR, so that the callers handle only what
 *     matters to an event loop: data, end of stream, would-block, failure.
 *   - Messages on stderr prefixed with the program's name, one line a write.
 *   - Options: getopt_long where the C library has it, a small fallback with
 *     the same conventions where it does not (MSVC), and the number parsers
 *     both programs' options use.
 *
 * Include it before any other header: it sets the feature macros the system
 * headers read.
 */
#ifndef EXAMPLES_COMMON_H_
#define EXAMPLES_COMMON_H_

#if defined(_MSC_VER) && !defined(_CRT_SECURE_NO_WARNINGS)
#define _CRT_SECURE_NO_WARNINGS /* strerror, strcat: the portable names are used on purpose */
#endif
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* accept4, MSG_NOSIGNAL, getopt_long and POSIX declarations under -std=c11 */
#endif
#if defined(__MINGW32__) && !defined(__USE_MINGW_ANSI_STDIO)
#define __USE_MINGW_ANSI_STDIO 1 /* C99 printf (%zu, %llu) instead of msvcrt's */
#endif
#if defined(_MSC_VER) && !defined(ECHO_NO_GETOPT_LONG)
#define ECHO_NO_GETOPT_LONG 1 /* MSVC's C library has no getopt_long */
#endif

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmio/poll.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#else
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#endif
#ifndef ECHO_NO_GETOPT_LONG
#include <getopt.h>
#endif

#define NS_PER_S ((int64_t)1000000000)

#if defined(__MINGW32__)
#define PRINTF_LIKE(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#elif defined(__GNUC__)
#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PRINTF_LIKE(fmt, args)
#endif

/* ------------------------------------------------------------------------ */
/* Sockets                                                                  */
/* ------------------------------------------------------------------------ */

#ifdef _WIN32
#define SOCK_WOULDBLOCK(e) ((e) == WSAEWOULDBLOCK)
#define SOCK_INTR(e) ((e) == WSAEINTR)
#define SOCK_INPROGRESS(e) ((e) == WSAEWOULDBLOCK)
#define SOCK_NOTCONN(e) ((e) == WSAENOTCONN)
#define SOCK_RESET(e) ((e) == WSAECONNRESET || (e) == WSAECONNABORTED)
#define SOCK_NO_DESCRIPTORS(e) ((e) == WSAEMFILE || (e) == WSAENOBUFS)
#define SHUT_WR SD_SEND
#else
#define SOCK_WOULDBLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK)
#define SOCK_INTR(e) ((e) == EINTR)
#define SOCK_INPROGRESS(e) ((e) == EINPROGRESS)
#define SOCK_NOTCONN(e) ((e) == ENOTCONN)
#define SOCK_RESET(e) ((e) == ECONNRESET || (e) == EPIPE || (e) == ECONNABORTED)
/* ENOBUFS and ENOMEM are the kernel running short of socket memory: as with
 * descriptors, retrying at once cannot help. */
#define SOCK_NO_DESCRIPTORS(e) ((e) == EMFILE || (e) == ENFILE || (e) == ENOBUFS || (e) == ENOMEM)
#endif

/* Winsock's start-up; elsewhere, SIGPIPE ignored: a peer that vanished must
 * cost an EPIPE, not the process. 0, or -1 after saying why. */
int net_start(void);
void net_stop(void);

/* The error of the last failed socket call: errno, or WSAGetLastError(). */
int sock_error(void);
const char *sock_strerror(int err);
void sock_close(cmio_fd fd);

/* Non-blocking, and not inherited across exec. 0 or -1. */
int sock_set_nonblocking(cmio_fd fd);

/* A non-blocking connection from the listener, or CMIO_INVALID_FD with
 * sock_error() set. */
cmio_fd sock_accept(cmio_fd listener);

/* What every connected socket gets: TCP_NODELAY, and SO_NOSIGPIPE where
 * sends cannot pass MSG_NOSIGNAL. */
void sock_tune(cmio_fd fd);

/* recv and send, retried on EINTR: bytes moved (0 from recv: end of stream),
 * or -1 with the error, a would-block included, in *err. */
long sock_recv(cmio_fd fd, void *buf, size_t len, int *err);
long sock_send(cmio_fd fd, const void *buf, size_t len, int *err);

/* Raises the soft descriptor limit to the hard one: thousands of connections
 * do not fit in a shell's default of 1024. false if the limit is still below
 * `want`, with the limit in *limit. */
bool raise_fd_limit(size_t want, unsigned long long *limit);

/* ------------------------------------------------------------------------ */
/* Time, threads, messages                                                  */
/* ------------------------------------------------------------------------ */

/* A monotonic clock. */
int64_t now_ns(void);

#ifdef _WIN32
typedef HANDLE thread_t;
#define THREAD_MAIN(name) DWORD WINAPI name(LPVOID arg)
#define THREAD_END return 0
typedef LPTHREAD_START_ROUTINE thread_fn;

typedef CRITICAL_SECTION mutex_t;
#define mutex_init(m) InitializeCriticalSection(m)
#define mutex_lock(m) EnterCriticalSection(m)
#define mutex_unlock(m) LeaveCriticalSection(m)
#define mutex_destroy(m) DeleteCriticalSection(m)
#else
typedef pthread_t thread_t;
#define THREAD_MAIN(name) void *name(void *arg)
#define THREAD_END return NULL
typedef void *(*thread_fn)(void *);

typedef pthread_mutex_t mutex_t;
#define mutex_init(m) pthread_mutex_init(m, NULL)
#define mutex_lock(m) pthread_mutex_lock(m)
#define mutex_unlock(m) pthread_mutex_unlock(m)
#define mutex_destroy(m) pthread_mutex_destroy(m)
#endif

/* 0 or -1. */
int thread_start(thread_t *t, thread_fn fn, void *arg);
void thread_join(thread_t t);

/* The name log_msg and try_help put on their lines. */
void set_program_name(const char *name);

/* "NAME: message" and a newline on stderr. */
void log_msg(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

#ifdef ECHO_NO_GETOPT_LONG
enum { no_argument, required_argument };
struct option {
    const char *name;
    int has_arg;
    int *flag; /* unused: always NULL here */
    int val;
};
extern char *opt_arg;
extern int opt_ind;
int opt_next(int argc, char **argv, const char *shorts, const struct option *longs);
#else
#define opt_arg optarg
#define opt_ind optind
#define opt_next(argc, argv, shorts, longs) getopt_long(argc, argv, shorts, longs, NULL)
#endif

/* Points to --help on stderr; returns 2, the exit status of bad usage. */
int try_help(void);

/* A whole number with an optional k or m suffix (times 1024, 1024^2), from
 * min to max. */
bool parse_size(const char *text, size_t min, size_t max, size_t *out);

/* A decimal number, fractions allowed, from 0 to max. */
bool parse_number(const char *text, double max, double *out);

#endif /* EXAMPLES_COMMON_H_ */
