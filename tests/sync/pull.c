/* pull.c - ferry_pull against the fixture sshd: the remote tree is
 * e.src (served by the sshd, so a remote path is a local path), the local
 * destination e.dst. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pull_helpers.h"

Test(pull, cold_pull_makes_local_equal_remote, PH_ENV)
{
	ph_skills_tree(e.src, 120, 1);
	ferry_sync_report r;
	pl_pull_ok(&e, &r);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	cr_assert_eq(r.files_uploaded, 124, "fetched %llu",
	             (unsigned long long)r.files_uploaded);
	cr_assert_eq(r.symlinks_created, 2);
	cr_assert_gt(r.dirs_created, 10);
	cr_assert_eq(r.error_count, 0);
	cr_assert_gt(r.bytes_sent, 120 * 200);
	/* Owner-only stays owner-only. */
	struct stat st;
	char *p = ph_path(e.dst, "creds/token.json");
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	free(p);
	ferry_sync_report_free(&r);
}

Test(pull, unchanged_tree_in_depth_plus_two_round_trips, PH_ENV)
{
	ph_skills_tree(e.src, 120, 2);
	pl_pull_ok(&e, NULL);
	ferry_sync_report r;
	pl_pull_ok(&e, &r);
	cr_assert_eq(r.files_uploaded + r.files_updated + r.files_deleted +
	                     r.dirs_created + r.symlinks_created,
	             0);
	/* The tree is 4 levels deep (skills/a/b/c): d + 2 = 6; the
	 * directories known locally are listed at once. */
	cr_assert_leq(r.round_trips, 3, "round trips %llu",
	              (unsigned long long)r.round_trips);
	cr_assert_eq(r.bytes_sent, 0);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

/* The files of a directory come as soon as its listing is in, beside the
 * rest of the walk: a cold pull costs the walk's round trips (OPENDIR,
 * then READDIR + CLOSE: 2 per level) when the deepest level holds no
 * file, not the walk and then the fetches (2 more). */
Test(pull, cold_pull_fetches_beside_the_walk, PH_ENV)
{
	char name[64];
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "top-%02d.txt", i);
		ph_write(e.src, name, "at the top\n", i == 3 ? 0600 : 0644,
		         1700000000L + i);
	}
	ph_mkdir(e.src, "a", 0755);
	ph_mkdir(e.src, "a/b", 0700);
	ph_mkdir(e.src, "a/b/c", 0755);
	ph_write(e.src, "a/one.txt", "level one\n", 0644, 1700000100L);
	ph_write(e.src, "a/b/two.txt", "level two\n", 0640, 1700000200L);
	ph_write(e.src, "a/b/c/three.txt", "level three\n", 0644, 1700000300L);
	ph_mkdir(e.src, "a/b/c/d", 0750); /* depth 4, empty */
	/* The SFTP channel open first: the count is the pull's own. */
	char *warm = ph_path(e.base, "warm"), *wdst = ph_path(e.base, "wdst");
	char *warg = NULL;
	cr_assert_eq(mkdir(warm, 0755), 0);
	ph_write(warm, "w", "w\n", 0644, 0);
	cr_assert(asprintf(&warg, "%s/", warm) > 0);
	const char *dest = e.o.dest;
	e.sources[0] = warg;
	e.o.dest = wdst;
	pl_pull_ok(&e, NULL);
	e.sources[0] = e.srcarg;
	e.o.dest = dest;
	ferry_sync_report r;
	pl_pull_ok(&e, &r);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	cr_assert_eq(r.files_uploaded, 43, "%llu",
	             (unsigned long long)r.files_uploaded);
	cr_assert_eq(r.dirs_created, 4, "%llu",
	             (unsigned long long)r.dirs_created);
	/* 5 levels of listing (the top, a, a/b, a/b/c, a/b/c/d): 10. */
	cr_assert_leq(r.round_trips, 10, "round trips %llu",
	              (unsigned long long)r.round_trips);
	struct stat st;
	char *p = ph_path(e.dst, "top-03.txt");
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	free(p);
	ferry_sync_report_free(&r);
	free(warg);
	free(warm);
	free(wdst);
}

/* A walk that fails (a listing above the bound) while files of the
 * directories listed before are coming: the error, no temporary name
 * left, and whatever was written is whole. */
