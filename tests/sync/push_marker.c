/* push_marker.c - the identity marker under a name of the caller's
 * (ferry_sync_opts.marker): it detects a wiped or rebuilt destination as
 * .ferry-id does, --delete and excludes never remove it, a pull given the
 * name never brings it home, and the default still trusts a tree that an
 * older ferry (a version 3 options struct) pushed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pull_helpers.h"
#include "push_env.h"

#define MK ".agent-sync"

static void marker_setup(void)
{
	ph_setup();
	ph_write(e.src, "a", "aaa\n", 0644, 1700000000L);
	ph_mkdir(e.src, "sub", 0755);
	ph_write(e.src, "sub/c", "ccc\n", 0644, 1700000000L);
	e.o.marker = MK;
	ph_marker = MK;
}
#define MARKER .init = marker_setup, .fini = ph_teardown

static void marker_is_hex_id(const char *dir)
{
	char *m = ph_read(dir, MK);
	cr_assert_not_null(m, "no %s", MK);
	cr_assert_eq(strlen(m), 33, "%s", m);
	cr_assert_eq(strspn(m, "0123456789abcdef"), 32, "%s", m);
	free(m);
}

Test(push_marker, custom_name_detects_a_wiped_destination, MARKER)
{
	ph_push_ok(&e, NULL);
	marker_is_hex_id(e.dst);
	cr_assert(!ph_exists(e.dst, ".ferry-id"), "the default was written");
	/* A new session: the marker vouches, nothing is listed. */
	ph_reconnect(&e);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.verified, 0);
	ferry_sync_report_free(&r);
	/* Wiped and made again (empty): the marker is gone with it. */
	fx_sh("rm -rf '%s' && mkdir '%s'", e.dst, e.dst);
	ph_reconnect(&e);
	ph_push_ok(&e, &r);
	cr_assert(r.verified, "a missing marker makes the push verify");
	cr_assert_eq(r.files_uploaded, 2);
	ph_assert_same(e.src, e.dst);
	marker_is_hex_id(e.dst);
	ferry_sync_report_free(&r);
	/* Rebuilt by someone else (another id) with a file changed. */
	fx_sh("cd '%s' && echo 0123456789abcdef0123456789abcdef > " MK
	      " && echo zz > sub/c",
	      e.dst);
	ph_reconnect(&e);
	ph_push_ok(&e, &r);
	cr_assert(r.verified);
	cr_assert_eq(r.files_uploaded, 1);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

/* A tree and manifest written through a version 3 struct (no marker
 * field: what ferry before version 4 wrote) are trusted by a version 4
 * push with the default: .ferry-id it is. */
Test(push_marker, default_trusts_a_tree_pushed_by_the_old_version, MARKER)
{
	ph_marker = NULL;
	ferry_sync_opts old;
	memcpy(&old, &e.o, ferry_struct_size(FERRY_STRUCT_SYNC_OPTS, 3));
	old.version = 3;
	ferry_sync_report r;
	cr_assert_eq(ferry_sync(e.s, &old, &r), 0, "%s",
	             ferry_session_errmsg(e.s));
	ferry_sync_report_free(&r);
	cr_assert(ph_exists(e.dst, ".ferry-id"));
	cr_assert(!ph_exists(e.dst, MK));
	e.o.marker = NULL;
	ph_reconnect(&e);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.verified, 0, "the old marker vouches");
	cr_assert_eq(r.files_uploaded + r.files_updated, 0);
	ferry_sync_report_free(&r);
	/* Moving to a name of one's own: one verifying push writes it; the
	 * old .ferry-id stays ferry's (never deleted, never pushed over). */
	e.o.marker = MK;
	e.o.delete_extraneous = 1;
	ph_marker = MK;
	ph_reconnect(&e);
	ph_push_ok(&e, &r);
	cr_assert(r.verified);
	cr_assert_eq(r.files_deleted, 0);
	ferry_sync_report_free(&r);
	marker_is_hex_id(e.dst);
	cr_assert(ph_exists(e.dst, ".ferry-id"));
	ph_reconnect(&e);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.verified, 0, "the new marker vouches");
	ferry_sync_report_free(&r);
}

