/* pull.c - ferry_pull: remote sources into a local directory over the
 * session's SFTP channel.
 *
 *  1. The roots: each source's remote path and its destination path ("":
 *     its contents at the top; else its name), as a push's scan names them.
 *  2. The local walk of the destination (sync/scan.h, every symlink
 *     reported and none followed), within the roots' scope; leftover
 *     temporary names noted.
 *  3. The remote walk (sync/remote.h), strict: the roots, and at once the
 *     directories the destination holds (so an unchanged tree is listed in
 *     two round trips whatever its depth), the others level by level.
 *     The files new to the destination start coming as soon as their
 *     directory is listed (made locally then), beside the rest of the
 *     walk: a cold pull of depth d costs 2 (d + 1) + 2 round trips at
 *     most (OPENDIR then READDIR per level, OPEN then READ for the
 *     deepest files), not the walk and then the fetches.
 *  4. The plan: the sorted listing merged with the sorted local walk;
 *     every remote entry judged first (refused names, duplicates, missing
 *     attributes, symlinks that leave the destination).
 *  5. The executor (sync/fetch.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "ferry.h"
#include "hash.h"
#include "os.h"
#include "session.h"
#include "sftp.h"
#include "sync/arena.h"
#include "sync/exclude.h"
#include "sync/fetch.h"
#include "sync/ltree.h"
#include "sync/path.h"
#include "sync/remote.h"
#include "sync/status.h"
#include "sync/report.h"
#include "sync/scan.h"
#include "sync/target.h"
#include "sync/util.h"

#define NS 1000000000LL

typedef struct lentry {
	const char *path; /* destination path; arena */
	uint32_t path_len;
	uint32_t link_len;
	const char *link;
	ferry__stat st;
} lentry;

typedef struct pull {
	ferry_session *s;
	const ferry_sync_opts *o;
	ferry_sync_report *r;
	ferry__excludes *ex;
	size_t nsrc;
	char **rpath, **prefix;
	int dfd;
	ferry__scan *scan;
	lentry *l;
	size_t nl, lcap;
	char **temps;
	size_t ntemps, tcap;
	ferry__arena arena;
	ferry__rlist *rl;
	ferry__sftp *sf;
	ferry__fetch_opts fo;
	ferry__fetch *fx;      /* the executor; from the walk when early */
	ferry__action **early; /* fetched during the walk (by path after) */
	size_t nearly, ecap;
	ferry__action *a; /* tree order, then execution order */
	size_t na, acap;
	const char *last_dup;
	size_t last_dup_n;
	int refused;          /* a remote entry was refused: keep locals */
	uint64_t extraneous;  /* deletions planned by --delete */
	uint64_t bytes_total; /* of the files fetched */
	char err[FERRY_ERRMSG_SIZE];
} pull;

