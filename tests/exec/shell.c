/* Tests of exec/shell.c: quoting, the output filter, and the scripts run
 * by a local bash (no SSH: the wrapper is plain text for bash -c). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "exec/shell.h"
#include "fixture.h"

#define MARK "0123456789abcdef0123456789abcdef"
/* The marker as the scripts get it: the first line of stdin. */
#define MARK_IN MARK "\n"

/* ---- helpers ------------------------------------------------------------ */

/* Run argv with in (NULL: /dev/null) on stdin, collect stdout; returns
 * exit status. */
static int run_capture_in(char *const argv[], const char *env_home,
                          const char *env_tmp, const char *in, size_t in_len,
                          ferry_buf *out)
{
	int pout[2], pin[2];
	cr_assert_eq(pipe(pout), 0);
	cr_assert_eq(pipe(pin), 0);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		dup2(pout[1], 1);
		close(pout[0]);
		close(pout[1]);
		int devnull = open("/dev/null", O_RDWR);
		dup2(in ? pin[0] : devnull, 0);
		close(pin[0]);
		close(pin[1]);
		dup2(devnull, 2);
		if (env_home)
			setenv("HOME", env_home, 1);
		if (env_tmp) {
			setenv("TMPDIR", env_tmp, 1);
			setenv("XDG_RUNTIME_DIR", env_tmp, 1);
		}
		unsetenv("BASH_ENV");
		unsetenv("ENV");
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pout[1]);
	close(pin[0]);
	/* a pipe holds 64 KiB: enough for what the tests send */
	if (in)
		cr_assert_eq(write(pin[1], in, in_len), (ssize_t)in_len);
	close(pin[1]);
	char buf[65536];
	ssize_t n;
	while ((n = read(pout[0], buf, sizeof(buf))) > 0)
		cr_assert_eq(ferry__buf_put(out, buf, (size_t)n), 0);
	close(pout[0]);
	int st = 0;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Scripts get MARK on stdin, as ferry sends it. */
static int run_capture(char *const argv[], const char *env_home,
                       const char *env_tmp, ferry_buf *out)
{
	return run_capture_in(argv, env_home, env_tmp, MARK_IN, strlen(MARK_IN),
	                      out);
}

static void collect(void *ctx, const void *p, size_t n)
{
	cr_assert_eq(ferry__buf_put(ctx, p, n), 0);
}

/* Feed data to a fresh filter in pieces of step bytes. */
static void filter_all(const char *data, size_t n, size_t step,
                       int want_trailer, ferry_buf *out, ferry__sh_filter *f)
{
	cr_assert_eq(ferry__sh_filter_init(f, MARK, want_trailer), 0);
	for (size_t off = 0; off < n; off += step) {
		size_t k = n - off < step ? n - off : step;
		cr_assert_eq(
		        ferry__sh_filter_feed(f, data + off, k, collect, out),
		        0);
	}
	cr_assert_eq(ferry__sh_filter_finish(f, collect, out), 0);
}

/* ---- quoting ------------------------------------------------------------ */

Test(shell, quote_round_trips_through_bash)
{
	const char *nasty[] = {"",
	                       "plain",
	                       "it's",
	                       "'",
	                       "''",
	                       "a b\tc\nd",
	                       "$(touch /tmp/ferry-injected)`id` $HOME ${x}",
	                       "\\ \\\\ \\'",
	                       "*?[a-z]",
	                       "; rm -rf / #",
	                       "\"double\"",
	                       "-n",
	                       "héllo wörld ✓",
	                       "!event"};
	for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++) {
		ferry_buf q = FERRY_BUF_INIT;
		cr_assert_eq(ferry__buf_fmt(&q, "printf %%s %q", nasty[i]), 0);
		cr_assert_eq(ferry__buf_terminate(&q), 0);
		char *argv[] = {"bash", "-c", (char *)q.data, NULL};
		ferry_buf out = FERRY_BUF_INIT;
		cr_assert_eq(run_capture_in(argv, NULL, NULL, NULL, 0, &out),
		             0);
		cr_assert_eq(out.len, strlen(nasty[i]), "case %zu", i);
		cr_assert(!out.len || !memcmp(out.data, nasty[i], out.len),
		          "case %zu", i);
		/* dash too: the kill and cleanup scripts are POSIX sh */
		char *argv2[] = {"sh", "-c", (char *)q.data, NULL};
		ferry__buf_reset(&out);
		cr_assert_eq(run_capture_in(argv2, NULL, NULL, NULL, 0, &out),
		             0);
		cr_assert_eq(out.len, strlen(nasty[i]), "sh case %zu", i);
		ferry__buf_free(&q);
		ferry__buf_free(&out);
	}
	struct stat st;
	cr_assert_neq(stat("/tmp/ferry-injected", &st), 0, "quoting leaked");
}

Test(shell, env_names)
{
	cr_assert(ferry__sh_env_name_ok("A=1"));
	cr_assert(ferry__sh_env_name_ok("_x9=a=b"));
	cr_assert(ferry__sh_env_name_ok("EMPTY="));
	cr_assert_not(ferry__sh_env_name_ok("9A=1"));
	cr_assert_not(ferry__sh_env_name_ok("A B=1"));
	cr_assert_not(ferry__sh_env_name_ok("A"));
	cr_assert_not(ferry__sh_env_name_ok("=1"));
	cr_assert_not(ferry__sh_env_name_ok("$(x)=1"));
	cr_assert_not(ferry__sh_env_name_ok("__ferry_st=1"));
	cr_assert_not(ferry__sh_env_name_ok(NULL));
}

