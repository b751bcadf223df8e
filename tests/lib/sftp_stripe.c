/* Striped uploads: extra SFTP clients on their own channels of one session
 * (ferry__session_sftp_streams), each writing a range of one file
 * (ferry__sftp_write_range). */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "session.h"
#include "sftp.h"
#include "sftp_helpers.h"
#include "sftp_test.h"

static void setup(void)
{
	sh_dir_new("sftp-stripe");
}

static void teardown(void)
{
	sh_dir_free();
}

TestSuite(sftp_stripe, .init = setup, .fini = teardown, .timeout = 240);

typedef struct range_res {
	int called, err;
	char msg[512];
	uint64_t bytes;
} range_res;

static void range_done(void *ctx, int err, const char *msg, uint64_t bytes)
{
	range_res *r = ctx;
	r->called++;
	r->err = err;
	r->bytes = bytes;
	snprintf(r->msg, sizeof(r->msg), "%s", msg);
}

typedef struct all_ctx {
	range_res *res;
	size_t n;
} all_ctx;

static int all_called(void *ctx)
{
	all_ctx *a = ctx;
	for (size_t i = 0; i < a->n; i++)
		if (!a->res[i].called)
			return 0;
	return 1;
}

/* Reads the local file; fails (FERRY_EIO) at fail_at when set. */
typedef struct file_reader {
	int fd;
	uint64_t fail_at; /* 0: never */
} file_reader;

static int file_read(void *rctx, void *buf, size_t n, uint64_t off)
{
	file_reader *fr = rctx;
	if (fr->fail_at && off + n > fr->fail_at)
		return FERRY_EIO;
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(fr->fd, (char *)buf + done, n - done,
		                  (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return FERRY_EIO;
		done += (size_t)r;
	}
	return 0;
}

static ferry__sftp *main_of(ferry_session *s)
{
	ferry__sftp *sf = NULL;
	int rc = ferry__session_sftp(s, &sf);
	cr_assert_eq(rc, 0, "%s: %s", ferry_strerror(rc),
	             ferry_session_errmsg(s));
	return sf;
}

static void streams_of(ferry_session *s, unsigned n, ferry__sftp **out)
{
	int rc = ferry__session_sftp_streams(s, n, out);
	cr_assert_eq(rc, 0, "%s: %s", ferry_strerror(rc),
	             ferry_session_errmsg(s));
}

#define BIG ((size_t)24 << 20)

Test(sftp_stripe, four_channels_write_one_file)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry__sftp *sf[4];
	sf[0] = main_of(s);
	streams_of(s, 3, sf + 1);
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < i; k++)
			cr_assert_neq(sf[i], sf[k]);

	char *src = sh_make_file(BIG, 7);
	file_reader fr = {open(src, O_RDONLY), 0};
	cr_assert_geq(fr.fd, 0);
	char tmp[1024], final[1024];
	snprintf(tmp, sizeof(tmp), "%s", P(".big.ferry-tmp"));
	snprintf(final, sizeof(final), "%s", P("big"));

	ferry__sftp_attrs a;
	memset(&a, 0, sizeof(a));
	a.flags = FERRY__ATTR_PERMISSIONS;
	a.perm = 0600;
	ferry__sftp_handle h;
	cr_assert_eq(ferry__sftp_open_wait(sf[0], tmp,
	                                   FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                           FERRY__FXF_EXCL,
	                                   &a, &h),
	             0, "%s", ferry_session_errmsg(s));

	/* Uneven ranges: the last one is not a multiple of max_write. */
	uint64_t cut[5] = {0, 5 << 20, 11 << 20, (17 << 20) + 12345, BIG};
	range_res res[4];
	memset(res, 0, sizeof(res));
	for (int i = 0; i < 4; i++)
		cr_assert_eq(ferry__sftp_write_range(
		                     sf[i], tmp, cut[i], cut[i + 1] - cut[i],
		                     file_read, &fr, range_done, &res[i]),
		             0);
	all_ctx all = {res, 4};
	/* The main client's loop moves every channel. */
	cr_assert_eq(ferry__sftp_run(sf[0], all_called, &all,
	                             ferry__now_ms() + 120000),
	             0, "%s", ferry_session_errmsg(s));
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(res[i].called, 1);
		cr_assert_eq(res[i].err, 0, "stream %d: %s", i, res[i].msg);
		cr_assert_eq(res[i].bytes, cut[i + 1] - cut[i]);
	}
	cr_assert_eq(ferry__sftp_close_wait(sf[0], &h), 0);
	cr_assert_eq(ferry__sftp_posix_rename_wait(sf[0], tmp, final), 0);
	cr_assert(sh_hash_eq(sh_hash_file(src), sh_hash_file(final)));
	struct stat st;
	cr_assert_eq(stat(final, &st), 0);
	cr_assert_eq(st.st_size, (off_t)BIG);
	cr_assert_eq(st.st_mode & 07777, 0600);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(ferry__sftp_pending(sf[i]), 0);
	close(fr.fd);
	free(src);
	ferry_session_close(s);
}

