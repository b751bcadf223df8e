#include "sync/status.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "os.h"
#include "sshconfig.h"
#include "sync/path.h"
#include "sync/remote.h"
#include "sync/report.h"

static void set_err(char *errmsg, size_t size, const char *msg)
{
	if (errmsg && size)
		snprintf(errmsg, size, "%s", msg);
}

void ferry__local_free(ferry__local *l)
{
	ferry__plan_free(l->plan);
	ferry__scan_free(l->scan);
	ferry__manifest_free(l->m);
	ferry__excludes_free(l->ex);
	for (size_t i = 0; i < l->nmap; i++)
		ferry__excludes_free(l->mex[i]);
	ferry__free(l->mex);
	ferry__free(l->msrc);
	ferry__free(l->mdst);
	ferry__sync_paths_free(&l->paths);
	memset(l, 0, sizeof(*l));
}

/* "" and "." are the destination itself; otherwise a relative path of
 * valid names (no "..", no empty component). */
static int remote_ok(const char *r)
{
	if (!*r || strcmp(r, ".") == 0)
		return 1;
	size_t n = strlen(r);
	return ferry__path_valid(r, n);
}

static int check_mappings(const ferry_sync_opts *o, char *errmsg,
                          size_t errmsg_size)
{
	if (!o->mappings || o->mapping_count > UINT16_MAX) {
		set_err(errmsg, errmsg_size,
		        "bad mappings (NULL, or more than 65535)");
		return FERRY_EINVALID;
	}
	for (size_t i = 0; i < o->mapping_count; i++) {
		const ferry_mapping *m = &o->mappings[i];
		const char *why = NULL;
		if (!m->local || !*m->local)
			why = "an empty local path";
		else if (!m->remote || !remote_ok(m->remote))
			why = "a remote path that is not relative to the "
			      "destination (absolute, '..' or an empty name)";
		else if (m->exclude_count && !m->excludes)
			why = "exclude_count without excludes";
		for (size_t k = 0; !why && k < m->exclude_count; k++)
			if (!m->excludes[k] || !*m->excludes[k])
				why = "an empty exclude pattern";
		if (why) {
			if (errmsg && errmsg_size)
				snprintf(errmsg, errmsg_size,
				         "mapping %zu (%s -> %s): %s", i,
				         m->local ? m->local : "(null)",
				         m->remote ? m->remote : "(null)", why);
			return FERRY_EINVALID;
		}
	}
	return 0;
}

void ferry__sync_opts_copy(ferry_sync_opts *out, const ferry_sync_opts *in)
{
	static const ferry_sync_opts def = FERRY_SYNC_OPTS_INIT;
	*out = def;
	if (!in || in->version < 1 || in->version > FERRY_SYNC_OPTS_VERSION) {
		out->version = 0;
		return;
	}
	memcpy(out, in, ferry_struct_size(FERRY_STRUCT_SYNC_OPTS, in->version));
	out->version = FERRY_SYNC_OPTS_VERSION;
}

int ferry__local_check(const ferry_sync_opts *o, char *errmsg,
                       size_t errmsg_size)
{
	const char *why = NULL;
	if (!o || o->version != FERRY_SYNC_OPTS_VERSION)
		why = "ferry_sync_opts: bad version (use FERRY_SYNC_OPTS_INIT)";
	else if (o->mapping_count && o->source_count)
		why = "give sources or mappings, not both";
	else if (!o->mapping_count && (!o->sources || o->source_count == 0))
		why = "no source given";
	else if (o->source_count > UINT16_MAX)
		why = "too many sources";
	else if (!o->dest)
		why = "no destination given";
	else if (o->delete_scope != FERRY_DELETE_MIRROR &&
	         o->delete_scope != FERRY_DELETE_TRACKED)
		why = "unknown delete_scope";
	else if ((why = ferry__marker_check(o->marker)))
		;
	else if (o->mapping_count)
		return check_mappings(o, errmsg, errmsg_size);
	for (size_t i = 0; !why && i < o->source_count; i++)
		if (!o->sources[i] || !*o->sources[i])
			why = "empty source path";
	if (!why)
		return 0;
	set_err(errmsg, errmsg_size, why);
	return FERRY_EINVALID;
}

int ferry__local_open(ferry__local *l, const char *user, const char *host,
                      int port, const ferry_sync_opts *opts, char *errmsg,
                      size_t errmsg_size)
{
	memset(l, 0, sizeof(*l));
	int error = ferry__sync_paths_new(&l->paths, user, host, port,
	                                  opts->dest, opts->state_dir);
	if (error) {
		set_err(errmsg, errmsg_size,
		        error == FERRY_ENOTFOUND
		                ? "no state directory: set HOME or "
		                  "XDG_STATE_HOME, or give a state directory"
		        : error == FERRY_EINVALID ? "no host or destination"
		                                  : "out of memory");
		return error;
	}
	if ((error = ferry__sync_paths_trusted(&l->paths, errmsg, errmsg_size)))
		return error;
	return ferry__excludes_from_opts(&l->ex, opts, errmsg, errmsg_size);
}

