/* sftp_hostile.c - the SFTP client against a misbehaving server:
 * tests/hostile_sftp.py (OpenSSH's sftp-server behind a wrapper, told by a
 * control file what to do) on the pipe transport.  A server that stops
 * answering, or sends a reply shorter than it promised, fails the request
 * at the I/O deadline with its name and path; a VERSION reply of a length
 * no VERSION has, and a status code no draft defines, are said as such. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "os.h"
#include "fixture.h"
#include "sftp.h"
#include "sftp_helpers.h"

static char ctl[600];
static const char *const argv_h[] = {"/usr/bin/python3",
                                     FERRY_SRCDIR "/tests/hostile_sftp.py",
                                     "--control", ctl, NULL};

static void setup(void)
{
	sh_dir_new("sftp-hostile");
	snprintf(ctl, sizeof(ctl), "%s", P("control"));
}

static void teardown(void)
{
	sh_dir_free();
}

TestSuite(sftp_hostile, .init = setup, .fini = teardown, .timeout = 60);

static void control(const char *text)
{
	cr_assert_eq(fx_write_file(ctl, text, strlen(text), 0644), 0);
}

/* Open a client on the wrapper; rc and message of the INIT. */
static int open_h(ferry__sftp **sf, int io_timeout_ms, char *err, size_t n)
{
	ferry__sftp_pipe_opts po;
	memset(&po, 0, sizeof(po));
	po.argv = argv_h;
	po.sftp.io_timeout_ms = io_timeout_ms;
	err[0] = '\0';
	return ferry__sftp_open_pipe(sf, &po, err, n);
}

static void version_case(const char *mode, const char *want)
{
	char line[64], err[600];
	snprintf(line, sizeof(line), "version %s\n", mode);
	control(line);
	ferry__sftp *sf = NULL;
	int rc = open_h(&sf, 3000, err, sizeof(err));
	cr_assert_eq(rc, FERRY_EPROTO, "%s: %s (%s)", mode, ferry_strerror(rc),
	             err);
	cr_assert(strstr(err, want), "%s: %s", mode, err);
	cr_assert_null(strstr(err, "printed text"), "%s: %s", mode, err);
	ferry__sftp_free(sf);
}

Test(sftp_hostile, empty_or_oversized_version_is_named)
{
	version_case("empty", "VERSION reply claims 1 bytes (too short");
	version_case("big", "VERSION reply claims 300000 bytes (too long");
}

Test(sftp_hostile, unknown_status_code_shows_its_number)
{
	control("status odd-one\n");
	char err[600];
	ferry__sftp *sf = NULL;
	cr_assert_eq(open_h(&sf, 3000, err, sizeof(err)), 0, "%s", err);
	ferry__sftp_attrs a;
	int rc = ferry__sftp_lstat_wait(sf, P("odd-one"), &a);
	cr_assert_eq(rc, FERRY_EREMOTE, "%s", ferry_strerror(rc));
	const char *m = ferry__sftp_errmsg(sf);
	cr_assert(strstr(m, "odd refusal"), "%s", m);
	cr_assert(strstr(m, "unknown SFTP status code 77"), "%s", m);
	ferry__sftp_free(sf);
}

/* The request the server leaves unanswered fails at the deadline, by
 * name and path, and the client is dead (its channel given back). */
static void stall_case(const char *mode)
{
	char line[64], err[600];
	snprintf(line, sizeof(line), "%s stall-here\n", mode);
	control(line);
	ferry__sftp *sf = NULL;
	cr_assert_eq(open_h(&sf, 1000, err, sizeof(err)), 0, "%s", err);
	ferry__sftp_attrs a;
	/* Answered: the deadline only counts while a request waits. */
	cr_assert_eq(ferry__sftp_lstat_wait(sf, P("."), &a), 0);
	sleep(2);
	cr_assert_eq(ferry__sftp_lstat_wait(sf, P("."), &a), 0, "%s",
	             ferry__sftp_errmsg(sf));
	int64_t t0 = ferry__now_ms();
	int rc = ferry__sftp_lstat_wait(sf, P("stall-here"), &a);
	int64_t took = ferry__now_ms() - t0;
	cr_assert_eq(rc, FERRY_ETIMEOUT, "%s: %s: %s", mode, ferry_strerror(rc),
	             ferry__sftp_errmsg(sf));
	cr_assert(took >= 900 && took < 5000, "%s: %lld ms", mode,
	          (long long)took);
	const char *m = ferry__sftp_errmsg(sf);
	cr_assert(strstr(m, "no reply for 1 s"), "%s: %s", mode, m);
	cr_assert(strstr(m, "LSTAT of \""), "%s: %s", mode, m);
	cr_assert(strstr(m, P("stall-here")), "%s: %s", mode, m);
	cr_assert_eq(ferry__sftp_dead(sf), FERRY_ETIMEOUT);
	ferry__sftp_free(sf);
}

Test(sftp_hostile, a_server_that_stops_answering_times_out)
{
	stall_case("hold");
}

Test(sftp_hostile, a_reply_shorter_than_promised_times_out)
{
	stall_case("truncate");
}

/* A request on a handle is named by the path the handle was opened on,
 * among many handles opened and closed before it (the table grows, its
 * slots and chains are reused). */
Test(sftp_hostile, a_request_on_a_handle_names_its_path)
{
	char err[600];
	cr_assert_eq(fx_write_file(P("f-held"), "x", 1, 0644), 0);
	control("holdh f-held\n");
	ferry__sftp *sf = NULL;
	cr_assert_eq(open_h(&sf, 1000, err, sizeof(err)), 0, "%s", err);
	enum { N = 40 };
	ferry__sftp_handle hs[2 * N];
	for (int i = 0; i < 2 * N; i++) {
		char name[32];
		snprintf(name, sizeof(name), "%c-%d", i < N ? 'f' : 'g', i);
		cr_assert_eq(fx_write_file(P("%s", name), "y", 1, 0644), 0);
		cr_assert_eq(ferry__sftp_open_wait(sf, P("%s", name),
		                                   FERRY__FXF_READ, NULL,
		                                   &hs[i]),
		             0, "%s", ferry__sftp_errmsg(sf));
		if (i >= N && i % 2 == 0) /* close half of the first N */
			cr_assert_eq(ferry__sftp_close_wait(sf, &hs[i - N]), 0);
	}
	ferry__sftp_handle h;
	cr_assert_eq(ferry__sftp_open_wait(sf, P("f-held"), FERRY__FXF_READ,
	                                   NULL, &h),
	             0, "%s", ferry__sftp_errmsg(sf));
	ferry__sftp_attrs a;
	cr_assert_eq(ferry__sftp_fstat_wait(sf, &h, &a), FERRY_ETIMEOUT);
	const char *m = ferry__sftp_errmsg(sf);
	cr_assert(strstr(m, "FSTAT of \""), "%s", m);
	cr_assert(strstr(m, P("f-held")), "%s", m);
	ferry__sftp_free(sf);
}
