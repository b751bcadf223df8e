/* cmd_status.c - placeholder until the status subcommand lands. */
#include "cli.h"

int cmd_status(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cli_error("'status' is not available in this build yet");
	return EXIT_ERROR;
}
