/* exec.c - ferry_exec: commands over the held session.
 *
 * Pieces (exec/README.md has the whole contract):
 * - exec_state, one per session (the session's FERRY__SLOT_EXEC): the shell
 * mode found by the bootstrap, the remote snapshot directory and the session
 * cwd, the channel opener (libssh2 allows one channel open in flight per
 * session, so opens are queued) with one spare channel kept open ahead of need,
 *   and channels being closed in the background.  Its io is registered
 *   for the life of the session.
 * - ferry__exec_op, one per command, internal ones included (bootstrap,
 *   probes, kill, cleanup).  Each is an io on the session's loop: exec
 *   request, stdin, output through the filter of shell.c, completion.
 *
 * Snapshot files are slots "DIR/N": a command sources the current slot
 * and dumps into a free one, which becomes current only when the trailer
 * says the dump completed.  Slots in use by running commands are never
 * reused, so concurrent commands never read a half-written file, and no
 * mv (a fork) is needed per command.
 */
#include "exec.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "buf.h"
#include "shell.h"

#define DRAIN_MS        300   /* output after the wrapper exited */
#define KILL_WAIT_MS    3000  /* the whole kill phase of one command */
#define BOOT_TIMEOUT_MS 30000 /* a login profile that hangs */
#define CLOSE_WAIT_MS   1500  /* session close: kill, cleanup, channels */
#define RAW_MAX         ((size_t)64 << 10)
#define READ_BUDGET     ((size_t)256 << 10) /* per op and step */
#define SLOTS           64
/* libssh2 sends at most ~34 KB in one packet: an exec request longer
 * than this goes by a file (shell.h command_file). */
#define REQ_MAX ((size_t)30000)

#define CONTAINER(ptr, type, member)                                           \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum { K_USER, K_BOOT, K_PROBE, K_LPROBE, K_KILL, K_CLEANUP, K_STORE };
enum {
	S_NEW,
	S_WAIT_SHELL,
	S_WAIT_STORE, /* a long command is being written remotely */
	S_WAIT_CHAN,
	S_RUN,
	S_KILL,
	S_DONE
};

typedef struct sink {
	ferry_buf head;
	uint8_t *ring;
	size_t ring_start, ring_len, tail_cap;
	size_t cap;
	uint64_t total;
	int error;
} sink;

typedef struct emit_ctx {
	ferry__exec_op *op;
	int stream;
} emit_ctx;

typedef struct exec_state exec_state;

struct ferry__exec_op {
	ferry__io io;
	exec_state *es;
	ferry__exec_op *prev, *next; /* es->ops */
	ferry__exec_op *wnext;       /* es channel queue */
	int queued;
	int kind, state;
	LIBSSH2_CHANNEL *ch;
	ferry_buf req;
	char mark[64];
	int req_sent, exec_ok, eof_sent, out_eof, closed;
	int need_close; /* wait for the channel close: exit status */
	int retries;    /* channels found dead before the exec reply */
	uint64_t rx_bytes;
	const uint8_t *in;
	size_t in_len, in_off;

	/* K_USER */
	char *command; /* until the wrapper is built */
	char *cwd_opt; /* as asked: relative to the session cwd */
	char **env;
	size_t env_count;
	int no_snapshot;
	void (*on_output)(void *ctx, int stream, const void *data, size_t len);
	void *ctx;
	int separate;
	int src_slot, dst_slot; /* -1: none */
	ferry__sh_filter fout, ferr;
	emit_ctx ec_out, ec_err;
	sink out, err;
	int timed_out, interrupted;
	int timeout_ms;
	int64_t deadline, drain_at, kill_until;
	ferry__exec_op *killer; /* K_KILL op for this one */
	ferry__exec_op *storer; /* K_STORE op writing its command */
	ferry__exec_op *owner;  /* K_KILL, K_STORE: the op it serves */
	int cmd_slot;           /* "DIR/cN" holding a long command, or -1 */
	int carrier;            /* runs inside the bootstrap (first command) */
	int kill_done;

	int exit_status;
	int error;
	char *errmsg;
	double t0;
	double duration_ms;

	/* internal kinds */
	ferry_buf raw_out, raw_err;
	int status; /* channel exit status (-1 unknown) */
};

struct exec_state {
	ferry_session *s;
	ferry__io io;
	int mode;
	int direct;
	char sid[17];
	uint64_t seq, commands;
	char *dir, *cwd;
	int cur_slot;
	unsigned slot_refs[SLOTS];
	unsigned cmd_refs[SLOTS]; /* "DIR/cN" files of long commands */
	int fail_code;
	char *fail_msg;
	ferry_buf diag; /* what failed bootstrap attempts printed */
	ferry__exec_op *boot;
	LIBSSH2_CHANNEL *spare;
	int want_spare, opening;
	ferry__exec_op *wq_head, *wq_tail;
	LIBSSH2_CHANNEL **closing;
	size_t nclosing, capclosing;
	ferry__exec_op *ops;       /* live ops */
	ferry__exec_op *graveyard; /* done internal ops, freed later */
	int closing_session;
};

static void op_finish(ferry__exec_op *op);
static void es_boot_next(exec_state *es, int kind);
static void op_launch(ferry__exec_op *op);
static void op_take_slots(ferry__exec_op *op, ferry__sh_cmd *c, char *src,
                          char *dst, size_t size);
static void op_store_command(ferry__exec_op *op, const char *cfile, int k);

/* ---- small helpers ------------------------------------------------------ */

/* libssh2 errors that mean the connection itself is gone. */
static int conn_lost(int rc)
{
	return rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
	       rc == LIBSSH2_ERROR_SOCKET_RECV ||
	       rc == LIBSSH2_ERROR_SOCKET_TIMEOUT ||
	       rc == LIBSSH2_ERROR_SOCKET_NONE;
}

static const char *ssh_msg(exec_state *es)
{
	char *msg = NULL;
	libssh2_session_last_error(ferry__session_ssh(es->s), &msg, NULL, 0);
	return msg && *msg ? msg : "unknown libssh2 error";
}

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

/* ---- output sinks: everything, or head and tail within cap -------------- */

static void sink_init(sink *k, size_t cap)
{
	memset(k, 0, sizeof(*k));
	k->head.max = (size_t)-1;
	k->cap = cap;
	k->tail_cap = cap / 2;
}

static void sink_free(sink *k)
{
	ferry__buf_free(&k->head);
	ferry__free(k->ring);
	k->ring = NULL;
}

static void sink_put(sink *k, const void *data, size_t n)
{
	const uint8_t *p = data;
	k->total += n;
	if (k->error)
		return;
	if (!k->cap) {
		k->error = ferry__buf_put(&k->head, p, n);
		return;
	}
	size_t head_cap = k->cap - k->tail_cap;
	if (k->head.len < head_cap) {
		size_t take = head_cap - k->head.len;
		if (take > n)
			take = n;
		if ((k->error = ferry__buf_put(&k->head, p, take)))
			return;
		p += take;
		n -= take;
	}
	if (!n || !k->tail_cap)
		return;
	if (!k->ring && !(k->ring = ferry__malloc(k->tail_cap))) {
		k->error = FERRY_ENOMEM;
		return;
	}
	if (n >= k->tail_cap) {
		memcpy(k->ring, p + n - k->tail_cap, k->tail_cap);
		k->ring_start = 0;
		k->ring_len = k->tail_cap;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t at = (k->ring_start + k->ring_len) % k->tail_cap;
		k->ring[at] = p[i];
		if (k->ring_len < k->tail_cap)
			k->ring_len++;
		else
			k->ring_start = (k->ring_start + 1) % k->tail_cap;
	}
}

