/* CLI tests: option parsing, usage errors, ssh_config, exit statuses, JSON.
 * They run the built program (FERRY_BIN, else build/ferry). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

/* Run ferry with a shell-quoted argument string; capture stdout and
 * stderr; return the exit status. */
static int ferry_run(char **out, char **err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int ferry_run(char **out, char **err, const char *fmt, ...)
{
	char *args = NULL;
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&args, fmt, ap) >= 0);
	va_end(ap);
	int rc = fx_sh_capture(out, err, "%s %s", fx_ferry_bin(), args);
	free(args);
	return rc;
}

static int count_substr(const char *s, const char *sub)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
		n++;
	return n;
}

/* Run ferry with a shell-quoted argument string, expecting the exit status
 * and needle in what it printed on stderr; returns that (caller frees). */
static char *expect_exit(int status, const char *needle, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static char *expect_exit(int status, const char *needle, const char *fmt, ...)
{
	char *args = NULL, *err = NULL;
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&args, fmt, ap) >= 0);
	va_end(ap);
	int rc = ferry_run(NULL, &err, "%s", args);
	cr_assert_eq(rc, status, "'ferry %s' exited %d: %s", args, rc, err);
	cr_assert(strstr(err, needle) != NULL, "'ferry %s': %s", args, err);
	free(args);
	return err;
}

/* A new directory (caller frees) in which the shell script has run. */
static char *tree_dir(const char *tag, const char *script)
{
	char *dir = fx_tmpdir(tag);
	cr_assert_eq(fx_sh("cd '%s' && %s", dir, script), 0, "%s", script);
	return dir;
}

/* Each malformed command line: exit 2, one usage line, a message. */
static void expect_usage(const char *args)
{
	char *err = NULL;
	int rc = ferry_run(NULL, &err, "%s", args);
	cr_expect_eq(rc, 2, "'ferry %s' exited %d: %s", args, rc, err);
	cr_expect_eq(count_substr(err, "usage:"), 1, "'ferry %s' printed: %s",
	             args, err);
	cr_expect(strstr(err, "ferry: ") != NULL, "'ferry %s': %s", args, err);
	free(err);
}

Test(cli, malformed_command_lines_are_usage_errors)
{
	expect_usage("");
	expect_usage("frobnicate");
	expect_usage("help frobnicate");
	expect_usage("ping");
	expect_usage("ping a b");
	expect_usage("ping --bogus h");
	expect_usage("ping -p 0 h");
	expect_usage("ping -p 70000 h");
	expect_usage("ping -p x h");
	expect_usage("ping --host-key maybe h");
	expect_usage("ping --connect-timeout -1 h");
	expect_usage("ping --connect-timeout abc h");
	expect_usage("ping --io-timeout abc h");
	expect_usage("ping --io-timeout -2 h");
	expect_usage("status --max-dir-entries 0 /tmp h:d");
	expect_usage("status --max-entries x /tmp h:d");
	expect_usage("pull --max-name-bytes -1 h:s /tmp/d");
	expect_usage("ping 'h:path'");
	expect_usage("ping '[::1'");
	expect_usage("ping '@h'");
	expect_usage("status");
	expect_usage("status /tmp");
	expect_usage("status /tmp host");
	expect_usage("status --max-delete -3 /tmp h:d");
	expect_usage("status --max-delete x /tmp h:d");
	expect_usage("status --exclude '' /tmp h:d");
	expect_usage("status --exclude-from /nonexistent/file /tmp h:d");
	expect_usage("status --nope /tmp h:d");
}

Test(cli, version_and_help)
{
	char *out = NULL;
	cr_assert_eq(ferry_run(&out, NULL, "--version"), 0);
	cr_assert(strncmp(out, "ferry ", 6) == 0, "%s", out);
	free(out);
	const char *cmds[] = {"ping", "status", "push", "exec"};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char *a = NULL, *b = NULL;
		cr_assert_eq(ferry_run(&a, NULL, "help %s", cmds[i]), 0);
		cr_assert_eq(ferry_run(&b, NULL, "%s --help", cmds[i]), 0);
		cr_assert_str_eq(a, b);
		cr_assert(strstr(a, "usage: ferry ") != NULL, "%s", a);
		free(a);
		free(b);
	}
}

