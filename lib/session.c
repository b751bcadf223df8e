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

/* This thread's call on a session (calls on one session nest; a thread
 * is in a call on one session at a time), and the last error this
 * thread got from a session: with several threads on a session each
 * reads its own. */
static _Thread_local struct {
	const ferry_session *s;
	unsigned gen;             /* intr_gen when the call began or took one */
	const volatile int *stop; /* the call's own stop flag, or NULL */
	int stop_taken;           /* ... seen once: it acted as an interrupt */
	int depth;
	uint64_t err_id; /* the session's id: an address may be reused */
	char errmsg[FERRY_ERRMSG_SIZE];
} tl_call;

static int in_call(const ferry_session *s)
{
	return s && tl_call.s == s && tl_call.depth > 0;
}

int ferry__seterr(ferry_session *s, int code, const char *fmt, ...)
{
	if (!s)
		return code;
	char msg[FERRY_ERRMSG_SIZE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(s->errmsg, msg, sizeof(s->errmsg));
	if (in_call(s)) {
		memcpy(tl_call.errmsg, msg, sizeof(tl_call.errmsg));
		tl_call.err_id = s->id;
	} else if (tl_call.err_id == s->id) {
		tl_call.err_id = 0; /* the session's own message is newer */
	}
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
	if (tl_call.err_id == s->id && tl_call.errmsg[0])
		return tl_call.errmsg;
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
	atomic_fetch_add(&s->intr_gen, 1);
	if (s->intr_pipe[1] >= 0) {
		ssize_t r = write(s->intr_pipe[1], "i", 1);
		(void)r;
	}
	errno = saved;
}

static void wake_driver(ferry_session *s);

void ferry_session_wake(ferry_session *s)
{
	if (!s)
		return;
	int saved = errno;
	wake_driver(s);
	errno = saved;
}

int ferry__session_interrupt_pending(const ferry_session *s)
{
	return in_call(s) &&
	       (atomic_load(&s->intr_gen) != tl_call.gen ||
	        (tl_call.stop && *tl_call.stop && !tl_call.stop_taken));
}

int ferry__session_take_interrupt(ferry_session *s)
{
	if (!ferry__session_interrupt_pending(s))
		return 0;
	/* Taken once, as an interrupt is: what the call does to stop
	 * cleanly (the replies in flight, its temporaries) may still wait. */
	tl_call.gen = atomic_load(&s->intr_gen);
	if (tl_call.stop && *tl_call.stop)
		tl_call.stop_taken = 1;
	return 1;
}

void ferry__session_call_stop(const ferry_session *s, const volatile int *stop)
{
	if (in_call(s)) {
		tl_call.stop = stop;
		tl_call.stop_taken = 0;
	}
}

/* The driver's poll wakes: another thread has work for the loop, or an
 * interrupt came. */
static void wake_driver(ferry_session *s)
{
	if (s->intr_pipe[1] >= 0) {
		ssize_t r = write(s->intr_pipe[1], "w", 1);
		(void)r;
	}
}

static void drain_wakes(ferry_session *s)
{
	char buf[64];
	while (s->intr_pipe[0] >= 0 &&
	       read(s->intr_pipe[0], buf, sizeof(buf)) > 0)
		;
}

void ferry__session_call_begin(ferry_session *s)
{
	if (in_call(s)) {
		tl_call.depth++;
		return;
	}
	pthread_mutex_lock(&s->mu);
	tl_call.s = s;
	tl_call.depth = 1;
	/* An interrupt sent before the call began is not the call's. */
	tl_call.gen = atomic_load(&s->intr_gen);
	s->ncalls++;
	/* Opted in: a lost connection (known, or seen on the socket now, no
	 * round trip) is made again before the call. */
	if (s->opts.reconnect && s->ncalls == 1 && (s->ssh || s->dead) &&
	    (s->dead || ferry_session_alive(s)))
		(void)ferry__session_reconnect_locked(s);
}

static int run_pass(ferry_session *s);

void ferry__session_call_end(ferry_session *s)
{
	if (!in_call(s))
		return;
	if (--tl_call.depth)
		return;
	/* What is already in the socket moves the background work on (a
	 * spare channel's open, its reader's request) before the caller goes
	 * idle: a few passes that never wait (the session is ours: a driver
	 * elsewhere is in poll, outside libssh2). */
	int moved = 0;
	for (int i = 0; i < 4 && !s->dead && s->ssh && run_pass(s); i++)
		moved = 1;
	if (moved)
		pthread_cond_broadcast(&s->cv);
	s->ncalls--;
	tl_call.s = NULL;
	tl_call.stop = NULL;
	tl_call.stop_taken = 0;
	pthread_mutex_unlock(&s->mu);
}

/* Wait on cv (the session released meanwhile) until deadline_ms (0:
 * a while); 0, or FERRY_ETIMEOUT once the deadline passed. */
static int wait_turn(ferry_session *s, int64_t deadline_ms)
{
	int64_t now = ferry__now_ms();
	if (deadline_ms && now >= deadline_ms)
		return FERRY_ETIMEOUT;
	int64_t until = deadline_ms ? deadline_ms : now + 1000;
	if (until > now + 1000)
		until = now + 1000;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ms = until - now;
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	return 0;
}

int ferry__session_sftp_turn_begin(ferry_session *s)
{
	while (in_call(s) && s->sftp_busy) {
		if (ferry__session_take_interrupt(s))
			return ferry__seterr(s, FERRY_EINTR, "interrupted");
		wait_turn(s, 0);
	}
	s->sftp_busy = 1;
	return 0;
}

void ferry__session_sftp_turn_end(ferry_session *s)
{
	s->sftp_busy = 0;
	if (in_call(s))
		pthread_cond_broadcast(&s->cv);
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
		int n = poll(p, 2, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ferry__seterr(s, FERRY_EIO, "poll: %s",
			                     strerror(errno));
		if (n == 0)
			continue; /* re-check the deadline */
		if (p[1].revents) {
			/* An interrupt (checked above, next turn) or another
			 * thread's work: the loop looks again. */
			drain_wakes(s);
			*revents = p[0].revents;
			return 0;
		}
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

void ferry__channel_startup_pass(ferry_session *s, const void *from,
                                 const void *to)
{
	if (s->startup_owner && s->startup_owner == from)
		s->startup_owner = to;
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

/* The loop, driven by this thread until done (held: the calling
 * thread's call holds the session, which is let go while it polls). */
static int drive(ferry_session *s, int (*done)(void *ctx), void *ctx,
                 int64_t deadline_ms, unsigned flags, int held)
{
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
			if (held)
				pthread_cond_broadcast(&s->cv);
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
		if (held)
			pthread_mutex_unlock(&s->mu);
		int rc = ferry__session_wait_fd(s, s->fd, ev, until, flags,
		                                &rev);
		if (held)
			pthread_mutex_lock(&s->mu);
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

int ferry__session_run(ferry_session *s, int (*done)(void *ctx), void *ctx,
                       int64_t deadline_ms, unsigned flags)
{
	int held = in_call(s), woke = 0;
	for (;;) {
		if (s->dead)
			return ferry__seterr(s, FERRY_ECONN,
			                     "the connection to %s was lost "
			                     "earlier",
			                     s->target);
		if (done(ctx))
			return 0;
		if (!held || !s->driving ||
		    pthread_equal(s->driver, pthread_self()))
			break;
		/* Another thread drives: it steps our work too, and says
		 * when anything moved. */
		if (!(flags & FERRY__RUN_NOINTR) &&
		    ferry__session_take_interrupt(s))
			return ferry__seterr(s, FERRY_EINTR, "interrupted");
		if (!woke) {
			wake_driver(s);
			woke = 1;
		}
		if (wait_turn(s, deadline_ms))
			return ferry__seterr(s, FERRY_ETIMEOUT, "timed out");
	}
	int was = s->driving;
	pthread_t prev = s->driver;
	s->driving = 1;
	s->driver = pthread_self();
	int rc = drive(s, done, ctx, deadline_ms, flags, held);
	s->driving = was;
	s->driver = prev;
	if (held)
		pthread_cond_broadcast(&s->cv);
	return rc;
}

int ferry_session_info_get_v(ferry_session_info *out, unsigned int version,
                             const ferry_session *s)
{
	size_t n = ferry_struct_size(FERRY_STRUCT_SESSION_INFO, version);
	if (!out || !s || !version || !n)
		return FERRY_EINVALID;
	memcpy(out, &s->info, n);
	return 0;
}

/* The function under the macro: programs built before version 2. */
int(ferry_session_info_get)(ferry_session_info *out, const ferry_session *s)
{
	return ferry_session_info_get_v(out, 1, s);
}

void ferry__session_learn_home(ferry_session *s, const char *path, size_t len)
{
	if (s->home || !len || path[0] != '/' || memchr(path, '\0', len))
		return;
	if ((s->home = ferry__strndup(path, len)))
		s->info.home = s->home;
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
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	ferry__sshcfg_free(&s->sshcfg);
	ferry__free(s->home);
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

void ferry__session_set_reset(ferry_session *s, ferry__slot slot,
                              void (*reset_fn)(void *))
{
	s->state_reset[slot] = reset_fn;
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

uint64_t ferry__session_round_trips(const ferry_session *s)
{
	return s->round_trips;
}

struct ferry__sftp *ferry__session_sftp_peek(const ferry_session *s)
{
	return s->sftp;
}
