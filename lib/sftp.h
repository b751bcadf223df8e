/* sftp.h - ferry's own pipelined SFTP v3 client (lib/sftp*.c).
 *
 * Model.  Every request is submitted with a completion callback and goes
 * into one FIFO; ferry__sftp_run() drives the loop (the session's, or the
 * transport's own) until a caller's predicate holds.  Requests reach
 * the server in submission order, with one exception: a request on an
 * open handle (WRITE, CLOSE...) may pass an OPEN/OPENDIR that waits for a
 * free handle slot, so that the CLOSEs that free slots are never stuck
 * behind the OPENs that need them.  The window is bounded by bytes in
 * flight and by the server's open-handle limit; what does not fit waits
 * in the queue (the upload block generates its WRITEs only as the window
 * opens, so a large file is never held in memory).
 *
 * Callbacks.  A submit function returning 0 guarantees exactly one call
 * of its callback: with the server's reply, or with a local error when the
 * request was cancelled or the connection died.  A submit returning an
 * error never calls it.  Callbacks may submit more requests (that is how
 * chains are built: OPEN's callback submits WRITEs + CLOSE, CLOSE's
 * callback the rename) but must not call ferry__sftp_run, cancel or free.
 * A reply and everything it points to is valid only during the callback.
 *
 * Round trips.  Each request carries a generation: a request submitted in
 * the callback of a reply of generation g has generation g + 1; one
 * submitted outside any callback has generation N + 1 where N is the
 * number of round trips already counted.  A reply completes the round trip
 * of its request's generation, and the counter (ferry__sftp_round_trips,
 * and s->round_trips on a session) is the highest generation completed.
 * So OPEN; WRITEs + FSETSTAT + CLOSE; rename is 3 for one file and for a
 * thousand submitted together when the window and the server's handles
 * hold them.  The first request to leave after the queue waited for a
 * handle slot or for window space (which replies free), when its
 * generation's round trip is over by then, takes the next generation: the
 * counter says how often the caller waited for the server, whatever for
 * (the stats say why: handle_waits, window_waits).
 */
#ifndef FERRY_SFTP_H
#define FERRY_SFTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry.h"
#include "sftp_proto.h"

typedef struct ferry__sftp ferry__sftp;

/* What a completion callback receives. */
typedef struct ferry__sftp_reply {
	int error;           /* 0 or FERRY_E* */
	uint32_t status;     /* FERRY__FX_* of the server, or FERRY__FX_LOCAL */
	const char *message; /* never NULL: the server's text, or ferry's */
	uint8_t req_type;    /* FERRY__FXP_* of the request */
	uint32_t id;
	uint64_t gen; /* the round trip this reply completed */
	uint32_t len; /* WRITE: bytes it carried; READ: bytes asked */
	int eof;      /* READ, READDIR: end of file (error is 0) */
	const ferry__sftp_handle *handle; /* OPEN, OPENDIR */
	const uint8_t *data;              /* READ */
	size_t data_len;
	const ferry__sftp_attrs *attrs; /* STAT, LSTAT, FSTAT */
	const ferry__sftp_name *names;  /* READDIR, REALPATH, READLINK */
	uint32_t count;
	const ferry__sftp_vfs_info *vfs;       /* statvfs, fstatvfs */
	const ferry__sftp_limits_info *limits; /* limits */
} ferry__sftp_reply;

typedef void (*ferry__sftp_cb)(void *ctx, const ferry__sftp_reply *r);

typedef struct ferry__sftp_opts {
	size_t window_bytes;  /* bytes in flight, fixed; 0: follows the path */
	unsigned max_handles; /* 0: the server's limit (64 without limits) */
	uint32_t max_write;   /* 0: the server's limit (32 KiB without) */
	unsigned ignore_ext;  /* FERRY__EXT_* to treat as absent (tests) */
	/* A transport around the transport, e.g. the tests' latency
	 * (tests/common/sftp_latency.c); NULL: none.  It takes over inner
	 * (frees it with itself); NULL return: out of memory. */
	struct ferry__sftp_transport *(*wrap)(
	        struct ferry__sftp_transport *inner, void *ctx);
	void *wrap_ctx;
	int timeout_ms; /* the _wait calls; 0: 120000; < 0: none */
	/* No byte moved on the channel for this long while a request (or
	 * INIT) is outstanding: the client dies with FERRY_ETIMEOUT naming
	 * the oldest request and its path.  0: the session's
	 * io_timeout_ms, else 30000; < 0: none. */
	int io_timeout_ms;
	int init_timeout_ms; /* channel open + INIT; 0: 15000 */
} ferry__sftp_opts;

