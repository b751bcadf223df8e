/* boot.c - the session shell's bootstrap state machine (exec_int.h): the
 * bootstrap (with the first command riding along, the "carrier"), the
 * fallbacks bash -c and bash -l -c, and what they found (es->mode). */
#include "exec_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"

static void diag_line(exec_state *es, const char *what, ferry__exec_op *op);
static void es_boot_next(exec_state *es, int kind);
static void es_resolved(exec_state *es);
static void es_took_back(exec_state *es);

/* The first command ran inside the bootstrap: what the bootstrap said is
 * in the noise before the command's header. */
void ferry__ex_carrier_boot(ferry__exec_op *op)
{
	exec_state *es = op->es;
	ferry__sh_boot b;
	op->carrier = 0;
	es->boot = NULL;
	if (ferry__sh_parse_boot(op->fout.noise.data, op->fout.noise.len,
	                         op->mark, &b))
		return;
	es->direct = b.have_sh && b.bash;
	if (b.cwd) /* before the command's cd */
		ferry__session_learn_home(es->s, b.cwd, strlen(b.cwd));
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

static const char *diag_text(const exec_state *es)
{
	return es->diag.len ? (const char *)es->diag.data : "";
}

/* The first command carried the bootstrap and the bootstrap failed
 * before it (no header: nothing ran).  Remember why, probe the fallbacks,
 * and run the command again once the shell is known. */
void ferry__ex_carrier_retry(ferry__exec_op *op)
{
	exec_state *es = op->es;
	ferry__buf_reset(&op->raw_out);
	ferry__buf_reset(&op->raw_err);
	ferry__buf_put(&op->raw_out, op->fout.hold.data, op->fout.hold.len);
	ferry__buf_put(&op->raw_err, op->ferr.hold.data, op->ferr.hold.len);
	op->status = ferry__ex_channel_status(op);
	diag_line(es, "bash -l", op);
	ferry__log(es->s, FERRY_LOG_WARN,
	           "exec: the login bootstrap failed on %s; trying plain "
	           "bash -c (%s)",
	           ferry__session_target(es->s), diag_text(es));
	if (op->ch) {
		ferry__ex_es_dispose_channel(es, op->ch);
		op->ch = NULL;
	}
	ferry__ex_es_release_slots(es, op);
	ferry__buf_reset(&op->req);
	op->req_sent = op->exec_ok = op->eof_sent = 0;
	op->out_eof = op->closed = op->need_close = 0;
	op->retries = 0;
	op->rx_bytes = 0;
	op->in_off = 0;
	op->drain_at = 0;
	op->status = -1;
	op->drain_cands = 0;
	ferry__sh_filter_free(&op->fout);
	ferry__sh_filter_free(&op->ferr);
	op->carrier = 0;
	op->state = S_WAIT_SHELL;
	es->boot = NULL;
	/* The command runs again: under a fresh marker. */
	if (ferry__ex_op_new_mark(op)) {
		memset(&op->fout, 0, sizeof(op->fout));
		memset(&op->ferr, 0, sizeof(op->ferr));
		ferry__ex_op_seterr(op, FERRY_EIO,
		                    "exec: no randomness for the command's "
		                    "secret marker (getrandom failed)");
		ferry__ex_op_finish(op);
		return;
	}
	ferry__sh_filter_init(&op->fout, op->mark, 1);
	ferry__sh_filter_init(&op->ferr, op->mark, 0);
	es_boot_next(es, K_PROBE);
}

/* After a user op ended: a bootstrap it carried that did not resolve the
 * shell (killed, failed) leaves the next command to try again. */
void ferry__ex_carrier_settled(exec_state *es)
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
			ferry__ex_op_launch(op);
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
	ferry__ex_es_drop_spare(es);
}

/* After a bootstrap on a connection made again: the shell's state is
 * back when its old directory was taken back (the snapshot, and the cwd
 * with it); else the session starts from the login environment, said. */
static void es_took_back(exec_state *es)
{
	if (es->keep_dir) {
		int back = es->dir && !strcmp(es->dir, es->keep_dir);
		if (back && es->keep_cwd) {
			ferry__free(es->cwd);
			es->cwd = es->keep_cwd;
			es->keep_cwd = NULL;
		}
		if (back)
			ferry__log(es->s, FERRY_LOG_INFO,
			           "exec: connected again to %s; the session "
			           "shell's state is restored",
			           ferry__session_target(es->s));
		else
			ferry__log(
			        es->s, FERRY_LOG_WARN,
			        "exec: connected again to %s; the session "
			        "shell's state did not survive there (its "
			        "directory is gone): commands start from the "
			        "login environment",
			        ferry__session_target(es->s));
		es->restored = back;
	}
	ferry__free(es->keep_dir);
	ferry__free(es->keep_cwd);
	es->keep_dir = es->keep_cwd = NULL;
}

