/* The CLI against every SFTP server of the matrix (issue 12), each started
 * privately by the test on 127.0.0.1 with its own keys and port:
 *
 *   openssh       tests/sshd.sh, OpenSSH's sftp-server: the reference
 *   dropbear      tests/dropbear.sh, default 24 KiB receive window
 *   gesftpserver  tests/sshd.sh with Green End's sftp-server as Subsystem
 *   proftpd       tests/proftpd.sh, ProFTPD 1.3.8 mod_sftp (SFTP only)
 *   asyncssh      tests/pyserver.sh, asyncssh's SFTPServer (SFTP only)
 *   paramiko      tests/pyserver.sh, paramiko over the real filesystem
 *
 * One set of checks runs against each server, as the Criterion test
 * SERVER::CHECK.  A server that cannot start here (its script exits 77)
 * skips its tests.  Checks expect (cr_expect) rather than assert where
 * the rest of the check still says something, so that one failure does
 * not hide the others. */
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

typedef struct kind {
	const char *name;
	const char *script;    /* tests/SCRIPT start DIR [ARG] */
	const char *arg;       /* its argument after DIR, or NULL */
	const char *subsystem; /* sshd's SFTP server: DIR/extra_config */
	int has_shell;         /* exec can run commands there */
} kind;

/* The servers: one line each. */
enum { OPENSSH, DROPBEAR, GESFTPSERVER, PROFTPD, ASYNCSSH, PARAMIKO };
static const kind kinds[] = {
        [OPENSSH] = {"openssh", "sshd.sh", NULL, NULL, 1},
        [DROPBEAR] = {"dropbear", "dropbear.sh", NULL, NULL, 1},
        [GESFTPSERVER] = {"gesftpserver", "sshd.sh", NULL,
                          "/usr/libexec/gesftpserver", 1},
        [PROFTPD] = {"proftpd", "proftpd.sh", NULL, NULL, 0},
        [ASYNCSSH] = {"asyncssh", "pyserver.sh", "asyncssh", NULL, 0},
        [PARAMIKO] = {"paramiko", "pyserver.sh", "paramiko", NULL, 0},
};

typedef struct server {
	const kind *k;
	char *dir;  /* the server's files: keys, known_hosts, port, logs */
	char *user; /* the account ferry logs in as */
	char *home; /* its login directory */
	char *root; /* this test's remote trees: a new directory of user's */
	char *work; /* this test's local files: trees, state, reports */
	int port;
} server;

/* The server of the test running in this process (static: an assertion
 * that ends the test leaves the test's stack): stopped by the test, or by
 * stop_running after an assertion ended the test first. */
static server the_server, *running;

static char *first_line(char *s)
{
	cr_assert(s);
	s[strcspn(s, "\n")] = 0;
	return s;
}

