#include "sync/plan_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "hash.h"
#include "sync/chunk.h"
#include "sync/path.h"
#include "sync/pmap.h"
#include "sync/report.h"
#include "sync/util.h"

#define ACT_DROP      0x1000u /* internal: removed before finish returns */
#define SMALL_HASHBUF ((size_t)64 << 10)
#define NO_SLOT       UINT32_MAX

/* ---- the set of paths seen when several sources merge ---- */

typedef struct seen_slot {
	uint64_t h;
	const char *p;
	uint32_t n;
	uint8_t type;
	uint8_t used;
} seen_slot;

struct ferry__plan_set {
	seen_slot *v;
	size_t mask, count;
};

enum { SEEN_NEW = 0, SEEN_MERGE = 1, SEEN_DUP = 2 };

static int seen_grow(ferry__plan_set *s)
{
	size_t size = s->v ? (s->mask + 1) * 2 : 1024;
	seen_slot *v = ferry__calloc(size, sizeof(*v));
	if (!v)
		return FERRY_ENOMEM;
	for (size_t i = 0; s->v && i <= s->mask; i++) {
		if (!s->v[i].used)
			continue;
		size_t h = (size_t)s->v[i].h;
		while (v[h & (size - 1)].used)
			h++;
		v[h & (size - 1)] = s->v[i];
	}
	ferry__free(s->v);
	s->v = v;
	s->mask = size - 1;
	return 0;
}

/* SEEN_NEW (added), SEEN_MERGE (a directory seen before, and this is one),
 * SEEN_DUP (seen before otherwise), or FERRY_ENOMEM. */
static int seen_add(ferry__plan *p, const ferry__scan_item *it)
{
	ferry__plan_set *s = p->seen;
	if ((s->count + 1) * 2 > (s->v ? s->mask + 1 : 0) && seen_grow(s))
		return FERRY_ENOMEM;
	uint64_t h = ferry__hash64(it->path, it->path_len);
	size_t i = (size_t)h;
	for (;; i++) {
		seen_slot *x = &s->v[i & s->mask];
		if (!x->used)
			break;
		if (x->h == h && x->n == it->path_len &&
		    memcmp(x->p, it->path, it->path_len) == 0)
			return x->type == FERRY__T_DIR &&
			                       it->st.type == FERRY__T_DIR
			               ? SEEN_MERGE
			               : SEEN_DUP;
	}
	char *copy = ferry__arena_strndup(&p->arena, it->path, it->path_len);
	if (!copy)
		return FERRY_ENOMEM;
	seen_slot *x = &s->v[i & s->mask];
	x->h = h;
	x->p = copy;
	x->n = (uint32_t)it->path_len;
	x->type = it->st.type;
	x->used = 1;
	s->count++;
	return SEEN_NEW;
}

/* ---- actions ---- */

static void entry_from(ferry__mentry *e, const ferry__stat *st)
{
	memset(e, 0, sizeof(*e));
	e->size = st->size;
	e->ino = st->ino;
	e->dev = st->dev;
	e->mtime_ns = st->mtime_ns;
	e->ctime_ns = st->ctime_ns;
	e->mode = (uint16_t)st->mode;
	e->type = st->type;
}

static void drop_plan_index(ferry__plan *p)
{
	ferry__free(p->index);
	p->index = NULL;
	p->index_mask = 0;
}

static ferry__action *add_action(ferry__plan *p, int kind, unsigned flags,
                                 const ferry__mentry *entry, unsigned src)
{
	if (ferry__grow(&p->a, &p->cap, p->n + 1, sizeof(*p->a), 64))
		return NULL;
	char *path =
	        ferry__arena_strndup(&p->arena, entry->path, entry->path_len);
	if (!path)
		return NULL;
	ferry__action *a = &p->a[p->n++];
	memset(a, 0, sizeof(*a));
	a->entry = *entry;
	a->entry.path = path;
	a->entry.flags &= FERRY__ME_DISK_FLAGS;
	a->kind = (uint8_t)kind;
	a->flags = flags;
	if (entry->type == FERRY__T_DIR)
		a->flags |= FERRY__CHANGED_DIR;
	a->src = (uint16_t)src;
	a->create_mode = entry->mode;
	drop_plan_index(p);
	return a;
}

