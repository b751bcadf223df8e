/* main.c - ferry: dispatch to one cmd_<verb>.c per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

const char *cli_prog = "ferry";

typedef struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} command;

static const command commands[] = {
        {"push", cmd_push, "make a remote directory equal to local files"},
        {"status", cmd_status, "show what a push would do, without connecting"},
        {"exec", cmd_exec, "run a command on the remote over the session"},
        {"ping", cmd_ping,
         "connect, authenticate, show algorithms and timings"},
};

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
	if (argc < 2) {
		fprintf(stderr, "ferry: no command given\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *verb = argv[1];
	if (!strcmp(verb, "--version") || !strcmp(verb, "-V")) {
		printf("ferry %s\n", ferry_version());
		return EXIT_OK;
	}
	if (!strcmp(verb, "--help") || !strcmp(verb, "-h")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(verb, "help")) {
		if (argc < 3) {
			usage(stdout);
			return EXIT_OK;
		}
		verb = argv[2];
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]);
		     i++)
			if (!strcmp(verb, commands[i].name)) {
				char *hargv[] = {argv[2], (char *)"--help",
				                 NULL};
				return commands[i].run(2, hargv);
			}
		return cli_usage_error("ferry help COMMAND (push, status, "
		                       "exec, ping)",
		                       "unknown command '%s'", verb);
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(verb, commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "ferry: unknown command '%s'\n", verb);
	usage(stderr);
	return EXIT_USAGE;
}
