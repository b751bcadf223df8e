/* Tests of sync/chunk.c: chunk bounds on random and adversarial data,
 * streaming, chunk hashes, stability under an insertion, and the fd pass
 * that hashes the whole file as ferry__hash_fd does. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "fixture.h"
#include "hash.h"
#include "sync/chunk.h"
#include "sync_test.h"

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n + 8);
	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rng_next(&seed);
		memcpy(p + i, &v, 8);
	}
	return p;
}

/* The chunk list of p[0..n) in one call. */
static ferry__chunker chunk_all(const void *p, size_t n)
{
	ferry__chunker c;
	cr_assert_eq(ferry__chunker_init(&c), 0);
	cr_assert_eq(ferry__chunker_update(&c, p, n), 0);
	cr_assert_eq(ferry__chunker_final(&c), 0);
	return c;
}

/* Bounds, contiguity, total and hashes of the list of p[0..n). */
static void check_list(const ferry__chunker *c, const uint8_t *p, size_t n)
{
	uint64_t off = 0;
	if (n == 0)
		cr_assert_eq(c->n, 0);
	for (size_t i = 0; i < c->n; i++) {
		const ferry__chunk *k = &c->v[i];
		cr_assert_eq(k->off, off, "chunk %zu", i);
		cr_assert(k->len >= 1 && k->len <= FERRY__CHUNK_MAX);
		if (i + 1 < c->n)
			cr_assert(k->len >= FERRY__CHUNK_MIN, "chunk %zu: %u",
			          i, k->len);
		ferry__hash h;
		ferry__hash_buf(&h, p + k->off, k->len);
		cr_assert(ferry__hash_eq(&h, &k->hash), "chunk %zu hash", i);
		off += k->len;
	}
	cr_assert_eq(off, n);
}

static void assert_same_list(const ferry__chunker *a, const ferry__chunker *b)
{
	cr_assert_eq(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		cr_assert_eq(a->v[i].off, b->v[i].off, "chunk %zu", i);
		cr_assert_eq(a->v[i].len, b->v[i].len, "chunk %zu", i);
		cr_assert(ferry__hash_eq(&a->v[i].hash, &b->v[i].hash));
	}
}

Test(chunk, bounds_and_average_on_64_mib_of_random_data)
{
	size_t n = (size_t)64 << 20;
	uint8_t *p = random_bytes(n, 1);
	ferry__chunker c = chunk_all(p, n);
	check_list(&c, p, n);
	double avg = (double)n / (double)c.n;
	cr_assert(avg >= 40 * 1024 && avg <= 100 * 1024, "average %.0f", avg);
	size_t at_max = 0;
	for (size_t i = 0; i + 1 < c.n; i++)
		at_max += c.v[i].len == FERRY__CHUNK_MAX;
	/* Cut by content, not by the forced maximum (e^-3.75: ~2%). */
	cr_assert(at_max * 20 < c.n, "%zu of %zu at the maximum", at_max, c.n);
	cr_log_info("64 MiB random: %zu chunks, average %.1f KiB, %zu at max",
	            c.n, avg / 1024, at_max);
	ferry__chunker_free(&c);
	free(p);
}

/* The reference: the gear from each chunk's first byte, every byte. */
static size_t naive_cuts(const uint8_t *p, size_t n, uint64_t *ends, size_t cap,
                         const uint64_t *table)
{
	size_t k = 0;
	uint64_t g = 0;
	uint32_t len = 0;
	for (size_t i = 0; i < n; i++) {
		g = (g << 1) + table[p[i]];
		len++;
		if ((len >= FERRY__CHUNK_MIN && !(g & 0xffff000000000000ull)) ||
		    len == FERRY__CHUNK_MAX) {
			cr_assert(k < cap);
			ends[k++] = i + 1;
			g = 0;
			len = 0;
		}
	}
	if (len)
		ends[k++] = n;
	return k;
}

Test(chunk, cuts_are_those_of_the_gear_from_each_chunk_start)
{
	/* The table as chunk.c documents it: splitmix64 from "ferrycdc". */
	uint64_t table[256], seed = 0x6665727279636463ull;
	for (int i = 0; i < 256; i++)
		table[i] = rng_next(&seed);
	size_t n = (size_t)8 << 20;
	uint8_t *p = random_bytes(n, 7);
	/* some runs of zeros for forced cuts */
	memset(p + (1 << 20), 0, 600u << 10);
	size_t cap = n / FERRY__CHUNK_MIN + 2;
	uint64_t *ends = malloc(cap * sizeof(*ends));
	size_t k = naive_cuts(p, n, ends, cap, table);
	ferry__chunker c = chunk_all(p, n);
	check_list(&c, p, n);
	cr_assert_eq(c.n, k);
	for (size_t i = 0; i < k; i++)
		cr_assert_eq(c.v[i].off + c.v[i].len, ends[i], "chunk %zu", i);
	ferry__chunker_free(&c);
	free(ends);
	free(p);
}

