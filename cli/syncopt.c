/* syncopt.c - transfer options and report output for push, status and
 * exec --push. */
#include "syncopt.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double cli_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const char *kind_name(int k)
{
	static const char *const names[] = {"mkdir",   "upload", "update",
	                                    "symlink", "delete", "rmdir"};
	return k >= 0 && k < 6 ? names[k] : "?";
}

/* Names with a newline, other control bytes or bidi overrides are
 * printed escaped, as itemize does, so one change is one line and reads
 * as it is. */
static void print_path(FILE *f, const char *p)
{
	char small[512];
	size_t n = ferry_path_escape(small, sizeof(small), p);
	char *e = n < sizeof(small) ? small : malloc(n + 1);
	if (e && e != small)
		ferry_path_escape(e, n + 1, p);
	fputs(e ? e : "?", f);
	if (e != small)
		free(e);
}

static void clear_bar(cli_sync *cs)
{
	if (cs->bar_shown) {
		fputs("\r\033[K", cli_err());
		cs->bar_shown = 0;
	}
}

static void on_change(void *ctx, const ferry_change *c)
{
	cli_sync *cs = ctx;
	char line[8192];
	size_t ll = ferry_change_itemize(line, sizeof(line), c);
	char item[16];
	snprintf(item, sizeof(item), "%.11s", line);
	if (cs->json) {
		if (cs->changes_len == cs->changes_cap) {
			size_t ncap =
			        cs->changes_cap ? cs->changes_cap * 2 : 64;
			struct cli_change *n =
			        realloc(cs->changes, ncap * sizeof(*n));
			if (!n)
				return;
			cs->changes = n;
			cs->changes_cap = ncap;
		}
		struct cli_change *cc = &cs->changes[cs->changes_len++];
		memset(cc, 0, sizeof(*cc));
		memcpy(cc->item, item, sizeof(item));
		cc->path = strdup(c->path);
		cc->target = c->link_target ? strdup(c->link_target) : NULL;
		cc->errmsg = c->errmsg ? strdup(c->errmsg) : NULL;
		cc->kind = (int)c->kind;
		cc->error = c->error;
		cc->size = c->size;
		return;
	}
	if (c->error) {
		clear_bar(cs);
		fprintf(cli_err(), "%s: ", cli_prog);
		print_path(cli_err(), c->path);
		fprintf(cli_err(), ": %s\n",
		        c->errmsg ? c->errmsg : ferry_strerror(c->error));
		return;
	}
	if (!cs->itemize && cs->conn->verbose < 1)
		return;
	clear_bar(cs);
	if (ll >= sizeof(line)) {
		char *big = malloc(ll + 1);
		if (big) {
			ferry_change_itemize(big, ll + 1, c);
			fprintf(cs->to_stderr ? cli_err() : cli_out(), "%s\n",
			        big);
			free(big);
			return;
		}
	}
	fprintf(cs->to_stderr ? cli_err() : cli_out(), "%s\n", line);
}

static void human(char *buf, size_t n, double v)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int i = 0;
	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void on_progress(void *ctx, const ferry_progress *p)
{
	cli_sync *cs = ctx;
	double now = cli_now_ms();
	double el = now - cs->start_ms;
	int finished = p->bytes_done >= p->bytes_total &&
	               p->files_done >= p->files_total;
	/* A bar only for transfers longer than about a second. */
	if (el < 1000 || (now - cs->last_draw_ms < 100 && !finished))
		return;
	cs->last_draw_ms = now;
	char done[32], total[32], rate[32];
	human(done, sizeof(done), (double)p->bytes_done);
	human(total, sizeof(total), (double)p->bytes_total);
	double bps = (double)p->bytes_done / (el / 1000.0);
	human(rate, sizeof(rate), bps);
	double eta =
	        bps > 0 ? (double)(p->bytes_total - p->bytes_done) / bps : 0;
	int pct = p->bytes_total ? (int)(100.0 * (double)p->bytes_done /
	                                 (double)p->bytes_total)
	                         : 100;
	char bar[21];
	for (int i = 0; i < 20; i++)
		bar[i] = i < pct / 5 ? '#' : '-';
	bar[20] = '\0';
	fprintf(cli_err(),
	        "\r\033[K[%s] %3d%% %s/%s  %llu/%llu files  %s/s  ETA %d:%02d",
	        bar, pct, done, total, (unsigned long long)p->files_done,
	        (unsigned long long)p->files_total, rate, (int)eta / 60,
	        (int)eta % 60);
	cs->bar_shown = 1;
}