/* ---- byte-stream transports ------------------------------------------- */

typedef struct ferry__sftp_transport ferry__sftp_transport;
struct ferry__sftp_transport {
	/* Non-blocking: bytes moved (> 0), 0 when it would block, or a
	 * negative FERRY_E* (FERRY_EEOF when the peer closed), after
	 * ferry__sftp_seterr() with the reason. */
	ssize_t (*send)(ferry__sftp_transport *t, const void *p, size_t n);
	ssize_t (*recv)(ferry__sftp_transport *t, void *p, size_t n);
	/* Drive the loop, calling ferry__sftp_step(), until done(ctx),
	 * the deadline (absolute ferry__now_ms(); 0: none) or an error of
	 * the loop itself.  0, FERRY_ETIMEOUT, FERRY_EINTR, FERRY_ECONN... */
	int (*run)(ferry__sftp_transport *t, int (*done)(void *ctx), void *ctx,
	           int64_t deadline_ms);
	void (*free)(ferry__sftp_transport *t);
	/* Absolute ferry__now_ms() at which it wants a step (bytes it holds
	 * fall due), 0 for none.  May be NULL. */
	int64_t (*next_timer)(ferry__sftp_transport *t);
	ferry__sftp *sf;        /* set by ferry__sftp_new */
	ferry_session *session; /* NULL off a session */
};

/* A client on a transport (taken over: freed with the client, also on
 * failure).  s, when not NULL, receives error text and round trips. */
int ferry__sftp_new(ferry__sftp **out, ferry__sftp_transport *t,
                    ferry_session *s, const ferry__sftp_opts *opts);
/* Queue INIT (and a limits@openssh.com request, pipelined behind it).
 * Requests submitted before VERSION arrives are sent behind them. */
int ferry__sftp_start(ferry__sftp *sf);
/* Start and run until VERSION (and the limits) arrived. */
int ferry__sftp_init(ferry__sftp *sf, int64_t deadline_ms);
void ferry__sftp_free(ferry__sftp *sf);

/* For transports: one non-blocking pass (queue -> wire, wire ->
 * callbacks).  1 when anything moved. */
int ferry__sftp_step(ferry__sftp *sf);
/* Bytes are waiting to be sent now (poll for writability). */
int ferry__sftp_want_write(const ferry__sftp *sf);
/* A request was queued since the last step began: step again before
 * waiting (it may have been queued by another io after this one's step
 * in the same pass, and nothing on the wire will wake the loop for it). */
int ferry__sftp_kicked(const ferry__sftp *sf);
/* The transport's next timer (ferry__sftp_transport.next_timer), 0 when
 * none. */
int64_t ferry__sftp_next_timer(const ferry__sftp *sf);
/* When the I/O deadline falls (absolute ferry__now_ms(); 0: nothing is
 * outstanding or there is none): a transport's loop must step by then. */
int64_t ferry__sftp_io_deadline(const ferry__sftp *sf);
/* Error text without side effects (for transports); returns code. */
int ferry__sftp_seterr(ferry__sftp *sf, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* The session's one shared SFTP channel, opened on first use (subsystem
 * "sftp", INIT, limits) and freed with the session.  A client that died
 * (channel closed, protocol error) is replaced by a new one. */
int ferry__session_sftp(ferry_session *s, ferry__sftp **out);
/* The same without waiting: the channel opens (and INIT goes out) as the
 * loop runs; requests submitted meanwhile are sent right behind INIT and
 * count in its round trip.  A failure to open kills the client: its
 * callbacks get the error. */
int ferry__session_sftp_begin(ferry_session *s, const ferry__sftp_opts *opts,
                              ferry__sftp **out);
/* Same with options; they apply only when the channel is opened now. */
int ferry__session_sftp_ex(ferry_session *s, const ferry__sftp_opts *opts,
                           ferry__sftp **out);

