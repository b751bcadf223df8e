/* push.c - ferry_sync: one push from the local sources to the remote
 * destination over the session's SFTP channel.
 *
 *  1. Under the target's lock (not for a dry run): load the manifest and
 *     the journal of temporary names, open the sources.
 *  2. Remote identity.  When this session already verified the target
 *     with the manifest's marker, and no journal is left over, nothing is
 *     asked of the remote.  Otherwise the marker is read, the leftover
 *     temporary names removed and (when the manifest cannot vouch: no
 *     marker, --verify, --force, an interrupted push) the tree listed, all
 *     in one first flight, while the local scan runs.
 *  3. The plan (sync/plan.h); verified against the listing when there is
 *     one (sync/verify.h); the deletion policy.
 *  4. The executor (sync/commit.h), the manifest saved with exactly what
 *     was committed, the journal cleared, the session told what it now
 *     knows of the target.  The manifest keeps the marker (and so vouches
 *     for the remote) only when nothing surprised the push; otherwise the
 *     next push verifies.
 *  5. When the remote contradicted the manifest (a path the manifest did
 *     not know was taken, one it knew was gone), a second pass verifies
 *     and repairs at once. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "error.h"
#include "ferry.h"
#include "hash.h"
#include "session.h"
#include "sftp.h"
#include "sync/commit.h"
#include "sync/exclude.h"
#include "sync/journal.h"
#include "sync/path.h"
#include "sync/manifest.h"
#include "sync/plan.h"
#include "sync/remote.h"
#include "sync/report.h"
#include "sync/scan.h"
#include "sync/status.h"
#include "sync/target.h"
#include "sync/util.h"
#include "sync/verify.h"

#define LOCK_WAIT_MS    (-1) /* take turns: wait for the other push */
#define MARKER_READ_MAX 64

/* ---- what this session knows of its targets ---- */

typedef struct known_target {
	ferry__hash key; /* of the manifest path */
	uint8_t marker[FERRY__MARKER_ID_LEN];
} known_target;

typedef struct sync_state {
	known_target *v;
	size_t n, cap;
} sync_state;

static void sync_state_free(void *p)
{
	sync_state *st = p;
	if (!st)
		return;
	ferry__free(st->v);
	ferry__free(st);
}

static known_target *known_find(ferry_session *s, const ferry__hash *key)
{
	sync_state *st = ferry__session_state(s, FERRY__SLOT_SYNC);
	for (size_t i = 0; st && i < st->n; i++)
		if (ferry__hash_eq(&st->v[i].key, key))
			return &st->v[i];
	return NULL;
}

static void known_forget(ferry_session *s, const ferry__hash *key)
{
	sync_state *st = ferry__session_state(s, FERRY__SLOT_SYNC);
	known_target *k = known_find(s, key);
	if (k)
		*k = st->v[--st->n];
}

static void known_set(ferry_session *s, const ferry__hash *key,
                      const uint8_t *marker)
{
	known_target *k = known_find(s, key);
	if (!k) {
		sync_state *st = ferry__session_state(s, FERRY__SLOT_SYNC);
		if (!st) {
			st = ferry__calloc(1, sizeof(*st));
			if (!st)
				return; /* only a lost shortcut */
			ferry__session_set_state(s, FERRY__SLOT_SYNC, st,
			                         sync_state_free);
		}
		if (st->n == st->cap) {
			size_t ncap = st->cap ? st->cap * 2 : 4;
			known_target *nv =
			        ferry__reallocarray(st->v, ncap, sizeof(*nv));
			if (!nv)
				return;
			st->v = nv;
			st->cap = ncap;
		}
		k = &st->v[st->n++];
		k->key = *key;
	}
	memcpy(k->marker, marker, FERRY__MARKER_ID_LEN);
}

/* ---- the push ---- */

typedef struct push {
	ferry_session *s;
	const ferry_sync_opts *o;
	ferry_sync_report *r;
	ferry__local l; /* paths, excludes, manifest, scan, plan */
	ferry__hash key;
	ferry__lock *lock;
	ferry__journal j;
	ferry__rlist *rl;
	ferry__sftp *sf;
	char *dest_r; /* remote path of the destination */
	/* remote check */
	int marker_sent;
	int marker_state; /* 0 pending, 1 read, 2 absent, 3 unreadable,
	                     4 not a regular file (never opened) */
	uint8_t remote_id[FERRY__MARKER_ID_LEN];
	char marker_msg[300];
	size_t leftovers; /* journal REMOVEs in flight */
	uint8_t *left_done;
	int verified;
	int surprise; /* the remote was not what the manifest said */
	ferry__verify_result vres;
	double t_remote;
	char err[1024];
} push;