int ferry__local_load(ferry__local *l, const ferry_sync_opts *opts,
                      ferry_sync_report *report, char *errmsg,
                      size_t errmsg_size)
{
	int error;
	double t = ferry__now_ms_f();
	if (opts->force)
		error = ferry__manifest_new(&l->m, l->paths.target,
		                            l->paths.dest);
	else
		error = ferry__manifest_load(&l->m, l->paths.manifest,
		                             l->paths.target, l->paths.dest,
		                             opts->log, opts->ctx);
	if (report)
		report->ms_manifest += ferry__now_ms_f() - t;
	if (error)
		set_err(errmsg, errmsg_size, "out of memory");
	return error;
}

static int map_sources(ferry__local *l, const ferry_sync_opts *o, char *errmsg,
                       size_t errmsg_size)
{
	size_t n = o->mapping_count;
	l->msrc = ferry__calloc(n, sizeof(*l->msrc));
	l->mdst = ferry__calloc(n, sizeof(*l->mdst));
	l->mex = ferry__calloc(n, sizeof(*l->mex));
	if (!l->msrc || !l->mdst || !l->mex) {
		set_err(errmsg, errmsg_size, "out of memory");
		return FERRY_ENOMEM;
	}
	l->nmap = n;
	for (size_t i = 0; i < n; i++) {
		const ferry_mapping *m = &o->mappings[i];
		l->msrc[i] = m->local;
		l->mdst[i] = strcmp(m->remote, ".") == 0 ? "" : m->remote;
		if (!m->exclude_count)
			continue;
		int error = ferry__excludes_new(&l->mex[i]);
		for (size_t k = 0; !error && k < m->exclude_count; k++)
			error = ferry__excludes_add(l->mex[i], m->excludes[k]);
		if (error) {
			set_err(errmsg, errmsg_size,
			        error == FERRY_ENOMEM ? "out of memory"
			                              : "bad exclude pattern");
			return error;
		}
	}
	return 0;
}

int ferry__local_scan(ferry__local *l, const ferry_sync_opts *opts,
                      ferry_sync_report *report, char *errmsg,
                      size_t errmsg_size)
{
	ferry__scan_opts so = {
	        .sources = opts->sources,
	        .source_count = opts->source_count,
	        .excludes = l->ex,
	        .log = opts->log,
	        .log_ctx = opts->ctx,
	        .report = report,
	};
	if (opts->mapping_count) {
		int error = map_sources(l, opts, errmsg, errmsg_size);
		if (error)
			return error;
		so.sources = l->msrc;
		so.source_count = l->nmap;
		so.mapped = l->mdst;
		so.src_excludes = (const ferry__excludes *const *)l->mex;
	}
	return ferry__scan_new(&l->scan, &so, errmsg, errmsg_size);
}

int ferry__local_build(ferry__local *l, const ferry_sync_opts *opts,
                       int keep_unchanged, ferry_sync_report *report,
                       char *errmsg, size_t errmsg_size)
{
	ferry__plan_opts po = {
	        .checksum = opts->checksum,
	        .delete_extraneous = opts->delete_extraneous,
	        .delete_tracked = opts->delete_scope == FERRY_DELETE_TRACKED,
	        .max_delete = opts->max_delete,
	        .keep_unchanged = keep_unchanged,
	        .excludes = l->ex,
	        .log = opts->log,
	        .log_ctx = opts->ctx,
	        .report = report,
	};
	double t = ferry__now_ms_f();
	int error = ferry__plan_build(&l->plan, l->scan, l->m, &po);
	if (report)
		report->ms_scan += ferry__now_ms_f() - t;
	if (error)
		set_err(errmsg, errmsg_size,
		        error == FERRY_ENOMEM ? "out of memory"
		                              : "scanning the sources failed");
	return error;
}

int ferry__local_finish(ferry__local *l, ferry_sync_report *report,
                        char *errmsg, size_t errmsg_size)
{
	double t = ferry__now_ms_f();
	int error = ferry__plan_finish(l->plan);
	if (report)
		report->ms_plan += ferry__now_ms_f() - t;
	if (error)
		set_err(errmsg, errmsg_size, "out of memory");
	return error;
}

void ferry__local_counts(const ferry__local *l, ferry_sync_report *report)
{
	if (!l->scan || !report)
		return;
	report->files_scanned = l->scan->files + l->scan->links;
	report->dirs_scanned = l->scan->dirs;
}