static void on_log(void *ctx, int level, const char *msg)
{
	cli_sync *cs = ctx;
	if (cs->json && level < FERRY_LOG_WARN)
		return;
	clear_bar(cs);
	cli_log((void *)(uintptr_t)cs->conn, level, msg);
}

void cli_sync_init(cli_sync *cs, const cli_conn *conn)
{
	ferry_sync_opts init = FERRY_SYNC_OPTS_INIT;
	memset(cs, 0, sizeof(*cs));
	cs->o = init;
	cs->o.stop = cli_stop(); /* a holder's client's Ctrl-C */
	cs->conn = conn;
}

void cli_sync_free(cli_sync *cs)
{
	free(cs->excludes);
	free(cs->exclude_from);
	for (size_t i = 0; i < cs->changes_len; i++) {
		free(cs->changes[i].path);
		free(cs->changes[i].target);
		free(cs->changes[i].errmsg);
	}
	free(cs->changes);
	memset(cs, 0, sizeof(*cs));
}

/* Append s to a growable array of borrowed strings (argv lives on). */
static int push_str(const char ***arr, size_t *n, const char *str)
{
	const char **a = realloc(*arr, (*n + 1) * sizeof(**arr));
	if (!a) {
		cli_error("out of memory");
		return -1;
	}
	a[(*n)++] = str;
	*arr = a;
	return 0;
}

/* The options that only set a flag: where the flag is in cli_sync. */
static const struct sync_flag {
	int opt;
	size_t offset;
} sync_flags[] = {
        {'n', offsetof(cli_sync, o.dry_run)},
        {OPT_DELETE, offsetof(cli_sync, o.delete_extraneous)},
        {OPT_CHECKSUM, offsetof(cli_sync, o.checksum)},
        {OPT_ITEMIZE, offsetof(cli_sync, itemize)},
        {OPT_STATS, offsetof(cli_sync, stats)},
        {OPT_JSON, offsetof(cli_sync, json)},
        {OPT_PROGRESS, offsetof(cli_sync, progress)},
        {OPT_VERIFY, offsetof(cli_sync, o.verify)},
        {OPT_FORCE, offsetof(cli_sync, o.force)},
        {OPT_FSYNC, offsetof(cli_sync, o.fsync_all)},
        {OPT_ALLOW_SHARED, offsetof(cli_sync, o.allow_shared_dirs)},
};