static void plog(push *ps, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void plog(push *ps, int level, const char *fmt, ...)
{
	if (!ps->o->log)
		return;
	char msg[1024];
	FERRY__FORMAT(msg, fmt);
	ps->o->log(ps->o->ctx, level, msg);
}

static int lock_cancelled(void *ctx)
{
	ferry_session *s = ctx;
	return ferry__session_interrupt_pending(s);
}

static int check_opts(push *ps)
{
	int error = ferry__local_check(ps->o, ps->err, sizeof(ps->err));
	if (error)
		return ferry__seterr(ps->s, error, "%s", ps->err);
	return 0;
}

static int setup_local(push *ps)
{
	const ferry_sync_opts *o = ps->o;
	int error = ferry__local_open(
	        &ps->l, ferry__session_user(ps->s), ferry__session_host(ps->s),
	        ferry__session_port(ps->s), o, ps->err, sizeof(ps->err));
	if (error)
		return ferry__seterr(ps->s, error, "%s", ps->err);
	ferry__hash_buf(&ps->key, ps->l.paths.manifest,
	                strlen(ps->l.paths.manifest));
	ps->dest_r = ferry__strdup(ps->l.paths.dest);
	if (!ps->dest_r)
		return ferry__seterr(ps->s, FERRY_ENOMEM, "out of memory");
	if (!o->dry_run) {
		error = ferry__lock_acquire(&ps->lock, ps->l.paths.lock,
		                            LOCK_WAIT_MS, lock_cancelled, ps->s,
		                            ps->err, sizeof(ps->err));
		if (error == FERRY_EINTR)
			(void)ferry__session_take_interrupt(ps->s);
		if (error)
			return ferry__seterr(ps->s, error, "%s", ps->err);
	}
	if ((error = ferry__local_load(&ps->l, o, ps->r, ps->err,
	                               sizeof(ps->err))))
		return ferry__seterr(ps->s, error, "%s", ps->err);
	error = ferry__journal_load(&ps->j, ps->l.paths.journal);
	if (error)
		return ferry__seterr(ps->s, error, "out of memory");
	if (ps->j.pending)
		plog(ps, FERRY_LOG_INFO,
		     "the previous push to %s:%s did not finish: removing "
		     "%zu temporary name%s and verifying the remote",
		     ps->l.paths.target, ps->l.paths.dest, ps->j.n,
		     ps->j.n == 1 ? "" : "s");
	return 0;
}

static int new_scan(push *ps)
{
	int error = ferry__local_scan(&ps->l, ps->o, ps->r, ps->err,
	                              sizeof(ps->err));
	if (error)
		return ferry__seterr(ps->s, error, "%s", ps->err);
	return 0;
}

static int build_plan(push *ps, int keep_unchanged)
{
	int error = ferry__local_build(&ps->l, ps->o, keep_unchanged, ps->r,
	                               ps->err, sizeof(ps->err));
	if (error)
		return ferry__seterr(ps->s, error, "%s", ps->err);
	return 0;
}

/* Plan again keeping unchanged entries (for a verification decided late):
 * the errors of the first scan are dropped, the second one reports them. */
static int replan(push *ps, size_t errors_before)
{
	ferry__plan_free(ps->l.plan);
	ps->l.plan = NULL;
	ferry__scan_free(ps->l.scan);
	ps->l.scan = NULL;
	for (size_t i = 0; i < ps->l.m->n; i++)
		ps->l.m->e[i].flags &= (uint8_t)~FERRY__ME_MEMORY_FLAGS;
	while (ps->r->error_count > errors_before) {
		ferry_file_error *e = &ps->r->errors[--ps->r->error_count];
		ferry__free(e->path);
		ferry__free(e->message);
	}
	int error = new_scan(ps);
	if (!error)
		error = build_plan(ps, 1);
	return error;
}

/* ---- the first flight: marker, leftovers, listing ---- */

static void marker_cb(void *ctx, int err, const char *msg, const uint8_t *data,
                      size_t len, int truncated)
{
	push *ps = ctx;
	if (!err && !truncated &&
	    !ferry__marker_parse(ps->remote_id, data, len)) {
		ps->marker_state = 1;
	} else if (err == FERRY_ENOTFOUND) {
		ps->marker_state = 2;
	} else if (err == FERRY_EEXIST) {
		ps->marker_state = 4;
		snprintf(ps->marker_msg, sizeof(ps->marker_msg), "%s", msg);
	} else {
		ps->marker_state = 3;
		snprintf(ps->marker_msg, sizeof(ps->marker_msg), "%s",
		         err ? msg : "not a marker written by ferry");
	}
}

typedef struct left_rm {
	push *ps;
	size_t i;
} left_rm;

static void leftover_cb(void *ctx, const ferry__sftp_reply *r)
{
	left_rm *x = ctx;
	x->ps->leftovers--;
	if (!r->error || r->error == FERRY_ENOTFOUND)
		x->ps->left_done[x->i] = 1;
	ferry__free(x);
}

static int submit_leftovers(push *ps)
{
	if (!ps->j.n)
		return 0;
	ps->left_done = ferry__calloc(ps->j.n, 1);
	if (!ps->left_done)
		return FERRY_ENOMEM;
	for (size_t i = 0; i < ps->j.n; i++) {
		if (!ferry__rtemp_in(ps->dest_r, ps->j.names[i])) {
			/* Not a name this push's destination could hold:
			 * never removed, and dropped from the journal. */
			char shown[256];
			ferry__path_escape(shown, sizeof(shown), ps->j.names[i],
			                   strlen(ps->j.names[i]));
			plog(ps, FERRY_LOG_WARN,
			     "the journal %s names %s, not a temporary name "
			     "inside %s: ignored",
			     ps->j.path, shown, ps->dest_r);
			ps->left_done[i] = 1;
			continue;
		}
		left_rm *x = ferry__calloc(1, sizeof(*x));
		if (!x)
			return FERRY_ENOMEM;
		x->ps = ps;
		x->i = i;
		int rc = ferry__sftp_remove(ps->sf, ps->j.names[i], leftover_cb,
		                            x);
		if (rc) {
			ferry__free(x);
			return rc;
		}
		ps->leftovers++;
	}
	return 0;
}

/* Keep in the journal only the leftovers whose removal was not confirmed. */
static void compact_leftovers(push *ps)
{
	if (!ps->left_done)
		return;
	size_t k = 0;
	for (size_t i = 0; i < ps->j.n; i++) {
		if (ps->left_done[i])
			ferry__free(ps->j.names[i]);
		else
			ps->j.names[k++] = ps->j.names[i];
	}
	ps->j.n = k;
	ferry__free(ps->left_done);
	ps->left_done = NULL;
}

static int first_wait_done(void *ctx)
{
	push *ps = ctx;
	return ps->marker_state != 0 && ps->leftovers == 0;
}

static int nothing_queued(void *ctx)
{
	push *ps = ctx;
	return ferry__sftp_queued_bytes(ps->sf) == 0;
}

static int sftp_error(push *ps, int rc)
{
	const char *m = ferry__sftp_errmsg(ps->sf);
	if (rc != FERRY_EINTR && m && *m)
		return ferry__seterr(ps->s, rc, "%s", m);
	if (rc == FERRY_EINTR)
		return ferry__seterr(ps->s, rc, "interrupted");
	return rc;
}

/* Let every request of the walk complete, then stop. */
static void abandon(push *ps, int code)
{
	if (ps->sf && ferry__sftp_pending(ps->sf) && !ferry__sftp_dead(ps->sf))
		ferry__sftp_cancel_all(ps->sf, code);
}

static int start_listing(push *ps)
{
	const char *paths[] = {ps->dest_r};
	ferry__rlist_opts lo = {.paths = paths,
	                        .nroots = 1,
	                        .scope = ps->l.scan,
	                        .ex = ps->l.ex,
	                        .max_dir_entries = ps->o->max_dir_entries,
	                        .max_entries = ps->o->max_entries,
	                        .max_name_bytes = ps->o->max_name_bytes,
	                        .marker = ps->o->marker};
	int rc = ferry__rlist_start(&ps->rl, ps->sf, &lo);
	if (rc)
		return sftp_error(ps, rc);
	ps->verified = 1;
	return 0;
}

static int wait_listing(push *ps)
{
	int rc = ferry__sftp_run(ps->sf, ferry__rlist_done, ps->rl, 0);
	if (rc) {
		abandon(ps, rc);
		return sftp_error(ps, rc);
	}
	ferry__rlist *rl = ps->rl;
	if (rl->error) {
		if (ferry__sftp_dead(ps->sf))
			return sftp_error(ps, ferry__sftp_dead(ps->sf));
		return ferry__seterr(
		        ps->s, rl->error, "listing the remote destination: %s",
		        rl->errmsg[0] ? rl->errmsg : ferry_strerror(rl->error));
	}
	switch (rl->roots[0].state) {
	case FERRY__ROOT_NOTDIR:
		return ferry__seterr(ps->s, FERRY_EEXIST,
		                     "the destination %s exists on the remote "
		                     "and is not a directory",
		                     ps->dest_r);
	case FERRY__ROOT_ERROR:
		return ferry__seterr(ps->s, rl->roots[0].code,
		                     "cannot read the destination %s: %s",
		                     ps->dest_r, rl->roots[0].msg);
	default:
		break;
	}
	for (size_t i = 0; i < rl->nfail; i++)
		ferry__report_error(ps->r, ps->o->log, ps->o->ctx,
		                    rl->fail[i].path, strlen(rl->fail[i].path),
		                    rl->fail[i].code,
		                    "cannot list the remote directory: %s",
		                    rl->fail[i].msg);
	ferry__rlist_sort(rl);
	for (size_t i = 0; i < rl->nbad; i++)
		ferry__report_error(ps->r, ps->o->log, ps->o->ctx,
		                    rl->bad[i].path, strlen(rl->bad[i].path),
		                    rl->bad[i].code, "%s", rl->bad[i].msg);
	return 0;
}

/* ---- after the run ---- */

/* The destination's mode (when it is made) and mtime, as rsync -a gives
 * them: the first source copied by its contents ("DIR/"), if any. */
static void dest_attrs(const ferry__scan *scan, ferry__commit_opts *co)
{
	co->dest_mode = 0755;
	for (size_t i = 0; i < scan->nsrc; i++) {
		struct stat st;
		if (scan->src[i].kind == FERRY__SRC_CONTENTS &&
		    scan->src[i].fd >= 0 && fstat(scan->src[i].fd, &st) == 0) {
			ferry__stat fs;
			ferry__stat_from(&fs, &st);
			co->dest_mode = (fs.mode & 07777) | 0700;
			co->dest_mtime_ns = fs.mtime_ns;
			co->dest_times = 1;
			return;
		}
	}
}

/* The marker's name, and ".ferry-id" whatever the marker is called. */
static void reserve_marker_name(push *ps, const char *name)
{
	ferry__action *a = ferry__plan_find(ps->l.plan, name, strlen(name));
	if (!a || a->kind == FERRY__ACT_DELETE || a->kind == FERRY__ACT_RMDIR)
		return;
	a->error = FERRY_EINVALID;
	a->kind = FERRY__ACT_NONE; /* never sent, never recorded */
	ferry__report_error(ps->r, ps->o->log, ps->o->ctx, name, strlen(name),
	                    FERRY_EINVALID,
	                    "this name is reserved for ferry's marker at the "
	                    "top of the destination: not pushed");
}

static int plan_needs_remote(const ferry__plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		const ferry__action *a = &p->a[i];
		if (a->kind <= FERRY__ACT_RMDIR && !a->committed && !a->error)
			return 1;
	}
	return 0;
}

