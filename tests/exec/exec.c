/* Tests of exec/exec.c against a real sshd.  The remote is this machine,
 * so remote processes and files are checked locally. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "exec/exec.h"
#include "exec/exec_int.h" /* op->mark: what no other account may see */
#include "ferry.h"
#include "fixture.h"
#include "alloc.h"
#include "session.h"
#include "sftp.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int run(ferry_session *s, const char *cmd, const ferry_exec_opts *o,
               ferry_exec_result *r)
{
	int rc = ferry_exec(s, cmd, o, r);
	cr_assert_eq(rc, 0, "exec '%s': %s (%s)", cmd, ferry_strerror(rc),
	             ferry_session_errmsg(s));
	return r->exit_status;
}

/* Output of a command that must succeed; caller frees. */
static char *out_of(ferry_session *s, const char *cmd)
{
	ferry_exec_result r;
	int st = run(s, cmd, NULL, &r);
	cr_assert_eq(st, 0, "'%s' exited %d: %s", cmd, st, r.output);
	char *o = strdup(r.output);
	ferry_exec_result_free(&r);
	return o;
}

/* A session to the shared server, its shell bootstrapped (what follows
 * measures commands, not the bootstrap). */
static ferry_session *booted(void)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry_exec_result r;
	run(s, "true", NULL, &r);
	ferry_exec_result_free(&r);
	return s;
}

/* The pid of the sshd process serving s. */
static long sshd_pid(ferry_session *s)
{
	char *o = out_of(s, "echo $PPID");
	long pid = strtol(o, NULL, 10);
	free(o);
	cr_assert_gt(pid, 1);
	return pid;
}

/* The SFTP client of s (asserts it opens). */
static ferry__sftp *sftp_of(ferry_session *s)
{
	ferry__sftp *sf = NULL;
	cr_assert_eq(ferry__session_sftp(s, &sf), 0, "%s",
	             ferry_session_errmsg(s));
	return sf;
}

/* A private sshd whose commands run under "env <env>" (root's own
 * environment stays untouched): ForceCommand re-runs the original
 * command. */
static void env_sshd(fx_sshd *sv, const char *env)
{
	char cfg[1400];
	snprintf(cfg, sizeof(cfg),
	         "ForceCommand exec env %s /bin/bash -c "
	         "\"$SSH_ORIGINAL_COMMAND\"\n",
	         env);
	cr_assert_eq(fx_sshd_start(sv, cfg), 0, "cannot start sshd");
}

/* A command that must succeed with exactly this output. */
static void expect_out(ferry_session *s, const char *cmd, const char *want)
{
	char *o = out_of(s, cmd);
	cr_assert_str_eq(o, want, "'%s'", cmd);
	free(o);
}

/* Live (not zombie) processes whose command line contains needle. */
static long live_procs(const char *needle)
{
	char *o = fx_sh_out("ps -eo stat=,args= | awk '$1 !~ /Z/' | "
	                    "grep -F -- '%s' | grep -v -e grep -e awk | wc -l",
	                    needle);
	cr_assert_not_null(o);
	long n = strtol(o, NULL, 10);
	free(o);
	return n;
}

/* Wait up to ms for no live process to match needle (a loaded machine
 * may take a while to reap a killed group).  Survivors are listed in the
 * failure message, then killed so that no later test or run meets them. */
static void assert_procs_gone(const char *needle, int ms)
{
	long n = live_procs(needle);
	for (int i = 0; n && i < ms / 50; i++) {
		usleep(50 * 1000);
		n = live_procs(needle);
	}
	if (!n)
		return;
	char *seen = fx_sh_out("ps -eo pid,pgid,stat,args | grep -F -- '%s' "
	                       "| grep -v grep",
	                       needle);
	fx_sh("pkill -KILL -f -- '%s'", needle);
	cr_assert_fail("%ld process(es) of the command survived %d ms:\n%s", n,
	               ms, seen ? seen : "?");
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	cr_assert_not_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* ---- the session-shell contract ----------------------------------------- */

Test(exec, printf_is_exact_and_state_persists)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry_exec_result r;
	run(s, "printf x", NULL, &r);
	cr_assert_eq(r.output_len, 1);
	cr_assert_str_eq(r.output, "x");
	cr_assert_not_null(r.cwd);
	char *home = strdup(r.cwd);
	ferry_exec_result_free(&r);

	char *dir = fx_tmpdir("cwd");
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
	         "export FERRY_T_VAR='a b'; ft(){ echo \"ft:$1\"; }; "
	         "alias fa='echo alias-ok'; cd '%s'",
	         dir);
	cr_assert_eq(run(s, cmd, NULL, &r), 0);
	char real[1024];
	cr_assert_not_null(realpath(dir, real));
	cr_assert_str_eq(r.cwd, real);
	ferry_exec_result_free(&r);

	char *o = out_of(s, "echo \"$FERRY_T_VAR\"; ft 1; fa; pwd");
	char want[1200];
	snprintf(want, sizeof(want), "a b\nft:1\nalias-ok\n%s\n", real);
	cr_assert_str_eq(o, want);
	free(o);

	/* cd into a missing directory: 126, cwd unchanged */
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.cwd = "/nonexistent/ferry";
	cr_assert_eq(run(s, "echo never", &eo, &r), 126);
	cr_assert_null(strstr(r.output, "never"));
	cr_assert_str_eq(r.cwd, real);
	ferry_exec_result_free(&r);
	o = out_of(s, "pwd");
	snprintf(want, sizeof(want), "%s\n", real);
	cr_assert_str_eq(o, want);
	free(o);

	/* the session cwd removed under us: 126 until a cwd is given */
	cr_assert_eq(fx_sh("rmdir '%s'", dir), 0);
	cr_assert_eq(run(s, "true", NULL, &r), 126);
	ferry_exec_result_free(&r);
	eo.cwd = home;
	cr_assert_eq(run(s, "true", &eo, &r), 0);
	cr_assert_str_eq(r.cwd, home);
	ferry_exec_result_free(&r);

	/* "cd -" works across commands: OLDPWD is the user's */
	expect_out(s, "cd /tmp && cd / && cd - >/dev/null && pwd", "/tmp\n");
	free(home);
	free(dir);
	ferry_session_close(s);
}

/* The first command tells the session its login directory (the login
 * shell's cd -P .), with no SFTP channel and no round trip of its own;
 * "~" as a cwd is that directory. */
Test(exec, first_command_learns_the_login_directory)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry_session_info in;
	cr_assert_eq(ferry_session_info_get(&in, s), 0);
	cr_assert_null(in.home);
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.cwd = "/tmp";
	ferry_exec_result r;
	cr_assert_eq(run(s, "true", &eo, &r), 0);
	ferry_exec_result_free(&r);
	cr_assert_eq(ferry_session_info_get(&in, s), 0);
	char want[4096];
	cr_assert_not_null(realpath(getenv("HOME"), want));
	cr_assert_not_null(in.home);
	cr_assert_str_eq(in.home, want);
	const char *home = NULL;
	cr_assert_eq(ferry_session_home(s, &home), 0);
	cr_assert_eq(home, in.home);
	cr_assert_eq(ferry_session_round_trips(s), 0, "SFTP was asked");
	eo.cwd = "~";
	cr_assert_eq(run(s, "true", &eo, &r), 0);
	cr_assert_str_eq(r.cwd, want);
	ferry_exec_result_free(&r);
	ferry_session_close(s);
}

Test(exec, exit_status_signal_and_exec)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry_exec_result r;
	cr_assert_eq(run(s, "exit 7", NULL, &r), 7);
	ferry_exec_result_free(&r);
	cr_assert_eq(run(s, "false", NULL, &r), 1);
	ferry_exec_result_free(&r);
	cr_assert_eq(run(s, "kill -9 $$", NULL, &r), 137);
	ferry_exec_result_free(&r);
	/* exec replaces the wrapper: its status, cwd unchanged */
	cr_assert_eq(run(s, "cd /tmp", NULL, &r), 0);
	ferry_exec_result_free(&r);
	cr_assert_eq(run(s, "cd /; exec sh -c 'printf y; exit 4'", NULL, &r),
	             4);
	cr_assert_str_eq(r.output, "y");
	cr_assert_str_eq(r.cwd, "/tmp");
	ferry_exec_result_free(&r);
	/* a syntax error is status 2, and the session goes on */
	cr_assert_eq(run(s, "if then", NULL, &r), 2);
	ferry_exec_result_free(&r);
	expect_out(s, "pwd", "/tmp\n");
	ferry_session_close(s);
}

