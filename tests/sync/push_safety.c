/* push_safety.c - what must hold at every instant of a push: credentials
 * never readable by others, fsync of owner-only files, every final path
 * old or new after a SIGKILL at a random moment, a cut connection, and
 * accounts limited to SFTP. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "push_env.h"
#include "safety.h"
#include "session.h"
#include "sftp.h"
#include "sftp_test.h"
#include "sync/journal.h"
#include "sync/manifest.h"
#include "sync/scan.h"
#include "sync/target.h"

Test(push_safety, credentials_never_readable_by_others, PH_ENV)
{
	ph_skills_tree(e.src, 30, 11);
	/* The remote credentials directory exists, so it can be watched from
	 * the first request on. */
	fx_sh("mkdir -p '%s/creds' && chmod 0700 '%s/creds'", e.dst, e.dst);
	sf_slow_channel(e.s, 15);
	for (int round = 0; round < 2; round++) {
		/* The credentials' directory, and the top of the destination
		 * where the temporaries are. */
		sf_watcher w[2];
		pthread_t th[2];
		memset(w, 0, sizeof(w));
		snprintf(w[0].dir, sizeof(w[0].dir), "%s/creds", e.dst);
		snprintf(w[1].dir, sizeof(w[1].dir), "%s", e.dst);
		for (int i = 0; i < 2; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, sf_watch_main,
			                            &w[i]),
			             0);
		usleep(20000);
		ferry_sync_report r;
		double t0 = sf_now_ms();
		int rc = ph_push(&e, &r);
		double ms = sf_now_ms() - t0;
		usleep(20000);
		for (int i = 0; i < 2; i++) {
			atomic_store(&w[i].stop, 1);
			pthread_join(th[i], NULL);
		}
		cr_assert_eq(rc, 0, "%s", ferry_session_errmsg(e.s));
		for (int i = 0; i < 2; i++) {
			cr_assert_geq(w[i].violations, 0,
			              "inotify unavailable");
			cr_assert_eq(w[i].violations, 0, "round %d: %s: %s",
			             round, w[i].dir, w[i].bad);
			cr_assert_gt(w[i].events, i ? 3 : 2,
			             "the sf_watcher of %s saw nothing",
			             w[i].dir);
		}
		cr_assert_gt(ms, 60, "the push was not slowed (%.1f ms)", ms);
		ferry_sync_report_free(&r);
		ph_assert_same(e.src, e.dst);
		/* Round 2: new credentials replace the old ones. */
		ph_write(e.src, "creds/token.json", "{\"token\": \"new\"}\n",
		         0600, 0);
		ph_write(e.src, "creds/id_key", "-----NEW KEY-----\n", 0600, 0);
		ph_write(e.src, "creds/.netrc", "machine n\n", 0600, 0);
	}
}

Test(push_safety, fsync_for_owner_only_files)
{
	fx_sshd sv;
	char *log = NULL;
	sf_logging_sshd(&sv, &log);
	ph_init_on(&e, "ps-fsync", &sv, 1);
	ph_skills_tree(e.src, 20, 12);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	ferry_sync_report_free(&r);
	int n1 = sf_count_in_file(log, ": fsync");
	/* --fsync: every file. */
	fx_sh("cd '%s' && for f in creds/README creds/token.json; do echo x "
	      ">> $f; done",
	      e.src);
	e.o.fsync_all = 1;
	int rc2 = ph_push(&e, &r);
	ferry_sync_report_free(&r);
	int n2 = sf_count_in_file(log, ": fsync") - n1;
	int opens = sf_count_in_file(log, "open \"");
	ph_fini(&e);
	fx_sshd_stop(&sv);
	cr_assert_eq(rc, 0);
	cr_assert_eq(rc2, 0);
	cr_assert_gt(opens, 20, "the server log holds no requests");
	cr_assert_eq(n1, 3, "fsyncs on the first push: %d (3 credentials)", n1);
	cr_assert_eq(n2, 2, "fsyncs with --fsync: %d", n2);
	free(log);
}

