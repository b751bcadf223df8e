#include "sync/commit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "hash.h"
#include "session.h"
#include "sync/path.h"
#include "sync/pmap.h"
#include "sync/report.h"
#include "sync/util.h"

/* Directory states (MKDIR actions, checked directories, the destination).
 * ST_REFUSED: a directory ferry will not write through, said once. */
enum { ST_NONE = 0, ST_PENDING, ST_OK, ST_BAD, ST_REFUSED };
/* What a parked operation does when its directory is known. */
enum { R_PLACE = 0, R_MKDIR, R_META, R_REMOVAL, R_UPLOAD };
/* Temporary name states. */
enum { T_NONE = 0, T_MAYBE, T_DONE };

#define MARKER_MODE 0644u
/* Seconds an interrupted push waits for requests in flight. */
#define STOP_GRACE_MS 5000

typedef struct cx cx;
struct op;

/* The operations waiting for one directory's state (FIFO). */
typedef struct waitq {
	struct op *head, *tail;
} waitq;

typedef struct op {
	cx *c;
	size_t ai; /* action index; SIZE_MAX: the marker */
	char *rpath, *tpath;
	char *err;
	uint8_t status;      /* MKDIR: ST_* */
	uint8_t tstate;      /* T_* of tpath */
	uint8_t parked;      /* waiting for its directory's state */
	uint8_t remote;      /* the failure came from the remote */
	uint8_t checks;      /* symlinks: replies before the link is known */
	uint8_t resume;      /* R_*: what to do when unparked */
	struct dchk *mk_chk; /* MKDIR found the name taken: its check */
	uint8_t counted;     /* in cx.to_place until placed */
	uint8_t hash_ok, hash_broken;
	uint8_t chan; /* uploads spread: 0 the main channel, i streams[i-1] */
	int fd;
	void *hraw; /* allocation holding h (aligned) */
	ferry__hasher *h;
	uint64_t hashed;
	ferry__hash hash;
	ferry__stat *st0; /* the local file when opened (uploads) */
	struct big *big;  /* files of FERRY__DELTA_MIN_SIZE and up, or NULL */
	struct op *pnext; /* in the waitq it is parked on */
	waitq wq;         /* MKDIR: the operations waiting for it */
} op;

/* A large upload: its chunks cut as it is read (when the plan has none),
 * or, for a delta upload, the pieces built from the old file's chunks
 * (then only the written pieces are read, and the plan's hash and chunks
 * stand once the file is seen unchanged since it was hashed). */
typedef struct big {
	ferry__chunker ck;
	int chunking;
	int delta;
	int striped; /* read at several offsets: the plan's hash stands */
	ferry__sftp_piece *pieces;
	size_t npieces;
} big;

/* A directory that existed before this push and that something of the
 * push goes through, or the destination itself (path_len 0): checked
 * (LSTAT and READLINK in the first flight; STAT for the destination)
 * before anything is written below it. */
typedef struct dchk {
	cx *c;
	op *mk; /* the MKDIR whose name was taken, or NULL (rpath is its) */
	char *rpath;
	const char *path;
	size_t path_len;
	uint8_t status;  /* ST_* */
	uint8_t replies; /* outstanding */
	uint8_t is_link;
	int err; /* of the LSTAT */
	uint32_t perm;
	int code; /* of a failed judgement */
	char msg[200];
	waitq wq; /* the operations waiting for it */
} dchk;

struct cx {
	const ferry__commit_opts *o;
	ferry__commit_result *res;
	ferry__sftp *sf;
	ferry__plan *p;
	op *ops;
	op marker;
	char marker_text[FERRY__MARKER_TEXT_LEN + 1];
	size_t pending;      /* callbacks outstanding */
	ferry__pmap dirs;    /* MKDIR action paths -> action index */
	ferry__pmap checked; /* checked directory paths -> index in chk */
	dchk *chk;
	size_t nchk, capchk;
	dchk dest_chk; /* the destination, for writes below it */
	int hush;      /* failures said already (a refused directory) */
	/* Removals keep their order (deepest first): once one waits for its
	 * directory, those after it wait too. */
	size_t rm_parked;
	int rm_blocked; /* one was parked again in this unpark pass */
	waitq root_wq;  /* waiting for the destination's MKDIR */
	int root;       /* ST_* of the destination */
	int root_code;
	int stopping;
	op **parked;
	size_t nparked, capparked;
	int use_lsetstat;
	int probing;     /* the symlink probe runs: symlinks wait for it */
	size_t to_place; /* temporaries not yet renamed into place (or failed)
	                  */
	int in_first;    /* first_flight is submitting */
	int times_sent;  /* directory modes and times submitted */
	char *probe[FERRY__PROBE_NAMES];
	int whole_said; /* -v: "sent whole" said once */
	/* Extra SFTP clients large uploads are striped over, and small
	 * ones spread over (spread: many bytes of small files). */
	ferry__sftp *streams[FERRY__SFTP_STREAMS_MAX];
	unsigned nstreams;
	int spread;
	unsigned next_stream;
	uint32_t now_s;
	ferry_progress prog;
};

/* ---- helpers ---- */

static ferry__action *act(const op *x)
{
	return &x->c->p->a[x->ai];
}

static const char *op_path(const op *x, size_t *n)
{
	if (x->ai == SIZE_MAX) {
		const char *name = ferry__marker_name(x->c->o->o);
		*n = strlen(name);
		return name;
	}
	*n = act(x)->entry.path_len;
	return act(x)->entry.path;
}

static void progress(cx *c, uint64_t bytes)
{
	c->prog.files_done++;
	c->prog.bytes_done += bytes;
	if (c->o->o && c->o->o->on_progress)
		c->o->o->on_progress(c->o->o->ctx, &c->prog);
}

static void submit_times(cx *c);
static int needs_request(const ferry__action *a);

/* x will not write into its directory any more (its temporary was
 * renamed into place, or it failed): once none is left, the directories'
 * times can go, pipelined behind the last rename. */
static void placed(op *x)
{
	cx *c = x->c;
	if (!x->counted)
		return;
	x->counted = 0;
	if (--c->to_place == 0 && !c->in_first)
		submit_times(c);
}

/* Record a failure of x: code, message, report entry.  remote: the
 * server refused (the manifest stops vouching for the remote). */
__attribute__((format(printf, 4, 0))) static void
failv(op *x, int code, int remote, const char *fmt, va_list ap)
{
	cx *c = x->c;
	char msg[FERRY_ERRMSG_SIZE];
	placed(x);
	if (x->err) /* the first reason counts */
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	x->err = ferry__strdup(msg);
	x->remote = (uint8_t)remote;
	if (x->ai != SIZE_MAX)
		ferry__action_fail(act(x), code ? code : FERRY_ERROR);
	if (ferry__sftp_dead(c->sf)) {
		/* The connection is gone: one error for the push, not one
		 * per file. */
		if (!c->res->fatal) {
			c->res->fatal = ferry__sftp_dead(c->sf);
			snprintf(c->res->fatal_msg, sizeof(c->res->fatal_msg),
			         "%s", ferry__sftp_errmsg(c->sf));
		}
		c->res->failed++;
		return;
	}
	c->res->failed++;
	if (remote)
		c->res->remote_errors++;
	if (remote && (code == FERRY_ENOTFOUND || code == FERRY_EEXIST ||
	               code == FERRY_EREMOTE))
		c->res->surprises++;
	if (c->root == ST_BAD || c->stopping || c->hush)
		return; /* said once, for the destination, a directory or the
		           push */
	size_t n;
	const char *path = op_path(x, &n);
	const ferry_sync_opts *o = c->o->o;
	ferry__report_error(c->o->report, o ? o->log : NULL, o ? o->ctx : NULL,
	                    path, n, code ? code : FERRY_ERROR, "%s", msg);
}

