/* cmd_exec.c - placeholder until the exec subcommand lands. */
#include "cli.h"

int cmd_exec(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cli_error("'exec' is not available in this build yet");
	return EXIT_ERROR;
}