static void push_free(push *ps)
{
	/* Callbacks of ours still in flight (an early error) must not
	 * outlive ps. */
	if (ps->sf && ((ps->rl && !ferry__rlist_done(ps->rl)) ||
	               ps->leftovers || (ps->marker_sent && !ps->marker_state)))
		abandon(ps, FERRY_EINTR);
	ferry__rlist_free(ps->rl);
	ferry__verify_result_free(&ps->vres);
	ferry__journal_free(&ps->j);
	ferry__free(ps->left_done);
	if (ps->lock)
		ferry__lock_release(ps->lock);
	ferry__local_free(&ps->l);
	ferry__free(ps->dest_r);
}

/* The first flight: marker read, leftovers' removal and (need_list) the
 * listing, sent with INIT and out on the wire while the local scan runs. */
static int first_flight(push *ps, int need_list)
{
	int error;
	double t = ferry__now_ms_f();
	/* Not waiting for VERSION: the marker read (and the listing)
	 * go out with INIT. */
	if ((error = ferry__session_sftp_begin(ps->s, NULL, &ps->sf)))
		return error;
	const char *mname = ferry__marker_name(ps->o);
	char *mp = ferry__rpath(ps->dest_r, mname, strlen(mname));
	if (!mp)
		return ferry__seterr(ps->s, FERRY_ENOMEM, "out of memory");
	error = ferry__sftp_read_small(ps->sf, mp, MARKER_READ_MAX, marker_cb,
	                               ps);
	ferry__free(mp);
	if (error)
		return sftp_error(ps, error);
	ps->marker_sent = 1;
	if (!ps->o->dry_run && (error = submit_leftovers(ps)))
		return sftp_error(ps, error);
	if (need_list && (error = start_listing(ps)))
		return error;
	/* Out on the wire while the local scan runs. */
	if ((error = ferry__sftp_run(ps->sf, nothing_queued, ps, 0))) {
		abandon(ps, error);
		return sftp_error(ps, error);
	}
	ps->t_remote += ferry__now_ms_f() - t;
	return 0;
}

