/* push_more.c - sources of every kind, relative destinations, symlink and
 * directory mode changes, progress, interruption. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "push_env.h"
#include "session.h"
#include "sftp.h"
#include "sftp_test.h"

Test(push_more, file_and_dir_sources_stay_in_scope, PH_ENV)
{
	ph_skills_tree(e.src, 20, 21);
	/* It leaves skills/ (the source root here): skipped by the scan. */
	char *rl = ph_path(e.src, "skills/readme-link.md");
	unlink(rl);
	free(rl);
	/* Remote: an unrelated tree next to what is synced. */
	fx_sh("mkdir -p '%s/other/deep/er' && for i in $(seq 50); do echo $i > "
	      "'%s/other/deep/er/f'$i; done && echo keep > '%s/loose'",
	      e.dst, e.dst, e.dst);
	char *skills = ph_path(e.src, "skills"); /* no slash: DEST/skills */
	char *token = ph_path(e.src, "creds/token.json");
	e.sources[0] = skills;
	e.sources[1] = token;
	e.o.source_count = 2;
	e.o.delete_extraneous = 1;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert(r.verified);
	/* Only the root and skills/ were listed: far fewer requests than
	 * walking other/ would take. */
	cr_assert(ph_exists(e.dst, "other/deep/er/f50") &&
	          ph_exists(e.dst, "loose"));
	cr_assert(ph_exists(e.dst, "token.json"));
	char *a = ph_tree_listing(skills), *b = NULL;
	char *ds = ph_path(e.dst, "skills");
	b = ph_tree_listing(ds);
	cr_assert_str_eq(a, b);
	free(a);
	free(b);
	char *t = ph_read(e.dst, "token.json");
	cr_assert_str_eq(t, "{\"token\": \"s3cr3t\"}\n");
	free(t);
	ferry_sync_report_free(&r);
	/* A removal inside skills/ is pruned; nothing outside it is. */
	fx_sh("rm -rf '%s/skill-01'", skills);
	e.o.verify = 1;
	ph_push_ok(&e, &r);
	cr_assert_gt(r.files_deleted + r.dirs_deleted, 0);
	cr_assert(!ph_exists(ds, "skill-01"));
	cr_assert(ph_exists(e.dst, "other/deep/er/f50") &&
	          ph_exists(e.dst, "loose"));
	ferry_sync_report_free(&r);
	free(ds);
	free(skills);
	free(token);
}

Test(push_more, relative_and_home_destinations, PH_ENV)
{
	ph_write(e.src, "a", "aaa\n", 0644, 1700000000L);
	struct passwd *pw = getpwuid(getuid());
	cr_assert(pw && pw->pw_dir);
	char rel[128];
	snprintf(rel, sizeof(rel), ".cache/ferry-test-%d/x", (int)getpid());
	char tilde[160];
	snprintf(tilde, sizeof(tilde), "~/%s", rel);
	e.o.dest = tilde;
	ph_push_ok(&e, NULL);
	char *home_dst = ph_path(pw->pw_dir, rel);
	ph_assert_same(e.src, home_dst);
	/* The same target spelled relatively: the manifest is the same. */
	e.o.dest = rel;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.requests, 0, "~/x and x are one target");
	ferry_sync_report_free(&r);
	fx_sh("rm -rf '%s/.cache/ferry-test-%d'", pw->pw_dir, (int)getpid());
	free(home_dst);
}

