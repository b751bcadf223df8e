/* Tests of sync/plan.c: change detection, ordering, deletions, the new
 * manifest after a (partial) push, verify support. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "fixture.h"
#include "sync/plan.h"
#include "sync/status.h"
#include "sync_test.h"

#define ST_SECOND ((int64_t)1000000000)

typedef struct fixture {
	char *root, *src, *state;
	st_target t;
} fixture;

/* The test's (one process each). */
static fixture x;

static void teardown(void)
{
	st_text_free(&x.t.log);
	free(x.root);
	free(x.src);
	free(x.state);
}

/* x for a new target, nothing pushed: root/ made by st_tree(spec), the
 * source root/src; torn down with teardown(). */
static void fresh(const char *src, const char *const *spec)
{
	x.root = st_dir("plan");
	st_tree(x.root, spec);
	x.src = st_path(x.root, src);
	x.state = st_path(x.root, "s");
	st_target_init(&x.t, x.state, x.src);
}
#define FRESH(src, ...) fresh(src, (const char *const[]){__VA_ARGS__, NULL})

/* root/t with: f (file), d/ (dir) with d/g, l -> f; pushed with the
 * manifest's stat_ns moved by shift. */
static void setup(int64_t shift)
{
	FRESH("t/", "t/", "t/f=0123456789", "t/d/", "t/l->f");
	st_write(x.root, "t/d/g", "gg", 0600);
	st_set_mtime(x.root, "t/f", 1600000000, 0);
	st_set_mtime(x.root, "t/d/g", 1600000000, 0);
	cr_assert_eq(st_push(&x.t, shift), 4);
}

/* The fixture of most tests: setup, not racy, before the test; teardown
 * after it. */
static void setup_pushed(void)
{
	setup(ST_HOUR);
}
#define PUSHED .init = setup_pushed, .fini = teardown

/* The visible plan as "kind flags path" lines. */
static char *plan_text(ferry__local *l, ferry_sync_report *r)
{
	static const char *kinds[] = {"mkdir",  "upload", "meta",   "symlink",
	                              "delete", "rmdir",  "record", "none"};
	st_text out = {0};
	st_text_add(&out, "", 0);
	st_plan(&x.t, l, r);
	for (size_t i = 0; i < l->plan->n; i++) {
		const ferry__action *a = &l->plan->a[i];
		char line[4200];
		int n = snprintf(line, sizeof(line), "%s %02x %s%s\n",
		                 kinds[a->kind], a->flags & 0x7f, a->entry.path,
		                 a->flags & FERRY__ACT_QUIET ? " (quiet)" : "");
		st_text_add(&out, line, (size_t)n);
	}
	return out.s;
}

/* Save m (edited by the test) as x's manifest. */
static void save_manifest(ferry__manifest *m)
{
	ferry__sync_paths p;
	cr_assert_eq(
	        ferry__sync_paths_new(&p, "u", "h.example", 0, "dst", x.state),
	        0);
	char err[256];
	cr_assert_eq(ferry__manifest_save(m, p.manifest, err, sizeof(err)), 0,
	             "%s", err);
	ferry__sync_paths_free(&p);
}

/* Plan, asserting the visible plan. */
static void plan_check(ferry__local *l, ferry_sync_report *r, const char *want)
{
	char *s = plan_text(l, r);
	cr_assert_str_eq(s, want);
	free(s);
}

static void plan_free(ferry__local *l, ferry_sync_report *r)
{
	ferry__local_free(l);
	ferry_sync_report_free(r);
}

static char *plan_only(uint64_t *hashed)
{
	ferry__local l;
	ferry_sync_report r = {0};
	char *s = plan_text(&l, &r);
	if (hashed)
		*hashed = l.plan->hashed_files;
	plan_free(&l, &r);
	return s;
}

/* Assert x's visible plan. */
static void expect_plan(const char *want)
{
	char *s = plan_only(NULL);
	cr_assert_str_eq(s, want);
	free(s);
}

Test(plan, untouched_tree_plans_nothing_and_hashes_nothing, PUSHED)
{
	uint64_t hashed = 99;
	char *s = plan_only(&hashed);
	cr_assert_str_eq(s, "");
	cr_assert_eq(hashed, 0);
	free(s);
}

