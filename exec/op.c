/* op.c - operations (exec_int.h): one per command, internal ones included
 * (bootstrap, probes, kill, cleanup, storing a long command).  Each is an
 * io on the session's loop; this file holds their life: creation, the
 * step, output delivery, timeouts and kills, completion, and launching a
 * user command with its snapshot slots. */
#include "exec_int.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"

static int op_step(ferry__io *io);
static int op_pending(ferry__io *io);
static void op_take_slots(ferry__exec_op *op, ferry__sh_cmd *c, char *src,
                          char *dst, size_t size);
static void op_store_command(ferry__exec_op *op, const char *cfile, int k);

/* ---- ops: allocation and lists ------------------------------------------ */

ferry__exec_op *ferry__ex_op_new(exec_state *es, int kind)
{
	ferry__exec_op *op = ferry__calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->es = es;
	op->kind = kind;
	op->state = S_NEW;
	op->src_slot = op->dst_slot = -1;
	op->cmd_slot = -1;
	op->pre_slot = -1;
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
	ferry__ex_sink_init(&op->out, 0);
	ferry__ex_sink_init(&op->err, 0);
	op->next = es->ops;
	if (es->ops)
		es->ops->prev = op;
	es->ops = op;
	ferry__io_add(es->s, &op->io);
	return op;
}

int ferry__ex_op_new_mark(ferry__exec_op *op)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t r[FERRY__SH_MARK_LEN / 2];
	if (ferry__random_bytes(r, sizeof(r))) {
		memset(op->mark, 0, sizeof(op->mark));
		op->pre_len = 0;
		return FERRY_EIO;
	}
	for (size_t i = 0; i < sizeof(r); i++) {
		op->mark[2 * i] = hex[r[i] >> 4];
		op->mark[2 * i + 1] = hex[r[i] & 15];
	}
	op->mark[FERRY__SH_MARK_LEN] = '\0';
	explicit_bzero(r, sizeof(r));
	memcpy(op->pre, op->mark, FERRY__SH_MARK_LEN);
	op->pre[FERRY__SH_MARK_LEN] = '\n';
	op->pre_len = FERRY__SH_MARK_LEN + 1;
	op->pre_off = 0;
	return 0;
}

void ferry__ex_op_unlink(ferry__exec_op *op)
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

void ferry__ex_op_free(ferry__exec_op *op)
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
	ferry__ex_sink_free(&op->out);
	ferry__ex_sink_free(&op->err);
	ferry__buf_free(&op->raw_out);
	ferry__buf_free(&op->raw_err);
	ferry__free(op->errmsg);
	explicit_bzero(op->mark, sizeof(op->mark));
	explicit_bzero(op->pre, sizeof(op->pre));
	ferry__free(op);
}

void ferry__ex_op_seterr(ferry__exec_op *op, int code, const char *fmt, ...)
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
void ferry__ex_op_fail_ssh(ferry__exec_op *op, int rc, const char *what)
{
	ferry_session *s = op->es->s;
	if (ferry__ssh_conn_lost(rc) || ferry__session_dead(s)) {
		ferry__session_mark_dead(s);
		ferry__seterr(s, FERRY_EEOF,
		              "connection to %s lost while %s: %s",
		              ferry__session_target(s), what,
		              ferry__ssh_msg(ferry__session_ssh(s)));
		ferry__ex_op_seterr(op, FERRY_EEOF, "%s",
		                    ferry_session_errmsg(s));
		return;
	}
	ferry__ex_op_seterr(op, FERRY_EREMOTE,
	                    "%s: %s failed: %s (libssh2 error %d)",
	                    ferry__session_target(s), what,
	                    ferry__ssh_msg(ferry__session_ssh(s)), rc);
}

/* ---- delivering output -------------------------------------------------- */

