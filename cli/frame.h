/* frame.h - the holder protocol (ferry --persist): framed messages on a
 * unix stream socket between a ferry client and the holder process that
 * keeps the session.  A frame is a 4-byte big-endian payload length, one
 * type byte and the payload.  The client's RUN frame carries its stdin,
 * stdout and stderr as SCM_RIGHTS, so the command's output reaches the
 * client's own terminal or pipe directly. */
#ifndef FERRY_CLI_FRAME_H
#define FERRY_CLI_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
	/* client -> holder */
	FR_RUN = 'R',    /* tagged strings (below) + fds 0, 1, 2 */
	FR_INTR = 'I',   /* Ctrl-C: interrupt my command */
	FR_STATUS = 'S', /* what are you (an INFO reply) */
	FR_STOP = 'K',   /* exit after the running command */
	/* holder -> client */
	FR_QUEUED = 'Q', /* the request is in the FIFO (payload: holder pid) */
	FR_START = 'A',  /* it runs now: from here it is not retried */
	FR_EXIT = 'X',   /* the exit status, decimal */
	FR_INFO = 'T',   /* a status line */
	FR_REFUSE = 'E'  /* not run (a reason): the client connects directly */
};

/* RUN payload: NUL-terminated strings, each starting with its tag: 'C' the
 * cwd, 'E' NAME=value of the environment the command reads, 'P' the
 * --persist seconds, 'A' one argv element (argv[0] the subcommand). */

#define FR_MAX_PAYLOAD (1u << 20)
#define FR_MAX_FDS     3

/* Monotonic milliseconds. */
int64_t fr_now_ms(void);
/* One frame, with fds (nfds 0..FR_MAX_FDS) as SCM_RIGHTS.  0, or -1 with
 * errno.  Never raises SIGPIPE. */
int fr_send(int sock, int type, const void *payload, size_t len, const int *fds,
            int nfds);
/* One frame before deadline (absolute fr_now_ms(), 0: none): *payload is
 * a new NUL-terminated buffer (free it), fds received go to fds (at most
 * FR_MAX_FDS, *nfds set; extra ones closed).  0; -1 with errno (EPIPE at
 * end of stream, ETIMEDOUT, EPROTO for a malformed frame). */
int fr_recv(int sock, int *type, char **payload, size_t *len, int *fds,
            int *nfds, int64_t deadline);

#endif