/* ---- running ------------------------------------------------------------ */

/* Between calls: give back what the last call grew and no longer holds
 * (the open-handle list, the in-flight table, empty I/O buffers), so that
 * a held session keeps nothing in proportion to its largest push. */
void ferry__sftp_trim(ferry__sftp *sf);

/* Run until done(ctx) holds (checked first), the deadline (absolute
 * ferry__now_ms(); 0: none) passes, or the client dies.  done NULL: until
 * nothing is queued or in flight.  0; FERRY_ETIMEOUT / FERRY_EINTR
 * (requests stay in flight: run again, or cancel); the death error
 * (every callback has then been called).  Not from a callback. */
int ferry__sftp_run(ferry__sftp *sf, int (*done)(void *ctx), void *ctx,
                    int64_t deadline_ms);
/* Complete every queued and in-flight request now with code (callbacks
 * run, status FERRY__FX_LOCAL).  Late replies are dropped; a handle a
 * cancelled OPEN still gets is closed, and CLOSEs (queued, or submitted
 * by callbacks meanwhile) still go out: no handle is lost on either side.
 * The client stays usable. */
void ferry__sftp_cancel_all(ferry__sftp *sf, int code);
/* Requests queued, in flight or delayed, plus upload jobs running. */
size_t ferry__sftp_pending(const ferry__sftp *sf);
/* Bytes of submitted requests not yet sent (to bound a producer). */
size_t ferry__sftp_queued_bytes(const ferry__sftp *sf);

/* ---- information --------------------------------------------------------- */

int ferry__sftp_ready(const ferry__sftp *sf);
/* 0 while usable, else the FERRY_E* it died of. */
int ferry__sftp_dead(const ferry__sftp *sf);
const char *ferry__sftp_errmsg(const ferry__sftp *sf);
/* FERRY__EXT_* advertised by the server and not ignored. */
unsigned ferry__sftp_extensions(const ferry__sftp *sf);
int ferry__sftp_has(const ferry__sftp *sf, unsigned ext);
/* The limits in force (the server's, clamped; defaults without them). */
void ferry__sftp_limits_get(const ferry__sftp *sf,
                            ferry__sftp_limits_info *out);
uint64_t ferry__sftp_round_trips(const ferry__sftp *sf);
/* The generation of the reply being delivered (in a callback), else the
 * round trips counted. */
uint64_t ferry__sftp_gen_now(const ferry__sftp *sf);
/* Requests submitted outside callbacks from now on depend on a reply of
 * generation gen only (a plan made from a walk whose last reply was of
 * generation gen, while other replies came in): they get gen + 1, not
 * the count + 1.  0 restores the rule. */
void ferry__sftp_gen_base(ferry__sftp *sf, uint64_t gen);

typedef struct ferry__sftp_stats {
	uint64_t requests; /* sent */
	uint64_t replies;
	uint64_t bytes_out, bytes_in;
	uint64_t window_waits;  /* times the queue waited for bytes in flight */
	uint64_t handle_waits;  /* times an OPEN waited for a handle slot */
	uint64_t max_in_flight; /* requests */
	unsigned max_handles_used; /* handles open or being opened */
	size_t max_bytes_in_flight;
} ferry__sftp_stats;
void ferry__sftp_stats_get(const ferry__sftp *sf, ferry__sftp_stats *out);

/* ---- asynchronous requests ------------------------------------------------
 * 0 (cb will be called once) or FERRY_EINVALID / FERRY_ENOMEM / the death
 * error (cb never called).  Strings and data are copied; cb may be NULL.
 * Errors: NO_SUCH_FILE -> FERRY_ENOTFOUND, PERMISSION_DENIED -> FERRY_EPERM,
 * OP_UNSUPPORTED -> FERRY_EUNSUPPORTED, BAD_MESSAGE -> FERRY_EINVALID,
 * FAILURE -> FERRY_EREMOTE, the server's text in r->message.  OpenSSH says
 * FAILURE for both EEXIST and ENOSPC; for requests that create a path
 * (OPEN with CREAT|EXCL, MKDIR, SYMLINK, RENAME, hardlink) ferry then asks
 * LSTAT of the path and statvfs of its directory (one more round trip, on
 * the failure path only) and reports FERRY_EEXIST or FERRY_ENOSPACE. */

