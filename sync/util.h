/* util.h - small helpers shared by the files of sync/: growing arrays,
 * times in SFTP's whole seconds. */
#ifndef FERRY_SYNC_UTIL_H
#define FERRY_SYNC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry.h"
#include "os.h" /* ferry__read_full */

/* Make the array *(T **)pv (capacity *cap elements of elem bytes) hold at
 * least need elements: the capacity doubles, starting at first.  On
 * failure the array is unchanged.  0 or FERRY_ENOMEM. */
int ferry__grow(void *pv, size_t *cap, size_t need, size_t elem, size_t first);

/* A time in ns as the whole seconds (rounded down) of an SFTP v3 mtime:
 * what ferry sets on the remote and finds there again. */
uint32_t ferry__mtime_s(int64_t ns);

/* ferry_sync and ferry_pull around their run: a public call on s, the
 * SFTP client's turn (pushes and pulls take turns; commands do not wait
 * for them), and after it the client's buffers and the heap given back
 * (a held session keeps no push's peak). */
int ferry__sftp_call(ferry_session *s, const ferry_sync_opts *opts,
                     ferry_sync_report *report,
                     int (*run)(ferry_session *s, const ferry_sync_opts *opts,
                                ferry_sync_report *report));

#endif
