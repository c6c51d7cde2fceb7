/**
 * @file
 * cmio: a readiness event queue for C, in the manner of Rust's mio.
 *
 *   `#include <cmio/poll.h>`    link with libcmio.a (CMake target cmio::cmio)
 *
 * A cmio_poll owns one OS event queue (epoll, kqueue, an I/O completion port
 * with AFD polls, or a poll(2) set). File descriptors are registered with a
 * cmio_registry under a caller-chosen token; cmio_poll_wait fills a
 * caller-owned cmio_events buffer with the tokens that became ready.
 *
 * Conventions used by every function below:
 *   - int results are 0 (or a count) on success and a NEGATIVE errno value on
 *     failure (-EINVAL, -EBADF, ...), never -1 with errno set. The same
 *     failure gives the same code on every backend. cmio_strerror() names
 *     every code the library returns.
 *   - A NULL handle or out-pointer is -EINVAL, never a crash. _free functions
 *     accept NULL. Accessors given NULL return 0/false/NULL.
 *   - The caller owns what it creates with _new/_clone and frees it with the
 *     matching _free. The library keeps no pointer the caller passed in.
 *   - No global state: separate polls are fully independent.
 *
 * Threads: every cmio_registry_* call and cmio_waker_wake may be made from
 * any thread at any time, including while another thread is blocked in
 * cmio_poll_wait on the same queue. Only one thread may be inside
 * cmio_poll_wait of a given poll at a time (a second gets -EBUSY). A
 * cmio_events buffer belongs to one thread at a time. Freeing a handle while
 * another thread is using it is undefined behaviour, as with free().
 *
 * fork(): a queue does not survive into a child process. The child must not
 * use a poll, registry or waker created before the fork (their descriptors
 * are close-on-exec, not close-on-fork); it creates its own.
 *
 * Copyright (c) cmio contributors. MIT licence, see LICENSE.
 */
#ifndef CMIO_POLL_H_
#define CMIO_POLL_H_

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmio/config.h> /* generated: the backend this library was built with, its version */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(CMIO_SHARED) && defined(CMIO_BUILDING)
#define CMIO_API __declspec(dllexport)
#elif defined(_WIN32) && defined(CMIO_SHARED)
#define CMIO_API __declspec(dllimport)
#elif defined(__GNUC__)
#define CMIO_API __attribute__((visibility("default")))
#else
#define CMIO_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

/** @{ */
/** The version of this header, MAJOR.MINOR.PATCH under semantic versioning
 * (see the README): a release that breaks the API or ABI raises MAJOR, one
 * that only adds raises MINOR, one that only fixes raises PATCH. Before 1.0
 * a MINOR release may break. Integer constants, usable in `#if`. */
#define CMIO_VERSION_MAJOR CMIO__VERSION_MAJOR
#define CMIO_VERSION_MINOR CMIO__VERSION_MINOR
#define CMIO_VERSION_PATCH CMIO__VERSION_PATCH
/** @} */

#define CMIO__STRINGIFY(x) #x
#define CMIO__VERSION_TEXT(a, b, c) CMIO__STRINGIFY(a) "." CMIO__STRINGIFY(b) "." CMIO__STRINGIFY(c)

/** The version of this header as a string literal, "MAJOR.MINOR.PATCH". */
#define CMIO_VERSION_STRING                                                                        \
    CMIO__VERSION_TEXT(CMIO_VERSION_MAJOR, CMIO_VERSION_MINOR, CMIO_VERSION_PATCH)

/** The version of the library linked in, "MAJOR.MINOR.PATCH". It equals
 * CMIO_VERSION_STRING when the header and the library come from the same
 * build; a program can compare the two to catch a mismatched install. */
CMIO_API const char *cmio_version(void);

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

/** The caller's identifier for a registration, returned in events untouched.
 * Every value is allowed, including 0 and UINTPTR_MAX. */
typedef uintptr_t cmio_token;

/** A pollable handle: a file descriptor on POSIX (socket, pipe, eventfd, tty,
 * FIFO, ...), a SOCKET on Windows. Regular files and directories are not
 * pollable and are refused with -EPERM. Where the line falls for other
 * files is the OS's: epoll asks the driver (a few procfs and sysfs files
 * can be polled, /dev/null cannot), the poll and kqueue backends go by file
 * type (regular files, directories and block devices are refused). */
