#include "sync/verify.h"

#include <string.h>

#include "alloc.h"
#include "ferry.h"
#include "hash.h"
#include "sync/path.h"
#include "sync/pmap.h"
#include "sync/util.h"

#define NONE_IDX FERRY__PMAP_NONE

/* ---- pending deletions ---- */

typedef struct pdel {
	const char *path; /* the listing's */
	size_t n;
	int type;
	unsigned flags;
	int dropped;
} pdel;

typedef struct vctx {
	ferry__plan *p;
	ferry__manifest *m;
	const ferry__rlist *rl;
	const char *dest;
	int checksum;
	ferry__verify_result *res;
	ferry__pmap removals; /* path -> index of a plan removal */
	uint8_t *seen;        /* per plan action */
	pdel *del;
	size_t ndel, capdel;
	/* remote-only directories being deleted: ancestors of the current
	 * entry; (index << 1) | is_plan_action */
	size_t *ext;
	size_t next, capext;
} vctx;

static int del_type(int rtype)
{
	return rtype == FERRY__T_DIR    ? FERRY__T_DIR
	       : rtype == FERRY__T_LINK ? FERRY__T_LINK
	                                : FERRY__T_FILE;
}

static int add_pdel(vctx *v, const ferry__rentry *r, unsigned flags)
{
	if (ferry__grow(&v->del, &v->capdel, v->ndel + 1, sizeof(*v->del), 64))
		return FERRY_ENOMEM;
	pdel *d = &v->del[v->ndel++];
	d->path = r->path;
	d->n = r->path_len;
	d->type = del_type(r->type);
	d->flags = flags;
	d->dropped = 0;
	return 0;
}

static int push_ext(vctx *v, size_t code)
{
	if (ferry__grow(&v->ext, &v->capext, v->next + 1, sizeof(*v->ext), 32))
		return FERRY_ENOMEM;
	v->ext[v->next++] = code;
	return 0;
}

static const char *ext_path(const vctx *v, size_t code, size_t *n)
{
	size_t i = code >> 1;
	if (code & 1) {
		*n = v->p->a[i].entry.path_len;
		return v->p->a[i].entry.path;
	}
	*n = v->del[i].n;
	return v->del[i].path;
}

/* Keep the directories holding an excluded entry: drop their deletion. */
static void protect_ancestors(vctx *v)
{
	for (size_t k = 0; k < v->next; k++) {
		size_t code = v->ext[k], i = code >> 1;
		if (code & 1)
			ferry__plan_promote(v->p, &v->p->a[i], FERRY__ACT_NONE,
			                    0);
		else
			v->del[i].dropped = 1;
	}
}

static int add_temp(vctx *v, const ferry__rentry *r)
{
	char *rp = ferry__rpath(v->dest, r->path, r->path_len);
	char **nt = ferry__reallocarray(v->res->temps, v->res->ntemps + 1,
	                                sizeof(*nt));
	if (!rp || !nt) {
		ferry__free(rp);
		if (nt)
			v->res->temps = nt;
		return FERRY_ENOMEM;
	}
	v->res->temps = nt;
	nt[v->res->ntemps++] = rp;
	/* Removing it changes its directory's mtime: set it again after. */
	size_t dl = ferry__path_dirlen(r->path, r->path_len);
	ferry__action *d = dl ? ferry__plan_find(v->p, r->path, dl) : NULL;
	if (d && d->entry.type == FERRY__T_DIR &&
	    (d->kind == FERRY__ACT_NONE || d->kind == FERRY__ACT_RECORD)) {
		ferry__plan_promote(v->p, d, FERRY__ACT_META,
		                    FERRY_CHANGED_MTIME | FERRY__ACT_QUIET);
		d->entry.flags |= FERRY__ME_TIMES;
	}
	return 0;
}

static void promote(vctx *v, ferry__action *a, int kind, unsigned flags)
{
	if (kind == FERRY__ACT_UPLOAD && !(a->entry.flags & FERRY__ME_HASHED))
		flags |= FERRY__ACT_UNHASHED;
	ferry__plan_promote(v->p, a, kind, flags);
	v->res->changed++;
}

