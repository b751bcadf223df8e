#include "sync/lwrite.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "ferry.h"
#include "sync/ltree.h"
#include "sync/path.h"
#include "sync/remote.h"

/* Bytes of data copied and not yet written: beyond this the caller waits
 * (a fast network and a slow disk must not fill the memory). */
#define QUEUE_BYTES_MAX ((size_t)32 << 20)

enum { OP_MKDIR, OP_CREATE, OP_DATA, OP_COMMIT, OP_ABORT };

typedef struct op {
	struct op *next;
	int kind;
	ferry__lwfile *f; /* NULL for OP_MKDIR */
	uint64_t off;
	size_t n;         /* data bytes, or the path's length */
	uint32_t mode;    /* OP_MKDIR */
	unsigned char *p; /* data, or the path; in the same allocation */
} op;

struct ferry__lwfile {
	op create, end; /* the first and the last op, never allocated */
	/* The caller's thread's: the files not reaped. */
	ferry__lwfile *prev, *next;
	ferry__lwfile *done_next; /* under the lock */
	char *path;
	size_t path_len;
	char *temp; /* its base name; NULL once renamed or removed */
	uint32_t mode;
	int set_mtime, flush;
	int64_t mtime_s;
	void *ctx;
	/* The writer's, read by the caller once the file is over. */
	int dirfd, fd;
	int err;
	char msg[600];
	atomic_int aerr; /* err, for ferry__lw_data meanwhile */
};

struct ferry__lw {
	int root;
	ferry__ldir *dc; /* the writer's own */
	pthread_mutex_t mu;
	pthread_cond_t work; /* the writer waits for ops */
	pthread_cond_t over; /* the caller waits for files, or room */
	op *head, **tail;
	size_t queued_bytes;
	size_t ending; /* files whose last op is queued */
	size_t inq;    /* ops queued or being done */
	ferry__lwfile *done_head, **done_tail;
	int quit, started, inline_only;
	pthread_t th;
	atomic_int full;
	ferry__lwfile *files; /* not reaped (the caller's) */
};

/* ---- the writer's side ---- */

static void set_err(ferry__lw *w, ferry__lwfile *f, const char *what)
{
	int e = errno;
	if (f->err)
		return;
	f->err = ferry__errno_code(e);
	/* strerror: static strings for known codes (glibc >= 2.32, musl). */
	snprintf(f->msg, sizeof(f->msg), "%s: %s", what, strerror(e));
	atomic_store(&f->aerr, f->err);
	if (e == ENOSPC || e == EDQUOT)
		atomic_store(&w->full, 1);
}

static void do_create(ferry__lw *w, ferry__lwfile *f)
{
	size_t dl = ferry__path_dirlen(f->path, f->path_len);
	int fd = ferry__ldir_get(w->dc, f->path, dl);
	if (fd < 0) {
		set_err(w, f, "cannot open its local directory");
		return;
	}
	f->dirfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (f->dirfd < 0) {
		set_err(w, f, "cannot open its local directory");
		return;
	}
	/* Created with the final mode (the umask may only take bits
	 * away): an owner-only file is never readable by others. */
	f->fd = openat(f->dirfd, f->temp,
	               O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	               f->mode & 0777);
	if (f->fd < 0) {
		set_err(w, f, "cannot create the local file");
		ferry__free(f->temp); /* not ours to remove */
		f->temp = NULL;
	}
}

static void do_data(ferry__lw *w, ferry__lwfile *f, const op *o)
{
	for (size_t done = 0; !f->err && f->fd >= 0 && done < o->n;) {
		ssize_t k = pwrite(f->fd, o->p + done, o->n - done,
		                   (off_t)(o->off + done));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k == 0)
				errno = EIO;
			set_err(w, f, "writing the local file");
			return;
		}
		done += (size_t)k;
	}
}

/* The content in the temporary file: flushed, mode and mtime, renamed
 * over the name. */
static void do_commit(ferry__lw *w, ferry__lwfile *f)
{
	if (f->err || f->fd < 0)
		return;
	struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t)f->mtime_s, 0}};
	if (f->flush && fsync(f->fd) < 0)
		set_err(w, f, "flushing the local file");
	else if (fchmod(f->fd, f->mode & 0777) < 0)
		set_err(w, f, "setting the mode");
	else if (f->set_mtime && futimens(f->fd, ts) < 0)
		set_err(w, f, "setting the mtime");
	int cfd = f->fd;
	f->fd = -1;
	if (close(cfd) < 0)
		set_err(w, f, "writing the local file");
	if (f->err)
		return;
	size_t dl = ferry__path_dirlen(f->path, f->path_len);
	const char *name = f->path + (dl ? dl + 1 : 0);
	if (renameat(f->dirfd, f->temp, f->dirfd, name) < 0) {
		set_err(w, f, "cannot put the file in place");
		return;
	}
	ferry__free(f->temp);
	f->temp = NULL; /* renamed: nothing to remove */
}