/* The remote check: wait for the first flight, decide whether the remote
 * must be listed (a marker that does not vouch for the manifest), and
 * verify the plan against the listing. */
static int remote_check(push *ps, int need_list, size_t errors_before,
                        int *have_id, uint8_t *id)
{
	const ferry_sync_opts *o = ps->o;
	ferry__manifest *m = ps->l.m;
	int error;
	double t = ferry__now_ms_f();
	if ((error = ferry__sftp_run(ps->sf, first_wait_done, ps, 0))) {
		abandon(ps, error);
		return sftp_error(ps, error);
	}
	if (ps->marker_state == 4)
		return ferry__seterr(
		        ps->s, FERRY_EEXIST,
		        "the remote marker %s/%s is not ferry's (%s): "
		        "refusing to push; whoever put it there can write in "
		        "the destination, remove it if it is yours",
		        ps->dest_r, ferry__marker_name(o), ps->marker_msg);
	if (ps->marker_state == 3)
		plog(ps, FERRY_LOG_WARN,
		     "the remote marker %s/%s is unreadable (%s): "
		     "verifying and writing a new one",
		     ps->dest_r, ferry__marker_name(o), ps->marker_msg);
	if (ps->marker_state == 1) {
		*have_id = 1;
		memcpy(id, ps->remote_id, FERRY__MARKER_ID_LEN);
	}
	int vouches =
	        m->loaded && m->has_marker && ps->marker_state == 1 &&
	        memcmp(m->marker, ps->remote_id, FERRY__MARKER_ID_LEN) == 0;
	if (!need_list && !vouches) {
		plog(ps, FERRY_LOG_INFO,
		     "the remote marker %s: verifying the remote tree",
		     ps->marker_state == 1 ? "differs from the manifest"
		                           : "is missing");
		need_list = 1;
		if (m->n && (error = replan(ps, errors_before)))
			return error;
		if ((error = start_listing(ps)))
			return error;
	}
	if (need_list) {
		if ((error = wait_listing(ps)))
			return error;
		double tv = ferry__now_ms_f();
		error = ferry__verify_plan(ps->l.plan, m, ps->rl, ps->dest_r,
		                           o->checksum, &ps->vres);
		ps->r->ms_plan += ferry__now_ms_f() - tv;
		if (error)
			return ferry__seterr(ps->s, error, "out of memory");
	}
	ps->t_remote += ferry__now_ms_f() - t;
	return 0;
}

