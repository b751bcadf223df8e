/* cmd_exec.c - ferry exec: run a command on the remote over one session,
 * streaming its output as it arrives; ferry exits with the command's
 * status (124 timed out, 130 interrupted, 255 ferry's own failure). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"
#include "syncopt.h"

static const char usage[] =
        "ferry exec [-p PORT] [-i KEY] [-F CONFIG] [--known-hosts FILE] "
        "[--host-key strict|accept-new|off] [--connect-timeout S] "
        "[--io-timeout S] [-z] [-v|-q] [--persist[=S]] [--timeout S] "
        "[--cwd DIR] [--stdin FILE|-] [--json] [--max-output SIZE] "
        "[--push SRC... --to DEST [push options]] [USER@]HOST [--] "
        "COMMAND...";

static const char help[] =
        "Run COMMAND with bash on HOST over one SSH session, in the login\n"
        "environment of the account (exported variables, functions and\n"
        "aliases of a login shell).  Output is streamed as it arrives,\n"
        "stdout to stdout and stderr to stderr; the exit status is the\n"
        "command's.\n\n"
        "  --timeout S     stop after S seconds (fractions allowed): the\n"
        "                  remote process group is killed, exit 124\n"
        "  --cwd DIR       run in DIR (relative: to the login directory)\n"
        "  --stdin FILE    the command's standard input (- : ours); without\n"
        "                  it the command reads end-of-file\n"
        "  --json          capture the output; print one JSON object.  Of\n"
        "                  each stream it keeps at most --max-output bytes:\n"
        "                  the first and the last half, output_truncated\n"
        "                  true when bytes in between were dropped\n"
        "  --max-output SIZE\n"
        "                  with --json: bytes kept of each stream (suffix\n"
        "                  K, M or G; default 8M; 0: everything, in memory)\n"
        "  --push SRC      push SRC first, over the same session (may be\n"
        "                  repeated); needs --to.  The command runs only\n"
        "                  when the push did not fail as a whole (a\n"
        "                  partial push is reported and the command\n"
        "                  still runs)\n"
        "  --to DEST       the remote directory of --push\n"
        "  --delete, --delete-scope S, --exclude PAT, --exclude-from F,\n"
        "  --checksum, --verify,\n"
        "  --force, --fsync, --allow-shared-dirs, --state-dir DIR,\n"
        "  --marker NAME,\n"
        "  --itemize-changes, --stats:\n"
        "                  as for ferry push (their output goes to stderr)\n"
        "  --persist[=S]   run in a holder that keeps the session (as for\n"
        "                  ferry ping); the working directory and exported\n"
        "                  variables a command leaves then carry over to\n"
        "                  the next call through the same holder\n"
        "  Ctrl-C          kills the remote command, exit 130\n\n"
        "Exit status: the command's; 124 timed out; 130 interrupted;\n"
        "255 connection, authentication or ferry failure; 2 bad usage.\n";

enum {
	OPT_TIMEOUT = OPT_SYNC_LAST_,
	OPT_CWD,
	OPT_STDIN,
	OPT_PUSH,
	OPT_TO,
	OPT_MAX_OUTPUT
};

/* --json keeps this much of each stream by default: memory stays bounded
 * whatever the command prints (head and tail, as output_cap does). */
#define JSON_MAX_OUTPUT ((size_t)8 << 20)

/* Where the output goes: fixed when the command starts, since a holder's
 * session may deliver it on another client's thread. */
typedef struct out_state {
	ferry_session *s;
	int out_fd, err_fd;
	volatile int *stop; /* the command's own (ferry_exec_opts.stop) */
	int broken;         /* a write failed (closed pipe): stop the command */
} out_state;

static int write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void on_output(void *ctx, int stream, const void *data, size_t len)
{
	out_state *o = ctx;
	if (o->broken)
		return;
	if (write_all(stream == 2 ? o->err_fd : o->out_fd, data, len) < 0) {
		/* Like a pipeline member whose reader went away: stop the
		 * remote command instead of running it for nobody. */
		o->broken = 1;
		*o->stop = 1;
		ferry_session_wake(o->s);
	}
}