Test(exec, binary_output_and_stdin)
{
	ferry_session *s = fx_connect(fx_shared());
	char *dir = fx_tmpdir("bin");
	char path[600];
	snprintf(path, sizeof(path), "%s/all", dir);
	/* every byte value, the marker's prefix, and newlines at the end */
	unsigned char data[256 * 3 + 32];
	size_t n = 0;
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 256; i++)
			data[n++] = (unsigned char)(k == 1 ? 255 - i : i);
	memcpy(data + n, "\n__ferry_\n\n", 11);
	n += 11;
	cr_assert_eq(fx_write_file(path, data, n, 0600), 0);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "cat '%s'", path);
	ferry_exec_result r;
	cr_assert_eq(run(s, cmd, NULL, &r), 0);
	cr_assert_eq(r.output_len, n);
	cr_assert(!memcmp(r.output, data, n));
	ferry_exec_result_free(&r);

	/* stdin: 1 MiB of binary through cat, and its checksum */
	size_t in_len = 1 << 20;
	unsigned char *in = malloc(in_len);
	for (size_t i = 0; i < in_len; i++)
		in[i] = (unsigned char)(i * 7 + (i >> 9));
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.stdin_data = in;
	eo.stdin_len = in_len;
	cr_assert_eq(run(s, "cat", &eo, &r), 0);
	cr_assert_eq(r.output_len, in_len);
	cr_assert(!memcmp(r.output, in, in_len));
	ferry_exec_result_free(&r);
	eo.stdin_len = 5;
	cr_assert_eq(run(s, "wc -c", &eo, &r), 0);
	cr_assert_eq(strtol(r.output, NULL, 10), 5);
	ferry_exec_result_free(&r);
	/* no stdin: EOF at once, so a reader does not hang */
	expect_out(s, "cat; echo end", "end\n");
	free(in);
	fx_sh("rm -rf '%s'", dir);
	free(dir);
	ferry_session_close(s);
}

typedef struct counter {
	uint64_t bytes[3];
	uint64_t sum;
	size_t calls;
	char first[64];
	size_t first_len;
} counter;

static void count_output(void *ctx, int stream, const void *p, size_t n)
{
	counter *c = ctx;
	cr_assert(stream == 1 || stream == 2);
	c->bytes[stream] += n;
	c->calls++;
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		c->sum += b[i];
	if (c->first_len < sizeof(c->first)) {
		size_t k = sizeof(c->first) - c->first_len;
		k = k < n ? k : n;
		memcpy(c->first + c->first_len, p, k);
		c->first_len += k;
	}
}

static long maxrss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

Test(exec, large_output_streams_in_bounded_memory)
{
	ferry_session *s = booted();
	ferry_exec_result r;
	counter c;
	memset(&c, 0, sizeof(c));
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.on_output = count_output;
	eo.ctx = &c;
	long before = maxrss_kb();
	/* 32 MiB of 'a' on stdout, one line on stderr */
	cr_assert_eq(run(s,
	                 "echo start >&2; head -c 33554432 /dev/zero | "
	                 "tr '\\0' a",
	                 &eo, &r),
	             0);
	long grown = maxrss_kb() - before;
	cr_assert_null(r.output);
	cr_assert_eq(c.bytes[1], (uint64_t)32 << 20);
	uint64_t want = ((uint64_t)32 << 20) * 'a';
	for (const char *q = "start\n"; *q; q++)
		want += (unsigned char)*q;
	cr_assert_eq(c.sum, want);
	cr_assert_eq(c.bytes[2], 6);
	cr_assert_gt(c.calls, 10, "streamed, not delivered at the end");
	if (!UNDER_ASAN)
		cr_assert_lt(grown, 12 * 1024, "memory grew by %ld KiB", grown);
	ferry_exec_result_free(&r);
	ferry_session_close(s);
}

Test(exec, cap_keeps_head_and_tail)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.output_cap = 1000;
	ferry_exec_result r;
	cr_assert_eq(run(s, "seq 1 100000", &eo, &r), 0);
	cr_assert_eq(r.output_len, 1000);
	cr_assert(r.output_truncated);
	char *full = fx_sh_out("seq 1 100000");
	size_t fl = strlen(full);
	cr_assert(!memcmp(r.output, full, 500));
	cr_assert(!memcmp(r.output + 500, full + fl - 500, 500));
	free(full);
	ferry_exec_result_free(&r);
	/* within the cap: everything, not truncated */
	cr_assert_eq(run(s, "seq 1 10", &eo, &r), 0);
	cr_assert_not(r.output_truncated);
	cr_assert_str_eq(r.output, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n");
	ferry_exec_result_free(&r);
	ferry_session_close(s);
}

Test(exec, stderr_apart_env_and_no_snapshot)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.separate_stderr = 1;
	ferry_exec_result r;
	cr_assert_eq(run(s, "echo out; echo err >&2; printf tail >&2", &eo, &r),
	             0);
	cr_assert_str_eq(r.output, "out\n");
	cr_assert_str_eq(r.err, "err\ntail");
	ferry_exec_result_free(&r);

	/* merged: both, in one buffer */
	cr_assert_eq(run(s, "echo out; echo err >&2", NULL, &r), 0);
	cr_assert_eq(r.output_len, 8);
	cr_assert_null(r.err);
	ferry_exec_result_free(&r);

	/* environment additions apply to one command */
	const char *env[] = {"FERRY_T_ENV=it's $(x)", "FERRY_T_B="};
	ferry_exec_opts ee = FERRY_EXEC_OPTS_INIT;
	ee.env = env;
	ee.env_count = 2;
	cr_assert_eq(
	        run(s, "echo \"$FERRY_T_ENV|${FERRY_T_B-unset}\"", &ee, &r), 0);
	cr_assert_str_eq(r.output, "it's $(x)|\n");
	ferry_exec_result_free(&r);
	expect_out(s, "echo \"${FERRY_T_ENV-unset}\"", "unset\n");

	/* no_snapshot: plain bash -c, the session's state untouched */
	cr_assert_eq(run(s, "export FERRY_T_S=1; cd /tmp", NULL, &r), 0);
	ferry_exec_result_free(&r);
	ferry_exec_opts ns = FERRY_EXEC_OPTS_INIT;
	ns.no_snapshot = 1;
	cr_assert_eq(run(s,
	                 "echo \"${FERRY_T_S-unset}\"; pwd; cd /; "
	                 "export FERRY_T_S=2",
	                 &ns, &r),
	             0);
	cr_assert_str_eq(r.output, "unset\n/tmp\n");
	cr_assert_str_eq(r.cwd, "/tmp");
	ferry_exec_result_free(&r);
	expect_out(s, "echo \"$FERRY_T_S\"; pwd", "1\n/tmp\n");

	/* bad input */
	const char *bad[] = {"1BAD=x"};
	ee.env = bad;
	ee.env_count = 1;
	cr_assert_eq(ferry_exec(s, "true", &ee, &r), FERRY_EINVALID);
	cr_assert_eq(ferry_exec(s, NULL, NULL, &r), FERRY_EINVALID);
	ferry_exec_opts v = FERRY_EXEC_OPTS_INIT;
	v.version = 99;
	cr_assert_eq(ferry_exec(s, "true", &v, &r), FERRY_EINVALID);
	cr_assert_eq(ferry_exec(NULL, "true", NULL, &r), FERRY_EINVALID);
	ferry_session_close(s);
}

Test(exec, quoting_of_cwd_and_command)
{
	ferry_session *s = fx_connect(fx_shared());
	char *base = fx_tmpdir("q");
	char weird[800];
	snprintf(weird, sizeof(weird), "%s/it's $(touch pwned) `id` \"x\"",
	         base);
	cr_assert_eq(mkdir(weird, 0700), 0);
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.cwd = weird;
	ferry_exec_result r;
	cr_assert_eq(run(s, "printf '%s' \"$PWD\"; echo 'a'\\''b'", &eo, &r),
	             0);
	char want[900];
	snprintf(want, sizeof(want), "%sa'b\n", weird);
	cr_assert_str_eq(r.output, want);
	cr_assert_str_eq(r.cwd, weird);
	ferry_exec_result_free(&r);
	/* relative cwd: against the session cwd */
	eo.cwd = "..";
	cr_assert_eq(run(s, "pwd", &eo, &r), 0);
	snprintf(want, sizeof(want), "%s\n", base);
	cr_assert_str_eq(r.output, want);
	ferry_exec_result_free(&r);
	char *p = fx_sh_out("find '%s' -name pwned | wc -l", base);
	cr_assert_eq(strtol(p, NULL, 10), 0);
	free(p);
	fx_sh("rm -rf '%s'", base);
	free(base);
	ferry_session_close(s);
}

/* ---- timeouts, interrupts, background children -------------------------- */

Test(exec, timeout_kills_the_process_group)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.timeout_ms = 2000;
	ferry_exec_result r;
	double t0 = now_ms();
	int st = run(s,
	             "echo started; sleep 1234.51 & sleep 1234.52; echo "
	             "never",
	             &eo, &r);
	double ms = now_ms() - t0;
	cr_assert_eq(st, 124, "status %d, output: %s", st, r.output);
	cr_assert(r.timed_out);
	cr_assert_not(r.interrupted);
	cr_assert_geq(ms, 2000);
	cr_assert_lt(ms, 30000, "took %.0f ms", ms);
	cr_assert_str_eq(r.output, "started\n",
	                 "the command's output, and nothing of ferry's");
	cr_assert(r.killed, "the kill was not confirmed");
	ferry_exec_result_free(&r);
	assert_procs_gone("1234.5", 10000);
	/* the session is fine afterwards */
	expect_out(s, "echo ok", "ok\n");
	ferry_session_close(s);
}

/* Nothing arrives on the channel: only the session loop's timer layer (the
 * ops' next_timer) wakes it at the deadline, long before the next 15 s
 * keepalive would. */
Test(exec, silent_command_times_out_on_time)
{
	ferry_session *s = fx_connect(fx_shared());
	char *o = out_of(s, "true");
	free(o);
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.timeout_ms = 300;
	ferry_exec_result r;
	double t0 = now_ms();
	int st = run(s, "sleep 1234.71", &eo, &r);
	double ms = now_ms() - t0;
	cr_assert_eq(st, 124, "status %d", st);
	cr_assert(r.timed_out);
	cr_assert_geq(ms, 300);
	cr_assert_lt(ms, 5000,
	             "took %.0f ms: the deadline did not wake the "
	             "loop",
	             ms);
	ferry_exec_result_free(&r);
	assert_procs_gone("1234.71", 10000);
	ferry_session_close(s);
}

