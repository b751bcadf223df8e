/* cmd_push.c - ferry push: make a remote directory equal to local files. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "syncopt.h"

static const char usage[] = "ferry push [OPTIONS] SRC... [USER@]HOST:DEST";

static const char help[] =
        "Make DEST on HOST equal to the local SRCs over SFTP: a trailing "
        "slash\n"
        "(dir/) copies the contents of dir, without it dir itself.\n"
        "\n"
        "  -n, --dry-run          list what would change (as "
        "--itemize-changes),\n"
        "                         change nothing\n"
        "      --delete           delete remote files that are not in SRC\n"
        "      --delete-scope S   mirror (default): any such file; tracked:\n"
        "                         only files an earlier push sent\n"
        "      --max-delete N     refuse to delete more than N (0: none)\n"
        "      --exclude PAT      skip matching paths (fnmatch, **, dir/)\n"
        "      --exclude-from F   patterns from a file, one a line\n"
        "      --checksum         hash every file, trust no timestamps\n"
        "      --verify           list the remote tree and repair it\n"
        "      --force            ignore the manifest: compare everything\n"
        "      --fsync            fsync every file (owner-only ones always)\n"
        "      --streams N        SFTP channels a large file (32 MiB and up)\n"
        "                         is striped over, and small files (8 MiB\n"
        "                         and more in all) spread over (default: 4\n"
        "                         when the round trip is 2 ms or more, else "
        "1)\n"
        "      --allow-shared-dirs  write below remote directories other\n"
        "                         accounts may write to (refused by default)\n"
        "      --state-dir DIR    where manifests live\n"
        "      --marker NAME      ferry's identity marker at the top of "
        "DEST\n"
        "                         under this name (default .ferry-id)\n"
        "      --itemize-changes  one line per change, as rsync -i\n"
        "      --stats            a report for people\n"
        "      --json             one JSON object on stdout\n"
        "      --progress         a progress bar on a "
        "terminal\n" CLI_SYNC_HELP_COMMON "\n"
        "Exit: 0 done, 1 error, 2 usage, 23 partial, 255 connection.\n";

static int push(cli_conn *c, cli_sync *cs, ferry_sync_report *r)
{
	ferry_session *s = NULL;
	int rc = cli_connect(c, &s);
	if (rc || !s)
		return rc; /* failed, or ran in a holder */
	if (cs->o.dry_run)
		cs->itemize = 1; /* rsync -n -i: the plan, line by line */
	if (cli_interrupted()) {
		cli_disconnect(s);
		return FERRY_EXIT_INTERRUPTED;
	}
	int sr = ferry_sync(s, &cs->o, r);
	rc = cli_sync_report(cs, "push", sr, r, ferry_session_errmsg(s));
	if (sr == FERRY_EINTR)
		rc = FERRY_EXIT_INTERRUPTED;
	cli_disconnect(s);
	return rc;
}

int cmd_push(int argc, char **argv)
{
	return cli_sync_main(argc, argv, usage, help, 0, push);
}
