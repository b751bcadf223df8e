/* util.h - small helpers shared by the files of sync/: growing arrays,
 * times in SFTP's whole seconds. */
#ifndef FERRY_SYNC_UTIL_H
#define FERRY_SYNC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "os.h" /* ferry__read_full */

/* Make the array *(T **)pv (capacity *cap elements of elem bytes) hold at
 * least need elements: the capacity doubles, starting at first.  On
 * failure the array is unchanged.  0 or FERRY_ENOMEM. */
int ferry__grow(void *pv, size_t *cap, size_t need, size_t elem, size_t first);

/* A time in ns as the whole seconds (rounded down) of an SFTP v3 mtime:
 * what ferry sets on the remote and finds there again. */
uint32_t ferry__mtime_s(int64_t ns);

#endif
