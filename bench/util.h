/* util.h - what the bench's small programs (relay, wire, rttprobe, held,
 * stripe) share: the clock, a sleep deadline for ppoll, a loopback
 * listener, the connection flags. Header-only: each bench program is one
 * .c file. */
#ifndef FERRY_BENCH_UTIL_H
#define FERRY_BENCH_UTIL_H

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "ferry.h"

static inline int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ppoll's timeout for an absolute now_ns() wake time: NULL (none) when
 * wake is INT64_MAX, else ts filled with what is left (0 when past). */
static inline struct timespec *wake_timeout(int64_t wake, struct timespec *ts)
{
	if (wake == INT64_MAX)
		return NULL;
	int64_t d = wake - now_ns();
	if (d < 0)
		d = 0;
	ts->tv_sec = d / 1000000000;
	ts->tv_nsec = d % 1000000000;
	return ts;
}

/* A listening TCP socket on addr:port (port 0: any); *bound gets the
 * address it got.  -1 after perror(who). */
static inline int listen_tcp(struct in_addr addr, int port, int backlog,
                             struct sockaddr_in *bound, const char *who)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (lfd >= 0)
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr = addr;
	socklen_t sl = sizeof(sa);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, backlog) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
		perror(who);
		return -1;
	}
	*bound = sa;
	return lfd;
}

/* The connection flags of held and stripe (-h HOST -p PORT -i KEY
 * -k KNOWN_HOSTS -u USER) into o and *identity; 1 when flag is one. */
static inline int conn_flag(ferry_session_opts *o, const char **identity,
                            const char *flag, const char *val)
{
	if (!strcmp(flag, "-h"))
		o->host = val;
	else if (!strcmp(flag, "-p"))
		o->port = (int)strtol(val, NULL, 10);
	else if (!strcmp(flag, "-i"))
		*identity = val;
	else if (!strcmp(flag, "-k"))
		o->known_hosts = val;
	else if (!strcmp(flag, "-u"))
		o->user = val;
	else
		return 0;
	return 1;
}

#endif