/* ---- SIGKILL at random moments ---- */

Test(push_safety, sigkill_at_random_moments, .timeout = 240)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, NULL), 0);
	pid_t master = sf_sshd_pid(&sv);
	ph_init_on(&e, "ps-kill", &sv, 0);
	char *v0 = ph_path(e.base, "v0"), *v1 = ph_path(e.base, "v1");
	cr_assert_eq(mkdir(v0, 0755), 0);
	cr_assert_eq(mkdir(v1, 0755), 0);
	sf_version_tree(v0, 0);
	sf_version_tree(v1, 1);
	e.o.delete_extraneous = 1;
	fx_sh("cp -a '%s'/. '%s'/", v0, e.src);
	pid_t pid = fork();
	if (pid == 0)
		sf_child_slow(&e, 0);
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "first push failed");
	/* How long a push of a change takes in a child: the kills are spread
	 * over that, not over the cold push. */
	fx_sh("rm -rf '%s' && cp -a '%s' '%s'", e.src, v1, e.src);
	double t0 = sf_now_ms();
	pid = fork();
	if (pid == 0)
		sf_child_slow(&e, 0);
	waitpid(pid, &st, 0);
	double full = sf_now_ms() - t0;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "second push failed");
	srand(12345);
	int leftovers_seen = 0;
	int killed_mid =
	        sf_kills(&e, 0, v0, v1, 50, full, master, &leftovers_seen);
	cr_assert_gt(killed_mid, 25, "too few kills landed during a push: %d",
	             killed_mid);
	cr_log_info("kills during a push: %d of 50; leftovers seen %d times",
	            killed_mid, leftovers_seen);
	free(v0);
	free(v1);
	ph_fini(&e);
	fx_sshd_stop(&sv);
}

/* ---- the connection cut mid-push ---- */

typedef struct cutter {
	pid_t master;
	int delay_ms;
	int killed;
} cutter;

static void *cut_main(void *arg)
{
	cutter *c = arg;
	usleep((useconds_t)c->delay_ms * 1000);
	c->killed = sf_children(c->master, 1);
	return NULL;
}

Test(push_safety, connection_cut_mid_push)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, NULL), 0);
	ph_init_on(&e, "ps-cut", &sv, 1);
	ph_skills_tree(e.src, 200, 13);
	e.o.delete_extraneous = 1;
	sf_slow_channel(e.s, 10);
	cutter c = {sf_sshd_pid(&sv), 35, 0};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, cut_main, &c), 0);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	pthread_join(th, NULL);
	char msg[600];
	snprintf(msg, sizeof(msg), "%s", ferry_session_errmsg(e.s));
	ferry_sync_report_free(&r);
	cr_assert_gt(c.killed, 0, "no sshd child to kill");
	cr_assert(rc == FERRY_ECONN || rc == FERRY_EEOF, "rc %s (%s)",
	          ferry_strerror(rc), msg);
	/* The manifest is whole, and what it records is on the remote. */
	ferry__manifest *m = ph_load_manifest(&e);
	size_t checked = 0;
	for (size_t i = 0; i < m->n; i++) {
		const ferry__mentry *me = &m->e[i];
		if (me->type != FERRY__T_FILE ||
		    !(me->flags & FERRY__ME_HASHED))
			continue;
		size_t len = 0;
		char *rp = ph_path(e.dst, me->path);
		char *content = fx_read_file(rp, &len);
		cr_assert(content, "recorded but absent: %s", me->path);
		XXH128_canonical_t cano;
		XXH128_canonicalFromHash(&cano, XXH3_128bits(content, len));
		cr_assert_eq(memcmp(cano.digest, me->hash.b, 16), 0,
		             "recorded hash differs: %s", me->path);
		checked++;
		free(content);
		free(rp);
	}
	cr_log_info("cut after 35 ms: %zu files recorded as committed",
	            checked);
	ferry__manifest_free(m);
	/* The next push converges. */
	ph_reconnect(&e);
	ph_push_ok(&e, &r);
	cr_assert(r.verified, "after a cut the remote is verified");
	ferry_sync_report_free(&r);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	ph_fini(&e);
	fx_sshd_stop(&sv);
}

