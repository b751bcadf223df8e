/* sftp_wait.c - test support: the thin synchronous layer: submit, run until the
 * replies are in, copy the result out.  The waiter lives on the heap and is
 * reference counted, so a call that times out can return while its
 * callbacks are still owed: the last one frees it. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "session.h"
#include "sftp_test.h"
#include "sftp_int.h"

typedef struct waiter {
	int refs;    /* callbacks owed + 1 for the caller */
	int pending; /* callbacks owed */
	int error;
	char msg[512];
	int eof;
	ferry__sftp_handle handle;
	ferry__sftp_attrs attrs;
	ferry__sftp_vfs_info vfs;
	uint8_t *buf; /* read: the caller's buffer (NULL once abandoned) */
	size_t buflen, got;
	char *str; /* realpath, readlink, read_small (str_len bytes) */
	size_t str_len;
	ferry__sftp_upload_result up;
	void (*uprog)(void *, uint64_t); /* the caller's progress */
	void *uctx;
	char up_msg[600];
	ferry__sftp_dirent *ents;
	size_t nents;
} waiter;

static waiter *waiter_new(void)
{
	waiter *w = ferry__calloc(1, sizeof(*w));
	if (w)
		w->refs = 1;
	return w;
}

static void waiter_unref(waiter *w)
{
	if (--w->refs)
		return;
	ferry__free(w->str);
	ferry__sftp_dirents_free(w->ents, w->nents);
	ferry__free(w);
}

static void owe(waiter *w)
{
	w->refs++;
	w->pending++;
}

static void w_error(waiter *w, int error, const char *msg)
{
	if (w->error)
		return;
	w->error = error;
	ferry__sftp__textcpy(w->msg, sizeof(w->msg), msg);
}

static void wait_cb(void *ctx, const ferry__sftp_reply *r)
{
	waiter *w = ctx;
	w->pending--;
	{
		if (r->error)
			w_error(w, r->error, r->message);
		w->eof = r->eof;
		if (r->handle)
			w->handle = *r->handle;
		if (r->attrs)
			w->attrs = *r->attrs;
		if (r->vfs)
			w->vfs = *r->vfs;
		if (r->data && w->buf) {
			size_t n = r->data_len < w->buflen ? r->data_len
			                                   : w->buflen;
			memcpy(w->buf, r->data, n);
			w->got = n;
		}
		if (r->names && r->count == 1 && !w->str &&
		    (r->req_type == FERRY__FXP_REALPATH ||
		     r->req_type == FERRY__FXP_READLINK)) {
			w->str = ferry__strdup(r->names[0].name);
			if (!w->str)
				w_error(w, FERRY_ENOMEM, "out of memory");
		}
	}
	waiter_unref(w);
}

static int w_done(void *ctx)
{
	return ((waiter *)ctx)->pending == 0;
}

static int64_t deadline_of(const ferry__sftp *sf)
{
	int t = sf->opts.timeout_ms ? sf->opts.timeout_ms : 120000;
	return t < 0 ? 0 : ferry__sftp__now() + t;
}

static int report(ferry__sftp *sf, int error, const char *op, const char *path,
                  const char *msg)
{
	if (!error)
		return 0;
	char text[900];
	if (!op)
		ferry__sftp__textcpy(text, sizeof(text), msg);
	else if (path)
		snprintf(text, sizeof(text), "%s %s: %s", op, path, msg);
	else
		snprintf(text, sizeof(text), "%s: %s", op, msg);
	ferry__sftp_seterr(sf, error, "%s", text);
	if (sf->session)
		ferry__seterr(sf->session, error, "%s", text);
	return error;
}

