/* push_hostile.c - ferry_sync against a server that misbehaves:
 * tests/hostile_sftp.py as the SFTP subsystem of a private sshd, told by
 * a control file (read when each session's subsystem starts) what to do.
 * A push never hangs: a server that stops answering or sends less than it
 * promised fails it at the I/O deadline, naming the request and the path,
 * the channel is closed (the server process goes away) and the next push
 * against a sane server converges; a fifo planted as the marker is never
 * opened; a listing that never ends stops at a bound; a name listed twice
 * is taken once. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os.h"
#include "push_helpers.h"

static ph_env h;
static fx_sshd sv;
static char ctl[700], pidf[700];

static void control(const char *text)
{
	cr_assert_eq(fx_write_file(ctl, text, strlen(text), 0644), 0);
}

static void hs_connect(int io_timeout_ms)
{
	if (h.s)
		ferry_session_close(h.s);
	h.s = NULL;
	ferry_session_opts o;
	fx_opts(&sv, &o);
	o.io_timeout_ms = io_timeout_ms;
	int rc = ferry_session_open(&h.s, &o);
	cr_assert_eq(rc, 0, "connect: %s", ferry_last_errmsg());
}

static void hs_start(const char *tag)
{
	if (fx_sh("test -x /usr/lib/openssh/sftp-server && test -x "
	          "/usr/bin/python3") != 0)
		cr_skip_test("needs python3 and OpenSSH's sftp-server");
	ph_init_on(&h, tag, NULL, 0);
	snprintf(ctl, sizeof(ctl), "%s/control", h.base);
	snprintf(pidf, sizeof(pidf), "%s/proxy.pid", h.base);
	control("");
	char cfg[1600];
	snprintf(cfg, sizeof(cfg),
	         "Subsystem sftp /usr/bin/python3 %s/tests/hostile_sftp.py "
	         "--control %s\n",
	         FERRY_SRCDIR, ctl);
	cr_assert_eq(fx_sshd_start(&sv, cfg), 0);
	h.sv = &sv;
	hs_connect(2000);
}

static void hs_stop(void)
{
	ph_fini(&h);
	fx_sshd_stop(&sv);
}

static int hs_push(ferry_sync_report *r, int64_t *took)
{
	int64_t t0 = ferry__now_ms();
	int rc = ph_push(&h, r);
	*took = ferry__now_ms() - t0;
	return rc;
}

/* The wrapper whose pid is in pidf has exited (within 5 s). */
/* The first SFTP server of the test is gone (its pid: the first line). */
static int proxy_gone(void)
{
	char *t = fx_read_file(pidf, NULL);
	cr_assert(t, "no pid file %s", pidf);
	pid_t pid = (pid_t)strtol(t, NULL, 10);
	free(t);
	for (int i = 0; i < 50; i++) {
		char p[64], st[512] = "";
		snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
		FILE *f = fopen(p, "r");
		if (!f)
			return 1;
		size_t n = fread(st, 1, sizeof(st) - 1, f);
		fclose(f);
		st[n] = '\0';
		const char *rp = strrchr(st, ')');
		if (rp && rp[1] == ' ' && rp[2] == 'Z')
			return 1;
		usleep(100000);
	}
	return 0;
}

/* After the failure: a sane server, and the push converges. */
static void converges(void)
{
	control("");
	hs_connect(2000);
	ferry_sync_report r;
	ph_push_ok(&h, &r);
	ferry_sync_report_free(&r);
	ph_assert_same(h.src, h.dst);
	cr_assert_eq(ph_count_temps(h.dst), 0);
	ph_push_ok(&h, &r);
	cr_assert_eq(r.requests, 0, "a no-op after it: %llu requests",
	             (unsigned long long)r.requests);
	ferry_sync_report_free(&r);
}

Test(push_hostile, a_server_that_stops_answering_fails_the_push, .timeout = 120)
{
	hs_start("push-hold");
	ph_write(h.src, "a.txt", "alpha\n", 0644, 1700000000L);
	ph_write(h.src, "b.txt", "beta\n", 0644, 1700000000L);
	ph_mkdir(h.src, "hold-me", 0755);
	ph_write(h.src, "hold-me/c.txt", "gamma\n", 0644, 1700000000L);
	ph_push_ok(&h, NULL);
	ph_write(h.src, "a.txt", "alpha, again\n", 0644, 1700000100L);
	ph_write(h.src, "hold-me/c.txt", "gamma, again\n", 0644, 1700000100L);
	char text[800];
	snprintf(text, sizeof(text), "hold hold-me\npidfile %s\n", pidf);
	control(text);
	hs_connect(2000);
	ferry_sync_report r;
	int64_t took;
	int rc = hs_push(&r, &took);
	const char *m = ferry_session_errmsg(h.s);
	cr_assert_eq(rc, FERRY_ETIMEOUT, "%s: %s", ferry_strerror(rc), m);
	cr_assert(took < 15000, "took %lld ms", (long long)took);
	cr_assert(strstr(m, "no reply for 2 s"), "%s", m);
	/* The oldest request left unanswered, by name and path. */
	cr_assert(strstr(m, " of \""), "no request named: %s", m);
	cr_assert(strstr(m, h.dst), "no path named: %s", m);
	ferry_sync_report_free(&r);
	/* The channel was closed: the server went away with it, though
	 * the session is still open. */
	cr_assert(proxy_gone(), "the SFTP server is still there");
	/* The connection still works: the push's temporaries are gone
	 * already, over a new channel (a second server), not only at the
	 * next push. */
	cr_assert_eq(ph_count_temps(h.dst), 0, "temporaries left");
	converges();
	hs_stop();
}