/* Whatever the file still holds: its descriptors, its temporary. */
static void file_close(ferry__lwfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->temp && f->dirfd >= 0)
		(void)unlinkat(f->dirfd, f->temp, 0);
	ferry__free(f->temp);
	f->temp = NULL;
	if (f->dirfd >= 0)
		close(f->dirfd);
	f->dirfd = -1;
}

static void do_mkdir(ferry__lw *w, const op *o)
{
	const char *path = (const char *)o->p;
	size_t dl = ferry__path_dirlen(path, o->n);
	int fd = ferry__ldir_get(w->dc, path, dl);
	if (fd >= 0)
		(void)ferry__lmkdir(fd, path + (dl ? dl + 1 : 0), o->mode);
}

static void process(ferry__lw *w, op *o)
{
	ferry__lwfile *f = o->f;
	int kind = o->kind;
	size_t n = o->n;
	switch (kind) {
	case OP_MKDIR:
		do_mkdir(w, o);
		break;
	case OP_CREATE:
		do_create(w, f);
		break;
	case OP_DATA:
		do_data(w, f, o);
		break;
	default:
		if (kind == OP_COMMIT)
			do_commit(w, f);
		file_close(f);
		break;
	}
	if (kind == OP_MKDIR || kind == OP_DATA)
		ferry__free(o); /* free() only: nothing counted */
	pthread_mutex_lock(&w->mu);
	w->inq--;
	if (kind == OP_DATA)
		w->queued_bytes -= n;
	if (kind == OP_COMMIT || kind == OP_ABORT) {
		/* f is the caller's from here on. */
		w->ending--;
		f->done_next = NULL;
		*w->done_tail = f;
		w->done_tail = &f->done_next;
	}
	if (kind != OP_CREATE || !w->inq)
		pthread_cond_broadcast(&w->over);
	pthread_mutex_unlock(&w->mu);
}

static void *writer_main(void *arg)
{
	ferry__lw *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->head && !w->quit)
			pthread_cond_wait(&w->work, &w->mu);
		op *batch = w->head;
		if (!batch)
			break;
		w->head = NULL;
		w->tail = &w->head;
		pthread_mutex_unlock(&w->mu);
		while (batch) {
			op *o = batch;
			batch = o->next;
			process(w, o);
		}
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* ---- the caller's side ---- */

static void start(ferry__lw *w)
{
	sigset_t all, old;
	/* Signals stay with the caller's thread (ferry_interrupt's). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	w->started = pthread_create(&w->th, NULL, writer_main, w) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	w->inline_only = !w->started;
}

static void enqueue(ferry__lw *w, op *o)
{
	if (!w->started && !w->inline_only)
		start(w);
	o->next = NULL;
	pthread_mutex_lock(&w->mu);
	w->inq++;
	if (o->kind == OP_COMMIT || o->kind == OP_ABORT)
		w->ending++;
	if (w->started) {
		*w->tail = o;
		w->tail = &o->next;
		pthread_cond_signal(&w->work);
	} else if (o->kind == OP_DATA) {
		w->queued_bytes += o->n; /* as ferry__lw_data does */
	}
	pthread_mutex_unlock(&w->mu);
	if (!w->started)
		process(w, o);
}

ferry__lw *ferry__lw_new(int rootfd)
{
	ferry__lw *w = ferry__calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	if (!(w->dc = ferry__ldir_new(rootfd))) {
		ferry__free(w);
		return NULL;
	}
	w->root = rootfd;
	w->tail = &w->head;
	w->done_tail = &w->done_head;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->over, NULL);
	return w;
}

static void unlink_file(ferry__lw *w, ferry__lwfile *f)
{
	if (f->prev)
		f->prev->next = f->next;
	else
		w->files = f->next;
	if (f->next)
		f->next->prev = f->prev;
}

