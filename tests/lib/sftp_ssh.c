/* The SFTP client over a libssh2 channel of a real session to the test
 * sshd (subsystem sftp): the production transport. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "fixture.h"
#include "sftp_test.h"
#include "session.h"
#include "sftp.h"
#include "sftp_helpers.h"

static void setup(void)
{
	sh_dir_new("sftp-ssh");
}

static void teardown(void)
{
	sh_dir_free();
}

TestSuite(sftp_ssh, .init = setup, .fini = teardown, .timeout = 240);

/* The session's SFTP client, with these options (NULL: the defaults). */
static ferry__sftp *sftp_of(ferry_session *s, const ferry__sftp_opts *o)
{
	ferry__sftp *sf = NULL;
	int rc = ferry__session_sftp_ex(s, o, &sf);
	cr_assert_eq(rc, 0, "%s: %s", ferry_strerror(rc),
	             ferry_session_errmsg(s));
	return sf;
}

Test(sftp_ssh, shared_channel_and_operations)
{
	ferry_session *s = fx_connect(fx_shared());
	uint64_t rt0 = ferry_session_round_trips(s);
	ferry__sftp *sf = sftp_of(s, NULL);
	/* Channel open, subsystem request, INIT + limits. */
	cr_assert_eq(ferry_session_round_trips(s) - rt0, 3);
	cr_assert(ferry__sftp_has(sf, FERRY__EXT_POSIX_RENAME |
	                                      FERRY__EXT_LIMITS |
	                                      FERRY__EXT_FSYNC));
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	cr_assert_eq(l.max_write, 255 * 1024);
	/* One channel per session: asked again, the same client. */
	ferry__sftp *again = sftp_of(s, NULL);
	cr_assert_eq(again, sf);
	cr_assert_eq(ferry_session_round_trips(s) - rt0, 3);

	cr_assert_eq(ferry__sftp_mkdir_wait(sf, P("d"), NULL), 0);
	ferry__sftp_upload_opts o = {.path = P("d/.f.ferry-1"),
	                             .rename_to = P("d/f"),
	                             .data = "over ssh",
	                             .size = 8,
	                             .has_perm = 1,
	                             .perm = 0600,
	                             .fsync = 1};
	ferry__sftp_upload_result r;
	uint64_t rt1 = ferry_session_round_trips(s);
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry_session_errmsg(s));
	cr_assert_eq(ferry_session_round_trips(s) - rt1, 3);
	char *t = fx_read_file(P("d/f"), NULL);
	cr_assert_str_eq(t, "over ssh");
	free(t);
	struct stat st;
	cr_assert_eq(stat(P("d/f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	ferry__sftp_dirent *ents;
	size_t n;
	cr_assert_eq(ferry__sftp_list_wait(sf, P("d"), &ents, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(ents[0].name, "f");
	ferry__sftp_dirents_free(ents, n);
	char *m = NULL;
	size_t ml = 0;
	cr_assert_eq(ferry__sftp_read_small_wait(sf, P("d/f"), 100, &m, &ml),
	             0);
	cr_assert_str_eq(m, "over ssh");
	ferry__free(m);
	/* Errors keep the server's text, on the session too. */
	ferry__sftp_attrs a;
	cr_assert_eq(ferry__sftp_stat_wait(sf, P("none"), &a), FERRY_ENOTFOUND);
	cr_assert(strstr(ferry_session_errmsg(s), "No such file"), "%s",
	          ferry_session_errmsg(s));
	cr_assert_eq(ferry__sftp_mkdir_wait(sf, P("d"), NULL), FERRY_EEXIST);
	cr_assert_eq(ferry__sftp_probe_symlinks_wait(sf, sh_dir), 0);
	cr_assert_eq(ferry__sftp_symlink_wait(sf, P("l"), "d/f"), 0);
	char *target = NULL;
	cr_assert_eq(ferry__sftp_readlink_wait(sf, P("l"), &target), 0);
	cr_assert_str_eq(target, "d/f");
	ferry__free(target);
	ferry_session_close(s); /* frees the client */
}

typedef struct batch {
	size_t want, done, failed;
	char err[600];
} batch;

static void batch_cb(void *ctx, const ferry__sftp_upload_result *r)
{
	batch *b = ctx;
	b->done++;
	if (r->error && !b->failed++)
		snprintf(b->err, sizeof(b->err), "%s", r->message);
}

static int batch_done(void *ctx)
{
	batch *b = ctx;
	return b->done == b->want;
}

static uint64_t push_n(ferry_session *s, ferry__sftp *sf, const char *tag,
                       size_t n, uint8_t **data, size_t *size)
{
	batch b = {n, 0, 0, ""};
	uint64_t rt0 = ferry_session_round_trips(s);
	for (size_t i = 0; i < n; i++) {
		char tmp[1024], fin[1024];
		snprintf(tmp, sizeof(tmp), "%s/.%s%zu.ferry-Q", sh_dir, tag, i);
		snprintf(fin, sizeof(fin), "%s/%s%zu", sh_dir, tag, i);
		ferry__sftp_upload_opts o = {.path = tmp,
		                             .rename_to = fin,
		                             .data = data[i],
		                             .size = size[i],
		                             .has_perm = 1,
		                             .perm = 0640,
		                             .has_attrs = 1};
		o.attrs.flags = FERRY__ATTR_ACMODTIME;
		o.attrs.atime = o.attrs.mtime = 1650000000;
		o.done = batch_cb;
		o.ctx = &b;
		cr_assert_eq(ferry__sftp_upload(sf, &o), 0);
	}
	cr_assert_eq(ferry__sftp_run(sf, batch_done, &b, 0), 0, "%s",
	             ferry_session_errmsg(s));
	cr_assert_eq(b.failed, 0, "%s", b.err);
	for (size_t i = 0; i < n; i++) {
		char fin[1024];
		snprintf(fin, sizeof(fin), "%s/%s%zu", sh_dir, tag, i);
		cr_assert(sh_hash_eq(sh_hash_file(fin),
		                     XXH3_128bits(data[i], size[i])),
		          "%s differs", fin);
	}
	return ferry_session_round_trips(s) - rt0;
}

Test(sftp_ssh, thousand_files_three_round_trips)
{
	ferry_session *s = fx_connect(fx_shared());
	/* a window that holds them all: no wait for it (counted else) */
	ferry__sftp_opts so = {.window_bytes = (size_t)16 << 20};
	ferry__sftp *sf = sftp_of(s, &so);
	size_t n = 1000;
	uint8_t **data = calloc(n, sizeof(*data));
	size_t *size = calloc(n, sizeof(*size));
	for (size_t i = 0; i < n; i++) {
		size[i] = (i * 7919) % 8000;
		data[i] = malloc(size[i] + 1);
		sh_fill(data[i], size[i], i);
	}
	double t0 = sh_now_ms();
	uint64_t rt1 = push_n(s, sf, "one", 1, data, size);
	double t1 = sh_now_ms() - t0;
	t0 = sh_now_ms();
	uint64_t rtn = push_n(s, sf, "f", n, data, size);
	double tn = sh_now_ms() - t0;
	cr_assert_eq(rt1, 3);
	cr_assert_eq(rtn, 3);
	fprintf(stderr,
	        "[sftp bench] ssh loopback: 1 file %.1f ms, 1000 files %.1f ms "
	        "(3 round trips each)\n",
	        t1, tn);
	for (size_t i = 0; i < n; i++)
		free(data[i]);
	free(data);
	free(size);
	ferry_session_close(s);
}

Test(sftp_ssh, upload_256_mib_verified)
{
	size_t n = (size_t)256 << 20;
	char *src = sh_make_file(n, 17);
	ferry_session *s = fx_connect(fx_shared());
	ferry__sftp_upload_opts o = {0};
	sh_upload_big(sftp_of(s, NULL), src, n, &o, "over ssh");
	unlink(src);
	unlink(P("big"));
	free(src);
	ferry_session_close(s);
}

Test(sftp_ssh, latency_option_on_the_channel)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry__sftp_opts opts = {0};
	fx_sftp_latency(&opts, 10);
	ferry__sftp *sf = sftp_of(s, &opts);
	ferry__sftp_upload_result r;
	uint64_t rt0 = ferry_session_round_trips(s);
	double t0 = sh_now_ms();
	sh_upload_text(sf, P("x.tmp"), P("x"), "x", &r);
	double ms = sh_now_ms() - t0;
	cr_assert_eq(ferry_session_round_trips(s) - rt0, 3);
	cr_assert_geq(ms, 3 * 20.0);
	ferry_session_close(s);
}

Test(sftp_ssh, login_shell_that_prints_text)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv,
	                           "ForceCommand echo 'Welcome to the test "
	                           "host!'; exec " SFTP_SERVER "\n"),
	             0);
	ferry_session *s = fx_connect(&sv);
	ferry__sftp *sf = NULL;
	int rc = ferry__session_sftp(s, &sf);
	cr_assert_eq(rc, FERRY_EPROTO, "%s", ferry_strerror(rc));
	cr_assert_null(sf);
	const char *m = ferry_session_errmsg(s);
	cr_assert(strstr(m, "SFTP init: the remote shell printed text on a "
	                    "non-interactive login"),
	          "%s", m);
	cr_assert(strstr(m, "Welcome to the test host!"), "%s", m);
	ferry_session_close(s);
	fx_sshd_stop(&sv);
}