static ferry__action *add_item_action(ferry__plan *p, int kind, unsigned flags,
                                      const ferry__scan_item *it,
                                      const ferry__stat *st,
                                      const ferry__hash *h)
{
	ferry__mentry e;
	entry_from(&e, st);
	e.path = it->path;
	e.path_len = (uint32_t)it->path_len;
	if (h) {
		e.hash = *h;
		e.flags = FERRY__ME_HASHED;
	}
	ferry__action *a = add_action(p, kind, flags, &e, it->src);
	if (a && it->st.type == FERRY__T_LINK) {
		char *l =
		        ferry__arena_strndup(&p->arena, it->link, it->link_len);
		if (!l)
			return NULL;
		a->link = l;
		a->link_len = (uint32_t)it->link_len;
	}
	return a;
}

static int same_stat(const ferry__mentry *e, const ferry__stat *st)
{
	return e->size == st->size && e->mtime_ns == st->mtime_ns &&
	       e->ctime_ns == st->ctime_ns && e->ino == st->ino &&
	       e->mode == st->mode;
}

/* Hash the item's file.  *cur gets the stat of what was read and *stable
 * whether it stayed the same while it was read. */
static int hash_item(ferry__plan *p, const ferry__scan_item *it,
                     ferry__stat *cur, ferry__hash *h, int *stable,
                     ferry__chunk **ck, uint32_t *nck)
{
	struct stat st;
	int fd, error;
	error = ferry__scan_open_at(it->dirfd, it->name, it->follow, &fd, &st);
	if (error)
		return error;
	ferry__stat before, after;
	ferry__stat_from(&before, &st);
	size_t want = before.size > SMALL_HASHBUF ? FERRY__HASH_BUFSIZE
	                                          : SMALL_HASHBUF;
	if (p->hashbuf && want > SMALL_HASHBUF && p->hashbuf_size < want) {
		ferry__free(p->hashbuf);
		p->hashbuf = NULL;
	}
	if (!p->hashbuf) {
		p->hashbuf = ferry__malloc(want);
		if (!p->hashbuf) {
			close(fd);
			return FERRY_ENOMEM;
		}
		p->hashbuf_size = want;
	}
	uint64_t nread = 0;
	*ck = NULL;
	*nck = 0;
	error = ferry__chunk_fd(
	        h, &nread, fd, p->hashbuf, p->hashbuf_size,
	        before.size >= FERRY__DELTA_MIN_SIZE ? ck : NULL, nck);
	if (!error && fstat(fd, &st) < 0)
		error = FERRY_EIO;
	int e = errno;
	close(fd);
	errno = e;
	if (error) {
		ferry__free(*ck);
		*ck = NULL;
		return error;
	}
	ferry__stat_from(&after, &st);
	*cur = before;
	*stable = ferry__stat_eq(&before, &after) && nread == before.size;
	p->hashed_files++;
	p->hashed_bytes += nread;
	return 0;
}

static int keep_none(ferry__plan *p, const ferry__scan_item *it,
                     const ferry__mentry *e)
{
	if (!p->o.keep_unchanged)
		return 0;
	ferry__action *a =
	        add_item_action(p, FERRY__ACT_NONE, 0, it, &it->st, NULL);
	if (!a)
		return FERRY_ENOMEM;
	a->entry.hash = e->hash;
	a->entry.flags = e->flags & FERRY__ME_DISK_FLAGS;
	a->entry.chunks = e->chunks;
	a->entry.nchunks = e->nchunks;
	return 0;
}

/* An action for a hashed file, with its chunks (taken over). */
static int add_hashed(ferry__plan *p, int kind, unsigned flags,
                      const ferry__scan_item *it, const ferry__stat *st,
                      const ferry__hash *h, ferry__chunk *ck, uint32_t nck)
{
	ferry__action *a = add_item_action(p, kind, flags, it, st, h);
	if (!a) {
		ferry__free(ck);
		return FERRY_ENOMEM;
	}
	ferry__plan_keep_chunks(p, a, ck, nck);
	return 0;
}

