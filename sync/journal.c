#include "sync/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "ferry.h"
#include "hash.h"
#include "sync/manifest.h"

#define MAGIC                                                                  \
	"\x7f"                                                                 \
	"ferryjn"
#define MAGIC_LEN     8
#define VERSION       1
#define MAX_JOURNAL   ((size_t)256 << 20)
#define MAX_NAME_SIZE 65536u

char *ferry__journal_path(const char *manifest_path)
{
	size_t n = strlen(manifest_path);
	const char *suf = ".manifest";
	size_t sl = strlen(suf);
	if (n > sl && memcmp(manifest_path + n - sl, suf, sl) == 0)
		n -= sl;
	char *p = ferry__malloc(n + sizeof(".journal"));
	if (!p)
		return NULL;
	memcpy(p, manifest_path, n);
	memcpy(p + n, ".journal", sizeof(".journal"));
	return p;
}

void ferry__journal_free(ferry__journal *j)
{
	for (size_t i = 0; i < j->n; i++)
		ferry__free(j->names[i]);
	ferry__free(j->names);
	ferry__free(j->path);
	memset(j, 0, sizeof(*j));
}

int ferry__journal_add(ferry__journal *j, const char *name)
{
	if (j->n == j->cap) {
		size_t ncap = j->cap ? j->cap * 2 : 64;
		char **nn = ferry__reallocarray(j->names, ncap, sizeof(*nn));
		if (!nn)
			return FERRY_ENOMEM;
		j->names = nn;
		j->cap = ncap;
	}
	char *c = ferry__strdup(name);
	if (!c)
		return FERRY_ENOMEM;
	j->names[j->n++] = c;
	return 0;
}

static void drop_names(ferry__journal *j)
{
	for (size_t i = 0; i < j->n; i++)
		ferry__free(j->names[i]);
	j->n = 0;
}

/* Parse a whole journal file; 0, FERRY_EPROTO (damaged) or ENOMEM. */
static int parse(ferry__journal *j, const uint8_t *d, size_t len)
{
	ferry_buf b;
	uint32_t version, count;
	uint64_t sum;
	if (len < MAGIC_LEN + 16 || memcmp(d, MAGIC, MAGIC_LEN) != 0)
		return FERRY_EPROTO;
	ferry__buf_view(&b, d + len - 8, 8);
	if (ferry__buf_get_u64(&b, &sum) || sum != ferry__hash64(d, len - 8))
		return FERRY_EPROTO;
	ferry__buf_view(&b, d + MAGIC_LEN, len - 8 - MAGIC_LEN);
	if (ferry__buf_get_u32(&b, &version) || version != VERSION ||
	    ferry__buf_get_u32(&b, &count))
		return FERRY_EPROTO;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *p;
		size_t n;
		if (ferry__buf_get_string_ptr(&b, &p, &n) || n == 0 ||
		    n > MAX_NAME_SIZE || memchr(p, 0, n))
			return FERRY_EPROTO;
		char *c = ferry__strndup((const char *)p, n);
		if (!c)
			return FERRY_ENOMEM;
		int error = ferry__journal_add(j, c);
		ferry__free(c);
		if (error)
			return error;
	}
	return ferry__buf_avail(&b) ? FERRY_EPROTO : 0;
}

int ferry__journal_load(ferry__journal *j, const char *path)
{
	int error = 0, fd = -1;
	uint8_t *data = NULL;
	memset(j, 0, sizeof(*j));
	j->path = ferry__strdup(path);
	if (!j->path)
		return FERRY_ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno != ENOENT)
			j->found = j->damaged = 1;
		return 0;
	}
	j->found = 1;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > MAX_JOURNAL) {
		j->damaged = 1;
		goto out;
	}
	size_t len = (size_t)st.st_size, got = 0;
	data = ferry__malloc(len ? len : 1);
	if (!data) {
		error = FERRY_ENOMEM;
		goto out;
	}
	while (got < len) {
		ssize_t r = read(fd, data + got, len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	error = got == len ? parse(j, data, len) : FERRY_EPROTO;
	if (error == FERRY_EPROTO) {
		drop_names(j);
		j->damaged = 1;
		error = 0;
	}
out:
	if (fd >= 0)
		close(fd);
	ferry__free(data);
	if (error) {
		ferry__journal_free(j);
	}
	return error;
}

static int io_code(int e)
{
	if (e == EACCES || e == EPERM || e == EROFS)
		return FERRY_EPERM;
	if (e == ENOSPC || e == EDQUOT)
		return FERRY_ENOSPACE;
	return FERRY_EIO;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int ferry__journal_save(ferry__journal *j, char *err, size_t errsz)
{
	int error = 0, fd = -1;
	ferry_buf b = FERRY_BUF_INIT;
	char *tmp = ferry__asprintf("%s.tmp.XXXXXX", j->path);
	char *dir = NULL;
	if (!tmp)
		goto nomem;
	const char *slash = strrchr(j->path, '/');
	dir = slash ? ferry__strndup(j->path,
	                             slash > j->path ? (size_t)(slash - j->path)
	                                             : 1)
	            : ferry__strdup(".");
	if (!dir)
		goto nomem;
	if (ferry__buf_put(&b, MAGIC, MAGIC_LEN) ||
	    ferry__buf_put_u32(&b, VERSION) ||
	    ferry__buf_put_u32(&b, (uint32_t)j->n))
		goto nomem;
	for (size_t i = 0; i < j->n; i++)
		if (ferry__buf_put_cstring(&b, j->names[i]))
			goto nomem;
	if (ferry__buf_put_u64(&b, ferry__hash64(b.data, b.len)))
		goto nomem;
	if (ferry__mkdir_p(dir) < 0) {
		error = io_code(errno);
		snprintf(err, errsz, "state directory %s: %s", dir,
		         strerror(errno));
		goto out;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		error = io_code(errno);
		snprintf(err, errsz, "journal %s: %s", tmp, strerror(errno));
		ferry__free(tmp);
		tmp = NULL;
		goto out;
	}
	if (fchmod(fd, 0600) < 0 || write_all(fd, b.data, b.len) < 0 ||
	    fsync(fd) < 0) {
		error = io_code(errno);
		snprintf(err, errsz, "writing journal %s: %s", tmp,
		         strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		error = io_code(errno);
		snprintf(err, errsz, "writing journal %s: %s", tmp,
		         strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, j->path) < 0) {
		error = io_code(errno);
		snprintf(err, errsz, "renaming journal to %s: %s", j->path,
		         strerror(errno));
		goto out;
	}
	ferry__free(tmp);
	tmp = NULL;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0) {
		error = io_code(errno);
		snprintf(err, errsz, "syncing state directory %s: %s", dir,
		         strerror(errno));
	}
	if (dfd >= 0)
		close(dfd);
	goto out;
nomem:
	error = FERRY_ENOMEM;
	snprintf(err, errsz, "out of memory");
out:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		ferry__free(tmp);
	}
	ferry__free(dir);
	ferry__buf_free(&b);
	return error;
}

int ferry__journal_clear(ferry__journal *j, char *err, size_t errsz)
{
	if (unlink(j->path) < 0 && errno != ENOENT) {
		snprintf(err, errsz, "removing journal %s: %s", j->path,
		         strerror(errno));
		return io_code(errno);
	}
	drop_names(j);
	j->found = j->damaged = 0;
	return 0;
}
