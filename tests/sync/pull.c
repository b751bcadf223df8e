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
