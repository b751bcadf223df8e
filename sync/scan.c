#include "sync/scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "alloc.h"
#include "sync/path.h"
#include "sync/report.h"
#include "sync/util.h"

/* Directory descriptors kept open down the current path; deeper levels
 * close their parent while they run and reopen it afterwards (checked by
 * device and inode), so any depth works within a small fd budget. */
#define FD_KEEP        64
#define DENTS_BUF      (64 << 10)
#define LINK_DEPTH_MAX 40
#define RESOLVE_BUF    (2 * FERRY__PATH_MAX)
#define WALK_STOP      1 /* enter_dir: this directory's walk ends */

typedef struct level {
	int fd;
	uint64_t dev, ino;
	size_t plen; /* length of this directory's path in w->path */
} level;

struct ferry__scan_walk {
	char path[FERRY__PATH_MAX + NAME_MAX + 2];
	char link[FERRY__PATH_MAX];
	char rcur[RESOLVE_BUF], rrest[RESOLVE_BUF], rlink[FERRY__PATH_MAX];
	_Alignas(16) char dents[DENTS_BUF]; /* struct dirent64 records */
	/* Names of the directories on the current path, a stack. */
	char *nb;
	size_t nb_len, nb_cap;
	uint32_t *ix;
	size_t ix_len, ix_cap;
	level *lv;
	size_t lv_cap;
};

int ferry__stat_type(mode_t m)
{
	if (S_ISREG(m))
		return FERRY__T_FILE;
	if (S_ISDIR(m))
		return FERRY__T_DIR;
	if (S_ISLNK(m))
		return FERRY__T_LINK;
	return FERRY__T_NONE;
}

