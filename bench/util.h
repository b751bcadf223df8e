/* util.h - what the bench's small programs (relay, wire, rttprobe) share:
 * the clock, a sleep deadline for ppoll, a loopback listener. Header-only:
 * each bench program is one .c file. */
#ifndef FERRY_BENCH_UTIL_H
#define FERRY_BENCH_UTIL_H

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

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

#endif