int cli_sync_option(cli_sync *cs, int opt, const char *arg)
{
	long long v;
	for (size_t i = 0; i < sizeof(sync_flags) / sizeof(sync_flags[0]); i++)
		if (sync_flags[i].opt == opt) {
			*(int *)(void *)((char *)cs + sync_flags[i].offset) = 1;
			return 1;
		}
	switch (opt) {
	case OPT_DELETE_SCOPE:
		if (!strcmp(arg, "tracked")) {
			cs->o.delete_scope = FERRY_DELETE_TRACKED;
		} else if (!strcmp(arg, "mirror")) {
			cs->o.delete_scope = FERRY_DELETE_MIRROR;
		} else {
			cli_error("bad --delete-scope '%s' (tracked or mirror)",
			          arg);
			return -1;
		}
		return 1;
	case OPT_MAX_DELETE:
		if (cli_parse_ll(arg, &v)) {
			cli_error("bad --max-delete '%s' (a number >= 0)", arg);
			return -1;
		}
		/* rsync: --max-delete=0 deletes nothing (and warns). */
		cs->o.max_delete = v ? v : -1;
		return 1;
	case OPT_EXCLUDE:
		if (!*arg) {
			cli_error("empty --exclude pattern");
			return -1;
		}
		return push_str(&cs->excludes, &cs->exclude_count, arg) < 0 ? -1
		                                                            : 1;
	case OPT_EXCLUDE_FROM:
		/* Read by the library; checked here so that a typo is a
		 * usage error before anything connects. */
		if (!strcmp(arg, "-"))
			arg = "/dev/stdin";
		if (access(arg, R_OK) < 0) {
			cli_error("cannot read --exclude-from %s: %s", arg,
			          strerror(errno));
			return -1;
		}
		return push_str(&cs->exclude_from, &cs->exclude_from_count,
		                arg) < 0
		               ? -1
		               : 1;
	case OPT_STATE_DIR:
		cs->o.state_dir = arg;
		return 1;
	case OPT_MARKER:
		/* The library says what a name may be (ferry_sync_opts). */
		cs->o.marker = arg;
		return 1;
	case OPT_STREAMS:
		if (cli_parse_ll(arg, &v) || v < 1 || v > 32) {
			cli_error("bad --streams '%s' (1 to 32)", arg);
			return -1;
		}
		cs->o.streams = (unsigned)v;
		return 1;
	case OPT_MAX_DIR_ENTRIES:
	case OPT_MAX_ENTRIES:
	case OPT_MAX_NAME_BYTES:
		if (cli_parse_ll(arg, &v) || v <= 0) {
			cli_error("bad --%s '%s' (a number > 0)",
			          opt == OPT_MAX_DIR_ENTRIES ? "max-dir-entries"
			          : opt == OPT_MAX_ENTRIES   ? "max-entries"
			                                     : "max-name-bytes",
			          arg);
			return -1;
		}
		*(opt == OPT_MAX_DIR_ENTRIES ? &cs->o.max_dir_entries
		  : opt == OPT_MAX_ENTRIES   ? &cs->o.max_entries
		                             : &cs->o.max_name_bytes) =
		        (uint64_t)v;
		return 1;
	default:
		return 0;
	}
}

int cli_sync_finish(cli_sync *cs, char **sources, size_t n, const char *dest)
{
	cs->sources = sources;
	cs->source_count = n;
	cs->o.sources = (const char *const *)sources;
	cs->o.source_count = n;
	cs->o.dest = dest;
	cs->o.excludes = cs->excludes;
	cs->o.exclude_count = cs->exclude_count;
	cs->o.exclude_from = cs->exclude_from;
	cs->o.exclude_from_count = cs->exclude_from_count;
	cs->o.on_change = on_change;
	/* Never on a non-TTY, never mixed into --json. */
	if (cs->progress && !cs->json && isatty(STDERR_FILENO))
		cs->o.on_progress = on_progress;
	cs->o.log = on_log;
	cs->o.ctx = cs;
	cs->start_ms = cli_now_ms();
	return 0;
}

/* The counters of a report, by their --json names. */
static const struct counter {
	const char *name;
	size_t offset; /* of a uint64_t in ferry_sync_report */
} counters[] = {
        {"files_scanned", offsetof(ferry_sync_report, files_scanned)},
        {"dirs_scanned", offsetof(ferry_sync_report, dirs_scanned)},
        {"files_uploaded", offsetof(ferry_sync_report, files_uploaded)},
        {"files_updated", offsetof(ferry_sync_report, files_updated)},
        {"files_deleted", offsetof(ferry_sync_report, files_deleted)},
        {"dirs_created", offsetof(ferry_sync_report, dirs_created)},
        {"dirs_deleted", offsetof(ferry_sync_report, dirs_deleted)},
        {"symlinks_created", offsetof(ferry_sync_report, symlinks_created)},
        {"bytes_sent", offsetof(ferry_sync_report, bytes_sent)},
        {"round_trips", offsetof(ferry_sync_report, round_trips)},
        {"requests", offsetof(ferry_sync_report, requests)},
        {"files_delta", offsetof(ferry_sync_report, files_delta)},
        {"bytes_copied", offsetof(ferry_sync_report, bytes_copied)},
        {"bytes_saved", offsetof(ferry_sync_report, bytes_saved)},
};

