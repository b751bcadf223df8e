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

static const char usage[] =
        "ferry exec [-p PORT] [-i KEY] [-F CONFIG] [--known-hosts FILE] "
        "[--host-key strict|accept-new|off] [--connect-timeout S] [-z] "
        "[-v|-q] [--timeout S] [--cwd DIR] [--stdin FILE|-] [USER@]HOST "
        "[--] COMMAND...";

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
        "  Ctrl-C          kills the remote command, exit 130\n\n"
        "Exit status: the command's; 124 timed out; 130 interrupted;\n"
        "255 connection, authentication or ferry failure; 2 bad usage.\n";

enum { OPT_TIMEOUT = OPT_CONN_LAST_, OPT_CWD, OPT_STDIN };

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
	        {"help", no_argument, NULL, 'h'},
	        {0}};
	cli_conn c;
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT;
	ferry_exec_result r;
	ferry_session *s = NULL;
	const char *stdin_file = NULL;
	char *command = NULL, *in = NULL;
	size_t in_len = 0;
	int opt, rc = EXIT_OK;
	memset(&r, 0, sizeof(r));
	cli_conn_init(&c);
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
		default:
			break;
		}
		int k = cli_conn_option(&c, opt, optarg);
		if (k < 0) {
			rc = EXIT_USAGE;
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
		rc = EXIT_USAGE;
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
	eo.on_output = on_output;
	eo.ctx = &os;
	/* A closed stdout shows up as EPIPE, handled above. */
	signal(SIGPIPE, SIG_IGN);
	int e = ferry_exec(s, command, &eo, &r);
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
	cli_disconnect(s);
out:
	ferry_exec_result_free(&r);
	free(command);
	free(in);
	cli_conn_free(&c);
	return rc;
}
