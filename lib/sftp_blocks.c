/* sftp_blocks.c - building blocks on the asynchronous client: the upload
 * of one file (what the push executor runs for every file), the read of a
 * small file, and the listing of one directory. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "os.h"
#include "sftp.h"
#include "sftp_int.h"

/* ---- upload ----------------------------------------------------------------
 */

enum { DELTA_UNDECIDED = 0, DELTA_ON, DELTA_OFF };

/* A delta upload's state, allocated only for one (upload_job.d). */
typedef struct upload_delta {
	char *base;
	ferry__sftp_piece *pieces; /* the caller's, adjacent ones merged */
	size_t npieces;
	size_t wi;           /* the write piece the generator is in */
	uint64_t copy_total; /* bytes of the copy pieces */
	ferry__sftp_handle bh;
	int mode;                /* DELTA_* */
	int waiting;             /* counted in sf->delta_waiting */
	int blstat_pending;      /* the LSTAT of base is unanswered */
	int base_ok;             /* that LSTAT saw what the caller expects */
	int fstats_ok;           /* FSTATs of the base handle that matched */
	int untrusted;           /* the copies cannot be trusted: start again */
	int remove_pending;      /* the REMOVE of the first temp (fallback) */
	int stale;               /* the first temp may still exist */
	const char *why;         /* why the base is not used */
	struct upload_job *next; /* in sf's list of deltas not started */
} upload_delta;

/* Kept small: the push executor may have thousands of these at once. */
typedef struct upload_job {
	ferry__sftp *sf;
	ferry__sftp_upload_opts o;
	char *path, *rename_to;
	ferry__sftp_handle h;
	int opened, open_pending;
	uint64_t next_off, acked;
	unsigned outstanding;
	int gen_active, closed, post_close;
	int error;
	const char *step;
	uint32_t err_status;
	char *msg; /* on error only */
	int fill_failed;
	int confirm_tries; /* FSTATs sent to confirm the mode */
	int lstat_pending; /* the LSTAT behind the OPEN is unanswered */
	int lstat_mode;    /* the mode it saw, -1: none */
	uint64_t gen;
	upload_delta *d;          /* NULL: a plain upload */
	struct upload_stripe *st; /* NULL: not striped */
	ferry__sftp_upload_result res;
} upload_job;

/* A striped upload's state: this job writes [0, main_end), the streams
 * the rest; pending: their ranges not yet done. */
typedef struct upload_stripe {
	uint64_t main_end;
	unsigned pending;
} upload_stripe;

static const char no_text[] = "out of memory (writing the error text)";

static void job_record(upload_job *j, const char *step, int error,
                       uint32_t status, const char *msg)
{
	if (j->error)
		return;
	j->error = error;
	j->step = step;
	j->err_status = status;
	j->msg = ferry__asprintf("%s %s: %s", step, j->path, msg);
}

static void job_seen(upload_job *j, const ferry__sftp_reply *r)
{
	if (r->gen > j->gen)
		j->gen = r->gen;
}

static int job_start(upload_job *j);
static void job_finish(upload_job *j);

/* Room for one more delta that may hold its temp's handle while it waits
 * for its base's: at least one slot is then held by someone who gives it
 * back without needing another. */
static int delta_room(const ferry__sftp *sf)
{
	return sf->delta_waiting + 1 < sf->slots_max;
}

/* The job no longer waits for its base's handle: the deltas held back
 * start while there is room (a start that fails ends its job). */
static void delta_unwait(upload_job *j)
{
	ferry__sftp *sf = j->sf;
	if (!j->d || !j->d->waiting)
		return;
	j->d->waiting = 0;
	sf->delta_waiting--;
	while (sf->delta_first && delta_room(sf)) {
		upload_job *n = sf->delta_first;
		sf->delta_first = n->d->next;
		if (!sf->delta_first)
			sf->delta_last = NULL;
		n->d->next = NULL;
		n->d->waiting = 1;
		sf->delta_waiting++;
		int err = job_start(n);
		if (err) {
			/* Ended here, not by recursion through its finish. */
			n->d->waiting = 0;
			sf->delta_waiting--;
			job_record(n, "open", err, FERRY__FX_LOCAL,
			           ferry__sftp_errmsg(sf)[0]
			                   ? ferry__sftp_errmsg(sf)
			                   : ferry_strerror(err));
			job_finish(n);
		}
	}
}

static void delta_free(upload_job *j)
{
	if (!j->d)
		return;
	delta_unwait(j);
	ferry__free(j->d->base);
	ferry__free(j->d->pieces);
	ferry__free(j->d);
	j->d = NULL;
}

static void job_finish(upload_job *j)
{
	ferry__sftp_upload_result *r = &j->res;
	ferry__sftp *sf = j->sf;
	r->error = j->error;
	r->step = j->error ? j->step : NULL;
	r->message = !j->error ? "ok" : j->msg ? j->msg : no_text;
	r->bytes = j->acked;
	r->gen = j->gen;
	delta_free(j);
	ferry__free(j->st);
	j->st = NULL;
	if (j->o.done)
		j->o.done(j->o.ctx, r);
	ferry__free(j->msg);
	ferry__free(j->path);
	ferry__free(j->rename_to);
	ferry__free(j);
	sf->jobs--;
}

static void job_after_error(upload_job *j);
static void job_maybe_post_close(upload_job *j);
static void delta_retry(upload_job *j);

static void job_remove_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	j->res.removed = !r->error;
	job_finish(j);
}

static void job_after_error(upload_job *j)
{
	int exists = j->opened || (j->d && j->d->stale);
	if (j->o.remove_on_error && exists &&
	    !ferry__sftp_remove(j->sf, j->path, job_remove_cb, j)) {
		j->outstanding++;
		return;
	}
	job_finish(j);
}

static void job_nospace_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	if (!r->error && r->vfs) {
		uint64_t frsize = r->vfs->frsize ? r->vfs->frsize : 512;
		uint64_t avail = r->vfs->bavail * frsize;
		ferry__sftp_limits_info l;
		ferry__sftp_limits_get(j->sf, &l);
		if (avail < l.max_write + 65536 ||
		    (r->vfs->files && !r->vfs->favail)) {
			j->error = FERRY_ENOSPACE;
			char *m = ferry__asprintf(
			        "%s (no space left on the remote filesystem: "
			        "%llu bytes available)",
			        j->msg ? j->msg : no_text,
			        (unsigned long long)avail);
			if (m) {
				ferry__free(j->msg);
				j->msg = m;
			}
		}
	}
	job_after_error(j);
}

static void job_rename_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	if (r->error) {
		job_record(j, "rename", r->error, r->status, r->message);
		job_after_error(j);
		return;
	}
	j->res.renamed = 1;
	job_finish(j);
}