void cli_sync_json_fields(cli_sync *cs, json *j, int rc,
                          const ferry_sync_report *r, const char *errmsg)
{
	json_str(j, "dest", cs->o.dest);
	json_bool(j, "dry_run", cs->o.dry_run);
	json_str(j, "result",
	         rc == 0                ? "ok"
	         : rc == FERRY_EPARTIAL ? "partial"
	                                : "error");
	json_str(j, "error", rc && rc != FERRY_EPARTIAL ? errmsg : NULL);
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
		json_u64(j, counters[i].name,
		         *(const uint64_t *)(const void *)((const char *)r +
		                                           counters[i].offset));
	json_bool(j, "verified", r->verified);
	json_key_obj(j, "time_ms");
	json_num(j, "scan", r->ms_scan);
	json_num(j, "plan", r->ms_plan);
	json_num(j, "transfer", r->ms_transfer);
	json_num(j, "manifest", r->ms_manifest);
	json_num(j, "total", r->ms_total);
	json_close_obj(j);
	json_key_arr(j, "changes");
	for (size_t i = 0; i < cs->changes_len; i++) {
		const struct cli_change *c = &cs->changes[i];
		json_obj(j);
		json_str(j, "op", kind_name(c->kind));
		json_str(j, "path", c->path);
		json_str(j, "itemize", c->item);
		json_u64(j, "size", c->size);
		if (c->target)
			json_str(j, "target", c->target);
		if (c->error) {
			json_str(j, "error", ferry_error_name(c->error));
			json_str(j, "message", c->errmsg);
		}
		json_close_obj(j);
	}
	json_close_arr(j);
	json_key_arr(j, "errors");
	for (size_t i = 0; i < r->error_count; i++) {
		json_obj(j);
		json_str(j, "path", r->errors[i].path);
		json_str(j, "code", ferry_error_name(r->errors[i].code));
		json_str(j, "message", r->errors[i].message);
		json_close_obj(j);
	}
	json_close_arr(j);
}

static void print_stats(FILE *f, const ferry_sync_report *r, int dry, int pull)
{
	const char *w = dry ? " (dry run: planned)" : "";
	fprintf(f, "Files %s:        %llu (%llu directories)\n",
	        pull ? "listed " : "scanned",
	        (unsigned long long)r->files_scanned,
	        (unsigned long long)r->dirs_scanned);
	fprintf(f, "%s             %llu%s\n", pull ? "Fetched: " : "Uploaded:",
	        (unsigned long long)r->files_uploaded, w);
	fprintf(f, "Metadata updated:     %llu\n",
	        (unsigned long long)r->files_updated);
	fprintf(f, "Deleted:              %llu files, %llu directories\n",
	        (unsigned long long)r->files_deleted,
	        (unsigned long long)r->dirs_deleted);
	fprintf(f, "Directories created:  %llu\n",
	        (unsigned long long)r->dirs_created);
	fprintf(f, "Symlinks created:     %llu\n",
	        (unsigned long long)r->symlinks_created);
	fprintf(f, "Bytes %s:        %llu\n", pull ? "written" : "sent:  ",
	        (unsigned long long)r->bytes_sent);
	if (!pull) {
		fprintf(f, "Delta uploads:        %llu\n",
		        (unsigned long long)r->files_delta);
		fprintf(f, "Bytes copied remotely: %llu\n",
		        (unsigned long long)r->bytes_copied);
		fprintf(f, "Bytes saved:          %llu\n",
		        (unsigned long long)r->bytes_saved);
	}
	fprintf(f, "Round trips:          %llu\n",
	        (unsigned long long)r->round_trips);
	fprintf(f, "Requests:             %llu\n",
	        (unsigned long long)r->requests);
	fprintf(f, "Remote listed:        %s\n", r->verified ? "yes" : "no");
	fprintf(f,
	        "Time:                 scan %.1f ms, plan %.1f ms, transfer "
	        "%.1f "
	        "ms, manifest %.1f ms, total %.1f ms\n",
	        r->ms_scan, r->ms_plan, r->ms_transfer, r->ms_manifest,
	        r->ms_total);
}