static void user_emit(ferry__exec_op *op, int stream, const void *p, size_t n)
{
	if (op->timed_out || op->interrupted)
		return; /* a killed command's last words are not its output */
	if (op->on_output)
		op->on_output(op->ctx, stream, p, n);
	else if (stream == 2 && op->separate)
		ferry__ex_sink_put(&op->err, p, n);
	else
		ferry__ex_sink_put(&op->out, p, n);
}

static void filter_emit(void *ctx, const void *p, size_t n)
{
	emit_ctx *ec = ctx;
	user_emit(ec->op, ec->stream, p, n);
}

void ferry__ex_deliver(ferry__exec_op *op, int stream, const char *p, size_t n)
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
		ferry__ex_op_seterr(op, rc, "out of memory reading the output");
}

/* ---- killing ------------------------------------------------------------ */

static void spawn_kill(ferry__exec_op *op, long pgid)
{
	exec_state *es = op->es;
	ferry__exec_op *k = ferry__ex_op_new(es, K_KILL);
	if (k &&
	    (ferry__sh_kill(&k->req, pgid) || ferry__ex_op_use_reader(k))) {
		ferry__ex_op_unlink(k);
		ferry__io_remove(es->s, &k->io);
		ferry__ex_op_free(k);
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
	ferry__ex_op_acquire(k, 1);
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
void ferry__ex_op_abort(ferry__exec_op *op, int timeout)
{
	if (op->state == S_DONE || op->timed_out || op->interrupted)
		return;
	/* The command ran to its end (its trailer came; the drain is on): an
	 * interrupt now does not make it "interrupted". */
	if (!timeout && op->kind == K_USER &&
	    (op->fout.have_cand || op->fout.have_trailer))
		return;
	if (op->kind != K_USER) {
		ferry__ex_op_seterr(op, timeout ? FERRY_ETIMEOUT : FERRY_EINTR,
		                    timeout ? "timed out" : "interrupted");
		ferry__ex_op_finish(op);
		return;
	}
	/* What the command printed so far is its output. */
	ferry__sh_filter_flush(&op->fout, filter_emit, &op->ec_out);
	/* Flags of the result; the command's streams get nothing of
	 * ferry's (the CLI says what happened). */
	if (timeout)
		op->timed_out = 1;
	else
		op->interrupted = 1;
	/* Through the reader, a script runs once all of it is sent. */
	int reached = op->reader ? op->pre_off >= op->pre_len &&
	                                   op->text_off >= op->req.len
	                         : op->req_sent;
	if (!reached) {
		/* It never reached the remote: nothing to kill. */
		op->kill_confirmed = 1;
		ferry__ex_op_finish(op);
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
				ferry__ex_op_finish(op);
				return;
			}
			if (!op->drain_at)
				op->drain_at = now + DRAIN_MS;
		}
		if ((op->drain_at && now >= op->drain_at) ||
		    now >= op->kill_until)
			ferry__ex_op_finish(op);
		return;
	}
	if (op->state != S_RUN)
		return;
	if (op->fout.have_cand || op->fout.have_trailer) {
		/* The wrapper wrote its trailer: it has ended, unless
		 * another trailer follows (then that one counts, and the
		 * drain starts again from it). */
		if (op->out_eof) {
			ferry__ex_op_finish(op);
		} else if (!op->drain_at || op->drain_cands != op->fout.cands) {
			op->drain_at = now + DRAIN_MS;
			op->drain_cands = op->fout.cands;
		} else if (now >= op->drain_at) {
			ferry__log(op->es->s, FERRY_LOG_DEBUG,
			           "exec: output still open %d ms after the "
			           "command ended (a background process?): "
			           "closing",
			           DRAIN_MS);
			ferry__ex_op_finish(op);
		}
		return;
	}
	if (op->out_eof) {
		/* No trailer: cd failed (126), the command replaced the
		 * shell (exec) or removed our trap.  The channel's exit
		 * status is the answer. */
		op->need_close = 1;
		if (op->closed)
			ferry__ex_op_finish(op);
	}
}