Test(sftp_stripe, missing_file_is_not_created)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry__sftp *st[1];
	streams_of(s, 1, st);
	file_reader fr = {open("/dev/zero", O_RDONLY), 0};
	range_res res;
	memset(&res, 0, sizeof(res));
	cr_assert_eq(ferry__sftp_write_range(st[0], P("missing"), 0, 1000,
	                                     file_read, &fr, range_done, &res),
	             0);
	all_ctx all = {&res, 1};
	cr_assert_eq(ferry__sftp_run(st[0], all_called, &all,
	                             ferry__now_ms() + 30000),
	             0);
	cr_assert_eq(res.called, 1);
	cr_assert_eq(res.err, FERRY_ENOTFOUND, "%d %s", res.err, res.msg);
	cr_assert_eq(res.bytes, 0);
	cr_assert(strstr(res.msg, "open ") == res.msg, "%s", res.msg);
	struct stat sb;
	cr_assert_eq(lstat(P("missing"), &sb), -1);
	/* The client is still usable. */
	cr_assert_not(ferry__sftp_dead(st[0]));
	cr_assert_eq(ferry__sftp_pending(st[0]), 0);
	close(fr.fd);
	ferry_session_close(s);
}

Test(sftp_stripe, streams_are_kept_with_the_session)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry__sftp *a[3], *b[3], *c[4];
	streams_of(s, 3, a);
	uint64_t rt = ferry_session_round_trips(s);
	streams_of(s, 3, b);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(a[i], b[i]);
	cr_assert_eq(ferry_session_round_trips(s), rt); /* no I/O */
	/* Fewer: the first ones; more: those and a new one. */
	streams_of(s, 2, c);
	cr_assert_eq(c[0], a[0]);
	cr_assert_eq(c[1], a[1]);
	streams_of(s, 4, c);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(c[i], a[i]);
	cr_assert(ferry__sftp_ready(c[3]));
	/* None of them is the shared client. */
	ferry__sftp *m = main_of(s);
	for (int i = 0; i < 4; i++)
		cr_assert_neq(c[i], m);
	cr_assert_eq(ferry__session_sftp_streams(s, 0, c), FERRY_EINVALID);
	ferry_session_close(s);
}

/* A read error on one stream stops its writes and closes its handle; the
 * other streams finish. */
Test(sftp_stripe, error_on_one_stream)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry__sftp *sf[3];
	sf[0] = main_of(s);
	streams_of(s, 2, sf + 1);
	char *src = sh_make_file((size_t)6 << 20, 9);
	file_reader ok = {open(src, O_RDONLY), 0};
	file_reader bad = {open(src, O_RDONLY), (uint64_t)3 << 20};
	char tmp[1024];
	snprintf(tmp, sizeof(tmp), "%s", P("partial"));
	ferry__sftp_handle h;
	cr_assert_eq(ferry__sftp_open_wait(sf[0], tmp,
	                                   FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                           FERRY__FXF_EXCL,
	                                   NULL, &h),
	             0);
	range_res res[3];
	memset(res, 0, sizeof(res));
	for (int i = 0; i < 3; i++) {
		uint64_t off = (uint64_t)i << 21;
		cr_assert_eq(ferry__sftp_write_range(
		                     sf[i], tmp, off, 2 << 20, file_read,
		                     i == 1 ? &bad : &ok, range_done, &res[i]),
		             0);
	}
	all_ctx all = {res, 3};
	cr_assert_eq(ferry__sftp_run(sf[0], all_called, &all,
	                             ferry__now_ms() + 60000),
	             0);
	cr_assert_eq(res[0].err, 0, "%s", res[0].msg);
	cr_assert_eq(res[2].err, 0, "%s", res[2].msg);
	cr_assert_eq(res[1].err, FERRY_EIO);
	cr_assert(strstr(res[1].msg, "read ") == res[1].msg, "%s", res[1].msg);
	cr_assert_lt(res[1].bytes, 2 << 20);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(res[i].called, 1);
		cr_assert_eq(ferry__sftp_pending(sf[i]), 0);
		cr_assert_not(ferry__sftp_dead(sf[i]));
	}
	cr_assert_eq(ferry__sftp_close_wait(sf[0], &h), 0);
	close(ok.fd);
	close(bad.fd);
	free(src);
	ferry_session_close(s);
}