Test(exec, interrupt_kills_the_process_group)
{
	ferry_session *s = booted();
	ferry_exec_result r;
	fx_interrupter th;
	fx_interrupt_after(&th, s, 400);
	double t0 = now_ms();
	int rc = ferry_exec(s, "sleep 1234.61 & sleep 1234.62", NULL, &r);
	double ms = now_ms() - t0;
	fx_interrupt_join(&th);
	cr_assert_eq(rc, FERRY_EINTR, "rc %d", rc);
	cr_assert_eq(r.exit_status, 130);
	cr_assert(r.interrupted);
	cr_assert(r.killed, "the kill was not confirmed");
	cr_assert_not(r.timed_out);
	/* Bounds that tell the property (the sleeps would take 1234 s),
	 * not a speed: that is make bench's. */
	cr_assert_lt(ms, 10000, "took %.0f ms", ms);
	ferry_exec_result_free(&r);
	assert_procs_gone("1234.6", 10000);
	expect_out(s, "echo ok", "ok\n");
	ferry_session_close(s);
}

Test(exec, background_child_holding_stdout_returns_fast)
{
	ferry_session *s = booted();
	ferry_exec_result r;
	double t0 = now_ms();
	cr_assert_eq(run(s, "sleep 1234.71 & echo $!", NULL, &r), 0);
	double ms = now_ms() - t0;
	cr_assert_lt(ms, 10000, "took %.0f ms", ms);
	long pid = strtol(r.output, NULL, 10);
	cr_assert_gt(pid, 1);
	kill((pid_t)pid, SIGTERM);
	ferry_exec_result_free(&r);
	expect_out(s, "echo next", "next\n");
	ferry_session_close(s);
}

/* Bytes a background child writes after the trailer are late output; the
 * trailer still counts (status, cwd), whether they are a few or more than
 * ferry holds back after a trailer, and the call returns at the drain. */
Test(exec, late_output_after_the_trailer_keeps_the_status)
{
	ferry_session *s = booted();
	ferry_exec_result r;
	cr_assert_eq(
	        run(s, "cd /tmp; { sleep 0.1; echo late; } & exit 5", NULL, &r),
	        5);
	cr_assert_str_eq(r.output, "late\n");
	cr_assert_str_eq(r.cwd, "/tmp");
	ferry_exec_result_free(&r);
	double t0 = now_ms();
	cr_assert_eq(run(s,
	                 "cd /; { sleep 0.1; head -c 400000 /dev/zero | tr "
	                 "'\\0' b; sleep 1234.97; } & exit 6",
	                 NULL, &r),
	             6);
	double ms = now_ms() - t0;
	cr_assert_lt(ms, 10000, "took %.0f ms", ms);
	cr_assert_str_eq(r.cwd, "/");
	cr_assert_gt(r.output_len, 256 << 10, "%zu bytes", r.output_len);
	for (size_t i = 0; i < r.output_len; i++)
		cr_assert_eq(r.output[i], 'b', "byte %zu", i);
	ferry_exec_result_free(&r);
	fx_sh("pkill -f 'sleep 1234.97'");
	expect_out(s, "pwd", "/\n");
	ferry_session_close(s);
}

/* ---- channels, many commands, concurrency ------------------------------- */

/* A spare channel's reader starts ahead of need, so a command costs one
 * round trip (no wait for the server to open the channel's window): the
 * next command runs in the shell that was already waiting.  The reader
 * starts once the command before has ended (not beside it, unless that
 * one runs long), and loads the session's snapshot while it waits: the
 * next command sources nothing. */
Test(exec, the_next_command_runs_in_a_shell_started_ahead)
{
	ferry_session *s = fx_connect(fx_shared());
	long sshd = sshd_pid(s);
	ferry_exec_result r;
	cr_assert_eq(run(s, "export FERRY_AHEAD=0", NULL, &r), 0);
	ferry_exec_result_free(&r);
	/* the reader was asked for before run() returned: it starts with
	 * nobody driving the session */
	long waiting = 0;
	for (int i = 0; i < 100 && waiting <= 1; i++) {
		usleep(20000);
		char *kids =
		        fx_sh_out("ps -o pid= --ppid %ld | tr -d ' '", sshd);
		waiting = strtol(kids, NULL, 10);
		free(kids);
	}
	cr_assert_gt(waiting, 1, "no waiting shell under sshd %ld", sshd);
	ferry__exec_info in;
	ferry__exec_info_get(s, &in);
	cr_assert(in.spare, "no spare channel");
	/* It has loaded the snapshot: the command's wrapper does not source
	 * it again (a snapshot changed behind its back now goes unseen). */
	cr_assert_not_null(in.snapshot_dir);
	usleep(100000);
	fx_sh("for f in '%s'/[0-9]; do echo 'export FERRY_AHEAD=again' "
	      ">\"$f\"; "
	      "done",
	      in.snapshot_dir);
	char *pid =
	        out_of(s, "echo $$ ${FERRY_AHEAD-unset} ${__ferry_pre-none}");
	char want[64];
	snprintf(want, sizeof(want), "%ld 0 none\n", waiting);
	cr_assert_str_eq(
	        pid, want,
	        "the command ran as '%s', not in the waiting shell %ld "
	        "with the session's state",
	        pid, waiting);
	free(pid);
	/* and it kept the session's state like any other command */
	cr_assert_eq(run(s,
	                 "cd /tmp && export FERRY_AHEAD=1 && f() { echo f$1; }",
	                 NULL, &r),
	             0);
	ferry_exec_result_free(&r);
	usleep(200000);
	cr_assert_eq(
	        run(s, "echo $FERRY_AHEAD; f 2; unset FERRY_AHEAD; unset -f f",
	            NULL, &r),
	        0);
	cr_assert_str_eq(r.output, "1\nf2\n");
	cr_assert_str_eq(r.cwd, "/tmp");
	ferry_exec_result_free(&r);
	usleep(200000);
	/* what the last command removed is gone from the next one's shell,
	 * loaded ahead or not */
	cr_assert_eq(run(s,
	                 "echo ${FERRY_AHEAD-unset}; type f >/dev/null 2>&1 "
	                 "|| echo nof",
	                 NULL, &r),
	             0);
	cr_assert_str_eq(r.output, "unset\nnof\n");
	ferry_exec_result_free(&r);
	ferry_session_close(s);
}

Test(exec, many_commands_leave_nothing_behind)
{
	ferry_session *s = fx_connect(fx_shared());
	long sshd = sshd_pid(s);
	int fds = count_fds();
	ferry__exec_info in;
	ferry__exec_info_get(s, &in);
	char dir[600];
	snprintf(dir, sizeof(dir), "%s", in.snapshot_dir);
	for (int i = 0; i < 200; i++) {
		ferry_exec_result r;
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "echo %d", i);
		cr_assert_eq(run(s, cmd, NULL, &r), 0);
		cr_assert_eq(strtol(r.output, NULL, 10), i);
		ferry_exec_result_free(&r);
	}
	cr_assert_eq(count_fds(), fds);
	ferry__exec_info_get(s, &in);
	cr_assert_eq(in.ops, 0);
	cr_assert_leq(in.channels, 3, "%u channels held", in.channels);
	cr_assert_eq(in.commands, 201);
	/* No process under our sshd session but the spare's reader (whose
	 * start the session may not have seen yet, as the last command's
	 * shell may not have exited yet: a while to settle), a bounded
	 * snapshot directory. */
	long left = -1;
	for (int i = 0; i < 150 && (left < 0 || left > 1); i++) {
		if (i)
			usleep(20 * 1000);
		char *kids = fx_sh_out(
		        "ps -o stat= --ppid %ld | grep -v Z | wc -l", sshd);
		left = strtol(kids, NULL, 10);
		free(kids);
	}
	cr_assert_leq(left, 1, "processes left: %ld", left);
	char *files = fx_sh_out("ls -A '%s' | wc -l", dir);
	cr_assert_leq(strtol(files, NULL, 10), 3);
	free(files);
	ferry_session_close(s);
	/* the snapshot goes with the session */
	struct stat st;
	cr_assert_neq(stat(dir, &st), 0, "%s still exists", dir);
}

