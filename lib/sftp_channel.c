/* sftp_channel.c - the production transport: a libssh2 channel with the
 * "sftp" subsystem on the session, driven by the session's event loop. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "session.h"
#include "sftp.h"
#include "sftp_int.h"

/* Our receive window: READ replies in flight (OpenSSH's own is 2 MiB). */
#define CHAN_WINDOW ((unsigned)8 << 20)
#define CHAN_PACKET 32768u

enum { CH_OPENING = 0, CH_STARTING, CH_OPEN };

typedef struct chan_tr {
	ferry__sftp_transport t;
	ferry__io io;
	ferry_session *s;
	LIBSSH2_CHANNEL *ch;
	int phase;
	int64_t eof_ms; /* when EOF was seen */
	/* The last write stopped at the peer's closed window.  The
	 * WINDOW_ADJUST that opens it may be consumed by any later read of
	 * libssh2 (this channel's or another's): then nothing more arrives
	 * until we write, so the loop must not wait in poll for it. */
	int window_wait;
	int closing;        /* the client died: the channel is being closed */
	char err_text[256]; /* what the server wrote on stderr */
	size_t err_len;
} chan_tr;

static chan_tr *chan_of(ferry__io *io)
{
	return (chan_tr *)(void *)((char *)io - offsetof(chan_tr, io));
}

static int drain_stderr(chan_tr *c)
{
	int progress = 0;
	char buf[1024];
	for (;;) {
		ssize_t n =
		        libssh2_channel_read_stderr(c->ch, buf, sizeof(buf));
		if (n <= 0)
			return progress;
		progress = 1;
		size_t keep = sizeof(c->err_text) - 1 - c->err_len;
		if ((size_t)n < keep)
			keep = (size_t)n;
		memcpy(c->err_text + c->err_len, buf, keep);
		c->err_len += keep;
	}
}

static ssize_t chan_send(ferry__sftp_transport *t, const void *p, size_t n)
{
	chan_tr *c = (chan_tr *)t;
	ssize_t w = libssh2_channel_write(c->ch, p, n);
	if (w >= 0 || ferry__ssh_transient((int)w))
		c->window_wait = (w < 0 || (size_t)w < n) &&
		                 libssh2_channel_window_write(c->ch) == 0;
	if (w < 0 && ferry__ssh_transient((int)w))
		return 0;
	if (w < 0)
		return ferry__sftp_seterr(t->sf, FERRY_ECONN,
		                          "SFTP: writing to the channel "
		                          "failed: %s (libssh2 error %d)",
		                          ferry__ssh_msg(c->s->ssh), (int)w);
	return w;
}

static ssize_t chan_recv(ferry__sftp_transport *t, void *p, size_t n)
{
	chan_tr *c = (chan_tr *)t;
	ssize_t r = libssh2_channel_read(c->ch, p, n);
	if (r > 0)
		return r;
	if ((r < 0 && ferry__ssh_transient((int)r)) ||
	    (r == 0 && !libssh2_channel_eof(c->ch)))
		return 0;
	if (r < 0)
		return ferry__sftp_seterr(t->sf, FERRY_ECONN,
		                          "SFTP: reading the channel failed: "
		                          "%s (libssh2 error %d)",
		                          ferry__ssh_msg(c->s->ssh), (int)r);
	/* EOF: wait (briefly) for the close, which brings the exit
	 * status that says why. */
	if (!c->eof_ms)
		c->eof_ms = ferry__now_ms();
	if (libssh2_channel_wait_closed(c->ch) == LIBSSH2_ERROR_EAGAIN &&
	    ferry__now_ms() - c->eof_ms < 1000)
		return 0;
	drain_stderr(c);
	char said[300] = "", status[40] = "";
	if (c->err_len)
		ferry__sftp_sanitize(said, sizeof(said),
		                     (const uint8_t *)c->err_text, c->err_len);
	/* 0 also means "not received": only a failure is worth saying. */
	int st = libssh2_channel_get_exit_status(c->ch);
	if (st)
		snprintf(status, sizeof(status), " (exit status %d)", st);
	return ferry__sftp_seterr(t->sf, FERRY_EEOF,
	                          "SFTP: the server closed the SFTP "
	                          "channel%s%s%s%s",
	                          status, said[0] ? " (it said: \"" : "", said,
	                          said[0] ? "\")" : "");
}

/* A dead client (an I/O timeout, a protocol error) gives its channel back
 * at once: sshd then closes the server's input, so nothing stays behind
 * waiting on it.  Non-blocking; tried again on later steps. */
static void chan_close(chan_tr *c)
{
	if (!c->ch || c->closing > 1 || c->s->dead)
		return;
	int rc = libssh2_channel_close(c->ch);
	c->closing = rc == LIBSSH2_ERROR_EAGAIN ? 1 : 2;
}

