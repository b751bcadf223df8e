/* cmd_status.c - ferry status: what a push would do, from the manifest and
 * the local tree, without connecting. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "syncopt.h"

static const char usage[] = "ferry status [OPTIONS] SRC... [USER@]HOST:DEST";

static const char help[] =
        "Print the changes a push would make, judged from the manifest of the\n"
        "last push to this target and the local tree.  Nothing is sent: the\n"
        "remote is not contacted (a remote changed behind ferry's back shows\n"
        "up only on a verifying push).\n"
        "\n"
        "Options as for push (transfer options that only matter remotely are\n"
        "accepted and ignored); --json for a JSON object; -q for no summary.\n"
        "Every change is listed in rsync's --itemize-changes form.\n";

static int status(cli_conn *c, cli_sync *cs, ferry_sync_report *r)
{
	char err[FERRY_ERRMSG_SIZE] = "";
	cs->itemize = 1;
	cs->o.dry_run = 1;
	int sr = ferry_sync_status(&c->o, &cs->o, r, err, sizeof(err));
	return cli_sync_report(cs, "status", sr, r, err);
}

int cmd_status(int argc, char **argv)
{
	return cli_sync_main(argc, argv, usage, help, 0, status);
}
