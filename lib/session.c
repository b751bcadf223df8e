/* session.c - one SSH connection: connect, handshake, host key, auth, and
 * the event loop every channel of the session runs in. */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"

int ferry__seterr(ferry_session *s, int code, const char *fmt, ...)
{
	if (!s)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

int ferry__seterr_ssh(ferry_session *s, int code, const char *step)
{
	char *msg = NULL;
	int rc = s->ssh ? libssh2_session_last_error(s->ssh, &msg, NULL, 0) : 0;
	if (msg && *msg)
		return ferry__seterr(s, code, "%s: %s (libssh2 error %d)", step,
		                     msg, rc);
	return ferry__seterr(s, code, "%s failed", step);
}

void ferry__log(ferry_session *s, int level, const char *fmt, ...)
{
	if (!s || !s->log)
		return;
	char msg[FERRY_ERRMSG_SIZE];
	FERRY__FORMAT(msg, fmt);
	s->log(s->log_ctx, level, msg);
}

const char *ferry_session_errmsg(const ferry_session *s)
{
	if (!s)
		return "no session";
	return s->errmsg[0] ? s->errmsg : "no error";
}

uint64_t ferry_session_round_trips(const ferry_session *s)
{
	return s ? s->round_trips : 0;
}

void ferry_interrupt(ferry_session *s)
{
	if (!s)
		return;
	int saved = errno;
	atomic_store(&s->interrupted, 1);
	if (s->intr_pipe[1] >= 0) {
		ssize_t r = write(s->intr_pipe[1], "i", 1);
		(void)r;
	}
	errno = saved;
}

int ferry__session_take_interrupt(ferry_session *s)
{
	if (!atomic_exchange(&s->interrupted, 0))
		return 0;
	char buf[64];
	while (read(s->intr_pipe[0], buf, sizeof(buf)) > 0)
		;
	return 1;
}

void ferry__session_call_begin(ferry_session *s)
{
	if (atomic_fetch_add(&s->calls, 1) == 0)
		(void)ferry__session_take_interrupt(s); /* sent while idle */
}

void ferry__session_call_end(ferry_session *s)
{
	if (atomic_fetch_sub(&s->calls, 1) == 1)
		(void)ferry__session_take_interrupt(s); /* came too late */
}

/* ---- waiting ----------------------------------------------------------- */

int ferry__session_wait_fd(ferry_session *s, int fd, short events,
                           int64_t deadline, unsigned flags, short *revents)
{
	struct pollfd p[2] = {{.fd = fd, .events = events},
	                      {.fd = s->intr_pipe[0], .events = POLLIN}};
	for (;;) {
		if (!(flags & FERRY__RUN_NOINTR) &&
		    ferry__session_take_interrupt(s))
			return ferry__seterr(s, FERRY_EINTR, "interrupted");
		int timeout = -1;
		if (deadline) {
			int64_t left = deadline - ferry__now_ms();
			if (left <= 0)
				return FERRY_ETIMEOUT;
			timeout = left > 60000 ? 60000 : (int)left;
		}
		int n = poll(p, (flags & FERRY__RUN_NOINTR) ? 1 : 2, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ferry__seterr(s, FERRY_EIO, "poll: %s",
			                     strerror(errno));
		if (n == 0)
			continue; /* re-check the deadline */
		if (p[0].revents) {
			*revents = p[0].revents;
			return 0;
		}
	}
}

int ferry__session_wait(ferry_session *s, int64_t deadline_ms, unsigned flags)
{
	int dir = libssh2_session_block_directions(s->ssh);
	short ev = 0;
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND || !dir)
		ev |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		ev |= POLLOUT;
	/* Without it sshd's reply waits for our delayed ACK (~40 ms). */
	int one = 1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	short rev = 0;
	int rc = ferry__session_wait_fd(s, s->fd, ev, deadline_ms, flags, &rev);
	if (!rc && (rev & POLLIN))
		s->last_rx_ms = ferry__now_ms();
	return rc;
}

/* The last number in a /proc/sys file (tcp_wmem's maximum, wmem_max), or
 * 0. */
static long sysctl_last(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = 0, last = 0;
	if (!f)
		return 0;
	while (fscanf(f, "%ld", &v) == 1)
		last = v;
	fclose(f);
	return last;
}

int ferry__session_grow_sndbuf(ferry_session *s, int bytes)
{
	if (s->fd < 0 || bytes <= 0)
		return 0;
	long autotune = sysctl_last("/proc/sys/net/ipv4/tcp_wmem");
	long cap = 2 * sysctl_last("/proc/sys/net/core/wmem_max");
	if (cap > bytes)
		cap = bytes;
	int cur = 0;
	socklen_t len = sizeof(cur);
	/* A fixed size only where it beats autotuning's maximum. */
	if (autotune <= 0 || cap <= autotune ||
	    getsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &cur, &len) || cur >= cap)
		return 0;
	/* The kernel doubles what it is given (bookkeeping) and caps it. */
	int ask = (int)(cap / 2);
	if (setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &ask, sizeof(ask)))
		return 0;
	len = sizeof(cur);
	if (getsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &cur, &len))
		cur = 0;
	ferry__log(s, FERRY_LOG_DEBUG, "socket send buffer: %d bytes", cur);
	return 1;
}

