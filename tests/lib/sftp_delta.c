/* Delta uploads (ferry__sftp_upload with base): the new file built on the
 * server from the old one by copy-data plus the written pieces, against a
 * real OpenSSH sftp-server child; and every way it falls back to writing
 * every byte. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <fcntl.h>
#include <unistd.h>

#include "alloc.h"
#include "fixture.h"
#include "os.h"
#include "sftp.h"
#include "sftp_helpers.h"
#include "sftp_int.h"

#define MiB        (1u << 20)
#define BASE_SIZE  (4 * MiB)
#define BASE_MTIME 1600000000u
#define INSERT     1000u        /* bytes inserted at the start */
#define CHANGED    (2 * MiB)    /* old offset of the changed range */
#define CHANGED_N  (64u * 1024) /* its length */

static ferry__sftp *sf;

static void setup(void)
{
	sh_dir_new("sftp-delta");
	/* A window that holds a whole delta: the round trips counted are the
	 * protocol's, no wait for window space among them. */
	ferry__sftp_opts so = {.window_bytes = (size_t)32 << 20};
	sf = sh_pipe(&so);
}

static void teardown(void)
{
	ferry__sftp_free(sf);
	sf = NULL;
	sh_dir_free();
}

TestSuite(sftp_delta, .init = setup, .fini = teardown, .timeout = 60);

/* The new content, the pieces that make it from the old, and what the
 * reader was asked. */
typedef struct delta_case {
	uint8_t *base, *content;
	size_t size;
	ferry__sftp_piece pieces[8];
	size_t npieces;
	uint64_t copy_bytes, write_bytes;
	uint64_t read_bytes;
	int read_outside;  /* a read outside the write pieces */
	const char *touch; /* the reader changes this file's mtime once */
	int touched;
} delta_case;

static void set_mtime(const char *path, uint32_t t)
{
	struct timeval tv[2] = {{t, 0}, {t, 0}};
	cr_assert_eq(utimes(path, tv), 0);
}

/* The old file on the remote: BASE_SIZE random bytes, BASE_MTIME. */
static void make_base(delta_case *c, const char *path)
{
	c->base = malloc(BASE_SIZE);
	cr_assert_not_null(c->base);
	sh_fill(c->base, BASE_SIZE, 42);
	cr_assert_eq(fx_write_file(path, c->base, BASE_SIZE, 0644), 0);
	set_mtime(path, BASE_MTIME);
}

static void add_piece(delta_case *c, uint64_t off, uint64_t len,
                      uint64_t base_off, int copy)
{
	ferry__sftp_piece *p = &c->pieces[c->npieces++];
	p->off = off;
	p->len = len;
	p->base_off = base_off;
	p->copy = copy;
	if (copy)
		c->copy_bytes += len;
	else
		c->write_bytes += len;
}

/* INSERT new bytes, the old file with CHANGED_N bytes at CHANGED
 * replaced.  The first copy is given as two adjacent pieces (merged into
 * one copy-data). */
static void make_case(delta_case *c)
{
	c->size = INSERT + BASE_SIZE;
	c->content = malloc(c->size);
	cr_assert_not_null(c->content);
	sh_fill(c->content, INSERT, 7);
	memcpy(c->content + INSERT, c->base, BASE_SIZE);
	sh_fill(c->content + INSERT + CHANGED, CHANGED_N, 8);
	add_piece(c, 0, INSERT, 0, 0);
	add_piece(c, INSERT, MiB, 0, 1);
	add_piece(c, INSERT + MiB, CHANGED - MiB, MiB, 1);
	add_piece(c, INSERT + CHANGED, CHANGED_N, 0, 0);
	add_piece(c, INSERT + CHANGED + CHANGED_N,
	          BASE_SIZE - CHANGED - CHANGED_N, CHANGED + CHANGED_N, 1);
}

static void free_case(delta_case *c)
{
	free(c->base);
	free(c->content);
}

