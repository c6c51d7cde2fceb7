/*
 * common.c: sockets, threads, time, messages and options for the echo
 * examples, on POSIX and Windows (see common.h).
 */
#include "common.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#endif

/* ------------------------------------------------------------------------ */
/* Sockets                                                                  */
/* ------------------------------------------------------------------------ */

#if !defined(_WIN32) && defined(MSG_NOSIGNAL)
#define SEND_FLAGS MSG_NOSIGNAL
#else
#define SEND_FLAGS 0 /* Windows has no SIGPIPE; elsewhere sock_tune sets SO_NOSIGPIPE */
#endif

int net_start(void)
{
#ifdef _WIN32
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        log_msg("WSAStartup failed");
        return -1;
    }
#else
    signal(SIGPIPE, SIG_IGN);
#endif
    return 0;
}

void net_stop(void)
{
#ifdef _WIN32
    WSACleanup();
#endif
}

int sock_error(void)
{
#ifdef _WIN32
    return WSAGetLastError();
#else
    return errno;
#endif
}

const char *sock_strerror(int err)
{
#ifdef _WIN32
    static char text[32];
    snprintf(text, sizeof(text), "Winsock error %d", err);
    return text;
#else
    return strerror(err);
#endif
}

void sock_close(cmio_fd fd)
{
#ifdef _WIN32
    closesocket((SOCKET)fd);
#else
    close(fd);
#endif
}

int sock_set_nonblocking(cmio_fd fd)
{
#ifdef _WIN32
    u_long on = 1;
    return ioctlsocket((SOCKET)fd, FIONBIO, &on) == 0 ? 0 : -1;
#else
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? -1 : 0;
#endif
}

cmio_fd sock_accept(cmio_fd listener)
{
#if defined(__linux__) && defined(SOCK_NONBLOCK)
    return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    cmio_fd fd = (cmio_fd)accept(listener, NULL, NULL);
    if (fd != CMIO_INVALID_FD && sock_set_nonblocking(fd) < 0) {
        int err = sock_error();
        sock_close(fd);
#ifdef _WIN32
        WSASetLastError(err);
#else
        errno = err;
#endif
        return CMIO_INVALID_FD;
    }
    return fd;
#endif
}

/* Failures are harmless: the echo stays correct, only latency (Nagle) or
 * SIGPIPE safety (already ignored) suffer. */
void sock_tune(cmio_fd fd)
{
    int one = 1;
    /* An echo is request/response: without TCP_NODELAY, Nagle's algorithm and
     * the peer's delayed ACK can hold a partial echo back for tens of ms. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof(one));
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, (const char *)&one, sizeof(one));
#endif
}

long sock_recv(cmio_fd fd, void *buf, size_t len, int *err)
{
    long n;
    do {
#ifdef _WIN32
        n = recv((SOCKET)fd, (char *)buf, len > INT32_MAX ? INT32_MAX : (int)len, 0);
#else
        n = (long)recv(fd, buf, len, 0);
#endif
        *err = n < 0 ? sock_error() : 0;
    } while (n < 0 && SOCK_INTR(*err));
    return n;
}

long sock_send(cmio_fd fd, const void *buf, size_t len, int *err)
{
    long n;
    do {
#ifdef _WIN32
        n = send((SOCKET)fd, (const char *)buf, len > INT32_MAX ? INT32_MAX : (int)len, SEND_FLAGS);
#else
        n = (long)send(fd, buf, len, SEND_FLAGS);
#endif
        *err = n < 0 ? sock_error() : 0;
    } while (n < 0 && SOCK_INTR(*err));
    return n;
}

bool raise_fd_limit(size_t want, unsigned long long *limit)
{
#ifndef _WIN32
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return true; /* nothing to tell */
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            /* macOS refuses more than OPEN_MAX whatever the hard limit. */
            rl.rlim_cur = old;
            getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    *limit = (unsigned long long)rl.rlim_cur;
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)want;
#else
    /* Winsock has no such limit. */
    (void)want;
    (void)limit;
    return true;
#endif
}

/* ------------------------------------------------------------------------ */
/* Time, threads, messages                                                  */
/* ------------------------------------------------------------------------ */

int64_t now_ns(void)
{
#ifdef _WIN32
    return (int64_t)GetTickCount64() * 1000000;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
#endif
}

int thread_start(thread_t *t, thread_fn fn, void *arg)
{
#ifdef _WIN32
    *t = CreateThread(NULL, 0, fn, arg, 0, NULL);
    return *t != NULL ? 0 : -1;
#else
    return pthread_create(t, NULL, fn, arg) == 0 ? 0 : -1;
#endif
}