static void job_maybe_post_close(upload_job *j)
{
	if (!j->closed || j->outstanding || j->gen_active || j->post_close)
		return;
	upload_delta *d = j->d;
	if (d && d->mode == DELTA_ON && !j->error) {
		/* The copies are trusted only when both FSTATs of the base
		 * saw what the caller expects and every copy succeeded;
		 * else the temp's content may be wrong: start again. */
		if (d->untrusted || d->fstats_ok < 2) {
			delta_retry(j);
			return;
		}
		j->res.copied = d->copy_total;
	}
	j->post_close = 1;
	if (j->error) {
		/* OpenSSH says FAILURE for ENOSPC: ask statvfs. */
		char *dir = NULL;
		if (j->err_status == FERRY__FX_FAILURE &&
		    ferry__sftp_has(j->sf, FERRY__EXT_STATVFS) &&
		    (dir = ferry__dirname(j->path)) &&
		    !ferry__sftp_statvfs(j->sf, dir, job_nospace_cb, j)) {
			j->outstanding++;
			ferry__free(dir);
			return;
		}
		ferry__free(dir);
		job_after_error(j);
		return;
	}
	if (j->rename_to) {
		int err = ferry__sftp_rename_replace(
		        j->sf, j->path, j->rename_to, &j->res.rename_fallback,
		        job_rename_cb, j);
		if (!err) {
			j->outstanding++;
			return;
		}
		job_record(j, "rename", err, FERRY__FX_LOCAL,
		           ferry__sftp_errmsg(j->sf)[0]
		                   ? ferry__sftp_errmsg(j->sf)
		                   : ferry_strerror(err));
		job_after_error(j);
		return;
	}
	job_finish(j);
}

static void job_write_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	if (r->error) {
		job_record(j, "write", r->error, r->status, r->message);
	} else {
		j->acked += r->len;
		if (j->o.progress)
			j->o.progress(j->o.ctx, j->acked);
	}
	job_maybe_post_close(j);
}

static void job_fsetstat_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	if (r->error)
		job_record(j, "fsetstat", r->error, r->status, r->message);
	job_maybe_post_close(j);
}

static void job_fsync_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	if (r->error)
		job_record(j, "fsync", r->error, r->status, r->message);
	else
		j->res.fsynced = 1;
	job_maybe_post_close(j);
}

static void job_close_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	j->closed = 1;
	if (r->error)
		job_record(j, "close", r->error, r->status, r->message);
	job_maybe_post_close(j);
}

static int job_fill(void *fctx, uint8_t *dst, size_t n, uint64_t off)
{
	upload_job *j = fctx;
	if (j->o.data) {
		memcpy(dst, (const uint8_t *)j->o.data + off, n);
		return 0;
	}
	if (j->o.use_fd) {
		size_t done = 0;
		while (done < n) {
			ssize_t r = pread(j->o.fd, dst + done, n - done,
			                  (off_t)(off + done));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				j->fill_failed = 1;
				job_record(j, "read", FERRY_EIO,
				           FERRY__FX_LOCAL,
				           r < 0 ? strerror(errno)
				                 : "the local file shrank "
				                   "while it was uploaded");
				return FERRY_EIO;
			}
			done += (size_t)r;
		}
		return 0;
	}
	int err = j->o.read(j->o.rctx, dst, n, off);
	if (err) {
		j->fill_failed = 1;
		job_record(j, "read", err, FERRY__FX_LOCAL,
		           "reading the local content failed");
	}
	return err;
}

/* The generator is finished.  Normally the CLOSE queued behind it moves
 * things on; when that CLOSE could not even be queued, this does. */
static void gen_done(upload_job *j)
{
	j->gen_active = 0;
	if (j->closed)
		job_maybe_post_close(j);
}

/* The generator of a delta moves to the first write piece at or after
 * index i (d->wi == npieces: none left). */
static void delta_seek(upload_job *j, size_t i)
{
	upload_delta *d = j->d;
	while (i < d->npieces && d->pieces[i].copy)
		i++;
	d->wi = i;
	if (i < d->npieces)
		j->next_off = d->pieces[i].off;
}

static int job_emit(ferry__sftp *sf, void *ctx, uint64_t gen)
{
	upload_job *j = ctx;
	upload_delta *d = j->d && j->d->mode == DELTA_ON ? j->d : NULL;
	uint64_t end = j->st ? j->st->main_end : j->o.size;
	if (d)
		end = d->wi < d->npieces
		              ? d->pieces[d->wi].off + d->pieces[d->wi].len
		              : 0;
	if (j->error || j->next_off >= end) {
		gen_done(j);
		return 2;
	}
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	uint64_t left = end - j->next_off;
	size_t len = left < l.max_write ? (size_t)left : (size_t)l.max_write;
	int rc = ferry__sftp__send_write(sf, gen, &j->h, j->next_off, len,
	                                 job_fill, j, job_write_cb, j);
	if (rc == 1) {
		j->next_off += len;
		j->outstanding++;
		if (d && j->next_off >= end)
			delta_seek(j, d->wi + 1);
		return 1;
	}
	if (rc == 0)
		return 0;
	if (!j->fill_failed)
		job_record(j, "write", rc, FERRY__FX_LOCAL, ferry_strerror(rc));
	gen_done(j);
	return 2;
}

static void job_gen_fail(void *ctx, int code, const char *msg)
{
	upload_job *j = ctx;
	j->gen_active = 0;
	job_record(j, "write", code, FERRY__FX_LOCAL, msg);
	job_maybe_post_close(j);
}

static void job_body(upload_job *j);
static void job_confirm_cb(void *ctx, const ferry__sftp_reply *r);

/* FSTAT of the new handle (behind a FSETSTAT of the mode asked for, the
 * second time): a server that ignores OPEN's permissions must not get a
 * byte of a file meant to be unreadable by others. */
static void job_confirm(upload_job *j)
{
	ferry__sftp *sf = j->sf;
	int err = 0;
	if (j->confirm_tries++) {
		ferry__sftp_attrs a;
		memset(&a, 0, sizeof(a));
		a.flags = FERRY__ATTR_PERMISSIONS;
		a.perm = j->o.perm;
		if (!(err = ferry__sftp_fsetstat(sf, &j->h, &a, job_fsetstat_cb,
		                                 j)))
			j->outstanding++;
	}
	if (!err && !(err = ferry__sftp_fstat(sf, &j->h, job_confirm_cb, j))) {
		j->outstanding++;
		return;
	}
	job_record(j, "fstat", err, FERRY__FX_LOCAL, ferry_strerror(err));
	job_body(j);
}

static void job_confirm_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	if (r->error) {
		job_record(j, "fstat", r->error, r->status, r->message);
	} else if (!r->attrs || !(r->attrs->flags & FERRY__ATTR_PERMISSIONS)) {
		job_record(j, "fstat", FERRY_EPROTO, FERRY__FX_LOCAL,
		           "the server did not say the new file's mode");
	} else if (r->attrs->perm & 0777 & ~j->o.perm) {
		if (j->confirm_tries < 2) {
			job_confirm(j);
			return;
		}
		char why[160];
		snprintf(why, sizeof(why),
		         "the server made it mode %04o, not %04o, and would "
		         "not change it: nothing was written",
		         (unsigned)(r->attrs->perm & 07777),
		         (unsigned)(j->o.perm & 07777));
		job_record(j, "open", FERRY_EPERM, FERRY__FX_LOCAL, why);
	}
	job_body(j);
}