Test(chunk, all_zeros_cut_at_the_maximum)
{
	size_t n = (size_t)5 * FERRY__CHUNK_MAX + 12345;
	uint8_t *p = calloc(1, n);
	ferry__chunker c = chunk_all(p, n);
	check_list(&c, p, n);
	cr_assert_eq(c.n, 6);
	for (size_t i = 0; i < 5; i++)
		cr_assert_eq(c.v[i].len, FERRY__CHUNK_MAX);
	cr_assert_eq(c.v[5].len, 12345);
	ferry__chunker_free(&c);
	free(p);
}

Test(chunk, repeating_short_patterns_keep_the_bounds)
{
	size_t n = (size_t)8 << 20;
	uint8_t *p = malloc(n);
	const char *pats[] = {"ab", "abcdefg", "\xff", "0123456789abcdef0"};
	for (size_t k = 0; k < sizeof(pats) / sizeof(pats[0]); k++) {
		size_t pl = strlen(pats[k]);
		for (size_t i = 0; i < n; i++)
			p[i] = (uint8_t)pats[k][i % pl];
		ferry__chunker c = chunk_all(p, n);
		check_list(&c, p, n);
		ferry__chunker_free(&c);
	}
	free(p);
}

Test(chunk, empty_and_tiny_inputs)
{
	ferry__chunker c = chunk_all("", 0);
	cr_assert_eq(c.n, 0);
	ferry__chunker_free(&c);
	c = chunk_all("x", 1);
	check_list(&c, (const uint8_t *)"x", 1);
	cr_assert_eq(c.n, 1);
	ferry__chunker_free(&c);
}

Test(chunk, streaming_in_random_pieces_gives_the_same_list)
{
	size_t n = (size_t)12 << 20;
	uint8_t *p = random_bytes(n, 2);
	ferry__chunker whole = chunk_all(p, n);
	check_list(&whole, p, n);
	uint64_t s = 99;
	for (int round = 0; round < 4; round++) {
		ferry__chunker c;
		cr_assert_eq(ferry__chunker_init(&c), 0);
		size_t off = 0;
		while (off < n) {
			uint64_t r = rng_next(&s);
			/* mostly small pieces (bytes around every phase),
			 * some large */
			size_t k = r & 1 ? (size_t)(r >> 8) % 200
			                 : (size_t)(r >> 8) % (600u << 10);
			if (k > n - off)
				k = n - off;
			cr_assert_eq(ferry__chunker_update(&c, p + off, k), 0);
			off += k;
		}
		cr_assert_eq(ferry__chunker_final(&c), 0);
		assert_same_list(&whole, &c);
		ferry__chunker_free(&c);
	}
	ferry__chunker_free(&whole);
	free(p);
}

static int find_hash(const ferry__chunker *c, const ferry__hash *h)
{
	for (size_t i = 0; i < c->n; i++)
		if (ferry__hash_eq(&c->v[i].hash, h))
			return 1;
	return 0;
}

Test(chunk, one_byte_inserted_at_the_start_moves_at_most_two_chunks)
{
	size_t n = (size_t)16 << 20;
	uint8_t *p = random_bytes(n + 1, 3);
	ferry__chunker a = chunk_all(p + 1, n);
	p[0] = 0x5a;
	ferry__chunker b = chunk_all(p, n + 1);
	check_list(&b, p, n + 1);
	size_t lost = 0;
	for (size_t i = 0; i < a.n; i++)
		lost += !find_hash(&b, &a.v[i].hash);
	cr_assert(lost <= 2, "%zu of %zu chunks lost", lost, a.n);
	/* and in the middle */
	size_t mid = n / 2;
	uint8_t *q = malloc(n + 1);
	memcpy(q, p + 1, mid);
	q[mid] = 0xa5;
	memcpy(q + mid + 1, p + 1 + mid, n - mid);
	ferry__chunker m = chunk_all(q, n + 1);
	lost = 0;
	for (size_t i = 0; i < a.n; i++)
		lost += !find_hash(&m, &a.v[i].hash);
	cr_assert(lost <= 2, "%zu of %zu chunks lost", lost, a.n);
	ferry__chunker_free(&a);
	ferry__chunker_free(&b);
	ferry__chunker_free(&m);
	free(p);
	free(q);
}