void thread_join(thread_t t)
{
#ifdef _WIN32
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
#else
    pthread_join(t, NULL);
#endif
}

static const char *program_name = "echo";

void set_program_name(const char *name)
{
    program_name = name;
}

void log_msg(const char *fmt, ...)
{
    /* One write per line: stderr is unbuffered, and lines from a loaded
     * server should neither interleave nor cost three system calls. */
    char line[320];
    int used = snprintf(line, sizeof(line), "%s: ", program_name);
    if (used < 0 || (size_t)used >= sizeof(line) - 1)
        used = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + used, sizeof(line) - (size_t)used - 1, fmt, ap);
    va_end(ap);
    strcat(line, "\n");
    fputs(line, stderr);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

#ifdef ECHO_NO_GETOPT_LONG
/*
 * getopt_long's conventions for a C library without it (MSVC): "-s 8k",
 * "-s8k", grouped flags ("-qh"), "--size 8k", "--size=8k", unambiguous
 * prefixes of long names, and "--" to end the options. Unlike GNU's it does
 * not move operands: the first one ends the options (neither program takes
 * any anyway).
 */
char *opt_arg;
int opt_ind = 1;
static int opt_pos; /* inside a group of short options */

/* A long option, argv[opt_ind] without its "--". */
static int opt_long(int argc, char **argv, const struct option *longs)
{
    char *name = argv[opt_ind++] + 2;
    char *eq = strchr(name, '=');
    size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    const struct option *found = NULL;
    int matches = 0;
    for (const struct option *o = longs; o->name != NULL; o++) {
        if (strncmp(o->name, name, len) != 0)
            continue;
        if (strlen(o->name) == len) { /* exact: wins over prefixes */
            found = o;
            matches = 1;
            break;
        }
        found = o;
        matches++;
    }
    if (matches != 1) {
        fprintf(stderr, "%s: %s option '--%.*s'\n", argv[0], matches == 0 ? "unrecognized" : "ambiguous",
                (int)len, name);
        return '?';
    }
    if (found->has_arg == required_argument) {
        if (eq != NULL)
            opt_arg = eq + 1;
        else if (opt_ind < argc)
            opt_arg = argv[opt_ind++];
        else {
            fprintf(stderr, "%s: option '--%s' requires an argument\n", argv[0], found->name);
            return '?';
        }
    } else if (eq != NULL) {
        fprintf(stderr, "%s: option '--%s' doesn't allow an argument\n", argv[0], found->name);
        return '?';
    }
    return found->val;
}

int opt_next(int argc, char **argv, const char *shorts, const struct option *longs)
{
    opt_arg = NULL;
    if (opt_pos == 0) {
        if (opt_ind >= argc || argv[opt_ind][0] != '-' || argv[opt_ind][1] == '\0')
            return -1;
        if (strcmp(argv[opt_ind], "--") == 0) {
            opt_ind++;
            return -1;
        }
        if (argv[opt_ind][1] == '-')
            return opt_long(argc, argv, longs);
        opt_pos = 1;
    }
    char *arg = argv[opt_ind];
    int c = (unsigned char)arg[opt_pos++];
    const char *spec = c != ':' ? strchr(shorts, c) : NULL;
    if (arg[opt_pos] == '\0') {
        opt_ind++;
        opt_pos = 0;
    }
    if (spec == NULL) {
        fprintf(stderr, "%s: invalid option -- '%c'\n", argv[0], c);
        return '?';
    }
    if (spec[1] == ':') {
        if (opt_pos != 0) { /* the rest of this argument */
            opt_arg = arg + opt_pos;
            opt_ind++;
            opt_pos = 0;
        } else if (opt_ind < argc) {
            opt_arg = argv[opt_ind++];
        } else {
            fprintf(stderr, "%s: option requires an argument -- '%c'\n", argv[0], c);
            return '?';
        }
    }
    return c;
}
#endif

int try_help(void)
{
    fprintf(stderr, "Try '%s --help' for more information.\n", program_name);
    return 2;
}

bool parse_size(const char *text, size_t min, size_t max, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-')
        return false;
    unsigned long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024, end++;
    if (*end != '\0' || v > max / mult || v * mult < min)
        return false;
    *out = (size_t)(v * mult);
    return true;
}

bool parse_number(const char *text, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0 && v <= max))
        return false;
    *out = v;
    return true;
}
