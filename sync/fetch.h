/* fetch.h - the pull executor: a finished pull plan (sync/pull.c) carried
 * out on the local destination, the files fetched over SFTP pipelined.
 *
 * In plan order (ferry__action.phase): leftover temporary names removed;
 * local entries in the way of another type removed; directories made
 * (parents first, with the owner's rwx until the end); symlinks and
 * metadata-only updates; then every file fetched at once
 * (ferry__sftp_download: OPEN, then READs + CLOSE: 2 round trips for any
 * number of files), each written to a temporary name in its directory
 * created O_EXCL|O_NOFOLLOW with its final mode, flushed when owner-only
 * (or fsync_all), its mode and mtime set on the descriptor, then renamed
 * over its name -- all of that by the writer thread of sync/lwrite.h,
 * the temporary made as the OPEN goes out; then, when every file is over
 * and nothing failed, the deletions (files, then
 * directories deepest first); last the modes and mtimes of directories,
 * deepest first.  Every path is reached through sync/ltree.h.
 *
 * Files may be fetched early, while the remote walk runs (a cold pull:
 * the files of a directory as soon as its listing is in): the executor
 * lives from ferry__fetch_new, before the plan, and the run waits for
 * those too; the plan marks their actions FERRY__ACT_EARLY. */
#ifndef FERRY_SYNC_FETCH_H
#define FERRY_SYNC_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "sftp.h"
#include "sync/action.h"
#include "sync/remote.h"

/* ferry__action.phase of a pull */
enum {
	FERRY__PH_REMOVE = 0, /* in the way of another type */
	FERRY__PH_MKDIR,
	FERRY__PH_LINK,
	FERRY__PH_META,
	FERRY__PH_FETCH,
	FERRY__PH_DELETE,
	FERRY__PH_RMDIR,
	FERRY__PH_DIRMETA,
	FERRY__PH_COUNT
};

/* ferry__action.flags of a pull, beyond action.h's */
#define FERRY__ACT_CHECK 0x1000u /* same size and mtime: compare content */
#define FERRY__ACT_EARLY 0x2000u /* fetched by ferry__fetch_early: skip */

typedef struct ferry__fetch_opts {
	ferry__sftp *sf;
	int dfd;          /* the destination */
	ferry__action *a; /* in execution order (set before the run) */
	size_t n;
	const ferry__rlist *rl; /* remote paths of the files */
	char *const *temps;     /* leftover temporary names to remove */
	size_t ntemps;
	int deletions;        /* the extraneous deletions may run */
	int check_only;       /* a dry run: only FERRY__ACT_CHECK, no write */
	uint64_t bytes_total; /* of the files fetched (progress) */
	const ferry_sync_opts *o;
	ferry_sync_report *report;
} ferry__fetch_opts;

typedef struct ferry__fetch_result {
	int fatal; /* FERRY_E* that stopped the pull as a whole, else 0 */
	char fatal_msg[700];
	uint64_t failed, not_done;
	uint64_t bytes; /* content bytes written */
} ferry__fetch_result;

/* ferry__sftp_run until done(ctx), failing (FERRY_ETIMEOUT) only when no
 * reply at all came for FERRY__STALL_MS: every wait has a deadline, and
 * the session's idle timeout covers a dead connection. */
#define FERRY__STALL_MS 120000
int ferry__pull_wait(ferry__sftp *sf, int (*done)(void *ctx), void *ctx);

typedef struct ferry__fetch ferry__fetch;

/* The executor on o (which must outlive it; a, n and what follows them
 * are read by the run).  0 or FERRY_ENOMEM. */
int ferry__fetch_new(ferry__fetch **out, const ferry__fetch_opts *o);
/* Make the directory at destination path (n bytes, NUL-terminated) in
 * its parent, or find it there (mode: as a MKDIR's, owner rwx added):
 * queued to the writer, before the files fetched in it; a failure is the
 * plan's MKDIR's to report (the files fail too).  0, or -1 with errno
 * (ENOMEM). */
int ferry__fetch_mkdir(ferry__fetch *f, const char *path, size_t n,
                       uint32_t mode);
/* Start fetching the file of upload a now (a stays where it is until the
 * run is over): 1 started, 0 not (no room: the caller leaves it to the
 * plan; or failed, a->error set and reported). */
int ferry__fetch_early(ferry__fetch *f, ferry__action *a);
/* Run the plan.  Actions get committed or error set (per-file errors to
 * the report and log); a CHECK found equal becomes META or NONE.  Every
 * fetch, early ones too, is over when it returns.  0 or res->fatal. */
int ferry__fetch_run(ferry__fetch *f, ferry__fetch_result *res);
/* What is still in flight (a pull that failed before its run) is
 * cancelled, its temporary files removed. */
void ferry__fetch_free(ferry__fetch *f);

#endif