Test(plan, touch_is_a_metadata_update, PUSHED)
{
	st_set_mtime(x.root, "t/f", 1600000100, 5);
	expect_plan("meta 08 f\n");
}

Test(plan, chmod_is_a_metadata_update, PUSHED)
{
	char *p = st_path(x.root, "t/f");
	cr_assert_eq(chmod(p, 0600), 0);
	char *d = st_path(x.root, "t/d");
	cr_assert_eq(chmod(d, 0700), 0);
	/* file modes in phase 3, directory modes last */
	expect_plan("meta 10 f\nmeta 50 d\n");
	free(p);
	free(d);
}

Test(plan, same_size_and_mtime_new_content_found_by_ctime, PUSHED)
{
	st_write(x.root, "t/f", "abcdefghij", 0644); /* same size */
	st_set_mtime(x.root, "t/f", 1600000000, 0);  /* same mtime */
	expect_plan("upload 02 f\n");
}

Test(plan, same_size_and_mtime_new_inode_found, PUSHED)
{
	st_write(x.root, "t/new", "abcdefghij", 0644);
	st_set_mtime(x.root, "t/new", 1600000000, 0);
	char *a = st_path(x.root, "t/new"), *b = st_path(x.root, "t/f");
	cr_assert_eq(rename(a, b), 0);
	expect_plan("upload 02 f\n");
	free(a);
	free(b);
}

Test(plan, rewrite_with_same_content_is_only_recorded, PUSHED)
{
	st_write(x.root, "t/f", "0123456789", 0644);
	st_set_mtime(x.root, "t/f", 1600000000, 0);
	ferry__local l;
	ferry_sync_report r = {0};
	/* ctime moved: hashed, same content and metadata: no change shown,
	 * but the entry is refreshed so the next push needs no hash */
	plan_check(&l, &r, "record 00 f\n");
	cr_assert_eq(l.plan->hashed_files, 1);
	plan_free(&l, &r);
}

Test(plan, file_replaced_by_directory_and_back, PUSHED)
{
	char *f = st_path(x.root, "t/f");
	cr_assert_eq(unlink(f), 0);
	st_mkdir(x.root, "t/f", 0755);
	st_write(x.root, "t/f/inner", "i", 0644);
	expect_plan("delete 20 f\nmkdir 61 f\nupload 01 f/inner\n"
	            "meta 50 f (quiet)\n");
	cr_assert_eq(st_push(&x.t, ST_HOUR), 3);
	expect_plan("");
	/* and back: the directory's contents go first, deepest first */
	st_mkdir(x.root, "t/f/sub", 0755);
	st_write(x.root, "t/f/sub/z", "z", 0644);
	cr_assert_eq(st_push(&x.t, ST_HOUR), 2);
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "rm -rf '%s' && printf back > '%s'", f, f) >
	          0);
	cr_assert_eq(fx_sh("%s", cmd), 0);
	expect_plan("delete 20 f/sub/z\n"
	            "rmdir 60 f/sub\n"
	            "delete 20 f/inner\n"
	            "rmdir 60 f\n"
	            "upload 21 f\n");
	cr_assert_eq(st_push(&x.t, ST_HOUR), 5);
	ferry__manifest *m = st_load(&x.t);
	cr_assert_eq(ferry__manifest_find(m, "f", 1)->type, FERRY__T_FILE);
	cr_assert_null(ferry__manifest_find(m, "f/inner", 7));
	ferry__manifest_free(m);
	free(cmd);
	free(f);
}

Test(plan, racily_clean_entries_are_rehashed)
{
	/* Push with stat_ns a second before now: everything just written is
	 * racily clean, whatever the file system's window.  Then corrupt the
	 * recorded hash of f while its stat stays equal: only the re-hash of
	 * a racily clean entry can notice. */
	for (int racy = 0; racy < 2; racy++) {
		setup(racy ? -ST_SECOND : ST_HOUR);
		ferry__manifest *m = st_load(&x.t);
		ferry__mentry *e = ferry__manifest_find(m, "f", 1);
		cr_assert_not_null(e);
		e->hash.b[0] ^= 1;
		int64_t keep = m->stat_ns;
		save_manifest(m);
		cr_assert_eq(m->stat_ns, keep);
		uint64_t hashed = 0;
		char *s = plan_only(&hashed);
		if (racy) {
			cr_assert_str_eq(s, "upload 02 f\n");
			cr_assert_geq(hashed, 1);
		} else {
			cr_assert_str_eq(s, "");
			cr_assert_eq(hashed, 0);
		}
		free(s);
		ferry__manifest_free(m);
		teardown();
	}
}