#ifdef _WIN32
typedef uintptr_t cmio_fd;
#define CMIO_INVALID_FD ((cmio_fd) ~(uintptr_t)0)
#else
typedef int cmio_fd;
#define CMIO_INVALID_FD (-1)
#endif
/** @def CMIO_INVALID_FD
 * A cmio_fd that names no handle: -1 on POSIX, INVALID_SOCKET on Windows. */

/** Owns one OS event queue and the registry for it. See cmio_poll_new. */
typedef struct cmio_poll cmio_poll;
/** Registers handles with a queue: the poll's own (cmio_poll_registry) or a
 * clone of it (cmio_registry_clone). */
typedef struct cmio_registry cmio_registry;
/** A caller-owned buffer that each cmio_poll_wait fills. See
 * cmio_events_new. */
typedef struct cmio_events cmio_events;
/** One entry of a cmio_events, read with the cmio_event_* accessors. */
typedef struct cmio_event cmio_event;
/** Wakes a poll from any thread or signal handler. See cmio_waker_new. */
typedef struct cmio_waker cmio_waker;

/* ------------------------------------------------------------------------ */
/* Interest and mode                                                        */
/* ------------------------------------------------------------------------ */

/** @{ */
/** Directions. At least one is required in an interest. READABLE also
 * reports read-closed and errors; WRITABLE also reports write-closed and
 * errors. PRIORITY (out-of-band data: EPOLLPRI, AFD expedited receive) is
 * -ENOTSUP on backends without it (kqueue, poll(2) outside Linux). */
#define CMIO_READABLE 0x01u
#define CMIO_WRITABLE 0x02u
#define CMIO_PRIORITY 0x04u
/** @} */

/** @{ */
/** Modes. EDGE is the default (value 0): an event when a direction goes from
 * not-ready to ready, then silence for that direction until the caller has
 * drained it (read/write/accept until EAGAIN/EWOULDBLOCK) and called
 * cmio_registry_rearm. LEVEL reports on every wait while ready. ONESHOT
 * reports once and then stays silent until cmio_registry_reregister; it
 * combines with EDGE or LEVEL. Any other bit is -EINVAL. */
#define CMIO_EDGE 0x00u
#define CMIO_LEVEL 0x08u
#define CMIO_ONESHOT 0x10u
/** @} */

/** Largest capacity cmio_events_new accepts. Larger is -EINVAL: a wait never
 * needs more than this many slots to make progress. */
#define CMIO_EVENTS_MAX ((size_t)1 << 20)

/* ------------------------------------------------------------------------ */
/* Poll                                                                     */
/* ------------------------------------------------------------------------ */

/** Creates a poll and its OS queue (close-on-exec). On success *out holds
 * it and 0 is returned. Errors: -EINVAL (out is NULL), -ENOMEM, -EMFILE,
 * -ENFILE (no descriptor for the queue). */
CMIO_API int cmio_poll_new(cmio_poll **out);

/** Frees the poll and its own registry. Registrations made through it are
 * dropped with the OS queue once every clone and waker is freed too (the
 * queue lives until the last of them goes). NULL is a no-op. Must not be
 * called while a thread is inside cmio_poll_wait on it. */
CMIO_API void cmio_poll_free(cmio_poll *poll);

/** The poll's own registry, owned by the poll: never pass it to
 * cmio_registry_free. Valid until cmio_poll_free. NULL for a NULL poll. */
CMIO_API cmio_registry *cmio_poll_registry(cmio_poll *poll);

/** Waits for events and replaces the contents of `events` with them (never
 * appends), writing at most its capacity. Returns the number of events.
 *
 *   timeout_ns <  0  waits until an event or a wake;
 *   timeout_ns == 0  never blocks;
 *   timeout_ns >  0  waits at most that long. Nanosecond precision where the
 *                    OS has it (epoll_pwait2, kevent); elsewhere rounded UP.
 *                    Huge values never wrap or become "forever".
 *
 * Returns 0 only once the timeout has elapsed: internal wake-ups that carry
 * nothing for the caller are absorbed and the remaining time is waited.
 * Ready sources beyond the capacity are reported by later waits.
 *
 * Errors: -EINVAL (NULL poll or events), -EINTR (a signal handler ran; the
 * events buffer is then empty), -EBUSY (another thread is already waiting on
 * this poll). */
CMIO_API int cmio_poll_wait(cmio_poll *poll, cmio_events *events, int64_t timeout_ns);

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */
/* ------------------------------------------------------------------------ */

