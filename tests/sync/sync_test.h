/* sync_test.h - helpers shared by the tests of sync/: trees on disk, a
 * "push" that commits a whole plan to the manifest (no network), and the
 * status lines of a tree. */
#ifndef FERRY_SYNC_TEST_H
#define FERRY_SYNC_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "sync/manifest.h"
#include "sync/plan.h"
#include "sync/scan.h"
#include "sync/status.h"

/* Growing text buffer. */
typedef struct st_text {
	char *s;
	size_t len, cap;
} st_text;
void st_text_add(st_text *t, const char *s, size_t n);
void st_text_free(st_text *t);

/* A new empty directory (fx_tmpdir); asserts. Caller frees. */
char *st_dir(const char *tag);
/* Write a file (parents must exist); asserts. */
void st_write(const char *dir, const char *rel, const char *content,
              unsigned mode);
void st_mkdir(const char *dir, const char *rel, unsigned mode);
char *st_path(const char *dir, const char *rel);
/* Make entries under dir, in order (NULL ends spec): "rel/" a directory
 * (0755), "rel=content" a file (0644), "rel->target" a symlink; asserts. */
void st_tree(const char *dir, const char *const *spec);
#define ST_TREE(dir, ...) st_tree(dir, (const char *const[]){__VA_ARGS__, NULL})
/* Set mtime of dir/rel (seconds, nanoseconds). */
void st_set_mtime(const char *dir, const char *rel, int64_t sec, long nsec);

/* Options of a test target: host "h.example", user "u", dest "dst",
 * state directory as given, sources as given. */
typedef struct st_target {
	const char *sources[4];
	size_t nsrc;
	const char *state;
	ferry_sync_opts o;
	ferry_session_opts conn;
	st_text log;
} st_target;
void st_target_init(st_target *t, const char *state, const char *src);

/* Plan (ferry__local_plan) for t, asserting success. */
void st_plan(st_target *t, ferry__local *l, ferry_sync_report *r);
/* Commit every action of a plan for t (hashing uploads locally), apply,
 * and save the manifest; stat_ns_shift moves the manifest's stat_ns (e.g.
 * +1 hour makes every entry not racily clean).  Returns the action count
 * (visible ones). */
size_t st_push(st_target *t, int64_t stat_ns_shift);
/* ferry_sync_status for t: the itemized lines, each followed by '\n'.
 * *rc gets its return value; r (may be NULL) the report. Caller frees. */
char *st_status(st_target *t, int *rc, ferry_sync_report *r);
/* Load t's manifest (asserting the load call succeeds). */
ferry__manifest *st_load(st_target *t);

/* Assert the change counts of a report, in this order: files uploaded,
 * updated, deleted, directories created, deleted, symlinks created;
 * ST_ANY leaves one unchecked. */
#define ST_ANY UINT64_MAX
void st_assert_changes(const ferry_sync_report *r, uint64_t files_uploaded,
                       uint64_t files_updated, uint64_t files_deleted,
                       uint64_t dirs_created, uint64_t dirs_deleted,
                       uint64_t symlinks_created);

/* Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH so that file permissions
 * apply to root too (tests run as root in containers). */
void st_drop_dac(void);

#define ST_HOUR ((int64_t)3600 * 1000000000)

#endif
