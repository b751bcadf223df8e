/* persist.h - ferry --persist: a holder process keeps the session of a
 * target open behind a user-only unix socket; later calls for the same
 * target run their subcommand in it (README "Keeping the session").
 *
 * persist.c is the client side (finding, starting and using a holder),
 * holder.c the holder process, cmd_master.c `ferry master`. */
#ifndef FERRY_CLI_PERSIST_H
#define FERRY_CLI_PERSIST_H

#include <stddef.h>
#include <sys/types.h>

#include "cli.h"

#define CLI_PERSIST_DEFAULT_S 300
/* The longest idle time, and what ssh_config's ControlPersist yes gets:
 * a year, no idle exit in practice (the holder still ends with its
 * connection and on ferry master stop). */
#define CLI_PERSIST_MAX_S (86400 * 365)
#define CLI_KEY_LEN       16

/* The subcommand's command line (argv[0] the subcommand), set by main:
 * what a client sends to a holder. */
extern int cli_argc;
extern char **cli_argv;
/* main's dispatch: argv[0] "ferry", argv[1] the subcommand. */
int cli_main(int argc, char **argv);

/* The directory of the holder sockets, made if missing and checked to be a
 * directory of ours that no one else may enter: $XDG_RUNTIME_DIR/ferry,
 * else STATE/run (STATE: $XDG_STATE_HOME/ferry or ~/.local/state/ferry).
 * 0, or -1 with the reason in why. */
int cli_persist_dir(char *buf, size_t size, char *why, size_t whysize);
/* The target's key (user, host, port, identities, known_hosts, host-key
 * policy, ssh_config, compression) as CLI_KEY_LEN hex digits. */
void cli_persist_key(const cli_conn *c, char key[CLI_KEY_LEN + 1]);
/* dir/key + suffix (".sock", ".lock") into buf; -1 when too long. */
int cli_persist_path(char *buf, size_t size, const char *dir, const char *key,
                     const char *suffix);
/* 1 when lock (a holder's lock file) is held: a holder lives or starts. */
int cli_persist_locked(const char *lockpath);

/* Connect to a holder socket (1 s at most); the fd or -1 with errno. */
int cli_persist_dial(const char *sockpath);

/* The holder process: opens the session with c's options, reports on
 * readyfd ("0 PID" or "STATUS PID MESSAGE"), serves sockpath until idle
 * for secs, the connection dies or `ferry master stop`.  Keeps lockfd
 * (its flock) until it exits.  Never returns. */
void cli_holder_main(cli_conn *c, const char *sockpath, const char *key,
                     int lockfd, int readyfd, int secs)
        __attribute__((noreturn));

#endif