/** Registers fd with token t and the given interest (directions | mode).
 * A source that is already ready is reported by the next wait.
 * Errors: -EINVAL (NULL registry, no direction, unknown bits, or fd is the
 * queue itself), -EBADF (fd negative, closed or invalid), -EEXIST (fd is
 * already registered with this queue), -EPERM (fd is not pollable, such as
 * a regular file), -ENOTSUP (CMIO_PRIORITY on a backend without it),
 * -ENOMEM/-ENOSPC (the OS is out of memory or watches).
 *
 * Register a socket once it is connecting or listening (after connect()
 * gave EINPROGRESS, or after listen()), as every example does: Linux reports
 * a TCP socket that is neither as hung up, so an edge-mode registration made
 * earlier may spend its event on that, and the poll backend then holds the
 * fd until a rearm. Code that must register earlier calls
 * cmio_registry_reregister after connect() or listen(). */
CMIO_API int cmio_registry_register(cmio_registry *r, cmio_fd fd, cmio_token t, unsigned interest);

/** Replaces both the token and the interest of a registered fd and
 * re-evaluates readiness: a source that is ready now is reported by the next
 * wait (this is how a ONESHOT registration is re-enabled, and it also resets
 * the edge state of both directions). Errors as for register, plus -ENOENT
 * (fd not registered with this queue). */
CMIO_API int cmio_registry_reregister(cmio_registry *r, cmio_fd fd, cmio_token t, unsigned interest);

/** Removes fd from the queue. After it returns, no wait that starts later
 * reports this registration (a wait already running in another thread may
 * still return one last event for it). Deregister BEFORE close(): a closed
 * fd gives -EBADF. Errors: -EINVAL, -EBADF, -ENOENT (not registered).
 *
 * On Linux, epoll tracks the open file description, not the number: if the
 * fd was dup()ed and only one copy is closed without deregistering, events
 * keep coming for it. Deregistering first avoids this on every backend. */
CMIO_API int cmio_registry_deregister(cmio_registry *r, cmio_fd fd);

/** Says that an operation in `directions` (CMIO_READABLE, CMIO_WRITABLE,
 * CMIO_PRIORITY, or an OR of them) on a registered fd just returned
 * EAGAIN/EWOULDBLOCK, so the next transition to ready must be reported.
 *
 * Portable edge-mode code calls it after every would-block. Backends whose
 * OS has edge notification (epoll, kqueue) need nothing and this is an
 * inline check of the arguments; backends that emulate edges (iocp, poll)
 * re-enable the direction here. It never reports whether fd is registered:
 * a rearm for an fd that is not (or no longer) registered is ignored and
 * returns 0 on every backend, so a rearm racing a deregister is harmless.
 * Errors: -EINVAL (NULL registry, no direction or unknown bits), -EBADF (fd
 * negative / CMIO_INVALID_FD). */
static inline int cmio_registry_rearm(cmio_registry *r, cmio_fd fd, unsigned directions);

/** Gives a second handle on the same queue, for another thread to register
 * with while one thread waits. Costs no file descriptor. The clone is owned
 * by the caller and freed with cmio_registry_free; it stays usable after
 * cmio_poll_free (nobody is waiting on the queue then, but it still exists).
 * A clone may be cloned. Errors: -EINVAL (NULL), -ENOMEM. */
CMIO_API int cmio_registry_clone(cmio_registry *r, cmio_registry **out);

/** Frees a clone. NULL, and the poll's own registry, are ignored (the poll
 * owns that one). */
CMIO_API void cmio_registry_free(cmio_registry *clone);

/* ------------------------------------------------------------------------ */
/* Events                                                                   */
/* ------------------------------------------------------------------------ */

/** Allocates an events buffer with room for `capacity` events (1 to
 * CMIO_EVENTS_MAX). Errors: -EINVAL (NULL out, capacity 0 or above the
 * maximum), -ENOMEM. */
CMIO_API int cmio_events_new(cmio_events **out, size_t capacity);

/** Frees an events buffer. NULL is a no-op. */
CMIO_API void cmio_events_free(cmio_events *events);

/** Number of events filled by the last wait (0 for NULL or a fresh buffer). */
static inline size_t cmio_events_len(const cmio_events *events);

/** Capacity given to cmio_events_new (0 for NULL). */
static inline size_t cmio_events_capacity(const cmio_events *events);

