#include "sync/ltree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "ferry.h"

/* Directories kept open along the last path; deeper ones are opened for
 * the call only. */
#define LDIR_KEEP 64
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

struct ferry__ldir {
	int root;
	int fd[LDIR_KEEP];     /* fd[k]: the first k + 1 components of path */
	size_t end[LDIR_KEEP]; /* their length in path */
	size_t depth;          /* levels open */
	char path[4096];
	size_t len;
	int deep; /* beyond LDIR_KEEP: the last one asked for */
};

ferry__ldir *ferry__ldir_new(int rootfd)
{
	ferry__ldir *c = ferry__calloc(1, sizeof(*c));
	if (c) {
		c->root = rootfd;
		c->deep = -1;
	}
	return c;
}

static void drop_to(ferry__ldir *c, size_t depth)
{
	while (c->depth > depth)
		close(c->fd[--c->depth]);
	c->len = depth ? c->end[depth - 1] : 0;
}

void ferry__ldir_free(ferry__ldir *c)
{
	if (!c)
		return;
	drop_to(c, 0);
	if (c->deep >= 0)
		close(c->deep);
	ferry__free(c);
}

int ferry__ldir_get(ferry__ldir *c, const char *dir, size_t n)
{
	if (c->deep >= 0) {
		close(c->deep);
		c->deep = -1;
	}
	if (n >= sizeof(c->path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* Keep the open levels that are a prefix of dir. */
	size_t keep = 0;
	while (keep < c->depth) {
		size_t e = c->end[keep];
		if (e > n || memcmp(c->path, dir, e) != 0 ||
		    (e < n && dir[e] != '/'))
			break;
		keep++;
	}
	drop_to(c, keep);
	int fd = keep ? c->fd[keep - 1] : c->root;
	size_t pos = keep ? c->end[keep - 1] + 1 : 0;
	memcpy(c->path, dir, n);
	char comp[NAME_MAX + 1];
	while (pos < n) {
		size_t e = pos;
		while (e < n && dir[e] != '/')
			e++;
		if (e == pos || e - pos > NAME_MAX) {
			errno = e == pos ? EINVAL : ENAMETOOLONG;
			goto fail;
		}
		memcpy(comp, dir + pos, e - pos);
		comp[e - pos] = '\0';
		int nfd = openat(fd, comp, DIR_FLAGS);
		if (nfd < 0)
			goto fail;
		if (c->depth < LDIR_KEEP &&
		    fd == (c->depth ? c->fd[c->depth - 1] : c->root)) {
			c->fd[c->depth] = nfd;
			c->end[c->depth++] = e;
			c->len = e;
		} else {
			if (c->deep >= 0)
				close(c->deep);
			c->deep = nfd;
		}
		fd = nfd;
		pos = e + 1;
	}
	return fd;
fail:;
	int err = errno;
	if (c->deep >= 0) {
		close(c->deep);
		c->deep = -1;
	}
	errno = err;
	return -1;
}

int ferry__lmkdir(int dirfd, const char *name, unsigned mode)
{
	struct stat st;
	if (mkdirat(dirfd, name, (mode & 0777) | 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -1;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	errno = EEXIST;
	return S_ISDIR(st.st_mode) ? 0 : -1;
}

int ferry__lremove(int dfd, const char *name)
{
	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	int fd = openat(dfd, name, DIR_FLAGS);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *nm = de->d_name;
		if (nm[0] == '.' &&
		    (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0')))
			continue;
		if (ferry__lremove(dirfd(d), nm) < 0) {
			rc = -1;
			break;
		}
	}
	int err = errno;
	closedir(d);
	if (rc)
		errno = err;
	else if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -1;
	return rc;
}

int ferry__errno_code(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return FERRY_ENOTFOUND;
	case EACCES:
	case EPERM:
	case EROFS:
		return FERRY_EPERM;
	case ENOMEM:
		return FERRY_ENOMEM;
	case EEXIST:
	case ENOTEMPTY:
	case EISDIR:
		return FERRY_EEXIST;
	case ENOSPC:
	case EDQUOT:
		return FERRY_ENOSPACE;
	default:
		return FERRY_EIO;
	}
}
