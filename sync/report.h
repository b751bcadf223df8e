/* report.h - filling a ferry_sync_report: per-file errors and warnings.
 * Shared by the local side (scan, plan, status) and the push executor. */
#ifndef FERRY_SYNC_REPORT_H
#define FERRY_SYNC_REPORT_H

#include <stddef.h>

#include "ferry.h"

/* Append a per-file error to r (which may be NULL: then only logged).
 * path is a raw relative or local path of n bytes (any bytes); the message
 * is also sent to log at FERRY_LOG_WARN as "<escaped path>: <message>".
 * Returns 0 or FERRY_ENOMEM (the error is then only logged). */
int ferry__report_error(ferry_sync_report *r, ferry_log_fn log, void *log_ctx,
                        const char *path, size_t n, int code, const char *fmt,
                        ...) __attribute__((format(printf, 7, 8)));

/* A warning that is not an error: only logged, with the path escaped.  path
 * may be NULL. */
void ferry__report_warn(ferry_log_fn log, void *log_ctx, int level,
                        const char *path, size_t n, const char *fmt, ...)
        __attribute__((format(printf, 6, 7)));

/* Nanoseconds of CLOCK_REALTIME (file-time scale). */
int64_t ferry__sync_realtime_ns(void);

#endif