Test(pull, walk_failing_beside_early_fetches_leaves_nothing_torn, PH_ENV)
{
	char name[64], text[64];
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		snprintf(text, sizeof(text), "file %d\n", i);
		ph_write(e.src, name, text, 0644, 1700000000L);
	}
	ph_mkdir(e.src, "big", 0755);
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "big/g%02d", i);
		ph_write(e.src, name, "g\n", 0644, 1700000000L);
	}
	e.o.max_entries = 30;
	ferry_sync_report r;
	int rc = pl_pull(&e, &r);
	cr_assert_eq(rc, FERRY_ELIMIT, "%s", ferry_strerror(rc));
	cr_assert_eq(ph_count_temps(e.dst), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		snprintf(text, sizeof(text), "file %d\n", i);
		char *got =
		        ph_exists(e.dst, name) ? ph_read(e.dst, name) : NULL;
		cr_assert(!got || !strcmp(got, text), "%s torn: %s", name, got);
		free(got);
	}
	ferry_sync_report_free(&r);
	/* Within the bound again: the next pull converges. */
	e.o.max_entries = 0;
	pl_pull_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
}

Test(pull, changed_files_are_fetched_in_few_round_trips, PH_ENV)
{
	ph_skills_tree(e.src, 60, 3);
	pl_pull_ok(&e, NULL);
	ph_write(e.src, "creds/token.json", "{\"token\": \"rotated\"}\n", 0600,
	         1700009999L);
	ph_write(e.src, "creds/README", "moved\n", 0644, 1700000000L);
	ph_write(e.src, "skills/new.md", "a new skill\n", 0644, 1700000000L);
	ferry_sync_report r;
	pl_pull_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 3, "%llu",
	             (unsigned long long)r.files_uploaded);
	/* Listing (2, a third for the symlinks' targets), then OPEN and
	 * READ + CLOSE. */
	cr_assert_leq(r.round_trips, 5, "%llu",
	              (unsigned long long)r.round_trips);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(pull, mode_only_change_is_a_metadata_update, PH_ENV)
{
	ph_write(e.src, "a.sh", "echo a\n", 0644, 1700000000L);
	pl_pull_ok(&e, NULL);
	char *p = ph_path(e.src, "a.sh");
	cr_assert_eq(chmod(p, 0750), 0);
	free(p);
	ferry_sync_report r;
	pl_pull_ok(&e, &r);
	cr_assert_eq(r.files_updated, 1);
	cr_assert_eq(r.files_uploaded, 0);
	cr_assert_eq(r.bytes_sent, 0);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(pull, delete_removes_local_extraneous_entries, PH_ENV)
{
	ph_skills_tree(e.src, 30, 4);
	pl_pull_ok(&e, NULL);
	ph_write(e.dst, "local-only.txt", "mine\n", 0644, 0);
	ph_mkdir(e.dst, "skills/local-dir", 0755);
	ph_write(e.dst, "skills/local-dir/x", "x\n", 0644, 0);
	fx_sh("rm -rf '%s/creds'", e.src);
	/* Without --delete nothing local goes. */
	pl_pull_ok(&e, NULL);
	cr_assert(ph_exists(e.dst, "local-only.txt"));
	cr_assert(ph_exists(e.dst, "creds/token.json"));
	e.o.delete_extraneous = 1;
	ferry_sync_report r;
	pl_pull_ok(&e, &r);
	cr_assert_eq(r.files_deleted, 6, "%llu",
	             (unsigned long long)r.files_deleted);
	cr_assert_eq(r.dirs_deleted, 2);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(pull, delete_refused_when_the_source_is_missing_or_empty, PH_ENV)
{
	ph_write(e.src, "a", "a\n", 0644, 0);
	pl_pull_ok(&e, NULL);
	e.o.delete_extraneous = 1;
	char *empty = ph_path(e.base, "empty");
	char *arg = NULL;
	cr_assert_eq(mkdir(empty, 0755), 0);
	cr_assert(asprintf(&arg, "%s/", empty) > 0);
	e.sources[0] = arg;
	ferry_sync_report r;
	int rc = pl_pull(&e, &r);
	cr_assert_eq(rc, FERRY_ENOTFOUND);
	cr_assert(strstr(ferry_session_errmsg(e.s), "empty"), "%s",
	          ferry_session_errmsg(e.s));
	ferry_sync_report_free(&r);
	free(arg);
	cr_assert(asprintf(&arg, "%s/nothing-here/", e.base) > 0);
	e.sources[0] = arg;
	rc = pl_pull(&e, &r);
	cr_assert_eq(rc, FERRY_ENOTFOUND);
	cr_assert(strstr(ferry_session_errmsg(e.s), "missing"), "%s",
	          ferry_session_errmsg(e.s));
	ferry_sync_report_free(&r);
	cr_assert(ph_exists(e.dst, "a"), "nothing was deleted");
	free(arg);
	free(empty);
}

Test(pull, max_delete_refuses_the_whole_pull, PH_ENV)
{
	for (int i = 0; i < 5; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%d", i);
		ph_write(e.src, n, "x\n", 0644, 1700000000L);
	}
	pl_pull_ok(&e, NULL);
	fx_sh("rm -f '%s'/f1 '%s'/f2 '%s'/f3", e.src, e.src, e.src);
	ph_write(e.src, "new", "n\n", 0644, 0);
	e.o.delete_extraneous = 1;
	e.o.max_delete = 2;
	ferry_sync_report r;
	cr_assert_eq(pl_pull(&e, &r), FERRY_EPARTIAL);
	ferry_sync_report_free(&r);
	cr_assert(ph_exists(e.dst, "f1") && !ph_exists(e.dst, "new"),
	          "nothing changed");
	e.o.max_delete = 3;
	pl_pull_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
}

Test(pull, excludes_on_both_sides, PH_ENV)
{
	ph_skills_tree(e.src, 30, 5);
	ph_write(e.src, "cache.tmp", "junk\n", 0644, 0);
	ph_mkdir(e.src, "build", 0755);
	ph_write(e.src, "build/out.o", "obj\n", 0644, 0);
	e.excludes[0] = "*.tmp";
	e.excludes[1] = "build/";
	e.o.excludes = e.excludes;
	e.o.exclude_count = 2;
	e.o.delete_extraneous = 1;
	cr_assert_eq(mkdir(e.dst, 0755), 0);
	ph_write(e.dst, "keep.tmp", "local, excluded: kept\n", 0644, 0);
	pl_pull_ok(&e, NULL);
	cr_assert(!ph_exists(e.dst, "cache.tmp"));
	cr_assert(!ph_exists(e.dst, "build"));
	cr_assert(ph_exists(e.dst, "keep.tmp"));
	cr_assert(ph_exists(e.dst, "creds/token.json"));
}

Test(pull, modes_and_mtimes_of_files_and_directories, PH_ENV)
{
	ph_mkdir(e.src, "ro", 0755);
	ph_write(e.src, "ro/f", "read only\n", 0444, 1600000000L);
	ph_mkdir(e.src, "private", 0700);
	ph_write(e.src, "private/x", "x\n", 0640, 1600000001L);
	ph_write(e.src, "suid", "#!/bin/sh\n", 04755, 1600000002L);
	fx_sh("chmod 0555 '%s/ro' && touch -d @1500000000 '%s/ro' "
	      "'%s/private'",
	      e.src, e.src, e.src);
	pl_pull_ok(&e, NULL);
	/* The set-user-ID bit from the server is dropped. */
	char *p = ph_path(e.src, "suid");
	cr_assert_eq(chmod(p, 0755), 0);
	free(p);
	ph_assert_same(e.src, e.dst);
	struct stat st;
	p = ph_path(e.dst, "ro");
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0555);
	cr_assert_eq(st.st_mtim.tv_sec, 1500000000);
	free(p);
	/* A second pull into a directory that is not writable. */
	ph_write(e.src, "ro/g", "new\n", 0644, 1600000003L);
	fx_sh("chmod 0555 '%s/ro' && touch -d @1500000000 '%s/ro'", e.src,
	      e.src);
	pl_pull_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
	fx_sh("chmod -R u+w '%s' '%s'", e.src, e.dst);
}

Test(pull, symlinks_inside_kept_escaping_skipped, PH_ENV)
{
	ph_mkdir(e.src, "d", 0755);
	ph_write(e.src, "d/t", "target\n", 0644, 0);
	ph_symlink(e.src, "in", "d/t");
	ph_symlink(e.src, "d/up", "../d/t");
	ph_symlink(e.src, "out", "../../etc/passwd");
	ph_symlink(e.src, "abs", "/etc/passwd");
	ph_symlink(e.src, "d/self", ".");
	ph_symlink(e.src, "via", "d/self/../../x");
	ferry_sync_report r;
	pl_pull_ok(&e, &r);
	cr_assert(ph_exists(e.dst, "in") && ph_exists(e.dst, "d/up"));
	cr_assert(ph_exists(e.dst, "d/self"));
	cr_assert(!ph_exists(e.dst, "out") && !ph_exists(e.dst, "abs"));
	cr_assert(!ph_exists(e.dst, "via"), "a target through a symlink");
	cr_assert(strstr(e.log, "out: skipping symlink"), "%s", e.log);
	cr_assert_eq(r.symlinks_created, 3);
	ferry_sync_report_free(&r);
}

Test(pull, type_changes_both_ways, PH_ENV)
{
	ph_write(e.src, "was-file", "f\n", 0644, 0);
	ph_mkdir(e.src, "was-dir", 0755);
	ph_write(e.src, "was-dir/in", "i\n", 0644, 0);
	pl_pull_ok(&e, NULL);
	fx_sh("cd '%s' && rm -rf was-file was-dir && mkdir was-file && echo "
	      "n > was-file/n && echo d > was-dir",
	      e.src);
	ferry_sync_report r;
	/* A local directory in the way of a file: only with --delete. */
	cr_assert_eq(pl_pull(&e, &r), FERRY_EPARTIAL);
	cr_assert(ph_exists(e.dst, "was-dir/in"));
	cr_assert(ph_exists(e.dst, "was-file/n"));
	ferry_sync_report_free(&r);
	e.o.delete_extraneous = 1;
	pl_pull_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
}

Test(pull, leftover_temporary_names_are_removed, PH_ENV)
{
	ph_mkdir(e.src, "d", 0755);
	ph_write(e.src, "d/f", "f\n", 0644, 0);
	pl_pull_ok(&e, NULL);
	ph_write(e.dst, "d/.f.ferry-AbC123", "half", 0600, 0);
	ph_write(e.dst, ".top.ferry-Zz9Zz9", "half", 0600, 0);
	cr_assert_eq(ph_count_temps(e.dst), 2);
	pl_pull_ok(&e, NULL);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	/* And ferry's own names on the remote never come home. */
	ph_write(e.src, ".ferry-id", "0123456789abcdef0123456789abcdef\n", 0644,
	         0);
	ph_write(e.src, "d/.g.ferry-XyZ789", "tmp", 0644, 0);
	pl_pull_ok(&e, NULL);
	cr_assert(!ph_exists(e.dst, ".ferry-id"));
	cr_assert(!ph_exists(e.dst, "d/.g.ferry-XyZ789"));
}

Test(pull, dry_run_changes_nothing, PH_ENV)
{
	ph_skills_tree(e.src, 20, 6);
	e.o.dry_run = 1;
	ferry_sync_report r;
	pl_pull_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 24);
	cr_assert(!ph_exists(e.base, "remote/dst"), "dest was made");
	ferry_sync_report_free(&r);
	e.o.dry_run = 0;
	pl_pull_ok(&e, NULL);
	ph_write(e.src, "creds/README", "changed\n", 0644, 0);
	e.o.dry_run = 1;
	pl_pull_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1);
	ferry_sync_report_free(&r);
	char *c = ph_read(e.dst, "creds/README");
	cr_assert_str_eq(c, "credentials live here\n");
	free(c);
}

