/* session.h - internals of ferry_session shared by lib/, sync/ and exec/:
 * the libssh2 session, its error text and the one event loop.
 *
 * The event loop.  Every user of the session's socket (the SFTP channel,
 * exec channels, the spare channel) is a ferry__io registered on the
 * session.  ferry__session_run() calls every registered io's step() in
 * turn until its done() predicate holds; when a whole pass made no progress
 * and no io has input waiting in libssh2's queue, it poll()s the socket
 * (and the interrupt pipe) in the directions libssh2 is blocked on.
 * step() must never block: it calls libssh2 in non-blocking mode and
 * returns 1 when it moved anything, 0 when everything would block.
 * step() should always try to read its channel so that incoming data is
 * drained from the socket.
 */
#ifndef FERRY_SESSION_H
#define FERRY_SESSION_H

#include <libssh2.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ferry.h"
#include "os.h"
#include "sshconfig.h"
#include "ssherr.h"

typedef struct ferry__io ferry__io;
struct ferry__io {
	/* Non-blocking progress: 1 progressed, 0 would block.  Errors are the
	 * io's own business (it records them and lets done() see them). */
	int (*step)(ferry__io *io);
	/* Non-draining check for input queued inside libssh2 that step() has
	 * not consumed yet (libssh2_poll_channel_read, a new EOF...). May be
	 * NULL.  An io waiting inside an opaque libssh2 state machine (channel
	 * open, exec request) returns -1: the loop then polls with a short
	 * timeout because a reply may sit in libssh2's queue. */
	int (*pending)(ferry__io *io);
	/* Absolute ferry__now_ms() of the io's next deadline (a timeout, a
	 * drain limit), 0 for none; the loop never sleeps past it.  May be
	 * NULL. */
	int64_t (*next_timer)(ferry__io *io);
	ferry__io *prev, *next;
	int registered;
};

/* Run flags */
#define FERRY__RUN_NOINTR 0x1u /* ignore ferry_interrupt (cleanup paths) */

/* ---- accessors for sync/ and exec/ ----------------------------------------
 * Modules outside lib/ never read struct ferry_session's fields; they use
 * these.  Per-module state hangs on the session in one slot per module and
 * is freed by the session with the free function given when it was set. */
typedef enum {
	FERRY__SLOT_SYNC = 0,
	FERRY__SLOT_EXEC = 1,
	FERRY__SLOT_COUNT
} ferry__slot;
struct ferry_session {
	LIBSSH2_SESSION *ssh;
	int fd;
	int intr_pipe[2];
	/* ferry_interrupt() counts here; a call is interrupted when the
	 * count moved since it began (or since it last took one). */
	atomic_uint intr_gen;
	/* Threads: a public call holds mu, except while it waits.  One
	 * thread at a time drives the loop (driving, driver); the others
	 * wait on cv, which the driver signals whenever anything moved.
	 * sftp_busy: a push or pull holds the SFTP client (they take
	 * turns). */
	uint64_t id; /* unique in the process (nonzero) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int driving;
	pthread_t driver;
	int sftp_busy;
	char errmsg[FERRY_ERRMSG_SIZE];

	char *host, *user, *target; /* target: user@host:port */
	int port;
	/* The caller's options with ssh_config applied (ferry__opts_resolve):
	 * strings in sshcfg or the caller's, used until connect returns. */
	ferry_session_opts opts;
	ferry__sshcfg sshcfg;
	ferry_log_fn log;
	void *log_ctx;

	ferry__io *ios; /* registered ios (doubly linked, head) */
	int64_t last_rx_ms;
	int keepalive_s, idle_timeout_ms;
	int dead; /* the connection failed: every later call fails at once */

	/* info for ping */
	char *info_strings[10];
	ferry_session_info info;
	/* info.home: set once by ferry__session_learn_home */
	char *home;
	int home_asked; /* a REALPATH "." of the shared client is in flight */

	/* Per-session state of other modules, created on first use and freed
	 * by the session: the shared SFTP client (lib/sftp) and the exec
	 * state (exec/).  The free functions are set by their owners. */
	void *sftp;
	void (*sftp_free)(void *);
	/* The extra SFTP clients of ferry__session_sftp_streams (each on its
	 * own channel), freed before the shared one. */
	void *streams;
	void (*streams_free)(void *);
	void *state[FERRY__SLOT_COUNT]; /* sync/: what was verified; exec/ */
	void (*state_free[FERRY__SLOT_COUNT])(void *);
	/* The connection was made again: drop what belonged to the old one
	 * (NULL: nothing to drop). */
	void (*state_reset[FERRY__SLOT_COUNT])(void *);
	int ncalls;                /* public calls in progress (under mu) */
	uint64_t round_trips;      /* maintained by the SFTP client */
	const void *open_owner;    /* who drives libssh2's one channel-open */
	const void *startup_owner; /* whose channel request awaits its reply */
};

