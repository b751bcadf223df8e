/*
 * relay - a TCP relay on 127.0.0.1 that simulates a network round trip
 * without kernel support (no netem here).
 *
 *   relay -t TARGET_PORT -r RTT_MS [-l LISTEN_PORT] [-P PORT_FILE] [-n]
 *
 * Every byte read from one side is written to the other side RTT/2 later;
 * each direction is a FIFO of timestamped chunks, so order is kept and the
 * delay does not depend on the size of a write.  One poll loop,
 * non-blocking sockets, TCP_NODELAY on both sides, any number of
 * connections.
 *
 * The TCP handshake is modelled too (unless -n): a real connect costs one
 * round trip before the client may send, and the server only sees the
 * connection after the final ACK, 1.5 round trips after the SYN.  The relay
 * accepts at once but connects to the target 1.5 RTT later, so the first
 * byte a server sends on accept (sshd's banner) reaches the client 2 RTT
 * after the connect began, and the client's first bytes reach the server at
 * 1.5 RTT, as over a link with that round trip.  Only the connect() call
 * itself returns early.
 *
 * A direction holds at most 16 MiB in flight; beyond that the relay stops
 * reading that side (TCP backpressure), like a bounded path.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define CHUNK_MAX 65536
#define QUEUE_CAP (16u << 20)

struct chunk {
	struct chunk *next;
	int64_t due_ns;
	size_t len, off;
	int eof;
	unsigned char data[];
};

struct flow {
	struct chunk *head, *tail;
	size_t queued;
	int eof_read; /* the source said EOF (or failed): nothing more */
	int shut;     /* EOF passed on with shutdown(SHUT_WR) */
	int blocked;  /* the last write got EAGAIN */
};

enum { S_WAIT, S_CONNECTING, S_OPEN };

struct conn {
	int cfd, sfd, state;
	int64_t connect_ns;
	struct flow up, down; /* up: client to server */
};

static int64_t half_ns, handshake_ns;
static int target_port;
static struct conn **conns;
static size_t nconns, capconns;
static unsigned long long stat_conns, stat_up, stat_down;
static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void tune(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static int push_chunk(struct flow *f, const void *data, size_t len, int eof,
                      int64_t due)
{
	struct chunk *c = malloc(sizeof(*c) + len);
	if (!c)
		return -1;
	c->next = NULL;
	c->due_ns = due;
	c->len = len;
	c->off = 0;
	c->eof = eof;
	if (len)
		memcpy(c->data, data, len);
	if (f->tail)
		f->tail->next = c;
	else
		f->head = c;
	f->tail = c;
	f->queued += len;
	return 0;
}

static void free_flow(struct flow *f)
{
	struct chunk *c = f->head;
	while (c) {
		struct chunk *n = c->next;
		free(c);
		c = n;
	}
	f->head = f->tail = NULL;
}

static void conn_close(size_t i)
{
	struct conn *c = conns[i];
	if (c->cfd >= 0)
		close(c->cfd);
	if (c->sfd >= 0)
		close(c->sfd);
	free_flow(&c->up);
	free_flow(&c->down);
	free(c);
	conns[i] = conns[--nconns];
}

/* Read what fd has into flow f, stamped now + RTT/2.  Returns -1 when the
 * connection must be dropped. */
static int pump_in(int fd, struct flow *f, int64_t now, unsigned long long *ctr)
{
	unsigned char buf[CHUNK_MAX];
	while (!f->eof_read && f->queued < QUEUE_CAP) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n > 0) {
			if (push_chunk(f, buf, (size_t)n, 0, now + half_ns) !=
			    0)
				return -1;
			*ctr += (unsigned long long)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		/* EOF, or a reset: pass an EOF on after the same delay. */
		f->eof_read = 1;
		return push_chunk(f, NULL, 0, 1, now + half_ns);
	}
	return 0;
}

/* Write the chunks of f that are due.  Returns -1 on a write error. */
static int pump_out(int fd, struct flow *f, int64_t now)
{
	f->blocked = 0;
	while (f->head && f->head->due_ns <= now) {
		struct chunk *c = f->head;
		if (c->eof) {
			shutdown(fd, SHUT_WR);
			f->shut = 1;
		} else {
			while (c->off < c->len) {
				ssize_t n = send(fd, c->data + c->off,
				                 c->len - c->off, MSG_NOSIGNAL);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0 &&
				    (errno == EAGAIN || errno == EWOULDBLOCK)) {
					f->blocked = 1;
					return 0;
				}
				if (n < 0)
					return -1;
				c->off += (size_t)n;
				f->queued -= (size_t)n;
			}
		}
		f->head = c->next;
		if (!f->head)
			f->tail = NULL;
		free(c);
	}
	return 0;
}

static int start_connect(struct conn *c)
{
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)target_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->sfd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->sfd < 0)
		return -1;
	tune(c->sfd);
	if (connect(c->sfd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		c->state = S_OPEN;
		return 0;
	}
	if (errno == EINPROGRESS) {
		c->state = S_CONNECTING;
		return 0;
	}
	return -1;
}

static void accept_all(int lfd, int64_t now)
{
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			return;
		tune(fd);
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		if (nconns == capconns) {
			size_t nc = capconns ? capconns * 2 : 64;
			struct conn **v = realloc(conns, nc * sizeof(*v));
			if (!v) {
				close(fd);
				free(c);
				continue;
			}
			conns = v;
			capconns = nc;
		}
		c->cfd = fd;
		c->sfd = -1;
		c->state = S_WAIT;
		c->connect_ns = now + handshake_ns;
		conns[nconns++] = c;
		stat_conns++;
	}
}

