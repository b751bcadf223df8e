#include "sync/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "os.h"
#include "sync/path.h"
#include "sync/report.h"
#include "sync/scan.h"
#include "sync/util.h"

#define MAGIC                                                                  \
	"\x7f"                                                                 \
	"ferrymf"
#define MAGIC_LEN   8
#define HDR_STR_MAX (64u << 10)
/* After the path: type, flags, mode, five u64, hash, chunk count. */
#define ENTRY_FIXED (1 + 1 + 2 + 5 * 8 + FERRY__HASH_LEN + 4)
#define ENTRY_MIN   (4 + 1 + ENTRY_FIXED)
/* A chunk record: u32 length, hash. */
#define CHUNK_REC (4 + FERRY__HASH_LEN)
/* Chunk records encoded per buffer reservation. */
#define CHUNK_BATCH 4096u
#define TRAILER     8
#define IO_BUF      ((size_t)256 << 10)
/* Misses of the in-order hint answered by binary search before a hash
 * index is built. */
#define FIND_MISSES_BEFORE_INDEX 1024
#define NO_INDEX                 UINT32_MAX

static void put64(uint8_t *p, uint64_t v)
{
	ferry__poke_u32(p, (uint32_t)(v >> 32));
	ferry__poke_u32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)ferry__peek_u32(p) << 32 | ferry__peek_u32(p + 4);
}

/* ---- in memory ---- */

int ferry__manifest_new(ferry__manifest **out, const char *target,
                        const char *dest)
{
	ferry__manifest *m = ferry__calloc(1, sizeof(*m));
	if (!m)
		return FERRY_ENOMEM;
	m->target = ferry__strdup(target ? target : "");
	m->dest = ferry__strdup(dest ? dest : "");
	if (!m->target || !m->dest) {
		ferry__manifest_free(m);
		return FERRY_ENOMEM;
	}
	*out = m;
	return 0;
}

void ferry__manifest_free(ferry__manifest *m)
{
	if (!m)
		return;
	ferry__free(m->target);
	ferry__free(m->dest);
	ferry__free(m->e);
	ferry__free(m->blob);
	ferry__free(m->index);
	ferry__arena_free(&m->arena);
	ferry__free(m);
}

static void drop_index(ferry__manifest *m)
{
	ferry__free(m->index);
	m->index = NULL;
	m->index_mask = 0;
	m->cursor = 0;
}

void ferry__manifest_adopt(ferry__manifest *m, ferry__mentry *e, size_t n,
                           size_t cap)
{
	ferry__free(m->e);
	m->e = e;
	m->n = n;
	m->cap = cap;
	drop_index(m);
}

int ferry__manifest_own_chunks(ferry__manifest *m, ferry__mentry *e)
{
	/* A list beyond the maximum is none (such a file is not chunked). */
	if (!e->chunks || e->nchunks == 0 || e->nchunks > FERRY__CHUNKS_MAX) {
		e->chunks = NULL;
		e->nchunks = 0;
		return 0;
	}
	size_t n = (size_t)e->nchunks * sizeof(ferry__chunk);
	ferry__chunk *v = ferry__arena_alloc(&m->arena, n, 8);
	if (!v)
		return FERRY_ENOMEM;
	memcpy(v, e->chunks, n);
	e->chunks = v;
	return 0;
}

int ferry__manifest_chunks_valid(const ferry__mentry *e)
{
	if (!e->chunks || e->nchunks == 0)
		return e->nchunks == 0;
	if (e->type != FERRY__T_FILE || !(e->flags & FERRY__ME_HASHED) ||
	    e->nchunks > FERRY__CHUNKS_MAX)
		return 0;
	uint64_t sum = 0;
	for (uint32_t i = 0; i < e->nchunks; i++) {
		uint32_t len = e->chunks[i].len;
		if (len == 0 || len > FERRY__CHUNK_MAX)
			return 0;
		sum += len;
	}
	return sum == e->size;
}