Test(plan, racy_window_by_file_system_type)
{
	cr_assert_eq(ferry__racy_window(0x4d44),
	             FERRY__RACY_COARSE_NS); /* vfat */
	cr_assert_eq(ferry__racy_window(0x2011BAB0), FERRY__RACY_COARSE_NS);
	cr_assert_eq(ferry__racy_window(0x6969),
	             FERRY__RACY_COARSE_NS); /* nfs */
	cr_assert_eq(ferry__racy_window(0), FERRY__RACY_COARSE_NS);
	cr_assert_eq(ferry__racy_window(0xEF53), FERRY__RACY_FINE_NS);
	cr_assert_eq(ferry__racy_window(0x58465342), FERRY__RACY_FINE_NS);
	cr_assert_eq(ferry__racy_window(0x9123683E), FERRY__RACY_FINE_NS);
	cr_assert_eq(ferry__racy_window(0x01021994), FERRY__RACY_FINE_NS);
	cr_assert_eq(ferry__racy_window(0x794C7630), FERRY__RACY_FINE_NS);
	cr_assert_lt(FERRY__RACY_FINE_NS, FERRY__RACY_COARSE_NS);
}

Test(plan, file_older_than_the_fine_window_is_not_racy)
{
	/* A file written just before a push (stat_ns = the scan's start, no
	 * shift) on the test's file system: on a fine-grained one, once the
	 * fine window has passed it is clean, and a corrupted hash with an
	 * equal stat goes unnoticed (no re-hash); on a coarse one it is
	 * still racy and re-hashed. */
	FRESH("t/", "t/", "t/f=0123456789");
	char *t = st_path(x.root, "t");
	struct statfs fs;
	struct stat st;
	cr_assert_eq(statfs(t, &fs), 0);
	cr_assert_eq(stat(t, &st), 0);
	int64_t want = st.st_ctim.tv_nsec
	                       ? ferry__racy_window((unsigned long)fs.f_type)
	                       : FERRY__RACY_COARSE_NS;
	usleep((useconds_t)(FERRY__RACY_FINE_NS / 1000) + 20000);
	cr_assert_eq(st_push(&x.t, 0), 1);

	ferry__manifest *m = st_load(&x.t);
	ferry__mentry *e = ferry__manifest_find(m, "f", 1);
	cr_assert_not_null(e);
	cr_assert_neq(e->ctime_ns, -1);
	e->hash.b[0] ^= 1;
	save_manifest(m);
	ferry__local l;
	ferry_sync_report r = {0};
	plan_check(&l, &r, want == FERRY__RACY_FINE_NS ? "" : "upload 02 f\n");
	cr_assert_eq(l.scan->racy_ns, want);
	if (want == FERRY__RACY_FINE_NS)
		cr_assert_eq(l.plan->hashed_files, 0);
	plan_free(&l, &r);
	free(t);
	ferry__manifest_free(m);
	teardown();
}

Test(plan, checksum_hashes_everything, PUSHED)
{
	ferry__manifest *m = st_load(&x.t);
	ferry__manifest_find(m, "d/g", 3)->hash.b[3] ^= 1;
	save_manifest(m);
	uint64_t hashed = 0;
	char *s = plan_only(&hashed);
	cr_assert_str_eq(s, "");
	free(s);
	x.t.o.checksum = 1;
	s = plan_only(&hashed);
	/* d is written into: its time is set again at the end. */
	cr_assert_str_eq(s, "upload 02 d/g\nmeta 40 d (quiet)\n");
	cr_assert_eq(hashed, 2);
	free(s);
	ferry__manifest_free(m);
}