/* ---- the filter --------------------------------------------------------- */

Test(shell, filter_exact_bytes_at_every_split)
{
	/* noise, header, user bytes that end without a newline and contain
	 * near-misses of the marker, trailer, a late byte */
	static const char user[] = "x\n__ferry_0123\n" MARK "X\n\n\n__ferr";
	char wire[512];
	size_t n = 0;
	const char *noise = "motd noise\nno newline";
	memcpy(wire + n, noise, strlen(noise));
	n += strlen(noise);
	n += (size_t)snprintf(wire + n, sizeof(wire) - n, MARK ":4242\n");
	memcpy(wire + n, user, sizeof(user) - 1);
	n += sizeof(user) - 1;
	const char trailer[] = "\036" MARK ":3:1:/tmp/a b\n c";
	memcpy(wire + n, trailer, sizeof(trailer) - 1);
	n += sizeof(trailer) - 1;
	wire[n++] = '\0';
	wire[n++] = 'L';
	for (size_t step = 1; step <= n; step++) {
		ferry__sh_filter f;
		ferry_buf out = FERRY_BUF_INIT;
		filter_all(wire, n, step, 1, &out, &f);
		cr_assert_eq(out.len, sizeof(user) - 1 + 1, "step %zu", step);
		cr_assert(!memcmp(out.data, user, sizeof(user) - 1), "step %zu",
		          step);
		cr_assert_eq(out.data[out.len - 1], 'L');
		cr_assert(f.have_header);
		cr_assert_eq(f.pgid, 4242);
		cr_assert(f.have_trailer, "step %zu", step);
		cr_assert_eq(f.status, 3);
		cr_assert_eq(f.dumped, 1);
		cr_assert_str_eq(f.cwd, "/tmp/a b\n c");
		ferry__sh_filter_free(&f);
		ferry__buf_free(&out);
	}
}

/* A line end or a hex digit is never held back (the trailer starts with
 * 036, not "\n": bash's line-buffered printf would write a leading "\n"
 * by itself, and merged output could not tell the user's from the
 * wrapper's), so output is out as soon as it came, before the other
 * stream's next bytes. */
Test(shell, filter_holds_no_line_end)
{
	ferry__sh_filter f;
	ferry_buf out = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_filter_init(&f, MARK, 1), 0);
	const char head[] = MARK ":9\n";
	cr_assert_eq(
	        ferry__sh_filter_feed(&f, head, strlen(head), collect, &out),
	        0);
	/* "0": the marker's first digit, printed last without a newline */
	const char *lines[] = {"1\n", "\n", "x\n\n", "0"};
	size_t want = 0;
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(ferry__sh_filter_feed(&f, lines[i],
		                                   strlen(lines[i]), collect,
		                                   &out),
		             0);
		want += strlen(lines[i]);
		cr_assert_eq(out.len, want, "line %zu held back", i);
	}
	const char tr[] = "\036" MARK ":0:0:/";
	cr_assert_eq(ferry__sh_filter_feed(&f, tr, sizeof(tr), collect, &out),
	             0);
	cr_assert_eq(ferry__sh_filter_finish(&f, collect, &out), 0);
	cr_assert(f.have_trailer);
	cr_assert_eq(out.len, strlen("1\n\nx\n\n0"));
	cr_assert(!memcmp(out.data, "1\n\nx\n\n0", out.len));
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);
}

Test(shell, filter_without_trailer_or_header)
{
	/* The wrapper never ran: everything is the user's (bash's error). */
	const char *err = "bash: not found\n";
	ferry__sh_filter f;
	ferry_buf out = FERRY_BUF_INIT;
	filter_all(err, strlen(err), 3, 1, &out, &f);
	cr_assert_not(f.have_header);
	cr_assert_eq(out.len, strlen(err));
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);

	/* Header, then output cut short by a kill: a held-back prefix of
	 * the marker comes out at the end. */
	char wire[128];
	int n = snprintf(wire, sizeof(wire), MARK ":9\nabc\n__ferry_01");
	ferry__buf_reset(&out);
	filter_all(wire, (size_t)n, 1, 1, &out, &f);
	cr_assert(f.have_header);
	cr_assert_not(f.have_trailer);
	cr_assert_eq(out.len, strlen("abc\n__ferry_01"));
	cr_assert(!memcmp(out.data, "abc\n__ferry_01", out.len));
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);

	/* stderr: header only, the rest passes */
	n = snprintf(wire, sizeof(wire), "junk" MARK ":9\n\n" MARK ":0:0:/\n");
	filter_all(wire, (size_t)n, 2, 0, &out, &f);
	cr_assert_eq(out.len, strlen("\n" MARK ":0:0:/\n"));
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);
}

Test(shell, filter_malformed_trailer_is_user_data)
{
	char wire[256];
	int n = snprintf(wire, sizeof(wire), MARK ":9\nA\n" MARK ":x:1:/\n");
	wire[n++] = 0;
	ferry__sh_filter f;
	ferry_buf out = FERRY_BUF_INIT;
	filter_all(wire, (size_t)n, 5, 1, &out, &f);
	cr_assert_not(f.have_trailer);
	size_t want = (size_t)n - strlen(MARK ":9\n");
	cr_assert_eq(out.len, want);
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);
}

/* ---- scripts run by a local bash ---------------------------------------- */

typedef struct local {
	char *dir; /* snapshot directory */
	char *cwd; /* where commands start */
	ferry_buf raw;
	ferry_buf out;
	ferry__sh_filter f;
	int status;
} local;

