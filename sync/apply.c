/* apply.c - the outcome of a push: the hash of what an upload sent, and
 * the manifest after the push (the old one with the committed actions
 * applied).  Reads the plan's actions; writes only their outcome fields
 * (ferry__action_read_done, ferry__action_hash_local). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "hash.h"
#include "sync/chunk.h"
#include "sync/path.h"
#include "sync/plan_int.h"

/* ---- the hash of an upload ---- */

static int entry_matches(const ferry__mentry *e, const ferry__stat *st)
{
	return e->size == st->size && e->mtime_ns == st->mtime_ns &&
	       e->ctime_ns == st->ctime_ns && e->ino == st->ino &&
	       e->dev == st->dev && e->mode == st->mode;
}

void ferry__action_read_done(ferry__action *a, const ferry__hash *h,
                             const struct stat *before,
                             const struct stat *after, uint64_t nread)
{
	ferry__stat b, c;
	ferry__stat_from(&b, before);
	ferry__stat_from(&c, after);
	if (ferry__stat_eq(&b, &c) && entry_matches(&a->entry, &b) &&
	    nread == b.size) {
		a->entry.hash = *h;
		a->entry.flags |= FERRY__ME_HASHED;
		a->flags &= ~FERRY__ACT_UNHASHED;
	} else {
		a->entry.flags &= (uint8_t)~FERRY__ME_HASHED;
		a->entry.chunks = NULL;
		a->entry.nchunks = 0;
		a->flags |= FERRY__ACT_UNHASHED;
	}
}

int ferry__action_hash_local(ferry__plan *p, ferry__action *a)
{
	int fd, error;
	struct stat before, after;
	if (a->entry.type != FERRY__T_FILE)
		return FERRY_EINVALID;
	error = ferry__scan_open(p->scan, a->src, a->entry.path,
	                         a->entry.path_len, &fd, &before);
	if (error)
		return error;
	ferry__hash h;
	uint64_t nread = 0;
	ferry__chunk *ck = NULL;
	uint32_t nck = 0;
	int big = (uint64_t)before.st_size >= FERRY__DELTA_MIN_SIZE;
	error = ferry__chunk_fd(&h, &nread, fd, NULL, 0, big ? &ck : NULL,
	                        &nck);
	if (!error && fstat(fd, &after) < 0)
		error = FERRY_EIO;
	close(fd);
	if (error) {
		ferry__free(ck);
		return error;
	}
	ferry__action_read_done(a, &h, &before, &after, nread);
	ferry__plan_keep_chunks(p, a, ck, nck);
	return 0;
}

void ferry__plan_keep_chunks(ferry__plan *p, ferry__action *a, ferry__chunk *ck,
                             uint32_t n)
{
	a->entry.chunks = NULL;
	a->entry.nchunks = 0;
	if (ck && n && (a->entry.flags & FERRY__ME_HASHED)) {
		ferry__chunk *v = ferry__arena_alloc(&p->arena,
		                                     (size_t)n * sizeof(*v), 8);
		if (v) { /* else no delta for it next time: not an error */
			memcpy(v, ck, (size_t)n * sizeof(*v));
			a->entry.chunks = v;
			a->entry.nchunks = n;
		}
	}
	ferry__free(ck);
}

int ferry__plan_needs_save(const ferry__plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		const ferry__action *a = &p->a[i];
		if (a->kind == FERRY__ACT_RECORD ||
		    (a->committed && a->kind != FERRY__ACT_NONE))
			return 1;
	}
	return 0;
}

/* ---- the manifest after the push ---- */

/* A directory's mode and times that were not set: its entry, if kept,
 * stops saying they were (FERRY__ME_TIMES), so the next push sets them. */
static int times_failed(const ferry__action *a)
{
	return a->kind == FERRY__ACT_META && a->entry.type == FERRY__T_DIR &&
	       !a->committed && a->error;
}

/* The indexes of the actions that change the manifest (committed ones,
 * RECORDs and times_failed), sorted by path; *puts: how many of them add
 * an entry. */
