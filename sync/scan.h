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
/* 1 when size, mtime, ctime, inode, device and mode are the same. */
int ferry__stat_eq(const ferry__stat *a, const ferry__stat *b);

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
	const char *mapped; /* a mapping's remote path (not owned), or NULL */
	const ferry__excludes *ex; /* its own, relative to the root; or NULL */
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
	/* Report every symlink, wherever it points (a pull's walk of its
	 * destination: links there are replaced or deleted, never
	 * followed). */
	int all_links;
	/* Mappings (ferry_mapping): per source, the remote path it lands at
	 * and its own excludes (either array may be NULL).  A mapped
	 * directory at "" is the destination itself (as "dir/"); missing
	 * parents of a remote path are reported as directories (mode 0755,
	 * the source's mtime) before the source. */
	const char *const *mapped;
	const ferry__excludes *const *src_excludes;
} ferry__scan_opts;

/* Racily clean entries (sync/plan.h).  A file changed after the scan
 * stat'd it may keep every compared field (size, mtime, ctime, inode) when
 * the change falls in the same timestamp granule as that stat.  The plan
 * therefore re-hashes a file whose mtime or ctime is within racy_ns of the
 * manifest's stat_ns (the previous scan's start, read from the fine
 * CLOCK_REALTIME before the first stat).
 *
 * Fine-grained file systems (ext4, xfs, btrfs, tmpfs, overlayfs) store
 * nanoseconds, but the kernel stamps files from its coarse clock, which
 * ticks once a jiffy (HZ >= 100: at most 10 ms) and lags the fine clock by
 * up to one tick: a file written after the scan started can carry a time
 * up to one tick before start_ns, never more.  FERRY__RACY_FINE_NS (50 ms,
 * five ticks at the slowest HZ) covers that with room to spare; a file
 * whose times are older than start_ns - 50 ms can only change to a later
 * time, so comparing stat fields is enough.  Everything else gets
 * FERRY__RACY_COARSE_NS: FAT keeps 2 s mtimes, exFAT 10 ms but local-time
 * quirks, network file systems take the server's clock, and an unknown
 * f_type is assumed coarse.  The same magic as ext4 also covers ext2/ext3
 * and ext4 with 128-byte inodes, which keep whole seconds: a directory
 * whose ctime has no nanoseconds (the kernel sets ctime, no program can)
 * is taken as such a file system, coarse.
 *
 * The window is found with fstatfs on each source root, and again on every
 * directory whose device differs from its parent's (a mount point), before
 * anything inside it is visited; a non-directory on another device than
 * its directory (a bind-mounted file, a file source followed to another
 * file system) makes it coarse.  ferry__scan.racy_ns only grows during the
 * walk, so each file is judged with a window at least that of its own file
 * system, and entries not seen again with the coarsest of the scan.  A
 * window too large only costs hashing; it can never make a push skip a
 * changed file. */
#define FERRY__RACY_FINE_NS   ((int64_t)50000000)
#define FERRY__RACY_COARSE_NS ((int64_t)2000000000)

/* The window of a file system by its statfs f_type magic:
 * FERRY__RACY_FINE_NS for ext4 (ext2/3), xfs, btrfs, tmpfs and overlayfs,
 * FERRY__RACY_COARSE_NS for everything else (vfat, exfat, nfs, unknown). */
int64_t ferry__racy_window(unsigned long f_type);

typedef struct ferry__scan_walk ferry__scan_walk; /* private */

typedef struct ferry__scan {
	ferry__source *src;
	size_t nsrc;
	int incomplete;   /* something could not be read: skip deletions */
	int64_t start_ns; /* CLOCK_REALTIME taken before the first stat */
	int64_t racy_ns;  /* racy window: of the coarsest file system so far */
	uint64_t files, dirs, links, skipped, errors;
	const ferry__excludes *excludes;
	ferry_log_fn log;
	void *log_ctx;
	ferry_sync_report *report;
	int all_links;
	ferry__scan_walk *w;
	const ferry__excludes *cur_ex; /* the walked source's own excludes */
	size_t cur_skip;               /* its root's path length, with '/' */
} ferry__scan;

/* Open the source roots.  A missing or unreadable source is an error in
 * the report (and makes the scan incomplete), not a failure; a source with
 * a trailing slash that is not a directory likewise.  Fails only for
 * FERRY_EINVALID (no sources, empty path) and FERRY_ENOMEM, with err set. */
int ferry__scan_new(ferry__scan **out, const ferry__scan_opts *o, char *err,
                    size_t errsz);
/* 1 when path (destination-relative) is below a source root whose own
 * excludes (a mapping's) match it or one of its parents. */
int ferry__scan_excluded(const ferry__scan *s, const char *path, size_t n,
                         int is_dir);
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