static int chan_step(ferry__io *io)
{
	chan_tr *c = chan_of(io);
	ferry__sftp *sf = c->t.sf;
	int rc;
	if (sf->dead) {
		if (c->phase == CH_OPEN)
			chan_close(c);
		return 0;
	}
	switch (c->phase) {
	case CH_OPENING:
		c->ch = ferry__channel_open(c->s, &c->io, CHAN_WINDOW,
		                            CHAN_PACKET, &rc);
		if (!c->ch) {
			if (ferry__ssh_transient(rc))
				return 0;
			ferry__sftp__die(sf, FERRY_ECONN,
			                 "SFTP init: opening a channel failed: "
			                 "%s",
			                 ferry__ssh_msg(c->s->ssh));
			return 1;
		}
		(*sf->rt)++; /* we waited for the confirmation */
		c->phase = CH_STARTING;
		return 1;
	case CH_STARTING:
		rc = ferry__channel_startup(c->s, &c->io, c->ch, "subsystem",
		                            "sftp", 4);
		if (rc == LIBSSH2_ERROR_EAGAIN || rc == FERRY__BUSY)
			return 0;
		if (rc == LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED) {
			ferry__sftp__die(sf, FERRY_EUNSUPPORTED,
			                 "SFTP init: the server refused the "
			                 "sftp subsystem");
			return 1;
		}
		if (rc) {
			ferry__sftp__die(sf, FERRY_ECONN,
			                 "SFTP init: starting the sftp "
			                 "subsystem failed: %s",
			                 ferry__ssh_msg(c->s->ssh));
			return 1;
		}
		(*sf->rt)++;
		c->phase = CH_OPEN;
		if ((rc = ferry__sftp_start(sf)))
			ferry__sftp__die(sf, rc, "SFTP init: %s",
			                 ferry_strerror(rc));
		return 1;
	default:
		rc = ferry__sftp_step(sf);
		if (sf->dead)
			chan_close(c);
		else if (drain_stderr(c))
			rc = 1;
		return rc;
	}
}

static int chan_pending(ferry__io *io)
{
	chan_tr *c = chan_of(io);
	ferry__sftp *sf = c->t.sf;
	if (sf->dead)
		return 0;
	if (c->phase != CH_OPEN)
		return -1; /* inside libssh2's channel open / request */
	if (ferry__sftp_next_timer(sf) || c->eof_ms)
		return -1; /* latency, or EOF's grace: wake up soon */
	if (c->window_wait && libssh2_channel_window_write(c->ch) > 0)
		return 1; /* the window opened: write now */
	if (ferry__sftp_kicked(sf))
		return 1; /* queued after our step: send it now */
	/* Data (either stream) libssh2 has read off the socket but we have
	 * not taken, or the end. */
	unsigned long avail = 0;
	libssh2_channel_window_read_ex(c->ch, &avail, NULL);
	if (avail > 0 || libssh2_channel_eof(c->ch))
		return 1;
	return 0;
}

static int64_t chan_next_timer(ferry__io *io)
{
	ferry__sftp *sf = chan_of(io)->t.sf;
	return sf ? ferry__sftp_io_deadline(sf) : 0;
}

static int chan_run(ferry__sftp_transport *t, int (*done)(void *ctx), void *ctx,
                    int64_t deadline_ms)
{
	chan_tr *c = (chan_tr *)t;
	int rc = ferry__session_run(c->s, done, ctx, deadline_ms, 0);
	if (rc && c->s->dead && !t->sf->dead) {
		char msg[sizeof(c->s->errmsg)];
		ferry__sftp__textcpy(msg, sizeof(msg), c->s->errmsg);
		ferry__sftp__die(t->sf, rc, "%s", msg);
	}
	return rc;
}

static void chan_free(ferry__sftp_transport *t)
{
	chan_tr *c = (chan_tr *)t;
	ferry__io_remove(c->s, &c->io);
	if (c->ch) {
		int64_t deadline = ferry__now_ms() + 1000;
		int rc;
		/* Bounded: a dead peer must not hang the close.  A channel
		 * left behind is freed with the libssh2 session. */
		while ((rc = libssh2_channel_free(c->ch)) ==
		               LIBSSH2_ERROR_EAGAIN &&
		       !c->s->dead) {
			if (ferry__session_wait(c->s, deadline,
			                        FERRY__RUN_NOINTR))
				break;
		}
	}
	ferry__free(c);
}

static void sftp_free_void(void *p)
{
	ferry__sftp_free(p);
}

static int ready(void *ctx)
{
	return ferry__sftp_ready(ctx);
}