static int case_read(void *rctx, void *buf, size_t n, uint64_t off)
{
	delta_case *c = rctx;
	int inside = 0;
	for (size_t i = 0; i < c->npieces; i++) {
		const ferry__sftp_piece *p = &c->pieces[i];
		if (!p->copy && off >= p->off && off + n <= p->off + p->len)
			inside = 1;
	}
	if (!inside)
		c->read_outside = 1;
	c->read_bytes += n;
	cr_assert_leq(off + n, c->size);
	memcpy(buf, c->content + off, n);
	if (c->touch && !c->touched) {
		/* After the LSTAT, before the FSTATs of the handle. */
		c->touched = 1;
		set_mtime(c->touch, BASE_MTIME + 1);
	}
	return 0;
}

static ferry__sftp_upload_opts case_opts(delta_case *c)
{
	ferry__sftp_upload_opts o = {.path = P(".new.ferry-tmp"),
	                             .rename_to = P("new"),
	                             .read = case_read,
	                             .rctx = c,
	                             .size = c->size,
	                             .has_attrs = 1,
	                             .remove_on_error = 1,
	                             .base = P("old"),
	                             .base_size = BASE_SIZE,
	                             .base_mtime = BASE_MTIME,
	                             .pieces = c->pieces,
	                             .npieces = c->npieces};
	o.attrs.flags = FERRY__ATTR_ACMODTIME;
	o.attrs.atime = o.attrs.mtime = 1700000000;
	return o;
}

/* The final file holds the new content, has the mtime asked, the temp is
 * gone. */
static void check_result(const delta_case *c)
{
	size_t n = 0;
	char *got = fx_read_file(P("new"), &n);
	cr_assert_not_null(got);
	cr_assert_eq(n, c->size);
	cr_assert(!memcmp(got, c->content, n), "the content differs");
	free(got);
	struct stat st;
	cr_assert_eq(stat(P("new"), &st), 0);
	cr_assert_eq(st.st_mtime, 1700000000);
	cr_assert_neq(access(P(".new.ferry-tmp"), F_OK), 0);
}

/* A fallback: every byte written and read, nothing copied. */
static void check_fallback(const delta_case *c,
                           const ferry__sftp_upload_result *r, const char *why)
{
	check_result(c);
	cr_assert(r->renamed);
	cr_assert(r->delta_fallback);
	cr_assert_not_null(r->delta_why);
	cr_assert(strstr(r->delta_why, why), "%s", r->delta_why);
	cr_assert_eq(r->copied, 0);
	cr_assert_eq(r->bytes, c->size);
}

Test(sftp_delta, copies_the_old_file_in_four_round_trips)
{
	delta_case c = {0};
	make_base(&c, P("old"));
	make_case(&c);
	ferry__sftp_upload_opts o = case_opts(&c);
	o.fsync = 1;
	ferry__sftp_stats s0, s1;
	ferry__sftp_stats_get(sf, &s0);
	uint64_t rt0 = ferry__sftp_round_trips(sf);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	uint64_t rts = ferry__sftp_round_trips(sf) - rt0;
	ferry__sftp_stats_get(sf, &s1);
	fprintf(stderr,
	        "[sftp delta] %zu bytes: %llu copied, %llu written, %llu "
	        "round trips, %llu requests\n",
	        c.size, (unsigned long long)r.copied,
	        (unsigned long long)r.bytes, (unsigned long long)rts,
	        (unsigned long long)(s1.requests - s0.requests));
	cr_assert_eq(rts, 4);
	cr_assert_eq(r.gen - rt0, 4);
	check_result(&c);
	cr_assert(r.renamed);
	cr_assert(r.fsynced);
	cr_assert(!r.delta_fallback, "%s", r.delta_why);
	cr_assert_null(r.delta_why);
	cr_assert_eq(r.copied, c.copy_bytes);
	cr_assert_eq(r.bytes, c.write_bytes);
	cr_assert_eq(c.read_bytes, c.write_bytes);
	cr_assert(!c.read_outside);
	cr_assert_eq(sf->slots_used, 0);
	/* The old file is untouched. */
	size_t n;
	char *old = fx_read_file(P("old"), &n);
	cr_assert_eq(n, BASE_SIZE);
	cr_assert(!memcmp(old, c.base, n));
	free(old);
	free_case(&c);
}

