/* lwrite.h - a pull's local writes, done by a thread of their own.
 *
 * Making a file is the local file system's work, and it is not small:
 * on ext4 without a journal, after many deletions, one openat(O_CREAT)
 * costs 0.1 to 1 ms of kernel time (the inode allocator skips the
 * recently deleted inodes one by one).  Done by the thread that drives
 * the session, it delays every request sent after it, so a cold pull
 * cost its round trips plus all of that work.  Here one thread makes the
 * directories and files in the order they were asked for, while the
 * session's thread sends and receives.
 *
 * Thread rules: the writer thread touches local files only (through its
 * own ferry__ldir on the borrowed destination descriptor: O_NOFOLLOW one
 * name at a time) and this module's queue; never the session, SFTP, the
 * report or the actions, and it allocates nothing (an allocation failure
 * injected by a test stays on the caller's thread).  Every other call is
 * the caller's thread's, one thread.  When the thread cannot be started,
 * the work is done at once on the caller's thread, the same way.
 *
 * A file: ferry__lw_create (its temporary name in its directory, created
 * O_EXCL | O_NOFOLLOW with its final mode), ferry__lw_data (any order),
 * then ferry__lw_commit (flushed when asked, mode and mtime set on the
 * descriptor, renamed over its name) or ferry__lw_abort (the temporary
 * removed).  A failure leaves the temporary removed and the name as it
 * was; the caller hears of it from ferry__lw_reap, with the message of
 * the step that failed. */
#ifndef FERRY_SYNC_LWRITE_H
#define FERRY_SYNC_LWRITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ferry__lw ferry__lw;
typedef struct ferry__lwfile ferry__lwfile;

typedef struct ferry__lwfile_opts {
	const char *path; /* in the destination; copied */
	size_t path_len;
	uint32_t mode; /* permission bits */
	int set_mtime;
	int64_t mtime_s;
	int flush; /* fsync before the rename */
	void *ctx; /* given back by ferry__lw_reap */
} ferry__lwfile_opts;

/* rootfd (the destination) is borrowed.  NULL on ENOMEM. */
ferry__lw *ferry__lw_new(int rootfd);
/* Waits for what was queued, stops the thread; files neither committed
 * nor aborted lose their temporaries.  Files not reaped are forgotten. */
void ferry__lw_free(ferry__lw *w);

/* Make the directory at path (n bytes) in its parent, or find it there
 * (the owner's rwx added: the modes are set last).  Queued; a failure is
 * left to whoever makes it again (the plan's MKDIR reports it), and the
 * files asked for in it fail.  0 or FERRY_ENOMEM. */
int ferry__lw_mkdir(ferry__lw *w, const char *path, size_t n, uint32_t mode);
/* A new file, its temporary made soon.  NULL on ENOMEM. */
ferry__lwfile *ferry__lw_create(ferry__lw *w, const ferry__lwfile_opts *o);
/* n bytes at off, copied (waits while too many bytes are queued).  0,
 * FERRY_ENOMEM, or the FERRY_E* the file failed with so far. */
int ferry__lw_data(ferry__lw *w, ferry__lwfile *f, uint64_t off,
                   const uint8_t *p, size_t n);
/* The last call for f: put in place, or its temporary removed. */
void ferry__lw_commit(ferry__lw *w, ferry__lwfile *f);
void ferry__lw_abort(ferry__lw *w, ferry__lwfile *f);

/* The files over (committed, aborted or failed) since the last call:
 * cb(ctx, 0 or FERRY_E*, message) for each, then they are freed.  Does
 * not wait.  How many. */
size_t ferry__lw_reap(ferry__lw *w,
                      void (*cb)(void *ctx, int err, const char *msg));
/* Waits until a file is over, or none is on its way to be. */
void ferry__lw_wait(ferry__lw *w);
/* Waits until everything queued is done (the directories too). */
void ferry__lw_drain(ferry__lw *w);
/* The local disk said it is full (ENOSPC, EDQUOT). */
int ferry__lw_full(ferry__lw *w);

#endif
