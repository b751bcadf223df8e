/* remote.h - the remote side of a push as ferry sees it: remote paths and
 * temporary names, the identity marker (.ferry-id), and the listing of the
 * destination tree that verification compares with the local plan.
 *
 * Listing (one walker for both directions).  ferry__rlist_start submits a
 * STAT and the listing of every root (a push: its destination; a pull:
 * its sources), and the listings of the directories the caller expects
 * (a pull: those it has locally); each directory listed submits the
 * listings of its subdirectories not listed already (and a READLINK per
 * symlink) from its own callback, so the walk is pipelined level by
 * level: about two round trips per level of depth, whatever the number of
 * directories, and two in all for a tree whose directories were expected.
 * A directory is entered only when it lies in the scope (a push's "dir/"
 * source: everything; a "dir" source: DEST/dir and below) and is not
 * excluded, so a destination such as the login directory is never walked
 * whole. */
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
/* The same for one name (n bytes, no '/'), as a name: a pull's local
 * temporary file. */
char *ferry__temp_name(const char *name, size_t n);
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
	uint8_t reserved; /* ferry's own: the marker, a ".ferry-" name */
	uint8_t link_state;
	uint8_t listed; /* a directory whose listing succeeded */
	uint8_t dup;    /* strict: the path was listed twice (sort marks) */
	uint16_t root;  /* the root it was found under */
	uint8_t mark;   /* the caller's (on_listed), 0 when added */
	uint32_t attr_flags; /* FERRY__ATTR_* the server sent */
	uint32_t mode;       /* permission bits */
	uint32_t mtime;      /* seconds */
	uint64_t size;
	const char *link; /* symlink target once FERRY__RL_DONE */
	uint32_t link_len;
} ferry__rentry;

/* ferry__rroot.state */
enum {
	FERRY__ROOT_PENDING = 0,
	FERRY__ROOT_DIR,     /* listed */
	FERRY__ROOT_MISSING, /* no such file: a cold push */
	FERRY__ROOT_NOTDIR,  /* exists and is not a directory (attrs) */
	FERRY__ROOT_ERROR    /* could not be read (msg) */
};

typedef struct ferry__rroot {
	char *path;   /* the remote path listed */
	char *prefix; /* its destination path: "" (its contents), or a name */
	size_t prefix_len;
	int state; /* FERRY__ROOT_* once the walk is done */
	int code;
	char msg[600];
	ferry__sftp_attrs attrs; /* the STAT of a DIR or NOTDIR root */
	uint64_t entries;        /* names listed directly in it */
	/* while the walk runs */
	int stat_state, list_state, list_code;
	char list_msg[600];
} ferry__rroot;

typedef struct ferry__rfail {
	char *path; /* relative (a NUL from the server shown as '?') */
	int code;
	char *msg;
} ferry__rfail;

struct ferry__rlist;

typedef struct ferry__rlist_opts {
	/* The roots: remote paths and their destination paths (prefixes[i]
	 * "" puts the contents of paths[i] at the top; else one name). */
	const char *const *paths;
	const char *const *prefixes;
	size_t nroots;
	/* Enter only directories in the scope of these sources (a push:
	 * "dir/" everything, "dir" DEST/dir and below); NULL: everything. */
	const ferry__scan *scope;
	const ferry__excludes *ex;
	/* Destination paths of directories expected to exist (a pull: the
	 * local ones): listed at once, with the roots, and used when their
	 * parent's listing shows them as directories; otherwise dropped. */
	const char *const *guess;
	size_t nguess;
	/* A name no file system can hold (empty, ".", "..", '/' or NUL
	 * inside, above NAME_MAX) is refused into bad[] (a pull); without
	 * strict it is ignored (a push never writes one). */
	int strict;
	/* What the listing may hold (0: the defaults, ferry_sync_opts):
	 * entries in one directory, entries in all, bytes of names in all.
	 * Beyond one, the walk stops with FERRY_ELIMIT (errmsg names the
	 * directory). */
	uint64_t max_dir_entries, max_entries, max_name_bytes;
	/* The configured marker's name (reserved, as ".ferry-id" is), or
	 * NULL. */
	const char *marker;
	/* Called once per directory listed, as its answer is taken and
	 * before any of its subdirectories' (so always after its parent's):
	 * dir is its entry (SIZE_MAX: root's own listing), its entries are
	 * e[first..end).  A pull starts fetching from here. */
	void (*on_listed)(void *ctx, struct ferry__rlist *rl, size_t dir,
	                  unsigned root, size_t first, size_t end);
	void *ctx;
} ferry__rlist_opts;

#define FERRY__RLIST_MAX_ENTRIES 10000000u

typedef struct ferry__rjob ferry__rjob; /* private */

typedef struct ferry__rlist {
	ferry__sftp *sf;
	ferry__rlist_opts o;
	ferry__rroot *roots;
	size_t nroots;
	ferry__rentry *e; /* unsorted until ferry__rlist_sort */
	size_t n, cap;
	ferry__arena arena;
	size_t pending;     /* stats, listings and readlinks in flight */
	ferry__rfail *fail; /* subdirectories that could not be listed */
	size_t nfail;
	/* strict: names refused; else (a push) names listed twice in one
	 * directory, each once (ferry__rlist_sort keeps one entry) */
	ferry__rfail *bad;
	size_t nbad;
	ferry__rjob **guess; /* by destination path */
	size_t nguess;
	int error; /* FERRY_ENOMEM or the client's death: the walk stopped */
	char errmsg[600];    /* why, when more than ferry_strerror says */
	uint64_t name_bytes; /* of the entries held */
	uint64_t dirs_listed, guesses_used;
	uint64_t gen; /* the round trip of the walk's last reply */
	int finished;
} ferry__rlist;

/* Start walking.  The scope, when given, must have its sources open (it
 * need not have run).  0 or FERRY_E* (nothing submitted then). */
int ferry__rlist_start(ferry__rlist **out, ferry__sftp *sf,
                       const ferry__rlist_opts *o);
/* 1 when the walk is over (ferry__sftp_run predicate). */
int ferry__rlist_done(void *rl);
/* Sort the entries in tree order (after the walk); strict: a path listed
 * twice is marked dup (every copy); else one entry is kept and the path
 * is noted once in bad[]. */
void ferry__rlist_sort(ferry__rlist *rl);
/* The entry at path after sorting, or NULL. */
const ferry__rentry *ferry__rlist_find(const ferry__rlist *rl, const char *path,
                                       size_t n);
void ferry__rlist_free(ferry__rlist *rl);
/* The remote path of destination path rel (n bytes) under root r, or NULL
 * (ENOMEM, or rel is not under it).  Caller frees. */
char *ferry__rlist_rpath(const ferry__rlist *rl, unsigned r, const char *rel,
                         size_t n);

/* 1 when a name (n bytes) is ferry's own, in any directory: ".ferry-id",
 * marker (the configured marker's name, or NULL), one starting with
 * ".ferry-" or of the form of a temporary name. */
int ferry__reserved_name(const char *name, size_t n, const char *marker);
/* The marker's name: ferry_sync_opts.marker, else FERRY__MARKER_NAME. */
const char *ferry__marker_name(const ferry_sync_opts *o);
/* NULL when name (NULL: the default) can be a marker's name, else why
 * not. */
const char *ferry__marker_check(const char *name);

/* 1 when a directory at dest-relative path (n bytes) is within the scope of
 * the scan's sources (n == 0: the destination itself). */
int ferry__scope_dir(const ferry__scan *scan, const char *path, size_t n);

#endif
