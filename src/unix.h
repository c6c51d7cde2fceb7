/*
 * unix.h: helpers shared by the POSIX backends (epoll.c, kqueue.c, poll.c).
 */
#ifndef CMIO_UNIX_H_
#define CMIO_UNIX_H_

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t cmio__unix_now_ns(void);

/* The absolute monotonic deadline for a wait of timeout_ns > 0 from now,
 * saturating instead of overflowing. */
int64_t cmio__unix_deadline(int64_t timeout_ns);

/* A relative timeout in whole milliseconds, rounded UP (a wait must never
 * end early) and clamped to [0, INT_MAX]: callers loop until the deadline,
 * so a clamped wait is a shorter first step, never "forever". */
int cmio__unix_ms_ceil(int64_t ns);

/* Sets FD_CLOEXEC and O_NONBLOCK on fd, for systems where the descriptor
 * could not be created with them. 0 or a negative errno value. */
int cmio__unix_cloexec_nonblock(int fd);

#endif /* CMIO_UNIX_H_ */
