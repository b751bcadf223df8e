/* commit.h - the push executor: every action of a finished plan as
 * pipelined SFTP requests, each file by the commit protocol of DESIGN.md.
 *
 * First flight, in this order (the server executes requests in arrival
 * order): removals of leftover temporary names; mkdir -p of a missing
 * destination; the checks of every directory the push goes through and
 * did not make (LSTAT + READLINK; STAT of the destination when anything
 * is below it); removals a type change needs (deepest first); mkdirs
 * (parents first, each followed by a SETSTAT of its exact mode, as the
 * server's umask applies to MKDIR); for every upload the OPEN of
 * ".NAME.ferry-XXXXXX" at the top of the destination with
 * CREAT|EXCL|WRITE and the final permissions; SETSTATs of metadata-only
 * updates; SYMLINKs to temporary names; the marker.  Nothing is sent for
 * a path below a directory before that directory is known: made by this
 * push (its MKDIR succeeded, and a directory's MKDIR waits for its
 * parent's) or checked to be a real directory that other accounts cannot
 * write to (unless allow_shared_dirs) -- until then the request waits
 * (parked).  The upload block chains WRITEs + FSETSTAT + fsync + CLOSE
 * (second flight), and the renames onto the final names follow (third
 * flight).  Then, when everything above succeeded, the deletions (files,
 * then directories deepest first) and the directories' modes and times.
 *
 * Round trips: 3 for any number of changed files (4 with deletions); 1
 * for metadata-only updates at the top, 2 below; 2 for symlinks; plus one
 * per level of new directories.
 *
 * A changed file of FERRY__DELTA_MIN_SIZE bytes or more whose old version
 * the manifest vouches for (with chunk lists for both) is a delta upload
 * (lib/sftp.h): its temporary is rebuilt from the old remote file by
 * copy-data for every chunk found again, and only the new chunks are
 * read and written; 4 round trips.  The plan's hash and chunks are
 * recorded once the local file is seen unchanged since it was hashed.
 * Not with checksum or verify, which do not trust the remote copy.
 *
 * Every temporary name is added to the journal, which is saved durably
 * before the first request is sent.  The content is hashed as it is read
 * for the upload, so the manifest records the hash of exactly what was
 * sent. */
#ifndef FERRY_SYNC_COMMIT_H
#define FERRY_SYNC_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "sftp.h"
#include "sync/journal.h"
#include "sync/plan.h"
#include "sync/remote.h"

/* Uploads of this size and up are striped over several SFTP channels
 * (ferry_sync_opts.streams); automatically FERRY__STREAMS_AUTO of them
 * when the connection took FERRY__STRIPE_RTT_MS or more. */
#define FERRY__STRIPE_MIN    ((uint64_t)32 << 20)
#define FERRY__STREAMS_AUTO  4u
#define FERRY__STRIPE_RTT_MS 2.0
/* Small uploads of this many bytes in all are spread over the same
 * channels (four of the server's 2 MiB windows). */
#define FERRY__SPREAD_MIN_BYTES ((uint64_t)8 << 20)

typedef struct ferry__commit_opts {
	ferry__sftp *sf;
	ferry_session *s;   /* errors; may be NULL */
	ferry__plan *p;     /* finished */
	const char *dest;   /* remote path of the destination */
	int dest_missing;   /* create it and its missing parents */
	uint32_t dest_mode; /* when it is made */
	int dest_times;     /* set its mtime when the push wrote into it */
	int64_t dest_mtime_ns;
	char *const *cleanup; /* leftover temporary names to remove first */
	size_t ncleanup;
	const uint8_t *marker; /* write .ferry-id with this id (or NULL) */
	int fsync_all;
	ferry__journal *journal; /* the temporary names are added to it */
	const ferry_sync_opts *o;
	ferry_sync_report *report;
} ferry__commit_opts;

typedef struct ferry__commit_result {
	int fatal; /* FERRY_E* that stopped the push as a whole, else 0 */
	char fatal_msg[700];
	uint64_t failed;        /* actions that failed */
	uint64_t remote_errors; /* of those, failures the remote reported */
	/* ... of which show the remote is not what the manifest says (no
	 * such file, exists, a failure such as a rename onto a directory):
	 * the push verifies and repairs at once. */
	uint64_t surprises;
	uint64_t not_done; /* actions skipped (deletions after failures) */
	int marker_written;
	int rename_fallback; /* the server lacks posix-rename */
	int links_replaced;  /* symlinks made by remove + symlink */
	int fsync_missing;   /* the server lacks fsync@openssh.com */
	int shared;          /* wrote below a directory others may write to
	                        (allow_shared_dirs): the manifest must not vouch */
	uint64_t bytes_sent, fsyncs;
	uint64_t bytes_copied; /* by copy-data, for delta uploads */
	/* Temporary names that may still exist on the remote. */
	char **unresolved;
	size_t nunresolved;
} ferry__commit_result;

/* Run the plan.  Actions get committed or error set; per-file errors go to
 * the report and its log, visible actions are counted in the report and
 * passed to on_change (in plan order) at the end.  0 when the run went
 * through (see res->failed), else res->fatal. */
int ferry__commit_run(const ferry__commit_opts *o, ferry__commit_result *res);
void ferry__commit_result_free(ferry__commit_result *res);

#endif