int cli_sync_report(cli_sync *cs, const char *command, int rc,
                    const ferry_sync_report *r, const char *errmsg)
{
	clear_bar(cs);
	FILE *out = cs->to_stderr ? cli_err() : cli_out();
	int status = rc == 0 ? FERRY_EXIT_OK : cli_exit_for(rc);
	if (cs->json) {
		json j;
		json_begin(&j, cli_out());
		json_str(&j, "command", command);
		json_int(&j, "exit_status", status);
		cli_sync_json_fields(cs, &j, rc, r, errmsg);
		json_end(&j);
		return status;
	}
	for (size_t i = 0; i < r->error_count; i++) {
		fprintf(cli_err(), "%s: ", cli_prog);
		print_path(cli_err(), r->errors[i].path);
		fprintf(cli_err(), ": %s\n", r->errors[i].message);
	}
	if (rc && rc != FERRY_EPARTIAL)
		cli_error("%s",
		          errmsg && *errmsg ? errmsg : ferry_strerror(rc));
	if (cs->stats)
		print_stats(out, r, cs->o.dry_run, cs->pull);
	else if (!cs->conn->quiet && (rc == 0 || rc == FERRY_EPARTIAL))
		fprintf(out,
		        "%s %s: %s%llu %s, %llu updated, %llu deleted, "
		        "%llu directories created; %llu files %s, %llu "
		        "bytes %s, %llu round trips, %.0f ms%s\n",
		        cs->pull        ? (cs->o.dry_run ? "would pull into"
		                                         : "pulled into")
		        : cs->o.dry_run ? "would push to"
		                        : "pushed to",
		        cs->o.dest, cs->o.dry_run ? "(dry run) " : "",
		        (unsigned long long)r->files_uploaded,
		        cs->pull ? "fetched" : "uploaded",
		        (unsigned long long)r->files_updated,
		        (unsigned long long)r->files_deleted,
		        (unsigned long long)r->dirs_created,
		        (unsigned long long)r->files_scanned,
		        cs->pull ? "listed" : "scanned",
		        (unsigned long long)r->bytes_sent,
		        cs->pull ? "written" : "sent",
		        (unsigned long long)r->round_trips, r->ms_total,
		        rc == FERRY_EPARTIAL ? " (some files failed)" : "");
	return status;
}

static int sync_option(void *cs, int opt, char *arg)
{
	return cli_sync_option(cs, opt, arg);
}

/* The length of "[USER@]HOST:" at the start of arg (0: none). */
static size_t remote_prefix(const char *arg)
{
	const char *p = arg + strcspn(arg, "@:[/");
	if (*p == '@')
		p++;
	if (*p == '[') {
		const char *e = strchr(p, ']');
		if (!e)
			return 0;
		p = e + 1;
	} else {
		p += strcspn(p, ":/");
	}
	return *p == ':' && p > arg ? (size_t)(p - arg) + 1 : 0;
}

/* A pull's sources: [USER@]HOST:SRC, later ones on the same host (the
 * same prefix, or just :SRC); each replaced by its remote path.  The DEST
 * that follows is local.  0, or -1 (message printed). */
