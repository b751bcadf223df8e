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
	static const struct option longopts[] = {
	        CLI_CONN_LONGOPTS,
	        CLI_SYNC_LONGOPTS,
	        {"help", no_argument, NULL, 'h'},
	        {0}};
	cli_conn c;
	cli_sync cs;
	cli_conn_init(&c);
	cli_sync_init(&cs, &c);
	ferry_sync_report r;
	memset(&r, 0, sizeof(r));
	int opt, rc = EXIT_OK;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv,
	                          CLI_CONN_SHORTOPTS CLI_SYNC_SHORTOPTS "h",
	                          longopts, NULL)) != -1) {
		if (opt == 'h') {
			printf("usage: %s\n\n%s", usage, help);
			goto out;
		}
		int u = cli_conn_option(&c, opt, optarg);
		if (!u)
			u = cli_sync_option(&cs, opt, optarg);
		if (u < 0) {
			rc = cli_usage_line(usage);
			goto out;
		}
		if (u == 0) {
			rc = cli_usage_error(usage, "unknown option '%s'",
			                     argv[optind - 1]);
			goto out;
		}
	}
	if (argc - optind < 2) {
		rc = cli_usage_error(usage,
		                     "expected SRC... and [USER@]HOST:DEST");
		goto out;
	}
	char *dest = NULL;
	if (cli_conn_target(&c, argv[argc - 1], 1, &dest) < 0) {
		rc = cli_usage_line(usage);
		goto out;
	}
	cs.itemize = 1;
	cs.o.dry_run = 1;
	cli_sync_finish(&cs, argv + optind, (size_t)(argc - 1 - optind), dest);
	char err[1024] = "";
	int sr = ferry_sync_status(&c.o, &cs.o, &r, err, sizeof(err));
	rc = cli_sync_report(&cs, "status", sr, &r, err);
out:
	ferry_sync_report_free(&r);
	cli_sync_free(&cs);
	cli_conn_free(&c);
	return rc;
}