Test(push_marker, delete_and_excludes_never_remove_it, MARKER)
{
	static const char *const ex[] = {MK, ".agent-*"};
	e.o.excludes = ex;
	e.o.exclude_count = 2;
	e.o.delete_extraneous = 1;
	ph_push_ok(&e, NULL);
	marker_is_hex_id(e.dst);
	char *m1 = ph_read(e.dst, MK);
	/* Listed and mirrored (verify), tracked too: the marker stays. */
	ferry_sync_report r;
	for (int scope = 0; scope < 2; scope++) {
		e.o.verify = 1;
		e.o.delete_scope =
		        scope ? FERRY_DELETE_TRACKED : FERRY_DELETE_MIRROR;
		ph_push_ok(&e, &r);
		cr_assert(r.verified);
		cr_assert_eq(r.files_deleted, 0);
		ferry_sync_report_free(&r);
		char *m2 = ph_read(e.dst, MK);
		cr_assert_not_null(m2, "the marker was deleted");
		cr_assert_str_eq(m1, m2);
		free(m2);
	}
	/* A source file of that name is refused, not pushed over it. */
	ph_write(e.src, MK, "mine\n", 0644, 0);
	e.o.excludes = NULL;
	e.o.exclude_count = 0;
	e.o.verify = 0;
	int rc = ph_push(&e, &r);
	cr_assert_eq(rc, FERRY_EPARTIAL, "%s", ferry_strerror(rc));
	cr_assert_eq(r.error_count, 1);
	cr_assert(strstr(r.errors[0].message, "reserved"), "%s",
	          r.errors[0].message);
	ferry_sync_report_free(&r);
	char *m3 = ph_read(e.dst, MK);
	cr_assert_str_eq(m1, m3);
	free(m1);
	free(m3);
	ph_reconnect(&e);
	e.o.verify = 0;
	rc = ph_push(&e, &r);
	cr_assert_eq(r.verified, 0, "the marker still vouches");
	ferry_sync_report_free(&r);
}

Test(push_marker, pull_never_brings_it_home, MARKER)
{
	ph_write(e.src, MK, "0123456789abcdef0123456789abcdef\n", 0644, 0);
	ph_write(e.src, ".ferry-id", "0123456789abcdef0123456789abcdef\n", 0644,
	         0);
	pl_pull_ok(&e, NULL);
	cr_assert(ph_exists(e.dst, "sub/c"));
	cr_assert(!ph_exists(e.dst, ".ferry-id"));
	cr_assert(!ph_exists(e.dst, MK), "the marker came home");
	/* A local file of that name is neither pulled over nor deleted. */
	e.o.delete_extraneous = 1;
	ph_write(e.dst, MK, "local\n", 0644, 0);
	pl_pull_ok(&e, NULL);
	char *m = ph_read(e.dst, MK);
	cr_assert_str_eq(m, "local\n", "pulled over, or deleted by --delete");
	free(m);
}

Test(push_marker, a_name_outside_the_destination_is_refused, MARKER)
{
	static const char *const bad[] = {"..",         ".",
	                                  "state/id",   "/var/lib/ferry/id",
	                                  ".ferry-id2", ".x.ferry-AbC123"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e.o.marker = bad[i];
		ferry_sync_report r;
		cr_assert_eq(ph_push(&e, &r), FERRY_EINVALID, "%s", bad[i]);
		ferry_sync_report_free(&r);
		cr_assert_eq(pl_pull(&e, &r), FERRY_EINVALID, "%s", bad[i]);
		ferry_sync_report_free(&r);
	}
	cr_assert(!ph_exists(e.dst, "a"), "something was pushed");
}