static void plog(pull *p, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void plog(pull *p, int level, const char *fmt, ...)
{
	if (!p->o->log)
		return;
	char msg[FERRY_ERRMSG_SIZE];
	FERRY__FORMAT(msg, fmt);
	p->o->log(p->o->ctx, level, msg);
}

static void perr(pull *p, const char *path, size_t n, int code, const char *msg)
{
	ferry__report_error(p->r, p->o->log, p->o->ctx, path, n, code, "%s",
	                    msg);
}

/* ---- 1. roots ---- */

static int check_opts(pull *p)
{
	const ferry_sync_opts *o = p->o;
	const char *why = NULL;
	if (!o || o->version != FERRY_SYNC_OPTS_VERSION)
		why = "ferry_sync_opts: bad version (use FERRY_SYNC_OPTS_INIT)";
	else if (!o->sources || o->source_count == 0)
		why = "no source given";
	else if (o->source_count > UINT16_MAX)
		why = "too many sources";
	else if (!o->dest || !*o->dest)
		why = "no destination given";
	else
		why = ferry__marker_check(o->marker);
	for (size_t i = 0; !why && i < o->source_count; i++)
		if (!o->sources[i])
			why = "a source is NULL";
	if (why)
		return ferry__seterr(p->s, FERRY_EINVALID, "%s", why);
	return 0;
}

/* rsync's meaning, as the scan gives it to local sources: "dir/", ".",
 * ".." and the login directory put their contents at the top; anything
 * else its last name. */
static int make_root(pull *p, size_t i)
{
	const char *a = p->o->sources[i];
	size_t len = strlen(a);
	char *norm = ferry__sync_dest_normalize(a);
	if (!norm)
		return FERRY_ENOMEM;
	p->rpath[i] = norm;
	size_t nl = strlen(norm);
	const char *slash = memrchr(norm, '/', nl);
	const char *name = slash ? slash + 1 : norm;
	size_t n = nl - (size_t)(name - norm);
	int contents = len == 0 || a[len - 1] == '/' || !strcmp(a, "~") ||
	               (n == 1 && name[0] == '.') ||
	               (n == 2 && name[0] == '.' && name[1] == '.') || n == 0;
	p->prefix[i] = ferry__strndup(contents ? "" : name, contents ? 0 : n);
	return p->prefix[i] ? 0 : FERRY_ENOMEM;
}

static int make_roots(pull *p)
{
	p->nsrc = p->o->source_count;
	p->rpath = ferry__calloc(p->nsrc, sizeof(char *));
	p->prefix = ferry__calloc(p->nsrc, sizeof(char *));
	if (!p->rpath || !p->prefix)
		return FERRY_ENOMEM;
	for (size_t i = 0; i < p->nsrc; i++) {
		int error = make_root(p, i);
		if (error)
			return error;
	}
	return 0;
}

/* ---- 2. the local walk ---- */

/* 1 when destination path q (n bytes) is under one of the roots. */
static int in_scope(const pull *p, const char *q, size_t n)
{
	for (size_t i = 0; i < p->nsrc; i++) {
		size_t pl = strlen(p->prefix[i]);
		if (pl == 0 || (n == pl && !memcmp(q, p->prefix[i], n)) ||
		    ferry__path_under(q, n, p->prefix[i], pl))
			return 1;
	}
	return 0;
}

static int add_temp(pull *p, const char *q, size_t n)
{
	if (ferry__grow(&p->temps, &p->tcap, p->ntemps + 1, sizeof(char *), 8))
		return FERRY_ENOMEM;
	char *t = ferry__arena_strndup(&p->arena, q, n);
	if (!t)
		return FERRY_ENOMEM;
	p->temps[p->ntemps++] = t;
	return 0;
}

static int scan_item(void *ctx, const ferry__scan_item *it)
{
	pull *p = ctx;
	int dir = it->st.type == FERRY__T_DIR;
	size_t nl = strlen(it->name);
	if (ferry__rtemp_name(it->name, nl) && it->st.type == FERRY__T_FILE)
		return add_temp(p, it->path, it->path_len);
	if (ferry__reserved_name(it->name, nl, p->o->marker) ||
	    !in_scope(p, it->path, it->path_len))
		return dir ? FERRY__SCAN_PRUNE : 0;
	if (ferry__grow(&p->l, &p->lcap, p->nl + 1, sizeof(*p->l), 256))
		return FERRY_ENOMEM;
	lentry *e = &p->l[p->nl];
	memset(e, 0, sizeof(*e));
	e->path = ferry__arena_strndup(&p->arena, it->path, it->path_len);
	e->path_len = (uint32_t)it->path_len;
	e->st = it->st;
	if (it->st.type == FERRY__T_LINK) {
		e->link =
		        ferry__arena_strndup(&p->arena, it->link, it->link_len);
		e->link_len = (uint32_t)it->link_len;
		if (!e->link)
			return FERRY_ENOMEM;
	}
	if (!e->path)
		return FERRY_ENOMEM;
	p->nl++;
	return 0;
}

static int lentry_cmp(const void *x, const void *y)
{
	const lentry *a = x, *b = y;
	return ferry__path_cmp(a->path, a->path_len, b->path, b->path_len);
}

/* Open (or, unless a dry run, make) the destination and walk it. */
static int local_walk(pull *p)
{
	const char *dest = p->o->dest;
	p->dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->dfd < 0 && errno == ENOENT && !p->o->dry_run &&
	    mkdir(dest, 0755) == 0)
		p->dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->dfd < 0 && errno == ENOENT && p->o->dry_run)
		return 0; /* everything is new */
	if (p->dfd < 0)
		return ferry__seterr(p->s, ferry__errno_code(errno),
		                     "the destination %s: %s", dest,
		                     strerror(errno));
	size_t dl = strlen(dest);
	char *arg = ferry__malloc(dl + 2);
	if (!arg)
		return FERRY_ENOMEM;
	memcpy(arg, dest, dl);
	arg[dl] = '/';
	arg[dl + 1] = '\0';
	const char *srcs[] = {arg};
	ferry__scan_opts so = {.sources = srcs,
	                       .source_count = 1,
	                       .excludes = p->ex,
	                       .log = p->o->log,
	                       .log_ctx = p->o->ctx,
	                       .report = p->r,
	                       .all_links = 1};
	double t = ferry__now_ms_f();
	int error = ferry__scan_new(&p->scan, &so, p->err, sizeof(p->err));
	if (!error)
		error = ferry__scan_run(p->scan, scan_item, p);
	ferry__free(arg);
	p->r->ms_scan += ferry__now_ms_f() - t;
	if (error)
		return ferry__seterr(p->s, error, "walking the destination: %s",
		                     error == FERRY_ENOMEM ? "out of memory"
		                                           : p->err);
	if (p->nl > 1)
		qsort(p->l, p->nl, sizeof(*p->l), lentry_cmp);
	return 0;
}

/* ---- 3. the remote walk ---- */

static int sftp_error(pull *p, int rc)
{
	const char *m = p->sf ? ferry__sftp_errmsg(p->sf) : NULL;
	if (rc == FERRY_EINTR)
		return ferry__seterr(p->s, rc, "interrupted");
	if (m && *m)
		return ferry__seterr(p->s, rc, "%s", m);
	return ferry__seterr(p->s, rc, "%s", ferry_strerror(rc));
}

/* ---- early fetches: while the walk runs ---- */

enum { MARK_DIR = 1, MARK_DUP = 2 };

