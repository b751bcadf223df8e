/* push_bad.c - bad input and hostile remotes: each with a clear error and
 * nothing lost. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "push_env.h"
#include "sync/manifest.h"
#include "sync/target.h"

static int has_error(const ferry_sync_report *r, const char *path_part,
                     const char *msg_part)
{
	for (size_t i = 0; i < r->error_count; i++)
		if (strstr(r->errors[i].path, path_part) &&
		    (!msg_part || strstr(r->errors[i].message, msg_part)))
			return 1;
	return 0;
}

Test(push_bad, missing_source, PH_ENV)
{
	ph_write(e.src, "a", "aaa\n", 0644, 1700000000L);
	fx_sh("mkdir -p '%s' && echo keep > '%s/keep'", e.dst, e.dst);
	char *missing = ph_path(e.base, "no-such-dir/");
	e.sources[1] = missing;
	e.o.source_count = 2;
	e.o.delete_extraneous = 1;
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	cr_assert_eq(rc, FERRY_EPARTIAL, "%s", ferry_strerror(rc));
	cr_assert(has_error(&r, "no-such-dir", NULL),
	          "no error for the source");
	cr_assert(ph_exists(e.dst, "a"), "the readable source was pushed");
	cr_assert(ph_exists(e.dst, "keep"), "deletions must be refused");
	ferry_sync_report_free(&r);
	free(missing);
}

Test(push_bad, unreadable_file_others_pushed, PH_ENV)
{
	ph_write(e.src, "ok1", "fine\n", 0644, 1700000000L);
	ph_write(e.src, "secret", "nope\n", 0000, 1700000000L);
	ph_write(e.src, "ok2", "fine too\n", 0644, 1700000000L);
	st_drop_dac();
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	cr_assert_eq(rc, FERRY_EPARTIAL, "%s", ferry_strerror(rc));
	cr_assert(has_error(&r, "secret", NULL), "no error for the file");
	cr_assert(ph_exists(e.dst, "ok1") && ph_exists(e.dst, "ok2"));
	cr_assert(!ph_exists(e.dst, "secret"));
	cr_assert_eq(r.files_uploaded, 2);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	ferry_sync_report_free(&r);
	/* Readable again: the next push sends it, nothing else. */
	char *p = ph_path(e.src, "secret");
	chmod(p, 0600);
	free(p);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(push_bad, destination_is_a_file, PH_ENV)
{
	ph_write(e.src, "a", "aaa\n", 0644, 1700000000L);
	ph_write(e.base, "remote/dst", "I am a file\n", 0644, 0);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	cr_assert_eq(rc, FERRY_EEXIST, "%s", ferry_strerror(rc));
	cr_assert(strstr(ferry_session_errmsg(e.s), "not a directory"), "%s",
	          ferry_session_errmsg(e.s));
	char *c = ph_read(e.base, "remote/dst");
	cr_assert_str_eq(c, "I am a file\n");
	free(c);
	cr_assert_eq(ph_count_temps(e.base), 0);
	ferry_sync_report_free(&r);
}

/* A private server on which user may log in with the fixture's key (the
 * shared one keeps authorized_keys in a directory only root can read). */
static void user_sshd(fx_sshd *sv, const char *user, char **keydir)
{
	*keydir = strdup("/tmp/ferry-keys-XXXXXX");
	cr_assert(mkdtemp(*keydir));
	chmod(*keydir, 0755);
	char cfg[1024];
	snprintf(cfg, sizeof(cfg),
	         "Match User %s\n\tAuthorizedKeysFile %s/authorized_keys\n",
	         user, *keydir);
	cr_assert_eq(fx_sshd_start(sv, cfg), 0, "private sshd");
	cr_assert_eq(fx_sh("cp '%s/authorized_keys' '%s/' && chmod 0644 "
	                   "'%s/authorized_keys'",
	                   sv->dir, *keydir, *keydir),
	             0);
}

