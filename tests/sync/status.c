/* Tests of ferry_sync_status (sync/status.c): the itemized output for each
 * kind of change, report counts, errors, and that it writes nothing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "fixture.h"
#include "sync/path.h"
#include "sync_test.h"

typedef struct fixture {
	char *root, *src, *state;
	st_target t;
} fixture;

/* The test's (one process each). */
static fixture x;

/* root/t pushed (not racy): same, content, touch, mode, gone, olddir/x,
 * link -> same. */
static void setup(void)
{
	x.root = st_dir("status");
	ST_TREE(x.root, "t/", "t/same=same", "t/content=0123456789",
	        "t/touch=touch", "t/mode=mode", "t/gone=gone", "t/olddir/",
	        "t/olddir/x=x", "t/link->same");
	for (const char *const *f =
	             (const char *const[]){"t/same", "t/content", "t/touch",
	                                   "t/mode", NULL};
	     *f; f++)
		st_set_mtime(x.root, *f, 1600000000, 0);
	x.src = st_path(x.root, "t/");
	x.state = st_path(x.root, "state");
	st_target_init(&x.t, x.state, x.src);
	st_push(&x.t, ST_HOUR);
}

static void teardown(void)
{
	st_text_free(&x.t.log);
	free(x.root);
	free(x.src);
	free(x.state);
}

#define PUSHED .init = setup, .fini = teardown

Test(status, nothing_changed_prints_nothing, PUSHED)
{
	ferry_sync_report r = {0};
	char *out = st_status(&x.t, NULL, &r);
	cr_assert_str_eq(out, "");
	cr_assert_eq(r.files_scanned, 7);
	cr_assert_eq(r.dirs_scanned, 1);
	cr_assert_eq(r.files_uploaded + r.files_updated + r.files_deleted +
	                     r.dirs_created,
	             0);
	cr_assert_gt(r.ms_total, 0);
	ferry_sync_report_free(&r);
	free(out);
}

Test(status, each_kind_of_change, PUSHED)
{
	x.t.o.delete_extraneous = 1;
	st_write(x.root, "t/content", "0123456789abc", 0644);
	st_set_mtime(x.root, "t/content", 1600000001, 0);
	st_set_mtime(x.root, "t/touch", 1600000002, 0);
	char *p = st_path(x.root, "t/mode");
	cr_assert_eq(chmod(p, 0600), 0);
	free(p);
	p = st_path(x.root, "t/gone");
	cr_assert_eq(unlink(p), 0);
	free(p);
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "rm -r '%s/t/olddir'", x.root) > 0);
	cr_assert_eq(fx_sh("%s", cmd), 0);
	free(cmd);
	st_mkdir(x.root, "t/newdir", 0750);
	st_write(x.root, "t/newdir/new file", "n", 0644);
	p = st_path(x.root, "t/link");
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(symlink("touch", p), 0);
	free(p);
	p = st_path(x.root, "t/newlink");
	cr_assert_eq(symlink("newdir/new file", p), 0);
	free(p);
	st_write(x.root, "t/ctl\x01name", "c", 0644);

	ferry_sync_report r = {0};
	char *out = st_status(&x.t, NULL, &r);
	cr_assert_str_eq(out, "cd+++++++++ newdir/\n"
	                      ">fcst...... content\n"
	                      ">f+++++++++ ctl\\#001name\n"
	                      ">f+++++++++ newdir/new file\n"
	                      ".f...p..... mode\n"
	                      ".f..t...... touch\n"
	                      "cLc........ link -> touch\n"
	                      "cL+++++++++ newlink -> newdir/new file\n"
	                      "*deleting   olddir/x\n"
	                      "*deleting   gone\n"
	                      "*deleting   olddir/\n");
	st_assert_changes(&r, 3, 2, 2, 1, 1, 2);
	ferry_sync_report_free(&r);
	free(out);
}

Test(status, type_changes_show_as_deletion_then_creation, PUSHED)
{
	char *cmd = NULL;
	cr_assert(asprintf(&cmd,
	                   "cd '%s/t' && rm same && mkdir same && rm -r olddir "
	                   "&& echo f > olddir",
	                   x.root) > 0);
	cr_assert_eq(fx_sh("%s", cmd), 0);
	free(cmd);
	char *out = st_status(&x.t, NULL, NULL);
	cr_assert_str_eq(out, "*deleting   same\n"
	                      "*deleting   olddir/x\n"
	                      "*deleting   olddir/\n"
	                      "cd+++++++++ same/\n"
	                      ">f+++++++++ olddir\n");
	free(out);
}