static int visit_file(ferry__plan *p, const ferry__scan_item *it,
                      ferry__mentry *e, unsigned typechg)
{
	const ferry__stat *st = &it->st;
	if (!e || typechg) {
		p->bytes_upload += st->size;
		return add_item_action(p, FERRY__ACT_UPLOAD,
		                       FERRY_CHANGED_NEW | typechg |
		                               FERRY__ACT_UNHASHED,
		                       it, st, NULL)
		               ? 0
		               : FERRY_ENOMEM;
	}
	int same = same_stat(e, st);
	int was_racy = ferry__racy(e->mtime_ns, e->ctime_ns, p->m->stat_ns,
	                           p->scan->racy_ns);
	if (same && !was_racy && !p->o.checksum)
		return keep_none(p, it, e);

	ferry__stat cur;
	ferry__hash h;
	int stable = 0;
	ferry__chunk *ck = NULL;
	uint32_t nck = 0;
	int error = hash_item(p, it, &cur, &h, &stable, &ck, &nck);
	if (error == FERRY_ENOMEM)
		return error;
	if (error) {
		p->io_error = 1;
		ferry__report_error(p->o.report, p->o.log, p->o.log_ctx,
		                    it->path, it->path_len, error,
		                    "cannot read: %s", strerror(errno));
		return 0; /* the old entry stays */
	}
	if (stable && (e->flags & FERRY__ME_HASHED) &&
	    ferry__hash_eq(&h, &e->hash)) {
		unsigned fl = 0;
		if (cur.mode != e->mode)
			fl |= FERRY_CHANGED_MODE;
		if (cur.mtime_ns != e->mtime_ns)
			fl |= FERRY_CHANGED_MTIME;
		int kind = FERRY__ACT_META;
		if (!fl) {
			/* Same content and metadata: only the stat moved (or
			 * the entry was racily clean); refresh the entry so
			 * the next push needs no hash, unless it would still
			 * be racily clean. */
			if (same_stat(e, &cur) &&
			    ferry__racy(cur.mtime_ns, cur.ctime_ns,
			                p->scan->start_ns, p->scan->racy_ns)) {
				ferry__free(ck);
				return keep_none(p, it, e);
			}
			kind = FERRY__ACT_RECORD;
		}
		return add_hashed(p, kind, fl, it, &cur, &h, ck, nck);
	}
	unsigned fl = FERRY_CHANGED_CONTENT;
	if (cur.size != e->size)
		fl |= FERRY_CHANGED_SIZE;
	if (cur.mtime_ns != e->mtime_ns)
		fl |= FERRY_CHANGED_MTIME;
	if (cur.mode != e->mode)
		fl |= FERRY_CHANGED_MODE;
	if (!stable)
		fl |= FERRY__ACT_UNHASHED;
	p->bytes_upload += cur.size;
	return add_hashed(p, FERRY__ACT_UPLOAD, fl, it, &cur,
	                  stable ? &h : NULL, ck, nck);
}

/* A directory's mode and times, set once its children are written (phase
 * 7, deepest first): recorded with FERRY__ME_TIMES. */
static int dir_meta(ferry__plan *p, const ferry__scan_item *it, unsigned flags)
{
	ferry__action *a =
	        add_item_action(p, FERRY__ACT_META, flags, it, &it->st, NULL);
	if (!a)
		return FERRY_ENOMEM;
	a->entry.flags |= FERRY__ME_TIMES;
	return 0;
}

static int visit_dir(ferry__plan *p, const ferry__scan_item *it,
                     ferry__mentry *e, unsigned typechg)
{
	const ferry__stat *st = &it->st;
	if (!e || typechg) {
		ferry__action *a = add_item_action(p, FERRY__ACT_MKDIR,
		                                   FERRY_CHANGED_NEW | typechg,
		                                   it, st, NULL);
		if (!a)
			return FERRY_ENOMEM;
		if ((st->mode & 0700) != 0700)
			a->create_mode = st->mode | 0700;
		return dir_meta(p, it, FERRY_CHANGED_MODE | FERRY__ACT_QUIET);
	}
	unsigned fl = 0;
	if (e->mode != st->mode)
		fl |= FERRY_CHANGED_MODE;
	if (e->mtime_ns != st->mtime_ns)
		fl |= FERRY_CHANGED_MTIME;
	/* Recorded before ferry set directory times: set them once.  A
	 * new mtime alone follows from its entries' changes: set, not
	 * reported. */
	if (!fl && !(e->flags & FERRY__ME_TIMES))
		fl = FERRY_CHANGED_MTIME;
	if (fl == FERRY_CHANGED_MTIME)
		fl |= FERRY__ACT_QUIET;
	return fl ? dir_meta(p, it, fl) : keep_none(p, it, e);
}

