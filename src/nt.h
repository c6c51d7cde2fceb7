/*
 * nt.h: the Windows headers the iocp backend needs, in the order they must
 * be included, plus the few NT and AFD definitions no SDK header ships.
 *
 * The native API used (NtCreateFile, NtDeviceIoControlFile,
 * RtlNtStatusToDosError) is declared by <winternl.h> in both the Windows SDK
 * and MinGW-w64, and exported by ntdll's import library; cancellation goes
 * through kernel32's CancelIoEx, which forwards to NtCancelIoFileEx. The AFD
 * ioctl is undocumented but stable since Windows XP; its layout is the one
 * used by wepoll, mio and libuv.
 */
#ifndef CMIO_NT_H_
#define CMIO_NT_H_

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
/* GetQueuedCompletionStatusEx, CancelIoEx and SRW locks are Vista APIs. */
#if !defined(_WIN32_WINNT) || _WIN32_WINNT < 0x0600
#undef _WIN32_WINNT
#define _WIN32_WINNT 0x0600
#endif

#include <winsock2.h> /* before <windows.h>, which would pull in winsock 1 */
#include <windows.h>
#include <mswsock.h>
#include <winternl.h>

/* NTSTATUS values. <ntstatus.h> clashes with <windows.h> unless both are
 * included in a special dance, so the four needed here are spelled out. */
#define CMIO__STATUS_SUCCESS ((NTSTATUS)0x00000000L)
#define CMIO__STATUS_PENDING ((NTSTATUS)0x00000103L)
#define CMIO__STATUS_CANCELLED ((NTSTATUS)0xC0000120L)
#define CMIO__STATUS_HANDLES_CLOSED ((NTSTATUS)0xC0000206L)
#define CMIO__NT_SUCCESS(st) ((NTSTATUS)(st) >= 0)

/* The provider-handle ioctls (Vista and later; older SDKs lack some). */
#ifndef SIO_BSP_HANDLE
#define SIO_BSP_HANDLE _WSAIOR(IOC_WS2, 27)
#endif
#ifndef SIO_BSP_HANDLE_SELECT
#define SIO_BSP_HANDLE_SELECT _WSAIOR(IOC_WS2, 28)
#endif
#ifndef SIO_BSP_HANDLE_POLL
#define SIO_BSP_HANDLE_POLL _WSAIOR(IOC_WS2, 29)
#endif
#ifndef SIO_BASE_HANDLE
#define SIO_BASE_HANDLE _WSAIOR(IOC_WS2, 34)
#endif

/* IOCTL_AFD_POLL: FILE_DEVICE_NETWORK (0x12), function 9, METHOD_BUFFERED. */
#define CMIO__IOCTL_AFD_POLL 0x00012024

/* AFD poll events (the AFD_POLL_*_BIT positions of the driver). */
#define CMIO__AFD_RECEIVE 0x0001u           /* data to read */
#define CMIO__AFD_RECEIVE_EXPEDITED 0x0002u /* out-of-band data to read */
#define CMIO__AFD_SEND 0x0004u              /* room to write */
#define CMIO__AFD_DISCONNECT 0x0008u        /* the peer shut down its sending side */
#define CMIO__AFD_ABORT 0x0010u             /* reset, or both directions shut down */
#define CMIO__AFD_LOCAL_CLOSE 0x0020u       /* this process closed the socket */
#define CMIO__AFD_ACCEPT 0x0080u            /* a connection is waiting on a listener */
#define CMIO__AFD_CONNECT_FAIL 0x0100u      /* an outgoing connect failed */

typedef struct {
    HANDLE Handle;
    ULONG Events;
    NTSTATUS Status;
} CMIO__AFD_POLL_HANDLE_INFO;

/* One handle per request: AFD completes a multi-handle poll as soon as any
 * of them is ready, which would turn one busy socket into re-polls of all. */
typedef struct {
    LARGE_INTEGER Timeout;
    ULONG NumberOfHandles;
    ULONG Exclusive;
    CMIO__AFD_POLL_HANDLE_INFO Handles[1];
} CMIO__AFD_POLL_INFO;

#endif /* CMIO_NT_H_ */
