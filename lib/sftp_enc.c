/* sftp_enc.c - the request encoders: one function per SFTP request (and
 * per OpenSSH extension), each encoding its packet and handing it to the
 * engine's queue (ferry__sftp__submit, lib/sftp.c).  See sftp.h. */
#include <string.h>

#include "alloc.h"
#include "sftp.h"
#include "sftp_int.h"

#define MAX_PATH_BYTES 65536u

/* The writers below keep the first failure in e->b (its sticky error),
 * which ferry__sftp__submit reports. */
static void enc_begin(ferry__sftp *sf, ferry__sftp_enc *e, uint8_t type)
{
	ferry__buf_init(&e->b);
	e->id = sf->next_id;
	e->subj_off = e->subj_len = 0;
	ferry__buf_put_u32(&e->b, 0);
	ferry__buf_put_u8(&e->b, type);
	ferry__buf_put_u32(&e->b, e->id);
}

/* An extended request (ext) or a plain one (type). */
static void enc_start(ferry__sftp *sf, ferry__sftp_enc *e, uint8_t type,
                      const char *ext)
{
	enc_begin(sf, e, ext ? FERRY__FXP_EXTENDED : type);
	if (ext)
		ferry__buf_put_cstring(&e->b, ext);
}

static void put_path(ferry__sftp_enc *e, const char *path, int subject)
{
	size_t n = strlen(path);
	if (n > MAX_PATH_BYTES) {
		ferry__buf_fail(&e->b, FERRY_EINVALID);
		return;
	}
	if (subject) {
		e->subj_off = (uint32_t)e->b.len + 4;
		e->subj_len = (uint32_t)n;
	}
	ferry__buf_put_string(&e->b, path, n);
}

static void put_handle(ferry__sftp_enc *e, const ferry__sftp_handle *h)
{
	if (!h || h->len > FERRY__SFTP_HANDLE_MAX)
		ferry__buf_fail(&e->b, FERRY_EINVALID);
	else
		ferry__buf_put_string(&e->b, h->data, h->len);
}

/* An extension: absent (or ignored) once VERSION is known; before that
 * the server decides (it answers OP_UNSUPPORTED). */
static int ext_ok(const ferry__sftp *sf, unsigned bit)
{
	if (sf->opts.ignore_ext & bit)
		return 0;
	if (sf->state == SFTP_READY)
		return (sf->ext & bit) != 0;
	return 1;
}

static int lacks(ferry__sftp *sf, const char *name)
{
	return ferry__sftp_seterr(sf, FERRY_EUNSUPPORTED,
	                          "SFTP: the server lacks %s", name);
}

static int path_req(ferry__sftp *sf, uint8_t type, const char *path,
                    unsigned flags, size_t reply_cost, ferry__sftp_cb cb,
                    void *ctx)
{
	ferry__sftp_enc e;
	if (!path)
		return FERRY_EINVALID;
	enc_begin(sf, &e, type);
	put_path(&e, path, (flags & REQF_CREATE) != 0);
	return ferry__sftp__submit(sf, &e, type, 0, flags, reply_cost, 0, cb,
	                           ctx);
}

static int handle_req(ferry__sftp *sf, uint8_t type,
                      const ferry__sftp_handle *h, unsigned flags,
                      size_t reply_cost, ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_enc e;
	enc_begin(sf, &e, type);
	put_handle(&e, h);
	return ferry__sftp__submit(sf, &e, type, 0, flags | REQF_HANDLE,
	                           reply_cost, 0, cb, ctx);
}

int ferry__sftp_open(ferry__sftp *sf, const char *path, uint32_t pflags,
                     const ferry__sftp_attrs *attrs, ferry__sftp_cb cb,
                     void *ctx)
{
	ferry__sftp_enc e;
	unsigned flags = REQF_SLOT;
	if (!path)
		return FERRY_EINVALID;
	if ((pflags & (FERRY__FXF_CREAT | FERRY__FXF_EXCL)) ==
	    (FERRY__FXF_CREAT | FERRY__FXF_EXCL))
		flags |= REQF_CREATE;
	enc_begin(sf, &e, FERRY__FXP_OPEN);
	put_path(&e, path, 1);
	ferry__buf_put_u32(&e.b, pflags);
	ferry__sftp_put_attrs(&e.b, attrs);
	return ferry__sftp__submit(sf, &e, FERRY__FXP_OPEN, 0, flags, 64, 0, cb,
	                           ctx);
}