static int collect_effects(const ferry__plan *p, size_t **eff, size_t *ne,
                           size_t *puts)
{
	*eff = NULL;
	*ne = *puts = 0;
	if (!p->n)
		return 0;
	size_t *v = ferry__reallocarray(NULL, p->n, sizeof(*v));
	if (!v)
		return FERRY_ENOMEM;
	for (size_t i = 0; i < p->n; i++) {
		const ferry__action *a = &p->a[i];
		if (times_failed(a)) {
			v[(*ne)++] = i;
			continue;
		}
		if (a->kind == FERRY__ACT_NONE ||
		    (!a->committed && a->kind != FERRY__ACT_RECORD))
			continue;
		v[(*ne)++] = i;
		if (!ferry__action_is_removal(a))
			(*puts)++;
	}
	*eff = v;
	return 0;
}

static int effect_cmp(const void *x, const void *y, void *ctx)
{
	const ferry__action *v = ctx;
	const ferry__action *a = &v[*(const size_t *)x];
	const ferry__action *b = &v[*(const size_t *)y];
	int c = ferry__path_cmp(a->entry.path, a->entry.path_len, b->entry.path,
	                        b->entry.path_len);
	if (c)
		return c;
	/* One path: removal first, then creations by phase. */
	int ra = ferry__action_is_removal(a) ? 0 : 1 + ferry__action_phase(a);
	int rb = ferry__action_is_removal(b) ? 0 : 1 + ferry__action_phase(b);
	return ra < rb ? -1 : ra > rb;
}

/* The old manifest (m), the sorted effects, and the new entries (out). */
typedef struct merge {
	const ferry__plan *p;
	ferry__manifest *m;
	const size_t *eff;
	size_t ne;
	ferry__mentry *out;
	size_t i, j, k; /* next of m->e, of eff, of out */
	int64_t old_ref;
} merge;

/* An old entry no action touched. */
static void keep_old(merge *g)
{
	ferry__mentry e = g->m->e[g->i++];
	e.flags &= FERRY__ME_DISK_FLAGS;
	/* Racily clean when recorded and not verified since: make sure the
	 * next push hashes it.  The window is the coarsest of the file
	 * systems this scan saw (plan.c: p->racy_ns). */
	if (e.type == FERRY__T_FILE &&
	    ferry__racy(e.mtime_ns, e.ctime_ns, g->old_ref, g->p->racy_ns))
		e.ctime_ns = -1;
	g->out[g->k++] = e;
}

/* The chunk list of cur, an action's entry about to replace the old entry
 * m->e[i] (have_old) or to be added: a list the plan holds is copied into
 * m's memory (the plan dies first); a file whose content is the old
 * entry's (same hash and size) without a list of its own keeps the old
 * one (already m's); a file whose hash is unknown has none. */
static int own_chunks(merge *g, ferry__mentry *cur, int have_old)
{
	if (cur->type != FERRY__T_FILE || !(cur->flags & FERRY__ME_HASHED)) {
		cur->chunks = NULL;
		cur->nchunks = 0;
		return 0;
	}
	if (cur->chunks && cur->nchunks)
		return ferry__manifest_own_chunks(g->m, cur);
	cur->chunks = NULL;
	cur->nchunks = 0;
	const ferry__mentry *old = have_old ? &g->m->e[g->i] : NULL;
	if (old && old->type == FERRY__T_FILE &&
	    (old->flags & FERRY__ME_HASHED) && old->chunks &&
	    old->size == cur->size && ferry__hash_eq(&old->hash, &cur->hash)) {
		cur->chunks = old->chunks;
		cur->nchunks = old->nchunks;
	}
	return 0;
}

/* The effects on one path (the next of eff; have_old: m->e[i] is the same
 * path): the last one wins, a removal drops the entry. */