Test(push_bad, remote_permission_denied)
{
	const char *user = ph_test_user();
	if (!user)
		cr_skip_test("no non-root account to log in to (not root: "
		             "cannot useradd); permission tests skipped");
	struct passwd *pw = getpwnam(user);
	cr_assert(pw);
	fx_sshd sv;
	char *keydir = NULL;
	user_sshd(&sv, user, &keydir);
	ph_init_on(&e, "pb-perm", &sv, 0);
	ph_write(e.src, "a", "aaa\n", 0644, 1700000000L);
	ph_mkdir(e.src, "ro", 0755);
	ph_write(e.src, "ro/b", "bbb\n", 0644, 1700000000L);
	/* A remote the account can reach but not write in. */
	char top[] = "/tmp/ferry-perm-XXXXXX";
	cr_assert(mkdtemp(top));
	chmod(top, 0555);
	free(e.dst);
	e.dst = ph_path(top, "dst");
	e.o.dest = e.dst;
	ph_connect_as(&e, user);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	int dest_err = strstr(ferry_session_errmsg(e.s), "destination") != NULL;
	char msg[600];
	snprintf(msg, sizeof(msg), "%s", ferry_session_errmsg(e.s));
	int made = ph_exists(e.dst, "");
	ferry_sync_report_free(&r);
	/* A writable destination with one read-only directory in it. */
	fx_sh("mkdir -p '%s/ro' && chown %d '%s' && chmod 0555 '%s/ro'", e.dst,
	      (int)pw->pw_uid, e.dst, e.dst);
	int rc2 = ph_push(&e, &r);
	int err_b = has_error(&r, "ro/b", NULL);
	int a_there = ph_exists(e.dst, "a"), b_there = ph_exists(e.dst, "ro/b");
	ferry_sync_report_free(&r);
	fx_sh("rm -rf '%s'", top);
	ph_fini(&e);
	fx_sshd_stop(&sv);
	fx_sh("rm -rf '%s'", keydir);
	free(keydir);
	cr_assert_eq(rc, FERRY_EPERM, "%s: %s", ferry_strerror(rc), msg);
	cr_assert(dest_err, "%s", msg);
	cr_assert(!made);
	cr_assert_eq(rc2, FERRY_EPARTIAL, "%s", ferry_strerror(rc2));
	cr_assert(err_b && a_there && !b_there);
}

Test(push_bad, remote_disk_full, PH_ENV)
{
	if (fx_sh("mkdir -p '%s' && mount -t tmpfs -o size=256k tmpfs '%s' "
	          "2>/dev/null",
	          e.dst, e.dst) != 0) {
		ph_fini(&e);
		cr_skip_test("cannot mount a small tmpfs here: disk-full test "
		             "skipped");
	}
	ph_write(e.src, "small", "tiny\n", 0644, 1700000000L);
	ph_write(e.src, "cred", "old secret\n", 0600, 1700000000L);
	ferry_sync_report r;
	int rc1 = ph_push(&e, &r);
	ferry_sync_report_free(&r);
	/* Now a file bigger than the filesystem, and a changed credential. */
	char *big = malloc(600 * 1024 + 1);
	memset(big, 'x', 600 * 1024);
	big[600 * 1024] = '\0';
	ph_write(e.src, "big", big, 0644, 0);
	ph_write(e.src, "cred", "new secret\n", 0600, 0);
	free(big);
	int rc2 = ph_push(&e, &r);
	int err_big = has_error(&r, "big", "space");
	char *errs = strdup(r.error_count ? r.errors[0].message : "");
	ferry_sync_report_free(&r);
	char *cred = ph_read(e.dst, "cred");
	int temps = ph_count_temps(e.dst);
	int big_there = ph_exists(e.dst, "big");
	/* Without the big file the next push goes through. */
	char *bp = ph_path(e.src, "big");
	unlink(bp);
	free(bp);
	int rc3 = ph_push(&e, &r);
	ferry_sync_report_free(&r);
	char *cred3 = ph_read(e.dst, "cred");
	fx_sh("umount '%s'", e.dst);
	cr_assert_eq(rc1, 0);
	cr_assert_eq(rc2, FERRY_EPARTIAL, "%s", ferry_strerror(rc2));
	cr_assert(err_big, "no clear disk-full error: %s", errs);
	cr_assert(!big_there);
	cr_assert_eq(temps, 0);
	cr_assert(cred && (!strcmp(cred, "new secret\n") ||
	                   !strcmp(cred, "old secret\n")),
	          "the credential is neither the old nor the new one: %s",
	          cred);
	cr_assert_eq(rc3, 0, "%s", ferry_strerror(rc3));
	cr_assert_str_eq(cred3, "new secret\n");
	free(cred);
	free(cred3);
	free(errs);
}