int ferry__sftp_close(ferry__sftp *sf, const ferry__sftp_handle *h,
                      ferry__sftp_cb cb, void *ctx)
{
	return handle_req(sf, FERRY__FXP_CLOSE, h, REQF_CLOSE, 64, cb, ctx);
}

int ferry__sftp_read(ferry__sftp *sf, const ferry__sftp_handle *h, uint64_t off,
                     uint32_t len, ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_enc e;
	if (len > sf->limits.max_read)
		return FERRY_EINVALID;
	enc_begin(sf, &e, FERRY__FXP_READ);
	put_handle(&e, h);
	ferry__buf_put_u64(&e.b, off);
	ferry__buf_put_u32(&e.b, len);
	return ferry__sftp__submit(sf, &e, FERRY__FXP_READ, 0, REQF_HANDLE,
	                           (size_t)len + 64, len, cb, ctx);
}

int ferry__sftp_write(ferry__sftp *sf, const ferry__sftp_handle *h,
                      uint64_t off, const void *data, size_t len,
                      ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_enc e;
	if (len > sf->limits.max_write || (len && !data))
		return FERRY_EINVALID;
	enc_begin(sf, &e, FERRY__FXP_WRITE);
	put_handle(&e, h);
	ferry__buf_put_u64(&e.b, off);
	ferry__buf_put_string(&e.b, data, len);
	return ferry__sftp__submit(sf, &e, FERRY__FXP_WRITE, 0, REQF_HANDLE, 64,
	                           (uint32_t)len, cb, ctx);
}

int ferry__sftp_lstat(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                      void *ctx)
{
	return path_req(sf, FERRY__FXP_LSTAT, path, 0, 128, cb, ctx);
}

int ferry__sftp_stat(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                     void *ctx)
{
	return path_req(sf, FERRY__FXP_STAT, path, 0, 128, cb, ctx);
}

int ferry__sftp_fstat(ferry__sftp *sf, const ferry__sftp_handle *h,
                      ferry__sftp_cb cb, void *ctx)
{
	return handle_req(sf, FERRY__FXP_FSTAT, h, 0, 128, cb, ctx);
}

static int attrs_req(ferry__sftp *sf, uint8_t type, const char *ext,
                     const char *path, const ferry__sftp_handle *h,
                     const ferry__sftp_attrs *a, ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_enc e;
	if (!a || (!path && !h))
		return FERRY_EINVALID;
	enc_start(sf, &e, type, ext);
	if (path)
		put_path(&e, path, 0);
	else
		put_handle(&e, h);
	ferry__sftp_put_attrs(&e.b, a);
	return ferry__sftp__submit(sf, &e, type, ext ? FERRY__XK_STATUS : 0,
	                           h ? REQF_HANDLE : 0, 64, 0, cb, ctx);
}

int ferry__sftp_setstat(ferry__sftp *sf, const char *path,
                        const ferry__sftp_attrs *a, ferry__sftp_cb cb,
                        void *ctx)
{
	return attrs_req(sf, FERRY__FXP_SETSTAT, NULL, path, NULL, a, cb, ctx);
}

int ferry__sftp_fsetstat(ferry__sftp *sf, const ferry__sftp_handle *h,
                         const ferry__sftp_attrs *a, ferry__sftp_cb cb,
                         void *ctx)
{
	if (!h)
		return FERRY_EINVALID;
	return attrs_req(sf, FERRY__FXP_FSETSTAT, NULL, NULL, h, a, cb, ctx);
}

int ferry__sftp_lsetstat(ferry__sftp *sf, const char *path,
                         const ferry__sftp_attrs *a, ferry__sftp_cb cb,
                         void *ctx)
{
	if (!ext_ok(sf, FERRY__EXT_LSETSTAT))
		return lacks(sf, "lsetstat@openssh.com");
	if (!path)
		return FERRY_EINVALID;
	return attrs_req(sf, FERRY__FXP_EXTENDED, "lsetstat@openssh.com", path,
	                 NULL, a, cb, ctx);
}

int ferry__sftp_opendir(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                        void *ctx)
{
	return path_req(sf, FERRY__FXP_OPENDIR, path, REQF_SLOT, 64, cb, ctx);
}