int ferry__sftp_open(ferry__sftp *sf, const char *path, uint32_t pflags,
                     const ferry__sftp_attrs *attrs, ferry__sftp_cb cb,
                     void *ctx);
int ferry__sftp_close(ferry__sftp *sf, const ferry__sftp_handle *h,
                      ferry__sftp_cb cb, void *ctx);
/* len <= the server's max read; r->data_len may be shorter; r->eof. */
int ferry__sftp_read(ferry__sftp *sf, const ferry__sftp_handle *h, uint64_t off,
                     uint32_t len, ferry__sftp_cb cb, void *ctx);
/* len <= ferry__sftp limits max_write. */
int ferry__sftp_write(ferry__sftp *sf, const ferry__sftp_handle *h,
                      uint64_t off, const void *data, size_t len,
                      ferry__sftp_cb cb, void *ctx);
int ferry__sftp_lstat(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                      void *ctx);
int ferry__sftp_stat(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                     void *ctx);
int ferry__sftp_fstat(ferry__sftp *sf, const ferry__sftp_handle *h,
                      ferry__sftp_cb cb, void *ctx);
int ferry__sftp_setstat(ferry__sftp *sf, const char *path,
                        const ferry__sftp_attrs *a, ferry__sftp_cb cb,
                        void *ctx);
int ferry__sftp_fsetstat(ferry__sftp *sf, const ferry__sftp_handle *h,
                         const ferry__sftp_attrs *a, ferry__sftp_cb cb,
                         void *ctx);
/* lsetstat@openssh.com; FERRY_EUNSUPPORTED when absent. */
int ferry__sftp_lsetstat(ferry__sftp *sf, const char *path,
                         const ferry__sftp_attrs *a, ferry__sftp_cb cb,
                         void *ctx);
int ferry__sftp_opendir(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                        void *ctx);
/* r->names (at most 100 from OpenSSH, "." and ".." included), or r->eof. */
int ferry__sftp_readdir(ferry__sftp *sf, const ferry__sftp_handle *h,
                        ferry__sftp_cb cb, void *ctx);
int ferry__sftp_remove(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                       void *ctx);
int ferry__sftp_mkdir(ferry__sftp *sf, const char *path,
                      const ferry__sftp_attrs *a, ferry__sftp_cb cb, void *ctx);
int ferry__sftp_rmdir(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                      void *ctx);
/* A REALPATH "." whose answer becomes the session's login directory
 * (ferry__session_learn_home), unless it is known or asked already; a
 * client of no session asks nothing.  ferry__sftp_start sends it behind
 * INIT. */
int ferry__sftp_ask_home(ferry__sftp *sf);
int ferry__sftp_realpath(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                         void *ctx);
int ferry__sftp_readlink(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                         void *ctx);
/* Plain RENAME: never replaces an existing target (OpenSSH links, then
 * unlinks): FERRY_EEXIST then. */
int ferry__sftp_rename(ferry__sftp *sf, const char *from, const char *to,
                       ferry__sftp_cb cb, void *ctx);
/* posix-rename@openssh.com (atomic replace); FERRY_EUNSUPPORTED absent. */
int ferry__sftp_posix_rename(ferry__sftp *sf, const char *from, const char *to,
                             ferry__sftp_cb cb, void *ctx);
/* Replace to by from: posix-rename, or without it REMOVE to + RENAME
 * pipelined (not atomic; *fallback set to 1 when taken, may be NULL).
 * cb gets the rename's reply. */
int ferry__sftp_rename_replace(ferry__sftp *sf, const char *from,
                               const char *to, int *fallback, ferry__sftp_cb cb,
                               void *ctx);
/* linkpath -> target, in the server's argument order: advertised
 * (symlink-order@rjk.greenend.org.uk) or found by
 * ferry__sftp_probe_symlinks; FERRY_EUNSUPPORTED while it is unknown
 * (a guess could create a link anywhere). */
int ferry__sftp_symlink(ferry__sftp *sf, const char *linkpath,
                        const char *target, ferry__sftp_cb cb, void *ctx);

