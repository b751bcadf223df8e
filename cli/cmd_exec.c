/* cmd_exec.c - ferry exec: run a command on the remote over one session,
 * streaming its output as it arrives; ferry exits with the command's
 * status (124 timed out, 130 interrupted, 255 ferry's own failure). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"
#include "syncopt.h"

static const char usage[] =
        "ferry exec [-p PORT] [-i KEY] [-F CONFIG] [--known-hosts FILE] "
        "[--host-key strict|accept-new|off] [--connect-timeout S] [-z] "
        "[-v|-q] [--timeout S] [--cwd DIR] [--stdin FILE|-] [--json] "
        "[--push SRC... --to DEST [push options]] [USER@]HOST [--] "
        "COMMAND...";

static const char help[] =
        "\nRun COMMAND with bash on HOST over one SSH session, in the login\n"
        "environment of the account (exported variables, functions and\n"
        "aliases of a login shell).  Output is streamed as it arrives,\n"
        "stdout to stdout and stderr to stderr; the exit status is the\n"
        "command's.\n\n"
        "  --timeout S     stop after S seconds (fractions allowed): the\n"
        "                  remote process group is killed, exit 124\n"
        "  --cwd DIR       run in DIR (relative: to the login directory)\n"
        "  --stdin FILE    the command's standard input (- : ours); without\n"
        "                  it the command reads end-of-file\n"
        "  --json          capture the output; print one JSON object\n"
        "  --push SRC      push SRC first, over the same session (may be\n"
        "                  repeated); needs --to.  The command runs only\n"
        "                  when the push did not fail as a whole (a\n"
        "                  partial push is reported and the command\n"
        "                  still runs)\n"
        "  --to DEST       the remote directory of --push\n"
        "  --delete, --exclude PAT, --exclude-from F, --checksum, --verify,\n"
        "  --force, --fsync, --state-dir DIR, --itemize-changes, --stats:\n"
        "                  as for ferry push (their output goes to stderr)\n"
        "  Ctrl-C          kills the remote command, exit 130\n\n"
        "Exit status: the command's; 124 timed out; 130 interrupted;\n"
        "255 connection, authentication or ferry failure; 2 bad usage.\n";

enum { OPT_TIMEOUT = OPT_SYNC_LAST_, OPT_CWD, OPT_STDIN, OPT_PUSH, OPT_TO };

typedef struct out_state {
	ferry_session *s;
	int broken; /* a write failed (closed pipe): stop the command */
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
	if (write_all(stream == 2 ? 2 : 1, data, len) < 0) {
		/* Like a pipeline member whose reader went away: stop the
		 * remote command instead of running it for nobody. */
		o->broken = 1;
		ferry_interrupt(o->s);
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

int cmd_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
	        CLI_CONN_LONGOPTS,
	        {"timeout", required_argument, NULL, OPT_TIMEOUT},
	        {"cwd", required_argument, NULL, OPT_CWD},
	        {"stdin", required_argument, NULL, OPT_STDIN},
	        {"push", required_argument, NULL, OPT_PUSH},
	        {"to", required_argument, NULL, OPT_TO},
	        {"delete", no_argument, NULL, OPT_DELETE},
	        {"exclude", required_argument, NULL, OPT_EXCLUDE},
	        {"exclude-from", required_argument, NULL, OPT_EXCLUDE_FROM},
	        {"checksum", no_argument, NULL, OPT_CHECKSUM},
	        {"verify", no_argument, NULL, OPT_VERIFY},
	        {"force", no_argument, NULL, OPT_FORCE},
	        {"fsync", no_argument, NULL, OPT_FSYNC},
	        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
	        {"itemize-changes", no_argument, NULL, OPT_ITEMIZE},
	        {"stats", no_argument, NULL, OPT_STATS},
	        {"json", no_argument, NULL, OPT_JSON},
	        {"help", no_argument, NULL, 'h'},
	        {0}};
	cli_conn c;
	cli_sync cs;
	char **push_src = NULL;
	size_t push_n = 0;
	const char *push_to = NULL;
	int push_rc = 0, pushed = 0;
	ferry_sync_report pr;
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	ferry_exec_result r;
	ferry_session *s = NULL;
	const char *stdin_file = NULL;
	char *command = NULL, *in = NULL;
	size_t in_len = 0;
	int opt, rc = EXIT_OK, e = 0;
	memset(&r, 0, sizeof(r));
	memset(&pr, 0, sizeof(pr));
	cli_conn_init(&c);
	cli_sync_init(&cs, &c);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+" CLI_CONN_SHORTOPTS "h",
	                          longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			printf("usage: %s\n%s", usage, help);
			goto out;
		case OPT_TIMEOUT:
			if (cli_parse_ms(optarg, 1, &eo.timeout_ms) ||
			    eo.timeout_ms <= 0) {
				rc = cli_usage_error(
				        usage,
				        "bad --timeout '%s' (seconds "
				        "> 0)",
				        optarg);
				goto out;
			}
			continue;
		case OPT_CWD:
			if (!*optarg) {
				rc = cli_usage_error(usage, "empty --cwd");
				goto out;
			}
			eo.cwd = optarg;
			continue;
		case OPT_STDIN:
			stdin_file = optarg;
			continue;
		case OPT_PUSH: {
			char **n = realloc(push_src,
			                   (push_n + 1) * sizeof(*push_src));
			if (!n) {
				cli_error("out of memory");
				rc = EXIT_ERROR;
				goto out;
			}
			push_src = n;
			push_src[push_n++] = optarg;
			continue;
		}
		case OPT_TO:
			push_to = optarg;
			continue;
		default:
			break;
		}
		int k = cli_conn_option(&c, opt, optarg);
		if (!k)
			k = cli_sync_option(&cs, opt, optarg);
		if (k < 0) {
			rc = cli_usage_line(usage);
			goto out;
		}
		if (k == 0) {
			rc = cli_usage_error(usage, "unknown option '%s'",
			                     argv[optind - 1]);
			goto out;
		}
	}
	if (optind >= argc) {
		rc = cli_usage_error(usage, "expected [USER@]HOST and a "
		                            "COMMAND");
		goto out;
	}
	const char *target = argv[optind++];
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (optind >= argc) {
		rc = cli_usage_error(usage, "no COMMAND to run");
		goto out;
	}
	if (cli_conn_target(&c, target, 0, NULL) < 0) {
		rc = cli_usage_line(usage);
		goto out;
	}
	if (!push_n != !push_to) {
		rc = cli_usage_error(usage, "--push SRC and --to DEST go "
		                            "together");
		goto out;
	}
	command = join_args(argc - optind, argv + optind);
	if (!command) {
		cli_error("out of memory");
		rc = EXIT_ERROR;
		goto out;
	}
	if (stdin_file) {
		int fd = strcmp(stdin_file, "-")
		                 ? open(stdin_file, O_RDONLY | O_CLOEXEC)
		                 : 0;
		if (fd < 0 || read_fd(fd, &in, &in_len) < 0) {
			cli_error("--stdin %s: %s", stdin_file,
			          strerror(errno));
			if (fd > 0)
				close(fd);
			rc = EXIT_USAGE;
			goto out;
		}
		if (fd > 0)
			close(fd);
		eo.stdin_data = in;
		eo.stdin_len = in_len;
	}
	if ((rc = cli_connect(&c, &s)))
		goto out;
	out_state os = {s, 0};
	if (!cs.json) {
		eo.on_output = on_output;
		eo.ctx = &os;
	}
	if (push_n) {
		/* The login bootstrap runs while the push does. */
		ferry_exec_prepare(s);
		cli_sync_finish(&cs, push_src, push_n, push_to);
		cs.to_stderr = 1;
		push_rc = ferry_sync(s, &cs.o, &pr);
		pushed = 1;
		if (!cs.json && (push_rc || cs.stats || c.verbose))
			cli_sync_report(&cs, "push", push_rc, &pr,
			                ferry_session_errmsg(s));
		if (push_rc && push_rc != FERRY_EPARTIAL) {
			rc = push_rc == FERRY_EINTR ? 130
			                            : cli_exit_for(push_rc);
			if (cs.json)
				goto json;
			cli_disconnect(s);
			goto out;
		}
	}
	/* A closed stdout shows up as EPIPE, handled above. */
	signal(SIGPIPE, SIG_IGN);
	eo.separate_stderr = cs.json;
	e = ferry_exec(s, command, &eo, &r);
	if (e == FERRY_EINTR && !os.broken) {
		rc = r.exit_status; /* 130: Ctrl-C killed the command */
	} else if (e && !os.broken) {
		cli_error("%s", ferry_session_errmsg(s));
		rc = e == FERRY_EINVALID ? EXIT_USAGE : EXIT_CONN;
	} else if (os.broken) {
		rc = 128 + SIGPIPE;
	} else {
		rc = r.exit_status;
	}
	if (e && e != FERRY_EINTR)
		r.exit_status = -1;
