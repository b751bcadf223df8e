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
#include "session.h"
#include "sftp.h"
#include "sftp_test.h"
#include "sync/journal.h"
#include "sync/manifest.h"
#include "sync/scan.h"
#include "sync/target.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Open the session's SFTP channel with a delay on every message, so that
 * a push takes long enough to be watched or interrupted. */
static void slow_channel(ferry_session *s, int latency_ms)
{
	ferry__sftp_opts so;
	memset(&so, 0, sizeof(so));
	fx_sftp_latency(&so, latency_ms);
	ferry__sftp *sf = NULL;
	cr_assert_eq(ferry__session_sftp_ex(s, &so, &sf), 0, "sftp: %s",
	             ferry_session_errmsg(s));
}

/* ---- credentials are never readable by others ---- */

typedef struct watcher {
	char dir[1024];
	atomic_int stop;
	int events, violations, checks;
	char bad[512];
} watcher;

static int is_cred_name(const char *n)
{
	return strstr(n, "token.json") || strstr(n, "id_key") ||
	       strstr(n, ".netrc");
}

static void check_entry(watcher *w, int dfd, const char *name)
{
	struct stat st;
	if (!is_cred_name(name) || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return;
	w->checks++;
	if (st.st_mode & 077) {
		w->violations++;
		snprintf(w->bad, sizeof(w->bad), "%s mode %04o", name,
		         (unsigned)(st.st_mode & 07777));
	}
}

static void *watch_main(void *arg)
{
	watcher *w = arg;
	int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (in < 0 || dfd < 0 ||
	    inotify_add_watch(in, w->dir,
	                      IN_CREATE | IN_ATTRIB | IN_MOVED_TO | IN_MODIFY |
	                              IN_CLOSE_WRITE) < 0) {
		w->violations = -1;
		return NULL;
	}
	char buf[65536] __attribute__((aligned(8)));
	while (!atomic_load(&w->stop)) {
		/* Events, and a polling pass over every entry between them. */
		ssize_t n = read(in, buf, sizeof(buf));
		for (ssize_t off = 0; n > 0 && off < n;) {
			struct inotify_event *ev = (void *)(buf + off);
			if (ev->len) {
				w->events++;
				check_entry(w, dfd, ev->name);
			}
			off += (ssize_t)sizeof(*ev) + ev->len;
		}
		DIR *d = fdopendir(dup(dfd));
		if (d) {
			struct dirent *de;
			while ((de = readdir(d)))
				check_entry(w, dirfd(d), de->d_name);
			closedir(d);
		}
	}
	close(in);
	close(dfd);
	return NULL;
}

Test(push_safety, credentials_never_readable_by_others, PH_ENV)
{
	ph_skills_tree(e.src, 30, 11);
	/* The remote credentials directory exists, so it can be watched from
	 * the first request on. */
	fx_sh("mkdir -p '%s/creds' && chmod 0700 '%s/creds'", e.dst, e.dst);
	slow_channel(e.s, 15);
	for (int round = 0; round < 2; round++) {
		watcher w;
		memset(&w, 0, sizeof(w));
		snprintf(w.dir, sizeof(w.dir), "%s/creds", e.dst);
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, watch_main, &w), 0);
		usleep(20000);
		ferry_sync_report r;
		double t0 = now_ms();
		int rc = ph_push(&e, &r);
		double ms = now_ms() - t0;
		usleep(20000);
		atomic_store(&w.stop, 1);
		pthread_join(th, NULL);
		cr_assert_eq(rc, 0, "%s", ferry_session_errmsg(e.s));
		cr_assert_geq(w.violations, 0, "inotify unavailable");
		cr_assert_eq(w.violations, 0, "round %d: %s", round, w.bad);
		cr_assert_gt(w.events, 3, "the watcher saw nothing");
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

/* ---- fsync ---- */

/* A private server whose SFTP server logs its requests to a file. */
static void logging_sshd(fx_sshd *sv, char **log)
{
	char *dir = fx_tmpdir("ps-sftplog");
	cr_assert(dir);
	char *wrapper = ph_path(dir, "sftp-wrapper.sh");
	*log = ph_path(dir, "sftp.log");
	char script[2048];
	snprintf(script, sizeof(script),
	         "#!/bin/sh\nexec /usr/lib/openssh/sftp-server -e -l DEBUG3 "
	         "2>>'%s'\n",
	         *log);
	cr_assert_eq(fx_write_file(wrapper, script, strlen(script), 0755), 0);
	char cfg[1200];
	snprintf(cfg, sizeof(cfg), "ForceCommand %s\n", wrapper);
	cr_assert_eq(fx_sshd_start(sv, cfg), 0);
	free(wrapper);
	free(dir);
}

static int count_in_file(const char *path, const char *needle)
{
	char *c = fx_read_file(path, NULL);
	int n = 0;
	for (char *p = c; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(c);
	return n;
}

Test(push_safety, fsync_for_owner_only_files)
{
	fx_sshd sv;
	char *log = NULL;
	logging_sshd(&sv, &log);
	ph_init_on(&e, "ps-fsync", &sv, 1);
	ph_skills_tree(e.src, 20, 12);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	ferry_sync_report_free(&r);
	int n1 = count_in_file(log, ": fsync");
	/* --fsync: every file. */
	fx_sh("cd '%s' && for f in creds/README creds/token.json; do echo x "
	      ">> $f; done",
	      e.src);
	e.o.fsync_all = 1;
	int rc2 = ph_push(&e, &r);
	ferry_sync_report_free(&r);
	int n2 = count_in_file(log, ": fsync") - n1;
	int opens = count_in_file(log, "open \"");
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

static int children(pid_t parent, int kill_them);
static pid_t sshd_pid(const fx_sshd *sv);

/* Wait until the server has finished with every connection: requests a
 * killed client sent are still executed by its sftp-server. */
static void wait_server_idle(pid_t master)
{
	for (int i = 0; i < 500 && children(master, 0) > 0; i++)
		usleep(10000);
	cr_assert_eq(children(master, 0), 0, "the server is still busy");
}

static void version_tree(const char *dir, int v)
{
	/* Every file changes between versions (size too); one file only in
	 * version 1, one only in version 0. */
	fx_sh("rm -rf '%s'/* '%s'/.[!.]* 2>/dev/null", dir, dir);
	ph_mkdir(dir, "creds", 0700);
	ph_mkdir(dir, "s", 0755);
	ph_mkdir(dir, "s/t", 0755);
	char name[64], content[8192];
	for (int i = 0; i < 60; i++) {
		snprintf(name, sizeof(name), "%s/f%02d",
		         i % 3 == 0 ? "s/t" : (i % 3 == 1 ? "s" : "creds"), i);
		int len = snprintf(content, sizeof(content),
		                   "version %d of %s\n", v, name);
		for (int k = len; k < 200 + 37 * i + 11 * v; k++)
			content[k] = (char)('a' + (k + v) % 26);
		content[200 + 37 * i + 11 * v] = '\0';
		ph_write(dir, name, content, i % 3 == 2 ? 0600 : 0644,
		         1700000000L + i + v);
	}
	ph_write(dir, v ? "only1" : "only0", "x\n", 0644, 1700000000L);
}

/* Every regular file under the remote is one of the versions, whole. */
static int check_versions(const char *dst, const char *v0, const char *v1,
                          char *why, size_t whysz)
{
	char *l = ph_tree_listing(dst);
	int ok = 1;
	for (char *line = strtok(l, "\n"); line && ok;
	     line = strtok(NULL, "\n")) {
		char path[512];
		char type;
		if (sscanf(line, "%511s %c", path, &type) != 2 || type != 'f')
			continue;
		const char *base = strrchr(path, '/');
		base = base ? base + 1 : path;
		if (base[0] == '.' && strstr(base, ".ferry-"))
			continue; /* a leftover temporary name */
		char *rc = ph_read(dst, path);
		char *c0 = ph_read(v0, path), *c1 = ph_read(v1, path);
		if (!rc ||
		    ((!c0 || strcmp(rc, c0)) && (!c1 || strcmp(rc, c1)))) {
			ok = 0;
			snprintf(why, whysz, "%s is neither version", path);
		}
		free(rc);
		free(c0);
		free(c1);
	}
	free(l);
	return ok;
}

static int child_push_slow(void)
{
	ferry_session_opts o;
	fx_opts(e.sv, &o);
	ferry_session *s = NULL;
	if (ferry_session_open(&s, &o))
		_exit(2);
	ferry__sftp_opts so;
	memset(&so, 0, sizeof(so));
	fx_sftp_latency(&so, 3);
	ferry__sftp *sf;
	if (ferry__session_sftp_ex(s, &so, &sf))
		_exit(3);
	ferry_sync_report r;
	memset(&r, 0, sizeof(r));
	e.o.log = NULL;
	int rc = ferry_sync(s, &e.o, &r);
	_exit(rc ? 1 : 0);
}

Test(push_safety, sigkill_at_random_moments, .timeout = 240)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, NULL), 0);
	pid_t master = sshd_pid(&sv);
	ph_init_on(&e, "ps-kill", &sv, 0);
	char *v0 = ph_path(e.base, "v0"), *v1 = ph_path(e.base, "v1");
	cr_assert_eq(mkdir(v0, 0755), 0);
	cr_assert_eq(mkdir(v1, 0755), 0);
	version_tree(v0, 0);
	version_tree(v1, 1);
	e.o.delete_extraneous = 1;
	/* How long a whole push takes in a child. */
	fx_sh("cp -a '%s'/. '%s'/", v0, e.src);
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid == 0)
		child_push_slow();
	int st;
	waitpid(pid, &st, 0);
	double full = now_ms() - t0;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "first push failed");
	srand(12345);
	int killed_mid = 0, leftovers_seen = 0;
	for (int it = 0; it < 50; it++) {
		int v = (it + 1) % 2;
		fx_sh("rm -rf '%s' && cp -a '%s' '%s'", e.src, v ? v1 : v0,
		      e.src);
		double at = (double)rand() / RAND_MAX * full * 1.1;
		pid = fork();
		if (pid == 0)
			child_push_slow();
		usleep((useconds_t)(at * 1000));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		if (WIFSIGNALED(st))
			killed_mid++;
		wait_server_idle(master);
		char why[600] = "";
		cr_assert(check_versions(e.dst, v0, v1, why, sizeof(why)),
		          "iteration %d (kill at %.1f ms of %.1f): %s", it, at,
		          full, why);
		leftovers_seen += ph_count_temps(e.dst) > 0;
		/* The next push converges exactly. */
		ph_reconnect(&e);
		ferry_sync_report r;
		ph_push_ok(&e, &r);
		ferry_sync_report_free(&r);
		ferry_session_close(e.s);
		e.s = NULL;
		ph_assert_same(e.src, e.dst);
		cr_assert_eq(ph_count_temps(e.dst), 0,
		             "iteration %d: temporary names left", it);
	}
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