Test(status, first_push_everything_is_new_and_nothing_is_written)
{
	char *root = st_dir("status-first");
	st_mkdir(root, "t", 0755);
	st_write(root, "t/a", "a", 0644);
	char *src = st_path(root, "t"), *state = st_path(root, "state");
	st_target t;
	st_target_init(&t, state, src);
	char *out = st_status(&t, NULL, NULL);
	cr_assert_str_eq(out, "cd+++++++++ t/\n>f+++++++++ t/a\n");
	free(out);
	struct stat st;
	cr_assert_eq(stat(state, &st), -1, "status created the state dir");
	st_text_free(&t.log);
	free(src);
	free(state);
	free(root);
}

Test(status, force_ignores_the_manifest, PUSHED)
{
	x.t.o.force = 1;
	ferry_sync_report r = {0};
	char *out = st_status(&x.t, NULL, &r);
	st_assert_changes(&r, 6, ST_ANY, ST_ANY, 1, ST_ANY, 1);
	ferry_sync_report_free(&r);
	free(out);
}

Test(status, max_delete_refusal_is_an_error_with_a_message, PUSHED)
{
	x.t.o.delete_extraneous = 1;
	x.t.o.max_delete = 1;
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "rm -r '%s/t/olddir' '%s/t/gone'", x.root,
	                   x.root) > 0);
	cr_assert_eq(fx_sh("%s", cmd), 0);
	free(cmd);
	ferry_sync_report r = {0};
	char err[256];
	x.t.o.sources = x.t.sources;
	int rc = ferry_sync_status(&x.t.conn, &x.t.o, &r, err, sizeof(err));
	cr_assert_eq(rc, FERRY_ERROR);
	cr_assert(strstr(err, "refusing to delete 3 entries: more than "
	                      "--max-delete 1"),
	          "%s", err);
	cr_assert_eq(r.files_deleted, 0);
	cr_assert_eq(r.error_count, 1);
	ferry_sync_report_free(&r);
}

Test(status, bad_arguments)
{
	ferry_sync_opts o = FERRY_SYNC_OPTS_INIT;
	ferry_session_opts c = FERRY_SESSION_OPTS_INIT;
	ferry_sync_report r = {0};
	char err[256];
	c.host = "h";
	cr_assert_eq(ferry_sync_status(&c, &o, &r, err, sizeof(err)),
	             FERRY_EINVALID);
	cr_assert_str_eq(err, "no source given");
	const char *src[] = {"."};
	o.sources = src;
	o.source_count = 1;
	cr_assert_eq(ferry_sync_status(&c, &o, &r, err, sizeof(err)),
	             FERRY_EINVALID);
	cr_assert_str_eq(err, "no destination given");
	o.dest = "d";
	c.host = NULL;
	cr_assert_eq(ferry_sync_status(&c, &o, &r, err, sizeof(err)),
	             FERRY_EINVALID);
	o.version = 99;
	c.host = "h";
	cr_assert_eq(ferry_sync_status(&c, &o, &r, err, sizeof(err)),
	             FERRY_EINVALID);
	ferry_sync_report_free(&r);
}

Test(status, missing_source_is_partial_with_the_error)
{
	char *root = st_dir("status-missing");
	char *src = st_path(root, "nope"), *state = st_path(root, "state");
	st_target t;
	st_target_init(&t, state, src);
	ferry_sync_report r = {0};
	int rc;
	char *out = st_status(&t, &rc, &r);
	cr_assert_eq(rc, FERRY_EPARTIAL);
	cr_assert_str_eq(out, "");
	cr_assert_eq(r.error_count, 1);
	cr_assert_str_eq(r.errors[0].path, src);
	ferry_sync_report_free(&r);
	free(out);
	st_text_free(&t.log);
	free(src);
	free(state);
	free(root);
}