/* Start a server of kind k (skips the test when it cannot run here). */
static server *server_start(const kind *k)
{
	server *sv = &the_server;
	memset(sv, 0, sizeof(*sv));
	sv->k = k;
	sv->dir = fx_tmpdir(k->name);
	sv->work = fx_tmpdir("m-work");
	cr_assert(sv->dir && sv->work);
	char arg[700] = "";
	if (k->subsystem) {
		if (fx_sh("test -x '%s'", k->subsystem) != 0)
			cr_skip_test("%s is not installed", k->subsystem);
		char cfg[600];
		snprintf(cfg, sizeof(cfg), "Subsystem sftp %s\n", k->subsystem);
		snprintf(arg, sizeof(arg), "%s/extra_config", sv->dir);
		cr_assert_eq(fx_write_file(arg, cfg, strlen(cfg), 0600), 0);
	} else if (k->arg) {
		snprintf(arg, sizeof(arg), "%s", k->arg);
	}
	char *err = NULL;
	running = sv;
	int rc = fx_sh_capture(NULL, &err, "'%s/tests/%s' start '%s' %s",
	                       FERRY_SRCDIR, k->script, sv->dir, arg);
	if (rc == 77)
		cr_skip_test("%s cannot run here: %s", k->name, err);
	cr_assert_eq(rc, 0, "tests/%s start: %s", k->script, err);
	free(err);
	char p[700];
	snprintf(p, sizeof(p), "%s/port", sv->dir);
	char *port = fx_read_file(p, NULL);
	cr_assert(port, "no %s", p);
	sv->port = (int)strtol(port, NULL, 10);
	free(port);
	snprintf(p, sizeof(p), "%s/user", sv->dir);
	sv->user = fx_read_file(p, NULL);
	if (!sv->user)
		sv->user = fx_sh_out("id -un");
	first_line(sv->user);
	/* The Python servers (the kinds with an argument, tests/pyserver.sh)
	 * start in DIR/home; the others at the login directory of the
	 * account. */
	if (k->arg)
		cr_assert(asprintf(&sv->home, "%s/home", sv->dir) >= 0);
	else
		sv->home = first_line(fx_sh_out(
		        "getent passwd '%s' | cut -d: -f6", sv->user));
	/* Another account cannot reach the test's directories: its trees go
	 * in its home. */
	char *me = first_line(fx_sh_out("id -un"));
	const char *base = strcmp(me, sv->user) ? sv->home : sv->dir;
	free(me);
	sv->root = first_line(fx_sh_out(
	        "d=$(mktemp -d '%s/ferry-m-XXXXXX') && chown '%s' \"$d\" && "
	        "chmod 755 \"$d\" && echo \"$d\"",
	        base, sv->user));
	cr_assert(sv->root[0] == '/', "no remote root in %s", base);
	return sv;
}

static void server_stop(server *sv)
{
	running = NULL;
	fx_sh("'%s/tests/%s' stop '%s' >/dev/null 2>&1", FERRY_SRCDIR,
	      sv->k->script, sv->dir);
	if (sv->root)
		fx_sh("rm -rf '%s'", sv->root);
	fx_sh("rm -rf '%s'", sv->work);
	free(sv->dir);
	free(sv->user);
	free(sv->home);
	free(sv->root);
	free(sv->work);
}

static void stop_running(void)
{
	if (running)
		server_stop(running);
}

/* ferry SUB with sv's port, key and known_hosts, then args; wrap (may be
 * "") goes before the program. */
static int ferry(const server *sv, const char *wrap, char **out, char **err,
                 const char *sub, const char *fmt, ...)
        __attribute__((format(printf, 6, 7)));

static int ferry(const server *sv, const char *wrap, char **out, char **err,
                 const char *sub, const char *fmt, ...)
{
	char *args = NULL;
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&args, fmt, ap) >= 0);
	va_end(ap);
	int rc = fx_sh_capture(out, err,
	                       "%s '%s' %s -p %d -i '%s/id_ed25519' "
	                       "--known-hosts '%s/known_hosts' %s",
	                       wrap, fx_ferry_bin(), sub, sv->port, sv->dir,
	                       sv->dir, args);
	free(args);
	return rc;
}

/* ferry push --json OPTS WORK/SRC/ USER@127.0.0.1:ROOT/DEST with a state
 * directory of the test's; *json gets the report (caller frees). */
static int push(const server *sv, const char *src, const char *dest,
                const char *opts, char **json, char **err)
{
	return ferry(sv, "", json, err, "push",
	             "--json --state-dir '%s/state' %s '%s/%s/' "
	             "'%s@127.0.0.1:%s/%s'",
	             sv->work, opts, sv->work, src, sv->user, sv->root, dest);
}

/* The python statements asserts hold for the push report json. */
static void expect_report(const server *sv, const char *json,
                          const char *asserts, const char *what)
{
	char *why = NULL;
	int rc = fx_json_text_holds(sv->work, json, asserts, &why);
	/* python's last line: "AssertionError: what was found" */
	size_t n = strlen(why);
	while (n && why[n - 1] == '\n')
		why[--n] = 0;
	char *last = strrchr(why, '\n');
	cr_expect_eq(rc, 0, "%s: %s: the report says otherwise: %s",
	             sv->k->name, what, last ? last + 1 : why);
	free(why);
}

