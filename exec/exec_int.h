/* exec_int.h - inside exec/: the per-session state (exec_state), one
 * operation (ferry__exec_op) and the functions the files of exec/ call in
 * one another.  exec/README.md has the map. */
#ifndef FERRY_EXEC_INT_H
#define FERRY_EXEC_INT_H

#include <libssh2.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "exec.h"
#include "shell.h"

#define DRAIN_MS        300   /* output after the wrapper exited */
#define PRIME_DEFER_MS  50    /* a new command holds off the spare's reader */
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
	/* The secret marker (shell.h), and the stdin line that carries it,
	 * sent before in[] (pre_len 0: none); for an op through the reader,
	 * the length line of its script too. */
	char mark[FERRY__SH_MARK_LEN + 1];
	char pre[FERRY__SH_MARK_LEN + 24];
	size_t pre_len, pre_off;
	/* Through the session's reader (shell.h): the request is es->reader
	 * and req holds the script, sent on stdin after pre. */
	int reader;
	size_t text_off;
	int req_sent, exec_ok, eof_sent, out_eof, closed;
	int need_close; /* wait for the channel close: exit status */
	int retries;    /* channels found dead before the exec reply */
	uint64_t rx_bytes;
	const uint8_t *in;
	size_t in_len, in_off;
	/* stdin stopped at the peer's closed window (see window_wait in
	 * lib/sftp_channel.c): ready again when it opens. */
	int window_wait;

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
	int pre_slot; /* the slot its channel's reader loaded, -1: none */
	ferry__sh_filter fout, ferr;
	emit_ctx ec_out, ec_err;
	sink out, err;
	int timed_out, interrupted;
	int timeout_ms;
	const volatile int *stop; /* the caller's own stop (ferry_exec_opts) */
	int stop_seen;
	int64_t deadline, drain_at, kill_until;
	unsigned drain_cands;   /* fout.cands when drain_at was set */
	ferry__exec_op *killer; /* K_KILL op for this one */
	ferry__exec_op *storer; /* K_STORE op writing its command */
	ferry__exec_op *owner;  /* K_KILL, K_STORE: the op it serves */
	int cmd_slot;           /* "DIR/cN" holding a long command, or -1 */
	int carrier;            /* runs inside the bootstrap (first command) */
	int kill_done;
	int kill_confirmed; /* the killer saw the command's processes gone */
	int confirmed;      /* K_KILL: its script said so (exit 0) */

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
	uint64_t commands;
	char *dir, *cwd;
	/* After the connection was made again: the old directory to take
	 * back (its slot keep_slot), and the cwd the shell had. */
	char *keep_dir, *keep_cwd;
	int keep_slot;
	int reconnects; /* connections made again under this state */
	int restored;   /* the last one took the shell's state back */
	int cur_slot;
	unsigned slot_refs[SLOTS];
	unsigned cmd_refs[SLOTS]; /* "DIR/cN" files of long commands */
	int fail_code;
	char *fail_msg;
	ferry_buf diag; /* what failed bootstrap attempts printed */
	ferry__exec_op *boot;
	LIBSSH2_CHANNEL *spare;
	int want_spare, opening;
	/* The reader on the spare: 0 not asked, 1 asked (the request is
	 * out or going), 2 running. */
	int spare_req;
	ferry_buf reader; /* its exec request, for reader_invoke/reader_pre */
	int reader_invoke, reader_pre;
	/* The snapshot slot the spare's reader loads ahead of need (-1:
	 * none): the spare then serves only the snapshot command whose
	 * source it is, and is let go once the session's slot moved on. */
	int pre_slot;
	ferry__exec_op *wq_head, *wq_tail;
	LIBSSH2_CHANNEL **closing;
	size_t nclosing, capclosing;
	ferry__exec_op *ops;       /* live ops */
	ferry__exec_op *graveyard; /* done internal ops, freed later */
	int closing_session;
	/* The server ran a command on this session: stdin (the marker
	 * first) may go out with the exec request from now on.  Before, it
	 * waits for the answer: a server that runs none (ProFTPD) may close
	 * the connection on data for a refused channel. */
	int exec_seen;
};

/* ---- sink.c ------------------------------------------------------- */

/* cap 0: keep everything; else the first and last bytes within cap. */
void ferry__ex_sink_init(sink *k, size_t cap);

void ferry__ex_sink_free(sink *k);

/* Append (counted in total even where not kept). */
void ferry__ex_sink_put(sink *k, const void *data, size_t n);

/* The kept bytes as one NUL-terminated allocation. */
int ferry__ex_sink_take(sink *k, char **out, size_t *len, int *truncated);