static void local_run(local *l, const char *command, const char *cwd,
                      const char *src, const char *dst, const char *const *env,
                      size_t env_count)
{
	char s[600], d[600];
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.command = command;
	c.cwd = cwd;
	if (src) {
		snprintf(s, sizeof(s), "%s/%s", l->dir, src);
		c.snap_src = s;
	}
	if (dst) {
		snprintf(d, sizeof(d), "%s/%s", l->dir, dst);
		c.snap_dst = d;
	}
	c.env = env;
	c.env_count = env_count;
	c.invoke = FERRY__SH_BASH;
	ferry_buf req = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_wrapper(&req, &c), 0);
	char *argv[] = {"sh", "-c", (char *)req.data, NULL};
	ferry__buf_reset(&l->raw);
	ferry__buf_reset(&l->out);
	l->status = run_capture(argv, NULL, NULL, &l->raw);
	ferry__sh_filter_free(&l->f);
	filter_all((const char *)l->raw.data, l->raw.len, 7, 1, &l->out, &l->f);
	ferry__buf_put_u8(&l->out, 0);
	l->out.len--;
	ferry__buf_free(&req);
}

static void local_init(local *l)
{
	memset(l, 0, sizeof(*l));
	l->dir = fx_tmpdir("snap");
	cr_assert_not_null(l->dir);
	/* An empty snapshot to start from. */
	cr_assert_eq(fx_write_in(l->dir, "0", "", 0600), 0);
	cr_assert_eq(ferry__sh_filter_init(&l->f, MARK, 1), 0);
}

static void local_free(local *l)
{
	fx_sh("rm -rf '%s'", l->dir);
	free(l->dir);
	ferry__buf_free(&l->raw);
	ferry__buf_free(&l->out);
	ferry__sh_filter_free(&l->f);
}

Test(shell, wrapper_keeps_state_in_the_snapshot)
{
	local l;
	local_init(&l);
	local_run(&l,
	          "export FOO='a b'; f(){ echo \"fn $1\"; }; "
	          "alias hi='echo hi there'; cd /tmp; printf x",
	          "/", "0", "1", NULL, 0);
	cr_assert_eq(l.status, 0);
	cr_assert_str_eq((char *)l.out.data, "x");
	cr_assert(l.f.have_trailer);
	cr_assert_eq(l.f.status, 0);
	cr_assert(l.f.dumped);
	cr_assert_str_eq(l.f.cwd, "/tmp");

	local_run(&l, "echo \"$FOO\"; f 1; hi; pwd; exit 7", l.f.cwd, "1", "2",
	          NULL, 0);
	cr_assert_eq(l.status, 7);
	cr_assert_eq(l.f.status, 7);
	cr_assert_str_eq((char *)l.out.data, "a b\nfn 1\nhi there\n/tmp\n");
	local_free(&l);
}

Test(shell, wrapper_cd_failure_is_126_without_trailer)
{
	local l;
	local_init(&l);
	local_run(&l, "echo never", "/nonexistent/dir", "0", "1", NULL, 0);
	cr_assert_eq(l.status, 126);
	cr_assert_not(l.f.have_trailer);
	cr_assert(strstr((char *)l.out.data, "never") == NULL);
	local_free(&l);
}

Test(shell, wrapper_env_additions_do_not_persist)
{
	local l;
	local_init(&l);
	local_run(&l, "export KEEP=old", "/", "0", "1", NULL, 0);
	const char *env[] = {"KEEP=new", "ONCE=it's $(x)"};
	local_run(&l, "echo \"$KEEP|$ONCE\"", "/", "1", "2", env, 2);
	cr_assert_str_eq((char *)l.out.data, "new|it's $(x)\n");
	local_run(&l, "echo \"$KEEP|${ONCE-unset}\"", "/", "2", "3", NULL, 0);
	cr_assert_str_eq((char *)l.out.data, "old|unset\n");
	/* A command that changes an added variable keeps its change. */
	const char *env2[] = {"ONCE=1"};
	local_run(&l, "export ONCE=2", "/", "3", "4", env2, 1);
	local_run(&l, "echo \"$ONCE\"", "/", "4", "5", NULL, 0);
	cr_assert_str_eq((char *)l.out.data, "2\n");
	local_free(&l);
}

Test(shell, wrapper_quotes_cwd_and_command)
{
	local l;
	local_init(&l);
	char weird[700];
	snprintf(weird, sizeof(weird), "%s/it's $(touch x) `y` dir", l.dir);
	cr_assert_eq(mkdir(weird, 0700), 0);
	local_run(&l, "printf '%s' \"$PWD\"", weird, "0", "1", NULL, 0);
	cr_assert_eq(l.status, 0);
	cr_assert_str_eq((char *)l.out.data, weird);
	cr_assert_str_eq(l.f.cwd, weird);
	cr_assert_neq(access("x", F_OK), 0);
	local_free(&l);
}

Test(shell, wrapper_without_snapshot)
{
	local l;
	local_init(&l);
	local_run(&l, "echo $$ >/dev/null; false", "/tmp", NULL, NULL, NULL, 0);
	cr_assert_eq(l.status, 1);
	cr_assert(l.f.have_trailer);
	cr_assert_eq(l.f.status, 1);
	cr_assert_eq(l.f.dumped, 0);
	cr_assert_eq(l.out.len, 0);
	local_free(&l);
}