Test(status, target_key_and_destination_spellings)
{
	ferry__sync_paths a, b;
	cr_assert_eq(ferry__sync_paths_new(&a, "u", "h", 0, "~/x//y/./", "/s"),
	             0);
	cr_assert_eq(ferry__sync_paths_new(&b, "u", "h", 22, "x/y", "/s"), 0);
	cr_assert_str_eq(a.target, "u@h:22");
	cr_assert_str_eq(a.dest, "x/y");
	cr_assert_str_eq(a.manifest, b.manifest);
	cr_assert_str_eq(a.lock, b.lock);
	cr_assert(strncmp(a.manifest, "/s/", 3) == 0);
	ferry__sync_paths_free(&b);
	cr_assert_eq(ferry__sync_paths_new(&b, "u", "::1", 2222, "/abs/", "/s"),
	             0);
	cr_assert_str_eq(b.target, "u@[::1]:2222");
	cr_assert_str_eq(b.dest, "/abs");
	cr_assert_str_neq(a.manifest, b.manifest);
	ferry__sync_paths_free(&a);
	ferry__sync_paths_free(&b);
	char *n = ferry__sync_dest_normalize("");
	cr_assert_str_eq(n, ".");
	ferry__free(n);
	n = ferry__sync_dest_normalize("~");
	cr_assert_str_eq(n, ".");
	ferry__free(n);
	n = ferry__sync_dest_normalize("/");
	cr_assert_str_eq(n, "/");
	ferry__free(n);
	n = ferry__sync_dest_normalize("a/../b");
	cr_assert_str_eq(n, "a/../b");
	ferry__free(n);
	/* state directory defaults */
	char *s = NULL;
	setenv("XDG_STATE_HOME", "/xdg", 1);
	cr_assert_eq(ferry__sync_state_dir(&s, NULL), 0);
	cr_assert_str_eq(s, "/xdg/ferry");
	ferry__free(s);
	setenv("XDG_STATE_HOME", "relative", 1);
	setenv("HOME", "/home/me", 1);
	cr_assert_eq(ferry__sync_state_dir(&s, NULL), 0);
	cr_assert_str_eq(s, "/home/me/.local/state/ferry");
	ferry__free(s);
	cr_assert_eq(ferry__sync_state_dir(&s, "/given"), 0);
	cr_assert_str_eq(s, "/given");
	ferry__free(s);
}

Test(status, itemize_truncates_like_snprintf)
{
	ferry_change c = {.kind = FERRY_CHANGE_UPLOAD,
	                  .flags = FERRY_CHANGED_NEW,
	                  .path = "abc"};
	char buf[8];
	cr_assert_eq(ferry_change_itemize(buf, sizeof(buf), &c), 15);
	cr_assert_str_eq(buf, ">f+++++");
	cr_assert_eq(ferry_change_itemize(NULL, 0, &c), 15);
	c.kind = FERRY_CHANGE_META;
	c.flags = FERRY_CHANGED_MODE | FERRY__CHANGED_DIR;
	char big[64];
	ferry_change_itemize(big, sizeof(big), &c);
	cr_assert_str_eq(big, ".d...p..... abc/");
}

Test(status, allocation_failures_give_clean_errors, PUSHED)
{
	x.t.o.delete_extraneous = 1;
	st_write(x.root, "t/content", "changed!!!", 0644);
	char *p = st_path(x.root, "t/gone");
	cr_assert_eq(unlink(p), 0);
	free(p);
	char err[256];
	ferry_sync_report r = {0};
	x.t.o.sources = x.t.sources;
	unsigned long c0 = ferry__alloc_count();
	cr_assert_eq(ferry_sync_status(&x.t.conn, &x.t.o, &r, err, sizeof(err)),
	             0);
	unsigned long total = ferry__alloc_count() - c0;
	uint64_t want = r.files_uploaded + r.files_deleted;
	ferry_sync_report_free(&r);
	for (unsigned long k = 1; k <= total; k++) {
		ferry__alloc_fail_at(k);
		int rc = ferry_sync_status(&x.t.conn, &x.t.o, &r, err,
		                           sizeof(err));
		ferry__alloc_fail_at(0);
		if (rc == 0)
			cr_assert_eq(r.files_uploaded + r.files_deleted, want,
			             "allocation %lu", k);
		else
			cr_assert_eq(rc, FERRY_ENOMEM, "allocation %lu: %d", k,
			             rc);
		ferry_sync_report_free(&r);
	}
}