/* Steps 2 and 3: the remote check and the finished plan. */
static int check_and_plan(push *ps, int *trusted_out, int *have_id, uint8_t *id)
{
	const ferry_sync_opts *o = ps->o;
	ferry__manifest *m = ps->l.m;
	int error;
	known_target *k = known_find(ps->s, &ps->key);
	int trusted = k && m->loaded && m->has_marker && !o->verify &&
	              !o->force && !ps->j.pending &&
	              memcmp(k->marker, m->marker, FERRY__MARKER_ID_LEN) == 0;
	int need_list = o->verify || o->force || !m->loaded || !m->has_marker ||
	                ps->j.pending;
	*trusted_out = trusted;
	*have_id = 0;
	size_t errors_before = ps->r->error_count;
	if ((error = new_scan(ps)))
		return error;

	if (!trusted && (error = first_flight(ps, need_list)))
		return error;

	if ((error = build_plan(ps, need_list)))
		return error;

	if (!trusted &&
	    (error = remote_check(ps, need_list, errors_before, have_id, id)))
		return error;

	reserve_marker_name(ps, FERRY__MARKER_NAME);
	if (strcmp(ferry__marker_name(ps->o), FERRY__MARKER_NAME))
		reserve_marker_name(ps, ferry__marker_name(ps->o));
	if ((error = ferry__local_finish(&ps->l, ps->r, ps->err,
	                                 sizeof(ps->err))))
		return ferry__seterr(ps->s, error, "%s", ps->err);
	return 0;
}