void ferry__stat_from(ferry__stat *out, const struct stat *st)
{
	out->size = (uint64_t)st->st_size;
	out->ino = (uint64_t)st->st_ino;
	out->dev = (uint64_t)st->st_dev;
	out->mtime_ns =
	        (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	out->ctime_ns =
	        (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
	out->mode = (uint32_t)(st->st_mode & 07777);
	out->type = (uint8_t)ferry__stat_type(st->st_mode);
}

int ferry__stat_eq(const ferry__stat *a, const ferry__stat *b)
{
	return a->size == b->size && a->mtime_ns == b->mtime_ns &&
	       a->ctime_ns == b->ctime_ns && a->ino == b->ino &&
	       a->dev == b->dev && a->mode == b->mode;
}

/* ---- the racy window (scan.h) ---- */

int64_t ferry__racy_window(unsigned long f_type)
{
	switch (f_type) {
	case 0xEF53UL:     /* ext4, ext3, ext2 */
	case 0x58465342UL: /* xfs */
	case 0x9123683EUL: /* btrfs */
	case 0x01021994UL: /* tmpfs */
	case 0x794C7630UL: /* overlayfs */
		return FERRY__RACY_FINE_NS;
	default: /* vfat 0x4d44, exfat 0x2011bab0, nfs, unknown */
		return FERRY__RACY_COARSE_NS;
	}
}

/* The window of the file system of directory fd (st: its fstat). */
static int64_t fs_window(int fd, const struct stat *st)
{
	struct statfs fs;
	if (fstatfs(fd, &fs) < 0 || st->st_ctim.tv_nsec == 0)
		return FERRY__RACY_COARSE_NS;
	return ferry__racy_window((unsigned long)fs.f_type);
}

static void raise_window(ferry__scan *s, int64_t w)
{
	if (w > s->racy_ns)
		s->racy_ns = w;
}

static int errno_code(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return FERRY_ENOTFOUND;
	case EACCES:
	case EPERM:
		return FERRY_EPERM;
	case ENOMEM:
		return FERRY_ENOMEM;
	default:
		return FERRY_EIO;
	}
}

static void scan_error(ferry__scan *s, const char *path, size_t n, int e,
                       const char *what)
{
	s->incomplete = 1;
	s->errors++;
	ferry__report_error(s->report, s->log, s->log_ctx, path, n,
	                    errno_code(e), "%s: %s", what, strerror(e));
}

/* ---- sources ---- */

static int open_source(ferry__scan *s, ferry__source *src, char *err,
                       size_t errsz)
{
	const char *a = src->arg;
	size_t len = strlen(a);
	if (len == 0) {
		snprintf(err, errsz, "empty source path");
		return FERRY_EINVALID;
	}
	size_t end = len;
	while (end > 1 && a[end - 1] == '/')
		end--;
	size_t start = end;
	while (start > 0 && a[start - 1] != '/')
		start--;
	const char *name = a + start;
	size_t nlen = end - start;
	int contents = a[len - 1] == '/' || (nlen == 1 && name[0] == '.') ||
	               (nlen == 2 && name[0] == '.' && name[1] == '.') ||
	               (nlen == 1 && name[0] == '/');
	/* A mapping says where it lands; rsync's slash means nothing. */
	const char *dname = src->mapped ? src->mapped : name;
	size_t dlen = src->mapped ? strlen(src->mapped) : nlen;
	if (src->mapped)
		contents = dlen == 0;

	src->fd = open(a, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src->fd >= 0) {
		src->kind = contents ? FERRY__SRC_CONTENTS : FERRY__SRC_DIR;
		src->prefix = ferry__strndup(contents ? "" : dname,
		                             contents ? 0 : dlen);
		if (!src->prefix)
			return FERRY_ENOMEM;
		src->prefix_len = contents ? 0 : dlen;
		return 0;
	}
	int e = errno;
	if (e == ENOTDIR && src->mapped && contents) {
		s->incomplete = 1;
		s->errors++;
		ferry__report_error(
		        s->report, s->log, s->log_ctx, a, len, FERRY_EINVALID,
		        "a file needs a remote name in its mapping");
		return 0;
	}
	if (e != ENOTDIR || contents) {
		scan_error(s, a, len, e, "source");
		return 0;
	}
	/* A file: its parent directory and its name. */
	char *parent = start == 0   ? ferry__strdup(".")
	               : start == 1 ? ferry__strdup("/")
	                            : ferry__strndup(a, start - 1);
	src->name = ferry__strndup(name, nlen);
	src->prefix = ferry__strndup(dname, dlen);
	if (!parent || !src->name || !src->prefix) {
		ferry__free(parent);
		return FERRY_ENOMEM;
	}
	src->kind = FERRY__SRC_FILE;
	src->prefix_len = dlen;
	src->fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src->fd < 0)
		scan_error(s, a, len, errno, "source");
	ferry__free(parent);
	return 0;
}

int ferry__scan_new(ferry__scan **out, const ferry__scan_opts *o, char *err,
                    size_t errsz)
{
	int error = 0;
	ferry__scan *s = NULL;
	*out = NULL;
	if (!o->sources || o->source_count == 0) {
		snprintf(err, errsz, "no source given");
		return FERRY_EINVALID;
	}
	s = ferry__calloc(1, sizeof(*s));
	if (!s)
		return FERRY_ENOMEM;
	s->excludes = o->excludes;
	s->log = o->log;
	s->log_ctx = o->log_ctx;
	s->report = o->report;
	s->all_links = o->all_links;
	s->src = ferry__calloc(o->source_count, sizeof(*s->src));
	s->w = ferry__calloc(1, sizeof(*s->w));
	if (!s->src || !s->w) {
		error = FERRY_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < o->source_count; i++)
		s->src[i].fd = -1;
	s->nsrc = o->source_count;
	for (size_t i = 0; i < o->source_count; i++) {
		s->src[i].arg = o->sources[i] ? o->sources[i] : "";
		s->src[i].mapped = o->mapped ? o->mapped[i] : NULL;
		s->src[i].ex = o->src_excludes ? o->src_excludes[i] : NULL;
		error = open_source(s, &s->src[i], err, errsz);
		if (error)
			goto out;
	}
out:
	if (error) {
		if (error == FERRY_ENOMEM)
			snprintf(err, errsz, "out of memory");
		ferry__scan_free(s);
		return error;
	}
	*out = s;
	return 0;
}

