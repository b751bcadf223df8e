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

int cmd_status(int argc, char **argv)
{
	cli_conn c;
	cli_sync cs;
	cli_conn_init(&c);
	cli_sync_init(&cs, &c);
	ferry_sync_report r;
	memset(&r, 0, sizeof(r));
	char *dest = NULL;
	int rc = cli_sync_parse(&c, &cs, argc, argv, usage, help, &dest);
	if (rc >= 0)
		goto out;
	rc = EXIT_OK;
	cs.itemize = 1;
	cs.o.dry_run = 1;
	char err[1024] = "";
	int sr = ferry_sync_status(&c.o, &cs.o, &r, err, sizeof(err));
	rc = cli_sync_report(&cs, "status", sr, &r, err);
out:
	ferry_sync_report_free(&r);
	cli_sync_free(&cs);
	cli_conn_free(&c);
	return rc;
}