/* The kept bytes as one NUL-terminated allocation. */
static int sink_take(sink *k, char **out, size_t *len, int *truncated)
{
	size_t n = k->head.len + k->ring_len;
	char *p = ferry__malloc(n + 1);
	if (!p)
		return FERRY_ENOMEM;
	if (k->head.len)
		memcpy(p, k->head.data, k->head.len);
	for (size_t i = 0; i < k->ring_len; i++)
		p[k->head.len + i] =
		        (char)k->ring[(k->ring_start + i) % k->tail_cap];
	p[n] = '\0';
	*out = p;
	*len = n;
	if (k->total > n)
		*truncated = 1;
	return k->error;
}

/* ---- ops: allocation and lists ------------------------------------------ */

static int op_step(ferry__io *io);
static int op_pending(ferry__io *io);

static ferry__exec_op *op_new(exec_state *es, int kind)
{
	ferry__exec_op *op = ferry__calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->es = es;
	op->kind = kind;
	op->state = S_NEW;
	op->src_slot = op->dst_slot = -1;
	op->cmd_slot = -1;
	op->status = -1;
	op->exit_status = 255;
	op->io.step = op_step;
	op->io.pending = op_pending;
	op->raw_out.max = RAW_MAX;
	op->raw_err.max = RAW_MAX;
	op->ec_out.op = op;
	op->ec_out.stream = 1;
	op->ec_err.op = op;
	op->ec_err.stream = 2;
	op->t0 = ferry__now_ms_f();
	snprintf(op->mark, sizeof(op->mark), "__ferry_%s_%llu", es->sid,
	         (unsigned long long)++es->seq);
	sink_init(&op->out, 0);
	sink_init(&op->err, 0);
	op->next = es->ops;
	if (es->ops)
		es->ops->prev = op;
	es->ops = op;
	ferry__io_add(es->s, &op->io);
	return op;
}

static void op_unlink(ferry__exec_op *op)
{
	exec_state *es = op->es;
	if (op->prev)
		op->prev->next = op->next;
	else if (es->ops == op)
		es->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
}

static void op_free(ferry__exec_op *op)
{
	if (!op)
		return;
	ferry__buf_free(&op->req);
	ferry__free(op->command);
	ferry__free(op->cwd_opt);
	for (size_t i = 0; i < op->env_count; i++)
		ferry__free(op->env[i]);
	ferry__free(op->env);
	ferry__sh_filter_free(&op->fout);
	ferry__sh_filter_free(&op->ferr);
	sink_free(&op->out);
	sink_free(&op->err);
	ferry__buf_free(&op->raw_out);
	ferry__buf_free(&op->raw_err);
	ferry__free(op->errmsg);
	ferry__free(op);
}