/* ---- SFTP-only accounts ---- */

Test(push_safety, sftp_only_account)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, "ForceCommand internal-sftp\n"), 0);
	ph_init_on(&e, "ps-sftponly", &sv, 1);
	ph_skills_tree(e.src, 40, 14);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	char msg[600];
	snprintf(msg, sizeof(msg), "%s", ferry_session_errmsg(e.s));
	ferry_sync_report_free(&r);
	int rc2 = ph_push(&e, &r);
	uint64_t req2 = r.requests;
	ferry_sync_report_free(&r);
	char *a = ph_tree_listing(e.src), *b = ph_tree_listing(e.dst);
	ph_fini(&e);
	fx_sshd_stop(&sv);
	cr_assert_eq(rc, 0, "%s", msg);
	cr_assert_eq(rc2, 0);
	cr_assert_eq(req2, 0);
	cr_assert_str_eq(a, b);
	free(a);
	free(b);
}

Test(push_safety, sftp_only_chrooted_account)
{
	/* internal-sftp in a chroot: no /proc there, so lsetstat (fchmodat
	 * with AT_SYMLINK_NOFOLLOW) may fail on the server. */
	/* Every component of a chroot must be root's and not writable by
	 * others: not under /tmp. */
	char root[] = "/run/ferry-chroot-XXXXXX";
	struct stat rs;
	if (!ph_is_root() || stat("/run", &rs) || rs.st_uid != 0 ||
	    (rs.st_mode & 022) || !mkdtemp(root))
		cr_skip_test("no root-owned directory for a chroot: skipped");
	chmod(root, 0755);
	char cfg[512];
	snprintf(cfg, sizeof(cfg),
	         "ForceCommand internal-sftp\nChrootDirectory %s\n", root);
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, cfg), 0);
	ph_init_on(&e, "ps-chroot", &sv, 1);
	ph_skills_tree(e.src, 30, 15);
	e.o.dest = "/dst";
	char *dst = ph_path(root, "dst");
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	char msg[600];
	snprintf(msg, sizeof(msg), "%s", ferry_session_errmsg(e.s));
	ferry_sync_report_free(&r);
	char *a = ph_tree_listing(e.src), *b = rc ? NULL : ph_tree_listing(dst);
	/* Touches and mode changes: metadata-only updates. */
	ph_write(e.src, "creds/README", "credentials live here\n", 0640,
	         1700009999L);
	ph_write(e.src, "creds/.netrc", "machine x login y password z\n", 0600,
	         1700009999L);
	char *sk = ph_path(e.src, "skills");
	chmod(sk, 0750);
	free(sk);
	int rc2 = ph_push(&e, &r);
	uint64_t updated = r.files_updated;
	ferry_sync_report_free(&r);
	char *a2 = ph_tree_listing(e.src),
	     *b2 = rc2 ? NULL : ph_tree_listing(dst);
	ph_fini(&e);
	fx_sshd_stop(&sv);
	fx_sh("rm -rf '%s'", root);
	cr_assert_eq(rc, 0, "%s", msg);
	cr_assert_str_eq(a, b);
	cr_assert_eq(rc2, 0);
	cr_assert_eq(updated, 3);
	cr_assert_str_eq(a2, b2);
	free(a);
	free(b);
	free(a2);
	free(b2);
	free(dst);
}

/* ---- the state on disk is untrusted ---- */

static char *journal_of(ph_env *env)
{
	char *m = ph_state_file(env, ".manifest");
	cr_assert(m, "no manifest in %s", env->state);
	size_t n = strlen(m) - strlen(".manifest");
	char *j = NULL;
	cr_assert(asprintf(&j, "%.*s.journal", (int)n, m) > 0);
	free(m);
	return j;
}

/* A journal's names are removed by the next push only when they are
 * temporary names inside the destination: never an absolute path
 * elsewhere, a path through "..", or a name of another form. */