static int apply_path(merge *g, int have_old)
{
	const ferry__plan *p = g->p;
	const ferry__action *first = &p->a[g->eff[g->j]];
	const char *path = first->entry.path;
	size_t plen = first->entry.path_len;
	int have = have_old;
	ferry__mentry cur;
	if (have_old)
		cur = g->m->e[g->i];
	const ferry__action *put_a = NULL;
	int untimed = 0;
	while (g->j < g->ne && p->a[g->eff[g->j]].entry.path_len == plen &&
	       memcmp(p->a[g->eff[g->j]].entry.path, path, plen) == 0) {
		const ferry__action *a = &p->a[g->eff[g->j++]];
		if (times_failed(a)) {
			untimed = 1;
			continue;
		}
		int removal = ferry__action_is_removal(a);
		put_a = removal ? NULL : a;
		have = !removal;
	}
	if (put_a) {
		const char *owned = have_old ? g->m->e[g->i].path : NULL;
		cur = put_a->entry;
		if (!owned) {
			owned = ferry__arena_strndup(&g->m->arena, path, plen);
			if (!owned)
				return FERRY_ENOMEM;
		}
		cur.path = owned;
		if (put_a->kind == FERRY__ACT_MKDIR)
			cur.mode = (uint16_t)put_a->create_mode;
		if (put_a->flags & FERRY__ACT_UNHASHED)
			cur.flags &= (uint8_t)~FERRY__ME_HASHED;
		int error = own_chunks(g, &cur, have_old);
		if (error)
			return error;
	}
	if (have_old)
		g->i++;
	if (have) {
		cur.flags &= FERRY__ME_DISK_FLAGS;
		if (untimed)
			cur.flags &= (uint8_t)~FERRY__ME_TIMES;
		g->out[g->k++] = cur;
	}
	return 0;
}

/* Both sorted lists merged into g->out. */
static int merge_entries(merge *g)
{
	const ferry__manifest *m = g->m;
	while (g->i < m->n || g->j < g->ne) {
		int c;
		if (g->i >= m->n)
			c = 1;
		else if (g->j >= g->ne)
			c = -1;
		else {
			const ferry__mentry *a = &g->p->a[g->eff[g->j]].entry;
			c = ferry__path_cmp(m->e[g->i].path,
			                    m->e[g->i].path_len, a->path,
			                    a->path_len);
		}
		if (c < 0) {
			keep_old(g);
			continue;
		}
		int error = apply_path(g, c == 0);
		if (error)
			return error;
	}
	return 0;
}

/* Drop the entries of out (k, in tree order) whose parent directory is not
 * recorded; the count kept. */
static size_t drop_orphans(ferry__mentry *out, size_t k, uint32_t *stack)
{
	size_t depth = 0, kept = 0;
	for (size_t x = 0; x < k; x++) {
		const ferry__mentry *e = &out[x];
		while (depth > 0 &&
		       !ferry__path_under(e->path, e->path_len,
		                          out[stack[depth - 1]].path,
		                          out[stack[depth - 1]].path_len))
			depth--;
		size_t dl = ferry__path_dirlen(e->path, e->path_len);
		if (dl > 0 &&
		    (depth == 0 || out[stack[depth - 1]].path_len != dl))
			continue;
		out[kept] = *e;
		if (e->type == FERRY__T_DIR && depth < FERRY__PATH_MAX / 2 + 2)
			stack[depth++] = (uint32_t)kept;
		kept++;
	}
	return kept;
}

int ferry__plan_apply(const ferry__plan *p, ferry__manifest *m)
{
	size_t *eff = NULL, ne = 0, puts = 0;
	ferry__mentry *out = NULL;
	uint32_t *stack = NULL;
	int error = collect_effects(p, &eff, &ne, &puts);
	if (error)
		return error;
	if (ne > 1)
		qsort_r(eff, ne, sizeof(*eff), effect_cmp, p->a);
	out = ferry__reallocarray(NULL, m->n + puts + 1, sizeof(*out));
	stack = ferry__reallocarray(NULL, FERRY__PATH_MAX / 2 + 2,
	                            sizeof(*stack));
	if (!out || !stack) {
		error = FERRY_ENOMEM;
		goto done;
	}
	merge g = {.p = p, .m = m, .eff = eff, .ne = ne, .out = out};
	g.old_ref = m->stat_ns;
	error = merge_entries(&g);
	if (error)
		goto done;
	size_t kept = drop_orphans(out, g.k, stack);
	ferry__manifest_adopt(m, out, kept, m->n + puts + 1);
	out = NULL;
	m->stat_ns = p->stat_ns;
done:
	ferry__free(eff);
	ferry__free(out);
	ferry__free(stack);
	return error;
}