static void fail(op *x, int code, int remote, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void fail(op *x, int code, int remote, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	failv(x, code, remote, fmt, ap);
	va_end(ap);
}

/* A request could not even be submitted. */
static void fail_submit(op *x, int rc, const char *what)
{
	const char *m = ferry__sftp_errmsg(x->c->sf);
	fail(x, rc, 0, "%s: %s", what, m && *m ? m : ferry_strerror(rc));
}

/* A request submitted (rc 0: one more pending) or refused at once. */
static void submitted(op *x, int rc, const char *what)
{
	if (rc)
		fail_submit(x, rc, what);
	else
		x->c->pending++;
}

static void set_attrs_meta(cx *c, ferry__sftp_attrs *a, const ferry__mentry *e,
                           int times)
{
	memset(a, 0, sizeof(*a));
	a->flags = FERRY__ATTR_PERMISSIONS;
	a->perm = e->mode & 07777u;
	if (times) {
		a->flags |= FERRY__ATTR_ACMODTIME;
		a->mtime = ferry__mtime_s(e->mtime_ns);
		a->atime = c->now_s;
	}
}

/* ---- directory states ---- */

static void park(op *x);
static void park_on(waitq *q, op *x);

/* The state of the directories path goes through: the first that is not
 * ST_OK (deepest first), else ST_OK; *q: the queue of that directory. */
static int dir_state(cx *c, const char *path, size_t n, waitq **q)
{
	int below = 0;
	for (;;) {
		size_t dl = ferry__path_dirlen(path, n);
		if (dl == 0) {
			if (c->root != ST_OK || !below) {
				*q = &c->root_wq;
				return c->root;
			}
			*q = &c->dest_chk.wq;
			return c->dest_chk.status;
		}
		below = 1;
		size_t i = ferry__pmap_get(&c->dirs, path, dl);
		if (i != FERRY__PMAP_NONE) {
			if (c->ops[i].status != ST_OK) {
				*q = &c->ops[i].wq;
				return c->ops[i].status;
			}
		} else if ((i = ferry__pmap_get(&c->checked, path, dl)) !=
		           FERRY__PMAP_NONE) {
			if (c->chk[i].status != ST_OK) {
				*q = &c->chk[i].wq;
				return c->chk[i].status;
			}
		}
		n = dl;
	}
}

static void do_gated(op *x);

/* Whether x may write at its path now: 1 when it may; 0 when it waits
 * (parked, resumed by do_gated) or failed. */
static int gate(op *x, int resume)
{
	size_t n;
	waitq *q = NULL;
	const char *path = op_path(x, &n);
	int st = dir_state(x->c, path, n, &q);
	if (st == ST_OK)
		return 1;
	if (st == ST_PENDING) {
		x->resume = (uint8_t)resume;
		if (resume == R_REMOVAL) {
			/* In order (deepest first): with every removal. */
			park(x);
			x->c->rm_parked++;
			x->c->rm_blocked = 1;
		} else {
			park_on(q, x);
		}
		return 0;
	}
	x->c->hush = st == ST_REFUSED;
	fail(x, st == ST_REFUSED ? FERRY_EPERM : FERRY_EREMOTE, 1,
	     st == ST_REFUSED
	             ? "not written: a remote directory on its way is not "
	               "safe to write through"
	             : "not written: its remote directory could not be "
	               "created");
	x->c->hush = 0;
	return 0;
}

static void after_close(op *x);
static void after_symlink(op *x);
static void submit_symlink(cx *c, op *x);
static void place_symlink(op *x);
static void link_checked(op *x);

static void park(op *x)
{
	cx *c = x->c;
	if (c->nparked == c->capparked) {
		size_t ncap = c->capparked ? c->capparked * 2 : 16;
		op **np = ferry__reallocarray(c->parked, ncap, sizeof(*np));
		if (!np) {
			fail(x, FERRY_ENOMEM, 0, "out of memory");
			return;
		}
		c->parked = np;
		c->capparked = ncap;
	}
	x->parked = 1;
	c->parked[c->nparked++] = x;
}

/* Parked on one directory's queue (gate): moved on when that directory's
 * state is known, not at every other directory's answer. */
static void park_on(waitq *q, op *x)
{
	x->parked = 1;
	x->pnext = NULL;
	if (q->tail)
		q->tail->pnext = x;
	else
		q->head = x;
	q->tail = x;
}

static void resume_op(cx *c, op *x)
{
	x->parked = 0;
	if (x->resume != R_PLACE)
		do_gated(x);
	else if (x->ai != SIZE_MAX && act(x)->kind == FERRY__ACT_SYMLINK)
		x->tstate == T_NONE ? submit_symlink(c, x) : after_symlink(x);
	else
		after_close(x);
}

/* A directory state changed: move the operations parked without a queue
 * on (removals, in their order; links waiting for the server's symlink
 * probe). */
static void unpark(cx *c)
{
	size_t n = c->nparked;
	op **v = c->parked;
	c->parked = NULL;
	c->nparked = c->capparked = 0;
	c->rm_blocked = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i]->parked) /* not failed since */
			resume_op(c, v[i]);
	ferry__free(v);
}

/* The state of q's directory is known: its operations move on (each may
 * park again, deeper), then those parked without a queue. */
static void unpark_q(cx *c, waitq *q)
{
	op *x = q->head;
	q->head = q->tail = NULL;
	while (x) {
		op *next = x->pnext;
		x->pnext = NULL;
		if (x->parked)
			resume_op(c, x);
		x = next;
	}
	if (c->nparked)
		unpark(c);
}

/* ---- temporary names ---- */

static void remove_tmp_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	x->c->pending--;
	if (!r->error || r->error == FERRY_ENOTFOUND)
		x->tstate = T_DONE;
}

static void remove_tmp(op *x)
{
	if (x->tstate != T_MAYBE)
		return;
	if (!ferry__sftp_remove(x->c->sf, x->tpath, remove_tmp_cb, x))
		x->c->pending++;
}

static void cleanup_cb(void *ctx, const ferry__sftp_reply *r)
{
	cx *c = ctx;
	c->pending--;
	(void)r; /* a leftover that stays is found again by the next verify */
}

/* ---- local reads for uploads ---- */

static void close_local(op *x)
{
	if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
	ferry__free(x->hraw);
	x->hraw = NULL;
	x->h = NULL;
	ferry__free(x->st0);
	x->st0 = NULL;
}

static int stat_moved(const ferry__stat *a, const struct stat *b)
{
	ferry__stat nb;
	ferry__stat_from(&nb, b);
	return a->size != nb.size || a->ino != nb.ino ||
	       a->mtime_ns != nb.mtime_ns || a->ctime_ns != nb.ctime_ns;
}

static int open_local(op *x)
{
	cx *c = x->c;
	ferry__action *a = act(x);
	struct stat st;
	int error = ferry__scan_open(c->p->scan, a->src, a->entry.path,
	                             a->entry.path_len, &x->fd, &st);
	if (error) {
		int e = errno;
		x->fd = -1;
		fail(x, error, 0, "cannot read: %s",
		     error == FERRY_EINVALID ? "no longer a regular file"
		                             : strerror(e));
		return error;
	}
	if ((uint64_t)st.st_size != a->entry.size) {
		close_local(x);
		fail(x, FERRY_EIO, 0,
		     "changed size while the push ran (%llu bytes, was %llu): "
		     "left for the next push",
		     (unsigned long long)st.st_size,
		     (unsigned long long)a->entry.size);
		return FERRY_EIO;
	}
	x->st0 = ferry__malloc(sizeof(*x->st0));
	if (!x->st0) {
		close_local(x);
		fail(x, FERRY_ENOMEM, 0, "out of memory");
		return FERRY_ENOMEM;
	}
	ferry__stat_from(x->st0, &st);
	return 0;
}

static void big_free(op *x)
{
	if (!x->big)
		return;
	ferry__chunker_free(&x->big->ck);
	ferry__free(x->big->pieces);
	ferry__free(x->big);
	x->big = NULL;
}

static int delta(const op *x)
{
	return x->big && x->big->delta;
}

/* Read out of order (a delta's pieces, a striped upload's ranges): not
 * hashed as sent; the plan's hash and chunks stand when the file is seen
 * unchanged since the plan read it (local_moved). */
static int planned(const op *x)
{
	return x->big && (x->big->delta || x->big->striped);
}

/* Sequential reads of a large file feed its chunker. */
static void chunk_feed(op *x, const void *buf, size_t n)
{
	big *b = x->big;
	if (b && b->chunking && ferry__chunker_update(&b->ck, buf, n))
		b->chunking = 0; /* out of memory: recorded without chunks */
}