static int finish_journal(push *ps, const ferry__commit_result *cr)
{
	char err[600];
	int error = 0;
	for (size_t i = 0; cr && i < cr->nunresolved; i++)
		if ((error = ferry__journal_add(&ps->j, cr->unresolved[i])))
			return error;
	if (ps->j.n)
		error = ferry__journal_save(&ps->j, err, sizeof(err));
	else if (ps->j.pending)
		error = ferry__journal_clear(&ps->j, err, sizeof(err));
	if (error)
		plog(ps, FERRY_LOG_WARN, "%s", err);
	return 0;
}

static int leftovers_done(void *ctx)
{
	return ((push *)ctx)->leftovers == 0;
}

/* How long a failed push waits for the removal of its temporaries. */
#define LEFTOVER_WAIT_MS 5000

/* A failed push's temporaries (the journal) are removed at once when the
 * connection still works, over a new SFTP channel when the push's was
 * closed (an I/O deadline); what stays is removed by the next push.  The
 * push's own error message stays. */
static void remove_leftovers_now(push *ps)
{
	if (!ps->j.n || ferry_session_alive(ps->s))
		return;
	char msg[FERRY_ERRMSG_SIZE];
	snprintf(msg, sizeof(msg), "%s", ferry_session_errmsg(ps->s));
	if (ps->sf && ferry__sftp_dead(ps->sf))
		ps->sf = NULL;
	if (ps->sf || !ferry__session_sftp(ps->s, &ps->sf)) {
		/* What was submitted is waited for (or cancelled) even when
		 * submitting failed half-way: its callbacks point here. */
		(void)submit_leftovers(ps);
		if (ps->leftovers &&
		    ferry__sftp_run(ps->sf, leftovers_done, ps,
		                    ferry__now_ms() + LEFTOVER_WAIT_MS) &&
		    ps->leftovers && !ferry__sftp_dead(ps->sf))
			ferry__sftp_cancel_all(ps->sf, FERRY_ETIMEOUT);
		compact_leftovers(ps);
		finish_journal(ps, NULL);
	}
	ferry__seterr(ps->s, 0, "%s", msg);
}

static int save_manifest(push *ps, int have_id, const uint8_t *id,
                         int remote_errors)
{
	ferry__manifest *m = ps->l.m;
	int old_has = m->has_marker;
	uint8_t old[FERRY__MARKER_ID_LEN];
	memcpy(old, m->marker, sizeof(old));
	int has = have_id && !remote_errors;
	if (has)
		memcpy(m->marker, id, FERRY__MARKER_ID_LEN);
	m->has_marker = has;
	int marker_moved = has != old_has ||
	                   (has && memcmp(old, m->marker, sizeof(old)) != 0);
	if (!ferry__plan_needs_save(ps->l.plan) && !marker_moved && m->loaded)
		return 0;
	double t = ferry__now_ms_f();
	int error = ferry__plan_apply(ps->l.plan, m);
	if (!error)
		error = ferry__manifest_save(m, ps->l.paths.manifest, ps->err,
		                             sizeof(ps->err));
	else
		snprintf(ps->err, sizeof(ps->err), "out of memory");
	ps->r->ms_manifest += ferry__now_ms_f() - t;
	if (error)
		return ferry__seterr(ps->s, error,
		                     "saving the manifest: %s (the next push "
		                     "verifies the remote)",
		                     ps->err);
	return 0;
}