static void demote_record(vctx *v, ferry__action *a)
{
	if (a->kind == FERRY__ACT_UPLOAD && v->p->bytes_upload >= a->entry.size)
		v->p->bytes_upload -= a->entry.size;
	int was_upload = a->kind == FERRY__ACT_UPLOAD;
	a->kind = FERRY__ACT_RECORD;
	a->flags &= ~(uint32_t)(FERRY_CHANGED_NEW | FERRY_CHANGED_CONTENT |
	                        FERRY_CHANGED_SIZE | FERRY_CHANGED_MTIME |
	                        FERRY_CHANGED_MODE | FERRY_CHANGED_TYPE);
	v->res->changed++;
	/* Record its hash so that a later touch is a metadata update. */
	if (was_upload && (a->flags & FERRY__ACT_UNHASHED))
		(void)ferry__action_hash_local(v->p, a);
}

static void compare_file(vctx *v, ferry__action *a, const ferry__rentry *r)
{
	const ferry__mentry *e = &a->entry;
	int ssize = r->size == e->size;
	int smtime = r->mtime == ferry__mtime_s(e->mtime_ns);
	int smode = r->mode == e->mode;
	unsigned fl = FERRY_CHANGED_CONTENT;
	if (!ssize)
		fl |= FERRY_CHANGED_SIZE;
	if (!smtime)
		fl |= FERRY_CHANGED_MTIME;
	if (!smode)
		fl |= FERRY_CHANGED_MODE;
	switch (a->kind) {
	case FERRY__ACT_NONE:
	case FERRY__ACT_RECORD:
		if (!ssize || !smtime)
			promote(v, a, FERRY__ACT_UPLOAD, fl);
		else if (!smode)
			promote(v, a, FERRY__ACT_META, FERRY_CHANGED_MODE);
		break;
	case FERRY__ACT_META: {
		if (ssize && smtime && smode) {
			demote_record(v, a);
			break;
		}
		const ferry__mentry *old =
		        ferry__manifest_find(v->m, e->path, e->path_len);
		if (!old || old->type != FERRY__T_FILE ||
		    r->size != old->size ||
		    r->mtime != ferry__mtime_s(old->mtime_ns))
			promote(v, a, FERRY__ACT_UPLOAD, fl);
		break;
	}
	case FERRY__ACT_UPLOAD:
		if ((a->flags & FERRY_CHANGED_NEW) && ssize && smtime &&
		    smode && !v->checksum) {
			demote_record(v, a);
			break;
		}
		if (a->flags & FERRY_CHANGED_NEW) {
			a->flags &= ~(uint32_t)FERRY_CHANGED_NEW;
			a->flags |= fl;
		}
		break;
	default:
		break;
	}
}

static void compare_dir(vctx *v, ferry__action *a, const ferry__rentry *r)
{
	int smode = r->mode == a->entry.mode;
	int smtime = r->mtime == ferry__mtime_s(a->entry.mtime_ns);
	unsigned fl = (smode ? 0 : FERRY_CHANGED_MODE) |
	              (smtime ? 0 : FERRY_CHANGED_MTIME);
	if (fl == FERRY_CHANGED_MTIME)
		fl |= FERRY__ACT_QUIET; /* set, not reported (plan.c) */
	switch (a->kind) {
	case FERRY__ACT_NONE:
	case FERRY__ACT_RECORD:
		if (fl)
			promote(v, a, FERRY__ACT_META, fl);
		break;
	case FERRY__ACT_MKDIR:
		if (!fl) {
			demote_record(v, a);
		} else {
			a->kind = FERRY__ACT_META;
			a->flags &= ~(uint32_t)(FERRY_CHANGED_NEW |
			                        FERRY_CHANGED_TYPE);
			a->flags |= fl;
			v->res->changed++;
		}
		break;
	case FERRY__ACT_META:
		if (!fl && !(a->flags & FERRY__ACT_QUIET))
			demote_record(v, a);
		break;
	default:
		break;
	}
	/* Set by this push, or seen right on the remote. */
	if (a->kind == FERRY__ACT_META || !fl)
		a->entry.flags |= FERRY__ME_TIMES;
	else
		a->entry.flags &= (uint8_t)~FERRY__ME_TIMES;
}

static int compare_link(vctx *v, ferry__action *a, const ferry__rentry *r)
{
	int same = 0;
	if (r->link_state == FERRY__RL_DONE) {
		char *rp = ferry__rpath(v->dest, r->path, r->path_len);
		if (!rp)
			return FERRY_ENOMEM;
		same = ferry__sftp_link_same(v->rl->sf, rp, r->link,
		                             r->link_len, a->link, a->link_len);
		ferry__free(rp);
	}
	switch (a->kind) {
	case FERRY__ACT_NONE:
	case FERRY__ACT_RECORD:
		if (!same)
			promote(v, a, FERRY__ACT_SYMLINK,
			        FERRY_CHANGED_CONTENT);
		break;
	case FERRY__ACT_SYMLINK:
		if (same)
			demote_record(v, a);
		else if (a->flags & FERRY_CHANGED_NEW) {
			a->flags &= ~(uint32_t)FERRY_CHANGED_NEW;
			a->flags |= FERRY_CHANGED_CONTENT;
		}
		break;
	default:
		break;
	}
	return 0;
}