/* ---- the event loop ---------------------------------------------------- */

void ferry__io_add(ferry_session *s, ferry__io *io)
{
	if (io->registered)
		return;
	io->prev = NULL;
	io->next = s->ios;
	if (s->ios)
		s->ios->prev = io;
	s->ios = io;
	io->registered = 1;
}

void ferry__io_remove(ferry_session *s, ferry__io *io)
{
	/* Whatever turn the io held is given up with it. */
	if (s->open_owner == io)
		s->open_owner = NULL;
	if (s->startup_owner == io)
		s->startup_owner = NULL;
	if (!io->registered)
		return;
	if (io->prev)
		io->prev->next = io->next;
	else
		s->ios = io->next;
	if (io->next)
		io->next->prev = io->prev;
	io->prev = io->next = NULL;
	io->registered = 0;
}

LIBSSH2_CHANNEL *ferry__channel_open(ferry_session *s, const void *owner,
                                     unsigned window, unsigned packet, int *err)
{
	if (s->open_owner && s->open_owner != owner) {
		*err = LIBSSH2_ERROR_EAGAIN;
		return NULL;
	}
	s->open_owner = owner;
	LIBSSH2_CHANNEL *ch = libssh2_channel_open_ex(s->ssh, "session", 7,
	                                              window, packet, NULL, 0);
	*err = ch ? 0 : libssh2_session_last_errno(s->ssh);
	if (*err != LIBSSH2_ERROR_EAGAIN)
		s->open_owner = NULL;
	return ch;
}

int ferry__channel_startup(ferry_session *s, const void *owner,
                           LIBSSH2_CHANNEL *ch, const char *req,
                           const char *msg, unsigned msg_len)
{
	if (s->startup_owner && s->startup_owner != owner)
		return FERRY__BUSY;
	s->startup_owner = owner;
	int rc = libssh2_channel_process_startup(ch, req, (unsigned)strlen(req),
	                                         msg, msg_len);
	if (rc != LIBSSH2_ERROR_EAGAIN)
		s->startup_owner = NULL;
	return rc;
}

/* One pass over the ios; a list changed by a step restarts the pass. */
static int run_pass(ferry_session *s)
{
	int progress = 0;
	ferry__io *io = s->ios;
	while (io) {
		ferry__io *next = io->next;
		if (io->step(io) > 0)
			progress = 1;
		/* io may have been removed (and freed) by its step: the saved
		 * next is still registered unless it went too. */
		if (next && !next->registered)
			break;
		io = next;
	}
	return progress;
}

