/* exec.c - ferry_exec: commands over the held session; the per-session
 * state (created on first use, freed at session close), starting, waiting
 * for and finishing operations, and the public API.
 *
 * Pieces (exec/README.md has the whole contract and the map of files):
 * - exec_state, one per session (the session's FERRY__SLOT_EXEC): the shell
 *   mode found by the bootstrap (boot.c), the remote snapshot directory and
 *   the session cwd, the channel broker (channel.c) with one spare channel
 *   kept open ahead of need, and channels being closed in the background.
 *   Its io is registered for the life of the session.
 * - ferry__exec_op, one per command, internal ones included (bootstrap,
 *   probes, kill, cleanup): op.c.  Each is an io on the session's loop: exec
 *   request, stdin, output through the filter of shell.c into sinks
 *   (sink.c), completion.
 *
 * Snapshot files are slots "DIR/N": a command sources the current slot
 * and dumps into a free one, which becomes current only when the trailer
 * says the dump completed.  Slots in use by running commands are never
 * reused, so concurrent commands never read a half-written file, and no
 * mv (a fork) is needed per command.
 */
#include "exec_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"

static int64_t es_io_next_timer(ferry__io *io);
static void es_free(void *p);
static void es_reset(void *p);
static int64_t es_next_timer(const exec_state *es);

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
		/* The directory's name: uniqueness, not secrecy (the markers
		 * are secret, and fresh per command: op.c). */
		uint64_t v = (uint64_t)ferry__now_ms() ^ (uint64_t)getpid()
		                                                 << 32;
		memcpy(r, &v, sizeof(r));
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(es->sid + 2 * i, 3, "%02x", r[i]);
	es->s = s;
	es->pre_slot = -1;
	es->io.step = ferry__ex_es_step;
	es->io.pending = ferry__ex_es_pending;
	es->io.next_timer = es_io_next_timer;
	ferry__io_add(s, &es->io);
	ferry__session_set_state(s, FERRY__SLOT_EXEC, es, es_free);
	ferry__session_set_reset(s, FERRY__SLOT_EXEC, es_reset);
	*out = es;
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
	if (!ferry_struct_size(FERRY_STRUCT_EXEC_OPTS, o->version))
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
	op->stop = o->version >= 2 ? o->stop : NULL;
	op->in = o->stdin_data;
	op->in_len = o->stdin_len;
	ferry__ex_sink_init(&op->out, o->output_cap);
	ferry__ex_sink_init(&op->err, o->output_cap);
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
		error = ferry__ex_op_new_mark(op);
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
	ferry__ex_es_bury(es);
	ferry__exec_op *op = ferry__ex_op_new(es, K_USER);
	if (!op)
		return ferry__seterr(s, FERRY_ENOMEM, "out of memory");
	if ((error = op_take_opts(op, command, o))) {
		ferry__ex_op_unlink(op);
		ferry__io_remove(s, &op->io);
		ferry__ex_op_free(op);
		if (error == FERRY_EIO)
			return ferry__seterr(s, error,
			                     "exec: no randomness for the "
			                     "command's secret marker "
			                     "(getrandom failed): not run");
		return ferry__seterr(s, error, "exec: %s",
		                     ferry_strerror(error));
	}
	op->state = S_WAIT_SHELL;
	if (es->mode == FERRY__EXEC_MODE_NONE && !op->no_snapshot &&
	    !es->keep_dir && ferry__ex_op_launch_carrier(op) == 0) {
		*out = op;
		return 0;
	}
	ferry__ex_es_begin(es); /* may fail the op: out of memory */
	if (op->state == S_WAIT_SHELL && es->mode != FERRY__EXEC_MODE_BOOTING &&
	    es->mode != FERRY__EXEC_MODE_NONE)
		ferry__ex_op_launch(op);
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
		ferry__ex_op_abort(op, 0);
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
	ferry__ex_es_begin(es);
	ferry__ex_es_step(&es->io); /* the first channel open leaves now */
	return 0;
}

typedef struct wait_ctx {
	ferry__exec_op *const *ops;
	size_t n;
} wait_ctx;

/* ---- waiting ------------------------------------------------------------ */

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
		double prime = ferry__ex_op_holds_prime(op, ferry__now_ms_f());
		int64_t c[4] = {op->state != S_KILL ? op->deadline : 0,
		                op->drain_at,
		                op->state == S_KILL ? op->kill_until : 0,
		                prime ? (int64_t)prime + 1 : 0};
		for (int i = 0; i < 4; i++)
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
		ferry__ex_op_seterr(op, rc, "%s", ferry_session_errmsg(es->s));
		if (op->kind == K_BOOT || op->kind == K_PROBE ||
		    op->kind == K_LPROBE)
			es->closing_session = 1; /* no further attempts */
		ferry__ex_op_finish(op);
		op = next;
	}
	if (es->mode == FERRY__EXEC_MODE_BOOTING)
		es->mode = FERRY__EXEC_MODE_NONE;
	es->closing_session = 0;
	/* A dead session's channels are left to libssh2_session_free. */
	es->spare = NULL;
	es->spare_req = 0;
	es->pre_slot = -1;
	es->nclosing = 0;
	es->opening = 0;
}

