/*
 * win_error.c: the one table from Windows error codes to the errno values
 * cmio returns.
 *
 * Only the codes the contract names appear on the right (see cmio_strerror
 * in core.c): a caller of cmio never needs to know Winsock's vocabulary.
 * Winsock reports a closed socket and a handle that is not a socket alike
 * (WSAENOTSOCK); callers that can tell them apart do so before asking here.
 */
#include <errno.h>

#include "win_error.h"

#define CMIO__WIN_ERRORS(X)                                                                        \
    X(ERROR_INVALID_HANDLE, EBADF)                                                                 \
    X(WSAENOTSOCK, EBADF)                                                                          \
    X(WSAEBADF, EBADF)                                                                             \
    X(ERROR_INVALID_PARAMETER, EINVAL)                                                             \
    X(ERROR_INVALID_FUNCTION, EINVAL)                                                              \
    X(WSAEINVAL, EINVAL)                                                                           \
    X(WSAEFAULT, EINVAL)                                                                           \
    X(ERROR_ACCESS_DENIED, EPERM)                                                                  \
    X(WSAEACCES, EPERM)                                                                            \
    X(ERROR_NOT_SUPPORTED, ENOTSUP)                                                                \
    X(WSAEOPNOTSUPP, ENOTSUP)                                                                      \
    X(ERROR_ALREADY_EXISTS, EEXIST)                                                                \
    X(ERROR_NOT_FOUND, ENOENT)                                                                     \
    X(ERROR_FILE_NOT_FOUND, ENOENT)                                                                \
    X(ERROR_PATH_NOT_FOUND, ENOENT)                                                                \
    X(ERROR_NOT_ENOUGH_MEMORY, ENOMEM)                                                             \
    X(ERROR_OUTOFMEMORY, ENOMEM)                                                                   \
    X(ERROR_NO_SYSTEM_RESOURCES, ENOMEM)                                                           \
    X(ERROR_NONPAGED_SYSTEM_RESOURCES, ENOMEM)                                                     \
    X(ERROR_PAGED_SYSTEM_RESOURCES, ENOMEM)                                                        \
    X(ERROR_COMMITMENT_LIMIT, ENOMEM)                                                              \
    X(ERROR_NOT_ENOUGH_QUOTA, ENOMEM)                                                              \
    X(ERROR_WORKING_SET_QUOTA, ENOMEM)                                                             \
    X(WSAENOBUFS, ENOMEM)                                                                          \
    X(ERROR_TOO_MANY_OPEN_FILES, EMFILE)                                                           \
    X(WSAEMFILE, EMFILE)                                                                           \
    X(ERROR_OPERATION_ABORTED, EINTR)                                                              \
    X(WSAEINTR, EINTR)                                                                             \
    X(ERROR_BUSY, EBUSY)                                                                           \
    X(WSAEINPROGRESS, EBUSY)                                                                       \
    X(WSAEWOULDBLOCK, EAGAIN)                                                                      \
    X(WAIT_TIMEOUT, EAGAIN)                                                                        \
    X(ERROR_IO_DEVICE, EIO)                                                                        \
    X(ERROR_GEN_FAILURE, EIO)

int cmio__win_error(DWORD err)
{
    switch (err) {
#define CMIO__WIN_ERROR_CASE(win, posix)                                                           \
    case win:                                                                                      \
        return -(posix);
        CMIO__WIN_ERRORS(CMIO__WIN_ERROR_CASE)
#undef CMIO__WIN_ERROR_CASE
    default:
        return -EIO;
    }
}

int cmio__win_nt_error(NTSTATUS status)
{
    return cmio__win_error(RtlNtStatusToDosError(status));
}