/* Run until the waiter's callbacks are in; returns its error. */
static int finish(ferry__sftp *sf, waiter *w, int submit_err, const char *op,
                  const char *path)
{
	int error = submit_err;
	if (error) {
		const char *m = sf->errmsg[0] && error != FERRY_ENOMEM
		                        ? sf->errmsg
		                        : ferry_strerror(error);
		char copy[sizeof(sf->errmsg)];
		ferry__sftp__textcpy(copy, sizeof(copy), m);
		w_error(w, error, copy);
	}
	if (w->pending) {
		int rc = ferry__sftp_run(sf, w_done, w, deadline_of(sf));
		if (rc && w->pending) {
			const char *m =
			        rc == FERRY_ETIMEOUT
			                ? "no answer from the SFTP server "
			                  "in time"
			        : sf->errmsg[0] ? sf->errmsg
			                        : ferry_strerror(rc);
			char copy[sizeof(sf->errmsg)];
			ferry__sftp__textcpy(copy, sizeof(copy), m);
			w_error(w, rc, copy);
		}
	}
	w->buf = NULL; /* late replies must not write there */
	error = report(sf, w->error, op, path, w->msg);
	return error;
}

#define WAIT_BEGIN(w)                                                          \
	waiter *w = waiter_new();                                              \
	if (!w)                                                                \
		return report(sf, FERRY_ENOMEM, op, path, "out of memory");

/* One request: its text (op, path), how it is submitted (the first of the
 * submit functions set, on its arguments) and where its result goes. */
typedef struct req req;
struct req {
	const char *op, *path; /* path: the text's and the first argument */
	const char *path2;
	const ferry__sftp_handle *h;
	const ferry__sftp_attrs *a;
	uint32_t u32;    /* open's flags, read_small's limit */
	const void *arg; /* submit's own */
	int (*by_path)(ferry__sftp *, const char *, ferry__sftp_cb, void *);
	int (*by_handle)(ferry__sftp *, const ferry__sftp_handle *,
	                 ferry__sftp_cb, void *);
	int (*two_paths)(ferry__sftp *, const char *, const char *,
	                 ferry__sftp_cb, void *);
	int (*path_attrs)(ferry__sftp *, const char *,
	                  const ferry__sftp_attrs *, ferry__sftp_cb, void *);
	int (*submit)(ferry__sftp *, waiter *, const req *);
	/* Filled on success. */
	ferry__sftp_handle *handle;
	ferry__sftp_attrs *attrs;
	ferry__sftp_vfs_info *vfs;
	char **str; /* realpath, readlink, read_small (+ *len) */
	size_t *len;
	ferry__sftp_dirent **ents; /* list (+ *n) */
	size_t *n;
};

static int submit(ferry__sftp *sf, waiter *w, const req *q)
{
	if (q->by_path)
		return q->by_path(sf, q->path, wait_cb, w);
	if (q->by_handle)
		return q->by_handle(sf, q->h, wait_cb, w);
	if (q->two_paths)
		return q->two_paths(sf, q->path, q->path2, wait_cb, w);
	if (q->path_attrs)
		return q->path_attrs(sf, q->path, q->a, wait_cb, w);
	return q->submit(sf, w, q);
}

/* Submit one request, run until its reply, copy its result out. */
static int call(ferry__sftp *sf, const req *q)
{
	const char *op = q->op, *path = q->path;
	WAIT_BEGIN(w);
	int err = submit(sf, w, q);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	if (!err) {
		if (q->handle)
			*q->handle = w->handle;
		if (q->attrs)
			*q->attrs = w->attrs;
		if (q->vfs)
			*q->vfs = w->vfs;
		if (q->str) {
			*q->str = w->str;
			w->str = NULL;
		}
		if (q->len)
			*q->len = w->str_len;
		if (q->ents) {
			*q->ents = w->ents;
			*q->n = w->nents;
			w->ents = NULL;
			w->nents = 0;
		}
	}
	waiter_unref(w);
	return err;
}

static int sub_open(ferry__sftp *sf, waiter *w, const req *q)
{
	return ferry__sftp_open(sf, q->path, q->u32, q->a, wait_cb, w);
}

int ferry__sftp_open_wait(ferry__sftp *sf, const char *path, uint32_t pflags,
                          const ferry__sftp_attrs *attrs,
                          ferry__sftp_handle *out)
{
	return call(sf, &(req){"open", path, .a = attrs, .u32 = pflags,
	                       .submit = sub_open, .handle = out});
}

int ferry__sftp_opendir_wait(ferry__sftp *sf, const char *path,
                             ferry__sftp_handle *out)
{
	return call(sf, &(req){"opendir", path, .by_path = ferry__sftp_opendir,
	                       .handle = out});
}

