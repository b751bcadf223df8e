#include "sync/fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "hash.h"
#include "os.h"
#include "sync/ltree.h"
#include "sync/lwrite.h"
#include "sync/path.h"
#include "sync/report.h"

#define NS 1000000000LL

typedef struct ferry__fetch {
	const ferry__fetch_opts *o;
	ferry__fetch_result *res; /* &own until the run copies it out */
	ferry__fetch_result own;
	ferry__ldir *dc;
	/* The local writes of the files (sync/lwrite.h): the session's
	 * thread only sends and receives meanwhile. */
	ferry__lw *lw;
	size_t next;            /* next action to look at for fetching */
	size_t running, budget; /* jobs not over (descriptors), at most */
	size_t net;             /* of them, downloads in flight */
	int stopping;           /* the local disk is full: start no more */
	int cancelling;         /* the run failed: what is left is not done */
	ferry_progress prog;
} fetch;

/* One file fetched: over when its download is done and its local file
 * (wf, NULL once reaped or without one) is over. */
typedef struct fjob {
	fetch *f;
	ferry__action *a; /* NULL: its outcome was told already */
	ferry__lwfile *wf;
	ferry__hasher h;
	int rerr, lost; /* the download's error; lost: not done */
	char rmsg[FERRY_ERRMSG_SIZE];
	int settled;    /* a CHECK found equal: nothing to put in place */
	uint64_t bytes; /* given by the download */
} fjob;

int ferry__pull_wait(ferry__sftp *sf, int (*done)(void *ctx), void *ctx)
{
	for (;;) {
		ferry__sftp_stats st0, st1;
		ferry__sftp_stats_get(sf, &st0);
		int rc = ferry__sftp_run(sf, done, ctx,
		                         ferry__now_ms() + FERRY__STALL_MS);
		if (rc != FERRY_ETIMEOUT)
			return rc;
		ferry__sftp_stats_get(sf, &st1);
		if (st1.replies == st0.replies) {
			ferry__sftp_seterr(sf, FERRY_ETIMEOUT,
			                   "no reply from the server for %d s",
			                   FERRY__STALL_MS / 1000);
			return FERRY_ETIMEOUT;
		}
	}
}