/* A small window and big write pieces: the generator still makes WRITEs
 * when the base's OPEN answers; the copies and the temp's CLOSE go
 * behind every one of them. */
Test(sftp_delta, writes_still_generated_when_the_base_opens)
{
	ferry__sftp_opts so = {.window_bytes = 96 * 1024, .max_write = 32768};
	ferry__sftp *small = sh_pipe(&so);
	delta_case c = {0};
	make_base(&c, P("old"));
	uint64_t ins = 3 * MiB; /* inserted at the start */
	c.size = ins + BASE_SIZE;
	c.content = malloc(c.size);
	cr_assert_not_null(c.content);
	sh_fill(c.content, ins, 11);
	memcpy(c.content + ins, c.base, BASE_SIZE);
	add_piece(&c, 0, ins, 0, 0);
	add_piece(&c, ins, BASE_SIZE - MiB, 0, 1);
	sh_fill(c.content + ins + BASE_SIZE - MiB, MiB, 12);
	add_piece(&c, ins + BASE_SIZE - MiB, MiB, 0, 0);
	ferry__sftp_upload_opts o = case_opts(&c);
	uint64_t rt0 = ferry__sftp_round_trips(small);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(small, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(small));
	check_result(&c);
	cr_assert(!r.delta_fallback, "%s", r.delta_why);
	cr_assert_eq(r.copied, c.copy_bytes);
	cr_assert_eq(r.bytes, c.write_bytes);
	cr_assert(!c.read_outside);
	/* Each wait for the window is a wait for the server (4 without). */
	uint64_t rts = ferry__sftp_round_trips(small) - rt0;
	cr_assert_gt(rts, 4, "%llu round trips", (unsigned long long)rts);
	ferry__sftp_stats st;
	ferry__sftp_stats_get(small, &st);
	cr_assert_gt(st.window_waits, 0);
	ferry__sftp_free(small);
	free_case(&c);
}

/* The server dies in the middle of a delta: done once, with the error. */
Test(sftp_delta, server_dies_during_the_writes)
{
	delta_case c = {0};
	make_base(&c, P("old"));
	make_case(&c);
	sh_killer k = {.pid = ferry__sftp_pipe_pid(sf), .at = 0};
	ferry__sftp_upload_opts o = case_opts(&c);
	o.read = sh_kill_reader;
	o.rctx = &k;
	ferry__sftp_upload_result r;
	int rc = ferry__sftp_upload_wait(sf, &o, &r);
	cr_assert(k.killed);
	cr_assert_neq(rc, 0);
	cr_assert(!r.renamed);
	cr_assert_neq(access(P("new"), F_OK), 0);
	free_case(&c);
}

static int fail_read(void *rctx, void *buf, size_t n, uint64_t off)
{
	(void)rctx;
	(void)buf;
	(void)n;
	(void)off;
	return FERRY_EIO;
}

/* A failing reader: the temp removed, both handles given back. */
Test(sftp_delta, read_failure_closes_both_handles)
{
	delta_case c = {0};
	make_base(&c, P("old"));
	make_case(&c);
	ferry__sftp_upload_opts o = case_opts(&c);
	o.read = fail_read;
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EIO);
	cr_assert_str_eq(r.step, "read");
	cr_assert(r.removed);
	cr_assert_eq(sf->slots_used, 0);
	cr_assert_eq(sf->delta_waiting, 0);
	cr_assert_neq(access(P(".new.ferry-tmp"), F_OK), 0);
	cr_assert_neq(access(P("new"), F_OK), 0);
	free_case(&c);
}