static int op_step(ferry__io *io)
{
	ferry__exec_op *op = CONTAINER(io, ferry__exec_op, io);
	int progress = 0;
	if (op->state == S_DONE)
		return 0;
	if (op->stop && *op->stop && op->kind == K_USER && !op->stop_seen) {
		op->stop_seen = 1;
		ferry__ex_op_abort(op, 0);
		progress = 1;
		if (op->state == S_DONE)
			return 1;
	}
	int64_t now = ferry__now_ms();
	/* A command whose trailer came is over: the drain ends it. */
	if (op->deadline && now >= op->deadline && op->state != S_KILL &&
	    !op->fout.have_cand && !op->fout.have_trailer) {
		op->deadline = 0;
		ferry__ex_op_abort(op, 1);
		progress = 1;
		if (op->state == S_DONE)
			return 1;
	}
	if (!op->ch)
		return progress;
	progress |= ferry__ex_chan_io(op);
	if (op->state == S_DONE || !op->ch)
		return 1;
	if (op->kind == K_USER) {
		check_user(op, now);
	} else if (op->out_eof && op->closed) {
		op->status = ferry__ex_channel_status(op);
		ferry__ex_op_finish(op);
	} else if (op->error) {
		ferry__ex_op_finish(op);
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
	if (op->window_wait && ferry__ex_stdin_left(op) &&
	    libssh2_channel_window_write(op->ch) > 0)
		return 1; /* the window opened: write stdin now */
	if (libssh2_poll_channel_read(op->ch, 1) > 0)
		return 1;
	if (!op->out_eof && libssh2_channel_eof(op->ch) == 1)
		return 1;
	if (op->out_eof && op->need_close && !op->closed)
		return -1;
	return 0;
}

void ferry__ex_es_release_slots(exec_state *es, ferry__exec_op *op)
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

static void finish_user(ferry__exec_op *op)
{
	exec_state *es = op->es;
	if (op->carrier)
		ferry__ex_carrier_boot(op);
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
		int st = ferry__ex_channel_status(op);
		int ran = op->fout.have_header || op->ferr.have_header;
		op->exit_status = st >= 0 ? st : 255;
		if (!ran && st == FERRY__SH_NOMARK)
			ferry__ex_op_seterr(
			        op, FERRY_EREMOTE,
			        "%s: the command did not run: its wrapper did "
			        "not read its marker from stdin (does a "
			        "startup file of the account read stdin?)",
			        ferry__session_target(es->s));
		else if (!ran && st != 126)
			ferry__log(es->s, FERRY_LOG_DEBUG,
			           "exec: the wrapper did not run (status %d)",
			           st);
	}
	if (op->error && !op->timed_out && !op->interrupted)
		op->exit_status = 255;
	ferry__ex_es_release_slots(es, op);
	if (op->killer) {
		op->killer->owner = NULL; /* it finishes on its own */
		op->killer = NULL;
	}
	if (op->storer) {
		op->storer->owner = NULL;
		op->storer = NULL;
	}
}

/* The long command is in its file (or not): the command goes on. */
static void store_done(ferry__exec_op *st)
{
	ferry__exec_op *op = st->owner;
	op->storer = NULL;
	st->owner = NULL;
	if (op->state != S_WAIT_STORE)
		return;
	if (st->error || st->status != 0) {
		ferry__ex_op_seterr(
		        op, st->error ? st->error : FERRY_EREMOTE,
		        "%s: could not write the command (%zu bytes) to a "
		        "remote file: %s",
		        ferry__session_target(op->es->s), st->in_len,
		        st->errmsg ? st->errmsg : "cat failed");
		ferry__ex_op_finish(op);
		return;
	}
	ferry__ex_op_acquire(op, 0);
}

