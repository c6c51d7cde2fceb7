/*
 * afd.h: talking to the Winsock kernel driver (AFD) about sockets.
 *
 * An AFD helper handle is a handle on \Device\Afd with no endpoint behind it:
 * it cannot send or receive, but IOCTL_AFD_POLL issued on it watches any
 * socket's base handle, and because the helper is associated with a
 * completion port, each poll ends as one completion packet on that port.
 * This layer knows nothing of cmio's registrations; iocp_sock.c decides what
 * to poll for and what the results mean.
 */
#ifndef CMIO_AFD_H_
#define CMIO_AFD_H_

#include "nt.h"

/* One poll request. The kernel owns both fields from a successful
 * cmio__afd_poll until its completion packet has been dequeued. */
struct cmio__afd_poll {
    IO_STATUS_BLOCK iosb;
    CMIO__AFD_POLL_INFO info;
};

/* Opens a helper handle and associates it with `port` under completion key
 * `key`. 0 or a negative errno value. */
int cmio__afd_open(HANDLE port, ULONG_PTR key, HANDLE *out);

/*
 * Starts a poll of `base` for `events` on helper `afd`. The completion
 * packet carries `context` as its lpOverlapped. Returns 0 when the request
 * was accepted, which includes the case where it completed at once: a
 * packet is queued either way. Otherwise a negative errno value, -EBADF when
 * the socket is gone.
 */
int cmio__afd_poll(HANDLE afd, struct cmio__afd_poll *p, SOCKET base, ULONG events, void *context);

/* Asks for an accepted poll to end early; its packet still arrives (with
 * STATUS_CANCELLED, or with its result if it had already completed). */
void cmio__afd_cancel(HANDLE afd, struct cmio__afd_poll *p);

/*
 * The events a completed poll reported, or 0 when it reported none (a
 * cancelled or timed-out request). *failed is set when the request itself
 * failed: its socket handle is no longer valid, for instance.
 */
ULONG cmio__afd_result(const struct cmio__afd_poll *p, int *failed);

/*
 * Checks that `s` is an open socket and finds its base (provider) handle,
 * the one AFD polls: layered service providers hand out their own handles.
 * 0, -EBADF (closed or not a handle) or -EPERM (a handle that is not a
 * socket).
 */
int cmio__afd_base_socket(SOCKET s, SOCKET *base);

/* Whether `s` is still an open socket: 0, -EBADF or -EPERM. */
int cmio__afd_check_socket(SOCKET s);

#endif /* CMIO_AFD_H_ */