/* ssh_config: an alias resolved to the fixture's server. */
static char *write_config(const fx_sshd *sv, const char *extra)
{
	char *dir = fx_tmpdir("cfg");
	char *path = NULL;
	cr_assert(asprintf(&path, "%s/config", dir) >= 0);
	char *text = NULL;
	cr_assert(asprintf(&text,
	                   "# test config\n"
	                   "Host !myother* my*\n"
	                   "  HostName 127.0.0.1\n"
	                   "  Port %d\n"
	                   "  IdentityFile %s\n"
	                   "  UserKnownHostsFile %s\n"
	                   "  StrictHostKeyChecking yes\n"
	                   "Host *\n"
	                   "  Port 1\n"
	                   "  ConnectTimeout 5\n"
	                   "%s",
	                   sv->port, sv->key_ed25519, sv->known_hosts,
	                   extra ? extra : "") >= 0);
	cr_assert_eq(fx_write_file(path, text, strlen(text), 0600), 0);
	free(text);
	free(dir);
	return path;
}

Test(cli, ssh_config_alias_pattern_and_precedence)
{
	const fx_sshd *sv = fx_shared();
	char *cfg = write_config(sv, NULL);
	char *out = NULL, *err = NULL;
	/* myalias matches "my*": first value wins, "Host *" Port 1 ignored. */
	int rc = ferry_run(&out, &err, "ping -F %s myalias", cfg);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert(strstr(out, "@127.0.0.1:") != NULL, "%s", out);
	free(out);
	free(err);
	/* "myotherx" is negated: only "Host *" applies -> port 1, refused. */
	rc = ferry_run(NULL, &err, "ping -F %s --connect-timeout 2 myotherx",
	               cfg);
	cr_assert_eq(rc, 255, "%s", err);
	free(err);
	rc = ferry_run(NULL, &err, "ping -F %s otherhost", cfg);
	cr_assert_eq(rc, 255, "%s", err);
	free(err);
	/* The command line wins: a wrong -p is used. */
	rc = ferry_run(NULL, &err, "ping -F %s -p 1 myalias", cfg);
	cr_assert_eq(rc, 255);
	cr_assert(strstr(err, "port 1") != NULL, "%s", err);
	free(err);
	free(cfg);
}

Test(cli, ssh_config_missing_or_malformed)
{
	char *err = NULL;
	int rc = ferry_run(NULL, &err, "ping -F /nonexistent/ssh_config h");
	cr_assert_eq(rc, 2, "%s", err);
	cr_assert(strstr(err, "/nonexistent/ssh_config") != NULL, "%s", err);
	free(err);
	char *dir = fx_tmpdir("cfg");
	char path[600];
	snprintf(path, sizeof(path), "%s/config", dir);
	const char *bad = "Host h\n  HostName 127.0.0.1\n  Port banana\n";
	cr_assert_eq(fx_write_file(path, bad, strlen(bad), 0600), 0);
	rc = ferry_run(NULL, &err, "ping -F %s h", path);
	cr_assert_eq(rc, 2, "%s", err);
	cr_assert(strstr(err, "line 3") != NULL, "%s", err);
	cr_assert(strstr(err, "banana") != NULL, "%s", err);
	free(err);
	free(dir);
}

Test(cli, ping_exit_statuses)
{
	const fx_sshd *sv = fx_shared();
	char *out = NULL, *err = NULL;
	int rc =
	        ferry_run(&out, &err,
	                  "ping -p %d -i %s --known-hosts %s --host-key strict "
	                  "127.0.0.1",
	                  sv->port, sv->key_ed25519, sv->known_hosts);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert(strstr(out, "SHA256:") && strstr(out, "handshake"), "%s",
	          out);
	free(out);
	free(err);
	/* Unknown host under strict: 255 and one line naming the problem. */
	err = expect_exit(255, "host key",
	                  "ping -p %d -i %s --known-hosts /dev/null --host-key "
	                  "strict 127.0.0.1",
	                  sv->port, sv->key_ed25519);
	cr_assert_eq(count_substr(err, "\n"), 1, "%s", err);
	free(err);
	/* Failed authentication: 255. */
	char *dir = tree_dir("key", "ssh-keygen -q -t ed25519 -N '' -f k");
	free(expect_exit(255, "auth",
	                 "ping -p %d -i %s/k --known-hosts %s 127.0.0.1",
	                 sv->port, dir, sv->known_hosts));
	free(dir);
}

Test(cli, target_parsing_user_and_ipv6)
{
	const fx_sshd *sv = fx_shared();
	char *out = NULL, *err = NULL;
	int rc = ferry_run(&out, &err,
	                   "ping -p %d -i %s --known-hosts %s root@127.0.0.1",
	                   sv->port, sv->key_ed25519, sv->known_hosts);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert(strstr(out, "root@127.0.0.1:") != NULL, "%s", out);
	free(out);
	free(err);
	/* An IPv6 literal in brackets reaches the resolver as ::1 (nothing
	 * listens there: a connection error, not a usage error). */
	free(expect_exit(255, "::1",
	                 "ping -p 1 --connect-timeout 2 'u@[::1]'"));
}

