/* plan.h - change detection and the ordered plan of a push.
 *
 * ferry__plan_build runs the scan and compares each item with the manifest
 * as it comes (nothing is kept for unchanged items, so the no-change
 * decision costs one stat walk and the manifest):
 *
 *  - a file is unchanged when type, mode, size, mtime, ctime and inode
 *    match its entry and it is not racily clean (mtime or ctime within
 *    scan->racy_ns of the manifest's stat_ns); otherwise it is hashed
 *    (XXH3-128): same content -> a metadata update when mode or mtime
 *    differ, else only a manifest refresh (FERRY__ACT_RECORD); different
 *    content -> an upload.  checksum hashes every file that has an entry.
 *  - a directory changes only by mode; a symlink by its target.
 *  - manifest entries the scan did not see are deleted when
 *    delete_extraneous is set (only below synced directories, never when
 *    excluded); a path whose type changed has its old entry (and subtree)
 *    removed first, whatever delete_extraneous says.
 *
 * ferry__plan_finish applies the deletion policy (skip all when the scan
 * was incomplete or a file could not be read, or a source root is empty;
 * max_delete) and orders the actions:
 *
 *   0 removals for type changes (deepest first)   4 symlinks
 *   1 mkdir (parents first)                       5 file and symlink deletes
 *   2 uploads                                     6 rmdir (deepest first)
 *   3 file metadata updates                       7 directory modes, records
 *
 * A push (the executor, sync/push.c) goes through the stages of the local
 * half (sync/status.h), the same ones ferry_sync_status runs in one go
 * through ferry__local_plan, so status and push plan alike:
 *
 *   ferry__local_check, ferry__local_open      options, target paths, excludes
 *   ferry__lock_acquire(paths.lock)             held to the end (not dry-run)
 *   ferry__local_load, ferry__local_scan        manifest, scan (while the
 *                                               remote marker read is out)
 *   ferry__local_build                          the plan; keep_unchanged when
 *       the remote must be verified: then ferry__verify_plan from the
 *       listing (ferry__plan_find / _promote / _add_delete), and
 *   ferry__local_finish                         ferry__plan_finish
 *   for each action in order: do it remotely (an upload reads the file
 *       with ferry__scan_open and reports what it read with
 *       ferry__action_read_done), set committed or error, report it
 *       (ferry__action_change + on_change)
 *   if ferry__plan_needs_save (or the marker changed): ferry__plan_apply,
 *       set m->marker / has_marker, ferry__manifest_save
 *   ferry__lock_release
 *
 * so the new manifest is the old one with exactly the committed actions
 * (and the RECORD refreshes) applied. */
#ifndef FERRY_SYNC_PLAN_H
#define FERRY_SYNC_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "ferry.h"
#include "sync/action.h"
#include "sync/arena.h"
#include "sync/exclude.h"
#include "sync/manifest.h"
#include "sync/scan.h"

typedef struct ferry__plan_opts {
	int checksum;          /* hash every file that has an entry */
	int delete_extraneous; /* --delete */
	int delete_tracked;    /* only what the manifest recorded: never a
	                          remote-only entry (FERRY_DELETE_TRACKED) */
	long long max_delete;  /* 0: no limit; > 0: refuse more; < 0: none */
	int keep_unchanged;    /* record FERRY__ACT_NONE actions (verify) */
	const ferry__excludes *excludes; /* protect excluded remote paths */
	ferry_log_fn log;
	void *log_ctx;
	ferry_sync_report *report; /* per-file errors appended; may be NULL */
} ferry__plan_opts;

/* Why deletions were dropped (ferry__plan.deletions_skipped). */
enum {
	FERRY__DEL_OK = 0,
	FERRY__DEL_IOERR = 1, /* a source, directory or file unreadable */
	FERRY__DEL_EMPTY = 2, /* a source root is missing or empty: refused */
	FERRY__DEL_NONE = 3,  /* max_delete < 0 */
	FERRY__DEL_MAX = 4    /* more than max_delete: refused (an error) */
};

typedef struct ferry__plan_set ferry__plan_set; /* private */