Test(exec, four_commands_at_once)
{
	ferry_session *s = booted();
	ferry_exec_result r;
	ferry__exec_op *ops[4];
	double t0 = now_ms();
	for (int i = 0; i < 4; i++) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd),
		         "sleep 1.5; echo cmd%d; echo e%d >&2; exit %d", i, i,
		         10 + i);
		ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
		eo.separate_stderr = 1;
		cr_assert_eq(ferry__exec_start(s, cmd, &eo, &ops[i]), 0);
	}
	cr_assert_eq(ferry__exec_wait(s, ops, 4, 0), 0);
	double ms = now_ms() - t0;
	/* One after the other would take 6 s. */
	cr_assert_lt(ms, 5000, "took %.0f ms: not concurrent", ms);
	for (int i = 0; i < 4; i++) {
		cr_assert(ferry__exec_done(ops[i]));
		cr_assert_eq(ferry__exec_finish(ops[i], &r), 0);
		char want[32];
		snprintf(want, sizeof(want), "cmd%d\n", i);
		cr_assert_str_eq(r.output, want);
		snprintf(want, sizeof(want), "e%d\n", i);
		cr_assert_str_eq(r.err, want);
		cr_assert_eq(r.exit_status, 10 + i);
		ferry_exec_result_free(&r);
	}
	/* one of several timing out alone */
	ferry_exec_opts slow = FERRY_EXEC_OPTS_INIT;
	slow.timeout_ms = 300;
	cr_assert_eq(ferry__exec_start(s, "sleep 1234.81", &slow, &ops[0]), 0);
	cr_assert_eq(
	        ferry__exec_start(s, "sleep 0.6; echo fine", NULL, &ops[1]), 0);
	cr_assert_eq(ferry__exec_wait(s, ops, 2, 0), 0);
	cr_assert_eq(ferry__exec_finish(ops[0], &r), 0);
	cr_assert_eq(r.exit_status, 124);
	ferry_exec_result_free(&r);
	cr_assert_eq(ferry__exec_finish(ops[1], &r), 0);
	cr_assert_eq(r.exit_status, 0);
	cr_assert_str_eq(r.output, "fine\n");
	ferry_exec_result_free(&r);
	assert_procs_gone("1234.81", 10000);
	/* one cancelled: 130 and gone, the other unaffected */
	cr_assert_eq(ferry__exec_start(s, "sleep 1234.82", NULL, &ops[0]), 0);
	cr_assert_eq(
	        ferry__exec_start(s, "sleep 0.3; echo other", NULL, &ops[1]),
	        0);
	ferry__exec_wait(s, ops, 2, (int64_t)ferry__now_ms() + 150);
	ferry__exec_cancel(ops[0]);
	cr_assert_eq(ferry__exec_wait(s, ops, 2, 0), 0);
	cr_assert_eq(ferry__exec_finish(ops[0], &r), FERRY_EINTR);
	cr_assert_eq(r.exit_status, 130);
	cr_assert(r.interrupted);
	ferry_exec_result_free(&r);
	cr_assert_eq(ferry__exec_finish(ops[1], &r), 0);
	cr_assert_str_eq(r.output, "other\n");
	ferry_exec_result_free(&r);
	assert_procs_gone("1234.82", 10000);
	ferry_session_close(s);
}

typedef struct upload_state {
	int done;
	int error;
	uint64_t bytes;
} upload_state;

static void upload_done(void *ctx, const ferry__sftp_upload_result *r)
{
	upload_state *u = ctx;
	u->done = 1;
	u->error = r->error;
	u->bytes = r->bytes;
}

static int gen_read(void *ctx, void *buf, size_t n, uint64_t off)
{
	(void)ctx;
	unsigned char *b = buf;
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((off + i) * 31);
	return 0;
}

Test(exec, runs_while_a_push_is_in_flight)
{
	ferry_session *s = booted();
	ferry_exec_result r;
	ferry__sftp *sf = sftp_of(s);
	char *dir = fx_tmpdir("push");
	char path[600];
	snprintf(path, sizeof(path), "%s/big", dir);
	upload_state u = {0, 0, 0};
	ferry__sftp_upload_opts uo;
	memset(&uo, 0, sizeof(uo));
	uo.path = path;
	uo.read = gen_read;
	uo.size = (uint64_t)256 << 20;
	uo.done = upload_done;
	uo.ctx = &u;
	cr_assert_eq(ferry__sftp_upload(sf, &uo), 0);
	/* let the upload get going, then run commands through it */
	ferry__sftp_run(sf, NULL, NULL, (int64_t)ferry__now_ms() + 30);
	cr_assert_not(u.done, "the upload finished too soon to tell");
	double worst = 0;
	for (int i = 0; i < 3; i++) {
		double t0 = now_ms();
		cr_assert_eq(run(s, "printf x", NULL, &r), 0);
		double ms = now_ms() - t0;
		worst = ms > worst ? ms : worst;
		cr_assert_str_eq(r.output, "x");
		ferry_exec_result_free(&r);
	}
	/* Not waiting for the upload is the property; how long a command
	 * takes on a loaded machine is make bench's business. */
	cr_assert_not(u.done, "exec waited for the upload (%.0f ms)", worst);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	cr_assert(u.done);
	cr_assert_eq(u.error, 0);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, uo.size);
	fx_sh("rm -rf '%s'", dir);
	free(dir);
	ferry_session_close(s);
}

/* ---- accounts with unusual shells --------------------------------------- */

/* A session to a private sshd whose commands run with HOME=home, a new
 * directory holding one dotfile (root's own dotfiles stay untouched). */
static ferry_session *home_connect(fx_sshd *sv, char **home, const char *name,
                                   const char *text, int source_bashrc)
{
	*home = fx_tmpdir("home");
	cr_assert_eq(fx_write_in(*home, name, text, 0644), 0);
	char env[700];
	snprintf(env, sizeof(env), "HOME='%s'%s", *home,
	         source_bashrc ? " SHLVL=0" : "");
	env_sshd(sv, env);
	return fx_connect(sv);
}

/* Close s, stop the private sv and remove dir (freed). */
static void close_all(ferry_session *s, fx_sshd *sv, char *dir)
{
	ferry_session_close(s);
	fx_sshd_stop(sv);
	fx_sh("rm -rf '%s'", dir);
	free(dir);
}

Test(exec, broken_login_profile_falls_back)
{
	fx_sshd sv;
	char *home;
	ferry_session *s = home_connect(&sv, &home, ".bash_profile",
	                                "echo profile runs; exit 3\n", 0);
	expect_out(s, "printf x; cd /tmp", "x");
	ferry__exec_info in;
	ferry__exec_info_get(s, &in);
	cr_assert_eq(in.mode, FERRY__EXEC_MODE_PLAIN);
	cr_assert(in.direct, "the login shell is bash: no second bash");
	cr_assert_null(in.snapshot_dir);
	/* cwd is still followed; variables are not */
	expect_out(s, "pwd; export V=1", "/tmp\n");
	expect_out(s, "echo \"${V-unset}\"", "unset\n");
	close_all(s, &sv, home);
}

Test(exec, chatty_bashrc_does_not_reach_the_output)
{
	fx_sshd sv;
	char *home;
	ferry_session *s =
	        home_connect(&sv, &home, ".bashrc",
	                     "echo BASHRC-NOISE; echo bashrc-err >&2\n", 1);
	ferry_exec_result r;
	expect_out(s, "printf x", "x");
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.separate_stderr = 1;
	cr_assert_eq(run(s, "echo o; echo e >&2", &eo, &r), 0);
	cr_assert_str_eq(r.output, "o\n");
	cr_assert_str_eq(r.err, "e\n");
	ferry_exec_result_free(&r);
	ferry__exec_info in;
	ferry__exec_info_get(s, &in);
	cr_assert_eq(in.mode, FERRY__EXEC_MODE_SNAPSHOT);
	/* SFTP on the same account: the clear diagnostic */
	ferry__sftp *sf = NULL;
	int e = ferry__session_sftp(s, &sf);
	cr_assert_neq(e, 0);
	cr_assert_not_null(strstr(ferry_session_errmsg(s), "printed text"),
	                   "%s", ferry_session_errmsg(s));
	/* and exec still works after that */
	expect_out(s, "echo still", "still\n");
	close_all(s, &sv, home);
}

static void small_done(void *ctx, const ferry__sftp_upload_result *r)
{
	int *st = ctx;
	*st = r->error ? r->error : 1;
}

Test(exec, sftp_only_account)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, "ForceCommand internal-sftp\n"), 0);
	ferry_session *s = fx_connect(&sv);
	ferry_exec_result r;
	double t0 = now_ms();
	int rc = ferry_exec(s, "echo hi", NULL, &r);
	cr_assert_eq(rc, FERRY_EREMOTE, "rc %d", rc);
	cr_assert_not_null(strstr(ferry_session_errmsg(s), "SFTP-only"), "%s",
	                   ferry_session_errmsg(s));
	cr_assert_eq(r.exit_status, 255);
	cr_assert_lt(now_ms() - t0, 5000);
	ferry_exec_result_free(&r);
	/* fails fast the second time */
	t0 = now_ms();
	cr_assert_eq(ferry_exec(s, "echo hi", NULL, &r), FERRY_EREMOTE);
	cr_assert_lt(now_ms() - t0, 1000); /* no network wait */
	ferry_exec_result_free(&r);
	/* the push side works on the same session */
	ferry__sftp *sf = sftp_of(s);
	char *dir = fx_tmpdir("sftponly");
	char path[600];
	snprintf(path, sizeof(path), "%s/f", dir);
	int st = 0;
	ferry__sftp_upload_opts uo;
	memset(&uo, 0, sizeof(uo));
	uo.path = path;
	uo.data = "hello";
	uo.size = 5;
	uo.done = small_done;
	uo.ctx = &st;
	cr_assert_eq(ferry__sftp_upload(sf, &uo), 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	cr_assert_eq(st, 1);
	size_t len = 0;
	char *got = fx_read_file(path, &len);
	cr_assert_str_eq(got, "hello");
	free(got);
	close_all(s, &sv, dir);
}

/* ---- failures
 * ---------------------------------------------------------------- */

typedef struct killer_arg {
	long pid;
	int ms;
} killer_arg;

static void *kill_later(void *p)
{
	killer_arg *a = p;
	usleep((useconds_t)a->ms * 1000);
	kill((pid_t)a->pid, SIGKILL);
	return NULL;
}

