/* pull_safety.c - what must hold at every instant of a pull: owner-only
 * files never readable by others locally, a symlink planted in the
 * destination never followed, a full disk leaves everything whole, and a
 * SIGKILL at a random moment leaves every local path old or new (the next
 * pull converges). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pull_helpers.h"
#include "safety.h"

Test(pull_safety, owner_only_files_never_readable_by_others, PH_ENV)
{
	ph_skills_tree(e.src, 30, 21);
	/* Whatever the umask, an owner-only file must start owner-only. */
	umask(0);
	fx_sh("mkdir -p '%s/creds' && chmod 0700 '%s/creds'", e.dst, e.dst);
	sf_slow_channel(e.s, 15);
	for (int round = 0; round < 2; round++) {
		sf_watcher w;
		memset(&w, 0, sizeof(w));
		snprintf(w.dir, sizeof(w.dir), "%s/creds", e.dst);
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, sf_watch_main, &w), 0);
		usleep(20000);
		ferry_sync_report r;
		int rc = pl_pull(&e, &r);
		usleep(20000);
		atomic_store(&w.stop, 1);
		pthread_join(th, NULL);
		cr_assert_eq(rc, 0, "%s", ferry_session_errmsg(e.s));
		cr_assert_geq(w.violations, 0, "inotify unavailable");
		cr_assert_eq(w.violations, 0, "round %d: %s", round, w.bad);
		cr_assert_gt(w.events, 3, "the watcher saw nothing");
		ferry_sync_report_free(&r);
		ph_assert_same(e.src, e.dst);
		ph_write(e.src, "creds/token.json", "{\"token\": \"new\"}\n",
		         0600, 0);
		ph_write(e.src, "creds/id_key", "-----NEW KEY-----\n", 0600, 0);
		ph_write(e.src, "creds/.netrc", "machine n\n", 0600, 0);
	}
}

Test(pull_safety, planted_symlinks_are_never_followed, PH_ENV)
{
	ph_mkdir(e.src, "sub", 0755);
	ph_write(e.src, "sub/a", "a\n", 0644, 0);
	ph_write(e.src, "sub/b", "b\n", 0644, 0);
	ph_write(e.src, "victim", "remote\n", 0644, 0);
	char *out = ph_path(e.base, "outside");
	cr_assert_eq(mkdir(out, 0755), 0);
	ph_write(out, "victim", "untouched\n", 0644, 0);
	cr_assert_eq(mkdir(e.dst, 0755), 0);
	/* A directory and a file of the remote are symlinks to outside. */
	ph_symlink(e.dst, "sub", out);
	char *v = ph_path(out, "victim");
	ph_symlink(e.dst, "victim", v);
	pl_pull_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
	char *c = ph_read(out, "victim");
	cr_assert_str_eq(c, "untouched\n");
	cr_assert(!ph_exists(out, "a") && !ph_exists(out, "b"),
	          "written through the planted link");
	free(c);
	free(v);
	free(out);
}

Test(pull_safety, local_disk_full_leaves_everything_whole, PH_ENV)
{
	if (!ph_is_root())
		cr_skip_test("mounting a tmpfs needs root");
	cr_assert_eq(mkdir(e.dst, 0755), 0);
	if (fx_sh("mount -t tmpfs -o size=1m ferry-test '%s' 2>/dev/null",
	          e.dst) != 0)
		cr_skip_test("mount -t tmpfs is not permitted here");
	ph_write(e.src, "small", "old small\n", 0644, 1700000000L);
	ph_write(e.src, "keep", "old keep\n", 0644, 1700000000L);
	pl_pull_ok(&e, NULL);
	/* Now a file that cannot fit, and the others changed. */
	fx_sh("head -c 3000000 /dev/urandom > '%s/big'", e.src);
	ph_write(e.src, "keep", "new keep, longer\n", 0644, 1700000001L);
	ferry_sync_report r;
	int rc = pl_pull(&e, &r);
	const char *msg = ferry_session_errmsg(e.s);
	int temps = ph_count_temps(e.dst);
	int big = ph_exists(e.dst, "big");
	char *keep = ph_read(e.dst, "keep");
	char *small = ph_read(e.dst, "small");
	fx_sh("umount '%s'", e.dst);
	cr_assert_neq(rc, 0);
	cr_assert(strstr(msg, "disk is full") || r.error_count, "%s", msg);
	cr_assert_eq(temps, 0, "temporary files left behind");
	cr_assert(!big, "a torn file");
	cr_assert(keep && (!strcmp(keep, "old keep\n") ||
	                   !strcmp(keep, "new keep, longer\n")));
	cr_assert_str_eq(small, "old small\n");
	ferry_sync_report_free(&r);
	free(keep);
	free(small);
}