Test(shell, bootstrap_snapshots_the_login_environment)
{
	char *home = fx_tmpdir("home");
	char *tmp = fx_tmpdir("tmp");
	cr_assert(home && tmp);
	const char *profile = "export PROFILE_VAR='from profile'\n"
	                      "pf(){ echo \"pf $*\"; }\n"
	                      "alias pa='echo alias-ok'\n"
	                      "echo profile noise\n";
	cr_assert_eq(fx_write_in(home, ".bash_profile", profile, 0644), 0);
	ferry_buf req = FERRY_BUF_INIT, out = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_bootstrap(&req, "ferry-test"), 0);
	char *argv[] = {"bash", "-c", (char *)req.data, NULL};
	cr_assert_eq(run_capture(argv, home, tmp, &out), 0);
	ferry__sh_boot b;
	cr_assert_eq(ferry__sh_parse_boot(out.data, out.len, MARK, &b), 0);
	cr_assert(b.have_sh);
	cr_assert(b.bash);
	cr_assert_not_null(b.dir);
	char p[700];
	snprintf(p, sizeof(p), "%s/ferry-test", tmp);
	cr_assert_str_eq(b.dir, p);
	struct stat st;
	cr_assert_eq(stat(b.dir, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	snprintf(p, sizeof(p), "%s/0", b.dir);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);

	/* Run from a POSIX sh login shell: not bash.  The name exists now
	 * in the first place tried: another place is used, never it. */
	ferry__buf_reset(&out);
	char *argv2[] = {"dash", "-c", (char *)req.data, NULL};
	run_capture(argv2, home, tmp, &out);
	ferry__sh_boot b2;
	cr_assert_eq(ferry__sh_parse_boot(out.data, out.len, MARK, &b2), 0);
	cr_assert(b2.have_sh);
	cr_assert_not(b2.bash);
	if (b2.dir) {
		cr_assert_str_neq(b2.dir, b.dir);
		fx_sh("rm -rf '%s'", b2.dir);
	}
	ferry__sh_boot_free(&b2);

	/* The snapshot carries the profile's state into a plain bash -c. */
	local l;
	local_init(&l);
	free(l.dir);
	l.dir = strdup(b.dir);
	local_run(&l, "echo \"$PROFILE_VAR\"; pf a; pa", "/", "0", "1", NULL,
	          0);
	cr_assert_str_eq((char *)l.out.data, "from profile\npf a\nalias-ok\n");
	local_free(&l);

	ferry__sh_boot_free(&b);
	ferry__buf_free(&req);
	ferry__buf_free(&out);
	fx_sh("rm -rf '%s' '%s'", home, tmp);
	free(home);
	free(tmp);
}

Test(shell, probe)
{
	ferry_buf req = FERRY_BUF_INIT, out = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_probe(&req, 0), 0);
	char *argv[] = {"sh", "-c", (char *)req.data, NULL};
	cr_assert_eq(run_capture(argv, NULL, NULL, &out), 0);
	char *cwd = NULL;
	cr_assert_eq(ferry__sh_parse_probe(out.data, out.len, MARK, &cwd), 0);
	cr_assert_not_null(cwd);
	cr_assert_eq(cwd[0], '/');
	ferry__free(cwd);
	/* it says what the login shell is (sh: not bash) */
	ferry__sh_boot b;
	cr_assert_eq(ferry__sh_parse_boot(out.data, out.len, MARK, &b), 0);
	cr_assert(b.have_sh);
	cr_assert_not(b.bash);
	ferry__sh_boot_free(&b);
	cr_assert_eq(ferry__sh_parse_probe("nothing", 7, MARK, &cwd), 0);
	cr_assert_null(cwd);
	ferry__buf_free(&req);
	ferry__buf_free(&out);
}

Test(shell, kill_script_stops_a_process_group)
{
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		setsid();
		/* a shell that ignores nothing, with a child */
		execlp("bash", "bash", "-c", "sleep 1000 & sleep 1001; wait",
		       (char *)NULL);
		_exit(127);
	}
	usleep(200 * 1000);
	ferry_buf req = FERRY_BUF_INIT, out = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_kill(&req, (long)pid), 0);
	char *argv[] = {"sh", "-c", (char *)req.data, NULL};
	cr_assert_eq(run_capture(argv, NULL, NULL, &out), 0);
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st));
	/* its children: TERM went to the whole group (zombies aside) */
	char *left = fx_sh_out("ps -eo pgid=,stat= | awk '$1 == %ld && $2 !~ "
	                       "/Z/' | wc -l",
	                       (long)pid);
	cr_assert_not_null(left);
	cr_assert_eq(strtol(left, NULL, 10), 0,
	             "processes left in the group: %s", left);
	free(left);
	cr_assert_eq(ferry__sh_kill(&req, 1), FERRY_EINVALID);
	ferry__buf_free(&req);
	ferry__buf_free(&out);
}

Test(shell, cleanup_script)
{
	char *d = fx_tmpdir("clean");
	cr_assert_eq(fx_write_in(d, "0", "x", 0600), 0);
	ferry_buf req = FERRY_BUF_INIT, out = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_cleanup(&req, d), 0);
	char *argv[] = {"sh", "-c", (char *)req.data, NULL};
	cr_assert_eq(run_capture(argv, NULL, NULL, &out), 0);
	cr_assert_neq(access(d, F_OK), 0);
	free(d);
	ferry__buf_free(&req);
	ferry__buf_free(&out);
}