/* OPEN answered and, when the mode is to be confirmed, the LSTAT sent
 * behind it: the mode seen there lets the writes go at once; a mode
 * with bits too many (or none seen) is confirmed on the handle. */
static void job_after_open(upload_job *j)
{
	if (!j->o.confirm_perm || !j->o.has_perm) {
		job_body(j);
		return;
	}
	if (j->lstat_mode >= 0 && !(j->lstat_mode & 0777 & ~j->o.perm)) {
		job_body(j);
		return;
	}
	/* Seen wrong: set it again at once; not seen: look on the handle. */
	j->confirm_tries = j->lstat_mode >= 0;
	job_confirm(j);
}

/* One reply of the OPEN's flight (OPEN, its LSTAT; with a delta the LSTAT
 * of base, or the REMOVE of the first temp) is in: when the last one is,
 * go on (any server order). */
static void job_open_step(upload_job *j)
{
	upload_delta *d = j->d;
	if (j->open_pending || j->lstat_pending ||
	    (d && (d->blstat_pending || d->remove_pending)))
		return;
	if (j->opened)
		job_after_open(j);
	else
		job_after_error(j); /* the OPEN failed */
}

static void job_open_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	j->open_pending = 0;
	if (r->error) {
		job_record(j, "open", r->error, r->status, r->message);
	} else {
		j->h = *r->handle;
		j->opened = 1;
	}
	job_open_step(j);
}

static void job_lstat_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--;
	j->lstat_pending = 0;
	if (!r->error && r->attrs &&
	    (r->attrs->flags & FERRY__ATTR_PERMISSIONS))
		j->lstat_mode = (int)(r->attrs->perm & 07777);
	job_open_step(j);
}

/* Submit the temp's OPEN and (confirm_perm) its LSTAT in one flight. */
static int job_open_temp(upload_job *j)
{
	ferry__sftp *sf = j->sf;
	ferry__sftp_attrs a;
	memset(&a, 0, sizeof(a));
	if (j->o.has_perm) {
		a.flags = FERRY__ATTR_PERMISSIONS;
		a.perm = j->o.perm;
	}
	uint32_t pflags = j->o.pflags ? j->o.pflags
	                              : FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                        FERRY__FXF_EXCL;
	int error = ferry__sftp_open(sf, j->path, pflags, &a, job_open_cb, j);
	if (error)
		return error;
	j->outstanding++;
	j->open_pending = 1;
	j->lstat_mode = -1;
	/* In the same flight: the mode the OPEN gave, seen by the time its
	 * reply is, so a confirmed mode costs no round trip. */
	if (j->o.confirm_perm && j->o.has_perm &&
	    !ferry__sftp_lstat(sf, j->path, job_lstat_cb, j)) {
		j->outstanding++;
		j->lstat_pending = 1;
	}
	return 0;
}

/* ---- delta: the old file copied on the server ---- */

static int attrs_match(const upload_job *j, const ferry__sftp_attrs *a)
{
	unsigned want = FERRY__ATTR_SIZE | FERRY__ATTR_ACMODTIME;
	return a && (a->flags & want) == want && a->size == j->o.base_size &&
	       a->mtime == j->o.base_mtime;
}

static void job_base_lstat_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	upload_delta *d = j->d;
	const ferry__sftp_attrs *a = r->error ? NULL : r->attrs;
	job_seen(j, r);
	j->outstanding--;
	d->blstat_pending = 0;
	if (r->error == FERRY_ENOTFOUND)
		d->why = "the old file is gone from the remote";
	else if (!a)
		d->why = "the old file could not be looked at on the remote";
	else if (!(a->flags & FERRY__ATTR_PERMISSIONS) ||
	         (a->perm & 0170000) != 0100000)
		d->why = "the old file is not a regular file on the remote";
	else if (!attrs_match(j, a))
		d->why = "the old file changed on the remote (size or mtime "
		         "differs)";
	else
		d->base_ok = 1;
	job_open_step(j);
}

/* Every byte is written, why (NULL: not a fallback) says why. */
static void delta_off(upload_job *j, const char *why)
{
	j->d->mode = DELTA_OFF;
	delta_unwait(j);
	if (why) {
		j->res.delta_fallback = 1;
		j->res.delta_why = why;
	}
}

static void job_tail(upload_job *j);

static void job_base_fstat_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	upload_delta *d = j->d;
	job_seen(j, r);
	j->outstanding--;
	if (!r->error && attrs_match(j, r->attrs)) {
		d->fstats_ok++;
	} else if (!d->untrusted) {
		d->untrusted = 1;
		d->why = "the old file changed on the remote while it was "
		         "copied (size or mtime differs)";
	}
	job_maybe_post_close(j);
}

static void job_copy_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	upload_delta *d = j->d;
	job_seen(j, r);
	j->outstanding--;
	if (r->error && !d->untrusted) {
		d->untrusted = 1;
		d->why = "a copy-data from the old file failed on the remote";
	}
	job_maybe_post_close(j);
}

static void job_base_close_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	job_seen(j, r);
	j->outstanding--; /* a failing close of a file read changes nothing */
	job_maybe_post_close(j);
}

/* The base is open: FSTAT, the COPY-DATAs, FSTAT again and its CLOSE (with
 * an error recorded only the CLOSE).  They are handle requests, queued
 * behind the generator: the server sees them after the writes. */
static void delta_copies(upload_job *j)
{
	ferry__sftp *sf = j->sf;
	upload_delta *d = j->d;
	int err = 0;
	if (!j->error) {
		if (!(err = ferry__sftp_fstat(sf, &d->bh, job_base_fstat_cb,
		                              j)))
			j->outstanding++;
		for (size_t i = 0; !err && i < d->npieces; i++) {
			const ferry__sftp_piece *p = &d->pieces[i];
			if (!p->copy)
				continue;
			if (!(err = ferry__sftp_copy_data(
			              sf, &d->bh, p->base_off, p->len, &j->h,
			              p->off, job_copy_cb, j)))
				j->outstanding++;
		}
		if (!err && !(err = ferry__sftp_fstat(sf, &d->bh,
		                                      job_base_fstat_cb, j)))
			j->outstanding++;
		if (err)
			job_record(j, "copy", err, FERRY__FX_LOCAL,
			           ferry_strerror(err));
	}
	/* Always: the handle must go back (when even this cannot be
	 * queued, the client is dying and the handle with it). */
	if (!ferry__sftp_close(sf, &d->bh, job_base_close_cb, j))
		j->outstanding++;
}

static void job_base_open_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	upload_delta *d = j->d;
	job_seen(j, r);
	j->outstanding--;
	delta_unwait(j);
	if (r->error) {
		d->untrusted = 1;
		d->why = "the old file could not be opened on the remote";
	} else {
		d->bh = *r->handle;
		delta_copies(j);
	}
	job_tail(j);
}

/* The temp's OPEN flight is in: copy from the base when the LSTAT saw
 * it as expected (OPEN base, READ only: never a fifo), else write every
 * byte. */