/* The processes whose parent is parent: with kill_them, kill each (and
 * first, its own children: the connection's own sshd, its sftp-server)
 * by pid and count them; else count those not yet reaped (no zombies). */
static int children(pid_t parent, int kill_them)
{
	int n = 0;
	DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		char path[64], buf[512];
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		char *rp = strrchr(buf, ')');
		long ppid = 0;
		char state = 0;
		if (!rp || sscanf(rp + 2, "%c %ld", &state, &ppid) != 2 ||
		    ppid != parent)
			continue;
		if (kill_them) {
			n += children((pid_t)pid, 1);
			kill((pid_t)pid, SIGKILL);
			n++;
		} else {
			n += state != 'Z';
		}
	}
	if (d)
		closedir(d);
	return n;
}

static void *cut_main(void *arg)
{
	cutter *c = arg;
	usleep((useconds_t)c->delay_ms * 1000);
	c->killed = children(c->master, 1);
	return NULL;
}

static pid_t sshd_pid(const fx_sshd *sv)
{
	char *p = ph_path(sv->dir, "sshd.pid");
	char *c = fx_read_file(p, NULL);
	free(p);
	cr_assert(c);
	pid_t pid = (pid_t)strtol(c, NULL, 10);
	free(c);
	return pid;
}

Test(push_safety, connection_cut_mid_push)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, NULL), 0);
	ph_init_on(&e, "ps-cut", &sv, 1);
	ph_skills_tree(e.src, 200, 13);
	e.o.delete_extraneous = 1;
	slow_channel(e.s, 10);
	cutter c = {sshd_pid(&sv), 35, 0};
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
