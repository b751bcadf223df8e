/* sftp_wait.c - test support: the thin synchronous layer: submit, run until the
 * replies are in, copy the result out.  The waiter lives on the heap and is
 * reference counted, so a call that times out can return while its
 * callbacks are still owed: the last one frees it. */
#include <stdio.h>
#include <string.h>

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
	char *str; /* realpath, readlink */
	ferry__sftp_upload_result up;
	void (*uprog)(void *, uint64_t); /* the caller's progress */
	void *uctx;
	char up_msg[600];
	ferry__sftp_dirent *ents;
	size_t nents;
	uint8_t *small;
	size_t small_len;
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
	ferry__free(w->small);
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

/* One request whose only result is its status. */
static int status_call(ferry__sftp *sf, const char *op, const char *path,
                       int (*submit)(ferry__sftp *, waiter *, const void *,
                                     const void *, const void *),
                       const void *a, const void *b, const void *c)
{
	WAIT_BEGIN(w);
	int err = submit(sf, w, a, b, c);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	waiter_unref(w);
	return err;
}

int ferry__sftp_open_wait(ferry__sftp *sf, const char *path, uint32_t pflags,
                          const ferry__sftp_attrs *attrs,
                          ferry__sftp_handle *out)
{
	const char *op = "open";
	WAIT_BEGIN(w);
	int err = ferry__sftp_open(sf, path, pflags, attrs, wait_cb, w);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	if (!err)
		*out = w->handle;
	waiter_unref(w);
	return err;
}

int ferry__sftp_opendir_wait(ferry__sftp *sf, const char *path,
                             ferry__sftp_handle *out)
{
	const char *op = "opendir";
	WAIT_BEGIN(w);
	int err = ferry__sftp_opendir(sf, path, wait_cb, w);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	if (!err)
		*out = w->handle;
	waiter_unref(w);
	return err;
}

static int sub_close(ferry__sftp *sf, waiter *w, const void *a, const void *b,
                     const void *c)
{
	(void)b;
	(void)c;
	return ferry__sftp_close(sf, a, wait_cb, w);
}

int ferry__sftp_close_wait(ferry__sftp *sf, const ferry__sftp_handle *h)
{
	return status_call(sf, "close", NULL, sub_close, h, NULL, NULL);
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

static int attrs_call(ferry__sftp *sf, const char *op, const char *path,
                      const ferry__sftp_handle *h, ferry__sftp_attrs *out)
{
	WAIT_BEGIN(w);
	int err;
	if (h)
		err = ferry__sftp_fstat(sf, h, wait_cb, w);
	else if (!strcmp(op, "stat"))
		err = ferry__sftp_stat(sf, path, wait_cb, w);
	else
		err = ferry__sftp_lstat(sf, path, wait_cb, w);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	if (!err)
		*out = w->attrs;
	waiter_unref(w);
	return err;
}

int ferry__sftp_stat_wait(ferry__sftp *sf, const char *path,
                          ferry__sftp_attrs *out)
{
	return attrs_call(sf, "stat", path, NULL, out);
}

int ferry__sftp_lstat_wait(ferry__sftp *sf, const char *path,
                           ferry__sftp_attrs *out)
{
	return attrs_call(sf, "lstat", path, NULL, out);
}

int ferry__sftp_fstat_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                           ferry__sftp_attrs *out)
{
	return attrs_call(sf, "fstat", NULL, h, out);
}

static int sub_setstat(ferry__sftp *sf, waiter *w, const void *a, const void *b,
                       const void *c)
{
	(void)c;
	return ferry__sftp_setstat(sf, a, b, wait_cb, w);
}

static int sub_lsetstat(ferry__sftp *sf, waiter *w, const void *a,
                        const void *b, const void *c)
{
	(void)c;
	return ferry__sftp_lsetstat(sf, a, b, wait_cb, w);
}

static int sub_fsetstat(ferry__sftp *sf, waiter *w, const void *a,
                        const void *b, const void *c)
{
	(void)c;
	return ferry__sftp_fsetstat(sf, a, b, wait_cb, w);
}

int ferry__sftp_setstat_wait(ferry__sftp *sf, const char *path,
                             const ferry__sftp_attrs *a)
{
	return status_call(sf, "setstat", path, sub_setstat, path, a, NULL);
}

int ferry__sftp_lsetstat_wait(ferry__sftp *sf, const char *path,
                              const ferry__sftp_attrs *a)
{
	return status_call(sf, "lsetstat", path, sub_lsetstat, path, a, NULL);
}

int ferry__sftp_fsetstat_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                              const ferry__sftp_attrs *a)
{
	return status_call(sf, "fsetstat", NULL, sub_fsetstat, h, a, NULL);
}

static int sub_remove(ferry__sftp *sf, waiter *w, const void *a, const void *b,
                      const void *c)
{
	(void)b;
	(void)c;
	return ferry__sftp_remove(sf, a, wait_cb, w);
}

static int sub_mkdir(ferry__sftp *sf, waiter *w, const void *a, const void *b,
                     const void *c)
{
	(void)c;
	return ferry__sftp_mkdir(sf, a, b, wait_cb, w);
}

static int sub_rmdir(ferry__sftp *sf, waiter *w, const void *a, const void *b,
                     const void *c)
{
	(void)b;
	(void)c;
	return ferry__sftp_rmdir(sf, a, wait_cb, w);
}

int ferry__sftp_remove_wait(ferry__sftp *sf, const char *path)
{
	return status_call(sf, "remove", path, sub_remove, path, NULL, NULL);
}

int ferry__sftp_mkdir_wait(ferry__sftp *sf, const char *path,
                           const ferry__sftp_attrs *a)
{
	return status_call(sf, "mkdir", path, sub_mkdir, path, a, NULL);
}