void ferry__ex_op_finish(ferry__exec_op *op)
{
	exec_state *es = op->es;
	if (op->state == S_DONE)
		return;
	ferry__ex_wq_remove(es, op);
	if (op->carrier && !op->timed_out && !op->interrupted && !op->error &&
	    !op->fout.have_header && !op->ferr.have_header &&
	    !es->closing_session) {
		ferry__ex_carrier_retry(op);
		return;
	}
	if (op->kind == K_USER)
		finish_user(op);
	/* The kill script exits 0 only when nothing of the command is left
	 * (exec/shell.c ferry__sh_kill). */
	if (op->kind == K_KILL)
		op->confirmed = ferry__ex_channel_status(op) == 0;
	ferry__ex_op_drop_channel(op);
	op->state = S_DONE;
	op->duration_ms = ferry__now_ms_f() - op->t0;
	ferry__io_remove(es->s, &op->io);
	if (op->kind == K_USER) {
		ferry__ex_carrier_settled(es);
		return; /* listed and kept until ferry__exec_finish */
	}
	ferry__ex_op_unlink(op);
	if (op->kind == K_KILL && op->owner) {
		op->owner->kill_done = 1;
		op->owner->kill_confirmed = op->confirmed;
		op->owner->killer = NULL;
	}
	if (op->kind == K_STORE && op->owner)
		store_done(op);
	if (op->kind == K_BOOT || op->kind == K_PROBE || op->kind == K_LPROBE)
		ferry__ex_boot_done(op);
	/* Freed at a safe point: the loop may hold a pointer to it. */
	op->next = es->graveyard;
	es->graveyard = op;
}

void ferry__ex_es_bury(exec_state *es)
{
	while (es->graveyard) {
		ferry__exec_op *op = es->graveyard;
		es->graveyard = op->next;
		ferry__ex_op_free(op);
	}
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
	/* Absolute, or "~" / "~/x": the script's cd reads those itself. */
	if (rel[0] == '/' || !base ||
	    (rel[0] == '~' && (rel[1] == '\0' || rel[1] == '/')))
		return ferry__strdup(rel);
	return ferry__asprintf("%s%s%s", base,
	                       base[strlen(base) - 1] == '/' ? "" : "/", rel);
}

void ferry__ex_op_launch(ferry__exec_op *op)
{
	exec_state *es = op->es;
	if (es->mode == FERRY__EXEC_MODE_FAILED) {
		ferry__ex_op_seterr(op, es->fail_code, "%s",
		                    es->fail_msg ? es->fail_msg
		                                 : "exec is not available");
		ferry__ex_op_finish(op);
		return;
	}
	char src[4096], dst[4096];
	char *cwd = op->cwd_opt ? join_cwd(es->cwd, op->cwd_opt) : NULL;
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.command = op->command;
	c.cwd = cwd ? cwd : es->cwd;
	c.env = (const char *const *)op->env;
	c.env_count = op->env_count;
	c.stderr_header = 1;
	/* The reader (shell.h) has read the marker and runs the text. */
	c.have_mark = 1;
	c.reader_traps = 1;
	c.invoke = FERRY__SH_DIRECT;
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
			ferry__ex_op_seterr(
			        op, rc,
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
		ferry__ex_op_seterr(op, rc, "cannot build the command: %s",
		                    ferry_strerror(rc));
		ferry__ex_op_finish(op);
		return;
	}
	rc = ferry__ex_op_use_reader(op);
	if (rc) {
		ferry__ex_op_seterr(op, rc, "cannot build the command: %s",
		                    ferry_strerror(rc));
		ferry__ex_op_finish(op);
		return;
	}
	es->commands++;
	if (c.command_file) {
		op_store_command(op, cfile, k);
		return;
	}
	ferry__free(op->command);
	op->command = NULL;
	ferry__ex_op_acquire(op, 0);
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
	ferry__exec_op *st = ferry__ex_op_new(es, K_STORE);
	if (!st || ferry__sh_store(&st->req, cfile) ||
	    ferry__ex_op_use_reader(st)) {
		if (st) {
			ferry__ex_op_unlink(st);
			ferry__io_remove(es->s, &st->io);
			ferry__ex_op_free(st);
		}
		ferry__ex_op_seterr(op, FERRY_ENOMEM, "out of memory");
		ferry__ex_op_finish(op);
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
	ferry__ex_op_acquire(st, 0);
}