Test(plan, deletions_only_with_delete_in_order, PUSHED)
{
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "rm -rf '%s/t/d' '%s/t/l'", x.root, x.root) >
	          0);
	cr_assert_eq(fx_sh("%s", cmd), 0);
	expect_plan("");
	x.t.o.delete_extraneous = 1;
	expect_plan("delete 00 l\ndelete 00 d/g\nrmdir 40 d\n");
	/* --max-delete: at the limit fine, above refused, negative: none */
	x.t.o.max_delete = 3;
	expect_plan("delete 00 l\ndelete 00 d/g\nrmdir 40 d\n");
	x.t.o.max_delete = 2;
	ferry__local l;
	ferry_sync_report r = {0};
	plan_check(&l, &r, "");
	cr_assert_eq(l.plan->deletions_skipped, FERRY__DEL_MAX);
	cr_assert(strstr(l.plan->refused, "refusing to delete 3 entries"));
	cr_assert_eq(r.error_count, 1);
	plan_free(&l, &r);
	x.t.o.max_delete = -1;
	expect_plan("");
	free(cmd);
}

Test(plan, excluded_paths_are_never_deleted, PUSHED)
{
	x.t.o.delete_extraneous = 1;
	const char *ex[] = {"d/"};
	x.t.o.excludes = ex;
	x.t.o.exclude_count = 1;
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "rm -rf '%s/t/d'", x.root) > 0);
	cr_assert_eq(fx_sh("%s", cmd), 0);
	expect_plan("");
	/* excluding only g keeps g and therefore d */
	ex[0] = "g";
	expect_plan("");
	free(cmd);
}

Test(plan, unreadable_or_empty_source_skips_all_deletions, PUSHED)
{
	st_drop_dac();
	x.t.o.delete_extraneous = 1;
	char *f = st_path(x.root, "t/f");
	cr_assert_eq(unlink(f), 0);
	char *d = st_path(x.root, "t/d");
	cr_assert_eq(chmod(d, 0), 0);
	ferry__local l;
	ferry_sync_report r = {0};
	plan_check(&l, &r, "meta 50 d\n"); /* its mode is 0 now */
	cr_assert_eq(l.plan->deletions_skipped, FERRY__DEL_IOERR);
	cr_assert_eq(l.plan->deletions_dropped, 2); /* f, and d/g unseen */
	cr_assert_eq(r.error_count, 1);
	plan_free(&l, &r);
	chmod(d, 0755);
	/* an unreadable file (to hash) skips deletions too */
	st_write(x.root, "t/d/g", "changed", 0600);
	char *g = st_path(x.root, "t/d/g");
	cr_assert_eq(chmod(g, 0), 0);
	plan_check(&l, &r, "");
	cr_assert_eq(l.plan->deletions_skipped, FERRY__DEL_IOERR);
	cr_assert_eq(r.error_count, 1);
	cr_assert_str_eq(r.errors[0].path, "d/g");
	plan_free(&l, &r);
	/* empty source root */
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "rm -rf '%s'/t/* '%s'/t/.[!.]*", x.root,
	                   x.root) > 0);
	cr_assert_eq(fx_sh("%s", cmd), 0);
	plan_check(&l, &r, "");
	cr_assert_eq(l.plan->deletions_skipped, FERRY__DEL_EMPTY);
	cr_assert(strstr(l.plan->refused, "refusing to delete") &&
	                  strstr(l.plan->refused, "is empty"),
	          "%s", l.plan->refused);
	plan_free(&l, &r);
	free(cmd);
	free(g);
	free(f);
	free(d);
}

Test(plan, delete_scope_is_the_synced_directory, PUSHED)
{
	/* Push t/ then, to the same target, only t/d (no slash) and a file:
	 * with --delete only entries under d/ could go, never f or l. */
	char *dsrc = st_path(x.root, "t/d");
	x.t.sources[0] = dsrc;
	x.t.o.delete_extraneous = 1;
	expect_plan("");
	st_write(x.root, "t/d/d", "nested", 0644);
	char *g = st_path(x.root, "t/d/g");
	cr_assert_eq(unlink(g), 0);
	free(g);
	expect_plan("upload 01 d/d\ndelete 00 d/g\nmeta 48 d (quiet)\n");
	free(dsrc);
}