/* Step 4: the actions, the leftovers' cleanup and the marker, remotely. */
static int run_commit(push *ps, int write_marker, const uint8_t *id,
                      ferry__commit_result *cr)
{
	const ferry_sync_opts *o = ps->o;
	ferry_session *s = ps->s;
	ferry_sync_report *r = ps->r;
	ferry__plan *p = ps->l.plan;
	int error;
	size_t journal_kept = ps->j.n;
	double t = ferry__now_ms_f();
	if (!ps->sf && (error = ferry__session_sftp(s, &ps->sf)))
		return error;
	ferry__commit_opts co = {
	        .sf = ps->sf,
	        .s = s,
	        .p = p,
	        .dest = ps->dest_r,
	        .dest_missing =
	                ps->rl && ps->rl->roots[0].state == FERRY__ROOT_MISSING,
	        .cleanup = ps->vres.temps,
	        .ncleanup = ps->vres.ntemps,
	        .marker = write_marker ? id : NULL,
	        .fsync_all = o->fsync_all,
	        .journal = &ps->j,
	        .o = o,
	        .report = r,
	};
	dest_attrs(ps->l.scan, &co);
	ferry__commit_run(&co, cr);
	/* The run's own names are resolved or listed in cr. */
	while (ps->j.n > journal_kept)
		ferry__free(ps->j.names[--ps->j.n]);
	ps->t_remote += ferry__now_ms_f() - t;
	r->bytes_sent += cr->bytes_sent;
	r->bytes_copied += cr->bytes_copied;
	r->bytes_saved += cr->bytes_copied;
	if (cr->rename_fallback)
		plog(ps, FERRY_LOG_WARN,
		     "the server lacks posix-rename@openssh.com: files "
		     "were replaced by remove + rename, which is not "
		     "atomic");
	if (cr->links_replaced)
		plog(ps, FERRY_LOG_INFO,
		     "the server renames a symlink's target, not the link: "
		     "symlinks were replaced by remove + symlink, which is "
		     "not atomic");
	if (cr->fsync_missing)
		plog(ps, FERRY_LOG_WARN,
		     "the server lacks fsync@openssh.com: owner-only "
		     "files were not flushed to its disk");
	return 0;
}

static int do_push(push *ps)
{
	const ferry_sync_opts *o = ps->o;
	ferry_session *s = ps->s;
	ferry_sync_report *r = ps->r;
	int error, trusted = 0, have_id = 0;
	uint8_t id[FERRY__MARKER_ID_LEN];
	ferry__commit_result cr;
	memset(&cr, 0, sizeof(cr));

	if ((error = setup_local(ps)))
		return error;
	if ((error = check_and_plan(ps, &trusted, &have_id, id)))
		return error;
	ferry__local_counts(&ps->l, ps->r);
	r->verified = ps->verified;
	ferry__plan *p = ps->l.plan;

	/* Refused as a whole: nothing is changed. */
	if (p->refused[0])
		return ferry__seterr(s, FERRY_ERROR, "%s", p->refused);
	if (o->dry_run) {
		ferry__plan_report(p, r, o->on_change, o->ctx);
		if (r->error_count)
			return ferry__seterr(s, FERRY_EPARTIAL,
			                     "some files could not be read");
		return 0;
	}
	if (trusted) {
		have_id = 1;
		memcpy(id, ps->l.m->marker, FERRY__MARKER_ID_LEN);
	}
	int write_marker = 0;
	if (!have_id) {
		if ((error = ferry__random_bytes(id, sizeof(id))))
			return ferry__seterr(s, error,
			                     "no random bytes for the marker");
		write_marker = 1;
	}
	compact_leftovers(ps);

	int ran = 0;
	if (plan_needs_remote(p) || write_marker || ps->vres.ntemps) {
		if ((error = run_commit(ps, write_marker, id, &cr)))
			return error;
		ran = 1;
		if (write_marker)
			have_id = cr.marker_written;
	}

	/* The manifest: exactly what was committed.  It stops vouching for
	 * the remote (the next push verifies) when the remote refused
	 * something or could not be listed whole, and when a verifying push
	 * left anything undone: what the listing found (a remote-only entry,
	 * a remote copy that differs) is known to no manifest entry. */
	int remote_errors =
	        (ran && (cr.remote_errors || cr.fatal || cr.shared)) ||
	        (ps->rl && ps->rl->nfail) ||
	        (ps->verified && (r->error_count || cr.failed || cr.not_done ||
	                          (p->deletions_dropped &&
	                           p->deletions_skipped != FERRY__DEL_NONE)));
	ps->surprise = ran && cr.surprises && !cr.fatal;
	int saved = save_manifest(ps, have_id, id, remote_errors);
	if (!saved)
		finish_journal(ps, ran ? &cr : NULL);
	if (!saved && ran)
		remove_leftovers_now(ps);
	if (!saved && have_id && !remote_errors)
		known_set(s, &ps->key, id);
	else
		known_forget(s, &ps->key);

	if (ran && cr.fatal)
		error = ferry__seterr(s, cr.fatal, "%s", cr.fatal_msg);
	else if (saved)
		error = saved;
	else if (r->error_count)
		error = ferry__seterr(
		        s, FERRY_EPARTIAL, "%zu file%s could not be pushed",
		        r->error_count, r->error_count == 1 ? "" : "s");
	ferry__commit_result_free(&cr);
	return error;
}