Test(pull, checksum_compares_same_size_and_mtime, PH_ENV)
{
	ph_write(e.src, "a", "aaaa\n", 0644, 1700000000L);
	ph_write(e.src, "b", "bbbb\n", 0644, 1700000000L);
	pl_pull_ok(&e, NULL);
	/* Same size and mtime, other content. */
	ph_write(e.src, "a", "AAAA\n", 0644, 1700000000L);
	ferry_sync_report r;
	pl_pull_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 0, "the quick check trusts them");
	ferry_sync_report_free(&r);
	e.o.checksum = 1;
	e.o.dry_run = 1;
	pl_pull_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1, "dry run: %llu",
	             (unsigned long long)r.files_uploaded);
	ferry_sync_report_free(&r);
	e.o.dry_run = 0;
	pl_pull_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1);
	ferry_sync_report_free(&r);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
}

Test(pull, named_sources_and_a_file, PH_ENV)
{
	ph_skills_tree(e.src, 12, 7);
	char *a = NULL, *b = NULL;
	cr_assert(asprintf(&a, "%s/skills", e.src) > 0);
	cr_assert(asprintf(&b, "%s/creds/token.json", e.src) > 0);
	e.sources[0] = a;
	e.sources[1] = b;
	e.o.source_count = 2;
	pl_pull_ok(&e, NULL);
	char *s1 = ph_path(e.src, "skills"), *d1 = ph_path(e.dst, "skills");
	ph_assert_same(s1, d1);
	char *c = ph_read(e.dst, "token.json");
	cr_assert_str_eq(c, "{\"token\": \"s3cr3t\"}\n");
	cr_assert(!ph_exists(e.dst, "creds"));
	free(c);
	free(s1);
	free(d1);
	free(a);
	free(b);
}