/* Push; expect exit 0 and the report's asserts. */
static void push_expect(const server *sv, const char *src, const char *dest,
                        const char *opts, const char *asserts, const char *what)
{
	char *json = NULL, *err = NULL;
	int rc = push(sv, src, dest, opts, &json, &err);
	cr_expect_eq(rc, 0, "%s: %s exited %d: %s", sv->k->name, what, rc, err);
	expect_report(sv, json, asserts, what);
	free(json);
	free(err);
}

/* A push after another plans nothing: no change, nothing sent. */
static void expect_nothing_to_do(const server *sv, const char *src,
                                 const char *dest, const char *opts,
                                 const char *after)
{
	char what[200];
	snprintf(what, sizeof(what), "the push after %s", after);
	push_expect(sv, src, dest, opts,
	            "c=[k for k in ('files_uploaded','files_updated',"
	            "'files_deleted','dirs_created','dirs_deleted',"
	            "'symlinks_created','bytes_sent') if d[k]];"
	            " assert not c and not d['changes'] and not d['errors'],"
	            " (c, d['changes'], d['errors'])",
	            what);
}

/* The listing of a tree that push must reproduce: type, mode, mtime (not
 * of links: SFTP cannot set them), size, name, link target; the remote
 * marker left out.  Content is compared by diff. */
#define LISTING                                                                \
	"find . -path ./.ferry-id -prune "                                     \
	"-o -type l -printf 'l %%p -> %%l\\n' "                                \
	"-o -type d -printf 'd %%m %%Ts %%p\\n' "                              \
	"-o -type f -printf 'f %%m %%Ts %%s %%p\\n' "                          \
	"| LC_ALL=C sort"

/* The remote tree ROOT/DEST equals WORK/SRC: the same entries, modes,
 * file and directory mtimes, link targets and contents; and push left
 * nothing outside DEST: no link to one of its temporary names where a
 * server that read SYMLINK's arguments swapped would make one (the link's
 * target taken as its path: "mode644" or "../../mode644" from the login
 * directory), at the filesystem's root or beside DEST. */
static void expect_same_tree(const server *sv, const char *src,
                             const char *dest, const char *when)
{
	char *diff = NULL;
	int rc = fx_sh_capture(
	        &diff, NULL,
	        "cd '%s/%s' && " LISTING " > '%s/local.list' && cd '%s/%s' && "
	        "" LISTING " > '%s/remote.list' && diff -U0 --label local "
	        "--label remote '%s/local.list' '%s/remote.list' && "
	        "diff -r --no-dereference -x .ferry-id '%s/%s' '%s/%s'",
	        sv->work, src, sv->work, sv->root, dest, sv->work, sv->work,
	        sv->work, sv->work, src, sv->root, dest);
	cr_expect_eq(rc, 0, "%s: after %s the remote differs:\n%s", sv->k->name,
	             when, diff);
	free(diff);
	char *stray =
	        fx_sh_out("find '%s' '%s/..' '%s/../..' '%s' / "
	                  "-maxdepth 1 -lname '%s/*.ferry-*' 2>/dev/null",
	                  sv->home, sv->home, sv->home, sv->root, sv->root);
	cr_expect_str_eq(stray, "", "%s: after %s, links outside DEST:\n%s",
	                 sv->k->name, when, stray);
	free(stray);
}

/* WORK/NAME: every kind of entry a push must carry.  Distinct mtimes, in
 * the past, set after everything is made (directories last, as their
 * children change them). */