Test(sftp_delta, old_file_with_another_mtime_is_not_used)
{
	delta_case c = {0};
	make_base(&c, P("old"));
	make_case(&c);
	set_mtime(P("old"), BASE_MTIME - 5);
	ferry__sftp_upload_opts o = case_opts(&c);
	uint64_t rt0 = ferry__sftp_round_trips(sf);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	/* No extra round trip: the plain path behind the first flight. */
	cr_assert_eq(ferry__sftp_round_trips(sf) - rt0, 3);
	check_fallback(&c, &r, "size or mtime");
	cr_assert_eq(c.read_bytes, c.size);
	free_case(&c);
}

Test(sftp_delta, old_file_of_another_size_is_not_used)
{
	delta_case c = {0};
	make_base(&c, P("old"));
	make_case(&c);
	cr_assert_eq(truncate(P("old"), BASE_SIZE - 1), 0);
	set_mtime(P("old"), BASE_MTIME);
	ferry__sftp_upload_opts o = case_opts(&c);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	check_fallback(&c, &r, "size or mtime");
	free_case(&c);
}

Test(sftp_delta, old_file_a_fifo_is_never_opened)
{
	delta_case c = {0};
	make_base(&c, P("elsewhere"));
	make_case(&c);
	cr_assert_eq(mkfifo(P("old"), 0644), 0);
	ferry__sftp_upload_opts o = case_opts(&c);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	check_fallback(&c, &r, "not a regular file");
	free_case(&c);
}

Test(sftp_delta, old_file_missing)
{
	delta_case c = {0};
	make_base(&c, P("elsewhere"));
	make_case(&c);
	ferry__sftp_upload_opts o = case_opts(&c);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	check_fallback(&c, &r, "gone");
	free_case(&c);
}

Test(sftp_delta, server_without_copy_data)
{
	ferry__sftp_opts so = {.ignore_ext = FERRY__EXT_COPY_DATA,
	                       .window_bytes = (size_t)32 << 20};
	ferry__sftp *nc = sh_pipe(&so);
	cr_assert(!ferry__sftp_has(nc, FERRY__EXT_COPY_DATA));
	delta_case c = {0};
	make_base(&c, P("old"));
	make_case(&c);
	ferry__sftp_upload_opts o = case_opts(&c);
	uint64_t rt0 = ferry__sftp_round_trips(nc);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(nc, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(nc));
	cr_assert_eq(ferry__sftp_round_trips(nc) - rt0, 3);
	check_fallback(&c, &r, "no copy-data");
	ferry__sftp_free(nc);
	free_case(&c);
}

Test(sftp_delta, server_with_one_handle)
{
	ferry__sftp_opts so = {.max_handles = 1};
	ferry__sftp *one = sh_pipe(&so);
	delta_case c = {0};
	make_base(&c, P("old"));
	make_case(&c);
	ferry__sftp_upload_opts o = case_opts(&c);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(one, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(one));
	check_fallback(&c, &r, "fewer than 2");
	ferry__sftp_free(one);
	free_case(&c);
}

/* The old file changes after its LSTAT (the reader touches it while the
 * first writes are made): the FSTATs on its handle see it, the temp is
 * made again with every byte. */