static void grab_pid(void *ctx, int stream, const void *p, size_t n)
{
	long *pid = ctx;
	char buf[32];
	if (stream != 1 || *pid || n >= sizeof(buf))
		return;
	memcpy(buf, p, n);
	buf[n] = '\0';
	*pid = strtol(buf, NULL, 10);
}

Test(exec, lost_connection_fails_cleanly)
{
	ferry_session *s = fx_connect(fx_shared());
	long sshd = sshd_pid(s);
	killer_arg a = {sshd, 300};
	pthread_t th;
	pthread_create(&th, NULL, kill_later, &a);
	long child = 0;
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.on_output = grab_pid;
	eo.ctx = &child;
	ferry_exec_result r;
	double t0 = now_ms();
	int rc = ferry_exec(s, "sleep 1234.41 & echo $!; wait", &eo, &r);
	double ms = now_ms() - t0;
	pthread_join(th, NULL);
	if (child > 1)
		kill((pid_t)child, SIGKILL);
	cr_assert(rc == FERRY_EEOF || rc == FERRY_ECONN, "rc %d (%s)", rc,
	          ferry_session_errmsg(s));
	cr_assert_eq(r.exit_status, 255);
	cr_assert_lt(ms, 5000, "took %.0f ms", ms);
	ferry_exec_result_free(&r);
	/* later calls fail at once */
	t0 = now_ms();
	rc = ferry_exec(s, "true", NULL, &r);
	cr_assert(rc == FERRY_ECONN || rc == FERRY_EEOF, "rc %d", rc);
	cr_assert_lt(now_ms() - t0, 1000); /* no network wait */
	ferry_exec_result_free(&r);
	ferry_session_close(s);
}

Test(exec, allocation_failures_are_errors_not_crashes)
{
	ferry_session *s = fx_connect(fx_shared());
	int failed = 0, ok = 0;
	for (unsigned long n = 1; n <= 80; n++) {
		ferry__exec_info in;
		ferry__exec_info_get(s, &in);
		if (in.mode == FERRY__EXEC_MODE_FAILED) {
			/* a failed bootstrap is sticky: a new session */
			ferry_session_close(s);
			s = fx_connect(fx_shared());
		}
		ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
		const char *env[] = {"A=1"};
		eo.env = env;
		eo.env_count = 1;
		eo.output_cap = 64;
		ferry_exec_result r;
		ferry__alloc_fail_at(n);
		int rc = ferry_exec(s, "echo $A; cd /tmp", &eo, &r);
		ferry__alloc_fail_at(0);
		if (rc == 0) {
			ok++;
			cr_assert_eq(r.exit_status, 0);
			cr_assert_str_eq(r.output, "1\n");
		} else {
			failed++;
			cr_assert(rc == FERRY_ENOMEM || rc == FERRY_EREMOTE,
			          "n=%lu rc=%d %s", n, rc,
			          ferry_session_errmsg(s));
		}
		ferry_exec_result_free(&r);
	}
	cr_assert_gt(failed, 0);
	cr_assert_gt(ok, 0);
	/* and the session still works */
	ferry__alloc_fail_at(0);
	ferry_exec_result r;
	cr_assert_eq(ferry_exec(s, "printf x", NULL, &r), 0, "%s",
	             ferry_session_errmsg(s));
	cr_assert_str_eq(r.output, "x");
	ferry_exec_result_free(&r);
	ferry_session_close(s);
}

Test(exec, long_commands_go_through_a_file)
{
	ferry_session *s = fx_connect(fx_shared());
	size_t n = 200000;
	char *cmd = malloc(n + 64);
	int k = snprintf(cmd, 64, "cd /tmp; printf %%s '");
	memset(cmd + k, 'x', n);
	memcpy(cmd + k + n, "'; exit 3", 10);
	ferry_exec_result r;
	cr_assert_eq(run(s, cmd, NULL, &r), 3);
	cr_assert_eq(r.output_len, n);
	cr_assert_eq(r.output[0], 'x');
	cr_assert_eq(r.output[n - 1], 'x');
	cr_assert_str_eq(r.cwd, "/tmp");
	ferry_exec_result_free(&r);
	/* twice (the file is reused), then a short one */
	cmd[k] = 'y';
	cr_assert_eq(run(s, cmd, NULL, &r), 3);
	cr_assert_eq(r.output_len, n);
	cr_assert_eq(r.output[0], 'y');
	ferry_exec_result_free(&r);
	expect_out(s, "pwd", "/tmp\n");
	ferry__exec_info in;
	ferry__exec_info_get(s, &in);
	char *files = fx_sh_out("ls -A '%s' | wc -l", in.snapshot_dir);
	cr_assert_leq(strtol(files, NULL, 10), 4);
	free(files);
	free(cmd);
	ferry_session_close(s);
}

static long count_entries(const char *dir)
{
	char *o = fx_sh_out("ls -A '%s' | wc -l", dir);
	long n = strtol(o, NULL, 10);
	free(o);
	return n;
}

Test(exec, prepare_and_close_leave_no_directory)
{
	/* A server whose sessions keep their snapshot in a directory of
	 * this test's own. */
	char *run_dir = fx_tmpdir("xdg");
	char env[700];
	snprintf(env, sizeof(env), "XDG_RUNTIME_DIR='%s'", run_dir);
	fx_sshd sv;
	env_sshd(&sv, env);

	/* closed while the bootstrap is in flight */
	ferry_session *s = fx_connect(&sv);
	cr_assert_eq(ferry__exec_prepare(s), 0);
	ferry_session_close(s);
	cr_assert_eq(count_entries(run_dir), 0);

	/* prepared, then used: the snapshot lives in XDG_RUNTIME_DIR */
	s = fx_connect(&sv);
	cr_assert_eq(ferry__exec_prepare(s), 0);
	expect_out(s, "printf x", "x");
	ferry__exec_info in;
	ferry__exec_info_get(s, &in);
	cr_assert_not_null(in.snapshot_dir);
	cr_assert_eq(strncmp(in.snapshot_dir, run_dir, strlen(run_dir)), 0,
	             "%s", in.snapshot_dir);
	struct stat st;
	cr_assert_eq(stat(in.snapshot_dir, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	cr_assert_eq(count_entries(run_dir), 1);
	ferry_session_close(s);
	cr_assert_eq(count_entries(run_dir), 0);
	fx_sshd_stop(&sv);
	fx_sh("rm -rf '%s'", run_dir);
	free(run_dir);
}

/* ---- results cannot be forged (issue 14, item 2) ------------------------- */

/* Processes whose command line (and environment, with env) holds needle,
 * as root sees them: every account's. */
static int procs_holding(const char *needle, int env)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;
	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		static const char *const files[] = {"cmdline", "environ"};
		for (int i = 0; i < 1 + !!env; i++) {
			char p[300];
			size_t len = 0;
			snprintf(p, sizeof(p), "/proc/%s/%s", e->d_name,
			         files[i]);
			char *b = fx_read_file(p, &len);
			if (b && len && memmem(b, len, needle, strlen(needle)))
				n++;
			free(b);
		}
	}
	closedir(d);
	return n;
}

/* Run the loop (the op goes on) until a process whose command line
 * holds needle is alive, up to 5 s. */
static void wait_running(ferry_session *s, ferry__exec_op *op,
                         const char *needle)
{
	for (int i = 0; i < 100 && !procs_holding(needle, 0); i++) {
		ferry__exec_wait(s, &op, 1, (int64_t)ferry__now_ms() + 50);
		cr_assert_not(ferry__exec_done(op), "ended early: %s",
		              ferry_session_errmsg(s));
	}
	cr_assert_gt(procs_holding(needle, 0), 0, "'%s' never ran", needle);
}

/* The attack of the issue: another account reads the marker from ps and
 * writes a trailer into a log the command prints, to turn its exit 2 into
 * 0 and move the session to /tmp.  Here "nobody" (when we are root) scans
 * every process's command line while the command waits, and writes a
 * trailer for each marker-like word it finds, plus a guess in ferry's
 * old format.  The status stays 2, the cwd stays, every byte of the log
 * is output. */