int ferry__sftp_close_wait(ferry__sftp *sf, const ferry__sftp_handle *h)
{
	return call(sf,
	            &(req){"close", .h = h, .by_handle = ferry__sftp_close});
}

int ferry__sftp_read_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                          uint64_t off, void *buf, size_t len, size_t *got)
{
	const char *op = "read", *path = NULL;
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	if (len > l.max_read)
		len = (size_t)l.max_read;
	WAIT_BEGIN(w);
	w->buf = buf;
	w->buflen = len;
	int err = ferry__sftp_read(sf, h, off, (uint32_t)len, wait_cb, w);
	if (!err)
		owe(w);
	size_t n = 0;
	err = finish(sf, w, err, op, path);
	if (!err)
		n = w->eof ? 0 : w->got;
	*got = n;
	waiter_unref(w);
	return err;
}

static int queue_drained(void *ctx)
{
	ferry__sftp *sf = ctx;
	return ferry__sftp_queued_bytes(sf) <= sf->window / 2;
}

int ferry__sftp_write_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                           uint64_t off, const void *data, size_t len)
{
	const char *op = "write", *path = NULL;
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	WAIT_BEGIN(w);
	int err = 0;
	size_t done = 0;
	/* Submit as the window takes them: the data is copied. */
	while (!err && (done < len || (!len && !done))) {
		size_t n = len - done < l.max_write ? len - done
		                                    : (size_t)l.max_write;
		err = ferry__sftp_write(sf, h, off + done,
		                        (const uint8_t *)data + done, n,
		                        wait_cb, w);
		if (err)
			break;
		owe(w);
		done += n;
		if (!len)
			break;
		if (ferry__sftp_queued_bytes(sf) > sf->window) {
			/* Let the queue drain before copying more. */
			int rc = ferry__sftp_run(sf, queue_drained, sf,
			                         deadline_of(sf));
			if (rc)
				err = rc;
		}
	}
	err = finish(sf, w, err, op, path);
	waiter_unref(w);
	return err;
}

int ferry__sftp_stat_wait(ferry__sftp *sf, const char *path,
                          ferry__sftp_attrs *out)
{
	return call(sf, &(req){"stat", path, .by_path = ferry__sftp_stat,
	                       .attrs = out});
}

int ferry__sftp_lstat_wait(ferry__sftp *sf, const char *path,
                           ferry__sftp_attrs *out)
{
	return call(sf, &(req){"lstat", path, .by_path = ferry__sftp_lstat,
	                       .attrs = out});
}

int ferry__sftp_fstat_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                           ferry__sftp_attrs *out)
{
	return call(sf, &(req){"fstat", .h = h, .by_handle = ferry__sftp_fstat,
	                       .attrs = out});
}

int ferry__sftp_setstat_wait(ferry__sftp *sf, const char *path,
                             const ferry__sftp_attrs *a)
{
	return call(sf, &(req){"setstat", path, .a = a,
	                       .path_attrs = ferry__sftp_setstat});
}

int ferry__sftp_lsetstat_wait(ferry__sftp *sf, const char *path,
                              const ferry__sftp_attrs *a)
{
	return call(sf, &(req){"lsetstat", path, .a = a,
	                       .path_attrs = ferry__sftp_lsetstat});
}

static int sub_fsetstat(ferry__sftp *sf, waiter *w, const req *q)
{
	return ferry__sftp_fsetstat(sf, q->h, q->a, wait_cb, w);
}

int ferry__sftp_fsetstat_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                              const ferry__sftp_attrs *a)
{
	return call(sf,
	            &(req){"fsetstat", .h = h, .a = a, .submit = sub_fsetstat});
}

int ferry__sftp_remove_wait(ferry__sftp *sf, const char *path)
{
	return call(sf, &(req){"remove", path, .by_path = ferry__sftp_remove});
}

int ferry__sftp_mkdir_wait(ferry__sftp *sf, const char *path,
                           const ferry__sftp_attrs *a)
{
	return call(sf, &(req){"mkdir", path, .a = a,
	                       .path_attrs = ferry__sftp_mkdir});
}