Test(chunk, fd_pass_hashes_as_hash_fd_and_chunks_as_the_chunker)
{
	char *d = st_dir("chunk");
	char *path = st_path(d, "f");
	size_t sizes[] = {0,
	                  1,
	                  FERRY__CHUNK_MIN + 3,
	                  FERRY__HASH_BUFSIZE - 1,
	                  FERRY__HASH_BUFSIZE,
	                  FERRY__HASH_BUFSIZE + 1,
	                  3 * FERRY__HASH_BUFSIZE + 5};
	size_t big = sizes[sizeof(sizes) / sizeof(sizes[0]) - 1];
	uint8_t *data = random_bytes(big, 4);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		cr_assert_eq(fx_write_file(path, data, n, 0644), 0);
		ferry__chunker want = chunk_all(data, n);
		size_t bufs[] = {65536, 0, 1000};
		for (int b = 0; b < 3; b++) {
			ferry__hash h1, h2;
			uint64_t n1 = 0, n2 = 0;
			void *buf = bufs[b] ? malloc(bufs[b]) : NULL;
			int fd = open(path, O_RDONLY);
			cr_assert_eq(ferry__hash_fd(&h1, &n1, fd, buf, bufs[b]),
			             0);
			close(fd);
			fd = open(path, O_RDONLY);
			ferry__chunk *v = (ferry__chunk *)1;
			uint32_t nv = 7;
			cr_assert_eq(ferry__chunk_fd(&h2, &n2, fd, buf, bufs[b],
			                             &v, &nv),
			             0);
			close(fd);
			cr_assert_eq(n1, n);
			cr_assert_eq(n2, n);
			cr_assert(ferry__hash_eq(&h1, &h2), "size %zu buf %zu",
			          n, bufs[b]);
			cr_assert_eq(nv, want.n);
			if (n == 0)
				cr_assert_null(v);
			for (uint32_t i = 0; i < nv; i++) {
				cr_assert_eq(v[i].off, want.v[i].off);
				cr_assert_eq(v[i].len, want.v[i].len);
				cr_assert(ferry__hash_eq(&v[i].hash,
				                         &want.v[i].hash));
			}
			ferry__free(v);
			/* no chunk list wanted: the hash alone */
			fd = open(path, O_RDONLY);
			cr_assert_eq(ferry__chunk_fd(&h2, NULL, fd, buf,
			                             bufs[b], NULL, NULL),
			             0);
			close(fd);
			cr_assert(ferry__hash_eq(&h1, &h2));
			free(buf);
		}
		ferry__chunker_free(&want);
	}
	/* a read error */
	ferry__hash h;
	ferry__chunk *v = NULL;
	uint32_t nv = 0;
	cr_assert_eq(ferry__chunk_fd(&h, NULL, -1, NULL, 0, &v, &nv),
	             FERRY_EIO);
	cr_assert_null(v);
	free(data);
	free(path);
	free(d);
}

Test(chunk, allocation_failures_are_clean)
{
	size_t n = (size_t)2 << 20;
	uint8_t *p = random_bytes(n, 5);
	char *d = st_dir("chunk-oom");
	char *path = st_path(d, "f");
	cr_assert_eq(fx_write_file(path, p, n, 0644), 0);
	int failed = 0;
	for (unsigned long k = 1; k < 40; k++) {
		ferry__hash h;
		ferry__chunk *v = NULL;
		uint32_t nv = 0;
		int fd = open(path, O_RDONLY);
		ferry__alloc_fail_at(k);
		int rc = ferry__chunk_fd(&h, NULL, fd, NULL, 0, &v, &nv);
		ferry__alloc_fail_at(0);
		close(fd);
		cr_assert(rc == 0 || rc == FERRY_ENOMEM);
		if (rc) {
			failed++;
			cr_assert_null(v);
			cr_assert_eq(nv, 0);
		}
		ferry__free(v);
	}
	cr_assert(failed > 0);
	ferry__chunker c;
	cr_assert_eq(ferry__chunker_init(&c), 0);
	ferry__alloc_fail_at(1);
	cr_assert_eq(ferry__chunker_update(&c, p, n), FERRY_ENOMEM);
	ferry__alloc_fail_at(0);
	/* sticky */
	cr_assert_eq(ferry__chunker_update(&c, p, 1), FERRY_ENOMEM);
	cr_assert_eq(ferry__chunker_final(&c), FERRY_ENOMEM);
	ferry__chunker_free(&c);
	free(path);
	free(d);
	free(p);
}

Test(chunk, a_list_past_the_maximum_is_dropped)
{
	/* White-box: a chunker that already holds FERRY__CHUNKS_MAX chunks
	 * (faked: 2^24 real ones need 256 GiB of input). */
	ferry__chunker c;
	cr_assert_eq(ferry__chunker_init(&c), 0);
	c.v = ferry__malloc(sizeof(*c.v));
	c.n = c.cap = FERRY__CHUNKS_MAX;
	uint8_t *p = calloc(1, 3 * FERRY__CHUNK_MAX);
	cr_assert_eq(ferry__chunker_update(&c, p, 3 * FERRY__CHUNK_MAX), 0);
	cr_assert_null(c.v);
	cr_assert_eq(c.n, (size_t)FERRY__CHUNKS_MAX + 1);
	cr_assert_eq(ferry__chunker_update(&c, p, 5), 0);
	cr_assert_eq(ferry__chunker_final(&c), 0);
	cr_assert_null(c.v);
	cr_assert_eq(c.n, (size_t)FERRY__CHUNKS_MAX + 1);
	ferry__chunker_free(&c);
	free(p);
}