Test(exec, forged_trailer_from_another_account_is_output)
{
	ferry_session *s = booted();
	char *home = out_of(s, "pwd");
	home[strcspn(home, "\n")] = '\0';
	char tmpl[] = "/tmp/ferry-forge-XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	cr_assert_eq(chmod(tmpl, 0777), 0);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "touch '%s/log'; chmod 666 '%s/log'", tmpl,
	         tmpl);
	cr_assert_eq(fx_sh("%s", cmd), 0);
	const char *as = getuid() == 0 ? "setpriv --reuid=65534 --regid=65534 "
	                                 "--clear-groups "
	                               : "";
	if (!*as)
		cr_log_warn("not root: the attacker is this account");
	/* the attacker, for 1.5 s; then it says it is done */
	cr_assert_eq(
	        fx_sh("%ssh -c 'd=%s; printf \"\\n%%s:0:0:/tmp\\0\" "
	              "__ferry_0123456789abcdef_1 >>$d/log; i=0; "
	              "while [ $i -lt 30 ]; do cat /proc/[0-9]*/cmdline "
	              "2>/dev/null | tr \"\\0\" \"\\n\" | grep -oE "
	              "\"__ferry_[0-9a-f]+_[0-9]+|[0-9a-f]{32}\" | sort -u "
	              ">$d/seen.new; for m in $(cat $d/seen.new); do "
	              "grep -qxF $m $d/seen 2>/dev/null && continue; echo "
	              "$m >>$d/seen; printf \"\\n%%s:0:0:/tmp\\0\" $m "
	              ">>$d/log; done; sleep 0.05; i=$((i+1)); done; "
	              ">$d/done' >/dev/null 2>&1 &",
	              as, tmpl),
	        0);
	snprintf(cmd, sizeof(cmd),
	         "echo before; i=0; while [ ! -e %s/done ] && [ $i -lt 100 ]; "
	         "do sleep 0.05; i=$((i+1)); done; cat %s/log; echo after; "
	         "exit 2",
	         tmpl, tmpl);
	ferry_exec_result r;
	cr_assert_eq(run(s, cmd, NULL, &r), 2, "status %d: forged",
	             r.exit_status);
	char p[600];
	snprintf(p, sizeof(p), "%s/log", tmpl);
	size_t log_len = 0;
	char *log = fx_read_file(p, &log_len);
	cr_assert_not_null(log);
	cr_assert_gt(log_len, 0);
	cr_assert_eq(r.output_len,
	             strlen("before\n") + log_len + strlen("after\n"),
	             "output %zu bytes, log %zu", r.output_len, log_len);
	cr_assert(!memcmp(r.output, "before\n", 7));
	cr_assert(!memcmp(r.output + 7, log, log_len));
	cr_assert(!memcmp(r.output + 7 + log_len, "after\n", 6));
	cr_assert_str_eq(r.cwd, home);
	ferry_exec_result_free(&r);
	char want[700];
	snprintf(want, sizeof(want), "%s\n", home);
	expect_out(s, "pwd", want);
	free(log);
	fx_sh("rm -rf '%s'", tmpl);
	free(home);
	ferry_session_close(s);
}

/* The marker of a running command is in no process's command line or
 * environment (as root sees them: every account's), nor in the snapshot
 * directory: for the first command of a session (inside the bootstrap)
 * and for a later one. */
Test(exec, marker_is_not_visible_while_the_command_runs)
{
	for (int later = 0; later < 2; later++) {
		ferry_session *s = later ? booted() : fx_connect(fx_shared());
		const char *cmd = later ? "sleep 1.2345" : "sleep 1.2346";
		ferry__exec_op *op = NULL;
		cr_assert_eq(ferry__exec_start(s, cmd, NULL, &op), 0);
		char mark[sizeof(op->mark)];
		memcpy(mark, op->mark, sizeof(mark));
		/* sleep's own argument: the command travels on stdin */
		wait_running(s, op, cmd + 6);
		cr_assert_eq(procs_holding(mark, 1), 0,
		             "the marker '%s' of '%s' is visible in /proc",
		             mark, cmd);
		cr_assert_eq(ferry__exec_wait(s, &op, 1, 0), 0);
		ferry_exec_result r;
		cr_assert_eq(ferry__exec_finish(op, &r), 0);
		cr_assert_eq(r.exit_status, 0);
		cr_assert_eq(r.output_len, 0);
		ferry_exec_result_free(&r);
		ferry__exec_info in;
		ferry__exec_info_get(s, &in);
		cr_assert_not_null(in.snapshot_dir);
		cr_assert_neq(
		        fx_sh("grep -rqF '%s' '%s'", mark, in.snapshot_dir), 0,
		        "the marker is in a snapshot file");
		ferry_session_close(s);
	}
}

/* The fallback modes (bash -c without the snapshot, bash -l -c; direct or
 * through a second bash) read their marker too: stdin, status, cwd, and a
 * forged trailer is output. */
Test(exec, every_shell_mode_reads_its_marker)
{
	static const struct {
		int mode, direct;
	} modes[] = {{FERRY__EXEC_MODE_PLAIN, 1},
	             {FERRY__EXEC_MODE_PLAIN, 0},
	             {FERRY__EXEC_MODE_LOGIN, 0},
	             {FERRY__EXEC_MODE_SNAPSHOT, 0}};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		ferry_session *s = booted();
		exec_state *es = ferry__session_state(s, FERRY__SLOT_EXEC);
		cr_assert_not_null(es);
		es->mode = modes[i].mode;
		es->direct = modes[i].direct;
		ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
		eo.stdin_data = "in\n";
		eo.stdin_len = 3;
		ferry_exec_result r;
		cr_assert_eq(run(s,
		                 "cat; printf '\\n%s:0:1:/\\0' "
		                 "__ferry_0123456789abcdef_2; cd /tmp; exit 3",
		                 &eo, &r),
		             3, "mode %zu", i);
		char want[64];
		int n = snprintf(want, sizeof(want),
		                 "in\n\n__ferry_0123456789abcdef_2:0:1:/%c", 0);
		cr_assert_eq(r.output_len, (size_t)n, "mode %zu: %zu bytes", i,
		             r.output_len);
		cr_assert(!memcmp(r.output, want, (size_t)n), "mode %zu", i);
		cr_assert_str_eq(r.cwd, "/tmp", "mode %zu", i);
		ferry_exec_result_free(&r);
		expect_out(s, "pwd", "/tmp\n");
		ferry_session_close(s);
	}
}

static int is_hex32(const char *m)
{
	if (strlen(m) != 32)
		return 0;
	for (const char *p = m; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

/* Every command has its own marker: 128 random bits, nothing shared with
 * another command's (no session id, no counter) that would let one be
 * guessed from another. */
Test(exec, every_command_has_a_fresh_marker)
{
	ferry_session *s = booted();
	char marks[6][33];
	for (int round = 0; round < 2; round++) {
		ferry__exec_op *ops[3];
		for (int i = 0; i < 3; i++) {
			cr_assert_eq(
			        ferry__exec_start(s, "echo $$", NULL, &ops[i]),
			        0);
			memcpy(marks[round * 3 + i], ops[i]->mark, 33);
		}
		cr_assert_eq(ferry__exec_wait(s, ops, 3, 0), 0);
		for (int i = 0; i < 3; i++) {
			ferry_exec_result r;
			cr_assert_eq(ferry__exec_finish(ops[i], &r), 0);
			cr_assert_eq(r.exit_status, 0);
			cr_assert_gt(strtol(r.output, NULL, 10), 1);
			ferry_exec_result_free(&r);
		}
	}
	for (int i = 0; i < 6; i++) {
		cr_assert(is_hex32(marks[i]), "marker '%s'", marks[i]);
		for (int j = 0; j < i; j++) {
			size_t k = 0;
			while (k < 32 && marks[i][k] == marks[j][k])
				k++;
			cr_assert_lt(k, 8, "'%s' and '%s' share a prefix",
			             marks[i], marks[j]);
		}
	}
	ferry_session_close(s);
}

/* The first command of a session (it rides in the bootstrap) gets the
 * user's stdin exactly, after the marker line. */
Test(exec, first_command_reads_its_stdin_after_the_marker)
{
	ferry_session *s = fx_connect(fx_shared());
	const char in[] = "line one\n0123456789abcdef0123456789abcdef\nend";
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	eo.stdin_data = in;
	eo.stdin_len = sizeof(in) - 1;
	ferry_exec_result r;
	cr_assert_eq(run(s, "cat", &eo, &r), 0);
	cr_assert_eq(r.output_len, sizeof(in) - 1);
	cr_assert(!memcmp(r.output, in, sizeof(in) - 1));
	ferry_exec_result_free(&r);
	cr_assert_eq(run(s, "read -r a; read -r b; echo \"$b|$a\"", &eo, &r),
	             0);
	cr_assert_str_eq(r.output,
	                 "0123456789abcdef0123456789abcdef|line one\n");
	ferry_exec_result_free(&r);
	ferry_session_close(s);
}

/* Merged output keeps the order of lines across the two streams: a line
 * end on stdout (which could start the wrapper's trailer) is not held
 * back behind stderr's next line; the trailer after it still counts. */
Test(exec, lines_of_stdout_and_stderr_merge_in_arrival_order)
{
	ferry_session *s = booted();
	expect_out(s,
	           "echo 1; sleep 0.1; echo 2 >&2; sleep 0.1; echo 3; sleep "
	           "0.1; echo 4 >&2",
	           "1\n2\n3\n4\n");
	ferry_exec_result r;
	cr_assert_eq(run(s, "cd /tmp; echo a; echo b >&2; exit 3", NULL, &r),
	             3);
	cr_assert_str_eq(r.output, "a\nb\n");
	cr_assert_str_eq(r.cwd, "/tmp");
	ferry_exec_result_free(&r);
	ferry_session_close(s);
}

/* opts.cwd "~" and "~/x" are the login directory (issue 17 item 7); a
 * name that merely starts with "~" is taken as it is. */
Test(exec, cwd_tilde_is_the_login_directory)
{
	ferry_session *s = booted();
	char *home = out_of(s, "builtin cd ~ && pwd -P");
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	ferry_exec_result r;
	eo.cwd = "~";
	int st = run(s, "pwd -P", &eo, &r);
	cr_assert_eq(st, 0, "exit %d: %s", st, r.output);
	cr_assert_str_eq(r.output, home);
	ferry_exec_result_free(&r);
	char *dir = fx_tmpdir("tilde");
	char *rel = NULL;
	size_t hl = strlen(home);
	while (hl && home[hl - 1] == '\n')
		home[--hl] = '\0';
	fx_sh("mkdir -p '%s/.ferry-tilde-test/a b'", home);
	eo.cwd = "~/.ferry-tilde-test/a b";
	cr_assert_eq(run(s, "pwd -P", &eo, &r), 0);
	cr_assert(asprintf(&rel, "%s/.ferry-tilde-test/a b\n", home) > 0);
	cr_assert_str_eq(r.output, rel);
	ferry_exec_result_free(&r);
	eo.cwd = "~no-such-user-dir";
	cr_assert_eq(run(s, "pwd", &eo, &r), 126, "taken literally");
	ferry_exec_result_free(&r);
	fx_sh("rm -rf '%s/.ferry-tilde-test' '%s'", home, dir);
	free(rel);
	free(dir);
	free(home);
	ferry_session_close(s);
}

/* ferry_interrupt applies to the call running when it is sent (issue 17
 * item 4): one sent while nothing runs does not hit the next call, which
 * runs to its end and is not reported as interrupted. */
Test(exec, an_interrupt_while_idle_does_not_hit_the_next_call)
{
	ferry_session *s = booted();
	ferry_interrupt(s);
	ferry_exec_result r;
	int rc = ferry_exec(s, "echo ran > /dev/null; echo ok", NULL, &r);
	cr_assert_eq(rc, 0, "%s: %s", ferry_strerror(rc),
	             ferry_session_errmsg(s));
	cr_assert_eq(r.exit_status, 0);
	cr_assert_not(r.interrupted);
	cr_assert_str_eq(r.output, "ok\n");
	ferry_exec_result_free(&r);
	/* And one sent during a call still stops that call. */
	fx_interrupter th;
	fx_interrupt_after(&th, s, 300);
	rc = ferry_exec(s, "sleep 1234.81", NULL, &r);
	fx_interrupt_join(&th);
	cr_assert_eq(rc, FERRY_EINTR, "rc %d", rc);
	cr_assert(r.interrupted);
	ferry_exec_result_free(&r);
	expect_out(s, "echo after", "after\n");
	ferry_session_close(s);
}

/* ---- several threads on one session (issue 17, item 5) ------------------ */

typedef struct conc_call {
	ferry_session *s;
	char *cmd;
	int rc;
	ferry_exec_result r;
	double ms;
	volatile int stop; /* the command's own (ferry_exec_opts.stop) */
} conc_call;

static void *conc_exec(void *p)
{
	conc_call *c = p;
	ferry_exec_opts o = FERRY_EXEC_OPTS_INIT;
	o.stop = &c->stop;
	double t0 = ferry__now_ms_f();
	c->rc = ferry_exec(c->s, c->cmd, &o, &c->r);
	c->ms = ferry__now_ms_f() - t0;
	return NULL;
}

/* A command from a second thread runs while the first thread's command
 * runs, each on its own channel, and both results are right; the
 * session's state (cwd) is what the last command left. */
Test(exec, commands_from_two_threads_run_at_once)
{
	ferry_session *s = fx_connect(fx_shared());
	free(out_of(s, "true"));
	conc_call slow = {s, strdup("sleep 2; echo slow"), 0, {0}, 0, 0};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, conc_exec, &slow), 0);
	usleep(300 * 1000);
	/* the spare's reader started beside the running command (the slow
	 * thread drives the session), so the next one costs one round trip */
	ferry__exec_info in;
	ferry__exec_info_get(s, &in);
	cr_assert(in.spare_reader, "no reader on the spare beside a command");
	conc_call fast[8];
	for (int i = 0; i < 8; i++) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "echo fast%d", i);
		fast[i] = (conc_call){s, strdup(cmd), 0, {0}, 0, 0};
		conc_exec(&fast[i]);
		cr_assert_eq(fast[i].rc, 0, "%s", ferry_session_errmsg(s));
		char want[32];
		snprintf(want, sizeof(want), "fast%d\n", i);
		cr_assert_str_eq(fast[i].r.output, want);
		/* not behind the sleep: the slow one still runs */
		cr_assert_lt(fast[i].ms, 1500, "echo took %.0f ms", fast[i].ms);
		ferry_exec_result_free(&fast[i].r);
		free(fast[i].cmd);
	}
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(slow.rc, 0, "%s", ferry_session_errmsg(s));
	cr_assert_str_eq(slow.r.output, "slow\n");
	cr_assert_eq(slow.r.exit_status, 0);
	ferry_exec_result_free(&slow.r);
	free(slow.cmd);
	ferry_session_close(s);
}