void ferry__lw_free(ferry__lw *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->mu);
		w->quit = 1;
		pthread_cond_signal(&w->work);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->th, NULL);
	}
	while (w->files) {
		ferry__lwfile *f = w->files;
		unlink_file(w, f);
		file_close(f); /* never ended: its temporary goes */
		ferry__free(f->path);
		ferry__free(f);
	}
	ferry__ldir_free(w->dc);
	pthread_cond_destroy(&w->over);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->mu);
	ferry__free(w);
}

int ferry__lw_mkdir(ferry__lw *w, const char *path, size_t n, uint32_t mode)
{
	op *o = ferry__malloc(sizeof(*o) + n + 1);
	if (!o)
		return FERRY_ENOMEM;
	memset(o, 0, sizeof(*o));
	o->kind = OP_MKDIR;
	o->p = (unsigned char *)(o + 1);
	memcpy(o->p, path, n);
	o->p[n] = '\0';
	o->n = n;
	o->mode = mode;
	enqueue(w, o);
	return 0;
}

ferry__lwfile *ferry__lw_create(ferry__lw *w, const ferry__lwfile_opts *fo)
{
	size_t dl = ferry__path_dirlen(fo->path, fo->path_len);
	const char *name = fo->path + (dl ? dl + 1 : 0);
	ferry__lwfile *f = ferry__calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->path = ferry__strndup(fo->path, fo->path_len);
	f->temp = ferry__temp_name(name,
	                           fo->path_len - (size_t)(name - fo->path));
	if (!f->path || !f->temp) {
		ferry__free(f->path);
		ferry__free(f->temp);
		ferry__free(f);
		return NULL;
	}
	f->path_len = fo->path_len;
	f->mode = fo->mode;
	f->set_mtime = fo->set_mtime;
	f->mtime_s = fo->mtime_s;
	f->flush = fo->flush;
	f->ctx = fo->ctx;
	f->dirfd = f->fd = -1;
	atomic_init(&f->aerr, 0);
	f->next = w->files;
	if (w->files)
		w->files->prev = f;
	w->files = f;
	f->create.kind = OP_CREATE;
	f->create.f = f;
	enqueue(w, &f->create);
	return f;
}

int ferry__lw_data(ferry__lw *w, ferry__lwfile *f, uint64_t off,
                   const uint8_t *p, size_t n)
{
	int err = atomic_load(&f->aerr);
	if (err)
		return err;
	op *o = ferry__malloc(sizeof(*o) + n);
	if (!o)
		return FERRY_ENOMEM;
	memset(o, 0, sizeof(*o));
	o->kind = OP_DATA;
	o->f = f;
	o->off = off;
	o->n = n;
	o->p = (unsigned char *)(o + 1);
	memcpy(o->p, p, n);
	if (w->started) {
		/* Waits on the local disk only, as a write of its own would. */
		pthread_mutex_lock(&w->mu);
		while (w->queued_bytes && w->queued_bytes + n > QUEUE_BYTES_MAX)
			pthread_cond_wait(&w->over, &w->mu);
		w->queued_bytes += n;
		pthread_mutex_unlock(&w->mu);
	}
	enqueue(w, o);
	return 0;
}

static void end(ferry__lw *w, ferry__lwfile *f, int kind)
{
	f->end.kind = kind;
	f->end.f = f;
	enqueue(w, &f->end);
}

void ferry__lw_commit(ferry__lw *w, ferry__lwfile *f)
{
	end(w, f, OP_COMMIT);
}

void ferry__lw_abort(ferry__lw *w, ferry__lwfile *f)
{
	end(w, f, OP_ABORT);
}

size_t ferry__lw_reap(ferry__lw *w,
                      void (*cb)(void *ctx, int err, const char *msg))
{
	pthread_mutex_lock(&w->mu);
	ferry__lwfile *f = w->done_head;
	w->done_head = NULL;
	w->done_tail = &w->done_head;
	pthread_mutex_unlock(&w->mu);
	size_t n = 0;
	while (f) {
		ferry__lwfile *next = f->done_next;
		unlink_file(w, f);
		cb(f->ctx, f->err, f->msg);
		ferry__free(f->path);
		ferry__free(f);
		f = next;
		n++;
	}
	return n;
}

void ferry__lw_wait(ferry__lw *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done_head && w->ending)
		pthread_cond_wait(&w->over, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

void ferry__lw_drain(ferry__lw *w)
{
	pthread_mutex_lock(&w->mu);
	while (w->inq)
		pthread_cond_wait(&w->over, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

int ferry__lw_full(ferry__lw *w)
{
	return atomic_load(&w->full);
}
