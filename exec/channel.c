/* channel.c - the channel broker and one op's channel work (exec_int.h).
 *
 * libssh2 allows one channel open in flight per session: opens are queued
 * (es->wq), one spare channel is kept open ahead of need, and channels
 * being closed finish in the background on the session-level io.  An
 * op's channel work is the exec request, stdin, reading both streams and
 * the exit status. */
#include "exec_int.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "error.h"

/* ---- small helpers ------------------------------------------------------ */

static int signal_number(const char *name, size_t n)
{
	static const struct {
		const char *name;
		int num;
	} sigs[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
	            {"ILL", SIGILL},   {"ABRT", SIGABRT}, {"FPE", SIGFPE},
	            {"KILL", SIGKILL}, {"SEGV", SIGSEGV}, {"PIPE", SIGPIPE},
	            {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
	            {"USR2", SIGUSR2}, {"BUS", SIGBUS},   {"TRAP", SIGTRAP}};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (strlen(sigs[i].name) == n && !memcmp(sigs[i].name, name, n))
			return sigs[i].num;
	return 0;
}

/* ---- channels ----------------------------------------------------------- */

void ferry__ex_es_dispose_channel(exec_state *es, LIBSSH2_CHANNEL *ch)
{
	if (!ch)
		return;
	if (es->nclosing == es->capclosing) {
		size_t cap = es->capclosing ? es->capclosing * 2 : 8;
		LIBSSH2_CHANNEL **n =
		        ferry__reallocarray(es->closing, cap, sizeof(*n));
		if (!n)
			return; /* leaked until the session is freed */
		es->closing = n;
		es->capclosing = cap;
	}
	es->closing[es->nclosing++] = ch;
}

static void op_take_channel(ferry__exec_op *op, LIBSSH2_CHANNEL *ch)
{
	op->ch = ch;
	op->state = op->state == S_KILL ? S_KILL : S_RUN;
}

void ferry__ex_es_drop_spare(exec_state *es)
{
	if (!es->spare)
		return;
	/* Nobody waits for its reader's reply now. */
	ferry__channel_startup_pass(es->s, &es->io, NULL);
	ferry__ex_es_dispose_channel(es, es->spare);
	es->spare = NULL;
	es->spare_req = 0;
	es->pre_slot = -1;
}

/* The reader's exec request for the session's shell mode. */
static const ferry_buf *es_reader(exec_state *es, int pre)
{
	int invoke = es->mode == FERRY__EXEC_MODE_LOGIN ? FERRY__SH_LOGIN
	             : es->direct                       ? FERRY__SH_DIRECT
	                                                : FERRY__SH_BASH;
	if (es->reader.len && es->reader_invoke == invoke &&
	    es->reader_pre == pre)
		return &es->reader;
	ferry__buf_reset(&es->reader);
	es->reader_invoke = invoke;
	es->reader_pre = pre;
	char path[4096];
	if (pre >= 0)
		snprintf(path, sizeof(path), "%s/%d", es->dir, pre);
	if (ferry__sh_reader(&es->reader, invoke, pre >= 0 ? path : NULL)) {
		ferry__buf_reset(&es->reader);
		return NULL;
	}
	return &es->reader;
}

/* Commands of a known shell go through the reader. */
static int es_shell_known(const exec_state *es)
{
	return es->mode == FERRY__EXEC_MODE_SNAPSHOT ||
	       es->mode == FERRY__EXEC_MODE_PLAIN ||
	       es->mode == FERRY__EXEC_MODE_LOGIN;
}

int ferry__ex_op_use_reader(ferry__exec_op *op)
{
	if (!op->pre_len && ferry__ex_op_new_mark(op))
		return FERRY_EIO;
	/* The reader's head (shell.h): marker, space, ten digits, newline. */
	size_t at = FERRY__SH_MARK_LEN;
	int n = snprintf(op->pre + at, sizeof(op->pre) - at, " %010zu\n",
	                 op->req.len);
	if (n != 12)
		return FERRY_EINVALID;
	op->pre_len = at + (size_t)n;
	op->pre_off = 0;
	op->text_off = 0;
	op->reader = 1;
	return 0;
}

void ferry__ex_wq_remove(exec_state *es, ferry__exec_op *op)
{
	if (!op->queued)
		return;
	ferry__exec_op **pp = &es->wq_head, *prev = NULL;
	while (*pp && *pp != op) {
		prev = *pp;
		pp = &(*pp)->wnext;
	}
	if (*pp) {
		*pp = op->wnext;
		if (es->wq_tail == op)
			es->wq_tail = prev;
	}
	op->wnext = NULL;
	op->queued = 0;
}

/* A channel for op: the spare at once, else queued (kill ops first). */
void ferry__ex_op_acquire(ferry__exec_op *op, int front)
{
	exec_state *es = op->es;
	op->state = op->state == S_KILL ? S_KILL : S_WAIT_CHAN;
	if (es->spare && libssh2_channel_eof(es->spare) == 1) {
		/* closed by the server while idle */
		ferry__log(es->s, FERRY_LOG_DEBUG,
		           "exec: the server closed the spare channel");
		ferry__ex_es_drop_spare(es);
	}
	/* A reader that loaded a snapshot the session has left is of no use. */
	if (es->spare && es->pre_slot >= 0 && es->pre_slot != es->cur_slot)
		ferry__ex_es_drop_spare(es);
	/* A spare whose reader was asked for serves only an op that goes
	 * through the reader; it inherits the request.  One whose reader
	 * loaded a snapshot serves only the command that sources it, and the
	 * directory's removal (which runs rm by its full path, past the
	 * user's functions): no other internal op or command without the
	 * session's state runs in it. */
	if (es->spare && (op->reader || !es->spare_req) &&
	    (es->pre_slot < 0 || op->kind == K_CLEANUP ||
	     (op->kind == K_USER && op->src_slot == es->pre_slot))) {
		LIBSSH2_CHANNEL *ch = es->spare;
		es->spare = NULL;
		op->pre_slot = es->pre_slot;
		es->pre_slot = -1;
		if (es->spare_req) {
			op->req_sent = 1;
			op->exec_ok = es->spare_req == 2;
			ferry__channel_startup_pass(es->s, &es->io, &op->io);
		}
		es->spare_req = 0;
		op_take_channel(op, ch);
		return;
	}
	op->queued = 1;
	if (front || !es->wq_tail) {
		op->wnext = es->wq_head;
		es->wq_head = op;
		if (!es->wq_tail)
			es->wq_tail = op;
	} else {
		es->wq_tail->wnext = op;
		es->wq_tail = op;
	}
}

static int es_need_open(const exec_state *es)
{
	return es->wq_head || (es->want_spare && !es->spare);
}

static void es_got_channel(exec_state *es, LIBSSH2_CHANNEL *ch)
{
	ferry__exec_op *op = es->wq_head;
	if (!op) {
		if (es->spare || es->closing_session) {
			ferry__ex_es_dispose_channel(es, ch);
		} else {
			es->spare = ch;
			es->spare_req = 0;
			es->pre_slot = -1;
		}
		return;
	}
	ferry__ex_wq_remove(es, op);
	op_take_channel(op, ch);
}

static void es_open_failed(exec_state *es, int rc)
{
	ferry__exec_op *op = es->wq_head;
	if (!op) {
		/* The spare only: try again with the next command. */
		ferry__log(es->s, FERRY_LOG_DEBUG,
		           "exec: spare channel open failed: %s",
		           ferry__ssh_msg(ferry__session_ssh(es->s)));
		es->want_spare = 0;
		return;
	}
	ferry__ex_wq_remove(es, op);
	ferry__ex_op_fail_ssh(op, rc, "opening a channel");
	ferry__ex_op_finish(op);
}

/* ---- the session-level io: opener and closers --------------------------- */

/* A user command started less than PRIME_DEFER_MS ago runs remotely
 * (its output has not ended): 1; one is live at all (its source slot may
 * not be the session's): 2; else 0. */
static int es_user_ops(const exec_state *es)
{
	int live = 0;
	double now = ferry__now_ms_f();
	for (const ferry__exec_op *o = es->ops; o; o = o->next) {
		if (o->kind != K_USER || o->state == S_DONE)
			continue;
		if (ferry__ex_op_holds_prime(o, now))
			return 1;
		live = 2;
	}
	return live;
}

double ferry__ex_op_holds_prime(const ferry__exec_op *op, double now)
{
	const exec_state *es = op->es;
	if (op->kind != K_USER || op->state != S_RUN || op->out_eof ||
	    !es->spare || es->spare_req)
		return 0;
	double until = op->t0 + PRIME_DEFER_MS;
	return until > now ? until : 0;
}

/* Start the reader on the spare ahead of need: the next command then
 * finds its channel's window open and costs one round trip.  Not while a
 * command runs: the server's fork and the reader's start would take the
 * remote CPU from it (on OpenSSH the session process forks in its one
 * loop, which also carries the command's output); beside a command that
 * runs longer than PRIME_DEFER_MS it starts then (a timer).  A command
 * issued within a round trip of the last one waits for the reader either
 * way.
 * With no command about, the reader also loads the session's snapshot,
 * which the next command would otherwise source first (0.6 ms of bash
 * for a login environment with a few functions). */
static int es_prime(exec_state *es)
{
	if (es->spare && es->pre_slot >= 0 && es->pre_slot != es->cur_slot) {
		/* the session's state moved on: a fresh reader */
		ferry__ex_es_drop_spare(es);
		return 1;
	}
	if (!es->spare || es->spare_req == 2 || !es_shell_known(es))
		return 0;
	/* A request already out is seen through: other channels' requests
	 * wait for it. */
	if (es->closing_session && !es->spare_req)
		return 0;
	if (!es->spare_req) {
		int busy = es_user_ops(es);
		if (busy == 1)
			return 0;
		es->pre_slot =
		        !busy && es->dir &&
		                        es->mode == FERRY__EXEC_MODE_SNAPSHOT
		                ? es->cur_slot
		                : -1;
	}
	const ferry_buf *r = es_reader(es, es->pre_slot);
	if (!r)
		return 0;
	LIBSSH2_SESSION *ssh = ferry__session_ssh(es->s);
	int rc =
	        ferry__channel_startup(es->s, &es->io, es->spare, "exec",
	                               (const char *)r->data, (unsigned)r->len);
	if (rc == FERRY__BUSY)
		return 0;
	if (rc == 0) {
		es->spare_req = 2;
		es->exec_seen = 1;
		return 1;
	}
	if (rc == LIBSSH2_ERROR_EAGAIN) {
		int was = es->spare_req;
		if (!(libssh2_session_block_directions(ssh) &
		      LIBSSH2_SESSION_BLOCK_OUTBOUND))
			es->spare_req = 1;
		return !was && es->spare_req;
	}
	/* Refused or gone: the next command takes a fresh channel. */
	ferry__log(es->s, FERRY_LOG_DEBUG,
	           "exec: starting the reader on the spare channel failed: %s",
	           ferry__ssh_msg(ssh));
	ferry__ex_es_drop_spare(es);
	return 1;
}

int ferry__ex_es_step(ferry__io *io)
{
	exec_state *es = CONTAINER(io, exec_state, io);
	ferry_session *s = es->s;
	int progress = 0;
	if (ferry__session_dead(s) || !ferry__session_ssh(s))
		return 0;
	if (es->opening || es_need_open(es)) {
		int e;
		LIBSSH2_CHANNEL *ch = ferry__channel_open(
		        s, &es->io, LIBSSH2_CHANNEL_WINDOW_DEFAULT,
		        LIBSSH2_CHANNEL_PACKET_DEFAULT, &e);
		if (ch) {
			es->opening = 0;
			es_got_channel(es, ch);
			progress = 1;
		} else {
			if (e == LIBSSH2_ERROR_EAGAIN) {
				if (!es->opening)
					progress = 1; /* the request left */
				es->opening = 1;
			} else if (ferry__ssh_transient(e)) {
				es->opening = 0; /* retry on a later pass */
			} else {
				es->opening = 0;
				es_open_failed(es, e);
				progress = 1;
			}
		}
	}
	progress |= es_prime(es);
	for (size_t i = 0; i < es->nclosing;) {
		int rc = libssh2_channel_free(es->closing[i]);
		if (rc && ferry__ssh_transient(rc)) {
			i++;
			continue;
		}
		es->closing[i] = es->closing[--es->nclosing];
		progress = 1;
	}
	return progress;
}

int ferry__ex_es_pending(ferry__io *io)
{
	exec_state *es = CONTAINER(io, exec_state, io);
	if (ferry__session_dead(es->s))
		return 0;
	if (es->opening || es->nclosing || (es->spare && es->spare_req == 1))
		return -1;
	return 0;
}

/* ---- one op's channel work ---------------------------------------------- */

void ferry__ex_op_drop_channel(ferry__exec_op *op)
{
	exec_state *es = op->es;
	LIBSSH2_CHANNEL *ch = op->ch;
	op->ch = NULL;
	if (!ch)
		return;
	/* Never used: still as good as new (a reader that got no byte of
	 * its script is still waiting for one). */
	int unused = op->reader ? !op->pre_off && (!op->req_sent || op->exec_ok)
	                        : !op->req_sent;
	if (unused && !es->spare && !es->closing_session &&
	    !ferry__session_dead(es->s)) {
		es->spare = ch;
		es->spare_req = op->reader && op->exec_ok ? 2 : 0;
		es->pre_slot = op->pre_slot;
		return;
	}
	if (!ferry__session_dead(es->s))
		ferry__ex_es_dispose_channel(es, ch);
}

static int read_streams(ferry__exec_op *op)
{
	char buf[32768];
	size_t budget = READ_BUDGET;
	int progress = 0;
	for (int stream = 0; stream < 2; stream++) {
		while (budget) {
			ssize_t n = libssh2_channel_read_ex(op->ch, stream, buf,
			                                    sizeof(buf));
			if (n > 0) {
				op->rx_bytes += (uint64_t)n;
				ferry__ex_deliver(op, stream, buf, (size_t)n);
				budget = (size_t)n < budget ? budget - (size_t)n
				                            : 0;
				progress = 1;
				continue;
			}
			if (n < 0 && !ferry__ssh_transient((int)n) &&
			    n != LIBSSH2_ERROR_CHANNEL_CLOSED) {
				ferry__ex_op_fail_ssh(op, (int)n,
				                      "reading the output");
				op->out_eof = 1;
			}
			break;
		}
	}
	if (!op->out_eof && libssh2_channel_eof(op->ch) == 1) {
		op->out_eof = 1;
		progress = 1;
	}
	return progress;
}

/* What stdin has left to send: the marker line (and for the reader the
 * script's length), the script, the user's data. */
static const char *stdin_next(const ferry__exec_op *op, size_t *len)
{
	if (op->pre_off < op->pre_len) {
		*len = op->pre_len - op->pre_off;
		return op->pre + op->pre_off;
	}
	if (op->reader && op->text_off < op->req.len) {
		*len = op->req.len - op->text_off;
		return (const char *)op->req.data + op->text_off;
	}
	*len = op->in_len - op->in_off;
	return (const char *)op->in + op->in_off;
}

static void stdin_sent(ferry__exec_op *op, size_t n)
{
	if (op->pre_off < op->pre_len)
		op->pre_off += n;
	else if (op->reader && op->text_off < op->req.len)
		op->text_off += n;
	else
		op->in_off += n;
}

int ferry__ex_stdin_left(const ferry__exec_op *op)
{
	size_t n;
	stdin_next(op, &n);
	return n > 0;
}

/* Once the request is out: the marker line, stdin as the window allows,
 * then EOF.  Sent without waiting for the request's reply: the marker
 * costs no round trip. */
static int write_stdin(ferry__exec_op *op)
{
	int progress = 0;
	size_t chunk;
	const char *p;
	while ((p = stdin_next(op, &chunk)), chunk) {
		if (chunk > 32768)
			chunk = 32768;
		ssize_t w = libssh2_channel_write(op->ch, p, chunk);
		if (w > 0) {
			stdin_sent(op, (size_t)w);
			op->window_wait = 0;
			progress = 1;
			continue;
		}
		if (w < 0 && !ferry__ssh_transient((int)w)) {
			/* stdin is gone */
			op->pre_off = op->pre_len;
			op->text_off = op->req.len;
			op->in_off = op->in_len;
		} else {
			op->window_wait =
			        libssh2_channel_window_write(op->ch) == 0;
		}
		break;
	}
	if (!chunk && !op->eof_sent) {
		int rc = libssh2_channel_send_eof(op->ch);
		if (rc == 0 || !ferry__ssh_transient(rc)) {
			op->eof_sent = 1;
			progress = 1;
		}
	}
	return progress;
}

int ferry__ex_chan_io(ferry__exec_op *op)
{
	exec_state *es = op->es;
	LIBSSH2_SESSION *ssh = ferry__session_ssh(es->s);
	int progress = 0, rc;
	/* Nothing ran yet: a reader prints only what a login prints before
	 * the wrapper's header; a plain request, nothing before it. */
	int unstarted = op->reader
	                        ? !op->fout.have_header && !op->ferr.have_header
	                        : !op->exec_ok && !op->rx_bytes;
	if (op->kind == K_USER && unstarted && op->retries < 2 &&
	    libssh2_channel_eof(op->ch) == 1) {
		/* The channel was closed under us before our request was
		 * answered (a server's ChannelTimeout on the spare): nothing
		 * ran, since a wrapper that runs always prints its header
		 * first.  Another channel. */
		op->retries++;
		ferry__log(es->s, FERRY_LOG_DEBUG,
		           "exec: channel closed by the server before the "
		           "command started; another one");
		ferry__ex_es_dispose_channel(es, op->ch);
		op->ch = NULL;
		op->req_sent = 0;
		op->eof_sent = 0;
		op->exec_ok = 0;
		op->in_off = 0;
		op->pre_off = 0;
		op->text_off = 0;
		ferry__ex_op_acquire(op, op->kind == K_KILL);
		return 1;
	}
	if (!op->exec_ok) {
		const ferry_buf *r =
		        op->reader ? es_reader(es, op->pre_slot) : &op->req;
		if (!r) {
			ferry__ex_op_seterr(op, FERRY_ENOMEM, "out of memory");
			ferry__ex_op_finish(op);
			return 1;
		}
		rc = ferry__channel_startup(es->s, &op->io, op->ch, "exec",
		                            (const char *)r->data,
		                            (unsigned)r->len);
		if (rc == FERRY__BUSY) {
			/* Another channel's request awaits its reply. */
		} else if (rc == 0) {
			op->exec_ok = op->req_sent = 1;
			es->exec_seen = 1;
			progress = 1;
		} else if (rc == LIBSSH2_ERROR_EAGAIN) {
			/* Sent in full (libssh2 waits for the reply now)
			 * unless the socket took only part of it. */
			if (!op->req_sent &&
			    !(libssh2_session_block_directions(ssh) &
			      LIBSSH2_SESSION_BLOCK_OUTBOUND)) {
				op->req_sent = 1;
				progress = 1;
			}
		} else if (!op->req_sent && ferry__ssh_transient(rc)) {
			/* libssh2 gave up on this channel before sending:
			 * start over on another one. */
			ferry__ex_es_dispose_channel(es, op->ch);
			op->ch = NULL;
			ferry__ex_op_acquire(op, op->kind == K_KILL);
			return 1;
		} else if (rc == LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED) {
			/* The server runs no commands at all (ProFTPD's
			 * mod_sftp, SFTP-only servers): say so plainly. */
			ferry__ex_op_seterr(
			        op, FERRY_EREMOTE,
			        "exec is not available on %s: the server "
			        "refused "
			        "to run a command (it offers SFTP only); push "
			        "works, commands do not",
			        ferry__session_target(es->s));
			ferry__ex_op_finish(op);
			return 1;
		} else {
			ferry__ex_op_fail_ssh(op, rc, "running a command");
			ferry__ex_op_finish(op);
			return 1;
		}
	}
	if (op->req_sent && (op->exec_ok || es->exec_seen))
		progress |= write_stdin(op);
	progress |= read_streams(op);
	if (op->out_eof && !op->closed && op->need_close) {
		rc = libssh2_channel_wait_closed(op->ch);
		if (rc == 0 || !ferry__ssh_transient(rc)) {
			op->closed = 1;
			progress = 1;
		}
	}
	return progress;
}

/* Exit status the channel reported (signal: 128 + number). */
int ferry__ex_channel_status(ferry__exec_op *op)
{
	char *sig = NULL;
	size_t siglen = 0;
	if (!op->ch || !op->closed)
		return -1;
	libssh2_channel_get_exit_signal(op->ch, &sig, &siglen, NULL, NULL, NULL,
	                                NULL);
	if (sig) {
		int num = signal_number(sig, siglen);
		libssh2_free(ferry__session_ssh(op->es->s), sig);
		return 128 + (num ? num : 0);
	}
	return libssh2_channel_get_exit_status(op->ch);
}