Test(shell, bootstrap_with_the_first_command)
{
	char *home = fx_tmpdir("home");
	char *tmp = fx_tmpdir("tmp");
	cr_assert_eq(fx_write_in(home, ".bash_profile",
	                         "export PV=from-profile; echo noise\n", 0644),
	             0);
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.command = "printf '%s' \"$PV\"; export NEW=1; cd /tmp";
	c.snap_dst_boot = "1";
	c.stderr_header = 1;
	ferry_buf req = FERRY_BUF_INIT, out = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_bootstrap_with(&req, "ferry-t2", &c), 0);
	char *argv[] = {"dash", "-c", (char *)req.data, NULL};
	cr_assert_eq(run_capture(argv, home, tmp, &out), 0);
	ferry__sh_filter f;
	ferry_buf user = FERRY_BUF_INIT;
	filter_all((const char *)out.data, out.len, 3, 1, &user, &f);
	cr_assert_eq(user.len, strlen("from-profile"));
	cr_assert(!memcmp(user.data, "from-profile", user.len));
	cr_assert(f.have_trailer);
	cr_assert(f.dumped);
	cr_assert_str_eq(f.cwd, "/tmp");
	ferry__sh_boot b;
	cr_assert_eq(ferry__sh_parse_boot(f.noise.data, f.noise.len, MARK, &b),
	             0);
	cr_assert_not_null(b.dir);
	cr_assert_not(b.bash); /* dash was the login shell */
	/* the state after the command is in "1" */
	char p[700];
	snprintf(p, sizeof(p), "%s/1", b.dir);
	char *snap = fx_read_file(p, NULL);
	cr_assert_not_null(snap);
	cr_assert_not_null(strstr(snap, "NEW=\"1\""));
	cr_assert_not_null(strstr(snap, "PV=\"from-profile\""));
	free(snap);
	fx_sh("rm -rf '%s' '%s' '%s'", b.dir, home, tmp);
	ferry__sh_boot_free(&b);
	ferry__sh_filter_free(&f);
	ferry__buf_free(&user);
	ferry__buf_free(&req);
	ferry__buf_free(&out);
	free(home);
	free(tmp);
}

/* Random user bytes made of pieces of the marker, newlines and NULs, fed
 * in random pieces: what comes out is exactly the user's bytes. */
Test(shell, filter_random_property)
{
	static const char *pieces[] = {"\n", "\0",      MARK,
	                               ":",  "\n" MARK, "__ferry_",
	                               "x",  "12",      "\036" MARK ":"};
	uint32_t seed = 12345;
	for (int iter = 0; iter < 300; iter++) {
		ferry_buf user = FERRY_BUF_INIT, wire = FERRY_BUF_INIT;
		int k = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 40;
		for (int i = 0; i < k; i++) {
			seed = seed * 1103515245u + 12345u;
			const char *p = pieces[(seed >> 16) % 9];
			size_t n = (seed >> 16) % 9 == 1 ? 1 : strlen(p);
			/* the complete pattern followed by a valid trailer
			 * would be a trailer: the user cannot know MARK */
			if ((seed >> 16) % 9 == 8)
				n -= 1;
			ferry__buf_put(&user, p, n);
		}
		ferry__buf_put(&wire, "noise", 5);
		ferry__buf_put(&wire, MARK ":77\n", strlen(MARK ":77\n"));
		ferry__buf_put(&wire, user.data, user.len);
		const char tr[] = "\036" MARK ":0:1:/x";
		ferry__buf_put(&wire, tr, sizeof(tr)); /* with its NUL */
		ferry__buf_put(&wire, "late", 4);
		ferry__sh_filter f;
		ferry_buf out = FERRY_BUF_INIT;
		cr_assert_eq(ferry__sh_filter_init(&f, MARK, 1), 0);
		size_t off = 0;
		while (off < wire.len) {
			seed = seed * 1103515245u + 12345u;
			size_t step = 1 + (seed >> 16) % 50;
			if (step > wire.len - off)
				step = wire.len - off;
			cr_assert_eq(ferry__sh_filter_feed(&f, wire.data + off,
			                                   step, collect, &out),
			             0);
			off += step;
		}
		ferry__sh_filter_finish(&f, collect, &out);
		cr_assert(f.have_trailer, "iteration %d", iter);
		cr_assert_str_eq(f.cwd, "/x");
		cr_assert_eq(out.len, user.len + 4, "iteration %d", iter);
		cr_assert(!user.len || !memcmp(out.data, user.data, user.len),
		          "iteration %d", iter);
		cr_assert(!memcmp(out.data + user.len, "late", 4));
		ferry__sh_filter_free(&f);
		ferry__buf_free(&out);
		ferry__buf_free(&user);
		ferry__buf_free(&wire);
	}
}

