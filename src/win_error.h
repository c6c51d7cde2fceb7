/*
 * win_error.h: Windows error codes as the negative errno values of the cmio
 * contract, through one table (win_error.c).
 */
#ifndef CMIO_WIN_ERROR_H_
#define CMIO_WIN_ERROR_H_

#include "nt.h"

/* A Win32 or Winsock error code (GetLastError, WSAGetLastError) as a
 * negative errno value; codes the table does not know become -EIO. */
int cmio__win_error(DWORD err);

/* The same for an NTSTATUS failure. */
int cmio__win_nt_error(NTSTATUS status);

#endif /* CMIO_WIN_ERROR_H_ */