/* The connection was made again (ferry_session_reconnect): what belonged
 * to the old one is gone; the shell's state is taken back by the next
 * bootstrap when its directory survived. */
static void es_reset(void *p)
{
	exec_state *es = p;
	es_fail_all(es, FERRY_ECONN);
	ferry__ex_es_bury(es);
	ferry__free(es->keep_dir);
	ferry__free(es->keep_cwd);
	es->keep_dir = es->keep_cwd = NULL;
	if (es->mode == FERRY__EXEC_MODE_SNAPSHOT && es->dir) {
		es->keep_dir = es->dir;
		es->keep_slot = es->cur_slot;
		es->dir = NULL;
	}
	if (es->mode != FERRY__EXEC_MODE_FAILED && es->cwd) {
		es->keep_cwd = es->cwd;
		es->cwd = NULL;
	}
	/* Slots and command files belonged to the old directory. */
	memset(es->slot_refs, 0, sizeof(es->slot_refs));
	memset(es->cmd_refs, 0, sizeof(es->cmd_refs));
	es->cur_slot = 0;
	es->mode = FERRY__EXEC_MODE_NONE;
	es->boot = NULL;
	es->want_spare = 0;
	es->exec_seen = 0;
	es->reconnects++;
	es->restored = 0;
}

static int wait_flags(ferry_session *s, ferry__exec_op *const *ops, size_t n,
                      int64_t deadline, unsigned flags)
{
	exec_state *es = ferry__session_state(s, FERRY__SLOT_EXEC);
	wait_ctx w = {ops, n};
	if (!es)
		return 0;
	for (;;) {
		ferry__ex_es_bury(es);
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
					ferry__ex_op_abort(ops[i], 0);
			flags |= FERRY__RUN_NOINTR;
			continue;
		}
		if (rc == FERRY_ETIMEOUT && !ferry__session_dead(s))
			return rc;
		es_fail_all(es, rc);
		ferry__ex_es_bury(es);
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
		ferry__ex_op_abort(op, 0);
		wait_flags(es->s, &op, 1,
		           (int64_t)ferry__now_ms() + KILL_WAIT_MS + 500,
		           FERRY__RUN_NOINTR);
		if (op->state != S_DONE) {
			ferry__ex_op_seterr(op, FERRY_ETIMEOUT,
			                    "the command could not be stopped");
			ferry__ex_op_finish(op);
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
		result->killed = (op->timed_out || op->interrupted) &&
		                 op->kill_confirmed;
		result->duration_ms = op->duration_ms;
		int rc = 0;
		if (!op->on_output) {
			rc = ferry__ex_sink_take(&op->out, &result->output,
			                         &result->output_len,
			                         &result->output_truncated);
			if (!rc && op->separate)
				rc = ferry__ex_sink_take(
				        &op->err, &result->err,
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
	ferry__ex_op_unlink(op);
	ferry__ex_op_free(op);
	ferry__ex_es_bury(es);
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
	if (s)
		ferry__session_call_begin(s);
	int error = ferry__exec_start(s, command, opts, &op);
	if (error) {
		if (s)
			ferry__session_call_end(s);
		return error;
	}
	int rc = wait_flags(s, &op, 1, 0, 0);
	error = ferry__exec_finish(op, result);
	ferry__session_call_end(s);
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
	out->spare_reader = es->spare && es->spare_req == 2;
	out->reconnects = es->reconnects;
	out->restored = es->restored;
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
		ferry__ex_es_bury(es);
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
				ferry__ex_op_abort(op, 0);
		es_settle(es, until);
		if (es->dir && dir_is_ours(es)) {
			ferry__exec_op *op = ferry__ex_op_new(es, K_CLEANUP);
			if (op && !ferry__sh_cleanup(&op->req, es->dir) &&
			    !ferry__ex_op_use_reader(op)) {
				op->need_close = 1;
				ferry__ex_op_acquire(op, 0);
			} else if (op) {
				ferry__ex_op_finish(op);
			}
			es_settle(es, until);
		}
		/* Every channel closed together: one round trip. */
		ferry__exec_op *op = es->ops;
		while (op) {
			ferry__exec_op *next = op->next;
			if (op->state != S_DONE)
				ferry__ex_op_finish(op);
			op = next;
		}
		ferry__ex_es_drop_spare(es);
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
		ferry__ex_op_unlink(op);
		ferry__io_remove(s, &op->io);
		ferry__ex_op_free(op);
	}
	ferry__ex_es_bury(es);
	ferry__io_remove(s, &es->io);
	ferry__free(es->closing);
	ferry__free(es->dir);
	ferry__free(es->cwd);
	ferry__free(es->fail_msg);
	ferry__buf_free(&es->diag);
	ferry__buf_free(&es->reader);
	ferry__free(es->keep_dir);
	ferry__free(es->keep_cwd);
	ferry__free(es);
	ferry__session_set_state(s, FERRY__SLOT_EXEC, NULL, NULL);
}