static void make_tree(const server *sv, const char *name, int with_64m)
{
	cr_assert_eq(
	        fx_sh("cd '%s' && mkdir '%s' && cd '%s' && umask 022 && "
	              "mkdir -p a/b/c dir700 'dir with space/inner' && "
	              "printf 'secret\\n' > mode600 && chmod 600 mode600 && "
	              "printf 'plain\\n' > mode644 && "
	              "printf '#!/bin/sh\\necho hi\\n' > mode755 && "
	              "chmod 755 mode755 && printf 'in\\n' > dir700/inside && "
	              "chmod 700 dir700 && printf 'deep\\n' > a/b/c/deep && "
	              ": > empty && head -c 3145728 /dev/urandom > big3 && "
	              "printf 'sp\\n' > 'dir with space/inner/name with "
	              "space' && printf 'uni\\n' > 'ünïcødé-файл-文件' && "
	              "printf 'dash\\n' > ./-leading-dash && "
	              "ln -s mode644 link-file && ln -s a/b link-dir && "
	              "ln -s ../../mode644 a/b/up && "
	              "{ [ %d = 0 ] || head -c 64M /dev/urandom > big64; } && "
	              "i=0 && find . -depth ! -type l | while read -r p; do "
	              "i=$((i + 1)); touch -d @$((1600000000 + i * 3607)) "
	              "\"$p\" || exit 1; done",
	              sv->work, name, name, with_64m),
	        0, "cannot make the test tree");
}

/* The regular files, links and directories (below the top) of make_tree. */
enum { TREE_FILES = 10, TREE_LINKS = 3, TREE_DIRS = 6 };

/* The small tree (no 64 MiB file) pushed to DEST, or the check stops. */
static void pushed_tree(const server *sv, const char *dest)
{
	make_tree(sv, "src", 0);
	char *json = NULL, *err = NULL;
	int rc = push(sv, "src", dest, "", &json, &err);
	cr_assert_eq(rc, 0, "%s: the first push exited %d: %s", sv->k->name, rc,
	             err);
	free(json);
	free(err);
}

/* Set the mtime of DIR/PATH: @SECONDS. */
static void touch_at(const char *dir, const char *path, long t)
{
	cr_assert_eq(fx_sh("touch -d @%ld '%s/%s'", t, dir, path), 0);
}

/* ---- the checks --------------------------------------------------------- */

static void check_ping(const kind *k)
{
	server *sv = server_start(k);
	char *out = NULL, *err = NULL;
	int rc = ferry(sv, "", &out, &err, "ping", "'%s@127.0.0.1'", sv->user);
	cr_expect_eq(rc, 0, "%s: ping exited %d: %s", k->name, rc, err);
	cr_expect(strstr(out, "authenticated by publickey"), "%s: %s", k->name,
	          out);
	free(out);
	free(err);
	server_stop(sv);
}

/* The full tree, 64 MiB file included, into a new DEST: pushed whole and
 * equal; the next push sends nothing. */
static void check_cold_push(const kind *k)
{
	server *sv = server_start(k);
	make_tree(sv, "src", 1);
	char asserts[400];
	snprintf(asserts, sizeof(asserts),
	         "assert (d['files_uploaded'], d['symlinks_created'],"
	         " d['dirs_created'], d['errors']) == (%d, %d, %d, []),"
	         " (d['files_uploaded'], d['symlinks_created'],"
	         " d['dirs_created'], d['errors'])",
	         TREE_FILES + 1, TREE_LINKS, TREE_DIRS);
	push_expect(sv, "src", "cold", "", asserts, "the cold push");
	expect_same_tree(sv, "src", "cold", "the cold push");
	expect_nothing_to_do(sv, "src", "cold", "", "the cold push");
	server_stop(sv);
}

/* Nothing changed: nothing uploaded, nothing sent. */
static void check_noop(const kind *k)
{
	server *sv = server_start(k);
	pushed_tree(sv, "noop");
	expect_nothing_to_do(sv, "src", "noop", "", "a push");
	expect_nothing_to_do(sv, "src", "noop", "--itemize-changes",
	                     "a no-op push");
	server_stop(sv);
}

/* Only mtimes changed: the files are updated in place, not uploaded. */
static void check_touch(const kind *k)
{
	server *sv = server_start(k);
	pushed_tree(sv, "touch");
	char src[700];
	snprintf(src, sizeof(src), "%s/src", sv->work);
	touch_at(src, "mode644", 1700000000);
	touch_at(src, "big3", 1700000123);
	push_expect(sv, "src", "touch", "",
	            "assert (d['files_uploaded'], d['files_updated'],"
	            " d['bytes_sent']) == (0, 2, 0), d['changes']",
	            "the push of touched files");
	expect_same_tree(sv, "src", "touch", "touching files");
	expect_nothing_to_do(sv, "src", "touch", "", "touching files");
	server_stop(sv);
}