static int visit_link(ferry__plan *p, const ferry__scan_item *it,
                      ferry__mentry *e, unsigned typechg)
{
	ferry__hash h;
	ferry__hash_buf(&h, it->link, it->link_len);
	unsigned fl;
	if (!e || typechg)
		fl = FERRY_CHANGED_NEW | typechg;
	else if (!(e->flags & FERRY__ME_HASHED) ||
	         !ferry__hash_eq(&h, &e->hash))
		fl = FERRY_CHANGED_CONTENT;
	else
		return keep_none(p, it, e);
	return add_item_action(p, FERRY__ACT_SYMLINK, fl, it, &it->st, &h)
	               ? 0
	               : FERRY_ENOMEM;
}

static int visit(void *ctx, const ferry__scan_item *it)
{
	ferry__plan *p = ctx;
	if (p->seen) {
		int r = seen_add(p, it);
		if (r < 0)
			return r;
		if (r == SEEN_MERGE)
			return 0;
		if (r == SEEN_DUP) {
			ferry__report_warn(
			        p->o.log, p->o.log_ctx, FERRY_LOG_WARN,
			        it->path, it->path_len,
			        "also in source %s: the first one is kept",
			        p->scan->src[it->src].arg);
			return FERRY__SCAN_PRUNE;
		}
	}
	ferry__mentry *e = ferry__manifest_find(p->m, it->path, it->path_len);
	unsigned typechg = 0;
	if (e) {
		e->flags |= FERRY__ME_SEEN;
		if (e->type != it->st.type) {
			e->flags |= FERRY__ME_REPLACED;
			typechg = FERRY_CHANGED_TYPE;
		}
	}
	switch (it->st.type) {
	case FERRY__T_FILE:
		return visit_file(p, it, e, typechg);
	case FERRY__T_DIR:
		return visit_dir(p, it, e, typechg);
	default:
		return visit_link(p, it, e, typechg);
	}
}

/* ---- deletions ---- */

static int in_scope(const ferry__plan *p, const char *path, size_t n)
{
	for (size_t i = 0; i < p->scan->nsrc; i++) {
		const ferry__source *s = &p->scan->src[i];
		if (s->fd < 0)
			continue;
		if (s->kind == FERRY__SRC_CONTENTS)
			return 1;
		if (s->kind == FERRY__SRC_DIR &&
		    ferry__path_under(path, n, s->prefix, s->prefix_len))
			return 1;
	}
	return 0;
}

static ferry__action *add_removal(ferry__plan *p, const ferry__mentry *e,
                                  unsigned flags)
{
	return add_action(p,
	                  e->type == FERRY__T_DIR ? FERRY__ACT_RMDIR
	                                          : FERRY__ACT_DELETE,
	                  flags, e, 0);
}

