/* push_delete.c - deletion, remote identity and verification: --delete,
 * extraneous remote entries, --max-delete, a wiped or rebuilt remote,
 * out-of-band edits repaired by --verify, type changes, dry runs. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "push_env.h"

/* The fixture of most tests here: PH_ENV with a small tree in e.src. */
static void small_setup(void)
{
	ph_setup();
	ph_write(e.src, "a", "aaa\n", 0644, 1700000000L);
	ph_write(e.src, "b", "bbb\n", 0644, 1700000000L);
	ph_mkdir(e.src, "sub", 0755);
	ph_write(e.src, "sub/c", "ccc\n", 0644, 1700000000L);
	ph_mkdir(e.src, "sub/deep", 0755);
	ph_write(e.src, "sub/deep/d", "ddd\n", 0600, 1700000000L);
}
#define SMALL .init = small_setup, .fini = ph_teardown

Test(push_delete, local_delete_pruned_only_with_delete, SMALL)
{
	ph_push_ok(&e, NULL);
	char *p = ph_path(e.src, "b");
	unlink(p);
	free(p);
	fx_sh("rm -rf '%s/sub/deep'", e.src);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_deleted, 0);
	cr_assert(ph_exists(e.dst, "b") && ph_exists(e.dst, "sub/deep/d"));
	ferry_sync_report_free(&r);
	e.o.delete_extraneous = 1;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_deleted, 2, "%llu",
	             (unsigned long long)r.files_deleted);
	cr_assert_eq(r.dirs_deleted, 1);
	cr_assert_eq(r.verified, 0, "deletions from the manifest");
	/* sub/ and sub/deep/ are checked to be directories (1), then the
	 * removals (1). */
	cr_assert_leq(r.round_trips, 2);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(push_delete, extraneous_remote_removed_on_first_push, SMALL)
{
	fx_sh("mkdir -p '%s/old/x/y' '%s/sub' && echo 1 > '%s/old/x/y/z' && "
	      "echo 2 > '%s/stale' && echo 3 > '%s/sub/stale2'",
	      e.dst, e.dst, e.dst, e.dst, e.dst);
	/* Without --delete they stay. */
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert(ph_exists(e.dst, "stale") && ph_exists(e.dst, "old/x/y/z"));
	ferry_sync_report_free(&r);
	/* A first push with --delete (a new state directory). */
	free(e.state);
	e.state = ph_path(e.base, "state2");
	e.o.state_dir = e.state;
	e.o.delete_extraneous = 1;
	ph_push_ok(&e, &r);
	cr_assert(r.verified);
	cr_assert_eq(r.files_deleted, 3);
	cr_assert_eq(r.dirs_deleted, 3);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(push_delete, verify_removes_extraneous_and_repairs_edits, SMALL)
{
	e.o.delete_extraneous = 1;
	ph_push_ok(&e, NULL);
	/* Out of band: an edit keeping size and mtime, a chmod, a removal,
	 * an extra file. */
	fx_sh("cd '%s' && printf 'XXX\\n' > a && touch -d @1700000000 a && "
	      "chmod 0600 b && rm sub/c && echo extra > sub/extra",
	      e.dst);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 0, "the manifest vouches");
	ferry_sync_report_free(&r);
	e.o.verify = 1;
	ph_push_ok(&e, &r);
	cr_assert(r.verified);
	cr_assert_eq(r.files_uploaded, 1, "sub/c restored: %llu",
	             (unsigned long long)r.files_uploaded);
	cr_assert_eq(r.files_updated, 1, "b's mode");
	cr_assert_eq(r.files_deleted, 1);
	/* Same size and mtime: the listing cannot see the edit of a. */
	char *a = ph_read(e.dst, "a");
	cr_assert_str_eq(a, "XXX\n");
	free(a);
	ferry_sync_report_free(&r);
	/* A real edit (new mtime) is repaired. */
	fx_sh("cd '%s' && printf 'YYYY\\n' > a", e.dst);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1);
	a = ph_read(e.dst, "a");
	cr_assert_str_eq(a, "aaa\n");
	free(a);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

/* rsync -a --delete from an empty directory empties the destination;
 * ferry takes that for a mistake (an unmounted disk, a wrong path) and
 * refuses the push, as it refuses one above --max-delete. */
Test(push_delete, empty_source_refuses_and_changes_nothing, SMALL)
{
	e.o.delete_extraneous = 1;
	ph_push_ok(&e, NULL);
	char *before = ph_tree_listing(e.dst);
	cr_assert_eq(fx_sh("cd '%s' && rm -rf ./* ./.[!.]*", e.src), 0);
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	cr_assert_eq(rc, FERRY_ERROR);
	cr_assert(strstr(ferry_session_errmsg(e.s), "is empty"), "%s",
	          ferry_session_errmsg(e.s));
	cr_assert_eq(r.files_deleted, 0);
	cr_assert_eq(r.requests, 0);
	char *after = ph_tree_listing(e.dst);
	cr_assert_str_eq(before, after, "the remote changed");
	ferry_sync_report_free(&r);
	free(before);
	free(after);
}