void ferry__scan_free(ferry__scan *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->src && i < s->nsrc; i++) {
		if (s->src[i].fd >= 0)
			close(s->src[i].fd);
		ferry__free(s->src[i].prefix);
		ferry__free(s->src[i].name);
	}
	ferry__free(s->src);
	if (s->w) {
		for (size_t i = 1; i < s->w->lv_cap; i++)
			if (s->w->lv[i].fd >= 0)
				close(s->w->lv[i].fd);
		ferry__free(s->w->nb);
		ferry__free(s->w->ix);
		ferry__free(s->w->lv);
		ferry__free(s->w);
	}
	ferry__free(s);
}

int ferry__scan_excluded(const ferry__scan *s, const char *path, size_t n,
                         int is_dir)
{
	for (size_t i = 0; i < s->nsrc; i++) {
		const ferry__source *r = &s->src[i];
		if (!r->ex || r->kind == FERRY__SRC_FILE)
			continue;
		size_t skip = r->prefix_len ? r->prefix_len + 1 : 0;
		if (r->prefix_len &&
		    !ferry__path_under(path, n, r->prefix, r->prefix_len))
			continue;
		if (ferry__excludes_match_tree(r->ex, path + skip, n - skip,
		                               is_dir))
			return 1;
	}
	return 0;
}

int ferry__scan_source_empty(const ferry__scan *s, unsigned src)
{
	const ferry__source *r = &s->src[src];
	return r->kind != FERRY__SRC_FILE && r->fd >= 0 && r->root_entries == 0;
}

/* ---- symlinks ---- */

enum { LINK_INSIDE, LINK_ABSOLUTE, LINK_ESCAPES, LINK_LOOP, LINK_TOOLONG };

/* Where target, read from a link in directory dir (relative to the source
 * root rootfd), leads: resolved one component at a time against the local
 * tree, following the symlinks met on the way, with ".." never allowed
 * above the root.  Past a missing component the rest is taken lexically. */