Test(sftp_delta, old_file_changed_after_lstat_starts_again)
{
	delta_case c = {0};
	make_base(&c, P("old"));
	make_case(&c);
	c.touch = P("old");
	ferry__sftp_upload_opts o = case_opts(&c);
	o.has_perm = 1;
	o.perm = 0600;
	o.confirm_perm = 1;
	uint64_t rt0 = ferry__sftp_round_trips(sf);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	cr_assert(c.touched);
	check_fallback(&c, &r, "while it was copied");
	/* 3 of the delta, REMOVE + OPEN, writes + CLOSE, rename. */
	cr_assert_eq(ferry__sftp_round_trips(sf) - rt0, 6);
	struct stat st;
	cr_assert_eq(stat(P("new"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(sf->slots_used, 0);
	free_case(&c);
}

/* Nothing to write: the copies alone, no generator, the reader unused. */
Test(sftp_delta, only_copies)
{
	delta_case c = {0};
	make_base(&c, P("old"));
	c.size = BASE_SIZE - 10;
	c.content = malloc(c.size);
	memcpy(c.content, c.base + 10, c.size);
	add_piece(&c, 0, c.size, 10, 1);
	ferry__sftp_upload_opts o = case_opts(&c);
	uint64_t rt0 = ferry__sftp_round_trips(sf);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	cr_assert_eq(ferry__sftp_round_trips(sf) - rt0, 4);
	check_result(&c);
	cr_assert(!r.delta_fallback, "%s", r.delta_why);
	cr_assert_eq(r.copied, c.size);
	cr_assert_eq(r.bytes, 0);
	cr_assert_eq(c.read_bytes, 0);
	free_case(&c);
}

Test(sftp_delta, no_copy_piece_is_a_plain_upload)
{
	delta_case c = {0};
	make_base(&c, P("old"));
	c.size = 5000;
	c.content = malloc(c.size);
	sh_fill(c.content, c.size, 9);
	add_piece(&c, 0, 3000, 0, 0);
	add_piece(&c, 3000, 2000, 0, 0);
	ferry__sftp_upload_opts o = case_opts(&c);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	check_result(&c);
	cr_assert(!r.delta_fallback);
	cr_assert_eq(r.copied, 0);
	cr_assert_eq(r.bytes, c.size);
	free_case(&c);
}

Test(sftp_delta, bad_pieces_are_refused)
{
	delta_case c = {0};
	make_base(&c, P("old"));
	make_case(&c);
	ferry__sftp_upload_result r;
	ferry__sftp_upload_opts o = case_opts(&c);
	/* A copy beyond the old file's end (copy-data would copy less). */
	c.pieces[4].base_off += 1;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EINVALID);
	c.pieces[4].base_off -= 1;
	/* A gap. */
	c.pieces[1].off += 1;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EINVALID);
	c.pieces[1].off -= 1;
	/* Not up to size, and beyond it. */
	o.size = c.size + 1;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EINVALID);
	o.size = c.size - 1;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EINVALID);
	o.size = c.size;
	/* An empty piece. */
	ferry__sftp_piece empty[3] = {{0, INSERT, 0, 0},
	                              {INSERT, 0, 0, 1},
	                              {INSERT, BASE_SIZE, 0, 1}};
	o.pieces = empty;
	o.npieces = 3;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EINVALID);
	o.pieces = c.pieces;
	o.npieces = c.npieces;
	/* No reader, memory. */
	o.read = NULL;
	o.data = c.content;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EINVALID);
	o.data = NULL;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EINVALID);
	o.read = case_read;
	/* Pieces without a base. */
	o.base = NULL;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EINVALID);
	o.base = P("old");
	/* Nothing was created; the good one goes. */
	cr_assert_neq(access(P(".new.ferry-tmp"), F_OK), 0);
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	check_result(&c);
	cr_assert_eq(r.copied, c.copy_bytes);
	free_case(&c);
}

/* Many deltas at once on a server of 4 handles: none waits forever for
 * its second handle (those beyond the limit write every byte). */
#define MANY 40
typedef struct many_ctx {
	int done, failed, fallbacks;
	int quiet; /* failures are expected */
	uint64_t copied;
} many_ctx;

static void many_done(void *ctx, const ferry__sftp_upload_result *r)
{
	many_ctx *m = ctx;
	m->done++;
	if (r->error) {
		m->failed++;
		if (!m->quiet)
			fprintf(stderr, "%s\n", r->message);
	}
	m->fallbacks += r->delta_fallback;
	m->copied += r->copied;
}

/* 100 'x', the old file (rctx, 8192 bytes), 100 'x'. */
static int many_read(void *rctx, void *buf, size_t n, uint64_t off)
{
	const uint8_t *old = rctx;
	uint8_t *p = buf;
	for (size_t i = 0; i < n; i++) {
		uint64_t at = off + i;
		p[i] = at < 100 || at >= 100 + 8192 ? 'x' : old[at - 100];
	}
	return 0;
}