/* ---- channel.c ---------------------------------------------------- */

/* Close and free ch in the background (es->closing). */
void ferry__ex_es_dispose_channel(exec_state *es, LIBSSH2_CHANNEL *ch);

/* Take op out of the channel queue, if it is there. */
void ferry__ex_wq_remove(exec_state *es, ferry__exec_op *op);

/* A channel for op: the spare at once, else queued (kill ops first). */
void ferry__ex_op_acquire(ferry__exec_op *op, int front);

/* op goes through the reader: its script (req) on stdin after MARK and
 * the length.  0, or FERRY_EIO (no randomness for a marker). */
int ferry__ex_op_use_reader(ferry__exec_op *op);

/* The time (ms, ferry__now_ms_f) until which op, a command just started,
 * holds off the spare's reader; 0: it does not. */
double ferry__ex_op_holds_prime(const ferry__exec_op *op, double now);

/* The spare channel let go (closed in the background). */
void ferry__ex_es_drop_spare(exec_state *es);

/* The session-level io: channel opens, the spare, background closes. */
int ferry__ex_es_step(ferry__io *io);

int ferry__ex_es_pending(ferry__io *io);

/* The op is done with its channel: dispose of it. */
void ferry__ex_op_drop_channel(ferry__exec_op *op);

/* One step of op's channel: exec request, stdin, both streams, the
 * close.  Nonzero when anything moved (or op changed channel or ended). */
int ferry__ex_chan_io(ferry__exec_op *op);

/* 1 while some of op's stdin (marker, script, data) is still to go. */
int ferry__ex_stdin_left(const ferry__exec_op *op);

/* Exit status the channel reported (signal: 128 + number). */
int ferry__ex_channel_status(ferry__exec_op *op);

/* ---- boot.c ------------------------------------------------------- */

/* The first command ran inside the bootstrap: what the bootstrap said is
 * in the noise before the command's header. */
void ferry__ex_carrier_boot(ferry__exec_op *op);

/* The first command carried the bootstrap and the bootstrap failed
 * before it (no header: nothing ran).  Remember why, probe the fallbacks,
 * and run the command again once the shell is known. */
void ferry__ex_carrier_retry(ferry__exec_op *op);

/* After a user op ended: a bootstrap it carried that did not resolve the
 * shell (killed, failed) leaves the next command to try again. */
void ferry__ex_carrier_settled(exec_state *es);

/* A bootstrap or probe op ended: set the mode, or try the next one. */
void ferry__ex_boot_done(ferry__exec_op *op);

/* Start the bootstrap (once per session). */
void ferry__ex_es_begin(exec_state *es);

/* The session's first command: one exec request runs the bootstrap and
 * then the command in the same login bash (one round trip less).  0, or
 * -1 when it does not fit (the caller boots separately). */
int ferry__ex_op_launch_carrier(ferry__exec_op *op);

/* ---- op.c --------------------------------------------------------- */

/* A new op of kind K_*, linked into es->ops, its io registered. */
ferry__exec_op *ferry__ex_op_new(exec_state *es, int kind);

/* A fresh secret marker for op (128 random bits), sent as the first line
 * of its stdin.  0, or FERRY_EIO when there is no randomness: the op must
 * not run (a guessable marker would make its results forgeable). */
int ferry__ex_op_new_mark(ferry__exec_op *op);

/* Out of es->ops (ferry__ex_op_free frees it). */
void ferry__ex_op_unlink(ferry__exec_op *op);

void ferry__ex_op_free(ferry__exec_op *op);

/* The op's first error and its message; later ones are dropped. */
void ferry__ex_op_seterr(ferry__exec_op *op, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* A libssh2 failure: the connection lost (the session is dead then), or
 * the server's refusal. */
void ferry__ex_op_fail_ssh(ferry__exec_op *op, int rc, const char *what);

/* Bytes read from a stream of op's channel: filter, sink, callback. */
void ferry__ex_deliver(ferry__exec_op *op, int stream, const char *p, size_t n);

/* Stop a command: timeout (124, with a note) or interrupt (130). */
void ferry__ex_op_abort(ferry__exec_op *op, int timeout);

/* Give back the snapshot slots op held. */
void ferry__ex_es_release_slots(exec_state *es, ferry__exec_op *op);

/* op is done: its channel let go, its kind's completion run. */
void ferry__ex_op_finish(ferry__exec_op *op);

/* Free the done internal ops (es->graveyard). */
void ferry__ex_es_bury(exec_state *es);

/* Build a user op's wrapper (slots, cwd, long command) and queue it
 * for a channel; or finish it with the shell's failure. */
void ferry__ex_op_launch(ferry__exec_op *op);

#endif
