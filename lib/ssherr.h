/* ssherr.h - what a libssh2 result means to ferry: the one place that
 * decides which errors are "not now", which mean the connection is gone,
 * and the text that goes with the last one. */
#ifndef FERRY_SSHERR_H
#define FERRY_SSHERR_H

#include <libssh2.h>

/* "Not now" rather than failure: EAGAIN, and in libssh2 1.10 BAD_USE /
 * SOCKET_SEND, which a send (or the window adjust inside a read) gets
 * while another channel's packet is only partly written.  A dead socket
 * is noticed by reads and by poll. */
int ferry__ssh_transient(int rc);
/* The connection itself is gone (or not answering): every channel and the
 * session with it.  SOCKET_SEND is not among them (see transient); where
 * nothing else shares the socket (authentication) a caller counts it. */
int ferry__ssh_conn_lost(int rc);
/* libssh2's text for the session's last error, never NULL. */
const char *ferry__ssh_msg(LIBSSH2_SESSION *ssh);

#endif