/* 1 when some io has input queued; *opaque when one waits inside an opaque
 * libssh2 state machine; *timer the earliest io deadline (0: none). */
static int ios_pending(ferry_session *s, int *opaque, int64_t *timer)
{
	int pending = 0;
	for (ferry__io *io = s->ios; io; io = io->next) {
		int r = io->pending ? io->pending(io) : 0;
		if (r > 0)
			pending = 1;
		else if (r < 0)
			*opaque = 1;
		int64_t t = io->next_timer ? io->next_timer(io) : 0;
		if (t && (!*timer || t < *timer))
			*timer = t;
	}
	return pending;
}

/* The earliest time the loop must wake for itself (0: none): an opaque
 * wait's short poll, an io's timer, the keepalive, the idle timeout. */
static int64_t wake_cap(const ferry_session *s, int64_t now, int opaque,
                        int64_t timer, int64_t next_keepalive)
{
	int64_t cap = opaque ? now + 1 : 0;
	if (timer && (!cap || timer < cap))
		cap = timer > now ? timer : now;
	if (s->keepalive_s > 0 && (!cap || next_keepalive < cap))
		cap = next_keepalive;
	if (s->idle_timeout_ms > 0) {
		int64_t idle_at = s->last_rx_ms + s->idle_timeout_ms + 1;
		if (!cap || idle_at < cap)
			cap = idle_at;
	}
	return cap;
}