/* Many threads at once, each its own commands: every output is its
 * own, nothing is lost or crossed. */
Test(exec, many_threads_each_get_their_own_output)
{
	ferry_session *s = fx_connect(fx_shared());
	free(out_of(s, "true"));
	enum { N = 6 };
	conc_call c[N];
	pthread_t th[N];
	for (int i = 0; i < N; i++) {
		char cmd[96];
		snprintf(cmd, sizeof(cmd),
		         "sleep 0.$((RANDOM %% 3)); printf 'thread%d\\n'; "
		         "exit %d",
		         i, i + 1);
		c[i] = (conc_call){s, strdup(cmd), 0, {0}, 0, 0};
		cr_assert_eq(pthread_create(&th[i], NULL, conc_exec, &c[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		cr_assert_eq(pthread_join(th[i], NULL), 0);
		char want[32];
		snprintf(want, sizeof(want), "thread%d\n", i);
		cr_assert_eq(c[i].rc, 0, "thread %d: %s", i,
		             ferry_session_errmsg(s));
		cr_assert_str_eq(c[i].r.output, want);
		cr_assert_eq(c[i].r.exit_status, i + 1);
		ferry_exec_result_free(&c[i].r);
		free(c[i].cmd);
	}
	ferry_session_close(s);
}

/* ferry_interrupt stops the calls running when it is sent, in every
 * thread, and none that starts after it. */
Test(exec, interrupt_applies_to_the_calls_running_then)
{
	ferry_session *s = fx_connect(fx_shared());
	free(out_of(s, "true"));
	conc_call a = {s, strdup("sleep 30.0417"), 0, {0}, 0, 0};
	conc_call b = {s, strdup("sleep 31.0417"), 0, {0}, 0, 0};
	pthread_t ta, tb;
	cr_assert_eq(pthread_create(&ta, NULL, conc_exec, &a), 0);
	cr_assert_eq(pthread_create(&tb, NULL, conc_exec, &b), 0);
	for (int i = 0; i < 100 && (!procs_holding("30.0417", 0) ||
	                            !procs_holding("31.0417", 0));
	     i++)
		usleep(50 * 1000);
	ferry_interrupt(s);
	cr_assert_eq(pthread_join(ta, NULL), 0);
	cr_assert_eq(pthread_join(tb, NULL), 0);
	cr_assert_eq(a.rc, FERRY_EINTR);
	cr_assert_eq(b.rc, FERRY_EINTR);
	cr_assert_eq(a.r.exit_status, 130);
	cr_assert_eq(b.r.exit_status, 130);
	cr_assert(a.r.interrupted && b.r.interrupted);
	ferry_exec_result_free(&a.r);
	ferry_exec_result_free(&b.r);
	free(a.cmd);
	free(b.cmd);
	/* the next call is not interrupted */
	char *o = out_of(s, "echo after");
	cr_assert_str_eq(o, "after\n");
	free(o);
	ferry_session_close(s);
}

typedef struct conc_sync {
	ferry_session *s;
	const char *src, *dest;
	int rc;
	uint64_t uploaded;
	double ms;
	int verified;
	volatile int stop; /* the push's own (ferry_sync_opts.stop) */
} conc_sync;

static void *conc_push(void *p)
{
	conc_sync *c = p;
	const char *srcs[] = {c->src};
	ferry_sync_opts o = FERRY_SYNC_OPTS_INIT;
	o.sources = srcs;
	o.source_count = 1;
	o.dest = c->dest;
	o.stop = &c->stop;
	ferry_sync_report rep;
	double t0 = ferry__now_ms_f();
	c->rc = ferry_sync(c->s, &o, &rep);
	c->ms = ferry__now_ms_f() - t0;
	c->uploaded = rep.files_uploaded;
	c->verified = rep.verified;
	ferry_sync_report_free(&rep);
	return NULL;
}

/* A new directory from the template src, filled by the shell text mk. */
static void conc_tree(char *src, const char *mk)
{
	cr_assert_not_null(mkdtemp(src));
	cr_assert_eq(fx_sh("cd %s && %s", src, mk), 0);
}

/* A push's own stop ends that push alone: the command beside it runs to
 * its end, and the next push (its flag down) is not interrupted. */
Test(exec, a_pushs_own_stop_leaves_the_command_beside_it)
{
	ferry_session *s = fx_connect(fx_shared());
	free(out_of(s, "true"));
	char src[] = "/tmp/ferry-conc-XXXXXX";
	conc_tree(src, "mkdir a && for i in $(seq 20); do echo $i > a/f$i; "
	               "done");
	char dest[300], srcd[300];
	snprintf(srcd, sizeof(srcd), "%s/a/", src);
	snprintf(dest, sizeof(dest), "%s/out", src);
	conc_call slow = {s, strdup("sleep 1.0717; echo slow"), 0, {0}, 0, 0};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, conc_exec, &slow), 0);
	for (int i = 0; i < 100 && !procs_holding("1.0717", 0); i++)
		usleep(20 * 1000);
	conc_sync a = {s, srcd, dest, 0, 0, 0, 0, 1};
	conc_push(&a);
	cr_assert_eq(a.rc, FERRY_EINTR, "rc %d: %s", a.rc,
	             ferry_session_errmsg(s));
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(slow.rc, 0, "%s", ferry_session_errmsg(s));
	cr_assert_str_eq(slow.r.output, "slow\n");
	cr_assert_not(slow.r.interrupted);
	a.stop = 0;
	conc_push(&a);
	cr_assert_eq(a.rc, 0, "%s", ferry_session_errmsg(s));
	cr_assert_eq(a.uploaded, 20);
	ferry_exec_result_free(&slow.r);
	free(slow.cmd);
	fx_sh("rm -rf %s", src);
	ferry_session_close(s);
}

/* A push runs while a command runs, and two pushes take turns: each
 * lands whole. */
Test(exec, a_push_runs_beside_a_command)
{
	ferry_session *s = fx_connect(fx_shared());
	free(out_of(s, "true"));
	char src[] = "/tmp/ferry-conc-XXXXXX";
	conc_tree(src, "mkdir -p a/b && for i in $(seq 50); do echo $i > "
	               "a/b/f$i; done");
	char dest[300], dest2[300], srcd[300];
	snprintf(srcd, sizeof(srcd), "%s/a/", src);
	snprintf(dest, sizeof(dest), "%s/out1", src);
	snprintf(dest2, sizeof(dest2), "%s/out2", src);
	conc_call slow = {s, strdup("sleep 2"), 0, {0}, 0, 0};
	pthread_t th, p1, p2;
	cr_assert_eq(pthread_create(&th, NULL, conc_exec, &slow), 0);
	usleep(300 * 1000);
	conc_sync a = {s, srcd, dest, 0, 0, 0, 0, 0},
	          b = {s, srcd, dest2, 0, 0, 0, 0, 0};
	cr_assert_eq(pthread_create(&p1, NULL, conc_push, &a), 0);
	cr_assert_eq(pthread_create(&p2, NULL, conc_push, &b), 0);
	cr_assert_eq(pthread_join(p1, NULL), 0);
	cr_assert_eq(pthread_join(p2, NULL), 0);
	cr_assert_eq(a.rc, 0, "%s", ferry_session_errmsg(s));
	cr_assert_eq(b.rc, 0, "%s", ferry_session_errmsg(s));
	cr_assert_eq(a.uploaded, 50);
	cr_assert_eq(b.uploaded, 50);
	cr_assert_lt(a.ms, 1500, "push took %.0f ms", a.ms);
	cr_assert_eq(fx_sh("diff -r -x '.ferry*' %s %s && diff -r -x "
	                   "'.ferry*' %s %s",
	                   srcd, dest, srcd, dest2),
	             0);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(slow.rc, 0);
	ferry_exec_result_free(&slow.r);
	free(slow.cmd);
	ferry_session_close(s);
	fx_sh("rm -rf %s", src);
}

/* ---- a connection made again (issue 17, item 6) ------------------------- */

/* The shell's state set up before the connection was lost. */
static void shell_state(ferry_session *s)
{
	ferry_exec_result r;
	cr_assert_eq(run(s,
	                 "cd /tmp && export FERRY_KEPT=kept && "
	                 "ferry_fn() { echo fn; } && alias ferry_al='echo al'",
	                 NULL, &r),
	             0);
	ferry_exec_result_free(&r);
}

static void cut(ferry_session *s)
{
	long sshd = sshd_pid(s);
	cr_assert_eq(kill((pid_t)sshd, SIGKILL), 0);
	for (int i = 0; i < 100 && kill((pid_t)sshd, 0) == 0; i++)
		usleep(20 * 1000);
}

Test(exec, reconnect_restores_the_session_shell)
{
	ferry_session *s = fx_connect(fx_shared());
	shell_state(s);
	cut(s);
	ferry_exec_result r;
	int rc = ferry_exec(s, "echo lost", NULL, &r);
	cr_assert_neq(rc, 0, "a call on the cut connection succeeded");
	ferry_exec_result_free(&r);
	cr_assert_eq(ferry_session_reconnect(s), 0, "%s",
	             ferry_session_errmsg(s));
	cr_assert_eq(
	        run(s, "echo $FERRY_KEPT; ferry_fn; ferry_al; pwd", NULL, &r),
	        0);
	cr_assert_str_eq(r.output, "kept\nfn\nal\n/tmp\n");
	cr_assert_str_eq(r.cwd, "/tmp");
	ferry_exec_result_free(&r);
	ferry__exec_info in;
	ferry__exec_info_get(s, &in);
	cr_assert_eq(in.reconnects, 1);
	cr_assert(in.restored);
	/* alive: nothing to do */
	cr_assert_eq(ferry_session_reconnect(s), 0);
	ferry__exec_info_get(s, &in);
	cr_assert_eq(in.reconnects, 1);
	ferry_session_close(s);
}

/* Opted in, the next call connects again by itself; a snapshot that did
 * not survive on the remote leaves commands working from the login
 * environment. */
Test(exec, reconnect_option_connects_on_the_next_call)
{
	ferry_session_opts o;
	fx_opts(fx_shared(), &o);
	o.reconnect = 1;
	ferry_session *s = NULL;
	cr_assert_eq(ferry_session_open(&s, &o), 0, "%s", ferry_last_errmsg());
	shell_state(s);
	cut(s);
	ferry_exec_result r;
	cr_assert_eq(run(s, "echo $FERRY_KEPT; pwd", NULL, &r), 0, "%s",
	             ferry_session_errmsg(s));
	cr_assert_str_eq(r.output, "kept\n/tmp\n");
	ferry_exec_result_free(&r);
	/* the snapshot removed remotely: the state is gone, commands run */
	ferry__exec_info in;
	ferry__exec_info_get(s, &in);
	cr_assert_not_null(in.snapshot_dir);
	cr_assert_eq(fx_sh("rm -rf '%s'", in.snapshot_dir), 0);
	cut(s);
	cr_assert_eq(run(s, "echo \"[${FERRY_KEPT-}]\"", NULL, &r), 0, "%s",
	             ferry_session_errmsg(s));
	cr_assert_str_eq(r.output, "[]\n");
	ferry_exec_result_free(&r);
	ferry__exec_info_get(s, &in);
	cr_assert_eq(in.reconnects, 2);
	cr_assert_not(in.restored);
	ferry_session_close(s);
}

/* The manifest still vouches after a reconnect: an unchanged tree is not
 * listed again, and a change is pushed. */
Test(exec, reconnect_keeps_the_manifest_vouching)
{
	ferry_session *s = fx_connect(fx_shared());
	char src[] = "/tmp/ferry-recon-XXXXXX";
	conc_tree(src, "mkdir -p a/b && for i in $(seq 20); do echo $i > "
	               "a/b/f$i; done");
	char dest[300], srcd[300];
	snprintf(srcd, sizeof(srcd), "%s/a/", src);
	snprintf(dest, sizeof(dest), "%s/out", src);
	conc_sync p = {s, srcd, dest, 0, 0, 0, 0, 0};
	conc_push(&p);
	cr_assert_eq(p.rc, 0, "%s", ferry_session_errmsg(s));
	cr_assert_eq(p.uploaded, 20);
	cut(s);
	cr_assert_eq(ferry_session_reconnect(s), 0, "%s",
	             ferry_session_errmsg(s));
	conc_push(&p);
	cr_assert_eq(p.rc, 0, "%s", ferry_session_errmsg(s));
	cr_assert_eq(p.uploaded, 0);
	cr_assert_not(p.verified, "the tree was listed again");
	cr_assert_eq(fx_sh("echo new > %s/a/b/f3", src), 0);
	conc_push(&p);
	cr_assert_eq(p.rc, 0, "%s", ferry_session_errmsg(s));
	cr_assert_eq(fx_sh("cmp %s/a/b/f3 %s/b/f3", src, dest), 0);
	ferry_session_close(s);
	fx_sh("rm -rf %s", src);
}

/* A command's own stop interrupts it alone: the other thread's command
 * runs to its end. */
Test(exec, a_commands_own_stop_leaves_the_others_running)
{
	ferry_session *s = fx_connect(fx_shared());
	free(out_of(s, "true"));
	conc_call a = {s, strdup("sleep 30.0613"), 0, {0}, 0, 0};
	conc_call b = {s, strdup("sleep 1.0613; echo b"), 0, {0}, 0, 0};
	pthread_t ta, tb;
	cr_assert_eq(pthread_create(&ta, NULL, conc_exec, &a), 0);
	cr_assert_eq(pthread_create(&tb, NULL, conc_exec, &b), 0);
	for (int i = 0; i < 100 && (!procs_holding("30.0613", 0) ||
	                            !procs_holding("1.0613", 0));
	     i++)
		usleep(20 * 1000);
	a.stop = 1;
	ferry_session_wake(s);
	cr_assert_eq(pthread_join(ta, NULL), 0);
	cr_assert_eq(a.rc, FERRY_EINTR, "%s", ferry_session_errmsg(s));
	cr_assert_eq(a.r.exit_status, 130);
	cr_assert(a.r.interrupted);
	cr_assert_eq(pthread_join(tb, NULL), 0);
	cr_assert_eq(b.rc, 0, "%s", ferry_session_errmsg(s));
	cr_assert_str_eq(b.r.output, "b\n");
	cr_assert_not(b.r.interrupted);
	cr_assert_eq(procs_holding("30.0613", 0), 0, "the stopped one runs");
	ferry_exec_result_free(&a.r);
	ferry_exec_result_free(&b.r);
	free(a.cmd);
	free(b.cmd);
	ferry_session_close(s);
}
