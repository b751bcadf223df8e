/*
 * held - the held-session benchmark driver: how an embedding program sees
 * ferry.  Uses lib/ferry.h only.  Opens one session, then obeys one command
 * per line on stdin and answers one line on stdout, so bench/run.sh can
 * alternate these calls with peer runs (A B A B) while the session stays
 * open.
 *
 *   held -h HOST -p PORT -i KEY -k KNOWN_HOSTS [-u USER]
 *     -> "ready OPEN_MS" or "err CODE MESSAGE" (and exit 1)
 *
 *   sync DEST SRC...   ferry_sync with --delete
 *     -> "ok MS ROUND_TRIPS UPLOADED UPDATED DELETED BYTES VERIFIED
 *         SCAN_MS PLAN_MS TRANSFER_MS MANIFEST_MS"
 *   pull DEST SRC...   ferry_pull with --delete (DEST local, SRC remote):
 *     the same answer (UPLOADED: files fetched, BYTES: written)
 *   exec COMMAND...    ferry_exec on the held session
 *     -> "ok MS ROUND_TRIPS EXIT_STATUS"
 *   connect COMMAND... a new session: open, one ferry_exec, close
 *     -> "ok MS OPEN_MS EXEC_MS CLOSE_MS EXIT_STATUS"
 *   rss                -> "ok MAXRSS_KB RSS_KB HEAP_BYTES": the peak and
 *     the present resident set, and the bytes malloc holds in use
 *     (mallinfo2: arena plus mmapped chunks)
 *   quit
 * Any failure answers "err CODE MESSAGE" and the driver goes on.
 * MS is wall time around the library call (CLOCK_MONOTONIC).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"
#include "util.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static ferry_session_opts conn_opts;
static const char *identity[1];

static void reply_err(int code, const char *msg)
{
	char clean[512];
	size_t n = 0;
	for (; msg && msg[n] && n + 1 < sizeof(clean); n++)
		clean[n] = (msg[n] == '\n' || msg[n] == '\r') ? ' ' : msg[n];
	clean[n] = 0;
	printf("err %d %s: %s\n", code, ferry_strerror(code), clean);
	fflush(stdout);
}

static int split(char *line, char **argv, int max)
{
	int n = 0;
	for (char *tok = strtok(line, " \t\n"); tok && n < max;
	     tok = strtok(NULL, " \t\n"))
		argv[n++] = tok;
	return n;
}

static void do_sync(ferry_session *s, char *args, int pull)
{
	char *v[64];
	int n = split(args, v, 64);
	if (n < 2) {
		reply_err(FERRY_EINVALID, "usage: sync|pull DEST SRC...");
		return;
	}
	ferry_sync_opts o = FERRY_SYNC_OPTS_INIT;
	o.dest = v[0];
	o.sources = (const char *const *)(v + 1);
	o.source_count = (size_t)(n - 1);
	o.delete_extraneous = 1;
	ferry_sync_report r;
	memset(&r, 0, sizeof(r));
	double t0 = now_ms();
	int rc = pull ? ferry_pull(s, &o, &r) : ferry_sync(s, &o, &r);
	double ms = now_ms() - t0;
	if (rc != 0) {
		reply_err(rc, r.error_count && r.errors[0].message
		                      ? r.errors[0].message
		                      : ferry_session_errmsg(s));
	} else {
		printf("ok %.3f %llu %llu %llu %llu %llu %d %.3f %.3f %.3f "
		       "%.3f\n",
		       ms, (unsigned long long)r.round_trips,
		       (unsigned long long)r.files_uploaded,
		       (unsigned long long)r.files_updated,
		       (unsigned long long)r.files_deleted,
		       (unsigned long long)r.bytes_sent, r.verified, r.ms_scan,
		       r.ms_plan, r.ms_transfer, r.ms_manifest);
		fflush(stdout);
	}
	ferry_sync_report_free(&r);
}

static void do_exec(ferry_session *s, const char *cmd)
{
	ferry_exec_opts o = FERRY_EXEC_OPTS_INIT;
	ferry_exec_result r;
	memset(&r, 0, sizeof(r));
	uint64_t rt0 = ferry_session_round_trips(s);
	double t0 = now_ms();
	int rc = ferry_exec(s, cmd, &o, &r);
	double ms = now_ms() - t0;
	if (rc != 0)
		reply_err(rc, ferry_session_errmsg(s));
	else {
		printf("ok %.3f %llu %d\n", ms,
		       (unsigned long long)(ferry_session_round_trips(s) - rt0),
		       r.exit_status);
		fflush(stdout);
	}
	ferry_exec_result_free(&r);
}

static void do_connect(const char *cmd)
{
	char err[512] = "";
	ferry_session *s = NULL;
	double t0 = now_ms();
	int rc = ferry_session_open_ex(&s, &conn_opts, err, sizeof(err));
	double t1 = now_ms();
	if (rc != 0) {
		reply_err(rc, err);
		return;
	}
	ferry_exec_opts o = FERRY_EXEC_OPTS_INIT;
	ferry_exec_result r;
	memset(&r, 0, sizeof(r));
	rc = ferry_exec(s, cmd, &o, &r);
	double t2 = now_ms();
	if (rc != 0)
		reply_err(rc, ferry_session_errmsg(s));
	ferry_session_close(s);
	double t3 = now_ms();
	if (rc == 0) {
		printf("ok %.3f %.3f %.3f %.3f %d\n", t3 - t0, t1 - t0, t2 - t1,
		       t3 - t2, r.exit_status);
		fflush(stdout);
	}
	ferry_exec_result_free(&r);
}

int main(int argc, char **argv)
{
	ferry_session_opts o = FERRY_SESSION_OPTS_INIT;
	o.host = "127.0.0.1";
	o.host_key_policy = FERRY_HOSTKEY_STRICT;
	o.no_agent = 1;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!conn_flag(&o, &identity[0], argv[i], argv[i + 1])) {
			fprintf(stderr, "usage: held -h HOST -p PORT -i KEY "
			                "-k KNOWN_HOSTS [-u USER]\n");
			return 2;
		}
	}
	if (identity[0]) {
		o.identity_files = identity;
		o.identity_count = 1;
	}
	conn_opts = o;

	char err[512] = "";
	ferry_session *s = NULL;
	double t0 = now_ms();
	int rc = ferry_session_open_ex(&s, &o, err, sizeof(err));
	if (rc != 0) {
		reply_err(rc, err);
		return 1;
	}
	printf("ready %.3f\n", now_ms() - t0);
	fflush(stdout);

	char line[8192];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		char *sp = strchr(line, ' ');
		char *rest = sp ? sp + 1 : line + strlen(line);
		if (sp)
			*sp = 0;
		if (!strcmp(line, "sync") || !strcmp(line, "pull"))
			do_sync(s, rest, line[0] == 'p');
		else if (!strcmp(line, "exec"))
			do_exec(s, rest);
		else if (!strcmp(line, "connect"))
			do_connect(rest);
		else if (!strcmp(line, "rss")) {
			struct rusage ru;
			getrusage(RUSAGE_SELF, &ru);
			long pages = -1, rss = -1;
			FILE *f = fopen("/proc/self/statm", "r");
			if (f) {
				if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
					rss = -1;
				fclose(f);
			}
			struct mallinfo2 mi = mallinfo2();
			printf("ok %ld %ld %zu\n", ru.ru_maxrss,
			       rss < 0 ? -1L
			               : rss * (sysconf(_SC_PAGESIZE) / 1024),
			       mi.uordblks + mi.hblkhd);
			fflush(stdout);
		} else if (!strcmp(line, "quit"))
			break;
		else
			reply_err(FERRY_EINVALID, "unknown command");
	}
	ferry_session_close(s);
	return 0;
}