static void delta_decide(upload_job *j)
{
	ferry__sftp *sf = j->sf;
	upload_delta *d = j->d;
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	if (j->error) {
		delta_off(j, NULL);
	} else if (!ferry__sftp_has(sf, FERRY__EXT_COPY_DATA)) {
		delta_off(j, "the server has no copy-data");
	} else if (l.max_handles < 2) {
		delta_off(j, "the server allows fewer than 2 open handles");
	} else if (sf->delta_waiting > sf->slots_max - 1) {
		/* Let in before the server's limits were known. */
		delta_off(j, "too many delta uploads at once for the "
		             "server's handle limit");
	} else if (!d->base_ok) {
		delta_off(j, d->why ? d->why
		                    : "the old file could not be looked at "
		                      "on the remote");
	} else if (ferry__sftp_open(sf, d->base, FERRY__FXF_READ, NULL,
	                            job_base_open_cb, j)) {
		delta_off(j, "the old file could not be opened on the remote");
	} else {
		j->outstanding++;
		d->mode = DELTA_ON;
	}
}

static void delta_retry_remove_cb(void *ctx, const ferry__sftp_reply *r)
{
	upload_job *j = ctx;
	upload_delta *d = j->d;
	job_seen(j, r);
	j->outstanding--;
	d->remove_pending = 0;
	if (!r->error || r->error == FERRY_ENOTFOUND)
		d->stale = 0;
	else
		job_record(j, "remove", r->error, r->status, r->message);
	job_open_step(j);
}

/* What was copied cannot be trusted (everything is answered, the temp
 * closed): REMOVE the temp and OPEN it again in one flight, then write
 * every byte as a plain upload does. */
static void delta_retry(upload_job *j)
{
	upload_delta *d = j->d;
	int err;
	d->mode = DELTA_OFF;
	d->untrusted = 0; /* the new temp owes nothing to the base */
	d->stale = 1;
	j->res.delta_fallback = 1;
	j->res.delta_why = d->why ? d->why
	                          : "the old file could not be used on the "
	                            "remote";
	j->acked = j->next_off = 0;
	j->opened = j->closed = 0;
	j->confirm_tries = 0;
	memset(&j->h, 0, sizeof(j->h));
	if ((err = ferry__sftp_remove(j->sf, j->path, delta_retry_remove_cb,
	                              j))) {
		job_record(j, "remove", err, FERRY__FX_LOCAL,
		           ferry_strerror(err));
		job_after_error(j);
		return;
	}
	j->outstanding++;
	d->remove_pending = 1;
	if ((err = job_open_temp(j)))
		job_record(j, "open", err, FERRY__FX_LOCAL,
		           ferry_strerror(err));
	/* the REMOVE's reply moves on (job_open_step) */
}

/* FSETSTAT, fsync and CLOSE of the temp (with an error recorded only the
 * CLOSE); handle requests, so behind every WRITE the generator makes. */
static void job_tail(upload_job *j)
{
	ferry__sftp *sf = j->sf;
	int err;
	/* Copies that cannot be trusted: the temp is made again anyway. */
	int skip = j->error || (j->d && j->d->untrusted);
	if (j->o.has_attrs && !skip) {
		if ((err = ferry__sftp_fsetstat(sf, &j->h, &j->o.attrs,
		                                job_fsetstat_cb, j)))
			job_record(j, "fsetstat", err, FERRY__FX_LOCAL,
			           ferry_strerror(err));
		else
			j->outstanding++;
	}
	if (j->o.fsync && !skip && !j->error) {
		if (!ferry__sftp_has(sf, FERRY__EXT_FSYNC))
			j->res.fsync_skipped = 1;
		else if ((err = ferry__sftp_fsync(sf, &j->h, job_fsync_cb, j)))
			job_record(j, "fsync", err, FERRY__FX_LOCAL,
			           ferry_strerror(err));
		else
			j->outstanding++;
	}
	/* Always: the handle must go back. */
	if ((err = ferry__sftp_close(sf, &j->h, job_close_cb, j))) {
		job_record(j, "close", err, FERRY__FX_LOCAL,
		           ferry_strerror(err));
		j->closed = 1;
		job_maybe_post_close(j);
		return;
	}
	j->outstanding++;
}

static void stripe_cb(void *ctx, int err, const char *msg, uint64_t bytes)
{
	upload_job *j = ctx;
	j->outstanding--;
	j->acked += bytes;
	if (err && !j->error) {
		j->error = err;
		j->step = "write";
		j->err_status = FERRY__FX_FAILURE;
		j->msg = ferry__strdup(msg);
	}
	if (!err && j->o.progress)
		j->o.progress(j->o.ctx, j->acked);
	if (--j->st->pending == 0)
		job_tail(j);
}

/* Give the ranges after the first to the streams (see the opts); 1 when
 * the upload is striped (its tail then waits for them). */
static int stripe_start(upload_job *j)
{
	const ferry__sftp_upload_opts *o = &j->o;
	if (!o->nstreams || !o->read || j->error ||
	    o->size < 2 * FERRY__STRIPE_RANGE)
		return 0;
	uint64_t s = o->size / FERRY__STRIPE_RANGE;
	if (s > (uint64_t)o->nstreams + 1)
		s = (uint64_t)o->nstreams + 1;
	for (unsigned i = 0; i + 1 < s; i++)
		if (!o->streams[i] || ferry__sftp_dead(o->streams[i]))
			return 0;
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(j->sf, &l);
	uint64_t w = l.max_write ? l.max_write : 32768;
	uint64_t range = (o->size + s - 1) / s;
	range = (range + w - 1) / w * w;
	if (!j->st && !(j->st = ferry__calloc(1, sizeof(*j->st))))
		return 0;
	j->st->main_end = range;
	for (uint64_t i = 1; i < s && range * i < o->size; i++) {
		uint64_t off = range * i;
		uint64_t len = o->size - off < range ? o->size - off : range;
		int err = ferry__sftp_write_range(o->streams[i - 1], j->path,
		                                  off, len, o->read, o->rctx,
		                                  stripe_cb, j);
		if (err) {
			job_record(j, "write", err, FERRY__FX_LOCAL,
			           ferry_strerror(err));
			break;
		}
		j->st->pending++;
		j->outstanding++;
	}
	return 1;
}

/* The writes, FSETSTAT, fsync and CLOSE behind a (confirmed) OPEN; with an
 * error recorded only the CLOSE.  A delta opens its base first (so that
 * the OPEN is not queued behind the writes) and the rest waits for it. */
static void job_body(upload_job *j)
{
	ferry__sftp *sf = j->sf;
	upload_delta *d = j->d;
	int err;
	if (d && d->mode == DELTA_UNDECIDED)
		delta_decide(j);
	int delta = d && d->mode == DELTA_ON;
	int striped = !delta && stripe_start(j);
	if (delta)
		delta_seek(j, 0);
	if (j->o.size && !j->error && (!delta || d->wi < d->npieces)) {
		ferry__sftp_gen g = {job_emit, job_gen_fail, j};
		if ((err = ferry__sftp__add_gen(sf, &g)))
			job_record(j, "write", err, FERRY__FX_LOCAL,
			           ferry_strerror(err));
		else
			j->gen_active = 1;
	}
	if (striped && j->st->pending)
		return; /* the last stripe sends the tail */
	if (!delta)
		job_tail(j);
	/* else job_base_open_cb sends the tail */
}

