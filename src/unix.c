/*
 * unix.c: clock and descriptor helpers shared by the POSIX backends.
 */
#include "unix.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <time.h>

int64_t cmio__unix_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cmio__unix_deadline(int64_t timeout_ns)
{
    int64_t now = cmio__unix_now_ns();
    return timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
}

int cmio__unix_ms_ceil(int64_t ns)
{
    if (ns <= 0)
        return 0;
    int64_t ms = ns / 1000000 + (ns % 1000000 != 0);
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

int cmio__unix_cloexec_nonblock(int fd)
{
    int fdf = fcntl(fd, F_GETFD);
    int flf = fcntl(fd, F_GETFL);
    if (fdf < 0 || flf < 0)
        return -errno;
    if (fcntl(fd, F_SETFD, fdf | FD_CLOEXEC) < 0 || fcntl(fd, F_SETFL, flf | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}