static int read_cb(void *rctx, void *buf, size_t n, uint64_t off)
{
	op *x = rctx;
	ferry__action *a = act(x);
	int error;
	if (x->fd < 0) {
		if (off != 0 && !planned(x))
			return FERRY_EIO;
		if ((error = open_local(x)))
			return error;
	}
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(x->fd, (uint8_t *)buf + done, n - done,
		                  (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = errno;
			close_local(x);
			if (r < 0)
				fail(x, FERRY_EIO, 0, "cannot read: %s",
				     strerror(e));
			else
				fail(x, FERRY_EIO, 0,
				     "shrank while it was sent: left for the "
				     "next push");
			return FERRY_EIO;
		}
		done += (size_t)r;
	}
	if (planned(x))
		return 0; /* out of order: checked at the end */
	if (off != x->hashed || x->hash_broken) {
		x->hash_broken = 1;
	} else if (off == 0 && n == a->entry.size) {
		ferry__hash_buf(&x->hash, buf, n);
		chunk_feed(x, buf, n);
		x->hashed = n;
		x->hash_ok = 1;
	} else {
		if (!x->h) {
			x->hraw = ferry__malloc(sizeof(ferry__hasher) + 64);
			if (!x->hraw) {
				x->hash_broken = 1;
				goto check;
			}
			x->h = (ferry__hasher *)(void *)(((uintptr_t)x->hraw +
			                                  63) &
			                                 ~(uintptr_t)63);
			ferry__hasher_init(x->h);
		}
		ferry__hasher_update(x->h, buf, n);
		chunk_feed(x, buf, n);
		x->hashed += n;
		if (x->hashed == a->entry.size) {
			ferry__hasher_final(x->h, &x->hash);
			x->hash_ok = 1;
		}
	}
check:
	if (off + n >= a->entry.size) {
		struct stat st;
		int moved = fstat(x->fd, &st) < 0 || stat_moved(x->st0, &st);
		close_local(x);
		if (moved) {
			fail(x, FERRY_EIO, 0,
			     "changed while it was sent: left for the next "
			     "push");
			return FERRY_EIO;
		}
	}
	return 0;
}

/* ---- uploads ---- */

static void commit_upload(op *x)
{
	ferry__action *a = act(x);
	big *b = x->big;
	if (planned(x)) {
		/* Seen unchanged since the plan hashed it (upload_done). */
		ferry__action_uploaded(a, &a->entry.hash);
		return;
	}
	int ok = x->hash_ok && !x->hash_broken;
	/* The plan's chunks are the content's when the hashes agree. */
	int keep = ok && a->entry.chunks &&
	           (a->entry.flags & FERRY__ME_HASHED) &&
	           ferry__hash_eq(&a->entry.hash, &x->hash);
	ferry__action_uploaded(a, ok ? &x->hash : NULL);
	if (keep || !ok)
		return;
	if (b && b->chunking && !ferry__chunker_final(&b->ck)) {
		ferry__plan_keep_chunks(x->c->p, a, b->ck.v, (uint32_t)b->ck.n);
		b->ck.v = NULL;
		b->ck.n = 0;
	} else {
		ferry__plan_keep_chunks(x->c->p, a, NULL, 0);
	}
}

static void rename_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	cx *c = x->c;
	c->pending--;
	if (r->error) {
		fail(x, r->error, 1, "%s", r->message);
		remove_tmp(x);
		return;
	}
	x->tstate = T_DONE;
	if (x->ai == SIZE_MAX) {
		c->res->marker_written = 1;
		return;
	}
	ferry__action *a = act(x);
	if (a->kind == FERRY__ACT_SYMLINK) {
		link_checked(x);
		return;
	}
	if (a->kind == FERRY__ACT_UPLOAD) {
		commit_upload(x);
		progress(c, a->entry.size);
	} else {
		ferry__action_commit(a);
		progress(c, 0);
	}
}

static void do_rename(op *x)
{
	cx *c = x->c;
	if (x->ai != SIZE_MAX && act(x)->kind == FERRY__ACT_SYMLINK) {
		place_symlink(x);
		return;
	}
	int fallback = 0;
	int rc = ferry__sftp_rename_replace(c->sf, x->tpath, x->rpath,
	                                    &fallback, rename_cb, x);
	if (fallback)
		c->res->rename_fallback = 1;
	if (rc) {
		fail_submit(x, rc, "rename");
		remove_tmp(x);
		return;
	}
	c->pending++;
	placed(x);
}

/* A temporary (file or symlink) is complete: rename it into place once
 * its directory is known to be a real directory. */
static void rename_when_dir_ok(op *x)
{
	cx *c = x->c;
	if (c->stopping) {
		fail(x, FERRY_EINTR, 0, "interrupted");
		remove_tmp(x);
		return;
	}
	if (!gate(x, R_PLACE)) {
		if (!x->parked)
			remove_tmp(x);
		return;
	}
	do_rename(x);
}

static void after_close(op *x)
{
	rename_when_dir_ok(x);
}

/* A delta upload's local file is still what the plan hashed and chunked
 * (its stat then): else the pieces may not be its content. */
static int local_moved(op *x)
{
	const ferry__mentry *e = &act(x)->entry;
	struct stat st;
	if (x->fd < 0 && open_local(x))
		return 1; /* said */
	if (fstat(x->fd, &st) < 0 || stat_moved(x->st0, &st) ||
	    x->st0->size != e->size || x->st0->ino != e->ino ||
	    x->st0->mtime_ns != e->mtime_ns ||
	    x->st0->ctime_ns != e->ctime_ns) {
		fail(x, FERRY_EIO, 0,
		     "changed while it was sent: left for the next push");
		return 1;
	}
	return 0;
}

static void say_whole(cx *c, const op *x, const char *why)
{
	const ferry_sync_opts *o = c->o->o;
	if (c->whole_said || !o || !o->log)
		return;
	c->whole_said = 1;
	char msg[FERRY_ERRMSG_SIZE];
	size_t n;
	const char *path = op_path(x, &n);
	snprintf(msg, sizeof(msg), "%.*s: sent whole, not as a delta: %s",
	         (int)n, path, why);
	o->log(o->ctx, FERRY_LOG_INFO, msg);
}

static void upload_done(void *ctx, const ferry__sftp_upload_result *r)
{
	op *x = ctx;
	cx *c = x->c;
	c->pending--;
	if (delta(x)) {
		c->res->bytes_copied += r->copied;
		if (r->delta_fallback)
			say_whole(c, x,
			          r->delta_why ? r->delta_why
			                       : "the old file was not usable");
		else if (r->copied && !r->error)
			act(x)->flags |= FERRY_CHANGED_DELTA;
	}
	if (planned(x) && !r->error && local_moved(x)) {
		close_local(x);
		x->tstate = T_MAYBE;
		remove_tmp(x);
		return;
	}
	close_local(x);
	if (r->fsynced)
		c->res->fsyncs++;
	if (r->fsync_skipped)
		c->res->fsync_missing = 1;
	if (x->ai != SIZE_MAX)
		c->res->bytes_sent += r->bytes;
	if (r->error) {
		int opened = r->step && strcmp(r->step, "open") != 0;
		if (ferry__sftp_dead(c->sf) || (opened && !r->removed))
			x->tstate = T_MAYBE;
		else
			x->tstate = T_DONE;
		int local = r->step && strcmp(r->step, "read") == 0;
		if (!local)
			fail(x, r->error, 1, "%s", r->message);
		else if (!x->err)
			fail(x, r->error, 0, "%s", r->message);
		return;
	}
	after_close(x);
}

static uint64_t chunk_key(const ferry__chunk *k)
{
	return ferry__peek_u32(k->hash.b) |
	       (uint64_t)ferry__peek_u32(k->hash.b + 4) << 32;
}

/* The pieces of the new content (chunks, n) from the old (oc, on): each
 * chunk found in the old file by hash and length is copied from it, the
 * rest written; neighbours of one kind (and, for copies, contiguous in
 * the old file) merged.  0 or FERRY_ENOMEM; *np 0 when nothing is found. */
static int build_pieces(const ferry__chunk *nc, uint32_t n,
                        const ferry__chunk *oc, uint32_t on,
                        ferry__sftp_piece **out, size_t *np)
{
	size_t size = 16, k = 0, copies = 0;
	while (size < 2 * (size_t)on)
		size *= 2;
	uint32_t *tab = ferry__calloc(size, sizeof(*tab));
	ferry__sftp_piece *v = ferry__reallocarray(NULL, n, sizeof(*v));
	if (!tab || !v) {
		ferry__free(tab);
		ferry__free(v);
		return FERRY_ENOMEM;
	}
	for (uint32_t i = 0; i < on; i++) {
		size_t h = (size_t)chunk_key(&oc[i]) & (size - 1);
		while (tab[h])
			h = (h + 1) & (size - 1);
		tab[h] = i + 1;
	}
	for (uint32_t i = 0; i < n; i++) {
		const ferry__chunk *ch = &nc[i];
		const ferry__chunk *hit = NULL;
		for (size_t h = (size_t)chunk_key(ch) & (size - 1); tab[h];
		     h = (h + 1) & (size - 1)) {
			const ferry__chunk *o = &oc[tab[h] - 1];
			if (o->len == ch->len &&
			    ferry__hash_eq(&o->hash, &ch->hash)) {
				hit = o;
				break;
			}
		}
		ferry__sftp_piece *last = k ? &v[k - 1] : NULL;
		if (hit && last && last->copy &&
		    last->base_off + last->len == hit->off) {
			last->len += ch->len;
		} else if (!hit && last && !last->copy) {
			last->len += ch->len;
		} else {
			v[k].off = ch->off;
			v[k].len = ch->len;
			v[k].base_off = hit ? hit->off : 0;
			v[k].copy = hit != NULL;
			k++;
		}
		copies += hit != NULL;
	}
	ferry__free(tab);
	if (!copies) {
		ferry__free(v);
		v = NULL;
		k = 0;
	}
	*out = v;
	*np = k;
	return 0;
}