static int pull_operands(cli_conn *c, char **args, size_t n, const char *dest)
{
	const char *arg0 = args[0];
	size_t plen = remote_prefix(arg0);
	char *path = NULL;
	if (remote_prefix(dest)) {
		cli_error("'%s' looks remote: ferry pull puts files into a "
		          "local DEST (write ./%s for a local name with ':')",
		          dest, dest);
		return -1;
	}
	if (cli_conn_target(c, arg0, 1, &path) < 0)
		return -1;
	args[0] = path;
	for (size_t i = 1; i < n; i++) {
		char *a = args[i];
		if (a[0] == ':')
			a++;
		else if (plen && !strncmp(a, arg0, plen))
			a += plen;
		else {
			cli_error("'%s': every source is on %.*s (write "
			          "%.*sPATH or :PATH)",
			          a, (int)(plen - 1), arg0, (int)plen, arg0);
			return -1;
		}
		args[i] = *a ? a : (char *)".";
	}
	return 0;
}

/* Options, operands (push and status: SRC... [USER@]HOST:DEST; pull:
 * [USER@]HOST:SRC... DEST); then cli_sync_finish.  -1 to go on, else the
 * exit status (help printed, or a usage error). */
static int sync_parse(cli_conn *c, cli_sync *cs, int argc, char **argv,
                      const char *usage, const char *help, int pull)
{
	static const struct option longopts[] = {
	        CLI_CONN_LONGOPTS,
	        CLI_SYNC_LONGOPTS,
	        {"help", no_argument, NULL, 'h'},
	        {0}};
	static const struct option pull_longopts[] = {
	        CLI_CONN_LONGOPTS,
	        {"delete", no_argument, NULL, OPT_DELETE},
	        {"exclude", required_argument, NULL, OPT_EXCLUDE},
	        {"exclude-from", required_argument, NULL, OPT_EXCLUDE_FROM},
	        {"checksum", no_argument, NULL, OPT_CHECKSUM},
	        {"fsync", no_argument, NULL, OPT_FSYNC},
	        {"itemize-changes", no_argument, NULL, OPT_ITEMIZE},
	        {"stats", no_argument, NULL, OPT_STATS},
	        {"json", no_argument, NULL, OPT_JSON},
	        {"dry-run", no_argument, NULL, 'n'},
	        {"max-delete", required_argument, NULL, OPT_MAX_DELETE},
	        {"progress", no_argument, NULL, OPT_PROGRESS},
	        {"marker", required_argument, NULL, OPT_MARKER},
	        CLI_SYNC_LIMIT_LONGOPTS,
	        {"help", no_argument, NULL, 'h'},
	        {0}};
	char *dest = NULL;
	int rc = cli_parse_options(
	        c, argc, argv, CLI_CONN_SHORTOPTS CLI_SYNC_SHORTOPTS "h",
	        pull ? pull_longopts : longopts, usage, help, sync_option, cs);
	if (rc >= 0)
		return rc;
	if (argc - optind < 2)
		return cli_usage_error(usage,
		                       pull ? "expected [USER@]HOST:SRC... and "
		                              "DEST"
		                            : "expected SRC... and "
		                              "[USER@]HOST:DEST");
	size_t n = (size_t)(argc - 1 - optind);
	if (pull) {
		dest = argv[argc - 1];
		if (pull_operands(c, argv + optind, n, dest) < 0)
			return cli_usage_line(usage);
	} else if (cli_conn_target(c, argv[argc - 1], 1, &dest) < 0) {
		return cli_usage_line(usage);
	}
	cli_sync_finish(cs, argv + optind, n, dest);
	return -1;
}

int cli_sync_main(int argc, char **argv, const char *usage, const char *help,
                  int pull,
                  int (*run)(cli_conn *c, cli_sync *cs, ferry_sync_report *r))
{
	cli_conn c;
	cli_sync cs;
	ferry_sync_report r;
	cli_conn_init(&c);
	cli_sync_init(&cs, &c);
	cs.pull = pull;
	memset(&r, 0, sizeof(r));
	int rc = sync_parse(&c, &cs, argc, argv, usage, help, pull);
	if (rc < 0)
		rc = run(&c, &cs, &r);
	ferry_sync_report_free(&r);
	cli_sync_free(&cs);
	cli_conn_free(&c);
	return rc;
}
