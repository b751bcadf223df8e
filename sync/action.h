/* action.h - one step of a push (ferry__action), and who may change what.
 *
 * A plan's actions live in one array (ferry__plan.a) that several modules
 * touch in turn.  Each field below belongs to one of these groups, and only
 * the module named may write it:
 *
 *   what to do    written by the planner (sync/plan.c) while it builds;
 *                 afterwards changed only through ferry__plan_promote and
 *                 ferry__plan_add_delete (the verifier, sync/verify.c), so
 *                 that the plan's totals stay right.
 *   order         phase: set by ferry__plan_finish (sync/plan.c).
 *   outcome       committed, error, and the upload's hash (entry.hash,
 *                 FERRY__ME_HASHED in entry.flags, FERRY__ACT_UNHASHED):
 *                 written by the executor only, through the functions at
 *                 the end of this file (sync/commit.c for the remote
 *                 requests; sync/verify.c for removals the listing shows
 *                 already done; sync/push.c for the marker).
 *
 * Everything else only reads, through const pointers: the manifest update
 * (ferry__plan_apply, sync/apply.c), the reports and itemized lines
 * (sync/itemize.c, sync/report.c), and status. */
#ifndef FERRY_SYNC_ACTION_H
#define FERRY_SYNC_ACTION_H

#include <stdint.h>
#include <sys/stat.h>

#include "ferry.h"
#include "hash.h"
#include "sync/manifest.h"

enum {
	FERRY__ACT_MKDIR = FERRY_CHANGE_MKDIR,
	FERRY__ACT_UPLOAD = FERRY_CHANGE_UPLOAD,
	FERRY__ACT_META = FERRY_CHANGE_META,
	FERRY__ACT_SYMLINK = FERRY_CHANGE_SYMLINK,
	FERRY__ACT_DELETE = FERRY_CHANGE_DELETE, /* a file or a symlink */
	FERRY__ACT_RMDIR = FERRY_CHANGE_RMDIR,
	FERRY__ACT_RECORD = 6, /* nothing remote: refresh the manifest entry */
	FERRY__ACT_NONE = 7    /* unchanged (kept only with keep_unchanged) */
};

/* ferry__action.flags, beyond FERRY_CHANGED_* (ferry.h) */
#define FERRY__CHANGED_DIR     FERRY_CHANGED_DIR /* the path is a directory */
#define FERRY__ACT_QUIET       0x100u /* internal fix-up, not reported */
#define FERRY__ACT_EXTRANEOUS  0x200u /* a --delete deletion */
#define FERRY__ACT_REMOTE_ONLY 0x400u /* found by listing the remote */
#define FERRY__ACT_UNHASHED                                                    \
	0x800u /* entry.hash to be computed by the                             \
	        * executor as it reads the file */

typedef struct ferry__action {
	/* -- what to do: the planner (plan.c), then ferry__plan_promote -- */

	/* The manifest entry to record once the action is committed
	 * (path = destination path; hash valid when FERRY__ME_HASHED).  For
	 * a deletion: the entry removed (path and type).  The executor may
	 * set the hash of what it uploaded (ferry__action_read_done,
	 * ferry__action_uploaded). */
	ferry__mentry entry;
	const char *link; /* FERRY__ACT_SYMLINK: target, NUL-terminated */
	uint32_t link_len;
	/* FERRY_CHANGED_* | FERRY__CHANGED_DIR | FERRY__ACT_*; the executor
	 * changes only FERRY__ACT_UNHASHED, the verifier may add QUIET and
	 * drop EXTRANEOUS of a removal already done (ferry__action_done). */
	uint32_t flags;
	/* FERRY__ACT_MKDIR: the mode to create with.  When the final mode
	 * lacks owner rwx, this adds it and a quiet phase-7 META sets the
	 * final mode once the directory is filled. */
	uint32_t create_mode;
	uint16_t src; /* source to read from: ferry__scan_open(scan, src,
	               * entry.path, entry.path_len, ...) */
	uint8_t kind; /* FERRY__ACT_* */

	/* -- order: ferry__plan_finish -- */
	uint8_t phase;

	/* -- outcome: the executor (commit.c, verify.c, push.c) -- */
	uint8_t committed; /* done remotely: ferry__plan_apply records it */
	int error;         /* FERRY_E* when it failed */
} ferry__action;

static inline int ferry__action_is_removal(const ferry__action *a)
{
	return a->kind == FERRY__ACT_DELETE || a->kind == FERRY__ACT_RMDIR;
}

/* The outcome, for the executor.  Done remotely. */
static inline void ferry__action_commit(ferry__action *a)
{
	a->committed = 1;
}
/* Failed with code (a FERRY_E*). */
static inline void ferry__action_fail(ferry__action *a, int code)
{
	a->error = code;
}
/* A removal the remote listing shows already done: committed without a
 * request, and not reported (it is no change the user made). */
static inline void ferry__action_done(ferry__action *a)
{
	a->flags &= ~(uint32_t)FERRY__ACT_EXTRANEOUS;
	a->flags |= FERRY__ACT_QUIET;
	a->committed = 1;
}
/* An upload committed: h is the hash of what was sent, when it is known
 * to be the planned file's (else NULL: the next push hashes it again, and
 * the entry's chunk list goes).  The chunk list is the caller's to set
 * (ferry__plan_keep_chunks). */
static inline void ferry__action_uploaded(ferry__action *a,
                                          const ferry__hash *h)
{
	a->committed = 1;
	if (h) {
		a->entry.hash = *h;
		a->entry.flags |= FERRY__ME_HASHED;
		a->flags &= ~(uint32_t)FERRY__ACT_UNHASHED;
	} else {
		a->entry.chunks = NULL;
		a->entry.nchunks = 0;
		a->flags |= FERRY__ACT_UNHASHED;
	}
}

/* The executor read an upload's file (ferry__scan_open) to send it: record
 * the hash of what it read when the file's stat before and after the read
 * equals the planned entry and nread its size; otherwise leave the entry
 * unhashed (the next push then compares by stat and hashes again). */
void ferry__action_read_done(ferry__action *a, const ferry__hash *h,
                             const struct stat *before,
                             const struct stat *after, uint64_t nread);

/* Reporting (sync/itemize.c) ----------------------------------------------- */

/* 1 when a is reported to the user (not NONE, RECORD or quiet). */
int ferry__action_visible(const ferry__action *a);
/* The public view of an action (pointers into the plan). */
void ferry__action_change(const ferry__action *a, ferry_change *c);
/* Add a (visible) action to r's counts by its kind. */
void ferry__action_count(const ferry__action *a, ferry_sync_report *r);

/* ferry_change_itemize (lib/ferry.h) is implemented in sync/itemize.c:
 * rsync's --itemize-changes line; FERRY__CHANGED_DIR in flags makes it
 * ".d"/"dir/". */

#endif
