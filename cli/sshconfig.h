/* sshconfig.h - the ~/.ssh/config subset ferry reads. */
#ifndef FERRY_CLI_SSHCONFIG_H
#define FERRY_CLI_SSHCONFIG_H

#include "cli.h"

/* Apply -F FILE (or ~/.ssh/config when present) to c for the host alias
 * c->host: Host patterns (*, ?, !), first value wins per keyword as in ssh;
 * HostName, User, Port, IdentityFile, UserKnownHostsFile,
 * StrictHostKeyChecking, ConnectTimeout.  Command-line values win.
 * -1 with a message naming the file and line on error. */
int ferry_cli_sshconfig_apply(cli_conn *c);
/* Keep s alive as long as c; returns s. */
char *cli_own(cli_conn *c, char *s);

#endif