/* What the server does with symlinks (lib/sftp_probe.c; the values in
 * sftp_proto.h). */
#define FERRY__PROBE_NAMES 5
/* Find out the SYMLINK argument order (unless advertised) and whether
 * renaming a symlink is safe, in one round trip (two when the order is
 * not advertised), once per client.  names: paths that do not exist, all
 * in one directory the caller owns (it exists, or its MKDIR was
 * submitted before), each journaled as a temporary name; every request
 * names only these, and all are removed at the end.  done(ctx, 0) when
 * the order is found (one round trip before the end), done(ctx, 1) when
 * finished; then ferry__sftp_symlinks_known says whether it learned both
 * (not when the first name could not be created: a later call tries
 * again). */
int ferry__sftp_probe_symlinks(ferry__sftp *sf,
                               const char *const names[FERRY__PROBE_NAMES],
                               void (*done)(void *ctx, int finished),
                               void *ctx);
/* ferry__sftp_symlink may be called. */
int ferry__sftp_symlink_order_known(const ferry__sftp *sf);
/* Both the order and the rename's safety are known. */
int ferry__sftp_symlinks_known(const ferry__sftp *sf);
/* 1 when RENAME of a symlink moves the link (known from the probe). */
int ferry__sftp_symlink_rename_safe(const ferry__sftp *sf);
/* Why the last probe left them unknown, else NULL. */
const char *ferry__sftp_symlink_failure(const ferry__sftp *sf);
/* Does got (a READLINK reply for linkpath) say that the link holds want?
 * Yes when equal; ProFTPD returns a relative target joined to the link's
 * directory as named ("d/l" -> "f" reads "d/f"), so where the probe found
 * that, or has not run, a relative want also matches its lexical join
 * ("." and ".." folded).  Where READLINK is known to be literal, only
 * equal bytes match. */
int ferry__sftp_link_same(const ferry__sftp *sf, const char *linkpath,
                          const char *got, size_t gn, const char *want,
                          size_t wn);
/* hardlink@openssh.com; FERRY_EUNSUPPORTED when absent. */
int ferry__sftp_hardlink(ferry__sftp *sf, const char *oldpath,
                         const char *newpath, ferry__sftp_cb cb, void *ctx);
/* fsync@openssh.com; FERRY_EUNSUPPORTED when absent. */
int ferry__sftp_fsync(ferry__sftp *sf, const ferry__sftp_handle *h,
                      ferry__sftp_cb cb, void *ctx);
/* statvfs@openssh.com / fstatvfs@openssh.com; FERRY_EUNSUPPORTED. */
int ferry__sftp_statvfs(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                        void *ctx);
int ferry__sftp_fstatvfs(ferry__sftp *sf, const ferry__sftp_handle *h,
                         ferry__sftp_cb cb, void *ctx);
/* copy-data: len bytes (0: to EOF) from rh at roff to wh at woff, on the
 * server.  FERRY_EUNSUPPORTED when absent. */
int ferry__sftp_copy_data(ferry__sftp *sf, const ferry__sftp_handle *rh,
                          uint64_t roff, uint64_t len,
                          const ferry__sftp_handle *wh, uint64_t woff,
                          ferry__sftp_cb cb, void *ctx);
/* limits@openssh.com, asked again; FERRY_EUNSUPPORTED when absent. */
int ferry__sftp_limits(ferry__sftp *sf, ferry__sftp_cb cb, void *ctx);

/* ---- building blocks (lib/sftp_blocks.c) ----------------------------------
 */

typedef struct ferry__sftp_upload_result {
	int error;           /* 0 or FERRY_E* */
	const char *step;    /* NULL, or where it failed: "open", "read",
	                        "write", "fsetstat", "fsync", "close",
	                        "rename"; a delta's also "copy", "remove" */
	const char *message; /* never NULL */
	uint64_t bytes;      /* written and acknowledged */
	uint64_t gen;        /* round trip of its last reply */
	int fsynced;         /* fsync@openssh.com succeeded */
	int fsync_skipped;   /* asked, but the server lacks fsync */
	int renamed;
	int rename_fallback; /* no posix-rename: remove + rename */
	int removed;         /* after a failure the file was removed */
	/* Delta (opts.base): bytes copied on the server by copy-data; 1 when
	 * the old file could not be used and every byte was written, with
	 * delta_why saying why (static text, or NULL). */
	uint64_t copied;
	int delta_fallback;
	const char *delta_why;
} ferry__sftp_upload_result;

