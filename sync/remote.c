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

char *ferry__rtemp(const char *dest, const char *rel, size_t n)
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
	char *r = ferry__rpath(dest, t, k);
	ferry__free(t);
	return r;
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

typedef struct dir_job {
	ferry__rlist *rl;
	size_t idx; /* entry of the directory; SIZE_MAX: the root */
	char *rel;
	size_t rel_len;
} dir_job;

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

static void add_fail(ferry__rlist *rl, const char *rel, size_t n, int code,
                     const char *msg)
{
	ferry__rfail *v =
	        ferry__reallocarray(rl->fail, rl->nfail + 1, sizeof(*v));
	if (!v) {
		set_error(rl, FERRY_ENOMEM);
		return;
	}
	rl->fail = v;
	ferry__rfail *f = &v[rl->nfail];
	f->path = ferry__strndup(rel, n);
	f->msg = ferry__strdup(msg);
	f->code = code;
	if (!f->path || !f->msg) {
		ferry__free(f->path);
		ferry__free(f->msg);
		set_error(rl, FERRY_ENOMEM);
		return;
	}
	rl->nfail++;
}

static int submit_dir(ferry__rlist *rl, size_t idx, const char *rel, size_t n);

static void link_cb(void *ctx, const ferry__sftp_reply *r)
{
	link_job *j = ctx;
	ferry__rlist *rl = j->rl;
	ferry__rentry *e = &rl->e[j->idx];
	rl->pending--;
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

static int add_entry(ferry__rlist *rl, const char *rel, size_t rn,
                     const ferry__sftp_dirent *d, size_t *idx)
{
	size_t nl = strlen(d->name);
	size_t pl = rn ? rn + 1 + nl : nl;
	if (nl == 0 || memchr(d->name, '/', nl) || pl >= FERRY__PATH_MAX)
		return 1; /* not a name a sync set can hold: ignored */
	if (ferry__grow(&rl->e, &rl->cap, rl->n + 1, sizeof(*rl->e), 256))
		return FERRY_ENOMEM;
	char *p = ferry__arena_alloc(&rl->arena, pl + 1, 1);
	if (!p)
		return FERRY_ENOMEM;
	if (rn) {
		memcpy(p, rel, rn);
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
	e->type = (uint8_t)type_of(d->attrs.perm);
	e->temp = (uint8_t)ferry__rtemp_name(d->name, nl);
	e->mode = d->attrs.perm & 07777;
	e->mtime = d->attrs.mtime;
	e->size = d->attrs.size;
	*idx = rl->n++;
	return 0;
}

static void list_cb(void *ctx, int err, const char *msg,
                    const ferry__sftp_dirent *ents, size_t n)
{
	dir_job *j = ctx;
	ferry__rlist *rl = j->rl;
	rl->pending--;
	if (j->idx == SIZE_MAX) {
		rl->list_state = err ? -1 : 1;
		rl->list_code = err;
		snprintf(rl->list_msg, sizeof(rl->list_msg), "%s", msg);
	} else if (err) {
		if (err == FERRY_ENOMEM || ferry__sftp_dead(rl->sf))
			set_error(rl, err);
		else
			add_fail(rl, j->rel, j->rel_len, err, msg);
	} else {
		rl->e[j->idx].listed = 1;
	}
	if (!err)
		rl->dirs_listed++;
	for (size_t i = 0; !err && !rl->error && i < n; i++) {
		size_t idx;
		int rc = add_entry(rl, j->rel, j->rel_len, &ents[i], &idx);
		if (rc < 0) {
			set_error(rl, rc);
			break;
		}
		if (rc > 0)
			continue;
		ferry__rentry *e = &rl->e[idx];
		if (e->type == FERRY__T_DIR && !e->temp &&
		    ferry__scope_dir(rl->scan, e->path, e->path_len) &&
		    !ferry__excludes_match_tree(rl->ex, e->path, e->path_len,
		                                1)) {
			if ((rc = submit_dir(rl, idx, e->path, e->path_len)))
				set_error(rl, rc);
		} else if (e->type == FERRY__T_LINK) {
			link_job *lj = ferry__calloc(1, sizeof(*lj));
			char *rp = ferry__rpath(rl->dest, e->path, e->path_len);
			if (!lj || !rp) {
				ferry__free(lj);
				ferry__free(rp);
				set_error(rl, FERRY_ENOMEM);
				break;
			}
			lj->rl = rl;
			lj->idx = idx;
			e->link_state = FERRY__RL_PENDING;
			rc = ferry__sftp_readlink(rl->sf, rp, link_cb, lj);
			ferry__free(rp);
			if (rc) {
				ferry__free(lj);
				e->link_state = FERRY__RL_FAIL;
				set_error(rl, rc);
			} else {
				rl->pending++;
			}
		}
	}
	ferry__free(j->rel);
	ferry__free(j);
}

static int submit_dir(ferry__rlist *rl, size_t idx, const char *rel, size_t n)
{
	dir_job *j = ferry__calloc(1, sizeof(*j));
	char *rp = ferry__rpath(rl->dest, rel, n);
	if (!j || !rp)
		goto nomem;
	j->rl = rl;
	j->idx = idx;
	j->rel = ferry__strndup(n ? rel : "", n);
	if (!j->rel)
		goto nomem;
	j->rel_len = n;
	int rc = ferry__sftp_list(rl->sf, rp, list_cb, j);
	ferry__free(rp);
	if (rc) {
		ferry__free(j->rel);
		ferry__free(j);
		return rc;
	}
	rl->pending++;
	return 0;
nomem:
	if (j)
		ferry__free(j->rel);
	ferry__free(j);
	ferry__free(rp);
	return FERRY_ENOMEM;
}

static void stat_cb(void *ctx, const ferry__sftp_reply *r)
{
	ferry__rlist *rl = ctx;
	rl->pending--;
	if (!r->error && r->attrs) {
		rl->stat_state = type_of(r->attrs->perm) == FERRY__T_DIR
		                         ? FERRY__ROOT_DIR
		                         : FERRY__ROOT_NOTDIR;
	} else if (r->error == FERRY_ENOTFOUND) {
		rl->stat_state = FERRY__ROOT_MISSING;
	} else {
		rl->stat_state = FERRY__ROOT_ERROR;
		rl->root_code = r->error ? r->error : FERRY_EPROTO;
		snprintf(rl->root_msg, sizeof(rl->root_msg), "%s", r->message);
		if (ferry__sftp_dead(rl->sf))
			set_error(rl, r->error);
	}
}

int ferry__rlist_start(ferry__rlist **out, ferry__sftp *sf, const char *dest,
                       const ferry__scan *scan, const ferry__excludes *ex)
{
	int error;
	*out = NULL;
	ferry__rlist *rl = ferry__calloc(1, sizeof(*rl));
	if (!rl)
		return FERRY_ENOMEM;
	ferry__arena_init(&rl->arena);
	rl->sf = sf;
	rl->scan = scan;
	rl->ex = ex;
	rl->dest = ferry__strdup(dest);
	if (!rl->dest) {
		ferry__rlist_free(rl);
		return FERRY_ENOMEM;
	}
	if ((error = ferry__sftp_stat(sf, dest, stat_cb, rl))) {
		ferry__rlist_free(rl);
		return error;
	}
	rl->pending++;
	if ((error = submit_dir(rl, SIZE_MAX, "", 0))) {
		/* The STAT is in flight: let it complete, report the error. */
		set_error(rl, error);
	}
	*out = rl;
	return 0;
}

int ferry__rlist_done(void *ctx)
{
	ferry__rlist *rl = ctx;
	if (rl->pending)
		return 0;
	if (rl->root == FERRY__ROOT_PENDING) {
		int st = rl->stat_state;
		if (rl->list_state > 0)
			rl->root = FERRY__ROOT_DIR;
		else if (st == FERRY__ROOT_MISSING ||
		         (st == 0 && rl->list_code == FERRY_ENOTFOUND))
			rl->root = FERRY__ROOT_MISSING;
		else if (st == FERRY__ROOT_NOTDIR)
			rl->root = FERRY__ROOT_NOTDIR;
		else {
			rl->root = FERRY__ROOT_ERROR;
			if (st != FERRY__ROOT_ERROR) {
				rl->root_code = rl->list_code ? rl->list_code
				                              : FERRY_EPROTO;
				snprintf(rl->root_msg, sizeof(rl->root_msg),
				         "%s", rl->list_msg);
			}
		}
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

void ferry__rlist_free(ferry__rlist *rl)
{
	if (!rl)
		return;
	for (size_t i = 0; i < rl->nfail; i++) {
		ferry__free(rl->fail[i].path);
		ferry__free(rl->fail[i].msg);
	}
	ferry__free(rl->fail);
	ferry__free(rl->e);
	ferry__arena_free(&rl->arena);
	ferry__free(rl->dest);
	ferry__free(rl);
}