/* A client on a new channel, registered on the loop: the channel opens
 * (and INIT goes out) as the loop runs. */
static int chan_new(ferry_session *s, const ferry__sftp_opts *opts,
                    ferry__sftp **out)
{
	int error;
	*out = NULL;
	chan_tr *c = ferry__calloc(1, sizeof(*c));
	if (!c)
		return ferry__seterr(s, FERRY_ENOMEM,
		                     "SFTP init: out of memory");
	c->s = s;
	c->t.session = s;
	c->t.send = chan_send;
	c->t.recv = chan_recv;
	c->t.run = chan_run;
	c->t.free = chan_free;
	c->io.step = chan_step;
	c->io.pending = chan_pending;
	c->io.next_timer = chan_next_timer;
	if ((error = ferry__sftp_new(out, &c->t, s, opts)))
		return ferry__seterr(s, error, "SFTP init: %s",
		                     ferry_strerror(error));
	ferry__io_add(s, &c->io);
	return 0;
}

int ferry__session_sftp_begin(ferry_session *s, const ferry__sftp_opts *opts,
                              ferry__sftp **out)
{
	ferry__sftp *sf = NULL;
	int error;
	*out = NULL;
	if (s->dead)
		return ferry__seterr(s, FERRY_ECONN,
		                     "SFTP: the connection to %s was lost "
		                     "earlier",
		                     s->target ? s->target : "the server");
	if (s->sftp) {
		ferry__sftp *old = s->sftp;
		if (!ferry__sftp_dead(old)) {
			*out = old;
			return 0;
		}
		s->sftp = NULL;
		ferry__sftp_free(old);
	}
	if ((error = chan_new(s, opts, &sf)))
		return error;
	s->sftp = sf;
	s->sftp_free = sftp_free_void;
	*out = sf;
	return 0;
}

int ferry__session_sftp_ex(ferry_session *s, const ferry__sftp_opts *opts,
                           ferry__sftp **out)
{
	ferry__sftp *sf = NULL;
	int error = ferry__session_sftp_begin(s, opts, &sf);
	*out = NULL;
	if (error)
		return error;
	if (ferry__sftp_ready(sf)) {
		*out = sf;
		return 0;
	}
	int tmo = opts && opts->init_timeout_ms ? opts->init_timeout_ms
	          : s->opts.connect_timeout_ms  ? s->opts.connect_timeout_ms
	                                        : 15000;
	error = ferry__sftp_run(sf, ready, sf, ferry__now_ms() + tmo);
	if (error) {
		char msg[sizeof(s->errmsg)];
		if (sf->errmsg[0])
			ferry__sftp__textcpy(msg, sizeof(msg), sf->errmsg);
		else if (error == FERRY_ETIMEOUT)
			snprintf(
			        msg, sizeof(msg),
			        "SFTP init: no answer from the server in %d ms",
			        tmo);
		else if (snprintf(msg, sizeof(msg), "SFTP init: %s",
		                  s->errmsg[0] ? s->errmsg
		                               : ferry_strerror(error)) < 0)
			msg[0] = '\0';
		s->sftp = NULL;
		ferry__sftp_free(sf);
		return ferry__seterr(s, error, "%s", msg);
	}
	*out = sf;
	return 0;
}

int ferry__session_sftp(ferry_session *s, ferry__sftp **out)
{
	return ferry__session_sftp_ex(s, NULL, out);
}

/* ---- extra clients: one channel (one sftp-server) each ------------------ */

/* The socket send buffer asked for once streams are used. */
#define FERRY__STREAMS_SNDBUF (8 << 20)

typedef struct sftp_streams {
	unsigned n;
	ferry__sftp **sf;
	int sndbuf_grown;
} sftp_streams;

static void streams_free(void *p)
{
	sftp_streams *st = p;
	for (unsigned i = 0; i < st->n; i++)
		if (st->sf[i])
			ferry__sftp_free(st->sf[i]);
	ferry__free(st->sf);
	ferry__free(st);
}

typedef struct streams_wait {
	ferry__sftp **sf;
	unsigned n;
} streams_wait;

/* Every new client is ready or dead. */
static int streams_settled(void *ctx)
{
	streams_wait *w = ctx;
	for (unsigned i = 0; i < w->n; i++)
		if (!ferry__sftp_ready(w->sf[i]) && !ferry__sftp_dead(w->sf[i]))
			return 0;
	return 1;
}

