#include "sync/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "os.h"
#include "buf.h"
#include "ferry.h"
#include "hash.h"
#include "sync/manifest.h"
#include "sync/util.h"

#define MAGIC                                                                  \
	"\x7f"                                                                 \
	"ferryjn"
#define MAGIC_LEN     8
#define VERSION       1
#define MAX_JOURNAL   ((size_t)256 << 20)
#define MAX_NAME_SIZE 65536u

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

int ferry__journal_parse(ferry__journal *j, const uint8_t *d, size_t len)
{
	ferry_buf b;
	uint32_t version, count;
	uint64_t sum;
	if (len < MAGIC_LEN + 16 || memcmp(d, MAGIC, MAGIC_LEN) != 0)
		return FERRY_EPROTO;
	ferry__buf_view(&b, d + len - 8, 8);
	if (ferry__buf_get_u64(&b, &sum))
		return FERRY_EPROTO;
#ifndef FERRY_FUZZ
	if (sum != ferry__hash64(d, len - 8))
		return FERRY_EPROTO;
#endif
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
			j->found = j->damaged = j->pending = 1;
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
	ssize_t r = ferry__read_full(fd, data, len);
	got = r < 0 ? 0 : (size_t)r;
	error = got == len ? ferry__journal_parse(j, data, len) : FERRY_EPROTO;
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
		return error;
	}
	j->pending = j->damaged || j->n > 0;
	return 0;
}

static int io_code(int e)
{
	if (e == EACCES || e == EPERM || e == EROFS)
		return FERRY_EPERM;
	if (e == ENOSPC || e == EDQUOT)
		return FERRY_ENOSPACE;
	return FERRY_EIO;
}

static int encode(const ferry__journal *j, ferry_buf *b)
{
	if (ferry__buf_put(b, MAGIC, MAGIC_LEN) ||
	    ferry__buf_put_u32(b, VERSION) ||
	    ferry__buf_put_u32(b, (uint32_t)j->n))
		return FERRY_ENOMEM;
	for (size_t i = 0; i < j->n; i++)
		if (ferry__buf_put_cstring(b, j->names[i]))
			return FERRY_ENOMEM;
	if (ferry__buf_put_u64(b, ferry__hash64(b->data, b->len)))
		return FERRY_ENOMEM;
	return 0;
}

/* Write the journal in place; sync: flush it (and the directory when the
 * file is new). */
static int write_journal(ferry__journal *j, int sync, char *err, size_t errsz)
{
	int error = 0, fd = -1, created = 0;
	ferry_buf b = FERRY_BUF_INIT;
	char *dir = ferry__dirname(j->path);
	if (!dir || encode(j, &b)) {
		error = FERRY_ENOMEM;
		snprintf(err, errsz, "out of memory");
		goto out;
	}
	fd = open(j->path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		if (ferry__mkdir_p(dir) < 0) {
			error = io_code(errno);
			snprintf(err, errsz, "state directory %s: %s", dir,
			         strerror(errno));
			goto out;
		}
		fd = open(j->path,
		          O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		          0600);
		created = fd >= 0;
	}
	if (fd < 0 || pwrite(fd, b.data, b.len, 0) != (ssize_t)b.len ||
	    ftruncate(fd, (off_t)b.len) < 0 || (sync && fdatasync(fd) < 0)) {
		error = io_code(errno);
		snprintf(err, errsz, "writing journal %s: %s", j->path,
		         strerror(errno));
		goto out;
	}
	j->found = 1;
	if (created && sync) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) < 0) {
			error = io_code(errno);
			snprintf(err, errsz, "syncing state directory %s: %s",
			         dir, strerror(errno));
		}
		if (dfd >= 0)
			close(dfd);
	}
out:
	if (fd >= 0)
		close(fd);
	ferry__free(dir);
	ferry__buf_free(&b);
	return error;
}

int ferry__journal_save(ferry__journal *j, char *err, size_t errsz)
{
	int error = write_journal(j, 1, err, errsz);
	if (!error)
		j->pending = j->n > 0;
	return error;
}

int ferry__journal_clear(ferry__journal *j, char *err, size_t errsz)
{
	drop_names(j);
	j->damaged = j->pending = 0;
	if (!j->found)
		return 0;
	return write_journal(j, 0, err, errsz);
}
