/* os.h - operating-system helpers shared by every module: the clocks, the
 * login directory, the local user. */
#ifndef FERRY_OS_H
#define FERRY_OS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in ms, whole and fractional. */
int64_t ferry__now_ms(void);
double ferry__now_ms_f(void);
/* $HOME when absolute, else the password entry's; NULL when neither. */
const char *ferry__home_dir(void);
/* "<home>/<rel>", allocated; NULL on ENOMEM. */
char *ferry__home_path(const char *rel);
/* The effective user's login name ($USER, then "root" as fallbacks). */
const char *ferry__local_user(void);
/* Read up to size bytes of fd into buf, retrying short reads and EINTR;
 * stops at end of file.  The count read, or -1 (errno set). */
ssize_t ferry__read_full(int fd, void *buf, size_t size);
/* n bytes from the kernel's random source: 0 or FERRY_EIO. */
int ferry__random_bytes(void *buf, size_t n);
/* The directory part of path ("." without a slash, "/" for the root),
 * allocated; NULL on ENOMEM. */
char *ferry__dirname(const char *path);

#endif
