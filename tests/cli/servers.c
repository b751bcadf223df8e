/* The CLI against SSH servers other than OpenSSH, started privately by the
 * tests: Dropbear (tests/dropbear.sh) with its default 24 KiB receive
 * window.  Where a server cannot start here, its tests are skipped. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"

typedef struct server {
	char *dir, *home, *src;
	char user[64];
	const char *tag; /* the remote trees are $HOME/ferry-TAG-* */
	int port;
} server;

static char *slurp(const char *path)
{
	return fx_sh_out("cat '%s' 2>/dev/null", path);
}

static void dropbear_start(server *sv, const char *tag)
{
	memset(sv, 0, sizeof(*sv));
	sv->tag = tag;
	sv->dir = fx_tmpdir("dropbear");
	int rc = fx_sh("'%s/tests/dropbear.sh' start '%s' >/dev/null 2>&1",
	               FERRY_SRCDIR, sv->dir);
	if (rc == 77)
		cr_skip_test("dropbear is not available here (needs "
		             "dropbear-bin and root)");
	cr_assert_eq(rc, 0, "tests/dropbear.sh start failed");
	char p[600];
	snprintf(p, sizeof(p), "%s/port", sv->dir);
	char *port = slurp(p);
	sv->port = (int)strtol(port, NULL, 10);
	free(port);
	snprintf(p, sizeof(p), "%s/user", sv->dir);
	char *user = slurp(p);
	user[strcspn(user, "\n")] = 0;
	snprintf(sv->user, sizeof(sv->user), "%s", user);
	free(user);
	sv->home = fx_sh_out("getent passwd %s | cut -d: -f6 | tr -d '\\n'",
	                     sv->user);
	/* A tree that needs many window adjusts: 3 MB and 60 small files. */
	sv->src = fx_tmpdir("dropbear-src");
	cr_assert_eq(fx_sh("cd '%s' && mkdir -p sub && head -c 3000000 "
	                   "/dev/urandom > sub/big && for i in $(seq 60); do "
	                   "head -c $((i * 997)) /dev/urandom > f$i; done",
	                   sv->src),
	             0);
}

static void dropbear_stop(server *sv)
{
	fx_sh("'%s/tests/dropbear.sh' stop '%s' >/dev/null 2>&1", FERRY_SRCDIR,
	      sv->dir);
	if (sv->home)
		fx_sh("rm -rf '%s'/ferry-%s-* 2>/dev/null", sv->home, sv->tag);
	free(sv->dir);
	free(sv->home);
	free(sv->src);
}

/* ferry SUBCOMMAND ARGS against sv, with its key and known_hosts and a
 * state directory of its own; wrap (may be "") goes before the program. */
