/* cli.h - shared pieces of the ferry program: exit statuses, messages,
 * target parsing and the connection options every subcommand takes. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include "ferry.h"

/* The option loop of every subcommand (main.c): getopt_long with shortopts
 * and longopts; --help prints "usage: USAGE", a blank line and help.  Each
 * other option goes to cli_conn_option, then to more (when not NULL): 1
 * consumed, 0 not ours, -1 bad value, -2 failure (message printed).  -1
 * when all were taken (optind: the first operand), else the exit status. */
struct cli_conn;
int cli_parse_options(struct cli_conn *c, int argc, char **argv,
                      const char *shortopts, const struct option *longopts,
                      const char *usage, const char *help,
                      int (*more)(void *ctx, int opt, char *arg), void *ctx);

/* Long-option ids of the connection options (short ones use the letter). */
enum {
	OPT_KNOWN_HOSTS = 1000,
	OPT_HOST_KEY,
	OPT_CONNECT_TIMEOUT,
	OPT_IO_TIMEOUT,
	OPT_PERSIST,
	OPT_NO_PERSIST,
	OPT_CONN_LAST_
};

/* The connection options as getopt_long entries and short letters. */
#define CLI_CONN_SHORTOPTS "p:i:F:zvq"
#define CLI_CONN_LONGOPTS                                                      \
	{"port", required_argument, NULL, 'p'},                                \
	        {"identity", required_argument, NULL, 'i'},                    \
	        {"config", required_argument, NULL, 'F'},                      \
	        {"compress", no_argument, NULL, 'z'},                          \
	        {"verbose", no_argument, NULL, 'v'},                           \
	        {"quiet", no_argument, NULL, 'q'},                             \
	        {"known-hosts", required_argument, NULL, OPT_KNOWN_HOSTS},     \
	        {"host-key", required_argument, NULL, OPT_HOST_KEY},           \
	        {"connect-timeout", required_argument, NULL,                   \
	         OPT_CONNECT_TIMEOUT},                                         \
	        {"persist", optional_argument, NULL, OPT_PERSIST},             \
	        {"no-persist", no_argument, NULL, OPT_NO_PERSIST},             \
	{                                                                      \
		"io-timeout", required_argument, NULL, OPT_IO_TIMEOUT          \
	}

typedef struct cli_conn {
	ferry_session_opts o;
	const char *identities[16];
	size_t identity_count;
	const char *config_file;
	int verbose, quiet;
	int persist_set, persist_s; /* --persist[=S] (0: no) */
	char *user, *host;          /* parsed from [USER@]HOST */
	char *owned[16];            /* strings to free */
	size_t owned_count;
} cli_conn;

extern const char *cli_prog;

void cli_conn_init(cli_conn *c);
void cli_conn_free(cli_conn *c);
/* Handle a connection option: 1 consumed, 0 not ours, -1 bad value
 * (message printed). */
int cli_conn_option(cli_conn *c, int opt, const char *arg);
/* Parse "[USER@]HOST" (HOST may be "[v6]") into c, then apply -F config and
 * defaults.  path receives what follows "HOST:" when want_path (required
 * then).  -1 on error (message printed). */
int cli_conn_target(cli_conn *c, const char *arg, int want_path, char **path);
/* Open a session (Ctrl-C and SIGTERM interrupt it, and later calls on
 * it); prints the error on failure and returns the exit code
 * (255 for connection, host key and auth failures).  With --persist the
 * whole command may run in a holder instead: then *out is NULL and the
 * return value is the command's exit status (callers: `if (rc || !s)
 * return rc`).  In a holder, the held session. */
int cli_connect(cli_conn *c, ferry_session **out);
/* Close a session from cli_connect (Ctrl-C then ends the process). */
void cli_disconnect(ferry_session *s);
/* 1 (and says so) when Ctrl-C came before the next library call: do not
 * make it, exit FERRY_EXIT_INTERRUPTED. */
int cli_interrupted(void);

/* --persist (persist.c, holder.c; see persist.h). */
/* Seconds a holder for c waits for a client: --persist, else
 * $FERRY_PERSIST; 0 when neither asks for one. */
int cli_persist_seconds(const cli_conn *c);
/* Parse a --persist / FERRY_PERSIST value: "" or "yes": the default; "no"
 * or "0": off; else whole seconds.  -1 when malformed. */
int cli_persist_parse(const char *v, int *secs);
/* Client: run this command through the holder of c's target, starting
 * one when none runs.  1: it ran, *status is the exit status (errors
 * were printed); 0: connect directly (said with -v). */
int cli_persist_run(cli_conn *c, int secs, int *status);
/* In a holder process (1) or not (0). */
int cli_holder_active(void);
/* The holder's session for a command's cli_connect: 0, or an exit status
 * (message printed) when c names another target. */
int cli_holder_connect(cli_conn *c, ferry_session **out);

/* This thread's command: its streams, stdin and stop flag.  A holder
 * runs the commands of several clients at once, each thread with its
 * client's own; elsewhere (NULL, -1, NULL) they are stdout, stderr, fd 0
 * and none.  A command raises *stop itself when its output is gone. */
void cli_thread_set(FILE *out, FILE *err, int in_fd, volatile int *stop);
FILE *cli_out(void);
FILE *cli_err(void);
int cli_in_fd(void);
volatile int *cli_stop(void);

/* ferry exec in two steps, for a holder: the command line parsed and
 * connected (on the thread that may chdir), then run (on any thread).
 * cli_exec_begin: -1 and *job to go on, else the exit status (messages
 * printed).  cli_exec_alone: 1 when the run touches nothing of the
 * process but its streams (no --push, whose local paths need the cwd;
 * no -v, whose session log goes to the process's stderr).
 * cli_exec_end: runs it, frees it, returns the exit status. */
typedef struct exec_cmd cli_exec_job;
int cli_exec_begin(int argc, char **argv, cli_exec_job **job);
int cli_exec_alone(const cli_exec_job *job);
int cli_exec_end(cli_exec_job *job);

/* Messages: "ferry: ..." on cli_err(). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Bad usage: the message and one usage line; returns EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Just the usage line (the problem was printed already); EXIT_USAGE. */
int cli_usage_line(const char *usage);
/* Exit status for a library error code. */
int cli_exit_for(int rc);
/* Parse a non-negative decimal number (seconds may have a fraction when
 * allow_fraction); -1 on error. */
int cli_parse_ms(const char *s, int allow_fraction, int *out_ms);
int cli_parse_ll(const char *s, long long *out);
/* Log callback printing library warnings to stderr (ctx: cli_conn *). */
void cli_log(void *ctx, int level, const char *msg);

/* The subcommands. */
int cmd_ping(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_master(int argc, char **argv);

#endif
