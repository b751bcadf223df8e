/* main.c - ferry: dispatch to one cmd_<verb>.c per subcommand, and the
 * option loop they share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "persist.h"

const char *cli_prog = "ferry";

typedef struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} command;

static const command commands[] = {
        {"push", cmd_push, "make a remote directory equal to local files"},
        {"pull", cmd_pull, "make a local directory equal to remote files"},
        {"status", cmd_status, "show what a push would do, without connecting"},
        {"exec", cmd_exec, "run a command on the remote over the session"},
        {"ping", cmd_ping,
         "connect, authenticate, show algorithms and timings"},
        {"master", cmd_master, "list or stop the session holders of --persist"},
};

int cli_parse_options(cli_conn *c, int argc, char **argv, const char *shortopts,
                      const struct option *longopts, const char *usage,
                      const char *help,
                      int (*more)(void *ctx, int opt, char *arg), void *ctx)
{
	int opt;
	optind = 0; /* glibc: a full reset (a holder parses many times) */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) !=
	       -1) {
		if (opt == 'h') {
			fprintf(cli_out(), "usage: %s\n\n%s", usage, help);
			return FERRY_EXIT_OK;
		}
		int k = cli_conn_option(c, opt, optarg);
		if (!k && more)
			k = more(ctx, opt, optarg);
		if (k == -2)
			return FERRY_EXIT_ERROR;
		if (k < 0)
			return cli_usage_line(usage);
		if (k == 0)
			return cli_usage_error(usage, "unknown option '%s'",
			                       argv[optind - 1]);
	}
	return -1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry COMMAND [OPTIONS] ARGS...\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name,
		        commands[i].summary);
	fprintf(f, "\nferry help COMMAND, or ferry COMMAND --help, for its "
	           "options.\n");
}

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}

int cli_main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "ferry: no command given\n");
		usage(stderr);
		return FERRY_EXIT_USAGE;
	}
	const char *verb = argv[1];
	if (!strcmp(verb, "--version") || !strcmp(verb, "-V")) {
		printf("ferry %s\n", ferry_version());
		return FERRY_EXIT_OK;
	}
	if (!strcmp(verb, "--help") || !strcmp(verb, "-h")) {
		usage(stdout);
		return FERRY_EXIT_OK;
	}
	if (!strcmp(verb, "help")) {
		if (argc < 3) {
			usage(stdout);
			return FERRY_EXIT_OK;
		}
		verb = argv[2];
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]);
		     i++)
			if (!strcmp(verb, commands[i].name)) {
				char *hargv[] = {argv[2], (char *)"--help",
				                 NULL};
				return commands[i].run(2, hargv);
			}
		return cli_usage_error("ferry help COMMAND (push, pull, "
		                       "status, exec, ping, master)",
		                       "unknown command '%s'", verb);
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(verb, commands[i].name)) {
			/* As given: option parsing reorders argv and replaces
			 * operands; a holder gets the original. */
			static char **copy;
			free(copy);
			copy = malloc(((size_t)argc + 1) * sizeof(*copy));
			if (!copy) {
				fprintf(stderr, "ferry: out of memory\n");
				return FERRY_EXIT_ERROR;
			}
			memcpy(copy, argv, ((size_t)argc + 1) * sizeof(*copy));
			cli_argc = argc - 1;
			cli_argv = copy + 1;
			return commands[i].run(argc - 1, argv + 1);
		}
	fprintf(stderr, "ferry: unknown command '%s'\n", verb);
	usage(stderr);
	return FERRY_EXIT_USAGE;
}
