/* target.h - naming a sync target and finding its state: the target key
 * ("user@host:port" from lib/session.c's ferry__target_string, plus the
 * normalised remote destination), the state directory, and the manifest
 * lock and journal file paths derived from a hash of the key. ferry_sync_status
 * and ferry_sync both go through ferry__sync_paths_new. */
#ifndef FERRY_SYNC_TARGET_H
#define FERRY_SYNC_TARGET_H

#include <stddef.h>

typedef struct ferry__sync_paths {
	char *target;    /* user@host:port */
	char *dest;      /* normalised destination */
	char *state_dir; /* where manifests live */
	char *manifest;  /* <state_dir>/<hex>.manifest */
	char *lock;      /* <state_dir>/<hex>.lock */
	char *journal;   /* <state_dir>/<hex>.journal (sync/journal.h) */
} ferry__sync_paths;

/* A destination in one canonical spelling, so that "~/x", "x", "./x/" and
 * "x//" name one target: a leading "~/" (the login directory) and "."
 * components dropped, repeated and trailing slashes removed; "" -> ".".
 * ".." is kept (it cannot be resolved without the remote).  Caller frees;
 * NULL on ENOMEM. */
char *ferry__sync_dest_normalize(const char *dest);

/* state_dir if not NULL, else $XDG_STATE_HOME/ferry when that is an
 * absolute path, else $HOME/.local/state/ferry (HOME from the password
 * database when unset).  0, FERRY_ENOMEM or FERRY_ENOTFOUND (no home). */
int ferry__sync_state_dir(char **out, const char *state_dir);

/* Everything above for a target (user NULL: the local user; port 0: 22).
 * Nothing is created.  0, FERRY_EINVALID (no host or dest), FERRY_ENOMEM
 * or FERRY_ENOTFOUND. */
int ferry__sync_paths_new(ferry__sync_paths *out, const char *user,
                          const char *host, int port, const char *dest,
                          const char *state_dir);
void ferry__sync_paths_free(ferry__sync_paths *p);

/* The state is ours alone, as ssh wants of its keys: the state directory
 * (when it exists) and the target's manifest, journal and lock (those that
 * exist) belong to this user and are not writable by group or others, and
 * the files are regular files, not symlinks.  Another account could
 * otherwise plant a journal (whose names the next push removes) or a
 * manifest (which vouches for the remote).  0, or FERRY_EPERM / FERRY_EIO
 * with the path and the reason in err. */
int ferry__sync_paths_trusted(const ferry__sync_paths *p, char *err,
                              size_t errsz);

#endif