int ferry__sftp_rmdir_wait(ferry__sftp *sf, const char *path)
{
	return status_call(sf, "rmdir", path, sub_rmdir, path, NULL, NULL);
}

static int name_call(ferry__sftp *sf, const char *op, const char *path,
                     char **out)
{
	WAIT_BEGIN(w);
	int err = !strcmp(op, "realpath")
	                  ? ferry__sftp_realpath(sf, path, wait_cb, w)
	                  : ferry__sftp_readlink(sf, path, wait_cb, w);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	if (!err) {
		*out = w->str;
		w->str = NULL;
	}
	waiter_unref(w);
	return err;
}

int ferry__sftp_realpath_wait(ferry__sftp *sf, const char *path, char **out)
{
	return name_call(sf, "realpath", path, out);
}

int ferry__sftp_readlink_wait(ferry__sftp *sf, const char *path, char **out)
{
	return name_call(sf, "readlink", path, out);
}

static int sub_rename(ferry__sftp *sf, waiter *w, const void *a, const void *b,
                      const void *c)
{
	(void)c;
	return ferry__sftp_rename(sf, a, b, wait_cb, w);
}

static int sub_posix_rename(ferry__sftp *sf, waiter *w, const void *a,
                            const void *b, const void *c)
{
	(void)c;
	return ferry__sftp_posix_rename(sf, a, b, wait_cb, w);
}

static int sub_symlink(ferry__sftp *sf, waiter *w, const void *a, const void *b,
                       const void *c)
{
	(void)c;
	return ferry__sftp_symlink(sf, a, b, wait_cb, w);
}

static int sub_hardlink(ferry__sftp *sf, waiter *w, const void *a,
                        const void *b, const void *c)
{
	(void)c;
	return ferry__sftp_hardlink(sf, a, b, wait_cb, w);
}

static int sub_fsync(ferry__sftp *sf, waiter *w, const void *a, const void *b,
                     const void *c)
{
	(void)b;
	(void)c;
	return ferry__sftp_fsync(sf, a, wait_cb, w);
}

int ferry__sftp_rename_wait(ferry__sftp *sf, const char *from, const char *to)
{
	return status_call(sf, "rename", from, sub_rename, from, to, NULL);
}

int ferry__sftp_posix_rename_wait(ferry__sftp *sf, const char *from,
                                  const char *to)
{
	return status_call(sf, "posix-rename", from, sub_posix_rename, from, to,
	                   NULL);
}

int ferry__sftp_symlink_wait(ferry__sftp *sf, const char *linkpath,
                             const char *target)
{
	return status_call(sf, "symlink", linkpath, sub_symlink, linkpath,
	                   target, NULL);
}

int ferry__sftp_hardlink_wait(ferry__sftp *sf, const char *oldpath,
                              const char *newpath)
{
	return status_call(sf, "hardlink", newpath, sub_hardlink, oldpath,
	                   newpath, NULL);
}

int ferry__sftp_fsync_wait(ferry__sftp *sf, const ferry__sftp_handle *h)
{
	return status_call(sf, "fsync", NULL, sub_fsync, h, NULL, NULL);
}

int ferry__sftp_statvfs_wait(ferry__sftp *sf, const char *path,
                             ferry__sftp_vfs_info *out)
{
	const char *op = "statvfs";
	WAIT_BEGIN(w);
	int err = ferry__sftp_statvfs(sf, path, wait_cb, w);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	if (!err)
		*out = w->vfs;
	waiter_unref(w);
	return err;
}

int ferry__sftp_copy_data_wait(ferry__sftp *sf, const ferry__sftp_handle *rh,
                               uint64_t roff, uint64_t len,
                               const ferry__sftp_handle *wh, uint64_t woff)
{
	const char *op = "copy-data", *path = NULL;
	WAIT_BEGIN(w);
	int err =
	        ferry__sftp_copy_data(sf, rh, roff, len, wh, woff, wait_cb, w);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	waiter_unref(w);
	return err;
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

int ferry__sftp_list_wait(ferry__sftp *sf, const char *path,
                          ferry__sftp_dirent **out, size_t *n)
{
	const char *op = NULL; /* the job's text names the step */
	*out = NULL;
	*n = 0;
	WAIT_BEGIN(w);
	int err = ferry__sftp_list(sf, path, list_wait_cb, w);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	if (!err) {
		*out = w->ents;
		*n = w->nents;
		w->ents = NULL;
		w->nents = 0;
	}
	waiter_unref(w);
	return err;
}

static void small_wait_cb(void *ctx, int err, const char *msg,
                          const uint8_t *data, size_t len, int truncated)
{
	waiter *w = ctx;
	(void)truncated;
	w->pending--;
	if (err) {
		w_error(w, err, msg);
	} else if (!w->small) {
		w->small = ferry__malloc(len + 1);
		if (!w->small) {
			w_error(w, FERRY_ENOMEM, "out of memory");
		} else {
			if (len)
				memcpy(w->small, data, len);
			w->small[len] = 0;
			w->small_len = len;
		}
	}
	waiter_unref(w);
}

int ferry__sftp_read_small_wait(ferry__sftp *sf, const char *path, uint32_t max,
                                char **out, size_t *len)
{
	const char *op = NULL;
	*out = NULL;
	*len = 0;
	WAIT_BEGIN(w);
	int err = ferry__sftp_read_small(sf, path, max, small_wait_cb, w);
	if (!err)
		owe(w);
	err = finish(sf, w, err, op, path);
	if (!err) {
		*out = (char *)w->small;
		*len = w->small_len;
		w->small = NULL;
	}
	waiter_unref(w);
	return err;
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
