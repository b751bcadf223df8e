/* exec.h - commands over the held session (exec/exec.c): the session shell
 * (bootstrap, fallbacks, snapshot, cwd), channels opened ahead of need,
 * and commands as asynchronous operations on the session's event loop.
 *
 * ferry_exec() is start + wait + finish on one operation.  Several
 * operations may be in flight on one session, each on its own channel,
 * and they make progress whenever anything runs the session's loop (a
 * push's SFTP traffic and commands share it).  The session is not
 * thread-safe: one thread drives it.
 */
#ifndef FERRY_EXEC_EXEC_H
#define FERRY_EXEC_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "session.h"

typedef struct ferry__exec_op ferry__exec_op;

/* Start the session shell now (bootstrap and spare channel) without
 * waiting for it, e.g. before a push so that the two overlap.  Sends the
 * first channel open at once.  0 or FERRY_E* (text on the session). */
int ferry__exec_prepare(ferry_session *s);

/* Start a command.  opts (may be NULL) is copied, except stdin_data,
 * which must stay valid until the operation is finished; on_output is
 * called from within the loop.  On error *out is NULL. */
int ferry__exec_start(ferry_session *s, const char *command,
                      const ferry_exec_opts *opts, ferry__exec_op **out);
int ferry__exec_done(const ferry__exec_op *op);
/* Run the loop until every op of ops[] is done, or deadline_ms (absolute
 * ferry__now_ms(); 0: none) passes (FERRY_ETIMEOUT; the ops go on).
 * Timeouts of the ops fire on time here.  ferry_interrupt() stops the
 * ops of ops[] (their remote process groups are killed; exit 130; their
 * finish returns FERRY_EINTR) and the wait still returns 0.  A lost
 * connection fails every op. */
int ferry__exec_wait(ferry_session *s, ferry__exec_op *const *ops, size_t n,
                     int64_t deadline_ms);
/* Stop one op as an interrupt would (exit 130) without waiting. */
void ferry__exec_cancel(ferry__exec_op *op);
/* Fill result (ferry_exec_result_free frees it) and free the op.  An op
 * not done yet is cancelled and waited for (bounded).  Returns 0 when the
 * command ran (whatever its exit status), FERRY_EINTR when it was
 * interrupted or cancelled (result filled: 130), else its FERRY_E* error.
 * Ops not finished before ferry_session_close are freed by it. */
int ferry__exec_finish(ferry__exec_op *op, ferry_exec_result *result);

/* ---- introspection (tests, ferry -v) ------------------------------------ */

enum {
	FERRY__EXEC_MODE_NONE = 0, /* no command yet */
	FERRY__EXEC_MODE_BOOTING,
	FERRY__EXEC_MODE_SNAPSHOT, /* bash -c + snapshot: the full contract */
	FERRY__EXEC_MODE_PLAIN,    /* login bootstrap failed: bash -c */
	FERRY__EXEC_MODE_LOGIN,    /* bash -c failed: bash -l -c */
	FERRY__EXEC_MODE_FAILED    /* no shell: every exec fails */
};

typedef struct ferry__exec_info {
	int mode;
	int direct;               /* the login shell is bash: no second bash */
	const char *snapshot_dir; /* remote; NULL when none */
	const char *cwd;          /* session cwd; NULL before the bootstrap */
	unsigned ops;             /* operations in flight (all kinds) */
	unsigned channels;        /* channels held: spare, running, closing */
	unsigned closing;         /* of which being closed */
	int spare;                /* a spare channel is open */
	int spare_reader;         /* its reader runs remotely, waiting */
	int reconnects;           /* times the connection was made again */
	int restored; /* after the last: the shell's state was taken back */
	uint64_t commands; /* commands started */
} ferry__exec_info;

/* Fills out (strings valid until the next call on the session); zeros
 * when exec was never used. */
void ferry__exec_info_get(ferry_session *s, ferry__exec_info *out);

#endif