Test(sftp_ssh, subsystem_that_exits)
{
	/* sshd drops a subsystem's stderr: only the exit status tells. */
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, "ForceCommand echo 'sftp is not "
	                                "allowed here' >&2; exit 3\n"),
	             0);
	ferry_session *s = fx_connect(&sv);
	ferry__sftp *sf = NULL;
	int rc = ferry__session_sftp(s, &sf);
	cr_assert_eq(rc, FERRY_EEOF, "%s: %s", ferry_strerror(rc),
	             ferry_session_errmsg(s));
	cr_assert(strstr(ferry_session_errmsg(s),
	                 "the server closed the SFTP channel"),
	          "%s", ferry_session_errmsg(s));
	cr_assert(strstr(ferry_session_errmsg(s), "exit status 3"), "%s",
	          ferry_session_errmsg(s));
	/* The session stays usable for other channels. */
	cr_assert_eq(ferry__session_sftp(s, &sf), FERRY_EEOF);
	ferry_session_close(s);
	fx_sshd_stop(&sv);
}

Test(sftp_ssh, server_killed_mid_transfer)
{
	char cfg[2048];
	sh_killer v = {0, "", 32 << 20, 0};
	snprintf(v.pidfile, sizeof(v.pidfile), "%s/sftp.pid", sh_dir);
	snprintf(cfg, sizeof(cfg),
	         "ForceCommand echo $$ > %s; exec " SFTP_SERVER "\n",
	         v.pidfile);
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, cfg), 0);
	ferry_session *s = fx_connect(&sv);
	ferry__sftp *sf = sftp_of(s, NULL);
	ferry__sftp_upload_opts o = {.path = P("victim"),
	                             .read = sh_kill_reader,
	                             .rctx = &v,
	                             .size = (uint64_t)1 << 30};
	ferry__sftp_upload_result r;
	double t0 = sh_now_ms();
	int rc = ferry__sftp_upload_wait(sf, &o, &r);
	double ms = sh_now_ms() - t0;
	cr_assert(v.killed);
	cr_assert(rc == FERRY_EEOF || rc == FERRY_ECONN, "%s: %s",
	          ferry_strerror(rc), ferry_session_errmsg(s));
	cr_assert(strstr(ferry_session_errmsg(s), "closed the SFTP channel"),
	          "%s", ferry_session_errmsg(s));
	cr_assert_lt(ms, 20000);
	cr_assert_eq(ferry__sftp_pending(sf), 0);
	/* The session itself is fine: the next use opens a new channel. */
	ferry__sftp *sf2 = sftp_of(s, NULL);
	cr_assert_neq(ferry__sftp_dead(sf2), FERRY_EEOF);
	ferry__sftp_attrs a;
	cr_assert_eq(ferry__sftp_stat_wait(sf2, sh_dir, &a), 0, "%s",
	             ferry_session_errmsg(s));
	ferry_session_close(s);
	fx_sshd_stop(&sv);
}