static int create_kind(int type)
{
	return type == FERRY__T_DIR    ? FERRY__ACT_MKDIR
	       : type == FERRY__T_LINK ? FERRY__ACT_SYMLINK
	                               : FERRY__ACT_UPLOAD;
}

/* The creation action at path (not a removal), or NONE_IDX. */
static size_t creation_at(vctx *v, const char *path, size_t n)
{
	ferry__action *a = ferry__plan_find(v->p, path, n);
	if (!a || ferry__action_is_removal(a))
		return NONE_IDX;
	return (size_t)(a - v->p->a);
}

static void fix_removal_type(vctx *v, ferry__action *a, int rtype)
{
	ferry__plan_retype_removal(v->p, a, del_type(rtype));
}

/* A remote entry at the path of a local creation (p->a[ai]); ri: a
 * planned removal of that path, or NONE_IDX. */
static int visit_created(vctx *v, const ferry__rentry *r, size_t ai, size_t ri,
                         const char **kill, size_t *killn)
{
	ferry__plan *p = v->p;
	ferry__action *a = &p->a[ai];
	v->seen[ai] = 1;
	int lt = a->entry.type;
	if (r->type != lt) {
		if (ri != NONE_IDX) {
			fix_removal_type(v, &p->a[ri], r->type);
			ferry__plan_promote(p, &p->a[ri], p->a[ri].kind,
			                    FERRY_CHANGED_TYPE);
		} else {
			int error = add_pdel(v, r, FERRY_CHANGED_TYPE);
			if (error)
				return error;
		}
		if (r->type == FERRY__T_DIR) {
			*kill = r->path;
			*killn = r->path_len;
		}
		int kind = create_kind(lt);
		if (a->kind != kind || !(a->flags & FERRY_CHANGED_TYPE))
			promote(v, a, kind, FERRY_CHANGED_TYPE);
		return 0;
	}
	if (ri != NONE_IDX)
		ferry__action_done(&p->a[ri]); /* already the local type */
	if (lt == FERRY__T_FILE)
		compare_file(v, a, r);
	else if (lt == FERRY__T_DIR)
		compare_dir(v, a, r);
	else
		return compare_link(v, a, r);
	return 0;
}

/* A remote entry with a planned removal (p->a[ri]) and no creation. */
static int visit_removed(vctx *v, const ferry__rentry *r, size_t ri,
                         const char **kill, size_t *killn)
{
	ferry__action *a = &v->p->a[ri];
	fix_removal_type(v, a, r->type);
	if (r->type != FERRY__T_DIR)
		return 0;
	if (a->flags & FERRY_CHANGED_TYPE) {
		*kill = r->path;
		*killn = r->path_len;
		return 0;
	}
	return push_ext(v, ri << 1 | 1);
}

static int visit_remote(vctx *v, const ferry__rentry *r, const char **kill,
                        size_t *killn)
{
	ferry__plan *p = v->p;
	const char *path = r->path;
	size_t n = r->path_len;
	size_t ri = ferry__pmap_get(&v->removals, path, n);
	int error;

	if (*kill && ferry__path_under(path, n, *kill, *killn)) {
		if (ri != NONE_IDX) {
			v->seen[ri] = 1;
			fix_removal_type(v, &p->a[ri], r->type);
			return 0;
		}
		return add_pdel(v, r, FERRY_CHANGED_TYPE);
	}
	*kill = NULL;
	while (v->next > 0) {
		size_t an;
		const char *ap = ext_path(v, v->ext[v->next - 1], &an);
		if (ferry__path_under(path, n, ap, an))
			break;
		v->next--;
	}
	const char *mk = v->rl->o.marker;
	if ((n == sizeof(FERRY__MARKER_NAME) - 1 &&
	     memcmp(path, FERRY__MARKER_NAME, n) == 0) ||
	    (mk && strlen(mk) == n && memcmp(path, mk, n) == 0))
		return 0; /* the marker (or an old .ferry-id) */
	size_t ai = creation_at(v, path, n);
	if (r->temp && ai == NONE_IDX && ri == NONE_IDX)
		return r->type == FERRY__T_DIR ? 0 : add_temp(v, r);
	if (ri != NONE_IDX)
		v->seen[ri] = 1;
	if (ai != NONE_IDX)
		return visit_created(v, r, ai, ri, kill, killn);
	if (ri != NONE_IDX)
		return visit_removed(v, r, ri, kill, killn);
	if (ferry__excludes_match_tree(p->o.excludes, path, n,
	                               r->type == FERRY__T_DIR)) {
		protect_ancestors(v);
		return 0;
	}
	if ((error = add_pdel(v, r, 0)))
		return error;
	if (r->type == FERRY__T_DIR)
		return push_ext(v, (v->ndel - 1) << 1);
	return 0;
}