/* One range of a delta upload's new content: len bytes at off, either
 * copied on the server from the old file at base_off (copy) or written
 * from the reader. */
typedef struct ferry__sftp_piece {
	uint64_t off, len, base_off;
	int copy;
} ferry__sftp_piece;

typedef struct ferry__sftp_upload_opts {
	const char *path; /* the file to create (copied) */
	uint32_t pflags;  /* 0: WRITE | CREAT | EXCL */
	int has_perm;     /* perm applies at creation (OPEN attrs) */
	uint32_t perm;
	/* No write before the new file's mode is seen to have no bit beyond
	 * perm: an LSTAT in the OPEN's flight (no round trip), else FSTAT
	 * on the handle; a wrong mode is set again (FSETSTAT) and checked
	 * once more, then the upload fails with FERRY_EPERM. */
	int confirm_perm;
	/* The content, size bytes, from exactly one of: */
	const void *data; /* memory, valid until done */
	int fd;           /* pread() from offset 0; used when use_fd */
	int use_fd;
	/* a reader: fill buf with n bytes at off; 0 or FERRY_E* */
	int (*read)(void *rctx, void *buf, size_t n, uint64_t off);
	void *rctx;
	uint64_t size;
	int has_attrs; /* FSETSTAT with attrs after the writes */
	ferry__sftp_attrs attrs;
	int fsync; /* fsync@openssh.com before CLOSE (skipped without) */
	const char *rename_to; /* after CLOSE succeeded: replace this path */
	/* Delta: build the file from the old one at base (copied), which is
	 * trusted only when it is a regular file of base_size bytes with
	 * mtime base_mtime (seconds), seen by LSTAT before it is opened and
	 * by FSTAT on its handle before and after the copies.  pieces
	 * (npieces, copied; in order, together exactly [0, size)) say what
	 * is copied and what is written; only the written ranges are read.
	 * When base cannot be trusted, a copy fails, the server has no
	 * copy-data or fewer than 2 handles: every byte is written instead
	 * (result.delta_fallback).  Needs a reader (read or fd); the
	 * caller may do the rename itself (no rename_to). */
	const char *base;
	uint64_t base_size;
	uint32_t base_mtime;
	const ferry__sftp_piece *pieces;
	size_t npieces;
	/* Striping: other clients of the same session (each its own channel,
	 * ferry__session_sftp_streams; valid until done).  A plain upload
	 * (not a delta) with a reader (read) of at least 2 *
	 * FERRY__STRIPE_RANGE bytes is cut into up to nstreams + 1 ranges of
	 * at least that size: this client writes the first, each stream one
	 * more (ferry__sftp_write_range, after the OPEN made the file); the
	 * FSETSTAT, fsync and CLOSE wait for all of them.  One channel moves
	 * at most its window per round trip: this multiplies it.  The reader
	 * is then called at several offsets at once.  A stream that is
	 * dead is not used; one that fails fails the upload. */
	ferry__sftp *const *streams;
	unsigned nstreams;
	int remove_on_error; /* remove path when a step after OPEN failed */
	void (*done)(void *ctx, const ferry__sftp_upload_result *r);
	/* Optional: after each acknowledged WRITE, the file's total so far. */
	void (*progress)(void *ctx, uint64_t bytes_acked);
	void *ctx;
} ferry__sftp_upload_opts;