Test(push_bad, hostile_names, PH_ENV)
{
	const char *names[] = {"with space",
	                       "new\nline",
	                       "quote'single",
	                       "quote\"double",
	                       "back\\slash",
	                       "-leading-dash",
	                       "--",
	                       "non-utf8-\xff\xfe",
	                       "$(touch pwned)",
	                       "star*?[x]",
	                       "tab\there",
	                       ".hidden",
	                       "..double-dot"};
	size_t n = sizeof(names) / sizeof(names[0]);
	for (size_t i = 0; i < n; i++)
		ph_write(e.src, names[i], names[i], 0644, 1700000000L);
	ph_mkdir(e.src, "dir with\nnewline", 0755);
	ph_write(e.src, "dir with\nnewline/-x", "x", 0600, 1700000000L);
	ph_symlink(e.src, "link \xff", "with space");
	e.o.delete_extraneous = 1;
	ph_push_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
	cr_assert(!ph_exists(e.dst, "pwned") && !ph_exists(e.base, "pwned"));
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.requests, 0);
	ferry_sync_report_free(&r);
	char *p = ph_path(e.src, "new\nline");
	unlink(p);
	free(p);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_deleted, 1);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
	/* A verify of all that finds nothing to do. */
	e.o.verify = 1;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded + r.files_deleted + r.files_updated, 0);
	ferry_sync_report_free(&r);
}

Test(push_bad, planted_symlinks_are_replaced_not_followed, PH_ENV)
{
	char *out = ph_path(e.base, "outside");
	cr_assert_eq(mkdir(out, 0755), 0);
	ph_write(out, "f", "outside file\n", 0644, 1700000000L);
	ph_write(out, "x", "outside x\n", 0644, 1700000000L);
	ph_write(e.src, "f", "mine\n", 0600, 1700000000L);
	ph_mkdir(e.src, "d", 0755);
	ph_write(e.src, "d/x", "my x\n", 0644, 1700000000L);
	/* Planted before the first push. */
	fx_sh("mkdir -p '%s' && ln -s '%s/f' '%s/f' && ln -s '%s' '%s/d'",
	      e.dst, out, e.dst, out, e.dst);
	char *before = ph_tree_listing(out);
	ph_push_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
	char *after = ph_tree_listing(out);
	cr_assert_str_eq(before, after, "written through a symlink");
	free(after);
	/* Planted on a target the manifest vouches for: a changed file and a
	 * new directory whose names were taken by symlinks. */
	ph_write(e.src, "f", "mine, changed\n", 0600, 0);
	ph_mkdir(e.src, "nd", 0755);
	ph_write(e.src, "nd/x", "new x\n", 0644, 1700000000L);
	fx_sh("cd '%s' && rm f && ln -s '%s/f' f && ln -s '%s' nd", e.dst, out,
	      out);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	after = ph_tree_listing(out);
	cr_assert_str_eq(before, after, "written through a symlink");
	free(after);
	struct stat st;
	char *f = ph_path(e.dst, "f");
	cr_assert_eq(lstat(f, &st), 0);
	cr_assert(S_ISREG(st.st_mode), "the symlink at f was not replaced");
	free(f);
	/* The push saw the symlink at nd, wrote nothing through it, and
	 * verified and repaired the remote at once. */
	cr_assert_eq(rc, 0, "rc %s: %s", ferry_strerror(rc),
	             ferry_session_errmsg(e.s));
	cr_assert(r.verified);
	cr_assert(strstr(e.log, "nd: is a symlink on the remote"), "%s", e.log);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
	/* And it holds. */
	ph_push_ok(&e, &r);
	cr_assert_eq(r.requests, 0);
	ph_assert_same(e.src, e.dst);
	after = ph_tree_listing(out);
	cr_assert_str_eq(before, after);
	free(after);
	ferry_sync_report_free(&r);
	free(before);
	free(out);
}

static int child_push(void)
{
	ferry_session_opts o;
	fx_opts(e.sv, &o);
	ferry_session *s = NULL;
	if (ferry_session_open(&s, &o))
		return 2;
	ferry_sync_report r;
	memset(&r, 0, sizeof(r));
	e.o.log = NULL;
	int rc = ferry_sync(s, &e.o, &r);
	ferry_sync_report_free(&r);
	ferry_session_close(s);
	return rc ? 1 : 0;
}