static void op_seterr(ferry__exec_op *op, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void op_seterr(ferry__exec_op *op, int code, const char *fmt, ...)
{
	char msg[FERRY_ERRMSG_SIZE];
	FERRY__FORMAT(msg, fmt);
	if (!op->error) {
		op->error = code;
		ferry__free(op->errmsg);
		op->errmsg = ferry__strdup(msg);
	}
}

/* A libssh2 failure: the connection lost (the session is dead then), or
 * the server's refusal. */
static void op_fail_ssh(ferry__exec_op *op, int rc, const char *what)
{
	ferry_session *s = op->es->s;
	if (conn_lost(rc) || ferry__session_dead(s)) {
		ferry__session_mark_dead(s);
		ferry__seterr(s, FERRY_EEOF,
		              "connection to %s lost while %s: %s",
		              ferry__session_target(s), what, ssh_msg(op->es));
		op_seterr(op, FERRY_EEOF, "%s", ferry_session_errmsg(s));
		return;
	}
	op_seterr(op, FERRY_EREMOTE, "%s: %s failed: %s (libssh2 error %d)",
	          ferry__session_target(s), what, ssh_msg(op->es), rc);
}

/* ---- channels ----------------------------------------------------------- */

static void es_dispose_channel(exec_state *es, LIBSSH2_CHANNEL *ch)
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

static void wq_remove(exec_state *es, ferry__exec_op *op)
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
static void op_acquire(ferry__exec_op *op, int front)
{
	exec_state *es = op->es;
	op->state = op->state == S_KILL ? S_KILL : S_WAIT_CHAN;
	if (es->spare && libssh2_channel_eof(es->spare) == 1) {
		/* closed by the server while idle */
		ferry__log(es->s, FERRY_LOG_DEBUG,
		           "exec: the server closed the spare channel");
		es_dispose_channel(es, es->spare);
		es->spare = NULL;
	}
	if (es->spare) {
		LIBSSH2_CHANNEL *ch = es->spare;
		es->spare = NULL;
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
		if (es->spare || es->closing_session)
			es_dispose_channel(es, ch);
		else
			es->spare = ch;
		return;
	}
	wq_remove(es, op);
	op_take_channel(op, ch);
}

static void es_open_failed(exec_state *es, int rc)
{
	ferry__exec_op *op = es->wq_head;
	if (!op) {
		/* The spare only: try again with the next command. */
		ferry__log(es->s, FERRY_LOG_DEBUG,
		           "exec: spare channel open failed: %s", ssh_msg(es));
		es->want_spare = 0;
		return;
	}
	wq_remove(es, op);
	op_fail_ssh(op, rc, "opening a channel");
	op_finish(op);
}

/* ---- the session-level io: opener and closers --------------------------- */

static int es_step(ferry__io *io)
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

static int es_pending(ferry__io *io)
{
	exec_state *es = CONTAINER(io, exec_state, io);
	if (ferry__session_dead(es->s))
		return 0;
	if (es->opening || es->nclosing)
		return -1;
	return 0;
}

/* ---- delivering output -------------------------------------------------- */

static void user_emit(ferry__exec_op *op, int stream, const void *p, size_t n)
{
	if (op->timed_out || op->interrupted)
		return; /* a killed command's last words are not its output */
	if (op->on_output)
		op->on_output(op->ctx, stream, p, n);
	else if (stream == 2 && op->separate)
		sink_put(&op->err, p, n);
	else
		sink_put(&op->out, p, n);
}

static void filter_emit(void *ctx, const void *p, size_t n)
{
	emit_ctx *ec = ctx;
	user_emit(ec->op, ec->stream, p, n);
}

static void deliver(ferry__exec_op *op, int stream, const char *p, size_t n)
{
	if (op->kind != K_USER) {
		ferry_buf *b = stream ? &op->raw_err : &op->raw_out;
		size_t room = RAW_MAX - b->len;
		ferry__buf_put(b, p, n < room ? n : room);
		return;
	}
	int rc = stream ? ferry__sh_filter_feed(&op->ferr, p, n, filter_emit,
	                                        &op->ec_err)
	                : ferry__sh_filter_feed(&op->fout, p, n, filter_emit,
	                                        &op->ec_out);
	if (rc)
		op_seterr(op, rc, "out of memory reading the output");
}

/* ---- one op's channel work ---------------------------------------------- */

static void op_drop_channel(ferry__exec_op *op)
{
	exec_state *es = op->es;
	LIBSSH2_CHANNEL *ch = op->ch;
	op->ch = NULL;
	if (!ch)
		return;
	if (!op->req_sent && !es->spare && !es->closing_session &&
	    !ferry__session_dead(es->s)) {
		es->spare = ch; /* never used: still as good as new */
		return;
	}
	if (!ferry__session_dead(es->s))
		es_dispose_channel(es, ch);
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
				deliver(op, stream, buf, (size_t)n);
				budget = (size_t)n < budget ? budget - (size_t)n
				                            : 0;
				progress = 1;
				continue;
			}
			if (n < 0 && !ferry__ssh_transient((int)n) &&
			    n != LIBSSH2_ERROR_CHANNEL_CLOSED) {
				op_fail_ssh(op, (int)n, "reading the output");
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

/* Once the request is out: stdin as the window allows, then EOF. */
static int write_stdin(ferry__exec_op *op)
{
	int progress = 0;
	while (op->in_off < op->in_len) {
		size_t chunk = op->in_len - op->in_off;
		if (chunk > 32768)
			chunk = 32768;
		ssize_t w = libssh2_channel_write(
		        op->ch, (const char *)op->in + op->in_off, chunk);
		if (w > 0) {
			op->in_off += (size_t)w;
			progress = 1;
			continue;
		}
		if (w < 0 && !ferry__ssh_transient((int)w))
			op->in_off = op->in_len; /* stdin is gone */
		break;
	}
	if (op->in_off >= op->in_len && !op->eof_sent) {
		int rc = libssh2_channel_send_eof(op->ch);
		if (rc == 0 || !ferry__ssh_transient(rc)) {
			op->eof_sent = 1;
			progress = 1;
		}
	}
	return progress;
}

static int chan_io(ferry__exec_op *op)
{
	exec_state *es = op->es;
	LIBSSH2_SESSION *ssh = ferry__session_ssh(es->s);
	int progress = 0, rc;
	if (op->kind == K_USER && !op->exec_ok && !op->rx_bytes &&
	    op->retries < 2 && libssh2_channel_eof(op->ch) == 1) {
		/* The channel was closed under us before our request was
		 * answered (a server's ChannelTimeout on the spare): nothing
		 * ran, since a wrapper that runs always prints its header
		 * first.  Another channel. */
		op->retries++;
		ferry__log(es->s, FERRY_LOG_DEBUG,
		           "exec: channel closed by the server before the "
		           "command started; another one");
		es_dispose_channel(es, op->ch);
		op->ch = NULL;
		op->req_sent = 0;
		op->eof_sent = 0;
		op->in_off = 0;
		op_acquire(op, op->kind == K_KILL);
		return 1;
	}
	if (!op->exec_ok) {
		rc = ferry__channel_startup(es->s, &op->io, op->ch, "exec",
		                            (const char *)op->req.data,
		                            (unsigned)op->req.len);
		if (rc == FERRY__BUSY) {
			/* Another channel's request awaits its reply. */
		} else if (rc == 0) {
			op->exec_ok = op->req_sent = 1;
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
			es_dispose_channel(es, op->ch);
			op->ch = NULL;
			op_acquire(op, op->kind == K_KILL);
			return 1;
		} else {
			op_fail_ssh(op, rc, "running a command");
			op_finish(op);
			return 1;
		}
	}
	if (op->req_sent)
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
static int channel_status(ferry__exec_op *op)
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

/* ---- killing ------------------------------------------------------------ */

static void spawn_kill(ferry__exec_op *op, long pgid)
{
	exec_state *es = op->es;
	ferry__exec_op *k = op_new(es, K_KILL);
	if (k && ferry__sh_kill(&k->req, pgid)) {
		op_unlink(k);
		ferry__io_remove(es->s, &k->io);
		op_free(k);
		k = NULL;
	}
	if (!k) {
		op->kill_done = 1; /* nothing more we can do */
		return;
	}
	k->need_close = 1;
	k->owner = op;
	k->deadline = (int64_t)ferry__now_ms() + KILL_WAIT_MS;
	op->killer = k;
	op_acquire(k, 1);
}

static long op_pgid(const ferry__exec_op *op)
{
	if (op->fout.have_header)
		return op->fout.pgid;
	if (op->ferr.have_header)
		return op->ferr.pgid;
	return -1;
}

/* Stop a command: timeout (124, with a note) or interrupt (130). */
static void op_abort(ferry__exec_op *op, int timeout)
{
	if (op->state == S_DONE || op->timed_out || op->interrupted)
		return;
	if (op->kind != K_USER) {
		op_seterr(op, timeout ? FERRY_ETIMEOUT : FERRY_EINTR,
		          timeout ? "timed out" : "interrupted");
		op_finish(op);
		return;
	}
	/* What the command printed so far is its output. */
	ferry__sh_filter_flush(&op->fout, filter_emit, &op->ec_out);
	if (timeout) {
		char note[160];
		int n = snprintf(note, sizeof(note),
		                 "ferry: command timed out after %.6g s; its "
		                 "remote process group was killed\n",
		                 op->timeout_ms / 1000.0);
		user_emit(op, 2, note, n > 0 ? (size_t)n : 0);
		op->timed_out = 1;
	} else {
		op->interrupted = 1;
	}
	if (!op->req_sent) {
		/* It never reached the remote: nothing to kill. */
		op_finish(op);
		return;
	}
	op->state = S_KILL;
	op->drain_at = 0;
	op->kill_until = (int64_t)ferry__now_ms() + KILL_WAIT_MS;
	long pgid = op_pgid(op);
	if (pgid > 1)
		spawn_kill(op, pgid);
}

/* ---- completion --------------------------------------------------------- */

static void check_user(ferry__exec_op *op, int64_t now)
{
	if (op->state == S_KILL) {
		if (!op->killer && !op->kill_done) {
			long pgid = op_pgid(op);
			if (pgid > 1)
				spawn_kill(op, pgid);
		}
		if (op->kill_done || (op->out_eof && !op->killer)) {
			if (op->out_eof) {
				op_finish(op);
				return;
			}
			if (!op->drain_at)
				op->drain_at = now + DRAIN_MS;
		}
		if ((op->drain_at && now >= op->drain_at) ||
		    now >= op->kill_until)
			op_finish(op);
		return;
	}
	if (op->state != S_RUN)
		return;
	if (op->fout.have_trailer) {
		if (op->out_eof) {
			op_finish(op);
		} else if (!op->drain_at) {
			op->drain_at = now + DRAIN_MS;
		} else if (now >= op->drain_at) {
			ferry__log(op->es->s, FERRY_LOG_DEBUG,
			           "exec: output still open %d ms after the "
			           "command ended (a background process?): "
			           "closing",
			           DRAIN_MS);
			op_finish(op);
		}
		return;
	}
	if (op->out_eof) {
		/* No trailer: cd failed (126), the command replaced the
		 * shell (exec) or removed our trap.  The channel's exit
		 * status is the answer. */
		op->need_close = 1;
		if (op->closed)
			op_finish(op);
	}
}

static int op_step(ferry__io *io)
{
	ferry__exec_op *op = CONTAINER(io, ferry__exec_op, io);
	int progress = 0;
	if (op->state == S_DONE)
		return 0;
	int64_t now = ferry__now_ms();
	if (op->deadline && now >= op->deadline && op->state != S_KILL) {
		op->deadline = 0;
		op_abort(op, 1);
		progress = 1;
		if (op->state == S_DONE)
			return 1;
	}
	if (!op->ch)
		return progress;
	progress |= chan_io(op);
	if (op->state == S_DONE || !op->ch)
		return 1;
	if (op->kind == K_USER) {
		check_user(op, now);
	} else if (op->out_eof && op->closed) {
		op->status = channel_status(op);
		op_finish(op);
	} else if (op->error) {
		op_finish(op);
	}
	return progress || op->state == S_DONE;
}

static int op_pending(ferry__io *io)
{
	ferry__exec_op *op = CONTAINER(io, ferry__exec_op, io);
	if (op->state == S_DONE || !op->ch)
		return 0;
	if (!op->exec_ok)
		return -1; /* inside libssh2's exec request */
	if (libssh2_poll_channel_read(op->ch, 1) > 0)
		return 1;
	if (!op->out_eof && libssh2_channel_eof(op->ch) == 1)
		return 1;
	if (op->out_eof && op->need_close && !op->closed)
		return -1;
	return 0;
}

static void es_release_slots(exec_state *es, ferry__exec_op *op)
{
	if (op->src_slot >= 0 && es->slot_refs[op->src_slot])
		es->slot_refs[op->src_slot]--;
	if (op->dst_slot >= 0 && es->slot_refs[op->dst_slot])
		es->slot_refs[op->dst_slot]--;
	op->src_slot = op->dst_slot = -1;
	if (op->cmd_slot >= 0 && es->cmd_refs[op->cmd_slot])
		es->cmd_refs[op->cmd_slot]--;
	op->cmd_slot = -1;
}

/* The first command ran inside the bootstrap: what the bootstrap said is
 * in the noise before the command's header. */
static void carrier_boot(ferry__exec_op *op)
{
	exec_state *es = op->es;
	ferry__sh_boot b;
	op->carrier = 0;
	es->boot = NULL;
	if (ferry__sh_parse_boot(op->fout.noise.data, op->fout.noise.len,
	                         op->mark, &b))
		return;
	es->direct = b.have_sh && b.bash;
	if (b.dir && b.cwd && !es->dir) {
		ferry__free(es->cwd);
		es->dir = b.dir;
		es->cwd = b.cwd;
		b.dir = b.cwd = NULL;
		es->cur_slot = 0;
		if (!es->closing_session)
			es->mode = FERRY__EXEC_MODE_SNAPSHOT;
	}
	ferry__sh_boot_free(&b);
}

static void finish_user(ferry__exec_op *op)
{
	exec_state *es = op->es;
	if (op->carrier)
		carrier_boot(op);
	ferry__sh_filter_finish(&op->fout, filter_emit, &op->ec_out);
	ferry__sh_filter_finish(&op->ferr, filter_emit, &op->ec_err);
	if (op->timed_out) {
		op->exit_status = 124;
	} else if (op->interrupted) {
		op->exit_status = 130;
	} else if (op->fout.have_trailer) {
		op->exit_status = op->fout.status;
		if (!op->no_snapshot && op->fout.cwd && *op->fout.cwd) {
			char *c = ferry__strdup(op->fout.cwd);
			if (c) {
				ferry__free(es->cwd);
				es->cwd = c;
			}
		}
		if (op->fout.dumped && op->dst_slot >= 0 &&
		    es->mode == FERRY__EXEC_MODE_SNAPSHOT)
			es->cur_slot = op->dst_slot;
	} else if (!op->error) {
		int st = channel_status(op);
		op->exit_status = st >= 0 ? st : 255;
		if (!op->fout.have_header && !op->ferr.have_header && st != 126)
			ferry__log(es->s, FERRY_LOG_DEBUG,
			           "exec: the wrapper did not run (status %d)",
			           st);
	}
	if (op->error && !op->timed_out && !op->interrupted)
		op->exit_status = 255;
	es_release_slots(es, op);
	if (op->killer) {
		op->killer->owner = NULL; /* it finishes on its own */
		op->killer = NULL;
	}
	if (op->storer) {
		op->storer->owner = NULL;
		op->storer = NULL;
	}
}

static void boot_done(ferry__exec_op *op);

/* The long command is in its file (or not): the command goes on. */
static void store_done(ferry__exec_op *st)
{
	ferry__exec_op *op = st->owner;
	op->storer = NULL;
	st->owner = NULL;
	if (op->state != S_WAIT_STORE)
		return;
	if (st->error || st->status != 0) {
		op_seterr(op, st->error ? st->error : FERRY_EREMOTE,
		          "%s: could not write the command (%zu bytes) to a "
		          "remote file: %s",
		          ferry__session_target(op->es->s), st->in_len,
		          st->errmsg ? st->errmsg : "cat failed");
		op_finish(op);
		return;
	}
	op_acquire(op, 0);
}

static void es_resolved(exec_state *es);
static void diag_line(exec_state *es, const char *what, ferry__exec_op *op);

static const char *diag_text(const exec_state *es)
{
	return es->diag.len ? (const char *)es->diag.data : "";
}

/* The first command carried the bootstrap and the bootstrap failed
 * before it (no header: nothing ran).  Remember why, probe the fallbacks,
 * and run the command again once the shell is known. */
static void carrier_retry(ferry__exec_op *op)
{
	exec_state *es = op->es;
	ferry__buf_reset(&op->raw_out);
	ferry__buf_reset(&op->raw_err);
	ferry__buf_put(&op->raw_out, op->fout.hold.data, op->fout.hold.len);
	ferry__buf_put(&op->raw_err, op->ferr.hold.data, op->ferr.hold.len);
	op->status = channel_status(op);
	diag_line(es, "bash -l", op);
	ferry__log(es->s, FERRY_LOG_WARN,
	           "exec: the login bootstrap failed on %s; trying plain "
	           "bash -c (%s)",
	           ferry__session_target(es->s), diag_text(es));
	if (op->ch) {
		es_dispose_channel(es, op->ch);
		op->ch = NULL;
	}
	es_release_slots(es, op);
	ferry__buf_reset(&op->req);
	op->req_sent = op->exec_ok = op->eof_sent = 0;
	op->out_eof = op->closed = op->need_close = 0;
	op->retries = 0;
	op->rx_bytes = 0;
	op->in_off = 0;
	op->drain_at = 0;
	op->status = -1;
	ferry__sh_filter_free(&op->fout);
	ferry__sh_filter_free(&op->ferr);
	ferry__sh_filter_init(&op->fout, op->mark, 1);
	ferry__sh_filter_init(&op->ferr, op->mark, 0);
	op->carrier = 0;
	op->state = S_WAIT_SHELL;
	es->boot = NULL;
	es_boot_next(es, K_PROBE);
}

/* After a user op ended: a bootstrap it carried that did not resolve the
 * shell (killed, failed) leaves the next command to try again. */
static void carrier_settled(exec_state *es)
{
	if (es->mode != FERRY__EXEC_MODE_BOOTING &&
	    es->mode != FERRY__EXEC_MODE_NONE) {
		es_resolved(es); /* the commands that waited for it */
		return;
	}
	if (es->mode != FERRY__EXEC_MODE_BOOTING || es->boot)
		return;
	es->mode = FERRY__EXEC_MODE_NONE;
	for (ferry__exec_op *u = es->ops; u; u = u->next)
		if (u->kind == K_USER && u->state == S_WAIT_SHELL) {
			es_boot_next(es, K_BOOT);
			return;
		}
}

static void op_finish(ferry__exec_op *op)
{
	exec_state *es = op->es;
	if (op->state == S_DONE)
		return;
	wq_remove(es, op);
	if (op->carrier && !op->timed_out && !op->interrupted && !op->error &&
	    !op->fout.have_header && !op->ferr.have_header &&
	    !es->closing_session) {
		carrier_retry(op);
		return;
	}
	if (op->kind == K_USER)
		finish_user(op);
	op_drop_channel(op);
	op->state = S_DONE;
	op->duration_ms = ferry__now_ms_f() - op->t0;
	ferry__io_remove(es->s, &op->io);
	if (op->kind == K_USER) {
		carrier_settled(es);
		return; /* listed and kept until ferry__exec_finish */
	}
	op_unlink(op);
	if (op->kind == K_KILL && op->owner) {
		op->owner->kill_done = 1;
		op->owner->killer = NULL;
	}
	if (op->kind == K_STORE && op->owner)
		store_done(op);
	if (op->kind == K_BOOT || op->kind == K_PROBE || op->kind == K_LPROBE)
		boot_done(op);
	/* Freed at a safe point: the loop may hold a pointer to it. */
	op->next = es->graveyard;
	es->graveyard = op;
}

static void es_bury(exec_state *es)
{
	while (es->graveyard) {
		ferry__exec_op *op = es->graveyard;
		es->graveyard = op->next;
		op_free(op);
	}
}

/* ---- the session shell: bootstrap and fallbacks ------------------------- */

static void diag_line(exec_state *es, const char *what, ferry__exec_op *op)
{
	/* First line of stderr (else stdout) of a failed attempt. */
	const ferry_buf *b = op->raw_err.len ? &op->raw_err : &op->raw_out;
	size_t n = 0;
	while (n < b->len && n < 200 && b->data[n] != '\n' && b->data[n])
		n++;
	char line[256];
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < sizeof(line); i++)
		line[k++] = (b->data[i] >= 0x20 && b->data[i] < 0x7f)
		                    ? (char)b->data[i]
		                    : '?';
	line[k] = '\0';
	char msg[FERRY_ERRMSG_SIZE];
	int m = snprintf(msg, sizeof(msg), "%s%s: %s", es->diag.len ? "; " : "",
	                 what,
	                 op->error ? (op->errmsg ? op->errmsg : "failed")
	                 : k       ? line
	                 : op->status >= 0 ? "no output"
	                                   : "no output, no exit status");
	/* kept NUL-terminated: it is printed as a string */
	if (m > 0 && !ferry__buf_put(&es->diag, msg, (size_t)m + 1))
		es->diag.len--;
}

static void es_resolved(exec_state *es)
{
	ferry__exec_op *op = es->ops;
	while (op) {
		ferry__exec_op *next = op->next;
		if (op->kind == K_USER && op->state == S_WAIT_SHELL)
			op_launch(op);
		op = next;
	}
}

static void es_fail(exec_state *es)
{
	const char *why = es->diag.len ? diag_text(es) : "no output";
	int sftp_only = strstr(why, "sftp connections only") != NULL;
	es->mode = FERRY__EXEC_MODE_FAILED;
	es->fail_code = FERRY_EREMOTE;
	ferry__free(es->fail_msg);
	es->fail_msg = ferry__asprintf(
	        "exec is not available on %s: %s (%s)",
	        ferry__session_target(es->s),
	        sftp_only ? "the account is SFTP-only (ForceCommand "
	                    "internal-sftp); push works, commands do not"
	                  : "no bash could be started",
	        why);
	/* No spare channel for commands that will never run. */
	es->want_spare = 0;
	if (es->spare) {
		es_dispose_channel(es, es->spare);
		es->spare = NULL;
	}
}

static void boot_done(ferry__exec_op *op)
{
	exec_state *es = op->es;
	es->boot = NULL;
	if (es->closing_session) {
		/* Closing: only remember a directory to remove. */
		ferry__sh_boot b;
		if (op->kind == K_BOOT &&
		    !ferry__sh_parse_boot(op->raw_out.data, op->raw_out.len,
		                          op->mark, &b) &&
		    b.dir && !es->dir) {
			es->dir = b.dir;
			b.dir = NULL;
		}
		if (op->kind == K_BOOT)
			ferry__sh_boot_free(&b);
		return;
	}
	if (op->kind == K_BOOT) {
		ferry__sh_boot b;
		int rc = ferry__sh_parse_boot(op->raw_out.data, op->raw_out.len,
		                              op->mark, &b);
		es->direct = !rc && b.have_sh && b.bash;
		if (!rc && !op->error && b.dir && b.cwd) {
			ferry__free(es->dir);
			ferry__free(es->cwd);
			es->dir = b.dir;
			es->cwd = b.cwd;
			es->cur_slot = 0;
			es->mode = FERRY__EXEC_MODE_SNAPSHOT;
			es_resolved(es);
			return;
		}
		ferry__sh_boot_free(&b);
		diag_line(es, "bash -l", op);
		ferry__log(es->s, FERRY_LOG_WARN,
		           "exec: the login bootstrap failed on %s; trying "
		           "plain bash -c (%s)",
		           ferry__session_target(es->s), diag_text(es));
		es_boot_next(es, K_PROBE);
		return;
	}
	char *cwd = NULL;
	if (ferry__sh_parse_probe(op->raw_out.data, op->raw_out.len, op->mark,
	                          &cwd) == 0 &&
	    cwd && !op->error) {
		ferry__free(es->cwd);
		es->cwd = cwd;
		es->mode = op->kind == K_PROBE ? FERRY__EXEC_MODE_PLAIN
		                               : FERRY__EXEC_MODE_LOGIN;
		es_resolved(es);
		return;
	}
	ferry__free(cwd);
	diag_line(es, op->kind == K_PROBE ? "bash -c" : "bash -l -c", op);
	if (op->kind == K_PROBE) {
		es_boot_next(es, K_LPROBE);
		return;
	}
	es_fail(es);
	es_resolved(es);
}

static void es_boot_next(exec_state *es, int kind)
{
	ferry__exec_op *op = op_new(es, kind);
	int rc = op ? 0 : FERRY_ENOMEM;
	if (!rc && kind == K_BOOT) {
		char name[40];
		snprintf(name, sizeof(name), "ferry-%s", es->sid);
		rc = ferry__sh_bootstrap(&op->req, op->mark, name);
	} else if (!rc) {
		rc = ferry__sh_probe(&op->req, op->mark, kind == K_LPROBE);
	}
	if (rc) {
		if (op) {
			op_unlink(op);
			ferry__io_remove(es->s, &op->io);
			op_free(op);
		}
		/* Not a verdict on the remote: the next command tries
		 * again. */
		es->mode = FERRY__EXEC_MODE_NONE;
		for (ferry__exec_op *u = es->ops; u; u = u->next)
			if (u->kind == K_USER && u->state == S_WAIT_SHELL) {
				op_seterr(u, FERRY_ENOMEM, "out of memory");
				op_finish(u);
			}
		return;
	}
	op->need_close = 1;
	op->deadline = (int64_t)ferry__now_ms() + BOOT_TIMEOUT_MS;
	es->boot = op;
	es->mode = FERRY__EXEC_MODE_BOOTING;
	op_acquire(op, 0);
}

static void es_free(void *p);
static int64_t es_io_next_timer(ferry__io *io);

static int es_get(ferry_session *s, exec_state **out)
{
	if (ferry__session_state(s, FERRY__SLOT_EXEC)) {
		*out = ferry__session_state(s, FERRY__SLOT_EXEC);
		return 0;
	}
	exec_state *es = ferry__calloc(1, sizeof(*es));
	if (!es)
		return ferry__seterr(s, FERRY_ENOMEM, "out of memory");
	uint8_t r[8];
	if (ferry__random_bytes(r, sizeof(r))) {
		/* Uniqueness, not secrecy, is what the marker needs. */
		uint64_t v = (uint64_t)ferry__now_ms() ^ (uint64_t)getpid()
		                                                 << 32;
		memcpy(r, &v, sizeof(r));
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(es->sid + 2 * i, 3, "%02x", r[i]);
	es->s = s;
	es->io.step = es_step;
	es->io.pending = es_pending;
	es->io.next_timer = es_io_next_timer;
	ferry__io_add(s, &es->io);
	ferry__session_set_state(s, FERRY__SLOT_EXEC, es, es_free);
	*out = es;
	return 0;
}

static void es_begin(exec_state *es)
{
	es->want_spare = 1;
	if (es->mode == FERRY__EXEC_MODE_NONE)
		es_boot_next(es, K_BOOT);
}

/* ---- starting a user command -------------------------------------------- */

static int free_slot(const exec_state *es)
{
	for (int i = 0; i < SLOTS; i++)
		if (i != es->cur_slot && !es->slot_refs[i])
			return i;
	return -1;
}

static char *join_cwd(const char *base, const char *rel)
{
	if (rel[0] == '/' || !base)
		return ferry__strdup(rel);
	return ferry__asprintf("%s%s%s", base,
	                       base[strlen(base) - 1] == '/' ? "" : "/", rel);
}

static void op_launch(ferry__exec_op *op)
{
	exec_state *es = op->es;
	if (es->mode == FERRY__EXEC_MODE_FAILED) {
		op_seterr(op, es->fail_code, "%s",
		          es->fail_msg ? es->fail_msg
		                       : "exec is not available");
		op_finish(op);
		return;
	}
	char src[4096], dst[4096];
	char *cwd = op->cwd_opt ? join_cwd(es->cwd, op->cwd_opt) : NULL;
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.mark = op->mark;
	c.command = op->command;
	c.cwd = cwd ? cwd : es->cwd;
	c.env = (const char *const *)op->env;
	c.env_count = op->env_count;
	c.stderr_header = 1;
	c.invoke = es->mode == FERRY__EXEC_MODE_LOGIN ? FERRY__SH_LOGIN
	           : es->direct                       ? FERRY__SH_DIRECT
	                                              : FERRY__SH_BASH;
	if (es->mode == FERRY__EXEC_MODE_SNAPSHOT && !op->no_snapshot)
		op_take_slots(op, &c, src, dst, sizeof(src));
	int rc = (op->cwd_opt && !cwd) ? FERRY_ENOMEM
	                               : ferry__sh_wrapper(&op->req, &c);
	char cfile[4096];
	int k = -1;
	if (!rc && op->req.len > REQ_MAX) {
		/* Too long for one exec request: the text goes to a file
		 * first (one more round trip), the wrapper sources it. */
		for (int i = 0; es->dir && i < SLOTS && k < 0; i++)
			if (!es->cmd_refs[i])
				k = i;
		if (k < 0) {
			rc = FERRY_EINVALID;
			op_seterr(op, rc,
			          "command too long (%zu bytes) for one exec "
			          "request, and no private remote directory "
			          "to pass it through (shell mode %d)",
			          strlen(op->command), es->mode);
		} else {
			snprintf(cfile, sizeof(cfile), "%s/c%d", es->dir, k);
			c.command_file = cfile;
			ferry__buf_reset(&op->req);
			rc = ferry__sh_wrapper(&op->req, &c);
		}
	}
	ferry__free(cwd);
	if (rc) {
		op_seterr(op, rc, "cannot build the command: %s",
		          ferry_strerror(rc));
		op_finish(op);
		return;
	}
	es->commands++;
	if (c.command_file) {
		op_store_command(op, cfile, k);
		return;
	}
	ferry__free(op->command);
	op->command = NULL;
	op_acquire(op, 0);
}

/* A snapshot-mode command reads slot cur and writes a free one: both are
 * referenced until it ends. */
static void op_take_slots(ferry__exec_op *op, ferry__sh_cmd *c, char *src,
                          char *dst, size_t size)
{
	exec_state *es = op->es;
	int d = free_slot(es);
	snprintf(src, size, "%s/%d", es->dir, es->cur_slot);
	c->snap_src = src;
	if (d >= 0) {
		snprintf(dst, size, "%s/%d", es->dir, d);
		c->snap_dst = dst;
		op->dst_slot = d;
		es->slot_refs[d]++;
	}
	op->src_slot = es->cur_slot;
	es->slot_refs[es->cur_slot]++;
}

/* A command too long for one request: a store op writes its text to
 * cfile (command slot k) first; op waits for it. */
static void op_store_command(ferry__exec_op *op, const char *cfile, int k)
{
	exec_state *es = op->es;
	ferry__exec_op *st = op_new(es, K_STORE);
	if (!st || ferry__sh_store(&st->req, cfile)) {
		if (st) {
			op_unlink(st);
			ferry__io_remove(es->s, &st->io);
			op_free(st);
		}
		op_seterr(op, FERRY_ENOMEM, "out of memory");
		op_finish(op);
		return;
	}
	op->cmd_slot = k;
	es->cmd_refs[k]++;
	/* The store owns the text: it may outlive a cancelled op. */
	st->command = op->command;
	op->command = NULL;
	st->in = (const uint8_t *)st->command;
	st->in_len = strlen(st->command);
	st->need_close = 1;
	st->owner = op;
	op->storer = st;
	op->state = S_WAIT_STORE;
	op_acquire(st, 0);
}

/* The session's first command: one exec request runs the bootstrap and
 * then the command in the same login bash (one round trip less).  0, or
 * -1 when it does not fit (the caller boots separately). */
static int op_launch_carrier(ferry__exec_op *op)
{
	exec_state *es = op->es;
	char name[40];
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.mark = op->mark;
	c.command = op->command;
	c.cwd = op->cwd_opt; /* relative: to the login directory */
	c.env = (const char *const *)op->env;
	c.env_count = op->env_count;
	c.stderr_header = 1;
	c.snap_dst_boot = "1";
	snprintf(name, sizeof(name), "ferry-%s", es->sid);
	if (ferry__sh_bootstrap_with(&op->req, op->mark, name, &c) ||
	    op->req.len > REQ_MAX) {
		ferry__buf_reset(&op->req);
		return -1;
	}
	op->carrier = 1;
	op->dst_slot = 1;
	es->slot_refs[1]++;
	es->boot = op;
	es->mode = FERRY__EXEC_MODE_BOOTING;
	es->want_spare = 1;
	es->commands++;
	op_acquire(op, 0);
	return 0;
}

/* A session that can run commands: 0, or its error (text on it). */
static int session_usable(ferry_session *s)
{
	if (ferry__session_dead(s))
		return ferry__seterr(s, FERRY_ECONN,
		                     "the connection to %s was lost earlier",
		                     ferry__session_target(s));
	if (!ferry__session_ssh(s))
		return ferry__seterr(s, FERRY_EINVALID,
		                     "exec: the session is not connected");
	return 0;
}

/* What is wrong with a command and its options: FERRY_EINVALID or
 * FERRY_ECONN with the text on the session, or 0. */
static int start_problem(ferry_session *s, const char *command,
                         const ferry_exec_opts *o)
{
	if (!command)
		return ferry__seterr(s, FERRY_EINVALID, "exec: no command");
	if (o->version != FERRY_EXEC_OPTS_VERSION)
		return ferry__seterr(s, FERRY_EINVALID,
		                     "exec: unknown options version %u",
		                     o->version);
	if (o->stdin_len && !o->stdin_data)
		return ferry__seterr(s, FERRY_EINVALID,
		                     "exec: stdin_len without stdin_data");
	if (o->env_count && !o->env)
		return ferry__seterr(s, FERRY_EINVALID,
		                     "exec: env_count without env");
	for (size_t i = 0; i < o->env_count; i++)
		if (!ferry__sh_env_name_ok(o->env[i]))
			return ferry__seterr(
			        s, FERRY_EINVALID,
			        "exec: bad environment addition "
			        "'%.60s' (NAME=value, NAME a shell "
			        "identifier)",
			        o->env[i] ? o->env[i] : "(null)");
	if (o->cwd && !*o->cwd)
		return ferry__seterr(s, FERRY_EINVALID, "exec: empty cwd");
	return session_usable(s);
}

/* The op's own copies of what o says. */
static int op_take_opts(ferry__exec_op *op, const char *command,
                        const ferry_exec_opts *o)
{
	int error;
	op->on_output = o->on_output;
	op->ctx = o->ctx;
	op->separate = o->separate_stderr || o->on_output;
	op->no_snapshot = o->no_snapshot;
	op->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 0;
	op->in = o->stdin_data;
	op->in_len = o->stdin_len;
	sink_init(&op->out, o->output_cap);
	sink_init(&op->err, o->output_cap);
	if (op->timeout_ms)
		op->deadline = (int64_t)ferry__now_ms() + op->timeout_ms;
	op->command = ferry__strdup(command);
	error = op->command ? 0 : FERRY_ENOMEM;
	if (!error && o->cwd) {
		op->cwd_opt = ferry__strdup(o->cwd);
		error = op->cwd_opt ? 0 : FERRY_ENOMEM;
	}
	if (!error && o->env_count) {
		op->env = ferry__calloc(o->env_count, sizeof(char *));
		error = op->env ? 0 : FERRY_ENOMEM;
		for (size_t i = 0; !error && i < o->env_count; i++) {
			op->env[i] = ferry__strdup(o->env[i]);
			op->env_count++;
			error = op->env[i] ? 0 : FERRY_ENOMEM;
		}
	}
	if (!error)
		error = ferry__sh_filter_init(&op->fout, op->mark, 1);
	if (!error)
		error = ferry__sh_filter_init(&op->ferr, op->mark, 0);
	return error;
}

int ferry__exec_start(ferry_session *s, const char *command,
                      const ferry_exec_opts *o, ferry__exec_op **out)
{
	ferry_exec_opts defaults = FERRY_EXEC_OPTS_INIT;
	exec_state *es = NULL;
	if (out)
		*out = NULL;
	if (!s || !out)
		return FERRY_EINVALID;
	if (!o)
		o = &defaults;
	int error = start_problem(s, command, o);
	if (error || (error = es_get(s, &es)))
		return error;
	es_bury(es);
	ferry__exec_op *op = op_new(es, K_USER);
	if (!op)
		return ferry__seterr(s, FERRY_ENOMEM, "out of memory");
	if ((error = op_take_opts(op, command, o))) {
		op_unlink(op);
		ferry__io_remove(s, &op->io);
		op_free(op);
		return ferry__seterr(s, error, "exec: %s",
		                     ferry_strerror(error));
	}
	op->state = S_WAIT_SHELL;
	if (es->mode == FERRY__EXEC_MODE_NONE && !op->no_snapshot &&
	    op_launch_carrier(op) == 0) {
		*out = op;
		return 0;
	}
	es_begin(es); /* may fail the op: out of memory */
	if (op->state == S_WAIT_SHELL && es->mode != FERRY__EXEC_MODE_BOOTING &&
	    es->mode != FERRY__EXEC_MODE_NONE)
		op_launch(op);
	*out = op;
	return 0;
}

int ferry__exec_done(const ferry__exec_op *op)
{
	return !op || op->state == S_DONE;
}

void ferry__exec_cancel(ferry__exec_op *op)
{
	if (op)
		op_abort(op, 0);
}

int ferry_exec_prepare(ferry_session *s)
{
	return ferry__exec_prepare(s);
}

int ferry__exec_prepare(ferry_session *s)
{
	exec_state *es = NULL;
	if (!s)
		return FERRY_EINVALID;
	int error = session_usable(s);
	if (!error)
		error = es_get(s, &es);
	if (error)
		return error;
	es_begin(es);
	es_step(&es->io); /* the first channel open leaves now */
	return 0;
}

/* ---- waiting ------------------------------------------------------------ */

typedef struct wait_ctx {
	ferry__exec_op *const *ops;
	size_t n;
} wait_ctx;

static int64_t es_next_timer(const exec_state *es);

static int all_done(void *ctx)
{
	wait_ctx *w = ctx;
	for (size_t i = 0; i < w->n; i++)
		if (w->ops[i] && w->ops[i]->state != S_DONE)
			return 0;
	return 1;
}

/* The one timer layer: the session loop never sleeps past an op's timeout,
 * drain limit or kill deadline (exec::silent_command_times_out_on_time
 * fails without it), and the op's step acts on it. */
static int64_t es_io_next_timer(ferry__io *io)
{
	return es_next_timer(CONTAINER(io, exec_state, io));
}

/* The earliest timer of any live op (0: none). */
static int64_t es_next_timer(const exec_state *es)
{
	int64_t t = 0;
	for (const ferry__exec_op *op = es->ops; op; op = op->next) {
		if (op->state == S_DONE)
			continue;
		int64_t c[3] = {op->state != S_KILL ? op->deadline : 0,
		                op->drain_at,
		                op->state == S_KILL ? op->kill_until : 0};
		for (int i = 0; i < 3; i++)
			if (c[i] && (!t || c[i] < t))
				t = c[i];
	}
	return t;
}

/* The connection is gone: every live op fails with rc. */
static void es_fail_all(exec_state *es, int rc)
{
	ferry__exec_op *op = es->ops;
	while (op) {
		ferry__exec_op *next = op->next;
		if (op->state == S_DONE) {
			op = next;
			continue;
		}
		op_seterr(op, rc, "%s", ferry_session_errmsg(es->s));
		if (op->kind == K_BOOT || op->kind == K_PROBE ||
		    op->kind == K_LPROBE)
			es->closing_session = 1; /* no further attempts */
		op_finish(op);
		op = next;
	}
	if (es->mode == FERRY__EXEC_MODE_BOOTING)
		es->mode = FERRY__EXEC_MODE_NONE;
	es->closing_session = 0;
	/* A dead session's channels are left to libssh2_session_free. */
	es->spare = NULL;
	es->nclosing = 0;
	es->opening = 0;
}

static int wait_flags(ferry_session *s, ferry__exec_op *const *ops, size_t n,
                      int64_t deadline, unsigned flags)
{
	exec_state *es = ferry__session_state(s, FERRY__SLOT_EXEC);
	wait_ctx w = {ops, n};
	if (!es)
		return 0;
	for (;;) {
		es_bury(es);
		if (all_done(&w))
			return 0;
		int rc = ferry__session_run(s, all_done, &w, deadline, flags);
		if (rc == 0)
			continue;
		if (rc == FERRY_ETIMEOUT && !ferry__session_dead(s) &&
		    deadline && ferry__now_ms() < deadline)
			continue;
		if (rc == FERRY_EINTR && !ferry__session_dead(s)) {
			for (size_t i = 0; i < n; i++)
				if (ops[i])
					op_abort(ops[i], 0);
			flags |= FERRY__RUN_NOINTR;
			continue;
		}
		if (rc == FERRY_ETIMEOUT && !ferry__session_dead(s))
			return rc;
		es_fail_all(es, rc);
		es_bury(es);
		return rc;
	}
}

int ferry__exec_wait(ferry_session *s, ferry__exec_op *const *ops, size_t n,
                     int64_t deadline_ms)
{
	if (!s || (n && !ops))
		return FERRY_EINVALID;
	return wait_flags(s, ops, n, deadline_ms, 0);
}

int ferry__exec_finish(ferry__exec_op *op, ferry_exec_result *result)
{
	if (!op)
		return FERRY_EINVALID;
	exec_state *es = op->es;
	if (op->state != S_DONE) {
		op_abort(op, 0);
		wait_flags(es->s, &op, 1,
		           (int64_t)ferry__now_ms() + KILL_WAIT_MS + 500,
		           FERRY__RUN_NOINTR);
		if (op->state != S_DONE) {
			op_seterr(op, FERRY_ETIMEOUT,
			          "the command could not be stopped");
			op_finish(op);
		}
	}
	int error = op->error;
	if (error && op->errmsg)
		ferry__seterr(es->s, error, "%s", op->errmsg);
	/* ferry_interrupt()'s contract: the call returns FERRY_EINTR (the
	 * result says what ran: exit 130, output so far). */
	if (!error && op->interrupted)
		error = ferry__seterr(es->s, FERRY_EINTR,
		                      "interrupted: the remote command was "
		                      "killed");
	if (result) {
		memset(result, 0, sizeof(*result));
		result->exit_status = op->exit_status;
		result->timed_out = op->timed_out;
		result->interrupted = op->interrupted;
		result->duration_ms = op->duration_ms;
		int rc = 0;
		if (!op->on_output) {
			rc = sink_take(&op->out, &result->output,
			               &result->output_len,
			               &result->output_truncated);
			if (!rc && op->separate)
				rc = sink_take(&op->err, &result->err,
				               &result->err_len,
				               &result->output_truncated);
		}
		if (!rc && es->cwd && !(result->cwd = ferry__strdup(es->cwd)))
			rc = FERRY_ENOMEM;
		if (rc && !error) {
			error = ferry__seterr(es->s, rc,
			                      "exec: out of memory for the "
			                      "output");
		}
	}
	op_unlink(op);
	op_free(op);
	es_bury(es);
	return error;
}

/* ---- the public API ----------------------------------------------------- */

int ferry_exec(ferry_session *s, const char *command,
               const ferry_exec_opts *opts, ferry_exec_result *result)
{
	ferry__exec_op *op = NULL;
	if (result) {
		memset(result, 0, sizeof(*result));
		result->exit_status = 255;
	}
	int error = ferry__exec_start(s, command, opts, &op);
	if (error)
		return error;
	int rc = wait_flags(s, &op, 1, 0, 0);
	error = ferry__exec_finish(op, result);
	return error ? error : rc;
}

void ferry_exec_result_free(ferry_exec_result *r)
{
	if (!r)
		return;
	ferry__free(r->output);
	ferry__free(r->err);
	ferry__free(r->cwd);
	memset(r, 0, sizeof(*r));
}

void ferry__exec_info_get(ferry_session *s, ferry__exec_info *out)
{
	memset(out, 0, sizeof(*out));
	exec_state *es = s ? ferry__session_state(s, FERRY__SLOT_EXEC) : NULL;
	if (!es)
		return;
	out->mode = es->mode;
	out->direct = es->direct;
	out->snapshot_dir = es->dir;
	out->cwd = es->cwd;
	out->spare = es->spare != NULL;
	out->closing = (unsigned)es->nclosing;
	out->commands = es->commands;
	out->channels =
	        out->closing + (es->spare ? 1u : 0u) + (es->opening ? 1u : 0u);
	for (ferry__exec_op *op = es->ops; op; op = op->next) {
		if (op->state == S_DONE)
			continue;
		out->ops++;
		if (op->ch)
			out->channels++;
	}
}

/* ---- session close ------------------------------------------------------ */

static int es_quiet(void *ctx)
{
	exec_state *es = ctx;
	for (const ferry__exec_op *op = es->ops; op; op = op->next)
		if (op->state != S_DONE)
			return 0;
	return !es->nclosing && !es->opening;
}

/* Snapshot directory names end in "/ferry-<sid>": anything else is not
 * ours to remove. */
static int dir_is_ours(const exec_state *es)
{
	char tail[40];
	int n = snprintf(tail, sizeof(tail), "/ferry-%s", es->sid);
	size_t len = es->dir ? strlen(es->dir) : 0;
	return n > 0 && len > (size_t)n &&
	       !strcmp(es->dir + len - (size_t)n, tail) && es->dir[0] == '/';
}

/* Run the loop until no op but finished user ones is left, or until. */
static void es_settle(exec_state *es, int64_t until)
{
	ferry_session *s = es->s;
	for (;;) {
		int busy = 0;
		for (ferry__exec_op *op = es->ops; op; op = op->next)
			busy |= op->state != S_DONE;
		if (!busy || ferry__now_ms() >= until || ferry__session_dead(s))
			return;
		int64_t t = es_next_timer(es);
		int rc = ferry__session_run(s, es_quiet, es,
		                            t && t < until ? t : until,
		                            FERRY__RUN_NOINTR);
		es_bury(es);
		if (rc && rc != FERRY_ETIMEOUT)
			return;
	}
}

static void es_free(void *p)
{
	exec_state *es = p;
	ferry_session *s = es->s;
	if (!ferry__session_dead(s) && ferry__session_ssh(s)) {
		int64_t until = (int64_t)ferry__now_ms() + CLOSE_WAIT_MS;
		es->want_spare = 0;
		es->closing_session = 1;
		/* Commands still running are killed, not orphaned; a
		 * bootstrap in flight is let finish (it makes the
		 * directory removed next). */
		for (ferry__exec_op *op = es->ops; op; op = op->next)
			if (op->kind == K_USER)
				op_abort(op, 0);
		es_settle(es, until);
		if (es->dir && dir_is_ours(es)) {
			ferry__exec_op *op = op_new(es, K_CLEANUP);
			if (op && !ferry__sh_cleanup(&op->req, es->dir)) {
				op->need_close = 1;
				op_acquire(op, 0);
			} else if (op) {
				op_finish(op);
			}
			es_settle(es, until);
		}
		/* Every channel closed together: one round trip. */
		ferry__exec_op *op = es->ops;
		while (op) {
			ferry__exec_op *next = op->next;
			if (op->state != S_DONE)
				op_finish(op);
			op = next;
		}
		if (es->spare) {
			es_dispose_channel(es, es->spare);
			es->spare = NULL;
		}
		while (!ferry__session_dead(s) &&
		       (es->nclosing || es->opening) &&
		       ferry__now_ms() < until) {
			int rc = ferry__session_run(s, es_quiet, es, until,
			                            FERRY__RUN_NOINTR);
			if (rc)
				break;
		}
	}
	/* User ops still allocated belong to their callers' handles, which
	 * become invalid now. */
	while (es->ops) {
		ferry__exec_op *op = es->ops;
		op_unlink(op);
		ferry__io_remove(s, &op->io);
		op_free(op);
	}
	es_bury(es);
	ferry__io_remove(s, &es->io);
	ferry__free(es->closing);
	ferry__free(es->dir);
	ferry__free(es->cwd);
	ferry__free(es->fail_msg);
	ferry__buf_free(&es->diag);
	ferry__free(es);
	ferry__session_set_state(s, FERRY__SLOT_EXEC, NULL, NULL);
}