Test(shell, bootstrap_removes_directories_of_dead_sessions)
{
	char *home = fx_tmpdir("home");
	char *tmp = fx_tmpdir("tmp");
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	char p[900];
	/* dead: a pid that cannot exist; alive: ours; foreign host; one
	 * without a pid file (an older ferry, or being created); and dead but
	 * used a minute ago (its session may connect again and take it
	 * back) */
	const char *names[] = {"ferry-dead", "ferry-alive", "ferry-otherhost",
	                       "ferry-nopid", "ferry-deadrecent"};
	for (int i = 0; i < 5; i++) {
		snprintf(p, sizeof(p), "%s/%s", tmp, names[i]);
		cr_assert_eq(mkdir(p, 0700), 0);
		char content[300];
		if (i == 0 || i == 4)
			snprintf(content, sizeof(content), "999999999 %s\n",
			         host);
		else if (i == 1)
			snprintf(content, sizeof(content), "%ld %s\n",
			         (long)getpid(), host);
		else if (i == 2)
			snprintf(content, sizeof(content),
			         "999999999 not-this-host\n");
		if (i < 3 || i == 4) {
			snprintf(p, sizeof(p), "%s/%s/pid", tmp, names[i]);
			cr_assert_eq(fx_write_file(p, content, strlen(content),
			                           0600),
			             0);
		}
	}
	/* all but the recent one last changed 20 minutes ago */
	cr_assert_eq(fx_sh("cd '%s' && touch -d '20 minutes ago' ferry-dead "
	                   "ferry-dead/pid ferry-alive ferry-alive/pid "
	                   "ferry-otherhost ferry-otherhost/pid ferry-nopid",
	                   tmp),
	             0);
	cr_assert_eq(fx_sh("cd '%s' && touch -d '1 minute ago' "
	                   "ferry-deadrecent ferry-deadrecent/pid",
	                   tmp),
	             0);
	ferry_buf req = FERRY_BUF_INIT, out = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_bootstrap(&req, "ferry-new"), 0);
	char *argv[] = {"bash", "-c", (char *)req.data, NULL};
	setenv("HOSTNAME", host, 1);
	cr_assert_eq(run_capture(argv, home, tmp, &out), 0);
	for (int i = 0; i < 5; i++) {
		snprintf(p, sizeof(p), "%s/%s", tmp, names[i]);
		cr_assert_eq(access(p, F_OK) == 0, i != 0, "%s", names[i]);
	}
	/* ours records its sshd (here: our pid, the parent of bash) */
	snprintf(p, sizeof(p), "%s/ferry-new/pid", tmp);
	char *pid = fx_read_file(p, NULL);
	cr_assert_not_null(pid);
	cr_assert_eq(strtol(pid, NULL, 10), (long)getpid());
	free(pid);
	fx_sh("rm -rf '%s' '%s'", home, tmp);
	free(home);
	free(tmp);
	ferry__buf_free(&req);
	ferry__buf_free(&out);
}

/* ---- the marker: secret, on stdin, and the last trailer counts ---------- */

/* wire = header, user, then what follows (trailers, late bytes), fed in
 * pieces of every size. */
static void filter_every_split(const char *wire, size_t n, const char *want,
                               size_t want_len, int have, int status,
                               const char *cwd)
{
	for (size_t step = 1; step <= n; step++) {
		ferry__sh_filter f;
		ferry_buf out = FERRY_BUF_INIT;
		filter_all(wire, n, step, 1, &out, &f);
		cr_assert_eq(out.len, want_len, "step %zu: %zu bytes", step,
		             out.len);
		cr_assert(!want_len || !memcmp(out.data, want, want_len),
		          "step %zu", step);
		cr_assert_eq(f.have_trailer, have, "step %zu", step);
		if (have) {
			cr_assert_eq(f.status, status, "step %zu", step);
			cr_assert_str_eq(f.cwd, cwd, "step %zu", step);
		}
		ferry__sh_filter_free(&f);
		ferry__buf_free(&out);
	}
}

/* The attack: a command prints a trailer in the old format (a marker of
 * ferry's old "__ferry_<session>_<n>" form, or any other) and exits 2.  It
 * is output, verbatim; the status is the wrapper's. */
Test(shell, forged_trailer_is_output)
{
	static const char forged[] =
	        "log line\n\n__ferry_3f2a9c0d1e2b4a5f_17"
	        ":0:0:/tmp\0more log\n\n"
	        "0123456789abcdef0123456789abcdee:0:1:/x\0";
	char wire[512];
	size_t n = 0;
	n += (size_t)snprintf(wire, sizeof(wire), MARK ":77\n");
	memcpy(wire + n, forged, sizeof(forged) - 1);
	n += sizeof(forged) - 1;
	const char tr[] = "\036" MARK ":2:1:/home/u";
	memcpy(wire + n, tr, sizeof(tr)); /* with its NUL */
	n += sizeof(tr);
	filter_every_split(wire, n, forged, sizeof(forged) - 1, 1, 2,
	                   "/home/u");
}

/* A trailer with the right marker that is not the last one (only the
 * command itself could print it) is output too, and so is everything
 * between it and the last one. */
Test(shell, only_the_last_trailer_counts)
{
	char wire[512], want[512];
	size_t n = 0, w = 0;
	n += (size_t)snprintf(wire, sizeof(wire), MARK ":77\n");
	const char user[] = "a\n\036" MARK ":0:1:/tmp";
	const char between[] = "between\n\n\036" MARK ":1:0:/";
	memcpy(wire + n, user, sizeof(user)); /* with the NUL */
	n += sizeof(user);
	memcpy(wire + n, between, sizeof(between));
	n += sizeof(between);
	memcpy(want + w, user, sizeof(user));
	w += sizeof(user);
	memcpy(want + w, between, sizeof(between));
	w += sizeof(between);
	const char tr[] = "\036" MARK ":2:1:/real";
	memcpy(wire + n, tr, sizeof(tr));
	n += sizeof(tr);
	/* late bytes of a background child after the last trailer */
	memcpy(wire + n, "late", 4);
	n += 4;
	memcpy(want + w, "late", 4);
	w += 4;
	filter_every_split(wire, n, want, w, 1, 2, "/real");

	/* Without the real one at the end (the command was killed): no
	 * trailer at all, every byte is output. */
	n = (size_t)snprintf(wire, sizeof(wire), MARK ":77\n");
	memcpy(wire + n, user, sizeof(user));
	n += sizeof(user);
	memcpy(wire + n, "x", 1);
	n += 1;
	ferry__sh_filter f;
	ferry_buf out = FERRY_BUF_INIT;
	filter_all(wire, n, 3, 1, &out, &f);
	cr_assert(f.have_trailer); /* it was the last: it stands */
	cr_assert_eq(f.status, 0);
	cr_assert_eq(out.len, strlen("a\n") + 1);
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);
	/* killed while a candidate was held: no trailer, late bytes out */
	cr_assert_eq(ferry__sh_filter_init(&f, MARK, 1), 0);
	cr_assert_eq(ferry__sh_filter_feed(&f, wire, n, collect, &out), 0);
	cr_assert(f.have_cand);
	ferry__sh_filter_flush(&f, collect, &out);
	cr_assert_eq(ferry__sh_filter_finish(&f, collect, &out), 0);
	cr_assert_not(f.have_trailer);
	cr_assert_eq(out.len, 3);
	cr_assert(!memcmp(out.data, "a\nx", 3));
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);
}