Test(plan, new_tree_order_and_new_directory_modes)
{
	FRESH("t/", "t/", "t/a=a", "t/c/", "t/c/ln->e/x");
	st_mkdir(x.root, "t/b", 0555);
	st_mkdir(x.root, "t/c/e", 0750);
	st_write(x.root, "t/c/e/x", "x", 0644);
	ferry__local loc;
	ferry_sync_report r = {0};
	plan_check(&loc, &r,
	           "mkdir 41 b\n"
	           "mkdir 41 c\n"
	           "mkdir 41 c/e\n"
	           "upload 01 a\n"
	           "upload 01 c/e/x\n"
	           "symlink 01 c/ln\n"
	           "meta 50 c/e (quiet)\n"
	           "meta 50 c (quiet)\n"
	           "meta 50 b (quiet)\n");
	ferry__action *b = ferry__plan_find(loc.plan, "b", 1);
	cr_assert_eq(b->kind, FERRY__ACT_MKDIR);
	cr_assert_eq(b->create_mode, 0755);
	cr_assert_eq(b->entry.mode, 0555);
	cr_assert_eq(loc.plan->bytes_upload, 2);
	cr_assert_str_eq(ferry__plan_find(loc.plan, "c/ln", 4)->link, "e/x");
	plan_free(&loc, &r);
	teardown();
}

Test(plan, partial_push_records_exactly_what_was_committed)
{
	FRESH("t/", "t/", "t/a=a", "t/b=b", "t/d/", "t/d/c=c");
	ferry__local l;
	ferry_sync_report r = {0};
	st_plan(&x.t, &l, &r);
	/* commit a and the mkdir; b failed; d/c committed but (say) its
	 * parent's mkdir was not: d/c must not be recorded either */
	for (size_t i = 0; i < l.plan->n; i++) {
		ferry__action *a = &l.plan->a[i];
		if (!strcmp(a->entry.path, "a"))
			a->committed = 1;
		if (!strcmp(a->entry.path, "d/c"))
			a->committed = 1;
		if (!strcmp(a->entry.path, "b"))
			a->error = FERRY_EREMOTE;
		if (a->kind == FERRY__ACT_UPLOAD)
			ferry__action_hash_local(l.plan, a);
	}
	cr_assert_eq(ferry__plan_apply(l.plan, l.m), 0);
	cr_assert_eq(l.m->n, 1);
	cr_assert_str_eq(l.m->e[0].path, "a");
	cr_assert(l.m->e[0].flags & FERRY__ME_HASHED);
	char why[128];
	cr_assert_eq(ferry__manifest_check(l.m, why, sizeof(why)), 0);
	cr_assert_eq(l.m->stat_ns, l.plan->stat_ns);
	char err[256];
	cr_assert_eq(
	        ferry__manifest_save(l.m, l.paths.manifest, err, sizeof(err)),
	        0);
	plan_free(&l, &r);
	expect_plan(
	        "mkdir 41 d\nupload 01 b\nupload 01 d/c\nmeta 50 d (quiet)\n");
	teardown();
}

