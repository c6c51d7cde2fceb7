/*
 * sys.h: the contract between cmio's core (core.c) and its backends.
 *
 * The core checks every argument of every public call, owns the reference
 * count that keeps a queue alive across its poll, clones and wakers, enforces
 * the one-waiter rule, and owns the events container. A backend implements
 * exactly the functions below, in one file per OS mechanism (epoll.c,
 * kqueue.c, iocp.c, poll.c), and never sees a NULL pointer, an fd that is
 * CMIO_INVALID_FD or an interest with unknown bits.
 *
 * Threads: every function except cmio__sel_new/free may be called from any
 * thread at any time; cmio__sel_wait runs in at most one thread at a time
 * (the core guarantees it) while the registration functions and
 * cmio__sel_wake run concurrently with it. cmio__sel_free runs once, when
 * nothing else can touch the selector any more.
 *
 * Errors are negative errno values from the set documented in
 * include/cmio/poll.h; a backend maps its OS's codes onto them itself.
 */
#ifndef CMIO_SYS_H_
#define CMIO_SYS_H_

#include <cmio/poll.h>

/* Backend state for one OS queue. Defined by each backend. */
struct cmio__sel;

/* A waker's backend state. Defined by each backend. */
struct cmio__wk;

/* Creates the OS queue (close-on-exec). 0, -ENOMEM, -EMFILE or -ENFILE. */
int cmio__sel_new(struct cmio__sel **out);

/* Closes the OS queue and frees the selector. Every waker was freed first. */
void cmio__sel_free(struct cmio__sel *s);

/*
 * Waits as cmio_poll_wait documents and fills events->cmio__buf with at most
 * events->cmio__cap events, setting events->cmio__len to the count it
 * returns (0 on error too). Must not allocate. Returns 0 only once the
 * timeout has elapsed (timeout_ns < 0: never); -EINTR on a signal.
 */
int cmio__sel_wait(struct cmio__sel *s, cmio_events *events, int64_t timeout_ns);

/*
 * Registration. interest has at least one direction and only known bits.
 * Must not allocate on epoll and kqueue. Same error codes on every backend:
 * -EEXIST, -ENOENT, -EBADF, -EPERM, -ENOTSUP (CMIO_PRIORITY unsupported),
 * -EINVAL (fd is the queue itself), -ENOMEM, -ENOSPC.
 */
int cmio__sel_register(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest);
int cmio__sel_reregister(struct cmio__sel *s, cmio_fd fd, cmio_token t, unsigned interest);
int cmio__sel_deregister(struct cmio__sel *s, cmio_fd fd);

/*
 * Re-enables the edge of `directions` (non-empty, only direction bits) after
 * the caller hit would-block. Backends with native edges return 0 at once;
 * an fd that is not registered is ignored (0).
 */
int cmio__sel_rearm(struct cmio__sel *s, cmio_fd fd, unsigned directions);

/* Wakers: created on s, reported as readable events with token t. wake is
 * async-signal-safe and coalescing; free removes the waker from s. */
int cmio__sel_waker_new(struct cmio__sel *s, cmio_token t, struct cmio__wk **out);
int cmio__sel_waker_wake(struct cmio__wk *w);
void cmio__sel_waker_free(struct cmio__sel *s, struct cmio__wk *w);

/* Bytes of buffer one event slot needs: at least sizeof(cmio_event); more
 * when the backend receives OS records of another size into the same
 * buffer before translating them (the core allocates capacity slots). */
size_t cmio__sel_slot_size(void);

/* Every allocation goes through these so tests can inject failures. */
void *cmio__malloc(size_t size);
void *cmio__calloc(size_t n, size_t size);
void *cmio__realloc(void *p, size_t size);
void cmio__free(void *p);

/* For tests only: let the next n allocations succeed and fail every one
 * after that (n < 0: stop failing). Process-wide, so a test using it must
 * not run other cmio work in parallel threads. Declared again in the tests,
 * which link the static library. */
CMIO_API void cmio__alloc_fail_after(long n);

#endif /* CMIO_SYS_H_ */
