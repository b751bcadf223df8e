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
	/* A mapping push: per mapping its local path, remote path and own
	 * excludes, as the scan takes them. */
	const char **msrc, **mdst;
	ferry__excludes **mex;
	size_t nmap;
} ferry__local;

/* The stages, in order; each returns 0 or a FERRY_E* with errmsg set, and
 * leaves what it made in *l for ferry__local_free.  ferry_sync runs them
 * one by one (it takes the target's lock, ferry__lock_acquire on
 * l->paths.lock, between open and load, and talks to the remote between
 * scan, build and finish); ferry_sync_status runs them all through
 * ferry__local_plan, so both get the same checks, messages and plan. */
int ferry__local_check(const ferry_sync_opts *opts, char *errmsg,
                       size_t errmsg_size);
/* The caller's options as the current version (an older struct's later
 * fields at their defaults); out->version is 0 when in is NULL or of a
 * version this library does not know, so that the checks refuse it. */
void ferry__sync_opts_copy(ferry_sync_opts *out, const ferry_sync_opts *in);
/* Target paths (user/host/port as ferry__target_string takes them) and
 * the compiled excludes.  Clears *l first. */
int ferry__local_open(ferry__local *l, const char *user, const char *host,
                      int port, const ferry_sync_opts *opts, char *errmsg,
                      size_t errmsg_size);
/* The manifest (empty with opts->force); adds to report->ms_manifest. */
int ferry__local_load(ferry__local *l, const ferry_sync_opts *opts,
                      ferry_sync_report *report, char *errmsg,
                      size_t errmsg_size);
int ferry__local_scan(ferry__local *l, const ferry_sync_opts *opts,
                      ferry_sync_report *report, char *errmsg,
                      size_t errmsg_size);
/* ferry__plan_build (keep_unchanged: ferry__plan_opts.keep_unchanged);
 * adds to report->ms_scan and per-file errors. */
int ferry__local_build(ferry__local *l, const ferry_sync_opts *opts,
                       int keep_unchanged, ferry_sync_report *report,
                       char *errmsg, size_t errmsg_size);
/* ferry__plan_finish; adds to report->ms_plan. */
int ferry__local_finish(ferry__local *l, ferry_sync_report *report,
                        char *errmsg, size_t errmsg_size);
/* Sets report->files_scanned and dirs_scanned from the scan. */
void ferry__local_counts(const ferry__local *l, ferry_sync_report *report);

/* ferry__local_plan flags */
#define FERRY__LOCAL_KEEP_UNCHANGED 0x1u /* ferry__plan_opts.keep_unchanged */
#define FERRY__LOCAL_NO_FINISH                                                 \
	0x2u /* leave ferry__plan_finish to the                                \
	      * caller (verify: add remote-only                                \
	      * deletions, promote first) */

/* All the stages, for ferry_sync_status (flags 0) and tests: takes no lock.
 * On error *l is left empty. */
int ferry__local_plan(ferry__local *l, const char *user, const char *host,
                      int port, const ferry_sync_opts *opts, unsigned flags,
                      ferry_sync_report *report, char *errmsg,
                      size_t errmsg_size);
void ferry__local_free(ferry__local *l);

#endif