typedef struct ferry__plan {
	ferry__action *a; /* in execution order after ferry__plan_finish */
	size_t n, cap;
	ferry__arena arena; /* paths and link targets of the actions */
	ferry__plan_opts o;
	ferry__scan *scan;  /* borrowed */
	ferry__manifest *m; /* borrowed: the old manifest */
	int64_t stat_ns;    /* the scan's start: stat_ns of the new manifest */
	int64_t racy_ns;    /* the scan's racy window, once it is done */
	int io_error;       /* a file could not be read for hashing */
	int deletions_skipped; /* FERRY__DEL_* */
	uint64_t deletions_dropped;
	char refused[256];     /* deletions refused, the push with them (EMPTY,
	                        * MAX): why; else "" */
	uint64_t bytes_upload; /* sum of upload sizes */
	uint64_t hashed_files, hashed_bytes;
	int finished;
	void *hashbuf; /* for hashing files, grown on demand */
	size_t hashbuf_size;
	ferry__plan_set *seen; /* paths seen, when several sources */
	uint32_t *index;       /* lazy path index for ferry__plan_find */
	size_t index_mask;
} ferry__plan;

/* Scan (ferry__scan_run) and compare with m.  scan and m must outlive the
 * plan; m's entries get FERRY__ME_SEEN set.  0, FERRY_ENOMEM or FERRY_EIO;
 * per-file problems go to o->report and o->log. */
int ferry__plan_build(ferry__plan **out, ferry__scan *scan, ferry__manifest *m,
                      const ferry__plan_opts *o);
void ferry__plan_free(ferry__plan *p);

/* Verify mode, between build and finish ---------------------------------- */

/* The action of a destination path (any kind, NONE included), or NULL. */
ferry__action *ferry__plan_find(ferry__plan *p, const char *path, size_t n);
/* Turn a into kind with flags added: e.g. a NONE whose remote copy was
 * found different into FERRY__ACT_UPLOAD, META, MKDIR or SYMLINK; or an
 * upload whose remote copy was found equal into FERRY__ACT_RECORD (then
 * only recorded, unhashed unless its hash is known). */
void ferry__plan_promote(ferry__plan *p, ferry__action *a, int kind,
                         unsigned flags);
/* Make the removal a remove the remote's type (FERRY__T_*) of its path:
 * FERRY__ACT_RMDIR for a directory, FERRY__ACT_DELETE otherwise. */
void ferry__plan_retype_removal(ferry__plan *p, ferry__action *a, int type);
/* A remote path to remove (type FERRY__T_*), e.g. found by listing the
 * remote: with FERRY_CHANGED_TYPE in flags it is a removal that a type
 * change requires (always planned); otherwise an extraneous deletion,
 * planned only with delete_extraneous, inside a synced directory and not
 * excluded (FERRY__ACT_REMOTE_ONLY is added).  0 or FERRY_ENOMEM. */
int ferry__plan_add_delete(ferry__plan *p, const char *path, size_t n, int type,
                           unsigned flags);

/* Deletion policy and order (call once).  0, or FERRY_ENOMEM. */
int ferry__plan_finish(ferry__plan *p);

/* Reporting (sync/itemize.c) --------------------------------------------- */

/* Counts of the visible actions added to r (files_uploaded,
 * files_updated, files_deleted, dirs_created, dirs_deleted,
 * symlinks_created) and on_change called for each, in order. */
void ferry__plan_report(const ferry__plan *p, ferry_sync_report *r,
                        void (*on_change)(void *ctx, const ferry_change *c),
                        void *ctx);

/* Committing (sync/apply.c) ----------------------------------------------- */

/* Hash an upload's local file now (re-opened with ferry__scan_open) and
 * store the result in a->entry, clearing FERRY__ACT_UNHASHED when the file
 * stayed the same while read.  For executors that do not hash as they
 * upload, and for tests.  0 or a FERRY_E* of the open or read. */
int ferry__action_hash_local(ferry__plan *p, ferry__action *a);
/* Give a (hashed: FERRY__ME_HASHED) the chunk list ck of n chunks, copied
 * into the plan; ck (ferry__malloc'd, may be NULL) is freed.  An action
 * without a hash gets none. */
void ferry__plan_keep_chunks(ferry__plan *p, ferry__action *a, ferry__chunk *ck,
                             uint32_t n);

/* 1 when ferry__plan_apply would change the manifest: an action was
 * committed, or a RECORD refreshes an entry. */
int ferry__plan_needs_save(const ferry__plan *p);

/* Make m the manifest after this push: m with every committed action (and
 * every RECORD) applied, entries whose parent directory is not recorded
 * dropped, and stat_ns = p->stat_ns.  Uncommitted actions leave their old
 * entries as they were.  0 or FERRY_ENOMEM (m unchanged). */
int ferry__plan_apply(const ferry__plan *p, ferry__manifest *m);

#endif
