/* syncopt.h - the transfer options and the report output shared by push,
 * status and exec --push. */
#ifndef FERRY_CLI_SYNCOPT_H
#define FERRY_CLI_SYNCOPT_H

#include <stdio.h>

#include "cli.h"
#include "json.h"

enum {
	OPT_DELETE = OPT_CONN_LAST_ + 1,
	OPT_MAX_DELETE,
	OPT_EXCLUDE,
	OPT_EXCLUDE_FROM,
	OPT_CHECKSUM,
	OPT_ITEMIZE,
	OPT_STATS,
	OPT_JSON,
	OPT_PROGRESS,
	OPT_VERIFY,
	OPT_FORCE,
	OPT_FSYNC,
	OPT_ALLOW_SHARED,
	OPT_DELETE_SCOPE,
	OPT_STATE_DIR,
	OPT_MAX_DIR_ENTRIES,
	OPT_MAX_ENTRIES,
	OPT_MAX_NAME_BYTES,
	OPT_STREAMS,
	OPT_MARKER,
	OPT_SYNC_LAST_
};

#define CLI_SYNC_SHORTOPTS "n"
/* The end of push's and pull's help: the remote's bounds, the
 * connection. */
#define CLI_SYNC_HELP_COMMON                                                   \
	"      --io-timeout S     fail when the server answers nothing for "   \
	"S\n"                                                                  \
	"                         seconds (default 30; 0: wait forever)\n"     \
	"      --max-dir-entries N, --max-entries N, --max-name-bytes N\n"     \
	"                         bound a remote listing: entries in one\n"    \
	"                         directory (default 1000000), in all\n"       \
	"                         (10000000), bytes of names (1 GiB)\n"        \
	"  -p PORT, -i KEY, -F CONFIG, --known-hosts FILE, --host-key "        \
	"POLICY,\n"                                                            \
	"  --connect-timeout S, -z, -v, -q, --persist[=S]: as for ferry "      \
	"ping\n"
/* The transfer options exec --push takes too. */
#define CLI_SYNC_EXEC_LONGOPTS                                                 \
	{"delete", no_argument, NULL, OPT_DELETE},                             \
	        {"delete-scope", required_argument, NULL, OPT_DELETE_SCOPE},   \
	        {"exclude", required_argument, NULL, OPT_EXCLUDE},             \
	        {"exclude-from", required_argument, NULL, OPT_EXCLUDE_FROM},   \
	        {"checksum", no_argument, NULL, OPT_CHECKSUM},                 \
	        {"verify", no_argument, NULL, OPT_VERIFY},                     \
	        {"force", no_argument, NULL, OPT_FORCE},                       \
	        {"fsync", no_argument, NULL, OPT_FSYNC},                       \
	        {"streams", required_argument, NULL, OPT_STREAMS},             \
	        {"allow-shared-dirs", no_argument, NULL, OPT_ALLOW_SHARED},    \
	        {"state-dir", required_argument, NULL, OPT_STATE_DIR},         \
	        {"marker", required_argument, NULL, OPT_MARKER},               \
	        {"itemize-changes", no_argument, NULL, OPT_ITEMIZE},           \
	        {"stats", no_argument, NULL, OPT_STATS},                       \
	{                                                                      \
		"json", no_argument, NULL, OPT_JSON                            \
	}
/* The bounds of a remote listing (push, status, pull). */
#define CLI_SYNC_LIMIT_LONGOPTS                                                \
	{"max-dir-entries", required_argument, NULL, OPT_MAX_DIR_ENTRIES},     \
	        {"max-entries", required_argument, NULL, OPT_MAX_ENTRIES},     \
	{                                                                      \
		"max-name-bytes", required_argument, NULL, OPT_MAX_NAME_BYTES  \
	}
/* Those of push and status. */
#define CLI_SYNC_LONGOPTS                                                      \
	CLI_SYNC_EXEC_LONGOPTS, CLI_SYNC_LIMIT_LONGOPTS,                       \
	        {"dry-run", no_argument, NULL, 'n'},                           \
	        {"max-delete", required_argument, NULL, OPT_MAX_DELETE},       \
	{                                                                      \
		"progress", no_argument, NULL, OPT_PROGRESS                    \
	}

typedef struct cli_sync {
	ferry_sync_opts o;
	char **sources;
	size_t source_count;
	const char **excludes, **exclude_from; /* arrays owned, strings not */
	size_t exclude_count, exclude_from_count;
	int itemize, stats, json, progress;
	int to_stderr; /* itemize lines and the summary go to stderr */
	int pull;      /* ferry pull: the sources are remote */
	const cli_conn *conn;
	/* output state */
	double start_ms, last_draw_ms;
	int bar_shown;
	size_t changes_cap, changes_len;
	struct cli_change {
		char item[16];
		char *path, *target;
		int kind, error;
		uint64_t size;
		char *errmsg;
	} * changes;
} cli_sync;

void cli_sync_init(cli_sync *cs, const cli_conn *conn);
void cli_sync_free(cli_sync *cs);
/* 1 consumed, 0 not ours, -1 bad value (message printed). */
int cli_sync_option(cli_sync *cs, int opt, const char *arg);
/* Sources, destination: fills cs->o (callbacks included). */
int cli_sync_finish(cli_sync *cs, char **sources, size_t n, const char *dest);
/* The command line of push and status (options, SRC...,
 * [USER@]HOST:DEST) or, with pull, of pull ([USER@]HOST:SRC... DEST, the
 * sources replaced by their remote paths), then cli_sync_finish, then
 * run: the exit status of run, or of a usage error or --help. */
int cli_sync_main(int argc, char **argv, const char *usage, const char *help,
                  int pull,
                  int (*run)(cli_conn *c, cli_sync *cs, ferry_sync_report *r));
/* Print the outcome: itemize lines were printed as they came; this prints
 * the summary or --stats, or the --json object (with the rest of the
 * exec object when exec_fields is set).  Returns the exit status. */
int cli_sync_report(cli_sync *cs, const char *command, int rc,
                    const ferry_sync_report *r, const char *errmsg);
/* Emit the --json members of a sync report into an open object. */
void cli_sync_json_fields(cli_sync *cs, json *j, int rc,
                          const ferry_sync_report *r, const char *errmsg);
/* Monotonic milliseconds. */
double cli_now_ms(void);

#endif
