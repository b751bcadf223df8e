/* Tests of what ferry_sync_status stores (sync/status.c, status_refresh):
 * files it re-hashed because they were racily clean, and found the same,
 * are recorded under the target's lock, as the push that follows would
 * record them; nothing else is ever written. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/manifest.h"
#include "sync/status.h"
#include "sync_test.h"

#define NFILES 5

typedef struct fixture {
	char *root, *src, *state;
	st_target t;
} fixture;

/* The files written just before the push: every entry racily clean. */
static void setup(fixture *x)
{
	char name[32];
	x->root = st_dir("status-refresh");
	st_mkdir(x->root, "t", 0755);
	for (int i = 0; i < NFILES; i++) {
		snprintf(name, sizeof(name), "t/f%d", i);
		st_write(x->root, name, "content", 0644);
	}
	x->src = st_path(x->root, "t/");
	x->state = st_path(x->root, "state");
	st_target_init(&x->t, x->state, x->src);
	cr_assert_eq(st_push(&x->t, 0), NFILES);
}

static void teardown(fixture *x)
{
	st_text_free(&x->t.log);
	free(x->root);
	free(x->src);
	free(x->state);
}

/* A plan for x: how many files it hashed, how many actions, and whether
 * they are all RECORD refreshes; *racy_ns its scan's window. */
static uint64_t plan_hashes(fixture *x, size_t *n, int *records,
                            int64_t *racy_ns)
{
	ferry__local l;
	ferry_sync_report r = {0};
	st_plan(&x->t, &l, &r);
	uint64_t h = l.plan->hashed_files;
	*n = l.plan->n;
	*records = 1;
	for (size_t i = 0; i < l.plan->n; i++)
		*records &= l.plan->a[i].kind == FERRY__ACT_RECORD;
	if (racy_ns)
		*racy_ns = l.scan->racy_ns;
	ferry__local_free(&l);
	ferry_sync_report_free(&r);
	return h;
}

/* Past the racy window, so that a new scan finds the entries verifiable. */
static void leave_racy_window(fixture *x)
{
	size_t n;
	int rec;
	int64_t racy;
	plan_hashes(x, &n, &rec, &racy);
	struct timespec ts = {.tv_sec = (time_t)(racy / 1000000000),
	                      .tv_nsec = (long)(racy % 1000000000) + 100000000};
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	nanosleep(&ts, NULL);
}

static int64_t written_ns(fixture *x)
{
	ferry__manifest *m = st_load(&x->t);
	int64_t w = m->written_ns;
	ferry__manifest_free(m);
	return w;
}

static void status_ok(fixture *x, const char *want)
{
	int rc;
	char *out = st_status(&x->t, &rc, NULL);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(out, want);
	free(out);
}

Test(status_refresh, verified_entries_are_stored_and_not_hashed_again)
{
	fixture x;
	setup(&x);
	leave_racy_window(&x);
	size_t n;
	int rec;
	cr_assert_eq(plan_hashes(&x, &n, &rec, NULL), NFILES);
	cr_assert_eq(n, NFILES);
	cr_assert(rec, "only RECORD refreshes");
	int64_t w0 = written_ns(&x);
	status_ok(&x, "");
	cr_assert_neq(written_ns(&x), w0, "status stored the refreshes");
	/* Now nothing is racy: a status and a push hash nothing. */
	cr_assert_eq(plan_hashes(&x, &n, &rec, NULL), 0);
	cr_assert_eq(n, 0);
	w0 = written_ns(&x);
	status_ok(&x, "");
	cr_assert_eq(written_ns(&x), w0, "nothing to store: nothing written");
	cr_assert_eq(st_push(&x.t, 0), 0);
	teardown(&x);
}

Test(status_refresh, nothing_is_stored_when_a_push_would_change_something)
{
	fixture x;
	setup(&x);
	leave_racy_window(&x);
	st_write(x.root, "t/f2", "CONTENT", 0644);
	int64_t w0 = written_ns(&x);
	status_ok(&x, ">fc.t...... f2\n");
	cr_assert_eq(written_ns(&x), w0);
	/* The other four are hashed again: their refresh waits for the push
	 * (which then stores all of it). */
	size_t n;
	int rec;
	cr_assert_eq(plan_hashes(&x, &n, &rec, NULL), NFILES);
	cr_assert_eq(st_push(&x.t, 0), 1);
	/* f2, just written, is racily clean now; the others are not. */
	cr_assert_eq(plan_hashes(&x, &n, &rec, NULL), 1);
	teardown(&x);
}

Test(status_refresh, a_held_lock_is_not_waited_for)
{
	fixture x;
	setup(&x);
	leave_racy_window(&x);
	ferry__local l;
	ferry_sync_report r = {0};
	st_plan(&x.t, &l, &r);
	ferry__lock *lock;
	char err[256];
	cr_assert_eq(ferry__lock_acquire(&lock, l.paths.lock, 0, NULL, NULL,
	                                 err, sizeof(err)),
	             0, "%s", err);
	int64_t w0 = written_ns(&x);
	status_ok(&x, "");
	cr_assert_eq(written_ns(&x), w0, "a locked target is left alone");
	ferry__lock_release(lock);
	status_ok(&x, "");
	cr_assert_neq(written_ns(&x), w0);
	ferry__local_free(&l);
	ferry_sync_report_free(&r);
	teardown(&x);
}
