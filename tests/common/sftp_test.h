/* sftp_test.h - test support for the SFTP client (tests/common/sftp_*.c):
 * the pipe transport (a child sftp-server), the blocking layer and the
 * latency wrapper. */
#ifndef FERRY_TEST_SFTP_H
#define FERRY_TEST_SFTP_H

#include <sys/types.h>

#include "sftp.h"

/* The pipe transport: a child SFTP server on a socketpair (stdin and
 * stdout), for tests and for local targets. */
typedef struct ferry__sftp_pipe_opts {
	const char *const *argv; /* NULL: /usr/lib/openssh/sftp-server */
	int keep_stderr;         /* child stderr: ours (else /dev/null) */
	ferry__sftp_opts sftp;
} ferry__sftp_pipe_opts;

/* Spawn, INIT, limits.  On failure *out is NULL and errbuf says why. */
int ferry__sftp_open_pipe(ferry__sftp **out, const ferry__sftp_pipe_opts *o,
                          char *errbuf, size_t errlen);
/* The child's pid (tests kill it); 0 when not a pipe client. */
pid_t ferry__sftp_pipe_pid(const ferry__sftp *sf);

/* ---- synchronous layer (tests/common/sftp_wait.c)
 * ----------------------------------- Each submits, runs until its reply (the
 * client's timeout_ms), and returns 0 or FERRY_E*; on error the text ("<op>
 * <path>: <server text>") is on the client and on its session. */

int ferry__sftp_open_wait(ferry__sftp *sf, const char *path, uint32_t pflags,
                          const ferry__sftp_attrs *attrs,
                          ferry__sftp_handle *out);
int ferry__sftp_opendir_wait(ferry__sftp *sf, const char *path,
                             ferry__sftp_handle *out);
/* On handles. */
int ferry__sftp_close_wait(ferry__sftp *sf, const ferry__sftp_handle *h);
/* *got 0 at end of file. */
int ferry__sftp_read_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                          uint64_t off, void *buf, size_t len, size_t *got);
/* Any length: split in max-write pieces, all in flight. */
int ferry__sftp_write_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                           uint64_t off, const void *data, size_t len);
int ferry__sftp_fstat_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                           ferry__sftp_attrs *out);
int ferry__sftp_fsetstat_wait(ferry__sftp *sf, const ferry__sftp_handle *h,
                              const ferry__sftp_attrs *a);
int ferry__sftp_fsync_wait(ferry__sftp *sf, const ferry__sftp_handle *h);
int ferry__sftp_copy_data_wait(ferry__sftp *sf, const ferry__sftp_handle *rh,
                               uint64_t roff, uint64_t len,
                               const ferry__sftp_handle *wh, uint64_t woff);
/* On paths. */
int ferry__sftp_stat_wait(ferry__sftp *sf, const char *path,
                          ferry__sftp_attrs *out);
int ferry__sftp_lstat_wait(ferry__sftp *sf, const char *path,
                           ferry__sftp_attrs *out);
int ferry__sftp_setstat_wait(ferry__sftp *sf, const char *path,
                             const ferry__sftp_attrs *a);
int ferry__sftp_lsetstat_wait(ferry__sftp *sf, const char *path,
                              const ferry__sftp_attrs *a);
int ferry__sftp_remove_wait(ferry__sftp *sf, const char *path);
int ferry__sftp_mkdir_wait(ferry__sftp *sf, const char *path,
                           const ferry__sftp_attrs *a);
int ferry__sftp_rmdir_wait(ferry__sftp *sf, const char *path);
/* *out: a new string, ferry__free. */
int ferry__sftp_realpath_wait(ferry__sftp *sf, const char *path, char **out);
int ferry__sftp_readlink_wait(ferry__sftp *sf, const char *path, char **out);
int ferry__sftp_rename_wait(ferry__sftp *sf, const char *from, const char *to);
int ferry__sftp_posix_rename_wait(ferry__sftp *sf, const char *from,
                                  const char *to);
/* The server's SYMLINK order and rename safety, found with names in dir
 * (ferry__sftp_probe_symlinks); FERRY_EUNSUPPORTED when still unknown. */
int ferry__sftp_probe_symlinks_wait(ferry__sftp *sf, const char *dir);
int ferry__sftp_symlink_wait(ferry__sftp *sf, const char *linkpath,
                             const char *target);
int ferry__sftp_hardlink_wait(ferry__sftp *sf, const char *oldpath,
                              const char *newpath);
int ferry__sftp_statvfs_wait(ferry__sftp *sf, const char *path,
                             ferry__sftp_vfs_info *out);
/* *out: array of n entries; ferry__sftp_dirents_free. */
int ferry__sftp_list_wait(ferry__sftp *sf, const char *path,
                          ferry__sftp_dirent **out, size_t *n);
void ferry__sftp_dirents_free(ferry__sftp_dirent *d, size_t n);
/* *out: new buffer of *len bytes (+ a NUL), ferry__free. */
int ferry__sftp_read_small_wait(ferry__sftp *sf, const char *path, uint32_t max,
                                char **out, size_t *len);
/* The upload block; r filled (message copied to the client's errmsg). */
int ferry__sftp_upload_wait(ferry__sftp *sf, const ferry__sftp_upload_opts *o,
                            ferry__sftp_upload_result *r);

/* Delay every byte ms each way through the client's transport (a
 * simulated round trip of 2 ms), tests/common/sftp_latency.c. */
void fx_sftp_latency(ferry__sftp_opts *o, int ms);

#endif