Test(push_bad, concurrent_pushes_take_turns, PH_ENV)
{
	ph_skills_tree(e.src, 150, 9);
	e.o.delete_extraneous = 1;
	pid_t kids[4];
	for (int i = 0; i < 4; i++) {
		kids[i] = fork();
		cr_assert(kids[i] >= 0);
		if (kids[i] == 0)
			_exit(child_push());
	}
	for (int i = 0; i < 4; i++) {
		int st = 0;
		cr_assert_eq(waitpid(kids[i], &st, 0), kids[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		          "push %d failed (status %d)", i, st);
	}
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	/* The manifest is whole and vouches: nothing to do. */
	ferry__manifest *m = ph_load_manifest(&e);
	cr_assert(m->loaded && m->has_marker);
	cr_assert_eq(m->n, 150 + 4 + 2 + 1 + 25 + 1, "entries %zu", m->n);
	ferry__manifest_free(m);
	ph_reconnect(&e);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded + r.files_deleted, 0);
	cr_assert_eq(r.verified, 0);
	ferry_sync_report_free(&r);
}

/* A directory the manifest vouches for, replaced by a symlink to a
 * directory outside between two pushes of one session: the next push
 * changes, chmods and deletes nothing there, says so, and the verifying
 * second pass puts a real directory back. */
Test(push_bad, directory_swapped_for_symlink_between_pushes, PH_ENV)
{
	char *out = ph_path(e.base, "outside");
	cr_assert_eq(mkdir(out, 0755), 0);
	ph_write(e.src, "top", "top\n", 0644, 1700000000L);
	ph_mkdir(e.src, "sub", 0755);
	ph_write(e.src, "sub/a", "mine a\n", 0644, 1700000000L);
	ph_write(e.src, "sub/b", "mine b\n", 0600, 1700000000L);
	ph_write(e.src, "sub/gone", "going\n", 0644, 1700000000L);
	ph_mkdir(e.src, "sub/deep", 0755);
	ph_write(e.src, "sub/deep/c", "mine c\n", 0644, 1700000000L);
	e.o.delete_extraneous = 1;
	ph_push_ok(&e, NULL);
	/* Outside: the same names, other contents. */
	fx_sh("cd '%s' && echo theirs > a && echo theirs > b && "
	      "echo theirs > gone && mkdir deep && echo theirs > deep/c && "
	      "chmod 0644 a b gone deep/c",
	      out);
	char *before = ph_tree_listing(out);
	fx_sh("cd '%s' && mv sub sub.real && ln -s '%s' sub", e.dst, out);
	/* A content change, a mode change, a deletion and a new file, all
	 * under sub/. */
	ph_write(e.src, "sub/a", "mine a, changed\n", 0644, 0);
	fx_sh("chmod 0640 '%s/sub/b' && rm '%s/sub/gone' && "
	      "echo new > '%s/sub/deep/new'",
	      e.src, e.src, e.src);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	char *after = ph_tree_listing(out);
	cr_assert_str_eq(before, after, "written through the symlink sub");
	free(after);
	cr_assert(strstr(e.log, "sub: is a symlink on the remote"), "%s",
	          e.log);
	cr_assert_eq(rc, 0, "the second pass repairs: %s\n%s",
	             ferry_session_errmsg(e.s), e.log);
	cr_assert(r.verified);
	struct stat st;
	char *sub = ph_path(e.dst, "sub");
	cr_assert_eq(lstat(sub, &st), 0);
	cr_assert(S_ISDIR(st.st_mode), "sub is a directory again");
	free(sub);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
	after = ph_tree_listing(out);
	cr_assert_str_eq(before, after);
	free(after);
	free(before);
	free(out);
}

/* A symlink that is only an ancestor of the write: a/b/f with a/
 * swapped.  Nothing under it is written. */