/* Check a delta's pieces: in order, contiguous, not empty, exactly
 * [0, size), copies inside [0, base_size). */
static int delta_check(const ferry__sftp_upload_opts *o)
{
	if (!o->base)
		return o->pieces || o->npieces ? FERRY_EINVALID : 0;
	if (o->data || !(o->read || o->use_fd) || (o->npieces && !o->pieces))
		return FERRY_EINVALID;
	uint64_t at = 0;
	for (size_t i = 0; i < o->npieces; i++) {
		const ferry__sftp_piece *p = &o->pieces[i];
		if (!p->len || p->off != at || p->len > o->size - at)
			return FERRY_EINVALID;
		if (p->copy && (p->base_off > o->base_size ||
		                p->len > o->base_size - p->base_off))
			return FERRY_EINVALID;
		at += p->len;
	}
	return at == o->size ? 0 : FERRY_EINVALID;
}

/* A delta's state, or (no copy piece, a server without copy-data, too
 * many deltas waiting for a handle) none: a plain upload. */
static int delta_setup(upload_job *j, const ferry__sftp_upload_opts *o)
{
	ferry__sftp *sf = j->sf;
	const char *why = NULL;
	size_t ncopy = 0;
	for (size_t i = 0; i < o->npieces; i++)
		ncopy += o->pieces[i].copy != 0;
	j->o.base = NULL;
	j->o.pieces = NULL;
	j->o.npieces = 0;
	if (!o->base || !ncopy)
		return 0;
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	if (sf->state == SFTP_READY &&
	    !ferry__sftp_has(sf, FERRY__EXT_COPY_DATA))
		why = "the server has no copy-data";
	else if (sf->state == SFTP_READY && l.max_handles < 2)
		why = "the server allows fewer than 2 open handles";
	if (why) {
		j->res.delta_fallback = 1;
		j->res.delta_why = why;
		return 0;
	}
	upload_delta *d = ferry__calloc(1, sizeof(*d));
	if (!d)
		return FERRY_ENOMEM;
	j->d = d;
	d->base = ferry__strdup(o->base);
	d->pieces = ferry__reallocarray(NULL, o->npieces, sizeof(*d->pieces));
	if (!d->base || !d->pieces)
		return FERRY_ENOMEM;
	for (size_t i = 0; i < o->npieces; i++) {
		const ferry__sftp_piece *p = &o->pieces[i];
		ferry__sftp_piece *last =
		        d->npieces ? &d->pieces[d->npieces - 1] : NULL;
		int copy = p->copy != 0;
		if (copy)
			d->copy_total += p->len;
		/* Neighbours of one kind become one request (copies only
		 * when their old ranges follow on too). */
		if (last && last->copy == copy &&
		    (!copy || last->base_off + last->len == p->base_off)) {
			last->len += p->len;
			continue;
		}
		d->pieces[d->npieces] = *p;
		d->pieces[d->npieces].copy = copy;
		if (!copy)
			d->pieces[d->npieces].base_off = 0;
		d->npieces++;
	}
	return 0;
}

/* OPEN of the temp (and its LSTAT), with a delta the LSTAT of base: the
 * first flight.  0, or the error of the OPEN (nothing sent then). */
static int job_start(upload_job *j)
{
	ferry__sftp *sf = j->sf;
	int error = job_open_temp(j);
	if (error || !j->d)
		return error;
	/* The old file's LSTAT in the same flight: it is opened only when
	 * it is the regular file the caller expects. */
	if (!ferry__sftp_lstat(sf, j->d->base, job_base_lstat_cb, j)) {
		j->outstanding++;
		j->d->blstat_pending = 1;
	} else {
		j->d->why = "the old file could not be looked at on the remote";
	}
	return 0;
}

int ferry__sftp_upload(ferry__sftp *sf, const ferry__sftp_upload_opts *o)
{
	int sources = (o->data != NULL) + (o->use_fd != 0) + (o->read != NULL);
	int error;
	if (!o->path || !o->done || sources > 1 || (o->size && !sources))
		return FERRY_EINVALID;
	if ((error = delta_check(o)))
		return error;
	if (sf->dead)
		return sf->dead;
	upload_job *j = ferry__calloc(1, sizeof(*j));
	if (!j)
		return FERRY_ENOMEM;
	j->sf = sf;
	j->o = *o;
	j->path = ferry__strdup(o->path);
	if (!j->path ||
	    (o->rename_to && !(j->rename_to = ferry__strdup(o->rename_to)))) {
		error = FERRY_ENOMEM;
		goto fail;
	}
	j->o.path = j->path;
	j->o.rename_to = j->rename_to;
	if ((error = delta_setup(j, o)))
		goto fail;
	if (j->d && !delta_room(sf)) {
		/* Held back until a delta waiting for its handles is done:
		 * it starts from that one's callback. */
		if (sf->delta_last)
			((upload_job *)sf->delta_last)->d->next = j;
		else
			sf->delta_first = j;
		sf->delta_last = j;
		sf->jobs++;
		return 0;
	}
	if (j->d) {
		j->d->waiting = 1;
		sf->delta_waiting++;
	}
	if ((error = job_start(j)))
		goto fail;
	sf->jobs++;
	return 0;
fail:
	delta_free(j);
	ferry__free(j->path);
	ferry__free(j->rename_to);
	ferry__free(j);
	return error;
}

/* ---- read a small file
 * ------------------------------------------------------- */

#define JOB_MSG 512 /* a job's error message */

typedef struct small_job {
	ferry__sftp *sf;
	ferry__sftp_small_cb cb;
	void *ctx;
	uint32_t max;
	int pending, err, truncated;
	char msg[JOB_MSG];
	uint8_t *data;
	size_t len;
	char *path;
} small_job;

static void small_finish(small_job *j)
{
	ferry__sftp *sf = j->sf;
	j->cb(j->ctx, j->err, j->err ? j->msg : "ok", j->data,
	      j->err ? 0 : j->len, j->truncated);
	ferry__free(j->data);
	ferry__free(j->path);
	ferry__free(j);
	sf->jobs--;
}

/* A job's first error, as "OP PATH: MESSAGE". */
static void job_err(int *err, char *msg, const char *op, const char *path,
                    int e, const char *m)
{
	if (*err)
		return;
	*err = e;
	snprintf(msg, JOB_MSG, "%s %s: %s", op, path, m);
}

static void small_err(small_job *j, const char *op, int err, const char *m)
{
	job_err(&j->err, j->msg, op, j->path, err, m);
}

static void small_read_cb(void *ctx, const ferry__sftp_reply *r)
{
	small_job *j = ctx;
	if (r->error) {
		small_err(j, "read", r->error, r->message);
	} else if (!r->eof && r->data_len) {
		size_t n = r->data_len;
		if (n > j->max) {
			n = j->max;
			j->truncated = 1;
		}
		j->data = ferry__malloc(n + 1);
		if (!j->data) {
			small_err(j, "read", FERRY_ENOMEM, "out of memory");
		} else {
			memcpy(j->data, r->data, n);
			j->data[n] = 0;
			j->len = n;
		}
	}
	if (!--j->pending)
		small_finish(j);
}

