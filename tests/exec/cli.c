/* Tests of cli/cmd_exec.c: ferry exec as a program against the test sshd
 * (FERRY_BIN, else the build's ferry). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

/* "ferry exec" with the connection options of the shared server. */
static char *conn_args(void)
{
	const fx_sshd *sv = fx_shared();
	char *a = NULL;
	cr_assert(asprintf(&a,
	                   "exec -p %d -i '%s' --known-hosts '%s' --host-key "
	                   "strict",
	                   sv->port, sv->key_ed25519, sv->known_hosts) >= 0);
	return a;
}

/* Run "ferry exec <conn> ARGS" through sh with stdin from in_redir;
 * capture stdout and stderr; return the exit status. */
static int fexec(char **out, char **err, const char *in_redir, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

static int fexec(char **out, char **err, const char *in_redir, const char *fmt,
                 ...)
{
	char *args = NULL, *conn = conn_args();
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&args, fmt, ap) >= 0);
	va_end(ap);
	int rc = fx_sh_capture(out, err, "%s %s %s %s", fx_ferry_bin(), conn,
	                       args, in_redir ? in_redir : "</dev/null");
	free(args);
	free(conn);
	return rc;
}

Test(cli_exec, output_exact_and_status_passed_through)
{
	char *out, *err;
	cr_assert_eq(fexec(&out, &err, NULL, "127.0.0.1 -- printf x"), 0);
	cr_assert_str_eq(out, "x");
	cr_assert_str_eq(err, "");
	free(out);
	free(err);
	/* arguments joined by spaces, as ssh does; streams apart */
	cr_assert_eq(fexec(&out, &err, NULL,
	                   "127.0.0.1 'echo out; echo err >&2;' exit 7"),
	             7);
	cr_assert_str_eq(out, "out\n");
	cr_assert_str_eq(err, "err\n");
	free(out);
	free(err);
	cr_assert_eq(fexec(&out, NULL, NULL, "--cwd /tmp 127.0.0.1 pwd"), 0);
	cr_assert_str_eq(out, "/tmp\n");
	free(out);
}

Test(cli_exec, stdin_from_file_and_pipe)
{
	char *dir = fx_tmpdir("stdin");
	char path[600];
	snprintf(path, sizeof(path), "%s/in", dir);
	cr_assert_eq(fx_write_file(path, "a\0b\n", 4, 0600), 0);
	char *out;
	cr_assert_eq(
	        fexec(&out, NULL, NULL, "--stdin '%s' 127.0.0.1 wc -c", path),
	        0);
	cr_assert_eq(strtol(out, NULL, 10), 4);
	free(out);
	char redir[700];
	snprintf(redir, sizeof(redir), "<'%s'", path);
	cr_assert_eq(fexec(&out, NULL, redir, "--stdin - 127.0.0.1 od -c"), 0);
	cr_assert_not_null(strstr(out, "a  \\0   b  \\n"), "%s", out);
	free(out);
	/* without --stdin the command reads end-of-file */
	cr_assert_eq(fexec(&out, NULL, redir, "127.0.0.1 'cat; echo end'"), 0);
	cr_assert_str_eq(out, "end\n");
	free(out);
	char *err;
	cr_assert_eq(fexec(NULL, &err, NULL,
	                   "--stdin /nonexistent 127.0.0.1 "
	                   "true"),
	             2);
	cr_assert_not_null(strstr(err, "/nonexistent"));
	free(err);
	fx_sh("rm -rf '%s'", dir);
	free(dir);
}