Test(push_hostile, a_reply_shorter_than_promised_fails_the_push, .timeout = 120)
{
	hs_start("push-trunc");
	ph_write(h.src, "a.txt", "alpha\n", 0644, 1700000000L);
	ph_push_ok(&h, NULL);
	ph_write(h.src, "a.txt", "alpha, again\n", 0644, 1700000100L);
	control("truncate .ferry-id\n");
	hs_connect(2000);
	ferry_sync_report r;
	int64_t took;
	int rc = hs_push(&r, &took);
	const char *m = ferry_session_errmsg(h.s);
	cr_assert_eq(rc, FERRY_ETIMEOUT, "%s: %s", ferry_strerror(rc), m);
	cr_assert(took < 15000, "took %lld ms", (long long)took);
	cr_assert(strstr(m, "LSTAT of \""), "%s", m);
	cr_assert(strstr(m, ".ferry-id\""), "%s", m);
	ferry_sync_report_free(&r);
	converges();
	hs_stop();
}

Test(push_hostile, a_fifo_as_the_marker_is_never_opened, .timeout = 120)
{
	hs_start("push-fifo");
	ph_write(h.src, "a.txt", "alpha\n", 0644, 1700000000L);
	ph_push_ok(&h, NULL);
	char *mk = ph_path(h.dst, ".ferry-id");
	cr_assert_eq(unlink(mk), 0);
	cr_assert_eq(mkfifo(mk, 0644), 0);
	hs_connect(2000);
	ferry_sync_report r;
	int64_t took;
	int rc = hs_push(&r, &took);
	const char *m = ferry_session_errmsg(h.s);
	cr_assert_eq(rc, FERRY_EEXIST, "%s: %s", ferry_strerror(rc), m);
	cr_assert(strstr(m, "not a regular file (a fifo): not opened"), "%s",
	          m);
	cr_assert(strstr(m, ".ferry-id"), "%s", m);
	/* Refused at once, not at the deadline. */
	cr_assert(took < 1500, "took %lld ms", (long long)took);
	struct stat st;
	cr_assert_eq(lstat(mk, &st), 0);
	cr_assert(S_ISFIFO(st.st_mode), "the fifo was replaced");
	ferry_sync_report_free(&r);
	/* Once it is gone, the push goes on as on a wiped remote. */
	cr_assert_eq(unlink(mk), 0);
	free(mk);
	converges();
	hs_stop();
}

static long rss_kib(void)
{
	struct rusage ru;
	cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
	return ru.ru_maxrss;
}

Test(push_hostile, a_listing_that_never_ends_stops_at_a_bound, .timeout = 120)
{
	hs_start("push-endless");
	/* Without a bound this grows until it is killed. */
	alarm(60);
	ph_write(h.src, "a.txt", "alpha\n", 0644, 1700000000L);
	cr_assert_eq(mkdir(h.dst, 0755), 0);
	char *d = ph_path(h.dst, "endless-d");
	cr_assert_eq(mkdir(d, 0755), 0);
	free(d);
	control("endless endless-d\n");
	hs_connect(5000);
	long before = rss_kib();
	h.o.max_dir_entries = 20000;
	ferry_sync_report r;
	int64_t took;
	int rc = hs_push(&r, &took);
	const char *m = ferry_session_errmsg(h.s);
	cr_assert_eq(rc, FERRY_ELIMIT, "%s: %s", ferry_strerror(rc), m);
	cr_assert(strstr(m, "endless-d: the server listed more than 20000 "
	                    "entries"),
	          "%s", m);
	ferry_sync_report_free(&r);
	/* The total, when it is the lower bound. */
	h.o.max_dir_entries = 0;
	h.o.max_entries = 5000;
	rc = hs_push(&r, &took);
	m = ferry_session_errmsg(h.s);
	cr_assert_eq(rc, FERRY_ELIMIT, "%s: %s", ferry_strerror(rc), m);
	cr_assert(strstr(m, "endless-d: the server listed more than 499"), "%s",
	          m);
	ferry_sync_report_free(&r);
	long after = rss_kib();
	cr_assert_lt(after - before, 64 * 1024, "RSS grew by %ld KiB",
	             after - before);
	alarm(0);
	h.o.max_entries = 0;
	h.o.delete_extraneous = 1; /* endless-d is not in the source */
	converges();
	hs_stop();
}

Test(push_hostile, a_name_listed_twice_is_taken_once, .timeout = 120)
{
	hs_start("push-dup");
	/* tests/hostile_sftp.py lists the first entry of a directory
	 * named hostile-dup twice. */
	free(h.dst);
	h.dst = ph_path(h.base, "remote/hostile-dup");
	h.o.dest = h.dst;
	cr_assert_eq(mkdir(h.dst, 0755), 0);
	ph_write(h.dst, "x-extra", "old\n", 0644, 1700000000L);
	ph_write(h.src, "a.txt", "alpha\n", 0644, 1700000000L);
	h.o.delete_extraneous = 1;
	ferry_sync_report r;
	int64_t took;
	int rc = hs_push(&r, &took);
	cr_assert(rc == 0 || rc == FERRY_EPARTIAL, "%s: %s", ferry_strerror(rc),
	          ferry_session_errmsg(h.s));
	cr_assert_leq(r.files_deleted, 1, "deleted %llu",
	              (unsigned long long)r.files_deleted);
	size_t twice = 0;
	for (size_t i = 0; i < r.error_count; i++)
		twice += strstr(r.errors[i].message, "twice") != NULL;
	cr_assert_eq(twice, 1,
	             "%zu errors about it (%zu in all; %llu deleted; rc "
	             "%d)\nlog: %s",
	             twice, r.error_count, (unsigned long long)r.files_deleted,
	             rc, h.log);
	cr_assert(!ph_exists(h.dst, "x-extra") || r.files_deleted == 0);
	ferry_sync_report_free(&r);
	hs_stop();
}
