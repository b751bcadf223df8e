#include "sync/remote.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "ferry.h"
#include "sync/path.h"
#include "sync/util.h"

#define TEMP_TAG     ".ferry-"
#define TEMP_TAG_LEN 7
#define TEMP_RAND    6
/* "." NAME ".ferry-" XXXXXX must fit in NAME_MAX (255) bytes. */
#define TEMP_NAME_MAX (255 - 1 - TEMP_TAG_LEN - TEMP_RAND)

static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "abcdefghijklmnopqrstuvwxyz0123456789";

char *ferry__rpath(const char *dest, const char *rel, size_t n)
{
	size_t dl = strlen(dest);
	if (n == 0)
		return ferry__strdup(dest);
	if (dl == 1 && dest[0] == '.')
		return ferry__strndup(rel, n);
	int slash = dest[dl - 1] != '/';
	char *p = ferry__malloc(dl + (size_t)slash + n + 1);
	if (!p)
		return NULL;
	memcpy(p, dest, dl);
	if (slash)
		p[dl] = '/';
	memcpy(p + dl + (size_t)slash, rel, n);
	p[dl + (size_t)slash + n] = '\0';
	return p;
}

/* rel (n bytes) with its last name made a temporary name; *len. */
static char *temp_path(const char *rel, size_t n, size_t *len)
{
	size_t dirlen = ferry__path_dirlen(rel, n);
	const char *name = rel + (dirlen ? dirlen + 1 : 0);
	size_t nl = n - (size_t)(name - rel);
	if (nl > TEMP_NAME_MAX)
		nl = TEMP_NAME_MAX;
	uint8_t rnd[TEMP_RAND];
	if (ferry__random_bytes(rnd, sizeof(rnd)))
		return NULL;
	size_t tl = (size_t)(name - rel) + 1 + nl + TEMP_TAG_LEN + TEMP_RAND;
	char *t = ferry__malloc(tl + 1);
	if (!t)
		return NULL;
	size_t k = (size_t)(name - rel);
	memcpy(t, rel, k);
	t[k++] = '.';
	memcpy(t + k, name, nl);
	k += nl;
	memcpy(t + k, TEMP_TAG, TEMP_TAG_LEN);
	k += TEMP_TAG_LEN;
	for (size_t i = 0; i < TEMP_RAND; i++)
		t[k++] = alnum[rnd[i] % (sizeof(alnum) - 1)];
	t[k] = '\0';
	*len = k;
	return t;
}

char *ferry__rtemp(const char *dest, const char *rel, size_t n)
{
	size_t k;
	char *t = temp_path(rel, n, &k);
	if (!t)
		return NULL;
	char *r = ferry__rpath(dest, t, k);
	ferry__free(t);
	return r;
}

char *ferry__temp_name(const char *name, size_t n)
{
	size_t k;
	return temp_path(name, n, &k);
}

int ferry__rtemp_name(const char *name, size_t n)
{
	if (n < 2 + TEMP_TAG_LEN + TEMP_RAND || name[0] != '.')
		return 0;
	const char *tag = name + n - TEMP_RAND - TEMP_TAG_LEN;
	if (memcmp(tag, TEMP_TAG, TEMP_TAG_LEN) != 0)
		return 0;
	for (size_t i = n - TEMP_RAND; i < n; i++)
		if (!memchr(alnum, name[i], sizeof(alnum) - 1) || !name[i])
			return 0;
	return 1;
}