static int link_check(ferry__scan_walk *w, int rootfd, const char *dir,
                      size_t dirlen, const char *target, size_t tlen)
{
	char *cur = w->rcur, *rest = w->rrest;
	size_t clen = dirlen, rlen = tlen, rpos = 0;
	int missing = 0, links = 0;

	if (tlen == 0)
		return LINK_ESCAPES;
	if (target[0] == '/')
		return LINK_ABSOLUTE;
	if (dirlen >= RESOLVE_BUF || tlen >= RESOLVE_BUF)
		return LINK_TOOLONG;
	memcpy(cur, dir, dirlen);
	memcpy(rest, target, tlen);
	while (rpos < rlen) {
		size_t e = rpos;
		while (e < rlen && rest[e] != '/')
			e++;
		const char *c = rest + rpos;
		size_t cl = e - rpos;
		rpos = e < rlen ? e + 1 : e;
		if (cl == 0 || (cl == 1 && c[0] == '.'))
			continue;
		if (cl == 2 && c[0] == '.' && c[1] == '.') {
			if (clen == 0)
				return LINK_ESCAPES;
			clen = ferry__path_dirlen(cur, clen);
			continue;
		}
		size_t old = clen;
		if (clen + 1 + cl >= RESOLVE_BUF)
			return LINK_TOOLONG;
		if (clen)
			cur[clen++] = '/';
		memcpy(cur + clen, c, cl);
		clen += cl;
		cur[clen] = '\0';
		if (missing)
			continue;
		struct stat st;
		if (fstatat(rootfd, cur, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			missing = 1;
			continue;
		}
		if (S_ISLNK(st.st_mode)) {
			if (++links > LINK_DEPTH_MAX)
				return LINK_LOOP;
			ssize_t n = readlinkat(rootfd, cur, w->rlink,
			                       sizeof(w->rlink));
			if (n <= 0 || (size_t)n >= sizeof(w->rlink))
				return LINK_TOOLONG;
			if (w->rlink[0] == '/')
				return LINK_ABSOLUTE;
			clen = old;
			size_t remain = rlen - rpos;
			if ((size_t)n + 1 + remain >= RESOLVE_BUF)
				return LINK_TOOLONG;
			memmove(rest + n + 1, rest + rpos, remain);
			memcpy(rest, w->rlink, (size_t)n);
			rest[n] = '/';
			rlen = (size_t)n + 1 + remain;
			rpos = 0;
			continue;
		}
		if (!S_ISDIR(st.st_mode))
			missing = 1;
	}
	return LINK_INSIDE;
}

/* ---- the walk ---- */

static int name_cmp(const void *a, const void *b, void *ctx)
{
	const char *nb = ctx;
	return strcmp(nb + *(const uint32_t *)a, nb + *(const uint32_t *)b);
}

static int push_name(ferry__scan_walk *w, const char *name, size_t n)
{
	if (w->nb_len + n + 1 > w->nb_cap) {
		size_t ncap = w->nb_cap ? w->nb_cap : 16384;
		while (ncap < w->nb_len + n + 1)
			ncap *= 2;
		if (ncap > UINT32_MAX)
			return FERRY_ENOMEM;
		char *nb = ferry__realloc(w->nb, ncap);
		if (!nb)
			return FERRY_ENOMEM;
		w->nb = nb;
		w->nb_cap = ncap;
	}
	if (ferry__grow(&w->ix, &w->ix_cap, w->ix_len + 1, sizeof(*w->ix),
	                1024))
		return FERRY_ENOMEM;
	w->ix[w->ix_len++] = (uint32_t)w->nb_len;
	memcpy(w->nb + w->nb_len, name, n + 1);
	w->nb_len += n + 1;
	return 0;
}

/* Every name of the directory open at fd, pushed on the name stack. */
static int read_names(ferry__scan *s, int fd, size_t plen)
{
	ferry__scan_walk *w = s->w;
	for (;;) {
		ssize_t n = getdents64(fd, w->dents, sizeof(w->dents));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			scan_error(s, w->path, plen, errno,
			           "reading directory");
			return 0;
		}
		if (n == 0)
			return 0;
		for (ssize_t off = 0; off < n;) {
			struct dirent64 *d =
			        (struct dirent64 *)(void *)(w->dents + off);
			off += d->d_reclen;
			const char *nm = d->d_name;
			if (nm[0] == '.' &&
			    (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0')))
				continue;
			int error = push_name(w, nm, strlen(nm));
			if (error)
				return error;
		}
	}
}

static int ensure_levels(ferry__scan_walk *w, size_t n)
{
	size_t old = w->lv_cap;
	if (ferry__grow(&w->lv, &w->lv_cap, n, sizeof(*w->lv), 32))
		return FERRY_ENOMEM;
	for (size_t i = old; i < w->lv_cap; i++)
		w->lv[i].fd = -1;
	return 0;
}

/* Reopen level k from the nearest open ancestor, one component at a time
 * without following symlinks; 0 or -1 (errno set) when the tree changed. */
static int reopen_level(ferry__scan_walk *w, size_t k)
{
	size_t j = k;
	while (j > 0 && w->lv[j].fd < 0)
		j--;
	int fd = w->lv[j].fd;
	size_t pos = w->lv[j].plen;
	char comp[NAME_MAX + 1];
	while (pos < w->lv[k].plen) {
		if (w->path[pos] == '/')
			pos++;
		size_t e = pos;
		while (e < w->lv[k].plen && w->path[e] != '/')
			e++;
		if (e - pos > NAME_MAX) {
			errno = ENAMETOOLONG;
			goto fail;
		}
		memcpy(comp, w->path + pos, e - pos);
		comp[e - pos] = '\0';
		int nfd =
		        openat(fd, comp,
		               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd != w->lv[j].fd)
			close(fd);
		if (nfd < 0)
			return -1;
		fd = nfd;
		pos = e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		goto fail;
	if ((uint64_t)st.st_dev != w->lv[k].dev ||
	    (uint64_t)st.st_ino != w->lv[k].ino) {
		errno = ESTALE;
		goto fail;
	}
	w->lv[k].fd = fd;
	return 0;
fail:
	if (fd != w->lv[j].fd) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return -1;
}

static const char *special_kind(mode_t m)
{
	if (S_ISSOCK(m))
		return "socket";
	if (S_ISFIFO(m))
		return "fifo";
	if (S_ISCHR(m))
		return "character device";
	if (S_ISBLK(m))
		return "block device";
	return "special file";
}

/* Symlink item: read the target and keep it only when it stays inside. */
static int check_link(ferry__scan *s, unsigned si, int dirfd, const char *name,
                      size_t path_len, size_t plen, ferry__scan_item *it)
{
	ferry__scan_walk *w = s->w;
	ferry__source *src = &s->src[si];
	ssize_t n = readlinkat(dirfd, name, w->link, sizeof(w->link));
	if (n < 0) {
		scan_error(s, w->path, path_len, errno, "readlink");
		return -1;
	}
	if ((size_t)n >= sizeof(w->link)) {
		ferry__report_warn(s->log, s->log_ctx, FERRY_LOG_WARN, w->path,
		                   path_len,
		                   "skipping symlink: target too long");
		return -1;
	}
	w->link[n] = '\0';
	it->link = w->link;
	it->link_len = (size_t)n;
	if (memchr(w->link, '\0', (size_t)n)) /* cannot happen; be safe */
		return -1;
	if (s->all_links)
		return 0;
	/* The link's directory relative to the source root. */
	size_t skip = src->prefix_len ? src->prefix_len + 1 : 0;
	const char *dir = plen > skip ? w->path + skip : "";
	size_t dirlen = plen > skip ? plen - skip : 0;
	int r = link_check(w, src->fd, dir, dirlen, w->link, (size_t)n);
	if (r == LINK_INSIDE)
		return 0;
	static const char *why[] = {"", "its target is absolute",
	                            "its target is outside the source",
	                            "it is part of a symlink loop",
	                            "its target is too long"};
	ferry__report_warn(s->log, s->log_ctx, FERRY_LOG_WARN, w->path,
	                   path_len, "skipping symlink: %s", why[r]);
	return -1;
}

static void vanished_or_error(ferry__scan *s, size_t len, const char *what)
{
	if (errno == ENOENT)
		ferry__report_warn(s->log, s->log_ctx, FERRY_LOG_INFO,
		                   s->w->path, len, "vanished during the scan");
	else
		scan_error(s, s->w->path, len, errno, what);
}

/* Stat name (w->path, len bytes) in dirfd: its FERRY__T_* type, or
 * FERRY__T_NONE when it is to be skipped (gone, special, excluded). */
static int stat_name(ferry__scan *s, int dirfd, const char *name, size_t len,
                     struct stat *st)
{
	ferry__scan_walk *w = s->w;
	if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) < 0) {
		vanished_or_error(s, len, "stat");
		return FERRY__T_NONE;
	}
	int type = ferry__stat_type(st->st_mode);
	if (type == FERRY__T_NONE) {
		s->skipped++;
		ferry__report_warn(s->log, s->log_ctx, FERRY_LOG_WARN, w->path,
		                   len, "skipping %s",
		                   special_kind(st->st_mode));
		return FERRY__T_NONE;
	}
	if (ferry__excludes_match(s->excludes, w->path, len,
	                          type == FERRY__T_DIR))
		return FERRY__T_NONE;
	if (s->cur_ex && len > s->cur_skip &&
	    ferry__excludes_match(s->cur_ex, w->path + s->cur_skip,
	                          len - s->cur_skip, type == FERRY__T_DIR))
		return FERRY__T_NONE;
	return type;
}

static int walk_dir(ferry__scan *s, unsigned si, size_t depth,
                    ferry__scan_fn fn, void *ctx);

/* Walk the directory name (w->path, len bytes; st its stat) below level
 * depth.  0, a FERRY_E* that stops the scan, or WALK_STOP: level depth
 * could not be reopened, its walk ends (the scan goes on). */
static int enter_dir(ferry__scan *s, unsigned si, size_t depth,
                     const char *name, size_t len, const struct stat *st,
                     ferry__scan_fn fn, void *ctx)
{
	ferry__scan_walk *w = s->w;
	size_t plen = w->lv[depth].plen;
	int error = ensure_levels(w, depth + 2);
	if (error)
		return error;
	int cfd = openat(w->lv[depth].fd, name,
	                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (cfd < 0) {
		vanished_or_error(s, len, "cannot read directory");
		return 0;
	}
	if ((uint64_t)st->st_dev != w->lv[depth].dev)
		raise_window(s, fs_window(cfd, st));
	level *c = &w->lv[depth + 1];
	c->fd = cfd;
	c->dev = (uint64_t)st->st_dev;
	c->ino = (uint64_t)st->st_ino;
	c->plen = len;
	int closed = 0;
	if (depth >= FD_KEEP) {
		close(w->lv[depth].fd);
		w->lv[depth].fd = -1;
		closed = 1;
	}
	error = walk_dir(s, si, depth + 1, fn, ctx);
	if (closed && reopen_level(w, depth) < 0) {
		scan_error(s, w->path, plen, errno,
		           "directory changed during the scan");
		return error ? error : WALK_STOP;
	}
	return error;
}

/* One name of the directory at level depth: stat, report, descend.  0,
 * WALK_STOP or a FERRY_E* (enter_dir). */
static int walk_name(ferry__scan *s, unsigned si, size_t depth,
                     const char *name, ferry__scan_fn fn, void *ctx)
{
	ferry__scan_walk *w = s->w;
	int dirfd = w->lv[depth].fd;
	size_t plen = w->lv[depth].plen;
	size_t nlen = strlen(name);
	size_t len = plen ? plen + 1 + nlen : nlen;
	if (plen)
		w->path[plen] = '/';
	if (len >= FERRY__PATH_MAX) {
		s->incomplete = 1;
		s->errors++;
		ferry__report_error(
		        s->report, s->log, s->log_ctx, w->path, plen,
		        FERRY_EINVALID,
		        "skipping a name: path longer than %d bytes",
		        FERRY__PATH_MAX - 1);
		return 0;
	}
	memcpy(w->path + (plen ? plen + 1 : 0), name, nlen + 1);

	struct stat st;
	int type = stat_name(s, dirfd, name, len, &st);
	if (type == FERRY__T_NONE)
		return 0;
	if (type != FERRY__T_DIR && (uint64_t)st.st_dev != w->lv[depth].dev)
		raise_window(s, FERRY__RACY_COARSE_NS);

	ferry__scan_item it = {0};
	it.path = w->path;
	it.path_len = len;
	it.name = w->path + len - nlen;
	it.dirfd = dirfd;
	it.src = si;
	ferry__stat_from(&it.st, &st);
	if (type == FERRY__T_LINK &&
	    check_link(s, si, dirfd, name, len, plen, &it) < 0) {
		s->skipped++;
		return 0;
	}
	if (type == FERRY__T_FILE)
		s->files++;
	else if (type == FERRY__T_DIR)
		s->dirs++;
	else
		s->links++;
	int rc = fn(ctx, &it);
	if (rc < 0)
		return rc;
	if (type != FERRY__T_DIR || rc == FERRY__SCAN_PRUNE)
		return 0;
	return enter_dir(s, si, depth, name, len, &st, fn, ctx);
}

static int walk_dir(ferry__scan *s, unsigned si, size_t depth,
                    ferry__scan_fn fn, void *ctx)
{
	ferry__scan_walk *w = s->w;
	size_t plen = w->lv[depth].plen;
	size_t nmark = w->nb_len, imark = w->ix_len;
	int error = read_names(s, w->lv[depth].fd, plen);
	if (error)
		goto out;
	size_t count = w->ix_len - imark;
	if (depth == 0)
		s->src[si].root_entries = count;
	if (count > 1)
		qsort_r(w->ix + imark, count, sizeof(uint32_t), name_cmp,
		        w->nb);
	for (size_t i = 0; i < count && !error; i++)
		error = walk_name(s, si, depth, w->nb + w->ix[imark + i], fn,
		                  ctx);
	if (error == WALK_STOP)
		error = 0;
out:
	w->nb_len = nmark;
	w->ix_len = imark;
	if (depth > 0 && w->lv[depth].fd >= 0) {
		close(w->lv[depth].fd);
		w->lv[depth].fd = -1;
	}
	return error;
}

/* The parents of a mapping's remote path ("a" and "a/b" of "a/b/c"), as
 * directories: mode 0755, the mtime of what is mapped. */
static int mapped_parents(ferry__scan *s, unsigned si, const ferry__stat *root,
                          ferry__scan_fn fn, void *ctx)
{
	const ferry__source *src = &s->src[si];
	for (size_t k = 0; k < src->prefix_len; k++) {
		if (src->prefix[k] != '/')
			continue;
		ferry__scan_item it = {0};
		it.path = src->prefix;
		it.path_len = k;
		size_t dl = ferry__path_dirlen(src->prefix, k);
		it.name = src->prefix + (dl ? dl + 1 : 0);
		it.dirfd = -1;
		it.src = si;
		it.st.type = FERRY__T_DIR;
		it.st.mode = 0755;
		it.st.mtime_ns = root->mtime_ns;
		int rc = fn(ctx, &it);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int scan_source(ferry__scan *s, unsigned si, ferry__scan_fn fn,
                       void *ctx)
{
	ferry__source *src = &s->src[si];
	ferry__scan_walk *w = s->w;
	struct stat st;
	int error = ensure_levels(w, 2);
	if (error)
		return error;
	memcpy(w->path, src->prefix, src->prefix_len + 1);
	w->lv[0].fd = src->fd;
	w->lv[0].plen = src->prefix_len;
	if (fstat(src->fd, &st) < 0) {
		raise_window(s, FERRY__RACY_COARSE_NS);
	} else {
		raise_window(s, fs_window(src->fd, &st));
		w->lv[0].dev = (uint64_t)st.st_dev;
		w->lv[0].ino = (uint64_t)st.st_ino;
	}

	s->cur_ex = src->ex;
	s->cur_skip = src->prefix_len ? src->prefix_len + 1 : 0;
	if (src->kind == FERRY__SRC_CONTENTS)
		return walk_dir(s, si, 0, fn, ctx);

	ferry__scan_item it = {0};
	it.path = w->path;
	it.path_len = src->prefix_len;
	it.name = w->path;
	it.src = si;
	if (src->kind == FERRY__SRC_FILE) {
		if (fstatat(src->fd, src->name, &st, 0) < 0) {
			scan_error(s, src->arg, strlen(src->arg), errno,
			           "source");
			return 0;
		}
		it.dirfd = src->fd;
		it.name = src->name; /* a mapping's remote name may differ */
		it.follow = 1;
		if ((uint64_t)st.st_dev != w->lv[0].dev)
			raise_window(s, FERRY__RACY_COARSE_NS);
	} else {
		if (fstat(src->fd, &st) < 0) {
			scan_error(s, src->arg, strlen(src->arg), errno,
			           "source");
			return 0;
		}
		it.dirfd = -1;
	}
	int type = ferry__stat_type(st.st_mode);
	if (type != FERRY__T_FILE && type != FERRY__T_DIR) {
		s->skipped++;
		ferry__report_warn(s->log, s->log_ctx, FERRY_LOG_WARN, src->arg,
		                   strlen(src->arg), "skipping %s",
		                   special_kind(st.st_mode));
		return 0;
	}
	if (ferry__excludes_match(s->excludes, it.path, it.path_len,
	                          type == FERRY__T_DIR))
		return 0;
	ferry__stat_from(&it.st, &st);
	if ((error = mapped_parents(s, si, &it.st, fn, ctx)))
		return error;
	if (type == FERRY__T_FILE)
		s->files++;
	else
		s->dirs++;
	int rc = fn(ctx, &it);
	if (rc < 0)
		return rc;
	if (type == FERRY__T_DIR && rc != FERRY__SCAN_PRUNE) {
		w->lv[0].dev = (uint64_t)st.st_dev;
		w->lv[0].ino = (uint64_t)st.st_ino;
		return walk_dir(s, si, 0, fn, ctx);
	}
	return 0;
}

int ferry__scan_run(ferry__scan *s, ferry__scan_fn fn, void *ctx)
{
	s->start_ns = ferry__sync_realtime_ns();
	s->racy_ns = FERRY__RACY_FINE_NS;
	for (unsigned i = 0; i < s->nsrc; i++) {
		if (s->src[i].fd < 0)
			continue;
		int error = scan_source(s, i, fn, ctx);
		if (error)
			return error;
	}
	return 0;
}

/* ---- opening files again ---- */

int ferry__scan_open_at(int dirfd, const char *name, int follow, int *fd_out,
                        struct stat *st)
{
	struct stat tmp;
	if (!st)
		st = &tmp;
	int fd = openat(dirfd, name,
	                O_RDONLY | O_NONBLOCK | O_CLOEXEC |
	                        (follow ? 0 : O_NOFOLLOW));
	if (fd < 0)
		return errno == ELOOP ? FERRY_EINVALID : errno_code(errno);
	if (fstat(fd, st) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return FERRY_EIO;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		errno = EINVAL;
		return FERRY_EINVALID;
	}
	*fd_out = fd;
	return 0;
}

/* The part of a destination path below source src's root fd, or NULL. */
static const char *rel_in_source(const ferry__source *src, const char *path,
                                 size_t len, size_t *rlen)
{
	switch (src->kind) {
	case FERRY__SRC_CONTENTS:
		*rlen = len;
		return path;
	case FERRY__SRC_DIR:
		if (!ferry__path_under(path, len, src->prefix, src->prefix_len))
			return NULL;
		*rlen = len - src->prefix_len - 1;
		return path + src->prefix_len + 1;
	default:
		if (len != src->prefix_len || memcmp(path, src->prefix, len))
			return NULL;
		*rlen = strlen(src->name); /* a mapping's may differ */
		return src->name;
	}
}

int ferry__scan_open(const ferry__scan *s, unsigned src, const char *path,
                     size_t path_len, int *fd_out, struct stat *st)
{
	if (src >= s->nsrc || s->src[src].fd < 0)
		return FERRY_EINVALID;
	const ferry__source *r = &s->src[src];
	size_t rlen;
	const char *rel = rel_in_source(r, path, path_len, &rlen);
	if (!rel || rlen == 0 || !ferry__path_valid(rel, rlen))
		return FERRY_EINVALID;
	if (r->kind == FERRY__SRC_FILE)
		return ferry__scan_open_at(r->fd, r->name, 1, fd_out, st);

	int fd = r->fd, error = 0;
	size_t pos = 0;
	char comp[NAME_MAX + 1];
	for (;;) {
		size_t e = pos;
		while (e < rlen && rel[e] != '/')
			e++;
		if (e - pos > NAME_MAX) {
			error = FERRY_ENOTFOUND;
			break;
		}
		memcpy(comp, rel + pos, e - pos);
		comp[e - pos] = '\0';
		if (e == rlen) {
			error = ferry__scan_open_at(fd, comp, 0, fd_out, st);
			break;
		}
		int nfd =
		        openat(fd, comp,
		               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0) {
			error = errno == ELOOP ? FERRY_EINVALID
			                       : errno_code(errno);
			break;
		}
		if (fd != r->fd)
			close(fd);
		fd = nfd;
		pos = e + 1;
	}
	if (fd != r->fd) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return error;
}

char *ferry__scan_local_path(const ferry__scan *s, unsigned src,
                             const char *path, size_t path_len)
{
	if (src >= s->nsrc)
		return NULL;
	const ferry__source *r = &s->src[src];
	size_t rlen = 0;
	const char *rel = rel_in_source(r, path, path_len, &rlen);
	const char *a = r->arg;
	size_t alen = strlen(a);
	if (r->kind == FERRY__SRC_FILE || !rel || rlen == 0)
		return ferry__strdup(a);
	int slash = alen > 0 && a[alen - 1] == '/';
	size_t n = alen + (slash ? 0 : 1) + rlen;
	char *out = ferry__malloc(n + 1);
	if (!out)
		return NULL;
	memcpy(out, a, alen);
	if (!slash)
		out[alen] = '/';
	memcpy(out + alen + (slash ? 0 : 1), rel, rlen);
	out[n] = '\0';
	return out;
}