static void fail(fetch *f, ferry__action *a, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void fail(fetch *f, ferry__action *a, int code, const char *fmt, ...)
{
	char msg[FERRY_ERRMSG_SIZE];
	FERRY__FORMAT(msg, fmt);
	ferry__action_fail(a, code);
	f->res->failed++;
	ferry__report_error(f->o->report, f->o->o->log, f->o->o->ctx,
	                    a->entry.path, a->entry.path_len, code, "%s", msg);
}

static void fail_errno(fetch *f, ferry__action *a, const char *what)
{
	int e = errno;
	fail(f, a, ferry__errno_code(e), "%s: %s", what, strerror(e));
}

static const char *base_of(const ferry__action *a, size_t *dl)
{
	*dl = ferry__path_dirlen(a->entry.path, a->entry.path_len);
	return a->entry.path + (*dl ? *dl + 1 : 0);
}

/* The directory holding a's path; -1 (reported) when it cannot be had. */
static int parent_fd(fetch *f, ferry__action *a, const char **name)
{
	size_t dl;
	*name = base_of(a, &dl);
	int fd = ferry__ldir_get(f->dc, a->entry.path, dl);
	if (fd < 0)
		fail_errno(f, a, "cannot open its local directory");
	return fd;
}

static int has_mtime(const ferry__action *a)
{
	return !(a->entry.flags & FERRY__ME_TIMES);
}

static void times_of(const ferry__action *a, struct timespec ts[2])
{
	ts[0].tv_sec = 0;
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_sec = (time_t)(a->entry.mtime_ns / NS);
	ts[1].tv_nsec = 0;
}

/* ---- the local steps ---- */

static void remove_temps(fetch *f)
{
	for (size_t i = 0; i < f->o->ntemps; i++) {
		const char *t = f->o->temps[i];
		size_t n = strlen(t), dl = ferry__path_dirlen(t, n);
		int fd = ferry__ldir_get(f->dc, t, dl);
		if (fd >= 0)
			(void)unlinkat(fd, t + (dl ? dl + 1 : 0), 0);
	}
}

static void do_remove(fetch *f, ferry__action *a)
{
	const char *name;
	int fd = parent_fd(f, a, &name);
	if (fd < 0)
		return;
	if (ferry__lremove(fd, name) < 0)
		fail_errno(f, a, "cannot remove what is in the way");
	else
		ferry__action_commit(a);
}

static void do_mkdir(fetch *f, ferry__action *a)
{
	const char *name;
	int fd = parent_fd(f, a, &name);
	if (fd < 0)
		return;
	if (ferry__lmkdir(fd, name, a->entry.mode) == 0)
		ferry__action_commit(a);
	else
		fail_errno(f, a, "cannot make the directory");
}

int ferry__fetch_mkdir(ferry__fetch *f, const char *path, size_t n,
                       uint32_t mode)
{
	if (!f->lw) {
		errno = EINVAL;
		return -1;
	}
	if (ferry__lw_mkdir(f->lw, path, n, mode)) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

static void do_link(fetch *f, ferry__action *a)
{
	const char *name;
	int fd = parent_fd(f, a, &name);
	if (fd < 0)
		return;
	char *t = ferry__temp_name(name, strlen(name));
	if (!t) {
		fail(f, a, FERRY_ENOMEM, "out of memory");
		return;
	}
	struct timespec ts[2];
	times_of(a, ts);
	if (symlinkat(a->link, fd, t) < 0) {
		fail_errno(f, a, "cannot make the symlink");
	} else {
		if (has_mtime(a))
			(void)utimensat(fd, t, ts, AT_SYMLINK_NOFOLLOW);
		if (renameat(fd, t, fd, name) < 0) {
			fail_errno(f, a, "cannot put the symlink in place");
			(void)unlinkat(fd, t, 0);
		} else {
			ferry__action_commit(a);
		}
	}
	ferry__free(t);
}

/* Mode and mtime of the file at a's path (never through a symlink). */
static int set_file_meta(fetch *f, ferry__action *a)
{
	const char *name;
	struct stat st;
	struct timespec ts[2];
	int dfd = parent_fd(f, a, &name);
	if (dfd < 0)
		return -1;
	int fd = openat(dfd, name,
	                O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		errno = fd >= 0 ? EINVAL : errno;
		fail_errno(f, a, "cannot open the local file");
		return -1;
	}
	times_of(a, ts);
	int rc = fchmod(fd, a->entry.mode & 0777);
	if (rc == 0 && has_mtime(a))
		rc = futimens(fd, ts);
	if (rc < 0)
		fail_errno(f, a, "cannot set its mode and mtime");
	close(fd);
	return rc;
}

static void do_delete(fetch *f, ferry__action *a)
{
	const char *name;
	int fd = parent_fd(f, a, &name);
	if (fd < 0)
		return;
	if (unlinkat(fd, name, 0) == 0 || errno == ENOENT)
		ferry__action_commit(a);
	else
		fail_errno(f, a, "cannot delete");
}

static void do_rmdir(fetch *f, ferry__action *a)
{
	const char *name;
	int fd = parent_fd(f, a, &name);
	if (fd < 0)
		return;
	if (unlinkat(fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
		ferry__action_commit(a);
	else if (errno == ENOTEMPTY || errno == EEXIST)
		ferry__report_warn(f->o->o->log, f->o->o->ctx, FERRY_LOG_WARN,
		                   a->entry.path, a->entry.path_len,
		                   "not deleted: it holds excluded entries");
	else
		fail_errno(f, a, "cannot delete the directory");
}

static void do_dirmeta(fetch *f, ferry__action *a)
{
	struct stat st;
	int fd = ferry__ldir_get(f->dc, a->entry.path, a->entry.path_len);
	if (fd < 0 || fstat(fd, &st) < 0)
		return; /* not made (reported), or gone */
	int rc = 0;
	uint32_t mode = a->entry.mode & 0777;
	if ((st.st_mode & 07777) != mode)
		rc = fchmod(fd, mode);
	struct timespec ts[2];
	times_of(a, ts);
	if (rc == 0 && has_mtime(a) &&
	    (st.st_mtim.tv_sec != ts[1].tv_sec || st.st_mtim.tv_nsec != 0))
		rc = futimens(fd, ts);
	if (rc < 0)
		fail_errno(f, a, "cannot set the directory's mode and mtime");
	else
		ferry__action_commit(a);
}

/* ---- fetching files ---- */

static void progress(fetch *f)
{
	const ferry_sync_opts *o = f->o->o;
	if (o->on_progress)
		o->on_progress(o->ctx, &f->prog);
}

static void pump(fetch *f);

static void job_free(fjob *j)
{
	fetch *f = j->f;
	ferry__free(j);
	f->running--;
}

/* Both halves of j are over (the download, and the local file): its
 * outcome.  lerr and lmsg: the local file's (the writer's), which goes
 * before the download's own error (a "write" step that said no). */
static void job_finish(fjob *j, int lerr, const char *lmsg)
{
	fetch *f = j->f;
	ferry__action *a = j->a;
	if (a && j->rerr) {
		if (lerr)
			fail(f, a, lerr, "%s", lmsg);
		else if (j->lost)
			f->res->not_done++;
		else
			fail(f, a, j->rerr, "%s", j->rmsg);
	} else if (a) {
		if (!j->settled) {
			if (lerr) {
				fail(f, a, lerr, "%s", lmsg);
			} else {
				ferry__action_commit(a);
				f->res->bytes += j->bytes;
			}
		}
		f->prog.files_done++;
		progress(f);
	}
	job_free(j);
}

static void reaped(void *ctx, int err, const char *msg)
{
	fjob *j = ctx;
	j->wf = NULL;
	job_finish(j, err, msg);
}

/* The local files over since the last look: their outcomes, and room
 * for more downloads. */
static void reap(fetch *f)
{
	if (f->lw && ferry__lw_reap(f->lw, reaped))
		pump(f);
}

static int job_opened(void *ctx)
{
	fjob *j = ctx;
	if (j->a->flags & FERRY__ACT_CHECK)
		ferry__hasher_init(&j->h);
	return 0;
}

static int job_data(void *ctx, uint64_t off, const uint8_t *p, size_t n)
{
	fjob *j = ctx;
	fetch *f = j->f;
	if (j->a->flags & FERRY__ACT_CHECK)
		ferry__hasher_update(&j->h, p, n);
	if (j->wf) {
		int rc = ferry__lw_data(f->lw, j->wf, off, p, n);
		if (rc)
			return rc; /* the writer's message says why */
	}
	f->prog.bytes_done += n;
	progress(f);
	return 0;
}

/* A CHECK whose content is the local file's: only mode (and mtime) to
 * fix, if anything. */
static void check_equal(fjob *j)
{
	ferry__action *a = j->a;
	a->flags &= ~(uint32_t)FERRY__ACT_CHECK;
	if (!(a->flags & FERRY_CHANGED_MODE)) {
		a->kind = FERRY__ACT_NONE;
		return;
	}
	a->kind = FERRY__ACT_META;
	if (j->f->o->check_only || set_file_meta(j->f, a) == 0)
		ferry__action_commit(a);
}

static void job_done(void *ctx, const ferry__sftp_download_result *r)
{
	fjob *j = ctx;
	fetch *f = j->f;
	ferry__action *a = j->a;
	f->net--;
	if (r->error) {
		j->rerr = r->error;
		j->lost = f->cancelling || ferry__sftp_dead(f->o->sf) ||
		          r->error == FERRY_EINTR;
		snprintf(j->rmsg, sizeof(j->rmsg), "%s", r->message);
	} else {
		int same = 0;
		if (a->flags & FERRY__ACT_CHECK) {
			ferry__hash h;
			ferry__hasher_final(&j->h, &h);
			same = ferry__hash_eq(&h, &a->entry.hash);
			if (!same)
				a->flags |= FERRY_CHANGED_CONTENT;
		}
		j->bytes = r->bytes;
		if (same) {
			check_equal(j);
			j->settled = 1;
		}
	}
	if (!j->wf) {
		job_finish(j, 0, "");
	} else if (j->rerr || j->settled) {
		ferry__lw_abort(f->lw, j->wf);
	} else {
		ferry__lw_commit(f->lw, j->wf);
	}
	reap(f);
	pump(f);
}

/* 1 started (running), 0 not (failed: reported, or not done). */
static int start_job(fetch *f, ferry__action *a)
{
	fjob *j = ferry__calloc(1, sizeof(*j));
	char *rp = ferry__rlist_rpath(f->o->rl, a->src, a->entry.path,
	                              a->entry.path_len);
	if (j && rp && !f->o->check_only) {
		ferry__lwfile_opts lo = {
		        .path = a->entry.path,
		        .path_len = a->entry.path_len,
		        .mode = a->entry.mode & 0777,
		        .set_mtime = has_mtime(a),
		        .mtime_s = a->entry.mtime_ns / NS,
		        /* An owner-only file is flushed before its name
		         * shows it (or every file, with fsync_all). */
		        .flush = (a->entry.mode & 077) == 0 ||
		                 f->o->o->fsync_all,
		        .ctx = j};
		/* Made now, while the OPEN is on its way. */
		j->wf = f->lw ? ferry__lw_create(f->lw, &lo) : NULL;
	}
	if (!j || !rp || (!f->o->check_only && !j->wf)) {
		ferry__free(j);
		ferry__free(rp);
		fail(f, a, FERRY_ENOMEM, "out of memory");
		return 0;
	}
	j->f = f;
	j->a = a;
	ferry__sftp_download_opts d = {.path = rp,
	                               .size = a->entry.size,
	                               .opened = job_opened,
	                               .data = job_data,
	                               .done = job_done,
	                               .ctx = j};
	f->running++;
	int rc = ferry__sftp_download(f->o->sf, &d);
	ferry__free(rp);
	if (rc) {
		if (ferry__sftp_dead(f->o->sf))
			f->res->not_done++;
		else
			fail(f, a, rc, "%s", ferry_strerror(rc));
		j->a = NULL; /* told */
		if (j->wf)
			ferry__lw_abort(f->lw, j->wf);
		else
			job_free(j);
		return 0;
	}
	f->net++;
	return 1;
}

static int wanted(const fetch *f, const ferry__action *a)
{
	return a->kind == FERRY__ACT_UPLOAD && !a->error &&
	       !(a->flags & FERRY__ACT_EARLY) &&
	       (!f->o->check_only || (a->flags & FERRY__ACT_CHECK));
}

static int can_start(fetch *f)
{
	if (f->lw && ferry__lw_full(f->lw))
		f->stopping = 1;
	return !f->stopping && !f->cancelling && !ferry__sftp_dead(f->o->sf) &&
	       f->running < f->budget;
}

int ferry__fetch_early(ferry__fetch *f, ferry__action *a)
{
	reap(f);
	if (!can_start(f))
		return 0;
	int started = start_job(f, a);
	if (started) {
		f->prog.files_total++;
		f->prog.bytes_total += a->entry.size;
	}
	return started;
}

/* Start downloads while the local descriptor budget allows. */
static void pump(fetch *f)
{
	while (can_start(f) && f->next < f->o->n) {
		ferry__action *a = &f->o->a[f->next++];
		if (wanted(f, a))
			start_job(f, a);
	}
}

/* Between passes of the loop: what the writer finished, then whether the
 * network has more to do.  Done when no download is in flight and none
 * can start now (the rest waits for the writer, or there is no more). */
static int fetch_done(void *ctx)
{
	fetch *f = ctx;
	reap(f);
	return f->net == 0 && (f->next >= f->o->n || !can_start(f) ||
	                       ferry__sftp_dead(f->o->sf));
}

/* Two descriptors per download (its file, its directory). */
static size_t fd_budget(void)
{
	struct rlimit rl;
	size_t n = 256;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		n = rl.rlim_cur > 160 ? (size_t)(rl.rlim_cur - 128) / 2 : 16;
	return n < 16 ? 16 : n > 4096 ? 4096 : n;
}

/* Until every job is over: the network's part in the loop, the rest
 * from the writer. */
static int wait_all(fetch *f)
{
	for (;;) {
		int rc = ferry__pull_wait(f->o->sf, fetch_done, f);
		if (rc || !f->running)
			return rc;
		if (!f->net) {
			/* Only local work left (or the budget waits for
			 * it): a file over, then on. */
			ferry__lw_wait(f->lw);
			if (!ferry__lw_reap(f->lw, reaped))
				return 0; /* nothing more will come */
			pump(f);
		}
	}
}

/* After a failure: what is in flight is cancelled (its temporaries
 * removed), what the writer still holds is waited for. */
static void cancel_all(fetch *f, int rc)
{
	f->cancelling = 1;
	if (f->net && !ferry__sftp_dead(f->o->sf))
		ferry__sftp_cancel_all(f->o->sf, rc);
	while (f->lw && f->running) {
		ferry__lw_wait(f->lw);
		if (!ferry__lw_reap(f->lw, reaped))
			break;
	}
}

static int run_fetches(fetch *f)
{
	const ferry__fetch_opts *o = f->o;
	for (size_t i = 0; i < o->n; i++)
		if (wanted(f, &o->a[i])) {
			f->prog.files_total++;
			f->prog.bytes_total += o->a[i].entry.size;
		}
	if (!f->prog.files_total && !f->running)
		return 0;
	pump(f);
	int rc = wait_all(f);
	if (rc)
		cancel_all(f, rc);
	for (; f->next < o->n; f->next++)
		if (wanted(f, &o->a[f->next]))
			f->res->not_done++;
	if (rc) {
		const char *m = ferry__sftp_errmsg(o->sf);
		snprintf(f->res->fatal_msg, sizeof(f->res->fatal_msg), "%s",
		         rc == FERRY_EINTR ? "interrupted"
		         : m && *m         ? m
		                           : ferry_strerror(rc));
		return rc;
	}
	if (f->stopping) {
		snprintf(
		        f->res->fatal_msg, sizeof(f->res->fatal_msg),
		        "the local disk is full: %llu file%s not pulled, "
		        "nothing torn",
		        (unsigned long long)(f->res->failed + f->res->not_done),
		        f->res->failed + f->res->not_done == 1 ? "" : "s");
		return FERRY_ENOSPACE;
	}
	return 0;
}

int ferry__fetch_new(ferry__fetch **out, const ferry__fetch_opts *o)
{
	fetch *f = ferry__calloc(1, sizeof(*f));
	*out = NULL;
	if (!f)
		return FERRY_ENOMEM;
	f->o = o;
	f->res = &f->own;
	f->budget = fd_budget();
	if (o->dfd >= 0 && (!(f->dc = ferry__ldir_new(o->dfd)) ||
	                    !(f->lw = ferry__lw_new(o->dfd)))) {
		ferry__ldir_free(f->dc);
		ferry__free(f);
		return FERRY_ENOMEM;
	}
	*out = f;
	return 0;
}

void ferry__fetch_free(ferry__fetch *f)
{
	if (!f)
		return;
	/* A pull that stopped before its run: what is in flight is not
	 * done (its temporary files go with it). */
	if (f->running)
		cancel_all(f, FERRY_EINTR);
	ferry__lw_free(f->lw);
	ferry__ldir_free(f->dc);
	ferry__free(f);
}

int ferry__fetch_run(ferry__fetch *f, ferry__fetch_result *res)
{
	const ferry__fetch_opts *o = f->o;
	size_t i = 0;
	if (!o->check_only) {
		remove_temps(f);
		for (; i < o->n && o->a[i].phase < FERRY__PH_FETCH; i++) {
			ferry__action *a = &o->a[i];
			switch (a->phase) {
			case FERRY__PH_REMOVE:
				do_remove(f, a);
				break;
			case FERRY__PH_MKDIR:
				do_mkdir(f, a);
				break;
			case FERRY__PH_LINK:
				do_link(f, a);
				break;
			default:
				if (set_file_meta(f, a) == 0)
					ferry__action_commit(a);
				break;
			}
		}
	}
	f->next = i;
	f->res->fatal = run_fetches(f);
	/* The directories the walk asked the writer for too: made before
	 * the deletions and the modes of directories, last. */
	if (f->lw)
		ferry__lw_drain(f->lw);
	for (i = 0; !o->check_only && !f->res->fatal && i < o->n; i++) {
		ferry__action *a = &o->a[i];
		if (a->phase == FERRY__PH_DIRMETA)
			do_dirmeta(f, a);
		else if (!o->deletions || f->res->failed)
			continue;
		else if (a->phase == FERRY__PH_DELETE)
			do_delete(f, a);
		else if (a->phase == FERRY__PH_RMDIR)
			do_rmdir(f, a);
	}
	*res = f->own;
	return res->fatal;
}