/* A changed large file whose old version the manifest vouches for, with
 * chunk lists for both: rebuilt from the old remote file (delta).  Not
 * with checksum or verify (the user does not trust the remote copy, and
 * neither looks at its content), nor for a file the plan could not hash. */
static void plan_delta(cx *c, op *x, ferry__sftp_upload_opts *u)
{
	ferry__action *a = act(x);
	const ferry_sync_opts *so = c->o->o;
	if (a->entry.size < FERRY__DELTA_MIN_SIZE)
		return;
	const ferry__mentry *old = NULL;
	if (a->entry.chunks && (a->entry.flags & FERRY__ME_HASHED) &&
	    !(a->flags &
	      (FERRY_CHANGED_NEW | FERRY_CHANGED_TYPE | FERRY__ACT_UNHASHED)))
		old = ferry__manifest_find(c->p->m, a->entry.path,
		                           a->entry.path_len);
	if (!old || old->type != FERRY__T_FILE ||
	    !(old->flags & FERRY__ME_HASHED) || !old->nchunks)
		return;
	if (so && (so->checksum || so->verify)) {
		say_whole(c, x,
		          so->checksum ? "--checksum does not trust the "
		                         "remote copy"
		                       : "--verify does not trust the "
		                         "remote copy");
		return;
	}
	if (!ferry__sftp_has(c->sf, FERRY__EXT_COPY_DATA)) {
		say_whole(c, x, "the server has no copy-data extension");
		return;
	}
	if (!x->big && !(x->big = ferry__calloc(1, sizeof(*x->big))))
		return;
	big *b = x->big;
	if (build_pieces(a->entry.chunks, a->entry.nchunks, old->chunks,
	                 old->nchunks, &b->pieces, &b->npieces) ||
	    !b->npieces)
		return;
	b->delta = 1;
	u->base = x->rpath;
	u->base_size = old->size;
	u->base_mtime = ferry__mtime_s(old->mtime_ns);
	u->pieces = b->pieces;
	u->npieces = b->npieces;
}

/* A large upload striped over the session's extra channels, with the
 * plan's hash (taken now when the plan has none: the ranges are read out
 * of order). */
static void plan_stripes(cx *c, op *x, ferry__sftp_upload_opts *u)
{
	ferry__action *a = act(x);
	if (!c->nstreams || a->entry.size < FERRY__STRIPE_MIN)
		return;
	if (!x->big && !(x->big = ferry__calloc(1, sizeof(*x->big))))
		return;
	if (!(a->entry.flags & FERRY__ME_HASHED) ||
	    (a->flags & FERRY__ACT_UNHASHED)) {
		if (ferry__action_hash_local(c->p, a) ||
		    !(a->entry.flags & FERRY__ME_HASHED))
			return; /* sent in order, hashed as it goes */
	}
	x->big->striped = 1;
	u->streams = c->streams;
	u->nstreams = c->nstreams;
}

/* A large file sent in order without chunks from the plan (a new one):
 * cut as it is read, for its manifest entry. */
static void plan_chunking(op *x)
{
	ferry__action *a = act(x);
	if (a->entry.size < FERRY__DELTA_MIN_SIZE || a->entry.chunks ||
	    planned(x))
		return;
	if (!x->big && !(x->big = ferry__calloc(1, sizeof(*x->big))))
		return;
	x->big->chunking = !ferry__chunker_init(&x->big->ck);
}

/* The channel a whole upload goes over: with many small files, each
 * channel in turn (the main one and the streams), so one channel's window
 * and one server process's handles are not the limit.  Only the
 * temporary is written there: its rename follows its CLOSE's answer on
 * the main channel, as always.  Files below FERRY__DELTA_MIN_SIZE only
 * (never a delta or a stripe; the marker is not one), and an upload
 * whose stream is gone goes over the main channel. */
static unsigned next_chan(cx *c)
{
	return c->next_stream++ % (c->nstreams + 1);
}

static ferry__sftp *upload_sf(cx *c, const op *x)
{
	if (!x->chan || ferry__sftp_dead(c->streams[x->chan - 1]))
		return c->sf;
	return c->streams[x->chan - 1];
}

static void submit_upload(cx *c, op *x, const void *data, uint32_t perm,
                          int fsync_it, const ferry__mentry *e)
{
	ferry__sftp_upload_opts u;
	memset(&u, 0, sizeof(u));
	u.path = x->tpath;
	u.has_perm = 1;
	u.perm = perm;
	/* A file others may not read is not written to before its mode is
	 * seen to be right: a server may ignore OPEN's permissions. */
	u.confirm_perm = !(perm & 004);
	if (data) {
		u.data = data;
		u.size = strlen(data);
	} else {
		u.read = read_cb;
		u.rctx = x;
		u.size = e->size;
		u.has_attrs = 1;
		set_attrs_meta(c, &u.attrs, e, 1);
	}
	if (!data) {
		plan_delta(c, x, &u);
		if (!u.base)
			plan_stripes(c, x, &u);
		plan_chunking(x);
	}
	u.fsync = fsync_it;
	u.remove_on_error = 1;
	u.done = upload_done;
	u.ctx = x;
	x->tstate = T_MAYBE;
	int rc = ferry__sftp_upload(upload_sf(c, x), &u);
	if (rc) {
		x->tstate = T_DONE;
		fail_submit(x, rc, "upload");
		return;
	}
	c->pending++;
}

static void upload_now(cx *c, op *x)
{
	ferry__action *a = act(x);
	if (a->entry.size == 0) {
		/* No read will happen: check the file now. */
		if (open_local(x))
			return;
		close_local(x);
		ferry__hash_buf(&x->hash, "", 0);
		x->hash_ok = 1;
	}
	int owner_only = (a->entry.mode & 077) == 0;
	submit_upload(c, x, NULL, a->entry.mode & 07777u,
	              owner_only || c->o->fsync_all, &a->entry);
}

/* An upload given to a stream waits for the destination's MKDIR when
 * the push makes it: a stream's OPEN is not ordered behind the main
 * channel's requests.  Resumed (R_UPLOAD) when the MKDIR is answered. */
static void start_upload(cx *c, op *x)
{
	if (c->spread && act(x)->entry.size < FERRY__DELTA_MIN_SIZE)
		x->chan = (uint8_t)next_chan(c);
	if (x->chan && c->root == ST_PENDING) {
		x->resume = R_UPLOAD;
		park_on(&c->root_wq, x);
		return;
	}
	upload_now(c, x);
}

/* The destination's MKDIR an upload waited for was answered. */
static void upload_gated(cx *c, op *x)
{
	if (c->stopping)
		fail(x, FERRY_EINTR, 0, "interrupted");
	else if (c->root != ST_OK)
		fail(x, c->root_code ? c->root_code : FERRY_EREMOTE, 1,
		     "the destination directory could not be made");
	else
		upload_now(c, x);
}

/* ---- symlinks ----
 *
 * A symlink is made under its temporary name and renamed into place, like
 * a file, once the server's SYMLINK argument order is known (advertised,
 * or found by the probe in the first flight: ferry__sftp_probe_symlinks).
 * On a server whose RENAME of a link moves the link's target (ProFTPD),
 * the final name is removed and the link made there instead: not atomic,
 * said with -v.  Either way a READLINK in the same pipeline checks what
 * the server made before the link counts as done. */

/* A reply a placed symlink waited for: the rename (or the final SYMLINK)
 * and the READLINK; the last one decides. */
static void link_checked(op *x)
{
	if (--x->checks || x->err)
		return;
	ferry__action_commit(act(x));
	progress(x->c, 0);
}

static void link_check_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	ferry__action *a = act(x);
	x->c->pending--;
	if (x->err) /* the rename failed: said already */
		return;
	if (r->error || r->count < 1 ||
	    !ferry__sftp_link_same(x->c->sf, x->rpath, r->names[0].name,
	                           r->names[0].name_len, a->link,
	                           a->link_len)) {
		fail(x, FERRY_EREMOTE, 1,
		     "the server did not make the symlink asked for (%s)",
		     r->error ? r->message : "another target");
		return;
	}
	link_checked(x);
}

static void final_symlink_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	x->c->pending--;
	if (r->error) {
		fail(x, r->error, 1, "%s", r->message);
		return;
	}
	link_checked(x);
}

static void ignore_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	(void)r;
	x->c->pending--;
}

