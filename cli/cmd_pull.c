/* cmd_pull.c - ferry pull: make a local directory equal to remote files. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "syncopt.h"

static const char usage[] = "ferry pull [OPTIONS] [USER@]HOST:SRC... DEST";

static const char help[] =
        "Make the local DEST equal to the SRCs on HOST over SFTP: a trailing\n"
        "slash (HOST:dir/) copies the contents of dir, without it dir itself.\n"
        "More sources on the same host are written HOST:SRC or :SRC.  Names\n"
        "and sizes the server sends are checked; anything that could not be\n"
        "a name inside DEST is refused and reported.  Files are written to a\n"
        "temporary name and renamed, owner-only ones stay owner-only.\n"
        "\n"
        "  -n, --dry-run          show what would change, change nothing\n"
        "      --delete           delete local files that are not in SRC\n"
        "                         (refused when a SRC is missing or empty)\n"
        "      --max-delete N     refuse to delete more than N (0: none)\n"
        "      --exclude PAT      skip matching paths (fnmatch, **, dir/)\n"
        "      --exclude-from F   patterns from a file, one a line\n"
        "      --checksum         compare the content of same-size files\n"
        "      --fsync            fsync every file (owner-only ones always)\n"
        "      --marker NAME      the --marker of the pushes to SRC: never\n"
        "                         brought home (.ferry-id never is)\n"
        "      --itemize-changes  one line per change, as rsync -i\n"
        "      --stats            a report for people\n"
        "      --json             one JSON object on stdout\n"
        "      --progress         a progress bar on a "
        "terminal\n" CLI_SYNC_HELP_COMMON "\n"
        "Exit: 0 done, 1 error, 2 usage, 23 partial, 255 connection.\n";

static int pull(cli_conn *c, cli_sync *cs, ferry_sync_report *r)
{
	ferry_session *s = NULL;
	int rc = cli_connect(c, &s);
	if (rc || !s)
		return rc; /* failed, or ran in a holder */
	if (cli_interrupted()) {
		cli_disconnect(s);
		return FERRY_EXIT_INTERRUPTED;
	}
	int pr = ferry_pull(s, &cs->o, r);
	rc = cli_sync_report(cs, "pull", pr, r, ferry_session_errmsg(s));
	if (pr == FERRY_EINTR)
		rc = FERRY_EXIT_INTERRUPTED;
	cli_disconnect(s);
	return rc;
}

int cmd_pull(int argc, char **argv)
{
	return cli_sync_main(argc, argv, usage, help, 1, pull);
}