Test(plan, verify_mode_find_promote_and_remote_only_deletes, PUSHED)
{
	ferry__local l;
	ferry_sync_report r = {0};
	char err[256];
	x.t.o.delete_extraneous = 1;
	const char *ex[] = {"*.keep"};
	x.t.o.excludes = ex;
	x.t.o.exclude_count = 1;
	/* keep_unchanged */
	int rc = ferry__local_plan(&l, "u", "h.example", 0, &x.t.o,
	                           FERRY__LOCAL_KEEP_UNCHANGED, &r, err,
	                           sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	ferry__action *f = ferry__plan_find(l.plan, "f", 1);
	cr_assert_eq(f->kind, FERRY__ACT_NONE);
	cr_assert(f->entry.flags & FERRY__ME_HASHED);
	ferry__action *ln = ferry__plan_find(l.plan, "l", 1);
	cr_assert_str_eq(ln->link, "f");
	cr_assert_null(ferry__plan_find(l.plan, "zz", 2));
	plan_free(&l, &r);

	/* The executor's sequence: build (not finished), list the remote,
	 * adjust, finish. */
	ferry__local m2;
	rc = ferry__local_plan(&m2, "u", "h.example", 0, &x.t.o,
	                       FERRY__LOCAL_KEEP_UNCHANGED |
	                               FERRY__LOCAL_NO_FINISH,
	                       &r, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert(!m2.plan->finished);
	ferry__plan *p = m2.plan;
	/* the remote copy of f differs: upload it; extras found remotely */
	ferry__plan_promote(p, ferry__plan_find(p, "f", 1), FERRY__ACT_UPLOAD,
	                    FERRY_CHANGED_CONTENT);
	cr_assert_eq(ferry__plan_add_delete(p, "zdir", 4, FERRY__T_DIR, 0), 0);
	cr_assert_eq(ferry__plan_add_delete(p, "zdir/y", 6, FERRY__T_FILE, 0),
	             0);
	cr_assert_eq(ferry__plan_add_delete(p, "x.keep", 6, FERRY__T_FILE, 0),
	             0);
	cr_assert_eq(ferry__plan_finish(p), 0);
	st_text out = {0};
	st_text_add(&out, "", 0);
	for (size_t i = 0; i < p->n; i++) {
		if (!ferry__action_visible(&p->a[i]))
			continue;
		char line[256];
		ferry_change c;
		ferry__action_change(&p->a[i], &c);
		ferry_change_itemize(line, sizeof(line), &c);
		st_text_add(&out, line, strlen(line));
		st_text_add(&out, "\n", 1);
	}
	cr_assert_str_eq(out.s, ">fc........ f\n"
	                        "*deleting   zdir/y\n"
	                        "*deleting   zdir/\n");
	st_text_free(&out);
	plan_free(&m2, &r);
}

Test(plan, several_sources_merge_directories_first_file_wins)
{
	FRESH("a/", "a/", "a/d/", "a/d/x=from a", "a/same=from a", "b/", "b/d/",
	      "b/d/y=from b", "b/same=from b!", "b/0first=b");
	char *sb = st_path(x.root, "b/");
	x.t.sources[1] = sb;
	x.t.nsrc = 2;
	ferry__local l;
	ferry_sync_report r = {0};
	plan_check(&l, &r,
	           "mkdir 41 d\n"
	           "upload 01 0first\n"
	           "upload 01 d/x\n"
	           "upload 01 d/y\n"
	           "upload 01 same\n"
	           "meta 50 d (quiet)\n");
	cr_assert_eq(ferry__plan_find(l.plan, "same", 4)->entry.size, 6);
	cr_assert_eq(ferry__plan_find(l.plan, "d/y", 3)->src, 1);
	cr_assert(strstr(x.t.log.s, "same: also in source"), "%s", x.t.log.s);
	plan_free(&l, &r);
	free(sb);
	teardown();
}

Test(plan, executor_read_hash_kept_only_when_the_file_held_still)
{
	FRESH("t/", "t/", "t/a=aaaa");
	ferry__local l;
	ferry_sync_report r = {0};
	st_plan(&x.t, &l, &r);
	cr_assert_eq(ferry__plan_needs_save(l.plan), 0);
	ferry__action *a = ferry__plan_find(l.plan, "a", 1);
	cr_assert(a->flags & FERRY__ACT_UNHASHED);
	int fd;
	struct stat before, after;
	cr_assert_eq(ferry__scan_open(l.scan, a->src, "a", 1, &fd, &before), 0);
	ferry__hasher h;
	ferry__hasher_init(&h);
	char buf[16];
	ssize_t n = read(fd, buf, sizeof(buf));
	cr_assert_eq(n, 4);
	ferry__hasher_update(&h, buf, (size_t)n);
	ferry__hash hv;
	ferry__hasher_final(&h, &hv);
	/* the file held still: hash kept */
	cr_assert_eq(fstat(fd, &after), 0);
	ferry__action_read_done(a, &hv, &before, &after, 4);
	cr_assert_eq(a->flags & FERRY__ACT_UNHASHED, 0);
	cr_assert(a->entry.flags & FERRY__ME_HASHED);
	/* written to meanwhile: not kept */
	char *p = st_path(x.root, "t/a");
	int w = open(p, O_WRONLY | O_APPEND);
	cr_assert_eq(write(w, "b", 1), 1);
	close(w);
	cr_assert_eq(fstat(fd, &after), 0);
	ferry__action_read_done(a, &hv, &before, &after, 4);
	cr_assert(a->flags & FERRY__ACT_UNHASHED);
	cr_assert_eq(a->entry.flags & FERRY__ME_HASHED, 0);
	close(fd);
	a->committed = 1;
	cr_assert_eq(ferry__plan_needs_save(l.plan), 1);
	plan_free(&l, &r);
	free(p);
	teardown();
}

/* The entry of m at path (asserted). */
static const ferry__mentry *entry_at(ferry__manifest *m, const char *path)
{
	const ferry__mentry *e = ferry__manifest_find(m, path, strlen(path));
	cr_assert_not_null(e, "%s", path);
	return e;
}

Test(plan, chunk_lists_are_copied_kept_with_the_content_and_dropped)
{
	FRESH("t/", "t/", "t/a=0123456789", "t/b=bb");
	st_set_mtime(x.root, "t/a", 1600000000, 0);
	ferry__local l;
	ferry_sync_report r = {0};
	st_plan(&x.t, &l, &r);
	/* The plan's list for a (as the executor would make it). */
	ferry__chunk *v = malloc(2 * sizeof(*v));
	v[0] = (ferry__chunk){.off = 0, .len = 4};
	v[1] = (ferry__chunk){.off = 4, .len = 6};
	ferry__hash_buf(&v[0].hash, "0123", 4);
	ferry__hash_buf(&v[1].hash, "456789", 6);
	for (size_t i = 0; i < l.plan->n; i++) {
		ferry__action *a = &l.plan->a[i];
		a->committed = 1;
		if (a->kind == FERRY__ACT_UPLOAD)
			ferry__action_hash_local(l.plan, a);
		if (!strcmp(a->entry.path, "a")) {
			a->entry.chunks = v;
			a->entry.nchunks = 2;
		}
	}
	cr_assert_eq(ferry__plan_apply(l.plan, l.m), 0);
	const ferry__mentry *e = entry_at(l.m, "a");
	cr_assert_eq(e->nchunks, 2);
	cr_assert_neq(e->chunks, v, "the manifest's own copy");
	cr_assert_eq(e->chunks[1].len, 6);
	cr_assert_null(entry_at(l.m, "b")->chunks);
	memset(v, 0xee, 2 * sizeof(*v));
	free(v);
	l.m->stat_ns += ST_HOUR;
	char err[256];
	cr_assert_eq(
	        ferry__manifest_save(l.m, l.paths.manifest, err, sizeof(err)),
	        0, "%s", err);
	plan_free(&l, &r);

	/* a touched: a META action with the same content keeps the list */
	st_set_mtime(x.root, "t/a", 1600000100, 0);
	st_plan(&x.t, &l, &r);
	for (size_t i = 0; i < l.plan->n; i++)
		l.plan->a[i].committed = 1;
	cr_assert_eq(ferry__plan_apply(l.plan, l.m), 0);
	e = entry_at(l.m, "a");
	cr_assert_eq(e->mtime_ns, (int64_t)1600000100 * ST_SECOND);
	cr_assert_eq(e->nchunks, 2);
	cr_assert_eq(e->chunks[0].len, 4);
	l.m->stat_ns += ST_HOUR;
	cr_assert_eq(
	        ferry__manifest_save(l.m, l.paths.manifest, err, sizeof(err)),
	        0, "%s", err);
	plan_free(&l, &r);

	/* new content of the same size: the old list is not the content's */
	st_write(x.root, "t/a", "abcdefghij", 0644);
	st_set_mtime(x.root, "t/a", 1600000200, 0);
	st_plan(&x.t, &l, &r);
	for (size_t i = 0; i < l.plan->n; i++) {
		ferry__action *a = &l.plan->a[i];
		a->committed = 1;
		if (a->kind == FERRY__ACT_UPLOAD)
			ferry__action_hash_local(l.plan, a);
	}
	cr_assert_eq(ferry__plan_apply(l.plan, l.m), 0);
	e = entry_at(l.m, "a");
	cr_assert(e->flags & FERRY__ME_HASHED);
	cr_assert_eq(e->nchunks, 0);
	cr_assert_null(e->chunks);
	plan_free(&l, &r);
	teardown();
}