/* The temporary link is made and its directory is ours: into place. */
static void place_symlink(op *x)
{
	cx *c = x->c;
	ferry__action *a = act(x);
	int rc;
	if (!ferry__sftp_symlinks_known(c->sf) && c->probing) {
		park(x);
		return;
	}
	x->checks = 2;
	if (ferry__sftp_symlink_rename_safe(c->sf)) {
		int fallback = 0;
		rc = ferry__sftp_rename_replace(c->sf, x->tpath, x->rpath,
		                                &fallback, rename_cb, x);
		if (fallback)
			c->res->rename_fallback = 1;
	} else {
		c->res->links_replaced = 1;
		remove_tmp(x);
		if (!ferry__sftp_remove(c->sf, x->rpath, ignore_cb, x))
			c->pending++;
		rc = ferry__sftp_symlink(c->sf, x->rpath, a->link,
		                         final_symlink_cb, x);
	}
	if (rc) {
		fail_submit(x, rc, "symlink");
		remove_tmp(x);
		return;
	}
	c->pending++;
	submitted(x, ferry__sftp_readlink(c->sf, x->rpath, link_check_cb, x),
	          "readlink");
	placed(x);
}

static void after_symlink(op *x)
{
	rename_when_dir_ok(x);
}

static void symlink_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	x->c->pending--;
	if (r->error) {
		x->tstate = ferry__sftp_dead(x->c->sf) ? T_MAYBE : T_DONE;
		fail(x, r->error, 1, "%s", r->message);
		return;
	}
	after_symlink(x);
}

/* ---- directories ---- */

static void dir_resolved(op *x, int status)
{
	x->status = (uint8_t)status;
	unpark_q(x->c, &x->wq);
}

static void mkdir_setstat_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	x->c->pending--;
	if (r->error)
		fail(x, r->error, 1, "setting the mode of a new directory: %s",
		     r->message);
}

static void dir_ok(op *x)
{
	cx *c = x->c;
	ferry__action *a = act(x);
	ferry__action_commit(a);
	/* The server's umask applied to MKDIR: set the exact mode. */
	ferry__sftp_attrs at;
	memset(&at, 0, sizeof(at));
	at.flags = FERRY__ATTR_PERMISSIONS;
	at.perm = a->create_mode & 07777u;
	/* A directory this push just made: no symlink can be there.  When
	 * the directories' final modes went already (nothing to write into
	 * them), this one's is among them. */
	if (!c->times_sent &&
	    !ferry__sftp_setstat(c->sf, x->rpath, &at, mkdir_setstat_cb, x))
		c->pending++;
	progress(c, 0);
	dir_resolved(x, ST_OK);
}

/* Whether a remote directory that ferry did not make in this push may be
 * written through: lerr/perm from its LSTAT (perm 0: no permissions in
 * the reply), is_link when READLINK of it worked (a server such as
 * ProFTPD answers LSTAT of a link with its target's attributes).  ST_OK,
 * or ST_BAD / ST_REFUSED with *code and msg. */
static int judge_dir(cx *c, int lerr, uint32_t perm, int is_link, int *code,
                     char *msg, size_t size)
{
	const ferry_sync_opts *o = c->o->o;
	if (lerr == FERRY_ENOTFOUND) {
		*code = FERRY_ENOTFOUND;
		snprintf(msg, size,
		         "is gone from the remote: nothing written below it");
		return ST_BAD;
	}
	if (lerr) {
		*code = lerr;
		snprintf(msg, size, "cannot be checked on the remote (%s)",
		         ferry_strerror(lerr));
		return ST_REFUSED;
	}
	if (is_link || S_ISLNK(perm) || !S_ISDIR(perm)) {
		*code = FERRY_EEXIST;
		snprintf(
		        msg, size,
		        "is %s on the remote, not a directory: nothing written "
		        "through it",
		        is_link || S_ISLNK(perm) ? "a symlink"
		        : S_ISREG(perm)          ? "a file"
		                                 : "something else");
		return ST_BAD;
	}
	if ((perm & 022) && !(o && o->allow_shared_dirs)) {
		*code = FERRY_EPERM;
		snprintf(msg, size,
		         "is writable by other accounts on the remote (mode "
		         "%04o): ferry writes nothing below it "
		         "(--allow-shared-dirs to push anyway)",
		         (unsigned)(perm & 07777));
		return ST_REFUSED;
	}
	if (perm & 022)
		c->res->shared = 1;
	return ST_OK;
}

static void submit_check(cx *c, struct dchk *d);

static void mkdir_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	cx *c = x->c;
	c->pending--;
	if (!r->error) {
		dir_ok(x);
		return;
	}
	/* The name is taken: checked as any directory the push did not
	 * make (there already: an interrupted push). */
	if (!ferry__sftp_dead(c->sf) &&
	    (r->error == FERRY_EEXIST || r->error == FERRY_EREMOTE) &&
	    (x->mk_chk = ferry__calloc(1, sizeof(*x->mk_chk)))) {
		dchk *d = x->mk_chk;
		d->c = c;
		d->mk = x;
		d->rpath = x->rpath;
		d->path = act(x)->entry.path;
		d->path_len = act(x)->entry.path_len;
		d->status = ST_PENDING;
		submit_check(c, d);
		return;
	}
	fail(x, r->error, 1, "%s", r->message);
	dir_resolved(x, ST_BAD);
}

static void submit_mkdir(cx *c, op *x)
{
	ferry__action *a = act(x);
	/* Into a directory known to be one: made by this push, or checked. */
	x->status = ST_PENDING;
	if (!gate(x, R_MKDIR)) {
		if (!x->parked)
			dir_resolved(x, ST_BAD);
		return;
	}
	ferry__sftp_attrs at;
	memset(&at, 0, sizeof(at));
	at.flags = FERRY__ATTR_PERMISSIONS;
	at.perm = a->create_mode & 07777u;
	x->status = ST_PENDING;
	int rc = ferry__sftp_mkdir(c->sf, x->rpath, &at, mkdir_cb, x);
	if (rc) {
		fail_submit(x, rc, "mkdir");
		x->status = ST_BAD;
		return;
	}
	c->pending++;
}

/* ---- checked directories ---- */

static void chk_reply(dchk *d)
{
	cx *c = d->c;
	if (--d->replies)
		return;
	d->status = (uint8_t)judge_dir(c, d->err, d->perm, d->is_link, &d->code,
	                               d->msg, sizeof(d->msg));
	int code = d->code;
	if (d->mk) {
		op *x = d->mk;
		if (d->status == ST_OK) {
			dir_ok(x);
			return;
		}
		fail(x, code, code != FERRY_EPERM, "%s", d->msg);
		dir_resolved(x, d->status);
		return;
	}
	if (d->status != ST_OK) {
		const ferry_sync_opts *o = c->o->o;
		if (d->status == ST_BAD) {
			/* Not what the manifest says: verify and repair. */
			c->res->remote_errors++;
			c->res->surprises++;
		}
		if (!c->stopping)
			ferry__report_error(c->o->report, o ? o->log : NULL,
			                    o ? o->ctx : NULL,
			                    d->path_len ? d->path : ".",
			                    d->path_len ? d->path_len : 1, code,
			                    "%s", d->msg);
	}
	unpark_q(c, &d->wq);
}

static void chk_lstat_cb(void *ctx, const ferry__sftp_reply *r)
{
	dchk *d = ctx;
	d->c->pending--;
	if (r->error)
		d->err = r->error;
	else if (r->attrs && (r->attrs->flags & FERRY__ATTR_PERMISSIONS))
		d->perm = r->attrs->perm;
	chk_reply(d);
}

static void chk_readlink_cb(void *ctx, const ferry__sftp_reply *r)
{
	dchk *d = ctx;
	d->c->pending--;
	d->is_link = !r->error;
	chk_reply(d);
}

static void submit_check(cx *c, dchk *d)
{
	const char *p = d->path_len ? d->rpath : c->o->dest;
	d->replies = 1; /* until both are sent */
	if (d->path_len) {
		if (!ferry__sftp_lstat(c->sf, p, chk_lstat_cb, d)) {
			c->pending++;
			d->replies++;
		} else {
			d->err = FERRY_ERROR;
		}
		if (!ferry__sftp_readlink(c->sf, p, chk_readlink_cb, d)) {
			c->pending++;
			d->replies++;
		}
	} else if (!ferry__sftp_stat(c->sf, p, chk_lstat_cb, d)) {
		c->pending++;
		d->replies++;
	} else {
		d->err = FERRY_ERROR;
	}
	chk_reply(d);
}