static void small_close_cb(void *ctx, const ferry__sftp_reply *r)
{
	small_job *j = ctx;
	(void)r; /* the content is read; a failing close changes nothing */
	if (!--j->pending)
		small_finish(j);
}

static void small_open_cb(void *ctx, const ferry__sftp_reply *r)
{
	small_job *j = ctx;
	ferry__sftp_limits_info l;
	j->pending--;
	if (r->error) {
		small_err(j, "open", r->error, r->message);
		small_finish(j);
		return;
	}
	ferry__sftp_limits_get(j->sf, &l);
	uint32_t ask = j->max < l.max_read ? j->max + 1 : (uint32_t)l.max_read;
	int err = ferry__sftp_read(j->sf, r->handle, 0, ask, small_read_cb, j);
	if (err)
		small_err(j, "read", err, ferry_strerror(err));
	else
		j->pending++;
	if (!ferry__sftp_close(j->sf, r->handle, small_close_cb, j))
		j->pending++;
	if (!j->pending)
		small_finish(j);
}

/* What a file type is called, for "not a regular file (a fifo)". */
static const char *kind_name(const ferry__sftp_attrs *a)
{
	if (!(a->flags & FERRY__ATTR_PERMISSIONS))
		return "of a type the server did not say";
	switch (a->perm & 0170000) {
	case 0010000:
		return "a fifo";
	case 0020000:
		return "a character device";
	case 0040000:
		return "a directory";
	case 0060000:
		return "a block device";
	case 0120000:
		return "a symlink";
	case 0140000:
		return "a socket";
	default:
		return "of an unknown type";
	}
}

/* The LSTAT before the OPEN: a file ferry only reads is opened only when
 * it is a regular file (sftp-server's open() of a fifo or a device would
 * block it, or do worse). */
static void small_lstat_cb(void *ctx, const ferry__sftp_reply *r)
{
	small_job *j = ctx;
	j->pending--;
	if (r->error) {
		small_err(j, "lstat", r->error, r->message);
	} else if (!r->attrs || !(r->attrs->flags & FERRY__ATTR_PERMISSIONS) ||
	           (r->attrs->perm & 0170000) != 0100000) {
		char m[160];
		ferry__sftp_attrs none;
		memset(&none, 0, sizeof(none));
		snprintf(m, sizeof(m), "not a regular file (%s): not opened",
		         kind_name(r->attrs ? r->attrs : &none));
		small_err(j, "lstat", FERRY_EEXIST, m);
	} else {
		int err = ferry__sftp_open(j->sf, j->path, FERRY__FXF_READ,
		                           NULL, small_open_cb, j);
		if (err)
			small_err(j, "open", err, ferry_strerror(err));
		else
			j->pending++;
	}
	if (!j->pending)
		small_finish(j);
}

int ferry__sftp_read_small(ferry__sftp *sf, const char *path, uint32_t max,
                           ferry__sftp_small_cb cb, void *ctx)
{
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	if (!path || !cb || max > l.max_read)
		return FERRY_EINVALID;
	small_job *j = ferry__calloc(1, sizeof(*j));
	if (!j)
		return FERRY_ENOMEM;
	j->sf = sf;
	j->cb = cb;
	j->ctx = ctx;
	j->max = max;
	j->path = ferry__strdup(path);
	int error = j->path ? ferry__sftp_lstat(sf, path, small_lstat_cb, j)
	                    : FERRY_ENOMEM;
	if (error) {
		ferry__free(j->path);
		ferry__free(j);
		return error;
	}
	j->pending = 1;
	sf->jobs++;
	return 0;
}

/* ---- list one directory
 * ------------------------------------------------------ */

/* READDIRs sent with the speculative CLOSE, then per batch when a
 * directory is bigger than that. */
#define LIST_FIRST 4
#define LIST_BATCH 8

typedef struct list_job {
	ferry__sftp *sf;
	ferry__sftp_list_cb cb;
	void *ctx;
	char *path;
	ferry__sftp_handle h;
	ferry__sftp_dirent *ents;
	size_t n, cap;
	int pending, eof, err, closed, big, opened;
	int selves; /* "." (1) and ".." (2) seen */
	uint64_t max_ents, max_name_bytes, name_bytes;
	char msg[JOB_MSG];
} list_job;

static void list_clear(list_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		ferry__free(j->ents[i].name);
	j->n = 0;
	j->selves = 0;
	j->name_bytes = 0;
}

static void list_finish(list_job *j)
{
	ferry__sftp *sf = j->sf;
	j->cb(j->ctx, j->err, j->err ? j->msg : "ok", j->err ? NULL : j->ents,
	      j->err ? 0 : j->n);
	list_clear(j);
	ferry__free(j->ents);
	ferry__free(j->path);
	ferry__free(j);
	sf->jobs--;
}

static void list_err(list_job *j, const char *op, int err, const char *m)
{
	job_err(&j->err, j->msg, op, j->path, err, m);
}

static void list_open_cb(void *ctx, const ferry__sftp_reply *r);
static void list_step(list_job *j);

static void list_close_cb(void *ctx, const ferry__sftp_reply *r)
{
	list_job *j = ctx;
	(void)r;
	j->closed = 1;
	j->pending--;
	list_step(j);
}

/* The "." or ".." every listing holds, dropped once each; another one (a
 * second, or one that is not a directory) is passed on for the caller to
 * refuse. */
static int list_self(list_job *j, const ferry__sftp_name *nm)
{
	int k = nm->name_len == 1 && nm->name[0] == '.'           ? 1
	        : nm->name_len == 2 && !memcmp(nm->name, "..", 2) ? 2
	                                                          : 0;
	int dir = !(nm->attrs.flags & FERRY__ATTR_PERMISSIONS) ||
	          (nm->attrs.perm & 0170000) == 0040000;
	if (!k || !dir || (j->selves & k))
		return 0;
	j->selves |= k;
	return 1;
}

