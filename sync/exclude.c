#include "sync/exclude.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "ferry.h"
#include "sync/util.h"

#define PAT_DIR_ONLY 0x1u
#define PAT_ANCHORED 0x2u
#define PAT_FULL     0x4u /* matched against the path, not the last name */

/* Bound on the size of an exclude-from file. */
#define EXCLUDE_FILE_MAX ((off_t)16 << 20)
/* Bound on glob backtracking, against patterns like "*a*a*a*a*b". */
#define GLOB_STEPS_MAX 1000000

typedef struct excl_pattern {
	char *p;
	size_t len;
	unsigned flags;
} excl_pattern;

struct ferry__excludes {
	excl_pattern *v;
	size_t n, cap;
};

int ferry__excludes_new(ferry__excludes **out)
{
	*out = ferry__calloc(1, sizeof(**out));
	return *out ? 0 : FERRY_ENOMEM;
}

void ferry__excludes_free(ferry__excludes *ex)
{
	if (!ex)
		return;
	for (size_t i = 0; i < ex->n; i++)
		ferry__free(ex->v[i].p);
	ferry__free(ex->v);
	ferry__free(ex);
}

size_t ferry__excludes_count(const ferry__excludes *ex)
{
	return ex ? ex->n : 0;
}

static int add_pattern(ferry__excludes *ex, const char *s, size_t len)
{
	unsigned flags = 0;
	if (len >= 4 && memcmp(s + len - 4, "/***", 4) == 0) {
		len -= 4; /* the directory itself; its contents follow */
	} else if (len > 0 && s[len - 1] == '/') {
		flags |= PAT_DIR_ONLY;
		while (len > 0 && s[len - 1] == '/')
			len--;
	}
	if (len > 0 && s[0] == '/') {
		flags |= PAT_ANCHORED | PAT_FULL;
		while (len > 0 && s[0] == '/') {
			s++;
			len--;
		}
	}
	if (len == 0)
		return FERRY_EINVALID;
	if (memchr(s, '/', len) || memmem(s, len, "**", 2))
		flags |= PAT_FULL;
	if (ferry__grow(&ex->v, &ex->cap, ex->n + 1, sizeof(*ex->v), 8))
		return FERRY_ENOMEM;
	char *p = ferry__strndup(s, len);
	if (!p)
		return FERRY_ENOMEM;
	ex->v[ex->n].p = p;
	ex->v[ex->n].len = len;
	ex->v[ex->n].flags = flags;
	ex->n++;
	return 0;
}

int ferry__excludes_add(ferry__excludes *ex, const char *pat)
{
	return add_pattern(ex, pat, strlen(pat));
}

/* The whole file at path (a regular file of at most EXCLUDE_FILE_MAX
 * bytes) in *data (caller frees), *len bytes. */
static int read_exclude_file(const char *path, char **data, size_t *len,
                             char *err, size_t errsz)
{
	int error = 0;
	struct stat st;
	*data = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		error = errno == ENOENT ? FERRY_ENOTFOUND : FERRY_EIO;
		snprintf(err, errsz, "exclude-from %s: %s", path,
		         strerror(errno));
		return error;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > EXCLUDE_FILE_MAX) {
		error = FERRY_EIO;
		snprintf(
		        err, errsz,
		        "exclude-from %s: not a regular file of at most 16 MiB",
		        path);
		goto out;
	}
	size_t size = (size_t)st.st_size;
	*data = ferry__malloc(size + 1);
	if (!*data) {
		error = FERRY_ENOMEM;
		goto out;
	}
	ssize_t got = ferry__read_full(fd, *data, size);
	if (got < 0) {
		error = FERRY_EIO;
		snprintf(err, errsz, "exclude-from %s: %s", path,
		         strerror(errno));
		ferry__free(*data);
		*data = NULL;
		goto out;
	}
	*len = (size_t)got;
out:
	close(fd);
	return error;
}

/* The patterns of an exclude file's text, one a line. */
static int add_lines(ferry__excludes *ex, const char *path, char *data,
                     size_t len, char *err, size_t errsz)
{
	size_t lineno = 0;
	for (size_t i = 0; i < len;) {
		char *line = data + i;
		char *nl = memchr(line, '\n', len - i);
		size_t n = nl ? (size_t)(nl - line) : len - i;
		i += n + 1;
		lineno++;
		if (n == 0 || line[0] == '#' || line[0] == ';')
			continue;
		if (n >= 2 && line[0] == '+' && line[1] == ' ') {
			snprintf(err, errsz,
			         "exclude-from %s:%zu: include rules (\"+ \") "
			         "are not supported",
			         path, lineno);
			return FERRY_EINVALID;
		}
		if (n >= 2 && line[0] == '-' && line[1] == ' ') {
			line += 2;
			n -= 2;
		}
		if (memchr(line, '\0', n)) {
			snprintf(err, errsz, "exclude-from %s:%zu: NUL byte",
			         path, lineno);
			return FERRY_EINVALID;
		}
		if (n == 0)
			continue;
		int error = add_pattern(ex, line, n);
		if (error == FERRY_EINVALID)
			snprintf(err, errsz,
			         "exclude-from %s:%zu: empty pattern", path,
			         lineno);
		if (error)
			return error;
	}
	return 0;
}