Test(push_bad, deeper_writes_check_every_directory_on_the_way, PH_ENV)
{
	char *out = ph_path(e.base, "outside");
	cr_assert_eq(mkdir(out, 0755), 0);
	ph_mkdir(e.src, "a", 0755);
	ph_mkdir(e.src, "a/b", 0755);
	ph_write(e.src, "a/b/f", "one\n", 0644, 1700000000L);
	ph_push_ok(&e, NULL);
	fx_sh("mkdir -p '%s/b' && echo theirs > '%s/b/f' && cd '%s' && "
	      "mv a a.real && ln -s '%s' a",
	      out, out, e.dst, out);
	char *before = ph_tree_listing(out);
	ph_write(e.src, "a/b/f", "two\n", 0644, 0);
	ferry_sync_report r;
	ph_push(&e, &r);
	char *after = ph_tree_listing(out);
	cr_assert_str_eq(before, after, "written through the symlink a");
	cr_assert(strstr(e.log, "a: is a symlink on the remote"), "%s", e.log);
	ferry_sync_report_free(&r);
	free(before);
	free(after);
	free(out);
}

/* A destination other accounts may write to: one of them could swap a
 * directory for a symlink between ferry's check and its write.  Nothing
 * is written below it (here while such a swap runs in a loop) unless
 * allow_shared_dirs; then the manifest does not vouch for the tree and the
 * next push verifies. */
Test(push_bad, shared_destination_is_refused_unless_allowed, PH_ENV)
{
	char *out = ph_path(e.base, "outside");
	cr_assert_eq(mkdir(out, 0755), 0);
	ph_write(e.src, "top", "top\n", 0644, 1700000000L);
	ph_mkdir(e.src, "sub", 0755);
	for (int i = 0; i < 20; i++) {
		char n[32];
		snprintf(n, sizeof(n), "sub/f%02d", i);
		ph_write(e.src, n, "content\n", i % 2 ? 0600 : 0644,
		         1700000000L);
	}
	fx_sh("mkdir -p '%s/sub' && chmod 0777 '%s'", e.dst, e.dst);
	char *before = ph_tree_listing(out);
	/* The swapper: sub is a directory, then a symlink to outside; it
	 * leaves a flag once it has swapped.  As root the tests make it
	 * another account, which may search the directories down to DEST. */
	char flag[700];
	snprintf(flag, sizeof(flag), "%s/swapped", e.dst);
	if (geteuid() == 0)
		fx_sh("d='%s'; while [ \"$d\" != / ]; do chmod o+x \"$d\"; "
		      "d=$(dirname \"$d\"); done",
		      e.dst);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		char cmd[4096];
		snprintf(cmd, sizeof(cmd),
		         "cd '%s' && while :; do mv -T sub sub.d 2>/dev/null "
		         "&& ln -sT '%s' sub && : > '%s' && rm -f sub && "
		         "mv -T sub.d sub; done",
		         e.dst, out, flag);
		/* Another account (nobody) when the tests run as root. */
		if (geteuid() == 0)
			execl("/usr/bin/setpriv", "setpriv", "--reuid=65534",
			      "--regid=65534", "--clear-groups", "/bin/sh",
			      "-c", cmd, (char *)NULL);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	int refused = 0;
	for (int i = 0; i < 20; i++) {
		ferry_sync_report r;
		int rc = ph_push(&e, &r);
		refused += rc == FERRY_EPARTIAL &&
		           strstr(e.log, "is writable by other accounts");
		ferry_sync_report_free(&r);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fx_sh("cd '%s' && if [ -L sub ]; then rm sub; fi && "
	      "if [ -d sub.d ]; then mv -T sub.d sub; fi",
	      e.dst);
	char *after = ph_tree_listing(out);
	cr_assert_str_eq(before, after, "written through the symlink sub");
	free(after);
	cr_assert_eq(refused, 20, "refused %d of 20", refused);
	cr_assert(ph_exists(e.dst, "swapped"), "the swapper never swapped");
	fx_sh("rm -f '%s'", flag);
	cr_assert(ph_exists(e.dst, "top"), "the top level is written");
	cr_assert(!ph_exists(e.dst, "sub/f00"), "written below a shared "
	                                        "directory");
	/* Allowed: written, and never vouched for. */
	e.o.allow_shared_dirs = 1;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	ferry_sync_report_free(&r);
	ph_assert_same(e.src, e.dst);
	ph_push_ok(&e, &r);
	cr_assert(r.verified, "the manifest vouched for a shared tree");
	ferry_sync_report_free(&r);
	free(before);
	free(out);
}