static int add_check(cx *c, const char *path, size_t n)
{
	if (ferry__grow(&c->chk, &c->capchk, c->nchk + 1, sizeof(*c->chk), 16))
		return FERRY_ENOMEM;
	dchk *d = &c->chk[c->nchk];
	memset(d, 0, sizeof(*d));
	d->c = c;
	d->path = path;
	d->path_len = n;
	d->status = ST_PENDING;
	d->rpath = ferry__rpath(c->o->dest, path, n);
	if (!d->rpath || ferry__pmap_put(&c->checked, path, n, c->nchk))
		return FERRY_ENOMEM;
	c->nchk++;
	return 0;
}

/* Every directory an action goes through that this push does not make
 * is checked, and the destination when anything is below it. */
static int plan_checks(cx *c)
{
	int below = 0;
	for (size_t i = 0; i < c->p->n; i++) {
		const ferry__action *a = &c->p->a[i];
		if (!needs_request(a))
			continue;
		const char *path = a->entry.path;
		size_t dl = ferry__path_dirlen(path, a->entry.path_len);
		below |= dl > 0;
		for (; dl > 0; dl = ferry__path_dirlen(path, dl)) {
			if (ferry__pmap_get(&c->dirs, path, dl) !=
			    FERRY__PMAP_NONE)
				continue;
			if (ferry__pmap_get(&c->checked, path, dl) !=
			    FERRY__PMAP_NONE)
				break; /* and its parents with it */
			if (add_check(c, path, dl))
				return FERRY_ENOMEM;
		}
	}
	c->dest_chk.c = c;
	c->dest_chk.status = below && !c->o->dest_missing ? ST_PENDING : ST_OK;
	return 0;
}

/* The destination and its missing parents, like mkdir -p. */
typedef struct dest_mk {
	cx *c;
	int last;
	char *path;
} dest_mk;

static void dest_mkdir_cb(void *ctx, const ferry__sftp_reply *r)
{
	dest_mk *d = ctx;
	cx *c = d->c;
	c->pending--;
	if (d->last) {
		if (!r->error || r->error == FERRY_EEXIST) {
			c->root = ST_OK;
		} else {
			c->root = ST_BAD;
			c->root_code = r->error;
			if (!c->res->fatal) {
				c->res->fatal = r->error;
				snprintf(c->res->fatal_msg,
				         sizeof(c->res->fatal_msg),
				         "cannot create the destination "
				         "directory: %s",
				         r->message);
			}
		}
		unpark_q(c, &c->root_wq);
	}
	ferry__free(d->path);
	ferry__free(d);
}

static int submit_dest_mkdir(cx *c)
{
	const char *dest = c->o->dest;
	size_t n = strlen(dest);
	if (n == 1 && (dest[0] == '.' || dest[0] == '/'))
		return 0;
	c->root = ST_PENDING;
	for (size_t i = 1; i <= n; i++) {
		if (i < n && dest[i] != '/')
			continue;
		dest_mk *d = ferry__calloc(1, sizeof(*d));
		char *p = ferry__strndup(dest, i);
		if (!d || !p) {
			ferry__free(d);
			ferry__free(p);
			return FERRY_ENOMEM;
		}
		d->c = c;
		d->last = i == n;
		d->path = p;
		ferry__sftp_attrs at;
		memset(&at, 0, sizeof(at));
		at.flags = FERRY__ATTR_PERMISSIONS;
		at.perm = d->last ? c->o->dest_mode & 07777u : 0755u;
		int rc = ferry__sftp_mkdir(c->sf, p, &at, dest_mkdir_cb, d);
		if (rc) {
			ferry__free(p);
			ferry__free(d);
			return rc;
		}
		c->pending++;
	}
	return 0;
}

/* ---- metadata, removals ---- */

/* Metadata updates must not follow a symlink planted where a file or a
 * directory was: lsetstat@openssh.com; without it (or where it fails: the
 * server's fchmodat(AT_SYMLINK_NOFOLLOW) needs /proc, which a chroot may
 * lack) LSTAT first, then SETSTAT only when the path is no symlink. */
static void submit_meta(cx *c, op *x);

static void meta_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	cx *c = x->c;
	c->pending--;
	if (r->error && r->req_type == FERRY__FXP_EXTENDED &&
	    (r->error == FERRY_EREMOTE || r->error == FERRY_EUNSUPPORTED) &&
	    !ferry__sftp_dead(c->sf)) {
		c->use_lsetstat = 0;
		submit_meta(c, x);
		return;
	}
	if (r->error) {
		fail(x, r->error, 1, "%s", r->message);
		return;
	}
	ferry__action_commit(act(x));
	if (ferry__action_visible(act(x)))
		progress(c, 0);
}

static void meta_lstat_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	cx *c = x->c;
	c->pending--;
	if (r->error) {
		fail(x, r->error, 1, "%s", r->message);
		return;
	}
	if (!r->attrs || S_ISLNK(r->attrs->perm)) {
		fail(x, FERRY_EEXIST, 1,
		     "is a symlink on the remote: not followed");
		return;
	}
	ferry__action *a = act(x);
	ferry__sftp_attrs at;
	set_attrs_meta(c, &at, &a->entry, a->entry.type != FERRY__T_LINK);
	int rc = ferry__sftp_setstat(c->sf, x->rpath, &at, meta_cb, x);
	submitted(x, rc, "setstat");
}

static void submit_meta(cx *c, op *x)
{
	ferry__action *a = act(x);
	ferry__sftp_attrs at;
	int rc;
	if (!gate(x, R_META))
		return;
	set_attrs_meta(c, &at, &a->entry, a->entry.type != FERRY__T_LINK);
	if (c->use_lsetstat)
		rc = ferry__sftp_lsetstat(c->sf, x->rpath, &at, meta_cb, x);
	else
		rc = ferry__sftp_lstat(c->sf, x->rpath, meta_lstat_cb, x);
	submitted(x, rc, "setstat");
}

static void removal_cb(void *ctx, const ferry__sftp_reply *r)
{
	op *x = ctx;
	x->c->pending--;
	if (r->error && r->error != FERRY_ENOTFOUND) {
		fail(x, r->error, 1, "%s", r->message);
		return;
	}
	ferry__action_commit(act(x));
	progress(x->c, 0);
}

static void removal_now(cx *c, op *x)
{
	ferry__action *a = act(x);
	if (!gate(x, R_REMOVAL))
		return;
	int rc = a->kind == FERRY__ACT_RMDIR
	                 ? ferry__sftp_rmdir(c->sf, x->rpath, removal_cb, x)
	                 : ferry__sftp_remove(c->sf, x->rpath, removal_cb, x);
	submitted(x, rc, "remove");
}

static void submit_removal(cx *c, op *x)
{
	if (c->rm_parked) { /* behind one that waits */
		x->resume = R_REMOVAL;
		park(x);
		c->rm_parked++;
		return;
	}
	removal_now(c, x);
}

static void submit_symlink(cx *c, op *x)
{
	ferry__action *a = act(x);
	if (!ferry__sftp_symlink_order_known(c->sf) && c->probing) {
		park(x);
		return;
	}
	if (!ferry__sftp_symlink_order_known(c->sf)) {
		const char *why = ferry__sftp_symlink_failure(c->sf);
		fail(x, FERRY_EUNSUPPORTED, 1,
		     "the server creates no symlinks: %s",
		     why ? why : "its SYMLINK argument order is unknown");
		return;
	}
	x->tstate = T_MAYBE;
	int rc = ferry__sftp_symlink(c->sf, x->tpath, a->link, symlink_cb, x);
	if (rc) {
		x->tstate = T_DONE;
		fail_submit(x, rc, "symlink");
		return;
	}
	c->pending++;
}

/* A parked operation whose directory state changed. */
static void do_gated(op *x)
{
	switch (x->resume) {
	case R_MKDIR:
		submit_mkdir(x->c, x);
		break;
	case R_META:
		submit_meta(x->c, x);
		break;
	case R_UPLOAD:
		upload_gated(x->c, x);
		break;
	case R_REMOVAL:
		x->c->rm_parked--;
		if (x->c->rm_blocked) { /* one before it waits again */
			park(x);
			x->c->rm_parked++;
		} else {
			removal_now(x->c, x);
		}
		break;
	default:
		break;
	}
}

/* ---- running ---- */

static int all_done(void *ctx)
{
	cx *c = ctx;
	return c->pending == 0;
}

