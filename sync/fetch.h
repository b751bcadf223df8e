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
 * over its name; then, when nothing failed, the deletions (files, then
 * directories deepest first); last the modes and mtimes of directories,
 * deepest first.  Every path is reached through sync/ltree.h. */
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

typedef struct ferry__fetch_opts {
	ferry__sftp *sf;
	int dfd;          /* the destination */
	ferry__action *a; /* in execution order */
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

/* Run it.  Actions get committed or error set (per-file errors to the
 * report and log); a CHECK found equal becomes META or NONE.  0 or
 * res->fatal. */
int ferry__fetch_run(const ferry__fetch_opts *o, ferry__fetch_result *res);

#endif