static int plan_deletions(ferry__plan *p)
{
	int error = 0;
	ferry__manifest *m = p->m;
	size_t *stack = NULL, depth = 0, cap = 0;
	ssize_t replaced = -1;

	for (size_t i = 0; i < m->n; i++) {
		const ferry__mentry *e = &m->e[i];
		if (replaced >= 0 &&
		    ferry__path_under(e->path, e->path_len, m->e[replaced].path,
		                      m->e[replaced].path_len)) {
			if (!add_removal(p, e, FERRY_CHANGED_TYPE))
				goto nomem;
			continue;
		}
		replaced = -1;
		if (e->flags & FERRY__ME_REPLACED) {
			if (!add_removal(p, e, FERRY_CHANGED_TYPE))
				goto nomem;
			if (e->type == FERRY__T_DIR)
				replaced = (ssize_t)i;
			continue;
		}
		if ((e->flags & FERRY__ME_SEEN) || !p->o.delete_extraneous ||
		    !in_scope(p, e->path, e->path_len))
			continue;
		/* Candidate rmdirs on the current path. */
		while (depth > 0) {
			const ferry__mentry *d = &p->a[stack[depth - 1]].entry;
			if (ferry__path_under(e->path, e->path_len, d->path,
			                      d->path_len))
				break;
			depth--;
		}
		if (ferry__excludes_match_tree(p->o.excludes, e->path,
		                               e->path_len,
		                               e->type == FERRY__T_DIR) ||
		    ferry__scan_excluded(p->scan, e->path, e->path_len,
		                         e->type == FERRY__T_DIR)) {
			/* Protected: its directories must stay too. */
			for (size_t k = 0; k < depth; k++)
				p->a[stack[k]].flags |= ACT_DROP;
			continue;
		}
		if (!add_removal(p, e, FERRY__ACT_EXTRANEOUS))
			goto nomem;
		if (e->type == FERRY__T_DIR) {
			if (ferry__grow(&stack, &cap, depth + 1, sizeof(*stack),
			                32))
				goto nomem;
			stack[depth++] = p->n - 1;
		}
	}
	goto out;
nomem:
	error = FERRY_ENOMEM;
out:
	ferry__free(stack);
	return error;
}

static void drop_marked(ferry__plan *p)
{
	size_t k = 0;
	for (size_t i = 0; i < p->n; i++)
		if (!(p->a[i].flags & ACT_DROP))
			p->a[k++] = p->a[i];
	if (k != p->n)
		drop_plan_index(p);
	p->n = k;
}

/* ---- build ---- */

int ferry__plan_build(ferry__plan **out, ferry__scan *scan, ferry__manifest *m,
                      const ferry__plan_opts *o)
{
	int error = 0;
	*out = NULL;
	ferry__plan *p = ferry__calloc(1, sizeof(*p));
	if (!p)
		return FERRY_ENOMEM;
	p->o = *o;
	p->scan = scan;
	p->m = m;
	m->cursor = 0;
	if (scan->nsrc > 1) {
		p->seen = ferry__calloc(1, sizeof(*p->seen));
		if (!p->seen) {
			error = FERRY_ENOMEM;
			goto out;
		}
	}
	error = ferry__scan_run(scan, visit, p);
	p->stat_ns = scan->start_ns;
	p->racy_ns = scan->racy_ns;
	if (!error)
		error = plan_deletions(p);
	if (!error)
		drop_marked(p);
out:
	if (error) {
		ferry__plan_free(p);
		return error;
	}
	*out = p;
	return 0;
}

void ferry__plan_free(ferry__plan *p)
{
	if (!p)
		return;
	ferry__free(p->a);
	ferry__arena_free(&p->arena);
	ferry__free(p->hashbuf);
	if (p->seen)
		ferry__free(p->seen->v);
	ferry__free(p->seen);
	ferry__free(p->index);
	ferry__free(p);
}

/* ---- verify support ---- */

static int find_rank(const ferry__action *a)
{
	if (a->kind == FERRY__ACT_DELETE || a->kind == FERRY__ACT_RMDIR)
		return 0;
	return a->flags & FERRY__ACT_QUIET ? 1 : 2;
}

ferry__action *ferry__plan_find(ferry__plan *p, const char *path, size_t n)
{
	if (!p->index && p->n) {
		size_t size = 16;
		while (size < 2 * p->n)
			size *= 2;
		uint32_t *ix = ferry__reallocarray(NULL, size, sizeof(*ix));
		if (ix) {
			memset(ix, 0xff, size * sizeof(*ix));
			for (size_t i = 0; i < p->n; i++) {
				size_t h = (size_t)ferry__hash64(
				        p->a[i].entry.path,
				        p->a[i].entry.path_len);
				while (ix[h & (size - 1)] != NO_SLOT)
					h++;
				ix[h & (size - 1)] = (uint32_t)i;
			}
			p->index = ix;
			p->index_mask = size - 1;
		}
	}
	ferry__action *best = NULL;
	size_t h = p->index ? (size_t)ferry__hash64(path, n) : 0;
	/* Through the index when there is one, else every action. */
	for (size_t k = 0; p->index || k < p->n; k++, h++) {
		uint32_t i =
		        p->index ? p->index[h & p->index_mask] : (uint32_t)k;
		if (i == NO_SLOT)
			break;
		ferry__action *a = &p->a[i];
		if (a->entry.path_len == n &&
		    memcmp(a->entry.path, path, n) == 0 &&
		    (!best || find_rank(a) > find_rank(best)))
			best = a;
	}
	return best;
}

