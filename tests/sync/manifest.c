/* Tests of sync/manifest.c: format round trips, damage detection, hostile
 * entries, allocation failures, the lock. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "fixture.h"
#include "sync/manifest.h"
#include "sync/path.h"
#include "sync/scan.h"
#include "sync_test.h"

#define TARGET "u@h.example:22"
#define DEST   "dst"
/* A chunk record in the file: u32 length, hash. */
#define CHUNK_REC_LEN 20

static ferry__mentry ent(const char *path, int type, uint64_t seed)
{
	ferry__mentry e;
	memset(&e, 0, sizeof(e));
	e.path = path;
	e.path_len = (uint32_t)strlen(path);
	e.type = (uint8_t)type;
	e.mode = type == FERRY__T_DIR ? 0755 : 0644;
	e.size = seed * 7;
	e.mtime_ns = (int64_t)(1700000000000000000ull + seed * 1000003);
	e.ctime_ns = e.mtime_ns + 5;
	e.ino = seed + 100;
	e.dev = 0x803;
	ferry__hash_buf(&e.hash, &seed, sizeof(seed));
	e.flags = FERRY__ME_HASHED;
	return e;
}

/* A chunk list of n chunks (lengths from seed, 1..FERRY__CHUNK_MAX) in
 * v; their sum. */
static uint64_t make_chunks(ferry__chunk *v, size_t n, uint64_t seed)
{
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		v[i].off = off;
		v[i].len = (uint32_t)(1 + (seed * 2654435761u + i * 40503u) %
		                                  FERRY__CHUNK_MAX);
		uint64_t k = seed << 32 | i;
		ferry__hash_buf(&v[i].hash, &k, sizeof(k));
		off += v[i].len;
	}
	return off;
}

/* A small valid manifest: a/, a/x (two chunks), a/y -> link, b. */
static ferry__manifest *small(void)
{
	ferry__manifest *m;
	cr_assert_eq(ferry__manifest_new(&m, TARGET, DEST), 0);
	ferry__mentry v[] = {
	        ent("a", FERRY__T_DIR, 1), ent("a/x", FERRY__T_FILE, 2),
	        ent("a/y", FERRY__T_LINK, 3), ent("b", FERRY__T_FILE, 4)};
	ferry__chunk ch[2];
	v[1].size = make_chunks(ch, 2, 2);
	v[1].chunks = ch;
	v[1].nchunks = 2;
	for (size_t i = 0; i < 4; i++)
		cr_assert_eq(ferry__manifest_append(m, &v[i]), 0);
	memset(m->marker, 0xab, 16);
	m->has_marker = 1;
	m->written_ns = 1;
	m->stat_ns = 2;
	return m;
}

static void assert_same(const ferry__manifest *a, const ferry__manifest *b)
{
	cr_assert_str_eq(a->target, b->target);
	cr_assert_str_eq(a->dest, b->dest);
	cr_assert_eq(memcmp(a->marker, b->marker, 16), 0);
	cr_assert_eq(a->has_marker, b->has_marker);
	cr_assert_eq(a->stat_ns, b->stat_ns);
	cr_assert_eq(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const ferry__mentry *x = &a->e[i], *y = &b->e[i];
		cr_assert_eq(x->path_len, y->path_len);
		cr_assert_eq(memcmp(x->path, y->path, x->path_len), 0);
		cr_assert_eq(y->path[y->path_len], '\0');
		cr_assert_eq(x->type, y->type);
		cr_assert_eq(x->mode, y->mode);
		cr_assert_eq(x->size, y->size);
		cr_assert_eq(x->mtime_ns, y->mtime_ns);
		cr_assert_eq(x->ctime_ns, y->ctime_ns);
		cr_assert_eq(x->ino, y->ino);
		cr_assert_eq(x->dev, y->dev);
		cr_assert_eq(x->flags & FERRY__ME_DISK_FLAGS,
		             y->flags & FERRY__ME_DISK_FLAGS);
		cr_assert_eq(memcmp(x->hash.b, y->hash.b, 16), 0);
		cr_assert_eq(x->nchunks, y->nchunks, "entry %zu", i);
		cr_assert_eq(x->chunks == NULL, y->chunks == NULL);
		for (uint32_t k = 0; k < x->nchunks; k++) {
			cr_assert_eq(x->chunks[k].off, y->chunks[k].off);
			cr_assert_eq(x->chunks[k].len, y->chunks[k].len);
			cr_assert(ferry__hash_eq(&x->chunks[k].hash,
			                         &y->chunks[k].hash));
		}
	}
}