Test(cli, status_json_parses_and_holds_the_fields)
{
	char *dir = tree_dir(
	        "st",
	        "mkdir -p src/d && echo a > src/d/f && echo b > 'src/sp ace'");
	char *out = NULL, *err = NULL;
	int rc = ferry_run(&out, &err,
	                   "status --json --state-dir %s/state %s/src/ "
	                   "u@example.invalid:dest",
	                   dir, dir);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(
	        fx_json_text_holds(
	                dir, out,
	                " assert d[\"command\"]==\"status\";"
	                " assert d[\"files_uploaded\"]==2, d;"
	                " assert d[\"dirs_created\"]==1, d;"
	                " assert d[\"round_trips\"]==0;"
	                " assert {c[\"itemize\"] for c in d[\"changes\"]}"
	                "=={\">f+++++++++\",\"cd+++++++++\"}, d;"
	                " [d[k] for k in (\"files_scanned\",\"bytes_sent\","
	                "\"requests\",\"verified\",\"time_ms\",\"errors\","
	                "\"exit_status\",\"result\")]",
	                NULL),
	        0, "%s", out);
	free(out);
	free(err);
	free(dir);
}

Test(cli, man_page_is_the_help_text)
{
	cr_assert_eq(fx_sh("%s/cli/mkman.sh %s | cmp -s - %s/cli/ferry.1",
	                   FERRY_SRCDIR, fx_ferry_bin(), FERRY_SRCDIR),
	             0, "cli/ferry.1 is stale: run make man");
}