json:
	if (cs.json) {
		json j;
		json_begin(&j, stdout);
		json_str(&j, "command", "exec");
		json_int(&j, "exit_status", rc);
		json_str(&j, "target", c.host);
		if (!pushed || !push_rc || push_rc == FERRY_EPARTIAL) {
			json_str(&j, "error",
			         e && e != FERRY_EINTR ? ferry_session_errmsg(s)
			                               : NULL);
			json_int(&j, "command_status", r.exit_status);
			json_bool(&j, "timed_out", r.timed_out);
			json_bool(&j, "interrupted", r.interrupted);
			json_num(&j, "duration_ms", r.duration_ms);
			json_str(&j, "cwd", r.cwd);
			json_strn(&j, "stdout", r.output ? r.output : "",
			          r.output_len);
			json_strn(&j, "stderr", r.err ? r.err : "", r.err_len);
			json_bool(&j, "output_truncated", r.output_truncated);
		}
		if (pushed) {
			json_key_obj(&j, "push");
			cli_sync_json_fields(&cs, &j, push_rc, &pr,
			                     ferry_session_errmsg(s));
			json_close_obj(&j);
		}
		json_end(&j);
	}
	cli_disconnect(s);
out:
	ferry_exec_result_free(&r);
	ferry_sync_report_free(&pr);
	cli_sync_free(&cs);
	free(push_src);
	free(command);
	free(in);
	cli_conn_free(&c);
	return rc;
}