/* Contents changed (one file longer, one the same size) and a mode. */
static void check_change(const kind *k)
{
	server *sv = server_start(k);
	pushed_tree(sv, "change");
	cr_assert_eq(fx_sh("cd '%s/src' && printf 'longer now\\n' > mode644 "
	                   "&& head -c 3145728 /dev/urandom > big3 && "
	                   "chmod 600 mode755 && touch -d @1700000000 mode644 "
	                   "big3",
	                   sv->work),
	             0);
	push_expect(sv, "src", "change", "",
	            "assert (d['files_uploaded'], d['files_updated']) =="
	            " (2, 1), d['changes']",
	            "the push of changed files");
	expect_same_tree(sv, "src", "change", "changing files");
	expect_nothing_to_do(sv, "src", "change", "", "changing files");
	server_stop(sv);
}

/* 4 KiB changed in the middle of the 3 MiB file: a delta where the server
 * has copy-data (only the changed chunks sent: OpenSSH's sftp-server,
 * also under Dropbear), else sent whole (gesftpserver, ProFTPD, asyncssh,
 * paramiko); right either way. */
static void check_delta(const kind *k)
{
	server *sv = server_start(k);
	pushed_tree(sv, "delta");
	cr_assert_eq(fx_sh("cd '%s/src' && head -c 4096 /dev/urandom | dd "
	                   "of=big3 bs=4096 seek=300 conv=notrunc 2>/dev/null "
	                   "&& touch -d @1700000000 big3",
	                   sv->work),
	             0);
	push_expect(
	        sv, "src", "delta", "",
	        "assert d['files_uploaded'] == 1, d['changes']\n"
	        "assert d['bytes_sent'] + d['bytes_copied'] == 3145728, d\n"
	        "assert d['files_delta'] == 0 or d['bytes_sent'] <= 524288,"
	        " d\n"
	        "assert d['files_delta'] == 1 or d['bytes_sent'] == 3145728,"
	        " d",
	        "the push of a changed large file");
	expect_same_tree(sv, "src", "delta", "a delta");
	expect_nothing_to_do(sv, "src", "delta", "", "a delta");
	server_stop(sv);
}

/* Files, a link and a directory tree removed locally: --delete removes
 * them remotely. */
static void check_delete(const kind *k)
{
	server *sv = server_start(k);
	pushed_tree(sv, "delete");
	cr_assert_eq(fx_sh("cd '%s/src' && rm -r 'dir with space' a/b/c/deep "
	                   "link-dir mode600",
	                   sv->work),
	             0);
	push_expect(sv, "src", "delete", "--delete",
	            "assert (d['files_deleted'], d['dirs_deleted']) =="
	            " (4, 2), d['changes']",
	            "the push with --delete");
	expect_same_tree(sv, "src", "delete", "deleting files");
	expect_nothing_to_do(sv, "src", "delete", "--delete", "deleting files");
	server_stop(sv);
}

/* The remote changed behind ferry's back: --verify finds and repairs it. */
static void check_verify(const kind *k)
{
	server *sv = server_start(k);
	pushed_tree(sv, "verify");
	cr_assert_eq(fx_sh("cd '%s/verify' && printf 'edited\\n' > mode644 && "
	                   "rm a/b/c/deep link-file && chmod 600 mode755",
	                   sv->root),
	             0);
	push_expect(sv, "src", "verify", "--verify",
	            "assert d['verified'] and d['files_uploaded'] == 2 and"
	            " d['symlinks_created'] == 1, d['changes']",
	            "the push with --verify");
	expect_same_tree(sv, "src", "verify", "repairing with --verify");
	expect_nothing_to_do(sv, "src", "verify", "--verify",
	                     "repairing with --verify");
	server_stop(sv);
}