Test(push_more, symlink_target_and_directory_modes, PH_ENV)
{
	ph_write(e.src, "t1", "one\n", 0644, 1700000000L);
	ph_write(e.src, "t2", "two\n", 0644, 1700000000L);
	ph_symlink(e.src, "cur", "t1");
	ph_mkdir(e.src, "ro", 0555);
	ph_mkdir(e.src, "priv", 0700);
	ph_write(e.src, "priv/k", "k\n", 0600, 1700000000L);
	/* A read-only directory with a file in it. */
	char *p = ph_path(e.src, "ro");
	chmod(p, 0755);
	ph_write(e.src, "ro/f", "f\n", 0644, 1700000000L);
	chmod(p, 0555);
	ph_push_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
	/* Retarget the symlink, open the directory up. */
	char *l = ph_path(e.src, "cur");
	unlink(l);
	cr_assert_eq(symlink("t2", l), 0);
	chmod(p, 0750);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.symlinks_created, 1);
	cr_assert_eq(r.files_updated, 1, "the directory's mode");
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
	free(l);
	free(p);
}

typedef struct prog {
	uint64_t calls, files_done, files_total, bytes_done, bytes_total;
	int ordered;
} prog;

static prog progress_seen;

static void on_progress(void *ctx, const ferry_progress *p)
{
	prog *g = &progress_seen;
	(void)ctx;
	if (p->files_done < g->files_done || p->bytes_done < g->bytes_done)
		g->ordered = 0;
	g->calls++;
	g->files_done = p->files_done;
	g->files_total = p->files_total;
	g->bytes_done = p->bytes_done;
	g->bytes_total = p->bytes_total;
}

typedef struct changes {
	int n, errors;
} changes;
static changes seen_changes;
static void on_change(void *ctx, const ferry_change *c)
{
	(void)ctx;
	seen_changes.n++;
	seen_changes.errors += c->error != 0;
}

Test(push_more, progress_and_changes, PH_ENV)
{
	ph_skills_tree(e.src, 30, 22);
	e.o.on_progress = on_progress;
	e.o.on_change = on_change;
	e.o.log = NULL;
	prog *g = &progress_seen;
	memset(g, 0, sizeof(*g));
	g->ordered = 1;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	uint64_t visible =
	        r.files_uploaded + r.dirs_created + r.symlinks_created;
	cr_assert_eq(g->files_done, visible);
	cr_assert_eq(g->files_total, visible);
	cr_assert_eq(g->bytes_done, r.bytes_sent);
	cr_assert_eq(g->bytes_total, r.bytes_sent);
	cr_assert(g->ordered);
	cr_assert_eq((uint64_t)seen_changes.n, visible);
	cr_assert_eq(seen_changes.errors, 0);
	ferry_sync_report_free(&r);
}

Test(push_more, interrupt_stops_and_next_push_converges, PH_ENV)
{
	ph_skills_tree(e.src, 200, 23);
	ferry__sftp_opts so;
	memset(&so, 0, sizeof(so));
	fx_sftp_latency(&so, 10);
	ferry__sftp *sf;
	cr_assert_eq(ferry__session_sftp_ex(e.s, &so, &sf), 0);
	fx_interrupter th;
	fx_interrupt_after(&th, e.s, 30);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	fx_interrupt_join(&th);
	cr_assert_eq(rc, FERRY_EINTR, "%s: %s", ferry_strerror(rc),
	             ferry_session_errmsg(e.s));
	ferry_sync_report_free(&r);
	/* Its temporaries are gone already: the connection still works. */
	cr_assert_eq(ph_count_temps(e.dst), 0, "temporaries left");
	/* The same session goes on, and converges. */
	ph_push_ok(&e, &r);
	cr_assert(r.verified);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	ferry_sync_report_free(&r);
}