/* Advance one connection; returns -1 when it is finished or broken. */
static int step(struct conn *c, int64_t now)
{
	if (c->state == S_WAIT && now >= c->connect_ns && start_connect(c) != 0)
		return -1;
	if (c->state == S_OPEN) {
		if (pump_out(c->sfd, &c->up, now) != 0 ||
		    pump_out(c->cfd, &c->down, now) != 0)
			return -1;
	}
	if (c->up.shut && c->down.shut)
		return -1;
	return 0;
}

static int64_t next_due(const struct conn *c)
{
	int64_t t = INT64_MAX;
	if (c->state == S_WAIT)
		return c->connect_ns;
	if (c->state != S_OPEN)
		return t;
	if (c->up.head && !c->up.blocked && c->up.head->due_ns < t)
		t = c->up.head->due_ns;
	if (c->down.head && !c->down.blocked && c->down.head->due_ns < t)
		t = c->down.head->due_ns;
	return t;
}

static void usage(void)
{
	fprintf(stderr, "usage: relay -t TARGET_PORT -r RTT_MS "
	                "[-l LISTEN_PORT] [-P PORT_FILE] [-n]\n");
	exit(2);
}

static long num(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < 0 || v > 100000)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	long rtt_us = -1, listen_port = 0;
	const char *port_file = NULL;
	int model_handshake = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n")) {
			model_handshake = 0;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "-t"))
			target_port = (int)num(argv[++i]);
		else if (!strcmp(argv[i], "-r")) {
			/* milliseconds, fractions allowed */
			char *end;
			double ms = strtod(argv[++i], &end);
			if (*end || ms < 0 || ms > 100000)
				usage();
			rtt_us = (long)(ms * 1000.0 + 0.5);
		} else if (!strcmp(argv[i], "-l"))
			listen_port = num(argv[++i]);
		else if (!strcmp(argv[i], "-P"))
			port_file = argv[++i];
		else
			usage();
	}
	if (target_port <= 0 || rtt_us < 0)
		usage();
	half_ns = (int64_t)rtt_us * 500;
	handshake_ns = model_handshake ? (int64_t)rtt_us * 1500 : 0;
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0,
	      0); /* wake on time, not 50 us late */

	struct sockaddr_in sa;
	int lfd = listen_tcp((struct in_addr){htonl(INADDR_LOOPBACK)},
	                     listen_port, 512, &sa, "relay: listen");
	if (lfd < 0)
		return 1;
	tune(lfd);
	if (port_file) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%d\n", ntohs(sa.sin_port)) < 0 ||
		    fclose(f) != 0 || rename(tmp, port_file) != 0) {
			perror("relay: port file");
			return 1;
		}
	} else {
		printf("%d\n", ntohs(sa.sin_port));
		fflush(stdout);
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);

	struct pollfd *pfd = NULL;
	size_t cappfd = 0;
	while (!stop_flag) {
		int64_t now = now_ns();
		int64_t wake = INT64_MAX;
		for (size_t i = 0; i < nconns;) {
			if (step(conns[i], now) != 0) {
				conn_close(i);
				continue;
			}
			int64_t t = next_due(conns[i]);
			if (t < wake)
				wake = t;
			i++;
		}
		if (cappfd < 1 + 2 * nconns) {
			cappfd = 2 * (1 + 2 * nconns);
			struct pollfd *np = realloc(pfd, cappfd * sizeof(*pfd));
			if (!np) {
				perror("relay: realloc");
				return 1;
			}
			pfd = np;
		}
		size_t np = 0;
		pfd[np++] = (struct pollfd){lfd, POLLIN, 0};
		for (size_t i = 0; i < nconns; i++) {
			struct conn *c = conns[i];
			short ce = 0, se = 0;
			if (!c->up.eof_read && c->up.queued < QUEUE_CAP)
				ce |= POLLIN;
			if (c->down.blocked)
				ce |= POLLOUT;
			if (c->state == S_CONNECTING)
				se |= POLLOUT;
			if (c->state == S_OPEN) {
				if (!c->down.eof_read &&
				    c->down.queued < QUEUE_CAP)
					se |= POLLIN;
				if (c->up.blocked)
					se |= POLLOUT;
			}
			/* A negative fd is skipped: no busy loop on a POLLHUP
			 * that is reported even when nothing was asked. */
			pfd[np++] = (struct pollfd){ce ? c->cfd : -1, ce, 0};
			pfd[np++] = (struct pollfd){se ? c->sfd : -1, se, 0};
		}
		struct timespec ts, *tsp = wake_timeout(wake, &ts);
		int r = ppoll(pfd, (nfds_t)np, tsp, NULL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("relay: poll");
			return 1;
		}
		now = now_ns();
		if (pfd[0].revents & POLLIN)
			accept_all(lfd, now);
		/* conns[] only grew at its end, so pfd indexes still match. */
		size_t n0 = (np - 1) / 2;
		for (size_t i = n0; i-- > 0;) {
			struct conn *c = conns[i];
			short cr = pfd[1 + 2 * i].revents,
			      sr = pfd[2 + 2 * i].revents;
			int bad = 0;
			if (c->state == S_CONNECTING && sr) {
				int err = 0;
				socklen_t el = sizeof(err);
				getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err,
				           &el);
				if (err)
					bad = 1;
				else
					c->state = S_OPEN;
				sr = 0;
			}
			if (!bad && (cr & (POLLIN | POLLHUP | POLLERR)))
				bad = pump_in(c->cfd, &c->up, now, &stat_up);
			if (!bad && (sr & (POLLIN | POLLHUP | POLLERR)))
				bad = pump_in(c->sfd, &c->down, now,
				              &stat_down);
			if (bad)
				conn_close(i);
		}
	}
	fprintf(stderr, "relay: %llu connections, %llu bytes up, %llu down\n",
	        stat_conns, stat_up, stat_down);
	return 0;
}