int ferry__manifest_append(ferry__manifest *m, const ferry__mentry *e)
{
	if (m->n == m->cap && m->cap * 2 >= NO_INDEX)
		return FERRY_ENOMEM;
	if (ferry__grow(&m->e, &m->cap, m->n + 1, sizeof(*m->e), 64))
		return FERRY_ENOMEM;
	ferry__mentry x = *e;
	x.path = ferry__arena_strndup(&m->arena, e->path, e->path_len);
	if (!x.path || ferry__manifest_own_chunks(m, &x))
		return FERRY_ENOMEM;
	m->e[m->n] = x;
	m->n++;
	drop_index(m);
	return 0;
}

static int build_index(ferry__manifest *m)
{
	size_t size = 16;
	while (size < 2 * m->n)
		size *= 2;
	uint32_t *ix = ferry__reallocarray(NULL, size, sizeof(*ix));
	if (!ix)
		return FERRY_ENOMEM;
	memset(ix, 0xff, size * sizeof(*ix));
	size_t mask = size - 1;
	for (size_t i = 0; i < m->n; i++) {
		size_t h =
		        (size_t)ferry__hash64(m->e[i].path, m->e[i].path_len);
		while (ix[h & mask] != NO_INDEX)
			h++;
		ix[h & mask] = (uint32_t)i;
	}
	m->index = ix;
	m->index_mask = mask;
	return 0;
}