/** The index-th event of the last wait, or NULL if index >= len (or events is
 * NULL). Valid until the next wait with this buffer or its free. */
static inline const cmio_event *cmio_events_get(const cmio_events *events, size_t index);

/** The token given at (re)registration. 0 for NULL. */
static inline cmio_token cmio_event_token(const cmio_event *e);

/** @{ */
/** Reliable flags: a read (or accept) / a write will not block. A readable
 * event may occasionally be spurious (the read gives EAGAIN); callers must
 * tolerate it. One batch may hold two entries for one token (kqueue reports
 * the directions separately). */
static inline bool cmio_event_is_readable(const cmio_event *e);
static inline bool cmio_event_is_writable(const cmio_event *e);
/** @} */

/** @{ */
/** Hints: never set wrongly, but possibly missing on some OS. An event can
 * carry only hints (a pipe whose reader went away reports error and
 * write-closed without writable), so on any event try the operations you
 * are interested in and let their result decide. */
static inline bool cmio_event_is_error(const cmio_event *e);
static inline bool cmio_event_is_read_closed(const cmio_event *e);
static inline bool cmio_event_is_write_closed(const cmio_event *e);
static inline bool cmio_event_is_priority(const cmio_event *e);
/** @} */

/* ------------------------------------------------------------------------ */
/* Wakers                                                                   */
/* ------------------------------------------------------------------------ */

/** Creates a waker that makes the next (or current) wait on r's queue return
 * an event with token t, from any thread or signal handler. Any number of
 * wakers per queue. The waker keeps the queue alive until it is freed.
 * Errors: -EINVAL (NULL r or out), -ENOMEM, -EMFILE, -ENFILE. */
CMIO_API int cmio_waker_new(cmio_registry *r, cmio_token t, cmio_waker **out);

/** Wakes the queue. Thread-safe and async-signal-safe. Coalescing: any
 * number of wakes before a wait give at least one event with the waker's
 * token, and a later wait with no new wake gives none for it. The event is
 * readable-only. Errors: -EINVAL (NULL). */
CMIO_API int cmio_waker_wake(cmio_waker *w);

/** Frees a waker (removing it from the queue). NULL is a no-op. */
CMIO_API void cmio_waker_free(cmio_waker *w);

/* ------------------------------------------------------------------------ */
/* Misc                                                                     */
/* ------------------------------------------------------------------------ */

/** A static English description of any code the library returns ("success"
 * for 0; "unknown error" for codes it never returns). Never NULL. Accepts
 * the code negative (as returned) or positive. */
CMIO_API const char *cmio_strerror(int err);

/** The backend this library was built with: "epoll", "kqueue", "iocp" or
 * "poll". */
CMIO_API const char *cmio_backend(void);

/* ------------------------------------------------------------------------ */
/* Inline definitions. Everything named cmio__ is private: its layout and    */
/* meaning may change in any release. Use only the accessors above.          */
/* ------------------------------------------------------------------------ */
/** @cond CMIO_PRIVATE */

#define CMIO__DIRECTIONS (CMIO_READABLE | CMIO_WRITABLE | CMIO_PRIORITY)

#if defined(CMIO_BACKEND_EPOLL)
/* The event is the kernel's struct epoll_event, byte for byte (packed on
 * x86-64 as glibc declares it); the token rides in its data field. The epoll
 * backend checks this layout at compile time. */
#if defined(__x86_64__)
#define CMIO__EVENT_PACKED __attribute__((__packed__))
#else
#define CMIO__EVENT_PACKED
#endif
struct cmio_event {
    uint32_t cmio__events;
    uint64_t cmio__data;
} CMIO__EVENT_PACKED;
/* Linux ABI values of EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP,
 * EPOLLRDHUP. */
#define CMIO__EV_IN 0x001u
#define CMIO__EV_PRI 0x002u
#define CMIO__EV_OUT 0x004u
#define CMIO__EV_ERR 0x008u
#define CMIO__EV_HUP 0x010u
#define CMIO__EV_RDHUP 0x2000u
#define CMIO__EVENT_TOKEN(e) ((cmio_token)(e)->cmio__data)
#define CMIO__EVENT_BITS(e) ((e)->cmio__events)
#define CMIO__EV_READ_CLOSED(b)                                                                    \
    (((b)&CMIO__EV_HUP) != 0 || ((b) & (CMIO__EV_IN | CMIO__EV_RDHUP)) == (CMIO__EV_IN | CMIO__EV_RDHUP))