Test(push_more, big_file_and_big_directories, PH_ENV)
{
	/* 20 MiB: more than the window; written as it opens. */
	char *p = ph_path(e.src, "big.bin");
	cr_assert_eq(fx_sh("head -c 20971520 /dev/urandom > '%s'", p), 0);
	free(p);
	/* A directory of 700 files (OpenSSH answers READDIR with 100). */
	ph_mkdir(e.src, "many", 0755);
	for (int i = 0; i < 700; i++) {
		char rel[64], c[32];
		snprintf(rel, sizeof(rel), "many/f%04d", i);
		snprintf(c, sizeof(c), "%d\n", i);
		ph_write(e.src, rel, c, 0644, 1700000000L);
	}
	e.o.delete_extraneous = 1;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 701);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
	/* 500 extraneous remote files in the big directory; a verify lists
	 * it whole and removes them. */
	cr_assert_eq(fx_sh("cd '%s/many' && for i in $(seq 500); do echo x > "
	                   "extra$i; done",
	                   e.dst),
	             0);
	e.o.verify = 1;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_deleted, 500);
	cr_assert_eq(r.files_uploaded, 0);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(push_more, allocation_failures_anywhere, PH_ENV, .timeout = 300)
{
	ph_write(e.src, "a", "aaa\n", 0644, 1700000000L);
	ph_write(e.src, "cred", "secret\n", 0600, 1700000000L);
	ph_mkdir(e.src, "d", 0755);
	ph_write(e.src, "d/b", "bbb\n", 0644, 1700000000L);
	ph_symlink(e.src, "d/l", "b");
	fx_sh("mkdir -p '%s' && echo x > '%s/extra'", e.dst, e.dst);
	e.o.delete_extraneous = 1;
	/* The SFTP channel first, so that each push starts alike. */
	ferry__sftp *sf;
	cr_assert_eq(ferry__session_sftp(e.s, &sf), 0);
	unsigned long a0 = ferry__alloc_count();
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	ferry_sync_report_free(&r);
	unsigned long total = ferry__alloc_count() - a0;
	cr_assert_gt(total, 20);
	int failed = 0;
	for (unsigned long i = 1; i <= total + 5; i++) {
		fx_sh("rm -rf '%s' '%s' && mkdir -p '%s' && echo x > "
		      "'%s/extra'",
		      e.dst, e.state, e.dst, e.dst);
		ferry__alloc_fail_at(i);
		int rc = ph_push(&e, &r);
		ferry__alloc_fail_at(0);
		ferry_sync_report_free(&r);
		failed += rc != 0;
		/* Whatever happened, the next push converges. */
		rc = ph_push(&e, &r);
		ferry_sync_report_free(&r);
		cr_assert_eq(rc, 0, "after failing allocation %lu: %s", i,
		             ferry_session_errmsg(e.s));
		ph_assert_same(e.src, e.dst);
		cr_assert_eq(ph_count_temps(e.dst), 0, "allocation %lu", i);
	}
	cr_assert_gt(failed, (int)(total / 4), "only %d of %lu failed", failed,
	             total);
}

Test(push_more, server_without_extensions, PH_ENV)
{
	ph_skills_tree(e.src, 20, 24);
	ferry__sftp_opts so;
	memset(&so, 0, sizeof(so));
	so.ignore_ext = FERRY__EXT_POSIX_RENAME | FERRY__EXT_FSYNC |
	                FERRY__EXT_LSETSTAT | FERRY__EXT_STATVFS;
	ferry__sftp *sf;
	cr_assert_eq(ferry__session_sftp_ex(e.s, &so, &sf), 0);
	ph_push_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
	/* Replacing files, a symlink and metadata without posix-rename and
	 * lsetstat. */
	ph_write(e.src, "creds/token.json", "{\"token\": \"v2\"}\n", 0600, 0);
	ph_write(e.src, "creds/README", "credentials live here\n", 0640,
	         1700001111L);
	char *l = ph_path(e.src, "skills/latest");
	unlink(l);
	cr_assert_eq(symlink("elsewhere", l), 0);
	free(l);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1);
	cr_assert_eq(r.files_updated, 1);
	cr_assert_eq(r.symlinks_created, 1);
	cr_assert(strstr(e.log, "posix-rename"), "no warning: %s", e.log);
	cr_assert(strstr(e.log, "fsync"), "no warning: %s", e.log);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	ferry_sync_report_free(&r);
}