Test(manifest, round_trip_in_memory)
{
	ferry__manifest *m = small(), *back = NULL;
	ferry_buf b = FERRY_BUF_INIT;
	char why[256];
	cr_assert_eq(ferry__manifest_serialize(m, &b), 0);
	cr_assert_eq(ferry__manifest_parse(&back, b.data, b.len, TARGET, DEST,
	                                   why, sizeof(why)),
	             0, "%s", why);
	assert_same(m, back);
	cr_assert(back->loaded);
	cr_assert_not_null(ferry__manifest_find(back, "a/y", 3));
	cr_assert_null(ferry__manifest_find(back, "a/z", 3));
	cr_assert_eq(ferry__manifest_find(back, "b", 1)->type, FERRY__T_FILE);
	ferry__manifest_free(back);
	ferry__buf_free(&b);
	ferry__manifest_free(m);
}

Test(manifest, round_trip_100000_entries_through_a_file)
{
	char *d = st_dir("manifest-big");
	char *path = st_path(d, "state/m.manifest");
	ferry__manifest *m;
	cr_assert_eq(ferry__manifest_new(&m, TARGET, DEST), 0);
	/* 1000 directories of 99 files, in tree order. */
	char buf[64];
	for (int i = 0; i < 1000; i++) {
		snprintf(buf, sizeof(buf), "dir%04d", i);
		ferry__mentry e = ent(buf, FERRY__T_DIR, (uint64_t)i);
		cr_assert_eq(ferry__manifest_append(m, &e), 0);
		for (int j = 0; j < 99; j++) {
			snprintf(buf, sizeof(buf), "dir%04d/file-%03d.md", i,
			         j);
			e = ent(buf, FERRY__T_FILE,
			        (uint64_t)i * 1000 + (uint64_t)j);
			cr_assert_eq(ferry__manifest_append(m, &e), 0);
		}
	}
	cr_assert_eq(m->n, 100000);
	char why[256], err[256];
	cr_assert_eq(ferry__manifest_check(m, why, sizeof(why)), 0, "%s", why);
	struct timespec t0, t1, t2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(ferry__manifest_save(m, path, err, sizeof(err)), 0, "%s",
	             err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ferry__manifest *back = NULL;
	cr_assert_eq(
	        ferry__manifest_load(&back, path, TARGET, DEST, NULL, NULL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t2);
	cr_assert(back->loaded);
	assert_same(m, back);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	long long file_size = (long long)st.st_size;
	char *sd = st_path(d, "state");
	cr_assert_eq(stat(sd, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
	/* every entry found, in order and out of order */
	for (size_t i = 0; i < back->n; i += 997) {
		const ferry__mentry *e = &m->e[back->n - 1 - i];
		cr_assert_eq(
		        ferry__manifest_find(back, e->path, e->path_len)->ino,
		        e->ino);
	}
	cr_log_info(
	        "100000 entries: save %.1f ms, load %.1f ms, %lld bytes",
	        (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
	        (t2.tv_sec - t1.tv_sec) * 1e3 + (t2.tv_nsec - t1.tv_nsec) / 1e6,
	        file_size);
	ferry__manifest_free(back);
	ferry__manifest_free(m);
	free(sd);
	free(path);
	free(d);
}

typedef struct logbuf {
	int warnings;
	char last[512];
} logbuf;

static void log_count(void *ctx, int level, const char *msg)
{
	logbuf *l = ctx;
	if (level == FERRY_LOG_WARN)
		l->warnings++;
	snprintf(l->last, sizeof(l->last), "%s", msg);
}

Test(manifest, every_byte_corruption_and_truncation_detected)
{
	ferry__manifest *m = small(), *back = NULL;
	ferry_buf b = FERRY_BUF_INIT;
	char why[256];
	cr_assert_eq(ferry__manifest_serialize(m, &b), 0);
	uint8_t *copy = malloc(b.len);
	size_t bad = 0;
	for (size_t i = 0; i < b.len; i++) {
		for (int v = 1; v < 256; v++) {
			memcpy(copy, b.data, b.len);
			copy[i] ^= (uint8_t)v;
			int rc = ferry__manifest_parse(&back, copy, b.len,
			                               TARGET, DEST, why,
			                               sizeof(why));
			cr_assert_eq(rc, FERRY_EPROTO, "byte %zu ^ %d accepted",
			             i, v);
			cr_assert_null(back);
			bad++;
		}
	}
	for (size_t len = 0; len < b.len; len++) {
		int rc = ferry__manifest_parse(&back, b.data, len, TARGET, DEST,
		                               why, sizeof(why));
		cr_assert_eq(rc, FERRY_EPROTO, "truncation to %zu accepted",
		             len);
	}
	/* The same through files: each truncation loads as absent, with a
	 * warning, and an empty manifest. */
	char *d = st_dir("manifest-trunc");
	char *path = st_path(d, "m");
	for (size_t len = 0; len < b.len; len += 7) {
		cr_assert_eq(fx_write_file(path, b.data, len, 0600), 0);
		logbuf l = {0};
		cr_assert_eq(ferry__manifest_load(&back, path, TARGET, DEST,
		                                  log_count, &l),
		             0);
		cr_assert_eq(back->n, 0);
		cr_assert(!back->loaded);
		cr_assert_eq(l.warnings, 1, "len %zu", len);
		cr_assert(strstr(l.last, "manifest ignored"), "%s", l.last);
		ferry__manifest_free(back);
	}
	cr_log_info("%zu corruptions and %zu truncations rejected", bad, b.len);
	free(path);
	free(d);
	free(copy);
	ferry__buf_free(&b);
	ferry__manifest_free(m);
}

Test(manifest, wrong_target_destination_or_version_is_absent)
{
	ferry__manifest *m = small(), *back = NULL;
	ferry_buf b = FERRY_BUF_INIT;
	char why[256];
	cr_assert_eq(ferry__manifest_serialize(m, &b), 0);
	cr_assert_eq(ferry__manifest_parse(&back, b.data, b.len, "v@h:22", DEST,
	                                   why, sizeof(why)),
	             FERRY_EPROTO);
	cr_assert(strstr(why, "another target"), "%s", why);
	cr_assert_eq(ferry__manifest_parse(&back, b.data, b.len, TARGET, "x",
	                                   why, sizeof(why)),
	             FERRY_EPROTO);
	cr_assert(strstr(why, "another destination"), "%s", why);
	/* version 3 with a correct checksum */
	b.data[11] = 3;
	uint64_t sum = XXH3_64bits(b.data, b.len - 8);
	for (int i = 0; i < 8; i++)
		b.data[b.len - 8 + i] = (uint8_t)(sum >> (56 - 8 * i));
	cr_assert_eq(ferry__manifest_parse(&back, b.data, b.len, TARGET, DEST,
	                                   why, sizeof(why)),
	             FERRY_EPROTO);
	cr_assert(strstr(why, "format version 3"), "%s", why);
	/* and version 0 */
	b.data[11] = 0;
	sum = XXH3_64bits(b.data, b.len - 8);
	for (int i = 0; i < 8; i++)
		b.data[b.len - 8 + i] = (uint8_t)(sum >> (56 - 8 * i));
	cr_assert_eq(ferry__manifest_parse(&back, b.data, b.len, TARGET, DEST,
	                                   why, sizeof(why)),
	             FERRY_EPROTO);
	cr_assert(strstr(why, "format version 0"), "%s", why);
	ferry__buf_free(&b);
	ferry__manifest_free(m);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

Test(manifest, lying_header_counts_rejected_with_a_good_checksum)
{
	ferry__manifest *m = small(), *back = NULL;
	ferry_buf b = FERRY_BUF_INIT;
	char why[256];
	cr_assert_eq(ferry__manifest_serialize(m, &b), 0);
	/* count and total path bytes follow the strings, marker and times */
	size_t at = 8 + 4 + 4 + 4 + strlen(TARGET) + 4 + strlen(DEST) + 16 + 16;
	uint64_t values[][2] = {
	        {4, 1},      {4, 2},          {4, 5},         {4, 6}, {4, 7},
	        {4, 0},      {3, 7},          {5, 7},         {1, 7}, {0, 0},
	        {4, 100000}, {UINT64_MAX, 7}, {4, UINT64_MAX}};
	for (size_t k = 0; k < sizeof(values) / sizeof(values[0]); k++) {
		uint8_t *c = malloc(b.len);
		memcpy(c, b.data, b.len);
		put_be64(c + at, values[k][0]);
		put_be64(c + at + 8, values[k][1]);
		put_be64(c + b.len - 8, XXH3_64bits(c, b.len - 8));
		cr_assert_eq(ferry__manifest_parse(&back, c, b.len, TARGET,
		                                   DEST, why, sizeof(why)),
		             FERRY_EPROTO, "count %llu, bytes %llu accepted",
		             (unsigned long long)values[k][0],
		             (unsigned long long)values[k][1]);
		free(c);
	}
	/* the true values pass (the offsets above are right) */
	cr_assert_eq(ferry__manifest_parse(&back, b.data, b.len, TARGET, DEST,
	                                   why, sizeof(why)),
	             0);
	ferry__manifest_free(back);
	ferry__buf_free(&b);
	ferry__manifest_free(m);
}

/* Serialize entries as given (serialize does not check them), then parse. */
static int parse_entries(const char *const *paths, const int *types, size_t n,
                         char *why, size_t whysz)
{
	ferry__manifest *m, *back = NULL;
	cr_assert_eq(ferry__manifest_new(&m, TARGET, DEST), 0);
	m->e = calloc(n + 1, sizeof(*m->e));
	for (size_t i = 0; i < n; i++) {
		m->e[i] = ent("x", types[i], i);
		m->e[i].path = paths[i];
		m->e[i].path_len = (uint32_t)strlen(paths[i]);
		if (i == 0 && strcmp(paths[i], "nul") == 0)
			m->e[i].path_len = 4; /* include the NUL */
	}
	m->n = m->cap = n;
	ferry_buf b = FERRY_BUF_INIT;
	cr_assert_eq(ferry__manifest_serialize(m, &b), 0);
	int rc = ferry__manifest_parse(&back, b.data, b.len, TARGET, DEST, why,
	                               whysz);
	ferry__manifest_free(back);
	ferry__buf_free(&b);
	ferry__manifest_free(m);
	return rc;
}

Test(manifest, hostile_entries_rejected_even_with_a_good_checksum)
{
	char why[256];
	struct {
		const char *paths[3];
		int types[3];
		size_t n;
		const char *why;
	} cases[] = {
	        {{".."}, {FERRY__T_FILE}, 1, "invalid path"},
	        {{"a/../b"}, {FERRY__T_FILE}, 1, "invalid path"},
	        {{"/etc/passwd"}, {FERRY__T_FILE}, 1, "invalid path"},
	        {{"a//b"}, {FERRY__T_FILE}, 1, "invalid path"},
	        {{"a/"}, {FERRY__T_FILE}, 1, "invalid path"},
	        {{"./a"}, {FERRY__T_FILE}, 1, "invalid path"},
	        {{""},
	         {FERRY__T_FILE},
	         1,
	         "bad entry count"}, /* paths < entries */
	        {{"nul"}, {FERRY__T_FILE}, 1, "invalid path"},
	        {{"b", "a"}, {FERRY__T_FILE, FERRY__T_FILE}, 2, "out of order"},
	        {{"a", "a"}, {FERRY__T_FILE, FERRY__T_FILE}, 2, "out of order"},
	        {{"a.txt", "a/x"},
	         {FERRY__T_DIR, FERRY__T_FILE},
	         2,
	         "out of order"},
	        {{"a/x"}, {FERRY__T_FILE}, 1, "without its parent"},
	        {{"a", "a/x"},
	         {FERRY__T_FILE, FERRY__T_FILE},
	         2,
	         "without its parent"},
	        {{"a"}, {9}, 1, "bad entry type"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why[0] = 0;
		cr_assert_eq(parse_entries(cases[i].paths, cases[i].types,
		                           cases[i].n, why, sizeof(why)),
		             FERRY_EPROTO, "case %zu accepted", i);
		cr_assert(strstr(why, cases[i].why), "case %zu: %s", i, why);
	}
	/* and the valid shape for contrast */
	const char *ok[] = {"a", "a/x", "a.txt"};
	int okt[] = {FERRY__T_DIR, FERRY__T_FILE, FERRY__T_FILE};
	cr_assert_eq(parse_entries(ok, okt, 3, why, sizeof(why)), 0, "%s", why);
}

static void fix_checksum(uint8_t *c, size_t len)
{
	put_be64(c + len - 8, XXH3_64bits(c, len - 8));
}

static uint8_t *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *p = malloc((size_t)n + 1);
	cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return p;
}

Test(manifest, chunk_lists_round_trip_through_a_file)
{
	char *d = st_dir("manifest-chunks");
	char *path = st_path(d, "m");
	ferry__manifest *m;
	cr_assert_eq(ferry__manifest_new(&m, TARGET, DEST), 0);
	/* 30000 records (600 KB) need many refills of the reader's 256 KiB
	 * window; a list of one; a file without a list between them. */
	size_t counts[] = {30000, 0, 1, 3};
	const char *names[] = {"big", "c", "d", "e"};
	ferry__chunk *v = malloc(30000 * sizeof(*v));
	for (size_t k = 0; k < 4; k++) {
		ferry__mentry e = ent(names[k], FERRY__T_FILE, k + 10);
		if (counts[k]) {
			e.size = make_chunks(v, counts[k], k + 10);
			e.chunks = v;
			e.nchunks = (uint32_t)counts[k];
		}
		cr_assert_eq(ferry__manifest_append(m, &e), 0);
		/* the manifest holds a copy */
		memset(v, 0, 30000 * sizeof(*v));
		cr_assert(e.chunks == NULL || m->e[k].chunks != e.chunks);
	}
	cr_assert_eq(m->e[0].chunks[29999].off + m->e[0].chunks[29999].len,
	             m->e[0].size);
	char why[256], err[256];
	cr_assert_eq(ferry__manifest_save(m, path, err, sizeof(err)), 0, "%s",
	             err);
	ferry__manifest *back = NULL;
	cr_assert_eq(
	        ferry__manifest_load(&back, path, TARGET, DEST, NULL, NULL), 0);
	cr_assert(back->loaded);
	assert_same(m, back);
	ferry__manifest_free(back);
	ferry_buf b = FERRY_BUF_INIT;
	cr_assert_eq(ferry__manifest_serialize(m, &b), 0);
	size_t flen;
	uint8_t *file = read_whole(path, &flen);
	/* the same bytes but written_ns (set by save) */
	cr_assert_eq(flen, b.len);
	cr_assert_eq(ferry__manifest_parse(&back, b.data, b.len, TARGET, DEST,
	                                   why, sizeof(why)),
	             0, "%s", why);
	assert_same(m, back);
	cr_assert_eq(b.data[11], FERRY__MANIFEST_VERSION);
	cr_assert_eq(FERRY__MANIFEST_VERSION, 2);
	ferry__manifest_free(back);
	free(file);
	ferry__buf_free(&b);
	ferry__manifest_free(m);
	free(v);
	free(path);
	free(d);
}

Test(manifest, version_1_loads_and_is_saved_as_version_2)
{
	char *d = st_dir("manifest-v1");
	char *path = st_path(d, "m");
	ferry__manifest *m;
	cr_assert_eq(ferry__manifest_new(&m, TARGET, DEST), 0);
	ferry__mentry v[] = {ent("a", FERRY__T_DIR, 1),
	                     ent("a/x", FERRY__T_FILE, 2)};
	for (size_t i = 0; i < 2; i++)
		cr_assert_eq(ferry__manifest_append(m, &v[i]), 0);
	/* A version 1 file is a version 2 file without chunk lists. */
	ferry_buf b = FERRY_BUF_INIT;
	cr_assert_eq(ferry__manifest_serialize(m, &b), 0);
	b.data[11] = 1;
	fix_checksum(b.data, b.len);
	cr_assert_eq(fx_write_file(path, b.data, b.len, 0600), 0);
	ferry__manifest *back = NULL;
	logbuf lb = {0};
	cr_assert_eq(
	        ferry__manifest_load(&back, path, TARGET, DEST, log_count, &lb),
	        0);
	cr_assert(back->loaded, "%s", lb.last);
	cr_assert_eq(lb.warnings, 0);
	assert_same(m, back);
	char err[256];
	cr_assert_eq(ferry__manifest_save(back, path, err, sizeof(err)), 0);
	size_t flen;
	uint8_t *file = read_whole(path, &flen);
	cr_assert_eq(ferry__peek_u32(file + 8), 2);
	free(file);
	ferry__manifest_free(back);
	cr_assert_eq(
	        ferry__manifest_load(&back, path, TARGET, DEST, NULL, NULL), 0);
	cr_assert(back->loaded);
	assert_same(m, back);
	ferry__manifest_free(back);
	ferry__buf_free(&b);
	/* a chunk list in a version 1 file is damage */
	ferry__manifest *c = small();
	cr_assert_eq(ferry__manifest_serialize(c, &b), 0);
	b.data[11] = 1;
	fix_checksum(b.data, b.len);
	char why[256];
	cr_assert_eq(ferry__manifest_parse(&back, b.data, b.len, TARGET, DEST,
	                                   why, sizeof(why)),
	             FERRY_EPROTO);
	cr_assert(strstr(why, "entry 1: bad chunk list"), "%s", why);
	ferry__manifest_free(c);
	ferry__buf_free(&b);
	ferry__manifest_free(m);
	free(path);
	free(d);
}

/* The bytes of a manifest of one top-level entry e (serialized as is),
 * its chunk count at *count_at. */
static void one_entry_bytes(const ferry__mentry *e, ferry_buf *b,
                            size_t *count_at)
{
	ferry__manifest *m;
	cr_assert_eq(ferry__manifest_new(&m, TARGET, DEST), 0);
	m->e = calloc(1, sizeof(*m->e));
	m->e[0] = *e;
	m->n = m->cap = 1;
	cr_assert_eq(ferry__manifest_serialize(m, b), 0);
	size_t hdr =
	        8 + 4 + 4 + 4 + strlen(TARGET) + 4 + strlen(DEST) + 16 + 32;
	*count_at = hdr + 4 + e->path_len + 60;
	if (e->chunks)
		cr_assert_eq(ferry__peek_u32(b->data + *count_at), e->nchunks);
	ferry__manifest_free(m);
}

/* Parse and load (from a file: the streaming reader) must both refuse. */
static void assert_refused(const uint8_t *data, size_t len, const char *what,
                           const char *tag)
{
	char why[256];
	ferry__manifest *back = NULL;
	cr_assert_eq(ferry__manifest_parse(&back, data, len, TARGET, DEST, why,
	                                   sizeof(why)),
	             FERRY_EPROTO, "%s accepted", tag);
	cr_assert_null(back);
	cr_assert(strstr(why, what), "%s: %s", tag, why);
	char *d = st_dir("manifest-badchunks");
	char *path = st_path(d, "m");
	cr_assert_eq(fx_write_file(path, data, len, 0600), 0);
	logbuf lb = {0};
	cr_assert_eq(
	        ferry__manifest_load(&back, path, TARGET, DEST, log_count, &lb),
	        0);
	cr_assert_not(back->loaded, "%s loaded", tag);
	cr_assert_eq(back->n, 0);
	cr_assert_eq(lb.warnings, 1);
	cr_assert(strstr(lb.last, what), "%s: %s", tag, lb.last);
	ferry__manifest_free(back);
	free(path);
	free(d);
}

Test(manifest, bad_chunk_lists_refused_even_with_a_good_checksum)
{
	ferry__chunk v[4];
	struct {
		const char *tag;
		int type;
		int hashed;
		uint32_t len1; /* 0: as made */
		int64_t dsize; /* added to the sum for the size */
		const char *why;
	} cases[] = {
	        {"len 0", FERRY__T_FILE, 1, UINT32_MAX, 0, "chunk length"},
	        {"len > max", FERRY__T_FILE, 1, FERRY__CHUNK_MAX + 1, 0,
	         "chunk length"},
	        {"sum < size", FERRY__T_FILE, 1, 0, 1, "add up"},
	        {"sum > size", FERRY__T_FILE, 1, 0, -1, "add up"},
	        {"on a dir", FERRY__T_DIR, 1, 0, 0, "not on a hashed file"},
	        {"on a link", FERRY__T_LINK, 1, 0, 0, "not on a hashed file"},
	        {"unhashed", FERRY__T_FILE, 0, 0, 0, "not on a hashed file"},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		ferry__mentry e = ent("f", cases[k].type, 5);
		if (!cases[k].hashed)
			e.flags = 0;
		uint64_t sum = make_chunks(v, 4, 5);
		if (cases[k].len1 == UINT32_MAX) {
			sum -= v[1].len;
			v[1].len = 0;
		} else if (cases[k].len1) {
			sum += cases[k].len1 - v[1].len;
			v[1].len = cases[k].len1;
		}
		e.size = sum + (uint64_t)cases[k].dsize;
		e.chunks = v;
		e.nchunks = 4;
		cr_assert_not(ferry__manifest_chunks_valid(&e), "%s",
		              cases[k].tag);
		ferry_buf b = FERRY_BUF_INIT;
		size_t at;
		one_entry_bytes(&e, &b, &at);
		assert_refused(b.data, b.len, "entry 0: bad chunk list",
		               cases[k].tag);
		assert_refused(b.data, b.len, cases[k].why, cases[k].tag);
		ferry__buf_free(&b);
	}
	/* Counts the file cannot hold: no allocation for them. */
	ferry__mentry e = ent("f", FERRY__T_FILE, 6);
	e.size = make_chunks(v, 4, 6);
	e.chunks = v;
	e.nchunks = 4;
	cr_assert(ferry__manifest_chunks_valid(&e));
	ferry_buf b = FERRY_BUF_INIT;
	size_t at;
	one_entry_bytes(&e, &b, &at);
	uint32_t counts[] = {5, 1000000, FERRY__CHUNKS_MAX,
	                     FERRY__CHUNKS_MAX + 1, UINT32_MAX};
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		uint8_t *c = malloc(b.len);
		memcpy(c, b.data, b.len);
		ferry__poke_u32(c + at, counts[k]);
		fix_checksum(c, b.len);
		char tag[32];
		snprintf(tag, sizeof(tag), "count %u", counts[k]);
		assert_refused(c, b.len, "bad chunk list", tag);
		free(c);
	}
	/* fewer records than the lengths need: the size does not add up */
	uint8_t *c = malloc(b.len);
	memcpy(c, b.data, b.len);
	ferry__poke_u32(c + at, 3);
	/* the last record becomes trailing bytes: cut it off */
	size_t len = b.len - CHUNK_REC_LEN;
	memmove(c + len - 8, c + b.len - 8, 8);
	fix_checksum(c, len);
	assert_refused(c, len, "add up", "count 3 of 4");
	free(c);
	/* the same bytes unpatched load */
	char why[256];
	ferry__manifest *back = NULL;
	cr_assert_eq(ferry__manifest_parse(&back, b.data, b.len, TARGET, DEST,
	                                   why, sizeof(why)),
	             0, "%s", why);
	cr_assert_eq(back->e[0].nchunks, 4);
	ferry__manifest_free(back);
	ferry__buf_free(&b);
}

Test(manifest, save_writes_an_invalid_chunk_list_as_none)
{
	char *d = st_dir("manifest-savebad");
	char *path = st_path(d, "m");
	ferry__manifest *m;
	cr_assert_eq(ferry__manifest_new(&m, TARGET, DEST), 0);
	ferry__chunk v[3];
	ferry__mentry e = ent("f", FERRY__T_FILE, 7);
	e.size = make_chunks(v, 3, 7) + 1; /* does not add up */
	e.chunks = v;
	e.nchunks = 3;
	cr_assert_eq(ferry__manifest_append(m, &e), 0);
	ferry__mentry g = ent("g", FERRY__T_FILE, 8);
	g.size = make_chunks(v, 3, 8);
	g.chunks = v;
	g.nchunks = 3;
	cr_assert_eq(ferry__manifest_append(m, &g), 0);
	char err[256];
	cr_assert_eq(ferry__manifest_save(m, path, err, sizeof(err)), 0);
	ferry__manifest *back = NULL;
	cr_assert_eq(
	        ferry__manifest_load(&back, path, TARGET, DEST, NULL, NULL), 0);
	cr_assert(back->loaded);
	cr_assert_eq(back->n, 2);
	cr_assert_eq(back->e[0].nchunks, 0);
	cr_assert_null(back->e[0].chunks);
	cr_assert_eq(back->e[1].nchunks, 3);
	cr_assert_eq(back->e[1].chunks[2].len, v[2].len);
	ferry__manifest_free(back);
	ferry__manifest_free(m);
	free(path);
	free(d);
}

Test(manifest, hostile_names_survive_scan_manifest_load)
{
	char *d = st_dir("manifest-names");
	char *state = st_path(d, "state");
	st_mkdir(d, "t", 0755);
	static const char *names[] = {
	        "with space",  "new\nline", "quote'\"",
	        "back\\slash", "-leading",  "\xff\xfe\x80",
	        "tab\there",   "--",        "\x01\x7f"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "t/%s", names[i]);
		st_write(d, rel, names[i], 0644);
	}
	/* and a path near PATH_MAX: 16 levels of 250 bytes + a 75-byte leaf
	 * (built with *at calls: the absolute path is longer than PATH_MAX) */
	char rel[FERRY__PATH_MAX + 16] = "t";
	char comp[251];
	memset(comp, 'p', 250);
	comp[250] = 0;
	char *top = st_path(d, "t");
	int fd = open(top, O_RDONLY | O_DIRECTORY);
	free(top);
	for (int i = 0; i < 16; i++) {
		size_t n = strlen(rel);
		rel[n] = '/';
		memcpy(rel + n + 1, comp, 251);
		cr_assert_eq(mkdirat(fd, comp, 0755), 0);
		int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY);
		close(fd);
		fd = nfd;
	}
	size_t n = strlen(rel);
	rel[n++] = '/';
	memset(rel + n, 'L', 75);
	rel[n + 75] = 0;
	int ffd = openat(fd, rel + n, O_WRONLY | O_CREAT, 0644);
	cr_assert_eq(write(ffd, "deep", 4), 4);
	close(ffd);
	close(fd);
	char *src = st_path(d, "t/");
	st_target t;
	st_target_init(&t, state, src);
	cr_assert_eq(st_push(&t, ST_HOUR),
	             sizeof(names) / sizeof(names[0]) + 17);
	ferry__manifest *m = st_load(&t);
	cr_assert(m->loaded);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const ferry__mentry *e =
		        ferry__manifest_find(m, names[i], strlen(names[i]));
		cr_assert_not_null(e, "%s lost", names[i]);
		cr_assert_eq(e->size, strlen(names[i]));
	}
	const char *deep = rel + 2;
	cr_assert_eq(strlen(deep), 4091);
	cr_assert_not_null(ferry__manifest_find(m, deep, strlen(deep)));
	ferry__manifest_free(m);
	/* nothing changed: status lists nothing */
	char *out = st_status(&t, NULL, NULL);
	cr_assert_str_eq(out, "");
	free(out);
	free(src);
	free(state);
	free(d);
}

Test(manifest, allocation_failures_give_clean_errors)
{
	char *d = st_dir("manifest-alloc");
	char *path = st_path(d, "s/m");
	ferry__manifest *m = small(), *back = NULL;
	char err[256];
	cr_assert_eq(ferry__manifest_save(m, path, err, sizeof(err)), 0);
	unsigned long c0 = ferry__alloc_count();
	cr_assert_eq(
	        ferry__manifest_load(&back, path, TARGET, DEST, NULL, NULL), 0);
	unsigned long loads = ferry__alloc_count() - c0;
	ferry__manifest_free(back);
	for (unsigned long k = 1; k <= loads; k++) {
		ferry__alloc_fail_at(k);
		int rc = ferry__manifest_load(&back, path, TARGET, DEST, NULL,
		                              NULL);
		ferry__alloc_fail_at(0);
		cr_assert_eq(rc, FERRY_ENOMEM, "load, allocation %lu: %d", k,
		             rc);
		cr_assert_null(back);
	}
	/* save: each failure leaves the previous file intact */
	ferry__mentry extra = ent("c", FERRY__T_FILE, 9);
	cr_assert_eq(ferry__manifest_append(m, &extra), 0);
	c0 = ferry__alloc_count();
	char *path2 = st_path(d, "s/m2");
	cr_assert_eq(ferry__manifest_save(m, path2, err, sizeof(err)), 0);
	unsigned long saves = ferry__alloc_count() - c0;
	cr_assert_gt(saves, 0);
	for (unsigned long k = 1; k <= saves; k++) {
		ferry__alloc_fail_at(k);
		int rc = ferry__manifest_save(m, path, err, sizeof(err));
		ferry__alloc_fail_at(0);
		cr_assert_eq(rc, FERRY_ENOMEM, "save, allocation %lu", k);
		cr_assert_eq(ferry__manifest_load(&back, path, TARGET, DEST,
		                                  NULL, NULL),
		             0);
		cr_assert_eq(back->n, 4);
		ferry__manifest_free(back);
	}
	char *leftovers = fx_sh_out("ls '%s/s' | grep -c tmp", d);
	cr_assert_str_eq(leftovers, "0\n");
	free(leftovers);
	free(path2);
	free(path);
	free(d);
	ferry__manifest_free(m);
}

Test(manifest, unwritable_state_directory_is_a_clean_error)
{
	st_drop_dac();
	char *d = st_dir("manifest-ro");
	char *state = st_path(d, "s");
	cr_assert_eq(mkdir(state, 0500), 0);
	char *path = st_path(d, "s/m");
	ferry__manifest *m = small();
	char err[256];
	cr_assert_eq(ferry__manifest_save(m, path, err, sizeof(err)),
	             FERRY_EPERM);
	cr_assert(strstr(err, "Permission denied"), "%s", err);
	ferry__manifest_free(m);
	free(path);
	free(state);
	free(d);
}

/* ---- the lock ---- */

static void lock_worker(const char *lock, const char *log, int rounds)
{
	for (int i = 0; i < rounds; i++) {
		ferry__lock *l;
		char err[256];
		if (ferry__lock_acquire(&l, lock, -1, NULL, NULL, err,
		                        sizeof(err)))
			_exit(2);
		int fd = open(log, O_WRONLY | O_APPEND);
		char line[64];
		int n = snprintf(line, sizeof(line), "+%d\n", (int)getpid());
		if (write(fd, line, (size_t)n) != n)
			_exit(3);
		usleep(20000);
		n = snprintf(line, sizeof(line), "-%d\n", (int)getpid());
		if (write(fd, line, (size_t)n) != n)
			_exit(3);
		close(fd);
		ferry__lock_release(l);
		usleep(1000);
	}
	_exit(0);
}

Test(manifest, two_processes_take_turns_with_the_lock)
{
	char *d = st_dir("lock");
	char *lock = st_path(d, "state/x.lock"), *log = st_path(d, "log");
	cr_assert_eq(fx_write_file(log, "", 0, 0644), 0);
	ferry__lock *l;
	char err[256];
	/* create the directory and lock file once */
	cr_assert_eq(
	        ferry__lock_acquire(&l, lock, 0, NULL, NULL, err, sizeof(err)),
	        0, "%s", err);
	/* held here: a second taker fails at once, or after its timeout */
	pid_t p = fork();
	if (p == 0) {
		ferry__lock *l2;
		int rc = ferry__lock_acquire(&l2, lock, 0, NULL, NULL, err,
		                             sizeof(err));
		int rc2 = ferry__lock_acquire(&l2, lock, 50, NULL, NULL, err,
		                              sizeof(err));
		_exit(rc == FERRY_ELOCKED && rc2 == FERRY_ELOCKED ? 0 : 1);
	}
	int st;
	waitpid(p, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ferry__lock_release(l);

	pid_t a = fork();
	if (a == 0)
		lock_worker(lock, log, 5);
	pid_t b = fork();
	if (b == 0)
		lock_worker(lock, log, 5);
	waitpid(a, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	waitpid(b, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* the log alternates +pid -pid: never two holders at once */
	char *text = fx_read_file(log, NULL);
	int holder = 0, pairs = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		int pid = (int)strtol(line + 1, NULL, 10);
		if (line[0] == '+') {
			cr_assert_eq(holder, 0, "two holders");
			holder = pid;
		} else {
			cr_assert_eq(holder, pid);
			holder = 0;
			pairs++;
		}
	}
	cr_assert_eq(pairs, 10);
	free(text);
	free(lock);
	free(log);
	free(d);
}

static int cancel_now(void *ctx)
{
	return ++*(int *)ctx > 3;
}

Test(manifest, waiting_for_the_lock_can_be_cancelled)
{
	char *d = st_dir("lock-cancel");
	char *lock = st_path(d, "x.lock");
	ferry__lock *l, *l2 = NULL;
	char err[256];
	cr_assert_eq(
	        ferry__lock_acquire(&l, lock, 0, NULL, NULL, err, sizeof(err)),
	        0);
	int calls = 0;
	/* flock conflicts between two open files of one process too */
	cr_assert_eq(ferry__lock_acquire(&l2, lock, -1, cancel_now, &calls, err,
	                                 sizeof(err)),
	             FERRY_EINTR);
	cr_assert_null(l2);
	ferry__lock_release(l);
	cr_assert_eq(
	        ferry__lock_acquire(&l2, lock, 0, NULL, NULL, err, sizeof(err)),
	        0);
	ferry__lock_release(l2);
	free(lock);
	free(d);
}