/* OPEN; then WRITEs of the server's maximum size, generated as the window
 * opens; FSETSTAT; fsync; CLOSE; then (only when everything succeeded)
 * the rename.  A write failure stops the remaining writes; FAILURE at
 * write/close is checked against statvfs to report FERRY_ENOSPACE.
 * Round trips: 2, or 3 with rename_to.  done is called exactly once when
 * this returns 0.
 *
 * Delta (base; FERRY_EINVALID unless rename_to, a reader, and pieces in
 * order, contiguous, none empty, exactly [0, size), every copy inside
 * [0, base_size)).  Adjacent pieces of one kind are merged (copies when
 * their old ranges follow on too).  No copy piece: a plain upload
 * (copied 0, not a fallback).  Round trips:
 *   1. OPEN temp (+ its LSTAT with confirm_perm), LSTAT base;
 *   2. when all three answered and base is a regular file of base_size
 *      bytes with mtime base_mtime: OPEN base (READ only) and the WRITEs
 *      of the write pieces only (the reader is asked only for them);
 *      otherwise (also: the server lacks copy-data or allows fewer than 2
 *      handles) base is never opened, every byte is written and the
 *      plain path follows (3 round trips, delta_fallback);
 *   3. when the base OPEN answered: FSTAT base, the COPY-DATAs, FSTAT
 *      base, CLOSE base, FSETSTAT, fsync, CLOSE temp, all handle requests
 *      queued behind the WRITEs still to be generated, so the server
 *      copies and writes before FSETSTAT sets the times;
 *   4. the rename, only when both FSTATs saw base_size and base_mtime and
 *      every COPY-DATA succeeded (copied: the copy pieces' bytes).
 * Otherwise the temp is not trusted: REMOVE it and OPEN it again (+ its
 * LSTAT) in one flight, then the plain path writes every byte (bytes
 * counts from 0 again; delta_fallback, 3 more round trips).  Steps of a
 * delta's failures also: "copy", "remove".  A delta holds two handles:
 * those that could hold the temp's while waiting for the base's are kept
 * below the handle limit, the uploads beyond start (their first flight)
 * as earlier ones get their base's handle. */
int ferry__sftp_upload(ferry__sftp *sf, const ferry__sftp_upload_opts *o);

/* A small file's content: LSTAT; OPEN; READ + CLOSE.  3 round trips.
 * max <= the server's max read.  err FERRY_ENOTFOUND when it does not
 * exist, FERRY_EEXIST when it is not a regular file (a fifo, a device, a
 * symlink...: never opened, so a fifo cannot block the server).
 * truncated: the file holds more than max bytes. */
typedef void (*ferry__sftp_small_cb)(void *ctx, int err, const char *msg,
                                     const uint8_t *data, size_t len,
                                     int truncated);
int ferry__sftp_read_small(ferry__sftp *sf, const char *path, uint32_t max,
                           ferry__sftp_small_cb cb, void *ctx);

/* One directory's entries, attrs from lstat.  The "." and ".." of the
 * directory are left out (one each, as directories); the names are not
 * judged (sftp_proto.h): anything else, a second "..", a name with '/' or
 * NUL or none at all, is passed on for the caller to refuse.
 * OPENDIR;
 * then 4 READDIRs + CLOSE pipelined.  2 round trips for
 * directories of up to 298 entries (OpenSSH sends 100 per READDIR); for
 * bigger ones it lists again keeping the handle open until EOF (+3).  Entries
 * valid during the callback. */
typedef struct ferry__sftp_dirent {
	char *name; /* as the server sent it: any bytes, NUL-terminated */
	size_t name_len;
	ferry__sftp_attrs attrs;
} ferry__sftp_dirent;
typedef void (*ferry__sftp_list_cb)(void *ctx, int err, const char *msg,
                                    const ferry__sftp_dirent *ents, size_t n);
int ferry__sftp_list(ferry__sftp *sf, const char *path, ferry__sftp_list_cb cb,
                     void *ctx);
/* The same, holding at most max_entries entries and max_name_bytes bytes
 * of names (0 or lim NULL: the defaults below): beyond them the listing
 * stops (the handle closed) and fails with FERRY_ELIMIT, "readdir PATH:
 * the server listed more than N ...". */
#define FERRY__LIST_MAX_ENTRIES    1000000u
#define FERRY__LIST_MAX_NAME_BYTES ((uint64_t)1 << 30)
typedef struct ferry__sftp_list_limits {
	uint64_t max_entries;
	uint64_t max_name_bytes;
} ferry__sftp_list_limits;
int ferry__sftp_list_ex(ferry__sftp *sf, const char *path,
                        const ferry__sftp_list_limits *lim,
                        ferry__sftp_list_cb cb, void *ctx);