Test(push_more, bad_arguments, PH_ENV)
{
	ferry_sync_report r;
	cr_assert_eq(ferry_sync(NULL, &e.o, &r), FERRY_EINVALID);
	cr_assert_eq(ferry_sync(e.s, NULL, &r), FERRY_EINVALID);
	ferry_sync_opts o = e.o;
	o.version = 99;
	cr_assert_eq(ferry_sync(e.s, &o, &r), FERRY_EINVALID);
	cr_assert(strstr(ferry_session_errmsg(e.s), "version"));
	o = e.o;
	o.source_count = 0;
	cr_assert_eq(ferry_sync(e.s, &o, &r), FERRY_EINVALID);
	o = e.o;
	o.dest = NULL;
	cr_assert_eq(ferry_sync(e.s, &o, &r), FERRY_EINVALID);
	const char *empty[1] = {""};
	o = e.o;
	o.sources = empty;
	cr_assert_eq(ferry_sync(e.s, &o, &r), FERRY_EINVALID);
	const char *ex[1] = {""};
	o = e.o;
	o.excludes = ex;
	o.exclude_count = 1;
	cr_assert_eq(ferry_sync(e.s, &o, &r), FERRY_EINVALID);
	cr_assert(strstr(ferry_session_errmsg(e.s), "exclude"));
	/* No report at all is fine. */
	ph_write(e.src, "a", "a\n", 0644, 0);
	cr_assert_eq(ferry_sync(e.s, &e.o, NULL), 0);
}

static long mtime_of(const char *dir, const char *rel)
{
	char *p = ph_path(dir, rel);
	struct stat st;
	cr_assert_eq(lstat(p, &st), 0, "%s", p);
	free(p);
	return (long)st.st_mtime;
}

static void set_mtime(const char *dir, const char *rel, long t)
{
	cr_assert_eq(fx_sh("touch -h -d @%ld '%s/%s'", t, dir, rel), 0);
}

/* rsync -a: every remote directory's mtime is the source's, set after its
 * entries are written, with no round trip of its own when files change
 * and none at all on a no-op; what the manifest vouches for is checked. */
Test(push_more, directory_times_follow_the_source, PH_ENV)
{
	ph_mkdir(e.src, "a", 0755);
	ph_mkdir(e.src, "a/b", 0750);
	ph_mkdir(e.src, "ro", 0755);
	ph_write(e.src, "a/b/f", "f\n", 0644, 1700000000L);
	ph_write(e.src, "a/g", "g\n", 0644, 1700000000L);
	ph_write(e.src, "ro/h", "h\n", 0644, 1700000000L);
	cr_assert_eq(fx_sh("chmod 0555 '%s/ro'", e.src), 0);
	set_mtime(e.src, "a/b", 1600000000L);
	set_mtime(e.src, "a", 1600000100L);
	set_mtime(e.src, "ro", 1600000200L);
	set_mtime(e.src, ".", 1600000300L);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	ferry_sync_report_free(&r);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(mtime_of(e.dst, "."), 1600000300L, "the destination");

	/* A changed file: its directory's time is put back, in the push's
	 * three round trips; a no-op sends nothing. */
	ph_write(e.src, "a/b/f", "f, longer\n", 0644, 1700000000L);
	set_mtime(e.src, "a/b", 1600000000L); /* as it was */
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1);
	cr_assert_eq(r.files_updated, 0, "a moved directory time is no update");
	cr_assert_leq(r.round_trips, 3);
	ferry_sync_report_free(&r);
	ph_assert_same(e.src, e.dst);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.requests, 0);
	ferry_sync_report_free(&r);

	/* A directory touched locally, nothing else. */
	set_mtime(e.src, "a", 1650000000L);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.requests, 1, "one SETSTAT");
	ferry_sync_report_free(&r);
	ph_assert_same(e.src, e.dst);

	/* Changed on the remote behind ferry's back: --verify repairs. */
	set_mtime(e.dst, "a/b", 1234567890L);
	e.o.verify = 1;
	ph_push_ok(&e, &r);
	ferry_sync_report_free(&r);
	e.o.verify = 0;
	ph_assert_same(e.src, e.dst);

	/* A manifest from before directory times: the next push sets them
	 * once, without listing. */
	set_mtime(e.dst, "a", 1234567890L);
	set_mtime(e.dst, "ro", 1234567890L);
	ferry__sync_paths sp;
	cr_assert_eq(ferry__sync_paths_new(&sp, NULL, "127.0.0.1", e.sv->port,
	                                   e.dst, e.state),
	             0);
	ferry__manifest *m = ph_load_manifest(&e);
	for (size_t i = 0; i < m->n; i++)
		m->e[i].flags &= (uint8_t)~FERRY__ME_TIMES;
	char err[600];
	cr_assert_eq(ferry__manifest_save(m, sp.manifest, err, sizeof(err)), 0,
	             "%s", err);
	ferry__manifest_free(m);
	ferry__sync_paths_free(&sp);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_updated, 0);
	cr_assert_eq(r.verified, 0);
	ferry_sync_report_free(&r);
	ph_assert_same(e.src, e.dst);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.requests, 0, "set once");
	ferry_sync_report_free(&r);
}