/* The whole of fd into memory. */
static int read_fd(int fd, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return -1;
	for (;;) {
		if (n == cap) {
			char *nb = cap > ((size_t)-1) / 2
			                   ? NULL
			                   : realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return -1;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* COMMAND... joined by spaces, as ssh does. */
static char *join_args(int argc, char **argv)
{
	size_t n = 1;
	for (int i = 0; i < argc; i++)
		n += strlen(argv[i]) + 1;
	char *s = malloc(n), *p = s;
	if (!s)
		return NULL;
	for (int i = 0; i < argc; i++) {
		size_t k = strlen(argv[i]);
		if (i)
			*p++ = ' ';
		memcpy(p, argv[i], k);
		p += k;
	}
	*p = '\0';
	return s;
}

/* One ferry exec: its options, then what happened. */
struct exec_cmd {
	cli_conn c;
	cli_sync cs;
	char **push_src;
	size_t push_n;
	const char *push_to, *stdin_file;
	int push_rc, pushed;
	ferry_sync_report pr;
	ferry_exec_opts eo;
	ferry_exec_result r;
	ferry_session *s;
	char *command, *in;
	size_t max_output; /* --json: bytes kept per stream (0: all) */
	int e;             /* ferry_exec's return */
	int stdin_fd;      /* --stdin: -1 none, else what to read */
	volatile int own_stop;
	out_state os;
};
typedef struct exec_cmd exec_cmd;

/* "8M", "65536", "1G": bytes; -1 when it is not a size. */
static int parse_size(const char *s, size_t *out)
{
	char num[32];
	size_t n = strlen(s), mul = 1;
	if (!n || n >= sizeof(num))
		return -1;
	memcpy(num, s, n + 1);
	switch (num[n - 1]) {
	case 'k':
	case 'K':
		mul = (size_t)1 << 10;
		break;
	case 'm':
	case 'M':
		mul = (size_t)1 << 20;
		break;
	case 'g':
	case 'G':
		mul = (size_t)1 << 30;
		break;
	}
	if (mul > 1)
		num[--n] = '\0';
	long long v;
	if (cli_parse_ll(num, &v) || (unsigned long long)v > SIZE_MAX / mul)
		return -1;
	*out = (size_t)v * mul;
	return 0;
}

/* The options of exec: its own, then the transfer options (1 consumed, 0
 * not ours, -1 bad value, -2 out of memory; messages printed). */
static int exec_option(void *ctx, int opt, char *arg)
{
	exec_cmd *x = ctx;
	switch (opt) {
	case OPT_TIMEOUT:
		if (cli_parse_ms(arg, 1, &x->eo.timeout_ms) ||
		    x->eo.timeout_ms <= 0) {
			cli_error("bad --timeout '%s' (seconds > 0)", arg);
			return -1;
		}
		return 1;
	case OPT_CWD:
		if (!*arg) {
			cli_error("empty --cwd");
			return -1;
		}
		x->eo.cwd = arg;
		return 1;
	case OPT_STDIN:
		x->stdin_file = arg;
		return 1;
	case OPT_PUSH: {
		char **n = realloc(x->push_src,
		                   (x->push_n + 1) * sizeof(*x->push_src));
		if (!n) {
			cli_error("out of memory");
			return -2;
		}
		x->push_src = n;
		x->push_src[x->push_n++] = arg;
		return 1;
	}
	case OPT_TO:
		x->push_to = arg;
		return 1;
	case OPT_MAX_OUTPUT:
		if (parse_size(arg, &x->max_output)) {
			cli_error("bad --max-output '%s' (bytes, or with K, M "
			          "or G)",
			          arg);
			return -1;
		}
		return 1;
	default:
		return cli_sync_option(&x->cs, opt, arg);
	}
}

/* --stdin FILE (- : ours) opened, where the cwd is the command's. */
static int open_stdin(exec_cmd *x)
{
	int fd = strcmp(x->stdin_file, "-")
	                 ? open(x->stdin_file, O_RDONLY | O_CLOEXEC)
	                 : dup(cli_in_fd());
	if (fd < 0) {
		cli_error("--stdin %s: %s", x->stdin_file, strerror(errno));
		return FERRY_EXIT_USAGE;
	}
	x->stdin_fd = fd;
	return -1;
}

/* --stdin into memory, for eo.stdin_data. */
static int read_stdin(exec_cmd *x)
{
	size_t len = 0;
	int rc = read_fd(x->stdin_fd, &x->in, &len);
	int e = errno;
	close(x->stdin_fd);
	x->stdin_fd = -1;
	if (rc < 0) {
		cli_error("--stdin %s: %s", x->stdin_file, strerror(e));
		return FERRY_EXIT_USAGE;
	}
	x->eo.stdin_data = x->in;
	x->eo.stdin_len = len;
	return -1;
}

/* The command line: -1 to go on, else the exit status. */
static int exec_parse(exec_cmd *x, int argc, char **argv)
{
	static const struct option longopts[] = {
	        CLI_CONN_LONGOPTS,
	        {"timeout", required_argument, NULL, OPT_TIMEOUT},
	        {"cwd", required_argument, NULL, OPT_CWD},
	        {"stdin", required_argument, NULL, OPT_STDIN},
	        {"push", required_argument, NULL, OPT_PUSH},
	        {"to", required_argument, NULL, OPT_TO},
	        {"max-output", required_argument, NULL, OPT_MAX_OUTPUT},
	        CLI_SYNC_EXEC_LONGOPTS,
	        {"help", no_argument, NULL, 'h'},
	        {0}};
	int rc =
	        cli_parse_options(&x->c, argc, argv, "+" CLI_CONN_SHORTOPTS "h",
	                          longopts, usage, help, exec_option, x);
	if (rc >= 0)
		return rc;
	if (optind >= argc)
		return cli_usage_error(usage, "expected [USER@]HOST and a "
		                              "COMMAND");
	const char *target = argv[optind++];
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (optind >= argc)
		return cli_usage_error(usage, "no COMMAND to run");
	if (cli_conn_target(&x->c, target, 0, NULL) < 0)
		return cli_usage_line(usage);
	if (!x->push_n != !x->push_to)
		return cli_usage_error(usage, "--push SRC and --to DEST go "
		                              "together");
	x->command = join_args(argc - optind, argv + optind);
	if (!x->command) {
		cli_error("out of memory");
		return FERRY_EXIT_ERROR;
	}
	/* A missing --stdin FILE is bad usage before anything connects; it
	 * is read once connected (in the holder, with --persist). */
	if (x->stdin_file && strcmp(x->stdin_file, "-") &&
	    access(x->stdin_file, R_OK) < 0) {
		cli_error("--stdin %s: %s", x->stdin_file, strerror(errno));
		return FERRY_EXIT_USAGE;
	}
	return -1;
}

/* --push, over the session: -1 when the command is to run (the push
 * succeeded, or only some files failed), else the exit status. */
static int exec_push(exec_cmd *x)
{
	cli_sync *cs = &x->cs;
	/* The login bootstrap runs while the push does. */
	ferry_exec_prepare(x->s);
	cli_sync_finish(cs, x->push_src, x->push_n, x->push_to);
	cs->to_stderr = 1;
	if (cli_interrupted())
		return FERRY_EXIT_INTERRUPTED;
	x->push_rc = ferry_sync(x->s, &cs->o, &x->pr);
	x->pushed = 1;
	if (!cs->json && (x->push_rc || cs->stats || x->c.verbose))
		cli_sync_report(cs, "push", x->push_rc, &x->pr,
		                ferry_session_errmsg(x->s));
	if (!x->push_rc || x->push_rc == FERRY_EPARTIAL)
		return -1;
	return x->push_rc == FERRY_EINTR ? FERRY_EXIT_INTERRUPTED
	                                 : cli_exit_for(x->push_rc);
}

/* Run the command; ferry's exit status for what happened. */
static int exec_run(exec_cmd *x)
{
	ferry_exec_result *r = &x->r;
	int rc;
	/* A closed stdout shows up as EPIPE, handled in on_output. */
	signal(SIGPIPE, SIG_IGN);
	x->eo.separate_stderr = x->cs.json;
	if (x->cs.json)
		x->eo.output_cap = x->max_output;
	if (cli_interrupted()) {
		r->exit_status = FERRY_EXIT_INTERRUPTED;
		return FERRY_EXIT_INTERRUPTED;
	}
	x->e = ferry_exec(x->s, x->command, &x->eo, r);
	/* The library leaves the command's streams alone; what ferry did
	 * is said here, and what was killed only when it was seen gone. */
	if (r->timed_out && !x->cs.json)
		fprintf(cli_err(), "%s: command timed out after %.6g s; %s\n",
		        cli_prog, x->eo.timeout_ms / 1000.0,
		        r->killed ? "its remote process group was killed"
		                  : "ferry could not confirm that its remote "
		                    "processes are gone");
	else if (r->interrupted && !r->killed && !x->cs.json)
		fprintf(cli_err(),
		        "%s: interrupted; ferry could not confirm that the "
		        "remote processes are gone\n",
		        cli_prog);
	if (x->e == FERRY_EINTR && !x->os.broken) {
		rc = r->exit_status; /* 130: Ctrl-C killed the command */
	} else if (x->e && !x->os.broken) {
		cli_error("%s", ferry_session_errmsg(x->s));
		rc = x->e == FERRY_EINVALID ? FERRY_EXIT_USAGE
		                            : FERRY_EXIT_CONN;
	} else if (x->os.broken) {
		rc = 128 + SIGPIPE;
	} else {
		rc = r->exit_status;
	}
	if (x->e && x->e != FERRY_EINTR)
		r->exit_status = -1;
	return rc;
}

/* --json: one object for the push and the command. */
static void exec_json(exec_cmd *x, int rc)
{
	const ferry_exec_result *r = &x->r;
	const char *errmsg = ferry_session_errmsg(x->s);
	json j;
	json_begin(&j, cli_out());
	json_str(&j, "command", "exec");
	json_int(&j, "exit_status", rc);
	json_str(&j, "target", x->c.host);
	if (!x->pushed || !x->push_rc || x->push_rc == FERRY_EPARTIAL) {
		json_str(&j, "error",
		         x->e && x->e != FERRY_EINTR ? errmsg : NULL);
		json_int(&j, "command_status", r->exit_status);
		json_bool(&j, "timed_out", r->timed_out);
		json_bool(&j, "interrupted", r->interrupted);
		json_bool(&j, "killed", r->killed);
		json_num(&j, "duration_ms", r->duration_ms);
		json_str(&j, "cwd", r->cwd);
		json_strn(&j, "stdout", r->output ? r->output : "",
		          r->output_len);
		json_strn(&j, "stderr", r->err ? r->err : "", r->err_len);
		json_bool(&j, "output_truncated", r->output_truncated);
	}
	if (x->pushed) {
		json_key_obj(&j, "push");
		cli_sync_json_fields(&x->cs, &j, x->push_rc, &x->pr, errmsg);
		json_close_obj(&j);
	}
	json_end(&j);
}

/* Connected: the push, the command, the --json object. */
static int exec_session(exec_cmd *x)
{
	int rc = -1;
	x->os.s = x->s;
	fflush(cli_out());
	fflush(cli_err());
	x->os.out_fd = fileno(cli_out());
	x->os.err_fd = fileno(cli_err());
	if (!x->cs.json) {
		x->eo.on_output = on_output;
		x->eo.ctx = &x->os;
	}
	if (x->push_n)
		rc = exec_push(x);
	if (rc < 0)
		rc = exec_run(x);
	if (x->cs.json)
		exec_json(x, rc);
	return rc;
}

static void exec_free(exec_cmd *x)
{
	if (x->stdin_fd >= 0)
		close(x->stdin_fd);
	ferry_exec_result_free(&x->r);
	ferry_sync_report_free(&x->pr);
	cli_sync_free(&x->cs);
	free(x->push_src);
	free(x->command);
	free(x->in);
	cli_conn_free(&x->c);
	free(x);
}

int cli_exec_begin(int argc, char **argv, cli_exec_job **job)
{
	*job = NULL;
	exec_cmd *x = calloc(1, sizeof(*x));
	if (!x) {
		cli_error("out of memory");
		return FERRY_EXIT_ERROR;
	}
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	x->eo = eo;
	x->max_output = JSON_MAX_OUTPUT;
	x->stdin_fd = -1;
	/* Ctrl-C of a holder's client raises its flag; a closed output
	 * raises ours. */
	x->os.stop = cli_stop() ? cli_stop() : &x->own_stop;
	x->eo.stop = x->os.stop;
	cli_conn_init(&x->c);
	cli_sync_init(&x->cs, &x->c);
	int rc = exec_parse(x, argc, argv);
	if (rc < 0 && !(rc = cli_connect(&x->c, &x->s)) && x->s) {
		rc = x->stdin_file ? open_stdin(x) : -1;
		if (rc < 0) {
			*job = x;
			return -1;
		}
		cli_disconnect(x->s);
	}
	exec_free(x);
	return rc;
}

int cli_exec_alone(const cli_exec_job *x)
{
	return !x->push_n && !x->c.verbose;
}

int cli_exec_end(cli_exec_job *x)
{
	int rc = x->stdin_file ? read_stdin(x) : -1;
	if (rc < 0)
		rc = exec_session(x);
	cli_disconnect(x->s);
	exec_free(x);
	return rc;
}

int cmd_exec(int argc, char **argv)
{
	cli_exec_job *x;
	int rc = cli_exec_begin(argc, argv, &x);
	return rc < 0 ? cli_exec_end(x) : rc;
}
