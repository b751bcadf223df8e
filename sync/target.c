#include "sync/target.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "ferry.h"
#include "hash.h"
#include "session.h"

char *ferry__sync_dest_normalize(const char *dest)
{
	size_t n = dest ? strlen(dest) : 0;
	char *out = ferry__malloc(n + 2);
	if (!out)
		return NULL;
	size_t i = 0, len = 0;
	if (n >= 1 && dest[0] == '~' && (n == 1 || dest[1] == '/'))
		i = 1; /* the login directory: same as relative */
	else if (n >= 1 && dest[0] == '/')
		out[len++] = '/';
	while (i < n) {
		while (i < n && dest[i] == '/')
			i++;
		size_t s = i;
		while (i < n && dest[i] != '/')
			i++;
		size_t cl = i - s;
		if (cl == 0 || (cl == 1 && dest[s] == '.'))
			continue;
		if (len > 0 && out[len - 1] != '/')
			out[len++] = '/';
		memcpy(out + len, dest + s, cl);
		len += cl;
	}
	if (len == 0)
		out[len++] = '.';
	out[len] = '\0';
	return out;
}

int ferry__sync_state_dir(char **out, const char *state_dir)
{
	*out = NULL;
	if (state_dir && *state_dir) {
		*out = ferry__strdup(state_dir);
		return *out ? 0 : FERRY_ENOMEM;
	}
	const char *xdg = getenv("XDG_STATE_HOME");
	if (xdg && xdg[0] == '/') {
		*out = ferry__asprintf("%s/ferry", xdg);
		return *out ? 0 : FERRY_ENOMEM;
	}
	const char *home = ferry__home_dir();
	if (!home)
		return FERRY_ENOTFOUND;
	*out = ferry__asprintf("%s/.local/state/ferry", home);
	return *out ? 0 : FERRY_ENOMEM;
}

int ferry__sync_paths_new(ferry__sync_paths *out, const char *user,
                          const char *host, int port, const char *dest,
                          const char *state_dir)
{
	int error = 0;
	char *key = NULL;
	memset(out, 0, sizeof(*out));
	if (!host || !*host || !dest)
		return FERRY_EINVALID;
	out->target = ferry__target_string(user, host, port);
	out->dest = ferry__sync_dest_normalize(dest);
	if (!out->target || !out->dest) {
		error = FERRY_ENOMEM;
		goto out;
	}
	error = ferry__sync_state_dir(&out->state_dir, state_dir);
	if (error)
		goto out;
	/* The key: target, a NUL, destination. */
	size_t tl = strlen(out->target), dl = strlen(out->dest);
	key = ferry__malloc(tl + 1 + dl);
	if (!key) {
		error = FERRY_ENOMEM;
		goto out;
	}
	memcpy(key, out->target, tl);
	key[tl] = '\0';
	memcpy(key + tl + 1, out->dest, dl);
	ferry__hash h;
	ferry__hash_buf(&h, key, tl + 1 + dl);
	char hex[FERRY__HASH_HEX_LEN + 1];
	ferry__hash_hex(hex, &h);
	out->manifest = ferry__asprintf("%s/%s.manifest", out->state_dir, hex);
	out->lock = ferry__asprintf("%s/%s.lock", out->state_dir, hex);
	out->journal = ferry__asprintf("%s/%s.journal", out->state_dir, hex);
	if (!out->manifest || !out->lock || !out->journal)
		error = FERRY_ENOMEM;
out:
	ferry__free(key);
	if (error)
		ferry__sync_paths_free(out);
	return error;
}

void ferry__sync_paths_free(ferry__sync_paths *p)
{
	ferry__free(p->target);
	ferry__free(p->dest);
	ferry__free(p->state_dir);
	ferry__free(p->manifest);
	ferry__free(p->lock);
	ferry__free(p->journal);
	memset(p, 0, sizeof(*p));
}

/* 1 when path (stat st) is fit to trust; else 0 with err set. */
static int trusted(const char *path, const struct stat *st, int dir, char *err,
                   size_t errsz)
{
	const char *why = NULL;
	if (dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
		why = dir ? "is not a directory" : "is not a regular file";
	else if (st->st_uid != geteuid())
		why = "belongs to another user";
	else if (st->st_mode & 022)
		why = "is writable by group or others";
	if (!why)
		return 1;
	snprintf(err, errsz,
	         "state %s %s %s (uid %u, mode %04o): refusing to use it; "
	         "make it yours and not writable by others (chmod go-w), or "
	         "give another state directory",
	         dir ? "directory" : "file", path, why, (unsigned)st->st_uid,
	         (unsigned)(st->st_mode & 07777));
	return 0;
}

int ferry__sync_paths_trusted(const ferry__sync_paths *p, char *err,
                              size_t errsz)
{
	struct stat st;
	if (stat(p->state_dir, &st) < 0) {
		if (errno == ENOENT)
			return 0; /* made by the first push, 0700 */
		snprintf(err, errsz, "state directory %s: %s", p->state_dir,
		         strerror(errno));
		return FERRY_EIO;
	}
	if (!trusted(p->state_dir, &st, 1, err, errsz))
		return FERRY_EPERM;
	const char *files[] = {p->manifest, p->lock, p->journal};
	int error = 0;
	for (size_t i = 0; !error && i < sizeof(files) / sizeof(files[0]);
	     i++) {
		if (lstat(files[i], &st) < 0) {
			if (errno == ENOENT)
				continue;
			snprintf(err, errsz, "state file %s: %s", files[i],
			         strerror(errno));
			error = FERRY_EIO;
		} else if (!trusted(files[i], &st, 0, err, errsz)) {
			error = FERRY_EPERM;
		}
	}
	return error;
}