#ifdef __GLIBC__
#include <malloc.h>

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static long rss_kb(void)
{
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

/* A held session keeps no state per file between pushes (issue 19): the
 * memory in use grows by less than 256 bytes per file of a cold push, does
 * not grow across no-op pushes, and the heap's free pages go back to the
 * system at the end of each push (RSS falls back below the push's peak). */
Test(push_more, held_session_memory_is_bounded, PH_ENV)
{
	enum { N = 3000, NOOPS = 1000 };
	ph_write(e.src, "one", "1\n", 0644, 1700000000);
	ph_push_ok(&e, NULL); /* the SFTP client and its buffers exist */
	size_t m0 = heap_in_use();
	long rss0 = rss_kb();
	char *big = ph_path(e.base, "bigsrc");
	cr_assert_eq(mkdir(big, 0755), 0);
	ph_skills_tree(big, N, 77);
	snprintf(e.srcarg, sizeof(e.srcarg), "%s/", big);
	char *dst2 = ph_path(e.base, "remote/dst2");
	e.o.dest = dst2;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	size_t m1 = heap_in_use();
	long rss1 = rss_kb();
	cr_log_info("in use %zu -> %zu bytes (%zd per file); RSS %ld -> %ld "
	            "kB",
	            m0, m1, ((ssize_t)m1 - (ssize_t)m0) / N, rss0, rss1);
	cr_assert_lt((ssize_t)m1 - (ssize_t)m0, (ssize_t)256 * N,
	             "held memory grew %zd bytes for %d files",
	             (ssize_t)m1 - (ssize_t)m0, N);
	/* A sanitizer's allocator keeps freed memory (its quarantine): RSS
	 * says nothing of ours there. */
	const char *san = getenv("FERRY_TEST_SAN");
	if (!san || !*san)
		cr_assert_lt(rss1 - rss0, 256L * N / 1024 + 2048,
		             "RSS %ld -> %ld kB", rss0, rss1);
	for (int i = 0; i < NOOPS; i++) {
		ph_push_ok(&e, &r);
		cr_assert_eq(r.files_uploaded + r.files_updated +
		                     r.files_deleted,
		             0);
	}
	size_t m2 = heap_in_use();
	cr_log_info("after %d no-op pushes: %zu bytes in use", NOOPS, m2);
	cr_assert_lt((ssize_t)m2 - (ssize_t)m1, 64 * 1024,
	             "%d no-op pushes grew the heap by %zd bytes", NOOPS,
	             (ssize_t)m2 - (ssize_t)m1);
	free(dst2);
	free(big);
}
#endif