/* 1 when the remote state of path's parent is known: the parent was
 * listed, or does not exist remotely as a directory. */
static int parent_known(const vctx *v, const char *path, size_t n)
{
	size_t dl = ferry__path_dirlen(path, n);
	if (dl == 0)
		return 1;
	const ferry__rentry *r = ferry__rlist_find(v->rl, path, dl);
	if (!r || r->type != FERRY__T_DIR)
		return 1;
	return r->listed;
}

static void unseen(vctx *v, ferry__action *a, int root_missing)
{
	if (!root_missing && !parent_known(v, a->entry.path, a->entry.path_len))
		return;
	if (ferry__action_is_removal(a)) {
		if (!a->committed)
			ferry__action_done(a);
		return;
	}
	int kind = create_kind(a->entry.type);
	/* The mode fix of a new directory goes with its MKDIR; a quiet
	 * META alone (a directory's new mtime) is the directory's only
	 * action, and it must be made. */
	if (a->kind == FERRY__ACT_META && (a->flags & FERRY__ACT_QUIET) &&
	    ferry__plan_find(v->p, a->entry.path, a->entry.path_len) != a)
		return;
	if (a->kind == kind && (a->flags & FERRY_CHANGED_NEW))
		return;
	if (a->kind != kind)
		promote(v, a, kind, FERRY_CHANGED_NEW);
	else
		a->flags |= FERRY_CHANGED_NEW;
	a->flags &= ~(uint32_t)(FERRY_CHANGED_CONTENT | FERRY_CHANGED_SIZE |
	                        FERRY_CHANGED_MTIME | FERRY_CHANGED_MODE);
}

int ferry__verify_plan(ferry__plan *p, ferry__manifest *m,
                       const ferry__rlist *rl, const char *dest, int checksum,
                       ferry__verify_result *res)
{
	int error = 0;
	vctx v;
	memset(&v, 0, sizeof(v));
	memset(res, 0, sizeof(*res));
	v.p = p;
	v.m = m;
	v.rl = rl;
	v.dest = dest;
	v.checksum = checksum;
	v.res = res;
	size_t n0 = p->n;
	if (n0) {
		v.seen = ferry__calloc(n0, 1);
		if (!v.seen)
			goto nomem;
	}
	for (size_t i = 0; i < n0; i++)
		if (ferry__action_is_removal(&p->a[i]) &&
		    ferry__pmap_put(&v.removals, p->a[i].entry.path,
		                    p->a[i].entry.path_len, i))
			goto nomem;

	int root_missing = rl->roots[0].state != FERRY__ROOT_DIR;
	const char *kill = NULL;
	size_t killn = 0;
	for (size_t i = 0; !root_missing && i < rl->n; i++)
		if ((error = visit_remote(&v, &rl->e[i], &kill, &killn)))
			goto out;
	for (size_t i = 0; i < n0; i++)
		if (!v.seen[i])
			unseen(&v, &p->a[i], root_missing);
	/* Deletions last: adding actions moves p->a. */
	for (size_t i = 0; i < v.ndel; i++) {
		pdel *d = &v.del[i];
		if (d->dropped)
			continue;
		size_t before = p->n;
		if ((error = ferry__plan_add_delete(p, d->path, d->n, d->type,
		                                    d->flags)))
			goto out;
		if (p->n != before)
			res->changed++;
	}
	goto out;
nomem:
	error = FERRY_ENOMEM;
out:
	ferry__free(v.seen);
	ferry__pmap_free(&v.removals);
	ferry__free(v.del);
	ferry__free(v.ext);
	if (error)
		ferry__verify_result_free(res);
	return error;
}

void ferry__verify_result_free(ferry__verify_result *res)
{
	for (size_t i = 0; i < res->ntemps; i++)
		ferry__free(res->temps[i]);
	ferry__free(res->temps);
	memset(res, 0, sizeof(*res));
}