Test(cli_exec, timeout_is_124_with_a_note)
{
	char *out, *err;
	cr_assert_eq(fexec(&out, &err, NULL,
	                   "--timeout 2 127.0.0.1 'echo a; sleep 1234.91'"),
	             124);
	/* 2 s: the login shell's start (root's profile here) must not eat
	 * the command's time on a loaded machine. */
	cr_assert_str_eq(out, "a\n");
	cr_assert_not_null(strstr(err, "timed out after 2 s"), "%s", err);
	free(out);
	free(err);
	/* Gone, not merely signalled: a loaded machine may take a moment to
	 * reap it (10 s at most). */
	cr_assert_eq(fx_sh("for i in $(seq 100); do ps -eo stat=,args= | awk "
	                   "'$1 !~ /Z/' | grep -F 'sleep 1234.91' | grep -q -v "
	                   "-e grep -e awk || exit 0; sleep 0.1; done; exit 1"),
	             0, "the remote command survived its timeout");
}

Test(cli_exec, usage_and_connection_errors)
{
	char *err;
	cr_assert_eq(fexec(NULL, &err, NULL, "127.0.0.1"), 2);
	cr_assert_not_null(strstr(err, "usage:"));
	free(err);
	cr_assert_eq(fexec(NULL, &err, NULL, "127.0.0.1 --"), 2);
	free(err);
	cr_assert_eq(fexec(NULL, &err, NULL, "--timeout -1 127.0.0.1 true"), 2);
	cr_assert_not_null(strstr(err, "--timeout"));
	free(err);
	cr_assert_eq(fexec(NULL, &err, NULL, "--no-such 127.0.0.1 true"), 2);
	free(err);
	cr_assert_eq(fexec(NULL, &err, NULL, "-p 1 127.0.0.1 true"), 255);
	cr_assert_not_null(strstr(err, "port 1"), "%s", err);
	free(err);
	char *out;
	cr_assert_eq(fexec(&out, NULL, NULL, "--help"), 0);
	cr_assert_not_null(strstr(out, "--timeout"));
	free(out);
}

Test(cli_exec, closed_stdout_stops_the_command)
{
	char *conn = conn_args();
	char *dir = fx_tmpdir("pipe");
	char script[600];
	snprintf(script, sizeof(script), "%s/run.sh", dir);
	char *body = NULL;
	cr_assert(asprintf(&body,
	                   "%s %s 127.0.0.1 'while :; do echo y; done; sleep "
	                   "1234.93' | head -2 >/dev/null\n"
	                   "echo ${PIPESTATUS[0]}\n",
	                   fx_ferry_bin(), conn) >= 0);
	cr_assert_eq(fx_write_file(script, body, strlen(body), 0700), 0);
	char *st = fx_sh_out("bash '%s'", script);
	cr_assert_eq(strtol(st, NULL, 10), 141, "%s", st);
	free(st);
	free(body);
	fx_sh("rm -rf '%s'", dir);
	free(dir);
	free(conn);
}

Test(cli_exec, ctrl_c_kills_the_remote_command)
{
	const fx_sshd *sv = fx_shared();
	char port[16];
	snprintf(port, sizeof(port), "%d", sv->port);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		dup2(devnull, 1);
		execl(fx_ferry_bin(), "ferry", "exec", "-p", port, "-i",
		      sv->key_ed25519, "--known-hosts", sv->known_hosts,
		      "--host-key", "strict", "127.0.0.1",
		      "sleep 1234.92 & sleep 1234.92; echo never",
		      (char *)NULL);
		_exit(127);
	}
	/* until the remote command runs */
	for (int i = 0; i < 100; i++) {
		char *n = fx_sh_out("pgrep -fx 'sleep 1234.92' | wc -l");
		long k = strtol(n, NULL, 10);
		free(n);
		if (k >= 2)
			break;
		usleep(50 * 1000);
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	kill(pid, SIGINT);
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms =
	        (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 130);
	cr_assert_lt(ms, 10000, "took %.0f ms", ms);
	char *n = fx_sh_out("ps -eo stat=,args= | awk '$1 !~ /Z/' | grep -F "
	                    "'sleep 1234.92' | grep -v -e grep -e awk | wc -l");
	cr_assert_eq(strtol(n, NULL, 10), 0);
	free(n);
}