/* Without a shell, exec fails with ferry's own words: not libssh2's. */
static void expect_no_exec(const server *sv, const char *opts)
{
	char *out = NULL, *err = NULL;
	int rc = ferry(sv, "timeout 60", &out, &err, "exec",
	               "%s '%s@127.0.0.1' 'echo hi'", opts, sv->user);
	cr_expect_eq(rc, 255, "%s has no shell: 'exec %s' exited %d: %s",
	             sv->k->name, opts, rc, err);
	cr_expect(strstr(err, "not available") && !strstr(err, "libssh2 error"),
	          "%s has no shell: 'exec %s' must say so plainly: %s",
	          sv->k->name, opts, err);
	free(out);
	free(err);
}

static void check_exec(const kind *k)
{
	server *sv = server_start(k);
	if (!k->has_shell) {
		expect_no_exec(sv, "");
		server_stop(sv);
		return;
	}
	char *out = NULL, *err = NULL;
	int rc = ferry(sv, "", &out, &err, "exec",
	               "'%s@127.0.0.1' 'echo out; echo err >&2; exit 3'",
	               sv->user);
	cr_expect_eq(rc, 3, "%s: exec exited %d: %s", k->name, rc, err);
	cr_expect_str_eq(out, "out\n", "%s", k->name);
	cr_expect(strstr(err, "err\n"), "%s: stderr: %s", k->name, err);
	free(out);
	free(err);
	server_stop(sv);
}

/* How many live (not zombie) processes run exactly "sleep ARG". */
static int sleeps(const char *arg)
{
	char *n = fx_sh_out("ps -eo stat=,args= | awk '$1 !~ /Z/ && $2 == "
	                    "\"sleep\" && $3 == \"%s\" && NF == 3' | wc -l",
	                    arg);
	int k = (int)strtol(n, NULL, 10);
	free(n);
	return k;
}

/* Wait (up to ms) until sleeps(arg) is zero (want 0) or not (want 1). */
static int wait_sleeps(const char *arg, int want, int ms)
{
	for (int t = 0; t < ms; t += 50) {
		if ((sleeps(arg) > 0) == want)
			return 1;
		usleep(50 * 1000);
	}
	return (sleeps(arg) > 0) == want;
}

/* ferry exec [--timeout 1] 'sleep ARG' in a child process; once the remote
 * sleep runs, SIGINT (Ctrl-C) unless it has a timeout.  The exit status;
 * the remote sleep must be gone after it. */
static void exec_and_stop(const kind *k, int timeout)
{
	server *sv = server_start(k);
	if (!k->has_shell) {
		expect_no_exec(sv, timeout ? "--timeout 1" : "");
		server_stop(sv);
		return;
	}
	char arg[32], port[16], key[700], kh[700], who[200], cmd[64];
	snprintf(arg, sizeof(arg), "30.%d%d%05d", (int)(k - kinds), timeout,
	         (int)(getpid() % 100000));
	snprintf(port, sizeof(port), "%d", sv->port);
	snprintf(key, sizeof(key), "%s/id_ed25519", sv->dir);
	snprintf(kh, sizeof(kh), "%s/known_hosts", sv->dir);
	snprintf(who, sizeof(who), "%s@127.0.0.1", sv->user);
	snprintf(cmd, sizeof(cmd), "sleep %s", arg);
	char errpath[700];
	snprintf(errpath, sizeof(errpath), "%s/exec.err", sv->work);
	char *argv[16] = {"ferry", "exec",          "-p", port, "-i",
	                  key,     "--known-hosts", kh};
	int n = 8;
	if (timeout) {
		argv[n++] = "--timeout";
		argv[n++] = "1";
	}
	argv[n++] = who;
	argv[n++] = cmd;
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		int e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(e, 2);
		execv(fx_ferry_bin(), argv);
		_exit(127);
	}
	int ran = wait_sleeps(arg, 1, 10000);
	if (!timeout)
		kill(pid, SIGINT);
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	int want = timeout ? 124 : 130;
	char *err = fx_read_file(errpath, NULL);
	cr_expect(ran, "%s: the remote sleep never ran: %s", k->name, err);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == want,
	          "%s: exec %s exited %d, not %d: %s", k->name,
	          timeout ? "--timeout 1" : "interrupted",
	          WIFEXITED(st) ? WEXITSTATUS(st) : -1, want, err);
	free(err);
	int gone = wait_sleeps(arg, 0, 5000);
	cr_expect(gone, "%s: after exec %s the remote sleep still runs",
	          k->name, timeout ? "--timeout 1" : "interrupted");
	if (!gone)
		fx_sh("ps -eo pid=,args= | awk '$2 == \"sleep\" && $3 == "
		      "\"%s\" {print $1}' | xargs -r kill",
		      arg);
	server_stop(sv);
}