int ferry__local_plan(ferry__local *l, const char *user, const char *host,
                      int port, const ferry_sync_opts *opts, unsigned flags,
                      ferry_sync_report *report, char *errmsg,
                      size_t errmsg_size)
{
	int keep = (flags & FERRY__LOCAL_KEEP_UNCHANGED) != 0;
	memset(l, 0, sizeof(*l));
	int error = ferry__local_check(opts, errmsg, errmsg_size);
	if (!error)
		error = ferry__local_open(l, user, host, port, opts, errmsg,
		                          errmsg_size);
	if (!error)
		error = ferry__local_load(l, opts, report, errmsg, errmsg_size);
	if (!error)
		error = ferry__local_scan(l, opts, report, errmsg, errmsg_size);
	if (!error)
		error = ferry__local_build(l, opts, keep, report, errmsg,
		                           errmsg_size);
	if (!error && !(flags & FERRY__LOCAL_NO_FINISH))
		error = ferry__local_finish(l, report, errmsg, errmsg_size);
	if (error)
		ferry__local_free(l);
	else
		ferry__local_counts(l, report);
	return error;
}

/* 1 when the push that follows this plan would change nothing remotely
 * and would save exactly the plan's RECORD refreshes (files re-hashed and
 * found the same): then status may store them as that push would. */
static int only_refreshes(const ferry__local *l, const ferry_sync_opts *opts)
{
	const ferry__plan *p = l->plan;
	if (opts->force || !p->n || p->io_error || p->deletions_skipped ||
	    l->scan->incomplete)
		return 0;
	for (size_t i = 0; i < p->n; i++)
		if (p->a[i].kind != FERRY__ACT_RECORD)
			return 0;
	return 1;
}

/* Store what status verified, as git status refreshes its index: under the
 * target's lock, never waiting for it (a push holding it saves its own),
 * and only when the manifest on disk is still the one the plan was made
 * from.  Nothing is said when it cannot be done: the next status hashes
 * those files again, and a push does the same refresh. */
static void status_refresh(ferry__local *l, const ferry_sync_opts *opts)
{
	char err[FERRY_ERRMSG_SIZE];
	ferry__lock *lock;
	ferry__manifest *disk = NULL;
	if (!only_refreshes(l, opts) ||
	    ferry__lock_acquire(&lock, l->paths.lock, 0, NULL, NULL, err,
	                        sizeof(err)))
		return;
	if (!ferry__manifest_load(&disk, l->paths.manifest, l->paths.target,
	                          l->paths.dest, NULL, NULL) &&
	    disk->written_ns == l->m->written_ns &&
	    disk->stat_ns == l->m->stat_ns && disk->n == l->m->n &&
	    !ferry__plan_apply(l->plan, l->m) &&
	    ferry__manifest_save(l->m, l->paths.manifest, err, sizeof(err)))
		ferry__report_warn(opts->log, opts->ctx, FERRY_LOG_DEBUG, NULL,
		                   0,
		                   "status: the verified entries were not "
		                   "stored: %s",
		                   err);
	ferry__manifest_free(disk);
	ferry__lock_release(lock);
}

static int status_run(const ferry_session_opts *conn,
                      const ferry_sync_opts *opts, ferry_sync_report *report,
                      char *errmsg, size_t errmsg_size)
{
	ferry__local l;
	ferry_sync_report tmp;
	double t0 = ferry__now_ms_f();
	if (errmsg && errmsg_size)
		errmsg[0] = '\0';
	if (!report)
		report = &tmp;
	memset(report, 0, sizeof(*report));
	if (!conn || !conn->host || !*conn->host) {
		set_err(errmsg, errmsg_size, "no host given");
		return FERRY_EINVALID;
	}
	int error = ferry__local_plan(&l, conn->user, conn->host, conn->port,
	                              opts, 0, report, errmsg, errmsg_size);
	if (error)
		goto out;
	ferry__plan_report(l.plan, report, opts->on_change, opts->ctx);
	status_refresh(&l, opts);
	if (l.plan->refused[0]) {
		set_err(errmsg, errmsg_size, l.plan->refused);
		error = FERRY_ERROR;
	} else if (report->error_count) {
		set_err(errmsg, errmsg_size, "some files could not be read");
		error = FERRY_EPARTIAL;
	}
	ferry__local_free(&l);
out:
	report->ms_total = ferry__now_ms_f() - t0;
	if (report == &tmp)
		ferry_sync_report_free(&tmp);
	return error;
}

/* The target is named as a session would name it: conn with its ssh_config
 * applied.  The message also goes to the thread's last error. */
int ferry_sync_status(const ferry_session_opts *conn,
                      const ferry_sync_opts *opts, ferry_sync_report *report,
                      char *errmsg, size_t errmsg_size)
{
	ferry_session_opts o;
	ferry__sshcfg cfg;
	char msg[FERRY_ERRMSG_SIZE] = "";
	int error = 0;
	memset(&cfg, 0, sizeof(cfg));
	if (conn && conn->host && *conn->host) {
		error = ferry__opts_resolve(&o, &cfg, conn, msg, sizeof(msg));
		conn = &o;
	}
	ferry_sync_opts oc;
	ferry__sync_opts_copy(&oc, opts);
	if (!error)
		error = status_run(conn, opts ? &oc : NULL, report, msg,
		                   sizeof(msg));
	ferry__sshcfg_free(&cfg);
	set_err(errmsg, errmsg_size, msg);
	ferry__last_errmsg_set("%s",
	                       error && !msg[0] ? ferry_strerror(error) : msg);
	return error;
}