/* A local write that fails (here the file size limit: EFBIG) happens on
 * the writer thread, after its download went out: the file is reported
 * by name with the step that failed, its temporary removed, nothing torn,
 * the other files pulled; the next pull converges. */
Test(pull_safety, local_write_error_is_reported_by_name, PH_ENV)
{
	ph_write(e.src, "small", "small\n", 0644, 1700000000L);
	ph_mkdir(e.src, "d", 0755);
	fx_sh("head -c 20000 /dev/urandom > '%s/d/big'", e.src);
	ph_write(e.src, "d/after", "after\n", 0644, 1700000000L);
	signal(SIGXFSZ, SIG_IGN); /* the write fails with EFBIG instead */
	struct rlimit old, lim;
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 8192;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ferry_sync_report r;
	int rc = pl_pull(&e, &r);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	cr_assert_eq(rc, FERRY_EPARTIAL, "%s: %s", ferry_strerror(rc),
	             ferry_session_errmsg(e.s));
	cr_assert_eq(r.error_count, 1, "%zu errors", r.error_count);
	cr_assert(strstr(r.errors[0].path, "d/big"), "%s", r.errors[0].path);
	cr_assert(strstr(r.errors[0].message, "writing the local file"), "%s",
	          r.errors[0].message);
	cr_assert_eq(ph_count_temps(e.dst), 0, "temporary files left behind");
	cr_assert(!ph_exists(e.dst, "d/big"), "a torn file");
	char *small = ph_read(e.dst, "small"),
	     *after = ph_read(e.dst, "d/after");
	cr_assert_str_eq(small, "small\n");
	cr_assert_str_eq(after, "after\n");
	free(small);
	free(after);
	ferry_sync_report_free(&r);
	pl_pull_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
}

Test(pull_safety, sigkill_at_random_moments, .timeout = 240)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, NULL), 0);
	pid_t master = sf_sshd_pid(&sv);
	ph_init_on(&e, "pls-kill", &sv, 0);
	char *v0 = ph_path(e.base, "v0"), *v1 = ph_path(e.base, "v1");
	cr_assert_eq(mkdir(v0, 0755), 0);
	cr_assert_eq(mkdir(v1, 0755), 0);
	sf_version_tree(v0, 0);
	sf_version_tree(v1, 1);
	e.o.delete_extraneous = 1;
	fx_sh("cp -a '%s'/. '%s'/", v0, e.src);
	pid_t pid = fork();
	if (pid == 0)
		sf_child_slow(&e, 1);
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "first pull failed");
	/* The kills are spread over what a pull of a change takes, not over
	 * the cold pull, which is longer. */
	fx_sh("rm -rf '%s' && cp -a '%s' '%s'", e.src, v1, e.src);
	double t0 = sf_now_ms();
	pid = fork();
	if (pid == 0)
		sf_child_slow(&e, 1);
	waitpid(pid, &st, 0);
	double full = sf_now_ms() - t0;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "second pull failed");
	srand(4321);
	int leftovers_seen = 0;
	int killed_mid =
	        sf_kills(&e, 1, v0, v1, 40, full, master, &leftovers_seen);
	cr_assert_gt(killed_mid, 20, "too few kills landed during a pull: %d",
	             killed_mid);
	cr_log_info("kills during a pull: %d of 40; leftovers seen %d times",
	            killed_mid, leftovers_seen);
	free(v0);
	free(v1);
	ph_fini(&e);
	fx_sshd_stop(&sv);
}