int ferry__sftp_readdir(ferry__sftp *sf, const ferry__sftp_handle *h,
                        ferry__sftp_cb cb, void *ctx)
{
	return handle_req(sf, FERRY__FXP_READDIR, h, 0, 8192, cb, ctx);
}

int ferry__sftp_remove(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                       void *ctx)
{
	return path_req(sf, FERRY__FXP_REMOVE, path, 0, 64, cb, ctx);
}

int ferry__sftp_mkdir(ferry__sftp *sf, const char *path,
                      const ferry__sftp_attrs *a, ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_enc e;
	if (!path)
		return FERRY_EINVALID;
	enc_begin(sf, &e, FERRY__FXP_MKDIR);
	put_path(&e, path, 1);
	ferry__sftp_put_attrs(&e.b, a);
	return ferry__sftp__submit(sf, &e, FERRY__FXP_MKDIR, 0, REQF_CREATE, 64,
	                           0, cb, ctx);
}

int ferry__sftp_rmdir(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                      void *ctx)
{
	return path_req(sf, FERRY__FXP_RMDIR, path, 0, 64, cb, ctx);
}

int ferry__sftp_realpath(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                         void *ctx)
{
	return path_req(sf, FERRY__FXP_REALPATH, path, 0, 8192, cb, ctx);
}

int ferry__sftp_readlink(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                         void *ctx)
{
	return path_req(sf, FERRY__FXP_READLINK, path, 0, 8192, cb, ctx);
}

/* Two paths; with create set, the one that is created is the subject: b,
 * or a when a_created. */
static int two_paths(ferry__sftp *sf, uint8_t type, const char *ext,
                     const char *a, const char *b, int a_created,
                     unsigned flags, ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_enc e;
	int create = (flags & REQF_CREATE) != 0;
	if (!a || !b)
		return FERRY_EINVALID;
	enc_start(sf, &e, type, ext);
	put_path(&e, a, create && a_created);
	put_path(&e, b, create && !a_created);
	return ferry__sftp__submit(sf, &e, type, ext ? FERRY__XK_STATUS : 0,
	                           flags, 64, 0, cb, ctx);
}

int ferry__sftp_rename(ferry__sftp *sf, const char *from, const char *to,
                       ferry__sftp_cb cb, void *ctx)
{
	return two_paths(sf, FERRY__FXP_RENAME, NULL, from, to, 0, REQF_CREATE,
	                 cb, ctx);
}

int ferry__sftp_posix_rename(ferry__sftp *sf, const char *from, const char *to,
                             ferry__sftp_cb cb, void *ctx)
{
	if (!ext_ok(sf, FERRY__EXT_POSIX_RENAME))
		return lacks(sf, "posix-rename@openssh.com");
	return two_paths(sf, FERRY__FXP_EXTENDED, "posix-rename@openssh.com",
	                 from, to, 0, 0, cb, ctx);
}

int ferry__sftp_rename_replace(ferry__sftp *sf, const char *from,
                               const char *to, int *fallback, ferry__sftp_cb cb,
                               void *ctx)
{
	int error;
	if (fallback)
		*fallback = 0;
	if (ext_ok(sf, FERRY__EXT_POSIX_RENAME))
		return ferry__sftp_posix_rename(sf, from, to, cb, ctx);
	if (!from || !to)
		return FERRY_EINVALID;
	/* Not atomic: for a moment "to" does not exist. */
	if ((error = ferry__sftp_remove(sf, to, NULL, NULL)))
		return error;
	if (fallback)
		*fallback = 1;
	return ferry__sftp_rename(sf, from, to, cb, ctx);
}

int ferry__sftp_symlink(ferry__sftp *sf, const char *linkpath,
                        const char *target, ferry__sftp_cb cb, void *ctx)
{
	/* OpenSSH reads (target, linkpath), draft-02 the reverse. */
	if (sf->symlink_order == FERRY__SYMLINK_LINK_FIRST)
		return two_paths(sf, FERRY__FXP_SYMLINK, NULL, linkpath, target,
		                 1, REQF_CREATE, cb, ctx);
	if (sf->symlink_order == FERRY__SYMLINK_TARGET_FIRST)
		return two_paths(sf, FERRY__FXP_SYMLINK, NULL, target, linkpath,
		                 0, REQF_CREATE, cb, ctx);
	return ferry__sftp_seterr(sf, FERRY_EUNSUPPORTED,
	                          "SFTP: the server's SYMLINK argument order "
	                          "is not known (%s)",
	                          sf->symlink_order ? sf->symlink_msg
	                                            : "not probed");
}