Test(sftp_delta, many_at_once_on_few_handles)
{
	ferry__sftp_opts so = {.max_handles = 4};
	ferry__sftp *few = sh_pipe(&so);
	char old[8192];
	sh_fill(old, sizeof(old), 3);
	many_ctx m = {0};
	/* new: 100 'x', the old file, 100 'x' */
	ferry__sftp_piece pieces[3] = {{0, 100, 0, 0},
	                               {100, sizeof(old), 0, 1},
	                               {100 + sizeof(old), 100, 0, 0}};
	for (int i = 0; i < MANY; i++) {
		cr_assert_eq(
		        fx_write_file(P("old%d", i), old, sizeof(old), 0644),
		        0);
		set_mtime(P("old%d", i), BASE_MTIME);
	}
	for (int i = 0; i < MANY; i++) {
		ferry__sftp_upload_opts o = {.path = P(".new%d.tmp", i),
		                             .rename_to = P("new%d", i),
		                             .read = many_read,
		                             .rctx = old,
		                             .size = sizeof(old) + 200,
		                             .base = P("old%d", i),
		                             .base_size = sizeof(old),
		                             .base_mtime = BASE_MTIME,
		                             .pieces = pieces,
		                             .npieces = 3,
		                             .done = many_done,
		                             .ctx = &m};
		cr_assert_eq(ferry__sftp_upload(few, &o), 0);
	}
	cr_assert_eq(ferry__sftp_run(few, NULL, NULL, ferry__now_ms() + 30000),
	             0, "%s", ferry__sftp_errmsg(few));
	fprintf(stderr,
	        "[sftp delta] %d of %d at once on 4 handles wrote every byte\n",
	        m.fallbacks, MANY);
	cr_assert_eq(m.done, MANY);
	cr_assert_eq(m.failed, 0);
	cr_assert_eq(m.fallbacks, 0);
	cr_assert_eq(few->slots_used, 0);
	cr_assert_eq(few->delta_waiting, 0);
	cr_assert_null(few->delta_first);
	cr_assert_eq(m.copied, (uint64_t)(MANY - m.fallbacks) * sizeof(old));
	for (int i = 0; i < MANY; i++) {
		size_t n;
		char *got = fx_read_file(P("new%d", i), &n);
		cr_assert_eq(n, sizeof(old) + 200);
		cr_assert(!memcmp(got + 100, old, sizeof(old)));
		cr_assert_eq(got[0], 'x');
		cr_assert_eq(got[n - 1], 'x');
		free(got);
	}
	ferry__sftp_free(few);
}

/* Deltas held back for a handle when the client goes away: each is told
 * once. */
Test(sftp_delta, held_back_deltas_end_with_the_client)
{
	ferry__sftp_opts so = {.max_handles = 3};
	ferry__sftp *few = sh_pipe(&so);
	char old[4096];
	sh_fill(old, sizeof(old), 3);
	many_ctx m = {.quiet = 1};
	ferry__sftp_piece pieces[3] = {{0, 100, 0, 0},
	                               {100, sizeof(old), 0, 1},
	                               {100 + sizeof(old), 100, 0, 0}};
	cr_assert_eq(fx_write_file(P("old"), old, sizeof(old), 0644), 0);
	set_mtime(P("old"), BASE_MTIME);
	for (int i = 0; i < MANY; i++) {
		ferry__sftp_upload_opts o = {.path = P(".new%d.tmp", i),
		                             .rename_to = P("new%d", i),
		                             .read = many_read,
		                             .rctx = old,
		                             .size = sizeof(old) + 200,
		                             .base = P("old"),
		                             .base_size = sizeof(old),
		                             .base_mtime = BASE_MTIME,
		                             .pieces = pieces,
		                             .npieces = 3,
		                             .done = many_done,
		                             .ctx = &m};
		cr_assert_eq(ferry__sftp_upload(few, &o), 0);
	}
	cr_assert_eq(ferry__sftp_pending(few) >= MANY, 1);
	ferry__sftp_free(few);
	cr_assert_eq(m.done, MANY);
	cr_assert_eq(m.failed, MANY);
}
