/* cmd_push.c - placeholder until the push subcommand lands. */
#include "cli.h"

int cmd_push(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cli_error("'push' is not available in this build yet");
	return EXIT_ERROR;
}