#define CMIO__EV_WRITE_CLOSED(b)                                                                   \
    (((b)&CMIO__EV_HUP) != 0 || ((b) & (CMIO__EV_OUT | CMIO__EV_ERR)) == (CMIO__EV_OUT | CMIO__EV_ERR) \
     || (b) == CMIO__EV_ERR)
#else
/* Backends without a usable kernel record fill this portable one. */
struct cmio_event {
    cmio_token cmio__token;
    uint32_t cmio__flags;
};
#define CMIO__EV_IN 0x01u
#define CMIO__EV_OUT 0x02u
#define CMIO__EV_PRI 0x04u
#define CMIO__EV_ERR 0x08u
#define CMIO__EV_RCLOSED 0x10u
#define CMIO__EV_WCLOSED 0x20u
#define CMIO__EVENT_TOKEN(e) ((e)->cmio__token)
#define CMIO__EVENT_BITS(e) ((e)->cmio__flags)
#define CMIO__EV_READ_CLOSED(b) (((b)&CMIO__EV_RCLOSED) != 0)
#define CMIO__EV_WRITE_CLOSED(b) (((b)&CMIO__EV_WCLOSED) != 0)
#endif

/* The buffer behind cmio_events. Private fields: read them through
 * cmio_events_len/capacity/get. */
struct cmio_events {
    cmio_event *cmio__buf;
    size_t cmio__len;
    size_t cmio__cap;
};

static inline size_t cmio_events_len(const cmio_events *events)
{
    return events != NULL ? events->cmio__len : 0;
}

static inline size_t cmio_events_capacity(const cmio_events *events)
{
    return events != NULL ? events->cmio__cap : 0;
}

static inline const cmio_event *cmio_events_get(const cmio_events *events, size_t index)
{
    if (events == NULL || index >= events->cmio__len)
        return NULL;
    return &events->cmio__buf[index];
}

static inline cmio_token cmio_event_token(const cmio_event *e)
{
    return e != NULL ? CMIO__EVENT_TOKEN(e) : 0;
}

static inline bool cmio_event_is_readable(const cmio_event *e)
{
    return e != NULL && (CMIO__EVENT_BITS(e) & CMIO__EV_IN) != 0;
}

static inline bool cmio_event_is_writable(const cmio_event *e)
{
    return e != NULL && (CMIO__EVENT_BITS(e) & CMIO__EV_OUT) != 0;
}

static inline bool cmio_event_is_error(const cmio_event *e)
{
    return e != NULL && (CMIO__EVENT_BITS(e) & CMIO__EV_ERR) != 0;
}

static inline bool cmio_event_is_priority(const cmio_event *e)
{
    return e != NULL && (CMIO__EVENT_BITS(e) & CMIO__EV_PRI) != 0;
}

static inline bool cmio_event_is_read_closed(const cmio_event *e)
{
    return e != NULL && CMIO__EV_READ_CLOSED(CMIO__EVENT_BITS(e));
}

static inline bool cmio_event_is_write_closed(const cmio_event *e)
{
    return e != NULL && CMIO__EV_WRITE_CLOSED(CMIO__EVENT_BITS(e));
}

/* The out-of-line part of rearm, on backends that emulate edges. */
CMIO_API int cmio__registry_rearm(cmio_registry *r, cmio_fd fd, unsigned directions);

/* The argument checks of rearm, shared by the inline fast path below and
 * the library's out-of-line part. */
#ifdef _WIN32
#define CMIO__FD_INVALID(fd) ((fd) == CMIO_INVALID_FD)
#else
#define CMIO__FD_INVALID(fd) ((fd) < 0)
#endif
static inline int cmio__rearm_check(const cmio_registry *r, cmio_fd fd, unsigned directions)
{
    if (r == NULL || (directions & CMIO__DIRECTIONS) == 0 || (directions & ~CMIO__DIRECTIONS) != 0)
        return -EINVAL;
    return CMIO__FD_INVALID(fd) ? -EBADF : 0;
}

static inline int cmio_registry_rearm(cmio_registry *r, cmio_fd fd, unsigned directions)
{
#if defined(CMIO_NATIVE_EDGE)
    return cmio__rearm_check(r, fd, directions);
#else
    return cmio__registry_rearm(r, fd, directions);
#endif
}

/** @endcond */

#ifdef __cplusplus
}
#endif

#endif /* CMIO_POLL_H_ */