/* A header in the noise with another marker is noise, not ours: the pgid
 * (what a timeout kills) comes from the real one. */
Test(shell, forged_header_is_noise)
{
	char wire[256];
	int n = snprintf(wire, sizeof(wire),
	                 "motd\n__ferry_3f2a9c0d1e2b4a5f_17:1\n"
	                 "0123456789abcdef0123456789abcdee:1\n" MARK ":4242\n"
	                 "out");
	filter_every_split(wire, (size_t)n, "out", 3, 0, 0, NULL);
	ferry__sh_filter f;
	ferry_buf out = FERRY_BUF_INIT;
	filter_all(wire, (size_t)n, 5, 1, &out, &f);
	cr_assert_eq(f.pgid, 4242);
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);
}

/* No script ferry sends holds its marker: it comes on stdin. */
Test(shell, marker_is_not_in_any_script)
{
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.command = "true";
	c.cwd = "/tmp";
	c.snap_src = "/d/0";
	c.snap_dst = "/d/1";
	c.stderr_header = 1;
	for (int inv = 0; inv < 3; inv++) {
		ferry_buf req = FERRY_BUF_INIT;
		c.invoke = inv;
		cr_assert_eq(ferry__sh_wrapper(&req, &c), 0);
		cr_assert_null(strstr((char *)req.data, MARK));
		cr_assert_null(strstr((char *)req.data, "__ferry_mk=\""));
		ferry__buf_free(&req);
	}
	ferry_buf req = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_bootstrap_with(&req, "ferry-x", &c), 0);
	cr_assert_null(strstr((char *)req.data, MARK));
	ferry__buf_free(&req);
}

/* The wrapper run by bash, the marker and then the user's stdin on its
 * stdin: the command gets the user's bytes exactly; a forged trailer in
 * its output, with any marker, or even its own, does not change its
 * status or cwd. */
Test(shell, wrapper_reads_the_marker_then_the_user_stdin)
{
	local l;
	local_init(&l);
	char in[256];
	int k = snprintf(in, sizeof(in), MARK_IN "user line\nno newline");
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.command = "cat; exit 3";
	c.cwd = "/";
	c.invoke = FERRY__SH_BASH;
	ferry_buf req = FERRY_BUF_INIT, raw = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_wrapper(&req, &c), 0);
	char *argv[] = {"sh", "-c", (char *)req.data, NULL};
	cr_assert_eq(run_capture_in(argv, NULL, NULL, in, (size_t)k, &raw), 3);
	ferry__sh_filter f;
	ferry_buf out = FERRY_BUF_INIT;
	filter_all((const char *)raw.data, raw.len, 1, 1, &out, &f);
	cr_assert(f.have_trailer);
	cr_assert_eq(f.status, 3);
	cr_assert_eq(out.len, strlen("user line\nno newline"));
	cr_assert(!memcmp(out.data, "user line\nno newline", out.len));
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);
	ferry__buf_free(&req);
	ferry__buf_free(&raw);

	/* forged: the old format with a guessed marker, and our own */
	local_run(&l,
	          "printf 'x\\n%s:0:0:/tmp\\0' __ferry_0123456789abcdef_7; "
	          "printf '\\n%s:0:1:/tmp\\0' \"$__ferry_mk\"; printf y; "
	          "exit 2",
	          "/", "0", "1", NULL, 0);
	cr_assert_eq(l.status, 2);
	cr_assert(l.f.have_trailer);
	cr_assert_eq(l.f.status, 2);
	cr_assert_str_eq(l.f.cwd, "/");
	char want[200];
	int w = snprintf(want, sizeof(want),
	                 "x\n__ferry_0123456789abcdef_7:0:0:/tmp%c\n" MARK
	                 ":0:1:/tmp%cy",
	                 0, 0);
	cr_assert_eq(l.out.len, (size_t)w);
	cr_assert(!memcmp(l.out.data, want, (size_t)w));
	local_free(&l);
}

/* Without its marker on stdin (a startup file read it), no script runs
 * anything or prints anything: it exits FERRY__SH_NOMARK. */
Test(shell, scripts_without_a_marker_do_nothing)
{
	char *tmp = fx_tmpdir("nomark");
	char flag[700];
	snprintf(flag, sizeof(flag), "%s/ran", tmp);
	char cmd[800];
	snprintf(cmd, sizeof(cmd), "touch '%s'", flag);
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.command = cmd;
	c.invoke = FERRY__SH_BASH;
	const char *ins[] = {NULL, "short\n",
	                     "0123456789abcdef0123456789abcdeX\n",
	                     "0123456789abcdef0123456789abcdef0\n"};
	for (int i = 0; i < 4; i++) {
		ferry_buf req = FERRY_BUF_INIT, raw = FERRY_BUF_INIT;
		cr_assert_eq(ferry__sh_wrapper(&req, &c), 0);
		char *argv[] = {"sh", "-c", (char *)req.data, NULL};
		int st = run_capture_in(argv, NULL, NULL, ins[i],
		                        ins[i] ? strlen(ins[i]) : 0, &raw);
		cr_assert_eq(st, FERRY__SH_NOMARK, "case %d: %d", i, st);
		cr_assert_eq(raw.len, 0, "case %d", i);
		cr_assert_neq(access(flag, F_OK), 0, "case %d ran", i);
		ferry__buf_free(&req);
		ferry__buf_free(&raw);
	}
	fx_sh("rm -rf '%s'", tmp);
	free(tmp);
}