Test(push_safety, journal_names_outside_dest_are_never_removed, PH_ENV)
{
	ph_write(e.src, "a", "aaa\n", 0644, 0);
	ph_push_ok(&e, NULL);
	char *jp = journal_of(&e);
	cr_assert_eq(
	        fx_sh("mkdir -p '%s/outside' && cd '%s' && "
	              "echo c > outside/canary && "
	              "echo c > 'outside/.x.ferry-AAAAAA' && "
	              "echo k > '%s/keep' && echo t > '%s/.a.ferry-BBBBBB'",
	              e.base, e.base, e.dst, e.dst),
	        0);
	ferry__journal j;
	cr_assert_eq(ferry__journal_load(&j, jp), 0);
	char *names[5];
	cr_assert(asprintf(&names[0], "%s/outside/canary", e.base) > 0);
	cr_assert(asprintf(&names[1], "%s/../outside/.x.ferry-AAAAAA", e.dst) >
	          0);
	cr_assert(asprintf(&names[2], "%s/keep", e.dst) > 0);
	cr_assert(asprintf(&names[3], "%s/.a.ferry-BBBBBB", e.dst) > 0);
	cr_assert(asprintf(&names[4], "%s/outside/.x.ferry-AAAAAA", e.base) >
	          0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(ferry__journal_add(&j, names[i]), 0);
	char err[256];
	cr_assert_eq(ferry__journal_save(&j, err, sizeof(err)), 0, "%s", err);
	ferry__journal_free(&j);
	ph_push_ok(&e, NULL);
	cr_assert_eq(
	        fx_sh("cd '%s' && test -f outside/canary && "
	              "test -f outside/.x.ferry-AAAAAA && test -f '%s/keep'",
	              e.base, e.dst),
	        0, "a journal name outside DEST was removed");
	cr_assert_neq(access(names[3], F_OK), 0, "the real leftover stayed");
	cr_assert(strstr(e.log, "not a temporary name inside"), "%s", e.log);
	/* Dropped from the journal: the next push does not warn again. */
	e.loglen = 0;
	e.log[0] = '\0';
	ph_push_ok(&e, NULL);
	cr_assert(!strstr(e.log, "not a temporary name"), "%s", e.log);
	for (int i = 0; i < 5; i++)
		free(names[i]);
	free(jp);
}

static void expect_refused(const char *what)
{
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	cr_assert_eq(rc, FERRY_EPERM, "%s: push returned %d", what, rc);
	const char *m = ferry_session_errmsg(e.s);
	cr_assert(strstr(m, "refusing to use it") && strstr(m, e.state),
	          "%s: %s", what, m);
	ferry_sync_report_free(&r);
}

/* As ssh with its keys: a state directory or state file that another
 * account could have written is refused, with its path and the reason. */
Test(push_safety, state_writable_by_others_is_refused, PH_ENV)
{
	ph_write(e.src, "a", "aaa\n", 0644, 0);
	ph_push_ok(&e, NULL);
	char *jp = journal_of(&e);
	char *mp = ph_state_file(&e, ".manifest");
	cr_assert_eq(chmod(e.state, 0777), 0);
	expect_refused("a world-writable state directory");
	cr_assert_eq(chmod(e.state, 0700), 0);
	ph_push_ok(&e, NULL);
	cr_assert_eq(chmod(jp, 0622), 0);
	expect_refused("a group-writable journal");
	cr_assert_eq(chmod(jp, 0600), 0);
	cr_assert_eq(chown(mp, 65534, 65534), 0);
	expect_refused("a manifest of another user");
	cr_assert_eq(chown(mp, getuid(), getgid()), 0);
	ph_push_ok(&e, NULL);
	/* A symlink in place of the manifest is not followed. */
	cr_assert_eq(fx_sh("mv '%s' '%s.real' && ln -s '%s.real' '%s'", mp, mp,
	                   mp, mp),
	             0);
	expect_refused("a manifest that is a symlink");
	free(jp);
	free(mp);
}