void ferry__plan_promote(ferry__plan *p, ferry__action *a, int kind,
                         unsigned flags)
{
	if (kind == FERRY__ACT_UPLOAD && a->kind != FERRY__ACT_UPLOAD)
		p->bytes_upload += a->entry.size;
	else if (kind != FERRY__ACT_UPLOAD && a->kind == FERRY__ACT_UPLOAD)
		p->bytes_upload -= a->entry.size;
	a->kind = (uint8_t)kind;
	a->flags |= flags;
	if (kind == FERRY__ACT_MKDIR && (a->entry.mode & 0700) != 0700)
		a->create_mode = a->entry.mode | 0700u;
}

int ferry__plan_add_delete(ferry__plan *p, const char *path, size_t n, int type,
                           unsigned flags)
{
	ferry__mentry e;
	memset(&e, 0, sizeof(e));
	e.path = path;
	e.path_len = (uint32_t)n;
	e.type = (uint8_t)type;
	if (!(flags & FERRY_CHANGED_TYPE)) {
		if (!p->o.delete_extraneous || p->o.delete_tracked ||
		    !in_scope(p, path, n) ||
		    ferry__excludes_match_tree(p->o.excludes, path, n,
		                               type == FERRY__T_DIR) ||
		    ferry__scan_excluded(p->scan, path, n,
		                         type == FERRY__T_DIR))
			return 0;
		flags |= FERRY__ACT_EXTRANEOUS | FERRY__ACT_REMOTE_ONLY;
	}
	return add_removal(p, &e, flags) ? 0 : FERRY_ENOMEM;
}

void ferry__plan_retype_removal(ferry__plan *p, ferry__action *a, int type)
{
	(void)p;
	if (type == FERRY__T_DIR) {
		a->kind = FERRY__ACT_RMDIR;
		a->entry.type = FERRY__T_DIR;
		a->flags |= FERRY__CHANGED_DIR;
	} else {
		a->kind = FERRY__ACT_DELETE;
		a->entry.type = (uint8_t)type;
		a->flags &= ~(uint32_t)FERRY__CHANGED_DIR;
	}
}

/* ---- finish: deletion policy and order ---- */

#define NPHASES 9

/* 1 when a changes the entries of its parent directory remotely. */
static int changes_parent(const ferry__action *a)
{
	return a->kind != FERRY__ACT_META && a->kind != FERRY__ACT_RECORD &&
	       a->kind != FERRY__ACT_NONE;
}

/* Writing into a directory moves its remote mtime: every directory that
 * an action changes gets its times (and mode) set again at the end, from
 * its own action when it has one, else from its unchanged entry (the
 * destination itself is the executor's: sync/commit.c). */