int ferry__sftp__symlink_raw(ferry__sftp *sf, const char *first,
                             const char *second, ferry__sftp_cb cb, void *ctx)
{
	return two_paths(sf, FERRY__FXP_SYMLINK, NULL, first, second, 0, 0, cb,
	                 ctx);
}

int ferry__sftp_hardlink(ferry__sftp *sf, const char *oldpath,
                         const char *newpath, ferry__sftp_cb cb, void *ctx)
{
	if (!ext_ok(sf, FERRY__EXT_HARDLINK))
		return lacks(sf, "hardlink@openssh.com");
	return two_paths(sf, FERRY__FXP_EXTENDED, "hardlink@openssh.com",
	                 oldpath, newpath, 0, REQF_CREATE, cb, ctx);
}

static int handle_ext(ferry__sftp *sf, const char *name, int kind,
                      const ferry__sftp_handle *h, ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_enc e;
	enc_start(sf, &e, FERRY__FXP_EXTENDED, name);
	put_handle(&e, h);
	return ferry__sftp__submit(sf, &e, FERRY__FXP_EXTENDED, kind,
	                           REQF_HANDLE, 128, 0, cb, ctx);
}

int ferry__sftp_fsync(ferry__sftp *sf, const ferry__sftp_handle *h,
                      ferry__sftp_cb cb, void *ctx)
{
	if (!ext_ok(sf, FERRY__EXT_FSYNC))
		return lacks(sf, "fsync@openssh.com");
	return handle_ext(sf, "fsync@openssh.com", FERRY__XK_STATUS, h, cb,
	                  ctx);
}

int ferry__sftp_statvfs(ferry__sftp *sf, const char *path, ferry__sftp_cb cb,
                        void *ctx)
{
	ferry__sftp_enc e;
	if (!ext_ok(sf, FERRY__EXT_STATVFS))
		return lacks(sf, "statvfs@openssh.com");
	if (!path)
		return FERRY_EINVALID;
	enc_start(sf, &e, FERRY__FXP_EXTENDED, "statvfs@openssh.com");
	put_path(&e, path, 0);
	return ferry__sftp__submit(sf, &e, FERRY__FXP_EXTENDED,
	                           FERRY__XK_STATVFS, 0, 128, 0, cb, ctx);
}

int ferry__sftp_fstatvfs(ferry__sftp *sf, const ferry__sftp_handle *h,
                         ferry__sftp_cb cb, void *ctx)
{
	if (!ext_ok(sf, FERRY__EXT_FSTATVFS))
		return lacks(sf, "fstatvfs@openssh.com");
	return handle_ext(sf, "fstatvfs@openssh.com", FERRY__XK_STATVFS, h, cb,
	                  ctx);
}

int ferry__sftp_copy_data(ferry__sftp *sf, const ferry__sftp_handle *rh,
                          uint64_t roff, uint64_t len,
                          const ferry__sftp_handle *wh, uint64_t woff,
                          ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_enc e;
	if (!ext_ok(sf, FERRY__EXT_COPY_DATA))
		return lacks(sf, "copy-data");
	enc_start(sf, &e, FERRY__FXP_EXTENDED, "copy-data");
	put_handle(&e, rh);
	ferry__buf_put_u64(&e.b, roff);
	ferry__buf_put_u64(&e.b, len);
	put_handle(&e, wh);
	ferry__buf_put_u64(&e.b, woff);
	return ferry__sftp__submit(sf, &e, FERRY__FXP_EXTENDED,
	                           FERRY__XK_STATUS, REQF_HANDLE, 64, 0, cb,
	                           ctx);
}

int ferry__sftp_limits(ferry__sftp *sf, ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_enc e;
	if (!ext_ok(sf, FERRY__EXT_LIMITS))
		return lacks(sf, "limits@openssh.com");
	enc_start(sf, &e, FERRY__FXP_EXTENDED, "limits@openssh.com");
	return ferry__sftp__submit(sf, &e, FERRY__FXP_EXTENDED,
	                           FERRY__XK_LIMITS, 0, 64, 0, cb, ctx);
}