/* Error text on the session.  Returns code, so: return ferry__seterr(...). */
int ferry__seterr(ferry_session *s, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Same, appending libssh2's last error message: "<step>: <libssh2 text>". */
int ferry__seterr_ssh(ferry_session *s, int code, const char *step);
void ferry__log(ferry_session *s, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

void ferry__io_add(ferry_session *s, ferry__io *io);
void ferry__io_remove(ferry_session *s, ferry__io *io);

/* Run the loop until done(ctx) returns nonzero (checked before each
 * wait).  deadline_ms: absolute ferry__now_ms() time, or 0 for none (the
 * idle timeout still applies).  Returns 0, FERRY_ETIMEOUT, FERRY_EINTR,
 * FERRY_ECONN/FERRY_EEOF (socket dead; the session is marked dead).  The
 * error text is set on the session. */
int ferry__session_run(ferry_session *s, int (*done)(void *ctx), void *ctx,
                       int64_t deadline_ms, unsigned flags);

/* Wait once for the socket in the directions libssh2 is blocked on (or for
 * input when it is not blocked).  For setup code that drives one libssh2
 * call until it stops returning LIBSSH2_ERROR_EAGAIN. */
int ferry__session_wait(ferry_session *s, int64_t deadline_ms, unsigned flags);
/* Wait for fd (e.g. a socket being connected) in events until deadline_ms
 * or an interrupt (unless flags has FERRY__RUN_NOINTR); *revents gets what
 * poll reported. */
int ferry__session_wait_fd(ferry_session *s, int fd, short events,
                           int64_t deadline_ms, unsigned flags, short *revents);

/* "user@host:port" ([host] for IPv6), the key of a target: user NULL
 * means the local user, port 0 means 22.  Caller frees. */
char *ferry__target_string(const char *user, const char *host, int port);
/* An SSH cipher that carries its own authentication (its MAC is
 * "<implicit>"). */
int ferry__cipher_is_aead(const char *cipher);

/* Open a "session" channel without blocking.  libssh2 keeps one
 * channel-open state machine per session, so callers take turns: while
 * another owner's open is in progress this returns NULL with *err =
 * LIBSSH2_ERROR_EAGAIN without touching libssh2.  NULL with another *err
 * is a failure (the libssh2 error code). */
/* owner is the caller's registered io; removing it gives up its turn. */
LIBSSH2_CHANNEL *ferry__channel_open(ferry_session *s, const void *owner,
                                     unsigned window, unsigned packet,
                                     int *err);
/* Send a channel request ("exec", "subsystem") with
 * libssh2_channel_process_startup, one channel at a time: libssh2 1.10
 * fails a request whose wait reads another channel's CHANNEL_SUCCESS.
 * Returns libssh2's result, or FERRY__BUSY (nothing was sent) while
 * another owner's request awaits its reply. */
#define FERRY__BUSY 1
int ferry__channel_startup(ferry_session *s, const void *owner,
                           LIBSSH2_CHANNEL *ch, const char *req,
                           const char *msg, unsigned msg_len);
/* The request in flight of owner from (if any) goes on as to's: the
 * channel changed hands before its reply came (to NULL: abandoned). */
void ferry__channel_startup_pass(ferry_session *s, const void *from,
                                 const void *to);

/* Let the socket's send buffer reach bytes (the kernel's cap: twice
 * net.core.wmem_max) when autotuning would stop lower (tcp_wmem's
 * maximum, 4 MiB by default: at 50 ms that caps one connection near
 * 70 MiB/s, which several channels reach).  Fixing the size ends
 * autotuning, so nothing is changed when the fixed size would not be
 * larger.  1 when changed. */
int ferry__session_grow_sndbuf(ferry_session *s, int bytes);

/* Consume an interrupt for the calling thread's call: 1 when one was
 * sent since the call began (or last took one). */
int ferry__session_take_interrupt(ferry_session *s);
/* Around every public call on a session: the call holds the session
 * (other threads' calls run while it waits, each driving the loop in
 * turn), and only an interrupt sent while it runs applies to it.
 * Calls nest on one thread (a callback's call on the same session). */
void ferry__session_call_begin(ferry_session *s);
void ferry__session_call_end(ferry_session *s);
/* ferry_session_reconnect inside a call (connect.c). */
int ferry__session_reconnect_locked(ferry_session *s);
/* Around a push or pull inside its call: one at a time per session
 * (the SFTP client's requests and handles are one conversation).
 * begin waits for the turn; FERRY_EINTR when interrupted first. */
int ferry__session_sftp_turn_begin(ferry_session *s);
void ferry__session_sftp_turn_end(ferry_session *s);

void *ferry__session_state(const ferry_session *s, ferry__slot slot);
void ferry__session_set_reset(ferry_session *s, ferry__slot slot,
                              void (*reset_fn)(void *));
void ferry__session_set_state(ferry_session *s, ferry__slot slot, void *state,
                              void (*free_fn)(void *));
LIBSSH2_SESSION *ferry__session_ssh(const ferry_session *s);
/* "user@host:port", the key of the target */
const char *ferry__session_target(const ferry_session *s);
const char *ferry__session_user(const ferry_session *s);
const char *ferry__session_host(const ferry_session *s);
int ferry__session_port(const ferry_session *s);
/* The login directory, as the login shell's `cd -P .` or SFTP's REALPATH
 * "." gave it (len bytes; not NUL-terminated): kept when it is the first
 * absolute one, else ignored (it is learnt once).  ENOMEM is not an
 * error: the directory is just not known. */
void ferry__session_learn_home(ferry_session *s, const char *path, size_t len);
/* 1 once the connection failed: every later call fails at once. */
int ferry__session_dead(const ferry_session *s);
void ferry__session_mark_dead(ferry_session *s);
/* Non-consuming look at a pending ferry_interrupt. */
int ferry__session_interrupt_pending(const ferry_session *s);
/* The running call's own stop flag (ferry_sync_opts.stop): once *stop is
 * nonzero the call is interrupted as by ferry_interrupt (taken once),
 * other calls go on; ferry_session_wake makes a waiting call look.  Until
 * the call ends. */
void ferry__session_call_stop(const ferry_session *s, const volatile int *stop);
/* Round trips waited for on this session (maintained by the SFTP client). */
uint64_t ferry__session_round_trips(const ferry_session *s);
/* The session's SFTP client if one was started, else NULL (no I/O). */
struct ferry__sftp *ferry__session_sftp_peek(const ferry_session *s);

#endif