/* Add what a first pass did to the report of the second. */
static void merge_reports(ferry_sync_report *r, ferry_sync_report *first)
{
	r->files_uploaded += first->files_uploaded;
	r->files_updated += first->files_updated;
	r->files_deleted += first->files_deleted;
	r->dirs_created += first->dirs_created;
	r->dirs_deleted += first->dirs_deleted;
	r->symlinks_created += first->symlinks_created;
	r->bytes_sent += first->bytes_sent;
	r->files_delta += first->files_delta;
	r->bytes_copied += first->bytes_copied;
	r->bytes_saved += first->bytes_saved;
	r->ms_scan += first->ms_scan;
	r->ms_plan += first->ms_plan;
	r->ms_manifest += first->ms_manifest;
	ferry_sync_report_free(first);
}

static int one_pass(ferry_session *s, const ferry_sync_opts *opts,
                    ferry_sync_report *report, double *t_remote, int *again)
{
	push ps;
	memset(&ps, 0, sizeof(ps));
	ps.s = s;
	ps.o = opts;
	ps.r = report;
	int error = check_opts(&ps);
	if (!error)
		error = do_push(&ps);
	*again = error == FERRY_EPARTIAL && ps.surprise && !ps.verified &&
	         opts && !opts->dry_run;
	*t_remote += ps.t_remote;
	push_free(&ps);
	return error;
}

static int sync_run(ferry_session *s, const ferry_sync_opts *opts,
                    ferry_sync_report *report)
{
	ferry_sync_report tmp;
	double t0 = ferry__now_ms_f(), t_remote = 0;
	int again = 0;
	if (!report)
		report = &tmp;
	memset(report, 0, sizeof(*report));
	if (!s)
		return FERRY_EINVALID;
	ferry_sync_opts oc;
	ferry__sync_opts_copy(&oc, opts);
	if (opts)
		opts = &oc;
	uint64_t rt0 = ferry__session_round_trips(s);
	ferry__sftp *sf0 = ferry__session_sftp_peek(s);
	ferry__sftp_stats st0;
	memset(&st0, 0, sizeof(st0));
	if (sf0)
		ferry__sftp_stats_get(sf0, &st0);

	int error = one_pass(s, opts, report, &t_remote, &again);
	if (again) {
		/* The remote surprised the push (something where the manifest
		 * said nothing, or nothing where it said something): verify
		 * and repair now rather than leave it to the next push. */
		ferry_sync_opts o2 = *opts;
		ferry_sync_report first = *report;
		o2.verify = 1;
		memset(report, 0, sizeof(*report));
		if (opts->log)
			opts->log(opts->ctx, FERRY_LOG_INFO,
			          "the remote differs from the manifest: "
			          "verifying it");
		error = one_pass(s, &o2, report, &t_remote, &again);
		merge_reports(report, &first);
	}

	report->round_trips = ferry__session_round_trips(s) - rt0;
	ferry__sftp *sf = ferry__session_sftp_peek(s);
	if (sf) {
		ferry__sftp_stats st;
		ferry__sftp_stats_get(sf, &st);
		report->requests = st.requests - (sf == sf0 ? st0.requests : 0);
	}
	report->ms_transfer = t_remote;
	report->ms_total = ferry__now_ms_f() - t0;
	if (report == &tmp)
		ferry_sync_report_free(&tmp);
	return error;
}

int ferry_sync(ferry_session *s, const ferry_sync_opts *opts,
               ferry_sync_report *report)
{
	return ferry__sftp_call(s, opts, report, sync_run);
}