int ferry__session_run(ferry_session *s, int (*done)(void *ctx), void *ctx,
                       int64_t deadline_ms, unsigned flags)
{
	if (s->dead)
		return ferry__seterr(s, FERRY_ECONN,
		                     "the connection to %s was lost earlier",
		                     s->target);
	s->last_rx_ms = ferry__now_ms();
	int64_t next_keepalive = 0;
	for (;;) {
		if (done(ctx))
			return 0;
		/* Progress is life: a busy loop reads the socket in its passes
		 * and may not reach the poll (whose POLLIN is the other sign)
		 * for longer than the idle timeout (issue 19: a loaded server
		 * taken for a dead one). */
		if (run_pass(s)) {
			s->last_rx_ms = ferry__now_ms();
			continue;
		}
		if (done(ctx))
			return 0;
		int opaque = 0;
		int64_t timer = 0;
		if (ios_pending(s, &opaque, &timer)) {
			s->last_rx_ms = ferry__now_ms();
			continue;
		}

		int64_t now = ferry__now_ms();
		if (s->keepalive_s > 0 && now >= next_keepalive) {
			int secs = s->keepalive_s;
			if (libssh2_keepalive_send(s->ssh, &secs) == 0)
				next_keepalive =
				        now + (secs > 0 ? secs : 1) * 1000;
		}
		if (s->idle_timeout_ms > 0 &&
		    now - s->last_rx_ms > s->idle_timeout_ms) {
			s->dead = 1;
			return ferry__seterr(s, FERRY_ETIMEOUT,
			                     "no data from %s for %d s: "
			                     "connection presumed dead",
			                     s->target,
			                     s->idle_timeout_ms / 1000);
		}
		int64_t until = deadline_ms;
		int64_t cap = wake_cap(s, now, opaque, timer, next_keepalive);
		int capped = 0;
		if (cap && (!until || cap < until)) {
			until = cap;
			capped = 1;
		}
		int dir = libssh2_session_block_directions(s->ssh);
		short ev = POLLIN;
		if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			ev |= POLLOUT;
		short rev = 0;
		int one = 1;
		setsockopt(s->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		int rc = ferry__session_wait_fd(s, s->fd, ev, until, flags,
		                                &rev);
		if (rc == FERRY_ETIMEOUT && capped)
			continue;
		if (rc == FERRY_ETIMEOUT)
			return ferry__seterr(s, FERRY_ETIMEOUT, "timed out");
		if (rc)
			return rc;
		if (rev & POLLIN)
			s->last_rx_ms = ferry__now_ms();
		if ((rev & (POLLERR | POLLHUP | POLLNVAL)) && !(rev & POLLIN)) {
			if (!run_pass(s) && !done(ctx)) {
				s->dead = 1;
				return ferry__seterr(s, FERRY_EEOF,
				                     "connection to %s closed",
				                     s->target);
			}
		}
	}
}

int ferry_session_info_get(ferry_session_info *out, const ferry_session *s)
{
	if (!out || !s)
		return FERRY_EINVALID;
	*out = s->info;
	return 0;
}

void ferry_session_close(ferry_session *s)
{
	if (!s)
		return;
	for (int i = 0; i < FERRY__SLOT_COUNT; i++)
		if (s->state_free[i] && s->state[i])
			s->state_free[i](s->state[i]);
	if (s->streams_free && s->streams)
		s->streams_free(s->streams);
	if (s->sftp_free && s->sftp)
		s->sftp_free(s->sftp);
	if (s->ssh) {
		/* Bounded: a dead peer must not hang close. */
		libssh2_session_set_timeout(s->ssh, 1000);
		libssh2_session_set_blocking(s->ssh, 1);
		if (!s->dead)
			libssh2_session_disconnect(s->ssh, "ferry: bye");
		libssh2_session_free(s->ssh);
	}
	if (s->fd >= 0)
		close(s->fd);
	if (s->intr_pipe[0] >= 0)
		close(s->intr_pipe[0]);
	if (s->intr_pipe[1] >= 0)
		close(s->intr_pipe[1]);
	for (size_t i = 0;
	     i < sizeof(s->info_strings) / sizeof(s->info_strings[0]); i++)
		ferry__free(s->info_strings[i]);
	ferry__sshcfg_free(&s->sshcfg);
	ferry__free(s->host);
	ferry__free(s->user);
	ferry__free(s->target);
	ferry__free(s);
}

/* ---- accessors --------------------------------------------------------- */

void *ferry__session_state(const ferry_session *s, ferry__slot slot)
{
	return s->state[slot];
}

void ferry__session_set_state(ferry_session *s, ferry__slot slot, void *state,
                              void (*free_fn)(void *))
{
	s->state[slot] = state;
	s->state_free[slot] = free_fn;
}

LIBSSH2_SESSION *ferry__session_ssh(const ferry_session *s)
{
	return s->ssh;
}

const char *ferry__session_target(const ferry_session *s)
{
	return s->target;
}

const char *ferry__session_user(const ferry_session *s)
{
	return s->user;
}

const char *ferry__session_host(const ferry_session *s)
{
	return s->host;
}

int ferry__session_port(const ferry_session *s)
{
	return s->port;
}

int ferry_session_alive(const ferry_session *s)
{
	if (!s || s->dead || !s->ssh || s->fd < 0)
		return FERRY_ECONN;
	struct pollfd p = {.fd = s->fd, .events = POLLIN | POLLRDHUP};
	int n;
	while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
		;
	if (n < 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL | POLLRDHUP)))
		return FERRY_ECONN;
	if (p.revents & POLLIN) {
		/* Data or the end: an end reads as 0 (or a reset). */
		char c;
		ssize_t r = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN &&
		               errno != EWOULDBLOCK && errno != EINTR))
			return FERRY_ECONN;
	}
	return 0;
}

int ferry__session_dead(const ferry_session *s)
{
	return s->dead;
}

void ferry__session_mark_dead(ferry_session *s)
{
	s->dead = 1;
}

int ferry__session_interrupt_pending(const ferry_session *s)
{
	return atomic_load(&s->interrupted) != 0;
}

uint64_t ferry__session_round_trips(const ferry_session *s)
{
	return s->round_trips;
}

struct ferry__sftp *ferry__session_sftp_peek(const ferry_session *s)
{
	return s->sftp;
}