static const lentry *find_local(const pull *p, const char *path, size_t n)
{
	size_t lo = 0, hi = p->nl;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = ferry__path_cmp(p->l[mid].path, p->l[mid].path_len,
		                        path, n);
		if (c == 0)
			return &p->l[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int rentry_ptr_cmp(const void *x, const void *y)
{
	const ferry__rentry *a = *(const ferry__rentry *const *)x;
	const ferry__rentry *b = *(const ferry__rentry *const *)y;
	return ferry__path_cmp(a->path, a->path_len, b->path, b->path_len);
}

/* A name listed twice in one listing: MARK_DUP on every copy (the plan
 * refuses them).  0 or FERRY_ENOMEM. */
static int mark_dups(ferry__rlist *rl, size_t first, size_t end)
{
	size_t n = end - first;
	if (n < 2)
		return 0;
	ferry__rentry **v = ferry__calloc(n, sizeof(*v));
	if (!v)
		return FERRY_ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = &rl->e[first + i];
	qsort(v, n, sizeof(*v), rentry_ptr_cmp);
	for (size_t i = 1; i < n; i++)
		if (!rentry_ptr_cmp(&v[i - 1], &v[i]))
			v[i - 1]->mark = v[i]->mark = MARK_DUP;
	ferry__free(v);
	return 0;
}

static void set_remote(ferry__action *a, const ferry__rentry *re);

/* The file of re, new to the destination: fetched now. */
static void fetch_early(pull *p, const ferry__rentry *re)
{
	if (ferry__grow(&p->early, &p->ecap, p->nearly + 1, sizeof(*p->early),
	                64))
		return;
	ferry__action *a = ferry__calloc(1, sizeof(*a));
	if (!a)
		return;
	a->kind = FERRY__ACT_UPLOAD;
	a->phase = FERRY__PH_FETCH;
	a->entry.path = re->path;
	a->entry.path_len = re->path_len;
	a->entry.type = FERRY__T_FILE;
	set_remote(a, re);
	a->flags = FERRY_CHANGED_NEW;
	if (ferry__fetch_early(p->fx, a) || a->error)
		p->early[p->nearly++] = a;
	else
		ferry__free(a);
}

/* A directory's listing is in (its parents' were before): when the plan
 * will take it as it is, it is made locally (if new) and its new files
 * fetched at once; its subdirectories that qualify are marked for their
 * own turn.  What is judged here is what judge() and plan() will find
 * (one root only: across roots a name can be listed twice); anything
 * else, and every file the destination already holds, is left to the
 * plan. */
static void on_listed(void *ctx, ferry__rlist *rl, size_t dir, unsigned root,
                      size_t first, size_t end)
{
	pull *p = ctx;
	const char *path;
	size_t n;
	uint32_t mode = 0700;
	p->fo.rl = rl;
	if (dir == SIZE_MAX) {
		const ferry__rroot *rt = &rl->roots[root];
		path = rt->prefix;
		n = rt->prefix_len;
		if (n && (ferry__rtemp_name(path, n) ||
		          ferry__reserved_name(path, n, p->o->marker) ||
		          ferry__excludes_match(p->ex, path, n, 1)))
			return;
	} else {
		const ferry__rentry *d = &rl->e[dir];
		if (d->mark != MARK_DIR)
			return;
		path = d->path;
		n = d->path_len;
		mode = d->mode;
	}
	if (n) {
		const lentry *le = find_local(p, path, n);
		if (le && le->st.type != FERRY__T_DIR)
			return; /* replaced by the plan, or refused */
		if (!le && ferry__fetch_mkdir(p->fx, path, n, mode) < 0)
			return; /* the plan's MKDIR reports it */
	}
	if (mark_dups(rl, first, end))
		return;
	const uint32_t need = FERRY__ATTR_PERMISSIONS | FERRY__ATTR_SIZE |
	                      FERRY__ATTR_ACMODTIME;
	for (size_t i = first; i < end; i++) {
		ferry__rentry *e = &rl->e[i];
		int isdir = e->type == FERRY__T_DIR;
		if (e->mark == MARK_DUP || e->temp || e->reserved ||
		    (!isdir && e->type != FERRY__T_FILE) ||
		    ferry__excludes_match(p->ex, e->path, e->path_len, isdir))
			continue;
		if (isdir)
			e->mark = MARK_DIR;
		else if ((e->attr_flags & need) == need &&
		         !find_local(p, e->path, e->path_len))
			fetch_early(p, e);
	}
}

static int early_cmp(const void *x, const void *y)
{
	const ferry__action *a = *(ferry__action *const *)x;
	const ferry__action *b = *(ferry__action *const *)y;
	return ferry__path_cmp(a->entry.path, a->entry.path_len, b->entry.path,
	                       b->entry.path_len);
}

static ferry__action *find_early(const pull *p, const ferry__action *a)
{
	size_t lo = 0, hi = p->nearly;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = early_cmp(&p->early[mid], &a);
		if (c == 0)
			return p->early[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The executor, from the start of the walk when files may come early:
 * not for a dry run, nor when the run may still refuse everything
 * (--max-delete), nor across several roots. */
static int fetch_start(pull *p, int early)
{
	p->fo.sf = p->sf;
	p->fo.dfd = p->dfd;
	p->fo.o = p->o;
	p->fo.report = p->r;
	if (early) {
		const ferry_sync_opts *o = p->o;
		if (o->dry_run || p->dfd < 0 || p->nsrc != 1 ||
		    (o->delete_extraneous && o->max_delete > 0))
			return 0;
	}
	return ferry__fetch_new(&p->fx, &p->fo);
}

static int remote_walk(pull *p)
{
	int error;
	const char **guess = NULL;
	size_t ng = 0;
	if (p->nl && !(guess = ferry__calloc(p->nl, sizeof(*guess))))
		return FERRY_ENOMEM;
	for (size_t i = 0; i < p->nl; i++)
		if (p->l[i].st.type == FERRY__T_DIR)
			guess[ng++] = p->l[i].path;
	ferry__rlist_opts lo = {.paths = (const char *const *)p->rpath,
	                        .prefixes = (const char *const *)p->prefix,
	                        .nroots = p->nsrc,
	                        .ex = p->ex,
	                        .guess = guess,
	                        .nguess = ng,
	                        .strict = 1,
	                        .max_dir_entries = p->o->max_dir_entries,
	                        .max_entries = p->o->max_entries,
	                        .max_name_bytes = p->o->max_name_bytes,
	                        .marker = p->o->marker,
	                        .on_listed = p->fx ? on_listed : NULL,
	                        .ctx = p};
	error = ferry__rlist_start(&p->rl, p->sf, &lo);
	ferry__free(guess);
	if (error)
		return sftp_error(p, error);
	error = ferry__pull_wait(p->sf, ferry__rlist_done, p->rl);
	if (error) {
		if (!ferry__sftp_dead(p->sf))
			ferry__sftp_cancel_all(p->sf, error);
		return sftp_error(p, error);
	}
	ferry__rlist *rl = p->rl;
	if (rl->error) {
		if (ferry__sftp_dead(p->sf))
			return sftp_error(p, ferry__sftp_dead(p->sf));
		return ferry__seterr(
		        p->s, rl->error, "listing the remote sources: %s",
		        rl->errmsg[0] ? rl->errmsg : ferry_strerror(rl->error));
	}
	for (size_t i = 0; i < rl->nbad; i++) {
		p->refused = 1;
		perr(p, rl->bad[i].path, strlen(rl->bad[i].path),
		     rl->bad[i].code, rl->bad[i].msg);
	}
	for (size_t i = 0; i < rl->nfail; i++) {
		char msg[800];
		snprintf(msg, sizeof(msg),
		         "cannot list the remote directory: %s",
		         rl->fail[i].msg);
		perr(p, rl->fail[i].path, strlen(rl->fail[i].path),
		     rl->fail[i].code, msg);
	}
	ferry__rlist_sort(rl);
	if (p->nearly > 1)
		qsort(p->early, p->nearly, sizeof(*p->early), early_cmp);
	return 0;
}

/* The roots that could not be pulled; --delete refused when one is
 * missing or empty. */
static int check_roots(pull *p)
{
	const ferry__rlist *rl = p->rl;
	for (size_t i = 0; i < rl->nroots; i++) {
		const ferry__rroot *rt = &rl->roots[i];
		const char *arg = p->o->sources[i];
		const char *why = NULL;
		char msg[800];
		if (p->o->delete_extraneous &&
		    (rt->state == FERRY__ROOT_MISSING ||
		     (rt->state == FERRY__ROOT_DIR && rt->entries == 0)))
			return ferry__seterr(
			        p->s, FERRY_ENOTFOUND,
			        "refusing --delete: the remote source %s is %s",
			        arg,
			        rt->state == FERRY__ROOT_MISSING ? "missing"
			                                         : "empty");
		if (rt->state == FERRY__ROOT_MISSING)
			why = "no such file or directory on the remote";
		else if (rt->state == FERRY__ROOT_ERROR)
			why = rt->msg;
		else if (rt->state == FERRY__ROOT_NOTDIR && !rt->prefix_len)
			why = "not a directory on the remote";
		if (!why)
			continue;
		snprintf(msg, sizeof(msg), "remote source: %s", why);
		p->refused = 1;
		perr(p, arg, strlen(arg),
		     rt->state == FERRY__ROOT_MISSING ? FERRY_ENOTFOUND
		     : rt->code                       ? rt->code
		                                      : FERRY_EINVALID,
		     msg);
	}
	return 0;
}

/* ---- 4. the plan ---- */

static ferry__action *add_action(pull *p, int kind, int phase, const char *path,
                                 size_t n, int type)
{
	if (ferry__grow(&p->a, &p->acap, p->na + 1, sizeof(*p->a), 64))
		return NULL;
	ferry__action *a = &p->a[p->na++];
	memset(a, 0, sizeof(*a));
	a->kind = (uint8_t)kind;
	a->phase = (uint8_t)phase;
	a->entry.path = path;
	a->entry.path_len = (uint32_t)n;
	a->entry.type = (uint8_t)type;
	return a;
}

static void set_remote(ferry__action *a, const ferry__rentry *re)
{
	a->entry.size = re->size;
	a->entry.mode = (uint16_t)(re->mode & 0777);
	a->entry.mtime_ns = (int64_t)re->mtime * NS;
	a->src = re->root;
	if (!(re->attr_flags & FERRY__ATTR_ACMODTIME))
		a->entry.flags |= FERRY__ME_TIMES; /* here: no mtime known */
	if (re->type == FERRY__T_LINK) {
		a->link = re->link;
		a->link_len = re->link_len;
	}
}

/* Where a symlink's target leads, taken name by name from the link's
 * directory: 0 when it is absolute, climbs above the destination, or
 * passes through a symlink of the listing (its ".." would then not be
 * the one read here). */
static int link_inside(const ferry__rlist *rl, const char *path, size_t n,
                       const char *t, size_t tl)
{
	char cur[2 * FERRY__PATH_MAX];
	if (tl == 0 || t[0] == '/' || tl >= FERRY__PATH_MAX)
		return 0;
	size_t cl = ferry__path_dirlen(path, n);
	memcpy(cur, path, cl);
	for (size_t pos = 0; pos < tl;) {
		size_t e = pos;
		while (e < tl && t[e] != '/')
			e++;
		const char *c = t + pos;
		size_t k = e - pos;
		int last = e >= tl;
		pos = e + 1;
		if (k == 0 || (k == 1 && c[0] == '.'))
			continue;
		if (k == 2 && c[0] == '.' && c[1] == '.') {
			if (cl == 0)
				return 0;
			cl = ferry__path_dirlen(cur, cl);
			continue;
		}
		if (cl + 1 + k >= sizeof(cur))
			return 0;
		if (cl)
			cur[cl++] = '/';
		memcpy(cur + cl, c, k);
		cl += k;
		const ferry__rentry *x = ferry__rlist_find(rl, cur, cl);
		if (!last && x && x->type == FERRY__T_LINK)
			return 0;
	}
	return 1;
}

/* Whether a remote entry can come home: 1 yes, 0 no (reported, or
 * skipped silently when it is ferry's own or excluded). */
static int judge(pull *p, const ferry__rentry *re)
{
	const char *path = re->path;
	size_t n = re->path_len;
	if (re->dup) {
		if (!p->last_dup || p->last_dup_n != n ||
		    memcmp(p->last_dup, path, n)) {
			p->refused = 1;
			perr(p, path, n, FERRY_EPROTO,
			     "refused: the server listed this name twice "
			     "(nothing written)");
		}
		p->last_dup = path;
		p->last_dup_n = n;
		return 0;
	}
	if (re->temp || re->reserved ||
	    ferry__excludes_match(p->ex, path, n, re->type == FERRY__T_DIR))
		return 0;
	uint32_t need = FERRY__ATTR_PERMISSIONS;
	if (re->type == FERRY__T_FILE)
		need |= FERRY__ATTR_SIZE | FERRY__ATTR_ACMODTIME;
	if (re->type == FERRY__T_NONE) {
		ferry__report_warn(p->o->log, p->o->ctx, FERRY_LOG_WARN, path,
		                   n,
		                   (re->attr_flags & FERRY__ATTR_PERMISSIONS)
		                           ? "skipping a special file on the "
		                             "remote"
		                           : "skipping: the server gave no "
		                             "type for it");
		return 0;
	}
	if ((re->attr_flags & need) != need) {
		p->refused = 1;
		perr(p, path, n, FERRY_EPROTO,
		     "refused: the server listed it without its size, mode "
		     "or mtime");
		return 0;
	}
	if (re->type == FERRY__T_LINK) {
		if (re->link_state != FERRY__RL_DONE) {
			p->refused = 1;
			perr(p, path, n, FERRY_EREMOTE,
			     "cannot read the remote symlink");
			return 0;
		}
		if (!link_inside(p->rl, path, n, re->link, re->link_len)) {
			ferry__report_warn(
			        p->o->log, p->o->ctx, FERRY_LOG_WARN, path, n,
			        "skipping symlink: its target leaves "
			        "the destination");
			return 0;
		}
	}
	return 1;
}

static int hash_local(pull *p, const ferry__action *a, ferry__hash *h,
                      uint64_t *nread)
{
	ferry__ldir *dc = ferry__ldir_new(p->dfd);
	if (!dc)
		return FERRY_ENOMEM;
	size_t dl = ferry__path_dirlen(a->entry.path, a->entry.path_len);
	const char *name = a->entry.path + (dl ? dl + 1 : 0);
	int fd = ferry__ldir_get(dc, a->entry.path, dl);
	int error = fd < 0 ? ferry__errno_code(errno)
	                   : ferry__hash_file_at(h, nread, fd, name, NULL, 0);
	ferry__ldir_free(dc);
	return error;
}

/* Both sides hold a regular file. */
static int plan_file(pull *p, const ferry__rentry *re, const lentry *le)
{
	uint32_t want = re->mode & 0777;
	int64_t d = le->st.mtime_ns - (int64_t)re->mtime * NS;
	unsigned flags =
	        (le->st.size != re->size ? FERRY_CHANGED_SIZE : 0) |
	        (d < 0 || d >= NS ? FERRY_CHANGED_MTIME : 0) |
	        ((le->st.mode & 07777) != want ? FERRY_CHANGED_MODE : 0);
	if (!(flags & (FERRY_CHANGED_SIZE | FERRY_CHANGED_MTIME)) &&
	    !p->o->checksum) {
		if (!flags)
			return 0;
		ferry__action *a =
		        add_action(p, FERRY__ACT_META, FERRY__PH_META, re->path,
		                   re->path_len, FERRY__T_FILE);
		if (!a)
			return FERRY_ENOMEM;
		set_remote(a, re);
		a->flags = flags;
		return 0;
	}
	ferry__action *a = add_action(p, FERRY__ACT_UPLOAD, FERRY__PH_FETCH,
	                              re->path, re->path_len, FERRY__T_FILE);
	if (!a)
		return FERRY_ENOMEM;
	set_remote(a, re);
	a->flags = flags;
	if (!(flags & (FERRY_CHANGED_SIZE | FERRY_CHANGED_MTIME))) {
		uint64_t nread = 0;
		int error = hash_local(p, a, &a->entry.hash, &nread);
		if (error == FERRY_ENOMEM)
			return error;
		if (!error && nread == re->size)
			a->flags |= FERRY__ACT_CHECK;
		else
			a->flags |= FERRY_CHANGED_CONTENT;
	}
	p->bytes_total += re->size;
	return 0;
}

/* A remote entry to make locally (flags: NEW, or TYPE when it replaces a
 * local entry of another type). */
static int plan_create(pull *p, const ferry__rentry *re, unsigned flags)
{
	static const int kind[] = {
	        [FERRY__T_FILE] = FERRY__ACT_UPLOAD,
	        [FERRY__T_DIR] = FERRY__ACT_MKDIR,
	        [FERRY__T_LINK] = FERRY__ACT_SYMLINK,
	};
	static const int phase[] = {
	        [FERRY__T_FILE] = FERRY__PH_FETCH,
	        [FERRY__T_DIR] = FERRY__PH_MKDIR,
	        [FERRY__T_LINK] = FERRY__PH_LINK,
	};
	ferry__action *a = add_action(p, kind[re->type], phase[re->type],
	                              re->path, re->path_len, re->type);
	if (!a)
		return FERRY_ENOMEM;
	set_remote(a, re);
	a->flags = flags;
	if (re->type == FERRY__T_FILE)
		p->bytes_total += re->size;
	return 0;
}

/* The mode and mtime of every directory, set last (deepest first);
 * reported when the mode changes. */
static int plan_dir_attrs(pull *p, const ferry__rentry *re, const lentry *le)
{
	ferry__action *a = add_action(p, FERRY__ACT_META, FERRY__PH_DIRMETA,
	                              re->path, re->path_len, FERRY__T_DIR);
	if (!a)
		return FERRY_ENOMEM;
	set_remote(a, re);
	a->flags = FERRY__CHANGED_DIR | FERRY__ACT_QUIET;
	if (le && le->st.type == FERRY__T_DIR &&
	    (le->st.mode & 07777) != (re->mode & 0777))
		a->flags = FERRY__CHANGED_DIR | FERRY_CHANGED_MODE;
	return 0;
}

static int plan_remove(pull *p, const lentry *le, int phase, unsigned flags)
{
	int dir = le->st.type == FERRY__T_DIR;
	ferry__action *a =
	        add_action(p, dir ? FERRY__ACT_RMDIR : FERRY__ACT_DELETE, phase,
	                   le->path, le->path_len, le->st.type);
	if (!a)
		return FERRY_ENOMEM;
	a->flags = flags | (dir ? FERRY__CHANGED_DIR : 0);
	a->entry.size = le->st.size;
	a->entry.mode = (uint16_t)le->st.mode;
	return 0;
}

/* Both sides hold the path.  *lskip: the local entry's subtree is done
 * with (removed with it, or kept as it is). */
static int plan_both(pull *p, const ferry__rentry *re, const lentry *le,
                     int *lskip)
{
	int rt = re->type, lt = le->st.type;
	if (rt == lt) {
		if (rt == FERRY__T_FILE)
			return plan_file(p, re, le);
		if (rt == FERRY__T_DIR)
			return plan_dir_attrs(p, re, le);
		if (le->link_len == re->link_len &&
		    !memcmp(le->link, re->link, re->link_len))
			return 0;
		return plan_create(p, re, 0);
	}
	if (lt == FERRY__T_DIR) {
		*lskip = 1;
		if (!p->o->delete_extraneous) {
			p->refused = 1;
			perr(p, le->path, le->path_len, FERRY_EEXIST,
			     "a local directory is in the way of the remote "
			     "file (--delete replaces it)");
			return 0;
		}
	}
	int error = plan_remove(p, le, FERRY__PH_REMOVE,
	                        FERRY__ACT_QUIET | FERRY_CHANGED_TYPE);
	if (!error)
		error = plan_create(p, re, FERRY_CHANGED_TYPE);
	if (!error && rt == FERRY__T_DIR)
		error = plan_dir_attrs(p, re, NULL);
	return error;
}

static int plan_local_only(pull *p, const lentry *le)
{
	if (!p->o->delete_extraneous)
		return 0;
	p->extraneous++;
	return plan_remove(p, le,
	                   le->st.type == FERRY__T_DIR ? FERRY__PH_RMDIR
	                                               : FERRY__PH_DELETE,
	                   FERRY__ACT_EXTRANEOUS);
}

static int under(const char *skip, size_t sn, const char *q, size_t n)
{
	return skip && ferry__path_under(q, n, skip, sn);
}

/* The destination's own mode and mtime: those of the first root copied
 * by its contents. */
static int plan_dest_attrs(pull *p)
{
	for (size_t i = 0; i < p->rl->nroots; i++) {
		const ferry__rroot *rt = &p->rl->roots[i];
		if (rt->prefix_len || rt->state != FERRY__ROOT_DIR ||
		    !(rt->attrs.flags & FERRY__ATTR_PERMISSIONS))
			continue;
		ferry__action *a =
		        add_action(p, FERRY__ACT_META, FERRY__PH_DIRMETA, "", 0,
		                   FERRY__T_DIR);
		if (!a)
			return FERRY_ENOMEM;
		a->entry.mode = (uint16_t)((rt->attrs.perm & 0777) | 0700);
		a->entry.mtime_ns = (int64_t)rt->attrs.mtime * NS;
		if (!(rt->attrs.flags & FERRY__ATTR_ACMODTIME))
			a->entry.flags |= FERRY__ME_TIMES;
		a->flags = FERRY__CHANGED_DIR | FERRY__ACT_QUIET;
		return 0;
	}
	return 0;
}

static int plan(pull *p)
{
	const ferry__rlist *rl = p->rl;
	const char *rskip = NULL, *lskip = NULL;
	size_t rsn = 0, lsn = 0, i = 0, j = 0;
	int error = 0;
	double t = ferry__now_ms_f();
	while (!error && (i < rl->n || j < p->nl)) {
		const ferry__rentry *re = i < rl->n ? &rl->e[i] : NULL;
		const lentry *le = j < p->nl ? &p->l[j] : NULL;
		if (re && under(rskip, rsn, re->path, re->path_len)) {
			i++;
			continue;
		}
		if (le && under(lskip, lsn, le->path, le->path_len)) {
			j++;
			continue;
		}
		int c = !re   ? 1
		        : !le ? -1
		              : ferry__path_cmp(re->path, re->path_len,
		                                le->path, le->path_len);
		if (c > 0) {
			error = plan_local_only(p, le);
			j++;
			continue;
		}
		i++;
		if (re->type == FERRY__T_FILE || re->type == FERRY__T_LINK)
			p->r->files_scanned++;
		else if (re->type == FERRY__T_DIR)
			p->r->dirs_scanned++;
		if (!judge(p, re)) {
			/* Neither side of it is touched. */
			if (re->type == FERRY__T_DIR) {
				rskip = re->path;
				rsn = re->path_len;
			}
			if (c == 0) {
				lskip = le->path;
				lsn = le->path_len;
				j++;
			}
			continue;
		}
		if (c < 0) {
			error = plan_create(p, re, FERRY_CHANGED_NEW);
			if (!error && re->type == FERRY__T_DIR)
				error = plan_dir_attrs(p, re, NULL);
			continue;
		}
		int skip = 0;
		error = plan_both(p, re, le, &skip);
		if (skip) {
			lskip = le->path;
			lsn = le->path_len;
		}
		j++;
	}
	if (!error)
		error = plan_dest_attrs(p);
	p->r->ms_plan += ferry__now_ms_f() - t;
	return error;
}

/* The deletion policy (as a push's): none after a refusal or an
 * unreadable directory; max_delete. */
static int deletion_policy(pull *p, int *allowed)
{
	const ferry_sync_opts *o = p->o;
	*allowed = 0;
	if (!o->delete_extraneous || !p->extraneous)
		return 0;
	if (p->refused || p->rl->nfail || (p->scan && p->scan->incomplete) ||
	    p->r->error_count) {
		plog(p, FERRY_LOG_WARN,
		     "some entries could not be read or were refused: "
		     "skipping deletion");
		return 0;
	}
	if (o->max_delete < 0) {
		plog(p, FERRY_LOG_WARN,
		     "--max-delete=0: %llu deletion%s skipped",
		     (unsigned long long)p->extraneous,
		     p->extraneous == 1 ? "" : "s");
		return 0;
	}
	if (o->max_delete > 0 && p->extraneous > (uint64_t)o->max_delete)
		return ferry__seterr(p->s, FERRY_EPARTIAL,
		                     "refusing to delete %llu local entries "
		                     "(--max-delete %lld): nothing changed",
		                     (unsigned long long)p->extraneous,
		                     o->max_delete);
	*allowed = 1;
	return 0;
}

/* Execution order: by phase, in tree order; deepest first where a
 * directory must come after what is inside it. */
static int order(pull *p, int deletions)
{
	ferry__action *v = NULL;
	if (p->na && !(v = ferry__calloc(p->na, sizeof(*v))))
		return FERRY_ENOMEM;
	size_t k = 0;
	for (int ph = 0; ph < FERRY__PH_COUNT; ph++) {
		int rev = ph == FERRY__PH_RMDIR || ph == FERRY__PH_DIRMETA;
		for (size_t x = 0; x < p->na; x++) {
			ferry__action *a = &p->a[rev ? p->na - 1 - x : x];
			if (a->phase != ph)
				continue;
			if ((a->flags & FERRY__ACT_EXTRANEOUS) && !deletions)
				continue;
			v[k++] = *a;
		}
	}
	ferry__free(p->a);
	p->a = v;
	p->na = k;
	p->acap = k;
	return 0;
}

/* ---- the report ---- */

/* The message of a failed action: its error in the report (they were
 * added in execution order). */
static const char *errmsg_of(const pull *p, const ferry__action *a,
                             size_t *cursor)
{
	const ferry_sync_report *r = p->r;
	for (size_t k = 0; k < r->error_count; k++) {
		size_t i = (*cursor + k) % r->error_count;
		if (!strcmp(r->errors[i].path, a->entry.path)) {
			*cursor = i + 1;
			return r->errors[i].message;
		}
	}
	return NULL;
}

static void report(pull *p)
{
	const ferry_sync_opts *o = p->o;
	size_t cursor = 0;
	for (size_t i = 0; i < p->na; i++) {
		const ferry__action *a = &p->a[i];
		if (!ferry__action_visible(a) || (!a->committed && !a->error))
			continue;
		if (a->committed && !a->error)
			ferry__action_count(a, p->r);
		if (o->on_change) {
			ferry_change c;
			ferry__action_change(a, &c);
			if (a->error)
				c.errmsg = errmsg_of(p, a, &cursor);
			o->on_change(o->ctx, &c);
		}
	}
}

static void report_planned(pull *p)
{
	for (size_t i = 0; i < p->na; i++)
		if (!p->a[i].error)
			p->a[i].committed = 1;
	report(p);
	for (size_t i = 0; i < p->na; i++)
		p->a[i].committed = 0;
}

/* ---- the pull ---- */

static int execute(pull *p, int deletions, int check_only)
{
	ferry__fetch_opts *fo = &p->fo;
	fo->a = p->a;
	fo->n = p->na;
	fo->rl = p->rl;
	fo->temps = p->temps;
	fo->ntemps = p->ntemps;
	fo->deletions = deletions;
	fo->check_only = check_only;
	fo->bytes_total = p->bytes_total;
	if (!p->fx && fetch_start(p, 0))
		return ferry__seterr(p->s, FERRY_ENOMEM, "out of memory");
	/* The files fetched during the walk: their outcome is theirs. */
	for (size_t i = 0; p->nearly && i < p->na; i++)
		if (p->a[i].kind == FERRY__ACT_UPLOAD &&
		    find_early(p, &p->a[i]))
			p->a[i].flags |= FERRY__ACT_EARLY;
	ferry__fetch_result fr;
	/* The plan's requests wait for the walk only, not for the early
	 * fetches' replies that came in beside its last ones. */
	ferry__sftp_gen_base(p->sf, p->rl->gen);
	int error = ferry__fetch_run(p->fx, &fr);
	ferry__sftp_gen_base(p->sf, 0);
	for (size_t i = 0; i < p->na; i++) {
		ferry__action *a = &p->a[i];
		const ferry__action *e;
		if (!(a->flags & FERRY__ACT_EARLY) || !(e = find_early(p, a)))
			continue;
		a->flags &= ~(uint32_t)FERRY__ACT_EARLY;
		a->committed = e->committed;
		a->error = e->error;
	}
	p->r->bytes_sent += fr.bytes;
	if (error)
		return ferry__seterr(p->s, error, "%s", fr.fatal_msg);
	return 0;
}

static int do_pull(pull *p)
{
	const ferry_sync_opts *o = p->o;
	int error;
	if ((error = check_opts(p)))
		return error;
	if ((error = make_roots(p)))
		return ferry__seterr(p->s, error, "out of memory");
	if ((error = ferry__excludes_from_opts(&p->ex, o, p->err,
	                                       sizeof(p->err))))
		return ferry__seterr(p->s, error, "%s", p->err);
	if ((error = ferry__session_sftp_begin(p->s, NULL, &p->sf)))
		return error;
	if ((error = local_walk(p)))
		return error;
	if ((error = fetch_start(p, 1)))
		return ferry__seterr(p->s, error, "out of memory");
	double t = ferry__now_ms_f();
	error = remote_walk(p);
	p->r->ms_transfer += ferry__now_ms_f() - t;
	if (error)
		return error;
	p->r->verified = 1;
	if ((error = check_roots(p)) || (error = plan(p)))
		return error == FERRY_ENOMEM
		               ? ferry__seterr(p->s, error, "out of memory")
		               : error;
	int deletions;
	if ((error = deletion_policy(p, &deletions)))
		return error;
	if ((error = order(p, deletions)))
		return ferry__seterr(p->s, error, "out of memory");
	t = ferry__now_ms_f();
	if (o->dry_run) {
		int checks = 0;
		for (size_t i = 0; i < p->na; i++)
			checks |= (p->a[i].flags & FERRY__ACT_CHECK) != 0;
		if (checks && (error = execute(p, 0, 1)))
			return error;
		report_planned(p);
	} else {
		error = execute(p, deletions, 0);
		report(p);
	}
	p->r->ms_transfer += ferry__now_ms_f() - t;
	if (error)
		return error;
	if (p->r->error_count)
		return ferry__seterr(p->s, FERRY_EPARTIAL,
		                     "%zu entr%s could not be pulled",
		                     p->r->error_count,
		                     p->r->error_count == 1 ? "y" : "ies");
	return 0;
}

static void pull_free(pull *p)
{
	/* Callbacks of the walk still in flight must not outlive it. */
	if (p->sf && p->rl && !ferry__rlist_done(p->rl) &&
	    !ferry__sftp_dead(p->sf))
		ferry__sftp_cancel_all(p->sf, FERRY_EINTR);
	ferry__fetch_free(p->fx);
	for (size_t i = 0; i < p->nearly; i++)
		ferry__free(p->early[i]);
	ferry__free(p->early);
	ferry__rlist_free(p->rl);
	ferry__scan_free(p->scan);
	ferry__excludes_free(p->ex);
	if (p->dfd >= 0)
		close(p->dfd);
	for (size_t i = 0; i < p->nsrc; i++) {
		if (p->rpath)
			ferry__free(p->rpath[i]);
		if (p->prefix)
			ferry__free(p->prefix[i]);
	}
	ferry__free(p->rpath);
	ferry__free(p->prefix);
	ferry__free(p->l);
	ferry__free(p->temps);
	ferry__free(p->a);
	ferry__arena_free(&p->arena);
}

static int pull_run(ferry_session *s, const ferry_sync_opts *opts,
                    ferry_sync_report *report)
{
	ferry_sync_report tmp;
	if (!report)
		report = &tmp;
	memset(report, 0, sizeof(*report));
	if (!s)
		return FERRY_EINVALID;
	ferry_sync_opts oc;
	ferry__sync_opts_copy(&oc, opts);
	if (opts)
		opts = &oc;
	double t0 = ferry__now_ms_f();
	uint64_t rt0 = ferry__session_round_trips(s);
	ferry__sftp *sf0 = ferry__session_sftp_peek(s);
	ferry__sftp_stats st0;
	memset(&st0, 0, sizeof(st0));
	if (sf0)
		ferry__sftp_stats_get(sf0, &st0);
	pull p;
	memset(&p, 0, sizeof(p));
	p.s = s;
	p.o = opts;
	p.r = report;
	p.dfd = -1;
	ferry__arena_init(&p.arena);
	int error = do_pull(&p);
	pull_free(&p);
	report->round_trips = ferry__session_round_trips(s) - rt0;
	ferry__sftp *sf = ferry__session_sftp_peek(s);
	if (sf) {
		ferry__sftp_stats st;
		ferry__sftp_stats_get(sf, &st);
		report->requests = st.requests - (sf == sf0 ? st0.requests : 0);
	}
	report->ms_total = ferry__now_ms_f() - t0;
	if (report == &tmp)
		ferry_sync_report_free(&tmp);
	return error;
}

int ferry_pull(ferry_session *s, const ferry_sync_opts *opts,
               ferry_sync_report *report)
{
	return ferry__sftp_call(s, opts, report, pull_run);
}