static void list_add(list_job *j, const ferry__sftp_reply *r)
{
	for (uint32_t i = 0; i < r->count && !j->err; i++) {
		const ferry__sftp_name *nm = &r->names[i];
		if (list_self(j, nm))
			continue;
		/* A server can list without end: what it makes us hold is
		 * bounded. */
		if (j->n >= j->max_ents) {
			char m[160];
			snprintf(m, sizeof(m),
			         "the server listed more than %llu entries in "
			         "this directory (a limit of what ferry holds "
			         "from a listing: entries per directory, or "
			         "in all)",
			         (unsigned long long)j->max_ents);
			list_err(j, "readdir", FERRY_ELIMIT, m);
			return;
		}
		if (nm->name_len > j->max_name_bytes - j->name_bytes) {
			char m[160];
			snprintf(m, sizeof(m),
			         "the server listed more than %llu bytes of "
			         "names (a limit of what ferry holds from a "
			         "listing: bytes of names)",
			         (unsigned long long)j->max_name_bytes);
			list_err(j, "readdir", FERRY_ELIMIT, m);
			return;
		}
		j->name_bytes += nm->name_len;
		if (j->n == j->cap) {
			size_t ncap = j->cap ? j->cap * 2 : 64;
			ferry__sftp_dirent *ne =
			        ferry__reallocarray(j->ents, ncap, sizeof(*ne));
			if (!ne) {
				list_err(j, "readdir", FERRY_ENOMEM,
				         "out of memory");
				return;
			}
			j->ents = ne;
			j->cap = ncap;
		}
		j->ents[j->n].name = ferry__malloc(nm->name_len + 1);
		if (j->ents[j->n].name) {
			memcpy(j->ents[j->n].name, nm->name, nm->name_len + 1);
			j->ents[j->n].name_len = nm->name_len;
		} else {
			list_err(j, "readdir", FERRY_ENOMEM, "out of memory");
			return;
		}
		j->ents[j->n].attrs = nm->attrs;
		j->n++;
	}
}

static void list_readdir_cb(void *ctx, const ferry__sftp_reply *r)
{
	list_job *j = ctx;
	j->pending--;
	if (r->error)
		list_err(j, "readdir", r->error, r->message);
	else if (r->eof)
		j->eof = 1;
	else if (!j->eof)
		list_add(j, r);
	list_step(j);
}

static void list_send(list_job *j, int reads, int close)
{
	for (int i = 0; i < reads; i++) {
		int err = ferry__sftp_readdir(j->sf, &j->h, list_readdir_cb, j);
		if (err) {
			list_err(j, "readdir", err, ferry_strerror(err));
			break;
		}
		j->pending++;
	}
	if (close || j->err) {
		if (!ferry__sftp_close(j->sf, &j->h, list_close_cb, j))
			j->pending++;
		else
			j->closed = 1;
	}
}

/* Decide what comes next once the outstanding replies are in. */
static void list_step(list_job *j)
{
	if (j->pending)
		return;
	if (j->opened && !j->closed && (j->err || j->eof)) {
		list_send(j, 0, 1);
		if (j->pending)
			return;
	}
	if (j->err || j->eof) {
		list_finish(j);
		return;
	}
	if (!j->big) {
		/* Bigger than the speculative reads: list it again, with
		 * the handle kept open until EOF. */
		j->big = 1;
		j->opened = 0;
		list_clear(j);
		int err = ferry__sftp_opendir(j->sf, j->path, list_open_cb, j);
		if (err) {
			list_err(j, "opendir", err, ferry_strerror(err));
			list_finish(j);
			return;
		}
		j->pending++;
		return;
	}
	list_send(j, LIST_BATCH, 0);
	list_step(j);
}

static void list_open_cb(void *ctx, const ferry__sftp_reply *r)
{
	list_job *j = ctx;
	j->pending--;
	if (r->error) {
		list_err(j, "opendir", r->error, r->message);
		list_finish(j);
		return;
	}
	j->h = *r->handle;
	j->opened = 1;
	j->closed = 0;
	j->eof = 0;
	if (!j->big)
		list_send(j, LIST_FIRST, 1);
	else
		list_send(j, LIST_BATCH, 0);
	list_step(j);
}

int ferry__sftp_list(ferry__sftp *sf, const char *path, ferry__sftp_list_cb cb,
                     void *ctx)
{
	return ferry__sftp_list_ex(sf, path, NULL, cb, ctx);
}

int ferry__sftp_list_ex(ferry__sftp *sf, const char *path,
                        const ferry__sftp_list_limits *lim,
                        ferry__sftp_list_cb cb, void *ctx)
{
	if (!path || !cb)
		return FERRY_EINVALID;
	list_job *j = ferry__calloc(1, sizeof(*j));
	if (!j)
		return FERRY_ENOMEM;
	j->max_ents = lim && lim->max_entries ? lim->max_entries
	                                      : FERRY__LIST_MAX_ENTRIES;
	j->max_name_bytes = lim && lim->max_name_bytes
	                            ? lim->max_name_bytes
	                            : FERRY__LIST_MAX_NAME_BYTES;
	j->sf = sf;
	j->cb = cb;
	j->ctx = ctx;
	j->path = ferry__strdup(path);
	int error = j->path ? ferry__sftp_opendir(sf, path, list_open_cb, j)
	                    : FERRY_ENOMEM;
	if (error) {
		ferry__free(j->path);
		ferry__free(j);
		return error;
	}
	j->pending = 1;
	sf->jobs++;
	return 0;
}

/* ---- download one file
 * ------------------------------------------------------- */

#define DL_WINDOW  (4u << 20)
#define DL_REOPENS 8 /* rounds of short reads read again */

typedef struct dl_hole {
	uint64_t off;
	uint32_t len;
} dl_hole;

typedef struct dl_job {
	ferry__sftp *sf;
	ferry__sftp_download_opts o;
	char *path;
	ferry__sftp_handle h;
	int open;       /* h is valid: opened and no CLOSE sent */
	int opens;      /* OPENs answered with a handle */
	int careful;    /* reopened: CLOSE only once everything is in */
	unsigned reads; /* READs in flight */
	unsigned pending;
	size_t inflight; /* bytes asked by the READs in flight */
	uint64_t next_off, got, gen;
	uint32_t chunk;
	int eof_sent, eof_ok;
	dl_hole *holes;
	size_t nholes, holes_cap;
	int error;
	const char *step;
	char msg[JOB_MSG];
} dl_job;

typedef struct dl_read {
	dl_job *j;
	uint64_t off;
	uint32_t len;
} dl_read;

