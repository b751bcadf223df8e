/* cmd_ping.c - ferry ping: connect, authenticate, show what was negotiated
 * and how long each step took. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
        "ferry ping [-p PORT] [-i KEY] [-F CONFIG] [--known-hosts FILE] "
        "[--host-key strict|accept-new|off] [--connect-timeout S] [-z] "
        "[--persist[=S]] [USER@]HOST";

static const char help[] =
        "Connect, verify the host key, authenticate; print the negotiated\n"
        "algorithms and the time of each step.\n"
        "\n"
        "Connection options (every subcommand):\n"
        "  -p PORT, -i KEY (repeatable), -F CONFIG, --known-hosts FILE,\n"
        "  --host-key strict|accept-new|off, --connect-timeout S,\n"
        "  -z (compression), -v, -q\n"
        "  --persist[=S]   keep the session in a background holder for S\n"
        "                  seconds without a client (default 300; no: off;\n"
        "                  also $FERRY_PERSIST): later calls for the same\n"
        "                  target (user, host, port, keys, host-key and\n"
        "                  known_hosts settings) run in it without a new\n"
        "                  connection, one command at a time.  When the\n"
        "                  holder is gone or its connection lost, the call\n"
        "                  connects directly (-v says so).  ferry master\n"
        "                  lists and stops holders.\n"
        "  --no-persist    no holder (as --persist=no), whatever\n"
        "                  $FERRY_PERSIST or the ssh_config says\n"
        "  ssh_config: ControlMaster auto (yes, ask, autoask) with\n"
        "                  ControlPersist S (10m...; yes: no idle exit)\n"
        "                  for the host is --persist=S, unless --persist,\n"
        "                  --no-persist or $FERRY_PERSIST says otherwise;\n"
        "                  ControlPath is not used (ferry's socket is its\n"
        "                  own)\n";

int cmd_ping(int argc, char **argv)
{
	static const struct option longopts[] = {
	        CLI_CONN_LONGOPTS, {"help", no_argument, NULL, 'h'}, {0}};
	cli_conn c;
	cli_conn_init(&c);
	int rc = cli_parse_options(&c, argc, argv, "+" CLI_CONN_SHORTOPTS "h",
	                           longopts, usage, help, NULL, NULL);
	if (rc >= 0)
		goto out;
	if (argc - optind != 1) {
		rc = cli_usage_error(usage, "expected one [USER@]HOST");
		goto out;
	}
	if (cli_conn_target(&c, argv[optind], 0, NULL) < 0) {
		rc = cli_usage_line(usage);
		goto out;
	}
	ferry_session *s = NULL;
	if ((rc = cli_connect(&c, &s)) || !s)
		goto out;
	ferry_session_info in;
	ferry_session_info_get(&in, s);
	if (!c.quiet) {
		printf("%s: authenticated by %s\n", in.target, in.auth_method);
		printf("  kex       %s\n", in.kex);
		printf("  host key  %s %s\n", in.hostkey_type,
		       in.hostkey_fingerprint);
		printf("  cipher    %s / %s\n", in.cipher_cs, in.cipher_sc);
		printf("  mac       %s / %s\n", in.mac_cs, in.mac_sc);
		printf("  compress  %s / %s\n", in.comp_cs, in.comp_sc);
		printf("  time      connect %.1f ms, handshake %.1f ms, host "
		       "key "
		       "%.1f ms, auth %.1f ms, total %.1f ms\n",
		       in.ms_resolve_connect, in.ms_handshake, in.ms_hostkey,
		       in.ms_auth,
		       in.ms_resolve_connect + in.ms_handshake + in.ms_hostkey +
		               in.ms_auth);
	}
	cli_disconnect(s);
out:
	cli_conn_free(&c);
	return rc;
}