static int run(cx *c)
{
	int rc = ferry__sftp_run(c->sf, all_done, c, 0);
	if (rc == FERRY_EINTR || rc == FERRY_ETIMEOUT) {
		/* Stop chaining; let what is in flight finish briefly. */
		c->stopping = 1;
		int rc2 = ferry__sftp_run(c->sf, all_done, c,
		                          ferry__now_ms() + STOP_GRACE_MS);
		if (rc2)
			ferry__sftp_cancel_all(c->sf, rc);
	}
	if (c->pending && !ferry__sftp_dead(c->sf))
		ferry__sftp_cancel_all(c->sf, rc ? rc : FERRY_ERROR);
	/* Uploads spread over the streams: their callbacks point here. */
	for (unsigned i = 0; c->pending && i < c->nstreams; i++)
		if (!ferry__sftp_dead(c->streams[i]))
			ferry__sftp_cancel_all(c->streams[i],
			                       rc ? rc : FERRY_ERROR);
	if (rc && !c->res->fatal) {
		c->res->fatal = rc;
		const char *m = ferry__sftp_errmsg(c->sf);
		snprintf(c->res->fatal_msg, sizeof(c->res->fatal_msg), "%s",
		         rc == FERRY_EINTR ? "interrupted"
		         : m && *m         ? m
		                           : ferry_strerror(rc));
	}
	/* Anything still parked will not move any more (a failure may
	 * resume another: until none is left). */
	for (int again = 1; again;) {
		again = 0;
		for (size_t i = 0; i <= c->p->n; i++) {
			op *x = i < c->p->n ? &c->ops[i] : &c->marker;
			if (!x->parked)
				continue;
			x->parked = 0;
			fail(x, FERRY_ERROR, 0,
			     "not written: the push stopped");
			again = 1;
		}
	}
	ferry__free(c->parked);
	c->parked = NULL;
	c->nparked = c->capparked = 0;
	/* The queues are empty now: no stale link may lead into another. */
	for (size_t i = 0; i <= c->p->n; i++) {
		op *x = i < c->p->n ? &c->ops[i] : &c->marker;
		x->pnext = NULL;
		x->wq.head = x->wq.tail = NULL;
	}
	for (size_t i = 0; i < c->nchk; i++)
		c->chk[i].wq.head = c->chk[i].wq.tail = NULL;
	c->dest_chk.wq.head = c->dest_chk.wq.tail = NULL;
	c->root_wq.head = c->root_wq.tail = NULL;
	return rc;
}

static int needs_request(const ferry__action *a)
{
	return a->kind <= FERRY__ACT_RMDIR && !a->committed && !a->error;
}

/* Directory modes and times wait for the end: after every write into
 * the directory, and after the deletions (plan order: deepest first). */
static int late_meta(const ferry__action *a)
{
	return a->kind == FERRY__ACT_META && a->entry.type == FERRY__T_DIR;
}

static int prepare(cx *c)
{
	ferry__plan *p = c->p;
	const ferry__commit_opts *o = c->o;
	for (size_t i = 0; i < p->n; i++) {
		ferry__action *a = &p->a[i];
		op *x = &c->ops[i];
		x->c = c;
		x->ai = i;
		x->fd = -1;
		if (!needs_request(a))
			continue;
		x->rpath =
		        ferry__rpath(o->dest, a->entry.path, a->entry.path_len);
		if (!x->rpath)
			return FERRY_ENOMEM;
		if (a->kind == FERRY__ACT_MKDIR &&
		    ferry__pmap_put(&c->dirs, a->entry.path, a->entry.path_len,
		                    i))
			return FERRY_ENOMEM;
		if (a->kind == FERRY__ACT_UPLOAD ||
		    a->kind == FERRY__ACT_SYMLINK) {
			x->counted = 1;
			c->to_place++;
			/* At the top of the destination, which is
			 * trusted: nothing is written below a directory
			 * before it is known to be one (the rename waits). */
			size_t dl = ferry__path_dirlen(a->entry.path,
			                               a->entry.path_len);
			size_t skip = dl ? dl + 1 : 0;
			x->tpath = ferry__rtemp(o->dest, a->entry.path + skip,
			                        a->entry.path_len - skip);
			if (!x->tpath ||
			    (o->journal &&
			     ferry__journal_add(o->journal, x->tpath)))
				return FERRY_ENOMEM;
		}
	}
	if (plan_checks(c))
		return FERRY_ENOMEM;
	int links = 0;
	for (size_t i = 0; i < p->n; i++)
		links |= p->a[i].kind == FERRY__ACT_SYMLINK &&
		         needs_request(&p->a[i]);
	if (links && !ferry__sftp_symlinks_known(c->sf)) {
		static const char stem[] = ".ferry-probe";
		for (int i = 0; i < FERRY__PROBE_NAMES; i++) {
			c->probe[i] =
			        ferry__rtemp(o->dest, stem, sizeof(stem) - 1);
			if (!c->probe[i] ||
			    (o->journal &&
			     ferry__journal_add(o->journal, c->probe[i])))
				return FERRY_ENOMEM;
		}
	}
	if (o->marker) {
		op *x = &c->marker;
		x->c = c;
		x->ai = SIZE_MAX;
		x->fd = -1;
		ferry__marker_text(c->marker_text, o->marker);
		x->counted = 1;
		c->to_place++;
		const char *name = ferry__marker_name(o->o);
		x->rpath = ferry__rpath(o->dest, name, strlen(name));
		x->tpath = ferry__rtemp(o->dest, name, strlen(name));
		if (!x->rpath || !x->tpath ||
		    (o->journal && ferry__journal_add(o->journal, x->tpath)))
			return FERRY_ENOMEM;
	}
	return 0;
}

static void probe_done(void *ctx, int finished)
{
	cx *c = ctx;
	if (finished) {
		c->pending--;
		c->probing = 0;
	}
	if (c->nparked)
		unpark(c);
}

static void first_flight_requests(cx *c);

static void first_flight(cx *c)
{
	c->in_first = 1;
	first_flight_requests(c);
	c->in_first = 0;
	if (!c->to_place)
		submit_times(c);
}

static void first_flight_requests(cx *c)
{
	ferry__plan *p = c->p;
	const ferry__commit_opts *o = c->o;
	for (size_t i = 0; i < o->ncleanup; i++)
		if (!ferry__sftp_remove(c->sf, o->cleanup[i], cleanup_cb, c))
			c->pending++;
	if (o->dest_missing) {
		int rc = submit_dest_mkdir(c);
		if (rc) {
			c->res->fatal = rc;
			snprintf(c->res->fatal_msg, sizeof(c->res->fatal_msg),
			         "cannot create the destination directory: %s",
			         ferry_strerror(rc));
			return;
		}
	}
	if (c->dest_chk.status == ST_PENDING)
		submit_check(c, &c->dest_chk);
	for (size_t i = 0; i < c->nchk; i++)
		submit_check(c, &c->chk[i]);
	if (c->probe[0] &&
	    !ferry__sftp_probe_symlinks(c->sf, (const char *const *)c->probe,
	                                probe_done, c)) {
		c->probing = 1;
		c->pending++;
	}
	for (size_t i = 0; i < p->n; i++) {
		ferry__action *a = &p->a[i];
		op *x = &c->ops[i];
		if (!needs_request(a))
			continue;
		switch (a->kind) {
		case FERRY__ACT_DELETE:
		case FERRY__ACT_RMDIR:
			if (a->phase == 0)
				submit_removal(c, x);
			break;
		case FERRY__ACT_MKDIR:
			submit_mkdir(c, x);
			break;
		case FERRY__ACT_UPLOAD:
			start_upload(c, x);
			break;
		case FERRY__ACT_META:
			if (!late_meta(a))
				submit_meta(c, x);
			break;
		case FERRY__ACT_SYMLINK:
			submit_symlink(c, x);
			break;
		default:
			break;
		}
	}
	if (o->marker)
		submit_upload(c, &c->marker, c->marker_text, MARKER_MODE,
		              o->fsync_all, NULL);
}

/* Whether the push wrote into the destination directory itself. */
static int dest_touched(const cx *c)
{
	const ferry__commit_opts *o = c->o;
	if (o->dest_missing || o->marker || o->ncleanup || c->probe[0])
		return 1;
	for (size_t i = 0; i < c->p->n; i++) {
		const ferry__action *a = &c->p->a[i];
		if (a->kind == FERRY__ACT_UPLOAD ||
		    a->kind == FERRY__ACT_SYMLINK) /* temporaries */
			return 1;
		if (a->kind != FERRY__ACT_META &&
		    a->kind != FERRY__ACT_RECORD &&
		    a->kind != FERRY__ACT_NONE &&
		    ferry__path_dirlen(a->entry.path, a->entry.path_len) == 0)
			return 1;
	}
	return 0;
}

static void dest_times_cb(void *ctx, const ferry__sftp_reply *r)
{
	cx *c = ctx;
	c->pending--;
	(void)r; /* its mtime only: a failure is no file's failure */
}

static void submit_dest_times(cx *c)
{
	if (!c->o->dest_times || c->stopping || c->res->fatal ||
	    c->root != ST_OK || !dest_touched(c))
		return;
	ferry__mentry e;
	memset(&e, 0, sizeof(e));
	e.mtime_ns = c->o->dest_mtime_ns;
	ferry__sftp_attrs at;
	set_attrs_meta(c, &at, &e, 1);
	at.flags &= ~(uint32_t)FERRY__ATTR_PERMISSIONS;
	if (!ferry__sftp_setstat(c->sf, c->o->dest, &at, dest_times_cb, c))
		c->pending++;
}