Test(push_delete, max_delete_refuses_and_changes_nothing, SMALL)
{
	ph_write(e.src, "e", "eee\n", 0644, 1700000000L);
	e.o.delete_extraneous = 1;
	ph_push_ok(&e, NULL);
	char *before = ph_tree_listing(e.dst);
	fx_sh("cd '%s' && rm a b e", e.src);
	ph_write(e.src, "sub/c", "changed\n", 0644, 0);
	e.o.max_delete = 2;
	ferry_sync_report r;
	int rc = ph_push(&e, &r);
	cr_assert_eq(rc, FERRY_ERROR);
	cr_assert(strstr(ferry_session_errmsg(e.s), "max-delete"), "%s",
	          ferry_session_errmsg(e.s));
	cr_assert_eq(r.files_deleted + r.files_uploaded, 0);
	cr_assert_eq(r.requests, 0);
	char *after = ph_tree_listing(e.dst);
	cr_assert_str_eq(before, after, "the remote changed");
	ferry_sync_report_free(&r);
	/* Within the limit it goes through. */
	e.o.max_delete = 3;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_deleted, 3);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
	free(before);
	free(after);
}

Test(push_delete, wiped_remote_is_restored_by_next_session, PH_ENV)
{
	ph_skills_tree(e.src, 40, 5);
	/* Directory times in the past: the remote's remade directories
	 * would be "now" unless the push sets their times. */
	fx_sh("find '%s' -type d -exec touch -h -d @1700000000 {} +", e.src);
	ph_push_ok(&e, NULL);
	fx_sh("rm -rf '%s'", e.dst);
	ph_reconnect(&e);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert(r.verified, "a missing marker makes the push verify");
	cr_assert_eq(r.files_uploaded, 44);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(push_delete, rebuilt_remote_with_other_marker_is_verified, SMALL)
{
	ph_push_ok(&e, NULL);
	/* Another marker (the machine was rebuilt and synced by someone
	 * else), and a file changed. */
	fx_sh("cd '%s' && echo 0123456789abcdef0123456789abcdef > .ferry-id "
	      "&& echo zz > sub/c",
	      e.dst);
	ph_reconnect(&e);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert(r.verified);
	cr_assert_eq(r.files_uploaded, 1);
	ph_assert_same(e.src, e.dst);
	char *m = ph_read(e.dst, ".ferry-id");
	cr_assert_str_eq(m, "0123456789abcdef0123456789abcdef\n",
	                 "the remote's marker is kept");
	free(m);
	ferry_sync_report_free(&r);
	/* Its id is adopted: the next session trusts the manifest. */
	ph_reconnect(&e);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.verified, 0);
	ferry_sync_report_free(&r);
}

Test(push_delete, leftover_temps_removed_by_verify, SMALL)
{
	/* sub's mtime is in the past, so removing the temp in it changes it
	 * for certain; the temp is planted with that mtime kept, as when
	 * both fall in one second. */
	fx_sh("touch -d @1000000000 '%s/sub'", e.src);
	ph_push_ok(&e, NULL);
	ph_write(e.dst, ".a.ferry-Ab3dE9", "x\n", 0644, 0);
	ph_write(e.dst, "sub/.c.ferry-zzzzzz", "y\n", 0644, 0);
	fx_sh("touch -d @1000000000 '%s/sub'", e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 2);
	e.o.verify = 1;
	ph_push_ok(&e, NULL);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	ph_assert_same(e.src, e.dst);
}

Test(push_delete, excluded_remote_entries_are_protected, SMALL)
{
	fx_sh("mkdir -p '%s/cache/x' && echo keep > '%s/cache/x/k' && mkdir "
	      "-p '%s/gone/cache' && echo keep > '%s/gone/cache/k2' && echo "
	      "del > '%s/gone/del'",
	      e.dst, e.dst, e.dst, e.dst, e.dst);
	e.excludes[0] = "cache/";
	e.o.excludes = e.excludes;
	e.o.exclude_count = 1;
	e.o.delete_extraneous = 1;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert(ph_exists(e.dst, "cache/x/k"));
	cr_assert(ph_exists(e.dst, "gone/cache/k2"), "its directory stays too");
	cr_assert(!ph_exists(e.dst, "gone/del"));
	ferry_sync_report_free(&r);
}

Test(push_delete, type_changes_both_ways, SMALL)
{
	ph_symlink(e.src, "l", "a");
	ph_push_ok(&e, NULL);
	/* a: file -> directory; sub: directory -> file; l: link -> file. */
	fx_sh("cd '%s' && rm a && mkdir a && echo in > a/in && rm -rf sub && "
	      "echo now-a-file > sub && rm l && echo f > l",
	      e.src);
	ph_push_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
	/* Out of band on the remote: a directory where a file goes. */
	fx_sh("cd '%s' && rm b && mkdir -p b/x && echo 1 > b/x/y", e.dst);
	e.o.verify = 1;
	ph_push_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
}

Test(push_delete, dry_run_changes_nothing, SMALL)
{
	e.o.dry_run = 1;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 4, "planned: %llu",
	             (unsigned long long)r.files_uploaded);
	struct stat st;
	cr_assert_neq(stat(e.dst, &st), 0, "the destination was created");
	char *m = ph_state_file(&e, ".manifest");
	cr_assert_null(m, "a dry run saved a manifest");
	ferry_sync_report_free(&r);
	e.o.dry_run = 0;
	e.o.delete_extraneous = 1;
	ph_push_ok(&e, NULL);
	fx_sh("cd '%s' && rm a && echo new > '%s/extra'", e.src, e.dst);
	char *before = ph_tree_listing(e.dst);
	e.o.dry_run = 1;
	e.o.verify = 1;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_deleted, 2);
	char *after = ph_tree_listing(e.dst);
	cr_assert_str_eq(before, after);
	free(before);
	free(after);
	ferry_sync_report_free(&r);
}
