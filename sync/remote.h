/* remote.h - the remote side of a push as ferry sees it: remote paths and
 * temporary names, the identity marker (.ferry-id), and the listing of the
 * destination tree that verification compares with the local plan.
 *
 * Listing.  ferry__rlist_start submits a STAT of the destination and the
 * listing of its root; each directory listed submits the listings of its
 * subdirectories (and a READLINK per symlink) from its own callback, so
 * the walk is pipelined level by level: about two round trips per level of
 * depth, whatever the number of directories.  A directory is entered only
 * when it lies in the sync set's scope (a "dir/" source: everything; a
 * "dir" source: DEST/dir and below) and is not excluded, so a destination
 * such as the login directory is never walked whole. */
#ifndef FERRY_SYNC_REMOTE_H
#define FERRY_SYNC_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "sftp.h"
#include "sync/arena.h"
#include "sync/exclude.h"
#include "sync/scan.h"

#define FERRY__MARKER_NAME   ".ferry-id"
#define FERRY__MARKER_ID_LEN 16
/* 32 hex digits and a newline */
#define FERRY__MARKER_TEXT_LEN 33

/* The remote path of destination-relative path rel (n bytes; n == 0 is
 * the destination itself).  dest is normalised (sync/target.h): "." is
 * the login directory, where sftp-server starts.  Caller frees. */
char *ferry__rpath(const char *dest, const char *rel, size_t n);
/* A new temporary name for rel in the same directory:
 * ".NAME.ferry-XXXXXX" (NAME cut to fit NAME_MAX), as a remote path.
 * NULL on ENOMEM or when no random bytes could be had. */
char *ferry__rtemp(const char *dest, const char *rel, size_t n);
/* 1 when a file name (n bytes) has the form of a temporary name. */
int ferry__rtemp_name(const char *name, size_t n);
/* 1 when path is one ferry__rtemp(dest, ...) could have made: dest, then
 * a valid relative path whose last name has the temporary form.  A
 * journal entry is removed only then (a journal is untrusted input). */
int ferry__rtemp_in(const char *dest, const char *path);

/* The id in a marker file's content: 32 hex digits, optionally followed
 * by whitespace.  0 or FERRY_EPROTO. */
int ferry__marker_parse(uint8_t id[FERRY__MARKER_ID_LEN], const void *data,
                        size_t len);
/* The content of a marker file for id (NUL-terminated). */
void ferry__marker_text(char out[FERRY__MARKER_TEXT_LEN + 1],
                        const uint8_t id[FERRY__MARKER_ID_LEN]);

/* ---- listing ------------------------------------------------------------ */

/* ferry__rentry.link_state */
enum { FERRY__RL_NONE = 0, FERRY__RL_PENDING, FERRY__RL_DONE, FERRY__RL_FAIL };

typedef struct ferry__rentry {
	const char *path; /* relative to the destination; arena */
	uint32_t path_len;
	uint8_t type; /* FERRY__T_FILE/DIR/LINK; FERRY__T_NONE: other kind */
	uint8_t temp; /* its name is a temporary name */
	uint8_t link_state;
	uint8_t listed; /* a directory whose listing succeeded */
	uint32_t mode;  /* permission bits */
	uint32_t mtime; /* seconds */
	uint64_t size;
	const char *link; /* symlink target once FERRY__RL_DONE */
	uint32_t link_len;
} ferry__rentry;

/* ferry__rlist.root */
enum {
	FERRY__ROOT_PENDING = 0,
	FERRY__ROOT_DIR,     /* listed */
	FERRY__ROOT_MISSING, /* no such file: a cold push */
	FERRY__ROOT_NOTDIR,  /* exists and is not a directory */
	FERRY__ROOT_ERROR    /* could not be read (root_msg) */
};

typedef struct ferry__rfail {
	char *path; /* relative */
	int code;
	char *msg;
} ferry__rfail;

typedef struct ferry__rlist {
	ferry__sftp *sf;
	char *dest; /* remote path of the destination */
	const ferry__scan *scan;
	const ferry__excludes *ex;
	ferry__rentry *e; /* unsorted until ferry__rlist_sort */
	size_t n, cap;
	ferry__arena arena;
	int root;
	int root_code;
	char root_msg[600];
	int stat_state; /* 0 pending, else FERRY__ROOT_* of the STAT */
	int list_state; /* 0 pending, 1 ok, -1 failed */
	int list_code;
	char list_msg[600];
	size_t pending;     /* listings and readlinks in flight */
	ferry__rfail *fail; /* subdirectories that could not be listed */
	size_t nfail;
	int error; /* FERRY_ENOMEM or the client's death: the walk stopped */
	uint64_t dirs_listed;
} ferry__rlist;

/* Start walking dest (a remote path).  scan gives the scope (its sources
 * must be open; it need not have run) and ex the exclusions.  0 or
 * FERRY_E* (nothing submitted then). */
int ferry__rlist_start(ferry__rlist **out, ferry__sftp *sf, const char *dest,
                       const ferry__scan *scan, const ferry__excludes *ex);
/* 1 when the walk is over (ferry__sftp_run predicate). */
int ferry__rlist_done(void *rl);
/* Sort the entries in tree order (after the walk). */
void ferry__rlist_sort(ferry__rlist *rl);
/* The entry at path after sorting, or NULL. */
const ferry__rentry *ferry__rlist_find(const ferry__rlist *rl, const char *path,
                                       size_t n);
void ferry__rlist_free(ferry__rlist *rl);

/* 1 when a directory at dest-relative path (n bytes) is within the scope of
 * the scan's sources (n == 0: the destination itself). */
int ferry__scope_dir(const ferry__scan *scan, const char *path, size_t n);

#endif