static void check_exec_timeout(const kind *k)
{
	exec_and_stop(k, 1);
}

static void check_exec_interrupt(const kind *k)
{
	exec_and_stop(k, 0);
}

/* SERVER::CHECK for every check. */
#define SERVER_CHECK(server, check, K, ...)                                    \
	Test(server, check, .fini = stop_running, ##__VA_ARGS__)               \
	{                                                                      \
		check_##check(&kinds[K]);                                      \
	}
#define SERVER_CHECKS(server, K)                                               \
	SERVER_CHECK(server, ping, K)                                          \
	SERVER_CHECK(server, cold_push, K, .timeout = 280)                     \
	SERVER_CHECK(server, noop, K)                                          \
	SERVER_CHECK(server, touch, K)                                         \
	SERVER_CHECK(server, change, K)                                        \
	SERVER_CHECK(server, delta, K)                                         \
	SERVER_CHECK(server, delete, K)                                        \
	SERVER_CHECK(server, verify, K)                                        \
	SERVER_CHECK(server, exec, K)                                          \
	SERVER_CHECK(server, exec_timeout, K)                                  \
	SERVER_CHECK(server, exec_interrupt, K)

SERVER_CHECKS(openssh, OPENSSH)
SERVER_CHECKS(dropbear, DROPBEAR)
SERVER_CHECKS(gesftpserver, GESFTPSERVER)
SERVER_CHECKS(proftpd, PROFTPD)
SERVER_CHECKS(asyncssh, ASYNCSSH)
SERVER_CHECKS(paramiko, PARAMIKO)

/* ---- beyond the matrix -------------------------------------------------- */

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* (LeakSanitizer cannot run under ptrace: leaks are checked by the other
 * tests.)  A write blocked on Dropbear's small window must not wait for a
 * timer when the WINDOW_ADJUST is consumed by another read: under strace
 * (which changes the timing so that it is) such pushes hung until the
 * keepalive, or for ever.  Each push must finish well before a keepalive.
 */
Test(dropbear, cold_pushes_never_wait_for_the_window, .timeout = 240,
     .fini = stop_running)
{
	server *sv = server_start(&kinds[DROPBEAR]);
	/* A tree that needs many window adjusts: 3 MB and 60 small files. */
	cr_assert_eq(fx_sh("cd '%s' && mkdir -p w/sub && head -c 3000000 "
	                   "/dev/urandom > w/sub/big && for i in $(seq 60); do "
	                   "head -c $((i * 997)) /dev/urandom > w/f$i; done",
	                   sv->work),
	             0);
	const char *wrap =
	        fx_sh("command -v strace >/dev/null") == 0
	                ? "timeout 60 env ASAN_OPTIONS=detect_leaks=0 strace "
	                  "-f -o /dev/null"
	                : "timeout 60";
	for (int i = 0; i < 4; i++) {
		char *err = NULL;
		fx_sh("rm -rf '%s/state'", sv->work);
		double t0 = now_s();
		int rc = ferry(sv, wrap, NULL, &err, "push",
		               "--state-dir '%s/state' '%s/w/' "
		               "'%s@127.0.0.1:%s/w-%d'",
		               sv->work, sv->work, sv->user, sv->root, i);
		double s = now_s() - t0;
		cr_assert_eq(rc, 0, "push %d exited %d: %s", i, rc, err);
		cr_assert_lt(s, 10.0, "push %d took %.1f s: it waited", i, s);
		cr_assert_eq(fx_sh("diff -r -x .ferry-id '%s/w' '%s/w-%d'",
		                   sv->work, sv->root, i),
		             0, "remote tree differs");
		free(err);
	}
	server_stop(sv);
}