static void dl_err(dl_job *j, const char *step, int err, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void dl_err(dl_job *j, const char *step, int err, const char *fmt, ...)
{
	if (j->error)
		return;
	char m[JOB_MSG];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	j->error = err;
	j->step = step;
	snprintf(j->msg, sizeof(j->msg), "%s %.300s: %.200s", step, j->path, m);
}

static void dl_seen(dl_job *j, const ferry__sftp_reply *r)
{
	if (r->gen > j->gen)
		j->gen = r->gen;
}

static void dl_step(dl_job *j);

static void dl_close_cb(void *ctx, const ferry__sftp_reply *r)
{
	dl_job *j = ctx;
	dl_seen(j, r);
	j->pending--;
	dl_step(j); /* a failing close of a file read changes nothing */
}

static void dl_close(dl_job *j)
{
	j->open = 0;
	if (!ferry__sftp_close(j->sf, &j->h, dl_close_cb, j))
		j->pending++;
}

/* A short read: the rest of its range is asked again. */
static void dl_hole_add(dl_job *j, uint64_t off, uint32_t len)
{
	if (j->nholes == j->holes_cap) {
		size_t ncap = j->holes_cap ? 2 * j->holes_cap : 4;
		dl_hole *v = ferry__reallocarray(j->holes, ncap, sizeof(*v));
		if (!v) {
			dl_err(j, "read", FERRY_ENOMEM, "out of memory");
			return;
		}
		j->holes = v;
		j->holes_cap = ncap;
	}
	j->holes[j->nholes].off = off;
	j->holes[j->nholes++].len = len;
}

static void dl_read_cb(void *ctx, const ferry__sftp_reply *r)
{
	dl_read *rd = ctx;
	dl_job *j = rd->j;
	uint64_t off = rd->off, size = j->o.size;
	uint32_t len = rd->len;
	ferry__free(rd);
	dl_seen(j, r);
	j->pending--;
	j->reads--;
	j->inflight -= len;
	if (j->error) {
		/* nothing more is taken */
	} else if (r->error) {
		dl_err(j, "read", r->error, "%s", r->message);
	} else if (off == size) {
		if (r->eof)
			j->eof_ok = 1;
		else
			dl_err(j, "size", FERRY_EPROTO,
			       "the file holds more than the %llu bytes listed",
			       (unsigned long long)size);
	} else if (r->eof || r->data_len == 0) {
		dl_err(j, "size", FERRY_EPROTO,
		       "the file ends at %llu bytes, %llu were listed",
		       (unsigned long long)off, (unsigned long long)size);
	} else if (off + r->data_len > size) {
		dl_err(j, "size", FERRY_EPROTO,
		       "the file holds more than the %llu bytes listed",
		       (unsigned long long)size);
	} else {
		int e = j->o.data
		                ? j->o.data(j->o.ctx, off, r->data, r->data_len)
		                : 0;
		uint64_t end = off + r->data_len, want = off + len;
		if (e) {
			dl_err(j, "write", e, "%s", ferry_strerror(e));
		} else {
			j->got += r->data_len;
			/* The last READ asks one byte past the listed size:
			 * ending there is the end of file (a server reads a
			 * regular file short only at its end). */
			if (want > size && end == size)
				j->eof_ok = 1;
			else if (end < want)
				dl_hole_add(
				        j, end,
				        (uint32_t)((want > size ? size : want) -
				                   end));
			if (want > size && end < size)
				j->eof_sent = 0; /* asked again, separately */
		}
	}
	dl_step(j);
}

static int dl_send_read(dl_job *j, uint64_t off, uint32_t len)
{
	dl_read *rd = ferry__calloc(1, sizeof(*rd));
	if (!rd) {
		dl_err(j, "read", FERRY_ENOMEM, "out of memory");
		return -1;
	}
	rd->j = j;
	rd->off = off;
	rd->len = len;
	int e = ferry__sftp_read(j->sf, &j->h, off, len, dl_read_cb, rd);
	if (e) {
		ferry__free(rd);
		dl_err(j, "read", e, "%s", ferry_strerror(e));
		return -1;
	}
	j->pending++;
	j->reads++;
	j->inflight += len;
	return 0;
}

static void dl_open_cb(void *ctx, const ferry__sftp_reply *r);

static void dl_finish(dl_job *j)
{
	ferry__sftp *sf = j->sf;
	ferry__sftp_download_result res;
	if (!j->error && j->got != j->o.size)
		dl_err(j, "size", FERRY_EPROTO, "read %llu bytes of %llu",
		       (unsigned long long)j->got,
		       (unsigned long long)j->o.size);
	res.error = j->error;
	res.step = j->error ? j->step : NULL;
	res.message = j->error ? j->msg : "ok";
	res.bytes = j->got;
	res.gen = j->gen;
	if (j->o.done)
		j->o.done(j->o.ctx, &res);
	ferry__free(j->holes);
	ferry__free(j->path);
	ferry__free(j);
	sf->jobs--;
}

/* Send what can be sent, close when nothing more will be read, finish
 * when nothing is in flight. */
static void dl_step(dl_job *j)
{
	uint64_t size = j->o.size;
	size_t win = j->o.window ? j->o.window : DL_WINDOW;
	if (j->error) {
		if (j->open)
			dl_close(j);
		if (!j->pending)
			dl_finish(j);
		return;
	}
	if (j->open) {
		while (j->nholes && j->inflight < win) {
			dl_hole h = j->holes[--j->nholes];
			if (dl_send_read(j, h.off, h.len))
				break;
		}
		while (!j->error && j->next_off < size && j->inflight < win) {
			uint64_t n = size - j->next_off;
			uint32_t len = n < j->chunk ? (uint32_t)n : j->chunk;
			/* The last one also checks the end: one byte more. */
			int last = n < j->chunk && !j->eof_sent;
			if (dl_send_read(j, j->next_off, len + (uint32_t)last))
				break;
			j->next_off += len;
			j->eof_sent |= last;
		}
		if (!j->error && j->next_off >= size && !j->eof_sent) {
			if (!dl_send_read(j, size, 1))
				j->eof_sent = 1;
		}
		int all_asked =
		        j->next_off >= size && j->eof_sent && !j->nholes;
		if (!j->error && all_asked && (!j->careful || !j->reads))
			dl_close(j);
		if (j->error) {
			dl_step(j);
			return;
		}
	} else if (!j->pending && j->nholes) {
		/* Short reads behind the speculative CLOSE: again. */
		if (j->opens > DL_REOPENS) {
			dl_err(j, "read", FERRY_EPROTO,
			       "the server keeps answering short reads");
			dl_step(j);
			return;
		}
		j->careful = 1;
		int e = ferry__sftp_open(j->sf, j->path, FERRY__FXF_READ, NULL,
		                         dl_open_cb, j);
		if (e) {
			dl_err(j, "open", e, "%s", ferry_strerror(e));
			dl_step(j);
			return;
		}
		j->pending++;
		return;
	}
	if (!j->pending)
		dl_finish(j);
}

static void dl_open_cb(void *ctx, const ferry__sftp_reply *r)
{
	dl_job *j = ctx;
	dl_seen(j, r);
	j->pending--;
	if (r->error) {
		dl_err(j, "open", r->error, "%s", r->message);
	} else {
		j->h = *r->handle;
		j->open = 1;
		if (!j->opens++ && j->o.opened) {
			int e = j->o.opened(j->o.ctx);
			if (e)
				dl_err(j, "write", e, "%s", ferry_strerror(e));
		}
	}
	dl_step(j);
}

int ferry__sftp_download(ferry__sftp *sf, const ferry__sftp_download_opts *o)
{
	ferry__sftp_limits_info l;
	if (!o || !o->path)
		return FERRY_EINVALID;
	dl_job *j = ferry__calloc(1, sizeof(*j));
	if (!j)
		return FERRY_ENOMEM;
	ferry__sftp_limits_get(sf, &l);
	j->sf = sf;
	j->o = *o;
	j->chunk = l.max_read > UINT32_MAX ? UINT32_MAX : (uint32_t)l.max_read;
	if (!j->chunk)
		j->chunk = 1;
	j->path = ferry__strdup(o->path);
	int error = j->path ? ferry__sftp_open(sf, j->path, FERRY__FXF_READ,
	                                       NULL, dl_open_cb, j)
	                    : FERRY_ENOMEM;
	if (error) {
		ferry__free(j->path);
		ferry__free(j);
		return error;
	}
	j->pending = 1;
	sf->jobs++;
	return 0;
}