/* bash -l (the bootstrap, the login fallback) runs the profile with stdin
 * on /dev/null: a profile that reads stdin takes neither the marker nor
 * the user's data. */
Test(shell, login_profile_cannot_read_the_marker)
{
	char *home = fx_tmpdir("home");
	char *tmp = fx_tmpdir("tmp");
	cr_assert_eq(fx_write_in(home, ".bash_profile",
	                         "read -r stolen; export STOLEN=\"x$stolen\"\n",
	                         0644),
	             0);
	ferry__sh_cmd c;
	memset(&c, 0, sizeof(c));
	c.command = "printf '%s|' \"$STOLEN\"; cat";
	c.snap_dst_boot = "1";
	ferry_buf req = FERRY_BUF_INIT, raw = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_bootstrap_with(&req, "ferry-t3", &c), 0);
	char *argv[] = {"dash", "-c", (char *)req.data, NULL};
	const char in[] = MARK_IN "data";
	cr_assert_eq(run_capture_in(argv, home, tmp, in, strlen(in), &raw), 0);
	ferry__sh_filter f;
	ferry_buf out = FERRY_BUF_INIT;
	filter_all((const char *)raw.data, raw.len, 4, 1, &out, &f);
	cr_assert(f.have_trailer);
	cr_assert_eq(out.len, strlen("x|data"));
	cr_assert(!memcmp(out.data, "x|data", out.len));
	ferry__sh_boot b;
	cr_assert_eq(ferry__sh_parse_boot(f.noise.data, f.noise.len, MARK, &b),
	             0);
	cr_assert_not_null(b.dir);
	cr_assert(b.have_sh);
	fx_sh("rm -rf '%s'", b.dir);
	ferry__sh_boot_free(&b);
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);

	/* the login fallback's wrapper too */
	memset(&c, 0, sizeof(c));
	c.command = "printf '%s|' \"$STOLEN\"; cat";
	c.invoke = FERRY__SH_LOGIN;
	ferry__buf_reset(&req);
	ferry__buf_reset(&raw);
	cr_assert_eq(ferry__sh_wrapper(&req, &c), 0);
	cr_assert_eq(run_capture_in(argv, home, tmp, in, strlen(in), &raw), 0);
	filter_all((const char *)raw.data, raw.len, 4, 1, &out, &f);
	cr_assert(f.have_trailer);
	cr_assert_eq(out.len, strlen("x|data"));
	cr_assert(!memcmp(out.data, "x|data", out.len));
	ferry__sh_filter_free(&f);
	ferry__buf_free(&out);
	ferry__buf_free(&req);
	ferry__buf_free(&raw);
	fx_sh("rm -rf '%s' '%s'", home, tmp);
	free(home);
	free(tmp);
}

/* The reader (what a spare channel runs ahead of need) takes its head
 * (the marker, a space, the script's byte count in ten digits, a newline)
 * and the script from stdin and evals it; the rest of stdin is the
 * script's.  Bytes, not characters, in a UTF-8 locale; a short script or
 * a malformed head runs nothing. */
Test(shell, reader_runs_the_script_from_stdin_and_leaves_the_rest)
{
	ferry_buf req = FERRY_BUF_INIT, raw = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sh_reader(&req, FERRY__SH_BASH, NULL), 0);
	const char *script = "echo \"h\xc3\xa9: $__ferry_mk\"; cat; exit 4";
	char in[512];
	int k = snprintf(in, sizeof(in), MARK " %010zu\n%srest \xc3\xa9\n",
	                 strlen(script), script);
	char *argv[] = {"sh", "-c", (char *)req.data, NULL};
	setenv("LC_ALL", "C.UTF-8", 1);
	int st = run_capture_in(argv, NULL, NULL, in, (size_t)k, &raw);
	unsetenv("LC_ALL");
	cr_assert_eq(st, 4);
	const char *want = "h\xc3\xa9: " MARK "\nrest \xc3\xa9\n";
	cr_assert_eq(raw.len, strlen(want), "got '%.*s'", (int)raw.len,
	             (const char *)raw.data);
	cr_assert(!memcmp(raw.data, want, raw.len));
	static const char *const bad[] = {
	        MARK " 0000000040\necho ran\n", /* short */
	        MARK " 00000000x9\necho ran\n", /* not a count */
	        MARK " 9\necho ran; echo ran; echo ran; echo ran\n", /* width */
	        MARK "_0000000009\necho ran\n", /* no space */
	        MARK " 0000000009 echo ran\n",  /* no newline */
	        "0123456789ABCDEF0123456789abcdef 0000000009\necho ran\n",
	        MARK "\n9\necho ran\n",        /* the old head */
	        "0123 0000000009\necho ran\n", /* no marker */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ferry__buf_reset(&raw);
		st = run_capture_in(argv, NULL, NULL, bad[i], strlen(bad[i]),
		                    &raw);
		cr_assert_eq(st, FERRY__SH_NOMARK, "case %zu: status %d", i,
		             st);
		cr_assert_eq(raw.len, 0, "case %zu printed '%.*s'", i,
		             (int)raw.len, (const char *)raw.data);
	}
	ferry__buf_free(&req);
	ferry__buf_free(&raw);
}