static int run(const server *sv, const char *wrap, char **out, char **err,
               const char *sub, const char *args)
{
	return fx_sh_capture(
	        out, err,
	        "%s '%s' %s --state-dir '%s/state' -p %d -i "
	        "'%s/id_ed25519' --known-hosts '%s/known_hosts' %s",
	        wrap, fx_ferry_bin(), sub, sv->dir, sv->port, sv->dir, sv->dir,
	        args);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* (LeakSanitizer cannot run under ptrace: leaks are checked by the other
 * tests.)  A write blocked on Dropbear's small window must not wait for a timer
 * when the WINDOW_ADJUST is consumed by another read: under strace (which
 * changes the timing so that it is) such pushes hung until the keepalive,
 * or for ever.  Each push must finish well before a keepalive. */
Test(dropbear, cold_pushes_never_wait_for_the_window, .timeout = 240)
{
	server sv;
	dropbear_start(&sv, "w");
	const char *wrap =
	        fx_sh("command -v strace >/dev/null") == 0
	                ? "timeout 60 env ASAN_OPTIONS=detect_leaks=0 strace "
	                  "-f -o /dev/null"
	                : "timeout 60";
	for (int i = 0; i < 4; i++) {
		char args[1024], *err = NULL;
		snprintf(args, sizeof(args), "'%s/' %s@127.0.0.1:ferry-w-%d",
		         sv.src, sv.user, i);
		fx_sh("rm -rf '%s/state'", sv.dir);
		double t0 = now_s();
		int rc = run(&sv, wrap, NULL, &err, "push", args);
		double s = now_s() - t0;
		cr_assert_eq(rc, 0, "push %d exited %d: %s", i, rc, err);
		cr_assert_lt(s, 10.0, "push %d took %.1f s: it waited", i, s);
		cr_assert_eq(fx_sh("diff -r -x .ferry-id '%s' '%s/ferry-w-%d'",
		                   sv.src, sv.home, i),
		             0, "remote tree differs");
		free(err);
	}
	dropbear_stop(&sv);
}

Test(dropbear, push_noop_and_exec)
{
	server sv;
	dropbear_start(&sv, "n");
	char args[1024], *out = NULL, *err = NULL;
	snprintf(args, sizeof(args), "--stats '%s/' %s@127.0.0.1:ferry-n-1",
	         sv.src, sv.user);
	cr_assert_eq(run(&sv, "", NULL, &err, "push", args), 0, "%s", err);
	free(err);
	cr_assert_eq(fx_sh("diff -r -x .ferry-id '%s' '%s/ferry-n-1'", sv.src,
	                   sv.home),
	             0);
	cr_assert_eq(run(&sv, "", &out, &err, "push", args), 0, "%s", err);
	const char *u = strstr(out, "Uploaded:");
	cr_assert(u && (int)strtol(u + 9, NULL, 10) == 0 &&
	                  strstr(out, "Bytes sent:           0"),
	          "a second push sends nothing: %s", out);
	free(out);
	free(err);
	snprintf(args, sizeof(args), "%s@127.0.0.1 'echo hi; exit 3'", sv.user);
	cr_assert_eq(run(&sv, "", &out, &err, "exec", args), 3, "%s", err);
	cr_assert_str_eq(out, "hi\n");
	free(out);
	free(err);
	dropbear_stop(&sv);
}

/* Green End's sftp-server as the SFTP subsystem of a private sshd: it
 * reads SYMLINK in the draft's order and says so
 * (symlink-order@rjk.greenend.org.uk).  Read in OpenSSH's order, every
 * link failed and a stray link appeared at the login directory, outside
 * DEST. */
Test(gesftpserver, symlinks_land_inside_dest_in_the_server_order)
{
	const char *ge = "/usr/libexec/gesftpserver";
	if (fx_sh("test -x %s", ge) != 0)
		cr_skip_test("gesftpserver is not installed");
	fx_sshd sv;
	char cfg[128];
	snprintf(cfg, sizeof(cfg), "Subsystem sftp %s\n", ge);
	cr_assert_eq(fx_sshd_start(&sv, cfg), 0, "sshd with gesftpserver");
	char *src = fx_tmpdir("ge-src"), *dst = fx_tmpdir("ge-dst");
	cr_assert_eq(fx_sh("cd '%s' && mkdir d && echo hi > d/f && ln -s d/f "
	                   "lf && ln -s d ld",
	                   src),
	             0);
	char args[2048], *err = NULL, *out = NULL;
	snprintf(args, sizeof(args),
	         "push --state-dir '%s/state' -p %d -i '%s' --known-hosts '%s' "
	         "'%s/' 127.0.0.1:'%s/t'",
	         sv.dir, sv.port, sv.key_ed25519, sv.known_hosts, src, dst);
	cr_assert_eq(fx_sh_capture(NULL, &err, "'%s' %s", fx_ferry_bin(), args),
	             0, "%s", err);
	free(err);
	for (const char *const *l = (const char *const[]){"lf", "ld", NULL}; *l;
	     l++) {
		char *a = fx_sh_out("readlink '%s/%s'", src, *l);
		char *b = fx_sh_out("readlink '%s/t/%s'", dst, *l);
		cr_assert_str_eq(b, a, "link %s", *l);
		free(a);
		free(b);
	}
	/* Nothing outside DEST: no link to a temp name at the login directory
	 * or the root. */
	char *stray =
	        fx_sh_out("find \"$HOME\" / -maxdepth 1 -lname '*.ferry-*' "
	                  "2>/dev/null | wc -l");
	cr_assert_eq((int)strtol(stray, NULL, 10), 0,
	             "stray links outside DEST");
	free(stray);
	cr_assert_eq(fx_sh_capture(&out, &err, "'%s' %s --stats",
	                           fx_ferry_bin(), args),
	             0, "%s", err);
	cr_assert(strstr(out, "Bytes sent:           0"), "%s", out);
	free(out);
	free(err);
	fx_sshd_stop(&sv);
	free(src);
	free(dst);
}
