/* status.h - the local half of a push, shared by ferry_sync_status and the
 * push executor: options checked, target paths found, manifest loaded,
 * excludes compiled, sources scanned and the plan built and finished. */
#ifndef FERRY_SYNC_STATUS_H
#define FERRY_SYNC_STATUS_H

#include <stddef.h>

#include "ferry.h"
#include "sync/exclude.h"
#include "sync/manifest.h"
#include "sync/plan.h"
#include "sync/scan.h"
#include "sync/target.h"

typedef struct ferry__local {
	ferry__sync_paths paths;
	ferry__excludes *ex;
	ferry__manifest *m; /* as loaded (empty with opts->force) */
	ferry__scan *scan;
	ferry__plan *plan;
} ferry__local;

/* ferry__local_plan flags */
#define FERRY__LOCAL_KEEP_UNCHANGED 0x1u /* ferry__plan_opts.keep_unchanged */
#define FERRY__LOCAL_NO_FINISH                                                 \
	0x2u /* leave ferry__plan_finish to the                                \
	      * caller (verify: add remote-only                                \
	      * deletions, promote first) */

/* Everything up to a finished plan: target paths, excludes, the manifest
 * (empty with opts->force), the scan and the plan.  user/host/port name the
 * target as ferry__target_string takes them (a session's s->user, s->host,
 * s->port give the same key).  Takes no lock: a pushing caller takes
 * ferry__lock_acquire(l->paths.lock) first (paths: ferry__sync_paths_new).
 * Adds to report: files_scanned, dirs_scanned, ms_scan, ms_manifest,
 * ms_plan and per-file errors.  0, or FERRY_EINVALID / FERRY_ENOMEM /
 * FERRY_ENOTFOUND with errmsg; on error *l is left empty. */
int ferry__local_plan(ferry__local *l, const char *user, const char *host,
                      int port, const ferry_sync_opts *opts, unsigned flags,
                      ferry_sync_report *report, char *errmsg,
                      size_t errmsg_size);
void ferry__local_free(ferry__local *l);

#endif
