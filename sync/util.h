/* util.h - small helpers shared by the files of sync/: growing arrays and
 * reading a whole file. */
#ifndef FERRY_SYNC_UTIL_H
#define FERRY_SYNC_UTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "os.h" /* ferry__read_full */

/* Make the array *(T **)pv (capacity *cap elements of elem bytes) hold at
 * least need elements: the capacity doubles, starting at first.  On
 * failure the array is unchanged.  0 or FERRY_ENOMEM. */
int ferry__grow(void *pv, size_t *cap, size_t need, size_t elem, size_t first);

#endif