/* Ranges submitted to streams still opening go out behind their INIT. */
Test(sftp_stripe, begin_without_waiting)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry__sftp *m = main_of(s);
	char *src = sh_make_file((size_t)3 << 20, 11);
	file_reader fr = {open(src, O_RDONLY), 0};
	char tmp[1024];
	snprintf(tmp, sizeof(tmp), "%s", P("early"));
	ferry__sftp_handle h;
	cr_assert_eq(ferry__sftp_open_wait(m, tmp,
	                                   FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                           FERRY__FXF_EXCL,
	                                   NULL, &h),
	             0);
	ferry__sftp *st[2];
	cr_assert_eq(ferry__session_sftp_streams_begin(s, 2, st), 0);
	cr_assert_not(ferry__sftp_ready(st[0]));
	range_res res[3];
	memset(res, 0, sizeof(res));
	ferry__sftp *by[3] = {m, st[0], st[1]};
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ferry__sftp_write_range(
		                     by[i], tmp, (uint64_t)i << 20, 1 << 20,
		                     file_read, &fr, range_done, &res[i]),
		             0);
	all_ctx all = {res, 3};
	cr_assert_eq(
	        ferry__sftp_run(m, all_called, &all, ferry__now_ms() + 60000),
	        0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(res[i].err, 0, "%s", res[i].msg);
	cr_assert_eq(ferry__sftp_close_wait(m, &h), 0);
	cr_assert(sh_hash_eq(sh_hash_file(src), sh_hash_file(tmp)));
	/* Now ready: the waiting call returns the same two. */
	ferry__sftp *again[2];
	streams_of(s, 2, again);
	cr_assert_eq(again[0], st[0]);
	cr_assert_eq(again[1], st[1]);
	close(fr.fd);
	free(src);
	ferry_session_close(s);
}

/* One stream's sftp-server killed mid-range: that range fails, the others
 * finish, nothing hangs; the next call replaces only the dead stream. */
Test(sftp_stripe, dead_stream)
{
	char cfg[2048];
	sh_killer k = {0, "", 2 << 20, 0};
	snprintf(k.pidfile, sizeof(k.pidfile), "%s/sftp.pid", sh_dir);
	/* Each channel's server writes its pid: the file ends up naming the
	 * last stream opened. */
	snprintf(cfg, sizeof(cfg),
	         "ForceCommand echo $$ > %s; exec " SFTP_SERVER "\n",
	         k.pidfile);
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, cfg), 0);
	ferry_session *s = fx_connect(&sv);
	ferry__sftp *sf[3];
	sf[0] = main_of(s);
	streams_of(s, 2, sf + 1);
	char tmp[1024];
	snprintf(tmp, sizeof(tmp), "%s", P("victim"));
	ferry__sftp_handle h;
	cr_assert_eq(ferry__sftp_open_wait(sf[0], tmp,
	                                   FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                           FERRY__FXF_EXCL,
	                                   NULL, &h),
	             0);
	range_res res[3];
	memset(res, 0, sizeof(res));
	uint64_t each = (uint64_t)16 << 20;
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ferry__sftp_write_range(sf[i], tmp, each * i, each,
		                                     sh_kill_reader, &k,
		                                     range_done, &res[i]),
		             0);
	all_ctx all = {res, 3};
	double t0 = sh_now_ms();
	cr_assert_eq(ferry__sftp_run(sf[0], all_called, &all,
	                             ferry__now_ms() + 60000),
	             0, "%s", ferry_session_errmsg(s));
	cr_assert_lt(sh_now_ms() - t0, 20000);
	cr_assert(k.killed);
	int dead = -1;
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(res[i].called, 1);
		if (res[i].err) {
			cr_assert_eq(dead, -1, "two ranges failed");
			cr_assert(res[i].err == FERRY_EEOF ||
			                  res[i].err == FERRY_ECONN,
			          "%s", res[i].msg);
			dead = i;
		} else {
			cr_assert_eq(res[i].bytes, each);
		}
	}
	cr_assert_geq(dead, 1, "the killed server was a stream's");
	cr_assert(ferry__sftp_dead(sf[dead]));
	cr_assert_eq(ferry__sftp_pending(sf[dead]), 0);
	cr_assert_eq(ferry__sftp_close_wait(sf[0], &h), 0);
	ferry__sftp *again[2];
	streams_of(s, 2, again);
	/* The dead one is freed and replaced (malloc may hand back the same
	 * address): a ready client in its place. */
	for (int i = 0; i < 2; i++) {
		if (i + 1 != dead)
			cr_assert_eq(again[i], sf[i + 1]);
		cr_assert(ferry__sftp_ready(again[i]));
		cr_assert_not(ferry__sftp_dead(again[i]));
	}
	ferry__sftp_attrs at;
	cr_assert_eq(ferry__sftp_stat_wait(again[dead - 1], sh_dir, &at), 0,
	             "%s", ferry_session_errmsg(s));
	ferry_session_close(s);
	fx_sshd_stop(&sv);
}