void ferry__ex_boot_done(ferry__exec_op *op)
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
			ferry__session_learn_home(es->s, b.cwd, strlen(b.cwd));
			ferry__free(es->dir);
			ferry__free(es->cwd);
			es->dir = b.dir;
			es->cwd = b.cwd;
			es->cur_slot = 0;
			es->mode = FERRY__EXEC_MODE_SNAPSHOT;
			es_took_back(es);
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
		ferry__sh_boot b;
		if (op->kind == K_PROBE &&
		    !ferry__sh_parse_boot(op->raw_out.data, op->raw_out.len,
		                          op->mark, &b)) {
			es->direct = b.have_sh && b.bash;
			ferry__sh_boot_free(&b);
		}
		ferry__session_learn_home(es->s, cwd, strlen(cwd));
		ferry__free(es->cwd);
		es->cwd = cwd;
		es->mode = op->kind == K_PROBE ? FERRY__EXEC_MODE_PLAIN
		                               : FERRY__EXEC_MODE_LOGIN;
		/* No snapshot in these modes: the cwd is all the state. */
		if (es->keep_cwd) {
			ferry__free(es->cwd);
			es->cwd = es->keep_cwd;
			es->keep_cwd = NULL;
		}
		es_took_back(es);
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
	ferry__exec_op *op = ferry__ex_op_new(es, kind);
	int rc = op ? ferry__ex_op_new_mark(op) : FERRY_ENOMEM;
	if (!rc && kind == K_BOOT) {
		char name[40];
		/* A directory made after a reconnect has a name of its own:
		 * the one printed then says whether the old one came back. */
		if (es->keep_dir)
			snprintf(name, sizeof(name), "ferry-%s-%d", es->sid,
			         es->reconnects);
		else
			snprintf(name, sizeof(name), "ferry-%s", es->sid);
		rc = es->keep_dir ? ferry__sh_bootstrap_keep(&op->req, name,
		                                             es->keep_dir,
		                                             es->keep_slot)
		                  : ferry__sh_bootstrap(&op->req, name);
	} else if (!rc) {
		rc = ferry__sh_probe(&op->req, kind == K_LPROBE);
	}
	if (rc) {
		if (op) {
			ferry__ex_op_unlink(op);
			ferry__io_remove(es->s, &op->io);
			ferry__ex_op_free(op);
		}
		/* Not a verdict on the remote: the next command tries
		 * again. */
		es->mode = FERRY__EXEC_MODE_NONE;
		for (ferry__exec_op *u = es->ops; u; u = u->next)
			if (u->kind == K_USER && u->state == S_WAIT_SHELL) {
				if (rc == FERRY_EIO)
					ferry__ex_op_seterr(
					        u, rc,
					        "exec: no randomness for the "
					        "shell's secret marker "
					        "(getrandom failed)");
				else
					ferry__ex_op_seterr(u, FERRY_ENOMEM,
					                    "out of memory");
				ferry__ex_op_finish(u);
			}
		return;
	}
	op->need_close = 1;
	op->deadline = (int64_t)ferry__now_ms() + BOOT_TIMEOUT_MS;
	es->boot = op;
	es->mode = FERRY__EXEC_MODE_BOOTING;
	ferry__ex_op_acquire(op, 0);
}

void ferry__ex_es_begin(exec_state *es)
{
	es->want_spare = 1;
	if (es->mode == FERRY__EXEC_MODE_NONE)
		es_boot_next(es, K_BOOT);
}

/* The session's first command: one exec request runs the bootstrap and
 * then the command in the same login bash (one round trip less).  0, or
 * -1 when it does not fit (the caller boots separately). */
int ferry__ex_op_launch_carrier(ferry__exec_op *op)
{
	exec_state *es = op->es;
	char name[40];
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.command = op->command;
	c.cwd = op->cwd_opt; /* relative: to the login directory */
	c.env = (const char *const *)op->env;
	c.env_count = op->env_count;
	c.stderr_header = 1;
	c.snap_dst_boot = "1";
	snprintf(name, sizeof(name), "ferry-%s", es->sid);
	if (ferry__sh_bootstrap_with(&op->req, name, &c) ||
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
	ferry__ex_op_acquire(op, 0);
	return 0;
}