static int touch_parents(ferry__plan *p)
{
	ferry__pmap seen;
	memset(&seen, 0, sizeof(seen));
	const ferry__mentry **add = NULL;
	size_t nadd = 0, cap = 0, n0 = p->n;
	int error = 0;
	for (size_t i = 0; i < n0 && !error; i++) {
		if (!changes_parent(&p->a[i]))
			continue;
		const char *path = p->a[i].entry.path;
		size_t dl = ferry__path_dirlen(path, p->a[i].entry.path_len);
		if (dl == 0 ||
		    ferry__pmap_get(&seen, path, dl) != FERRY__PMAP_NONE)
			continue;
		if (ferry__pmap_put(&seen, path, dl, i)) {
			error = FERRY_ENOMEM;
			break;
		}
		ferry__action *d = ferry__plan_find(p, path, dl);
		if (d && d->kind != FERRY__ACT_NONE &&
		    d->kind != FERRY__ACT_RECORD)
			continue; /* made, changed or removed by its own action
			           */
		if (d) {
			d->kind = FERRY__ACT_META;
			d->flags |= FERRY__ACT_QUIET;
			d->entry.flags |= FERRY__ME_TIMES;
			continue;
		}
		const ferry__mentry *e = ferry__manifest_find(p->m, path, dl);
		if (e && e->type == FERRY__T_DIR &&
		    ferry__grow(&add, &cap, nadd + 1, sizeof(*add), 16) == 0)
			add[nadd++] = e;
		else if (e && e->type == FERRY__T_DIR)
			error = FERRY_ENOMEM;
	}
	/* Added after the walk: adding drops the index the walk uses. */
	for (size_t i = 0; i < nadd && !error; i++) {
		ferry__action *a = add_action(p, FERRY__ACT_META,
		                              FERRY__ACT_QUIET, add[i], 0);
		if (!a)
			error = FERRY_ENOMEM;
		else
			a->entry.flags |= FERRY__ME_TIMES;
	}
	ferry__free(add);
	ferry__pmap_free(&seen);
	return error;
}

int ferry__action_phase(const ferry__action *a)
{
	switch (a->kind) {
	case FERRY__ACT_DELETE:
	case FERRY__ACT_RMDIR:
		if (!(a->flags & FERRY__ACT_EXTRANEOUS))
			return 0;
		return a->kind == FERRY__ACT_DELETE ? 5 : 6;
	case FERRY__ACT_MKDIR:
		return 1;
	case FERRY__ACT_UPLOAD:
		return 2;
	case FERRY__ACT_META:
		return a->entry.type == FERRY__T_DIR ? 7 : 3;
	case FERRY__ACT_SYMLINK:
		return 4;
	default:
		return 8;
	}
}

static int reverse_phase(int phase)
{
	return phase == 0 || phase == 5 || phase == 6 || phase == 7;
}

static int action_cmp(const void *x, const void *y, void *ctx)
{
	const ferry__action *a = x, *b = y;
	(void)ctx;
	if (a->phase != b->phase)
		return a->phase < b->phase ? -1 : 1;
	int c = ferry__path_cmp(a->entry.path, a->entry.path_len, b->entry.path,
	                        b->entry.path_len);
	return reverse_phase(a->phase) ? -c : c;
}

static void apply_policy(ferry__plan *p)
{
	uint64_t count = 0;
	for (size_t i = 0; i < p->n; i++)
		if (p->a[i].flags & FERRY__ACT_EXTRANEOUS)
			count++;
	if (count == 0)
		return;
	const ferry__source *empty = NULL;
	for (unsigned i = 0; i < p->scan->nsrc && !empty; i++)
		if (p->scan->src[i].fd < 0 ||
		    ferry__scan_source_empty(p->scan, i))
			empty = &p->scan->src[i];
	long long max = p->o.max_delete;
	if (p->scan->incomplete || p->io_error) {
		p->deletions_skipped = FERRY__DEL_IOERR;
		ferry__report_warn(
		        p->o.log, p->o.log_ctx, FERRY_LOG_WARN, NULL, 0,
		        "some files could not be read: skipping %llu deletions",
		        (unsigned long long)count);
	} else if (empty) {
		/* rsync would delete the lot; a source that is missing or
		 * empty is far more often a mistake (an unmounted disk, a
		 * wrong path) than a wish: the push is refused, as above
		 * --max-delete. */
		p->deletions_skipped = FERRY__DEL_EMPTY;
		snprintf(p->refused, sizeof(p->refused),
		         "refusing to delete %llu entries: the source %s is %s",
		         (unsigned long long)count, empty->arg,
		         empty->fd < 0 ? "missing" : "empty");
		ferry__report_error(p->o.report, p->o.log, p->o.log_ctx, "", 0,
		                    FERRY_EINVALID, "%s", p->refused);
	} else if (max < 0) {
		p->deletions_skipped = FERRY__DEL_NONE;
		ferry__report_warn(p->o.log, p->o.log_ctx, FERRY_LOG_INFO, NULL,
		                   0, "--max-delete: skipping %llu deletions",
		                   (unsigned long long)count);
	} else if (max > 0 && count > (unsigned long long)max) {
		p->deletions_skipped = FERRY__DEL_MAX;
		snprintf(p->refused, sizeof(p->refused),
		         "refusing to delete %llu entries: more than "
		         "--max-delete %lld",
		         (unsigned long long)count, max);
		ferry__report_error(p->o.report, p->o.log, p->o.log_ctx, "", 0,
		                    FERRY_EINVALID, "%s", p->refused);
	} else {
		return;
	}
	p->deletions_dropped = count;
	for (size_t i = 0; i < p->n; i++)
		if (p->a[i].flags & FERRY__ACT_EXTRANEOUS)
			p->a[i].flags |= ACT_DROP;
	drop_marked(p);
}

