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

/* Everything up to a finished plan.  user/host/port name the target (as
 * ferry__target_string takes them).  keep_unchanged: see
 * ferry__plan_opts.  Fills report's files_scanned, dirs_scanned, ms_scan,
 * ms_manifest, ms_plan and its per-file errors.  0, or FERRY_EINVALID /
 * FERRY_ENOMEM / FERRY_ENOTFOUND with errmsg; on error *l is freed. */
int ferry__local_plan(ferry__local *l, const char *user, const char *host,
                      int port, const ferry_sync_opts *opts, int keep_unchanged,
                      ferry_sync_report *report, char *errmsg,
                      size_t errmsg_size);
void ferry__local_free(ferry__local *l);

#endif
