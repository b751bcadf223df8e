/* scan.h - the local side of the sync set: a walk of the sources with
 * openat/fstatat relative to directory descriptors, O_NOFOLLOW below the
 * source roots, sorted siblings.
 *
 * Sources have rsync's meaning: "dir/" (or ".", "..", "/") puts the
 * contents of dir at the destination, "dir" puts dir itself at DEST/dir, a
 * file goes to DEST/name.  A source path itself is followed when it is a
 * symlink (like find -H); everything below it is not.
 *
 * Items come out in tree order (sync/path.h) within one source: a
 * directory, then its subtree, then its next sibling.  Regular files,
 * directories and symlinks whose target stays inside the source root are
 * reported; sockets, fifos, devices, escaping, absolute and looping
 * symlinks are skipped with a warning; excluded paths are skipped silently
 * (an excluded directory is not entered).  A directory or source that
 * cannot be read is reported as an error, the walk goes on, and the scan is
 * marked incomplete (deletions must then be skipped). */
#ifndef FERRY_SYNC_SCAN_H
#define FERRY_SYNC_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "ferry.h"
#include "sync/exclude.h"

/* Entry types, as stored in manifests. */
enum {
	FERRY__T_NONE = 0,
	FERRY__T_FILE = 1,
	FERRY__T_DIR = 2,
	FERRY__T_LINK = 3
};

/* What change detection needs of a stat. */
typedef struct ferry__stat {
	uint64_t size, ino, dev;
	int64_t mtime_ns, ctime_ns;
	uint32_t mode; /* permission bits (07777) */
	uint8_t type;  /* FERRY__T_* */
} ferry__stat;

/* FERRY__T_* of a st_mode, or FERRY__T_NONE for special files. */
int ferry__stat_type(mode_t m);
void ferry__stat_from(ferry__stat *out, const struct stat *st);

enum {
	FERRY__SRC_CONTENTS = 0, /* "dir/": contents at DEST */
	FERRY__SRC_DIR = 1,      /* "dir": at DEST/dir */
	FERRY__SRC_FILE = 2      /* a file: at DEST/name */
};

typedef struct ferry__source {
	const char *arg; /* as given (not owned) */
	int kind;        /* FERRY__SRC_* */
	int fd;       /* the directory, or the parent of a file; -1: missing */
	char *prefix; /* destination path of the root: "" or "dir" or "name" */
	size_t prefix_len;
	char *name;            /* FERRY__SRC_FILE: its name in fd */
	uint64_t root_entries; /* names directly in a directory root */
} ferry__source;

typedef struct ferry__scan_item {
	const char *path; /* destination-relative; valid during the call */
	size_t path_len;
	const char *name; /* last component of path */
	int dirfd;        /* directory holding name; valid during the call */
	int follow;       /* 1 for a file source given as a symlink */
	unsigned src;     /* index of the source */
	ferry__stat st;
	const char *link; /* FERRY__T_LINK: target (NUL-terminated) */
	size_t link_len;
} ferry__scan_item;

/* Return 0 to go on, FERRY__SCAN_PRUNE to skip a directory's contents, or
 * a negative FERRY_E* to stop the scan (ferry__scan_run returns it). */
#define FERRY__SCAN_PRUNE 1
typedef int (*ferry__scan_fn)(void *ctx, const ferry__scan_item *it);

typedef struct ferry__scan_opts {
	const char *const *sources;
	size_t source_count;
	const ferry__excludes *excludes; /* may be NULL */
	ferry_log_fn log;
	void *log_ctx;
	ferry_sync_report *report; /* per-file errors appended; may be NULL */
} ferry__scan_opts;

typedef struct ferry__scan_walk ferry__scan_walk; /* private */

typedef struct ferry__scan {
	ferry__source *src;
	size_t nsrc;
	int incomplete;   /* something could not be read: skip deletions */
	int64_t start_ns; /* CLOCK_REALTIME taken before the first stat */
	uint64_t files, dirs, links, skipped, errors;
	const ferry__excludes *excludes;
	ferry_log_fn log;
	void *log_ctx;
	ferry_sync_report *report;
	ferry__scan_walk *w;
} ferry__scan;

/* Open the source roots.  A missing or unreadable source is an error in
 * the report (and makes the scan incomplete), not a failure; a source with
 * a trailing slash that is not a directory likewise.  Fails only for
 * FERRY_EINVALID (no sources, empty path) and FERRY_ENOMEM, with err set. */
int ferry__scan_new(ferry__scan **out, const ferry__scan_opts *o, char *err,
                    size_t errsz);
/* Walk every source, calling fn for each item.  0, FERRY_ENOMEM, or what
 * fn returned. */
int ferry__scan_run(ferry__scan *s, ferry__scan_fn fn, void *ctx);
void ferry__scan_free(ferry__scan *s);

/* 1 when every source root that is a directory had no entry at all. */
int ferry__scan_source_empty(const ferry__scan *s, unsigned src);

/* Open the regular file at destination path (path_len bytes) of source src
 * for reading, again after the scan: every directory component is opened
 * with O_NOFOLLOW|O_DIRECTORY, the file with O_NOFOLLOW|O_NONBLOCK (so a
 * file swapped for a symlink or fifo is refused), and *st gets its fstat
 * (may be NULL).  0, FERRY_ENOTFOUND, FERRY_EPERM, FERRY_EINVALID (not a
 * regular file, or not a path of that source) or FERRY_EIO. */
int ferry__scan_open(const ferry__scan *s, unsigned src, const char *path,
                     size_t path_len, int *fd_out, struct stat *st);
/* Open name in dirfd the same way (follow: the item's follow flag). */
int ferry__scan_open_at(int dirfd, const char *name, int follow, int *fd_out,
                        struct stat *st);
/* The local path of a destination path of source src, for messages:
 * "<source arg>/<path inside it>".  Caller frees; NULL on ENOMEM. */
char *ferry__scan_local_path(const ferry__scan *s, unsigned src,
                             const char *path, size_t path_len);

#endif
