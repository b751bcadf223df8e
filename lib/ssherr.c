/* ssherr.c - what a libssh2 result means to ferry (ssherr.h). */
#include "ssherr.h"

#include <stddef.h>

int ferry__ssh_transient(int rc)
{
	return rc == LIBSSH2_ERROR_EAGAIN || rc == LIBSSH2_ERROR_BAD_USE ||
	       rc == LIBSSH2_ERROR_SOCKET_SEND;
}

int ferry__ssh_conn_lost(int rc)
{
	return rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
	       rc == LIBSSH2_ERROR_SOCKET_RECV ||
	       rc == LIBSSH2_ERROR_SOCKET_TIMEOUT ||
	       rc == LIBSSH2_ERROR_SOCKET_NONE || rc == LIBSSH2_ERROR_TIMEOUT;
}

const char *ferry__ssh_msg(LIBSSH2_SESSION *ssh)
{
	char *msg = NULL;
	if (ssh)
		libssh2_session_last_error(ssh, &msg, NULL, 0);
	return msg && *msg ? msg : "unknown libssh2 error";
}