int ferry__excludes_add_file(ferry__excludes *ex, const char *path, char *err,
                             size_t errsz)
{
	char *data = NULL;
	size_t len = 0;
	int error = read_exclude_file(path, &data, &len, err, errsz);
	if (!error)
		error = add_lines(ex, path, data, len, err, errsz);
	ferry__free(data);
	return error;
}

/* [...] at *pp (just past the '['); 1 match, 0 no match, -1 not a class
 * (no closing bracket: the '[' is then a plain byte). */
static int class_match(const char **pp, const char *pe, unsigned char c)
{
	const char *p = *pp;
	int neg = 0, hit = 0;
	if (p < pe && (*p == '!' || *p == '^')) {
		neg = 1;
		p++;
	}
	int first = 1;
	while (p < pe && (*p != ']' || first)) {
		first = 0;
		unsigned char lo = (unsigned char)*p;
		if (lo == '\\' && p + 1 < pe)
			lo = (unsigned char)*++p;
		p++;
		unsigned char hi = lo;
		if (p + 1 < pe && *p == '-' && p[1] != ']') {
			hi = (unsigned char)p[1];
			if (hi == '\\' && p + 2 < pe) {
				hi = (unsigned char)p[2];
				p++;
			}
			p += 2;
		}
		if (c >= lo && c <= hi)
			hit = 1;
	}
	if (p >= pe)
		return -1;
	*pp = p + 1;
	return c != '/' && (hit ^ neg);
}

static int gmatch(const char *p, const char *pe, const char *s, const char *se,
                  const char *pstart, long *steps)
{
	if (++*steps > GLOB_STEPS_MAX)
		return 0;
	while (p < pe) {
		char c = *p;
		if (c == '*') {
			const char *stars = p;
			while (p < pe && *p == '*')
				p++;
			int dbl = p - stars >= 2;
			if (p == pe)
				return dbl || !memchr(s, '/', (size_t)(se - s));
			/* "**" + "/" between components (or at the start) may
			 * also match no directory at all. */
			if (dbl && *p == '/' &&
			    (stars == pstart || stars[-1] == '/') &&
			    gmatch(p + 1, pe, s, se, pstart, steps))
				return 1;
			for (const char *t = s;; t++) {
				if (gmatch(p, pe, t, se, pstart, steps))
					return 1;
				if (t == se || (!dbl && *t == '/'))
					return 0;
			}
		}
		if (s == se)
			return 0;
		if (c == '?') {
			if (*s == '/')
				return 0;
			p++;
			s++;
			continue;
		}
		if (c == '[') {
			const char *q = p + 1;
			int m = class_match(&q, pe, (unsigned char)*s);
			if (m == 0)
				return 0;
			if (m == 1) {
				p = q;
				s++;
				continue;
			}
		} else if (c == '\\' && p + 1 < pe) {
			c = *++p;
		}
		if (*s != c)
			return 0;
		p++;
		s++;
	}
	return s == se;
}

int ferry__glob_match(const char *pat, size_t plen, const char *s, size_t n)
{
	long steps = 0;
	return gmatch(pat, pat + plen, s, s + n, pat, &steps);
}

static int pattern_match(const excl_pattern *pt, const char *path, size_t n,
                         int is_dir)
{
	if ((pt->flags & PAT_DIR_ONLY) && !is_dir)
		return 0;
	if (!(pt->flags & PAT_FULL)) {
		size_t d = n;
		while (d > 0 && path[d - 1] != '/')
			d--;
		return ferry__glob_match(pt->p, pt->len, path + d, n - d);
	}
	if (ferry__glob_match(pt->p, pt->len, path, n))
		return 1;
	if (pt->flags & PAT_ANCHORED)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (path[i] == '/' &&
		    ferry__glob_match(pt->p, pt->len, path + i + 1, n - i - 1))
			return 1;
	return 0;
}

int ferry__excludes_match(const ferry__excludes *ex, const char *path, size_t n,
                          int is_dir)
{
	if (!ex)
		return 0;
	for (size_t i = 0; i < ex->n; i++)
		if (pattern_match(&ex->v[i], path, n, is_dir))
			return 1;
	return 0;
}

int ferry__excludes_match_tree(const ferry__excludes *ex, const char *path,
                               size_t n, int is_dir)
{
	if (!ex || ex->n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (path[i] == '/' && ferry__excludes_match(ex, path, i, 1))
			return 1;
	return ferry__excludes_match(ex, path, n, is_dir);
}

int ferry__excludes_from_opts(ferry__excludes **out, const ferry_sync_opts *o,
                              char *err, size_t errsz)
{
	ferry__excludes *ex = NULL;
	int error = ferry__excludes_new(&ex);
	for (size_t i = 0; !error && i < o->exclude_count; i++) {
		const char *pat = o->excludes[i];
		error = ferry__excludes_add(ex, pat ? pat : "");
		if (error)
			snprintf(err, errsz, "%s",
			         error == FERRY_EINVALID
			                 ? "empty exclude pattern"
			                 : "out of memory");
	}
	for (size_t i = 0; !error && i < o->exclude_from_count; i++)
		error = ferry__excludes_add_file(ex, o->exclude_from[i], err,
		                                 errsz);
	if (error == FERRY_ENOMEM && !ex)
		snprintf(err, errsz, "out of memory");
	if (error) {
		ferry__excludes_free(ex);
		ex = NULL;
	}
	*out = ex;
	return error;
}