int ferry__rtemp_in(const char *dest, const char *path)
{
	size_t dl = strlen(dest), pl = strlen(path);
	if (dl == 1 && dest[0] == '.') {
		dl = 0;
	} else {
		if (!dl || pl <= dl || memcmp(path, dest, dl) != 0)
			return 0;
		if (dest[dl - 1] != '/' && path[dl++] != '/')
			return 0;
	}
	const char *rel = path + dl;
	size_t rn = pl - dl;
	size_t dn = ferry__path_dirlen(rel, rn);
	size_t skip = dn ? dn + 1 : 0;
	return ferry__path_valid(rel, rn) &&
	       ferry__rtemp_name(rel + skip, rn - skip);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int ferry__marker_parse(uint8_t id[FERRY__MARKER_ID_LEN], const void *data,
                        size_t len)
{
	const char *s = data;
	if (len < 2 * FERRY__MARKER_ID_LEN)
		return FERRY_EPROTO;
	for (size_t i = 2 * FERRY__MARKER_ID_LEN; i < len; i++)
		if (s[i] != '\n' && s[i] != '\r' && s[i] != ' ' && s[i] != '\t')
			return FERRY_EPROTO;
	for (size_t i = 0; i < FERRY__MARKER_ID_LEN; i++) {
		int hi = hexval((unsigned char)s[2 * i]);
		int lo = hexval((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return FERRY_EPROTO;
		id[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void ferry__marker_text(char out[FERRY__MARKER_TEXT_LEN + 1],
                        const uint8_t id[FERRY__MARKER_ID_LEN])
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < FERRY__MARKER_ID_LEN; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 15];
	}
	out[2 * FERRY__MARKER_ID_LEN] = '\n';
	out[FERRY__MARKER_TEXT_LEN] = '\0';
}

/* ---- scope ----------------------------------------------------------------
 */

int ferry__scope_dir(const ferry__scan *scan, const char *path, size_t n)
{
	if (n == 0)
		return 1;
	for (size_t i = 0; i < scan->nsrc; i++) {
		const ferry__source *s = &scan->src[i];
		if (s->fd < 0)
			continue;
		if (s->kind == FERRY__SRC_CONTENTS)
			return 1;
		if (s->kind == FERRY__SRC_DIR &&
		    ((n == s->prefix_len && !memcmp(path, s->prefix, n)) ||
		     ferry__path_under(path, n, s->prefix, s->prefix_len)))
			return 1;
	}
	return 0;
}

/* ---- listing --------------------------------------------------------------
 */

int ferry__reserved_name(const char *name, size_t n, const char *marker)
{
	return (n == sizeof(FERRY__MARKER_NAME) - 1 &&
	        !memcmp(name, FERRY__MARKER_NAME, n)) ||
	       (marker && strlen(marker) == n && !memcmp(name, marker, n)) ||
	       (n >= TEMP_TAG_LEN && !memcmp(name, TEMP_TAG, TEMP_TAG_LEN)) ||
	       ferry__rtemp_name(name, n);
}

const char *ferry__marker_name(const ferry_sync_opts *o)
{
	return o->marker && *o->marker ? o->marker : FERRY__MARKER_NAME;
}

const char *ferry__marker_check(const char *name)
{
	if (!name || !*name)
		return NULL;
	size_t n = strlen(name);
	if (n > 255)
		return "the marker's name is longer than 255 bytes";
	if (!strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
		return "the marker must be one name inside the destination "
		       "(not \".\", \"..\" or a path with '/'): a marker kept "
		       "elsewhere could not tell a wiped destination";
	if ((n >= TEMP_TAG_LEN && !memcmp(name, TEMP_TAG, TEMP_TAG_LEN)) ||
	    ferry__rtemp_name(name, n))
		return "the marker's name has the form of ferry's temporary "
		       "names";
	return NULL;
}

/* A directory listing: of a root (idx SIZE_MAX), of a directory found by
 * its parent's listing, or a guess (listed before its parent answered:
 * held until a listing shows it, dropped when none does). */
struct ferry__rjob {
	ferry__rlist *rl;
	size_t idx; /* entry of the directory; SIZE_MAX: the root */
	unsigned root;
	char *rel;
	size_t rel_len;
	int guess;     /* lives in rl->guess, freed with rl */
	int confirmed; /* a listing showed it: its answer is taken */
	int held;      /* answered before it was confirmed */
	int used;
	int err;
	char *msg;
	ferry__sftp_dirent *ents;
	size_t nents;
};

typedef ferry__rjob dir_job;

typedef struct link_job {
	ferry__rlist *rl;
	size_t idx;
} link_job;

static int type_of(uint32_t perm)
{
	switch (perm & S_IFMT) {
	case S_IFREG:
		return FERRY__T_FILE;
	case S_IFDIR:
		return FERRY__T_DIR;
	case S_IFLNK:
		return FERRY__T_LINK;
	default:
		return FERRY__T_NONE;
	}
}

static void set_error(ferry__rlist *rl, int code)
{
	if (!rl->error)
		rl->error = code;
}

static void set_error_msg(ferry__rlist *rl, int code, const char *msg)
{
	if (rl->error)
		return;
	rl->error = code;
	snprintf(rl->errmsg, sizeof(rl->errmsg), "%s", msg);
}

static uint64_t max_or(uint64_t v, uint64_t def)
{
	return v ? v : def;
}

static void add_fail(ferry__rlist *rl, ferry__rfail **list, size_t *count,
                     const char *rel, size_t n, int code, const char *msg)
{
	ferry__rfail *v = ferry__reallocarray(*list, *count + 1, sizeof(*v));
	if (!v) {
		set_error(rl, FERRY_ENOMEM);
		return;
	}
	*list = v;
	ferry__rfail *f = &v[*count];
	f->path = ferry__strndup(rel, n);
	f->msg = ferry__strdup(msg);
	f->code = code;
	if (!f->path || !f->msg) {
		ferry__free(f->path);
		ferry__free(f->msg);
		set_error(rl, FERRY_ENOMEM);
		return;
	}
	(*count)++;
}

static void job_free(dir_job *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->nents; i++)
		ferry__free(j->ents[i].name);
	ferry__free(j->ents);
	ferry__free(j->msg);
	ferry__free(j->rel);
	ferry__free(j);
}

static int submit_dir(ferry__rlist *rl, dir_job *j);

static void saw_reply(ferry__rlist *rl)
{
	uint64_t g = ferry__sftp_gen_now(rl->sf);
	if (g > rl->gen)
		rl->gen = g;
}

static void link_cb(void *ctx, const ferry__sftp_reply *r)
{
	link_job *j = ctx;
	ferry__rlist *rl = j->rl;
	ferry__rentry *e = &rl->e[j->idx];
	rl->pending--;
	saw_reply(rl);
	if (r->error || r->count < 1) {
		e->link_state = FERRY__RL_FAIL;
	} else {
		char *l = ferry__arena_strndup(&rl->arena, r->names[0].name,
		                               r->names[0].name_len);
		if (!l) {
			set_error(rl, FERRY_ENOMEM);
			e->link_state = FERRY__RL_FAIL;
		} else {
			e->link = l;
			e->link_len = (uint32_t)r->names[0].name_len;
			e->link_state = FERRY__RL_DONE;
		}
	}
	ferry__free(j);
}

/* Why a name from the server cannot be a name here, or NULL. */
static const char *name_problem(const char *nm, size_t n)
{
	if (n == 0)
		return "an empty name";
	if (memchr(nm, '\0', n))
		return "a name holding a NUL byte";
	if (memchr(nm, '/', n))
		return "a name holding '/'";
	if ((n == 1 && nm[0] == '.') ||
	    (n == 2 && nm[0] == '.' && nm[1] == '.'))
		return "'.' or '..' as an entry of its own";
	if (n > NAME_MAX)
		return "a name longer than 255 bytes";
	return NULL;
}

/* Strict: a refused name, reported as its directory and the name (a NUL
 * in it shown as '?'; the report escapes the rest). */
static void refuse_name(ferry__rlist *rl, const dir_job *j, const char *nm,
                        size_t n, const char *why)
{
	size_t pl = j->rel_len + (j->rel_len ? 1 : 0) + n;
	char *p = ferry__malloc(pl + 1);
	if (!p) {
		set_error(rl, FERRY_ENOMEM);
		return;
	}
	memcpy(p, j->rel, j->rel_len);
	if (j->rel_len)
		p[j->rel_len] = '/';
	for (size_t i = 0; i < n; i++)
		p[pl - n + i] = nm[i] ? nm[i] : '?';
	p[pl] = '\0';
	char msg[160];
	snprintf(msg, sizeof(msg),
	         "refused: the server listed %s (nothing written)", why);
	add_fail(rl, &rl->bad, &rl->nbad, p, pl, FERRY_EPROTO, msg);
	ferry__free(p);
}

static int add_entry(ferry__rlist *rl, const dir_job *j,
                     const ferry__sftp_dirent *d, size_t *idx)
{
	size_t nl = d->name_len, rn = j->rel_len;
	size_t pl = rn ? rn + 1 + nl : nl;
	const char *why = name_problem(d->name, nl);
	if (!why && pl >= FERRY__PATH_MAX)
		why = "a path longer than 4095 bytes";
	if (why) {
		if (rl->o.strict)
			refuse_name(rl, j, d->name, nl, why);
		return 1; /* never an entry: a push ignores it */
	}
	uint64_t max = max_or(rl->o.max_entries, FERRY__RLIST_MAX_ENTRIES);
	uint64_t maxb =
	        max_or(rl->o.max_name_bytes, FERRY__LIST_MAX_NAME_BYTES);
	if (rl->n >= max || nl > maxb - rl->name_bytes) {
		char m[500];
		int over = rl->n >= max;
		char *rp = ferry__rlist_rpath(rl, j->root, j->rel, rn);
		snprintf(m, sizeof(m),
		         "readdir %s: the server listed more than %llu %s in "
		         "all (the limit of %s): stopped",
		         rp ? rp : j->rel,
		         (unsigned long long)(over ? max : maxb),
		         over ? "entries" : "bytes of names",
		         over ? "total entries" : "bytes of names");
		ferry__free(rp);
		set_error_msg(rl, FERRY_ELIMIT, m);
		return FERRY_ELIMIT;
	}
	if (ferry__grow(&rl->e, &rl->cap, rl->n + 1, sizeof(*rl->e), 256))
		return FERRY_ENOMEM;
	char *p = ferry__arena_alloc(&rl->arena, pl + 1, 1);
	if (!p)
		return FERRY_ENOMEM;
	if (rn) {
		memcpy(p, j->rel, rn);
		p[rn] = '/';
		memcpy(p + rn + 1, d->name, nl);
	} else {
		memcpy(p, d->name, nl);
	}
	p[pl] = '\0';
	ferry__rentry *e = &rl->e[rl->n];
	memset(e, 0, sizeof(*e));
	e->path = p;
	e->path_len = (uint32_t)pl;
	e->root = (uint16_t)j->root;
	e->attr_flags = d->attrs.flags;
	e->type = (d->attrs.flags & FERRY__ATTR_PERMISSIONS)
	                  ? (uint8_t)type_of(d->attrs.perm)
	                  : FERRY__T_NONE;
	e->temp = (uint8_t)ferry__rtemp_name(d->name, nl);
	e->reserved = (uint8_t)ferry__reserved_name(d->name, nl, rl->o.marker);
	e->mode = d->attrs.perm & 07777;
	e->mtime = d->attrs.mtime;
	e->size = d->attrs.size;
	rl->name_bytes += nl;
	*idx = rl->n++;
	return 0;
}

static dir_job *find_guess(ferry__rlist *rl, const char *path, size_t n)
{
	size_t lo = 0, hi = rl->nguess;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		dir_job *g = rl->guess[mid];
		int c = ferry__path_cmp(g->rel, g->rel_len, path, n);
		if (c == 0)
			return g;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void take(ferry__rlist *rl, dir_job *j, int err, const char *msg,
                 const ferry__sftp_dirent *ents, size_t n);

/* The directory entry idx (under root) is to be listed: by the guess
 * already out for it, or now. */
static void enter_dir(ferry__rlist *rl, size_t idx, unsigned root)
{
	ferry__rentry *e = &rl->e[idx];
	dir_job *g = find_guess(rl, e->path, e->path_len);
	if (g && !g->used && g->root == root) {
		g->used = 1;
		g->confirmed = 1;
		g->idx = idx;
		rl->guesses_used++;
		if (g->held)
			take(rl, g, g->err, g->msg ? g->msg : "", g->ents,
			     g->nents);
		return;
	}
	dir_job *j = ferry__calloc(1, sizeof(*j));
	if (!j || !(j->rel = ferry__strndup(e->path, e->path_len))) {
		ferry__free(j);
		set_error(rl, FERRY_ENOMEM);
		return;
	}
	j->rl = rl;
	j->idx = idx;
	j->root = root;
	j->rel_len = e->path_len;
	int rc = submit_dir(rl, j);
	if (rc) {
		job_free(j);
		set_error(rl, rc);
	}
}

static void read_link(ferry__rlist *rl, size_t idx)
{
	ferry__rentry *e = &rl->e[idx];
	link_job *lj = ferry__calloc(1, sizeof(*lj));
	char *rp = ferry__rlist_rpath(rl, e->root, e->path, e->path_len);
	if (!lj || !rp) {
		ferry__free(lj);
		ferry__free(rp);
		set_error(rl, FERRY_ENOMEM);
		return;
	}
	lj->rl = rl;
	lj->idx = idx;
	e->link_state = FERRY__RL_PENDING;
	int rc = ferry__sftp_readlink(rl->sf, rp, link_cb, lj);
	ferry__free(rp);
	if (rc) {
		ferry__free(lj);
		e->link_state = FERRY__RL_FAIL;
		set_error(rl, rc);
	} else {
		rl->pending++;
	}
}

/* The answer of j's listing: its entries, the listings of its
 * subdirectories and the targets of its symlinks. */
static void take(ferry__rlist *rl, dir_job *j, int err, const char *msg,
                 const ferry__sftp_dirent *ents, size_t n)
{
	if (j->idx == SIZE_MAX) {
		ferry__rroot *r = &rl->roots[j->root];
		r->list_state = err ? -1 : 1;
		r->list_code = err;
		snprintf(r->list_msg, sizeof(r->list_msg), "%s", msg);
		if (!err)
			r->entries = n;
	} else if (err) {
		if (err == FERRY_ELIMIT)
			set_error_msg(rl, err, msg);
		else if (err == FERRY_ENOMEM || ferry__sftp_dead(rl->sf))
			set_error(rl, err);
		else
			add_fail(rl, &rl->fail, &rl->nfail, j->rel, j->rel_len,
			         err, msg);
	} else {
		rl->e[j->idx].listed = 1;
	}
	if (!err)
		rl->dirs_listed++;
	/* The entries first (contiguous), then what they lead to: the
	 * listings of subdirectories may be taken at once (a guess held). */
	size_t first = rl->n;
	for (size_t i = 0; !err && !rl->error && i < n; i++) {
		size_t idx;
		int rc = add_entry(rl, j, &ents[i], &idx);
		if (rc < 0) {
			set_error(rl, rc);
			break;
		}
	}
	size_t end = rl->n;
	if (!err && !rl->error && rl->o.on_listed)
		rl->o.on_listed(rl->o.ctx, rl, j->idx, j->root, first, end);
	for (size_t idx = first; !err && !rl->error && idx < end; idx++) {
		ferry__rentry *e = &rl->e[idx];
		int skip = e->temp || (rl->o.strict && e->reserved);
		if (e->type == FERRY__T_DIR && !skip &&
		    (!rl->o.scope ||
		     ferry__scope_dir(rl->o.scope, e->path, e->path_len)) &&
		    !ferry__excludes_match_tree(rl->o.ex, e->path, e->path_len,
		                                1))
			enter_dir(rl, idx, j->root);
		else if (e->type == FERRY__T_LINK && !skip)
			read_link(rl, idx);
	}
}

/* Keep a guess's answer until a listing shows its directory. */
static void hold(dir_job *j, int err, const char *msg,
                 const ferry__sftp_dirent *ents, size_t n)
{
	j->held = 1;
	j->err = err;
	if (err) {
		j->msg = ferry__strdup(msg);
		if (!j->msg)
			j->err = FERRY_ENOMEM;
		return;
	}
	if (n && !(j->ents = ferry__calloc(n, sizeof(*j->ents)))) {
		j->err = FERRY_ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		j->ents[i].attrs = ents[i].attrs;
		j->ents[i].name_len = ents[i].name_len;
		j->ents[i].name = ferry__malloc(ents[i].name_len + 1);
		if (!j->ents[i].name) {
			j->err = FERRY_ENOMEM;
			return;
		}
		memcpy(j->ents[i].name, ents[i].name, ents[i].name_len + 1);
		j->nents = i + 1;
	}
}

static void list_cb(void *ctx, int err, const char *msg,
                    const ferry__sftp_dirent *ents, size_t n)
{
	dir_job *j = ctx;
	ferry__rlist *rl = j->rl;
	rl->pending--;
	saw_reply(rl);
	if (j->guess && !j->confirmed) {
		hold(j, err, msg, ents, n);
		return;
	}
	take(rl, j, err, msg, ents, n);
	if (!j->guess)
		job_free(j);
}

static int submit_dir(ferry__rlist *rl, dir_job *j)
{
	char *rp = ferry__rlist_rpath(rl, j->root, j->rel, j->rel_len);
	if (!rp)
		return FERRY_ENOMEM;
	/* One listing holds at most what is left of the totals: a listing
	 * that never ends is stopped by the first bound it meets. */
	uint64_t maxb =
	        max_or(rl->o.max_name_bytes, FERRY__LIST_MAX_NAME_BYTES);
	uint64_t maxe = max_or(rl->o.max_entries, FERRY__RLIST_MAX_ENTRIES);
	uint64_t maxd = max_or(rl->o.max_dir_entries, FERRY__LIST_MAX_ENTRIES);
	uint64_t left = maxe > rl->n ? maxe - rl->n : 1;
	ferry__sftp_list_limits lim = {
	        .max_entries = maxd < left ? maxd : left,
	        .max_name_bytes =
	                maxb > rl->name_bytes ? maxb - rl->name_bytes : 1};
	int rc = ferry__sftp_list_ex(rl->sf, rp, &lim, list_cb, j);
	ferry__free(rp);
	if (rc)
		return rc;
	rl->pending++;
	return 0;
}

typedef struct stat_job {
	ferry__rlist *rl;
	unsigned root;
} stat_job;

static void stat_cb(void *ctx, const ferry__sftp_reply *r)
{
	stat_job *sj = ctx;
	ferry__rlist *rl = sj->rl;
	ferry__rroot *rt = &rl->roots[sj->root];
	ferry__free(sj);
	rl->pending--;
	saw_reply(rl);
	if (!r->error && r->attrs) {
		rt->attrs = *r->attrs;
		rt->stat_state = type_of(r->attrs->perm) == FERRY__T_DIR
		                         ? FERRY__ROOT_DIR
		                         : FERRY__ROOT_NOTDIR;
	} else if (r->error == FERRY_ENOTFOUND) {
		rt->stat_state = FERRY__ROOT_MISSING;
	} else {
		rt->stat_state = FERRY__ROOT_ERROR;
		rt->code = r->error ? r->error : FERRY_EPROTO;
		snprintf(rt->msg, sizeof(rt->msg), "%s", r->message);
		if (ferry__sftp_dead(rl->sf))
			set_error(rl, r->error);
	}
}

char *ferry__rlist_rpath(const ferry__rlist *rl, unsigned r, const char *rel,
                         size_t n)
{
	const ferry__rroot *rt = &rl->roots[r];
	size_t pl = rt->prefix_len;
	if (pl == 0)
		return ferry__rpath(rt->path, rel, n);
	if (n == pl && !memcmp(rel, rt->prefix, n))
		return ferry__strdup(rt->path);
	if (!ferry__path_under(rel, n, rt->prefix, pl))
		return NULL;
	return ferry__rpath(rt->path, rel + pl + 1, n - pl - 1);
}

static int guess_cmp(const void *x, const void *y)
{
	const dir_job *a = *(dir_job *const *)x, *b = *(dir_job *const *)y;
	return ferry__path_cmp(a->rel, a->rel_len, b->rel, b->rel_len);
}

/* The root a destination path lies under (below its top), or -1. */
static int root_of(const ferry__rlist *rl, const char *p, size_t n)
{
	for (size_t i = 0; i < rl->nroots; i++) {
		const ferry__rroot *rt = &rl->roots[i];
		if (ferry__path_under(p, n, rt->prefix, rt->prefix_len))
			return (int)i;
	}
	return -1;
}

static int submit_guesses(ferry__rlist *rl)
{
	const ferry__rlist_opts *o = &rl->o;
	if (!o->nguess)
		return 0;
	rl->guess = ferry__calloc(o->nguess, sizeof(*rl->guess));
	if (!rl->guess)
		return FERRY_ENOMEM;
	for (size_t i = 0; i < o->nguess; i++) {
		size_t n = strlen(o->guess[i]);
		int r = root_of(rl, o->guess[i], n);
		if (r < 0 || !ferry__path_valid(o->guess[i], n))
			continue;
		dir_job *j = ferry__calloc(1, sizeof(*j));
		if (!j || !(j->rel = ferry__strndup(o->guess[i], n))) {
			ferry__free(j);
			return FERRY_ENOMEM;
		}
		j->rl = rl;
		j->root = (unsigned)r;
		j->rel_len = n;
		j->guess = 1;
		rl->guess[rl->nguess++] = j;
	}
	if (rl->nguess > 1)
		qsort(rl->guess, rl->nguess, sizeof(*rl->guess), guess_cmp);
	size_t k = 0;
	for (size_t i = 0; i < rl->nguess; i++) {
		if (k && !guess_cmp(&rl->guess[k - 1], &rl->guess[i]))
			job_free(rl->guess[i]);
		else
			rl->guess[k++] = rl->guess[i];
	}
	rl->nguess = k;
	for (size_t i = 0; i < rl->nguess; i++) {
		int rc = submit_dir(rl, rl->guess[i]);
		if (rc) {
			/* Never answered: not to be waited for. */
			for (size_t m = i; m < rl->nguess; m++)
				job_free(rl->guess[m]);
			rl->nguess = i;
			return rc;
		}
	}
	return 0;
}

static int new_roots(ferry__rlist *rl, const ferry__rlist_opts *o)
{
	rl->roots = ferry__calloc(o->nroots, sizeof(*rl->roots));
	if (!rl->roots)
		return FERRY_ENOMEM;
	rl->nroots = o->nroots;
	for (size_t i = 0; i < o->nroots; i++) {
		ferry__rroot *rt = &rl->roots[i];
		const char *pre = o->prefixes ? o->prefixes[i] : "";
		rt->path = ferry__strdup(o->paths[i]);
		rt->prefix = ferry__strdup(pre);
		if (!rt->path || !rt->prefix)
			return FERRY_ENOMEM;
		rt->prefix_len = strlen(pre);
	}
	return 0;
}

int ferry__rlist_start(ferry__rlist **out, ferry__sftp *sf,
                       const ferry__rlist_opts *o)
{
	int error;
	*out = NULL;
	if (!o->nroots || o->nroots > UINT16_MAX)
		return FERRY_EINVALID;
	ferry__rlist *rl = ferry__calloc(1, sizeof(*rl));
	if (!rl)
		return FERRY_ENOMEM;
	ferry__arena_init(&rl->arena);
	rl->sf = sf;
	rl->o = *o;
	if ((error = new_roots(rl, o))) {
		ferry__rlist_free(rl);
		return error;
	}
	for (size_t i = 0; i < rl->nroots; i++) {
		stat_job *sj = ferry__calloc(1, sizeof(*sj));
		if (!sj) {
			error = FERRY_ENOMEM;
			break;
		}
		sj->rl = rl;
		sj->root = (unsigned)i;
		if ((error = ferry__sftp_stat(sf, rl->roots[i].path, stat_cb,
		                              sj))) {
			ferry__free(sj);
			break;
		}
		rl->pending++;
		dir_job *j = ferry__calloc(1, sizeof(*j));
		if (!j || !(j->rel = ferry__strdup(rl->roots[i].prefix))) {
			ferry__free(j);
			error = FERRY_ENOMEM;
			break;
		}
		j->rl = rl;
		j->idx = SIZE_MAX;
		j->root = (unsigned)i;
		j->rel_len = rl->roots[i].prefix_len;
		if ((error = submit_dir(rl, j))) {
			job_free(j);
			break;
		}
	}
	if (!error)
		error = submit_guesses(rl);
	if (error && !rl->pending) {
		ferry__rlist_free(rl);
		return error;
	}
	/* What is in flight completes; the error is reported then. */
	if (error)
		set_error(rl, error);
	*out = rl;
	return 0;
}

/* A root's state from its STAT and its listing; a named root (prefix)
 * becomes an entry of its own. */
static void settle_root(ferry__rlist *rl, unsigned i)
{
	ferry__rroot *r = &rl->roots[i];
	int st = r->stat_state;
	if (r->list_state > 0)
		r->state = FERRY__ROOT_DIR;
	else if (st == FERRY__ROOT_MISSING ||
	         (st == 0 && r->list_code == FERRY_ENOTFOUND))
		r->state = FERRY__ROOT_MISSING;
	else if (st == FERRY__ROOT_NOTDIR)
		r->state = FERRY__ROOT_NOTDIR;
	else {
		r->state = FERRY__ROOT_ERROR;
		if (st != FERRY__ROOT_ERROR) {
			r->code = r->list_code ? r->list_code : FERRY_EPROTO;
			snprintf(r->msg, sizeof(r->msg), "%s", r->list_msg);
		}
	}
	if (!r->prefix_len || rl->error ||
	    (r->state != FERRY__ROOT_DIR && r->state != FERRY__ROOT_NOTDIR))
		return;
	ferry__sftp_dirent d = {.name = r->prefix,
	                        .name_len = r->prefix_len,
	                        .attrs = r->attrs};
	if (r->state == FERRY__ROOT_DIR && st != FERRY__ROOT_DIR) {
		/* Listed, but the STAT said otherwise (or failed): a
		 * directory of unknown attributes. */
		d.attrs.flags = FERRY__ATTR_PERMISSIONS;
		d.attrs.perm = S_IFDIR | 0755;
	}
	dir_job top = {.rl = rl, .root = i, .rel = (char *)"", .rel_len = 0};
	size_t idx;
	int rc = add_entry(rl, &top, &d, &idx);
	if (rc < 0)
		set_error(rl, rc);
	else if (rc == 0)
		rl->e[idx].listed = r->state == FERRY__ROOT_DIR;
}

int ferry__rlist_done(void *ctx)
{
	ferry__rlist *rl = ctx;
	if (rl->pending)
		return 0;
	if (!rl->finished) {
		rl->finished = 1;
		for (size_t i = 0; i < rl->nroots; i++)
			settle_root(rl, (unsigned)i);
	}
	return 1;
}

static int rentry_cmp(const void *x, const void *y)
{
	const ferry__rentry *a = x, *b = y;
	return ferry__path_cmp(a->path, a->path_len, b->path, b->path_len);
}

void ferry__rlist_sort(ferry__rlist *rl)
{
	if (rl->n > 1)
		qsort(rl->e, rl->n, sizeof(*rl->e), rentry_cmp);
	if (rl->o.strict) {
		for (size_t i = 1; i < rl->n; i++)
			if (!rentry_cmp(&rl->e[i - 1], &rl->e[i]))
				rl->e[i - 1].dup = rl->e[i].dup = 1;
		return;
	}
	/* A push: one entry per path, so that nothing is deleted or
	 * counted twice; the lie is reported once per path. */
	size_t k = 0;
	for (size_t i = 0; i < rl->n; i++) {
		if (k && !rentry_cmp(&rl->e[k - 1], &rl->e[i])) {
			ferry__rentry *e = &rl->e[k - 1];
			if (!e->dup)
				add_fail(rl, &rl->bad, &rl->nbad, e->path,
				         e->path_len, FERRY_EPROTO,
				         "the server listed this name twice in "
				         "its directory: taken once");
			e->dup = 1;
			continue;
		}
		rl->e[k++] = rl->e[i];
	}
	for (size_t i = 0; i < k; i++)
		rl->e[i].dup = 0;
	rl->n = k;
}

const ferry__rentry *ferry__rlist_find(const ferry__rlist *rl, const char *path,
                                       size_t n)
{
	size_t lo = 0, hi = rl->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = ferry__path_cmp(rl->e[mid].path, rl->e[mid].path_len,
		                        path, n);
		if (c == 0)
			return &rl->e[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void fails_free(ferry__rfail *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ferry__free(v[i].path);
		ferry__free(v[i].msg);
	}
	ferry__free(v);
}

void ferry__rlist_free(ferry__rlist *rl)
{
	if (!rl)
		return;
	fails_free(rl->fail, rl->nfail);
	fails_free(rl->bad, rl->nbad);
	for (size_t i = 0; i < rl->nguess; i++)
		job_free(rl->guess[i]);
	ferry__free(rl->guess);
	for (size_t i = 0; rl->roots && i < rl->nroots; i++) {
		ferry__free(rl->roots[i].path);
		ferry__free(rl->roots[i].prefix);
	}
	ferry__free(rl->roots);
	ferry__free(rl->e);
	ferry__arena_free(&rl->arena);
	ferry__free(rl);
}