int ferry__session_sftp_streams_begin(ferry_session *s, unsigned n,
                                      ferry__sftp **out)
{
	if (!n || n > FERRY__SFTP_STREAMS_MAX)
		return ferry__seterr(s, FERRY_EINVALID,
		                     "SFTP streams: %u asked (1 to %u)", n,
		                     FERRY__SFTP_STREAMS_MAX);
	if (s->dead)
		return ferry__seterr(s, FERRY_ECONN,
		                     "SFTP: the connection to %s was lost "
		                     "earlier",
		                     s->target ? s->target : "the server");
	sftp_streams *st = s->streams;
	if (!st) {
		if (!(st = ferry__calloc(1, sizeof(*st))))
			return ferry__seterr(s, FERRY_ENOMEM,
			                     "SFTP streams: out of memory");
		s->streams = st;
		s->streams_free = streams_free;
	}
	if (st->n < n) {
		ferry__sftp **g = ferry__realloc(st->sf, n * sizeof(*g));
		if (!g)
			return ferry__seterr(s, FERRY_ENOMEM,
			                     "SFTP streams: out of memory");
		for (unsigned i = st->n; i < n; i++)
			g[i] = NULL;
		st->sf = g;
		st->n = n;
	}
	/* Every missing (or dead) client is begun before any is waited for:
	 * their channel opens, subsystem requests and INITs overlap on the
	 * loop. */
	for (unsigned i = 0; i < n; i++) {
		if (st->sf[i] && !ferry__sftp_dead(st->sf[i]))
			continue;
		if (st->sf[i]) {
			ferry__sftp_free(st->sf[i]);
			st->sf[i] = NULL;
		}
		int error = chan_new(s, NULL, &st->sf[i]);
		if (error)
			return error;
	}
	/* Several channels fill what autotuning allows one connection. */
	if (!st->sndbuf_grown) {
		st->sndbuf_grown = 1;
		ferry__session_grow_sndbuf(s, FERRY__STREAMS_SNDBUF);
	}
	for (unsigned i = 0; i < n; i++)
		out[i] = st->sf[i];
	return 0;
}

int ferry__session_sftp_streams(ferry_session *s, unsigned n, ferry__sftp **out)
{
	ferry__sftp *sf[FERRY__SFTP_STREAMS_MAX];
	int error = ferry__session_sftp_streams_begin(s, n, sf);
	if (error)
		return error;
	streams_wait w = {sf, n};
	int tmo =
	        s->opts.connect_timeout_ms ? s->opts.connect_timeout_ms : 15000;
	if (!streams_settled(&w)) {
		error = ferry__session_run(s, streams_settled, &w,
		                           ferry__now_ms() + tmo, 0);
		if (error == FERRY_ETIMEOUT)
			ferry__seterr(
			        s, error,
			        "SFTP streams: channels not ready in %d ms",
			        tmo);
	}
	for (unsigned i = 0; !error && i < n; i++)
		if (ferry__sftp_dead(sf[i])) {
			error = ferry__sftp_dead(sf[i]);
			char msg[sizeof(s->errmsg)];
			ferry__sftp__textcpy(msg, sizeof(msg), sf[i]->errmsg);
			ferry__seterr(s, error, "SFTP streams: %s",
			              msg[0] ? msg : ferry_strerror(error));
		}
	if (error) {
		/* The clients not ready are given up (ready ones are kept). */
		sftp_streams *st = s->streams;
		for (unsigned i = 0; i < n; i++)
			if (st->sf[i] && !ferry__sftp_ready(st->sf[i])) {
				ferry__sftp_free(st->sf[i]);
				st->sf[i] = NULL;
			}
		return error;
	}
	for (unsigned i = 0; i < n; i++)
		out[i] = sf[i];
	return 0;
}

/* ---- the login directory ------------------------------------------------ */

static int home_settled(void *ctx)
{
	const ferry_session *s = ctx;
	return s->home || !s->home_asked;
}

int ferry_session_home(ferry_session *s, const char **out)
{
	if (!s || !out)
		return FERRY_EINVALID;
	*out = s->home;
	if (s->home)
		return 0;
	ferry__session_call_begin(s);
	ferry__sftp *sf = NULL;
	/* A new channel sends REALPATH "." behind INIT (ferry__sftp_start). */
	int error = ferry__session_sftp(s, &sf);
	if (!error)
		error = ferry__sftp_ask_home(sf);
	if (!error && !home_settled(s)) {
		error = ferry__sftp_run(sf, home_settled, s, 0);
		if (error)
			ferry__seterr(s, error, "SFTP REALPATH \".\": %s",
			              ferry__sftp_errmsg(sf));
	}
	if (!error && !s->home)
		error = ferry__seterr(
		        s, FERRY_EREMOTE,
		        "SFTP REALPATH \".\" on %s gave no absolute "
		        "login directory",
		        s->target);
	ferry__session_call_end(s);
	*out = s->home;
	return error;
}