/* Every directory this push makes gets its mode and times set at the
 * end (plan.c visit_dir adds that action; a directory found missing or of
 * another type on the remote by ferry__verify_plan gets it here). */
static int made_dir_times(ferry__plan *p)
{
	ferry__pmap late;
	memset(&late, 0, sizeof(late));
	int error = 0;
	size_t n0 = p->n;
	for (size_t i = 0; i < n0 && !error; i++)
		if (p->a[i].kind == FERRY__ACT_META &&
		    p->a[i].entry.type == FERRY__T_DIR &&
		    ferry__pmap_put(&late, p->a[i].entry.path,
		                    p->a[i].entry.path_len, i))
			error = FERRY_ENOMEM;
	for (size_t i = 0; i < n0 && !error; i++) {
		if (p->a[i].kind != FERRY__ACT_MKDIR ||
		    ferry__pmap_get(&late, p->a[i].entry.path,
		                    p->a[i].entry.path_len) != FERRY__PMAP_NONE)
			continue;
		ferry__mentry e = p->a[i].entry; /* add_action moves p->a */
		ferry__action *a = add_action(
		        p, FERRY__ACT_META, FERRY__ACT_QUIET, &e, p->a[i].src);
		if (!a)
			error = FERRY_ENOMEM;
		else
			a->entry.flags |= FERRY__ME_TIMES;
	}
	ferry__pmap_free(&late);
	return error;
}

int ferry__plan_finish(ferry__plan *p)
{
	if (p->finished)
		return 0;
	apply_policy(p);
	int error = made_dir_times(p);
	if (!error)
		error = touch_parents(p);
	if (error)
		return error;
	size_t count[NPHASES] = {0}, start[NPHASES];
	for (size_t i = 0; i < p->n; i++) {
		p->a[i].phase = (uint8_t)ferry__action_phase(&p->a[i]);
		count[p->a[i].phase]++;
	}
	ferry__action *na = NULL;
	if (p->n) {
		na = ferry__reallocarray(NULL, p->n, sizeof(*na));
		if (!na)
			return FERRY_ENOMEM;
	}
	size_t pos = 0;
	for (int ph = 0; ph < NPHASES; ph++) {
		start[ph] = pos;
		pos += count[ph];
	}
	size_t fill[NPHASES];
	memcpy(fill, start, sizeof(fill));
	for (size_t i = 0; i < p->n; i++)
		na[fill[p->a[i].phase]++] = p->a[i];
	/* Within a phase the scan and manifest order usually is the order
	 * wanted (reversed for removals): sort only when it is not. */
	for (int ph = 0; ph < NPHASES; ph++) {
		ferry__action *v = na ? na + start[ph] : NULL;
		size_t k = count[ph];
		if (k < 2)
			continue;
		int rev = reverse_phase(ph);
		if (rev) {
			for (size_t i = 0, j = k - 1; i < j; i++, j--) {
				ferry__action t = v[i];
				v[i] = v[j];
				v[j] = t;
			}
		}
		size_t i = 1;
		while (i < k && action_cmp(&v[i - 1], &v[i], NULL) <= 0)
			i++;
		if (i < k)
			qsort_r(v, k, sizeof(*v), action_cmp, NULL);
	}
	ferry__free(p->a);
	p->a = na;
	p->cap = p->n;
	drop_plan_index(p);
	p->finished = 1;
	return 0;
}
