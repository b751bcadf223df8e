#include "sync/report.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "error.h"
#include "sync/path.h"

static char *escaped(const char *path, size_t n)
{
	size_t len = ferry__path_escape(NULL, 0, path, n);
	char *e = ferry__malloc(len + 1);
	if (e)
		ferry__path_escape(e, len + 1, path, n);
	return e;
}

static void vlog_path(ferry_log_fn log, void *log_ctx, int level,
                      const char *path, size_t n, const char *msg)
{
	if (!log)
		return;
	char small[512];
	if (!path) {
		log(log_ctx, level, msg);
		return;
	}
	size_t len = ferry__path_escape(NULL, 0, path, n);
	char *e = len < sizeof(small) ? small : escaped(path, n);
	if (e == small)
		ferry__path_escape(small, sizeof(small), path, n);
	char *line = ferry__asprintf("%s: %s", e ? e : "?", msg);
	log(log_ctx, level, line ? line : msg);
	ferry__free(line);
	if (e != small)
		ferry__free(e);
}

int ferry__report_error(ferry_sync_report *r, ferry_log_fn log, void *log_ctx,
                        const char *path, size_t n, int code, const char *fmt,
                        ...)
{
	char msg[FERRY_ERRMSG_SIZE];
	FERRY__FORMAT(msg, fmt);
	vlog_path(log, log_ctx, FERRY_LOG_WARN, path, n, msg);
	if (!r)
		return 0;
	ferry_file_error *v =
	        ferry__reallocarray(r->errors, r->error_count + 1, sizeof(*v));
	if (!v)
		return FERRY_ENOMEM;
	r->errors = v;
	ferry_file_error *e = &v[r->error_count];
	e->code = code;
	e->path = ferry__malloc(n + 1);
	e->message = ferry__strdup(msg);
	if (!e->path || !e->message) {
		ferry__free(e->path);
		ferry__free(e->message);
		return FERRY_ENOMEM;
	}
	if (n)
		memcpy(e->path, path, n);
	e->path[n] = '\0';
	r->error_count++;
	return 0;
}

void ferry__report_warn(ferry_log_fn log, void *log_ctx, int level,
                        const char *path, size_t n, const char *fmt, ...)
{
	if (!log)
		return;
	char msg[FERRY_ERRMSG_SIZE];
	FERRY__FORMAT(msg, fmt);
	vlog_path(log, log_ctx, level, path, n, msg);
}

void ferry_sync_report_free(ferry_sync_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->error_count; i++) {
		ferry__free(r->errors[i].path);
		ferry__free(r->errors[i].message);
	}
	ferry__free(r->errors);
	memset(r, 0, sizeof(*r));
}

int64_t ferry__sync_realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