int ferry__sftp_rmdir_wait(ferry__sftp *sf, const char *path)
{
	return call(sf, &(req){"rmdir", path, .by_path = ferry__sftp_rmdir});
}

int ferry__sftp_realpath_wait(ferry__sftp *sf, const char *path, char **out)
{
	return call(sf, &(req){"realpath", path,
	                       .by_path = ferry__sftp_realpath, .str = out});
}

int ferry__sftp_readlink_wait(ferry__sftp *sf, const char *path, char **out)
{
	return call(sf, &(req){"readlink", path,
	                       .by_path = ferry__sftp_readlink, .str = out});
}

int ferry__sftp_rename_wait(ferry__sftp *sf, const char *from, const char *to)
{
	return call(sf, &(req){"rename", from, to,
	                       .two_paths = ferry__sftp_rename});
}

int ferry__sftp_posix_rename_wait(ferry__sftp *sf, const char *from,
                                  const char *to)
{
	return call(sf, &(req){"posix-rename", from, to,
	                       .two_paths = ferry__sftp_posix_rename});
}

int ferry__sftp_symlink_wait(ferry__sftp *sf, const char *linkpath,
                             const char *target)
{
	return call(sf, &(req){"symlink", linkpath, target,
	                       .two_paths = ferry__sftp_symlink});
}

static void probe_done_cb(void *ctx, int finished)
{
	if (finished)
		*(int *)ctx = 1;
}

static int flag_set(void *ctx)
{
	return *(int *)ctx;
}

int ferry__sftp_probe_symlinks_wait(ferry__sftp *sf, const char *dir)
{
	char names[FERRY__PROBE_NAMES][600];
	const char *v[FERRY__PROBE_NAMES];
	for (int i = 0; i < FERRY__PROBE_NAMES; i++) {
		snprintf(names[i], sizeof(names[i]), "%s/.probe%d-%ld", dir, i,
		         (long)getpid());
		v[i] = names[i];
	}
	int done = 0;
	int err = ferry__sftp_probe_symlinks(sf, v, probe_done_cb, &done);
	if (!err)
		err = ferry__sftp_run(sf, flag_set, &done,
		                      ferry__now_ms() + 30000);
	if (!err && !ferry__sftp_symlinks_known(sf))
		err = FERRY_EUNSUPPORTED;
	return err;
}

/* The text names the new path: the arguments come swapped. */
static int hardlink_new_old(ferry__sftp *sf, const char *newpath,
                            const char *oldpath, ferry__sftp_cb cb, void *ctx)
{
	return ferry__sftp_hardlink(sf, oldpath, newpath, cb, ctx);
}

int ferry__sftp_hardlink_wait(ferry__sftp *sf, const char *oldpath,
                              const char *newpath)
{
	return call(sf, &(req){"hardlink", newpath, oldpath,
	                       .two_paths = hardlink_new_old});
}

int ferry__sftp_fsync_wait(ferry__sftp *sf, const ferry__sftp_handle *h)
{
	return call(sf,
	            &(req){"fsync", .h = h, .by_handle = ferry__sftp_fsync});
}

int ferry__sftp_statvfs_wait(ferry__sftp *sf, const char *path,
                             ferry__sftp_vfs_info *out)
{
	return call(sf, &(req){"statvfs", path, .by_path = ferry__sftp_statvfs,
	                       .vfs = out});
}

typedef struct copy_args {
	const ferry__sftp_handle *wh;
	uint64_t roff, len, woff;
} copy_args;

static int sub_copy_data(ferry__sftp *sf, waiter *w, const req *q)
{
	const copy_args *c = q->arg;
	return ferry__sftp_copy_data(sf, q->h, c->roff, c->len, c->wh, c->woff,
	                             wait_cb, w);
}

int ferry__sftp_copy_data_wait(ferry__sftp *sf, const ferry__sftp_handle *rh,
                               uint64_t roff, uint64_t len,
                               const ferry__sftp_handle *wh, uint64_t woff)
{
	copy_args c = {wh, roff, len, woff};
	return call(sf, &(req){"copy-data", .h = rh, .arg = &c,
	                       .submit = sub_copy_data});
}

