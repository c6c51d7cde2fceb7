/*
 * afd.c: AFD helper handles, poll requests and base socket handles.
 *
 * Quirks handled here:
 *   - A poll that is already satisfied may complete inline with
 *     STATUS_SUCCESS. Windows then still queues a packet on the port (unless
 *     FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set, which is never done here)
 *     and Wine queues one even if it were set, so "accepted" means "a packet
 *     will come" for both STATUS_SUCCESS and STATUS_PENDING.
 *   - A request the driver refuses at once (a closed socket handle, say)
 *     returns an error status and queues nothing.
 *   - CancelIoEx takes the OVERLAPPED the request was started with; an
 *     OVERLAPPED begins with the IO_STATUS_BLOCK fields, and the kernel
 *     identifies the request by that address, so the status block is passed.
 *   - Layered service providers wrap sockets in handles of their own.
 *     SIO_BASE_HANDLE unwraps them all, but some LSPs intercept it; the
 *     SIO_BSP_HANDLE* ioctls then peel one layer at a time (the fallback
 *     wepoll and mio use). Wine has no LSPs and returns the socket itself.
 *   - Winsock gives WSAENOTSOCK both for a closed socket and for a handle
 *     that is not a socket; GetHandleInformation tells the two apart. Wine
 *     answers SIO_BASE_HANDLE even for a closed socket, so validity is
 *     checked with getsockopt first.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "afd.h"
#include "win_error.h"

int cmio__afd_open(HANDLE port, ULONG_PTR key, HANDLE *out)
{
    /* Any path below \Device\Afd opens the driver without creating an
     * endpoint; the last component only names the handle in debuggers. */
    WCHAR path[] = L"\\Device\\Afd\\cmio";
    UNICODE_STRING name;
    name.Length = (USHORT)(sizeof(path) - sizeof(WCHAR));
    name.MaximumLength = (USHORT)sizeof(path);
    name.Buffer = path;
    OBJECT_ATTRIBUTES attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.Length = sizeof(attributes);
    attributes.ObjectName = &name;

    HANDLE afd;
    IO_STATUS_BLOCK iosb;
    NTSTATUS st = NtCreateFile(&afd, SYNCHRONIZE, &attributes, &iosb, NULL, 0,
                               FILE_SHARE_READ | FILE_SHARE_WRITE, FILE_OPEN, 0, NULL, 0);
    if (!CMIO__NT_SUCCESS(st))
        return cmio__win_nt_error(st);
    if (CreateIoCompletionPort(afd, port, key, 0) == NULL) {
        int rc = cmio__win_error(GetLastError());
        CloseHandle(afd);
        return rc;
    }
    /* Completions are only ever read from the port, so signalling the
     * handle as well is wasted work. Best effort: it is an optimisation. */
    SetFileCompletionNotificationModes(afd, FILE_SKIP_SET_EVENT_ON_HANDLE);
    *out = afd;
    return 0;
}

int cmio__afd_poll(HANDLE afd, struct cmio__afd_poll *p, SOCKET base, ULONG events, void *context)
{
    p->info.Timeout.QuadPart = INT64_MAX;
    p->info.NumberOfHandles = 1;
    p->info.Exclusive = FALSE;
    p->info.Handles[0].Handle = (HANDLE)base;
    p->info.Handles[0].Events = events;
    p->info.Handles[0].Status = 0;
    p->iosb.Status = CMIO__STATUS_PENDING;
    NTSTATUS st = NtDeviceIoControlFile(afd, NULL, NULL, context, &p->iosb, CMIO__IOCTL_AFD_POLL,
                                        &p->info, sizeof(p->info), &p->info, sizeof(p->info));
    if (st == CMIO__STATUS_SUCCESS || st == CMIO__STATUS_PENDING)
        return 0;
    return cmio__win_nt_error(st);
}

void cmio__afd_cancel(HANDLE afd, struct cmio__afd_poll *p)
{
    /* ERROR_NOT_FOUND means the request completed first: its packet is
     * already queued, which is all the caller waits for. */
    CancelIoEx(afd, (OVERLAPPED *)(void *)&p->iosb);
}

ULONG cmio__afd_result(const struct cmio__afd_poll *p, int *failed)
{
    NTSTATUS st = p->iosb.Status;
    *failed = 0;
    /* Cancelled by us, or by the helper handle closing at teardown (Wine
     * reports the latter as STATUS_HANDLES_CLOSED). */
    if (st == CMIO__STATUS_CANCELLED || st == CMIO__STATUS_HANDLES_CLOSED)
        return 0;
    if (!CMIO__NT_SUCCESS(st)) {
        *failed = 1;
        return 0;
    }
    /* A request that ended without news (Wine's superseded polls) lists
     * no handle at all: the event field is then meaningless. */
    if (p->info.NumberOfHandles < 1)
        return 0;
    return p->info.Handles[0].Events;
}

int cmio__afd_check_socket(SOCKET s)
{
    int type;
    int len = (int)sizeof(type);
    if (getsockopt(s, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0)
        return 0;
    int err = WSAGetLastError();
    if (err != WSAENOTSOCK)
        return cmio__win_error((DWORD)err);
    DWORD flags;
    return GetHandleInformation((HANDLE)s, &flags) ? -EPERM : -EBADF;
}

static SOCKET ioctl_socket(SOCKET s, DWORD code)
{
    SOCKET out = INVALID_SOCKET;
    DWORD bytes = 0;
    if (WSAIoctl(s, code, NULL, 0, &out, sizeof(out), &bytes, NULL, NULL) == SOCKET_ERROR)
        return INVALID_SOCKET;
    return out;
}

/* The handle of the next provider down, or INVALID_SOCKET. */
static SOCKET lower_layer(SOCKET s)
{
    static const DWORD codes[] = {SIO_BSP_HANDLE_POLL, SIO_BSP_HANDLE_SELECT, SIO_BSP_HANDLE};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        SOCKET lower = ioctl_socket(s, codes[i]);
        if (lower != INVALID_SOCKET && lower != s)
            return lower;
    }
    return INVALID_SOCKET;
}

int cmio__afd_base_socket(SOCKET s, SOCKET *base)
{
    int rc = cmio__afd_check_socket(s);
    if (rc < 0)
        return rc;
    /* A handful of layers at most; the bound only guards against a
     * provider that hands back a cycle. */
    SOCKET layer = s;
    for (int depth = 0; depth < 8; depth++) {
        SOCKET b = ioctl_socket(layer, SIO_BASE_HANDLE);
        if (b != INVALID_SOCKET) {
            *base = b;
            return 0;
        }
        SOCKET lower = lower_layer(layer);
        if (lower == INVALID_SOCKET)
            break;
        layer = lower;
    }
    if (layer == s)
        return -EPERM; /* a provider that exposes no AFD socket at all */
    *base = layer;
    return 0;
}