/* The content of one file of a known size, for a caller that writes it
 * somewhere: OPEN; then READs of the server's maximum size covering
 * [0, size) (at most window bytes of this file in flight, more as they
 * are answered), the last one a byte longer (or one READ at size) so that
 * the end of the file is seen where it was listed, and CLOSE behind the
 * last READ: 2 round trips for a file of up to window bytes, however
 * many are downloaded together.  A file that turns out shorter or longer
 * than size fails with FERRY_EPROTO ("size"): a listing that lied, or a
 * file changed while read.  A short read is read again (the handle is
 * opened again when the speculative CLOSE went out already). */
typedef struct ferry__sftp_download_result {
	int error;           /* 0 or FERRY_E* */
	const char *step;    /* NULL, or "open", "read", "size", "write"
	                      * (the caller's data or open said no) */
	const char *message; /* never NULL */
	uint64_t bytes;      /* given to data */
	uint64_t gen;        /* round trip of its last reply */
} ferry__sftp_download_result;

typedef struct ferry__sftp_download_opts {
	const char *path; /* copied */
	uint64_t size;
	size_t window; /* bytes of this file's READs in flight; 0: 4 MiB */
	/* The file is open on the server (once; may be NULL).  0 to go on,
	 * else a FERRY_E* that ends the download ("write"). */
	int (*opened)(void *ctx);
	/* n bytes of the file at off (any order; each byte once).  0, or a
	 * FERRY_E* that ends the download ("write"). */
	int (*data)(void *ctx, uint64_t off, const uint8_t *p, size_t n);
	void (*done)(void *ctx, const ferry__sftp_download_result *r);
	void *ctx;
} ferry__sftp_download_opts;

/* done is called exactly once when this returns 0. */
int ferry__sftp_download(ferry__sftp *sf, const ferry__sftp_download_opts *o);

/* ---- several channels: striped uploads (lib/sftp_stripe.c) ---------------
 * One channel moves at most its window per round trip (sshd: 2 MiB), so a
 * large file goes faster over several channels of the session, each
 * writing its own range of the same file.
 */

#define FERRY__SFTP_STREAMS_MAX 32u
/* The least a striped upload gives each channel (ferry__sftp_upload). */
#define FERRY__STRIPE_RANGE ((uint64_t)8 << 20)

/* n more SFTP clients on the session, each on its own channel (its own
 * sftp-server), besides the shared one: out[0..n-1].  Opened on first use
 * (all begun together, then waited for together, so that the opens
 * overlap on the loop) and kept with the session, which frees them; a
 * later call gets the same clients (a dead one is replaced).  Waits at
 * most the session's connect timeout (15 s without).  They run on
 * the session's loop: ferry__sftp_run on any client of the session also
 * moves the others' requests.  On failure the clients that did not become
 * ready are freed and the error text is on the session. */
int ferry__session_sftp_streams(ferry_session *s, unsigned n,
                                ferry__sftp **out);
/* The same without waiting (as ferry__session_sftp_begin): the channels
 * open as the loop runs, so their (n + 2) round trips (libssh2 opens one
 * channel at a time) can overlap other work; requests submitted meanwhile
 * go out right behind INIT.  A failure to open kills that client: its
 * callbacks get the error. */
int ferry__session_sftp_streams_begin(ferry_session *s, unsigned n,
                                      ferry__sftp **out);

/* Write [off, off + len) of the existing file path (OPEN with WRITE only,
 * never CREAT: another client created it with its final mode), WRITEs of
 * the server's maximum size generated as the window opens, then CLOSE.
 * read(rctx, buf, n, at) fills buf with the n bytes at file offset at (0
 * or a FERRY_E*).  done(ctx, err, msg, bytes) exactly once when this
 * returns 0, with the bytes acknowledged; err 0 or the first FERRY_E*
 * (msg "STEP PATH: WHY"); an error stops the writes and still closes the
 * handle.  2 round trips, plus the window's transfer time. */
typedef void (*ferry__sftp_range_cb)(void *ctx, int err, const char *msg,
                                     uint64_t bytes);
int ferry__sftp_write_range(ferry__sftp *sf, const char *path, uint64_t off,
                            uint64_t len,
                            int (*read)(void *rctx, void *buf, size_t n,
                                        uint64_t off),
                            void *rctx, ferry__sftp_range_cb done, void *ctx);

#endif