/* The directories' modes and times (deepest first), then the
 * destination's: once, after every write into them. */
static void times_now(cx *c)
{
	if (c->times_sent || c->stopping || c->res->fatal)
		return;
	c->times_sent = 1;
	for (size_t i = 0; i < c->p->n; i++)
		if (needs_request(&c->p->a[i]) && late_meta(&c->p->a[i]))
			submit_meta(c, &c->ops[i]);
	submit_dest_times(c);
}

/* Early, behind the last rename, unless deletions must come first. */
static void submit_times(cx *c)
{
	for (size_t i = 0; i < c->p->n; i++) {
		const ferry__action *a = &c->p->a[i];
		if (needs_request(a) && ferry__action_is_removal(a) &&
		    a->phase != 0)
			return;
	}
	times_now(c);
}

static void last_flight(cx *c)
{
	ferry__plan *p = c->p;
	uint64_t skipped = 0;
	int deletions_ok = !c->res->failed && !c->res->fatal && !c->stopping;
	for (size_t i = 0; i < p->n; i++) {
		ferry__action *a = &p->a[i];
		if (!needs_request(a))
			continue;
		int del = (a->kind == FERRY__ACT_DELETE ||
		           a->kind == FERRY__ACT_RMDIR) &&
		          a->phase != 0;
		if (del && !deletions_ok) {
			skipped++;
			continue;
		}
		if (del)
			submit_removal(c, &c->ops[i]);
	}
	times_now(c);
	if (skipped) {
		c->res->not_done += skipped;
		const ferry_sync_opts *o = c->o->o;
		if (o && o->log) {
			char msg[FERRY_ERRMSG_SIZE];
			snprintf(msg, sizeof(msg),
			         "some changes failed: skipping %llu "
			         "deletion%s",
			         (unsigned long long)skipped,
			         skipped == 1 ? "" : "s");
			o->log(o->ctx, FERRY_LOG_WARN, msg);
		}
	}
}

static void report_changes(cx *c)
{
	ferry__plan *p = c->p;
	ferry_sync_report *r = c->o->report;
	const ferry_sync_opts *o = c->o->o;
	for (size_t i = 0; i < p->n; i++) {
		const ferry__action *a = &p->a[i];
		op *x = &c->ops[i];
		if (!ferry__action_visible(a) || (!a->committed && !a->error))
			continue;
		if (r && a->committed && !a->error)
			ferry__action_count(a, r);
		if (o && o->on_change) {
			ferry_change ch;
			ferry__action_change(a, &ch);
			ch.errmsg = x->err;
			o->on_change(o->ctx, &ch);
		}
	}
}

static int add_unresolved(ferry__commit_result *res, const char *name)
{
	char **v = ferry__reallocarray(res->unresolved, res->nunresolved + 1,
	                               sizeof(*v));
	if (!v)
		return FERRY_ENOMEM;
	res->unresolved = v;
	v[res->nunresolved] = ferry__strdup(name);
	if (!v[res->nunresolved])
		return FERRY_ENOMEM;
	res->nunresolved++;
	return 0;
}

static void op_free(op *x)
{
	close_local(x);
	big_free(x);
	ferry__free(x->mk_chk);
	ferry__free(x->rpath);
	ferry__free(x->tpath);
	ferry__free(x->err);
}

/* Extra channels, when the round trip is long enough for one channel's
 * window to be the limit (ferry_sync_opts.streams): for striping when an
 * upload is large enough, and to spread small uploads over when there are
 * FERRY__SPREAD_MIN_BYTES of them or more.  Opened before the first
 * flight (their round trips overlap nothing else; n + 2 with libssh2),
 * kept with the session. */
static void open_streams(cx *c)
{
	const ferry_sync_opts *so = c->o->o;
	unsigned want = so ? so->streams : 0;
	int large = 0;
	uint64_t small = 0;
	for (size_t i = 0; i < c->p->n; i++) {
		const ferry__action *a = &c->p->a[i];
		if (a->kind != FERRY__ACT_UPLOAD)
			continue;
		if (a->entry.size >= FERRY__STRIPE_MIN)
			large = 1;
		else
			small += a->entry.size;
	}
	int many = small >= FERRY__SPREAD_MIN_BYTES;
	if ((!large && !many) || !c->o->s || want == 1 || (so && so->dry_run))
		return;
	if (want == 0) {
		ferry_session_info info;
		if (ferry_session_info_get(&info, c->o->s) ||
		    info.ms_resolve_connect < FERRY__STRIPE_RTT_MS)
			return;
		want = FERRY__STREAMS_AUTO;
	}
	if (want > FERRY__SFTP_STREAMS_MAX)
		want = FERRY__SFTP_STREAMS_MAX;
	if (ferry__session_sftp_streams(c->o->s, want - 1, c->streams)) {
		if (so && so->log) {
			char msg[FERRY_ERRMSG_SIZE];
			snprintf(msg, sizeof(msg),
			         "no more SFTP channels (%s): one channel",
			         ferry_session_errmsg(c->o->s));
			so->log(so->ctx, FERRY_LOG_INFO, msg);
		}
		return;
	}
	c->nstreams = want - 1;
	c->spread = many;
}

int ferry__commit_run(const ferry__commit_opts *o, ferry__commit_result *res)
{
	int error = 0;
	char err[FERRY_ERRMSG_SIZE] = "";
	cx c;
	memset(&c, 0, sizeof(c));
	memset(res, 0, sizeof(*res));
	c.o = o;
	c.res = res;
	c.sf = o->sf;
	c.p = o->p;
	c.root = ST_OK;
	c.use_lsetstat = ferry__sftp_has(o->sf, FERRY__EXT_LSETSTAT);
	c.now_s = (uint32_t)time(NULL);
	c.marker.fd = -1;
	for (size_t i = 0; i < o->p->n; i++) {
		const ferry__action *a = &o->p->a[i];
		if (!ferry__action_visible(a) || !needs_request(a))
			continue;
		c.prog.files_total++;
		if (a->kind == FERRY__ACT_UPLOAD)
			c.prog.bytes_total += a->entry.size;
	}
	if (o->p->n) {
		c.ops = ferry__calloc(o->p->n, sizeof(*c.ops));
		if (!c.ops) {
			error = FERRY_ENOMEM;
			goto fatal;
		}
	}
	if ((error = prepare(&c)))
		goto fatal;
	open_streams(&c);
	/* The names go to disk before any of them can exist remotely. */
	if (o->journal && o->journal->n &&
	    (error = ferry__journal_save(o->journal, err, sizeof(err)))) {
		snprintf(res->fatal_msg, sizeof(res->fatal_msg),
		         "cannot write the journal of temporary names: %s",
		         err);
		res->fatal = error;
		goto out;
	}
	first_flight(&c);
	run(&c);
	if (!res->fatal || res->fatal == FERRY_EINTR) {
		last_flight(&c);
		if (c.pending)
			run(&c);
	}
	report_changes(&c);
	for (size_t i = 0; i < o->p->n; i++)
		if (c.ops[i].tstate == T_MAYBE &&
		    add_unresolved(res, c.ops[i].tpath))
			error = FERRY_ENOMEM;
	if (c.marker.tstate == T_MAYBE && add_unresolved(res, c.marker.tpath))
		error = FERRY_ENOMEM;
	if (error)
		goto fatal;
	goto out;
fatal:
	if (!res->fatal) {
		res->fatal = error;
		snprintf(res->fatal_msg, sizeof(res->fatal_msg), "%s",
		         ferry_strerror(error));
	}
out:
	for (unsigned i = 0; i < c.nstreams; i++)
		ferry__sftp_trim(c.streams[i]);
	for (size_t i = 0; c.ops && i < o->p->n; i++)
		op_free(&c.ops[i]);
	op_free(&c.marker);
	for (int i = 0; i < FERRY__PROBE_NAMES; i++)
		ferry__free(c.probe[i]);
	ferry__free(c.ops);
	ferry__free(c.parked);
	ferry__pmap_free(&c.dirs);
	for (size_t i = 0; i < c.nchk; i++)
		ferry__free(c.chk[i].rpath);
	ferry__free(c.chk);
	ferry__pmap_free(&c.checked);
	return res->fatal;
}

void ferry__commit_result_free(ferry__commit_result *res)
{
	for (size_t i = 0; i < res->nunresolved; i++)
		ferry__free(res->unresolved[i]);
	ferry__free(res->unresolved);
	memset(res, 0, sizeof(*res));
}