Test(cli, exec_push_then_command_in_one_session_json)
{
	const fx_sshd *sv = fx_shared();
	char *dir = tree_dir("xp", "mkdir -p src/s && echo v1 > src/s/f && "
	                           "umask 077 && echo key > src/cred");
	char *out = NULL, *err = NULL;
	int rc = ferry_run(
	        &out, &err,
	        "exec -p %d -i %s --known-hosts %s --json --state-dir "
	        "%s/state --push %s/src/ --to %s/dst 127.0.0.1 -- "
	        "'cat %s/dst/s/f; stat -c %%a %s/dst/cred; exit 7'",
	        sv->port, sv->key_ed25519, sv->known_hosts, dir, dir, dir, dir,
	        dir);
	cr_assert_eq(rc, 7, "%s %s", out, err);
	cr_assert_eq(fx_json_text_holds(
	                     dir, out,
	                     " assert d[\"command\"]==\"exec\";"
	                     " assert d[\"exit_status\"]==7 and "
	                     "d[\"command_status\"]==7;"
	                     " assert d[\"stdout\"]==\"v1\\n600\\n\", d;"
	                     " assert d[\"push\"][\"files_uploaded\"]==2, d;"
	                     " assert d[\"push\"][\"result\"]==\"ok\"",
	                     NULL),
	             0, "%s", out);
	free(out);
	free(err);
	/* --push without --to is bad usage. */
	rc = ferry_run(NULL, &err, "exec --push %s/src 127.0.0.1 true", dir);
	cr_assert_eq(rc, 2, "%s", err);
	free(err);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

/* A push through the CLI against the shared server. */
static int push_cli(const char *dir, const char *extra, char **out, char **err)
{
	const fx_sshd *sv = fx_shared();
	return ferry_run(out, err,
	                 "push -p %d -i %s --known-hosts %s --state-dir "
	                 "%s/state %s %s/src/ 127.0.0.1:%s/dst",
	                 sv->port, sv->key_ed25519, sv->known_hosts, dir, extra,
	                 dir, dir);
}

Test(cli, push_itemizes_every_kind_of_change)
{
	char *dir = tree_dir(
	        "item", "mkdir -p src/d && echo a > src/d/f && echo b > src/g "
	                "&& echo c > src/h && echo e > src/k && ln -s g src/l");
	char *out = NULL, *err = NULL;
	cr_assert_eq(push_cli(dir, "--itemize-changes", &out, &err), 0, "%s",
	             err);
	cr_assert(strstr(out, "cd+++++++++ d/\n"), "%s", out);
	cr_assert(strstr(out, ">f+++++++++ d/f\n"), "%s", out);
	cr_assert(strstr(out, "cL+++++++++ l -> g\n"), "%s", out);
	free(out);
	free(err);
	cr_assert_eq(
	        fx_sh("cd %s && echo longer >> src/g && touch -d '2001-01-01' "
	              "src/h && chmod 600 src/k && rm src/d/f",
	              dir),
	        0);
	/* -n lists the same lines (rsync -n -i) and changes nothing. */
	cr_assert_eq(push_cli(dir, "-n --delete", &out, &err), 0, "%s", err);
	cr_assert(strstr(out, ">fcst...... g\n") &&
	                  strstr(out, "*deleting   d/f\n") &&
	                  strstr(out, "would push"),
	          "%s", out);
	free(out);
	free(err);
	cr_assert_eq(fx_sh("test -f %s/dst/d/f", dir), 0, "-n deleted d/f");
	cr_assert_eq(push_cli(dir, "--itemize-changes --delete", &out, &err), 0,
	             "%s", err);
	cr_assert(strstr(out, ">fcst...... g\n"), "%s", out);
	cr_assert(strstr(out, ".f..t...... h\n"), "%s", out);
	cr_assert(strstr(out, ".f...p..... k\n"), "%s", out);
	cr_assert(strstr(out, "*deleting   d/f\n"), "%s", out);
	free(out);
	free(err);
	/* Nothing changed: no itemize line, a summary. */
	cr_assert_eq(push_cli(dir, "--itemize-changes", &out, &err), 0);
	cr_assert(strstr(out, "0 uploaded") && !strstr(out, ">f"), "%s", out);
	free(out);
	free(err);
	/* --delete from an empty source is refused, exit 1, nothing gone. */
	cr_assert_eq(fx_sh("rm -rf %s/src/*", dir), 0);
	cr_assert_eq(push_cli(dir, "--delete", &out, &err), 1, "%s", err);
	cr_assert(strstr(err, "refusing to delete") && strstr(err, "empty"),
	          "%s", err);
	cr_assert_eq(fx_sh("test -f %s/dst/g", dir), 0);
	free(out);
	free(err);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

Test(cli, partial_push_exits_23)
{
	char *dir = tree_dir("part", "mkdir src && echo a > src/ok && echo b > "
	                             "src/locked && chmod 000 src/locked");
	const fx_sshd *sv = fx_shared();
	/* Without CAP_DAC_OVERRIDE even root cannot read the file. */
	int rc;
	char *out = NULL;
	rc = fx_sh("cd %s && setpriv --bounding-set "
	           "-dac_override,-dac_read_search "
	           "%s push -p %d -i %s --known-hosts %s --state-dir %s/state2 "
	           "--json src/ 127.0.0.1:%s/dst2 > j2 2> e2",
	           dir, fx_ferry_bin(), sv->port, sv->key_ed25519,
	           sv->known_hosts, dir, dir);
	char path[600];
	snprintf(path, sizeof(path), "%s/j2", dir);
	out = fx_read_file(path, NULL);
	cr_assert_eq(rc, 23, "exit %d: %s", rc, out);
	cr_assert_eq(fx_json_holds(path,
	                           " assert d[\"result\"]==\"partial\", d;"
	                           " assert d[\"exit_status\"]==23;"
	                           " assert [e[\"path\"] for e in "
	                           "d[\"errors\"]]==[\"locked\"], d;"
	                           " assert d[\"files_uploaded\"]==1, d",
	                           NULL),
	             0, "%s", out);
	cr_assert_eq(fx_sh("test -f %s/dst2/ok && test ! -e %s/dst2/locked",
	                   dir, dir),
	             0);
	free(out);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

Test(cli, progress_bar_only_on_a_terminal)
{
	char *dir =
	        tree_dir("prog", "mkdir -p src && truncate -s 320M src/big");
	const fx_sshd *sv = fx_shared();
	/* A pseudo-terminal from script(1): the bar is drawn on stderr. */
	cr_assert_eq(fx_sh("cd %s && script -qfec \"%s push -p %d -i %s "
	                   "--known-hosts %s --state-dir %s/state --progress "
	                   "src/ 127.0.0.1:%s/dst\" /dev/null > tty.out 2>&1",
	                   dir, fx_ferry_bin(), sv->port, sv->key_ed25519,
	                   sv->known_hosts, dir, dir),
	             0);
	char path[600];
	snprintf(path, sizeof(path), "%s/tty.out", dir);
	char *tty = fx_read_file(path, NULL);
	cr_assert(strstr(tty, "files") && strstr(tty, "ETA") &&
	                  strstr(tty, "%"),
	          "no bar on a tty: %s", tty);
	free(tty);
	fx_sh("rm -rf %s/dst %s/state", dir, dir);
	/* Not a terminal: nothing but the summary. */
	char *out = NULL, *err = NULL;
	int rc = push_cli(dir, "--progress", &out, &err);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_str_eq(err, "");
	cr_assert(!strstr(out, "ETA"), "%s", out);
	free(out);
	free(err);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

/* One process, one new connection: channel open, subsystem, INIT with the
 * marker read and the listing, then mkdirs+OPENs, WRITEs+CLOSE, renames. */
Test(cli, new_connection_round_trips)
{
	char *dir =
	        tree_dir("rt", "mkdir -p src && for d in 1 2 3 4 5; do mkdir "
	                       "-p src/d$d/e; for f in 1 2 3 4 5 6 7 8; do "
	                       "echo $d$f > src/d$d/e/f$f; done; done");
	const char *get = "python3 -c 'import json,sys; "
	                  "print(json.load(sys.stdin)[\"round_trips\"])'";
	char *out = NULL, *err = NULL;
	cr_assert_eq(push_cli(dir, "--json", &out, &err), 0, "%s", err);
	char path[600];
	snprintf(path, sizeof(path), "%s/o.json", dir);
	fx_write_file(path, out, strlen(out), 0600);
	char *rt = fx_sh_out("%s < %s", get, path);
	/* 3 to connect and check, 3 for the files, 1 for directory times. */
	cr_assert(rt && strtol(rt, NULL, 10) <= 7, "cold push: %s rt", rt);
	free(rt);
	free(out);
	free(err);
	cr_assert_eq(push_cli(dir, "--json", &out, &err), 0, "%s", err);
	fx_write_file(path, out, strlen(out), 0600);
	rt = fx_sh_out("%s < %s", get, path);
	/* 2 for the channel, then the marker: LSTAT with INIT (a fifo or
	 * anything but a regular file is never opened), OPEN, READ + CLOSE. */
	cr_assert(rt && strtol(rt, NULL, 10) <= 5, "no-op push: %s rt", rt);
	free(rt);
	free(out);
	free(err);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

Test(cli, exclude_from_file_and_patterns)
{
	char *dir = tree_dir(
	        "excl",
	        "mkdir -p src/cache src/keep && echo 1 > src/a.log && echo 2 > "
	        "src/keep/b && echo 3 > src/cache/c && echo 4 > src/keep/d.tmp "
	        "&& printf '# comment\\n\\n- *.log\\ncache/\\n' > ex");
	char *extra = NULL;
	cr_assert(asprintf(&extra, "--exclude-from %s/ex --exclude '*.tmp'",
	                   dir) >= 0);
	char *out = NULL, *err = NULL;
	cr_assert_eq(push_cli(dir, extra, &out, &err), 0, "%s", err);
	cr_assert_eq(fx_sh("cd %s/dst && test -f keep/b && test ! -e a.log && "
	                   "test ! -e cache && test ! -e keep/d.tmp",
	                   dir),
	             0, "%s", out);
	free(out);
	free(err);
	free(extra);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

/* ---- ferry pull ---- */

/* A pull through the CLI from the shared server: DIR/src (a remote path)
 * into DIR/dst. */
static int pull_cli(const char *dir, const char *extra, char **out, char **err)
{
	const fx_sshd *sv = fx_shared();
	return ferry_run(out, err,
	                 "pull -p %d -i %s --known-hosts %s %s "
	                 "127.0.0.1:%s/src/ %s/dst",
	                 sv->port, sv->key_ed25519, sv->known_hosts, extra, dir,
	                 dir);
}

Test(cli, pull_itemizes_every_kind_of_change_and_json)
{
	char *dir = tree_dir("pitem",
	                     "mkdir -p src/d && echo a > src/d/f && echo b > "
	                     "src/g && echo c > src/h && echo e > src/k && ln "
	                     "-s g src/l && ln -s /etc/passwd src/out");
	char *out = NULL, *err = NULL;
	cr_assert_eq(pull_cli(dir, "--itemize-changes", &out, &err), 0, "%s",
	             err);
	cr_assert(strstr(out, "cd+++++++++ d/\n"), "%s", out);
	cr_assert(strstr(out, ">f+++++++++ d/f\n"), "%s", out);
	cr_assert(strstr(out, "cL+++++++++ l -> g\n"), "%s", out);
	cr_assert(strstr(out, "pulled into"), "%s", out);
	cr_assert(strstr(err, "out: skipping symlink"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(fx_sh("cd %s && echo longer >> src/g && touch -d "
	                   "'2002-01-01' src/g && touch -d '2001-01-01' src/h "
	                   "&& chmod 600 src/k && rm src/d/f",
	                   dir),
	             0);
	/* A dry run first: it says, and changes nothing. */
	cr_assert_eq(pull_cli(dir, "-n -v --delete", &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "*deleting   d/f\n") && strstr(out, "would pull"),
	          "%s", out);
	cr_assert_eq(fx_sh("test -f %s/dst/d/f", dir), 0);
	free(out);
	free(err);
	cr_assert_eq(pull_cli(dir, "--itemize-changes --delete", &out, &err), 0,
	             "%s", err);
	cr_assert(strstr(out, ">f.st...... g\n"), "%s", out);
	cr_assert(strstr(out, ">f..t...... h\n"), "%s", out);
	cr_assert(strstr(out, ".f...p..... k\n"), "%s", out);
	cr_assert(strstr(out, "*deleting   d/f\n"), "%s", out);
	free(out);
	free(err);
	cr_assert_eq(fx_sh("diff -r %s/src %s/dst >/dev/null 2>&1 || test $? "
	                   "= 1",
	                   dir, dir),
	             0);
	/* Nothing changed: --json says so. */
	cr_assert_eq(pull_cli(dir, "--json", &out, &err), 0, "%s", err);
	cr_assert_eq(fx_json_text_holds(dir, out,
	                                " assert d[\"command\"]==\"pull\", d;"
	                                " assert d[\"result\"]==\"ok\", d;"
	                                " assert d[\"files_uploaded\"]==0, d;"
	                                " assert d[\"changes\"]==[], d;"
	                                " assert d[\"round_trips\"]<=5, d",
	                                NULL),
	             0, "%s", out);
	free(out);
	free(err);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

Test(cli, pull_exit_statuses)
{
	char *dir = tree_dir("pexit", "mkdir -p src empty && echo a > src/a");
	const fx_sshd *sv = fx_shared();
	char conn[1400];
	snprintf(conn, sizeof(conn), "-p %d -i %s --known-hosts %s", sv->port,
	         sv->key_ed25519, sv->known_hosts);
	expect_usage("pull 127.0.0.1:/tmp");
	expect_usage("pull /tmp/a /tmp/b");
	expect_usage("pull 127.0.0.1:/a other:/b /tmp/x");
	expect_usage("pull 127.0.0.1:/a 127.0.0.1:/tmp");
	expect_usage("pull --verify 127.0.0.1:/a /tmp/x");
	free(expect_exit(1, "refusing --delete: the remote source",
	                 "pull %s --delete 127.0.0.1:%s/empty/ %s/dst", conn,
	                 dir, dir));
	free(expect_exit(1, "missing",
	                 "pull %s --delete 127.0.0.1:%s/nothing/ %s/dst", conn,
	                 dir, dir));
	/* A missing source among others: partial. */
	free(expect_exit(23, "no such file",
	                 "pull %s 127.0.0.1:%s/src/a :%s/nothing %s/dst", conn,
	                 dir, dir, dir));
	cr_assert_eq(fx_sh("test -f %s/dst/a", dir), 0);
	free(expect_exit(255, "connect",
	                 "pull -p 1 -i %s --known-hosts %s 127.0.0.1:%s/src/ "
	                 "%s/dst",
	                 sv->key_ed25519, sv->known_hosts, dir, dir));
	fx_sh("rm -rf %s", dir);
	free(dir);
}

/* A remote name with a right-to-left override (and a C1 control) cannot
 * reorder or rewrite the terminal: pull's itemize lines and its error
 * lines show those bytes as \#ooo, like push's. */
Test(cli, names_with_bidi_overrides_are_printed_escaped)
{
	char *dir = tree_dir("bidi",
	                     "mkdir -p src && echo a > "
	                     "\"src/$(printf 'x\\342\\200\\256txt.exe')\" "
	                     "&& echo b > \"src/$(printf 'c1\\302\\233')\"");
	char *out = NULL, *err = NULL;
	cr_assert_eq(pull_cli(dir, "--itemize-changes", &out, &err), 0, "%s",
	             err);
	cr_assert(strstr(out, ">f+++++++++ x\\#342\\#200\\#256txt.exe\n"), "%s",
	          out);
	cr_assert(strstr(out, ">f+++++++++ c1\\#302\\#233\n"), "%s", out);
	cr_assert(!strstr(out, "\xe2\x80\xae") && !strstr(out, "\xc2\x9b"),
	          "%s", out);
	free(out);
	free(err);
	/* An error line: the local copy cannot be replaced. */
	cr_assert_eq(fx_sh("cd %s && echo changed > \"src/$(printf "
	                   "'x\\342\\200\\256txt.exe')\" && chmod 0555 dst",
	                   dir),
	             0);
	int rc =
	        ferry_run(&out, &err,
	                  "pull -p %d -i %s --known-hosts %s 127.0.0.1:%s/src/ "
	                  "%s/dst",
	                  fx_shared()->port, fx_shared()->key_ed25519,
	                  fx_shared()->known_hosts, dir, dir);
	fx_sh("chmod 0755 %s/dst", dir);
	if (rc == 23) { /* root may write anyway: then no error line */
		cr_assert(strstr(err, "x\\#342\\#200\\#256txt.exe: "), "%s",
		          err);
		cr_assert(!strstr(err, "\xe2\x80\xae"), "%s", err);
	}
	free(out);
	free(err);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

/* --delete-scope tracked: a file made on the remote stays; one pushed
 * before and gone locally goes.  A bad scope is a usage error. */
Test(cli, delete_scope_tracked_keeps_remote_only_files)
{
	char *dir = tree_dir("scope", "mkdir -p src && echo a > src/a && "
	                              "echo b > src/b");
	char *out = NULL, *err = NULL;
	cr_assert_eq(
	        push_cli(dir, "--delete --delete-scope tracked", &out, &err), 0,
	        "%s", err);
	free(out);
	free(err);
	cr_assert_eq(fx_sh("cd %s && rm src/b && echo agent > dst/made", dir),
	             0);
	cr_assert_eq(push_cli(dir, "--delete --delete-scope tracked --verify",
	                      &out, &err),
	             0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(
	        fx_sh("test -f %s/dst/made && test ! -e %s/dst/b", dir, dir), 0,
	        "tracked: made kept, b deleted");
	cr_assert_eq(push_cli(dir, "--delete --delete-scope all", &out, &err),
	             2);
	cr_assert(strstr(err, "bad --delete-scope 'all'"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(push_cli(dir, "--delete --verify", &out, &err), 0, "%s",
	             err);
	cr_assert_eq(fx_sh("test ! -e %s/dst/made", dir), 0,
	             "mirror deletes it");
	free(out);
	free(err);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

/* --marker NAME: the marker under that name, no .ferry-id; a pull with the
 * same name does not bring it home; a name outside DEST is refused. */
Test(cli, marker_name_for_push_and_pull)
{
	char *dir = tree_dir("mk", "mkdir -p src && echo a > src/a");
	char *out = NULL, *err = NULL;
	cr_assert_eq(push_cli(dir, "--marker .agent-sync", &out, &err), 0, "%s",
	             err);
	free(out);
	free(err);
	cr_assert_eq(fx_sh("cd %s/dst && test -s .agent-sync && test ! -e "
	                   ".ferry-id && test -f a",
	                   dir),
	             0);
	/* pull_cli pulls src/ into dst: pull the pushed tree instead */
	cr_assert_eq(fx_sh("cd %s && rm -rf src && mv dst src", dir), 0);
	cr_assert_eq(pull_cli(dir, "--marker .agent-sync", &out, &err), 0, "%s",
	             err);
	free(out);
	free(err);
	cr_assert_eq(
	        fx_sh("cd %s/dst && test -f a && test ! -e .agent-sync", dir),
	        0, "the marker came home");
	int rc = push_cli(dir, "--marker ../elsewhere", &out, &err);
	cr_assert_eq(rc, 2, "%d %s", rc, err);
	cr_assert(strstr(err, "one name inside the destination"), "%s", err);
	free(out);
	free(err);
	fx_sh("rm -rf %s", dir);
	free(dir);
}

/* exec --json holds the output in memory to print it: of each stream it
 * keeps at most --max-output bytes (default 8 MiB), head and tail, and
 * says so in output_truncated (issue 14 item 7: 100 MB of output took
 * 203 MB). */
Test(cli, exec_json_keeps_a_bounded_head_and_tail)
{
	const fx_sshd *sv = fx_shared();
	char *dir = fx_tmpdir("xj");
	char conn[1300];
	snprintf(conn, sizeof(conn), "-p %d -i %s --known-hosts %s", sv->port,
	         sv->key_ed25519, sv->known_hosts);
	char *why = NULL;
	/* a small cap: the first and last 500 bytes of stdout; stderr
	 * within it stays whole */
	int rc = fx_sh("%s exec %s --json --max-output 1000 127.0.0.1 -- "
	               "'seq 1 100000; echo err >&2; exit 3' > %s/j1",
	               fx_ferry_bin(), conn, dir);
	cr_assert_eq(rc, 3);
	char path[700];
	snprintf(path, sizeof(path), "%s/j1", dir);
	cr_assert_eq(fx_json_holds(path,
	                           " s=''.join('%d\\n'%i for i in "
	                           "range(1,100001));"
	                           " assert d['stdout']==s[:500]+s[-500:], "
	                           "d['stdout'];"
	                           " assert d['stderr']=='err\\n', d;"
	                           " assert d['output_truncated'] is True;"
	                           " assert d['command_status']==3",
	                           &why),
	             0, "%s", why);
	free(why);
	why = NULL;
	/* under the default cap: everything, not truncated */
	rc = fx_sh("%s exec %s --json 127.0.0.1 -- 'seq 1 100000' > %s/j2",
	           fx_ferry_bin(), conn, dir);
	cr_assert_eq(rc, 0);
	snprintf(path, sizeof(path), "%s/j2", dir);
	cr_assert_eq(fx_json_holds(path,
	                           " s=''.join('%d\\n'%i for i in "
	                           "range(1,100001));"
	                           " assert d['stdout']==s;"
	                           " assert d['output_truncated'] is False",
	                           &why),
	             0, "%s", why);
	free(why);
	why = NULL;
	/* 100 MB of output: 8 MiB kept, and ferry's memory stays far below
	 * what it printed */
	rc = fx_sh("/usr/bin/time -f %%M -o %s/rss %s exec %s --json "
	           "127.0.0.1 -- 'head -c 100000000 /dev/zero | tr \"\\0\" a; "
	           "printf z' > %s/j3",
	           dir, fx_ferry_bin(), conn, dir);
	cr_assert_eq(rc, 0);
	snprintf(path, sizeof(path), "%s/j3", dir);
	cr_assert_eq(fx_json_holds(path,
	                           " o=d['stdout'];"
	                           " assert len(o)==8<<20, len(o);"
	                           " assert o[-1]=='z' and "
	                           "o.count('a')==(8<<20)-1;"
	                           " assert d['output_truncated'] is True",
	                           &why),
	             0, "%s", why);
	free(why);
	snprintf(path, sizeof(path), "%s/rss", dir);
	char *rss = fx_read_file(path, NULL);
	cr_assert_not_null(rss);
	long kb = strtol(rss, NULL, 10);
	const char *san = getenv("FERRY_TEST_SAN");
	if (!san || !*san)
		cr_assert_lt(kb, 48 * 1024, "ferry used %ld KiB", kb);
	free(rss);
	/* a bad size is a usage error */
	expect_usage("exec --json --max-output lots 127.0.0.1 true");
	fx_sh("rm -rf '%s'", dir);
	free(dir);
}

/* --io-timeout: a server that stops answering (tests/hostile_sftp.py told
 * to hold every reply from the first request naming the destination on)
 * fails the push at the deadline, exit 1, naming the request and path. */
Test(cli, io_timeout_fails_a_push_the_server_stops_answering)
{
	if (fx_sh("test -x /usr/lib/openssh/sftp-server && test -x "
	          "/usr/bin/python3") != 0)
		cr_skip_test("needs python3 and OpenSSH's sftp-server");
	char *dir = tree_dir("iot", "mkdir -p src && echo a > src/a && "
	                            "echo 'hold /dst' > control");
	char cfg[1600];
	snprintf(cfg, sizeof(cfg),
	         "Subsystem sftp /usr/bin/python3 %s/tests/hostile_sftp.py "
	         "--control %s/control\n",
	         FERRY_SRCDIR, dir);
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, cfg), 0);
	char *err = NULL;
	int rc = ferry_run(NULL, &err,
	                   "push -p %d -i %s --known-hosts %s --state-dir "
	                   "%s/state --io-timeout 1 %s/src/ 127.0.0.1:%s/dst",
	                   sv.port, sv.key_ed25519, sv.known_hosts, dir, dir,
	                   dir);
	cr_assert_eq(rc, 1, "exit %d: %s", rc, err);
	cr_assert(strstr(err, "no reply for 1 s (I/O timeout) to "), "%s", err);
	cr_assert(strstr(err, "/dst"), "%s", err);
	free(err);
	fx_sshd_stop(&sv);
	fx_sh("rm -rf %s", dir);
	free(dir);
}