void ferry__sftp_dirents_free(ferry__sftp_dirent *d, size_t n)
{
	if (!d)
		return;
	for (size_t i = 0; i < n; i++)
		ferry__free(d[i].name);
	ferry__free(d);
}

static void list_wait_cb(void *ctx, int err, const char *msg,
                         const ferry__sftp_dirent *ents, size_t n)
{
	waiter *w = ctx;
	w->pending--;
	if (err) {
		w_error(w, err, msg);
	} else if (!w->ents) {
		w->ents = ferry__calloc(n ? n : 1, sizeof(*w->ents));
		if (!w->ents) {
			w_error(w, FERRY_ENOMEM, "out of memory");
		} else {
			for (size_t i = 0; i < n; i++) {
				w->ents[i].attrs = ents[i].attrs;
				w->ents[i].name = ferry__strdup(ents[i].name);
				w->nents = i + 1;
				if (!w->ents[i].name) {
					w_error(w, FERRY_ENOMEM,
					        "out of memory");
					break;
				}
			}
		}
	}
	waiter_unref(w);
}

static int sub_list(ferry__sftp *sf, waiter *w, const req *q)
{
	return ferry__sftp_list(sf, q->path, list_wait_cb, w);
}

int ferry__sftp_list_wait(ferry__sftp *sf, const char *path,
                          ferry__sftp_dirent **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	/* No op: the job's text names the step. */
	return call(sf, &(req){NULL, path, .submit = sub_list, .ents = out,
	                       .n = n});
}

static void small_wait_cb(void *ctx, int err, const char *msg,
                          const uint8_t *data, size_t len, int truncated)
{
	waiter *w = ctx;
	(void)truncated;
	w->pending--;
	if (err) {
		w_error(w, err, msg);
	} else if (!w->str) {
		w->str = ferry__malloc(len + 1);
		if (!w->str) {
			w_error(w, FERRY_ENOMEM, "out of memory");
		} else {
			if (len)
				memcpy(w->str, data, len);
			w->str[len] = 0;
			w->str_len = len;
		}
	}
	waiter_unref(w);
}

static int sub_read_small(ferry__sftp *sf, waiter *w, const req *q)
{
	return ferry__sftp_read_small(sf, q->path, q->u32, small_wait_cb, w);
}

int ferry__sftp_read_small_wait(ferry__sftp *sf, const char *path, uint32_t max,
                                char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	return call(sf, &(req){NULL, path, .u32 = max, .submit = sub_read_small,
	                       .str = out, .len = len});
}

static void upload_wait_cb(void *ctx, const ferry__sftp_upload_result *r)
{
	waiter *w = ctx;
	w->pending--;
	w->up = *r;
	ferry__sftp__textcpy(w->up_msg, sizeof(w->up_msg), r->message);
	w->up.message = w->up_msg;
	if (r->error)
		w_error(w, r->error, r->message);
	waiter_unref(w);
}

static void upload_wait_progress(void *ctx, uint64_t bytes)
{
	waiter *w = ctx;
	if (w->uprog)
		w->uprog(w->uctx, bytes);
}

int ferry__sftp_upload_wait(ferry__sftp *sf, const ferry__sftp_upload_opts *o,
                            ferry__sftp_upload_result *r)
{
	const char *op = NULL, *path = o->path;
	ferry__sftp_upload_opts copy = *o;
	memset(r, 0, sizeof(*r));
	WAIT_BEGIN(w);
	copy.done = upload_wait_cb;
	copy.ctx = w;
	w->uprog = o->progress;
	w->uctx = o->ctx;
	copy.progress = o->progress ? upload_wait_progress : NULL;
	int err = ferry__sftp_upload(sf, &copy);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	w->uprog = NULL; /* returned: later progress is nobody's */
	*r = w->up;
	/* The text lives on the client once the waiter is gone. */
	if (w->error) {
		r->error = err;
		r->message = sf->errmsg;
	} else {
		r->message = "ok";
	}
	waiter_unref(w);
	return err;
}