static ssize_t find_slow(ferry__manifest *m, const char *path, size_t n)
{
	if (m->index) {
		size_t h = (size_t)ferry__hash64(path, n);
		for (;; h++) {
			uint32_t i = m->index[h & m->index_mask];
			if (i == NO_INDEX)
				return -1;
			if (m->e[i].path_len == n &&
			    memcmp(m->e[i].path, path, n) == 0)
				return i;
		}
	}
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = ferry__path_cmp(m->e[mid].path, m->e[mid].path_len,
		                        path, n);
		if (c == 0)
			return (ssize_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

ferry__mentry *ferry__manifest_find(ferry__manifest *m, const char *path,
                                    size_t n)
{
	if (m->cursor < m->n) {
		ferry__mentry *e = &m->e[m->cursor];
		if (e->path_len == n && memcmp(e->path, path, n) == 0) {
			m->cursor++;
			return e;
		}
	}
	if (m->n == 0)
		return NULL;
	/* index_mask doubles as the miss counter while there is no index. */
	if (!m->index && ++m->index_mask > FIND_MISSES_BEFORE_INDEX) {
		m->index_mask = 0;
		build_index(m); /* on failure, binary search goes on */
	}
	ssize_t i = find_slow(m, path, n);
	if (i < 0)
		return NULL;
	m->cursor = (size_t)i + 1;
	return &m->e[i];
}

/* ---- validation ---- */

typedef struct treechk {
	uint32_t stack[FERRY__PATH_MAX / 2 + 2]; /* directories on the path */
	size_t depth;
} treechk;

static const char *tree_step(treechk *t, const ferry__mentry *all, size_t i)
{
	const ferry__mentry *e = &all[i];
	if (!ferry__path_valid(e->path, e->path_len))
		return "invalid path";
	if (i > 0 && ferry__path_cmp(all[i - 1].path, all[i - 1].path_len,
	                             e->path, e->path_len) >= 0)
		return "entries out of order or repeated";
	while (t->depth > 0) {
		const ferry__mentry *d = &all[t->stack[t->depth - 1]];
		if (ferry__path_under(e->path, e->path_len, d->path,
		                      d->path_len))
			break;
		t->depth--;
	}
	size_t dirlen = ferry__path_dirlen(e->path, e->path_len);
	if (dirlen > 0 &&
	    (t->depth == 0 || all[t->stack[t->depth - 1]].path_len != dirlen))
		return "entry without its parent directory";
	if (e->type < FERRY__T_FILE || e->type > FERRY__T_LINK)
		return "bad entry type";
	if (e->mode > 07777)
		return "bad mode";
	if (e->flags & ~(FERRY__ME_DISK_FLAGS | FERRY__ME_MEMORY_FLAGS))
		return "bad entry flags";
	if (e->type == FERRY__T_DIR) {
		if (t->depth >= sizeof(t->stack) / sizeof(t->stack[0]))
			return "too deep";
		t->stack[t->depth++] = (uint32_t)i;
	}
	return NULL;
}

int ferry__manifest_check(const ferry__manifest *m, char *why, size_t whysz)
{
	treechk *t = ferry__malloc(sizeof(*t));
	if (!t)
		return FERRY_ENOMEM;
	t->depth = 0;
	int error = 0;
	for (size_t i = 0; i < m->n; i++) {
		const char *w = tree_step(t, m->e, i);
		if (w) {
			snprintf(why, whysz, "entry %zu: %s", i, w);
			error = FERRY_EPROTO;
			break;
		}
	}
	ferry__free(t);
	return error;
}

/* ---- reading ---- */

/* A window over the file body (everything before the trailer): all of it
 * for a manifest in memory, or a buffer refilled from fd, hashing what it
 * reads. */
typedef struct rd {
	const uint8_t *p;
	size_t avail;
	int fd;
	uint8_t *buf;
	size_t cap;
	uint64_t left; /* body bytes not read from fd yet */
	XXH3_state_t *h;
} rd;

static int rd_need(rd *r, size_t n)
{
	if (r->avail >= n)
		return 0;
	if (r->fd < 0 || n > r->cap)
		return FERRY_EPROTO;
	if (r->avail)
		memmove(r->buf, r->p, r->avail);
	r->p = r->buf;
	while (r->avail < n && r->left > 0) {
		size_t want = r->cap - r->avail;
		if (want > r->left)
			want = (size_t)r->left;
		ssize_t k = read(r->fd, r->buf + r->avail, want);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return FERRY_EIO;
		if (k == 0)
			return FERRY_EPROTO;
		XXH3_64bits_update(r->h, r->buf + r->avail, (size_t)k);
		r->avail += (size_t)k;
		r->left -= (uint64_t)k;
	}
	return r->avail >= n ? 0 : FERRY_EPROTO;
}

static void rd_skip(rd *r, size_t n)
{
	r->p += n;
	r->avail -= n;
}

#define WHY(...)                                                               \
	do {                                                                   \
		snprintf(why, whysz, __VA_ARGS__);                             \
		error = FERRY_EPROTO;                                          \
		goto out;                                                      \
	} while (0)

/* A header string compared with (or, when want is NULL, copied to) *copy. */
static int rd_string(rd *r, const char *want, char **copy)
{
	if (rd_need(r, 4))
		return FERRY_EPROTO;
	uint32_t len = ferry__peek_u32(r->p);
	if (len > HDR_STR_MAX)
		return FERRY_EPROTO;
	rd_skip(r, 4);
	if (rd_need(r, len) || memchr(r->p, 0, len))
		return FERRY_EPROTO;
	if (want && (strlen(want) != len || memcmp(want, r->p, len)))
		return FERRY_EEXIST; /* another target */
	*copy = ferry__strndup((const char *)r->p, len);
	rd_skip(r, len);
	return *copy ? 0 : FERRY_ENOMEM;
}

/* The header: magic, version, flags, target, destination, marker, times
 * and counts.  *mp gets the new manifest (also on error: caller frees). */
static int parse_header(rd *r, uint64_t body_len, ferry__manifest **mp,
                        const char *target, const char *dest, uint64_t *count,
                        uint64_t *path_bytes, uint32_t *versionp, char *why,
                        size_t whysz)
{
	int error = 0;
	if (rd_need(r, MAGIC_LEN + 8) || memcmp(r->p, MAGIC, MAGIC_LEN))
		WHY("not a ferry manifest");
	uint32_t version = ferry__peek_u32(r->p + MAGIC_LEN);
	uint32_t hflags = ferry__peek_u32(r->p + MAGIC_LEN + 4);
	rd_skip(r, MAGIC_LEN + 8);
	if (version < FERRY__MANIFEST_VERSION_MIN ||
	    version > FERRY__MANIFEST_VERSION)
		WHY("format version %u (this ferry reads %u to %u)", version,
		    FERRY__MANIFEST_VERSION_MIN, FERRY__MANIFEST_VERSION);
	*versionp = version;
	if (hflags & ~1u)
		WHY("unknown header flags");
	ferry__manifest *m = *mp = ferry__calloc(1, sizeof(*m));
	if (!m)
		return FERRY_ENOMEM;
	error = rd_string(r, target, &m->target);
	if (error == FERRY_EEXIST)
		WHY("written for another target");
	if (!error)
		error = rd_string(r, dest, &m->dest);
	if (error == FERRY_EEXIST)
		WHY("written for another destination");
	if (error == FERRY_EPROTO)
		WHY("truncated or damaged header");
	if (error)
		goto out;
	if (rd_need(r, 16 + 8 * 4))
		WHY("truncated header");
	memcpy(m->marker, r->p, 16);
	m->has_marker = hflags & 1u;
	m->written_ns = (int64_t)get64(r->p + 16);
	m->stat_ns = (int64_t)get64(r->p + 24);
	*count = get64(r->p + 32);
	*path_bytes = get64(r->p + 40);
	rd_skip(r, 16 + 8 * 4);
	if (*count > body_len / ENTRY_MIN || *path_bytes > body_len ||
	    *path_bytes < *count || *count >= NO_INDEX)
		WHY("bad entry count");
out:
	return error;
}

/* The fixed part of an entry (f: ENTRY_FIXED bytes) into e, its chunk
 * count into *chunks; 0 or why. */
static const char *read_entry(ferry__mentry *e, const uint8_t *f,
                              uint32_t *chunks)
{
	e->type = f[0];
	e->flags = f[1];
	e->mode = (uint16_t)(f[2] << 8 | f[3]);
	e->size = get64(f + 4);
	e->mtime_ns = (int64_t)get64(f + 12);
	e->ctime_ns = (int64_t)get64(f + 20);
	e->ino = get64(f + 28);
	e->dev = get64(f + 36);
	memcpy(e->hash.b, f + 44, FERRY__HASH_LEN);
	e->chunks = NULL;
	e->nchunks = 0;
	*chunks = ferry__peek_u32(f + 44 + FERRY__HASH_LEN);
	if (e->flags & FERRY__ME_MEMORY_FLAGS)
		return "bad entry flags";
	return NULL;
}

/* The chunk list of e (count records, read one at a time: the reader's
 * window is bounded) into m->arena.  0, FERRY_EPROTO with *bad, or
 * FERRY_ENOMEM. */
static int read_chunks(rd *r, ferry__manifest *m, ferry__mentry *e,
                       uint32_t count, uint32_t version, const char **bad)
{
	*bad = "bad chunk list";
	if (version < 2) {
		*bad = "bad chunk list (none in version 1)";
		return FERRY_EPROTO;
	}
	if (e->type != FERRY__T_FILE || !(e->flags & FERRY__ME_HASHED)) {
		*bad = "bad chunk list (not on a hashed file)";
		return FERRY_EPROTO;
	}
	/* Every record must be in the file: no allocation beyond what its
	 * bytes can fill. */
	if (count > FERRY__CHUNKS_MAX ||
	    count > ((uint64_t)r->avail + r->left) / CHUNK_REC) {
		*bad = "bad chunk list (count)";
		return FERRY_EPROTO;
	}
	ferry__chunk *v =
	        ferry__arena_alloc(&m->arena, (size_t)count * sizeof(*v), 8);
	if (!v)
		return FERRY_ENOMEM;
	uint64_t off = 0;
	for (uint32_t k = 0; k < count; k++) {
		if (rd_need(r, CHUNK_REC)) {
			*bad = "truncated";
			return FERRY_EPROTO;
		}
		uint32_t len = ferry__peek_u32(r->p);
		if (len == 0 || len > FERRY__CHUNK_MAX) {
			*bad = "bad chunk list (chunk length)";
			return FERRY_EPROTO;
		}
		v[k].off = off;
		v[k].len = len;
		memcpy(v[k].hash.b, r->p + 4, FERRY__HASH_LEN);
		rd_skip(r, CHUNK_REC);
		off += len; /* < 2^24 * 2^18: no overflow */
	}
	if (off != e->size) {
		*bad = "bad chunk list (lengths do not add up to the size)";
		return FERRY_EPROTO;
	}
	e->chunks = v;
	e->nchunks = count;
	return 0;
}

/* count entries into m (m->e and m->blob allocated), checked in tree order
 * by t. */
static int parse_entries(rd *r, ferry__manifest *m, treechk *t, uint64_t count,
                         uint64_t path_bytes, uint32_t version, char *why,
                         size_t whysz)
{
	int error = 0;
	uint64_t used = 0; /* of blob */
	for (size_t i = 0; i < count; i++) {
		if (rd_need(r, 4))
			WHY("entry %zu: truncated", i);
		uint32_t plen = ferry__peek_u32(r->p);
		if (plen == 0 || plen >= FERRY__PATH_MAX ||
		    used + plen + 1 > path_bytes + count)
			WHY("entry %zu: bad path length", i);
		rd_skip(r, 4);
		if (rd_need(r, plen + ENTRY_FIXED))
			WHY("entry %zu: truncated", i);
		char *path = m->blob + used;
		memcpy(path, r->p, plen);
		path[plen] = '\0';
		used += plen + 1;
		ferry__mentry *e = &m->e[i];
		e->path = path;
		e->path_len = plen;
		uint32_t nchunks = 0;
		const char *bad = read_entry(e, r->p + plen, &nchunks);
		rd_skip(r, plen + ENTRY_FIXED);
		if (bad)
			WHY("entry %zu: %s", i, bad);
		if (nchunks) {
			error = read_chunks(r, m, e, nchunks, version, &bad);
			if (error == FERRY_EPROTO)
				WHY("entry %zu: %s", i, bad);
			if (error)
				goto out;
		}
		m->n = i + 1;
		const char *w = tree_step(t, m->e, i);
		if (w)
			WHY("entry %zu: %s", i, w);
	}
	if (used != path_bytes + count)
		WHY("path bytes do not add up");
out:
	return error;
}

static int parse_body(rd *r, uint64_t body_len, ferry__manifest **out,
                      const char *target, const char *dest, char *why,
                      size_t whysz)
{
	ferry__manifest *m = NULL;
	treechk *t = NULL;
	uint64_t count = 0, path_bytes = 0;
	uint32_t version = 0;
	*out = NULL;
	int error = parse_header(r, body_len, &m, target, dest, &count,
	                         &path_bytes, &version, why, whysz);
	if (!error && count) {
		m->e = ferry__reallocarray(NULL, (size_t)count, sizeof(*m->e));
		m->blob = ferry__malloc((size_t)(path_bytes + count));
		t = ferry__malloc(sizeof(*t));
		if (!m->e || !m->blob || !t)
			error = FERRY_ENOMEM;
		m->cap = (size_t)count;
		if (t)
			t->depth = 0;
	}
	if (!error)
		error = parse_entries(r, m, t, count, path_bytes, version, why,
		                      whysz);
	ferry__free(t);
	if (error) {
		ferry__manifest_free(m);
		return error;
	}
	m->loaded = 1;
	*out = m;
	return 0;
}

int ferry__manifest_parse(ferry__manifest **out, const void *data, size_t len,
                          const char *target, const char *dest, char *why,
                          size_t whysz)
{
	int error = 0;
	*out = NULL;
	if (len < TRAILER) {
		snprintf(why, whysz, "truncated");
		return FERRY_EPROTO;
	}
	const uint8_t *d = data;
	size_t body = len - TRAILER;
	if (XXH3_64bits(d, body) != get64(d + body)) {
#ifndef FERRY_FUZZ
		snprintf(why, whysz,
		         "checksum mismatch (damaged or truncated)");
		return FERRY_EPROTO;
#endif
	}
	rd r = {.p = d, .avail = body, .fd = -1};
	error = parse_body(&r, body, out, target, dest, why, whysz);
	if (!error && r.avail != 0) {
		snprintf(why, whysz, "trailing bytes after the entries");
		ferry__manifest_free(*out);
		*out = NULL;
		error = FERRY_EPROTO;
	}
	return error;
}

int ferry__manifest_load(ferry__manifest **out, const char *path,
                         const char *target, const char *dest, ferry_log_fn log,
                         void *log_ctx)
{
	int error = 0;
	char why[FERRY_ERRMSG_SIZE] = "";
	ferry__manifest *m = NULL;
	uint8_t *buf = NULL;
	XXH3_state_t h;
	*out = NULL;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			snprintf(why, sizeof(why), "%s", strerror(errno));
		goto absent;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		snprintf(why, sizeof(why), "%s", strerror(errno));
		goto absent;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < TRAILER) {
		snprintf(why, sizeof(why), "truncated or not a regular file");
		goto absent;
	}
	uint64_t body = (uint64_t)st.st_size - TRAILER;
	uint8_t trailer[TRAILER];
	if (pread(fd, trailer, TRAILER, (off_t)body) != TRAILER) {
		snprintf(why, sizeof(why), "cannot read the trailer");
		goto absent;
	}
	size_t cap = body < IO_BUF ? (size_t)body + 1 : IO_BUF;
	buf = ferry__malloc(cap);
	if (!buf) {
		error = FERRY_ENOMEM;
		goto out;
	}
	XXH3_INITSTATE(&h);
	XXH3_64bits_reset(&h);
	rd r = {.p = buf,
	        .fd = fd,
	        .buf = buf,
	        .cap = cap,
	        .left = body,
	        .h = &h};
	error = parse_body(&r, body, &m, target, dest, why, sizeof(why));
	if (error == FERRY_ENOMEM)
		goto out;
	if (error == FERRY_EIO) {
		snprintf(why, sizeof(why), "read error: %s", strerror(errno));
		goto absent;
	}
	if (error)
		goto absent;
	if (r.avail || r.left) {
		snprintf(why, sizeof(why), "trailing bytes after the entries");
		goto absent;
	}
	if (XXH3_64bits_digest(&h) != get64(trailer)) {
		snprintf(why, sizeof(why),
		         "checksum mismatch (damaged or truncated)");
		goto absent;
	}
	*out = m;
	m = NULL;
	goto out;
absent:
	error = 0;
	ferry__manifest_free(m);
	m = NULL;
	if (why[0])
		ferry__report_warn(
		        log, log_ctx, FERRY_LOG_WARN, path, strlen(path),
		        "manifest ignored (%s): every file counts as new", why);
	error = ferry__manifest_new(out, target, dest);
out:
	if (fd >= 0)
		close(fd);
	ferry__free(buf);
	ferry__manifest_free(m);
	return error;
}

/* ---- writing ---- */

typedef struct enc {
	ferry_buf *b;
	size_t start; /* first byte of the manifest in b */
	int fd;       /* >= 0: flush to it whenever b holds IO_BUF */
	int strict;   /* write an invalid chunk list as none */
	XXH3_state_t h;
	int werrno;
} enc;

/* Write n bytes at p to e->fd, retrying short writes. */
static int enc_write(enc *e, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(e->fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			e->werrno = errno;
			return FERRY_EIO;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int enc_flush(enc *e)
{
	size_t n = e->b->len - e->start;
	const uint8_t *p = e->b->data + e->start;
	XXH3_64bits_update(&e->h, p, n);
	if (e->fd < 0) {
		e->start = e->b->len;
		return 0;
	}
	int error = enc_write(e, p, n);
	if (!error)
		e->b->len = e->start = 0;
	return error;
}

static int put_header(ferry_buf *b, const ferry__manifest *m)
{
	uint64_t path_bytes = 0;
	for (size_t i = 0; i < m->n; i++)
		path_bytes += m->e[i].path_len;
	int error = ferry__buf_put(b, MAGIC, MAGIC_LEN);
	if (!error)
		error = ferry__buf_put_u32(b, FERRY__MANIFEST_VERSION);
	if (!error)
		error = ferry__buf_put_u32(b, m->has_marker ? 1u : 0u);
	if (!error)
		error = ferry__buf_put_cstring(b, m->target ? m->target : "");
	if (!error)
		error = ferry__buf_put_cstring(b, m->dest ? m->dest : "");
	if (!error)
		error = ferry__buf_put(b, m->marker, 16);
	if (!error)
		error = ferry__buf_put_u64(b, (uint64_t)m->written_ns);
	if (!error)
		error = ferry__buf_put_u64(b, (uint64_t)m->stat_ns);
	if (!error)
		error = ferry__buf_put_u64(b, m->n);
	if (!error)
		error = ferry__buf_put_u64(b, path_bytes);
	return error;
}

/* The chunk records of x (n of them). */
static int put_chunks(enc *e, const ferry__mentry *x, uint32_t n)
{
	int error = 0;
	for (uint32_t k = 0; !error && k < n;) {
		uint32_t batch = n - k < CHUNK_BATCH ? n - k : CHUNK_BATCH;
		uint8_t *p;
		error = ferry__buf_reserve(e->b, (size_t)batch * CHUNK_REC, &p);
		if (error)
			break;
		for (uint32_t j = 0; j < batch; j++, k++) {
			ferry__poke_u32(p, x->chunks[k].len);
			memcpy(p + 4, x->chunks[k].hash.b, FERRY__HASH_LEN);
			p += CHUNK_REC;
		}
		if (e->fd >= 0 && e->b->len >= IO_BUF)
			error = enc_flush(e);
	}
	return error;
}

static int encode(const ferry__manifest *m, enc *e)
{
	int error = put_header(e->b, m);
	for (size_t i = 0; !error && i < m->n; i++) {
		const ferry__mentry *x = &m->e[i];
		uint32_t nchunks = x->chunks ? x->nchunks : 0;
		if (e->strict && !ferry__manifest_chunks_valid(x))
			nchunks = 0;
		uint8_t *p;
		error = ferry__buf_reserve(e->b, 4 + x->path_len + ENTRY_FIXED,
		                           &p);
		if (error)
			break;
		ferry__poke_u32(p, x->path_len);
		memcpy(p + 4, x->path, x->path_len);
		p += 4 + x->path_len;
		p[0] = x->type;
		p[1] = (uint8_t)(x->flags & FERRY__ME_DISK_FLAGS);
		p[2] = (uint8_t)(x->mode >> 8);
		p[3] = (uint8_t)x->mode;
		put64(p + 4, x->size);
		put64(p + 12, (uint64_t)x->mtime_ns);
		put64(p + 20, (uint64_t)x->ctime_ns);
		put64(p + 28, x->ino);
		put64(p + 36, x->dev);
		memcpy(p + 44, x->hash.b, FERRY__HASH_LEN);
		ferry__poke_u32(p + 44 + FERRY__HASH_LEN, nchunks);
		if (nchunks)
			error = put_chunks(e, x, nchunks);
		if (!error && e->fd >= 0 && e->b->len >= IO_BUF)
			error = enc_flush(e);
	}
	if (!error)
		error = enc_flush(e);
	if (!error)
		error = ferry__buf_put_u64(e->b, XXH3_64bits_digest(&e->h));
	/* The trailer itself is not hashed; write it directly. */
	if (!error && e->fd >= 0)
		error = enc_write(e, e->b->data, e->b->len);
	return error;
}

int ferry__manifest_serialize(const ferry__manifest *m, ferry_buf *out)
{
	enc e = {.b = out, .start = out->len, .fd = -1};
	XXH3_INITSTATE(&e.h);
	XXH3_64bits_reset(&e.h);
	return encode(m, &e);
}

int ferry__mkdir_p(const char *dir)
{
	char path[FERRY__PATH_MAX];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (i < n && path[i] != '/')
			continue;
		char c = path[i];
		path[i] = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -1;
		path[i] = c;
	}
	struct stat st;
	if (stat(dir, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

static int io_code(int e)
{
	if (e == EACCES || e == EPERM || e == EROFS)
		return FERRY_EPERM;
	return FERRY_EIO;
}

/* The state directory dir made (NULL: out of memory): 0 or FERRY_E*
 * with the reason in err. */
static int state_dir(const char *dir, char *err, size_t errsz)
{
	if (!dir) {
		snprintf(err, errsz, "out of memory");
		return FERRY_ENOMEM;
	}
	if (ferry__mkdir_p(dir) < 0) {
		int e = errno;
		snprintf(err, errsz, "state directory %s: %s", dir,
		         strerror(e));
		return io_code(e);
	}
	return 0;
}

int ferry__manifest_save(ferry__manifest *m, const char *path, char *err,
                         size_t errsz)
{
	int error = 0, fd = -1;
	char *dir = ferry__dirname(path);
	char *tmp = ferry__asprintf("%s.tmp.XXXXXX", path);
	ferry_buf b = FERRY_BUF_INIT;
	int64_t old_written = m->written_ns;
	if ((error = state_dir(dir && tmp ? dir : NULL, err, errsz)))
		goto out;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		error = io_code(errno);
		snprintf(err, errsz, "manifest %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(fd, 0600) < 0) {
		error = io_code(errno);
		snprintf(err, errsz, "manifest %s: %s", tmp, strerror(errno));
		goto out;
	}
	m->written_ns = ferry__sync_realtime_ns();
	enc e = {.b = &b, .fd = fd, .strict = 1};
	XXH3_INITSTATE(&e.h);
	XXH3_64bits_reset(&e.h);
	error = encode(m, &e);
	if (error == FERRY_EIO) {
		error = io_code(e.werrno);
		snprintf(err, errsz, "writing manifest %s: %s", tmp,
		         strerror(e.werrno));
		goto out;
	}
	if (error) {
		snprintf(err, errsz, "out of memory");
		goto out;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		error = io_code(errno);
		snprintf(err, errsz, "writing manifest %s: %s", tmp,
		         strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		error = io_code(errno);
		snprintf(err, errsz, "renaming manifest to %s: %s", path,
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
out:
	if (fd >= 0)
		close(fd);
	if (tmp && error)
		unlink(tmp);
	if (error)
		m->written_ns = old_written;
	ferry__buf_free(&b);
	ferry__free(tmp);
	ferry__free(dir);
	return error;
}

/* ---- lock ---- */

struct ferry__lock {
	int fd;
};

int ferry__lock_acquire(ferry__lock **out, const char *lock_path,
                        int timeout_ms, int (*cancelled)(void *ctx), void *ctx,
                        char *err, size_t errsz)
{
	int error = 0, fd = -1;
	ferry__lock *l = NULL;
	char *dir = ferry__dirname(lock_path);
	*out = NULL;
	if ((error = state_dir(dir, err, errsz)))
		goto out;
	fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		error = io_code(errno);
		snprintf(err, errsz, "lock %s: %s", lock_path, strerror(errno));
		goto out;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int wait = 1;
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			error = io_code(errno);
			snprintf(err, errsz, "lock %s: %s", lock_path,
			         strerror(errno));
			goto out;
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long long spent = (long long)(now.tv_sec - t0.tv_sec) * 1000 +
		                  (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (timeout_ms == 0 ||
		    (timeout_ms > 0 && spent >= timeout_ms)) {
			error = FERRY_ELOCKED;
			snprintf(err, errsz,
			         "target is locked by another ferry process "
			         "(%s)",
			         lock_path);
			goto out;
		}
		if (cancelled && cancelled(ctx)) {
			error = FERRY_EINTR;
			snprintf(err, errsz, "interrupted while waiting for %s",
			         lock_path);
			goto out;
		}
		poll(NULL, 0, wait);
		if (wait < 20)
			wait *= 2;
	}
	l = ferry__malloc(sizeof(*l));
	if (!l) {
		error = FERRY_ENOMEM;
		goto out;
	}
	l->fd = fd;
	fd = -1;
	*out = l;
out:
	if (error == FERRY_ENOMEM)
		snprintf(err, errsz, "out of memory");
	if (fd >= 0)
		close(fd);
	ferry__free(dir);
	return error;
}

void ferry__lock_release(ferry__lock *l)
{
	if (!l)
		return;
	close(l->fd); /* drops the flock */
	ferry__free(l);
}
